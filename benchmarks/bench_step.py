"""Training-step throughput of fskd's F-SKD step against the step of the authors' released code.

Three configurations, each in its own process (so each peak memory is its own), run *alternately*, one
timed round of ``--steps`` steps each per repeat, ``--repeats`` times; it prints the median and the
spread (min-max and interquartile range) of the step time per configuration, and the ratios taken
within each repeat (so a slow moment of a shared machine hits both sides of a ratio):

- ``teacher``: fskd's step with no distiller (HR in, as a teacher run trains);
- ``distill``: fskd's F-SKD step as ``fskd distill`` runs it: uint8 HR and LR batches from the loader
  (the LR copies made once, as ``fskd prepare`` writes them and ``data.cache`` holds them; with
  ``--degrade device`` the LR batch is made on the device instead, as ``data.degrade: device`` does),
  scaled on the device, autocast (bf16 on CUDA), channels_last and cudnn.benchmark on CUDA, no host
  synchronisation inside the step;
- ``reference``: the step of the authors' ``face_recognition/train_student.py``: fp32; the loader degrades
  each sample with cv2 (down and up, INTER_LINEAR) and normalises it to a float tensor (ToTensor +
  Normalize); the teacher is frozen (``requires_grad=False``, eval) and runs under ``torch.no_grad()``;
  cudnn.deterministic and no cudnn.benchmark (their ``set_random_seed``); the loss read back every
  ``--reference-reads`` steps (1 by default, as the issue specifies; their script reads it every 100).

Both loaders use ``--workers`` processes and hold the decoded images in memory (the authors' loader also
decodes a file per sample, which is not timed here). The FLOPs of a distill step are counted, not assumed
(``torch.utils.flop_counter``: the teacher forward, the student forward and backward); on CUDA the
achieved rate is compared with the chip's dense bf16 peak (:data:`PEAKS`, from NVIDIA's datasheets).

    python benchmarks/bench_step.py --models resnet_32,iresnet18                     # CPU
    python benchmarks/bench_step.py --device cuda --batch 256 --models iresnet50 --workers 8
"""

from __future__ import annotations

import argparse
import multiprocessing as mp
import os
import resource
import statistics
import time

MODELS = {  # name -> (registry name, kwargs, input size, head, classes)
    "iresnet18": ("iresnet18", {"head": "gap"}, 112, "cosface", 10572),
    "iresnet50": ("iresnet50", {"head": "gap"}, 112, "cosface", 10572),
    "resnet_32": ("resnet_32", {"layers": [1, 1, 1, 1], "width": 16}, 32, "softmax", 10),
    "resnet50_32": ("resnet50_32", {}, 32, "softmax", 10),
}
MODES = ("teacher", "distill", "reference")
# dense (no 2:4 sparsity) bf16 tensor-core peaks, TFLOP/s, matched against torch.cuda.get_device_name()
PEAKS = (
    ("H200 NVL", 835.5, "NVIDIA H200 NVL datasheet: 1,671 TFLOPS BF16 with sparsity, half dense"),
    ("H200", 989.5, "NVIDIA H200 SXM datasheet: 1,979 TFLOPS BF16 with sparsity, half dense"),
    ("H100 PCIe", 756.5, "NVIDIA H100 PCIe datasheet: 1,513 TFLOPS BF16 with sparsity, half dense"),
    ("H100", 989.5, "NVIDIA H100 SXM datasheet: 1,979 TFLOPS BF16 with sparsity, half dense"),
    ("A100", 312.0, "NVIDIA A100 datasheet: 312 TFLOPS BF16 dense"),
)


class _Images:
    """A fixed pool of random uint8 HR images; ``reference`` items are degraded and normalised per sample."""

    def __init__(self, n: int, size: int, classes: int, scale: int, mode: str) -> None:
        import torch

        from fskd_cli.data.degrade import degrade

        g = torch.Generator().manual_seed(0)
        self.hr = torch.randint(0, 256, (n, size, size, 3), dtype=torch.uint8, generator=g)
        self.labels = torch.randint(0, classes, (n,), generator=g)
        self.scale, self.mode = scale, mode
        if mode == "distill":  # the prepared LR copies, made once
            lr = degrade(self.hr.permute(0, 3, 1, 2).float(), scale)
            self.lr = lr.round().clamp(0, 255).to(torch.uint8)

    def __len__(self) -> int:
        return len(self.hr)

    def __getitem__(self, i: int):
        if self.mode == "teacher":
            return self.hr[i].permute(2, 0, 1), self.labels[i]
        if self.mode == "distill":
            return self.hr[i].permute(2, 0, 1), self.lr[i], self.labels[i]
        import cv2
        import torch

        hr = self.hr[i].numpy()
        side = hr.shape[0]
        small = cv2.resize(hr, (side // self.scale, side // self.scale), interpolation=cv2.INTER_LINEAR)
        lr = cv2.resize(small, (side, side), interpolation=cv2.INTER_LINEAR)

        def to_tensor(im):  # ToTensor + Normalize(0.5, 0.5)
            return (torch.from_numpy(im).permute(2, 0, 1).float() / 255 - 0.5) / 0.5

        return to_tensor(hr), to_tensor(lr), self.labels[i]


def _loader(model_name: str, mode: str, a: argparse.Namespace, device):
    """An endless iterator of batches, through a DataLoader with ``a.workers`` processes."""
    import torch
    from torch.utils.data import DataLoader, RandomSampler

    _, _, size, _, classes = MODELS[model_name]
    ds = _Images(max(4 * a.batch, 64), size, classes, a.scale, mode)
    sampler = RandomSampler(ds, replacement=True, num_samples=10**9, generator=torch.Generator().manual_seed(0))
    return iter(DataLoader(ds, a.batch, sampler=sampler, num_workers=a.workers, pin_memory=device.type == "cuda",
                           persistent_workers=a.workers > 0, drop_last=True))


def _build(model_name: str, mode: str, a: argparse.Namespace, device):
    """Student (+ head, + F-SKD distiller and frozen teacher unless ``teacher``) and its optimizer."""
    import torch

    from fskd_cli.distill import create_distiller
    from fskd_cli.models import create_model
    from fskd_cli.models.heads import create_head
    from fskd_cli.models.tap import FeatureTap
    from fskd_cli.train.step import RecognitionModule
    from fskd_cli.train.teacher import feature_shapes

    torch.manual_seed(0)
    name, kw, _, head_name, classes = MODELS[model_name]
    fmt = torch.channels_last if device.type == "cuda" and mode != "reference" else torch.contiguous_format
    student = create_model(name, **kw).to(device, memory_format=fmt)
    head = create_head(head_name, student.embedding_size, classes).to(device)
    teacher = tap = distiller = None
    if mode != "teacher":
        teacher = create_model(name, **kw).to(device, memory_format=fmt).eval().requires_grad_(False)
        shapes = feature_shapes(student, list(student.feature_layers))
        distiller = create_distiller("f-skd", shapes, shapes, weight=5.0)
        tap = FeatureTap(teacher, teacher.feature_layers)
    module = RecognitionModule(student, head, distiller).to(device)
    opt = torch.optim.SGD([p for p in module.parameters() if p.requires_grad], lr=0.01, momentum=0.9)
    return module, teacher, tap, opt, fmt


def _fskd_step(model_name: str, mode: str, a: argparse.Namespace, device):
    """fskd's path: TrainStep on uint8 batches scaled (and degraded) on the device; returns ``step()``."""
    import torch

    from fskd_cli.core.preprocess import Preprocess
    from fskd_cli.data.degrade import degrade_batch
    from fskd_cli.train.step import TrainStep, autocast_dtype

    torch.backends.cudnn.benchmark = device.type == "cuda"
    module, teacher, tap, opt, fmt = _build(model_name, mode, a, device)
    amp = autocast_dtype(a.amp, device)
    step = TrainStep(module, teacher, tap, opt, torch.amp.GradScaler(device.type, enabled=amp == torch.float16),
                     amp, device.type)
    batches, prep = _loader(model_name, mode, a, device), Preprocess()
    scale = torch.full((a.batch,), a.scale, device=device)

    cl = fmt == torch.channels_last

    def one():
        hr, *lr, labels = next(batches)
        hr_x = prep.apply(hr, device, cl)
        if mode == "teacher":
            x = hr_x
        else:
            x = degrade_batch(hr_x, scale) if a.degrade == "device" else prep.apply(lr[0], device, cl)
        return step(hr_x, x, labels.to(device, non_blocking=True), scale)["loss"]

    return one


def _reference_step(model_name: str, a: argparse.Namespace, device):
    """The authors' train_student.py step (see the module docstring); returns ``step()``."""
    import torch

    torch.backends.cudnn.deterministic, torch.backends.cudnn.benchmark = True, False
    module, teacher, tap, opt, _ = _build(model_name, "reference", a, device)
    batches, count = _loader(model_name, "reference", a, device), [0]

    def one():
        hr, lr, labels = (t.to(device) for t in next(batches))
        with torch.no_grad():
            teacher(hr)
        task, distill, _ = module(lr, labels, tap.features, {"hr": hr})
        loss = task + distill
        opt.zero_grad()
        loss.backward()
        opt.step()
        count[0] += 1
        if count[0] % a.reference_reads == 0:
            loss.item()
        return loss.detach()

    return one


def _flops_per_image(one, batch: int) -> float:
    """FLOPs of one step per image, counted by torch (convolutions, matmuls; forward and backward)."""
    from torch.utils.flop_counter import FlopCounterMode

    with FlopCounterMode(display=False) as counter:
        one()
    return counter.get_total_flops() / batch


def _worker(conn, model_name: str, mode: str, a: argparse.Namespace) -> None:
    """Build one configuration, warm it up, then time ``n`` steps whenever the parent sends ``n``."""
    import torch

    if a.threads:
        torch.set_num_threads(a.threads)
    device = torch.device(a.device)
    one = _reference_step(model_name, a, device) if mode == "reference" else _fskd_step(model_name, mode, a, device)
    flops = _flops_per_image(one, a.batch) if mode == "distill" else 0.0
    for _ in range(a.warmup):
        one()
    _sync(device)
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats()
    conn.send(flops)
    while (n := conn.recv()) is not None:
        t0 = time.perf_counter()
        for _ in range(n):
            loss = one()
        float(loss)  # one read at the end of the round, so the queued work is inside the timing
        _sync(device)
        conn.send((time.perf_counter() - t0) / n)
    mem = (torch.cuda.max_memory_allocated() if device.type == "cuda"
           else resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024) / 2**30
    conn.send(mem)


def _sync(device) -> None:
    import torch

    if device.type == "cuda":
        torch.cuda.synchronize()


def measure(model_name: str, a: argparse.Namespace) -> tuple[dict[str, list[float]], dict[str, float], float]:
    """Per-mode step times (one per repeat, modes alternating), peak memory per mode, FLOPs per image."""
    ctx = mp.get_context("spawn")
    pipes = {mode: ctx.Pipe() for mode in MODES}
    procs = {mode: ctx.Process(target=_worker, args=(pipes[mode][1], model_name, mode, a), daemon=True) for mode in MODES}
    for proc in procs.values():
        proc.start()  # all three build and warm up at once; the timing starts when all are ready
    workers = {mode: (procs[mode], pipes[mode][0], pipes[mode][0].recv()) for mode in MODES}
    times: dict[str, list[float]] = {m: [] for m in MODES}
    for r in range(a.repeats):
        order = MODES[r % 3:] + MODES[:r % 3]  # rotate, so no configuration always runs first
        for mode in order:
            workers[mode][1].send(a.steps)
            times[mode].append(workers[mode][1].recv())
    mem = {}
    for mode, (proc, conn, _) in workers.items():
        conn.send(None)
        mem[mode] = conn.recv()
        proc.join()
    return times, mem, workers["distill"][2]


def spread(values: list[float]) -> str:
    """``median [min-max] IQR x`` of a list (quartiles by the inclusive method, fine for few values)."""
    med = statistics.median(values)
    if len(values) < 2:
        return f"{med:.3f}"
    q1, _, q3 = statistics.quantiles(values, n=4, method="inclusive")
    return f"{med:.3f} [{min(values):.3f}-{max(values):.3f}] IQR {q3 - q1:.3f}"


def peak(a: argparse.Namespace) -> tuple[float, str] | None:
    """The dense bf16 peak to compare with: ``--peak-tflops`` or the datasheet figure of this GPU."""
    if a.peak_tflops:
        return a.peak_tflops, "given with --peak-tflops"
    import torch

    name = torch.cuda.get_device_name()
    return next(((tf, f"{name}: {src}") for key, tf, src in PEAKS if key in name), None)


def report(model_name: str, a: argparse.Namespace, times, mem, flops) -> None:
    for mode in MODES:
        ips = [a.batch / t for t in times[mode]]
        print(f"{model_name:<11} {mode:<9} s/step {spread(times[mode])}   img/s {statistics.median(ips):8.1f}   "
              f"peak memory {mem[mode]:.2f} GiB")
    ratio = [d / t for d, t in zip(times["distill"], times["teacher"], strict=True)]
    speedup = [r / d for r, d in zip(times["reference"], times["distill"], strict=True)]
    print(f"{model_name:<11} distill/teacher step time {spread(ratio)}")
    print(f"{model_name:<11} speed-up over the reference (reference/distill step time) {spread(speedup)}")
    print(f"{model_name:<11} counted {flops / 1e9:.1f} GFLOP per image per distill step")
    if a.device.startswith("cuda"):
        tflops = statistics.median(a.batch / t for t in times["distill"]) * flops / 1e12
        known = peak(a)
        where = f" = {100 * tflops / known[0]:.1f}% of {known[0]:.1f} ({known[1]})" if known else \
            " (unknown GPU: give --peak-tflops for the fraction of peak)"
        print(f"{model_name:<11} distill achieves {tflops:.0f} TFLOP/s{where}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--models", default="resnet_32,iresnet18")
    ap.add_argument("--batch", type=int, default=32)
    ap.add_argument("--steps", type=int, default=3, help="steps per timed round")
    ap.add_argument("--repeats", type=int, default=3, help="rounds per configuration, alternating")
    ap.add_argument("--warmup", type=int, default=1)
    ap.add_argument("--scale", type=int, default=8)
    ap.add_argument("--workers", type=int, default=0, help="loader processes of every configuration")
    ap.add_argument("--degrade", default="disk", choices=("disk", "device"),
                    help="fskd's LR batch: read (the prepared copies, fskd's default) or made on the device")
    ap.add_argument("--threads", type=int, default=0, help="torch threads per process (0: torch's default)")
    ap.add_argument("--amp", default="auto", help="fskd's steps: auto (bf16 on CUDA), off, bf16, fp16")
    ap.add_argument("--reference-reads", type=int, default=1, help="reference reads its loss every N steps")
    ap.add_argument("--peak-tflops", type=float, default=0.0, help="dense bf16 peak (default: this GPU's datasheet)")
    a = ap.parse_args()
    import torch

    print(f"torch {torch.__version__}, device {a.device}, batch {a.batch}, {a.repeats} alternating rounds of "
          f"{a.steps} steps after {a.warmup} warm-up, x{a.scale}, amp {a.amp}, fskd LR {a.degrade}, loader workers {a.workers}, "
          f"threads {a.threads or torch.get_num_threads()}, load average {os.getloadavg()[0]:.2f}")
    for model_name in a.models.split(","):
        times, mem, flops = measure(model_name, a)
        report(model_name, a, times, mem, flops)
    print(f"load average at the end {os.getloadavg()[0]:.2f}")


if __name__ == "__main__":
    main()
