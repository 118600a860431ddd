"""Classification accuracy (digits, SVHN): the head's arg-max on the LR test images at one scale."""

from __future__ import annotations

from typing import Any

import torch

from ..core.errors import FskdError
from ..data.manifest import read_manifest
from ..inference.lowres import embed
from .inputs import Evaluation


def classification_accuracy(ev: Evaluation, scale: int, split: str = "test") -> tuple[dict[str, float], dict[str, Any]]:
    """Overall and per-class accuracy of the checkpoint's head on one split at ``scale``."""
    rows = read_manifest(ev.data, split=split)
    if not rows:
        raise FskdError(f"{ev.data / 'manifest.csv'}: no usable images in split {split!r}")
    ds = ev.images(rows, scale)
    m = ev.model
    emb, _ = embed(m.backbone, ds, ev.lowres, scale, m.preprocess, device=m.device, batch_size=ev.batch_size,
                   label="accuracy")
    with torch.inference_mode():
        pred = m.head(emb.to(m.device)).argmax(1).cpu()
    correct = (pred == ds.labels).float()
    per_class = {int(c): float(correct[ds.labels == c].mean()) for c in ds.labels.unique()}
    return {"accuracy": float(correct.mean())}, {"split": split, "images": len(ds), "per_class_accuracy": per_class}
