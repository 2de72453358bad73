"""Plain-numpy float64 oracle for the search contract; the tests compare every fast path with it.

It states the contract in the most obvious code, and it does not import ``matryo_fast._core``:

1. truncate the query and every corpus row to their first ``dim`` columns;
2. normalise each prefix in float64 (a zero-norm prefix stays all zeros, so it scores ``0.0``);
3. score = dot product of the normalised prefixes, clamped to ``[-1, 1]``;
4. sort by ``(-score, row index)`` (a stable sort), keep the first ``k``; ``k > N`` keeps all rows.

Float32 input is exact in float64 and every float32 product fits, so neither the norms nor the
dot products can under- or overflow here. Rows with identical prefixes are scored once (through
:func:`numpy.unique`), so they tie exactly whatever BLAS does, as the contract requires.

>>> import numpy as np
>>> corpus = np.array([[1, 0, 5], [0, 1, 0], [1, 1, 0], [0, 0, 7]], dtype=np.float32)
>>> scores, indices = topk_reference(np.array([1.0, 0.0, 0.0]), corpus, dim=2, k=3)
>>> indices.tolist(), np.round(scores, 4).tolist()
([0, 2, 1], [1.0, 0.7071, 0.0])
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import numpy.typing as npt

__all__ = [
    "binary_cosine",
    "funnel_reference",
    "int8_codes",
    "int8_cosine",
    "int8_dequantized",
    "int8_values",
    "normalised_prefix",
    "prefix_cosine",
    "quantized_topk_reference",
    "sign_vectors",
    "topk_reference",
]

F64 = npt.NDArray[np.float64]
I64 = npt.NDArray[np.int64]


def normalised_prefix(x: npt.ArrayLike, dim: int) -> F64:
    """Rows of ``x[:, :dim]`` scaled to unit norm in float64; zero-norm rows stay zero.

    The one prefix normalisation of the package: evaluation's ``truncate_normalize`` and the
    benchmarks' float64 checks use it too."""
    p = np.asarray(x)[:, :dim].astype(np.float64)
    norms = np.linalg.norm(p, axis=1, keepdims=True)
    out: F64 = np.divide(p, norms, out=np.zeros_like(p), where=norms > 0)
    return out


def prefix_cosine(query: npt.ArrayLike, corpus: npt.ArrayLike, dim: int) -> F64:
    """Prefix cosine of every (query, row) pair: shape ``(B, N)``, float64, in ``[-1, 1]``.

    Args:
        query: ``(D,)`` or ``(B, D)`` with ``D >= dim``; a 1-D query is treated as ``B = 1``.
        corpus: ``(N, D')`` with ``D' >= dim``.
        dim: Prefix width.

    Returns:
        The ``(B, N)`` score matrix.
    """
    q = np.atleast_2d(np.asarray(query))
    c = np.asarray(corpus)
    uniq, inverse = np.unique(c[:, :dim], axis=0, return_inverse=True)
    scores = normalised_prefix(q, dim) @ normalised_prefix(uniq, dim).T
    clipped: F64 = np.clip(scores[:, inverse.reshape(-1)], -1.0, 1.0)
    return clipped


def _check(query: npt.ArrayLike, corpus: npt.ArrayLike, dim: int | None, k: int) -> int:
    q, c = np.asarray(query), np.asarray(corpus)
    if q.ndim not in (1, 2) or c.ndim != 2:
        raise ValueError(f"query must be 1-D or 2-D and corpus 2-D, got {q.ndim}-D and {c.ndim}-D")
    d = c.shape[1] if dim is None else dim
    if not 1 <= d <= min(q.shape[-1], c.shape[1]):
        raise ValueError(f"dim={d} is outside [1, {min(q.shape[-1], c.shape[1])}]")
    if k < 1:
        raise ValueError(f"k must be >= 1, got {k}")
    return d


def topk_reference(query: npt.ArrayLike, corpus: npt.ArrayLike, dim: int | None, k: int) -> tuple[F64, I64]:
    """Top-``k`` rows by prefix cosine, in float64: the contract of :func:`matryo_fast.topk`.

    Args:
        query: ``(D,)`` or ``(B, D)`` float array.
        corpus: ``(N, D')`` float array.
        dim: Prefix width, ``None`` for all corpus columns.
        k: Results per query; ``k > N`` returns all ``N`` rows.

    Returns:
        ``(scores, indices)``: float64 and int64, shape ``(min(k, N),)`` for a 1-D query and
        ``(B, min(k, N))`` for a batch; sorted by score descending, ties by ascending index.

    Raises:
        ValueError: ``dim`` outside ``[1, min(query width, corpus width)]``, ``k < 1``, wrong rank.
    """
    d = _check(query, corpus, dim, k)
    scores = prefix_cosine(query, corpus, d)
    order = np.argsort(-scores, axis=1, kind="stable")[:, :k].astype(np.int64)
    top = np.take_along_axis(scores, order, axis=1)
    if np.asarray(query).ndim == 1:
        return top[0], order[0]
    return top, order


def funnel_reference(
    query: npt.ArrayLike,
    corpus: npt.ArrayLike,
    *,
    k: int,
    dims: Sequence[int],
    candidates: Sequence[int],
) -> tuple[F64, I64]:
    """A coarse-to-fine cascade over growing prefixes, in float64.

    Stage 0 keeps the top ``candidates[0]`` rows of the whole corpus by prefix cosine at
    ``dims[0]``. Each later stage ``i`` rescores only the surviving rows at ``dims[i]`` (cosine of
    the re-normalised ``dims[i]`` prefixes) and keeps the top ``candidates[i]``; the last stage
    keeps ``k``. Every stage breaks ties by ascending row index. With one stage this is
    :func:`topk_reference`.

    Args:
        query: ``(D,)`` or ``(B, D)`` float array.
        corpus: ``(N, D')`` float array.
        k: Results per query from the last stage.
        dims: Prefix width of each stage.
        candidates: Rows kept by each stage but the last: ``len(dims) - 1`` entries.

    Returns:
        ``(scores, indices)`` of the last stage, as :func:`topk_reference` returns them.

    Raises:
        ValueError: ``dims`` empty, ``len(candidates) != len(dims) - 1``, a width out of range,
            or ``k``/a candidate count below 1.
    """
    if not dims or len(candidates) != len(dims) - 1:
        raise ValueError(f"need len(candidates) == len(dims) - 1 >= 0, got {candidates}, {dims}")
    keep = [*candidates, k]
    for d, c in zip(dims, keep):
        _check(query, corpus, d, c)
    q, x = np.atleast_2d(np.asarray(query)), np.asarray(corpus)
    n = x.shape[0]
    out_scores: list[F64] = []
    out_rows: list[I64] = []
    for qi in q:
        rows = np.arange(n, dtype=np.int64)
        for d, c in zip(dims, keep):
            s = prefix_cosine(qi, x[rows], d)[0]
            order = np.lexsort((rows, -s))[:c]  # last key sorts first: -score, then row index
            rows, s = rows[order], s[order]
        out_scores.append(s)
        out_rows.append(rows)
    scores, indices = np.stack(out_scores), np.stack(out_rows)
    if np.asarray(query).ndim == 1:
        return scores[0], indices[0]
    return scores, indices


# --- Quantized tiers (the contract of ``precision="binary"`` and ``"int8"``) ----------------


def sign_vectors(x: npt.ArrayLike, dim: int) -> F64:
    """The +-1 sign vectors of the rows' first ``dim`` columns: ``+1`` where ``x > 0`` (the set
    bits of ``np.packbits(x > 0)``), else ``-1``; float64, so their dot products are exact."""
    out: F64 = np.where(np.atleast_2d(np.asarray(x))[:, :dim] > 0, 1.0, -1.0)
    return out


def binary_cosine(query: npt.ArrayLike, corpus: npt.ArrayLike, dim: int) -> F64:
    """``1 - 2 * hamming(q[:dim] > 0, x[:dim] > 0) / dim`` for every pair: the cosine of the
    +-1 sign vectors, shape ``(B, N)``, float64 (exact: integers over ``dim``)."""
    out: F64 = (sign_vectors(query, dim) @ sign_vectors(corpus, dim).T) / dim
    return out


def int8_codes(x: npt.ArrayLike, ranges: npt.ArrayLike) -> npt.NDArray[np.int8]:
    """sentence-transformers' int8 codes of the float32 values ``x``: per column
    ``floor((x - min) / step)`` clipped to ``0..255``, minus 128, in float32, with
    ``step = (max - min) / 255`` (0 replaced by 1)."""
    r = np.asarray(ranges, dtype=np.float32)
    start, step = r[0], (r[1] - r[0]) / np.float32(255)
    step = np.where(step == 0, np.float32(1), step).astype(np.float32)
    u = np.clip(np.floor((np.asarray(x, dtype=np.float32) - start) / step), 0, 255)
    codes: npt.NDArray[np.int8] = (u - 128).astype(np.int8)
    return codes


def int8_values(codes: npt.ArrayLike, ranges: npt.ArrayLike) -> F64:
    """The de-quantized values: each code's bin centre ``min + step * (code + 128.5)``,
    evaluated in float32 as the contract defines it (a centre near zero keeps the sign that
    float32 rounding gives it), returned as float64."""
    r = np.asarray(ranges, dtype=np.float32)
    start, step = r[0], (r[1] - r[0]) / np.float32(255)
    step = np.where(step == 0, np.float32(1), step).astype(np.float32)
    half = np.asarray(codes, dtype=np.float32) + np.float32(128.5)
    out: F64 = (start + step * half).astype(np.float64)
    return out


def int8_dequantized(x: npt.ArrayLike, ranges: npt.ArrayLike) -> F64:
    """What the int8 tier keeps of the float values ``x``: their codes' bin centres."""
    return int8_values(int8_codes(x, ranges), ranges)


def int8_cosine(query: npt.ArrayLike, corpus: npt.ArrayLike, dim: int, ranges: npt.ArrayLike) -> F64:
    """Cosine of each query prefix with each row's de-quantized prefix, ``(B, N)``, float64
    (a zero prefix scores 0)."""
    v = int8_dequantized(corpus, ranges)
    q = normalised_prefix(np.atleast_2d(np.asarray(query)), dim)
    scores: F64 = np.clip(q @ normalised_prefix(v, dim).T, -1.0, 1.0)
    return scores


def quantized_topk_reference(
    query: npt.ArrayLike,
    corpus: npt.ArrayLike,
    dim: int,
    k: int,
    precision: str,
    ranges: npt.ArrayLike | None = None,
) -> tuple[F64, I64]:
    """Top-``k`` by the binary or int8 score, sorted by ``(-score, row)``; shapes as
    :func:`topk_reference`."""
    _check(query, corpus, dim, k)
    if precision == "binary":
        scores = binary_cosine(query, corpus, dim)
    elif precision == "int8" and ranges is not None:
        scores = int8_cosine(query, corpus, dim, ranges)
    else:
        raise ValueError(f"precision must be 'binary' or 'int8' (with ranges), got {precision!r}")
    order = np.argsort(-scores, axis=1, kind="stable")[:, :k].astype(np.int64)
    top = np.take_along_axis(scores, order, axis=1)
    if np.asarray(query).ndim == 1:
        return top[0], order[0]
    return top, order
