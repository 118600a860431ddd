"""``fskd analyze norms|correlation|attention|table``: the paper's statistics, figures and tables."""

from __future__ import annotations

from enum import Enum
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console

analyze_app = typer.Typer(help="Feature statistics, figures and tables (paper Section 3.3, Figures 3-5, Tables 1-5).",
                          no_args_is_help=True)
console = Console(stderr=True)


class TTest(str, Enum):
    welch = "welch"
    paired = "paired"


Teacher = Annotated[Path, typer.Option(help="Teacher checkpoint (sees HR images).")]
Students = Annotated[list[Path], typer.Option("--ckpt", help="Student checkpoint(s) (see LR images); repeat for several.")]
Data = Annotated[str, typer.Option(help="Prepared dataset folder.")]
Scale = Annotated[int, typer.Option(help="The students' LR scale: 2, 4 or 8.", min=2, max=8)]
Out = Annotated[Path, typer.Option(help="Folder for the CSV and PNG files.")]
Split = Annotated[str, typer.Option(help="Manifest split; 'all' for every usable image.")]
Images = Annotated[int, typer.Option(help="Random images to use (paper Figure 5: 1000); 0 = all.")]
Seed = Annotated[int, typer.Option(help="Seed of the random image choice.")]


def _check_scale(scale: int) -> None:
    from ..core.errors import FskdError

    if scale not in (2, 4, 8):
        raise FskdError(f"--scale must be 2, 4 or 8, got {scale}")


@analyze_app.command("norms")
def norms(teacher: Teacher, ckpt: Students, data: Data = "data/digits", scale: Scale = 4,
          out: Out = Path("reports/norms"), split: Split = "test", images: Images = 1000, seed: Seed = 0,
          test: Annotated[TTest, typer.Option(help="welch (unpaired, paper Eq. 5) or paired (same images).")] = TTest.welch,
          device: Annotated[str, typer.Option(help="cpu or cuda.")] = "cpu") -> None:
    """Per-block feature norms, teacher-HR vs student-LR, t-test per block, box plot (paper Figure 4).

    Example: fskd analyze norms --teacher runs/t/checkpoint.pt --ckpt runs/s-fskd/checkpoint.pt --ckpt runs/s-fitnet/checkpoint.pt --scale 4
    """
    from ..analyze.norms import analyze_norms

    _check_scale(scale)
    res = analyze_norms(teacher, ckpt, data, scale, out, split=None if split == "all" else split, n_images=images,
                        seed=seed, test=test.value, device=device)
    for r in res["summary"]:
        console.print(f"{r['model']:>12} {r['block']}: mean {float(r['mean']):9.3f}" + (f"  p {r['p']}" if r["p"] else ""))
    console.print(f"[green]{res['figure']}[/], {res['csv']}")


@analyze_app.command("correlation")
def correlation(teacher: Teacher, ckpt: Students, data: Data = "data/digits", scale: Scale = 4,
                out: Out = Path("reports/correlation"), split: Split = "test", images: Images = 1000, seed: Seed = 0,
                device: Annotated[str, typer.Option(help="cpu or cuda.")] = "cpu") -> None:
    """Per-block pixel-level Pearson r, teacher-HR vs student-LR features, scatter plot (paper Figure 5).

    Example: fskd analyze correlation --teacher runs/t/checkpoint.pt --ckpt runs/s-fskd/checkpoint.pt --scale 4
    """
    from ..analyze.correlation import analyze_correlation

    _check_scale(scale)
    res = analyze_correlation(teacher, ckpt, data, scale, out, split=None if split == "all" else split,
                              n_images=images, seed=seed, device=device)
    for r in res["summary"]:
        console.print(f"{r['model']:>12} {r['block']}: r = {float(r['pearson_r']):.3f}")
    console.print(f"[green]{res['figure']}[/], {res['csv']}")


@analyze_app.command("attention")
def attention(teacher: Teacher, ckpt: Students, data: Data = "data/agedb", scale: Scale = 4,
              out: Out = Path("reports/attention"),
              split: Annotated[str, typer.Option(help="Manifest split to draw faces from; 'all' for every usable image.")] = "all",
              images: Annotated[int, typer.Option(help="Random faces to show (one row each).")] = 4,
              image: Annotated[list[str] | None, typer.Option(help="A face to show, by its manifest path; repeat for several "
                                                                    "(overrides --images).")] = None,
              seed: Seed = 0,
              block: Annotated[int, typer.Option(help="Block whose features are shown (paper Figure 3: 1).", min=1)] = 1,
              device: Annotated[str, typer.Option(help="cpu or cuda.")] = "cpu") -> None:
    """Self-attention maps (channel mean of block 1, normalised to [0, 1]) over the faces, HR teacher and
    LR students side by side (paper Figure 3).

    Example: fskd analyze attention --teacher runs/t/checkpoint.pt --ckpt runs/s-base --ckpt runs/s-fitnet --ckpt runs/s-fskd --data data/agedb --scale 4
    """
    from ..analyze.attention import analyze_attention

    _check_scale(scale)
    res = analyze_attention(teacher, ckpt, data, scale, out, split=None if split == "all" else split, n_images=images,
                            seed=seed, images=image, block=block, device=device)
    console.print(f"[green]{res['figure']}[/], {res['csv']} ({len(res['images'])} faces)")


@analyze_app.command("table")
def table(results: Annotated[Path, typer.Option(help="results.csv written by `fskd eval`.")] = Path("results.csv"),
          out: Annotated[Path, typer.Option(help="Output path without suffix; .md and .csv are written.")] = Path("reports/table"),
          metric: Annotated[str | None, typer.Option(help="Only this metric (e.g. accuracy).")] = None,
          dataset: Annotated[str | None, typer.Option(help="Only this dataset.")] = None,
          paper: Annotated[bool, typer.Option("--paper", help="Put the paper's own numbers (Tables 1-5) beside ours.")] = False) -> None:
    """results.csv as paper-style tables, methods x scales, mean ± std over runs (like Tables 1-5).

    Example: fskd analyze table --results results.csv --out reports/table --paper
    """
    from ..analyze.table import results_table

    md = results_table(results, out, metric=metric, dataset=dataset, paper=paper)
    typer.echo(md)
    console.print(f"[green]{out.with_suffix('.md')}[/], {out.with_suffix('.csv')}")
