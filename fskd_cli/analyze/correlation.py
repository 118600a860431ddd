"""``fskd analyze correlation``: per block, pixel-level Pearson r between the teacher's HR features and
the student's LR features of the same images (paper Figure 5: 1,000 random test images)."""

from __future__ import annotations

import numpy as np
import torch

from ..core.io import write_csv
from .features import Member, Study, paired_features
from .figures import correlation_scatter
from .stats import RunningPearson

SCATTER_POINTS = 4000  # per block and student, drawn uniformly from all feature elements


def analyze_correlation(study: Study, *, n_images: int = 1000, seed: int = 0) -> dict:
    """Write ``correlation.csv`` (per image), ``correlation_summary.csv`` (pooled r per block) and the scatter PNG."""
    rows = study.rows(n_images, seed)
    per_image, summary, points, pooled = [], [], {}, {}
    for member in study.students:
        stats, samples = _student_correlation(study, member, rows, seed, per_image)
        pooled[member.label] = [s.r for s in stats]
        points[member.label] = [(np.concatenate([a for a, _ in blk]), np.concatenate([c for _, c in blk])) for blk in samples]
        summary += [{"model": member.label, "block": f"B{b + 1}", "pearson_r": f"{r:.6g}", "elements": int(stats[b].n)}
                    for b, r in enumerate(pooled[member.label])]
    write_csv(study.out / "correlation.csv", per_image, ["image", "model", "block", "r"])
    write_csv(study.out / "correlation_summary.csv", summary, ["model", "block", "pearson_r", "elements"])
    fig = correlation_scatter(points, pooled, study.out / "correlation.png",
                              f"Pixel-level Pearson r, teacher (HR) vs student (x{study.scale} LR) features")
    return {"summary": summary, "figure": str(fig), "csv": str(study.out / "correlation.csv")}


def _student_correlation(study: Study, member: Member, rows: list, seed: int, per_image: list[dict]
                         ) -> tuple[list[RunningPearson], list[list[tuple[np.ndarray, np.ndarray]]]]:
    """One student's running r per block (per-image r appended to ``per_image``) and its scatter samples."""
    stats: list[RunningPearson] = []
    samples: list[list[tuple[np.ndarray, np.ndarray]]] = []
    g = torch.Generator().manual_seed(seed)
    for t_f, s_f, batch_paths in paired_features(study, member, rows):
        if not stats:
            stats, samples = [RunningPearson() for _ in t_f], [[] for _ in t_f]
        for b, (t, s) in enumerate(zip(t_f, s_f, strict=True)):
            r_images = stats[b].update(t, s)
            per_image += [{"image": p, "model": member.label, "block": f"B{b + 1}", "r": f"{r:.6g}"}
                          for p, r in zip(batch_paths, r_images.tolist(), strict=True)]
            k = max(1, SCATTER_POINTS * len(batch_paths) // len(rows))
            pick = torch.randint(t[0].numel() * len(t), (k,), generator=g)
            samples[b].append((t.flatten()[pick].numpy(), s.flatten()[pick].numpy()))
    return stats, samples
