"""sdpa against eager attention in a MiniLM training step: forward + backward, train mode (attention dropout on),
bs 16, bf16 autocast and float32, the two models alternated; the median of 3 steps after one untimed step.

    .venv/bin/python bench/attention_check.py [--lengths 128 512] [--eval]

Why it exists: bench/scaling.py train found a fast-bert-style loop (eager attention) 1.5x bertlearn's bf16 fit
(sdpa) on long texts on a 2-core CPU; this isolates the attention implementation.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import torch
from transformers import AutoModelForSequenceClassification

sys.path.insert(0, str(Path(__file__).resolve().parent))
from machine import describe  # noqa: E402

from bertlearn.model import default_model_path  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--lengths", type=int, nargs="+", default=[128, 512])
    ap.add_argument("--eval", action="store_true", help="eval mode (no attention dropout), still with backward")
    args = ap.parse_args()
    torch.manual_seed(0)
    print("| L | precision | sdpa s/step | eager s/step | eager vs sdpa |\n|---|---|---|---|---|")
    for length in args.lengths:
        ids = torch.randint(1000, 20000, (16, length))
        mask, y = torch.ones_like(ids), torch.randint(0, 2, (16,))
        models = {a: AutoModelForSequenceClassification.from_pretrained(default_model_path(), num_labels=2,
                                                                         attn_implementation=a).train(not args.eval)
                  for a in ("sdpa", "eager")}
        for bf16 in (True, False):
            times: dict[str, list[float]] = {a: [] for a in models}
            for rep in range(4):
                for a, m in models.items():
                    t0 = time.perf_counter()
                    with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
                        out = m(input_ids=ids, attention_mask=mask, labels=y)
                    out.loss.backward()
                    m.zero_grad()
                    if rep:  # the first step of each is its warm-up
                        times[a].append(time.perf_counter() - t0)
            s, e = statistics.median(times["sdpa"]), statistics.median(times["eager"])
            print(f"| {length} | {'bf16' if bf16 else 'fp32'} | {s:.3f} | {e:.3f} | {s / e:.2f}x |", flush=True)
    print(f"machine: {describe()}")


if __name__ == "__main__":
    main()
