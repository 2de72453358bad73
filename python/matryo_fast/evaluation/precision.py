"""The precision axis of an :class:`~matryo_fast.evaluation.EvaluationReport`: scores at every
(width, precision) as JSON, a Markdown table (a row per width, a column per precision) and heat
maps with the bytes per vector along one axis, the Matryoshka trade-off table in two dimensions.

Bytes per vector are those the corpus file's tiers store for a width-``d`` prefix:
``4 d`` (float32), ``d`` (int8) and ``ceil(d / 8)`` (binary).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING, Any

from matryo_fast._extras import require
from matryo_fast.tuning import ROW_BYTES

if TYPE_CHECKING:
    from matryo_fast.evaluation.report import EvaluationReport

__all__ = ["axis_metrics", "bytes_per_vector", "plot_precision", "precision_dict", "precision_markdown"]

ByModel = dict[str, dict[str, dict[str, dict[int, float]]]]


def bytes_per_vector(precision: str, dim: int) -> int:
    """Bytes one row's width-``dim`` prefix takes at ``precision``.

    >>> [bytes_per_vector(p, 384) for p in ("float32", "int8", "binary")]
    [1536, 384, 48]
    """
    return int(ROW_BYTES[precision](dim))


def axis_metrics(by_precision: dict[str, dict[str, dict[int, float]]]) -> list[str]:
    """The metrics the table and the heat map show: Spearman (STS), recall@k and nDCG@10
    (retrieval); the JSON keeps them all."""
    names = next(iter(by_precision.values()))
    return [m for m in names if m in ("spearman", "ndcg@10") or m.startswith("recall@")]


def precision_dict(by_precision: ByModel) -> dict[str, Any]:
    """The JSON form: ``by_precision`` with string dims, and ``bytes_per_vector``."""
    sizes: dict[str, dict[str, int]] = {}
    for precs in by_precision.values():
        for p, mets in precs.items():
            for d in next(iter(mets.values())):
                sizes.setdefault(p, {})[str(d)] = bytes_per_vector(p, d)
    return {
        "by_precision": {
            m: {
                p: {met: {str(d): v for d, v in by.items()} for met, by in mets.items()}
                for p, mets in ps.items()
            }
            for m, ps in by_precision.items()
        },
        "bytes_per_vector": {
            p: dict(sorted(s.items(), key=lambda kv: -int(kv[0]))) for p, s in sizes.items()
        },
    }


def _require_axis(report: EvaluationReport) -> None:
    if not report.by_precision:
        raise ValueError("the report has no precision axis (evaluate with precisions=...)")


def precision_markdown(report: EvaluationReport, *, digits: int = 2) -> str:
    """Per model and metric, a table: a row per width (descending), a column per precision,
    each cell ``score (bytes B)``."""
    _require_axis(report)
    f = f"{{:.{digits}f}}"
    lines: list[str] = []
    for m, precs in report.by_precision.items():
        names = list(precs)
        for met in axis_metrics(precs):
            if lines:
                lines.append("")
            lines.append(
                f"**{m}**: {met} (x100) on {report.dataset} at each width and precision; "
                "in brackets: bytes per vector"
            )
            lines.append("")
            lines.append("| dim | " + " | ".join(names) + " |")
            lines.append("|---:|" + "---:|" * len(names))
            for d in sorted(precs["float32"][met], reverse=True):
                cells = [
                    f"{f.format(precs[p][met][d])} ({bytes_per_vector(p, d)} B)"
                    if d in precs[p][met]
                    else "–"
                    for p in names
                ]
                lines.append(f"| {d} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def plot_precision(
    report: EvaluationReport, path: str | os.PathLike[str], *, title: str | None = None
) -> Path:
    """Heat maps of the precision axis: a panel per model and metric, the bytes per vector
    along x (one column per distinct size, ascending), the precision along y, the colour the
    score; each cell is labelled with its score and width. Where two widths of a precision
    take the same bytes (binary widths that are not multiples of 8), the wider one is shown."""
    _require_axis(report)
    import numpy as np

    Figure = require("matplotlib.figure", feature="plot_precision", extra="eval").Figure
    panels = [(m, met) for m, precs in report.by_precision.items() for met in axis_metrics(precs)]
    sizes = sorted(
        {
            bytes_per_vector(p, d)
            for precs in report.by_precision.values()
            for p, mets in precs.items()
            for d in next(iter(mets.values()))
        }
    )
    col = {b: i for i, b in enumerate(sizes)}
    fig = Figure(figsize=(max(6.0, 0.85 * len(sizes) + 2.5), 2.1 * len(panels) + 0.6), layout="constrained")
    axes = fig.subplots(len(panels), 1, squeeze=False)[:, 0]
    for ax, (m, met) in zip(axes, panels, strict=True):
        precs = report.by_precision[m]
        names = list(precs)
        grid = np.full((len(names), len(sizes)), np.nan)
        width = np.zeros_like(grid, dtype=np.int64)
        for i, p in enumerate(names):
            for d in sorted(precs[p][met]):
                j = col[bytes_per_vector(p, d)]
                grid[i, j], width[i, j] = precs[p][met][d], d
        ax.set_facecolor("#eeeeee")  # (bytes, precision) pairs no width gives
        image = ax.imshow(np.ma.masked_invalid(grid), cmap="viridis", aspect="auto")
        lo, hi = np.nanmin(grid), np.nanmax(grid)
        for i, j in zip(*np.nonzero(~np.isnan(grid)), strict=True):
            light = hi > lo and (grid[i, j] - lo) / (hi - lo) > 0.6
            ax.text(
                j,
                i,
                f"{grid[i, j]:.1f}\nd={width[i, j]}",
                ha="center",
                va="center",
                fontsize=7,
                color="black" if light else "white",
            )
        ax.set_xticks(range(len(sizes)), [str(b) for b in sizes])
        ax.set_yticks(range(len(names)), names)
        ax.set_xlabel("bytes per vector")
        ax.set_title(f"{m}: {met} (x100) on {report.dataset}")
        fig.colorbar(image, ax=ax, label=f"{met} (x100)")
    if title:
        fig.suptitle(title)
    out = Path(path)
    fig.savefig(out, dpi=120)
    return out
