"""Funnel search: shortlist at a small prefix, re-rank the survivors at wider ones.

:func:`funnel` runs a cascade in one call over one full-width matrix: stage 1 is :func:`topk`
at ``dims[0]`` keeping ``candidates[0]`` rows; each later stage re-scores only the surviving
rows at the next width (a gather through the same fused dot + norm kernel, multi-threaded,
GIL released) and keeps the next count; the last stage returns the top ``k``. Every stage is
the prefix cosine of :func:`topk`, with the same input contract and errors.

:func:`tune_funnel` measures recall@k against exact full-width search on sample queries for a
grid of plans and returns the cheapest plan that reaches the target, as a :class:`FunnelPlan`
whose ``table`` lists every plan tried (:class:`PlanRow`).
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from matryo_fast import _core
from matryo_fast._metrics import mean_and_se, recall_per_query
from matryo_fast._timing import median_ms
from matryo_fast._validate import PRECISIONS, check_int, check_precision, coerce_query, int_tuple
from matryo_fast.corpus import CorpusLike, ShardedSearch, coerce_corpus, open_corpus
from matryo_fast.search import TopK, topk

__all__ = ["FunnelPlan", "PlanRow", "funnel", "tune_funnel"]


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
    k = check_int("k", k)
    dims_t = int_tuple("dims", dims)
    cands_t = int_tuple("candidates", candidates)
    c = coerce_corpus(corpus)
    precs = stage_precisions(c, precisions, len(dims_t))
    q, single = coerce_query(query, max(dims_t) if dims_t else None)
    if isinstance(c, ShardedSearch):
        if any(p != "float32" for p in precs):
            raise ValueError("quantized precisions need a prefix-blocked file, not a sharded corpus")
        scores, indices = c._funnel(q, list(dims_t), list(cands_t), k)
    else:
        scores, indices = _core.funnel(q, c, list(dims_t), list(cands_t), k, list(precs))
    if single:
        return TopK(scores[0], indices[0])
    return TopK(scores, indices)


def finest_tier(core_corpus: Any) -> str:
    """The finest precision the corpus holds (``"float32"`` for arrays and ``.npy`` files)."""
    return finest_tiers(core_corpus)[0]


def finest_tiers(core_corpus: Any) -> tuple[str, ...]:
    """The tiers the corpus holds, finest first."""
    return tuple(core_corpus.tiers) if isinstance(core_corpus, _core.Corpus) else ("float32",)


def stage_precisions(core_corpus: Any, precisions: Sequence[str] | None, stages: int) -> tuple[str, ...]:
    """The precision of each stage: as given (checked), or every stage the finest tier the
    corpus holds."""
    if precisions is None:
        return (finest_tier(core_corpus),) * stages
    if isinstance(precisions, str) or not isinstance(precisions, Sequence):
        raise TypeError(f"precisions must be a sequence of names, got {precisions!r}")
    out = tuple(check_precision(p) for p in precisions)
    if len(out) != stages:
        raise ValueError(f"precisions must name one precision per width: {stages} widths, {len(out)} given")
    return out


#: Bytes a row's prefix of ``d`` values takes in each tier.
ROW_BYTES = {"float32": lambda d: 4 * d, "int8": lambda d: d, "binary": lambda d: -(-d // 8)}
#: Finer tiers rank higher: a stage may follow another only if it is neither narrower nor coarser.
FINENESS = {p: i for i, p in enumerate(reversed(PRECISIONS))}


@dataclass
class PlanRow:
    """One plan tried by :func:`tune_funnel`.

    Attributes:
        dims: Widths of the stages.
        candidates: Rows kept after each stage but the last.
        recall: Mean recall@k against exact full-width search on the sample queries.
        recall_se: Its standard error over the queries.
        cost: Rows x dims read per query.
        work: Estimated time: values scanned by the first stage plus :data:`GATHER_WEIGHT`
            times the values gathered by later stages.
        feasible: Whether ``recall - margin_se * recall_se`` reaches the target.
        time_ms: Measured median time on the sample batch (``None`` if not timed).
        precisions: The precision of each stage.
        bytes_read: Bytes read per query: the first stage's tier of every row at its width,
            plus each later stage's tier of its candidates.

    Fields can also be read by name, ``row["recall"]``, as when the table held dicts.
    """

    dims: tuple[int, ...]
    candidates: tuple[int, ...]
    recall: float
    recall_se: float
    cost: int
    work: int
    feasible: bool
    time_ms: float | None = None
    precisions: tuple[str, ...] = ()
    bytes_read: int = 0

    def __getitem__(self, name: str) -> Any:
        return getattr(self, name)


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
        table: Every plan tried, as :class:`PlanRow` records.
        precisions: The precision of each stage (``plan.precisions``).
        bytes_read: Bytes the plan reads per query; ``exact_bytes`` the same for exact search
            at the finest tier.
        corpus: The corpus it was tuned on (or given to :meth:`load`), for :meth:`search`.
        signature: A loaded plan's record of the corpus it was tuned on (path, shape,
            fingerprint; see :mod:`matryo_fast.planfile`).
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
    table: list[PlanRow] = field(default_factory=list, repr=False, compare=False)
    corpus: Any = field(default=None, repr=False, compare=False)
    precisions: tuple[str, ...] = ()
    bytes_read: int = 0
    exact_bytes: int = 0
    signature: dict[str, Any] | None = field(default=None, repr=False, compare=False)

    @property
    def params(self) -> dict[str, Any]:
        """Keyword arguments for :func:`funnel`: ``mf.funnel(q, corpus, **plan.params)``."""
        params: dict[str, Any] = {"k": self.k, "dims": self.dims, "candidates": self.candidates}
        if any(p != "float32" for p in self.precisions):
            params["precisions"] = self.precisions
        return params

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

    def save(self, path: str | os.PathLike[str], corpus: CorpusLike | None = None) -> Path:
        """Writes the plan as JSON with the signature of the corpus it was tuned on (``corpus``,
        default the plan's own); see :mod:`matryo_fast.planfile`."""
        from matryo_fast.planfile import save_plan

        return save_plan(self, path, corpus)

    @staticmethod
    def load(path: str | os.PathLike[str], corpus: CorpusLike | None = None) -> FunnelPlan:
        """Reads a plan from :meth:`save`; with ``corpus``, refuses a plan tuned on another one.

        Raises:
            ValueError: Not a plan file, or a plan for another corpus (the message names both).
        """
        from matryo_fast.planfile import load_plan

        return load_plan(path, corpus)

    def to_markdown(self) -> str:
        """The table of every plan tried, as Markdown (best first)."""
        lines = [
            "| dims | candidates | precisions | recall@k | cost (rows x dims) | bytes read "
            "| x less than exact | est. work | time ms |",
            "|---|---|---|---|---|---|---|---|---|",
        ]
        for row in sorted(self.table, key=lambda r: (not r.feasible, r.bytes_read, r.cost)):
            t = "" if row.time_ms is None else f"{row.time_ms:.2f}"
            precs = "/".join(row.precisions)
            lines.append(
                f"| {row.dims} | {row.candidates} | {precs} | {row.recall:.4f} | {row.cost:,} | "
                f"{row.bytes_read:,} | {self.exact_cost / row.cost:.1f} | {row.work:,} | {t} |"
            )
        return "\n".join(lines)


#: Estimated cost of a value gathered by a later stage (a random row read) in values scanned by
#: the first stage (a sequential read): measured at about 30 on 1M x 768 (a 1000-row re-rank at
#: 768 dims took as long as a 64-dim scan of ~23M rows, at batch 1 and at batch 64).
GATHER_WEIGHT = 30


def _default_widths(full: int) -> list[int]:
    widths = {w for w in (16, 32, 64, 128, 256, 512, 1024, 2048) if w < full}
    if full // 2 >= 16:
        widths.add(full // 2)
    return sorted(widths)


def _default_counts(k: int, n: int) -> list[int]:
    counts = {min(n, int(k * m)) for m in (2, 3, 5, 10, 20, 50, 100, 200, 500, 1000)}
    return sorted(c for c in counts if c >= k)


class _Tuner:
    """The state of one :func:`tune_funnel` call: the sample, the truth, and the table of plans
    measured so far (each plan measured once)."""

    def __init__(
        self,
        q: npt.NDArray[np.float32],
        corpus: Any,
        k: int,
        target: float,
        margin_se: float,
        weight: int,
        precisions: tuple[str, ...] | None = None,
    ) -> None:
        self.q, self.corpus, self.k = q, corpus, k
        self.n, self.full = (int(v) for v in corpus.shape)
        self.target, self.margin_se, self.weight = target, margin_se, weight
        # The last stage: the finest tier present. Without `precisions`, every stage is float32
        # and plans are ranked by rows x dims as before; with them, by bytes read.
        self.final = finest_tier(corpus)
        self.by_bytes = precisions is not None
        self.stage_precisions = precisions if precisions is not None else (self.final,)
        self.truth = topk(q, corpus, dim=self.full, k=k, precision=self.final).indices
        self.table: list[PlanRow] = []
        self.tried: dict[tuple[tuple[int, ...], tuple[int, ...], tuple[str, ...]], PlanRow] = {}

    def values(
        self,
        dims: tuple[int, ...],
        cands: tuple[int, ...],
        precs: tuple[str, ...],
        weight: int | None = None,
        by_bytes: bool | None = None,
    ) -> int:
        """What the first stage scans plus ``weight`` (default: the ranking weight) times what
        later stages gather, in values (rows x dims) or in bytes (default: bytes when tuning
        precisions)."""
        w = self.weight if weight is None else weight
        in_bytes = self.by_bytes if by_bytes is None else by_bytes

        def unit(d: int, p: str) -> int:
            return ROW_BYTES[p](d) if in_bytes else d

        first = self.n * unit(dims[0], precs[0])
        return first + w * sum(c * unit(d, p) for c, d, p in zip(cands, dims[1:], precs[1:]))

    def rank(self, row: PlanRow) -> int:
        return self.values(row.dims, row.candidates, row.precisions)

    def add(
        self, dims: tuple[int, ...], cands: tuple[int, ...], precs: tuple[str, ...], found: npt.ArrayLike
    ) -> PlanRow:
        """Records the plan whose results on the sample were ``found``."""
        recall, se = mean_and_se(recall_per_query(found, self.truth))
        row = PlanRow(
            dims=dims,
            candidates=cands,
            recall=recall,
            recall_se=se,
            cost=self.values(dims, cands, precs, 1, by_bytes=False),
            work=self.values(dims, cands, precs, GATHER_WEIGHT),
            feasible=recall - self.margin_se * se >= self.target,
            precisions=precs,
            bytes_read=self.values(dims, cands, precs, 1, by_bytes=True),
        )
        self.table.append(row)
        self.tried[(dims, cands, precs)] = row
        return row

    def run(self, dims: tuple[int, ...], cands: tuple[int, ...], precs: tuple[str, ...]) -> TopK:
        return funnel(self.q, self.corpus, k=self.k, dims=dims, candidates=cands, precisions=precs)

    def feasible(self, dims: tuple[int, ...], cands: tuple[int, ...], precs: tuple[str, ...]) -> bool:
        """Whether the plan reaches the target (measured with :func:`funnel` on first use)."""
        row = self.tried.get((dims, cands, precs))
        if row is None:
            row = self.add(dims, cands, precs, self.run(dims, cands, precs).indices)
        return row.feasible

    def stages(self, ws: Sequence[int]) -> list[tuple[int, str]]:
        """The (width, precision) of every stage but the last to try: the widths at each
        precision, and the full width at each precision coarser than the last stage's."""
        out = [(w, p) for p in self.stage_precisions for w in ws]
        out += [(self.full, p) for p in self.stage_precisions if FINENESS[p] < FINENESS[self.final]]
        return out

    @staticmethod
    def follows(a: tuple[int, str], b: tuple[int, str]) -> bool:
        """Whether stage ``b`` may follow stage ``a``: neither narrower nor coarser, not equal."""
        return b[0] >= a[0] and FINENESS[b[1]] >= FINENESS[a[1]] and a != b

    def two_stage(self, ws: Sequence[int], cs: Sequence[int]) -> None:
        """Every ``(w, D)`` plan, from one ``topk`` per first stage: a truth row survives a
        shortlist of ``c`` iff it ranks within ``c`` at ``w``."""
        cmax = max(cs) if cs else self.k
        last = (self.full, self.final)
        for w, p in self.stages(ws):
            if not self.follows((w, p), last):
                continue
            shortlist = topk(self.q, self.corpus, dim=w, k=cmax, precision=p).indices
            for c in cs:
                self.add((w, self.full), (c,), (p, self.final), shortlist[:, :c])

    def three_stage(self, ws: Sequence[int], cs: Sequence[int]) -> None:
        """``(w1, w2, D)`` plans whose first stage alone reaches the target and that could be
        cheaper than the best plan so far; for each ``(w1, c1, w2)`` the smallest feasible second
        shortlist, by bisection (recall can only grow with it)."""
        best = min(self.rank(r) for r in self.table if r.feasible)
        parents = [r for r in self.table if len(r.dims) == 2 and r.feasible]
        last = (self.full, self.final)
        for first in sorted(parents, key=self.rank):
            (w1, _), (c1,), (p1, _) = first.dims, first.candidates, first.precisions
            for w2, p2 in self.stages(ws):
                if not (self.follows((w1, p1), (w2, p2)) and self.follows((w2, p2), last)):
                    continue
                dims, precs = (w1, w2, self.full), (p1, p2, self.final)
                options = [c for c in cs if c < c1 and self.values(dims, (c1, c), precs) < best]
                if not options or not self.feasible(dims, (c1, options[-1]), precs):
                    continue
                lo, hi = 0, len(options) - 1
                while lo < hi:
                    mid = (lo + hi) // 2
                    if self.feasible(dims, (c1, options[mid]), precs):
                        hi = mid
                    else:
                        lo = mid + 1
                best = min(best, self.values(dims, (c1, options[lo]), precs))


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
    precisions: Sequence[str] | None = None,
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

    Every row of ``plan.table`` (a :class:`PlanRow`) has ``cost`` (rows x dims read) and
    ``work``, an estimate of time: values scanned by the first stage plus
    :data:`GATHER_WEIGHT` times the values gathered by later stages (random row reads cost
    far more per value than a scan).

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
        precisions: Also search the precision of each stage but the last among these tiers
            of a prefix-blocked file (e.g. ``("binary", "int8", "float32")``), ranking plans by
            bytes read (``bytes_read``) instead of rows x dims; the last stage uses the finest
            tier present (float32 when the file has it; recall is then against exact float32
            search, else against exact search at that tier).

    Returns:
        The chosen :class:`FunnelPlan`, with every plan tried in ``plan.table``.

    Raises:
        ValueError: Bad ``target_recall``, ``by``, widths or counts, or a :func:`topk` error.
    """
    k = check_int("k", k)
    if not (isinstance(target_recall, (int, float)) and 0.0 < target_recall <= 1.0):
        raise ValueError(f"target_recall must be in (0, 1], got {target_recall!r}")
    if not (isinstance(margin_se, (int, float)) and 0.0 <= margin_se < float("inf")):
        raise ValueError(f"margin_se must be a finite number >= 0, got {margin_se!r}")
    if by not in ("cost", "time"):
        raise ValueError(f"by must be 'cost' or 'time', got {by!r}")
    q, _ = coerce_query(sample_queries)
    if isinstance(corpus, (str, os.PathLike)):
        corpus = open_corpus(corpus)  # map the file once for every plan tried
    core_corpus = coerce_corpus(corpus)
    n, full = (int(v) for v in core_corpus.shape)
    if n == 0:
        raise ValueError("cannot tune a funnel on an empty corpus")
    if q.shape[1] < full:
        raise ValueError(f"sample queries have {q.shape[1]} columns; the corpus has {full}")
    kk = min(k, n)
    ws = sorted(set(int_tuple("widths", widths))) if widths is not None else _default_widths(full)
    cs = sorted(set(int_tuple("counts", counts))) if counts is not None else _default_counts(kk, n)
    if any(w < 1 or w >= full for w in ws):
        raise ValueError(f"widths must be between 1 and {full - 1} (below the corpus width), got {ws}")
    if any(c < kk for c in cs):
        raise ValueError(f"counts must be at least k={kk}, got {cs}")

    precs = None if precisions is None else stage_precisions(core_corpus, precisions, len(precisions))
    if precs is not None and not precs:
        raise ValueError("precisions must name at least one tier")
    missing = [p for p in precs or () if p not in finest_tiers(core_corpus)]
    if missing:
        raise ValueError(
            f"the corpus holds no {missing[0]} tier (tiers present: {', '.join(finest_tiers(core_corpus))})"
        )
    # by="cost" ranks plans by rows x dims (or bytes); by="time" ranks what to try and time by
    # the estimated work, where a gathered value costs GATHER_WEIGHT scanned ones.
    weight = 1 if by == "cost" else GATHER_WEIGHT
    tuner = _Tuner(q, core_corpus, kk, target_recall, margin_se, weight, precs)
    tuner.add((full,), (), (tuner.final,), tuner.truth)
    tuner.two_stage(ws, cs)
    if three_stage:
        tuner.three_stage(ws, cs)

    table = tuner.table
    feasible = sorted((r for r in table if r.feasible), key=lambda r: (tuner.rank(r), r.cost, len(r.dims)))
    timed = feasible[:time_top] if by == "time" else feasible[:1]
    if by == "time" and all(len(r.dims) > 1 for r in timed):
        timed.append(next(r for r in table if len(r.dims) == 1))
    calls = [partial(tuner.run, r.dims, r.candidates, r.precisions) for r in timed]
    for r, ms in zip(timed, median_ms(calls, repeats)):
        r.time_ms = ms
    chosen = min(timed, key=lambda r: r.time_ms or 0.0) if by == "time" else feasible[0]
    return FunnelPlan(
        dims=chosen.dims,
        candidates=chosen.candidates,
        k=kk,
        recall=chosen.recall,
        cost=chosen.cost,
        exact_cost=n * full,
        time_ms=chosen.time_ms,
        exact=len(chosen.dims) == 1,
        recall_se=chosen.recall_se,
        table=table,
        corpus=corpus,
        precisions=chosen.precisions,
        bytes_read=chosen.bytes_read,
        exact_bytes=n * ROW_BYTES[tuner.final](full),
    )
