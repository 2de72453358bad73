//! How the kernels see a corpus: rows made of contiguous column *segments*.
//!
//! A row-major matrix (a numpy array, a strided row view such as `big[:, :256]`, or a mapped
//! `.npy` file) is one segment per row. A prefix-blocked file (dims `[0, 64)` of all rows, then
//! `[64, 128)`, ...; see `store.rs`) is one segment per block, each with its own base and row
//! stride; the kernels iterate over segments and never assume more. The batch kernel wants each
//! row as one run of whole vector chunks: `Prefix::chunked_rows` gives it that, copying the
//! rows of a multi-segment prefix into a reusable [`RowCopy`].

use std::marker::PhantomData;

use crate::error::{Error, Result};

/// Columns `[col, col + width)` of every row; row `r`'s run starts at `base + r * stride`
/// (in `f32` elements).
#[derive(Clone, Copy, Debug)]
pub struct Segment {
    /// First column of the run.
    pub col: usize,
    /// Number of columns in the run.
    pub width: usize,
    base: *const f32,
    stride: isize,
}

impl Segment {
    /// Columns `[col, col + width)`, row `r`'s run at `base + r * stride` (elements). Reading
    /// through it is only possible inside a [`Matrix`], whose unsafe constructors state what
    /// `base` and `stride` must guarantee.
    pub fn new(col: usize, width: usize, base: *const f32, stride: isize) -> Segment {
        Segment {
            col,
            width,
            base,
            stride,
        }
    }

    /// Whether each row's run follows the previous row's with no gap (a full-width scan of a
    /// row-major matrix, or a block of the prefix-blocked layout).
    #[inline(always)]
    pub(crate) fn rows_adjacent(&self) -> bool {
        self.stride == self.width as isize
    }

    /// Pointer to row `row`'s run.
    ///
    /// # Safety
    /// `row` must be below the row count of the [`Matrix`] this segment came from.
    #[inline(always)]
    pub(crate) unsafe fn row_ptr(&self, row: usize) -> *const f32 {
        // SAFETY: the Matrix constructor checked that base + row * stride + [0, width) is
        // readable for every row < rows; the caller promises row < rows.
        unsafe { self.base.offset(row as isize * self.stride) }
    }
}

// SAFETY: a Segment is a read-only view into memory that the owning Matrix's lifetime keeps
// alive; nothing is ever written through it, so sharing it between threads is sound.
unsafe impl Send for Segment {}
// SAFETY: as above, read-only.
unsafe impl Sync for Segment {}

/// A read-only `rows x cols` float32 matrix, borrowed for `'a`.
#[derive(Clone, Debug)]
pub struct Matrix<'a> {
    rows: usize,
    cols: usize,
    segments: Vec<Segment>,
    _borrow: PhantomData<&'a [f32]>,
}

impl<'a> Matrix<'a> {
    /// A C-contiguous matrix over `data` (`data.len() == rows * cols`).
    pub fn from_slice(data: &'a [f32], rows: usize, cols: usize) -> Result<Self> {
        let need = rows.checked_mul(cols);
        if need != Some(data.len()) {
            return Err(Error::DimMismatch(format!(
                "a {rows} x {cols} matrix needs {} values, the buffer has {}",
                rows.saturating_mul(cols),
                data.len()
            )));
        }
        // SAFETY: rows * cols == data.len(), so every row r < rows has cols readable values at
        // data + r * cols, and `data` is borrowed for 'a.
        Ok(unsafe { Self::from_raw_parts(data.as_ptr(), rows, cols, cols as isize) })
    }

    /// A row-major matrix whose row `r` starts at `ptr + r * row_stride` (elements, may be
    /// negative or zero) and has `cols` contiguous values.
    ///
    /// # Safety
    /// For every `r < rows`, the `cols` floats at `ptr + r * row_stride` must be readable for
    /// `'a` and not written to while the matrix is in use.
    pub unsafe fn from_raw_parts(
        ptr: *const f32,
        rows: usize,
        cols: usize,
        row_stride: isize,
    ) -> Self {
        Matrix {
            rows,
            cols,
            segments: vec![Segment::new(0, cols, ptr, row_stride)],
            _borrow: PhantomData,
        }
    }

    /// A matrix made of column segments that cover `[0, cols)` in order (the prefix-blocked
    /// layout: one segment per block).
    ///
    /// # Safety
    /// For every segment and every `r < rows`, the `width` floats at `base + r * stride` must
    /// be readable for `'a` and not written to while the matrix is in use.
    pub unsafe fn from_segments(rows: usize, cols: usize, segments: Vec<Segment>) -> Self {
        debug_assert!(segments.iter().map(|s| s.width).sum::<usize>() == cols);
        Matrix {
            rows,
            cols,
            segments,
            _borrow: PhantomData,
        }
    }

    /// Number of rows.
    pub fn rows(&self) -> usize {
        self.rows
    }

    /// Number of columns (the full width `D`).
    pub fn cols(&self) -> usize {
        self.cols
    }

    /// The view of columns `[0, dim)` (`dim` is capped at `cols`) that the kernels scan.
    pub fn prefix(&self, dim: usize) -> Prefix<'a> {
        let dim = dim.min(self.cols);
        let segments = self
            .segments
            .iter()
            .filter(|s| s.col < dim)
            .map(|s| Segment {
                width: s.width.min(dim - s.col),
                ..*s
            })
            .collect();
        Prefix {
            rows: self.rows,
            dim,
            segments,
            _borrow: PhantomData,
        }
    }
}

/// Columns `[0, dim)` of a [`Matrix`]: the segments that cover them, the last one cut at `dim`.
#[derive(Clone, Debug)]
pub struct Prefix<'a> {
    rows: usize,
    dim: usize,
    segments: Vec<Segment>,
    _borrow: PhantomData<&'a [f32]>,
}

impl Prefix<'_> {
    /// Number of rows.
    pub fn rows(&self) -> usize {
        self.rows
    }

    /// Prefix width.
    pub fn dim(&self) -> usize {
        self.dim
    }

    /// The segments, in column order, covering `[0, dim)`.
    pub(crate) fn segments(&self) -> &[Segment] {
        &self.segments
    }

    /// Number of `lanes`-column chunks a row splits into, segment by segment (the last chunk
    /// of each segment zero-filled): the unit the batch kernel reads rows and queries in.
    pub fn chunks(&self, lanes: usize) -> usize {
        self.segments.iter().map(|s| s.width.div_ceil(lanes)).sum()
    }

    /// Panics unless every row number is below [`Self::rows`] (the kernels' safety rests on it).
    pub(crate) fn check_rows(&self, rows: &[usize]) {
        let n = self.rows;
        assert!(
            rows.iter().all(|&r| r < n),
            "row index out of range ({n} rows)"
        );
    }

    /// The rows `rows` as the batch kernel reads them: each one run of `chunks(lanes) * lanes`
    /// floats, each segment's part zero-padded to whole chunks. When the prefix is one run of
    /// whole chunks (a row-major matrix, or the first block of a file split there) that is
    /// where the rows lie; otherwise (several segments, or a width that is not a multiple of
    /// `lanes`) the rows are copied into `copy`. Panics if a row is out of range.
    pub(crate) fn chunked_rows<'s>(
        &'s self,
        rows: &'s [usize],
        lanes: usize,
        copy: &'s mut RowCopy,
    ) -> ChunkedRows<'s> {
        self.check_rows(rows);
        match self.segments() {
            [seg] if seg.width % lanes == 0 => ChunkedRows {
                base: seg.base,
                stride: seg.stride,
                idx: rows,
            },
            segs => {
                let w = self.chunks(lanes) * lanes;
                copy.data.clear();
                copy.data.resize(rows.len() * w, 0.0);
                for (dst, &row) in copy.data.chunks_exact_mut(w).zip(rows) {
                    let mut at = 0;
                    for seg in segs {
                        // SAFETY: row is in range (checked), so its run in every segment is
                        // readable for `width` floats (Matrix contract).
                        let run =
                            unsafe { std::slice::from_raw_parts(seg.row_ptr(row), seg.width) };
                        dst[at..at + seg.width].copy_from_slice(run);
                        at += seg.width.next_multiple_of(lanes);
                    }
                }
                copy.idx.clear();
                copy.idx.extend(0..rows.len());
                ChunkedRows {
                    base: copy.data.as_ptr(),
                    stride: w as isize,
                    idx: &copy.idx,
                }
            }
        }
    }

    /// Row `row`'s values in `[0, dim)`, segment by segment (the slow, exact paths use this).
    pub fn row_values(&self, row: usize) -> impl Iterator<Item = f32> + '_ {
        assert!(
            row < self.rows,
            "row {row} out of range ({} rows)",
            self.rows
        );
        self.segments.iter().flat_map(move |s| {
            // SAFETY: row < rows (asserted above), so the segment run is readable (Matrix
            // constructor contract) for the lifetime of the borrow.
            let run = unsafe { std::slice::from_raw_parts(s.row_ptr(row), s.width) };
            run.iter().copied()
        })
    }
}

/// Scratch of `Prefix::chunked_rows`, reused from block to block: rows copied into whole
/// chunks when the prefix is not one run of whole chunks.
#[derive(Clone, Debug, Default)]
pub struct RowCopy {
    data: Vec<f32>,
    idx: Vec<usize>,
}

/// Rows laid out for the batch kernel by `Prefix::chunked_rows`: row `i` is the
/// `chunks * lanes` floats at `base + idx[i] * stride` (elements), readable while the borrow
/// lives.
#[derive(Clone, Copy, Debug)]
pub(crate) struct ChunkedRows<'a> {
    pub base: *const f32,
    pub stride: isize,
    pub idx: &'a [usize],
}
