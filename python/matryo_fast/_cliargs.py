"""What the ``matryo`` command modules share: :func:`add_command` (a subcommand described by its
runner's docstring), argument types for comma-separated lists, and :func:`pick`, which passes
options through from the parsed namespace by name."""

from __future__ import annotations

import argparse
import inspect
from collections.abc import Callable
from typing import Any

__all__ = ["add_command", "float_list", "int_list", "names", "pick", "str_list"]


def add_command(sub: Any, name: str, runner: Callable[..., int]) -> argparse.ArgumentParser:
    """Adds subcommand ``name`` to an argparse subparsers object: its help is the first line of
    ``runner``'s docstring (as a lower-case phrase), its description the paragraphs after it."""
    summary, _, body = inspect.cleandoc(runner.__doc__ or "").partition("\n\n")
    help_text = summary[:1].lower() + summary[1:].rstrip(".")
    parser: argparse.ArgumentParser = sub.add_parser(name, help=help_text, description=body or None)
    return parser


def int_list(text: str) -> list[int]:
    """``384,256,128`` as integers (at least one)."""
    try:
        values = [int(x) for x in text.replace(" ", "").split(",") if x]
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"expected comma-separated integers like 384,256,128, got {text!r}"
        ) from None
    if not values:
        raise argparse.ArgumentTypeError("expected at least one integer")
    return values


def float_list(text: str) -> list[float]:
    """``1,1,0.5`` as numbers."""
    try:
        return [float(x) for x in text.replace(" ", "").split(",") if x]
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"expected comma-separated numbers like 1,1,0.5, got {text!r}"
        ) from None


def str_list(text: str) -> list[str]:
    """Comma-separated names, stripped, empty ones dropped."""
    return [x.strip() for x in text.split(",") if x.strip()]


def names(value: str) -> list[str]:
    """A comma-separated list of tier names, kept as given (checked by the code they are passed to)."""
    return [v.strip() for v in value.split(",")]


def pick(a: argparse.Namespace, *fields: str) -> dict[str, Any]:
    """The options ``fields`` of ``a``, by name: the keyword arguments a runner passes through."""
    return {f: getattr(a, f) for f in fields}
