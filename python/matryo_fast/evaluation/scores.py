"""Per-width scores from full-dimension embeddings: STS correlations and retrieval metrics, at
float32 and, on the precision axis, at the quantized tiers' precisions.

Each width ``d`` is scored from the first ``d`` columns, re-normalised; the metrics themselves
are the pure functions of :mod:`matryo_fast._metrics`. A quantized precision scores what the
tier of a prefix-blocked file keeps (``docs/quantized.md``): codes of the full-width embeddings,
their width-``d`` prefixes scored by the contract of ``precision=`` in :func:`matryo_fast.topk`.
"""

from __future__ import annotations

import math
import tempfile
from collections.abc import Collection, Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from matryo_fast._extras import require
from matryo_fast._metrics import correlations, ndcg_at, recall_at_k, reciprocal_rank_at
from matryo_fast._reference import int8_dequantized, normalised_prefix, sign_vectors
from matryo_fast._validate import PRECISIONS, check_precision, is_int, require_positive, validate_dims

__all__ = [
    "Relevance",
    "check_precisions",
    "retrieval_metrics",
    "retrieval_precision_metrics",
    "sts_metrics",
    "sts_precision_metrics",
    "truncate_normalize",
]

ByPrecision = dict[str, dict[str, dict[int, float]]]

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


def check_precisions(precisions: Iterable[str]) -> tuple[str, ...]:
    """The precisions of the precision axis in the order of :data:`PRECISIONS` (finest first),
    ``"float32"`` always among them (it is the reference).

    Raises:
        TypeError: ``precisions`` is a string or not iterable.
        ValueError: An unknown precision (the message names the known ones).

    >>> check_precisions(["binary", "int8"])
    ('float32', 'int8', 'binary')
    """
    if isinstance(precisions, str) or not isinstance(precisions, Iterable):
        raise TypeError(f"precisions must be a sequence of names such as {PRECISIONS}, got {precisions!r}")
    given = {check_precision(p) for p in precisions} | {"float32"}
    return tuple(p for p in PRECISIONS if p in given)


def _sts_inputs(
    emb1: npt.ArrayLike, emb2: npt.ArrayLike, gold: Sequence[float] | npt.ArrayLike
) -> tuple[npt.NDArray[np.float32], npt.NDArray[np.float32], npt.NDArray[np.float64]]:
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
    return a, b, g


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
    a, b, g = _sts_inputs(emb1, emb2, gold)
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


def sts_precision_metrics(
    emb1: npt.ArrayLike,
    emb2: npt.ArrayLike,
    gold: Sequence[float] | npt.ArrayLike,
    *,
    dims: Iterable[int],
    precisions: Iterable[str],
    int8_ranges: npt.ArrayLike | None = None,
) -> ByPrecision:
    """Spearman and Pearson (x100) per width and precision: :func:`sts_metrics` for float32,
    and for a quantized precision the correlation of the gold scores with the pairs' scores
    when both sentences are stored at that precision.

    * ``"binary"``: ``1 - 2 * hamming(a[:d] > 0, b[:d] > 0) / d``, the cosine of the +-1 sign
      vectors (exact).
    * ``"int8"``: the cosine of the two de-quantized prefixes (each code's bin centre) of the
      sentence-transformers int8 codes of the full-width embeddings, ranges per dimension taken
      from both sides together (as sentence-transformers' ``EmbeddingSimilarityEvaluator``
      calibrates them) unless ``int8_ranges`` is given.

    Args:
        emb1: ``(N, D)`` embeddings of the first sentences.
        emb2: ``(N, D)`` embeddings of the second sentences.
        gold: ``N`` gold scores.
        dims: Widths to score.
        precisions: Any of ``"float32"``, ``"int8"``, ``"binary"`` (float32 is always scored).
        int8_ranges: ``(2, D)`` per-dimension ``[min; max]`` of the int8 codes.

    Returns:
        ``{precision: {"spearman": {dim: v}, "pearson": {dim: v}}}``.

    Raises:
        ValueError: As :func:`sts_metrics`; an unknown precision; ranges of the wrong shape or
            with NaN/Inf.
    """
    from matryo_fast.blocked import _int8_ranges

    precs = check_precisions(precisions)
    if int8_ranges is not None and "int8" not in precs:
        raise ValueError("int8_ranges goes with the int8 precision: add 'int8' to precisions")
    a, b, g = _sts_inputs(emb1, emb2, gold)
    ws = validate_dims(dims, a.shape[1])
    out: ByPrecision = {"float32": sts_metrics(a, b, g, dims=ws)}
    for p in precs[1:]:
        if p == "binary":
            va, vb = sign_vectors(a, a.shape[1]), sign_vectors(b, b.shape[1])
        else:
            ranges = _int8_ranges(np.vstack((a, b)), int8_ranges, None, 65536)
            va, vb = int8_dequantized(a, ranges), int8_dequantized(b, ranges)
        out[p] = {"spearman": {}, "pearson": {}}
        for d in ws:
            if p == "binary":  # +-1 products sum exactly: equal Hamming distances tie exactly
                cos = np.einsum("ij,ij->i", va[:, :d], vb[:, :d]) / d
            else:
                cos = np.einsum("ij,ij->i", normalised_prefix(va, d), normalised_prefix(vb, d))
            sp, pe = correlations(g, np.clip(cos, -1.0, 1.0))
            out[p]["spearman"][d] = 100.0 * sp
            out[p]["pearson"][d] = 100.0 * pe
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
    return retrieval_precision_metrics(
        queries, corpus, dims=dims, k=k, relevant=relevant, funnel_candidates=funnel_candidates
    )["float32"]


def retrieval_precision_metrics(
    queries: npt.ArrayLike,
    corpus: npt.ArrayLike,
    *,
    dims: Iterable[int],
    k: int = 10,
    relevant: Sequence[Relevance] | None = None,
    precisions: Iterable[str] = ("float32",),
    int8_ranges: npt.ArrayLike | None = None,
    funnel_candidates: int | None = None,
) -> ByPrecision:
    """:func:`retrieval_metrics` at every width and precision: the top-k at width ``d`` and a
    quantized precision is :func:`matryo_fast.topk` with ``precision=`` on the corpus stored
    in that tier (a prefix-blocked file written to a temporary folder and removed afterwards),
    so that it scores exactly what a search of such a file returns; ``recall@k`` is always
    against the exact float32 top-k at the full width.

    Args:
        queries: ``(Q, D)`` query embeddings (kept float; the binary score takes their signs).
        corpus: ``(N, D)`` corpus embeddings.
        dims: Widths to score.
        k: Cut-off for recall against the full-dim top-k.
        relevant: Optional relevance labels, one entry per query.
        precisions: Any of ``"float32"``, ``"int8"``, ``"binary"`` (float32 is always scored).
        int8_ranges: ``(2, D)`` per-dimension ``[min; max]`` of the int8 codes; default the
            corpus's, as ``quantize_embeddings(corpus, "int8")`` takes them.
        funnel_candidates: As in :func:`retrieval_metrics` (float32 only).

    Returns:
        ``{precision: {metric: {dim: v}}}``.

    Raises:
        ValueError: As :func:`retrieval_metrics`; an unknown precision; ranges of the wrong
            shape or with NaN/Inf.
    """
    from matryo_fast import funnel, open_corpus, save_prefix_blocked, topk

    precs = check_precisions(precisions)
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
    labelled = (
        None if rels is None else [(i, r) for i, r in enumerate(rels) if any(g > 0 for g in r.values())]
    )
    if labelled is not None and not labelled:
        raise ValueError("relevant has no query with a positive label")
    kk = min(int(k), c.shape[0])
    if funnel_candidates is not None:
        if not is_int(funnel_candidates):
            raise ValueError(f"funnel_candidates must be an int, got {funnel_candidates!r}")
        if funnel_candidates < kk:
            raise ValueError(f"funnel_candidates must be at least k={kk}, got {funnel_candidates}")
    if int8_ranges is not None and "int8" not in precs:
        raise ValueError("int8_ranges goes with the int8 precision: add 'int8' to precisions")
    ref = topk(q, c, dim=full, k=kk).indices
    out: ByPrecision = {}
    with tempfile.TemporaryDirectory(prefix="matryo-eval-") as tmp:
        tiered: Any = None
        if len(precs) > 1:
            path = Path(tmp) / "corpus.mfb"
            save_prefix_blocked(path, c, tiers=precs[1:], int8_ranges=int8_ranges)
            tiered = open_corpus(path)
        for p in precs:
            by_dim = [
                (d, topk(q, tiered if p != "float32" else c, dim=d, k=max(kk, 10), precision=p).indices)
                for d in ws
            ]
            res = {f"recall@{int(k)}": {d: 100.0 * recall_at_k(got[:, :kk], ref) for d, got in by_dim}}
            if labelled is not None:
                ranked = [(d, [(got[i, :10].tolist(), rel) for i, rel in labelled]) for d, got in by_dim]
                res["ndcg@10"] = {
                    d: 100.0 * float(np.mean([ndcg_at(t, r, depth=10) for t, r in x])) for d, x in ranked
                }
                res["mrr@10"] = {
                    d: 100.0 * float(np.mean([reciprocal_rank_at(t, r, depth=10) for t, r in x]))
                    for d, x in ranked
                }
            if funnel_candidates is not None and p == "float32":
                cands = (int(funnel_candidates),)
                shortlists = [
                    (d, ref if d == full else funnel(q, c, k=kk, dims=(d, full), candidates=cands).indices)
                    for d in ws
                ]
                res[f"funnel_recall@{int(k)}"] = {d: 100.0 * recall_at_k(f, ref) for d, f in shortlists}
            out[p] = res
        del tiered  # the mapping goes before its folder
    return out
