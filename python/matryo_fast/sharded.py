"""Sharded corpora: a directory of shard files and a manifest, searched as one corpus.

A sharded corpus is a directory holding ``manifest.json`` and shard files in a layout that
:func:`matryo_fast.open_corpus` maps (``.npy`` or prefix-blocked). Shard ``i`` holds global
rows ``[start_i, start_i + rows_i)``, in order. :class:`ShardedCorpusWriter` writes one;
:func:`matryo_fast.open_corpus` on the directory returns a :class:`ShardedCorpus` that
:func:`matryo_fast.topk` and :func:`matryo_fast.funnel` search with a thread pool over the
shards and an exact merge: the results (scores and global row ids) are bitwise those of one
file holding the same rows. A funnel merges each stage's shortlist across the shards before
the next stage re-scores it (``_core.score_rows``, the funnel's own re-scoring gather). The
manifest (its format, checksums, reading and writing) is :mod:`matryo_fast.manifest`.

>>> import numpy as np, tempfile, matryo_fast as mf
>>> x = np.random.default_rng(0).standard_normal((10, 8)).astype(np.float32)
>>> d = tempfile.mkdtemp()
>>> with mf.ShardedCorpusWriter(d, dim=8, rows_per_shard=4) as w:
...     w.append(x)
>>> c = mf.open_corpus(d)
>>> c.shape, len(c.shards)
((10, 8), 3)
>>> bool((mf.topk(x[:2], c, k=3).indices == mf.topk(x[:2], x, k=3).indices).all())
True
"""

from __future__ import annotations

import os
import warnings
from abc import abstractmethod
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from types import TracebackType
from typing import Any, TypeVar

import numpy as np
import numpy.typing as npt

from matryo_fast import _core
from matryo_fast._validate import require_positive
from matryo_fast.blocked import save_prefix_blocked
from matryo_fast.corpus import Corpus, ShardedSearch
from matryo_fast.files import CorpusWriter, as_float32_rows
from matryo_fast.manifest import MANIFEST, Manifest, Shard, checksum, write_shard_entry

__all__ = [
    "MANIFEST",
    "Manifest",
    "PartialResultWarning",
    "Shard",
    "ShardRunner",
    "ShardUnavailableError",
    "ShardedCorpus",
    "ShardedCorpusWriter",
    "checksum",
    "write_shard_entry",
]

LAYOUTS = {"npy": ("row-major", ".npy"), "prefix-blocked": ("prefix-blocked", ".mfb")}

T = TypeVar("T")
Scored = tuple[npt.NDArray[np.float32], npt.NDArray[np.int64]]


class PartialResultWarning(UserWarning):
    """A search of a corpus connected with ``allow_partial=True`` left out shards that could
    not be served; the message names them. The result is exact over the other shards."""


class ShardUnavailableError(RuntimeError):
    """A shard cannot be served (file missing or changed, checksum mismatch, every replica
    lost). ``shard`` is its file name, ``node`` where it failed (``None`` when local)."""

    def __init__(self, shard: str, node: str | None, reason: str) -> None:
        where = f" on node {node}" if node else ""
        super().__init__(f"shard {shard}{where} cannot be served: {reason}")
        self.shard = shard
        self.node = node
        self.reason = reason


def open_shard(
    directory: str | os.PathLike[str], manifest: Manifest, index: int, *, verify: bool = False
) -> Corpus:
    """Maps shard ``index`` and checks it against the manifest (shape, layout, size; with
    ``verify`` also the checksum, which reads the whole file).

    Raises:
        ShardUnavailableError: The file is missing or disagrees with the manifest.
    """
    shard = manifest.shards[index]
    path = Path(directory) / shard.file

    def refuse(reason: str) -> ShardUnavailableError:
        return ShardUnavailableError(shard.file, None, reason)

    try:
        corpus = Corpus(path)
    except (OSError, ValueError, TypeError) as exc:
        raise refuse(str(exc)) from exc
    if corpus.shape != (shard.rows, manifest.dim) or corpus.layout != manifest.layout:
        raise refuse(
            f"{corpus.layout} file of shape {corpus.shape}; the manifest says {manifest.layout} "
            f"of shape ({shard.rows}, {manifest.dim})"
        )
    size = path.stat().st_size
    if size != shard.bytes:
        raise refuse(f"{size} bytes; the manifest says {shard.bytes}")
    if verify and (got := checksum(path)) != shard.xxh3_64:
        raise refuse(f"checksum mismatch (xxh3_64 {got}; the manifest says {shard.xxh3_64})")
    return corpus


class ShardedCorpusWriter:
    """Streams rows of width ``dim`` into a new sharded corpus, ``rows_per_shard`` per shard.

    Each shard is written aside and renamed into place when full; :meth:`close` writes the
    manifest last. A writer that fails or is left through an exception writes no manifest.

    Args:
        directory: Created if missing; must not hold a manifest already.
        dim: Row width.
        rows_per_shard: Rows per shard (the last one may hold fewer).
        layout: ``"npy"`` or ``"prefix-blocked"`` (see :func:`matryo_fast.save_prefix_blocked`).
        split_at: Block ends for ``"prefix-blocked"`` (default: 64-column blocks).

    Raises:
        FileExistsError: The directory already holds a sharded corpus.
        ValueError: ``dim`` or ``rows_per_shard`` below 1, or an unknown layout.
    """

    def __init__(
        self,
        directory: str | os.PathLike[str],
        dim: int,
        rows_per_shard: int,
        *,
        layout: str = "npy",
        split_at: Sequence[int] | None = None,
    ) -> None:
        require_positive("dim", dim)
        require_positive("rows_per_shard", rows_per_shard)
        if layout not in LAYOUTS:
            raise ValueError(f"layout must be one of {sorted(LAYOUTS)}, got {layout!r}")
        if split_at is not None and layout != "prefix-blocked":
            raise ValueError("split_at applies to layout='prefix-blocked' only")
        self.directory = Path(directory)
        self.directory.mkdir(parents=True, exist_ok=True)
        if (self.directory / MANIFEST).exists():
            raise FileExistsError(f"{self.directory} already holds a sharded corpus; use a new directory")
        self.dim, self.rows_per_shard, self.layout = int(dim), int(rows_per_shard), layout
        self.split_at = split_at
        self.rows = 0
        self.shards: list[Shard] = []
        self._writer: CorpusWriter | None = None
        self._closed = False

    def _shard_path(self, index: int) -> Path:
        return self.directory / f"part-{index:05d}{LAYOUTS[self.layout][1]}"

    def _start_shard(self) -> None:
        path = self._shard_path(len(self.shards))
        staged = path.with_name(f".{path.stem}.staging.npy") if self.layout != "npy" else path
        self._writer = CorpusWriter(staged, self.dim, overwrite=True)

    def _finish_shard(self) -> None:
        assert self._writer is not None
        final = self._shard_path(len(self.shards))
        rows = self._writer.rows
        staged, self._writer = self._writer.close(), None
        if self.layout == "prefix-blocked":
            try:
                save_prefix_blocked(final, staged, split_at=self.split_at)
            finally:
                staged.unlink()
        self.shards.append(write_shard_entry(final, rows))

    def append(self, batch: Any) -> None:
        """Appends ``(n, dim)`` (or ``(dim,)``) float rows, cast to float32, rolling over to a
        new shard every ``rows_per_shard`` rows.

        Raises:
            ValueError: Wrong shape, NaN/Inf (the message names the row), or a closed writer.
            TypeError: A non-float array.
        """
        if self._closed:
            raise ValueError("the writer is closed")
        a = as_float32_rows(batch, self.dim, first_row=self.rows)
        while len(a):
            if self._writer is None:
                self._start_shard()
                assert self._writer is not None
            take = min(len(a), self.rows_per_shard - self._writer.rows)
            self._writer.append(a[:take])
            self.rows += take
            a = a[take:]
            if self._writer.rows == self.rows_per_shard:
                self._finish_shard()

    def close(self) -> Manifest:
        """Finishes the last shard and writes the manifest. Returns it."""
        if self._writer is not None or not self.shards:
            if self._writer is None:  # no rows at all: one empty shard, as one empty file
                self._start_shard()
            self._finish_shard()
        manifest = Manifest(self.dim, LAYOUTS[self.layout][0], tuple(self.shards))
        if not self._closed:
            manifest.write(self.directory)
            self._closed = True
        return manifest

    def abort(self) -> None:
        """Stops without a manifest (shards already written stay, named by nothing)."""
        if self._writer is not None:
            self._writer.abort()
            self._writer = None
        self._closed = True

    def __enter__(self) -> ShardedCorpusWriter:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        if exc_type is None:
            self.close()
        else:
            self.abort()


def merge(parts: Sequence[Scored], k: int) -> Scored:
    """The top ``k`` by (score desc, row asc) of per-shard results given in shard order, each
    sorted that way with global row ids: a stable sort on the score alone keeps equal scores
    in row order, as the shards' row ranges increase."""
    scores = np.concatenate([p[0] for p in parts], axis=1)
    rows = np.concatenate([p[1] for p in parts], axis=1)
    order = np.argsort(-scores, axis=1, kind="stable")[:, :k]
    return np.take_along_axis(scores, order, 1), np.take_along_axis(rows, order, 1)


class ShardsLost(Exception):
    """Raised by :meth:`ShardSet._each` when shards were lost during a call of a corpus that
    allows partial results; the call is run again without them."""


class ShardSet(ShardedSearch):
    """Exact search over shards, whatever serves them: subclasses run the per-shard calls
    (:meth:`_each`); this class merges them and runs the funnel's stages."""

    def __init__(self, directory: str | os.PathLike[str], manifest: Manifest) -> None:
        self.directory = Path(directory)
        self.manifest = manifest
        self._starts = manifest.starts
        self._stand_in = np.zeros((1, manifest.dim), np.float32)
        self.missing: dict[int, str] = {}  # shard index -> why it is left out (allow_partial)

    @property
    def shape(self) -> tuple[int, int]:
        """``(rows, dims)`` over all shards."""
        return self.manifest.rows, self.manifest.dim

    @property
    def shards(self) -> tuple[Shard, ...]:
        """The manifest's shards, in row order."""
        return self.manifest.shards

    @property
    def dim(self) -> int:
        """The full width ``D`` of each row."""
        return self.manifest.dim

    @property
    def layout(self) -> str:
        """The shards' layout (``"row-major"`` or ``"prefix-blocked"``)."""
        return self.manifest.layout

    def __len__(self) -> int:
        return self.manifest.rows

    @abstractmethod
    def _each(
        self, op: str, q: npt.NDArray[np.float32], args: Mapping[int, tuple[Any, ...]]
    ) -> dict[int, Any]:
        """Runs ``_core.<op>(q, shard, *args[i])`` for each shard ``i`` in ``args``."""

    def _retrying(self, search: Callable[[list[int]], T]) -> T:
        """Runs ``search`` over the live shards, again without any it lost, and warns about
        the shards left out."""
        while True:
            live = [i for i in range(len(self.shards)) if i not in self.missing]
            try:
                out = search(live)
            except ShardsLost:
                continue
            if self.missing:
                names = ", ".join(f"{self.shards[i].file} ({why})" for i, why in sorted(self.missing.items()))
                warnings.warn(
                    f"result left out {len(self.missing)} of {len(self.shards)} shards: {names}",
                    PartialResultWarning,
                    stacklevel=4,
                )
            return out

    def _topk(self, q: npt.NDArray[np.float32], dim: int, k: int) -> Scored:
        _core.topk(q[:1], self._stand_in, dim, k)  # the core's own argument checks, on one row
        return self._retrying(lambda live: self._topk_over(q, dim, k, live))

    def _topk_over(self, q: npt.NDArray[np.float32], dim: int, k: int, live: list[int]) -> Scored:
        found = self._each("topk", q, {i: (dim, k) for i in live})
        parts = [(s, ix + self._starts[i]) for i, (s, ix) in sorted(found.items())]
        if not parts:
            return np.zeros((len(q), 0), np.float32), np.zeros((len(q), 0), np.int64)
        return merge(parts, k)

    def _funnel(self, q: npt.NDArray[np.float32], dims: list[int], candidates: list[int], k: int) -> Scored:
        _core.funnel(q[:1], self._stand_in, dims, candidates, k)  # the core's plan checks
        return self._retrying(lambda live: self._funnel_over(q, dims, candidates, k, live))

    def _funnel_over(
        self, q: npt.NDArray[np.float32], dims: list[int], candidates: list[int], k: int, live: list[int]
    ) -> Scored:
        n = sum(self.shards[i].rows for i in live)
        keep = [min(c, n) for c in [*candidates, k]]
        scores, rows = self._topk_over(q, dims[0], keep[0], live)
        for dim, kept in zip(dims[1:], keep[1:]):
            # Rows ascending, so each shard's part of a query's list is ascending and the
            # shards' parts follow in order: the stable sort below then breaks ties by row.
            rows = np.sort(rows, axis=1)
            shard_of = np.searchsorted(self._starts, rows, side="right") - 1
            masks = {i: m for i in live if (m := shard_of == i).any()}
            requests = {
                i: (dim, rows[m] - self._starts[i], np.concatenate([[0], np.cumsum(m.sum(axis=1))]).tolist())
                for i, m in masks.items()
            }
            scored = self._each("score_rows", q, requests)
            scores = np.empty(rows.shape, np.float32)
            for i, m in masks.items():
                scores[m] = scored[i]
            order = np.argsort(-scores, axis=1, kind="stable")[:, :kept]
            scores, rows = np.take_along_axis(scores, order, 1), np.take_along_axis(rows, order, 1)
        return scores, rows

    def __repr__(self) -> str:
        rows, dim = self.shape
        return f"{type(self).__name__}({str(self.directory)!r}, {rows=}, {dim=}, shards={len(self.shards)})"


class ShardRunner:
    """Shards mapped in this process, searched with a thread pool (the core releases the GIL):
    the engine of a :class:`ShardedCorpus` and of each Ray actor."""

    def __init__(self, manifest: Manifest, corpora: Mapping[int, Corpus]) -> None:
        self.manifest = manifest
        self.corpora = {i: c._inner for i, c in corpora.items()}
        workers = max(1, min(len(corpora), os.cpu_count() or 1))
        self._pool: ThreadPoolExecutor | None = ThreadPoolExecutor(workers, thread_name_prefix="matryo-shard")

    def run(self, op: str, q: npt.NDArray[np.float32], args: Mapping[int, tuple[Any, ...]]) -> dict[int, Any]:
        """``_core.<op>(q, shard, *args[i])`` for each shard ``i`` in ``args``, concurrently."""
        if self._pool is None:
            raise ValueError("the corpus is closed")
        fn = getattr(_core, op)
        futures = {i: self._pool.submit(fn, q, self.corpora[i], *a) for i, a in args.items()}
        out = {}
        for i, fut in futures.items():
            try:
                out[i] = fut.result()
            except ValueError as exc:  # name the shard: row numbers in the message are its own
                start = self.manifest.starts[i]
                raise ValueError(f"shard {self.manifest.shards[i].file} (first row {start}): {exc}") from exc
        return out

    def close(self) -> None:
        """Stops the thread pool."""
        if self._pool is not None:
            self._pool.shutdown()
            self._pool = None


class ShardedCorpus(ShardSet):
    """A sharded corpus mapped in this process: every shard file mapped once, searched with a
    thread pool and merged exactly.

    Args:
        directory: A directory written by :class:`ShardedCorpusWriter`.
        verify: Also check each shard's checksum now (reads every file once).

    Raises:
        FileNotFoundError: No manifest.
        ShardUnavailableError: A shard file is missing or disagrees with the manifest.
    """

    def __init__(self, directory: str | os.PathLike[str], *, verify: bool = False) -> None:
        super().__init__(directory, Manifest.read(directory))
        opened = {i: open_shard(directory, self.manifest, i, verify=verify) for i in range(len(self.shards))}
        self._runner = ShardRunner(self.manifest, opened)

    def _each(
        self, op: str, q: npt.NDArray[np.float32], args: Mapping[int, tuple[Any, ...]]
    ) -> dict[int, Any]:
        return self._runner.run(op, q, args)

    def close(self) -> None:
        """Stops the thread pool (the maps close when the corpus is collected)."""
        self._runner.close()

    def __enter__(self) -> ShardedCorpus:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()
