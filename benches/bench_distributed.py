"""Scale-out overhead: one file vs the same rows in shards, searched locally and by Ray actors.

Three ways to search the same N x D rows, side by side in one process, runs interleaved
(``_harness.run_methods``), batch 1 and 64:

* ``one file``: ``mf.topk`` / ``mf.funnel`` on one mapped ``.npy`` file;
* ``sharded``: the same rows in ``--shards`` shard files, ``mf.open_corpus(directory)`` (a
  thread pool over the shards and an exact merge);
* ``ray``: ``matryo_fast.distributed.connect(directory)`` on a Ray instance started here on
  this machine, bound to 127.0.0.1 (one node: one actor serving every shard, so each search
  is one actor call that runs every stage and merge in the actor);
* ``ray per stage``: the same, but searched as when the shards are spread over several actors
  (one round trip per funnel stage, the driver merging each stage's answers).

The same again on a small corpus (``--probe-rows``, 0 to skip), where the search is cheap and
the difference between ``ray`` and ``sharded`` is Ray's fixed cost per call. For a quick run at
small N only: ``--rows 4000 --probe-rows 0``.

Every method's result is checked bitwise against the one file's. Also measured: the exact merge
alone (``matryo_fast.sharded.merge``) for many shards, and the scan bandwidth of one file,
which the scaling model in ``docs/distributed.md`` uses. Not part of ``make test``; ``make
bench-distributed`` runs it and writes its section into ``benches/RESULTS.md``.
"""

from __future__ import annotations

import argparse
import math
import os
import time
from pathlib import Path
from typing import Any

import _harness as h
import numpy as np

# Every Ray node binds the loopback address; Ray reads this when it is imported.
os.environ["RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER"] = "0"

import matryo_fast as mf  # noqa: E402
from matryo_fast import distributed  # noqa: E402
from matryo_fast.manifest import MANIFEST, Manifest  # noqa: E402
from matryo_fast.sharded import merge  # noqa: E402


def ensure_shards(path: Path, directory: Path, shards: int) -> Path:
    """The rows of ``path`` in ``shards`` shard files under ``directory`` (reused when present)."""
    x = np.load(path, mmap_mode="r")
    if (directory / MANIFEST).exists() and Manifest.read(directory).rows == len(x):
        print(f"data: reusing {directory}")
        return directory
    per = math.ceil(len(x) / shards)
    t0 = time.perf_counter()
    with mf.ShardedCorpusWriter(directory, dim=x.shape[1], rows_per_shard=per) as w:
        for start in range(0, len(x), 65536):
            w.append(x[start : start + 65536])
    print(f"data: wrote {shards} shards to {directory} in {time.perf_counter() - t0:.1f} s")
    return directory


def measure(
    path: Path, sdir: Path, searches: dict[str, Any], queries: np.ndarray, batches: list[int], repeats: int
) -> tuple[list[list[str]], dict[int, float]]:
    """Times every search on one file, local shards and Ray actors (interleaved), checks each
    result bitwise against the one file's; returns table rows and the one file's topk ms."""
    one, local = mf.open_corpus(path), mf.open_corpus(sdir)
    remote, per_stage = distributed.connect(sdir), distributed.connect(sdir)
    # As when no actor serves every shard: the driver runs the stages, one actor call each.
    per_stage._whole = lambda *args: None  # type: ignore[method-assign]
    corpora = {"one file": one, "sharded": local, "ray": remote, "ray per stage": per_stage}
    rows = []
    scan_ms: dict[int, float] = {}
    for name, search in searches.items():
        for b in batches:
            q = queries[:b]
            setups = {m: (lambda c=c, q=q, search=search: lambda: search(q, c)) for m, c in corpora.items()}
            ran = h.run_methods(setups, repeats, label=f"{name}, batch {b}, N={len(one):,}: ")
            got = {}
            for m, r in ran.items():
                if r.timing is None:
                    raise SystemExit(f"{m} failed ({name}, batch {b}): {r.why}")
                got[m] = r.timing
            ref = got["one file"].result
            for m, t in got.items():
                same = np.array_equal(t.result.indices, ref.indices) and (
                    t.result.scores.tobytes() == ref.scores.tobytes()
                )
                assert same, f"{m} differs from one file ({name}, batch {b})"
            t1, ts, tr, tp = (got[m].median_s for m in corpora)
            if name.startswith("topk"):
                scan_ms[b] = t1 * 1e3
            n = len(one)
            rows.append(
                [
                    f"{n:,}",
                    name,
                    str(b),
                    h.fmt_ms(t1),
                    h.fmt_ms(ts),
                    h.fmt_ms(tr),
                    h.fmt_ms(tp),
                    f"{ts / t1:.3f}",
                    f"{(tr - ts) * 1e3:+.2f}",
                    f"{(tp - ts) * 1e3:+.2f}",
                ]
            )
    remote.close()
    per_stage.close()
    local.close()
    return rows, scan_ms


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--rows", type=int, default=1_000_000)
    ap.add_argument("--cols", type=int, default=768)
    ap.add_argument("--shards", type=int, default=4)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--k", type=int, default=10)
    ap.add_argument("--dim", type=int, default=256, help="topk width")
    ap.add_argument("--batches", type=int, nargs="+", default=[1, 64])
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--probe-rows", type=int, default=4000, help="rows of the small corpus (0: none)")
    ap.add_argument("--data-dir", default="build/bench")
    ap.add_argument("--out", default=None, help="write the section into this RESULTS.md")
    args = ap.parse_args()

    env = h.environment(["numpy", "ray", "matryo_fast"])
    path = h.ensure_corpus(args.data_dir, args.rows, args.cols, args.seed, log=print)
    sdir = ensure_shards(path, Path(args.data_dir) / f"{path.stem}.{args.shards}shards", args.shards)
    x = np.load(path, mmap_mode="r")
    queries, _ = h.make_queries(x, max(args.batches), args.seed + 1)

    import ray

    ray.init(  # a new Ray instance of its own, never one that is already running here
        address="local",
        num_cpus=os.cpu_count(),
        include_dashboard=False,
        log_to_driver=False,
        object_store_memory=200 << 20,
    )
    funnel_plan = {"k": args.k, "dims": (64, args.cols), "candidates": (20 * args.k,)}
    searches = {
        f"topk dim={args.dim}": lambda q, c: mf.topk(q, c, dim=args.dim, k=args.k),
        f"funnel {funnel_plan['dims']} keep {funnel_plan['candidates']}": lambda q, c: mf.funnel(
            q, c, **funnel_plan
        ),
    }
    rows, scan_ms = measure(path, sdir, searches, queries, args.batches, args.repeats)
    # The same on a small corpus (the first --probe-rows rows, same shard count), where the
    # search itself is cheap, so that "ray - sharded" shows the fixed cost of a Ray round trip.
    probe_rows: list[list[str]] = []
    if args.probe_rows:
        small = Path(args.data_dir) / f"{path.stem}.first{args.probe_rows}.npy"
        if not small.exists():
            mf.save_corpus(small, x[: args.probe_rows])
        small_dir = ensure_shards(small, small.with_suffix(f".{args.shards}shards"), args.shards)
        probe_rows, _ = measure(small, small_dir, searches, queries, args.batches, args.repeats)
    ray.shutdown()

    # The merge alone, for many shards' top-k lists.
    merge_rows = []
    rng = np.random.default_rng(0)
    for s in (4, 64, 256):
        parts = []
        for i in range(s):
            sc = -np.sort(-rng.random((64, args.k), dtype=np.float32), axis=1)
            parts.append((sc, np.sort(rng.integers(0, 1000, (64, args.k))) + i * 1000))
        t = h.time_call(lambda parts=parts: merge(parts, args.k), args.repeats, memory=False)
        merge_rows.append([str(s), h.fmt_ms(t.median_s)])

    gbytes = args.rows * args.dim * 4 / 1e9
    lines = [
        f"## Distributed, {env['date (UTC)']} UTC: N={args.rows:,} x D={args.cols} in {args.shards} shards, "
        f"k={args.k}, batches {args.batches}",
        "",
        "`make bench-distributed` (benches/bench_distributed.py): the same rows in one file, in shards "
        "searched locally (thread pool, exact merge), and in shards served by Ray actors (Ray started "
        "on this machine, 127.0.0.1: one node, so one actor serving every shard with a thread pool, "
        "which runs a whole search, every funnel stage and merge, in one call). `ray per stage`: the "
        "same actor searched as when the shards are spread over several actors (one call per funnel "
        "stage, the driver merging each stage). Median ms, runs interleaved; every result checked "
        "bitwise against the one file's. Query batches up to 384 KiB travel inside the calls, larger "
        "ones through the object store."
        + (
            f" Rows with N={args.probe_rows:,} (the first rows, in {args.shards} shards too) make the "
            "search itself cheap, so that their `ray - sharded` is the fixed cost of Ray per search."
            if args.probe_rows
            else ""
        ),
        "",
        *(f"- {k}: {v}" for k, v in env.items()),
        f"- data: {h.DATA_DESCRIPTION}",
        "",
        h.markdown_table(
            [
                "N",
                "search",
                "batch",
                "one file ms",
                "sharded ms",
                "ray ms",
                "ray per stage ms",
                "sharded / one file",
                "ray - sharded ms",
                "per stage - sharded ms",
            ],
            rows + probe_rows,
        ),
        "",
        f"Scan rate of one file at dim={args.dim} ({gbytes:.2f} GB read): "
        + ", ".join(f"batch {b}: {gbytes / (ms / 1e3):.1f} GB/s" for b, ms in scan_ms.items())
        + ".",
        "",
        f"Exact merge of per-shard top-{args.k} lists, batch 64 (`matryo_fast.sharded.merge`):",
        "",
        h.markdown_table(["shards", "merge ms"], merge_rows),
        "",
        "Targets: sharded within 1.1x of one file at batch 64; Ray under 10 ms over sharded per batch of 64.",
    ]
    text = "\n".join(lines)
    print(text)
    if args.out:
        h.write_results(args.out, text)


if __name__ == "__main__":
    main()
