#!/usr/bin/env bash
# The GPU check (issue 13): the CUDA tests and the GPU benchmarks in one 8-minute run,
# figures to bench/results/gpu-<date>.md (and to $OUT, which the device tool brings back).
#
#   bash bench/gpu_check.sh              # on the GPU machine, from the repository root
#   bash bench/gpu_check.sh --dry-run    # here, on the CPU: no installs, tiny sizes
#
# Everything else is bench/gpu_check.py (its docstring: the parts and their budgets). The
# GPU machine reaches no package registry: wheels are fetched here with
# bench/gpu_wheels.py and carried (build/gpu-wheels, build/gpu-ort/part-N).
set -euo pipefail
cd "$(dirname "$0")/.."
if [ -x .venv/bin/python ]; then
  PY=.venv/bin/python  # this repository's virtual environment (the dry run here)
else
  PY="${PYTHON:-python3}"  # the GPU machine's image: its python3 holds CUDA PyTorch
fi
export PYTHONUNBUFFERED=1
exec "$PY" bench/gpu_check.py "$@"
