//! Search over the quantized tiers of a prefix-blocked file (see `blocked.rs`): a `topk` scan
//! of the 1-bit or int8 codes, a re-scoring gather, and the funnel across widths *and*
//! precisions (e.g. 1-bit at 256 dims keeps 4000 rows, int8 at 768 keeps 200, float32 at 768
//! keeps `k`). The float32 stages are the float32 search's own scan and gather.
//!
//! Scores (the numeric contract; the crate docs have it too):
//! - `binary`: `1 - 2 * h / dim`, `h` the Hamming distance of the sign bits `q[:dim] > 0` and
//!   `x[:dim] > 0` (the cosine of the +-1 vectors), as the float64 division rounded to
//!   float32, so equal distances tie exactly;
//! - `int8`: `dot(q, v) / |v|` with `q` the unit query prefix (as float32 search) and `v` the
//!   row's de-quantized prefix (bin centres); `dot` in float32 (see `kernels/quant.rs`), `|v|`
//!   from the file's float64-exact norm at the last block boundary `b <= dim`, extended over
//!   `[b, dim)` in float64: `sqrt(N_b^2 + sum v[c]^2)`; the division in float64, clamped to
//!   `[-1, 1]`, rounded to float32; a zero `|v|` scores 0.
//! - Order as float32 search: score descending, then row ascending.

use std::marker::PhantomData;

use rayon::prelude::*;

use crate::blocked::{Int8Params, Tier};
use crate::error::{Error, Result};
use crate::funnel::{check_counts, rescore as rescore_f32};
use crate::kernels::quant::{
    bit_words, row_words, BitSeg, CodeSeg, Int8Job, Int8Out, QuantKernels, HAM_ROWS,
};
use crate::kernels::Kernels;
use crate::pool;
use crate::search::{check_dim, scan, Hits, Queries};
use crate::selection::{key_order, merge, merge_keys, Hit, KeySelection, Selection};
use crate::store::NpyFile;

/// The error for a precision the file does not hold; it lists the ones it does.
pub fn missing_tier(tier: Tier, present: &[Tier]) -> Error {
    let names: Vec<&str> = present.iter().map(|t| t.name()).collect();
    Error::InvalidPlan(format!(
        "the corpus holds no {} tier (tiers present: {}); write it with \
         save_prefix_blocked(..., tiers=(..., {:?}))",
        tier.name(),
        names.join(", "),
        tier.name()
    ))
}

/// One block boundary's norms: `rows` float32 values in the mapped file.
#[derive(Clone, Copy, Debug)]
struct Norms(*const f32);

// SAFETY: a read-only view into a mapped file that the tier's borrow keeps alive.
unsafe impl Send for Norms {}
// SAFETY: as above, read-only.
unsafe impl Sync for Norms {}

/// A code tier (int8 or binary) of a mapped file, at full width.
#[derive(Clone, Debug)]
pub struct CodeTier<'a> {
    tier: Tier,
    rows: usize,
    segs: Vec<CodeSeg>,
    int8: Option<&'a Int8Params>,
    /// Int8: per block, `(end column, the rows' de-quantized prefix norms up to it)`.
    norms: Vec<(usize, Norms)>,
    _borrow: PhantomData<&'a [u8]>,
}

impl<'a> CodeTier<'a> {
    /// The `tier` (int8 or binary) of `file`, or an error naming the tiers present.
    pub fn of(file: &'a NpyFile, tier: Tier) -> Result<CodeTier<'a>> {
        let missing = || missing_tier(tier, &file.tiers());
        let layout = file.blocked().ok_or_else(missing)?;
        let offs = layout.blocks_of(tier).ok_or_else(missing)?;
        if tier == Tier::Float32 {
            return Err(Error::InvalidPlan("float32 is not a code tier".into()));
        }
        let bytes = file.bytes();
        let segs = layout
            .columns()
            .zip(offs)
            .map(|((col, width), &off)| CodeSeg {
                col,
                width,
                // SAFETY (of the later reads): the parser checked that every block of
                // rows * stride bytes lies inside the file, whose length it matched exactly.
                base: bytes[off..].as_ptr(),
                stride: if tier == Tier::Binary {
                    width.div_ceil(8)
                } else {
                    width
                },
            })
            .collect();
        let norms = match layout.norms_of(tier) {
            Some(n) => layout
                .columns()
                .zip(n)
                .map(|((c, w), &off)| (c + w, Norms(bytes[off..].as_ptr().cast::<f32>())))
                .collect(),
            None => Vec::new(),
        };
        Ok(CodeTier {
            tier,
            rows: layout.rows,
            segs,
            int8: layout.int8.as_ref(),
            norms,
            _borrow: PhantomData,
        })
    }

    /// The segments covering `[0, dim)`, the last one cut at `dim`.
    fn prefix(&self, dim: usize) -> Vec<CodeSeg> {
        self.segs
            .iter()
            .filter(|s| s.col < dim)
            .map(|s| CodeSeg {
                width: s.width.min(dim - s.col),
                ..*s
            })
            .collect()
    }
}

/// One stage's scoring of rows against every query (or one of them).
struct Scorer<'a> {
    kernels: QuantKernels,
    rows: usize,
    dim: usize,
    nq: usize,
    segs: Vec<CodeSeg>,
    kind: Kind<'a>,
}

enum Kind<'a> {
    Binary {
        /// The prefix's segments, prepared for the kernel.
        bits: Vec<BitSeg>,
        words: usize,
        /// `nq x words`, and transposed `words x nq` for the batch kernel.
        qw: Vec<u64>,
        qt: Vec<u64>,
        /// The score of each distance `h` in `0..=dim`.
        table: Vec<f32>,
    },
    Int8 {
        params: &'a Int8Params,
        /// Unit queries, `nq x dim`.
        qs: Vec<f32>,
        /// The last block boundary at or below `dim`, and the norms there (none: 0).
        tail_from: usize,
        base: Option<Norms>,
    },
}

/// Reused buffers of a scorer (sized by the block, never by the corpus).
#[derive(Default)]
struct Scratch {
    words: Vec<u64>,
    ham: Vec<u32>,
    v: Vec<f32>,
    dots: Vec<f32>,
    tails: Vec<f64>,
}

impl<'a> Scorer<'a> {
    fn new(
        tier: &CodeTier<'a>,
        queries: Queries<'_>,
        dim: usize,
        kernels: QuantKernels,
    ) -> Result<Scorer<'a>> {
        let segs = tier.prefix(dim);
        let nq = queries.len();
        let kind = match tier.tier {
            Tier::Binary => {
                let bits = BitSeg::of(&segs);
                let words = bit_words(&bits);
                let mut qw = vec![0u64; nq * words];
                queries.normalized(dim)?; // checks NaN/Inf
                for (j, out) in qw.chunks_exact_mut(words.max(1)).enumerate().take(nq) {
                    let mut packed = Vec::with_capacity(dim.div_ceil(8) + segs.len());
                    let mut qsegs = Vec::with_capacity(segs.len());
                    let q = &queries.row(j)[..dim];
                    let mut starts = Vec::with_capacity(segs.len());
                    for s in &segs {
                        starts.push(packed.len());
                        crate::blocked::pack_bits(&q[s.col..s.col + s.width], &mut packed);
                    }
                    for (s, &at) in segs.iter().zip(&starts) {
                        qsegs.push(CodeSeg {
                            base: packed[at..].as_ptr(),
                            stride: 0,
                            ..*s
                        });
                    }
                    // SAFETY: each query segment points at its own ceil(width / 8) packed
                    // bytes in `packed` (alive here), read as row 0 with stride 0.
                    unsafe { row_words(&BitSeg::of(&qsegs), 0, out) };
                }
                let mut qt = vec![0u64; nq * words];
                for j in 0..nq {
                    for w in 0..words {
                        qt[w * nq + j] = qw[j * words + w];
                    }
                }
                let d = dim as f64;
                let table = (0..=dim)
                    .map(|h| ((d - 2.0 * h as f64) / d) as f32)
                    .collect();
                Kind::Binary {
                    bits,
                    words,
                    qw,
                    qt,
                    table,
                }
            }
            _ => {
                let params = tier.int8.ok_or_else(|| missing_tier(Tier::Int8, &[]))?;
                let (tail_from, base) = tier
                    .norms
                    .iter()
                    .rev()
                    .find(|(end, _)| *end <= dim)
                    .map_or((0, None), |&(end, p)| (end, Some(p)));
                Kind::Int8 {
                    params,
                    qs: queries.normalized(dim)?,
                    tail_from,
                    base,
                }
            }
        };
        Ok(Scorer {
            kernels,
            rows: tier.rows,
            dim,
            nq,
            segs,
            kind,
        })
    }

    /// Binary tier: the Hamming distances of `rows` to every query (`only = None`; `s.ham`
    /// is `rows x nq`) or to query `only`.
    fn hamming(&self, only: Option<usize>, rows: &[usize], s: &mut Scratch) {
        let Kind::Binary {
            bits,
            words,
            qw,
            qt,
            ..
        } = &self.kind
        else {
            unreachable!("hamming of an int8 scorer")
        };
        let (q, nq) = match only {
            Some(j) => (&qw[j * words..(j + 1) * words], 1),
            None => (&qt[..], self.nq),
        };
        s.words.resize(HAM_ROWS * words, 0);
        s.ham.resize(rows.len() * nq, 0);
        self.kernels
            .hamming((bits, self.rows), q, nq, rows, &mut s.words, &mut s.ham);
    }

    /// The largest Hamming distance of this prefix (its width): a binary selection's key range.
    fn max_key(&self) -> u32 {
        u32::try_from(self.dim).unwrap_or(u32::MAX)
    }

    /// Binary tier, one query: the Hamming distances of the consecutive `rows` (`s.ham`), and
    /// the least of them.
    fn hamming_run(&self, rows: std::ops::Range<usize>, s: &mut Scratch) -> u32 {
        let Kind::Binary { bits, qw, .. } = &self.kind else {
            unreachable!("hamming of an int8 scorer")
        };
        s.ham.resize(rows.len(), 0);
        self.kernels
            .hamming_run((bits, self.rows), qw, rows.start, &mut s.ham)
    }

    /// Scores `rows` against every query (`only = None`; `out` is `rows x nq`) or against
    /// query `only` (`out` is one score per row).
    fn score(
        &self,
        only: Option<usize>,
        rows: &[usize],
        s: &mut Scratch,
        out: &mut [f32],
    ) -> Result<()> {
        let nq = if only.is_some() { 1 } else { self.nq };
        let m = rows.len();
        match &self.kind {
            Kind::Binary { table, .. } => {
                self.hamming(only, rows, s);
                for (o, &h) in out.iter_mut().zip(&s.ham[..m * nq]) {
                    *o = table[h as usize];
                }
            }
            Kind::Int8 {
                params,
                qs,
                tail_from,
                base,
            } => {
                let dim = self.dim;
                let q = match only {
                    Some(j) => &qs[j * dim..(j + 1) * dim],
                    None => &qs[..],
                };
                s.v.resize(dim, 0.0);
                s.dots.resize(m * nq, 0.0);
                s.tails.resize(m, 0.0);
                let job = Int8Job {
                    segs: &self.segs,
                    start: &params.start,
                    step: &params.step,
                    qs: q,
                    nq,
                    rows,
                    tail_from: *tail_from,
                    norms: base.map_or(std::ptr::null(), |p| p.0),
                };
                let buffers = Int8Out {
                    v: &mut s.v,
                    dots: &mut s.dots,
                    tails: &mut s.tails,
                };
                self.kernels.int8(job, self.rows, buffers);
                for (i, &row) in rows.iter().enumerate() {
                    let nb = match base {
                        // SAFETY: row < rows (the kernel checked it) and the norm array holds
                        // `rows` floats inside the file (checked by the parser), 4-aligned
                        // (64-byte offset in a page-aligned map).
                        Some(p) => unsafe { p.0.add(row).read() },
                        None => 0.0,
                    };
                    if !(nb.is_finite() && nb >= 0.0) {
                        return Err(Error::BadHeader {
                            path: "corpus".into(),
                            reason: format!("corrupt int8 tier: row {row} has norm {nb}"),
                        });
                    }
                    let norm = (f64::from(nb) * f64::from(nb) + s.tails[i]).sqrt();
                    for (o, &dot) in out[i * nq..(i + 1) * nq]
                        .iter_mut()
                        .zip(&s.dots[i * nq..(i + 1) * nq])
                    {
                        *o = if norm > 0.0 {
                            let v = (f64::from(dot) / norm).clamp(-1.0, 1.0) as f32;
                            if v == 0.0 {
                                0.0
                            } else {
                                v
                            }
                        } else {
                            0.0
                        };
                    }
                }
            }
        }
        Ok(())
    }
}

/// Rows scored per block of a scan.
const BLOCK_ROWS: usize = 1024;
/// Rows per block of a one-query binary scan: a block's distances are summed segment by
/// segment and then selected; shorter blocks measured faster on cache-sized codes and no
/// slower on larger ones (docs/quantized.md).
const RUN_ROWS: usize = 256;

/// A selection bound as i32, for the scan's branch-free tests: a signed compare is one SSE2
/// instruction, an unsigned one three. Distances and bounds are at most the prefix width plus
/// one, far below `i32::MAX`; a distance that did not fit would wrap negative and pass the
/// test, which only sends it on to [`KeySelection::push`], the exact test.
#[inline]
fn signed(bound: u32) -> i32 {
    bound.min(i32::MAX as u32) as i32
}

/// Bit `j` set where `(hs[j] as i32) < bounds[j]`, for the first 64 lanes: which queries may
/// take a row. Four lanes per SSE2 compare and `movmskps` on x86-64 (part of its baseline, so
/// no dispatch); one lane at a time elsewhere and for the last `len % 4`.
#[inline]
fn below_mask(hs: &[u32], bounds: &[i32]) -> u64 {
    let n = hs.len().min(bounds.len()).min(64);
    let mut mask = 0u64;
    let mut j = 0;
    #[cfg(target_arch = "x86_64")]
    {
        use std::arch::x86_64::{
            _mm_castsi128_ps, _mm_cmplt_epi32, _mm_loadu_si128, _mm_movemask_ps,
        };
        while j + 4 <= n {
            // SAFETY: SSE2 is part of the x86-64 baseline; lanes j..j + 4 lie inside both
            // slices (j + 4 <= n), read unaligned.
            let lanes = unsafe {
                let h = _mm_loadu_si128(hs.as_ptr().add(j).cast());
                let b = _mm_loadu_si128(bounds.as_ptr().add(j).cast());
                _mm_movemask_ps(_mm_castsi128_ps(_mm_cmplt_epi32(h, b)))
            };
            mask |= u64::from(lanes as u32) << j;
            j += 4;
        }
    }
    for (i, (&h, &b)) in hs.iter().zip(bounds).enumerate().take(n).skip(j) {
        mask |= u64::from((h as i32) < b) << i;
    }
    mask
}

/// Distances of a one-query binary scan tested together against the selection's bound.
const GROUP: usize = 16;
/// Rows per parallel chunk at least.
const MIN_CHUNK_ROWS: usize = 8192;

/// One thread's selections and buffers.
struct Worker {
    heaps: Vec<Selection>,
    rows: Vec<usize>,
    out: Vec<f32>,
    scratch: Scratch,
}

/// Top-`k` of every row for every query, by the scorer's scores; best first if `sorted` (a
/// funnel's first stage needs only the set, as the next stage re-scores it in row order).
fn scan_codes(scorer: &Scorer<'_>, k: usize, sorted: bool) -> Result<Vec<Vec<Hit>>> {
    if let Kind::Binary { table, .. } = &scorer.kind {
        let finish = |mut keys: Vec<(u32, usize)>| -> Vec<Hit> {
            if sorted {
                keys.sort_unstable_by_key(key_order);
            }
            keys.into_iter()
                .map(|(h, row)| Hit {
                    score: table[h as usize],
                    row,
                })
                .collect()
        };
        return Ok(per_query(scan_binary(scorer, k), |_, keys| finish(keys)));
    }
    let (n, nq) = (scorer.rows, scorer.nq);
    let k = k.min(n);
    if n == 0 || nq == 0 {
        return Ok(vec![Vec::new(); nq]);
    }
    let threads = pool::current_threads();
    let chunk = n.div_ceil(threads * 4).max(MIN_CHUNK_ROWS);
    let starts: Vec<usize> = (0..n).step_by(chunk).collect();
    let new = || -> Result<Worker> {
        Ok(Worker {
            heaps: (0..nq).map(|_| Selection::new(k)).collect(),
            rows: Vec::with_capacity(BLOCK_ROWS),
            out: vec![0.0; BLOCK_ROWS * nq],
            scratch: Scratch::default(),
        })
    };
    let run = |w: Result<Worker>, &start: &usize| -> Result<Worker> {
        let mut w = w?;
        let end = (start + chunk).min(n);
        for b in (start..end).step_by(BLOCK_ROWS) {
            w.rows.clear();
            w.rows.extend(b..(b + BLOCK_ROWS).min(end));
            scorer.score(None, &w.rows, &mut w.scratch, &mut w.out)?;
            for (i, &row) in w.rows.iter().enumerate() {
                for (heap, &s) in w.heaps.iter_mut().zip(&w.out[i * nq..(i + 1) * nq]) {
                    if s >= heap.threshold() {
                        heap.push(s, row);
                    }
                }
            }
        }
        Ok(w)
    };
    let workers: Vec<Result<Worker>> = if starts.len() == 1 {
        vec![starts.iter().fold(new(), run)]
    } else {
        pool::install(|| starts.par_iter().fold(new, run).collect())
    };
    let mut per_query: Vec<Vec<Vec<Hit>>> = vec![Vec::new(); nq];
    for w in workers {
        for (j, heap) in w?.heaps.into_iter().enumerate() {
            per_query[j].push(heap.into_vec());
        }
    }
    Ok(per_query.into_iter().map(|p| merge(p, k)).collect())
}

/// One thread's key selections and buffers of a binary scan.
struct BinWorker {
    heaps: Vec<KeySelection>,
    /// Each query's [`KeySelection::bound`] for the next row (a copy, read for every row), as
    /// i32 ([`signed`]).
    bounds: Vec<i32>,
    rows: Vec<usize>,
    scratch: Scratch,
}

/// The seeding sample of a binary scan: this many blocks of [`SEED_BLOCK`] consecutive rows,
/// spread evenly over the corpus.
const SEED_BLOCKS: usize = 256;
const SEED_BLOCK: usize = 64;

/// Per query, a distance cut that at least `k` rows should meet, read from the distances of
/// the seeding sample with a wide margin (1.25 times the expected count plus 4 standard
/// deviations); `dim` (no cut) where the sample is too small to tell: a small `k` needs no
/// seed, as the selection's own cut drops within a few thousand rows. A large `k` (a funnel's
/// first stage keeps thousands) would otherwise push every row until its selection fills.
fn seed_cuts(scorer: &Scorer<'_>, k: usize) -> Vec<u32> {
    let (n, nq, dim) = (scorer.rows, scorer.nq, scorer.dim);
    let none = vec![scorer.max_key(); nq];
    let sample = SEED_BLOCKS * SEED_BLOCK;
    let expect = k as f64 * sample as f64 / n as f64;
    if n < 4 * sample || expect < 16.0 {
        return none;
    }
    let need = 1.25 * expect + 4.0 * expect.sqrt();
    // Per query, a histogram of the sample's distances; the blocks are scattered reads, so
    // every thread takes some (the gather kernel: the scan's page-ahead prefetch would only
    // fetch lines past each block).
    let starts: Vec<usize> = (0..SEED_BLOCKS).map(|b| b * n / SEED_BLOCKS).collect();
    let new = || {
        let list = Vec::with_capacity(SEED_BLOCK);
        (Scratch::default(), list, vec![0u32; nq * (dim + 1)])
    };
    let count = |(mut s, mut list, mut hist): (Scratch, Vec<usize>, Vec<u32>), &start: &usize| {
        list.clear();
        list.extend(start..start + SEED_BLOCK);
        scorer.hamming(None, &list, &mut s);
        for hs in s.ham.chunks_exact(nq) {
            for (j, &h) in hs.iter().enumerate() {
                hist[j * (dim + 1) + h as usize] += 1;
            }
        }
        (s, list, hist)
    };
    let hist = pool::install(|| {
        starts
            .par_iter()
            .fold(new, count)
            .map(|(_, _, hist)| hist)
            .reduce_with(|mut a, b| {
                a.iter_mut().zip(&b).for_each(|(x, y)| *x += y);
                a
            })
    })
    .unwrap_or_default();
    hist.chunks_exact(dim + 1)
        .zip(none)
        .map(|(counts, no_cut)| {
            let mut seen = 0.0;
            counts
                .iter()
                .position(|&c| {
                    seen += f64::from(c);
                    seen >= need
                })
                .map_or(no_cut, |key| key as u32)
        })
        .collect()
}

/// Top-`k` of every row for every query of a binary scorer, by Hamming distance (ascending,
/// then row ascending: the score order, as the score decreases with the distance), unordered.
/// The selections start from the seeded cuts ([`seed_cuts`]); where a cut proves too tight
/// (fewer than `k` rows met it), the scan runs again without cuts, so the result is always
/// exact.
fn scan_binary(scorer: &Scorer<'_>, k: usize) -> Vec<Vec<(u32, usize)>> {
    let k = k.min(scorer.rows);
    let seeds = seed_cuts(scorer, k);
    let lists = scan_binary_from(scorer, k, &seeds);
    if lists.iter().all(|l| l.len() == k) {
        return lists;
    }
    scan_binary_from(scorer, k, &vec![scorer.max_key(); scorer.nq])
}

/// [`scan_binary`] with each query's selection cut at `seeds[j]` from the start.
fn scan_binary_from(scorer: &Scorer<'_>, k: usize, seeds: &[u32]) -> Vec<Vec<(u32, usize)>> {
    let (n, nq) = (scorer.rows, scorer.nq);
    if n == 0 || nq == 0 {
        return vec![Vec::new(); nq];
    }
    let threads = pool::current_threads();
    // Every selection fills up before its cut bites, and a batch holds one per query: a batch
    // takes one chunk per thread, so that fewer selections fill up.
    let parts = if nq > 1 { threads } else { threads * 4 };
    let chunk = n.div_ceil(parts).max(MIN_CHUNK_ROWS);
    let starts: Vec<usize> = (0..n).step_by(chunk).collect();
    let max_key = scorer.max_key();
    let new = || BinWorker {
        heaps: seeds
            .iter()
            .map(|&cut| KeySelection::with_cut(k, max_key, cut))
            .collect(),
        bounds: vec![0; nq],
        rows: Vec::with_capacity(BLOCK_ROWS),
        scratch: Scratch::default(),
    };
    let run = |mut w: BinWorker, &start: &usize| -> BinWorker {
        let end = (start + chunk).min(n);
        // Rows ascend within a chunk, but a worker may take chunks in any order.
        for (b, heap) in w.bounds.iter_mut().zip(&w.heaps) {
            *b = signed(heap.bound(start));
        }
        let block = if nq == 1 { RUN_ROWS } else { BLOCK_ROWS };
        for b in (start..end).step_by(block) {
            let rows = b..(b + block).min(end);
            if nq == 1 {
                let least = scorer.hamming_run(rows.clone(), &mut w.scratch);
                let (heap, bound) = (&mut w.heaps[0], &mut w.bounds[0]);
                // Once the cut has dropped, most blocks hold no row below it.
                if signed(least) >= *bound {
                    continue;
                }
                // Groups of GROUP distances tested branch-free (vectorized) first: most rows
                // fail.
                for (g, hs) in w.scratch.ham.chunks(GROUP).enumerate() {
                    let b = *bound;
                    let any = match <&[u32; GROUP]>::try_from(hs) {
                        Ok(full) => full.iter().fold(false, |a, &h| a | ((h as i32) < b)),
                        Err(_) => hs.iter().any(|&h| (h as i32) < b),
                    };
                    if !any {
                        continue;
                    }
                    for (i, &h) in hs.iter().enumerate() {
                        if (h as i32) < *bound {
                            let row = rows.start + g * GROUP + i;
                            heap.push(h, row);
                            *bound = signed(heap.bound(row + 1));
                        }
                    }
                }
                continue;
            }
            w.rows.clear();
            w.rows.extend(rows);
            scorer.hamming(None, &w.rows, &mut w.scratch);
            for (&row, hs) in w.rows.iter().zip(w.scratch.ham.chunks_exact(nq)) {
                // Whether any query may take the row, branch-free (vectorized); most rows
                // fail it once the cuts have dropped.
                let any = hs
                    .iter()
                    .zip(&w.bounds)
                    .fold(false, |a, (&h, &b)| a | ((h as i32) < b));
                if !any {
                    continue;
                }
                // A bit mask of the queries that may take it; then only those.
                for (g, (hs, bounds)) in hs.chunks(64).zip(w.bounds.chunks_mut(64)).enumerate() {
                    let mut mask = below_mask(hs, bounds);
                    while mask != 0 {
                        let j = mask.trailing_zeros() as usize;
                        mask &= mask - 1;
                        let heap = &mut w.heaps[g * 64 + j];
                        heap.push(hs[j], row);
                        bounds[j] = signed(heap.bound(row + 1));
                    }
                }
            }
        }
        w
    };
    let workers: Vec<BinWorker> = if starts.len() == 1 {
        vec![starts.iter().fold(new(), run)]
    } else {
        pool::install(|| starts.par_iter().fold(new, run).collect())
    };
    let mut parts: Vec<Vec<Vec<(u32, usize)>>> = vec![Vec::new(); nq];
    for w in workers {
        for (j, heap) in w.heaps.into_iter().enumerate() {
            parts[j].push(heap.into_vec());
        }
    }
    per_query(parts, |_, p| merge_keys(p, k))
}

/// Rows re-scored per task of one query's list (a single query's list is split across the
/// pool; a batch's queries run in parallel already).
const RESCORE_CHUNK: usize = 1024;

/// Re-scores query `j`'s `list` with the scorer, keeps the best `keep`.
fn rescore_codes(
    scorer: &Scorer<'_>,
    j: usize,
    list: Vec<Hit>,
    keep: usize,
    split: bool,
) -> Result<Vec<Hit>> {
    let mut rows: Vec<usize> = list.into_iter().map(|h| h.row).collect();
    rows.sort_unstable();
    let part = |rows: &[usize]| -> Result<Vec<Hit>> {
        let mut out = vec![0.0f32; rows.len()];
        scorer.score(Some(j), rows, &mut Scratch::default(), &mut out)?;
        let mut heap = Selection::new(keep);
        for (&row, &s) in rows.iter().zip(&out) {
            heap.push(s, row);
        }
        Ok(heap.into_vec())
    };
    let parts: Vec<Vec<Hit>> = if split && rows.len() > RESCORE_CHUNK {
        pool::install(|| {
            rows.par_chunks(RESCORE_CHUNK)
                .map(part)
                .collect::<Result<_>>()
        })?
    } else {
        vec![part(&rows)?]
    };
    Ok(merge(parts, keep))
}

/// Top-`k` rows of `file`'s `tier` by the score of that precision at width `dim`.
pub fn topk(file: &NpyFile, queries: Queries<'_>, dim: i64, k: i64, tier: Tier) -> Result<Hits> {
    funnel(file, queries, &[dim], &[tier], &[], k)
}

/// Checks a cascade across precisions: each stage's width within the query and the corpus,
/// each stage wider or finer than the one before and neither narrower nor coarser, the
/// counts as [`check_counts`] wants them.
pub fn check_stages(
    dims: &[i64],
    tiers: &[Tier],
    candidates: &[i64],
    k: i64,
    query_cols: usize,
    corpus_cols: usize,
) -> Result<(Vec<usize>, Vec<usize>, usize)> {
    if dims.is_empty() || dims.len() != tiers.len() {
        return Err(Error::InvalidPlan(format!(
            "need one precision per width: {} widths, {} precisions",
            dims.len(),
            tiers.len()
        )));
    }
    let (cands, k) = check_counts(candidates, k, dims.len())?;
    let dims_u = dims
        .iter()
        .map(|&d| check_dim(d, query_cols, corpus_cols))
        .collect::<Result<Vec<_>>>()?;
    for i in 1..dims.len() {
        let (a, b) = ((dims_u[i - 1], tiers[i - 1]), (dims_u[i], tiers[i]));
        if b.0 < a.0 || b.1 < a.1 || a == b {
            return Err(Error::InvalidPlan(format!(
                "each stage must be wider or finer than the one before, and neither narrower \
                 nor coarser: stage {} is ({}, {}) after ({}, {})",
                i,
                b.0,
                b.1.name(),
                a.0,
                a.1.name()
            )));
        }
    }
    Ok((dims_u, cands, k))
}

/// The funnel across widths and precisions; scores are those of the last stage.
pub fn funnel(
    file: &NpyFile,
    queries: Queries<'_>,
    dims: &[i64],
    tiers: &[Tier],
    candidates: &[i64],
    k: i64,
) -> Result<Hits> {
    let cols = file.shape().1;
    let (dims, cands, k) = check_stages(dims, tiers, candidates, k, queries.cols(), cols)?;
    let present = file.tiers();
    if let Some(&t) = tiers.iter().find(|t| !present.contains(t)) {
        return Err(missing_tier(t, &present));
    }
    let kernels = Kernels::active()?;
    let qk = QuantKernels::new(kernels.backend());
    let (n, nq) = (file.shape().0, queries.len());
    if n as u64 >= 1 << 48 {
        // A 1-bit selection orders (distance, row) as one integer with 48 bits for the row
        // (`selection::key_order`); no mappable file comes near.
        return Err(Error::InvalidPlan(format!(
            "the file has {n} rows; quantized search takes fewer than 2^48"
        )));
    }
    let keep: Vec<usize> = cands.iter().copied().chain([k]).map(|c| c.min(n)).collect();
    let mut lists: Option<Vec<Vec<Hit>>> = None;
    for (stage, (&dim, &tier)) in dims.iter().zip(tiers).enumerate() {
        let keep = keep[stage];
        lists = Some(if tier == Tier::Float32 {
            let matrix = file.matrix()?;
            let prefix = matrix.prefix(dim);
            let qn = queries.normalized(dim)?;
            match lists {
                None => scan(&kernels, &qn, nq, &prefix, keep, 0..n)?,
                Some(lists) => per_query::<_, _, Result<_>>(lists, |j, list| {
                    rescore_f32(&kernels, &qn[j * dim..(j + 1) * dim], &prefix, list, keep)
                })?,
            }
        } else {
            let codes = CodeTier::of(file, tier)?;
            let scorer = Scorer::new(&codes, queries, dim, qk)?;
            match lists {
                None => scan_codes(&scorer, keep, stage + 1 == dims.len())?,
                Some(lists) => {
                    let split = lists.len() == 1;
                    per_query::<_, _, Result<_>>(lists, |j, list| {
                        rescore_codes(&scorer, j, list, keep, split)
                    })?
                }
            }
        });
    }
    Ok(Hits::from_lists(
        lists.unwrap_or_default(),
        keep[keep.len() - 1],
    ))
}

/// `f(j, item)` for every query's item, collected in order (a `Result` stops at an error); on
/// the pool when there are several.
fn per_query<T: Send, U: Send, C>(items: Vec<T>, f: impl Fn(usize, T) -> U + Sync) -> C
where
    C: FromIterator<U> + FromParallelIterator<U> + Send,
{
    if items.len() > 1 {
        pool::install(|| {
            items
                .into_par_iter()
                .enumerate()
                .map(|(j, x)| f(j, x))
                .collect()
        })
    } else {
        items
            .into_iter()
            .enumerate()
            .map(|(j, x)| f(j, x))
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        #[test]
        fn below_mask_equals_lane_by_lane(
            lanes in proptest::collection::vec((0u32..8, 0i32..8), 0..70),
            wide in proptest::collection::vec(any::<u32>(), 0..70),
        ) {
            // Small values (many equal pairs) and any u32 (wrapping as i32).
            let (hs, bounds): (Vec<u32>, Vec<i32>) = lanes.into_iter().unzip();
            let wide_b: Vec<i32> = wide.iter().map(|&h| signed(h.rotate_left(7))).collect();
            for (hs, bounds) in [(&hs, &bounds), (&wide, &wide_b)] {
                let want = hs.iter().zip(bounds.iter()).take(64).enumerate()
                    .fold(0u64, |m, (j, (&h, &b))| m | (u64::from((h as i32) < b) << j));
                prop_assert_eq!(below_mask(hs, bounds), want);
            }
        }
    }
}
