"""One eval's inputs: a checkpoint and a prepared test set, checked to fit each other.

:class:`Evaluation` opens both once (model, head, preprocessing, how LR images are made, the device)
and gives each benchmark stage what it needs: embeddings of manifest rows at a scale, and the record
of its result (eval JSON + results.csv rows) in ``runs/NAME/eval/``.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from ..core.checkpoint import build_model, load_checkpoint
from ..core.device import resolve_device
from ..core.errors import FskdError
from ..core.preprocess import Preprocess
from ..core.runs import RunSetting
from ..data.dataset import PairDataset
from ..data.manifest import Row, read_meta
from .embed import LowRes, embed
from .results import check_output_file, record


@dataclass
class Evaluation:
    """A loaded checkpoint and the dataset it is evaluated on; see the module docstring."""

    ck: dict[str, Any]
    setting: RunSetting
    model: nn.Module
    head: nn.Module
    data: Path
    meta: dict[str, Any]
    lowres: LowRes
    preprocess: Preprocess
    device: torch.device
    batch_size: int

    @classmethod
    def open(cls, ckpt: str | Path, data: str | Path, task: str, benchmark: str, *, lr_source: str = "degrade",
             device: str | torch.device = "auto", batch_size: int = 128) -> Evaluation:
        """Load ``ckpt`` and ``data``; the set must be of ``task`` and of the model's input size."""
        ck = load_checkpoint(ckpt)
        meta = _check_task(data, task, benchmark)
        setting = RunSetting.of(ck)
        model, head = build_model(ck)
        _check_size(ck, model, meta, data)
        return cls(ck, setting, model, head, Path(data), meta, LowRes.for_run(setting.degradation, lr_source),
                   Preprocess.from_dict(ck.get("preprocess")), resolve_device(device), batch_size)

    @property
    def eval_dir(self) -> Path:
        return Path(self.ck["path"]).parent / "eval"

    def images(self, rows: list[Row], scale: int) -> PairDataset:
        """The images of ``rows`` at ``scale``; a native-size set (no ``image_size``) is resized to the model's."""
        size = None if self.meta.get("image_size") else getattr(self.model, "input_size", None)
        return self.lowres.dataset(self.data, rows, scale, size)

    def embed(self, rows: list[Row], scale: int, label: str) -> tuple[np.ndarray, np.ndarray]:
        """Float64 embeddings of ``rows`` at ``scale`` and of their mirror images."""
        emb, mirror = embed(self.model, self.images(rows, scale), self.lowres, scale, self.preprocess,
                            device=self.device, batch_size=self.batch_size, label=label, mirror=True)
        return emb.double().numpy(), mirror.double().numpy()

    def record(self, results: str | Path, json_path: str | Path, dataset: str, scale: int,
               metrics: dict[str, float], details: dict[str, Any]) -> dict[str, Any]:
        """Write the eval JSON and the results.csv rows; return the JSON's payload and its path."""
        details = {"data": str(self.data), **details, "lr_images": self.lowres.describe(scale)}
        payload = record(results, json_path, self.setting, self.ck["path"], dataset, str(scale), metrics, details)
        return {**payload, "json": str(json_path)}

    def json_path(self, stem: str, given: str | Path | None = None) -> Path:
        """Where the eval JSON goes: ``given``, or ``runs/NAME/eval/STEM.json``."""
        return check_output_file(given if given else self.eval_dir / f"{stem}.json", "the eval JSON")


def _check_task(data: str | Path, task: str, benchmark: str) -> dict[str, Any]:
    """The dataset's meta, checked to be a ``task`` set (a training set with held-out pairs verifies too)."""
    meta = read_meta(data)
    holdout_pairs = task == "verification" and (Path(data) / "pairs.csv").exists()
    if meta["task"] != task and not holdout_pairs:
        raise FskdError(f"{Path(data) / 'meta.yaml'}: a {meta['task']} set, but `fskd eval {benchmark}` "
                        f"needs {'an' if task[0] in 'aeiou' else 'a'} {task} set")
    return meta


def _check_size(ck: dict[str, Any], model: nn.Module, meta: dict[str, Any], data: str | Path) -> None:
    """A model takes one input size; a set of another size is a user's mistake (native-size sets are resized)."""
    size, image_size = getattr(model, "input_size", None), meta.get("image_size")
    if image_size and size and image_size != size:
        raise FskdError(f"{ck['path']}: {ck['arch']['name']} takes {size}px inputs, but {data} holds "
                        f"{image_size}px images; evaluate it on a set prepared at {size}px")


def dataset_label(dataset: str, protocol: str | None = None, cross_resolution: bool = False) -> str:
    """The ``dataset`` column of results.csv: the name, plus any non-default protocol variant in brackets."""
    variants = (["cross-res"] if cross_resolution else []) + ([protocol] if protocol not in (None, "insightface") else [])
    return f"{dataset}[{','.join(variants)}]" if variants else dataset
