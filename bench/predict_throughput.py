"""Prediction throughput: transformers.pipeline vs bertlearn's PyTorch and ONNX Runtime predictors, one run.

    python bench/predict_throughput.py [--n 10000] [--data sentiment140|sst2] [--model minilm|bert-base]
        [--pipeline-bs 1,8,32,64] [--no-compile] [--no-onnx]

Same model, same texts, same machine: the packaged all-MiniLM-L6-v2 fine-tuned for one epoch on 2,000
Sentiment140 tweets (so its outputs mean something when precisions are compared), saved once. The pipeline
runs at batch_size 1 (on 1,000 texts), 8, 32 and 64, and the best is the reference; bertlearn's predictors batch
by sorted length, in float32 and in bf16 autocast (`precision="bf16"`, native on GPUs and AMX CPUs); the pipeline
also runs in bfloat16 at batch_size 32, as the same-precision peer. The predictors run once more with
`compile=True` (torch.compile) and, on a GPU, with `cuda_graphs=True` (one graph per width bucket): the first
call's extra time (compilation, captures) is reported.
Prints a markdown table (texts/s, ratio to the best pipeline, agreement with float32) and the machine.
"""

from __future__ import annotations

import argparse
import importlib.util
import os
import sys
import tempfile
import time
from pathlib import Path

import pandas as pd
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from machine import DATA_ROOT as DATA, bench_tokenizer, describe, model_folder  # noqa: E402

from bertlearn import BertClassificationPredictor, BertDataBunch, BertLearner, OnnxPredictor, export_onnx  # noqa: E402



def texts_for(name: str, n: int) -> list[str]:
    if name == "sst2":
        df = pd.read_csv(DATA / "sst2" / "train.csv")
        df = df[df["text"].str.split().str.len() >= 5]  # whole-sentence-like rows, not single phrases
    else:
        df = pd.read_csv(DATA / "sentiment140" / "train_100k.csv")
    return df["text"].sample(n=n, random_state=0).astype(str).tolist()


def timed(fn, texts: list[str]) -> tuple[float, object, float]:
    """texts/s over `texts`, the outputs, and the seconds of the warm-up call (lazy inits, compilation)."""
    t0 = time.perf_counter()
    fn(texts[:64])  # warm-up: allocations, thread pools, lazy inits
    warm = time.perf_counter() - t0
    t0 = time.perf_counter()
    out = fn(texts)
    return len(texts) / (time.perf_counter() - t0), out, warm


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--n", type=int, default=10_000)
    ap.add_argument("--data", default="sentiment140", choices=["sentiment140", "sst2"])
    ap.add_argument("--bs", type=int, default=64)
    ap.add_argument("--model", default="minilm", choices=["minilm", "bert-base"],
                    help="the packaged MiniLM, or a random bert-base-uncased-shaped encoder (the GPU speed point)")
    ap.add_argument("--pipeline-bs", default="1,8,32,64", help="the pipeline's batch sizes (comma-separated)")
    ap.add_argument("--no-compile", action="store_true", help="skip the compile=True rows")
    ap.add_argument("--no-onnx", action="store_true", help="skip the ONNX Runtime row")
    args = ap.parse_args()
    # a fresh compiler cache, so compile=True rows pay the cold compilation a first run on a machine pays
    # (Inductor's on-disk cache makes repeated runs faster)
    os.environ["TORCHINDUCTOR_CACHE_DIR"] = tempfile.mkdtemp(prefix="inductor-")
    texts = texts_for(args.data, args.n)
    device = "cuda" if torch.cuda.is_available() else "cpu"

    with tempfile.TemporaryDirectory() as tmp:
        train = pd.read_csv(DATA / "sentiment140" / "train_100k.csv").sample(n=2000, random_state=1)
        db = BertDataBunch.from_df(train, train.head(200), bench_tokenizer(), bs=32, maxlen=128, device=device)
        learner = BertLearner.from_pretrained_model(db, str(model_folder(args.model, Path(tmp))), None, device, None,
                                                    output_dir=tmp)
        with learner.no_bar(), learner.no_logging():
            learner.fit(1, lr=5e-5)
        folder = learner.save_model(Path(tmp) / "model")
        # ONNX Runtime is the CPU portability path; the GPU machine has no onnx packages
        with_onnx = not args.no_onnx and all(importlib.util.find_spec(m) for m in ("onnx", "onnxscript", "onnxruntime"))
        if with_onnx:
            export_onnx(learner.model, db.encoder, Path(tmp) / "onnx")

        from transformers import pipeline
        rows = []
        clf = pipeline("text-classification", model=str(folder), device=0 if device == "cuda" else -1)
        for bs in (int(b) for b in args.pipeline_bs.split(",")):
            sub = texts if bs > 1 else texts[: min(len(texts), 1000)]  # batch 1 is slow: a subset gives its rate
            rate, _, warm = timed(lambda t, bs=bs: clf(t, batch_size=bs, truncation=True, max_length=128), sub)
            rows.append((f"transformers.pipeline (batch_size={bs})", rate, None, warm))
        # the pipeline in bf16 too, so the bf16 predictor has a same-precision peer
        clf16 = pipeline("text-classification", model=str(folder), device=0 if device == "cuda" else -1,
                         dtype=torch.bfloat16)
        rate, _, warm = timed(lambda t: clf16(t, batch_size=32, truncation=True, max_length=128), texts)
        rows.append(("transformers.pipeline (batch_size=32, dtype=bfloat16)", rate, None, warm))
        ref = None
        variants = [("", {"compile": False, "cuda_graphs": False})]
        if device == "cuda":
            variants.append((", cuda_graphs=True", {"cuda_graphs": True}))
        if not args.no_compile:
            variants.append((", compile=True", {"compile": True, "cuda_graphs": False}))
        for suffix, options in variants:
            for precision in ("fp32", "bf16"):
                pred = BertClassificationPredictor(folder, device=device, bs=args.bs, precision=precision, **options)
                rate, got, warm = timed(pred.predict_logits, texts)
                if pred.graphs is not None:
                    # the timed call above captured the buckets the warm-up did not meet: time a second call too
                    t0 = time.perf_counter()
                    pred.predict_logits(texts)
                    steady = len(texts) / (time.perf_counter() - t0)
                    warm += len(texts) / rate - len(texts) / steady  # the captures' share of the first call
                    rate = steady
                ref = got if ref is None else ref
                rows.append((f"BertClassificationPredictor (PyTorch, bs={args.bs}, precision={precision!r}{suffix})",
                             rate, got, warm))
        if with_onnx:
            onnx_pred = OnnxPredictor(Path(tmp) / "onnx", bs=args.bs)
            rate, got, warm = timed(onnx_pred.predict_logits, texts)
            rows.append((f"OnnxPredictor (ONNX Runtime fp32, bs={args.bs})", rate, got, warm))

    best_pipe = max(r for name, r, _, _ in rows if name.startswith("transformers") and "bfloat16" not in name)
    name = "all-MiniLM-L6-v2" if args.model == "minilm" else "random bert-base"
    print(f"\n{len(texts):,} {args.data} texts, {name} fine-tuned 1 epoch, maxlen 128, device {device}\n")
    print("| predictor | texts/s | vs best pipeline | same label as fp32 | max prob. difference vs fp32 | "
          "first call s |")
    print("|---|---|---|---|---|---|")
    p_ref = ref.softmax(-1)
    for name, rate, got, warm in rows:
        same = f"{float((got.argmax(-1) == ref.argmax(-1)).float().mean()):.2%}" if got is not None else "-"
        diff = f"{float((got.softmax(-1) - p_ref).abs().max()):.1e}" if got is not None else "-"
        print(f"| {name} | {rate:,.0f} | {rate / best_pipe:.2f}x | {same} | {diff} | {warm:.1f} |")
    first = dict((n, w) for n, _, _, w in rows)
    for name, r_e, _, _ in rows:
        twin = name.replace(")", ", compile=True)")
        if twin in first:
            r_c = next(r for n, r, _, _ in rows if n == twin)
            cost, saved = first[twin] - first[name], 1 / r_e - 1 / r_c
            even = f"pays back after {cost / saved:,.0f} texts" if saved > 0 else "never pays back"
            print(f"\n{twin}: {r_c / r_e:.2f}x eager, one-time compilation {cost:.0f} s, {even}")
    rate = dict((n, r) for n, r, _, _ in rows)
    bf16_pred = next(r for n, r in rate.items() if "precision='bf16'" in n)
    print(f"\nbf16 predictor vs bf16 pipeline: {bf16_pred / rate['transformers.pipeline (batch_size=32, dtype=bfloat16)']:.2f}x"
          " (the reference above is the pipeline's best at its default float32)")
    print(f"machine: {describe()}")


if __name__ == "__main__":
    main()
