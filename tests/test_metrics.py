"""The pure metrics of ``matryo_fast._metrics`` and the shared checks of ``matryo_fast._validate``
and ``matryo_fast._timing``, each against a float64 formula or count written here
independently (no training extra needed)."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from matryo_fast._metrics import (
    correlations,
    mean_and_se,
    ndcg_at,
    recall_at_k,
    recall_per_query,
    reciprocal_rank_at,
)
from matryo_fast._timing import interleaved_times, median_ms
from matryo_fast._validate import check_int, int_tuple, require_positive


def _recall_oracle(found: np.ndarray, truth: np.ndarray) -> np.ndarray:
    return np.array([np.isin(t, f).sum() / len(t) for f, t in zip(found, truth)], dtype=np.float64)


@given(st.integers(1, 12), st.integers(1, 8), st.integers(0, 2**31 - 1))
def test_recall_matches_membership_count(q: int, k: int, seed: int) -> None:
    rng = np.random.default_rng(seed)
    truth = np.stack([rng.choice(40, size=k, replace=False) for _ in range(q)])
    found = np.stack([rng.choice(40, size=k + 2, replace=False) for _ in range(q)])
    want = _recall_oracle(found, truth)
    np.testing.assert_allclose(recall_per_query(found, truth), want, rtol=0, atol=1e-15)
    assert recall_at_k(found, truth) == pytest.approx(float(want.mean()), abs=1e-15)


def test_recall_hand_computed() -> None:
    truth = np.array([[1, 2, 3, 4], [5, 6, 7, 8]])
    found = np.array([[4, 3, 9, 0], [5, 6, 7, 8]])
    assert recall_per_query(found, truth).tolist() == [0.5, 1.0]
    assert recall_at_k(found, truth) == 0.75
    # One query as 1-D rows.
    assert recall_at_k(np.array([1, 2]), np.array([[2, 3]])) == 0.5


def test_mean_and_se() -> None:
    v = [0.5, 1.0, 0.75, 0.25]
    mean, se = mean_and_se(v)
    m = sum(v) / 4
    var = sum((x - m) ** 2 for x in v) / 3
    assert mean == pytest.approx(m, abs=1e-15)
    assert se == pytest.approx(math.sqrt(var / 4), abs=1e-15)
    assert mean_and_se([0.3]) == (pytest.approx(0.3), 0.0)


def _dcg(gains: list[float]) -> float:
    return sum(g / math.log2(i + 1) for i, g in enumerate(gains, start=1))


def test_ndcg_and_mrr_hand_computed() -> None:
    labels = {1: 1.0, 3: 2.0}
    ranked = [0, 1, 2, 3]
    want = _dcg([0.0, 1.0, 0.0, 2.0]) / _dcg([2.0, 1.0])
    assert ndcg_at(ranked, labels, depth=10) == pytest.approx(want, abs=1e-15)
    assert reciprocal_rank_at(ranked, labels, depth=10) == 0.5
    # Only the first `depth` ranks count.
    assert ndcg_at(ranked, labels, depth=1) == 0.0
    assert reciprocal_rank_at(ranked, labels, depth=1) == 0.0
    assert ndcg_at([3, 1], labels) == pytest.approx(1.0, abs=1e-15)
    with pytest.raises(ValueError, match="positive gain"):
        ndcg_at(ranked, {2: 0.0})


@given(st.lists(st.floats(0, 3), min_size=1, max_size=15), st.integers(0, 2**31 - 1))
def test_ndcg_matches_dense_formula(gains: list[float], seed: int) -> None:
    rng = np.random.default_rng(seed)
    labels = {i: g for i, g in enumerate(gains)}
    ranked = rng.permutation(len(gains) + 5).tolist()
    dense = np.array([labels.get(r, 0.0) for r in ranked[:10]])
    disc = 1.0 / np.log2(np.arange(2, 2 + len(dense)))
    ideal = np.sort(np.array(gains))[::-1][:10]
    if not any(g > 0 for g in gains):
        with pytest.raises(ValueError):
            ndcg_at(ranked, labels)
        return
    ideal_disc = 1.0 / np.log2(np.arange(2, 2 + len(ideal)))
    idcg = float((ideal * ideal_disc).sum())
    assert ndcg_at(ranked, labels) == pytest.approx(float((dense * disc).sum()) / idcg, rel=1e-12)
    first = np.flatnonzero(dense > 0)
    assert reciprocal_rank_at(ranked, labels) == (1.0 / (first[0] + 1) if first.size else 0.0)


def test_correlations_against_formulas() -> None:
    pytest.importorskip("scipy")
    rng = np.random.default_rng(3)
    gold = rng.random(30)
    pred = gold + 0.3 * rng.standard_normal(30)
    sp, pe = correlations(gold, pred)
    g, p = gold - gold.mean(), pred - pred.mean()
    assert pe == pytest.approx(float((g * p).sum() / math.sqrt((g * g).sum() * (p * p).sum())), abs=1e-12)
    rg = np.argsort(np.argsort(gold)).astype(float)  # no ties in continuous random data
    rp = np.argsort(np.argsort(pred)).astype(float)
    rg, rp = rg - rg.mean(), rp - rp.mean()
    spearman = float((rg * rp).sum() / math.sqrt((rg * rg).sum() * (rp * rp).sum()))
    assert sp == pytest.approx(spearman, abs=1e-12)
    assert correlations(gold, np.ones(30)) == (0.0, 0.0)


def test_int_checks() -> None:
    assert check_int("k", np.int64(3)) == 3
    assert check_int("k", 2**70) == 2**62
    with pytest.raises(TypeError, match="k must be an int"):
        check_int("k", True)
    assert int_tuple("dims", [1, np.int32(2)]) == (1, 2)
    with pytest.raises(TypeError, match="dims must be a sequence"):
        int_tuple("dims", "12")
    require_positive("n", 1)
    require_positive("r", 0.5, kind=float)
    require_positive("z", 0, allow_zero=True)
    for bad, kind in ((0, int), (1.5, int), (True, int), (-0.1, float), ("1", float)):
        with pytest.raises(ValueError, match="must be a positive"):
            require_positive("x", bad, kind=kind)


def test_interleaved_times_spreads_runs_and_keeps_failures() -> None:
    calls: list[str] = []

    def boom() -> None:
        calls.append("boom")
        raise RuntimeError("no")

    turns: list[str] = []
    got = interleaved_times(
        {"a": lambda: calls.append("a"), "b": lambda: calls.append("b"), "boom": boom},
        {"a": 4, "b": 1, "boom": 3},
        2,
        before_turn=turns.append,
    )
    assert calls == ["a", "a", "b", "boom", "a", "a"]
    assert turns == ["a", "b", "boom", "a"]
    assert isinstance(got["boom"], RuntimeError)
    assert [len(got[n]) for n in ("a", "b")] == [4, 1]  # type: ignore[arg-type]
    assert all(t >= 0 for t in got["a"])  # type: ignore[union-attr]
    assert len(median_ms([lambda: None, lambda: None], 3)) == 2
