"""Training throughput: bertlearn's `fit` against the peers on the same SST-2 rows, in one run.

    python bench/train_throughput.py [--rows 1024] [--epochs 4] [--bs 32] [--maxlen 128] [--model minilm|bert-base]
        [--loops ...] [--pairs 4]

Every loop runs in its own process (so peak memory is its own) and is measured the same way: the model is loaded and
the data built, untimed; then ONE training call of `--epochs` epochs is timed from the call to its last step, with a
clock at every epoch boundary. Two numbers per loop, the same statistic for every side:
- end to end: samples of all epochs / seconds of the whole call: first-epoch costs (CUDA-graph capture, compilation,
  the Trainer's setup inside `train()`, allocator warm-up) included, as a user pays them;
- steady state: samples of one epoch / the median epoch time of epochs 2..N (the first epoch is every loop's
  warm-up), with the fastest and slowest of those epochs as the spread.
Loops, each side at its defaults and at its best:
- fast-bert defaults: eager attention, every row padded to maxlen, random order, AdamW + linear schedule,
  `loss.item()` every step (its `learner_cls.fit`), with its default `is_fp16=True`: fp16 autocast and loss scaling
  on a GPU, float32 on a CPU (its CUDA autocast does nothing there); fast-bert half precision: the same, with bf16
  autocast on a CPU with bf16 (on a GPU it equals the defaults).
- HF Trainer defaults: `TrainingArguments` defaults (float32, random order, dynamic padding through the tokenizer's
  collator, logging every 500 steps with its NaN filter); HF Trainer best: bf16 where the hardware has it,
  `train_sampling_strategy="group_by_length"`, `logging_nan_inf_filter=False` (no host sync per step).
- plain loops (the hand-written reference, not a peer): bertlearn's batches (length-grouped, padded per batch),
  fused AdamW, OneCycleLR, clipping; float32 and bf16 autocast.
- bertlearn fit defaults: `from_pretrained_model` and `fit` with no options (float32, `cuda_graphs="auto"`); fit
  is_fp16: `is_fp16=True` (bf16 autocast; on a GPU "auto" graphs fits of >= GRAPH_MIN_STEPS steps); compiled:
  `compile=True`; "graphs forced": `cuda_graphs=True` whatever the fit's length ("x8": buckets every 8 tokens up to
  64); forced settings are labelled so.
Nobody validates (`fit(validate=False)`; the Trainer's default evaluates never) and every progress bar is off.
The fit rows then time `--pairs` interleaved pairs (one plain-loop epoch, one `fit(1)` epoch, same process, same
precision): the median pair ratio is fastai's overhead, asserted on a CPU (>= 0.95x) and, for the graphed rows, on
a GPU (>= 2x the plain eager loop).
Model: the packaged all-MiniLM-L6-v2, or a randomly initialised bert-base-uncased config (`--model bert-base`, the
speed point on a GPU). Prints a table (samples/s, ratios, peak memory, MFU on a GPU) and the machine.
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

START = time.perf_counter()  # --budget-s counts from here: torch's import below is inside it

import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
import torch  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parent))
from machine import DATA_ROOT, bench_tokenizer, describe, model_folder  # noqa: E402

DATA = DATA_ROOT / "sst2" / "train.csv"
DEFAULT_LOOPS = ["fast-bert defaults", "HF Trainer defaults", "bertlearn fit defaults"]
BEST_LOOPS = ["fast-bert half precision", "HF Trainer best", "plain loop fp32", "plain loop bf16",
              "bertlearn fit is_fp16", "bertlearn fit is_fp16 compiled", "bertlearn fit fp32 compiled",
              "bertlearn fit is_fp16 graphs forced", "bertlearn fit is_fp16 graphs x8 forced"]
LOOPS = DEFAULT_LOOPS + BEST_LOOPS
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


class EpochClock:
    """Wall-clock seconds at every epoch boundary of one training call (the device synchronised first)."""

    def __init__(self, device: torch.device):
        self.device, self.marks = device, []

    def mark(self) -> None:
        sync(self.device)
        self.marks.append(time.perf_counter())

    def epochs(self) -> list[float]:
        return list(np.diff(self.marks))


class PlainLoop:
    """forward, loss, backward, clip, AdamW step, one-cycle LR: the hand-written reference. The loss is cross-entropy
    over the flattened logits, so the same loop trains a sequence classifier (one target a row) and a token
    classifier (one a token, -100 ignored: bench/ner_throughput.py)."""

    def __init__(self, model, device, lr: float, bf16: bool, total_steps: int):
        self.model, self.device, self.bf16 = model, device, bf16
        self.opt = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=0.01, fused=True)
        self.sched = torch.optim.lr_scheduler.OneCycleLR(self.opt, max_lr=lr, total_steps=max(total_steps, 8),
                                                         pct_start=0.25)

    def epoch(self, batches) -> torch.Tensor:
        self.model.train()
        loss = torch.zeros((), device=self.device)
        for ids, mask, y in batches:
            ids, mask, y = (t.to(self.device, non_blocking=True) for t in (ids, mask, y))
            with torch.autocast(self.device.type, dtype=torch.bfloat16, enabled=self.bf16):
                logits = self.model(input_ids=ids, attention_mask=mask).logits
            loss = torch.nn.functional.cross_entropy(logits.float().flatten(0, -2), y.flatten(), ignore_index=-100)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(self.model.parameters(), 1.0)
            self.opt.step()
            if self.sched.last_epoch + 1 < self.sched.total_steps:  # the pairs run past the planned steps
                self.sched.step()
            self.opt.zero_grad(set_to_none=True)
        return loss.detach()


def fast_bert_batches(ds, bs: int, maxlen: int, seed: int = 0):
    """fast-bert's batching: random order, every row padded to maxlen."""
    order = np.random.default_rng(seed).permutation(len(ds))
    ids = ds.ids[np.arange(len(ds)), :maxlen].astype(np.int64)
    mask = (np.arange(maxlen)[None, :] < ds.lengths[:, None]).astype(np.int64)
    return [(torch.from_numpy(ids[b]), torch.from_numpy(mask[b]), torch.from_numpy(ds.targets[b]))
            for b in np.array_split(order, math.ceil(len(ds) / bs))]


def fast_bert_train(model, epochs_of_batches, device, lr: float, half: str | None, clock: EpochClock) -> float:
    """fast-bert's step (learner_cls.fit): AdamW, linear schedule, clipping, `loss.item()` logging every step; with
    `half` ("fp16": autocast and a GradScaler, what apex O1 did; "bf16": bf16 autocast) mixed precision."""
    from transformers import get_linear_schedule_with_warmup
    opt = torch.optim.AdamW(model.parameters(), lr=lr, eps=1e-8)
    sched = get_linear_schedule_with_warmup(opt, 0, sum(map(len, epochs_of_batches)))
    scaler = torch.amp.GradScaler(device.type, enabled=half == "fp16")
    dtype = torch.float16 if half == "fp16" else torch.bfloat16
    model.train()
    tr_loss, steps = 0.0, 0
    clock.mark()
    for batches in epochs_of_batches:
        for ids, mask, y in batches:
            ids, mask, y = ids.to(device), mask.to(device), y.to(device)
            with torch.autocast(device.type, dtype=dtype, enabled=half is not None):
                loss = model(input_ids=ids, attention_mask=mask, labels=y).loss
            scaler.scale(loss).backward()
            tr_loss += loss.item()  # fast-bert accumulates the loss on the host every step
            scaler.unscale_(opt)
            torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
            scaler.step(opt)
            scaler.update()
            sched.step()
            model.zero_grad()
            steps += 1
        clock.mark()
    return tr_loss / steps


def hf_trainer(model, ds, tok, device, lr: float, bs: int, epochs: int, workdir: Path, *, best: bool,
               clock: EpochClock) -> None:
    """The Hugging Face Trainer on the same rows: at its defaults, or at its best (bf16 where native, length
    grouping, no per-step NaN filter); its own tokenizer collator pads each batch."""
    from transformers import Trainer, TrainerCallback, TrainingArguments

    from bertlearn.device import native_bf16

    class Rows(torch.utils.data.Dataset):
        def __len__(self):
            return len(ds)

        def __getitem__(self, i):
            return {"input_ids": ds.ids[i, :ds.lengths[i]].astype(np.int64).tolist(), "labels": int(ds.targets[i])}

    class Clock(TrainerCallback):
        def on_epoch_end(self, args, state, control, **kw):
            clock.mark()

    best_args = dict(bf16=native_bf16(device), train_sampling_strategy="group_by_length",
                     logging_nan_inf_filter=False) if best else {}
    args = TrainingArguments(output_dir=str(workdir / "hf"), per_device_train_batch_size=bs, learning_rate=lr,
                             num_train_epochs=epochs, use_cpu=device.type == "cpu", report_to=[], disable_tqdm=True,
                             save_strategy="no", **best_args)
    trainer = Trainer(model=model, args=args, train_dataset=Rows(), processing_class=tok, callbacks=[Clock()])
    clock.mark()  # the call: the Trainer's setup inside train() counts, as fit's does
    trainer.train()


def child(loop: str, args: argparse.Namespace) -> dict:
    from bertlearn import BertDataBunch, BertLearner, graph_buckets
    from bertlearn.device import native_bf16

    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    bf16 = native_bf16(device)
    # --data: a CSV of its own (text, label), all its rows (bench/scaling.py's passages); else the SST-2 sample
    df = pd.read_csv(args.data) if args.data else pd.read_csv(DATA).sample(n=args.rows, random_state=0)
    tok = bench_tokenizer()
    db = BertDataBunch.from_df(df, df.head(64), tok, bs=args.bs, maxlen=args.maxlen, device=device, seed=0)
    ds = db.train.dataset
    n, lr, epochs = len(ds), args.lr, args.epochs
    folder = model_folder(args.model, Path(args.workdir))
    params = sum(p.numel() for p in build_model(folder, db.labels).parameters())
    clock = EpochClock(device)
    out: dict = {"loop": loop}
    if loop.startswith("bertlearn fit"):
        forced = loop.endswith(" forced")
        if forced and device.type != "cuda":
            return {"loop": loop, "skipped": "no CUDA GPU"}
        fp16 = "is_fp16" in loop
        learner = BertLearner.from_pretrained_model(db, str(folder), None, device, None, output_dir=args.workdir,
                                                    is_fp16=fp16, compile=" compiled" in loop,
                                                    cuda_graphs=True if forced else "auto")
        if " x8 " in loop:
            cb = next(c for c in learner.cbs if type(c).__name__ == "CudaGraphCallback")
            cb.buckets = tuple(b for b in sorted({*range(8, 64, 8), *graph_buckets(args.maxlen)}) if b <= args.maxlen)
        from fastai.callback.core import Callback

        class Clock(Callback):
            order = 100

            def after_epoch(self):
                clock.mark()

        with learner.no_bar(), learner.no_logging():
            clock.mark()  # the call: capture and compilation happen inside it
            learner.fit(epochs, lr=lr, validate=False, cbs=[Clock()])
            graphs = next((cb for cb in learner.cbs if type(cb).__name__ == "CudaGraphCallback"), None)
            out["captures"] = graphs.captures if graphs is not None else None
            out["loss"] = float(learner.recorder.losses[-1])
            out.update(clock_result(clock, n, epochs))
            out["peak_mb"] = peak_mb(device)  # before the interleaved plain loop adds a second model
            # fastai's overhead: the plain loop at the same precision, interleaved in this process, so the ratio
            # is not blurred by process-to-process differences
            plain_s, fit_s = [], []
            if args.pairs:
                use_bf16 = any(type(cb).__name__ == "BF16Autocast" for cb in learner.cbs)
                plain = PlainLoop(build_model(folder, db.labels).to(device), device, lr, use_bf16,
                                  (args.pairs + 1) * len(db.train))
                plain.epoch(list(db.train)[:4])
            for _ in range(args.pairs):
                sync(device)
                t0 = time.perf_counter()
                plain.epoch(db.train)  # draws its batches as fit does
                sync(device)
                plain_s.append(time.perf_counter() - t0)
                t0 = time.perf_counter()
                learner.fit(1, lr=lr, validate=False)
                sync(device)
                fit_s.append(time.perf_counter() - t0)
        if plain_s:
            # the median of per-pair ratios: each fit epoch against the plain epoch just before it, so a slow phase
            # of this shared machine hits both sides of a pair
            out["vs_plain_same_process"] = float(np.median(np.array(plain_s) / np.array(fit_s)))
            out["plain_samples_per_s"] = n / float(np.median(plain_s))
    elif loop.startswith("HF Trainer"):
        hf_trainer(build_model(folder, db.labels).to(device), ds, tok, device, lr, args.bs, epochs,
                   Path(args.workdir), best=loop.endswith("best"), clock=clock)
        out.update(clock_result(clock, n, epochs))
    elif loop.startswith("fast-bert"):
        # fast-bert's from_pretrained_model defaults to is_fp16=True: torch.cuda.amp autocast and a GradScaler on a
        # GPU (../shared/reference/peers.md); on a CPU its autocast does nothing, so its default there is float32
        half = "fp16" if device.type == "cuda" else None
        if loop.endswith("half precision"):
            half = "fp16" if device.type == "cuda" else "bf16" if bf16 else None
            if half is None:
                return {"loop": loop, "skipped": "no half precision on this CPU (apex O1 needed CUDA)"}
        out["half"] = half
        model = build_model(folder, db.labels, "eager").to(device)
        batches = [fast_bert_batches(ds, args.bs, args.maxlen, seed=e) for e in range(epochs)]
        out["loss"] = fast_bert_train(model, batches, device, lr, half, clock)
        out.update(clock_result(clock, n, epochs))
    else:
        use_bf16 = loop.endswith("bf16")
        if use_bf16 and not bf16:
            return {"loop": loop, "skipped": "no bf16 hardware"}
        plain = PlainLoop(build_model(folder, db.labels).to(device), device, lr, use_bf16, epochs * len(db.train))
        clock.mark()
        for _ in range(epochs):
            loss = plain.epoch(db.train)  # fit's own loader: the same batches fit draws
            clock.mark()
        out["loss"] = float(loss)
        out.update(clock_result(clock, n, epochs))
    out.update(rows=n, tokens=int(ds.lengths.sum()), params=params)
    out.setdefault("peak_mb", peak_mb(device))
    return out


def peak_mb(device: torch.device) -> float:
    """The process's peak so far: allocated GPU memory, or the CPU's resident set."""
    if device.type == "cuda":
        return torch.cuda.max_memory_allocated() / 2**20
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def clock_result(clock: EpochClock, n: int, epochs: int) -> dict:
    """End-to-end and steady-state throughput from one call's marks: the call, then every epoch's end (so the first
    epoch holds whatever setup the call does: the Trainer's, fit's callbacks, captures, compilation)."""
    times = clock.epochs()
    assert len(times) == epochs, f"{len(times)} epoch marks for {epochs} epochs"
    steady = times[1:] or times
    return {"epoch_s": times, "total_s": float(sum(times)), "end_to_end": epochs * n / float(sum(times)),
            "steady": n / float(np.median(steady)), "steady_lo": n / max(steady), "steady_hi": n / min(steady),
            "first_epoch_s": times[0]}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--rows", type=int, default=1024)
    ap.add_argument("--bs", type=int, default=32)
    ap.add_argument("--maxlen", type=int, default=128)
    ap.add_argument("--epochs", type=int, default=4, help="epochs of the one timed call (the first is the warm-up "
                                                          "of the steady-state column)")
    ap.add_argument("--pairs", type=int, default=4, help="interleaved plain/fit epoch pairs for the fit rows")
    ap.add_argument("--lr", type=float, default=5e-5)
    ap.add_argument("--model", default="minilm", choices=["minilm", "bert-base"])
    ap.add_argument("--loops", default=",".join(LOOPS))
    ap.add_argument("--child", default=None, help=argparse.SUPPRESS)
    ap.add_argument("--workdir", default="runs/train_throughput")
    ap.add_argument("--json", default=None, help="also write the results here")
    ap.add_argument("--data", default=None, help="train on this CSV (text, label; all rows) instead of SST-2's")
    ap.add_argument("--budget-s", type=float, default=None,
                    help="seconds from this script's start (a GPU lease's time limit): a loop is started only with at "
                         "least 30 s left and stopped at the budget; the rest are reported as not run and the table "
                         "and JSON still come out")
    args = ap.parse_args()
    if args.epochs < 2:
        ap.error("--epochs must be at least 2: the first epoch is the warm-up of the steady-state column")
    if args.child:
        print("RESULT " + json.dumps(child(args.child, args)))
        return

    loops = args.loops.split(",")
    for loop in loops:
        if loop not in LOOPS:
            ap.error(f"--loops: {loop!r} is not one of {LOOPS}")
    Path(args.workdir).mkdir(parents=True, exist_ok=True)
    if args.budget_s is None or args.budget_s - (time.perf_counter() - START) >= 30:
        model_folder(args.model, Path(args.workdir))  # once, before the loops read it (inside the budget)
    machine, results = describe(), {}

    def save() -> None:  # after every loop, so a run stopped from outside still leaves the loops that finished
        if args.json:
            Path(args.json).write_text(json.dumps({"args": vars(args), "machine": machine, "results": results},
                                                  indent=1))

    for loop in loops:
        left = None if args.budget_s is None else args.budget_s - (time.perf_counter() - START)
        if left is not None and left < 30:  # no loop of this script finishes in less, even on a GPU
            results[loop] = {"loop": loop, "skipped": f"not started: under 30 s of --budget-s {args.budget_s:g} left"}
            save()
            continue
        options = ["--rows", str(args.rows), "--bs", str(args.bs), "--maxlen", str(args.maxlen), "--epochs",
                   str(args.epochs), "--pairs", str(args.pairs), "--lr", str(args.lr), "--model", args.model,
                   "--workdir", args.workdir] + (["--data", args.data] if args.data else [])
        t0 = time.perf_counter()
        result, error = run_loop(loop, options, timeout=left)
        if result is None and error == "timeout":
            results[loop] = {"loop": loop, "skipped": f"stopped at --budget-s {args.budget_s:g}"}
            save()
            continue
        if result is None:
            # one broken loop must not cost the others' numbers (a GPU lease may allow a single run)
            print(f"{loop} failed:\n{error}", file=sys.stderr)
            results[loop] = {"loop": loop, "skipped": f"failed ({error.split(':')[0]}), see stderr"}
            save()
            continue
        results[loop] = result
        save()
        # each result as it comes, so a run stopped by a time limit still shows the loops that finished
        print(f"{loop}: {time.perf_counter() - t0:.0f} s {json.dumps(result)}", file=sys.stderr)
    report(results, args)


def run_loop(loop: str, options: list[str], timeout: float | None = None) -> tuple[dict | None, str]:
    """One loop in a fresh process (this script's child, given `options`): its result, or None and the end of its
    stderr ("timeout" when it ran past `timeout` seconds and was killed). Each child gets a fresh compiler cache, so
    compile=True pays the cold compilation a first run pays."""
    cmd = [sys.executable, str(Path(__file__).resolve()), "--child", loop, *options]
    with tempfile.TemporaryDirectory(prefix="inductor-") as cache:
        env = {**os.environ, "TOKENIZERS_PARALLELISM": "false", "TORCHINDUCTOR_CACHE_DIR": cache}
        try:
            proc = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=timeout)
        except subprocess.TimeoutExpired:
            return None, "timeout"
    line = next((l for l in proc.stdout.splitlines() if l.startswith("RESULT ")), None)
    if proc.returncode or line is None:
        return None, f"exit {proc.returncode}: {proc.stderr[-3000:]}"
    return json.loads(line[7:]), ""


def report(results: dict, args: argparse.Namespace) -> None:
    ran = {k: v for k, v in results.items() if "skipped" not in v}
    if not ran:
        print("no loop ran: " + "; ".join(f"{k}: {v['skipped']}" for k, v in results.items()))
        return
    first = next(iter(ran.values()))
    gpu = torch.cuda.get_device_name(0) if torch.cuda.is_available() else None
    peak = next((v for k, v in PEAK_TFLOPS.items() if gpu and k in gpu), None)
    refs = {name: ran.get(name, {}).get("end_to_end") for name in ("fast-bert defaults", "HF Trainer defaults",
                                                                    "HF Trainer best")}
    rows = first["rows"]
    data = f"{args.data}: {rows} rows" if args.data else f"SST-2 train sample: {rows} rows"
    print(f"\n{data}, bs {args.bs}, maxlen {args.maxlen}, model {args.model}, "
          f"{first['tokens'] / rows:.1f} tokens/row; one call of {args.epochs} epochs per loop, each in its own "
          "process.\nEnd to end: all samples / the whole call (first-epoch costs included). Steady: the median of "
          f"epochs 2-{args.epochs} [slowest-fastest]. Ratios are end to end.\n")
    print("| loop | end to end samples/s | steady samples/s | vs fast-bert defaults | vs HF Trainer defaults | "
          "vs HF Trainer best | first epoch s | peak memory MB | MFU (steady) |")
    print("|---|---|---|---|---|---|---|---|---|")
    for loop, r in results.items():
        if "skipped" in r:
            print(f"| {loop} | skipped: {r['skipped']} | | | | | | | |")
            continue
        ratios = [f"{r['end_to_end'] / v:.2f}x" if v else "" for v in refs.values()]
        mfu = ""
        if peak:  # training FLOPs ~ 6 x parameters x tokens (forward 2, backward 4)
            mfu = f"{6 * r['params'] * r['tokens'] * r['steady'] / r['rows'] / (peak * 1e12):.1%}"
        label = loop + (f" ({r['half']})" if r.get("half") else "")
        print(f"| {label} | {r['end_to_end']:,.1f} | {r['steady']:,.1f} [{r['steady_lo']:,.1f}-{r['steady_hi']:,.1f}] | "
              f"{' | '.join(ratios)} | {r['first_epoch_s']:.1f} | {r['peak_mb']:,.0f} | {mfu} |")
    print()
    for loop, r in ran.items():
        if "vs_plain_same_process" in r:
            print(f"{loop}: {r['vs_plain_same_process']:.2f}x the plain loop at the same precision (median of "
                  f"{args.pairs} interleaved epoch pairs in its process; plain {r['plain_samples_per_s']:,.1f}/s)"
                  + (f", {r['captures']} graph buckets captured" if r.get("captures") else ""))
    for base in ("bertlearn fit defaults", "bertlearn fit is_fp16"):
        e = ran.get(base)
        for variant in (" compiled", " graphs forced") if base.endswith("is_fp16") else (" compiled",):
            name = base.replace(" defaults", " fp32") + variant
            c = ran.get(name)
            if e and c:
                # one-time cost: the variant's first-epoch surplus over its steady epoch, less the eager one's
                cost = (c["first_epoch_s"] - c["rows"] / c["steady"]) - (e["first_epoch_s"] - e["rows"] / e["steady"])
                saved = 1 / e["steady"] - 1 / c["steady"]
                even = f"pays back after {cost / saved:,.0f} samples" if saved > 0 else "never pays back"
                how = "graphed by 'auto'" if e.get("captures") else "eager"
                print(f"{name}: {c['steady'] / e['steady']:.2f}x the {base} fit ({how}) in steady state, one-time "
                      f"cost {cost:.1f} s, {even}")
    print(f"\nmachine: {describe()}")
    if gpu is None:
        # CPU: the step is compute-bound, and fastai's loop must cost under 5% of it (issue 8's CPU target)
        for fit in ("bertlearn fit defaults", "bertlearn fit is_fp16"):
            if fit in ran and "vs_plain_same_process" in ran[fit]:
                ratio = ran[fit]["vs_plain_same_process"]
                assert ratio >= 0.95, f"{fit} runs at {ratio:.2f}x the plain loop (fastai's overhead must stay under 5%)"
    else:
        # GPU: the eager step is host-bound; the graphed fit is the speed path and must stay far ahead of the plain
        # eager loop (4.0-4.3x measured on an H200)
        for fit in ("bertlearn fit is_fp16 graphs forced",):
            if fit in ran and "vs_plain_same_process" in ran[fit]:
                ratio = ran[fit]["vs_plain_same_process"]
                assert ratio >= 2.0, f"{fit} runs at only {ratio:.2f}x the plain eager loop"


if __name__ == "__main__":
    main()
