"""The ``matryo`` console script: train / eval / reproduce / demo / backends and its error lines."""

from __future__ import annotations

import json
import sys
import types
from pathlib import Path

import pytest
from model_stack import STS as SHARED_STS
from model_stack import need_models, write_tsv

import matryo_fast
from matryo_fast.cli import main

STS = SHARED_STS[:5]
#: A one-step training run on short inputs.
TINY_RUN = ["--max-steps", "1", "--batch-size", "4", "--max-seq-length", "16"]
TRIPLETS = [
    ("A man is playing a guitar.", "A man performs music.", "A man is sleeping.", "snli"),
    ("Two dogs run in a field.", "Animals are outside.", "The dogs sleep indoors.", "snli"),
    ("A woman slices onions.", "Someone is cooking.", "A woman is swimming.", "mnli"),
    ("Children play in snow.", "Kids are outdoors.", "Children sit in class.", "mnli"),
]


def one_error_line(capsys: pytest.CaptureFixture[str]) -> str:
    err = capsys.readouterr().err
    assert "Traceback" not in err
    lines = err.strip().splitlines()
    # third-party progress bars (e.g. "Loading weights") may precede it; the error is one line, last
    errors = [line for line in lines if "error" in line.lower()]
    assert len(errors) == 1 and lines[-1] == errors[0], err
    assert errors[0].startswith("matryo: error: ")
    return errors[0]


def test_backends(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["backends"]) == 0
    out = capsys.readouterr().out
    info = matryo_fast.backends()
    assert f"active: {info['active']}" in out
    assert "scalar" in out


def test_version(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["--version"]) == 0
    assert capsys.readouterr().out == f"matryo {matryo_fast.__version__}\n"


def test_demo_passes_arguments_through(monkeypatch: pytest.MonkeyPatch) -> None:
    seen: list[list[str]] = []
    fake = types.ModuleType("matryo_fast.demo")

    def demo_main(argv: list[str]) -> int:
        seen.append(list(argv))
        return 7

    fake.main = demo_main  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "matryo_fast.demo", fake)
    assert main(["demo", "--help", "--k", "3", "query words"]) == 7
    assert seen == [["--help", "--k", "3", "query words"]]


def test_usage_errors(capsys: pytest.CaptureFixture[str]) -> None:
    assert main([]) == 2
    assert main(["nope"]) == 2
    assert main(["train", "x.tsv", "-o", "out", "--dims", "384,abc"]) == 2
    assert "expected comma-separated integers" in capsys.readouterr().err
    assert main(["--help"]) == 0


def test_train_user_errors(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    pytest.importorskip("sentence_transformers")
    data = write_tsv(tmp_path / "t.tsv", ["anchor", "positive", "negative", "source"], TRIPLETS)
    assert main(["train", str(tmp_path / "missing.tsv"), "-o", str(tmp_path / "o")]) == 1
    assert "data file not found" in one_error_line(capsys)
    taken = tmp_path / "taken"
    taken.mkdir()
    (taken / "notes.txt").write_text("mine")
    assert main(["train", str(data), "-o", str(taken)]) == 1
    assert "exists and is not empty" in one_error_line(capsys)
    assert (taken / "notes.txt").read_text() == "mine"
    assert main(["train", str(data), "-o", str(tmp_path / "o")]) == 1
    assert "unexpected extra column(s) ['source']" in one_error_line(capsys)
    cols = "anchor,positive,negative"
    assert main(["train", str(data), "-o", str(tmp_path / "o"), "--columns", cols, "--dims", "384,500"]) == 1
    assert "dims has 500, above the model's embedding dimension 384" in one_error_line(capsys)


def test_train_and_eval_end_to_end(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    need_models()
    data = write_tsv(tmp_path / "t.tsv", ["anchor", "positive", "negative", "source"], TRIPLETS)
    sts = write_tsv(tmp_path / "sts.tsv", ["sentence1", "sentence2", "score"], STS)
    out = tmp_path / "model"
    argv = [
        "train",
        str(data),
        "-o",
        str(out),
        "--columns",
        "anchor,positive,negative",
        *TINY_RUN,
        "--dims",
        "384,64",
        "--eval-data",
        str(sts),
        "--device",
        "cpu",
        "--no-progress",
    ]
    assert main(argv) == 0
    text = capsys.readouterr().out
    assert "trained MatryoshkaLoss(MultipleNegativesRankingLoss) for 1 steps" in text
    assert (out / "model.safetensors").is_file() and (out / "matryo_evaluation.json").is_file()

    q = write_tsv(tmp_path / "q.tsv", ["text"], [(s[0],) for s in STS])
    c = write_tsv(tmp_path / "c.tsv", ["text", "id"], [(s[1], i) for i, s in enumerate(STS)])
    rels = write_tsv(tmp_path / "qrels.tsv", ["query", "doc"], [(i, i) for i in range(len(STS))])
    argv = [
        "eval",
        str(out),
        "--names",
        "trained",
        "--sts",
        str(sts),
        "--queries",
        str(q),
        "--corpus",
        str(c),
        "--qrels",
        str(rels),
        "--k",
        "2",
        "--dims",
        "64,16",
        "--json",
        str(tmp_path / "r.json"),
        "--markdown",
        str(tmp_path / "r.md"),
        "--plot",
        str(tmp_path / "r.png"),
    ]
    assert main(argv) == 0
    payload = json.loads((tmp_path / "r.json").read_text())
    assert [p["task"] for p in payload] == ["sts", "retrieval"]
    assert set(payload[0]["results"]["trained"]["spearman"]) == {"384", "64", "16"}
    assert set(payload[1]["results"]["trained"]) == {"recall@2", "ndcg@10", "mrr@10"}
    assert payload[1]["results"]["trained"]["recall@2"]["384"] == 100.0
    assert "| dim | trained |" in (tmp_path / "r.md").read_text()
    assert (tmp_path / "r.png").is_file() and (tmp_path / "r_retrieval.png").is_file()


def test_eval_user_errors(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    pytest.importorskip("sentence_transformers")
    assert main(["eval"]) == 1
    assert "nothing to evaluate" in one_error_line(capsys)
    assert main(["eval", "--queries", "q.tsv"]) == 1
    assert "retrieval needs both --queries and --corpus" in one_error_line(capsys)
    assert main(["eval", "--sts", "s.tsv", "--qrels", "r.tsv"]) == 1
    assert "--qrels needs --queries and --corpus" in one_error_line(capsys)
    assert main(["eval", "a", "b", "--names", "x", "--sts", "s.tsv"]) == 1
    assert "--names has 1 labels for 2 models" in one_error_line(capsys)
    assert main(["eval", str(tmp_path / "nomodel"), "--sts", "s.tsv"]) == 1
    assert "model folder not found" in one_error_line(capsys)
    q = write_tsv(tmp_path / "q.tsv", ["text"], [("a",), ("b",)])
    bad = write_tsv(tmp_path / "qrels.tsv", ["query", "doc"], [(0, 0), (5, 1)])
    assert main(["eval", "--queries", str(q), "--corpus", str(q), "--qrels", str(bad)]) == 1
    assert "qrels.tsv, row 2: query 5 outside [0, 2)" in one_error_line(capsys)
    extra = write_tsv(tmp_path / "qx.tsv", ["query", "doc", "note"], [(0, 0, "x")])
    assert main(["eval", "--queries", str(q), "--corpus", str(q), "--qrels", str(extra)]) == 1
    assert "unexpected extra column(s) ['note']" in one_error_line(capsys)


def test_reproduce_small(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    need_models()
    pytest.importorskip("matplotlib")
    data = write_tsv(tmp_path / "t.tsv", ["anchor", "positive", "negative", "source"], TRIPLETS)
    sts = write_tsv(tmp_path / "sts.tsv", ["sentence1", "sentence2", "score"], STS)
    out, docs = tmp_path / "run", tmp_path / "docs"
    argv = [
        "reproduce",
        "-o",
        str(out),
        "--docs-dir",
        str(docs),
        "--train-data",
        str(data),
        "--eval-data",
        str(sts),
        *TINY_RUN,
        "--no-progress",
    ]
    assert main(argv) == 0
    md = (docs / "reproduction.md").read_text()
    assert "matryo " + " ".join(argv) in md
    for name in ("reproduction_scores.png", "reproduction_relative.png", "reproduction.json"):
        assert (docs / name).is_file() and (out / name).is_file()
    rep = json.loads((out / "reproduction.json").read_text())
    assert list(rep["results"]) == ["base", "standard", "matryoshka"]
    assert set(rep["results"]["matryoshka"]["spearman"]) == {"384", "256", "128", "64", "32", "16"}
    assert "## Verdict" in md and "| Δ |" in md
    # --render-only rewrites the docs from the finished run without training
    again = tmp_path / "docs2"
    assert main(["reproduce", "-o", str(out), "--docs-dir", str(again), "--render-only"]) == 0
    assert (again / "reproduction.md").read_text() == md
    assert (again / "reproduction_scores.png").is_file()
    capsys.readouterr()
    assert main(["reproduce", "-o", str(tmp_path), "--render-only"]) == 1
    assert "not a finished reproduction run" in one_error_line(capsys)
    assert main(argv) == 1
    assert "exists and is not empty" in one_error_line(capsys)
    assert main(["reproduce", "-o", str(tmp_path / "r2"), "--train-data", str(tmp_path / "none.tsv")]) == 1
    assert "data file not found" in one_error_line(capsys)
