//! The only PyO3 file: `matryo_fast._core`. Each export wraps a pure function of the core;
//! numpy arrays are borrowed (never copied), the GIL is released for the work, and core
//! errors are mapped to Python exceptions in one place.

use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use numpy::ndarray::Array2;
use numpy::{
    IntoPyArray, PyArray1, PyArray2, PyArrayMethods, PyReadonlyArray1, PyReadonlyArray2,
    PyUntypedArrayMethods,
};
use pyo3::exceptions::{PyFileNotFoundError, PyOSError, PyTypeError, PyValueError};
use pyo3::prelude::*;
use pyo3::types::PyDict;

use crate::blocked::{Tier, Writer};
use crate::error::Error;
use crate::kernels::{self, Backend};
use crate::layout::Matrix;
use crate::search::{self, Hits, Queries};
use crate::store::NpyFile;
use crate::{funnel, pool, quant};

/// `(scores, indices)`, each `(B, k)`.
type TopKArrays<'py> = (Bound<'py, PyArray2<f32>>, Bound<'py, PyArray2<i64>>);

impl From<Error> for PyErr {
    fn from(e: Error) -> PyErr {
        let msg = e.to_string();
        match e {
            Error::WrongDtype { .. } => PyTypeError::new_err(msg),
            Error::NotFound { .. } => PyFileNotFoundError::new_err(msg),
            Error::Io { .. } => PyOSError::new_err(msg),
            _ => PyValueError::new_err(msg),
        }
    }
}

/// A memory-mapped float32 `.npy` corpus (read-only, shared between threads).
#[pyclass(
    frozen,
    name = "Corpus",
    module = "matryo_fast._core",
    skip_from_py_object
)]
struct PyCorpus {
    file: Arc<NpyFile>,
}

#[pymethods]
impl PyCorpus {
    #[new]
    fn py_new(py: Python<'_>, path: PathBuf) -> PyResult<Self> {
        let file = py.detach(|| NpyFile::open(&path))?;
        Ok(PyCorpus {
            file: Arc::new(file),
        })
    }

    /// `(rows, dims)`.
    #[getter]
    fn shape(&self) -> (usize, usize) {
        self.file.shape()
    }

    /// The mapped file.
    #[getter]
    fn path(&self) -> String {
        self.file.path().display().to_string()
    }

    /// `"row-major"` (`.npy`) or `"prefix-blocked"`.
    #[getter]
    fn layout(&self) -> &'static str {
        self.file.layout()
    }

    fn __len__(&self) -> usize {
        self.file.shape().0
    }

    /// The tiers the file holds, finest first: `("float32",)` for a `.npy` file.
    #[getter]
    fn tiers(&self) -> Vec<&'static str> {
        self.file.tiers().iter().map(|t| t.name()).collect()
    }

    /// The int8 tier's `(2, D)` ranges (minima, maxima), if the file holds that tier.
    #[getter]
    fn int8_ranges<'py>(&self, py: Python<'py>) -> PyResult<Option<Bound<'py, PyArray2<f32>>>> {
        let Some(p) = self.file.blocked().and_then(|l| l.int8.as_ref()) else {
            return Ok(None);
        };
        let cols = self.file.shape().1;
        let a = Array2::from_shape_vec((2, cols), p.ranges.clone())
            .map_err(|e| PyValueError::new_err(e.to_string()))?;
        Ok(Some(a.into_pyarray(py)))
    }
}

/// A streaming writer of the prefix-blocked format (see `blocked.rs`).
#[pyclass(frozen, name = "BlockedWriter", module = "matryo_fast._core")]
struct PyBlockedWriter {
    inner: Mutex<Option<Writer>>,
}

#[pymethods]
impl PyBlockedWriter {
    #[new]
    #[pyo3(signature = (path, rows, widths, tiers, ranges=None, overwrite=false))]
    fn py_new(
        path: PathBuf,
        rows: usize,
        widths: Vec<usize>,
        tiers: Vec<String>,
        ranges: Option<PyReadonlyArray2<'_, f32>>,
        overwrite: bool,
    ) -> PyResult<Self> {
        let tiers = tiers
            .iter()
            .map(|t| Tier::from_name(t))
            .collect::<Result<Vec<_>, _>>()?;
        let ranges = match &ranges {
            Some(r) => Some(
                r.as_slice()
                    .map_err(|_| PyValueError::new_err("ranges must be C-contiguous"))?,
            ),
            None => None,
        };
        let w = Writer::create(&path, rows, &widths, &tiers, ranges, overwrite)?;
        Ok(PyBlockedWriter {
            inner: Mutex::new(Some(w)),
        })
    }

    /// Appends a `(n, D)` float32 batch of rows.
    fn write(&self, py: Python<'_>, batch: PyReadonlyArray2<'_, f32>) -> PyResult<()> {
        let x = batch.as_slice().map_err(|_| {
            PyValueError::new_err("batch must be C-contiguous; use np.ascontiguousarray(batch)")
        })?;
        let mut guard = self
            .inner
            .lock()
            .map_err(|_| PyOSError::new_err("writer poisoned"))?;
        let w = guard
            .as_mut()
            .ok_or_else(|| PyValueError::new_err("the writer is closed"))?;
        py.detach(|| w.write_rows(x))?;
        Ok(())
    }

    /// Flushes, syncs and renames the file into place; returns its path.
    fn finish(&self, py: Python<'_>) -> PyResult<String> {
        let mut guard = self
            .inner
            .lock()
            .map_err(|_| PyOSError::new_err("writer poisoned"))?;
        let w = guard
            .take()
            .ok_or_else(|| PyValueError::new_err("the writer is closed"))?;
        let path = py.detach(|| w.finish())?;
        Ok(path.display().to_string())
    }

    /// Discards the file being written.
    fn abort(&self) -> PyResult<()> {
        let mut guard = self
            .inner
            .lock()
            .map_err(|_| PyOSError::new_err("writer poisoned"))?;
        drop(guard.take());
        Ok(())
    }
}

/// A corpus argument, borrowed for the call.
enum CorpusArg<'py> {
    File(Arc<NpyFile>),
    Array(PyReadonlyArray2<'py, f32>),
}

impl<'py> CorpusArg<'py> {
    fn extract(obj: &Bound<'py, PyAny>) -> PyResult<Self> {
        if let Ok(c) = obj.cast::<PyCorpus>() {
            let file = &c.get().file;
            file.check()?;
            return Ok(CorpusArg::File(Arc::clone(file)));
        }
        obj.extract::<PyReadonlyArray2<'py, f32>>()
            .map(CorpusArg::Array)
            .map_err(|_| {
                PyTypeError::new_err("corpus must be a 2-D native float32 numpy array or a Corpus")
            })
    }

    fn cols(&self) -> usize {
        match self {
            CorpusArg::File(f) => f.shape().1,
            CorpusArg::Array(a) => a.shape()[1],
        }
    }

    /// The rows as a zero-copy matrix.
    fn matrix(&self) -> PyResult<Matrix<'_>> {
        match self {
            CorpusArg::File(f) => Ok(f.matrix()?),
            CorpusArg::Array(a) => {
                let (rows, cols) = (a.shape()[0], a.shape()[1]);
                let strides = a.strides(); // bytes
                let ptr = a.data().cast_const();
                let item = std::mem::size_of::<f32>() as isize;
                if rows > 0 && cols > 1 && strides[1] != item {
                    return Err(PyValueError::new_err(format!(
                        "corpus rows must be contiguous (column stride {} bytes, expected {item}); \
                         use np.ascontiguousarray(corpus) once",
                        strides[1]
                    )));
                }
                if strides[0] % item != 0
                    || !(ptr as usize).is_multiple_of(std::mem::align_of::<f32>())
                {
                    return Err(PyValueError::new_err(
                        "corpus data is not aligned to 4 bytes; use np.ascontiguousarray(corpus) once",
                    ));
                }
                // SAFETY: numpy guarantees that for r < rows the cols values at
                // data + r * strides[0] bytes (column stride 4, checked above) lie inside the
                // array's buffer; the pointer is 4-byte aligned (checked). The readonly borrow
                // keeps the array alive and flags it borrowed for the call; as with any numpy
                // extension that releases the GIL, another thread writing to the same array
                // during the call is the caller's race.
                Ok(unsafe { Matrix::from_raw_parts(ptr, rows, cols, strides[0] / item) })
            }
        }
    }
}

/// Borrows the query as dense rows.
fn query_slice<'a>(query: &'a PyReadonlyArray2<'_, f32>) -> PyResult<&'a [f32]> {
    query.as_slice().map_err(|_| {
        PyValueError::new_err("query must be C-contiguous; use np.ascontiguousarray(query)")
    })
}

fn to_arrays<'py>(py: Python<'py>, hits: Hits) -> PyResult<TopKArrays<'py>> {
    let shape = (hits.nq, hits.k);
    let bad = |e: numpy::ndarray::ShapeError| PyValueError::new_err(e.to_string());
    let scores = Array2::from_shape_vec(shape, hits.scores).map_err(bad)?;
    let indices = Array2::from_shape_vec(shape, hits.indices).map_err(bad)?;
    Ok((scores.into_pyarray(py), indices.into_pyarray(py)))
}

/// The tiers named, or an error naming the unknown one.
fn tiers_of(names: &[String]) -> PyResult<Vec<Tier>> {
    Ok(names
        .iter()
        .map(|t| Tier::from_name(t))
        .collect::<Result<Vec<_>, _>>()?)
}

/// A corpus for a quantized precision: a file holding that tier.
fn quantized_file(corpus: &CorpusArg<'_>, tiers: &[Tier]) -> PyResult<Arc<NpyFile>> {
    match corpus {
        CorpusArg::File(f) => Ok(Arc::clone(f)),
        CorpusArg::Array(_) => {
            let t = tiers
                .iter()
                .find(|t| **t != Tier::Float32)
                .map_or("", |t| t.name());
            Err(PyValueError::new_err(format!(
                "precision {t:?} needs a prefix-blocked file that holds that tier (a numpy \
                 array is float32 only): write one with save_prefix_blocked(path, x, \
                 tiers=(\"float32\", {t:?})) and open it with open_corpus"
            )))
        }
    }
}

/// Top-k over the first `dim` columns at `precision`; `(scores (B, k), indices (B, k))`.
#[pyfunction]
#[pyo3(name = "topk", signature = (query, corpus, dim, k, precision="float32"))]
fn py_topk<'py>(
    py: Python<'py>,
    query: PyReadonlyArray2<'py, f32>,
    corpus: &Bound<'py, PyAny>,
    dim: i64,
    k: i64,
    precision: &str,
) -> PyResult<TopKArrays<'py>> {
    let tier = Tier::from_name(precision)?;
    let corpus = CorpusArg::extract(corpus)?;
    let qcols = query.shape()[1];
    if tier != Tier::Float32 {
        let file = quantized_file(&corpus, &[tier])?;
        let queries = Queries::new(query_slice(&query)?, qcols)?;
        let hits = py.detach(|| quant::topk(&file, queries, dim, k, tier))?;
        return to_arrays(py, hits);
    }
    search::check_dim(dim, qcols, corpus.cols())?;
    let queries = Queries::new(query_slice(&query)?, qcols)?;
    let matrix = corpus.matrix()?;
    let hits = py.detach(|| search::topk(queries, &matrix, dim, k))?;
    to_arrays(py, hits)
}

/// Funnel search (shortlist at `dims[0]`, re-rank at each wider dim); `(scores, indices)`.
#[pyfunction]
#[pyo3(name = "funnel", signature = (query, corpus, dims, candidates, k, precisions=None))]
fn py_funnel<'py>(
    py: Python<'py>,
    query: PyReadonlyArray2<'py, f32>,
    corpus: &Bound<'py, PyAny>,
    dims: Vec<i64>,
    candidates: Vec<i64>,
    k: i64,
    precisions: Option<Vec<String>>,
) -> PyResult<TopKArrays<'py>> {
    let corpus = CorpusArg::extract(corpus)?;
    let qcols = query.shape()[1];
    let tiers = tiers_of(&precisions.unwrap_or_default())?;
    if tiers.iter().any(|t| *t != Tier::Float32) {
        let file = quantized_file(&corpus, &tiers)?;
        let queries = Queries::new(query_slice(&query)?, qcols)?;
        let hits = py.detach(|| quant::funnel(&file, queries, &dims, &tiers, &candidates, k))?;
        return to_arrays(py, hits);
    }
    funnel::check_plan(&dims, &candidates, k, qcols, corpus.cols())?;
    let queries = Queries::new(query_slice(&query)?, qcols)?;
    let matrix = corpus.matrix()?;
    let hits = py.detach(|| funnel::funnel(queries, &matrix, &dims, &candidates, k))?;
    to_arrays(py, hits)
}

/// Scores of given rows at width `dim`: query `j` against `rows[offsets[j]..offsets[j + 1]]`
/// (the funnel's re-scoring gather); one float32 per row.
#[pyfunction]
#[pyo3(name = "score_rows", signature = (query, corpus, dim, rows, offsets))]
fn py_score_rows<'py>(
    py: Python<'py>,
    query: PyReadonlyArray2<'py, f32>,
    corpus: &Bound<'py, PyAny>,
    dim: i64,
    rows: PyReadonlyArray1<'py, i64>,
    offsets: Vec<usize>,
) -> PyResult<Bound<'py, PyArray1<f32>>> {
    let corpus = CorpusArg::extract(corpus)?;
    let qcols = query.shape()[1];
    let queries = Queries::new(query_slice(&query)?, qcols)?;
    let rows = rows.as_slice().map_err(|_| {
        PyValueError::new_err("rows must be C-contiguous; use np.ascontiguousarray(rows)")
    })?;
    let matrix = corpus.matrix()?;
    let scores = py.detach(|| funnel::score_rows(queries, &matrix, dim, rows, &offsets))?;
    Ok(scores.into_pyarray(py))
}

/// `{"available": [...], "active": name, "threads": n}`.
#[pyfunction]
#[pyo3(name = "backends")]
fn py_backends(py: Python<'_>) -> PyResult<Bound<'_, PyDict>> {
    let d = PyDict::new(py);
    let names: Vec<&str> = kernels::available().iter().map(|b| b.name()).collect();
    d.set_item("available", names)?;
    d.set_item("active", kernels::active()?.name())?;
    d.set_item("threads", pool::current_threads())?;
    Ok(d)
}

/// Forces a backend by name for this process; `None` restores the default.
#[pyfunction]
#[pyo3(name = "set_backend", signature = (name=None))]
fn py_set_backend(name: Option<&str>) -> PyResult<()> {
    let backend = name.map(Backend::parse).transpose()?;
    Ok(kernels::force(backend)?)
}

/// Query-word popcounts per second of the Hamming kernel on cache-resident rows, on every
/// thread (a benchmark's compute floor for the 1-bit scan).
#[pyfunction]
#[pyo3(name = "_popcount_peak", signature = (nq, words, rounds=5))]
fn py_popcount_peak(py: Python<'_>, nq: usize, words: usize, rounds: usize) -> PyResult<f64> {
    Ok(py.detach(|| crate::probe::popcount_peak(nq, words, rounds))?)
}

/// Seconds to read `nbytes` bytes once from memory, on every thread (a benchmark's
/// bandwidth floor).
#[pyfunction]
#[pyo3(name = "_read_seconds", signature = (nbytes, rounds=5))]
fn py_read_seconds(py: Python<'_>, nbytes: usize, rounds: usize) -> f64 {
    py.detach(|| crate::probe::read_seconds(nbytes, rounds))
}

#[pymodule(gil_used = false)]
fn _core(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add("__version__", env!("CARGO_PKG_VERSION"))?;
    m.add_class::<PyCorpus>()?;
    m.add_class::<PyBlockedWriter>()?;
    m.add_function(wrap_pyfunction!(py_topk, m)?)?;
    m.add_function(wrap_pyfunction!(py_funnel, m)?)?;
    m.add_function(wrap_pyfunction!(py_score_rows, m)?)?;
    m.add_function(wrap_pyfunction!(py_backends, m)?)?;
    m.add_function(wrap_pyfunction!(py_set_backend, m)?)?;
    m.add_function(wrap_pyfunction!(py_popcount_peak, m)?)?;
    m.add_function(wrap_pyfunction!(py_read_seconds, m)?)?;
    Ok(())
}
