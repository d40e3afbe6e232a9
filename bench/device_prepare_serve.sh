#!/usr/bin/env bash
# Run HERE before a device call that measures `bertlearn serve` (after bench/device_prepare.sh and
# bench/device_prepare_ner.sh: the serve step takes SST-2 from .devdata and MiniLM from .nerdata). Adds to .whl the
# serve stack the GPU machine's image lacks (FastAPI and its needs, uvicorn, httptools; the image has uvloop,
# anyio, h11, httpx), at the versions this venv runs (with annotated-doc, click and typing-extensions, which the image
# has at versions not known here), and fails if one did not come, and puts wrk (the load generator) with its LuaJIT library into
# the git-excluded .wrk/. Then: carry [".whl", ".nerdata", ".devdata/sst2", ".wrk"], `bash bench/device_serve.sh`.
set -euo pipefail
cd "$(dirname "$0")/.."
PY="${PY:-.venv/bin/python}"
pins=$("$PY" - <<'PY'
import importlib.metadata as md
names = ["fastapi", "starlette", "pydantic", "pydantic-core", "annotated-types", "typing-inspection",
         "opentelemetry-api", "annotated-doc", "typing-extensions", "uvicorn", "click", "httptools"]
print(" ".join(f"{n}=={md.version(n)}" for n in names))
PY
)
# shellcheck disable=SC2086
python3 -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
  --platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 \
  --platform any -d .whl $pins 2>&1 | grep -v WARNING || true
for pin in $pins; do  # a wheel missing here is a failed device call later: say it now
  name=${pin%%==*}; version=${pin#*==}
  compgen -G ".whl/${name//-/_}-${version}-*" > /dev/null \
    || { echo "no wheel of $pin in .whl (pip download failed)" >&2; exit 1; }
done
grep -qx '/.wrk/' .git/info/exclude 2>/dev/null || echo '/.wrk/' >> .git/info/exclude
wrk_bin=$(command -v wrk) || { echo "wrk is not installed here: apt-get install -y wrk" >&2; exit 1; }
mkdir -p .wrk/lib
cp "$wrk_bin" .wrk/wrk.bin
cp -L "$(ldd "$wrk_bin" | awk '/libluajit/ {print $3}')" .wrk/lib/
# a wrapper named wrk: the carried LuaJIT for wrk alone (the image's own libraries stay as they are)
cat > .wrk/wrk <<'SH'
#!/bin/sh
d=$(dirname "$0")
LD_LIBRARY_PATH="$d/lib${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}" exec "$d/wrk.bin" "$@"
SH
chmod +x .wrk/wrk
.wrk/wrk --version | head -1 || true
ls .whl | grep -E "fastapi|starlette|pydantic|annotated_types|typing_inspection|opentelemetry|uvicorn|httptools"
du -sh .whl .wrk .nerdata .devdata/sst2
