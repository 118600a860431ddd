"""Paper-style figures: feature-norm box plots (Figure 4), feature scatter plots (Figure 5),
attention overlays (Figure 3). PNG files, written atomically."""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from ..io import atomic_path  # noqa: E402


def save_figure(fig: plt.Figure, path: str | Path) -> Path:
    path = Path(path)
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=130, bbox_inches="tight")
    plt.close(fig)
    return path


def norm_boxplot(norms: dict[str, list[np.ndarray]], pvalues: dict[str, list[float]], path: str | Path,
                 title: str) -> Path:
    """One panel per block B1..Bn: a box per model (teacher first); '***' over a student when p < 0.01."""
    labels = list(norms)
    n_blocks = len(next(iter(norms.values())))
    fig, axes = plt.subplots(1, n_blocks, figsize=(3.2 * n_blocks, 3.6), squeeze=False)
    colours = plt.cm.tab10(np.arange(len(labels)))
    for b, ax in enumerate(axes[0]):
        data = [norms[m][b] for m in labels]
        box = ax.boxplot(data, patch_artist=True, showfliers=False, widths=0.6)
        for patch, c in zip(box["boxes"], colours):
            patch.set_facecolor(c)
            patch.set_alpha(0.6)
        top = max(np.percentile(d, 99) for d in data)
        for i, m in enumerate(labels):
            if m in pvalues:
                p = pvalues[m][b]
                ax.text(i + 1, top * 1.04, "***" if p < 0.01 else "n.s.", ha="center", fontsize=10)
        ax.set_ylim(top=top * 1.15)
        ax.set_xticks(range(1, len(labels) + 1), labels, rotation=30, ha="right")
        ax.set_title(f"B{b + 1}")
        if b == 0:
            ax.set_ylabel("feature norm ||f||_2")
    fig.suptitle(title)
    fig.tight_layout()
    return save_figure(fig, path)


def correlation_scatter(points: dict[str, list[tuple[np.ndarray, np.ndarray]]], r: dict[str, list[float]],
                        path: str | Path, title: str) -> Path:
    """A row per student, a panel per block: teacher-HR feature value (x) against student-LR value (y)."""
    students = list(points)
    n_blocks = len(next(iter(points.values())))
    fig, axes = plt.subplots(len(students), n_blocks, figsize=(3 * n_blocks, 2.9 * len(students)), squeeze=False)
    for i, m in enumerate(students):
        for b in range(n_blocks):
            ax = axes[i][b]
            x, y = points[m][b]
            ax.scatter(x, y, s=2, alpha=0.3, rasterized=True)
            ax.set_title(f"{m} B{b + 1}: r = {r[m][b]:.2f}", fontsize=9)
            if i == len(students) - 1:
                ax.set_xlabel("teacher (HR) feature")
            if b == 0:
                ax.set_ylabel("student (LR) feature")
    fig.suptitle(title)
    fig.tight_layout()
    return save_figure(fig, path)
