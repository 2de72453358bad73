"""The corpus a search reads: :class:`Corpus` (a memory-mapped file), :func:`open_corpus`, and
:func:`coerce_corpus`, which turns any accepted corpus argument into what the core reads.
"""

from __future__ import annotations

import os
from typing import Any, Union

import numpy as np
import numpy.typing as npt

from matryo_fast import _core

__all__ = ["Corpus", "CorpusLike", "coerce_corpus", "open_corpus"]


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


def coerce_corpus(corpus: Any) -> Any:
    """What the core accepts: a ``_core.Corpus`` or a float32 2-D array with contiguous rows.

    A :class:`Corpus` gives its mapped file, a path is mapped, an array is checked (never
    converted or copied).

    Raises:
        TypeError: Not an array, path or Corpus, or not native float32.
        ValueError: Not 2-D, or rows that are not contiguous.
    """
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
