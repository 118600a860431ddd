"""core.guard and core.io's safety: which folders fskd may write, names that cannot escape, temp sweeping,
umask, locked CSV appends and write faults reported as one line with the previous file intact."""

from __future__ import annotations

import errno
import multiprocessing
import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from conftest import assert_one_line_error, run_main

from fskd_cli.core import guard
from fskd_cli.core.errors import FskdError
from fskd_cli.core.io import append_csv, atomic_path, write_text


def test_claim_new_and_empty_folder_writes_marker(tmp_path):
    guard.claim_output(tmp_path / "new" / "run", "prepare", {"size": 112, "src": Path("/data")})
    empty = tmp_path / "empty"
    empty.mkdir()
    guard.claim_output(empty, "eval")
    marker = yaml.safe_load((tmp_path / "new" / "run" / guard.MARKER).read_text())
    assert marker["kind"] == "prepare" and marker["options"] == {"size": 112, "src": "/data"}
    assert guard.read_claim(empty)["kind"] == "eval"


def test_claim_refuses_a_users_folder_naming_what_is_there(tmp_path):
    for name in ("a.txt", "b.txt", "c.txt", "d.txt"):
        (tmp_path / name).write_text("mine")
    with pytest.raises(FskdError, match=r"not empty and not written by fskd \(holds a.txt, b.txt, c.txt, \.\.\. 1 more\)"
                                        r".*--force"):
        guard.claim_output(tmp_path, "prepare")
    assert not (tmp_path / guard.MARKER).exists()
    guard.claim_output(tmp_path, "prepare", force=True)
    assert (tmp_path / "a.txt").read_text() == "mine" and (tmp_path / guard.MARKER).exists()


def test_claim_refuses_a_file(tmp_path):
    (tmp_path / "f").write_text("x")
    with pytest.raises(FskdError, match="is a file, not a folder"):
        guard.claim_output(tmp_path / "f", "train")
    with pytest.raises(FskdError, match="a parent of this folder is a file"):
        guard.claim_output(tmp_path / "f" / "sub", "train")


def test_claim_reruns_same_options_refuses_changed_kind_or_option(tmp_path):
    guard.claim_output(tmp_path, "prepare", {"size": 112, "split": {"test": 0.1, "seed": 0}})
    (tmp_path / "manifest.csv").write_text("partial")
    guard.claim_output(tmp_path, "prepare", {"size": 112, "split": {"seed": 0, "test": 0.1}})
    with pytest.raises(FskdError, match=r"split.test=0.1, now split.test=0.2"):
        guard.claim_output(tmp_path, "prepare", {"size": 112, "split": {"test": 0.2, "seed": 0}})
    with pytest.raises(FskdError, match="holds an fskd prepare run, not a teacher run"):
        guard.claim_output(tmp_path, "teacher")
    guard.claim_output(tmp_path, "prepare")  # options not pinned: neither compared nor forgotten
    assert guard.read_claim(tmp_path)["options"]["split"]["test"] == 0.1
    guard.claim_output(tmp_path, "prepare", {"size": 64}, force=True)
    assert guard.read_claim(tmp_path)["options"] == {"size": 64}
    assert (tmp_path / "manifest.csv").read_text() == "partial"


def test_claim_corrupt_marker_is_one_line_unless_force(tmp_path):
    (tmp_path / guard.MARKER).write_text("- just\n- a list\n")
    with pytest.raises(FskdError, match="not an fskd marker"):
        guard.claim_output(tmp_path, "prepare")
    guard.claim_output(tmp_path, "prepare", force=True)
    assert guard.read_claim(tmp_path)["kind"] == "prepare"


def test_first_difference_reports_missing_keys():
    assert guard.first_difference({"a": 1}, {"a": 1}) is None
    assert guard.first_difference({"a": 1}, {"a": 1, "b": 2}) == ("b", None, 2)
    assert guard.first_difference({"a": {"x": [1, 2]}}, {"a": {"x": [1, 3]}}) == ("a.x", [1, 2], [1, 3])


def test_inside(tmp_path):
    assert guard.inside(tmp_path, tmp_path / "a" / "b.png") == (tmp_path / "a" / "b.png").resolve()
    with pytest.raises(FskdError, match="outside the output folder"):
        guard.inside(tmp_path / "out", tmp_path / "out" / ".." / "escaped.png")
    (tmp_path / "out").mkdir()
    (tmp_path / "out" / "link").symlink_to(tmp_path)
    with pytest.raises(FskdError, match="outside the output folder"):
        guard.inside(tmp_path / "out", tmp_path / "out" / "link" / "x.png")


@pytest.mark.parametrize("name", ["", ".", "..", "../x", "a/b", "a\\b", "a\0b", "/etc"])
def test_safe_name_rejects(name):
    with pytest.raises(FskdError, match=r"^pairs.txt: unsafe name"):
        guard.safe_name(name, "pairs.txt")


def test_safe_name_accepts_plain_names():
    assert guard.safe_name("Aaron_Eckhart", "pairs.txt") == "Aaron_Eckhart"
    assert guard.safe_name("x..y.jpg", "pairs.txt") == "x..y.jpg"


def test_sweep_removes_only_dead_processes_temp_files(tmp_path):
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    dead_pid = int(dead.stdout)
    (tmp_path / "sub").mkdir()
    orphan = tmp_path / "sub" / f".checkpoint.pt.{dead_pid}.abcd1234.tmp"
    live = tmp_path / f".meta.yaml.{os.getpid()}.abcd1234.tmp"
    user = tmp_path / ".notes.1.tmp"
    for p in (orphan, live, user):
        p.write_text("x")
    assert guard.sweep_temp_files(tmp_path) == 1
    assert not orphan.exists() and live.exists() and user.exists()


def test_atomic_path_temp_names_match_the_sweep_pattern(tmp_path):
    with atomic_path(tmp_path / "x.pt") as tmp:
        assert guard._TEMP.match(tmp.name)
        assert f".{os.getpid()}." in tmp.name
        tmp.write_text("x")


def test_written_files_honour_the_umask(tmp_path):
    code = ("import os, sys; os.umask(0o027); from fskd_cli.core.io import write_text; "
            "write_text(sys.argv[1], 'x'); print(oct(os.stat(sys.argv[1]).st_mode & 0o777))")
    out = subprocess.run([sys.executable, "-c", code, str(tmp_path / "f.txt")], capture_output=True, text=True)
    assert out.stdout.strip() == "0o640", out.stderr


def test_write_fault_is_one_line_and_keeps_previous_file(tmp_path, monkeypatch):
    target = tmp_path / "meta.yaml"
    write_text(target, "old")

    def full_disk(src, dst):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(os, "replace", full_disk)
    with pytest.raises(FskdError, match=rf"^{target}: cannot write \(No space left on device\)$"):
        write_text(target, "new")
    assert target.read_text() == "old"
    assert [p.name for p in tmp_path.iterdir()] == ["meta.yaml"]


def test_other_oserrors_are_not_hidden(tmp_path):
    with pytest.raises(FileNotFoundError):
        with atomic_path(tmp_path / "x.txt"):
            open(tmp_path / "missing.txt")


def test_file_size_limit_is_a_write_fault(tmp_path):
    code = ("import resource, signal, sys; signal.signal(signal.SIGXFSZ, signal.SIG_IGN); "
            "resource.setrlimit(resource.RLIMIT_FSIZE, (1000, 1000)); from fskd_cli.core.io import write_text\n"
            "from fskd_cli.core.errors import FskdError\n"
            "try:\n write_text(sys.argv[1], 'x' * 5000)\nexcept FskdError as e:\n print(e)")
    out = subprocess.run([sys.executable, "-c", code, str(tmp_path / "big.txt")], capture_output=True, text=True)
    assert out.stdout.strip() == f"{tmp_path / 'big.txt'}: cannot write (File too large)", out.stderr
    assert list(tmp_path.iterdir()) == []


def test_append_csv_refuses_another_header(tmp_path):
    csv_path = tmp_path / "results.csv"
    csv_path.write_text("name,score\nmine,1\n")
    with pytest.raises(FskdError, match="a CSV with columns 'name,score'"):
        append_csv(csv_path, {"run": "r", "acc": 1}, ["run", "acc"])
    assert csv_path.read_text() == "name,score\nmine,1\n"
    with pytest.raises(FskdError, match="is a folder"):
        append_csv(tmp_path, {"run": "r"}, ["run"])


def _append_many(path: str, start: int) -> None:
    for i in range(start, start + 50):
        append_csv(path, {"run": f"r{i}", "acc": i}, ["run", "acc"])


def test_concurrent_creators_write_one_header(tmp_path):
    path = str(tmp_path / "results.csv")
    ctx = multiprocessing.get_context("spawn")
    procs = [ctx.Process(target=_append_many, args=(path, k * 50)) for k in range(3)]
    for p in procs:
        p.start()
    for p in procs:
        p.join()
    lines = Path(path).read_text().splitlines()
    assert lines.count("run,acc") == 1 and lines[0] == "run,acc"
    assert sorted(lines[1:]) == sorted(f"r{i},{i}" for i in range(150))


def test_note_checkpoint(monkeypatch):
    monkeypatch.setattr(guard, "_last_checkpoint", None)
    assert guard.last_checkpoint() is None
    guard.note_checkpoint("/runs/t/checkpoint.pt")
    assert guard.last_checkpoint() == Path("/runs/t/checkpoint.pt")


def _main_raising(monkeypatch, exc: BaseException):

    import fskd_cli.cli as cli

    def app(**_):
        raise exc

    monkeypatch.setattr(cli, "app", app)
    return run_main()


def test_main_prints_a_user_error_as_one_literal_line(monkeypatch):
    result = _main_raising(monkeypatch, FskdError("runs/[bold]x[/]: bad\nsecond line"))
    assert assert_one_line_error(result, "runs/[bold]x[/]: bad second line") == "error: runs/[bold]x[/]: bad second line"


def test_main_ctrl_c_names_the_last_checkpoint(monkeypatch):
    monkeypatch.setattr(guard, "_last_checkpoint", None)
    result = _main_raising(monkeypatch, KeyboardInterrupt())
    assert result.exit_code == 130 and result.stderr.startswith("interrupted; no checkpoint")
    guard.note_checkpoint("runs/t/checkpoint.pt")
    result = _main_raising(monkeypatch, KeyboardInterrupt())
    assert result.stderr.strip() == ("interrupted; last checkpoint: runs/t/checkpoint.pt "
                                     "(continue with the same command and --resume)")


def test_main_keeps_a_bugs_traceback(monkeypatch):
    with pytest.raises(ZeroDivisionError):
        _main_raising(monkeypatch, ZeroDivisionError("a bug"))


def test_main_sees_ctrl_c_behind_typers_exit_code(monkeypatch):
    import fskd_cli.cli as cli

    def app(**_):
        return 130  # what typer returns for Ctrl-C when main() runs it without standalone mode

    monkeypatch.setattr(cli, "app", app)
    monkeypatch.setattr(guard, "_last_checkpoint", None)
    result = run_main()
    assert result.exit_code == 130 and result.stderr.startswith("interrupted;")
    monkeypatch.setattr(cli, "app", lambda **_: sys.exit(3))
    assert run_main() == type(result)(3, "", "")


def test_append_csv_refuses_a_device():
    with pytest.raises(FskdError, match="not a regular file"):
        append_csv("/dev/full", {"run": "r"}, ["run"])  # reading its "header" would never end
