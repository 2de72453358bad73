"""``semantic_search`` with the return value of ``sentence_transformers.util.semantic_search``.

Code written for sentence-transformers switches with one line::

    from sentence_transformers import util          # before
    hits = util.semantic_search(q_emb, corpus_emb, top_k=10)
    import matryo_fast as mf                         # after
    hits = mf.semantic_search(q_emb, corpus_emb, top_k=10)

The scores are cosine similarities, as with sentence-transformers' default ``cos_sim``; ``dim``
adds Matryoshka truncation (the first ``dim`` columns of queries and rows, re-normalised).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from matryo_fast._interop import as_host_array
from matryo_fast.corpus import CorpusLike
from matryo_fast.search import topk

__all__ = ["semantic_search"]


def semantic_search(
    query_embeddings: Any, corpus_embeddings: CorpusLike | Any, top_k: int = 10, dim: int | None = None
) -> list[list[dict[str, int | float]]]:
    """Top-``top_k`` cosine search, returned as sentence-transformers does.

    Args:
        query_embeddings: ``(D,)`` or ``(B, D)`` float32/float64 numpy array or CPU tensor
            (torch tensors are read in place through DLPack), or a list of 1-D ones.
        corpus_embeddings: ``(N, D)`` float32 numpy array or CPU tensor (read in place, never
            copied), a ``.npy`` path or a :class:`matryo_fast.Corpus`.
        top_k: Hits per query (all ``N`` rows when ``top_k > N``).
        dim: Prefix width; ``None`` means all columns.

    Returns:
        One list per query of ``{"corpus_id": int, "score": float}``, best first (equal scores
        by ascending ``corpus_id``); a 1-D query gives a list of one list, as in
        sentence-transformers.

    Raises:
        TypeError, ValueError: As :func:`matryo_fast.topk`.

    >>> import numpy as np, matryo_fast as mf
    >>> corpus = np.eye(3, dtype=np.float32)
    >>> mf.semantic_search(np.array([0.0, 2.0, 1.0]), corpus, top_k=2)
    [[{'corpus_id': 1, 'score': 0.8944271802902222}, {'corpus_id': 2, 'score': 0.4472135901451111}]]
    """
    if isinstance(query_embeddings, (list, tuple)):
        query_embeddings = np.stack([np.asarray(as_host_array(q, "query")) for q in query_embeddings])
    res = topk(query_embeddings, corpus_embeddings, dim=dim, k=top_k)
    scores = np.atleast_2d(res.scores).tolist()
    ids = np.atleast_2d(res.indices).tolist()
    return [
        [{"corpus_id": i, "score": s} for i, s in zip(row_ids, row_scores)]
        for row_ids, row_scores in zip(ids, scores)
    ]
