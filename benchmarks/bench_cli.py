"""Benchmark how fast the ``fskd`` command answers: help, version and option errors, beside importing torch alone.

Each command runs in a fresh process (``python -m fskd_cli ...``), the commands alternating round by round so that
a change of machine load spreads over all of them; the table gives the wall time, median [min-max], and the
peak resident memory of the process. The load average is printed before and after: on a shared machine it is
the context every figure needs. ``fskd distill --help`` lists the distillation methods, which are torch modules,
so it costs what importing torch costs; the other commands should cost about what Python with typer and rich does.

    python benchmarks/bench_cli.py [--repeats 7]
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
FSKD = ["-m", "fskd_cli"]
# (label, python arguments, the exit code the command must end with)
COMMANDS = [
    ("fskd --help", [*FSKD, "--help"], 0),
    ("fskd --version", [*FSKD, "--version"], 0),
    ("fskd distill --bogus", [*FSKD, "distill", "--bogus"], 2),
    ("fskd eval nosuch", [*FSKD, "eval", "nosuch", "--ckpt", "x"], 2),
    ("fskd eval --help", [*FSKD, "eval", "--help"], 0),
    ("fskd prepare --help", [*FSKD, "prepare", "--help"], 0),
    ("fskd distill --help", [*FSKD, "distill", "--help"], 0),
    ('python -c "import torch"', ["-c", "import torch"], 0),
    ('python -c "pass"', ["-c", "pass"], 0),
]


def run_once(python: str, args: list[str], expected: int) -> tuple[float, float]:
    """Wall seconds and peak resident MiB of one fresh process running ``python args``."""
    env = {**os.environ, "COLUMNS": "100", "PYTHONWARNINGS": "ignore",
           "PYTHONPATH": os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")]))}
    start = time.perf_counter()
    proc = subprocess.Popen([python, *args], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env, cwd=REPO)
    _, status, usage = os.wait4(proc.pid, 0)
    seconds = time.perf_counter() - start
    proc.returncode = os.waitstatus_to_exitcode(status)
    if proc.returncode != expected:
        raise SystemExit(f"{' '.join(args)}: exit {proc.returncode}, expected {expected}")
    return seconds, usage.ru_maxrss / 1024  # ru_maxrss is in KiB on Linux


def spread(values: list[float], fmt: str) -> str:
    return f"{statistics.median(values):{fmt}} [{min(values):{fmt}}-{max(values):{fmt}}]"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeats", type=int, default=7, help="rounds; each round runs every command once")
    ap.add_argument("--python", default=sys.executable, help="the interpreter (with fskd's dependencies)")
    a = ap.parse_args()
    before = os.getloadavg()
    times: dict[str, list[float]] = {label: [] for label, _, _ in COMMANDS}
    memory: dict[str, list[float]] = {label: [] for label, _, _ in COMMANDS}
    for _ in range(a.repeats):
        for label, args, expected in COMMANDS:
            seconds, mib = run_once(a.python, args, expected)
            times[label].append(seconds)
            memory[label].append(mib)
    after = os.getloadavg()
    print(f"{a.repeats} rounds, {os.cpu_count()} CPUs, Python {sys.version.split()[0]}, load average "
          f"{before[0]:.2f} before, {after[0]:.2f} after (1-minute)")
    print("\n| command | wall s, median [min-max] | peak MiB, median |\n|---|---|---|")
    for label, _, _ in COMMANDS:
        print(f"| `{label}` | {spread(times[label], '.2f')} | {statistics.median(memory[label]):.0f} |")


if __name__ == "__main__":
    main()
