"""Hypothesis strategies for search inputs, the helper that lays a matrix out as a corpus, and
:func:`assert_same_topk`.

Values come from a numpy generator seeded by hypothesis: hypothesis chooses the structure
(rows, width, value kind, zero/duplicate/negated rows, query, dim, k) and numpy fills the
numbers, which keeps examples fast while the seed keeps them reproducible.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
from hypothesis import strategies as st

import matryo_fast as mf

# Widths around SIMD lane multiples (4/8/16 floats) and row counts that are not tile multiples.
LANE_DIMS = (1, 3, 7, 8, 15, 16, 17, 31, 32, 33, 63, 64, 65, 97)
ROW_COUNTS = (1, 2, 3, 5, 7, 9, 15, 17, 31, 33, 63, 65, 127, 129, 255, 257, 1000, 1025)

# Value kinds. "wide" scales each row by 10**U(-20, 15); "tiny" rows have float32 squared norms
# that underflow (down to subnormal values), "huge" rows squared norms that overflow; the
# contract scores those rows in float64. "small_ints" makes many exact ties between rows.
WELL_SCALED_KINDS = ("normal", "nonneg", "small_ints")
EXTREME_KINDS = ("wide", "tiny", "huge")
ALL_KINDS = WELL_SCALED_KINDS + EXTREME_KINDS

# How a logical (N, D) matrix is handed to `topk`; see `corpus_as`.
ARRAY_LAYOUTS = ("contiguous", "strided", "offset", "npy_mmap", "raw_memmap")
LAYOUTS = (*ARRAY_LAYOUTS, "path", "str_path", "corpus")

F32 = npt.NDArray[np.float32]


def fill(rng: np.random.Generator, shape: tuple[int, int], kind: str) -> F32:
    """A float32 matrix of the given value kind."""
    n, d = shape
    g = rng.standard_normal((n, d))
    if kind == "nonneg":
        g = np.abs(g)
    elif kind == "small_ints":
        g = rng.integers(-2, 3, size=(n, d)).astype(np.float64)
    elif kind == "wide":
        g *= 10.0 ** rng.uniform(-20, 15, size=(n, 1))
    elif kind == "tiny":
        g *= 10.0 ** rng.uniform(-44, -25, size=(n, 1))
    elif kind == "huge":
        g *= 10.0 ** rng.uniform(17, 37, size=(n, 1))
    elif kind != "normal":
        raise ValueError(f"unknown kind {kind!r}")
    return g.astype(np.float32)


@st.composite
def matrices(
    draw: st.DrawFn,
    *,
    kinds: tuple[str, ...] = ALL_KINDS,
    max_rows: int = 300,
    widths: tuple[int, ...] = LANE_DIMS,
) -> F32:
    """A C-contiguous float32 (N, D) corpus, with some zero, duplicated and negated rows."""
    counts = [r for r in ROW_COUNTS if r <= max_rows]
    n = draw(st.one_of(st.sampled_from(counts), st.integers(1, max_rows)))
    d = draw(st.sampled_from(widths))
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    x = fill(rng, (n, d), draw(st.sampled_from(kinds)))
    n_zero = draw(st.integers(0, min(3, n)))
    x[rng.choice(n, size=n_zero, replace=False)] = 0.0
    for _ in range(draw(st.integers(0, min(4, n - 1)))):
        src, dst = rng.integers(0, n, size=2)
        x[dst] = x[src]
    if draw(st.booleans()):
        x[rng.random(n) < 0.3] *= -1
    return x


@dataclass(frozen=True)
class Case:
    """One search: a logical float32 corpus, a query (1-D or 2-D), a prefix width and k."""

    corpus: F32
    query: npt.NDArray[Any]
    dim: int | None
    k: int

    @property
    def width(self) -> int:
        """The prefix width actually scanned."""
        return self.corpus.shape[1] if self.dim is None else self.dim


@st.composite
def dims_for(draw: st.DrawFn, width: int) -> int:
    """A prefix width in ``[1, width]``, favouring lane-width boundaries."""
    lanes = [d for d in LANE_DIMS if d <= width]
    return draw(st.one_of(st.sampled_from(lanes), st.integers(1, width)))


@st.composite
def ks_for(draw: st.DrawFn, n: int) -> int:
    """A k: small, near N, or past N."""
    return draw(st.one_of(st.integers(1, 12), st.integers(1, n + 3), st.sampled_from([n, n + 1])))


@st.composite
def queries_for(
    draw: st.DrawFn, corpus: F32, width: int, *, extreme_scale: bool = False
) -> npt.NDArray[Any]:
    """A float32/float64 query, 1-D or a (B, width) batch, built from corpus rows or at random.

    With ``extreme_scale`` each query row is also scaled by ``10**U(-20, 15)``.
    """
    n, d = corpus.shape
    batch = draw(st.one_of(st.none(), st.integers(1, 5)))
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    rows = batch or 1
    mode = draw(st.sampled_from(["row", "noisy_row", "random", "zero", "mixed"]))
    q = rng.standard_normal((rows, width))
    if mode in ("row", "noisy_row", "mixed"):
        src = np.zeros((rows, width))
        cols = min(width, d)
        picked = corpus[rng.integers(0, n, size=rows), :cols].astype(np.float64)
        # normalise the picked rows so that huge/tiny corpus rows still make finite queries
        scale = np.abs(picked).max(axis=1, keepdims=True)
        src[:, :cols] = np.divide(picked, scale, out=np.zeros_like(picked), where=scale > 0)
        noise = {"row": 0.0, "noisy_row": 0.05, "mixed": 1.0}[mode]
        q = src + noise * q
    elif mode == "zero":
        q = np.zeros((rows, width))
    if extreme_scale:
        q *= 10.0 ** rng.uniform(-20, 15, size=(rows, 1))
    q = q.astype(draw(st.sampled_from([np.float32, np.float64])))
    return q[0] if batch is None else q


@st.composite
def cases(
    draw: st.DrawFn,
    *,
    kinds: tuple[str, ...] = ALL_KINDS,
    max_rows: int = 300,
    extreme_query: bool = False,
) -> Case:
    """A full search case. The query is at least ``dim`` wide: narrower or wider than the corpus."""
    x = draw(matrices(kinds=kinds, max_rows=max_rows))
    n, d = x.shape
    dim: int | None = draw(st.one_of(st.none(), dims_for(d)))
    width = d if dim is None else dim
    qwidth = draw(st.integers(width, d + 3))  # dim=None needs every corpus column
    q = draw(queries_for(x, qwidth, extreme_scale=extreme_query))
    return Case(x, q, dim, draw(ks_for(n)))


layouts = st.sampled_from(LAYOUTS)

_counter = itertools.count()


def corpus_as(x: F32, layout: str, directory: Path, *, pad_value: float = np.nan) -> Any:
    """Hand the logical matrix ``x`` to ``topk`` in one of the accepted layouts.

    ``strided``/``offset`` are row views into a wider matrix whose other columns hold
    ``pad_value`` (NaN by default: a kernel that reads past the view poisons the result);
    ``offset`` also starts each row at a column that is not a SIMD-aligned multiple.
    The file layouts write ``x`` to a fresh ``.npy`` (or raw) file in ``directory``.
    """
    n, d = x.shape
    if layout == "contiguous":
        return x
    if layout in ("strided", "offset"):
        start = 3 if layout == "offset" else 0
        big = np.full((n, d + start + 5), pad_value, dtype=np.float32)
        big[:, start : start + d] = x
        view = big[:, start : start + d]
        assert not view.flags.c_contiguous or n == 1
        return view
    path = directory / f"m{next(_counter)}.{'raw' if layout == 'raw_memmap' else 'npy'}"
    if layout == "raw_memmap":
        x.tofile(path)
        return np.memmap(path, dtype=np.float32, mode="r", shape=(n, d))
    np.save(path, x)
    if layout == "npy_mmap":
        return np.load(path, mmap_mode="r")
    if layout == "path":
        return path
    if layout == "str_path":
        return str(path)
    if layout == "corpus":
        return mf.open_corpus(path)
    raise ValueError(f"unknown layout {layout!r}")


def poison_beyond(x: npt.NDArray[Any], dim: int, rng: np.random.Generator) -> npt.NDArray[Any]:
    """A copy of ``x`` whose columns ``>= dim`` hold NaN, +Inf and -Inf (never to be read)."""
    y = np.array(x, copy=True)
    tail = y[..., dim:]
    tail[...] = rng.choice(np.array([np.nan, np.inf, -np.inf], dtype=y.dtype), size=tail.shape)
    return y


def assert_same_topk(got: Any, expected: Any) -> None:
    """Two search results agree exactly: the same indices and the same scores."""
    np.testing.assert_array_equal(got.indices, expected.indices)
    np.testing.assert_array_equal(got.scores, expected.scores)
