"""What a training run is: :class:`TrainConfig` (validated on construction) and the resolved
:class:`TrainRecord` saved next to the model. Pure data: importing this module needs no training
stack (torch and sentence-transformers load when :func:`matryo_fast.training.train` runs)."""

from __future__ import annotations

import os
import sys
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal

from matryo_fast._validate import default_dims, is_int, require_positive, validate_dims
from matryo_fast.training_data import LossName

if TYPE_CHECKING:
    from datasets import Dataset

__all__ = ["MATRYOSHKA_KINDS", "MatryoshkaKind", "TrainConfig", "TrainRecord"]

MatryoshkaKind = Literal["matryoshka", "matryoshka2d"]
MATRYOSHKA_KINDS: tuple[str, ...] = ("matryoshka", "matryoshka2d")


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
