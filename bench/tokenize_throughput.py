"""Tokenization: building the DataBunch for sentiment140/train_100k.csv against fast-bert's per-example loop.

    python bench/tokenize_throughput.py [--rows 100000] [--maxlen 128]

fast-bert's `convert_examples_to_features` calls `tokenizer.tokenize` and `convert_tokens_to_ids` per text and pads
every row to maxlen (input ids, mask and segment ids as int64). bertlearn calls the fast tokenizer once per 4,096
texts and keeps one id matrix (uint16) cut to the longest text. The second bertlearn build finds the cache.
Same tokenizer (the packaged MiniLM's), same texts, one process. Prints a table and the machine.
"""

from __future__ import annotations

import argparse
import shutil
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd

sys.path.insert(0, str(Path(__file__).resolve().parent))
from machine import describe  # noqa: E402

from bertlearn import BertDataBunch, load_tokenizer  # noqa: E402

DATA = Path(__file__).resolve().parents[2] / "shared" / "data" / "sentiment140"


def fast_bert_features(texts: list[str], tok, maxlen: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """fast-bert's loop (data_cls.convert_examples_to_features, single-text branch)."""
    ids_all, mask_all, seg_all = [], [], []
    for text in texts:
        tokens = tok.tokenize(text)[:maxlen - 2]
        tokens = [tok.cls_token] + tokens + [tok.sep_token]
        ids = tok.convert_tokens_to_ids(tokens)
        mask = [1] * len(ids)
        pad = maxlen - len(ids)
        ids_all.append(ids + [tok.pad_token_id] * pad)
        mask_all.append(mask + [0] * pad)
        seg_all.append([0] * maxlen)
    return (np.asarray(ids_all, dtype=np.int64), np.asarray(mask_all, dtype=np.int64),
            np.asarray(seg_all, dtype=np.int64))


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--rows", type=int, default=100_000)
    ap.add_argument("--maxlen", type=int, default=128)
    args = ap.parse_args()
    df = pd.read_csv(DATA / "train_100k.csv")
    df = df.sample(n=args.rows, random_state=0) if args.rows < len(df) else df
    tok = load_tokenizer(None)
    texts = df["text"].astype(str).tolist()

    t0 = time.perf_counter()
    feats = fast_bert_features(texts, tok, args.maxlen)
    fast_bert_s = time.perf_counter() - t0
    fast_bert_mb = sum(a.nbytes for a in feats) / 2**20

    tmp = Path(tempfile.mkdtemp())
    try:
        timings = []
        for _ in range(2):  # first build tokenizes and writes the cache, second reads it
            t0 = time.perf_counter()
            db = BertDataBunch.from_df(df, df.head(100), tok, maxlen=args.maxlen, cache_dir=tmp / "cache")
            timings.append(time.perf_counter() - t0)
        ds = db.train_ds
        ours_mb = (ds.ids.nbytes + ds.lengths.nbytes) / 2**20
        same = all(np.array_equal(ds.ids[i, :ds.lengths[i]], feats[0][i, :feats[1][i].sum()]) for i in range(0, len(ds), 97))
    finally:
        shutil.rmtree(tmp, ignore_errors=True)

    print(f"\n{len(texts):,} Sentiment140 tweets, MiniLM WordPiece tokenizer, maxlen {args.maxlen}\n")
    print("| path | seconds | texts/s | vs fast-bert | token storage MB |\n|---|---|---|---|---|")
    print(f"| fast-bert per-example loop (padded int64 ids, mask, segments) | {fast_bert_s:.2f} | "
          f"{len(texts) / fast_bert_s:,.0f} | 1.0x | {fast_bert_mb:.0f} |")
    print(f"| BertDataBunch.from_df, first build (tokenize + write cache) | {timings[0]:.2f} | "
          f"{len(texts) / timings[0]:,.0f} | {fast_bert_s / timings[0]:.1f}x | {ours_mb:.0f} |")
    print(f"| BertDataBunch.from_df, unchanged inputs (cache hit) | {timings[1]:.2f} | "
          f"{len(texts) / timings[1]:,.0f} | {fast_bert_s / timings[1]:.1f}x | {ours_mb:.0f} |")
    print(f"\nsame token ids as the fast-bert loop (every 97th row checked): {same}")
    print(f"machine: {describe()}")


if __name__ == "__main__":
    main()
