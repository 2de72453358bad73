//! NEON backend (aarch64): 4 lanes; the last partial chunk is copied into a zeroed buffer.

use core::arch::aarch64::*;

use super::generic::Simd;

#[derive(Clone, Copy)]
pub(crate) struct Neon;

impl Simd for Neon {
    const LANES: usize = 4;
    type V = float32x4_t;

    #[inline(always)]
    unsafe fn zero() -> float32x4_t {
        // SAFETY: NEON is part of the aarch64 baseline.
        unsafe { vdupq_n_f32(0.0) }
    }

    #[inline(always)]
    unsafe fn load(p: *const f32) -> float32x4_t {
        // SAFETY: the caller guarantees 4 readable floats at `p`; vld1q has no alignment need.
        unsafe { vld1q_f32(p) }
    }

    #[inline(always)]
    unsafe fn load_partial(p: *const f32, n: usize) -> float32x4_t {
        // SAFETY: n < 4 floats at `p` are readable (caller); the copy stays inside `buf`.
        unsafe {
            let mut buf = [0.0f32; 4];
            core::ptr::copy_nonoverlapping(p, buf.as_mut_ptr(), n);
            vld1q_f32(buf.as_ptr())
        }
    }

    #[inline(always)]
    unsafe fn fma(a: float32x4_t, b: float32x4_t, acc: float32x4_t) -> float32x4_t {
        // SAFETY: NEON is part of the aarch64 baseline.
        unsafe { vfmaq_f32(acc, a, b) }
    }

    #[inline(always)]
    unsafe fn splat(p: *const f32) -> float32x4_t {
        // SAFETY: the caller guarantees `p` is readable.
        unsafe { vld1q_dup_f32(p) }
    }

    #[inline(always)]
    unsafe fn store(p: *mut f32, v: float32x4_t) {
        // SAFETY: the caller guarantees 4 writable floats at `p`.
        unsafe { vst1q_f32(p, v) }
    }

    #[inline(always)]
    unsafe fn add(a: float32x4_t, b: float32x4_t) -> float32x4_t {
        // SAFETY: NEON is part of the aarch64 baseline.
        unsafe { vaddq_f32(a, b) }
    }

    #[inline(always)]
    unsafe fn pass_mask(dots: float32x4_t, scales: float32x4_t, thr: float32x4_t) -> u32 {
        // Lane l's all-ones compare result, masked to bit l, summed across the lanes.
        // SAFETY: NEON is part of the aarch64 baseline; BITS holds 4 words.
        unsafe {
            const BITS: [u32; 4] = [1, 2, 4, 8];
            let ge = vcgeq_f32(vmulq_f32(dots, scales), thr);
            vaddvq_u32(vandq_u32(ge, vld1q_u32(BITS.as_ptr())))
        }
    }

    #[inline(always)]
    unsafe fn reduce4(a: float32x4_t, b: float32x4_t, c: float32x4_t, d: float32x4_t) -> [f32; 4] {
        // Lane order, for each input v: (v0+v1)+(v2+v3).
        // SAFETY: NEON is part of the aarch64 baseline; the store writes 4 floats into 4.
        unsafe {
            let s = vpaddq_f32(vpaddq_f32(a, b), vpaddq_f32(c, d));
            let mut out = [0.0f32; 4];
            vst1q_f32(out.as_mut_ptr(), s);
            out
        }
    }
}

super::generic::entry_points!(Neon, "neon");
