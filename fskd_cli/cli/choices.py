"""Choices the command line builds from the stages' own definitions, without loading what those define.

Two kinds, so that ``fskd --help``, ``--version``, shell completion and a mistyped option never import torch:

- names defined in light modules (benchmarks, protocols, LR sources, t-tests, formats, scales): :func:`one_of`
  makes a ``Literal`` of them, which Typer lists in ``--help``, checks and completes like any choice;
- names held by a registry whose modules import torch (the distillation methods): :func:`registry_choice`
  asks the registry only when a value is checked or completed, and :func:`help_with` adds the registry's
  listing to a command's help only when that help is shown.

Either way the names are read from the registry or definition each time, never copied: a method registered at
run time is offered too.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any, Literal

import typer
from typer.core import TyperCommand


def one_of(names: Iterable[Any]) -> Any:
    """A ``Literal`` of ``names`` (strings, or members of a ``StrEnum`` such as ``Scale``, which Typer then hands
    over as members): the type of an option or argument that takes one of them."""
    return Literal.__getitem__(tuple(names))


def registry_choice(names: Callable[[], Iterable[str]]) -> dict[str, Any]:
    """``typer.Option`` keywords for a name among ``names()``: the registry is asked only when a value is given
    (a wrong one is the usual one-line usage error naming the option and the choices) or a name is completed."""

    def check(value: str | None) -> str | None:
        if value is not None:
            known = list(names())
            if value not in known:
                raise typer.BadParameter(f"{value!r} is not one of {', '.join(map(repr, known))}.")
        return value

    def complete(incomplete: str) -> list[str]:
        return [name for name in names() if name.startswith(incomplete)]

    return {"callback": check, "autocompletion": complete}


def help_with(listing: Callable[[], str]) -> type[TyperCommand]:
    """A command class whose ``--help`` ends with ``listing()``, computed when that help is shown (not when the
    command is only listed in ``fskd --help``, which shows the first line of its docstring)."""

    class Listed(TyperCommand):
        def format_help(self, ctx: Any, formatter: Any) -> None:
            plain = self.help
            self.help = f"{(plain or '').rstrip()}\n\n{listing()}\n"
            try:
                super().format_help(ctx, formatter)
            finally:
                self.help = plain

    return Listed
