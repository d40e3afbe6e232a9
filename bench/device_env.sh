# Sourced by the scripts run ON the GPU machine (bench/device_run.sh, bench/device_ner.sh): installs the wheels
# carried in .whl (SKIP_INSTALL=1 for a dry run where everything is installed, e.g. PY=.venv/bin/python), sets the
# environment, makes $OUT and writes the machine and versions to $OUT/env.txt. The caller exports BERTLEARN_DATA.
PY="${PY:-python3}"
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
