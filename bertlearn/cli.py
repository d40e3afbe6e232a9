"""The `bertlearn` command: train, predict and eval from the shell.

Exit codes: 0 success, 1 a bertlearn error (the message says what to fix; no traceback), 2 bad usage
(argparse), 130 interrupted.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import time
from pathlib import Path
from typing import Any, Sequence

__all__ = ["main", "build_parser"]

_EXAMPLES_TRAIN = """examples:
  # binary or multi-class: one text column, one label column
  bertlearn train --data data/ --train-file train.csv --val-file val.csv --text-col text --label-col label \\
      --epochs 3 --lr 5e-5 --bs 32 --maxlen 128 --out runs/model

  # multi-label with 0/1 columns, sentence pairs, regression
  bertlearn train --data data/ --text-col text --label-col joy anger fear --multi-label --out runs/emotions
  bertlearn train --data data/ --text-col text_a text_b --label-col label --out runs/pairs
  bertlearn train --data data/ --text-col text_a text_b --label-col score --regression --out runs/sts

  # a hub model (online) or a local folder instead of the packaged all-MiniLM-L6-v2
  bertlearn train --data data/ --model bert-base-uncased --out runs/bert
"""

_EXAMPLES_PREDICT = """examples:
  bertlearn predict --model runs/model --input new.csv --output predictions.csv
  bertlearn predict --model runs/model/onnx --input new.csv --output predictions.csv   # ONNX Runtime

The output holds the input's columns plus `prediction` and one `prob_<label>` column per label
(regression: `prediction` only). Rows are read and written in chunks, so files larger than memory work.
"""

_EXAMPLES_EVAL = """examples:
  bertlearn eval --model runs/model --input test.csv --text-col text --label-col label
  bertlearn eval --model runs/model --input test.csv --json metrics.json
"""


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of the `bertlearn` command (subcommands train, predict, eval)."""
    from . import __version__

    parser = argparse.ArgumentParser(prog="bertlearn", description="Fine-tune and use BERT-family text classifiers "
                                     "(fastai training loop around Hugging Face models).")
    parser.add_argument("--version", action="version", version=f"bertlearn {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="{train,predict,eval}")
    fmt = argparse.RawDescriptionHelpFormatter

    t = sub.add_parser("train", help="fine-tune a model on CSV files and save it", epilog=_EXAMPLES_TRAIN,
                       formatter_class=fmt)
    t.add_argument("--data", required=True, type=Path, help="folder holding the CSV files")
    t.add_argument("--train-file", default="train.csv", help="training CSV inside --data (default: train.csv)")
    t.add_argument("--val-file", default=None,
                   help="validation CSV inside --data (default: val.csv if present, else 20%% of train)")
    t.add_argument("--text-col", nargs="+", default=["text"], help="text column; two columns for sentence pairs")
    t.add_argument("--label-col", nargs="+", default=["label"], help="label column; several 0/1 columns with "
                   "--multi-label")
    t.add_argument("--model", default=None, help="hub name or local folder (default: packaged all-MiniLM-L6-v2)")
    t.add_argument("--epochs", type=int, default=3)
    t.add_argument("--lr", type=float, default=5e-5, help="peak learning rate of the one-cycle schedule")
    t.add_argument("--bs", type=int, default=32, help="batch size")
    t.add_argument("--maxlen", type=int, default=128, help="maximum tokens per text, special tokens included")
    t.add_argument("--out", required=True, type=Path, help="folder to save the fine-tuned model in")
    t.add_argument("--multi-label", action="store_true", help="several labels per text")
    t.add_argument("--label-delim", default=None, help="separator of several labels in one column (multi-label)")
    t.add_argument("--regression", action="store_true", help="a numeric target")
    t.add_argument("--truncation", choices=["head", "tail", "head+tail"], default="head")
    t.add_argument("--sep", default=None, help="CSV field separator (default ',')")
    t.add_argument("--seed", type=int, default=None, help="seed for a repeatable run")
    t.add_argument("--device", default=None, help="cpu, cuda, cuda:1 ... (default: CUDA when available)")
    t.add_argument("--fp16", action="store_true", help="mixed precision on CUDA (bf16 where supported)")
    t.add_argument("--onnx", action="store_true", help="also export OUT/onnx for ONNX Runtime")
    t.add_argument("--tune-thresholds", action="store_true", help="multi-label: pick per-label thresholds on "
                   "the validation set before saving")

    p = sub.add_parser("predict", help="predict a CSV with a saved model, writing a CSV", epilog=_EXAMPLES_PREDICT,
                       formatter_class=fmt)
    p.add_argument("--model", required=True, type=Path, help="folder written by train / save_model / to_onnx")
    p.add_argument("--input", required=True, type=Path, help="CSV with the text column(s)")
    p.add_argument("--output", required=True, type=Path, help="CSV to write")
    p.add_argument("--text-col", nargs="+", default=None, help="text column(s) (default: the model's own, else text)")
    p.add_argument("--bs", type=int, default=64)
    p.add_argument("--chunk-size", type=int, default=10_000, help="rows read, predicted and written at a time")
    p.add_argument("--sep", default=None)
    p.add_argument("--device", default=None)

    e = sub.add_parser("eval", help="metrics of a saved model on a labelled CSV", epilog=_EXAMPLES_EVAL,
                       formatter_class=fmt)
    e.add_argument("--model", required=True, type=Path)
    e.add_argument("--input", required=True, type=Path)
    e.add_argument("--text-col", nargs="+", default=None)
    e.add_argument("--label-col", nargs="+", default=None, help="label column(s) (default: the model's own, else "
                   "label)")
    e.add_argument("--label-delim", default=None)
    e.add_argument("--bs", type=int, default=64)
    e.add_argument("--sep", default=None)
    e.add_argument("--device", default=None)
    e.add_argument("--json", type=Path, default=None, help="also write the metrics to this JSON file")
    return parser


def _one_or_list(cols: Sequence[str]) -> Any:
    return cols[0] if len(cols) == 1 else list(cols)


def _train(args: argparse.Namespace) -> int:
    from .data import BertDataBunch
    from .errors import DataError
    from .learner import BertLearner

    data = args.data
    if not data.is_dir():
        raise DataError(f"--data {str(data)!r} is not a folder")
    val_file = args.val_file or ("val.csv" if (data / "val.csv").is_file() else None)
    kwargs = dict(text_col=_one_or_list(args.text_col), label_col=_one_or_list(args.label_col), bs=args.bs,
                  maxlen=args.maxlen, multi_label=args.multi_label, regression=args.regression,
                  label_delim=args.label_delim, truncation=args.truncation, seed=args.seed, device=args.device,
                  sep=args.sep)
    databunch = BertDataBunch.from_csv(data, args.model, train_file=args.train_file, val_file=val_file, **kwargs)
    print(f"data: {len(databunch.train_ds)} train / {len(databunch.valid_ds)} valid rows, labels "
          f"{databunch.labels[:10]}{'...' if databunch.c > 10 else ''}", file=sys.stderr)
    learner = BertLearner.from_pretrained_model(databunch, args.model, device=args.device, output_dir=args.out,
                                                is_fp16=args.fp16, seed=args.seed)
    t0 = time.perf_counter()
    learner.fit(args.epochs, lr=args.lr)
    if args.tune_thresholds and databunch.multi_label:
        learner.tune_thresholds()
    results = learner.validate(quiet=True)
    print(f"trained in {time.perf_counter() - t0:.0f}s; validation: " +
          ", ".join(f"{k} {v:.4f}" for k, v in results.items() if isinstance(v, float)))
    out = learner.save_model(args.out)
    print(f"model saved to {out}")
    if args.onnx:
        print(f"ONNX model saved to {learner.to_onnx(args.out / 'onnx')}")
    return 0


def _load_predictor(path: Path, device: str | None, bs: int) -> Any:
    from .errors import ModelError
    from .onnx import ONNX_FILE, OnnxPredictor
    from .predict import BertClassificationPredictor

    folder = path.parent if path.suffix == ".onnx" else path
    if not folder.is_dir():
        raise ModelError(f"--model {str(path)!r} is not a folder; pass the folder written by bertlearn train")
    if path.suffix == ".onnx" or ((folder / ONNX_FILE).is_file() and not (folder / "model.safetensors").is_file()):
        return OnnxPredictor(path, bs=bs)
    return BertClassificationPredictor(folder, device=device, bs=bs)


def _text_cols(args: argparse.Namespace, predictor: Any, columns: Sequence[str]) -> Any:
    from .errors import DataError

    if args.text_col:
        cols = list(args.text_col)
    else:
        saved = predictor.settings.get("text_col")
        cols = list(saved) if isinstance(saved, list) else [saved] if saved else ["text"]
        if not set(cols) <= set(columns) and predictor.encoder.pairs:
            cols = ["text_a", "text_b"]
    missing = [c for c in cols if c not in columns]
    if missing:
        raise DataError(f"--text-col: column {missing[0]!r} not in {str(args.input)!r}; columns are {list(columns)}")
    return cols


def _texts_of(df: Any, cols: list[str], source: str) -> list:
    from .data import _texts
    texts, _ = _texts(df, cols if len(cols) > 1 else cols[0], source, dropna=False)
    return texts


def _predict(args: argparse.Namespace) -> int:
    import pandas as pd

    from .data import read_csv
    from .errors import DataError
    from .predict import decide

    predictor = _load_predictor(args.model, args.device, args.bs)
    if not args.input.is_file():
        read_csv(args.input, "--input")  # raises with the folder's listing
    enc = predictor.encoder
    args.output.parent.mkdir(parents=True, exist_ok=True)
    tmp = args.output.with_name(f".{args.output.name}.partial")
    n, t0, cols = 0, time.perf_counter(), None
    try:
        reader = pd.read_csv(args.input, sep=args.sep or ",", encoding="utf-8-sig", chunksize=max(1, args.chunk_size))
        with open(tmp, "w", newline="", encoding="utf-8") as fh:
            for i, chunk in enumerate(reader):
                cols = cols or _text_cols(args, predictor, list(chunk.columns))
                source = f"{args.input.name} (rows {n + 1}-{n + len(chunk)})"
                logits = predictor.predict_logits(_texts_of(chunk, cols, source))
                out = chunk.copy()
                if enc.regression:
                    out["prediction"] = logits[:, 0].numpy()
                else:
                    probs = (logits.sigmoid() if enc.multi_label else logits.softmax(-1)).numpy()
                    decided = decide(logits, enc, predictor.thresholds)
                    out["prediction"] = ["|".join(d) for d in decided] if enc.multi_label else decided
                    for j, label in enumerate(enc.labels):
                        out[f"prob_{label}"] = probs[:, j].round(6)
                out.to_csv(fh, header=i == 0, index=False)
                fh.flush()
                n += len(chunk)
                rate = n / max(time.perf_counter() - t0, 1e-9)
                print(f"\rpredicted {n:,} rows ({rate:,.0f}/s)", end="", file=sys.stderr, flush=True)
        tmp.replace(args.output)
    except pd.errors.EmptyDataError:
        raise DataError(f"--input {str(args.input)!r} is empty; it needs a header row and data rows") from None
    finally:
        tmp.unlink(missing_ok=True)
    print(f"\nwrote {n:,} predictions to {args.output}", file=sys.stderr)
    return 0


def _eval(args: argparse.Namespace) -> int:
    from .data import read_csv, targets_from_frame
    from .metrics import evaluate

    predictor = _load_predictor(args.model, args.device, args.bs)
    df = read_csv(args.input, "--input", sep=args.sep)
    enc = predictor.encoder
    cols = _text_cols(args, predictor, list(df.columns))
    if args.label_col:
        label_col = _one_or_list(args.label_col)
    else:
        label_col = predictor.settings.get("label_col") or (
            list(enc.labels) if enc.multi_label and args.label_delim is None else
            enc.labels[0] if enc.regression else "label")
        if isinstance(label_col, list) and len(label_col) == 1:
            label_col = label_col[0]
    label_delim = args.label_delim if args.label_delim is not None else predictor.settings.get("label_delim")
    targets = targets_from_frame(df, label_col, enc, label_delim=label_delim, source=str(args.input))
    logits = predictor.predict_logits(_texts_of(df, cols, str(args.input)))
    metrics = evaluate(logits, targets, enc.problem_type, enc.labels, thresholds=predictor.thresholds)
    print(f"{len(df):,} rows of {args.input}")
    width = max(len(k) for k in metrics)
    for k, v in metrics.items():
        if isinstance(v, dict):
            print(f"{k}:")
            for label, value in v.items():
                print(f"  {label:<{width}} {value:.4f}")
        else:
            print(f"{k:<{width}}   {v:.4f}" if isinstance(v, float) and not math.isnan(v) else f"{k:<{width}}   {v}")
    if args.json:
        args.json.write_text(json.dumps({"rows": len(df), **metrics}, indent=2))
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    """Run the `bertlearn` command with `argv` (default: the process's arguments); return the exit code."""
    parser = build_parser()
    args = parser.parse_args(argv)
    from .errors import BertLearnError

    try:
        return {"train": _train, "predict": _predict, "eval": _eval}[args.command](args)
    except BertLearnError as e:
        print(f"bertlearn {args.command}: error: {e}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print(f"\nbertlearn {args.command}: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
