//! `topk`: the fused scan. Rows are split into chunks that run on the pool; each chunk walks
//! its rows in cache-sized blocks, computes dot products and squared norms with the active
//! kernels, turns them into cosines and keeps a bounded [`Selection`] per query. Chunks are merged by
//! the total order of [`crate::selection::rank`], so the answer does not depend on the threading.

use rayon::prelude::*;

use crate::error::{Error, Result};
use crate::kernels::generic::scale_of;
use crate::kernels::{Batch, BatchQueries, Kernels};
use crate::layout::{Matrix, Prefix, RowCopy};
use crate::pool;
use crate::selection::{merge, Hit, Selection};

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

    /// Query `j`'s values.
    pub fn row(&self, j: usize) -> &'a [f32] {
        &self.data[j * self.cols..(j + 1) * self.cols]
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
    let scale = scale_of(nn);
    if !scale.is_nan() {
        return Ok(scale);
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
    scan_with(kernels, qn, nq, prefix, k, range, true)
}

/// [`scan`], with or without guessed floors (see [`guess_floors`]).
fn scan_with(
    kernels: &Kernels,
    qn: &[f32],
    nq: usize,
    prefix: &Prefix<'_>,
    k: usize,
    range: std::ops::Range<usize>,
    guess: bool,
) -> Result<Vec<Vec<Hit>>> {
    let n = range.len();
    if nq == 0 || k == 0 || n == 0 {
        return Ok(vec![Vec::new(); nq]);
    }
    let k = k.min(n);
    let job = Job {
        kernels,
        qn,
        // A batch lays its queries out once for the batch kernel.
        bq: (nq > 1).then(|| kernels.batch_queries(prefix, qn, nq)),
        nq,
        prefix,
    };
    let floors = if guess {
        guess_floors(&job, k, range.clone())?
    } else {
        None
    };
    let workers = run_workers(&job, k, floors.as_deref(), range.clone(), 1)?;
    let mut lists = merge_workers(workers, nq, k);
    if floors.is_none() {
        return Ok(lists);
    }
    // A guess that fewer than k rows reached was too high: search those queries again, without
    // one (a scan without floors offers every row, so it ends with k hits and never recurses).
    let dim = prefix.dim();
    for (j, list) in lists.iter_mut().enumerate() {
        if list.len() < k {
            let q = &qn[j * dim..(j + 1) * dim];
            *list = scan_with(kernels, q, 1, prefix, k, range.clone(), false)?.remove(0);
        }
    }
    Ok(lists)
}

/// Rows of a guessing sample at most: a fixed budget, so nothing grows with `N`.
const SAMPLE_ROWS: usize = 16384;

/// For a large `k`, a per-query guess of a score that about `2.6 k` rows reach, from an evenly
/// spaced sample of rows; the scan then refuses rows below it from the start, instead of
/// letting every row in while its selections are filling (with `k = 1000` of a million rows,
/// about 20,000 pushes per query instead of about 2,600). The guess is checked: a query that
/// ends with fewer than `k` hits is searched again without it, so results are always exact.
fn guess_floors(
    job: &Job<'_>,
    k: usize,
    range: std::ops::Range<usize>,
) -> Result<Option<Vec<f32>>> {
    let n = range.len();
    let s = SAMPLE_ROWS.min(n / 16);
    // The k-th best row is expected at this rank within the sample.
    let expected = k as f64 * s as f64 / n as f64;
    if expected < 4.0 {
        // Small k: the adaptive threshold is already cheap.
        return Ok(None);
    }
    // About 2.6 times the expected rank: fewer than k rows reach the guess only if the sample
    // holds over twice its share of the top k (for k = 1000 of 10^6, 6 standard deviations).
    let r = (2.0 * expected + 10.0).ceil() as usize;
    if r >= s {
        // k is a large share of the rows: no sample rank gives a useful guess.
        return Ok(None);
    }
    let workers = run_workers(job, r, None, range, n / s)?;
    Ok(Some(
        merge_workers(workers, job.nq, r)
            .into_iter()
            .map(|best| match best.get(r - 1) {
                Some(h) => h.score,
                None => f32::NEG_INFINITY,
            })
            .collect(),
    ))
}

/// Each query's best `k` over the workers' selections, best first.
fn merge_workers(workers: Vec<Worker<'_>>, nq: usize, k: usize) -> Vec<Vec<Hit>> {
    let mut per_query: Vec<Vec<Vec<Hit>>> = vec![Vec::with_capacity(workers.len()); nq];
    for w in workers {
        for (j, sel) in w.selections.into_iter().enumerate() {
            per_query[j].push(sel.into_vec());
        }
    }
    if nq > 1 {
        pool::install(|| per_query.into_par_iter().map(|p| merge(p, k)).collect())
    } else {
        per_query.into_iter().map(|p| merge(p, k)).collect()
    }
}

/// What every worker of one scan shares.
struct Job<'a> {
    kernels: &'a Kernels,
    /// Unit queries, dense `nq x dim`.
    qn: &'a [f32],
    /// The queries laid out for the batch kernel (batches only).
    bq: Option<BatchQueries>,
    nq: usize,
    prefix: &'a Prefix<'a>,
}

/// Runs the scan of every `step`-th row of `range` on the pool; returns the workers'
/// selections.
fn run_workers<'a>(
    job: &'a Job<'a>,
    k: usize,
    floors: Option<&[f32]>,
    range: std::ops::Range<usize>,
    step: usize,
) -> Result<Vec<Worker<'a>>> {
    let threads = pool::current_threads();
    let count = range.len().div_ceil(step);
    // Several chunks per thread balance the load. Chunks that run one after another on a thread
    // share that thread's selections (rayon's fold), so a large k pays its cold start (every
    // row passes while a selection is not yet full) about once per thread, not once per chunk.
    // Below `threads * 4` chunks of MIN_CHUNK_ROWS, the chunks are a whole number of rounds
    // of the threads (10,000 rows on 2 threads: two chunks of 5,000, not 4,096 + 4,096 +
    // 1,808, which left one thread the last chunk alone).
    let pieces = (count / MIN_CHUNK_ROWS).clamp(1, threads * 4);
    let pieces = if pieces > 1 {
        pieces.next_multiple_of(threads)
    } else {
        1
    };
    let chunk = count.div_ceil(pieces);
    let starts: Vec<usize> = (0..count).step_by(chunk).collect();
    let new_worker = || Ok(Worker::new(job, k, floors, count));
    let run = |w: Result<Worker<'a>>, &start: &usize| -> Result<Worker<'a>> {
        let mut w = w?;
        let end = (start + chunk).min(count);
        w.scan((start..end).map(|i| range.start + i * step))?;
        Ok(w)
    };
    let workers: Vec<Result<Worker<'a>>> = if starts.len() == 1 {
        vec![starts.iter().fold(new_worker(), run)]
    } else {
        pool::install(|| starts.par_iter().fold(new_worker, run).collect())
    };
    workers.into_iter().collect()
}

/// Rows per block: with one query, enough to amortize the loop and the prefetch warm-up; with
/// a batch, a block's rows and its dot products (a row of them per row) stay in L2 (~512 KiB)
/// between the kernel and the selection.
fn block_rows(dim: usize, nq: usize) -> usize {
    if nq == 1 {
        2048
    } else {
        (16384 / dim.max(1)).clamp(16, 256)
    }
}

/// One thread's share of a scan: a selection per query and block-sized scratch buffers, reused
/// for every chunk the thread runs (nothing here grows with the corpus).
struct Worker<'a> {
    job: &'a Job<'a>,
    selections: Vec<Selection>,
    block: usize,
    rows: Vec<usize>,
    norms: Vec<f32>,
    /// Per row, `1/|x|` (see [`row_scale`]); NaN on the padding of the last group of rows.
    scales: Vec<f32>,
    special: Vec<usize>,
    /// One query: a dot product per row. A batch: a row of dot products per row.
    dots: Vec<f32>,
    /// The pass bits (see [`select`] and [`select_batch`]) and the thresholds they were taken
    /// with.
    masks: Vec<u32>,
    thr: Vec<f32>,
    /// A batch's scratch: the kernel's row copies.
    copy: RowCopy,
}

impl<'a> Worker<'a> {
    /// A worker for a scan of `rows` rows in all (its buffers need not outgrow them: a small
    /// corpus is searched in tens of microseconds, where filling 2048-row buffers would show).
    fn new(job: &'a Job<'a>, k: usize, floors: Option<&[f32]>, rows: usize) -> Self {
        let block = block_rows(job.prefix.dim(), job.nq).min(rows.max(1));
        // One query's outputs cover whole groups of `lanes` rows.
        let lanes = job.kernels.lanes();
        let padded = block.next_multiple_of(lanes);
        let (dots, masks, thr) = match &job.bq {
            None => (padded, padded / lanes, 1),
            // Missing queries of the last group never pass.
            Some(bq) => (block * bq.padded(), block * bq.groups(), bq.padded()),
        };
        Worker {
            job,
            selections: (0..job.nq)
                .map(|j| Selection::with_floor(k, floors.map_or(f32::NEG_INFINITY, |f| f[j])))
                .collect(),
            block,
            rows: Vec::with_capacity(block),
            norms: vec![0.0; padded],
            scales: vec![f32::NAN; padded],
            special: Vec::new(),
            dots: vec![0.0; dots],
            masks: vec![0; masks],
            thr: vec![f32::INFINITY; thr],
            copy: RowCopy::default(),
        }
    }

    /// Offers `rows` (in increasing order) to every query's selection.
    fn scan(&mut self, mut rows: impl Iterator<Item = usize>) -> Result<()> {
        loop {
            self.rows.clear();
            self.rows.extend(rows.by_ref().take(self.block));
            if self.rows.is_empty() {
                return Ok(());
            }
            match &self.job.bq {
                None => self.scan_one()?,
                Some(bq) => self.scan_batch(bq)?,
            }
        }
    }

    /// One query over the block's rows: the fused dot + norm pass, then the rows that pass.
    fn scan_one(&mut self) -> Result<()> {
        let Job {
            kernels,
            qn,
            prefix,
            ..
        } = *self.job;
        let m = self.rows.len();
        kernels.dot_norm(qn, prefix, &self.rows, &mut self.dots, &mut self.norms);
        // The rows are marked here, as the batch kernel marks a batch's pairs: with the scales
        // of `scale_of`, so that the rows out of range stay unmarked and are scored apart.
        let (lanes, groups) = (kernels.lanes(), m.div_ceil(kernels.lanes()));
        let n = groups * lanes;
        for (s, &nn) in self.scales[..m].iter_mut().zip(&self.norms[..m]) {
            *s = scale_of(nn);
        }
        // The padding of the last group never passes.
        self.scales[m..n].fill(f32::NAN);
        let sel = &mut self.selections[0];
        kernels.pass_masks(
            &self.dots[..n],
            &self.scales[..n],
            sel.threshold(),
            &mut self.masks[..groups],
        );
        select(
            sel,
            &self.dots[..m],
            &self.scales[..m],
            &self.rows,
            &self.masks[..groups],
            lanes,
        );
        // The rows out of range were left unmarked: they are scored apart.
        self.take_special()?;
        let sel = &mut self.selections[0];
        for &i in &self.special {
            let row = self.rows[i];
            sel.push(score(self.dots[i], self.scales[i], qn, prefix, row), row);
        }
        Ok(())
    }

    /// A batch over the block's rows: the batch kernel (dots, norms and marks in one pass over
    /// the rows), then the marked pairs, then the rows whose norm is out of float32's safe
    /// range, every query scoring them apart.
    fn scan_batch(&mut self, bq: &BatchQueries) -> Result<()> {
        let Job {
            kernels,
            qn,
            prefix,
            ..
        } = *self.job;
        let (m, dim) = (self.rows.len(), prefix.dim());
        for (t, sel) in self.thr.iter_mut().zip(&self.selections) {
            *t = sel.threshold();
        }
        let mut batch = Batch {
            queries: bq,
            prefix,
            rows: &self.rows,
            thr: &self.thr,
            dots: &mut self.dots,
            norms: &mut self.norms[..m],
            scales: &mut self.scales[..m],
            masks: &mut self.masks,
        };
        kernels.batch_dots(&mut batch, &mut self.copy);
        select_batch(&mut self.selections, &batch);
        // The rows out of range were left unmarked: every query scores them apart.
        self.take_special()?;
        let padded = bq.padded();
        for &i in &self.special {
            let row = self.rows[i];
            for (j, sel) in self.selections.iter_mut().enumerate() {
                let q = &qn[j * dim..(j + 1) * dim];
                let s = score(self.dots[i * padded + j], self.scales[i], q, prefix, row);
                sel.push(s, row);
            }
        }
        Ok(())
    }

    /// The rows of the block that a kernel gave a NaN scale ([`scale_of`]: a squared norm
    /// outside `[NN_MIN, NN_MAX]`): none of their pairs was marked, so each gets [`row_scale`]'s
    /// scale and goes into `special`, to be offered to the selections apart. Nearly every block
    /// has none; that check is one loop the compiler vectorizes.
    fn take_special(&mut self) -> Result<()> {
        let m = self.rows.len();
        let prefix = self.job.prefix;
        let scales = &mut self.scales[..m];
        self.special.clear();
        if !scales.iter().fold(false, |any, s| any | s.is_nan()) {
            return Ok(());
        }
        for (i, (s, (&nn, &row))) in scales
            .iter_mut()
            .zip(self.norms.iter().zip(&self.rows))
            .enumerate()
        {
            if s.is_nan() {
                *s = row_scale(nn, prefix, row)?;
                self.special.push(i);
            }
        }
        Ok(())
    }
}

/// A batch's [`select`], after [`Kernels::batch_dots`]: offers row `rows[i]` with score
/// `dots[i * padded + j] * scales[i]` to query `j`'s selection for every bit `b` of
/// `masks[i * groups + h]` (`j = h * lanes + b`), each checked again against the selection's
/// threshold, which may have risen since the kernel took it. Nearly every row's words are all
/// zero.
fn select_batch(selections: &mut [Selection], batch: &Batch<'_>) {
    let q = batch.queries;
    let (padded, groups, lanes) = (q.padded(), q.groups(), q.lanes());
    let m = batch.rows.len();
    for (i, (words, (&row, &scale))) in batch.masks[..m * groups]
        .chunks_exact(groups)
        .zip(batch.rows.iter().zip(&batch.scales[..m]))
        .enumerate()
    {
        if words.iter().fold(0, |a, &w| a | w) == 0 {
            continue;
        }
        let dots = &batch.dots[i * padded..(i + 1) * padded];
        for (h, &word) in words.iter().enumerate() {
            let mut mask = word;
            while mask != 0 {
                let j = h * lanes + mask.trailing_zeros() as usize;
                mask &= mask - 1;
                let v = dots[j] * scale;
                let sel = &mut selections[j];
                if v >= sel.threshold() {
                    sel.push(finish(v), row);
                }
            }
        }
    }
}

/// Offers rows `rows[i]` with scores `dots[i] * scales[i]` to `sel`, looking only at the rows
/// the kernel marked (compared with a threshold no higher than the selection's): bit `t` of
/// `masks[g]` marks row `g * lanes + t`. Most rows lose to the threshold, and rows whose scale
/// is NaN (scored exactly elsewhere) never pass, so nearly all words are zero.
#[inline]
fn select(
    sel: &mut Selection,
    dots: &[f32],
    scales: &[f32],
    rows: &[usize],
    masks: &[u32],
    lanes: usize,
) {
    let mut thr = sel.threshold();
    // Nearly all words are zero: test eight at a time.
    for (c, eight) in masks.chunks(8).enumerate() {
        if eight.iter().fold(0, |a, &m| a | m) == 0 {
            continue;
        }
        for (t, &mask) in eight.iter().enumerate() {
            if mask != 0 {
                let g = c * 8 + t;
                let r = g * lanes..(g * lanes + lanes).min(rows.len());
                offer(
                    sel,
                    &mut thr,
                    mask,
                    &dots[r.clone()],
                    &scales[r.clone()],
                    &rows[r],
                );
            }
        }
    }
}

/// Pushes the rows whose bit is set in `mask` and whose score still reaches the threshold
/// `thr` (which may have risen since the mask was taken), keeping `thr` up to date.
#[inline(always)]
fn offer(
    sel: &mut Selection,
    thr: &mut f32,
    mut mask: u32,
    dots: &[f32],
    scales: &[f32],
    rows: &[usize],
) {
    while mask != 0 {
        let t = mask.trailing_zeros() as usize;
        mask &= mask - 1;
        let v = dots[t] * scales[t];
        if v >= *thr {
            sel.push(finish(v), rows[t]);
            *thr = sel.threshold();
        }
    }
}
