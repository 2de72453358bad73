"""Argument checks shared by the package: ints, int sequences, positive numbers, truncation
widths, and the coercion of a query to what the core reads.

Each check lives here once; the public functions of the other modules call these, so the same
mistake gets the same message everywhere.

>>> check_int("k", 5)
5
>>> validate_dims([32, 384, 128], 384)
[384, 128, 32]
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from typing import Any

import numpy as np
import numpy.typing as npt

from matryo_fast._interop import as_host_array

__all__ = [
    "check_int",
    "coerce_query",
    "default_dims",
    "int_tuple",
    "is_int",
    "require_positive",
    "validate_dims",
]

#: Ints are clamped to this magnitude before they reach the core (see :func:`check_int`).
INT_LIMIT = 2**62


def is_int(value: Any) -> bool:
    """Whether ``value`` is a Python or numpy integer (``bool`` is not)."""
    return isinstance(value, (int, np.integer)) and not isinstance(value, (bool, np.bool_))


def check_int(name: str, value: Any) -> int:
    """``value`` as an int, clamped to +-2**62 so that the binding never raises OverflowError
    (the core then reports an out-of-range value as a ValueError).

    Raises:
        TypeError: ``value`` is not an int.
    """
    if not is_int(value):
        raise TypeError(f"{name} must be an int, got {type(value).__name__}")
    return max(min(int(value), INT_LIMIT), -INT_LIMIT)


def int_tuple(name: str, values: Any) -> tuple[int, ...]:
    """A sequence of ints (each as :func:`check_int`) as a tuple.

    Raises:
        TypeError: ``values`` is not a sequence, or holds a non-int.
    """
    if isinstance(values, (str, bytes)) or not isinstance(values, (Sequence, np.ndarray)):
        raise TypeError(f"{name} must be a sequence of ints, got {type(values).__name__}")
    return tuple(check_int(name, v) for v in values)


def require_positive(name: str, value: Any, *, kind: type = int, allow_zero: bool = False) -> None:
    """Checks that ``value`` is a positive (or, with ``allow_zero``, non-negative) ``kind``
    (``int``, or ``float``, which accepts ints too).

    Raises:
        ValueError: ``value`` is not such a number (the message names ``name``).
    """
    ok = is_int(value) or (kind is float and isinstance(value, float))
    if not ok or (value < 0 if allow_zero else value <= 0):
        need = "a non-negative" if allow_zero else "a positive"
        raise ValueError(f"{name} must be {need} {kind.__name__}, got {value!r}")


def default_dims(full_dim: int, *, smallest: int = 32) -> list[int]:
    """The full dimension, then every power of two below it down to ``smallest``.

    Args:
        full_dim: The model's embedding dimension.
        smallest: The smallest width to include.

    Returns:
        Widths in descending order.

    Raises:
        ValueError: ``full_dim`` or ``smallest`` is not a positive int.

    >>> default_dims(384)
    [384, 256, 128, 64, 32]
    >>> default_dims(768)
    [768, 512, 256, 128, 64, 32]
    """
    for name, v in (("full_dim", full_dim), ("smallest", smallest)):
        require_positive(name, v)
    dims = [int(full_dim)]
    p = 1 << (int(full_dim) - 1).bit_length()  # smallest power of two >= full_dim
    p //= 2
    while p >= smallest:
        if p < full_dim:
            dims.append(p)
        p //= 2
    return dims


def validate_dims(dims: Iterable[Any], full_dim: int, *, name: str = "dims") -> list[int]:
    """Check truncation widths: ints, positive, distinct, none above ``full_dim``; any order.

    Args:
        dims: The widths.
        full_dim: The model's embedding dimension.
        name: The argument name used in error messages.

    Returns:
        The widths as ints, in descending order.

    Raises:
        TypeError: A width is not an int.
        ValueError: Empty, a width <= 0, a duplicate, or a width above ``full_dim``.

    >>> validate_dims([32, 384, 128], 384)
    [384, 128, 32]
    """
    if isinstance(dims, (str, bytes)):
        raise TypeError(f"{name} must be a sequence of ints, got a string {dims!r}")
    values = list(dims)
    if not values:
        raise ValueError(f"{name} must not be empty")
    out: list[int] = []
    for d in values:
        if not is_int(d):
            raise TypeError(f"{name} must be ints, got {d!r} ({type(d).__name__})")
        if d <= 0:
            raise ValueError(f"{name} must be positive, got {int(d)}")
        if d > full_dim:
            raise ValueError(f"{name} has {int(d)}, above the model's embedding dimension {full_dim}")
        out.append(int(d))
    dupes = sorted({d for d in out if out.count(d) > 1}, reverse=True)
    if dupes:
        raise ValueError(f"{name} must be distinct, got duplicates {dupes}")
    return sorted(out, reverse=True)


#: The query dtypes accepted (compared as dtypes: cheaper than against the scalar types).
_QUERY_DTYPES = (np.dtype(np.float32), np.dtype(np.float64))
_F32 = _QUERY_DTYPES[0]
_F32_MAX = float(np.finfo(np.float32).max)


def coerce_query(query: Any, dim: int | None = None) -> tuple[npt.NDArray[np.float32], bool]:
    """The query as a C-contiguous float32 ``(B, D')`` array, and whether it was 1-D.

    Only the first ``dim`` columns are checked and converted (``D' = dim``) when the query has
    that many; columns beyond ``dim`` are never read. Written for a small per-call cost (a
    search of a small corpus takes tens of microseconds): few numpy calls, no copy of a float32
    query that is already contiguous.

    Raises:
        TypeError: The query is not float32 or float64.
        ValueError: Not 1-D or 2-D, NaN/Inf in the columns read, or values too large for
            float32.
    """
    q = query if isinstance(query, np.ndarray) else np.asarray(as_host_array(query, "query"))
    if q.dtype not in _QUERY_DTYPES:
        raise TypeError(
            f"query must be float32 or float64, got dtype {q.dtype}; convert it with query.astype(np.float32)"
        )
    if q.ndim not in (1, 2):
        raise ValueError(f"query must be 1-D (D,) or 2-D (B, D), got {q.ndim}-D shape {q.shape}")
    single = q.ndim == 1
    cols = q.shape[-1]
    cut = dim if dim is not None and 1 <= dim < cols else cols
    q2 = q[None, :cut] if single else q[:, :cut]
    # One reduction finds NaN/Inf (a sum of values holding one is not finite); only then, or
    # when the finite values overflow the sum, is the place looked for.
    total = float(q2.sum(dtype=np.float64)) if q2.size else 0.0
    if not math.isfinite(total):
        finite = np.isfinite(q2)
        if not finite.all():
            bad = np.argwhere(~finite)[0]
            raise ValueError(f"query contains NaN or Inf (first at query row {bad[0]}, column {bad[1]})")
    if q2.dtype != _F32:
        if q2.size and np.abs(q2).max() > _F32_MAX:
            raise ValueError("query has values too large for float32 (they would overflow to Inf)")
        return np.ascontiguousarray(q2, dtype=np.float32), single
    return (q2 if q2.flags.c_contiguous else np.ascontiguousarray(q2)), single


#: The precisions a corpus file can hold, finest first (see ``docs/quantized.md``).
PRECISIONS = ("float32", "int8", "binary")


def check_precision(precision: Any) -> str:
    """``precision`` if it is one of :data:`PRECISIONS`, else a ValueError naming them."""
    if precision not in PRECISIONS:
        raise ValueError(f"unknown precision {precision!r} (known: {', '.join(PRECISIONS)})")
    return str(precision)
