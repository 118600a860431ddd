"""Fault suite: write faults. Every failure to create or write an output (a name too long, a read-only file
system, a folder without permission, a parent that is a file, /proc) is one line ``error: PATH: cannot write
(reason)``, exit 2, refused before the work when it can be foreseen, with nothing changed outside ``--out``."""

from __future__ import annotations

import errno
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest
from conftest import assert_one_line_error, run_main, tree_state

from fskd_cli.core import io as core_io
from fskd_cli.core.errors import FskdError
from fskd_cli.core.io import append_csv, check_writable, make_dirs, open_output, write_text

LONG = "n" * 300  # over NAME_MAX (255 bytes) of every common file system


def _refused(tmp_path, args, *needles):
    before = tree_state(tmp_path)
    line = assert_one_line_error(run_main(*args), "cannot write", *needles)
    assert tree_state(tmp_path) == before
    return line


# --- names too long, parents that are files -------------------------------------------------------------------

@pytest.mark.parametrize("parts", [(LONG,), ("new", LONG), (LONG, "run")])
def test_train_out_with_a_name_too_long(tmp_path, tiny_recipe, parts):
    out = tmp_path.joinpath(*parts)
    _refused(tmp_path, ("train-teacher", "--recipe", tiny_recipe, "--out", out), LONG[:50], "File name too long")


def test_prepare_out_with_a_name_too_long_is_refused_before_reading(tmp_path, monkeypatch):
    from fskd_cli.data import prepare

    monkeypatch.setattr(prepare, "_read", lambda *a, **k: pytest.fail("the source was read for a doomed --out"))
    _refused(tmp_path, ("prepare", "digits", "--out", tmp_path / LONG), "File name too long")


def test_a_default_run_name_too_long(tmp_path, tiny_recipe, monkeypatch):
    monkeypatch.chdir(tmp_path)
    _refused(tmp_path, ("train-teacher", "--recipe", tiny_recipe, "--set", f"name={LONG}"), "runs", "File name too long")


def test_eval_results_and_embed_out_with_a_name_too_long(tmp_path, tiny_teacher, tiny_digits):
    photo = next((tiny_digits / "images" / "hr").rglob("*.png"))
    _refused(tmp_path, ("eval", "digits", "--ckpt", tiny_teacher, "--data", tiny_digits, "--scale", "1",
                        "--results", tmp_path / f"{LONG}.csv"), "File name too long")
    _refused(tmp_path, ("embed", photo, "--ckpt", tiny_teacher, "--out", tmp_path / f"{LONG}.npz"), "File name too long")


def test_out_below_a_file(tmp_path, tiny_recipe):
    (tmp_path / "file").write_text("mine")
    _refused(tmp_path, ("train-teacher", "--recipe", tiny_recipe, "--out", tmp_path / "file" / "run"),
             str(tmp_path / "file" / "run"), "a parent of this folder is a file")


# --- read-only file systems and folders without permission ------------------------------------------------------

def _can_mount_read_only() -> bool:
    unshare = shutil.which("unshare")
    return unshare is not None and subprocess.run([unshare, "-rm", "true"], capture_output=True).returncode == 0


read_only_mounts = pytest.mark.skipif(not _can_mount_read_only(), reason="needs `unshare -rm` (user and mount namespaces)")


def _fskd_on_read_only(folder: Path, cwd: Path, *args) -> subprocess.CompletedProcess:
    """``fskd ARGS`` run in ``cwd`` with ``folder`` bind-mounted read-only (EROFS for real, root or not)."""
    fskd = " ".join(f"'{a}'" for a in (sys.executable, "-m", "fskd_cli", *map(str, args)))
    script = f"mount --bind '{folder}' '{folder}' && mount -o remount,bind,ro '{folder}' && cd '{cwd}' && exec {fskd}"
    env = {**os.environ, "COLUMNS": "200", "PYTHONWARNINGS": "ignore", "OMP_NUM_THREADS": "1"}
    return subprocess.run(["unshare", "-rm", "sh", "-c", script], capture_output=True, text=True, env=env, timeout=300)


@read_only_mounts
def test_default_runs_folder_in_a_read_only_working_folder(tmp_path, tiny_recipe):
    work = tmp_path / "work"
    work.mkdir()
    before = tree_state(tmp_path)
    result = _fskd_on_read_only(work, work, "train-teacher", "--recipe", tiny_recipe)
    line = assert_one_line_error(result, "runs/tiny-teacher-s0: cannot write", "Read-only file system")
    assert str(work) in line and tree_state(tmp_path) == before


@read_only_mounts
def test_out_on_a_read_only_file_system_and_resume_there(tmp_path, tiny_recipe):
    ro = tmp_path / "ro"
    ro.mkdir()
    assert run_main("train-teacher", "--recipe", tiny_recipe, "--out", ro / "done", "--steps", "2").exit_code == 0
    before = tree_state(tmp_path)
    for out, extra in ((ro / "sub" / "run", ()), (ro / "done", ("--resume", "--steps", "4"))):
        result = _fskd_on_read_only(ro, tmp_path, "train-teacher", "--recipe", tiny_recipe, "--out", out, *extra)
        assert_one_line_error(result, str(out), "cannot write", "Read-only file system")
    assert tree_state(tmp_path) == before


@pytest.mark.skipif(os.geteuid() == 0, reason="root writes through folder permissions")
def test_out_in_a_folder_without_write_permission(tmp_path, tiny_recipe):
    locked = tmp_path / "locked"
    locked.mkdir()
    locked.chmod(0o555)
    try:
        _refused(tmp_path, ("train-teacher", "--recipe", tiny_recipe, "--out", locked / "run"), "Permission denied")
    finally:
        locked.chmod(0o755)


@pytest.mark.parametrize("code", [errno.EROFS, errno.EACCES, errno.EPERM])
def test_mkdir_refused_by_the_os_is_one_line(tmp_path, tiny_recipe, monkeypatch, code):
    """What the up-front check cannot foresee (a mount made read-only meanwhile, root on a locked folder):
    the mkdir itself fails, and claim_output reports it as a write fault."""
    real_mkdir = os.mkdir

    def refuse(path, *args, **kwargs):
        if Path(path).name == "run":
            raise OSError(code, os.strerror(code), str(path))
        return real_mkdir(path, *args, **kwargs)

    monkeypatch.setattr(os, "mkdir", refuse)
    _refused(tmp_path, ("train-teacher", "--recipe", tiny_recipe, "--out", tmp_path / "run"),
             f"{tmp_path / 'run'}: cannot write ({os.strerror(code)})")


@pytest.mark.parametrize("where", ["mkstemp", "replace", "chmod"])
def test_each_step_of_an_atomic_write_is_a_write_fault(tmp_path, monkeypatch, where):
    target = tmp_path / "f.txt"
    write_text(target, "old")

    def refuse(*args, **kwargs):
        raise PermissionError(errno.EACCES, os.strerror(errno.EACCES))

    monkeypatch.setattr(tempfile if where == "mkstemp" else os, where, refuse)
    with pytest.raises(FskdError, match=rf"^{target}: cannot write \(Permission denied\)$"):
        write_text(target, "new")
    assert target.read_text() == "old" and [p.name for p in tmp_path.iterdir()] == ["f.txt"]


def test_a_temp_name_stays_under_name_max_for_a_long_file_name(tmp_path):
    name = "x" * 250 + ".csv"  # a legal name whose temp file ".NAME.PID.XXXXXXXX.tmp" would not be
    write_text(tmp_path / name, "ok")
    assert (tmp_path / name).read_text() == "ok"


# --- appended files, lock files, folders --------------------------------------------------------------------------

def test_append_and_open_output_report_write_faults(tmp_path):
    (tmp_path / "file").write_text("mine")
    with pytest.raises(FskdError, match=rf"^{tmp_path / 'file'}: cannot write \(a file is there, not a folder\)$"):
        append_csv(tmp_path / "file" / "results.csv", {"a": 1}, ["a"])
    with pytest.raises(FskdError, match=r"cannot write \(Is a directory\)"):
        open_output(tmp_path, "a")
    with pytest.raises(FskdError, match=r"cannot write \(a file is there, not a folder\)"):
        make_dirs(tmp_path / "file")
    with pytest.raises(FskdError, match=r"cannot write \(File name too long"):
        open_output(tmp_path / LONG / "x.lock", "w")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["file"]


def test_check_writable_creates_nothing(tmp_path):
    check_writable(tmp_path / "a" / "b", folder=True)
    check_writable(tmp_path / "x.npz")
    (tmp_path / "f").write_text("mine")
    check_writable(tmp_path / "f")  # a file to replace: its folder is asked
    with pytest.raises(FskdError, match="is a file, not a folder"):
        check_writable(tmp_path / "f", folder=True)
    with pytest.raises(FskdError, match="a parent of this file is a file"):
        check_writable(tmp_path / "f" / "x.npz")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["f"]


def test_read_only_file_system_seen_by_check_writable(tmp_path, monkeypatch):
    monkeypatch.setattr(os, "access", lambda *a, **k: False)
    real = os.statvfs(tmp_path)

    class ReadOnly:
        f_flag = real.f_flag | os.ST_RDONLY

    monkeypatch.setattr(os, "statvfs", lambda path: ReadOnly())
    with pytest.raises(FskdError, match=rf"^{tmp_path / 'run'}: cannot write \(Read-only file system: {tmp_path}\)$"):
        check_writable(tmp_path / "run", folder=True)


# --- /proc, and the write fault type ---------------------------------------------------------------------------------

@pytest.mark.skipif(not Path("/proc/self").is_dir(), reason="no /proc")
def test_embed_into_proc_is_a_write_fault(tmp_path, tiny_teacher, tiny_digits):
    photo = next((tiny_digits / "images" / "hr").rglob("*.png"))
    for out in ("/proc/x.npz", "/proc/fskd-test/x.npz"):
        assert_one_line_error(run_main("embed", photo, "--ckpt", tiny_teacher, "--out", out), "/proc/", "cannot write")
    assert not Path("/proc/fskd-test").exists()


def test_a_bug_in_a_write_callback_keeps_its_traceback(tmp_path):
    with pytest.raises(FileNotFoundError):
        core_io.write_atomic(tmp_path / "x.txt", lambda f: open(tmp_path / "missing.txt"))
    assert list(tmp_path.iterdir()) == []
