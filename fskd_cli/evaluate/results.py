"""The eval JSON and ``results.csv``: one JSON per eval, one CSV row per evaluated figure.

results.csv is appended by every eval and never rewritten (``core.io.append_csv`` locks it and refuses
a CSV of other columns). The eval JSON carries the run's training setting (``core.runs.RunSetting``),
so tables and reports read the setting from it instead of walking config files.
"""

from __future__ import annotations

import csv
import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from ..core.errors import FskdError
from ..core.guard import claim_output
from ..core.io import append_csv, write_text
from ..core.runs import RunSetting

RESULT_FIELDS = ["run", "method", "dataset", "scale", "metric", "value", "ckpt", "timestamp"]


def check_output_file(path: str | Path, option: str) -> Path:
    """``path`` as a file fskd may write: not a folder, and no parent of it a file (one line otherwise)."""
    path = Path(path)
    if path.is_dir():
        raise FskdError(f"{path}: is a folder; {option} names a file")
    for parent in path.parents:
        if parent.exists() and not parent.is_dir():
            raise FskdError(f"{path}: {parent} is a file, not a folder ({option})")
    return path


def check_results_csv(path: str | Path) -> Path:
    """``--results`` checked before an eval spends its time: a file that is empty, new, or fskd's results CSV.

    ``append_csv`` checks the header again under its lock; this only makes a wrong file fail first.
    """
    path = check_output_file(path, "--results")
    if path.is_file() and path.stat().st_size:
        with open(path, newline="", encoding="utf-8", errors="replace") as f:
            header = next(csv.reader([f.readline()]), [])
        if header != RESULT_FIELDS:
            raise FskdError(f"{path}: a CSV with columns {','.join(header)[:80]!r}, not fskd's results columns "
                            f"{','.join(RESULT_FIELDS)!r}; give another --results file")
    return path


def check_output_folder(path: str | Path, option: str = "--out", force: bool = False) -> Path:
    """``path`` as a folder fskd may write into, created if needed (one line when it is a file); ``force`` writes
    into a folder fskd did not make (never deleting what is there)."""
    path = Path(path)
    if path.exists() and not path.is_dir():
        raise FskdError(f"{path}: is a file; {option} names a folder")
    for parent in path.parents:
        if parent.exists() and not parent.is_dir():
            raise FskdError(f"{path}: {parent} is a file, not a folder ({option})")
    claim_output(path, "analysis", force=force)  # a user's non-empty folder is refused unless --force
    return path


def record(results: str | Path, json_path: str | Path, setting: RunSetting, ckpt: str, dataset: str, scale: str,
           metrics: dict[str, float], details: dict[str, Any]) -> dict[str, Any]:
    """Write the eval JSON (who, metrics, details, training setting) and append one results.csv row per metric."""
    stamp = datetime.now(UTC).isoformat(timespec="seconds")
    who = {"run": setting.run, "method": setting.method, "dataset": dataset, "scale": scale, "ckpt": ckpt}
    payload = {**who, "timestamp": stamp, "metrics": metrics, **details, "setting": setting.to_dict()}
    write_text(json_path, json.dumps(payload, indent=2) + "\n")
    for metric, value in metrics.items():
        append_csv(results, {**who, "metric": metric, "value": f"{value:.6f}", "timestamp": stamp}, RESULT_FIELDS)
    return payload


def read_setting(eval_dir: str | Path) -> dict[str, Any] | None:
    """The training setting recorded in a run's eval JSONs (``runs/NAME/eval``), or None when it has none."""
    for path in sorted(Path(eval_dir).glob("*.json")):
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, json.JSONDecodeError, UnicodeDecodeError):
            continue
        if isinstance(data, dict) and isinstance(data.get("setting"), dict):
            return data["setting"]
    return None
