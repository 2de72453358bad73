"""The benchmarks' timer (benches/_harness.py): interleaved rounds time what they say."""

from __future__ import annotations

import sys
import time
from collections.abc import Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benches"))

import _harness as h  # noqa: E402


def test_time_rounds_interleaves_counts_and_reports_failures() -> None:
    calls: list[str] = []

    def method(name: str, seconds: float) -> Callable[[], str]:
        def run() -> str:
            calls.append(name)
            time.sleep(seconds)
            return name

        return run

    def broken() -> None:
        calls.append("b")
        raise ValueError("boom")

    got = h.time_rounds(
        {"f": method("f", 0.0), "s": method("s", 0.25), "b": broken},
        3,
        slow_s=0.2,
        budget_s=0.6,
        memory=False,
        pause_s=0.0,
    )
    fast, slow, bad = got["f"], got["s"], got["b"]
    assert isinstance(fast, h.Timing) and isinstance(slow, h.Timing)
    # A fast call gets MORE_RUNS x repeats runs, a slow one budget / warm-up (here 2, fewer than
    # the 3 asked for): spread over the 3 rounds, the remainder first.
    assert (fast.runs, fast.reduced, len(fast.times_s)) == (h.MORE_RUNS * 3, False, 12)
    assert (slow.runs, slow.reduced, len(slow.times_s)) == (2, True, 2)
    assert isinstance(bad, ValueError)
    # Warm-ups in order, then the rounds; the failing method is not called again.
    assert "".join(calls) == "fsb" + "ffffs" + "ffffs" + "ffff"
    assert fast.result == "f" and slow.result == "s"
    assert min(slow.times_s) >= 0.25 and slow.median_s >= 0.25
    assert slow.min_s == min(slow.times_s)


def test_time_call_is_the_one_method_case() -> None:
    n = 0

    def run() -> int:
        nonlocal n
        n += 1
        return n

    t = h.time_call(run, 2, memory=False, pause_s=0.0)
    assert t.result == 1 and t.runs == h.MORE_RUNS * 2 and n == 1 + t.runs


def test_run_methods_reports_setup_and_call_failures_in_order() -> None:
    def cannot() -> Callable[[], None]:
        raise h.NotAvailable("no library")

    def fails() -> None:
        raise RuntimeError("broke\nsecond line")

    got = h.run_methods(
        {"ok": lambda: lambda: 7, "missing": cannot, "bad": lambda: fails},
        2,
        memory=False,
        pause_s=0.0,
    )
    assert list(got) == ["ok", "missing", "bad"]
    ok = got["ok"].timing
    assert ok is not None and ok.result == 7 and got["ok"].why == ""
    assert got["missing"].timing is None and got["missing"].why == "n/a: no library"
    assert got["bad"].timing is None and got["bad"].why == "n/a: RuntimeError: broke"


def test_write_results_replaces_only_its_own_section(tmp_path: Path) -> None:
    out = tmp_path / "RESULTS.md"
    h.write_results(out, "## A, first run\n\nold a", name="a")
    h.write_results(out, "## B, first run\n\nold b", name="b")
    h.write_results(out, "## A, second run\n\nnew a", name="a")
    text = out.read_text()
    assert text.startswith(h.RESULTS_TITLE + "\n")
    assert "old a" not in text and "new a" in text and "old b" in text
    assert text.index("new a") < text.index("old b")  # a section keeps its place
    assert text.count("<!-- bench: a -->") == 1 and text.count("<!-- bench: b -->") == 1
    assert not list(tmp_path.glob(".*partial"))
