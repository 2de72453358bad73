"""The prefix-blocked layout: written by save_prefix_blocked, mapped by open_corpus, and
searched with bitwise the same results as the row-major data."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

import matryo_fast as mf


def _data(rows: int = 3001, cols: int = 100) -> np.ndarray:
    rng = np.random.default_rng(11)
    x = (rng.standard_normal((rows, cols)) / np.sqrt(1 + np.arange(cols) / 16)).astype(np.float32)
    x[[5, 50, rows - 1]] = x[7]  # ties
    x[9] = 0.0
    return x


def _header_widths(path: Path) -> list[int]:
    raw = path.read_bytes()
    assert int.from_bytes(raw[8:12], "little") == 2  # format version 2 (docs/quantized.md)
    n = int.from_bytes(raw[12:16], "little")
    return [int.from_bytes(raw[40 + 8 * i : 48 + 8 * i], "little") for i in range(n)]


@pytest.mark.parametrize(
    ("how", "widths"),
    [
        ({"block": 16}, [16] * 6 + [4]),
        ({"block": 32}, [32, 32, 32, 4]),
        ({}, [64, 36]),
        ({"split_at": (16,)}, [16, 84]),
        ({"split_at": [32, np.int64(64)]}, [32, 32, 36]),
        ({"split_at": ()}, [100]),
    ],
)
def test_blocked_equals_row_major_bitwise(
    how: dict[str, object], widths: list[int], tmp_path: Path, backend: str
) -> None:
    x = _data()
    path = mf.save_prefix_blocked(tmp_path / "b.mfb", x, **how)  # type: ignore[arg-type]
    assert _header_widths(path) == widths
    corpus = mf.open_corpus(path)
    assert corpus.shape == x.shape and corpus.layout == "prefix-blocked"
    q = np.vstack([x[7], np.random.default_rng(2).standard_normal((4, 100))]).astype(np.float32)
    for dim in (1, 15, 16, 17, 40, 64, 65, 100):
        for queries in (q[0], q):
            a, b = mf.topk(queries, corpus, dim=dim, k=25), mf.topk(queries, x, dim=dim, k=25)
            np.testing.assert_array_equal(a.indices, b.indices)
            np.testing.assert_array_equal(a.scores.view(np.uint32), b.scores.view(np.uint32))
    f = mf.funnel(q, corpus, k=10, dims=(16, 64, 100), candidates=(300, 50))
    g = mf.funnel(q, x, k=10, dims=(16, 64, 100), candidates=(300, 50))
    np.testing.assert_array_equal(f.indices, g.indices)
    np.testing.assert_array_equal(f.scores, g.scores)


def test_sources_and_errors(tmp_path: Path) -> None:
    x = _data(200, 40)
    npy = tmp_path / "x.npy"
    np.save(npy, x)
    for source in (npy, mf.open_corpus(npy), np.load(npy, mmap_mode="r"), x.astype(np.float64)):
        out = tmp_path / "out.mfb"
        mf.save_prefix_blocked(out, source, block=16, overwrite=True)
        got, want = mf.topk(x[3], out, dim=40, k=5), mf.topk(x[3], x, dim=40, k=5)
        np.testing.assert_array_equal(got.indices, want.indices)
    with pytest.raises(FileExistsError):
        mf.save_prefix_blocked(tmp_path / "out.mfb", x)
    with pytest.raises(ValueError, match="multiple of 16"):
        mf.save_prefix_blocked(tmp_path / "c.mfb", x, block=12)
    for split in ((12,), (32, 16), (16, 16), (0,), (48,), (16.0,), ("16",), 16):
        with pytest.raises(ValueError, match="split_at must be strictly increasing multiples of 16"):
            mf.save_prefix_blocked(tmp_path / "c.mfb", x, split_at=split)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="not both"):
        mf.save_prefix_blocked(tmp_path / "c.mfb", x, block=16, split_at=(16,))
    bad = x.copy()
    bad[17, 3] = np.nan
    with pytest.raises(ValueError, match="row 17"):
        mf.save_prefix_blocked(tmp_path / "d.mfb", bad, block=16)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out.mfb", "x.npy"]  # no partial files
    with pytest.raises(ValueError, match="prefix-blocked"):
        mf.open_corpus(tmp_path / "out.mfb").as_array()
    raw = (tmp_path / "out.mfb").read_bytes()
    (tmp_path / "cut.mfb").write_bytes(raw[:-8])
    with pytest.raises(ValueError, match="truncated"):
        mf.open_corpus(tmp_path / "cut.mfb")
