"""matryo_fast.programme and the recipe options of matryo_fast.training: TrainConfig checks, the
recipe file, the CLI, and one tiny end-to-end recipe search (2-step trainings on a few dozen
rows), whose report is checked against scipy on the saved cosines."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from model_stack import need_models, write_tsv

need_models("datasets")
stats = pytest.importorskip("scipy.stats")

from matryo_fast.cli import main  # noqa: E402
from matryo_fast.models import default_model_path  # noqa: E402
from matryo_fast.programme import Recipe, load_recipes, run_programme, search_recipes  # noqa: E402
from matryo_fast.programme.run import run_key  # noqa: E402
from matryo_fast.training import TRAINING_ARGS_FILE, TrainConfig  # noqa: E402

SUBJECTS = ["A man", "A woman", "Two children", "A dog", "An old man", "A girl", "A cyclist", "A chef"]
ACTIONS = [
    ("plays the guitar", "performs music", "is asleep"),
    ("runs through a field", "is outside", "sits indoors"),
    ("slices vegetables", "is cooking", "is swimming"),
    ("reads a newspaper", "is reading", "runs a marathon"),
]
TRIPLETS = [(f"{s} {a}.", f"{s} {p}.", f"{s} {n}.") for s in SUBJECTS for a, p, n in ACTIONS]
STS = [
    (f"{s} {a}.", f"{s} {p}." if i % 2 else f"{s} {n}.", 4.5 if i % 2 else 0.5 + (i % 3) * 0.4)
    for i, (s, (a, p, n)) in enumerate((s, x) for s in SUBJECTS[:6] for x in ACTIONS)
]


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    d = tmp_path_factory.mktemp("shared")
    write_tsv(d / "nli" / "triplets.tsv", ["anchor", "positive", "negative"], TRIPLETS)
    for split in ("train", "dev"):
        write_tsv(d / "stsb" / f"{split}.tsv", ["sentence1", "sentence2", "score"], STS)
    return d


TINY: dict[str, Any] = {"max_steps": 2, "batch_size": 4, "max_seq_length": 16}


# ---- options and their checks (no training)


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"mini_batch_size": 0}, "mini_batch_size must be a positive int"),
        ({"mini_batch_size": 64, "batch_size": 32}, "must not exceed batch_size"),
        ({"mini_batch_size": 8, "loss": "cosent"}, "not CoSENT"),
        ({"matryoshka_loss": "3d"}, "matryoshka_loss must be one of"),
        ({"mini_batch_size": 8, "matryoshka_loss": "matryoshka2d"}, "does not combine"),
    ],
)
def test_train_config_rejects_bad_recipe_options(options: dict[str, Any], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        TrainConfig("x.tsv", output_dir="out", **options)


def test_train_config_accepts_the_control_with_matryoshka2d_and_cache() -> None:
    TrainConfig(
        "x.tsv", output_dir="out", matryoshka=False, mini_batch_size=8, matryoshka_loss="matryoshka2d"
    )


def test_recipe_checks_options_when_made(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="unknown option"):
        Recipe("r", {"seed": 3})
    with pytest.raises(ValueError, match="must not exceed"):
        Recipe("r", {"batch_size": 8, "mini_batch_size": 16})
    with pytest.raises(ValueError, match="plain folder name"):
        Recipe("../up")
    good = tmp_path / "recipes.json"
    good.write_text(json.dumps([{"name": "a", "learning_rate": 5e-5}, {"name": "b", "sts_train": True}]))
    a, b = load_recipes(good)
    assert a.options == {"learning_rate": 5e-5} and not a.sts_train and b.sts_train
    dup = tmp_path / "dup.json"
    dup.write_text(json.dumps([{"name": "a"}, {"name": "a"}]))
    with pytest.raises(ValueError, match="distinct"):
        load_recipes(dup)


def test_test_split_takes_one_recipe_and_search_never_takes_a_split(tmp_path: Path) -> None:
    # refused before any data is read (the data folder does not even exist)
    with pytest.raises(ValueError, match="ONE recipe"):
        run_programme(
            [Recipe("a"), Recipe("b")],
            seeds=[1],
            split="test",
            output_dir=tmp_path / "o",
            data_dir=tmp_path / "missing",
        )
    with pytest.raises(TypeError, match="dev"):
        search_recipes([Recipe("a")], seeds=[1], split="test", output_dir=tmp_path / "o")
    with pytest.raises(ValueError, match="split"):
        run_programme([Recipe("a")], seeds=[1], split="train", output_dir=tmp_path / "o")
    with pytest.raises(ValueError, match="seeds"):
        run_programme([Recipe("a")], seeds=[1, 1], split="dev", output_dir=tmp_path / "o")


def test_cli_reports_bad_programme_options(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "o"
    assert main(["reproduce", "-o", str(out), "--seeds", "1", "--mini-batch-size", "64"]) == 1
    assert "must not exceed batch_size" in capsys.readouterr().err
    assert main(["reproduce", "-o", str(out), "--split", "valid"]) == 2
    assert main(["reproduce", "-o", str(out), "--seeds", "1", "--eval-data", "x.tsv"]) == 1
    assert "--split" in capsys.readouterr().err
    assert not out.exists()


def test_run_key_names_the_base_model_by_its_bytes(data_dir: Path, tmp_path: Path) -> None:
    data = data_dir / "nli" / "triplets.tsv"

    def key(model: Path | None) -> dict[str, Any]:
        return run_key(TrainConfig(data, output_dir=tmp_path / "out", model=model))

    assert key(None) == key(default_model_path())  # the shipped model, named or not
    base = tmp_path / "base"
    (base / "sub").mkdir(parents=True)
    (base / "config.json").write_text('{"dim": 384}')
    (base / "sub" / "weights.bin").write_bytes(bytes(range(256)))
    copy = tmp_path / "elsewhere" / "copy"
    shutil.copytree(base, copy)
    assert key(base) == key(copy) != key(None)  # where it lies does not matter
    (copy / "sub" / "weights.bin").write_bytes(bytes(range(255)) + b"\0")
    assert key(copy) != key(base)  # retrained in place: another run
    shutil.copytree(base, tmp_path / "renamed")
    (tmp_path / "renamed" / "sub" / "weights.bin").rename(tmp_path / "renamed" / "sub" / "other.bin")
    assert key(tmp_path / "renamed") != key(base)
    with pytest.raises(FileNotFoundError, match="base model folder not found"):
        key(tmp_path / "missing")


# ---- one tiny real search, through the CLI


@pytest.fixture(scope="module")
def search(data_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("search")
    recipes = root / "recipes.json"
    recipes.write_text(
        json.dumps(
            [
                {"name": "cached", "mini_batch_size": 2, "sts_train": True, **TINY},
                {
                    "name": "twod",
                    "matryoshka_loss": "matryoshka2d",
                    "dims": [384, 64, 16],
                    "weights": [1, 2, 1],
                    "learning_rate": 5e-5,
                    **TINY,
                },
            ]
        )
    )
    out, docs = root / "runs", root / "docs"
    os.environ["MATRYO_FAST_DATA"] = os.fspath(data_dir)
    try:
        rc = main(
            [
                "recipe-search",
                os.fspath(recipes),
                "-o",
                os.fspath(out),
                "--seeds",
                "3",
                "--docs-dir",
                os.fspath(docs),
                "--resamples",
                "200",
                "--no-progress",
            ]
        )
    finally:
        del os.environ["MATRYO_FAST_DATA"]
    assert rc == 0
    return {"out": out, "docs": docs}


def test_search_trains_every_recipe_seed_and_kind(search: dict[str, Path]) -> None:
    state = json.loads((search["out"] / "programme.json").read_text())
    assert state["split"] == "dev" and state["eval_data"] == "stsb/dev.tsv"
    assert [(r["recipe"], r["seed"], r["kind"]) for r in state["runs"]] == [
        (name, seed, kind)
        for name in ("cached", "twod")
        for seed in (3,)
        for kind in ("standard", "matryoshka")
    ]
    assert all(r["steps"] == 2 for r in state["runs"])
    cached = json.loads((search["out"] / "cached" / "seed3" / "matryoshka" / TRAINING_ARGS_FILE).read_text())
    assert cached["config"]["loss"] == "MatryoshkaLoss(CachedMultipleNegativesRankingLoss)"
    assert cached["config"]["extra"]["extra_rows"] == len(STS)
    assert cached["config"]["extra"]["mini_batch_size"] == 2
    twod = json.loads((search["out"] / "twod" / "seed3" / "matryoshka" / TRAINING_ARGS_FILE).read_text())
    assert twod["config"]["loss"] == "Matryoshka2dLoss(MultipleNegativesRankingLoss)"
    assert twod["config"]["dims"] == [384, 64, 16] and twod["config"]["weights"] == [1.0, 2.0, 1.0]
    assert twod["config"]["learning_rate"] == 5e-5 and twod["config"]["seed"] == 3
    control = json.loads((search["out"] / "twod" / "seed3" / "standard" / TRAINING_ARGS_FILE).read_text())
    assert control["config"]["loss"] == "MultipleNegativesRankingLoss"
    assert state["chosen"] in ("cached", "twod")


def test_search_scores_match_scipy_on_the_saved_cosines(search: dict[str, Path]) -> None:
    state = json.loads((search["out"] / "programme.json").read_text())
    gold = np.array([s for _, _, s in STS])
    for run in state["runs"]:
        cos = np.load(Path(run["folder"]) / "cosines.npz")
        for d, value in run["spearman"].items():
            assert value == pytest.approx(100 * stats.spearmanr(gold, cos[d]).statistic, abs=1e-9)
        assert run["retrieval"]["recall@10"]["384"] == 100.0
    s = state["summary"]["twod"]
    per_seed = [
        r["spearman"]["64"] for r in state["runs"] if r["recipe"] == "twod" and r["kind"] == "matryoshka"
    ]
    assert s["matryoshka"]["spearman"]["64"]["mean"] == pytest.approx(np.mean(per_seed))
    assert s["matryoshka"]["spearman"]["64"]["sd"] == 0.0  # one seed here; spreads: test_intervals.py
    diff = s["difference"]["32"]
    mrl32, std32 = (
        [r["spearman"]["32"] for r in state["runs"] if r["recipe"] == "twod" and r["kind"] == kind]
        for kind in ("matryoshka", "standard")
    )
    assert diff["diff"] == pytest.approx(np.mean(mrl32) - np.mean(std32), abs=1e-9)
    assert diff["low"] <= diff["diff"] <= diff["high"] and diff["n_resamples"] == 200


def test_search_report_lists_every_recipe_and_the_baseline(search: dict[str, Path]) -> None:
    md = (search["out"] / "programme.md").read_text()
    for text in (
        "cached",
        "### twod",
        "### cached",
        "baseline (docs/reproduction.md)",
        "stsb/dev.tsv",
        "partner@10",
        "95% interval",
        "selection score",
        "recipe-search",
    ):
        assert text in md, text
    assert "$" not in md  # every placeholder filled
    assert (search["out"] / "programme_scores.png").stat().st_size > 0
    docs_md = (search["docs"] / "training_dev.md").read_text()
    assert docs_md == md.replace("programme_scores.png", "training_dev_scores.png")
    assert (search["docs"] / "training_dev_scores.png").is_file()


# ---- a run identical to one trained before is scored from that model, never trained again


def test_identical_runs_share_one_model_within_and_across_programmes(data_dir: Path, tmp_path: Path) -> None:
    # "a" and "b" differ only in their Matryoshka weights: one standard control serves both.
    dims = {"dims": [384, 64], **TINY}
    recipes = [Recipe("a", {**dims, "weights": [1, 1]}), Recipe("b", {**dims, "weights": [1, 3]})]
    first = run_programme(
        recipes, seeds=[5], split="dev", output_dir=tmp_path / "first", data_dir=data_dir, n_resamples=50
    )
    trained = {(r.recipe, r.kind): Path(r.model) for r in first.runs}
    for (recipe, kind), model in trained.items():
        assert (model / TRAINING_ARGS_FILE).is_file()
        mine = tmp_path / "first" / recipe / "seed5" / kind
        assert (model == mine) == ((recipe, kind) != ("b", "standard"))
        assert (mine / "programme_run.json").is_file() and (mine / "cosines.npz").is_file()
    assert not (tmp_path / "first" / "b" / "seed5" / "standard" / TRAINING_ARGS_FILE).exists()
    weights = json.loads((trained[("b", "matryoshka")] / TRAINING_ARGS_FILE).read_text())["config"]["weights"]
    assert weights == [1.0, 3.0]
    a_std, b_std = (next(r for r in first.runs if (r.recipe, r.kind) == (x, "standard")) for x in "ab")
    assert a_std.spearman == b_std.spearman and a_std.steps == b_std.steps == 2
    md = (tmp_path / "first" / "programme.md").read_text()
    assert "1 of 4 runs are scored from a model trained once" in md
    assert "b/seed5/standard ← `first/a/seed5/standard`" in md

    # The same recipe and seed in a later programme (its weights written as floats, as the
    # command line gives them): scored from the first one's models.
    second = run_programme(
        [Recipe("b-again", {**dims, "weights": [1.0, 3.0]})],
        seeds=[5],
        split="dev",
        output_dir=tmp_path / "second",
        data_dir=data_dir,
        n_resamples=50,
        reuse=[tmp_path / "first"],
    )
    for run in second.runs:
        assert Path(run.model) == trained[("b", run.kind)].resolve()
        earlier = next(r for r in first.runs if (r.recipe, r.kind) == ("b", run.kind))
        assert run.spearman == earlier.spearman and run.train_wall_s == earlier.train_wall_s
    assert not any((tmp_path / "second").rglob(TRAINING_ARGS_FILE))

    # The same run from the command line (`matryo reproduce` with the recipe's options).
    cli_out = tmp_path / "cli"
    argv = ["reproduce", "-o", os.fspath(cli_out), "--seeds", "5", "--split", "dev", "--no-progress"]
    argv += ["--reuse", os.fspath(tmp_path / "first"), "--recipe-name", "b-cli", "--dims", "384,64"]
    argv += ["--matryoshka-weights", "1,3", "--max-steps", "2", "--batch-size", "4", "--max-seq-length", "16"]
    os.environ["MATRYO_FAST_DATA"] = os.fspath(data_dir)
    try:
        assert main(argv) == 0
    finally:
        del os.environ["MATRYO_FAST_DATA"]
    state = json.loads((cli_out / "programme.json").read_text())
    assert state["chosen"] == "b-cli"
    assert {r["kind"]: Path(r["model"]) for r in state["runs"]} == {
        kind: trained[("b", kind)].resolve() for kind in ("standard", "matryoshka")
    }
    assert not any(cli_out.rglob(TRAINING_ARGS_FILE))

    # Changed training data under the same name, or another seed: trained afresh.
    changed = tmp_path / "changed"
    write_tsv(changed / "nli" / "triplets.tsv", ["anchor", "positive", "negative"], TRIPLETS[:-1])
    write_tsv(changed / "stsb" / "dev.tsv", ["sentence1", "sentence2", "score"], STS)
    for name, kwargs in (
        ("third", {"data_dir": changed, "seeds": [5]}),
        ("fourth", {"data_dir": data_dir, "seeds": [6]}),
    ):
        third = run_programme(
            [recipes[0]],
            split="dev",
            output_dir=tmp_path / name,
            n_resamples=50,
            reuse=[tmp_path / "first"],
            **kwargs,
        )
        assert all(Path(r.model) == Path(r.folder) for r in third.runs), name
    with pytest.raises(FileNotFoundError, match="not a programme output folder"):
        run_programme(
            recipes, seeds=[5], split="dev", output_dir=tmp_path / "x", data_dir=data_dir, reuse=[tmp_path]
        )
