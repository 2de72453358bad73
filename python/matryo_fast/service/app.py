"""The FastAPI routes of ``matryo serve`` (imported only when serving: needs the ``[serve]`` extra)."""

from __future__ import annotations

import asyncio
import contextlib
import math
from collections.abc import AsyncIterator
from typing import Any

import numpy as np
from fastapi import FastAPI, HTTPException, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.exceptions import RequestValidationError
from fastapi.responses import HTMLResponse, JSONResponse
from pydantic import BaseModel, ConfigDict, Field

from matryo_fast.service import Batcher, Query, Searcher, page_html, page_widths

__all__ = ["build"]

MAX_K = 1000


class PlanSpec(BaseModel):
    """A funnel given in the request."""

    model_config = ConfigDict(extra="forbid")
    dims: list[int] = Field(min_length=1, max_length=8)
    candidates: list[int] = Field(max_length=7)


class SearchRequest(BaseModel):
    """``POST /search``: a text or a vector; ``dim`` or ``plan``; ``k``."""

    model_config = ConfigDict(extra="forbid")
    text: str | None = Field(default=None, max_length=100_000)
    vector: list[float] | None = None
    k: int = Field(default=10, ge=1, le=MAX_K)
    dim: int | None = Field(default=None, ge=1)
    plan: bool | PlanSpec | None = None


def _validate(req: SearchRequest, searcher: Searcher) -> Query:
    """The request as a :class:`Query`, or an HTTP 400/422 naming what is wrong."""
    d = searcher.corpus.dim
    if (req.text is None) == (req.vector is None):
        raise HTTPException(422, "give exactly one of 'text' or 'vector'")
    if req.text is not None and not req.text.strip():
        raise HTTPException(422, "'text' is empty")
    vec = None
    if req.vector is not None:
        if len(req.vector) != d:
            raise HTTPException(422, f"'vector' has {len(req.vector)} values; this corpus's vectors have {d}")
        if not all(math.isfinite(v) for v in req.vector):
            raise HTTPException(422, "'vector' contains NaN or Inf")
        vec = np.asarray(req.vector, dtype=np.float64)
        if np.abs(vec).max() > np.finfo(np.float32).max:
            raise HTTPException(422, "'vector' has values too large for float32")
        vec = vec.astype(np.float32)
    if req.dim is not None and req.plan not in (None, False):
        raise HTTPException(422, "give 'dim' or 'plan', not both")
    if req.dim is not None and req.dim > d:
        raise HTTPException(422, f"'dim' is {req.dim}; this corpus's vectors have {d} values")
    plan: tuple[tuple[int, ...], tuple[int, ...], tuple[str, ...] | None] | None = None
    if req.plan is True:
        if searcher.plan is None:
            raise HTTPException(422, "this server has no plan (start it with --plan plan.json)")
        p = searcher.plan
        plan = (tuple(p.dims), tuple(p.candidates), p.params.get("precisions"))
    elif isinstance(req.plan, PlanSpec):
        plan = (tuple(req.plan.dims), tuple(req.plan.candidates), None)
        dims, cands, _ = plan
        if (
            list(dims) != sorted(set(dims))
            or dims[0] < 1
            or dims[-1] > d
            or len(cands) != len(dims) - 1
            or any(c < req.k for c in cands)
            or list(cands) != sorted(cands, reverse=True)
        ):
            raise HTTPException(
                422,
                f"'plan' must have strictly increasing dims within 1..{d} and one candidate count "
                f"fewer, non-increasing and each at least k={req.k}",
            )
    return Query(req.text, vec, req.k, req.dim, plan)


def _plan_info(p: Any) -> dict[str, Any]:
    out = {"dims": list(p.dims), "candidates": list(p.candidates), "k": p.k}
    if "precisions" in p.params:
        out["precisions"] = list(p.precisions)
    return out


def build(searcher: Searcher, *, window_ms: float, max_batch: int) -> FastAPI:
    """The app: routes over ``searcher``, batching when ``window_ms > 0``."""
    batcher = Batcher(searcher, window_ms / 1e3, max_batch) if window_ms > 0 else None

    @contextlib.asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        task = asyncio.create_task(batcher.loop()) if batcher else None
        yield
        if task is not None:
            task.cancel()

    app = FastAPI(title="matryo-fast", lifespan=lifespan)
    tc = searcher.corpus

    @app.exception_handler(RequestValidationError)
    async def _invalid(_: Request, exc: RequestValidationError) -> JSONResponse:
        msgs = [f"{'.'.join(str(p) for p in e['loc'] if p != 'body')}: {e['msg']}" for e in exc.errors()]
        return JSONResponse({"detail": "; ".join(msgs) or "invalid request"}, status_code=422)

    @app.get("/health")
    async def health() -> dict[str, str]:
        return {"status": "ok"}

    @app.get("/info")
    async def info() -> dict[str, Any]:
        p = searcher.plan
        return {
            "corpus": str(tc.path),
            "rows": tc.rows,
            "dim": tc.dim,
            "layout": tc.corpus.layout,
            "model": {"name": tc.model_name, "dim": tc.meta["model"]["dim"]},
            "widths": page_widths(tc.dim),
            "tiers": tc.meta.get("tiers", []),
            "plan": None if p is None else _plan_info(p),
            "batching": {"window_ms": window_ms, "max_batch": max_batch if batcher else 1},
            "stats": dict(searcher.stats),
        }

    @app.post("/search")
    async def search(req: SearchRequest) -> dict[str, Any]:
        q = _validate(req, searcher)
        if batcher is not None:
            await batcher.submit(q)
        else:
            await run_in_threadpool(searcher.run, [q])
        if q.error is not None:
            raise HTTPException(422, q.error)
        assert q.result is not None
        return q.result

    @app.get("/", response_class=HTMLResponse)
    async def page() -> str:
        return page_html()

    return app
