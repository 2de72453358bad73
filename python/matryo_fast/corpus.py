"""The corpus a search reads: :class:`Corpus` (a memory-mapped file), :func:`open_corpus`, and
:func:`coerce_corpus`, which turns any accepted corpus argument into what the core reads;
:class:`ShardedSearch`, the base of corpora split into shards that search themselves.
"""

from __future__ import annotations

import abc
import os
from typing import TYPE_CHECKING, Any, Union

import numpy as np
import numpy.typing as npt

from matryo_fast import _core
from matryo_fast._interop import as_host_array

if TYPE_CHECKING:
    from matryo_fast.sharded import ShardedCorpus

__all__ = ["Corpus", "CorpusLike", "ShardedSearch", "coerce_corpus", "open_corpus"]

_F32 = np.dtype(np.float32)


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


class ShardedSearch(abc.ABC):
    """A corpus split into shards that searches them itself and merges the results exactly
    (:mod:`matryo_fast.sharded`, :mod:`matryo_fast.distributed`): :func:`matryo_fast.topk`
    and :func:`matryo_fast.funnel` hand it the checked query."""

    @property
    @abc.abstractmethod
    def shape(self) -> tuple[int, int]:
        """``(rows, dims)`` over all shards."""

    @abc.abstractmethod
    def _topk(
        self, q: npt.NDArray[np.float32], dim: int, k: int
    ) -> tuple[npt.NDArray[np.float32], npt.NDArray[np.int64]]:
        """``(scores, indices)``, each ``(B, k)``, as ``_core.topk``."""

    @abc.abstractmethod
    def _funnel(
        self, q: npt.NDArray[np.float32], dims: list[int], candidates: list[int], k: int
    ) -> tuple[npt.NDArray[np.float32], npt.NDArray[np.int64]]:
        """``(scores, indices)``, each ``(B, k)``, as ``_core.funnel``."""


CorpusLike = Union[npt.NDArray[np.float32], Corpus, ShardedSearch, str, "os.PathLike[str]"]


def open_corpus(path: str | os.PathLike[str]) -> Corpus | ShardedCorpus:
    """Memory-map a corpus file, or the shards of a sharded corpus, for repeated searches.

    Args:
        path: A 2-D float32 C-order ``.npy`` file (format version 1, 2 or 3, dtype ``<f4``), a
            prefix-blocked file from :func:`matryo_fast.save_prefix_blocked`, or a directory
            written by :class:`matryo_fast.ShardedCorpusWriter`.

    Returns:
        A :class:`Corpus`, or a :class:`matryo_fast.ShardedCorpus` for a directory.

    Raises:
        FileNotFoundError: The file does not exist.
        TypeError: The file is not float32 (the message says how to convert it).
        ValueError: The file is not a valid 2-D C-order ``.npy`` file, or it is truncated.
    """
    if os.path.isdir(path):
        from matryo_fast.sharded import ShardedCorpus  # imports this module

        return ShardedCorpus(path)
    return Corpus(path)


def coerce_corpus(corpus: Any) -> Any:
    """What the core accepts: a ``_core.Corpus`` or a float32 2-D array with contiguous rows
    (or a :class:`ShardedSearch`, which searches itself).

    A :class:`Corpus` gives its mapped file, a path is mapped, an array is checked (never
    converted or copied).

    Raises:
        TypeError: Not an array, path or Corpus, or not native float32.
        ValueError: Not 2-D, or rows that are not contiguous.
    """
    # The cheap tests first (a search of a small corpus takes tens of microseconds; the ABC
    # and os.PathLike checks cost about a microsecond each).
    if isinstance(corpus, Corpus):
        return corpus._inner
    if not isinstance(corpus, np.ndarray):
        if isinstance(corpus, (_core.Corpus, ShardedSearch)):
            return corpus
        if isinstance(corpus, (str, os.PathLike)):
            return coerce_corpus(open_corpus(corpus))
        if hasattr(corpus, "__dlpack_device__"):
            corpus = as_host_array(corpus, "corpus")  # a CPU tensor: a view, never a copy
        if not isinstance(corpus, np.ndarray):
            raise TypeError(
                f"corpus must be a 2-D float32 numpy array, a .npy path or a Corpus, "
                f"got {type(corpus).__name__}; wrap it with np.asarray(corpus, dtype=np.float32)"
            )
    if corpus.dtype != _F32:  # also refuses a non-native byte order
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
