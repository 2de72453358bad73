"""Seeds and intervals for the training experiments: the spread over seeds per width, and a paired
bootstrap of a Spearman difference over the pairs of an STS split.

Pure functions of arrays (numpy, and scipy for the ranks); no model, no files.

>>> import numpy as np
>>> rng = np.random.default_rng(0)
>>> gold = rng.random(200)
>>> good, noisy = gold + 0.1 * rng.random(200), gold + rng.random(200)
>>> ci = paired_bootstrap(gold, good, noisy, n_resamples=500, seed=1)
>>> ci.low > 0
True
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from matryo_fast._extras import require
from matryo_fast._validate import check_int, require_positive

__all__ = ["Interval", "SeedStats", "aggregate_seeds", "paired_bootstrap", "resample_indices", "seed_stats"]


@dataclass(frozen=True)
class SeedStats:
    """One number over several seeds.

    Attributes:
        mean: Mean over the seeds.
        sd: Sample standard deviation (``ddof=1``; 0 for one seed).
        low: Smallest value.
        high: Largest value.
        n: Number of seeds.
    """

    mean: float
    sd: float
    low: float
    high: float
    n: int


@dataclass(frozen=True)
class Interval:
    """A paired-bootstrap estimate of ``spearman(a) - spearman(b)`` (x100).

    Attributes:
        diff: The difference on the pairs as given (the point estimate).
        low: Lower end of the percentile interval.
        high: Upper end of the percentile interval.
        confidence: The interval's coverage, e.g. 0.95.
        n_resamples: Bootstrap resamples drawn.
        seed: Seed of the resampling.
    """

    diff: float
    low: float
    high: float
    confidence: float
    n_resamples: int
    seed: int

    @property
    def excludes_zero(self) -> bool:
        """Whether 0 lies outside ``[low, high]``."""
        return self.low > 0 or self.high < 0


def seed_stats(values: Sequence[float] | npt.ArrayLike) -> SeedStats:
    """Mean, sample standard deviation, min and max of per-seed values.

    Raises:
        ValueError: No values, or a value that is not finite.

    >>> seed_stats([1.0, 2.0, 3.0])
    SeedStats(mean=2.0, sd=1.0, low=1.0, high=3.0, n=3)
    """
    v = np.asarray(values, dtype=np.float64).reshape(-1)
    if v.size == 0:
        raise ValueError("seed_stats needs at least one value")
    if not np.isfinite(v).all():
        raise ValueError(f"seed_stats got a value that is not finite: {v.tolist()}")
    sd = float(np.std(v, ddof=1)) if v.size > 1 else 0.0
    return SeedStats(float(v.mean()), sd, float(v.min()), float(v.max()), int(v.size))


def aggregate_seeds(runs: Sequence[Mapping[int, float]]) -> dict[int, SeedStats]:
    """Per width, :func:`seed_stats` over the runs (one ``{width: score}`` per seed).

    Raises:
        ValueError: No runs, or the runs score different widths.
    """
    if not runs:
        raise ValueError("aggregate_seeds needs at least one run")
    widths = set(runs[0])
    for i, r in enumerate(runs):
        if set(r) != widths:
            raise ValueError(f"run {i} scores widths {sorted(r)}, run 0 scores {sorted(widths)}")
    return {d: seed_stats([r[d] for r in runs]) for d in sorted(widths, reverse=True)}


def resample_indices(n: int, n_resamples: int, seed: int) -> npt.NDArray[np.int64]:
    """The bootstrap resamples of :func:`paired_bootstrap`: ``(n_resamples, n)`` pair indices
    drawn with replacement, ``np.random.default_rng(seed).integers(0, n, (n_resamples, n))``."""
    return np.random.default_rng(seed).integers(0, n, size=(n_resamples, n))


def _row_spearman(gold: npt.NDArray[np.float64], pred: npt.NDArray[np.float64]) -> npt.NDArray[np.float64]:
    """Spearman of each row of ``pred`` with the same row of ``gold`` (average ranks for ties);
    0 for a row whose predictions or gold scores are constant."""
    stats = require("scipy.stats", feature="the paired bootstrap")
    rg = stats.rankdata(gold, axis=1)
    rp = stats.rankdata(pred, axis=1)
    rg -= rg.mean(axis=1, keepdims=True)
    rp -= rp.mean(axis=1, keepdims=True)
    den = np.sqrt((rg * rg).sum(axis=1) * (rp * rp).sum(axis=1))
    num = (rg * rp).sum(axis=1)
    out = np.zeros(len(num))
    ok = den > 0
    out[ok] = num[ok] / den[ok]
    return out


def _as_runs(pred: npt.ArrayLike, n: int, what: str) -> npt.NDArray[np.float64]:
    p = np.asarray(pred, dtype=np.float64)
    if p.ndim == 1:
        p = p[None, :]
    if p.ndim != 2 or p.shape[1] != n or p.shape[0] == 0:
        raise ValueError(f"{what} must be ({n},) or (runs, {n}), got shape {np.shape(pred)}")
    if not np.isfinite(p).all():
        raise ValueError(f"{what} contains NaN or Inf")
    return p


def paired_bootstrap(
    gold: npt.ArrayLike,
    a: npt.ArrayLike,
    b: npt.ArrayLike,
    *,
    n_resamples: int = 2000,
    seed: int = 0,
    confidence: float = 0.95,
    chunk: int = 250,
) -> Interval:
    """Paired bootstrap over STS pairs of ``mean spearman(a) - mean spearman(b)``, x100.

    ``a`` and ``b`` are the predicted similarities of the same ``n`` pairs: one row per model
    (e.g. per seed) or a single ``(n,)`` vector. Each resample draws ``n`` pair indices with
    replacement (:func:`resample_indices`) and recomputes every Spearman on that same resample,
    so the pairing of ``a``, ``b`` and the gold scores is kept. The interval is the percentile
    interval of the resampled differences.

    Args:
        gold: ``(n,)`` gold scores.
        a: ``(n,)`` or ``(runs_a, n)`` predictions of the first model (or seeds of it).
        b: ``(n,)`` or ``(runs_b, n)`` predictions of the second.
        n_resamples: Resamples drawn.
        seed: Seed of the resampling.
        confidence: Coverage of the interval, in (0, 1).
        chunk: Resamples ranked at a time (memory: ``chunk * n`` floats per array).

    Returns:
        An :class:`Interval`.

    Raises:
        ValueError: Fewer than 3 pairs, shapes that do not match, non-finite values, constant
            gold scores, or a bad ``confidence`` / ``n_resamples``.
    """
    g = np.asarray(gold, dtype=np.float64).reshape(-1)
    n = g.size
    if n < 3:
        raise ValueError(f"paired_bootstrap needs at least 3 pairs, got {n}")
    if not np.isfinite(g).all():
        raise ValueError("gold contains NaN or Inf")
    if np.ptp(g) == 0:
        raise ValueError("gold scores are all equal; Spearman is undefined")
    pa, pb = _as_runs(a, n, "a"), _as_runs(b, n, "b")
    check_int("n_resamples", n_resamples)
    require_positive("n_resamples", n_resamples)
    require_positive("chunk", chunk)
    if not 0 < confidence < 1:
        raise ValueError(f"confidence must be in (0, 1), got {confidence!r}")
    check_int("seed", seed)

    def diff_of(idx: npt.NDArray[np.int64]) -> npt.NDArray[np.float64]:
        gs = g[idx]
        mean_a = np.stack([_row_spearman(gs, p[idx]) for p in pa]).mean(axis=0)
        mean_b = np.stack([_row_spearman(gs, p[idx]) for p in pb]).mean(axis=0)
        diff: npt.NDArray[np.float64] = 100.0 * (mean_a - mean_b)
        return diff

    point = float(diff_of(np.arange(n)[None, :])[0])
    idx = resample_indices(n, int(n_resamples), int(seed))
    diffs = np.concatenate([diff_of(idx[i : i + chunk]) for i in range(0, len(idx), int(chunk))])
    tail = 100.0 * (1 - confidence) / 2
    low, high = np.percentile(diffs, [tail, 100.0 - tail])
    return Interval(point, float(low), float(high), float(confidence), int(n_resamples), int(seed))
