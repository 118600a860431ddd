"""The eval JSON and ``results.csv``: one JSON per eval, one CSV row per evaluated figure.

results.csv is appended by every eval and never rewritten (``core.io.append_csv`` locks it and refuses
a CSV of other columns). Each row names the run, its method, seed and teacher, so paired comparisons
over seeds (``fskd analyze compare``) find their pairs without guessing from run names. The eval JSON
carries the run's training setting (:class:`~fskd_cli.core.runs.RunSetting`), so tables and reports read
the setting from it instead of walking config files.
"""

from __future__ import annotations

import csv
import json
import math
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from .errors import FskdError
from .io import append_csv, write_text
from .outputs import check_output_file
from .runs import RunSetting

RESULT_FIELDS = ["run", "method", "dataset", "scale", "seed", "teacher", "metric", "value", "ckpt", "timestamp"]
#: the columns results.csv had before seed and teacher were recorded (still read by analyze)
OLD_RESULT_FIELDS = ["run", "method", "dataset", "scale", "metric", "value", "ckpt", "timestamp"]


def check_results_csv(path: str | Path) -> Path:
    """``--results`` checked before an eval spends its time: a file that is empty, new, or fskd's results CSV.

    ``append_csv`` checks the header again under its lock; this only makes a wrong file fail first.
    """
    path = check_output_file(path, "--results")
    if path.is_file() and path.stat().st_size:
        with open(path, newline="", encoding="utf-8", errors="replace") as f:
            header = next(csv.reader([f.readline()]), [])
        if header == OLD_RESULT_FIELDS:
            raise FskdError(f"{path}: a results.csv of an earlier fskd (no seed and teacher columns); appending would "
                            "mix two layouts: give a new --results file (analyze still reads this one)")
        if header != RESULT_FIELDS:
            raise FskdError(f"{path}: a CSV with columns {','.join(header)[:80]!r}, not fskd's results columns "
                            f"{','.join(RESULT_FIELDS)!r}; give another --results file")
    return path


#: the entries :func:`record` gives every eval JSON: how a file there is known as an earlier eval's
EVAL_KEYS = frozenset({"run", "method", "dataset", "scale", "ckpt", "metrics", "setting"})
_EVAL_JSON_MAX = 16 * 2**20  # eval JSONs are kilobytes; a larger file there is not one


def written_by_eval(path: Path) -> bool:
    """Whether ``path`` holds an eval JSON (a JSON object with :data:`EVAL_KEYS`), so that an eval may replace it."""
    try:
        if path.stat().st_size > _EVAL_JSON_MAX:
            return False
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):  # ValueError: not UTF-8, not JSON
        return False
    return isinstance(data, dict) and EVAL_KEYS <= set(data)


def record(results: str | Path, json_path: str | Path, setting: RunSetting, ckpt: str, dataset: str, scale: str,
           metrics: dict[str, float], details: dict[str, Any]) -> dict[str, Any]:
    """Write the eval JSON (who, metrics, details, training setting) and append one results.csv row per metric."""
    stamp = datetime.now(UTC).isoformat(timespec="seconds")
    who = {"run": setting.run, "method": setting.method, "dataset": dataset, "scale": scale, "ckpt": ckpt}
    payload = {**who, "timestamp": stamp, "metrics": metrics, **details, "setting": setting.to_dict()}
    write_text(json_path, json.dumps(standard_json(payload), indent=2, allow_nan=False) + "\n")
    pair = {"seed": "" if setting.seed is None else setting.seed, "teacher": setting.teacher or ""}
    for metric, value in metrics.items():
        append_csv(results, {**who, **pair, "metric": metric, "value": f"{value:.6f}", "timestamp": stamp},
                   RESULT_FIELDS)
    return payload


def standard_json(value: Any) -> Any:
    """``value`` with every non-finite float as ``null``: JSON has no NaN, and other tools refuse Python's ``NaN``."""
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {k: standard_json(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [standard_json(v) for v in value]
    return value


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
