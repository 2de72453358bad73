"""matryo_fast.intervals and the retrieval side of matryo_fast.programme, against independent
computations: scipy.stats.spearmanr on explicit resamples, statistics.stdev, and a brute-force
float64 top-k."""

from __future__ import annotations

import statistics

import numpy as np
import pytest

stats = pytest.importorskip("scipy.stats")

from matryo_fast.intervals import aggregate_seeds, paired_bootstrap, seed_stats  # noqa: E402
from matryo_fast.programme import pair_cosines, partner_retrieval  # noqa: E402


def data(n: int, seed: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    gold = np.round(rng.random(n) * 5, 1)  # STS-like, with ties
    return gold, gold + 0.5 * rng.standard_normal(n), gold + 2.0 * rng.standard_normal(n)


def loop_bootstrap(gold, runs_a, runs_b, n_resamples, seed, confidence=0.95):
    """The bootstrap written out: the documented resampling draw, scipy's Spearman per model."""
    n = len(gold)
    idx = np.random.default_rng(seed).integers(0, n, size=(n_resamples, n))
    diffs = []
    for row in idx:
        sa = np.mean([stats.spearmanr(gold[row], a[row]).statistic for a in runs_a])
        sb = np.mean([stats.spearmanr(gold[row], b[row]).statistic for b in runs_b])
        diffs.append(100 * (sa - sb))
    point = 100 * (
        np.mean([stats.spearmanr(gold, a).statistic for a in runs_a])
        - np.mean([stats.spearmanr(gold, b).statistic for b in runs_b])
    )
    tail = 100 * (1 - confidence) / 2
    return point, *np.percentile(diffs, [tail, 100 - tail])


def test_paired_bootstrap_matches_scipy_on_explicit_resamples() -> None:
    gold, a, b = data(40, 1)
    ci = paired_bootstrap(gold, a, b, n_resamples=60, seed=7, chunk=25)
    point, low, high = loop_bootstrap(gold, [a], [b], 60, 7)
    assert ci.diff == pytest.approx(point, abs=1e-9)
    assert (ci.low, ci.high) == pytest.approx((low, high), abs=1e-9)
    assert ci.n_resamples == 60 and ci.seed == 7 and ci.confidence == 0.95


def test_paired_bootstrap_averages_seeds_inside_each_resample() -> None:
    gold, a, b = data(30, 2)
    rng = np.random.default_rng(3)
    runs_a = [a, a + 0.3 * rng.standard_normal(30)]
    runs_b = [b, b + 0.3 * rng.standard_normal(30), b[::-1].copy()]
    ci = paired_bootstrap(gold, np.stack(runs_a), np.stack(runs_b), n_resamples=40, seed=5, confidence=0.9)
    point, low, high = loop_bootstrap(gold, runs_a, runs_b, 40, 5, confidence=0.9)
    assert ci.diff == pytest.approx(point, abs=1e-9)
    assert (ci.low, ci.high) == pytest.approx((low, high), abs=1e-9)


def test_interval_excludes_zero_for_a_clearly_better_model() -> None:
    gold, good, noisy = data(400, 4)
    ci = paired_bootstrap(gold, good, noisy, n_resamples=500, seed=0)
    assert ci.excludes_zero and ci.low > 0
    assert ci.low < ci.diff < ci.high


def test_interval_includes_zero_for_equally_good_models() -> None:
    rng = np.random.default_rng(11)
    gold = rng.random(300)
    noise = rng.standard_normal((2, 300))
    ci = paired_bootstrap(gold, gold + noise[0], gold + noise[1], n_resamples=500, seed=0)
    assert not ci.excludes_zero and ci.low < 0 < ci.high
    # the same model against itself: every resampled difference is 0
    same = paired_bootstrap(gold, gold + noise[0], gold + noise[0], n_resamples=50, seed=0)
    assert same.diff == same.low == same.high == 0.0


@pytest.mark.parametrize(
    ("gold", "a", "b", "message"),
    [
        ([1.0, 2.0], [1.0, 2.0], [2.0, 1.0], "at least 3 pairs"),
        ([1.0, 1.0, 1.0], [1.0, 2.0, 3.0], [1.0, 2.0, 3.0], "all equal"),
        ([1.0, 2.0, 3.0], [1.0, 2.0], [1.0, 2.0, 3.0], "must be"),
        ([1.0, 2.0, 3.0], [1.0, np.nan, 3.0], [1.0, 2.0, 3.0], "NaN"),
    ],
)
def test_paired_bootstrap_rejects_bad_input(gold: list, a: list, b: list, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        paired_bootstrap(gold, a, b, n_resamples=10)


def test_paired_bootstrap_rejects_bad_options() -> None:
    gold, a, b = data(10, 0)
    with pytest.raises(ValueError, match="confidence"):
        paired_bootstrap(gold, a, b, confidence=1.0)
    with pytest.raises(ValueError, match="n_resamples"):
        paired_bootstrap(gold, a, b, n_resamples=0)


def test_seed_stats_and_aggregate_match_statistics() -> None:
    values = [80.1, 81.7, 79.9]
    s = seed_stats(values)
    assert s.mean == pytest.approx(statistics.mean(values))
    assert s.sd == pytest.approx(statistics.stdev(values))
    assert (s.low, s.high, s.n) == (79.9, 81.7, 3)
    assert seed_stats([5.0]).sd == 0.0
    agg = aggregate_seeds([{64: 1.0, 32: 2.0}, {64: 3.0, 32: 2.0}])
    assert list(agg) == [64, 32]
    assert agg[64].mean == 2.0 and agg[64].sd == pytest.approx(statistics.stdev([1.0, 3.0]))
    assert agg[32].sd == 0.0
    with pytest.raises(ValueError, match="widths"):
        aggregate_seeds([{64: 1.0}, {32: 1.0}])
    with pytest.raises(ValueError, match="at least one"):
        seed_stats([])
    with pytest.raises(ValueError, match="not finite"):
        seed_stats([1.0, float("inf")])


def brute_top(emb: np.ndarray, q_rows: np.ndarray, d: int, k: int) -> list[list[int]]:
    e = emb[:, :d].astype(np.float64)
    e /= np.linalg.norm(e, axis=1, keepdims=True)
    out = []
    for s in q_rows:
        sims = e @ e[s]
        order = sorted((i for i in range(len(e)) if i != s), key=lambda i: (-sims[i], i))
        out.append(order[:k])
    return out


def test_partner_retrieval_against_brute_force() -> None:
    rng = np.random.default_rng(8)
    emb = rng.standard_normal((60, 32)).astype(np.float32)
    rows1, rows2 = np.arange(0, 30), np.arange(30, 60)
    emb[30:] = emb[:30] + 0.8 * rng.standard_normal((30, 32)).astype(np.float32)
    gold = np.where(np.arange(30) % 3 == 0, 1.0, 4.5)
    got = partner_retrieval(emb, rows1, rows2, gold, [32, 8], k=5)
    q = rows1[gold >= 4]
    partners = rows2[gold >= 4]
    full = brute_top(emb, q, 32, 5)
    for d in (32, 8):
        top = brute_top(emb, q, d, 5)
        recall = np.mean([len(set(t) & set(f)) / 5 for t, f in zip(top, full)])
        hit = np.mean([p in t for p, t in zip(partners, top)])
        assert got["recall@5"][d] == pytest.approx(100 * recall)
        assert got["partner@5"][d] == pytest.approx(100 * hit)
    assert got["recall@5"][32] == 100.0
    with pytest.raises(ValueError, match="no pair"):
        partner_retrieval(emb, rows1, rows2, np.zeros(30), [32])


def test_pair_cosines_against_float64() -> None:
    rng = np.random.default_rng(9)
    emb = rng.standard_normal((10, 16)).astype(np.float32)
    cos = pair_cosines(emb, [0, 1, 2], [3, 4, 5], [16, 4])
    for d in (16, 4):
        a, b = emb[[0, 1, 2], :d].astype(np.float64), emb[[3, 4, 5], :d].astype(np.float64)
        want = (a * b).sum(1) / np.linalg.norm(a, axis=1) / np.linalg.norm(b, axis=1)
        np.testing.assert_allclose(cos[d], want, rtol=1e-6)


def test_summarise_three_seeds_against_statistics_and_the_written_out_bootstrap(tmp_path) -> None:
    import json

    from matryo_fast.programme import Run, summarise, write_report

    rng = np.random.default_rng(12)
    gold = np.round(rng.random(50) * 5, 1)
    seeds = [1, 2, 3]
    cosines, runs = {}, []
    for s in seeds:
        for kind, noise in (("standard", 1.0), ("matryoshka", 0.6)):
            cos = {d: gold + noise * (64 / d) ** 0.3 * rng.standard_normal(50) for d in (64, 32)}
            cosines[(s, kind)] = cos
            sp = {d: 100 * stats.spearmanr(gold, c).statistic for d, c in cos.items()}
            ret = {"recall@10": {64: 100.0, 32: 80.0 + s}, "partner@10": {64: 50.0 + s, 32: 40.0}}
            runs.append(Run("r", s, kind, sp, ret, 60.0 * s, 1.0, 2, f"r/seed{s}/{kind}"))
    out = summarise(runs, gold, cosines, seeds, 100)
    for kind in ("standard", "matryoshka"):
        per_seed = [r.spearman[32] for r in runs if r.kind == kind]
        got = out[kind]["spearman"][32]
        assert got["mean"] == pytest.approx(statistics.mean(per_seed))
        assert got["sd"] == pytest.approx(statistics.stdev(per_seed))
        assert got["n"] == 3
        assert out["share"][kind][32] == pytest.approx(100 * got["mean"] / out[kind]["spearman"][64]["mean"])
        assert out[kind]["retrieval"]["recall@10"][32]["mean"] == pytest.approx(82.0)
    for d in (64, 32):
        point, low, high = loop_bootstrap(
            gold,
            [cosines[(s, "matryoshka")][d] for s in seeds],
            [cosines[(s, "standard")][d] for s in seeds],
            100,
            0,
        )
        iv = out["difference"][d]
        assert (iv["diff"], iv["low"], iv["high"]) == pytest.approx((point, low, high), abs=1e-9)
    # the report renders from the JSON alone, with the targets and the baseline row
    state = {
        "split": "test",
        "eval_data": "stsb/test.tsv",
        "pairs": 50,
        "train_data": "t.tsv",
        "seeds": seeds,
        "machine": "m",
        "date": "d",
        "wall_time_s": 60.0,
        "command": "matryo x",
        "chosen": "r",
        "recipes": [{"name": "r", "described": "max_steps=2"}],
        "summary": {"r": out},
        "baseline": {
            "dataset": "stsb/test.tsv",
            "spearman": {"standard": {64: 81.0, 32: 78.0}, "matryoshka": {64: 81.5, 32: 79.0}},
        },
    }
    (tmp_path / "programme.json").write_text(json.dumps(state))
    md_path, png = write_report(tmp_path / "programme.json", tmp_path)
    md = md_path.read_text()
    assert "baseline (docs/reproduction.md)" in md and "78.00 / 79.00" in md
    assert "keeps >= 97%" in md and "Within 0.5 points" in md
    assert f"{out['difference'][32]['diff']:+.2f}" in md
    assert png.stat().st_size > 0 and "$" not in md
