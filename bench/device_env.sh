# Sourced by the scripts run ON the GPU machine (bench/device_run.sh, bench/device_ner.sh, bench/device_serve.sh): installs the wheels
# carried in .whl (SKIP_INSTALL=1 for a dry run where everything is installed, e.g. PY=.venv/bin/python), sets the
# environment, makes $OUT and writes the machine and versions to $OUT/env.txt. The caller exports BERTLEARN_DATA,
# sets SECONDS=0 at its start and names its step limits in STEP_LIMITS.
# The call's time budget: ALL_S (default 330) whole seconds from the caller's start, checked with the step limits
# before the install; `limit NAME WANTED` prints the seconds step NAME may take (WANTED, or less when ALL_S is nearly
# spent) and fails with a message when under 15 s are left.
ALL_S="${ALL_S:-330}"
[[ "$ALL_S" =~ ^[0-9]+$ ]] || { echo "ALL_S=$ALL_S: pass whole seconds, e.g. ALL_S=330" >&2; exit 2; }
ALL_S=$(( 10#$ALL_S ))  # 0330 is 330 seconds, not octal
for v in ${STEP_LIMITS:-}; do
  [[ -z "${!v:-}" || "${!v}" =~ ^[0-9]+$ ]] || { echo "$v=${!v}: pass whole seconds" >&2; exit 2; }
done
limit() {
  local left=$(( ALL_S - SECONDS )) s="$2"
  (( left < s )) && s=$left
  if (( s < 15 )); then echo "$1: skipped, ${left} s left of ALL_S=$ALL_S" >&2; return 1; fi
  echo "$s"
}
PY="${PY:-python3}"
# minilm32: .nerdata/minilm16 (bench/device_prepare_ner.sh: the packaged MiniLM in float16, to fit a call's 64 MiB)
# back to float32 in /tmp/minilm, with its config and tokenizer
minilm32() {
  timeout 60 "$PY" - <<'PY' || { echo "casting .nerdata/minilm16 to float32 failed or ran out of time" >&2; return 1; }
import os, shutil
from safetensors.torch import load_file, save_file
os.makedirs("/tmp/minilm", exist_ok=True)
for f in os.listdir(".nerdata/minilm16"):
    if f != "model.safetensors":
        shutil.copy(f".nerdata/minilm16/{f}", "/tmp/minilm/")
save_file({k: v.float() for k, v in load_file(".nerdata/minilm16/model.safetensors").items()},
          "/tmp/minilm/model.safetensors")
PY
}
[[ -n "${SKIP_INSTALL:-}" ]] || \
  timeout 120 "$PY" -m pip install -q --no-index --no-deps --no-compile --upgrade --target /tmp/site .whl/*.whl || exit 1
export PYTHONPATH="/tmp/site:$PWD" HF_HUB_OFFLINE=1 PYTHONUNBUFFERED=1
OUT="${OUT:-runs/device}"
mkdir -p "$OUT"
{
  nvidia-smi --query-gpu=name,memory.total,driver_version,clocks.max.sm --format=csv
  timeout 60 "$PY" -c "import importlib.metadata as md, torch, transformers, fastai, bertlearn
try: tokie = md.version('tokie')
except md.PackageNotFoundError: tokie = 'missing (bench/device_prepare.sh fetches it)'
print('torch', torch.__version__, 'transformers', transformers.__version__, 'fastai', fastai.__version__,
      'bertlearn', bertlearn.__version__, 'tokie', tokie)"
} > "$OUT/env.txt" 2>&1
cat "$OUT/env.txt"
