"""Quantized tiers of the prefix-blocked file: codes equal to sentence-transformers', the file
layout as docs/quantized.md describes it (read here with plain numpy), scores and funnels
against the float64 oracle in ``_reference.py``, bad input, and files changed under an open
corpus."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
import pytest
from hypothesis import given
from hypothesis import strategies as st

import matryo_fast as mf
from matryo_fast import _reference as ref

ALL = ("float32", "int8", "binary")


def _data(rows: int = 2000, cols: int = 100, seed: int = 3) -> npt.NDArray[np.float32]:
    rng = np.random.default_rng(seed)
    x = (rng.standard_normal((rows, cols)) / np.sqrt(1 + np.arange(cols) / 16)).astype(np.float32)
    x[[5, 50]] = x[7]  # duplicate rows tie
    x[9] = 0.0
    return x


def read_tiers(path: Path) -> dict[str, Any]:
    """An independent reader of the documented version-2 layout (plain numpy)."""
    raw = np.fromfile(path, dtype=np.uint8)
    u32 = lambda o: int(raw[o : o + 4].view("<u4")[0])  # noqa: E731
    u64 = lambda o: int(raw[o : o + 8].view("<u8")[0])  # noqa: E731
    assert raw[:8].tobytes() == b"MATRYOFB" and u32(8) == 2
    nb, rows, cols, bits = u32(12), u64(16), u64(24), u32(32)
    widths = [u64(40 + 8 * b) for b in range(nb)]
    at = 40 + 8 * nb
    out: dict[str, Any] = {"rows": rows, "cols": cols, "widths": widths}
    if bits & 2:
        out["ranges"] = raw[at : at + 8 * cols].view("<f4").reshape(2, cols)
        at += 8 * cols

    def take(size: int) -> npt.NDArray[np.uint8]:
        nonlocal at
        at = -(-at // 64) * 64
        part = raw[at : at + size]
        at += size
        return part

    for name, bit in (("float32", 1), ("int8", 2), ("binary", 4)):
        if not bits & bit:
            continue
        per = {"float32": lambda w: 4 * w, "int8": lambda w: w, "binary": lambda w: -(-w // 8)}[name]
        blocks = [take(rows * per(w)).reshape(rows, per(w)) for w in widths]
        if name == "float32":
            out[name] = np.hstack([b.view("<f4") for b in blocks])
        elif name == "int8":
            out[name] = np.hstack([b.view(np.int8) for b in blocks])
        else:
            out[name] = np.hstack(blocks)
        if name != "binary":
            out[name + "_norms"] = np.stack([take(4 * rows).view("<f4") for _ in widths], axis=1)
    assert at == raw.size, "bytes after the last array"
    return out


def _quantize(x: Any, precision: str, **kw: Any) -> Any:
    quantization = pytest.importorskip("sentence_transformers.util.quantization")
    return quantization.quantize_embeddings(x, precision, **kw)


@pytest.mark.parametrize("how", [{"block": 16}, {}, {"split_at": (32,)}, {"split_at": ()}])
def test_codes_equal_sentence_transformers(tmp_path: Path, how: dict[str, Any]) -> None:
    x = _data(700, 100)
    x[3, 4] = 0.0  # a zero is not positive
    calib = x[::7] * 0.9
    given = np.vstack([x.min(0) - 0.1, x.max(0) + 0.2]).astype(np.float32)
    given[:, 6] = 0.5  # a zero-width range: step 1, as sentence-transformers has it
    for kw, st_kw in (
        ({}, {}),
        ({"int8_ranges": given}, {"ranges": given}),
        ({"calibration": calib}, {"calibration_embeddings": calib}),
    ):
        path = mf.save_prefix_blocked(tmp_path / "q.mfb", x, tiers=ALL, overwrite=True, **how, **kw)
        got = read_tiers(path)
        np.testing.assert_array_equal(got["binary"], _quantize(x, "ubinary"))
        np.testing.assert_array_equal(got["int8"], _quantize(x, "int8", **st_kw))
        np.testing.assert_array_equal(got["float32"], x)
        corpus = mf.open_corpus(path)
        assert corpus.tiers == ALL
        np.testing.assert_array_equal(corpus.int8_ranges, got["ranges"])
        # Cached prefix norms at each block's end: float64 norms rounded once.
        ends = np.cumsum(got["widths"])
        want = np.stack([np.linalg.norm(x[:, :e].astype(np.float64), axis=1) for e in ends], 1)
        np.testing.assert_array_equal(got["float32_norms"], want.astype(np.float32))
        v = ref.int8_values(got["int8"], got["ranges"])
        want = np.stack([np.linalg.norm(v[:, :e], axis=1) for e in ends], 1)
        np.testing.assert_allclose(got["int8_norms"], want, rtol=1e-6, atol=1e-6)


@pytest.mark.parametrize("tiers", [("binary",), ("int8",), ("int8", "binary"), ("float32", "binary")])
def test_tier_subsets(tmp_path: Path, tiers: tuple[str, ...]) -> None:
    x = _data(300, 40)
    path = mf.save_prefix_blocked(tmp_path / "s.mfb", x, tiers=tiers, block=16)
    corpus = mf.open_corpus(path)
    assert corpus.tiers == tuple(t for t in ALL if t in tiers)
    for t in ALL:
        if t in tiers:
            mf.topk(x[:2], corpus, dim=20, k=5, precision=t)
        else:
            with pytest.raises(ValueError, match=f"no {t} tier.*present: {', '.join(corpus.tiers)}"):
                mf.topk(x[:2], corpus, dim=20, k=5, precision=t)
    # No float32 tier: the funnel's stages default to the finest tier present.
    res = mf.funnel(x[:3], corpus, k=4, dims=(16, 40), candidates=(50,))
    best = corpus.tiers[0]
    exact = mf.topk(x[:3], corpus, k=4, precision=best)
    if best != "float32":
        assert res.indices.shape == (3, 4)
        assert np.isin(res.indices, np.arange(300)).all()
    else:
        assert res.indices.shape == exact.indices.shape


@st.composite
def quant_cases(draw: st.DrawFn) -> tuple[Any, ...]:
    n = draw(st.integers(1, 300))
    d = draw(st.sampled_from([1, 7, 8, 9, 16, 17, 33, 63, 64, 65, 100]))
    seed = draw(st.integers(0, 2**31))
    rng = np.random.default_rng(seed)
    kind = draw(st.sampled_from(["normal", "ints"]))
    x = rng.standard_normal((n, d)) if kind == "normal" else rng.integers(-2, 3, (n, d))
    x = x.astype(np.float32)
    for _ in range(draw(st.integers(0, 3))):
        x[rng.integers(n)] = x[rng.integers(n)]
    if draw(st.booleans()):
        x[rng.integers(n)] = 0.0
    nq = draw(st.sampled_from([None, 1, 3, 17]))
    q = rng.standard_normal((nq or 1, d)).astype(np.float32)
    if draw(st.booleans()):
        q[0] = x[rng.integers(n)]
    dim = draw(st.integers(1, d))
    k = draw(st.one_of(st.integers(1, 12), st.integers(1, n + 2)))
    block = draw(st.sampled_from([16, 32, 64]))
    return x, (q[0] if nq is None else q), dim, k, block


def _check_quantized(res: mf.TopK, scores: npt.NDArray[np.float64], k: int, tol: float) -> None:
    """The contract: the top-k set by the oracle's scores, sorted, equal scores by row."""
    s2, i2 = np.atleast_2d(res.scores), np.atleast_2d(res.indices)
    kk = min(k, scores.shape[1])
    assert s2.shape == (scores.shape[0], kk)
    for s, r, o in zip(s2, i2, scores):
        assert len(np.unique(r)) == kk
        np.testing.assert_allclose(s, o[r], atol=tol)
        kth = np.sort(o)[::-1][kk - 1]
        assert (o[r] >= kth - tol).all()
        assert (np.diff(s) <= 0).all()
        eq = s[1:] == s[:-1]
        assert (r[1:][eq] > r[:-1][eq]).all()


@given(case=quant_cases())
def test_binary_matches_oracle_exactly(case: tuple[Any, ...], backend: str, tmp_path: Path) -> None:
    x, q, dim, k, block = case
    path = mf.save_prefix_blocked(tmp_path / "b.mfb", x, tiers=("binary",), block=block, overwrite=True)
    res = mf.topk(q, mf.open_corpus(path), dim=dim, k=k, precision="binary")
    want_s, want_i = ref.quantized_topk_reference(q, x, dim, k, "binary")
    np.testing.assert_array_equal(res.indices, want_i)  # integer scores: ties are exact
    np.testing.assert_array_equal(res.scores, want_s.astype(np.float32))


def test_binary_scan_parallel_batches_and_ties(backend: str, tmp_path: Path) -> None:
    # Rows enough for the parallel scan (chunks taken in any order), more than 64 queries (the
    # scan's filter works on groups of 64), few distinct rows (ties everywhere).
    rng = np.random.default_rng(5)
    base = rng.standard_normal((40, 96)).astype(np.float32)
    x = base[rng.integers(0, 40, 30_000)]
    q = rng.standard_normal((70, 96)).astype(np.float32)
    path = mf.save_prefix_blocked(tmp_path / "p.mfb", x, tiers=("binary", "int8"), split_at=(64,))
    corpus = mf.open_corpus(path)
    for dim, k in ((64, 1), (96, 50), (70, 2500)):
        for batch in (q, q[:5], q[3]):
            res = mf.topk(batch, corpus, dim=dim, k=k, precision="binary")
            want_s, want_i = ref.quantized_topk_reference(batch, x, dim, k, "binary")
            np.testing.assert_array_equal(res.indices, want_i)
            np.testing.assert_array_equal(res.scores, want_s.astype(np.float32))
    # One query's long int8 shortlist is re-scored in parts across the pool: the oracle cascade.
    ranges = corpus.int8_ranges
    assert ranges is not None
    f = mf.funnel(q[0], corpus, k=10, dims=(64, 96), candidates=(3000,), precisions=("binary", "int8"))
    short = ref.quantized_topk_reference(q[0], x, 64, 3000, "binary")[1]
    s = ref.int8_cosine(q[0], x[short], 96, ranges)[0]
    np.testing.assert_array_equal(f.indices, short[np.lexsort((short, -s))][:10])
    np.testing.assert_allclose(f.scores, np.sort(s)[::-1][:10], atol=1e-5)


def test_binary_scan_seeded_cut_and_its_fallback(backend: str, tmp_path: Path) -> None:
    # A long shortlist (k * 16384 / n >= 16) starts each selection from a distance cut read off
    # an evenly spread sample of rows (256 blocks of 64: here rows r with r % 256 < 64). Random
    # rows: the cut holds. Then 60 exact copies of the query's signs, all inside the sample and
    # nothing else near: the sample's cut is distance 0, which only 60 < k rows meet, so the
    # scan must notice and run again without the cut.
    rng = np.random.default_rng(11)
    n, d = 65_536, 64
    x = rng.standard_normal((n, d)).astype(np.float32)
    q = rng.standard_normal((3, d)).astype(np.float32)
    sampled = np.flatnonzero(np.arange(n) % 256 < 64)
    copies = rng.choice(sampled, 60, replace=False)
    x_tight = x.copy()
    x_tight[copies] = q[0] * rng.uniform(0.5, 2.0, (60, 1)).astype(np.float32)
    for name, data, k in (("holds", x, 300), ("too tight", x_tight, 100)):
        path = mf.save_prefix_blocked(tmp_path / f"{name}.mfb", data, tiers=("float32", "binary"), block=64)
        corpus = mf.open_corpus(path)
        for batch in (q[0], q):
            res = mf.topk(batch, corpus, dim=d, k=k, precision="binary")
            want_s, want_i = ref.quantized_topk_reference(batch, data, d, k, "binary")
            np.testing.assert_array_equal(res.indices, want_i, err_msg=name)
            np.testing.assert_array_equal(res.scores, want_s.astype(np.float32), err_msg=name)
            # As a funnel's first stage (its shortlist handed on unsorted), then float32 at the
            # same width, against the oracle cascade: the rows kept come from the oracle's
            # shortlist and are its best 10 up to float32 rounding (the query's scaled copies
            # all score 1 within it), with their oracle scores.
            f = mf.funnel(batch, corpus, k=10, dims=(d, d), candidates=(k,), precisions=("binary", "float32"))
            for j, short in enumerate(np.atleast_2d(want_i)):
                qj = np.atleast_2d(batch)[j]
                kth = np.sort(ref.prefix_cosine(qj, data[short], d)[0])[-10]
                got = np.atleast_2d(f.indices)[j]
                assert set(got.tolist()) <= set(short.tolist()), name
                got_s = ref.prefix_cosine(qj, data[got], d)[0]
                assert np.all(got_s >= kth - 1e-6), name
                np.testing.assert_allclose(np.atleast_2d(f.scores)[j], got_s, atol=1e-6, err_msg=name)


@given(case=quant_cases())
def test_int8_matches_oracle(case: tuple[Any, ...], backend: str, tmp_path: Path) -> None:
    x, q, dim, k, block = case
    path = mf.save_prefix_blocked(tmp_path / "i.mfb", x, tiers=("int8",), block=block, overwrite=True)
    corpus = mf.open_corpus(path)
    res = mf.topk(q, corpus, dim=dim, k=k, precision="int8")
    scores = ref.int8_cosine(q, x, dim, corpus.int8_ranges)
    _check_quantized(res, scores, k, 1e-5)
    # A row's score does not depend on the batch.
    if np.asarray(q).ndim == 2 and len(q) > 1:
        one = mf.topk(q[1], corpus, dim=dim, k=k, precision="int8")
        np.testing.assert_array_equal(one.indices, res.indices[1])
        np.testing.assert_array_equal(one.scores, res.scores[1])


def test_funnel_across_precisions(tmp_path: Path) -> None:
    x = _data(3000, 100)
    path = mf.save_prefix_blocked(tmp_path / "f.mfb", x, tiers=ALL, split_at=(64,))
    corpus = mf.open_corpus(path)
    q = np.vstack([x[7], np.random.default_rng(1).standard_normal((4, 100))]).astype(np.float32)
    exact = mf.topk(q, x, k=10)
    # Keeping every row, any first stage gives the exact float32 answer bitwise.
    for p in ("binary", "int8"):
        f = mf.funnel(q, corpus, k=10, dims=(64, 100), candidates=(3000,), precisions=(p, "float32"))
        np.testing.assert_array_equal(f.indices, exact.indices)
        np.testing.assert_array_equal(f.scores, exact.scores)
    # binary -> float32 against the oracle cascade (binary scores are exact).
    f = mf.funnel(q, corpus, k=10, dims=(64, 100), candidates=(300,), precisions=("binary", "float32"))
    for j in range(len(q)):
        b = ref.binary_cosine(q[j], x, 64)[0]
        short = np.lexsort((np.arange(3000), -b))[:300]
        s = ref.prefix_cosine(q[j], x[short], 100)[0]
        keep = short[np.lexsort((short, -s))][:10]
        np.testing.assert_array_equal(np.sort(f.indices[j]), np.sort(keep))
    # Three stages at two widths and three precisions; the last stage's scores are float32's.
    f = mf.funnel(
        q, corpus, k=10, dims=(64, 100, 100), candidates=(1000, 100), precisions=("binary", "int8", "float32")
    )
    recall = np.mean([len(np.intersect1d(a, b)) / 10 for a, b in zip(f.indices, exact.indices)])
    assert recall >= 0.9
    oracle = ref.prefix_cosine(q, x, 100)[np.arange(5)[:, None], f.indices]
    np.testing.assert_allclose(f.scores, oracle, atol=1e-5)


def test_bad_input(tmp_path: Path) -> None:
    x = _data(200, 40)
    p = tmp_path / "x.mfb"
    with pytest.raises(ValueError, match="tiers must be"):
        mf.save_prefix_blocked(p, x, tiers=("float16",))
    with pytest.raises(ValueError, match=r"shape \(2, 40\)"):
        mf.save_prefix_blocked(p, x, tiers=("int8",), int8_ranges=np.zeros((2, 39)))
    for bad in (np.nan, np.inf):
        r = np.vstack([x.min(0), x.max(0)])
        r[1, 3] = bad
        with pytest.raises(ValueError, match="NaN or Inf"):
            mf.save_prefix_blocked(p, x, tiers=("int8",), int8_ranges=r)
    r = np.vstack([x.max(0), x.min(0)])
    with pytest.raises(ValueError, match="below its min"):
        mf.save_prefix_blocked(p, x, tiers=("int8",), int8_ranges=r)
    cal = x[:10].copy()
    cal[2, 2] = np.nan
    with pytest.raises(ValueError, match="calibration contains NaN"):
        mf.save_prefix_blocked(p, x, tiers=("int8",), calibration=cal)
    with pytest.raises(ValueError, match="go with the int8 tier"):
        mf.save_prefix_blocked(p, x, tiers=("binary",), calibration=x[:10])
    bad_x = x.copy()
    bad_x[150, 1] = np.inf
    with pytest.raises(ValueError, match="row 150"):
        mf.save_prefix_blocked(p, bad_x, tiers=("binary",), batch_rows=64)
    assert list(tmp_path.iterdir()) == []  # no half file, no temporary left
    path = mf.save_prefix_blocked(p, x, tiers=("float32", "binary"), block=16)
    corpus = mf.open_corpus(path)
    with pytest.raises(ValueError, match="unknown precision 'int4'"):
        mf.topk(x[0], corpus, k=3, precision="int4")
    with pytest.raises(ValueError, match="unknown precision"):
        mf.funnel(x[0], corpus, k=3, dims=(16, 40), candidates=(20,), precisions=("bits", "float32"))
    with pytest.raises(ValueError, match="one precision per width"):
        mf.funnel(x[0], corpus, k=3, dims=(16, 40), candidates=(20,), precisions=("binary",))
    with pytest.raises(ValueError, match="wider or finer"):
        mf.funnel(x[0], corpus, k=3, dims=(40, 16), candidates=(20,), precisions=("binary", "float32"))
    with pytest.raises(ValueError, match="wider or finer"):
        mf.funnel(x[0], corpus, k=3, dims=(16, 40), candidates=(20,), precisions=("float32", "binary"))
    for dim in (0, 41):
        with pytest.raises(ValueError, match=f"dim={dim} is out of range"):
            mf.topk(x[0], corpus, dim=dim, k=3, precision="binary")
    with pytest.raises(ValueError, match="needs a prefix-blocked file"):
        mf.topk(x[0], x, k=3, precision="binary")
    q = x[0].copy()
    q[1] = np.nan
    with pytest.raises(ValueError, match="NaN"):
        mf.topk(q, corpus, k=3, precision="binary")
    # A truncated or corrupt tier is refused when opened.
    raw = path.read_bytes()
    for i, broken in enumerate((raw[:-1], raw + b"\0", raw[:40] + b"\x07" + raw[41:])):
        bad_path = tmp_path / f"bad{i}.mfb"
        bad_path.write_bytes(broken)
        with pytest.raises(ValueError, match="truncated|unexpected bytes|not a valid"):
            mf.open_corpus(bad_path)


@pytest.mark.parametrize("layout", ["npy", "float32", "binary"])
def test_file_truncated_under_open_corpus_raises(tmp_path: Path, layout: str) -> None:
    x = _data(500, 64)
    if layout == "npy":
        path = tmp_path / "t.npy"
        np.save(path, x)
    else:
        path = mf.save_prefix_blocked(tmp_path / "t.mfb", x, tiers=(layout,), block=16)
    corpus = mf.open_corpus(path)
    precision = "binary" if layout == "binary" else "float32"
    mf.topk(x[0], corpus, k=3, precision=precision)
    os.truncate(path, os.path.getsize(path) // 2)
    with pytest.raises(OSError, match="changed size.*open it again"):
        mf.topk(x[0], corpus, k=3, precision=precision)
    with pytest.raises(OSError, match="changed size"):
        mf.funnel(x[0], corpus, k=3, dims=(16, 64), candidates=(10,))


def test_file_replaced_under_open_corpus_raises(tmp_path: Path) -> None:
    x = _data(100, 32)
    path = mf.save_prefix_blocked(tmp_path / "r.mfb", x, tiers=("binary",), block=16)
    corpus = mf.open_corpus(path)
    mf.save_prefix_blocked(path, x[::-1].copy(), tiers=("binary",), block=16, overwrite=True)
    with pytest.raises(OSError, match="replaced"):
        mf.topk(x[0], corpus, k=3, precision="binary")
    assert mf.topk(x[0], mf.open_corpus(path), k=1, precision="binary").indices[0] == 99


def test_tune_funnel_across_precisions(tmp_path: Path) -> None:
    rng = np.random.default_rng(5)
    centres = rng.standard_normal((50, 128))
    x = (centres[rng.integers(0, 50, 6000)] + 0.5 * rng.standard_normal((6000, 128))).astype(np.float32)
    q = (x[rng.integers(0, 6000, 60)] + 0.3 * rng.standard_normal((60, 128))).astype(np.float32)
    path = mf.save_prefix_blocked(tmp_path / "t.mfb", x, tiers=ALL, split_at=(64,))
    corpus = mf.open_corpus(path)
    plan = mf.tune_funnel(corpus, q, k=10, target_recall=0.95, precisions=("binary", "int8", "float32"))
    assert len(plan.precisions) == len(plan.dims) and plan.precisions[-1] == "float32"
    assert plan.recall - 2 * plan.recall_se >= 0.95
    assert plan.bytes_read <= plan.exact_bytes == 6000 * 128 * 4
    # The plan reads the fewest bytes among the feasible plans tried.
    assert plan.bytes_read == min(r.bytes_read for r in plan.table if r.feasible)
    assert {p for r in plan.table for p in r.precisions} == set(ALL)
    assert "bytes read" in plan.to_markdown()
    found = plan.search(q)
    truth = mf.topk(q, x, k=10).indices
    assert np.mean([len(np.intersect1d(a, b)) / 10 for a, b in zip(found.indices, truth)]) == plan.recall
    # Float32-only tuning is unchanged: every stage float32, ranked by rows x dims.
    plain = mf.tune_funnel(corpus, q, k=10, target_recall=0.95)
    assert set(plain.precisions) == {"float32"} and "precisions" not in plain.params
    # A file without float32: the last stage is the finest tier present.
    qpath = mf.save_prefix_blocked(tmp_path / "q.mfb", x, tiers=("int8", "binary"), split_at=(64,))
    qplan = mf.tune_funnel(mf.open_corpus(qpath), q, k=10, target_recall=0.9, precisions=("binary",))
    assert qplan.precisions[-1] == "int8"
    with pytest.raises(ValueError, match="no float32 tier"):
        mf.tune_funnel(mf.open_corpus(qpath), q, k=10, precisions=("float32",))


def test_tune_funnel_by_time_gives_each_first_stage_its_cascade(tmp_path: Path) -> None:
    # Timing compares first stages of different tiers, whose byte estimates do not rank them
    # against each other: with by="time", every first stage with a feasible shortlist gets its
    # own cascades tried (a stage may follow it here: int8/float32 at 64, float32 at 128), not
    # only those that could beat the best estimate of any stage.
    rng = np.random.default_rng(5)
    centres = rng.standard_normal((50, 128))
    x = (centres[rng.integers(0, 50, 6000)] + 0.5 * rng.standard_normal((6000, 128))).astype(np.float32)
    q = (x[rng.integers(0, 6000, 40)] + 0.3 * rng.standard_normal((40, 128))).astype(np.float32)
    corpus = mf.open_corpus(mf.save_prefix_blocked(tmp_path / "t.mfb", x, tiers=ALL, split_at=(64,)))
    kw: dict[str, Any] = dict(k=10, target_recall=0.95, widths=(32, 64), precisions=ALL[::-1])
    plan = mf.tune_funnel(corpus, q, by="time", repeats=1, time_batch=8, **kw)

    def cascades(p: mf.FunnelPlan) -> set[tuple[int, str]]:
        return {(r.dims[0], r.precisions[0]) for r in p.table if len(r.dims) == 3}

    fine = {p: i for i, p in enumerate(("binary", "int8", "float32"))}
    middles = [(w, p) for w in (32, 64) for p in fine] + [(128, "binary"), (128, "int8")]

    def can_follow(a: tuple[int, str], b: tuple[int, str]) -> bool:
        return b[0] >= a[0] and fine[b[1]] >= fine[a[1]] and a != b

    firsts = {(r.dims[0], r.precisions[0]) for r in plan.table if len(r.dims) == 2 and r.feasible}
    parents = {f for f in firsts if any(can_follow(f, m) for m in middles)}
    assert parents and cascades(plan) == parents
    assert cascades(mf.tune_funnel(corpus, q, **kw)) < parents  # by cost, pruned by the best overall
