"""Shared helpers for the end-to-end Python benchmarks in ``benches/`` (not part of ``make test``).

Used by ``bench_topk.py`` and meant for ``bench_funnel.py``:

* :func:`ensure_corpus` / :func:`make_queries`: the seeded synthetic Matryoshka-like corpus, a
  ``.npy`` file written in chunks (never 2x RAM) and reused when present, and queries near it.
* :func:`time_call`: a pause, one untimed warm-up (with peak anonymous memory sampled by a
  separate process), then the median and min of ``time.perf_counter`` over repeats, fewer for
  slow calls and more for fast ones; :func:`time_rounds` does the same for several methods
  with their runs interleaved in rounds.
* :func:`exact_topk_f64`, :func:`cosine_f64`, :func:`check_topk`: a float64 oracle and a top-k
  comparison that allows swaps only among near-equal scores.
* :func:`measure_bandwidth`, :func:`measure_sgemm`: the floors' denominators, measured here.
* :func:`environment`, :func:`markdown_table`, :func:`method_header` / :func:`method_row` (the
  table of methods side by side), :func:`write_results`: reporting.

The benchmarks put ``benches/`` on ``sys.path`` by being run as scripts, so ``import _harness``.
"""

from __future__ import annotations

import contextlib
import gc
import math
import os
import platform
import statistics
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from matryo_fast._reference import normalised_prefix
from matryo_fast._timing import interleaved_times

F32 = npt.NDArray[np.float32]
I64 = npt.NDArray[np.int64]

# --------------------------------------------------------------------------------------------
# Synthetic data
# --------------------------------------------------------------------------------------------

GENERATOR = "mrl-clustered-v1"
N_CLUSTERS = 1000
CHUNK_ROWS = 65536  # fixed: the data depend on (seed, chunk index), so it must not change
CLUSTER_NOISE = 0.9
MEAN_SCALE = 0.4
DUPLICATE_FRACTION = 0.001
QUERY_NOISE = 0.3

DATA_DESCRIPTION = (
    f"synthetic Matryoshka-like corpus `{GENERATOR}`: row = (m + c[z] + {CLUSTER_NOISE}*e) * s, "
    f"with {N_CLUSTERS} cluster centres c ~ N(0, I) drawn with Zipf(0.5)-like sizes, a shared "
    f"anisotropic mean m ~ N(0, {MEAN_SCALE}^2 I), noise e ~ N(0, I), and per-dimension scale "
    "s_j = sqrt(1/(1 + j/64)) (energy decays along the dims, as in Matryoshka embeddings); "
    f"{DUPLICATE_FRACTION:.1%} of the rows are exact duplicates of an earlier row (ties). "
    f"Queries: a random corpus row + {QUERY_NOISE}*s*N(0, I) noise (never a corpus row itself). "
    "float32, seeded, written in chunks with np.lib.format.open_memmap and read memory-mapped."
)


def dim_scale(cols: int) -> npt.NDArray[np.float64]:
    """Per-dimension scale ``sqrt(1 / (1 + j/64))``."""
    return np.sqrt(1.0 / (1.0 + np.arange(cols) / 64.0))


def corpus_file(data_dir: str | os.PathLike[str], rows: int, cols: int, seed: int) -> Path:
    """The data file's path: generator version, shape and seed are in the name."""
    return Path(data_dir) / f"{GENERATOR}_n{rows}_d{cols}_seed{seed}.npy"


def _valid_file(path: Path, rows: int, cols: int) -> bool:
    try:
        arr = np.load(path, mmap_mode="r")
    except (OSError, ValueError):
        return False
    return bool(arr.shape == (rows, cols) and arr.dtype == np.float32 and arr.flags.c_contiguous)


def ensure_corpus(
    data_dir: str | os.PathLike[str],
    rows: int,
    cols: int,
    seed: int,
    *,
    log: Callable[[str], None] = print,
) -> Path:
    """Create the seeded corpus file once (chunked, atomic rename) and return its path.

    An existing file with the right name, shape and dtype is reused as is.
    """
    path = corpus_file(data_dir, rows, cols, seed)
    if path.exists():
        if _valid_file(path, rows, cols):
            log(f"data: reusing {path}")
            return path
        log(f"data: {path} exists but has the wrong shape/dtype: regenerating")
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".partial")
    t0 = time.perf_counter()
    master = np.random.default_rng([seed, 0])
    scale = dim_scale(cols).astype(np.float32)
    mean = (MEAN_SCALE * master.standard_normal(cols)).astype(np.float32)
    centres = master.standard_normal((N_CLUSTERS, cols)).astype(np.float32)
    weights = 1.0 / np.sqrt(1.0 + np.arange(N_CLUSTERS))
    probs = weights / weights.sum()
    out = np.lib.format.open_memmap(tmp, mode="w+", dtype=np.float32, shape=(rows, cols))
    for chunk, start in enumerate(range(0, rows, CHUNK_ROWS)):
        rng = np.random.default_rng([seed, 1, chunk])
        n = min(CHUNK_ROWS, rows - start)
        z = rng.choice(N_CLUSTERS, size=n, p=probs)
        block = rng.standard_normal((n, cols), dtype=np.float32)
        block *= np.float32(CLUSTER_NOISE)
        block += centres[z]
        block += mean
        block *= scale
        n_dup = int(n * DUPLICATE_FRACTION)
        if n_dup and n > 1:
            dst = np.sort(rng.choice(np.arange(1, n), size=n_dup, replace=False))
            src = (rng.random(n_dup) * dst).astype(np.int64)  # src < dst: copy final rows
            for d, s in zip(dst.tolist(), src.tolist(), strict=True):
                block[d] = block[s]
        out[start : start + n] = block
    out.flush()
    del out
    os.replace(tmp, path)
    gb = rows * cols * 4 / 1e9
    log(f"data: wrote {path} ({gb:.2f} GB) in {time.perf_counter() - t0:.1f} s")
    return path


def make_queries(corpus: F32, n: int, seed: int) -> tuple[F32, I64]:
    """``n`` seeded queries, each a corpus row plus scaled noise; returns (queries, source rows)."""
    rows, cols = corpus.shape
    rng = np.random.default_rng([seed, 2])
    src = np.sort(rng.choice(rows, size=min(n, rows), replace=False))
    base = np.asarray(corpus[src], dtype=np.float32)
    noise = rng.standard_normal(base.shape, dtype=np.float32) * dim_scale(cols).astype(np.float32)
    q = base + np.float32(QUERY_NOISE) * noise
    perm = rng.permutation(len(src))
    return np.ascontiguousarray(q[perm]), src[perm].astype(np.int64)


def prefix_norms(corpus: F32, dim: int, chunk: int = 65536) -> F32:
    """float32 L2 norms of each row's first ``dim`` columns, chunked (no N x dim temporary)."""
    out = np.empty(corpus.shape[0], dtype=np.float32)
    for s in range(0, corpus.shape[0], chunk):
        c = corpus[s : s + chunk, :dim]
        out[s : s + chunk] = np.sqrt(np.einsum("ij,ij->i", c, c))
    return out


def normalized_prefix_copy(corpus: F32, dim: int, norms: F32, chunk: int = 65536) -> F32:
    """A contiguous ``(N, dim)`` copy of the prefixes, each row divided by its prefix norm."""
    out = np.empty((corpus.shape[0], dim), dtype=np.float32)
    safe = np.where(norms > 0, norms, np.float32(1.0))
    for s in range(0, corpus.shape[0], chunk):
        np.divide(corpus[s : s + chunk, :dim], safe[s : s + chunk, None], out=out[s : s + chunk])
    return out


def normalize_rows(q: F32) -> F32:
    """Rows scaled to unit L2 norm (zero rows stay zero), as float32."""
    return np.ascontiguousarray(normalised_prefix(q, q.shape[1]), dtype=np.float32)


def topk_from_scores(scores: F32, k: int) -> tuple[I64, F32]:
    """Top-k per row of a ``(B, N)`` score matrix, sorted by (score desc, index asc)."""
    n = scores.shape[1]
    k = min(k, n)
    part = np.argpartition(scores, n - k, axis=1)[:, n - k :]
    sc = np.take_along_axis(scores, part, axis=1)
    order = np.lexsort((part, -sc), axis=-1)
    return np.take_along_axis(part, order, axis=1).astype(np.int64), np.take_along_axis(sc, order, axis=1)


# --------------------------------------------------------------------------------------------
# Timing and memory
# --------------------------------------------------------------------------------------------

_SAMPLER = r"""
import select, sys
path = "/proc/%s/status" % sys.argv[1]
interval = float(sys.argv[2])
f = open(path, "rb", buffering=0)
def anon():
    f.seek(0)
    for line in f.read().split(b"\n"):
        if line.startswith(b"RssAnon:"):
            return int(line.split()[1])
    return 0
peak = anon()
sys.stdout.write("ready\n"); sys.stdout.flush()
while True:
    ready, _, _ = select.select([sys.stdin], [], [], interval)
    v = anon()
    if v > peak:
        peak = v
    if ready:
        sys.stdin.readline()
        sys.stdout.write("%d\n" % peak); sys.stdout.flush()
        break
"""


def rss_anon_kib(pid: int | str = "self") -> int:
    """``RssAnon`` of a process in KiB (anonymous memory: heap, not the mapped file's pages)."""
    with open(f"/proc/{pid}/status", "rb") as f:
        for line in f:
            if line.startswith(b"RssAnon:"):
                return int(line.split()[1])
    return 0


class AnonPeak:
    """Peak ``RssAnon`` growth during a ``with`` block, sampled every ~1 ms by a separate process.

    A separate process keeps sampling while this one holds the GIL. Spikes shorter than the
    interval can be missed, so the number is a lower bound on the true peak.
    """

    def __init__(self, interval_s: float = 0.001) -> None:
        self.interval_s = interval_s
        self.baseline_kib = 0
        self.peak_kib = 0
        self._proc: subprocess.Popen[str] | None = None

    @property
    def delta_mb(self) -> float:
        """Peak growth in MB (1e6 bytes)."""
        return max(0, self.peak_kib - self.baseline_kib) * 1024 / 1e6

    def __enter__(self) -> AnonPeak:
        self._proc = subprocess.Popen(
            [sys.executable, "-c", _SAMPLER, str(os.getpid()), str(self.interval_s)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )
        assert self._proc.stdout is not None
        self._proc.stdout.readline()  # "ready"
        gc.collect()
        self.baseline_kib = rss_anon_kib()
        return self

    def __exit__(self, *exc: object) -> None:
        proc = self._proc
        assert proc is not None and proc.stdin is not None and proc.stdout is not None
        proc.stdin.write("stop\n")
        proc.stdin.flush()
        line = proc.stdout.readline()
        proc.wait(timeout=10)
        self.peak_kib = max(int(line or 0), rss_anon_kib())


@dataclass
class Timing:
    """Result of :func:`time_call` or :func:`time_rounds` (seconds, MB)."""

    median_s: float
    min_s: float
    runs: int
    warmup_s: float
    peak_anon_mb: float | None
    reduced: bool  # fewer runs than asked, because one run was slow
    result: Any = field(repr=False, default=None)
    times_s: list[float] = field(default_factory=list)


PAUSE_S = 0.5
"""Sleep before a method's warm-up: a BLAS or OpenMP pool keeps its idle threads spinning for a
while after a call (OpenBLAS about 0.1 s), which would take CPU time from the next method."""
FAST_S = 2.0
"""A method's timed runs take at least about this long: a fast call gets up to
``MORE_RUNS x repeats`` runs, so that its median is not decided by a few runs on a noisy
machine."""
MORE_RUNS = 4


def time_call(
    fn: Callable[[], Any],
    repeats: int,
    *,
    slow_s: float = 2.0,
    budget_s: float = 10.0,
    memory: bool = True,
    pause_s: float = PAUSE_S,
) -> Timing:
    """Median and min wall time of ``fn()`` after a ``pause_s`` sleep and one untimed warm-up.

    The warm-up also measures the peak anonymous-memory growth (``memory=True``). When the
    warm-up takes longer than ``slow_s``, at most ``budget_s / warmup`` timed runs are made
    (at least one); ``Timing.reduced`` says so. A fast call gets ``FAST_S / warmup`` runs
    instead of ``repeats`` when that is more, at most ``MORE_RUNS x repeats``.
    """
    got = time_rounds({"": fn}, repeats, slow_s=slow_s, budget_s=budget_s, memory=memory, pause_s=pause_s)[""]
    if isinstance(got, BaseException):
        raise got
    return got


def time_rounds(
    fns: dict[str, Callable[[], Any]],
    repeats: int,
    *,
    slow_s: float = 2.0,
    budget_s: float = 10.0,
    memory: bool = True,
    pause_s: float = PAUSE_S,
) -> dict[str, Timing | Exception]:
    """:func:`time_call` for several methods at once, their timed runs interleaved.

    Each method is warmed up in turn (a ``pause_s`` sleep, one untimed call) and gets its
    number of runs as :func:`time_call` decides. The runs are then made in ``repeats`` rounds;
    in each round every method makes its share of its runs, back to back (spread evenly, a
    slow method's few runs in the first rounds), so a noisy spell of a shared machine falls on
    all methods alike instead of on the one being timed then. A ``pause_s`` sleep comes before
    each method's turn (one pool's spinning threads would tax the next method), not between
    the runs of one turn. A method that raises gets its exception as its result and is left
    out of the later rounds.
    """
    got: dict[str, Timing | Exception] = {}
    plan: dict[str, tuple[int, float, float | None, Any]] = {}
    last = None  # the method that ran last
    for name, fn in fns.items():
        time.sleep(pause_s)
        gc.collect()
        last = name
        probe = AnonPeak() if memory else None
        try:
            with probe or contextlib.nullcontext():
                t0 = time.perf_counter()
                result = fn()
                warm = time.perf_counter() - t0
        except Exception as e:  # noqa: BLE001 - a failing method is reported by the caller
            got[name] = e
            continue
        runs = repeats
        if warm > slow_s:
            runs = max(1, min(repeats, int(budget_s // warm)))
        elif repeats > 0:
            runs = max(repeats, min(MORE_RUNS * repeats, int(FAST_S / max(warm, 1e-9))))
        plan[name] = (runs, warm, probe.delta_mb if probe else None, result)
    last_turn = [last]

    def before_turn(name: str) -> None:
        if last_turn[0] != name:
            time.sleep(pause_s)
        last_turn[0] = name

    timed = interleaved_times(
        {name: fns[name] for name in plan},
        {name: p[0] for name, p in plan.items()},
        repeats,
        before_turn=before_turn,
        before_run=gc.collect,
    )
    for name, (runs, warm, peak, result) in plan.items():
        ts = timed[name]
        if isinstance(ts, Exception):
            got[name] = ts
            continue
        got[name] = Timing(
            median_s=statistics.median(ts),
            min_s=min(ts),
            runs=len(ts),
            warmup_s=warm,
            peak_anon_mb=peak,
            reduced=runs < repeats,
            result=result,
            times_s=ts,
        )
    return {name: got[name] for name in fns}


# --------------------------------------------------------------------------------------------
# Methods: the one runner every benchmark times its peers with
# --------------------------------------------------------------------------------------------


class NotAvailable(Exception):
    """A method cannot run this case; the message says why."""


def need_memory(nbytes: float, what: str) -> None:
    """Raises :class:`NotAvailable` unless ``nbytes`` (with a 25% margin) are available."""
    import psutil

    avail = psutil.virtual_memory().available
    if nbytes * 1.25 > avail:
        raise NotAvailable(f"{what} needs ~{nbytes / 1e9:.1f} GB, only {avail / 1e9:.1f} GB available")


def not_run(e: Exception) -> str:
    """Why a method has no timing, for its table row."""
    if isinstance(e, NotAvailable):
        return f"n/a: {e}"
    msg = str(e).splitlines()[0][:100] if str(e) else ""
    return f"n/a: {type(e).__name__}: {msg}"


@dataclass
class MethodResult:
    """One method's outcome in :func:`run_methods`: its timing, or why there is none."""

    timing: Timing | None
    why: str = ""


def run_methods(
    setups: dict[str, Callable[[], Callable[[], Any]]],
    repeats: int,
    *,
    label: str = "",
    slow_s: float = 2.0,
    budget_s: float = 10.0,
    memory: bool = True,
    pause_s: float = PAUSE_S,
) -> dict[str, MethodResult]:
    """Sets up every method (``setups[name]()`` returns the call to time; a setup that raises
    is reported, not fatal), times the calls together in interleaved rounds
    (:func:`time_rounds`), prints each median after ``label``, and returns the results in the
    order of ``setups``."""
    results: dict[str, MethodResult] = {}
    calls: dict[str, Callable[[], Any]] = {}
    for name, setup in setups.items():
        try:
            calls[name] = setup()
        except Exception as e:  # noqa: BLE001 - a peer failing is reported, not fatal
            results[name] = MethodResult(None, not_run(e))
    timed = time_rounds(calls, repeats, slow_s=slow_s, budget_s=budget_s, memory=memory, pause_s=pause_s)
    for name, got in timed.items():
        results[name] = MethodResult(None, not_run(got)) if isinstance(got, Exception) else MethodResult(got)
    for name in setups:
        r = results[name]
        shown = f"{fmt_ms(r.timing.median_s)} ms" if r.timing else r.why
        print(f"  {label}{name}: {shown}", flush=True)
    return {name: results[name] for name in setups}


# --------------------------------------------------------------------------------------------
# Floors
# --------------------------------------------------------------------------------------------


@dataclass
class Bandwidth:
    gbs: float  # the best of the methods below, used for the floor
    by_method: dict[str, float]
    nbytes: int
    how: str


def _blocks(n: int, threads: int) -> list[tuple[int, int]]:
    step = math.ceil(n / (threads * 4))
    return [(s, min(s + step, n)) for s in range(0, n, step)]


def or_pass(bits: npt.NDArray[np.uint32], ex: ThreadPoolExecutor, threads: int) -> Callable[[], object]:
    """A read of every byte of ``bits`` (numpy's bitwise-OR reduction, which releases the GIL)
    split into ``threads`` x 4 blocks along the first axis, run on ``ex``."""
    blocks = _blocks(bits.shape[0], threads)
    return lambda: list(ex.map(lambda b: np.bitwise_or.reduce(bits[b[0] : b[1]], axis=None), blocks))


def paired_ratios(
    num: Callable[[], object], den: Callable[[], object], rounds: int, den_scale: float = 1.0
) -> npt.NDArray[np.float64]:
    """Per round, the time of ``num()`` over ``den_scale`` times the time of ``den()``: after a
    warm-up of each, ``interleaved_times`` runs the two back to back in each of ``rounds``
    rounds, so that both see the same spell of a shared machine. (A floor computed from a probe
    is the probe's call, scaled.)"""
    num()
    den()
    t = interleaved_times({"num": num, "den": den}, {"num": rounds, "den": rounds}, rounds)
    a, b = t["num"], t["den"]
    if isinstance(a, Exception):
        raise a
    if isinstance(b, Exception):
        raise b
    return np.array(a) / (np.array(b) * den_scale)


def measure_bandwidth(corpus: F32, threads: int, repeats: int = 3) -> Bandwidth:
    """Read bandwidth over the whole (page-cached) memory-mapped corpus, in GB/s (1e9 B/s).

    Several honest read-every-byte passes, best of ``repeats`` each; the largest is used (the
    larger the bandwidth, the lower and more demanding the floor). Thread-pool passes split the
    rows in ``threads`` x 4 blocks (numpy releases the GIL in reductions): ``sum`` and ``max``
    (float32 reductions) and ``or`` (bitwise OR of the bits as uint32, the cheapest per byte);
    ``sgemv`` is ``corpus @ ones(D)`` through numpy's BLAS with its own threads; ``torch-amax``
    is torch's threaded reduction, when torch is installed. An untimed first pass of each
    faults the file into the page cache and this mapping.
    """
    arr = np.asarray(corpus)
    bits = arr.view(np.uint32)
    nbytes = arr.nbytes
    ones = np.ones(arr.shape[1], dtype=np.float32)
    ex = ThreadPoolExecutor(threads)

    def pooled(f: Callable[[int, int], object]) -> Callable[[], object]:
        return lambda: list(ex.map(lambda b: f(*b), _blocks(arr.shape[0], threads)))

    passes: dict[str, Callable[[], object]] = {
        "threaded sum": pooled(lambda a, b: np.add.reduce(arr[a:b], axis=None)),
        "threaded max": pooled(lambda a, b: np.maximum.reduce(arr[a:b], axis=None)),
        "threaded or": or_pass(bits, ex, threads),
        "sgemv": lambda: arr @ ones,
    }
    try:
        import warnings

        import torch

        with warnings.catch_warnings():
            warnings.simplefilter("ignore", UserWarning)  # read-only memmap: never written
            t = torch.from_numpy(arr)
        passes["torch-amax"] = lambda: t.amax()
    except ImportError:
        pass
    results: dict[str, float] = {}
    with ex:
        for name, f in passes.items():
            results[name] = nbytes / best_seconds(f, repeats) / 1e9
    how = (
        f"best of {repeats} full passes over the page-cached {nbytes / 1e9:.2f} GB memmap "
        f"({threads} threads): "
        + ", ".join(f"{k} {v:.1f}" for k, v in results.items())
        + " GB/s; the largest is used"
    )
    return Bandwidth(max(results.values()), results, nbytes, how)


def best_seconds(f: Callable[[], object], repeats: int) -> float:
    """The fastest of ``repeats`` timed calls of ``f``, after one untimed warm-up call."""
    f()
    best = math.inf
    for _ in range(repeats):
        t0 = time.perf_counter()
        f()
        best = min(best, time.perf_counter() - t0)
    return best


@dataclass
class Sgemm:
    gflops: float
    how: str


def sgemm_product(size: int = 2048) -> Callable[[], object]:
    """One numpy float32 matmul of two ``size``-square matrices (made once, here) per call:
    ``2 * size**3`` flops."""
    rng = np.random.default_rng(0)
    a = rng.standard_normal((size, size), dtype=np.float32)
    b = rng.standard_normal((size, size), dtype=np.float32)
    return lambda: a @ b


def measure_sgemm(size: int = 2048, repeats: int = 3) -> Sgemm:
    """Peak float32 matmul rate of numpy's BLAS on a ``size``-square product, GFLOP/s."""
    gflops = 2 * size**3 / best_seconds(sgemm_product(size), repeats) / 1e9
    return Sgemm(gflops, f"numpy float32 {size}x{size} @ {size}x{size}, best of {repeats}")


# --------------------------------------------------------------------------------------------
# Correctness
# --------------------------------------------------------------------------------------------


def exact_topk_f64(
    corpus: F32, queries: F32, dim: int, k: int, chunk: int = 16384
) -> tuple[I64, npt.NDArray[np.float64]]:
    """Exact top-k in float64 (cosine of the first ``dim`` columns; zero norm scores 0).

    Sorted by (score desc, index asc). Chunked: never holds more than ``chunk`` rows in float64.
    """
    qn = normalised_prefix(queries, dim)
    b = qn.shape[0]
    best_s = np.empty((b, 0))
    best_i = np.empty((b, 0), dtype=np.int64)
    for s in range(0, corpus.shape[0], chunk):
        c = np.asarray(corpus[s : s + chunk, :dim], dtype=np.float64)
        norms = np.sqrt(np.einsum("ij,ij->i", c, c))
        inv = np.where(norms > 0, 1 / np.where(norms > 0, norms, 1), 0)
        sc = np.clip((qn @ c.T) * inv, -1, 1)
        cat_s = np.hstack([best_s, sc])
        cat_i = np.hstack([best_i, np.broadcast_to(np.arange(s, s + c.shape[0]), sc.shape)])
        kk = min(k, cat_s.shape[1])
        part = np.argpartition(-cat_s, kk - 1, axis=1)[:, :kk]
        best_s = np.take_along_axis(cat_s, part, axis=1)
        best_i = np.take_along_axis(cat_i, part, axis=1)
    order = np.lexsort((best_i, -best_s), axis=-1)
    return np.take_along_axis(best_i, order, axis=1), np.take_along_axis(best_s, order, axis=1)


def cosine_f64(corpus: F32, query: F32, dim: int, idx: Sequence[int] | I64) -> npt.NDArray[np.float64]:
    """float64 cosine of ``query[:dim]`` with the listed rows' prefixes (zero norm scores 0)."""
    idx = np.asarray(idx, dtype=np.int64)
    order = np.argsort(idx)
    rows = np.asarray(corpus[idx[order], :dim], dtype=np.float64)
    q = np.asarray(query[:dim], dtype=np.float64)
    denom = np.linalg.norm(rows, axis=1) * np.linalg.norm(q)
    s = np.where(denom > 0, rows @ q / np.where(denom > 0, denom, 1), 0.0)
    out = np.empty_like(s)
    out[order] = np.clip(s, -1, 1)
    return out


@dataclass
class Check:
    bad_queries: int
    queries: int
    tie_swaps: int
    worst_gap: float
    detail: str = ""

    @property
    def ok(self) -> bool:
        return self.bad_queries == 0

    def __str__(self) -> str:
        if self.ok:
            return (
                "ok"
                if not self.tie_swaps
                else f"ok ({self.tie_swaps} tie swap{'s' if self.tie_swaps > 1 else ''})"
            )
        return (
            f"**MISMATCH** {self.bad_queries}/{self.queries} queries "
            f"(max score gap {self.worst_gap:.1e}){' ' + self.detail if self.detail else ''}"
        )


def check_topk(
    ref: I64,
    got: I64,
    corpus: F32,
    queries: F32,
    dim: int,
    *,
    tol: float = 1e-5,
) -> Check:
    """Compare top-k index sets per query; a difference is allowed only as a near-tie swap.

    For each query whose sets differ, every index in the symmetric difference must have a
    float64 cosine within ``tol`` of the reference set's k-th (lowest) float64 score: the two
    results then differ only by which of several (near-)equal scores made the cut. Duplicates,
    negative or out-of-range indices, or a wrong count are mismatches.
    """
    ref = np.asarray(ref).reshape(len(queries), -1)
    got = np.asarray(got).reshape(len(queries), -1)
    n = corpus.shape[0]
    bad = swaps = 0
    worst = 0.0
    detail = ""
    for b in range(ref.shape[0]):
        g = got[b].tolist()
        r = set(ref[b].tolist())
        gs = set(g)
        if len(gs) != len(g) or len(g) != len(r) or min(g) < 0 or max(g) >= n:
            bad += 1
            detail = detail or f"(query {b}: invalid indices {g})"
            continue
        if gs == r:
            continue
        diff = sorted(gs ^ r)
        boundary = cosine_f64(corpus, queries[b], dim, sorted(r)).min()
        gaps = np.abs(cosine_f64(corpus, queries[b], dim, diff) - boundary)
        if gaps.max() <= tol:
            swaps += len(gs - r)
        else:
            bad += 1
            worst = max(worst, float(gaps.max()))
            if not detail:
                detail = f"(first: query {b}, only-here {sorted(gs - r)}, missing {sorted(r - gs)})"
    return Check(bad, ref.shape[0], swaps, worst, detail)


def check_contract(idx: I64, scores: F32, corpus: F32, queries: F32, dim: int, *, tol: float = 1e-5) -> str:
    """The numeric contract of one result: order (score desc, ties index asc) and score accuracy."""
    idx = np.asarray(idx).reshape(len(queries), -1)
    scores = np.asarray(scores).reshape(len(queries), -1)
    problems = []
    if scores.dtype != np.float32:
        problems.append(f"scores dtype {scores.dtype}")
    if idx.dtype != np.int64:
        problems.append(f"indices dtype {idx.dtype}")
    s = scores.astype(np.float64)
    desc = np.diff(s, axis=1)
    if (desc > 0).any():
        problems.append(f"not sorted by score ({int((desc > 0).sum())} inversions)")
    tie = desc == 0
    if (tie & (np.diff(idx, axis=1) < 0)).any():
        problems.append("equal scores not in ascending index order")
    err = max(
        float(np.abs(cosine_f64(corpus, queries[b], dim, idx[b]) - s[b]).max()) for b in range(len(queries))
    )
    if err > tol:
        problems.append(f"max |score - float64 cosine| = {err:.1e} > {tol:.0e}")
    return ("ok" if not problems else "**" + "; ".join(problems) + "**") + (f" (max |score - f64| {err:.1e})")


# --------------------------------------------------------------------------------------------
# Environment and reporting
# --------------------------------------------------------------------------------------------

BLAS_ENV = ("OPENBLAS_CORETYPE", "OPENBLAS_L2_SIZE", "OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS")


def cpu_model() -> str:
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def _version(mod: str) -> str:
    try:
        m = __import__(mod)
        return str(getattr(m, "__version__", "?"))
    except Exception as e:  # noqa: BLE001 - report, never fail
        return f"not importable ({type(e).__name__})"


def blas_report() -> list[str]:
    """One line per BLAS/OpenMP library loaded in this process (threadpoolctl)."""
    try:
        from threadpoolctl import threadpool_info
    except ImportError:
        return ["threadpoolctl not installed"]
    lines = []
    for info in threadpool_info():
        lines.append(
            f"{info.get('internal_api')} {info.get('version')} "
            f"arch={info.get('architecture', '-')} threads={info.get('num_threads')} "
            f"({Path(info.get('filepath', '?')).name})"
        )
    return lines


def numpy_blas_kernel() -> str:
    """The BLAS library and kernel (architecture) that numpy itself uses."""
    try:
        from threadpoolctl import threadpool_info
    except ImportError:
        return "unknown (threadpoolctl missing)"
    npdir = Path(np.__file__).parent.parent
    for info in threadpool_info():
        if info.get("user_api") == "blas" and (
            str(npdir / "numpy.libs") in info.get("filepath", "") or "numpy" in info.get("filepath", "")
        ):
            return (
                f"{info.get('internal_api')} {info.get('version')}, "
                f"kernel {info.get('architecture')}, {info.get('num_threads')} threads"
            )
    return "unknown"


def environment(modules: Sequence[str]) -> dict[str, str]:
    import psutil

    env = {
        "date (UTC)": datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M:%S"),
        "machine": f"{cpu_model()}; {os.cpu_count()} logical CPUs "
        f"({len(os.sched_getaffinity(0))} usable); "
        f"{psutil.virtual_memory().total / 2**30:.1f} GiB RAM; {platform.platform()}",
        "load average at start": " ".join(f"{x:.2f}" for x in os.getloadavg()),
        "python": sys.version.split()[0],
        "versions": ", ".join(f"{m} {_version(m)}" for m in modules),
        "numpy BLAS": numpy_blas_kernel(),
        "BLAS env vars": ", ".join(
            f"{v}={os.environ[v]!r}" if v in os.environ else f"{v} unset" for v in BLAS_ENV
        ),
        "command": " ".join([Path(sys.executable).name, *sys.argv]),
    }
    return env


def fmt_ms(seconds: float | None) -> str:
    if seconds is None:
        return "n/a"
    ms = seconds * 1e3
    return f"{ms:.0f}" if ms >= 100 else f"{ms:.1f}" if ms >= 10 else f"{ms:.2f}"


def markdown_table(header: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    """A pipe table, columns padded for reading in a terminal."""
    cols = list(zip(*([list(header)] + [list(r) for r in rows]), strict=True))
    widths = [max(len(str(c)) for c in col) for col in cols]
    right = [i for i, h in enumerate(header) if h.endswith(("ms", "MB", "x mf", "runs"))]

    def line(cells: Sequence[str]) -> str:
        out = []
        for i, c in enumerate(cells):
            out.append(str(c).rjust(widths[i]) if i in right else str(c).ljust(widths[i]))
        return "| " + " | ".join(out) + " |"

    sep = (
        "|"
        + "|".join(("-" * (w + 1) + ":") if i in right else ("-" * (w + 2)) for i, w in enumerate(widths))
        + "|"
    )
    return "\n".join([line(header), sep, *(line(r) for r in rows)])


def method_header(relative_to: str) -> list[str]:
    """The columns of a table of methods side by side; times are also given relative to the
    method ``relative_to``."""
    times = ["median ms", "min ms", "runs", f"x {relative_to}", "peak anon MB"]
    return ["method", "what", "reads", *times, "check"]


def method_row(name: str, label: str, reads: str, t: Timing | None, ratio: str, check: str) -> list[str]:
    """One method's row of that table; ``t`` is ``None`` for a method that did not run, and
    ``check`` then says why."""
    if t is None:
        return [name, label, reads, "n/a", "", "", "", "", check]
    runs = f"{t.runs}{'*' if t.reduced else ''}"
    peak = "" if t.peak_anon_mb is None else f"{t.peak_anon_mb:.1f}"
    return [name, label, reads, fmt_ms(t.median_s), fmt_ms(t.min_s), runs, ratio, peak, check]


RESULTS_TITLE = "# matryo-fast benchmark results"
RESULTS_INTRO = (
    "The latest run of each benchmark, written by the benchmark itself: a run replaces its own "
    "section (each begins with an HTML comment naming its benchmark) and leaves the others as they "
    "are. Older runs are in git history. The machines are shared and noisy: compare methods within one "
    "section (they run side by side in one process), not across sections."
)
_MARK = "<!-- bench: "


def _split_sections(text: str) -> tuple[str, dict[str, str]]:
    """Splits a RESULTS.md into its head and its ``{name: section}`` in file order."""
    head, *parts = ("\n" + text).split("\n" + _MARK)
    sections = {}
    for part in parts:
        name, _, body = part.partition(" -->\n")
        sections[name.strip()] = body.strip()
    return head, sections


def write_results(
    path: str | os.PathLike[str],
    section: str,
    *,
    name: str | None = None,
    title: str = RESULTS_TITLE,
) -> None:
    """Puts ``section`` (markdown starting with ``## ...``) into ``path`` as benchmark ``name``'s
    latest run, replacing that benchmark's previous section (``name`` defaults to the script's
    file name, e.g. ``bench_topk``). The file is written aside and renamed into place.
    """
    key = name or Path(sys.argv[0]).stem
    p = Path(path)
    _, sections = _split_sections(p.read_text() if p.exists() else "")
    sections[key] = section.strip()
    body = "\n\n".join(f"{_MARK}{k} -->\n{v}" for k, v in sections.items())
    p.parent.mkdir(parents=True, exist_ok=True)
    tmp = p.with_name(f".{p.name}.partial")
    tmp.write_text(f"{title}\n\n{RESULTS_INTRO}\n\n{body}\n")
    os.replace(tmp, p)
