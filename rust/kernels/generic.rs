//! The kernel algorithm, written once over a small vector trait and instantiated per backend
//! (as memchr's `arch/generic`). Every function here is `#[inline(always)]`, so it is compiled
//! inside each backend's `#[target_feature]` entry point with that backend's instructions.
//!
//! Determinism: the value computed for a (query, row) pair is `LANES` partial sums, lane `l`
//! fed the columns `l, l + LANES, ...` of each segment in order (the last partial chunk of a
//! segment zero-filled), then added in the backend's `reduce4` order. Every entry point
//! computes exactly that sequence (one query row by row or segment by segment, a batch with its
//! queries in lanes and the partial sums added by `combine`), whatever the batch, the tile shape or
//! the row's position, so a row's dot product and squared norm are bitwise the same whichever
//! entry point computed them, and duplicate rows always tie.

use std::array;
use std::marker::PhantomData;
use std::mem::MaybeUninit;

use crate::layout::{Prefix, Segment};

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

        /// See [`generic::batch_dots`](crate::kernels::generic::batch_dots).
        ///
        /// # Safety
        /// As the generic function; the CPU must support the backend's features.
        $(#[target_feature(enable = $features)])?
        pub(crate) unsafe fn batch_dots(b: $crate::kernels::generic::RawBatch<'_>) {
            // SAFETY: forwarded contract; the features are enabled by this function's attribute.
            unsafe { $crate::kernels::generic::batch_dots::<$simd>(b) }
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
    /// As [`Simd::prefetch`], into the second-level cache only (see [`prefetch_run`]); by
    /// default the same as `prefetch`.
    #[inline(always)]
    unsafe fn prefetch_l2(p: *const f32) {
        // SAFETY: a hint, as `prefetch`.
        unsafe { Self::prefetch(p) }
    }
    /// All lanes `*p`.
    unsafe fn splat(p: *const f32) -> Self::V;
    /// Stores `LANES` floats at `p` (unaligned).
    unsafe fn store(p: *mut f32, v: Self::V);
    /// `a + b` per lane.
    unsafe fn add(a: Self::V, b: Self::V) -> Self::V;
    /// Bit `l` set where `dots[l] * scales[l] >= thr[l]` (the float32 product, compared
    /// ordered: false for NaN), for the `LANES` lanes.
    unsafe fn pass_mask(dots: Self::V, scales: Self::V, thr: Self::V) -> u32;

    /// Whether `reduce4` adds lane `i` to lane `i + LANES / 2` before the pairwise tree over
    /// those sums (AVX-512), instead of the tree over all lanes (AVX2, NEON, scalar). See
    /// [`lane_tree`], the one place the order is written for the batch kernel.
    const FOLD_HALVES: bool = false;

    /// Whether the batch kernel adds a pair's partial sums while it computes the lanes
    /// ([`lane_tree`] over lanes computed on demand), keeping the partial trees in registers,
    /// rather than storing every lane and adding them after. Needs room for about five tiles
    /// of accumulators: AVX-512's 32 vector registers, not AVX2's 16.
    const STREAM_COMBINE: bool = false;

    /// Lane `i` of the result is `reduce4`'s sum of the values `parts[0][i], .., parts[LANES-1][i]`
    /// in `reduce4`'s order (`parts.len() == LANES`): the horizontal reduction done vertically,
    /// for `LANES` pairs at once.
    #[inline(always)]
    unsafe fn combine(parts: &[Self::V]) -> Self::V {
        // SAFETY: the caller runs with the backend's target features enabled.
        unsafe { lane_tree::<Self, _>(&mut StoredLanes::<Self>(parts)) }
    }
}

/// The partial sums of one or more pairs, lane by lane, for [`lane_tree`]. (A trait with
/// `inline(always)` methods rather than closures, so that everything inlines into the
/// backend's `target_feature` entry point.)
pub(crate) trait LaneSums {
    /// One lane's partial sums: a vector, or a whole tile of them.
    type T: Copy;
    /// Lane `l`'s partial sums.
    ///
    /// # Safety
    /// As the implementor's constructor requires; the backend's target features are enabled.
    unsafe fn lane(&mut self, l: usize) -> Self::T;
    /// `a + b`, per lane of every vector.
    ///
    /// # Safety
    /// The backend's target features are enabled.
    unsafe fn add(a: Self::T, b: Self::T) -> Self::T;
}

/// Lanes already computed and stored: lane `l` is `self.0[l]`.
struct StoredLanes<'a, S: Simd>(&'a [S::V]);

impl<S: Simd> LaneSums for StoredLanes<'_, S> {
    type T = S::V;
    #[inline(always)]
    unsafe fn lane(&mut self, l: usize) -> S::V {
        self.0[l]
    }
    #[inline(always)]
    unsafe fn add(a: S::V, b: S::V) -> S::V {
        // SAFETY: the caller runs with the backend's target features enabled.
        unsafe { S::add(a, b) }
    }
}

/// A pair's `LANES` partial sums added in `reduce4`'s order: with [`Simd::FOLD_HALVES`],
/// `leaf(j) = lane(j) + lane(j + LANES / 2)`, else `leaf(j) = lane(j)`, then the pairwise tree
/// `((leaf0 + leaf1) + (leaf2 + leaf3)) + ...` over the leaves. `lanes.lane` is called once per
/// lane, in the order the tree needs them, so that it may compute each lane only then.
///
/// # Safety
/// As `L::lane` requires; the backend's target features are enabled.
#[inline(always)]
pub(crate) unsafe fn lane_tree<S: Simd, L: LaneSums>(lanes: &mut L) -> L::T {
    let half = S::LANES / 2;
    // SAFETY: forwarded contract.
    unsafe {
        // Written out, so that the tree's partial sums are named values (registers), not a
        // stack in memory.
        macro_rules! leaf {
            ($j:expr) => {{
                if S::FOLD_HALVES {
                    let a = lanes.lane($j);
                    let b = lanes.lane($j + half);
                    L::add(a, b)
                } else {
                    lanes.lane($j)
                }
            }};
        }
        macro_rules! t2 {
            ($a:expr) => {{
                let x = leaf!($a);
                let y = leaf!($a + 1);
                L::add(x, y)
            }};
        }
        macro_rules! t4 {
            ($a:expr) => {{
                let x = t2!($a);
                let y = t2!($a + 2);
                L::add(x, y)
            }};
        }
        macro_rules! t8 {
            ($a:expr) => {{
                let x = t4!($a);
                let y = t4!($a + 4);
                L::add(x, y)
            }};
        }
        match if S::FOLD_HALVES { half } else { S::LANES } {
            1 => leaf!(0),
            2 => t2!(0),
            4 => t4!(0),
            8 => t8!(0),
            16 => {
                let x = t8!(0);
                let y = t8!(8);
                L::add(x, y)
            }
            _ => unreachable!("LANES is a power of two, at most 16"),
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

/// Prefetches the prefix of `row` for the four-row tiles: its run in every segment (see
/// [`prefetch_tile_run`]).
#[inline(always)]
unsafe fn prefetch_row<S: Simd>(segs: &[Segment], row: usize) {
    for seg in segs {
        // SAFETY: the caller guarantees `row` is a valid row, so `row_ptr` is in bounds.
        let p = unsafe { seg.row_ptr(row) };
        prefetch_tile_run::<S>(p, seg.width, seg.rows_adjacent());
    }
}

/// Prefetches the `n` floats at `p` of a row that the four-row tiles or the batch kernel will
/// read: into L2 where the rows lie apart (a prefix of a wider row-major matrix), as
/// [`prefetch_run`] does, and with [`Simd::prefetch`] where they are `adjacent` (a 64-wide
/// segment of the prefix-blocked file: into L2 that scan ran 1.17x slower).
#[inline(always)]
fn prefetch_tile_run<S: Simd>(p: *const f32, n: usize, adjacent: bool) {
    if adjacent {
        prefetch_floats::<S, false>(p, n);
    } else {
        prefetch_floats::<S, true>(p, n);
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
        let mut acc = [[S::zero(); 2]; R];
        for seg in segs {
            let xp: [*const f32; R] = array::from_fn(|i| seg.row_ptr(rows[i]));
            segment_rows::<S, R>(q.add(seg.col), seg.width, &xp, &mut acc);
        }
        let (dot, nn): ([S::V; R], [S::V; R]) =
            (array::from_fn(|i| acc[i][0]), array::from_fn(|i| acc[i][1]));
        (reduce_rows::<S, R>(&dot), reduce_rows::<S, R>(&nn))
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
    if let ([seg], true) = (segs, dense) {
        if S::LANES >= LONG_ROW_LANES && seg.rows_adjacent() && seg.width >= LONG_ROW {
            // SAFETY: forwarded contract.
            unsafe { dot_norm_long_rows::<S>(q, seg, rows, dots, norms) };
            return;
        }
    }
    let mut i = 0;
    // SAFETY: forwarded contract; the chunking keeps every index below rows.len().
    unsafe {
        while i + 4 <= n {
            for &ahead in rows.iter().skip(i + PREFETCH_ROWS).take(4) {
                if dense {
                    prefetch_row::<S>(segs, ahead);
                } else {
                    // Scattered rows (a funnel's survivors): the first line of each run only
                    // (on cores whose prefetches walk the page tables, its page's translation
                    // too); the hardware prefetchers stream the rest of a long run. Prefetching
                    // whole runs, as a scan does, made this gather 15-20% slower at 128 to 768
                    // dims (`make bench-gather`, 2-core EPYC).
                    for seg in segs {
                        S::prefetch(seg.row_ptr(ahead));
                    }
                }
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

/// Row runs at least this long (floats) are read one row after another, with vectors of at
/// least [`LONG_ROW_LANES`] lanes (see [`dot_norm_long_rows`]).
const LONG_ROW: usize = 256;
const LONG_ROW_LANES: usize = 16;

/// [`dot_norm_block`] for dense rows whose runs are long and adjacent in memory (a full-width
/// scan of a row-major matrix of 256 columns or more), with 16-lane vectors (AVX-512): one row
/// at a time, so that the rows are one sequential stream for the hardware prefetchers, instead
/// of four streams read in lockstep a row apart. Measured side by side (200k x 768 `.npy`, one
/// query at 768 dims, 2 threads, a busy 2-core EPYC with AVX-512): 25-30% faster than the
/// four-row tiles, on par with numkong's pairwise kernel on the same file, which the tiles
/// trailed by 1.3x. Narrower vectors keep the tiles: a lone row's two accumulators are chains
/// of dependent FMAs twice as long (96 per 768 columns with AVX2), and on an AVX2 EPYC (1M x
/// 768 `.npy`, one query, 2 threads, interleaved runs) one row at a time was 13% slower than
/// the tiles (best 152-154 ms against 131-139). `reduce4` of one row's accumulators with three
/// zero vectors adds its lanes in the same order as a tile of four rows, so the results are
/// bitwise those of [`tile`] (tested).
///
/// # Safety
/// As [`dot_norm_block`].
#[inline(always)]
unsafe fn dot_norm_long_rows<S: Simd>(
    q: *const f32,
    seg: &Segment,
    rows: &[usize],
    dots: &mut [f32],
    norms: &mut [f32],
) {
    // SAFETY: forwarded contract; every index stays below rows.len().
    unsafe {
        for (i, &row) in rows.iter().enumerate() {
            if let Some(&ahead) = rows.get(i + LONG_PREFETCH_ROWS) {
                prefetch_run::<S>(seg, ahead);
            }
            let (d, nn) = tile::<S, 1>(q, std::slice::from_ref(seg), &[row]);
            dots[i] = d[0];
            norms[i] = nn[0];
        }
    }
}

/// Rows ahead whose first lines (up to [`PREFETCH_LINES`]) [`dot_norm_long_rows`] prefetches;
/// the hardware prefetchers follow the rest of the stream.
const LONG_PREFETCH_ROWS: usize = 4;

/// Rows per pass of [`dot_norm_by_segment`]: each pass reads a run of this many rows from
/// every segment in turn (32 KiB per 64-wide segment at 128 rows, 128 KiB at 512), and keeps
/// two accumulators per row (32 KiB with AVX2, 64 KiB with AVX-512: L1/L2). Measured side by
/// side (400k x 768, 64-column blocks, one query, 2 threads): 512 rows scan the full width
/// 4% faster than 128 (219 vs 228 ms, twice), the `.npy` scan unchanged; the longer runs give
/// the hardware prefetchers fewer restarts.
const SEGMENT_PASS_ROWS: usize = 512;

/// Prefetches row `row`'s run in one segment into the second-level cache ([`Simd::prefetch_l2`];
/// see [`prefetch_floats`]). One query's scans of strided prefixes (through
/// [`prefetch_tile_run`]), of full-width rows and of the prefix-blocked file segment by
/// segment prefetch into L2 rather than with the non-temporal hint: side by side (1M x 768, one query, 2 threads, two
/// builds in one process, AVX-512 EPYC) they took 0.62x / 0.84x / 0.82x the time of the
/// non-temporal hint at 64 / 128 / 256 dims of a `.npy`, 0.82-0.87x at its full width, and
/// 0.81-0.92x on the prefix-blocked file at 128 to 768 dims (see docs/kernels.md).
#[inline(always)]
unsafe fn prefetch_run<S: Simd>(seg: &Segment, row: usize) {
    // SAFETY: the caller guarantees `row` is valid, so `row_ptr` is in bounds.
    prefetch_floats::<S, true>(unsafe { seg.row_ptr(row) }, seg.width);
}

/// Prefetches every cache line that the `n` floats from `p` touch, up to [`PREFETCH_LINES`].
/// A run need not start on a line: a numpy array's buffer usually starts 16 bytes into one,
/// so a 512-byte run spans 9 lines. Stepping 64 bytes from the run's first value (as this once
/// did) left the last line to a demand miss on every row, which made an in-RAM array scanned
/// at d=128 up to 1.7x slower than the same rows memory-mapped (where the `.npy` header puts
/// rows on line boundaries).
#[inline(always)]
fn prefetch_floats<S: Simd, const L2: bool>(p: *const f32, n: usize) {
    let p = p.cast::<u8>();
    let (skew, lines) = line_span(p as usize, n);
    // Wrapping arithmetic: the start of the first line may lie before the allocation; it is
    // only an address for the hint, never dereferenced.
    let first = p.wrapping_sub(skew);
    for l in 0..lines.min(PREFETCH_LINES) {
        let line = first.wrapping_add(l * LINE_BYTES).cast();
        // SAFETY: prefetch is a hint and never faults, whatever the address.
        unsafe {
            if L2 {
                S::prefetch_l2(line)
            } else {
                S::prefetch(line)
            }
        };
    }
}

/// For `n` floats at byte address `addr`: how far `addr` lies into its cache line, and how
/// many lines the floats touch.
#[inline(always)]
pub(crate) fn line_span(addr: usize, n: usize) -> (usize, usize) {
    let skew = addr % LINE_BYTES;
    (skew, (skew + n * 4).div_ceil(LINE_BYTES))
}

/// Cache line size in bytes (x86-64 and the usual aarch64 cores; a wrong guess only thins or
/// doubles the prefetches).
const LINE_BYTES: usize = 64;

/// How far ahead [`dot_norm_by_segment`] prefetches a segment's run: 16 KiB, 64 rows of a
/// 64-wide segment. (1M x 768 prefix-blocked file, one query, two builds in one process, time
/// over 8 rows ahead at 128 / 256 / 768 dims: 32 rows 0.80 / 0.83 / 0.79, 64 rows 0.79 / 0.75 /
/// 0.84, 128 rows 0.91 / 0.87 / 0.85. The 64-dim scan of one segment, read by the tiles, ran
/// 1.17x slower with 64 rows ahead: it keeps [`PREFETCH_ROWS`].)
const SEGMENT_PREFETCH_BYTES: usize = 16 * 1024;

/// One segment's `w` columns of `R` rows at `xp` added into their accumulators `[dot, norm]`,
/// the rows in lockstep (independent chains, the loads of all `R` rows in flight at once): the
/// one place a row's dot product and squared norm are accumulated, for [`tile`] (every
/// segment of four rows) and [`dot_norm_by_segment`] (one segment at a time).
///
/// # Safety
/// Each `xp[r]` is readable for `w` floats, `qp` too; the backend's target features are enabled.
#[inline(always)]
unsafe fn segment_rows<S: Simd, const R: usize>(
    qp: *const f32,
    w: usize,
    xp: &[*const f32; R],
    acc: &mut [[S::V; 2]; R],
) {
    let lanes = S::LANES;
    // SAFETY: every load is inside a row's `w` floats or the query's (contract).
    unsafe {
        let mut c = 0;
        while c + lanes <= w {
            let qv = S::load(qp.add(c));
            for (a, x) in acc.iter_mut().zip(xp) {
                let xv = S::load(x.add(c));
                a[1] = S::fma(xv, xv, a[1]);
                a[0] = S::fma(qv, xv, a[0]);
            }
            c += lanes;
        }
        if c < w {
            let qv = S::load_partial(qp.add(c), w - c);
            for (a, x) in acc.iter_mut().zip(xp) {
                let xv = S::load_partial(x.add(c), w - c);
                a[1] = S::fma(xv, xv, a[1]);
                a[0] = S::fma(qv, xv, a[0]);
            }
        }
    }
}

/// [`dot_norm_block`] for rows made of several segments (the prefix-blocked layout): rows are
/// taken `SEGMENT_PASS_ROWS` at a time and walked one segment after another, their
/// accumulators kept between segments. Each pass then reads one sequential stream instead of
/// one stream per segment (a 768-dim scan of a 64-blocked file: 12). Within a segment four
/// rows go in lockstep ([`segment_rows`]), and the run is prefetched
/// [`SEGMENT_PREFETCH_BYTES`] ahead, into the next segment and the next pass. Each lane still
/// sees the same values in the same order, so the result is bitwise that of [`tile`].
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
    // SAFETY: every row is valid and every read stays inside its run or the query's columns
    // (the contract); output indices stay below rows.len().
    unsafe {
        let mut acc = [[S::zero(); 2]; SEGMENT_PASS_ROWS];
        for (b, block) in rows.chunks(SEGMENT_PASS_ROWS).enumerate() {
            let m = block.len();
            acc[..m].fill([S::zero(); 2]);
            for (s, seg) in segs.iter().enumerate() {
                let (w, qp) = (seg.width, q.add(seg.col));
                let dist = (SEGMENT_PREFETCH_BYTES / (w * 4).max(1)).max(PREFETCH_ROWS);
                let mut i = 0;
                while i < m {
                    let rn = (m - i).min(4);
                    // Prefetch ahead, running into the next segment's first rows at the end,
                    // and from the last segment into the next pass's first rows.
                    for ahead in i + dist..i + dist + rn {
                        if ahead < m {
                            prefetch_run::<S>(seg, block[ahead]);
                        } else if let Some(next) = segs.get(s + 1) {
                            if let Some(&r) = block.get(ahead - m) {
                                prefetch_run::<S>(next, r);
                            }
                        } else if let Some(&r) = rows.get((b + 1) * SEGMENT_PASS_ROWS + ahead - m) {
                            prefetch_run::<S>(&segs[0], r);
                        }
                    }
                    macro_rules! rows {
                        ($r:literal) => {{
                            let xp: [*const f32; $r] =
                                array::from_fn(|t| seg.row_ptr(block[i + t]));
                            let a: &mut [[S::V; 2]; $r] =
                                (&mut acc[i..i + $r]).try_into().expect("$r rows");
                            segment_rows::<S, $r>(qp, w, &xp, a);
                        }};
                    }
                    match rn {
                        4 => rows!(4),
                        3 => rows!(3),
                        2 => rows!(2),
                        _ => rows!(1),
                    }
                    i += rn;
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

// Batches: queries in lanes.
//
// A batch computes the same sums as `tile` with the roles of rows and queries swapped, so that
// the rows are read where they lie, with no copy or transpose. A row splits into chunks of
// `LANES` columns, segment by segment (the last chunk of each segment zero-filled), exactly as
// `tile` walks it; call the number of chunks `T`. Queries are laid out once per search in
// groups of `LANES` ([`permute_queries`]): vector `(l, t)` of a group holds column `l` of chunk
// `t` of the group's queries, one query per lane. Lane `j` of `sum_t x[t * LANES + l] *
// group[l, t]` (the row's value broadcast), accumulated over `t` in order, is then `tile`'s
// lane `l` of the pair (query `j`, row), and `combine` over `l` adds the lanes in `reduce4`'s
// order: the same value, bitwise, as the single-query pass (an FMA's product does not depend
// on the order of its factors). Each row is read once per group pair from L1, while the
// queries (16 KiB for 64 queries at 64 dims) stay there too.

/// Lays out unit queries (dense, `dim` columns each) for [`batch_dots`] into `out` (zeroed,
/// `ceil(nq / LANES)` groups long): query `j = h * LANES + i` is lane `i` of group `h`; column
/// `l` of its chunk `t` is at `out[h * LANES * chunks * LANES + (l * chunks + t) * LANES + i]`
/// (zero past a segment's width, and for the missing queries of the last group).
pub(crate) fn permute_queries(
    prefix: &Prefix<'_>,
    lanes: usize,
    qn: &[f32],
    nq: usize,
    out: &mut [f32],
) {
    let (segs, dim, chunks) = (prefix.segments(), prefix.dim(), prefix.chunks(lanes));
    let group_len = lanes * chunks * lanes;
    assert_eq!(
        out.len(),
        nq.div_ceil(lanes) * group_len,
        "query layout of the wrong size"
    );
    for j in 0..nq {
        let q = &qn[j * dim..(j + 1) * dim];
        let dst = &mut out[(j / lanes) * group_len..(j / lanes + 1) * group_len];
        let i = j % lanes;
        let mut t = 0;
        for seg in segs {
            for c0 in (0..seg.width).step_by(lanes) {
                for l in 0..lanes.min(seg.width - c0) {
                    dst[(l * chunks + t) * lanes + i] = q[seg.col + c0 + l];
                }
                t += 1;
            }
        }
    }
}

/// Squared norms outside `[NN_MIN, NN_MAX]` may have lost precision to float32 under- or
/// overflow (or are zero, or not finite); such rows are scored apart.
pub(crate) const NN_MIN: f32 = 1e-30;
pub(crate) const NN_MAX: f32 = 1e30;

/// A row's score multiplier from its squared norm: `1/|x|`, or NaN when the norm is outside
/// `[NN_MIN, NN_MAX]` (the row is scored apart). The one place this formula is written.
#[inline(always)]
pub(crate) fn scale_of(nn: f32) -> f32 {
    if (NN_MIN..=NN_MAX).contains(&nn) {
        1.0 / nn.sqrt()
    } else {
        f32::NAN
    }
}

/// One call of [`batch_dots`], as raw pointers ([`crate::kernels::Batch`] is its safe, checked
/// form): the queries, the rows, and where each row's results go. Besides
/// the dot products, the kernel writes each row's squared norm and scale ([`scale_of`]) and
/// marks the (row, query) pairs worth a look: `masks[i * mask_stride + h]` gets bit `b` set
/// where `dot(row i, query h * LANES + b) * scales[i] >= thr[h * LANES + b]` (as
/// [`Simd::pass_mask`]). A scan passes its selections' thresholds, so that the pairs that
/// lose, nearly all of them, cost no work after the kernel; rows with a NaN scale never pass.
#[derive(Clone, Copy)]
pub(crate) struct RawBatch<'a> {
    /// `groups` groups of queries of `chunks` chunks, laid out by [`permute_queries`].
    pub qs: *const f32,
    pub groups: usize,
    pub chunks: usize,
    /// Row `i` is `chunks * LANES` values at `base + idx[i] * stride` (zero past each
    /// segment's width, as `tile` reads them).
    pub base: *const f32,
    pub stride: isize,
    pub idx: &'a [usize],
    /// Row `i`'s dot products at `out + i * out_stride`, one per query.
    pub out: *mut f32,
    pub out_stride: usize,
    /// One float per row (written).
    pub norms: *mut f32,
    /// One float per row (written).
    pub scales: *mut f32,
    /// One float per query, missing queries of the last group included.
    pub thr: *const f32,
    pub masks: *mut u32,
    pub mask_stride: usize,
}

/// One query's marks for rows scored by [`dot_norm_block`]: `masks[g]` gets bit `r` set
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

/// The partial sums of a batch tile, lane by lane ([`LaneSums`]): `R` rows at `xs` against
/// `H` query groups at `qs`, `chunks` chunks each (as [`batch_tile`]).
struct TileLanes<'a, S: Simd, const R: usize, const H: usize> {
    qs: &'a [*const f32; H],
    chunks: usize,
    xs: &'a [*const f32; R],
    simd: PhantomData<S>,
}

impl<S: Simd, const R: usize, const H: usize> LaneSums for TileLanes<'_, S, R, H> {
    type T = [[S::V; H]; R];

    #[inline(always)]
    unsafe fn lane(&mut self, l: usize) -> Self::T {
        let (lanes, chunks) = (S::LANES, self.chunks);
        // SAFETY: reads stay inside each row's `chunks * LANES` values and each group's block
        // (the contract of `batch_tile`, which builds this).
        unsafe {
            let mut acc = [[S::zero(); H]; R];
            for t in 0..chunks {
                let qv: [S::V; H] =
                    array::from_fn(|h| S::load(self.qs[h].add((l * chunks + t) * lanes)));
                for (r, ar) in acc.iter_mut().enumerate() {
                    let b = S::splat(self.xs[r].add(t * lanes + l));
                    for (a, &q) in ar.iter_mut().zip(&qv) {
                        *a = S::fma(b, q, *a);
                    }
                }
            }
            acc
        }
    }

    #[inline(always)]
    unsafe fn add(a: Self::T, b: Self::T) -> Self::T {
        // SAFETY: the caller runs with the backend's target features enabled.
        array::from_fn(|r| array::from_fn(|h| unsafe { S::add(a[r][h], b[r][h]) }))
    }
}

/// Query groups per batch tile at most (see [`batch_tile`]).
#[inline(always)]
const fn max_tile_groups<S: Simd>() -> usize {
    if S::STREAM_COMBINE {
        1
    } else {
        2
    }
}

/// `R` rows against `H` query groups: `outs[r] + h * LANES` receives the dot products of row
/// `r` with group `h`'s queries, and `masks[r] + h` their bits (see [`RawBatch`]); `xs[r]` points
/// at row `r`'s `chunks * LANES` values, `qs[h]` at group `h`, `thr[h]` at its thresholds. At
/// most 4 x [`max_tile_groups`]. With the lanes stored and combined after (AVX2), 4 x 2: 8
/// accumulators, 2 query vectors and a broadcast fit AVX2's 16 registers with room to spare (a
/// prototype measured on Zen 3, 64 dims: 4 x 2 43.8 G multiply-adds/s, 2 x 4 43.5, 3 x 2 39.5,
/// 5 x 2 36.2, 6 x 2 31.9). With the lanes combined as they come ([`Simd::STREAM_COMBINE`],
/// AVX-512), 4 x 1: the partial trees hold up to five tiles of accumulators, 20 of the 32
/// registers (`make bench-kernel` on a 2-core EPYC, builds alternated, G multiply-adds/s at 64
/// / 128 / 256 / 768 dims: 4 x 1 47-53 / 48-52 / 49-52 / 48-52; 2 x 2 46 / 43-46 / 42 / 47-48;
/// 4 x 2, which spills, 40-41 / 46 / 51 / 49-51; the stored lanes at 4 x 2 33-38 / 41-46 /
/// 44-49 / 47-50). `C`, when not 0, is `chunks` known at compile time (8: a 64-dim prefix on
/// AVX2, the usual first stage of a funnel, or 128 dims on AVX-512; 4: 64 dims on AVX-512), so
/// that the chunk loop unrolls.
///
/// # Safety
/// As [`batch_dots`], for these rows and groups.
#[inline(always)]
unsafe fn batch_tile<S: Simd, const R: usize, const H: usize, const C: usize>(
    qs: &[*const f32; H],
    chunks: usize,
    xs: &[*const f32; R],
    outs: &[*mut f32; R],
    scales: &[f32; R],
    thr: &[*const f32; H],
    masks: &[*mut u32; R],
) {
    let lanes = S::LANES;
    let chunks = if C > 0 { C } else { chunks };
    let mut tile = TileLanes::<S, R, H> {
        qs,
        chunks,
        xs,
        simd: PhantomData,
    };
    // SAFETY: reads stay inside each row's `chunks * LANES` values and each group's block,
    // writes inside each row's outputs and masks (see `batch_dots`).
    unsafe {
        let dots: [[S::V; H]; R] = if S::STREAM_COMBINE {
            lane_tree::<S, _>(&mut tile)
        } else {
            // Not zeroed (that would cost as much as a small tile): lanes 0..LANES are
            // written below before they are read.
            let mut parts = [[[MaybeUninit::<S::V>::uninit(); 16]; H]; R];
            for l in 0..lanes {
                let acc = tile.lane(l);
                for (pr, ar) in parts.iter_mut().zip(&acc) {
                    for (prh, &a) in pr.iter_mut().zip(ar) {
                        prh[l].write(a);
                    }
                }
            }
            // The first `lanes` parts were written above (lanes <= 16), and MaybeUninit<V>
            // has V's layout.
            array::from_fn(|r| {
                array::from_fn(|h| {
                    S::combine(std::slice::from_raw_parts(
                        parts[r][h].as_ptr().cast::<S::V>(),
                        lanes,
                    ))
                })
            })
        };
        let tv: [S::V; H] = array::from_fn(|h| S::load(thr[h]));
        for (r, dr) in dots.iter().enumerate() {
            let s = S::splat(&scales[r]);
            for (h, &dot) in dr.iter().enumerate() {
                S::store(outs[r].add(h * lanes), dot);
                masks[r].add(h).write(S::pass_mask(dot, s, tv[h]));
            }
        }
    }
}

/// `out[i * out_stride + j] = x_i . q_j` for the rows `x_i` and the queries `q_j` of `b`;
/// bitwise as [`dot_norm_block`]. Also writes the rows' norms and scales and the masks (see
/// [`RawBatch`]), computing the norms from the rows as it first reads them (prefetched ahead).
///
/// # Safety
/// `b.qs` holds `b.groups` groups of `b.chunks` chunks; for every `i < b.idx.len()`, row `i`
/// is readable for `b.chunks * LANES` floats, `b.out` is writable at `i * b.out_stride + [0,
/// groups * LANES)`, `b.masks` at `i * b.mask_stride + [0, groups)`, and `b.norms` and
/// `b.scales` at `i`; `b.thr` is readable for `groups * LANES` floats; the backend's target
/// features are enabled.
#[inline(always)]
pub(crate) unsafe fn batch_dots<S: Simd>(b: RawBatch<'_>) {
    // SAFETY: forwarded contract. Each chunk count gets its own loop nest: one shared with the
    // general case ran the 64-dim tile 4% slower on AVX2 (8 chunks, measured). With AVX-512,
    // 64 dims are 4 chunks: in a loop nest of their own the kernel ran at 0.76-0.89 of its
    // 256-dim rate, shared with the general case at 0.70-0.78 (`make bench-kernel`, the two
    // builds alternated on a busy 2-core EPYC).
    unsafe {
        match b.chunks {
            4 => batch_rows::<S, 4>(b),
            8 => batch_rows::<S, 8>(b),
            _ => batch_rows::<S, 0>(b),
        }
    }
}

/// The squared norms of `R <= 4` rows of `chunks * LANES` values at `xs`, bitwise as [`tile`]
/// computes them (the same chunks, zero-filled alike, added in the same order).
///
/// # Safety
/// Each `xs[r]` is readable for `chunks * LANES` floats; the backend's target features are
/// enabled.
#[inline(always)]
unsafe fn tile_norms<S: Simd, const R: usize>(xs: &[*const f32; R], chunks: usize) -> [f32; R] {
    // SAFETY: every load is inside a row's `chunks * LANES` values (contract).
    unsafe {
        let mut nacc = [S::zero(); R];
        for t in 0..chunks {
            for (n, x) in nacc.iter_mut().zip(xs) {
                let v = S::load(x.add(t * S::LANES));
                *n = S::fma(v, v, *n);
            }
        }
        reduce_rows::<S, R>(&nacc)
    }
}

/// Floats of queries that one pass of [`batch_rows`] keeps in cache: 128 KiB, a quarter of a
/// Zen 3 core's L2 (64 queries at 64 dims take 16 KiB; at 768 dims, 192 KiB).
const QUERY_SET_FLOATS: usize = 32 * 1024;

/// [`batch_dots`] with `C` as in [`batch_tile`].
///
/// # Safety
/// As [`batch_dots`].
#[inline(always)]
unsafe fn batch_rows<S: Simd, const C: usize>(b: RawBatch<'_>) {
    let RawBatch {
        qs,
        groups,
        chunks,
        base,
        stride,
        idx,
        out,
        out_stride,
        ..
    } = b;
    let lanes = S::LANES;
    let group_len = lanes * chunks * lanes;
    // Groups per pass over the rows: as many as fit in a quarter of L2 (at least a pair), so
    // that a large batch does not stream every query from L3 for every few rows.
    let set = (QUERY_SET_FLOATS / group_len).max(2) & !1;
    let row = |i: usize| base.wrapping_offset(idx[i] as isize * stride);
    // Prefetched as the tiles' rows ([`prefetch_tile_run`]): with rows that lie apart, 64
    // queries at 64 / 128 / 256 dims of a 1M x 768 `.npy` took 0.95-0.97 / 0.87 / 0.91-0.93 the
    // time of the non-temporal hint (AVX2 backend: 0.93 / 0.93 / 0.91; two builds in one
    // process, AVX-512 EPYC).
    let adjacent = stride == (chunks * lanes) as isize;
    // SAFETY: every row index stays below idx.len() and group index below groups (contract).
    unsafe {
        for h0 in (0..groups).step_by(set) {
            let h1 = (h0 + set).min(groups);
            let mut i = 0;
            while i < idx.len() {
                let rn = (idx.len() - i).min(4);
                if h0 == 0 {
                    // The first pass reads the rows from memory: it prefetches them two tiles
                    // ahead, and computes their norms and scales.
                    for ahead in i + 8..(i + 12).min(idx.len()) {
                        prefetch_tile_run::<S>(row(ahead), chunks * lanes, adjacent);
                    }
                    macro_rules! norms {
                        ($r:literal) => {{
                            let xs: [*const f32; $r] = array::from_fn(|t| row(i + t));
                            let nn = tile_norms::<S, $r>(&xs, chunks);
                            for (t, &nn) in nn.iter().enumerate() {
                                b.norms.add(i + t).write(nn);
                                b.scales.add(i + t).write(scale_of(nn));
                            }
                        }};
                    }
                    match rn {
                        4 => norms!(4),
                        3 => norms!(3),
                        2 => norms!(2),
                        _ => norms!(1),
                    }
                }
                let mut h = h0;
                while h < h1 {
                    let hn = (h1 - h).min(max_tile_groups::<S>());
                    macro_rules! go {
                        ($r:literal, $h:literal) => {{
                            let xs: [*const f32; $r] = array::from_fn(|t| row(i + t));
                            let sc: [f32; $r] = array::from_fn(|t| *b.scales.add(i + t));
                            let op: [*mut f32; $r] =
                                array::from_fn(|t| out.add((i + t) * out_stride + h * lanes));
                            let mp: [*mut u32; $r] =
                                array::from_fn(|t| b.masks.add((i + t) * b.mask_stride + h));
                            let qp: [*const f32; $h] =
                                array::from_fn(|t| qs.add((h + t) * group_len));
                            let th: [*const f32; $h] =
                                array::from_fn(|t| b.thr.add((h + t) * lanes));
                            batch_tile::<S, $r, $h, C>(&qp, chunks, &xs, &op, &sc, &th, &mp);
                        }};
                    }
                    match (rn, hn) {
                        (4, 2) => go!(4, 2),
                        (4, _) => go!(4, 1),
                        (3, 2) => go!(3, 2),
                        (3, _) => go!(3, 1),
                        (2, 2) => go!(2, 2),
                        (2, _) => go!(2, 1),
                        (_, 2) => go!(1, 2),
                        _ => go!(1, 1),
                    }
                    h += hn;
                }
                i += rn;
            }
        }
    }
}
