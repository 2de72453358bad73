"""Writing corpus files: float32, C-order ``.npy`` that :func:`matryo_fast.open_corpus` maps.

:class:`CorpusWriter` streams batches (say, from an encoder) to disk without holding the whole
matrix in memory. The file is written under a temporary name next to the target and renamed
into place only when complete, and an existing file is never replaced unless
``overwrite=True``: an interrupted run leaves nothing half-written under the target name.
Small files are written with :func:`write_atomic`; an experiment's output folder is made by
:func:`prepare_output`.

>>> import numpy as np, tempfile, os, matryo_fast as mf
>>> path = os.path.join(tempfile.mkdtemp(), "emb.npy")
>>> with mf.CorpusWriter(path, dim=4) as w:
...     w.append(np.eye(4, dtype=np.float32))
...     w.append(np.ones((2, 4)))
>>> mf.open_corpus(path).shape
(6, 4)
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from types import TracebackType
from typing import Any, BinaryIO

import numpy as np
import numpy.typing as npt

from matryo_fast._validate import require_positive

__all__ = ["CorpusWriter", "as_float32_rows", "file_digest", "prepare_output", "save_corpus", "write_atomic"]

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
        require_positive("dim", dim)
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


def prepare_output(output_dir: str | os.PathLike[str], inputs: Sequence[Path], *, overwrite: bool) -> Path:
    """Check an experiment's input files and make its output folder.

    Raises:
        FileNotFoundError: An input file is missing.
        FileExistsError: ``output_dir`` is not empty and ``overwrite`` is false.
    """
    for p in inputs:
        if not p.is_file():
            raise FileNotFoundError(f"data file not found: {p}")
    out = Path(output_dir)
    if out.exists() and any(out.iterdir()) and not overwrite:
        raise FileExistsError(
            f"output_dir {out} exists and is not empty; choose a new folder or pass overwrite=True"
        )
    out.mkdir(parents=True, exist_ok=True)
    return out


def file_digest(path: str | os.PathLike[str], h: Any) -> str:
    """The hex digest of ``path``'s bytes through the fresh ``hashlib`` object ``h``, read in
    1 MiB chunks (a file of any size, without holding it in memory)."""
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return str(h.hexdigest())
