//! SIMD kernels with run-time CPU dispatch.
//!
//! Block operations, each written once in [`generic`] and compiled per backend: fused dot +
//! squared norm for one query ([`Kernels::dot_norm`]), and for batches, register-tiled dot
//! products with the queries in lanes ([`Kernels::batch_dots`]), bitwise equal to the
//! one-query pass; the batch kernel also marks the (row, query) pairs that pass each query's
//! selection threshold, and [`Kernels::pass_masks`] marks one query's rows the same way.
//! The backend is detected once and cached; `MATRYO_FAST_BACKEND` (read once) or [`force`]
//! chooses another. [`scalar`] is the reference every other backend is tested against.
//! Built with `RUSTFLAGS="--cfg matryo_fast_no_simd"` (`make test-rust-nosimd`), the SIMD
//! backends are not compiled at all and scalar is the only one available.

#[cfg(all(target_arch = "aarch64", not(matryo_fast_no_simd)))]
pub(crate) mod aarch64_neon;
pub(crate) mod generic;
pub mod quant;
pub(crate) mod scalar;
#[cfg(test)]
mod tests;
#[cfg(all(target_arch = "x86_64", not(matryo_fast_no_simd)))]
pub(crate) mod x86_avx2;
#[cfg(all(target_arch = "x86_64", not(matryo_fast_no_simd)))]
pub(crate) mod x86_avx512;

use std::fmt;
use std::sync::atomic::{AtomicU8, Ordering};
use std::sync::OnceLock;

use crate::error::{Error, Result};
use crate::layout::{Prefix, RowCopy, Segment};

/// A kernel implementation.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[repr(u8)]
pub enum Backend {
    /// Portable one-lane reference.
    Scalar = 1,
    /// x86-64 AVX2 + FMA, 8 lanes.
    Avx2 = 2,
    /// x86-64 AVX-512F, 16 lanes.
    Avx512 = 3,
    /// aarch64 NEON, 4 lanes.
    Neon = 4,
}

impl Backend {
    /// Every backend, fastest first.
    pub const ALL: [Backend; 4] = [
        Backend::Avx512,
        Backend::Avx2,
        Backend::Neon,
        Backend::Scalar,
    ];

    /// Lower-case name, as `MATRYO_FAST_BACKEND` spells it.
    pub fn name(self) -> &'static str {
        match self {
            Backend::Scalar => "scalar",
            Backend::Avx2 => "avx2",
            Backend::Avx512 => "avx512",
            Backend::Neon => "neon",
        }
    }

    /// The backend called `name`, if any.
    pub fn from_name(name: &str) -> Option<Backend> {
        Backend::ALL
            .into_iter()
            .find(|b| b.name() == name.trim().to_ascii_lowercase())
    }

    /// The backend called `name`, or an error that lists the known and the available ones.
    pub fn parse(name: &str) -> Result<Backend> {
        Backend::from_name(name).ok_or_else(|| {
            Error::Backend(format!(
                "unknown backend {name:?} (known: {}; available here: {})",
                names(&Backend::ALL),
                names(&available())
            ))
        })
    }

    /// Whether this CPU can run the backend.
    pub fn is_available(self) -> bool {
        match self {
            Backend::Scalar => true,
            #[cfg(all(target_arch = "x86_64", not(matryo_fast_no_simd)))]
            Backend::Avx2 => is_x86_feature_detected!("avx2") && is_x86_feature_detected!("fma"),
            #[cfg(all(target_arch = "x86_64", not(matryo_fast_no_simd)))]
            Backend::Avx512 => {
                is_x86_feature_detected!("avx512f")
                    && is_x86_feature_detected!("avx2")
                    && is_x86_feature_detected!("fma")
            }
            #[cfg(all(target_arch = "aarch64", not(matryo_fast_no_simd)))]
            Backend::Neon => std::arch::is_aarch64_feature_detected!("neon"),
            #[allow(unreachable_patterns)]
            _ => false,
        }
    }
}

impl fmt::Display for Backend {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// The backends this CPU can run, fastest first.
pub fn available() -> Vec<Backend> {
    Backend::ALL
        .into_iter()
        .filter(|b| b.is_available())
        .collect()
}

/// 0 = not forced, else a `Backend as u8`.
static FORCED: AtomicU8 = AtomicU8::new(0);
static DEFAULT: OnceLock<std::result::Result<Backend, String>> = OnceLock::new();

fn default_backend() -> Result<Backend> {
    DEFAULT
        .get_or_init(|| match std::env::var("MATRYO_FAST_BACKEND") {
            Ok(name) if !name.trim().is_empty() => match Backend::parse(&name) {
                Ok(b) if b.is_available() => Ok(b),
                Ok(b) => Err(format!(
                    "MATRYO_FAST_BACKEND={name:?}: backend {b} is not supported by this CPU \
                     (available: {})",
                    names(&available())
                )),
                Err(e) => Err(format!("MATRYO_FAST_BACKEND: {e}")),
            },
            _ => Ok(available()[0]),
        })
        .clone()
        .map_err(Error::Backend)
}

fn names(bs: &[Backend]) -> String {
    bs.iter().map(|b| b.name()).collect::<Vec<_>>().join(", ")
}

/// The backend searches use now: the forced one, else `MATRYO_FAST_BACKEND`, else the best.
pub fn active() -> Result<Backend> {
    match FORCED.load(Ordering::Relaxed) {
        0 => default_backend(),
        v => Ok(Backend::ALL
            .into_iter()
            .find(|b| *b as u8 == v)
            .unwrap_or(Backend::Scalar)),
    }
}

/// Forces `backend` for every later search in this process (`None`: back to the default).
pub fn force(backend: Option<Backend>) -> Result<()> {
    match backend {
        None => FORCED.store(0, Ordering::Relaxed),
        Some(b) if b.is_available() => FORCED.store(b as u8, Ordering::Relaxed),
        Some(b) => {
            return Err(Error::Backend(format!(
                "backend {b} is not supported by this CPU (available: {})",
                names(&available())
            )))
        }
    }
    Ok(())
}

type DotNormFn = unsafe fn(*const f32, &[Segment], &[usize], &mut [f32], &mut [f32]);
type PassMaskFn = unsafe fn(*const f32, *const f32, usize, f32, *mut u32);
type BatchDotFn = unsafe fn(generic::RawBatch<'_>);

/// The block operations of one backend, behind safe, checked wrappers.
#[derive(Clone, Copy)]
pub struct Kernels {
    backend: Backend,
    dot_norm: DotNormFn,
    batch_dot: BatchDotFn,
    pass_mask: PassMaskFn,
}

/// Unit queries laid out for [`Kernels::batch_dots`] by [`Kernels::batch_queries`], in groups
/// of [`Kernels::lanes`] (the last one padded with zero queries).
#[derive(Clone, Debug)]
pub struct BatchQueries {
    /// The layout starts at `data[start]`, on a 64-byte boundary: a vector load that crosses
    /// a cache line costs two (measured: the 64-dim kernel ran 15% slower 16 bytes off).
    data: Vec<f32>,
    start: usize,
    lanes: usize,
    chunks: usize,
    nq: usize,
}

impl BatchQueries {
    /// Number of queries.
    pub fn len(&self) -> usize {
        self.nq
    }

    /// Whether there are none.
    pub fn is_empty(&self) -> bool {
        self.nq == 0
    }

    /// Groups of `lanes` queries.
    pub fn groups(&self) -> usize {
        self.nq.div_ceil(self.lanes)
    }

    /// Queries rounded up to whole groups: a row's outputs and thresholds.
    pub fn padded(&self) -> usize {
        self.groups() * self.lanes
    }

    /// Queries per group (the lanes of the backend they were laid out for).
    pub fn lanes(&self) -> usize {
        self.lanes
    }
}

/// One call of [`Kernels::batch_dots`]: the queries and rows it reads, and the buffers it
/// writes. With `P` = [`BatchQueries::padded`] and `G` = [`BatchQueries::groups`], for
/// `m = rows.len()` rows: `dots` holds at least `m * P` floats, `masks` `m * G` words,
/// `norms` and `scales` `m` floats, `thr` `P` floats.
#[derive(Debug)]
pub struct Batch<'a> {
    /// The unit queries, laid out by [`Kernels::batch_queries`] over `prefix`.
    pub queries: &'a BatchQueries,
    /// The columns scanned.
    pub prefix: &'a Prefix<'a>,
    /// The rows, by row number in the prefix's matrix.
    pub rows: &'a [usize],
    /// One selection threshold per query (the missing queries of the last group included).
    pub thr: &'a [f32],
    /// Written: row `i`'s dot product with query `j` at `dots[i * P + j]`.
    pub dots: &'a mut [f32],
    /// Written: row `i`'s squared norm.
    pub norms: &'a mut [f32],
    /// Written: row `i`'s `1/|x_i|`, or NaN (see `generic::scale_of`).
    pub scales: &'a mut [f32],
    /// Written: bit `b` of `masks[i * G + h]` marks the pair (row `i`, query `h * lanes + b`).
    pub masks: &'a mut [u32],
}

impl Kernels {
    /// The kernels of `backend`, if this CPU can run it.
    pub fn new(backend: Backend) -> Result<Kernels> {
        if !backend.is_available() {
            return Err(Error::Backend(format!(
                "backend {backend} is not supported by this CPU"
            )));
        }
        macro_rules! of {
            ($m:ident) => {
                Kernels {
                    backend,
                    dot_norm: $m::dot_norm_block,
                    batch_dot: $m::batch_dots,
                    pass_mask: $m::pass_masks,
                }
            };
        }
        Ok(match backend {
            #[cfg(all(target_arch = "x86_64", not(matryo_fast_no_simd)))]
            Backend::Avx2 => of!(x86_avx2),
            #[cfg(all(target_arch = "x86_64", not(matryo_fast_no_simd)))]
            Backend::Avx512 => of!(x86_avx512),
            #[cfg(all(target_arch = "aarch64", not(matryo_fast_no_simd)))]
            Backend::Neon => of!(aarch64_neon),
            _ => of!(scalar),
        })
    }

    /// The kernels of [`active`].
    pub fn active() -> Result<Kernels> {
        Kernels::new(active()?)
    }

    /// Which backend these are.
    pub fn backend(&self) -> Backend {
        self.backend
    }

    /// Floats per vector (queries per group of a batch).
    pub fn lanes(&self) -> usize {
        match self.backend {
            Backend::Scalar => 1,
            Backend::Avx2 => 8,
            Backend::Avx512 => 16,
            Backend::Neon => 4,
        }
    }

    /// `dots[i] = q . x` and `norms[i] = |x|^2` over `prefix` for `x = rows[i]`, in one pass.
    pub fn dot_norm(
        &self,
        q: &[f32],
        prefix: &Prefix<'_>,
        rows: &[usize],
        dots: &mut [f32],
        norms: &mut [f32],
    ) {
        assert!(q.len() >= prefix.dim() && dots.len() >= rows.len() && norms.len() >= rows.len());
        prefix.check_rows(rows);
        // SAFETY: q covers [0, dim); every row is in range, so every segment run is readable
        // (Matrix contract); the outputs are long enough; `new` checked the CPU features.
        unsafe { (self.dot_norm)(q.as_ptr(), prefix.segments(), rows, dots, norms) }
    }

    /// The `nq` unit queries `qn` (dense, `nq x prefix.dim()`) laid out for [`Self::batch_dots`]
    /// over `prefix`.
    pub fn batch_queries(&self, prefix: &Prefix<'_>, qn: &[f32], nq: usize) -> BatchQueries {
        assert_eq!(qn.len(), nq * prefix.dim(), "queries are not nq x dim");
        let lanes = self.lanes();
        let chunks = prefix.chunks(lanes);
        let len = nq.div_ceil(lanes) * lanes * chunks * lanes;
        // 16 floats of slack hold any shift to a 64-byte boundary.
        let mut data = vec![0.0; len + 16];
        let start = data.as_ptr().align_offset(64).min(16);
        generic::permute_queries(prefix, lanes, qn, nq, &mut data[start..start + len]);
        BatchQueries {
            data,
            start,
            lanes,
            chunks,
            nq,
        }
    }

    /// One query's marks for rows scored by [`Self::dot_norm`]: bit `r` of `masks[g]` is set
    /// where `dots[i] * scales[i] >= thr` for `i = g * lanes + r` (the float32 product; false
    /// when it is NaN), as [`Self::batch_dots`] marks a batch's pairs. `dots` and `scales` cover
    /// `masks.len()` whole groups of [`Self::lanes`] rows.
    pub fn pass_masks(&self, dots: &[f32], scales: &[f32], thr: f32, masks: &mut [u32]) {
        let n = masks.len() * self.lanes();
        assert!(
            dots.len() >= n && scales.len() >= n,
            "dots or scales shorter than the masks"
        );
        // SAFETY: dots and scales hold masks.len() * lanes floats (checked), masks its own
        // length; `new` checked the CPU features.
        unsafe {
            (self.pass_mask)(
                dots.as_ptr(),
                scales.as_ptr(),
                masks.len(),
                thr,
                masks.as_mut_ptr(),
            )
        }
    }

    /// For the batch `b` (see [`Batch`]): `dots[i * P + j] = x_i . q_j` over the prefix for
    /// `x_i = rows[i]` and the queries `q_j` (the missing queries of the last group give 0),
    /// and `norms[i] = |x_i|^2`, both bitwise as [`Self::dot_norm`] computes them, with
    /// `scales[i]` the row's `1/|x_i|`, or NaN when its squared norm is outside the range that
    /// float32 keeps exact enough (see [`generic::scale_of`]). With them, a bit per (row,
    /// query): bit `b` of `masks[i * G + h]` is set where `dots[i * P + j] * scales[i] >=
    /// thr[j]` for `j = h * lanes + b` (the float32 product; false when it is NaN), so that a
    /// scan looks only at the pairs that pass its selections' thresholds. `copy` is scratch for
    /// rows that must be copied into whole chunks (`Prefix::chunked_rows`). Panics if a row
    /// is out of range or a buffer is too short.
    pub fn batch_dots(&self, b: &mut Batch<'_>, copy: &mut RowCopy) {
        let lanes = self.lanes();
        let chunks = b.prefix.chunks(lanes);
        let queries = b.queries;
        assert_eq!(queries.lanes, lanes, "queries laid out for another backend");
        assert_eq!(queries.chunks, chunks, "queries and rows differ in width");
        let (m, padded, groups) = (b.rows.len(), queries.padded(), queries.groups());
        assert!(
            b.dots.len() >= m * padded,
            "outputs shorter than rows x queries"
        );
        assert!(
            b.masks.len() >= m * groups,
            "masks shorter than rows x groups"
        );
        assert!(
            b.norms.len() >= m && b.scales.len() >= m,
            "norms or scales shorter than the rows"
        );
        assert!(b.thr.len() >= padded, "fewer thresholds than queries");
        let rows = b.prefix.chunked_rows(b.rows, lanes, copy);
        let raw = generic::RawBatch {
            qs: queries.data[queries.start..].as_ptr(),
            groups,
            chunks,
            base: rows.base,
            stride: rows.stride,
            idx: rows.idx,
            out: b.dots.as_mut_ptr(),
            out_stride: padded,
            norms: b.norms.as_mut_ptr(),
            scales: b.scales.as_mut_ptr(),
            thr: b.thr.as_ptr(),
            masks: b.masks.as_mut_ptr(),
            mask_stride: groups,
        };
        // SAFETY: the queries hold `groups` groups of `chunks` chunks for this backend (checked);
        // each row `base + idx[i] * stride` has `chunks * lanes` readable floats (the contract
        // of `chunked_rows`, which checked the rows); `dots`, `masks`, `norms`, `scales` and
        // `thr` hold what the kernel writes and reads for `m` rows (checked); `new` checked the
        // CPU features.
        unsafe { (self.batch_dot)(raw) }
    }
}
