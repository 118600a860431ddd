"""``fskd eval BENCHMARK``: evaluate a checkpoint at one scale; write runs/NAME/eval/*.json (+ a ROC or
CMC PNG) and append one row per metric to results.csv. The logic is in :mod:`fskd_cli.evaluate.stage`; the
benchmarks, protocols and LR sources offered are the stage's own (:mod:`fskd_cli.evaluate.benchmarks`)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console

from ..core.device import DEVICE_HELP
from ..core.scale import LR_SOURCES, SINGLE_SCALES, Scale
from ..evaluate.benchmarks import BENCHMARKS, PROTOCOLS
from .choices import one_of

console = Console(stderr=True)

Benchmark = one_of(BENCHMARKS)
Protocol = one_of(PROTOCOLS)
LrSource = one_of(LR_SOURCES)
OneScale = one_of(SINGLE_SCALES)
# how the help names a task, and what a benchmark of that task with no default data folder takes
_TASKS = {"verification": "1:1", "identification": "1:N"}
_ANY_SET = {"verification": "any set with pairs.csv", "identification": "any set with probe/gallery/distractor roles"}


def _benchmarks_help() -> str:
    """The benchmarks by task, from the stage's table: ``digits, svhn (classification); verification (any set with
    pairs.csv), agedb, lfw, cfp-fp (1:1); ...``."""
    by_task: dict[str, list[str]] = {}
    for name, (task, folder) in BENCHMARKS.items():
        by_task.setdefault(task, []).append(name if folder else f"{name} ({_ANY_SET.get(task, '--data needed')})")
    return "; ".join(f"{', '.join(names)} ({_TASKS.get(task, task)})" for task, names in by_task.items()) + "."


PROTOCOL_HELP = (
    "Verification protocol: insightface (arcface_torch: image + mirror summed, L2 distance, first best threshold) "
    "or authors (the F-SKD authors' SphereFace/CosFace code: concatenation, cosine after mean subtraction, mean of "
    "best thresholds). insightface is the default because it is what public face models and most LR papers report "
    "with, so everyday numbers compare with theirs; the paper's own AgeDB figures were made with the authors' "
    "protocol, so use --protocol authors to compare with the paper (`analyze table --paper` only puts like beside like).")
LR_SOURCE_HELP = (
    "How LR test images are made: degrade (default: from the HR image, with the interpolation/antialias the "
    "student was trained with, read from its checkpoint or its training set's meta.yaml; works on HR-only sets) or "
    "disk (the prepared LR files as they are).")


def eval_command(
    benchmark: Annotated[Benchmark, typer.Argument(
        metavar="BENCHMARK", help=_benchmarks_help())],
    ckpt: Annotated[Path, typer.Option(help="Checkpoint (a run's checkpoint.pt or its folder).")],
    scale: Annotated[OneScale, typer.Option(help="Resolution of the test images: 1 (HR, or TinyFace's native), 2, 4 or 8.")
                     ] = Scale.x1,
    data: Annotated[str | None, typer.Option(help="Prepared dataset folder (default: data/<benchmark>; "
                                                  "required for verification/identification).")] = None,
    protocol: Annotated[Protocol | None, typer.Option(help=PROTOCOL_HELP)] = None,
    cross_resolution: Annotated[bool, typer.Option(
        "--cross-resolution", help="Verification: left image HR, right image LR at --scale. Identification: "
                                   "gallery HR, probes LR. (Default: both at --scale, the paper's protocol.)")] = False,
    lr_source: Annotated[LrSource, typer.Option(help=LR_SOURCE_HELP)] = LR_SOURCES[0],
    save_scores: Annotated[Path | None, typer.Option(
        help="Verification: write left,right,same,fold,score per pair to this CSV.")] = None,
    roc: Annotated[Path | None, typer.Option(help="Verification: ROC PNG (default: beside the eval JSON).")] = None,
    cmc: Annotated[Path | None, typer.Option(help="Identification: CMC PNG (default: beside the eval JSON).")] = None,
    flip: Annotated[bool, typer.Option(help="Identification: add the mirror image's embedding to each feature.")] = True,
    split: Annotated[str | None, typer.Option(help="Classification: manifest split to evaluate on (default: test).")] = None,
    results: Annotated[Path, typer.Option(help="CSV that every eval appends one row per figure to.")] = Path("results.csv"),
    device: Annotated[str, typer.Option(help=DEVICE_HELP)] = "auto",
    batch_size: Annotated[int, typer.Option(help="Images per forward pass (verification/identification add "
                                                 "their mirrors to it).", min=1)] = 64,
) -> None:
    """Evaluate a checkpoint on LR (or HR) test images: accuracy, 1:1 verification or 1:N identification.

    Example: fskd eval agedb --ckpt runs/table1a-f-skd-x4 --scale 4 --protocol authors --save-scores scores.csv
    """
    from ..evaluate.stage import evaluate_benchmark

    payload = evaluate_benchmark(
        benchmark, ckpt, scale=scale, data=data, results=results, protocol=protocol, cross_resolution=cross_resolution,
        scores_csv=save_scores, roc_png=roc, cmc_png=cmc, flip=flip, split=split, device=device, batch_size=batch_size,
        lr_source=lr_source)
    console.print(f"[green]{payload['run']}[/] {payload['dataset']} x{payload['scale']}: "
                  + ", ".join(f"{k} {v:.4f}" for k, v in payload["metrics"].items()))
    console.print(f"{payload['json']}" + "".join(f", {payload[k]}" for k in ("roc_png", "cmc_png", "scores_csv")
                                                 if payload.get(k)))
