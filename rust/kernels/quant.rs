//! Kernels of the quantized tiers: Hamming distances of 1-bit codes and dot products of
//! de-quantized int8 codes, for one query or a batch (the same code path: a batch reuses each
//! row's words or de-quantized values for every query, so a row's value never depends on the
//! batch).
//!
//! Each kernel is written once as plain Rust and compiled per backend inside a
//! `#[target_feature]` wrapper, where LLVM's vectorizer turns it into that ISA's instructions:
//! the batch popcount loop (queries in lanes, each row word broadcast) becomes `vpopcntq` with
//! AVX-512 VPOPCNTDQ, the nibble-table `vpshufb` popcount with AVX2, and `cnt` with NEON; the
//! int8 dot products become 16-lane widen + FMA. The scalar build, with no features, is the
//! reference they are all tested against (`tests.rs`).
//!
//! Numeric contract (also in the crate docs):
//! - binary: `h = popcount(q_bits ^ x_bits)` over the prefix's bits, the row's bits beyond
//!   `dim` masked off; exact integers, identical on every backend.
//! - int8: the row's de-quantized prefix `v[c] = min[c] + step[c] * (code + 128.5)` (float32,
//!   unfused, identical on every backend), then `dot(q, v)` in float32 with 16 partial sums
//!   (lane `l` takes columns `l, l + 16, ...` of the prefix) added pairwise
//!   (`((s0 + s1) + (s2 + s3)) + ...`); SIMD backends fuse the multiply-adds, the scalar one
//!   does not, so backends may differ in the last bits.

use crate::kernels::Backend;

/// Columns `[col, col + width)` of every row of a code tier; row `r`'s bytes start at
/// `base + r * stride`.
#[derive(Clone, Copy, Debug)]
pub struct CodeSeg {
    /// First column.
    pub col: usize,
    /// Columns covered (of the prefix: the last segment may be cut).
    pub width: usize,
    pub(crate) base: *const u8,
    /// Bytes from one row to the next.
    pub(crate) stride: usize,
}

// SAFETY: a CodeSeg is a read-only view into a mapped file that its owner keeps alive;
// nothing writes through it.
unsafe impl Send for CodeSeg {}
// SAFETY: as above, read-only.
unsafe impl Sync for CodeSeg {}

/// A segment of a binary prefix, prepared once per scan: its whole 64-bit words and its last,
/// partial word with the mask of its bits (built here, never per row).
#[derive(Clone, Copy, Debug)]
pub(crate) struct BitSeg {
    base: *const u8,
    stride: usize,
    /// Whole words of the segment's prefix (`width / 64`).
    full: usize,
    /// Bytes of the partial last word (0: none).
    tail_bytes: usize,
    /// The bits of the partial last word kept (packbits order: whole bytes, then the top
    /// bits of the last byte), as the little-endian word reads them.
    mask: u64,
    /// Whether 8 bytes can be read at the partial word without leaving the row's stride.
    wide_tail: bool,
}

// SAFETY: as `CodeSeg`: a read-only view into memory its owner keeps alive.
unsafe impl Send for BitSeg {}
// SAFETY: as above, read-only.
unsafe impl Sync for BitSeg {}

impl BitSeg {
    /// The prepared form of each segment of a binary prefix.
    pub(crate) fn of(segs: &[CodeSeg]) -> Vec<BitSeg> {
        segs.iter()
            .map(|s| {
                let (full, bits) = (s.width / 64, s.width % 64);
                let mut mask = [0u8; 8];
                mask[..bits / 8].fill(0xff);
                if bits % 8 != 0 {
                    mask[bits / 8] = 0xffu8 << (8 - bits % 8);
                }
                BitSeg {
                    base: s.base,
                    stride: s.stride,
                    full,
                    tail_bytes: bits.div_ceil(8),
                    mask: u64::from_le_bytes(mask),
                    wide_tail: s.stride >= 8 * full + 8,
                }
            })
            .collect()
    }

    /// The same rows from word `w` of each row on (the tail, if any, kept; `w <= full`, and
    /// the tail's bytes, at `8 * full` from the row's start, are where they were).
    #[inline(always)]
    fn at_word(&self, w: usize) -> BitSeg {
        BitSeg {
            base: self.base.wrapping_add(8 * w),
            full: self.full - w,
            ..*self
        }
    }

    /// Words of this segment's prefix.
    #[inline(always)]
    fn words(&self) -> usize {
        self.full + usize::from(self.tail_bytes > 0)
    }
}

/// Words of a binary prefix: each segment's bits in whole `u64` words (big-endian byte order
/// within a word does not matter for a popcount of an XOR, as long as query and row agree).
pub(crate) fn bit_words(segs: &[BitSeg]) -> usize {
    segs.iter().map(BitSeg::words).sum()
}

/// Calls `f(w, word)` for each word `w` of row `row`'s prefix bits (segment by segment, the
/// bits beyond each segment's width zeroed).
///
/// # Safety
/// `row` is a row of the tier `segs` came from (each segment's `ceil(width / 8)` bytes at
/// `base + row * stride` are readable).
#[inline(always)]
unsafe fn for_each_word(segs: &[BitSeg], row: usize, mut f: impl FnMut(usize, u64)) {
    let mut at = 0;
    for s in segs {
        // SAFETY: the caller guarantees the row's bytes of this segment are readable.
        let p = unsafe { s.base.add(row * s.stride) };
        for w in 0..s.full {
            // SAFETY: word `w < full` lies inside the row's `ceil(width / 8)` bytes.
            f(
                at + w,
                u64::from_le(unsafe { p.add(8 * w).cast::<u64>().read_unaligned() }),
            );
        }
        at += s.full;
        if s.tail_bytes > 0 {
            // SAFETY: `wide_tail` says 8 bytes from here stay inside the row's stride;
            // otherwise only the row's own `tail_bytes` bytes are read.
            let word = unsafe {
                let t = p.add(8 * s.full);
                if s.wide_tail {
                    u64::from_le(t.cast::<u64>().read_unaligned())
                } else {
                    let mut b = [0u8; 8];
                    std::ptr::copy_nonoverlapping(t, b.as_mut_ptr(), s.tail_bytes);
                    u64::from_le_bytes(b)
                }
            };
            f(at, word & s.mask);
            at += 1;
        }
    }
}

/// Row `row`'s prefix bits as words (see [`for_each_word`]).
///
/// # Safety
/// As [`for_each_word`]; `out.len() == bit_words(segs)`.
#[inline(always)]
pub(crate) unsafe fn row_words(segs: &[BitSeg], row: usize, out: &mut [u64]) {
    // SAFETY: forwarded contract.
    unsafe { for_each_word(segs, row, |w, x| out[w] = x) }
}

/// Rows scored together by the Hamming kernel: each query word loaded is used for this many
/// rows (register blocking, as the float batch kernel does).
pub(crate) const HAM_ROWS: usize = 4;
/// Queries per vector group of the Hamming kernel (two AVX2 registers of `u64`, one of
/// AVX-512).
const HAM_LANES: usize = 8;

/// Hamming distances of `R` rows (words `xs[r * words..]`) to queries `j0..j0 + HAM_LANES`,
/// accumulated in `u64` lanes (the vector popcount's width) and written to `out` (`rows x
/// nq`, the block's first row at 0).
#[inline(always)]
fn ham_group<const R: usize>(
    xs: &[u64],
    words: usize,
    qt: &[u64],
    nq: usize,
    j0: usize,
    out: &mut [u32],
) {
    let mut acc = [[0u64; HAM_LANES]; R];
    for w in 0..words {
        let q: &[u64; HAM_LANES] = qt[w * nq + j0..w * nq + j0 + HAM_LANES]
            .try_into()
            .expect("HAM_LANES words");
        for (r, a) in acc.iter_mut().enumerate() {
            let x = xs[r * words + w];
            for l in 0..HAM_LANES {
                a[l] += u64::from((x ^ q[l]).count_ones());
            }
        }
    }
    for (r, a) in acc.iter().enumerate() {
        for (o, &v) in out[r * nq + j0..r * nq + j0 + HAM_LANES].iter_mut().zip(a) {
            // A distance is at most the prefix width, which fits in u32.
            *o = v as u32;
        }
    }
}

/// Hamming distances of `R` rows to every query: [`ham_group`] over the queries in groups,
/// the last `nq % HAM_LANES` one by one.
#[inline(always)]
fn ham_rows<const R: usize>(xs: &[u64], words: usize, qt: &[u64], nq: usize, out: &mut [u32]) {
    let grouped = nq - nq % HAM_LANES;
    for j0 in (0..grouped).step_by(HAM_LANES) {
        ham_group::<R>(xs, words, qt, nq, j0, out);
    }
    for j in grouped..nq {
        for r in 0..R {
            let x = &xs[r * words..(r + 1) * words];
            out[r * nq + j] = x
                .iter()
                .enumerate()
                .map(|(w, &xw)| (xw ^ qt[w * nq + j]).count_ones())
                .sum();
        }
    }
}

/// Hamming distances: `out[i * nq + j] = sum_w popcount(row_i[w] ^ qt[w * nq + j])`, with
/// the queries' words transposed (`qt` is `words x nq`) so that the inner loop runs over
/// queries, in vector lanes; [`HAM_ROWS`] rows at a time share each load of a query word.
///
/// # Safety
/// Every row is a row of the tier; `qt.len() == bit_words(segs) * nq`;
/// `out.len() >= rows.len() * nq`; `scratch.len() == HAM_ROWS * bit_words(segs)`.
#[inline(always)]
unsafe fn hamming_generic(
    segs: &[BitSeg],
    qt: &[u64],
    nq: usize,
    rows: &[usize],
    scratch: &mut [u64],
    out: &mut [u32],
) {
    let words = bit_words(segs);
    if nq == 1 {
        // One query: each row word straight from the file, the sum in a register.
        for (i, (o, &row)) in out.iter_mut().zip(rows).enumerate() {
            if let Some(&ahead) = rows.get(i + PREFETCH_ROWS) {
                for s in segs {
                    prefetch(s.base.wrapping_add(ahead * s.stride));
                }
            }
            let mut h = 0;
            // SAFETY: forwarded contract.
            unsafe { for_each_word(segs, row, |w, x| h += (x ^ qt[w]).count_ones()) };
            *o = h;
        }
        return;
    }
    if nq < HAM_LANES {
        // Few queries: each row word straight from the file (no gather to amortize).
        for (o, &row) in out.chunks_exact_mut(nq).zip(rows) {
            let mut acc = [0u32; HAM_LANES];
            // SAFETY: forwarded contract.
            unsafe {
                for_each_word(segs, row, |w, x| {
                    for (a, &q) in acc.iter_mut().zip(&qt[w * nq..(w + 1) * nq]) {
                        *a += (x ^ q).count_ones();
                    }
                });
            }
            o.copy_from_slice(&acc[..nq]);
        }
        return;
    }
    let mut blocks = rows.chunks_exact(HAM_ROWS);
    let mut i = 0;
    for block in &mut blocks {
        for (r, &row) in block.iter().enumerate() {
            // SAFETY: forwarded contract.
            unsafe { row_words(segs, row, &mut scratch[r * words..(r + 1) * words]) };
        }
        ham_rows::<HAM_ROWS>(scratch, words, qt, nq, &mut out[i * nq..]);
        i += HAM_ROWS;
    }
    for &row in blocks.remainder() {
        // SAFETY: forwarded contract.
        unsafe { row_words(segs, row, &mut scratch[..words]) };
        ham_rows::<1>(scratch, words, qt, nq, &mut out[i * nq..]);
        i += 1;
    }
}

/// How far ahead of the row being scored a scan asks for its codes: the hardware prefetcher
/// stops at each 4 KiB page, and a mapped file's pages are scattered in physical memory.
const RUN_PREFETCH_BYTES: usize = 4096;

/// Adds to `out[i]` the Hamming distance of row `first + i`'s `W` whole words of segment `s`
/// to the query words `q` (a fixed `W`, so that the words stay in registers and the loop over
/// rows is straight pointer arithmetic).
///
/// # Safety
/// Rows `first..first + out.len()` are rows of the tier; `W <= s.full`.
#[inline(always)]
unsafe fn run_words<const W: usize>(s: &BitSeg, q: &[u64], first: usize, out: &mut [u32]) {
    let q: [u64; W] = q[..W].try_into().expect("W query words");
    // SAFETY: row `first` is a row of the tier (caller), so its address is inside the map.
    let mut p = unsafe { s.base.add(first * s.stride) };
    for o in out.iter_mut() {
        prefetch(p.wrapping_add(RUN_PREFETCH_BYTES));
        let mut h = 0;
        for (w, &qw) in q.iter().enumerate() {
            // SAFETY: word `w < W <= full` lies inside this row's bytes of the segment.
            let x = u64::from_le(unsafe { p.add(8 * w).cast::<u64>().read_unaligned() });
            h += (x ^ qw).count_ones();
        }
        *o += h;
        p = p.wrapping_add(s.stride);
    }
}

/// [`run_words`] for a segment whose rows are packed (`stride == 8 * W`, each row exactly its
/// `W` words): the rows' words are one slice, and the loop over rows vectorizes (rows in
/// vector lanes: whole-vector loads, de-interleaved, a vector popcount per word position).
/// Used for `W <= 3`, where it measured faster than [`run_words`]; at 4 words the row-by-row
/// loop was as fast, and at 8 the vectorizer gathers. No software prefetch: in this loop it
/// measured slower than the hardware's own.
///
/// # Safety
/// Rows `first..first + out.len()` are rows of the tier; `s.stride == 8 * W`, `W <= s.full`.
#[inline(always)]
unsafe fn run_dense<const W: usize>(s: &BitSeg, q: &[u64], first: usize, out: &mut [u32]) {
    let q: [u64; W] = q[..W].try_into().expect("W query words");
    // SAFETY: the rows are rows of the tier (caller), packed at 8 * W bytes from the first
    // one's, so their `out.len() * W` words are readable; the map is read-only.
    let words = unsafe {
        std::slice::from_raw_parts(s.base.add(first * 8 * W).cast::<[u8; 8]>(), out.len() * W)
    };
    for (o, row) in out.iter_mut().zip(words.chunks_exact(W)) {
        let mut h = 0;
        for (x, qw) in row.iter().zip(&q) {
            h += (u64::from_le_bytes(*x) ^ qw).count_ones();
        }
        *o += h;
    }
}

/// Hamming distances of the consecutive rows `first..first + out.len()` to one query `q`
/// (`bit_words(segs)` words): the scan's form of [`hamming_generic`] with `nq == 1`, segment by
/// segment over a block of rows, each row's address a pointer step instead of an index.
/// Returns the least of the distances (`u32::MAX` for no rows): a scan skips a block whose
/// least distance does not beat its selection's cut.
///
/// # Safety
/// Rows `first..first + out.len()` are rows of the tier; `q.len() == bit_words(segs)`.
#[inline(always)]
unsafe fn hamming_run_generic(segs: &[BitSeg], q: &[u64], first: usize, out: &mut [u32]) -> u32 {
    out.fill(0);
    let mut at = 0;
    for s in segs {
        // The whole words in runs of up to 8, each run's length a constant (a segment's
        // width is usually a multiple of 64 bits: 1 to 12 words).
        let mut w = 0;
        while w < s.full {
            let run = (s.full - w).min(8);
            let (seg, qs) = (s.at_word(w), &q[at + w..]);
            let packed = s.stride == 8 * s.full && run == s.full;
            // SAFETY: forwarded contract; every arm reads `run` words and `w + run <= full`
            // (a packed arm: the whole row, `stride == 8 * run`).
            unsafe {
                match (run, packed) {
                    (1, true) => run_dense::<1>(&seg, qs, first, out),
                    (2, true) => run_dense::<2>(&seg, qs, first, out),
                    (3, true) => run_dense::<3>(&seg, qs, first, out),
                    (1, _) => run_words::<1>(&seg, qs, first, out),
                    (2, _) => run_words::<2>(&seg, qs, first, out),
                    (3, _) => run_words::<3>(&seg, qs, first, out),
                    (4, _) => run_words::<4>(&seg, qs, first, out),
                    (5, _) => run_words::<5>(&seg, qs, first, out),
                    (6, _) => run_words::<6>(&seg, qs, first, out),
                    (7, _) => run_words::<7>(&seg, qs, first, out),
                    _ => run_words::<8>(&seg, qs, first, out),
                }
            }
            w += run;
        }
        at += s.full;
        if s.tail_bytes > 0 {
            let tail = [s.at_word(s.full)];
            let qt = q[at];
            for (i, o) in out.iter_mut().enumerate() {
                // SAFETY: forwarded contract; the tail segment has one (partial) word.
                unsafe { for_each_word(&tail, first + i, |_, x| *o += (x ^ qt).count_ones()) };
            }
            at += 1;
        }
    }
    out.iter().copied().min().unwrap_or(u32::MAX)
}

/// Partial sums of the int8 dot products.
pub(crate) const INT8_LANES: usize = 16;

/// `dot(q, v)` over `v.len()` columns with [`INT8_LANES`] partial sums, added pairwise.
#[inline(always)]
fn dot16<const FUSED: bool>(q: &[f32], v: &[f32]) -> f32 {
    let mut acc = [0.0f32; INT8_LANES];
    let mut qc = q.chunks_exact(INT8_LANES);
    let mut vc = v.chunks_exact(INT8_LANES);
    for (a, b) in (&mut qc).zip(&mut vc) {
        for l in 0..INT8_LANES {
            acc[l] = if FUSED {
                a[l].mul_add(b[l], acc[l])
            } else {
                a[l] * b[l] + acc[l]
            };
        }
    }
    for (l, (a, b)) in qc.remainder().iter().zip(vc.remainder()).enumerate() {
        acc[l] = if FUSED {
            a.mul_add(*b, acc[l])
        } else {
            a * b + acc[l]
        };
    }
    let mut n = INT8_LANES;
    while n > 1 {
        for i in 0..n / 2 {
            acc[i] = acc[2 * i] + acc[2 * i + 1];
        }
        n /= 2;
    }
    acc[0]
}

/// De-quantizes row `row`'s prefix into `v` (dense, `v.len()` = prefix width).
///
/// # Safety
/// `row` is a row of the tier; `start` and `step` cover the prefix's columns.
#[inline(always)]
pub(crate) unsafe fn dequantize(
    segs: &[CodeSeg],
    start: &[f32],
    step: &[f32],
    row: usize,
    v: &mut [f32],
) {
    for s in segs {
        // SAFETY: the caller guarantees the row's `width` codes of this segment are readable.
        let codes =
            unsafe { std::slice::from_raw_parts(s.base.add(row * s.stride).cast::<i8>(), s.width) };
        let cols = s.col..s.col + s.width;
        for (((out, &c), &a), &st) in v[cols.clone()]
            .iter_mut()
            .zip(codes)
            .zip(&start[cols.clone()])
            .zip(&step[cols])
        {
            *out = a + st * (f32::from(c) + 128.5);
        }
    }
}

/// Rows ahead of the one being scored whose codes a kernel asks the memory system for (a
/// shortlist's rows are scattered, so the hardware prefetcher cannot guess them; in a scan it
/// helps too, measured).
const PREFETCH_ROWS: usize = 8;

/// Hints the cache line at `p` into the cache (no effect on results; a no-op off x86-64).
#[inline(always)]
fn prefetch(p: *const u8) {
    // SAFETY: a prefetch is a hint that never faults and reads nothing into the program.
    #[cfg(target_arch = "x86_64")]
    unsafe {
        std::arch::x86_64::_mm_prefetch::<{ std::arch::x86_64::_MM_HINT_T0 }>(p.cast::<i8>());
    }
    #[cfg(not(target_arch = "x86_64"))]
    let _ = p;
}

/// Hints the cache lines of row `row`'s codes in every segment into the cache.
#[inline(always)]
fn prefetch_row(segs: &[CodeSeg], row: usize) {
    for s in segs {
        let p = s.base.wrapping_add(row * s.stride);
        for off in (0..s.width).step_by(64) {
            // The address is computed without dereferencing (wrapping_add).
            prefetch(p.wrapping_add(off));
        }
    }
}

/// What the int8 kernel reads: the prefix's code segments and de-quantization, the queries,
/// and the rows to score.
#[derive(Clone, Copy)]
pub(crate) struct Int8Job<'a> {
    /// The prefix's segments (covering `[0, dim)`).
    pub segs: &'a [CodeSeg],
    /// Per column `min` and `step` (at least `dim` of each).
    pub start: &'a [f32],
    pub step: &'a [f32],
    /// Unit queries, `nq x dim`.
    pub qs: &'a [f32],
    pub nq: usize,
    pub rows: &'a [usize],
    /// First column of the norm tail (see [`int8_generic`]).
    pub tail_from: usize,
    /// Where the rows' norms are read after the kernel (one float per row; prefetched with
    /// each row's codes, as a shortlist's norms are as scattered as its rows), or null.
    pub norms: *const f32,
}

/// What the int8 kernel writes (and its scratch).
pub(crate) struct Int8Out<'a> {
    /// Scratch: one de-quantized row, `dim` long.
    pub v: &'a mut [f32],
    /// `rows x nq` dot products.
    pub dots: &'a mut [f32],
    /// Per row, the float64 sum of its squared values over `[tail_from, dim)`.
    pub tails: &'a mut [f64],
}

/// `dots[i * nq + j] = dot(q_j, v_i)` over the prefix, `v_i` row `rows[i]` de-quantized, and
/// `tails[i]` the float64 sum of `v_i[c]^2` for `c` in `[tail_from, dim)`.
///
/// # Safety
/// Every row is a row of the tier; `qs.len() == nq * dim`; `v.len() == dim` (the prefix
/// width, covered by `segs`, `start` and `step`); `dots.len() >= rows.len() * nq`,
/// `tails.len() >= rows.len()`.
#[inline(always)]
unsafe fn int8_generic<const FUSED: bool>(job: Int8Job<'_>, out: Int8Out<'_>) {
    let dim = out.v.len();
    let nq = job.nq;
    for (i, &row) in job.rows.iter().enumerate() {
        if let Some(&ahead) = job.rows.get(i + PREFETCH_ROWS) {
            prefetch_row(job.segs, ahead);
            // The address is computed without dereferencing (wrapping_add).
            prefetch(job.norms.wrapping_add(ahead).cast());
        }
        // SAFETY: forwarded contract.
        unsafe { dequantize(job.segs, job.start, job.step, row, out.v) };
        for (o, q) in out.dots[i * nq..(i + 1) * nq]
            .iter_mut()
            .zip(job.qs.chunks_exact(dim))
        {
            *o = dot16::<FUSED>(q, out.v);
        }
        out.tails[i] = out.v[job.tail_from..]
            .iter()
            .map(|&x| f64::from(x) * f64::from(x))
            .sum();
    }
}

type HammingFn = unsafe fn(&[BitSeg], &[u64], usize, &[usize], &mut [u64], &mut [u32]);
type HammingRunFn = unsafe fn(&[BitSeg], &[u64], usize, &mut [u32]) -> u32;
type Int8Fn = unsafe fn(Int8Job<'_>, Int8Out<'_>);

macro_rules! wrappers {
    ($name:ident, $fused:literal $(, $features:literal)?) => {
        pub(crate) mod $name {
            use super::*;

            /// See [`hamming_generic`].
            ///
            /// # Safety
            /// As the generic function; the CPU must support the features.
            $(#[target_feature(enable = $features)])?
            pub(crate) unsafe fn hamming(
                segs: &[BitSeg],
                qt: &[u64],
                nq: usize,
                rows: &[usize],
                scratch: &mut [u64],
                out: &mut [u32],
            ) {
                // SAFETY: forwarded contract; the features are enabled by the attribute.
                unsafe { hamming_generic(segs, qt, nq, rows, scratch, out) }
            }

            /// See [`hamming_run_generic`].
            ///
            /// # Safety
            /// As the generic function; the CPU must support the features.
            $(#[target_feature(enable = $features)])?
            pub(crate) unsafe fn hamming_run(
                segs: &[BitSeg],
                q: &[u64],
                first: usize,
                out: &mut [u32],
            ) -> u32 {
                // SAFETY: forwarded contract; the features are enabled by the attribute.
                unsafe { hamming_run_generic(segs, q, first, out) }
            }

            /// See [`int8_generic`].
            ///
            /// # Safety
            /// As the generic function; the CPU must support the features.
            $(#[target_feature(enable = $features)])?
            pub(crate) unsafe fn int8(job: Int8Job<'_>, out: Int8Out<'_>) {
                // SAFETY: forwarded contract; the features are enabled by the attribute.
                unsafe { int8_generic::<$fused>(job, out) }
            }
        }
    };
}

wrappers!(scalar, false);
#[cfg(target_arch = "x86_64")]
wrappers!(avx2, true, "avx2,fma,popcnt");
#[cfg(target_arch = "x86_64")]
wrappers!(
    avx512,
    true,
    "avx512f,avx512bw,avx512vpopcntdq,avx2,fma,popcnt"
);
#[cfg(target_arch = "aarch64")]
wrappers!(neon, true, "neon");

/// The quantized kernels of one backend.
#[derive(Clone, Copy)]
pub struct QuantKernels {
    name: &'static str,
    hamming: HammingFn,
    hamming_run: HammingRunFn,
    int8: Int8Fn,
}

impl QuantKernels {
    /// The kernels for `backend` (which must be available). AVX-512 without VPOPCNTDQ uses
    /// the AVX2 popcount.
    pub fn new(backend: Backend) -> QuantKernels {
        macro_rules! of {
            ($m:ident, $name:literal) => {
                QuantKernels {
                    name: $name,
                    hamming: $m::hamming,
                    hamming_run: $m::hamming_run,
                    int8: $m::int8,
                }
            };
        }
        match backend {
            #[cfg(target_arch = "x86_64")]
            Backend::Avx512
                if std::arch::is_x86_feature_detected!("avx512vpopcntdq")
                    && std::arch::is_x86_feature_detected!("avx512bw")
                    && std::arch::is_x86_feature_detected!("popcnt") =>
            {
                of!(avx512, "avx512-vpopcntdq")
            }
            #[cfg(target_arch = "x86_64")]
            Backend::Avx512 | Backend::Avx2 if std::arch::is_x86_feature_detected!("popcnt") => {
                of!(avx2, "avx2")
            }
            #[cfg(target_arch = "aarch64")]
            Backend::Neon => of!(neon, "neon"),
            _ => of!(scalar, "scalar"),
        }
    }

    /// Which variant runs.
    pub fn name(&self) -> &'static str {
        self.name
    }

    /// Hamming distances of `rows` (of a tier of `nrows` rows, checked) to the `nq` queries
    /// `qt` (transposed words); see [`hamming_generic`].
    pub(crate) fn hamming(
        &self,
        codes: (&[BitSeg], usize),
        qt: &[u64],
        nq: usize,
        rows: &[usize],
        scratch: &mut [u64],
        out: &mut [u32],
    ) {
        let (segs, nrows) = codes;
        let words = bit_words(segs);
        assert!(rows.iter().all(|&r| r < nrows), "row out of range");
        assert!(
            qt.len() == words * nq
                && scratch.len() == HAM_ROWS * words
                && out.len() >= rows.len() * nq
        );
        // SAFETY: rows are in range of the tier (checked), so their bytes are readable (the
        // tier's constructor checked the file's size); the buffers have the lengths the
        // kernel needs (checked); `new` picked a variant this CPU supports.
        unsafe { (self.hamming)(segs, qt, nq, rows, scratch, out) }
    }

    /// Hamming distances of the rows `first..first + out.len()` (of a tier of `nrows` rows,
    /// checked) to one query's words `q`, and the least of them; see [`hamming_run_generic`].
    pub(crate) fn hamming_run(
        &self,
        codes: (&[BitSeg], usize),
        q: &[u64],
        first: usize,
        out: &mut [u32],
    ) -> u32 {
        let (segs, nrows) = codes;
        assert!(
            first.checked_add(out.len()).is_some_and(|end| end <= nrows),
            "rows out of range"
        );
        assert_eq!(q.len(), bit_words(segs));
        // SAFETY: the rows are in range of the tier (checked), so their bytes are readable;
        // the query has the prefix's words (checked); `new` picked a variant this CPU supports.
        unsafe { (self.hamming_run)(segs, q, first, out) }
    }

    /// Int8 dot products and tail norms of `job.rows` (of a tier of `nrows` rows, checked);
    /// see [`int8_generic`].
    pub(crate) fn int8(&self, job: Int8Job<'_>, nrows: usize, out: Int8Out<'_>) {
        let dim = out.v.len();
        assert!(job.rows.iter().all(|&r| r < nrows), "row out of range");
        assert!(job.segs.iter().all(|s| s.col + s.width <= dim));
        assert!(job.start.len() >= dim && job.step.len() >= dim && job.qs.len() == job.nq * dim);
        assert!(out.dots.len() >= job.rows.len() * job.nq && out.tails.len() >= job.rows.len());
        assert!(job.tail_from <= dim);
        // SAFETY: as `hamming`; the buffers have the lengths the kernel needs (checked).
        unsafe { (self.int8)(job, out) }
    }
}

#[cfg(test)]
#[path = "quant_tests.rs"]
mod tests;
