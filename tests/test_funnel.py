"""`matryo_fast.funnel` against the float64 cascade oracle, for every backend and corpus layout.

The kernel scores in float32, so a shortlist can legitimately differ from the oracle's where
two scores at a cut-off are within the tolerance. `assert_valid_funnel` therefore tracks, stage
by stage, the rows that *must* survive (no other row can reach them within the tolerance) and
the rows that *may* survive, and checks the result lies between the two. Where the two sets
coincide at every stage (the usual case for continuous data) the result must be the oracle's
exactly. Exact ties that the contract guarantees (identical prefixes, zero-norm prefixes, a
zero query prefix) are ordered by row index at every stage, so they never widen the bounds.
`test_checker_rejects_wrong_cascades` shows the check catches a wrong width, count or norm.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
import pytest
from hypothesis import event, given
from hypothesis import strategies as st
from hypothesis.errors import InvalidArgument
from strategies import LANE_DIMS, ROW_COUNTS, assert_same_topk, corpus_as, fill, poison_beyond
from test_topk import score_tol

import matryo_fast as mf
from matryo_fast._reference import funnel_reference, prefix_cosine, topk_reference

F32 = npt.NDArray[np.float32]
FUNNEL_LAYOUTS = ("contiguous", "strided", "offset", "path", "corpus")


# ------------------------------------------------------------------------------ the checker


def _event(name: str) -> None:
    """`hypothesis.event`, also callable from a plain (non-hypothesis) test."""
    try:
        event(name)
    except InvalidArgument:
        pass


def _tie_groups(x: npt.NDArray[Any], q: npt.NDArray[Any], dim: int) -> npt.NDArray[np.int64]:
    """Rows with equal ids are guaranteed to score bitwise equal at ``dim`` (so they tie)."""
    n = x.shape[0]
    if not np.asarray(q)[:dim].any():
        return np.zeros(n, dtype=np.int64)  # a zero query prefix scores every row 0.0
    prefix = x[:, :dim]
    groups = np.unique(prefix, axis=0, return_inverse=True)[1].reshape(-1).astype(np.int64)
    groups[~prefix.any(axis=1)] = -1  # all zero-norm prefixes score exactly 0.0
    return groups


def funnel_bounds(
    q: npt.NDArray[Any], x: npt.NDArray[Any], k: int, dims: tuple[int, ...], cands: tuple[int, ...]
) -> tuple[npt.NDArray[np.int64], npt.NDArray[np.int64], npt.NDArray[np.float64]]:
    """For one query: (rows that must be returned, rows that may be returned, cosines at dims[-1]).

    A row *definitely beats* another at a stage if the oracle scores differ by more than twice
    the float32 error bound, or if they are guaranteed to tie and it has the lower index; it
    *may beat* it if their scores are within that bound (and they are not a guaranteed tie the
    other way round). Must-survive rows are beaten by fewer than ``c`` possibly surviving rows;
    may-survive rows are definitely beaten by fewer than ``c`` surely surviving rows.
    """
    n = x.shape[0]
    must = np.arange(n, dtype=np.int64)
    may = np.arange(n, dtype=np.int64)
    s = np.zeros(n)
    for d, c in zip(dims, (*cands, k), strict=True):
        s = prefix_cosine(q, x, d)[0]
        tol = 2 * score_tol(d)
        g = _tie_groups(x, q, d)
        sr, gr = s[may], g[may]
        tied = gr[:, None] == gr[None, :]
        lower = may[:, None] < may[None, :]  # [j, r]: j has the lower row index
        could_beat = (sr[:, None] >= sr[None, :] - tol) & ~(tied & ~lower)
        surely_beats = (sr[:, None] > sr[None, :] + tol) | (tied & lower)
        in_must = np.isin(may, must)
        new_may = may[surely_beats[in_must].sum(axis=0) < c]
        new_must = may[in_must & (could_beat.sum(axis=0) < c)]
        may, must = new_may, new_must
    return must, may, s


def assert_valid_funnel(
    res: mf.TopK,
    query: npt.ArrayLike,
    corpus: npt.ArrayLike,
    k: int,
    dims: tuple[int, ...],
    cands: tuple[int, ...],
) -> None:
    """Check a funnel result against the float64 cascade, as far as float32 pins it down."""
    q, x = np.asarray(query), np.asarray(corpus)
    n = x.shape[0]
    kk = min(k, n)
    shape = (kk,) if q.ndim == 1 else (q.shape[0], kk)
    assert res.scores.shape == shape and res.indices.shape == shape, (res.scores.shape, shape)
    assert res.scores.dtype == np.float32 and res.indices.dtype == np.int64
    ref_s, ref_i = funnel_reference(q, x, k=k, dims=dims, candidates=cands)
    tol = score_tol(dims[-1])
    for b, (qs, s, r) in enumerate(
        zip(np.atleast_2d(q), np.atleast_2d(res.scores), np.atleast_2d(res.indices), strict=True)
    ):
        ctx = f"query {b}, dims={dims}, candidates={cands}, k={k}: idx={r.tolist()[:12]}"
        must, may, last = funnel_bounds(qs, x, k, dims, cands)
        oracle = np.atleast_2d(ref_i)[b]
        # the oracle itself lies within its bounds (a check of the checker)
        assert set(must) <= set(oracle.tolist()) <= set(may), f"checker inconsistent: {ctx}"
        assert ((r >= 0) & (r < n)).all() and len(np.unique(r)) == kk, f"bad rows: {ctx}"
        assert set(must.tolist()) <= set(r.tolist()), (
            f"rows {sorted(set(must.tolist()) - set(r.tolist()))} must survive: {ctx}"
        )
        assert set(r.tolist()) <= set(may.tolist()), (
            f"rows {sorted(set(r.tolist()) - set(may.tolist()))} cannot survive: {ctx}"
        )
        # scores are the cosines at the last width, sorted, equal scores by ascending row
        err = np.abs(s.astype(np.float64) - last[r])
        assert (err <= tol).all(), f"score err {err.max():.3g} > {tol:.3g}: {ctx}"
        assert np.isfinite(s).all() and (np.abs(s) <= 1.0).all(), ctx
        assert (np.diff(s) <= 0).all(), f"not sorted: {ctx}"
        eq = s[1:] == s[:-1]
        assert (r[1:][eq] > r[:-1][eq]).all(), f"equal scores not in index order: {ctx}"
        if len(must) == len(may):
            # every shortlist is determined: the same rows as the oracle, and the same order
            # wherever the oracle's neighbouring scores are separated (or tie by contract)
            g = _tie_groups(x, qs, dims[-1])[oracle]
            o = last[oracle]
            order_fixed = ((o[:-1] - o[1:]) > 2 * tol) | (g[:-1] == g[1:])
            _event("shortlists determined" + (", order fixed" if order_fixed.all() else ""))
            if order_fixed.all():
                np.testing.assert_array_equal(r, oracle, err_msg=ctx)
            # runs of oracle rows closer than the tolerance may come out in any order
            runs = np.concatenate([[0], np.cumsum((o[:-1] - o[1:]) > 2 * tol)])
            for run in np.unique(runs):
                at = runs == run
                assert set(r[at].tolist()) == set(oracle[at].tolist()), f"order: {ctx}"
        else:
            _event("shortlists within tolerance")


# ----------------------------------------------------------------------------- strategies


@dataclass(frozen=True)
class FunnelCase:
    """One funnel search: a logical float32 corpus, a query (1-D or 2-D) and a plan."""

    corpus: F32
    query: npt.NDArray[Any]
    k: int
    dims: tuple[int, ...]
    candidates: tuple[int, ...]

    @property
    def params(self) -> dict[str, Any]:
        return {"k": self.k, "dims": self.dims, "candidates": self.candidates}


@st.composite
def funnel_cases(
    draw: st.DrawFn,
    *,
    kinds: tuple[str, ...] = ("normal",),
    min_first: int = 8,
    max_rows: int = 700,
    counts_at_least_n: bool = False,
) -> FunnelCase:
    """A corpus (with duplicate rows, shared prefixes and zero rows), a query and a valid plan.

    ``dims[0] >= min(min_first, D)`` keeps the scores of continuous data well separated, so
    most examples take the exact-comparison path of `assert_valid_funnel`.
    """
    n = draw(
        st.one_of(
            st.sampled_from([r for r in ROW_COUNTS if r <= max_rows]), st.integers(1, max_rows)
        )
    )
    d = draw(st.sampled_from([w for w in LANE_DIMS if w >= 1]))
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    x = fill(rng, (n, d), draw(st.sampled_from(kinds)))
    lo = min(min_first, d)
    stages = draw(st.integers(1, min(3, d - lo + 1)))
    widths = st.one_of(st.sampled_from([w for w in LANE_DIMS if lo <= w <= d]), st.integers(lo, d))
    dims = tuple(sorted(draw(st.sets(widths, min_size=stages, max_size=stages))))
    # exact duplicates, rows sharing only the first-stage prefix, and zero rows
    for _ in range(draw(st.integers(0, min(4, n - 1)))):
        src, dst = rng.integers(0, n, size=2)
        x[dst] = x[src]
    for _ in range(draw(st.integers(0, min(3, n - 1)))):
        src, dst = rng.integers(0, n, size=2)
        x[dst, : dims[0]] = x[src, : dims[0]]
    x[rng.choice(n, size=draw(st.integers(0, min(2, n))), replace=False)] = 0.0
    k = draw(st.one_of(st.integers(1, 12), st.sampled_from([n, n + 1])))
    if counts_at_least_n:
        count = st.integers(max(n, k), max(n, k) + 5) | st.sampled_from([2**40])
    else:
        count = st.one_of(
            st.integers(k, k + 30), st.integers(k, max(k, n + 3)), st.sampled_from([n + 1, 2**40])
        ).filter(lambda c: c >= k)
    cands = tuple(
        sorted(draw(st.lists(count, min_size=stages - 1, max_size=stages - 1)), reverse=True)
    )
    # the query: random, or a noisy corpus row; at least dims[-1] wide
    qwidth = draw(st.integers(dims[-1], d + 3))
    batch = draw(st.one_of(st.none(), st.integers(1, 4)))
    rows = batch or 1
    q = rng.standard_normal((rows, qwidth))
    if draw(st.booleans()):
        cols = min(qwidth, d)
        picked = x[rng.integers(0, n, size=rows), :cols].astype(np.float64)
        q[:, :cols] = picked + draw(st.sampled_from([0.0, 0.05, 0.5])) * q[:, :cols]
    q = q.astype(draw(st.sampled_from([np.float32, np.float64])))
    return FunnelCase(x, q[0] if batch is None else q, k, dims, cands)


# ----------------------------------------------------------------------------- properties


@given(case=funnel_cases(), layout=st.sampled_from(FUNNEL_LAYOUTS))
def test_matches_oracle(backend: str, npy_dir: Path, case: FunnelCase, layout: str) -> None:
    res = mf.funnel(case.query, corpus_as(case.corpus, layout, npy_dir), **case.params)
    assert_valid_funnel(res, case.query, case.corpus, case.k, case.dims, case.candidates)


@given(case=funnel_cases(kinds=("small_ints", "nonneg", "normal"), min_first=1, max_rows=300))
def test_matches_oracle_with_ties_and_narrow_widths(backend: str, case: FunnelCase) -> None:
    """Widths down to 1 (every cosine +-1) and small-integer rows: many ties at the cut-offs."""
    res = mf.funnel(case.query, case.corpus, **case.params)
    assert_valid_funnel(res, case.query, case.corpus, case.k, case.dims, case.candidates)


@given(
    case=funnel_cases(min_first=1, counts_at_least_n=True), layout=st.sampled_from(FUNNEL_LAYOUTS)
)
def test_counts_of_at_least_n_equal_exact_topk_bitwise(
    backend: str, npy_dir: Path, case: FunnelCase, layout: str
) -> None:
    """When every shortlist keeps the whole corpus, the funnel is exact search at dims[-1]."""
    corpus = corpus_as(case.corpus, layout, npy_dir)
    got = mf.funnel(case.query, corpus, **case.params)
    expected = mf.topk(case.query, case.corpus, dim=case.dims[-1], k=case.k)
    assert_same_topk(got, expected)


@given(case=funnel_cases(min_first=1), layout=st.sampled_from(FUNNEL_LAYOUTS))
def test_single_stage_equals_topk_bitwise(
    backend: str, npy_dir: Path, case: FunnelCase, layout: str
) -> None:
    corpus = corpus_as(case.corpus, layout, npy_dir)
    for d in sorted({case.dims[0], case.dims[-1]}):
        got = mf.funnel(case.query, corpus, k=case.k, dims=(d,), candidates=())
        expected = mf.topk(case.query, case.corpus, dim=d, k=case.k)
        assert_same_topk(got, expected)


@given(case=funnel_cases(min_first=1), layout=st.sampled_from(FUNNEL_LAYOUTS))
def test_batch_equals_single_and_layouts_agree_bitwise(
    backend: str, npy_dir: Path, case: FunnelCase, layout: str
) -> None:
    q = np.atleast_2d(case.query)
    batch = mf.funnel(q, case.corpus, **case.params)
    other = mf.funnel(q, corpus_as(case.corpus, layout, npy_dir), **case.params)
    assert_same_topk(other, batch)
    for i, qi in enumerate(q):
        one = mf.funnel(qi, case.corpus, **case.params)
        np.testing.assert_array_equal(one.indices, batch.indices[i])
        np.testing.assert_array_equal(one.scores, batch.scores[i])
    rep = mf.funnel(np.repeat(q[-1:], 5, axis=0), case.corpus, **case.params)
    for row in range(5):
        np.testing.assert_array_equal(rep.indices[row], batch.indices[-1])
        np.testing.assert_array_equal(rep.scores[row], batch.scores[-1])


@given(case=funnel_cases(), seed=st.integers(0, 2**32 - 1))
def test_columns_beyond_last_width_are_never_read(
    backend: str, case: FunnelCase, seed: int
) -> None:
    rng = np.random.default_rng(seed)
    d = case.dims[-1]
    expected = mf.funnel(case.query, np.ascontiguousarray(case.corpus[:, :d]), **case.params)
    got = mf.funnel(
        poison_beyond(case.query, d, rng), poison_beyond(case.corpus, d, rng), **case.params
    )
    assert_same_topk(got, expected)


# --------------------------------------------------------------------- the checker's power


def _rng(seed: int) -> np.random.Generator:
    return np.random.default_rng(seed)


def test_checker_accepts_oracle_and_rejects_wrong_cascades() -> None:
    """The check above fails for the bugs it is meant to find (fed from mutated oracles)."""
    rng = _rng(40)
    x = rng.standard_normal((400, 64)).astype(np.float32)
    x[:, 8:] *= 3.0 * rng.random((400, 1))  # prefix norms unlike full norms
    q = rng.standard_normal((3, 64))
    plan = {"k": 10, "dims": (8, 32, 64), "candidates": (60, 25)}

    def as_result(s: Any, i: Any) -> mf.TopK:
        return mf.TopK(np.asarray(s, dtype=np.float32), np.asarray(i, dtype=np.int64))

    good = as_result(*funnel_reference(q, x, **plan))
    assert_valid_funnel(good, q, x, 10, (8, 32, 64), (60, 25))
    mutants = {
        "first width": {"k": 10, "dims": (16, 32, 64), "candidates": (60, 25)},
        "middle width": {"k": 10, "dims": (8, 16, 64), "candidates": (60, 25)},
        "first count": {"k": 10, "dims": (8, 32, 64), "candidates": (30, 25)},
        "second count": {"k": 10, "dims": (8, 32, 64), "candidates": (60, 12)},
        "no funnel": {"k": 10, "dims": (64,), "candidates": ()},
    }
    for name, wrong in mutants.items():
        bad = as_result(*funnel_reference(q, x, **wrong))
        with pytest.raises(AssertionError):
            assert_valid_funnel(bad, q, x, 10, (8, 32, 64), (60, 25))
            pytest.fail(f"checker accepted a cascade with the wrong {name}")
    # scores that are not re-normalised at the last width (raw dot products / prefix norms)
    s, i = funnel_reference(q, x, **plan)
    raw = np.einsum("bd,bkd->bk", q / np.linalg.norm(q, axis=1, keepdims=True), x[i])
    with pytest.raises(AssertionError):
        assert_valid_funnel(as_result(raw, i), q, x, 10, (8, 32, 64), (60, 25))


# --------------------------------------------------------------------- exact, fixed cases


def test_docstring_example(backend: str) -> None:
    x = _rng(0).standard_normal((500, 64)).astype(np.float32)
    res = mf.funnel(x[3], x, k=2, dims=(16, 64), candidates=(50,))
    assert int(res.indices[0]) == 3
    assert abs(float(res.scores[0]) - 1.0) <= 1e-6


def test_stage_ties_keep_lowest_rows(backend: str) -> None:
    """At dim 1 rows 0, 1, 3 tie at exactly 1.0 and row 2 scores -1: the shortlist of 3 drops
    row 2 (which exact search at dim 2 ranks third); a shortlist of 2 keeps rows 0 and 1."""
    x = np.array([[1.0, -1.0], [1.0, 0.0], [-0.1, 1.0], [1.0, 0.5]], dtype=np.float32)
    q = np.array([1.0, 0.5])
    res = mf.funnel(q, x, k=3, dims=(1, 2), candidates=(3,))
    assert res.indices.tolist() == [3, 1, 0]
    np.testing.assert_allclose(res.scores, prefix_cosine(q, x[[3, 1, 0]], 2)[0], atol=1e-6)
    assert mf.topk(q, x, dim=2, k=3).indices.tolist() == [3, 1, 2]
    assert mf.funnel(q, x, k=2, dims=(1, 2), candidates=(2,)).indices.tolist() == [1, 0]
    batch = mf.funnel(np.stack([q, q]), x, k=2, dims=(1, 2), candidates=(2,))
    assert batch.indices.tolist() == [[1, 0], [1, 0]]


def test_later_stage_renormalises_the_wider_prefix(backend: str) -> None:
    """Row 1 has the best dot product at dim 4 but a long tail: only the cosine of the
    re-normalised dim-4 prefix ranks row 0 first."""
    x = np.zeros((3, 8), dtype=np.float32)
    x[0, :4] = [1.0, 1.0, 1.0, 1.0]
    x[1, :4] = [2.0, 2.0, 2.0, 0.0]
    x[1, 2:] += [0.0, 0.0, 0.0, 50.0, 50.0, 50.0]
    x[2, :4] = [1.0, 0.0, 0.0, 0.0]
    q = np.array([1.0, 1.0, 1.0, 1.0, 0.0, 0.0, 0.0, 0.0])
    res = mf.funnel(q, x, k=3, dims=(1, 4), candidates=(3,))
    assert res.indices.tolist() == [0, 1, 2]
    np.testing.assert_allclose(res.scores, topk_reference(q, x, 4, 3)[0], atol=1e-6)


def test_wide_shortlists_keep_every_row(backend: str) -> None:
    x = _rng(1).standard_normal((50, 33)).astype(np.float32)
    q = _rng(2).standard_normal((2, 33))
    expected = mf.topk(q, x, dim=33, k=7)
    for cands in ((50,), (51,), (10**6,), (2**62,), (2**70,)):
        got = mf.funnel(q, x, k=7, dims=(3, 33), candidates=cands)
        assert_same_topk(got, expected)
    got = mf.funnel(q, x, k=60, dims=(3, 17, 33), candidates=(100, 60))
    assert got.indices.shape == (2, 50)
    np.testing.assert_array_equal(got.indices, mf.topk(q, x, dim=33, k=60).indices)


@pytest.mark.parametrize("make", ["load", "zeros"])
def test_empty_corpus(backend: str, tmp_path: Path, make: str) -> None:
    """A (0, D) corpus returns 0 columns, as topk does (however the empty array was made)."""
    empty = np.zeros((0, 16), dtype=np.float32)
    if make == "load":
        np.save(tmp_path / "e.npy", empty)
        empty = np.load(tmp_path / "e.npy")
    res = mf.funnel(np.ones((2, 16)), empty, k=3, dims=(4, 16), candidates=(5,))
    assert res.indices.shape == res.scores.shape == (2, 0)
    res = mf.funnel(np.ones(16), empty, k=3, dims=(4, 16), candidates=(5,))
    assert res.indices.shape == (0,)


def test_numpy_integers_and_arrays_accepted(backend: str) -> None:
    x = _rng(3).standard_normal((300, 32)).astype(np.float32)
    q = x[:2] + 0.1
    expected = mf.funnel(q, x, k=5, dims=(8, 32), candidates=(40,))
    for params in (
        {"k": np.int64(5), "dims": (np.int32(8), np.int64(32)), "candidates": (np.uint16(40),)},
        {"k": 5, "dims": np.array([8, 32]), "candidates": np.array([40])},
        {"k": 5, "dims": [8, 32], "candidates": [40]},
    ):
        got = mf.funnel(q, x, **params)
        assert_same_topk(got, expected)


def test_inputs_unchanged(backend: str) -> None:
    x = _rng(4).standard_normal((200, 16)).astype(np.float32)
    q = _rng(5).standard_normal((3, 16))
    before = (x.tobytes(), q.tobytes())
    x.flags.writeable = False
    q.flags.writeable = False
    res = mf.funnel(q, x, k=4, dims=(4, 16), candidates=(20,))
    assert (x.tobytes(), q.tobytes()) == before
    assert res.scores.flags.writeable and not np.shares_memory(res.scores, x)


# ------------------------------------------------------------------------------ bad inputs

X = _rng(6).standard_normal((40, 32)).astype(np.float32)
Q = _rng(7).standard_normal(32).astype(np.float32)
PLAN = r"(?i)(dims|candidates|count|width|stage)"


@pytest.mark.parametrize(
    ("dims", "cands", "k", "fragment"),
    [
        ((8, 32), (), 5, r"len\(candidates\)"),
        ((8,), (20,), 5, r"len\(candidates\)"),
        ((8, 16, 32), (20,), 5, r"len\(candidates\)"),
        ((8, 32), (20, 10), 5, r"len\(candidates\)"),
        ((), (), 5, r"(?i)dims"),
        ((16, 16), (20,), 5, r"(?i)strictly increase"),
        ((32, 16), (20,), 5, r"(?i)strictly increase"),
        ((8, 16, 12), (20, 10), 5, r"(?i)strictly increase"),
        ((8, 33), (20,), 5, r"(?i)\bdim=33\b"),
        ((8, 10**6), (20,), 5, r"(?i)\bdim"),
        ((8, 2**70), (20,), 5, r"(?i)\bdim"),
        ((40,), (), 5, r"(?i)\bdim=40\b"),
        ((0, 32), (20,), 5, r"(?i)\bdim=0\b"),
        ((-8, 32), (20,), 5, r"(?i)\bdim=-8\b"),
        ((8, 32), (4,), 5, r"(?i)at least k=5"),
        ((8, 32), (0,), 5, r"(?i)at least k"),
        ((8, 32), (-20,), 5, r"(?i)at least k"),
        ((8, 16, 32), (20, 4), 5, r"(?i)at least k=5"),
        ((8, 16, 32), (10, 20), 5, r"(?i)not increase"),
        ((8, 32), (20,), 0, r"(?i)\bk=0\b"),
        ((8, 32), (20,), -3, r"(?i)\bk=-3\b"),
        ((8, 32), (20,), -(2**70), r"(?i)\bk\b"),
        ((8, 32), (20,), 50, r"(?i)at least k=50"),  # counts must be >= k even when k > N
    ],
)
def test_bad_plan(dims: Any, cands: Any, k: int, fragment: str) -> None:
    with pytest.raises(ValueError, match=fragment):
        mf.funnel(Q, X, k=k, dims=dims, candidates=cands)


def test_width_beyond_query_but_within_corpus() -> None:
    with pytest.raises(ValueError, match=r"(?i)\bdim=24\b.*query"):
        mf.funnel(Q[:16], X, k=3, dims=(8, 24), candidates=(10,))
    with pytest.raises(ValueError, match=r"(?i)\bdim"):
        mf.funnel(np.stack([Q[:16]] * 2), X, k=3, dims=(20,), candidates=())


@pytest.mark.parametrize(
    "params",
    [
        {"k": 1.5, "dims": (8, 32), "candidates": (20,)},
        {"k": "3", "dims": (8, 32), "candidates": (20,)},
        {"k": None, "dims": (8, 32), "candidates": (20,)},
        {"k": True, "dims": (8, 32), "candidates": (20,)},
        {"k": 3, "dims": (8.0, 32), "candidates": (20,)},
        {"k": 3, "dims": (8, 32), "candidates": (20.0,)},
        {"k": 3, "dims": (8, "32"), "candidates": (20,)},
        {"k": 3, "dims": (8, 32), "candidates": ("20",)},
        {"k": 3, "dims": (True, 32), "candidates": (20,)},
        {"k": 3, "dims": (8, 32), "candidates": (None,)},
        {"k": 3, "dims": np.array([8.0, 32.0]), "candidates": (20,)},
        {"k": 3, "dims": 32, "candidates": ()},
        {"k": 3, "dims": "832", "candidates": (20,)},
        {"k": 3, "dims": (8, 32), "candidates": 20},
        {"k": 3, "dims": (8, 32), "candidates": None},
    ],
)
def test_non_int_values_are_type_errors(params: dict[str, Any]) -> None:
    with pytest.raises(TypeError, match=r"(?i)(int|sequence)"):
        mf.funnel(Q, X, **params)


@pytest.mark.parametrize("dtype", [np.float64, np.float16, np.int32, ">f4"])
def test_corpus_wrong_dtype(dtype: Any) -> None:
    with pytest.raises(TypeError, match=r"astype"):
        mf.funnel(Q, X.astype(dtype), k=3, dims=(8, 32), candidates=(10,))


@pytest.mark.parametrize("dtype", [np.int64, np.complex64])
def test_query_wrong_dtype(dtype: Any) -> None:
    with pytest.raises(TypeError, match=r"(?i)(dtype|float)"):
        mf.funnel(np.ones(32, dtype=dtype), X, k=3, dims=(8, 32), candidates=(10,))


@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
@pytest.mark.parametrize("col", [2, 20])  # within the first stage, within only the last
def test_query_nan_inf(bad: float, col: int) -> None:
    q = Q.astype(np.float64)
    q[col] = bad
    with pytest.raises(ValueError, match=r"(?i)(nan|inf|finite)"):
        mf.funnel(q, X, k=3, dims=(8, 32), candidates=(10,))
    with pytest.raises(ValueError, match=r"(?i)(nan|inf|finite)"):
        mf.funnel(np.stack([Q, q]), X, k=3, dims=(8, 32), candidates=(10,))


def test_query_nan_beyond_last_width_is_ignored() -> None:
    q = np.concatenate([Q[:24], np.full(8, np.nan, dtype=np.float32)])
    got = mf.funnel(q, X, k=3, dims=(8, 24), candidates=(10,))
    expected = mf.funnel(Q[:24], X, k=3, dims=(8, 24), candidates=(10,))
    np.testing.assert_array_equal(got.indices, expected.indices)


def test_corpus_nan_in_a_scanned_prefix() -> None:
    x = X.copy()
    x[5, 3] = np.nan  # within dims[0]: every row is scanned there
    with pytest.raises(ValueError, match=r"(?i)row 5\b.*(nan|inf)"):
        mf.funnel(Q, x, k=3, dims=(8, 32), candidates=(10,))
    x = X.copy()
    x[7, 20] = np.inf  # within dims[1] of a row that survives the first stage
    with pytest.raises(ValueError, match=r"(?i)row 7\b.*(nan|inf)"):
        mf.funnel(X[7], x, k=3, dims=(8, 32), candidates=(10,))


def test_corpus_layout_errors(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match=r"(?i)(fortran|contiguous)"):
        mf.funnel(Q, np.asfortranarray(X), k=3, dims=(8, 32), candidates=(10,))
    with pytest.raises(ValueError, match=r"(?i)(2-D|shape)"):
        mf.funnel(Q, X[0], k=3, dims=(8, 32), candidates=(10,))
    with pytest.raises(FileNotFoundError):
        mf.funnel(Q, tmp_path / "missing.npy", k=3, dims=(8, 32), candidates=(10,))
    with pytest.raises(TypeError):
        mf.funnel(Q, X.tolist(), k=3, dims=(8, 32), candidates=(10,))
    with pytest.raises(ValueError, match=r"(?i)(1-D|2-D|shape)"):
        mf.funnel(np.ones((2, 2, 32)), X, k=3, dims=(8, 32), candidates=(10,))


def test_errors_name_the_bad_values() -> None:
    """Plan errors quote what was passed, so the user can see which value is wrong."""
    with pytest.raises(ValueError) as info:
        mf.funnel(Q, X, k=5, dims=(8, 16, 32), candidates=(30, 40))
    assert re.search(r"30\D+40", str(info.value)), str(info.value)
    with pytest.raises(ValueError) as info:
        mf.funnel(Q, X, k=5, dims=(8, 24, 16), candidates=(30, 20))
    assert re.search(r"24\D+16", str(info.value)), str(info.value)
