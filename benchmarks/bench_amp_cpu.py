"""Does bf16 autocast change what a study finds? The digit demo at 4x in fp32 and in bf16, paired by seed.

Every face recipe trains under bf16 autocast on GPUs that have it (``train.amp: auto``); the paper's code
trained in fp32. bf16 autocast also exists on the CPU (fskd itself never turns it on there), so this
script can answer on a CPU: for each seed it trains a teacher, then the base and F-SKD students at 4x (all
with the digit demo's recipe, shortened to 8 epochs by default), once with ``train.amp: off`` (fp32) and
once under bf16 autocast; it evaluates every run with ``fskd eval digits`` (in fp32) and prints per
precision the mean and spread over seeds, and the paired bf16 - fp32 differences per seed. The two
precisions of a seed train side by side (one torch thread each), so a busy moment hits both alike.

bf16 is switched on by wrapping ``autocast_dtype`` of the training build in the training subprocess: that
is the only change from a plain ``fskd train-teacher`` / ``fskd distill`` run, and the checkpoint's recipe
records ``train.amp: bf16``.

    python benchmarks/bench_amp_cpu.py                     # 3 seeds, 8 epochs (the shortened demo), ~40 CPU-min
    python benchmarks/bench_amp_cpu.py --seeds 0 1 2 3 4 --epochs 15 --milestones 5 10 13
"""

from __future__ import annotations

import argparse
import csv
import os
import statistics
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

PRECISIONS = {"fp32": '"off"', "bf16": "bf16"}  # quoted: YAML reads a bare off as false
STUDENTS = ("base", "f-skd")


def train_in_this_process(argv: list[str]) -> None:
    """``fskd`` with ``argv``, bf16 autocast allowed on the CPU when the recipe asks for ``train.amp: bf16``."""
    import torch

    from fskd_cli.cli import main
    from fskd_cli.train import build

    original = build.autocast_dtype

    def autocast_dtype(amp: str, device: torch.device) -> torch.dtype | None:
        return torch.bfloat16 if amp == "bf16" and device.type == "cpu" else original(amp, device)

    build.autocast_dtype = autocast_dtype
    sys.argv = ["fskd", *argv]
    main()


def fskd(*args: str, train: bool = False) -> None:
    cmd = [sys.executable, __file__, "_train", *args] if train else [sys.executable, "-m", "fskd_cli", *args]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    subprocess.run(cmd, check=True, env=env, stdout=subprocess.DEVNULL)


def chain(a: argparse.Namespace, seed: int, precision: str) -> list[dict[str, object]]:
    """Teacher, then each student at the scale, in one precision; every run evaluated; rows of accuracies."""
    root = a.out / f"s{seed}" / precision
    sets = ["--set", f"train.amp={PRECISIONS[precision]}", "--epochs", str(a.epochs),
            "--set", f"train.milestones={a.milestones}", "--data", str(a.data), "--seed", str(seed)]
    results = root / "results.csv"
    runs = [("teacher", root / "teacher", 1), *((m, root / f"{m}-x{a.scale}", a.scale) for m in STUDENTS)]
    if not (root / "teacher" / "checkpoint.pt").exists():
        fskd("train-teacher", "--recipe", str(a.teacher_recipe), "--out", str(root / "teacher"), *sets, train=True)
    for method, out, _ in runs[1:]:
        if not (out / "checkpoint.pt").exists():
            fskd("distill", "--recipe", str(a.recipe), "--method", method, "--scale", str(a.scale), "--teacher",
                 str(root / "teacher" / "checkpoint.pt"), "--out", str(out), *sets, train=True)
    results.unlink(missing_ok=True)
    rows = []
    for method, out, scale in runs:
        fskd("eval", "digits", "--data", str(a.data), "--ckpt", str(out), "--scale", str(scale), "--results", str(results))
        with results.open() as f:
            value = float(list(csv.DictReader(f))[-1]["value"])
        rows.append({"seed": seed, "precision": precision, "run": f"{method} x{scale}", "accuracy": round(100 * value, 2)})
    return rows


def summary(rows: list[dict[str, object]]) -> str:
    """Markdown: per run, each precision's mean ± std over seeds, and the paired bf16 - fp32 differences."""
    acc = {(r["run"], r["precision"], r["seed"]): r["accuracy"] for r in rows}
    seeds = sorted({r["seed"] for r in rows})
    lines = ["| run | fp32 mean ± std | bf16 mean ± std | bf16 - fp32 per seed | mean diff ± std |",
             "|---|---|---|---|---|"]
    for run in dict.fromkeys(r["run"] for r in rows):
        cells = []
        for p in PRECISIONS:
            v = [acc[run, p, s] for s in seeds]
            cells.append(f"{statistics.mean(v):.2f} ± {statistics.stdev(v):.2f}")
        d = [acc[run, "bf16", s] - acc[run, "fp32", s] for s in seeds]
        per_seed = ", ".join(f"s{s}: {x:+.2f}" for s, x in zip(seeds, d, strict=True))
        lines.append(f"| {run} | {cells[0]} | {cells[1]} | {per_seed} | {statistics.mean(d):+.2f} ± {statistics.stdev(d):.2f} |")
    return "\n".join(lines)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--recipe", type=Path, default=Path("recipes/digits-demo.yaml"), help="the students' recipe")
    p.add_argument("--teacher-recipe", type=Path, default=Path("recipes/digits-demo.yaml"))
    p.add_argument("--data", type=Path, default=Path("data/digits"), help="fskd prepare digits --out data/digits")
    p.add_argument("--out", type=Path, default=Path("runs/amp-cpu"))
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    p.add_argument("--scale", type=int, default=4)
    p.add_argument("--epochs", type=int, default=8, help="the demo's 15 shortened (as digits-gpu.yaml)")
    p.add_argument("--milestones", type=int, nargs="+", default=[3, 5, 7])
    a = p.parse_args()
    a.milestones = "[" + ",".join(map(str, a.milestones)) + "]"
    rows: list[dict[str, object]] = []
    with ThreadPoolExecutor(2) as pool:  # the two precisions of a seed side by side
        for seed in a.seeds:
            for part in pool.map(lambda prec, s=seed: chain(a, s, prec), PRECISIONS):
                rows.extend(part)
    with (a.out / "amp.csv").open("w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=list(rows[0]))
        w.writeheader()
        w.writerows(rows)
    print(f"{len(a.seeds)} seeds, {a.epochs} epochs (milestones {a.milestones}), scale {a.scale}; accuracy (%) on "
          f"{a.data}'s test split\n{summary(rows)}")


if __name__ == "__main__":
    if sys.argv[1:2] == ["_train"]:
        train_in_this_process(sys.argv[2:])
    else:
        main()
