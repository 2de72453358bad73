"""`CorpusWriter` and `save_corpus`: what they write, what they refuse, and what they leave behind.

Every test checks the directory listing (hidden files included), so a leftover partial file
is caught as well as a missing or replaced target.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from test_topk import assert_valid_topk

import matryo_fast as mf

D = 16


def _rows(n: int, seed: int = 0, dtype: Any = np.float32) -> Any:
    return np.random.default_rng(seed).standard_normal((n, D)).astype(dtype)


def listing(directory: Path) -> list[str]:
    return sorted(os.listdir(directory))


def assert_corpus_file(path: Path, expected: Any) -> None:
    """``path`` is a float32 C-order .npy equal to ``expected`` (cast to float32)."""
    loaded = np.load(path)
    assert loaded.dtype == np.dtype("<f4") and loaded.flags.c_contiguous
    assert loaded.shape == np.shape(expected)
    np.testing.assert_array_equal(loaded, np.asarray(expected).astype(np.float32))
    np.testing.assert_array_equal(np.load(path, mmap_mode="r"), loaded)


# ----------------------------------------------------------------------------- round trips


def test_writer_round_trip(tmp_path: Path) -> None:
    path = tmp_path / "emb.npy"
    batches = [_rows(5, 1), _rows(0, 2), _rows(1, 3), _rows(130, 4)]
    with mf.CorpusWriter(path, dim=D) as w:
        for b in batches:
            w.append(b)
        assert w.rows == 136
        assert not path.exists()  # only moved into place on close
    assert_corpus_file(path, np.concatenate(batches))
    assert listing(tmp_path) == ["emb.npy"]


def test_close_returns_the_path_and_is_idempotent(tmp_path: Path) -> None:
    path = tmp_path / "emb.npy"
    w = mf.CorpusWriter(str(path), dim=D)
    w.append(_rows(3))
    assert Path(w.close()) == path
    assert Path(w.close()) == path
    with pytest.raises(ValueError, match=r"(?i)closed"):
        w.append(_rows(1))
    assert_corpus_file(path, _rows(3))


@pytest.mark.parametrize("batch_rows", [1, 7, 64, 65536])
def test_save_corpus_round_trip(tmp_path: Path, batch_rows: int) -> None:
    x = _rows(64, 5)
    out = mf.save_corpus(tmp_path / "emb.npy", x, batch_rows=batch_rows)
    assert Path(out) == tmp_path / "emb.npy"
    assert_corpus_file(tmp_path / "emb.npy", x)
    assert listing(tmp_path) == ["emb.npy"]


def test_save_corpus_from_a_memmap_and_a_list(tmp_path: Path) -> None:
    x = _rows(40, 6, np.float64)
    np.save(tmp_path / "src.npy", x)
    mf.save_corpus(tmp_path / "a.npy", np.load(tmp_path / "src.npy", mmap_mode="r"), batch_rows=9)
    assert_corpus_file(tmp_path / "a.npy", x)
    mf.save_corpus(tmp_path / "b.npy", x[:3].tolist())
    assert_corpus_file(tmp_path / "b.npy", x[:3])


@pytest.mark.parametrize("dtype", [np.float64, np.float16, np.float32, ">f8", ">f4"])
def test_float_dtypes_are_cast_to_float32(tmp_path: Path, dtype: Any) -> None:
    x = (_rows(20, 7, np.float64) * 3).astype(dtype)
    with mf.CorpusWriter(tmp_path / "emb.npy", dim=D) as w:
        w.append(x[:10])
        w.append(x[10:])
    assert_corpus_file(tmp_path / "emb.npy", x.astype(np.float32))


def test_one_dimensional_rows(tmp_path: Path) -> None:
    x = _rows(3, 8)
    with mf.CorpusWriter(tmp_path / "emb.npy", dim=D) as w:
        w.append(x[0])
        w.append(x[1].astype(np.float64))
        w.append(x[2:])
        assert w.rows == 3
    assert_corpus_file(tmp_path / "emb.npy", x)


def test_written_file_searches_like_the_array(backend: str, tmp_path: Path) -> None:
    x = _rows(777, 9)
    path = mf.save_corpus(tmp_path / "emb.npy", x, batch_rows=100)
    q = np.stack([x[5], _rows(1, 10)[0]])
    expected = mf.topk(q, x, dim=8, k=20)
    assert_valid_topk(expected.scores, expected.indices, q, x, 8, 20)
    corpus = mf.open_corpus(path)
    assert corpus.shape == (777, D)
    for c in (path, str(path), corpus, np.load(path, mmap_mode="r")):
        got = mf.topk(q, c, dim=8, k=20)
        np.testing.assert_array_equal(got.indices, expected.indices)
        np.testing.assert_array_equal(got.scores, expected.scores)
    f = mf.funnel(q, corpus, k=5, dims=(4, D), candidates=(50,))
    np.testing.assert_array_equal(
        f.indices, mf.funnel(q, x, k=5, dims=(4, D), candidates=(50,)).indices
    )


def test_empty_writer_makes_a_valid_empty_corpus(backend: str, tmp_path: Path) -> None:
    path = tmp_path / "empty.npy"
    with mf.CorpusWriter(path, dim=D):
        pass
    assert_corpus_file(path, np.zeros((0, D), dtype=np.float32))
    assert mf.open_corpus(path).shape == (0, D)
    q = _rows(2, 11)
    for c in (path, mf.open_corpus(path), np.load(path), np.load(path, mmap_mode="r")):
        res = mf.topk(q, c, k=5)
        assert res.scores.shape == res.indices.shape == (2, 0)
        assert res.scores.dtype == np.float32 and res.indices.dtype == np.int64
        assert mf.topk(q[0], c, dim=4, k=1).indices.shape == (0,)
    mf.save_corpus(tmp_path / "empty2.npy", np.zeros((0, D)))
    assert_corpus_file(tmp_path / "empty2.npy", np.zeros((0, D), dtype=np.float32))


# ---------------------------------------------------------------------- existing targets


def test_refuses_to_overwrite_and_leaves_the_file_untouched(tmp_path: Path) -> None:
    path = tmp_path / "emb.npy"
    path.write_bytes(b"precious bytes")
    with pytest.raises(FileExistsError, match=r"overwrite=True"):
        mf.CorpusWriter(path, dim=D)
    with pytest.raises(FileExistsError):
        mf.save_corpus(path, _rows(4))
    assert path.read_bytes() == b"precious bytes"
    assert listing(tmp_path) == ["emb.npy"]


def test_overwrite_replaces_only_once_complete(tmp_path: Path) -> None:
    path = tmp_path / "emb.npy"
    old = _rows(4, 12)
    np.save(path, old)
    before = path.read_bytes()
    with mf.CorpusWriter(path, dim=D, overwrite=True) as w:
        w.append(_rows(9, 13))
        assert path.read_bytes() == before  # the old file stays until the new one is done
    assert_corpus_file(path, _rows(9, 13))
    mf.save_corpus(path, _rows(2, 14), overwrite=True)
    assert_corpus_file(path, _rows(2, 14))
    assert listing(tmp_path) == ["emb.npy"]


def test_failed_overwrite_keeps_the_old_file(tmp_path: Path) -> None:
    path = tmp_path / "emb.npy"
    np.save(path, _rows(4, 15))
    before = path.read_bytes()
    with pytest.raises(RuntimeError, match="encoder crashed"):
        with mf.CorpusWriter(path, dim=D, overwrite=True) as w:
            w.append(_rows(9, 16))
            raise RuntimeError("encoder crashed")
    assert path.read_bytes() == before
    bad = _rows(5, 17)
    bad[3, 2] = np.nan
    with pytest.raises(ValueError, match=r"\brow 3\b"):
        mf.save_corpus(path, bad, overwrite=True)
    assert path.read_bytes() == before
    assert listing(tmp_path) == ["emb.npy"]


def test_target_created_while_writing_is_not_clobbered(tmp_path: Path) -> None:
    """'An existing file is never replaced unless overwrite=True' also holds when the file
    appears between opening the writer and closing it (another process, a second run)."""
    path = tmp_path / "emb.npy"
    w = mf.CorpusWriter(path, dim=D)
    try:
        w.append(_rows(3))
        path.write_bytes(b"someone else's file")
        with pytest.raises(FileExistsError):
            w.close()
        assert path.read_bytes() == b"someone else's file"
    finally:
        w.abort()


def test_two_writers_to_one_target_keep_their_own_rows(tmp_path: Path) -> None:
    """Each writer's file holds exactly the rows appended to it: two writers for the same
    target in one process must not share (and corrupt) one partial file."""
    path = tmp_path / "emb.npy"
    first = mf.CorpusWriter(path, dim=D)
    second = mf.CorpusWriter(path, dim=D, overwrite=True)
    try:
        first.append(_rows(3, 1))
        second.append(_rows(1, 2))
        first.close()
        assert_corpus_file(path, _rows(3, 1))
        second.close()
        assert_corpus_file(path, _rows(1, 2))
        assert listing(tmp_path) == ["emb.npy"]
    finally:
        first.abort()
        second.abort()


# ------------------------------------------------------------------ failures leave nothing


def test_exception_inside_with_leaves_nothing(tmp_path: Path) -> None:
    path = tmp_path / "emb.npy"
    with pytest.raises(KeyboardInterrupt):
        with mf.CorpusWriter(path, dim=D) as w:
            w.append(_rows(50))
            raise KeyboardInterrupt
    assert not path.exists()
    assert listing(tmp_path) == []
    # the name is free again afterwards
    with mf.CorpusWriter(path, dim=D) as w:
        w.append(_rows(2))
    assert_corpus_file(path, _rows(2))


def test_abort_discards(tmp_path: Path) -> None:
    w = mf.CorpusWriter(tmp_path / "emb.npy", dim=D)
    w.append(_rows(5))
    w.abort()
    w.abort()
    assert listing(tmp_path) == []


@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
def test_non_finite_row_is_named(tmp_path: Path, bad: float) -> None:
    path = tmp_path / "emb.npy"
    with pytest.raises(ValueError, match=r"(?i)\brow 7\b.*(nan|inf)"):
        with mf.CorpusWriter(path, dim=D) as w:
            w.append(_rows(5))
            batch = _rows(4, 1, np.float64)
            batch[2, 9] = bad
            batch[3, 0] = bad  # the first bad row is the one named
            w.append(batch)
    assert listing(tmp_path) == []


def test_rejected_batch_writes_nothing(tmp_path: Path) -> None:
    """A batch that raises adds no rows; the writer can go on and the file has the good ones."""
    path = tmp_path / "emb.npy"
    w = mf.CorpusWriter(path, dim=D)
    w.append(_rows(3, 1))
    bad = _rows(4, 2)
    bad[1, 1] = np.nan
    for batch, error in (
        (bad, ValueError),
        (_rows(2)[:, :5], ValueError),
        (np.ones((2, D), dtype=np.int32), TypeError),
    ):
        with pytest.raises(error):
            w.append(batch)
        assert w.rows == 3
    w.append(_rows(2, 3))
    w.close()
    assert_corpus_file(path, np.concatenate([_rows(3, 1), _rows(2, 3)]))


def test_values_too_large_for_float32(tmp_path: Path) -> None:
    """1e300 is finite in float64 but Inf in float32: ValueError, and no warning on the way."""
    x = _rows(3, 4, np.float64)
    x[1, 4] = 1e300
    with pytest.raises(ValueError, match=r"(?i)(large|overflow|float32)"):
        with mf.CorpusWriter(tmp_path / "emb.npy", dim=D) as w:
            w.append(x)
    assert listing(tmp_path) == []


@pytest.mark.parametrize("shape", [(3, D + 1), (3, D - 1), (D + 1,), (2, 3, D), (), (0, D - 1)])
def test_wrong_shape(tmp_path: Path, shape: tuple[int, ...]) -> None:
    with mf.CorpusWriter(tmp_path / "emb.npy", dim=D) as w:
        with pytest.raises(ValueError, match=rf"\(n, {D}\)"):
            w.append(np.ones(shape))
    assert_corpus_file(tmp_path / "emb.npy", np.zeros((0, D)))


@pytest.mark.parametrize(
    "dtype", [np.int32, np.int64, np.uint8, np.bool_, np.complex64, "U3", object]
)
def test_non_float_dtype(tmp_path: Path, dtype: Any) -> None:
    with pytest.raises(TypeError, match=r"(?i)(float|dtype)"):
        with mf.CorpusWriter(tmp_path / "emb.npy", dim=D) as w:
            w.append(np.zeros((2, D), dtype=dtype))
    with pytest.raises(TypeError):
        mf.save_corpus(tmp_path / "other.npy", np.zeros((2, D), dtype=dtype))
    assert listing(tmp_path) == []


def test_bad_writer_arguments(tmp_path: Path) -> None:
    for dim in (0, -3):
        with pytest.raises(ValueError, match=r"(?i)\bdim"):
            mf.CorpusWriter(tmp_path / "emb.npy", dim=dim)
    with pytest.raises(ValueError, match=r"(?i)2-D"):
        mf.save_corpus(tmp_path / "emb.npy", np.ones(D))
    with pytest.raises(FileNotFoundError):
        mf.CorpusWriter(tmp_path / "no_such_dir" / "emb.npy", dim=D)
    assert listing(tmp_path) == []


@pytest.mark.parametrize("dim", [0, -3, 2.5, True, "8"])
def test_corpus_writer_refuses_a_bad_width(tmp_path: Path, dim: object) -> None:
    with pytest.raises(ValueError, match="dim must be a positive int"):
        mf.CorpusWriter(tmp_path / "x.npy", dim)  # type: ignore[arg-type]
    assert not list(tmp_path.iterdir())
