"""Ranking and correlation metrics as small pure functions (numpy only).

Every recall@k in the package (funnel tuning, evaluation, the demo, the benchmarks) is
:func:`recall_per_query` against an exact search's top-k; nDCG and MRR take one query's ranked
rows and its ``{row: gain}`` labels. They are tested against float64 formulas written
independently in ``tests/test_metrics.py``.

>>> import numpy as np
>>> recall_per_query(np.array([[1, 2, 3]]), np.array([[3, 4, 1]])).tolist()
[0.6666666666666666]
>>> round(ndcg_at([5, 7], {7: 1.0}, depth=10), 4)
0.6309
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence

import numpy as np
import numpy.typing as npt

__all__ = [
    "correlations",
    "mean_and_se",
    "ndcg_at",
    "recall_at_k",
    "recall_per_query",
    "reciprocal_rank_at",
]


def recall_per_query(found: npt.ArrayLike, truth: npt.ArrayLike) -> npt.NDArray[np.float64]:
    """For each query ``i``: the share of the rows ``truth[i]`` that appear in ``found[i]``.

    Args:
        found: ``(Q, a)`` row indices returned by the search under test (any order).
        truth: ``(Q, b)`` row indices of the exact top-k (each row distinct).

    Returns:
        ``(Q,)`` float64 values in ``[0, 1]``.
    """
    f = np.asarray(found)
    t = np.asarray(truth)
    f = f.reshape(len(t), -1)
    t = t.reshape(len(t), -1)
    hits = [len(set(fi.tolist()) & set(ti.tolist())) / max(len(ti), 1) for fi, ti in zip(f, t, strict=True)]
    return np.asarray(hits, dtype=np.float64)


def mean_and_se(values: npt.ArrayLike) -> tuple[float, float]:
    """The mean of ``values`` and its standard error (sample standard deviation over
    ``sqrt(n)``; 0 for fewer than two values)."""
    v = np.asarray(values, dtype=np.float64)
    se = float(v.std(ddof=1) / np.sqrt(len(v))) if len(v) > 1 else 0.0
    return float(v.mean()), se


def recall_at_k(found: npt.ArrayLike, truth: npt.ArrayLike) -> float:
    """The mean of :func:`recall_per_query` over the queries."""
    return float(recall_per_query(found, truth).mean())


def ndcg_at(ranked: Sequence[int], gains: Mapping[int, float], *, depth: int = 10) -> float:
    """nDCG of one query's ranked rows with linear gains: ``sum(gain_i / log2(i + 1))`` over
    the first ``depth`` ranks (from 1), divided by the same sum for the ideal order.

    Raises:
        ValueError: No label has a positive gain (nDCG is undefined).
    """
    dcg = sum(gains.get(row, 0.0) / math.log2(r + 2) for r, row in enumerate(ranked[:depth]))
    ideal = sorted(gains.values(), reverse=True)[:depth]
    idcg = sum(g / math.log2(r + 2) for r, g in enumerate(ideal))
    if idcg <= 0:
        raise ValueError("nDCG needs at least one label with a positive gain")
    return dcg / idcg


def reciprocal_rank_at(ranked: Sequence[int], gains: Mapping[int, float], *, depth: int = 10) -> float:
    """``1 / rank`` of the first row with a positive gain within the first ``depth`` ranks
    (ranks from 1), 0 if there is none."""
    for r, row in enumerate(ranked[:depth]):
        if gains.get(row, 0.0) > 0:
            return 1.0 / (r + 1)
    return 0.0


def correlations(gold: npt.ArrayLike, predicted: npt.ArrayLike) -> tuple[float, float]:
    """Spearman and Pearson correlation of ``predicted`` with ``gold`` (needs scipy).

    Constant predictions carry no ranking information: both are then 0.

    Raises:
        ImportError: scipy is missing.
    """
    from matryo_fast._extras import require

    stats = require("scipy.stats", feature="STS evaluation")
    g = np.asarray(gold, dtype=np.float64)
    p = np.asarray(predicted, dtype=np.float64)
    if np.ptp(p) == 0:
        return 0.0, 0.0
    return float(stats.spearmanr(g, p).statistic), float(stats.pearsonr(g, p).statistic)
