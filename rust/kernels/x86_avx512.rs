//! AVX-512F backend: 16 lanes, masked loads (with fault suppression) for the last chunk.

use core::arch::x86_64::*;

use super::generic::Simd;

#[derive(Clone, Copy)]
pub(crate) struct Avx512;

impl Simd for Avx512 {
    const LANES: usize = 16;
    const FOLD_HALVES: bool = true;
    const STREAM_COMBINE: bool = true;
    type V = __m512;

    #[inline(always)]
    unsafe fn zero() -> __m512 {
        // SAFETY: only called inside functions with avx512f enabled.
        unsafe { _mm512_setzero_ps() }
    }

    #[inline(always)]
    unsafe fn load(p: *const f32) -> __m512 {
        // SAFETY: the caller guarantees 16 readable floats at `p`; loadu has no alignment need.
        unsafe { _mm512_loadu_ps(p) }
    }

    #[inline(always)]
    unsafe fn load_partial(p: *const f32, n: usize) -> __m512 {
        // SAFETY: n < 16; the masked load reads only the first n lanes (readable, by the
        // caller's guarantee), suppresses faults on the others and zeroes them.
        unsafe { _mm512_maskz_loadu_ps(((1u32 << n) - 1) as __mmask16, p) }
    }

    #[inline(always)]
    unsafe fn fma(a: __m512, b: __m512, acc: __m512) -> __m512 {
        // SAFETY: only called inside functions with avx512f enabled.
        unsafe { _mm512_fmadd_ps(a, b, acc) }
    }

    #[inline(always)]
    unsafe fn splat(p: *const f32) -> __m512 {
        // SAFETY: the caller guarantees `p` is readable; avx512f is enabled in the caller.
        unsafe { _mm512_set1_ps(p.read()) }
    }

    #[inline(always)]
    unsafe fn store(p: *mut f32, v: __m512) {
        // SAFETY: the caller guarantees 16 writable floats at `p`; storeu needs no alignment.
        unsafe { _mm512_storeu_ps(p, v) }
    }

    #[inline(always)]
    unsafe fn add(a: __m512, b: __m512) -> __m512 {
        // SAFETY: only called inside functions with avx512f enabled.
        unsafe { _mm512_add_ps(a, b) }
    }

    #[inline(always)]
    unsafe fn pass_mask(dots: __m512, scales: __m512, thr: __m512) -> u32 {
        // SAFETY: only called inside functions with avx512f enabled.
        unsafe {
            u32::from(_mm512_cmp_ps_mask::<_CMP_GE_OQ>(
                _mm512_mul_ps(dots, scales),
                thr,
            ))
        }
    }

    #[inline(always)]
    unsafe fn reduce4(a: __m512, b: __m512, c: __m512, d: __m512) -> [f32; 4] {
        // Fold each 16-lane vector to 8 lanes (lane i + lane i+8), then the AVX2 tree:
        // ((v0+v1)+(v2+v3)) + ((v4+v5)+(v6+v7)) over the folded lanes.
        // SAFETY: only called inside functions with avx512f (which implies avx2) enabled.
        unsafe {
            let fold = |v: __m512| -> __m256 {
                let lo = _mm512_castps512_ps256(v);
                let hi = _mm256_castpd_ps(_mm512_extractf64x4_pd::<1>(_mm512_castps_pd(v)));
                _mm256_add_ps(lo, hi)
            };
            let ab = _mm256_hadd_ps(fold(a), fold(b));
            let cd = _mm256_hadd_ps(fold(c), fold(d));
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

super::generic::entry_points!(Avx512, "avx512f,avx2,fma");
