"""The evaluation report: per-dimension scores of one or more models on one data set, with
JSON, Markdown and plot output."""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from matryo_fast._extras import require
from matryo_fast.evaluation.precision import plot_precision, precision_dict, precision_markdown

__all__ = ["EvaluationReport"]


@dataclass
class EvaluationReport:
    """Per-dimension scores for one or more models on one data set (all metrics x100).

    Attributes:
        task: ``"sts"`` or ``"retrieval"``.
        dataset: A label for the data (e.g. the file name).
        results: ``{model: {metric: {dim: value}}}``.
        full_dims: ``{model: full embedding dimension}``.
        primary_metric: The metric drawn by :meth:`plot` and listed first.
        meta: Free-form details (sizes, timings, ...), kept in the JSON.
        by_precision: The precision axis, when it was asked for: ``{model: {precision:
            {metric: {dim: value}}}}`` (``"float32"``, ``"int8"``, ``"binary"``); empty
            otherwise. Rendered by :meth:`precision_markdown` and :meth:`plot_precision`.
    """

    task: str
    dataset: str
    results: dict[str, dict[str, dict[int, float]]]
    full_dims: dict[str, int]
    primary_metric: str
    meta: dict[str, Any] = field(default_factory=dict)
    by_precision: dict[str, dict[str, dict[str, dict[int, float]]]] = field(default_factory=dict)

    # ---- access

    @property
    def models(self) -> list[str]:
        """Model labels in insertion order."""
        return list(self.results)

    def metrics(self, model: str | None = None) -> list[str]:
        """Metric names (primary first) of ``model`` (default: the first model)."""
        m = self._model(model)
        names = list(self.results[m])
        return sorted(names, key=lambda n: n != self.primary_metric)

    def dims(self, model: str | None = None) -> list[int]:
        """Widths scored for ``model`` (default: the first), descending."""
        m = self._model(model)
        return sorted(self.results[m][self.metrics(m)[0]], reverse=True)

    def score(self, model: str, dim: int, metric: str | None = None) -> float:
        """The absolute score (x100) of ``model`` at width ``dim``."""
        return self.results[self._model(model)][metric or self.primary_metric][dim]

    def relative(self, model: str, dim: int, metric: str | None = None) -> float:
        """The score at ``dim`` as a percentage of the same model's full-dimension score.

        Raises:
            KeyError: The full dimension was not scored for this model.
            ValueError: The full-dimension score is zero.
        """
        m = self._model(model)
        met = metric or self.primary_metric
        full = self.results[m][met][self.full_dims[m]]
        if full == 0:
            raise ValueError(f"{m}: full-dimension {met} is 0; a percentage is undefined")
        return 100.0 * self.results[m][met][dim] / full

    def _model(self, model: str | None) -> str:
        if model is None:
            if not self.results:
                raise ValueError("the report has no models")
            return next(iter(self.results))
        if model not in self.results:
            raise KeyError(f"no model {model!r} in the report (have {self.models})")
        return model

    # ---- combine

    @classmethod
    def combine(cls, reports: Sequence[EvaluationReport]) -> EvaluationReport:
        """Merge reports of different models on the same task and data set into one.

        Raises:
            ValueError: No reports, different tasks/data sets, or a model label used twice.
        """
        if not reports:
            raise ValueError("combine needs at least one report")
        first = reports[0]
        results: dict[str, dict[str, dict[int, float]]] = {}
        full: dict[str, int] = {}
        meta: dict[str, Any] = {}
        by_precision: dict[str, dict[str, dict[str, dict[int, float]]]] = {}
        for r in reports:
            if (r.task, r.dataset) != (first.task, first.dataset):
                raise ValueError(
                    f"cannot combine {r.task!r} on {r.dataset!r} with {first.task!r} on {first.dataset!r}"
                )
            for m in r.results:
                if m in results:
                    raise ValueError(f"model label {m!r} appears in more than one report")
                results[m] = r.results[m]
                full[m] = r.full_dims[m]
                meta[m] = r.meta.get(m, r.meta)
                if m in r.by_precision:
                    by_precision[m] = r.by_precision[m]
        return cls(first.task, first.dataset, results, full, first.primary_metric, meta, by_precision)

    # ---- serialise

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict (dims become string keys, as JSON requires); with the precision
        axis also ``by_precision`` and ``bytes_per_vector`` (``{precision: {dim: bytes}}``)."""
        out = {
            "task": self.task,
            "dataset": self.dataset,
            "primary_metric": self.primary_metric,
            "full_dims": dict(self.full_dims),
            "results": {
                m: {met: {str(d): v for d, v in by_dim.items()} for met, by_dim in mets.items()}
                for m, mets in self.results.items()
            },
            "relative": {
                m: {
                    met: {str(d): self.relative(m, d, met) for d in by_dim}
                    for met, by_dim in mets.items()
                    if self.full_dims[m] in by_dim and by_dim[self.full_dims[m]] != 0
                }
                for m, mets in self.results.items()
            },
            "meta": self.meta,
        }
        if self.by_precision:
            out.update(precision_dict(self.by_precision))
        return out

    def to_json(self, path: str | os.PathLike[str] | None = None, *, indent: int = 2) -> str:
        """The report as JSON; also written to ``path`` when given.

        Args:
            path: Optional file to write.
            indent: JSON indentation.

        Returns:
            The JSON text.
        """
        text = json.dumps(self.to_dict(), indent=indent, sort_keys=False) + "\n"
        if path is not None:
            Path(path).write_text(text, encoding="utf-8")
        return text

    @classmethod
    def from_json(cls, text_or_path: str | os.PathLike[str]) -> EvaluationReport:
        """Read a report written by :meth:`to_json` (JSON text or a file path).

        Raises:
            ValueError: The JSON is not a report.
        """
        s = os.fspath(text_or_path)
        text = s if s.lstrip().startswith("{") else Path(s).read_text(encoding="utf-8")
        try:
            obj = json.loads(text)
            results = {
                m: {met: {int(d): float(v) for d, v in by.items()} for met, by in mets.items()}
                for m, mets in obj["results"].items()
            }
            return cls(
                obj["task"],
                obj["dataset"],
                results,
                {m: int(v) for m, v in obj["full_dims"].items()},
                obj["primary_metric"],
                obj.get("meta", {}),
                {
                    m: {
                        p: {met: {int(d): float(v) for d, v in by.items()} for met, by in mets.items()}
                        for p, mets in ps.items()
                    }
                    for m, ps in obj.get("by_precision", {}).items()
                },
            )
        except (KeyError, TypeError, ValueError, AttributeError) as exc:
            raise ValueError(f"not an evaluation report: {exc!r}") from None

    def to_markdown(self, *, digits: int = 2) -> str:
        """Markdown tables: the primary metric of all models side by side, then one table per model.

        Args:
            digits: Decimals shown.

        Returns:
            The Markdown text.
        """
        f = f"{{:.{digits}f}}"
        lines: list[str] = []
        pm = self.primary_metric
        all_dims = sorted({d for m in self.models for d in self.results[m][pm]}, reverse=True)
        lines.append(f"{pm} (x100) on {self.dataset}; in brackets: % of the model's full-dim score")
        lines.append("")
        lines.append("| dim | " + " | ".join(self.models) + " |")
        lines.append("|---:|" + "---:|" * len(self.models))
        for d in all_dims:
            cells = []
            for m in self.models:
                if d in self.results[m][pm]:
                    cell = f.format(self.score(m, d, pm))
                    try:
                        cell += f" ({self.relative(m, d, pm):.1f}%)"
                    except (KeyError, ValueError):
                        pass
                    cells.append(cell)
                else:
                    cells.append("–")
            lines.append(f"| {d} | " + " | ".join(cells) + " |")
        for m in self.models:
            mets = self.metrics(m)
            lines.append("")
            lines.append(f"**{m}** (full dim {self.full_dims[m]})")
            lines.append("")
            head = ["dim", "% of dims"]
            for met in mets:
                head += [met, f"{met} % of full"]
            lines.append("| " + " | ".join(head) + " |")
            lines.append("|" + "---:|" * len(head))
            for d in self.dims(m):
                row = [str(d), f"{100.0 * d / self.full_dims[m]:.1f}"]
                for met in mets:
                    row.append(f.format(self.score(m, d, met)))
                    try:
                        row.append(f"{self.relative(m, d, met):.2f}")
                    except (KeyError, ValueError):
                        row.append("–")
                lines.append("| " + " | ".join(row) + " |")
        text = "\n".join(lines) + "\n"
        return text + "\n" + self.precision_markdown(digits=digits) if self.by_precision else text

    def precision_markdown(self, *, digits: int = 2) -> str:
        """The precision axis as Markdown: per model and metric (Spearman; recall@k and
        nDCG@10), a table with a row per width and a column per precision, each cell the score
        and the bytes per vector (``4 d``, ``d``, ``ceil(d / 8)``).

        Raises:
            ValueError: The report has no precision axis.
        """
        return precision_markdown(self, digits=digits)

    def plot_precision(self, path: str | os.PathLike[str], *, title: str | None = None) -> Path:
        """Draw the precision axis as heat maps, bytes per vector along x and the precision
        along y, a panel per model and metric; each cell shows the score and its width.

        Raises:
            ImportError: matplotlib is missing.
            ValueError: The report has no precision axis.
        """
        return plot_precision(self, path, title=title)

    # ---- plots

    def plot(
        self,
        path: str | os.PathLike[str],
        *,
        kind: Literal["both", "scores", "relative"] = "both",
        metric: str | None = None,
        title: str | None = None,
    ) -> Path:
        """Draw score vs dim for each model, and/or % of full-dim score vs dim, to an image file.

        Args:
            path: Output file; the format follows the suffix (``.png``, ``.svg``, ``.pdf``).
            kind: ``"both"`` (two panels side by side), ``"scores"`` or ``"relative"``.
            metric: Metric to draw; default the primary metric.
            title: Optional figure title.

        Returns:
            The written path.

        Raises:
            ImportError: matplotlib is missing (``pip install "matryo-fast[eval]"``).
            ValueError: Unknown ``kind`` or ``metric``.
        """
        Figure = require("matplotlib.figure", feature="EvaluationReport.plot", extra="eval").Figure
        if kind not in ("both", "scores", "relative"):
            raise ValueError(f"kind must be 'both', 'scores' or 'relative', got {kind!r}")
        met = metric or self.primary_metric
        for m in self.models:
            if met not in self.results[m]:
                raise ValueError(f"metric {met!r} not in the report for {m!r}")
        panels = ["scores", "relative"] if kind == "both" else [kind]
        fig = Figure(figsize=(6.0 * len(panels), 4.2), layout="constrained")
        axes = fig.subplots(1, len(panels), squeeze=False)[0]
        all_dims = sorted({d for m in self.models for d in self.results[m][met]})
        markers = "osD^v<>p*h"
        for ax, panel in zip(axes, panels, strict=True):
            for i, m in enumerate(self.models):
                dims = sorted(self.results[m][met])
                if panel == "scores":
                    ys = [self.score(m, d, met) for d in dims]
                else:
                    try:
                        ys = [self.relative(m, d, met) for d in dims]
                    except (KeyError, ValueError):
                        continue
                ax.plot(dims, ys, marker=markers[i % len(markers)], label=m)
            ax.set_xscale("log", base=2)
            ax.set_xticks(all_dims)
            ax.set_xticklabels([str(d) for d in all_dims])
            ax.minorticks_off()
            ax.set_xlabel("embedding dimension (prefix)")
            if panel == "scores":
                ax.set_ylabel(f"{met} (x100)")
                ax.set_title(f"{met} vs dimension")
            else:
                ax.set_ylabel(f"% of full-dim {met}")
                ax.set_title("share of full-dimension score kept")
                ax.axhline(100.0, color="grey", linewidth=0.8, linestyle=":")
            ax.grid(True, alpha=0.3)
            ax.legend()
        if title and len(panels) == 1:
            axes[0].set_title(title)
        elif title:
            fig.suptitle(title)
        out = Path(path)
        fig.savefig(out, dpi=120)
        return out
