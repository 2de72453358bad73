"""``matryo encode`` / ``search`` / ``tune`` end to end with the shipped model, and their errors.

The model is loaded once per module (load_model is wrapped in a cache; every call still goes
through the real loader the first time), since loading it dominates the run time.
"""

from __future__ import annotations

import csv
import functools
import json
import os
import re
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from model_stack import need_models

need_models()

import matryo_fast as mf  # noqa: E402
from matryo_fast import models  # noqa: E402
from matryo_fast._reference import binary_cosine, int8_cosine, topk_reference  # noqa: E402
from matryo_fast.cli import main  # noqa: E402
from matryo_fast.textcorpus import open_text_corpus  # noqa: E402

TEXTS = [
    "A man is playing a guitar.",
    "A woman is slicing an onion.",
    "A dog runs through the snow.",
    "Two children play football in a park.",
    "A chef cooks pasta in a small kitchen.",
    "The stock market fell sharply today.",
    "A cat sleeps on a warm windowsill.",
    "Scientists discover water on a distant planet.",
    "A boy rides a bicycle down the hill.",
    "The orchestra performs a symphony.",
    "A woman reads a book in the library.",
    "Heavy rain floods the city streets.",
    "A man repairs the engine of a car.",
    "Two people dance at a wedding.",
    "A bird builds a nest in a tree.",
    "The team celebrates winning the championship.",
    "A girl paints a picture of the sea.",
    "The train arrives late at the station.",
    "A farmer harvests wheat in the field.",
    "Someone is typing on a laptop.",
    "A baby laughs at a puppy.",
    "The museum opens a new exhibit.",
]
IDS = [f"doc-{i:02d}" for i in range(len(TEXTS))]


@pytest.fixture(scope="module", autouse=True)
def _cached_models() -> Iterator[None]:
    real = models.load_model
    cached = functools.lru_cache(maxsize=4)(lambda m: real(m))
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(
            models, "load_model", lambda model=None, **_: cached(None if model is None else os.fspath(model))
        )
        yield


def one_error(capsys: pytest.CaptureFixture[str]) -> str:
    err = capsys.readouterr().err
    assert "Traceback" not in err
    errors = [line for line in err.strip().splitlines() if line.startswith("matryo: error: ")]
    assert len(errors) == 1, err
    return errors[0]


def write_inputs(folder: Path) -> dict[str, Path]:
    """The same texts and ids as .txt, .jsonl, .csv, .tsv and .parquet."""
    pa = pytest.importorskip("pyarrow")
    pq = pytest.importorskip("pyarrow.parquet")
    out = {
        "txt": folder / "t.txt",
        "jsonl": folder / "t.jsonl",
        "csv": folder / "t.csv",
        "tsv": folder / "t.tsv",
    }
    out["txt"].write_text("\n".join(TEXTS) + "\n", encoding="utf-8")
    out["jsonl"].write_text(
        "".join(json.dumps({"doc_id": i, "body": t, "extra": 1}) + "\n" for i, t in zip(IDS, TEXTS)),
        encoding="utf-8",
    )
    with open(out["csv"], "w", newline="", encoding="utf-8") as f:
        w = csv.writer(f)
        w.writerow(["doc_id", "body"])
        w.writerows(zip(IDS, TEXTS))
    out["tsv"].write_text(
        "doc_id\tbody\n" + "".join(f"{i}\t{t}\n" for i, t in zip(IDS, TEXTS)), encoding="utf-8"
    )
    out["parquet"] = folder / "t.parquet"
    pq.write_table(pa.table({"doc_id": IDS, "body": TEXTS}), out["parquet"])
    return out


@pytest.fixture(scope="module")
def corpus_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("enc")
    src = write_inputs(folder)["jsonl"]
    out = folder / "docs.mf"
    args = ["encode", str(src), "-o", str(out), "--text-column", "body", "--id-column", "doc_id"]
    assert main([*args, "--batch-size", "5", "--no-progress"]) == 0
    return out


def test_encoded_corpus_holds_model_embeddings_ids_and_texts(corpus_dir: Path) -> None:
    tc = open_text_corpus(corpus_dir)
    assert (tc.rows, tc.dim) == (len(TEXTS), 384)
    assert tc.meta["model"]["name"] == "all-MiniLM-L6-v2" and tc.meta["model"]["dim"] == 384
    assert [tc.record(i) for i in range(tc.rows)] == list(zip(IDS, TEXTS))
    want = models.encode(models.load_model(), TEXTS)
    np.testing.assert_allclose(tc.corpus.as_array(), want, atol=1e-5)
    assert sorted(p.name for p in corpus_dir.iterdir()) == [
        "corpus.json",
        "embeddings.npy",
        "texts.jsonl",
        "texts.offsets.npy",
    ]
    assert not list(corpus_dir.parent.glob(".docs.mf*"))  # no work folder left behind


def test_every_input_format_gives_the_same_corpus(corpus_dir: Path, tmp_path: Path) -> None:
    ref = open_text_corpus(corpus_dir).corpus.as_array()
    for fmt, path in write_inputs(tmp_path).items():
        out = tmp_path / f"{fmt}.mf"
        extra = [] if fmt == "txt" else ["--text-column", "body", "--id-column", "doc_id"]
        assert (
            main(["encode", str(path), "-o", str(out), "--batch-size", "5", "--no-progress", *extra]) == 0
        ), fmt
        tc = open_text_corpus(out)
        np.testing.assert_array_equal(tc.corpus.as_array(), ref, err_msg=fmt)
        assert tc.record(3) == ((3 if fmt == "txt" else IDS[3]), TEXTS[3])


def test_search_prints_the_oracle_ranking(corpus_dir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    query = "a person playing music on a guitar"
    q = models.encode(models.load_model(), [query])
    emb = open_text_corpus(corpus_dir).corpus.as_array()
    for dim in (384, 32):
        capsys.readouterr()
        assert main(["search", str(corpus_dir), query, "--k", "4", "--dim", str(dim), "--json"]) == 0
        lines = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
        scores, rows = topk_reference(q, emb, dim=dim, k=4)
        assert [h["row"] for h in lines] == rows[0].tolist()
        assert [h["id"] for h in lines] == [IDS[r] for r in rows[0]]
        assert [h["text"] for h in lines] == [TEXTS[r] for r in rows[0]]
        np.testing.assert_allclose([h["score"] for h in lines], scores[0], atol=1e-4)
    assert main(["search", str(corpus_dir), query, "--k", "2"]) == 0
    first = capsys.readouterr().out.splitlines()[0].split(None, 3)
    assert first[0] == "1" and first[2] == "doc-00" and first[3] == TEXTS[0]


def test_query_file_is_one_batch_with_the_same_answers(
    corpus_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    queries = ["a pet animal sleeping", "cooking food", "financial news"]
    (tmp_path / "q.txt").write_text("\n".join(queries) + "\n")
    calls: list[int] = []
    real = mf.topk
    import matryo_fast.textcorpus as tcmod

    def counting(q: Any, *a: Any, **kw: Any) -> Any:
        calls.append(np.atleast_2d(q).shape[0])
        return real(q, *a, **kw)

    monkeypatch.setattr(tcmod, "topk", counting)
    assert (
        main(["search", str(corpus_dir), "--query-file", str(tmp_path / "q.txt"), "--k", "3", "--json"]) == 0
    )
    batch = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert calls == [3]
    for q in queries:
        assert main(["search", str(corpus_dir), q, "--k", "3", "--json"]) == 0
        alone = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
        assert [h["row"] for h in alone] == [h["row"] for h in batch if h["query"] == q]


def test_tune_saves_a_plan_that_search_uses_and_other_corpora_refuse(
    corpus_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    (tmp_path / "q.txt").write_text("\n".join(t.lower().rstrip(".") for t in TEXTS[:12]) + "\n")
    plan_path = tmp_path / "plan.json"
    args = [
        "tune",
        str(corpus_dir),
        "--queries",
        str(tmp_path / "q.txt"),
        "--k",
        "3",
        "--target-recall",
        "0.9",
    ]
    assert main([*args, "-o", str(plan_path)]) == 0
    assert "saved to" in capsys.readouterr().out
    doc = json.loads(plan_path.read_text())
    assert doc["corpus"]["shape"] == [len(TEXTS), 384] and doc["k"] == 3
    tc = open_text_corpus(corpus_dir)
    plan = mf.FunnelPlan.load(plan_path, corpus=tc.corpus)
    assert (
        main(["search", str(corpus_dir), "a dog in snow", "--plan", str(plan_path), "--k", "3", "--json"])
        == 0
    )
    rows = [json.loads(line)["row"] for line in capsys.readouterr().out.splitlines()]
    q = models.encode(models.load_model(), ["a dog in snow"])
    assert rows == mf.funnel(q, tc.corpus, **plan.params).indices[0].tolist()
    # the same plan on another corpus (same shape, other rows) is refused, from Python and the CLI
    other = tmp_path / "other.mf"
    shuffled = tmp_path / "shuffled.txt"
    shuffled.write_text("\n".join(reversed(TEXTS)) + "\n")
    assert main(["encode", str(shuffled), "-o", str(other), "--no-progress"]) == 0
    with pytest.raises(ValueError, match="tuned on another corpus"):
        mf.FunnelPlan.load(plan_path, corpus=open_text_corpus(other).corpus)
    capsys.readouterr()
    assert main(["search", str(other), "a dog", "--plan", str(plan_path)]) == 1
    assert "the plan was tuned on another corpus" in one_error(capsys)


def test_plan_save_load_round_trip_on_arrays(tmp_path: Path) -> None:
    x = np.random.default_rng(0).standard_normal((400, 64)).astype(np.float32)
    plan = mf.tune_funnel(x, x[:20], k=5, target_recall=0.9)
    plan.save(tmp_path / "p.json")
    back = mf.FunnelPlan.load(tmp_path / "p.json", corpus=x)
    assert (back.dims, back.candidates, back.k, back.recall) == (
        plan.dims,
        plan.candidates,
        plan.k,
        plan.recall,
    )
    np.testing.assert_array_equal(back.search(x[:3]).indices, plan.search(x[:3]).indices)
    y = x.copy()
    y[200] += 1.0
    with pytest.raises(ValueError, match="tuned on another corpus"):
        mf.FunnelPlan.load(tmp_path / "p.json", corpus=y)
    with pytest.raises(ValueError, match="not a plan file"):
        (tmp_path / "bad.json").write_text("[1, 2]")
        mf.FunnelPlan.load(tmp_path / "bad.json")


def test_an_interrupted_encode_resumes_after_its_last_complete_batch(
    tmp_path: Path, corpus_dir: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    src = write_inputs(tmp_path)["jsonl"]
    out = tmp_path / "r.mf"
    args = [
        "encode",
        str(src),
        "-o",
        str(out),
        "--text-column",
        "body",
        "--id-column",
        "doc_id",
        "--batch-size",
        "5",
        "--no-progress",
    ]
    import matryo_fast.models as m

    real = m.encode
    calls: list[int] = []

    def interrupt_third(model: Any, texts: Any, **kw: Any) -> Any:
        calls.append(len(texts))
        if len(calls) == 4:  # the probe, then two batches, then Ctrl-C
            raise KeyboardInterrupt
        return real(model, texts, **kw)

    monkeypatch.setattr(m, "encode", interrupt_third)
    assert main(args) == 130
    assert "run the same command again" in capsys.readouterr().err
    assert not out.exists()
    work = tmp_path / ".r.mf.partial"
    assert (work / ".embeddings.npy.partial").exists()
    calls.clear()
    monkeypatch.setattr(
        m, "encode", lambda model, texts, **kw: calls.append(len(texts)) or real(model, texts, **kw)
    )
    assert main(args) == 0
    assert calls == [1, 5, 5, 2]  # the probe, then only the batches not done (rows 10..21)
    got, ref = open_text_corpus(out), open_text_corpus(corpus_dir)
    np.testing.assert_array_equal(got.corpus.as_array(), ref.corpus.as_array())
    assert [got.record(i) for i in range(got.rows)] == list(zip(IDS, TEXTS))
    assert not work.exists()


def test_an_encode_stopped_while_writing_its_tiers_finishes_when_run_again(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    import matryo_fast.blocked as blocked
    import matryo_fast.models as m

    src = write_inputs(tmp_path)["txt"]
    out = tmp_path / "t.mf"
    args = ["encode", str(src), "-o", str(out), "--no-progress", "--tiers", "float32,binary"]
    real_save, real_encode = blocked.save_prefix_blocked, m.encode

    def stop(*a: Any, **kw: Any) -> Any:
        raise KeyboardInterrupt

    monkeypatch.setattr(blocked, "save_prefix_blocked", stop)
    assert main(args) == 130
    assert not out.exists() and (tmp_path / ".t.mf.partial" / "embeddings.npy").exists()
    monkeypatch.setattr(blocked, "save_prefix_blocked", real_save)
    calls: list[int] = []
    monkeypatch.setattr(
        m, "encode", lambda model, texts, **kw: calls.append(len(texts)) or real_encode(model, texts, **kw)
    )
    assert main(args) == 0
    assert calls == [1]  # the probe only: the embeddings were complete
    tc = open_text_corpus(out)
    assert tc.tiers == ("float32", "binary") and not (tmp_path / ".t.mf.partial").exists()
    from test_quantized import read_tiers

    np.testing.assert_array_equal(
        read_tiers(out / "embeddings.mfb")["float32"], np.load(out / "embeddings.npy")
    )


def test_bad_inputs_are_one_line_errors_and_leave_no_corpus(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "out.mf"
    (tmp_path / "empty.txt").write_text("")
    (tmp_path / "cols.csv").write_text("title,body\na,b\n")
    (tmp_path / "blank.jsonl").write_text('{"text": "fine"}\n{"text": "  "}\n')
    (tmp_path / "utf.txt").write_bytes(b"good line\nalso good\nbad \xff byte\n")
    (tmp_path / "dup.csv").write_text("id,text\n1,a\n1,b\n")
    cases = {
        "input file not found": ["encode", str(tmp_path / "nope.txt")],
        "file is empty": ["encode", str(tmp_path / "empty.txt")],
        "missing column(s) ['text']; the header has ['title', 'body']": [
            "encode",
            str(tmp_path / "cols.csv"),
        ],
        "row 2: empty text": ["encode", str(tmp_path / "blank.jsonl")],
        "line 3: not valid UTF-8": ["encode", str(tmp_path / "utf.txt")],
        "id '1' repeats row 1": ["encode", str(tmp_path / "dup.csv"), "--id-column", "id"],
    }
    for expected, args in cases.items():
        capsys.readouterr()
        assert main([*args, "-o", str(out), "--no-progress"]) == 1, expected
        line = one_error(capsys)
        assert expected in line, line
        assert not out.exists() and not list(tmp_path.glob(".out.mf*"))


def test_search_errors(corpus_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    cases = {
        "corpus folder not found": ["search", str(tmp_path / "missing.mf"), "q"],
        "not a corpus folder": ["search", str(tmp_path), "q"],
        "the query is empty": ["search", str(corpus_dir), " "],
        "plan file not found": ["search", str(corpus_dir), "q", "--plan", str(tmp_path / "p.json")],
        "dim=999 is out of range": ["search", str(corpus_dir), "q", "--dim", "999"],
    }
    for expected, args in cases.items():
        capsys.readouterr()
        assert main(args) == 1, expected
        assert expected in one_error(capsys)


@pytest.fixture(scope="module")
def other_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A copy of the shipped model with perturbed weights: same name and width, other vectors."""
    import torch

    model = models.load_model()
    folder = tmp_path_factory.mktemp("models") / "all-MiniLM-L6-v2"
    clone = type(model)(os.fspath(models.default_model_path()), device="cpu")
    with torch.no_grad():
        for p in clone.parameters():
            p.add_(torch.randn_like(p) * 0.05, alpha=1.0)
    clone.save(os.fspath(folder))
    return folder


def test_queries_from_another_model_are_refused(
    corpus_dir: Path, other_model: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["search", str(corpus_dir), "a dog", "--model", str(other_model)]) == 1
    line = one_error(capsys)
    assert "was encoded with model 'all-MiniLM-L6-v2' (384 dims)" in line and "other embeddings" in line
    # the shipped model from its own folder is the same model: accepted
    assert main(["search", str(corpus_dir), "a dog", "--model", str(models.default_model_path())]) == 0


def test_a_killed_encode_resumes_and_gives_the_same_corpus(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A real crash: ``matryo encode`` in a child process, killed (SIGKILL) mid-run."""
    texts = [f"{t} ({i})" for i, t in enumerate(TEXTS * 3)]
    src = tmp_path / "in.txt"
    src.write_text("\n".join(texts) + "\n")
    out = tmp_path / "k.mf"
    args = ["encode", str(src), "-o", str(out), "--batch-size", "4", "--no-progress"]
    child = subprocess.Popen([sys.executable, "-m", "matryo_fast.cli", *args], stderr=subprocess.DEVNULL)
    partial = tmp_path / ".k.mf.partial" / ".embeddings.npy.partial"
    deadline = time.monotonic() + 300
    try:
        while not (partial.exists() and partial.stat().st_size >= 128 + 12 * 384 * 4):
            assert child.poll() is None and time.monotonic() < deadline, "the child ended or hung"
            time.sleep(0.02)
    finally:
        child.send_signal(signal.SIGKILL)
        child.wait()
    assert not out.exists()
    synced = int(re.search(rb"'shape': \((\d+),", partial.read_bytes()[:128]).group(1))  # type: ignore[union-attr]
    assert 0 < synced < len(texts) and synced % 4 == 0
    assert main(args) == 0
    assert "starting again" not in capsys.readouterr().err
    clean = tmp_path / "clean.mf"
    assert main(["encode", str(src), "-o", str(clean), "--batch-size", "4", "--no-progress"]) == 0
    got, want = open_text_corpus(out), open_text_corpus(clean)
    np.testing.assert_array_equal(got.corpus.as_array(), want.corpus.as_array())
    assert [got.record(i) for i in range(got.rows)] == [(i, t) for i, t in enumerate(texts)]


def test_an_existing_corpus_is_replaced_only_with_overwrite(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    first, second = tmp_path / "a.txt", tmp_path / "b.txt"
    first.write_text("\n".join(TEXTS[:3]) + "\n")
    second.write_text("\n".join(TEXTS[3:8]) + "\n")
    out = tmp_path / "o.mf"
    assert main(["encode", str(first), "-o", str(out), "--no-progress"]) == 0
    capsys.readouterr()
    assert main(["encode", str(second), "-o", str(out), "--no-progress"]) == 1
    assert "exists; pass --overwrite" in one_error(capsys)
    assert open_text_corpus(out).rows == 3
    assert main(["encode", str(second), "-o", str(out), "--no-progress", "--overwrite"]) == 0
    tc = open_text_corpus(out)
    assert tc.rows == 5 and tc.record(0) == (0, TEXTS[3])
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.txt", "b.txt", "o.mf"]


def test_encode_with_tiers_writes_sentence_transformers_codes_and_searches_them(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from sentence_transformers.util.quantization import quantize_embeddings
    from test_quantized import read_tiers

    src = write_inputs(tmp_path)["txt"]
    out = tmp_path / "tiered.mf"
    args = ["encode", str(src), "-o", str(out), "--batch-size", "7", "--no-progress"]
    assert main([*args, "--tiers", "binary,int8"]) == 0
    meta = json.loads((out / "corpus.json").read_text())
    assert meta["tiers"] == ["int8", "binary"] and meta["blocked"] == "embeddings.mfb"
    tc = open_text_corpus(out)
    assert tc.tiers == ("int8", "binary") and tc.corpus.layout != "row-major"
    emb = np.load(out / "embeddings.npy")  # the stored float32 embeddings
    ranges = np.vstack((emb.min(axis=0), emb.max(axis=0)))
    got = read_tiers(out / "embeddings.mfb")
    assert "float32" not in got
    np.testing.assert_array_equal(got["binary"], quantize_embeddings(emb, precision="ubinary"))
    np.testing.assert_array_equal(got["int8"], quantize_embeddings(emb, precision="int8", ranges=ranges))
    np.testing.assert_array_equal(got["ranges"], ranges)
    # the CLI: a binary search at a width, and the default (the finest tier here, int8)
    query = "a pet asleep by the window"
    q = models.encode(models.load_model(), [query])
    oracles = {
        "binary": binary_cosine(q, emb, dim=128)[0],
        "int8": int8_cosine(q, emb, dim=128, ranges=ranges)[0],
    }
    for extra, precision in ((["--precision", "binary"], "binary"), ([], "int8")):
        capsys.readouterr()
        assert main(["search", str(out), query, "--dim", "128", "--k", "3", "--json", *extra]) == 0
        lines = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
        want = oracles[precision]
        order = sorted(range(len(TEXTS)), key=lambda r: (-want[r], r))
        assert [h["row"] for h in lines] == order[:3], precision
        np.testing.assert_allclose([h["score"] for h in lines], want[order[:3]], atol=1e-5)
    capsys.readouterr()
    assert main(["search", str(out), query, "--precision", "float32"]) == 1
    assert "holds the precisions ('int8', 'binary'), not 'float32'" in one_error(capsys)


def test_tune_and_search_a_binary_plan_on_a_tiered_corpus(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    src = write_inputs(tmp_path)["txt"]
    out = tmp_path / "tiered.mf"
    tiers = "float32,int8,binary"
    assert main(["encode", str(src), "-o", str(out), "--no-progress", "--tiers", tiers]) == 0
    (tmp_path / "q.txt").write_text("\n".join(t.lower().rstrip(".") for t in TEXTS[:12]) + "\n")
    plan_path = tmp_path / "plan.json"
    args = ["tune", str(out), "--queries", str(tmp_path / "q.txt"), "--k", "3", "--target-recall", "0.9"]
    assert main([*args, "--precisions", "binary,float32", "-o", str(plan_path)]) == 0
    assert "saved to" in capsys.readouterr().out
    tc = open_text_corpus(out)
    tuned = mf.FunnelPlan.load(plan_path, corpus=tc.corpus)  # the corpus is the tiered file
    assert tc.corpus.tiers == ("float32", "int8", "binary") and tuned.k == 3
    # a plan with a 1-bit first stage, in the saved format, round-trips and runs through the CLI
    doc = json.loads(plan_path.read_text())
    doc.update(dims=[128, 384], candidates=[8], precisions=["binary", "float32"], exact=False)
    plan_path.write_text(json.dumps(doc))
    loaded = mf.FunnelPlan.load(plan_path, corpus=tc.corpus)
    assert loaded.params["precisions"] == ("binary", "float32")
    loaded.save(tmp_path / "again.json")
    assert json.loads((tmp_path / "again.json").read_text())["precisions"] == ["binary", "float32"]
    query = "a dog in snow"
    assert main(["search", str(out), query, "--plan", str(plan_path), "--k", "3", "--json"]) == 0
    rows = [json.loads(line)["row"] for line in capsys.readouterr().out.splitlines()]
    # the oracle: the 8 best by 1-bit score at 128 dims, then exact float32 at 384 among them
    q = models.encode(models.load_model(), [query])
    emb = np.load(out / "embeddings.npy")
    b = binary_cosine(q, emb, dim=128)[0]
    short = sorted(range(len(TEXTS)), key=lambda r: (-b[r], r))[:8]
    full = topk_reference(q, emb, dim=384, k=len(TEXTS))[1][0].tolist()
    assert rows == [r for r in full if r in short][:3]
    assert main(["search", str(out), query, "--plan", str(plan_path), "--dim", "64"]) == 2  # usage


def test_bad_tiers_are_one_line_errors(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    src = write_inputs(tmp_path)["txt"]
    out = tmp_path / "out.mf"
    for bad in ("float16", "", "int8,,binary", "binary,fp32"):
        capsys.readouterr()
        assert main(["encode", str(src), "-o", str(out), "--no-progress", "--tiers", bad]) == 1, bad
        assert "tiers must be a non-empty subset of" in one_error(capsys)
        assert not out.exists() and not list(tmp_path.glob(".out.mf*"))
