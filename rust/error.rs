//! The one error type of the core. It knows nothing about Python: `bindings.rs` maps each
//! variant to a Python exception once.

use std::fmt;

/// Everything that can go wrong in the core, with enough context for a useful message.
#[allow(missing_docs)] // the fields are named for what they hold
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Error {
    /// `dim` is < 1 or wider than the query or the corpus.
    PrefixOutOfRange {
        dim: i64,
        query_cols: usize,
        corpus_cols: usize,
    },
    /// `k` < 1.
    InvalidK { k: i64 },
    /// Shapes that cannot go together (e.g. a query buffer of the wrong length).
    DimMismatch(String),
    /// A query value is NaN or Inf.
    NonFiniteQuery { query: usize, col: usize },
    /// A corpus row has NaN or Inf within the scanned prefix.
    NonFiniteRow { row: usize, dim: usize },
    /// A candidate row number (funnel) is outside the corpus.
    RowOutOfRange { row: i64, rows: usize },
    /// Funnel parameters that do not describe a valid cascade.
    InvalidPlan(String),
    /// A `.npy` file that is not a valid 2-D little-endian float32 C-order array.
    BadHeader { path: String, reason: String },
    /// A `.npy` file of another dtype: the message says how to convert it.
    WrongDtype { path: String, descr: String },
    /// Data that cannot be viewed as f32 in place (offset not a multiple of 4).
    Misaligned { path: String, offset: usize },
    /// A file that does not exist.
    NotFound { path: String },
    /// Any other I/O failure.
    Io { path: String, message: String },
    /// An unknown or unavailable SIMD backend was requested.
    Backend(String),
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::PrefixOutOfRange { dim, query_cols, corpus_cols } => write!(
                f,
                "dim={dim} is out of range: it must be between 1 and min(query columns={query_cols}, \
                 corpus columns={corpus_cols})"
            ),
            Error::InvalidK { k } => write!(f, "k={k} is invalid: k must be at least 1"),
            Error::DimMismatch(msg) => write!(f, "{msg}"),
            Error::NonFiniteQuery { query, col } => {
                write!(f, "query row {query} contains NaN or Inf (column {col})")
            }
            Error::NonFiniteRow { row, dim } => write!(
                f,
                "corpus row {row} contains NaN or Inf in its first {dim} columns; \
                 clean that row or search a narrower dim"
            ),
            Error::RowOutOfRange { row, rows } => {
                write!(f, "candidate row {row} is out of range for a corpus of {rows} rows")
            }
            Error::InvalidPlan(msg) => write!(f, "{msg}"),
            Error::BadHeader { path, reason } => {
                write!(f, "{path}: not a valid 2-D float32 .npy file: {reason}")
            }
            Error::WrongDtype { path, descr } => write!(
                f,
                "{path}: dtype {descr:?} is not little-endian float32 ('<f4'); matryo_fast maps \
                 files as they are and never converts them: convert once with \
                 np.save(out, np.load(path, mmap_mode='r').astype('<f4'))"
            ),
            Error::Misaligned { path, offset } => write!(
                f,
                "{path}: data starts at byte {offset}, not a multiple of 4, so it cannot be read \
                 as float32 in place; re-save it with np.save"
            ),
            Error::NotFound { path } => write!(f, "{path}: no such file"),
            Error::Io { path, message } => write!(f, "{path}: {message}"),
            Error::Backend(msg) => write!(f, "{msg}"),
        }
    }
}

impl std::error::Error for Error {}

/// Core result type.
pub type Result<T> = std::result::Result<T, Error>;
