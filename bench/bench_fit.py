"""Training throughput: `learner.fit` versus a plain PyTorch loop over the same batches, in one run.

Also times the fast-bert way of batching (every text padded to maxlen, random order) in the same plain
loop, to show what length-grouped dynamic padding buys. Model: the packaged all-MiniLM-L6-v2.

    python bench/bench_fit.py [--rows 2048] [--bs 32] [--maxlen 128] [--repeats 2]

Asserts that fit's overhead over the plain loop stays under 10% (a ratio, so machine noise cancels).
"""

from __future__ import annotations

import argparse
import math
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from machine import describe  # noqa: E402

from bertlearn import BertDataBunch, BertLearner  # noqa: E402
from bertlearn.model import load_model  # noqa: E402

DATA = Path(__file__).resolve().parents[2] / "shared" / "data"


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()


def plain_loop(model, batches, device, lr, amp) -> float:
    """The reference: forward, loss, backward, clip, AdamW step, one-cycle LR; returns seconds."""
    opt = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=0.01,
                            **({"fused": True} if device.type == "cuda" else {"foreach": True}))
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=lr, total_steps=len(batches), pct_start=0.25)
    model.train()
    ctx = torch.autocast("cuda", dtype=torch.bfloat16) if amp else torch.autocast("cpu", enabled=False)
    sync(device)
    t0 = time.perf_counter()
    for ids, mask, y in batches:
        ids, mask, y = (t.to(device, non_blocking=True) for t in (ids, mask, y))
        with ctx:
            logits = model(input_ids=ids, attention_mask=mask).logits
        loss = torch.nn.functional.cross_entropy(logits.float(), y)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        sched.step()
        opt.zero_grad(set_to_none=True)
    sync(device)
    return time.perf_counter() - t0


def static_batches(ds, bs: int, maxlen: int, pad_id: int, seed: int = 0):
    """fast-bert's batching: random order, every row padded to maxlen."""
    rng = np.random.default_rng(seed)
    order = rng.permutation(len(ds))
    ids = np.full((len(ds), maxlen), pad_id, dtype=np.int64)
    width = min(ds.ids.shape[1], maxlen)
    ids[:, :width] = ds.ids[:, :width]
    mask = (np.arange(maxlen)[None, :] < ds.lengths[:, None]).astype(np.int64)
    return [(torch.from_numpy(ids[b]), torch.from_numpy(mask[b]), torch.from_numpy(ds.targets[b]))
            for b in np.array_split(order, math.ceil(len(ds) / bs))]


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--rows", type=int, default=2048)
    ap.add_argument("--bs", type=int, default=32)
    ap.add_argument("--maxlen", type=int, default=128)
    ap.add_argument("--repeats", type=int, default=2)
    ap.add_argument("--lr", type=float, default=5e-5)
    args = ap.parse_args()

    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    amp = device.type == "cuda"
    df = pd.read_csv(DATA / "sst2" / "train.csv").sample(n=args.rows, random_state=0)
    db = BertDataBunch.from_df(df, df.head(64), None, bs=args.bs, maxlen=args.maxlen, device=device)
    ds = db.train.dataset
    learner = BertLearner.from_pretrained_model(db, None, None, device, None, output_dir="runs/bench",
                                                is_fp16=amp)
    fresh = lambda: load_model(None, labels=db.labels)[0].to(device)  # noqa: E731

    timings: dict[str, list[float]] = {"bertlearn fit (fastai loop, one-cycle)": [],
                                       "plain PyTorch loop, same batches": [],
                                       "plain loop, fast-bert batching (pad to maxlen, random order)": []}
    with learner.no_bar(), learner.no_logging():
        learner.fit(1, lr=args.lr, validate=False)  # warm-up: allocator, kernels, thread pools
    for _ in range(args.repeats):
        with learner.no_bar(), learner.no_logging():
            sync(device)
            t0 = time.perf_counter()
            learner.fit(1, lr=args.lr, validate=False)
            sync(device)
            timings["bertlearn fit (fastai loop, one-cycle)"].append(time.perf_counter() - t0)
        batches = list(db.train)
        timings["plain PyTorch loop, same batches"].append(plain_loop(fresh(), batches, device, args.lr, amp))
        timings["plain loop, fast-bert batching (pad to maxlen, random order)"].append(
            plain_loop(fresh(), static_batches(ds, args.bs, args.maxlen, db.encoder.pad_id), device, args.lr, amp))

    n = len(ds)
    best = {k: min(v) for k, v in timings.items()}
    ref = best["plain PyTorch loop, same batches"]
    print(f"\nSST-2 train sample: {n} rows, bs {args.bs}, maxlen {args.maxlen}, mean tokens/row "
          f"{ds.lengths.mean():.1f}; best of {args.repeats} epochs each\n")
    print("| loop | samples/s | seconds/epoch | relative to plain loop |")
    print("|---|---|---|---|")
    for name, sec in best.items():
        print(f"| {name} | {n / sec:.1f} | {sec:.2f} | {ref / sec:.2f}x |")
    print(f"\nmachine: {describe()}")
    ratio = best["bertlearn fit (fastai loop, one-cycle)"] / ref
    assert ratio < 1.10, f"fit is {100 * (ratio - 1):.0f}% slower than the plain loop (allowed: 10%)"


if __name__ == "__main__":
    main()
