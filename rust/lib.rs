//! # matryo_fast
//!
//! Fused prefix-truncate + re-normalize + top-k cosine search over float32 matrices in RAM or
//! memory-mapped from `.npy` files, for Matryoshka embeddings. Pure Rust; the PyO3 module lives
//! in `bindings.rs` behind the `python` feature.
//!
//! ## Numeric contract
//! - **Score.** For a query `q`, a row `x` and a prefix width `dim`, the score is the cosine of
//!   the prefixes, `dot(q[:dim], x[:dim]) / (|q[:dim]| * |x[:dim]|)`. The query prefix is scaled
//!   to unit norm in float64 and rounded to float32 once; the dot product and the row's squared
//!   norm are accumulated in float32 with fused multiply-add, `LANES` partial sums per
//!   (query, row) pair (lane `l` takes columns `l, l + LANES, ...`), added in a fixed tree
//!   order (batches compute the same sums with the queries in the vector lanes and add them in
//!   the same order, so their values are bitwise the same); the score is `dot * (1 / sqrt(|x|^2))`,
//!   clamped to `[-1, 1]`. Expect agreement with a float64 computation to about `1e-6 * sqrt(dim)`.
//! - **Zero and extreme rows.** A zero-norm prefix (query or row) scores exactly `0.0`. A row
//!   whose float32 squared norm is outside `[1e-30, 1e30]` (where float32 squares may under- or
//!   overflow) is scored in float64 instead.
//! - **NaN/Inf.** NaN or Inf in a query prefix, or in a scanned row prefix, is an error that
//!   names the query or the row. Columns at or beyond `dim` are never read.
//! - **Order.** Results are sorted by score descending, then row ascending; `k > N` returns
//!   `N` rows. A row's score depends only on its values and the query, not on the batch, the
//!   thread count or the row's position, so duplicate rows always tie and keep index order.
//!   Different backends may differ in the last bits (their lane counts differ).
//! - **Memory.** Nothing grows with `N` per call: buffers are per block (a few hundred rows),
//!   the selections are up to `2k` per query per thread, and the sample that guesses a large
//!   `k`'s starting threshold is at most 16,384 rows.

#![warn(missing_docs)]

pub mod blocked;
pub mod error;
pub mod funnel;
pub mod kernels;
pub mod layout;
pub mod pool;
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
