#!/usr/bin/env bash
# Run ON the GPU machine, carry [".whl", ".nerdata"] (bench/device_prepare.sh, then bench/device_prepare_ner.sh):
# the NER GPU tests, the NER speed table (issue 23's method: bench/ner_throughput.py, every loop in its own process,
# end to end and steady state; prediction against the pipeline swept in both precisions, with the forward-only
# ceiling) and WNUT-17 with MiniLM in bf16 (default cuda_graphs="auto": 321 steps, so graphed); tables in $OUT.
# Time: ALL_S (default 330) bounds the whole call from its start, as in bench/device_run.sh; each step runs under the
# smaller of its own limit (TESTS_S 45, SPEED_S 150, WNUT_S 100) and what is left (under 15 s left: skipped);
# ner_throughput.py gets the speed step's limit less 10 s as its --budget-s, so its tables come out. Call with
# timeout_s = ALL_S + 30. The limits are estimates, not yet timed on a GPU; every step prints the seconds it took.
set -uo pipefail
SECONDS=0
STEP_LIMITS="TESTS_S SPEED_S WNUT_S"
export BERTLEARN_DATA="$PWD/.nerdata"
source "$(dirname "$0")/device_env.sh"  # checks ALL_S and the step limits, defines limit()
minilm32 || exit 1  # MiniLM back to float32 in /tmp/minilm (what every step trains and predicts with)
if t0=$SECONDS && s=$(limit tests "${TESTS_S:-45}"); then
  timeout "$s" "$PY" -m pytest -q -p no:cacheprovider -m gpu tests/test_token_classification.py \
    tests/test_graphs.py 2>&1 | tee "$OUT/ner_tests.txt" | tail -4
  echo "tests: took $(( SECONDS - t0 )) s of its $s s"
fi
if t0=$SECONDS && s=$(limit speed "${SPEED_S:-150}"); then
  # all of WNUT-17's training sentences (106 steps of 32 an epoch), 3 epochs; 1,000 test sentences predicted
  timeout "$s" "$PY" bench/ner_throughput.py --model /tmp/minilm --rows 3394 --epochs 3 --pairs 0 --texts 1000 \
    --pipeline-bs 8 32 64 128 256 512 --json "$OUT/ner_throughput.json" --budget-s $(( s - 10 )) \
    > "$OUT/ner_throughput.txt" 2> "$OUT/ner_throughput.err"
  echo "ner_throughput exit $?"; cat "$OUT/ner_throughput.txt"; grep -v "^{" "$OUT/ner_throughput.err" | tail -3
  echo "speed: took $(( SECONDS - t0 )) s of its $s s"
fi
if t0=$SECONDS && s=$(limit wnut "${WNUT_S:-100}"); then
  timeout "$s" "$PY" bench/ner_wnut17.py --model /tmp/minilm --epochs 3 --lr 1e-4 --fp16 \
    > "$OUT/ner_wnut17.txt" 2> "$OUT/ner_wnut17.err"
  echo "ner_wnut17 exit $?"; grep -v "^bertlearn\|Warning\|warn" "$OUT/ner_wnut17.txt" | head -30
  tail -3 "$OUT/ner_wnut17.err"
  echo "wnut: took $(( SECONDS - t0 )) s of its $s s"
fi
