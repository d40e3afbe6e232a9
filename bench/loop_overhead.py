"""fastai's overhead per training step: `fit` against a plain PyTorch loop on the same batches, on a model whose
kernels cost next to nothing, so what is left is the host time of the loop around the model.

    python bench/loop_overhead.py [--pairs 10] [--layers 12] [--bs 64] [--code PATH]

The model has bert-base's structure (12 layers, 199 parameter tensors, 14 splitter groups = 28 optimizer groups)
at width 8, so its forward, backward and optimizer step are mostly launches and Python. On a GPU the real
bert-base step is host-bound in the same way (about 1,500 kernel launches a step on an H200, fifth session), so milliseconds removed here
are milliseconds removed from the GPU step (for the graphed step, the loop and the eager optimizer are what is
left on the host). Both loops run in this process, interleaved epoch by epoch; the overhead is the median over
pairs of (fit epoch - plain epoch) / steps. `--code PATH` imports bertlearn from another checkout (a git worktree
of an older commit) to measure before and after a change on the same machine.

A third learner trains with `CudaGraphCallback` whose capture is replaced by a stub that costs the host what a
replay does (the input checks of `make_graphed_callables`, detached outputs, gradients handed to autograd) and
no device work: its step time is the host time of a graphed step around its replays (data, fastai's loop, bf16
autocast, loss, clipping, optimizer). On a GPU machine, set against the real graphed bert-base step
(bench/train_throughput.py), it tells whether that step waits on the host or on the GPU.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))


def stub_capture(step, sample, allow_unused_input=False, pool=None):
    """Stands in for `torch.cuda.make_graphed_callables`: the outputs of one eager pass, replayed for free."""
    import torch

    params = tuple(p for p in step.parameters() if p.requires_grad)
    with torch.no_grad():
        logits = step(*sample).detach()
    grads = tuple(torch.zeros_like(p) for p in params)
    surface = sample + params

    class Replay(torch.autograd.Function):
        @staticmethod
        def forward(ctx, *inputs):
            for static, given in zip(surface, inputs):  # as make_graphed_callables does before a replay
                if static.data_ptr() != given.data_ptr():
                    static.copy_(given)
            return logits.detach()

        @staticmethod
        def backward(ctx, grad):
            return (None,) * len(sample) + tuple(g.detach() for g in grads)

    return lambda *inputs: Replay.apply(*inputs, *params)


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
    from bertlearn import BertDataBunch, BertLearner, graphs
    from machine import DATA_ROOT, bench_tokenizer, describe
    from train_throughput import PlainLoop, sync

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
        # the graphed step as the GPU runs it: bf16 where the hardware has it, replays stubbed (see above)
        graphs.make_graphed_callables = stub_capture
        graphs._on_cuda = lambda t: True
        graphed = BertLearner.from_pretrained_model(db, tmp, None, device, None, output_dir=Path(tmp) / "out",
                                                    is_fp16=True, cuda_graphs=False)
        graphed.add_cb(graphs.CudaGraphCallback(True))
    n = len(db.train)
    loop = PlainLoop(plain, device, 5e-5, False, total_steps=n * (args.pairs + 1))
    loop.epoch(list(db.train)[:4])
    plain_s, fit_s, graphed_s = [], [], []
    with learner.no_bar(), learner.no_logging(), graphed.no_bar(), graphed.no_logging():
        learner.fit(1, lr=5e-5, validate=False)
        graphed.fit(1, lr=5e-5, validate=False)  # captures its buckets
        for _ in range(args.pairs):
            sync(device)
            t0 = time.perf_counter()
            loop.epoch(db.train)
            sync(device)
            plain_s.append(time.perf_counter() - t0)
            t0 = time.perf_counter()
            learner.fit(1, lr=5e-5, validate=False)
            sync(device)
            fit_s.append(time.perf_counter() - t0)
            t0 = time.perf_counter()
            graphed.fit(1, lr=5e-5, validate=False)
            sync(device)
            graphed_s.append(time.perf_counter() - t0)
    cb = next(c for c in graphed.cbs if isinstance(c, graphs.CudaGraphCallback))
    assert cb.captures > 0, "the graphed learner never replayed"
    plain_s, fit_s, graphed_s = np.array(plain_s), np.array(fit_s), np.array(graphed_s)
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
    print(f"| bertlearn `fit`, graphed step with replays stubbed ({cb.captures} buckets; bf16 where native): host time "
          f"around the replays | {graphed_s.min() / n * 1e3:.2f} | {np.median(graphed_s) / n * 1e3:.2f} |")
    print(f"\nfastai's overhead: {over:.2f} ms per step (median over pairs of fit minus plain)")
    print(f"machine: {describe()}")


if __name__ == "__main__":
    main()
