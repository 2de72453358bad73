"""An in-RAM array corpus is scanned in place: no copy, and the same answer wherever its
buffer starts relative to a cache line (the kernel prefetches by line, see docs/kernels.md)."""

from __future__ import annotations

import tracemalloc
from pathlib import Path

import numpy as np
import pytest

import matryo_fast as mf


def _placed(x: np.ndarray, skew_floats: int) -> np.ndarray:
    """A copy of ``x`` whose buffer starts ``skew_floats`` floats after a 64-byte boundary."""
    buf = np.empty(x.size + 32, dtype=np.float32)
    start = (-buf.ctypes.data % 64) // 4 + skew_floats
    out = buf[start : start + x.size].reshape(x.shape)
    out[...] = x
    assert (out.ctypes.data - skew_floats * 4) % 64 == 0
    return out


def test_array_corpus_is_not_copied() -> None:
    rng = np.random.default_rng(1)
    x = rng.standard_normal((20_000, 384), dtype=np.float32)  # 30 MiB
    q = rng.standard_normal(384).astype(np.float32)
    mf.topk(q, x, dim=64, k=5)  # warm-up: first-call allocations are not the array's
    tracemalloc.start()
    try:
        for view in (x, x[:, :128], np.asarray(x[::2])):
            mf.topk(q, view, dim=64, k=5)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    # A copy of the corpus (or of a view, 7.5 MiB at least) would show in numpy's traced
    # allocations; the scan itself allocates only per-call results.
    assert peak < x.nbytes // 16, f"{peak} bytes allocated for a {x.nbytes}-byte corpus"


@pytest.mark.parametrize("skew", [0, 1, 4, 15])
@pytest.mark.parametrize("dim", [16, 100, 128, 256])
def test_buffer_placement_does_not_change_results(tmp_path: Path, skew: int, dim: int) -> None:
    rng = np.random.default_rng(dim)
    x = rng.standard_normal((3_000, 256), dtype=np.float32)
    q = rng.standard_normal((3, 256)).astype(np.float32)
    np.save(tmp_path / "c.npy", x)
    want = mf.topk(q, mf.open_corpus(tmp_path / "c.npy"), dim=dim, k=7)
    got = mf.topk(q, _placed(x, skew), dim=dim, k=7)
    np.testing.assert_array_equal(got.indices, want.indices)
    np.testing.assert_array_equal(got.scores, want.scores)
