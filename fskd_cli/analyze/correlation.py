"""``fskd analyze correlation``: per block, pixel-level Pearson r between the teacher's HR features and
the student's LR features of the same images (paper Figure 5: 1,000 random test images)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from ..core.io import write_csv
from .features import load_models, paired_features, sample_rows
from .figures import correlation_scatter
from .stats import RunningPearson

SCATTER_POINTS = 4000  # per block and student, drawn uniformly from all feature elements


def analyze_correlation(teacher: Path, students: list[Path], data: str, scale: int, out: Path, *,
                        split: str | None = "test", n_images: int = 1000, seed: int = 0, device: str = "cpu") -> dict:
    t_ck, s_cks = load_models(teacher, students)
    n_used = len(sample_rows(data, split, n_images, seed))  # n_images 0 means all of them
    rows, summary, points, pooled = [], [], {}, {}
    for ck in s_cks:
        stats: list[RunningPearson] = []
        samples: list[list[tuple[np.ndarray, np.ndarray]]] = []
        g = torch.Generator().manual_seed(seed)
        for t_f, s_f, batch_paths in paired_features(t_ck, ck, data, split, scale, n_images, seed, device=device):
            if not stats:
                stats = [RunningPearson() for _ in t_f]
                samples = [[] for _ in t_f]
            for b, (t, s) in enumerate(zip(t_f, s_f)):
                per_image = stats[b].update(t, s)
                rows += [{"image": p, "model": ck["label"], "block": f"B{b + 1}", "r": f"{r:.6g}"}
                         for p, r in zip(batch_paths, per_image.tolist())]
                k = max(1, SCATTER_POINTS * len(batch_paths) // n_used)
                pick = torch.randint(t[0].numel() * len(t), (k,), generator=g)
                samples[b].append((t.flatten()[pick].numpy(), s.flatten()[pick].numpy()))
        pooled[ck["label"]] = [s.r for s in stats]
        points[ck["label"]] = [(np.concatenate([a for a, _ in blk]), np.concatenate([c for _, c in blk])) for blk in samples]
        summary += [{"model": ck["label"], "block": f"B{b + 1}", "pearson_r": f"{r:.6g}", "elements": int(stats[b].n)}
                    for b, r in enumerate(pooled[ck["label"]])]
    out.mkdir(parents=True, exist_ok=True)
    write_csv(out / "correlation.csv", rows, ["image", "model", "block", "r"])
    write_csv(out / "correlation_summary.csv", summary, ["model", "block", "pearson_r", "elements"])
    fig = correlation_scatter(points, pooled, out / "correlation.png",
                              f"Pixel-level Pearson r, teacher (HR) vs student (x{scale} LR) features")
    return {"summary": summary, "figure": str(fig), "csv": str(out / "correlation.csv")}
