#!/usr/bin/env bash
# Run ON the GPU machine, carry [".whl", ".nerdata", ".devdata/sst2", ".wrk"] (bench/device_prepare.sh,
# bench/device_prepare_ner.sh, then bench/device_prepare_serve.sh): `bertlearn serve` against the naive pipeline
# server (bench/serve_throughput.py, wrk clients, one-text SST-2 requests at 1, 8, 32 and 64 connections), tables
# in $OUT:
#   cpu: both servers on CPUs 0-1 with 2 torch threads, wrk on CPUs 2-15 (the 2-core box's server without the load
#        generator on its cores: what issue 22's 3x-at-32-clients goal left open there), offline predictor on 0-1;
#   gpu: both servers on the GPU, on CPUs 0-3, wrk on 4-15; bertlearn serve at its default precision (the folder's:
#        fp32, as the naive server runs) and in bf16.
# First a MiniLM sentiment model (2,000 SST-2 sentences, one epoch) is trained on the GPU and saved; both steps
# serve it. `http`, not in the default steps (a later call with what is left: `bash bench/device_serve.sh http`),
# serves an untrained 2-layer BERT on CPUs 0-3: the HTTP work's ceiling there, no model cost to speak of.
# Time: ALL_S (default 300) bounds the call, as in bench/device_run.sh; step limits MODEL_S 60, CPU_S 110, GPU_S 130,
# HTTP_S 60 (estimates, not yet timed on a GPU; each step prints the seconds it took); call with timeout_s =
# ALL_S + 30. Steps: `bash bench/device_serve.sh [cpu,gpu,http]` (default cpu,gpu). SECONDS_PER_LEVEL (default
# 5) is wrk's timed run per level. A dry run here (no GPU, 2 cores): SKIP_INSTALL=1 PY=.venv/bin/python
# OUT=runs/device-dry GPU=cpu CPU_PINS="--server-cpus 0 --client-cpus 1" GPU_PINS="$CPU_PINS" bash bench/device_serve.sh.
# Without the carried wrk working there, the clients are Python threads (httpx).
set -uo pipefail
SECONDS=0
STEP_LIMITS="MODEL_S CPU_S GPU_S HTTP_S"
steps="${1:-cpu,gpu}"
for step in ${steps//,/ }; do
  case "$step" in cpu|gpu|http) ;; *) echo "step $step: not one of cpu, gpu, http" >&2; exit 2 ;; esac
done
export BERTLEARN_DATA="$PWD/.devdata"
ALL_S="${ALL_S:-300}"
source "$(dirname "$0")/device_env.sh"  # checks ALL_S and the step limits, defines limit() and minilm32
timeout 60 "$PY" -c "import fastapi, uvicorn, httptools, httpx" \
  || { echo "the serve stack does not import here: bench/device_prepare_serve.sh fetches it into .whl" >&2; exit 1; }
minilm32 || exit 1
export PATH="$PWD/.wrk:$PATH"
if [[ $(wrk --version 2>&1) == wrk\ * ]]; then  # (not a pipe: it exits 1 after printing its version)
  client=(--client wrk --seconds "${SECONDS_PER_LEVEL:-5}")
else
  echo "the carried wrk does not run here: Python client threads instead" >&2
  client=(--client httpx --requests 20)
fi
wrk --version 2>&1 | head -1
nproc
bench() {  # bench NAME SECONDS ARGS...: one serve_throughput.py run, its table in $OUT/serve_NAME.txt
  local name=$1 s=$2; shift 2
  timeout "$s" "$PY" bench/serve_throughput.py --model runs/serve_bench/model_out "${client[@]}" "$@" \
    > "$OUT/serve_$name.txt" 2> "$OUT/serve_$name.err"
  echo "serve $name exit $?"; cat "$OUT/serve_$name.txt"; grep -v "^{" "$OUT/serve_$name.err" | tail -3
}
if [[ ",$steps," == *,cpu,* || ",$steps," == *,gpu,* ]]; then  # the steps that serve the trained model
  if t0=$SECONDS && s=$(limit model "${MODEL_S:-60}"); then
    timeout "$s" "$PY" bench/serve_throughput.py --train-only --device "${GPU:-cuda}" --base /tmp/minilm 2>&1 | tail -2
    echo "model: took $(( SECONDS - t0 )) s of its $s s"
  fi
  [[ -f runs/serve_bench/model_out/config.json ]] || { echo "no model was saved: nothing to serve" >&2; exit 1; }
fi
for step in ${steps//,/ }; do
  t0=$SECONDS
  if [[ $step == cpu ]] && s=$(limit cpu "${CPU_S:-110}"); then
    bench cpu "$s" --device cpu --servers "bertlearn serve,naive pipeline server" \
      ${CPU_PINS:---server-cpus 0-1 --client-cpus 2-15}
  elif [[ $step == http ]] && s=$(limit http "${HTTP_S:-60}"); then
    # the HTTP work's ceiling on these CPUs: an untrained 2-layer BERT served on CPUs 0-3, no model cost to speak of
    bench http "$s" --tiny-model --base /tmp/minilm --device cpu --servers "bertlearn serve" --clients 32,64 \
      ${GPU_PINS:---server-cpus 0-3 --client-cpus 4-15}
  elif [[ $step == gpu ]] && s=$(limit gpu "${GPU_S:-130}"); then
    bench gpu "$s" --device "${GPU:-cuda}" --servers "bertlearn serve,bertlearn serve@bf16,naive pipeline server" \
      ${GPU_PINS:---server-cpus 0-3 --client-cpus 4-15}
  fi
  echo "$step: took $(( SECONDS - t0 )) s"
done
