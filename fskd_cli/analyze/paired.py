"""One method against a baseline over seeds: which runs pair, and the statistics of their differences.

Runs pair by seed: a method's run of seed ``s`` with the baseline's run of seed ``s``. Where both runs
name the teacher checkpoint they were distilled from, the teachers must match too (F-SKD from teacher A
pairs with FitNet from teacher A, never B). A ``base`` student distils from nothing: fskd records no
teacher for it unless its recipe names one, so it pairs by seed alone, which in a study of one teacher
per seed (the Makefile's, where seed ``s`` trains ``sS/teacher`` and every student of seed ``s`` from it)
is the same pairing. Two runs that could pair with the same partner are ambiguous and pair with none;
a run with no partner is named ("fitnet lacks seed 3"), never dropped silently.

The statistics are the paired t-test's (Student 1908): the mean difference ``d̄`` of the ``n`` pairs, its
95 % confidence interval ``d̄ ± t(0.975, n-1) · s_d / √n`` (``s_d`` the standard deviation of the
differences) and ``scipy.stats.ttest_rel``'s two-sided p. Fewer than :data:`MIN_PAIRS` pairs give no
number: with two pairs the interval has one degree of freedom and spans most of any plausible range.
"""

from __future__ import annotations

import math
import os
from collections import Counter
from dataclasses import dataclass, field

import numpy as np
import pandas as pd
from scipy import stats

from .stats import format_p

MIN_PAIRS = 3
LEVEL = 0.95
# differences whose spread is below this, relative to the values, are equal: 0.9 - 0.8 and 0.8 - 0.7 differ by
# float rounding (1e-16), and a t-test on that noise would print p = 1e-31 for "no spread at all"
SAME = 1e-12
MINUS = "\u2212"  # the typographic minus of a signed difference


@dataclass(frozen=True)
class Pair:
    seed: int
    value: float  # the method's
    baseline: float


@dataclass(frozen=True)
class Pairing:
    """The pairs of one comparison, and every run left out with the reason (as a reader would say it)."""

    pairs: list[Pair] = field(default_factory=list)
    unpaired: list[str] = field(default_factory=list)


@dataclass(frozen=True)
class PairedStats:
    n: int
    mean: float  # mean difference, method - baseline
    low: float  # the confidence interval of the mean difference
    high: float
    p: float  # two-sided paired t-test; NaN when every difference is equal (no spread to test against)


@dataclass(frozen=True)
class Comparison:
    method: str
    baseline: str
    pairing: Pairing
    stats: PairedStats | None  # None with fewer than MIN_PAIRS pairs

    def describe(self, scale: float = 1.0) -> str:
        """``+0.30 [−0.51, +1.11] (p = 0.41, n = 10)`` (differences times ``scale``), or why there is no number."""
        s, n = self.stats, len(self.pairing.pairs)
        if s is None:
            return f"not possible: {n} pair{'s' if n != 1 else ''} ({MIN_PAIRS} needed)"
        return f"{signed(s.mean, scale)} [{signed(s.low, scale)}, {signed(s.high, scale)}] ({format_p(s.p)}, n = {s.n})"


def paired_stats(values: np.ndarray, baseline: np.ndarray, level: float = LEVEL) -> PairedStats | None:
    """Mean difference ``values - baseline``, its Student-t confidence interval and the paired t-test's p;
    None with fewer than :data:`MIN_PAIRS` pairs."""
    a, b = np.asarray(values, dtype=np.float64), np.asarray(baseline, dtype=np.float64)
    n = len(a)
    if n < MIN_PAIRS:
        return None
    d = a - b
    mean, sd = float(d.mean()), float(d.std(ddof=1))
    if sd <= SAME * max(1.0, float(np.abs(a).max()), float(np.abs(b).max())):  # equal up to float rounding
        return PairedStats(n, mean, mean, mean, math.nan)
    half = float(stats.t.ppf(0.5 + level / 2, n - 1)) * sd / math.sqrt(n)
    return PairedStats(n, mean, mean - half, mean + half, float(stats.ttest_rel(a, b).pvalue))


def pair_runs(runs: pd.DataFrame, baseline: pd.DataFrame, method: str, base: str) -> Pairing:
    """Pair the runs of ``method`` with those of ``base`` (one row per run: ``run``, ``seed``, ``teacher``,
    ``value``); see the module's docstring for the rule."""
    unpaired = [f"{name} run {r} has no recorded seed" for name, rows in ((method, runs), (base, baseline))
                for r in rows.run[rows.seed.isna()]]
    runs, baseline = runs[runs.seed.notna()], baseline[baseline.seed.notna()]
    partners = {i: [j for j, b in baseline.iterrows() if b.seed == r.seed and _same_teacher(r.teacher, b.teacher)]
                for i, r in runs.iterrows()}
    taken = Counter(j for js in partners.values() for j in js)
    pairs, lacking = [], {}
    for i, js in partners.items():
        r = runs.loc[i]
        if len(js) == 1 and taken[js[0]] == 1:
            pairs.append(Pair(int(r.seed), float(r.value), float(baseline.loc[js[0]].value)))
        elif not js:  # the teacher is named where the baseline has that seed, from another teacher
            lacking.setdefault((base, r.teacher if (baseline.seed == r.seed).any() else ""), []).append(int(r.seed))
        else:
            unpaired.append(f"seed {int(r.seed)} is ambiguous: {method} run {r.run} matches {len(js)} {base} runs, "
                            "or its partner matches another run too (record each run's teacher)")
    for j, b in baseline.iterrows():
        if j not in taken:
            lacking.setdefault((method, b.teacher if (runs.seed == b.seed).any() else ""), []).append(int(b.seed))
    unpaired += [f"{who} lacks seed{'s' if len(seeds) > 1 else ''} {', '.join(map(str, sorted(seeds)))}"
                 + (f" from teacher {teacher}" if teacher else "") for (who, teacher), seeds in lacking.items()]
    return Pairing(sorted(pairs, key=lambda p: p.seed), unpaired)


def compare(rows: pd.DataFrame, method: str, base: str) -> Comparison:
    """``method`` against ``base`` among ``rows``, the runs of one benchmark, scale and metric (``row`` names
    each run's method as the tables do)."""
    pairing = pair_runs(rows[rows.row == method], rows[rows.row == base], method, base)
    values = np.array([p.value for p in pairing.pairs])
    return Comparison(method, base, pairing, paired_stats(values, np.array([p.baseline for p in pairing.pairs])))


def against(rows: pd.DataFrame, base: str) -> dict[tuple[str, str], Comparison]:
    """Every student method of ``rows`` (one benchmark and metric) against ``base``, at each scale it ran;
    empty when ``base`` never ran. Teachers (``method == 'teacher'``) are not compared."""
    if base not in set(rows.row):
        return {}
    students = rows[rows.method != "teacher"]
    return {(m, s): compare(rows[rows.scale == s], m, base)
            for m, s in sorted(set(zip(students.row, students.scale, strict=True))) if m != base}


def _same_teacher(a: str, b: str) -> bool:
    """Teachers agree, or one run names none (a base student): checkpoint and its run folder are one teacher."""
    return not a or not b or _teacher_folder(a) == _teacher_folder(b)


def _teacher_folder(path: str) -> str:
    return os.path.normpath(os.path.dirname(path) if path.endswith(".pt") else path)


def signed(x: float, scale: float = 1.0) -> str:
    """``+0.30`` / ``−0.51``: a difference always carries its sign."""
    v = x * scale
    return f"{MINUS if v < 0 else '+'}{abs(v):.2f}"
