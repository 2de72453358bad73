//! The kernel algorithm, written once over a small vector trait and instantiated per backend
//! (as memchr's `arch/generic`). Every function here is `#[inline(always)]`, so it is compiled
//! inside each backend's `#[target_feature]` entry point with that backend's instructions.
//!
//! Determinism: the value computed for a (query, row) pair is one accumulator per pair, fed
//! `LANES` columns at a time in column order, the last partial chunk zero-filled, then reduced
//! by the backend's `reduce4`. That sequence does not depend on the tile shape, the batch, or
//! the row's position, so a row's dot product and squared norm are bitwise the same whichever
//! entry point computed them, and duplicate rows always tie.

use std::array;

use crate::layout::Segment;

/// The three entry points of a backend: wrappers that instantiate the generic algorithm for
/// the backend's vector type `$simd`, compiled with the CPU features `$features` if given.
macro_rules! entry_points {
    ($simd:ty $(, $features:literal)?) => {
        /// See [`generic::dot_norm_block`](crate::kernels::generic::dot_norm_block).
        ///
        /// # Safety
        /// As the generic function; the CPU must support the backend's features.
        $(#[target_feature(enable = $features)])?
        pub(crate) unsafe fn dot_norm_block(
            q: *const f32,
            segs: &[$crate::layout::Segment],
            rows: &[usize],
            dots: &mut [f32],
            norms: &mut [f32],
        ) {
            // SAFETY: forwarded contract; the features are enabled by this function's attribute.
            unsafe { $crate::kernels::generic::dot_norm_block::<$simd>(q, segs, rows, dots, norms) }
        }

        /// See [`generic::norm_block`](crate::kernels::generic::norm_block).
        ///
        /// # Safety
        /// As the generic function; the CPU must support the backend's features.
        $(#[target_feature(enable = $features)])?
        pub(crate) unsafe fn norm_block(segs: &[$crate::layout::Segment], rows: &[usize], norms: &mut [f32]) {
            // SAFETY: forwarded contract; the features are enabled by this function's attribute.
            unsafe { $crate::kernels::generic::norm_block::<$simd>(segs, rows, norms) }
        }

        /// See [`generic::dot_block`](crate::kernels::generic::dot_block).
        ///
        /// # Safety
        /// As the generic function; the CPU must support the backend's features.
        $(#[target_feature(enable = $features)])?
        pub(crate) unsafe fn dot_block(
            qs: *const f32,
            q_stride: usize,
            nq: usize,
            segs: &[$crate::layout::Segment],
            rows: &[usize],
            out: &mut [f32],
        ) {
            // SAFETY: forwarded contract; the features are enabled by this function's attribute.
            unsafe { $crate::kernels::generic::dot_block::<$simd>(qs, q_stride, nq, segs, rows, out) }
        }
    };
}
pub(crate) use entry_points;

/// The few vector operations the algorithm needs.
pub(crate) trait Simd {
    /// Floats per vector.
    const LANES: usize;
    /// The vector type.
    type V: Copy;
    /// All lanes zero.
    unsafe fn zero() -> Self::V;
    /// Loads `LANES` floats from `p` (unaligned).
    unsafe fn load(p: *const f32) -> Self::V;
    /// Loads `n < LANES` floats from `p` and zero-fills the rest, reading nothing past `p + n`.
    unsafe fn load_partial(p: *const f32, n: usize) -> Self::V;
    /// `a * b + acc` per lane.
    unsafe fn fma(a: Self::V, b: Self::V, acc: Self::V) -> Self::V;
    /// The horizontal sums of four vectors, each in the backend's one fixed lane order.
    unsafe fn reduce4(a: Self::V, b: Self::V, c: Self::V, d: Self::V) -> [f32; 4];
    /// A hint to bring the cache line at `p` closer (never faults; may do nothing).
    #[inline(always)]
    unsafe fn prefetch(_p: *const f32) {}
}

/// Rows ahead of the current one whose prefixes are prefetched. A row-major file scanned at
/// a small prefix is a strided read that the hardware prefetchers follow poorly. (Measured on
/// a 2-core EPYC: 8 to 24 rows ahead are within noise of each other; none is 20-40% slower.)
const PREFETCH_ROWS: usize = 8;
/// Cache lines prefetched per row and segment at most (contiguous runs beyond are left to the
/// hardware prefetchers).
const PREFETCH_LINES: usize = 16;

/// Prefetches the prefix of `row`.
#[inline(always)]
unsafe fn prefetch_row<S: Simd>(segs: &[Segment], row: usize) {
    // SAFETY: the caller guarantees `row` is a valid row; prefetches never fault, and every
    // address stays within the row's segment runs.
    unsafe {
        for seg in segs {
            let p = seg.row_ptr(row);
            let mut c = 0;
            let mut lines = 0;
            while c < seg.width && lines < PREFETCH_LINES {
                S::prefetch(p.add(c));
                c += 16;
                lines += 1;
            }
        }
    }
}

#[inline(always)]
unsafe fn reduce_rows<S: Simd, const R: usize>(acc: &[S::V; R]) -> [f32; R] {
    // SAFETY: the caller runs with the backend's target features enabled.
    unsafe {
        let z = S::zero();
        let pick = |i: usize| if i < R { acc[i] } else { z };
        let s = S::reduce4(pick(0), pick(1), pick(2), pick(3));
        array::from_fn(|i| s[i])
    }
}

/// Dot products of `Q` queries with `R <= 4` rows over the column segments, and, if `NORM`,
/// the squared norms of the rows, in one pass over the rows' data.
///
/// # Safety
/// Each `qs[j]` must be readable for the total width of `segs` (queries are dense, column 0 at
/// `qs[j]`); each `rows[i]` must be a valid row of the matrix `segs` came from; the backend's
/// target features must be enabled.
#[inline(always)]
unsafe fn tile<S: Simd, const R: usize, const Q: usize, const NORM: bool>(
    qs: &[*const f32; Q],
    segs: &[Segment],
    rows: &[usize; R],
) -> ([[f32; R]; Q], [f32; R]) {
    // SAFETY: pointer arithmetic stays inside each row's segment run and each query's
    // columns, as the caller guarantees; see the function's contract.
    unsafe {
        let mut acc = [[S::zero(); R]; Q];
        let mut nacc = [S::zero(); R];
        for seg in segs {
            let w = seg.width;
            let xp: [*const f32; R] = array::from_fn(|i| seg.row_ptr(rows[i]));
            let qp: [*const f32; Q] = array::from_fn(|j| qs[j].add(seg.col));
            let mut c = 0;
            while c + S::LANES <= w {
                let xv: [S::V; R] = array::from_fn(|i| S::load(xp[i].add(c)));
                if NORM {
                    for i in 0..R {
                        nacc[i] = S::fma(xv[i], xv[i], nacc[i]);
                    }
                }
                for j in 0..Q {
                    let qv = S::load(qp[j].add(c));
                    for i in 0..R {
                        acc[j][i] = S::fma(qv, xv[i], acc[j][i]);
                    }
                }
                c += S::LANES;
            }
            if c < w {
                let n = w - c;
                let xv: [S::V; R] = array::from_fn(|i| S::load_partial(xp[i].add(c), n));
                if NORM {
                    for i in 0..R {
                        nacc[i] = S::fma(xv[i], xv[i], nacc[i]);
                    }
                }
                for j in 0..Q {
                    let qv = S::load_partial(qp[j].add(c), n);
                    for i in 0..R {
                        acc[j][i] = S::fma(qv, xv[i], acc[j][i]);
                    }
                }
            }
        }
        let dots = array::from_fn(|j| reduce_rows::<S, R>(&acc[j]));
        let norms = if NORM {
            reduce_rows::<S, R>(&nacc)
        } else {
            [0.0; R]
        };
        (dots, norms)
    }
}

/// For one query `q`: `dots[i] = q . x_i` and `norms[i] = |x_i|^2` over the segments, for
/// `x_i = rows[i]`, in one pass (batch-1 scan and funnel re-scoring).
///
/// # Safety
/// As [`tile`]; `dots` and `norms` are at least `rows.len()` long.
#[inline(always)]
pub(crate) unsafe fn dot_norm_block<S: Simd>(
    q: *const f32,
    segs: &[Segment],
    rows: &[usize],
    dots: &mut [f32],
    norms: &mut [f32],
) {
    let n = rows.len();
    let mut i = 0;
    // SAFETY: forwarded contract; the chunking keeps every index below rows.len().
    unsafe {
        while i + 4 <= n {
            for &ahead in rows.iter().skip(i + PREFETCH_ROWS).take(4) {
                prefetch_row::<S>(segs, ahead);
            }
            let r: [usize; 4] = array::from_fn(|t| rows[i + t]);
            let (d, nn) = tile::<S, 4, 1, true>(&[q], segs, &r);
            dots[i..i + 4].copy_from_slice(&d[0]);
            norms[i..i + 4].copy_from_slice(&nn);
            i += 4;
        }
        macro_rules! tail {
            ($r:literal) => {{
                let r: [usize; $r] = array::from_fn(|t| rows[i + t]);
                let (d, nn) = tile::<S, $r, 1, true>(&[q], segs, &r);
                dots[i..i + $r].copy_from_slice(&d[0]);
                norms[i..i + $r].copy_from_slice(&nn);
            }};
        }
        match n - i {
            1 => tail!(1),
            2 => tail!(2),
            3 => tail!(3),
            _ => {}
        }
    }
}

/// `norms[i] = |x_i|^2` over the segments, for `x_i = rows[i]`.
///
/// # Safety
/// As [`tile`]; `norms` is at least `rows.len()` long.
#[inline(always)]
pub(crate) unsafe fn norm_block<S: Simd>(segs: &[Segment], rows: &[usize], norms: &mut [f32]) {
    let n = rows.len();
    let mut i = 0;
    // SAFETY: forwarded contract; the chunking keeps every index below rows.len().
    unsafe {
        while i + 4 <= n {
            for &ahead in rows.iter().skip(i + PREFETCH_ROWS).take(4) {
                prefetch_row::<S>(segs, ahead);
            }
            let r: [usize; 4] = array::from_fn(|t| rows[i + t]);
            let (_, nn) = tile::<S, 4, 0, true>(&[], segs, &r);
            norms[i..i + 4].copy_from_slice(&nn);
            i += 4;
        }
        macro_rules! tail {
            ($r:literal) => {{
                let r: [usize; $r] = array::from_fn(|t| rows[i + t]);
                let (_, nn) = tile::<S, $r, 0, true>(&[], segs, &r);
                norms[i..i + $r].copy_from_slice(&nn);
            }};
        }
        match n - i {
            1 => tail!(1),
            2 => tail!(2),
            3 => tail!(3),
            _ => {}
        }
    }
}

/// `out[j * rows.len() + i] = q_j . x_i` for the `nq` queries at `qs + j * q_stride` and the rows
/// `rows`, in register tiles of 3 rows x 4 queries (12 accumulators, 3 row vectors and one
/// query vector: 16 registers on AVX2). A query tile stays in L1 while the rows stream past it
/// from L2, so a batch reads each row from memory once.
///
/// # Safety
/// As [`tile`] for every query; `out` is at least `nq * rows.len()` long.
#[inline(always)]
pub(crate) unsafe fn dot_block<S: Simd>(
    qs: *const f32,
    q_stride: usize,
    nq: usize,
    segs: &[Segment],
    rows: &[usize],
    out: &mut [f32],
) {
    let n = rows.len();
    // SAFETY: forwarded contract; every query index stays below nq and row index below n.
    unsafe {
        let mut j = 0;
        while j < nq {
            let qn = (nq - j).min(4);
            let mut i = 0;
            while i < n {
                let rn = (n - i).min(3);
                macro_rules! go {
                    ($r:literal, $q:literal) => {{
                        let r: [usize; $r] = array::from_fn(|t| rows[i + t]);
                        let qp: [*const f32; $q] = array::from_fn(|t| qs.add((j + t) * q_stride));
                        let (d, _) = tile::<S, $r, $q, false>(&qp, segs, &r);
                        for t in 0..$q {
                            out[(j + t) * n + i..(j + t) * n + i + $r].copy_from_slice(&d[t]);
                        }
                    }};
                }
                match (rn, qn) {
                    (3, 4) => go!(3, 4),
                    (3, 3) => go!(3, 3),
                    (3, 2) => go!(3, 2),
                    (3, 1) => go!(3, 1),
                    (2, 4) => go!(2, 4),
                    (2, 3) => go!(2, 3),
                    (2, 2) => go!(2, 2),
                    (2, 1) => go!(2, 1),
                    (1, 4) => go!(1, 4),
                    (1, 3) => go!(1, 3),
                    (1, 2) => go!(1, 2),
                    _ => go!(1, 1),
                }
                i += rn;
            }
            j += qn;
        }
    }
}
