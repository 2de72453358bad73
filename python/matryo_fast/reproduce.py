"""Reproduce "Matryoshka beats standard" on the CPU, from the shipped all-MiniLM-L6-v2.

The published experiment (sentence-transformers' Matryoshka write-up) trains mpnet-base on AllNLI
with and without ``MatryoshkaLoss`` and scores STS-B test per truncation width. This module runs
the same comparison at CPU scale: a *standard* (MultipleNegativesRankingLoss) and a *Matryoshka*
(MatryoshkaLoss around it) model trained from the same base with the same seed, data, batch size
and number of steps, then base, standard and Matryoshka are scored on STS-B test at every width.
It writes the report (JSON, Markdown, two plots) to ``output_dir`` and, with ``docs_dir``,
``reproduction.md`` and the PNG plots there.

>>> from matryo_fast.reproduce import reproduce
>>> reproduce(output_dir="runs/repro", docs_dir="docs")  # doctest: +SKIP
"""

from __future__ import annotations

import datetime as _dt
import json
import os
import platform
import time
from collections.abc import Sequence
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from string import Template
from typing import Any

from matryo_fast._extras import CHECKOUT_DATA_DIR, default_data_dir
from matryo_fast.evaluation import EvaluationReport, evaluate_sts
from matryo_fast.files import prepare_output
from matryo_fast.programme.recipes import BASELINE_OPTIONS, triplet_config
from matryo_fast.training import TRAINING_ARGS_FILE, TrainRecord, TrainResult, train

__all__ = [
    "DEFAULT_DATA_DIR",
    "EVAL_DIMS",
    "ReproductionResult",
    "prepare_output",
    "render",
    "reproduce",
    "write_markdown",
]

#: ``shared/data`` next to the repository checkout. The defaults of :func:`reproduce` come from
#: :func:`matryo_fast._extras.default_data_dir`, which prefers ``$MATRYO_FAST_DATA``.
DEFAULT_DATA_DIR = CHECKOUT_DATA_DIR
EVAL_DIMS = (384, 256, 128, 64, 32, 16)
#: The CPU budget of docs/reproduction.md: 250 steps x 32 triplets at 32 tokens (2-core machine).
DEFAULT_STEPS: int = BASELINE_OPTIONS["max_steps"]
PUBLISHED = {
    "model": "mpnet-base on AllNLI, STS-B test, 64 of 768 dims (8.3%)",
    "matryoshka_share": 98.37,
    "standard_share": 96.46,
}
BASE, STANDARD, MATRYOSHKA = "base", "standard", "matryoshka"
#: The report's text, with ``$placeholders`` filled by :func:`write_markdown` (package data).
TEMPLATE = "templates/reproduction.md"


@dataclass
class ReproductionResult:
    """Outcome of :func:`reproduce`.

    Attributes:
        report: Base, standard and Matryoshka scored on the STS file at every width.
        standard: The control's :class:`~matryo_fast.training.TrainResult`.
        matryoshka: The Matryoshka run's :class:`~matryo_fast.training.TrainResult`.
        wall_time_s: Seconds for the whole experiment (both trainings and all evaluations).
        files: Files written (report, plots, docs).
        train_data: The training file, as shown in the Markdown.
    """

    report: EvaluationReport
    standard: TrainResult
    matryoshka: TrainResult
    wall_time_s: float
    files: list[Path]
    train_data: str = ""


def _findings(report: EvaluationReport) -> dict[str, Any]:
    dims = sorted(report.results[MATRYOSHKA]["spearman"], reverse=True)
    ahead = {d: report.score(MATRYOSHKA, d) - report.score(STANDARD, d) for d in dims}
    small = 32 if 32 in dims else dims[-1]
    return {
        "ahead_by": ahead,
        "ahead_every_dim_to_64": all(v > 0 for d, v in ahead.items() if d <= 64),
        "behind_at": [d for d, v in ahead.items() if v <= 0],
        "ahead_every_dim": all(v > 0 for v in ahead.values()),
        "share_dim": small,
        "share_matryoshka": report.relative(MATRYOSHKA, small),
        "share_standard": report.relative(STANDARD, small),
        "share_base": report.relative(BASE, small),
    }


def _template_values(result: ReproductionResult, command: str, plot_files: Sequence[str]) -> dict[str, str]:
    """The placeholders of ``templates/reproduction.md`` for ``result``."""
    rep = result.report
    cfg = result.matryoshka.config
    f = _findings(rep)
    dims = sorted(rep.results[MATRYOSHKA]["spearman"], reverse=True)
    full = rep.full_dims[MATRYOSHKA]
    steps = result.matryoshka.global_step
    d = f["share_dim"]
    shape_ok = f["ahead_every_dim_to_64"] and f["share_matryoshka"] > f["share_standard"]
    yes_no = {True: "yes", False: "no"}
    every = (
        "**yes**."
        if f["ahead_every_dim"]
        else "**no**: standard is ahead or level at "
        + ", ".join(str(x) for x in f["behind_at"])
        + " dims (see the Δ row)."
    )
    values: dict[str, Any] = {
        "published_matryoshka": PUBLISHED["matryoshka_share"],
        "published_standard": PUBLISHED["standard_share"],
        "model": cfg.model,
        "full": full,
        "train_data": result.train_data,
        "train_rows": cfg.train_rows,
        "seed": cfg.seed,
        "batch_size": cfg.batch_size,
        "budget": f"max_steps {cfg.max_steps}" if cfg.max_steps else f"{cfg.epochs:g} epoch(s)",
        "steps": steps,
        "seen": steps * cfg.batch_size,
        "max_seq_length": cfg.max_seq_length,
        "learning_rate": f"{cfg.learning_rate:g}",
        "warmup_ratio": f"{cfg.warmup_ratio:g}",
        "train_dims": cfg.dims,
        "n_train_dims": len(cfg.dims),
        "dataset": rep.dataset,
        "pairs": rep.meta.get(BASE, {}).get("pairs", "?"),
        "dims": dims,
        "machine": platform.machine(),
        "cores": os.cpu_count(),
        "date": _dt.date.today().isoformat(),
        "wall_min": f"{result.wall_time_s / 60:.1f}",
        "standard_min": f"{result.standard.wall_time_s / 60:.1f}",
        "matryoshka_min": f"{result.matryoshka.wall_time_s / 60:.1f}",
        "standard_loss": f"{result.standard.train_loss:.4f}",
        "matryoshka_loss": f"{result.matryoshka.train_loss:.4f}",
        "command": command,
        "results_table": rep.to_markdown().rstrip(),
        "delta_dims": " | ".join(str(x) for x in dims),
        "delta_align": "---:|" * len(dims),
        "delta_values": " | ".join(f"{f['ahead_by'][x]:+.2f}" for x in dims),
        "plots": "".join(f"![{Path(p).stem}]({p})\n\n" for p in plot_files),
        "small_dims": ", ".join(str(x) for x in dims if x <= 64),
        "ahead_to_64": yes_no[bool(f["ahead_every_dim_to_64"])],
        "share_dim": d,
        "share_pct": f"{100 * d / full:.1f}",
        "share_matryoshka": f"{f['share_matryoshka']:.2f}",
        "share_standard": f"{f['share_standard']:.2f}",
        "share_base": f"{f['share_base']:.2f}",
        "larger_share": yes_no[bool(f["share_matryoshka"] > f["share_standard"])],
        "shape": "reproduced" if shape_ok else "not reproduced",
        "every_dim": every,
    }
    return {key: str(v) for key, v in values.items()}


def write_markdown(
    path: str | os.PathLike[str],
    result: ReproductionResult,
    *,
    command: str,
    plot_files: Sequence[str],
) -> Path:
    """Write ``reproduction.md`` from the template ``templates/reproduction.md``: setup, command,
    budget, wall time, table, plots and verdict.

    Args:
        path: The Markdown file.
        result: What :func:`reproduce` returned.
        command: The exact command that regenerates the file.
        plot_files: Plot file names, relative to the Markdown file.

    Returns:
        The written path.
    """
    template = Template(resources.files("matryo_fast").joinpath(TEMPLATE).read_text(encoding="utf-8"))
    out = Path(path)
    out.write_text(template.substitute(_template_values(result, command, plot_files)), encoding="utf-8")
    return out


def reproduce(
    *,
    output_dir: str | os.PathLike[str],
    train_data: str | os.PathLike[str] | None = None,
    eval_data: str | os.PathLike[str] | None = None,
    model: str | os.PathLike[str] | None = None,
    docs_dir: str | os.PathLike[str] | None = None,
    max_steps: int | None = DEFAULT_STEPS,
    epochs: float = 1.0,
    batch_size: int = 32,
    max_seq_length: int = 32,
    learning_rate: float = 2e-5,
    seed: int = 42,
    eval_dims: Sequence[int] = EVAL_DIMS,
    train_dims: Sequence[int] | None = None,
    overwrite: bool = False,
    show_progress_bar: bool = True,
    command: str | None = None,
) -> ReproductionResult:
    """Train standard and Matryoshka models identically and compare them per width on STS.

    Args:
        output_dir: New (or empty) folder; gets ``standard/``, ``matryoshka/``,
            ``reproduction.json``, ``reproduction.md`` and the plots.
        train_data: Triplets file (anchor, positive, negative[, source]); default
            ``nli/triplets.tsv`` in ``$MATRYO_FAST_DATA`` or ``shared/data``.
        eval_data: STS file; default ``stsb/test.tsv`` there.
        model: Base model folder; ``None`` = the shipped all-MiniLM-L6-v2.
        docs_dir: Also write ``reproduction.md``, ``reproduction_scores.png`` and
            ``reproduction_relative.png`` here (replacing earlier ones).
        max_steps: Optimiser steps per model (overrides ``epochs``).
        epochs: Passes over the data when ``max_steps`` is ``None``.
        batch_size: Rows per step.
        max_seq_length: Training token limit (NLI sentences are short: 84% of premises and
            99.5% of hypotheses fit in 32 MiniLM tokens).
        learning_rate: Peak learning rate.
        seed: Same seed for both runs.
        eval_dims: Widths scored.
        train_dims: Matryoshka widths; default the full dimension and powers of two down to 32.
        overwrite: Allow a non-empty ``output_dir``.
        show_progress_bar: Show the trainer's progress bars.
        command: The command line recorded in the Markdown (default: a ``matryo reproduce`` line
            built from the arguments).

    Returns:
        A :class:`ReproductionResult`.

    Raises:
        FileExistsError: ``output_dir`` is not empty and ``overwrite`` is false.
        FileNotFoundError: A data file is missing.
        matryo_fast.data.DataError: A data file is malformed.
    """
    data_dir = default_data_dir()
    train_path = Path(train_data) if train_data is not None else data_dir / "nli" / "triplets.tsv"
    eval_path = Path(eval_data) if eval_data is not None else data_dir / "stsb" / "test.tsv"
    out = prepare_output(output_dir, [train_path, eval_path], overwrite=overwrite)
    t0 = time.perf_counter()

    base_report = evaluate_sts(model, eval_path, dims=eval_dims, name=BASE)
    budget = dict(epochs=epochs, max_steps=max_steps, batch_size=batch_size, max_seq_length=max_seq_length)
    common = triplet_config(
        train_path,
        out / STANDARD,
        matryoshka=False,
        model=model,
        dims=train_dims,
        learning_rate=learning_rate,
        seed=seed,
        eval_data=eval_path,
        eval_dims=eval_dims,
        device="cpu",
        overwrite=overwrite,
        show_progress_bar=show_progress_bar,
        **budget,
    )
    std = train(common)
    mrl = train(common, output_dir=out / MATRYOSHKA, matryoshka=True)
    assert std.report is not None and mrl.report is not None
    std.report.results = {STANDARD: std.report.results[std.report.models[0]]}
    std.report.full_dims = {STANDARD: std.report.full_dims[std.report.models[0]]}
    mrl.report.results = {MATRYOSHKA: mrl.report.results[mrl.report.models[0]]}
    mrl.report.full_dims = {MATRYOSHKA: mrl.report.full_dims[mrl.report.models[0]]}
    label = f"{eval_path.parent.name}/{eval_path.name}"
    base_report.dataset = std.report.dataset = mrl.report.dataset = label
    report = EvaluationReport.combine([base_report, std.report, mrl.report])
    wall = time.perf_counter() - t0
    report.meta["wall_time_s"] = wall

    if command is None:
        parts = ["matryo reproduce", f"--output-dir {out}"]
        if docs_dir is not None:
            parts.append(f"--docs-dir {docs_dir}")
        parts.append(f"--max-steps {max_steps}" if max_steps else f"--epochs {epochs:g}")
        parts += [
            f"--batch-size {batch_size}",
            f"--max-seq-length {max_seq_length}",
            f"--seed {seed}",
        ]
        command = " ".join(parts)
    command = f"HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1 {command}"

    report.meta["command"] = command
    report.meta["train_data"] = _display_path(train_path)
    result = ReproductionResult(report, std, mrl, wall, [], _display_path(train_path))
    result.files = _write_outputs(result, out, docs_dir, command)
    return result


def _write_outputs(
    result: ReproductionResult,
    out: Path,
    docs_dir: str | os.PathLike[str] | None,
    command: str,
) -> list[Path]:
    report = result.report
    report.to_json(out / "reproduction.json")
    files: list[Path] = [out / "reproduction.json"]
    targets = [out] + ([Path(docs_dir)] if docs_dir is not None else [])
    for target in targets:
        target.mkdir(parents=True, exist_ok=True)
        scores = report.plot(
            target / "reproduction_scores.png",
            kind="scores",
            title=f"{report.dataset}: Spearman x100 vs embedding dimension",
        )
        rel = report.plot(
            target / "reproduction_relative.png",
            kind="relative",
            title=f"{report.dataset}: share of the full-dimension Spearman kept",
        )
        md = write_markdown(
            target / "reproduction.md",
            result,
            command=command,
            plot_files=[scores.name, rel.name],
        )
        files += [scores, rel, md]
        if target != out:
            report.to_json(target / "reproduction.json")
            files.append(target / "reproduction.json")
    return files


def _load_train_result(folder: Path) -> TrainResult:
    record = json.loads((folder / TRAINING_ARGS_FILE).read_text(encoding="utf-8"))
    cfg = dict(record["config"])
    if cfg.get("score_range") is not None:
        cfg["score_range"] = tuple(cfg["score_range"])
    return TrainResult(
        output_dir=folder,
        config=TrainRecord(**cfg),
        global_step=int(record["global_step"]),
        train_loss=float(record["train_loss"]),
        log_history=list(record.get("log_history", [])),
        wall_time_s=float(record["wall_time_s"]),
    )


def render(
    output_dir: str | os.PathLike[str],
    *,
    docs_dir: str | os.PathLike[str] | None = None,
    command: str | None = None,
) -> ReproductionResult:
    """Rewrite the Markdown and plots of a finished run from its files, without training.

    Args:
        output_dir: The ``output_dir`` of an earlier :func:`reproduce`.
        docs_dir: Also write ``reproduction.md`` and the plots here.
        command: The command recorded in the Markdown (default: the one stored by the run).

    Returns:
        The rebuilt :class:`ReproductionResult`.

    Raises:
        FileNotFoundError: ``output_dir`` lacks ``reproduction.json`` or a run's
            ``matryo_training_args.json``.
    """
    out = Path(output_dir)
    for needed in (
        out / "reproduction.json",
        out / STANDARD / TRAINING_ARGS_FILE,
        out / MATRYOSHKA / TRAINING_ARGS_FILE,
    ):
        if not needed.is_file():
            raise FileNotFoundError(f"not a finished reproduction run: {needed} is missing")
    report = EvaluationReport.from_json(out / "reproduction.json")
    cmd = command or str(report.meta.get("command", "matryo reproduce"))
    report.meta["command"] = cmd
    report.meta.setdefault("train_data", "../shared/data/nli/triplets.tsv")
    result = ReproductionResult(
        report,
        _load_train_result(out / STANDARD),
        _load_train_result(out / MATRYOSHKA),
        float(report.meta.get("wall_time_s", 0.0)),
        [],
        str(report.meta.get("train_data", "../shared/data/nli/triplets.tsv")),
    )
    result.files = _write_outputs(result, out, docs_dir, cmd)
    return result


def _display_path(p: Path) -> str:
    try:
        return os.path.relpath(p, Path.cwd())
    except ValueError:  # different drive on Windows
        return str(p)
