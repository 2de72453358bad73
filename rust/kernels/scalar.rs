//! The reference backend: one lane, plain multiply then add, always compiled and available.
//! Every SIMD backend is tested against it; it is also the fallback on CPUs without SIMD.

use super::generic::{self, Simd};
use crate::layout::Segment;

#[derive(Clone, Copy)]
pub(crate) struct Scalar;

impl Simd for Scalar {
    const LANES: usize = 1;
    type V = f32;

    #[inline(always)]
    unsafe fn zero() -> f32 {
        0.0
    }

    #[inline(always)]
    unsafe fn load(p: *const f32) -> f32 {
        // SAFETY: the caller guarantees `p` is readable.
        unsafe { p.read_unaligned() }
    }

    #[inline(always)]
    unsafe fn load_partial(_p: *const f32, _n: usize) -> f32 {
        // With one lane there is never a partial chunk (n < LANES means n == 0).
        0.0
    }

    #[inline(always)]
    unsafe fn fma(a: f32, b: f32, acc: f32) -> f32 {
        a * b + acc
    }

    #[inline(always)]
    unsafe fn reduce4(a: f32, b: f32, c: f32, d: f32) -> [f32; 4] {
        [a, b, c, d]
    }
}

/// See [`generic::dot_norm_block`].
///
/// # Safety
/// As [`generic::dot_norm_block`] (no CPU features needed).
pub(crate) unsafe fn dot_norm_block(
    q: *const f32,
    segs: &[Segment],
    rows: &[usize],
    dots: &mut [f32],
    norms: &mut [f32],
) {
    // SAFETY: forwarded contract.
    unsafe { generic::dot_norm_block::<Scalar>(q, segs, rows, dots, norms) }
}

/// See [`generic::norm_block`].
///
/// # Safety
/// As [`generic::norm_block`].
pub(crate) unsafe fn norm_block(segs: &[Segment], rows: &[usize], norms: &mut [f32]) {
    // SAFETY: forwarded contract.
    unsafe { generic::norm_block::<Scalar>(segs, rows, norms) }
}

/// See [`generic::dot_block`].
///
/// # Safety
/// As [`generic::dot_block`].
pub(crate) unsafe fn dot_block(
    qs: *const f32,
    q_stride: usize,
    nq: usize,
    segs: &[Segment],
    rows: &[usize],
    out: &mut [f32],
) {
    // SAFETY: forwarded contract.
    unsafe { generic::dot_block::<Scalar>(qs, q_stride, nq, segs, rows, out) }
}
