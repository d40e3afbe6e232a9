"""fastai's overhead per training step: `fit` against a plain PyTorch loop on the same batches, on a model whose
kernels cost next to nothing, so what is left is the host time of the loop around the model.

    python bench/loop_overhead.py [--pairs 10] [--layers 12] [--bs 64] [--code PATH]

The model has bert-base's structure (12 layers, 199 parameter tensors, 14 splitter groups = 28 optimizer groups)
at width 8, so its forward, backward and optimizer step are mostly launches and Python. On a GPU the real
bert-base step is host-bound in the same way (issue 8: ~800 kernel launches a step), so milliseconds removed here
are milliseconds removed from the GPU step (for the graphed step, the loop and the eager optimizer are what is
left on the host). Both loops run in this process, interleaved epoch by epoch; the overhead is the median over
pairs of (fit epoch - plain epoch) / steps. `--code PATH` imports bertlearn from another checkout (a git worktree
of an older commit) to measure before and after a change on the same machine.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--pairs", type=int, default=10)
    ap.add_argument("--layers", type=int, default=12)
    ap.add_argument("--bs", type=int, default=64)
    ap.add_argument("--rows", type=int, default=2048)
    ap.add_argument("--code", default=None, help="import bertlearn from this checkout")
    args = ap.parse_args()
    if args.code:
        sys.path.insert(0, str(Path(args.code).resolve()))

    import pandas as pd
    import torch
    import transformers
    from transformers import BertConfig, BertForSequenceClassification

    import bertlearn
    from bertlearn import BertDataBunch, BertLearner
    from machine import DATA_ROOT, bench_tokenizer, describe
    from train_throughput import plain_loop, sync

    transformers.logging.set_verbosity_error()
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if device.type == "cpu":
        torch.set_num_threads(1)  # tiny kernels: threads would only add their own overhead to both loops
    df = pd.read_csv(DATA_ROOT / "sst2" / "train.csv").sample(n=args.rows, random_state=0)
    tok = bench_tokenizer()
    db = BertDataBunch.from_df(df, df.head(64), tok, bs=args.bs, maxlen=128, device=device, seed=0)
    config = BertConfig(vocab_size=len(tok), hidden_size=8, num_hidden_layers=args.layers, num_attention_heads=2,
                        intermediate_size=8, num_labels=2)
    with tempfile.TemporaryDirectory() as tmp:
        BertForSequenceClassification(config).save_pretrained(tmp)
        # eager on every device: the graphed step would hide the model, not the loop around it
        learner = BertLearner.from_pretrained_model(db, tmp, None, device, None, output_dir=Path(tmp) / "out",
                                                    cuda_graphs=False)
        plain = BertForSequenceClassification.from_pretrained(tmp).to(device)
    n = len(db.train)
    plain_loop(plain, list(db.train)[:4], device, 5e-5, False)
    plain_s, fit_s = [], []
    with learner.no_bar(), learner.no_logging():
        learner.fit(1, lr=5e-5, validate=False)
        for _ in range(args.pairs):
            sync(device)
            t0 = time.perf_counter()
            plain_loop(plain, db.train, device, 5e-5, False)
            sync(device)
            plain_s.append(time.perf_counter() - t0)
            t0 = time.perf_counter()
            learner.fit(1, lr=5e-5, validate=False)
            sync(device)
            fit_s.append(time.perf_counter() - t0)
    plain_s, fit_s = np.array(plain_s), np.array(fit_s)
    over = np.median(fit_s - plain_s) / n * 1e3
    print(f"\nbertlearn from {Path(bertlearn.__file__).parent}; {args.layers} layers at width 8, "
          f"{len(learner.opt.opt.param_groups)} optimizer groups, bs {args.bs}, {n} steps an epoch, "
          f"{args.pairs} interleaved pairs\n")
    print("| loop | ms per step (best epoch) | ms per step (median) |")
    print("|---|---|---|")
    print(f"| plain PyTorch loop (AdamW fused, OneCycleLR, clipping) | {plain_s.min() / n * 1e3:.2f} | "
          f"{np.median(plain_s) / n * 1e3:.2f} |")
    print(f"| bertlearn `fit` (fastai loop, one-cycle) | {fit_s.min() / n * 1e3:.2f} | "
          f"{np.median(fit_s) / n * 1e3:.2f} |")
    print(f"\nfastai's overhead: {over:.2f} ms per step (median over pairs of fit minus plain)")
    print(f"machine: {describe()}")


if __name__ == "__main__":
    main()
