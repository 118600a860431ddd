"""``fskd analyze correlation``: per block, pixel-level Pearson r between the teacher's HR features and
the student's LR features of the same images (paper Figure 5: 1,000 random test images).

Features that are inf or NaN (an untrained network overflowing float32) make r undefined: the CSVs keep
``nan`` there, the scatter plot draws the finite points with a note, and the result carries one warning
line per model naming the blocks.
"""

from __future__ import annotations

import numpy as np
import torch

from ..core.errors import FskdError
from ..core.io import write_csv
from .features import Member, Study, paired_features
from .figures import correlation_scatter
from .stats import RunningPearson, nonfinite_images, nonfinite_warning

SCATTER_POINTS = 4000  # per block and student, drawn uniformly from all feature elements


def analyze_correlation(study: Study, *, n_images: int = 1000, seed: int = 0) -> dict:
    """Write ``correlation.csv`` (per image), ``correlation_summary.csv`` (pooled r per block) and the scatter PNG."""
    rows = study.rows(n_images, seed)
    per_image, summary, points, pooled, nonfinite = [], [], {}, {}, {}
    for member in study.students:
        stats, samples, (t_bad, s_bad) = _student_correlation(study, member, rows, seed, per_image)
        nonfinite.setdefault("teacher", t_bad)
        nonfinite[member.label] = s_bad
        pooled[member.label] = [s.r for s in stats]
        points[member.label] = [(np.concatenate([a for a, _ in blk]), np.concatenate([c for _, c in blk])) for blk in samples]
        summary += [{"model": member.label, "block": f"B{b + 1}", "pearson_r": f"{r:.6g}", "elements": int(stats[b].n)}
                    for b, r in enumerate(pooled[member.label])]
    write_csv(study.out / "correlation.csv", per_image, ["image", "model", "block", "r"])
    write_csv(study.out / "correlation_summary.csv", summary, ["model", "block", "pearson_r", "elements"])
    fig = correlation_scatter(points, pooled, study.out / "correlation.png",
                              f"Pixel-level Pearson r, teacher (HR) vs student (x{study.scale} LR) features")
    warnings = [nonfinite_warning(model, {f"B{b + 1}": (n, len(rows)) for b, n in enumerate(bad)},
                                  "r is nan there in the CSVs; correlation.png draws the finite points")
                for model, bad in nonfinite.items()]
    return {"summary": summary, "figure": str(fig), "csv": str(study.out / "correlation.csv"),
            "warnings": [w for w in warnings if w]}


def _student_correlation(study: Study, member: Member, rows: list, seed: int, per_image: list[dict]
                         ) -> tuple[list[RunningPearson], list[list[tuple[np.ndarray, np.ndarray]]], tuple[list[int], list[int]]]:
    """One student's running r per block (per-image r appended to ``per_image``), its scatter samples, and
    per block how many images had non-finite features (teacher's, student's)."""
    stats: list[RunningPearson] = []
    samples: list[list[tuple[np.ndarray, np.ndarray]]] = []
    t_bad: list[int] = []
    s_bad: list[int] = []
    g = torch.Generator().manual_seed(seed)
    for t_f, s_f, batch_paths in paired_features(study, member, rows):
        if not stats:
            _check_paired_shapes(study, member, t_f, s_f)
            stats, samples = [RunningPearson() for _ in t_f], [[] for _ in t_f]
            t_bad, s_bad = [0] * len(t_f), [0] * len(t_f)
        for b, (t, s) in enumerate(zip(t_f, s_f, strict=True)):
            r_images = stats[b].update(t, s)
            t_bad[b] += nonfinite_images(t)
            s_bad[b] += nonfinite_images(s)
            per_image += [{"image": p, "model": member.label, "block": f"B{b + 1}", "r": f"{r:.6g}"}
                          for p, r in zip(batch_paths, r_images.tolist(), strict=True)]
            k = max(1, SCATTER_POINTS * len(batch_paths) // len(rows))
            pick = torch.randint(t[0].numel() * len(t), (k,), generator=g)
            samples[b].append((t.flatten()[pick].numpy(), s.flatten()[pick].numpy()))
    return stats, samples, (t_bad, s_bad)


def _check_paired_shapes(study: Study, member: Member, t_f: list[torch.Tensor], s_f: list[torch.Tensor]) -> None:
    """Pixel-level r pairs the teacher's and the student's feature elements one to one, so each block's features
    must have one shape: a ``--teacher`` of another architecture is named in one line, not a tensor error."""
    t_shapes, s_shapes = [tuple(t.shape[1:]) for t in t_f], [tuple(f.shape[1:]) for f in s_f]
    if t_shapes != s_shapes:
        differ = [f"B{b + 1} {'x'.join(map(str, t))} vs {'x'.join(map(str, f))}"
                  for b, (t, f) in enumerate(zip(t_shapes, s_shapes, strict=False)) if t != f]
        shown = ", ".join(differ) or f"{len(t_shapes)} vs {len(s_shapes)} blocks"
        raise FskdError(f"{study.teacher.checkpoint.path}: its block features do not have the shapes of student "
                        f"{member.checkpoint.path}'s (teacher vs student: {shown}); pixel-level correlation pairs "
                        "them element by element: give the teacher the student was distilled from, or one of its "
                        "architecture")
