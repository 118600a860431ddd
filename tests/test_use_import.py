"""``fskd import-teacher``: insightface and AdaFace weights become teacher runs whose ``fskd embed`` output
is the original network's embedding (cosine >= 0.9999, each in its own colour convention), which distill
takes as a teacher; a wrong arch, a truncated file or a foreign file is a one-line error.

The originals are not installed here, so the first half of this file is an independent reference: random
weights in the originals' key layouts, and their forward pass computed functionally from those keys alone,
written from the public sources (arcface_torch ``backbones/iresnet.py``; AdaFace ``net.py``, ``inference.py``)
without fskd's models. The layouts (``d`` = stage width, ``w`` = stem width, 64 in both originals):

- arcface_torch: ``conv1``, ``bn1``, ``prelu``; ``layer{1..4}.{j}`` blocks of ``bn1, conv1, bn2, prelu,
  conv2 (stride), bn3`` and, in each stage's first block (stride 2), ``downsample.0`` (1x1 conv, stride 2)
  + ``downsample.1`` (BN); then ``bn2``, flatten, dropout, ``fc``, ``features`` (BatchNorm1d, affine).
- AdaFace: ``input_layer.{0 conv, 1 BN, 2 PReLU}``; a flat ``body.{i}`` of blocks with
  ``res_layer.{0 BN, 1 conv, 2 BN, 3 PReLU, 4 conv (stride), 5 BN}`` and a ``shortcut_layer``: a 1x1
  max-pool with the block's stride when in == out channels (no tensors), else ``.0`` 1x1 conv + ``.1`` BN;
  then ``output_layer.{0 BN2d, 1 Dropout, 2 Flatten, 3 Linear, 4 BatchNorm1d(affine=False)}``. Its forward
  returns ``(x / ||x||, ||x||)``; ``inference.py`` feeds ``((rgb[:, :, ::-1] / 255) - 0.5) / 0.5`` (BGR).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from conftest import assert_one_line_error, pattern, run_cli
from PIL import Image

from fskd_cli.core.checkpoint import load_checkpoint
from fskd_cli.inference.model import build_backbone
from fskd_cli.use.embed import read_embeddings

STAGES = {18: (2, 2, 2, 2), 34: (3, 4, 6, 3)}


def _bn(state: dict, name: str, c: int, g: torch.Generator, affine: bool = True) -> None:
    if affine:
        state[f"{name}.weight"] = 1 + 0.1 * torch.randn(c, generator=g)
        state[f"{name}.bias"] = 0.1 * torch.randn(c, generator=g)
    state[f"{name}.running_mean"] = 0.1 * torch.randn(c, generator=g)
    state[f"{name}.running_var"] = 0.5 + torch.rand(c, generator=g)
    state[f"{name}.num_batches_tracked"] = torch.tensor(100)


def _conv(state: dict, name: str, cout: int, cin: int, k: int, g: torch.Generator) -> None:
    state[f"{name}.weight"] = torch.randn(cout, cin, k, k, generator=g) * (2.0 / (cin * k * k)) ** 0.5


def _prelu(state: dict, name: str, c: int, g: torch.Generator) -> None:
    state[f"{name}.weight"] = 0.25 + 0.05 * torch.randn(c, generator=g)


def _head(state: dict, linear: str, bn1d: str, cin: int, emb: int, g: torch.Generator, affine: bool) -> None:
    state[f"{linear}.weight"] = torch.randn(emb, cin * 49, generator=g) * (1.0 / (cin * 49)) ** 0.5
    state[f"{linear}.bias"] = 0.01 * torch.randn(emb, generator=g)
    _bn(state, bn1d, emb, g, affine)


def arcface_state(depth: int = 18, width: int = 8, emb: int = 32, seed: int = 0) -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    s: dict[str, torch.Tensor] = {}
    _conv(s, "conv1", width, 3, 3, g), _bn(s, "bn1", width, g), _prelu(s, "prelu", width, g)
    cin = width
    for i, blocks in enumerate(STAGES[depth], start=1):
        d = width * 2 ** (i - 1)
        for j in range(blocks):
            p, bin_ = f"layer{i}.{j}", cin if j == 0 else d
            _bn(s, f"{p}.bn1", bin_, g), _conv(s, f"{p}.conv1", d, bin_, 3, g), _bn(s, f"{p}.bn2", d, g)
            _prelu(s, f"{p}.prelu", d, g), _conv(s, f"{p}.conv2", d, d, 3, g), _bn(s, f"{p}.bn3", d, g)
            if j == 0:
                _conv(s, f"{p}.downsample.0", d, cin, 1, g), _bn(s, f"{p}.downsample.1", d, g)
        cin = d
    _bn(s, "bn2", cin, g)
    _head(s, "fc", "features", cin, emb, g, affine=True)
    return s


def adaface_state(depth: int = 18, width: int = 8, emb: int = 32, seed: int = 0) -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    s: dict[str, torch.Tensor] = {}
    _conv(s, "input_layer.0", width, 3, 3, g), _bn(s, "input_layer.1", width, g), _prelu(s, "input_layer.2", width, g)
    cin, n = width, 0
    for i, blocks in enumerate(STAGES[depth]):
        d = width * 2 ** i
        for j in range(blocks):
            p, bin_ = f"body.{n}", cin if j == 0 else d
            _bn(s, f"{p}.res_layer.0", bin_, g), _conv(s, f"{p}.res_layer.1", d, bin_, 3, g)
            _bn(s, f"{p}.res_layer.2", d, g), _prelu(s, f"{p}.res_layer.3", d, g)
            _conv(s, f"{p}.res_layer.4", d, d, 3, g), _bn(s, f"{p}.res_layer.5", d, g)
            if bin_ != d:
                _conv(s, f"{p}.shortcut_layer.0", d, bin_, 1, g), _bn(s, f"{p}.shortcut_layer.1", d, g)
            n += 1
        cin = d
    _bn(s, "output_layer.0", cin, g)
    _head(s, "output_layer.3", "output_layer.4", cin, emb, g, affine=False)
    return s


def _f_bn(x: torch.Tensor, s: dict, name: str) -> torch.Tensor:
    return F.batch_norm(x, s[f"{name}.running_mean"], s[f"{name}.running_var"], s.get(f"{name}.weight"),
                        s.get(f"{name}.bias"), training=False, eps=1e-5)


def _f_conv(x: torch.Tensor, s: dict, name: str, stride: int = 1) -> torch.Tensor:
    w = s[f"{name}.weight"]
    return F.conv2d(x, w, stride=stride, padding=w.shape[-1] // 2)


def arcface_forward(s: dict, x: torch.Tensor, depth: int = 18) -> torch.Tensor:
    """arcface_torch's iResNet forward (eval mode) from its state dict alone; returns the embedding."""
    x = F.prelu(_f_bn(_f_conv(x, s, "conv1"), s, "bn1"), s["prelu.weight"])
    for i, blocks in enumerate(STAGES[depth], start=1):
        for j in range(blocks):
            p, stride = f"layer{i}.{j}", 2 if j == 0 else 1
            out = F.prelu(_f_bn(_f_conv(_f_bn(x, s, f"{p}.bn1"), s, f"{p}.conv1"), s, f"{p}.bn2"), s[f"{p}.prelu.weight"])
            out = _f_bn(_f_conv(out, s, f"{p}.conv2", stride), s, f"{p}.bn3")
            identity = _f_bn(_f_conv(x, s, f"{p}.downsample.0", stride), s, f"{p}.downsample.1") if j == 0 else x
            x = out + identity
    x = torch.flatten(_f_bn(x, s, "bn2"), 1)
    return _f_bn(F.linear(x, s["fc.weight"], s["fc.bias"]), s, "features")


def adaface_forward(s: dict, x: torch.Tensor, depth: int = 18) -> tuple[torch.Tensor, torch.Tensor]:
    """AdaFace's IR forward (eval mode) from its state dict alone; returns (unit embedding, norm) as it does."""
    x = F.prelu(_f_bn(_f_conv(x, s, "input_layer.0"), s, "input_layer.1"), s["input_layer.2.weight"])
    n = 0
    for blocks in STAGES[depth]:
        for j in range(blocks):
            p, stride = f"body.{n}", 2 if j == 0 else 1
            res = _f_bn(_f_conv(_f_bn(x, s, f"{p}.res_layer.0"), s, f"{p}.res_layer.1"), s, f"{p}.res_layer.2")
            res = _f_bn(_f_conv(F.prelu(res, s[f"{p}.res_layer.3.weight"]), s, f"{p}.res_layer.4", stride), s,
                        f"{p}.res_layer.5")
            if f"{p}.shortcut_layer.0.weight" in s:
                short = _f_bn(_f_conv(x, s, f"{p}.shortcut_layer.0", stride), s, f"{p}.shortcut_layer.1")
            else:  # MaxPool2d(kernel 1, stride): keep every stride-th pixel
                short = x[:, :, ::stride, ::stride]
            x = res + short
            n += 1
    x = torch.flatten(_f_bn(x, s, "output_layer.0"), 1)
    x = _f_bn(F.linear(x, s["output_layer.3.weight"], s["output_layer.3.bias"]), s, "output_layer.4")
    norm = torch.norm(x, 2, 1, True)
    return x / norm, norm



def crops(folder: Path, n: int = 4) -> tuple[list[Path], np.ndarray]:
    """``n`` 112 x 112 RGB crops written as PNG, and the uint8 array of them."""
    folder.mkdir(parents=True, exist_ok=True)
    images = np.stack([pattern(3 * i + 1) for i in range(n)])
    paths = []
    for i, im in enumerate(images):
        paths.append(folder / f"{i}.png")
        Image.fromarray(im).save(paths[-1])
    return paths, images


def original_input(images: np.ndarray, bgr: bool) -> torch.Tensor:
    """What the original code feeds its network: ((img / 255) - 0.5) / 0.5, channels reversed for AdaFace."""
    x = images[..., ::-1] if bgr else images
    return torch.from_numpy(((x / 255.0) - 0.5) / 0.5).permute(0, 3, 1, 2).float()


def embed_cli(run: Path, paths: list[Path], out: Path) -> np.ndarray:
    result = run_cli("embed", *paths, "--ckpt", run, "--aligned", "--no-flip", "--out", out, "--device", "cpu")
    assert result.returncode == 0, result.stderr
    emb = read_embeddings(out)
    assert emb.paths == [str(p) for p in paths] and set(emb.status) == {"ok"}
    return emb.embeddings


def row_cosines(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    a = a / np.linalg.norm(a, axis=1, keepdims=True)
    b = b / np.linalg.norm(b, axis=1, keepdims=True)
    return (a * b).sum(1)


def test_insightface_backbone_embeds_as_the_original(tmp_path):
    state = arcface_state(18)
    torch.save(state, tmp_path / "backbone.pth")
    result = run_cli("import-teacher", tmp_path / "backbone.pth", "--arch", "iresnet18", "--format", "insightface",
                     "--out", tmp_path / "runs" / "arcface")
    assert result.returncode == 0, result.stderr
    ck = load_checkpoint(tmp_path / "runs" / "arcface", kind="teacher")
    assert ck.preprocess.color == "rgb" and ck.arch.name == "iresnet18"
    paths, images = crops(tmp_path / "crops")
    ours = embed_cli(tmp_path / "runs" / "arcface", paths, tmp_path / "emb.npz")
    with torch.no_grad():
        theirs = arcface_forward(state, original_input(images, bgr=False)).numpy()
    assert row_cosines(ours, theirs).min() >= 0.9999
    # the colour convention matters: the same weights fed BGR give clearly different embeddings
    with torch.no_grad():
        swapped = arcface_forward(state, original_input(images, bgr=True)).numpy()
    assert row_cosines(ours, swapped).min() < 0.999


def test_adaface_checkpoint_embeds_as_the_original_in_bgr(tmp_path):
    state = adaface_state(18)
    lightning = {"state_dict": {**{f"model.{k}": v for k, v in state.items()}, "head.kernel": torch.randn(32, 10)},
                 "epoch": 3, "global_step": 1000}
    torch.save(lightning, tmp_path / "adaface_ir18.ckpt")
    result = run_cli("import-teacher", tmp_path / "adaface_ir18.ckpt", "--arch", "iresnet18", "--format", "adaface",
                     "--out", tmp_path / "runs" / "adaface")
    assert result.returncode == 0, result.stderr
    ck = load_checkpoint(tmp_path / "runs" / "adaface", kind="teacher")
    assert ck.preprocess.to_dict() == {"color": "bgr", "mean": 127.5, "std": 127.5}
    model = build_backbone(ck)
    assert model.feature_layers == ("body.1", "body.3", "body.5", "body.7")
    paths, images = crops(tmp_path / "crops")
    ours = embed_cli(tmp_path / "runs" / "adaface", paths, tmp_path / "emb.csv")
    with torch.no_grad():
        unit, norm = adaface_forward(state, original_input(images, bgr=True))
    assert row_cosines(ours, unit.numpy()).min() >= 0.9999
    with torch.no_grad():  # and the stage taps are the outputs of each stage's last block: 56, 28, 14, 7 px
        from fskd_cli.models.tap import FeatureTap

        tap = FeatureTap(model, model.feature_layers)
        model(original_input(images[:1], bgr=True))
        assert [f.shape[-1] for f in tap.features] == [56, 28, 14, 7]


def test_distill_takes_an_imported_teacher(tmp_path):
    from fskd_cli.core.config import resolve
    from fskd_cli.data.manifest import DatasetWriter, Row
    from fskd_cli.train.loop import train

    torch.save({"state_dict": {f"model.{k}": v for k, v in adaface_state(18).items()}}, tmp_path / "a.ckpt")
    assert run_cli("import-teacher", tmp_path / "a.ckpt", "--arch", "iresnet18", "--format", "adaface",
                   "--out", tmp_path / "teacher").returncode == 0
    w = DatasetWriter(tmp_path / "train", "train", "train", 112, scales=(4,))
    for i in range(8):
        w.add(Row(path=f"images/hr/{i % 2}/{i}.png", label=i % 2, identity=str(i % 2), split="train"), pattern(i % 2 + i))
    w.close()
    base = {"name": "t", "data": {"path": str(tmp_path / "train")},
            "model": {"name": "iresnet18", "kwargs": {"base_width": 8, "embedding_size": 16}, "head": "cosface"},
            "train": {"batch_size": 4, "lr": 0.01, "steps": 2, "log_every": 1},
            "distill": {"method": "f-skd", "scale": "4", "teacher": str(tmp_path / "teacher")}}
    ckpt = train(resolve(None, base=base), tmp_path / "student", kind="student")
    student = load_checkpoint(ckpt, kind="student")
    assert student.teacher.endswith("checkpoint.pt") and student.step == 2


def test_wrong_arch_truncated_and_foreign_files_are_one_line_errors(tmp_path):
    torch.save({f"model.{k}": v for k, v in adaface_state(18).items()} | {"x": torch.zeros(1)}, tmp_path / "plain.pt")
    torch.save(arcface_state(18), tmp_path / "backbone.pth")
    wrong = assert_one_line_error(run_cli("import-teacher", tmp_path / "backbone.pth", "--arch", "iresnet34",
                                   "--format", "insightface", "--out", tmp_path / "r1"))
    assert "iresnet34" in wrong and "missing layer1.2." in wrong and "more" in wrong
    data = (tmp_path / "backbone.pth").read_bytes()
    (tmp_path / "cut.pth").write_bytes(data[: len(data) // 2])
    cut = assert_one_line_error(run_cli("import-teacher", tmp_path / "cut.pth", "--arch", "iresnet18",
                                 "--format", "insightface", "--out", tmp_path / "r2"))
    assert "cut.pth" in cut and "truncated" in cut
    foreign = assert_one_line_error(run_cli("import-teacher", tmp_path / "backbone.pth", "--arch", "iresnet18",
                                     "--format", "adaface", "--out", tmp_path / "r3"))
    assert "not an AdaFace checkpoint" in foreign
    assert not (tmp_path / "r1").exists() and not (tmp_path / "r2").exists()


@pytest.mark.filterwarnings(r"ignore:.*torch\.jit\..*deprecated:FutureWarning")
@pytest.mark.parametrize("fmt", ["onnx", "torchscript"])
def test_export_matches_pytorch_and_records_the_preprocessing(tmp_path, fmt):
    import json

    from fskd_cli.use.import_teacher import import_teacher

    torch.save({"state_dict": {f"model.{k}": v for k, v in adaface_state(18).items()}}, tmp_path / "a.ckpt")
    import_teacher(tmp_path / "a.ckpt", "iresnet18", "adaface", tmp_path / "run")
    out = tmp_path / f"model.{fmt}"
    result = run_cli("export", "--ckpt", tmp_path / "run", "--format", fmt, "--out", out)
    assert result.returncode == 0, result.stderr
    sidecar = json.loads((tmp_path / f"model.{fmt}.json").read_text())
    assert sidecar["input"]["color"] == "bgr" and sidecar["parity"]["max_abs_diff"] <= 1e-4
    x = torch.randn(3, 3, 112, 112)
    model = build_backbone(load_checkpoint(tmp_path / "run"))
    with torch.no_grad():
        ref = model(x).numpy()
    if fmt == "onnx":
        import onnx
        import onnxruntime as ort

        meta = {p.key: p.value for p in onnx.load(str(out)).metadata_props}
        assert meta["fskd_color"] == "bgr" and json.loads(meta["fskd"])["input"]["std"] == 127.5
        assert onnx.load(str(out)).opset_import[0].version >= 17
        got = ort.InferenceSession(str(out), providers=["CPUExecutionProvider"]).run(None, {"input": x.numpy()})[0]
    else:
        extra = {"fskd_preprocess.json": ""}
        got = torch.jit.load(str(out), _extra_files=extra)(x).numpy()
        assert json.loads(extra["fskd_preprocess.json"])["input"]["color"] == "bgr"
    assert np.abs(got - ref).max() <= 1e-5 * np.abs(ref).max()  # a batch of 3 where 2 was traced
    assert row_cosines(got, ref).min() >= 1 - 1e-6
    assert run_cli("export", "--ckpt", tmp_path / "run", "--format", fmt, "--out", out).returncode == 0  # its own: replaced
    mine = tmp_path / ("mine.onnx" if fmt == "onnx" else "mine.pt")
    mine.write_bytes(b"a user's file")
    assert_one_line_error(run_cli("export", "--ckpt", tmp_path / "run", "--format", fmt, "--out", mine),
                          str(mine), "not an `fskd export` output")
    assert mine.read_bytes() == b"a user's file" and not mine.with_name(mine.name + ".json").exists()
