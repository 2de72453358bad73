"""Per-dimension evaluation of Matryoshka embeddings: encode once, score every truncation width.

sentence-transformers' evaluators re-encode the whole data set once per ``truncate_dim``. Here the
texts are encoded once at full dimension and every width ``d`` is scored from those embeddings:
take the first ``d`` columns and re-normalise (exactly what ``truncate_dim`` does, because
truncation happens after the model's forward pass). A test shows both give the same numbers.

* STS (scored pairs): Spearman and Pearson correlation (x100) of the cosine of the truncated
  embeddings with the gold scores.
* Retrieval (queries against a corpus): ``recall@k`` (x100) of the truncated top-k against the
  full-dimension exact top-k, both from :func:`matryo_fast.topk`; with relevance labels also
  ``ndcg@10`` and ``mrr@10`` (x100, linear gains).

All metrics are reported x100. The :class:`EvaluationReport` holds one table per model (dims x
metrics), the share of the full-dimension score, and renders JSON, Markdown and plots
(matplotlib, behind the ``eval``/``train`` extras).

Inside a training run, :class:`MatryoshkaSTSEvaluator` (a sentence-transformers evaluator
subclass, created when first accessed so that importing this module needs no torch) scores all
widths in one pass.

>>> import numpy as np
>>> from matryo_fast.evaluation import evaluate_embeddings_sts
>>> rng = np.random.default_rng(0)
>>> a, b = rng.standard_normal((2, 50, 64)).astype(np.float32)
>>> report = evaluate_embeddings_sts(a, a + 0.1 * b, rng.random(50), dims=[64, 32])
>>> sorted(report.dims("model"))
[32, 64]
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import numpy as np
import numpy.typing as npt

if TYPE_CHECKING:
    from sentence_transformers import SentenceTransformer

__all__ = [
    "EvaluationReport",
    "MatryoshkaSTSEvaluator",  # noqa: F822 - built on first access by the module __getattr__
    "default_dims",
    "evaluate_embeddings_retrieval",
    "evaluate_embeddings_sts",
    "evaluate_retrieval",
    "evaluate_sts",
    "retrieval_metrics",
    "sts_metrics",
    "truncate_normalize",
    "validate_dims",
]

Relevance = Mapping[int, float] | Collection[int]

_INSTALL_HINT = 'pip install "matryo-fast[train]"'


# --------------------------------------------------------------------------------------------
# dims


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
        if isinstance(v, bool) or not isinstance(v, (int, np.integer)) or v <= 0:
            raise ValueError(f"{name} must be a positive int, got {v!r}")
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
        if isinstance(d, (bool, np.bool_)) or not isinstance(d, (int, np.integer)):
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


# --------------------------------------------------------------------------------------------
# numeric core (numpy only)


def _as_matrix(x: Any, what: str) -> npt.NDArray[np.float32]:
    a = np.asarray(x)
    if a.ndim != 2:
        raise ValueError(f"{what} must be 2-D (N, D), got shape {a.shape}")
    if not np.issubdtype(a.dtype, np.floating):
        raise TypeError(f"{what} must be a float array, got dtype {a.dtype}")
    if not np.isfinite(a).all():
        raise ValueError(f"{what} contains NaN or Inf")
    return np.ascontiguousarray(a, dtype=np.float32)


def truncate_normalize(emb: npt.ArrayLike, dim: int) -> npt.NDArray[np.float32]:
    """The first ``dim`` columns of each row, scaled to unit L2 norm (zero rows stay zero).

    Args:
        emb: ``(N, D)`` embeddings.
        dim: Width, ``1 <= dim <= D``.

    Returns:
        A new C-contiguous float32 ``(N, dim)`` array.

    Raises:
        ValueError: ``emb`` is not 2-D or ``dim`` is out of range.

    >>> truncate_normalize(np.array([[3.0, 4.0, 5.0]]), 2).tolist()
    [[0.6000000238418579, 0.800000011920929]]
    """
    a = np.asarray(emb)
    if a.ndim != 2:
        raise ValueError(f"embeddings must be 2-D (N, D), got shape {a.shape}")
    if isinstance(dim, bool) or not isinstance(dim, (int, np.integer)):
        raise TypeError(f"dim must be an int, got {type(dim).__name__}")
    if not 1 <= dim <= a.shape[1]:
        raise ValueError(f"dim must be in [1, {a.shape[1]}], got {dim}")
    t = a[:, :dim].astype(np.float64)
    norms = np.linalg.norm(t, axis=1, keepdims=True)
    out = np.divide(t, norms, out=np.zeros_like(t), where=norms > 0)
    return np.ascontiguousarray(out, dtype=np.float32)


def sts_metrics(
    emb1: npt.ArrayLike,
    emb2: npt.ArrayLike,
    gold: Sequence[float] | npt.ArrayLike,
    *,
    dims: Iterable[int],
) -> dict[str, dict[int, float]]:
    """Spearman and Pearson (x100) of pairwise cosine vs gold, per truncation width.

    Args:
        emb1: ``(N, D)`` embeddings of the first sentences.
        emb2: ``(N, D)`` embeddings of the second sentences.
        gold: ``N`` gold scores.
        dims: Widths to score (validated against ``D``).

    Returns:
        ``{"spearman": {dim: value}, "pearson": {dim: value}}``.

    Raises:
        ValueError: Shape mismatch, fewer than 2 pairs, constant gold scores, bad dims.
        ImportError: scipy is missing.
    """
    try:
        from scipy.stats import pearsonr, spearmanr
    except ImportError as exc:  # pragma: no cover - depends on the environment
        raise ImportError(f"STS evaluation needs scipy: {_INSTALL_HINT}") from exc
    a = _as_matrix(emb1, "emb1")
    b = _as_matrix(emb2, "emb2")
    g = np.asarray(gold, dtype=np.float64).reshape(-1)
    if a.shape != b.shape:
        raise ValueError(f"emb1 and emb2 must have the same shape, got {a.shape} and {b.shape}")
    if g.shape[0] != a.shape[0]:
        raise ValueError(f"gold has {g.shape[0]} scores for {a.shape[0]} pairs")
    if a.shape[0] < 2:
        raise ValueError(f"STS needs at least 2 pairs, got {a.shape[0]}")
    if not np.isfinite(g).all():
        raise ValueError("gold scores contain NaN or Inf")
    if np.ptp(g) == 0:
        raise ValueError("gold scores are all equal; correlation is undefined")
    out: dict[str, dict[int, float]] = {"spearman": {}, "pearson": {}}
    for d in validate_dims(dims, a.shape[1]):
        cos = np.einsum(
            "ij,ij->i",
            truncate_normalize(a, d).astype(np.float64),
            truncate_normalize(b, d).astype(np.float64),
        )
        if np.ptp(cos) == 0:
            sp = pe = 0.0  # constant predictions carry no ranking information
        else:
            sp = float(spearmanr(g, cos).statistic)
            pe = float(pearsonr(g, cos).statistic)
        out["spearman"][d] = 100.0 * sp
        out["pearson"][d] = 100.0 * pe
    return out


def _relevance_dicts(relevant: Sequence[Relevance], n_queries: int, n_corpus: int) -> list[dict[int, float]]:
    if isinstance(relevant, (str, bytes)) or len(relevant) != n_queries:
        got = "a string" if isinstance(relevant, (str, bytes)) else f"{len(relevant)} entries"
        raise ValueError(f"relevant must have one entry per query ({n_queries}), got {got}")
    out: list[dict[int, float]] = []
    for qi, rel in enumerate(relevant):
        items: dict[int, float]
        if isinstance(rel, Mapping):
            items = {}
            for doc, gain in rel.items():
                g = float(gain)
                if not math.isfinite(g) or g < 0:
                    raise ValueError(f"relevant[{qi}][{doc}] must be a finite gain >= 0, got {gain!r}")
                items[doc] = g
        else:
            items = {doc: 1.0 for doc in rel}
        for doc in items:
            if isinstance(doc, (bool, np.bool_)) or not isinstance(doc, (int, np.integer)):
                raise TypeError(f"relevant[{qi}] must hold corpus row indices (ints), got {doc!r}")
            if not 0 <= doc < n_corpus:
                raise ValueError(f"relevant[{qi}] has row {doc}, outside the corpus [0, {n_corpus})")
        out.append({int(k): v for k, v in items.items()})
    return out


def retrieval_metrics(
    queries: npt.ArrayLike,
    corpus: npt.ArrayLike,
    *,
    dims: Iterable[int],
    k: int = 10,
    relevant: Sequence[Relevance] | None = None,
    funnel_candidates: int | None = None,
) -> dict[str, dict[int, float]]:
    """Per width: recall@k vs the full-dim exact top-k, and nDCG@10 / MRR@10 given labels (x100).

    With ``funnel_candidates=c``, also ``funnel_recall@k``: the recall of the two-stage funnel
    that shortlists ``c`` rows at width ``d`` and re-ranks them at the full width
    (:func:`matryo_fast.funnel`), next to the recall of truncated search alone.

    ``recall@k`` at width ``d`` is the mean over queries of
    ``|topk_d ∩ topk_D| / min(k, N)``, where both top-k lists come from :func:`matryo_fast.topk`
    (cosine of prefixes; ties by ascending row). ``ndcg@10`` uses linear gains
    ``sum(gain_i / log2(i + 1))`` over the top 10, divided by the ideal DCG; ``mrr@10`` is the
    reciprocal rank of the first row with gain > 0 in the top 10 (0 if none). Queries without any
    positive label are skipped for nDCG/MRR (as sentence-transformers does).

    Args:
        queries: ``(Q, D)`` query embeddings.
        corpus: ``(N, D)`` corpus embeddings.
        dims: Widths to score.
        k: Cut-off for recall against the full-dim top-k.
        relevant: Optional, one entry per query: a collection of relevant corpus rows (gain 1) or
            a ``{row: gain}`` mapping.
        funnel_candidates: Shortlist size of the funnel whose recall is reported too (>= k).

    Returns:
        ``{"recall@k": {dim: v}, ...}`` plus ``"ndcg@10"`` and ``"mrr@10"`` when ``relevant`` is
        given, and ``"funnel_recall@k"`` with ``funnel_candidates``.

    Raises:
        ValueError: Shapes differ, ``k < 1``, bad dims, or bad relevance labels.
    """
    from matryo_fast import funnel, topk

    q = _as_matrix(queries, "queries")
    c = _as_matrix(corpus, "corpus")
    if q.shape[1] != c.shape[1]:
        raise ValueError(f"queries have {q.shape[1]} dims but the corpus has {c.shape[1]}")
    if c.shape[0] == 0 or q.shape[0] == 0:
        raise ValueError(f"need at least one query and one corpus row, got {q.shape[0]} and {c.shape[0]}")
    if isinstance(k, bool) or not isinstance(k, (int, np.integer)) or k < 1:
        raise ValueError(f"k must be a positive int, got {k!r}")
    full = c.shape[1]
    ws = validate_dims(dims, full)
    rels = None if relevant is None else _relevance_dicts(relevant, q.shape[0], c.shape[0])
    kk = min(int(k), c.shape[0])
    ref = topk(q, c, dim=full, k=kk).indices
    depth = max(kk, 10)
    key = f"recall@{int(k)}"
    out: dict[str, dict[int, float]] = {key: {}}
    if rels is not None:
        out["ndcg@10"] = {}
        out["mrr@10"] = {}
    fkey = f"funnel_recall@{int(k)}"
    if funnel_candidates is not None:
        if isinstance(funnel_candidates, bool) or not isinstance(funnel_candidates, (int, np.integer)):
            raise ValueError(f"funnel_candidates must be an int, got {funnel_candidates!r}")
        if funnel_candidates < kk:
            raise ValueError(f"funnel_candidates must be at least k={kk}, got {funnel_candidates}")
        out[fkey] = {}

    def recall_of(found: npt.NDArray[np.int64]) -> float:
        hits = [len(set(found[i, :kk].tolist()) & set(ref[i].tolist())) / kk for i in range(q.shape[0])]
        return 100.0 * float(np.mean(hits))

    for d in ws:
        got = topk(q, c, dim=d, k=depth).indices
        out[key][d] = recall_of(got)
        if funnel_candidates is not None:
            cands = (int(funnel_candidates),)
            shortlisted = ref if d == full else funnel(q, c, k=kk, dims=(d, full), candidates=cands).indices
            out[fkey][d] = recall_of(shortlisted)
        if rels is not None:
            ndcgs: list[float] = []
            rrs: list[float] = []
            for i, rel in enumerate(rels):
                if not any(g > 0 for g in rel.values()):
                    continue
                top = got[i, :10].tolist()
                dcg = sum(rel.get(doc, 0.0) / math.log2(r + 2) for r, doc in enumerate(top))
                ideal = sorted(rel.values(), reverse=True)[:10]
                idcg = sum(g / math.log2(r + 2) for r, g in enumerate(ideal))
                ndcgs.append(dcg / idcg)
                rr = 0.0
                for r, doc in enumerate(top):
                    if rel.get(doc, 0.0) > 0:
                        rr = 1.0 / (r + 1)
                        break
                rrs.append(rr)
            if not ndcgs:
                raise ValueError("relevant has no query with a positive label")
            out["ndcg@10"][d] = 100.0 * float(np.mean(ndcgs))
            out["mrr@10"][d] = 100.0 * float(np.mean(rrs))
    return out


# --------------------------------------------------------------------------------------------
# report


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
    """

    task: str
    dataset: str
    results: dict[str, dict[str, dict[int, float]]]
    full_dims: dict[str, int]
    primary_metric: str
    meta: dict[str, Any] = field(default_factory=dict)

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
        return cls(first.task, first.dataset, results, full, first.primary_metric, meta)

    # ---- serialise

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict (dims become string keys, as JSON requires)."""
        return {
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
        return "\n".join(lines) + "\n"

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
        try:
            from matplotlib.figure import Figure
        except ImportError as exc:  # pragma: no cover - depends on the environment
            raise ImportError('plot needs matplotlib: pip install "matryo-fast[eval]"') from exc
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


# --------------------------------------------------------------------------------------------
# embeddings -> report


def evaluate_embeddings_sts(
    emb1: npt.ArrayLike,
    emb2: npt.ArrayLike,
    scores: Sequence[float] | npt.ArrayLike,
    *,
    dims: Iterable[int] | None = None,
    model_name: str = "model",
    dataset: str = "sts",
) -> EvaluationReport:
    """STS report from precomputed full-dimension embeddings.

    Args:
        emb1: ``(N, D)`` embeddings of the first sentences.
        emb2: ``(N, D)`` embeddings of the second sentences.
        scores: ``N`` gold scores.
        dims: Widths; default :func:`default_dims`. The full width ``D`` is always included.
        model_name: Label of the model in the report.
        dataset: Label of the data in the report.

    Returns:
        An :class:`EvaluationReport` with ``spearman`` (primary) and ``pearson``.

    Raises:
        ValueError: See :func:`sts_metrics`.
    """
    a = np.asarray(emb1)
    full = int(a.shape[1]) if a.ndim == 2 else 0
    ws = _dims_with_full(dims, full)
    res = sts_metrics(emb1, emb2, scores, dims=ws)
    return EvaluationReport(
        "sts",
        dataset,
        {model_name: res},
        {model_name: full},
        "spearman",
        {"pairs": int(a.shape[0])},
    )


def evaluate_embeddings_retrieval(
    queries: npt.ArrayLike,
    corpus: npt.ArrayLike,
    *,
    dims: Iterable[int] | None = None,
    k: int = 10,
    relevant: Sequence[Relevance] | None = None,
    model_name: str = "model",
    dataset: str = "retrieval",
    funnel_candidates: int | None = None,
) -> EvaluationReport:
    """Retrieval report from precomputed full-dimension embeddings (see :func:`retrieval_metrics`).

    With ``funnel_candidates``, the report also has ``funnel_recall@k`` per width: the recall
    of shortlisting that many rows at the width and re-ranking them at full width.

    Args:
        queries: ``(Q, D)`` query embeddings.
        corpus: ``(N, D)`` corpus embeddings.
        dims: Widths; default :func:`default_dims`. The full width is always included.
        k: Recall cut-off.
        relevant: Optional relevance labels, one entry per query.
        model_name: Label of the model in the report.
        dataset: Label of the data in the report.

    Returns:
        An :class:`EvaluationReport`; the primary metric is ``ndcg@10`` with labels, else
        ``recall@k``.
    """
    c = np.asarray(corpus)
    full = int(c.shape[1]) if c.ndim == 2 else 0
    ws = _dims_with_full(dims, full)
    res = retrieval_metrics(
        queries, corpus, dims=ws, k=k, relevant=relevant, funnel_candidates=funnel_candidates
    )
    primary = "ndcg@10" if relevant is not None else f"recall@{k}"
    meta = {"queries": int(np.asarray(queries).shape[0]), "corpus": int(c.shape[0]), "k": k}
    return EvaluationReport("retrieval", dataset, {model_name: res}, {model_name: full}, primary, meta)


def _dims_with_full(dims: Iterable[int] | None, full: int) -> list[int]:
    if full <= 0:
        raise ValueError("embeddings must be 2-D (N, D) with D > 0")
    if dims is None:
        return default_dims(full)
    ws = validate_dims(dims, full)
    return ws if full in ws else [full, *ws]


# --------------------------------------------------------------------------------------------
# model -> report


def _resolve_model(model: Any, device: str) -> tuple[Any, str]:
    from matryo_fast.models import load_model

    if model is None or isinstance(model, (str, os.PathLike)):
        label = "all-MiniLM-L6-v2" if model is None else Path(os.fspath(model)).name
        return load_model(model, device=device), label
    return model, "model"


def _encode_unique(
    model: Any, texts: Sequence[str], *, batch_size: int, show_progress_bar: bool
) -> tuple[npt.NDArray[np.float32], npt.NDArray[np.intp]]:
    """Encode each distinct text once; return the embeddings and the row of each input text."""
    from matryo_fast.models import encode

    index: dict[str, int] = {}
    rows = np.empty(len(texts), dtype=np.intp)
    for i, t in enumerate(texts):
        rows[i] = index.setdefault(t, len(index))
    emb = encode(model, list(index), batch_size=batch_size, show_progress_bar=show_progress_bar)
    return emb, rows


def evaluate_sts(
    model: SentenceTransformer | str | os.PathLike[str] | None,
    data: str | os.PathLike[str] | tuple[Sequence[str], Sequence[str], Sequence[float]],
    *,
    dims: Iterable[int] | None = None,
    name: str | None = None,
    batch_size: int = 64,
    device: str = "cpu",
    show_progress_bar: bool = False,
) -> EvaluationReport:
    """Encode the STS sentences once at full dimension, then score every width.

    Args:
        model: A loaded ``SentenceTransformer``, a model folder, or ``None`` for the shipped
            all-MiniLM-L6-v2.
        data: A TSV/CSV/JSONL file with ``sentence1``, ``sentence2``, ``score`` columns, or a
            ``(sentences1, sentences2, scores)`` tuple.
        dims: Widths; default the full dimension and powers of two down to 32. The full width is
            always included (the % column needs it).
        name: Label of the model in the report (default: the folder name).
        batch_size: Encoding batch size.
        device: Device when the model is loaded here.
        show_progress_bar: Show a tqdm bar while encoding.

    Returns:
        An :class:`EvaluationReport` (``spearman`` primary, ``pearson``).

    Raises:
        ImportError: The ``train`` extra is missing.
        FileNotFoundError: The data file or model folder does not exist.
        matryo_fast.data.DataError: The data file is malformed.
        ValueError: Bad dims or fewer than 2 pairs.

    >>> rep = evaluate_sts(None, "stsb/test.tsv", dims=[384, 32])  # doctest: +SKIP
    >>> rep.score("all-MiniLM-L6-v2", 384)  # doctest: +SKIP
    82.03...
    """
    from matryo_fast.data import read_sts

    if isinstance(data, (str, os.PathLike)):
        s1, s2, gold = read_sts(data)
        dataset = Path(os.fspath(data)).name
    else:
        if len(data) != 3:
            raise ValueError("data must be a file or a (sentences1, sentences2, scores) tuple")
        s1, s2, gold = list(data[0]), list(data[1]), [float(x) for x in data[2]]
        if not len(s1) == len(s2) == len(gold):
            raise ValueError(
                f"sentences1, sentences2 and scores differ in length: {len(s1)}, {len(s2)}, {len(gold)}"
            )
        dataset = "sts"
    loaded, label = _resolve_model(model, device)
    emb, rows = _encode_unique(loaded, [*s1, *s2], batch_size=batch_size, show_progress_bar=show_progress_bar)
    n = len(s1)
    report = evaluate_embeddings_sts(
        emb[rows[:n]], emb[rows[n:]], gold, dims=dims, model_name=name or label, dataset=dataset
    )
    report.meta["unique_sentences"] = int(emb.shape[0])
    return report


def evaluate_retrieval(
    model: SentenceTransformer | str | os.PathLike[str] | None,
    queries: Sequence[str],
    corpus: Sequence[str],
    *,
    dims: Iterable[int] | None = None,
    k: int = 10,
    relevant: Sequence[Relevance] | None = None,
    name: str | None = None,
    dataset: str = "retrieval",
    batch_size: int = 64,
    device: str = "cpu",
    show_progress_bar: bool = False,
    funnel_candidates: int | None = None,
) -> EvaluationReport:
    """Encode queries and corpus once, then score every width (see :func:`retrieval_metrics`).

    ``funnel_candidates`` adds funnel recall next to truncated recall (see
    :func:`evaluate_embeddings_retrieval`).

    Args:
        model: A loaded ``SentenceTransformer``, a model folder, or ``None`` (shipped MiniLM).
        queries: Query texts.
        corpus: Corpus texts; ``relevant`` refers to their positions.
        dims: Widths; default the full dimension and powers of two down to 32.
        k: Recall cut-off against the full-dim top-k.
        relevant: Optional relevance labels, one entry per query.
        name: Label of the model in the report.
        dataset: Label of the data in the report.
        batch_size: Encoding batch size.
        device: Device when the model is loaded here.
        show_progress_bar: Show a tqdm bar while encoding.

    Returns:
        An :class:`EvaluationReport`.

    Raises:
        ValueError: Empty queries/corpus, bad dims, k or labels.
    """
    from matryo_fast.models import encode

    if not queries or not corpus:
        raise ValueError(f"need at least one query and one corpus text, got {len(queries)} and {len(corpus)}")
    loaded, label = _resolve_model(model, device)
    q = encode(loaded, list(queries), batch_size=batch_size, show_progress_bar=show_progress_bar)
    c = encode(loaded, list(corpus), batch_size=batch_size, show_progress_bar=show_progress_bar)
    return evaluate_embeddings_retrieval(
        q,
        c,
        dims=dims,
        k=k,
        relevant=relevant,
        model_name=name or label,
        dataset=dataset,
        funnel_candidates=funnel_candidates,
    )


# --------------------------------------------------------------------------------------------
# sentence-transformers evaluator (class built on first access: no torch at import time)

_EVALUATOR_CLASS: type | None = None


def _make_evaluator_class() -> type:
    from matryo_fast.models import require

    ev = require("sentence_transformers.base.evaluation.evaluator", feature="MatryoshkaSTSEvaluator")
    base: type = ev.BaseEvaluator

    class MatryoshkaSTSEvaluator(base):  # type: ignore[misc]
        """STS evaluator for ``SentenceTransformerTrainer`` that scores every width in one pass.

        Returned metrics (sentence-transformers convention: fractions, not x100), prefixed by
        ``name``: ``spearman_{dim}``, ``pearson_{dim}`` for each width and ``spearman_mean``
        (the primary metric, the mean Spearman over the widths). The full
        :class:`EvaluationReport` of the latest call is kept in ``last_report``.

        Args:
            sentences1: First sentences.
            sentences2: Second sentences.
            scores: Gold scores.
            dims: Widths; default the model's full dimension and powers of two down to 32.
            name: Metric prefix.
            batch_size: Encoding batch size.
            show_progress_bar: Show a tqdm bar while encoding.

        Raises:
            ValueError: Lengths differ or fewer than 2 pairs.
        """

        def __init__(
            self,
            sentences1: Sequence[str],
            sentences2: Sequence[str],
            scores: Sequence[float],
            *,
            dims: Iterable[int] | None = None,
            name: str = "sts",
            batch_size: int = 64,
            show_progress_bar: bool = False,
        ) -> None:
            super().__init__()
            if not len(sentences1) == len(sentences2) == len(scores):
                raise ValueError(
                    "sentences1, sentences2 and scores differ in length: "
                    f"{len(sentences1)}, {len(sentences2)}, {len(scores)}"
                )
            if len(scores) < 2:
                raise ValueError(f"STS needs at least 2 pairs, got {len(scores)}")
            self.sentences1 = list(sentences1)
            self.sentences2 = list(sentences2)
            self.scores = [float(s) for s in scores]
            self.dims = None if dims is None else list(dims)
            self.name = name
            self.batch_size = batch_size
            self.show_progress_bar = show_progress_bar
            self.primary_metric = "spearman_mean"
            self.greater_is_better = True
            self.last_report: EvaluationReport | None = None

        def __call__(
            self,
            model: Any,
            output_path: str | None = None,
            epoch: int = -1,
            steps: int = -1,
        ) -> dict[str, float]:
            report = evaluate_sts(
                model,
                (self.sentences1, self.sentences2, self.scores),
                dims=self.dims,
                name=self.name,
                batch_size=self.batch_size,
                show_progress_bar=self.show_progress_bar,
            )
            self.last_report = report
            res = report.results[self.name]
            metrics: dict[str, float] = {}
            for d in sorted(res["spearman"], reverse=True):
                metrics[f"spearman_{d}"] = res["spearman"][d] / 100.0
                metrics[f"pearson_{d}"] = res["pearson"][d] / 100.0
            metrics["spearman_mean"] = float(np.mean(list(res["spearman"].values()))) / 100.0
            if output_path is not None:
                os.makedirs(output_path, exist_ok=True)
                report.meta.update({"epoch": epoch, "steps": steps})
                report.to_json(Path(output_path) / f"matryoshka_sts_{self.name}.json")
            metrics = self.prefix_name_to_metrics(metrics, self.name)
            self.store_metrics_in_model_card_data(model, metrics, epoch, steps)
            return metrics

        @property
        def description(self) -> str:
            return "Matryoshka Semantic Similarity"

        def get_config_dict(self) -> dict[str, Any]:
            return {"dims": self.dims} if self.dims is not None else {}

    MatryoshkaSTSEvaluator.__module__ = __name__
    return MatryoshkaSTSEvaluator


def __getattr__(name: str) -> Any:
    global _EVALUATOR_CLASS
    if name == "MatryoshkaSTSEvaluator":
        if _EVALUATOR_CLASS is None:
            _EVALUATOR_CLASS = _make_evaluator_class()
        return _EVALUATOR_CLASS
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
