"""Eval throughput: images/s to embed an AgeDB-30-sized verification set on the CPU.

AgeDB-30's protocol has 6,000 pairs of 12,000 images of 112 x 112, and both verification protocols embed
every image and its mirror. This script times the real eval path (:func:`embed` with ``mirror`` over a
prepared dataset: read the LR PNG from disk, mirror it, one forward pass for both) on a few hundred
synthetic 112 x 112 images, then extrapolates to 12,000. Untrained weights: throughput does not depend
on them. The numbers are measured on a sample and extrapolated; the script says so in its output.

    .venv/bin/python benchmarks/bench_eval.py                   # iResNet-50 and -18, 2 threads, ~1.5 min
    .venv/bin/python benchmarks/bench_eval.py --images 256 --models iresnet18 --threads 4
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from fskd_cli.core.preprocess import Preprocess
from fskd_cli.data.dataset import PairDataset
from fskd_cli.data.manifest import DatasetWriter, Row
from fskd_cli.inference.lowres import LowRes, embed
from fskd_cli.models import create_model

AGEDB_IMAGES = 12_000
SIZE = 112


def synthetic_set(root: Path, n: int, scale: int) -> PairDataset:
    """``n`` random-but-smooth 112 x 112 images with their ``scale``x LR copies, as `fskd prepare` writes them."""
    rng = np.random.default_rng(0)
    w = DatasetWriter(root, "bench", "verification", SIZE, scales=(scale,))
    y, x = np.mgrid[0:SIZE, 0:SIZE]
    for i in range(n):
        f = rng.uniform(3, 12, 3)
        img = np.stack([(np.sin(x / f[c] + i) + np.cos(y / (f[c] + 2))) * 60 + 128 for c in range(3)], -1)
        img = np.clip(img + rng.normal(0, 8, img.shape), 0, 255).astype(np.uint8)
        w.add(Row(f"images/hr/{i:05d}.png", i, str(i), "test"), img)
    w.close()
    return PairDataset(root, "test", (scale,), cache=False)


def bench(name: str, ds: PairDataset, scale: int, batch_size: int) -> float:
    """Images per second (each image counted once; its mirror goes through the model with it)."""
    model = create_model(name, input_size=SIZE).eval()
    warm = PairDataset(ds.root, "test", (scale,), cache=False, rows=ds.rows[:min(8, len(ds))])
    run = {"device": torch.device("cpu"), "batch_size": batch_size, "mirror": True}
    embed(model, warm, LowRes("disk"), scale, Preprocess(), **run)  # first-call overheads
    start = time.perf_counter()
    emb, mirror = embed(model, ds, LowRes("disk"), scale, Preprocess(), **run)
    seconds = time.perf_counter() - start
    assert emb.shape == mirror.shape == (len(ds), model.embedding_size)
    return len(ds) / seconds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--models", nargs="+", default=["iresnet50", "iresnet18"])
    parser.add_argument("--images", type=int, default=128, help="images timed per model (each with its mirror)")
    parser.add_argument("--threads", type=int, default=2, help="torch intra-op threads (the CPU cores used)")
    parser.add_argument("--batch-size", type=int, default=32, help="images per forward pass (+ as many mirrors)")
    parser.add_argument("--scale", type=int, default=4, choices=(2, 4, 8))
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    print(f"torch {torch.__version__}, {args.threads} thread(s), {os.cpu_count()} CPU(s) visible, "
          f"load average {os.getloadavg()[0]:.1f}; {args.images} synthetic {SIZE}x{SIZE} images (x{args.scale} LR), "
          f"each embedded with its mirror, batch {args.batch_size}")
    with tempfile.TemporaryDirectory() as tmp:
        ds = synthetic_set(Path(tmp) / "bench", args.images, args.scale)
        for name in args.models:
            rate = bench(name, ds, args.scale, args.batch_size)
            minutes = AGEDB_IMAGES / rate / 60
            print(f"{name:>10}: {rate:7.1f} images/s ({2 * rate:7.1f} forward passes/s with mirrors); "
                  f"AgeDB-30 ({AGEDB_IMAGES:,} images + mirrors) extrapolated: {minutes:6.1f} min")
    print(f"(measured on {args.images} images per model and extrapolated linearly to {AGEDB_IMAGES:,})")


if __name__ == "__main__":
    main()
