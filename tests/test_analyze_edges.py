"""The edges of analyze and report (issues 17, 18, 20): a model whose features overflow float32, p-values
below the float range, the report of a whole study folder, Markdown in captions, the '+Dec' heading,
TinyFace's two layouts in tables, and report outputs refused before any work."""

from __future__ import annotations

import csv
import json
import shutil
from html.parser import HTMLParser
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import PNG_MAGIC, assert_one_line_error, build_face_runs, rows_of, run_main


@pytest.fixture(scope="module")
def faces(tmp_path_factory) -> dict[str, Path]:
    return build_face_runs(tmp_path_factory.mktemp("faces"), steps=2)


def warnings_in(stderr: str) -> list[str]:
    return [line for line in stderr.splitlines() if line.startswith("warning:")]


# ---------------------------------------------------------------------------------------------------
# A model whose block-4 features are inf: a finding, not a crash


@pytest.fixture(scope="module")
def overflowing(faces, tmp_path_factory) -> Path:
    """The face student with its last block-4 BatchNorm scaled to 3e38: finite weights, inf features in B4."""
    ck = torch.load(faces["student"], weights_only=True)
    last_bn = [k for k in ck["model"] if k.startswith("layer4.") and k.endswith(".weight") and ".bn" in k][-1]
    for key in (last_bn, last_bn.replace(".weight", ".bias")):
        ck["model"][key] = torch.full_like(ck["model"][key], 3e38)
    path = tmp_path_factory.mktemp("overflow") / "f-skd" / "checkpoint.pt"
    path.parent.mkdir()
    torch.save(ck, path)
    return path


def analyze(command: str, faces, student: Path, out: Path, *more: str):
    return run_main("analyze", command, "--ckpt", student, "--teacher", faces["teacher"], "--data", faces["ver"],
                    "--scale", "4", "--split", "all", "--out", out, *more)


def test_norms_of_inf_features_are_kept_drawn_without_and_named_in_one_warning(faces, overflowing, tmp_path):
    r = analyze("norms", faces, overflowing, tmp_path, "--images", "8")
    assert r.exit_code == 0, r.stderr
    [line] = warnings_in(r.stderr)
    assert line.startswith("warning: f-skd: features not finite") and "B4 (8 of 8 images)" in line and "B3" not in line
    per_image = [x for x in rows_of(tmp_path / "norms.csv") if x["model"] == "f-skd"]
    assert {x["norm"] for x in per_image if x["block"] == "B4"} <= {"inf", "nan"}  # kept, as computed
    assert all(np.isfinite(float(x["norm"])) for x in per_image if x["block"] != "B4")
    summary = {(x["model"], x["block"]): x for x in rows_of(tmp_path / "norms_summary.csv")}
    assert summary["f-skd", "B4"]["nonfinite"] == "8" and summary["f-skd", "B4"]["p"] == ""  # no t-test on inf
    assert summary["f-skd", "B3"]["nonfinite"] == "0" and 0 <= float(summary["f-skd", "B3"]["p"]) <= 1
    assert summary["teacher", "B4"]["nonfinite"] == "0"
    assert (tmp_path / "norms.png").read_bytes()[:8] == PNG_MAGIC


def test_correlation_and_attention_of_inf_features_warn_and_draw(faces, overflowing, tmp_path):
    r = analyze("correlation", faces, overflowing, tmp_path / "c", "--images", "8")
    assert r.exit_code == 0, r.stderr
    [line] = warnings_in(r.stderr)
    assert "f-skd" in line and "B4 (8 of 8 images)" in line
    summary = {x["block"]: x["pearson_r"] for x in rows_of(tmp_path / "c" / "correlation_summary.csv")}
    assert summary["B4"] == "nan" and -1 <= float(summary["B1"]) <= 1
    assert (tmp_path / "c" / "correlation.png").read_bytes()[:8] == PNG_MAGIC

    r = analyze("attention", faces, overflowing, tmp_path / "a", "--images", "2", "--block", "4")
    assert r.exit_code == 0, r.stderr
    [line] = warnings_in(r.stderr)
    assert "f-skd" in line and "B4 (2 of 2 images)" in line
    assert (tmp_path / "a" / "attention.png").read_bytes()[:8] == PNG_MAGIC
    # the same block of a finite model: no warning
    r = analyze("attention", faces, faces["student"], tmp_path / "b", "--images", "2", "--block", "4")
    assert r.exit_code == 0 and not warnings_in(r.stderr), r.stderr


def test_attention_of_large_finite_features_is_finite():
    """Squares of float32 activations near 1e20 overflow float32; the map is computed in float64."""
    from fskd_cli.analyze.attention import attention_map

    f = torch.tensor([[[[1e20, 2e20], [3e20, 4e20]]]], dtype=torch.float32)
    maps, _ = attention_map(f, "squared")
    assert torch.isfinite(maps).all() and maps.flatten().tolist() == pytest.approx([0, 3 / 15, 8 / 15, 1])
    f[0, 0, 0, 0] = float("inf")
    assert attention_map(f, "squared")[0].isnan().all()


# ---------------------------------------------------------------------------------------------------
# p-values: one formatter, never "p = 0"


def test_p_values_below_the_float_range_are_written_as_a_bound():
    from fskd_cli.analyze.stats import format_p, parse_p, t_test

    assert format_p(0.0123) == "p = 0.0123" and format_p(4.567e-12) == "p = 4.57e-12"
    assert format_p(0.0) == format_p(5e-324) == "p < 1e-300"
    assert format_p(0.0, bare=True) == "< 1e-300" and format_p(0.5, bare=True) == "0.5"
    assert format_p(float("nan")) == "p = n/a" and format_p(None) == "" and format_p(float("nan"), bare=True) == "n/a"
    assert parse_p("< 1e-300") == 0.0 and parse_p("0.0123") == 0.0123 and parse_p("") is None
    teacher, student = np.linspace(1000, 1001, 300), np.linspace(1, 2, 300)
    assert t_test(teacher, student)[1] == 0.0  # the float underflows: the case to write as a bound


def test_norm_summary_and_report_write_p_below_1e_300(tmp_path):
    from fskd_cli.analyze.norms import SUMMARY_FIELDS, _summary
    from fskd_cli.analyze.report import _summary_table
    from fskd_cli.core.io import write_csv

    norms = {"teacher": [np.linspace(1000, 1001, 300)], "f-skd": [np.linspace(1, 2, 300)]}
    summary, pvalues = _summary(norms, "welch")
    assert pvalues["f-skd"] == [0.0] and summary[1]["p"] == "< 1e-300"
    write_csv(tmp_path / "norms_summary.csv", summary, SUMMARY_FIELDS)
    table = "\n".join(_summary_table(tmp_path / "norms_summary.csv"))
    assert r"p \< 1e-300 \*\*\*" in table and "p = 0" not in table


# ---------------------------------------------------------------------------------------------------
# The report of a study folder, read back as a browser would see it


class Page(HTMLParser):
    """The text of each heading, emphasis and table cell of an HTML page, and its image sources."""

    def __init__(self, text: str) -> None:
        super().__init__()
        self.parts: dict[str, list[str]] = {"h": [], "em": [], "td": [], "img": []}
        self.open: str | None = None
        self.feed(text)

    def handle_starttag(self, tag, attrs):
        kind = "h" if tag in ("h1", "h2", "h3", "h4") else tag
        if kind in ("h", "em", "td"):
            self.open = kind
            self.parts[kind].append("")
        elif tag == "img":
            self.parts["img"].append(dict(attrs)["src"])

    def handle_endtag(self, tag):
        if tag in ("h1", "h2", "h3", "h4", "em", "td"):
            self.open = None

    def handle_data(self, data):
        if self.open:
            self.parts[self.open][-1] += data


@pytest.fixture(scope="module")
def study(faces, tmp_path_factory) -> Path:
    """A study laid out as `make demo` writes one: runs two folders down, results.csv, reports/ with figures."""
    from fskd_cli.analyze.features import open_study
    from fskd_cli.analyze.norms import analyze_norms
    from fskd_cli.evaluate.pairs import verification_stage

    root = tmp_path_factory.mktemp("study") / "demo"
    for name in ("teacher", "f-skd"):
        shutil.copytree(faces[name if name == "teacher" else "student"].parent, root / "s0" / f"{name}")
    for name, scale in (("teacher", 1), ("f-skd", 4)):
        verification_stage(root / "s0" / name / "checkpoint.pt", faces["ver"], dataset="ver", scale=scale,
                           results=root / "results.csv", device="cpu")
    analyze_norms(open_study([root / "s0" / "f-skd" / "checkpoint.pt"], teacher=root / "s0" / "teacher" / "checkpoint.pt",
                             data=str(faces["ver"]), split=None, out=root / "reports", device="cpu"), n_images=8)
    return root


def test_report_of_a_study_folder_gathers_its_runs_results_and_figures(study, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # no results.csv here: the study's own is used
    r = run_main("report", study, "--out", tmp_path / "page.html")
    assert r.exit_code == 0, r.stderr
    page = Page((tmp_path / "page.html").read_text())
    assert {"s0/teacher", "s0/f-skd"} <= set(page.parts["td"])
    assert any(h.startswith("ver: accuracy") for h in page.parts["h"])  # the results table, from demo/results.csv
    assert sum(src.startswith("data:image/png;base64,") for src in page.parts["img"]) == 3  # 2 ROC curves + norms
    norms_caption = next(e for e in page.parts["em"] if e.startswith("Feature norm per block"))
    assert "*** = p < 0.01" in norms_caption  # literal asterisks, not emphasis
    assert not any("+Dec" in h for h in page.parts["h"])  # no decoder run in this study
    assert any("***" in c or "n.s." in c for c in page.parts["td"])  # the t-test marks of the norms summary

    r = run_main("report", study, "--out", tmp_path / "md" / "page.md")
    assert r.exit_code == 0, r.stderr
    md = (tmp_path / "md" / "page.md").read_text()
    assert r"\*\*\* = p \< 0.01" in md and "results from `" + str(study / "results.csv") in md
    links = [line[line.index("](") + 2:-1] for line in md.splitlines() if line.startswith("![")]
    assert len(links) == 3 and all((tmp_path / "md" / link).exists() for link in links)


def test_markdown_in_a_caption_or_cell_is_shown_literally():
    from fskd_cli.analyze.report import markdown_to_html, md_escape

    text = "a *b* `c` | d_e_ <f> ***"
    md = f"| {md_escape(text)} | x |\n|---|---|\n| 1 | 2 |\n\n*{md_escape(text)}*\n"
    page = Page(markdown_to_html(md, Path("."), "t"))
    assert page.parts["em"] == [text]
    assert page.parts["td"] == ["1", "2"] and "<th>a *b* `c` | d_e_ &lt;f&gt; ***</th>" in markdown_to_html(md, Path("."), "t")


def test_a_folder_with_no_run_under_it_is_refused_in_one_line(tmp_path):
    (tmp_path / "empty").mkdir()
    assert_one_line_error(run_main("report", tmp_path / "empty", "--out", tmp_path / "r.md"),
                          str(tmp_path / "empty"), "no checkpoint.pt in it", "no run folder under it")


# ---------------------------------------------------------------------------------------------------
# Tables: '+Dec' only beside a decoder run; TinyFace's native layout is not the paper's aligned test


def fake_run(root: Path, name: str, method: str, scale: str = "4", variant: str = "plain", kind: str = "student") -> str:
    """A run folder with only an eval JSON recording its training setting: all that the table reads about a run."""
    (root / name / "eval").mkdir(parents=True)
    setting = {"run": name, "kind": kind, "method": method, "scale": scale, "variant": variant}
    (root / name / "eval" / "x.json").write_text(json.dumps({"setting": setting}))
    return str(root / name / "checkpoint.pt")


def write_results(path: Path, rows: list[tuple[str, str, str, str, str, float]]) -> Path:
    with open(path, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["run", "method", "dataset", "scale", "metric", "value", "ckpt", "timestamp"])
        for i, (ckpt, method, dataset, scale, metric, value) in enumerate(rows):
            w.writerow([Path(ckpt).parent.name, method, dataset, scale, metric, value, ckpt, f"2024-01-01T00:00:{i:02d}"])
    return path


def test_table_heading_mentions_dec_only_beside_a_decoder_run(tmp_path):
    from fskd_cli.analyze.table import results_table

    plain = fake_run(tmp_path, "plain", "f-skd")
    results = write_results(tmp_path / "results.csv", [(plain, "f-skd", "ver", "4", "accuracy", 0.9)])
    heading = results_table(results, tmp_path / "t1").splitlines()[0]
    assert heading.startswith("### ver: accuracy") and "+Dec" not in heading and "decoder" not in heading
    dec = fake_run(tmp_path, "dec", "f-skd", variant="dec")
    write_results(results, [(plain, "f-skd", "ver", "4", "accuracy", 0.9), (dec, "f-skd", "ver", "4", "accuracy", 0.91)])
    md = results_table(results, tmp_path / "t2")
    assert "'+Dec': the teacher has QualNet's decoder" in md.splitlines()[0] and "| f-skd +Dec | 91.00 |" in md


def test_tinyface_native_is_its_own_table_without_the_papers_aligned_numbers(tmp_path):
    from fskd_cli.analyze.table import results_table

    aligned = fake_run(tmp_path, "aligned", "f-skd", scale="multi", variant="dec")
    native = fake_run(tmp_path, "native", "f-skd", scale="multi", variant="dec")
    results = write_results(tmp_path / "results.csv", [(aligned, "f-skd", "tinyface", "1", "rank1", 0.59),
                                                       (native, "f-skd", "tinyface[native]", "1", "rank1", 0.41)])
    md = results_table(results, tmp_path / "t", paper=True)
    ours, theirs = md.split("### tinyface[native]")[1], md.split("### tinyface[native]")[0]
    assert "(paper Table 3)" in theirs and "| f-skd +Dec | 59.00 | 59.47 |" in theirs
    assert "| f-skd +Dec | 41.00 |" in ours and "59.47" not in ours and "paper" not in ours.split("| method")[1]
    assert "measured as `tinyface` (TinyFace's aligned release" in ours and "these as `tinyface[native]`" in ours
    cells = rows_of(tmp_path / "t.csv")
    assert [c["paper"] for c in cells if c["dataset"] == "tinyface[native]" and c["row"] == "f-skd +Dec"] == [""]


# ---------------------------------------------------------------------------------------------------
# report outputs and inputs refused in one line, before any work


def test_report_refuses_a_page_format_it_does_not_write_before_any_work(tmp_path):
    for out in ("rep.pdf", "rep"):
        line = assert_one_line_error(run_main("report", tmp_path / "no-such-run", "--out", tmp_path / out),
                                     str(tmp_path / out), ".md", ".html")
        assert "no-such-run" not in line  # refused before the runs were even looked at
    assert sorted(p.name for p in tmp_path.iterdir()) == []


def test_report_refuses_a_foreign_results_csv_naming_its_columns(tmp_path):
    run = tmp_path / "run"
    run.mkdir()
    (run / "checkpoint.pt").write_bytes(b"")  # never opened: the CSV is refused first
    foreign = tmp_path / "scores.csv"
    foreign.write_text("name,score\nalice,1\n")
    assert_one_line_error(run_main("report", run, "--results", foreign, "--out", tmp_path / "page.md"),
                          str(foreign), "name,score", "--results")
    assert_one_line_error(run_main("report", run, "--results", tmp_path, "--out", tmp_path / "page.md"),
                          str(tmp_path), "is a folder")
    assert not (tmp_path / "page.md").exists()
