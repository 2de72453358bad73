"""Reports from a model: encode the texts once at full dimension, then score every width."""

from __future__ import annotations

import os
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import numpy.typing as npt

from matryo_fast.evaluation.embeddings import evaluate_embeddings_retrieval, evaluate_embeddings_sts
from matryo_fast.evaluation.report import EvaluationReport
from matryo_fast.evaluation.scores import Relevance

if TYPE_CHECKING:
    from sentence_transformers import SentenceTransformer

__all__ = ["evaluate_retrieval", "evaluate_sts"]


def _resolve_model(model: Any, device: str) -> tuple[Any, str]:
    from matryo_fast.models import load_model

    if model is None or isinstance(model, (str, os.PathLike)):
        label = "all-MiniLM-L6-v2" if model is None else Path(os.fspath(model)).name
        return load_model(model, device=device), label
    return model, "model"


def _encode_unique(
    model: Any, texts: Sequence[str], *, batch_size: int, show_progress_bar: bool
) -> tuple[npt.NDArray[np.float32], npt.NDArray[np.intp]]:
    """Encode each distinct text once; return the embeddings and the row of each input text."""
    from matryo_fast.models import encode

    index: dict[str, int] = {}
    rows = np.empty(len(texts), dtype=np.intp)
    for i, t in enumerate(texts):
        rows[i] = index.setdefault(t, len(index))
    emb = encode(model, list(index), batch_size=batch_size, show_progress_bar=show_progress_bar)
    return emb, rows


def evaluate_sts(
    model: SentenceTransformer | str | os.PathLike[str] | None,
    data: str | os.PathLike[str] | tuple[Sequence[str], Sequence[str], Sequence[float]],
    *,
    dims: Iterable[int] | None = None,
    name: str | None = None,
    batch_size: int = 64,
    device: str = "cpu",
    show_progress_bar: bool = False,
    precisions: Iterable[str] | None = None,
    int8_ranges: npt.ArrayLike | None = None,
) -> EvaluationReport:
    """Encode the STS sentences once at full dimension, then score every width (and, with
    ``precisions``, every width at each precision, from the same embeddings).

    Args:
        model: A loaded ``SentenceTransformer``, a model folder, or ``None`` for the shipped
            all-MiniLM-L6-v2.
        data: A TSV/CSV/JSONL file with ``sentence1``, ``sentence2``, ``score`` columns, or a
            ``(sentences1, sentences2, scores)`` tuple.
        dims: Widths; default the full dimension and powers of two down to 32. The full width is
            always included (the % column needs it).
        name: Label of the model in the report (default: the folder name).
        batch_size: Encoding batch size.
        device: Device when the model is loaded here.
        show_progress_bar: Show a tqdm bar while encoding.
        precisions: The precision axis (see :func:`evaluate_embeddings_sts`); ``None``: none.
        int8_ranges: ``(2, D)`` ranges of the int8 codes; default those of the embeddings.

    Returns:
        An :class:`EvaluationReport` (``spearman`` primary, ``pearson``).

    Raises:
        ImportError: The ``train`` extra is missing.
        FileNotFoundError: The data file or model folder does not exist.
        matryo_fast.data.DataError: The data file is malformed.
        ValueError: Bad dims or fewer than 2 pairs.

    >>> rep = evaluate_sts(None, "stsb/test.tsv", dims=[384, 32])  # doctest: +SKIP
    >>> rep.score("all-MiniLM-L6-v2", 384)  # doctest: +SKIP
    82.03...
    """
    from matryo_fast.data import read_sts

    if isinstance(data, (str, os.PathLike)):
        s1, s2, gold = read_sts(data)
        dataset = Path(os.fspath(data)).name
    else:
        if len(data) != 3:
            raise ValueError("data must be a file or a (sentences1, sentences2, scores) tuple")
        s1, s2, gold = list(data[0]), list(data[1]), [float(x) for x in data[2]]
        if not len(s1) == len(s2) == len(gold):
            raise ValueError(
                f"sentences1, sentences2 and scores differ in length: {len(s1)}, {len(s2)}, {len(gold)}"
            )
        dataset = "sts"
    loaded, label = _resolve_model(model, device)
    emb, rows = _encode_unique(loaded, [*s1, *s2], batch_size=batch_size, show_progress_bar=show_progress_bar)
    n = len(s1)
    report = evaluate_embeddings_sts(
        emb[rows[:n]],
        emb[rows[n:]],
        gold,
        dims=dims,
        model_name=name or label,
        dataset=dataset,
        precisions=precisions,
        int8_ranges=int8_ranges,
    )
    report.meta["unique_sentences"] = int(emb.shape[0])
    return report


def evaluate_retrieval(
    model: SentenceTransformer | str | os.PathLike[str] | None,
    queries: Sequence[str],
    corpus: Sequence[str],
    *,
    dims: Iterable[int] | None = None,
    k: int = 10,
    relevant: Sequence[Relevance] | None = None,
    name: str | None = None,
    dataset: str = "retrieval",
    batch_size: int = 64,
    device: str = "cpu",
    show_progress_bar: bool = False,
    funnel_candidates: int | None = None,
    precisions: Iterable[str] | None = None,
    int8_ranges: npt.ArrayLike | None = None,
) -> EvaluationReport:
    """Encode queries and corpus once, then score every width (see :func:`retrieval_metrics`).

    ``funnel_candidates`` adds funnel recall next to truncated recall and ``precisions`` the
    precision axis (see :func:`evaluate_embeddings_retrieval`).

    Args:
        model: A loaded ``SentenceTransformer``, a model folder, or ``None`` (shipped MiniLM).
        queries: Query texts.
        corpus: Corpus texts; ``relevant`` refers to their positions.
        dims: Widths; default the full dimension and powers of two down to 32.
        k: Recall cut-off against the full-dim top-k.
        relevant: Optional relevance labels, one entry per query.
        name: Label of the model in the report.
        dataset: Label of the data in the report.
        batch_size: Encoding batch size.
        device: Device when the model is loaded here.
        show_progress_bar: Show a tqdm bar while encoding.
        funnel_candidates: Shortlist size of the funnel whose recall is reported too.
        precisions: The precision axis; ``None``: none.
        int8_ranges: ``(2, D)`` ranges of the int8 codes; default the corpus's.

    Returns:
        An :class:`EvaluationReport`.

    Raises:
        ValueError: Empty queries/corpus, bad dims, k or labels.
    """
    from matryo_fast.models import encode

    if not queries or not corpus:
        raise ValueError(f"need at least one query and one corpus text, got {len(queries)} and {len(corpus)}")
    loaded, label = _resolve_model(model, device)
    q = encode(loaded, list(queries), batch_size=batch_size, show_progress_bar=show_progress_bar)
    c = encode(loaded, list(corpus), batch_size=batch_size, show_progress_bar=show_progress_bar)
    return evaluate_embeddings_retrieval(
        q,
        c,
        dims=dims,
        k=k,
        relevant=relevant,
        model_name=name or label,
        dataset=dataset,
        funnel_candidates=funnel_candidates,
        precisions=precisions,
        int8_ranges=int8_ranges,
    )
