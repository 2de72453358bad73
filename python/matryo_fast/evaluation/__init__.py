"""Per-dimension evaluation of Matryoshka embeddings: encode once, score every truncation width.

sentence-transformers' evaluators re-encode the whole data set once per ``truncate_dim``. Here the
texts are encoded once at full dimension and every width ``d`` is scored from those embeddings:
take the first ``d`` columns and re-normalise (exactly what ``truncate_dim`` does, because
truncation happens after the model's forward pass). A test shows both give the same numbers.

The package, by job: :mod:`~matryo_fast.evaluation.scores` (per-width metrics from
embeddings), :mod:`~matryo_fast.evaluation.report` (:class:`EvaluationReport`),
:mod:`~matryo_fast.evaluation.embeddings` (embeddings to report),
:mod:`~matryo_fast.evaluation.encode` (model to report) and
:mod:`~matryo_fast.evaluation.evaluator` (the sentence-transformers evaluator). The widths
helpers come from :mod:`matryo_fast._validate`, the metrics from :mod:`matryo_fast._metrics`.

* STS (scored pairs): Spearman and Pearson correlation (x100) of the cosine of the truncated
  embeddings with the gold scores.
* Retrieval (queries against a corpus): ``recall@k`` (x100) of the truncated top-k against the
  full-dimension exact top-k, both from :func:`matryo_fast.topk`; with relevance labels also
  ``ndcg@10`` and ``mrr@10`` (x100, linear gains).

All metrics are reported x100. The :class:`EvaluationReport` holds one table per model (dims x
metrics), the share of the full-dimension score, and renders JSON, Markdown and plots
(matplotlib, behind the ``eval``/``train`` extras).

With ``precisions=("float32", "int8", "binary")`` the report gets a precision axis
(:mod:`~matryo_fast.evaluation.precision`): every metric at every (width, precision), from the
same embeddings, as the quantized tiers of a corpus file score them (``docs/quantized.md``),
with the bytes per vector of each cell, a Markdown table and a heat map.

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

from typing import Any

from matryo_fast._validate import default_dims, validate_dims
from matryo_fast.evaluation.embeddings import evaluate_embeddings_retrieval, evaluate_embeddings_sts
from matryo_fast.evaluation.encode import evaluate_retrieval, evaluate_sts
from matryo_fast.evaluation.precision import bytes_per_vector
from matryo_fast.evaluation.report import EvaluationReport
from matryo_fast.evaluation.scores import (
    Relevance,
    check_precisions,
    retrieval_metrics,
    retrieval_precision_metrics,
    sts_metrics,
    sts_precision_metrics,
    truncate_normalize,
)

__all__ = [
    "EvaluationReport",
    "MatryoshkaSTSEvaluator",  # noqa: F822 - built on first access by the module __getattr__
    "Relevance",
    "bytes_per_vector",
    "check_precisions",
    "default_dims",
    "evaluate_embeddings_retrieval",
    "evaluate_embeddings_sts",
    "evaluate_retrieval",
    "evaluate_sts",
    "retrieval_metrics",
    "retrieval_precision_metrics",
    "sts_metrics",
    "sts_precision_metrics",
    "truncate_normalize",
    "validate_dims",
]

_EVALUATOR_CLASS: type | None = None


def __getattr__(name: str) -> Any:
    global _EVALUATOR_CLASS
    if name == "MatryoshkaSTSEvaluator":
        if _EVALUATOR_CLASS is None:
            from matryo_fast.evaluation.evaluator import make_evaluator_class

            _EVALUATOR_CLASS = make_evaluator_class()
        return _EVALUATOR_CLASS
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
