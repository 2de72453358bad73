"""Quantized tiers side by side, in one process: recall@k against exact float32 search, ms per
query at batch 1 and batch 64, and resident bytes per row, on the seeded clustered corpus of
bench_funnel (benches/_harness.py's generator).

Peers: FAISS ``IndexFlatIP`` (exact float32 inner product on normalised rows, full width),
FAISS ``IndexBinaryFlat`` over the 1-bit codes plus float32 rescoring of its top
``k * m`` (numpy gather + dot), usearch exact ``b1`` (hamming) and ``i8`` (cosine) brute-force
search (``usearch.index.search(..., exact=True)``), sentence-transformers
``semantic_search_usearch(corpus_precision="ubinary", rescore_multiplier=m)``, exact float32
search (``mf.topk``), our tuned float32 funnel and our tuned quantized funnel (tuned on
held-out queries; evaluated on others).

Floors, measured in the same process: the time to read the 1-bit scan's bytes once from
memory on every thread (``mf._core._read_seconds``), and the Hamming kernel's popcount rate on
cache-resident rows at batch 64 (``mf._core._popcount_peak``); the 1-bit scan is reported as a
ratio to the first at batch 1 and to the second at batch 64, each floor timed in alternation
with the scan (paired rounds), so that both see the same machine.

Run: ``make bench-quant`` (N = 1M x 768; minutes). The machine may be shared: figures are noisy.
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

sys.path.insert(0, str(Path(__file__).resolve().parent))
import _harness as h  # noqa: E402

import matryo_fast as mf  # noqa: E402

I64 = npt.NDArray[np.int64]


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--rows", type=int, default=1_000_000)
    ap.add_argument("--cols", type=int, default=768)
    ap.add_argument("--k", type=int, default=10)
    ap.add_argument(
        "--m",
        default="10,100,1000",
        help="rescore multipliers of the peers that rescore (k * m rescored), comma-separated: each "
        "is a row, so that peers are compared at the recall they reach",
    )
    ap.add_argument("--first", type=int, default=256, help="width of the 1-bit scan timed against its floors")
    ap.add_argument(
        "--split",
        default="64,256",
        help="block boundaries of the tiered file (the float32 funnel's first width and the 1-bit scan's)",
    )
    ap.add_argument("--target", type=float, default=0.99)
    ap.add_argument(
        "--tune-by",
        choices=("cost", "time"),
        default="time",
        help="tune_funnel(by=...): cheapest plan in bytes read (the library default), or the "
        "fastest of the cheapest few on the tuning batch",
    )
    ap.add_argument("--tune-queries", type=int, default=200)
    ap.add_argument("--eval-queries", type=int, default=128)
    ap.add_argument("--single", type=int, default=16, help="queries timed one at a time (batch 1)")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--data-dir", default="build/bench")
    ap.add_argument("--skip-st", action="store_true", help="skip sentence-transformers (index build)")
    ap.add_argument("--out", default=None, help="markdown file to add this run's section to")
    return ap.parse_args(argv)


def recall(found: I64, truth: I64) -> float:
    return float(np.mean([len(np.intersect1d(f, t)) / len(t) for f, t in zip(found, truth)]))


def rescore_f32(corpus: Any, q: npt.NDArray[np.float32], ids: I64, k: int) -> I64:
    """Exact cosine of each query with its candidate rows (numpy gather), best ``k`` first."""
    out = np.empty((len(q), k), dtype=np.int64)
    for j, (qj, cand) in enumerate(zip(q, ids)):
        cand = np.sort(cand[cand >= 0])
        rows = np.asarray(corpus[cand], dtype=np.float32)
        s = rows @ qj / np.maximum(np.linalg.norm(rows, axis=1), 1e-30)
        out[j] = cand[np.argsort(-s, kind="stable")[:k]]
    return out


def unit(q: npt.NDArray[np.float32]) -> npt.NDArray[np.float32]:
    """Rows scaled to unit length (zero rows stay zero), C-contiguous float32."""
    q = np.ascontiguousarray(q, dtype=np.float32)
    norms = np.linalg.norm(q, axis=1, keepdims=True)
    return np.ascontiguousarray(q / np.maximum(norms, 1e-30), dtype=np.float32)


def floors(
    n: int,
    dim: int,
    scan1: Callable[[], Any],
    warm1: Callable[[], Any],
    scan64: Callable[[], Any],
    nsingle: int,
    nq: int,
    rounds: int = 15,
) -> list[str]:
    """The 1-bit scan against its floors: bandwidth at batch 1, popcount peak at batch 64.

    A shared machine's speed drifts from minute to minute, so each floor is measured in
    alternation with the scan it bounds, in ``rounds`` paired rounds (a floor's best of 3, then
    one timed call of ``scan1`` (``nsingle`` queries one at a time) or ``scan64`` (one batch of
    ``nq``)), and the ratio is taken within each round: the median ratio is reported, and the
    best. Both sides are timed warm: the read probe writes a fresh buffer of the scan's size
    before it reads it (evicting the codes from the caches), so an untimed query (an untimed
    batch) runs between the probe and the timed scan, as the probe's own first pass is untimed.
    """
    words = -(-dim // 64)
    nbytes = n * (-(-dim // 8))
    scan1()
    scan64()
    read, s1, peak, s64 = [], [], [], []
    for _ in range(rounds):
        read.append(mf._core._read_seconds(nbytes, 3))
        warm1()
        t0 = time.perf_counter()
        scan1()
        s1.append((time.perf_counter() - t0) / nsingle)
        peak.append(mf._core._popcount_peak(nq, words, 3))
        scan64()
        t0 = time.perf_counter()
        scan64()
        s64.append(n * nq * words / (time.perf_counter() - t0))
    r1 = np.array(s1) / np.array(read)
    r64 = np.array(peak) / np.array(s64)
    med = float(np.median(read))
    return [
        f"Bandwidth floor: {nbytes:,} bytes (the 1-bit tier at {dim} dims) read once on every thread "
        f"({med * 1e3:.3f} ms, {nbytes / med / 1e9:.1f} GB/s, median of {rounds} rounds); the 1-bit scan "
        f"at batch 1, timed in the same rounds after one untimed query, takes "
        f"{np.median(s1) * 1e3:.3f} ms per query: "
        f"**{np.median(r1):.2f}x the floor** (median of the rounds' ratios; best round {r1.min():.2f}x).",
        f"Popcount peak: {np.median(peak) / 1e9:.2f} G query-word popcounts/s (the Hamming kernel on "
        f"cache-resident rows, {nq} queries, {words} words per row, every thread); the 1-bit scan at "
        f"batch {nq}, timed in the same rounds after one untimed batch, runs "
        f"{np.median(s64) / 1e9:.2f} G/s: "
        f"**{np.median(r64):.2f}x below the peak** (median of the rounds' ratios; best round "
        f"{r64.min():.2f}x).",
    ]


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    k, ms = args.k, [int(v) for v in args.m.split(",")]
    split = tuple(int(v) for v in args.split.split(","))
    npy = h.ensure_corpus(args.data_dir, args.rows, args.cols, args.seed)
    x = np.load(npy, mmap_mode="r")
    n, d = x.shape
    tiered = npy.with_suffix(f".q{'_'.join(map(str, split))}.mfb")
    try:
        corpus = mf.open_corpus(tiered)
        ok = corpus.tiers == ("float32", "int8", "binary") and corpus.shape == (n, d)
    except (OSError, ValueError):
        ok = False
    if not ok:
        t0 = time.perf_counter()
        mf.save_prefix_blocked(tiered, x, split_at=split, tiers=("float32", "int8", "binary"), overwrite=True)
        print(f"data: wrote {tiered} in {time.perf_counter() - t0:.1f} s", flush=True)
    corpus = mf.open_corpus(tiered)
    qs, _ = h.make_queries(x, args.tune_queries + args.eval_queries, args.seed)
    tune_q, eval_q = qs[: args.tune_queries], qs[args.tune_queries :]
    truth = mf.topk(eval_q, x, k=k).indices

    t0 = time.perf_counter()
    # Up to k * 1000 candidates: a 1-bit first stage keeps thousands of rows.
    widths, counts = (64, 128, 256), [k * c for c in (5, 10, 20, 50, 100, 200, 400, 700, 1000)]
    # by="time": one plan per batch size, timed in calls of that size (a 1-bit first stage
    # wins at batch 1, where bytes bound the scan; less so at 64, where arithmetic does).
    batches = (1, 64) if args.tune_by == "time" else (None,)
    plans: dict[tuple[str, int | None], mf.FunnelPlan] = {}
    for kind, precs in (("float32", None), ("quantized", ("binary", "int8", "float32"))):
        for b in batches:
            plans[kind, b] = mf.tune_funnel(
                corpus,
                tune_q,
                k=k,
                target_recall=args.target,
                widths=widths,
                counts=counts,
                precisions=precs,
                by=args.tune_by,
                time_batch=b,
            )
            print(f"tuned {kind} for batch {b}: {plans[kind, b].params}", flush=True)
    print(f"tuned in {time.perf_counter() - t0:.1f} s")

    def plan_name(kind: str, b: int | None) -> str:
        return f"mf funnel {kind} (tuned{'' if b is None else f' for batch {b}'})"

    ours1, ours64 = plan_name("quantized", batches[0]), plan_name("quantized", batches[-1])

    bits = np.vstack([np.packbits(np.asarray(x[i : i + 65536]) > 0, axis=1) for i in range(0, n, 65536)])
    ranges = corpus.int8_ranges
    assert ranges is not None
    st_q = None
    try:
        from sentence_transformers.util.quantization import quantize_embeddings

        st_q = quantize_embeddings
    except ImportError:
        pass
    codes8 = np.vstack(
        [mf._reference.int8_codes(np.asarray(x[i : i + 65536]), ranges) for i in range(0, n, 65536)]
    )

    methods: dict[str, tuple[Callable[[npt.NDArray[np.float32]], I64], float]] = {}
    methods["mf exact float32"] = (lambda q: mf.topk(q, corpus, k=k).indices, 4 * d)
    scan_name = f"mf 1-bit scan at {args.first} dims (first stage only)"
    try:
        import faiss

        flat = faiss.IndexFlatIP(d)
        for i in range(0, n, 65536):
            flat.add(unit(np.asarray(x[i : i + 65536], dtype=np.float32)))
        methods["FAISS IndexFlatIP float32 (exact)"] = (lambda q: flat.search(unit(q), k)[1], 4 * d)
    except ImportError as e:
        print(f"faiss: {e}")
    for (kind, b), plan in plans.items():
        methods[plan_name(kind, b)] = (
            lambda q, plan=plan: plan.search(q).indices,
            sum({"float32": 4 * d, "int8": d, "binary": d / 8}[p] for p in set(plan.precisions)),
        )
    methods[scan_name] = (
        lambda q: mf.topk(q, corpus, dim=args.first, k=k, precision="binary").indices,
        args.first / 8,
    )
    try:
        import faiss

        index = faiss.IndexBinaryFlat(d)
        index.add(bits)
        for m in ms:
            methods[f"FAISS IndexBinaryFlat + float32 rescore of k*{m}"] = (
                lambda q, m=m: rescore_f32(x, q, index.search(np.packbits(q > 0, axis=1), k * m)[1], k),
                d / 8 + 4 * d,
            )
    except ImportError as e:
        print(f"faiss: {e}")
    try:
        from usearch.index import search as usearch_search

        methods["usearch b1 exact (hamming, no rescore)"] = (
            lambda q: np.atleast_2d(
                usearch_search(bits, np.packbits(q > 0, axis=1), k, "hamming", exact=True).keys
            ).astype(np.int64),
            d / 8,
        )
        methods["usearch i8 exact (cos, no rescore)"] = (
            lambda q: np.atleast_2d(
                usearch_search(codes8, mf._reference.int8_codes(q, ranges), k, "cos", exact=True).keys
            ).astype(np.int64),
            d,
        )
        if st_q is not None and not args.skip_st:
            from sentence_transformers.util.quantization import semantic_search_usearch
            from usearch.index import Index

            t0 = time.perf_counter()
            st_index = Index(ndim=d, metric="hamming", dtype="b1")
            st_index.add(np.arange(n), bits)
            print(f"usearch b1 index for sentence-transformers built in {time.perf_counter() - t0:.1f} s")

            def st_search(q: npt.NDArray[np.float32], m: int) -> I64:
                res, _ = semantic_search_usearch(
                    q, corpus_index=st_index, corpus_precision="ubinary", top_k=k, rescore_multiplier=m
                )[:2]
                return np.array([[hit["corpus_id"] for hit in r] for r in res], dtype=np.int64)

            for m in ms:
                methods[f"sentence-transformers semantic_search_usearch ubinary, rescore k*{m}"] = (
                    lambda q, m=m: st_search(q, m),
                    d / 8,
                )
    except ImportError as e:
        print(f"usearch: {e}")

    rows_out = []
    single = eval_q[: args.single]
    batch = eval_q[:64]
    rec: dict[str, float] = {}
    for name, (fn, _) in methods.items():
        try:
            rec[name] = recall(fn(eval_q), truth)
        except Exception as e:  # noqa: BLE001 - a failing peer is reported, not fatal
            rec[name] = float("nan")
            print(f"{name}: {h.not_run(e)}")
    setups1 = {
        name: (lambda fn=fn: lambda: [fn(q[None, :]) for q in single]) for name, (fn, _) in methods.items()
    }
    setups64 = {name: (lambda fn=fn: lambda: fn(batch)) for name, (fn, _) in methods.items()}
    r1 = h.run_methods(setups1, args.repeats, label="batch 1: ", memory=False)
    r64 = h.run_methods(setups64, args.repeats, label="batch 64: ", memory=False)
    base1, base64 = r1[ours1].timing, r64[ours64].timing
    notes = []
    scan = methods[scan_name][0]
    notes += floors(
        n,
        args.first,
        lambda: [scan(q[None, :]) for q in single],
        lambda: scan(single[-1][None, :]),
        lambda: scan(batch),
        len(single),
        len(batch),
    )
    flat_name = "FAISS IndexFlatIP float32 (exact)"
    peers = [
        (plan_name("float32", batches[0]), plan_name("float32", batches[-1]), "the tuned float32 funnel"),
        (flat_name, flat_name, flat_name),
    ]
    for peer1, peer64, label in peers:
        p1, p64 = (r1[peer1].timing, r64[peer64].timing) if peer1 in r1 else (None, None)
        if p1 and p64 and base1 and base64:
            notes.append(
                f"Tuned quantized funnel vs {label}: **{p1.median_s / base1.median_s:.1f}x** faster at "
                f"batch 1, **{p64.median_s / base64.median_s:.1f}x** at batch 64, each with the plans "
                f"tuned for that batch (recall@{k} {rec[ours1]:.4f} / {rec[ours64]:.4f} vs "
                f"{rec[peer1]:.4f} / {rec[peer64]:.4f} on held-out queries)."
            )
    ours = max(rec[ours1], rec[ours64])
    quantized_peers = [n for n in methods if not n.startswith("mf ") and "IndexFlatIP" not in n]
    level = [n for n in quantized_peers if rec[n] >= ours]
    if base1 and base64:
        parts = []
        for name in level:
            t1, t64 = r1[name].timing, r64[name].timing
            if t1 and t64:
                parts.append(
                    f"{name} (recall {rec[name]:.4f}): ours **{t1.median_s / base1.median_s:.1f}x** "
                    f"faster at batch 1, **{t64.median_s / base64.median_s:.1f}x** at batch 64"
                )
        notes.append(
            f"Quantized peers at recall@{k} >= ours ({ours:.4f}): " + "; ".join(parts) + "."
            if parts
            else f"No quantized peer reached our recall@{k} ({ours:.4f}) at the rescore multipliers tried."
        )
    for name, (_, resident) in methods.items():
        t1, t64 = r1[name].timing, r64[name].timing
        ms1 = t1.median_s * 1e3 / len(single) if t1 else float("nan")
        ms64 = t64.median_s * 1e3 / len(batch) if t64 else float("nan")
        x1 = f"{t1.median_s / base1.median_s:.1f}x" if t1 and base1 else ""
        x64 = f"{t64.median_s / base64.median_s:.1f}x" if t64 and base64 else ""
        rows_out.append([name, f"{rec[name]:.4f}", f"{ms1:.3f}", x1, f"{ms64:.4f}", x64, f"{resident:,.0f}"])
    table = h.markdown_table(
        [
            "method",
            f"recall@{k}",
            "ms/query batch 1",
            "vs ours",
            "ms/query batch 64",
            "vs ours",
            "resident bytes/row",
        ],
        rows_out,
    )
    env = h.environment(["numpy", "faiss", "usearch", "sentence_transformers"])
    section = "\n".join(
        [
            f"## Quantized tiers (`make bench-quant`): N={n:,} x {d}, k={k}",
            "",
            f"Data: {h.DATA_DESCRIPTION}",
            f"Tiered file: float32 + int8 + binary, blocks split at {', '.join(map(str, split))}. "
            "Plans tuned on "
            f"{args.tune_queries} queries (target recall@{k} {args.target}, margin 2 SE, by {args.tune_by}), "
            "measured on "
            f"{args.eval_queries} others against exact float32 search. Batch 1 times {args.single} "
            "single queries in a row; batch 64 one call of 64; medians of interleaved rounds; "
            "'vs ours' is the method's time over the tuned quantized funnel's (the plan tuned "
            "for that batch).",
            *(
                f"{plan_name(kind, b)}: {plan.params} (bytes read/query {plan.bytes_read:,}; exact "
                f"float32 reads {plan.exact_bytes:,})."
                for (kind, b), plan in plans.items()
            ),
            "Resident bytes/row: what the method keeps mapped or in RAM per row (ours: the tiers its "
            "plan touches; FAISS+rescore and the float32 rescoring read the float32 rows too).",
            "The machine was shared with other jobs while this ran: timings are noisy.",
            "",
            table,
            "",
            *notes,
            "",
            "Environment: " + "; ".join(f"{a}: {b}" for a, b in env.items()),
            "",
        ]
    )
    print(section)
    if args.out:
        h.write_results(args.out, section)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
