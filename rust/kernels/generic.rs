//! The kernel algorithm, written once over a small vector trait and instantiated per backend
//! (as memchr's `arch/generic`). Every function here is `#[inline(always)]`, so it is compiled
//! inside each backend's `#[target_feature]` entry point with that backend's instructions.
//!
//! Determinism: the value computed for a (query, row) pair is `LANES` partial sums, lane `l`
//! fed the columns `l, l + LANES, ...` of each segment in order (the last partial chunk of a
//! segment zero-filled), then added in the backend's `reduce4` order. Every entry point
//! computes exactly that sequence (one query row by row or segment by segment, a batch in
//! transposed panels with the lanes added by `combine`), whatever the batch, the tile shape or
//! the row's position, so a row's dot product and squared norm are bitwise the same whichever
//! entry point computed them, and duplicate rows always tie.

use std::array;
use std::mem::MaybeUninit;

use crate::layout::Segment;

/// The entry points of a backend: wrappers that instantiate the generic algorithm for the
/// backend's vector type `$simd`, compiled with the CPU features `$features` if given.
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

        /// See [`generic::pack_panels`](crate::kernels::generic::pack_panels).
        ///
        /// # Safety
        /// As the generic function; the CPU must support the backend's features.
        $(#[target_feature(enable = $features)])?
        pub(crate) unsafe fn pack_panels(
            segs: &[$crate::layout::Segment],
            rows: &[usize],
            chunks: usize,
            out: *mut f32,
        ) {
            // SAFETY: forwarded contract; the features are enabled by this function's attribute.
            unsafe { $crate::kernels::generic::pack_panels::<$simd>(segs, rows, chunks, out) }
        }

        /// See [`generic::panel_norms`](crate::kernels::generic::panel_norms).
        ///
        /// # Safety
        /// As the generic function; the CPU must support the backend's features.
        $(#[target_feature(enable = $features)])?
        pub(crate) unsafe fn panel_norms(panels: *const f32, groups: usize, chunks: usize, out: *mut f32) {
            // SAFETY: forwarded contract; the features are enabled by this function's attribute.
            unsafe { $crate::kernels::generic::panel_norms::<$simd>(panels, groups, chunks, out) }
        }

        /// See [`generic::pass_masks`](crate::kernels::generic::pass_masks).
        ///
        /// # Safety
        /// As the generic function; the CPU must support the backend's features.
        $(#[target_feature(enable = $features)])?
        pub(crate) unsafe fn pass_masks(
            dots: *const f32,
            scales: *const f32,
            groups: usize,
            thr: f32,
            masks: *mut u32,
        ) {
            // SAFETY: forwarded contract; the features are enabled by this function's attribute.
            unsafe { $crate::kernels::generic::pass_masks::<$simd>(dots, scales, groups, thr, masks) }
        }

        /// See [`generic::panel_dots`](crate::kernels::generic::panel_dots).
        ///
        /// # Safety
        /// As the generic function; the CPU must support the backend's features.
        $(#[target_feature(enable = $features)])?
        #[allow(clippy::too_many_arguments)]
        pub(crate) unsafe fn panel_dots(
            qs: *const f32,
            nq: usize,
            panels: *const f32,
            groups: usize,
            chunks: usize,
            out: *mut f32,
            out_stride: usize,
            sel: $crate::kernels::generic::Select,
        ) {
            // SAFETY: forwarded contract; the features are enabled by this function's attribute.
            unsafe {
                $crate::kernels::generic::panel_dots::<$simd>(
                    qs, nq, panels, groups, chunks, out, out_stride, sel,
                )
            }
        }
    };
}
pub(crate) use entry_points;

/// The few vector operations the algorithm needs.
pub(crate) trait Simd: Sized {
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
    /// All lanes `*p`.
    unsafe fn splat(p: *const f32) -> Self::V;
    /// Stores `LANES` floats at `p` (unaligned).
    unsafe fn store(p: *mut f32, v: Self::V);
    /// `a + b` per lane.
    unsafe fn add(a: Self::V, b: Self::V) -> Self::V;
    /// Bit `l` set where `dots[l] * scales[l] >= thr[l]` (the float32 product, compared
    /// ordered: false for NaN), for the `LANES` lanes.
    unsafe fn pass_mask(dots: Self::V, scales: Self::V, thr: Self::V) -> u32;

    /// Lane `i` of the result is `reduce4`'s sum of the values `parts[0][i], .., parts[LANES-1][i]`
    /// in `reduce4`'s order (`parts.len() == LANES`): the horizontal reduction done vertically,
    /// for `LANES` pairs at once. This default is the pairwise tree
    /// `((p0+p1)+(p2+p3))+((p4+p5)+(p6+p7))` (AVX2, NEON, scalar); AVX-512 overrides it.
    #[inline(always)]
    unsafe fn combine(parts: &[Self::V]) -> Self::V {
        // SAFETY: the caller runs with the backend's target features enabled.
        unsafe { pairwise_sum::<Self>(parts) }
    }

    /// Transposes one chunk of a panel: for `l < LANES` and `r < LANES`,
    /// `dst[l * dst_stride + r] = src[r][col + l]` where `r < nr` and `l < n`, else `0.0`.
    /// Only those `nr` rows and `n` columns are read.
    ///
    /// # Safety
    /// `src[r] + col + [0, n)` readable for `r < nr`; `dst` writable at every index above.
    #[inline(always)]
    unsafe fn pack_chunk(
        src: &[*const f32; 16],
        nr: usize,
        col: usize,
        n: usize,
        dst: *mut f32,
        dst_stride: usize,
    ) {
        // SAFETY: forwarded contract.
        unsafe { generic_pack_chunk::<Self>(src, nr, col, n, dst, dst_stride) }
    }
}

/// `((p0 + p1) + (p2 + p3)) + ...` over `parts` (a power of two, at most 16, long).
///
/// # Safety
/// The backend's target features are enabled.
#[inline(always)]
pub(crate) unsafe fn pairwise_sum<S: Simd>(parts: &[S::V]) -> S::V {
    // SAFETY: the caller runs with the backend's target features enabled.
    unsafe {
        let mut buf = [S::zero(); 16];
        buf[..parts.len()].copy_from_slice(parts);
        let mut n = parts.len();
        while n > 1 {
            for i in 0..n / 2 {
                buf[i] = S::add(buf[2 * i], buf[2 * i + 1]);
            }
            n /= 2;
        }
        buf[0]
    }
}

/// The portable [`Simd::pack_chunk`].
///
/// # Safety
/// As [`Simd::pack_chunk`].
#[inline(always)]
pub(crate) unsafe fn generic_pack_chunk<S: Simd>(
    src: &[*const f32; 16],
    nr: usize,
    col: usize,
    n: usize,
    dst: *mut f32,
    dst_stride: usize,
) {
    // SAFETY: reads and writes stay within the ranges of the contract.
    unsafe {
        for l in 0..S::LANES {
            for (r, p) in src.iter().enumerate().take(S::LANES) {
                let v = if r < nr && l < n {
                    p.add(col + l).read()
                } else {
                    0.0
                };
                dst.add(l * dst_stride + r).write(v);
            }
        }
    }
}

/// Rows ahead of the current one whose prefixes are prefetched. A row-major file scanned at
/// a small prefix is a strided read that the hardware prefetchers follow poorly. (Measured on
/// a 2-core EPYC: 8 to 24 rows ahead are within noise of each other; none is 20-40% slower.)
const PREFETCH_ROWS: usize = 8;
/// Cache lines prefetched per row and segment at most (contiguous runs beyond are left to the
/// hardware prefetchers).
const PREFETCH_LINES: usize = 16;

/// Prefetches the prefix of `row`: its run in every segment (see [`prefetch_run`]).
#[inline(always)]
unsafe fn prefetch_row<S: Simd>(segs: &[Segment], row: usize) {
    for seg in segs {
        // SAFETY: the caller guarantees `row` is a valid row.
        unsafe { prefetch_run::<S>(seg, row) };
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

/// Dot products of the query `q` with `R <= 4` rows over the column segments, and the squared
/// norms of the rows, in one pass over the rows' data.
///
/// # Safety
/// `q` must be readable for the total width of `segs` (dense, column 0 at `q`); each `rows[i]`
/// must be a valid row of the matrix `segs` came from; the backend's target features must be
/// enabled.
#[inline(always)]
unsafe fn tile<S: Simd, const R: usize>(
    q: *const f32,
    segs: &[Segment],
    rows: &[usize; R],
) -> ([f32; R], [f32; R]) {
    // SAFETY: pointer arithmetic stays inside each row's segment run and the query's columns,
    // as the caller guarantees; see the function's contract.
    unsafe {
        let mut acc = [S::zero(); R];
        let mut nacc = [S::zero(); R];
        for seg in segs {
            let w = seg.width;
            let xp: [*const f32; R] = array::from_fn(|i| seg.row_ptr(rows[i]));
            let qp = q.add(seg.col);
            let mut c = 0;
            while c < w {
                let (xv, qv): ([S::V; R], S::V) = if c + S::LANES <= w {
                    (
                        array::from_fn(|i| S::load(xp[i].add(c))),
                        S::load(qp.add(c)),
                    )
                } else {
                    let n = w - c;
                    let xv = array::from_fn(|i| S::load_partial(xp[i].add(c), n));
                    (xv, S::load_partial(qp.add(c), n))
                };
                for i in 0..R {
                    nacc[i] = S::fma(xv[i], xv[i], nacc[i]);
                    acc[i] = S::fma(qv, xv[i], acc[i]);
                }
                c += S::LANES;
            }
        }
        (reduce_rows::<S, R>(&acc), reduce_rows::<S, R>(&nacc))
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
    // Several segments and dense rows (a scan of the prefix-blocked layout): walk them segment
    // by segment. Scattered rows (a funnel's survivors) gain nothing from it (measured), and
    // one segment is one pass either way.
    let dense = match (rows.first(), rows.last()) {
        (Some(&a), Some(&b)) => b >= a && b - a < 4 * rows.len(),
        _ => false,
    };
    if segs.len() > 1 && dense {
        // SAFETY: forwarded contract.
        unsafe { dot_norm_by_segment::<S>(q, segs, rows, dots, norms) };
        return;
    }
    let n = rows.len();
    let mut i = 0;
    // SAFETY: forwarded contract; the chunking keeps every index below rows.len().
    unsafe {
        while i + 4 <= n {
            for &ahead in rows.iter().skip(i + PREFETCH_ROWS).take(4) {
                prefetch_row::<S>(segs, ahead);
            }
            let r: [usize; 4] = array::from_fn(|t| rows[i + t]);
            let (d, nn) = tile::<S, 4>(q, segs, &r);
            dots[i..i + 4].copy_from_slice(&d);
            norms[i..i + 4].copy_from_slice(&nn);
            i += 4;
        }
        macro_rules! tail {
            ($r:literal) => {{
                let r: [usize; $r] = array::from_fn(|t| rows[i + t]);
                let (d, nn) = tile::<S, $r>(q, segs, &r);
                dots[i..i + $r].copy_from_slice(&d);
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

/// Rows per pass of [`dot_norm_by_segment`].
const SEGMENT_PASS_ROWS: usize = 128;

/// Prefetches row `row`'s run in one segment.
#[inline(always)]
unsafe fn prefetch_run<S: Simd>(seg: &Segment, row: usize) {
    // SAFETY: the caller guarantees `row` is valid; prefetches never fault and stay in the run.
    unsafe {
        let p = seg.row_ptr(row);
        for c in (0..seg.width).step_by(16).take(PREFETCH_LINES) {
            S::prefetch(p.add(c));
        }
    }
}

/// [`dot_norm_block`] for rows made of several segments (the prefix-blocked layout): rows are
/// taken `SEGMENT_PASS_ROWS` at a time and walked one segment after another, their
/// accumulators kept between segments. Each pass then reads one sequential stream instead of
/// one stream per segment (a 768-dim scan of a 64-blocked file: 12). Each lane still sees the
/// same values in the same order, so the result is bitwise that of [`tile`].
///
/// # Safety
/// As [`dot_norm_block`].
#[inline(always)]
unsafe fn dot_norm_by_segment<S: Simd>(
    q: *const f32,
    segs: &[Segment],
    rows: &[usize],
    dots: &mut [f32],
    norms: &mut [f32],
) {
    let lanes = S::LANES;
    // SAFETY: every row is valid and every read stays inside its run or the query's columns
    // (the contract); output indices stay below rows.len().
    unsafe {
        let mut acc = [[S::zero(); 2]; SEGMENT_PASS_ROWS];
        for (b, block) in rows.chunks(SEGMENT_PASS_ROWS).enumerate() {
            let m = block.len();
            acc[..m].fill([S::zero(); 2]);
            for (s, seg) in segs.iter().enumerate() {
                let (w, qp) = (seg.width, q.add(seg.col));
                for (i, &row) in block.iter().enumerate() {
                    // Prefetch ahead, running into the next segment's first rows at the end.
                    let ahead = i + PREFETCH_ROWS;
                    if ahead < m {
                        prefetch_run::<S>(seg, block[ahead]);
                    } else if let (Some(next), Some(&r)) = (segs.get(s + 1), block.get(ahead - m)) {
                        prefetch_run::<S>(next, r);
                    }
                    let xp = seg.row_ptr(row);
                    let [mut d, mut nn] = acc[i];
                    let mut c = 0;
                    while c + lanes <= w {
                        let xv = S::load(xp.add(c));
                        nn = S::fma(xv, xv, nn);
                        d = S::fma(S::load(qp.add(c)), xv, d);
                        c += lanes;
                    }
                    if c < w {
                        let xv = S::load_partial(xp.add(c), w - c);
                        nn = S::fma(xv, xv, nn);
                        d = S::fma(S::load_partial(qp.add(c), w - c), xv, d);
                    }
                    acc[i] = [d, nn];
                }
            }
            for (t, four) in acc[..m].chunks(4).enumerate() {
                let pick = |i: usize, k: usize| four.get(i).map_or(S::zero(), |a| a[k]);
                let d = S::reduce4(pick(0, 0), pick(1, 0), pick(2, 0), pick(3, 0));
                let nn = S::reduce4(pick(0, 1), pick(1, 1), pick(2, 1), pick(3, 1));
                let at = b * SEGMENT_PASS_ROWS + t * 4;
                dots[at..at + four.len()].copy_from_slice(&d[..four.len()]);
                norms[at..at + four.len()].copy_from_slice(&nn[..four.len()]);
            }
        }
    }
}

// Batches: panels.
//
// A batch computes the same sums as `tile` in a layout without per-pair horizontal reductions.
// A row splits into chunks of `LANES` columns, segment by segment (the last chunk of each
// segment zero-filled), exactly as `tile` walks it; call the number of chunks `T`. Rows are
// packed in groups of `LANES` ("panels"); vector `(l, t)` of a group holds column `l` of chunk
// `t` of the group's rows, one row per lane. Lane `r` of `sum_t q[l, t] * panel[l, t]`,
// accumulated over `t` in order, is then `tile`'s lane `l` of the pair (query, row `r`), and
// `combine` over `l` adds the lanes in `reduce4`'s order: the same value, bitwise, as the
// single-query pass, computed with one broadcast and one FMA per `LANES` pairs.

/// Rows of the next group whose prefixes are prefetched while a group is packed.
const PACK_AHEAD: usize = 16;

/// Packs `rows` into panels at `out`: group `g` (rows `g * LANES ..`, missing rows zero) at
/// `out + g * LANES * chunks * LANES`, its vector `(l, t)` at `+ (l * chunks + t) * LANES`.
///
/// # Safety
/// Each `rows[i]` is a valid row of the matrix `segs` came from; `chunks` is the number of
/// `LANES`-chunks of the segments; `out` is writable for `ceil(rows.len() / LANES) * LANES *
/// chunks * LANES` floats; the backend's target features are enabled.
#[inline(always)]
pub(crate) unsafe fn pack_panels<S: Simd>(
    segs: &[Segment],
    rows: &[usize],
    chunks: usize,
    out: *mut f32,
) {
    let lanes = S::LANES;
    let group_len = lanes * chunks * lanes;
    // SAFETY: row pointers come from valid rows; every chunk reads at most the segment's width
    // of each row and writes inside its group's block of `out` (see the contract).
    unsafe {
        for (g, grp) in rows.chunks(lanes).enumerate() {
            for &ahead in rows.iter().skip(g * lanes + PACK_AHEAD).take(lanes) {
                prefetch_row::<S>(segs, ahead);
            }
            let base = out.add(g * group_len);
            let mut t = 0;
            for seg in segs {
                let src: [*const f32; 16] = array::from_fn(|r| match grp.get(r) {
                    Some(&row) => seg.row_ptr(row),
                    None => std::ptr::null(),
                });
                let mut c = 0;
                while c < seg.width {
                    let n = (seg.width - c).min(lanes);
                    S::pack_chunk(&src, grp.len(), c, n, base.add(t * lanes), chunks * lanes);
                    t += 1;
                    c += lanes;
                }
            }
        }
    }
}

/// `out[g * LANES + r] = |x|^2` for row `r` of panel group `g` (zero rows give `0.0`), bitwise
/// as [`dot_norm_block`] computes it.
///
/// # Safety
/// `panels` holds `groups` packed groups of `chunks` chunks; `out` is writable for `groups *
/// LANES` floats; the backend's target features are enabled.
#[inline(always)]
pub(crate) unsafe fn panel_norms<S: Simd>(
    panels: *const f32,
    groups: usize,
    chunks: usize,
    out: *mut f32,
) {
    let lanes = S::LANES;
    // SAFETY: every read is inside group g's block, every write inside out (see the contract).
    unsafe {
        for g in 0..groups {
            let p = panels.add(g * lanes * chunks * lanes);
            let mut parts = [S::zero(); 16];
            for (l, part) in parts.iter_mut().enumerate().take(lanes) {
                let mut acc = S::zero();
                for t in 0..chunks {
                    let v = S::load(p.add((l * chunks + t) * lanes));
                    acc = S::fma(v, v, acc);
                }
                *part = acc;
            }
            S::store(out.add(g * lanes), S::combine(&parts[..lanes]));
        }
    }
}

/// Number of `lanes`-column chunks a row splits into, segment by segment.
pub(crate) fn chunk_count(segs: &[Segment], lanes: usize) -> usize {
    segs.iter().map(|s| s.width.div_ceil(lanes)).sum()
}

/// Lays out unit queries (dense, `dim` columns each) as the panels need them: query `j`'s
/// chunk `t`, column `l` at `out[j * LANES * chunks + l * chunks + t]` (zero past a segment's
/// width). Returns the number of chunks.
pub(crate) fn permute_queries(
    segs: &[Segment],
    lanes: usize,
    qn: &[f32],
    nq: usize,
    out: &mut Vec<f32>,
) -> usize {
    let chunks = chunk_count(segs, lanes);
    let dim: usize = segs.iter().map(|s| s.width).sum();
    out.clear();
    out.resize(nq * lanes * chunks, 0.0);
    for j in 0..nq {
        let q = &qn[j * dim..(j + 1) * dim];
        let dst = &mut out[j * lanes * chunks..(j + 1) * lanes * chunks];
        let mut t = 0;
        for seg in segs {
            for c0 in (0..seg.width).step_by(lanes) {
                for l in 0..lanes.min(seg.width - c0) {
                    dst[l * chunks + t] = q[seg.col + c0 + l];
                }
                t += 1;
            }
        }
    }
    chunks
}

/// Where [`panel_dots`] marks the rows worth a look: `masks[j * mask_stride + g]` gets bit `r`
/// set where `dot(j, row g * LANES + r) * scales[g * LANES + r] >= thr[j]` (as
/// [`Simd::pass_mask`]). A scan passes its selections' thresholds and the rows' `1/|x|`, so
/// that the (query, row) pairs that lose, nearly all of them, cost no work after the kernel.
#[derive(Clone, Copy)]
pub(crate) struct Select {
    /// One float per packed row (padding included).
    pub scales: *const f32,
    /// One float per query of the call.
    pub thr: *const f32,
    pub masks: *mut u32,
    pub mask_stride: usize,
}

/// One query's marks (see [`Select`]) for rows scored elsewhere: `masks[g]` gets bit `r` set
/// where `dots[g * LANES + r] * scales[g * LANES + r] >= thr`, as [`Simd::pass_mask`].
///
/// # Safety
/// `dots` and `scales` are readable for `groups * LANES` floats, `masks` writable for
/// `groups` words; the backend's target features are enabled.
#[inline(always)]
pub(crate) unsafe fn pass_masks<S: Simd>(
    dots: *const f32,
    scales: *const f32,
    groups: usize,
    thr: f32,
    masks: *mut u32,
) {
    let lanes = S::LANES;
    // SAFETY: every index stays below groups * LANES (reads) or groups (writes): the contract.
    unsafe {
        let t = S::splat(&thr);
        for g in 0..groups {
            let d = S::load(dots.add(g * lanes));
            let s = S::load(scales.add(g * lanes));
            masks.add(g).write(S::pass_mask(d, s, t));
        }
    }
}

/// `Q` queries against `G` panel groups: `outs[j] + g * LANES` receives the dot products of
/// query `j` with group `g`'s rows, and `masks[j] + g` their bits (see [`Select`]); `scales`
/// points at the first group's scales, `thr[j]` at query `j`'s threshold. At most 4 x 2:
/// 8 accumulators, 2 panel vectors and the broadcasts fit AVX2's 16 registers with room to
/// spare (a spilled accumulator would put a store-to-load round trip into the FMA chain).
/// `C`, when not 0, is `chunks` known at compile time, so that the chunk loop unrolls: with
/// 8 chunks (a 64-dim prefix on AVX2, the usual first stage of a funnel) the short loop's
/// overhead is a measurable share (`make bench-kernel`: 37.6-38.9 G multiply-adds/s at 64
/// dims without it, 39.4-39.9 with it).
#[inline(always)]
unsafe fn panel_tile<S: Simd, const Q: usize, const G: usize, const C: usize>(
    qs: &[*const f32; Q],
    ps: &[*const f32; G],
    chunks: usize,
    outs: &[*mut f32; Q],
    scales: *const f32,
    thr: &[*const f32; Q],
    masks: &[*mut u32; Q],
) {
    let lanes = S::LANES;
    let chunks = if C > 0 { C } else { chunks };
    // SAFETY: reads stay inside each query's and each group's block, writes inside each
    // output row (see `panel_dots`).
    unsafe {
        // Not zeroed (that would cost as much as a small tile): lanes 0..LANES are written
        // below before they are read.
        let mut parts = [[[MaybeUninit::<S::V>::uninit(); 16]; G]; Q];
        for l in 0..lanes {
            let mut acc = [[S::zero(); G]; Q];
            for t in 0..chunks {
                let off = l * chunks + t;
                let pv: [S::V; G] = array::from_fn(|g| S::load(ps[g].add(off * lanes)));
                for j in 0..Q {
                    let b = S::splat(qs[j].add(off));
                    for g in 0..G {
                        acc[j][g] = S::fma(b, pv[g], acc[j][g]);
                    }
                }
            }
            for (pj, aj) in parts.iter_mut().zip(&acc) {
                for (pjg, &a) in pj.iter_mut().zip(aj) {
                    pjg[l].write(a);
                }
            }
        }
        let sv: [S::V; G] = array::from_fn(|g| S::load(scales.add(g * lanes)));
        for (j, pj) in parts.iter().enumerate() {
            let t = S::splat(thr[j]);
            for (g, pjg) in pj.iter().enumerate() {
                // The first `lanes` parts were written in the loop above (lanes <= 16), and
                // MaybeUninit<V> has V's layout.
                let done = std::slice::from_raw_parts(pjg.as_ptr().cast::<S::V>(), lanes);
                let dot = S::combine(done);
                S::store(outs[j].add(g * lanes), dot);
                masks[j].add(g).write(S::pass_mask(dot, sv[g], t));
            }
        }
    }
}

/// `out[j * out_stride + g * LANES + r] = q_j . x` for row `r` of panel group `g`, for the
/// `nq` queries laid out by [`permute_queries`] at `qs`; bitwise as [`dot_norm_block`]. Also
/// writes the masks of `sel` (see [`Select`]).
///
/// # Safety
/// `qs` holds `nq` permuted queries of `chunks` chunks; `panels` holds `groups` groups of
/// `chunks` chunks; `out` is writable at `j * out_stride + [0, groups * LANES)` for `j < nq`;
/// `sel.scales` is readable for `groups * LANES` floats, `sel.thr` for `nq`, and `sel.masks`
/// writable at `j * sel.mask_stride + [0, groups)` for `j < nq`; the backend's target
/// features are enabled.
#[inline(always)]
#[allow(clippy::too_many_arguments)]
pub(crate) unsafe fn panel_dots<S: Simd>(
    qs: *const f32,
    nq: usize,
    panels: *const f32,
    groups: usize,
    chunks: usize,
    out: *mut f32,
    out_stride: usize,
    sel: Select,
) {
    let lanes = S::LANES;
    let group_len = lanes * chunks * lanes;
    // SAFETY: every query index stays below nq and group index below groups (contract).
    unsafe {
        let mut j = 0;
        while j < nq {
            let qn = (nq - j).min(4);
            let mut g = 0;
            while g < groups {
                let gn = (groups - g).min(2);
                macro_rules! go {
                    ($q:literal, $g:literal) => {{
                        let qp: [*const f32; $q] =
                            array::from_fn(|t| qs.add((j + t) * lanes * chunks));
                        let pp: [*const f32; $g] =
                            array::from_fn(|t| panels.add((g + t) * group_len));
                        let op: [*mut f32; $q] =
                            array::from_fn(|t| out.add((j + t) * out_stride + g * lanes));
                        let th: [*const f32; $q] = array::from_fn(|t| sel.thr.add(j + t));
                        let mp: [*mut u32; $q] =
                            array::from_fn(|t| sel.masks.add((j + t) * sel.mask_stride + g));
                        let sc = sel.scales.add(g * lanes);
                        if chunks == 8 {
                            panel_tile::<S, $q, $g, 8>(&qp, &pp, chunks, &op, sc, &th, &mp);
                        } else {
                            panel_tile::<S, $q, $g, 0>(&qp, &pp, chunks, &op, sc, &th, &mp);
                        }
                    }};
                }
                match (qn, gn) {
                    (4, 2) => go!(4, 2),
                    (4, _) => go!(4, 1),
                    (3, 2) => go!(3, 2),
                    (3, _) => go!(3, 1),
                    (2, 2) => go!(2, 2),
                    (2, _) => go!(2, 1),
                    (_, 2) => go!(1, 2),
                    _ => go!(1, 1),
                }
                g += gn;
            }
            j += qn;
        }
    }
}
