"""One eval's inputs: a checkpoint and a prepared test set, checked to fit each other.

:class:`Evaluation` opens both once (the ready model from the inference layer, how LR images are made,
the device) and gives each benchmark stage what it needs: embeddings of manifest rows at a scale, and the
record of its result (eval JSON + results.csv rows) in ``runs/NAME/eval/``.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ..core.checkpoint import Checkpoint, load_checkpoint
from ..core.errors import FskdError
from ..core.outputs import check_output_file
from ..core.results import record, written_by_eval
from ..core.runs import RunSetting
from ..data.dataset import PairDataset
from ..data.manifest import Row, fingerprint, read_meta
from ..inference.lowres import RESIZE, LowRes, embed
from ..inference.model import ReadyModel, load_model
from .benchmarks import BENCHMARKS


@dataclass
class Evaluation:
    """A loaded checkpoint and the dataset it is evaluated on; see the module docstring."""

    model: ReadyModel
    data: Path
    meta: dict[str, Any]
    lowres: LowRes
    batch_size: int

    @classmethod
    def open(cls, ckpt: str | Path, data: str | Path, task: str, benchmark: str, *, lr_source: str = "degrade",
             device: str | torch.device = "auto", batch_size: int = 128, head: bool = False) -> Evaluation:
        """Load ``ckpt`` and ``data``; the set must be of ``task`` and of the model's input size."""
        ck = load_checkpoint(ckpt)  # the checkpoint first: its mistakes are named before the data's
        meta = _check_task(data, task, benchmark)
        _check_unseen(ck, meta, data)
        model = load_model(ck, device=device, head=head)
        _check_size(model, meta, data)
        return cls(model, Path(data), meta, LowRes.for_run(model.checkpoint.degradation, lr_source), batch_size)

    @property
    def setting(self) -> RunSetting:
        return self.model.setting

    @property
    def eval_dir(self) -> Path:
        return self.model.checkpoint.run_dir / "eval"

    @property
    def resized(self) -> bool:
        """Whether the set keeps its crops at their native sizes (no ``image_size``), each resized to the input."""
        return not self.meta.get("image_size")

    def images(self, rows: list[Row], scale: int) -> PairDataset:
        """The images of ``rows`` at ``scale``; a native-size set is resized to the model's input."""
        return self.lowres.dataset(self.data, rows, scale, self.model.input_size if self.resized else None)

    def embed(self, rows: list[Row], scale: int, label: str) -> tuple[np.ndarray, np.ndarray]:
        """Float64 embeddings of ``rows`` at ``scale`` and of their mirror images."""
        emb, mirror = embed(self.model.backbone, self.images(rows, scale), self.lowres, scale, self.model.preprocess,
                            device=self.model.device, batch_size=self.batch_size, label=label, mirror=True)
        return emb.double().numpy(), mirror.double().numpy()

    def input_record(self) -> dict[str, Any]:
        """The eval JSON's record of how crops became model input: the set's layout and any resizing."""
        size = self.model.input_size
        layout = self.meta.get("layout")
        return {"layout": layout, "resized": f"{RESIZE} from native size to {size}px" if self.resized else None}

    def record(self, results: str | Path, json_path: str | Path, dataset: str, scale: int,
               metrics: dict[str, float], details: dict[str, Any]) -> dict[str, Any]:
        """Write the eval JSON and the results.csv rows; return the JSON's payload and its path."""
        details = {"data": str(self.data), **details, **self.input_record(), "lr_images": self.lowres.describe(scale)}
        ck = self.model.checkpoint
        payload = record(results, json_path, self.setting, str(ck.path), dataset, str(scale), metrics, details)
        return {**payload, "json": str(json_path)}

    def json_path(self, stem: str, given: str | Path | None = None) -> Path:
        """Where the eval JSON goes: ``given``, or ``runs/NAME/eval/STEM.json``; a file there that no eval wrote (a
        checkpoint kept in a folder of the user's own) is refused, never replaced."""
        path = check_output_file(given if given else self.eval_dir / f"{stem}.json", "the eval JSON")
        if path.exists() and not written_by_eval(path):
            raise FskdError(f"{path}: exists and is not an `fskd eval` output; move it away, or give the "
                            "checkpoint a run folder of its own (eval writes into its eval/ folder)")
        return path


def _check_task(data: str | Path, task: str, benchmark: str) -> dict[str, Any]:
    """The dataset's meta, checked to be a ``task`` set (a training set with held-out pairs verifies too)."""
    meta = read_meta(data)
    holdout_pairs = task == "verification" and (Path(data) / "pairs.csv").exists()
    if meta["task"] != task and not holdout_pairs:
        raise FskdError(f"{Path(data) / 'meta.yaml'}: {_a(str(meta['task']))} set, but `fskd eval {benchmark}` "
                        f"needs {_a(task)} set")
    name = meta.get("name")
    if BENCHMARKS.get(benchmark, (None, None))[1] and name is not None and name != benchmark:
        # another benchmark's set, or the user's own: its figures would go into results.csv under this benchmark's
        # name (and beside the paper's numbers for it)
        what = f"a {name} set (prepared by `fskd prepare {name}`)" if name in BENCHMARKS else f"a set named {name!r}"
        use = name if name in BENCHMARKS else task if task in BENCHMARKS else None  # any set of the task
        raise FskdError(f"{Path(data) / 'meta.yaml'}: {what}, not {benchmark} (prepared by `fskd prepare {benchmark}`)"
                        + (f"; evaluate it with `fskd eval {use}`" if use else ""))
    return meta


def _check_unseen(ck: Checkpoint, meta: dict[str, Any], data: str | Path) -> None:
    """A model trained on this very set before `prepare holdout` split it, or distilled from a teacher that was, has
    seen the people now held out: its figures on them would look like figures on unseen people. Told by the
    manifest's fingerprint, which the holdout changed (a copy of the set elsewhere is not recognised)."""
    if "holdout" not in meta:
        return
    teacher = Path(ck.teacher) if ck.teacher else None
    for model in (ck, load_checkpoint(teacher) if teacher is not None and teacher.exists() else None):
        if model is None or not model.data or not model.data_fingerprint:
            continue
        if Path(model.data).resolve() == Path(data).resolve() and model.data_fingerprint != fingerprint(data):
            whose = "" if model is ck else f"its teacher {model.path} was "
            raise FskdError(f"{ck.path}: {whose}trained on {data} before its identities were split by `fskd prepare "
                            "holdout`, so it has seen the held-out people; train it again on the split set")


def _a(word: str) -> str:
    """``an identification``, ``a verification``."""
    return f"{'an' if word[:1] in tuple('aeiou') else 'a'} {word}"


def _check_size(model: ReadyModel, meta: dict[str, Any], data: str | Path) -> None:
    """A model takes one input size; a set of another size is a user's mistake (native-size sets are resized)."""
    ck, image_size = model.checkpoint, meta.get("image_size")
    if image_size and image_size != ck.input_size:
        raise FskdError(f"{ck.path}: {ck.arch.name} takes {ck.input_size}px inputs, but {data} holds "
                        f"{image_size}px images; evaluate it on a set prepared at {ck.input_size}px")


def dataset_label(dataset: str, protocol: str | None = None, cross_resolution: bool = False,
                  layout: str | None = None) -> str:
    """The ``dataset`` column of results.csv: the name, plus any non-default protocol variant in brackets.

    TinyFace's native layout (crops at their own sizes) is a variant too: its numbers are not the paper's,
    which were measured on AdaFace's aligned 112 x 112 release.
    """
    variants = ((["cross-res"] if cross_resolution else []) + ([protocol] if protocol not in (None, "insightface") else [])
                + (["native"] if layout == "native" else []))
    return f"{dataset}[{','.join(variants)}]" if variants else dataset
