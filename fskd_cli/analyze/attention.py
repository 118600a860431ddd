"""``fskd analyze attention``: the paper's Figure 3, self-attention maps of the first block.

Two maps of a block's features ``[C, H, W]`` (after Zagoruyko & Komodakis), each min-max normalised to
[0, 1] per image and model for drawing:

- ``squared`` (default, the authors' helper and the Figure 3 recipe): the mean over channels of the
  squared activations, L2-normalised per image (a positive scale, so the drawn map is the same; the
  raw range in attention.csv is that of the normalised map);
- ``signed``: the plain channel mean, where positive and negative activations cancel.

The HR teacher's map is computed on the HR face, each student's on its LR copy (made as it was
trained); each is drawn over the image its network saw, faces as rows, networks as columns.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from ..core.errors import FskdError
from ..core.io import write_csv
from ..data.manifest import Row, read_manifest
from ..models.tap import FeatureTap
from .features import Member, Study
from .figures import attention_grid
from .options import ATTENTION_KINDS
from .paper import method_name
from .stats import nonfinite_warning

CSV_FIELDS = ["image", "model", "input", "block", "attention", "raw_min", "raw_max"]


def attention_map(features: torch.Tensor, kind: str = "squared") -> tuple[torch.Tensor, torch.Tensor]:
    """``[B, C, H, W]`` features -> (``[B, H, W]`` maps min-max normalised to [0, 1], ``[B, 2]`` raw min/max).

    A constant map (no variation to show) becomes all zeros instead of NaN; the map of an image whose
    features hold an inf or NaN is all NaN (nothing to draw; its raw range keeps what was computed).
    """
    if kind not in ATTENTION_KINDS:
        raise ValueError(f"attention must be one of {ATTENTION_KINDS}, got {kind!r}")
    f = features.double()  # squares of large finite float32 activations must not overflow to inf
    a = f.pow(2).mean(dim=1) if kind == "squared" else f.mean(dim=1)
    if kind == "squared":
        a = a / a.flatten(1).norm(dim=1).clamp_min(torch.finfo(torch.float32).tiny)[:, None, None]
    flat = a.flatten(1)
    low, high = flat.min(dim=1).values, flat.max(dim=1).values
    span = (high - low).clamp_min(torch.finfo(torch.float32).tiny)
    out = (a - low[:, None, None]) / span[:, None, None]
    out = torch.where((high - low)[:, None, None] > 0, out, torch.zeros_like(out))
    broken = ~torch.isfinite(f.flatten(1)).all(1)
    out[broken] = float("nan")
    return out.float(), torch.stack([low, high], 1)


@torch.inference_mode()
def _maps(member: Member, images: torch.Tensor, block: int, kind: str, device: torch.device
          ) -> tuple[np.ndarray, np.ndarray]:
    """Attention maps ``[B, H, W]`` of ``block`` (1-based) and each map's raw range ``[B, 2]``."""
    ready = member.model(device)
    model = ready.backbone
    layers = list(model.feature_layers)
    if not 1 <= block <= len(layers):
        raise FskdError(f"{member.checkpoint.path}: --block must be 1..{len(layers)}, got {block}")
    tap = FeatureTap(model, [layers[block - 1]])
    try:
        model(ready.inputs(images))
        maps, ranges = attention_map(tap.features[0].cpu(), kind)
    finally:
        tap.remove()
    return maps.numpy(), ranges.numpy()


def analyze_attention(study: Study, *, n_images: int = 4, seed: int = 0, images: list[str] | None = None,
                      block: int = 1, kind: str = "squared") -> dict[str, Any]:
    """Write ``attention.png`` (Figure 3) and ``attention.csv`` (which images; each map's raw range)."""
    rows = _choose_rows(study, n_images, seed, images)
    hr, lrs = _inputs(study, rows)
    maps, csv_rows, warnings = {}, [], []
    for member, x in [(study.teacher, hr)] + [(m, lrs[m.label]) for m in study.students]:
        maps[member.label], ranges = _maps(member, x, block, kind, study.device)
        lr_word = "HR" if member is study.teacher else f"x{study.scale} LR"
        csv_rows += [{"image": r.path, "model": member.label, "input": lr_word,
                      "block": f"B{block}", "attention": kind, "raw_min": f"{lo:.6g}", "raw_max": f"{hi:.6g}"}
                     for r, (lo, hi) in zip(rows, ranges, strict=True)]
        broken = int(np.isnan(maps[member.label]).all(axis=(1, 2)).sum())
        warnings.append(nonfinite_warning(member.label, {f"B{block}": (broken, len(rows))},
                                          "its raw range is kept in attention.csv; attention.png shows no map there"))
    write_csv(study.out / "attention.csv", csv_rows, CSV_FIELDS)
    fig = _figure(study, rows, hr, lrs, maps, block, kind)
    return {"figure": str(fig), "csv": str(study.out / "attention.csv"), "images": [r.path for r in rows],
            "warnings": [w for w in warnings if w]}


def _inputs(study: Study, rows: list[Row]) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """The HR faces and each student's LR copies of them."""
    def images(member: Member, scale: int) -> tuple[torch.Tensor, torch.Tensor]:
        lowres = study.lowres(member)
        return lowres.batch(lowres.dataset(study.data, rows, scale), range(len(rows)), scale)

    hr = images(study.teacher, 1)[0]  # of the teacher's input size: open_study checked the set
    return hr, {m.label: images(m, study.scale)[1] for m in study.students}


def _figure(study: Study, rows: list[Row], hr: torch.Tensor, lrs: dict[str, torch.Tensor],
            maps: dict[str, np.ndarray], block: int, kind: str) -> Path:
    """The grid: HR input, LR input, then each network's map over the image it saw."""
    def to_np(t: torch.Tensor) -> np.ndarray:
        return t.permute(1, 2, 0).numpy()

    first_lr = next(iter(lrs.values()))
    columns = ["HR input", f"LR input (x{study.scale})", "HR network\n(teacher)"] + [
        f"LR network\n{method_name(label)}" for label in lrs]
    grid_images = [[to_np(hr[i]), to_np(first_lr[i]), to_np(hr[i])] + [to_np(lr[i]) for lr in lrs.values()]
                   for i in range(len(rows))]
    grid_maps = [[None, None] + [_upsample(maps[label][i], hr.shape[-2:]) for label in maps] for i in range(len(rows))]
    what = "mean of squared activations" if kind == "squared" else "channel mean"
    return attention_grid(grid_images, grid_maps, columns, [_face_name(r.path) for r in rows],
                          study.out / "attention.png",
                          f"Self-attention maps of block B{block} ({what}, normalised to [0, 1]); "
                          f"HR teacher vs x{study.scale} LR students")


def _choose_rows(study: Study, n_images: int, seed: int, images: list[str] | None) -> list[Row]:
    """The manifest rows named by ``images`` (in that order), or ``n_images`` drawn at random."""
    if images:
        by_path = {r.path: r for r in read_manifest(study.data)}
        missing = [p for p in images if p not in by_path]
        if missing:
            raise FskdError(f"{Path(study.data) / 'manifest.csv'}: no usable image {missing[0]!r} "
                            "(give paths as in the manifest)")
        return [by_path[p] for p in images]
    if n_images < 1:
        raise FskdError(f"--images must be at least 1, got {n_images}")
    return study.rows(n_images, seed)


def _face_name(path: str) -> str:
    """``images/hr/Abel/0001.png`` -> ``Abel/0001``: the row label of a face."""
    return str(Path(path.partition("images/hr/")[2] or path).with_suffix(""))


def _upsample(a: np.ndarray, size: torch.Size) -> np.ndarray:
    """A block's low-resolution map enlarged (bilinear) to the image size, still in [0, 1]."""
    t = torch.from_numpy(a)[None, None]
    return F.interpolate(t, size=tuple(size), mode="bilinear", align_corners=False)[0, 0].clamp(0, 1).numpy()
