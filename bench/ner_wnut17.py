"""WNUT-17 named entities with the packaged all-MiniLM-L6-v2: train on train, validate on dev each epoch, report the
test set's entity-level scores (seqeval, conlleval-compatible) once at the end.

    python bench/ner_wnut17.py --epochs 3 --lr 1e-4
Prints the per-epoch dev scores, the test table per entity type, and the machine; numbers go into
docs/benchmarks.md. Settings are chosen on dev only; test is scored once per run.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from machine import DATA_ROOT as DATA, describe  # noqa: E402

from bertlearn import BertNERDataBunch, BertNERLearner  # noqa: E402
from bertlearn.data import read_conll  # noqa: E402
from bertlearn.tasks.token_classification import entity_report, entity_scores  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--epochs", type=int, default=3)
    ap.add_argument("--lr", type=float, default=1e-4)
    ap.add_argument("--bs", type=int, default=32)
    ap.add_argument("--maxlen", type=int, default=128)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--fp16", action="store_true", help="bf16 autocast where the hardware has it")
    ap.add_argument("--save", type=Path, default=None, help="save the model folder there")
    ap.add_argument("--model", default=None, help="model folder (default: the packaged all-MiniLM-L6-v2)")
    ap.add_argument("--schedule", default=None, help="fit's schedule_type (default: one_cycle)")
    ap.add_argument("--no-test", action="store_true",
                    help="dev only: leave test untagged (for choosing settings; score test once for the choice)")
    args = ap.parse_args()

    folder = DATA / "wnut17"
    t0 = time.perf_counter()
    db = BertNERDataBunch(folder, args.model, train_file="train.conll", val_file="dev.conll", label_file=None,
                          bs=args.bs, maxlen=args.maxlen, seed=args.seed)
    learner = BertNERLearner.from_pretrained_model(db, args.model, output_dir="runs/ner_wnut17", seed=args.seed,
                                                   is_fp16=args.fp16)
    t1 = time.perf_counter()
    learner.fit(args.epochs, lr=args.lr, schedule_type=args.schedule)
    t2 = time.perf_counter()
    dev = learner.validate(quiet=True)
    test = read_conll(folder / "test.conll")
    pred = None if args.no_test else learner.predict_tokens(test.words)
    t3 = time.perf_counter()
    print(f"\nWNUT-17, packaged all-MiniLM-L6-v2, {args.epochs} epochs, lr {args.lr}, bs {args.bs}, maxlen "
          f"{args.maxlen}, seed {args.seed}{', bf16' if args.fp16 else ''}, schedule {args.schedule or 'one_cycle'}")
    print(f"train {db.train_ds.n_texts} sentences, dev {db.valid_ds.n_texts}, test {len(test)}; data+model "
          f"{t1 - t0:.0f} s, fit {t2 - t1:.0f} s, test tagging {t3 - t2:.1f} s")
    print(f"\n| set | precision | recall | F1 | word accuracy |\n|---|---|---|---|---|")
    print(f"| dev | {dev['precision']:.4f} | {dev['recall']:.4f} | {dev['f1']:.4f} | {dev['accuracy']:.4f} |")
    if pred is None:
        print(f"\ntest not tagged (--no-test)\nmachine: {describe()}")
        if args.save is not None:
            learner.save_model(args.save)
        return
    scores = entity_scores(test.tags, pred)
    print(f"| **test** | {scores['precision']:.4f} | {scores['recall']:.4f} | **{scores['f1']:.4f}** | "
          f"{scores['accuracy']:.4f} |")
    report = entity_report(test.tags, pred)
    print("\ntest, per entity type:\n\n| type | precision | recall | F1 | support |\n|---|---|---|---|---|")
    for kind, row in report.iterrows():
        print(f"| {kind} | {row['precision']:.4f} | {row['recall']:.4f} | {row['f1']:.4f} | {int(row['support'])} |")
    print(f"\nmachine: {describe()}")
    if args.save is not None:
        learner.save_model(args.save)


if __name__ == "__main__":
    main()
