"""Serving throughput: `bertlearn serve` against a naive server that calls `transformers.pipeline` once per request,
on the same saved model, at 1, 8, 32 and 64 concurrent clients; and the offline predictor on the same texts.

    python bench/serve_throughput.py [--model runs/demo/model_out] [--requests 20] [--clients 1,8,32,64]

Each client sends one text per request (SST-2 validation sentences), one request after another. Both servers run in
their own process with uvicorn, one worker, on this machine (so the clients share its cores with the server, as a
load test on one box does); each level gets an untimed round of one request per client first. Prints texts/s and
p50/p99 latency per level, the offline `predict_batch` texts/s, and the machine.
"""

from __future__ import annotations

import argparse
import os
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
    pipe = pipeline("text-classification", model=sys.argv[1], device="cpu", top_k=None)
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


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start(cmd: list[str], port: int) -> subprocess.Popen:
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=open(os.devnull, "w"))
    deadline = time.time() + 180
    while time.time() < deadline:
        if proc.poll() is not None:
            sys.exit(f"server exited with code {proc.returncode} (run its command alone to see why)")
        try:
            if httpx.get(f"http://127.0.0.1:{port}/health", timeout=2).status_code == 200:
                return proc
        except httpx.HTTPError:
            pass
        time.sleep(0.5)
    proc.kill()
    sys.exit("server did not start")


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


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", type=Path, default=None, help="a saved classifier folder (default: train one)")
    ap.add_argument("--requests", type=int, default=20, help="requests per client per level")
    ap.add_argument("--clients", default="1,8,32,64")
    ap.add_argument("--max-wait-ms", default="0", help="bertlearn serve's --max-wait-ms")
    args = ap.parse_args()
    texts = pd.read_csv(DATA_ROOT / "sst2" / "valid.csv")["text"].tolist()
    model = args.model
    if model is None and Path("runs/serve_bench/model_out/config.json").is_file():
        model = Path("runs/serve_bench/model_out")  # the model an earlier run trained
    if model is None:  # a quick MiniLM sentiment model, so the bench needs nothing but the data
        from bertlearn import BertDataBunch, BertLearner
        train = pd.read_csv(DATA_ROOT / "sst2" / "train.csv").sample(n=2000, random_state=0)
        db = BertDataBunch.from_df(train, train.head(200), None, bs=32, maxlen=64, seed=0, device="cpu")
        learner = BertLearner.from_pretrained_model(db, None, device="cpu", seed=0,
                                                    output_dir="runs/serve_bench")
        with learner.no_bar(), learner.no_logging():
            learner.fit(1, lr=1e-4)
        model = learner.save_model()
    from bertlearn import load_predictor
    offline = load_predictor(model, device="cpu")
    offline.predict_batch(texts[:64])
    t0 = time.perf_counter()
    offline.predict_batch(texts)
    offline_rate = len(texts) / (time.perf_counter() - t0)
    levels = [int(c) for c in args.clients.split(",")]
    rows = {}
    with tempfile.NamedTemporaryFile("w", suffix=".py", delete=False) as f:
        f.write(NAIVE)
    for name, cmd in (("bertlearn serve", [sys.executable, "-m", "bertlearn", "serve", str(model), "--device", "cpu",
                                           "--log-level", "warning", "--max-wait-ms", args.max_wait_ms, "--port"]),
                      ("naive pipeline server", [sys.executable, f.name, str(model)])):
        port = free_port()
        proc = start(cmd + [str(port)], port)
        try:
            rows[name] = {c: load(f"http://127.0.0.1:{port}/predict", texts, c, args.requests) for c in levels}
        finally:
            proc.terminate()
            proc.wait(60)
    print(f"\n{args.requests} one-text requests per client, SST-2 validation sentences, model {model}, "
          f"bertlearn serve --max-wait-ms {args.max_wait_ms}\n")
    print("| clients | " + " | ".join(f"{n}: texts/s, p50 / p99 ms" for n in rows) + " | bertlearn / naive |")
    print("|---|" + "---|" * (len(rows) + 1))
    for c in levels:
        ours, naive = rows["bertlearn serve"][c], rows["naive pipeline server"][c]
        cells = " | ".join(f"{r[c][0]:,.1f}, {r[c][1]:,.0f} / {r[c][2]:,.0f}" for r in rows.values())
        print(f"| {c} | {cells} | {ours[0] / naive[0]:.2f}x |")
    best = max(r[0] for r in rows["bertlearn serve"].values())
    print(f"\noffline predict_batch on all {len(texts)} texts: {offline_rate:,.1f} texts/s; bertlearn serve's best "
          f"level: {best:,.1f} texts/s ({best / offline_rate:.2f}x offline)")
    print(f"machine: {describe()}")


if __name__ == "__main__":
    main()
