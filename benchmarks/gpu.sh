#!/usr/bin/env bash
# Issue 23's GPU measurements in one short call, for a machine with a CUDA device:
#
#   bash benchmarks/gpu.sh                 # about 3 minutes on an H100/H200; NAME=... to rename
#
# Needs torch with CUDA and the package installed (pip install -e .), and the UD test splits
# under $PROBE_DATA (default ../shared/data). A machine without them: copy them first, here,
# `python -m benchmarks.gpu --copy-data benchmarks/results/gpu-data` (37 MB, ignored by git),
# and run with PROBE_DATA=benchmarks/results/gpu-data. Stops after GPU_TIMEOUT seconds (480).
set -euo pipefail
cd "$(dirname "$0")/.."
python -c "import sys, torch; sys.exit(0 if torch.cuda.is_available() else 'no CUDA device')"
nvidia-smi --query-gpu=name,memory.total,utilization.gpu --format=csv || true
exec timeout "${GPU_TIMEOUT:-480}" python -m benchmarks --device cuda --only gpu --repeats 1 \
    --shapes mbert --name "${NAME:-gpu}" "$@"
