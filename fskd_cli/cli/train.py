"""``fskd train-teacher`` and ``fskd distill``: both run the one training loop from a recipe.

With no options they chain: ``fskd train-teacher`` trains the default recipe's teacher (the paper's face
settings on data/casia) into ``runs/NAME-teacher-sSEED``, and ``fskd distill --method f-skd --scale 8``
finds it there.

``--method`` takes a name of the distill registry, whose modules import torch: the registry is read when a
method is given or completed, or ``--help`` of these two commands is shown, never for ``fskd --help`` or
another option's error (see :mod:`.choices`).
"""

from __future__ import annotations

import shlex
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console

from ..core.config import DEFAULT_RECIPE, RESUME_SAFE_KEYS
from ..core.scale import Scale
from .choices import help_with, registry_choice

console = Console(stderr=True)


def student_methods() -> list[str]:
    """Every registered distillation method (``fskd distill --method``)."""
    from ..distill import method_names

    return method_names()


def teacher_methods() -> list[str]:
    """The methods a teacher run can train beside its task loss: those that need no teacher of their own."""
    from ..distill import get_distiller_class

    return [name for name in student_methods() if not (get_distiller_class(name).needs_teacher
                                                         or get_distiller_class(name).wants_teacher_checkpoint)]


def methods_help(names: list[str], heading: str = "Methods (--method):") -> str:
    """``names`` with the one-line summary of each, as ``--help`` lists them."""
    from ..distill import get_distiller_class

    width = max(map(len, names))
    return heading + "\n" + "\n".join(f"  {name:<{width}}  {get_distiller_class(name).summary}" for name in names)


# the classes of the two commands: their --help ends with the methods they take, read from the registry then
TrainTeacherCommand = help_with(lambda: methods_help(teacher_methods(), "Auxiliary losses (--method):"))
DistillCommand = help_with(lambda: methods_help(student_methods()))


Recipe = Annotated[str, typer.Option(
    "--recipe", "-r", help="Recipe: a YAML file, or the name of a packaged recipe (under fskd_cli/recipes, .yaml "
    "optional). Default: the paper's face settings. Example: --recipe paper/table1a-f-skd-x8")]
Sets = Annotated[list[str] | None, typer.Option(
    "--set", help="Override any recipe key as KEY=VALUE (the value is read as YAML); repeatable. "
    "Example: --set train.lr=0.05 --set 'model.kwargs={width: 8}'")]
Data = Annotated[str | None, typer.Option(help="Prepared dataset folder (from `fskd prepare`). Example: --data data/casia")]
Seed = Annotated[int | None, typer.Option(help="Random seed (part of the default run folder). Example: --seed 1", min=0)]
Epochs = Annotated[int | None, typer.Option(help="Train this many epochs; the recipe's milestones keep their place as "
                                                 "fractions of the run. Example: --epochs 2", min=1)]
Steps = Annotated[int | None, typer.Option(help="Train this many steps instead (milestones rescaled likewise). "
                                                "Example: --steps 1000", min=1)]
Batch = Annotated[int | None, typer.Option(help="Global batch size. Example: --batch-size 128", min=1)]
Lr = Annotated[float | None, typer.Option(help="Initial learning rate. Example: --lr 0.05")]
Device = Annotated[str | None, typer.Option(help="auto, cpu, cuda or cuda:N. Example: --device cpu")]
Workers = Annotated[int | None, typer.Option(help="DataLoader worker processes. Example: --workers 4", min=0)]
Resume = Annotated[bool, typer.Option(help="Continue the run in --out from its checkpoint; the recipe must be the same "
                                           f"except {', '.join(RESUME_SAFE_KEYS)}.")]
StopAfter = Annotated[int | None, typer.Option(help="Stop (with a checkpoint) after this step, keeping the full run's "
                                                    "schedule; continue later with --resume. Example: --stop-after 500",
                                               min=1)]
Force = Annotated[bool, typer.Option(help="Start over in an --out that holds another run or files fskd did not write.")]


def _overrides(data: str | None, seed: int | None, epochs: int | None, steps: int | None, batch_size: int | None,
               lr: float | None, device: str | None, workers: int | None) -> dict[str, Any]:
    return {"data.path": data, "seed": seed, "train.epochs": epochs, "train.steps": steps,
            "train.batch_size": batch_size, "train.lr": lr, "device": device, "data.workers": workers}


#: the option that sets each recipe key, named when its value is refused
OPTIONS = {"data.path": "--data", "seed": "--seed", "train.epochs": "--epochs", "train.steps": "--steps",
           "train.batch_size": "--batch-size", "train.lr": "--lr", "device": "--device", "data.workers": "--workers",
           "distill.method": "--method", "distill.teacher_method": "--method", "distill.scale": "--scale",
           "distill.teacher": "--teacher", "distill.weight": "--lambda"}


def _resolve(recipe: str, overrides: dict[str, Any], sets: list[str] | None):
    """The run's config, every name a registry holds (methods, models, heads) checked with the recipe."""
    from ..core.config import parse_sets, resolve
    from ..models import model_names
    from ..models.heads import HEADS

    names = {"distill.method": student_methods(), "distill.teacher_method": teacher_methods(),
             "model.name": model_names(), "model.head": list(HEADS)}
    return resolve(recipe, overrides, sets=parse_sets(sets), names=names, options=OPTIONS)


def train_teacher_command(recipe: Recipe = DEFAULT_RECIPE,
                          method: Annotated[str | None, typer.Option(
                              metavar="METHOD", help="An auxiliary loss trained with the teacher, one of those listed "
                              "above; none by default. Example: --method qualnet-decoder",
                              **registry_choice(teacher_methods))] = None,
                          data: Data = None,
                          out: Annotated[Path | None, typer.Option(
                              help="Run folder (default: runs/<recipe name>-teacher-s<seed>, where `fskd distill` "
                                   "looks for its teacher). Example: --out runs/teacher")] = None,
                          set_: Sets = None, seed: Seed = None, epochs: Epochs = None, steps: Steps = None,
                          batch_size: Batch = None, lr: Lr = None, device: Device = None, workers: Workers = None,
                          resume: Resume = False, stop_after: StopAfter = None, force: Force = False) -> None:
    """Train a teacher on the HR images (no distillation).

    Example: fskd train-teacher --recipe digits-demo --data data/digits --out runs/digits-teacher
    """
    from ..train.build import default_out
    from ..train.loop import train

    cfg = _resolve(recipe, {**_overrides(data, seed, epochs, steps, batch_size, lr, device, workers),
                            "distill.teacher_method": method}, set_)
    ckpt = train(cfg, out or default_out(cfg, "teacher"), kind="teacher", resume=resume, stop_after=stop_after,
                 force=force)
    console.print(f"[green]teacher checkpoint:[/] {ckpt}")


def distill_command(method: Annotated[str | None, typer.Option(
                        metavar="METHOD", help="Distillation method, one of those listed above (default: the recipe's). "
                                               "Example: --method f-skd", **registry_choice(student_methods))] = None,
                    scale: Annotated[Scale | None, typer.Option(
                        help="The student's input resolution: 1 (HR), 2, 4, 8 or multi. Example: --scale 8")] = None,
                    teacher: Annotated[Path | None, typer.Option(
                        help="Teacher checkpoint or run folder (default: the run `fskd train-teacher` writes with the "
                             "same recipe and seed). Example: --teacher runs/teacher/checkpoint.pt")] = None,
                    lambda_: Annotated[float | None, typer.Option(
                        "--lambda", help="Distillation weight (paper: 5). Example: --lambda 20", min=0)] = None,
                    recipe: Recipe = DEFAULT_RECIPE, data: Data = None,
                    out: Annotated[Path | None, typer.Option(
                        help="Run folder (default: runs/<recipe name>-<method>-x<scale>-s<seed>). "
                             "Example: --out runs/f-skd-x8")] = None,
                    set_: Sets = None, seed: Seed = None, epochs: Epochs = None, steps: Steps = None,
                    batch_size: Batch = None, lr: Lr = None, device: Device = None, workers: Workers = None,
                    resume: Resume = False, stop_after: StopAfter = None, force: Force = False) -> None:
    """Train a student on LR images, guided by a frozen HR teacher.

    Example: fskd distill --method f-skd --scale 8   (after `fskd train-teacher` with the same recipe)
    """
    from ..train.build import check_weight_given, default_out, default_teacher, needs_teacher
    from ..train.loop import train

    o = _overrides(data, seed, epochs, steps, batch_size, lr, device, workers)
    o.update({"distill.method": method, "distill.scale": scale,
              "distill.teacher": str(teacher) if teacher else None, "distill.weight": lambda_})
    cfg = _resolve(recipe, o, set_)
    if lambda_ is not None:
        check_weight_given(cfg, "--lambda")
    if cfg.distill.teacher is None and needs_teacher(cfg):
        make_it = "fskd train-teacher" + (f" --recipe {recipe}" if recipe != DEFAULT_RECIPE else "")
        make_it += f" --seed {cfg.seed}" + (f" --data {cfg.data.path}" if data else "")
        make_it += "".join(f" --set {shlex.quote(item)}" for item in set_ or [])  # data.path, model.* as given here
        cfg.distill.teacher = str(default_teacher(cfg, make_it))
    ckpt = train(cfg, out or default_out(cfg, "student"), kind="student", resume=resume, stop_after=stop_after,
                 force=force)
    console.print(f"[green]student checkpoint:[/] {ckpt}")

