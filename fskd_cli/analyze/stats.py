"""The paper's two statistics (Section 3.3), in forms that work on data too big to hold at once."""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch
from scipy import stats

from .options import T_TESTS


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


def stars(p: float | None) -> str:
    """The paper's Figure 4 marks p < 0.01 with three stars; otherwise 'n.s.'; '' where no test was possible."""
    if p is None or not math.isfinite(p):
        return ""
    return "***" if p < 0.01 else "n.s."


P_FLOOR = 1e-300  # below this a double holds no trustworthy p-value (it underflows to 0 at about 1e-308)


def format_p(p: float | None, *, bare: bool = False) -> str:
    """A p-value as fskd writes it everywhere (CSV, console, report): ``p = 0.0123``, ``p = 4.56e-12``, and
    ``p < 1e-300`` where it underflows (a printed ``p = 0`` would claim certainty); '' where no test was
    possible, ``p = n/a`` where the test is undefined (NaN: e.g. every paired difference equal, no spread to test
    against). ``bare`` drops the ``p`` for a CSV cell (``0.0123``, ``< 1e-300``); :func:`parse_p` reads it back."""
    if p is None or math.isinf(p):
        return ""
    if math.isnan(p):
        return "n/a" if bare else "p = n/a"
    if p < P_FLOOR:
        return f"< {P_FLOOR:.0e}" if bare else f"p < {P_FLOOR:.0e}"
    return f"{p:.3g}" if bare else f"p = {p:.3g}"


def parse_p(text: str | None) -> float | None:
    """A p-value cell written by :func:`format_p` (``bare``), or an older plain number; ``None`` when empty."""
    text = (text or "").strip()
    if not text:
        return None
    return 0.0 if text.startswith("<") else float("nan") if text == "n/a" else float(text)


def nonfinite_images(features: torch.Tensor) -> int:
    """How many images (first axis) of ``features`` hold an inf or NaN: an untrained network's features can
    overflow float32, a finding to report, not an error."""
    return int((~torch.isfinite(features.flatten(1))).any(1).sum())


def nonfinite_warning(model: str, counts: dict[str, tuple[int, int]], where: str) -> str | None:
    """One line naming ``model`` and its blocks whose features are not finite (``counts``: block -> (non-finite
    images, images)), saying where they stay (``where``); ``None`` when every feature is finite."""
    bad = [f"{block} ({n} of {total} images)" for block, (n, total) in counts.items() if n]
    if not bad:
        return None
    return f"{model}: features not finite (inf or NaN) in block {', '.join(bad)}; {where}"


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
