"""The paper's two statistics (Section 3.3), in forms that work on data too big to hold at once."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from scipy import stats

T_TESTS = ("welch", "paired")


def t_test(teacher: np.ndarray, student: np.ndarray, kind: str = "welch") -> tuple[float, float]:
    """``(t, p)`` for 'the mean feature norm of teacher and student are equal'.

    ``welch`` is the two-sample test of the paper's Eq. (5) without assuming equal variances; ``paired``
    uses the fact that both norms come from the same images (teacher on HR, student on its LR copy).
    """
    if kind == "welch":
        r = stats.ttest_ind(teacher, student, equal_var=False)
    elif kind == "paired":
        r = stats.ttest_rel(teacher, student)
    else:
        raise ValueError(f"t-test must be one of {T_TESTS}")
    return float(r.statistic), float(r.pvalue)


def stars(p: float) -> str:
    """The paper's Figure 4 marks p < 0.01 with three stars; otherwise 'n.s.'."""
    return "***" if p < 0.01 else "n.s."


@dataclass
class RunningPearson:
    """Pearson's r (Eq. 6) over all elements of many batches, from running sums in float64.

    ``update`` also returns each image's own r, so per-image values can be written out.
    """

    n: float = 0.0
    sx: float = 0.0
    sy: float = 0.0
    sxx: float = 0.0
    syy: float = 0.0
    sxy: float = 0.0

    def update(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        x, y = x.flatten(1).double(), y.flatten(1).double()
        n = x.shape[1]
        sx, sy = x.sum(1), y.sum(1)
        sxx, syy, sxy = (x * x).sum(1), (y * y).sum(1), (x * y).sum(1)
        self.n += n * x.shape[0]
        self.sx += float(sx.sum())
        self.sy += float(sy.sum())
        self.sxx += float(sxx.sum())
        self.syy += float(syy.sum())
        self.sxy += float(sxy.sum())
        return _r(n, sx, sy, sxx, syy, sxy)

    @property
    def r(self) -> float:
        return float(_r(self.n, torch.tensor(self.sx), torch.tensor(self.sy), torch.tensor(self.sxx),
                        torch.tensor(self.syy), torch.tensor(self.sxy)))


def _r(n, sx, sy, sxx, syy, sxy):
    cov = sxy - sx * sy / n
    vx, vy = sxx - sx * sx / n, syy - sy * sy / n
    return cov / (vx * vy).clamp_min(1e-300).sqrt()


def format_p(p: float) -> str:
    """A p-value as a reader cites it: ``p = 0.41``, ``p = 3.2e-05``; ``p < 1e-300`` where the test's p fell
    below what a float holds (scipy then returns 0, which is not a probability anyone measured), and
    ``p = n/a`` where the test is undefined (e.g. every paired difference equal: no spread to test against)."""
    if p != p:  # NaN
        return "p = n/a"
    if p < 1e-300:
        return "p < 1e-300"
    return f"p = {p:.2g}"
