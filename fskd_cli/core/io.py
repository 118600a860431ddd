"""Atomic writes, and every other way fskd creates an output: folders, appended files, lock files.

A kill at any moment leaves either the old file or the new one, never half. A failure to create or write an
output (a read-only file system, a missing permission, a name too long, a full disk) is a user's problem, not
a bug: it is reported once, here, as ``FskdError("PATH: cannot write (reason)")`` (a *write fault*), and the
previous file stays as it was. Stages create outputs only through this module (:func:`make_dirs`,
:func:`open_output`, :func:`atomic_path` and the writers on it), and check an output with
:func:`check_writable` before the work that would fill it.
"""

from __future__ import annotations

import csv
import errno
import fcntl
import io
import os
import tempfile
from collections.abc import Callable, Iterable, Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import IO, Any

import yaml

from .errors import FskdError

#: OSErrors that mean "this place cannot be written" (full disk, quota, read-only, no permission, file size
#: limit, disk error) when they come from code that also reads; the calls here that only create or write an
#: output count every OSError as a write fault.
WRITE_FAULTS = frozenset({errno.ENOSPC, errno.EDQUOT, errno.EROFS, errno.EACCES, errno.EPERM, errno.EFBIG, errno.EIO})


_HEADER_MAX = 64 * 1024  # a CSV header longer than this is not one of fskd's
_TEMP_STEM = 40  # characters of the file's name in its temp file's name, which must stay under NAME_MAX too


def _umask() -> int:
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


#: mkstemp creates 0600 files; a renamed file gets the mode a plain ``open`` would give it (umask read once, at import).
FILE_MODE = 0o666 & ~_umask()


def write_fault(path: str | os.PathLike, error: OSError) -> FskdError:
    """``FskdError("PATH: cannot write (reason)")`` for ``error``, met while creating or writing ``path``.

    PATH is the file or folder the OS names (the deepest folder ``mkdir -p`` could not make), unless that is
    our own temp file: then ``path``.
    """
    culprit = Path(os.fsdecode(error.filename)) if error.filename else Path(path)
    if culprit.name.startswith(_temp_prefix(Path(path))) and culprit.name.endswith(".tmp"):
        culprit = Path(path)
    reason = error.strerror or (os.strerror(error.errno) if error.errno else str(error))
    return FskdError(f"{culprit}: cannot write ({reason})")


@contextmanager
def write_faults(path: str | os.PathLike) -> Iterator[None]:
    """Turn a write fault (:data:`WRITE_FAULTS`) inside the block into one line (see :func:`write_fault`).

    For blocks that also read (an image encoder, ``torch.save``): any other OSError keeps its traceback.
    """
    try:
        yield
    except (OSError, RuntimeError) as e:
        # torch.save into a file object reports the file's OSError as a RuntimeError's context
        fault = e if isinstance(e, OSError) else e.__context__
        if not isinstance(fault, OSError) or fault.errno not in WRITE_FAULTS:
            raise
        raise write_fault(path, fault) from e


def make_dirs(folder: str | os.PathLike) -> Path:
    """Create ``folder`` and the folders above it (``mkdir -p``); a failure is a write fault."""
    folder = Path(folder)
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except FileExistsError:
        raise FskdError(f"{folder}: cannot write (a file is there, not a folder)") from None
    except NotADirectoryError:
        raise FskdError(f"{folder}: cannot write (a parent of this folder is a file)") from None
    except OSError as e:
        raise write_fault(folder, e) from e
    return folder


def open_output(path: str | os.PathLike, mode: str = "a", **kwargs: Any) -> IO:
    """``open(path, mode, **kwargs)`` for writing (appending, a lock file), its folder made first; a failure
    to create or open it is a write fault."""
    make_dirs(Path(path).parent)
    try:
        return open(path, mode, **kwargs)
    except OSError as e:
        raise write_fault(path, e) from e


def check_writable(path: str | os.PathLike, folder: bool = False) -> None:
    """Refuse an output now, before the work that would fill it, when it could not be created: a name too
    long for the file system, a parent that is a file, a read-only file system or a folder without write
    permission. ``folder``: ``path`` is a folder to write into (else a file to create or replace).

    Nothing is created: the nearest existing folder is asked (``access``, ``statvfs``). The writes still
    report what cannot be foreseen (a full disk, a folder made read-only meanwhile).
    """
    path = Path(path)
    here = Path(os.path.abspath(path))
    missing: list[str] = []
    while True:
        try:
            os.stat(here)
            break
        except FileNotFoundError:
            missing.append(here.name)
            here = here.parent
        except NotADirectoryError:
            raise FskdError(f"{path}: cannot write (a parent of this {'folder' if folder else 'file'} is a file)") from None
        except OSError as e:
            raise write_fault(path, e) from None
    if not here.is_dir():
        if not missing and folder:
            raise FskdError(f"{path}: is a file, not a folder; give a folder")
        if missing:
            raise FskdError(f"{path}: cannot write ({here} is a file, not a folder)")
        here = here.parent  # a file to replace: its folder is written (temp file, then rename)
    try:
        longest = os.pathconf(here, "PC_NAME_MAX")
    except OSError:  # a file system that does not say
        longest = 255
    if any(len(os.fsencode(name)) > longest for name in missing):
        raise FskdError(f"{path}: cannot write ({os.strerror(errno.ENAMETOOLONG)}: names may have {longest} bytes)")
    if not os.access(here, os.W_OK | os.X_OK):
        read_only = os.statvfs(here).f_flag & os.ST_RDONLY
        reason = os.strerror(errno.EROFS if read_only else errno.EACCES)
        raise FskdError(f"{path}: cannot write ({reason}" + (f": {here})" if here != Path(os.path.abspath(path)) else ")"))


def _temp_prefix(path: Path) -> str:
    return f".{path.name[:_TEMP_STEM]}."


@contextmanager
def atomic_path(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary path beside ``path``; rename it onto ``path`` only if the block succeeds.

    The temp is named ``.NAME.PID.XXXXXXXX.tmp`` (NAME cut to 40 characters) so that
    ``core.guard.sweep_temp_files`` can tell a killed process's leftovers from a live one's.
    """
    path = Path(path)
    make_dirs(path.parent)
    try:
        fd, tmp = tempfile.mkstemp(prefix=f"{_temp_prefix(path)}{os.getpid()}.", suffix=".tmp", dir=path.parent)
        os.close(fd)
    except OSError as e:
        raise write_fault(path, e) from e
    try:
        with write_faults(path):
            yield Path(tmp)
        try:
            os.chmod(tmp, FILE_MODE)
            os.replace(tmp, path)
        except OSError as e:
            raise write_fault(path, e) from e
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


def write_atomic(path: str | os.PathLike, write: Callable[[IO], None], mode: str = "w") -> None:
    """Call ``write(fileobj)`` on a temp file and rename it onto ``path``."""
    with atomic_path(path) as tmp:
        with open(tmp, mode, **({} if "b" in mode else {"newline": "", "encoding": "utf-8"})) as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())


def write_text(path: str | os.PathLike, text: str) -> None:
    write_atomic(path, lambda f: f.write(text))


def write_yaml(path: str | os.PathLike, data: Mapping[str, Any]) -> None:
    write_text(path, yaml.safe_dump(dict(data), sort_keys=False))


def write_csv(path: str | os.PathLike, rows: Iterable[Mapping[str, Any]], fields: list[str]) -> None:
    def _write(f: IO) -> None:
        w = csv.DictWriter(f, fieldnames=fields, extrasaction="raise")
        w.writeheader()
        w.writerows(rows)

    write_atomic(path, _write)


def append_csv(path: str | os.PathLike, row: Mapping[str, Any], fields: list[str]) -> None:
    """Append one row, writing the header first if the file is new.

    The file is locked (``flock``) from reading its header to writing the row, so two processes creating
    it at the same moment write one header, and rows (each one ``write``) never interleave. A file whose
    header is not ``fields`` is someone else's CSV: refused, never appended to.
    """
    path = Path(path)
    if os.path.isdir(path):  # os.path: a name too long is left to open_output, which says so
        raise FskdError(f"{path}: is a folder, not a CSV file")
    if os.path.exists(path) and not os.path.isfile(path):
        raise FskdError(f"{path}: not a regular file (a device or pipe), not a CSV file")
    with open_output(path, "a+", newline="", encoding="utf-8") as f, write_faults(path):
        fcntl.flock(f, fcntl.LOCK_EX)
        f.seek(0)
        try:
            header = next(csv.reader([f.readline(_HEADER_MAX)]), [])
        except UnicodeDecodeError:
            raise FskdError(f"{path}: not a text CSV file; give another file") from None
        if header and header != list(fields):
            raise FskdError(f"{path}: a CSV with columns {','.join(header)[:80]!r}, not fskd's "
                            f"{','.join(fields)[:80]!r}; give another file")
        f.write(_csv_text(row, fields, with_header=not header))
        f.flush()


def _csv_text(row: Mapping[str, Any], fields: list[str], with_header: bool) -> str:
    buf = io.StringIO()
    w = csv.DictWriter(buf, fieldnames=fields, extrasaction="raise")
    if with_header:
        w.writeheader()
    w.writerow(row)
    return buf.getvalue()
