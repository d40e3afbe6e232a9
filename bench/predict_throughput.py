"""Prediction throughput: transformers.pipeline vs bertlearn's PyTorch and ONNX Runtime predictors, one run.

    python bench/predict_throughput.py [--n 3000] [--data sentiment140|sst2]

Same model (the packaged all-MiniLM-L6-v2 with a 2-label head, saved once), same texts, same machine.
The pipeline runs at batch_size 1 and 32 (its best on this CPU); bertlearn's predictors batch by sorted
length. Prints a markdown table (texts/s, ratio to the best pipeline) and the machine.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import pandas as pd
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from machine import describe  # noqa: E402

from bertlearn import BertClassificationPredictor, OnnxPredictor, export_onnx, load_model, load_tokenizer  # noqa: E402
from bertlearn.data import TextEncoder  # noqa: E402

DATA = Path(__file__).resolve().parents[2] / "shared" / "data"


def texts_for(name: str, n: int) -> list[str]:
    if name == "sst2":
        df = pd.read_csv(DATA / "sst2" / "train.csv")
        df = df[df["text"].str.split().str.len() >= 5]  # whole-sentence-like rows, not single phrases
    else:
        df = pd.read_csv(DATA / "sentiment140" / "train_100k.csv")
    return df["text"].sample(n=n, random_state=0).astype(str).tolist()


def timed(fn, texts: list[str]) -> tuple[float, object]:
    fn(texts[:64])  # warm-up: allocations, thread pools, lazy inits
    t0 = time.perf_counter()
    out = fn(texts)
    return len(texts) / (time.perf_counter() - t0), out


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--n", type=int, default=3000)
    ap.add_argument("--data", default="sentiment140", choices=["sentiment140", "sst2"])
    ap.add_argument("--bs", type=int, default=64)
    args = ap.parse_args()
    texts = texts_for(args.data, args.n)
    device = "cuda" if torch.cuda.is_available() else "cpu"

    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp) / "model"
        model, _ = load_model(None, labels=["negative", "positive"])
        tok = load_tokenizer(None)
        model.save_pretrained(folder)
        tok.save_pretrained(folder)
        enc = TextEncoder(tok, 128, ["negative", "positive"])
        export_onnx(model, enc, Path(tmp) / "onnx")
        (folder / "bertlearn.json").write_text(
            '{"maxlen": 128, "labels": ["negative", "positive"], "problem_type": "single_label_classification"}')

        from transformers import pipeline
        rows = []
        clf = pipeline("text-classification", model=str(folder), device=0 if device == "cuda" else -1)
        for bs in (1, 32):
            sub = texts if bs > 1 else texts[: min(len(texts), 1000)]  # batch 1 is slow: a subset gives its rate
            rate, _ = timed(lambda t, bs=bs: clf(t, batch_size=bs, truncation=True, max_length=128), sub)
            rows.append((f"transformers.pipeline (batch_size={bs})", rate))
        torch_pred = BertClassificationPredictor(folder, device=device, bs=args.bs)
        rate, ref = timed(torch_pred.predict_logits, texts)
        rows.append((f"BertClassificationPredictor (PyTorch, bs={args.bs})", rate))
        onnx_pred = OnnxPredictor(Path(tmp) / "onnx", bs=args.bs)
        rate, got = timed(onnx_pred.predict_logits, texts)
        rows.append((f"OnnxPredictor (ONNX Runtime, bs={args.bs})", rate))
        diff = float((got - ref).abs().max())

    best_pipe = max(r for name, r in rows if name.startswith("transformers"))
    print(f"\n{len(texts)} {args.data} texts, all-MiniLM-L6-v2, maxlen 128, device {device}\n")
    print("| predictor | texts/s | vs best pipeline |\n|---|---|---|")
    for name, rate in rows:
        print(f"| {name} | {rate:,.0f} | {rate / best_pipe:.2f}x |")
    print(f"\nmax |logit difference| ONNX vs PyTorch: {diff:.2e}")
    print(f"machine: {describe()}")


if __name__ == "__main__":
    main()
