"""``fskd analyze table``: results.csv laid out like the paper's tables, methods x scales.

Several runs of one method at one scale (seeds) become ``mean ± std`` with the run count, so a table
never hides the spread that decides whether a difference means anything.
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from ..errors import FskdError
from ..evaluate.results import RESULT_FIELDS
from ..io import write_csv, write_text

METHOD_ORDER = ["teacher", "base", "fitnet", "norm-kd", "rkd", "a-skd", "qualnet-lm", "f-skd"]


def results_table(results: Path, out: Path, *, metric: str | None = None, dataset: str | None = None) -> str:
    """Write ``out``.csv and ``out``.md; return the Markdown."""
    if not results.exists():
        raise FskdError(f"{results}: not found; run `fskd eval` first")
    df = pd.read_csv(results, dtype={"scale": str})
    missing = set(RESULT_FIELDS) - set(df.columns)
    if missing:
        raise FskdError(f"{results}: missing columns {sorted(missing)}")
    if dataset:
        df = df[df.dataset == dataset]
    if metric:
        df = df[df.metric == metric]
    if df.empty:
        raise FskdError(f"{results}: no rows for dataset={dataset or 'any'} metric={metric or 'any'}")
    # the latest value of each (run, dataset, scale, metric): re-evaluating a run does not count it twice
    df = df.sort_values("timestamp").groupby(["run", "method", "dataset", "scale", "metric"], as_index=False).last()
    g = df.groupby(["dataset", "metric", "method", "scale"])["value"]
    stats = g.agg(["mean", "std", "count"]).reset_index()
    stats["cell"] = stats.apply(_cell, axis=1)
    order = {m: i for i, m in enumerate(METHOD_ORDER)}
    scales = sorted(stats.scale.unique(), key=lambda s: (s == "multi", float(s) if s != "multi" else 0))
    tables = []
    csv_rows = []
    for (ds, met), part in stats.groupby(["dataset", "metric"]):
        pivot = part.pivot(index="method", columns="scale", values="cell").reindex(columns=[s for s in scales if s in set(part.scale)])
        pivot = pivot.loc[sorted(pivot.index, key=lambda m: (order.get(m, len(order)), m))].fillna("-")
        header = "| method | " + " | ".join(f"{s}x" for s in pivot.columns) + " |"
        lines = [f"### {ds}: {met} (mean ± std over runs, n)", "", header, "|" + "---|" * (len(pivot.columns) + 1)]
        lines += [f"| {m} | " + " | ".join(pivot.loc[m]) + " |" for m in pivot.index]
        tables.append("\n".join(lines))
        for _, r in part.iterrows():
            csv_rows.append({"dataset": ds, "metric": met, "method": r.method, "scale": r.scale, "mean": f"{r['mean']:.6f}",
                             "std": "" if pd.isna(r["std"]) else f"{r['std']:.6f}", "runs": int(r["count"])})
    md = "\n\n".join(tables) + "\n"
    out.parent.mkdir(parents=True, exist_ok=True)
    write_text(out.with_suffix(".md"), md)
    write_csv(out.with_suffix(".csv"), csv_rows, ["dataset", "metric", "method", "scale", "mean", "std", "runs"])
    return md


def _cell(r: pd.Series) -> str:
    pct = r["metric"] in ("accuracy",) or r["mean"] <= 1.0
    f = 100.0 if pct else 1.0
    if r["count"] > 1:
        return f"{r['mean'] * f:.2f} ± {r['std'] * f:.2f} (n={int(r['count'])})"
    return f"{r['mean'] * f:.2f}"
