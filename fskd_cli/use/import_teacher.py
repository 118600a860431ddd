"""``fskd import-teacher``: a published face model as an fskd teacher run, so F-SKD can start from it.

Two formats, each loaded into the fskd model that has its exact layout (every key and shape checked):

- ``insightface``: arcface_torch's ``backbone.pth``, a plain state dict of its iResNet with the FC
  embedding head, which is :mod:`fskd_cli.models.iresnet` with ``head="fc"``. Input RGB in [-1, 1].
- ``adaface``: an AdaFace checkpoint (PyTorch Lightning), whose ``state_dict`` holds the backbone under
  ``model.`` (and its margin head under ``head.``, which is not needed). Its IR nets are
  :mod:`fskd_cli.models.ir_adaface`. Input BGR in [-1, 1].

Widths, the embedding size and the input size are read from the weights' shapes; the depth is
``--arch``, and a depth that does not fit the weights is reported with the first mismatched keys. The
run records the input convention (``preprocess``), which eval, embed, export and a student distilled
from it follow. It has no classifier (a head with 0 classes): F-SKD needs only the teacher's features.
Files are read with ``weights_only=True``: a checkpoint that pickles other Python objects is refused
(with how to re-save its state dict), since unpickling them would run code from the file.
"""

from __future__ import annotations

import hashlib
import math
import pickle
import warnings
from pathlib import Path
from typing import Any

import torch
from torch import nn

from ..core.checkpoint import save_checkpoint
from ..core.config import DataConfig, ModelConfig, RunConfig
from ..core.errors import FskdError
from ..core.guard import claim_output
from ..core.io import write_yaml
from ..models import create_model
from ..models.heads import create_head
from .formats import TEACHER_ARCHS, TEACHER_FORMATS

SHOWN = 3  # mismatched keys named in an error


def import_teacher(weights: str | Path, arch: str, fmt: str, out: str | Path, force: bool = False) -> Path:
    """Write ``out/checkpoint.pt``: a teacher run holding ``weights`` (of ``fmt``) as an ``arch`` backbone."""
    weights, out = Path(weights), Path(out)
    if arch not in TEACHER_ARCHS:
        raise FskdError(f"--arch must be one of {', '.join(TEACHER_ARCHS)}, got {arch!r}")
    if fmt not in TEACHER_FORMATS:
        raise FskdError(f"--format must be one of {', '.join(TEACHER_FORMATS)}, got {fmt!r}")
    state = backbone_state(weights, fmt)
    model = build_backbone(state, weights, arch, fmt)
    claim_output(out, "import-teacher", {"weights": str(weights.resolve()), "arch": arch, "format": fmt}, force=force)
    preprocess = TEACHER_FORMATS[fmt][3].to_dict()
    cfg = RunConfig(name=out.name, data=DataConfig(path=""), model=ModelConfig(
        model.arch["name"], dict(model.arch["kwargs"]), head="softmax", preprocess=preprocess))
    head = create_head("softmax", model.embedding_size, 0)
    save_checkpoint(out / "checkpoint.pt", {
        "kind": "teacher", "arch": model.arch, "head_arch": {"name": "softmax", "kwargs": {}}, "num_classes": 0,
        "input_size": model.input_size, "config": cfg.to_dict(), "method": None, "scale": "1", "teacher": None,
        "preprocess": preprocess, "model": model.state_dict(), "head": head.state_dict(),
        "distiller": {}, "step": 0, "total_steps": 0, "data_fingerprint": None,
        "imported": {"weights": str(weights.resolve()), "sha256": _sha256(weights), "format": fmt, "arch": arch},
    })
    write_yaml(out / "config.yaml", {"kind": "teacher", **cfg.to_dict()})
    return out / "checkpoint.pt"


def backbone_state(weights: Path, fmt: str) -> dict[str, torch.Tensor]:
    """The backbone's tensors from ``weights``, keys as the original network names them (prefixes removed)."""
    obj = _load(weights)
    if fmt == "adaface":
        state = obj.get("state_dict", obj) if isinstance(obj, dict) else None
        if not isinstance(state, dict) or not any(str(k).startswith("model.") for k in state):
            raise FskdError(f"{weights}: not an AdaFace checkpoint (no 'state_dict' with 'model.' keys)")
        return {k[len("model."):]: v for k, v in state.items() if k.startswith("model.")}
    if not isinstance(obj, dict) or not obj or not all(isinstance(v, torch.Tensor) for v in obj.values()):
        raise FskdError(f"{weights}: not an insightface backbone.pth (a plain state dict of tensors)")
    if all(k.startswith("module.") for k in obj):  # saved from a DataParallel/DDP wrapper
        obj = {k[len("module."):]: v for k, v in obj.items()}
    return obj


def build_backbone(state: dict[str, torch.Tensor], weights: Path, arch: str, fmt: str) -> nn.Module:
    """The fskd model of ``arch`` in ``fmt``'s layout, sized from ``state`` and loaded with it (checked)."""
    prefix, stem_key, linear_key, _ = TEACHER_FORMATS[fmt]
    for key in (stem_key, linear_key):
        if key not in state or state[key].dim() < 2:
            raise FskdError(f"{weights}: no {key} tensor; not {fmt} weights of an iResNet (is --format right?)")
    width = state[stem_key].shape[0]
    embedding, flat = state[linear_key].shape
    side = math.isqrt(flat // (8 * width)) if flat % (8 * width) == 0 else 0
    if side * side * 8 * width != flat:
        raise FskdError(f"{weights}: {linear_key} of shape {tuple(state[linear_key].shape)} does not fit a stem "
                        f"{width} channels wide")
    kwargs: dict[str, Any] = {"embedding_size": embedding, "base_width": width, "input_size": 16 * side}
    model = create_model(f"{prefix}{TEACHER_ARCHS[arch]}", **kwargs)
    _check_keys(model, state, weights, f"{arch} ({fmt})")
    _check_finite(state, weights)
    model.load_state_dict(state)
    return model.eval()


def _check_keys(model: nn.Module, state: dict[str, torch.Tensor], weights: Path, what: str) -> None:
    """One line naming the first few missing, unexpected or differently shaped tensors, if any."""
    expected = model.state_dict()
    problems = [f"missing {k}" for k in expected if k not in state]
    problems += [f"unexpected {k}" for k in state if k not in expected]
    problems += [f"{k} is {tuple(v.shape)}, {what} needs {tuple(expected[k].shape)}" for k, v in state.items()
                 if k in expected and v.shape != expected[k].shape]
    if problems:
        more = f" (and {len(problems) - SHOWN} more)" if len(problems) > SHOWN else ""
        raise FskdError(f"{weights}: does not match {what}: {'; '.join(problems[:SHOWN])}{more}; is --arch right?")


def _check_finite(state: dict[str, torch.Tensor], weights: Path) -> None:
    """NaN or inf weights embed every face as NaN, and the run written from them would be refused by every later
    command: refused here, before ``--out`` is claimed."""
    for name, tensor in state.items():
        if tensor.is_floating_point() and not bool(torch.isfinite(tensor).all()):
            bad = int((~torch.isfinite(tensor)).sum())
            raise FskdError(f"{weights}: weight {name} holds {bad} non-finite values (NaN or inf); these weights "
                            "are damaged or come from a diverged run")


def _load(weights: Path) -> Any:
    if not weights.is_file():
        what = ("a folder; give the weights file in it (backbone.pth, *.ckpt)" if weights.is_dir()
                else "not a regular file" if weights.exists() else "no such file")
        raise FskdError(f"{weights}: {what}")
    try:
        with warnings.catch_warnings():  # a TorchScript archive warns before it fails: the error line says it all
            warnings.simplefilter("ignore")
            return torch.load(weights, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as e:
        if "weights only" in str(e).lower() or "weights_only" in str(e):
            raise FskdError(f"{weights}: holds pickled Python objects besides tensors, which fskd does not unpickle; "
                            "if you trust the file, re-save its tensors: torch.save(obj.state_dict(), 'weights.pt') "
                            "for a whole pickled model, torch.save(obj['state_dict'], 'weights.pt') for a dict, "
                            "where obj = torch.load(f, weights_only=False)") from None
        raise FskdError(f"{weights}: not a readable PyTorch file ({str(e).splitlines()[0][:100]})") from None
    except Exception as e:  # noqa: BLE001  (a user's file: any failure of this one call to deserialise it)
        raise FskdError(f"{weights}: not a readable PyTorch file, truncated or damaged? "
                        f"({type(e).__name__}: {(str(e) or '-').splitlines()[0][:100]})") from None


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()
