"""Peak memory versus file size: on-disk token store against reading the CSV into memory.

    python bench/streaming.py [--rows 100000 1000000 2000000] [--model DIR] [--steps 30]

For each size, a CSV is made by resampling sentiment140/train_100k.csv (with replacement), then a fresh
child process per mode builds the BertDataBunch (`from_csv(on_disk=True)` or the in-memory `from_csv`) and trains
`--steps` steps; with `--predict`, for the on-disk mode, another fresh child runs `bertlearn predict` over the whole
file in chunks, as a user would after training. Each child reports its peak RSS (getrusage). `--model` (default:
the packaged MiniLM) sets tokenizer and model.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd

sys.path.insert(0, str(Path(__file__).resolve().parent))
from machine import DATA_ROOT, describe  # noqa: E402  (torch-free import)

DATA = DATA_ROOT / "sentiment140"


def make_csv(path: Path, rows: int, seed: int = 0) -> None:
    """`rows` rows resampled from train_100k.csv, written in chunks (this process stays small too)."""
    src = pd.read_csv(DATA / "train_100k.csv")
    rng = np.random.default_rng(seed)
    with open(path, "w", newline="", encoding="utf-8") as fh:
        for start in range(0, rows, 200_000):
            n = min(200_000, rows - start)
            src.iloc[rng.integers(0, len(src), n)].to_csv(fh, header=start == 0, index=False)


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def child(args: argparse.Namespace) -> None:
    folder = Path(args.folder)
    if args.mode == "predict":
        from bertlearn.cli import main
        t0 = time.perf_counter()
        main(["predict", "--model", str(folder / "model"), "--input", str(folder / "train.csv"), "--output",
              str(folder / "pred.csv"), "--chunk-size", "20000", "--bs", "256"])
        out = {"predict_s": time.perf_counter() - t0,
               "predict_rows": sum(1 for _ in open(folder / "pred.csv", encoding="utf-8")) - 1,
               "peak_rss_mb": peak_rss_mb()}
        print("CHILD " + json.dumps(out), flush=True)
        return
    from fastai.callback.core import CancelFitException, Callback

    from bertlearn import BertDataBunch, BertLearner

    class Stop(Callback):
        def after_batch(self):
            if self.training and self.train_iter >= args.steps:
                raise CancelFitException()

    t0 = time.perf_counter()
    db = BertDataBunch.from_csv(folder, args.model, train_file="train.csv", val_file="val.csv", bs=32, maxlen=64,
                                on_disk=args.mode == "disk", no_cache=args.mode != "disk", label_file=None)
    build = time.perf_counter() - t0
    rss_build = peak_rss_mb()
    learner = BertLearner.from_pretrained_model(db, args.model, None, "cpu", None, output_dir=folder / "out")
    t0 = time.perf_counter()
    with learner.no_bar(), learner.no_logging():
        learner.fit(1, lr=1e-4, cbs=[Stop()], validate=False)
    train = time.perf_counter() - t0
    out = {"mode": args.mode, "build_s": build, "rss_after_build_mb": rss_build, "train_s": train,
           "rss_after_train_mb": peak_rss_mb()}
    if args.mode == "disk" and args.predict:
        learner.save_model(folder / "model")  # for the predict child
    out["peak_rss_mb"] = peak_rss_mb()
    print("CHILD " + json.dumps(out), flush=True)


def _child(*args: str) -> dict:
    cmd = [sys.executable, __file__, "--child", *args]
    out = subprocess.run(cmd, capture_output=True, text=True, env={**os.environ, "TOKENIZERS_PARALLELISM": "false"})
    line = next((l for l in out.stdout.splitlines() if l.startswith("CHILD ")), None)
    if line is None:
        raise RuntimeError(out.stderr[-3000:])
    return json.loads(line[6:])


def run(folder: Path, mode: str, model: str | None, steps: int, predict: bool) -> dict:
    """Build and train in one fresh process; with `predict` (on-disk mode), `bertlearn predict` in another.

    Returns the first child's report, plus `predict_s`, `predict_rows` and `predict_peak_rss_mb` from the second.
    """
    args = ["--mode", mode, "--folder", str(folder), "--steps", str(steps)] + (["--model", model] if model else [])
    out = _child(*args, *(["--predict"] if predict else []))
    if predict and mode == "disk":
        pred = _child("--mode", "predict", "--folder", str(folder))
        out.update(predict_s=pred["predict_s"], predict_rows=pred["predict_rows"],
                   predict_peak_rss_mb=pred["peak_rss_mb"])
    return out


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--rows", type=int, nargs="+", default=[100_000, 1_000_000, 2_000_000])
    ap.add_argument("--model", default=None)
    ap.add_argument("--steps", type=int, default=30)
    ap.add_argument("--modes", nargs="+", default=["disk", "memory"])
    ap.add_argument("--predict", action="store_true", help="also stream `bertlearn predict` over the file")
    ap.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    ap.add_argument("--mode", default="disk", help=argparse.SUPPRESS)
    ap.add_argument("--folder", default=None, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child:
        child(args)
        return
    rows_out = []
    with tempfile.TemporaryDirectory() as tmp:
        for n in args.rows:
            folder = Path(tmp) / f"rows{n}"
            folder.mkdir()
            make_csv(folder / "train.csv", n)
            make_csv(folder / "val.csv", 2000, seed=1)
            size = (folder / "train.csv").stat().st_size / 2**20
            for mode in args.modes:
                r = run(folder, mode, args.model, args.steps, args.predict)
                rows_out.append((n, size, r))
                print(f"RESULT | {n:,} rows | {size:.0f} MB | {json.dumps(r)}", flush=True)
    print(f"\n| rows | CSV MB | mode | build s | peak RSS after build MB | after {args.steps} train steps MB | "
          "predict whole file (s, peak RSS MB) |\n|---|---|---|---|---|---|---|")
    for n, size, r in rows_out:
        pred = f"{r['predict_s']:.0f} s, {r['predict_peak_rss_mb']:.0f}" if "predict_s" in r else "-"
        print(f"| {n:,} | {size:.0f} | {r['mode']} | {r['build_s']:.1f} | {r['rss_after_build_mb']:.0f} | "
              f"{r['rss_after_train_mb']:.0f} | {pred} |")
    print(f"machine: {describe()}")


if __name__ == "__main__":
    main()
