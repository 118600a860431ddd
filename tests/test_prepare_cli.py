"""`fskd prepare KIND`: subcommands generated from the reader registry, defaults, --scales, reruns (issues 10, 14)."""

from __future__ import annotations

import pytest
import yaml
from conftest import assert_one_line_error, encode, pattern, run_main, write_insightface_rec

from fskd_cli.data.prepare_options import COMMON_OPTIONS
from fskd_cli.data.readers import READERS


@pytest.mark.parametrize("kind", sorted(READERS))
def test_each_reader_is_a_subcommand_with_its_declared_options_and_an_example(kind, monkeypatch):
    monkeypatch.setenv("COLUMNS", "250")
    result = run_main("prepare", kind, "--help")
    assert result.exit_code == 0, result.stderr
    assert f"Example: fskd prepare {kind}" in result.stdout
    for option in (*READERS[kind].options, *COMMON_OPTIONS):
        assert option.flag in result.stdout, option.flag
    assert "--out" in result.stdout and f"data/{kind}" in result.stdout and "--force" in result.stdout


def test_prepare_lists_every_kind_and_holdout(monkeypatch):
    monkeypatch.setenv("COLUMNS", "250")
    listed = run_main("prepare", "--help").stdout
    assert all(f" {kind} " in listed for kind in (*READERS, "holdout"))


def test_digits_writes_data_digits_by_default_with_only_the_scales_asked(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    result = run_main("prepare", "digits", "--limit", "40", "--scales", "1,4")
    assert result.exit_code == 0, result.stderr
    meta = yaml.safe_load((tmp_path / "data" / "digits" / "meta.yaml").read_text())
    assert meta["scales"] == [1, 4] and meta["counts"]["rows"] == 40 and meta["task"] == "classification"
    assert meta["prepare"]["scales"] == [1, 4] and meta["split_seed"] == 0
    images = tmp_path / "data" / "digits" / "images"
    assert sorted(p.name for p in images.iterdir()) == ["hr", "x4"]


def test_rec_hr_only_then_a_rerun_with_other_scales_is_refused_naming_them(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    write_insightface_rec(tmp_path, [(i // 2, encode(pattern(i))) for i in range(4)])
    assert run_main("prepare", "rec", "train.rec", "--scales", "1").exit_code == 0
    assert yaml.safe_load((tmp_path / "data" / "rec" / "meta.yaml").read_text())["scales"] == [1]
    assert not (tmp_path / "data" / "rec" / "images" / "x2").exists()
    assert_one_line_error(run_main("prepare", "rec", "train.rec"), "data/rec", "scales=[1], now scales=[1, 2, 4, 8]",
                          "--force")
    assert run_main("prepare", "rec", "train.rec", "--force").exit_code == 0
    assert (tmp_path / "data" / "rec" / "images" / "x8" / "1" / "4.png").exists()


@pytest.mark.parametrize("args, needles", [
    (["prepare", "rec", "train.rec", "--scales", "3"], ["--scales must be among 1, 2, 4, 8"]),
    (["prepare", "rec", "train.rec", "--scales", "x"], ["--scales must be a comma list"]),
    (["prepare", "rec", "train.rec", "--workers", "0"], ["--workers must be at least 1"]),
    (["prepare", "digits", "--test-fraction", "1.5"], ["--test-fraction must be below 1"]),
])
def test_bad_option_values_are_one_line_errors(tmp_path, monkeypatch, args, needles):
    monkeypatch.chdir(tmp_path)
    write_insightface_rec(tmp_path, [(0, encode(pattern(0)))])
    assert_one_line_error(run_main(*args), *needles)
    assert not (tmp_path / "data").exists()  # refused before anything is written
