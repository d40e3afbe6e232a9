"""Training throughput: bertlearn's `fit` against the peers on the same SST-2 rows, in one run.

    python bench/train_throughput.py [--rows 1024] [--epochs 4] [--bs 32] [--maxlen 128] [--model minilm|bert-base]

Loops (each in its own process, so peak memory is its own; one warm-up pass, then timed epochs):
- fast-bert style: float32, eager attention, every row padded to maxlen, random order, AdamW + linear warmup.
- HF Trainer: length-grouped sampling (`train_sampling_strategy="group_by_length"`, transformers 5), dynamic padding (DataCollatorWithPadding), bf16 where the hardware has it.
- plain PyTorch loops over bertlearn's own batches (length-grouped, padded per batch): float32, and bf16 autocast
  where the hardware has it; fused AdamW, OneCycleLR, gradient clipping.
- bertlearn `fit` (fastai loop, one-cycle), float32 and `is_fp16=True` (bf16 where native), eager, with
  `compile=True` (torch.compile) and, on a GPU, with `cuda_graphs=True` (a graph per length bucket; "graphs x8":
  buckets every 8 tokens up to 64, to weigh padding against captures); the first epoch's extra time
  (compilation, capture) is reported with the break-even point.
Model: the packaged all-MiniLM-L6-v2, or a randomly initialised bert-base-uncased config (`--model bert-base`,
the speed point on a GPU). Prints a table (samples/s, ratios, peak memory, MFU on a GPU) and the machine.
Asserts, against the plain loop at the same precision timed interleaved in one process (the median over pairs
of one plain epoch and one fit epoch): on a CPU, fit >= 0.95x; on a GPU, the graphed fit >= 2x.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from machine import DATA_ROOT, bench_tokenizer, describe, model_folder  # noqa: E402

DATA = DATA_ROOT / "sst2" / "train.csv"
LOOPS = ["fast-bert style", "HF Trainer", "plain loop fp32", "plain loop bf16", "bertlearn fit fp32",
         "bertlearn fit is_fp16", "bertlearn fit fp32 compiled", "bertlearn fit is_fp16 compiled",
         "bertlearn fit fp32 graphs", "bertlearn fit is_fp16 graphs", "bertlearn fit is_fp16 graphs x8"]
# "graphs x8": graph_buckets plus every 8 tokens below 64 (where it steps by 16). On SST-2 the default buckets pad
# batches 57% over per-batch padding, these 23%, for more captures: whether that pays is a GPU measurement
PEAK_TFLOPS = {"H100": 989.0, "H200": 989.0, "A100": 312.0}  # dense bf16 tensor-core peaks


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()


def build_model(folder: Path, labels: list[str], attn: str | None = None):
    from transformers import AutoModelForSequenceClassification
    extra = {"attn_implementation": attn} if attn else {}
    return AutoModelForSequenceClassification.from_pretrained(folder, num_labels=len(labels), **extra)


def plain_loop(model, batches, device, lr: float, bf16: bool) -> torch.Tensor:
    """forward, loss, backward, clip, AdamW step, one-cycle LR: the hand-written reference."""
    opt = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=0.01, fused=True)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=lr, total_steps=max(len(batches), 8), pct_start=0.25)
    model.train()
    loss = torch.zeros((), device=device)
    for ids, mask, y in batches:
        ids, mask, y = (t.to(device, non_blocking=True) for t in (ids, mask, y))
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=bf16):
            logits = model(input_ids=ids, attention_mask=mask).logits
        loss = torch.nn.functional.cross_entropy(logits.float(), y)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        sched.step()
        opt.zero_grad(set_to_none=True)
    return loss.detach()


def fast_bert_batches(ds, bs: int, maxlen: int, seed: int = 0):
    """fast-bert's batching: random order, every row padded to maxlen."""
    order = np.random.default_rng(seed).permutation(len(ds))
    ids = ds.ids[np.arange(len(ds)), :maxlen].astype(np.int64)
    mask = (np.arange(maxlen)[None, :] < ds.lengths[:, None]).astype(np.int64)
    return [(torch.from_numpy(ids[b]), torch.from_numpy(mask[b]), torch.from_numpy(ds.targets[b]))
            for b in np.array_split(order, math.ceil(len(ds) / bs))]


def fast_bert_loop(model, batches, device, lr: float) -> torch.Tensor:
    """fast-bert's step (learner_cls.fit without apex): fp32, AdamW, linear warmup, clipping, loss.item() logging."""
    from transformers import get_linear_schedule_with_warmup
    opt = torch.optim.AdamW(model.parameters(), lr=lr, eps=1e-8)
    sched = get_linear_schedule_with_warmup(opt, 0, len(batches))
    model.train()
    tr_loss = 0.0
    for ids, mask, y in batches:
        ids, mask, y = ids.to(device), mask.to(device), y.to(device)
        loss = model(input_ids=ids, attention_mask=mask, labels=y).loss
        loss.backward()
        tr_loss += loss.item()  # fast-bert accumulates the loss on the host every step
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        sched.step()
        model.zero_grad()
    return torch.tensor(tr_loss / len(batches))


def hf_trainer(model, ds, tok, device, lr: float, bs: int, bf16: bool, epochs: int, workdir: Path) -> float:
    """HF Trainer with group_by_length and dynamic padding; returns seconds for the timed epochs."""
    from transformers import DataCollatorWithPadding, Trainer, TrainingArguments

    class Rows(torch.utils.data.Dataset):
        def __len__(self):
            return len(ds)

        def __getitem__(self, i):
            return {"input_ids": ds.ids[i].astype(np.int64).tolist(), "labels": int(ds.targets[i])}

    args = TrainingArguments(output_dir=str(workdir / "hf"), per_device_train_batch_size=bs, learning_rate=lr,
                             num_train_epochs=epochs, train_sampling_strategy="group_by_length", bf16=bf16, use_cpu=device.type == "cpu",
                             save_strategy="no", report_to=[], logging_strategy="no", dataloader_num_workers=0,
                             lr_scheduler_type="linear", weight_decay=0.01, max_grad_norm=1.0, disable_tqdm=True)
    trainer = Trainer(model=model, args=args, train_dataset=Rows(), data_collator=DataCollatorWithPadding(tok))
    sync(device)
    t0 = time.perf_counter()
    trainer.train()
    sync(device)
    return time.perf_counter() - t0


def child(loop: str, args: argparse.Namespace) -> dict:
    from bertlearn import BertDataBunch, BertLearner, graph_buckets
    from bertlearn.device import native_bf16

    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    bf16 = native_bf16(device)
    df = pd.read_csv(DATA).sample(n=args.rows, random_state=0)
    tok = bench_tokenizer()
    db = BertDataBunch.from_df(df, df.head(64), tok, bs=args.bs, maxlen=args.maxlen, device=device, seed=0)
    ds = db.train.dataset
    n, lr = len(ds), args.lr
    folder = model_folder(args.model, Path(args.workdir))
    params = sum(p.numel() for p in build_model(folder, db.labels).parameters())
    warm = db.train.new(shuffle=True)
    warm_batches = list(warm)[:4]
    timed = []
    first_epoch = None
    if loop.startswith("bertlearn fit"):
        graphed = " graphs" in loop
        if graphed and device.type != "cuda":
            return {"loop": loop, "skipped": "no CUDA GPU"}
        pristine = []
        if device.type == "cuda":
            # the plain loop once more, before any fastai object exists in this process: on the H200 the interleaved
            # plain loop ran 19-27% slower than the same loop in its own process; this tells whether the learner's
            # presence (graph pools, allocator state, Python heap) or the process explains it
            plain_model = build_model(folder, db.labels).to(device)
            plain_loop(plain_model, warm_batches, device, lr, bf16 and "is_fp16" in loop)
            for _ in range(2):
                sync(device)
                t0 = time.perf_counter()
                plain_loop(plain_model, db.train, device, lr, bf16 and "is_fp16" in loop)
                sync(device)
                pristine.append(time.perf_counter() - t0)
            del plain_model
        learner = BertLearner.from_pretrained_model(db, str(folder), None, device, None, output_dir=args.workdir,
                                                    is_fp16="is_fp16" in loop, compile=loop.endswith("compiled"),
                                                    cuda_graphs=graphed)
        if loop.endswith(" x8"):
            cb = next(c for c in learner.cbs if type(c).__name__ == "CudaGraphCallback")
            cb.buckets = tuple(b for b in sorted({*range(8, 64, 8), *graph_buckets(args.maxlen)}) if b <= args.maxlen)
        # the plain loop at the same precision runs interleaved in this process: the overhead ratio is not
        # blurred by process-to-process differences
        use_bf16 = any(type(cb).__name__ == "BF16Autocast" for cb in learner.cbs)
        plain_model, plain_timed = build_model(folder, db.labels).to(device), []
        plain_loop(plain_model, warm_batches, device, lr, use_bf16)
        with learner.no_bar(), learner.no_logging():
            sync(device)
            t0 = time.perf_counter()
            learner.fit(1, lr=lr, validate=False)  # warm-up; with compile=True, the compilation
            sync(device)
            first_epoch = time.perf_counter() - t0
            for _ in range(args.epochs):
                sync(device)
                t0 = time.perf_counter()
                plain_loop(plain_model, db.train, device, lr, use_bf16)  # draws its batches as fit does
                sync(device)
                plain_timed.append(time.perf_counter() - t0)
                t0 = time.perf_counter()
                learner.fit(1, lr=lr, validate=False)
                sync(device)
                timed.append(time.perf_counter() - t0)
        loss = float(learner.recorder.losses[-1])
        graphs = next((cb for cb in learner.cbs if type(cb).__name__ == "CudaGraphCallback"), None)
        captures = graphs.captures if graphs is not None else None
    elif loop == "HF Trainer":
        model = build_model(folder, db.labels).to(device)
        hf_trainer(model, ds.__class__(ds.ids[:4 * args.bs], ds.lengths[:4 * args.bs], ds.targets[:4 * args.bs],
                                       ds.encoder), tok, device, lr, args.bs, bf16, 1, Path(args.workdir))
        timed.append(hf_trainer(model, ds, tok, device, lr, args.bs, bf16, args.epochs, Path(args.workdir)) / args.epochs)
        loss = float("nan")
    else:
        attn = "eager" if loop == "fast-bert style" else None
        model = build_model(folder, db.labels, attn).to(device)
        if loop == "fast-bert style":
            batches = fast_bert_batches(ds, args.bs, args.maxlen)
            fast_bert_loop(model, batches[:4], device, lr)
            run = lambda: fast_bert_loop(model, batches, device, lr)  # noqa: E731
        else:
            use_bf16 = loop.endswith("bf16")
            if use_bf16 and not bf16:
                return {"loop": loop, "skipped": "no bf16 hardware"}
            plain_loop(model, warm_batches, device, lr, use_bf16)
            run = lambda: plain_loop(model, db.train, device, lr, use_bf16)  # noqa: E731  (fit's own loader)
        for _ in range(args.epochs if loop != "fast-bert style" else 1):
            sync(device)
            t0 = time.perf_counter()
            loss = float(run())
            sync(device)
            timed.append(time.perf_counter() - t0)
    out = {"loop": loop, "samples_per_s": n / min(timed), "seconds": min(timed), "loss": loss,
           "tokens": int(ds.lengths.sum()), "params": params}
    if loop.startswith("bertlearn"):
        # the median of per-pair ratios: each fit epoch against the plain epoch just before it, so a slow phase
        # of this shared machine hits both sides of a pair (the best-epoch ratio swung 0.91-1.01 between runs)
        out["vs_plain_same_process"] = float(np.median(np.array(plain_timed) / np.array(timed)))
        out["plain_samples_per_s"] = n / min(plain_timed)  # the interleaved plain loop at the same precision
        out["first_epoch_s"] = first_epoch
        out["captures"] = captures
        if pristine:
            out["plain_before_learner_samples_per_s"] = n / min(pristine)
    if device.type == "cuda":
        out["peak_mb"] = torch.cuda.max_memory_allocated() / 2**20
    else:
        out["peak_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    return out


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--rows", type=int, default=1024)
    ap.add_argument("--bs", type=int, default=32)
    ap.add_argument("--maxlen", type=int, default=128)
    ap.add_argument("--epochs", type=int, default=4, help="timed epochs per loop (best is kept)")
    ap.add_argument("--lr", type=float, default=5e-5)
    ap.add_argument("--model", default="minilm", choices=["minilm", "bert-base"])
    ap.add_argument("--loops", default=",".join(LOOPS))
    ap.add_argument("--child", default=None, help=argparse.SUPPRESS)
    ap.add_argument("--workdir", default="runs/train_throughput")
    args = ap.parse_args()
    if args.child:
        print("RESULT " + json.dumps(child(args.child, args)))
        return

    Path(args.workdir).mkdir(parents=True, exist_ok=True)
    model_folder(args.model, Path(args.workdir))  # once, before the loops read it
    results = {}
    for loop in args.loops.split(","):
        cmd = [sys.executable, __file__, "--child", loop, "--rows", str(args.rows), "--bs", str(args.bs), "--maxlen",
               str(args.maxlen), "--epochs", str(args.epochs), "--lr", str(args.lr), "--model", args.model,
               "--workdir", args.workdir]
        t0 = time.perf_counter()
        # each loop gets a fresh compiler cache: compile=True pays the cold compilation a first run pays
        with tempfile.TemporaryDirectory(prefix="inductor-") as cache:
            env = {**os.environ, "TOKENIZERS_PARALLELISM": "false", "TORCHINDUCTOR_CACHE_DIR": cache}
            proc = subprocess.run(cmd, capture_output=True, text=True, env=env)
        line = next((l for l in proc.stdout.splitlines() if l.startswith("RESULT ")), None)
        if proc.returncode or line is None:
            # one broken loop must not cost the others' numbers (a GPU lease may allow a single run)
            print(f"{loop} failed:\n{proc.stderr[-3000:]}", file=sys.stderr)
            results[loop] = {"loop": loop, "skipped": f"failed (exit {proc.returncode}), see stderr"}
            continue
        results[loop] = json.loads(line[7:])
        # each result as it comes, so a run stopped by a time limit still shows the loops that finished
        print(f"{loop}: {time.perf_counter() - t0:.0f} s {line[7:]}", file=sys.stderr)

    ran = {k: v for k, v in results.items() if "skipped" not in v}
    first = next(iter(ran.values()))
    gpu = torch.cuda.get_device_name(0) if torch.cuda.is_available() else None
    peak = next((v for k, v in PEAK_TFLOPS.items() if gpu and k in gpu), None)
    ref = ran.get("fast-bert style", {}).get("samples_per_s")
    print(f"\nSST-2 train sample: {args.rows} rows, bs {args.bs}, maxlen {args.maxlen}, model {args.model}, "
          f"{first['tokens'] / args.rows:.1f} tokens/row; best of {args.epochs} timed epochs (fast-bert style: 1)\n")
    hf = ran.get("HF Trainer", {}).get("samples_per_s")
    print("| loop | samples/s | vs fast-bert style | vs HF Trainer | vs plain loop, same precision | peak memory MB | "
          "MFU | first epoch s |")
    print("|---|---|---|---|---|---|---|---|")
    for loop, r in results.items():
        if "skipped" in r:
            print(f"| {loop} | skipped: {r['skipped']} | | | | | | |")
            continue
        bf16_loop = loop.endswith("bf16") or "is_fp16" in loop or loop == "HF Trainer"
        twin = "plain loop bf16" if bf16_loop else "plain loop fp32"
        vs_plain = f"{r['samples_per_s'] / ran[twin]['samples_per_s']:.2f}x" if twin in ran and "plain" not in loop else ""
        if "vs_plain_same_process" in r:
            vs_plain = (f"{r['vs_plain_same_process']:.2f}x (median of {args.epochs} interleaved pairs; plain "
                        f"{r['plain_samples_per_s']:,.0f}/s)")
        mfu = ""
        if peak:  # training FLOPs ~ 6 x parameters x tokens (forward 2, backward 4)
            mfu = f"{6 * r['params'] * r['tokens'] / r['seconds'] / (peak * 1e12):.1%}"
        vs_fb = f"{r['samples_per_s'] / ref:.1f}x" if ref else ""
        first = f"{r['first_epoch_s']:.1f}" if r.get("first_epoch_s") else ""
        vs_hf = f"{r['samples_per_s'] / hf:.2f}x" if hf else ""
        print(f"| {loop} | {r['samples_per_s']:.1f} | {vs_fb} | {vs_hf} | {vs_plain} | {r['peak_mb']:.0f} | {mfu} | "
              f"{first} |")
    for eager in ("bertlearn fit fp32", "bertlearn fit is_fp16"):
        e, g = ran.get(eager), ran.get(eager + " graphs")
        if e and g:
            # the graphed loop's whole first-epoch surplus: the captures plus the warm-up any first epoch has (the
            # eager loop's own surplus is mostly one-off CUDA set-up that the graphed child pays as well), so an
            # upper bound on the capture cost
            cost = g["first_epoch_s"] - g["seconds"]
            saved = 1 / e["samples_per_s"] - 1 / g["samples_per_s"]
            even = f"pays back after {cost / saved:,.0f} samples" if saved > 0 else "never pays back"
            print(f"\n{eager} graphs: {g['samples_per_s'] / e['samples_per_s']:.2f}x the eager fit, "
                  f"{g['captures']} buckets captured, one-time cost at most {cost:.1f} s, {even}")
        c = ran.get(eager + " compiled")
        if e and c:
            # one-time cost: the compiled loop's first-epoch surplus over its steady epoch, less the eager one's
            cost = (c["first_epoch_s"] - c["seconds"]) - (e["first_epoch_s"] - e["seconds"])
            saved = 1 / e["samples_per_s"] - 1 / c["samples_per_s"]  # seconds saved per sample
            even = f"pays back after {cost / saved:,.0f} samples" if saved > 0 else "never pays back"
            print(f"\n{eager} compiled: {c['samples_per_s'] / e['samples_per_s']:.2f}x the eager fit, one-time "
                  f"compilation {cost:.0f} s, {even}")
    fine, coarse = ran.get("bertlearn fit is_fp16 graphs x8"), ran.get("bertlearn fit is_fp16 graphs")
    if fine and coarse:
        print(f"\nbuckets every 8 tokens to 64: {fine['samples_per_s'] / coarse['samples_per_s']:.2f}x the default "
              f"buckets' fit, {fine['captures']} captures against {coarse['captures']}, first epoch "
              f"{fine['first_epoch_s']:.1f} s against {coarse['first_epoch_s']:.1f} s")
    for loop, r in ran.items():
        if r.get("plain_before_learner_samples_per_s"):
            alone = ran.get("plain loop bf16" if "is_fp16" in loop else "plain loop fp32", {}).get("samples_per_s")
            print(f"\n{loop}: the plain loop in this process ran {r['plain_before_learner_samples_per_s']:,.0f}/s before "
                  f"the learner existed, {r['plain_samples_per_s']:,.0f}/s interleaved with fit"
                  + (f", {alone:,.0f}/s in its own process" if alone else ""))
    print(f"\nmachine: {describe()}")
    if gpu is None:
        # CPU: the step is compute-bound, and fastai's loop must cost under 5% of it (issue 8's CPU target)
        for fit in ("bertlearn fit fp32", "bertlearn fit is_fp16"):
            if fit in ran and "vs_plain_same_process" in ran[fit]:
                ratio = ran[fit]["vs_plain_same_process"]
                assert ratio >= 0.95, f"{fit} runs at {ratio:.2f}x the plain loop (fastai's overhead must stay under 5%)"
    else:
        # GPU: the eager step is host-bound (fastai's Python shows: 0.89-0.97x measured); the graphed fit is the
        # speed path and must stay far ahead of the plain eager loop (4.0-4.2x measured on an H200)
        for fit in ("bertlearn fit fp32 graphs", "bertlearn fit is_fp16 graphs"):
            if fit in ran:
                ratio = ran[fit]["vs_plain_same_process"]
                assert ratio >= 2.0, f"{fit} runs at only {ratio:.2f}x the plain eager loop"


if __name__ == "__main__":
    main()
