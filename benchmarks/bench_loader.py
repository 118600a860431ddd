"""Data-loading throughput per worker process: what one DataLoader worker delivers to the training step.

Two layouts of the same synthetic 112 x 112 faces (photo-like JPEGs, about CASIA's size in
``faces_webface_112x112``), read as the training loader reads them (``PairDataset.__getitems__``: decode,
shared flip, stacked uint8 tensors):

- ``png``: a prepared folder (``images/hr`` + ``x2/x4/x8`` PNGs), HR read alone (a teacher) and HR + one
  LR file per image (a multi-resolution student reading its LR from disk);
- ``rec``: an in-place set (``fskd prepare rec --in-place``): JPEG records read by their ``.idx`` offsets,
  LR made on the device (what training does: ``read_lr`` False), and LR made here on the CPU (evaluation).

One worker's rate is measured in this process (a worker is one process doing exactly this), ``--repeats``
times, alternating the cases so a slow moment of a shared machine hits all of them; it prints the median,
min-max, and images per CPU-second (what the process got of a core, less sensitive to other jobs), the
load average, and the workers an iResNet-50 F-SKD step at ``--target`` img/s (an H100-class GPU) needs.

    python benchmarks/bench_loader.py                       # 2,048 images, 5 repeats
    python benchmarks/bench_loader.py --images 4096 --repeats 9 --batch 256
"""

from __future__ import annotations

import argparse
import io
import math
import os
import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from fskd_cli.data.dataset import PairBatchSampler, PairDataset
from fskd_cli.data.manifest import DatasetWriter, Row
from fskd_cli.data.prepare import prepare_dataset
from fskd_cli.data.readers.recordio import pack_record, write_recordio

SIDE, IDS = 112, 64


def face(i: int) -> np.ndarray:
    """A smooth colour face-sized image with mild noise: JPEGs of a few KB, as CASIA's aligned crops."""
    y, x = np.mgrid[0:SIDE, 0:SIDE]
    rgb = [(np.sin(x / (5 + i % 11 + c)) + np.cos(y / (7 + c))) * 60 + 128 for c in range(3)]
    noise = np.random.default_rng(i).normal(0, 6, (SIDE, SIDE, 3))
    return np.clip(np.stack(rgb, axis=-1) + noise, 0, 255).astype(np.uint8)


def jpeg(image: np.ndarray) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(image).save(buf, format="JPEG", quality=95)  # insightface's im2rec default
    return buf.getvalue()


def png_set(root: Path, n: int) -> Path:
    """A prepared folder: HR and 2x/4x/8x PNGs of ``n`` images."""
    writer = DatasetWriter(root, "bench", "train", SIDE)
    for i in range(n):
        writer.add(Row(path=f"images/hr/{i % IDS}/{i}.png", label=i % IDS, identity=str(i % IDS), split="train"),
                   face(i))
    writer.close()
    return root


def rec_set(root: Path, n: int) -> tuple[Path, float]:
    """An in-place set over a ``train.rec`` of ``n`` JPEG records; also the mean JPEG size in KB."""
    src = root / "src"
    src.mkdir(parents=True)
    payloads = [jpeg(face(i)) for i in range(n)]
    records = [(0, pack_record([n + 1, n + 1], b""))]
    records += [(i + 1, pack_record(i % IDS, p)) for i, p in enumerate(payloads)]
    write_recordio(src / "train.rec", src / "train.idx", records)
    prepare_dataset("rec", src, root / "data", in_place=True, progress=False)
    return root / "data", sum(map(len, payloads)) / n / 1024


def one_pass(ds: PairDataset, batch: int, scales: tuple[int, ...]) -> tuple[float, float]:
    """(img/s, img per CPU-second) of one pass over ``ds`` in this process, as one loader worker runs."""
    sampler = PairBatchSampler(len(ds), batch, len(ds) // batch, 0, scales, flip=True)
    wall, cpu = time.perf_counter(), time.process_time()
    n = sum(len(ds.__getitems__(keys)[2]) for keys in sampler)
    wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
    return n / wall, n / max(cpu, 1e-9)


def cases(png: Path, rec: Path) -> dict[str, Callable[[], PairDataset]]:
    return {
        "png HR (teacher)": lambda: PairDataset(png, "train", (1,), cache=False),
        "png HR + LR file (x2/x4/x8)": lambda: PairDataset(png, "train", (2, 4, 8), cache=False),
        "rec in place, LR on device": lambda: PairDataset(rec, "train", (2, 4, 8), cache=False, lr_on_device=True),
        "rec in place, LR on CPU": lambda: PairDataset(rec, "train", (2, 4, 8), cache=False),
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--images", type=int, default=2048)
    ap.add_argument("--batch", type=int, default=128)
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--target", type=float, default=2000.0, help="img/s of the step to feed (iResNet-50 F-SKD, H100)")
    a = ap.parse_args()
    torch.set_num_threads(1)  # a loader worker's setting: the parallelism is the workers'
    with tempfile.TemporaryDirectory() as tmp:
        png, (rec, kb) = png_set(Path(tmp) / "png", a.images), rec_set(Path(tmp) / "rec", a.images)
        print(f"{a.images} images of {SIDE}x{SIDE} (JPEG records {kb:.1f} KB each), batch {a.batch}, "
              f"{a.repeats} repeats; load average before: {os.getloadavg()[0]:.2f} on {os.cpu_count()} cores")
        runs = cases(png, rec)
        datasets = {name: make() for name, make in runs.items()}
        results: dict[str, list[tuple[float, float]]] = {name: [] for name in runs}
        for _ in range(a.repeats):
            for name, ds in datasets.items():
                results[name].append(one_pass(ds, a.batch, tuple(ds.scales)))
        report(results, a.target)
        print(f"load average after: {os.getloadavg()[0]:.2f}")


def report(results: dict[str, list[tuple[float, float]]], target: float) -> None:
    print(f"{'case':32} {'img/s per worker: median (min-max)':>36} {'img/CPU-s':>10} {'workers for ' + f'{target:.0f}':>17}")
    for name, runs in results.items():
        rates, per_cpu = [r for r, _ in runs], [c for _, c in runs]
        med = statistics.median(rates)
        print(f"{name:32} {med:14.0f} ({min(rates):6.0f} - {max(rates):6.0f})      {statistics.median(per_cpu):10.0f} "
              f"{math.ceil(target / statistics.median(per_cpu)):17d}")
    print("workers = target / img per CPU-second, one worker process per free core (rounded up).")


if __name__ == "__main__":
    main()
