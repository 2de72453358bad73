"""Typed public search API: :func:`topk`, :func:`open_corpus`, :class:`Corpus`, :class:`TopK`.

The numeric contract (also in ``rust/lib.rs``):

* The score of corpus row ``x`` for query ``q`` at width ``dim`` is the cosine of the prefixes,
  ``dot(q[:dim], x[:dim]) / (|q[:dim]| * |x[:dim]|)``, accumulated in float32 with fused
  multiply-add, clamped to ``[-1, 1]``. A zero-norm prefix (query or row) scores exactly ``0.0``.
  Rows whose float32 squared norm would under- or overflow are scored in float64 instead.
* Only the first ``dim`` columns of the query and of each row are read.
* Results are sorted by score descending, equal scores by ascending row index; ``k > N``
  returns all ``N`` rows. A row's score does not depend on the batch, the thread count or its
  position, so duplicate rows always tie and keep index order.
* NaN/Inf in the query, or in the scanned prefix of a corpus row, raise ``ValueError``.
"""

from __future__ import annotations

import os
from typing import Any, NamedTuple, Union

import numpy as np
import numpy.typing as npt

from matryo_fast import _core

__all__ = ["PRECISIONS", "Corpus", "CorpusLike", "TopK", "check_precision", "open_corpus", "topk"]


class TopK(NamedTuple):
    """Top-k result: ``scores`` (float32) then ``indices`` (int64), as ``torch.topk`` and FAISS.

    Shapes are ``(k,)`` for a 1-D query and ``(B, k)`` for a ``(B, D)`` batch.
    """

    scores: npt.NDArray[np.float32]
    indices: npt.NDArray[np.int64]


class Corpus:
    """A float32 ``.npy`` matrix memory-mapped (read-only) by the Rust core; open once, reuse.

    Nothing is loaded or copied: a scan at ``dim`` reads only the first ``dim`` columns.

    >>> corpus = open_corpus("emb.npy")  # doctest: +SKIP
    >>> corpus.shape  # doctest: +SKIP
    (1000000, 768)
    """

    __slots__ = ("_inner",)

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self._inner = _core.Corpus(os.fspath(path))

    @property
    def path(self) -> str:
        """The file the corpus maps."""
        return self._inner.path

    @property
    def shape(self) -> tuple[int, int]:
        """``(rows, dims)``."""
        return self._inner.shape

    @property
    def layout(self) -> str:
        """``"row-major"`` (a ``.npy`` file) or ``"prefix-blocked"`` (see :func:`save_prefix_blocked`)."""
        return self._inner.layout

    @property
    def tiers(self) -> tuple[str, ...]:
        """The precisions the file holds, finest first: ``("float32",)`` for a ``.npy`` file;
        a prefix-blocked file may hold ``"float32"``, ``"int8"`` and ``"binary"``."""
        return tuple(self._inner.tiers)

    @property
    def int8_ranges(self) -> npt.NDArray[np.float32] | None:
        """The int8 tier's ``(2, D)`` ranges (minima, maxima), or ``None`` without that tier."""
        return self._inner.int8_ranges

    @property
    def dim(self) -> int:
        """The full width ``D`` of each row."""
        return self._inner.shape[1]

    def __len__(self) -> int:
        return self._inner.shape[0]

    def __repr__(self) -> str:
        rows, dims = self.shape
        return f"Corpus({self.path!r}, rows={rows}, dim={dims})"

    def as_array(self) -> np.memmap[Any, np.dtype[np.float32]]:
        """A read-only ``np.memmap`` view of the same ``.npy`` file (zero-copy).

        Raises:
            ValueError: The file is prefix-blocked (not a ``.npy`` file).
        """
        if self.layout != "row-major":
            raise ValueError(f"{self.path} is a prefix-blocked file, not a .npy array")
        return np.load(self.path, mmap_mode="r")  # type: ignore[no-any-return]


CorpusLike = Union[npt.NDArray[np.float32], Corpus, str, "os.PathLike[str]"]


def open_corpus(path: str | os.PathLike[str]) -> Corpus:
    """Memory-map a corpus file for repeated searches.

    Args:
        path: A 2-D float32 C-order ``.npy`` file (format version 1, 2 or 3, dtype ``<f4``), or
            a prefix-blocked file from :func:`matryo_fast.save_prefix_blocked`.

    Returns:
        A :class:`Corpus`.

    Raises:
        FileNotFoundError: The file does not exist.
        TypeError: The file is not float32 (the message says how to convert it).
        ValueError: The file is not a valid 2-D C-order ``.npy`` file, or it is truncated.
    """
    return Corpus(path)


def _coerce_query(query: Any, dim: int | None = None) -> tuple[npt.NDArray[np.float32], bool]:
    """The query as a C-contiguous float32 ``(B, D')`` array, and whether it was 1-D.

    Only the first ``dim`` columns are checked and converted (``D' = dim``) when the query has
    that many; columns beyond ``dim`` are never read.
    """
    q = np.asarray(query)
    if q.dtype not in (np.float32, np.float64):
        raise TypeError(
            f"query must be float32 or float64, got dtype {q.dtype}; "
            "convert it with query.astype(np.float32)"
        )
    if q.ndim not in (1, 2):
        raise ValueError(f"query must be 1-D (D,) or 2-D (B, D), got {q.ndim}-D shape {q.shape}")
    single = q.ndim == 1
    q2 = q.reshape(1, -1) if single else q
    if dim is not None and 1 <= dim <= q2.shape[1]:
        q2 = q2[:, :dim]
    finite = np.isfinite(q2)
    if not finite.all():
        bad = np.argwhere(~finite)[0]
        raise ValueError(f"query contains NaN or Inf (first at query row {bad[0]}, column {bad[1]})")
    if q2.dtype == np.float64 and q2.size and np.abs(q2).max() > np.finfo(np.float32).max:
        raise ValueError("query has values too large for float32 (they would overflow to Inf)")
    return np.ascontiguousarray(q2, dtype=np.float32), single


def _coerce_corpus(corpus: Any) -> Any:
    """What the core accepts: a ``_core.Corpus`` or a float32 2-D array with contiguous rows."""
    if isinstance(corpus, Corpus):
        return corpus._inner
    if isinstance(corpus, _core.Corpus):
        return corpus
    if isinstance(corpus, (str, os.PathLike)):
        return _core.Corpus(os.fspath(corpus))
    if not isinstance(corpus, np.ndarray):
        raise TypeError(
            f"corpus must be a 2-D float32 numpy array, a .npy path or a Corpus, "
            f"got {type(corpus).__name__}; wrap it with np.asarray(corpus, dtype=np.float32)"
        )
    if corpus.dtype != np.float32 or not corpus.dtype.isnative:
        raise TypeError(
            f"corpus has dtype {corpus.dtype.str} ({corpus.dtype}); matryo_fast scans native "
            "float32 only and never converts a corpus silently: convert it once with "
            "corpus.astype(np.float32) (or save it as a float32 .npy file)"
        )
    if corpus.ndim != 2:
        raise ValueError(f"corpus must be 2-D (N, D), got {corpus.ndim}-D shape {corpus.shape}")
    if corpus.shape[0] > 0 and corpus.shape[1] > 1 and corpus.strides[1] != corpus.itemsize:
        raise ValueError(
            f"corpus rows must be contiguous (column stride {corpus.strides[1]} bytes, expected "
            f"{corpus.itemsize}); a Fortran-ordered or column-strided array is refused rather "
            "than copied: use np.ascontiguousarray(corpus) once"
        )
    return corpus


def _check_int(name: str, value: Any) -> int:
    """``value`` as an int, clamped to +-2**62 so that the binding never raises OverflowError
    (the core then reports an out-of-range value as a ValueError)."""
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, (int, np.integer)):
        raise TypeError(f"{name} must be an int, got {type(value).__name__}")
    return max(min(int(value), 2**62), -(2**62))


PRECISIONS = ("float32", "int8", "binary")


def check_precision(precision: Any) -> str:
    """``precision`` if it is one of :data:`PRECISIONS`, else a ValueError naming them."""
    if precision not in PRECISIONS:
        raise ValueError(f"unknown precision {precision!r} (known: {', '.join(PRECISIONS)})")
    return str(precision)


def topk(
    query: Any,
    corpus: CorpusLike,
    *,
    dim: int | None = None,
    k: int = 10,
    precision: str = "float32",
) -> TopK:
    """Top-``k`` cosine search over the first ``dim`` columns (fused truncate + re-normalize).

    ``precision="binary"`` or ``"int8"`` scans that quantized tier of a prefix-blocked file
    (see :func:`matryo_fast.save_prefix_blocked` and ``docs/quantized.md``): the score is the
    cosine of the prefixes' sign vectors, ``1 - 2 * hamming / dim``, or the cosine of the
    query with the row's de-quantized prefix.

    Args:
        query: ``(D,)`` or ``(B, D)`` float32/float64 array; only the first ``dim`` columns are read.
        corpus: A 2-D float32 array (rows contiguous; ``np.memmap`` and strided row views such as
            ``big[:, :256]`` are used in place), a ``.npy`` path, or a :class:`Corpus`.
        dim: Prefix width; ``None`` means all columns of the corpus.
        k: Results per query; ``k > N`` returns all ``N`` rows.
        precision: ``"float32"``, ``"int8"`` or ``"binary"``: the tier to scan.

    Returns:
        :class:`TopK` with ``scores`` float32 and ``indices`` int64, shape ``(k,)`` or ``(B, k)``.

    Raises:
        TypeError: Wrong dtype of query or corpus (the message says how to convert).
        ValueError: Bad ``dim``/``k``/shape, NaN/Inf in the query or in a scanned corpus row,
            non-contiguous rows, a corrupt file, an unknown precision or one the file does not
            hold (the message lists the tiers present).
        OSError: The mapped file was truncated, rewritten or replaced since it was opened.
        FileNotFoundError: ``corpus`` names a missing file.

    >>> import numpy as np, matryo_fast as mf
    >>> corpus = np.eye(4, dtype=np.float32)
    >>> mf.topk(np.array([0.0, 1.0, 0.5, 0.0]), corpus, dim=2, k=2).indices.tolist()
    [1, 0]
    """
    k = _check_int("k", k)
    precision = check_precision(precision)
    c = _coerce_corpus(corpus)
    d = int(c.shape[1]) if dim is None else _check_int("dim", dim)
    q, single = _coerce_query(query, d)
    scores, indices = _core.topk(q, c, d, k, precision)
    if single:
        return TopK(scores[0], indices[0])
    return TopK(scores, indices)
