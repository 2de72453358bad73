"""The ``matryo`` console script: ``eval``, ``demo``, ``backends``; ``train``, ``reproduce``,
``recipe-search`` (in :mod:`matryo_fast.cli_train`); and ``encode``, ``search``, ``tune``,
``serve`` (in :mod:`matryo_fast.commands`).

User errors (bad files, options, missing extras) print one line, ``matryo: error: ...``, to
stderr and exit with status 1; usage errors exit with status 2 (argparse).

>>> main(["backends"])  # doctest: +SKIP
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path

from matryo_fast import __version__, cli_train, commands
from matryo_fast._cliargs import int_list, str_list

__all__ = ["main"]


def _build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="matryo",
        description="Matryoshka embeddings: train, evaluate per dimension, reproduce, search demo.",
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    cli_train.add_parsers(sub)

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
    e.add_argument("--names", type=str_list, help="labels for the models, comma-separated")
    e.add_argument("--sts", help="STS file with sentence1, sentence2, score columns")
    e.add_argument("--queries", help="retrieval queries file with a 'text' column")
    e.add_argument("--corpus", help="retrieval corpus file with a 'text' column")
    e.add_argument(
        "--qrels",
        help="relevance file with columns query, doc[, gain] (0-based row numbers of the "
        "queries and corpus files)",
    )
    e.add_argument("--k", type=int, default=10, help="recall cut-off (default 10)")
    e.add_argument("--dims", type=int_list, help="dims to score (default: full, then powers of 2 to 32)")
    e.add_argument("--batch-size", type=int, default=64)
    e.add_argument("--device", default="cpu")
    e.add_argument("--json", help="write the report(s) as JSON here")
    e.add_argument("--markdown", help="write the report(s) as Markdown here")
    e.add_argument("--plot", help="write the plots here (PNG; retrieval gets a _retrieval suffix)")
    e.add_argument(
        "--precisions",
        type=str_list,
        help="also score each dim at these precisions, e.g. float32,int8,binary (a width x precision "
        "table; with --plot also a heat map, suffix _precision)",
    )

    sub.add_parser("demo", help="interactive search demo (arguments are passed through)", add_help=False)
    sub.add_parser("backends", help="list the SIMD backends available on this machine")
    commands.add_parsers(sub)
    return parser


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
        if ns.command in cli_train.COMMANDS:
            return cli_train.run(ns, args)
        if ns.command == "eval":
            return _cmd_eval(ns)
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
