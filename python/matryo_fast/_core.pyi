"""Type stubs for the compiled module ``matryo_fast._core`` (see ``rust/bindings.rs``)."""

import os
from typing import Any, final

import numpy as np
import numpy.typing as npt

__all__ = [
    "BlockedWriter",
    "Corpus",
    "_popcount_peak",
    "_read_seconds",
    "__version__",
    "backends",
    "funnel",
    "score_rows",
    "set_backend",
    "topk",
]
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
    @property
    def tiers(self) -> list[str]: ...
    @property
    def int8_ranges(self) -> npt.NDArray[np.float32] | None: ...
    def __len__(self) -> int: ...

@final
class BlockedWriter:
    """A streaming writer of the prefix-blocked format (float32, int8 and binary tiers)."""

    def __new__(
        cls,
        path: str | os.PathLike[str],
        rows: int,
        widths: list[int],
        tiers: list[str],
        ranges: npt.NDArray[np.float32] | None = None,
        overwrite: bool = False,
    ) -> BlockedWriter: ...
    def write(self, batch: npt.NDArray[np.float32]) -> None: ...
    def finish(self) -> str: ...
    def abort(self) -> None: ...

def topk(
    query: npt.NDArray[np.float32],
    corpus: npt.NDArray[np.float32] | Corpus,
    dim: int,
    k: int,
    precision: str = "float32",
) -> tuple[npt.NDArray[np.float32], npt.NDArray[np.int64]]: ...
def funnel(
    query: npt.NDArray[np.float32],
    corpus: npt.NDArray[np.float32] | Corpus,
    dims: list[int],
    candidates: list[int],
    k: int,
    precisions: list[str] | None = None,
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
def _popcount_peak(nq: int, words: int, rounds: int = 5) -> float: ...
def _read_seconds(nbytes: int, rounds: int = 5) -> float: ...
