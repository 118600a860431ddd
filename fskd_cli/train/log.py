"""Consumers of the training log rows: ``log.csv`` here, TensorBoard in :mod:`.tensorboard`.

The loop hands each log row to every callback's ``on_log(row)`` (main process only): a dict of numbers,
``step`` and ``epoch``, the learning rate, the meters' means since the previous row, throughput and time.
A callback may also have ``close()``, called when the loop ends.
"""

from __future__ import annotations

import csv
from pathlib import Path
from typing import Any, Protocol

from ..core.io import write_csv

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
            with open(path, newline="", encoding="utf-8") as f:
                rows = [r for r in csv.DictReader(f) if int(r["step"]) <= from_step]
            write_csv(path, rows, LOG_FIELDS)

    def on_log(self, row: dict[str, Any]) -> None:
        new = not self.path.exists()
        with open(self.path, "a", newline="", encoding="utf-8") as f:
            writer = csv.DictWriter(f, fieldnames=LOG_FIELDS)
            if new:
                writer.writeheader()
            writer.writerow({k: _FORMATS.get(k, "{}").format(v) for k, v in row.items()})
