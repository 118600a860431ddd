"""ROC and CMC figures as PNG files, one curve per run or method.

Figures are drawn on a bare :class:`~matplotlib.figure.Figure` with the Agg backend, so they work on
headless machines and leave no pyplot state behind, and they are written atomically so a report never
links to half a PNG.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import Protocol

import matplotlib

matplotlib.use("Agg")

import numpy as np  # noqa: E402
from matplotlib.axes import Axes  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402
from matplotlib.ticker import MaxNLocator  # noqa: E402

from ..core.outputs import save_figure  # noqa: E402


class RocCurve(Protocol):
    """What :func:`plot_roc` reads; a ``VerificationResult`` has it."""

    fpr: np.ndarray
    tpr: np.ndarray
    auc: float


def plot_roc(results: Mapping[str, RocCurve], path: str | os.PathLike, title: str) -> None:
    """One ROC curve per entry, false accept rate on a log axis (where LR methods differ)."""
    fig = Figure(figsize=(6, 4.5))
    ax = fig.subplots()
    smallest = 1.0
    for name, result in results.items():
        fpr, tpr = np.asarray(result.fpr), np.asarray(result.tpr)
        shown = fpr > 0  # log axis: FAR = 0 cannot be drawn
        ax.plot(fpr[shown], tpr[shown], label=f"{name} (AUC = {result.auc:.4f})")
        smallest = min(smallest, fpr[shown].min(initial=1.0))
    ax.set_xscale("log")
    ax.set_xlim(min(smallest, 1e-4), 1.0)
    ax.set_ylim(0.0, 1.01)
    _finish(ax, title, "False accept rate", "True accept rate")
    save_figure(fig, path)


def plot_cmc(results: Mapping[str, np.ndarray], path: str | os.PathLike, title: str) -> None:
    """One CMC curve per entry (``cmc[k - 1]`` = rank-k identification rate)."""
    fig = Figure(figsize=(6, 4.5))
    ax = fig.subplots()
    for name, cmc in results.items():
        cmc = np.asarray(cmc)
        ranks = np.arange(1, len(cmc) + 1)
        ax.plot(ranks, cmc, marker="o", markersize=3, label=f"{name} (rank-1 = {100 * cmc[0]:.2f}%)")
    longest = max((len(c) for c in results.values()), default=1)
    if longest <= 30:  # rank 1 and every 5th: the ranks papers report
        ax.set_xticks([1, *range(5, longest + 1, 5)])
        ax.set_xlim(0.5, longest + 0.5)
    else:
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.set_ylim(0.0, 1.01)
    _finish(ax, title, "Rank", "Identification rate")
    save_figure(fig, path)


def _finish(ax: Axes, title: str, xlabel: str, ylabel: str) -> None:
    """Title, axis labels, grid and legend: the parts every figure shares."""
    ax.set_title(title)
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(loc="lower right", fontsize="small")
