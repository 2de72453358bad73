"""Funnel benchmark: quality of the tuned ``matryo_fast`` funnel on real embeddings, and its
speed against exact full-width ``matryo_fast.topk`` and FAISS flat on a 1M x 768 corpus.

Quality (real sentences, held-out queries):
    The demo corpus (every unique sentence of STS-B and the NLI triplets, about 51.6k, encoded
    with the shipped all-MiniLM-L6-v2, 384-d; ``build/demo/corpus.npy`` is reused when it has
    the right row count) with the query sentences *removed*: queries are distinct STS-B test
    ``sentence1`` sentences (seeded shuffle), split into a tuning set and a disjoint evaluation
    set, and neither set is in the searched corpus. The funnel is tuned with
    ``matryo_fast.tune_funnel`` on the tuning set; recall@k against exact full-width search is
    reported on the evaluation set (the honest number), with the plan, its cost ratio and its
    measured time at batch 1 and 64 against exact ``topk``. ``--model PATH`` repeats this for
    other sentence-transformers folders (e.g. a Matryoshka-trained one from ``matryo reproduce``;
    ``--model auto`` takes every ``build/**/matryoshka`` and ``runs/**/matryoshka`` model found).

Speed (synthetic, memory-mapped):
    The seeded clustered corpus of ``_harness.ensure_corpus`` (the file bench_topk.py uses).
    The funnel is tuned on queries drawn like bench_topk's, with another seed than the
    evaluation queries; then the tuned funnel, exact ``matryo_fast.topk`` at full width (on an
    opened ``Corpus``) and FAISS flat inner product (``faiss.knn``, the search of
    ``IndexFlatIP``, on a normalized full-width copy prepared outside the timing) are timed in
    one run at each batch size, with the ratios and PASS/FAIL against the issue's targets.

    python benches/bench_funnel.py --rows 100000 --repeats 2 --max-sentences 20000   # a check
    python benches/bench_funnel.py --out benches/RESULTS.md                          # full run

Not part of ``make test``. Data files go to ``--data-dir`` and are reused.
"""

from __future__ import annotations

import argparse
import hashlib
import os
import re
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any

import _harness as h
import bench_topk as bt
import numpy as np

from matryo_fast._metrics import recall_at_k

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

REPO = Path(__file__).resolve().parents[1]
DEMO_CORPUS = REPO / "build" / "demo" / "corpus.npy"
SHIPPED = "shipped all-MiniLM-L6-v2"


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    def ints(s: str) -> list[int]:
        return [int(x) for x in s.split(",") if x]

    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--rows", type=int, default=1_000_000, help="speed corpus rows")
    ap.add_argument("--cols", type=int, default=768, help="speed corpus width")
    ap.add_argument("--k", type=int, default=10)
    ap.add_argument("--target", type=float, default=0.99, help="recall@k the tuned plan must reach")
    ap.add_argument("--tune-queries", type=int, default=200)
    ap.add_argument("--eval-queries", type=int, default=200)
    ap.add_argument("--batches", type=ints, default=[1, 64])
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--data-dir", default="build/bench")
    ap.add_argument(
        "--tune-by",
        choices=("cost", "time"),
        default="cost",
        help="tune_funnel(by=...): cheapest plan in rows x dims read (the library default), or "
        "the fastest of the cheapest few on the tuning batch",
    )
    ap.add_argument(
        "--model",
        action="append",
        default=[],
        metavar="PATH",
        help="extra sentence-transformers folder for the quality part (repeatable); 'auto' adds "
        "every Matryoshka model found under build/ or runs/ (**/matryoshka/modules.json)",
    )
    ap.add_argument(
        "--max-sentences",
        type=int,
        default=None,
        help="quality: search at most this many corpus sentences (a quicker check)",
    )
    ap.add_argument("--text-data", type=Path, default=None, help="folder with stsb/ and nli/")
    ap.add_argument("--skip-quality", action="store_true")
    ap.add_argument(
        "--blocked",
        action="store_true",
        help="speed part: the funnel searches a prefix-blocked copy of the data file "
        "(mf.save_prefix_blocked, block 64 or --split-at, cached next to it); exact topk and "
        "FAISS keep the row-major file and the prepared copy",
    )
    ap.add_argument(
        "--split-at",
        type=ints,
        default=None,
        help="with --blocked: the copy's blocks end at these columns (save_prefix_blocked's "
        "split_at) instead of every 64",
    )
    ap.add_argument("--skip-speed", action="store_true")
    ap.add_argument(
        "--no-faiss-blas",
        action="store_true",
        help="skip the FAISS variant with BLAS forced (distance_compute_blas_threshold 0)",
    )
    ap.add_argument(
        "--threads", type=int, default=len(os.sched_getaffinity(0)), help="threads, every library"
    )
    ap.add_argument("--slow-s", type=float, default=2.0)
    ap.add_argument("--budget-s", type=float, default=10.0)
    ap.add_argument("--tol", type=float, default=1e-5, help="near-tie tolerance of the checks")
    ap.add_argument("--out", default=None, help="markdown file to add this run to")
    args = ap.parse_args(argv)
    if min(args.tune_queries, args.eval_queries) < 1:
        ap.error("--tune-queries and --eval-queries must be positive")
    if not 0 < args.target <= 1:
        ap.error("--target must be in (0, 1]")
    return args


class Report:
    """Lines printed as they come and collected for RESULTS.md."""

    def __init__(self) -> None:
        self.lines: list[str] = []

    def __call__(self, s: str = "") -> None:
        print(s, flush=True)
        self.lines.append(s)


def recall(truth: np.ndarray, got: np.ndarray) -> float:
    return recall_at_k(got, truth)


def plan_line(args: argparse.Namespace, plan: Any, tune_s: float, tune_note: str) -> str:
    """The report line describing a tuned plan."""
    return (
        f"- tuned plan (tune_funnel by={args.tune_by!r}, {len(plan.table)} plans tried, "
        f"{tune_s:.1f} s, {tune_note}): **{plan_str(plan)}**; tuning recall "
        f"{plan.recall:.4f} +- {plan.recall_se:.4f} (feasible: recall - 2 se >= target); "
        f"reads {plan.speedup:.1f}x less than exact "
        f"(cost {plan.cost:,} vs {plan.exact_cost:,} rows x dims)"
    )


def plan_str(plan: Any) -> str:
    if plan.exact:
        feasible = any(r["feasible"] and len(r["dims"]) > 1 for r in plan.table)
        why = "no funnel plan was faster" if feasible else "no funnel plan reached the target"
        return f"exact (dims {plan.dims}): {why}"
    return f"dims {plan.dims}, candidates {plan.candidates}"


PLANS_HEADING = (
    "Plans (least estimated work first, then the timed ones, exact, and the best miss per first "
    "width; est. work = scanned values + 30 x gathered values, `matryo_fast.tuning.GATHER_WEIGHT`):"
)


def plan_table(plan: Any, top: int = 6) -> str:
    """The ``top`` feasible plans of least estimated work, every timed plan, the exact plan, and
    the best infeasible plan of each first width (what the target cost), from ``plan.table``."""
    rows = sorted(plan.table, key=lambda r: (not r["feasible"], r["work"], r["cost"]))
    shown = [r for r in rows if r["feasible"] and len(r["dims"]) > 1][:top]
    shown += [r for r in rows if r["time_ms"] is not None and len(r["dims"]) > 1 and r not in shown]
    shown += [r for r in rows if len(r["dims"]) == 1]
    best_miss: dict[int, dict[str, Any]] = {}
    for r in rows:
        if not r["feasible"] and len(r["dims"]) == 2:
            w = r["dims"][0]
            if w not in best_miss or r["recall"] > best_miss[w]["recall"]:
                best_miss[w] = r
    shown += [best_miss[w] for w in sorted(best_miss)]
    out = []
    for r in shown:
        t = "" if r["time_ms"] is None else f"{r['time_ms']:.2f}"
        mark = " (chosen)" if r["dims"] == plan.dims and r["candidates"] == plan.candidates else ""
        out.append(
            [
                f"{r['dims']}{mark}",
                str(r["candidates"]),
                f"{r['recall']:.4f}",
                "yes" if r["feasible"] else "no (best recall at this first width)",
                f"{r['cost']:,}",
                f"{plan.exact_cost / r['cost']:.1f}",
                f"{r['work']:,}",
                t,
            ]
        )
    header = ["dims", "candidates", "tune recall@k", "feasible", "cost (rows x dims)",
              "x less than exact", "est. work", "tune time ms"]  # fmt: skip
    return h.markdown_table(header, out)


def tune(mf: Any, corpus: Any, q: np.ndarray, args: argparse.Namespace) -> tuple[Any, str]:
    """``mf.tune_funnel`` on the opened ``Corpus``; when that raises the TypeError of
    matryo_fast 0.1.0 (tune_funnel hands its own ``_core.Corpus`` back to ``topk``, which
    refuses it), tune on the same file as a read-only ``np.memmap`` instead. Either way the
    timed ``plan.search(q, corpus)`` runs on the opened ``Corpus``. Returns (plan, note)."""
    kw = {"k": args.k, "target_recall": args.target, "by": args.tune_by}
    try:
        return mf.tune_funnel(corpus, q, **kw), "tuned on the opened Corpus"
    except TypeError as e:
        note = (
            f"**tune_funnel(Corpus) raised TypeError ({str(e)[:60]}...): a matryo_fast bug; "
            "tuned on np.load(path, mmap_mode='r') instead**"
        )
        print(f"WARNING: {note}", file=sys.stderr, flush=True)
        return mf.tune_funnel(np.load(corpus.path, mmap_mode="r"), q, **kw), note


# --------------------------------------------------------------------------------------------
# Quality on real embeddings
# --------------------------------------------------------------------------------------------


@dataclass
class QualityData:
    texts: list[str]  # every unique sentence (the demo's order)
    query_rows: np.ndarray  # indices into texts: tuning queries then evaluation queries
    corpus_rows: np.ndarray  # indices into texts searched (queries removed), ascending
    partner: dict[int, int]  # query text row -> its STS-B (score >= 4) partner's text row
    n_tune: int
    source: Path


def quality_data(args: argparse.Namespace) -> QualityData:
    from matryo_fast._extras import default_data_dir
    from matryo_fast.demo import corpus_sentences, read_tsv

    data = args.text_data or default_data_dir()
    if not (data / "stsb" / "test.tsv").is_file():
        raise SystemExit(f"no STS-B data under {data}; pass --text-data or set MATRYO_FAST_DATA")
    texts, pairs = corpus_sentences(data)
    row_of = {t: i for i, t in enumerate(texts)}
    cands = sorted({row_of[r["sentence1"]] for r in read_tsv(data / "stsb" / "test.tsv")})
    need = args.tune_queries + args.eval_queries
    if need > len(cands):
        raise SystemExit(f"only {len(cands)} distinct STS-B test sentence1 queries; asked {need}")
    rng = np.random.default_rng([args.seed, 7])
    q = rng.permutation(np.array(cands, dtype=np.int64))[:need]
    mask = np.ones(len(texts), dtype=bool)
    mask[q] = False
    corpus_rows = np.flatnonzero(mask)
    if args.max_sentences is not None:
        corpus_rows = corpus_rows[: args.max_sentences]
    partner = {row_of[a]: row_of[b] for a, b in pairs}
    return QualityData(texts, q, corpus_rows, partner, args.tune_queries, data)


def _slug(model: str | None) -> str:
    if model is None:
        return "minilm-shipped"
    p = Path(model).resolve()
    tail = re.sub(r"[^A-Za-z0-9._-]+", "-", "-".join(p.parts[-2:]))[-48:]
    return f"{tail}-{hashlib.sha1(str(p).encode()).hexdigest()[:8]}"


def _valid_npy(path: Path, rows: int) -> bool:
    try:
        a = np.load(path, mmap_mode="r")
    except (OSError, ValueError):
        return False
    return bool(a.ndim == 2 and a.shape[0] == rows and a.dtype == np.float32)


def embeddings(
    model: str | None, qd: QualityData, data_dir: Path, log: Any
) -> tuple[np.ndarray, np.ndarray, str]:
    """(queries, corpus file rows, how) for one model: the needed rows of a cached encoding."""
    from matryo_fast.demo import build_corpus

    needed = np.concatenate([qd.query_rows, qd.corpus_rows])
    cached = f"quality-{_slug(model)}-all{len(qd.texts)}.npy"
    full = DEMO_CORPUS if model is None else data_dir / cached
    t0 = time.perf_counter()
    if _valid_npy(full, len(qd.texts)):
        src, how, pick = full, f"reused {full}", needed
    elif len(needed) == len(qd.texts):
        print(f"quality: encoding {len(qd.texts):,} sentences into {full} ...", flush=True)
        full.parent.mkdir(parents=True, exist_ok=True)
        build_corpus(qd.texts, full, model)
        src, how, pick = full, f"encoded into {full}", needed
    else:
        digest = hashlib.sha1(needed.tobytes()).hexdigest()[:10]
        src = data_dir / f"quality-{_slug(model)}-rows{len(needed)}-{digest}.npy"
        if not _valid_npy(src, len(needed)):
            print(f"quality: encoding {len(needed):,} sentences into {src} ...", flush=True)
            src.parent.mkdir(parents=True, exist_ok=True)
            build_corpus([qd.texts[i] for i in needed], src, model)
            how = f"encoded {len(needed):,} sentences into {src}"
        else:
            how = f"reused {src}"
        pick = np.arange(len(needed))
    emb = np.load(src, mmap_mode="r")
    nq = len(qd.query_rows)
    queries = np.ascontiguousarray(emb[pick[:nq]], dtype=np.float32)
    corpus = np.ascontiguousarray(emb[pick[nq:]], dtype=np.float32)
    log(f"quality: embeddings {how} ({time.perf_counter() - t0:.0f} s)")
    return queries, corpus, how


MODEL_ROOTS = ("build", "runs")  # where `matryo reproduce --output-dir ...` usually writes


def find_matryoshka_models() -> list[Path]:
    """Matryoshka-trained models written by ``matryo reproduce`` under build/ or runs/."""
    found = {
        p.parent.resolve() for root in MODEL_ROOTS for p in (REPO / root).glob("**/matryoshka/modules.json")
    }
    return sorted(found)


def quality_one(
    mf: Any, model: str | None, qd: QualityData, args: argparse.Namespace, say: Report
) -> list[str]:
    """Tune, evaluate and time the funnel for one model; returns goal lines."""
    data_dir = Path(args.data_dir)
    name = SHIPPED if model is None else model
    queries, corpus_arr, how = embeddings(model, qd, data_dir, print)
    digest = hashlib.sha1(qd.corpus_rows.tobytes()).hexdigest()[:10]
    cpath = data_dir / f"quality-{_slug(model)}-heldout-n{len(qd.corpus_rows)}-{digest}.npy"
    mf.save_corpus(cpath, corpus_arr, overwrite=True)
    corpus = mf.open_corpus(cpath)
    n, full = corpus.shape
    k = args.k
    tune_q, eval_q = queries[: qd.n_tune], queries[qd.n_tune :]

    t0 = time.perf_counter()
    plan, tune_note = tune(mf, corpus, tune_q, args)
    tune_s = time.perf_counter() - t0
    truth = mf.topk(eval_q, corpus, dim=full, k=k).indices
    got = plan.search(eval_q, corpus).indices
    held = recall(truth, got)
    oracle, _ = h.exact_topk_f64(corpus_arr, eval_q, full, k)
    chk = h.check_topk(oracle, truth, corpus_arr, eval_q, full, tol=args.tol)

    # STS-B partners (score >= 4) of the evaluation queries that are still in the corpus
    pos = {r: i for i, r in enumerate(qd.corpus_rows.tolist())}
    ev_rows = qd.query_rows[qd.n_tune :].tolist()
    pp = [(i, pos[qd.partner[r]]) for i, r in enumerate(ev_rows) if qd.partner.get(r) in pos]
    partner_line = ""
    if pp:
        hit_f = np.mean([p in got[i] for i, p in pp])
        hit_e = np.mean([p in truth[i] for i, p in pp])
        partner_line = (
            f"; STS-B partner (score >= 4) in the top {k} for {len(pp)} evaluation queries: "
            f"funnel {hit_f:.3f}, exact {hit_e:.3f}"
        )

    say(f"#### {name} ({full}-d)")
    say()
    say(
        f"- corpus: {n:,} sentences x {full} float32 ({cpath}); embeddings {how}; "
        f"{len(tune_q)} tuning + {len(eval_q)} evaluation queries, none in the corpus"
    )
    say(plan_line(args, plan, tune_s, tune_note))
    say(
        f"- recall@{k} vs exact full-width search: tuning queries {plan.recall:.4f}, "
        f"**held-out evaluation queries {held:.4f}**{partner_line}"
    )
    say(f"- exact topk vs float64 exact scan on the evaluation queries: {chk}")
    rows = []
    for b in args.batches:
        q = eval_q[:b]
        qq = q[0] if b == 1 else q
        got = h.run_methods(
            {
                "funnel": partial(partial, plan.search, qq, corpus),
                "exact": partial(partial, mf.topk, qq, corpus, dim=full, k=k),
            },
            args.repeats,
            label=f"{name} batch {len(q)} ",
            memory=False,
        )
        tf, te = got["funnel"].timing, got["exact"].timing
        if tf is None or te is None:
            raise RuntimeError(f"{name}: {got['funnel'].why or got['exact'].why}")
        rows.append(
            [
                str(len(q)),
                h.fmt_ms(tf.median_s),
                h.fmt_ms(te.median_s),
                f"{te.median_s / tf.median_s:.2f}",
            ]  # fmt: skip
        )
    say()
    say(h.markdown_table(["batch", "funnel ms", "exact topk ms", "exact / funnel"], rows))
    say()
    say(PLANS_HEADING)
    say()
    say(plan_table(plan))
    say()
    ok = held >= args.target
    return [
        f"quality, {name}: held-out recall@{k} {held:.4f} >= {args.target}: "
        f"{'PASS' if ok else 'FAIL'} (plan {plan_str(plan)}, {plan.speedup:.1f}x less read)"
    ]


def _setup(make: Callable[[bt.Ctx], bt.Run], ctx: bt.Ctx, q: np.ndarray) -> Callable[[], Any]:
    """The call that times the method made by ``make`` on the queries ``q``."""
    return partial(make(ctx), q)


def quality(mf: Any, args: argparse.Namespace, say: Report) -> list[str]:
    qd = quality_data(args)
    models: list[str | None] = [None]
    found = find_matryoshka_models()
    for m in args.model:
        if m == "auto":
            models += [str(p) for p in found if str(p) not in models]
        elif m not in models:
            models.append(m)
    say("### Quality: real sentence embeddings, held-out queries")
    say()
    say(
        f"- sentences: every unique sentence of STS-B (train/dev/test) and the NLI triplets in "
        f"{qd.source} ({len(qd.texts):,}), as the demo's corpus; {len(qd.query_rows)} distinct "
        f"STS-B test sentence1 sentences (seeded shuffle) are the queries and are **removed** from "
        f"the searched corpus, so truth and results never contain the query itself; the first "
        f"{qd.n_tune} tune the funnel, the other {len(qd.query_rows) - qd.n_tune} are held out "
        f"for the reported recall"
        + (f"; corpus capped at {args.max_sentences:,} sentences" if args.max_sentences else "")
    )
    extra = [m for m in models if m is not None]
    listed = ", ".join(str(p) for p in found) if found else "none"
    if not extra:
        say(
            "- Matryoshka-trained model: **none given** (found under build/ and runs/: "
            f"{listed}; pass `--model PATH` or `--model auto`); only the shipped MiniLM "
            "(not Matryoshka-trained) is measured"
        )
    else:
        say(
            f"- models: {SHIPPED}, "
            + ", ".join(extra)
            + f" (Matryoshka models found under build/ and runs/: {listed})"
        )
    say()
    goals: list[str] = []
    for m in models:
        goals += quality_one(mf, m, qd, args, say)
    return goals


# --------------------------------------------------------------------------------------------
# Speed on the synthetic 1M x 768 corpus
# --------------------------------------------------------------------------------------------


def speed(mf: Any, args: argparse.Namespace, say: Report) -> tuple[list[str], int]:
    path = h.ensure_corpus(args.data_dir, args.rows, args.cols, args.seed, log=print)
    x = np.load(path, mmap_mode="r")
    n, full = x.shape
    k = args.k
    corpus = mf.open_corpus(path)
    fcorpus, freads = corpus, "Corpus (Rust mmap)"
    if args.blocked:
        how: dict[str, Any] = {"block": 64}
        tag, what = "b64", "block 64"
        if args.split_at:
            how = {"split_at": args.split_at}
            tag = "s" + "-".join(map(str, args.split_at))
            what = "split at " + ", ".join(map(str, args.split_at))
        bpath = Path(str(path)[: -len(".npy")] + f".{tag}.mfb")
        if not bpath.exists():
            print(f"speed: writing the prefix-blocked copy {bpath} ...", flush=True)
            mf.save_prefix_blocked(bpath, path, **how)
        fcorpus = mf.open_corpus(bpath)
        freads = f"prefix-blocked copy, {what} (Rust mmap)"
    # Evaluation queries are bench_topk's (seed + 1), so its timed batches are the same queries;
    # the funnel is tuned on another draw (seed + 2).
    eval_q, _ = h.make_queries(x, max(args.eval_queries, *args.batches), args.seed + 1)
    tune_q, _ = h.make_queries(x, args.tune_queries, args.seed + 2)

    say("### Speed: synthetic memory-mapped corpus")
    say()
    say(f"- data: {path} ({n:,} x {full} float32, {x.nbytes / 1e9:.2f} GB), {h.DATA_DESCRIPTION}")
    say(
        f"- queries: tuning {len(tune_q)} drawn with seed {args.seed + 2}, evaluation "
        f"{len(eval_q)} with seed {args.seed + 1} (the timed batches are their first rows, the "
        "same queries bench_topk.py times); the two draws are independent"
    )
    print("speed: tuning ...", flush=True)
    t0 = time.perf_counter()
    plan, tune_note = tune(mf, fcorpus, tune_q, args)
    tune_s = time.perf_counter() - t0
    truth = mf.topk(eval_q, corpus, dim=full, k=k).indices
    held = recall(truth, plan.search(eval_q, fcorpus).indices)
    say(plan_line(args, plan, tune_s, tune_note))
    say(
        f"- recall@{k} vs exact full-width search: tuning queries {plan.recall:.4f}, "
        f"**evaluation queries {held:.4f}**"
    )

    print("speed: float64 oracle and the prepared copy for FAISS ...", flush=True)
    t0 = time.perf_counter()
    bmax = max(args.batches)
    oracle, _ = h.exact_topk_f64(x, eval_q[:bmax], full, k)
    norms = h.prefix_norms(x, full)
    prepared: Any
    try:
        h.need_memory(n * full * 4, "the prepared copy")
        prepared = h.normalized_prefix_copy(x, full, norms)
    except h.NotAvailable as e:
        prepared = e
    prep_s = time.perf_counter() - t0
    say(f"- float64 oracle ({bmax} queries), norms and prepared copy: {prep_s:.1f} s, untimed")

    def mk_funnel(ctx: bt.Ctx) -> bt.Run:
        def run(q: np.ndarray) -> tuple[np.ndarray, Any]:
            res = plan.search(q[0] if len(q) == 1 else q, fcorpus)
            return res.indices.reshape(len(q), -1), res.scores.reshape(len(q), -1)

        return run

    def mk_stage1(ctx: bt.Ctx) -> bt.Run:
        d0 = plan.dims[0]
        c0 = plan.candidates[0] if plan.candidates else k

        def run(q: np.ndarray) -> tuple[np.ndarray, Any]:
            res = mf.topk(q[0] if len(q) == 1 else q, fcorpus, dim=d0, k=c0)
            return res.indices.reshape(len(q), -1), None

        return run

    methods = [
        ("funnel", "tuned funnel: plan.search(q)", freads, mk_funnel),
        ("mf_exact", f"matryo_fast.topk dim={full}", "Corpus (Rust mmap)", bt.make_mf_corpus),
        (
            "faiss_default",
            "faiss.knn IP (IndexFlatIP search), defaults",
            "prepared copy",
            bt.make_faiss_default,
        ),  # fmt: skip
    ]
    if not args.no_faiss_blas:
        methods.append(("faiss_blas", "faiss.knn IP, BLAS forced (threshold 0)", "prepared copy",
                        bt.make_faiss_blas))  # fmt: skip
    if not plan.exact:
        methods.append(
            (
                "mf_stage1",
                f"stage 1 alone: topk dim={plan.dims[0]} k={plan.candidates[0]} (no re-rank; for reading)",
                freads,
                mk_stage1,
            )  # fmt: skip
        )
    goals: list[str] = []
    failures = 0
    for b in args.batches:
        q = eval_q[:b]
        ctx = bt.Ctx(x, str(path), full, k, b, args.threads, corpus, norms, prepared)
        timed = h.run_methods(
            {name: partial(_setup, make, ctx, q) for name, _label, _reads, make in methods},
            args.repeats,
            label=f"batch {b} ",
            slow_s=args.slow_s,
            budget_s=args.budget_s,
        )
        res = {name: (r.timing, r.why) for name, r in timed.items()}
        ft = res["funnel"][0]
        rows = []
        for name, label, reads, _make in methods:
            t, why = res[name]
            if t is None:
                rows.append(h.method_row(name, label, reads, None, "", why))
                continue
            idx = np.asarray(t.result[0]).reshape(b, -1)
            ref = oracle[:b]
            if name == "mf_stage1":
                check = f"shortlist holds {recall(ref, idx):.4f} of the exact top {k}"
            elif name == "funnel":
                check = f"recall@{k} {recall(ref, idx):.4f} vs float64 exact"
            else:
                chk = h.check_topk(ref, idx, x, q, full, tol=args.tol)
                failures += not chk.ok
                check = f"{chk} vs float64 exact scan"
            ratio = f"{t.median_s / ft.median_s:.2f}" if ft else ""
            rows.append(h.method_row(name, label, reads, t, ratio, check))
        say()
        say(f"#### batch {b}, k {k}")
        say()
        say(h.markdown_table(h.method_header("funnel"), rows))
        say()
        if ft is None:
            goals.append(f"speed batch {b}: the funnel did not run: FAIL ({res['funnel'][1]})")
            failures += 1
            continue
        et = res["mf_exact"][0]
        if et is not None:
            r = et.median_s / ft.median_s
            goals.append(
                f"speed batch {b}: >= 4x faster than exact matryo_fast.topk: "
                f"{'PASS' if r >= 4 else 'FAIL'} ({r:.2f}x: {h.fmt_ms(et.median_s)} / "
                f"{h.fmt_ms(ft.median_s)} ms)"
            )
        fa = [(nm, tt) for nm in ("faiss_default", "faiss_blas") if (tt := res.get(nm, (None,))[0])]
        if fa:
            nm, best = min(fa, key=lambda p: p[1].median_s)
            r = best.median_s / ft.median_s
            goals.append(
                f"speed batch {b}: >= 8x faster than FAISS flat (its faster variant, {nm}): "
                f"{'PASS' if r >= 8 else 'FAIL'} ({r:.2f}x: {h.fmt_ms(best.median_s)} / "
                f"{h.fmt_ms(ft.median_s)} ms)"
            )
        else:
            goals.append(f"speed batch {b}: FAISS flat did not run: {res['faiss_default'][1]}")
    goals.append(
        f"speed: recall@{k} on the {len(eval_q)} evaluation queries >= {args.target}: "
        f"{'PASS' if held >= args.target else 'FAIL'} ({held:.4f}; plan {plan_str(plan)})"
    )
    say(PLANS_HEADING)
    say()
    say(plan_table(plan))
    say()
    say(
        "- **timing**: time.perf_counter around one call; median (and min) of the timed runs "
        "after one untimed warm-up; "
        f"a warm-up slower than {args.slow_s:g} s gets fewer runs ({args.budget_s:g} s / "
        f"warm-up, at least 1; `*` in runs), a fast one more ({h.FAST_S:g} s / warm-up, at "
        f"most {h.MORE_RUNS} x --repeats {args.repeats}). The methods of a batch are timed in "
        f"{args.repeats} interleaved rounds (`_harness.time_rounds`): each round runs every "
        "method's share of its runs, so a noisy spell of this shared machine falls on all of "
        f"them alike; a {h.PAUSE_S:g} s pause comes before each method's turn (a BLAS or "
        "OpenMP pool keeps its idle threads spinning for a while after a call, which would tax "
        "the next method). Batch 1 passes a 1-D query. "
        "**x funnel** = method time / funnel time. **peak anon MB**: RssAnon growth during the "
        "warm-up (see bench_topk.py). FAISS runs `faiss.knn` (what `IndexFlatIP.search` runs, "
        "without the index's own copy) on a normalized contiguous full-width float32 copy built "
        "outside the timing; its memory is not in the peak column."
    )
    say()
    del prepared
    return goals, failures


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    t_start = time.perf_counter()
    say = Report()
    import matryo_fast as mf

    for mod in ("torch", "faiss"):
        try:
            __import__(mod)
        except ImportError:
            pass
    thread_notes = bt.set_threads(args.threads)
    env = h.environment(["numpy", "torch", "faiss", "sentence_transformers", "matryo_fast"])
    env["matryo_fast backends"] = str(mf.backends())
    env["threads"] = "; ".join(thread_notes)
    say(
        f"## Funnel, {env['date (UTC)']} UTC: k={args.k}, target recall@{args.k} >= "
        f"{args.target}, speed N={args.rows:,} x D={args.cols}, batches {args.batches}"
    )
    say()
    for key, val in env.items():
        say(f"- **{key}**: {val}")
    say()
    goals: list[str] = []
    failures = 0
    if not args.skip_quality:
        goals += quality(mf, args, say)
    if not args.skip_speed:
        g, failures = speed(mf, args, say)
        goals += g
    say("### Goals (from the issue)")
    say()
    for line in goals:
        say(f"- {line}")
    if not args.skip_speed:
        say(
            f"- correctness of the exact baselines: "
            f"{'all checks ok' if not failures else f'**{failures} FAILED CHECK(S)**'}"
        )
    say()
    say(
        f"Load average at end: {' '.join(f'{v:.2f}' for v in os.getloadavg())}. "
        f"Total benchmark time {time.perf_counter() - t_start:.0f} s."
    )
    if args.out:
        h.write_results(args.out, "\n".join(say.lines))
        print(f"\nwrote {args.out}", flush=True)
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
