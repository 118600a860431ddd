"""``fskd analyze table``: results.csv laid out like the paper's Tables 1-5, methods x scales.

One table per comparison, as the paper splits them: dataset, the training setting (``single``-resolution,
Tables 1, 4, 5; ``multi``-resolution, Tables 2, 3) and the table part: (a) iResNet teachers, plain or
with QualNet's decoder (those rows are marked ``+Dec``, like Table 1(a)'s second F-SKD row), and (b)
CBAM. The setting and family of a run are read from the training setting its eval JSONs record
(``runs/NAME/eval/*.json``, ``setting``); a run without one counts as ``single`` and plain. The HR teacher's row is
shown in every table of its part. Each table shows the headline metric (accuracy, or rank-1 for 1:N
sets) per scale, and the other metrics (std over folds, TAR@FAR, AUC, rank-k, mAP) in a compact table
under it.

Several runs of one method at one scale (seeds) become ``mean ± std (n=...)``, so a table never hides
the spread that decides whether a difference means anything; where the runs' seeds are known, each scale
gets a second column, every method's difference to ``base`` paired by seed (mean, 95 % CI, paired t-test p,
pairs; :mod:`fskd_cli.analyze.paired`), and the runs left unpaired are listed under the table. A run
evaluated twice counts once, with its latest value. Multi-resolution tables get the paper's ``Average``
column (the mean over 1x-8x of each run). With ``paper=True`` each scale gets a column with the paper's number
(:mod:`fskd_cli.analyze.paper`), and the paper's rows that we have no run for are listed too. The paper's
numbers stand only beside rows measured the paper's way (:data:`~fskd_cli.analyze.paper.PAPER_EVAL`: AgeDB
with the authors' protocol, TinyFace's aligned layout); a table of another protocol or layout (``agedb``,
``tinyface[native]``) is its own table and says so instead of comparing unlike with unlike.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pandas as pd

from ..core.errors import FskdError
from ..core.io import make_dirs, write_csv, write_text
from ..core.outputs import check_replaceable, output_stem, starts_with_text
from ..core.results import OLD_RESULT_FIELDS, read_setting
from ..core.scale import Scale
from .paired import MINUS, Comparison, against
from .paper import DEC_NOTE, FAMILIES, FAMILY_NAMES, PAPER_EVAL, PAPER_EVAL_HOW, TABLES, paper_rows, row_label, row_order

SCALE_ORDER = [s.value for s in Scale] + ["avg"]
SCALE_NAMES = {"avg": "Average"}
HEADLINE_METRICS = ("accuracy", "rank1")  # the paper's tables: verification/classification accuracy, rank-1
PERCENT_METRICS = ("accuracy", "accuracy_std", "tar@far=1e-3(pooled)", "tar@far=1e-3(folds)", "tar@far=1e-4(pooled)",
                   "tar@far=1e-4(folds)", "auc", "rank1", "rank5", "rank10", "rank20", "mAP")
CSV_FIELDS = ["dataset", "metric", "setting", "family", "row", "scale", "mean", "std", "runs", "paper",
              "baseline", "diff", "ci_low", "ci_high", "p", "pairs"]
CSV_MARK = ",".join(CSV_FIELDS[:10])  # the start of the header, all an earlier fskd's table had
SEEDS_UNKNOWN = ("the runs' seeds are unknown (results.csv records none, nor do eval JSONs beside the checkpoints); "
                 "evaluate them again with this fskd to record them")
# results.csv's own columns; seed and teacher are read where present (files of older fskd have neither)
# what read_results adds from a run's eval JSONs, and its value for a run without one
RUN_INFO = {"kind": "", "setting": "single", "variant": "plain", "seed": pd.NA, "teacher": ""}


def results_table(results: Path, out: Path, *, metric: str | None = None, dataset: str | None = None,
                  paper: bool = False, runs: list[str] | None = None, baseline: str = "base") -> str:
    """Write ``out``.csv and ``out``.md; return the Markdown.

    ``runs`` keeps only the rows whose run name or checkpoint path (or its folder) is listed. Each scale of a
    table with a ``baseline`` row gets a column of every other method's paired difference to it
    (:mod:`fskd_cli.analyze.paired`), where the runs' seeds are known.
    """
    out = output_stem(out)  # before the work: a doomed --out never waits for the results to be read
    df = read_results(results, runs)
    if dataset:
        df = df[df.dataset == dataset]
    if metric:
        df = df[df.metric == metric]
    if df.empty:
        raise FskdError(f"{results}: no rows for dataset={dataset or 'any'} metric={metric or 'any'}"
                        + (f" runs={','.join(runs)}" if runs is not None else ""))
    tables, csv_rows = [], []
    for ds, part in df.groupby("dataset", sort=True):
        teachers = part[part.method == "teacher"]
        students = part[part.method != "teacher"]
        groups = {(s, f) for s, f in zip(students.setting, students.family, strict=True)}
        groups |= {("single", f) for f in teachers.family if f not in {g[1] for g in groups}}
        for setting, family in sorted(groups, key=_group_order):
            rows = pd.concat([students[(students.setting == setting) & (students.family == family)],
                              teachers[teachers.family == family]])
            present = list(dict.fromkeys(rows.metric))
            headline = next((m for m in HEADLINE_METRICS if m in present), sorted(present)[0])
            md, cells = _section(ds, headline, setting, family, rows[rows.metric == headline], paper, baseline)
            others = rows[rows.metric != headline]
            if not others.empty:
                more, more_cells = _other_metrics(ds, setting, family, others)
                md += "\n\n" + more
                cells += more_cells
            tables.append(md)
            csv_rows += cells
    md = "\n\n".join(tables) + "\n"
    _refuse_foreign(out)
    make_dirs(out.parent)
    write_text(out.with_suffix(".md"), md)
    write_csv(out.with_suffix(".csv"), csv_rows, CSV_FIELDS)
    return md


def read_results(results: Path, runs: list[str] | None = None) -> pd.DataFrame:
    """results.csv, one row per run, benchmark, scale and metric, with what tables and comparisons group by.

    A run evaluated twice counts once, with its latest value. Added columns: ``kind``, ``setting``
    (single/multi), ``variant``, ``family`` and ``row`` (the table row) from the setting the run's eval JSONs
    record; ``seed`` (nullable integer) and ``teacher`` (checkpoint path, "" for none). A results.csv written
    before fskd recorded ``seed`` and ``teacher`` (columns ``run,method,dataset,scale,metric,value,ckpt,timestamp``)
    is read too: its seeds and teachers come from the same eval JSONs, and stay unknown where there are none.
    ``runs`` keeps only the rows whose run name or checkpoint path (or its folder) is listed.
    """
    df = _read_csv(results)
    if runs is not None:
        wanted = _wanted(runs)
        df = df[[_run_matches(r, c, wanted, results.parent) for r, c in zip(df.run, df.ckpt, strict=True)]]
    # the latest value of each (checkpoint, dataset, scale, metric): re-evaluating a run does not count it twice,
    # while two seeds of one method (runs/s0/f-skd, runs/s1/f-skd) stay two runs
    df = df.sort_values("timestamp").groupby(["ckpt", "dataset", "scale", "metric"], as_index=False, dropna=False).last()
    infos = {c: _run_info(c, str(results.parent)) for c in set(df.ckpt)}  # each run's eval JSONs read once
    info = pd.DataFrame([infos[c] for c in df.ckpt], index=df.index, columns=list(RUN_INFO))
    recorded = {k: df.pop(k) for k in ("seed", "teacher") if k in df.columns}
    df = pd.concat([df, info], axis=1)
    df["seed"] = _seeds(df.seed)
    if "seed" in recorded:  # a recorded seed wins; an empty one falls back to the eval JSON's
        df["seed"] = _seeds(recorded["seed"]).fillna(df.seed)
    if "teacher" in recorded:  # a recorded empty teacher means none (a teacher run, a base student)
        df["teacher"] = recorded["teacher"].fillna("").astype(str)
    df.loc[df.kind == "teacher", "method"] = "teacher"
    df["family"] = df.variant.map(lambda v: FAMILIES.get(v, v))
    df["row"] = [row_label(m, v) for m, v in zip(df.method, df.variant, strict=True)]
    return df


def _seeds(values: pd.Series) -> pd.Series:
    """Seeds as nullable integers; anything that is not a whole number is unknown."""
    x = pd.to_numeric(values.astype(object).where(values.notna()), errors="coerce")
    return x.where(x == x.round()).astype("Int64")


def _read_csv(results: Path) -> pd.DataFrame:
    if not results.exists():
        raise FskdError(f"{results}: not found; run `fskd eval` first")
    if results.is_dir():
        raise FskdError(f"{results}: is a folder; --results names results.csv")
    try:
        df = pd.read_csv(results, dtype={"scale": str, "run": str, "ckpt": str, "method": str, "seed": str,
                                         "teacher": str, "value": str})
    except (pd.errors.ParserError, UnicodeDecodeError, pd.errors.EmptyDataError) as e:
        raise FskdError(f"{results}: not a results CSV ({str(e).splitlines()[0]})") from None
    missing = set(OLD_RESULT_FIELDS) - set(df.columns)  # seed and teacher: only in newer files
    if missing:
        raise FskdError(f"{results}: missing columns {sorted(missing)}")
    # eval fills these in every row; an empty one (a hand-edited or foreign file) would group as NaN and fail
    # deep in a table, so it is named here
    named = ["run", "method", "dataset", "scale", "metric", "ckpt"]
    blank = df[named].isna()
    if blank.to_numpy().any():
        row, column = next((i, c) for i, (_, r) in enumerate(blank.iterrows()) for c in named if r[c])
        raise FskdError(f"{results}: data row {row + 1} has an empty {column!r} cell (every row names its run, "
                        "method, dataset, scale, metric and checkpoint); fix or remove that row")
    header = (df["run"] == "run") & (df["value"] == "value")  # two files joined with `cat`: a header among the rows
    if header.any():
        raise FskdError(f"{results}: data row {header.idxmax() + 1} repeats the header (two results files joined with "
                        "its header kept?); delete that line")
    df["value"] = _values(df, results)
    return df.dropna(subset=["value"])


def _values(df: pd.DataFrame, results: Path) -> pd.Series:
    """The ``value`` column as numbers: an empty value or ``nan`` (a figure an eval could not measure) is left out
    of the tables; anything else that is not a finite number is a damaged row, named by its run (never read as
    missing, nor averaged in as infinity)."""
    text = df["value"]
    values = pd.to_numeric(text, errors="coerce")
    damaged = (values.isna() & text.notna()) | values.isin([float("inf"), float("-inf")])
    if damaged.any():
        i = damaged.idxmax()
        raise FskdError(f"{results}: row {i + 1} (run {df.run[i]}, {df.metric[i]}): value {text[i]!r} is not a finite "
                        "number; repair or delete that row")
    return values


def _wanted(runs: list[str]) -> set[str]:
    """Run names and run folders (as given and resolved; a checkpoint file stands for its folder)."""
    out = set()
    for r in runs:
        p = Path(str(r).rstrip("/"))
        folder = p.parent if p.suffix == ".pt" else p
        out |= {str(r).rstrip("/"), str(folder), str(folder.resolve())}
    return out


def _run_matches(run: str, ckpt: str, wanted: set[str], where: Path) -> bool:
    if run in wanted:
        return True
    for base in (Path(ckpt), where / ckpt):
        folder = base.parent if base.suffix == ".pt" else base
        if str(folder) in wanted or str(folder.resolve()) in wanted:
            return True
    return False


def base_dataset(dataset: str) -> str:
    """``agedb[authors]`` -> ``agedb``: the benchmark, without the protocol variant."""
    return dataset.split("[", 1)[0]


def _run_info(ckpt: str, where: str) -> dict[str, Any]:
    """:data:`RUN_INFO` of a run, from the setting its eval JSONs record (the checkpoint path as given, or
    relative to results.csv); a run without one counts as a plain single-resolution run of unknown seed."""
    for base in (Path(ckpt), Path(where) / ckpt):
        folder = base.parent if base.suffix == ".pt" else base
        setting = read_setting(folder / "eval")
        if setting is not None:
            multi = setting.get("kind") == "student" and setting.get("scale") == Scale.multi.value
            seed = setting.get("seed")
            return {"kind": setting.get("kind", ""), "setting": "multi" if multi else "single",
                    "variant": setting.get("variant", "plain"), "seed": seed if isinstance(seed, int) else pd.NA,
                    "teacher": setting.get("teacher") or ""}
    return dict(RUN_INFO)


def _group_order(group: tuple[str, str]) -> tuple[bool, str]:
    """The paper's order: single-resolution before multi-resolution, then part (a) before (b)."""
    setting, family = group
    return (setting != "single", family)


def scale_order(s: str) -> tuple[int, str]:
    return (SCALE_ORDER.index(s) if s in SCALE_ORDER else len(SCALE_ORDER), s)


def _section(ds: str, met: str, setting: str, family: str, rows: pd.DataFrame, paper: bool, baseline: str
             ) -> tuple[str, list[dict[str, Any]]]:
    """One paper-style table: a row per method, a column (pair, with ``paper``; a third, the paired difference to
    ``baseline``, where seeds allow) per scale."""
    runs = with_average(rows) if setting == "multi" else rows
    stats = runs.groupby(["row", "scale"])["value"].agg(["mean", "std", "count"])
    like = PAPER_EVAL.get(base_dataset(ds))
    theirs = paper_rows(base_dataset(ds), met, setting, family) if paper and like == ds else {}
    unlike = paper and like is not None and like != ds and bool(paper_rows(base_dataset(ds), met, setting, family))
    paper = bool(theirs)  # a dataset or metric the paper does not report gets no empty columns
    methods = sorted(set(stats.index.get_level_values(0)) | {m for m, _ in theirs}, key=row_order)
    scales = sorted(set(stats.index.get_level_values(1)) | {s for _, s in theirs}, key=scale_order)
    pct = met in PERCENT_METRICS or (runs.value <= 1.0).all()
    versus, notes = _versus(runs, baseline, pct)
    paired = {s for _, s in versus}  # the scales that get a paired column

    table_ref = TABLES.get((base_dataset(ds), setting, family)) if paper else None
    dec = any(m.endswith("+Dec") for m in methods) or bool((runs.variant == "dec").any())
    family_name = FAMILY_NAMES.get(family, family) + (f"; {DEC_NOTE}" if dec else "")
    title = f"### {ds}: {met}, {setting}-resolution training, {family_name}"
    lines = [title + (f" (paper Table {table_ref})" if table_ref and theirs else ""), "",
             "mean ± std over runs (n = runs)" + (", in %" if pct else "")
             + ("; `paper`: the paper's number, as printed (%)" if paper else ""), ""]
    if unlike:
        lines += [f"The paper's numbers are not shown beside these: they were measured as `{like}` "
                  f"({PAPER_EVAL_HOW.get(base_dataset(ds), like)}), these as `{ds}`.", ""]
    header = ["method"]
    for s in scales:
        name = SCALE_NAMES.get(s, f"{s}x")
        header += [name] + ([f"{name} paper"] if paper else []) + ([f"{name} {MINUS} {baseline}"] if s in paired else [])
    lines += ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    cells = []
    for m in methods:
        line = [m]
        for s in scales:
            ours = stats.loc[(m, s)] if (m, s) in stats.index else None
            line.append(_cell(ours, pct) if ours is not None else "-")
            if paper:
                p = theirs.get((m, s))
                line.append("-" if p is None else f"{p:.2f}")
            if s in paired:
                line.append(versus[m, s].describe(100.0 if pct else 1.0) if (m, s) in versus else "-")
            if ours is not None or (paper and (m, s) in theirs):
                cells.append({"dataset": ds, "metric": met, "setting": setting, "family": family, "row": m,
                              "scale": s,
                              "mean": "" if ours is None else f"{ours['mean']:.6f}",
                              "std": "" if ours is None or pd.isna(ours["std"]) else f"{ours['std']:.6f}",
                              "runs": 0 if ours is None else int(ours["count"]),
                              "paper": "" if (m, s) not in theirs else f"{theirs[(m, s)]:.2f}",
                              **_versus_cells(versus.get((m, s)))})
        lines.append("| " + " | ".join(line) + " |")
    return "\n".join(lines + notes), cells


def with_average(rows: pd.DataFrame) -> pd.DataFrame:
    """``rows`` and the paper's Average column: each student run's mean over the four resolutions."""
    per_run = rows[rows.method != "teacher"].groupby(["ckpt", "row"])
    avg = [{**g.iloc[0].to_dict(), "scale": "avg", "value": g.value.mean()}
           for _, g in per_run if set(g.scale) >= {"1", "2", "4", "8"}]
    return pd.concat([rows, pd.DataFrame(avg)], ignore_index=True) if avg else rows


def _versus(runs: pd.DataFrame, baseline: str, pct: bool) -> tuple[dict[tuple[str, str], Comparison], list[str]]:
    """Each method's paired difference to ``baseline`` per scale, empty when nothing can pair (no baseline row,
    or no run of a known seed), and the lines under the table: the caption, and every run left unpaired."""
    versus = against(runs, baseline)
    if not versus:
        return {}, []
    if runs[runs.method != "teacher"].seed.isna().all():
        return {}, ["", f"Not paired with `{baseline}`: {SEEDS_UNKNOWN}."]
    unit = "percentage points" if pct else "the metric's units"
    notes = ["", f"`{MINUS} {baseline}`: the mean difference to `{baseline}` over runs paired by seed (and teacher), "
                 f"in {unit}, [its 95 % confidence interval] (paired t-test p, n = pairs); `fskd analyze compare` "
                 "draws it per seed."]
    unpaired = [f"- {m} at {SCALE_NAMES.get(s, f'{s}x')}: " + "; ".join(c.pairing.unpaired)
                for (m, s), c in versus.items() if c.pairing.unpaired]
    return versus, notes + (["", "Left unpaired:", "", *unpaired] if unpaired else [])


def _versus_cells(c: Comparison | None) -> dict[str, Any]:
    """The table CSV's paired-difference fields (in the metric's own units, like ``mean``)."""
    if c is None:
        return {}
    s = c.stats
    return {"baseline": c.baseline, "pairs": len(c.pairing.pairs),
            **({} if s is None else {"diff": f"{s.mean:.6f}", "ci_low": f"{s.low:.6f}", "ci_high": f"{s.high:.6f}",
                                     "p": f"{s.p:.6g}"})}


def _refuse_foreign(out: Path) -> None:
    """Replace only tables fskd wrote: the Markdown has its "over runs" caption, the CSV its header."""
    for path, mark in ((out.with_suffix(".md"), "over runs"), (out.with_suffix(".csv"), CSV_MARK)):
        check_replaceable(path, lambda p, mark=mark: starts_with_text(p, mark), "analyze table")


def _other_metrics(ds: str, setting: str, family: str, rows: pd.DataFrame) -> tuple[str, list[dict[str, Any]]]:
    """The metrics besides the headline one, compactly: a row per (method, scale), a column per metric."""
    stats = rows.groupby(["row", "scale", "metric"])["value"].agg(["mean", "std", "count"])
    metrics = sorted(set(rows.metric), key=lambda m: (PERCENT_METRICS.index(m) if m in PERCENT_METRICS else 99, m))
    keys = sorted({(m, s) for m, s, _ in stats.index}, key=lambda k: (row_order(k[0]), scale_order(k[1])))
    lines = ["Other metrics (mean ± std over runs; rates in %):", "",
             "| method | scale | " + " | ".join(metrics) + " |", "|" + "---|" * (len(metrics) + 2)]
    cells = []
    for m, s in keys:
        line = [m, SCALE_NAMES.get(s, f"{s}x")]
        for met in metrics:
            if (m, s, met) in stats.index:
                r = stats.loc[(m, s, met)]
                line.append(_cell(r, met in PERCENT_METRICS or r["mean"] <= 1.0))
                cells.append({"dataset": ds, "metric": met, "setting": setting, "family": family, "row": m,
                              "scale": s, "mean": f"{r['mean']:.6f}",
                              "std": "" if pd.isna(r["std"]) else f"{r['std']:.6f}", "runs": int(r["count"]),
                              "paper": ""})
            else:
                line.append("-")
        lines.append("| " + " | ".join(line) + " |")
    return "\n".join(lines), cells


def _cell(r: pd.Series, pct: bool) -> str:
    f = 100.0 if pct else 1.0
    if r["count"] > 1:
        return f"{r['mean'] * f:.2f} ± {r['std'] * f:.2f} (n={int(r['count'])})"
    return f"{r['mean'] * f:.2f}"
