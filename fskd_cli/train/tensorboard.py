"""Live curves for long runs: the training log rows as TensorBoard scalars (``train.tensorboard: true``).

``log.csv`` stays the record; this is a view of the same rows under ``runs/NAME/tb/``. TensorBoard is an
optional extra (``pip install -e ".[tensorboard]"``), imported only when a run asks for it.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

from ..core.errors import FskdError
from ..core.io import make_dirs

INSTALL = 'pip install -e ".[tensorboard]"'
# log row keys -> scalar tags; any other numeric key (an eval metric such as "agedb_x8_accuracy") goes under eval/
TAGS = {"loss": "loss/total", "task_loss": "loss/task", "distill_loss": "loss/distill", "train_acc": "train/accuracy",
        "lr": "train/lr", "images_per_s": "speed/images_per_s"}
NOT_SCALARS = {"step", "epoch", "elapsed_s"}


class TensorBoardLogger:
    """A log callback (``on_log(row)``, ``close()``) writing each row's numbers as scalars at its ``step``."""

    def __init__(self, log_dir: str | Path) -> None:
        try:
            from torch.utils.tensorboard import SummaryWriter
        except ImportError:
            raise FskdError(f"train.tensorboard: true needs the tensorboard package; install it with {INSTALL}") from None
        self.log_dir = make_dirs(log_dir)
        self.writer = SummaryWriter(log_dir=str(self.log_dir))

    def on_log(self, row: dict[str, Any]) -> None:
        step = int(row["step"])
        for key, value in row.items():
            number = _number(value)
            if key in NOT_SCALARS or number is None:
                continue
            self.writer.add_scalar(TAGS.get(key, f"eval/{key}"), number, step)
        self.writer.flush()  # a live view: each row is on disk when the loop moves on

    def close(self) -> None:
        self.writer.close()


def _number(value: Any) -> float | None:
    """``value`` as a finite float (log rows may hold formatted strings), else None."""
    try:
        number = float(value)
    except (TypeError, ValueError):
        return None
    return number if math.isfinite(number) else None
