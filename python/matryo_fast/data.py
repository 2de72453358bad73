"""Readers for the tabular files used to train and evaluate: TSV, CSV and JSONL with named columns.

Every file has named columns: a header row for TSV/CSV, object keys for JSONL. Errors are
:class:`DataError` (a ``ValueError``) and name the file and the row, so a bad line in a
100k-row file is found at once.

* ``.tsv`` / ``.tab``: tab-separated, **no quoting** (a ``"`` is an ordinary character), as the
  files under ``shared/data`` are written.
* ``.csv``: comma-separated with standard double-quote quoting.
* ``.jsonl`` / ``.ndjson``: one JSON object per line; blank lines are skipped.

Row numbers in messages count data rows from 1 (the header is not a row); line numbers count
physical lines from 1, header included.

>>> from matryo_fast.data import read_table
>>> cols = read_table("test.tsv", columns=["sentence1", "sentence2", "score"])  # doctest: +SKIP
>>> len(cols["score"])  # doctest: +SKIP
1379
"""

from __future__ import annotations

import csv
import io
import json
import math
import os
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from matryo_fast._extras import require

if TYPE_CHECKING:
    from datasets import Dataset

__all__ = [
    "DataError",
    "FileFormat",
    "detect_format",
    "read_lines",
    "read_sts",
    "read_table",
    "to_dataset",
]

FileFormat = Literal["tsv", "csv", "jsonl"]

_SUFFIXES: dict[str, FileFormat] = {
    ".tsv": "tsv",
    ".tab": "tsv",
    ".csv": "csv",
    ".jsonl": "jsonl",
    ".ndjson": "jsonl",
}


class DataError(ValueError):
    """A data file (or in-memory table) is unusable; the message names the file and the row."""


def detect_format(path: str | os.PathLike[str]) -> FileFormat:
    """The format from the suffix: ``tsv`` (.tsv, .tab), ``csv``, ``jsonl`` (.jsonl, .ndjson).

    Args:
        path: A file name.

    Returns:
        ``"tsv"``, ``"csv"`` or ``"jsonl"``.

    Raises:
        DataError: The suffix is not one of the above.

    >>> detect_format("train.tsv")
    'tsv'
    """
    suffix = Path(path).suffix.lower()
    try:
        return _SUFFIXES[suffix]
    except KeyError:
        raise DataError(
            f"{os.fspath(path)}: unsupported file type {suffix or '(no suffix)'!r}; "
            "use .tsv, .csv or .jsonl (one JSON object per line)"
        ) from None


def read_lines(path: Path) -> list[str]:
    """The file's lines (without line endings), decoded as UTF-8 with a row-precise error."""
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        raise FileNotFoundError(f"data file not found: {path}") from None
    except IsADirectoryError:
        raise DataError(f"{path}: is a directory, expected a data file") from None
    if raw.startswith(b"\xef\xbb\xbf"):
        raw = raw[3:]
    lines = raw.split(b"\n")
    if lines and lines[-1] == b"":
        lines.pop()
    out: list[str] = []
    for lineno, line in enumerate(lines, start=1):
        try:
            out.append(line.decode("utf-8").rstrip("\r"))
        except UnicodeDecodeError as exc:
            raise DataError(
                f"{path}, line {lineno}: not valid UTF-8 (byte {exc.start}); re-save the file as UTF-8"
            ) from None
    return out


def _check_header(
    path: Path, header: list[str], columns: Sequence[str] | None, allow_extra: bool
) -> list[str]:
    """Validate the header against ``columns``; return the columns to keep, in order."""
    names = [h.strip() for h in header]
    if any(not n for n in names):
        raise DataError(f"{path}, line 1 (header): empty column name in header {names}")
    dupes = sorted({n for n in names if names.count(n) > 1})
    if dupes:
        raise DataError(f"{path}, line 1 (header): duplicate column name(s) {dupes}")
    if columns is None:
        return names
    wanted = list(columns)
    missing = [c for c in wanted if c not in names]
    if missing:
        raise DataError(f"{path}: missing column(s) {missing}; the header has {names}, expected {wanted}")
    extra = [n for n in names if n not in wanted]
    if extra and not allow_extra:
        raise DataError(
            f"{path}: unexpected extra column(s) {extra}; expected exactly {wanted} "
            "(select the columns you want explicitly to ignore the others)"
        )
    return wanted


def _read_delimited(
    path: Path, fmt: FileFormat, columns: Sequence[str] | None, allow_extra: bool
) -> dict[str, list[str]]:
    lines = read_lines(path)
    if not lines or all(not line.strip() for line in lines):
        raise DataError(f"{path}: file is empty (expected a header row and data rows)")
    text = "\n".join(lines) + "\n"
    if fmt == "tsv":
        reader = csv.reader(io.StringIO(text), delimiter="\t", quoting=csv.QUOTE_NONE)
    else:
        reader = csv.reader(io.StringIO(text), delimiter=",", quotechar='"', strict=True)
    try:
        header = next(reader)
    except csv.Error as exc:
        raise DataError(f"{path}, line 1 (header): unreadable header: {exc}") from None
    keep = _check_header(path, header, columns, allow_extra)
    names = [h.strip() for h in header]
    positions = [names.index(c) for c in keep]
    out: dict[str, list[str]] = {c: [] for c in keep}
    row = 0
    while True:
        line_before = reader.line_num
        try:
            fields = next(reader)
        except StopIteration:
            break
        except csv.Error as exc:
            raise DataError(
                f"{path}, row {row + 1} (line {line_before + 1}): unreadable row: {exc}"
            ) from None
        if not fields or (len(fields) == 1 and not fields[0].strip()):
            continue  # blank line
        row += 1
        if len(fields) != len(names):
            raise DataError(
                f"{path}, row {row} (line {reader.line_num}): expected {len(names)} fields "
                f"{names}, got {len(fields)}" + (" (a tab inside a text field?)" if fmt == "tsv" else "")
            )
        for c, p in zip(keep, positions, strict=True):
            out[c].append(fields[p])
    if row == 0:
        raise DataError(f"{path}: has a header but no data rows")
    return out


def _read_jsonl(path: Path, columns: Sequence[str] | None, allow_extra: bool) -> dict[str, list[Any]]:
    lines = read_lines(path)
    if not lines or all(not line.strip() for line in lines):
        raise DataError(f"{path}: file is empty (expected one JSON object per line)")
    keep: list[str] | None = None
    out: dict[str, list[Any]] = {}
    row = 0
    for lineno, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        row += 1
        try:
            obj = json.loads(line)
        except json.JSONDecodeError as exc:
            raise DataError(
                f"{path}, row {row} (line {lineno}): not valid JSON: {exc.msg} at column {exc.colno}"
            ) from None
        if not isinstance(obj, dict):
            raise DataError(
                f"{path}, row {row} (line {lineno}): expected a JSON object, got {type(obj).__name__}"
            )
        keys = list(obj)
        if keep is None:
            keep = _check_header(path, keys, columns, allow_extra)
            out = {c: [] for c in keep}
        missing = [c for c in keep if c not in obj]
        if missing:
            raise DataError(f"{path}, row {row} (line {lineno}): missing key(s) {missing}")
        if not allow_extra:
            extra = [k for k in keys if k not in keep]
            if extra:
                raise DataError(
                    f"{path}, row {row} (line {lineno}): unexpected extra key(s) {extra}; "
                    f"expected exactly {keep}"
                )
        for c in keep:
            out[c].append(obj[c])
    return out


def read_table(
    path: str | os.PathLike[str],
    *,
    columns: Sequence[str] | None = None,
    allow_extra: bool = False,
    file_format: FileFormat | None = None,
) -> dict[str, list[Any]]:
    """Read a TSV/CSV/JSONL file into ``{column: values}`` (strings for TSV/CSV).

    Args:
        path: The file.
        columns: The columns expected, in the order wanted. ``None`` keeps every column of the
            header (or of the first JSONL object) in file order.
        allow_extra: With ``columns``, ignore other columns instead of raising.
        file_format: ``"tsv"``, ``"csv"`` or ``"jsonl"``; ``None`` picks it from the suffix.

    Returns:
        A dict mapping each kept column to its list of values, one per data row.

    Raises:
        FileNotFoundError: The file does not exist.
        DataError: Unsupported suffix, empty file, header without rows, missing or (unless
            ``allow_extra``) extra columns, a row with the wrong number of fields, invalid UTF-8
            or JSON; the message names the file and the row.

    >>> read_table("pairs.tsv", columns=["anchor", "positive"], allow_extra=True)  # doctest: +SKIP
    {'anchor': [...], 'positive': [...]}
    """
    p = Path(path)
    fmt = file_format or detect_format(p)
    if fmt not in ("tsv", "csv", "jsonl"):
        raise DataError(f"{p}: unknown file_format {fmt!r}; use 'tsv', 'csv' or 'jsonl'")
    if fmt == "jsonl":
        return _read_jsonl(p, columns, allow_extra)
    return _read_delimited(p, fmt, columns, allow_extra)


def parse_scores(values: Sequence[Any], *, source: str, column: str) -> list[float]:
    """Convert a column of scores to floats, naming the first bad row.

    Args:
        values: The raw values (strings or numbers).
        source: The file name (or a description) for error messages.
        column: The column name for error messages.

    Returns:
        The scores as floats.

    Raises:
        DataError: A value is not a finite number.
    """
    out: list[float] = []
    for row, v in enumerate(values, start=1):
        try:
            if isinstance(v, bool):
                raise ValueError
            f = float(v)
        except (TypeError, ValueError):
            raise DataError(f"{source}, row {row}: column {column!r} must be a number, got {v!r}") from None
        if not math.isfinite(f):
            raise DataError(f"{source}, row {row}: column {column!r} must be finite, got {v!r}")
        out.append(f)
    return out


def read_sts(
    path: str | os.PathLike[str],
    *,
    columns: Sequence[str] = ("sentence1", "sentence2", "score"),
) -> tuple[list[str], list[str], list[float]]:
    """Read scored sentence pairs (STS-B layout) from TSV/CSV/JSONL.

    Args:
        path: The file.
        columns: Names of the first-sentence, second-sentence and score columns. Other columns
            in the file are ignored.

    Returns:
        ``(sentences1, sentences2, scores)``.

    Raises:
        FileNotFoundError: The file does not exist.
        DataError: As :func:`read_table`, or a score that is not a finite number, or fewer than
            two pairs (a correlation needs at least two).

    >>> s1, s2, gold = read_sts("stsb/test.tsv")  # doctest: +SKIP
    """
    if len(columns) != 3:
        raise ValueError(
            f"columns must name (sentence1, sentence2, score), got {len(columns)}: {list(columns)}"
        )
    table = read_table(path, columns=list(columns), allow_extra=True)
    c1, c2, cs = columns
    s1 = [str(x) for x in table[c1]]
    s2 = [str(x) for x in table[c2]]
    scores = parse_scores(table[cs], source=os.fspath(path), column=cs)
    if len(scores) < 2:
        raise DataError(f"{os.fspath(path)}: needs at least 2 scored pairs, got {len(scores)}")
    return s1, s2, scores


def to_dataset(table: dict[str, list[Any]]) -> Dataset:
    """A ``datasets.Dataset`` with the columns of ``table`` in order.

    Args:
        table: ``{column: values}`` as returned by :func:`read_table`.

    Returns:
        The dataset.

    Raises:
        ImportError: ``datasets`` is not installed (``pip install "matryo-fast[train]"``).
    """
    datasets = require("datasets", feature="matryo_fast.data.to_dataset")
    out: Dataset = datasets.Dataset.from_dict(table)
    return out
