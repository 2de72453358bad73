"""The programme's scores: per-pair cosines and the retrieval side of an STS split per width,
one run's scores (:class:`Run`), a recipe's summary over seeds and the rule that chooses a recipe.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from matryo_fast._metrics import correlations, recall_per_query
from matryo_fast._validate import validate_dims
from matryo_fast.intervals import Interval, aggregate_seeds, paired_bootstrap

__all__ = [
    "KINDS",
    "MATRYOSHKA",
    "PARTNER_MIN_SCORE",
    "STANDARD",
    "Run",
    "pair_cosines",
    "partner_retrieval",
    "score_model",
    "selection_score",
    "summarise",
]

STANDARD, MATRYOSHKA = "standard", "matryoshka"
KINDS = (STANDARD, MATRYOSHKA)
#: Partner retrieval: an STS pair whose gold score is at least this is a (query, partner) pair.
PARTNER_MIN_SCORE = 4.0


def pair_cosines(
    emb: npt.NDArray[np.float32], rows1: npt.ArrayLike, rows2: npt.ArrayLike, dims: Sequence[int]
) -> dict[int, npt.NDArray[np.float64]]:
    """Cosine of each pair ``(emb[rows1[i]], emb[rows2[i]])`` at every width (first ``d``
    columns, re-normalised)."""
    from matryo_fast._reference import normalised_prefix

    a, b = np.asarray(rows1), np.asarray(rows2)
    out = {}
    for d in validate_dims(dims, emb.shape[1]):
        e = normalised_prefix(emb, d).astype(np.float64)
        out[d] = np.einsum("ij,ij->i", e[a], e[b])
    return out


def partner_retrieval(
    emb: npt.NDArray[np.float32],
    rows1: npt.ArrayLike,
    rows2: npt.ArrayLike,
    gold: npt.ArrayLike,
    dims: Sequence[int],
    *,
    k: int = 10,
    min_score: float = PARTNER_MIN_SCORE,
) -> dict[str, dict[int, float]]:
    """The retrieval side of an STS split, per width (x100).

    The corpus is every distinct sentence of the split (``emb``); each pair with gold score
    ``>= min_score`` gives a query (its first sentence, which is itself dropped from its own
    results) and its partner (the second sentence).

    Returns:
        ``{"recall@k": {d: v}, "partner@k": {d: v}}``: the recall of the width-``d`` top-k
        against the full-width top-k, and the share of queries whose partner is in the
        width-``d`` top-k.

    Raises:
        ValueError: No pair reaches ``min_score``, or bad dims.
    """
    from matryo_fast import topk

    r1, r2, g = np.asarray(rows1), np.asarray(rows2), np.asarray(gold, dtype=np.float64)
    keep = (g >= min_score) & (r1 != r2)
    if not keep.any():
        raise ValueError(f"no pair has a gold score >= {min_score}")
    self_row, partner = r1[keep], r2[keep]
    q = np.ascontiguousarray(emb[self_row])
    full = emb.shape[1]
    kk = min(k, emb.shape[0] - 1)

    def top_without_self(d: int) -> npt.NDArray[np.int64]:
        idx = topk(q, emb, dim=d, k=kk + 1).indices
        return np.array([[r for r in row if r != s][:kk] for row, s in zip(idx, self_row)])

    truth = top_without_self(full)
    out: dict[str, dict[int, float]] = {f"recall@{k}": {}, f"partner@{k}": {}}
    for d in validate_dims(dims, full):
        got = truth if d == full else top_without_self(d)
        out[f"recall@{k}"][d] = 100.0 * float(recall_per_query(got, truth).mean())
        out[f"partner@{k}"][d] = 100.0 * float(np.mean([p in row for p, row in zip(partner, got)]))
    return out


@dataclass
class Run:
    """One trained model of the programme and its scores on the split."""

    recipe: str
    seed: int
    kind: str
    spearman: dict[int, float]
    retrieval: dict[str, dict[int, float]]
    train_wall_s: float
    train_loss: float
    steps: int
    folder: str
    #: Folder of the trained model: ``folder`` itself, or an identical run's (see ``reuse``).
    model: str = ""


def score_model(
    model_dir: Path,
    sts: tuple[list[str], list[str], list[float]],
    dims: Sequence[int],
    device: str,
) -> tuple[dict[int, float], dict[int, npt.NDArray[np.float64]], dict[str, dict[int, float]]]:
    """A trained model scored on an STS split: Spearman per width (x100), the per-pair cosines per
    width, and :func:`partner_retrieval`."""
    from matryo_fast.models import encode, load_model

    s1, s2, gold = sts
    index: dict[str, int] = {}
    rows = np.array([index.setdefault(t, len(index)) for t in [*s1, *s2]])
    emb = encode(load_model(model_dir, device=device), list(index), batch_size=64)
    n = len(s1)
    cos = pair_cosines(emb, rows[:n], rows[n:], dims)
    spearman = {d: 100.0 * correlations(gold, c)[0] for d, c in cos.items()}
    return spearman, cos, partner_retrieval(emb, rows[:n], rows[n:], gold, dims)


def selection_score(summary: Mapping[str, Any]) -> float:
    """The dev-split rule that chooses a recipe: the mean over widths of the Matryoshka model's
    seed-mean Spearman (every width counts; full width and small widths alike)."""
    means = [s["mean"] for s in summary[MATRYOSHKA]["spearman"].values()]
    return float(np.mean(means))


def summarise(
    runs: Sequence[Run],
    gold: npt.ArrayLike,
    cosines: Mapping[tuple[int, str], Mapping[int, Any]],
    seeds: Sequence[int],
    n_resamples: int,
) -> dict[str, Any]:
    """One recipe's runs summarised: per kind and width the seed stats of Spearman and of each
    retrieval metric, the share of the full-width Spearman kept (of the seed means), and per
    width the paired-bootstrap interval of Matryoshka minus standard over the pairs (all seeds'
    cosines, resampled together; bootstrap seed 0).

    Args:
        runs: The recipe's :class:`Run` s, both kinds, every seed.
        gold: The split's gold scores.
        cosines: ``{(seed, kind): {width: per-pair cosines}}``.
        seeds: The seeds.
        n_resamples: Bootstrap resamples per width.
    """
    out: dict[str, Any] = {}
    for kind in KINDS:
        mine = [r for r in runs if r.kind == kind]
        out[kind] = {
            "spearman": {d: asdict(s) for d, s in aggregate_seeds([r.spearman for r in mine]).items()},
            "retrieval": {
                metric: {
                    d: asdict(s) for d, s in aggregate_seeds([r.retrieval[metric] for r in mine]).items()
                }
                for metric in mine[0].retrieval
            },
            "train_wall_s": [r.train_wall_s for r in mine],
        }
    dims = list(out[MATRYOSHKA]["spearman"])
    full = max(dims)
    out["share"] = {
        kind: {
            d: 100.0 * out[kind]["spearman"][d]["mean"] / out[kind]["spearman"][full]["mean"] for d in dims
        }
        for kind in KINDS
    }
    intervals: dict[int, Interval] = {}
    for d in dims:
        a = np.stack([cosines[(s, MATRYOSHKA)][d] for s in seeds])
        b = np.stack([cosines[(s, STANDARD)][d] for s in seeds])
        intervals[d] = paired_bootstrap(gold, a, b, n_resamples=n_resamples, seed=0)
    out["difference"] = {d: asdict(iv) for d, iv in intervals.items()}
    return out
