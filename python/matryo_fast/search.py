"""Typed public search API: :func:`topk` and its result :class:`TopK` (:class:`Corpus` and
:func:`open_corpus`, re-exported here, live in :mod:`matryo_fast.corpus`).

The numeric contract is written once, in the crate documentation at the top of
``rust/lib.rs`` ("Numeric contract"): how scores are accumulated (the scalar reference without
fused multiply-add, the SIMD backends with it), zero and extreme rows, NaN/Inf, the order of
results and ties. In short: the score is the cosine of the ``dim``-column prefixes, clamped to
``[-1, 1]``; only the first ``dim`` columns are read; results are sorted by score, ties by row.
"""

from __future__ import annotations

from typing import Any, NamedTuple

import numpy as np
import numpy.typing as npt

from matryo_fast import _core
from matryo_fast._validate import PRECISIONS, check_int, check_precision, coerce_query
from matryo_fast.corpus import Corpus, CorpusLike, coerce_corpus, open_corpus

__all__ = ["PRECISIONS", "Corpus", "CorpusLike", "TopK", "open_corpus", "topk", "check_precision"]


class TopK(NamedTuple):
    """Top-k result: ``scores`` (float32) then ``indices`` (int64), as ``torch.topk`` and FAISS.

    Shapes are ``(k,)`` for a 1-D query and ``(B, k)`` for a ``(B, D)`` batch.
    """

    scores: npt.NDArray[np.float32]
    indices: npt.NDArray[np.int64]


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
            ``big[:, :256]`` are used in place), a ``.npy`` path, a :class:`Corpus`, or a
            sharded corpus (its directory, :func:`open_corpus` of it, or
            :func:`matryo_fast.distributed.connect`).
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
    k = check_int("k", k)
    precision = check_precision(precision)
    c = coerce_corpus(corpus)
    d = int(c.shape[1]) if dim is None else check_int("dim", dim)
    q, single = coerce_query(query, d)
    if isinstance(c, (np.ndarray, _core.Corpus)):  # cheaper than the ABC's isinstance
        scores, indices = _core.topk(q, c, d, k, precision)
    else:
        if precision != "float32":
            raise ValueError(f"precision {precision!r} needs a prefix-blocked file, not a sharded corpus")
        scores, indices = c._topk(q, d, k)
    if single:
        return TopK(scores[0], indices[0])
    return TopK(scores, indices)
