//! SIMD kernels with run-time CPU dispatch.
//!
//! Three block operations, each written once in [`generic`] and compiled per backend:
//! fused dot + squared norm for one query ([`Kernels::dot_norm`]), squared norms alone
//! ([`Kernels::norms`]) and a register-tiled batch of dot products ([`Kernels::dots`]).
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
type NormFn = unsafe fn(&[Segment], &[usize], &mut [f32]);
type DotFn = unsafe fn(*const f32, usize, usize, &[Segment], &[usize], &mut [f32]);

/// The three block operations of one backend, behind safe, checked wrappers.
#[derive(Clone, Copy)]
pub struct Kernels {
    backend: Backend,
    dot_norm: DotNormFn,
    norm: NormFn,
    dot: DotFn,
}

impl Kernels {
    /// The kernels of `backend`, if this CPU can run it.
    pub fn new(backend: Backend) -> Result<Kernels> {
        if !backend.is_available() {
            return Err(Error::Backend(format!(
                "backend {backend} is not supported by this CPU"
            )));
        }
        let k = |dot_norm: DotNormFn, norm: NormFn, dot: DotFn| Kernels {
            backend,
            dot_norm,
            norm,
            dot,
        };
        Ok(match backend {
            #[cfg(target_arch = "x86_64")]
            Backend::Avx2 => k(
                x86_avx2::dot_norm_block,
                x86_avx2::norm_block,
                x86_avx2::dot_block,
            ),
            #[cfg(target_arch = "x86_64")]
            Backend::Avx512 => k(
                x86_avx512::dot_norm_block,
                x86_avx512::norm_block,
                x86_avx512::dot_block,
            ),
            #[cfg(target_arch = "aarch64")]
            Backend::Neon => k(
                aarch64_neon::dot_norm_block,
                aarch64_neon::norm_block,
                aarch64_neon::dot_block,
            ),
            _ => k(
                scalar::dot_norm_block,
                scalar::norm_block,
                scalar::dot_block,
            ),
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

    /// `norms[i] = |x|^2` over `prefix` for `x = rows[i]`.
    pub fn norms(&self, prefix: &Prefix<'_>, rows: &[usize], norms: &mut [f32]) {
        assert!(norms.len() >= rows.len());
        Self::check_rows(prefix, rows);
        // SAFETY: as in `dot_norm`.
        unsafe { (self.norm)(prefix.segments(), rows, norms) }
    }

    /// `out[j * rows.len() + i] = q_j . x_i` for the `nq` dense queries `qs[j * q_stride..]`.
    pub fn dots(
        &self,
        qs: &[f32],
        q_stride: usize,
        nq: usize,
        prefix: &Prefix<'_>,
        rows: &[usize],
        out: &mut [f32],
    ) {
        assert!(
            nq == 0 || (q_stride >= prefix.dim() && qs.len() >= (nq - 1) * q_stride + prefix.dim())
        );
        assert!(out.len() >= nq * rows.len());
        Self::check_rows(prefix, rows);
        // SAFETY: as in `dot_norm`; every query j < nq covers [0, dim) at j * q_stride.
        unsafe { (self.dot)(qs.as_ptr(), q_stride, nq, prefix.segments(), rows, out) }
    }
}
