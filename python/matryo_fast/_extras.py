"""Optional dependencies and shared locations: the one install hint, the import that names
the extra when a module is missing, and the default data folder.

>>> INSTALL_HINT
'pip install "matryo-fast[train]"'
"""

from __future__ import annotations

import importlib
import os
from pathlib import Path
from types import ModuleType

__all__ = ["CHECKOUT_DATA_DIR", "INSTALL_HINT", "default_data_dir", "require"]

#: How to install the optional training / evaluation stack (torch, sentence-transformers, ...).
INSTALL_HINT = 'pip install "matryo-fast[train]"'

#: ``shared/data`` beside the repository checkout (the fallback of :func:`default_data_dir`).
CHECKOUT_DATA_DIR = Path(__file__).resolve().parents[3] / "shared" / "data"


def require(module: str, *, feature: str, extra: str = "train") -> ModuleType:
    """Import ``module`` or raise an ImportError naming the extra that provides it.

    Args:
        module: The module to import (e.g. ``"sentence_transformers"``).
        feature: What needs it, for the message (e.g. ``"matryo_fast.training"``).
        extra: The extra that installs it (``train``, ``serve`` for FastAPI and uvicorn, or
            ``ray`` for scale-out).

    Returns:
        The imported module.

    Raises:
        ImportError: The module is not installed; the message names the extra.
    """
    try:
        return importlib.import_module(module)
    except ImportError as exc:
        hint = INSTALL_HINT.replace("[train]", f"[{extra}]")
        raise ImportError(
            f"{feature} needs the optional dependency {module!r}, which is not installed: {hint}"
        ) from exc


def default_data_dir() -> Path:
    """``$MATRYO_FAST_DATA`` if set, else ``shared/data`` beside the repository checkout: the
    folder with ``stsb/`` and ``nli/`` that ``matryo demo``, ``matryo reproduce`` and the
    benchmarks read by default."""
    env = os.environ.get("MATRYO_FAST_DATA")
    return Path(env) if env else CHECKOUT_DATA_DIR
