//! AVX2 + FMA backend: 8 lanes, masked loads for the last partial chunk.

use core::arch::x86_64::*;

use super::generic::{generic_pack_chunk, Simd};

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
    unsafe fn pack_chunk(
        src: &[*const f32; 16],
        nr: usize,
        col: usize,
        n: usize,
        dst: *mut f32,
        dst_stride: usize,
    ) {
        if nr < 8 {
            // SAFETY: forwarded contract (the portable version handles missing rows).
            unsafe { generic_pack_chunk::<Avx2>(src, nr, col, n, dst, dst_stride) };
            return;
        }
        // An 8 x 8 transpose in registers (values are moved, never changed).
        // SAFETY: all 8 rows exist (nr == 8); each reads n <= 8 floats at src[r] + col
        // (a masked load when n < 8, which reads only the first n); the 8 stores write
        // dst + l * dst_stride + [0, 8) for l < 8, as the contract allows.
        unsafe {
            let r: [__m256; 8] = core::array::from_fn(|i| {
                if n == 8 {
                    Self::load(src[i].add(col))
                } else {
                    Self::load_partial(src[i].add(col), n)
                }
            });
            let t0 = _mm256_unpacklo_ps(r[0], r[1]);
            let t1 = _mm256_unpackhi_ps(r[0], r[1]);
            let t2 = _mm256_unpacklo_ps(r[2], r[3]);
            let t3 = _mm256_unpackhi_ps(r[2], r[3]);
            let t4 = _mm256_unpacklo_ps(r[4], r[5]);
            let t5 = _mm256_unpackhi_ps(r[4], r[5]);
            let t6 = _mm256_unpacklo_ps(r[6], r[7]);
            let t7 = _mm256_unpackhi_ps(r[6], r[7]);
            let u0 = _mm256_shuffle_ps::<0x44>(t0, t2);
            let u1 = _mm256_shuffle_ps::<0xEE>(t0, t2);
            let u2 = _mm256_shuffle_ps::<0x44>(t1, t3);
            let u3 = _mm256_shuffle_ps::<0xEE>(t1, t3);
            let u4 = _mm256_shuffle_ps::<0x44>(t4, t6);
            let u5 = _mm256_shuffle_ps::<0xEE>(t4, t6);
            let u6 = _mm256_shuffle_ps::<0x44>(t5, t7);
            let u7 = _mm256_shuffle_ps::<0xEE>(t5, t7);
            let cols = [
                _mm256_permute2f128_ps::<0x20>(u0, u4),
                _mm256_permute2f128_ps::<0x20>(u1, u5),
                _mm256_permute2f128_ps::<0x20>(u2, u6),
                _mm256_permute2f128_ps::<0x20>(u3, u7),
                _mm256_permute2f128_ps::<0x31>(u0, u4),
                _mm256_permute2f128_ps::<0x31>(u1, u5),
                _mm256_permute2f128_ps::<0x31>(u2, u6),
                _mm256_permute2f128_ps::<0x31>(u3, u7),
            ];
            for (l, v) in cols.into_iter().enumerate() {
                Self::store(dst.add(l * dst_stride), v);
            }
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
}

super::generic::entry_points!(Avx2, "avx2,fma");
