"""``CorpusWriter(..., resumable=True)``: a crash keeps what the last ``sync`` recorded, no more."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import numpy as np
import pytest

import matryo_fast as mf


def rows(n: int, seed: int, d: int = 12) -> np.ndarray[Any, np.dtype[np.float32]]:
    return np.random.default_rng(seed).standard_normal((n, d)).astype(np.float32)


def test_a_crash_after_sync_resumes_from_the_synced_rows(tmp_path: Path) -> None:
    target = tmp_path / "emb.npy"
    a, b, lost, c = rows(5, 0), rows(7, 1), rows(3, 2), rows(4, 3)
    w = mf.CorpusWriter(target, 12, resumable=True)
    w.append(a)
    w.sync()
    w.append(b)
    w.sync()
    w.append(lost)  # written but never synced: a crash now must drop it
    w._file.flush()
    w._file.close()  # the process dies: no close(), no abort()
    assert not target.exists()
    partial = tmp_path / ".emb.npy.partial"
    assert partial.stat().st_size > 128 + 12 * 4 * 12
    again = mf.CorpusWriter(target, 12, resumable=True)
    assert again.rows == 12
    again.append(c)
    again.close()
    got = np.load(target)
    np.testing.assert_array_equal(got, np.concatenate([a, b, c]))
    assert not partial.exists()
    assert mf.open_corpus(target).shape == (16, 12)


def test_an_exception_inside_the_with_block_keeps_the_partial_file(tmp_path: Path) -> None:
    target = tmp_path / "emb.npy"
    with pytest.raises(RuntimeError), mf.CorpusWriter(target, 12, resumable=True) as w:
        w.append(rows(3, 0))
        w.sync()
        raise RuntimeError("interrupted")
    assert not target.exists()
    again = mf.CorpusWriter(target, 12, resumable=True)
    assert again.rows == 3
    again.abort()
    assert not (tmp_path / ".emb.npy.partial").exists()


def test_a_partial_file_of_another_width_or_cut_short_is_refused(tmp_path: Path) -> None:
    target = tmp_path / "emb.npy"
    w = mf.CorpusWriter(target, 12, resumable=True)
    w.append(rows(4, 0))
    w.sync()
    w._file.close()
    with pytest.raises(ValueError, match="not a partial corpus of width 8"):
        mf.CorpusWriter(target, 8, resumable=True)
    partial = tmp_path / ".emb.npy.partial"
    os.truncate(partial, partial.stat().st_size - 10)
    with pytest.raises(ValueError, match="cut short"):
        mf.CorpusWriter(target, 12, resumable=True)
