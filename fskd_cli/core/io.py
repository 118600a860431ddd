"""Atomic writes: a kill at any moment leaves either the old file or the new one, never half.

A full disk, a read-only folder or a missing permission while writing is a user's problem, not a bug: it
is reported once, here, as ``FskdError("PATH: reason")``, and the previous file stays as it was.
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

#: OSErrors that mean "this place cannot be written" (full disk, quota, read-only, no permission, file size limit).
WRITE_FAULTS = frozenset({errno.ENOSPC, errno.EDQUOT, errno.EROFS, errno.EACCES, errno.EPERM, errno.EFBIG})


_HEADER_MAX = 64 * 1024  # a CSV header longer than this is not one of fskd's


def _umask() -> int:
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


#: mkstemp creates 0600 files; a renamed file gets the mode a plain ``open`` would give it (umask read once, at import).
FILE_MODE = 0o666 & ~_umask()


@contextmanager
def write_faults(path: str | os.PathLike) -> Iterator[None]:
    """Turn a write fault (:data:`WRITE_FAULTS`) inside the block into ``FskdError("PATH: reason")``.

    The error names the file the OS names, unless that is our own temp file, then ``path``.
    """
    try:
        yield
    except (OSError, RuntimeError) as e:
        # torch.save into a file object reports the file's OSError as a RuntimeError's context
        fault = e if isinstance(e, OSError) else e.__context__
        if not isinstance(fault, OSError) or fault.errno not in WRITE_FAULTS:
            raise
        culprit = Path(fault.filename) if fault.filename else Path(path)
        if culprit.name.startswith(f".{Path(path).name}.") and culprit.name.endswith(".tmp"):
            culprit = Path(path)
        raise FskdError(f"{culprit}: {fault.strerror or os.strerror(fault.errno)}") from e


@contextmanager
def atomic_path(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary path beside ``path``; rename it onto ``path`` only if the block succeeds.

    The temp is named ``.NAME.PID.XXXXXXXX.tmp`` so that ``core.guard.sweep_temp_files`` can tell a killed
    process's leftovers from a live one's.
    """
    path = Path(path)
    with write_faults(path):
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.{os.getpid()}.", suffix=".tmp", dir=path.parent)
        os.close(fd)
        try:
            yield Path(tmp)
            os.chmod(tmp, FILE_MODE)
            os.replace(tmp, path)
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
    if path.is_dir():
        raise FskdError(f"{path}: is a folder, not a CSV file")
    if path.exists() and not path.is_file():
        raise FskdError(f"{path}: not a regular file (a device or pipe), not a CSV file")
    with write_faults(path):
        path.parent.mkdir(parents=True, exist_ok=True)
        with open(path, "a+", newline="", encoding="utf-8") as f:
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
