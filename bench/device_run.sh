#!/usr/bin/env bash
# Run ON the GPU machine (prepare with bench/device_prepare.sh; carry .whl and .devdata). Installs the carried
# wheels, then runs the GPU tests and the GPU benchmarks; the tables land in $OUT.
#   bash bench/device_run.sh [all|tests|cli|predict|train|tokenize|overhead|scaling, or several: predict,cli]
# "all" is every headline GPU row of docs/benchmarks.md: tests, cli (the main job), predict, train, in that order
# (the cheap steps first; the training table is the longest and degrades loop by loop).
# Time: ALL_S (default 330) bounds the whole call from its start, the wheel install included. Each step runs under
# the smaller of its own limit and what is left of ALL_S (a step with under 15 s left is skipped and says so);
# train_throughput.py starts a loop only with 30 s of its budget left (the step's limit less 20 s, so none starts
# in the step's last 50 s) and still writes its table and JSON; every bench writes its rows as it measures them.
# Every step prints the seconds it took, to calibrate these limits. So a lease call with timeout_s = ALL_S + 30
# returns within it with whatever finished. A second call gets ALL_S = the budget_left_s that `status` reports
# less 90 (machine start, idle time and transfers count too): if the training table came back incomplete,
# `ALL_S=... bash bench/device_run.sh train` (the whole table from one run, so its ratios compare sides measured
# together); else `ALL_S=... bash bench/device_run.sh scaling`.
# Step limits (seconds): TESTS_S 40, CLI_S 50, PREDICT_S 70, TRAIN_S 300 (what is left in "all": about 150);
# TOKENIZE_S 120, OVERHEAD_S 90; the scaling curves SCALING_PREDICT_S 110, SCALING_TRAIN_S 130, SCALING_CORES_S 50.
# None of these has been timed on a GPU yet: they are estimates from the fifth and eleventh sessions' runs.
# Other options through the environment: ROWS, EPOCHS, PAIRS, LOOPS (train), PREDICT_N, PREDICT_BS (the
# predictors' batch size), MODEL (bert-base; minilm for a dry run on a machine with the packaged model:
# SKIP_INSTALL=1 PY=.venv/bin/python OUT=runs/device-dry MODEL=minilm ROWS=256 EPOCHS=2 PREDICT_N=200).
set -uo pipefail
SECONDS=0
STEP_LIMITS="TESTS_S CLI_S PREDICT_S TRAIN_S TOKENIZE_S OVERHEAD_S SCALING_PREDICT_S SCALING_TRAIN_S SCALING_CORES_S"
steps="${1:-all}"  # one step, several joined by commas, or all
[[ "$steps" == all ]] && steps="tests,cli,predict,train"
for step in ${steps//,/ }; do
  case "$step" in tests|cli|predict|train|tokenize|overhead|scaling) ;;
    *) echo "step $step: not one of all, tests, cli, predict, train, tokenize, overhead, scaling" >&2; exit 2 ;;
  esac
done
# TOKENIZERS_PARALLELISM stays unset, as users have it: the predictors tokenize a whole call in one parallel batch
# (the fifth session's GPU prediction rows ran with it forced off, single-threaded); the train bench and the tests
# set it themselves
export BERTLEARN_DATA="$PWD/.devdata"
source "$(dirname "$0")/device_env.sh"  # checks ALL_S and the step limits, defines limit()
MODEL="${MODEL:-bert-base}"
want() { [[ ",$steps," == *",$1,"* ]] && t0=$SECONDS; }
took() { echo "$1: took $(( SECONDS - t0 )) s of its $2 s"; }
# enough NAME SECONDS NEEDED: fails with a message when a step's SECONDS are under what it needs to run at all
enough() { (( $2 >= $3 )) || { echo "$1: skipped, $2 s left: it needs at least $3" >&2; return 1; }; }
if want tests && s=$(limit tests "${TESTS_S:-40}"); then
  timeout "$s" "$PY" -m pytest -q -p no:cacheprovider -m gpu tests/test_graphs.py tests/test_data.py \
    2>&1 | tee "$OUT/tests.txt" | tail -15
  took tests "$s"
fi
if want cli && s=$(limit cli "${CLI_S:-50}"); then
  # the main job on the GPU: `bertlearn train` on all of SST-2 (1,053 steps: cuda_graphs="auto" switches graphs on),
  # with a random bert-base carrying MiniLM's (bert-base-uncased's) vocabulary (MODEL=minilm: the packaged model);
  # the model is saved inside the step's limit
  end=$(( SECONDS + s ))
  cli_model=()
  if [[ "$MODEL" == bert-base ]]; then
    timeout "$s" "$PY" - <<'PY'
import torch
from transformers import AutoTokenizer, BertConfig, BertForSequenceClassification
torch.manual_seed(0)
BertForSequenceClassification(BertConfig()).bert.save_pretrained("/tmp/bert-base-random")
AutoTokenizer.from_pretrained(".devdata/tokenizer").save_pretrained("/tmp/bert-base-random")
PY
    rc=$?
    cli_model=(--model /tmp/bert-base-random)
  else
    rc=0
  fi
  if (( rc )); then
    echo "cli: saving the random bert-base failed or ran out of time (exit $rc)"
  elif (( end - SECONDS < 5 )); then
    echo "cli: no time left after saving the model"
  else
    timeout $(( end - SECONDS )) "$PY" -m bertlearn train --data .devdata/sst2 --train-file train.csv \
      --val-file valid.csv ${cli_model[@]+"${cli_model[@]}"} --epochs 1 --bs 64 --maxlen 128 --fp16 --seed 0 \
      --out /tmp/cli_out > "$OUT/cli_train.txt" 2>&1
    echo "cli exit $?"; grep -v "Loading weights\|Writing model" "$OUT/cli_train.txt" | tail -6
  fi
  took cli "$s"
fi
if want predict && s=$(limit predict "${PREDICT_S:-70}"); then
  # the pipeline swept to batch size 512 in float32 and bf16; the predictors at their defaults (bf16 replays graphs)
  # and with graphs forced; each row also goes to the .err file as it is measured, so a cut run keeps what ran
  timeout "$s" "$PY" bench/predict_throughput.py --model "$MODEL" --n "${PREDICT_N:-2000}" --repeats 3 --no-compile \
    --no-onnx --pipeline-bs 32,64,128,256,512 --bs "${PREDICT_BS:-64}" > "$OUT/predict_throughput.txt" \
    2> "$OUT/predict_throughput.err"
  echo "predict_throughput exit $?"; cat "$OUT/predict_throughput.txt"; tail -3 "$OUT/predict_throughput.err"
  took predict "$s"
fi
if want train && s=$(limit train "${TRAIN_S:-300}") && enough train "$s" 50; then
  # issue 8's speed point: random bert-base, SST-2, bs 64, maxlen 128, 3 epochs of 100 steps: the 300 steps at which
  # cuda_graphs="auto" graphs a bf16 fit, so the default rows are what a user gets. Every side at its defaults,
  # then at its best, then the plain bf16 loop (own process) and the forced graphs. The fit rows' interleaved
  # plain-loop pairs (fastai's overhead, the "vs plain loop, same process" column) only with PAIRS=2 or so: they
  # cost two more epochs per fit row. Loops start only with 30 s left of the budget (20 s before the step's end)
  timeout "$s" "$PY" bench/train_throughput.py --model "$MODEL" --bs 64 --maxlen 128 \
    --rows "${ROWS:-6400}" --epochs "${EPOCHS:-3}" --pairs "${PAIRS:-0}" --workdir /tmp/train_throughput \
    --json "$OUT/train_throughput.json" --budget-s $(( s - 20 )) \
    --loops "${LOOPS:-bertlearn fit defaults,bertlearn fit is_fp16,HF Trainer defaults,HF Trainer best,plain loop bf16,fast-bert defaults,fast-bert half precision,bertlearn fit is_fp16 graphs forced}" \
    > "$OUT/train_throughput.txt" 2> "$OUT/train_throughput.err"
  echo "train_throughput exit $?"; cat "$OUT/train_throughput.txt"; tail -5 "$OUT/train_throughput.err"
  took train "$s"
fi
if want tokenize && s=$(limit tokenize "${TOKENIZE_S:-120}"); then
  # issue 8's tokenization target (>= 20x fast-bert building the Sentiment140 100k data) with this machine's cores
  timeout "$s" "$PY" bench/tokenize_throughput.py > "$OUT/tokenize_throughput.txt" \
    2> "$OUT/tokenize_throughput.err"
  echo "tokenize_throughput exit $?"; cat "$OUT/tokenize_throughput.txt"; tail -3 "$OUT/tokenize_throughput.err"
  took tokenize "$s"
fi
if want overhead && s=$(limit overhead "${OVERHEAD_S:-90}"); then
  # fastai's host time per step on this machine's CPU, next to the GPU (a bert-base-shaped model at width 8), and
  # the graphed step's host time around its replays (replays stubbed): set against train's graphed bert-base step,
  # the share of that step the GPU itself takes
  timeout "$s" "$PY" bench/loop_overhead.py > "$OUT/loop_overhead.txt" 2> "$OUT/loop_overhead.err"
  echo "loop_overhead exit $?"; cat "$OUT/loop_overhead.txt"; tail -3 "$OUT/loop_overhead.err"
  took overhead "$s"
fi
if want scaling; then
  # the curves on the GPU (random bert-base: the packaged MiniLM does not travel) and tokenization on 16 cores;
  # each curve saves its JSON after every point, so a cut curve keeps what it measured; matplotlib may be missing
  # there: `bench/scaling.py CMD --replot --out DIR` draws the returned JSON here
  if s=$(limit "scaling predict" "${SCALING_PREDICT_S:-110}"); then
    timeout "$s" "$PY" bench/scaling.py predict --model "$MODEL" --speeches .devdata/political_data.csv \
      --n "${SCALING_N:-256}" --out "$OUT" > "$OUT/scaling_predict.txt" 2>&1
    echo "scaling predict exit $?"; tail -25 "$OUT/scaling_predict.txt"
  fi
  if s=$(limit "scaling train" "${SCALING_TRAIN_S:-130}"); then
    # against L only (bs 16), bertlearn's bf16 fit and the Trainer at its best: 10 processes; the CPU's curves have
    # four loops and a batch-size panel, more than one call holds on the GPU
    timeout "$s" "$PY" bench/scaling.py train --model "$MODEL" --speeches .devdata/political_data.csv \
      --tokens "${SCALING_TOKENS:-65536}" --loops "bertlearn fit is_fp16" "HF Trainer best" --batch-sizes \
      --out "$OUT" > "$OUT/scaling_train.txt" 2>&1
    echo "scaling train exit $?"; tail -25 "$OUT/scaling_train.txt"
  fi
  if s=$(limit "scaling cores" "${SCALING_CORES_S:-50}"); then
    timeout "$s" "$PY" bench/scaling.py cores --repeats 2 --out "$OUT" > "$OUT/scaling_cores.txt" 2>&1
    echo "scaling cores exit $?"; tail -12 "$OUT/scaling_cores.txt"
  fi
fi
