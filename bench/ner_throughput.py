"""NER speed with issue 23's method: `BertNERLearner.fit` against the Hugging Face Trainer and plain PyTorch loops; `BertNERPredictor.predict_batch` against `pipeline('token-classification')`; WNUT-17, one run.

    python bench/ner_throughput.py [--rows 1024] [--epochs 4] [--bs 32] [--maxlen 128] [--texts 1000] [--pairs 3]
        [--loops "bertlearn fit defaults,HF Trainer defaults,..."] [--model FOLDER] [--no-predict] [--json FILE]

Training: every loop in its own process, ONE call of `--epochs` epochs on the first `--rows` training sentences,
clocked from the call to its last step with a mark at every epoch's end (the device synchronised). Headline = end
to end (all samples / the whole call: the Trainer's setup inside `train()`, fit's callbacks, graph captures all
count); second column = steady state, the median of epochs 2..N with the slowest and fastest. Same for every loop.
- bertlearn fit defaults (float32) / is_fp16 (bf16 autocast where native): `fit(epochs, lr)`, one one-cycle call.
- HF Trainer defaults: `TrainingArguments` defaults (float32, random order) with the same batch size, rate and
  epochs, `DataCollatorForTokenClassification` (pads each batch, labels with -100); HF Trainer best: the same with
  bf16 (where native), `group_by_length` and `logging_nan_inf_filter=False`.
  fast-bert's `BertNERLearner` wraps this Trainer (../shared/reference/peers.md), so these rows are also what
  fast-bert's NER users got; there is no separate fast-bert loop here.
- plain loop fp32 / bf16: bertlearn's own batches, cross-entropy with -100, fused AdamW, OneCycleLR, clipping.
The fit rows also time `--pairs` interleaved plain-loop/fit epoch pairs in their process (the median of the
per-pair ratios: fastai's overhead, asserted >= 0.95x on a CPU).
Prediction (its own process): a model fine-tuned one epoch and saved, the first `--texts` test sentences as raw
text, entities with character offsets (aggregation "first" on both sides). Every side: one untimed warm-up call on
64 texts, then the median of 3 calls (slowest-fastest). The standalone `BertNERPredictor` on the saved folder in
float32 and bf16; the pipeline in float32 and bfloat16 weights, each swept over batch sizes 1, 8, 32, ... 512 until
one is slower than the best before it; and a ceiling no predictor that batches by sorted length can pass at its
precision: the model's forward alone on the same sorted, pre-tokenized batches (no tokenization, no decoding) at
batch sizes 8, 16, 32, 64 (`--ceiling-bs`), its best taken.
Prints markdown tables and the machine.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

START = time.perf_counter()  # --budget-s counts from here: torch's import below is inside it

import numpy as np  # noqa: E402
import torch  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parent))
from machine import DATA_ROOT, describe  # noqa: E402
from train_throughput import EpochClock, PlainLoop, clock_result, peak_mb, sync  # noqa: E402

WNUT = DATA_ROOT / "wnut17"
LOOPS = ["bertlearn fit defaults", "HF Trainer defaults", "bertlearn fit is_fp16", "HF Trainer best", "plain loop fp32",
         "plain loop bf16"]


def data(args: argparse.Namespace, device: torch.device):
    from bertlearn import BertNERDataBunch
    from bertlearn.data import TaggedSentences, read_conll
    full = read_conll(WNUT / "train.conll")
    rows = min(args.rows, len(full))
    train = TaggedSentences(full.words[:rows], full.tags[:rows], source="train")
    return BertNERDataBunch.from_sentences(train, train, args.model, bs=args.bs, maxlen=args.maxlen, seed=0,
                                           device=device)


def fresh_model(db, model: str | None, attn: str | None = None):
    from transformers import AutoModelForTokenClassification

    from bertlearn.model import resolve_pretrained
    labels = db.labels
    extra = {"attn_implementation": attn} if attn else {}
    return AutoModelForTokenClassification.from_pretrained(resolve_pretrained(model), num_labels=len(labels),
                                                           id2label=dict(enumerate(labels)),
                                                           label2id={l: i for i, l in enumerate(labels)}, **extra)


def hf_trainer(model, ds, tok, device, args: argparse.Namespace, *, best: bool, clock: EpochClock) -> None:
    from transformers import DataCollatorForTokenClassification, Trainer, TrainerCallback, TrainingArguments

    from bertlearn.device import native_bf16

    class Rows(torch.utils.data.Dataset):
        def __len__(self):
            return len(ds)

        def __getitem__(self, i):
            n = int(ds.lengths[i])
            return {"input_ids": ds.ids[i][:n].astype(np.int64).tolist(),
                    "labels": ds.targets[i][:n].astype(np.int64).tolist()}

    class Clock(TrainerCallback):
        def on_epoch_end(self, *a, **k):
            clock.mark()

    best_args = dict(bf16=native_bf16(device), train_sampling_strategy="group_by_length",
                     logging_nan_inf_filter=False) if best else {}
    targs = TrainingArguments(output_dir=str(Path(args.workdir) / "hf"), per_device_train_batch_size=args.bs,
                              learning_rate=args.lr, num_train_epochs=args.epochs, use_cpu=device.type == "cpu",
                              report_to=[], disable_tqdm=True, save_strategy="no", **best_args)
    trainer = Trainer(model=model, args=targs, train_dataset=Rows(), callbacks=[Clock()],
                      data_collator=DataCollatorForTokenClassification(tok))
    clock.mark()  # the call: the Trainer's setup inside train() counts, as fit's does
    trainer.train()


def train_child(loop: str, args: argparse.Namespace) -> dict:
    from bertlearn import BertNERLearner
    from bertlearn.device import native_bf16
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    db = data(args, device)
    ds = db.train_ds
    n, clock, out = len(ds), EpochClock(device), {"loop": loop}
    if loop.startswith("bertlearn fit"):
        from fastai.callback.core import Callback
        learner = BertNERLearner.from_pretrained_model(db, args.model, args.workdir, device, seed=0,
                                                       is_fp16="is_fp16" in loop)

        class Clock(Callback):
            order = 100

            def after_epoch(self):
                clock.mark()

        with learner.no_bar(), learner.no_logging():
            clock.mark()
            learner.fit(args.epochs, lr=args.lr, validate=False, cbs=[Clock()])
            out.update(clock_result(clock, n, args.epochs), peak_mb=peak_mb(device))
            bf16 = any(type(cb).__name__ == "BF16Autocast" for cb in learner.cbs)
            plain_s, fit_s = [], []
            if args.pairs:
                plain = PlainLoop(fresh_model(db, args.model).to(device), device, args.lr, bf16,
                                  (args.pairs + 1) * len(db.train))
                plain.epoch(list(db.train)[:4])
            for _ in range(args.pairs):
                sync(device)
                t0 = time.perf_counter()
                plain.epoch(db.train)  # draws its batches as fit does
                sync(device)
                plain_s.append(time.perf_counter() - t0)
                t0 = time.perf_counter()
                learner.fit(1, lr=args.lr, validate=False)
                sync(device)
                fit_s.append(time.perf_counter() - t0)
        if plain_s:
            # each fit epoch against the plain epoch just before it: a slow phase of a shared machine hits both
            out["vs_plain_same_process"] = float(np.median(np.array(plain_s) / np.array(fit_s)))
    elif loop.startswith("HF Trainer"):
        hf_trainer(fresh_model(db, args.model).to(device), ds, db.tokenizer, device, args,
                   best=loop.endswith("best"), clock=clock)
        out.update(clock_result(clock, n, args.epochs))
    else:
        bf16 = loop.endswith("bf16")
        if bf16 and not native_bf16(device):
            return {"loop": loop, "skipped": "no bf16 hardware"}
        plain = PlainLoop(fresh_model(db, args.model).to(device), device, args.lr, bf16, args.epochs * len(db.train))
        clock.mark()
        for _ in range(args.epochs):
            plain.epoch(db.train)  # fit's own loader: the same batches fit draws
            clock.mark()
        out.update(clock_result(clock, n, args.epochs))
    out["rows"] = n
    out.setdefault("peak_mb", peak_mb(device))
    return out


# ---------------------------------------------------------------- prediction

def timed(fn, texts: list[str], repeats: int = 3) -> tuple[dict, object]:
    """One untimed warm-up call on 64 texts, then the median of `repeats` calls on all: texts/s [slowest-fastest],
    and the last call's output (so agreement checks need no extra, untimed full call that would warm one side)."""
    fn(texts[:64])
    rates = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        out = fn(texts)
        sync_all()
        rates.append(len(texts) / (time.perf_counter() - t0))
    return {"rate": float(np.median(rates)), "lo": min(rates), "hi": max(rates)}, out


def sync_all() -> None:
    if torch.cuda.is_available():
        torch.cuda.synchronize()


def forward_only(model, encoder, texts: list[str], bs: int, amp_dtype, device):
    """The model's forward alone on the predictor's batches (sorted by length, padded per batch), tokenized before
    the clock: what no predictor at this precision can beat."""
    from bertlearn.data import TaggedDataLoader
    from bertlearn.tasks.token_classification import text_words
    words = text_words(encoder.tokenizer, texts)
    ds = encoder.dataset_from_pieces([[w["ids"] for w in ws] for ws in words],
                                     [[w["tokens"][0] for w in ws] for ws in words])
    batches = [(b[0].to(device), b[1].to(device)) for b in TaggedDataLoader(ds, bs=bs, device=device)]

    def run(some: list[str]) -> None:
        # the warm-up's 64 texts run batches covering 64 rows, as the other sides' warm-ups do
        rows = 0
        with torch.inference_mode(), torch.autocast(device.type, dtype=amp_dtype or torch.float32,
                                                    enabled=amp_dtype is not None):
            for ids, mask in batches:
                if rows >= len(some):
                    break
                model(input_ids=ids, attention_mask=mask).logits.float()
                rows += len(ids)
    return run


def predict_child(args: argparse.Namespace) -> dict:
    from transformers import pipeline

    from bertlearn import BertNERLearner, BertNERPredictor
    from bertlearn.data import read_conll
    from bertlearn.device import native_bf16
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    db = data(args, device)
    learner = BertNERLearner.from_pretrained_model(db, args.model, args.workdir, device, seed=0)
    with learner.no_bar(), learner.no_logging():
        learner.fit(1, lr=args.lr, validate=False)
    path = learner.save_model(Path(args.workdir) / "model")
    test = read_conll(WNUT / "test.conll")
    texts = [" ".join(w) for w in test.words[:args.texts]]
    precisions = ["fp32"] + (["bf16"] if native_bf16(device) else [])
    result = {"rows": [], "texts": len(texts), "agree_with_fp32": {}, "same_as_pipeline": None}
    rows = result["rows"]
    partial = Path(args.json + ".predict-partial") if args.json else None
    key = lambda ents: [(e["entity_group"], e["start"], e["end"]) for e in ents]  # noqa: E731

    def add(row: dict) -> None:  # each row as it is measured: a run stopped by its budget keeps them
        rows.append(row)
        print(row, file=sys.stderr, flush=True)
        if partial:
            partial.write_text(json.dumps(result))

    reference = None
    for precision in precisions:
        pred = BertNERPredictor(path, device=device, precision=precision)
        r, got = timed(pred.predict_batch, texts)
        reference = reference or got  # fp32 runs first
        result["agree_with_fp32"][precision] = sum(key(a) == key(b) for a, b in zip(got, reference))
        add({"side": f"BertNERPredictor, precision={precision!r}", "precision": precision, **r})
        kinds = [("bf16 autocast" if precision == "bf16" else "fp32", pred.model,
                  torch.bfloat16 if precision == "bf16" else None)]
        if precision == "bf16":  # bf16 weights, as the pipeline loads them (no autocast, LayerNorm in bf16 too)
            import copy
            kinds.append(("bfloat16 weights", copy.deepcopy(pred.model).to(torch.bfloat16), None))
        for kind, model, amp in kinds:
            for bs in args.ceiling_bs:
                r, _ = timed(forward_only(model, pred.encoder, texts, bs, amp, device), texts)
                add({"side": f"model forward alone, {kind}, sorted batches of {bs}", "precision": precision,
                     "ceiling": kind, **r})
        del pred, kinds
    for precision in precisions:
        dtype = torch.bfloat16 if precision == "bf16" else torch.float32
        pipe = pipeline("token-classification", model=str(path), aggregation_strategy="first", device=device,
                        dtype=dtype)
        best, best_lo = 0.0, 0.0
        for bs in args.pipeline_bs:
            r, got = timed(lambda t, bs=bs: pipe(t, batch_size=bs), texts)
            if precision == "fp32" and result["same_as_pipeline"] is None:
                result["same_as_pipeline"] = sum(key(a) == key(b) for a, b in zip(reference, got))
            add({"side": f"pipeline, {'bfloat16' if precision == 'bf16' else 'float32'} weights, batch_size={bs}",
                 "precision": precision, "pipeline": True, **r})
            # its throughput has stopped rising beyond the noise: under the best size's slowest call (a dip
            # within the spread does not end the sweep), as predict_throughput.py's sweep
            if r["rate"] < best_lo:
                break
            if r["rate"] > best:
                best, best_lo = r["rate"], r["lo"]
    return result


# ---------------------------------------------------------------- parent

def run_child(kind: str, options: list[str], timeout: float | None = None) -> tuple[dict | None, str]:
    """One part in a fresh process: its result, or None and the end of its stderr ("timeout" when killed)."""
    cmd = [sys.executable, str(Path(__file__).resolve()), "--child", kind, *options]
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


def report_train(results: dict, args: argparse.Namespace) -> dict:
    ran = {k: v for k, v in results.items() if "skipped" not in v}
    ratios = {}
    if not ran:
        return ratios
    n = next(iter(ran.values()))["rows"]
    print(f"\nWNUT-17 train, first {n} sentences, bs {args.bs}, maxlen {args.maxlen}, lr {args.lr}, "
          f"{args.model or 'the packaged all-MiniLM-L6-v2'}; each loop in its own process, one call of {args.epochs} "
          f"epochs. End to end: all sentences / the whole call; steady: median of epochs 2-{args.epochs} "
          "[slowest-fastest]. Ratios are end to end.\n")
    base = {k: ran[k]["end_to_end"] for k in ("HF Trainer defaults", "HF Trainer best") if k in ran}
    print("| loop | end to end sentences/s | steady sentences/s | vs HF Trainer defaults | vs HF Trainer best | "
          "first epoch s | peak memory MB |\n|---|---|---|---|---|---|---|")
    for loop, r in results.items():
        if "skipped" in r:
            print(f"| {loop} | skipped: {r['skipped']} | | | | | |")
            continue
        vs = [f"{r['end_to_end'] / base[k]:.2f}x" if k in base else "" for k in ("HF Trainer defaults", "HF Trainer best")]
        print(f"| {loop} | {r['end_to_end']:,.1f} | {r['steady']:,.1f} [{r['steady_lo']:,.1f}-"
              f"{r['steady_hi']:,.1f}] | {' | '.join(vs)} | {r['first_epoch_s']:.1f} | {r['peak_mb']:,.0f} |")
        if "vs_plain_same_process" in r:
            ratios[loop] = r["vs_plain_same_process"]
    for loop, ratio in ratios.items():
        print(f"{loop}: {ratio:.2f}x the plain loop at the same precision (median of {args.pairs} interleaved "
              "epoch pairs in its process)")
    return ratios


def report_predict(pred: dict) -> None:
    m, rows = pred["texts"], pred["rows"]
    best = {p: max((r["rate"] for r in rows if r.get("pipeline") and r["precision"] == p), default=None)
            for p in ("fp32", "bf16")}
    if pred.get("incomplete"):
        print(f"\nPREDICTION INCOMPLETE: {pred['incomplete']}")
    print(f"\nPrediction: {m} WNUT-17 test sentences as raw text, entities with character offsets (aggregation "
          "'first'); every side one warm-up call on 64 texts, then the median of 3 calls [slowest-fastest]. "
          f"bertlearn's float32 entities equal the float32 pipeline's for {pred['same_as_pipeline']} of {m} texts; "
          f"its bf16 entities equal its float32 ones for {pred['agree_with_fp32'].get('bf16', '-')} of {m}.\n")
    print("| side | texts/s | vs best float32 pipeline | vs best bf16 pipeline |\n|---|---|---|---|")
    for r in rows:
        vs = [f"{r['rate'] / b:.2f}x" if b else "" for b in best.values()]
        print(f"| {r['side']} | {r['rate']:,.1f} [{r['lo']:,.1f}-{r['hi']:,.1f}] | {' | '.join(vs)} |")
    for p in ("fp32", "bf16"):
        ours = next((r["rate"] for r in rows if r["side"].startswith("BertNERPredictor") and r["precision"] == p),
                    None)
        if ours and best[p]:
            print(f"{p}: the predictor is {ours / best[p]:.2f}x the best pipeline at the same precision")
        for kind in dict.fromkeys(r["ceiling"] for r in rows if r.get("ceiling") and r["precision"] == p):
            ceiling = max(r["rate"] for r in rows if r.get("ceiling") == kind and r["precision"] == p)
            if best[p]:
                print(f"  the model's forward alone ({kind}), at its best batch size: {ceiling / best[p]:.2f}x it")


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--rows", type=int, default=1024, help="WNUT-17 training sentences")
    ap.add_argument("--epochs", type=int, default=4, help="epochs of the one timed call (the first is the warm-up "
                                                          "of the steady-state column)")
    ap.add_argument("--bs", type=int, default=32)
    ap.add_argument("--maxlen", type=int, default=128)
    ap.add_argument("--lr", type=float, default=1e-4)
    ap.add_argument("--pairs", type=int, default=3, help="interleaved plain/fit epoch pairs for the fit rows")
    ap.add_argument("--texts", type=int, default=1000, help="test sentences to predict")
    ap.add_argument("--pipeline-bs", type=int, nargs="+", default=[1, 8, 32, 64, 128, 256, 512])
    ap.add_argument("--ceiling-bs", type=int, nargs="+", default=[8, 16, 32, 64],
                    help="batch sizes of the forward-only ceiling (its best is the ceiling)")
    ap.add_argument("--loops", default=",".join(LOOPS))
    ap.add_argument("--no-predict", action="store_true", help="the training table only")
    ap.add_argument("--model", default=None, help="model folder (default: the packaged all-MiniLM-L6-v2)")
    ap.add_argument("--workdir", default="runs/ner_throughput")
    ap.add_argument("--json", default=None, help="also write the results here")
    ap.add_argument("--budget-s", type=float, default=None,
                    help="seconds from this script's start (a GPU lease's limit): a part starts only with 30 s left "
                         "and is stopped at the budget; the tables still come out with what finished")
    ap.add_argument("--child", default=None, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.epochs < 2:
        ap.error("--epochs must be at least 2: the first epoch is the warm-up of the steady-state column")
    if args.child:
        out = predict_child(args) if args.child == "predict" else train_child(args.child, args)
        print("RESULT " + json.dumps(out))
        return
    loops = args.loops.split(",") if args.loops else []
    for loop in loops:
        if loop not in LOOPS:
            ap.error(f"--loops: {loop!r} is not one of {LOOPS}")
    options = [a for a in sys.argv[1:]]
    machine, results, pred = describe(), {}, None

    def save() -> None:  # after every loop, so a run stopped from outside keeps what finished
        if args.json:
            Path(args.json).write_text(json.dumps({"args": vars(args), "machine": machine, "train": results,
                                                   "predict": pred}, indent=1))

    def left() -> float | None:
        return None if args.budget_s is None else args.budget_s - (time.perf_counter() - START)

    for loop in loops:
        t0 = time.perf_counter()
        if left() is not None and left() < 30:
            results[loop] = {"loop": loop, "skipped": f"not started: under 30 s of --budget-s {args.budget_s:g} left"}
            save()
            continue
        result, error = run_child(loop, options, timeout=left())
        if error == "timeout":
            result = {"loop": loop, "skipped": f"stopped at --budget-s {args.budget_s:g}"}
        elif result is None:  # one broken loop must not cost the others' numbers
            print(f"{loop} failed:\n{error}", file=sys.stderr)
            result = {"loop": loop, "skipped": f"failed ({error.split(':')[0]}), see stderr"}
        results[loop] = result
        save()
        print(f"{loop}: {time.perf_counter() - t0:.0f} s {json.dumps(result)}", file=sys.stderr, flush=True)
    if not args.no_predict and (left() is None or left() >= 30):
        pred, error = run_child("predict", options, timeout=left())
        partial = Path(args.json + ".predict-partial") if args.json else None
        if pred is None and partial is not None and partial.is_file():
            pred = json.loads(partial.read_text())  # the rows measured before the stop
            pred["incomplete"] = f"stopped ({error.split(':')[0]}); the rows measured before it"
        if pred is None:
            print(f"prediction failed:\n{error}", file=sys.stderr)
        save()
    elif not args.no_predict:
        print(f"prediction not started: under 30 s of --budget-s {args.budget_s:g} left")
    ratios = report_train(results, args)
    if pred:
        report_predict(pred)
    print(f"\nmachine: {machine}")
    if not torch.cuda.is_available():
        for loop, ratio in ratios.items():
            assert ratio >= 0.95, f"{loop} ran at {ratio:.2f}x the plain loop (target >= 0.95x)"


if __name__ == "__main__":
    main()
