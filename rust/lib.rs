//! # matryo_fast
//!
//! Fused prefix-truncate + re-normalize + top-k cosine search over float32 matrices in RAM or
//! memory-mapped from `.npy` files, for Matryoshka embeddings. Pure Rust; the PyO3 module lives
//! in `bindings.rs` behind the `python` feature.
//!
//! Modules: [`layout`] (how the kernels see a corpus: column segments, the row copy of the
//! batch kernel), [`kernels`] (the SIMD backends, dispatched at run time), [`selection`] (a
//! query's bounded best-`k` buffer), [`search`] (the fused scan), [`mod@funnel`] (shortlist and
//! re-score), [`store`] (the mapped corpus files), [`pool`] (the thread pool), [`error`].
//!
//! ## Numeric contract
//! This section is the one statement of the contract; `python/matryo_fast/search.py` and the
//! README point here.
//! - **Score.** For a query `q`, a row `x` and a prefix width `dim`, the score is the cosine of
//!   the prefixes, `dot(q[:dim], x[:dim]) / (|q[:dim]| * |x[:dim]|)`, clamped to `[-1, 1]`.
//! - **Query.** The query prefix is scaled to unit norm in float64 and rounded to float32 once.
//! - **Accumulation.** The dot product and the row's squared norm are accumulated in float32
//!   as `LANES` partial sums per (query, row) pair: lane `l` takes the columns `l, l + LANES,
//!   ...` of each column segment in order (a segment's last partial chunk zero-filled), each
//!   step `acc = x * q + acc`. The partial sums are then added in a fixed pairwise tree,
//!   `((p0 + p1) + (p2 + p3)) + ...` (AVX-512 first adds lane `i` to lane `i + 8`, then the same
//!   tree). The score is `dot * (1 / sqrt(|x|^2))`.
//!   - The **scalar reference** (`LANES = 1`) is a plain sequential float32 dot product: each
//!     step rounds the product, then the sum. It does **not** use fused multiply-add (Rust never
//!     contracts `a * b + c` into one), so it gives the same bits on every CPU.
//!   - The **SIMD backends** (AVX2 + FMA: 8 lanes; AVX-512F: 16; NEON: 4) do each step as one
//!     fused multiply-add (one rounding). They differ from the scalar reference, and from each
//!     other (lane counts), in the last bits; every SIMD path is tested against the scalar one.
//!   - Within one backend, every entry point (one query, a batch with the queries in the
//!     vector lanes, the funnel's gather) computes the same sums in the same order, so a row's
//!     score is bitwise the same whichever computed it, and it depends only on the row's values
//!     and the query, not on the batch, the thread count or the row's position: duplicate rows
//!     always tie. Expect agreement with a float64 computation to about `1e-6 * sqrt(dim)`.
//! - **Zero and extreme rows.** A zero-norm prefix (query or row) scores exactly `0.0`. A row
//!   whose float32 squared norm is outside `[1e-30, 1e30]` (where float32 squares may under- or
//!   overflow) is scored in float64 instead.
//! - **NaN/Inf.** NaN or Inf in a query prefix, or in a scanned row prefix, is an error that
//!   names the query or the row. Columns at or beyond `dim` are never read.
//! - **Order.** Results are sorted by score descending, then row ascending; `k > N` returns
//!   `N` rows.
//! - **Memory.** Nothing grows with `N` per call: buffers are per block (a few hundred rows),
//!   the selections are up to `2k` per query per thread, and the sample that guesses a large
//!   `k`'s starting threshold is at most 16,384 rows.
//!
//! ## Numeric contract of the quantized tiers
//! The tiers of a prefix-blocked file ([`blocked`]; searched by [`quant`]) have their own
//! scores; order, NaN/Inf in the query and the `k > N` rule are as above.
//! - **binary.** `1 - 2 * h / dim`, `h` the Hamming distance of the sign bits `q[:dim] > 0` and
//!   `x[:dim] > 0` (the cosine of the +-1 sign vectors; a width that is not a multiple of 8
//!   masks the row's last byte). `h` is an exact integer on every backend; the score is the
//!   float64 quotient rounded to float32, so rows at equal distance tie exactly.
//! - **int8.** The cosine of the unit query prefix (as above) with the row's de-quantized
//!   prefix `v[c] = min[c] + step[c] * (code + 128.5)` (the bin centre, evaluated in float32
//!   without fusion, so the same on every backend). `dot(q, v)` is accumulated in float32 as
//!   16 partial sums (lane `l` takes the columns `l, l + 16, ...` of the prefix) added pairwise;
//!   SIMD backends fuse the multiply-adds, the scalar reference does not. `|v|` is the file's
//!   float64-exact norm at the last block boundary `b <= dim`, extended over `[b, dim)` in
//!   float64 (`sqrt(N_b^2 + sum v[c]^2)`); the quotient is taken in float64, clamped to
//!   `[-1, 1]` and rounded to float32; `|v| = 0` scores 0. A row's value does not depend on the
//!   batch. Expect agreement with float64 to about `1e-6 * sqrt(dim)`.

#![warn(missing_docs)]

pub mod blocked;
pub mod error;
pub mod funnel;
pub mod kernels;
pub mod layout;
pub mod pool;
pub mod probe;
pub mod quant;
pub mod search;
pub mod selection;
pub mod store;

#[cfg(feature = "python")]
mod bindings;

pub use error::{Error, Result};
pub use funnel::funnel;
pub use kernels::{available, Backend, Kernels};
pub use layout::{Matrix, Prefix, Segment};
pub use search::{topk, Hits, Queries};
pub use store::NpyFile;
