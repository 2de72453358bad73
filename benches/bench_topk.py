"""Side-by-side benchmark: ``matryo_fast.topk`` against numpy, torch, FAISS and usearch.

Every method runs in this one process on the same memory-mapped float32 ``.npy`` corpus (made
by the script, seeded), at each prefix ``dim`` and query batch size; each method's top-k is
checked against matryo_fast's (and matryo_fast's against a float64 exact scan). The tables give
median wall times, ratios to ``matryo_fast.topk`` on an opened ``Corpus``, peak anonymous-memory
growth, the memory-bandwidth floor (batch 1) and the sgemm floor (batch > 1).

    python benches/bench_topk.py --rows 50000 --repeats 3      # a quick check
    env -u OPENBLAS_CORETYPE -u OPENBLAS_L2_SIZE \
        python benches/bench_topk.py --out benches/RESULTS.md   # N=1,000,000 x 768

Not part of ``make test``. The data file is written once to ``--data-dir`` and reused.
"""

from __future__ import annotations

import argparse
import math
import os
import sys
import time
import warnings
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any

import _harness as h
import numpy as np

# --------------------------------------------------------------------------------------------
# Methods. Each ``make(ctx)`` does the untimed setup and returns ``run(queries) -> (idx, scores)``
# with ``queries`` a (B, D) float32 array of full-width queries and ``idx`` of shape (B, k).
# ``make`` raises ``NotAvailable(reason)`` when the method cannot run this case.
# --------------------------------------------------------------------------------------------


NotAvailable = h.NotAvailable


@dataclass
class Ctx:
    corpus: Any  # np.memmap (N, D) float32, read-only
    path: str
    dim: int
    k: int
    batch: int
    threads: int
    mf_corpus: Any = None  # matryo_fast.Corpus, opened once
    norms: Any = None  # float32 (N,) prefix norms, computed once per dim
    prepared: Any = None  # float32 (N, dim) normalized prefix copy, or a NotAvailable reason
    mf_blocked: Any = None  # matryo_fast.Corpus of the prefix-blocked copy, or a NotAvailable reason
    in_ram: Any = None  # the corpus read into an in-RAM array, or a NotAvailable reason


Run = Callable[[np.ndarray], tuple[np.ndarray, Any]]


@dataclass(frozen=True)
class Method:
    name: str
    label: str
    reads: str  # what the timed call reads
    prepared: bool  # needs a copy built ahead of time (outside the timed region)
    make: Callable[[Ctx], Run]


def _mf() -> Any:
    try:
        import matryo_fast
    except ImportError as e:
        raise NotAvailable(f"matryo_fast not importable ({e})") from None
    return matryo_fast


def _mf_run(ctx: Ctx, corpus: Any) -> Run:
    mf = _mf()
    dim, k = ctx.dim, ctx.k

    def run(q: np.ndarray) -> tuple[np.ndarray, Any]:
        # batch 1 goes through the 1-D query path of the API
        res = mf.topk(q[0] if len(q) == 1 else q, corpus, dim=dim, k=k)
        return res.indices.reshape(len(q), -1), res.scores.reshape(len(q), -1)

    return run


def make_mf_corpus(ctx: Ctx) -> Run:
    if ctx.mf_corpus is None:
        _mf()  # raises NotAvailable with the import error
        raise NotAvailable("matryo_fast Corpus not opened")
    return _mf_run(ctx, ctx.mf_corpus)


def make_mf_array(ctx: Ctx) -> Run:
    _mf()
    return _mf_run(ctx, ctx.corpus)


def _built(value: Any, what: str) -> Any:
    if isinstance(value, NotAvailable):
        raise value
    if value is None:
        raise NotAvailable(f"{what} not built")
    return value


def make_mf_blocked(ctx: Ctx) -> Run:
    _mf()
    return _mf_run(ctx, _built(ctx.mf_blocked, "the prefix-blocked file"))


def make_mf_in_ram(ctx: Ctx) -> Run:
    _mf()
    return _mf_run(ctx, _built(ctx.in_ram, "the in-RAM array"))


def _prepared(ctx: Ctx) -> np.ndarray:
    if isinstance(ctx.prepared, NotAvailable):
        raise ctx.prepared
    return ctx.prepared  # type: ignore[no-any-return]


def make_np_naive(ctx: Ctx) -> Run:
    # What a user writes first: slice the prefix, re-normalize the whole slice (an N x dim copy,
    # plus the x*x temporary inside np.linalg.norm), matmul, argpartition + argsort.
    n = ctx.corpus.shape[0]
    h.need_memory(2 * n * ctx.dim * 4 + n * ctx.batch * 4, "the per-call normalized copy")
    x, dim, k = ctx.corpus, ctx.dim, ctx.k

    def run(q: np.ndarray) -> tuple[np.ndarray, Any]:
        p = x[:, :dim]
        pn = p / np.linalg.norm(p, axis=1, keepdims=True)
        qd = q[:, :dim]
        qn = qd / np.linalg.norm(qd, axis=1, keepdims=True)
        return h.topk_from_scores(np.asarray(qn @ pn.T), k)

    return run


def make_np_prefix_norms(ctx: Ctx) -> Run:
    # The best peer without a prepared copy: BLAS on the strided prefix view of the memmap
    # (no copy), divided by prefix norms computed once beforehand.
    p = np.asarray(ctx.corpus)[:, : ctx.dim]
    norms, dim, k = ctx.norms, ctx.dim, ctx.k

    def run(q: np.ndarray) -> tuple[np.ndarray, Any]:
        qn = h.normalize_rows(q[:, :dim])
        if len(q) == 1:
            s = p @ qn[0]
            s /= norms
            return h.topk_from_scores(s[None, :], k)
        s = qn @ p.T
        s /= norms
        return h.topk_from_scores(s, k)

    return run


def make_np_prepared(ctx: Ctx) -> Run:
    pn = _prepared(ctx)
    dim, k = ctx.dim, ctx.k

    def run(q: np.ndarray) -> tuple[np.ndarray, Any]:
        qn = h.normalize_rows(q[:, :dim])
        s = (pn @ qn[0])[None, :] if len(q) == 1 else qn @ pn.T
        return h.topk_from_scores(s, k)

    return run


def _torch() -> Any:
    try:
        import torch
    except ImportError as e:
        raise NotAvailable(f"torch not importable ({e})") from None
    return torch


def _torch_run(torch: Any, t: Any, norms: Any, ctx: Ctx) -> Run:
    """Normalised queries times the corpus prefixes ``t`` (divided by their ``norms``, unless
    they are normalised already), then torch's top-k."""
    dim, k = ctx.dim, ctx.k

    def run(q: np.ndarray) -> tuple[np.ndarray, Any]:
        qn = torch.from_numpy(h.normalize_rows(q[:, :dim]))
        with torch.inference_mode():
            s = torch.mm(qn, t.T)
            if norms is not None:
                s /= norms
            v, i = torch.topk(s, k, dim=1)
        return i.numpy(), v.numpy()

    return run


def make_torch_prepared(ctx: Ctx) -> Run:
    torch = _torch()
    return _torch_run(torch, torch.from_numpy(_prepared(ctx)), None, ctx)


def make_torch_memmap(ctx: Ctx) -> Run:
    # torch.from_numpy shares the read-only memmap (torch warns that it is not writable; we
    # never write). The prefix is a strided view; mm on its transpose goes to BLAS without a copy
    # (the peak-memory column shows whether it copied). Prefix norms computed once beforehand.
    torch = _torch()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        t = torch.from_numpy(np.asarray(ctx.corpus))[:, : ctx.dim]
    return _torch_run(torch, t, torch.from_numpy(ctx.norms), ctx)


def _faiss() -> Any:
    try:
        import faiss
    except ImportError as e:
        raise NotAvailable(f"faiss not importable ({e})") from None
    return faiss


def _make_faiss(ctx: Ctx, blas_threshold: int | None) -> Run:
    # faiss.knn (the search of IndexFlatIP without building an index, which would copy the
    # prepared data once more) with inner product on the normalized prepared copy.
    faiss = _faiss()
    pn = _prepared(ctx)
    dim, k = ctx.dim, ctx.k

    def run(q: np.ndarray) -> tuple[np.ndarray, Any]:
        qn = h.normalize_rows(q[:, :dim])
        if blas_threshold is None:
            d, i = faiss.knn(qn, pn, k, metric=faiss.METRIC_INNER_PRODUCT)
            return i, d
        old = faiss.cvar.distance_compute_blas_threshold
        faiss.cvar.distance_compute_blas_threshold = blas_threshold
        try:
            d, i = faiss.knn(qn, pn, k, metric=faiss.METRIC_INNER_PRODUCT)
        finally:
            faiss.cvar.distance_compute_blas_threshold = old
        return i, d

    return run


def make_faiss_default(ctx: Ctx) -> Run:
    return _make_faiss(ctx, None)


def make_faiss_blas(ctx: Ctx) -> Run:
    return _make_faiss(ctx, 0)


def make_usearch(ctx: Ctx) -> Run:
    # usearch.index.search(exact=True) accepts the strided prefix view of the memmap; cosine
    # (with both norms) is computed on the fly by its SIMD kernels.
    try:
        from usearch.index import MetricKind, search
    except ImportError as e:
        raise NotAvailable(f"usearch not importable ({e})") from None
    p = np.asarray(ctx.corpus)[:, : ctx.dim]
    dim, k, threads = ctx.dim, ctx.k, ctx.threads

    def run(q: np.ndarray) -> tuple[np.ndarray, Any]:
        qd = np.ascontiguousarray(q[:, :dim])
        m = search(p, qd, k, MetricKind.Cos, exact=True, threads=threads)
        return np.asarray(m.keys, dtype=np.int64).reshape(len(q), -1), None

    return run


def _cdist_run(cdist: Any, x: np.ndarray, metric: str, ctx: Ctx, normalize: bool) -> Run:
    # numkong/simsimd cdist: one SIMD kernel call per (query, row) pair on ctx.threads threads,
    # float32 out (a B x N matrix); the top k are taken from it with numpy (as their users do).
    # Batches run too, unless one call would take over CDIST_BATCH_LIMIT_S: these are pairwise
    # kernels with no GEMM blocking (a batch costs about B single queries), and numkong on the
    # strided prefix view is far slower than on a contiguous copy.
    dim, k, threads = ctx.dim, ctx.k, ctx.threads

    def run(q: np.ndarray) -> tuple[np.ndarray, Any]:
        qd = np.ascontiguousarray(q[:, :dim])
        if normalize:
            qd = h.normalize_rows(qd).astype(np.float32)
        d = np.asarray(cdist(qd, x, metric=metric, threads=threads, out_dtype="float32"))
        return h.topk_from_scores(-d if metric == "angular" else d, k)

    if ctx.batch > 1:
        # Estimated from one query, then from two (a batch may take another path: numkong's
        # 64 queries on the strided view took 3x 64 single queries).
        for b in (1, 2):
            qs = np.ascontiguousarray(h.make_queries(ctx.corpus, b, 0)[0])
            t0 = time.perf_counter()
            run(qs)
            est = (time.perf_counter() - t0) * ctx.batch / b
            if est > CDIST_BATCH_LIMIT_S:
                raise NotAvailable(
                    f"a {ctx.batch}-query cdist call would take ~{est:.0f} s ({ctx.batch} / {b} x "
                    f"a {b}-query call); not timed (limit {CDIST_BATCH_LIMIT_S:g} s)"
                )
    return run


#: A pairwise cdist batch estimated to take longer than this per call is not timed.
CDIST_BATCH_LIMIT_S = 20.0


def make_numkong_memmap(ctx: Ctx) -> Run:
    # numkong.cdist(metric="angular") reads the strided prefix view of the memmap (no copy) and
    # computes both norms on the fly; angular distance is 1 - cosine.
    try:
        import numkong
    except ImportError as e:
        raise NotAvailable(f"numkong not importable ({e})") from None
    return _cdist_run(numkong.cdist, np.asarray(ctx.corpus)[:, : ctx.dim], "angular", ctx, False)


def make_simsimd_prepared(ctx: Ctx) -> Run:
    # simsimd.cdist(metric="inner") on the normalized prefix copy: dot products only.
    if "simsimd" not in sys.modules and "usearch.compiled" in sys.modules:
        # See main(): a simsimd loaded after usearch binds numkong's functions and fails.
        raise NotAvailable("simsimd must be imported before usearch (symbol clash with numkong)")
    try:
        import simsimd
    except ImportError as e:
        raise NotAvailable(f"simsimd not importable ({e})") from None
    return _cdist_run(simsimd.cdist, _prepared(ctx), "inner", ctx, True)


METHODS = [
    Method("mf_corpus", "matryo_fast.topk", "Corpus (Rust mmap)", False, make_mf_corpus),
    Method("mf_array", "matryo_fast.topk", "np.load(mmap_mode='r')", False, make_mf_array),
    Method("mf_in_ram", "matryo_fast.topk", "in-RAM array (np.load)", False, make_mf_in_ram),
    Method("mf_blocked", "matryo_fast.topk", "prefix-blocked .mfb (Corpus)", False, make_mf_blocked),
    Method(
        "np_naive",
        "numpy naive (normalize slice per call)",
        "memmap prefix + N x dim copy per call",
        False,
        make_np_naive,
    ),
    Method(
        "np_prefix_norms",
        "numpy matmul, prefix norms precomputed",
        "memmap prefix view (no copy)",
        False,
        make_np_prefix_norms,
    ),
    Method("np_prepared", "numpy matmul", "prepared copy", True, make_np_prepared),
    Method("torch_prepared", "torch mm + topk", "prepared copy", True, make_torch_prepared),
    Method(
        "torch_memmap",
        "torch mm + topk, prefix norms precomputed",
        "memmap prefix view (no copy)",
        False,
        make_torch_memmap,
    ),
    Method(
        "faiss_default",
        "faiss.knn IP (IndexFlatIP search), defaults",
        "prepared copy",
        True,
        make_faiss_default,
    ),
    Method(
        "faiss_blas",
        "faiss.knn IP, BLAS forced (threshold 0)",
        "prepared copy",
        True,
        make_faiss_blas,
    ),
    Method(
        "numkong_memmap",
        "numkong cdist angular",
        "memmap prefix view (no copy)",
        False,
        make_numkong_memmap,
    ),
    Method(
        "simsimd_prepared",
        "simsimd cdist inner",
        "prepared copy",
        True,
        make_simsimd_prepared,
    ),
    Method(
        "usearch_exact",
        "usearch search(exact=True, Cos)",
        "memmap prefix view (no copy)",
        False,
        make_usearch,
    ),
]
BASELINE = "mf_corpus"
PREPARED_NEEDED = {m.name for m in METHODS if m.prepared}
NO_PREPARED_COPY = {
    "np_naive",
    "np_prefix_norms",
    "torch_memmap",
    "usearch_exact",
    "numkong_memmap",
}


# --------------------------------------------------------------------------------------------


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    def ints(s: str) -> list[int]:
        return [int(x) for x in s.split(",") if x]

    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--rows", type=int, default=1_000_000)
    ap.add_argument("--cols", type=int, default=768)
    ap.add_argument("--dims", type=ints, default=[64, 128, 256, 768])
    ap.add_argument("--batches", type=ints, default=[1, 64])
    ap.add_argument("--k", type=int, default=10)
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--data-dir", default="build/bench")
    ap.add_argument(
        "--methods",
        default=",".join(m.name for m in METHODS),
        help="comma-separated subset of: " + ", ".join(m.name for m in METHODS),
    )
    ap.add_argument(
        "--threads",
        type=int,
        default=len(os.sched_getaffinity(0)),
        help="threads for every library (default: all usable cores)",
    )
    ap.add_argument(
        "--bandwidth-gbs",
        type=float,
        default=None,
        help="use this read bandwidth for the floor instead of measuring it",
    )
    ap.add_argument(
        "--sgemm-gflops",
        type=float,
        default=None,
        help="use this sgemm rate for the floor instead of measuring it",
    )
    ap.add_argument(
        "--tol",
        type=float,
        default=1e-5,
        help="score gap (float64 cosine) within which top-k swaps count as ties",
    )
    ap.add_argument(
        "--slow-s",
        type=float,
        default=2.0,
        help="a warm-up slower than this gets fewer timed runs (~10 s per case)",
    )
    ap.add_argument(
        "--budget-s",
        type=float,
        default=10.0,
        help="timed seconds per slow case: runs = clamp(budget / warm-up, 1, --repeats)",
    )
    ap.add_argument(
        "--paired-rounds",
        type=int,
        default=9,
        help="rounds of each paired target measurement after the tables (0: skip them)",
    )
    ap.add_argument("--out", default=None, help="markdown file to add this run to")
    args = ap.parse_args(argv)
    names = {m.name for m in METHODS}
    args.methods = [x for x in args.methods.split(",") if x]
    unknown = set(args.methods) - names
    if unknown:
        ap.error(f"unknown methods {sorted(unknown)}; choose from {sorted(names)}")
    if any(d < 1 or d > args.cols for d in args.dims):
        ap.error(f"--dims must lie in 1..{args.cols}")
    return args


def set_threads(n: int) -> list[str]:
    """Give every library ``n`` threads; returns what was set, for the report."""
    done = []
    try:
        from threadpoolctl import threadpool_limits

        threadpool_limits(limits=n)
        done.append(f"BLAS/OpenMP pools (threadpoolctl) {n}")
    except ImportError:
        pass
    try:
        import torch

        torch.set_num_threads(n)
        done.append(f"torch.set_num_threads({n})")
    except ImportError:
        pass
    try:
        import faiss

        faiss.omp_set_num_threads(n)
        done.append(f"faiss.omp_set_num_threads({n})")
    except ImportError:
        pass
    done.append(f"usearch threads={n}")
    mf_threads = os.environ.get("MATRYO_FAST_NUM_THREADS")
    done.append(
        f"matryo_fast MATRYO_FAST_NUM_THREADS={mf_threads}"
        if mf_threads
        else "matryo_fast: MATRYO_FAST_NUM_THREADS unset (rayon default: all cores)"
    )
    return done


def run_case(
    ctx: Ctx, methods: list[Method], q: np.ndarray, args: argparse.Namespace
) -> dict[str, tuple[Method, h.Timing | None, str]]:
    """Time every method on one (dim, batch) case with :func:`_harness.run_methods`; a method
    that cannot run gets a reason."""
    got = h.run_methods(
        {m.name: partial(_setup, m, ctx, q) for m in methods},
        args.repeats,
        label=f"dim {ctx.dim} batch {ctx.batch} ",
        slow_s=args.slow_s,
        budget_s=args.budget_s,
    )
    return {m.name: (m, got[m.name].timing, got[m.name].why) for m in methods}


def _setup(m: Method, ctx: Ctx, q: np.ndarray) -> Callable[[], Any]:
    """The call that times method ``m`` on the queries ``q``."""
    return partial(m.make(ctx), q)


def table_rows(
    results: dict[str, tuple[Method, h.Timing | None, str]],
    base_name: str | None,
    oracle_idx: np.ndarray,
    ctx: Ctx,
    q: np.ndarray,
    tol: float,
) -> tuple[list[list[str]], int]:
    """The table rows of one case and the number of failed checks.

    The baseline is checked against the float64 exact scan, every other method against the
    baseline (and, when that fails, also against the float64 scan to say who is wrong).
    matryo_fast results also have their order and scores checked against the numeric contract.
    """
    x, dim, batch = ctx.corpus, ctx.dim, ctx.batch
    base_t = results[base_name][1] if base_name else None
    rows, failures = [], 0
    for name, (m, t, why) in results.items():
        if t is None:
            rows.append(h.method_row(m.name, m.label, m.reads, None, "", why))
            continue
        idx = np.asarray(t.result[0]).reshape(batch, -1)
        if name == base_name or base_t is None:
            chk = h.check_topk(oracle_idx[:batch], idx, x, q, dim, tol=tol)
            check = f"{chk} vs float64 exact scan"
        else:
            chk = h.check_topk(base_t.result[0], idx, x, q, dim, tol=tol)
            check = str(chk)
            if not chk.ok:
                vs64 = h.check_topk(oracle_idx[:batch], idx, x, q, dim, tol=tol)
                check += f"; vs float64 exact scan: {vs64}"
        failures += not chk.ok
        if name.startswith("mf_") and t.result[1] is not None:
            contract = h.check_contract(idx, t.result[1], x, q, dim, tol=tol)
            if not contract.startswith("ok"):
                failures += 1
                check += f"; contract: {contract}"
        ratio = t.median_s / base_t.median_s if base_t else math.nan
        rows.append(h.method_row(m.name, m.label, m.reads, t, f"{ratio:.2f}", check))
    return rows, failures


def floor_notes(
    results: dict[str, tuple[Method, h.Timing | None, str]],
    ctx: Ctx,
    args: argparse.Namespace,
    bw_gbs: float,
    sg_gflops: float,
) -> tuple[list[str], list[str]]:
    """Lines under a case's table (floors, memory) and goal verdicts for the summary."""
    n, dim, batch = ctx.corpus.shape[0], ctx.dim, ctx.batch
    notes: list[str] = []
    goals: list[str] = []
    prefix_bytes = n * dim * 4
    line_bytes = n * math.ceil(dim * 4 / 64) * 64
    bw_floor = prefix_bytes / (bw_gbs * 1e9)
    mf_t = results[BASELINE][1] if BASELINE in results else None
    if batch == 1:
        floor = bw_floor
        note = (
            f"- bandwidth floor: {prefix_bytes / 1e6:.0f} MB of prefix (N*dim*4) / "
            f"{bw_gbs:.1f} GB/s = **{h.fmt_ms(floor)} ms**; whole 64-B cache lines "
            f"(N*ceil(dim*4/64)*64 = {line_bytes / 1e6:.0f} MB): "
            f"{h.fmt_ms(line_bytes / (bw_gbs * 1e9))} ms"
        )
        if dim * 4 % 64:
            note += " (the prefix is not a whole number of lines)"
        if dim < args.cols:
            note += (
                f"; rows are {args.cols * 4} B apart, so every row's prefix sits on its own "
                "lines and the hardware prefetchers may also fetch lines past it"
            )
        notes.append(note)
        if mf_t:
            notes.append(f"- matryo_fast (Corpus) / bandwidth floor = {mf_t.median_s / floor:.2f}x")
            if dim == args.cols:
                ok = mf_t.median_s <= 1.3 * floor
                goals.append(
                    f"batch 1, dim {dim}: within 1.3x of the bandwidth floor: "
                    f"{'PASS' if ok else 'FAIL'} ({mf_t.median_s / floor:.2f}x)"
                )
            peers = [(nm, r[1]) for nm, r in results.items() if nm in NO_PREPARED_COPY and r[1] is not None]
            if peers:
                best_nm, best_t = min(peers, key=lambda p: p[1].median_s)
                ok = mf_t.median_s < best_t.median_s
                goals.append(
                    f"batch 1, dim {dim}: faster than every peer without a prepared copy "
                    f"(best: {best_nm} {h.fmt_ms(best_t.median_s)} ms): "
                    f"{'PASS' if ok else 'FAIL'} ({h.fmt_ms(mf_t.median_s)} ms)"
                )
    else:
        flops = 2 * batch * n * dim
        floor = flops / (sg_gflops * 1e9)
        notes.append(
            f"- sgemm floor: 2*B*N*dim = {flops / 1e9:.1f} GFLOP / {sg_gflops:.0f} GFLOP/s "
            f"= **{h.fmt_ms(floor)} ms** (bandwidth floor {h.fmt_ms(bw_floor)} ms)"
        )
        if mf_t:
            notes.append(f"- matryo_fast (Corpus) / sgemm floor = {mf_t.median_s / floor:.2f}x")
            ok = mf_t.median_s <= 1.5 * floor
            goals.append(
                f"batch {batch}, dim {dim}: within 1.5x of the sgemm floor: "
                f"{'PASS' if ok else 'FAIL'} ({mf_t.median_s / floor:.2f}x)"
            )
    notes.append(
        f"- per-call sizes for reading the peak column: prefix N*dim*4 = "
        f"{prefix_bytes / 1e6:.1f} MB; a float32 N x B score matrix = {n * batch * 4 / 1e6:.1f} MB "
        f"(argpartition adds int64 indices of twice that)"
    )
    if mf_t and mf_t.peak_anon_mb is not None:
        ok = mf_t.peak_anon_mb < 100
        notes.append(
            f"- matryo_fast (Corpus) peak anonymous-memory growth: {mf_t.peak_anon_mb:.1f} MB "
            f"({'under' if ok else '**NOT under**'} 100 MB; corpus file "
            f"{ctx.corpus.nbytes / 1e9:.2f} GB)"
        )
        goals.append(
            f"batch {batch}, dim {dim}: peak anon growth < 100 MB: "
            f"{'PASS' if ok else 'FAIL'} ({mf_t.peak_anon_mb:.1f} MB)"
        )
    return notes, goals


METHOD_NOTES = [
    "- **timing**: time.perf_counter around one call; median (and min) of the timed runs after "
    "one untimed warm-up per method and case; a warm-up slower than SLOW s gets fewer runs "
    "(BUDGET s / warm-up, at least 1; `*` in the runs column), a fast one more (FAST s / "
    "warm-up, at most MORE x --repeats). A case's methods are timed in --repeats interleaved "
    "rounds (`_harness.time_rounds`: each round runs every method's share of its runs), so a "
    "noisy spell of the shared machine falls on all of them alike; a PAUSE s pause comes before "
    "each method's turn (a BLAS or OpenMP pool keeps its idle threads spinning for a while after "
    "a call, which would tax the next method).",
    "- **peak anon MB** (1e6 B): growth of RssAnon (anonymous memory, not the mapped file's "
    "pages) during the warm-up call over its value just before, sampled every ~1 ms from "
    "/proc/PID/status by a separate process (a lower bound: shorter spikes can be missed).",
    "- **check**: top-k index sets per query vs matryo_fast (Corpus); a difference passes only as "
    "a swap among scores within TOL of the k-th score (float64 recomputation). matryo_fast "
    "itself is checked against a float64 exact scan and its contract (order, ties, scores).",
    "- **prepared copy**: a normalized contiguous (N, dim) float32 copy built once per dim "
    "outside the timed region; its memory is not in the peak column.",
]


def paired_goals(
    mf: Any,
    x: np.ndarray,
    corpus: Any,
    blocked: Any,
    in_ram: Any,
    queries: np.ndarray,
    args: argparse.Namespace,
) -> list[str]:
    """The issue's targets, each measured in paired rounds (``_harness.paired_ratios``): the
    case and its floor (or the case it is held against) back to back, the ratio taken within
    each round, the median reported with the best and worst round. The tables' floors come
    from a best-of-3 probe taken once, minutes away from most cases, on a machine whose speed
    drifts; these do not.

    - batch 1, every width: the prefix-blocked file against a read of the same number of bytes
      of the page-cached ``.npy`` mapping (contiguous, every thread, numpy's OR reduction);
    - batch 1, full width: the prefix-blocked file against the ``.npy`` (``Corpus``);
    - batch > 1, every width: the ``.npy`` against the sgemm floor, 2*B*N*dim over the rate of
      one 2048-square numpy product taken in the same round (each side one call);
    - every case: the in-RAM array against the same rows mapped (``Corpus``).
    """
    n, cols = x.shape
    rounds = args.paired_rounds
    bits = np.asarray(x).reshape(-1).view(np.uint32)
    size = 2048
    product = h.sgemm_product(size)
    lines: list[str] = []

    def verdict(what: str, r: np.ndarray, limit: float) -> str:
        med = float(np.median(r))
        return (
            f"{what}: {'PASS' if med <= limit else 'FAIL'} ({med:.2f}x, median of {len(r)} paired "
            f"rounds; best {r.min():.2f}x, worst {r.max():.2f}x)"
        )

    def search(c: Any, q: np.ndarray, dim: int) -> Callable[[], object]:
        return lambda: mf.topk(q[0] if len(q) == 1 else q, c, dim=dim, k=args.k)

    with ThreadPoolExecutor(args.threads) as ex:
        for dim in args.dims:
            read = h.or_pass(bits[: n * dim], ex, args.threads)
            for batch in args.batches:
                q = queries[:batch]
                case = f"batch {batch}, dim {dim}"
                # (what, case, its floor or counterpart, the floor's time per call of it, limit)
                pairs: list[tuple[str, Callable[[], object], Callable[[], object], float, float]] = []
                if batch == 1 and blocked is not None:
                    what = "prefix-blocked file within 1.3x of reading its bytes"
                    pairs.append((what, search(blocked, q, dim), read, 1.0, 1.3))
                    if dim == cols and corpus is not None:
                        what = "prefix-blocked file within 1.1x of the .npy"
                        pairs.append((what, search(blocked, q, dim), search(corpus, q, dim), 1.0, 1.1))
                if batch > 1 and corpus is not None:
                    # The sgemm floor: the case's flops at the rate of the product's call.
                    scale = 2 * batch * n * dim / (2 * size**3)
                    what = ".npy within 1.5x of the sgemm floor"
                    pairs.append((what, search(corpus, q, dim), product, scale, 1.5))
                if in_ram is not None and corpus is not None:
                    what = "in-RAM array at least as fast as the mapped .npy"
                    pairs.append((what, search(in_ram, q, dim), search(corpus, q, dim), 1.0, 1.0))
                for what, num, den, scale, limit in pairs:
                    r = h.paired_ratios(num, den, rounds, scale)
                    lines.append(verdict(f"{case}: {what}", r, limit))
    return lines


def open_variants(mf: Any, path: Path, x: np.ndarray, names: set[str]) -> tuple[Any, Any]:
    """The same rows as a prefix-blocked file (written once next to the ``.npy``, 64-column
    blocks) and as an in-RAM array, for the methods that need them; a NotAvailable reason
    where they cannot be made."""
    blocked: Any = NotAvailable("not built (mf_blocked not selected)")
    in_ram: Any = NotAvailable("not built (mf_in_ram not selected)")
    if mf is not None and "mf_blocked" in names:
        mfb = Path(path).with_suffix(".mfb")
        if not mfb.exists():
            print(f"writing {mfb} ...", flush=True)
            mf.save_prefix_blocked(mfb, x, block=64)
        blocked = mf.open_corpus(mfb)
    if "mf_in_ram" in names:
        try:
            h.need_memory(x.nbytes, "the in-RAM copy")
            in_ram = np.array(x)
        except NotAvailable as e:
            in_ram = e
    return blocked, in_ram


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    t_start = time.perf_counter()
    out_lines: list[str] = []

    def say(s: str = "") -> None:
        print(s, flush=True)
        out_lines.append(s)

    # Import everything first so threadpoolctl sees every BLAS.
    try:
        import matryo_fast as mf
    except ImportError as e:
        mf = None
        print(
            f"WARNING: matryo_fast is not importable ({e}); the first method that runs is the baseline",
            file=sys.stderr,
        )
    # simsimd before usearch: usearch loads numkong's extension with RTLD_GLOBAL, and numkong
    # exports functions under the same names as simsimd's own (parse_tensor, same_string), so
    # a simsimd loaded after it binds to numkong's and rejects every input ("Input tensors must
    # have matching datatypes"). Loaded first (Python dlopens with RTLD_NOW), it binds its own.
    for mod in ("simsimd", "torch", "faiss", "usearch.index", "numkong"):
        try:
            __import__(mod)
        except ImportError:
            pass
    thread_notes = set_threads(args.threads)

    path = h.ensure_corpus(args.data_dir, args.rows, args.cols, args.seed, log=print)
    x = np.load(path, mmap_mode="r")
    n = x.shape[0]
    env = h.environment(["numpy", "torch", "faiss", "usearch", "numkong", "simsimd", "matryo_fast"])
    if mf is not None:
        env["matryo_fast backends"] = str(mf.backends())
    env["threads"] = "; ".join(thread_notes)
    env["data"] = f"{path} ({n} x {args.cols} float32, {x.nbytes / 1e9:.2f} GB), {h.DATA_DESCRIPTION}"

    print("measuring bandwidth and sgemm rate ...", flush=True)
    if args.bandwidth_gbs is None:
        bw = h.measure_bandwidth(x, args.threads)
        bw_gbs, bw_how = bw.gbs, bw.how
    else:
        bw_gbs, bw_how = args.bandwidth_gbs, "given with --bandwidth-gbs"
    if x.nbytes < 128 * 2**20:
        bw_how += " (file smaller than 128 MiB: caches may inflate this)"
    if args.sgemm_gflops is None:
        sg = h.measure_sgemm()
        sg_gflops, sg_how = sg.gflops, sg.how
    else:
        sg_gflops, sg_how = args.sgemm_gflops, "given with --sgemm-gflops"
    env["bandwidth"] = f"{bw_gbs:.1f} GB/s: {bw_how}"
    env["sgemm"] = f"{sg_gflops:.0f} GFLOP/s: {sg_how}"

    say(
        f"## {env['date (UTC)']} UTC: N={n:,} x D={args.cols}, k={args.k}, "
        f"dims {args.dims}, batches {args.batches}, repeats {args.repeats}"
    )
    say()
    for key, val in env.items():
        say(f"- **{key}**: {val}")
    for line in METHOD_NOTES:
        say(
            line.replace("SLOW", f"{args.slow_s:g}")
            .replace("BUDGET", f"{args.budget_s:g}")
            .replace("PAUSE", f"{h.PAUSE_S:g}")
            .replace("FAST", f"{h.FAST_S:g}")
            .replace("MORE", f"{h.MORE_RUNS}")
            .replace("TOL", f"{args.tol:g}")
        )
    say()

    methods = [m for m in METHODS if m.name in args.methods]
    if mf is None or BASELINE not in args.methods:
        say(
            f"**WARNING: the baseline {BASELINE} is not running (matryo_fast missing or not "
            "selected); ratios and checks are against the first method that ran.**"
        )
        say()
    mf_corpus = mf.open_corpus(path) if mf is not None else None
    mf_blocked, in_ram = open_variants(mf, path, x, {m.name for m in methods})
    queries, _ = h.make_queries(x, max(args.batches), args.seed + 1)
    goals: list[str] = []
    failures = 0

    for dim in args.dims:
        t0 = time.perf_counter()
        oracle_idx, _ = h.exact_topk_f64(x, queries, dim, args.k)
        norms = h.prefix_norms(x, dim)
        prepared: Any = NotAvailable("not built (no selected method needs it)")
        if PREPARED_NEEDED & set(args.methods):
            try:
                h.need_memory(n * dim * 4, "the prepared copy")
                prepared = h.normalized_prefix_copy(x, dim, norms)
            except NotAvailable as e:
                prepared = e
        print(
            f"dim {dim}: float64 oracle, prefix norms and prepared copy in {time.perf_counter() - t0:.1f} s",
            flush=True,
        )
        for batch in args.batches:
            q = queries[:batch]
            ctx = Ctx(x, str(path), dim, args.k, batch, args.threads, mf_corpus, norms, prepared,
                      mf_blocked, in_ram)  # fmt: skip
            results = run_case(ctx, methods, q, args)
            base_name = next((nm for nm in [BASELINE, *results] if nm in results and results[nm][1]), None)
            rows, bad = table_rows(results, base_name, oracle_idx, ctx, q, args.tol)
            failures += bad
            notes, case_goals = floor_notes(results, ctx, args, bw_gbs, sg_gflops)
            goals += case_goals
            say(f"### dim {dim}, batch {batch}, k {args.k}")
            say()
            say(h.markdown_table(h.method_header("mf"), rows))
            say()
            for line in notes:
                say(line)
            say()
        del prepared

    say("### Goals (from the issue)")
    say()
    for line in goals or ["(matryo_fast did not run: no goal evaluated)"]:
        say(f"- {line}")
    if mf is not None and args.paired_rounds > 0:
        print("paired rounds ...", flush=True)
        say()
        say("### The issue's targets in paired rounds")
        say()
        say(" ".join((paired_goals.__doc__ or "").split("\n\n")[0].split()))
        say()
        usable = [None if isinstance(v, NotAvailable) else v for v in (mf_blocked, in_ram)]
        for line in paired_goals(mf, x, mf_corpus, *usable, queries, args):
            say(f"- {line}")
    say(f"- correctness: {'all checks ok' if not failures else f'**{failures} FAILED CHECK(S)**'}")
    say()
    say(
        f"Load average at end: {' '.join(f'{v:.2f}' for v in os.getloadavg())}. "
        f"Total benchmark time {time.perf_counter() - t_start:.0f} s."
    )

    if args.out:
        h.write_results(args.out, "\n".join(out_lines))
        print(f"\nwrote {args.out}", flush=True)
    if failures:
        print(f"\n!!! {failures} CHECK(S) FAILED: see the check column above !!!", file=sys.stderr)
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
