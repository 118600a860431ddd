"""Data-loading throughput: decode + LR lookup + flip + collate of a prepared dataset, with N workers,
against the training step it feeds (run bench_step.py for that). Prints img/s; not a test.

    python benchmarks/bench_loader.py                      # a synthetic 112x112 set of 1,024 images in a temp dir
    python benchmarks/bench_loader.py --data data/orl      # a prepared set of yours
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import numpy as np
from torch.utils.data import DataLoader

from fskd_cli.data.dataset import PairBatchSampler, PairDataset
from fskd_cli.data.manifest import DatasetWriter, Row


def synthetic(root: Path, n: int, size: int) -> Path:
    rng = np.random.default_rng(0)
    w = DatasetWriter(root, "synthetic", "train", size)
    base = rng.integers(0, 256, (64, size, size, 3), dtype=np.uint8)  # photo-like entropy is not needed to time PNG decode
    for i in range(n):
        img = np.roll(base[i % 64], i, axis=1)
        w.add(Row(path=f"images/hr/{i // 100:03d}/{i:05d}.png", label=i % 100, identity=str(i % 100), split="train"), img)
    w.close()
    return root


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", type=Path)
    ap.add_argument("--images", type=int, default=1024)
    ap.add_argument("--size", type=int, default=112)
    ap.add_argument("--batch", type=int, default=32)
    ap.add_argument("--workers", default="0,1,2")
    ap.add_argument("--scale", default="multi")
    a = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        root = a.data or synthetic(Path(tmp) / "set", a.images, a.size)
        scales = (1, 2, 4, 8) if a.scale == "multi" else (int(a.scale),)
        ds = PairDataset(root, "train", scales, cache=False)
        print(f"{root}: {len(ds)} images, batch {a.batch}, scale {a.scale}, streamed from disk (PNG decode per image)")
        for w in map(int, a.workers.split(",")):
            steps = len(ds) // a.batch
            sampler = PairBatchSampler(len(ds), a.batch, steps, 0, scales, flip=True)
            loader = DataLoader(ds, batch_sampler=sampler, collate_fn=lambda b: b, num_workers=w)
            t0 = time.perf_counter()
            n = sum(len(b[2]) for b in loader)
            dt = time.perf_counter() - t0
            print(f"workers {w}: {n / dt:8.1f} img/s (HR + LR pair per image)")
        cached = PairDataset(root, "train", scales, cache=True)
        sampler = PairBatchSampler(len(cached), a.batch, len(cached) // a.batch, 0, scales, flip=True)
        t0 = time.perf_counter()
        n = sum(len(cached.__getitems__(k)[2]) for k in sampler)
        print(f"in-memory cache (data.cache: true): {n / (time.perf_counter() - t0):8.1f} img/s")


if __name__ == "__main__":
    main()
