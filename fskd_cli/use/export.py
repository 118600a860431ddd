"""``fskd export``: the backbone as an ONNX or TorchScript file, checked against PyTorch after writing.

The exported graph maps a normalised batch ``[N, 3, S, S]`` (float32; dynamic ``N``) to the model's
embedding ``[N, D]`` (not L2-normalised, as the backbone gives it). What "normalised" means for this
model (colour order, mean, std) is read from the checkpoint and written three times, so that a serving
stack cannot miss it: into the file (ONNX ``metadata_props``; TorchScript extra file
``fskd_preprocess.json``), and into a sidecar ``FILE.json`` beside it.

ONNX goes through torch's TorchScript-based exporter (opset 17), which needs only the ``onnx`` package;
TorchScript is ``torch.jit.trace``. Before the file is renamed into place it is loaded back
(onnxruntime, ``torch.jit.load``) and run on seeded images at a batch size other than the traced one;
the largest absolute difference from PyTorch's L2-normalised embeddings must stay within
:data:`TOLERANCE`.
"""

from __future__ import annotations

import json
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F

from .. import __version__
from ..core.errors import FskdError
from ..core.io import atomic_path, write_text
from ..core.outputs import check_replaceable
from ..inference.model import ReadyModel
from .formats import EXPORT_FORMATS, check_export_out

OPSET = 17
TOLERANCE = 1e-4  # fp32
CHECK_IMAGES = 5  # run on this many images; traced with 2, so the dynamic batch is exercised too
EXTRA_FILE = "fskd_preprocess.json"
INSTALL = 'pip install -e ".[export]"'


@dataclass(frozen=True)
class Exported:
    path: Path
    sidecar: Path
    size_bytes: int
    max_abs_diff: float


def export_model(model: ReadyModel, fmt: str, out: str | Path) -> Exported:
    """Write ``model``'s backbone to ``out`` as ``fmt``, check it, and write the sidecar JSON."""
    if fmt not in EXPORT_FORMATS:
        raise FskdError(f"--format must be one of {', '.join(EXPORT_FORMATS)}, got {fmt!r}")
    out = check_export_out(fmt, out)  # a folder ('.', '/') has no name to put the sidecar beside
    sidecar = out.with_name(out.name + ".json")
    # an earlier export is replaced only whole: the file and its sidecar, which says fskd wrote them
    check_replaceable(out, lambda _: _is_export_sidecar(sidecar), "export")
    check_replaceable(sidecar, _is_export_sidecar, "export")
    if fmt == "onnx":
        _require_onnx()
    if model.device.type != "cpu":
        raise ValueError(f"export traces and checks on the CPU; load the model with device='cpu', not {model.device}")
    backbone = model.backbone.eval()
    metadata = describe(model, fmt, out)
    size = model.input_size
    with atomic_path(out) as tmp:
        (_write_onnx if fmt == "onnx" else _write_torchscript)(backbone, torch.zeros(2, 3, size, size), tmp, metadata)
        diff = _max_abs_diff(backbone, tmp, fmt, _check_batch(model))
        if not diff <= TOLERANCE:
            raise FskdError(f"{out}: the exported {fmt} model differs from PyTorch by {diff:.3g} "
                            f"(L2-normalised embeddings; > {TOLERANCE:g}); not written")
        size_bytes = tmp.stat().st_size
    parity = {"max_abs_diff": diff, "compared": "L2-normalised embeddings", "images": CHECK_IMAGES, "tolerance": TOLERANCE}
    write_text(sidecar, json.dumps({**metadata, "parity": parity}, indent=2) + "\n")
    return Exported(out, sidecar, size_bytes, diff)


def describe(model: ReadyModel, fmt: str, out: Path) -> dict[str, Any]:
    """What a user of the file needs: input layout and preprocessing, output, and where the model came from."""
    p, s, setting = model.preprocess, model.input_size, model.setting
    return {
        "format": fmt, "file": out.name, "fskd_version": __version__,
        "input": {"name": "input", "shape": ["N", 3, s, s], "dtype": "float32", "color": p.color, "mean": p.mean,
                  "std": p.std, "preprocess": f"aligned {s}x{s} face crop (insightface 5-point template), channels in "
                                              f"{p.color.upper()} order, x = (uint8 - {p.mean:g}) / {p.std:g}"},
        "output": {"name": "embedding", "shape": ["N", model.embedding_size], "normalised": False,
                   "compare": "L2-normalise; fskd adds the mirror image's embedding first, then takes the cosine"},
        "model": {"arch": model.checkpoint.arch.to_dict(), "kind": model.checkpoint.kind, "run": setting.run,
                  "method": setting.method, "scale": setting.scale.value, "checkpoint": str(model.checkpoint.path)},
    }


def _is_export_sidecar(sidecar: Path) -> bool:
    try:
        data = json.loads(sidecar.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return False
    return isinstance(data, dict) and {"format", "fskd_version", "parity"} <= set(data)


def _require_onnx() -> None:
    try:
        import onnx  # noqa: F401
        import onnxruntime  # noqa: F401
    except ImportError:
        raise FskdError(f"--format onnx needs the onnx and onnxruntime packages: {INSTALL}") from None


def _write_onnx(backbone: torch.nn.Module, example: torch.Tensor, path: Path, metadata: dict[str, Any]) -> None:
    import onnx

    with warnings.catch_warnings():  # torch announces its newer exporter, which would need onnxscript too
        warnings.filterwarnings("ignore", category=DeprecationWarning, module=r"torch\.onnx")
        warnings.filterwarnings("ignore", message=".*legacy TorchScript-based ONNX export", category=DeprecationWarning)
        torch.onnx.export(backbone, (example,), str(path), input_names=["input"], output_names=["embedding"],
                          dynamic_axes={"input": {0: "N"}, "embedding": {0: "N"}}, opset_version=OPSET, dynamo=False)
    graph = onnx.load(str(path))
    onnx.helper.set_model_props(graph, {"fskd": json.dumps(metadata), "fskd_color": metadata["input"]["color"],
                                        "fskd_mean": str(metadata["input"]["mean"]),
                                        "fskd_std": str(metadata["input"]["std"])})
    onnx.save(graph, str(path))


def _write_torchscript(backbone: torch.nn.Module, example: torch.Tensor, path: Path, metadata: dict[str, Any]) -> None:
    with _quiet_jit(), torch.no_grad():
        traced = torch.jit.trace(backbone, example)
        torch.jit.save(traced, str(path), _extra_files={EXTRA_FILE: json.dumps(metadata)})


@contextmanager
def _quiet_jit() -> Iterator[None]:
    """torch.jit warns that it is deprecated on every call; TorchScript is still what many servers load."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=r".*torch\.jit\..* is deprecated", category=FutureWarning)
        yield


def _check_batch(model: ReadyModel) -> torch.Tensor:
    """Seeded uint8 images, preprocessed as the model expects: the parity check's input."""
    g = torch.Generator().manual_seed(0)
    s = model.input_size
    return model.inputs(torch.randint(0, 256, (CHECK_IMAGES, 3, s, s), generator=g, dtype=torch.uint8))


@torch.inference_mode()
def _max_abs_diff(backbone: torch.nn.Module, path: Path, fmt: str, x: torch.Tensor) -> float:
    """Largest absolute difference between the L2-normalised embeddings of ``x`` by PyTorch and by the file.

    Normalised, because that is what is compared (a cosine) and because a tolerance on the raw output would
    depend on the embedding's norm, which is arbitrary (tens for insightface models): fp32 rounding in a
    fused Conv+BN then exceeds 1e-4 without any error in the graph.
    """
    ref = backbone(x).float()
    if fmt == "onnx":
        import onnxruntime as ort

        session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
        got = torch.from_numpy(session.run(["embedding"], {"input": x.numpy()})[0])
    else:
        with _quiet_jit():
            got = torch.jit.load(str(path), map_location="cpu")(x).float()
    if got.shape != ref.shape:
        raise FskdError(f"{path}: the exported model gives {tuple(got.shape)}, PyTorch {tuple(ref.shape)}")
    return float((F.normalize(got, dim=1) - F.normalize(ref, dim=1)).abs().max())
