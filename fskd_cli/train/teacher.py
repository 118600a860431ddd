"""The frozen teacher of a student run, and the checks that it fits the student before training starts."""

from __future__ import annotations

from pathlib import Path

import torch
import yaml
from torch import nn

from ..core.checkpoint import Checkpoint
from ..core.errors import FskdError
from ..distill import Distiller
from ..inference.model import load_model
from ..models.tap import FeatureTap


def load_teacher(path: str | Path, student: nn.Module, device: torch.device) -> tuple[nn.Module, Checkpoint]:
    """A frozen teacher in eval mode and its checkpoint, checked against the student it will guide."""
    teacher = load_model(path, kind="teacher", device=device)
    if teacher.input_size != getattr(student, "input_size", None):
        raise FskdError(f"{path}: teacher takes {teacher.input_size}px inputs, the student {student.input_size}px")
    return teacher.backbone, teacher.checkpoint


def feature_shapes(model: nn.Module, layers: list[str]) -> list[torch.Size]:
    """Per-sample shapes of the outputs of ``layers``, from one dummy forward pass."""
    size = model.input_size
    tap = FeatureTap(model, layers)
    was_training = model.training
    try:
        with torch.no_grad():
            model.eval()(torch.zeros(1, 3, size, size, device=next(model.parameters()).device))
        return [f.shape[1:] for f in tap.features]
    finally:
        tap.remove()
        model.train(was_training)


def check_fit(distiller: Distiller, student: nn.Module, teacher: nn.Module, shapes: tuple[list, list],
              teacher_ck: Checkpoint) -> None:
    """Run the method once on random features of the tapped shapes, so that a teacher whose features do
    not fit the student's fails now, in one line, and not as a shape error deep in the first step."""
    s_shapes, t_shapes = shapes
    g = torch.Generator().manual_seed(0)  # a private generator: the run's random stream is not touched
    device = next(student.parameters()).device

    def rand(*shape: int) -> torch.Tensor:
        return torch.randn(2, *shape, generator=g).to(device)

    size = student.input_size
    batch = {"hr": rand(3, size, size), "labels": torch.zeros(2, dtype=torch.long, device=device),
             "scale": torch.ones(2, device=device), "embedding": rand(student.embedding_size),
             "teacher_embedding": rand(teacher.embedding_size)}
    was_training = distiller.training
    try:
        with torch.no_grad():
            distiller.eval()([rand(*s) for s in s_shapes], [rand(*t) for t in t_shapes], batch)
    except RuntimeError as e:  # a shape mismatch inside the method's loss
        arch = teacher_ck.arch
        kwargs = yaml.safe_dump(dict(arch.kwargs), default_flow_style=True, width=10**6).strip()
        raise FskdError(f"{teacher_ck.path}: the teacher's tapped features {_fmt(t_shapes)} do not fit the student's "
                        f"{_fmt(s_shapes)} for method {distiller.method_name!r} ({str(e).splitlines()[0]}); give the "
                        f"student the teacher's model (--set model.name={arch.name} --set \"model.kwargs={kwargs}\") "
                        "or use a method that maps features (fitnet)") from None
    finally:
        distiller.train(was_training)


def _fmt(shapes: list[torch.Size]) -> str:
    return "[" + ", ".join("x".join(map(str, s)) for s in shapes) + "]"
