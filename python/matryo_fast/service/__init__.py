"""``matryo serve``: a corpus folder behind HTTP (FastAPI on uvicorn; extra ``[serve]``).

* ``POST /search``: ``{"text": ...}`` or ``{"vector": [...]}``, with ``k`` (default 10) and
  either ``dim`` (a prefix width) or ``plan`` (``true`` for the plan the server was started
  with, or ``{"dims": [...], "candidates": [...]}``). The answer lists rank, row, id, text
  and score, with the time spent encoding and scanning and the size of the batch it ran in.
* ``GET /health``, ``GET /info`` (corpus, model, widths, tiers, batching, counters), and a page
  at ``/`` that shows the top results at three widths side by side.

The model and the mapped corpus are loaded once. Requests that arrive within ``window_ms`` of
each other (up to ``max_batch``) run as one batch: their texts are encoded in one call and
the queries of each width (or plan) are scanned together by the batch kernel; each caller
gets its own answer. ``window_ms=0`` runs every request on its own. A bad request gets a 4xx
with a message.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import socket
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from importlib import resources
from typing import Any

import numpy as np

from matryo_fast._extras import require
from matryo_fast.funnel import FunnelPlan
from matryo_fast.textcorpus import TextCorpus, open_text_corpus

__all__ = ["Query", "Searcher", "bind", "create_app", "page_widths", "running", "serve"]


@dataclass
class Query:
    """One validated request: a text or a vector, and how to search it."""

    text: str | None
    vector: np.ndarray[Any, Any] | None
    k: int
    dim: int | None
    # dims, candidates, precisions (None: the finest tier)
    plan: tuple[tuple[int, ...], tuple[int, ...], tuple[str, ...] | None] | None
    result: dict[str, Any] | None = None
    error: str | None = None
    arrived: float = field(default_factory=time.perf_counter)


def page_widths(dim: int) -> list[int]:
    """Three widths for the page: the full width and two powers of two far below it."""
    low = [w for w in (16, 32, 64, 128, 256, 512) if w <= dim // 6]
    picks = sorted({*low[-2:], dim}) if len(low) >= 2 else sorted({max(1, dim // 4), max(1, dim // 2), dim})
    return picks


class Searcher:
    """Runs batches of :class:`Query` against a :class:`TextCorpus` (thread-safe; one scan per
    width or plan in a batch, one encode call for all its texts)."""

    def __init__(self, corpus: TextCorpus, plan: FunnelPlan | None = None) -> None:
        self.corpus = corpus
        self.plan = plan
        self.stats = {"requests": 0, "batches": 0, "largest_batch": 0}
        self._lock = threading.Lock()

    def run(self, batch: list[Query]) -> None:
        """Fills each query's ``result`` or ``error``."""
        t0 = time.perf_counter()
        texts = [q for q in batch if q.text is not None]
        if texts:
            try:
                vecs = self.corpus.encode_queries([q.text for q in texts if q.text is not None])
            except (OSError, ImportError, ValueError) as exc:  # no model here: say so to each
                for q in texts:
                    q.error = f"cannot encode text queries: {exc}"
            else:
                for q, v in zip(texts, vecs):
                    q.vector = v
        t1 = time.perf_counter()
        groups: dict[Any, list[Query]] = {}
        for q in batch:
            if q.error is None:
                groups.setdefault((q.dim, q.plan), []).append(q)
        for (dim, plan), qs in groups.items():
            kmax = max(q.k for q in qs)
            mat = np.stack([q.vector for q in qs if q.vector is not None])
            try:
                res = self._scan(mat, kmax, dim, plan)
            except (ValueError, TypeError) as exc:
                for q in qs:
                    q.error = str(exc)
                continue
            for q, scores, rows in zip(qs, res.scores, res.indices):
                hits = [
                    {"rank": r + 1, "row": int(row), "id": rec[0], "text": rec[1], "score": float(s)}
                    for r, (row, s, rec) in enumerate(
                        (row, s, self.corpus.record(int(row))) for row, s in zip(rows[: q.k], scores[: q.k])
                    )
                ]
                q.result = {"results": hits, "k": q.k, "dim": dim, "plan": _plan_json(plan)}
        t2 = time.perf_counter()
        with self._lock:
            self.stats["requests"] += len(batch)
            self.stats["batches"] += 1
            self.stats["largest_batch"] = max(self.stats["largest_batch"], len(batch))
        for q in batch:
            if q.result is not None:
                q.result["timing_ms"] = {
                    "queued": (t0 - q.arrived) * 1e3,
                    "encode": (t1 - t0) * 1e3,
                    "scan": (t2 - t1) * 1e3,
                }
                q.result["batch_size"] = len(batch)

    def _scan(self, mat: Any, k: int, dim: int | None, plan: Any) -> Any:
        if plan is None:
            return self.corpus.search(mat, k=k, dim=dim)
        from matryo_fast.funnel import funnel

        return funnel(mat, self.corpus.corpus, k=k, dims=plan[0], candidates=plan[1], precisions=plan[2])


def _plan_json(plan: Any) -> dict[str, list[Any]] | None:
    if plan is None:
        return None
    out: dict[str, list[Any]] = {"dims": list(plan[0]), "candidates": list(plan[1])}
    if plan[2] is not None:
        out["precisions"] = list(plan[2])
    return out


class Batcher:
    """Collects queries that arrive within ``window_s`` (up to ``max_batch``) into one batch."""

    def __init__(self, searcher: Searcher, window_s: float, max_batch: int) -> None:
        self.searcher = searcher
        self.window_s = window_s
        self.max_batch = max_batch
        self.queue: asyncio.Queue[tuple[Query, asyncio.Future[None]]] = asyncio.Queue()

    async def submit(self, q: Query) -> None:
        fut: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        await self.queue.put((q, fut))
        await fut

    async def loop(self) -> None:
        while True:
            items = [await self.queue.get()]
            deadline = time.perf_counter() + self.window_s
            while len(items) < self.max_batch:
                left = deadline - time.perf_counter()
                if left <= 0:
                    break
                try:
                    items.append(await asyncio.wait_for(self.queue.get(), left))
                except asyncio.TimeoutError:
                    break
            try:
                await asyncio.to_thread(self.searcher.run, [q for q, _ in items])
            except Exception as exc:  # an encode failure: every caller of the batch hears of it
                for _, fut in items:
                    if not fut.done():
                        fut.set_exception(exc)
                continue
            for _, fut in items:
                if not fut.done():
                    fut.set_result(None)


def create_app(
    corpus: TextCorpus, *, plan: FunnelPlan | None = None, window_ms: float = 2.0, max_batch: int = 64
) -> Any:
    """The FastAPI app serving ``corpus`` (see the module docs)."""
    from matryo_fast.planfile import check_plan
    from matryo_fast.service.app import build

    if plan is not None:
        check_plan(plan, corpus.corpus)
    searcher = Searcher(corpus, plan)
    return build(searcher, window_ms=window_ms, max_batch=max_batch)


def bind(host: str, port: int) -> socket.socket:
    """A listening socket on ``host:port``.

    Raises:
        OSError: The port is in use or the address is not this machine's (one-line message).
    """
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
    except OSError as exc:
        sock.close()
        why = "is in use" if exc.errno == 98 else f"cannot be used ({exc.strerror})"
        raise OSError(f"port {port} on {host} {why}; pick another with --port") from None
    sock.listen(2048)
    return sock


def serve(
    path: str | os.PathLike[str],
    *,
    host: str = "127.0.0.1",
    port: int = 8000,
    model: str | None = None,
    plan_path: str | None = None,
    window_ms: float = 2.0,
    max_batch: int = 64,
    log_level: str = "warning",
) -> None:
    """Serves a corpus folder until interrupted (see the module docs)."""
    require("fastapi", feature="matryo serve", extra="serve")
    uvicorn = require("uvicorn", feature="matryo serve", extra="serve")
    sock = bind(host, port)  # before the slow loads, so a port in use fails at once
    tc = open_text_corpus(path)
    if tc.model_name is not None or model is not None:
        tc.load_model(model)  # once, before the first request
    plan = FunnelPlan.load(plan_path, corpus=tc.corpus) if plan_path else None
    app = create_app(tc, plan=plan, window_ms=window_ms, max_batch=max_batch)
    shown = f"[{host}]" if ":" in host else host
    print(
        f"serving {tc.path} ({tc.rows:,} x {tc.dim}, {tc.model_name}) at http://{shown}:{port}/", flush=True
    )
    config = uvicorn.Config(app, log_level=log_level)
    uvicorn.Server(config).run(sockets=[sock])


@contextlib.contextmanager
def running(app: Any, *, host: str = "127.0.0.1", port: int = 0) -> Iterator[str]:
    """Runs ``app`` on uvicorn in a background thread; yields its base URL, stops on exit.

    >>> with running(create_app(open_text_corpus("docs.mf"))) as url:  # doctest: +SKIP
    ...     urllib.request.urlopen(url + "/health").read()
    b'{"status":"ok"}'
    """
    import uvicorn

    sock = bind(host, port)
    server = uvicorn.Server(uvicorn.Config(app, log_level="warning"))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    try:
        while not server.started:
            if not thread.is_alive():
                raise RuntimeError("the server did not start")
            time.sleep(0.01)
        yield f"http://{host}:{sock.getsockname()[1]}"
    finally:
        server.should_exit = True
        thread.join(timeout=30)
        sock.close()


def page_html() -> str:
    """The page served at ``/`` (package data)."""
    return resources.files(__name__).joinpath("index.html").read_text(encoding="utf-8")
