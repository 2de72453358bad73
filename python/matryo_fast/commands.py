"""The corpus subcommands of ``matryo``: encode, search, tune, serve (parsers and runners).

:mod:`matryo_fast.cli` adds these parsers and calls :func:`run`; errors are raised as Python
exceptions and turned into one ``matryo: error: ...`` line there.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable
from typing import Any

from matryo_fast._cliargs import add_command, names, pick
from matryo_fast._validate import PRECISIONS

__all__ = ["COMMANDS", "add_parsers", "run"]

COMMANDS = ("encode", "search", "tune", "serve")


def _corpus_parser(sub: Any, name: str, runner: Callable[[argparse.Namespace], int]) -> Any:
    """A subcommand whose first argument is a corpus folder, with ``--model`` to load its model
    from another folder."""
    p = add_command(sub, name, runner)
    p.add_argument("corpus", help="a corpus folder from matryo encode")
    p.add_argument("--model", help="the corpus's model from another folder (checked to be the same)")
    return p


def add_parsers(sub: Any) -> None:
    """Adds the encode, search, tune and serve subcommands to an argparse subparsers object."""
    e = add_command(sub, "encode", _encode)
    e.add_argument("input", help="the texts: .txt, .jsonl, .csv, .tsv or .parquet")
    e.add_argument("-o", "--output", required=True, help="the corpus folder to create")
    e.add_argument(
        "--model", help="sentence-transformers model folder (default: the shipped all-MiniLM-L6-v2)"
    )
    e.add_argument("--text-column", default="text", help="column with the texts (default: text)")
    e.add_argument("--id-column", help="column with unique ids (default: row numbers from 0)")
    e.add_argument("--batch-size", type=int, default=256, help="texts per batch and per saved step")
    e.add_argument("--overwrite", action="store_true", help="replace an existing corpus once done")
    e.add_argument("--no-progress", action="store_true", help="hide the progress bar")
    e.add_argument(
        "--tiers",
        type=names,
        help="also write a prefix-blocked file with these tiers (comma-separated: float32, int8, "
        "binary), which search, tune and serve then scan",
    )

    s = _corpus_parser(sub, "search", _search)
    s.add_argument("query", nargs="?", help="the query text")
    s.add_argument("--query-file", help="many queries (.txt, one per line, or a file with a text column)")
    how = s.add_mutually_exclusive_group()
    how.add_argument("--dim", type=int, help="prefix width to search at (default: the full width)")
    how.add_argument("--plan", help="a funnel plan from matryo tune")
    s.add_argument(
        "--precision",
        choices=list(PRECISIONS),
        help="with --dim: the tier to scan (encode --tiers; default the finest)",
    )
    s.add_argument("-k", "--k", type=int, default=10, help="results per query (default 10)")
    s.add_argument("--json", action="store_true", help="print JSON lines")

    t = _corpus_parser(sub, "tune", _tune)
    t.add_argument("--queries", required=True, help="sample queries (.txt, or a file with a text column)")
    t.add_argument("--target-recall", type=float, default=0.99, help="mean recall@k to reach (default 0.99)")
    t.add_argument("-k", "--k", type=int, default=10, help="results per query (default 10)")
    t.add_argument("--by", choices=["cost", "time"], default="cost", help="rank plans by data read or time")
    t.add_argument("-o", "--output", required=True, help="the plan file to write (JSON)")
    t.add_argument(
        "--precisions",
        type=names,
        help="tiers the funnel's stages may scan, e.g. binary,int8,float32 (encode --tiers)",
    )

    v = _corpus_parser(sub, "serve", _serve)
    v.add_argument("--host", default="127.0.0.1", help="address to listen on (default 127.0.0.1)")
    v.add_argument("--port", type=int, default=8000, help="port (default 8000)")
    v.add_argument("--plan", help='a plan from matryo tune, used by requests with "plan": true')
    v.add_argument("--window-ms", type=float, default=2.0, help="batching window; 0 = no batching")
    v.add_argument("--max-batch", type=int, default=64, help="most requests in one batch")


def _queries(a: argparse.Namespace) -> list[str]:
    from matryo_fast.encode import read_records

    if (a.query is None) == (a.query_file is None):
        raise ValueError("give a query text or --query-file, not both or neither")
    if a.query is not None:
        if not a.query.strip():
            raise ValueError("the query is empty")
        return [a.query]
    return read_records(a.query_file)[1]


def _encode(a: argparse.Namespace) -> int:
    """Encode a file of texts into a corpus folder (resumable).

    Encode the texts of a .txt (one per line), .jsonl, .csv, .tsv or .parquet file into a corpus
    folder: embeddings, ids and texts, and the model's identity. An interrupted run continues
    when run again; the folder appears only when complete.
    """
    from matryo_fast.encode import encode_file

    options = pick(a, "model", "text_column", "id_column", "batch_size", "overwrite", "tiers")
    out = encode_file(a.input, a.output, progress=not a.no_progress, **options)
    print(f"wrote {out}", file=sys.stderr)
    return 0


def _search(a: argparse.Namespace) -> int:
    """Search a corpus folder with query texts.

    Encode the queries with the corpus's model and print rank, score, id and text.
    """
    from matryo_fast.funnel import FunnelPlan
    from matryo_fast.textcorpus import open_text_corpus

    tc = open_text_corpus(a.corpus)
    plan = FunnelPlan.load(a.plan, corpus=tc.corpus) if a.plan else None
    queries = _queries(a)
    tc.load_model(a.model)
    hits = tc.search_texts(queries, k=a.k, dim=a.dim, plan=plan, precision=a.precision)
    for query, found in zip(queries, hits):
        if a.json:
            for rank, h in enumerate(found, start=1):
                line = {
                    "query": query,
                    "rank": rank,
                    "score": h.score,
                    "id": h.id,
                    "text": h.text,
                    "row": h.row,
                }
                print(json.dumps(line, ensure_ascii=False))
            continue
        if len(queries) > 1:
            print(f"query: {query}")
        for rank, h in enumerate(found, start=1):
            print(f"{rank:>4}  {h.score:.4f}  {h.id}  {h.text}")
    return 0


def _tune(a: argparse.Namespace) -> int:
    """Find the cheapest funnel plan that reaches a recall target.

    Measure funnel plans on sample queries against exact full-width search and save the cheapest
    that reaches the target; the plan records the corpus.
    """
    from matryo_fast.encode import read_records
    from matryo_fast.textcorpus import open_text_corpus
    from matryo_fast.tuning import tune_funnel

    tc = open_text_corpus(a.corpus)
    tc.load_model(a.model)
    queries = tc.encode_queries(read_records(a.queries)[1])
    plan = tune_funnel(
        tc.corpus, queries, k=a.k, target_recall=a.target_recall, by=a.by, precisions=a.precisions
    )
    plan.save(a.output, tc.corpus)
    kind = (
        "exact search (no funnel reached the target)"
        if plan.exact
        else f"dims {plan.dims}, candidates {plan.candidates}"
        + (f", precisions {plan.precisions}" if "precisions" in plan.params else "")
    )
    print(
        f"plan: {kind}; recall@{plan.k} {plan.recall:.4f} on {len(queries)} queries; "
        f"reads {plan.speedup:.1f}x less than exact search; saved to {a.output}"
    )
    return 0


def _serve(a: argparse.Namespace) -> int:
    """Serve a corpus folder over HTTP (needs the [serve] extra).

    POST /search, GET /health, GET /info, and a page at / comparing widths.
    """
    from matryo_fast.service import serve

    if a.max_batch < 1 or a.window_ms < 0:
        raise ValueError("--max-batch must be at least 1 and --window-ms at least 0")
    serve(a.corpus, plan_path=a.plan, **pick(a, "host", "port", "model", "window_ms", "max_batch"))
    return 0


def run(a: argparse.Namespace) -> int:
    """Runs one of :data:`COMMANDS`; returns the exit status."""
    return {"encode": _encode, "search": _search, "tune": _tune, "serve": _serve}[a.command](a)
