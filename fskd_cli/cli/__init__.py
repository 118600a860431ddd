"""The ``fskd`` command: a thin Typer app over the stages. Each subcommand parses typed options and
calls one stage function; a user mistake (:class:`FskdError`) is printed as one line, exit code 2; a run
stopped by SIGTERM or SIGUSR1 (:class:`Stopped`) one line, exit code 75 (see :mod:`fskd_cli.core.stop`)."""

from __future__ import annotations

import sys
from typing import Annotated

import typer
from rich.console import Console
from rich.markup import escape
from typer.core import TyperGroup

from .. import __version__
from ..core.errors import FskdError
from ..core.guard import last_checkpoint
from ..core.stop import EXIT_STOPPED, Stopped
from .analyze import analyze_app
from .evaluate import eval_command
from .prepare import prepare_app
from .report import report_command
from .train import DistillCommand, TrainTeacherCommand, distill_command, train_teacher_command
from .use import embed_command, export_command, import_teacher_command, verify_command

try:  # typer >= 0.17 vendors click; older releases use click itself
    from typer._click.exceptions import ClickException
except ImportError:  # pragma: no cover
    from click.exceptions import ClickException


PIPELINE = ("prepare", "train-teacher", "distill", "eval", "analyze", "report",
            "embed", "verify", "export", "import-teacher")


class _InOrder(TyperGroup):
    """List the stages in pipeline order, not alphabetically (nor Typer's commands-before-groups)."""

    def list_commands(self, ctx: object) -> list[str]:
        return sorted(self.commands, key=lambda name: PIPELINE.index(name) if name in PIPELINE else len(PIPELINE))


app = typer.Typer(
    name="fskd",
    cls=_InOrder,
    help="Low-resolution recognition by feature-similarity knowledge distillation (F-SKD).\n\n"
    "Stages talk through files: prepare -> train-teacher -> distill -> eval -> analyze.\n\n"
    "Example: fskd prepare digits && fskd train-teacher --recipe recipes/digits-demo.yaml",
    no_args_is_help=True,
    add_completion=True,
    pretty_exceptions_enable=False,
)
USE = "Use a trained model"
app.add_typer(prepare_app, name="prepare")
app.command("train-teacher", cls=TrainTeacherCommand)(train_teacher_command)
app.command("distill", cls=DistillCommand)(distill_command)
app.command("eval")(eval_command)
app.add_typer(analyze_app, name="analyze")
app.command("report")(report_command)
app.command("embed", rich_help_panel=USE)(embed_command)
app.command("verify", rich_help_panel=USE)(verify_command)
app.command("export", rich_help_panel=USE)(export_command)
app.command("import-teacher", rich_help_panel=USE)(import_teacher_command)


def _print_version(value: bool) -> None:
    if value:
        print(f"fskd {__version__}")
        raise typer.Exit()


@app.callback()
def _root(version: Annotated[bool, typer.Option("--version", callback=_print_version, is_eager=True,
                                                 help="Print fskd's version and exit.")] = False) -> None:
    """Low-resolution recognition by feature-similarity knowledge distillation (F-SKD)."""


def main() -> None:
    """Run the app; a user's mistake or a write fault is one line (exit 2), Ctrl-C one line (exit 130), a
    training run stopped by SIGTERM or SIGUSR1 one line after its checkpoint (exit 75).

    Any other exception is a bug and keeps its traceback: nothing else is caught here.
    """
    err = Console(stderr=True, highlight=False, soft_wrap=True)
    try:
        code = app(standalone_mode=False)
    except FskdError as e:
        err.print(f"[bold red]error:[/] {escape(' '.join(str(e).split()))}")
        sys.exit(2)
    except Stopped as e:
        err.print(f"[yellow]stopped[/]{escape(str(e).removeprefix('stopped'))}")
        sys.exit(EXIT_STOPPED)
    except ClickException as e:  # a bad option value or an unknown command: one line too
        if type(e).__name__ == "NoArgsIsHelpError":
            print(e.ctx.get_help() if e.ctx else e.format_message())
            sys.exit(0)
        where = f"{e.ctx.command_path}: " if getattr(e, "ctx", None) else ""
        err.print(f"[bold red]error:[/] {escape(where + ' '.join(e.format_message().split()))} (see --help)")
        sys.exit(e.exit_code)
    except (KeyboardInterrupt, SystemExit) as e:
        # Typer turns Ctrl-C into a silent exit 130; find the interrupt behind it (any other exit passes through)
        if not _from_interrupt(e):
            raise
        err.print(f"[yellow]interrupted[/]; {escape(_where_to_resume())}")
        sys.exit(130)
    if code == 130:  # without standalone mode Typer returns Ctrl-C as exit code 130
        err.print(f"[yellow]interrupted[/]; {escape(_where_to_resume())}")
    if isinstance(code, int) and code:
        sys.exit(code)


def _from_interrupt(exc: BaseException | None) -> bool:
    while exc is not None:
        if isinstance(exc, KeyboardInterrupt):
            return True
        exc = exc.__cause__ or exc.__context__
    return False


def _where_to_resume() -> str:
    ckpt = last_checkpoint()
    if ckpt is None:
        return "no checkpoint was written by this run; files written so far are whole"
    return f"last checkpoint: {ckpt} (continue with the same command and --resume)"
