"""``matryo encode``: texts from a file to a corpus folder (see :mod:`matryo_fast.textcorpus`).

Inputs: ``.txt`` (one text a line), ``.jsonl``, ``.csv``, ``.tsv`` (through
:mod:`matryo_fast.data`) and ``.parquet`` (through pyarrow). Ids are the row numbers (from 0)
unless ``id_column`` names a column of unique ids.

The texts are encoded in batches; after each batch its texts and embeddings are made durable
(texts first, then the embeddings and their row count) in a folder ``.<name>.partial`` beside
the target. An interrupted run (Ctrl-C, a crash, a kill) run again with the same input, model
and options continues after the last complete batch; other settings start afresh. The folder
is renamed to its final name only when complete.

>>> encode_file("docs.jsonl", "docs.mf", id_column="doc_id")  # doctest: +SKIP
PosixPath('docs.mf')
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import os
import shutil
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from matryo_fast.data import DataError, read_lines, read_table
from matryo_fast.files import CorpusWriter, file_digest
from matryo_fast.textcorpus import EMBEDDINGS, TEXTS, finish, model_identity, write_texts, write_tiers

__all__ = ["encode_file", "read_records"]

_SETTINGS = "settings.json"


def _read_parquet(path: Path, columns: list[str]) -> dict[str, list[Any]]:
    try:
        import pyarrow.parquet as pq
    except ImportError as exc:  # pragma: no cover - depends on the environment
        raise ImportError(
            'reading .parquet needs pyarrow: pip install pyarrow (or "matryo-fast[train]")'
        ) from exc
    try:
        f = pq.ParquetFile(path)
    except Exception as exc:  # pyarrow raises its own error types for unreadable files
        raise DataError(f"{path}: not a readable parquet file ({exc})") from None
    present = list(f.schema_arrow.names)
    missing = [c for c in columns if c not in present]
    if missing:
        raise DataError(f"{path}: missing column(s) {missing}; the file has {present}")
    table = f.read(columns=columns)
    return {c: table.column(c).to_pylist() for c in columns}


def read_records(
    path: str | os.PathLike[str], *, text_column: str = "text", id_column: str | None = None
) -> tuple[list[Any], list[str]]:
    """The ids and texts of a ``.txt``, ``.jsonl``, ``.csv``, ``.tsv`` or ``.parquet`` file.

    Raises:
        FileNotFoundError: No such file.
        DataError: Empty file, missing column (the message lists the columns present), a text
            that is empty or not a string, invalid UTF-8, duplicate ids; each names the row.
    """
    p = Path(path)
    if not p.is_file():
        raise FileNotFoundError(f"input file not found: {p}" + (" (it is a folder)" if p.is_dir() else ""))
    columns = [text_column] + ([id_column] if id_column and id_column != text_column else [])
    suffix = p.suffix.lower()
    if suffix == ".txt":
        if id_column:
            raise DataError(
                f"{p}: a .txt file has no columns; --id-column needs .jsonl, .csv, .tsv or .parquet"
            )
        table: dict[str, list[Any]] = {text_column: list(read_lines(p))}
    elif suffix == ".parquet":
        table = _read_parquet(p, columns)
    else:
        table = read_table(p, columns=columns, allow_extra=True)
    texts = table[text_column]
    if not texts:
        raise DataError(f"{p}: file is empty (no texts)")
    for row, t in enumerate(texts, start=1):
        if not isinstance(t, str):
            raise DataError(f"{p}, row {row}: column {text_column!r} is not text (got {type(t).__name__})")
        if not t.strip():
            raise DataError(f"{p}, row {row}: empty text in column {text_column!r}")
    ids = list(range(len(texts))) if not id_column else table[id_column]
    if id_column:
        seen: dict[Any, int] = {}
        for row, i in enumerate(ids, start=1):
            if i is None or isinstance(i, (dict, list, float)):
                raise DataError(
                    f"{p}, row {row}: id {i!r} in column {id_column!r} is not a string or integer"
                )
            if i in seen:
                raise DataError(f"{p}, row {row}: id {i!r} repeats row {seen[i]}; ids must be unique")
            seen[i] = row
    return ids, texts


def _truncate_lines(f: Any, rows: int) -> None:
    """Cuts an open ``texts.jsonl`` after its first ``rows`` lines."""
    f.seek(0)
    for _ in range(rows):
        if not f.readline().endswith(b"\n"):
            raise ValueError(
                "the partial text table is shorter than its embeddings; delete the partial folder"
            )
    f.truncate(f.tell())


def encode_file(
    input_path: str | os.PathLike[str],
    output: str | os.PathLike[str],
    *,
    model: str | os.PathLike[str] | None = None,
    text_column: str = "text",
    id_column: str | None = None,
    batch_size: int = 256,
    overwrite: bool = False,
    progress: bool = True,
    tiers: Sequence[str] | None = None,
) -> Path:
    """Encodes the texts of ``input_path`` into the corpus folder ``output`` (resumable).

    Args:
        input_path: ``.txt``, ``.jsonl``, ``.csv``, ``.tsv`` or ``.parquet``.
        output: The corpus folder to create.
        model: A sentence-transformers model folder (default: the shipped all-MiniLM-L6-v2).
        text_column: The column holding the texts.
        id_column: A column of unique ids (default: row numbers).
        batch_size: Texts per batch (and per durable step).
        overwrite: Replace an existing corpus folder once the new one is complete.
        progress: Show a progress bar on stderr (rows/s, ETA).
        tiers: Also write the embeddings prefix-blocked with these tiers (any of
            ``"float32"``, ``"int8"``, ``"binary"``; int8 ranges from the data), which the
            corpus's searches then scan (see :func:`matryo_fast.save_prefix_blocked`).

    Returns:
        The corpus folder.

    Raises:
        FileExistsError: ``output`` exists and ``overwrite`` is false.
        FileNotFoundError, DataError: As :func:`read_records`.
        ValueError: ``batch_size`` < 1, ``tiers`` not a non-empty subset of the three, or the
            model returned NaN/Inf (the message names the row).
    """
    from matryo_fast.blocked import check_tiers
    from matryo_fast.models import encode, load_model

    if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
        raise ValueError(f"batch size must be a positive integer, got {batch_size!r}")
    if tiers is not None:
        check_tiers(tiers)  # before any work
    final = Path(output)
    if final.exists() and not overwrite:
        raise FileExistsError(
            f"{final} exists; pass --overwrite to replace it (kept until the new one is complete)"
        )
    ids, texts = read_records(input_path, text_column=text_column, id_column=id_column)
    loaded = load_model(model)
    name = Path(model).name if model is not None else "all-MiniLM-L6-v2"
    path = None if model is None else os.fspath(Path(model).expanduser().resolve())
    ident = model_identity(loaded, name, path)
    source_path = os.fspath(Path(input_path).resolve())
    settings: dict[str, Any] = {
        "input": {"path": source_path, "sha": file_digest(input_path, hashlib.blake2b(digest_size=16))},
        "model": ident,
        "text_column": text_column,
        "id_column": id_column,
        "batch_size": batch_size,
    }
    work = final.with_name(f".{final.name}.partial")
    work.mkdir(exist_ok=True)
    lock = open(work / ".lock", "w")  # noqa: SIM115 - held until the end of the run
    try:
        try:
            fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise FileExistsError(
                f"another matryo encode is writing {final} (its work folder {work} is locked)"
            ) from None
        old = json.loads((work / _SETTINGS).read_text()) if (work / _SETTINGS).exists() else None
        if old is not None and old != json.loads(json.dumps(settings)):
            print(
                f"matryo: {work} is an interrupted run with other settings; starting again", file=sys.stderr
            )
            old = None
        if old is None:
            for child in work.iterdir():
                if child.name != ".lock":
                    shutil.rmtree(child) if child.is_dir() else child.unlink()
            (work / _SETTINGS).write_text(json.dumps(settings))
        _encode_rows(work, ids, texts, loaded, ident["dim"], batch_size, progress, encode)
        names = write_tiers(work, tiers)  # a rerun after a stop here writes it again
        source = {"path": source_path, "text_column": text_column, "id_column": id_column}
        (work / _SETTINGS).unlink()
        (work / ".lock").unlink()
        finish(work, final, rows=len(texts), model=ident, source=source, overwrite=overwrite, tiers=names)
    finally:
        lock.close()
    return final


def _encode_rows(
    work: Path,
    ids: Sequence[Any],
    texts: Sequence[str],
    model: Any,
    dim: int,
    batch_size: int,
    progress: bool,
    encode: Any,
) -> None:
    """Encodes the rows not yet done into ``work`` (embeddings, texts, then the offsets)."""
    from tqdm.auto import tqdm

    n = len(texts)
    if (work / EMBEDDINGS).exists():  # a run that stopped after its last batch
        return
    with CorpusWriter(work / EMBEDDINGS, dim, resumable=True) as writer:
        done = writer.rows
        with open(work / TEXTS, "a+b") as tf:
            _truncate_lines(tf, done)
        bar = tqdm(total=n, initial=done, unit="rows", disable=not progress, desc="encoding", smoothing=0.1)
        with bar:
            for start in range(done, n, batch_size):
                end = min(start + batch_size, n)
                emb = encode(model, list(texts[start:end]), batch_size=min(batch_size, 128))
                bad = ~np.isfinite(emb).all(axis=1)
                if bad.any():
                    raise ValueError(f"the model returned NaN/Inf for row {start + int(np.argmax(bad)) + 1}")
                write_texts(work, ids[start:end], texts[start:end], mode="ab")
                writer.append(emb)
                writer.sync()
                bar.update(end - start)
