"""matryo-fast: fused prefix-truncate + re-normalize + top-k cosine search for Matryoshka embeddings.

>>> import numpy as np, matryo_fast as mf
>>> corpus = np.random.default_rng(0).standard_normal((1000, 64)).astype(np.float32)
>>> res = mf.topk(corpus[7], corpus, dim=32, k=3)
>>> int(res.indices[0])
7
"""

from matryo_fast._core import __version__, backends, set_backend
from matryo_fast.blocked import save_prefix_blocked
from matryo_fast.files import CorpusWriter, save_corpus
from matryo_fast.funnel import FunnelPlan, funnel
from matryo_fast.search import Corpus, TopK, open_corpus, topk
from matryo_fast.semantic import semantic_search
from matryo_fast.sharded import (
    PartialResultWarning,
    ShardedCorpus,
    ShardedCorpusWriter,
    ShardUnavailableError,
)
from matryo_fast.tuning import tune_funnel

__all__ = [
    "Corpus",
    "CorpusWriter",
    "FunnelPlan",
    "PartialResultWarning",
    "ShardUnavailableError",
    "ShardedCorpus",
    "ShardedCorpusWriter",
    "TopK",
    "__version__",
    "backends",
    "funnel",
    "open_corpus",
    "save_corpus",
    "save_prefix_blocked",
    "semantic_search",
    "set_backend",
    "topk",
    "tune_funnel",
]
