"""Sharded corpora served by Ray actors on a local three-node cluster, and encoding on Ray Data.

One session-scoped cluster (a head and two worker nodes, each with a custom resource, all bound
to 127.0.0.1) serves every test. Results are compared bitwise with single-file search (itself
tested against the float64 oracle in test_topk and test_funnel). Faults are real: actor
processes are stopped and killed with signals, shard files removed or changed.
"""

from __future__ import annotations

import importlib.util
import os
import shutil
import signal
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest

import matryo_fast as mf
from matryo_fast import distributed
from matryo_fast.sharded import Manifest

if importlib.util.find_spec("ray") is None:
    pytest.skip('Ray is not installed (pip install "matryo-fast[ray]")', allow_module_level=True)


NODES = ("head", "w1", "w2")


@pytest.fixture(scope="session")
def ray() -> Iterator[Any]:
    """A head and two worker nodes on 127.0.0.1, each advertising its name as a resource."""
    # Every node binds the loopback address. Ray reads this when it is imported, so it is set
    # before the first import (the nodes and workers inherit it).
    os.environ["RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER"] = "0"
    import ray
    from ray._private import ray_constants
    from ray.cluster_utils import Cluster

    assert not ray_constants.ENABLE_RAY_CLUSTER, "Ray was imported before the fixture set its address"
    small = {"num_cpus": 1, "object_store_memory": 80 * 2**20}
    c = Cluster(
        initialize_head=True, head_node_args={**small, "resources": {"head": 1}, "include_dashboard": False}
    )
    for name in NODES[1:]:
        c.add_node(**small, resources={name: 1})
    ray.init(address=c.address, logging_level="warning", log_to_driver=False)
    c.wait_for_nodes()
    assert {n["NodeManagerAddress"] for n in ray.nodes()} == {"127.0.0.1"}
    yield ray
    ray.shutdown()
    c.shutdown()


def make_corpus(directory: Path, n: int = 230, d: int = 32, rows_per_shard: int = 60) -> np.ndarray:
    rng = np.random.default_rng(7)
    x = rng.standard_normal((n, d)).astype(np.float32)
    x[n - 2] = x[3]  # a tie across the first and the last shard
    with mf.ShardedCorpusWriter(directory, dim=d, rows_per_shard=rows_per_shard) as w:
        w.append(x)
    return x


def queries(x: np.ndarray) -> np.ndarray:
    rng = np.random.default_rng(8)
    return np.concatenate([x[[3, 100]], rng.standard_normal((5, x.shape[1]))]).astype(np.float32)


def assert_same(got: mf.TopK, want: mf.TopK) -> None:
    np.testing.assert_array_equal(got.indices, want.indices)
    assert got.scores.tobytes() == want.scores.tobytes()


def check_all(corpus: Any, x: np.ndarray) -> None:
    q = queries(x)
    for dim, k in [(8, 5), (32, 250), (16, 1)]:
        assert_same(mf.topk(q, corpus, dim=dim, k=k), mf.topk(q, x, dim=dim, k=k))
    assert_same(mf.topk(q[0], corpus, k=4), mf.topk(q[0], x, k=4))
    for dims, cands, k in [((8, 32), (50,), 5), ((8, 16, 32), (120, 30), 10)]:
        assert_same(
            mf.funnel(q, corpus, k=k, dims=dims, candidates=cands),
            mf.funnel(q, x, k=k, dims=dims, candidates=cands),
        )


def spy(corpus: distributed.RayCorpus) -> list[str]:
    """The actor methods each search calls (one entry per round of calls), from now on."""
    methods: list[str] = []
    gather = corpus._gather

    def spied(method: str, *args: Any, **kwargs: Any) -> Any:
        methods.append(method)
        return gather(method, *args, **kwargs)

    corpus._gather = spied  # type: ignore[method-assign]
    return methods


def test_equal_to_one_file_spread_and_pinned(ray: Any, tmp_path: Path) -> None:
    x = make_corpus(tmp_path / "c")
    with distributed.connect(tmp_path / "c", replicas=2, pin={"part-00000.npy": "w2"}) as corpus:
        assert corpus.shape == x.shape and len(corpus.shards) == 4
        methods = spy(corpus)
        check_all(corpus, x)
        big = np.random.default_rng(9).standard_normal((1000, x.shape[1])).astype(np.float32)
        plan = {"k": 4, "dims": (8, 32), "candidates": (40,)}
        assert_same(mf.funnel(big, corpus, **plan), mf.funnel(big, x, **plan))  # in row blocks
        assert set(methods) == {"run"}  # no actor serves every shard: stage by stage
        nodes = {s["shard"]: set() for s in corpus.servers}
        for s in corpus.servers:
            nodes[s["shard"]].add(s["node"])
        assert all(len(v) == 2 for k, v in nodes.items() if k != "part-00000.npy")  # replicas apart
        w2 = [n["NodeManagerAddress"] + "/" + n["NodeID"][:8] for n in ray.nodes() if "w2" in n["Resources"]]
        assert nodes["part-00000.npy"] == set(w2)
        with pytest.raises(ValueError, match="dim=33 is out of range"):
            mf.topk(x[0], corpus, dim=33)
    assert corpus.replicas == {}
    with pytest.raises(ValueError, match="not shards"):
        distributed.connect(tmp_path / "c", pin={"nope.npy": "w1"})


def test_one_actor_serving_every_shard_runs_the_whole_search(ray: Any, tmp_path: Path) -> None:
    x = make_corpus(tmp_path / "c")
    pin = dict.fromkeys((f"part-{i:05d}.npy" for i in range(4)), "w1")
    with distributed.connect(tmp_path / "c", replicas=3, pin=pin) as corpus:
        assert len({id(h) for hs in corpus.replicas.values() for h in hs}) == 3  # each serves all
        methods = spy(corpus)
        check_all(corpus, x)
        assert set(methods) == {"search"}  # one call per topk and per funnel
        plan = {"k": 4, "dims": (8, 32), "candidates": (40,)}
        rng = np.random.default_rng(9)
        for rows in (1000, 3300):  # inline in row blocks; through the object store
            big = rng.standard_normal((rows, x.shape[1])).astype(np.float32)
            assert (big.nbytes > distributed.CHUNK_BYTES) and (rows == 3300) == (
                big.nbytes > distributed.INLINE_BYTES
            )
            assert_same(mf.topk(big, corpus, k=7), mf.topk(big, x, k=7))
            assert_same(mf.funnel(big, corpus, **plan), mf.funnel(big, x, **plan))
        with pytest.raises(ValueError, match="dim=33 is out of range"):
            mf.topk(x[0], corpus, dim=33)
        # The actor asked is lost and its shards go to two different replicas: no actor
        # serves them all now, so the funnel runs stage by stage, and is still exact.
        a, b, c = corpus.replicas[0]
        corpus.replicas = {0: [a, b], 1: [a, c], 2: [a, b], 3: [a, c]}
        ray.kill(a, no_restart=True)
        del methods[:]
        q = queries(x)
        assert_same(mf.funnel(q, corpus, **plan), mf.funnel(q, x, **plan))
        assert methods == ["search", "run", "run"]
        assert corpus.replicas == {0: [b], 1: [c], 2: [b], 3: [c]}


def test_killed_actor_is_restarted_and_the_query_retried(ray: Any, tmp_path: Path) -> None:
    x = make_corpus(tmp_path / "c")
    with distributed.connect(tmp_path / "c") as corpus:
        pid = next(s["pid"] for s in corpus.servers if s["shard"] == "part-00001.npy")
        q = queries(x)
        os.kill(pid, signal.SIGSTOP)  # frozen: the query below cannot finish on this process
        result: dict[str, Any] = {}
        t = threading.Thread(
            target=lambda: result.update(r=mf.funnel(q, corpus, k=5, dims=(8, 32), candidates=(60,)))
        )
        t.start()
        time.sleep(1.0)
        assert t.is_alive() and "r" not in result
        os.kill(pid, signal.SIGKILL)  # dies mid-query
        t.join(timeout=120)
        assert not t.is_alive()
        assert_same(result["r"], mf.funnel(q, x, k=5, dims=(8, 32), candidates=(60,)))
        handle = corpus.replicas[1][0]
        new_pid = ray.get(handle.status.remote())[1]
        assert new_pid != pid  # restarted by Ray


def test_every_replica_lost(ray: Any, tmp_path: Path) -> None:
    x = make_corpus(tmp_path / "c")
    q = queries(x)
    with distributed.connect(tmp_path / "c") as corpus:
        ray.kill(corpus.replicas[2][0], no_restart=True)
        with pytest.raises(
            mf.ShardUnavailableError, match=r"shard part-00002.npy on node 127.0.0.1/\w+ cannot be served"
        ):
            mf.topk(q, corpus, k=5)
    with distributed.connect(tmp_path / "c", replicas=2, allow_partial=True) as corpus:
        first, second = corpus.replicas[2]
        ray.kill(first, no_restart=True)
        for _ in range(2):  # whichever replica a call picks, the live one answers
            assert_same(mf.topk(q, corpus, k=5), mf.topk(q, x, k=5))
        ray.kill(second, no_restart=True)
        with pytest.warns(mf.PartialResultWarning, match="left out 1 of 4 shards: part-00002.npy"):
            got = mf.funnel(q, corpus, k=5, dims=(8, 32), candidates=(60,))
    keep = np.r_[0:120, 180:230]  # shard 2 holds rows 120..179
    want = mf.funnel(q, np.ascontiguousarray(x[keep]), k=5, dims=(8, 32), candidates=(60,))
    assert_same(got, mf.TopK(want.scores, keep[want.indices]))


def test_missing_or_changed_shard(ray: Any, tmp_path: Path) -> None:
    x = make_corpus(tmp_path / "c")
    q = queries(x)
    shutil.copytree(tmp_path / "c", tmp_path / "gone")
    (tmp_path / "gone" / "part-00001.npy").unlink()
    with pytest.raises(
        mf.ShardUnavailableError, match=r"shard part-00001.npy on node 127.0.0.1/\w+ .*no such file"
    ):
        distributed.connect(tmp_path / "gone")
    shutil.copytree(tmp_path / "c", tmp_path / "changed")
    changed = np.load(tmp_path / "changed" / "part-00003.npy", mmap_mode="r+")
    changed[0, 0] += 1.0
    changed.flush()
    del changed
    with pytest.raises(mf.ShardUnavailableError, match=r"shard part-00003.npy on node .*checksum mismatch"):
        distributed.connect(tmp_path / "changed")
    with distributed.connect(tmp_path / "gone", allow_partial=True) as corpus:
        assert list(corpus.missing) == [1]
        with pytest.warns(mf.PartialResultWarning, match="part-00001.npy .*no such file"):
            got = mf.topk(q, corpus, k=7)
    keep = np.r_[0:60, 120:230]
    want = mf.topk(q, np.ascontiguousarray(x[keep]), k=7)
    assert_same(got, mf.TopK(want.scores, keep[want.indices]))


# Ray Data reads its own deprecated settings (use_push_based_shuffle, use_polars) when it
# copies its context to plan a dataset; the warnings come from that module.
@pytest.mark.filterwarnings(r"ignore::DeprecationWarning:ray\.data\.context")
def test_encode_on_ray_data_resumes(ray: Any, tmp_path: Path) -> None:
    pytest.importorskip("sentence_transformers")
    from matryo_fast.models import encode, load_model

    texts = [f"sentence number {i} about {w}" for i, w in enumerate(["cats", "dogs", "rain"] * 9)]
    out = tmp_path / "enc"
    first = distributed.encode(texts, out, rows_per_shard=10, batch_size=8)
    assert (
        first["encoded"] == ["part-00000.npy", "part-00001.npy", "part-00002.npy"] and first["skipped"] == []
    )
    corpus = mf.open_corpus(out)
    assert corpus.shape == (27, 384)
    want = encode(load_model(), texts)
    got = np.concatenate([np.load(out / s.file) for s in Manifest.read(out).shards])
    np.testing.assert_allclose(got, want, atol=1e-5)
    # An interrupted run: no manifest, one shard changed on disk. Only that one is redone.
    (out / "manifest.json").unlink()
    kept = (out / "part-00000.npy").stat().st_mtime_ns
    bad = np.load(out / "part-00002.npy", mmap_mode="r+")
    bad[0, 0] += 1.0
    bad.flush()
    del bad
    again = distributed.encode(texts, out, rows_per_shard=10, batch_size=8)
    assert again["encoded"] == ["part-00002.npy"]
    assert again["skipped"] == ["part-00000.npy", "part-00001.npy"]
    assert (out / "part-00000.npy").stat().st_mtime_ns == kept
    assert again["manifest"] == first["manifest"]
    with pytest.raises(FileExistsError, match="already holds"):
        distributed.encode(texts, out, rows_per_shard=10)
