"""A corpus of texts: the embeddings, the ids and texts they came from, and the model that made them.

``matryo encode`` writes one folder, which appears under its final name only when complete::

    CORPUS/
      corpus.json          what the folder holds: rows, width, model (name, path, probe), source
      embeddings.npy       float32 (N, D), row i is the embedding of text i (mapped, never loaded)
      texts.jsonl          one {"id": ..., "text": ...} per row, in row order
      texts.offsets.npy    int64 (N + 1,) byte offsets of those lines, for lookups by row
      embeddings.mfb       only with ``matryo encode --tiers``: the same rows prefix-blocked with
                           the tiers named in corpus.json (``tiers``, ``blocked``); searches then
                           scan this file, at any of its precisions

The model is identified by its name and width and by its ``probe``: the first values of its
embedding of a fixed sentence. Queries are encoded with the corpus's model; a model whose probe
differs (another model, or the same name retrained) is refused, since its vectors live in
another space and the results would be meaningless.

>>> tc = open_text_corpus("docs.mf")  # doctest: +SKIP
>>> tc.search_texts(["a cat on a mat"], k=3)[0][0]  # doctest: +SKIP
Hit(row=41, score=0.83, id='doc-41', text='The cat sat on the mat.')
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np
import numpy.typing as npt

from matryo_fast.corpus import Corpus
from matryo_fast.funnel import FunnelPlan, funnel
from matryo_fast.search import TopK, topk

__all__ = ["FORMAT", "Hit", "TextCorpus", "model_identity", "open_text_corpus", "save_text_corpus"]

FORMAT = "matryo-text-corpus"
META = "corpus.json"
EMBEDDINGS = "embeddings.npy"
TEXTS = "texts.jsonl"
OFFSETS = "texts.offsets.npy"
BLOCKED = "embeddings.mfb"
BLOCKED_KEY = "blocked"  # corpus.json's name for that file
PROBE_TEXT = "matryo-fast model probe: a quick brown fox jumps over the lazy dog."
PROBE_VALUES = 32  # probe values recorded; another model differs in all of them
PROBE_ATOL = 1e-3  # the same model on another machine or thread count differs by ~1e-6


class Hit(NamedTuple):
    """One search result: corpus row, cosine score at the width searched, id and text."""

    row: int
    score: float
    id: Any
    text: str


def model_identity(model: Any, name: str | None, path: str | None) -> dict[str, Any]:
    """What a corpus records about the model that encoded it.

    Args:
        model: A loaded ``SentenceTransformer``.
        name: A readable name (the folder's name, say).
        path: The folder it was loaded from (``None`` for the shipped default model).

    Returns:
        ``{"name", "path", "dim", "probe"}``.
    """
    from matryo_fast.models import encode, model_dim

    probe = encode(model, [PROBE_TEXT])[0, :PROBE_VALUES]
    return {"name": name, "path": path, "dim": model_dim(model), "probe": [float(v) for v in probe]}


def same_model(recorded: dict[str, Any], other: dict[str, Any]) -> bool:
    """Whether two identities describe the same model (same width, probes within tolerance)."""
    a, b = np.asarray(recorded["probe"]), np.asarray(other["probe"])
    return bool(recorded["dim"] == other["dim"] and a.shape == b.shape and np.allclose(a, b, atol=PROBE_ATOL))


@dataclass
class TextCorpus:
    """An open corpus folder (see the module docs); open it with :func:`open_text_corpus`.

    Attributes:
        path: The folder.
        meta: The parsed ``corpus.json``.
        corpus: The mapped embeddings.
    """

    path: Path
    meta: dict[str, Any]
    corpus: Corpus
    _offsets: npt.NDArray[np.int64]
    _texts: npt.NDArray[np.uint8]  # texts.jsonl, mapped
    _model: Any = None

    @property
    def rows(self) -> int:
        """Number of texts."""
        return int(self.corpus.shape[0])

    @property
    def dim(self) -> int:
        """Full embedding width."""
        return int(self.corpus.shape[1])

    @property
    def model_name(self) -> str | None:
        """The recorded model's name (``None``: no model, vector queries only)."""
        name = self.meta["model"]["name"]
        return None if name is None else str(name)

    def record(self, row: int) -> tuple[Any, str]:
        """``(id, text)`` of a row."""
        start, end = int(self._offsets[row]), int(self._offsets[row + 1])
        obj = json.loads(self._texts[start:end].tobytes())
        return obj["id"], obj["text"]

    def hits(self, result: TopK) -> list[list[Hit]]:
        """The rows of a search result with their ids and texts, one list per query."""
        scores, rows = np.atleast_2d(result.scores), np.atleast_2d(result.indices)
        return [
            [Hit(int(r), float(s), *self.record(int(r))) for r, s in zip(rr, ss)]
            for rr, ss in zip(rows, scores)
        ]

    def load_model(self, model: str | os.PathLike[str] | None = None) -> Any:
        """The model for queries: the recorded one, or ``model`` if it is the same model.

        Raises:
            ValueError: ``model`` is another model than the corpus's (the message names both).
            FileNotFoundError: The recorded model folder is gone (pass ``model``).
        """
        if model is None and self._model is not None:
            return self._model
        from matryo_fast.models import load_model

        rec = self.meta["model"]
        if rec["name"] is None:
            raise ValueError(f"{self.path} records no model: query it with vectors")
        source = model if model is not None else rec["path"]
        if source is not None and model is None and not Path(source).exists():
            raise FileNotFoundError(
                f"{self.path} was encoded with the model folder {source}, which is gone; "
                "pass the same model with --model"
            )
        loaded = load_model(source)
        ident = model_identity(loaded, None, None)
        if not same_model(rec, ident):
            raise ValueError(
                f"{self.path} was encoded with model {rec['name']!r} ({rec['dim']} dims); the "
                f"query model {os.fspath(model) if model else source!r} ({ident['dim']} dims) "
                "gives other embeddings: search with the corpus's model, or encode the corpus "
                "again with this one"
            )
        self._model = loaded
        return loaded

    def encode_queries(self, texts: list[str], *, batch_size: int = 64) -> npt.NDArray[np.float32]:
        """Query texts encoded with the corpus's model (loaded once)."""
        from matryo_fast.models import encode

        for i, t in enumerate(texts):
            if not isinstance(t, str) or not t.strip():
                raise ValueError(f"query {i + 1} is empty")
        return encode(self.load_model(), texts, batch_size=batch_size)

    @property
    def tiers(self) -> tuple[str, ...]:
        """The precisions the corpus can be searched at (``("float32",)`` without ``--tiers``)."""
        return tuple(self.corpus.tiers) if BLOCKED_KEY in self.meta else ("float32",)

    def search(
        self,
        queries: Any,
        *,
        k: int = 10,
        dim: int | None = None,
        plan: FunnelPlan | None = None,
        precision: str | None = None,
    ) -> TopK:
        """Top-``k`` of ``(B, D)`` query vectors, at ``dim`` or through a funnel ``plan``.

        ``precision`` (one of :attr:`tiers`; default the finest) goes with ``dim``; a plan
        carries its own precisions.

        Raises:
            ValueError: Both ``dim`` and ``plan``, a plan tuned on another corpus, a precision
                the corpus lacks, or a :func:`matryo_fast.topk` error.
        """
        q = np.asarray(queries)
        if q.ndim >= 1 and q.shape[-1] != self.dim:
            raise ValueError(
                f"query vectors have {q.shape[-1]} values; this corpus's model "
                f"{self.model_name!r} makes {self.dim}"
            )
        if plan is not None:
            if dim is not None or precision is not None:
                raise ValueError("give a width (and precision) or a plan, not both")
            from matryo_fast.planfile import check_plan

            check_plan(plan, self.corpus)
            return funnel(q, self.corpus, **{**plan.params, "k": k})
        if precision is not None and precision not in self.tiers:
            raise ValueError(
                f"{self.path} holds the precisions {self.tiers}, not {precision!r} "
                "(encode with --tiers to add quantized tiers)"
            )
        return topk(q, self.corpus, dim=dim, k=k, precision=precision or self.tiers[0])

    def search_texts(
        self,
        texts: list[str],
        *,
        k: int = 10,
        dim: int | None = None,
        plan: FunnelPlan | None = None,
        precision: str | None = None,
    ) -> list[list[Hit]]:
        """Encode ``texts`` with the corpus's model, search, and return the hits per text."""
        q = self.encode_queries(texts)
        return self.hits(self.search(q, k=k, dim=dim, plan=plan, precision=precision))


def write_texts(folder: Path, ids: Sequence[Any], texts: Sequence[str], mode: str = "wb") -> int:
    """Writes (or appends) rows of the text table; returns the bytes written."""
    data = b"".join(
        json.dumps({"id": i, "text": t}, ensure_ascii=False).encode("utf-8") + b"\n"
        for i, t in zip(ids, texts)
    )
    with open(folder / TEXTS, mode) as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())
    return len(data)


def write_tiers(work: Path, tiers: Sequence[str] | None) -> tuple[str, ...]:
    """Writes ``work``'s :data:`BLOCKED` file from its complete embeddings with ``tiers`` (int8
    ranges from the data), replacing a partial one; returns the tiers, ``()`` for ``None``."""
    from matryo_fast.blocked import check_tiers, save_prefix_blocked

    if tiers is None:
        return ()
    names = check_tiers(tiers)
    save_prefix_blocked(work / BLOCKED, work / EMBEDDINGS, tiers=names, overwrite=True)
    return names


def finish(
    work: Path,
    final: Path,
    *,
    rows: int,
    model: dict[str, Any],
    source: Any,
    overwrite: bool,
    tiers: Sequence[str] = (),
) -> None:
    """Completes a corpus folder written in ``work`` (the text index, then ``corpus.json``) and
    renames it to ``final``, replacing an old one only now if ``overwrite``. ``tiers``: the
    tiers of ``work``'s :data:`BLOCKED` file, if it has one."""
    with open(work / TEXTS, "rb") as tf:
        offsets = np.zeros(rows + 1, dtype=np.int64)
        for row in range(rows):
            offsets[row + 1] = offsets[row] + len(tf.readline())
    meta = {
        "format": FORMAT,
        "version": 1,
        "rows": rows,
        "embeddings": EMBEDDINGS,
        "model": model,
        "source": source,
    }
    if tiers:
        meta.update({"tiers": list(tiers), BLOCKED_KEY: BLOCKED})
    for name, write in (
        (OFFSETS, lambda f: np.save(f, offsets)),
        (META, lambda f: f.write(json.dumps(meta, indent=2).encode())),
    ):
        with open(work / name, "wb") as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
    _fsync_dir(work)
    if final.exists():
        if not overwrite:
            raise FileExistsError(f"{final} exists; pass --overwrite to replace it")
        trash = final.with_name(f".{final.name}.old")
        shutil.rmtree(trash, ignore_errors=True)
        final.rename(trash)
        work.rename(final)
        shutil.rmtree(trash)
    else:
        work.rename(final)
    _fsync_dir(final.parent)


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def save_text_corpus(
    path: str | os.PathLike[str],
    embeddings: Any,
    texts: Sequence[str],
    *,
    ids: Sequence[Any] | None = None,
    model: dict[str, Any] | None = None,
    overwrite: bool = False,
    tiers: Sequence[str] | None = None,
) -> Path:
    """Writes a corpus folder from embeddings already in hand (``matryo encode`` makes them).

    Args:
        path: The folder to create (written aside, renamed when complete).
        embeddings: ``(N, D)`` float array, row i for ``texts[i]``.
        texts: The ``N`` texts.
        ids: ``N`` unique ids (default: row numbers).
        model: The encoder's :func:`model_identity`; ``None`` records no model, so the
            corpus answers vector queries only.
        overwrite: Replace an existing folder once the new one is complete.
        tiers: Also write the prefix-blocked file with these tiers (as ``matryo encode --tiers``).

    Returns:
        The folder.
    """
    from matryo_fast.files import save_corpus

    final = Path(path)
    if final.exists() and not overwrite:
        raise FileExistsError(f"{final} exists; pass overwrite=True to replace it")
    emb = np.asarray(embeddings)
    if emb.ndim != 2 or emb.shape[0] != len(texts) or (ids is not None and len(ids) != len(texts)):
        raise ValueError(f"embeddings {emb.shape} must have one row per text ({len(texts)} texts and ids)")
    work = Path(tempfile.mkdtemp(dir=final.parent, prefix=f".{final.name}.", suffix=".partial"))
    try:
        save_corpus(work / EMBEDDINGS, emb)
        write_texts(work, list(range(len(texts))) if ids is None else ids, texts)
        names = write_tiers(work, tiers)
        ident = model or {"name": None, "path": None, "dim": int(emb.shape[1]), "probe": []}
        finish(work, final, rows=len(texts), model=ident, source=None, overwrite=overwrite, tiers=names)
    except BaseException:
        shutil.rmtree(work, ignore_errors=True)
        raise
    return final


def open_text_corpus(path: str | os.PathLike[str]) -> TextCorpus:
    """Opens a corpus folder written by ``matryo encode``.

    Raises:
        FileNotFoundError: No such folder, or it is not a complete corpus folder.
        ValueError: Its files disagree (rows, width, format version).
    """
    p = Path(path)
    if not p.is_dir():
        partial = p.with_name(f".{p.name}.partial")
        hint = f" (an interrupted encode left {partial}: run it again to finish)" if partial.exists() else ""
        raise FileNotFoundError(f"corpus folder not found: {p}{hint}")
    try:
        meta = json.loads((p / META).read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise FileNotFoundError(
            f"{p} is not a corpus folder (no {META}; make one with matryo encode)"
        ) from None
    except json.JSONDecodeError as exc:
        raise ValueError(f"{p / META} is not valid JSON: {exc}") from None
    if meta.get("format") != FORMAT or meta.get("version") != 1:
        raise ValueError(f"{p / META}: not a {FORMAT} version 1 file")
    # a file (open_corpus would also take a directory); the tiered file if encoded with tiers
    corpus = Corpus(p / meta.get(BLOCKED_KEY, meta["embeddings"]))
    offsets = np.load(p / OFFSETS, mmap_mode="r")
    rows = corpus.shape[0]
    if BLOCKED_KEY in meta and list(corpus.tiers) != meta.get("tiers"):
        raise ValueError(f"{p}: {META} lists the tiers {meta.get('tiers')}, its file holds {corpus.tiers}")
    if meta["rows"] != rows or meta["model"]["dim"] != corpus.shape[1] or offsets.shape != (rows + 1,):
        raise ValueError(
            f"{p}: the files disagree ({META} says {meta['rows']} x {meta['model']['dim']}, the "
            f"embeddings are {corpus.shape}, the text index has {offsets.shape[0] - 1} rows)"
        )
    texts = np.memmap(p / TEXTS, dtype=np.uint8, mode="r")
    if texts.shape[0] != offsets[-1]:
        raise ValueError(f"{p}: {TEXTS} has {texts.shape[0]} bytes; its index says {offsets[-1]}")
    return TextCorpus(p, meta, corpus, offsets, texts)
