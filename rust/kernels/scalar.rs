//! The reference backend: one lane, plain multiply then add, always compiled and available.
//! Every SIMD backend is tested against it; it is also the fallback on CPUs without SIMD.

use super::generic::Simd;

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
    unsafe fn splat(p: *const f32) -> f32 {
        // SAFETY: the caller guarantees `p` is readable.
        unsafe { p.read() }
    }

    #[inline(always)]
    unsafe fn store(p: *mut f32, v: f32) {
        // SAFETY: the caller guarantees `p` is writable.
        unsafe { p.write(v) }
    }

    #[inline(always)]
    unsafe fn add(a: f32, b: f32) -> f32 {
        a + b
    }

    #[inline(always)]
    unsafe fn pass_mask(dots: f32, scales: f32, thr: f32) -> u32 {
        u32::from(dots * scales >= thr)
    }

    #[inline(always)]
    unsafe fn reduce4(a: f32, b: f32, c: f32, d: f32) -> [f32; 4] {
        [a, b, c, d]
    }
}

super::generic::entry_points!(Scalar);
