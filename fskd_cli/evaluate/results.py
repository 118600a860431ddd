"""``results.csv``: one row per evaluated figure, appended by every eval and never rewritten."""

from __future__ import annotations

import json
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from ..core.io import append_csv, write_text

RESULT_FIELDS = ["run", "method", "dataset", "scale", "metric", "value", "ckpt", "timestamp"]


def record(results: str | Path, json_path: str | Path, ck: dict[str, Any], dataset: str, scale: str,
           metrics: dict[str, float], details: dict[str, Any]) -> dict[str, Any]:
    """Write the eval JSON (metrics + details) and append one results.csv row per metric."""
    stamp = datetime.now(timezone.utc).isoformat(timespec="seconds")
    run = Path(ck["path"]).parent.name
    method = ck["method"] if ck["kind"] == "student" else "teacher"
    payload = {"run": run, "method": method, "dataset": dataset, "scale": scale, "ckpt": ck["path"],
               "timestamp": stamp, "metrics": metrics, **details}
    write_text(json_path, json.dumps(payload, indent=2) + "\n")
    for metric, value in metrics.items():
        append_csv(results, {"run": run, "method": method, "dataset": dataset, "scale": scale, "metric": metric,
                             "value": f"{value:.6f}", "ckpt": ck["path"], "timestamp": stamp}, RESULT_FIELDS)
    return payload
