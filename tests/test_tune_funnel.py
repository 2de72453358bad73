"""`matryo_fast.tune_funnel`: the plan it picks, the table it reports, and its bad inputs.

Recall figures are re-measured here with `mf.funnel` and exact `mf.topk`, from scratch, and
must equal the reported ones exactly (recall is a mean of hits / k over the sample queries, so
one query off by one row changes it by 1 / (S * k)). Timing values are never asserted.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
import pytest

import matryo_fast as mf
from matryo_fast.tuning import GATHER_WEIGHT

F32 = npt.NDArray[np.float32]


def matryoshka_like(n: int, d: int, clusters: int, samples: int, seed: int) -> tuple[F32, F32]:
    """Clustered rows whose variance decays along the dims (early dims carry most signal), and
    sample queries that are noisy copies of corpus rows."""
    rng = np.random.default_rng(seed)
    decay = np.exp(-np.arange(d) / (d / 4))
    centres = rng.standard_normal((clusters, d)) * decay
    x = centres[rng.integers(0, clusters, n)] + 0.5 * rng.standard_normal((n, d)) * decay
    q = x[rng.choice(n, samples, replace=False)] + 0.3 * rng.standard_normal((samples, d)) * decay
    return x.astype(np.float32), q.astype(np.float32)


def recall(found: npt.NDArray[np.int64], truth: npt.NDArray[np.int64]) -> float:
    """Mean over queries of |found & truth| / |truth|, written independently of the library."""
    return float(
        np.mean(
            [
                len(set(f.tolist()) & set(t.tolist())) / len(t)
                for f, t in zip(found, truth, strict=True)
            ]
        )
    )


CONFIGS = {
    # (rows, width, clusters, sample queries, seed), k, target
    "d128": ((6000, 128, 40, 40, 0), 10, 0.97),
    "d96": ((4000, 96, 25, 30, 1), 5, 0.99),
}


@pytest.fixture(scope="module", params=sorted(CONFIGS))
def tuned(request: pytest.FixtureRequest) -> tuple[F32, F32, int, float, mf.FunnelPlan]:
    shape, k, target = CONFIGS[request.param]
    x, q = matryoshka_like(*shape)
    return x, q, k, target, mf.tune_funnel(x, q, k=k, target_recall=target)


def test_plan_reaches_target_and_remeasures_the_same(tuned: Any) -> None:
    x, q, k, target, plan = tuned
    assert isinstance(plan, mf.FunnelPlan)
    assert plan.k == k and plan.recall >= target
    truth = mf.topk(q, x, k=k).indices
    assert recall(plan.search(q).indices, truth) == pytest.approx(plan.recall, abs=1e-12)
    assert recall(mf.funnel(q, x, **plan.params).indices, truth) == pytest.approx(
        plan.recall, abs=1e-12
    )


def test_plan_is_cheaper_than_exact_and_usable(tuned: Any) -> None:
    x, q, k, _, plan = tuned
    n, d = x.shape
    assert plan.exact_cost == n * d
    assert plan.cost == n * plan.dims[0] + sum(
        c * w for c, w in zip(plan.candidates, plan.dims[1:], strict=True)
    )
    assert plan.cost <= plan.exact_cost
    # the data is Matryoshka-like: a funnel clearly beats exact search
    assert not plan.exact and len(plan.dims) >= 2 and plan.speedup > 2
    assert plan.speedup == pytest.approx(plan.exact_cost / plan.cost)
    assert plan.dims[-1] == d and len(plan.candidates) == len(plan.dims) - 1
    assert plan.params == {"k": k, "dims": plan.dims, "candidates": plan.candidates}
    a, b = plan.search(q), mf.funnel(q, x, **plan.params)
    np.testing.assert_array_equal(a.indices, b.indices)
    np.testing.assert_array_equal(a.scores, b.scores)
    c = plan.search(q[0], x[:500])  # another corpus of the same width
    np.testing.assert_array_equal(c.indices, mf.funnel(q[0], x[:500], **plan.params).indices)


def test_table_is_consistent_and_plan_is_its_cheapest_feasible_row(tuned: Any) -> None:
    x, q, k, target, plan = tuned
    n, d = x.shape
    table = plan.table
    keys = [(r["dims"], r["candidates"]) for r in table]
    assert len(set(keys)) == len(keys), "a plan appears twice"
    assert ((d,), ()) in keys, "exact search is missing from the table"
    assert (plan.dims, plan.candidates) in keys, "the chosen plan is missing from the table"
    truth = mf.topk(q, x, k=k).indices
    for row in table:
        dims, cands = row["dims"], row["candidates"]
        assert dims[-1] == d and list(dims) == sorted(set(dims))
        assert row["cost"] == n * dims[0] + sum(c * w for c, w in zip(cands, dims[1:], strict=True))
        gathered = sum(c * w for c, w in zip(cands, dims[1:], strict=True))
        assert row["work"] == n * dims[0] + GATHER_WEIGHT * gathered
        # every reported recall is what the plan actually achieves
        got = recall(mf.funnel(q, x, k=k, dims=dims, candidates=cands).indices, truth)
        assert got == pytest.approx(row["recall"], abs=1e-12), row
        assert 0.0 <= row["recall_se"] <= 0.5
        assert row["feasible"] == (row["recall"] - 2.0 * row["recall_se"] >= target), row
    exact_row = table[keys.index(((d,), ()))]
    assert exact_row["recall"] == 1.0 and exact_row["cost"] == n * d
    cheapest = min(r["cost"] for r in table if r["feasible"])
    assert plan.cost == cheapest
    assert any(len(r["dims"]) == 3 for r in table), "no three-stage plan was tried"
    md = plan.to_markdown()
    assert md.count("\n") == len(table) + 1 and str(plan.dims) in md


def test_corpus_path_and_corpus_object_give_the_same_plan(tmp_path: Path) -> None:
    x, q = matryoshka_like(3000, 64, 20, 20, 5)
    path = tmp_path / "emb.npy"
    np.save(path, x)
    expected = mf.tune_funnel(x, q, k=5, target_recall=0.95)
    for corpus in (path, str(path), mf.open_corpus(path)):
        plan = mf.tune_funnel(corpus, q, k=5, target_recall=0.95)
        assert (plan.dims, plan.candidates, plan.recall) == (
            expected.dims,
            expected.candidates,
            expected.recall,
        ), corpus
        np.testing.assert_array_equal(plan.search(q).indices, expected.search(q).indices)


def test_uninformative_prefixes_fall_back_to_exact_search(backend: str) -> None:
    """The first half of every row is the same constant, so every prefix shortlist up to D/2 is
    an arbitrary tie (the lowest rows); only exact search reaches recall 1.0."""
    rng = np.random.default_rng(7)
    n, d = 3000, 64
    x = rng.standard_normal((n, d)).astype(np.float32)
    x[:, : d // 2] = 1.0
    q = rng.standard_normal((20, d)).astype(np.float32)
    plan = mf.tune_funnel(x, q, k=10, target_recall=1.0)
    assert plan.exact is True
    assert plan.dims == (d,) and plan.candidates == ()
    assert plan.recall == 1.0 and plan.cost == plan.exact_cost == n * d
    for row in plan.table:
        if row["feasible"] and len(row["dims"]) > 1:
            assert row["cost"] >= plan.exact_cost, row  # only shortlists of every row succeed
    res, exact = plan.search(q), mf.topk(q, x, dim=d, k=10)
    np.testing.assert_array_equal(res.indices, exact.indices)
    np.testing.assert_array_equal(res.scores, exact.scores)


def test_by_time_sets_time_ms() -> None:
    x, q = matryoshka_like(3000, 64, 20, 16, 3)
    plan = mf.tune_funnel(x, q, k=5, target_recall=0.95, by="time", time_top=2, repeats=1)
    assert plan.time_ms is not None and plan.time_ms >= 0.0
    assert plan.recall >= 0.95
    timed = [r for r in plan.table if r["time_ms"] is not None]
    assert all(r["feasible"] for r in timed)
    # The timed plans: the two feasible ones of least estimated work, and the least-work
    # feasible plan of every other first stage (exact search is one) within 4x of the least.
    feasible = sorted(
        (r for r in plan.table if r["feasible"]), key=lambda r: (r["work"], r["cost"], len(r["dims"]))
    )
    want = feasible[:2]
    for r in feasible:
        if r["dims"][0] not in {w["dims"][0] for w in want} and r["work"] <= 4 * feasible[0]["work"]:
            want.append(r)
    assert sorted(id(r) for r in timed) == sorted(id(r) for r in want)
    assert len(want) > 2  # the rule timed more than the best two here
    assert (plan.dims, plan.candidates) in [(r["dims"], r["candidates"]) for r in timed]


@pytest.mark.parametrize("time_batch", [1, 7, None])
def test_by_time_times_in_calls_of_time_batch(
    time_batch: int | None, monkeypatch: pytest.MonkeyPatch
) -> None:
    import matryo_fast.tuning as tuning

    x, q = matryoshka_like(3000, 64, 20, 16, 3)
    sizes: list[int] = []
    real = tuning.funnel

    def spy(query: Any, *args: Any, **kwargs: Any) -> Any:
        sizes.append(len(np.atleast_2d(query)))
        return real(query, *args, **kwargs)

    monkeypatch.setattr(tuning, "funnel", spy)
    plan = mf.tune_funnel(
        x, q, k=5, target_recall=0.95, by="time", time_top=1, repeats=1, time_batch=time_batch
    )
    assert plan.time_ms is not None and plan.recall >= 0.95
    # Measuring recall runs each plan on the whole sample; timing runs it in calls of time_batch.
    s = len(q)
    calls = {s} if time_batch is None else {time_batch, s % time_batch or time_batch}
    assert calls <= set(sizes) <= calls | {s}


@pytest.mark.parametrize(
    ("bad", "err"), [(0, ValueError), (-1, ValueError), (1.5, TypeError), ("1", TypeError)]
)
def test_bad_time_batch(bad: Any, err: type[Exception]) -> None:
    with pytest.raises(err, match=r"time_batch"):
        mf.tune_funnel(X, QS, k=5, by="time", time_batch=bad)


def test_explicit_grid_and_two_stage_only() -> None:
    x, q = matryoshka_like(3000, 64, 20, 16, 4)
    plan = mf.tune_funnel(
        x, q, k=5, target_recall=0.9, widths=[8, 24], counts=[5, 40, 200], three_stage=False
    )
    keys = {(r["dims"], r["candidates"]) for r in plan.table}
    expected = {((64,), ())} | {((w, 64), (c,)) for w in (8, 24) for c in (5, 40, 200)}
    assert keys == expected
    assert plan.cost == min(r["cost"] for r in plan.table if r["feasible"])


# ------------------------------------------------------------------------------ bad inputs

X, QS = matryoshka_like(500, 32, 5, 8, 9)


@pytest.mark.parametrize("target", [0, 0.0, -0.5, 1.5, 1.0000001, float("nan"), "x", None])
def test_bad_target_recall(target: Any) -> None:
    with pytest.raises(ValueError, match=r"target_recall"):
        mf.tune_funnel(X, QS, k=5, target_recall=target)


@pytest.mark.parametrize("by", ["speed", "", "COST", None])
def test_bad_by(by: Any) -> None:
    with pytest.raises(ValueError, match=r"\bby\b"):
        mf.tune_funnel(X, QS, k=5, by=by)


@pytest.mark.parametrize("margin", [-0.5, float("nan"), float("inf"), "2"])
def test_bad_margin(margin: Any) -> None:
    with pytest.raises(ValueError, match=r"margin_se"):
        mf.tune_funnel(X, QS, k=5, margin_se=margin)


def test_margin_makes_plans_hold_on_other_queries() -> None:
    """The standard error is over the sample queries; a margin only ever removes plans, and
    with none feasibility is the bare mean."""
    x, q = matryoshka_like(4000, 64, 25, 60, 11)
    bare = mf.tune_funnel(x, q, k=10, target_recall=0.95, margin_se=0.0)
    safe = mf.tune_funnel(x, q, k=10, target_recall=0.95, margin_se=3.0)
    truth = mf.topk(q, x, k=10).indices
    for plan in (bare, safe):
        per_query = [
            len(np.intersect1d(f, t)) / 10 for f, t in zip(plan.search(q).indices, truth, strict=True)
        ]
        assert plan.recall == pytest.approx(np.mean(per_query), abs=1e-12)
        assert plan.recall_se == pytest.approx(np.std(per_query, ddof=1) / np.sqrt(len(q)))
    assert all(r["feasible"] == (r["recall"] >= 0.95) for r in bare.table)
    feasible_bare = {(r["dims"], r["candidates"]) for r in bare.table if r["feasible"]}
    for r in safe.table:
        assert r["feasible"] == (r["recall"] - 3.0 * r["recall_se"] >= 0.95)
        if r["feasible"] and len(r["dims"]) == 2:
            assert (r["dims"], r["candidates"]) in feasible_bare
    assert safe.cost >= bare.cost


@pytest.mark.parametrize("widths", [[32], [8, 32], [40], [0], [-4, 8]])
def test_bad_widths(widths: list[int]) -> None:
    with pytest.raises(ValueError, match=r"widths"):
        mf.tune_funnel(X, QS, k=5, widths=widths)


@pytest.mark.parametrize("counts", [[4], [20, 3], [0], [-10]])
def test_bad_counts(counts: list[int]) -> None:
    with pytest.raises(ValueError, match=r"counts"):
        mf.tune_funnel(X, QS, k=5, counts=counts)


@pytest.mark.parametrize("make", ["zeros", "load", "path"])
def test_empty_corpus(tmp_path: Path, make: str) -> None:
    empty: Any = np.zeros((0, 32), dtype=np.float32)
    if make != "zeros":
        np.save(tmp_path / "e.npy", empty)
        empty = tmp_path / "e.npy" if make == "path" else np.load(tmp_path / "e.npy")
    with pytest.raises(ValueError, match=r"(?i)empty"):
        mf.tune_funnel(empty, QS, k=5)


def test_queries_narrower_than_corpus_and_bad_k() -> None:
    with pytest.raises(ValueError, match=r"(?i)columns"):
        mf.tune_funnel(X, QS[:, :16], k=5)
    with pytest.raises(ValueError, match=r"(?i)\bk\b"):
        mf.tune_funnel(X, QS, k=0)
    with pytest.raises(TypeError):
        mf.tune_funnel(X, QS, k=2.5)
    with pytest.raises(TypeError, match=r"astype"):
        mf.tune_funnel(X.astype(np.float64), QS, k=5)
