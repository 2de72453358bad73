"""Load test of ``matryo serve`` on loopback: throughput and latency with and without batching.

Starts ``matryo serve`` in a child process on 127.0.0.1 (a free port) for each setting, sends
a fixed number of ``POST /search`` requests from concurrent clients (keep-alive connections,
one thread each), and reports requests per second and the p50/p99 latency seen by the
clients, with the batching window and without it (``--window-ms 0``: every request scanned on
its own), side by side, with the ratio. Every answer's status is checked, and a sample of
the answers is compared with the float64 oracle. The run is bounded: a fixed request count,
a timeout per request and a deadline for the whole run; the server is stopped at the end.

    python benches/bench_serve.py --out benches/RESULTS.md                # vector queries
    python benches/bench_serve.py --text --requests 500 --out benches/RESULTS.md  # text queries

Vector requests measure the service and the scan (the synthetic corpus of ``_harness``);
``--text`` sends STS-B sentences, encoded by the server with the shipped MiniLM (its model
identity is recorded on the same synthetic rows, so the scan costs what it would on real
embeddings of that size). Not part of ``make test``.
"""

from __future__ import annotations

import argparse
import csv
import http.client
import json
import statistics
import subprocess
import sys
import threading
import time
import urllib.request
from pathlib import Path
from typing import Any

import _harness as h
import numpy as np

from matryo_fast._extras import default_data_dir
from matryo_fast._reference import topk_reference
from matryo_fast.service import bind
from matryo_fast.textcorpus import open_text_corpus, save_text_corpus


def corpus_folder(args: argparse.Namespace) -> Path:
    """The synthetic rows as a corpus folder (reused), recording MiniLM when ``--text``."""
    kind = "text" if args.text else "vec"
    folder = Path(args.data_dir) / f"serve_{kind}_n{args.rows}_d{args.cols}_seed{args.seed}.mf"
    if folder.exists():
        print(f"data: reusing {folder}")
        return folder
    npy = h.ensure_corpus(args.data_dir, args.rows, args.cols, args.seed)
    model = None
    if args.text:
        from matryo_fast.models import load_model
        from matryo_fast.textcorpus import model_identity

        model = model_identity(load_model(), "all-MiniLM-L6-v2", None)
        if model["dim"] != args.cols:
            raise SystemExit(f"--text needs --cols {model['dim']} (the model's width)")
    emb = np.load(npy, mmap_mode="r")
    save_text_corpus(folder, emb, [f"synthetic row {i}" for i in range(args.rows)], model=model)
    print(f"data: wrote {folder}")
    return folder


def sentences(n: int) -> list[str]:
    data = default_data_dir()
    seen: dict[str, None] = {}
    with open(data / "stsb" / "test.tsv", encoding="utf-8", newline="") as f:
        for row in csv.DictReader(f, delimiter="\t", quoting=csv.QUOTE_NONE):
            seen.setdefault(row["sentence1"])
            seen.setdefault(row["sentence2"])
    out = list(seen)
    return [out[i % len(out)] for i in range(n)]


class Server:
    """``matryo serve`` in a child process on a free loopback port."""

    def __init__(self, folder: Path, window_ms: float, max_batch: int) -> None:
        with bind("127.0.0.1", 0) as s:
            self.port = s.getsockname()[1]
        cmd = [sys.executable, "-m", "matryo_fast.cli", "serve", str(folder), "--port", str(self.port)]
        cmd += ["--window-ms", str(window_ms), "--max-batch", str(max_batch)]
        self.proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL)
        deadline = time.monotonic() + 300
        while True:
            try:
                self.get("/health")
                return
            except OSError:
                if self.proc.poll() is not None or time.monotonic() > deadline:
                    self.stop()
                    raise SystemExit("the server did not start") from None
                time.sleep(0.2)

    def get(self, path: str) -> Any:
        with urllib.request.urlopen(f"http://127.0.0.1:{self.port}{path}", timeout=10) as r:
            return json.loads(r.read())

    def stop(self) -> None:
        self.proc.terminate()
        try:
            self.proc.wait(30)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()


def load(port: int, bodies: list[dict[str, Any]], clients: int, deadline_s: float) -> dict[str, Any]:
    """Sends every body once, ``clients`` at a time; returns latencies and answers."""
    latencies: list[float] = [0.0] * len(bodies)
    answers: list[Any] = [None] * len(bodies)
    failures: list[str] = []
    next_i = iter(range(len(bodies)))
    lock = threading.Lock()
    stop_at = time.monotonic() + deadline_s

    def client() -> None:
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
        while time.monotonic() < stop_at:
            with lock:
                i = next(next_i, None)
            if i is None:
                break
            payload = json.dumps(bodies[i])
            t0 = time.perf_counter()
            conn.request("POST", "/search", payload, {"Content-Type": "application/json"})
            r = conn.getresponse()
            data = r.read()
            latencies[i] = time.perf_counter() - t0
            if r.status != 200:
                failures.append(f"{r.status}: {data[:200]!r}")
            answers[i] = json.loads(data)
        conn.close()

    threads = [threading.Thread(target=client) for _ in range(clients)]
    t0 = time.perf_counter()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    wall = time.perf_counter() - t0
    done = [lat for lat, a in zip(latencies, answers) if a is not None]
    if failures or len(done) < len(bodies):
        raise SystemExit(f"{len(failures)} failed, {len(bodies) - len(done)} not sent: {failures[:3]}")
    return {"wall": wall, "latencies": done, "answers": answers}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--rows", type=int, default=200_000)
    ap.add_argument("--cols", type=int, default=384)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--data-dir", default="build/bench")
    ap.add_argument("--requests", type=int, default=2000)
    ap.add_argument("--clients", type=int, default=16)
    ap.add_argument("--dim", type=int, default=128, help="prefix width of every request")
    ap.add_argument("--k", type=int, default=10)
    ap.add_argument("--window-ms", type=float, default=2.0, help="the batching window of the batched run")
    ap.add_argument("--max-batch", type=int, default=64)
    ap.add_argument(
        "--text", action="store_true", help="send texts (encoded by the server) instead of vectors"
    )
    ap.add_argument("--deadline-s", type=float, default=600, help="stop sending after this long")
    ap.add_argument("--out", help="add a section to this RESULTS.md")
    args = ap.parse_args()

    env = h.environment(["numpy", "fastapi", "uvicorn"])
    folder = corpus_folder(args)
    tc = open_text_corpus(folder)
    if args.text:
        texts = sentences(args.requests)
        bodies = [{"text": t, "k": args.k, "dim": args.dim} for t in texts]
    else:
        queries, _ = h.make_queries(tc.corpus.as_array(), args.requests, args.seed)
        bodies = [{"vector": q.tolist(), "k": args.k, "dim": args.dim} for q in queries]
    rows = []
    measured = {}
    for window in (args.window_ms, 0.0):
        server = Server(folder, window, args.max_batch)
        try:
            load(server.port, bodies[: min(64, len(bodies))], args.clients, args.deadline_s)  # warm-up
            before = server.get("/info")["stats"]
            run = load(server.port, bodies, args.clients, args.deadline_s)
            after = server.get("/info")["stats"]
        finally:
            server.stop()
        if not args.text:  # a sample of answers against the float64 oracle
            emb = tc.corpus.as_array()
            for i in range(0, len(bodies), max(1, len(bodies) // 20)):
                want = topk_reference(np.asarray(bodies[i]["vector"]), emb, dim=args.dim, k=args.k)[1]
                got = [hit["row"] for hit in run["answers"][i]["results"]]
                if got != want.tolist():
                    raise SystemExit(f"request {i}: answer {got} differs from the oracle {want.tolist()}")
        lat = sorted(run["latencies"])
        rps = len(lat) / run["wall"]
        mean_batch = (after["requests"] - before["requests"]) / max(after["batches"] - before["batches"], 1)
        measured[window] = rps
        label = f"window {window:g} ms, up to {args.max_batch}" if window else "none (each request alone)"
        rows.append(
            [
                label,
                f"{len(lat):,}",
                str(args.clients),
                f"{rps:,.0f}",
                h.fmt_ms(statistics.median(lat)),
                h.fmt_ms(lat[int(0.99 * (len(lat) - 1))]),
                f"{mean_batch:.1f}",
            ]
        )
        print(
            f"{label}: {rps:,.0f} req/s, p50 {rows[-1][4]} ms, p99 {rows[-1][5]} ms, "
            f"mean batch {mean_batch:.1f}"
        )
    ratio = measured[args.window_ms] / measured[0.0]
    print(f"batching: {ratio:.2f}x the throughput of no batching")
    kind = "text queries (encoded by the server with all-MiniLM-L6-v2)" if args.text else "vector queries"
    section = "\n".join(
        [
            f"## Service, {env['date (UTC)']} UTC: {kind}, N={args.rows:,} x D={args.cols}, dim {args.dim}, "
            f"k={args.k}, {args.requests:,} requests from {args.clients} clients on 127.0.0.1",
            "",
            "`matryo serve` in a child process; clients are threads with keep-alive connections in the "
            "bench process; latency is what a client sees (request sent to answer read). Throughput with "
            f"the batching window: **{ratio:.2f}x** the throughput without it.",
            "",
            h.markdown_table(
                ["batching", "requests", "clients", "req/s", "p50 ms", "p99 ms", "mean batch"], rows
            ),
            "",
            *(f"- {k}: {v}" for k, v in env.items()),
            "",
        ]
    )
    if args.out:
        h.write_results(args.out, section, name=f"bench_serve-{'text' if args.text else 'vectors'}")
        print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
