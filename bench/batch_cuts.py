"""Prediction calls of N texts with and without padding-aware batch cuts (`bertlearn.data.padding_aware_cuts`)
and linear layers that skip padded rows (`bertlearn.unpadded`).

    python bench/batch_cuts.py [--texts 2000] [--calls 2000,64,32,8] [--settings none,128,128+skip] [--passes 3]
        [--precisions fp32,bf16]

The packaged MiniLM with a fresh 2-label head (speed does not depend on the weights), saved once and opened with
`BertClassificationPredictor` (bs 64) on the CPU; `--texts` Sentiment140 tweets predicted in calls of N texts
each (what a server's batches of concurrent requests look like at N = 8-64; one call of all texts is the offline
case). Each setting is the predictor's loader with `batch_overhead` set to it ("none": every 64 rows, the
batching before the cuts), and `skip_padding` on where it ends in "+skip" (off otherwise). One warm-up call on 64 texts, then `--passes` passes over all texts, the settings
interleaved pass by pass (so a slow phase of the machine hits every setting); the median texts/s and the spread
are printed, with the machine.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

import pandas as pd

sys.path.insert(0, str(Path(__file__).resolve().parent))
from machine import DATA_ROOT, bench_tokenizer, describe  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--texts", type=int, default=2000)
    ap.add_argument("--calls", default="2000,64,32,8", help="texts per call")
    ap.add_argument("--settings", default="none,128,128+skip",
                    help="batch_overhead in tokens (none: every bs rows), +skip: linear layers skip padded rows")
    ap.add_argument("--passes", type=int, default=3)
    ap.add_argument("--precisions", default="fp32,bf16")
    args = ap.parse_args()

    from bertlearn import BertClassificationPredictor, BertDataBunch, BertLearner
    from bertlearn.data import BertDataLoader
    from bertlearn.device import native_bf16
    df = pd.read_csv(DATA_ROOT / "sentiment140" / "train_100k.csv").sample(n=args.texts, random_state=0)
    texts = df["text"].astype(str).tolist()
    settings = []
    for name in args.settings.split(","):
        o, _, skip = name.partition("+")
        settings.append((name, None if o == "none" else int(o), skip == "skip"))
    calls = [int(c) for c in args.calls.split(",")]
    with tempfile.TemporaryDirectory() as tmp:
        db = BertDataBunch.from_df(df.head(256), df.head(64), bench_tokenizer(), bs=32, maxlen=128, device="cpu")
        path = BertLearner.from_pretrained_model(db, None, None, "cpu", None, output_dir=tmp).save_model(
            Path(tmp) / "model")
        rows = []
        for precision in args.precisions.split(","):
            if precision == "bf16" and not native_bf16("cpu"):
                print("bf16: no bf16 hardware here, skipped")
                continue
            pred = BertClassificationPredictor(path, device="cpu", precision=precision, bs=64)
            pred.predict_batch(texts[:64])
            rates: dict = {}
            for _ in range(args.passes):
                for name, overhead, skip in settings:
                    def loader(t, device=None, overhead=overhead):
                        return BertDataLoader(pred.encoder.dataset(t), bs=pred.bs, device=device,
                                              batch_overhead=overhead)
                    pred.loader, pred.skip_padding = loader, skip
                    for n in calls:
                        t0 = time.perf_counter()
                        for i in range(0, len(texts), n):
                            pred.predict_batch(texts[i:i + n])
                        rates.setdefault((name, n), []).append(len(texts) / (time.perf_counter() - t0))
            if any(skip for _, _, skip in settings) and not pred.padding_skippable:
                sys.exit("the predictor's probe refused skipping padded rows: the +skip settings would not skip")
            for n in calls:
                cells = []
                for name, _, _ in settings:
                    r = rates[(name, n)]
                    cells.append(f"{statistics.median(r):,.0f} [{min(r):,.0f}-{max(r):,.0f}]")
                base = statistics.median(rates[(settings[0][0], n)])
                ratios = [statistics.median(rates[(name, n)]) / base for name, _, _ in settings[1:]]
                rows.append(f"| {precision} | {n:,} | {' | '.join(cells)} | "
                            + " | ".join(f"{r:.2f}x" for r in ratios) + " |")
    names = [("every 64 rows" if o is None else f"overhead {o}") + (", rows skipped" if skip else "")
             for _, o, skip in settings]
    print(f"\n{args.texts:,} Sentiment140 tweets in calls of N, BertClassificationPredictor bs 64 on the CPU, "
          f"median of {args.passes} interleaved passes [slowest-fastest], texts/s\n")
    print(f"| precision | texts per call | {' | '.join(names)} | "
          + " | ".join(f"{n} / {names[0]}" for n in names[1:]) + " |")
    print("|---|---|" + "---|" * (2 * len(names) - 1))
    print("\n".join(rows))
    print(f"\nmachine: {describe()}")


if __name__ == "__main__":
    main()
