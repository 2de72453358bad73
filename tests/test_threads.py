"""Concurrency: threads agree with sequential calls, the scan releases the GIL, and the
``MATRYO_FAST_BACKEND`` / ``MATRYO_FAST_NUM_THREADS`` environment variables work.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np
import pytest

import matryo_fast as mf
from matryo_fast import _core


def _jobs(seed: int, n_jobs: int, width: int) -> list[tuple[np.ndarray, int, int]]:
    rng = np.random.default_rng(seed)
    dims = [1, 7, 16, 33, 64, width]
    return [
        (
            rng.standard_normal((int(rng.integers(1, 6)), width)).astype(np.float32),
            int(rng.choice(dims)),
            int(rng.integers(1, 40)),
        )
        for _ in range(n_jobs)
    ]


@pytest.mark.timeout(120)
@pytest.mark.parametrize("kind", ["array", "corpus", "path"])
def test_threads_agree_with_sequential(kind: str, tmp_path: Path) -> None:
    rng = np.random.default_rng(1)
    x = rng.standard_normal((5003, 97)).astype(np.float32)
    x[100:110] = x[5]  # ties must resolve the same way under contention
    path = tmp_path / "emb.npy"
    np.save(path, x)
    corpus: Any = {"array": x, "corpus": mf.open_corpus(path), "path": path}[kind]
    jobs = _jobs(2, 48, 97)
    jobs.append((x[5:6].copy(), 97, 12))
    expected = [mf.topk(q, corpus, dim=d, k=k) for q, d, k in jobs]
    barrier = threading.Barrier(8)

    def worker(offset: int) -> list[tuple[int, Any]]:
        barrier.wait()
        order = list(range(len(jobs)))
        order = order[offset:] + order[:offset]  # every thread in a different order
        return [(i, mf.topk(jobs[i][0], corpus, dim=jobs[i][1], k=jobs[i][2])) for i in order]

    with ThreadPoolExecutor(max_workers=8) as pool:
        results = list(pool.map(worker, range(0, 48, 6)))
    for per_thread in results:
        for i, res in per_thread:
            np.testing.assert_array_equal(res.indices, expected[i].indices)
            np.testing.assert_array_equal(res.scores, expected[i].scores)
    assert expected[-1].indices[0, :11].tolist() == [5, *range(100, 110)]


@pytest.mark.timeout(120)
def test_threads_with_different_corpora() -> None:
    """Each thread searches its own corpus, all at the same time."""
    rng = np.random.default_rng(3)
    corpora = [rng.standard_normal((int(n), 65)).astype(np.float32) for n in (1, 17, 999, 4097)]
    q = rng.standard_normal((3, 65)).astype(np.float32)
    expected = [mf.topk(q, c, dim=33, k=25) for c in corpora]

    def worker(i: int) -> bool:
        for _ in range(20):
            res = mf.topk(q, corpora[i % 4], dim=33, k=25)
            if not (np.array_equal(res.indices, expected[i % 4].indices)
                    and np.array_equal(res.scores, expected[i % 4].scores)):
                return False
        return True

    with ThreadPoolExecutor(max_workers=8) as pool:
        assert all(pool.map(worker, range(8)))


@pytest.mark.timeout(120)
def test_scan_releases_the_gil() -> None:
    """Another Python thread runs while ``_core.topk`` scans.

    The core is called directly, because numpy may release the GIL in the Python-side checks.
    With a long switch interval, a thread that holds the GIL through the whole call is never
    forced to hand it over, so the counter cannot move between the two reads; a call that
    releases it lets the spinning thread run. No wall-clock time is asserted: the test only
    needs the spinner to be scheduled once during one of several scans.
    """
    rng = np.random.default_rng(4)
    x = rng.standard_normal((100_000, 64)).astype(np.float32)
    q = rng.standard_normal((32, 64)).astype(np.float32)
    counter = [0]
    stop = threading.Event()

    def spin() -> None:
        while not stop.is_set():
            counter[0] += 1
            time.sleep(0)  # releases the GIL on every turn

    old = sys.getswitchinterval()
    sys.setswitchinterval(5.0)
    spinner = threading.Thread(target=spin, daemon=True)
    spinner.start()
    progressed = []
    try:
        for _ in range(10):
            time.sleep(0.01)  # let the spinner take the GIL, then take it back
            before = counter[0]
            _core.topk(q, x, 64, 10)
            progressed.append(counter[0] - before)
            if progressed[-1] > 0:
                break
    finally:
        stop.set()
        sys.setswitchinterval(old)
        spinner.join(timeout=60)
    assert max(progressed) > 0, f"no other thread ran during any of {len(progressed)} scans"


def _run_child(env_extra: dict[str, str], path: Path, q: np.ndarray) -> dict[str, Any]:
    code = (
        "import json, sys, numpy as np, matryo_fast as mf\n"
        "q = np.array(json.loads(sys.argv[2]), dtype=np.float32)\n"
        "r = mf.topk(q, sys.argv[1], dim=48, k=15)\n"
        "print(json.dumps({'active': mf.backends()['active'],\n"
        "                  'scores': r.scores.view(np.uint32).tolist(),\n"
        "                  'indices': r.indices.tolist()}))\n"
    )
    # the child sees only the variables under test (a profile variable may stay)
    env = {k: v for k, v in os.environ.items()
           if k == "MATRYO_FAST_HYPOTHESIS_PROFILE" or not k.startswith("MATRYO_FAST_")}
    env.update(env_extra)
    out = subprocess.run(
        [sys.executable, "-c", code, str(path), json.dumps(q.tolist())],
        env=env, capture_output=True, text=True, timeout=120, check=False,
    )
    assert out.returncode == 0, out.stderr
    return json.loads(out.stdout.strip().splitlines()[-1])  # type: ignore[no-any-return]


@pytest.mark.timeout(240)
@pytest.mark.parametrize(
    "env",
    [
        {"MATRYO_FAST_BACKEND": "scalar"},
        {"MATRYO_FAST_NUM_THREADS": "1"},
        {"MATRYO_FAST_BACKEND": "scalar", "MATRYO_FAST_NUM_THREADS": "1"},
        {"MATRYO_FAST_NUM_THREADS": "2"},
    ],
    ids=lambda e: ",".join(f"{k[12:]}={v}" for k, v in e.items()),
)
def test_environment_variables(env: dict[str, str], tmp_path: Path) -> None:
    """Bitwise the same answer in a child process configured only by environment variables."""
    rng = np.random.default_rng(5)
    x = rng.standard_normal((30011, 48)).astype(np.float32)
    x[[7, 70, 700]] = x[9]
    path = tmp_path / "emb.npy"
    np.save(path, x)
    q = np.stack([x[9], rng.standard_normal(48).astype(np.float32)])
    child = _run_child(env, path, q)
    want_backend = env.get("MATRYO_FAST_BACKEND")
    if want_backend:
        assert child["active"] == want_backend
    assert child["active"] in mf.backends()["available"]
    if not want_backend and not os.environ.get("MATRYO_FAST_BACKEND"):
        assert child["active"] == mf.backends()["active"]  # the same auto choice
    try:
        mf.set_backend(child["active"])
        expected = mf.topk(q, x, dim=48, k=15)
    finally:
        mf.set_backend(None)
    assert child["indices"] == expected.indices.tolist()
    assert child["scores"] == expected.scores.view(np.uint32).tolist()
    assert child["indices"][0][:4] == [7, 9, 70, 700]


@pytest.mark.timeout(120)
def test_forked_child_does_not_hang() -> None:
    """A child forked after the pool started (e.g. a DataLoader worker) builds its own pool."""
    code = """
import os, sys, numpy as np, matryo_fast as mf
x = np.random.default_rng(0).standard_normal((50000, 32)).astype(np.float32)
want = mf.topk(x[:3], x, dim=32, k=5)          # starts the pool in the parent
pid = os.fork()
if pid == 0:
    got = mf.topk(x[:3], x, dim=32, k=5)       # would hang on the parent's dead threads
    os._exit(0 if (got.indices == want.indices).all() else 3)
_, status = os.waitpid(pid, 0)
sys.exit(os.waitstatus_to_exitcode(status))
"""
    done = subprocess.run([sys.executable, "-c", code], timeout=100, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
