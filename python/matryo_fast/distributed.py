"""Scale-out on Ray: a sharded corpus served by Ray actors, and encoding on Ray Data.

:func:`connect` starts one actor per node (per pinned resource, times ``replicas``) on the Ray
cluster for the shards placed there; it maps each shard file once (checking it against the
manifest and its checksum) and answers batches of queries. :func:`matryo_fast.topk` and
:func:`matryo_fast.funnel` accept the returned corpus, and the results are bitwise those of one
file holding the same rows:

* when one actor serves every shard (one node, or shards pinned together), a search is one call
  to it: the actor runs every stage and merges exactly (global row ids, score descending then
  row ascending) in its process;
* otherwise each shard answers on one of its actors and the driver merges; a funnel merges each
  stage's shortlist before the next stage re-scores it on the shards (one call per stage).

A query batch up to ``INLINE_BYTES`` travels inside the calls, a larger one through the object
store (put once, read by every actor).

Faults: an actor that dies is restarted by Ray and its call retried; a shard that cannot be
served (its file missing or changed on that node, every replica lost) raises
:class:`matryo_fast.ShardUnavailableError` naming the shard and the node, unless the corpus was
connected with ``allow_partial=True``: then the result is exact over the shards that answered
and a :class:`matryo_fast.PartialResultWarning` names the ones left out.

:func:`encode` (from :mod:`matryo_fast.ray_encode`) embeds texts into a sharded corpus on Ray
Data.

Ray is the optional extra ``ray``: ``pip install "matryo-fast[ray]"``.

>>> corpus = connect("emb/")  # doctest: +SKIP
>>> mf.topk(queries, corpus, dim=128, k=10)  # doctest: +SKIP
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Mapping
from types import ModuleType, TracebackType
from typing import Any

import numpy as np
import numpy.typing as npt

from matryo_fast._validate import require_positive
from matryo_fast.ray_encode import encode, require_ray
from matryo_fast.sharded import (
    Manifest,
    Scored,
    ShardRunner,
    ShardSet,
    ShardsLost,
    ShardUnavailableError,
    open_shard,
)

__all__ = ["RayCorpus", "connect", "encode"]

# A query batch up to INLINE_BYTES travels inside each actor call, cut into row blocks of at
# most CHUNK_BYTES: Ray sends call arguments up to 100 KiB each inline and puts larger ones into
# the object store, which costs a few ms more per call. A larger batch is put into the object
# store once and read from there by every actor (and every funnel stage).
INLINE_BYTES = 384 << 10
CHUNK_BYTES = 96 << 10


def _joined(parts: tuple[npt.NDArray[np.float32], ...]) -> npt.NDArray[np.float32]:
    """The query batch from the row blocks it was sent in (see ``CHUNK_BYTES``)."""
    return parts[0] if len(parts) == 1 else np.concatenate(parts)


def _node_names(ray: ModuleType) -> dict[str, str]:
    """Node id -> ``address/node-id-prefix``, as the cluster lists its nodes."""
    return {n["NodeID"]: f"{n['NodeManagerAddress']}/{n['NodeID'][:8]}" for n in ray.nodes()}


class NodeShards(ShardSet):
    """The shards one actor maps, searched in its process as a :class:`ShardSet`: the same
    exact merges (and funnel stages) as the driver's, over the shards it is given."""

    def __init__(self, directory: str, manifest: Manifest, runner: ShardRunner) -> None:
        super().__init__(directory, manifest)
        self._runner = runner

    def _each(
        self, op: str, q: npt.NDArray[np.float32], args: Mapping[int, tuple[Any, ...]]
    ) -> dict[int, Any]:
        return self._runner.run(op, q, args)


class ShardServer:
    """The body of a Ray actor that serves the shards placed on its node: maps each once and
    answers query batches with a thread pool over them.

    A shard that cannot be opened is recorded, not raised, so that the driver can name the
    shard and the node (and leave it out if the caller allows partial results).
    """

    def __init__(self, directory: str, shards: list[int], verify: bool) -> None:
        import ray

        self.node = ray.get_runtime_context().get_node_id()
        self.errors: dict[int, str] = {}
        opened = {}
        try:
            manifest = Manifest.read(directory)
        except (OSError, ValueError) as exc:
            self.errors = {i: str(exc) for i in shards}
        else:
            for i in shards:
                try:
                    opened[i] = open_shard(directory, manifest, i, verify=verify)
                except ShardUnavailableError as exc:
                    self.errors[i] = exc.reason
        self.local = NodeShards(directory, manifest, ShardRunner(manifest, opened)) if opened else None

    def status(self) -> tuple[str, int, dict[int, str]]:
        """``(node id, pid, {shard: why it cannot be served})``."""
        return self.node, os.getpid(), self.errors

    def _serving(self, shards: Iterable[int]) -> NodeShards:
        if self.local is None or any(i in self.errors for i in shards):
            raise RuntimeError(f"cannot serve shards {sorted(shards)}: {self.errors}")
        return self.local

    def run(self, op: str, args: dict[int, tuple[Any, ...]], *q: npt.NDArray[np.float32]) -> dict[int, Any]:
        """``_core.<op>(q, shard, *args[i])`` for each shard ``i`` in ``args`` (``q`` in row
        blocks)."""
        return self._serving(args)._each(op, _joined(q), args)

    def search(
        self, op: str, params: tuple[Any, ...], shards: dict[int, Any], *q: npt.NDArray[np.float32]
    ) -> Scored:
        """A whole ``topk`` (``params``: dim, k) or ``funnel`` (dims, candidates, k) over
        ``shards``, merged exactly here: the answer for a corpus of just these shards."""
        local, live, q_ = self._serving(shards), sorted(shards), _joined(q)
        if op == "topk":
            dim, k = params
            return local._topk_over(q_, dim, k, live)
        dims, candidates, k = params
        return local._funnel_over(q_, dims, candidates, k, live)


class RayCorpus(ShardSet):
    """A sharded corpus served by Ray actors (see :func:`connect`): one actor per node (per
    pinned resource) for the shards placed there. ``servers`` lists where each shard is
    served; :meth:`close` (or leaving a ``with`` block) ends the actors."""

    def __init__(
        self,
        directory: str | os.PathLike[str],
        *,
        replicas: int,
        allow_partial: bool,
        pin: Mapping[str, str] | None,
        verify: bool,
        max_restarts: int,
    ) -> None:
        ray = require_ray()
        super().__init__(os.path.abspath(directory), Manifest.read(directory))
        require_positive("replicas", replicas)
        unknown = set(pin or {}) - {s.file for s in self.shards}
        if unknown:
            raise ValueError(f"pin names files that are not shards of {directory}: {sorted(unknown)}")
        self.allow_partial = allow_partial
        self._ray = ray
        self._q: Any = None
        self._turn = 0
        self.replicas: dict[int, list[Any]] = {}  # shard -> actors that serve it
        self.servers: list[dict[str, Any]] = []
        self._node_of: dict[int, str] = {}  # id(actor) -> node
        from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

        server = ray.remote(num_cpus=0, max_restarts=max_restarts, max_task_retries=max_restarts)(ShardServer)
        nodes = sorted(n["NodeID"] for n in ray.nodes() if n["Alive"])
        groups: dict[tuple[str, str], list[int]] = {}  # placement -> shards (a shard once per placement)
        for i, shard in enumerate(self.shards):
            for r in range(replicas):
                if pin and shard.file in pin:  # nodes that advertise this resource hold the file
                    key = ("resource", f"{pin[shard.file]}#{r}")
                else:  # spread: replica r of shard i on node (i + r) mod the nodes
                    key = ("node", nodes[(i + r) % len(nodes)])
                if i not in groups.setdefault(key, []):
                    groups[key].append(i)
        actors = []
        for (kind, where), shards in groups.items():
            if kind == "resource":
                opts: dict[str, Any] = {"resources": {where.rsplit("#", 1)[0]: 0.001}}
            else:
                opts = {"scheduling_strategy": NodeAffinitySchedulingStrategy(where, soft=False)}
            actors.append((server.options(**opts).remote(str(self.directory), shards, verify), shards))
        self.replicas = {i: [] for i in range(len(self.shards))}
        try:
            statuses = ray.get([h.status.remote() for h, _ in actors])
            names = _node_names(ray)
            why: dict[int, tuple[str, str]] = {}
            for (h, shards), (node_id, pid, errors) in zip(actors, statuses):
                node = names.get(node_id, node_id)
                self._node_of[id(h)] = node
                for i in shards:
                    self.servers.append({"shard": self.shards[i].file, "node": node, "pid": pid})
                    if i in errors:
                        why[i] = (node, errors[i])
                    else:
                        self.replicas[i].append(h)
                if all(i in errors for i in shards):
                    ray.kill(h, no_restart=True)
            for i, handles in self.replicas.items():
                if not handles:
                    self._lose(i, *why[i])
        except BaseException:
            self.close()
            raise

    def _lose(self, i: int, node: str | None, reason: str) -> None:
        """Shard ``i`` has no replica left: raise, or leave it out when partial results are
        allowed."""
        if not self.allow_partial:
            raise ShardUnavailableError(self.shards[i].file, node, reason)
        self.missing[i] = f"{reason} on node {node}"
        self.replicas[i] = []

    def _gather(
        self,
        method: str,
        head: tuple[Any, ...],
        q: npt.NDArray[np.float32],
        args: Mapping[int, Any],
        prefer: Any = None,
    ) -> list[tuple[dict[int, Any], Any]]:
        """Calls ``actor.<method>(*head, part, *q)`` on the actors that serve the shards in
        ``args`` (``part``: the shards sent to that actor, with their ``args``; ``q`` as
        :meth:`_query_args` sends it), all of them
        to ``prefer`` when it serves them. Returns ``(part, answer)`` per call. A lost actor's
        shards go to another replica (a second round of calls); with none left, the shard is
        lost (see :meth:`_lose`)."""
        ray = self._ray
        self._turn += 1
        out: list[tuple[dict[int, Any], Any]] = []
        todo, lost = dict(args), False
        while todo:
            calls: dict[int, tuple[Any, dict[int, Any]]] = {}
            for i, a in todo.items():  # each shard to one of its replicas, one call per actor
                handles = self.replicas[i]
                h = prefer if any(r is prefer for r in handles) else handles[self._turn % len(handles)]
                calls.setdefault(id(h), (h, {}))[1][i] = a
            qargs = self._query_args(q)
            refs = [(h, part, getattr(h, method).remote(*head, part, *qargs)) for h, part in calls.values()]
            todo = {}
            try:  # the usual case: every call answers
                out.extend(zip((part for _, part, _ in refs), ray.get([ref for _, _, ref in refs])))
                continue
            except (ray.exceptions.RayTaskError, ray.exceptions.RayActorError):
                pass
            for h, part, ref in refs:
                try:
                    out.append((part, ray.get(ref)))
                    continue
                except ray.exceptions.RayTaskError as exc:
                    if isinstance(exc.cause, (ValueError, TypeError)):
                        raise type(exc.cause)(str(exc.cause)) from exc.cause
                    reason = str(exc.cause)
                except ray.exceptions.RayActorError as exc:
                    reason = f"every replica lost (last: {type(exc).__name__})"
                # This actor is gone for good (Ray already restarted and retried it): its
                # shards go to another replica, if they have one.
                for i, a in part.items():
                    self.replicas[i] = [r for r in self.replicas[i] if r is not h]
                    if self.replicas[i]:
                        todo[i] = a
                    else:
                        self._lose(i, self._node_of.get(id(h)), reason)
                        lost = True
        if lost:
            raise ShardsLost
        return out

    def _query_args(self, q: npt.NDArray[np.float32]) -> list[Any]:
        """The query batch as actor call arguments: row blocks sent inline, or one object
        store reference (see ``INLINE_BYTES``)."""
        if q.nbytes > INLINE_BYTES:
            if q is not self._q:
                self._q, self._qref = q, self._ray.put(q)
            return [self._qref]
        rows = max(1, CHUNK_BYTES // max(1, q.shape[1] * q.itemsize))
        return [q[a : a + rows] for a in range(0, len(q), rows)] or [q]

    def _each(
        self, op: str, q: npt.NDArray[np.float32], args: Mapping[int, tuple[Any, ...]]
    ) -> dict[int, Any]:
        out: dict[int, Any] = {}
        for _, found in self._gather("run", (op,), q, args):
            out.update(found)
        return out

    def _whole(
        self, op: str, params: tuple[Any, ...], q: npt.NDArray[np.float32], live: list[int]
    ) -> Scored | None:
        """The whole search in one call, when one actor serves every live shard: it runs the
        stages and merges exactly itself (one round trip, however many stages). ``None`` when
        no actor serves them all (or the one asked was lost meanwhile)."""
        if not live:
            return None
        common = [
            h for h in self.replicas[live[0]] if all(any(r is h for r in self.replicas[i]) for i in live[1:])
        ]
        if not common:
            return None
        answers = self._gather(
            "search", (op, params), q, dict.fromkeys(live), prefer=common[self._turn % len(common)]
        )
        if len(answers) != 1:  # its shards went to several replicas: search stage by stage
            return None
        found: Scored = answers[0][1]
        return found

    def _topk_over(self, q: npt.NDArray[np.float32], dim: int, k: int, live: list[int]) -> Scored:
        found = self._whole("topk", (dim, k), q, live)
        return super()._topk_over(q, dim, k, live) if found is None else found

    def _funnel_over(
        self, q: npt.NDArray[np.float32], dims: list[int], candidates: list[int], k: int, live: list[int]
    ) -> Scored:
        found = self._whole("funnel", (dims, candidates, k), q, live)
        return super()._funnel_over(q, dims, candidates, k, live) if found is None else found

    def close(self) -> None:
        """Ends the actors (the Ray cluster itself stays up)."""
        seen = {id(h): h for handles in getattr(self, "replicas", {}).values() for h in handles}
        for h in seen.values():
            self._ray.kill(h, no_restart=True)
        self.replicas = {}
        self._q = self._qref = None

    def __enter__(self) -> RayCorpus:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()


def connect(
    directory: str | os.PathLike[str],
    replicas: int = 1,
    address: str | None = None,
    allow_partial: bool = False,
    *,
    pin: Mapping[str, str] | None = None,
    verify: bool = True,
    max_restarts: int = 3,
) -> RayCorpus:
    """Serves a sharded corpus from Ray actors; :func:`matryo_fast.topk` and
    :func:`matryo_fast.funnel` search it like any corpus, with the same results bitwise.

    ``directory`` must hold the same files at the same path on every node that serves a shard
    (a shared file system, or copies; each actor checks its shard against the manifest).

    Args:
        directory: A sharded corpus (see :class:`matryo_fast.ShardedCorpusWriter`).
        replicas: Actors per shard, placed on different nodes where there are enough.
        address: The Ray cluster to join when Ray is not initialised yet (``None``: Ray's
            default, ``RAY_ADDRESS`` or a new local cluster).
        allow_partial: Answer from the shards that can be served, with a
            :class:`matryo_fast.PartialResultWarning`, instead of raising.
        pin: Shard file name -> a custom resource that the nodes holding that file advertise
            (``ray start --resources``); the shard's actors go only there. Other shards are
            spread over the nodes.
        verify: Check each shard's checksum when its actor starts (reads the file once).
        max_restarts: Restarts of a dead actor (and retries of its call) before its replica
            counts as lost.

    Returns:
        A :class:`RayCorpus`; ``close()`` it, or use it in a ``with`` block.

    Raises:
        ImportError: Ray is not installed.
        ShardUnavailableError: A shard cannot be served (and ``allow_partial`` is false).
    """
    ray = require_ray()
    if not ray.is_initialized():
        ray.init(address=address)
    return RayCorpus(
        directory,
        replicas=replicas,
        allow_partial=allow_partial,
        pin=pin,
        verify=verify,
        max_restarts=max_restarts,
    )
