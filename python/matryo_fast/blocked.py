"""Writing the prefix-blocked corpus file (``.mfb``): column blocks of every row, so that a scan
at a small width reads one contiguous range, with optional int8 and 1-bit tiers. The format is
read and written by one Rust module, ``rust/blocked.rs``; this is its typed front.
"""

from __future__ import annotations

import operator
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from matryo_fast._validate import PRECISIONS

__all__ = ["TIERS", "save_prefix_blocked"]

#: The tiers a prefix-blocked file can hold, finest first: the precisions of search.
TIERS = PRECISIONS


def check_tiers(tiers: Any) -> tuple[str, ...]:
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

    names = check_tiers(tiers)
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
