"""Serving throughput: `bertlearn serve` against a LitServe server around the same predictor and a naive server that
calls `transformers.pipeline` once per request, on the same saved model, at 1, 8, 32 and 64 concurrent clients; and
the offline predictor on the same texts.

    python bench/serve_throughput.py [--model runs/demo/model_out] [--requests 20] [--clients 1,8,32,64]
        [--servers "bertlearn serve,litserve,naive pipeline server"] [--client httpx|wrk] [--seconds 10]

`--device cuda` runs every server and the offline predictor on the GPU (default: cpu). A bertlearn serve name may
carry a precision after an @: "bertlearn serve@bf16" (plain: the server's default, auto: the folder's training
precision where the hardware has bf16); the offline predictor is measured once per precision the bertlearn serve
names use, and each is compared with its own.

`--server-cpus 0-1 --client-cpus 2-7` pins every server (and the offline predictor, with that many torch threads)
and the load generator to separate cores with `taskset`, for a machine with cores to spare: on a 2-core box they
share them, which is what the tables here measured. A server name may carry its batching wait after a colon:
"bertlearn serve:0" (`--max-wait-ms 0`; plain "bertlearn
serve" takes `--max-wait-ms`, default auto, the server's default), "litserve:5" (LitServe's `batch_timeout` of
5 ms; plain "litserve": 0). Ratios compare the first server listed with every other.

Each client sends one text per request (SST-2 validation sentences), one request after another: a Python thread
with httpx (`--requests` each), or a wrk connection (`--client wrk`, `--seconds` per level; wrk is C, so the load
generator takes far less of the CPU it shares with the server). Every server runs in
its own process(es), one inference worker, on this machine (so the clients share its cores with the server, as a
load test on one box does); each level gets an untimed round of one request per client first. LitServe (the
`litserve` package, installed with `bertlearn[bench]`) is the alternative stack issue 22 asked to measure: a
`LitAPI` around the same `load_predictor` and `predictions_for` as `bertlearn serve`, batching up to 64 requests
(`batch_timeout` 0 unless the name says otherwise), its HTTP server in a separate process from its inference worker
(LitServe's design). Prints texts/s and p50/p99 latency per level, the offline `predict_batch`
texts/s, and the machine.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import textwrap
import threading
import time
from pathlib import Path

import httpx
import pandas as pd

sys.path.insert(0, str(Path(__file__).resolve().parent))
from machine import DATA_ROOT, describe  # noqa: E402

NAIVE = textwrap.dedent('''
    import sys
    import uvicorn
    from fastapi import FastAPI
    from transformers import pipeline
    pipe = pipeline("text-classification", model=sys.argv[1], device=sys.argv[3], top_k=None)
    app = FastAPI()

    @app.post("/predict")
    def predict(body: dict):  # one pipeline call per request, on the request's texts
        return {"predictions": [[{"label": p["label"], "score": p["score"]} for p in ranked]
                                for ranked in pipe(body["texts"])]}

    @app.get("/health")
    def health():
        return {"status": "ready"}

    uvicorn.run(app, host="127.0.0.1", port=int(sys.argv[2]), log_level="warning")
''')


LITSERVE = textwrap.dedent('''
    import sys
    import litserve as ls
    from bertlearn import load_predictor
    from bertlearn.serve import predictions_for

    class Api(ls.LitAPI):
        def setup(self, device):
            self.predict_items = predictions_for(load_predictor(sys.argv[1], device=sys.argv[4]))
            self.predict_items(["a warm-up text"])

        def decode_request(self, request):
            return request["texts"]

        def predict(self, batch):  # one list of texts per request: predicted together, split back
            flat = self.predict_items([t for texts in batch for t in texts])
            out, i = [], 0
            for texts in batch:
                out.append(flat[i:i + len(texts)])
                i += len(texts)
            return out

        def encode_response(self, output):
            return {"predictions": output}

    if __name__ == "__main__":
        server = ls.LitServer(Api(max_batch_size=64, batch_timeout=float(sys.argv[3]) / 1000), accelerator=sys.argv[4],
                              workers_per_device=1)
        server.run(host="127.0.0.1", port=int(sys.argv[2]), log_level="warning", generate_client_file=False)
''')


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


PIN: dict[str, list[str]] = {"server": [], "client": []}  # taskset prefixes (--server-cpus, --client-cpus)


def cpu_list(spec: str) -> set[int]:
    """The CPUs of a taskset-style list such as "0-1,4"."""
    cpus: set[int] = set()
    for part in spec.split(","):
        lo, _, hi = part.partition("-")
        cpus.update(range(int(lo), int(hi or lo) + 1))
    return cpus


def start(cmd: list[str], port: int) -> subprocess.Popen:
    cmd = PIN["server"] + cmd
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    # its own session, so stopping it stops every process it started (LitServe runs its workers in children); its
    # messages go to a file, shown if it fails to start (a pipe nobody reads would block it)
    log = tempfile.NamedTemporaryFile("w+", suffix=".log", delete=False)
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=log, start_new_session=True)
    proc.log = log.name  # type: ignore[attr-defined]  (removed by stop())
    try:  # a SIGTERM while the model loads (the bench's SystemExit) must not leave the server running
        deadline = time.time() + 180
        while time.time() < deadline:
            if proc.poll() is not None:
                sys.exit(f"server exited with code {proc.returncode}: {' '.join(cmd)}\n"
                         + Path(log.name).read_text()[-3000:])
            try:
                if httpx.get(f"http://127.0.0.1:{port}/health", timeout=2).status_code == 200:
                    return proc
            except httpx.HTTPError:
                pass
            time.sleep(0.5)
        sys.exit("server did not start in 180 s")
    except BaseException:
        stop(proc)
        raise


def stop(proc: subprocess.Popen) -> None:
    """Stop a server and every process it started (its session), and remove its log."""
    try:
        os.killpg(proc.pid, signal.SIGTERM)
        proc.wait(60)
    except (ProcessLookupError, subprocess.TimeoutExpired):
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
    Path(proc.log).unlink(missing_ok=True)


def load(url: str, texts: list[str], clients: int, requests: int) -> tuple[float, float, float]:
    """texts/s, p50 and p99 latency (ms) of `clients` threads each sending `requests` one-text requests."""
    lat: list[float] = []
    lock = threading.Lock()

    def client(i: int, n: int) -> None:
        with httpx.Client(timeout=120) as c:
            for k in range(n):
                t0 = time.perf_counter()
                r = c.post(url, json={"texts": [texts[(i * 131 + k) % len(texts)]]})
                r.raise_for_status()
                with lock:
                    lat.append(time.perf_counter() - t0)

    def run(n: int) -> float:
        threads = [threading.Thread(target=client, args=(i, n)) for i in range(clients)]
        t0 = time.perf_counter()
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        return time.perf_counter() - t0

    run(1)  # warm-up round: every client's first connection and request
    lat.clear()
    secs = run(requests)
    ms = sorted(x * 1000 for x in lat)
    return clients * requests / secs, statistics.median(ms), ms[min(len(ms) - 1, int(len(ms) * 0.99))]


WRK_SCRIPT = """
wrk.method = "POST"
wrk.headers["Content-Type"] = "application/json"
local bodies = {%s}
local i = 0
request = function()
  i = i + 1
  return wrk.format(nil, nil, nil, bodies[(i %% #bodies) + 1])
end
done = function(summary, latency, requests)
  local bad = summary.errors.status + summary.errors.connect + summary.errors.read + summary.errors.write
    + summary.errors.timeout
  io.write(string.format("RESULT %%d %%d %%d %%f %%f\\n", summary.requests, summary.duration, bad,
    latency:percentile(50), latency:percentile(99)))
end
"""


def load_wrk(url: str, texts: list[str], clients: int, seconds: float) -> tuple[float, float, float]:
    """texts/s, p50 and p99 latency (ms) of `clients` wrk connections, each sending one-text requests back to back
    for `seconds` (after an untimed second at the same concurrency). wrk is C: its clients take a sliver of the
    CPU that Python client threads take, which matters when clients and server share two cores."""
    bodies = ",".join("[==[" + json.dumps({"texts": [t]}) + "]==]" for t in texts)
    with tempfile.NamedTemporaryFile("w", suffix=".lua", delete=False) as f:
        f.write(WRK_SCRIPT % bodies)
    # wrk threads: two (the load generator shares a 2-core box), or one per two of the cores it is pinned to
    cores = len(cpu_list(PIN["client"][-1])) if PIN["client"] else 4
    threads = str(min(clients, max(2, cores // 2)))

    def run(secs: float) -> list[str]:
        proc = subprocess.run([*PIN["client"], "wrk", "-t", threads, "-c", str(clients), "-d", f"{secs:g}s", "--timeout", "60s", "-s",
                               f.name, url], capture_output=True, text=True, check=True)
        return next(l for l in proc.stdout.splitlines() if l.startswith("RESULT ")).split()[1:]

    run(1)  # warm-up: connections opened, every worker busy once
    requests, micros, bad, p50, p99 = run(seconds)
    if int(bad):
        sys.exit(f"{bad} of {requests} requests failed at {clients} clients")
    return int(requests) / (int(micros) / 1e6), float(p50) / 1000, float(p99) / 1000


def tiny_model(base: str | None) -> Path:
    """A saved classifier folder around an untrained 2-layer, 32-wide BERT with `base`'s tokenizer (None: the
    packaged MiniLM's): predictions cost almost nothing, so a server's texts/s is its HTTP work's."""
    import torch
    from transformers import BertConfig, BertForSequenceClassification

    from bertlearn import BertDataBunch, BertLearner, load_tokenizer
    out = Path("runs/serve_bench_tiny")
    if (out / "model_out" / "config.json").is_file():
        return out / "model_out"
    tok = load_tokenizer(base)
    torch.manual_seed(0)
    config = BertConfig(vocab_size=tok.vocab_size, hidden_size=32, num_hidden_layers=2, num_attention_heads=4,
                        intermediate_size=37)
    BertForSequenceClassification(config).bert.save_pretrained(out / "encoder")
    tok.save_pretrained(out / "encoder")
    train = pd.read_csv(DATA_ROOT / "sst2" / "train.csv").head(64)
    db = BertDataBunch.from_df(train, train, str(out / "encoder"), bs=32, maxlen=64, seed=0, device="cpu")
    learner = BertLearner.from_pretrained_model(db, str(out / "encoder"), device="cpu", seed=0, output_dir=out)
    return learner.save_model()


def precision_of(name: str) -> str:
    """The precision a server name asks for after an @ ("bertlearn serve@fp32"); auto without one."""
    return name.partition("@")[2] or "auto"


def main() -> None:
    # `timeout` stops the bench with SIGTERM: exit through the finally blocks, which stop the running server
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", type=Path, default=None, help="a saved classifier folder (default: train one)")
    ap.add_argument("--requests", type=int, default=20, help="requests per client per level")
    ap.add_argument("--clients", default="1,8,32,64")
    ap.add_argument("--max-wait-ms", default="auto", help="bertlearn serve's --max-wait-ms (a name's :ms wins)")
    ap.add_argument("--servers", default="bertlearn serve,litserve,naive pipeline server")
    ap.add_argument("--client", default="httpx", choices=["httpx", "wrk"],
                    help="the load generator: Python threads with httpx, or wrk (C; apt-get install wrk)")
    ap.add_argument("--seconds", type=float, default=10, help="wrk: seconds per level")
    ap.add_argument("--device", default="cpu", help="where the servers and the offline predictor run (cpu, cuda)")
    ap.add_argument("--base", default=None, help="the pretrained folder the quick model starts from (default: the "
                                                 "packaged MiniLM)")
    ap.add_argument("--tiny-model", action="store_true", help="serve an untrained 2-layer, 32-wide BERT with the "
                    "base model's tokenizer (runs/serve_bench_tiny): the HTTP work's ceiling, not a model's speed")
    ap.add_argument("--train-only", action="store_true", help="train and save the quick model (runs/serve_bench), "
                                                             "then stop")
    ap.add_argument("--server-cpus", default=None, help="taskset CPU list for the servers and the offline predictor")
    ap.add_argument("--client-cpus", default=None, help="taskset CPU list for the load generator")
    ap.add_argument("--rounds", type=int, default=1, help="run every server this many times, the order reversed "
                    "every other round (ABBA: no server always first), and report each level's median")
    args = ap.parse_args()
    everywhere = os.sched_getaffinity(0)
    if args.server_cpus:
        import torch
        PIN["server"] = ["taskset", "-c", args.server_cpus]
        os.sched_setaffinity(0, cpu_list(args.server_cpus))  # the offline predictor runs on the servers' cores
        torch.set_num_threads(len(cpu_list(args.server_cpus)))
    if args.client_cpus:
        PIN["client"] = ["taskset", "-c", args.client_cpus]
    texts = pd.read_csv(DATA_ROOT / "sst2" / "valid.csv")["text"].tolist()
    model = args.model
    if args.tiny_model:  # the HTTP work's ceiling: a model whose forward pass costs almost nothing
        model = tiny_model(args.base)
    if model is None and Path("runs/serve_bench/model_out/config.json").is_file():
        model = Path("runs/serve_bench/model_out")  # the model an earlier run trained
    if model is None:  # a quick MiniLM sentiment model, so the bench needs nothing but the data
        from bertlearn import BertDataBunch, BertLearner
        train = pd.read_csv(DATA_ROOT / "sst2" / "train.csv").sample(n=2000, random_state=0)
        db = BertDataBunch.from_df(train, train.head(200), args.base, bs=32, maxlen=64, seed=0, device=args.device)
        learner = BertLearner.from_pretrained_model(db, args.base, device=args.device, seed=0,
                                                    output_dir="runs/serve_bench")
        with learner.no_bar(), learner.no_logging():
            learner.fit(1, lr=1e-4)
        model = learner.save_model()
    if args.train_only:
        print(f"model: {model}")
        return
    from bertlearn import load_predictor
    names = args.servers.split(",")
    offline_rate: dict[str, float] = {}  # per precision of the bertlearn serve names
    for precision in dict.fromkeys(precision_of(n) for n in names if n.startswith("bertlearn serve")):
        offline = load_predictor(model, device=args.device, precision=precision)
        offline.predict_batch(texts[:64])
        rates = []
        for _ in range(3):  # the median of 3 calls, the statistic docs/benchmarks.md's method gives every side
            t0 = time.perf_counter()
            offline.predict_batch(texts)
            rates.append(len(texts) / (time.perf_counter() - t0))
        offline_rate[precision] = statistics.median(rates)
        del offline
    os.sched_setaffinity(0, everywhere)  # the bench itself (and an unpinned wrk) may run anywhere again
    levels = [int(c) for c in args.clients.split(",")]
    rows = {}
    scripts = {}
    for name, code in (("naive", NAIVE), ("litserve", LITSERVE)):
        with tempfile.NamedTemporaryFile("w", suffix=".py", delete=False) as f:
            f.write(code)
        scripts[name] = f.name
    def command(name: str, port: int) -> list[str]:
        base, _, wait = name.split("@")[0].partition(":")
        if base == "bertlearn serve":
            return [sys.executable, "-m", "bertlearn", "serve", str(model), "--device", args.device, "--log-level",
                    "warning", "--max-wait-ms", wait or args.max_wait_ms, "--precision", precision_of(name),
                    "--port", str(port)]
        if base == "litserve" and "@" not in name:
            return [sys.executable, scripts["litserve"], str(model), str(port), wait or "0", args.device]
        if base == "naive pipeline server" and "@" not in name:
            return [sys.executable, scripts["naive"], str(model), str(port), args.device]
        sys.exit(f"--servers: unknown server {name!r}; use bertlearn serve[:ms][@precision], litserve[:ms], "
                 "naive pipeline server")

    def served(port: int) -> dict | None:
        # bertlearn serve counts its batches and texts (/info); the other servers have no such endpoint
        try:
            r = httpx.get(f"http://127.0.0.1:{port}/info", timeout=5)
            return r.json().get("served") if r.status_code == 200 else None
        except (httpx.HTTPError, ValueError):
            return None

    batch_sizes: dict = {}
    runs: dict = {name: {c: [] for c in levels} for name in names}
    for r in range(max(1, args.rounds)):
        # the servers in turn, the order reversed every other round: the first server of a run always met a
        # fresher machine (the doc blamed the order for a few percent at one client)
        for name in (names if r % 2 == 0 else names[::-1]):
            port = free_port()
            proc = start(command(name, port), port)
            try:
                url = f"http://127.0.0.1:{port}/predict"
                per_batch = batch_sizes.setdefault(name, {})
                for c in levels:
                    before = served(port)
                    runs[name][c].append(load_wrk(url, texts, c, args.seconds) if args.client == "wrk" else
                                         load(url, texts, c, args.requests))
                    after = served(port)
                    if before and after and after["batches"] > before["batches"]:
                        per_batch[c] = (after["texts"] - before["texts"]) / (after["batches"] - before["batches"])
            finally:
                stop(proc)
    # each level's median over the rounds (texts/s, p50, p99 each the median of its own)
    rows = {name: {c: tuple(float(statistics.median(v[i] for v in per)) for i in range(3)) for c, per in lv.items()}
            for name, lv in runs.items()}
    if args.rounds > 1:
        for name, lv in runs.items():
            print(f"{name}: texts/s per round (order reversed every other round): "
                  + "; ".join(f"{c} clients " + ", ".join(f"{v[0]:,.1f}" for v in per) for c, per in lv.items()))
    how = f"wrk, {args.seconds:g} s per level" if args.client == "wrk" else f"httpx threads, {args.requests} requests per client"
    print(f"\nclients: {how}; one-text requests, SST-2 validation sentences, model {model}, "
          f"bertlearn serve --max-wait-ms {args.max_wait_ms} (unless its name says)\n")
    ours_name = names[0]
    others = [n for n in rows if n != ours_name]
    print("| clients | " + " | ".join(f"{n}: texts/s, p50 / p99 ms" for n in rows) + " | "
          + " | ".join(f"{ours_name} / {n}" for n in others) + " |")
    print("|---|" + "---|" * (len(rows) + len(others)))
    for c in levels:
        ours = rows[ours_name][c]
        cells = " | ".join(f"{r[c][0]:,.1f}, {r[c][1]:,.0f} / {r[c][2]:,.0f}" for r in rows.values())
        ratios = " | ".join(f"{ours[0] / rows[n][c][0]:.2f}x" for n in others)
        print(f"| {c} | {cells} | {ratios} |")
    for name, per_batch in batch_sizes.items():
        if per_batch:
            print(f"{name}: texts per batch (the level's timed run and its warm-up second): "
                  + ", ".join(f"{c} clients {v:.1f}" for c, v in per_batch.items()))
    for precision, rate in offline_rate.items():
        print(f"\noffline predict_batch on all {len(texts)} texts, precision {precision}: {rate:,.1f} texts/s")
    for name in (n for n in rows if n.startswith("bertlearn serve")):
        best = max(r[0] for r in rows[name].values())
        print(f"{name}'s best level: {best:,.1f} texts/s ({best / offline_rate[precision_of(name)]:.2f}x offline "
              f"at precision {precision_of(name)})")
    pins = f"; device {args.device}; servers on CPUs {args.server_cpus or 'any'}, clients on {args.client_cpus or 'any'}"
    print(f"machine: {describe()}{pins}")


if __name__ == "__main__":
    main()
