"""Masked-LM domain adaptation on Sentiment140: does the MLM validation loss fall, and does it change accuracy?

    python bench/mlm_adaptation.py [--corpus-rows 100000] [--mlm-epochs 1] [--cls-rows 4000] [--seeds 0 1 2]

1. Masked-LM training of the packaged all-MiniLM-L6-v2 on the tweets of sentiment140/train_100k.csv (90/10
   split); validation loss and perplexity before training and after each epoch (fixed validation masks).
2. A sentiment classifier fine-tuned on `--cls-rows` labelled tweets from the same file, started from the
   original and from the adapted encoder (same rows, seeds, schedule); accuracy on sentiment140/test_binary.csv
   (359 hand-labelled tweets). Prints markdown tables and the machine.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd

sys.path.insert(0, str(Path(__file__).resolve().parent))
from machine import DATA_ROOT, describe  # noqa: E402

from bertlearn import BertDataBunch, BertLearner, BertLMDataBunch, BertLMLearner  # noqa: E402

DATA = DATA_ROOT / "sentiment140"


def classify(encoder: str | None, train: pd.DataFrame, test: pd.DataFrame, seed: int, out: Path) -> float:
    db = BertDataBunch.from_df(train, None, encoder, bs=32, maxlen=64, seed=seed, valid_pct=0.1)
    learner = BertLearner.from_pretrained_model(db, encoder, None, None, None, output_dir=out, seed=seed)
    with learner.no_bar(), learner.no_logging():
        learner.fit(2, lr=1e-4)
    pred = learner.predict_labels(test["text"].tolist())
    return float(np.mean(np.asarray(pred) == test["label"].to_numpy()))


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--corpus-rows", type=int, default=100_000)
    ap.add_argument("--mlm-epochs", type=int, default=1)
    ap.add_argument("--mlm-lr", type=float, default=1e-4)
    ap.add_argument("--cls-rows", type=int, default=4000)
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    args = ap.parse_args()
    tweets = pd.read_csv(DATA / "train_100k.csv")
    test = pd.read_csv(DATA / "test_binary.csv")

    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        corpus = tweets["text"].astype(str).head(args.corpus_rows).tolist()
        lm_db = BertLMDataBunch.from_raw_corpus(corpus, None, bs=64, maxlen=64, seed=0)
        lm = BertLMLearner.from_pretrained_model(lm_db, None, output_dir=tmp / "lm", seed=0)
        rows = [("before training", lm.validate(quiet=True))]
        t0 = time.perf_counter()
        with lm.no_bar():
            lm.fit(args.mlm_epochs, lr=args.mlm_lr)
        minutes = (time.perf_counter() - t0) / 60
        for epoch, values in enumerate(lm.epoch_results()):
            rows.append((f"after epoch {epoch + 1}", {"loss": values["valid_loss"], "perplexity": values["perplexity"]}))
        adapted = str(lm.save_model(tmp / "adapted"))

        print(f"\n## Masked-LM on {len(lm_db.train_ds):,} Sentiment140 tweets ({len(lm_db.valid_ds):,} held out), "
              f"all-MiniLM-L6-v2, maxlen 64, bs 64, lr {args.mlm_lr:g}, {minutes:.1f} min\n")
        print("| | valid MLM loss | valid perplexity |\n|---|---|---|")
        for name, r in rows:
            print(f"| {name} | {r['loss']:.4f} | {float(r['perplexity']):.2f} |")

        sample = tweets.sample(n=args.cls_rows, random_state=0)
        results = {"original": [], "adapted": []}
        for seed in args.seeds:
            results["original"].append(classify(None, sample, test, seed, tmp / f"orig{seed}"))
            results["adapted"].append(classify(adapted, sample, test, seed, tmp / f"adapted{seed}"))
            print(f"RESULT | seed {seed} | original {results['original'][-1]:.4f} | adapted "
                  f"{results['adapted'][-1]:.4f} |", flush=True)

    print(f"\n## Sentiment140 test_binary accuracy ({len(test)} tweets), classifier on {args.cls_rows:,} labelled "
          f"tweets, 2 epochs, lr 1e-4, seeds {args.seeds}\n")
    print("| encoder | accuracy per seed | mean |\n|---|---|---|")
    for name, accs in results.items():
        print(f"| {name} all-MiniLM-L6-v2 | {', '.join(f'{a:.4f}' for a in accs)} | {np.mean(accs):.4f} |")
    diff = np.mean(results["adapted"]) - np.mean(results["original"])
    print(f"\nadapted minus original: {diff:+.4f} (mean over {len(args.seeds)} seeds)")
    print(f"machine: {describe()}")


if __name__ == "__main__":
    main()
