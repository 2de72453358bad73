"""The evaluator's precision axis against float64 oracles written here, independently of
``matryo_fast``: binary scores from ``np.packbits`` codes and their Hamming distances, int8
scores from sentence-transformers' ``quantize_embeddings`` codes, de-quantized to bin centres;
correlations from scipy, ranking metrics from their textbook formulas. Float32 STS scores are
also compared with sentence-transformers' ``EmbeddingSimilarityEvaluator(precision="float32",
truncate_dim=d)`` on the same embeddings (served by a ``StaticEmbedding`` model)."""

from __future__ import annotations

import json
import math
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from model_stack import STS, need_models, write_tsv

from matryo_fast.evaluation import (
    EvaluationReport,
    evaluate_embeddings_retrieval,
    evaluate_embeddings_sts,
    retrieval_precision_metrics,
    sts_precision_metrics,
)

stats = pytest.importorskip("scipy.stats")
ALL = ("float32", "int8", "binary")
DIMS = [48, 32, 20, 8]  # 20: a width that is not a multiple of 8 (the last code byte masked)


def quantize(x: np.ndarray, precision: str, **kw: Any) -> np.ndarray:
    st_quant = pytest.importorskip("sentence_transformers.util.quantization")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        out: np.ndarray = st_quant.quantize_embeddings(x, precision, **kw)
    return out


# ----------------------------------------------------------------------------- oracles


def unit(x: np.ndarray) -> np.ndarray:
    x = x.astype(np.float64)
    n = np.linalg.norm(x, axis=1, keepdims=True)
    return np.divide(x, n, out=np.zeros_like(x), where=n > 0)


def hamming_score(qa: np.ndarray, xb: np.ndarray, d: int) -> np.ndarray:
    """``1 - 2 * hamming / d`` between every packed code of ``qa`` and of ``xb``, ``(A, B)``."""
    ca = np.packbits(qa[:, :d] > 0, axis=1)
    cb = np.packbits(xb[:, :d] > 0, axis=1)
    ham = np.unpackbits(ca[:, None, :] ^ cb[None, :, :], axis=2).sum(axis=2)  # pad bits are 0 on both
    return 1.0 - 2.0 * ham / d


def dequantize(codes: np.ndarray, ranges: np.ndarray) -> np.ndarray:
    """Bin centres of sentence-transformers int8 codes, in float32 as the contract states."""
    lo, hi = ranges.astype(np.float32)
    step = (hi - lo) / np.float32(255)
    step = np.where(step == 0, np.float32(1), step).astype(np.float32)
    return (lo + step * (codes.astype(np.float32) + np.float32(128.5))).astype(np.float64)


def sts_oracle(a: np.ndarray, b: np.ndarray, gold: np.ndarray, ranges: np.ndarray | None) -> dict[str, Any]:
    """``{precision: {"spearman"|"pearson": {d: x100}}}`` with both sides at the precision."""
    if ranges is None:
        both = np.vstack((a, b))
        ranges = np.vstack((both.min(axis=0), both.max(axis=0)))
        codes = quantize(both, "int8")
        ca, cb = codes[: len(a)], codes[len(a) :]
    else:
        ca, cb = quantize(a, "int8", ranges=ranges), quantize(b, "int8", ranges=ranges)
    va, vb = dequantize(ca, ranges), dequantize(cb, ranges)
    out: dict[str, Any] = {p: {"spearman": {}, "pearson": {}} for p in ALL}
    for d in DIMS:
        scores = {
            "float32": (unit(a[:, :d]) * unit(b[:, :d])).sum(axis=1),
            "binary": np.array([hamming_score(a[i : i + 1], b[i : i + 1], d)[0, 0] for i in range(len(a))]),
            "int8": (unit(va[:, :d]) * unit(vb[:, :d])).sum(axis=1),
        }
        for p, s in scores.items():
            out[p]["spearman"][d] = 100 * stats.spearmanr(gold, s).statistic
            out[p]["pearson"][d] = 100 * stats.pearsonr(gold, s).statistic
    return out


def ranked(scores: np.ndarray, depth: int) -> np.ndarray:
    """Rows by descending score, ties by ascending row, per query."""
    rows = np.arange(scores.shape[1])
    return np.stack([np.lexsort((rows, -s))[:depth] for s in scores])


def ndcg10(top: list[int], gains: dict[int, float]) -> float:
    dcg = sum(gains.get(r, 0.0) / math.log2(i + 2) for i, r in enumerate(top[:10]))
    ideal = sorted(gains.values(), reverse=True)[:10]
    return dcg / sum(g / math.log2(i + 2) for i, g in enumerate(ideal))


def separated(scores: np.ndarray, depth: int, gap: float) -> bool:
    """No two of the first ``depth + 1`` ranked scores of any query closer than ``gap`` (so a
    float32 computation cannot order them differently from this float64 one)."""
    top = -np.sort(-scores, axis=1)[:, : depth + 1]
    return bool((np.diff(-top, axis=1) > gap).all())


# ----------------------------------------------------------------------------- data


def sts_data(seed: int, n: int = 300, dim: int = 48) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    a = rng.standard_normal((n, dim)).astype(np.float32)
    b = (a + rng.uniform(0.2, 2.0, (n, 1)) * rng.standard_normal((n, dim))).astype(np.float32)
    a[rng.random(a.shape) < 0.05] = 0.0  # exact zeros: the sign bit of 0 is 0 ("> 0")
    gold = np.round(5 * (unit(a) * unit(b)).sum(axis=1) + rng.normal(0, 0.5, n), 1)
    return a, b, gold


def retrieval_data(seed: int) -> tuple[np.ndarray, np.ndarray, list[dict[int, float]]]:
    rng = np.random.default_rng(seed)
    corpus = rng.standard_normal((150, 48)).astype(np.float32)
    picks = rng.integers(0, 150, 16)
    queries = (corpus[picks] + 0.9 * rng.standard_normal((16, 48))).astype(np.float32)
    rels = [{int(p): 2.0, int(rng.integers(0, 150)): 1.0} for p in picks]
    return queries, corpus, rels


# ----------------------------------------------------------------------------- STS


@pytest.mark.parametrize("given_ranges", [False, True])
def test_sts_every_width_and_precision_matches_the_oracle(given_ranges: bool) -> None:
    a, b, gold = sts_data(1)
    ranges = np.array([np.full(48, -1.5), np.full(48, 1.5)], dtype=np.float32) if given_ranges else None
    before = (a.copy(), b.copy())
    got = sts_precision_metrics(a, b, gold, dims=DIMS, precisions=("binary", "int8"), int8_ranges=ranges)
    want = sts_oracle(a, b, gold, ranges)
    assert list(got) == list(ALL)
    for p in ALL:
        for met in ("spearman", "pearson"):
            assert list(got[p][met]) == DIMS
            for d in DIMS:
                assert got[p][met][d] == pytest.approx(want[p][met][d], abs=1e-6), (p, met, d)
    # the axis changes the scores: int8 close to float32, binary further away
    assert got["binary"]["spearman"][8] != got["float32"]["spearman"][8]
    assert np.array_equal(a, before[0]) and np.array_equal(b, before[1])


def test_sts_report_axis_and_sentence_transformers_float32() -> None:
    """The report's float32 column is its ordinary table, and both equal what
    sentence-transformers' evaluator computes with truncate_dim on the same embeddings."""
    torch = pytest.importorskip("torch")
    st = pytest.importorskip("sentence_transformers")
    from sentence_transformers.sentence_transformer.evaluation import EmbeddingSimilarityEvaluator
    from sentence_transformers.sentence_transformer.modules import StaticEmbedding
    from tokenizers import Tokenizer, models, pre_tokenizers

    a, b, gold = sts_data(2, n=120)
    emb = np.vstack((a, b))
    tok = Tokenizer(models.WordLevel({f"s{i}": i for i in range(len(emb))}, unk_token="s0"))
    tok.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    model = st.SentenceTransformer(modules=[StaticEmbedding(tok, embedding_weights=emb)], device="cpu")
    with torch.no_grad():
        served = model.encode([f"s{i}" for i in range(len(emb))], convert_to_numpy=True)
    assert np.array_equal(served, emb)  # the model serves exactly these embeddings
    report = evaluate_embeddings_sts(a, b, gold, dims=DIMS, precisions=ALL)
    plain = evaluate_embeddings_sts(a, b, gold, dims=DIMS)
    assert report.results == plain.results
    assert report.by_precision["model"]["float32"] == plain.results["model"]
    s1, s2 = [f"s{i}" for i in range(len(a))], [f"s{i}" for i in range(len(a), len(emb))]
    for d in DIMS:
        ev = EmbeddingSimilarityEvaluator(s1, s2, gold.tolist(), precision="float32", truncate_dim=d)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            theirs = ev(model)
        assert report.score("model", d, "spearman") == pytest.approx(
            100 * theirs["spearman_cosine"], abs=1e-4
        )
        assert report.score("model", d, "pearson") == pytest.approx(100 * theirs["pearson_cosine"], abs=1e-4)


# ----------------------------------------------------------------------------- retrieval


def test_retrieval_every_width_and_precision_matches_the_oracle() -> None:
    q, c, rels = retrieval_data(3)
    before = (q.copy(), c.copy())
    got = retrieval_precision_metrics(q, c, dims=DIMS, k=10, relevant=rels, precisions=ALL)
    truth_scores = unit(q) @ unit(c).T
    assert separated(truth_scores, 10, 1e-5)
    truth = ranked(truth_scores, 10)
    ranges = np.vstack((c.min(axis=0), c.max(axis=0)))
    deq = dequantize(quantize(c, "int8"), ranges)  # ranges of the corpus, as sentence-transformers takes them
    for d in DIMS:
        scores = {
            "float32": unit(q[:, :d]) @ unit(c[:, :d]).T,
            "int8": unit(q[:, :d]) @ unit(deq[:, :d]).T,
            "binary": hamming_score(q, c, d),  # exact: ties are real ties, broken by row
        }
        for p, s in scores.items():
            if p != "binary":
                assert separated(s, 10, 1e-5), (p, d)
            top = ranked(s, 10)
            recall = np.mean([len(set(t) & set(r)) / 10 for t, r in zip(top.tolist(), truth.tolist())])
            ndcg = np.mean([ndcg10(t, g) for t, g in zip(top.tolist(), rels)])
            mrr = np.mean(
                [
                    next((1 / (i + 1) for i, r in enumerate(t) if r in g), 0.0)
                    for t, g in zip(top.tolist(), rels)
                ]
            )
            assert got[p]["recall@10"][d] == pytest.approx(100 * recall, abs=1e-9), (p, d)
            assert got[p]["ndcg@10"][d] == pytest.approx(100 * ndcg, abs=1e-9), (p, d)
            assert got[p]["mrr@10"][d] == pytest.approx(100 * mrr, abs=1e-9), (p, d)
    assert got["float32"]["recall@10"][48] == 100.0
    assert got["binary"]["recall@10"][48] < got["int8"]["recall@10"][48]
    assert np.array_equal(q, before[0]) and np.array_equal(c, before[1])


def test_retrieval_given_int8_ranges() -> None:
    q, c, _ = retrieval_data(4)
    ranges = np.array([np.full(48, -2.0), np.full(48, 2.5)], dtype=np.float32)
    got = retrieval_precision_metrics(q, c, dims=[48, 16], k=5, precisions=["int8"], int8_ranges=ranges)
    assert list(got) == ["float32", "int8"]
    truth = ranked(unit(q) @ unit(c).T, 5)
    deq = dequantize(quantize(c, "int8", ranges=ranges), ranges)
    for d in (48, 16):
        s = unit(q[:, :d]) @ unit(deq[:, :d]).T
        assert separated(s, 5, 1e-5)
        want = np.mean([len(set(t) & set(r)) / 5 for t, r in zip(ranked(s, 5).tolist(), truth.tolist())])
        assert got["int8"]["recall@5"][d] == pytest.approx(100 * want, abs=1e-9)


# ----------------------------------------------------------------------------- report


def test_report_table_json_and_heat_map(tmp_path: Path) -> None:
    q, c, rels = retrieval_data(5)
    rep = evaluate_embeddings_retrieval(q, c, dims=DIMS, relevant=rels, precisions=ALL, funnel_candidates=20)
    plain = evaluate_embeddings_retrieval(q, c, dims=DIMS, relevant=rels, funnel_candidates=20)
    assert plain.by_precision == {} and "bytes per vector" not in plain.to_markdown()
    assert "by_precision" not in plain.to_dict()
    assert rep.to_markdown().startswith(plain.to_markdown())  # the old output, then the axis
    md = rep.precision_markdown()
    tables = [t for t in md.split("\n\n") if t.startswith("| dim |")]
    assert len(tables) == 2  # recall@10 and ndcg@10
    for t in tables:
        rows = t.strip().splitlines()
        assert rows[0] == "| dim | float32 | int8 | binary |"
        assert [r.split(" | ")[0] for r in rows[2:]] == [f"| {d}" for d in DIMS]
        assert all(r.count("|") == 5 for r in rows)
    row20 = next(r for r in tables[0].splitlines() if r.startswith("| 20 |"))
    assert "(80 B)" in row20 and "(20 B)" in row20 and "(3 B)" in row20  # 4 d, d, ceil(d / 8)
    obj = json.loads(rep.to_json())
    assert obj["bytes_per_vector"] == {
        "float32": {str(d): 4 * d for d in DIMS},
        "int8": {str(d): d for d in DIMS},
        "binary": {str(d): -(-d // 8) for d in DIMS},
    }
    assert set(obj["by_precision"]["model"]["float32"]) == {
        "recall@10",
        "ndcg@10",
        "mrr@10",
        "funnel_recall@10",
    }
    assert set(obj["by_precision"]["model"]["binary"]) == {"recall@10", "ndcg@10", "mrr@10"}
    back = EvaluationReport.from_json(rep.to_json())
    assert back.by_precision == rep.by_precision and back.to_markdown() == rep.to_markdown()
    both = EvaluationReport.combine([rep, evaluate_embeddings_retrieval(q, c, dims=DIMS, model_name="other")])
    assert list(both.by_precision) == ["model"]
    pytest.importorskip("matplotlib")
    out = rep.plot_precision(tmp_path / "heat.png")
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    with pytest.raises(ValueError, match="no precision axis"):
        plain.plot_precision(tmp_path / "none.png")
    with pytest.raises(ValueError, match="no precision axis"):
        plain.precision_markdown()


# ----------------------------------------------------------------------------- bad input


def test_bad_precisions_and_ranges() -> None:
    a, b, gold = sts_data(6, n=20)
    q, c, _ = retrieval_data(6)
    known = "known: float32, int8, binary"
    with pytest.raises(ValueError, match=f"unknown precision 'int4' \\({known}\\)"):
        evaluate_embeddings_sts(a, b, gold, precisions=("float32", "int4"))
    with pytest.raises(ValueError, match=f"unknown precision 'ubinary' \\({known}\\)"):
        evaluate_embeddings_retrieval(q, c, precisions=["ubinary"])
    with pytest.raises(TypeError, match="precisions must be a sequence of names"):
        evaluate_embeddings_sts(a, b, gold, precisions="int8")
    with pytest.raises(ValueError, match=r"int8_ranges must have shape \(2, 48\)"):
        evaluate_embeddings_sts(a, b, gold, precisions=ALL, int8_ranges=np.zeros((2, 12)))
    with pytest.raises(ValueError, match=r"int8_ranges must have shape \(2, 48\)"):
        evaluate_embeddings_retrieval(q, c, precisions=ALL, int8_ranges=np.zeros((48, 2)))
    nan = np.zeros((2, 48))
    nan[1, 3] = np.nan
    with pytest.raises(ValueError, match="int8_ranges contains NaN or Inf"):
        evaluate_embeddings_retrieval(q, c, precisions=ALL, int8_ranges=nan)
    with pytest.raises(ValueError, match="int8_ranges goes with the int8 precision"):
        evaluate_embeddings_retrieval(q, c, precisions=["binary"], int8_ranges=np.ones((2, 48)))
    with pytest.raises(ValueError, match="int8_ranges goes with the int8 precision"):
        evaluate_embeddings_sts(a, b, gold, int8_ranges=np.ones((2, 48)))


def test_cli_eval_precisions(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    need_models()
    from matryo_fast.cli import main

    sts = write_tsv(tmp_path / "sts.tsv", ["sentence1", "sentence2", "score"], STS)
    assert main(["eval", "--sts", str(sts), "--precisions", "float32,int4"]) == 1
    err = capsys.readouterr().err.strip().splitlines()[-1]
    assert err == "matryo: error: unknown precision 'int4' (known: float32, int8, binary)"
    argv = ["eval", "--sts", str(sts), "--dims", "64", "--precisions", "int8,binary"]
    argv += ["--json", str(tmp_path / "r.json"), "--plot", str(tmp_path / "r.png")]
    assert main(argv) == 0
    out = capsys.readouterr().out
    assert "| dim | float32 | int8 | binary |" in out
    obj = json.loads((tmp_path / "r.json").read_text())
    assert set(obj["by_precision"]["all-MiniLM-L6-v2"]) == set(ALL)
    assert obj["bytes_per_vector"]["binary"] == {"384": 48, "64": 8}
    assert (tmp_path / "r.png").is_file() and (tmp_path / "r_precision.png").is_file()
