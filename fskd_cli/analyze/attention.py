"""``fskd analyze attention``: the paper's Figure 3, self-attention maps of the first block.

Following Section 5.1 (after Zagoruyko & Komodakis): a block's features ``[C, H, W]`` are averaged over
the channels and the resulting ``H x W`` map is min-max normalised to [0, 1] per image and model. The
HR teacher's map is computed on the HR face, each student's on its LR copy; each is drawn over the
image its network saw (red = high, blue = low), faces as rows, networks as columns.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from ..data.dataset import PairDataset, to_input
from ..data.manifest import read_manifest
from ..core.errors import FskdError
from ..core.io import write_csv
from ..models.tap import FeatureTap
from ..core.checkpoint import build_model
from .features import load_models, sample_rows
from .figures import attention_grid
from .paper import method_name


def attention_map(features: torch.Tensor) -> torch.Tensor:
    """``[B, C, H, W]`` features -> ``[B, H, W]`` channel means, each min-max normalised to [0, 1].

    A constant map (no variation to show) becomes all zeros instead of NaN.
    """
    a = features.float().mean(dim=1)
    flat = a.flatten(1)
    low, high = flat.min(dim=1).values, flat.max(dim=1).values
    span = (high - low).clamp_min(torch.finfo(torch.float32).tiny)
    out = (a - low[:, None, None]) / span[:, None, None]
    return torch.where((high - low)[:, None, None] > 0, out, torch.zeros_like(out))


@torch.inference_mode()
def _maps(ck: dict[str, Any], images: torch.Tensor, block: int, device: str) -> tuple[np.ndarray, np.ndarray]:
    """Normalised attention maps ``[B, H, W]`` of ``block`` (1-based) and the raw channel-mean range per image."""
    model, _ = build_model(ck)
    model = model.to(device)
    layers = list(model.feature_layers)
    if not 1 <= block <= len(layers):
        raise FskdError(f"{ck['path']}: --block must be 1..{len(layers)}, got {block}")
    tap = FeatureTap(model, [layers[block - 1]])
    try:
        model(to_input(images, torch.device(device)))
        feats = tap.features[0].float().cpu()
    finally:
        tap.remove()
    raw = feats.mean(dim=1).flatten(1)
    return attention_map(feats).numpy(), torch.stack([raw.min(1).values, raw.max(1).values], 1).numpy()


def analyze_attention(teacher: Path, students: list[Path], data: str, scale: int, out: Path, *,
                      split: str | None = None, n_images: int = 4, seed: int = 0, images: list[str] | None = None,
                      block: int = 1, device: str = "cpu") -> dict[str, Any]:
    """Write ``attention.png`` (Figure 3) and ``attention.csv`` (which images; each map's raw range)."""
    t_ck, s_cks = load_models(teacher, students)
    rows = _choose_rows(data, split, n_images, seed, images)
    ds = PairDataset(data, split or "", (scale,), cache=False, rows=rows)
    hr, lr, _, _ = ds.__getitems__([(i, False, scale) for i in range(len(rows))])
    size = getattr(build_model(t_ck)[0], "input_size", None)
    if size and hr.shape[-1] != size:
        raise FskdError(f"{t_ck['path']}: takes {size}px inputs, but {data} holds {hr.shape[-1]}px images")

    models = [(t_ck, hr, "teacher")] + [(ck, lr, ck["label"]) for ck in s_cks]
    maps, ranges, csv_rows = {}, {}, []
    for ck, x, label in models:
        maps[label], ranges[label] = _maps(ck, x, block, device)
        csv_rows += [{"image": r.path, "model": label, "input": "HR" if label == "teacher" else f"x{scale} LR",
                      "block": f"B{block}", "raw_min": f"{lo:.6g}", "raw_max": f"{hi:.6g}"}
                     for r, (lo, hi) in zip(rows, ranges[label])]

    to_np = lambda t: t.permute(1, 2, 0).numpy()  # noqa: E731
    columns = ["HR input", f"LR input (x{scale})", "HR network\n(teacher)"] + [
        f"LR network\n{method_name(label)}" for _, _, label in models[1:]]
    grid_images, grid_maps = [], []
    for i in range(len(rows)):
        grid_images.append([to_np(hr[i]), to_np(lr[i]), to_np(hr[i])] + [to_np(lr[i])] * len(s_cks))
        grid_maps.append([None, None] + [_upsample(maps[label][i], hr.shape[-2:]) for _, _, label in models])
    out.mkdir(parents=True, exist_ok=True)
    write_csv(out / "attention.csv", csv_rows, ["image", "model", "input", "block", "raw_min", "raw_max"])
    fig = attention_grid(grid_images, grid_maps, columns, [_face_name(r.path) for r in rows], out / "attention.png",
                         f"Self-attention maps of block B{block} (channel mean, normalised to [0, 1]); "
                         f"HR teacher vs x{scale} LR students")
    return {"figure": str(fig), "csv": str(out / "attention.csv"), "images": [r.path for r in rows]}


def _choose_rows(data: str, split: str | None, n_images: int, seed: int, images: list[str] | None):
    """The manifest rows named by ``images`` (in that order), or ``n_images`` drawn at random."""
    if images:
        by_path = {r.path: r for r in read_manifest(data)}
        missing = [p for p in images if p not in by_path]
        if missing:
            raise FskdError(f"{Path(data) / 'manifest.csv'}: no usable image {missing[0]!r} (give paths as in the manifest)")
        return [by_path[p] for p in images]
    if n_images < 1:
        raise FskdError(f"--images must be at least 1, got {n_images}")
    rows = sample_rows(data, split, n_images, seed)
    if not rows:
        raise FskdError(f"{Path(data) / 'manifest.csv'}: no usable images in split {split!r}")
    return rows


def _face_name(path: str) -> str:
    """``images/hr/Abel/0001.png`` -> ``Abel/0001``: the row label of a face."""
    return str(Path(path.partition("images/hr/")[2] or path).with_suffix(""))


def _upsample(a: np.ndarray, size: torch.Size) -> np.ndarray:
    """A block's low-resolution map enlarged (bilinear) to the image size, still in [0, 1]."""
    t = torch.from_numpy(a)[None, None]
    return F.interpolate(t, size=tuple(size), mode="bilinear", align_corners=False)[0, 0].clamp(0, 1).numpy()
