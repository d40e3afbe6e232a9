#!/usr/bin/env bash
# Run ON the GPU machine (prepare with bench/device_prepare.sh; carry .whl and .devdata). Installs the carried
# wheels, then runs the GPU tests and the GPU benchmarks, each under its own time limit, so one lease call
# (10 minutes at most) brings back whatever finished; the tables land in $OUT.
#   bash bench/device_run.sh [tests|train|predict|all]      (default all: about 8 minutes)
set -uo pipefail
PY="${PY:-python3}"
# SKIP_INSTALL=1 for a dry run where fastai is installed already (here, with PY=.venv/bin/python)
[[ -n "${SKIP_INSTALL:-}" ]] || \
  "$PY" -m pip install -q --no-index --no-deps --no-compile --upgrade --target /tmp/site .whl/*.whl || exit 1
export PYTHONPATH="/tmp/site:$PWD" BERTLEARN_DATA="$PWD/.devdata" HF_HUB_OFFLINE=1 TOKENIZERS_PARALLELISM=false \
  PYTHONUNBUFFERED=1
OUT="${OUT:-runs/device}"
mkdir -p "$OUT"
{
  nvidia-smi --query-gpu=name,memory.total,driver_version,clocks.max.sm --format=csv
  "$PY" -c "import torch, transformers, fastai, bertlearn; print('torch', torch.__version__, 'transformers',
transformers.__version__, 'fastai', fastai.__version__, 'bertlearn', bertlearn.__version__)"
} > "$OUT/env.txt" 2>&1
cat "$OUT/env.txt"
step="${1:-all}"
if [[ "$step" == tests || "$step" == all ]]; then
  timeout "${TESTS_S:-110}" "$PY" -m pytest -q -p no:cacheprovider -m gpu tests/test_graphs.py tests/test_data.py \
    2>&1 | tee "$OUT/tests.txt" | tail -15
fi
if [[ "$step" == train || "$step" == all ]]; then
  # issue 8's speed point: random bert-base, SST-2, bs 64, maxlen 128; the graphed and eager fits first (each
  # also times the plain bf16 loop, interleaved), then the peers
  timeout "${TRAIN_S:-330}" "$PY" bench/train_throughput.py --model bert-base --bs 64 --maxlen 128 \
    --rows "${ROWS:-6400}" --epochs "${EPOCHS:-2}" --workdir /tmp/train_throughput \
    --loops "${LOOPS:-bertlearn fit is_fp16 graphs,bertlearn fit is_fp16,fast-bert style,HF Trainer,plain loop bf16}" \
    > "$OUT/train_throughput.txt" 2> "$OUT/train_throughput.err"
  echo "train_throughput exit $?"; cat "$OUT/train_throughput.txt"; tail -5 "$OUT/train_throughput.err"
fi
if [[ "$step" == predict || "$step" == all ]]; then
  timeout "${PREDICT_S:-120}" "$PY" bench/predict_throughput.py --model bert-base --n 10000 --no-compile --no-onnx \
    --pipeline-bs 32,64,128 > "$OUT/predict_throughput.txt" 2> "$OUT/predict_throughput.err"
  echo "predict_throughput exit $?"; cat "$OUT/predict_throughput.txt"; tail -3 "$OUT/predict_throughput.err"
fi
