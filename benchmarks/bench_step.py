"""Training-step throughput: teacher-only step vs F-SKD distill step vs a reference step written the way
the authors' released code does it. Prints img/s, peak memory and the ratios; not a test.

    python benchmarks/bench_step.py                                   # CPU: iresnet18, iresnet50, digit ResNet
    python benchmarks/bench_step.py --device cuda --batch 256 --amp bf16 --channels-last --models iresnet50

The distill step adds one teacher forward (about a third of a training step), so distill/teacher cannot
fall far below 1.33. Each configuration runs in a fresh process so its peak memory is its own.
FLOPs are counted as the issue states: 6.3 GMACs per iResNet-50 forward at 112x112, a training step
(forward + backward) about 3 forwards, and the teacher's forward 1: (3 + 1) x 6.3 GMACs = 50.4 GFLOP per image.
"""

from __future__ import annotations

import argparse
import multiprocessing as mp
import resource
import time

MODELS = {  # name -> (registry name, kwargs, input size, head, classes)
    "iresnet18": ("iresnet18", {"head": "gap"}, 112, "cosface", 10572),
    "iresnet50": ("iresnet50", {"head": "gap"}, 112, "cosface", 10572),
    "resnet_32": ("resnet_32", {"layers": [1, 1, 1, 1], "width": 16}, 32, "softmax", 10),
    "resnet50_32": ("resnet50_32", {}, 32, "softmax", 10),
}
GMACS_PER_IMAGE = {"iresnet50": 6.3}


def _measure(q, model_name: str, mode: str, a: argparse.Namespace) -> None:
    import numpy as np
    import torch

    from fskd_cli.data.degrade import degrade
    from fskd_cli.distill import create_distiller
    from fskd_cli.models import create_model
    from fskd_cli.models.heads import create_head
    from fskd_cli.models.tap import FeatureTap
    from fskd_cli.train.loop import StudentStep, TrainStep, autocast_dtype, feature_shapes

    torch.manual_seed(0)
    device = torch.device(a.device)
    if device.type == "cuda":
        torch.backends.cudnn.benchmark = True
    name, kw, size, head_name, classes = MODELS[model_name]
    reference = mode == "reference"
    cl = a.channels_last and device.type == "cuda" and not reference
    fmt = torch.channels_last if cl else torch.contiguous_format
    student = create_model(name, **kw).to(device, memory_format=fmt)
    head = create_head(head_name, student.embedding_size, classes).to(device)
    teacher = tap = distiller = None
    if mode != "teacher":
        teacher = create_model(name, **kw).to(device, memory_format=fmt).eval()
        if not reference:
            teacher.requires_grad_(False)
        shapes = feature_shapes(student, list(student.feature_layers))
        distiller = create_distiller("f-skd", shapes, shapes, weight=5.0)
        tap = FeatureTap(teacher, teacher.feature_layers)
    module = StudentStep(student, head, distiller).to(device)
    opt = torch.optim.SGD([p for p in module.parameters() if p.requires_grad], lr=0.01, momentum=0.9)
    amp = None if reference else autocast_dtype(a.amp, device)
    scaler = torch.amp.GradScaler(device.type, enabled=amp == torch.float16)
    step = TrainStep(module, teacher, tap, opt, scaler, amp, device.type)
    g = torch.Generator().manual_seed(0)
    hr_u8 = torch.randint(0, 256, (a.batch, 3, size, size), dtype=torch.uint8, generator=g)
    labels = torch.randint(0, classes, (a.batch,), generator=g).to(device)
    scale = torch.full((a.batch,), a.scale)

    def batch():
        if reference:  # per-sample cv2 degradation, as the authors' loader workers do, and fp32 tensors
            import cv2

            imgs = hr_u8.permute(0, 2, 3, 1).numpy()
            lr = np.stack([cv2.resize(cv2.resize(im, (size // a.scale, size // a.scale), interpolation=cv2.INTER_LINEAR),
                                      (size, size), interpolation=cv2.INTER_LINEAR) for im in imgs])
            hr = (hr_u8.float() / 255 - 0.5) / 0.5
            return hr.to(device), (torch.from_numpy(lr).permute(0, 3, 1, 2).float() / 255 - 0.5).div(0.5).to(device)
        hr = hr_u8.to(device, non_blocking=True).float().sub_(127.5).div_(127.5).contiguous(memory_format=fmt)
        return hr, degrade(hr, a.scale) if mode != "teacher" else hr

    def run_reference_step(hr, x):  # teacher in the graph, its features kept as they come
        teacher(hr)
        t_feats = tap.features
        task, dist, _ = module(x, labels, t_feats, {"hr": hr})
        loss = task + dist
        opt.zero_grad()
        loss.backward()
        opt.step()
        return loss.detach()

    def one():
        hr, x = batch()
        return run_reference_step(hr, x) if reference else step(hr, x, labels, scale)[0]

    for _ in range(a.warmup):
        one()
    if device.type == "cuda":
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
    t0 = time.perf_counter()
    for _ in range(a.steps):
        loss = one()
    float(loss)  # one host sync at the end
    if device.type == "cuda":
        torch.cuda.synchronize()
    dt = (time.perf_counter() - t0) / a.steps
    mem = torch.cuda.max_memory_allocated() / 2**30 if device.type == "cuda" else resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20
    q.put((a.batch / dt, dt, mem))


def measure(model: str, mode: str, a: argparse.Namespace) -> tuple[float, float, float]:
    ctx = mp.get_context("spawn")
    q = ctx.Queue()
    p = ctx.Process(target=_measure, args=(q, model, mode, a))
    p.start()
    out = q.get()
    p.join()
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--models", default="resnet_32,iresnet18,iresnet50")
    ap.add_argument("--batch", type=int, default=32)
    ap.add_argument("--steps", type=int, default=3)
    ap.add_argument("--warmup", type=int, default=1)
    ap.add_argument("--scale", type=int, default=8)
    ap.add_argument("--amp", default="auto", help="auto (bf16 on CUDA), off, bf16, fp16; the reference is always fp32")
    ap.add_argument("--channels-last", action="store_true", help="channels_last (CUDA only: it corrupts memory on this CPU build)")
    ap.add_argument("--peak-tflops", type=float, default=790.0, help="bf16 peak to compare with (H200 measured ~790)")
    a = ap.parse_args()
    import torch

    print(f"torch {torch.__version__}, device {a.device}, batch {a.batch}, {a.steps} timed steps after {a.warmup} warm-up, "
          f"scale {a.scale}x, amp {a.amp}, channels_last {a.channels_last}, threads {torch.get_num_threads()}")
    mem_unit = "GiB (CUDA peak)" if a.device.startswith("cuda") else "GiB (process max RSS)"
    print(f"{'model':<12} {'step':<10} {'img/s':>9} {'s/step':>8} {'memory':>8}  {mem_unit}")
    for model in a.models.split(","):
        res = {mode: measure(model, mode, a) for mode in ("teacher", "distill", "reference")}
        for mode, (ips, dt, mem) in res.items():
            print(f"{model:<12} {mode:<10} {ips:9.1f} {dt:8.3f} {mem:8.2f}")
        ratio = res["distill"][1] / res["teacher"][1]
        speedup = res["reference"][1] / res["distill"][1]
        line = f"{model:<12} distill/teacher step time {ratio:.2f} (floor ~1.33); reference/distill (our speed-up) {speedup:.2f}x"
        if model in GMACS_PER_IMAGE and a.device.startswith("cuda"):
            tflops = res["distill"][0] * 2 * 4 * GMACS_PER_IMAGE[model] / 1e3
            line += f"; distill {tflops:.0f} TFLOP/s = {100 * tflops / a.peak_tflops:.1f}% of {a.peak_tflops:.0f}"
        print(line)


if __name__ == "__main__":
    main()
