//! SIMD kernels with run-time CPU dispatch.
//!
//! Block operations, each written once in [`generic`] and compiled per backend: fused dot +
//! squared norm for one query ([`Kernels::dot_norm`]), and for batches, rows packed into
//! panels ([`Kernels::pack`]) with their norms ([`Kernels::panel_norms`]) and register-tiled
//! dot products ([`Kernels::panel_dots`]), bitwise equal to the one-query pass; the panel
//! kernel also marks the rows that pass each query's selection threshold, and
//! [`Kernels::pass_masks`] marks one query's rows the same way.
//! The backend is detected once and cached; `MATRYO_FAST_BACKEND` (read once) or [`force`]
//! chooses another. [`scalar`] is the reference every other backend is tested against.

#[cfg(target_arch = "aarch64")]
pub(crate) mod aarch64_neon;
pub(crate) mod generic;
pub(crate) mod scalar;
#[cfg(test)]
mod tests;
#[cfg(target_arch = "x86_64")]
pub(crate) mod x86_avx2;
#[cfg(target_arch = "x86_64")]
pub(crate) mod x86_avx512;

use std::fmt;
use std::sync::atomic::{AtomicU8, Ordering};
use std::sync::OnceLock;

use crate::error::{Error, Result};
use crate::layout::{Prefix, Segment};

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

    /// Whether this CPU can run the backend.
    pub fn is_available(self) -> bool {
        match self {
            Backend::Scalar => true,
            #[cfg(target_arch = "x86_64")]
            Backend::Avx2 => is_x86_feature_detected!("avx2") && is_x86_feature_detected!("fma"),
            #[cfg(target_arch = "x86_64")]
            Backend::Avx512 => {
                is_x86_feature_detected!("avx512f")
                    && is_x86_feature_detected!("avx2")
                    && is_x86_feature_detected!("fma")
            }
            #[cfg(target_arch = "aarch64")]
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
            Ok(name) if !name.trim().is_empty() => match Backend::from_name(&name) {
                Some(b) if b.is_available() => Ok(b),
                Some(b) => Err(format!(
                    "MATRYO_FAST_BACKEND={name:?}: backend {b} is not supported by this CPU \
                     (available: {})",
                    names(&available())
                )),
                None => Err(format!(
                    "MATRYO_FAST_BACKEND={name:?} is not a backend (known: scalar, avx2, \
                     avx512, neon; available here: {})",
                    names(&available())
                )),
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
type PackFn = unsafe fn(&[Segment], &[usize], usize, *mut f32);
type PanelNormFn = unsafe fn(*const f32, usize, usize, *mut f32);
type PassMaskFn = unsafe fn(*const f32, *const f32, usize, f32, *mut u32);
type PanelDotFn =
    unsafe fn(*const f32, usize, *const f32, usize, usize, *mut f32, usize, generic::Select);

/// The block operations of one backend, behind safe, checked wrappers.
#[derive(Clone, Copy)]
pub struct Kernels {
    backend: Backend,
    dot_norm: DotNormFn,
    pack: PackFn,
    panel_norm: PanelNormFn,
    panel_dot: PanelDotFn,
    pass_mask: PassMaskFn,
}

/// Rows packed for a batch by [`Kernels::pack`] (see `generic.rs` for the layout). The buffer
/// is reused from block to block.
#[derive(Clone, Debug, Default)]
pub struct Panels {
    data: Vec<f32>,
    lanes: usize,
    chunks: usize,
    rows: usize,
}

impl Panels {
    /// An empty buffer.
    pub fn new() -> Panels {
        Panels::default()
    }

    /// Rows packed.
    pub fn rows(&self) -> usize {
        self.rows
    }

    /// Rows rounded up to whole groups: the length the outputs need.
    pub fn padded_rows(&self) -> usize {
        self.groups() * self.lanes
    }

    /// Groups of `lanes` rows (the last one padded).
    pub fn groups(&self) -> usize {
        if self.lanes == 0 {
            0
        } else {
            self.rows.div_ceil(self.lanes)
        }
    }
}

/// Unit queries laid out for [`Kernels::panel_dots`] by [`Kernels::panel_queries`].
#[derive(Clone, Debug)]
pub struct PanelQueries {
    data: Vec<f32>,
    lanes: usize,
    chunks: usize,
    nq: usize,
}

impl PanelQueries {
    /// Number of queries.
    pub fn len(&self) -> usize {
        self.nq
    }

    /// Whether there are none.
    pub fn is_empty(&self) -> bool {
        self.nq == 0
    }
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
                    pack: $m::pack_panels,
                    panel_norm: $m::panel_norms,
                    panel_dot: $m::panel_dots,
                    pass_mask: $m::pass_masks,
                }
            };
        }
        Ok(match backend {
            #[cfg(target_arch = "x86_64")]
            Backend::Avx2 => of!(x86_avx2),
            #[cfg(target_arch = "x86_64")]
            Backend::Avx512 => of!(x86_avx512),
            #[cfg(target_arch = "aarch64")]
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

    /// Floats per vector (rows per panel group).
    pub fn lanes(&self) -> usize {
        match self.backend {
            Backend::Scalar => 1,
            Backend::Avx2 => 8,
            Backend::Avx512 => 16,
            Backend::Neon => 4,
        }
    }

    fn check_rows(prefix: &Prefix<'_>, rows: &[usize]) {
        let n = prefix.rows();
        assert!(
            rows.iter().all(|&r| r < n),
            "row index out of range ({n} rows)"
        );
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
        Self::check_rows(prefix, rows);
        // SAFETY: q covers [0, dim); every row is in range, so every segment run is readable
        // (Matrix contract); the outputs are long enough; `new` checked the CPU features.
        unsafe { (self.dot_norm)(q.as_ptr(), prefix.segments(), rows, dots, norms) }
    }

    /// The `nq` unit queries `qn` (dense, `nq x prefix.dim()`) laid out for [`Self::panel_dots`]
    /// over `prefix`.
    pub fn panel_queries(&self, prefix: &Prefix<'_>, qn: &[f32], nq: usize) -> PanelQueries {
        assert_eq!(qn.len(), nq * prefix.dim(), "queries are not nq x dim");
        let mut data = Vec::new();
        let lanes = self.lanes();
        let chunks = generic::permute_queries(prefix.segments(), lanes, qn, nq, &mut data);
        PanelQueries {
            data,
            lanes,
            chunks,
            nq,
        }
    }

    /// One query's marks for rows scored by [`Self::dot_norm`]: bit `r` of `masks[g]` is set
    /// where `dots[i] * scales[i] >= thr` for `i = g * lanes + r` (the float32 product; false
    /// when it is NaN), as [`Self::panel_dots`] marks a batch's rows. `dots` and `scales` cover
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

    /// Packs the prefixes of `rows` into `panels` (reusing its buffer).
    pub fn pack(&self, prefix: &Prefix<'_>, rows: &[usize], panels: &mut Panels) {
        Self::check_rows(prefix, rows);
        let lanes = self.lanes();
        let chunks = generic::chunk_count(prefix.segments(), lanes);
        let len = rows.len().div_ceil(lanes) * lanes * chunks * lanes;
        if panels.data.len() < len {
            panels.data.resize(len, 0.0);
        }
        panels.lanes = lanes;
        panels.chunks = chunks;
        panels.rows = rows.len();
        // SAFETY: every row is in range, so its segment runs are readable (Matrix contract);
        // `chunks` is computed from the same segments; the buffer holds `len` floats, the
        // size the contract asks for; `new` checked the CPU features.
        unsafe { (self.pack)(prefix.segments(), rows, chunks, panels.data.as_mut_ptr()) }
    }

    fn check_panels(&self, panels: &Panels) {
        assert_eq!(
            panels.lanes,
            self.lanes(),
            "panels packed by another backend"
        );
    }

    /// `norms[i] = |x_i|^2` for the packed rows, bitwise as the norms of [`Self::dot_norm`].
    pub fn panel_norms(&self, panels: &Panels, norms: &mut [f32]) {
        self.check_panels(panels);
        assert!(norms.len() >= panels.padded_rows());
        // SAFETY: the panels hold `groups` packed groups of `chunks` chunks (set by `pack`
        // with this backend's lanes, checked above); `norms` holds groups * lanes floats.
        unsafe {
            (self.panel_norm)(
                panels.data.as_ptr(),
                panels.groups(),
                panels.chunks,
                norms.as_mut_ptr(),
            )
        }
    }

    /// `out[t * out_stride + i] = q_(j0 + t) . x_i` for `t < nq` and the packed rows `i`
    /// (padding rows up to [`Panels::padded_rows`] are written too), bitwise as the dots of
    /// [`Self::dot_norm`]. With them, a bit per (query, row): bit `r` of
    /// `masks[t * mask_stride + g]` is set where `out[t * out_stride + i] * scales[i] >=
    /// thr[t]` for `i = g * lanes + r` (the float32 product; false when it is NaN), so that a
    /// scan looks only at the rows that pass its selection's threshold. Padding rows need a
    /// NaN scale to stay unmarked.
    #[allow(clippy::too_many_arguments)]
    pub fn panel_dots(
        &self,
        queries: &PanelQueries,
        j0: usize,
        nq: usize,
        panels: &Panels,
        out: &mut [f32],
        out_stride: usize,
        scales: &[f32],
        thr: &[f32],
        masks: &mut [u32],
        mask_stride: usize,
    ) {
        self.check_panels(panels);
        assert_eq!(
            queries.lanes, panels.lanes,
            "queries laid out for another backend"
        );
        assert_eq!(
            queries.chunks, panels.chunks,
            "queries and rows differ in width"
        );
        assert!(j0 + nq <= queries.nq, "query range out of bounds");
        assert!(out_stride >= panels.padded_rows());
        assert!(nq == 0 || out.len() >= (nq - 1) * out_stride + panels.padded_rows());
        assert!(scales.len() >= panels.padded_rows() && thr.len() >= nq);
        assert!(mask_stride >= panels.groups());
        assert!(nq == 0 || masks.len() >= (nq - 1) * mask_stride + panels.groups());
        let per_query = queries.lanes * queries.chunks;
        let sel = generic::Select {
            scales: scales.as_ptr(),
            thr: thr.as_ptr(),
            masks: masks.as_mut_ptr(),
            mask_stride,
        };
        // SAFETY: queries j0..j0+nq exist (checked) with `chunks` chunks each; the panels
        // hold `groups` groups of the same chunks and lanes (checked); each output row t < nq
        // has padded_rows floats at t * out_stride, `scales` padded_rows floats, `thr` nq, and
        // each mask row t < nq `groups` words at t * mask_stride (all checked).
        unsafe {
            (self.panel_dot)(
                queries.data.as_ptr().add(j0 * per_query),
                nq,
                panels.data.as_ptr(),
                panels.groups(),
                panels.chunks,
                out.as_mut_ptr(),
                out_stride,
                sel,
            )
        }
    }
}
