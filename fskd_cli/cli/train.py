"""``fskd train-teacher`` and ``fskd distill``: both run the one training loop from a recipe."""

from __future__ import annotations

from enum import Enum
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console

console = Console(stderr=True)


class Scale(str, Enum):
    x2 = "2"
    x4 = "4"
    x8 = "8"
    multi = "multi"


Recipe = Annotated[Path, typer.Option("--recipe", "-r", help="YAML recipe; options given here override it.")]
Data = Annotated[str | None, typer.Option(help="Prepared dataset folder (from `fskd prepare`).")]
Out = Annotated[Path | None, typer.Option(help="Run folder (default: runs/<name>-<method>-x<scale>-s<seed>).")]
Seed = Annotated[int | None, typer.Option(help="Random seed.")]
Epochs = Annotated[int | None, typer.Option(help="Train this many epochs; the recipe's milestones keep their place as fractions of the run.")]
Steps = Annotated[int | None, typer.Option(help="Train this many steps instead (milestones rescaled likewise).")]
Batch = Annotated[int | None, typer.Option(help="Global batch size.")]
Lr = Annotated[float | None, typer.Option(help="Initial learning rate.")]
Device = Annotated[str | None, typer.Option(help="auto, cpu or cuda.")]
Workers = Annotated[int | None, typer.Option(help="DataLoader worker processes.")]
Resume = Annotated[bool, typer.Option(help="Continue the run in --out from its checkpoint.")]
StopAfter = Annotated[int | None, typer.Option(help="Stop (with a checkpoint) after this step, keeping the full run's "
                                                    "schedule; continue later with --resume.")]


def _overrides(data: str | None, seed: int | None, epochs: int | None, steps: int | None, batch_size: int | None,
               lr: float | None, device: str | None, workers: int | None) -> dict[str, Any]:
    return {"data.path": data, "seed": seed, "train.epochs": epochs, "train.steps": steps,
            "train.batch_size": batch_size, "train.lr": lr, "device": device, "data.workers": workers}


def _resolve(recipe: Path, overrides: dict[str, Any]):
    from ..core.config import resolve

    return resolve(recipe, overrides)


def train_teacher_command(recipe: Recipe,
                          method: Annotated[str | None, typer.Option(help="An auxiliary loss trained with the teacher "
                                                                          "(e.g. qualnet-decoder); none by default.")] = None,
                          data: Data = None, out: Out = None, seed: Seed = None, epochs: Epochs = None,
                          steps: Steps = None, batch_size: Batch = None, lr: Lr = None, device: Device = None,
                          workers: Workers = None, resume: Resume = False, stop_after: StopAfter = None) -> None:
    """Train a teacher on the HR images (no distillation).

    Example: fskd train-teacher --recipe recipes/digits-demo.yaml --out runs/digits-teacher
    """
    from ..train.loop import train

    cfg = _resolve(recipe, {**_overrides(data, seed, epochs, steps, batch_size, lr, device, workers),
                            "distill.teacher_method": method})
    out = out or Path("runs") / f"{cfg.name}-teacher-s{cfg.seed}"
    ckpt = train(cfg, out, kind="teacher", resume=resume, stop_after=stop_after)
    console.print(f"[green]teacher checkpoint:[/] {ckpt}")


def distill_command(recipe: Recipe, method: Annotated[str | None, typer.Option(help="base, f-skd, fitnet, norm-kd, ...")] = None,
                    scale: Annotated[Scale | None, typer.Option(help="Student's input resolution: 2, 4, 8 or multi.")] = None,
                    teacher: Annotated[Path | None, typer.Option(help="Teacher checkpoint (from `fskd train-teacher`).")] = None,
                    lambda_: Annotated[float | None, typer.Option("--lambda", help="Distillation weight (paper: 5).")] = None,
                    data: Data = None, out: Out = None, seed: Seed = None, epochs: Epochs = None, steps: Steps = None,
                    batch_size: Batch = None, lr: Lr = None, device: Device = None, workers: Workers = None,
                    resume: Resume = False, stop_after: StopAfter = None) -> None:
    """Train a student on LR images, guided by a frozen HR teacher.

    Example: fskd distill --recipe recipes/digits-demo.yaml --method f-skd --scale 4 --teacher runs/digits-teacher/checkpoint.pt
    """
    from ..train.loop import train

    o = _overrides(data, seed, epochs, steps, batch_size, lr, device, workers)
    o.update({"distill.method": method, "distill.scale": scale.value if scale else None,
              "distill.teacher": str(teacher) if teacher else None, "distill.weight": lambda_})
    cfg = _resolve(recipe, o)
    d = cfg.distill
    out = out or Path("runs") / f"{cfg.name}-{d.method}-x{d.scale}-s{cfg.seed}"
    ckpt = train(cfg, out, kind="student", resume=resume, stop_after=stop_after)
    console.print(f"[green]student checkpoint:[/] {ckpt}")
