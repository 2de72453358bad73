"""The manifest of a sharded corpus: its format, the shard checksums, reading and writing.

The manifest (format version 1) is ``manifest.json`` in the corpus directory, JSON::

    {"format": "matryo-fast-sharded", "version": 1, "dim": 768, "rows": 1000000,
     "layout": "row-major", "tiers": ["float32"], "checksum": "xxh3_64",
     "shards": [{"file": "part-00000.npy", "rows": 250000, "bytes": 768000128,
                 "xxh3_64": "9f0c..."}, ...]}

``layout`` is the shards' :attr:`matryo_fast.Corpus.layout`, ``tiers`` the precisions each
shard file holds, and the checksum is XXH3-64 of each whole shard file (hex; chosen for speed:
several GB/s on one core, so a node verifies its shards at about the speed it reads them).
A shard is written aside and renamed into place when complete, and the manifest is written
last, so a crash never leaves a manifest that names a half-written shard.
"""

from __future__ import annotations

import json
import os
import tempfile
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import numpy.typing as npt

__all__ = ["FORMAT", "MANIFEST", "VERSION", "Manifest", "Shard", "checksum", "write_shard_entry"]

MANIFEST = "manifest.json"
FORMAT = "matryo-fast-sharded"
VERSION = 1


def checksum(path: str | os.PathLike[str], *, chunk: int = 1 << 24) -> str:
    """XXH3-64 of a whole file, as 16 hex digits (read in 16 MiB chunks)."""
    import xxhash

    h = xxhash.xxh3_64()
    with open(path, "rb") as f:
        while block := f.read(chunk):
            h.update(block)
    return h.hexdigest()


@dataclass(frozen=True)
class Shard:
    """One shard of a manifest: its file (relative to the directory), rows, size and checksum."""

    file: str
    rows: int
    bytes: int
    xxh3_64: str


@dataclass(frozen=True)
class Manifest:
    """The manifest of a sharded corpus (see the module docs for the format)."""

    dim: int
    layout: str
    shards: tuple[Shard, ...]
    tiers: tuple[str, ...] = ("float32",)

    @property
    def rows(self) -> int:
        """Rows over all shards."""
        return sum(s.rows for s in self.shards)

    @property
    def starts(self) -> npt.NDArray[np.int64]:
        """The global row id of each shard's first row."""
        return np.cumsum([0] + [s.rows for s in self.shards[:-1]], dtype=np.int64)

    def to_json(self) -> str:
        body = {
            "format": FORMAT,
            "version": VERSION,
            "dim": self.dim,
            "rows": self.rows,
            "layout": self.layout,
            "tiers": list(self.tiers),
            "checksum": "xxh3_64",
            "shards": [asdict(s) for s in self.shards],
        }
        return json.dumps(body, indent=1) + "\n"

    @classmethod
    def read(cls, directory: str | os.PathLike[str]) -> Manifest:
        """Reads and checks ``directory/manifest.json``.

        Raises:
            FileNotFoundError: No manifest (the directory is not a sharded corpus).
            ValueError: A manifest of another format or version, or one that is inconsistent.
        """
        path = Path(directory) / MANIFEST
        if not path.is_file():
            raise FileNotFoundError(f"{directory} is not a sharded corpus: it has no {MANIFEST}")
        try:
            body = json.loads(path.read_text())
            if body.get("format") != FORMAT or body.get("version") != VERSION:
                raise ValueError(
                    f"format {body.get('format')!r} version {body.get('version')!r}; this "
                    f"matryo_fast reads {FORMAT!r} version {VERSION}"
                )
            shards = tuple(
                Shard(str(s["file"]), int(s["rows"]), int(s["bytes"]), str(s["xxh3_64"]))
                for s in body["shards"]
            )
            manifest = cls(int(body["dim"]), str(body["layout"]), shards, tuple(body["tiers"]))
        except (KeyError, TypeError, ValueError) as exc:
            raise ValueError(f"{path}: not a valid manifest: {exc}") from exc
        bad = [s.file for s in shards if Path(s.file).name != s.file or s.rows < 0]
        if bad or manifest.rows != body["rows"] or manifest.dim < 1 or not shards:
            raise ValueError(f"{path}: inconsistent manifest (shards {bad}, rows, dim)")
        return manifest

    def write(self, directory: str | os.PathLike[str]) -> Path:
        """Writes the manifest aside, syncs it and renames it into place (then syncs the
        directory, so the rename is durable)."""
        path = Path(directory) / MANIFEST
        fd, tmp = tempfile.mkstemp(dir=directory, prefix=f".{MANIFEST}.", suffix=".partial")
        with os.fdopen(fd, "w") as f:
            f.write(self.to_json())
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, 0o644)
        os.replace(tmp, path)
        dir_fd = os.open(directory, os.O_RDONLY)
        try:
            os.fsync(dir_fd)
        finally:
            os.close(dir_fd)
        return path


def write_shard_entry(path: Path, rows: int) -> Shard:
    """The manifest entry of a finished shard file."""
    return Shard(path.name, rows, path.stat().st_size, checksum(path))
