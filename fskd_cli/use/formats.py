"""The model formats fskd writes (``fskd export``) and reads (``fskd import-teacher``).

A module that imports nothing heavy: the command line builds its ``--format`` and ``--arch`` choices from these
definitions, so ``--help`` and a mistyped format are answered without loading torch.
"""

from __future__ import annotations

from ..core.preprocess import Preprocess

EXPORT_FORMATS = ("onnx", "torchscript")
#: the depths of the published iResNet/IR teachers import-teacher reads (``--arch`` name -> depth)
TEACHER_ARCHS = {"iresnet18": 18, "iresnet34": 34, "iresnet50": 50, "iresnet100": 100}
#: format -> (fskd model name prefix, stem conv key, embedding Linear key, input convention)
TEACHER_FORMATS: dict[str, tuple[str, str, str, Preprocess]] = {
    "insightface": ("iresnet", "conv1.weight", "fc.weight", Preprocess("rgb", 127.5, 127.5)),
    "adaface": ("adaface_ir", "input_layer.0.weight", "output_layer.3.weight", Preprocess("bgr", 127.5, 127.5)),
}
