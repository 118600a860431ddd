"""The model formats fskd writes (``fskd export``) and reads (``fskd import-teacher``).

A module that imports nothing heavy: the command line builds its ``--format`` and ``--arch`` choices from these
definitions, so ``--help`` and a mistyped format are answered without loading torch.
"""

from __future__ import annotations

from pathlib import Path

from ..core.errors import FskdError
from ..core.outputs import check_output_file
from ..core.preprocess import Preprocess

EXPORT_FORMATS = ("onnx", "torchscript")
#: the file names each export format takes: a serving stack picks its loader by suffix, so a TorchScript file
#: named ``.onnx`` (or one without suffix) would be handed to the wrong runtime
EXPORT_SUFFIXES = {"onnx": (".onnx",), "torchscript": (".pt", ".torchscript")}
#: the depths of the published iResNet/IR teachers import-teacher reads (``--arch`` name -> depth)
TEACHER_ARCHS = {"iresnet18": 18, "iresnet34": 34, "iresnet50": 50, "iresnet100": 100}
#: format -> (fskd model name prefix, stem conv key, embedding Linear key, input convention)
TEACHER_FORMATS: dict[str, tuple[str, str, str, Preprocess]] = {
    "insightface": ("iresnet", "conv1.weight", "fc.weight", Preprocess("rgb", 127.5, 127.5)),
    "adaface": ("adaface_ir", "input_layer.0.weight", "output_layer.3.weight", Preprocess("bgr", 127.5, 127.5)),
}


def check_export_out(fmt: str, out: str | Path) -> Path:
    """``--out`` of ``fskd export`` checked before the model is loaded: a file (not a folder) whose suffix is the
    format's."""
    out = check_output_file(out, "--out")
    suffixes = EXPORT_SUFFIXES[fmt]
    if out.suffix.lower() not in suffixes:
        stem = out.with_suffix("")  # model.pt.json (the sidecar's name): model.pt
        fixed = stem if stem.suffix.lower() in suffixes else out.with_suffix(suffixes[0])
        raise FskdError(f"--out {out}: --format {fmt} writes a {' or '.join(suffixes)} file; name it {fixed.name}")
    return out
