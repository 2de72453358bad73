"""Every bad input of the contract raises the documented exception, with a useful message.

Messages are matched loosely (case-insensitive key words), so wording can change freely.
Corrupt ``.npy`` files are written byte by byte.
"""

from __future__ import annotations

import ast
import struct
from pathlib import Path
from typing import Any

import numpy as np
import pytest

import matryo_fast as mf

RNG = np.random.default_rng(0)
X = RNG.standard_normal((20, 16)).astype(np.float32)
Q = RNG.standard_normal(16).astype(np.float32)

DIM = r"(?i)\bdim"
K = r"(?i)(\bk\b|top.?k)"


# ------------------------------------------------------------------------------- dim and k


@pytest.mark.parametrize("dim", [0, -1, -(2**70), 17, 10**6, 2**63, 2**70])
def test_bad_dim(dim: int) -> None:
    with pytest.raises(ValueError, match=DIM):
        mf.topk(Q, X, dim=dim, k=3)


def test_dim_wider_than_query_but_not_corpus() -> None:
    with pytest.raises(ValueError, match=DIM):
        mf.topk(Q[:8], X, dim=9, k=3)
    with pytest.raises(ValueError, match=DIM):
        mf.topk(Q[:8], X, dim=None, k=3)  # None means all 16 corpus columns


def test_dim_on_a_zero_width_corpus() -> None:
    with pytest.raises(ValueError, match=DIM):
        mf.topk(Q, np.zeros((5, 0), np.float32), dim=None, k=3)


@pytest.mark.parametrize("k", [0, -1, -5, -(2**31), -(2**63), -(2**70)])
def test_bad_k(k: int) -> None:
    with pytest.raises(ValueError, match=K):
        mf.topk(Q, X, dim=16, k=k)


@pytest.mark.parametrize("k", [2**31, 2**32 + 1, 2**63 - 1, 2**63, 2**64, 2**70])
def test_huge_k_returns_all_rows(k: int) -> None:
    res = mf.topk(Q, X, dim=16, k=k)
    assert res.indices.shape == (20,)
    assert sorted(res.indices.tolist()) == list(range(20))


@pytest.mark.parametrize("bad", [1.5, 3.0, "3", None])
def test_k_must_be_an_int(bad: Any) -> None:
    with pytest.raises(TypeError):
        mf.topk(Q, X, dim=16, k=bad)


def test_numpy_integer_k_and_dim_accepted() -> None:
    res = mf.topk(Q, X, dim=np.int64(8), k=np.int32(4))
    np.testing.assert_array_equal(res.indices, mf.topk(Q, X, dim=8, k=4).indices)


# ------------------------------------------------------------------------------- the query


@pytest.mark.parametrize("shape", [(), (2, 3, 16), (1, 1, 1, 16)])
def test_query_wrong_rank(shape: tuple[int, ...]) -> None:
    with pytest.raises(ValueError, match=r"(?i)(1-D|2-D|rank|ndim|shape|dimension)"):
        mf.topk(np.ones(shape), X, dim=1, k=3)


@pytest.mark.parametrize("dtype", [np.int32, np.int64, np.float16, np.complex64, np.bool_])
def test_query_wrong_dtype(dtype: Any) -> None:
    with pytest.raises(TypeError, match=r"(?i)(dtype|float)"):
        mf.topk(np.ones(16, dtype=dtype), X, dim=16, k=3)


@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_query_nan_inf_within_dim(bad: float, dtype: Any) -> None:
    q = Q.astype(dtype)
    q[3] = bad
    with pytest.raises(ValueError, match=r"(?i)(nan|inf|finite)"):
        mf.topk(q, X, dim=8, k=3)
    qb = np.stack([Q, Q, q]).astype(dtype)
    with pytest.raises(ValueError, match=r"(?i)(nan|inf|finite)"):
        mf.topk(qb, X, dim=8, k=3)


def test_float64_query_that_overflows_float32() -> None:
    """1e300 is finite in float64 but Inf in float32: ValueError (and no warning on the way)."""
    q = Q.astype(np.float64)
    q[2] = 1e300
    with pytest.raises(ValueError, match=r"(?i)(large|overflow|inf|float32)"):
        mf.topk(q, X, dim=8, k=3)


def test_query_not_modified_on_error() -> None:
    q = Q.astype(np.float64)
    q[3] = np.nan
    before = q.tobytes()
    with pytest.raises(ValueError):
        mf.topk(q, X, dim=8, k=3)
    assert q.tobytes() == before


# ------------------------------------------------------------------------------ the corpus


@pytest.mark.parametrize(
    "corpus", [X.tolist(), tuple(map(tuple, X.tolist())), 3.0, None, {"a": 1}, b"emb.npy"]
)
def test_corpus_wrong_type(corpus: Any) -> None:
    with pytest.raises(TypeError):
        mf.topk(Q, corpus, dim=16, k=3)


@pytest.mark.parametrize(
    "dtype", [np.float64, np.float16, np.int32, np.int8, np.uint8, np.complex64, ">f4"]
)
def test_corpus_wrong_dtype_says_astype(dtype: Any) -> None:
    corpus = X.astype(dtype)
    before = corpus.tobytes()
    with pytest.raises(TypeError, match=r"astype"):
        mf.topk(Q, corpus, dim=16, k=3)
    assert corpus.tobytes() == before and corpus.dtype == np.dtype(dtype)


@pytest.mark.parametrize("shape", [(16,), (2, 10, 16), (1, 1, 1, 16)])
def test_corpus_wrong_rank(shape: tuple[int, ...]) -> None:
    with pytest.raises(ValueError, match=r"(?i)(2-D|rank|ndim|shape|dimension)"):
        mf.topk(Q, np.ones(shape, np.float32), dim=16, k=3)


def test_corpus_fortran_order_refused() -> None:
    with pytest.raises(ValueError, match=r"(?i)(fortran|contiguous)"):
        mf.topk(Q, np.asfortranarray(X), dim=16, k=3)


@pytest.mark.parametrize("view", ["every_other_column", "transposed"])
def test_corpus_column_strided_refused(view: str) -> None:
    big = RNG.standard_normal((40, 40)).astype(np.float32)
    # (20, 16) views whose columns are 8 and 160 bytes apart
    corpus = big[:20, :32:2] if view == "every_other_column" else big.T[:20, :16]
    assert corpus.shape == (20, 16) and corpus.strides[1] != 4
    with pytest.raises(ValueError, match=r"(?i)(contiguous|stride|fortran)"):
        mf.topk(Q, corpus, dim=16, k=3)


def test_corpus_misaligned_buffer_refused() -> None:
    """float32 data at an odd address cannot be viewed in place; refused, never copied."""
    buf = np.zeros(4 * 20 * 16 + 1, np.uint8)
    corpus = np.frombuffer(buf.data, dtype=np.float32, offset=1, count=20 * 16).reshape(20, 16)
    assert corpus.ctypes.data % 4 != 0
    with pytest.raises(ValueError, match=r"(?i)(align|contiguous)"):
        mf.topk(Q, corpus, dim=16, k=3)


def _as_layout(x: np.ndarray, layout: str, tmp_path: Path) -> Any:
    if layout == "array":
        return x
    path = tmp_path / "c.npy"
    np.save(path, x)
    if layout == "memmap":
        return np.load(path, mmap_mode="r")
    if layout == "corpus":
        return mf.open_corpus(path)
    return path


@pytest.mark.parametrize("layout", ["array", "memmap", "path", "corpus"])
@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
def test_corpus_nan_inf_in_scanned_prefix_names_row(
    layout: str, bad: float, tmp_path: Path
) -> None:
    x = X.copy()
    x[5, 6] = bad
    corpus = _as_layout(x, layout, tmp_path)
    with pytest.raises(ValueError, match=r"(?i)row\D{0,3}5\b"):
        mf.topk(Q, corpus, dim=8, k=3)
    # the same value past the scanned prefix is never read
    res = mf.topk(Q, corpus, dim=6, k=20)
    assert sorted(res.indices.tolist()) == list(range(20))
    assert np.isfinite(res.scores).all()


def test_corpus_nan_in_last_row_of_a_long_corpus() -> None:
    x = RNG.standard_normal((10007, 33)).astype(np.float32)
    x[10006, 32] = np.nan
    with pytest.raises(ValueError, match=r"(?i)row\D{0,3}10006\b"):
        mf.topk(RNG.standard_normal(33), x, dim=33, k=3)
    assert mf.topk(RNG.standard_normal(33), x, dim=32, k=3).indices.shape == (3,)


def test_corpus_several_bad_rows_names_the_first() -> None:
    """With bad rows in several parallel chunks the message is deterministic: the lowest row."""
    x = RNG.standard_normal((40000, 16)).astype(np.float32)
    x[[30000, 39999]] = np.nan
    x[5000, 3] = np.inf
    for _ in range(5):
        for q in (Q, np.stack([Q, Q, Q])):
            with pytest.raises(ValueError, match=r"(?i)row\D{0,3}5000\b"):
                mf.topk(q, x, k=3)


def test_corpus_with_no_rows() -> None:
    """N = 0 is not in the contract: either a clear ValueError or an empty result, no crash."""
    try:
        res = mf.topk(Q, np.zeros((0, 16), np.float32), dim=16, k=3)
    except ValueError:
        return
    assert res.indices.shape == (0,) and res.scores.shape == (0,)


# ------------------------------------------------------------------------------ .npy files

MAGIC = b"\x93NUMPY"


def npy_bytes(
    header: str | bytes,
    data: bytes,
    *,
    magic: bytes = MAGIC,
    version: tuple[int, int] = (1, 0),
    header_len: int | None = None,
    align: bool = True,
) -> bytes:
    """A hand-made ``.npy`` file: magic, version, header length, header text, data."""
    head = header.encode("latin1") if isinstance(header, str) else header
    len_fmt = "<H" if version[0] == 1 else "<I"
    prefix = len(magic) + 2 + struct.calcsize(len_fmt)
    if align:  # pad with spaces and a newline so the data starts at a multiple of 64
        total = -(-(prefix + len(head) + 1) // 64) * 64
        head = head + b" " * (total - prefix - len(head) - 1) + b"\n"
    n = len(head) if header_len is None else header_len
    return magic + bytes(version) + struct.pack(len_fmt, n) + head + data


def header_for(descr: str = "<f4", fortran: bool = False, shape: Any = (3, 4)) -> str:
    return f"{{'descr': '{descr}', 'fortran_order': {fortran}, 'shape': {shape!r}, }}"


DATA = np.arange(12, dtype="<f4").tobytes()


def test_npy_bytes_helper_matches_numpy(tmp_path: Path) -> None:
    path = tmp_path / "ok.npy"
    path.write_bytes(npy_bytes(header_for(), DATA))
    np.testing.assert_array_equal(np.load(path), np.arange(12, dtype=np.float32).reshape(3, 4))
    assert mf.open_corpus(path).shape == (3, 4)
    assert mf.topk(np.ones(4), path, k=3).indices.shape == (3,)


BAD_VALUE_FILES: dict[str, tuple[bytes, str]] = {
    "empty": (b"", r"(?i)(empty|truncat|short|magic|header|npy)"),
    "magic_only": (MAGIC, r"(?i)(truncat|short|header|version)"),
    "magic_and_version_only": (MAGIC + b"\x01\x00", r"(?i)(truncat|short|header)"),
    "wrong_magic": (npy_bytes(header_for(), DATA, magic=b"\x93NUMPZ"), r"(?i)(magic|npy)"),
    "pickle_magic": (b"\x80\x04" + b"\x00" * 200, r"(?i)(magic|npy)"),
    "version_9": (npy_bytes(header_for(), DATA, version=(9, 0)), r"(?i)version"),
    "version_0": (npy_bytes(header_for(), DATA, version=(0, 1)), r"(?i)version"),
    "header_len_past_eof": (
        npy_bytes(header_for(), b"", header_len=60000, align=False),
        r"(?i)(header|truncat|short|eof|end)",
    ),
    "header_not_a_dict": (npy_bytes("[1, 2, 3]", DATA), r"(?i)header"),
    "header_garbage": (npy_bytes("{'descr': '<f4', 'fortr", DATA), r"(?i)header"),
    "header_missing_shape": (
        npy_bytes("{'descr': '<f4', 'fortran_order': False, }", DATA),
        r"(?i)(header|shape)",
    ),
    "header_missing_descr": (
        npy_bytes("{'fortran_order': False, 'shape': (3, 4), }", DATA),
        r"(?i)(header|descr|dtype)",
    ),
    "header_code": (
        npy_bytes("{'descr': '<f4', 'fortran_order': False, 'shape': __import__('os'), }", DATA),
        r"(?i)(header|shape)",
    ),
    "shape_1d": (npy_bytes(header_for(shape=(12,)), DATA), r"(?i)(2-D|shape|rank|dimension)"),
    "shape_0d": (npy_bytes(header_for(shape=()), DATA[:4]), r"(?i)(2-D|shape|rank|dimension)"),
    "shape_3d": (
        npy_bytes(header_for(shape=(2, 3, 4)), np.zeros(24, "<f4").tobytes()),
        r"(?i)(2-D|shape|rank|dimension)",
    ),
    "shape_negative": (npy_bytes(header_for(shape=(-3, -4)), DATA), r"(?i)(shape|header|neg)"),
    "shape_not_ints": (npy_bytes(header_for(shape=(3, "4")), DATA), r"(?i)(shape|header)"),
    "shape_overflow": (
        npy_bytes(header_for(shape=(2**62, 2**62)), DATA),
        r"(?i)(shape|overflow|size|large|truncat|header)",
    ),
    "shape_u64_overflow": (
        npy_bytes(header_for(shape=(2**64 + 3, 4)), DATA),
        r"(?i)(shape|overflow|size|large|truncat|header)",
    ),
    "fortran_order": (npy_bytes(header_for(fortran=True), DATA), r"(?i)fortran"),
    "truncated_data": (npy_bytes(header_for(), DATA[:-4]), r"(?i)(truncat|short|size|length)"),
    "truncated_to_header": (npy_bytes(header_for(), b""), r"(?i)(truncat|short|size|length)"),
    "trailing_garbage": (
        npy_bytes(header_for(), DATA + b"junk"),
        r"(?i)(trailing|extra|size|length|garbage)",
    ),
    "trailing_row": (
        npy_bytes(header_for(), DATA + DATA[:16]),
        r"(?i)(trailing|extra|size|length|garbage)",
    ),
}


@pytest.mark.parametrize("name", sorted(BAD_VALUE_FILES))
def test_corrupt_npy_is_value_error(name: str, tmp_path: Path) -> None:
    content, pattern = BAD_VALUE_FILES[name]
    path = tmp_path / f"{name}.npy"
    path.write_bytes(content)
    with pytest.raises(ValueError, match=pattern):
        mf.open_corpus(path)
    with pytest.raises(ValueError, match=pattern):
        mf.topk(np.ones(4), path, dim=4, k=2)
    with pytest.raises(ValueError, match=pattern):
        mf.topk(np.ones(4), str(path), dim=4, k=2)


BAD_TYPE_FILES: dict[str, str] = {"float64": "<f8", "big_endian": ">f4", "int32": "<i4",
                                  "float16": "<f2", "object": "|O", "u4": "<u4"}


@pytest.mark.parametrize("name", sorted(BAD_TYPE_FILES))
def test_wrong_dtype_npy_is_type_error(name: str, tmp_path: Path) -> None:
    descr = BAD_TYPE_FILES[name]
    itemsize = np.dtype(descr).itemsize
    path = tmp_path / f"{name}.npy"
    path.write_bytes(npy_bytes(header_for(descr=descr), b"\x00" * (12 * itemsize)))
    pattern = r"(?i)(float32|f4|dtype)"
    with pytest.raises(TypeError, match=pattern):
        mf.open_corpus(path)
    with pytest.raises(TypeError, match=pattern):
        mf.topk(np.ones(4), path, dim=4, k=2)


def test_float64_npy_from_numpy_says_how_to_convert(tmp_path: Path) -> None:
    path = tmp_path / "f64.npy"
    np.save(path, X.astype(np.float64))
    with pytest.raises(TypeError, match=r"(?i)(astype|float32)"):
        mf.open_corpus(path)


def test_fortran_npy_from_numpy(tmp_path: Path) -> None:
    path = tmp_path / "f.npy"
    np.save(path, np.asfortranarray(X))
    assert "True" in path.read_bytes()[:128].decode("latin1")
    with pytest.raises(ValueError, match=r"(?i)fortran"):
        mf.open_corpus(path)
    with pytest.raises(ValueError, match=r"(?i)fortran"):
        mf.topk(Q, path, k=2)


def test_misaligned_data_offset_is_refused_or_correct(tmp_path: Path) -> None:
    """A legal but unusual header whose data starts at an offset that is not a multiple of 4."""
    x = np.arange(12, dtype=np.float32).reshape(3, 4) + 1
    path = tmp_path / "odd.npy"
    path.write_bytes(npy_bytes(header_for() + " \n", x.tobytes(), align=False))
    assert (10 + len(header_for()) + 2) % 4 != 0
    np.testing.assert_array_equal(np.load(path), x)
    try:
        res = mf.topk(x[1], path, k=3)
    except ValueError as e:
        assert any(w in str(e).lower() for w in ("align", "offset", "header")), str(e)
        return
    assert res.indices[0] == 1 and abs(float(res.scores[0]) - 1.0) < 1e-6


def test_empty_shape_npy(tmp_path: Path) -> None:
    """(0, 4) and (3, 0) files are legal .npy: no crash; a zero width cannot satisfy dim >= 1."""
    path = tmp_path / "w0.npy"
    path.write_bytes(npy_bytes(header_for(shape=(3, 0)), b""))
    with pytest.raises(ValueError, match=DIM):
        mf.topk(np.ones(4), path, dim=None, k=2)
    path = tmp_path / "n0.npy"
    path.write_bytes(npy_bytes(header_for(shape=(0, 4)), b""))
    try:
        res = mf.topk(np.ones(4), path, dim=4, k=2)
    except ValueError:
        return
    assert res.indices.shape == (0,)


def test_missing_file(tmp_path: Path) -> None:
    missing = tmp_path / "nope.npy"
    for call in (
        lambda: mf.open_corpus(missing),
        lambda: mf.open_corpus(str(missing)),
        lambda: mf.topk(Q, missing, k=2),
        lambda: mf.topk(Q, str(missing), k=2),
    ):
        with pytest.raises(FileNotFoundError):
            call()


def test_directory_is_not_a_corpus(tmp_path: Path) -> None:
    with pytest.raises((ValueError, OSError)):
        mf.open_corpus(tmp_path)


def test_header_dict_is_parsed_as_literal() -> None:
    """Sanity check of the helper: the headers above are Python literals as in the format spec."""
    assert ast.literal_eval(header_for())["shape"] == (3, 4)


# --------------------------------------------------------------------------- set_backend


@pytest.mark.parametrize("name", ["bogus", "", "avx3", "sse9", "scalar,avx2"])
def test_set_backend_unknown(name: str) -> None:
    try:
        with pytest.raises(ValueError, match=r"(?i)(backend|unknown|available)"):
            mf.set_backend(name)
    finally:
        mf.set_backend(None)


def test_set_backend_unavailable() -> None:
    unavailable = [b for b in ("scalar", "avx2", "avx512", "neon")
                   if b not in mf.backends()["available"]]
    if not unavailable:
        pytest.skip("every backend is available here")
    active = mf.backends()["active"]
    for name in unavailable:
        with pytest.raises(ValueError, match=r"(?i)(backend|available|support)"):
            mf.set_backend(name)
        assert mf.backends()["active"] == active
