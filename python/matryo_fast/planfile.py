"""Funnel plans on disk: :meth:`FunnelPlan.save` / :meth:`FunnelPlan.load` and the corpus check.

A plan is measured on one corpus, so its file records that corpus: path, shape and a cheap
fingerprint (blake2b of the shape and of four 64 KiB samples of rows spread over the corpus;
a change outside the samples goes unseen). Loading a plan for another corpus, or running a
loaded plan on one, raises a ``ValueError`` that names both. The plan's measured figures
travel with it; the table of every plan tried does not.

>>> plan = mf.tune_funnel(corpus, sample_queries)  # doctest: +SKIP
>>> plan.save("plan.json")  # doctest: +SKIP
>>> mf.FunnelPlan.load("plan.json", corpus=corpus).search(queries)  # doctest: +SKIP
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from matryo_fast.corpus import Corpus, coerce_corpus

if TYPE_CHECKING:
    from matryo_fast.funnel import FunnelPlan

__all__ = ["check_plan", "corpus_signature", "load_plan", "save_plan"]

FORMAT = "matryo-funnel-plan"
_SAMPLE = 64 * 1024
_FIELDS = ("dims", "candidates", "k", "recall", "cost", "exact_cost", "time_ms", "exact", "recall_se")
# A plan over quantized tiers also records these (a float32 plan's file is unchanged).
_TIER_FIELDS = ("precisions", "bytes_read", "exact_bytes")


def corpus_signature(corpus: Any) -> dict[str, Any]:
    """``{"path", "shape", "fingerprint"}`` of a corpus file, :class:`Corpus` or array.

    The fingerprint hashes the shape and four samples of about 64 KiB of rows (first, a third,
    two thirds, last), so a ``.npy`` file and the same array in memory match; a prefix-blocked
    file is sampled as bytes.
    """
    c = coerce_corpus(corpus)
    h = hashlib.blake2b(digest_size=16)
    shape = [int(v) for v in c.shape]
    h.update(repr(shape).encode())
    path = getattr(c, "path", None)
    if path is not None and c.layout != "row-major":
        size = os.path.getsize(path)
        with open(path, "rb") as f:
            for at in sorted({0, size // 3, 2 * size // 3, max(size - _SAMPLE, 0)}):
                f.seek(at)
                h.update(f.read(_SAMPLE))
        kind = "file"
    else:
        a = np.asarray(c) if path is None else np.load(path, mmap_mode="r")
        per = max(1, _SAMPLE // max(a.shape[1] * 4, 1))
        n = a.shape[0]
        for at in sorted({0, n // 3, 2 * n // 3, max(n - per, 0)}):
            h.update(np.ascontiguousarray(a[at : at + per]).tobytes())
        kind = "rows"
    return {"path": path, "shape": shape, "fingerprint": f"{kind}:{h.hexdigest()}"}


def save_plan(plan: FunnelPlan, path: str | os.PathLike[str], corpus: Any = None) -> Path:
    """Writes ``plan`` as JSON (aside, then renamed), with the signature of the corpus it was
    tuned on (``corpus``, else the plan's own).

    Raises:
        ValueError: Neither ``corpus`` nor the plan names a corpus.
    """
    target = corpus if corpus is not None else plan.corpus
    if target is None:
        raise ValueError("the plan holds no corpus: pass the one it was tuned on, plan.save(path, corpus)")
    doc: dict[str, Any] = {"format": FORMAT, "version": 1}
    doc.update({f: getattr(plan, f) for f in _FIELDS})
    if any(p != "float32" for p in plan.precisions):
        doc.update({f: getattr(plan, f) for f in _TIER_FIELDS})
    doc["corpus"] = corpus_signature(target)
    p = Path(path)
    fd, tmp = tempfile.mkstemp(dir=p.parent, prefix=f".{p.name}.", suffix=".partial")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            json.dump(doc, f, indent=2)
            f.write("\n")
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, p)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return p


def _mismatch(recorded: dict[str, Any], corpus: Any) -> str | None:
    sig = corpus_signature(corpus)
    if sig["shape"] == recorded["shape"] and sig["fingerprint"] == recorded["fingerprint"]:
        return None
    where = f" ({sig['path']})" if sig["path"] else ""
    return (
        f"the plan was tuned on another corpus: {recorded['path'] or 'an array'} of shape "
        f"{tuple(recorded['shape'])}, not this one{where} of shape {tuple(sig['shape'])}; "
        "tune a plan on this corpus (matryo tune)"
    )


def load_plan(path: str | os.PathLike[str], corpus: Any = None) -> FunnelPlan:
    """Reads a plan written by :func:`save_plan`; with ``corpus``, checks it was tuned on it.

    Raises:
        FileNotFoundError: No such file.
        ValueError: Not a plan file, or tuned on another corpus.
    """
    from matryo_fast.funnel import FunnelPlan

    p = Path(path)
    try:
        doc = json.loads(p.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise FileNotFoundError(f"plan file not found: {p}") from None
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise ValueError(f"{p} is not a plan file (not JSON: {exc})") from None
    if not isinstance(doc, dict) or doc.get("format") != FORMAT or "corpus" not in doc:
        raise ValueError(f"{p} is not a plan file (write one with matryo tune or FunnelPlan.save)")
    if corpus is not None:
        why = _mismatch(doc["corpus"], corpus)
        if why:
            raise ValueError(f"{p}: {why}")
    kw = {f: doc[f] for f in _FIELDS}
    kw.update({f: doc[f] for f in _TIER_FIELDS if f in doc})
    for f in ("dims", "candidates", "precisions"):
        if f in kw:
            kw[f] = tuple(kw[f])
    return FunnelPlan(**kw, corpus=corpus, signature=doc["corpus"])


def check_plan(plan: FunnelPlan, corpus: Corpus | Any) -> None:
    """Raises ``ValueError`` if a loaded ``plan`` was tuned on another corpus than ``corpus``."""
    recorded = plan.signature
    if recorded is None:
        if plan.corpus is None:
            return
        recorded = corpus_signature(plan.corpus)
    why = _mismatch(recorded, corpus)
    if why:
        raise ValueError(why)
