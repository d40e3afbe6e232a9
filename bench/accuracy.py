"""Accuracy of the packaged all-MiniLM-L6-v2 fine-tuned with bertlearn on real data (../shared/data).

    python bench/accuracy.py --task trec6 --epochs 3
    python bench/accuracy.py --task sst2 --epochs 1            # full SST-2 train, GLUE dev
    # held out: choose on rows cut from train, then score the chosen saved model on the eval set once
    python bench/accuracy.py --task sst2 --epochs 2 --lr 2e-5 --holdout 872 --save runs/sst2_2e-5
    python bench/accuracy.py --task sst2 --score runs/sst2_2e-5
Prints a table and the machine; numbers go into docs/benchmarks.md.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import pandas as pd
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from machine import DATA_ROOT as DATA, describe  # noqa: E402

from bertlearn import BertDataBunch, BertLearner  # noqa: E402

TASKS = {"sst2": ("sst2/train.csv", "sst2/valid.csv", "SST-2 dev"), "trec6": ("trec6/train.csv", "trec6/test.csv", "TREC-6 test")}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--task", choices=sorted(TASKS), required=True)
    ap.add_argument("--epochs", type=int, default=3)
    ap.add_argument("--lr", type=float, default=1e-4)
    ap.add_argument("--bs", type=int, default=32)
    ap.add_argument("--maxlen", type=int, default=128)
    ap.add_argument("--train-rows", type=int, default=None)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--holdout", type=int, default=None,
                    help="validate on this many rows cut from train (seeded), not on the eval set, which is not read")
    ap.add_argument("--save", default=None, help="save the trained model folder there")
    ap.add_argument("--score", default=None, help="only score this saved model folder on the eval set")
    args = ap.parse_args()
    if args.score:
        return score(args)

    from fastai.torch_core import set_seed
    set_seed(args.seed)
    train_file, eval_file, eval_name = TASKS[args.task]
    train = pd.read_csv(DATA / train_file)
    if args.holdout:  # a dev split cut from train: the eval set stays untouched until --score
        evaluation = train.sample(n=args.holdout, random_state=args.seed)
        train, eval_name = train.drop(evaluation.index), f"held-out {args.holdout} train rows"
    else:
        evaluation = pd.read_csv(DATA / eval_file)
    if args.train_rows:
        train = train.sample(n=args.train_rows, random_state=args.seed)
    db = BertDataBunch.from_df(train, evaluation, None, bs=args.bs, maxlen=args.maxlen)
    learner = BertLearner.from_pretrained_model(db, None, None, None, None, output_dir="runs/bench",
                                                is_fp16=torch.cuda.is_available())
    t0 = time.perf_counter()
    learner.fit(args.epochs, lr=args.lr)
    minutes = (time.perf_counter() - t0) / 60
    acc = learner.validate(quiet=True)["accuracy"]
    print(f"\n| task | train rows | epochs | lr | bs | {eval_name} accuracy | train+eval minutes |")
    print("|---|---|---|---|---|---|---|")
    print(f"| {args.task} | {len(train)} | {args.epochs} | {args.lr:g} | {args.bs} | {acc:.4f} | {minutes:.1f} |")
    print(f"machine: {describe()}")
    if args.save:
        learner.save_model(args.save)


def score(args: argparse.Namespace) -> None:
    """Score a saved model folder on the task's eval set (a held-out run's one look at it)."""
    from bertlearn import BertClassificationPredictor
    _, eval_file, eval_name = TASKS[args.task]
    evaluation = pd.read_csv(DATA / eval_file)
    predictor = BertClassificationPredictor(args.score)
    logits = predictor.predict_logits(evaluation["text"].astype(str).tolist())
    labels = [str(l) for l in predictor.labels]
    truth = torch.tensor([labels.index(str(l)) for l in evaluation["label"]])
    acc = float((logits.argmax(-1).cpu() == truth).double().mean())
    print(f"\n| task | model | {eval_name} rows | {eval_name} accuracy |")
    print("|---|---|---|---|")
    print(f"| {args.task} | {args.score} | {len(evaluation)} | {acc:.4f} |")
    print(f"machine: {describe()}")


if __name__ == "__main__":
    main()
