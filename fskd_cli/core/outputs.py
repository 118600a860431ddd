"""Output paths a stage may write: checked before the work, so a doomed output never wastes a run.

:func:`check_output_file` and :func:`check_output_folder` refuse a path whose kind is wrong (a folder where
a file goes, a file among its parents); :func:`check_replaceable` lets a command replace only its own
earlier output (a report page, a table, an export, an embeddings file): each passes the test that
recognises what it writes, and anything else there is refused in one line.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

from .errors import FskdError
from .guard import claim_output
from .io import atomic_path, check_writable

if TYPE_CHECKING:
    from matplotlib.figure import Figure


def check_output_file(path: str | Path, option: str) -> Path:
    """``path`` as a file fskd may write: not a folder, and no parent of it a file (one line otherwise)."""
    path = Path(path)
    if os.path.isdir(path):  # os.path: a name too long is left to check_writable, which says so
        raise FskdError(f"{path}: is a folder; {option} names a file")
    _check_parents(path, option)
    check_writable(path)  # a name too long, a read-only or forbidden folder
    return path


def check_output_folder(path: str | Path, option: str = "--out", force: bool = False) -> Path:
    """``path`` as a folder fskd may write into, created if needed (one line when it is a file); ``force`` writes
    into a folder fskd did not make (never deleting what is there)."""
    path = Path(path)
    if os.path.exists(path) and not os.path.isdir(path):
        raise FskdError(f"{path}: is a file; {option} names a folder")
    _check_parents(path, option)
    claim_output(path, "analysis", force=force)  # a user's non-empty folder is refused unless --force
    return path


def output_stem(path: str | Path, option: str = "--out") -> Path:
    """``path`` as the stem of outputs named ``STEM.md``, ``STEM.csv``, ``STEM_*.png``: it must end in a name
    (``.``, ``..`` or ``/`` name a folder, and ``..`` would become a file ``...md``)."""
    path = Path(path)
    if path.name in ("", ".."):
        raise FskdError(f"{option} {str(path) or repr('')}: names a folder; give a path without suffix that ends "
                        "in a name, e.g. reports/table")
    return path


def check_replaceable(path: str | Path, ours: Callable[[Path], bool], command: str, option: str = "--out") -> Path:
    """``path`` may be written: it is new, or ``ours(path)`` recognises an earlier output of ``fskd COMMAND``."""
    path = check_output_file(path, option)
    if path.is_symlink() and not path.exists():  # writing would replace the user's link with a file
        raise FskdError(f"{path}: a broken symbolic link (to {os.readlink(path)}); choose another {option}")
    if path.exists() and not ours(path):
        raise FskdError(f"{path}: exists and is not an `fskd {command}` output; choose another {option}")
    return path


def save_figure(fig: Figure, path: str | os.PathLike, dpi: int = 150) -> Path:
    """The one PNG writer of eval and analyze: atomic (old file or new, never half); the temp name is not
    .png, so the format is named."""
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=dpi, bbox_inches="tight")
    return Path(path)


def starts_with_text(path: Path, mark: str, limit: int = 8192) -> bool:
    """Whether the first ``limit`` bytes of ``path`` contain ``mark`` (a page's or table's fskd caption)."""
    try:
        with open(path, "rb") as f:
            return mark.encode() in f.read(limit)
    except OSError:
        return False


def written_by_matplotlib(path: Path) -> bool:
    """Whether ``path`` is a PNG that matplotlib wrote (its header names it), as every fskd figure is: a figure
    may replace such a file, never a user's own picture of the same name."""
    return starts_with_text(path, "Matplotlib version", 512)


def _check_parents(path: Path, option: str) -> None:
    for parent in path.parents:
        if os.path.exists(parent) and not os.path.isdir(parent):
            raise FskdError(f"{path}: {parent} is a file, not a folder ({option})")
