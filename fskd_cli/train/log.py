"""Consumers of the training log rows: ``log.csv`` here, TensorBoard in :mod:`.tensorboard`.

The loop hands each log row to every callback's ``on_log(row)`` (main process only): a dict of numbers,
``step`` and ``epoch``, the learning rate, the meters' means since the previous row, throughput and time.
A callback may also have ``close()``, called when the loop ends.
"""

from __future__ import annotations

import csv
from pathlib import Path
from typing import Any, Protocol

from ..core.errors import FskdError
from ..core.io import append_csv, write_csv

LOG_FIELDS = ["step", "epoch", "lr", "loss", "task_loss", "distill_loss", "train_acc", "images_per_s", "elapsed_s"]
_FORMATS = {"epoch": "{:.3f}", "loss": "{:.6f}", "task_loss": "{:.6f}", "distill_loss": "{:.6f}", "train_acc": "{:.4f}",
            "images_per_s": "{:.1f}", "elapsed_s": "{:.1f}"}


class LogCallback(Protocol):
    def on_log(self, row: dict[str, Any]) -> None: ...


class CsvLog:
    """``log.csv`` in the run folder, one row per log step. On resume, rows past the checkpoint's step are
    dropped first: the resumed run writes them again, identically."""

    def __init__(self, path: Path, from_step: int) -> None:
        self.path = path
        if path.exists():
            write_csv(path, rows_until(path, from_step) if from_step else [], LOG_FIELDS)

    def on_log(self, row: dict[str, Any]) -> None:
        append_csv(self.path, {k: _FORMATS.get(k, "{}").format(v) for k, v in row.items()}, LOG_FIELDS)


def rows_until(path: Path, step: int) -> list[dict[str, str]]:
    """The rows of an existing ``log.csv`` up to ``step``; FskdError naming the file and line of a row that
    is not fskd's (a damaged file is never carried into the resumed run's log)."""
    try:
        with open(path, newline="", encoding="utf-8") as f:
            reader = csv.DictReader(f)
            if reader.fieldnames != LOG_FIELDS:
                what = f"columns {reader.fieldnames}" if reader.fieldnames else "an empty file"
                raise FskdError(f"{path}: line 1: not fskd's training log ({what}); move it away to resume")
            return [row for row in reader if _checked_step(row, path, reader.line_num) <= step]
    except UnicodeDecodeError:
        raise FskdError(f"{path}: not a text file (damaged); move it away to resume") from None


def _checked_step(row: dict[Any, Any], path: Path, line: int) -> int:
    """The row's step; FskdError naming the line when a value is missing, extra, or not a number."""
    problem = _problem(row)
    if problem:
        raise FskdError(f"{path}: line {line}: damaged row ({problem}); repair or delete that line, then resume again")
    return int(float(row["step"]))


def _problem(row: dict[Any, Any]) -> str:
    if None in row:
        return "more values than columns"
    missing = [k for k, v in row.items() if v is None]
    if missing:
        return f"no value for {missing[0]}"
    bad = [k for k, v in row.items() if not _is_number(v)]
    if bad:
        return f"{bad[0]} {row[bad[0]]!r} is not a number"
    return "" if float(row["step"]).is_integer() else f"step {row['step']!r} is not a whole number"


def _is_number(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True
