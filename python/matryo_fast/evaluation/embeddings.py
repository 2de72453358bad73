"""Reports from precomputed full-dimension embeddings."""

from __future__ import annotations

from collections.abc import Iterable, Sequence

import numpy as np
import numpy.typing as npt

from matryo_fast._validate import default_dims, validate_dims
from matryo_fast.evaluation.report import EvaluationReport
from matryo_fast.evaluation.scores import Relevance, retrieval_precision_metrics, sts_precision_metrics

__all__ = ["evaluate_embeddings_retrieval", "evaluate_embeddings_sts"]


def evaluate_embeddings_sts(
    emb1: npt.ArrayLike,
    emb2: npt.ArrayLike,
    scores: Sequence[float] | npt.ArrayLike,
    *,
    dims: Iterable[int] | None = None,
    model_name: str = "model",
    dataset: str = "sts",
    precisions: Iterable[str] | None = None,
    int8_ranges: npt.ArrayLike | None = None,
) -> EvaluationReport:
    """STS report from precomputed full-dimension embeddings.

    With ``precisions`` (e.g. ``("float32", "int8", "binary")``), the report also has the
    precision axis (:attr:`EvaluationReport.by_precision`): the scores with both sentences
    stored at each precision (see :func:`sts_precision_metrics`).

    Args:
        emb1: ``(N, D)`` embeddings of the first sentences.
        emb2: ``(N, D)`` embeddings of the second sentences.
        scores: ``N`` gold scores.
        dims: Widths; default :func:`default_dims`. The full width ``D`` is always included.
        model_name: Label of the model in the report.
        dataset: Label of the data in the report.
        precisions: The precision axis: any of ``"float32"``, ``"int8"``, ``"binary"``;
            ``None`` (default) for none.
        int8_ranges: ``(2, D)`` per-dimension ``[min; max]`` of the int8 codes; default the
            ranges of both sides' embeddings.

    Returns:
        An :class:`EvaluationReport` with ``spearman`` (primary) and ``pearson``.

    Raises:
        ValueError: See :func:`sts_metrics`; an unknown precision.
    """
    a = np.asarray(emb1)
    full = int(a.shape[1]) if a.ndim == 2 else 0
    ws = _dims_with_full(dims, full)
    by_precision = sts_precision_metrics(
        emb1, emb2, scores, dims=ws, precisions=precisions or (), int8_ranges=int8_ranges
    )
    axis = {} if precisions is None else {model_name: by_precision}
    res = by_precision["float32"]
    return EvaluationReport(
        "sts",
        dataset,
        {model_name: res},
        {model_name: full},
        "spearman",
        {"pairs": int(a.shape[0])},
        axis,
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
    precisions: Iterable[str] | None = None,
    int8_ranges: npt.ArrayLike | None = None,
) -> EvaluationReport:
    """Retrieval report from precomputed full-dimension embeddings (see :func:`retrieval_metrics`).

    With ``funnel_candidates``, the report also has ``funnel_recall@k`` per width: the recall
    of shortlisting that many rows at the width and re-ranking them at full width. With
    ``precisions``, the precision axis: the metrics of a search of the corpus stored at each
    precision (see :func:`retrieval_precision_metrics`).

    Args:
        queries: ``(Q, D)`` query embeddings.
        corpus: ``(N, D)`` corpus embeddings.
        dims: Widths; default :func:`default_dims`. The full width is always included.
        k: Recall cut-off.
        relevant: Optional relevance labels, one entry per query.
        model_name: Label of the model in the report.
        dataset: Label of the data in the report.
        funnel_candidates: Shortlist size of the funnel whose recall is reported too.
        precisions: The precision axis: any of ``"float32"``, ``"int8"``, ``"binary"``;
            ``None`` (default) for none.
        int8_ranges: ``(2, D)`` per-dimension ``[min; max]`` of the int8 codes; default the
            corpus's.

    Returns:
        An :class:`EvaluationReport`; the primary metric is ``ndcg@10`` with labels, else
        ``recall@k``.
    """
    c = np.asarray(corpus)
    full = int(c.shape[1]) if c.ndim == 2 else 0
    ws = _dims_with_full(dims, full)
    by_precision = retrieval_precision_metrics(
        queries,
        corpus,
        dims=ws,
        k=k,
        relevant=relevant,
        funnel_candidates=funnel_candidates,
        precisions=precisions or (),
        int8_ranges=int8_ranges,
    )
    axis = {} if precisions is None else {model_name: by_precision}
    res = by_precision["float32"]
    primary = "ndcg@10" if relevant is not None else f"recall@{k}"
    meta = {"queries": int(np.asarray(queries).shape[0]), "corpus": int(c.shape[0]), "k": k}
    return EvaluationReport("retrieval", dataset, {model_name: res}, {model_name: full}, primary, meta, axis)


def _dims_with_full(dims: Iterable[int] | None, full: int) -> list[int]:
    if full <= 0:
        raise ValueError("embeddings must be 2-D (N, D) with D > 0")
    if dims is None:
        return default_dims(full)
    ws = validate_dims(dims, full)
    return ws if full in ws else [full, *ws]
