"""``fskd analyze compare`` and the paired column of ``fskd analyze table``: methods against a baseline, paired by
seed (and teacher), on hand-written results.csv files (no model is trained here)."""

from __future__ import annotations

import csv
import json
import math
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from conftest import PNG_MAGIC, assert_one_line_error, rows_of, run_main
from scipy import stats

from fskd_cli.core.errors import FskdError

NEW_HEADER = ["run", "method", "dataset", "scale", "seed", "teacher", "metric", "value", "ckpt", "timestamp"]
OLD_HEADER = ["run", "method", "dataset", "scale", "metric", "value", "ckpt", "timestamp"]

# the hand-computed example: differences f-skd - base over seeds 0..4 are 0.01, 0.03, -0.01, 0.02, 0.00
BASE = [0.80, 0.82, 0.85, 0.79, 0.81]
FSKD = [0.81, 0.85, 0.84, 0.81, 0.81]
# mean d = 0.05 / 5 = 0.01; squared deviations 0, 4e-4, 4e-4, 1e-4, 1e-4 sum to 1e-3, so s_d^2 = 1e-3 / 4 = 2.5e-4
# and the standard error sqrt(2.5e-4 / 5) = sqrt(5e-5) = 0.0070711; t = 0.01 / 0.0070711 = sqrt(2), 4 degrees of freedom.
# 95 % CI: t(0.975, 4) = 2.776445 (any t table), half-width 2.776445 * 0.0070711 = 0.019632 -> [-0.009632, 0.029632].
# p: for 4 degrees of freedom P(|T| < t) = x (1 + (1 - x^2) / 2) with x = t / sqrt(t^2 + 4) = 1 / sqrt(3), so
# p = 1 - (1 / sqrt(3)) * (4 / 3) = 1 - 4 / (3 sqrt(3)) = 0.2301996.
HAND = {"mean": 0.01, "low": 0.01 - 2.776445 * math.sqrt(5e-5), "high": 0.01 + 2.776445 * math.sqrt(5e-5),
        "p": 1 - 4 / (3 * math.sqrt(3))}


def write_results(path: Path, rows: list[dict], header: list[str] = NEW_HEADER) -> Path:
    """A results.csv of ``rows`` (dicts with method, seed, value and optionally run, scale, teacher, dataset, metric)."""
    with open(path, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(header)
        for i, r in enumerate(rows):
            run = r["run"] if "run" in r else f"s{r['seed']}/{r['method']}-x{r.get('scale', '8')}"
            full = {"run": Path(run).name, "method": r["method"], "dataset": r.get("dataset", "orl"),
                    "scale": r.get("scale", "8"), "seed": r.get("seed", ""), "teacher": r.get("teacher", ""),
                    "metric": r.get("metric", "accuracy"), "value": r["value"], "ckpt": r.get("ckpt", run),
                    "timestamp": f"2025-01-01T00:{i // 60:02d}:{i % 60:02d}"}
            w.writerow([full[k] for k in header])
    return path


def study(values: dict[str, list[float]], seeds: list[int] | None = None, **extra) -> list[dict]:
    """Rows of one study: method -> one value per seed (seed i, teacher s{i}/teacher for distilled students)."""
    rows = []
    for method, vals in values.items():
        for seed, v in zip(seeds or range(len(vals)), vals, strict=True):
            teacher = "" if method == "base" else f"runs/s{seed}/teacher/checkpoint.pt"
            rows.append({"method": method, "seed": seed, "value": v, "teacher": teacher, **extra})
    return rows


def test_paired_stats_match_the_hand_computed_example():
    from fskd_cli.analyze.paired import paired_stats

    s = paired_stats(np.array(FSKD), np.array(BASE))
    assert s.n == 5
    assert s.mean == pytest.approx(HAND["mean"], abs=1e-12)
    assert (s.low, s.high) == (pytest.approx(HAND["low"], abs=1e-6), pytest.approx(HAND["high"], abs=1e-6))
    assert s.p == pytest.approx(HAND["p"], abs=1e-7)


def test_paired_stats_agree_with_scipy_on_the_same_numbers():
    from fskd_cli.analyze.paired import paired_stats

    rng = np.random.default_rng(7)
    base = rng.uniform(0.7, 0.9, 7)
    method = base + rng.normal(0.01, 0.02, 7)
    s = paired_stats(method, base)
    ref = stats.ttest_rel(method, base)
    ci = ref.confidence_interval(0.95)
    assert s.p == pytest.approx(ref.pvalue, rel=1e-12)
    assert (s.low, s.high) == (pytest.approx(ci.low, rel=1e-12), pytest.approx(ci.high, rel=1e-12))
    assert s.mean == pytest.approx(float(np.mean(method - base)), rel=1e-12)


def test_fewer_than_three_pairs_give_no_number_and_equal_differences_no_p():
    from fskd_cli.analyze.paired import paired_stats

    assert paired_stats(np.array([0.9, 0.8]), np.array([0.7, 0.6])) is None
    same = paired_stats(np.array([0.9, 0.8, 0.7]), np.array([0.8, 0.7, 0.6]))
    assert same.mean == pytest.approx(0.1) and same.low == same.high == same.mean and math.isnan(same.p)


def test_format_p_names_what_a_float_cannot_hold():
    from fskd_cli.analyze.stats import format_p

    assert format_p(0.41) == "p = 0.41" and format_p(3.2e-5) == "p = 3.2e-05"
    assert format_p(0.0) == format_p(1e-320) == "p < 1e-300"
    assert format_p(float("nan")) == "p = n/a"
    assert format_p(stats.ttest_rel(np.arange(50.0) + 1e3 + np.linspace(0, 1e-9, 50), np.arange(50.0)).pvalue) == "p < 1e-300"


def test_pairing_follows_seed_and_teacher_and_names_what_it_cannot_pair():
    from fskd_cli.analyze.paired import pair_runs

    def frame(rows):
        return pd.DataFrame([{"run": r, "seed": s, "teacher": t, "value": v} for r, s, t, v in rows]).astype({"seed": "Int64"})

    # two teachers per seed: each student pairs with the base of its own teacher
    f = frame([("a0", 0, "T/a/checkpoint.pt", 0.9), ("b0", 0, "T/b", 0.8)])
    b = frame([("ba0", 0, "T/a", 0.7), ("bb0", 0, "T/b/checkpoint.pt", 0.75)])
    p = pair_runs(f, b, "f-skd", "base")
    assert sorted((x.value, x.baseline) for x in p.pairs) == [(0.8, 0.75), (0.9, 0.7)] and not p.unpaired
    # a base without a teacher pairs by seed; two students of seed 0 for one base run are ambiguous, named
    amb = pair_runs(f, frame([("base0", 0, "", 0.7)]), "f-skd", "base")
    assert not amb.pairs and len(amb.unpaired) == 2 and all("seed 0 is ambiguous" in u for u in amb.unpaired)
    # missing seeds are named on both sides; a run of unknown seed too
    f = frame([("f0", 0, "", 0.9), ("f1", 1, "", 0.9), ("f2", 2, "", 0.9), ("fx", None, "", 0.9)])
    b = frame([("b0", 0, "", 0.8), ("b3", 3, "", 0.8), ("b4", 4, "", 0.8)])
    p = pair_runs(f, b, "f-skd", "base")
    assert [x.seed for x in p.pairs] == [0]
    assert set(p.unpaired) == {"f-skd run fx has no recorded seed", "base lacks seeds 1, 2", "f-skd lacks seeds 3, 4"}


def test_compare_writes_the_hand_computed_numbers_and_names_a_missing_seed(tmp_path):
    from fskd_cli.analyze.compare import compare_results

    rows = study({"base": BASE, "f-skd": FSKD, "fitnet": [0.8, 0.8]}) + study({"fitnet": [0.83]}, seeds=[7])
    rows += [{"method": "teacher", "seed": s, "value": 0.95, "run": f"s{s}/teacher"} for s in range(5)]
    rows += study({"f-skd": [0.5]}, seeds=[9], dataset="orl[native]")  # another label: never mixed with orl
    rows += study({"base": BASE, "f-skd": FSKD}, metric="accuracy_std")  # a spread over folds: not compared
    results = write_results(tmp_path / "results.csv", rows)
    done = compare_results(results, tmp_path / "rep" / "compare")
    md = done.page
    assert "| f-skd | 8x | accuracy | +1.00 | [\u22120.96, +2.96] | 0.23 | 5 |" in md
    assert "| fitnet | 8x | accuracy | not possible: 2 pairs (3 needed) | - | - | 2 |" in md  # no number
    assert "- fitnet at 8x: base lacks seed 7; fitnet lacks seeds 2, 3, 4" in md
    assert "Not compared, no `base` run among them: `orl[native]` (single-resolution, part (a): f-skd)." in md
    assert "accuracy_std" not in md and "teacher |" not in md and "### orl[native]" not in md
    assert "not possible: 0 pairs" not in md
    table = {r["method"]: r for r in rows_of(tmp_path / "rep" / "compare.csv") if r["dataset"] == "orl"}
    assert float(table["f-skd"]["diff"]) == pytest.approx(HAND["mean"], abs=1e-6)
    assert float(table["f-skd"]["ci_low"]) == pytest.approx(HAND["low"], abs=1e-6)
    assert float(table["f-skd"]["p"]) == pytest.approx(HAND["p"], abs=1e-5)
    assert table["fitnet"]["diff"] == table["fitnet"]["p"] == "" and table["fitnet"]["pairs"] == "2"
    pairs = [r for r in rows_of(tmp_path / "rep" / "compare_pairs.csv") if r["method"] == "f-skd"]
    assert [float(r["diff"]) for r in pairs] == pytest.approx([0.01, 0.03, -0.01, 0.02, 0.0], abs=1e-9)
    png = tmp_path / "rep" / "compare_orl_single-a_accuracy.png"
    assert png.read_bytes()[:8] == PNG_MAGIC and f"]({png.name})" in md


def test_table_gets_the_paired_column(tmp_path, monkeypatch):
    from fskd_cli.analyze.table import results_table

    monkeypatch.chdir(tmp_path)
    results = write_results(tmp_path / "results.csv", study({"base": BASE, "f-skd": FSKD, "fitnet": [0.8, 0.8]}))
    md = results_table(results, tmp_path / "table")
    assert "| method | 8x | 8x \u2212 base |" in md
    assert "| f-skd | 82.40 ± 1.95 (n=5) | +1.00 [\u22120.96, +2.96] (p = 0.23, n = 5) |" in md
    assert "| fitnet | 80.00 ± 0.00 (n=2) | not possible: 2 pairs (3 needed) |" in md and "| base | 81.40" in md
    assert "- fitnet at 8x: fitnet lacks seeds 2, 3, 4" in md
    cell = next(r for r in rows_of(tmp_path / "table.csv") if r["row"] == "f-skd")
    assert cell["baseline"] == "base" and cell["pairs"] == "5" and float(cell["p"]) == pytest.approx(HAND["p"], abs=1e-5)


def fake_run(root: Path, name: str, method: str, seed: int | None) -> str:
    """A run folder with only an eval JSON recording its setting (what an old results.csv's reader can use)."""
    (root / name / "eval").mkdir(parents=True)
    setting = {"run": name, "kind": "student", "method": method, "scale": "8", "variant": "plain", "seed": seed,
               "teacher": None if method == "base" else f"runs/s{seed}/teacher/checkpoint.pt"}
    (root / name / "eval" / "orl_x8.json").write_text(json.dumps({"setting": setting}))
    return f"{name}/checkpoint.pt"


def test_old_results_csv_takes_seeds_from_eval_jsons_or_refuses_to_pair(tmp_path, monkeypatch):
    from fskd_cli.analyze.compare import compare_results
    from fskd_cli.analyze.table import results_table

    monkeypatch.chdir(tmp_path)
    rows = [{"method": m, "value": v, "ckpt": fake_run(tmp_path, f"s{i}/{m}", m, i), "run": f"s{i}/{m}"}
            for m, vals in (("base", BASE), ("f-skd", FSKD)) for i, v in enumerate(vals)]
    results = write_results(tmp_path / "results.csv", rows, OLD_HEADER)
    md = compare_results(results, tmp_path / "cmp").page
    assert "| f-skd | 8x | accuracy | +1.00 | [\u22120.96, +2.96] | 0.23 | 5 |" in md
    # no eval JSON beside the checkpoints: the seeds are unknown, said in one line, and nothing is paired
    bare = write_results(tmp_path / "bare.csv", [{**r, "ckpt": f"gone/{r['run']}"} for r in rows], OLD_HEADER)
    with pytest.raises(FskdError, match="bare.csv: the runs' seeds are unknown"):
        compare_results(bare, tmp_path / "cmp2")
    table = results_table(bare, tmp_path / "t")
    assert "\u2212 base" not in table.split("Not paired")[0] and "Not paired with `base`: the runs' seeds are unknown" in table


def test_cli_compare_end_to_end_and_bad_input_in_one_line(tmp_path):
    rows = study({"base": BASE, "f-skd": FSKD}) + study({"base": BASE, "f-skd": FSKD}, dataset="yale")
    results = write_results(tmp_path / "results.csv", rows)
    out = tmp_path / "reports" / "compare"
    r = run_main("analyze", "compare", "--results", results, "--baseline", "base", "--out", out)
    assert r.exit_code == 0, r.stderr
    assert "+1.00 | [\u22120.96, +2.96] | 0.23 | 5 |" in r.stdout
    for name in ("compare.md", "compare.csv", "compare_pairs.csv"):
        assert (out.parent / name).stat().st_size > 0
    yale = out.parent / "compare_yale_single-a_accuracy.png"
    assert (out.parent / "compare_orl_single-a_accuracy.png").read_bytes()[:8] == PNG_MAGIC and yale.exists()
    # a rerun replaces its own files, and removes the figure it no longer has data for (never mixes old and new)
    assert run_main("analyze", "compare", "--results", results, "--out", out, "--dataset", "orl").exit_code == 0
    assert not yale.exists() and "yale" not in (out.parent / "compare.csv").read_text()
    assert "Example: fskd analyze compare" in run_main("analyze", "compare", "--help").stdout
    assert_one_line_error(run_main("analyze", "compare", "--results", tmp_path / "nope.csv"), "nope.csv", "not found")
    junk = tmp_path / "junk.csv"
    junk.write_text("name,score\nx,1\n")
    assert_one_line_error(run_main("analyze", "compare", "--results", junk), "junk.csv", "missing columns")
    assert_one_line_error(run_main("analyze", "compare", "--results", results, "--baseline", "rkd", "--out", out),
                          "--baseline rkd", "no runs of it")
    mine = tmp_path / "mine.md"
    mine.write_text("my notes\n")
    assert_one_line_error(run_main("analyze", "compare", "--results", results, "--out", tmp_path / "mine"),
                          str(mine), "not an `fskd analyze compare` output")
    assert mine.read_text() == "my notes\n" and not (tmp_path / "mine.csv").exists()


def test_report_shows_the_paired_comparison_of_its_runs(tmp_path):
    from fskd_cli.analyze.report import build_report

    rows, folders = [], []
    for method, values in (("base", BASE), ("f-skd", FSKD)):
        for seed, v in enumerate(values):
            folder = tmp_path / "runs" / f"s{seed}" / method
            (folder / "eval").mkdir(parents=True)
            (folder / "checkpoint.pt").write_bytes(b"")  # the report reads the setting from the eval JSON
            setting = {"run": method, "kind": "student", "method": method, "scale": "8", "variant": "plain", "seed": seed,
                       "teacher": None, "backbone": "iresnet18", "data": "data/orl"}
            (folder / "eval" / "orl_x8.json").write_text(json.dumps({"setting": setting, "dataset": "orl", "scale": "8",
                                                                       "metrics": {"accuracy": v}}))
            rows.append({"method": method, "seed": seed, "value": v, "run": f"s{seed}/{method}", "ckpt": str(folder)})
            folders.append(folder)
    results = write_results(tmp_path / "results.csv", rows)
    page = build_report(folders, tmp_path / "rep" / "report.md", results=results).read_text()
    section = page.split("## Paired comparison with base, over seeds")[1].split("\n## ")[0]
    assert "| f-skd | 8x | accuracy | +1.00 | [\u22120.96, +2.96] | 0.23 | 5 |" in section
    link = section.split("](")[1].split(")")[0]
    assert (tmp_path / "rep" / link).read_bytes()[:8] == PNG_MAGIC and link.startswith("report_compare_")
    only_fskd = build_report(folders[5:], tmp_path / "rep2" / "report.md", results=results).read_text()
    assert "Not shown: --baseline base: no runs of it" in only_fskd
