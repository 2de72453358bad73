"""Sharded corpora searched locally: bitwise the results of one file holding the same rows.

The single-file search is itself tested against the float64 oracle (test_topk, test_funnel);
here the claim is exact equality with it, scores and row ids, for topk and every funnel stage,
over shard boundaries, ties that straddle shards, both layouts and several shard sizes.
`score_rows` (the re-scoring gather a sharded funnel calls per shard) is tested against the
oracle directly.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import numpy.typing as npt
import pytest

import matryo_fast as mf
from matryo_fast import _core
from matryo_fast._reference import prefix_cosine
from matryo_fast.manifest import MANIFEST, Manifest, checksum
from matryo_fast.sharded import ShardedCorpus

F32 = npt.NDArray[np.float32]


def corpus_with_ties(n: int, d: int, seed: int = 0) -> F32:
    """Random rows, with duplicates placed across shard boundaries and a few zero rows."""
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((n, d)).astype(np.float32)
    x[n - 3] = x[1]  # same row in the first and the last shard: a tie that must keep row order
    x[n // 2] = x[1]
    x[5] = 0.0
    x[n - 1] = 0.0
    return x


def write(directory: Path, x: F32, rows_per_shard: int, layout: str = "npy", batch: int = 7) -> Path:
    with mf.ShardedCorpusWriter(directory, dim=x.shape[1], rows_per_shard=rows_per_shard, layout=layout) as w:
        for start in range(0, len(x), batch):
            w.append(x[start : start + batch])
    return directory


def assert_same(got: mf.TopK, want: mf.TopK) -> None:
    assert got.indices.dtype == np.int64 and got.scores.dtype == np.float32
    np.testing.assert_array_equal(got.indices, want.indices)
    assert got.scores.tobytes() == want.scores.tobytes()  # bitwise


@pytest.mark.parametrize("layout", ["npy", "prefix-blocked"])
@pytest.mark.parametrize("rows_per_shard", [1, 17, 64, 1000])
def test_topk_and_funnel_equal_one_file(tmp_path: Path, layout: str, rows_per_shard: int) -> None:
    x = corpus_with_ties(203, 48)
    one = tmp_path / "one.npy"
    mf.save_corpus(one, x)
    single = mf.open_corpus(one)
    sharded = mf.open_corpus(write(tmp_path / "sh", x, rows_per_shard, layout))
    assert isinstance(sharded, ShardedCorpus)
    assert sharded.shape == (203, 48) and len(sharded.shards) == -(-203 // rows_per_shard)
    q = np.concatenate([x[[1, 5, 40]], np.random.default_rng(1).standard_normal((4, 48))]).astype(np.float32)
    for dim, k in [(16, 5), (48, 1), (32, 300), (7, 30)]:
        assert_same(mf.topk(q, sharded, dim=dim, k=k), mf.topk(q, single, dim=dim, k=k))
    assert_same(mf.topk(q[0], sharded, k=3), mf.topk(q[0], single, k=3))
    for dims, cands, k in [((16, 48), (40,), 5), ((8, 16, 48), (100, 20), 10), ((16, 32), (500,), 300)]:
        assert_same(
            mf.funnel(q, sharded, k=k, dims=dims, candidates=cands),
            mf.funnel(q, single, k=k, dims=dims, candidates=cands),
        )
    assert_same(
        mf.funnel(q[2], sharded, k=3, dims=(16, 48), candidates=(9,)),
        mf.funnel(q[2], single, k=3, dims=(16, 48), candidates=(9,)),
    )
    sharded.close()


def test_path_and_tune_funnel_accept_a_directory(tmp_path: Path) -> None:
    x = corpus_with_ties(300, 32, seed=3)
    d = write(tmp_path / "sh", x, 100)
    assert_same(mf.topk(x[:3], d, k=4), mf.topk(x[:3], x, k=4))
    assert_same(mf.topk(x[:3], str(d), dim=8, k=4), mf.topk(x[:3], x, dim=8, k=4))
    plan = mf.tune_funnel(d, x[:20], k=5, widths=[8, 16], three_stage=False)
    assert plan.recall >= 0.99


def test_score_rows_against_the_oracle(tmp_path: Path) -> None:
    x = corpus_with_ties(50, 24, seed=2)
    q = np.random.default_rng(5).standard_normal((3, 24)).astype(np.float32)
    rows = np.array([0, 7, 49, 3, 5, 5, 1], np.int64)
    offsets = [0, 3, 3, 7]  # query 1 scores nothing
    got = _core.score_rows(q, x, 16, rows, offsets)
    cos = prefix_cosine(q, x, 16)  # (3, 50), float64
    want = np.concatenate([cos[j, rows[a:b]] for j, (a, b) in enumerate([(0, 3), (3, 3), (3, 7)])])
    np.testing.assert_allclose(got, want, atol=1e-5)
    assert got[4] == 0.0  # a zero row scores exactly 0
    # the funnel's last stage gives each row exactly this score
    f = mf.funnel(q, x, k=50, dims=(8, 16), candidates=(50,))
    for j in range(3):
        again = _core.score_rows(q[j : j + 1], x, 16, f.indices[j].copy(), [0, 50])
        assert again.tobytes() == f.scores[j].tobytes()
    with pytest.raises(ValueError, match="candidate row 50 is out of range"):
        _core.score_rows(q, x, 16, np.array([50], np.int64), [0, 1, 1, 1])
    with pytest.raises(ValueError, match="offsets must be 4 non-decreasing"):
        _core.score_rows(q, x, 16, rows, [0, 5, 3, 7])
    with pytest.raises(ValueError, match="dim=25 is out of range"):
        _core.score_rows(q, x, 25, rows, offsets)


def test_manifest_is_written_last_and_names_whole_shards(tmp_path: Path) -> None:
    x = corpus_with_ties(30, 8)
    d = tmp_path / "sh"
    w = mf.ShardedCorpusWriter(d, dim=8, rows_per_shard=10)
    w.append(x[:25])
    # the third shard is being written aside; no manifest yet
    assert sorted(p.name for p in d.iterdir() if not p.name.startswith(".")) == [
        "part-00000.npy",
        "part-00001.npy",
    ]
    with pytest.raises(FileNotFoundError, match="no manifest.json"):
        mf.open_corpus(d)
    w.append(x[25:])
    m = w.close()
    body = json.loads((d / MANIFEST).read_text())
    assert body["format"] == "matryo-fast-sharded" and body["version"] == 1 and body["rows"] == 30
    assert [s["rows"] for s in body["shards"]] == [10, 10, 10] and body["checksum"] == "xxh3_64"
    assert m == Manifest.read(d)
    assert all(checksum(d / s.file) == s.xxh3_64 for s in m.shards)
    with pytest.raises(FileExistsError, match="already holds a sharded corpus"):
        mf.ShardedCorpusWriter(d, dim=8, rows_per_shard=10)


def test_an_interrupted_writer_leaves_no_manifest(tmp_path: Path) -> None:
    x = corpus_with_ties(30, 8)
    d = tmp_path / "sh"
    with pytest.raises(ValueError, match="row 23 contains NaN"), mf.ShardedCorpusWriter(d, 8, 10) as w:
        w.append(x[:20])
        bad = x[20:].copy()
        bad[3, 2] = np.nan
        w.append(bad)  # refused whole: nothing of it is written
    assert not (d / MANIFEST).exists()
    assert not any(p.name.endswith(".partial") for p in d.iterdir())


def test_empty_corpus_is_one_empty_shard(tmp_path: Path) -> None:
    with mf.ShardedCorpusWriter(tmp_path / "sh", dim=4, rows_per_shard=10):
        pass
    c = mf.open_corpus(tmp_path / "sh")
    assert c.shape == (0, 4)
    assert mf.topk(np.ones(4), c, k=3).indices.shape == (0,)


def test_bad_shards_are_refused_at_open(tmp_path: Path) -> None:
    x = corpus_with_ties(30, 8)
    d = write(tmp_path / "sh", x, 10)
    ShardedCorpus(d, verify=True).close()
    # a shard of another width
    mf.save_corpus(d / "part-00001.npy", np.zeros((10, 6), np.float32), overwrite=True)
    with pytest.raises(mf.ShardUnavailableError, match=r"part-00001.npy .*shape \(10, 6\).*\(10, 8\)"):
        mf.open_corpus(d)
    # another layout
    mf.save_prefix_blocked(d / "part-00001.npy", x[10:20], block=16, overwrite=True)
    with pytest.raises(mf.ShardUnavailableError, match="prefix-blocked file .* manifest says row-major"):
        mf.open_corpus(d)
    # same shape, changed values: only the checksum tells
    mf.save_corpus(d / "part-00001.npy", x[10:20] + 1, overwrite=True)
    mf.open_corpus(d)
    with pytest.raises(mf.ShardUnavailableError, match="part-00001.npy .*checksum mismatch"):
        ShardedCorpus(d, verify=True)
    (d / "part-00001.npy").unlink()
    with pytest.raises(mf.ShardUnavailableError, match="part-00001.npy cannot be served"):
        mf.open_corpus(d)


def test_bad_arguments_are_the_cores_errors(tmp_path: Path) -> None:
    x = corpus_with_ties(30, 8)
    c = mf.open_corpus(write(tmp_path / "sh", x, 10))
    with pytest.raises(ValueError, match="dim=9 is out of range"):
        mf.topk(x[0], c, dim=9)
    with pytest.raises(ValueError, match="k=0 is invalid"):
        mf.topk(x[0], c, k=0)
    with pytest.raises(ValueError, match="dims must strictly increase"):
        mf.funnel(x[0], c, k=2, dims=(8, 4), candidates=(5,))
    with pytest.raises(ValueError, match="query contains NaN"):
        mf.topk(np.full(8, np.nan), c)


def test_nan_row_error_names_the_shard(tmp_path: Path) -> None:
    x = corpus_with_ties(30, 8)
    d = write(tmp_path / "sh", x, 10)
    raw = np.load(d / "part-00002.npy", mmap_mode="r+")
    raw[4, 0] = np.nan
    raw.flush()
    del raw
    with pytest.raises(ValueError, match=r"shard part-00002.npy \(first row 20\): corpus row 4 contains NaN"):
        mf.topk(x[0], mf.open_corpus(d))
