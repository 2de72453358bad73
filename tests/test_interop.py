"""CPU torch tensors as queries and corpora without a copy; CUDA refused; ``mf.semantic_search``
against sentence-transformers' own ``util.semantic_search`` and the float64 oracle."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest

import matryo_fast as mf
from matryo_fast import _core
from matryo_fast._reference import topk_reference

torch = pytest.importorskip("torch")


def _rng_matrix(n: int, d: int, seed: int) -> np.ndarray[Any, Any]:
    return np.random.default_rng(seed).standard_normal((n, d)).astype(np.float32)


def test_cpu_tensors_are_scanned_in_place(monkeypatch: pytest.MonkeyPatch) -> None:
    corpus_t = torch.from_numpy(_rng_matrix(300, 48, 0))
    query_t = torch.from_numpy(_rng_matrix(4, 48, 1))
    seen: list[Any] = []
    real = _core.topk

    def spy(q: Any, c: Any, dim: int, k: int, precision: str) -> Any:
        seen.append((q, c))
        return real(q, c, dim, k, precision)

    monkeypatch.setattr(_core, "topk", spy)
    for dim in (48, 32):
        res = mf.topk(query_t, corpus_t, dim=dim, k=5)
        q_seen, c_seen = seen[-1]
        # the arrays handed to the core are views of the tensors' own memory (a query searched
        # at a narrower width is sliced to its prefix, as a numpy query is: that copy is small)
        assert np.shares_memory(c_seen, corpus_t.numpy())
        assert np.shares_memory(q_seen, query_t.numpy()) == (dim == 48)
        want_s, want_i = topk_reference(query_t.numpy(), corpus_t.numpy(), dim=dim, k=5)
        np.testing.assert_array_equal(res.indices, want_i)
        np.testing.assert_allclose(res.scores, want_s, atol=1e-5)


def test_tensor_that_requires_grad_and_strided_rows() -> None:
    base = torch.from_numpy(_rng_matrix(200, 64, 2))
    q = torch.from_numpy(_rng_matrix(1, 64, 3))[0].requires_grad_(True)
    res = mf.topk(q, base[:, :40], k=3)  # a row-strided view, used in place as numpy arrays are
    want_s, want_i = topk_reference(q.detach().numpy(), base.numpy()[:, :40], dim=40, k=3)
    np.testing.assert_array_equal(res.indices, want_i)


class _FakeDevice:
    """An object that says it lives in CUDA memory, as a CUDA tensor does (no GPU needed)."""

    def __init__(self, kind: int) -> None:
        self.kind = kind

    def __dlpack_device__(self) -> tuple[int, int]:
        return (self.kind, 0)

    def __dlpack__(self, **_: Any) -> Any:  # pragma: no cover - never reached
        raise AssertionError("must not be exported")


@pytest.mark.parametrize("kind, name", [(2, "CUDA"), (10, "ROCm"), (8, "Metal")])
def test_device_tensors_are_refused_clearly(kind: int, name: str) -> None:
    corpus = _rng_matrix(10, 8, 4)
    with pytest.raises(TypeError, match=f"query is a tensor in {name} memory.*query.cpu"):
        mf.topk(_FakeDevice(kind), corpus, k=2)
    with pytest.raises(TypeError, match=f"corpus is a tensor in {name} memory"):
        mf.topk(corpus[0], _FakeDevice(kind), k=2)


def test_half_and_bfloat16_tensors_name_the_dtype() -> None:
    corpus = _rng_matrix(10, 8, 5)
    with pytest.raises(TypeError, match="float16"):
        mf.topk(corpus[0], torch.from_numpy(corpus).half(), k=2)
    with pytest.raises(TypeError, match="bfloat16"):
        mf.topk(torch.from_numpy(corpus[0]).bfloat16(), corpus, k=2)


@pytest.mark.parametrize(
    "n, d, b, top_k, seed", [(500, 64, 7, 10, 0), (40, 33, 3, 50, 1), (1000, 384, 16, 5, 2)]
)
def test_semantic_search_matches_sentence_transformers(n: int, d: int, b: int, top_k: int, seed: int) -> None:
    util = pytest.importorskip("sentence_transformers.util")
    corpus = _rng_matrix(n, d, seed)
    queries = _rng_matrix(b, d, seed + 100)
    corpus[3] = 0.0  # a zero row scores 0 in both
    want = util.semantic_search(torch.from_numpy(queries), torch.from_numpy(corpus), top_k=top_k)
    got = mf.semantic_search(torch.from_numpy(queries), torch.from_numpy(corpus), top_k=top_k)
    assert len(got) == len(want) == b
    for g, w in zip(got, want):
        assert [h["corpus_id"] for h in g] == [h["corpus_id"] for h in w]
        np.testing.assert_allclose([h["score"] for h in g], [h["score"] for h in w], atol=1e-5)
        assert all(type(h["corpus_id"]) is int and type(h["score"]) is float for h in g)
    # numpy in, one 1-D query, and a list of 1-D tensors behave as in sentence-transformers
    one = mf.semantic_search(queries[0], corpus, top_k=top_k)
    assert [h["corpus_id"] for h in one[0]] == [h["corpus_id"] for h in want[0]]
    listed = mf.semantic_search([torch.from_numpy(q) for q in queries[:2]], corpus, top_k=top_k)
    assert [[h["corpus_id"] for h in r] for r in listed] == [[h["corpus_id"] for h in r] for r in want[:2]]


def test_semantic_search_at_a_prefix_width_matches_truncated_sentence_transformers() -> None:
    util = pytest.importorskip("sentence_transformers.util")
    corpus, queries = _rng_matrix(800, 128, 7), _rng_matrix(5, 128, 8)
    want = util.semantic_search(torch.from_numpy(queries[:, :32]), torch.from_numpy(corpus[:, :32]), top_k=8)
    got = mf.semantic_search(queries, corpus, top_k=8, dim=32)
    assert [[h["corpus_id"] for h in r] for r in got] == [[h["corpus_id"] for h in r] for r in want]
    _, idx = topk_reference(queries, corpus, dim=32, k=8)
    assert [[h["corpus_id"] for h in r] for r in got] == idx.tolist()
