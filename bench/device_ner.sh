#!/usr/bin/env bash
# Run ON the GPU machine, carry [".whl", ".nerdata"] (bench/device_prepare.sh, then bench/device_prepare_ner.sh):
# the NER GPU tests, WNUT-17 with MiniLM in bf16 (default cuda_graphs="auto": 321 steps, so graphed), and the NER
# speed table; each under its own time limit, tables in $OUT.
set -uo pipefail
export BERTLEARN_DATA="$PWD/.nerdata"
source "$(dirname "$0")/device_env.sh"
"$PY" - <<'PY'
import torch
from safetensors.torch import load_file, save_file
import shutil, os
os.makedirs("/tmp/minilm", exist_ok=True)
for f in os.listdir(".nerdata/minilm16"):
    if f != "model.safetensors":
        shutil.copy(f".nerdata/minilm16/{f}", "/tmp/minilm/")
save_file({k: v.float() for k, v in load_file(".nerdata/minilm16/model.safetensors").items()},
          "/tmp/minilm/model.safetensors")
PY
timeout "${TESTS_S:-120}" "$PY" -m pytest -q -p no:cacheprovider -m gpu tests/test_token_classification.py \
  tests/test_graphs.py 2>&1 | tee "$OUT/ner_tests.txt" | tail -4
timeout "${WNUT_S:-150}" "$PY" bench/ner_wnut17.py --model /tmp/minilm --epochs 3 --lr 1e-4 --fp16 \
  > "$OUT/ner_wnut17.txt" 2> "$OUT/ner_wnut17.err"
echo "ner_wnut17 exit $?"; grep -v "^bertlearn\|Warning\|warn" "$OUT/ner_wnut17.txt" | head -30; tail -3 "$OUT/ner_wnut17.err"
timeout "${SPEED_S:-200}" "$PY" bench/ner_throughput.py --model /tmp/minilm --bf16 --rows 3394 --epochs 3 \
  > "$OUT/ner_throughput.txt" 2> "$OUT/ner_throughput.err"
echo "ner_throughput exit $?"; cat "$OUT/ner_throughput.txt"; tail -3 "$OUT/ner_throughput.err"
