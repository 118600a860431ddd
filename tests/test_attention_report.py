"""``fskd analyze attention`` (Figure 3), norms/correlation on an iResNet face model (Figures 4-5, paired
t-test), ``fskd analyze table --paper`` (Tables 1-5) and ``fskd report``, on tiny face-like sets."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import pytest
import torch
from conftest import PNG_MAGIC, assert_one_line_error, build_face_runs, rows_of, run_cli

from fskd_cli.core.errors import FskdError
from fskd_cli.core.scale import Scale


@pytest.fixture(scope="module")
def faces(tmp_path_factory) -> dict[str, Path]:
    return build_face_runs(tmp_path_factory.mktemp("faces"), steps=2)


def study(faces, out, **kw):
    from fskd_cli.analyze.features import open_study

    kw.setdefault("data", str(faces["ver"]))
    kw.setdefault("split", None)
    return open_study([faces["student"]], teacher=faces["teacher"], out=out, device="cpu", **kw)


def test_signed_attention_map_is_the_channel_mean_scaled_to_unit_range():
    from fskd_cli.analyze.attention import attention_map

    f = torch.tensor([[[[1.0, 3.0], [5.0, 7.0]], [[3.0, 5.0], [7.0, 9.0]]]])  # channel means 2, 4, 6, 8
    maps, ranges = attention_map(f, "signed")
    assert maps[0].flatten().tolist() == pytest.approx([0.0, 1 / 3, 2 / 3, 1.0])
    assert ranges[0].tolist() == [2.0, 8.0]
    assert attention_map(torch.ones(2, 3, 4, 4), "signed")[0].eq(0).all()  # nothing to show: zeros, not NaN


def test_squared_attention_map_is_the_authors_mean_of_squares():
    from fskd_cli.analyze.attention import attention_map

    # channel 1 is channel 0 negated: the signed mean is 0 everywhere, the mean of squares 1, 1, 9, 9
    f = torch.tensor([[[[1.0, 1.0], [3.0, 3.0]], [[-1.0, -1.0], [-3.0, -3.0]]]])
    maps, ranges = attention_map(f, "squared")
    assert maps[0].flatten().tolist() == pytest.approx([0.0, 0.0, 1.0, 1.0])
    norm = (2 * 1 + 2 * 81) ** 0.5  # the map L2-normalised, as the authors' helper does
    assert ranges[0].tolist() == pytest.approx([1 / norm, 9 / norm])
    assert attention_map(f, "signed")[0].eq(0).all()


def test_attention_figure_hr_teacher_beside_lr_students(faces, tmp_path):
    out = tmp_path / "att"
    first, second = "images/hr/0/0.png", "images/hr/3/1.png"
    r = run_cli("analyze", "attention", "--teacher", faces["teacher"], "--ckpt", faces["student"],
                "--data", faces["ver"], "--scale", "8", "--image", first, "--image", second, "--out", out,
                "--attention", "signed")
    assert r.returncode == 0, r.stderr
    assert (out / "attention.png").read_bytes()[:8] == PNG_MAGIC
    rows = rows_of(out / "attention.csv")
    assert [(x["image"], x["model"], x["input"], x["attention"]) for x in rows] == [
        (first, "teacher", "HR", "signed"), (second, "teacher", "HR", "signed"), (first, "f-skd", "x8 LR", "signed"),
        (second, "f-skd", "x8 LR", "signed")]
    assert_one_line_error(run_cli("analyze", "attention", "--teacher", faces["teacher"], "--ckpt", faces["student"],
                                  "--data", faces["ver"], "--image", "images/hr/nobody.png", "--out", out),
                          "manifest.csv: no usable image 'images/hr/nobody.png'")


def test_attention_stage_random_faces_and_block_choice(faces, tmp_path):
    from fskd_cli.analyze.attention import analyze_attention

    res = analyze_attention(study(faces, tmp_path, scale=Scale.x4), n_images=3, block=2)
    rows = rows_of(tmp_path / "attention.csv")
    assert len(res["images"]) == 3 and {r["block"] for r in rows} == {"B2"} and {r["attention"] for r in rows} == {"squared"}
    with pytest.raises(FskdError, match="--block must be 1..4, got 5"):
        analyze_attention(study(faces, tmp_path, scale=Scale.x4), block=5)
    from fskd_cli.analyze.features import open_study

    with pytest.raises(FskdError, match="a student checkpoint .* but a teacher checkpoint is needed"):
        open_study([faces["student"]], teacher=faces["student"], out=tmp_path)


def test_norms_and_correlation_on_an_iresnet_with_the_paired_t_test(faces, tmp_path):
    args = ["--teacher", faces["teacher"], "--ckpt", faces["student"], "--data", faces["ver"], "--scale", "4",
            "--out", tmp_path, "--images", "12"]
    r = run_cli("analyze", "norms", *args, "--test", "paired")
    assert r.returncode == 0, r.stderr
    summary = rows_of(tmp_path / "norms_summary.csv")
    assert {s["n"] for s in summary} == {"12"}
    student = [s for s in summary if s["model"] == "f-skd"]
    assert [s["block"] for s in student] == ["B1", "B2", "B3", "B4"]
    assert all(s["test"] == "paired" and 0 <= float(s["p"]) <= 1 for s in student)
    r = run_cli("analyze", "correlation", *args)
    assert r.returncode == 0, r.stderr
    assert len(rows_of(tmp_path / "correlation_summary.csv")) == 4
    for f in ("norms.png", "correlation.png"):
        assert (tmp_path / f).read_bytes()[:8] == PNG_MAGIC


def fake_run(root: Path, name: str, kind: str, method: str | None = None, scale: str = "4",
             variant: str = "plain") -> str:
    """A run folder with only an eval JSON recording its training setting: all that the table reads about a run."""
    folder = root / name
    (folder / "eval").mkdir(parents=True)
    setting = {"run": folder.name, "kind": kind, "method": method or "teacher", "scale": scale, "variant": variant}
    (folder / "eval" / "agedb_x4.json").write_text(json.dumps({"setting": setting}))
    return f"{name}/checkpoint.pt"


def write_results(path: Path, rows: list[tuple[str, str, str, str, str, float]]) -> None:
    with open(path, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["run", "method", "dataset", "scale", "metric", "value", "ckpt", "timestamp"])
        for i, (ckpt, method, dataset, scale, metric, value) in enumerate(rows):
            w.writerow([Path(ckpt).parent.name, method, dataset, scale, metric, value, ckpt, f"2024-01-01T00:00:{i:02d}"])


def test_table_lays_results_out_like_the_paper(tmp_path, monkeypatch):
    from fskd_cli.analyze.table import results_table

    monkeypatch.chdir(tmp_path)
    ag = "agedb[authors]"  # the paper's AgeDB numbers come from the authors' protocol
    t = fake_run(tmp_path, "t", "teacher", scale="1")
    s0 = fake_run(tmp_path, "s0/f-skd", "student", "f-skd")
    s1 = fake_run(tmp_path, "s1/f-skd", "student", "f-skd")
    b = fake_run(tmp_path, "s0/base", "student", "base")
    fake_run(tmp_path, "td", "teacher", scale="1", variant="dec")  # Table 2(a)'s teacher
    m = fake_run(tmp_path, "multi/f-skd", "student", "f-skd", scale="multi", variant="dec")
    rows = [(t, "teacher", ag, "1", "accuracy", 0.92), (s0, "f-skd", ag, "4", "accuracy", 0.870),
            (s1, "f-skd", ag, "4", "accuracy", 0.880), (s0, "f-skd", ag, "4", "accuracy", 0.860),
            (b, "base", ag, "4", "accuracy", 0.85), (s0, "f-skd", "agedb", "4", "accuracy", 0.875)]
    rows += [(m, "f-skd", ag, s, "accuracy", v) for s, v in (("1", 0.92), ("2", 0.91), ("4", 0.87), ("8", 0.76))]
    write_results(tmp_path / "results.csv", rows)

    md = results_table(tmp_path / "results.csv", tmp_path / "table", paper=True)
    single, multi = md.split(f"### {ag}: accuracy, multi")[0], md.split(f"### {ag}: accuracy, multi")[1]
    single = single.split(f"### {ag}: accuracy, single")[1]
    assert "(paper Table 1(a), 4)" in single
    assert "| method | 1x | 1x paper | 2x | 2x paper | 4x | 4x paper | 8x | 8x paper |" in single
    # two seeds (the re-evaluated s0 counts once, with its latest value 0.86); the paper's 87.42 beside them
    assert "| f-skd | - | - | - | 92.52 | 87.00 ± 1.41 (n=2) | 87.42 | - | 75.97 |" in single
    assert "| teacher | 92.00 | 92.63 |" in single and "| norm-kd | - | - | - | - | - | 85.18 |" in single
    assert "(paper Table 2(a))" in multi and "Average" in multi
    assert "| f-skd +Dec | 92.00 | 92.90 | 91.00 | 91.88 | 87.00 | 87.35 | 76.00 | 76.02 | 86.50 | 87.04 |" in multi
    # Table 1(a)'s rows in the paper's order: both teachers, Base, FitNet, RKD, F-SKD, QualNet-LM, F-SKD (+Dec)
    order = [line.split(" | ")[0][2:] for line in single.splitlines() if line.startswith("| ") and "---" not in line]
    assert order == ["method", "teacher", "teacher +Dec", "base", "fitnet", "norm-kd", "rkd", "f-skd", "qualnet-lm",
                     "f-skd +Dec"]
    # the insightface-protocol row is its own table, with no paper numbers beside it, and says why
    insightface = md.split("### agedb: accuracy, single")[1].split("###")[0]
    assert "| method | 4x |" in insightface and "| f-skd | 87.50 |" in insightface
    assert "not shown beside these: they were measured as `agedb[authors]`" in insightface
    cells = rows_of(tmp_path / "table.csv")
    assert {"setting", "family", "row", "paper"} <= set(cells[0])
    assert any(c["row"] == "f-skd" and c["scale"] == "4" and c["runs"] == "2" and c["paper"] == "87.42" for c in cells)
    assert not any(c["dataset"] == "agedb" and c["paper"] for c in cells)
    # without --paper: no paper columns
    assert "paper" not in results_table(tmp_path / "results.csv", tmp_path / "plain").split("\n")[4]


def test_table_variants_follow_the_recorded_settings(tmp_path, monkeypatch):
    from fskd_cli.analyze.table import results_table

    monkeypatch.chdir(tmp_path)
    tc = fake_run(tmp_path, "tc", "teacher", scale="1", variant="cbam")
    a = fake_run(tmp_path, "askd", "student", "a-skd", scale="multi", variant="cbam")
    q = fake_run(tmp_path, "fskd-dec", "student", "f-skd", scale="multi", variant="dec")
    write_results(tmp_path / "results.csv", [(a, "a-skd", "tinyface", "1", "rank1", 0.55),
                                             (q, "f-skd", "tinyface", "1", "rank1", 0.59),
                                             (tc, "teacher", "svhn", "1", "accuracy", 0.94)])
    md = results_table(tmp_path / "results.csv", tmp_path / "t", paper=True)
    assert "### tinyface: rank1, multi-resolution training, teacher and student with CBAM" in md
    assert "| a-skd | 55.00 | 55.42 |" in md
    assert "QualNet's decoder" in md and "| f-skd +Dec | 59.00 | 59.47 |" in md
    assert "| base | - | 57.30 |" in md  # the paper's row we have no run for
    assert "### svhn: accuracy, single-resolution training, teacher and student with CBAM" in md and "(paper Table 5(b))" in md


def test_run_setting_reads_variant_and_scale_from_checkpoints(faces):
    from fskd_cli.core.checkpoint import load_checkpoint
    from fskd_cli.core.runs import RunSetting

    teacher, student = (RunSetting.of(load_checkpoint(faces[k])) for k in ("teacher", "student"))
    assert (teacher.kind, teacher.method, teacher.scale, teacher.variant) == ("teacher", "teacher", "1", "plain")
    assert (student.method, student.scale, student.teacher) == ("f-skd", "4", str(faces["teacher"]))
    assert student.backbone == "iresnet18 (width 4)" and student.legend == "f-skd"


def test_report_gathers_tables_evals_and_figures(faces, tmp_path):
    from fskd_cli.evaluate.pairs import verification_stage

    results = tmp_path / "results.csv"
    for ck, scale in ((faces["teacher"], 1), (faces["student"], 4)):
        verification_stage(ck, faces["ver"], dataset="ver", scale=scale, results=results)
    figs = tmp_path / "att"
    from fskd_cli.analyze.attention import analyze_attention

    analyze_attention(study(faces, figs, scale=Scale.x4), n_images=2)
    runs = [faces["teacher"].parent, faces["student"].parent]
    out = tmp_path / "rep" / "report.md"
    r = run_cli("report", *runs, "--results", results, "--figures", figs, "--out", out)
    assert r.returncode == 0, r.stderr
    md = out.read_text()
    assert "## Runs" in md and "| teacher | teacher |" in md and "| f-skd | student | F-SKD | 4x |" in md
    assert "#### ver: accuracy" in md and "| f-skd |" in md
    assert "| f-skd | ver | 4x | insightface; left 4x, right 4x | 40 pairs | accuracy " in md
    links = [line[line.index("](") + 2:-1] for line in md.splitlines() if line.startswith("![")]
    assert len(links) == 3 and all((out.parent / link).exists() for link in links)  # 2 ROC + attention
    html_out = tmp_path / "rep" / "report.html"
    r = run_cli("report", *runs, "--results", results, "--figures", figs, "--out", html_out)
    assert r.returncode == 0, r.stderr
    page = html_out.read_text()
    assert page.count("data:image/png;base64,") == 3 and "<table>" in page and "<h2>Runs</h2>" in page
    assert_one_line_error(run_cli("report", tmp_path, "--out", out), "not a run folder (no checkpoint.pt in it)")
    assert run_cli("report", *runs, "--results", results, "--out", out).returncode == 0  # its own page: replaced
    notes = tmp_path / "notes.html"
    notes.write_text("my notes")
    assert_one_line_error(run_cli("report", *runs, "--out", notes), str(notes), "not an `fskd report` output")
    assert notes.read_text() == "my notes"
    assert json.loads((runs[1] / "eval" / "ver_x4_insightface.json").read_text())["protocol"] == "insightface"


def test_new_commands_have_help_with_an_example():
    for cmd in (["report", "--help"], ["analyze", "attention", "--help"]):
        r = run_cli(*cmd)
        assert r.returncode == 0 and "Example" in r.stdout, cmd


def test_analyze_as_typed_takes_teacher_data_and_scale_from_the_student(faces, tmp_path):
    """`fskd analyze norms --ckpt student.pt`: nothing else given; the figures go beside the run."""
    for command, figure in (("norms", "norms.png"), ("correlation", "correlation.png"), ("attention", "attention.png")):
        r = run_cli("analyze", command, "--ckpt", faces["student"], cwd=tmp_path)
        assert r.returncode == 0, r.stderr
        assert (faces["student"].parent / "analysis" / figure).read_bytes()[:8] == PNG_MAGIC
    summary = rows_of(faces["student"].parent / "analysis" / "norms_summary.csv")
    assert {s["model"] for s in summary} == {"teacher", "f-skd"}
    assert "x4 LR" in {r["input"] for r in rows_of(faces["student"].parent / "analysis" / "attention.csv")}


def test_analyze_names_a_missing_teacher_in_one_line(faces, tmp_path):
    ck = torch.load(faces["student"], weights_only=True)
    ck["teacher"] = str(tmp_path / "gone" / "checkpoint.pt")
    moved = tmp_path / "moved" / "checkpoint.pt"
    moved.parent.mkdir()
    torch.save(ck, moved)
    assert_one_line_error(run_cli("analyze", "norms", "--ckpt", moved), f"{tmp_path / 'gone' / 'checkpoint.pt'}: teacher "
                          "checkpoint not found", "give --teacher")
    assert_one_line_error(run_cli("analyze", "norms", "--ckpt", moved, "--teacher", faces["teacher"], "--out",
                                  faces["ver"] / "meta.yaml"), "is a file; --out names a folder")


def test_students_of_different_teachers_need_one_named(faces, tmp_path):
    ck = torch.load(faces["student"], weights_only=True)
    ck["teacher"] = str(faces["student"])  # another teacher than the first student's
    other = tmp_path / "other" / "checkpoint.pt"
    other.parent.mkdir()
    torch.save(ck, other)
    assert_one_line_error(run_cli("analyze", "norms", "--ckpt", faces["student"], "--ckpt", other, "--out", tmp_path / "o"),
                          "--ckpt: the students were distilled from different teachers", "give --teacher")


def test_analyze_refuses_a_users_folder_unless_forced_and_keeps_their_files(faces, tmp_path):
    mine = tmp_path / "mine"
    mine.mkdir()
    (mine / "norms.csv").write_text("my own numbers\n")
    args = ("analyze", "norms", "--ckpt", faces["student"], "--images", "8", "--out", mine)
    assert_one_line_error(run_cli(*args), str(mine), "--force")
    assert (mine / "norms.csv").read_text() == "my own numbers\n" and not (mine / "norms.png").exists()
    r = run_cli(*args, "--force")
    assert r.returncode == 0, r.stderr
    assert (mine / "norms.png").read_bytes()[:8] == PNG_MAGIC


def test_table_replaces_its_own_files_only(tmp_path, monkeypatch):
    from fskd_cli.analyze.table import results_table

    monkeypatch.chdir(tmp_path)
    s = fake_run(tmp_path, "s0/f-skd", "student", "f-skd")
    write_results(tmp_path / "results.csv", [(s, "f-skd", "agedb", "4", "accuracy", 0.87)])
    results_table(tmp_path / "results.csv", tmp_path / "t")
    results_table(tmp_path / "results.csv", tmp_path / "t")  # fskd's own table: replaced
    (tmp_path / "mine.csv").write_text("my,own\n")
    with pytest.raises(FskdError, match="mine.csv: exists and is not an `fskd analyze table` output"):
        results_table(tmp_path / "results.csv", tmp_path / "mine")
    assert (tmp_path / "mine.csv").read_text() == "my,own\n" and not (tmp_path / "mine.md").exists()
