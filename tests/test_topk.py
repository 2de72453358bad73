"""`matryo_fast.topk` against the float64 oracle, for every backend and every corpus layout.

The kernel scores in float32, so where the oracle's scores are closer than the tolerance the
order may legitimately differ; `assert_valid_topk` checks what the contract guarantees instead:
scores close to the oracle, a valid top-k set, exact sortedness, exact tie order.
Everything the contract makes deterministic (layouts, batching, positions, thread counts,
duplicate rows) is compared bitwise.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from strategies import (
    ARRAY_LAYOUTS,
    EXTREME_KINDS,
    LAYOUTS,
    WELL_SCALED_KINDS,
    Case,
    assert_same_topk,
    cases,
    corpus_as,
    layouts,
    poison_beyond,
)

import matryo_fast as mf
from matryo_fast._reference import funnel_reference, prefix_cosine, topk_reference


def score_tol(dim: int) -> float:
    """Float32 accumulation error bound for a cosine over ``dim`` terms, with margin."""
    return 2e-5 + dim * 2.0**-22


def assert_valid_topk(
    res_scores: npt.NDArray[Any],
    res_idx: npt.NDArray[Any],
    query: npt.ArrayLike,
    corpus: npt.ArrayLike,
    dim: int | None,
    k: int,
) -> None:
    """Check a top-k result against the float64 oracle, as far as the contract pins it down.

    ``corpus`` is the logical matrix (any layout of it gives the same answer).
    """
    q, x = np.asarray(query), np.asarray(corpus)
    n = x.shape[0]
    d = x.shape[1] if dim is None else dim
    kk = min(k, n)
    # (1) shapes and dtypes
    shape = (kk,) if q.ndim == 1 else (q.shape[0], kk)
    assert res_scores.shape == shape, (res_scores.shape, shape)
    assert res_idx.shape == shape, (res_idx.shape, shape)
    assert res_scores.dtype == np.float32, res_scores.dtype
    assert res_idx.dtype == np.int64, res_idx.dtype
    tol = score_tol(d)
    oracle = prefix_cosine(q, x, d)
    # Rows with bitwise-identical prefixes must tie exactly; all zero-norm rows tie at 0.0.
    prefix = x[:, :d]
    group = np.unique(prefix, axis=0, return_inverse=True)[1].reshape(-1)
    zero_row = ~prefix.any(axis=1)
    group[zero_row] = -1
    q2 = np.atleast_2d(q)
    for b, (s, r) in enumerate(zip(np.atleast_2d(res_scores), np.atleast_2d(res_idx))):
        o = oracle[b]
        ctx = f"query {b}: scores={s.tolist()[:20]} idx={r.tolist()[:20]}"
        assert np.isfinite(s).all() and (np.abs(s) <= 1.0).all(), ctx
        # (5) valid, distinct row numbers
        assert ((r >= 0) & (r < n)).all(), ctx
        assert len(np.unique(r)) == kk, f"duplicate indices: {ctx}"
        # (2) scores match the oracle's scores of the returned rows
        err = np.abs(s.astype(np.float64) - o[r])
        assert (err <= tol).all(), f"max err {err.max():.3g} > {tol:.3g} at {err.argmax()}: {ctx}"
        # (3) a valid top-k: nothing left out scores clearly higher
        kth = np.sort(o)[::-1][kk - 1]
        assert (o[r] >= kth - tol).all(), f"not a top-k set (k-th best {kth}): {ctx}"
        # (4) sorted: the returned float32 scores exactly, the oracle's within tolerance
        assert (np.diff(s) <= 0).all(), f"not sorted: {ctx}"
        assert (np.diff(o[r]) <= 2 * tol).all(), f"oracle order off: {ctx}"
        # (6) equal scores come out by ascending index
        eq = s[1:] == s[:-1]
        assert (r[1:][eq] > r[:-1][eq]).all(), f"equal scores not in index order: {ctx}"
        # zero-norm rows and a zero-norm query score exactly 0.0
        zs = s[zero_row[r]]
        assert (zs == 0.0).all() and not np.signbit(zs).any(), f"zero row not +0.0: {ctx}"
        if not q2[b, :d].any():
            assert (s == 0.0).all() and not np.signbit(s).any(), f"zero query not +0.0: {ctx}"
            np.testing.assert_array_equal(r, np.arange(kk))
        # identical rows tie exactly: the returned members of a group are its lowest rows,
        # in ascending order, with one score
        for g in np.unique(group[r]):
            pos = np.flatnonzero(group[r] == g)
            members = np.flatnonzero(group == g)
            assert r[pos].tolist() == members[: len(pos)].tolist(), f"tied group {g}: {ctx}"
            assert (s[pos] == s[pos[0]]).all(), f"identical rows scored differently: {ctx}"


def snapshot(*arrays: Any) -> list[bytes]:
    return [np.ascontiguousarray(a).tobytes() for a in arrays]


# ----------------------------------------------------------------------------- properties


@given(case=cases(kinds=WELL_SCALED_KINDS), layout=layouts)
def test_matches_oracle(backend: str, npy_dir: Path, case: Case, layout: str) -> None:
    corpus = corpus_as(case.corpus, layout, npy_dir)
    res = mf.topk(case.query, corpus, dim=case.dim, k=case.k)
    assert_valid_topk(res.scores, res.indices, case.query, case.corpus, case.dim, case.k)


@given(case=cases(kinds=EXTREME_KINDS), layout=st.sampled_from(["contiguous", "offset", "corpus"]))
def test_matches_oracle_extreme_magnitudes(
    backend: str, npy_dir: Path, case: Case, layout: str
) -> None:
    """Rows scaled by 1e-44..1e37 (float32 squared norms under/overflow): still the cosine."""
    corpus = corpus_as(case.corpus, layout, npy_dir)
    res = mf.topk(case.query, corpus, dim=case.dim, k=case.k)
    assert_valid_topk(res.scores, res.indices, case.query, case.corpus, case.dim, case.k)


@given(case=cases(kinds=WELL_SCALED_KINDS, extreme_query=True))
def test_matches_oracle_extreme_query_scale(backend: str, case: Case) -> None:
    """Queries scaled by 1e-20..1e15: the cosine does not depend on the query's norm."""
    res = mf.topk(case.query, case.corpus, dim=case.dim, k=case.k)
    assert_valid_topk(res.scores, res.indices, case.query, case.corpus, case.dim, case.k)


@given(case=cases(), layout=layouts)
def test_layouts_agree_bitwise(backend: str, npy_dir: Path, case: Case, layout: str) -> None:
    expected = mf.topk(case.query, case.corpus, dim=case.dim, k=case.k)
    got = mf.topk(case.query, corpus_as(case.corpus, layout, npy_dir), dim=case.dim, k=case.k)
    assert_same_topk(got, expected)


@given(case=cases())
def test_batch_equals_single_bitwise(backend: str, case: Case) -> None:
    q = np.atleast_2d(case.query)
    batch = mf.topk(q, case.corpus, dim=case.dim, k=case.k)
    for i, qi in enumerate(q):
        one = mf.topk(qi, case.corpus, dim=case.dim, k=case.k)
        np.testing.assert_array_equal(batch.indices[i], one.indices)
        np.testing.assert_array_equal(batch.scores[i], one.scores)
    # and a batch that repeats one query in every row gives the same row each time
    rep = mf.topk(np.repeat(q[:1], 7, axis=0), case.corpus, dim=case.dim, k=case.k)
    for row in range(7):
        np.testing.assert_array_equal(rep.indices[row], batch.indices[0])
        np.testing.assert_array_equal(rep.scores[row], batch.scores[0])


@given(case=cases(), seed=st.integers(0, 2**32 - 1))
def test_row_score_does_not_depend_on_position(backend: str, case: Case, seed: int) -> None:
    """All N scores (k=N) are the same, bitwise, after permuting and truncating the corpus."""
    n = case.corpus.shape[0]
    full = mf.topk(case.query, case.corpus, dim=case.dim, k=n)
    perm = np.random.default_rng(seed).permutation(n)[: max(1, n - 2)]
    sub = mf.topk(case.query, np.ascontiguousarray(case.corpus[perm]), dim=case.dim, k=n)
    for s_full, i_full, s_sub, i_sub in zip(
        np.atleast_2d(full.scores),
        np.atleast_2d(full.indices),
        np.atleast_2d(sub.scores),
        np.atleast_2d(sub.indices),
    ):
        by_row = np.empty(n, dtype=np.float32)
        by_row[i_full] = s_full
        np.testing.assert_array_equal(s_sub, by_row[perm[i_sub]])


@given(case=cases(kinds=WELL_SCALED_KINDS))
def test_float64_query_equals_float32_cast(backend: str, case: Case) -> None:
    q64 = np.asarray(case.query, dtype=np.float64)
    a = mf.topk(q64, case.corpus, dim=case.dim, k=case.k)
    b = mf.topk(q64.astype(np.float32), case.corpus, dim=case.dim, k=case.k)
    assert_same_topk(a, b)


@given(case=cases(kinds=WELL_SCALED_KINDS), layout=layouts, seed=st.integers(0, 2**32 - 1))
def test_columns_beyond_dim_are_never_read(
    backend: str, npy_dir: Path, case: Case, layout: str, seed: int
) -> None:
    """NaN/Inf past ``dim`` in the corpus (any layout) change nothing."""
    d = case.width
    rng = np.random.default_rng(seed)
    poisoned = poison_beyond(case.corpus, d, rng)
    expected = mf.topk(case.query, np.ascontiguousarray(case.corpus[:, :d]), dim=d, k=case.k)
    got = mf.topk(case.query, corpus_as(poisoned, layout, npy_dir), dim=d, k=case.k)
    assert_same_topk(got, expected)


@given(case=cases(kinds=WELL_SCALED_KINDS), seed=st.integers(0, 2**32 - 1))
def test_query_columns_beyond_dim_are_never_read(backend: str, case: Case, seed: int) -> None:
    """NaN/Inf past ``dim`` in the query change nothing (only the first dim columns are read)."""
    d = case.width
    expected = mf.topk(case.query[..., :d], case.corpus, dim=d, k=case.k)
    doubled = np.concatenate([case.query[..., :d]] * 2, axis=-1)
    poisoned = poison_beyond(doubled, d, np.random.default_rng(seed))
    got = mf.topk(poisoned, case.corpus, dim=d, k=case.k)
    assert_same_topk(got, expected)


@settings(max_examples=20)
@given(case=cases(), layout=st.sampled_from(ARRAY_LAYOUTS))
def test_inputs_unchanged_and_results_fresh(case: Case, layout: str, npy_dir: Path) -> None:
    corpus = corpus_as(case.corpus, layout, npy_dir)
    q64 = np.asarray(case.query, dtype=np.float64)
    before = snapshot(case.query, q64, corpus)
    res = mf.topk(case.query, corpus, dim=case.dim, k=case.k)
    res64 = mf.topk(q64, corpus, dim=case.dim, k=case.k)
    assert snapshot(case.query, q64, corpus) == before
    for r in (res, res64):
        assert isinstance(r, mf.TopK)
        for out in r:
            assert out.flags.writeable
            for inp in (case.query, q64, corpus):
                assert not np.shares_memory(out, inp)
    assert not np.shares_memory(res.scores, res64.scores)
    assert not np.shares_memory(res.indices, res64.indices)
    again = mf.topk(case.query, corpus, dim=case.dim, k=case.k)
    res.scores[...] = 5.0  # writing to one result never affects another
    res.indices[...] = -1
    np.testing.assert_array_equal(again.scores, res64.scores)


# --------------------------------------------------------------------- exact, fixed cases


def _rng(seed: int = 0) -> np.random.Generator:
    return np.random.default_rng(seed)


def test_duplicate_rows_tie_in_index_order(backend: str) -> None:
    x = _rng(1).standard_normal((40, 33)).astype(np.float32)
    for i in (3, 7, 11, 30):
        x[i] = x[20]
    res = mf.topk(x[20], x, dim=33, k=5)
    assert res.indices[:5].tolist() == [3, 7, 11, 20, 30]
    assert (res.scores == res.scores[0]).all()
    assert abs(float(res.scores[0]) - 1.0) <= 1e-6
    # also when the duplicates are the worst matches
    res = mf.topk(-x[20], x, dim=33, k=40)
    assert res.indices[-5:].tolist() == [3, 7, 11, 20, 30]
    assert (res.scores[-5:] == res.scores[-1]).all()


def test_duplicate_prefixes_tie_even_if_tails_differ(backend: str) -> None:
    x = _rng(2).standard_normal((50, 64)).astype(np.float32)
    x[[5, 9, 41], :16] = x[17, :16]
    res = mf.topk(x[17] * 3.0, x, dim=16, k=4)
    assert res.indices.tolist() == [5, 9, 17, 41]
    assert (res.scores == res.scores[0]).all()


def test_zero_rows_score_exactly_zero(backend: str) -> None:
    x = _rng(3).standard_normal((30, 17)).astype(np.float32)
    x[[0, 4, 29]] = 0.0
    x[7, :8] = 0.0  # zero prefix at dim=8 only
    res = mf.topk(_rng(4).standard_normal(17), x, dim=8, k=30)
    by_row = dict(zip(res.indices.tolist(), res.scores.tolist()))
    assert [by_row[i] for i in (0, 4, 7, 29)] == [0.0, 0.0, 0.0, 0.0]
    zeros = [i for i, s in zip(res.indices.tolist(), res.scores.tolist()) if s == 0.0]
    assert zeros == sorted(zeros)
    assert_valid_topk(res.scores, res.indices, _rng(4).standard_normal(17), x, 8, 30)


@pytest.mark.parametrize("k", [1, 5, 30, 31, 100])
def test_zero_query_scores_zero_in_index_order(backend: str, k: int) -> None:
    x = _rng(5).standard_normal((30, 65)).astype(np.float32)
    q = np.zeros(65, dtype=np.float32)
    q[40:] = 1.0  # zero only within the prefix
    res = mf.topk(q, x, dim=32, k=k)
    assert (res.scores == 0.0).all()
    assert res.indices.tolist() == list(range(min(k, 30)))
    batch = mf.topk(np.stack([q, np.zeros(65)]), x, dim=32, k=k)
    assert (batch.scores == 0.0).all()
    assert batch.indices.tolist() == [list(range(min(k, 30)))] * 2


def test_k_larger_than_n_returns_all_rows(backend: str) -> None:
    x = _rng(6).standard_normal((9, 16)).astype(np.float32)
    q = _rng(7).standard_normal((3, 16)).astype(np.float32)
    for k in (9, 10, 1000, 2**40):
        res = mf.topk(q, x, dim=16, k=k)
        assert res.scores.shape == res.indices.shape == (3, 9)
        assert all(sorted(row) == list(range(9)) for row in res.indices.tolist())
        assert_valid_topk(res.scores, res.indices, q, x, 16, k)


def test_dim_none_means_all_columns(backend: str) -> None:
    x = _rng(8).standard_normal((100, 31)).astype(np.float32)
    q = _rng(9).standard_normal(31)
    a, b = mf.topk(q, x, dim=None, k=7), mf.topk(q, x, dim=31, k=7)
    assert_same_topk(a, b)
    c = mf.topk(q, x, k=7)  # dim defaults to None
    np.testing.assert_array_equal(c.indices, b.indices)


def test_dim_one_is_the_sign(backend: str) -> None:
    x = np.array([[2.0, 9], [-1, 9], [0, 9], [5e-3, -9], [-7, 0], [3e30, 1]], dtype=np.float32)
    res = mf.topk(np.array([0.5, -100.0]), x, dim=1, k=6)
    assert_valid_topk(res.scores, res.indices, np.array([0.5, -100.0]), x, 1, 6)
    np.testing.assert_allclose(res.scores, [1, 1, 1, 0, -1, -1], atol=1e-6)
    assert sorted(res.indices[:3].tolist()) == [0, 3, 5]
    assert res.indices[3] == 2
    assert sorted(res.indices[4:].tolist()) == [1, 4]


def test_single_row_corpus(backend: str) -> None:
    x = np.array([[1.0, 2.0, 3.0]], dtype=np.float32)
    res = mf.topk(np.array([1.0, 2.0, 3.0]), x, k=10)
    assert res.indices.tolist() == [0]
    assert res.scores.shape == (1,)
    assert abs(float(res.scores[0]) - 1.0) <= 1e-6 and res.scores[0] <= 1.0
    res = mf.topk(np.array([[-1.0, -2.0, -3.0]]), x, dim=2, k=1)
    assert res.indices.tolist() == [[0]]
    assert abs(float(res.scores[0, 0]) + 1.0) <= 1e-6 and res.scores[0, 0] >= -1.0


def test_one_hot_exact_scores(backend: str) -> None:
    """Docstring example of ``topk``, and exactly representable scores."""
    corpus = np.eye(4, dtype=np.float32)
    res = mf.topk(np.array([0.0, 1.0, 0.5, 0.0]), corpus, dim=2, k=4)
    assert res.indices.tolist() == [1, 0, 2, 3]
    np.testing.assert_allclose(res.scores, [1.0, 0.0, 0.0, 0.0], atol=1e-7)
    assert res.scores[2] == 0.0 and res.scores[3] == 0.0  # zero-norm prefixes at dim=2


def test_scores_are_clamped(backend: str) -> None:
    """Parallel vectors whose float32 cosine may round above 1 (or below -1) are clamped."""
    rng = _rng(10)
    x = (rng.uniform(0.1, 10, (500, 97)) * rng.uniform(1e-3, 1e3, (500, 1))).astype(np.float32)
    for q in (x[0], -x[0], x[1].astype(np.float64) * 1e7):
        res = mf.topk(np.ascontiguousarray(q), x, k=500)
        assert (np.abs(res.scores) <= 1.0).all()
    base = rng.uniform(0.1, 10, 97).astype(np.float32)
    same_dir = (base[None, :] * np.float32(2) ** np.arange(-20, 20)[:, None]).astype(np.float32)
    res = mf.topk(base, same_dir, k=40)
    assert (res.scores <= 1.0).all() and (res.scores >= 1.0 - 1e-6).all()


def test_query_narrower_than_corpus(backend: str) -> None:
    x = _rng(11).standard_normal((200, 64)).astype(np.float32)
    q = _rng(12).standard_normal((2, 20))
    res = mf.topk(q, x, dim=20, k=9)
    assert_valid_topk(res.scores, res.indices, q, x, 20, 9)
    wide = np.concatenate([q, np.full((2, 44), 7.0)], axis=1)
    np.testing.assert_array_equal(mf.topk(wide, x, dim=20, k=9).scores, res.scores)


def test_query_wider_than_corpus(backend: str) -> None:
    x = _rng(13).standard_normal((50, 16)).astype(np.float32)
    q = _rng(14).standard_normal(40)
    res = mf.topk(q, x, dim=16, k=5)
    assert_valid_topk(res.scores, res.indices, q, x, 16, 5)
    np.testing.assert_array_equal(mf.topk(q, x, k=5).indices, res.indices)


def test_strided_views_equal_contiguous_copies(backend: str) -> None:
    big = _rng(15).standard_normal((1025, 300)).astype(np.float32)
    q = _rng(16).standard_normal((4, 300)).astype(np.float32)
    views = (
        (big[:, :256], 256),
        (big[:, :256], 97),
        (big[:, 3:68], 65),  # rows start off SIMD alignment
        (big[1::2, :64], 64),
        (big[::-1, :33], 33),  # negative row stride
        (big[:, 7:8], 1),
    )
    for view, dim in views:
        res = mf.topk(q, view, dim=dim, k=12)
        ref = mf.topk(q, np.ascontiguousarray(view), dim=dim, k=12)
        assert_same_topk(res, ref)
        assert_valid_topk(res.scores, res.indices, q, np.ascontiguousarray(view), dim, 12)


def test_zero_row_stride_broadcast_corpus(backend: str) -> None:
    """``np.broadcast_to(row, (N, D))`` has contiguous rows 0 bytes apart: N exact duplicates."""
    corpus = np.broadcast_to(_rng(25).standard_normal(40).astype(np.float32), (1000, 40))
    q = _rng(26).standard_normal(40)
    res = mf.topk(q, corpus, dim=33, k=17)
    assert res.indices.tolist() == list(range(17))
    assert (res.scores == res.scores[0]).all()
    copy = mf.topk(q, np.ascontiguousarray(corpus), dim=33, k=17)
    np.testing.assert_array_equal(res.scores, copy.scores)


def test_read_only_inputs(backend: str) -> None:
    x = _rng(27).standard_normal((100, 16)).astype(np.float32)
    q = _rng(28).standard_normal((2, 16))
    expected = mf.topk(q, x, k=5)
    x.flags.writeable = False
    q.flags.writeable = False
    got = mf.topk(q, x, k=5)
    assert_same_topk(got, expected)


def test_all_corpus_kinds_agree(backend: str, tmp_path: Path) -> None:
    x = _rng(17).standard_normal((777, 97)).astype(np.float32)
    x[100] = x[5]
    q = np.stack([x[5], _rng(18).standard_normal(97).astype(np.float32)])
    expected = mf.topk(q, x, dim=65, k=20)
    assert_valid_topk(expected.scores, expected.indices, q, x, 65, 20)
    for layout in LAYOUTS:
        got = mf.topk(q, corpus_as(x, layout, tmp_path), dim=65, k=20)
        np.testing.assert_array_equal(got.indices, expected.indices, err_msg=layout)
        np.testing.assert_array_equal(got.scores, expected.scores, err_msg=layout)
    assert expected.indices[0, :2].tolist() == [5, 100]


def test_large_corpus_against_oracle(backend: str) -> None:
    rng = _rng(19)
    x = rng.standard_normal((20000, 96)).astype(np.float32)
    x[rng.integers(0, 20000, 50)] = x[123]  # a block of duplicates of one row
    x[rng.integers(0, 20000, 20)] = 0.0
    assert x[123].any()
    q = np.concatenate([x[[123, 9999]], rng.standard_normal((3, 96)).astype(np.float32)])
    for dim, k in ((96, 100), (32, 10), (1, 3), (17, 64)):
        res = mf.topk(q, x, dim=dim, k=k)
        assert_valid_topk(res.scores, res.indices, q, x, dim, k)
    res = mf.topk(q[0], x, dim=96, k=100)
    dups = np.flatnonzero((x == x[123]).all(axis=1))
    assert res.indices[: len(dups)].tolist() == dups.tolist()


@pytest.mark.parametrize("kind", ["ties", "float64_rows"])
def test_many_chunks_batch_and_single(backend: str, kind: str) -> None:
    """Corpora split over several parallel chunks and blocks: exact ties across chunk borders
    (few distinct values) or many rows rescored in float64, batch and single queries alike."""
    rng = _rng(30)
    if kind == "ties":
        x = rng.integers(-1, 2, (3 * 4096 + 5, 7)).astype(np.float32)
    else:
        x = rng.standard_normal((20011, 33)).astype(np.float32)
        sel = rng.integers(0, len(x), 2000)
        x[sel] *= np.float32(10.0) ** rng.choice([-25, -20, 20, 25], size=(2000, 1))
    q = rng.standard_normal((6, x.shape[1])).astype(np.float32)
    q[0] = x[17]
    for k in (1, 100, 3000):
        res = mf.topk(q, x, k=k)
        assert_valid_topk(res.scores, res.indices, q, x, None, k)
        for b in (0, 5):
            one = mf.topk(q[b], x, k=k)
            np.testing.assert_array_equal(one.indices, res.indices[b])
            np.testing.assert_array_equal(one.scores, res.scores[b])


def test_wide_rows_against_oracle(backend: str) -> None:
    """Long accumulations (D = 1536) with mixed magnitudes stay within the scaled tolerance."""
    rng = _rng(29)
    scale = 10.0 ** rng.uniform(-3, 3, (700, 1))
    x = (rng.standard_normal((700, 1536)) * scale).astype(np.float32)
    q = np.concatenate([x[[3]], rng.standard_normal((2, 1536)).astype(np.float32)])
    for dim in (1536, 1535, 768, 257):
        res = mf.topk(q, x, dim=dim, k=25)
        assert_valid_topk(res.scores, res.indices, q, x, dim, 25)


def test_open_corpus_properties(tmp_path: Path) -> None:
    x = _rng(20).standard_normal((13, 7)).astype(np.float32)
    path = tmp_path / "emb.npy"
    np.save(path, x)
    c = mf.open_corpus(path)
    assert isinstance(c, mf.Corpus)
    assert c.shape == (13, 7) and len(c) == 13 and c.dim == 7
    assert Path(c.path) == path
    assert "13" in repr(c) and "7" in repr(c)
    np.testing.assert_array_equal(c.as_array(), x)
    assert mf.Corpus(str(path)).shape == (13, 7)
    # reused many times
    for k in (1, 5, 13):
        np.testing.assert_array_equal(
            mf.topk(x[:2], c, k=k).indices, mf.topk(x[:2], x, k=k).indices
        )


def test_npy_file_unchanged(tmp_path: Path) -> None:
    x = _rng(21).standard_normal((64, 8)).astype(np.float32)
    path = tmp_path / "emb.npy"
    np.save(path, x)
    before = path.read_bytes()
    mf.topk(x[0], path, k=3)
    mf.topk(x[0], mf.open_corpus(path), k=3)
    assert path.read_bytes() == before


@pytest.mark.parametrize("version", [(1, 0), (2, 0), (3, 0)])
def test_npy_format_versions(tmp_path: Path, version: tuple[int, int]) -> None:
    x = _rng(22).standard_normal((10, 5)).astype(np.float32)
    path = tmp_path / "v.npy"
    with open(path, "wb") as f:
        np.lib.format.write_array(f, x, version=version)
    np.testing.assert_array_equal(mf.topk(x, path, k=10).indices, mf.topk(x, x, k=10).indices)


def test_backends_report() -> None:
    info = mf.backends()
    assert set(info) >= {"available", "active"}
    assert "scalar" in info["available"]
    assert set(info["available"]) <= {"scalar", "avx2", "avx512", "neon"}
    assert info["active"] in info["available"]


def test_set_backend_round_trip() -> None:
    auto = mf.backends()["active"]
    try:
        for name in mf.backends()["available"]:
            mf.set_backend(name)
            assert mf.backends()["active"] == name
    finally:
        mf.set_backend(None)
    assert mf.backends()["active"] == auto


def test_all_backends_agree_closely() -> None:
    x = _rng(23).standard_normal((3000, 97)).astype(np.float32)
    q = _rng(24).standard_normal((3, 97)).astype(np.float32)
    results = {}
    try:
        for name in mf.backends()["available"]:
            mf.set_backend(name)
            results[name] = mf.topk(q, x, dim=97, k=3000)
    finally:
        mf.set_backend(None)
    ref = results["scalar"]
    for name, res in results.items():
        for b in range(3):
            by_row = np.empty(3000, np.float32)
            by_row[res.indices[b]] = res.scores[b]
            ref_row = np.empty(3000, np.float32)
            ref_row[ref.indices[b]] = ref.scores[b]
            np.testing.assert_allclose(by_row, ref_row, atol=score_tol(97), err_msg=name)


# ----------------------------------------------------------------- the oracle itself


def test_reference_hand_example() -> None:
    corpus = np.array([[1, 0, 5], [0, 1, 0], [1, 1, 0], [0, 0, 7], [-3, 0, 0]], np.float32)
    s, i = topk_reference(np.array([2.0, 0.0, 0.0]), corpus, dim=2, k=10)
    assert i.tolist() == [0, 2, 1, 3, 4]
    np.testing.assert_allclose(s, [1.0, 2**-0.5, 0.0, 0.0, -1.0])
    assert s.dtype == np.float64 and i.dtype == np.int64
    s, i = topk_reference(np.zeros((2, 3)), corpus, dim=None, k=2)
    assert i.tolist() == [[0, 1], [0, 1]] and (s == 0).all()


def test_reference_funnel() -> None:
    # at dim 1 rows 0, 1, 3 tie at 1.0 and row 2 scores -1, so stage 0 (3 candidates) drops row 2,
    # which would rank third at dim 2
    x = np.array([[1.0, -1.0], [1.0, 0.0], [-0.1, 1.0], [1.0, 0.5]], dtype=np.float32)
    q = np.array([1.0, 0.5])
    s, i = funnel_reference(q, x, k=3, dims=[1, 2], candidates=[3])
    assert i.tolist() == [3, 1, 0]
    assert topk_reference(q, x, dim=2, k=3)[1].tolist() == [3, 1, 2]
    np.testing.assert_allclose(s, prefix_cosine(q, x[[3, 1, 0]], 2)[0])
    # with 2 candidates, ties at stage 0 keep the lowest rows 0 and 1
    assert funnel_reference(q, x, k=2, dims=[1, 2], candidates=[2])[1].tolist() == [1, 0]
    s1, i1 = funnel_reference(np.stack([q, -q]), x, k=3, dims=[2], candidates=[])
    s2, i2 = topk_reference(np.stack([q, -q]), x, dim=2, k=3)
    np.testing.assert_array_equal(i1, i2)
    np.testing.assert_array_equal(s1, s2)
    with pytest.raises(ValueError):
        funnel_reference(q, x, k=2, dims=[1, 2], candidates=[])
