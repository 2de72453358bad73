//! Bounded best-`k` selection with one total order: score descending, then row ascending.
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

/// The best `k` hits pushed so far (one query's running selection; not a heap). Hits at or
/// above the threshold go into a buffer of up to `2k`; when it fills, a linear-time selection
/// keeps the best `k` and raises the threshold to the worst of them. Each push costs O(1)
/// amortized, whatever `k` (a heap costs O(log k) per insertion, which dominates a funnel's
/// large first-stage shortlists).
#[derive(Clone, Debug)]
pub struct Selection {
    k: usize,
    threshold: f32,
    buf: Vec<Hit>,
}

impl Selection {
    /// An empty selection of at most `k` hits.
    pub fn new(k: usize) -> Selection {
        let threshold = if k == 0 {
            f32::INFINITY
        } else {
            f32::NEG_INFINITY
        };
        Selection {
            k,
            threshold,
            buf: Vec::with_capacity(k.saturating_mul(2).min(4096)),
        }
    }

    /// An empty selection of at most `k` hits that refuses hits scoring below `floor` (a
    /// guess of the `k`-th best score; if fewer than `k` hits reach it, the selection ends
    /// with fewer than `k` and the caller must search again without it).
    pub fn with_floor(k: usize, floor: f32) -> Selection {
        let mut t = Selection::new(k);
        t.threshold = t.threshold.max(floor);
        t
    }

    /// Hits scoring below this can never be among the best `k`.
    #[inline]
    pub fn threshold(&self) -> f32 {
        self.threshold
    }

    /// Offers a hit.
    #[inline]
    pub fn push(&mut self, score: f32, row: usize) {
        if score < self.threshold {
            return;
        }
        self.buf.push(Hit { score, row });
        if self.buf.len() >= 2 * self.k {
            self.compact();
        }
    }

    /// Keeps the best `k` (and any hits tied with the `k`-th) and raises the threshold to the
    /// `k`-th best score. Selecting by score alone is cheaper than by the full order; the ties
    /// it cannot order stay in the buffer, so no hit that the full order ranks higher is lost.
    fn compact(&mut self) {
        let k = self.k;
        if self.buf.len() <= k {
            return;
        }
        self.buf
            .select_nth_unstable_by(k - 1, |a, b| b.score.total_cmp(&a.score));
        let kth = self.buf[k - 1].score;
        let mut kept = k;
        for i in k..self.buf.len() {
            if self.buf[i].score >= kth {
                self.buf.swap(kept, i);
                kept += 1;
            }
        }
        self.buf.truncate(kept);
        if kept > k + k / 2 {
            // Many ties with the k-th: order them fully, or the buffer would not shrink.
            self.exact();
        }
        self.threshold = kth;
    }

    /// Exactly the best `k` by the full order.
    fn exact(&mut self) {
        if self.buf.len() > self.k {
            self.buf.select_nth_unstable_by(self.k - 1, rank);
            self.buf.truncate(self.k);
        }
    }

    /// The kept hits, best first.
    pub fn into_sorted(mut self) -> Vec<Hit> {
        self.exact();
        self.buf.sort_unstable_by(rank);
        self.buf
    }

    /// The kept hits, unordered.
    pub fn into_vec(mut self) -> Vec<Hit> {
        self.exact();
        self.buf
    }
}

/// The best `k` rows by a small integer key (`0..=max_key`), smallest key first, then row
/// ascending: one query's running selection over Hamming distances, whose score decreases
/// with the distance. A histogram of the keys taken keeps the cut (the smallest key with `k`
/// rows at or below it) exact after every push, so the bar drops as soon as it can, not at
/// the next compaction. Rows may be pushed in any order; rows pushed in ascending order that
/// tie with the cut are refused at once.
#[derive(Clone, Debug)]
pub struct KeySelection {
    k: usize,
    /// Rows taken (still in `buf`) per key.
    hist: Vec<u32>,
    /// The cut: with `taken >= k`, no key above it can enter.
    cut: u32,
    /// Rows in `buf` with keys at or below the cut.
    taken: usize,
    /// The largest row pushed.
    hi: usize,
    buf: Vec<(u32, usize)>,
}

impl KeySelection {
    /// An empty selection of at most `k` rows with keys in `0..=max_key`.
    pub fn new(k: usize, max_key: u32) -> KeySelection {
        KeySelection {
            k,
            hist: vec![0; max_key as usize + 1],
            cut: max_key,
            taken: 0,
            hi: 0,
            buf: Vec::with_capacity(k.saturating_mul(2).min(4096)),
        }
    }

    /// An empty selection that takes only keys at or below `cut` (at most `max_key`): the best
    /// `k` of those rows, which are the best `k` of all rows when at least `k` rows have such
    /// keys (a caller that guesses the cut checks that it kept `k` rows).
    pub fn with_cut(k: usize, max_key: u32, cut: u32) -> KeySelection {
        KeySelection {
            cut: cut.min(max_key),
            ..KeySelection::new(k, max_key)
        }
    }

    /// A bound for rows numbered `next_row` or more: such a row can enter only if its key is
    /// below this (a superset test, cheap to vectorize; [`KeySelection::push`] decides).
    #[inline]
    pub fn bound(&self, next_row: usize) -> u32 {
        if self.k == 0 {
            0
        } else if self.taken >= self.k && self.hi < next_row {
            self.cut
        } else {
            self.cut.saturating_add(1)
        }
    }

    /// Offers a row (its key at most `max_key`).
    #[inline(always)]
    pub fn push(&mut self, key: u32, row: usize) {
        if self.k == 0 || key > self.cut {
            return;
        }
        let full = self.taken >= self.k;
        if full && key == self.cut && row > self.hi {
            // At least k rows rank before it: keys at or below the cut, rows below.
            return;
        }
        self.buf.push((key, row));
        self.hist[key as usize] += 1;
        self.taken += 1;
        self.hi = self.hi.max(row);
        while self.cut > 0 && self.taken - self.hist[self.cut as usize] as usize >= self.k {
            self.taken -= self.hist[self.cut as usize] as usize;
            self.cut -= 1;
        }
        if self.buf.len() >= 2 * self.k {
            self.compact();
        }
    }

    /// Drops rows above the cut; if ties at the cut keep the buffer large, keeps exactly the
    /// best `k` by the full order.
    #[cold]
    #[inline(never)]
    fn compact(&mut self) {
        let cut = self.cut;
        for &(key, _) in self.buf.iter().filter(|e| e.0 > cut) {
            self.hist[key as usize] -= 1;
        }
        self.buf.retain(|e| e.0 <= cut);
        if self.buf.len() >= 2 * self.k {
            self.buf.select_nth_unstable_by_key(self.k - 1, key_order);
            for &(key, _) in &self.buf[self.k..] {
                self.hist[key as usize] -= 1;
            }
            self.buf.truncate(self.k);
            self.taken = self.k;
        }
    }

    /// The kept rows, unordered.
    pub fn into_vec(mut self) -> Vec<(u32, usize)> {
        if self.buf.len() > self.k && self.k > 0 {
            self.buf.select_nth_unstable_by_key(self.k - 1, key_order);
        }
        self.buf.truncate(self.k);
        self.buf
    }
}

/// The order of a key selection's entries, as one integer: key, then row (rows below 2^48,
/// far beyond any file's row count). One integer compare instead of a tuple's two is what
/// makes a selection of thousands of rows cheap to merge and sort.
#[inline]
pub fn key_order(e: &(u32, usize)) -> u64 {
    debug_assert!((e.1 as u64) < 1 << 48);
    (u64::from(e.0) << 48) | e.1 as u64
}

/// The best `k` of several partial key selections, unordered (sort by [`key_order`] for best
/// first).
pub fn merge_keys(
    parts: impl IntoIterator<Item = Vec<(u32, usize)>>,
    k: usize,
) -> Vec<(u32, usize)> {
    let mut all: Vec<(u32, usize)> = parts.into_iter().flatten().collect();
    if all.len() > k && k > 0 {
        all.select_nth_unstable_by_key(k - 1, key_order);
    }
    all.truncate(k);
    all
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

    fn sorted_keys(mut v: Vec<(u32, usize)>) -> Vec<(u32, usize)> {
        v.sort_unstable_by_key(key_order);
        v
    }

    proptest! {
        #[test]
        fn selection_equals_full_sort(scores in proptest::collection::vec(-3i8..3, 0..200), k in 0usize..50) {
            // Few distinct scores, so ties are frequent.
            let hits: Vec<Hit> = scores.iter().enumerate().map(|(row, &s)| Hit { score: f32::from(s), row }).collect();
            let mut want = hits.clone();
            want.sort_by(rank);
            want.truncate(k);
            let mut s = Selection::new(k);
            for x in &hits { s.push(x.score, x.row); }
            prop_assert_eq!(s.into_sorted(), want.clone());
            // Split into parts, select each, merge: same answer.
            let parts: Vec<Vec<Hit>> = hits.chunks(7).map(|c| {
                let mut t = Selection::new(k);
                for x in c { t.push(x.score, x.row); }
                t.into_vec()
            }).collect();
            prop_assert_eq!(merge(parts, k), want);
        }

        #[test]
        fn key_selection_equals_full_sort(keys in proptest::collection::vec(0u32..6, 0..200), k in 0usize..50, rot in 0usize..200) {
            // Few distinct keys, so ties are frequent; rows pushed out of order.
            let n = keys.len();
            let order: Vec<usize> = (0..n).map(|i| (i + rot) % n.max(1)).collect();
            let mut want: Vec<(u32, usize)> = keys.iter().copied().zip(0..n).collect();
            want.sort_unstable();
            want.truncate(k);
            let mut s = KeySelection::new(k, 5);
            for &r in &order { s.push(keys[r], r); }
            prop_assert_eq!(sorted_keys(merge_keys([s.into_vec()], k)), want.clone());
            let parts: Vec<Vec<(u32, usize)>> = order.chunks(7).map(|c| {
                let mut t = KeySelection::new(k, 5);
                for &r in c { t.push(keys[r], r); }
                t.into_vec()
            }).collect();
            prop_assert_eq!(sorted_keys(merge_keys(parts, k)), want.clone());
            // As a scan: ascending chunks taken in reverse order, each row tested against the
            // bound first (refreshed at each chunk's start and after each push).
            let rows: Vec<usize> = (0..n).collect();
            let mut t = KeySelection::new(k, 5);
            for c in rows.chunks(7).rev() {
                let mut bound = t.bound(c[0]);
                for &r in c {
                    if keys[r] < bound {
                        t.push(keys[r], r);
                        bound = t.bound(r + 1);
                    }
                }
            }
            prop_assert_eq!(sorted_keys(merge_keys([t.into_vec()], k)), want);
        }
    }
}
