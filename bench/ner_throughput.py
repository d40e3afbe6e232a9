"""NER speed: `BertNERLearner.fit` against a plain PyTorch token-classification loop and the Hugging Face Trainer, and
`predict_batch` against `pipeline('token-classification')`, on WNUT-17 sentences, in one run.

    python bench/ner_throughput.py [--rows 1024] [--epochs 3] [--bs 32] [--maxlen 128] [--texts 1000]

Every training loop gets the same warm-up (one untimed epoch over the same rows) and the same statistic (the median
of `--epochs` timed epochs, min and max shown):
- plain loop: bertlearn's own batches (length-grouped, padded per batch), cross-entropy with -100, AdamW (fused on a
  GPU), OneCycleLR, gradient clipping: what a careful hand-written loop does. It runs in the fit's process,
  interleaved epoch by epoch with `fit`, and the fit/plain ratio is the median of the per-pair ratios.
- HF Trainer: `DataCollatorForTokenClassification` (dynamic padding, labels padded with -100), group_by_length,
  its own process; epoch times come from a `TrainerCallback`.
- bertlearn `fit(1)` per epoch (one-cycle over that epoch), validation off.
Prediction: the same texts (test sentences joined with spaces) through `learner.predict_batch` and through the
pipeline (aggregation "first", as predict_batch) at batch sizes 8, 32, 64, 128 (and in bfloat16 with --bf16); one
untimed call each, then the median of 3. Prints the tables and the machine; asserts fit >= 0.95x the plain loop on a CPU.
"""

from __future__ import annotations

import argparse
import json
import resource
import statistics
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from machine import DATA_ROOT, describe  # noqa: E402

WNUT = DATA_ROOT / "wnut17"


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()


def data(args: argparse.Namespace):
    from bertlearn import BertNERDataBunch
    from bertlearn.data import TaggedSentences, read_conll
    full = read_conll(WNUT / "train.conll")
    rows = min(args.rows, len(full))
    train = TaggedSentences(full.words[:rows], full.tags[:rows], source="train")
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    db = BertNERDataBunch.from_sentences(train, train, args.model, bs=args.bs, maxlen=args.maxlen, seed=0, device=device)
    return db, device


def plain_loop(model, batches, device, lr: float, bf16: bool) -> None:
    opt = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=0.01, fused=device.type == "cuda")
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=lr, total_steps=max(len(batches), 8), pct_start=0.25)
    model.train()
    for ids, mask, y in batches:
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=bf16):
            logits = model(input_ids=ids, attention_mask=mask).logits
        loss = torch.nn.functional.cross_entropy(logits.float().view(-1, logits.shape[-1]), y.view(-1),
                                                 ignore_index=-100)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        sched.step()
        opt.zero_grad(set_to_none=True)


def fresh_model(db, model: str | None):
    from transformers import AutoModelForTokenClassification

    from bertlearn.model import resolve_pretrained
    labels = db.labels
    return AutoModelForTokenClassification.from_pretrained(resolve_pretrained(model), num_labels=len(labels),
                                                           id2label=dict(enumerate(labels)),
                                                           label2id={l: i for i, l in enumerate(labels)})


def child_fit(args: argparse.Namespace) -> dict:
    from bertlearn import BertNERLearner
    db, device = data(args)
    learner = BertNERLearner.from_pretrained_model(db, args.model, "runs/ner_throughput", device, seed=0,
                                                   is_fp16=args.bf16)
    bf16 = any(type(cb).__name__ == "BF16Autocast" for cb in learner.cbs)
    plain = fresh_model(db, args.model).to(device)
    fit_t, plain_t = [], []
    with learner.no_bar(), learner.no_logging():
        for i in range(args.epochs + 1):  # the first pair is the warm-up of both
            sync(device)
            t0 = time.perf_counter()
            plain_loop(plain, db.train, device, args.lr, bf16)
            sync(device)
            t1 = time.perf_counter()
            learner.fit(1, lr=args.lr, validate=False)
            sync(device)
            t2 = time.perf_counter()
            if i:
                plain_t.append(t1 - t0), fit_t.append(t2 - t1)
    return {"fit": fit_t, "plain": plain_t, "rows": len(db.train_ds), "bf16": bf16, "peak_mb": _peak(device)}


def child_trainer(args: argparse.Namespace) -> dict:
    from transformers import DataCollatorForTokenClassification, Trainer, TrainerCallback, TrainingArguments

    from bertlearn.device import native_bf16
    db, device = data(args)
    ds = db.train_ds

    class Rows(torch.utils.data.Dataset):
        def __len__(self):
            return len(ds)

        def __getitem__(self, i):
            return {"input_ids": ds.ids[i].astype(np.int64).tolist(), "labels": ds.targets[i].astype(np.int64).tolist()}

    times: list[float] = []

    class Clock(TrainerCallback):
        def on_epoch_begin(self, *a, **k):
            sync(device)
            self.t0 = time.perf_counter()

        def on_epoch_end(self, *a, **k):
            sync(device)
            times.append(time.perf_counter() - self.t0)

    bf16 = args.bf16 and native_bf16(device)
    targs = TrainingArguments(output_dir="runs/ner_throughput/hf", per_device_train_batch_size=args.bs,
                              learning_rate=args.lr, num_train_epochs=args.epochs + 1,
                              train_sampling_strategy="group_by_length", bf16=bf16, use_cpu=device.type == "cpu",
                              save_strategy="no", report_to=[], logging_strategy="no", dataloader_num_workers=0,
                              weight_decay=0.01, max_grad_norm=1.0, disable_tqdm=True)
    trainer = Trainer(model=fresh_model(db, args.model).to(device), args=targs, train_dataset=Rows(),
                      data_collator=DataCollatorForTokenClassification(db.tokenizer), callbacks=[Clock()])
    trainer.train()
    return {"trainer": times[1:], "rows": len(ds), "bf16": bf16, "peak_mb": _peak(device)}


def child_predict(args: argparse.Namespace) -> dict:
    from transformers import pipeline

    from bertlearn import BertNERLearner
    from bertlearn.data import read_conll
    db, device = data(args)
    learner = BertNERLearner.from_pretrained_model(db, args.model, "runs/ner_throughput", device, seed=0,
                                                   is_fp16=args.bf16)
    with learner.no_bar(), learner.no_logging():
        learner.fit(1, lr=args.lr, validate=False)
    path = learner.save_model("runs/ner_throughput/model")
    test = read_conll(WNUT / "test.conll")
    texts = [" ".join(w) for w in test.words[:args.texts]]
    out = {}

    def timed(fn) -> list[float]:
        fn()  # warm-up
        runs = []
        for _ in range(3):
            sync(device)
            t0 = time.perf_counter()
            fn()
            sync(device)
            runs.append(time.perf_counter() - t0)
        return runs

    ours = learner.predict_batch(texts)
    out["bertlearn predict_batch"] = timed(lambda: learner.predict_batch(texts))
    pipe = pipeline("token-classification", model=str(path), aggregation_strategy="first", device=device)
    same = sum(1 for a, b in zip(ours, pipe(texts, batch_size=32))
               if [(e["entity_group"], e["start"], e["end"]) for e in a] ==
               [(e["entity_group"], e["start"], e["end"]) for e in b])
    for bs in (8, 32, 64, 128):
        out[f"pipeline batch_size={bs}"] = timed(lambda: pipe(texts, batch_size=bs))
    if args.bf16:  # the pipeline at the learner's precision too
        pipe16 = pipeline("token-classification", model=str(path), aggregation_strategy="first", device=device,
                          dtype=torch.bfloat16)
        for bs in (32, 128):
            out[f"pipeline batch_size={bs}, dtype=bfloat16"] = timed(lambda: pipe16(texts, batch_size=bs))
    return {"predict": out, "texts": len(texts), "same_entities": same}


def _peak(device: torch.device) -> float:
    if device.type == "cuda":
        return torch.cuda.max_memory_allocated() / 2**20
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def spread(times: list[float], n: int) -> str:
    rates = sorted(n / t for t in times)
    return f"{n / statistics.median(times):,.1f} ({rates[0]:,.1f}-{rates[-1]:,.1f})"


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--rows", type=int, default=1024, help="WNUT-17 training sentences")
    ap.add_argument("--epochs", type=int, default=3, help="timed epochs per loop, after one warm-up epoch")
    ap.add_argument("--bs", type=int, default=32)
    ap.add_argument("--maxlen", type=int, default=128)
    ap.add_argument("--lr", type=float, default=1e-4)
    ap.add_argument("--texts", type=int, default=1000, help="test sentences to predict")
    ap.add_argument("--bf16", action="store_true", help="is_fp16=True / bf16 for every loop (where native)")
    ap.add_argument("--model", default=None, help="model folder (default: the packaged all-MiniLM-L6-v2)")
    ap.add_argument("--child", default=None, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child:
        fn = {"fit": child_fit, "trainer": child_trainer, "predict": child_predict}[args.child]
        print("RESULT " + json.dumps(fn(args)))
        return
    results = {}
    for part in ("fit", "trainer", "predict"):
        cmd = [sys.executable, __file__, "--child", part] + [a for a in sys.argv[1:]]
        t0 = time.perf_counter()
        run = subprocess.run(cmd, capture_output=True, text=True)
        if run.returncode != 0:
            sys.exit(f"{part} failed:\n{run.stderr[-3000:]}")
        line = next(l for l in run.stdout.splitlines() if l.startswith("RESULT "))
        results[part] = json.loads(line[7:])
        print(f"{part}: {time.perf_counter() - t0:.0f} s", file=sys.stderr)
    fit, trainer, pred = results["fit"], results["trainer"], results["predict"]
    n = fit["rows"]
    ratio_plain = statistics.median(p / f for p, f in zip(fit["plain"], fit["fit"]))
    ratio_hf = statistics.median(trainer["trainer"]) / statistics.median(fit["fit"])
    print(f"\nWNUT-17 train, first {n} sentences, packaged all-MiniLM-L6-v2, bs {args.bs}, maxlen {args.maxlen}, "
          f"{'bf16' if fit['bf16'] else 'float32'}; one warm-up epoch each, median of {args.epochs} timed epochs "
          "(min-max)\n")
    print("| loop | sentences/s, median (min-max) | vs plain loop | vs HF Trainer | peak memory MB |\n"
          "|---|---|---|---|---|")
    print(f"| bertlearn fit | {spread(fit['fit'], n)} | {ratio_plain:.2f}x (median of per-epoch pairs) | "
          f"{ratio_hf:.2f}x | {fit['peak_mb']:,.0f} (with the plain loop's model) |")
    print(f"| plain PyTorch loop (same process, interleaved) | {spread(fit['plain'], n)} | 1.00x | "
          f"{statistics.median(trainer['trainer']) / statistics.median(fit['plain']):.2f}x | |")
    print(f"| HF Trainer + DataCollatorForTokenClassification | {spread(trainer['trainer'], n)} | | 1.00x | "
          f"{trainer['peak_mb']:,.0f} |")
    m = pred["texts"]
    best = min((k for k in pred["predict"] if k.startswith("pipeline") and "bfloat16" not in k),
               key=lambda k: statistics.median(pred["predict"][k]))
    ours = statistics.median(pred["predict"]["bertlearn predict_batch"])
    print(f"\nprediction: {m} WNUT-17 test sentences as raw text, entities with offsets (aggregation 'first'); "
          f"one untimed call, median of 3 (min-max); the same entities as the pipeline for {pred['same_entities']} of "
          f"{m} texts\n")
    print("| predictor | texts/s | vs best pipeline |\n|---|---|---|")
    for k, v in pred["predict"].items():
        print(f"| {k} | {spread(v, m)} | {statistics.median(pred['predict'][best]) / statistics.median(v):.2f}x |")
    print(f"\nbertlearn predict_batch vs the pipeline at its best in float32 ({best}): "
          f"{statistics.median(pred['predict'][best]) / ours:.2f}x")
    best16 = [k for k in pred["predict"] if "bfloat16" in k]
    if best16:
        b = min(best16, key=lambda k: statistics.median(pred["predict"][k]))
        print(f"bertlearn predict_batch vs the pipeline at its best in bfloat16 ({b}): "
              f"{statistics.median(pred['predict'][b]) / ours:.2f}x")
    print(f"machine: {describe()}")
    if not torch.cuda.is_available():
        assert ratio_plain >= 0.95, f"fit ran at {ratio_plain:.2f}x the plain loop (target >= 0.95x)"


if __name__ == "__main__":
    main()
