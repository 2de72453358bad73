"""The evaluator's funnel recall, next to truncated recall, against the float64 oracle."""

from __future__ import annotations

import numpy as np
import pytest

from matryo_fast._reference import funnel_reference, topk_reference
from matryo_fast.evaluation import evaluate_embeddings_retrieval, retrieval_metrics


def _data() -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(3)
    scale = 1.0 / np.sqrt(1.0 + np.arange(48) / 8.0)
    x = (rng.standard_normal((2500, 48)) * scale).astype(np.float32)
    q = (x[:40] + 0.2 * rng.standard_normal((40, 48)) * scale).astype(np.float32)
    return x, q


def test_funnel_recall_matches_oracle() -> None:
    x, q = _data()
    k, c = 10, 60
    got = retrieval_metrics(q, x, dims=[48, 24, 12, 6], k=k, funnel_candidates=c)
    _, truth = topk_reference(q, x, 48, k)
    for d in (24, 12, 6):
        _, found = funnel_reference(q, x, k=k, dims=(d, 48), candidates=(c,))
        want = 100 * np.mean([len(set(a) & set(b)) / k for a, b in zip(found, truth)])
        assert got[f"funnel_recall@{k}"][d] == pytest.approx(want)
        # A shortlist re-ranked at full width can only find more of the truth than truncation.
        assert got[f"funnel_recall@{k}"][d] >= got[f"recall@{k}"][d]
    assert got[f"funnel_recall@{k}"][48] == 100.0


def test_funnel_recall_in_report_and_errors() -> None:
    x, q = _data()
    report = evaluate_embeddings_retrieval(q, x, dims=[48, 12], k=5, funnel_candidates=40)
    assert "funnel_recall@5" in report.metrics()
    assert "funnel_recall@5" in report.to_markdown()
    with pytest.raises(ValueError, match="at least k"):
        retrieval_metrics(q, x, dims=[48, 12], k=10, funnel_candidates=5)
    with pytest.raises(ValueError, match="must be an int"):
        retrieval_metrics(q, x, dims=[48, 12], k=10, funnel_candidates=2.5)  # type: ignore[arg-type]
