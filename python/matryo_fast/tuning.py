"""Funnel tuning: measure plans on sample queries, keep the cheapest that reaches a recall target.

:func:`tune_funnel` measures recall@k against exact full-width search on sample queries for a
grid of plans and returns the cheapest plan that reaches the target, as a
:class:`~matryo_fast.funnel.FunnelPlan` whose ``table`` lists every plan tried
(:class:`PlanRow`); the tuner's state is one :class:`_Tuner`.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass
from functools import partial
from typing import Any

import numpy as np
import numpy.typing as npt

from matryo_fast._metrics import mean_and_se, recall_per_query
from matryo_fast._timing import median_ms
from matryo_fast._validate import PRECISIONS, check_int, coerce_query, int_tuple
from matryo_fast.corpus import CorpusLike, coerce_corpus, open_corpus
from matryo_fast.funnel import FunnelPlan, finest_tier, finest_tiers, funnel, stage_precisions
from matryo_fast.search import TopK, topk

__all__ = ["FINENESS", "GATHER_WEIGHT", "ROW_BYTES", "PlanRow", "tune_funnel"]


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


#: Estimated cost of a value gathered by a later stage (a random row read) in values scanned by
#: the first stage (a sequential read): measured at about 30 on 1M x 768 (a 1000-row re-rank at
#: 768 dims took as long as a 64-dim scan of ~23M rows, at batch 1 and at batch 64).
GATHER_WEIGHT = 30


#: With ``by="time"``, a first stage other than the best few is timed only when its cheapest
#: plan's estimated work is within this factor of the best plan's (timing exact search over a
#: large corpus one query at a time would take longer than the rest of the tuning).
TIME_WORK_RATIO = 4


def _first_stage(row: PlanRow) -> tuple[int, str]:
    """The width and precision of a plan's first stage."""
    return row.dims[0], row.precisions[0]


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

    def run(
        self, dims: tuple[int, ...], cands: tuple[int, ...], precs: tuple[str, ...], q: Any = None
    ) -> TopK:
        q = self.q if q is None else q
        return funnel(q, self.corpus, k=self.k, dims=dims, candidates=cands, precisions=precs)

    def run_in_calls(
        self, dims: tuple[int, ...], cands: tuple[int, ...], precs: tuple[str, ...], batch: int
    ) -> None:
        """The plan over the sample in calls of ``batch`` queries (what :func:`tune_funnel`
        times with ``time_batch``)."""
        for i in range(0, len(self.q), batch):
            self.run(dims, cands, precs, self.q[i : i + batch])

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

    def three_stage(self, ws: Sequence[int], cs: Sequence[int], per_first_stage: bool = False) -> None:
        """``(w1, w2, D)`` plans whose first stage alone reaches the target and that could be
        cheaper than the best plan so far (``per_first_stage``: the best plan with the same
        first stage, so that every first stage gets its cheapest cascade, for timing); for each
        ``(w1, c1, w2)`` the smallest feasible second shortlist, by bisection (recall can only
        grow with it)."""

        def group(r: PlanRow) -> tuple[int, str] | None:
            return _first_stage(r) if per_first_stage else None

        best: dict[tuple[int, str] | None, int] = {}
        for r in self.table:
            if r.feasible:
                g, rank = group(r), self.rank(r)
                best[g] = min(best.get(g, rank), rank)
        parents = [r for r in self.table if len(r.dims) == 2 and r.feasible]
        last = (self.full, self.final)
        for first in sorted(parents, key=self.rank):
            (w1, _), (c1,), (p1, _) = first.dims, first.candidates, first.precisions
            g = group(first)
            for w2, p2 in self.stages(ws):
                if not (self.follows((w1, p1), (w2, p2)) and self.follows((w2, p2), last)):
                    continue
                dims, precs = (w1, w2, self.full), (p1, p2, self.final)
                options = [c for c in cs if c < c1 and self.values(dims, (c1, c), precs) < best[g]]
                if not options or not self.feasible(dims, (c1, options[-1]), precs):
                    continue
                lo, hi = 0, len(options) - 1
                while lo < hi:
                    mid = (lo + hi) // 2
                    if self.feasible(dims, (c1, options[mid]), precs):
                        hi = mid
                    else:
                        lo = mid + 1
                best[g] = min(best[g], self.values(dims, (c1, options[lo]), precs))


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
    time_batch: int | None = None,
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
            feasible plans of least work and the least-work feasible plan of every other first
            stage (width and precision; exact search is one) whose work is within
            :data:`TIME_WORK_RATIO` of the least, on the sample batch, and picks the fastest
            (what a latency-minded user wants; the timing is noisy on a busy machine).
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
        time_batch: Queries per call when timing (``by="time"``): ``None`` times the whole
            sample in one call (throughput of large batches); ``1`` times one query at a time
            (latency), ``64`` batches of 64. A plan fastest for one is not always fastest for
            the other: a 1-bit first stage wins at batch 1, where reading bytes bounds the
            scan, less so for large batches, where arithmetic does.

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
    if time_batch is not None:
        time_batch = check_int("time_batch", time_batch)
        if time_batch < 1:
            raise ValueError(f"time_batch must be at least 1, got {time_batch}")
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
        # Timing compares first stages with each other, so each gets its cheapest cascade.
        tuner.three_stage(ws, cs, per_first_stage=by == "time")

    table = tuner.table
    feasible = sorted((r for r in table if r.feasible), key=lambda r: (tuner.rank(r), r.cost, len(r.dims)))
    timed = feasible[:time_top] if by == "time" else feasible[:1]
    if by == "time":
        # The estimate ranks plans of one first stage well, but not stages of different tiers
        # against each other (an int8 scan reads 4x fewer bytes than float32 yet computes
        # more per byte): also time the cheapest feasible plan of every other first stage
        # (exact search among them) whose estimate is within TIME_WORK_RATIO of the best's.
        seen = {_first_stage(r) for r in timed}
        limit = TIME_WORK_RATIO * tuner.rank(feasible[0])
        for r in feasible:
            if _first_stage(r) not in seen and tuner.rank(r) <= limit:
                seen.add(_first_stage(r))
                timed.append(r)
    calls = [
        partial(tuner.run, r.dims, r.candidates, r.precisions)
        if time_batch is None
        else partial(tuner.run_in_calls, r.dims, r.candidates, r.precisions, time_batch)
        for r in timed
    ]
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
