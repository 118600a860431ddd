"""The ``fskd`` command: a thin Typer app over the stages. Each subcommand parses typed options and
calls one stage function; a user mistake (:class:`FskdError`) is printed as one line, exit code 2."""

from __future__ import annotations

import sys

import typer
from rich.console import Console

from ..core.errors import FskdError
from .analyze import analyze_app
from .evaluate import eval_command
from .prepare import prepare_app
from .report import report_command
from .train import distill_command, train_teacher_command

app = typer.Typer(
    name="fskd",
    help="Low-resolution recognition by feature-similarity knowledge distillation (F-SKD).\n\n"
    "Stages talk through files: prepare -> train-teacher -> distill -> eval -> analyze.\n\n"
    "Example: fskd prepare digits && fskd train-teacher --recipe recipes/digits-demo.yaml",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
app.add_typer(prepare_app, name="prepare")
app.command("train-teacher")(train_teacher_command)
app.command("distill")(distill_command)
app.command("eval")(eval_command)
app.add_typer(analyze_app, name="analyze")
app.command("report")(report_command)


def main() -> None:
    try:
        app()
    except FskdError as e:
        Console(stderr=True).print(f"[bold red]error:[/] {e}", highlight=False, soft_wrap=True)
        sys.exit(2)
    except KeyboardInterrupt:
        Console(stderr=True).print("[yellow]interrupted[/]; checkpoints and outputs written so far are intact")
        sys.exit(130)
