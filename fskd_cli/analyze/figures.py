"""Paper-style figures: feature-norm box plots (Figure 4), feature scatter plots (Figure 5),
attention overlays (Figure 3). PNG files, written atomically.

Models are labelled as the paper names them (``HR teacher``, ``Base``, ``FitNet``, ``F-SKD``, ...);
blocks are ``B1``..``B4``; a student whose mean feature norm differs from the teacher's at p < 0.01 is
marked ``***`` (the paper's notation), otherwise ``n.s.``.
"""

from __future__ import annotations

from pathlib import Path

import matplotlib
import numpy as np
from matplotlib.figure import Figure

from ..core.outputs import save_figure
from .paper import method_name
from .stats import stars

TEACHER_COLOUR = "#7f7f7f"
STUDENT_COLOURS = matplotlib.colormaps["tab10"](np.arange(10))


def _label(model: str) -> str:
    """Paper name of a model label; run names (two runs of one method) are kept as they are."""
    return method_name(model)


def norm_boxplot(norms: dict[str, list[np.ndarray]], pvalues: dict[str, list[float]], path: str | Path,
                 title: str) -> Path:
    """Figure 4: one panel per block B1..Bn, a box per model (teacher first); '***' over a student when p < 0.01."""
    labels = list(norms)
    n_blocks = len(next(iter(norms.values())))
    fig = Figure(figsize=(2.2 + 0.55 * len(labels) * n_blocks, 3.8))
    axes = fig.subplots(1, n_blocks, squeeze=False)
    colours = [TEACHER_COLOUR if m == "teacher" else STUDENT_COLOURS[i % 10] for i, m in enumerate(labels)]
    for b, ax in enumerate(axes[0]):
        data = [norms[m][b] for m in labels]
        box = ax.boxplot(data, patch_artist=True, showfliers=False, widths=0.6,
                         medianprops={"color": "black", "linewidth": 1.2})
        for patch, c in zip(box["boxes"], colours, strict=True):
            patch.set_facecolor(c)
            patch.set_alpha(0.75)
        low = min(np.percentile(d, 1) for d in data)
        top = max(max(w.get_ydata().max() for w in box["whiskers"]), max(np.max(d) for d in data))
        span = top - low or abs(top) or 1.0
        for i, m in enumerate(labels):
            if m in pvalues:
                mark = stars(pvalues[m][b])
                ax.text(i + 1, top + 0.06 * span, mark, ha="center", va="bottom",
                        fontsize=12 if mark == "***" else 8, fontweight="bold" if mark == "***" else "normal")
        ax.set_ylim(bottom=max(0.0, low - 0.08 * span) if low >= 0 else low - 0.08 * span, top=top + 0.22 * span)
        ax.set_xticks(range(1, len(labels) + 1), [_label(m) for m in labels], rotation=35, ha="right")
        ax.set_title(f"B{b + 1}", fontweight="bold")
        ax.grid(axis="y", alpha=0.3)
        if b == 0:
            ax.set_ylabel(r"Feature norm $\|\mathbf{f}\|_2$")
    fig.suptitle(title)
    fig.tight_layout()
    return save_figure(fig, path, dpi=130)


def correlation_scatter(points: dict[str, list[tuple[np.ndarray, np.ndarray]]], r: dict[str, list[float]],
                        path: str | Path, title: str) -> Path:
    """Figure 5: a row per student, a column per block B1..Bn; teacher-HR feature value (x) against the
    student-LR value (y) at the same position, with Pearson's r and the least-squares line."""
    students = list(points)
    n_blocks = len(next(iter(points.values())))
    fig = Figure(figsize=(2.9 * n_blocks, 2.7 * len(students) + 0.4))
    axes = fig.subplots(len(students), n_blocks, squeeze=False)
    for i, m in enumerate(students):
        colour = STUDENT_COLOURS[(i + 1) % 10]
        for b in range(n_blocks):
            ax = axes[i][b]
            x, y = (np.asarray(v, dtype=np.float64) for v in points[m][b])
            ax.scatter(x, y, s=1.5, alpha=0.25, color=colour, rasterized=True, linewidths=0)
            if len(x) > 1 and np.ptp(x) > 0:
                slope, icept = np.polyfit(x, y, 1)
                xs = np.array([x.min(), x.max()])
                ax.plot(xs, slope * xs + icept, color="black", linestyle="--", linewidth=1)
            ax.text(0.04, 0.95, f"r = {r[m][b]:.2f}", transform=ax.transAxes, va="top", ha="left", fontsize=10,
                    bbox={"boxstyle": "round,pad=0.25", "facecolor": "white", "alpha": 0.85, "edgecolor": "0.7"})
            ax.tick_params(labelsize=7)
            if i == 0:
                ax.set_title(f"B{b + 1}", fontweight="bold")
            if i == len(students) - 1:
                ax.set_xlabel("HR network feature (teacher)", fontsize=9)
            if b == 0:
                ax.set_ylabel(f"{_label(m)}\nLR network feature", fontsize=9)
    fig.suptitle(title)
    fig.tight_layout()
    return save_figure(fig, path, dpi=130)


def attention_grid(images: list[list[np.ndarray]], maps: list[list[np.ndarray | None]], columns: list[str],
                   row_labels: list[str], path: str | Path, title: str, alpha: float = 0.5) -> Path:
    """Figure 3: a row per face, a column per input or model; a model's column shows its attention map
    (values in [0, 1], red high, blue low) over the image that model sees.

    ``images[i][j]`` is an ``H x W x 3`` uint8 image; ``maps[i][j]`` is ``None`` for a plain image column.
    """
    n_rows, n_cols = len(images), len(columns)
    fig = Figure(figsize=(1.75 * n_cols + 0.6, 1.8 * n_rows + 0.5))
    axes = fig.subplots(n_rows, n_cols, squeeze=False)
    mappable = None
    for i in range(n_rows):
        for j in range(n_cols):
            ax = axes[i][j]
            image = images[i][j]
            ax.imshow(image, interpolation="bilinear")
            if maps[i][j] is not None:
                h, w = image.shape[:2]
                mappable = ax.imshow(maps[i][j], cmap="jet", vmin=0.0, vmax=1.0, alpha=alpha,
                                     extent=(-0.5, w - 0.5, h - 0.5, -0.5),
                                     interpolation="bilinear")
            ax.set_xticks([])
            ax.set_yticks([])
            if i == 0:
                ax.set_title(columns[j], fontsize=9, fontweight="bold")
            if j == 0:
                ax.set_ylabel(row_labels[i], fontsize=7)
    fig.suptitle(title, fontsize=10)
    fig.tight_layout(rect=(0, 0, 0.93, 1))
    if mappable is not None:  # the colour scale itself, opaque, not the see-through overlay
        cax = fig.add_axes((0.945, 0.15, 0.015, 0.7))
        scale = matplotlib.cm.ScalarMappable(norm=matplotlib.colors.Normalize(0.0, 1.0), cmap="jet")
        bar = fig.colorbar(scale, cax=cax)
        bar.set_label("attention (0 = low, 1 = high)", fontsize=8)
        bar.ax.tick_params(labelsize=7)
    return save_figure(fig, path, dpi=130)
