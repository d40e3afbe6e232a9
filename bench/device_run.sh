#!/usr/bin/env bash
# Run ON the GPU machine (prepare with bench/device_prepare.sh; carry .whl and .devdata). Installs the carried
# wheels, then runs the GPU benchmarks and GPU tests; the tables land in $OUT (they come back with the call).
#   bash bench/device_run.sh [train|predict|tests|all]   (default all; each step fits in one 10-minute call)
set -uo pipefail
PY="${PY:-python3}"
"$PY" -m pip install -q --no-index --no-deps --no-compile --upgrade --target /tmp/site .whl/*.whl
export PYTHONPATH="/tmp/site:$PWD" BERTLEARN_DATA="$PWD/.devdata" HF_HUB_OFFLINE=1 TOKENIZERS_PARALLELISM=false
OUT="${OUT:-runs/device}"
mkdir -p "$OUT"
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv > "$OUT/gpu.txt" 2>&1 || true
step="${1:-all}"
if [[ "$step" == train || "$step" == all ]]; then
  # issue 8's speed point: random bert-base, SST-2, bs 64, maxlen 128
  "$PY" bench/train_throughput.py --model bert-base --bs 64 --maxlen 128 --rows 8192 --epochs 3 \
    --workdir /tmp/train_throughput 2>&1 | tee "$OUT/train_throughput.txt"
fi
if [[ "$step" == predict || "$step" == all ]]; then
  "$PY" bench/predict_throughput.py --model bert-base 2>&1 | tee "$OUT/predict_throughput.txt"
fi
if [[ "$step" == tests || "$step" == all ]]; then
  "$PY" -m pytest -q -p no:cacheprovider -m gpu tests/test_data.py 2>&1 | tee "$OUT/tests.txt"
fi
