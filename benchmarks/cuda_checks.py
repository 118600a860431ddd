"""What only a GPU can check: bf16 steps, channels_last, ``train.compile``, DDP over NCCL, resume on the GPU.

Each check trains a tiny ResNet for a few steps on a synthetic 10-class set written here (no download, no
mlxtend), through the same functions ``fskd train-teacher`` / ``fskd distill`` / ``fskd eval`` call.
``tests/test_cuda.py`` runs them under pytest (``pytest -m cuda``; skipped without CUDA); on a machine
without pytest, ``PYTHONPATH=. python benchmarks/cuda_checks.py`` runs the same checks and prints one
line per check (exit status 1 if any fails). Needs torch, numpy, pyyaml, rich, typer, scipy, pandas,
matplotlib, opencv (what fskd_cli imports), and a CUDA device.
"""

from __future__ import annotations

import os
import socket
import sys
import tempfile
import time
import traceback
from collections.abc import Callable
from pathlib import Path

os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")  # deterministic cuBLAS, for the resume check

import numpy as np  # noqa: E402
import torch  # noqa: E402
import yaml  # noqa: E402

SIDE, CLASSES = 32, 10


def synthetic_digits(root: Path) -> Path:
    """A prepared classification set: 10 classes told apart by where a bright bar lies, 20 train + 4 test each."""
    from fskd_cli.data.manifest import DatasetWriter, Row

    out = root / "digits"
    w = DatasetWriter(out, "synthetic-digits", "classification", SIDE, scales=(4,))
    rng = np.random.default_rng(0)
    for i in range(CLASSES * 24):
        label, split = i % CLASSES, "train" if i < CLASSES * 20 else "test"
        image = rng.integers(0, 60, (SIDE, SIDE, 3), dtype=np.uint8)
        image[:, 3 * label:3 * label + 4] = 230
        w.add(Row(path=f"images/hr/{split}/{i}.png", label=label, identity=str(label), split=split), image)
    w.close()
    return out


def recipe(root: Path, data: Path, **train: object) -> Path:
    """A tiny CUDA recipe (bf16, 6 steps) on ``data``; ``train`` keys replace the defaults."""
    path = root / f"recipe-{len(list(root.glob('recipe-*')))}.yaml"
    path.write_text(yaml.safe_dump({
        "name": "cuda-check", "device": "cuda", "seed": 0, "data": {"path": str(data), "workers": 0},
        "model": {"name": "resnet_32", "kwargs": {"layers": [1, 1, 1, 1], "width": 8}},
        "train": {"batch_size": 32, "lr": 0.05, "steps": 6, "milestones": [4], "log_every": 2, "amp": "bf16", **train},
        "distill": {"method": "f-skd", "scale": "4", "weight": 5.0},
    }))
    return path


def teacher_and_student(root: Path, tag: str, **train: object) -> tuple[Path, Path]:
    from fskd_cli.core.config import resolve
    from fskd_cli.train.loop import train as run

    data = root / "digits" if (root / "digits").exists() else synthetic_digits(root)
    path = recipe(root, data, **train)
    teacher = run(resolve(path), root / f"{tag}-teacher", kind="teacher")
    student = run(resolve(path, {"distill.teacher": str(teacher)}), root / f"{tag}-student", kind="student")
    return teacher, student


def losses(ckpt: Path) -> list[float]:
    import csv

    with open(ckpt.parent / "log.csv", newline="") as f:
        return [float(r["loss"]) for r in csv.DictReader(f)]


def check_bf16_teacher_distill_eval(root: Path) -> None:
    """A bf16 teacher run, a bf16 F-SKD student, and the student's eval at 4x, all on the GPU."""
    from fskd_cli.core.scale import Scale
    from fskd_cli.evaluate.stage import evaluate_benchmark

    teacher, student = teacher_and_student(root, "bf16")
    for ckpt in (teacher, student):
        assert losses(ckpt) and all(np.isfinite(losses(ckpt))), losses(ckpt)
    res = evaluate_benchmark("digits", student, scale=Scale.x4, data=root / "digits", results=root / "results.csv",
                             device="cuda")
    assert 0.0 <= res["metrics"]["accuracy"] <= 1.0, res
    _check_bf16_step_dtypes()


def _check_bf16_step_dtypes() -> None:
    """Inside the step the features are bf16 (autocast is on) while the margin logits are fp32."""
    from fskd_cli.distill import create_distiller
    from fskd_cli.models import create_model
    from fskd_cli.models.heads import create_head
    from fskd_cli.models.tap import FeatureTap
    from fskd_cli.train.step import RecognitionModule, TrainStep
    from fskd_cli.train.teacher import feature_shapes

    net = create_model("resnet_32", layers=[1, 1, 1, 1], width=8).cuda()
    teacher = create_model("resnet_32", layers=[1, 1, 1, 1], width=8).cuda().eval().requires_grad_(False)
    shapes = feature_shapes(net, list(net.feature_layers))
    module = RecognitionModule(net, create_head("cosface", net.embedding_size, CLASSES).cuda(),
                               create_distiller("f-skd", shapes, shapes, weight=5.0)).cuda()
    tap = FeatureTap(teacher, teacher.feature_layers)
    opt = torch.optim.SGD(module.parameters(), lr=0.01)
    step = TrainStep(module, teacher, tap, opt, torch.amp.GradScaler("cuda", enabled=False), torch.bfloat16, "cuda")
    x = torch.randn(8, 3, SIDE, SIDE, device="cuda")
    out = step(x, x, torch.arange(8, device="cuda") % CLASSES, torch.full((8,), 4, device="cuda"))
    assert tap.features[0].dtype == torch.bfloat16 and module.tap.features[0].dtype == torch.bfloat16
    assert out["logits"].dtype == torch.float32 and torch.isfinite(out["loss"])


def check_channels_last(root: Path) -> None:
    """``train.channels_last`` puts the CUDA model in channels_last and trains."""
    from fskd_cli.core.config import resolve
    from fskd_cli.train.build import build_run

    teacher, student = teacher_and_student(root, "cl", channels_last=True)
    assert all(np.isfinite(losses(student)))
    run = build_run(resolve(recipe(root, root / "digits", channels_last=True)), root / "cl-built", "teacher")
    conv = next(m for m in run.model.modules() if isinstance(m, torch.nn.Conv2d))
    assert run.channels_last and conv.weight.is_contiguous(memory_format=torch.channels_last)


def check_compile(root: Path) -> None:
    """``train.compile``: the compiled student (hooks included) trains, close to the eager run."""
    t0 = time.time()
    _, eager = teacher_and_student(root, "eager")
    _, compiled = teacher_and_student(root, "compiled", compile=True)
    a, b = losses(eager), losses(compiled)
    assert all(np.isfinite(b)) and len(a) == len(b)
    assert abs(a[0] - b[0]) < 0.05 * abs(a[0]) + 0.05, (a, b)  # same start; bf16 and kernels differ slightly
    print(f"  compile: {time.time() - t0:.0f} s for two teacher+student pairs")


def check_ddp_one_nccl_process(root: Path) -> None:
    """A DDP-wrapped step over one NCCL process gives the plain step's weights."""
    import torch.distributed as dist

    from fskd_cli.models import create_model
    from fskd_cli.models.heads import create_head
    from fskd_cli.train.step import RecognitionModule, TrainStep

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    dist.init_process_group("nccl", init_method=f"tcp://127.0.0.1:{port}", rank=0, world_size=1)
    try:
        results = []
        for wrap in (False, True):
            torch.manual_seed(0)
            net = create_model("resnet_32", layers=[1, 1, 1, 1], width=8)
            module = RecognitionModule(net, create_head("softmax", net.embedding_size, CLASSES), None).cuda()
            trained = torch.nn.parallel.DistributedDataParallel(module, device_ids=[0]) if wrap else module
            step = TrainStep(trained, None, None, torch.optim.SGD(module.parameters(), lr=0.1),
                             torch.amp.GradScaler("cuda", enabled=False), None, "cuda")
            g = torch.Generator().manual_seed(1)
            for _ in range(2):
                x = torch.randn(16, 3, SIDE, SIDE, generator=g).cuda()
                step(x, x, torch.randint(0, CLASSES, (16,), generator=g).cuda(), torch.ones(16, device="cuda"))
            results.append(torch.cat([p.detach().flatten() for p in module.parameters()]))
        assert torch.allclose(results[0], results[1], atol=1e-5), (results[0] - results[1]).abs().max()
    finally:
        dist.destroy_process_group()


def check_resume_on_gpu(root: Path) -> None:
    """Stopped after 3 steps and resumed, a deterministic GPU run logs what the uninterrupted one logs."""
    from fskd_cli.core.checkpoint import load_checkpoint
    from fskd_cli.core.config import resolve
    from fskd_cli.train.loop import train as run

    teacher, _ = teacher_and_student(root, "resume", deterministic=True)
    cfg = resolve(recipe(root, root / "digits", deterministic=True), {"distill.teacher": str(teacher)})
    straight = run(cfg, root / "straight", kind="student")
    run(cfg, root / "resumed", kind="student", stop_after=3)
    resumed = run(cfg, root / "resumed", kind="student", resume=True)
    assert np.allclose(losses(straight), losses(resumed), rtol=0, atol=1e-5), (losses(straight), losses(resumed))
    wa, wb = load_checkpoint(straight).weights, load_checkpoint(resumed).weights
    assert all(torch.allclose(wa[k].float(), wb[k].float(), atol=1e-5) for k in wa)


CHECKS: dict[str, Callable[[Path], None]] = {
    "bf16_teacher_distill_eval": check_bf16_teacher_distill_eval,
    "channels_last": check_channels_last,
    "compile": check_compile,
    "ddp_one_nccl_process": check_ddp_one_nccl_process,
    "resume_on_gpu": check_resume_on_gpu,
}


def main(names: list[str]) -> int:
    """Run the named checks (all by default), each in a fresh temporary folder; one line per check."""
    if not torch.cuda.is_available():
        print("cuda_checks: no CUDA device here; every check skipped")
        return 0
    failed = 0
    for name in names or list(CHECKS):
        t0 = time.time()
        with tempfile.TemporaryDirectory() as tmp:
            try:
                CHECKS[name](Path(tmp))
                print(f"PASS {name} ({time.time() - t0:.0f} s)", flush=True)
            except Exception:  # a runner without pytest: report every failure, then the exit status says it
                failed += 1
                print(f"FAIL {name} ({time.time() - t0:.0f} s)\n{traceback.format_exc()}", flush=True)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
