"""Training rows for :func:`matryo_fast.training.train`: read a file or a ``datasets.Dataset``,
find the column layout, and choose the base loss from it.

>>> infer_loss(["sentence1", "sentence2", "score"])
'cosent'
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any, Literal

from matryo_fast._extras import require
from matryo_fast.data import DataError, parse_scores, read_table

if TYPE_CHECKING:
    from datasets import Dataset

__all__ = ["LossName", "infer_loss", "load_training_data"]

LossName = Literal["auto", "mnrl", "cosent"]

_PAIR_LAYOUTS = (("anchor", "positive", "negative"), ("anchor", "positive"))
_SCORE_NAMES = ("score", "label")


def infer_loss(columns: Sequence[str]) -> Literal["mnrl", "cosent"]:
    """The base loss for a column layout.

    Args:
        columns: The data columns, in order.

    Returns:
        ``"cosent"`` when the last column is ``score`` or ``label`` (after two text columns),
        ``"mnrl"`` for ``(anchor, positive[, negative])`` or any two or three text columns.

    Raises:
        DataError: The layout fits neither loss.

    >>> infer_loss(["sentence1", "sentence2", "score"])
    'cosent'
    >>> infer_loss(["anchor", "positive", "negative"])
    'mnrl'
    """
    cols = list(columns)
    if len(cols) == 3 and cols[-1] in _SCORE_NAMES:
        return "cosent"
    if len(cols) in (2, 3) and not any(c in _SCORE_NAMES for c in cols):
        return "mnrl"
    raise DataError(
        f"cannot choose a loss for columns {cols}: use (anchor, positive[, negative]) for "
        "MultipleNegativesRankingLoss or (sentence1, sentence2, score) for CoSENTLoss"
    )


def _auto_columns(header: Sequence[str], source: str) -> list[str]:
    names = list(header)
    for layout in _PAIR_LAYOUTS:
        if set(names) == set(layout):
            return list(layout)
    for score in _SCORE_NAMES:
        if set(names) == {"sentence1", "sentence2", score}:
            return ["sentence1", "sentence2", score]
    known = [
        n for n in names if n in {"anchor", "positive", "negative", "sentence1", "sentence2", *_SCORE_NAMES}
    ]
    extra = [n for n in names if n not in known]
    if extra and known:
        raise DataError(
            f"{source}: unexpected extra column(s) {extra} next to {known}; "
            f"select the training columns explicitly, e.g. columns={known}"
        )
    raise DataError(
        f"{source}: cannot tell the layout from columns {names}; expected "
        "(anchor, positive[, negative]) or (sentence1, sentence2, score), or pass columns=[...]"
    )


def load_training_data(
    data: str | os.PathLike[str] | Dataset,
    *,
    columns: Sequence[str] | None = None,
    loss: LossName = "auto",
    score_range: tuple[float, float] | None = (0.0, 5.0),
) -> tuple[Dataset, Literal["mnrl", "cosent"]]:
    """Read training rows and choose the base loss.

    Args:
        data: A TSV/CSV/JSONL file or a ``datasets.Dataset``.
        columns: The columns to train on, in order (other columns are ignored). ``None`` takes
            the file's columns, which must then be exactly one known layout.
        loss: ``"auto"`` (from the columns), ``"mnrl"`` or ``"cosent"``.
        score_range: For CoSENT, the ``(low, high)`` of the score column, rescaled to [0, 1]
            (STS-B: 0-5). ``None`` leaves scores as they are. Scores outside the range raise.

    Returns:
        ``(dataset, loss_name)``; for CoSENT the score column is float and named ``score``.

    Raises:
        FileNotFoundError: The file does not exist.
        DataError: Empty data, missing/extra columns, unreadable rows, empty texts, bad scores,
            or a loss that does not fit the columns.
    """
    datasets = require("datasets", feature="matryo_fast.training")
    if isinstance(data, (str, os.PathLike)):
        source = os.fspath(data)
        if columns is None:
            table = read_table(data)
            cols = _auto_columns(list(table), source)
            table = {c: table[c] for c in cols}
        else:
            cols = list(columns)
            table = read_table(data, columns=cols, allow_extra=True)
    elif isinstance(data, datasets.Dataset):
        source = "the dataset"
        names = list(data.column_names)
        if len(data) == 0:
            raise DataError("the training dataset is empty")
        if columns is None:
            cols = _auto_columns(names, source)
        else:
            cols = list(columns)
            missing = [c for c in cols if c not in names]
            if missing:
                raise DataError(f"the dataset has no column(s) {missing}; it has {names}")
        table = {c: list(data[c]) for c in cols}
    else:
        raise TypeError(f"data must be a file path or a datasets.Dataset, got {type(data).__name__}")
    if len(set(cols)) != len(cols):
        raise DataError(f"columns must be distinct, got {cols}")
    chosen = infer_loss(cols) if loss == "auto" else loss
    if chosen not in ("mnrl", "cosent"):
        raise ValueError(f"loss must be 'auto', 'mnrl' or 'cosent', got {loss!r}")
    if chosen == "mnrl" and not 2 <= len(cols) <= 3:
        raise DataError(f"MultipleNegativesRankingLoss needs 2 or 3 text columns, got {cols}")
    if chosen == "cosent" and len(cols) != 3:
        raise DataError(f"CoSENTLoss needs (sentence1, sentence2, score) columns, got {cols}")
    text_cols = cols if chosen == "mnrl" else cols[:2]
    for c in text_cols:
        for row, v in enumerate(table[c], start=1):
            if not isinstance(v, str):
                raise DataError(f"{source}, row {row}: column {c!r} must be text, got {v!r}")
            if not v.strip():
                raise DataError(f"{source}, row {row}: column {c!r} is empty")
    out: dict[str, list[Any]] = {c: table[c] for c in text_cols}
    if chosen == "cosent":
        scores = parse_scores(table[cols[2]], source=source, column=cols[2])
        if score_range is not None:
            lo, hi = score_range
            if not hi > lo:
                raise ValueError(f"score_range must be (low, high) with high > low, got {score_range}")
            for row, s in enumerate(scores, start=1):
                if not lo <= s <= hi:
                    raise DataError(f"{source}, row {row}: score {s} outside score_range {score_range}")
            scores = [(s - lo) / (hi - lo) for s in scores]
        out["score"] = scores
    return datasets.Dataset.from_dict(out), chosen
