#!/usr/bin/env bash
# Run ON the GPU machine (prepare with bench/device_prepare.sh; carry .whl and .devdata). Installs the carried
# wheels, then runs the GPU tests and the GPU benchmarks, each under its own time limit, so one lease call
# (10 minutes at most) brings back whatever finished; the tables land in $OUT.
#   bash bench/device_run.sh [all|tests|train|predict|cli|tokenize|overhead|scaling, or several: predict,cli]
# "all" is the GPU rows of docs/benchmarks.md's headline tables: tests, train, predict (time limits 80 + 300 +
# 130 s, plus ~20 s of wheel install: under 9 minutes of one call's 10, not yet timed on a GPU); cli (the main job
# on all of SST-2), tokenize, overhead and scaling (bench/scaling.py's curves on the GPU and tokenization on its 16
# cores) are a second call, e.g. "cli,scaling".
# Options through the environment: TESTS_S, TRAIN_S, PREDICT_S, CLI_S, TOKENIZE_S, OVERHEAD_S, SCALING_S (time
# limits), ROWS, EPOCHS, PAIRS, LOOPS (train), PREDICT_BS (the predictors' batch size).
set -uo pipefail
# TOKENIZERS_PARALLELISM stays unset, as users have it: the predictors tokenize a whole call in one parallel batch
# (the fifth session's GPU prediction rows ran with it forced off, single-threaded); the train bench and the tests
# set it themselves
export BERTLEARN_DATA="$PWD/.devdata"
source "$(dirname "$0")/device_env.sh"
steps="${1:-all}"  # one step, several joined by commas, or all
[[ "$steps" == all ]] && steps="tests,train,predict"
want() { [[ ",$steps," == *",$1,"* ]]; }
if want tests; then
  timeout "${TESTS_S:-80}" "$PY" -m pytest -q -p no:cacheprovider -m gpu tests/test_graphs.py tests/test_data.py \
    2>&1 | tee "$OUT/tests.txt" | tail -15
fi
if want train; then
  # issue 8's speed point: random bert-base, SST-2, bs 64, maxlen 128, 3 epochs of 100 steps: the 300 steps at which
  # cuda_graphs="auto" graphs a bf16 fit, so the default rows are what a user gets; every side at its defaults,
  # then at its best, then the forced graphs (each fit row also times interleaved plain-loop pairs)
  timeout "${TRAIN_S:-300}" "$PY" bench/train_throughput.py --model bert-base --bs 64 --maxlen 128 \
    --rows "${ROWS:-6400}" --epochs "${EPOCHS:-3}" --pairs "${PAIRS:-2}" --workdir /tmp/train_throughput \
    --json "$OUT/train_throughput.json" \
    --loops "${LOOPS:-bertlearn fit defaults,bertlearn fit is_fp16,HF Trainer defaults,HF Trainer best,fast-bert defaults,fast-bert half precision,plain loop bf16,bertlearn fit is_fp16 graphs forced}" \
    > "$OUT/train_throughput.txt" 2> "$OUT/train_throughput.err"
  echo "train_throughput exit $?"; cat "$OUT/train_throughput.txt"; tail -5 "$OUT/train_throughput.err"
fi
if want predict; then
  # the pipeline swept to batch size 512 in float32 and bf16; the predictors at their defaults (bf16 replays graphs)
  # and with graphs forced
  timeout "${PREDICT_S:-130}" "$PY" bench/predict_throughput.py --model bert-base --n 4000 --repeats 3 --no-compile \
    --no-onnx --pipeline-bs 32,64,128,256,512 --bs "${PREDICT_BS:-64}" > "$OUT/predict_throughput.txt" \
    2> "$OUT/predict_throughput.err"
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
  timeout "${CLI_S:-90}" "$PY" -m bertlearn train --data .devdata/sst2 --train-file train.csv --val-file valid.csv \
    --model /tmp/bert-base-random --epochs 1 --bs 64 --maxlen 128 --fp16 --seed 0 --out /tmp/cli_out \
    > "$OUT/cli_train.txt" 2>&1
  echo "cli exit $?"; grep -v "Loading weights\|Writing model" "$OUT/cli_train.txt" | tail -6
fi
if want scaling; then
  # the curves on the GPU (random bert-base: the packaged MiniLM does not travel) and tokenization on 16 cores;
  # matplotlib may be missing there: the JSON comes back and `bench/scaling.py CMD --replot --out DIR` draws it here
  timeout "${SCALING_S:-240}" "$PY" bench/scaling.py predict --model bert-base --speeches .devdata/political_data.csv \
    --n 256 --out "$OUT" > "$OUT/scaling_predict.txt" 2>&1
  echo "scaling predict exit $?"; tail -25 "$OUT/scaling_predict.txt"
  timeout "${SCALING_S:-240}" "$PY" bench/scaling.py cores --repeats 2 --out "$OUT" > "$OUT/scaling_cores.txt" 2>&1
  echo "scaling cores exit $?"; tail -12 "$OUT/scaling_cores.txt"
fi
