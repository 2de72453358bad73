//! `topk`: the fused scan. Rows are split into chunks that run on the pool; each chunk walks
//! its rows in cache-sized blocks, computes dot products and squared norms with the active
//! kernels, turns them into cosines and keeps a bounded top-k per query. Chunks are merged by
//! the total order of [`crate::topk::rank`], so the answer does not depend on the threading.

use rayon::prelude::*;

use crate::error::{Error, Result};
use crate::kernels::Kernels;
use crate::layout::{Matrix, Prefix};
use crate::pool;
use crate::topk::{merge, Hit, TopK};

/// Squared norms outside `[NN_MIN, NN_MAX]` may have lost precision to float32 under- or
/// overflow; such rows are scored again exactly in float64.
const NN_MIN: f32 = 1e-30;
const NN_MAX: f32 = 1e30;
/// Rows per chunk at least (smaller chunks cost more in scheduling than they gain).
const MIN_CHUNK_ROWS: usize = 4096;

/// Top-k results of `nq` queries, row-major `nq x k`.
#[derive(Clone, Debug, PartialEq)]
pub struct Hits {
    /// Number of queries.
    pub nq: usize,
    /// Results per query (`min(k, N)`).
    pub k: usize,
    /// `nq * k` scores.
    pub scores: Vec<f32>,
    /// `nq * k` row numbers.
    pub indices: Vec<i64>,
}

impl Hits {
    pub(crate) fn from_lists(lists: Vec<Vec<Hit>>, k: usize) -> Hits {
        let nq = lists.len();
        let mut scores = Vec::with_capacity(nq * k);
        let mut indices = Vec::with_capacity(nq * k);
        for list in lists {
            debug_assert_eq!(list.len(), k);
            scores.extend(list.iter().map(|h| h.score));
            indices.extend(list.iter().map(|h| h.row as i64));
        }
        Hits {
            nq,
            k,
            scores,
            indices,
        }
    }
}

/// Checks `1 <= dim <= min(query_cols, corpus_cols)`.
pub fn check_dim(dim: i64, query_cols: usize, corpus_cols: usize) -> Result<usize> {
    if dim < 1 || dim as u64 > query_cols.min(corpus_cols) as u64 {
        return Err(Error::PrefixOutOfRange {
            dim,
            query_cols,
            corpus_cols,
        });
    }
    Ok(dim as usize)
}

/// Checks `k >= 1`.
pub fn check_k(k: i64) -> Result<usize> {
    if k < 1 {
        return Err(Error::InvalidK { k });
    }
    Ok(usize::try_from(k).unwrap_or(usize::MAX))
}

/// Dense queries: `data` holds `nq` rows of `cols` values.
#[derive(Clone, Copy, Debug)]
pub struct Queries<'a> {
    data: &'a [f32],
    cols: usize,
}

impl<'a> Queries<'a> {
    /// `data.len()` must be a multiple of `cols` (>= 1).
    pub fn new(data: &'a [f32], cols: usize) -> Result<Self> {
        if cols == 0 || !data.len().is_multiple_of(cols) {
            return Err(Error::DimMismatch(format!(
                "query buffer of {} values is not a whole number of rows of {cols} columns",
                data.len()
            )));
        }
        Ok(Queries { data, cols })
    }

    /// Number of queries.
    pub fn len(&self) -> usize {
        self.data.len() / self.cols
    }

    /// Whether there are no queries.
    pub fn is_empty(&self) -> bool {
        self.data.is_empty()
    }

    /// Columns per query.
    pub fn cols(&self) -> usize {
        self.cols
    }

    /// The first `dim` columns of each query, scaled to unit norm in float64 (a zero prefix
    /// stays zero), as a dense `nq x dim` buffer. NaN/Inf in those columns is an error.
    pub fn normalized(&self, dim: usize) -> Result<Vec<f32>> {
        let mut out = Vec::with_capacity(self.len() * dim);
        for (j, q) in self.data.chunks_exact(self.cols).enumerate() {
            let q = &q[..dim];
            if let Some(col) = q.iter().position(|v| !v.is_finite()) {
                return Err(Error::NonFiniteQuery { query: j, col });
            }
            let nn: f64 = q.iter().map(|&v| f64::from(v) * f64::from(v)).sum();
            let scale = if nn > 0.0 { 1.0 / nn.sqrt() } else { 0.0 };
            out.extend(q.iter().map(|&v| (f64::from(v) * scale) as f32));
        }
        Ok(out)
    }
}

/// How a row's squared norm becomes a score multiplier: `1/|x|` normally, `0.0` for an
/// all-zero row, NaN for a row to score exactly in float64; NaN/Inf in the row is an error.
#[inline]
pub(crate) fn row_scale(nn: f32, prefix: &Prefix<'_>, row: usize) -> Result<f32> {
    if (NN_MIN..=NN_MAX).contains(&nn) {
        return Ok(1.0 / nn.sqrt());
    }
    let mut zero = true;
    for v in prefix.row_values(row) {
        if !v.is_finite() {
            return Err(Error::NonFiniteRow {
                row,
                dim: prefix.dim(),
            });
        }
        zero &= v == 0.0;
    }
    Ok(if zero { 0.0 } else { f32::NAN })
}

/// The cosine of a dot product with a unit query and the row's scale from [`row_scale`].
#[inline]
pub(crate) fn score(dot: f32, scale: f32, q: &[f32], prefix: &Prefix<'_>, row: usize) -> f32 {
    finish(if scale.is_nan() {
        exact_score(q, prefix, row)
    } else {
        dot * scale
    })
}

/// Clamps rounding overshoot to `[-1, 1]` and makes `-0.0` the contract's `0.0`.
#[inline]
fn finish(s: f32) -> f32 {
    let s = s.clamp(-1.0, 1.0);
    if s == 0.0 {
        0.0
    } else {
        s
    }
}

/// Cosine of a unit query with a finite row, in float64 (for rows whose norm is out of the
/// float32-safe range).
fn exact_score(q: &[f32], prefix: &Prefix<'_>, row: usize) -> f32 {
    let (mut dot, mut nn) = (0.0f64, 0.0f64);
    // Scale by the largest magnitude first, so that squares neither under- nor overflow.
    let big = prefix
        .row_values(row)
        .fold(0.0f64, |m, v| m.max(f64::from(v).abs()));
    if big == 0.0 {
        return 0.0;
    }
    for (v, &qv) in prefix.row_values(row).zip(q) {
        let x = f64::from(v) / big;
        dot += f64::from(qv) * x;
        nn += x * x;
    }
    (dot / nn.sqrt()) as f32
}

/// Top-`k` rows of `corpus` by cosine over the first `dim` columns, for every query, with the
/// active backend. See the crate docs for the numeric contract.
pub fn topk(queries: Queries<'_>, corpus: &Matrix<'_>, dim: i64, k: i64) -> Result<Hits> {
    topk_with(Kernels::active()?, queries, corpus, dim, k)
}

/// [`topk`] with explicit kernels (tests compare backends with it).
pub fn topk_with(
    kernels: Kernels,
    queries: Queries<'_>,
    corpus: &Matrix<'_>,
    dim: i64,
    k: i64,
) -> Result<Hits> {
    let dim = check_dim(dim, queries.cols(), corpus.cols())?;
    let k = check_k(k)?.min(corpus.rows());
    let qn = queries.normalized(dim)?;
    let prefix = corpus.prefix(dim);
    let lists = scan(&kernels, &qn, queries.len(), &prefix, k, 0..corpus.rows())?;
    Ok(Hits::from_lists(lists, k))
}

/// Top-`k` of rows `range` for the `nq` unit queries `qn` (dense, `nq x dim`): one list per
/// query, best first.
pub(crate) fn scan(
    kernels: &Kernels,
    qn: &[f32],
    nq: usize,
    prefix: &Prefix<'_>,
    k: usize,
    range: std::ops::Range<usize>,
) -> Result<Vec<Vec<Hit>>> {
    let n = range.len();
    if nq == 0 || k == 0 || n == 0 {
        return Ok(vec![Vec::new(); nq]);
    }
    let threads = pool::current_threads();
    // Several chunks per thread balance the load; but each chunk keeps up to k hits per query
    // for the merge, so a large k asks for fewer, larger chunks.
    let chunk = n
        .div_ceil(threads * 4)
        .max(MIN_CHUNK_ROWS)
        .max(k.saturating_mul(16));
    let starts: Vec<usize> = range.clone().step_by(chunk).collect();
    let run = |&start: &usize| {
        scan_chunk(
            kernels,
            qn,
            nq,
            prefix,
            k,
            start..(start + chunk).min(range.end),
        )
    };
    let parts: Vec<Result<Vec<TopK>>> = if starts.len() == 1 {
        starts.iter().map(run).collect()
    } else {
        pool::install(|| starts.par_iter().map(run).collect())
    };
    let mut per_query: Vec<Vec<Vec<Hit>>> = vec![Vec::with_capacity(parts.len()); nq];
    for part in parts {
        for (j, heap) in part?.into_iter().enumerate() {
            per_query[j].push(heap.into_vec());
        }
    }
    if nq > 1 {
        Ok(pool::install(|| {
            per_query.into_par_iter().map(|p| merge(p, k)).collect()
        }))
    } else {
        Ok(per_query.into_iter().map(|p| merge(p, k)).collect())
    }
}

/// Rows per block: with one query, enough to amortize the loop and the prefetch warm-up; with
/// a batch, a block must stay in L2 (~256 KiB) while every tile of queries passes over it.
fn block_rows(dim: usize, nq: usize) -> usize {
    if nq == 1 {
        2048
    } else {
        ((48 * 1024) / dim.max(1)).clamp(16, 1024)
    }
}

/// Queries whose dot products are computed together (the kernels' register tile is 4 wide).
const QUERY_GROUP: usize = 4;

fn scan_chunk(
    kernels: &Kernels,
    qn: &[f32],
    nq: usize,
    prefix: &Prefix<'_>,
    k: usize,
    range: std::ops::Range<usize>,
) -> Result<Vec<TopK>> {
    let dim = prefix.dim();
    let mut heaps: Vec<TopK> = (0..nq).map(|_| TopK::new(k.min(range.len()))).collect();
    let block = block_rows(dim, nq);
    let mut rows: Vec<usize> = Vec::with_capacity(block);
    let mut norms = vec![0.0f32; block];
    let mut scales = vec![0.0f32; block];
    let mut special: Vec<usize> = Vec::new();
    let mut dots = vec![0.0f32; block * nq.min(QUERY_GROUP)];
    // Batches scan a packed copy of each block (rows 0..m of `packed`).
    let (mut packed, local): (Vec<f32>, Vec<usize>) = if nq > 1 {
        (vec![0.0; block * dim], (0..block).collect())
    } else {
        (Vec::new(), Vec::new())
    };
    let mut b0 = range.start;
    while b0 < range.end {
        let b1 = (b0 + block).min(range.end);
        let m = b1 - b0;
        rows.clear();
        rows.extend(b0..b1);
        let tile_view = if nq == 1 {
            kernels.dot_norm(qn, prefix, &rows, &mut dots, &mut norms);
            None
        } else {
            prefix.pack(&rows, &mut packed);
            let view = Matrix::from_slice(&packed[..m * dim], m, dim)?.prefix(dim);
            kernels.norms(&view, &local[..m], &mut norms);
            Some(view)
        };
        special.clear();
        for i in 0..m {
            scales[i] = row_scale(norms[i], prefix, rows[i])?;
            if scales[i].is_nan() {
                special.push(i);
            }
        }
        for j0 in (0..nq).step_by(QUERY_GROUP) {
            let g = (nq - j0).min(QUERY_GROUP);
            if let Some(view) = &tile_view {
                kernels.dots(&qn[j0 * dim..], dim, g, view, &local[..m], &mut dots);
            }
            for (t, heap) in heaps[j0..j0 + g].iter_mut().enumerate() {
                let q = &qn[(j0 + t) * dim..(j0 + t + 1) * dim];
                select(heap, &dots[t * m..(t + 1) * m], &scales[..m], b0);
                for &i in &special {
                    heap.push(
                        score(dots[t * m + i], scales[i], q, prefix, rows[i]),
                        rows[i],
                    );
                }
            }
        }
        b0 = b1;
    }
    Ok(heaps)
}

/// Offers rows `first + i` with scores `dots[i] * scales[i]` to `heap`. Rows whose scale is NaN
/// (scored exactly elsewhere) never pass the comparison. Most rows lose to the heap's
/// threshold, so eight at a time are compared before any is looked at one by one.
#[inline]
fn select(heap: &mut TopK, dots: &[f32], scales: &[f32], first: usize) {
    let mut thr = heap.threshold();
    for (c, (d8, s8)) in dots.chunks(8).zip(scales.chunks(8)).enumerate() {
        let any = d8
            .iter()
            .zip(s8)
            .fold(false, |any, (&d, &s)| any | (d * s >= thr));
        if !any {
            continue;
        }
        for (t, (&d, &s)) in d8.iter().zip(s8).enumerate() {
            let v = d * s;
            if v >= thr {
                heap.push(finish(v), first + c * 8 + t);
                thr = heap.threshold();
            }
        }
    }
}
