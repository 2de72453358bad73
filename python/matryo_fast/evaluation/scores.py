"""Per-width scores from full-dimension embeddings: STS correlations and retrieval metrics.

Each width ``d`` is scored from the first ``d`` columns, re-normalised; the metrics themselves
are the pure functions of :mod:`matryo_fast._metrics`.
"""

from __future__ import annotations

import math
from collections.abc import Collection, Iterable, Mapping, Sequence
from typing import Any

import numpy as np
import numpy.typing as npt

from matryo_fast._extras import require
from matryo_fast._metrics import correlations, ndcg_at, recall_at_k, reciprocal_rank_at
from matryo_fast._reference import normalised_prefix
from matryo_fast._validate import is_int, require_positive, validate_dims

__all__ = ["Relevance", "retrieval_metrics", "sts_metrics", "truncate_normalize"]

Relevance = Mapping[int, float] | Collection[int]


def as_embeddings(x: Any, what: str) -> npt.NDArray[np.float32]:
    """``x`` as a C-contiguous float32 ``(N, D)`` array of finite values (``what`` names it in
    errors)."""
    a = np.asarray(x)
    if a.ndim != 2:
        raise ValueError(f"{what} must be 2-D (N, D), got shape {a.shape}")
    if not np.issubdtype(a.dtype, np.floating):
        raise TypeError(f"{what} must be a float array, got dtype {a.dtype}")
    if not np.isfinite(a).all():
        raise ValueError(f"{what} contains NaN or Inf")
    return np.ascontiguousarray(a, dtype=np.float32)


def truncate_normalize(emb: npt.ArrayLike, dim: int) -> npt.NDArray[np.float32]:
    """The first ``dim`` columns of each row, scaled to unit L2 norm (zero rows stay zero).

    Args:
        emb: ``(N, D)`` embeddings.
        dim: Width, ``1 <= dim <= D``.

    Returns:
        A new C-contiguous float32 ``(N, dim)`` array.

    Raises:
        ValueError: ``emb`` is not 2-D or ``dim`` is out of range.

    >>> truncate_normalize(np.array([[3.0, 4.0, 5.0]]), 2).tolist()
    [[0.6000000238418579, 0.800000011920929]]
    """
    a = np.asarray(emb)
    if a.ndim != 2:
        raise ValueError(f"embeddings must be 2-D (N, D), got shape {a.shape}")
    if not is_int(dim):
        raise TypeError(f"dim must be an int, got {type(dim).__name__}")
    if not 1 <= dim <= a.shape[1]:
        raise ValueError(f"dim must be in [1, {a.shape[1]}], got {dim}")
    return np.ascontiguousarray(normalised_prefix(a, int(dim)), dtype=np.float32)


def sts_metrics(
    emb1: npt.ArrayLike,
    emb2: npt.ArrayLike,
    gold: Sequence[float] | npt.ArrayLike,
    *,
    dims: Iterable[int],
) -> dict[str, dict[int, float]]:
    """Spearman and Pearson (x100) of pairwise cosine vs gold, per truncation width.

    Args:
        emb1: ``(N, D)`` embeddings of the first sentences.
        emb2: ``(N, D)`` embeddings of the second sentences.
        gold: ``N`` gold scores.
        dims: Widths to score (validated against ``D``).

    Returns:
        ``{"spearman": {dim: value}, "pearson": {dim: value}}``.

    Raises:
        ValueError: Shape mismatch, fewer than 2 pairs, constant gold scores, bad dims.
        ImportError: scipy is missing.
    """
    require("scipy.stats", feature="STS evaluation")
    a = as_embeddings(emb1, "emb1")
    b = as_embeddings(emb2, "emb2")
    g = np.asarray(gold, dtype=np.float64).reshape(-1)
    if a.shape != b.shape:
        raise ValueError(f"emb1 and emb2 must have the same shape, got {a.shape} and {b.shape}")
    if g.shape[0] != a.shape[0]:
        raise ValueError(f"gold has {g.shape[0]} scores for {a.shape[0]} pairs")
    if a.shape[0] < 2:
        raise ValueError(f"STS needs at least 2 pairs, got {a.shape[0]}")
    if not np.isfinite(g).all():
        raise ValueError("gold scores contain NaN or Inf")
    if np.ptp(g) == 0:
        raise ValueError("gold scores are all equal; correlation is undefined")
    out: dict[str, dict[int, float]] = {"spearman": {}, "pearson": {}}
    for d in validate_dims(dims, a.shape[1]):
        cos = np.einsum(
            "ij,ij->i",
            truncate_normalize(a, d).astype(np.float64),
            truncate_normalize(b, d).astype(np.float64),
        )
        sp, pe = correlations(g, cos)
        out["spearman"][d] = 100.0 * sp
        out["pearson"][d] = 100.0 * pe
    return out


def relevance_dicts(relevant: Sequence[Relevance], n_queries: int, n_corpus: int) -> list[dict[int, float]]:
    """The labels as one ``{row: gain}`` dict per query, checked against the corpus size."""
    if isinstance(relevant, (str, bytes)) or len(relevant) != n_queries:
        got = "a string" if isinstance(relevant, (str, bytes)) else f"{len(relevant)} entries"
        raise ValueError(f"relevant must have one entry per query ({n_queries}), got {got}")
    out: list[dict[int, float]] = []
    for qi, rel in enumerate(relevant):
        items: dict[int, float]
        if isinstance(rel, Mapping):
            items = {}
            for doc, gain in rel.items():
                g = float(gain)
                if not math.isfinite(g) or g < 0:
                    raise ValueError(f"relevant[{qi}][{doc}] must be a finite gain >= 0, got {gain!r}")
                items[doc] = g
        else:
            items = {doc: 1.0 for doc in rel}
        for doc in items:
            if isinstance(doc, (bool, np.bool_)) or not isinstance(doc, (int, np.integer)):
                raise TypeError(f"relevant[{qi}] must hold corpus row indices (ints), got {doc!r}")
            if not 0 <= doc < n_corpus:
                raise ValueError(f"relevant[{qi}] has row {doc}, outside the corpus [0, {n_corpus})")
        out.append({int(k): v for k, v in items.items()})
    return out


def retrieval_metrics(
    queries: npt.ArrayLike,
    corpus: npt.ArrayLike,
    *,
    dims: Iterable[int],
    k: int = 10,
    relevant: Sequence[Relevance] | None = None,
    funnel_candidates: int | None = None,
) -> dict[str, dict[int, float]]:
    """Per width: recall@k vs the full-dim exact top-k, and nDCG@10 / MRR@10 given labels (x100).

    With ``funnel_candidates=c``, also ``funnel_recall@k``: the recall of the two-stage funnel
    that shortlists ``c`` rows at width ``d`` and re-ranks them at the full width
    (:func:`matryo_fast.funnel`), next to the recall of truncated search alone.

    ``recall@k`` at width ``d`` is the mean over queries of
    ``|topk_d ∩ topk_D| / min(k, N)``, where both top-k lists come from :func:`matryo_fast.topk`
    (cosine of prefixes; ties by ascending row). ``ndcg@10`` uses linear gains
    ``sum(gain_i / log2(i + 1))`` over the top 10, divided by the ideal DCG; ``mrr@10`` is the
    reciprocal rank of the first row with gain > 0 in the top 10 (0 if none). Queries without any
    positive label are skipped for nDCG/MRR (as sentence-transformers does).

    Args:
        queries: ``(Q, D)`` query embeddings.
        corpus: ``(N, D)`` corpus embeddings.
        dims: Widths to score.
        k: Cut-off for recall against the full-dim top-k.
        relevant: Optional, one entry per query: a collection of relevant corpus rows (gain 1) or
            a ``{row: gain}`` mapping.
        funnel_candidates: Shortlist size of the funnel whose recall is reported too (>= k).

    Returns:
        ``{"recall@k": {dim: v}, ...}`` plus ``"ndcg@10"`` and ``"mrr@10"`` when ``relevant`` is
        given, and ``"funnel_recall@k"`` with ``funnel_candidates``.

    Raises:
        ValueError: Shapes differ, ``k < 1``, bad dims, or bad relevance labels.
    """
    from matryo_fast import funnel, topk

    q = as_embeddings(queries, "queries")
    c = as_embeddings(corpus, "corpus")
    if q.shape[1] != c.shape[1]:
        raise ValueError(f"queries have {q.shape[1]} dims but the corpus has {c.shape[1]}")
    if c.shape[0] == 0 or q.shape[0] == 0:
        raise ValueError(f"need at least one query and one corpus row, got {q.shape[0]} and {c.shape[0]}")
    require_positive("k", k)
    full = c.shape[1]
    ws = validate_dims(dims, full)
    rels = None if relevant is None else relevance_dicts(relevant, q.shape[0], c.shape[0])
    kk = min(int(k), c.shape[0])
    ref = topk(q, c, dim=full, k=kk).indices
    depth = max(kk, 10)
    key = f"recall@{int(k)}"
    out: dict[str, dict[int, float]] = {key: {}}
    if rels is not None:
        out["ndcg@10"] = {}
        out["mrr@10"] = {}
    fkey = f"funnel_recall@{int(k)}"
    if funnel_candidates is not None:
        if not is_int(funnel_candidates):
            raise ValueError(f"funnel_candidates must be an int, got {funnel_candidates!r}")
        if funnel_candidates < kk:
            raise ValueError(f"funnel_candidates must be at least k={kk}, got {funnel_candidates}")
        out[fkey] = {}

    def recall_of(found: npt.NDArray[np.int64]) -> float:
        return 100.0 * recall_at_k(found[:, :kk], ref)

    for d in ws:
        got = topk(q, c, dim=d, k=depth).indices
        out[key][d] = recall_of(got)
        if funnel_candidates is not None:
            cands = (int(funnel_candidates),)
            shortlisted = ref if d == full else funnel(q, c, k=kk, dims=(d, full), candidates=cands).indices
            out[fkey][d] = recall_of(shortlisted)
        if rels is not None:
            labelled = [(i, rel) for i, rel in enumerate(rels) if any(g > 0 for g in rel.values())]
            if not labelled:
                raise ValueError("relevant has no query with a positive label")
            ranked = [got[i, :10].tolist() for i, _ in labelled]
            ndcgs = [ndcg_at(top, rel, depth=10) for top, (_, rel) in zip(ranked, labelled)]
            rrs = [reciprocal_rank_at(top, rel, depth=10) for top, (_, rel) in zip(ranked, labelled)]
            out["ndcg@10"][d] = 100.0 * float(np.mean(ndcgs))
            out["mrr@10"][d] = 100.0 * float(np.mean(rrs))
    return out
