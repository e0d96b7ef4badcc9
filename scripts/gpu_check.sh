#!/usr/bin/env bash
# The GPU check (issue 27): one command for a lent GPU machine; everything goes under one output folder
# ($OUT when set, e.g. by the device tool, else ./gpu_check_out). Without CUDA it says so and exits 0.
# Rehearse on a CPU:  PYTHON=/path/to/python scripts/gpu_check.sh --rehearse-on-cpu
set -euo pipefail
cd "$(dirname "$0")/.."
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"
exec "${PYTHON:-python3}" scripts/gpu_check.py --out "${OUT:-gpu_check_out}" "$@"
