"""Funnel search: shortlist at a small prefix, re-rank the survivors at wider ones.

:func:`funnel` runs a cascade in one call over one full-width matrix: stage 1 is :func:`topk`
at ``dims[0]`` keeping ``candidates[0]`` rows; each later stage re-scores only the surviving
rows at the next width (a gather through the same fused dot + norm kernel, multi-threaded,
GIL released) and keeps the next count; the last stage returns the top ``k``. Every stage is
the prefix cosine of :func:`topk`, with the same input contract and errors.

:class:`FunnelPlan` is a plan record: what :func:`matryo_fast.tune_funnel` (in
:mod:`matryo_fast.tuning`) chooses, saved and loaded with :mod:`matryo_fast.planfile`, run with
:meth:`FunnelPlan.search`.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from matryo_fast import _core
from matryo_fast._validate import check_int, check_precision, coerce_query, int_tuple
from matryo_fast.corpus import CorpusLike, ShardedSearch, coerce_corpus
from matryo_fast.search import TopK

if TYPE_CHECKING:
    from matryo_fast.tuning import PlanRow

__all__ = ["FunnelPlan", "finest_tier", "finest_tiers", "funnel", "stage_precisions"]


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
