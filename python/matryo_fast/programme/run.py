"""Running the programme: :func:`run_programme` trains and scores every recipe and seed on one
split and writes ``programme.json`` and the report; :func:`search_recipes` is the run on dev.
"""

from __future__ import annotations

import datetime as _dt
import hashlib
import io
import json
import os
import platform
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

from matryo_fast._extras import default_data_dir
from matryo_fast.files import file_digest, prepare_output, write_atomic
from matryo_fast.models import default_model_path
from matryo_fast.programme.recipes import BASELINE_OPTIONS, Recipe
from matryo_fast.programme.report import write_report
from matryo_fast.programme.scores import KINDS, MATRYOSHKA, Run, score_model, selection_score, summarise
from matryo_fast.training import TRAINING_ARGS_FILE, TrainConfig, train

__all__ = [
    "EVAL_DIMS",
    "RESULTS_FILE",
    "RUN_FILE",
    "SPLITS",
    "ProgrammeResult",
    "run_key",
    "run_programme",
    "search_recipes",
    "split_path",
]

SPLITS = ("dev", "test")
EVAL_DIMS = (384, 256, 128, 64, 32, 16)
RESULTS_FILE = "programme.json"
#: In every run folder: the run's :func:`run_key` and the folder of its trained model.
RUN_FILE = "programme_run.json"


def split_path(split: str, data_dir: str | os.PathLike[str] | None = None) -> Path:
    """``stsb/<split>.tsv`` in the data folder (``$MATRYO_FAST_DATA`` or ``shared/data``).

    Raises:
        ValueError: ``split`` is not ``"dev"`` or ``"test"``.
    """
    if split not in SPLITS:
        raise ValueError(f"split must be one of {list(SPLITS)}, got {split!r}")
    return Path(data_dir if data_dir is not None else default_data_dir()) / "stsb" / f"{split}.tsv"


@dataclass
class ProgrammeResult:
    """Outcome of :func:`run_programme`: every run, the summaries per recipe, the files."""

    split: str
    runs: list[Run]
    summary: dict[str, dict[str, Any]]
    chosen: str
    wall_time_s: float
    files: list[Path]


def run_programme(
    recipes: Sequence[Recipe],
    *,
    seeds: Sequence[int],
    split: str,
    output_dir: str | os.PathLike[str],
    train_data: str | os.PathLike[str] | None = None,
    model: str | os.PathLike[str] | None = None,
    data_dir: str | os.PathLike[str] | None = None,
    docs_dir: str | os.PathLike[str] | None = None,
    baseline: str | os.PathLike[str] | None = None,
    eval_dims: Sequence[int] = EVAL_DIMS,
    n_resamples: int = 2000,
    overwrite: bool = False,
    show_progress_bar: bool = False,
    command: str = "",
    device: str = "cpu",
    reuse: Sequence[str | os.PathLike[str]] = (),
) -> ProgrammeResult:
    """Train standard and Matryoshka models for every recipe and seed; score them on one split.

    Args:
        recipes: The recipes; with ``split="test"`` exactly one.
        seeds: Seeds; each recipe runs both models once per seed.
        split: ``"dev"`` (choosing) or ``"test"`` (the final table, one recipe).
        output_dir: New (or empty) folder: ``<recipe>/seed<s>/<kind>/`` models and
            ``cosines.npz``, ``programme.json``, ``programme.md``, ``programme_scores.png``.
        train_data: Triplets file; default ``nli/triplets.tsv`` in the data folder.
        model: Base model folder; ``None`` = the shipped all-MiniLM-L6-v2.
        data_dir: The data folder (default ``$MATRYO_FAST_DATA`` or ``shared/data``).
        docs_dir: Also write ``training_<split>.md`` and its plot here.
        baseline: An earlier ``reproduction.json`` shown as the baseline row (default
            ``docs/reproduction.json`` of the checkout when it exists).
        eval_dims: Widths scored.
        n_resamples: Bootstrap resamples per width.
        overwrite: Allow a non-empty ``output_dir``.
        show_progress_bar: Show the trainer's progress bars.
        command: The command line recorded in the report.
        device: Where to train and encode (``"cpu"``, ``"cuda"``, ...).
        reuse: Earlier programme output folders. A run whose :func:`run_key` equals that of a
            model trained there (or earlier in this programme: recipes that differ only in
            their Matryoshka options share one standard control) is scored from that model
            instead of training it again; its ``Run.model`` names the folder.

    Returns:
        A :class:`ProgrammeResult`.

    Raises:
        ValueError: No recipe or seed, duplicate seeds or names, or several recipes on test.
        FileExistsError: ``output_dir`` is not empty and ``overwrite`` is false.
        FileNotFoundError: A data file or a ``reuse`` folder is missing.
    """
    if split not in SPLITS:
        raise ValueError(f"split must be one of {list(SPLITS)}, got {split!r}")
    if not recipes:
        raise ValueError("run_programme needs at least one recipe")
    if split == "test" and len(recipes) != 1:
        raise ValueError(
            f"the test split scores ONE recipe (the one chosen on dev), got {len(recipes)}; "
            "compare recipes with split='dev' (matryo recipe-search)"
        )
    names = [r.name for r in recipes]
    if len(set(names)) != len(names):
        raise ValueError(f"recipe names must be distinct, got {names}")
    seed_list = [int(s) for s in seeds]
    if not seed_list or len(set(seed_list)) != len(seed_list):
        raise ValueError(f"seeds must be distinct and at least one, got {seed_list}")
    data = Path(data_dir) if data_dir is not None else default_data_dir()
    train_path = Path(train_data) if train_data is not None else data / "nli" / "triplets.tsv"
    eval_path = split_path(split, data)
    sts_train = data / "stsb" / "train.tsv"
    needed = [train_path, eval_path] + ([sts_train] if any(r.sts_train for r in recipes) else [])
    trained = _trained_models(reuse)
    out = prepare_output(output_dir, needed, overwrite=overwrite)
    from matryo_fast.data import read_sts

    sts = read_sts(eval_path)
    gold = np.asarray(sts[2], dtype=np.float64)
    base_json = _baseline_path(baseline)
    t0 = time.perf_counter()
    runs: list[Run] = []
    summary: dict[str, dict[str, Any]] = {}
    state: dict[str, Any] = {}
    for recipe in recipes:
        cosines: dict[tuple[int, str], dict[int, Any]] = {}
        for seed in seed_list:
            for kind in KINDS:
                folder = out / recipe.name / f"seed{seed}" / kind
                cfg = recipe.config(
                    train_path,
                    folder,
                    matryoshka=kind == MATRYOSHKA,
                    seed=seed,
                    model=model,
                    sts_train_data=sts_train,
                    show_progress_bar=show_progress_bar,
                    device=device,
                )
                key = run_key(cfg)
                model_dir = trained.get(_canonical(key))
                if model_dir is None:
                    train(cfg, overwrite=overwrite)
                    model_dir = trained[_canonical(key)] = folder
                folder.mkdir(parents=True, exist_ok=True)
                record = {"key": key, "model": os.fspath(model_dir.resolve())}
                write_atomic(folder / RUN_FILE, json.dumps(record, indent=2).encode())
                done = json.loads((model_dir / TRAINING_ARGS_FILE).read_text(encoding="utf-8"))
                spearman, cos, retrieval = score_model(model_dir, sts, eval_dims, device)
                buffer = io.BytesIO()
                arrays: dict[str, Any] = {str(d): c for d, c in cos.items()}
                np.savez(buffer, allow_pickle=False, **arrays)
                write_atomic(folder / "cosines.npz", buffer.getvalue())
                cosines[(seed, kind)] = cos
                runs.append(
                    Run(
                        recipe.name,
                        seed,
                        kind,
                        spearman,
                        retrieval,
                        float(done["wall_time_s"]),
                        float(done["train_loss"]),
                        int(done["global_step"]),
                        os.fspath(folder),
                        os.fspath(model_dir),
                    )
                )
                state = _state(split, eval_path, train_path, recipes, seed_list, runs, summary, t0, command)
                write_atomic(out / RESULTS_FILE, json.dumps(state, indent=2).encode())
        mine = [r for r in runs if r.recipe == recipe.name]
        summary[recipe.name] = summarise(mine, gold, cosines, seed_list, n_resamples)
    wall = time.perf_counter() - t0
    chosen = max(summary, key=lambda name: selection_score(summary[name]))
    state = _state(split, eval_path, train_path, recipes, seed_list, runs, summary, t0, command)
    state.update({"chosen": chosen, "wall_time_s": wall, "pairs": len(gold)})
    if base_json is not None:
        state["baseline"] = _baseline(base_json)
    write_atomic(out / RESULTS_FILE, json.dumps(state, indent=2).encode())
    files = [out / RESULTS_FILE, *write_report(out / RESULTS_FILE, out)]
    if docs_dir is not None:
        files += write_report(out / RESULTS_FILE, Path(docs_dir), stem=f"training_{split}")
    return ProgrammeResult(split, runs, summary, chosen, wall, files)


def run_key(cfg: TrainConfig) -> dict[str, Any]:
    """What makes two runs the same training: every :class:`~matryo_fast.training.TrainConfig`
    field except where the model is written and how progress is shown (and, for the standard
    control, the Matryoshka widths, weights and wrapper it does not use), with each data file
    named by the SHA-256 of its bytes and the base model by the SHA-256 of its folder's files
    (so a changed file under the same name never matches, and the shipped model given by path
    or as ``None`` is the same run).

    Raises:
        FileNotFoundError: A data file or the base model folder is missing.
    """
    fields = asdict(cfg)
    unused: tuple[str, ...] = ("output_dir", "overwrite", "show_progress_bar")
    if not cfg.matryoshka:  # the control trains the base loss alone: no widths, weights or wrapper
        unused += ("dims", "weights", "matryoshka_loss")
    for name in unused:
        del fields[name]
    for name in ("data", "extra_data", "eval_data"):
        if fields[name] is not None:
            fields[name] = "sha256:" + file_digest(fields[name], hashlib.sha256())
    model = Path(fields["model"]) if fields["model"] is not None else default_model_path()
    fields["model"] = "sha256:" + _folder_sha256(model)
    key: dict[str, Any] = json.loads(json.dumps(fields))
    return key


def _folder_sha256(folder: Path) -> str:
    """One digest of every file under ``folder``: each file's path relative to it and its bytes."""
    if not folder.is_dir():
        raise FileNotFoundError(f"base model folder not found: {folder}")
    h = hashlib.sha256()
    for path in sorted(p for p in folder.rglob("*") if p.is_file()):
        digest = file_digest(path, hashlib.sha256())
        h.update(f"{path.relative_to(folder).as_posix()}\0{digest}\n".encode())
    return h.hexdigest()


def _canonical(key: dict[str, Any]) -> str:
    """``key`` as text, numbers as floats (a weight of ``2`` from a JSON recipe file and ``2.0``
    from the command line are the same run)."""

    def number(v: Any) -> Any:
        if isinstance(v, list):
            return [number(x) for x in v]
        return float(v) if isinstance(v, int) and not isinstance(v, bool) else v

    return json.dumps({k: number(v) for k, v in key.items()}, sort_keys=True)


def _trained_models(folders: Sequence[str | os.PathLike[str]]) -> dict[str, Path]:
    """``{canonical run key: model folder}`` of every finished run under earlier programme
    output folders (a run folder holds :data:`RUN_FILE` once its model is trained)."""
    found: dict[str, Path] = {}
    for folder in map(Path, folders):
        if not (folder / RESULTS_FILE).is_file():
            raise FileNotFoundError(f"reuse: {folder} is not a programme output folder (no {RESULTS_FILE})")
        for path in sorted(folder.rglob(RUN_FILE)):
            record = json.loads(path.read_text(encoding="utf-8"))
            model = Path(record["model"])
            if (model / TRAINING_ARGS_FILE).is_file():
                found.setdefault(_canonical(record["key"]), model)
    return found


def search_recipes(recipes: Sequence[Recipe], **options: Any) -> ProgrammeResult:
    """:func:`run_programme` on ``stsb/dev.tsv``: the recipe search (every recipe is reported,
    the chosen one by :func:`selection_score`). Takes the same keyword options except
    ``split``."""
    if "split" in options:
        raise TypeError("search_recipes always scores stsb/dev.tsv; it takes no split")
    return run_programme(recipes, split="dev", **options)


def _state(
    split: str,
    eval_path: Path,
    train_path: Path,
    recipes: Sequence[Recipe],
    seeds: list[int],
    runs: list[Run],
    summary: dict[str, Any],
    t0: float,
    command: str,
) -> dict[str, Any]:
    return {
        "split": split,
        "eval_data": f"stsb/{eval_path.name}",
        "train_data": f"{train_path.parent.name}/{train_path.name}",
        "seeds": seeds,
        "recipes": [
            {
                "name": r.name,
                "options": {**BASELINE_OPTIONS, **r.options},
                "sts_train": r.sts_train,
                "described": r.describe(),
            }
            for r in recipes
        ],
        "runs": [asdict(r) for r in runs],
        "summary": summary,
        "elapsed_s": time.perf_counter() - t0,
        "command": command,
        "machine": f"{platform.machine()}, {os.cpu_count()} CPU cores",
        "date": _dt.date.today().isoformat(),
    }


def _baseline_path(baseline: str | os.PathLike[str] | None) -> Path | None:
    if baseline is not None:
        p = Path(baseline)
        if not p.is_file():
            raise FileNotFoundError(f"baseline file not found: {p}")
        return p
    default = Path(__file__).resolve().parents[3] / "docs" / "reproduction.json"
    return default if default.is_file() else None


def _baseline(path: Path) -> dict[str, Any]:
    """The standard and Matryoshka Spearman per width of an earlier ``reproduction.json``."""
    from matryo_fast.evaluation import EvaluationReport

    rep = EvaluationReport.from_json(path)
    return {
        "file": path.name,
        "dataset": rep.dataset,
        "command": rep.meta.get("command", ""),
        "spearman": {kind: {int(d): rep.score(kind, int(d)) for d in rep.dims(kind)} for kind in KINDS},
    }
