"""The interleaved timer: several calls timed in rounds, each round running every call its
share of runs back to back, so that a slow spell of a shared machine slows all of them alike
instead of the one being timed then. ``funnel.tune_funnel``, the demo and the benchmark
harness (``benches/_harness.py``) all time through :func:`interleaved_times`.

>>> ms = median_ms([lambda: sum(range(100)), lambda: sum(range(1000))], repeats=3)
>>> len(ms)
2
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import numpy as np

__all__ = ["interleaved_times", "median_ms"]


def interleaved_times(
    fns: Mapping[str, Callable[[], Any]],
    runs: Mapping[str, int],
    rounds: int,
    *,
    before_turn: Callable[[str], None] | None = None,
    before_run: Callable[[], None] | None = None,
) -> dict[str, list[float] | Exception]:
    """Wall times in seconds of ``runs[name]`` calls of each ``fns[name]``, made in ``rounds``
    rounds: in round ``r`` each method makes ``ceil(n (r + 1) / rounds) - ceil(n r / rounds)``
    of its ``n`` runs back to back (spread evenly, a method with fewer runs than rounds making
    them in the first rounds).

    Args:
        fns: The calls, by name (run in this order within a round).
        runs: Timed runs per name (0 or less: none).
        rounds: Number of rounds (at least 1 is made).
        before_turn: Called with the name before each method's turn in a round (not timed).
        before_run: Called before each timed run (not timed), e.g. ``gc.collect``.

    Returns:
        Per name, the list of times, or the exception its call raised (the method is then left
        out of the later rounds).
    """
    rounds = max(1, rounds)
    got: dict[str, list[float] | Exception] = {name: [] for name in fns}
    for r in range(rounds):
        for name, fn in fns.items():
            times = got[name]
            if isinstance(times, Exception):
                continue
            n = runs.get(name, 0)
            turn = math.ceil(n * (r + 1) / rounds) - math.ceil(n * r / rounds)
            if turn <= 0:
                continue
            if before_turn is not None:
                before_turn(name)
            try:
                for _ in range(turn):
                    if before_run is not None:
                        before_run()
                    t0 = time.perf_counter()
                    fn()
                    times.append(time.perf_counter() - t0)
            except Exception as e:  # noqa: BLE001 - reported to the caller as the result
                got[name] = e
    return got


def median_ms(fns: Sequence[Callable[[], Any]], repeats: int) -> list[float]:
    """Median time in milliseconds of each call: one untimed warm-up each, then ``repeats``
    interleaved rounds of one run each.

    Raises:
        Exception: Whatever a call raises.
    """
    for fn in fns:
        fn()  # warm-up
    named = {str(i): fn for i, fn in enumerate(fns)}
    got = interleaved_times(named, dict.fromkeys(named, repeats), repeats)
    out: list[float] = []
    for times in got.values():
        if isinstance(times, Exception):
            raise times
        out.append(float(np.median(times)) * 1e3)
    return out
