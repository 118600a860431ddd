"""The TensorBoard callback: event files with the log rows' scalars, and a one-line error without the package."""

from __future__ import annotations

import sys

import pytest

from fskd_cli.core.errors import FskdError


def _scalars(log_dir):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    acc = EventAccumulator(str(log_dir))
    acc.Reload()
    return {tag: [(e.step, e.value) for e in acc.Scalars(tag)] for tag in acc.Tags()["scalars"]}


def test_writes_losses_lr_speed_and_eval_metrics_at_their_steps(tmp_path):
    pytest.importorskip("tensorboard")
    from fskd_cli.train.tensorboard import TensorBoardLogger

    logger = TensorBoardLogger(tmp_path / "tb")
    logger.on_log({"step": 3, "epoch": 0.5, "lr": 0.1, "loss": 2.5, "task_loss": 2.0, "distill_loss": 0.5,
                   "train_acc": 0.25, "images_per_s": 812.0, "elapsed_s": 4.0})
    logger.on_log({"step": 6, "epoch": "1.000", "lr": "0.01", "loss": "1.5", "task_loss": "1.25", "distill_loss": "0.25",
                   "train_acc": "0.5", "images_per_s": "900.0", "elapsed_s": "8.0", "agedb_x8_accuracy": 0.75,
                   "note": "not a number"})
    logger.close()
    assert list((tmp_path / "tb").glob("events.out.tfevents.*"))
    scalars = _scalars(tmp_path / "tb")
    assert scalars["loss/total"] == [(3, 2.5), (6, 1.5)]
    assert scalars["train/lr"] == [(3, pytest.approx(0.1)), (6, pytest.approx(0.01))]
    assert scalars["speed/images_per_s"] == [(3, 812.0), (6, 900.0)]
    assert scalars["eval/agedb_x8_accuracy"] == [(6, 0.75)]
    assert not {"step", "epoch", "elapsed_s", "eval/note"} & set(scalars)


def test_missing_package_is_one_line_naming_the_extra(tmp_path, monkeypatch):
    from fskd_cli.train.tensorboard import TensorBoardLogger

    monkeypatch.setitem(sys.modules, "torch.utils.tensorboard", None)  # import now fails as without the package
    with pytest.raises(FskdError, match=r'pip install -e "\.\[tensorboard\]"'):
        TensorBoardLogger(tmp_path / "tb")
    assert not (tmp_path / "tb").exists()
