"""Encoding on Ray Data: texts in, a sharded corpus out (:func:`encode`; also
:func:`matryo_fast.distributed.encode`).

The model is loaded once per Ray Data actor; the workers write whole shards (aside, then
renamed) and the driver the manifest; a run that stopped part-way skips, when run again, the
shards already complete and matching their checksum.
"""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Iterable
from dataclasses import asdict
from pathlib import Path
from types import ModuleType
from typing import Any

import numpy as np

from matryo_fast._extras import require
from matryo_fast._validate import require_positive
from matryo_fast.files import CorpusWriter
from matryo_fast.sharded import MANIFEST, Manifest, Shard, checksum, write_shard_entry

__all__ = ["encode", "require_ray"]


def require_ray() -> ModuleType:
    """``import ray``, or an ImportError that names the ``ray`` extra."""
    return require("ray", feature="matryo_fast.distributed", extra="ray")


def _fingerprint(texts: Iterable[str], model: str) -> str:
    """What a shard was made from: the model and its texts."""
    import xxhash

    h = xxhash.xxh3_64(model.encode())
    for t in texts:
        h.update(len(t.encode()).to_bytes(8, "little") + t.encode())
    return h.hexdigest()


def _done_path(shard: Path) -> Path:
    return shard.with_name(shard.name + ".done.json")


def _complete(shard: Path, fingerprint: str) -> Shard | None:
    """The manifest entry of a shard a previous run finished from the same texts and model,
    if the file still matches its checksum."""
    try:
        done = json.loads(_done_path(shard).read_text())
        entry = Shard(**done["shard"])
    except (OSError, ValueError, KeyError, TypeError):
        return None
    if done.get("fingerprint") != fingerprint or not shard.is_file():
        return None
    if shard.stat().st_size != entry.bytes or checksum(shard) != entry.xxh3_64:
        return None
    return entry


class Encoder:
    """Ray Data actor: loads the model once, then encodes whole shards and writes them."""

    def __init__(self, model: str | None, directory: str, batch_size: int) -> None:
        from matryo_fast.models import load_model

        self.model = load_model(model)
        self.directory = Path(directory)
        self.batch_size = batch_size

    def __call__(self, batch: dict[str, Any]) -> dict[str, Any]:
        from matryo_fast.models import encode as encode_texts

        for index, texts, fingerprint in zip(batch["index"], batch["texts"], batch["fingerprint"]):
            emb = encode_texts(self.model, [str(t) for t in texts], batch_size=self.batch_size)
            path = self.directory / f"part-{int(index):05d}.npy"
            with CorpusWriter(path, emb.shape[1], overwrite=True) as w:
                w.append(emb)
            entry = write_shard_entry(path, len(emb))
            fd, tmp = tempfile.mkstemp(dir=self.directory, prefix=".done.", suffix=".partial")
            with os.fdopen(fd, "w") as f:
                json.dump({"fingerprint": str(fingerprint), "shard": asdict(entry)}, f)
                f.flush()
                os.fsync(f.fileno())
            os.replace(tmp, _done_path(path))
        return {"index": batch["index"]}


def encode(
    texts: Iterable[str],
    directory: str | os.PathLike[str],
    *,
    rows_per_shard: int = 100_000,
    model: str | os.PathLike[str] | None = None,
    batch_size: int = 64,
    concurrency: int = 1,
    address: str | None = None,
) -> dict[str, Any]:
    """Encodes texts into a sharded corpus on Ray Data; resumable.

    Shard ``i`` holds the embeddings of ``texts[i * rows_per_shard : (i + 1) * rows_per_shard]``
    at the model's full width. ``concurrency`` actors each load the model once; each writes
    whole shards (aside, then renamed) and a ``.done.json`` note with the shard's checksum and a
    fingerprint of its texts and model. Run again after an interruption, it skips every shard
    whose note matches and whose file still has that checksum. The driver writes the manifest
    last. ``directory`` must be reachable at the same path from every worker.

    Args:
        texts: The texts, in row order.
        directory: Where the shards and the manifest go (created if missing).
        rows_per_shard: Texts per shard.
        model: A local sentence-transformers folder (default: the shipped all-MiniLM-L6-v2).
        batch_size: Texts per forward pass.
        concurrency: Encoder actors.
        address: The Ray cluster to join when Ray is not initialised yet.

    Returns:
        ``{"manifest": Manifest, "encoded": [shard files], "skipped": [shard files]}``.

    Raises:
        ImportError: Ray, or the ``train`` extra (torch, sentence-transformers), is missing.
        FileExistsError: ``directory`` already holds a finished sharded corpus.
    """
    ray = require_ray()
    require_positive("rows_per_shard", rows_per_shard)
    require_positive("concurrency", concurrency)
    out = Path(directory).absolute()
    out.mkdir(parents=True, exist_ok=True)
    if (out / MANIFEST).exists():
        raise FileExistsError(f"{out} already holds a sharded corpus; use a new directory")
    from matryo_fast.models import default_model_path

    model_name = str(model) if model is not None else str(default_model_path())
    texts = list(texts)
    chunks = [texts[a : a + rows_per_shard] for a in range(0, len(texts), rows_per_shard)]
    prints = [_fingerprint(c, model_name) for c in chunks]
    done = {i: _complete(out / f"part-{i:05d}.npy", p) for i, p in enumerate(prints)}
    todo = [
        {"index": i, "texts": c, "fingerprint": prints[i]} for i, c in enumerate(chunks) if done[i] is None
    ]
    if not ray.is_initialized():
        ray.init(address=address)
    if todo:
        ray.data.from_items(todo).map_batches(
            Encoder,
            fn_constructor_kwargs={"model": model_name, "directory": str(out), "batch_size": batch_size},
            batch_size=1,
            concurrency=min(int(concurrency), len(todo)),
        ).materialize()
    shards = []
    for i, p in enumerate(prints):
        entry = done[i] or _complete(out / f"part-{i:05d}.npy", p)
        if entry is None:
            raise RuntimeError(f"shard part-{i:05d}.npy was not written; run encode again to resume")
        shards.append(entry)
    if not shards:
        raise ValueError("no texts to encode")
    dim = int(np.load(out / shards[0].file, mmap_mode="r").shape[1])
    manifest = Manifest(dim, "row-major", tuple(shards))
    manifest.write(out)
    return {
        "manifest": manifest,
        "encoded": [f"part-{t['index']:05d}.npy" for t in todo],
        "skipped": [s.file for i, s in enumerate(shards) if done[i] is not None],
    }
