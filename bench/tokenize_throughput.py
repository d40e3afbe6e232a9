"""Tokenization: building the training data for sentiment140/train_100k.csv, bertlearn against fast-bert.

    python bench/tokenize_throughput.py [--rows 100000] [--maxlen 128]

Both paths start from the CSV file and end with what training reads, written to a cache:
- fast-bert (data_cls.py, re-enacted): `InputExample`s made with a row-wise `DataFrame.apply`, then per text
  `tokenizer.tokenize` + `convert_tokens_to_ids`, every row padded to maxlen (ids, mask, segment ids), one
  `InputFeatures` object per row, four int64 tensors, `torch.save` to the cache folder.
- bertlearn: `BertDataBunch.from_csv` (tokie's flat batch call for ASCII texts where `bertlearn[fast]` is installed,
  the fast tokenizer's Rust batch call for the rest; ids stored ragged as uint16 plus offsets, an `.npz` cache);
  built twice, the second build finds the cache. Then the same with tokie turned off (`BERTLEARN_TOKIE=0`).
Same tokenizer (the packaged MiniLM's), same rows. Each path runs in its own process so its peak RSS is its own.
The "alone" rows are floors: `encode_batch_fast` (tokenizers) and `encode_batch_flat` (tokie) on all texts,
nothing else. Prints a table and the machine.
"""

from __future__ import annotations

import argparse
import hashlib
import importlib.util
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd

sys.path.insert(0, str(Path(__file__).resolve().parent))
from machine import DATA_ROOT, bench_tokenizer, describe  # noqa: E402

DATA = DATA_ROOT / "sentiment140" / "train_100k.csv"


class InputExample:
    def __init__(self, guid, text_a, label=None):
        self.guid, self.text_a, self.label = guid, text_a, None if label is None else str(label)


class InputFeatures:
    def __init__(self, input_ids, input_mask, segment_ids, label_id):
        self.input_ids, self.input_mask, self.segment_ids, self.label_id = input_ids, input_mask, segment_ids, label_id


def fast_bert_build(csv: Path, tok, maxlen: int, cache: Path) -> dict:
    """fast-bert's path from CSV to cached tensors (single-label, single-text branch)."""
    import torch
    df = pd.read_csv(csv)
    examples = list(df.apply(lambda row: InputExample(row.name, row["text"], row["label"]), axis=1))
    label_map = {label: i for i, label in enumerate(sorted({e.label for e in examples}))}
    features = []
    for example in examples:
        tokens = tok.tokenize(example.text_a)
        if len(tokens) > maxlen - 2:
            tokens = tokens[:maxlen - 2]
        tokens = [tok.cls_token] + tokens + [tok.sep_token]
        segment_ids = [0] * len(tokens)
        input_ids = tok.convert_tokens_to_ids(tokens)
        input_mask = [1] * len(input_ids)
        pad = maxlen - len(input_ids)
        features.append(InputFeatures(input_ids + [0] * pad, input_mask + [0] * pad, segment_ids + [0] * pad,
                                      label_map[example.label]))
    tensors = [torch.tensor([f.input_ids for f in features], dtype=torch.long),
               torch.tensor([f.input_mask for f in features], dtype=torch.long),
               torch.tensor([f.segment_ids for f in features], dtype=torch.long),
               torch.tensor([f.label_id for f in features], dtype=torch.long)]
    cache.mkdir(parents=True, exist_ok=True)
    torch.save(features, cache / "cached_bert_train_multi_class_128")
    return {"mb": sum(t.numel() * t.element_size() for t in tensors[:3]) / 2**20,
            "probe": [tensors[0][i, :int(tensors[1][i].sum())].tolist() for i in range(0, len(features), 997)]}


def child(path: str, rows: int, maxlen: int, workdir: Path) -> dict:
    """Run one path in this process; return its timings, peak RSS and a probe of its ids."""
    from bertlearn import BertDataBunch
    tok = bench_tokenizer()  # the packaged MiniLM's, or its copy under BERTLEARN_DATA (the GPU machine)
    csv = workdir / "train.csv"
    base = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    out: dict = {"path": path, "rss_base_mb": base}
    if path == "fast-bert":
        t0 = time.perf_counter()
        res = fast_bert_build(csv, tok, maxlen, workdir / "fast-bert-cache")
        out.update(seconds=[time.perf_counter() - t0], mb=res["mb"], probe=res["probe"])
    elif path == "rust":
        texts = pd.read_csv(csv)["text"].astype(str).tolist()
        backend = tok.backend_tokenizer
        backend.no_padding()
        backend.enable_truncation(maxlen)
        t0 = time.perf_counter()
        backend.encode_batch_fast(texts)
        out.update(seconds=[time.perf_counter() - t0], mb=float("nan"), probe=[])
    elif path == "tokie":
        from bertlearn.data.backends import batch_encoder, tokie_encoder
        texts = pd.read_csv(csv)["text"].astype(str).tolist()
        fast = tokie_encoder(batch_encoder(tok, maxlen), tok, maxlen).tokie  # as bertlearn sets it up
        t0 = time.perf_counter()
        fast.encode_batch_flat(texts)
        out.update(seconds=[time.perf_counter() - t0], mb=float("nan"), probe=[])
    else:
        seconds = []
        for _ in range(2):  # the first build tokenizes and writes the cache, the second reads it
            t0 = time.perf_counter()
            db = BertDataBunch.from_csv(workdir, tok, train_file="train.csv", val_file="val.csv", maxlen=maxlen,
                                        label_file=None, cache_dir=workdir / f"cache-{path}")
            seconds.append(time.perf_counter() - t0)
        ds = db.train_ds
        out.update(seconds=seconds, mb=(ds.ids.nbytes + ds.lengths.nbytes) / 2**20,
                   probe=[ds.ids[i].tolist() for i in range(0, len(ds), 997)],
                   digest=hashlib.sha256(ds.ids.values.astype(np.int64).tobytes()
                                         + ds.ids.offsets.tobytes()).hexdigest())
    out["rss_peak_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    return out


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--rows", type=int, default=100_000)
    ap.add_argument("--maxlen", type=int, default=128)
    ap.add_argument("--child", default=None, help=argparse.SUPPRESS)
    ap.add_argument("--workdir", default=None, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child:
        print(json.dumps(child(args.child, args.rows, args.maxlen, Path(args.workdir))))
        return

    with tempfile.TemporaryDirectory() as tmp:
        df = pd.read_csv(DATA)
        df = df.sample(n=args.rows, random_state=0) if args.rows < len(df) else df
        df[["text", "label"]].to_csv(Path(tmp) / "train.csv", index=False)
        df[["text", "label"]].head(200).to_csv(Path(tmp) / "val.csv", index=False)
        results = {}
        has_tokie = importlib.util.find_spec("tokie") is not None
        paths = ["fast-bert", "bertlearn"] + (["bertlearn, no tokie", "rust", "tokie"] if has_tokie else ["rust"])
        for path in paths:
            env = {**os.environ, "TOKENIZERS_PARALLELISM": "true"}
            if path == "bertlearn, no tokie":
                env["BERTLEARN_TOKIE"] = "0"
            proc = subprocess.run([sys.executable, __file__, "--child", path, "--rows", str(args.rows),
                                   "--maxlen", str(args.maxlen), "--workdir", tmp], capture_output=True, text=True, env=env)
            if proc.returncode:
                sys.exit(f"{path} failed:\n{proc.stderr[-3000:]}")
            results[path] = json.loads(proc.stdout.strip().splitlines()[-1])

    n = len(df)
    fb, ours, rust = results["fast-bert"], results["bertlearn"], results["rust"]
    ref = fb["seconds"][0]
    print(f"\n{n:,} Sentiment140 tweets from CSV, MiniLM WordPiece tokenizer (Rust, fast), maxlen {args.maxlen}\n")
    print("| path | seconds | texts/s | vs fast-bert | token storage MB | peak RSS MB (after imports) |")
    print("|---|---|---|---|---|---|")

    def row(name, secs, r, mb=True):
        storage = f"{r['mb']:.1f}" if mb else "-"
        peak = f"{r['rss_peak_mb']:.0f} ({r['rss_base_mb']:.0f})"
        print(f"| {name} | {secs:.2f} | {n / secs:,.0f} | {ref / secs:.1f}x | {storage} | {peak} |")

    row("fast-bert: examples, per-text tokenize loop, padded int64 tensors, torch.save", ref, fb)
    row("bertlearn: BertDataBunch.from_csv, first build (tokenize, write cache)", ours["seconds"][0], ours)
    row("bertlearn: BertDataBunch.from_csv, unchanged inputs (cache hit)", ours["seconds"][1], ours)
    if "tokie" in results:
        plain = results["bertlearn, no tokie"]
        row("bertlearn: first build, tokie off (BERTLEARN_TOKIE=0)", plain["seconds"][0], plain)
        row("bertlearn: rebuild, tokie off (BERTLEARN_TOKIE=0)", plain["seconds"][1], plain)
    row(f"floor: the Rust tokenizer alone (encode_batch_fast, {os.cpu_count()} cores)", rust["seconds"][0], rust,
        mb=False)
    if "tokie" in results:
        row(f"floor: tokie alone (encode_batch_flat, {os.cpu_count()} cores)", results["tokie"]["seconds"][0],
            results["tokie"], mb=False)
    print(f"\nsame token ids as fast-bert (every 997th row): {fb['probe'] == ours['probe']}")
    if "tokie" in results:
        print(f"same token ids with and without tokie (all rows, sha256): {plain['digest'] == ours['digest']}")
    print(f"machine: {describe()}")


if __name__ == "__main__":
    main()
