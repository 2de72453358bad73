//! AVX2 + FMA backend: 8 lanes, masked loads for the last partial chunk.

use core::arch::x86_64::*;

use super::generic::Simd;

#[derive(Clone, Copy)]
pub(crate) struct Avx2;

/// Eight all-ones words then eight zero words: the mask for `n` lanes starts at `8 - n`.
static MASKS: [i32; 16] = [-1, -1, -1, -1, -1, -1, -1, -1, 0, 0, 0, 0, 0, 0, 0, 0];

impl Simd for Avx2 {
    const LANES: usize = 8;
    type V = __m256;

    #[inline(always)]
    unsafe fn zero() -> __m256 {
        // SAFETY: only called inside functions with avx2 enabled.
        unsafe { _mm256_setzero_ps() }
    }

    #[inline(always)]
    unsafe fn load(p: *const f32) -> __m256 {
        // SAFETY: the caller guarantees 8 readable floats at `p`; loadu has no alignment need.
        unsafe { _mm256_loadu_ps(p) }
    }

    #[inline(always)]
    unsafe fn load_partial(p: *const f32, n: usize) -> __m256 {
        // SAFETY: n < 8, so MASKS[8 - n..16 - n] is in bounds; maskload reads only the lanes
        // whose mask is set (the first n), which the caller guarantees are readable; masked-off
        // lanes never fault and read as zero.
        unsafe {
            let mask = _mm256_loadu_si256(MASKS.as_ptr().add(8 - n).cast());
            _mm256_maskload_ps(p, mask)
        }
    }

    #[inline(always)]
    unsafe fn fma(a: __m256, b: __m256, acc: __m256) -> __m256 {
        // SAFETY: only called inside functions with fma enabled.
        unsafe { _mm256_fmadd_ps(a, b, acc) }
    }

    #[inline(always)]
    unsafe fn splat(p: *const f32) -> __m256 {
        // SAFETY: the caller guarantees `p` is readable; avx is enabled in the caller.
        unsafe { _mm256_broadcast_ss(&*p) }
    }

    #[inline(always)]
    unsafe fn store(p: *mut f32, v: __m256) {
        // SAFETY: the caller guarantees 8 writable floats at `p`; storeu needs no alignment.
        unsafe { _mm256_storeu_ps(p, v) }
    }

    #[inline(always)]
    unsafe fn add(a: __m256, b: __m256) -> __m256 {
        // SAFETY: only called inside functions with avx2 enabled.
        unsafe { _mm256_add_ps(a, b) }
    }

    #[inline(always)]
    unsafe fn pass_mask(dots: __m256, scales: __m256, thr: __m256) -> u32 {
        // SAFETY: only called inside functions with avx2 enabled.
        unsafe {
            let v = _mm256_mul_ps(dots, scales);
            _mm256_movemask_ps(_mm256_cmp_ps::<_CMP_GE_OQ>(v, thr)) as u32
        }
    }

    #[inline(always)]
    unsafe fn reduce4(a: __m256, b: __m256, c: __m256, d: __m256) -> [f32; 4] {
        // Lane order, for each input v: ((v0+v1)+(v2+v3)) + ((v4+v5)+(v6+v7)).
        // SAFETY: only called inside functions with avx2 enabled; the store writes 4 floats
        // into a 4-float array.
        unsafe {
            let ab = _mm256_hadd_ps(a, b);
            let cd = _mm256_hadd_ps(c, d);
            let abcd = _mm256_hadd_ps(ab, cd);
            let s = _mm_add_ps(
                _mm256_castps256_ps128(abcd),
                _mm256_extractf128_ps::<1>(abcd),
            );
            let mut out = [0.0f32; 4];
            _mm_storeu_ps(out.as_mut_ptr(), s);
            out
        }
    }

    #[inline(always)]
    unsafe fn prefetch(p: *const f32) {
        // Non-temporal: a scanned row is read once; keep it from displacing the queries.
        // SAFETY: prefetch is a hint and never faults, whatever the address.
        unsafe { _mm_prefetch::<_MM_HINT_NTA>(p.cast()) }
    }

    #[inline(always)]
    unsafe fn prefetch_l2(p: *const f32) {
        // SAFETY: prefetch is a hint and never faults, whatever the address.
        unsafe { _mm_prefetch::<_MM_HINT_T1>(p.cast()) }
    }
}

super::generic::entry_points!(Avx2, "avx2,fma");
