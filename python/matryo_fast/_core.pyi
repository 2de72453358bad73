"""Type stubs for the compiled module ``matryo_fast._core`` (see ``rust/bindings.rs``)."""

import os
from typing import Any, final

import numpy as np
import numpy.typing as npt

__all__ = ["Corpus", "__version__", "backends", "funnel", "score_rows", "set_backend", "topk"]
__version__: str

@final
class Corpus:
    """A memory-mapped float32 ``.npy`` corpus (read-only, shared between threads)."""

    def __new__(cls, path: str | os.PathLike[str]) -> Corpus: ...
    @property
    def shape(self) -> tuple[int, int]: ...
    @property
    def path(self) -> str: ...
    @property
    def layout(self) -> str: ...
    def __len__(self) -> int: ...

def topk(
    query: npt.NDArray[np.float32],
    corpus: npt.NDArray[np.float32] | Corpus,
    dim: int,
    k: int,
) -> tuple[npt.NDArray[np.float32], npt.NDArray[np.int64]]: ...
def funnel(
    query: npt.NDArray[np.float32],
    corpus: npt.NDArray[np.float32] | Corpus,
    dims: list[int],
    candidates: list[int],
    k: int,
) -> tuple[npt.NDArray[np.float32], npt.NDArray[np.int64]]: ...
def score_rows(
    query: npt.NDArray[np.float32],
    corpus: npt.NDArray[np.float32] | Corpus,
    dim: int,
    rows: npt.NDArray[np.int64],
    offsets: list[int],
) -> npt.NDArray[np.float32]: ...
def backends() -> dict[str, Any]: ...
def set_backend(name: str | None = None) -> None: ...
