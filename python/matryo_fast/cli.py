"""The ``matryo`` console script: ``train``, ``eval``, ``reproduce``, ``recipe-search``, ``demo``,
``backends``, and ``encode``, ``search``, ``tune``, ``serve`` (in :mod:`matryo_fast.commands`).

User errors (bad files, options, missing extras) print one line, ``matryo: error: ...``, to
stderr and exit with status 1; usage errors exit with status 2 (argparse).

>>> main(["backends"])  # doctest: +SKIP
"""

from __future__ import annotations

import argparse
import os
import shlex
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from matryo_fast import __version__, commands

if TYPE_CHECKING:
    from matryo_fast.programme import Recipe

__all__ = ["main"]


def _int_list(text: str) -> list[int]:
    try:
        values = [int(x) for x in text.replace(" ", "").split(",") if x]
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"expected comma-separated integers like 384,256,128, got {text!r}"
        ) from None
    if not values:
        raise argparse.ArgumentTypeError("expected at least one integer")
    return values


def _float_list(text: str) -> list[float]:
    try:
        return [float(x) for x in text.replace(" ", "").split(",") if x]
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"expected comma-separated numbers like 1,1,0.5, got {text!r}"
        ) from None


def _str_list(text: str) -> list[str]:
    return [x.strip() for x in text.split(",") if x.strip()]


def _default_data(*parts: str) -> str:
    from matryo_fast._extras import default_data_dir

    return os.fspath(default_data_dir().joinpath(*parts))


#: The recipe options of ``matryo reproduce`` (the programme's :class:`Recipe` fields).
RECIPE_FLAGS = (
    "mini_batch_size",
    "matryoshka_weights",
    "loss",
    "sts_train",
    "dims",
    "warmup_ratio",
    "device",
)


def _recipe_options(g: argparse._ArgumentGroup) -> None:
    g.add_argument(
        "--mini-batch-size",
        type=int,
        help="train CachedMultipleNegativesRankingLoss: --batch-size rows of in-batch negatives, "
        "this many through the model at once",
    )
    g.add_argument("--dims", type=_int_list, help="Matryoshka dims, e.g. 384,256,128,64,32")
    g.add_argument("--matryoshka-weights", type=_float_list, help="loss weight per dim, same order as --dims")
    g.add_argument(
        "--loss", choices=["matryoshka", "matryoshka2d"], help="MatryoshkaLoss or Matryoshka2dLoss"
    )
    g.add_argument("--sts-train", action="store_true", help="add stsb/train.tsv with CoSENTLoss")
    g.add_argument("--warmup-ratio", type=float)
    g.add_argument("--device", help="train and encode here, e.g. cuda (default cpu)")


def _build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="matryo",
        description="Matryoshka embeddings: train, evaluate per dimension, reproduce, search demo.",
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)

    # ---- train
    t = sub.add_parser(
        "train",
        help="train a model with MatryoshkaLoss (or the plain loss)",
        description="Train a sentence-transformers model with MatryoshkaLoss around "
        "MultipleNegativesRankingLoss (anchor, positive[, negative]) or CoSENTLoss "
        "(sentence1, sentence2, score), chosen from the columns.",
    )
    t.add_argument("data", help="training file (.tsv, .csv or .jsonl)")
    t.add_argument("-o", "--output-dir", required=True, help="new or empty folder for the model")
    t.add_argument("--model", help="base model folder (default: the shipped all-MiniLM-L6-v2)")
    t.add_argument("--no-matryoshka", action="store_true", help="train the plain base loss (control)")
    t.add_argument("--dims", type=_int_list, help="Matryoshka dims, e.g. 384,256,128,64,32")
    t.add_argument("--weights", type=_float_list, help="loss weight per dim, same order as --dims")
    t.add_argument("--loss", choices=["auto", "mnrl", "cosent"], default="auto")
    t.add_argument("--columns", type=_str_list, help="training columns in order, e.g. anchor,positive")
    t.add_argument("--epochs", type=float, default=1.0)
    t.add_argument("--max-steps", type=int)
    t.add_argument("--batch-size", type=int, default=32)
    t.add_argument("--learning-rate", type=float, default=2e-5)
    t.add_argument("--warmup-ratio", type=float, default=0.1)
    t.add_argument("--max-seq-length", type=int)
    t.add_argument("--seed", type=int, default=42)
    t.add_argument("--eval-data", help="STS file scored per dim after training")
    t.add_argument("--eval-dims", type=_int_list)
    t.add_argument("--eval-steps", type=int, help="also evaluate every N steps (needs --eval-data)")
    t.add_argument("--device", help="'cpu' forces the CPU (default: let the trainer choose)")
    t.add_argument("--overwrite", action="store_true", help="allow a non-empty output folder")
    t.add_argument("--no-progress", action="store_true", help="hide the progress bar")

    # ---- eval
    e = sub.add_parser(
        "eval",
        help="score models at every truncated dimension (encode once)",
        description="Encode once at full dimension and score every truncated dimension: STS "
        "(Spearman/Pearson) and/or retrieval (recall@k vs full-dim top-k, nDCG@10/MRR@10).",
    )
    e.add_argument(
        "models",
        nargs="*",
        help="model folders to compare (default: the shipped all-MiniLM-L6-v2)",
    )
    e.add_argument("--names", type=_str_list, help="labels for the models, comma-separated")
    e.add_argument("--sts", help="STS file with sentence1, sentence2, score columns")
    e.add_argument("--queries", help="retrieval queries file with a 'text' column")
    e.add_argument("--corpus", help="retrieval corpus file with a 'text' column")
    e.add_argument(
        "--qrels",
        help="relevance file with columns query, doc[, gain] (0-based row numbers of the "
        "queries and corpus files)",
    )
    e.add_argument("--k", type=int, default=10, help="recall cut-off (default 10)")
    e.add_argument("--dims", type=_int_list, help="dims to score (default: full, then powers of 2 to 32)")
    e.add_argument("--batch-size", type=int, default=64)
    e.add_argument("--device", default="cpu")
    e.add_argument("--json", help="write the report(s) as JSON here")
    e.add_argument("--markdown", help="write the report(s) as Markdown here")
    e.add_argument("--plot", help="write the plots here (PNG; retrieval gets a _retrieval suffix)")
    e.add_argument(
        "--precisions",
        type=_str_list,
        help="also score each dim at these precisions, e.g. float32,int8,binary (a width x precision "
        "table; with --plot also a heat map, suffix _precision)",
    )

    # ---- reproduce
    r = sub.add_parser(
        "reproduce",
        help="reproduce 'Matryoshka beats standard' on the CPU",
        description="Train standard and Matryoshka models from the same base with the same seed, "
        "data, batch size and steps; score base/standard/Matryoshka on STS-B test per dimension.",
    )
    r.add_argument("-o", "--output-dir", default="runs/reproduction")
    r.add_argument("--docs-dir", help="also write reproduction.md and the PNG plots here")
    r.add_argument("--train-data", help="triplets file (default: ../shared/data/nli/triplets.tsv)")
    r.add_argument("--eval-data", help="STS file (default: ../shared/data/stsb/test.tsv)")
    r.add_argument("--model", help="base model folder (default: the shipped all-MiniLM-L6-v2)")
    r.add_argument(
        "--max-steps", type=int, default=250, help="steps per model (default 250); 0 = use --epochs"
    )
    r.add_argument("--epochs", type=float, default=1.0, help="epochs when --max-steps is 0")
    r.add_argument("--batch-size", type=int, default=32)
    r.add_argument("--max-seq-length", type=int, default=32, help="training token limit (default 32)")
    r.add_argument("--learning-rate", type=float, default=2e-5)
    r.add_argument("--seed", type=int, default=42)
    r.add_argument("--overwrite", action="store_true")
    r.add_argument(
        "--render-only",
        action="store_true",
        help="rewrite reproduction.md and the plots from a finished --output-dir, without training",
    )
    r.add_argument("--no-progress", action="store_true")
    g = r.add_argument_group(
        "programme (seeds, recipe, intervals)",
        "Any of these runs the programme instead (matryo_fast.programme): standard and Matryoshka "
        "per seed, scored on --split, with seed spreads, paired-bootstrap intervals and the "
        "retrieval side; writes programme.json/.md (and training_<split>.md in --docs-dir).",
    )
    _recipe_options(g)
    g.add_argument("--seeds", type=_int_list, help="seeds, e.g. 1,2,3 (each trains both models)")
    g.add_argument(
        "--split", choices=["dev", "test"], default="test", help="STS-B split scored (default test)"
    )

    s = sub.add_parser(
        "recipe-search",
        help="compare training recipes on STS-B dev (never test)",
        description="Run every recipe of a JSON file (a list of objects: name, sts_train and "
        "TrainConfig options) with standard and Matryoshka models per seed, scored on "
        "stsb/dev.tsv only; reports every recipe and the one chosen.",
    )
    s.add_argument("recipes", help="JSON file: a list of {name, [sts_train], options...}")
    s.add_argument("-o", "--output-dir", default="runs/recipe-search")
    s.add_argument("--seeds", type=_int_list, default=[1], help="seeds (default 1)")
    s.add_argument("--docs-dir", help="also write training_dev.md and its plot here")
    s.add_argument("--train-data", help="triplets file (default: ../shared/data/nli/triplets.tsv)")
    s.add_argument("--model", help="base model folder (default: the shipped all-MiniLM-L6-v2)")
    s.add_argument("--resamples", type=int, default=2000, help="bootstrap resamples per width")
    s.add_argument("--device", help="train and encode here, e.g. cuda (default cpu)")
    s.add_argument("--overwrite", action="store_true")
    s.add_argument("--no-progress", action="store_true")

    sub.add_parser("demo", help="interactive search demo (arguments are passed through)", add_help=False)
    sub.add_parser("backends", help="list the SIMD backends available on this machine")
    commands.add_parsers(sub)
    return parser


def _cmd_train(a: argparse.Namespace) -> int:
    from matryo_fast.training import train

    result = train(
        a.data,
        output_dir=a.output_dir,
        model=a.model,
        matryoshka=not a.no_matryoshka,
        dims=a.dims,
        weights=a.weights,
        loss=a.loss,
        columns=a.columns,
        epochs=a.epochs,
        max_steps=a.max_steps,
        batch_size=a.batch_size,
        learning_rate=a.learning_rate,
        warmup_ratio=a.warmup_ratio,
        max_seq_length=a.max_seq_length,
        seed=a.seed,
        eval_data=a.eval_data,
        eval_dims=a.eval_dims,
        eval_steps=a.eval_steps,
        device=a.device,
        overwrite=a.overwrite,
        show_progress_bar=not a.no_progress,
    )
    print(
        f"trained {result.config.loss} for {result.global_step} steps "
        f"(mean loss {result.train_loss:.4f}, {result.wall_time_s:.1f} s); "
        f"saved to {result.output_dir}"
    )
    if result.report is not None:
        print(result.report.to_markdown())
    return 0


def _read_texts(path: str) -> list[str]:
    from matryo_fast.data import read_table

    return [str(x) for x in read_table(path, columns=["text"], allow_extra=True)["text"]]


def _read_qrels(path: str, n_queries: int) -> list[dict[int, float]]:
    from matryo_fast.data import DataError, parse_scores, read_table

    table = read_table(path)
    missing = [c for c in ("query", "doc") if c not in table]
    if missing:
        raise DataError(f"{path}: missing column(s) {missing}; expected query, doc[, gain]")
    extra = [c for c in table if c not in ("query", "doc", "gain")]
    if extra:
        raise DataError(f"{path}: unexpected extra column(s) {extra}; expected query, doc[, gain]")
    gains = parse_scores(table["gain"], source=path, column="gain") if "gain" in table else None
    rels: list[dict[int, float]] = [{} for _ in range(n_queries)]
    for row, (q, d) in enumerate(zip(table["query"], table["doc"], strict=True), start=1):
        try:
            qi, di = int(q), int(d)
        except (TypeError, ValueError):
            raise DataError(
                f"{path}, row {row}: query and doc must be row numbers, got {q!r}, {d!r}"
            ) from None
        if not 0 <= qi < n_queries:
            raise DataError(f"{path}, row {row}: query {qi} outside [0, {n_queries})")
        rels[qi][di] = 1.0 if gains is None else gains[row - 1]
    return rels


def _cmd_eval(a: argparse.Namespace) -> int:
    from matryo_fast.evaluation import EvaluationReport, check_precisions, evaluate_retrieval, evaluate_sts
    from matryo_fast.models import load_model

    if a.sts is None and a.queries is None:
        raise ValueError("nothing to evaluate: give --sts FILE and/or --queries FILE --corpus FILE")
    if (a.queries is None) != (a.corpus is None):
        raise ValueError("retrieval needs both --queries and --corpus")
    if a.qrels is not None and a.queries is None:
        raise ValueError("--qrels needs --queries and --corpus")
    if a.precisions is not None:
        check_precisions(a.precisions)  # before any model is loaded
    models: list[str | None] = list(a.models) or [None]
    names = a.names or [("all-MiniLM-L6-v2" if m is None else Path(m).name or m) for m in models]
    if len(names) != len(models):
        raise ValueError(f"--names has {len(names)} labels for {len(models)} models")
    if len(set(names)) != len(names):
        raise ValueError(f"model labels must be distinct, got {names} (use --names)")
    queries = _read_texts(a.queries) if a.queries else None
    corpus = _read_texts(a.corpus) if a.corpus else None
    qrels = _read_qrels(a.qrels, len(queries)) if a.qrels and queries is not None else None
    sts_reports: list[EvaluationReport] = []
    ret_reports: list[EvaluationReport] = []
    for m, name in zip(models, names, strict=True):
        model = load_model(m, device=a.device)
        if a.sts:
            sts_reports.append(
                evaluate_sts(
                    model, a.sts, dims=a.dims, name=name, batch_size=a.batch_size, precisions=a.precisions
                )
            )
        if queries is not None and corpus is not None:
            ret_reports.append(
                evaluate_retrieval(
                    model,
                    queries,
                    corpus,
                    dims=a.dims,
                    k=a.k,
                    relevant=qrels,
                    name=name,
                    dataset=Path(a.queries).name,
                    batch_size=a.batch_size,
                    precisions=a.precisions,
                )
            )
    reports = [EvaluationReport.combine(rs) for rs in (sts_reports, ret_reports) if rs]
    md = "\n".join(r.to_markdown() for r in reports)
    print(md)
    if a.markdown:
        Path(a.markdown).write_text(md, encoding="utf-8")
    if a.json:
        import json

        payload = [r.to_dict() for r in reports]
        Path(a.json).write_text(
            json.dumps(payload[0] if len(payload) == 1 else payload, indent=2) + "\n",
            encoding="utf-8",
        )
    if a.plot:
        base = Path(a.plot)
        for r in reports:
            target = (
                base
                if r.task == "sts" or len(reports) == 1
                else base.with_name(f"{base.stem}_retrieval{base.suffix}")
            )
            r.plot(target)
            if r.by_precision:
                r.plot_precision(target.with_name(f"{target.stem}_precision{target.suffix}"))
    return 0


def _cmd_reproduce(a: argparse.Namespace, argv: Sequence[str]) -> int:
    from matryo_fast.reproduce import render, reproduce

    if (
        a.seeds is not None
        or a.split != "test"
        or any(getattr(a, f) not in (None, False) for f in RECIPE_FLAGS)
    ):
        return _cmd_programme(a, argv)
    if a.render_only:
        done = render(a.output_dir, docs_dir=a.docs_dir)
        print("wrote " + ", ".join(map(str, done.files)))
        return 0
    result = reproduce(
        output_dir=a.output_dir,
        train_data=a.train_data,
        eval_data=a.eval_data,
        model=a.model,
        docs_dir=a.docs_dir,
        max_steps=a.max_steps or None,
        epochs=a.epochs,
        batch_size=a.batch_size,
        max_seq_length=a.max_seq_length,
        learning_rate=a.learning_rate,
        seed=a.seed,
        overwrite=a.overwrite,
        show_progress_bar=not a.no_progress,
        command="matryo " + shlex.join(argv),
    )
    print(result.report.to_markdown())
    print(f"wall time {result.wall_time_s / 60:.1f} min; wrote " + ", ".join(map(str, result.files)))
    return 0


def _recipe_from_args(a: argparse.Namespace) -> Recipe:
    from matryo_fast.programme import Recipe

    options: dict[str, object] = {
        "batch_size": a.batch_size,
        "max_seq_length": a.max_seq_length,
        "learning_rate": a.learning_rate,
        "max_steps": a.max_steps or None,
        "epochs": a.epochs,
    }
    for flag, field in (
        ("mini_batch_size", "mini_batch_size"),
        ("dims", "dims"),
        ("matryoshka_weights", "weights"),
        ("loss", "matryoshka_loss"),
        ("warmup_ratio", "warmup_ratio"),
    ):
        if getattr(a, flag) is not None:
            options[field] = getattr(a, flag)
    return Recipe("recipe", options, sts_train=a.sts_train)


def _cmd_programme(a: argparse.Namespace, argv: Sequence[str]) -> int:
    from matryo_fast.programme import load_recipes, run_programme, search_recipes

    if getattr(a, "render_only", False):
        raise ValueError("--render-only rewrites a single-seed reproduction; it takes no programme options")
    if getattr(a, "eval_data", None) is not None:
        raise ValueError("the programme scores an STS-B split (--split dev|test), not --eval-data")
    common = dict(
        output_dir=a.output_dir,
        train_data=a.train_data,
        model=a.model,
        docs_dir=a.docs_dir,
        overwrite=a.overwrite,
        show_progress_bar=not a.no_progress,
        command="HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1 matryo " + shlex.join(argv),
        device=a.device or "cpu",
    )
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


def main(argv: Sequence[str] | None = None) -> int:
    """Run the ``matryo`` command line.

    Args:
        argv: Arguments without the program name; default ``sys.argv[1:]``.

    Returns:
        The exit status: 0 on success, 1 on a user error (one line on stderr), 2 on a usage error.
    """
    args = list(sys.argv[1:] if argv is None else argv)
    if args and args[0] == "demo":
        from matryo_fast.demo import main as demo_main

        return int(demo_main(args[1:]) or 0)
    parser = _build_parser()
    try:
        ns = parser.parse_args(args)
    except SystemExit as exc:  # usage error or --help
        return int(exc.code or 0) if not isinstance(exc.code, str) else 2
    from matryo_fast.data import DataError

    try:
        if ns.command == "backends":
            import matryo_fast

            info = matryo_fast.backends()
            if isinstance(info, dict):
                for key, value in info.items():
                    shown = ", ".join(map(str, value)) if isinstance(value, (list, tuple)) else value
                    print(f"{key}: {shown}")
            else:
                print(info)
            return 0
        if ns.command == "train":
            return _cmd_train(ns)
        if ns.command == "eval":
            return _cmd_eval(ns)
        if ns.command == "reproduce":
            return _cmd_reproduce(ns, args)
        if ns.command == "recipe-search":
            return _cmd_programme(ns, args)
        if ns.command in commands.COMMANDS:
            return commands.run(ns)
    except KeyboardInterrupt:
        again = " (run the same command again to continue)" if ns.command == "encode" else ""
        print(f"matryo: interrupted{again}", file=sys.stderr)
        return 130
    except (
        DataError,
        ValueError,
        TypeError,
        FileNotFoundError,
        FileExistsError,
        ImportError,
        OSError,
    ) as exc:
        msg = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        print(f"matryo: error: {msg}", file=sys.stderr)
        return 1
    parser.error(f"unknown command {ns.command!r}")  # pragma: no cover - argparse rejects it first
    return 2  # pragma: no cover


if __name__ == "__main__":
    sys.exit(main())
