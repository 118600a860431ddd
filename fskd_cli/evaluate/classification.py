"""Classification accuracy (digits, SVHN): the head's arg-max on the LR test images at one scale."""

from __future__ import annotations

from typing import Any

import torch

from ..core.checkpoint import build_model
from ..core.scale import Scale
from .embed import dataset_for, embed


def classification_accuracy(ck: dict[str, Any], data: str, scale: int, split: str = "test",
                            device: str = "cpu", batch_size: int = 256) -> tuple[dict[str, float], dict[str, Any]]:
    model, head = build_model(ck)
    ds = dataset_for(data, split, Scale.parse(scale).factors)
    emb = embed(model, ds, scale, batch_size=batch_size, device=device, label="accuracy")
    with torch.inference_mode():
        pred = head.cpu()(emb).argmax(1)
    correct = (pred == ds.labels).float()
    per_class = {int(c): float(correct[ds.labels == c].mean()) for c in ds.labels.unique()}
    return {"accuracy": float(correct.mean())}, {"split": split, "images": len(ds), "per_class_accuracy": per_class}
