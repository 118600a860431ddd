"""Output-folder safety: fskd writes only where it may, only inside ``--out``, and never mixes two runs' options.

Every stage that writes a folder calls :func:`claim_output` first. A folder is ours when it is new, empty,
or carries the marker ``.fskd.yaml`` that a previous fskd run left there (its kind, fskd version and
options). Anything else is a user's folder and is refused unless ``--force``; even then fskd only writes
its own files, it never deletes the user's. A rerun with different options is refused naming the first
differing key, so that a killed run's partial work is never continued under new options.

Names read from user data (pair lists, label files, archives) pass :func:`safe_name` before they become
part of a path, and every output path built from them passes :func:`inside`, so nothing escapes ``--out``.
"""

from __future__ import annotations

import os
import re
from enum import Enum
from pathlib import Path
from typing import Any

import yaml

from .. import __version__
from .errors import FskdError
from .io import check_writable, make_dirs, write_yaml
from .lock import LOCK, FolderLock, hold_folder

MARKER = ".fskd.yaml"
#: ``core.io.atomic_path`` names its temp files ``.NAME.PID.XXXXXXXX.tmp`` (mkstemp's 8 random characters).
_TEMP = re.compile(r"^\..+\.(?P<pid>\d+)\.[a-z0-9_]{8}\.tmp$")
_SHOWN = 3  # entries of a refused folder named in the error

_last_checkpoint: Path | None = None


def claim_output(folder: str | os.PathLike, kind: str, options: dict[str, Any] | None = None,
                 force: bool = False, hold: bool = False) -> FolderLock | None:
    """Make ``folder`` ours for a ``kind`` run with ``options``, or raise FskdError saying why not.

    ``options=None`` means the caller does not pin options (they are neither compared nor changed).
    With ``force`` the checks are skipped and the marker is rewritten; no existing file is removed.
    ``hold``: take the folder's writer lock (:mod:`.lock`) before anything is written there, even with
    ``force``, and return it; a folder in use by a live fskd process is refused naming it.
    """
    folder = Path(folder)
    if os.path.exists(folder) and not os.path.isdir(folder):
        raise FskdError(f"{folder}: is a file, not a folder; give --out a folder")
    check_writable(folder, folder=True)
    try:
        recorded = read_claim(folder)
    except FskdError:
        if not force:
            raise
        recorded = None
    if not force:
        if recorded is not None:
            _check_same_run(folder, recorded, kind, options)
        elif folder.is_dir() and any(p.name != LOCK for p in folder.iterdir()):  # a lock file alone claims nothing
            raise FskdError(f"{folder}: not empty and not written by fskd (holds {_first_entries(folder)}); "
                            "choose an empty folder or use --force")
    if options is None:
        options = (recorded or {}).get("options") or {}
    make_dirs(folder)
    lock = hold_folder(folder) if hold else None
    try:
        sweep_temp_files(folder)  # the lock file is not a temp file: it stays
        write_yaml(folder / MARKER, {"kind": kind, "fskd_version": __version__, "options": _plain(options)})
    except BaseException:
        if lock is not None:
            lock.release()
        raise
    return lock


def read_claim(folder: str | os.PathLike) -> dict[str, Any] | None:
    """The marker fskd left in ``folder`` (kind, fskd_version, options), or None when it has none."""
    marker = Path(folder) / MARKER
    return _read_marker(marker) if os.path.isfile(marker) else None


def inside(root: str | os.PathLike, path: str | os.PathLike) -> Path:
    """``path`` resolved (symlinks followed); FskdError if it lies outside ``root`` resolved."""
    real_root, real = Path(root).resolve(), Path(path).resolve()
    if not real.is_relative_to(real_root):
        raise FskdError(f"{path}: outside the output folder {root}")
    return real


def safe_name(name: str, source: str) -> str:
    """``name`` unchanged if it is a plain file or folder name; FskdError naming ``source`` otherwise.

    Names from user data become path components; a separator or ``..`` would let them escape ``--out``.
    """
    if not isinstance(name, str) or name in ("", ".", "..") or any(c in name for c in "/\\\0"):
        raise FskdError(f"{source}: unsafe name {name!r} (a name may not be empty, '.', '..', "
                        "or contain '/', '\\' or NUL)")
    return name


def sweep_temp_files(folder: str | os.PathLike) -> int:
    """Remove temp files that a killed fskd process left under ``folder``; return how many.

    Only files named like ``core.io.atomic_path``'s temps whose writing process is gone are removed, so a
    concurrent run writing into the same folder keeps its temp files.
    """
    removed = 0
    for parent, _dirs, files in os.walk(folder):
        for name in files:
            match = _TEMP.match(name)
            if match and not _alive(int(match["pid"])):
                Path(parent, name).unlink(missing_ok=True)
                removed += 1
    return removed


def note_checkpoint(path: str | os.PathLike) -> None:
    """Record the checkpoint just written, so that an interrupted run can say where to resume from."""
    global _last_checkpoint
    _last_checkpoint = Path(path)


def last_checkpoint() -> Path | None:
    """The checkpoint most recently recorded by :func:`note_checkpoint` in this process, if any."""
    return _last_checkpoint


def _check_same_run(folder: Path, recorded: dict[str, Any], kind: str, options: dict[str, Any] | None) -> None:
    if recorded.get("kind") != kind:
        article = "an" if kind[:1] in "aeiou" else "a"  # an import-teacher run, an analysis run
        raise FskdError(f"{folder}: holds an fskd {recorded.get('kind')!s} run, not {article} {kind} run; "
                        "choose another folder or use --force")
    if options is None:
        return
    diff = first_difference(recorded.get("options") or {}, _plain(options))
    if diff is not None:
        key, old, new = diff
        raise FskdError(f"{folder}: was written with {key}={old!r}, now {key}={new!r}; "
                        "use the same options to continue, another folder, or --force to start over")


def first_difference(old: Any, new: Any, prefix: str = "") -> tuple[str, Any, Any] | None:
    """The first (dotted key, old value, new value) where two plain option mappings differ, else None."""
    if isinstance(old, dict) and isinstance(new, dict):
        for key in sorted(set(old) | set(new), key=str):
            found = first_difference(old.get(key), new.get(key), f"{prefix}{key}.")
            if found is not None:
                return found
        return None
    return None if old == new else (prefix.rstrip(".") or "options", old, new)


def _plain(value: Any) -> Any:
    """``value`` as YAML would give it back: paths and enums as strings, tuples as lists."""
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_plain(v) for v in value]
    if isinstance(value, Enum):
        return _plain(value.value)
    if isinstance(value, os.PathLike):
        return os.fspath(value)
    return value


def _read_marker(marker: Path) -> dict[str, Any]:
    try:
        data = yaml.safe_load(marker.read_text(encoding="utf-8"))
    except (yaml.YAMLError, UnicodeDecodeError) as e:
        raise FskdError(f"{marker}: not a readable fskd marker ({type(e).__name__}); fix it or use --force") from None
    if not isinstance(data, dict):
        raise FskdError(f"{marker}: not an fskd marker (expected a mapping); fix it or use --force")
    return data


def _first_entries(folder: Path) -> str:
    names = sorted(p.name + ("/" if p.is_dir() else "") for p in folder.iterdir() if p.name != LOCK)
    shown = ", ".join(names[:_SHOWN])
    return shown + (f", ... {len(names) - _SHOWN} more" if len(names) > _SHOWN else "")


def _alive(pid: int) -> bool:
    if pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True
