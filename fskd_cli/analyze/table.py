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
the spread that decides whether a difference means anything. A run evaluated twice counts once, with
its latest value. Multi-resolution tables get the paper's ``Average`` column (the mean over 1x-8x of
each run). With ``paper=True`` each scale gets a second column with the paper's number
(:mod:`fskd_cli.analyze.paper`), and the paper's rows that we have no run for are listed too. The paper's
numbers stand only beside rows measured the paper's way (:data:`~fskd_cli.analyze.paper.PAPER_EVAL`: AgeDB
with the authors' protocol); a table of another protocol says so instead of comparing unlike with unlike.
"""

from __future__ import annotations

from functools import cache
from pathlib import Path
from typing import Any

import pandas as pd

from ..core.errors import FskdError
from ..core.io import make_dirs, write_csv, write_text
from ..core.scale import Scale
from ..evaluate.results import RESULT_FIELDS, read_setting
from .paper import FAMILIES, FAMILY_NAMES, PAPER_EVAL, TABLES, paper_rows, row_label

# rows in the paper's order: Table 1(a) is Base, FitNet, RKD, F-SKD, then QualNet-LM and its F-SKD
ROW_ORDER = ["teacher", "teacher +Dec", "base", "fitnet", "norm-kd", "rkd", "a-skd", "f-skd", "qualnet-lm", "f-skd +Dec"]
SCALE_ORDER = [s.value for s in Scale] + ["avg"]
SCALE_NAMES = {"avg": "Average"}
HEADLINE_METRICS = ("accuracy", "rank1")  # the paper's tables: verification/classification accuracy, rank-1
PERCENT_METRICS = ("accuracy", "accuracy_std", "tar@far=1e-3(pooled)", "tar@far=1e-3(folds)", "tar@far=1e-4(pooled)",
                   "tar@far=1e-4(folds)", "auc", "rank1", "rank5", "rank10", "rank20", "mAP")
CSV_FIELDS = ["dataset", "metric", "setting", "family", "row", "scale", "mean", "std", "runs", "paper"]


def results_table(results: Path, out: Path, *, metric: str | None = None, dataset: str | None = None,
                  paper: bool = False, runs: list[str] | None = None) -> str:
    """Write ``out``.csv and ``out``.md; return the Markdown.

    ``runs`` keeps only the rows whose run name or checkpoint path (or its folder) is listed.
    """
    df = _read(results)
    if runs is not None:
        wanted = _wanted(runs)
        df = df[[_run_matches(r, c, wanted, results.parent) for r, c in zip(df.run, df.ckpt, strict=True)]]
    if dataset:
        df = df[df.dataset == dataset]
    if metric:
        df = df[df.metric == metric]
    if df.empty:
        raise FskdError(f"{results}: no rows for dataset={dataset or 'any'} metric={metric or 'any'}"
                        + (f" runs={','.join(runs)}" if runs is not None else ""))
    # the latest value of each (checkpoint, dataset, scale, metric): re-evaluating a run does not count it twice,
    # while two seeds of one method (runs/s0/f-skd, runs/s1/f-skd) stay two runs
    df = df.sort_values("timestamp").groupby(["ckpt", "dataset", "scale", "metric"], as_index=False).last()
    where = results.parent
    info = pd.DataFrame([_run_info(c, str(where)) for c in df.ckpt], index=df.index)
    df = pd.concat([df, info], axis=1)
    df.loc[df.kind == "teacher", "method"] = "teacher"
    df["family"] = df.variant.map(lambda v: FAMILIES.get(v, v))
    df["row"] = [row_label(m, v) for m, v in zip(df.method, df.variant, strict=True)]

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
            md, cells = _section(ds, headline, setting, family, rows[rows.metric == headline], paper)
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


def _read(results: Path) -> pd.DataFrame:
    if not results.exists():
        raise FskdError(f"{results}: not found; run `fskd eval` first")
    try:
        df = pd.read_csv(results, dtype={"scale": str, "run": str, "ckpt": str, "method": str})
    except (pd.errors.ParserError, UnicodeDecodeError, pd.errors.EmptyDataError) as e:
        raise FskdError(f"{results}: not a results CSV ({str(e).splitlines()[0]})") from None
    missing = set(RESULT_FIELDS) - set(df.columns)
    if missing:
        raise FskdError(f"{results}: missing columns {sorted(missing)}")
    df["value"] = pd.to_numeric(df["value"], errors="coerce")
    return df.dropna(subset=["value"])


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


@cache
def _eval_setting(folder: str) -> dict[str, Any] | None:
    return read_setting(Path(folder) / "eval")


def _run_info(ckpt: str, where: str) -> dict[str, str]:
    """``kind``, training ``setting`` (single/multi) and network ``variant`` (plain/dec/cbam) of a run,
    from the setting its eval JSONs record (the checkpoint path as given, or relative to results.csv)."""
    for base in (Path(ckpt), Path(where) / ckpt):
        folder = base.parent if base.suffix == ".pt" else base
        setting = _eval_setting(str(folder))
        if setting is not None:
            multi = setting.get("kind") == "student" and setting.get("scale") == Scale.multi.value
            return {"kind": setting.get("kind", ""), "setting": "multi" if multi else "single",
                    "variant": setting.get("variant", "plain")}
    return {"kind": "", "setting": "single", "variant": "plain"}


def _group_order(group: tuple[str, str]) -> tuple[bool, str]:
    """The paper's order: single-resolution before multi-resolution, then part (a) before (b)."""
    setting, family = group
    return (setting != "single", family)


def _row_key(row: str) -> tuple[int, str]:
    return (ROW_ORDER.index(row) if row in ROW_ORDER else len(ROW_ORDER), row)


def _scale_key(s: str) -> tuple[int, str]:
    return (SCALE_ORDER.index(s) if s in SCALE_ORDER else len(SCALE_ORDER), s)


def _section(ds: str, met: str, setting: str, family: str, rows: pd.DataFrame, paper: bool
             ) -> tuple[str, list[dict[str, Any]]]:
    """One paper-style table: a row per method, a column (pair, with ``paper``) per scale."""
    runs = rows.copy()
    if setting == "multi":  # the paper's Average column: each run's mean over the four resolutions
        per_run = runs[runs.method != "teacher"].groupby(["ckpt", "row"])
        avg = [{"ckpt": c, "row": m, "scale": "avg", "value": g.value.mean()}
               for (c, m), g in per_run if set(g.scale) >= {"1", "2", "4", "8"}]
        runs = pd.concat([runs, pd.DataFrame(avg)], ignore_index=True) if avg else runs
    stats = runs.groupby(["row", "scale"])["value"].agg(["mean", "std", "count"])
    like = PAPER_EVAL.get(base_dataset(ds))
    theirs = paper_rows(base_dataset(ds), met, setting, family) if paper and like == ds else {}
    unlike = paper and like is not None and like != ds and bool(paper_rows(base_dataset(ds), met, setting, family))
    paper = bool(theirs)  # a dataset or metric the paper does not report gets no empty columns
    methods = sorted(set(stats.index.get_level_values(0)) | {m for m, _ in theirs}, key=_row_key)
    scales = sorted(set(stats.index.get_level_values(1)) | {s for _, s in theirs}, key=_scale_key)
    pct = met in PERCENT_METRICS or (runs.value <= 1.0).all()

    table_ref = TABLES.get((base_dataset(ds), setting, family)) if paper else None
    title = f"### {ds}: {met}, {setting}-resolution training, {FAMILY_NAMES.get(family, family)}"
    lines = [title + (f" (paper Table {table_ref})" if table_ref and theirs else ""), "",
             "mean ± std over runs (n = runs)" + (", in %" if pct else "")
             + ("; `paper`: the paper's number, as printed (%)" if paper else ""), ""]
    if unlike:
        lines += [f"The paper's numbers are not shown beside these: they were measured as `{like}` "
                  f"(`fskd eval {base_dataset(ds)} --protocol authors`), these as `{ds}`.", ""]
    header = ["method"]
    for s in scales:
        name = SCALE_NAMES.get(s, f"{s}x")
        header += [name, f"{name} paper"] if paper else [name]
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
            if ours is not None or (paper and (m, s) in theirs):
                cells.append({"dataset": ds, "metric": met, "setting": setting, "family": family, "row": m,
                              "scale": s,
                              "mean": "" if ours is None else f"{ours['mean']:.6f}",
                              "std": "" if ours is None or pd.isna(ours["std"]) else f"{ours['std']:.6f}",
                              "runs": 0 if ours is None else int(ours["count"]),
                              "paper": "" if (m, s) not in theirs else f"{theirs[(m, s)]:.2f}"})
        lines.append("| " + " | ".join(line) + " |")
    return "\n".join(lines), cells


def _refuse_foreign(out: Path) -> None:
    """Replace only tables fskd wrote: the Markdown has its "over runs" caption, the CSV its header."""
    md, table_csv = out.with_suffix(".md"), out.with_suffix(".csv")
    for path, mark in ((md, "over runs"), (table_csv, ",".join(CSV_FIELDS))):
        if path.is_dir() or (path.exists() and mark not in path.read_text(encoding="utf-8", errors="replace")[:8192]):
            raise FskdError(f"{path}: exists and is not a table `fskd analyze table` wrote; choose another --out")


def _other_metrics(ds: str, setting: str, family: str, rows: pd.DataFrame) -> tuple[str, list[dict[str, Any]]]:
    """The metrics besides the headline one, compactly: a row per (method, scale), a column per metric."""
    stats = rows.groupby(["row", "scale", "metric"])["value"].agg(["mean", "std", "count"])
    metrics = sorted(set(rows.metric), key=lambda m: (PERCENT_METRICS.index(m) if m in PERCENT_METRICS else 99, m))
    keys = sorted({(m, s) for m, s, _ in stats.index}, key=lambda k: (_row_key(k[0]), _scale_key(k[1])))
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
