"""``fskd analyze compare``: each method against a baseline, paired by seed, as tables and figures.

"Does F-SKD beat Base here, and how sure is that?" Over a study of several seeds the spreads of two methods
overlap almost always; the paired difference removes what the seed does to both (its teacher, its data
order) and leaves what the method does. For each benchmark label (a protocol in brackets is its own label:
``agedb[authors]`` is never mixed with ``agedb``), training setting, network family, eval scale and metric,
each method's runs are paired with the baseline's (:mod:`fskd_cli.analyze.paired`: by seed, and by teacher
where both runs name one), and the differences summarised: mean, 95 % confidence interval, paired t-test p,
n pairs. Runs left without a partner are named; fewer than 3 pairs give "not possible", not a number.

Written, atomically, beside each other (``--out reports/compare``): ``compare.md`` (a table per benchmark,
setting and family), ``compare.csv`` (one row per comparison, differences in the metric's own units, as in
results.csv), ``compare_pairs.csv`` (one row per pair) and ``compare_<benchmark>_<setting>-<family>_<metric>.png``
(the headline metric's per-seed differences: a dot per seed, the mean with its interval, a line at 0).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from matplotlib.figure import Figure

from ..core.errors import FskdError
from ..core.io import write_csv, write_text
from ..core.outputs import check_replaceable, output_stem, save_figure, starts_with_text
from .figures import STUDENT_COLOURS
from .paired import LEVEL, MIN_PAIRS, MINUS, Comparison, against, signed
from .paper import FAMILY_NAMES, method_name, row_order
from .stats import format_p
from .table import (
    HEADLINE_METRICS,
    PERCENT_METRICS,
    SCALE_NAMES,
    SEEDS_UNKNOWN,
    read_results,
    scale_order,
    with_average,
)

CSV_FIELDS = ["dataset", "setting", "family", "metric", "scale", "method", "baseline", "pairs", "diff", "ci_low",
              "ci_high", "p", "unpaired"]
PAIR_FIELDS = ["dataset", "setting", "family", "metric", "scale", "method", "baseline", "seed", "value",
               "baseline_value", "diff"]
MARK = "by `fskd analyze compare`"  # in every page it writes: only such a page (and its files) is replaced


@dataclass(frozen=True)
class Compared:
    page: str  # the whole Markdown page
    introduction: str  # its first paragraph: what was paired and how
    body: str  # its tables and figures (for a report)
    files: list[Path]


@dataclass(frozen=True)
class Group:
    """The comparisons of one benchmark label, training setting and network family."""

    dataset: str
    setting: str
    family: str
    comparisons: dict[tuple[str, str, str], Comparison]  # (metric, method, scale) -> comparison
    headline: str
    pct: dict[str, bool]  # metric -> shown in percentage points
    methods: list[str]  # every method that ran (teachers included)


def compare_results(results: Path, out: Path, *, baseline: str = "base", metric: str | None = None,
                    dataset: str | None = None, runs: list[str] | None = None) -> Compared:
    """Compare every method of ``results`` with ``baseline``; write ``out``.md/.csv, ``out``_pairs.csv and figures."""
    out = output_stem(out)  # before the work: a doomed --out never waits for the results to be read
    df = read_results(results, runs)
    if dataset:
        df = df[df.dataset == dataset]
    if metric:
        df = df[df.metric == metric]
    students = df[df.method != "teacher"]
    if students.empty:
        raise FskdError(f"{results}: no student rows for dataset={dataset or 'any'} metric={metric or 'any'}")
    if baseline not in set(df.row):
        raise FskdError(f"--baseline {baseline}: no runs of it in {results} (methods: {', '.join(sorted(set(df.row)))})")
    if students.seed.isna().all():
        raise FskdError(f"{results}: {SEEDS_UNKNOWN}; nothing can be paired")
    every = [_group(key, part, baseline) for key, part in df.groupby(["dataset", "setting", "family"])]
    groups = [g for g in every if g.comparisons]
    if not groups:
        raise FskdError(f"--baseline {baseline}: no other method shares a benchmark, setting and family with it in {results}")
    _refuse_foreign(out)
    figures = [_figure_path(out, g) if any(c.pairing.pairs for c in _headline(g).values()) else None for g in groups]
    body = "\n\n".join(_section(g, baseline, f) for g, f in zip(groups, figures, strict=True))
    body += _not_compared([g for g in every if not g.comparisons], baseline) + "\n"
    intro = _introduction(results, baseline)
    page = f"# Paired comparison against `{baseline}`\n\n{intro}\n\n{body}"
    stale = _linked_figures(out)
    for g, path in zip(groups, figures, strict=True):
        if path is not None:
            difference_figure(_headline(g), path, baseline, g)
    figures = [f for f in figures if f is not None]
    write_csv(out.with_suffix(".csv"), [r for g in groups for r in _csv_rows(g)], CSV_FIELDS)
    write_csv(_pairs_path(out), [r for g in groups for r in _pair_rows(g)], PAIR_FIELDS)
    write_text(out.with_suffix(".md"), page)
    for old in stale - set(figures):
        old.unlink(missing_ok=True)  # a figure an earlier compare wrote that this one has no data for
    return Compared(page, intro, body, [out.with_suffix(".md"), out.with_suffix(".csv"), _pairs_path(out), *figures])


def _group(key: tuple[str, str, str], part: pd.DataFrame, baseline: str) -> Group:
    # a spread over folds (accuracy_std) says how steady a run's test is, not how good: not compared
    kept = {m for m in part.metric if not m.endswith("_std")}
    metrics = sorted(kept, key=lambda m: (m not in HEADLINE_METRICS, _metric_order(m)))
    runs = {met: part[part.metric == met] for met in metrics}
    if key[1] == "multi":  # the table's Average column (each run's mean over 1x-8x) is compared too
        runs = {met: with_average(r) for met, r in runs.items()}
    comparisons = {(met, m, s): c for met in metrics for (m, s), c in against(runs[met], baseline).items()}
    pct = {met: met in PERCENT_METRICS or bool((part[part.metric == met].value <= 1.0).all()) for met in metrics}
    headline = next((m for m in HEADLINE_METRICS if m in metrics), metrics[0] if metrics else "")
    ordered = dict(sorted(comparisons.items(), key=lambda kv: (metrics.index(kv[0][0]), row_order(kv[0][1]),
                                                               scale_order(kv[0][2]))))
    return Group(*key, ordered, headline, pct, sorted(set(part.row), key=row_order))


def _headline(g: Group) -> dict[tuple[str, str], Comparison]:
    return {(m, s): c for (met, m, s), c in g.comparisons.items() if met == g.headline}


def _metric_order(m: str) -> tuple[int, str]:
    return (PERCENT_METRICS.index(m) if m in PERCENT_METRICS else len(PERCENT_METRICS), m)


def _introduction(results: Path, baseline: str) -> str:
    return (f"Written {MARK} from `{results}`. Each method's runs are "
            f"paired with `{baseline}`'s of the same seed (and the same teacher where both runs name one); per pair "
            f"the difference method {MINUS} {baseline}; over the pairs the mean difference, its {LEVEL * 100:g} % confidence "
            f"interval (Student t on the paired differences), the paired t-test's two-sided p and n, the number of "
            f"pairs. With fewer than {MIN_PAIRS} pairs the comparison is not possible. Rates (accuracy, TAR, rank-k, "
            f"...) are in percentage points.")


def _section(g: Group, baseline: str, figure: Path | None) -> str:
    """A group's table, the runs left unpaired, and its figure (linked by name: it lies beside the page)."""
    lines = [f"### {g.dataset}: {g.setting}-resolution training, {FAMILY_NAMES.get(g.family, g.family)}", "",
             f"| method | scale | metric | mean difference {MINUS} {baseline} | {LEVEL * 100:g} % CI | p | n |",
             "|---|---|---|---|---|---|---|"]
    unpaired = []
    for (met, m, s), c in g.comparisons.items():
        k, st = 100.0 if g.pct[met] else 1.0, c.stats
        scale = SCALE_NAMES.get(s, f"{s}x")
        if st is None:
            lines.append(f"| {m} | {scale} | {met} | {c.describe(k)} | - | - | {len(c.pairing.pairs)} |")
        else:
            lines.append(f"| {m} | {scale} | {met} | {signed(st.mean, k)} | [{signed(st.low, k)}, {signed(st.high, k)}] "
                         f"| {format_p(st.p).removeprefix('p = ')} | {st.n} |")
        if c.pairing.unpaired and met == g.headline:  # the other metrics' runs are the same runs
            unpaired.append(f"- {m} at {scale}: " + "; ".join(c.pairing.unpaired))
    if unpaired:
        lines += ["", "Left unpaired:", "", *unpaired]
    if figure is not None:
        lines += ["", f"![{g.headline} {MINUS} {baseline} per seed]({figure.name})", "",
                  f"*{g.dataset}, {g.headline}: each method {MINUS} {baseline}, one dot per seed; the bar is the mean "
                  f"difference with its {LEVEL * 100:g} % confidence interval ({MIN_PAIRS} pairs or more).*"]
    return "\n".join(lines)


def _not_compared(groups: list[Group], baseline: str) -> str:
    """The benchmarks (with setting and family) that have runs but none of ``baseline``: named, not dropped."""
    if not groups:
        return ""
    named = [f"`{g.dataset}` ({g.setting}-resolution, part ({g.family}): {', '.join(g.methods)})" for g in groups]
    return f"\n\nNot compared, no `{baseline}` run among them: " + "; ".join(named) + "."


def difference_figure(comparisons: dict[tuple[str, str], Comparison], path: Path, baseline: str, g: Group) -> Path:
    """A column per (method, scale): the per-seed differences as dots, beside them the mean difference with its
    confidence interval as a bar; a line at 0 (no difference)."""
    k = 100.0 if g.pct[g.headline] else 1.0
    fig = Figure(figsize=(1.6 + 1.0 * len(comparisons), 3.6))
    ax = fig.subplots()
    ax.axhline(0.0, color="0.35", linewidth=1, zorder=1)
    for i, c in enumerate(comparisons.values()):
        d = np.array([(p.value - p.baseline) * k for p in c.pairing.pairs])
        ax.scatter(i - 0.1 + np.linspace(-0.08, 0.08, len(d)), d, s=16,
                   color=STUDENT_COLOURS[(i + 1) % 10], alpha=0.85, zorder=3, linewidths=0)
        if c.stats is not None:
            st = c.stats
            ax.errorbar([i + 0.18], [st.mean * k], yerr=[[(st.mean - st.low) * k], [(st.high - st.mean) * k]], fmt="D",
                        color="black", markersize=4, capsize=4, linewidth=1.2, zorder=4)
        else:
            ax.text(i + 0.18, 0.0, f"n = {len(d)}\nnot possible", fontsize=7, ha="center", va="bottom", color="0.3")
    ax.set_xticks(range(len(comparisons)), [f"{method_name(m)}\n{SCALE_NAMES.get(s, f'x{s}')}" for m, s in comparisons])
    ax.set_xlim(-0.6, len(comparisons) - 0.4)
    ax.set_ylabel(f"{g.headline} {MINUS} {method_name(baseline)}" + (" (points)" if k == 100.0 else ""))
    ax.set_title(f"{g.dataset} ({g.setting}-resolution): paired by seed", fontsize=10)
    ax.grid(axis="y", alpha=0.3)
    fig.tight_layout()
    return save_figure(fig, path, dpi=130)


def _csv_rows(g: Group) -> list[dict[str, Any]]:
    rows = []
    for (met, m, s), c in g.comparisons.items():
        st = c.stats
        rows.append({"dataset": g.dataset, "setting": g.setting, "family": g.family, "metric": met, "scale": s,
                     "method": m, "baseline": c.baseline, "pairs": len(c.pairing.pairs),
                     "diff": "" if st is None else f"{st.mean:.6f}", "ci_low": "" if st is None else f"{st.low:.6f}",
                     "ci_high": "" if st is None else f"{st.high:.6f}", "p": "" if st is None else f"{st.p:.6g}",
                     "unpaired": "; ".join(c.pairing.unpaired)})
    return rows


def _pair_rows(g: Group) -> list[dict[str, Any]]:
    return [{"dataset": g.dataset, "setting": g.setting, "family": g.family, "metric": met, "scale": s, "method": m,
             "baseline": c.baseline, "seed": p.seed, "value": f"{p.value:.6f}", "baseline_value": f"{p.baseline:.6f}",
             "diff": f"{p.value - p.baseline:.6f}"}
            for (met, m, s), c in g.comparisons.items() for p in c.pairing.pairs]


def _figure_path(out: Path, g: Group) -> Path:
    slug = re.sub(r"[^\w.]+", "-", f"{g.dataset}_{g.setting}-{g.family}_{g.headline}").strip("-")
    return out.with_name(f"{out.name}_{slug}.png")


def _pairs_path(out: Path) -> Path:
    return out.with_name(f"{out.name}_pairs.csv")


def _linked_figures(out: Path) -> set[Path]:
    """The figures an earlier page of ours at ``out`` linked to (only ``out``_*.png beside it)."""
    md = out.with_suffix(".md")
    if not md.is_file():
        return set()
    names = re.findall(r"\]\(([^)/]+\.png)\)", md.read_text(encoding="utf-8", errors="replace"))
    return {out.with_name(n) for n in names if n.startswith(f"{out.name}_")}


def _refuse_foreign(out: Path) -> None:
    """Replace only what an earlier ``fskd analyze compare`` wrote: its page carries :data:`MARK`, its CSVs
    their headers, and its figures exist only beside such a page."""
    md = out.with_suffix(".md")
    ours = {md: MARK, out.with_suffix(".csv"): ",".join(CSV_FIELDS), _pairs_path(out): ",".join(PAIR_FIELDS)}
    for path, mark in ours.items():
        check_replaceable(path, lambda p, mark=mark: starts_with_text(p, mark), "analyze compare")
    if not md.exists():
        for png in out.parent.glob(f"{out.name}_*.png"):
            raise FskdError(f"{png}: exists beside no `fskd analyze compare` page; choose another --out")
