"""``fskd prepare KIND SRC``: one subcommand per registered reader, built from its declaration.

Each reader declares its options once (``readers/reader.py``); the common ones (``--scales``,
``--workers``, ...) are declared once in ``data/prepare_options.py``. Here they become Typer
parameters, so a new reader is a new subcommand with no edit in this file.

The readers import numpy, cv2 and PIL (not torch), so their subcommands are built the first time one is looked
up (``fskd prepare --help``, ``fskd prepare KIND ...``), never for ``fskd --help`` or another command.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, Literal

import typer
import typer.main
from rich.console import Console
from typer.core import TyperGroup

from ..data.prepare_options import COMMON_OPTIONS, Option

if TYPE_CHECKING:
    from ..data.readers import Reader

console = Console(stderr=True)
_KEYWORD = inspect.Parameter.KEYWORD_ONLY


def _done(meta: dict, out: Path) -> None:
    c = meta["counts"]
    hidden = ("rows", "ok", "splits", "pairs", "identities_without_image")
    others = ", ".join(f"{k} {v}" for k, v in c.items() if k not in hidden)
    console.print(f"[green]{out}[/]: {c.get('ok', 0)} of {c['rows']} images ok" + (f" ({others})" if others else "")
                  + f", splits {c['splits']}" + (f", {c['pairs']} pairs" if "pairs" in c else ""))


def _parameter(option: Option) -> inspect.Parameter:
    """A Typer parameter for a declared option (``choices`` become a choice, no default means optional)."""
    kind: Any = Literal.__getitem__(option.choices) if option.choices else option.type
    if option.default is None:
        kind = kind | None
    return inspect.Parameter(option.name, _KEYWORD, default=option.default,
                             annotation=Annotated[kind, typer.Option(option.flag, help=option.help)])


def _parameters(reader: Reader) -> list[inspect.Parameter]:
    src = [] if reader.src_help is None else [inspect.Parameter(
        "src", _KEYWORD, annotation=Annotated[Path, typer.Argument(help=reader.src_help, metavar="SRC", show_default=False)])]
    out = inspect.Parameter("out", _KEYWORD, default=None, annotation=Annotated[Path | None, typer.Option(
        "--out", help=f"Output folder (default: data/{reader.kind}).", show_default=False)])
    force = inspect.Parameter("force", _KEYWORD, default=False, annotation=Annotated[bool, typer.Option(
        "--force", help="Write into a folder fskd did not write, or start over where a run had other options.")])
    return [*src, out, force, *(_parameter(o) for o in (*reader.options, *COMMON_OPTIONS))]


def _command(reader: Reader) -> Callable[..., None]:
    """The ``fskd prepare KIND`` function for ``reader``, with a signature Typer reads as options."""

    def command(**given: Any) -> None:
        from ..data.prepare import prepare_dataset  # torch and the readers' work load only when a command runs

        out = given.pop("out") or Path("data") / reader.kind
        _done(prepare_dataset(reader.kind, given.pop("src", None), out, **given), out)

    params = _parameters(reader)
    command.__signature__ = inspect.Signature(params)  # type: ignore[attr-defined]
    command.__annotations__ = {p.name: p.annotation for p in params}
    command.__doc__ = f"{reader.summary}\n\nExample: {reader.example}"
    return command


class _Kinds(TyperGroup):
    """``fskd prepare``'s subcommands: one per registered reader (in registry order), then ``holdout``. The
    readers' are built when a subcommand is first looked up or listed, from the registry as it is then."""

    def _all(self) -> dict[str, Any]:
        if not getattr(self, "_readers_added", False):
            from ..data.readers import READERS

            readers = typer.Typer()
            for reader in READERS.values():
                readers.command(reader.kind)(_command(reader))
            self.commands = {**typer.main.get_group(readers).commands, **self.commands}
            self._readers_added = True
        return dict(self.commands)

    def list_commands(self, ctx: Any) -> list[str]:
        return list(self._all())

    def get_command(self, ctx: Any, cmd_name: str) -> Any:
        return self._all().get(cmd_name)


prepare_app = typer.Typer(cls=_Kinds, help="Turn a source data set into data/KIND (meta.yaml, manifest.csv, HR images "
                          "and the LR copies of --scales).", no_args_is_help=True)


@prepare_app.command("holdout")
def holdout(root: Annotated[Path, typer.Argument(help="A prepared training set (e.g. from `fskd prepare folder`).")],
            identities: Annotated[int, typer.Option(help="Identities to hold out for testing.")] = 10,
            pairs: Annotated[int, typer.Option(help="Verification pairs among them (10 folds, half same).")] = 300,
            seed: Annotated[int, typer.Option(help="Seed of the identity and pair choice.")] = 0,
            force: Annotated[bool, typer.Option(help="Redo a holdout made with other options.")] = False) -> None:
    """Hold out identities of a prepared set as a test split with a 10-fold pairs.csv (1:1 on unseen people).

    Example: fskd prepare holdout data/orl --identities 10 --pairs 300
    """
    from ..data.holdout import hold_out

    meta = hold_out(root, identities, pairs, seed=seed, force=force)
    console.print(f"[green]{root}[/]: {meta['num_classes']} training identities, "
                  f"{meta['holdout']['identities']} held out, {meta['counts']['pairs']} pairs, splits {meta['counts']['splits']}")
