"""``fskd eval PROTOCOL``: evaluate a checkpoint at one scale; write runs/NAME/eval/*.json and append
to results.csv."""

from __future__ import annotations

from enum import Enum
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console

console = Console(stderr=True)


class EvalScale(str, Enum):
    x1 = "1"
    x2 = "2"
    x4 = "4"
    x8 = "8"


class Protocol(str, Enum):
    digits = "digits"
    svhn = "svhn"


def eval_command(protocol: Annotated[Protocol, typer.Argument(help="What to evaluate on.")],
                 ckpt: Annotated[Path, typer.Option(help="Checkpoint (a run's checkpoint.pt or its folder).")],
                 scale: Annotated[EvalScale, typer.Option(help="Resolution of the test images: 1 (HR), 2, 4 or 8.")] = EvalScale.x1,
                 data: Annotated[str | None, typer.Option(help="Prepared dataset folder (default: data/<protocol>).")] = None,
                 split: Annotated[str, typer.Option(help="Manifest split to evaluate on.")] = "test",
                 results: Annotated[Path, typer.Option(help="CSV that every eval appends one row per figure to.")] = Path("results.csv"),
                 device: Annotated[str, typer.Option(help="cpu or cuda.")] = "cpu",
                 batch_size: Annotated[int, typer.Option(help="Images per forward pass.")] = 256) -> None:
    """Accuracy of a checkpoint on LR (or HR) test images.

    Example: fskd eval digits --ckpt runs/digits-demo-f-skd-x4-s0 --scale 4
    """
    from ..data.manifest import read_meta
    from ..errors import FskdError
    from ..evaluate.classification import classification_accuracy
    from ..evaluate.results import record
    from ..train.checkpoint import load_checkpoint

    ck = load_checkpoint(ckpt)
    data = data or f"data/{protocol.value}"
    meta = read_meta(data)
    if meta["task"] != "classification":
        raise FskdError(f"{data}: a {meta['task']} set, but `eval {protocol.value}` needs a classification set")
    if meta.get("num_classes") and meta["num_classes"] > ck["num_classes"]:
        raise FskdError(f"{ck['path']}: a {ck['num_classes']}-class model cannot classify {data} ({meta['num_classes']} classes)")
    metrics, details = classification_accuracy(ck, data, int(scale.value), split, device, batch_size)
    run_dir = Path(ck["path"]).parent
    payload = record(results, run_dir / "eval" / f"{protocol.value}_x{scale.value}.json", ck, protocol.value, scale.value,
                     metrics, {"data": str(data), **details})
    console.print(f"[green]{payload['run']}[/] {protocol.value} x{scale.value}: "
                  + ", ".join(f"{k} {v:.4f}" for k, v in metrics.items()))
