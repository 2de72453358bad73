"""Funnel search: shortlist at a small prefix, re-rank the survivors at wider ones.

:func:`funnel` runs a cascade in one call over one full-width matrix: stage 1 is :func:`topk`
at ``dims[0]`` keeping ``candidates[0]`` rows; each later stage re-scores only the surviving
rows at the next width (a gather through the same fused dot + norm kernel, multi-threaded,
GIL released) and keeps the next count; the last stage returns the top ``k``. Every stage is
the prefix cosine of :func:`topk`, with the same input contract and errors.

:func:`tune_funnel` measures recall@k against exact full-width search on sample queries for a
grid of plans and returns the cheapest plan that reaches the target.
"""

from __future__ import annotations

import os
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import numpy.typing as npt

from matryo_fast import _core
from matryo_fast.search import (
    CorpusLike,
    TopK,
    _check_int,
    check_precision,
    _coerce_corpus,
    _coerce_query,
    open_corpus,
    topk,
)

__all__ = ["FunnelPlan", "funnel", "tune_funnel"]


def _int_tuple(name: str, values: Any) -> tuple[int, ...]:
    if isinstance(values, (str, bytes)) or not isinstance(values, (Sequence, np.ndarray)):
        raise TypeError(f"{name} must be a sequence of ints, got {type(values).__name__}")
    return tuple(_check_int(name, v) for v in values)


def funnel(
    query: Any,
    corpus: CorpusLike,
    *,
    k: int = 10,
    dims: Sequence[int],
    candidates: Sequence[int],
    precisions: Sequence[str] | None = None,
) -> TopK:
    """Cascade search: ``topk`` at ``dims[0]``, then re-rank survivors at each wider dim.

    With ``precisions``, each stage also names its tier of a prefix-blocked file (e.g.
    ``dims=(256, 768, 768), precisions=("binary", "int8", "float32")``): each stage must then
    be wider or finer than the one before, and neither narrower nor coarser.

    Args:
        query: ``(D,)`` or ``(B, D)`` float32/float64 array (as :func:`matryo_fast.topk`).
        corpus: As :func:`matryo_fast.topk`.
        k: Results per query.
        dims: Prefix widths, strictly increasing, within query and corpus.
        candidates: Rows kept after each stage but the last (``len(dims) - 1`` counts,
            non-increasing, each at least ``k``; counts above ``N`` keep every row).
        precisions: One of ``"float32"``, ``"int8"``, ``"binary"`` per stage. Default: every
            stage ``"float32"``, or on a file without a float32 tier the finest tier present.

    Returns:
        :class:`TopK` of the last stage: cosines at ``dims[-1]``.

    Raises:
        ValueError: A plan that is not a valid cascade, or any :func:`topk` input error.
        TypeError: As :func:`topk`, or non-integer widths/counts.

    >>> import numpy as np, matryo_fast as mf
    >>> x = np.random.default_rng(0).standard_normal((500, 64)).astype(np.float32)
    >>> mf.funnel(x[3], x, k=2, dims=(16, 64), candidates=(50,)).indices[0]
    np.int64(3)
    """
    k = _check_int("k", k)
    dims_t = _int_tuple("dims", dims)
    cands_t = _int_tuple("candidates", candidates)
    c = _coerce_corpus(corpus)
    precs = stage_precisions(c, precisions, len(dims_t))
    q, single = _coerce_query(query, max(dims_t) if dims_t else None)
    scores, indices = _core.funnel(q, c, list(dims_t), list(cands_t), k, precs)
    if single:
        return TopK(scores[0], indices[0])
    return TopK(scores, indices)


def stage_precisions(core_corpus: Any, precisions: Sequence[str] | None, stages: int) -> list[str]:
    """The precision of each stage: as given (checked), or every stage the finest tier the
    corpus holds."""
    if precisions is None:
        tiers = tuple(core_corpus.tiers) if isinstance(core_corpus, _core.Corpus) else ("float32",)
        return [tiers[0]] * stages
    if isinstance(precisions, str) or not isinstance(precisions, Sequence):
        raise TypeError(f"precisions must be a sequence of names, got {precisions!r}")
    out = [check_precision(p) for p in precisions]
    if len(out) != stages:
        raise ValueError(f"precisions must name one precision per width: {stages} widths, {len(out)} given")
    return out


@dataclass(frozen=True)
class FunnelPlan:
    """A measured funnel plan, from :func:`tune_funnel`.

    Attributes:
        dims: Widths of the stages (the last is the corpus width).
        candidates: Rows kept after each stage but the last.
        k: Results per query.
        recall: Mean recall@k against exact full-width search on the sample queries.
        cost: Rows x dims read per query (``N * dims[0] + sum(candidates[i] * dims[i + 1])``).
        exact_cost: The same for exact full-width search (``N * D``).
        time_ms: Measured median time of the plan on the sample batch (``None`` if not timed).
        exact: True when the chosen plan is exact search: no funnel reached the target, or
            (with ``by="time"``) none was faster than exact search.
        recall_se: Standard error of ``recall`` over the sample queries.
        table: Every plan tried, as dicts with the same fields.
    """

    dims: tuple[int, ...]
    candidates: tuple[int, ...]
    k: int
    recall: float
    cost: int
    exact_cost: int
    time_ms: float | None = None
    exact: bool = False
    recall_se: float = 0.0
    table: list[dict[str, Any]] = field(default_factory=list, repr=False, compare=False)
    corpus: Any = field(default=None, repr=False, compare=False)

    @property
    def params(self) -> dict[str, Any]:
        """Keyword arguments for :func:`funnel`: ``mf.funnel(q, corpus, **plan.params)``."""
        return {"k": self.k, "dims": self.dims, "candidates": self.candidates}

    @property
    def speedup(self) -> float:
        """``exact_cost / cost``: how much less data the plan reads than exact search."""
        return self.exact_cost / self.cost

    def search(self, query: Any, corpus: CorpusLike | None = None) -> TopK:
        """Runs the plan on ``corpus`` (default: the corpus it was tuned on)."""
        target = self.corpus if corpus is None else corpus
        if target is None:
            raise ValueError("this plan holds no corpus: pass one, plan.search(query, corpus)")
        return funnel(query, target, **self.params)

    def to_markdown(self) -> str:
        """The table of every plan tried, as Markdown (best first)."""
        lines = [
            "| dims | candidates | recall@k | cost (rows x dims) | x less than exact | est. work "
            "| time ms |",
            "|---|---|---|---|---|---|---|",
        ]
        for row in sorted(self.table, key=lambda r: (not r["feasible"], r["cost"])):
            t = "" if row["time_ms"] is None else f"{row['time_ms']:.2f}"
            lines.append(
                f"| {row['dims']} | {row['candidates']} | {row['recall']:.4f} | {row['cost']:,} | "
                f"{self.exact_cost / row['cost']:.1f} | {row['work']:,} | {t} |"
            )
        return "\n".join(lines)


#: Estimated cost of a value gathered by a later stage (a random row read) in values scanned by
#: the first stage (a sequential read): measured at about 30 on 1M x 768 (a 1000-row re-rank at
#: 768 dims took as long as a 64-dim scan of ~23M rows, at batch 1 and at batch 64).
GATHER_WEIGHT = 30


def _recall(found: npt.NDArray[np.int64], truth: npt.NDArray[np.int64]) -> tuple[float, float]:
    """Mean over queries of |found ∩ truth| / |truth| (rows of index arrays), and its standard
    error over the queries."""
    hits = np.array(
        [len(np.intersect1d(f, t, assume_unique=True)) / max(len(t), 1) for f, t in zip(found, truth)]
    )
    se = float(hits.std(ddof=1) / np.sqrt(len(hits))) if len(hits) > 1 else 0.0
    return float(hits.mean()), se


def _default_widths(full: int) -> list[int]:
    widths = {w for w in (16, 32, 64, 128, 256, 512, 1024, 2048) if w < full}
    if full // 2 >= 16:
        widths.add(full // 2)
    return sorted(widths)


def _default_counts(k: int, n: int) -> list[int]:
    counts = {min(n, int(k * m)) for m in (2, 3, 5, 10, 20, 50, 100, 200, 500, 1000)}
    return sorted(c for c in counts if c >= k)


def _median_ms(fns: Sequence[Any], repeats: int) -> list[float]:
    """Median time of each call, the calls taken in turn (one round at a time) so that a slow
    spell of a shared machine slows every one of them alike."""
    for fn in fns:
        fn()  # warm-up
    times: list[list[float]] = [[] for _ in fns]
    for _ in range(repeats):
        for fn, ts in zip(fns, times):
            t0 = time.perf_counter()
            fn()
            ts.append((time.perf_counter() - t0) * 1e3)
    return [float(np.median(ts)) for ts in times]


def tune_funnel(
    corpus: CorpusLike,
    sample_queries: Any,
    *,
    k: int = 10,
    target_recall: float = 0.99,
    widths: Sequence[int] | None = None,
    counts: Sequence[int] | None = None,
    three_stage: bool = True,
    by: str = "cost",
    time_top: int = 5,
    repeats: int = 3,
    margin_se: float = 2.0,
) -> FunnelPlan:
    """Finds the cheapest funnel plan whose measured recall@k reaches ``target_recall``.

    Truth is exact search at the corpus's full width. Two-stage plans ``(w, D)`` are scored
    for every width ``w`` and shortlist size ``c`` from one ``topk`` per width (a truth row
    survives iff it ranks within ``c`` at ``w``). Three-stage plans ``(w1, w2, D)`` are run
    with :func:`funnel` itself, only where their first stage alone already reaches the target
    and they could be cheaper than the best plan so far; for each ``(w1, c1, w2)`` the smallest
    feasible second shortlist is found by bisection (recall can only grow with it). Exact
    search is always a candidate, so when no funnel reaches the target, the result is exact
    search (``plan.exact``).

    Every row of ``plan.table`` has ``cost`` (rows x dims read) and ``work``, an estimate of
    time: values scanned by the first stage plus :data:`GATHER_WEIGHT` times the values
    gathered by later stages (random row reads cost far more per value than a scan).

    Args:
        corpus: As :func:`matryo_fast.topk`.
        sample_queries: ``(S, D)`` queries like the ones the plan will serve.
        k: Results per query.
        target_recall: Mean recall@k to reach, in ``(0, 1]`` (see ``margin_se``).
        widths: First-stage widths to try (default: powers of two from 16 below ``D``, and
            ``D // 2``).
        counts: Shortlist sizes to try (default: ``k`` times 2, 3, 5, ..., 1000, capped at N).
        three_stage: Also try cascades with two shortlists.
        by: ``"cost"`` picks the feasible plan reading the fewest rows x dims (deterministic);
            ``"time"`` explores and ranks plans by ``work`` instead, times the ``time_top``
            feasible plans of least work and exact search on the sample batch, and picks the
            fastest (what a latency-minded user wants; the timing is noisy on a busy machine).
        time_top: How many of the feasible plans get timed (``by="time"``).
        margin_se: A plan is feasible when its mean recall minus ``margin_se`` standard errors
            (over the sample queries) reaches the target, so that the plan holds on queries it
            was not tuned on (measured: plans chosen at a bare 0.99 on 200 tuning queries gave
            0.9825 to 0.9895 on 200 others). ``0`` compares the mean alone.
        repeats: Timing rounds (median); each round times every plan once, in turn.

    Returns:
        The chosen :class:`FunnelPlan`, with every plan tried in ``plan.table``.

    Raises:
        ValueError: Bad ``target_recall``, ``by``, widths or counts, or a :func:`topk` error.
    """
    k = _check_int("k", k)
    if not (isinstance(target_recall, (int, float)) and 0.0 < target_recall <= 1.0):
        raise ValueError(f"target_recall must be in (0, 1], got {target_recall!r}")
    if not (isinstance(margin_se, (int, float)) and 0.0 <= margin_se < float("inf")):
        raise ValueError(f"margin_se must be a finite number >= 0, got {margin_se!r}")
    if by not in ("cost", "time"):
        raise ValueError(f"by must be 'cost' or 'time', got {by!r}")
    q, _ = _coerce_query(sample_queries)
    if isinstance(corpus, (str, os.PathLike)):
        corpus = open_corpus(corpus)  # map the file once for every plan tried
    core_corpus = _coerce_corpus(corpus)
    n, full = (int(v) for v in core_corpus.shape)
    if n == 0:
        raise ValueError("cannot tune a funnel on an empty corpus")
    if q.shape[1] < full:
        raise ValueError(f"sample queries have {q.shape[1]} columns; the corpus has {full}")
    kk = min(k, n)
    ws = sorted(set(_int_tuple("widths", widths))) if widths is not None else _default_widths(full)
    cs = sorted(set(_int_tuple("counts", counts))) if counts is not None else _default_counts(kk, n)
    if any(w < 1 or w >= full for w in ws):
        raise ValueError(f"widths must be between 1 and {full - 1} (below the corpus width), got {ws}")
    if any(c < kk for c in cs):
        raise ValueError(f"counts must be at least k={kk}, got {cs}")

    truth = topk(q, core_corpus, dim=full, k=kk).indices
    exact_cost = n * full
    table: list[dict[str, Any]] = []
    tried: dict[tuple[tuple[int, ...], tuple[int, ...]], dict[str, Any]] = {}
    # by="cost" ranks plans by rows x dims; by="time" ranks what to try and time by the
    # estimated work, where a gathered value costs GATHER_WEIGHT scanned ones.
    weight = 1 if by == "cost" else GATHER_WEIGHT

    def rank(dims: tuple[int, ...], cands: tuple[int, ...], w: int = weight) -> int:
        """Values scanned by the first stage plus ``w`` times the values gathered later."""
        return n * dims[0] + w * sum(c * d for c, d in zip(cands, dims[1:]))

    def add(
        dims: tuple[int, ...], cands: tuple[int, ...], measured: tuple[float, float]
    ) -> dict[str, Any]:
        recall, se = measured
        row = {
            "dims": dims, "candidates": cands, "recall": recall, "recall_se": se,
            "cost": rank(dims, cands, 1),
            "work": rank(dims, cands, GATHER_WEIGHT),
            "feasible": recall - margin_se * se >= target_recall, "time_ms": None,
        }
        table.append(row)
        tried[(dims, cands)] = row
        return row

    add((full,), (), (1.0, 0.0))
    cmax = max(cs) if cs else kk
    shortlists = {w: topk(q, core_corpus, dim=w, k=cmax).indices for w in ws}
    for w in ws:
        for c in cs:
            add((w, full), (c,), _recall(shortlists[w][:, :c], truth))
    if three_stage:

        def feasible3(dims: tuple[int, ...], cands: tuple[int, ...]) -> bool:
            row = tried.get((dims, cands))
            if row is None:
                found = funnel(q, core_corpus, k=kk, dims=dims, candidates=cands)
                row = add(dims, cands, _recall(found.indices, truth))
            return bool(row["feasible"])

        best = min(rank(r["dims"], r["candidates"]) for r in table if r["feasible"])
        parents = [r for r in table if len(r["dims"]) == 2 and r["feasible"]]
        for first in sorted(parents, key=lambda r: rank(r["dims"], r["candidates"])):
            (w1, _), (c1,) = first["dims"], first["candidates"]
            for w2 in (w for w in ws if w > w1):
                dims = (w1, w2, full)
                options = [c for c in cs if c < c1 and rank(dims, (c1, c)) < best]
                # Recall can only grow with the second shortlist: find the smallest feasible
                # one by bisection, starting from the largest worth trying.
                if not options or not feasible3(dims, (c1, options[-1])):
                    continue
                lo, hi = 0, len(options) - 1
                while lo < hi:
                    mid = (lo + hi) // 2
                    if feasible3(dims, (c1, options[mid])):
                        hi = mid
                    else:
                        lo = mid + 1
                best = min(best, rank(dims, (c1, options[lo])))

    feasible = sorted(
        (r for r in table if r["feasible"]),
        key=lambda r: (rank(r["dims"], r["candidates"]), r["cost"], len(r["dims"])),
    )
    timed = feasible[:time_top] if by == "time" else feasible[:1]
    if by == "time" and all(len(r["dims"]) > 1 for r in timed):
        timed.append(next(r for r in table if len(r["dims"]) == 1))
    calls = [
        lambda r=r: funnel(q, core_corpus, k=kk, dims=r["dims"], candidates=r["candidates"])
        for r in timed
    ]
    for r, ms in zip(timed, _median_ms(calls, repeats)):
        r["time_ms"] = ms
    chosen = min(timed, key=lambda r: r["time_ms"]) if by == "time" else feasible[0]
    return FunnelPlan(
        dims=chosen["dims"],
        candidates=chosen["candidates"],
        k=kk,
        recall=chosen["recall"],
        cost=chosen["cost"],
        exact_cost=exact_cost,
        time_ms=chosen["time_ms"],
        exact=len(chosen["dims"]) == 1,
        recall_se=chosen["recall_se"],
        table=table,
        corpus=corpus,
    )
