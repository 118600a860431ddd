"""Teacher-on-HR and student-on-LR block features of the same images, batch by batch."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import torch
from rich.progress import Progress

from ..data.dataset import PairDataset, eval_batches, to_input
from ..data.manifest import read_manifest
from ..core.errors import FskdError
from ..core.scale import Scale
from ..models.tap import FeatureTap
from ..core.checkpoint import build_model, load_checkpoint


def model_label(ck: dict[str, Any]) -> str:
    return "teacher" if ck["kind"] == "teacher" else str(ck.get("method"))


def load_models(teacher: Path, students: list[Path]) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """The teacher's and the students' checkpoints, checked to be distilled at the same feature layers."""
    t_ck = load_checkpoint(teacher, kind="teacher")
    s_cks = [load_checkpoint(s, kind="student") for s in students]
    if not s_cks:
        raise FskdError("name at least one student with --ckpt")
    labels = [model_label(c) for c in s_cks]
    for c in s_cks:  # two runs of one method: tell them apart by run name
        if labels.count(model_label(c)) > 1:
            c["label"] = Path(c["path"]).parent.name
        else:
            c["label"] = model_label(c)
    t_ck["label"] = "teacher"
    return t_ck, s_cks


def sample_rows(data: str, split: str | None, n: int, seed: int):
    rows = read_manifest(data, split=split)
    if n and n < len(rows):
        g = torch.Generator().manual_seed(seed)
        rows = [rows[i] for i in sorted(torch.randperm(len(rows), generator=g)[:n].tolist())]
    return rows


def paired_features(t_ck: dict[str, Any], s_ck: dict[str, Any], data: str, split: str | None, scale: int,
                    n_images: int, seed: int, batch_size: int = 64, device: str = "cpu"
                    ) -> Iterator[tuple[list[torch.Tensor], list[torch.Tensor], list[str]]]:
    """Yield per batch: teacher features on HR, student features on LR (``scale``), image paths."""
    rows = sample_rows(data, split, n_images, seed)
    ds = PairDataset(data, split or "", Scale.parse(scale).factors, cache=False, rows=rows)
    (teacher, _), (student, _) = build_model(t_ck), build_model(s_ck)
    teacher, student = teacher.to(device), student.to(device)
    t_tap, s_tap = FeatureTap(teacher, teacher.feature_layers), FeatureTap(student, student.feature_layers)
    try:
        with torch.inference_mode(), Progress(transient=True) as progress:
            task = progress.add_task(f"features {s_ck['label']}", total=len(ds))
            for keys in eval_batches(len(ds), batch_size, scale):
                hr, lr, _, _ = ds.__getitems__(keys)
                teacher(to_input(hr, device))
                student(to_input(lr, device))
                yield ([f.float().cpu() for f in t_tap.features], [f.float().cpu() for f in s_tap.features],
                       [rows[k[0]].path for k in keys])
                progress.advance(task, len(keys))
    finally:
        t_tap.remove()
        s_tap.remove()


def per_image_norms(feats: list[torch.Tensor]) -> list[torch.Tensor]:
    return [f.flatten(1).norm(dim=1) for f in feats]

