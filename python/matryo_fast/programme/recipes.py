"""Training recipes: the CPU baseline of ``docs/reproduction.md``, the ``TrainConfig`` of a run
on the NLI triplets, and named :class:`Recipe` s (options of
:class:`~matryo_fast.training.TrainConfig`) read from a JSON file.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from matryo_fast.training import TrainConfig

__all__ = [
    "BASELINE_OPTIONS",
    "RECIPE_OPTIONS",
    "TRIPLET_COLUMNS",
    "Recipe",
    "load_recipes",
    "triplet_config",
]

#: The options a recipe may set: fields of :class:`~matryo_fast.training.TrainConfig`.
RECIPE_OPTIONS = frozenset(
    {
        "max_steps",
        "epochs",
        "batch_size",
        "mini_batch_size",
        "learning_rate",
        "warmup_ratio",
        "max_seq_length",
        "dims",
        "weights",
        "matryoshka_loss",
    }
)
#: The CPU recipe of docs/reproduction.md.
BASELINE_OPTIONS: dict[str, Any] = {"max_steps": 250, "batch_size": 32, "max_seq_length": 32}
#: The columns of the NLI triplets file, in the order the loss takes them.
TRIPLET_COLUMNS = ("anchor", "positive", "negative")


def triplet_config(
    data: str | os.PathLike[str], output_dir: str | os.PathLike[str], *, matryoshka: bool, **options: Any
) -> TrainConfig:
    """The ``TrainConfig`` of one run on the NLI triplets (:data:`TRIPLET_COLUMNS`): the CPU
    recipe :data:`BASELINE_OPTIONS` with ``options`` (any ``TrainConfig`` fields) on top.

    Raises:
        ValueError: A value ``TrainConfig`` rejects.
    """
    merged = {**BASELINE_OPTIONS, **options}
    return TrainConfig(
        data, output_dir=output_dir, matryoshka=matryoshka, columns=list(TRIPLET_COLUMNS), **merged
    )


@dataclass(frozen=True)
class Recipe:
    """A named training recipe: options of :class:`~matryo_fast.training.TrainConfig` plus
    whether STS-B train is added as a second (CoSENT) dataset.

    The options are checked when the recipe is made, by building a ``TrainConfig`` from them.

    Args:
        name: Label in the reports (also the run folder's name).
        options: ``TrainConfig`` fields from :data:`RECIPE_OPTIONS`; the rest are the
            programme's (data, seed, output folder, the Matryoshka switch).
        sts_train: Add ``stsb/train.tsv`` with ``CoSENTLoss`` (multi-dataset training).

    Raises:
        ValueError: An unknown option, a bad name, or a value ``TrainConfig`` rejects.
    """

    name: str
    options: Mapping[str, Any] = field(default_factory=dict)
    sts_train: bool = False

    def __post_init__(self) -> None:
        if not self.name or any(c in self.name for c in "/\\") or self.name.startswith("."):
            raise ValueError(f"recipe name must be a plain folder name, got {self.name!r}")
        unknown = sorted(set(self.options) - RECIPE_OPTIONS)
        if unknown:
            raise ValueError(
                f"recipe {self.name!r}: unknown option(s) {unknown}; known: {sorted(RECIPE_OPTIONS)}"
            )
        self.config("-", "-", matryoshka=True, seed=0)

    def config(
        self,
        data: str | os.PathLike[str],
        output_dir: str | os.PathLike[str],
        *,
        matryoshka: bool,
        seed: int,
        model: str | os.PathLike[str] | None = None,
        sts_train_data: str | os.PathLike[str] | None = None,
        show_progress_bar: bool = False,
        device: str = "cpu",
    ) -> TrainConfig:
        """The ``TrainConfig`` of one run of this recipe (the triplet columns)."""
        if self.sts_train and sts_train_data is None:
            sts_train_data = "-"
        extra_data = sts_train_data if self.sts_train else None
        run = dict(model=model, seed=seed, device=device, show_progress_bar=show_progress_bar)
        return triplet_config(
            data, output_dir, matryoshka=matryoshka, extra_data=extra_data, **run, **self.options
        )

    def describe(self) -> str:
        """The options as ``key=value`` text (the report's recipe column)."""
        options = {**BASELINE_OPTIONS, **self.options}
        parts = [f"{k}={_fmt(v)}" for k, v in sorted(options.items())]
        if self.sts_train:
            parts.append("+stsb-train(CoSENT)")
        return ", ".join(parts)


def _fmt(v: Any) -> str:
    if isinstance(v, (list, tuple)):
        return "/".join(_fmt(x) for x in v)
    return f"{v:g}" if isinstance(v, float) else str(v)


def load_recipes(path: str | os.PathLike[str]) -> list[Recipe]:
    """Recipes from a JSON list of objects ``{"name": ..., "sts_train": bool, <options>}``.

    Raises:
        FileNotFoundError: No such file.
        ValueError: Not such a list, duplicate names, or a bad recipe.
    """
    items = json.loads(Path(path).read_text(encoding="utf-8"))
    if not isinstance(items, list) or not items or not all(isinstance(x, dict) for x in items):
        raise ValueError(f"{path}: expected a non-empty JSON list of recipe objects")
    recipes = []
    for item in items:
        options = dict(item)
        if "name" not in options:
            raise ValueError(f"{path}: a recipe has no 'name': {item}")
        name = str(options.pop("name"))
        sts_train = bool(options.pop("sts_train", False))
        recipes.append(Recipe(name, options, sts_train))
    names = [r.name for r in recipes]
    if len(set(names)) != len(names):
        raise ValueError(f"{path}: recipe names must be distinct, got {names}")
    return recipes
