"""The training subcommands of ``matryo``: train, reproduce, recipe-search (parsers and runners).

:mod:`matryo_fast.cli` adds these parsers and calls :func:`run`; errors are raised as Python
exceptions and turned into one ``matryo: error: ...`` line there.
"""

from __future__ import annotations

import argparse
import shlex
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from matryo_fast._cliargs import add_command, float_list, int_list, pick, str_list

if TYPE_CHECKING:
    from matryo_fast.programme import Recipe

__all__ = ["COMMANDS", "RECIPE_FLAGS", "add_parsers", "run"]

COMMANDS = ("train", "reproduce", "recipe-search")

#: The recipe options of ``matryo reproduce`` (the programme's :class:`Recipe` fields).
RECIPE_FLAGS = (
    "mini_batch_size",
    "matryoshka_weights",
    "loss",
    "sts_train",
    "dims",
    "warmup_ratio",
    "device",
    "reuse",
    "recipe_name",
)
#: Where a recipe's option comes from on the command line (flag -> ``TrainConfig`` field).
RECIPE_FIELDS = {
    "mini_batch_size": "mini_batch_size",
    "dims": "dims",
    "matryoshka_weights": "weights",
    "loss": "matryoshka_loss",
    "warmup_ratio": "warmup_ratio",
}
DIMS_HELP = "Matryoshka dims, e.g. 384,256,128,64,32"


def _run_options(p: Any, *, output_dir: str | None = None, docs: str | None = None) -> None:
    """The options every training command has: ``-o/--output-dir`` (required without a
    default), ``--model``, ``--overwrite``, ``--no-progress``; with ``docs`` (the help of
    ``--docs-dir``) also ``--docs-dir`` and ``--train-data``."""
    if output_dir is None:
        p.add_argument("-o", "--output-dir", required=True, help="new or empty folder for the model")
    else:
        p.add_argument("-o", "--output-dir", default=output_dir, help="new or empty folder (%(default)s)")
    if docs is not None:
        p.add_argument("--docs-dir", help=docs)
        p.add_argument("--train-data", help="triplets file (default: ../shared/data/nli/triplets.tsv)")
    p.add_argument("--model", help="base model folder (default: the shipped all-MiniLM-L6-v2)")
    p.add_argument("--overwrite", action="store_true", help="allow a non-empty output folder")
    p.add_argument("--no-progress", action="store_true", help="hide the progress bars")


def _reuse_option(p: Any) -> None:
    p.add_argument(
        "--reuse",
        action="append",
        metavar="DIR",
        help="an earlier programme output folder: a run identical to one trained there (options, "
        "seed, data bytes) is scored from that model instead of trained again (repeatable)",
    )


def _budget_options(p: Any, *, max_steps: int | None, max_seq_length: int | None) -> None:
    """The training budget of train and reproduce (reproduce: the CPU recipe's defaults)."""
    steps = "steps per model" + ("" if max_steps is None else f" (default {max_steps}); 0 = use --epochs")
    p.add_argument("--max-steps", type=int, default=max_steps, help=steps)
    p.add_argument("--epochs", type=float, default=1.0, help="passes over the data without a step limit")
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--learning-rate", type=float, default=2e-5)
    tokens = "training token limit" + ("" if max_seq_length is None else f" (default {max_seq_length})")
    p.add_argument("--max-seq-length", type=int, default=max_seq_length, help=tokens)
    p.add_argument("--seed", type=int, default=42)


def _recipe_options(g: argparse._ArgumentGroup) -> None:
    g.add_argument(
        "--mini-batch-size",
        type=int,
        help="train CachedMultipleNegativesRankingLoss: --batch-size rows of in-batch negatives, "
        "this many through the model at once",
    )
    g.add_argument("--dims", type=int_list, help=DIMS_HELP)
    g.add_argument("--matryoshka-weights", type=float_list, help="loss weight per dim, same order as --dims")
    g.add_argument(
        "--loss", choices=["matryoshka", "matryoshka2d"], help="MatryoshkaLoss or Matryoshka2dLoss"
    )
    g.add_argument("--sts-train", action="store_true", help="add stsb/train.tsv with CoSENTLoss")
    g.add_argument("--warmup-ratio", type=float)
    g.add_argument("--device", help="train and encode here, e.g. cuda (default cpu)")


def add_parsers(sub: Any) -> None:
    """Adds the train, reproduce and recipe-search subcommands to an argparse subparsers object."""
    t = add_command(sub, "train", _train)
    t.add_argument("data", help="training file (.tsv, .csv or .jsonl)")
    _run_options(t)
    t.add_argument("--no-matryoshka", action="store_true", help="train the plain base loss (control)")
    t.add_argument("--dims", type=int_list, help=DIMS_HELP)
    t.add_argument("--weights", type=float_list, help="loss weight per dim, same order as --dims")
    t.add_argument("--loss", choices=["auto", "mnrl", "cosent"], default="auto")
    t.add_argument("--columns", type=str_list, help="training columns in order, e.g. anchor,positive")
    _budget_options(t, max_steps=None, max_seq_length=None)
    t.add_argument("--warmup-ratio", type=float, default=0.1)
    t.add_argument("--eval-data", help="STS file scored per dim after training")
    t.add_argument("--eval-dims", type=int_list)
    t.add_argument("--eval-steps", type=int, help="also evaluate every N steps (needs --eval-data)")
    t.add_argument("--device", help="'cpu' forces the CPU (default: let the trainer choose)")

    r = add_command(sub, "reproduce", _reproduce)
    _run_options(r, output_dir="runs/reproduction", docs="also write reproduction.md and the PNG plots here")
    r.add_argument("--eval-data", help="STS file (default: ../shared/data/stsb/test.tsv)")
    _budget_options(r, max_steps=250, max_seq_length=32)
    r.add_argument(
        "--render-only",
        action="store_true",
        help="rewrite reproduction.md and the plots from a finished --output-dir, without training",
    )
    g = r.add_argument_group(
        "programme (seeds, recipe, intervals)",
        "Any of these runs the programme instead (matryo_fast.programme): standard and Matryoshka "
        "per seed, scored on --split, with seed spreads, paired-bootstrap intervals and the "
        "retrieval side; writes programme.json/.md (and training_<split>.md in --docs-dir).",
    )
    _recipe_options(g)
    g.add_argument("--seeds", type=int_list, help="seeds, e.g. 1,2,3 (each trains both models)")
    _reuse_option(g)
    g.add_argument("--recipe-name", help="the recipe's name in the report, e.g. its name in the dev search")
    g.add_argument(
        "--split", choices=["dev", "test"], default="test", help="STS-B split scored (default test)"
    )

    s = add_command(sub, "recipe-search", _programme)
    s.add_argument("recipes", help="JSON file: a list of {name, [sts_train], options...}")
    _run_options(s, output_dir="runs/recipe-search", docs="also write training_dev.md and its plot here")
    s.add_argument("--seeds", type=int_list, default=[1], help="seeds (default 1)")
    s.add_argument("--resamples", type=int, default=2000, help="bootstrap resamples per width")
    s.add_argument("--device", help="train and encode here, e.g. cuda (default cpu)")
    _reuse_option(s)


def _budget(a: argparse.Namespace) -> dict[str, Any]:
    """The training budget of reproduce and a programme recipe (``--max-steps 0``: epochs)."""
    steps = {"max_steps": a.max_steps or None, "epochs": a.epochs}
    return {**pick(a, "batch_size", "max_seq_length", "learning_rate"), **steps}


def _outputs(a: argparse.Namespace) -> dict[str, Any]:
    """The options reproduce and the programme pass through: data, model, where to write."""
    out = pick(a, "output_dir", "train_data", "model", "docs_dir", "overwrite")
    return {**out, "show_progress_bar": not a.no_progress}


def _train(a: argparse.Namespace) -> int:
    """Train a model with MatryoshkaLoss (or the plain loss).

    Train a sentence-transformers model with MatryoshkaLoss around MultipleNegativesRankingLoss
    (anchor, positive[, negative]) or CoSENTLoss (sentence1, sentence2, score), chosen from the
    columns.
    """
    from matryo_fast.training import train

    options = pick(a, "output_dir", "model", "dims", "weights", "loss", "columns", "epochs", "max_steps")
    options |= pick(a, "batch_size", "learning_rate", "warmup_ratio", "max_seq_length", "seed", "device")
    options |= pick(a, "eval_data", "eval_dims", "eval_steps", "overwrite")
    result = train(a.data, matryoshka=not a.no_matryoshka, show_progress_bar=not a.no_progress, **options)
    print(
        f"trained {result.config.loss} for {result.global_step} steps "
        f"(mean loss {result.train_loss:.4f}, {result.wall_time_s:.1f} s); "
        f"saved to {result.output_dir}"
    )
    if result.report is not None:
        print(result.report.to_markdown())
    return 0


def _reproduce(a: argparse.Namespace, argv: Sequence[str]) -> int:
    """Reproduce 'Matryoshka beats standard' on the CPU.

    Train standard and Matryoshka models from the same base with the same seed, data, batch size
    and steps; score base/standard/Matryoshka on STS-B test per dimension.
    """
    from matryo_fast.reproduce import render, reproduce

    if (
        a.seeds is not None
        or a.split != "test"
        or any(getattr(a, f) not in (None, False) for f in RECIPE_FLAGS)
    ):
        return _programme(a, argv)
    if a.render_only:
        done = render(a.output_dir, docs_dir=a.docs_dir)
        print("wrote " + ", ".join(map(str, done.files)))
        return 0
    command = "matryo " + shlex.join(argv)
    result = reproduce(eval_data=a.eval_data, seed=a.seed, command=command, **_outputs(a), **_budget(a))
    print(result.report.to_markdown())
    print(f"wall time {result.wall_time_s / 60:.1f} min; wrote " + ", ".join(map(str, result.files)))
    return 0


def _recipe_from_args(a: argparse.Namespace) -> Recipe:
    from matryo_fast.programme import Recipe

    options: dict[str, object] = _budget(a)
    for flag, field in RECIPE_FIELDS.items():
        if getattr(a, flag) is not None:
            options[field] = getattr(a, flag)
    return Recipe(a.recipe_name or "recipe", options, sts_train=a.sts_train)


def _programme(a: argparse.Namespace, argv: Sequence[str]) -> int:
    """Compare training recipes on STS-B dev (never test).

    Run every recipe of a JSON file (a list of objects: name, sts_train and TrainConfig options)
    with standard and Matryoshka models per seed, scored on stsb/dev.tsv only; reports every
    recipe and the one chosen.
    """
    from matryo_fast.programme import load_recipes, run_programme, search_recipes

    if getattr(a, "render_only", False):
        raise ValueError("--render-only rewrites a single-seed reproduction; it takes no programme options")
    if getattr(a, "eval_data", None) is not None:
        raise ValueError("the programme scores an STS-B split (--split dev|test), not --eval-data")
    command = "HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1 matryo " + shlex.join(argv)
    common = {**_outputs(a), "command": command, "device": a.device or "cpu", "reuse": a.reuse or []}
    if a.command == "recipe-search":
        result = search_recipes(load_recipes(a.recipes), seeds=a.seeds, n_resamples=a.resamples, **common)
    else:
        recipe = _recipe_from_args(a)
        seeds = a.seeds if a.seeds is not None else [a.seed]
        result = run_programme([recipe], seeds=seeds, split=a.split, **common)
    print(
        f"chosen: {result.chosen}; wall time {result.wall_time_s / 60:.1f} min; wrote "
        + ", ".join(map(str, result.files))
    )
    return 0


def run(a: argparse.Namespace, argv: Sequence[str]) -> int:
    """Runs one of :data:`COMMANDS` (``argv``: the command line, recorded in the reports);
    returns the exit status."""
    if a.command == "train":
        return _train(a)
    if a.command == "reproduce":
        return _reproduce(a, argv)
    return _programme(a, argv)
