#!/usr/bin/env bash
# Run ON the GPU machine (prepare with bench/device_prepare.sh; carry .whl and .devdata). Installs the carried
# wheels, then runs the GPU tests and the GPU benchmarks, each under its own time limit, so one lease call
# (10 minutes at most) brings back whatever finished; the tables land in $OUT.
#   bash bench/device_run.sh [tests|train|predict|tokenize|overhead|cli|all, or several: predict,cli]   (all: ~10 minutes,
#   over one call's limit: split it, e.g. "tests,train" then "predict,tokenize,cli")
# Options through the environment: TESTS_S, TRAIN_S, PREDICT_S, TOKENIZE_S, OVERHEAD_S, CLI_S (time limits), ROWS, EPOCHS, LOOPS (train),
# PREDICT_BS (the predictors' batch size).
set -uo pipefail
PY="${PY:-python3}"
# SKIP_INSTALL=1 for a dry run where fastai is installed already (here, with PY=.venv/bin/python)
[[ -n "${SKIP_INSTALL:-}" ]] || \
  "$PY" -m pip install -q --no-index --no-deps --no-compile --upgrade --target /tmp/site .whl/*.whl || exit 1
# TOKENIZERS_PARALLELISM stays unset, as users have it: the predictors tokenize a whole call in one parallel batch
# (the fifth session's GPU prediction rows ran with it forced off, single-threaded); the train bench and the tests
# set it themselves
export PYTHONPATH="/tmp/site:$PWD" BERTLEARN_DATA="$PWD/.devdata" HF_HUB_OFFLINE=1 PYTHONUNBUFFERED=1
OUT="${OUT:-runs/device}"
mkdir -p "$OUT"
{
  nvidia-smi --query-gpu=name,memory.total,driver_version,clocks.max.sm --format=csv
  "$PY" -c "import importlib.metadata as md, torch, transformers, fastai, bertlearn
try: tokie = md.version('tokie')
except md.PackageNotFoundError: tokie = 'missing (bench/device_prepare.sh fetches it)'
print('torch', torch.__version__, 'transformers', transformers.__version__, 'fastai', fastai.__version__,
      'bertlearn', bertlearn.__version__, 'tokie', tokie)"
} > "$OUT/env.txt" 2>&1
cat "$OUT/env.txt"
steps="${1:-all}"  # one step, several joined by commas, or all
want() { [[ "$steps" == all || ",$steps," == *",$1,"* ]]; }
if want tests; then
  timeout "${TESTS_S:-110}" "$PY" -m pytest -q -p no:cacheprovider -m gpu tests/test_graphs.py tests/test_data.py \
    2>&1 | tee "$OUT/tests.txt" | tail -15
fi
if want train; then
  # issue 8's speed point: random bert-base, SST-2, bs 64, maxlen 128; the graphed and eager fits first (each
  # also times the plain bf16 loop, interleaved), then the peers
  timeout "${TRAIN_S:-330}" "$PY" bench/train_throughput.py --model bert-base --bs 64 --maxlen 128 \
    --rows "${ROWS:-6400}" --epochs "${EPOCHS:-2}" --workdir /tmp/train_throughput \
    --loops "${LOOPS:-bertlearn fit is_fp16 graphs,bertlearn fit is_fp16,fast-bert style,HF Trainer,plain loop bf16}" \
    > "$OUT/train_throughput.txt" 2> "$OUT/train_throughput.err"
  echo "train_throughput exit $?"; cat "$OUT/train_throughput.txt"; tail -5 "$OUT/train_throughput.err"
fi
if want predict; then
  timeout "${PREDICT_S:-120}" "$PY" bench/predict_throughput.py --model bert-base --n 10000 --no-compile --no-onnx \
    --pipeline-bs 32,64,128 --bs "${PREDICT_BS:-64}" > "$OUT/predict_throughput.txt" 2> "$OUT/predict_throughput.err"
  echo "predict_throughput exit $?"; cat "$OUT/predict_throughput.txt"; tail -3 "$OUT/predict_throughput.err"
fi
if want tokenize; then
  # issue 8's tokenization target (>= 20x fast-bert building the Sentiment140 100k data) with this machine's cores
  timeout "${TOKENIZE_S:-240}" "$PY" bench/tokenize_throughput.py > "$OUT/tokenize_throughput.txt" \
    2> "$OUT/tokenize_throughput.err"
  echo "tokenize_throughput exit $?"; cat "$OUT/tokenize_throughput.txt"; tail -3 "$OUT/tokenize_throughput.err"
fi
if want overhead; then
  # fastai's host time per step on this machine's CPU, next to the GPU (a bert-base-shaped model at width 8), and
  # the graphed step's host time around its replays (replays stubbed): set against train's graphed bert-base step,
  # the share of that step the GPU itself takes
  timeout "${OVERHEAD_S:-90}" "$PY" bench/loop_overhead.py > "$OUT/loop_overhead.txt" 2> "$OUT/loop_overhead.err"
  echo "loop_overhead exit $?"; cat "$OUT/loop_overhead.txt"; tail -3 "$OUT/loop_overhead.err"
fi
if want cli; then
  # the main job on the GPU: `bertlearn train` on all of SST-2 (1,053 steps: cuda_graphs="auto" switches graphs on),
  # with a random bert-base carrying MiniLM's (bert-base-uncased's) vocabulary
  "$PY" - <<'PY'
import torch
from transformers import AutoTokenizer, BertConfig, BertForSequenceClassification
torch.manual_seed(0)
BertForSequenceClassification(BertConfig()).bert.save_pretrained("/tmp/bert-base-random")
AutoTokenizer.from_pretrained(".devdata/tokenizer").save_pretrained("/tmp/bert-base-random")
PY
  timeout "${CLI_S:-120}" "$PY" -m bertlearn train --data .devdata/sst2 --train-file train.csv --val-file valid.csv \
    --model /tmp/bert-base-random --epochs 1 --bs 64 --maxlen 128 --fp16 --seed 0 --out /tmp/cli_out \
    > "$OUT/cli_train.txt" 2>&1
  echo "cli exit $?"; grep -v "Loading weights\|Writing model" "$OUT/cli_train.txt" | tail -6
fi
