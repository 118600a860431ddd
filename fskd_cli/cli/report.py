"""``fskd report RUN_OR_STUDY...``: one Markdown (or HTML) page with the tables and figures of the runs named.
The logic is in :mod:`fskd_cli.analyze.report`."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console

console = Console(stderr=True)


def report_command(
    runs: Annotated[list[Path], typer.Argument(metavar="RUN_OR_STUDY...", help=(
        "Run folders (or their checkpoint.pt), or study folders: every run under one (any depth), its results.csv "
        "and its `fskd analyze` figures are taken in."))],
    out: Annotated[Path, typer.Option(help="The page: .md (figures linked) or .html (one self-contained file); "
                                           "other formats are refused.")] = Path("reports/report.md"),
    results: Annotated[Path | None, typer.Option(help=(
        "results.csv written by `fskd eval` (default: the study folder's results.csv, else ./results.csv)."))] = None,
    figures: Annotated[list[Path] | None, typer.Option(
        "--figures", help="An `fskd analyze` output folder (norms, correlation, attention) to include; repeat for several.")
    ] = None,
    paper: Annotated[bool, typer.Option("--paper", help="Put the paper's own numbers (Tables 1-5) beside ours.")] = False,
    title: Annotated[str | None, typer.Option(help="Title of the page (default: the run and study names).")] = None,
) -> None:
    """One page per study: the runs, their paper-style result tables, every eval with its ROC/CMC figure,
    and the analyze figures (attention maps, norm box plots, correlation scatter plots).

    Example: fskd report runs/demo --paper --out reports/demo.html
    """
    from ..analyze.report import build_report

    path = build_report(runs, out, results=results, figures=figures or [], paper=paper, title=title)
    console.print(f"[green]{path}[/]")
