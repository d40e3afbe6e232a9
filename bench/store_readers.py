"""How the on-disk token store is read: positional reads (what bertlearn uses) against a numpy memory map.

    python bench/store_readers.py [--rows 1000000]

Builds the token store for `--rows` resampled Sentiment140 tweets once, then in a fresh process per reader reads
every row once in shuffled batches of 32 (what a training epoch does) and reports the time and the peak RSS.
A memory map's touched pages are resident file pages charged to the process (they can be reclaimed, but they
show in RSS and in container memory accounting); positional reads copy just the batch.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))


def child(folder: Path, reader: str) -> None:
    from bertlearn.store import load_store
    ids, lengths, _, _ = load_store(folder)
    rss0 = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    if reader == "memmap":
        ids = np.memmap(ids.path, dtype=ids.dtype, mode="r", shape=ids.shape)
    order = np.random.default_rng(0).permutation(len(lengths))
    t0, total = time.perf_counter(), 0
    for start in range(0, len(order), 32):
        idx = order[start:start + 32]
        total += int(np.asarray(ids[idx, :64]).sum() % 7)
    out = {"reader": reader, "seconds": time.perf_counter() - t0, "rss_before_mb": rss0,
           "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}
    print("CHILD " + json.dumps(out), flush=True)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--rows", type=int, default=1_000_000)
    ap.add_argument("--child", nargs=2, default=None, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child:
        child(Path(args.child[0]), args.child[1])
        return
    import streaming
    from machine import describe

    from bertlearn import BertDataBunch
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        streaming.make_csv(tmp / "train.csv", args.rows)
        streaming.make_csv(tmp / "val.csv", 1000, seed=1)
        BertDataBunch.from_csv(tmp, None, bs=32, maxlen=64, on_disk=True, label_file=None, device="cpu")
        folder = next((tmp / "cache").glob("store-train-*"))
        size = (folder / "ids.bin").stat().st_size / 2**20
        rows = []
        for reader in ("pread", "memmap"):
            out = subprocess.run([sys.executable, __file__, "--child", str(folder), reader], capture_output=True,
                                 text=True)
            line = next(l for l in out.stdout.splitlines() if l.startswith("CHILD "))
            rows.append(json.loads(line[6:]))
    print(f"\n{args.rows:,} rows, ids file {size:.0f} MB (uint16, 64 per row); every row read once in shuffled "
          "batches of 32\n")
    print("| reader | seconds | peak RSS before reading, MB | peak RSS after, MB |\n|---|---|---|---|")
    for r in rows:
        print(f"| {r['reader']} | {r['seconds']:.1f} | {r['rss_before_mb']:.0f} | {r['peak_rss_mb']:.0f} |")
    print(f"machine: {describe()}")


if __name__ == "__main__":
    main()
