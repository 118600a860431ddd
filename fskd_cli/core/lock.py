"""One writer per output folder: an OS lock (``flock``) on ``FOLDER/.fskd.lock`` while a run writes there.

Two runs into one ``--out`` at once would both run to the end, each step logged twice and the checkpoint
whichever finished last. The OS releases the lock when its process ends, however it ends (Ctrl-C, a kill,
a crash), so a lock file left behind never blocks anyone: only a live holder does. The file's one line
names the holder (pid, host, start time, command line) for the error a second writer gets. The file is never
removed: a process that had opened it just before could then lock a file that no one else sees.
"""

from __future__ import annotations

import errno
import fcntl
import os
import shlex
import socket
import stat
import sys
import time
from datetime import datetime
from pathlib import Path

from .errors import FskdError
from .io import WRITE_FAULTS, make_dirs, write_faults

LOCK = ".fskd.lock"
RUN_HINT = "wait for it or choose another --out"
#: A probe (:func:`check_free`) holds the lock for microseconds; a writer taking it retries for this long.
_RETRY_S = 0.5
#: Lock errors of a file system that cannot lock (some network mounts): there, one writer is not enforced.
_NO_LOCKS = frozenset({errno.ENOLCK, errno.EOPNOTSUPP, errno.ENOSYS})
_COMMAND_MAX = 200


#: Descriptors of the locks this process holds. A forked child (a DataLoader worker) closes its copies at once:
#: a ``flock`` lasts while any process has the file open, so a worker outliving a run would hold its folder.
_HELD: set[int] = set()


def _forget_in_child() -> None:
    for fd in _HELD:
        os.close(fd)
    _HELD.clear()


os.register_at_fork(after_in_child=_forget_in_child)


class FolderLock:
    """The lock on one folder, held until :meth:`release` (or the end of the process)."""

    def __init__(self, path: Path, fd: int) -> None:
        self.path, self._fd = path, fd
        _HELD.add(fd)

    def release(self) -> None:
        """Let another writer in (closing the file releases the lock; the file stays)."""
        if self._fd >= 0:
            _HELD.discard(self._fd)
            os.close(self._fd)
            self._fd = -1

    def __enter__(self) -> FolderLock:
        return self

    def __exit__(self, *exc: object) -> None:
        self.release()


def hold_folder(folder: str | os.PathLike, what: str = "fskd run", hint: str = RUN_HINT, name: str = LOCK) -> FolderLock:
    """Take ``folder``'s lock (creating the folder and its lock file if needed) and write who holds it.

    A live holder, in this process or another, makes this raise FskdError: ``FOLDER: in use by another
    WHAT (pid 123 on HOST, started TIME, `COMMAND`); HINT``. ``name``: the lock file, for a lock on one
    output of a folder that several writers share (a run's ``eval/``) instead of the whole folder.
    """
    folder = Path(folder)
    path = folder / name
    with write_faults(path):
        make_dirs(folder)  # a file where the folder goes is one line
        fd = _open(path, os.O_RDWR | os.O_CREAT)
        if not _take(fd, fcntl.LOCK_EX, _RETRY_S):
            holder = _holder(fd)
            os.close(fd)
            raise FskdError(_busy(folder, holder, what, hint))
        try:
            os.ftruncate(fd, 0)
            os.pwrite(fd, f"{describe_this_process()}\n".encode(), 0)
        except BaseException:  # a full disk: no lock kept for a run that will not start
            os.close(fd)
            raise
    return FolderLock(path, fd)


def check_free(folder: str | os.PathLike, what: str = "fskd run", hint: str = RUN_HINT, name: str = LOCK) -> None:
    """Raise the error of :func:`hold_folder` if a live process holds ``folder``'s lock; take and write nothing.

    For a refusal before any work: a run checks its folder this way first and takes the lock when it claims it.
    """
    try:
        fd = _open(Path(folder) / name, os.O_RDONLY)
    except (FileNotFoundError, PermissionError):  # no lock file (or none we may read): no holder to name
        return
    try:
        if not _take(fd, fcntl.LOCK_SH, 0):
            raise FskdError(_busy(Path(folder), _holder(fd), what, hint))
    finally:
        os.close(fd)  # releases the shared lock taken to look


def describe_this_process() -> str:
    """``pid 123 on HOST, started TIME, `COMMAND```: what the lock file says about its holder."""
    argv = sys.argv or ["python"]
    words = ["fskd", *argv[1:]] if Path(argv[0]).name in ("fskd", "__main__.py") else argv
    command = shlex.join(words)
    if len(command) > _COMMAND_MAX:
        command = command[:_COMMAND_MAX - 3] + "..."
    started = datetime.now().astimezone().isoformat(timespec="seconds")
    return f"pid {os.getpid()} on {socket.gethostname()}, started {started}, `{command}`"


def _open(path: Path, flags: int) -> int:
    """The lock file, opened never through a link (its holder's line would be written elsewhere) and never
    waiting (a FIFO put there); anything but a regular file is refused in one line."""
    try:
        fd = os.open(path, flags | os.O_NOFOLLOW | os.O_NONBLOCK, 0o666)  # the umask applies, as to all fskd writes
    except OSError as e:
        if e.errno in (errno.ENOENT, errno.EACCES, *WRITE_FAULTS):
            raise  # no file, or a write fault: the caller's to handle
        raise FskdError(f"{path}: not a lock file fskd can use ({e.strerror}); remove it") from None
    if not stat.S_ISREG(os.fstat(fd).st_mode):
        os.close(fd)
        raise FskdError(f"{path}: not a regular file, so not fskd's lock file; remove it")
    return fd


def _take(fd: int, mode: int, wait_s: float) -> bool:
    """Whether the lock of ``mode`` was taken on ``fd`` within ``wait_s`` seconds (never blocks longer)."""
    deadline = time.monotonic() + wait_s
    while True:
        try:
            fcntl.flock(fd, mode | fcntl.LOCK_NB)
            return True
        except BlockingIOError:
            if time.monotonic() >= deadline:
                return False
            time.sleep(0.02)
        except OSError as e:
            if e.errno in _NO_LOCKS:
                return True
            raise


def _holder(fd: int) -> str:
    """The holder's line from the lock file (it may not have written it yet)."""
    text = os.pread(fd, 4096, 0).decode("utf-8", errors="replace").strip()
    return text.splitlines()[0] if text else "it has not said who it is yet"


def _busy(folder: Path, holder: str, what: str, hint: str) -> str:
    return f"{folder}: in use by another {what} ({holder}); {hint}"
