"""ONNX Runtime on CPU: the exported graph as is, after onnxruntime.transformers' BERT fusions, and PyTorch fp32.

    python bench/onnx_fusions.py [--n 3000]

Same model (the packaged MiniLM with a 2-label head), same length-sorted batches of 64 Sentiment140 tweets.
Prints texts/s per runtime, the fusions the optimizer found, the largest logit difference, and the machine.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from machine import DATA_ROOT, describe  # noqa: E402

from bertlearn import export_onnx, load_model, load_tokenizer  # noqa: E402
from bertlearn.data import BertDataLoader, TextEncoder  # noqa: E402

DATA = DATA_ROOT / "sentiment140" / "train_100k.csv"


def main() -> None:
    import onnxruntime as ort
    from onnxruntime.transformers.optimizer import optimize_model

    ap = argparse.ArgumentParser()
    ap.add_argument("--n", type=int, default=3000)
    args = ap.parse_args()
    texts = pd.read_csv(DATA)["text"].sample(n=args.n, random_state=0).astype(str).tolist()
    model, _ = load_model(None, labels=["negative", "positive"])
    model.eval()
    enc = TextEncoder(load_tokenizer(None), 128, ["negative", "positive"])
    dl = BertDataLoader(enc.dataset(texts), bs=64)
    batches = [(b[0].numpy(), b[1].numpy()) for b in dl]

    def timed(sess):
        names = [i.name for i in sess.get_inputs()]
        run = lambda: [sess.run(None, dict(zip(names, b)))[0] for b in batches]  # noqa: E731
        run()  # warm-up
        t0 = time.perf_counter()
        out = run()
        return len(texts) / (time.perf_counter() - t0), np.concatenate(out)

    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        src = export_onnx(model, enc, Path(tmp) / "onnx")
        src = src if src.suffix == ".onnx" else next(Path(src).glob("*.onnx"))
        rate, ref = timed(ort.InferenceSession(str(src), providers=["CPUExecutionProvider"]))
        rows.append(("ONNX Runtime, exported graph", rate, 0.0))
        cfg = model.config
        opt = optimize_model(str(src), model_type="bert", num_heads=cfg.num_attention_heads, hidden_size=cfg.hidden_size)
        fused = {k: v for k, v in opt.get_fused_operator_statistics().items() if v}
        opt.save_model_to_file(str(Path(tmp) / "fused.onnx"))
        rate, got = timed(ort.InferenceSession(str(Path(tmp) / "fused.onnx"), providers=["CPUExecutionProvider"]))
        rows.append(("ONNX Runtime, after onnxruntime.transformers BERT fusions", rate, float(np.abs(got - ref).max())))
    with torch.inference_mode():
        for b in dl:
            model(input_ids=b[0], attention_mask=b[1])
        t0 = time.perf_counter()
        for b in dl:
            model(input_ids=b[0], attention_mask=b[1])
        rows.append(("PyTorch fp32 (what BertClassificationPredictor runs)", len(texts) / (time.perf_counter() - t0), 0.0))

    print(f"\n{len(texts):,} Sentiment140 tweets, all-MiniLM-L6-v2, bs 64 length-sorted, maxlen 128\n")
    print("| runtime | texts/s | max logit difference vs exported graph |\n|---|---|---|")
    for name, rate, diff in rows:
        print(f"| {name} | {rate:,.0f} | {diff:.1e} |")
    print(f"\nfusions found: {fused}")
    print(f"machine: {describe()}")


if __name__ == "__main__":
    main()
