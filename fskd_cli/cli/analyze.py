"""``fskd analyze norms|correlation|attention|table|compare``: the paper's statistics, figures and tables, and paired
comparisons over seeds.

norms, correlation and attention need only ``--ckpt STUDENT``: its checkpoint names its teacher, its
data and its scale (options override), and the figures go to ``runs/NAME/analysis/`` beside it.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.markup import escape

from ..analyze.options import ATTENTION_KINDS, T_TESTS
from ..core.device import DEVICE_HELP
from ..core.scale import LR_SCALES, LR_SOURCES, Scale
from .choices import one_of

analyze_app = typer.Typer(help="Feature statistics, figures and tables (paper Section 3.3, Figures 3-5, Tables 1-5).",
                          no_args_is_help=True)
console = Console(stderr=True)


Students = Annotated[list[Path], typer.Option("--ckpt", help="Student checkpoint(s) (see LR images); repeat for several "
                                                             "(distilled from one teacher).")]
Teacher = Annotated[Path | None, typer.Option(help="Teacher checkpoint (sees HR images; default: the students' own).")]
Data = Annotated[str | None, typer.Option(help="Prepared dataset folder (default: the first student's training set).")]
ScaleOpt = Annotated[one_of(LR_SCALES) | None, typer.Option(
    help="The LR scale: 2, 4 or 8 (default: the students' training scale).")]
Out = Annotated[Path | None, typer.Option(help="Folder for the CSV and PNG files (default: runs/NAME/analysis beside "
                                               "the first student).")]
Split = Annotated[str | None, typer.Option(help="Manifest split; 'all' for every usable image (default: the student's "
                                                "eval split, e.g. test, when the set has it, else all).")]
Images = Annotated[int, typer.Option(min=0, help="Random images to use (paper Figure 5: 1000); 0 = all.")]
Seed = Annotated[int, typer.Option(help="Seed of the random image choice.")]
Force = Annotated[bool, typer.Option(help="Write into an --out folder fskd did not make (files of the same names are "
                                          "replaced; nothing else is deleted).")]
LrSourceOpt = Annotated[one_of(LR_SOURCES), typer.Option(
    help="LR images: degrade (from HR, as each student was trained) or disk.")]
Device = Annotated[str, typer.Option(help=DEVICE_HELP)]


def _study(ckpt: list[Path], teacher: Path | None, data: str | None, scale: Scale | None, out: Path | None,
           split: str | None, device: str, lr_source: str, force: bool):
    from ..analyze.features import open_study

    chosen = "default" if split is None else None if split == "all" else split
    study = open_study(ckpt, teacher=teacher, data=data, scale=scale, out=out, split=chosen, device=device,
                       lr_source=lr_source, force=force)
    for note in study.notes:
        console.print(f"[yellow]note:[/] {escape(note)}", soft_wrap=True)
    return study


def _done(res: dict, more: str = "") -> None:
    """The warning lines of an analysis (features that are not finite: a finding), then the files it wrote."""
    for line in res.get("warnings", []):
        console.print(f"[yellow]warning:[/] {escape(line)}", soft_wrap=True)
    console.print(f"[green]{escape(res['figure'])}[/], {escape(res['csv'])}{more}", soft_wrap=True)


@analyze_app.command("norms")
def norms(ckpt: Students, teacher: Teacher = None, data: Data = None, scale: ScaleOpt = None, out: Out = None,
          split: Split = None, images: Images = 1000, seed: Seed = 0,
          test: Annotated[one_of(T_TESTS), typer.Option(help="welch (unpaired, paper Eq. 5) or paired (same images).")
                          ] = T_TESTS[0],
          lr_source: LrSourceOpt = LR_SOURCES[0], device: Device = "auto",
          force: Force = False) -> None:
    """Per-block feature norms, teacher-HR vs student-LR, t-test per block, box plot (paper Figure 4).

    Example: fskd analyze norms --ckpt runs/s-fskd/checkpoint.pt --ckpt runs/s-fitnet/checkpoint.pt
    """
    from ..analyze.norms import analyze_norms
    from ..analyze.stats import format_p, parse_p

    study = _study(ckpt, teacher, data, scale, out, split, device, lr_source, force)
    res = analyze_norms(study, n_images=images, seed=seed, test=test)
    for r in res["summary"]:
        console.print(f"{r['model']:>12} {r['block']}: mean {float(r['mean']):9.3f}  {format_p(parse_p(r['p']))}".rstrip())
    _done(res)


@analyze_app.command("correlation")
def correlation(ckpt: Students, teacher: Teacher = None, data: Data = None, scale: ScaleOpt = None, out: Out = None,
                split: Split = None, images: Images = 1000, seed: Seed = 0, lr_source: LrSourceOpt = LR_SOURCES[0],
                device: Device = "auto", force: Force = False) -> None:
    """Per-block pixel-level Pearson r, teacher-HR vs student-LR features, scatter plot (paper Figure 5).

    Example: fskd analyze correlation --ckpt runs/s-fskd/checkpoint.pt --scale 4
    """
    from ..analyze.correlation import analyze_correlation

    study = _study(ckpt, teacher, data, scale, out, split, device, lr_source, force)
    res = analyze_correlation(study, n_images=images, seed=seed)
    for r in res["summary"]:
        console.print(f"{r['model']:>12} {r['block']}: r = {float(r['pearson_r']):.3f}")
    _done(res)


@analyze_app.command("attention")
def attention(ckpt: Students, teacher: Teacher = None, data: Data = None, scale: ScaleOpt = None, out: Out = None,
              split: Split = None,
              images: Annotated[int, typer.Option(min=1, help="Random faces to show (one row each).")] = 4,
              image: Annotated[list[str] | None, typer.Option(help="A face to show, by its manifest path; repeat for several "
                                                                    "(overrides --images).")] = None,
              seed: Seed = 0,
              block: Annotated[int, typer.Option(help="Block whose features are shown (paper Figure 3: 1).", min=1)] = 1,
              kind: Annotated[one_of(ATTENTION_KINDS), typer.Option("--attention", help=(
                  "squared: mean over channels of squared activations, L2-normalised (the authors' helper; Figure 3); "
                  "signed: the plain channel mean."))] = ATTENTION_KINDS[0],
              lr_source: LrSourceOpt = LR_SOURCES[0], device: Device = "auto", force: Force = False) -> None:
    """Self-attention maps of block 1, normalised to [0, 1], over the faces, HR teacher and LR students side by side
    (paper Figure 3).

    Example: fskd analyze attention --ckpt runs/s-base --ckpt runs/s-fitnet --ckpt runs/s-fskd --data data/agedb
    """
    from ..analyze.attention import analyze_attention

    study = _study(ckpt, teacher, data, scale, out, split, device, lr_source, force)
    res = analyze_attention(study, n_images=images, seed=seed, images=image, block=block, kind=kind)
    _done(res, f" ({len(res['images'])} faces)")


@analyze_app.command("table")
def table(results: Annotated[Path, typer.Option(help="results.csv written by `fskd eval`.")] = Path("results.csv"),
          out: Annotated[Path, typer.Option(help="Output path without suffix; .md and .csv are written.")
                         ] = Path("reports/table"),
          metric: Annotated[str | None, typer.Option(help="Only this metric (e.g. accuracy).")] = None,
          dataset: Annotated[str | None, typer.Option(help="Only this dataset.")] = None,
          paper: Annotated[bool, typer.Option("--paper", help=(
              "Put the paper's own numbers (Tables 1-5) beside ours, only where ours were measured the paper's way "
              "(AgeDB: --protocol authors; TinyFace: its aligned layout, not tinyface\\[native])."))] = False) -> None:
    """results.csv as paper-style tables, methods x scales, mean ± std over runs (like Tables 1-5).

    Example: fskd analyze table --results results.csv --out reports/table --paper
    """
    from ..analyze.table import results_table

    md = results_table(results, out, metric=metric, dataset=dataset, paper=paper)
    typer.echo(md)
    console.print(f"[green]{out.with_suffix('.md')}[/], {out.with_suffix('.csv')}")


@analyze_app.command("compare")
def compare(results: Annotated[Path, typer.Option(help="results.csv written by `fskd eval`.")] = Path("results.csv"),
            baseline: Annotated[str, typer.Option(help="The method every other is compared with, as the table names it "
                                                       "(base, fitnet, 'f-skd +Dec', ...).")] = "base",
            out: Annotated[Path, typer.Option(help="Output path without suffix; .md, .csv, _pairs.csv and _*.png are "
                                                   "written.")] = Path("reports/compare"),
            metric: Annotated[str | None, typer.Option(help="Only this metric (e.g. accuracy).")] = None,
            dataset: Annotated[str | None, typer.Option(help="Only this dataset label (e.g. 'agedb[authors]').")] = None
            ) -> None:
    """Each method against --baseline, paired by seed (and teacher): mean difference, 95 % CI, paired t-test p,
    n pairs, and a figure of the per-seed differences; fewer than 3 pairs is 'not possible'.

    Example: fskd analyze compare --results runs/demo/results.csv --baseline base --out runs/demo/reports/compare
    """
    from ..analyze.compare import compare_results

    done = compare_results(results, out, baseline=baseline, metric=metric, dataset=dataset)
    typer.echo(done.page)
    console.print(f"[green]{done.files[0]}[/], " + ", ".join(str(f) for f in done.files[1:]))
