"""Writing corpus files: float32, C-order ``.npy`` that :func:`matryo_fast.open_corpus` maps.

:class:`CorpusWriter` streams batches (say, from an encoder) to disk without holding the whole
matrix in memory. The file is written under a temporary name next to the target and renamed
into place only when complete, and an existing file is never replaced unless
``overwrite=True``: an interrupted run leaves nothing half-written under the target name.

>>> import numpy as np, tempfile, os, matryo_fast as mf
>>> path = os.path.join(tempfile.mkdtemp(), "emb.npy")
>>> with mf.CorpusWriter(path, dim=4) as w:
...     w.append(np.eye(4, dtype=np.float32))
...     w.append(np.ones((2, 4)))
>>> mf.open_corpus(path).shape
(6, 4)
"""

from __future__ import annotations

import operator
import os
import tempfile
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from types import TracebackType
from typing import Any, BinaryIO

import numpy as np
import numpy.typing as npt

__all__ = ["CorpusWriter", "as_float32_rows", "save_corpus", "save_prefix_blocked", "write_atomic"]

_MAGIC = b"\x93NUMPY\x01\x00"
_HEADER_BYTES = 128  # magic + version + length + dict text: room for any 64-bit shape


def _header(rows: int, dim: int) -> bytes:
    text = f"{{'descr': '<f4', 'fortran_order': False, 'shape': ({rows}, {dim}), }}"
    pad = _HEADER_BYTES - len(_MAGIC) - 2 - len(text) - 1
    body = (text + " " * pad + "\n").encode("ascii")
    return _MAGIC + len(body).to_bytes(2, "little") + body


def as_float32_rows(batch: Any, dim: int, *, first_row: int = 0) -> npt.NDArray[np.float32]:
    """A batch of rows checked for a corpus file: ``(n, dim)`` (or ``(dim,)``) floats, finite,
    as a C-order little-endian float32 array.

    Args:
        batch: The rows.
        dim: The row width the file has.
        first_row: The number of the batch's first row in the file (for messages).

    Raises:
        ValueError: Wrong shape, NaN/Inf (the message names the row), or values too large
            for float32.
        TypeError: A non-float array.
    """
    a = np.asarray(batch)
    if a.dtype.kind != "f":
        raise TypeError(f"rows must be floating point, got dtype {a.dtype}")
    if a.ndim == 1:
        a = a[None, :]
    if a.ndim != 2 or a.shape[1] != dim:
        raise ValueError(f"rows must have shape (n, {dim}), got {a.shape}")
    finite = np.isfinite(a).all(axis=1)
    if not finite.all():
        bad = int(np.argmin(finite))
        raise ValueError(f"row {first_row + bad} contains NaN or Inf")
    if a.dtype.itemsize > 4 and a.size and np.abs(a).max() > np.finfo(np.float32).max:
        raise ValueError("rows have values too large for float32 (they would overflow to Inf)")
    return np.ascontiguousarray(a, dtype="<f4")


class CorpusWriter:
    """Streams float32 rows of width ``dim`` into a new ``.npy`` corpus file.

    Args:
        path: The file to create.
        dim: Row width.
        overwrite: Replace an existing file (only once the new one is complete).
        resumable: Write to the fixed name ``.<name>.partial`` beside ``path`` and, if that file
            exists (an interrupted run), continue after the rows its last :meth:`sync`
            recorded; rows appended after that sync are dropped. ``rows`` says where it resumed.

    Raises:
        FileExistsError: ``path`` exists and ``overwrite`` is false.
        ValueError: ``dim`` < 1, or the partial file to resume is not this writer's (another
            width, or cut short).
    """

    def __init__(
        self, path: str | os.PathLike[str], dim: int, *, overwrite: bool = False, resumable: bool = False
    ) -> None:
        if int(dim) < 1:
            raise ValueError(f"dim must be at least 1, got {dim}")
        self.path = Path(path)
        self.dim = int(dim)
        self.rows = 0
        if self.path.exists() and not overwrite:
            raise FileExistsError(
                f"{self.path} exists; pass overwrite=True to replace it (it is kept until the "
                "new file is complete)"
            )
        self.overwrite = overwrite
        self.resumable = resumable
        if resumable:
            self._tmp = self.path.with_name(f".{self.path.name}.partial")
            self._file: Any = open(self._tmp, "r+b" if self._tmp.exists() else "w+b")
            self.rows = self._resume_rows()
            self._file.truncate(_HEADER_BYTES + self.rows * self.dim * 4)
            self._file.seek(0, os.SEEK_END)
            if self.rows == 0:
                self._file.seek(0)
                self._file.write(_header(0, self.dim))
            return
        fd, tmp = tempfile.mkstemp(dir=self.path.parent, prefix=f".{self.path.name}.", suffix=".partial")
        self._tmp = Path(tmp)
        self._file = os.fdopen(fd, "wb")  # closed in close()/abort()
        self._file.write(_header(0, self.dim))

    def _resume_rows(self) -> int:
        """The rows recorded by the last :meth:`sync` of the partial file (0 if new)."""
        head = self._file.read(_HEADER_BYTES)
        if not head:
            return 0
        rows: int | None = None
        if len(head) == _HEADER_BYTES and head.startswith(_MAGIC):
            text = head[len(_MAGIC) + 2 :].decode("ascii", "replace")
            shape = text.partition("'shape': (")[2].partition(")")[0].split(",")
            if len(shape) == 2 and shape[1].strip() == str(self.dim) and shape[0].strip().isdigit():
                rows = int(shape[0])
        size = os.fstat(self._file.fileno()).st_size
        if rows is None or size < _HEADER_BYTES + rows * self.dim * 4:
            self._file.close()
            raise ValueError(
                f"{self._tmp} is not a partial corpus of width {self.dim} (or it was cut short); "
                "delete it to start again"
            )
        return rows

    def sync(self) -> None:
        """Makes the rows appended so far durable and records their count in the file's header,
        so that a resumable writer opened after a crash continues from here."""
        if self._file is None:
            raise ValueError("the writer is closed")
        self._file.flush()
        os.fsync(self._file.fileno())
        self._file.seek(0)
        self._file.write(_header(self.rows, self.dim))
        self._file.flush()
        os.fsync(self._file.fileno())
        self._file.seek(0, os.SEEK_END)

    def append(self, batch: Any) -> None:
        """Appends rows: a ``(n, dim)`` (or ``(dim,)``) float array, cast to float32.

        Raises:
            ValueError: Wrong shape, or NaN/Inf (the message names the row).
            TypeError: A non-float array.
        """
        if self._file is None:
            raise ValueError("the writer is closed")
        a32 = as_float32_rows(batch, self.dim, first_row=self.rows)
        self._file.write(a32.tobytes())
        self.rows += a32.shape[0]

    def close(self) -> Path:
        """Finishes the header and moves the file into place. Returns the path."""
        if self._file is None:
            return self.path
        self._file.seek(0)
        self._file.write(_header(self.rows, self.dim))
        self._file.flush()
        os.fsync(self._file.fileno())
        self._file.close()
        self._file = None
        _move_into_place(self._tmp, self.path, overwrite=self.overwrite)
        return self.path

    def abort(self) -> None:
        """Discards what was written; the target path is untouched."""
        if self._file is not None:
            self._file.close()
            self._file = None
        self._tmp.unlink(missing_ok=True)

    def __enter__(self) -> CorpusWriter:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if exc_type is None:
            self.close()
        elif self.resumable and self._file is not None:
            self._file.close()  # keep the partial file: a later run resumes it
            self._file = None
        else:
            self.abort()


def save_corpus(
    path: str | os.PathLike[str], array: Any, *, overwrite: bool = False, batch_rows: int = 65536
) -> Path:
    """Writes a 2-D float array as a float32 corpus file, in batches (works on memmaps).

    Args:
        path: The file to create.
        array: ``(N, D)`` floating-point array (any float dtype; cast batch by batch).
        overwrite: Replace an existing file once the new one is complete.
        batch_rows: Rows converted at a time.

    Returns:
        The path written.
    """
    a = np.asarray(array)
    if a.ndim != 2:
        raise ValueError(f"array must be 2-D (N, D), got shape {a.shape}")
    with CorpusWriter(path, a.shape[1], overwrite=overwrite) as w:
        for start in range(0, a.shape[0], batch_rows):
            w.append(a[start : start + batch_rows])
    return Path(path)


def _move_into_place(tmp: Path, path: Path, *, overwrite: bool) -> None:
    """Renames the finished ``tmp`` to ``path``; without ``overwrite`` never replaces a file."""
    umask = os.umask(0)
    os.umask(umask)
    os.chmod(tmp, 0o666 & ~umask)  # mkstemp made it 0600; give it a normal file's mode
    if overwrite:
        os.replace(tmp, path)
        return
    try:
        # A hard link fails atomically if the target appeared meanwhile.
        os.link(tmp, path)
    except FileExistsError:
        tmp.unlink(missing_ok=True)
        raise FileExistsError(
            f"{path} was created by someone else while writing; nothing was replaced"
        ) from None
    except OSError:
        # No hard links on this file system: check, then rename (not atomic).
        if path.exists():
            tmp.unlink(missing_ok=True)
            raise FileExistsError(f"{path} exists; nothing was replaced") from None
        os.replace(tmp, path)
        return
    tmp.unlink()


TIERS = ("float32", "int8", "binary")


def _check_tiers(tiers: Any) -> tuple[str, ...]:
    if isinstance(tiers, str) or not isinstance(tiers, Sequence):
        raise TypeError(f"tiers must be a sequence of names, got {tiers!r}")
    bad = [t for t in tiers if t not in TIERS]
    if bad or not tiers:
        raise ValueError(f"tiers must be a non-empty subset of {TIERS}, got {tuple(tiers)!r}")
    return tuple(t for t in TIERS if t in tiers)


def _finite_f32(name: str, a: Any) -> npt.NDArray[np.float32]:
    """``a`` as float32, refusing NaN/Inf and values that overflow float32."""
    arr = np.asarray(a)
    if arr.dtype.kind not in "fiu":
        raise TypeError(f"{name} must be a float array, got dtype {arr.dtype}")
    if not np.isfinite(arr).all():
        raise ValueError(f"{name} contains NaN or Inf")
    if arr.size and np.abs(arr).max() > np.finfo(np.float32).max:
        raise ValueError(f"{name} has values too large for float32")
    return arr.astype(np.float32)


def _int8_ranges(
    a: npt.NDArray[Any], int8_ranges: Any, calibration: Any, batch_rows: int
) -> npt.NDArray[np.float32]:
    """The ``(2, D)`` float32 ranges of the int8 tier: given, from a calibration sample, or
    (neither given) the minima and maxima of the data, as sentence-transformers takes them."""
    cols = a.shape[1]
    if int8_ranges is not None and calibration is not None:
        raise ValueError("pass int8_ranges or calibration, not both")
    if int8_ranges is not None:
        r = _finite_f32("int8_ranges", int8_ranges)
        if r.shape != (2, cols):
            raise ValueError(f"int8_ranges must have shape (2, {cols}) (minima, maxima), got {r.shape}")
        return np.ascontiguousarray(r)
    if calibration is not None:
        c = _finite_f32("calibration", calibration)
        if c.ndim != 2 or c.shape[1] != cols or c.shape[0] == 0:
            raise ValueError(f"calibration must have shape (n, {cols}) with n >= 1, got {c.shape}")
        return np.ascontiguousarray(np.vstack((c.min(axis=0), c.max(axis=0))))
    lo = np.full(cols, np.inf, dtype=np.float32)
    hi = np.full(cols, -np.inf, dtype=np.float32)
    for r0 in range(0, a.shape[0], batch_rows):
        part = _finite_f32("source", a[r0 : r0 + batch_rows])
        np.minimum(lo, part.min(axis=0), out=lo)
        np.maximum(hi, part.max(axis=0), out=hi)
    if a.shape[0] == 0:
        lo[:] = hi[:] = 0.0
    return np.ascontiguousarray(np.vstack((lo, hi)))


def save_prefix_blocked(
    path: str | os.PathLike[str],
    source: Any,
    *,
    block: int | None = None,
    split_at: Sequence[int] | None = None,
    tiers: Sequence[str] = ("float32",),
    int8_ranges: Any = None,
    calibration: Any = None,
    overwrite: bool = False,
    batch_rows: int = 65536,
) -> Path:
    """Writes a corpus in the prefix-blocked layout: columns ``[0, block)`` of every row, then
    ``[block, 2 block)``, ... so that a search at a small prefix reads one contiguous range
    instead of a strided slice of every row. :func:`matryo_fast.open_corpus` maps it, and
    every float32 search gives bitwise the same results as on the row-major data.

    The file can hold quantized tiers beside (or instead of) the float32 values, each laid
    out in the same blocks: ``"binary"`` (``np.packbits(x > 0)``, what
    ``sentence_transformers.quantization.quantize_embeddings(x, "ubinary")`` gives) and
    ``"int8"`` (``quantize_embeddings(x, "int8", ranges=...)`` of the float32 values), searched
    with ``precision=`` in :func:`matryo_fast.topk` and :func:`matryo_fast.funnel`. The format
    is written and read by the Rust core; ``docs/quantized.md`` describes it.

    For a funnel, ``split_at=(w,)`` with ``w`` its first width is usually the better layout:
    the first stage scans one contiguous block, and each later stage reads a surviving row
    from two places (its first ``w`` columns and the rest of the row) instead of one per
    block, which matters because those reads are scattered (each touches its own memory
    pages). A scan at a width between ``w`` and ``D`` then reads the second block strided.

    Args:
        path: The file to create.
        source: ``(N, D)`` float array (any float dtype; a memmap is read block by block), a
            ``.npy`` path, or a row-major :class:`matryo_fast.Corpus`.
        block: Block width, 64 by default: a multiple of 16 (the widest SIMD lane count), so
            that the accumulation order, and hence every score, is the same as on row-major
            data.
        split_at: Instead of ``block``: the columns where blocks end, strictly increasing
            multiples of 16 between 0 and ``D``; ``(64, 256)`` stores ``[0, 64)``,
            ``[64, 256)`` and ``[256, D)``.
        tiers: Any of ``"float32"``, ``"int8"``, ``"binary"``.
        int8_ranges: The int8 tier's ``(2, D)`` per-dimension ``[min; max]``.
        calibration: Instead: an ``(n, D)`` sample to take the ranges from. Neither given: the
            ranges of the data (one more pass over it).
        overwrite: Replace an existing file once the new one is complete.
        batch_rows: Rows converted at a time (the corpus is never held in memory).

    Returns:
        The path written.

    Raises:
        ValueError: ``block`` is not a positive multiple of 16, ``split_at`` is not as above,
            both are given, the source is not 2-D, it has NaN/Inf (the message names the
            row), unknown tiers, ranges of the wrong shape or with NaN/Inf, a calibration
            sample with NaN/Inf.
        FileExistsError: ``path`` exists and ``overwrite`` is false.
    """
    from matryo_fast import _core
    from matryo_fast.search import Corpus

    names = _check_tiers(tiers)
    if isinstance(source, Corpus):
        source = source.as_array()
    elif isinstance(source, (str, os.PathLike)):
        source = np.load(source, mmap_mode="r")
    a = np.asarray(source)
    if a.ndim != 2:
        raise ValueError(f"source must be 2-D (N, D), got shape {a.shape}")
    if a.dtype.kind != "f":
        raise TypeError(f"source must be floating point, got dtype {a.dtype}")
    if block is not None and split_at is not None:
        raise ValueError("pass block or split_at, not both")
    if split_at is None:
        width = 64 if block is None else block
        if isinstance(width, bool) or not isinstance(width, int) or width < 16 or width % 16:
            raise ValueError(f"block must be a positive multiple of 16, got {width!r}")
    rows, cols = a.shape
    if cols == 0:
        raise ValueError("source has no columns")
    if split_at is None:
        widths = [min(width, cols - c) for c in range(0, cols, width)]
    else:
        why = (
            f"split_at must be strictly increasing multiples of 16 between 0 and the {cols} "
            f"columns, got {split_at!r}"
        )
        try:
            ends = [operator.index(e) for e in split_at]
        except TypeError:
            raise ValueError(why) from None
        if any(e % 16 or not 0 < e < cols for e in ends) or ends != sorted(set(ends)):
            raise ValueError(why)
        cuts = [0, *ends, cols]
        widths = [hi - lo for lo, hi in zip(cuts, cuts[1:])]
    ranges = _int8_ranges(a, int8_ranges, calibration, batch_rows) if "int8" in names else None
    if (int8_ranges is not None or calibration is not None) and ranges is None:
        raise ValueError("int8_ranges and calibration go with the int8 tier: add 'int8' to tiers")
    target = Path(path)
    if target.exists() and not overwrite:
        raise FileExistsError(f"{target} exists; pass overwrite=True to replace it")
    writer = _core.BlockedWriter(os.fspath(target), rows, widths, list(names), ranges, overwrite)
    try:
        for r0 in range(0, rows, batch_rows):
            part = np.asarray(a[r0 : r0 + batch_rows])
            big = part.dtype.itemsize > 4 and part.size and np.abs(part).max() > np.finfo("f4").max
            if big:
                raise ValueError("source has values too large for float32")
            finite = np.isfinite(part).all(axis=1)
            if not finite.all():
                raise ValueError(f"row {r0 + int(np.argmin(finite))} contains NaN or Inf")
            writer.write(np.ascontiguousarray(part, dtype=np.float32))
        writer.finish()
    except BaseException:
        writer.abort()
        raise
    return target


def write_atomic(path: str | os.PathLike[str], data: bytes) -> Path:
    """Write ``data`` to ``path`` so that the file appears only complete: write beside it,
    fsync, rename over any older file.

    Returns:
        The path.
    """
    target = Path(path)
    with _written_aside(target, overwrite=True) as f:
        f.write(data)
    return target


@contextmanager
def _written_aside(target: Path, *, overwrite: bool) -> Iterator[BinaryIO]:
    """A new file beside ``target`` to write into; on success it is fsynced and renamed to
    ``target`` (see :func:`_move_into_place`), on any error removed."""
    fd, tmp_name = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}.", suffix=".partial")
    tmp = Path(tmp_name)
    try:
        with os.fdopen(fd, "wb") as f:
            yield f
            f.flush()
            os.fsync(f.fileno())
        _move_into_place(tmp, target, overwrite=overwrite)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
