//! Bounded top-k selection with one total order: score descending, then row ascending.
//! Because the order is total and scores are never NaN, merging per-thread selections in any
//! order gives the same result as one sequential pass.

use std::cmp::Ordering;

/// A scored corpus row.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Hit {
    /// Cosine score (never NaN).
    pub score: f32,
    /// Row number in the corpus.
    pub row: usize,
}

/// `Less` when `a` ranks before `b`: higher score first, then lower row.
#[inline]
pub fn rank(a: &Hit, b: &Hit) -> Ordering {
    b.score.total_cmp(&a.score).then(a.row.cmp(&b.row))
}

/// The best `k` hits pushed so far: a binary heap whose root is the worst kept hit.
#[derive(Clone, Debug)]
pub struct TopK {
    k: usize,
    heap: Vec<Hit>,
}

impl TopK {
    /// An empty selection of at most `k` hits (memory: `k` hits).
    pub fn new(k: usize) -> TopK {
        TopK { k, heap: Vec::with_capacity(k) }
    }

    /// The score a new hit must reach to be considered (`-inf` while there is room).
    #[inline]
    pub fn threshold(&self) -> f32 {
        if self.heap.len() < self.k {
            f32::NEG_INFINITY
        } else if self.k == 0 {
            f32::INFINITY
        } else {
            self.heap[0].score
        }
    }

    /// Offers a hit; kept if it ranks before the worst kept one (or there is room).
    #[inline]
    pub fn push(&mut self, score: f32, row: usize) {
        let hit = Hit { score, row };
        if self.heap.len() < self.k {
            self.heap.push(hit);
            self.sift_up(self.heap.len() - 1);
        } else if self.k > 0 {
            // Fast reject first: most rows of a large scan lose on the score alone.
            let worst = self.heap[0];
            if score < worst.score || rank(&hit, &worst) != Ordering::Less {
                return;
            }
            self.heap[0] = hit;
            self.sift_down(0);
        }
    }

    fn sift_up(&mut self, mut i: usize) {
        while i > 0 {
            let parent = (i - 1) / 2;
            // The root holds the worst hit: a child that ranks after its parent moves up.
            if rank(&self.heap[i], &self.heap[parent]) == Ordering::Greater {
                self.heap.swap(i, parent);
                i = parent;
            } else {
                break;
            }
        }
    }

    fn sift_down(&mut self, mut i: usize) {
        let n = self.heap.len();
        loop {
            let (l, r) = (2 * i + 1, 2 * i + 2);
            let mut worst = i;
            if l < n && rank(&self.heap[l], &self.heap[worst]) == Ordering::Greater {
                worst = l;
            }
            if r < n && rank(&self.heap[r], &self.heap[worst]) == Ordering::Greater {
                worst = r;
            }
            if worst == i {
                break;
            }
            self.heap.swap(i, worst);
            i = worst;
        }
    }

    /// The kept hits, best first.
    pub fn into_sorted(self) -> Vec<Hit> {
        let mut v = self.heap;
        v.sort_unstable_by(rank);
        v
    }

    /// The kept hits in heap order.
    pub fn into_vec(self) -> Vec<Hit> {
        self.heap
    }
}

/// The best `k` of several partial selections, best first.
pub fn merge(parts: impl IntoIterator<Item = Vec<Hit>>, k: usize) -> Vec<Hit> {
    let mut all: Vec<Hit> = parts.into_iter().flatten().collect();
    if all.len() > k && k > 0 {
        all.select_nth_unstable_by(k - 1, rank);
        all.truncate(k);
    }
    all.truncate(k);
    all.sort_unstable_by(rank);
    all
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        #[test]
        fn heap_equals_full_sort(scores in proptest::collection::vec(-3i8..3, 0..200), k in 0usize..50) {
            // Few distinct scores, so ties are frequent.
            let hits: Vec<Hit> = scores.iter().enumerate().map(|(row, &s)| Hit { score: f32::from(s), row }).collect();
            let mut want = hits.clone();
            want.sort_by(rank);
            want.truncate(k);
            let mut h = TopK::new(k);
            for x in &hits { h.push(x.score, x.row); }
            prop_assert_eq!(h.into_sorted(), want.clone());
            // Split into parts, select each, merge: same answer.
            let parts: Vec<Vec<Hit>> = hits.chunks(7).map(|c| {
                let mut t = TopK::new(k);
                for x in c { t.push(x.score, x.row); }
                t.into_vec()
            }).collect();
            prop_assert_eq!(merge(parts, k), want);
        }
    }
}
