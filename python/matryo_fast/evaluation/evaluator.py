"""``MatryoshkaSTSEvaluator``: a sentence-transformers evaluator that scores every width in one
pass. The class derives from sentence-transformers' ``BaseEvaluator``, so it is built when
first asked for (``matryo_fast.evaluation.MatryoshkaSTSEvaluator``), not at import time."""

from __future__ import annotations

import os
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from matryo_fast._extras import require
from matryo_fast.evaluation.encode import evaluate_sts
from matryo_fast.evaluation.report import EvaluationReport

__all__ = ["make_evaluator_class"]


def make_evaluator_class() -> type:
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

    MatryoshkaSTSEvaluator.__module__ = "matryo_fast.evaluation"
    return MatryoshkaSTSEvaluator
