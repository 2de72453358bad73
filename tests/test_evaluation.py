"""matryo_fast.evaluation against independent scipy/numpy computations; encode-once == re-encode.

The numeric tests use fixed random embeddings and need only numpy/scipy; the model tests load the
shipped all-MiniLM-L6-v2 and skip cleanly without the ``train`` extra.
"""

from __future__ import annotations

import json
import math
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from model_stack import need_models

from matryo_fast import evaluation as ev
from matryo_fast.evaluation import (
    EvaluationReport,
    default_dims,
    evaluate_embeddings_retrieval,
    evaluate_embeddings_sts,
    retrieval_metrics,
    sts_metrics,
    truncate_normalize,
    validate_dims,
)

stats = pytest.importorskip("scipy.stats")

PAIRS = [
    ("A man is playing a guitar.", "A man plays the guitar.", 4.8),
    ("A woman is slicing an onion.", "A woman is cutting an onion.", 4.6),
    ("A dog runs in the park.", "A cat sleeps on the sofa.", 0.6),
    ("Kids are playing football.", "Children play soccer outside.", 4.0),
    ("The stock market fell today.", "A child is eating cereal.", 0.0),
    ("A plane is taking off.", "An airplane departs from the runway.", 4.4),
    ("Someone is cooking pasta.", "A person is boiling noodles.", 3.6),
    ("The man is riding a horse.", "A man rides a bicycle.", 1.8),
    ("Two women are talking.", "Two ladies chat with each other.", 4.2),
    ("It is raining heavily.", "The weather is sunny and warm.", 0.8),
    ("A boy is reading a book.", "A child reads a novel.", 3.8),
    ("The car is red.", "A man plays the guitar.", 0.2),
]


# ----------------------------------------------------------------------------- dims


def test_default_dims() -> None:
    assert default_dims(384) == [384, 256, 128, 64, 32]
    assert default_dims(768) == [768, 512, 256, 128, 64, 32]
    assert default_dims(256) == [256, 128, 64, 32]
    assert default_dims(100) == [100, 64, 32]
    assert default_dims(16) == [16]
    assert default_dims(384, smallest=16)[-1] == 16
    with pytest.raises(ValueError, match="full_dim must be a positive int, got 0"):
        default_dims(0)


def test_validate_dims_accepts_any_order() -> None:
    assert validate_dims([32, 384, 128], 384) == [384, 128, 32]
    assert validate_dims((np.int64(8),), 16) == [8]


@pytest.mark.parametrize(
    ("dims", "exc", "msg"),
    [
        ([], ValueError, "dims must not be empty"),
        ([384, 0], ValueError, "dims must be positive, got 0"),
        ([-8], ValueError, "dims must be positive, got -8"),
        ([384, 128, 128], ValueError, r"dims must be distinct, got duplicates \[128\]"),
        ([512], ValueError, "dims has 512, above the model's embedding dimension 384"),
        ([64.0], TypeError, r"dims must be ints, got 64.0 \(float\)"),
        ([True], TypeError, "dims must be ints, got True"),
        ("384", TypeError, "dims must be a sequence of ints, got a string"),
    ],
)
def test_validate_dims_errors(dims: Any, exc: type[Exception], msg: str) -> None:
    with pytest.raises(exc, match=msg):
        validate_dims(dims, 384)


# ----------------------------------------------------------------------------- numeric core


def test_truncate_normalize() -> None:
    x = np.array([[3.0, 4.0, 12.0], [0.0, 0.0, 1.0]], dtype=np.float32)
    out = truncate_normalize(x, 2)
    np.testing.assert_allclose(out, [[0.6, 0.8], [0.0, 0.0]], atol=1e-7)
    assert out.dtype == np.float32 and out.flags.c_contiguous
    with pytest.raises(ValueError, match=r"dim must be in \[1, 3\], got 4"):
        truncate_normalize(x, 4)
    with pytest.raises(ValueError, match="embeddings must be 2-D"):
        truncate_normalize(x[0], 2)
    with pytest.raises(TypeError, match="dim must be an int"):
        truncate_normalize(x, 2.0)  # type: ignore[arg-type]


def _fixed_sts(n: int = 80, d: int = 48) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    rng = np.random.default_rng(1234)
    a = rng.standard_normal((n, d)).astype(np.float32)
    noise = rng.standard_normal((n, d)).astype(np.float32)
    w = rng.random(n)
    b = (a * w[:, None] + noise * (1 - w[:, None])).astype(np.float32)
    gold = np.round(5 * w + 0.3 * rng.standard_normal(n), 1)
    return a, b, gold


def test_sts_metrics_match_scipy() -> None:
    a, b, gold = _fixed_sts()
    got = sts_metrics(a, b, gold, dims=[48, 16, 4])
    for d in (48, 16, 4):
        x, y = a[:, :d].astype(np.float64), b[:, :d].astype(np.float64)
        cos = (x * y).sum(1) / (np.sqrt((x * x).sum(1)) * np.sqrt((y * y).sum(1)))
        assert got["spearman"][d] == pytest.approx(100 * stats.spearmanr(gold, cos)[0], abs=1e-6)
        assert got["pearson"][d] == pytest.approx(100 * stats.pearsonr(gold, cos)[0], abs=1e-6)
    # the widths really differ (a wrong truncation would make them equal)
    assert got["spearman"][48] != pytest.approx(got["spearman"][4], abs=0.5)


def test_sts_metrics_errors() -> None:
    a, b, gold = _fixed_sts(10, 8)
    with pytest.raises(
        ValueError, match=r"emb1 and emb2 must have the same shape, got \(10, 8\) and \(9, 8\)"
    ):
        sts_metrics(a, b[:9], gold, dims=[8])
    with pytest.raises(ValueError, match="gold has 9 scores for 10 pairs"):
        sts_metrics(a, b, gold[:9], dims=[8])
    with pytest.raises(ValueError, match="STS needs at least 2 pairs, got 1"):
        sts_metrics(a[:1], b[:1], gold[:1], dims=[8])
    with pytest.raises(ValueError, match="gold scores are all equal"):
        sts_metrics(a, b, np.ones(10), dims=[8])
    with pytest.raises(ValueError, match="gold scores contain NaN or Inf"):
        sts_metrics(a, b, np.r_[gold[:9], np.nan], dims=[8])
    bad = a.copy()
    bad[3, 2] = np.inf
    with pytest.raises(ValueError, match="emb1 contains NaN or Inf"):
        sts_metrics(bad, b, gold, dims=[8])
    with pytest.raises(ValueError, match="dims has 9, above"):
        sts_metrics(a, b, gold, dims=[9])
    with pytest.raises(TypeError, match="emb1 must be a float array"):
        sts_metrics(a.astype(np.int32), b, gold, dims=[8])


def _exact_topk(q: np.ndarray, c: np.ndarray, d: int, k: int) -> np.ndarray:
    """Independent oracle: float64 cosine of prefixes, sorted by (score desc, row asc)."""
    x, y = q[:, :d].astype(np.float64), c[:, :d].astype(np.float64)
    s = (x @ y.T) / np.outer(np.linalg.norm(x, axis=1), np.linalg.norm(y, axis=1))
    rows = np.arange(c.shape[0])
    return np.stack([np.lexsort((rows, -r))[:k] for r in s])


def _ndcg_mrr(ranked: np.ndarray, gains: np.ndarray) -> tuple[float, float]:
    """Vectorised nDCG@10 / MRR@10 for one query (gains: dense per corpus row)."""
    top = gains[ranked[:10]]
    disc = 1.0 / np.log2(np.arange(2, 12))
    ideal = np.sort(gains)[::-1][:10]
    ndcg = float((top * disc[: len(top)]).sum() / (ideal * disc[: len(ideal)]).sum())
    hits = np.flatnonzero(top > 0)
    return ndcg, float(1.0 / (hits[0] + 1)) if hits.size else 0.0


def test_retrieval_metrics_match_numpy_oracle() -> None:
    rng = np.random.default_rng(7)
    corpus = rng.standard_normal((300, 64)).astype(np.float32)
    queries = (corpus[:40] + 0.8 * rng.standard_normal((40, 64))).astype(np.float32)
    gains = np.zeros((40, 300))
    relevant: list[dict[int, float]] = []
    for i in range(40):
        docs = rng.choice(300, size=3, replace=False)
        rel = {int(i): 2.0, int(docs[0]): 1.0, int(docs[1]): 0.5}
        relevant.append(rel)
        for doc, g in rel.items():
            gains[i, doc] = g
    got = retrieval_metrics(queries, corpus, dims=[64, 32, 8], k=10, relevant=relevant)
    ref = _exact_topk(queries, corpus, 64, 10)
    for d in (64, 32, 8):
        top = _exact_topk(queries, corpus, d, 10)
        recall = np.mean([len(np.intersect1d(top[i], ref[i])) / 10 for i in range(40)])
        assert got["recall@10"][d] == pytest.approx(100 * recall, abs=1e-9)
        both = [_ndcg_mrr(top[i], gains[i]) for i in range(40)]
        assert got["ndcg@10"][d] == pytest.approx(100 * np.mean([b[0] for b in both]), abs=1e-9)
        assert got["mrr@10"][d] == pytest.approx(100 * np.mean([b[1] for b in both]), abs=1e-9)
    assert got["recall@10"][64] == 100.0
    assert got["recall@10"][8] < 90.0


def test_retrieval_metrics_hand_computed() -> None:
    corpus = np.eye(4, dtype=np.float32)
    query = np.array([[1.0, 0.5, 0.25, 0.0]], dtype=np.float32)  # ranking 0, 1, 2, 3
    got = retrieval_metrics(query, corpus, dims=[4, 2], k=2, relevant=[{1: 1.0, 3: 2.0}])
    dcg = 1 / math.log2(3) + 2 / math.log2(5)
    idcg = 2 / math.log2(2) + 1 / math.log2(3)
    assert got["ndcg@10"][4] == pytest.approx(100 * dcg / idcg)
    assert got["mrr@10"][4] == pytest.approx(50.0)
    assert got["recall@2"] == {4: 100.0, 2: 100.0}
    # a plain collection means gain 1; a query without positives is skipped
    two = np.vstack([query, query])
    got2 = retrieval_metrics(two, corpus, dims=[4], relevant=[[2], {0: 0.0}])
    assert got2["mrr@10"][4] == pytest.approx(100 / 3)


def test_retrieval_metrics_errors() -> None:
    c = np.eye(4, dtype=np.float32)
    q = c[:2]
    with pytest.raises(ValueError, match="queries have 3 dims but the corpus has 4"):
        retrieval_metrics(q[:, :3], c, dims=[3])
    with pytest.raises(ValueError, match="k must be a positive int, got 0"):
        retrieval_metrics(q, c, dims=[4], k=0)
    with pytest.raises(ValueError, match=r"relevant must have one entry per query \(2\), got 1 entries"):
        retrieval_metrics(q, c, dims=[4], relevant=[[0]])
    with pytest.raises(ValueError, match=r"relevant\[1\] has row 9, outside the corpus \[0, 4\)"):
        retrieval_metrics(q, c, dims=[4], relevant=[[0], [9]])
    with pytest.raises(ValueError, match=r"relevant\[0\]\[0\] must be a finite gain >= 0, got -1"):
        retrieval_metrics(q, c, dims=[4], relevant=[{0: -1}, [1]])
    with pytest.raises(TypeError, match=r"relevant\[0\] must hold corpus row indices"):
        retrieval_metrics(q, c, dims=[4], relevant=[["a"], [1]])
    with pytest.raises(ValueError, match="relevant has no query with a positive label"):
        retrieval_metrics(q, c, dims=[4], relevant=[[], {1: 0}])
    with pytest.raises(ValueError, match="need at least one query and one corpus row"):
        retrieval_metrics(q[:0], c, dims=[4])


# ----------------------------------------------------------------------------- report


def _report() -> EvaluationReport:
    a, b, gold = _fixed_sts()
    r1 = evaluate_embeddings_sts(a, b, gold, dims=[16, 4], model_name="m1", dataset="fixed")
    r2 = evaluate_embeddings_sts(b, a, gold, dims=[32, 8], model_name="m2", dataset="fixed")
    return EvaluationReport.combine([r1, r2])


def test_report_adds_full_dim_and_relative() -> None:
    rep = _report()
    assert rep.models == ["m1", "m2"]
    assert rep.dims("m1") == [48, 16, 4]  # the full width is always scored
    assert rep.metrics("m1") == ["spearman", "pearson"]
    assert rep.relative("m1", 48) == pytest.approx(100.0)
    assert rep.relative("m1", 4) == pytest.approx(100 * rep.score("m1", 4) / rep.score("m1", 48))
    with pytest.raises(KeyError, match="no model 'zz' in the report"):
        rep.score("zz", 4)


def test_report_json_roundtrip(tmp_path: Path) -> None:
    rep = _report()
    path = tmp_path / "r.json"
    text = rep.to_json(path)
    assert json.loads(path.read_text()) == json.loads(text)
    back = EvaluationReport.from_json(path)
    assert back.results == rep.results and back.full_dims == rep.full_dims
    assert EvaluationReport.from_json(text).primary_metric == "spearman"
    assert json.loads(text)["relative"]["m2"]["spearman"]["48"] == pytest.approx(100.0)
    with pytest.raises(ValueError, match="not an evaluation report"):
        EvaluationReport.from_json('{"task": "sts"}')


def test_report_markdown() -> None:
    rep = _report()
    md = rep.to_markdown()
    assert "| dim | m1 | m2 |" in md
    s = rep.score("m1", 16)
    assert f"| 16 | {s:.2f} ({rep.relative('m1', 16):.1f}%) | – |" in md
    assert "**m2** (full dim 48)" in md


def test_report_combine_errors() -> None:
    a, b, gold = _fixed_sts(10, 8)
    r = evaluate_embeddings_sts(a, b, gold, dims=[8], dataset="x")
    other = evaluate_embeddings_sts(a, b, gold, dims=[8], dataset="y")
    with pytest.raises(ValueError, match="cannot combine 'sts' on 'y' with 'sts' on 'x'"):
        EvaluationReport.combine([r, other])
    with pytest.raises(ValueError, match="model label 'model' appears in more than one report"):
        EvaluationReport.combine([r, r])
    with pytest.raises(ValueError, match="combine needs at least one report"):
        EvaluationReport.combine([])


def test_report_plot(tmp_path: Path) -> None:
    pytest.importorskip("matplotlib")
    rep = _report()
    for kind in ("both", "scores", "relative"):
        out = rep.plot(tmp_path / f"{kind}.png", kind=kind)  # type: ignore[arg-type]
        assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    with pytest.raises(ValueError, match="kind must be 'both', 'scores' or 'relative'"):
        rep.plot(tmp_path / "x.png", kind="bars")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="metric 'ndcg@10' not in the report for 'm1'"):
        rep.plot(tmp_path / "x.png", metric="ndcg@10")


def test_retrieval_report_primary_metric() -> None:
    rng = np.random.default_rng(3)
    c = rng.standard_normal((50, 32)).astype(np.float32)
    r = evaluate_embeddings_retrieval(c[:5], c, dims=[16], k=5)
    assert r.primary_metric == "recall@5" and r.dims() == [32, 16]
    r2 = evaluate_embeddings_retrieval(c[:5], c, dims=[16], relevant=[[i] for i in range(5)])
    assert r2.primary_metric == "ndcg@10"
    assert r2.score("model", 32) == pytest.approx(100.0)  # each query is its own corpus row


# ----------------------------------------------------------------------------- lazy imports


def test_import_needs_no_torch() -> None:
    code = (
        "import sys, matryo_fast.evaluation, matryo_fast.training, matryo_fast.models, "
        "matryo_fast.data, matryo_fast.reproduce, matryo_fast.cli\n"
        "heavy = ('torch', 'sentence_transformers', 'transformers', 'datasets', 'matplotlib')\n"
        "print([m for m in heavy if m in sys.modules])"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


def test_missing_extra_message(monkeypatch: pytest.MonkeyPatch) -> None:
    from matryo_fast.models import load_model

    monkeypatch.setitem(sys.modules, "sentence_transformers", None)
    monkeypatch.setitem(sys.modules, "sentence_transformers.base.evaluation.evaluator", None)
    monkeypatch.setattr(ev, "_EVALUATOR_CLASS", None)
    hint = r'pip install "matryo-fast\[train\]"'
    with pytest.raises(ImportError, match="needs the optional dependency 'sentence_transformers'.*" + hint):
        load_model()
    with pytest.raises(ImportError, match=hint):
        ev.MatryoshkaSTSEvaluator  # noqa: B018
    from matryo_fast.training import train

    with pytest.raises(ImportError, match=hint):
        train("x.tsv", output_dir="unused")


def test_unknown_attribute() -> None:
    with pytest.raises(AttributeError, match="has no attribute 'nope'"):
        ev.nope  # type: ignore[attr-defined]  # noqa: B018


# ----------------------------------------------------------------------------- with a model


@pytest.fixture(scope="module")
def model() -> Iterator[Any]:
    need_models()
    from matryo_fast.models import load_model

    m = load_model()
    m.max_seq_length = 32
    yield m


def test_encode_once_equals_reencode_with_truncate_dim(model: Any) -> None:
    from matryo_fast.models import encode

    texts = [p[0] for p in PAIRS] + [p[1] for p in PAIRS]
    full = encode(model, texts)
    assert full.shape == (len(texts), 384) and full.dtype == np.float32 and full.flags.c_contiguous
    for d in (256, 64, 16):
        again = model.encode(texts, truncate_dim=d, convert_to_numpy=True, batch_size=64)
        again = again / np.linalg.norm(again, axis=1, keepdims=True)
        np.testing.assert_allclose(truncate_normalize(full, d), again, atol=2e-5)


def test_evaluate_sts_equals_sentence_transformers_per_dim(model: Any) -> None:
    from sentence_transformers.sentence_transformer.evaluation import EmbeddingSimilarityEvaluator

    from matryo_fast.evaluation import evaluate_sts

    s1, s2, gold = (list(x) for x in zip(*PAIRS, strict=True))
    rep = evaluate_sts(model, (s1, s2, gold), dims=[384, 128, 32, 8], name="mini")
    assert rep.meta["unique_sentences"] == 23  # "A man plays the guitar." appears twice
    for d in (384, 128, 32, 8):
        ref = EmbeddingSimilarityEvaluator(
            s1, s2, gold, similarity_fn_names=["cosine"], truncate_dim=d, write_csv=False
        )(model)
        assert rep.score("mini", d, "spearman") == pytest.approx(100 * ref["spearman_cosine"], abs=1e-4)
        assert rep.score("mini", d, "pearson") == pytest.approx(100 * ref["pearson_cosine"], abs=1e-4)


def test_evaluator_subclass(model: Any, tmp_path: Path) -> None:
    from sentence_transformers.sentence_transformer.evaluation import SentenceEvaluator

    s1, s2, gold = (list(x) for x in zip(*PAIRS, strict=True))
    e = ev.MatryoshkaSTSEvaluator(s1, s2, gold, dims=[384, 64], name="dev")
    assert isinstance(e, SentenceEvaluator)
    metrics = e(model, output_path=str(tmp_path))
    rep = e.last_report
    assert rep is not None
    assert metrics["dev_spearman_64"] == pytest.approx(rep.score("dev", 64) / 100)
    assert metrics["dev_spearman_mean"] == pytest.approx((rep.score("dev", 384) + rep.score("dev", 64)) / 200)
    assert e.primary_metric == "dev_spearman_mean"
    assert (tmp_path / "matryoshka_sts_dev.json").is_file()
    with pytest.raises(ValueError, match="differ in length: 12, 11, 12"):
        ev.MatryoshkaSTSEvaluator(s1, s2[:11], gold)
    with pytest.raises(ValueError, match="STS needs at least 2 pairs, got 1"):
        ev.MatryoshkaSTSEvaluator(s1[:1], s2[:1], gold[:1])


def test_evaluate_retrieval_with_model(model: Any) -> None:
    from matryo_fast.evaluation import evaluate_retrieval

    corpus = [p[1] for p in PAIRS]
    queries = [p[0] for p in PAIRS[:6]]
    rep = evaluate_retrieval(model, queries, corpus, dims=[64], k=3, relevant=[[i] for i in range(6)])
    assert rep.score("model", 384, "recall@3") == 100.0
    assert 50.0 <= rep.score("model", 384, "mrr@10") <= 100.0
    with pytest.raises(ValueError, match="need at least one query and one corpus text, got 0 and 12"):
        evaluate_retrieval(model, [], corpus)


def test_encode_errors(model: Any) -> None:
    from matryo_fast.models import encode

    with pytest.raises(TypeError, match="texts must be a sequence of strings, not a single string"):
        encode(model, "hello")
    with pytest.raises(TypeError, match=r"texts\[1\] must be a str, got int"):
        encode(model, ["a", 3])  # type: ignore[list-item]
    with pytest.raises(ValueError, match="batch_size must be a positive int, got 0"):
        encode(model, ["a"], batch_size=0)
    assert encode(model, []).shape == (0, 384)


def test_encode_ignores_model_truncate_dim(model: Any) -> None:
    from matryo_fast.models import encode

    model.truncate_dim = 64
    try:
        assert encode(model, ["a cat"]).shape == (1, 384)
    finally:
        model.truncate_dim = None


def test_load_model_errors(tmp_path: Path) -> None:
    pytest.importorskip("sentence_transformers")
    from matryo_fast.models import load_model

    with pytest.raises(FileNotFoundError, match="model folder not found: .*missing"):
        load_model(tmp_path / "missing")
    with pytest.raises(FileNotFoundError, match="model folder not found: ./nope"):
        load_model("./nope")
    f = tmp_path / "file.bin"
    f.write_bytes(b"x")
    with pytest.raises(FileNotFoundError, match="model must be a folder, got a file"):
        load_model(f)
    with pytest.raises(FileNotFoundError, match="is not a sentence-transformers model folder"):
        load_model(tmp_path)
