"""matryo_fast.training: a few real training steps on a handful of rows, and every bad input."""

from __future__ import annotations

import json
import math
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from model_stack import STS, need_models, write_tsv

need_models("datasets")

from matryo_fast.data import DataError  # noqa: E402
from matryo_fast.training import (  # noqa: E402
    EVAL_JSON_FILE,
    EVAL_MD_FILE,
    TRAINING_ARGS_FILE,
    TrainResult,
    infer_loss,
    load_training_data,
    train,
)

TRIPLETS = [
    ("A man is playing a guitar on stage.", "A man performs music.", "A man is sleeping."),
    ("Two dogs run through a field.", "Animals are outside.", "The dogs are asleep indoors."),
    ("A woman slices vegetables.", "Someone is cooking.", "A woman is swimming."),
    ("Children play in the snow.", "Kids are outdoors in winter.", "Children sit in a classroom."),
    ("A cyclist rides up a hill.", "A person is on a bike.", "A person is driving a car."),
    ("An old man reads a newspaper.", "A man is reading.", "A man is running a marathon."),
    ("A girl paints a picture.", "A child makes art.", "A girl is playing football."),
    ("People wait at a bus stop.", "People are outside.", "Nobody is waiting."),
]
FAST: dict[str, Any] = dict(
    max_steps=2,
    batch_size=4,
    max_seq_length=16,
    show_progress_bar=False,
    device="cpu",
    logging_steps=1,
)


@pytest.fixture(scope="module")
def files(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    d = tmp_path_factory.mktemp("data")
    return {
        "triplets": write_tsv(
            d / "triplets.tsv",
            ["anchor", "positive", "negative", "source"],
            [(*r, "snli") for r in TRIPLETS],
        ),
        "pairs": write_tsv(d / "pairs.tsv", ["anchor", "positive"], [r[:2] for r in TRIPLETS]),
        "sts": write_tsv(d / "sts.tsv", ["sentence1", "sentence2", "score"], STS),
    }


@pytest.fixture(scope="module")
def mrl_run(files: dict[str, Path], tmp_path_factory: pytest.TempPathFactory) -> Iterator[TrainResult]:
    out = tmp_path_factory.mktemp("runs") / "mrl"
    yield train(
        files["triplets"],
        output_dir=out,
        columns=["anchor", "positive", "negative"],
        eval_data=files["sts"],
        eval_dims=[384, 64, 16],
        eval_steps=1,
        seed=3,
        **FAST,
    )


def test_matryoshka_run_trains_and_saves(mrl_run: TrainResult) -> None:
    from sentence_transformers import SentenceTransformer

    r = mrl_run
    assert r.global_step == 2
    assert math.isfinite(r.train_loss) and r.train_loss > 0
    assert r.config.loss == "MatryoshkaLoss(MultipleNegativesRankingLoss)"
    assert r.config.dims == [384, 256, 128, 64, 32]
    assert r.config.columns == ["anchor", "positive", "negative"]
    assert r.config.max_seq_length == 16
    losses = [h["loss"] for h in r.log_history if "loss" in h]
    assert losses and all(math.isfinite(x) for x in losses)
    # the per-dim evaluator ran during training (all dims in one pass)
    evals = [h for h in r.log_history if "eval_sts_spearman_mean" in h]
    assert [h["step"] for h in evals] == [1, 2]
    assert {"eval_sts_spearman_384", "eval_sts_spearman_64", "eval_sts_spearman_16"} <= set(evals[0])
    # saved model reloads with plain sentence-transformers and gives the in-memory embeddings
    loaded = SentenceTransformer(str(r.output_dir), device="cpu")
    assert loaded.get_embedding_dimension() == 384
    assert loaded.max_seq_length == 256  # the training budget (16) is not baked into the model
    record = json.loads((r.output_dir / TRAINING_ARGS_FILE).read_text())
    assert record["config"]["dims"] == [384, 256, 128, 64, 32]
    assert record["config"]["seed"] == 3 and record["global_step"] == 2
    assert record["trainer_args"]["per_device_train_batch_size"] == 4
    # per-dim evaluation next to the model, equal to a fresh evaluation of the reloaded model
    assert r.report is not None
    saved = json.loads((r.output_dir / EVAL_JSON_FILE).read_text())
    assert set(saved["results"]["mrl"]["spearman"]) == {"384", "64", "16"}
    assert "| 64 |" in (r.output_dir / EVAL_MD_FILE).read_text()
    from matryo_fast.evaluation import evaluate_sts

    assert r.config.eval_data is not None
    again = evaluate_sts(loaded, r.config.eval_data, dims=[384, 64, 16])
    for d in (384, 64, 16):
        assert again.score("model", d) == pytest.approx(r.report.score("mrl", d), abs=1e-6)


def test_control_is_reproducible_and_overwrite(files: dict[str, Path], tmp_path: Path) -> None:
    from sentence_transformers import SentenceTransformer

    out = tmp_path / "std"
    a = train(files["pairs"], output_dir=out, matryoshka=False, seed=11, **FAST)
    assert a.config.loss == "MultipleNegativesRankingLoss" and not a.config.matryoshka
    emb_a = SentenceTransformer(str(out), device="cpu").encode(["a probe sentence"])
    with pytest.raises(
        FileExistsError, match="exists and is not empty; choose a new folder or pass overwrite=True"
    ):
        train(files["pairs"], output_dir=out, matryoshka=False, seed=11, **FAST)
    b = train(files["pairs"], output_dir=out, matryoshka=False, seed=11, overwrite=True, **FAST)
    emb_b = SentenceTransformer(str(out), device="cpu").encode(["a probe sentence"])
    assert [h.get("loss") for h in a.log_history] == [h.get("loss") for h in b.log_history]
    np.testing.assert_array_equal(emb_a, emb_b)


def test_cosent_from_dataset_with_weights(tmp_path: Path) -> None:
    from datasets import Dataset

    ds = Dataset.from_dict(
        {
            "sentence1": [s[0] for s in STS],
            "sentence2": [s[1] for s in STS],
            "score": [s[2] for s in STS],
        }
    )
    r = train(ds, output_dir=tmp_path / "cos", dims=[32, 384, 128], weights=[2.0, 1.0, 1.0], **FAST)
    assert r.config.loss == "MatryoshkaLoss(CoSENTLoss)"
    assert r.config.dims == [384, 128, 32] and r.config.weights == [1.0, 1.0, 2.0]
    assert r.config.score_range == (0.0, 5.0)
    assert math.isfinite(r.train_loss)
    assert r.report is None and not (r.output_dir / EVAL_JSON_FILE).exists()


# ----------------------------------------------------------------------------- bad input


def test_infer_loss() -> None:
    assert infer_loss(["sentence1", "sentence2", "score"]) == "cosent"
    assert infer_loss(["a", "b", "label"]) == "cosent"
    assert infer_loss(["anchor", "positive"]) == "mnrl"
    with pytest.raises(DataError, match=r"cannot choose a loss for columns \['anchor'\]"):
        infer_loss(["anchor"])


def test_extra_column_needs_explicit_columns(files: dict[str, Path]) -> None:
    with pytest.raises(
        DataError,
        match=r"triplets\.tsv: unexpected extra column\(s\) \['source'\] "
        r"next to \['anchor', 'positive', "
        r"'negative'\]; select the training columns explicitly, e\.g\. columns=",
    ):
        load_training_data(files["triplets"])


def test_unknown_layout(tmp_path: Path) -> None:
    p = write_tsv(tmp_path / "q.tsv", ["question", "answer"], [("q", "a")])
    with pytest.raises(
        DataError, match=r"q\.tsv: cannot tell the layout from columns \['question', 'answer'\]"
    ):
        load_training_data(p)
    ds, loss = load_training_data(p, columns=["question", "answer"])
    assert loss == "mnrl" and ds.column_names == ["question", "answer"]


def test_missing_column(files: dict[str, Path]) -> None:
    with pytest.raises(DataError, match=r"pairs\.tsv: missing column\(s\) \['negative'\]"):
        load_training_data(files["pairs"], columns=["anchor", "positive", "negative"])


def test_loss_does_not_fit_columns(files: dict[str, Path]) -> None:
    with pytest.raises(
        DataError,
        match=r"CoSENTLoss needs \(sentence1, sentence2, score\) columns, "
        r"got \['anchor', 'positive'\]",
    ):
        load_training_data(files["pairs"], loss="cosent")
    with pytest.raises(ValueError, match="loss must be 'auto', 'mnrl' or 'cosent', got 'triplet'"):
        load_training_data(files["pairs"], loss="triplet")  # type: ignore[arg-type]


def test_empty_text_and_bad_scores(tmp_path: Path) -> None:
    p = write_tsv(tmp_path / "e.tsv", ["anchor", "positive"], [("a", "b"), ("c", " ")])
    with pytest.raises(DataError, match=r"e\.tsv, row 2: column 'positive' is empty"):
        load_training_data(p)
    s = write_tsv(tmp_path / "s.tsv", ["sentence1", "sentence2", "score"], [("a", "b", 1), ("c", "d", 7)])
    with pytest.raises(DataError, match=r"s\.tsv, row 2: score 7\.0 outside score_range \(0\.0, 5\.0\)"):
        load_training_data(s)
    ds, _ = load_training_data(s, score_range=None)
    assert ds["score"] == [1.0, 7.0]
    ok, _ = load_training_data(
        write_tsv(tmp_path / "o.tsv", ["sentence1", "sentence2", "score"], [("a", "b", 2.5)])
    )
    assert ok["score"] == [0.5]
    with pytest.raises(ValueError, match=r"score_range must be \(low, high\) with high > low"):
        load_training_data(s, score_range=(5.0, 0.0))
    n = write_tsv(tmp_path / "n.tsv", ["sentence1", "sentence2", "score"], [("a", "b", "x")])
    with pytest.raises(DataError, match=r"n\.tsv, row 1: column 'score' must be a number, got 'x'"):
        load_training_data(n)


def test_dataset_input_errors() -> None:
    from datasets import Dataset

    with pytest.raises(DataError, match="the training dataset is empty"):
        load_training_data(Dataset.from_dict({"anchor": [], "positive": []}))
    with pytest.raises(DataError, match=r"the dataset has no column\(s\) \['negative'\]"):
        load_training_data(
            Dataset.from_dict({"anchor": ["a"], "positive": ["b"]}), columns=["anchor", "negative"]
        )
    with pytest.raises(DataError, match=r"the dataset, row 1: column 'anchor' must be text, got 3"):
        load_training_data(Dataset.from_dict({"anchor": [3], "positive": ["b"]}))
    with pytest.raises(TypeError, match="data must be a file path or a datasets.Dataset, got list"):
        load_training_data([("a", "b")])  # type: ignore[arg-type]
    with pytest.raises(DataError, match=r"columns must be distinct, got \['anchor', 'anchor'\]"):
        load_training_data(Dataset.from_dict({"anchor": ["a"]}), columns=["anchor", "anchor"])


def test_empty_and_missing_files(tmp_path: Path) -> None:
    e = tmp_path / "empty.tsv"
    e.write_text("")
    with pytest.raises(DataError, match=r"empty\.tsv: file is empty"):
        train(e, output_dir=tmp_path / "o1", **FAST)
    with pytest.raises(FileNotFoundError, match=r"data file not found: .*nope\.tsv"):
        train(tmp_path / "nope.tsv", output_dir=tmp_path / "o2", **FAST)
    assert not (tmp_path / "o1").exists() and not (tmp_path / "o2").exists()


@pytest.mark.parametrize(
    ("kwargs", "exc", "msg"),
    [
        (
            dict(dims=[384, 512]),
            ValueError,
            "dims has 512, above the model's embedding dimension 384",
        ),
        (dict(dims=[384, 64, 64]), ValueError, r"dims must be distinct, got duplicates \[64\]"),
        (dict(dims=[384, 0]), ValueError, "dims must be positive, got 0"),
        (dict(dims=[384, 32.5]), TypeError, "dims must be ints"),
        (dict(dims=[384, 64], weights=[1.0]), ValueError, "weights has 1 entries for 2 dims"),
        (dict(dims=[384, 64], weights=[1.0, -1.0]), ValueError, "weights must be positive"),
        (dict(weights=[1.0]), ValueError, r"weights need explicit dims"),
        (dict(eval_dims=[999]), ValueError, "eval_dims has 999, above"),
    ],
)
def test_bad_dims_and_weights(
    files: dict[str, Path], tmp_path: Path, kwargs: dict[str, Any], exc: type, msg: str
) -> None:
    with pytest.raises(exc, match=msg):
        train(files["pairs"], output_dir=tmp_path / "o", **{**FAST, **kwargs})
    assert not (tmp_path / "o").exists()


@pytest.mark.parametrize(
    ("kwargs", "msg"),
    [
        (dict(batch_size=0), "batch_size must be a positive int, got 0"),
        (dict(max_steps=-1), "max_steps must be a positive int, got -1"),
        (dict(learning_rate=0.0), "learning_rate must be a positive float, got 0.0"),
        (dict(warmup_ratio=1.0), r"warmup_ratio must be in \[0, 1\), got 1.0"),
        (dict(max_seq_length=0), "max_seq_length must be a positive int, got 0"),
        (dict(eval_steps=5), "eval_steps needs eval_data"),
        (dict(seed=1.5), "seed must be an int, got 1.5"),
    ],
)
def test_bad_options(files: dict[str, Path], tmp_path: Path, kwargs: dict[str, Any], msg: str) -> None:
    with pytest.raises(ValueError, match=msg):
        train(files["pairs"], output_dir=tmp_path / "o", **{**FAST, **kwargs})


def test_output_dir_is_a_file(files: dict[str, Path], tmp_path: Path) -> None:
    f = tmp_path / "f"
    f.write_text("mine")
    with pytest.raises(FileExistsError, match="exists and is not a folder"):
        train(files["pairs"], output_dir=f, **FAST)
    assert f.read_text() == "mine"
