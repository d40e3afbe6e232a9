"""Where a training step's time goes: the plain loop's step under torch.profiler, operators grouped by share.

    python bench/step_profile.py [--rows 1024] [--bs 32] [--steps 12] [--bf16] [--model minilm|bert-base]

The loop is `train_throughput.PlainLoop` (the reference `fit` is timed against) over bertlearn's own
length-grouped batches of SST-2 rows, so the table is the arithmetic any loop over these batches pays: matrix
products, dropout masks, the optimizer, the embedding gradient. Prints the operators' shares of the profiled
steps (self time) grouped into a few kinds, the top operators, and the machine. The profiler adds its own
overhead, so shares are what to read, not absolute times.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

KINDS = {  # operator -> kind; the rest is "other"
    "aten::mm": "matrix products", "aten::addmm": "matrix products", "aten::bmm": "matrix products",
    "aten::bernoulli_": "dropout masks", "aten::_fused_adamw_": "optimizer",
    "aten::_foreach_add_": "optimizer", "aten::fill_": "zero fills (embedding gradient)",
    "aten::linalg_vector_norm": "gradient clipping", "aten::_foreach_norm": "gradient clipping",
    "aten::_foreach_mul_": "gradient clipping",
}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--rows", type=int, default=1024)
    ap.add_argument("--bs", type=int, default=32)
    ap.add_argument("--steps", type=int, default=12)
    ap.add_argument("--bf16", action="store_true", help="bf16 autocast, as is_fp16=True trains")
    ap.add_argument("--model", default="minilm", choices=["minilm", "bert-base"])
    args = ap.parse_args()

    import pandas as pd
    import torch
    from torch.profiler import ProfilerActivity, profile

    from bertlearn import BertDataBunch
    from machine import DATA_ROOT, bench_tokenizer, describe, model_folder
    from train_throughput import PlainLoop, build_model

    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    df = pd.read_csv(DATA_ROOT / "sst2" / "train.csv").sample(n=args.rows, random_state=0)
    db = BertDataBunch.from_df(df, df.head(64), bench_tokenizer(), bs=args.bs, maxlen=128, device=device, seed=0)
    with tempfile.TemporaryDirectory() as tmp:
        model = build_model(model_folder(args.model, Path(tmp)), db.labels).to(device)
    batches = list(db.train)[:args.steps]
    loop = PlainLoop(model, device, 2e-5, args.bf16, total_steps=len(batches) + 4)
    loop.epoch(batches[:4])  # warm-up: first-call allocations stay out
    activities = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if device.type == "cuda" else [])
    with profile(activities=activities, record_shapes=True) as prof:
        loop.epoch(batches)
    events = prof.key_averages()
    attr = "self_device_time_total" if device.type == "cuda" else "self_cpu_time_total"
    total = sum(getattr(e, attr) for e in events) or 1
    kinds: dict[str, float] = {}
    for e in events:
        kind = KINDS.get(e.key, "other")
        kinds[kind] = kinds.get(kind, 0.0) + getattr(e, attr)
    print(f"\nplain loop, {args.model}, {'bf16 autocast' if args.bf16 else 'float32'}, bs {args.bs}, "
          f"{len(batches)} steps profiled ({'GPU kernel' if device.type == 'cuda' else 'CPU self'} time)\n")
    print("| kind | share of the step |")
    print("|---|---|")
    for kind, t in sorted(kinds.items(), key=lambda kv: -kv[1]):
        print(f"| {kind} | {100 * t / total:.1f}% |")
    print("\n| operator | input shapes | share | calls per step |")
    print("|---|---|---|---|")
    by_shape = sorted(prof.key_averages(group_by_input_shape=True), key=lambda e: -getattr(e, attr))[:10]
    for e in by_shape:
        shapes = str(e.input_shapes)[:60]
        print(f"| {e.key} | {shapes} | {100 * getattr(e, attr) / total:.1f}% | {e.count / len(batches):.1f} |")
    print(f"\nmachine: {describe()}")


if __name__ == "__main__":
    main()
