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

/// Words of a binary prefix: each segment's bits in whole `u64` words (big-endian byte order
/// within a word does not matter for a popcount of an XOR, as long as query and row agree).
pub(crate) fn binary_words(segs: &[CodeSeg]) -> usize {
    segs.iter().map(|s| s.width.div_ceil(64)).sum()
}

/// Row `row`'s prefix bits as words (segment by segment, the bits beyond each segment's
/// width zeroed).
///
/// # Safety
/// `row` is a row of the tier `segs` came from (each segment's `ceil(width / 8)` bytes at
/// `base + row * stride` are readable); `out.len() == binary_words(segs)`.
#[inline(always)]
pub(crate) unsafe fn row_words(segs: &[CodeSeg], row: usize, out: &mut [u64]) {
    let mut at = 0;
    for s in segs {
        // SAFETY: the caller guarantees the row's bytes of this segment are readable.
        let bytes =
            unsafe { std::slice::from_raw_parts(s.base.add(row * s.stride), s.width.div_ceil(8)) };
        let words = s.width.div_ceil(64);
        let mut chunks = bytes.chunks_exact(8);
        for w in &mut out[at..at + bytes.len() / 8] {
            let c = chunks.next().unwrap_or(&[0; 8]);
            *w = u64::from_le_bytes([c[0], c[1], c[2], c[3], c[4], c[5], c[6], c[7]]);
        }
        let rest = chunks.remainder();
        if !rest.is_empty() {
            let mut b = [0u8; 8];
            b[..rest.len()].copy_from_slice(rest);
            out[at + words - 1] = u64::from_le_bytes(b);
        }
        let bits = s.width % 64;
        if bits != 0 {
            // Keep the first `bits` bits in packbits order: whole bytes, then the top bits of
            // the last byte.
            let mut mask = [0u8; 8];
            mask[..bits / 8].fill(0xff);
            if bits % 8 != 0 {
                mask[bits / 8] = 0xffu8 << (8 - bits % 8);
            }
            out[at + words - 1] &= u64::from_le_bytes(mask);
        }
        at += words;
    }
}

/// Hamming distances: `out[i * nq + j] = sum_w popcount(row_i[w] ^ qt[w * nq + j])`, with
/// the queries' words transposed (`qt` is `words x nq`) so that the inner loop runs over
/// queries, in vector lanes.
///
/// # Safety
/// Every row is a row of the tier; `qt.len() == binary_words(segs) * nq`;
/// `out.len() >= rows.len() * nq`; `scratch.len() == binary_words(segs)`.
#[inline(always)]
unsafe fn hamming_generic(
    segs: &[CodeSeg],
    qt: &[u64],
    nq: usize,
    rows: &[usize],
    scratch: &mut [u64],
    out: &mut [u32],
) {
    for (i, &row) in rows.iter().enumerate() {
        // SAFETY: forwarded contract.
        unsafe { row_words(segs, row, scratch) };
        let acc = &mut out[i * nq..(i + 1) * nq];
        acc.fill(0);
        for (w, &x) in scratch.iter().enumerate() {
            let q = &qt[w * nq..(w + 1) * nq];
            for (a, &qw) in acc.iter_mut().zip(q) {
                *a += (x ^ qw).count_ones();
            }
        }
    }
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

type HammingFn = unsafe fn(&[CodeSeg], &[u64], usize, &[usize], &mut [u64], &mut [u32]);
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
                segs: &[CodeSeg],
                qt: &[u64],
                nq: usize,
                rows: &[usize],
                scratch: &mut [u64],
                out: &mut [u32],
            ) {
                // SAFETY: forwarded contract; the features are enabled by the attribute.
                unsafe { hamming_generic(segs, qt, nq, rows, scratch, out) }
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
        codes: (&[CodeSeg], usize),
        qt: &[u64],
        nq: usize,
        rows: &[usize],
        scratch: &mut [u64],
        out: &mut [u32],
    ) {
        let (segs, nrows) = codes;
        let words = binary_words(segs);
        assert!(rows.iter().all(|&r| r < nrows), "row out of range");
        assert!(qt.len() == words * nq && scratch.len() == words && out.len() >= rows.len() * nq);
        // SAFETY: rows are in range of the tier (checked), so their bytes are readable (the
        // tier's constructor checked the file's size); the buffers have the lengths the
        // kernel needs (checked); `new` picked a variant this CPU supports.
        unsafe { (self.hamming)(segs, qt, nq, rows, scratch, out) }
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
