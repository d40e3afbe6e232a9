"""The `bertlearn` command: train, predict and eval from the shell.

Exit codes: 0 success, 1 a bertlearn error (the message says what to fix; no traceback), 2 bad usage
(argparse), 130 interrupted.
"""

from __future__ import annotations

import argparse
import contextlib
import csv
import itertools
import json
import math
import sys
import time
import warnings
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

  # named entities (token classification) from CoNLL files (word and tag per line) or doccano JSONL
  bertlearn train --data wnut17/ --train-file train.conll --val-file dev.conll --lr 1e-4 --out runs/ner
  bertlearn train --task ner --data data/ --train-file annotations.jsonl --out runs/ner
"""

_EXAMPLES_PREDICT = """examples:
  bertlearn predict --model runs/model --input new.csv --output predictions.csv
  bertlearn predict --model runs/model/onnx --input new.csv --output predictions.csv   # ONNX Runtime

The output holds the input's columns plus `prediction` and one `prob_<label>` column per label
(regression: `prediction` only); an input that has a column of one of those names is refused. Rows are read and
written in chunks, so files larger than memory work.

A token-classification (NER) model takes a CoNLL file (one word a line; tag columns may be there) and writes it
back with the predicted tag appended to each word's line (conlleval's input); a CSV with a text column, to which
it adds an `entities` column (JSON: entity_group, word, start, end, score per entity); or JSONL with a "text" key,
written back as one {"text", "entities"} object a line:
  bertlearn predict --model runs/ner --input test.conll --output test.pred.conll
  bertlearn predict --model runs/ner --input tweets.csv --output tweets.entities.csv
"""

_EXAMPLES_SENSES = """examples:
  bertlearn senses apple                      # built-in sentences: apple the fruit vs Apple the company
  bertlearn senses bank --plot bank.png       # river bank vs money bank, with a 2-D projection
  bertlearn senses bass -s "He played the bass guitar." -s "She caught a bass in the lake." ...
  bertlearn senses bank --file sentences.txt  # one sentence per line; "sense<TAB>sentence" lines name senses

Prints the cosine similarities of the word's contextual vectors across the sentences, and the same for its
static input-embedding vector (identical in every sentence, so it cannot tell senses apart).
"""

_EXAMPLES_SERVE = """examples:
  bertlearn serve runs/model                          # http://127.0.0.1:8000: a page to try it; /docs: the API
  bertlearn serve runs/model --onnx --port 9000       # the ONNX export beside it, on ONNX Runtime
  bertlearn serve runs/ner --host 0.0.0.0 --max-batch-size 128 --max-wait-ms 10

  curl -s localhost:8000/predict -H 'content-type: application/json' -d '{"texts": ["a lovely film"]}'
  # {"predictions": [[{"label": "positive", "score": 0.97}, {"label": "negative", "score": 0.03}]]}
  # a pair model takes {"pairs": [["text a", "text b"]]}; GET /health, GET /info

Needs pip install 'bertlearn[serve]' (FastAPI, uvicorn). SIGTERM or Ctrl-C: requests in flight are answered first.
"""

_EXAMPLES_EVAL = """examples:
  bertlearn eval --model runs/model --input test.csv --text-col text --label-col label
  bertlearn eval --model runs/model --input test.csv --json metrics.json
  bertlearn eval --model runs/ner --input test.conll     # NER: entity precision/recall/F1, per type (seqeval)
"""


# defaults of train options that only some runs use: an option differing from its default was given
_CHUNK_SIZE, _TRAIN_SIZE = 50_000, 0.8


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of the `bertlearn` command (subcommands train, predict, eval)."""
    from .version import __version__

    parser = argparse.ArgumentParser(prog="bertlearn", description="Fine-tune and use BERT-family text classifiers "
                                     "and token classifiers (NER), and serve them (fastai training loop around Hugging "
                                     "Face models).")
    parser.add_argument("--version", action="version", version=f"bertlearn {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="{train,predict,eval,serve,senses}")
    fmt = argparse.RawDescriptionHelpFormatter

    t = sub.add_parser("train", help="fine-tune a model on CSV files (or CoNLL / JSONL files for NER) and save it",
                       epilog=_EXAMPLES_TRAIN, formatter_class=fmt)
    t.add_argument("--data", required=True, type=Path, help="folder holding the data files")
    t.add_argument("--train-file", default="train.csv", help="training file inside --data (default: train.csv; "
                   "NER: a .conll/.txt/.iob/.bio or .jsonl file)")
    t.add_argument("--val-file", default=None,
                   help="validation file inside --data (default: val.csv if present, else 20%% of train; NER from "
                   "CoNLL files: the first of val.txt, dev.conll, valid.conll, val.conll, dev.txt, valid.txt there; "
                   "NER from one JSONL file: --train-size)")
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
    t.add_argument("--sep", default=None, type=_separator, help="CSV field separator, one character (default ','; a tab: '\\t')")
    t.add_argument("--quoting", choices=["minimal", "none"], default="minimal", help=_QUOTING_HELP)
    t.add_argument("--seed", type=int, default=None, help="seed for a repeatable run")
    t.add_argument("--device", default=None, help="cpu, cuda, cuda:1 ... (default: CUDA when available)")
    t.add_argument("--fp16", action="store_true", help="mixed precision: bf16 where the hardware has it (Ampere+ GPUs, "
                   "CPUs with AMX), fp16 on older GPUs")
    t.add_argument("--compile", action="store_true", help="torch.compile the model: faster steps after a one-time "
                   "compilation of tens of seconds (long runs only)")
    t.add_argument("--cuda-graphs", choices=["auto", "on", "off"], default="auto",
                   help="CUDA GPUs: replay each training step as a CUDA graph per length bucket (several times faster "
                   "where the eager step is host-bound); auto: --fp16 fits of 300+ steps")
    t.add_argument("--onnx", action="store_true", help="also export OUT/onnx for ONNX Runtime")
    t.add_argument("--on-disk", action="store_true", help="stream the CSV files through an on-disk token store "
                   "(files larger than memory; needs --val-file or val.csv)")
    t.add_argument("--chunk-size", type=int, default=_CHUNK_SIZE, help="rows per chunk with --on-disk")
    t.add_argument("--task", choices=["classification", "ner"], default=None,
                   help="default: ner for .conll/.txt/.iob/.bio/.jsonl training files, else classification")
    t.add_argument("--label-file", default=None, help="NER: the tag list in --data, one per line (default: the "
                   "training file's tags)")
    t.add_argument("--tag-scheme", choices=["auto", "IOB1", "IOB2", "BIOES", "BILOU", "IO"], default="auto",
                   help="NER: the tag scheme (default: detected from the training file)")
    t.add_argument("--label-all-tokens", action="store_true", help="NER: every sub-word of a word carries its tag "
                   "in the loss, not only the first")
    t.add_argument("--train-size", type=float, default=_TRAIN_SIZE, help="NER from one JSONL file: the share trained "
                   "on")
    t.add_argument("--tune-thresholds", action="store_true", help="multi-label: pick per-label thresholds on "
                   "the validation set before saving")

    p = sub.add_parser("predict", help="predict a file with a saved model (CSV; NER: also CoNLL or JSONL)",
                       epilog=_EXAMPLES_PREDICT, formatter_class=fmt)
    p.add_argument("--model", required=True, type=Path, help="folder written by train / save_model / to_onnx")
    p.add_argument("--input", required=True, type=Path, help="CSV with the text column(s); NER: a CoNLL file of "
                   "words, or CSV / TSV / JSONL of texts")
    p.add_argument("--output", required=True, type=Path, help="file to write (NER: CoNLL for a CoNLL input)")
    p.add_argument("--text-col", nargs="+", default=None, help="text column(s) (default: the model's own, else text)")
    p.add_argument("--bs", type=int, default=64,
                   help="the most texts a batch holds (on a CPU, longest-first batches are cut by padding)")
    p.add_argument("--chunk-size", type=int, default=10_000, help="rows read, predicted and written at a time")
    p.add_argument("--sep", default=None, type=_separator)
    p.add_argument("--quoting", choices=["minimal", "none"], default="minimal", help=_QUOTING_HELP)
    p.add_argument("--device", default=None)
    p.add_argument("--precision", choices=["auto", "fp32", "bf16"], default="auto",
                   help="auto: the training precision where the hardware has bf16")
    p.add_argument("--compile", action="store_true", help="torch.compile the model: faster batches after a one-time "
                   "compilation of 10-30 s (large inputs only; not for ONNX models)")
    p.add_argument("--cuda-graphs", choices=["auto", "on", "off"], default="auto",
                   help="CUDA GPUs: replay the forward pass as CUDA graphs, one per batch width; auto: in bf16, a "
                   "width is captured on its second use")

    e = sub.add_parser("eval", help="metrics of a saved model on a labelled CSV (NER: a CoNLL or JSONL file)",
                       epilog=_EXAMPLES_EVAL, formatter_class=fmt)
    e.add_argument("--model", required=True, type=Path, help="folder written by train / save_model / to_onnx")
    e.add_argument("--input", required=True, type=Path, help="labelled CSV; NER: a tagged CoNLL file or doccano "
                   "JSONL")
    e.add_argument("--text-col", nargs="+", default=None)
    e.add_argument("--label-col", nargs="+", default=None, help="label column(s) (default: the model's own, else "
                   "label)")
    e.add_argument("--label-delim", default=None)
    e.add_argument("--bs", type=int, default=64)
    e.add_argument("--sep", default=None, type=_separator)
    e.add_argument("--quoting", choices=["minimal", "none"], default="minimal", help=_QUOTING_HELP)
    e.add_argument("--device", default=None)
    e.add_argument("--json", type=Path, default=None, help="also write the metrics to this JSON file")

    s = sub.add_parser("serve", help="serve a saved model over HTTP, batching concurrent requests",
                       epilog=_EXAMPLES_SERVE, formatter_class=argparse.RawDescriptionHelpFormatter)
    s.add_argument("model", type=Path, help="folder written by train / save_model / to_onnx (any task)")
    s.add_argument("--host", default="127.0.0.1", help="address to listen on (0.0.0.0: every interface)")
    s.add_argument("--port", type=int, default=8000)
    s.add_argument("--max-batch-size", type=int, default=64, help="texts predicted together at most")
    s.add_argument("--max-wait-ms", type=_max_wait_ms, default="auto",
                   help="how long a batch waits for more requests: auto (the default: under load, a few ms for as "
                   "many texts as the last batch held; a lone client waits for nobody), or a fixed number of ms "
                   "(0: a batch takes what queued while the last one ran)")
    s.add_argument("--onnx", action="store_true", help="serve MODEL/onnx (the ONNX export beside a PyTorch model)")
    s.add_argument("--device", default=None)
    s.add_argument("--precision", choices=["auto", "fp32", "bf16"], default="auto")
    s.add_argument("--max-body-bytes", type=int, default=1_000_000)
    s.add_argument("--max-texts", type=int, default=256, help="texts (or pairs) per request")
    s.add_argument("--max-chars", type=int, default=20_000, help="characters per text")
    s.add_argument("--log-level", default="info", choices=["critical", "error", "warning", "info", "debug"])
    s.add_argument("--drain-ms", type=float, default=500.0, help="on SIGTERM, /health turns 503 and requests are "
                   "still answered until none has arrived for this long; then in-flight requests finish and it exits")

    w = sub.add_parser("senses", help="contextual vectors of one word across sentences (polysemy)",
                       epilog=_EXAMPLES_SENSES, formatter_class=fmt)
    w.add_argument("word")
    w.add_argument("-s", "--sentence", action="append", default=None, help="a sentence containing the word "
                   "(repeat); default: built-in examples for apple, bank and bat")
    w.add_argument("--file", type=Path, default=None, help="sentences, one per line (optionally sense<TAB>sentence)")
    w.add_argument("--model", default=None, help="hub name or folder (default: packaged all-MiniLM-L6-v2)")
    w.add_argument("--layer", type=int, nargs="+", default=[-1], help="hidden state(s) to use; several are averaged")
    w.add_argument("--plot", type=Path, default=None, help="save a 2-D projection of the vectors as PNG")
    w.add_argument("--device", default=None)
    return parser


def _max_wait_ms(value: str) -> float | str:
    from .errors import BertLearnError
    from .serve import check_max_wait_ms
    try:
        return check_max_wait_ms(value)
    except BertLearnError as e:
        raise argparse.ArgumentTypeError(str(e)) from None


def _one_or_list(cols: Sequence[str]) -> Any:
    return cols[0] if len(cols) == 1 else list(cols)


_NER_SUFFIXES = (".conll", ".txt", ".iob", ".bio", ".jsonl")


def _train(args: argparse.Namespace) -> int:
    from .data import BertDataBunch
    from .errors import DataError
    from .tasks import BertLearner

    from .saved import check_replaceable

    data = args.data
    if not data.is_dir():
        raise DataError(f"--data {str(data)!r} is not a folder")
    check_replaceable(args.out, "--out")  # before training, not after it: the save replaces the folder
    if args.label_file is not None and not (data / args.label_file).is_file():  # a typo, whichever task reads it
        raise DataError(f"--label-file {str(data / args.label_file)!r} does not exist; name the tag list in --data "
                        "(one tag per line, token classification only), or leave --label-file out")
    task = args.task or ("ner" if Path(args.train_file).suffix.lower() in _NER_SUFFIXES else "classification")
    if task == "ner":
        return _train_ner(args, chosen=args.task is None)
    if not (data / args.train_file).is_file():  # a NER folder trained without --train-file: say which file to name
        ner = sorted(p.name for p in data.iterdir() if p.name.startswith("train") and p.suffix.lower() in _NER_SUFFIXES)
        if ner:
            raise DataError(f"--train-file {args.train_file!r} is not in {str(data)!r}, which holds {ner}; for token "
                            f"classification (NER) pass --train-file {ner[0]} (the suffix chooses the task)")
    val_file = args.val_file or ("val.csv" if (data / "val.csv").is_file() else None)
    _warn_unused_for_classification(args, val_file)
    kwargs = dict(text_col=_one_or_list(args.text_col), label_col=_one_or_list(args.label_col), bs=args.bs,
                  maxlen=args.maxlen, multi_label=args.multi_label, regression=args.regression,
                  label_delim=args.label_delim, truncation=args.truncation, seed=args.seed, device=args.device,
                  sep=args.sep, quoting=_quoting(args))
    if args.on_disk:
        kwargs.update(on_disk=True, chunksize=args.chunk_size)
    databunch = BertDataBunch.from_csv(data, args.model, train_file=args.train_file, val_file=val_file, **kwargs)
    print(f"data: {len(databunch.train_ds)} train / {len(databunch.valid_ds)} valid rows, labels "
          f"{databunch.labels[:10]}{'...' if databunch.c > 10 else ''}", file=sys.stderr)
    learner = BertLearner.from_pretrained_model(databunch, args.model, device=args.device, output_dir=args.out,
                                                is_fp16=args.fp16, seed=args.seed, compile=args.compile,
                                                cuda_graphs=_GRAPHS[args.cuda_graphs])
    t0 = time.perf_counter()
    learner.fit(args.epochs, lr=args.lr)
    if args.tune_thresholds and databunch.multi_label:
        learner.tune_thresholds()
    results = learner.validate(quiet=True)
    print(f"trained in {time.perf_counter() - t0:.0f}s; validation: " +
          ", ".join(f"{k} {v:.4f}" for k, v in results.items() if isinstance(v, float)))
    if args.tune_thresholds and databunch.multi_label:
        # validate's metrics decide at 0.5; the saved thresholds are what predict and eval decide with
        import numpy as np

        from .metrics import evaluate
        ds = databunch.valid_ds
        targets = np.zeros((ds.n_texts, databunch.c), dtype=np.float32)
        targets[ds.owner] = ds.targets  # per text, as the logits are
        tuned = evaluate(learner.validation_predictions(databunch.valid), targets, databunch.problem_type,
                         databunch.labels, thresholds=learner.thresholds)
        # tuned on these rows: their scores here are the best the grid found on them, not what unseen rows get
        print("validation at the thresholds tuned on these same rows (what predict and eval use; optimistic, as "
              "they were chosen here; bertlearn eval on other rows says what they are worth): " +
              ", ".join(f"{k} {v:.4f}" for k, v in tuned.items() if isinstance(v, float)))
    out = learner.save_model(args.out)
    print(f"model saved to {out}")
    if args.onnx:
        print(f"ONNX model saved to {learner.to_onnx(args.out / 'onnx')}")
    return 0


_GRAPHS = {"auto": "auto", "on": True, "off": False}


def _warn_unused_for_classification(args: argparse.Namespace, val_file: str | None) -> None:
    """Warn about each option given that a classification run does not use, and why, before the data is read.

    Args:
        args: the parsed `bertlearn train` arguments.
        val_file: the validation file the run uses (None: a share of the training file is held out).
    """
    multi_label = args.multi_label or args.label_delim is not None  # as the databunch decides it
    unused: list[str] = []
    if args.tune_thresholds and not multi_label:
        kind = "regression (it predicts a number)" if args.regression else \
            "single-label classification (it predicts the most probable label)"
        unused.append(f"--tune-thresholds: no effect on {kind}; per-label thresholds are tuned for --multi-label")
    if args.train_size != _TRAIN_SIZE:
        held = f"it validates on {val_file}" if val_file else \
            f"without --val-file or val.csv it holds out a random 20% of {args.train_file} for validation"
        unused.append(f"--train-size: no effect on classification (it is the share trained on for NER from one "
                      f"JSONL file); {held}")
    if args.label_file is not None:
        unused.append("--label-file: no effect on classification (it is the tag list of token classification); "
                      "the label order comes from labels.csv in --data when there, else the sorted training labels")
    ner_only = [name for name, given in (("--tag-scheme", args.tag_scheme != "auto"),
                                         ("--label-all-tokens", args.label_all_tokens)) if given]
    if ner_only:
        unused.append(f"{', '.join(ner_only)}: no effect on classification (token classification options)")
    if args.chunk_size != _CHUNK_SIZE and not args.on_disk:
        unused.append("--chunk-size: no effect without --on-disk (it is the rows read at a time when streaming)")
    for line in unused:
        warnings.warn(line, stacklevel=3)


def _train_ner(args: argparse.Namespace, *, chosen: bool) -> int:
    from .data import BertNERDataBunch
    from .errors import DataError
    from .tasks import BertNERLearner

    data, train_file = args.data, args.train_file
    jsonl = Path(train_file).suffix.lower() == ".jsonl"
    unused = {"--text-col": args.text_col != ["text"], "--label-col": args.label_col != ["label"],
              "--multi-label": args.multi_label, "--label-delim": args.label_delim is not None,
              "--regression": args.regression, "--truncation": args.truncation != "head", "--sep": args.sep is not None,
              "--quoting": args.quoting != "minimal",
              "--on-disk": args.on_disk, "--tune-thresholds": args.tune_thresholds,
              "--val-file": jsonl and args.val_file is not None, "--label-file": jsonl and args.label_file is not None,
              "--tag-scheme": jsonl and args.tag_scheme != "auto",
              "--train-size": not jsonl and args.train_size != _TRAIN_SIZE,
              "--chunk-size": args.chunk_size != _CHUNK_SIZE}
    if any(unused.values()):
        warnings.warn(f"{', '.join(k for k, v in unused.items() if v)}: no effect on token classification"
                      f"{' from JSONL (it splits off validation with --train-size and tags IOB2)' if jsonl else ''}",
                      stacklevel=2)
    common = dict(bs=args.bs, maxlen=args.maxlen, seed=args.seed, device=args.device)
    if jsonl:
        databunch = BertNERDataBunch.from_jsonl(data, train_file, args.model, train_size=args.train_size,
                                                random_state=args.seed, label_all_tokens=args.label_all_tokens,
                                                **{k: v for k, v in common.items() if k != "seed"})
    else:
        looked = ("val.txt", "dev.conll", "valid.conll", "val.conll", "dev.txt", "valid.txt")
        val_file = args.val_file or next((f for f in looked if (data / f).is_file()), None)
        if val_file is None:
            raise DataError(f"no validation file in {str(data)!r}: looked for {', '.join(looked)}; pass --val-file "
                            "(token classification validates on its own file)")
        databunch = BertNERDataBunch.from_conll(data, args.model, train_file=train_file, val_file=val_file,
                                                label_file=args.label_file, tag_scheme=args.tag_scheme,
                                                label_all_tokens=args.label_all_tokens, **common)
    print(f"data: token classification{' (from the file suffix; --task classification to override)' if chosen else ''}"
          f", {databunch.train_ds.n_texts} train / {databunch.valid_ds.n_texts} valid sentences, {databunch.c} tags "
          f"({databunch.scheme}), entity types {databunch.entity_types[:10]}", file=sys.stderr)
    learner = BertNERLearner.from_pretrained_model(databunch, args.model, args.out, args.device, is_fp16=args.fp16,
                                                   seed=args.seed, compile=args.compile,
                                                   cuda_graphs=_GRAPHS[args.cuda_graphs])
    t0 = time.perf_counter()
    learner.fit(args.epochs, lr=args.lr)
    results = learner.validate(quiet=True)
    print(f"trained in {time.perf_counter() - t0:.0f}s; validation: " +
          ", ".join(f"{k} {v:.4f}" for k, v in results.items() if isinstance(v, float) and "_" not in k))
    out = learner.save_model(args.out)
    print(f"model saved to {out}")
    if args.onnx:
        print(f"ONNX model saved to {learner.to_onnx(args.out / 'onnx')}")
    return 0


_QUOTING_HELP = ("how fields are quoted: minimal (default: a field in double quotes is quoted, its quotes doubled, "
                 "as pandas and spreadsheets write them) or none (a file written without quoting: every quote is "
                 "part of its field)")


def _jsonl_key(names: Sequence[str] | None, option: str, default: str) -> str:
    # a JSONL object has one text and one list of spans: a second name was dropped without a word
    if names and len(names) > 1:
        from .errors import DataError
        raise DataError(f"{option} {' '.join(names)}: each line of a token classifier's JSONL file is read at one "
                        f"key (default {default!r}); pass one name")
    return names[0] if names else default


def _separator(value: str) -> str:
    """`--sep` as typed in a shell: `'\\t'` (a backslash and a t) is a tab; one character in the end."""
    sep = value
    if "\\" in sep:
        import codecs
        with contextlib.suppress(UnicodeDecodeError), warnings.catch_warnings():
            warnings.simplefilter("ignore", DeprecationWarning)  # '\s' is an invalid escape, left as typed
            sep = codecs.decode(sep, "unicode_escape")
    if len(sep) != 1:
        # pandas reads a longer separator as a regular expression, which ignores quotes: a tab typed as \t split
        # quoted texts into several rows without a word
        raise argparse.ArgumentTypeError(f"{value!r} is not one character; a CSV separator is one (a tab: '\\t' or "
                                         "$'\\t'; regular expressions are not read: their fields ignore quotes)")
    return sep


def _quoting(args: argparse.Namespace) -> int:
    return csv.QUOTE_NONE if args.quoting == "none" else csv.QUOTE_MINIMAL


def _is_tagger(predictor: Any) -> bool:
    return getattr(predictor.encoder, "problem_type", None) == "token_classification"


def _predict_ner(args: argparse.Namespace, predictor: Any) -> int:
    from .atomic import atomic_file
    from .data import read_conll, read_csv

    suffix = args.input.suffix.lower()
    if suffix == ".jsonl":
        from .errors import DataError
        if args.sep is not None:
            warnings.warn(f"{args.input.name} is read as JSONL (one JSON object a line), which --sep does not apply "
                          "to", stacklevel=2)
        key, texts = _jsonl_key(args.text_col, "--text-col", "text"), []
        # JSONL lines end at "\n" alone: str.splitlines would also cut a text at U+2028 or U+0085 inside it
        for n, line in enumerate(args.input.read_text(encoding="utf-8-sig").split("\n"), 1):
            if line.strip():
                try:
                    text = json.loads(line)[key]
                except (ValueError, KeyError, TypeError):
                    raise DataError(f"{args.input}, line {n}: not a JSON object with a {key!r} string; each line "
                                    f'holds one, like {{"{key}": "..."}} (--text-col names another key)') from None
                if not isinstance(text, str):  # str(None) was tagged as the text "None", without a word
                    raise DataError(f"{args.input}, line {n}: {key!r} holds {text!r}, not a string; each line holds "
                                    f'one text, like {{"{key}": "..."}}')
                texts.append(text)
        with atomic_file(args.output) as tmp, open(tmp, "w", encoding="utf-8") as fh:
            for text, ents in zip(texts, predictor.predict_batch(texts)):
                fh.write(json.dumps({"text": text, "entities": ents}) + "\n")
        print(f"wrote the entities of {len(texts):,} texts to {args.output}", file=sys.stderr)
        return 0
    if suffix == ".tsv" and args.text_col is None and _sentence_blocks(args.input, predictor.settings.get("text_col")):
        suffix = ".conll"  # word<TAB>tag lines in sentences (BioBERT's NER sets): CoNLL, as it always was read
    if suffix in (".csv", ".tsv"):
        from .errors import DataError
        # a .tsv was read as CoNLL: its header and first column tagged as words, a tag added to every row
        sep = args.sep if args.sep is not None else "\t" if suffix == ".tsv" else None
        df = read_csv(args.input, "--input", sep=sep, quoting=_quoting(args))
        if args.text_col is not None and len(args.text_col) > 1:  # the second column was dropped without a word
            raise DataError(f"--text-col {' '.join(args.text_col)}: a token classifier tags one text a row; give "
                            "one column")
        cols = _text_cols(args, predictor, list(df.columns))
        _refuse_overwritten_columns(list(df.columns), ["entities"], args.input)
        texts = _texts_of(df, cols[:1], str(args.input))
        out = df.copy()
        out["entities"] = [json.dumps(ents) for ents in predictor.predict_batch(texts)]
        with atomic_file(args.output) as tmp:
            out.to_csv(tmp, index=False)
        print(f"wrote the entities of {len(df):,} texts to {args.output}", file=sys.stderr)
        return 0
    unread = [name for name, given in (("--sep", args.sep is not None), ("--text-col", args.text_col is not None))
              if given]
    if unread:
        why = "its sentences are blocks of lines" if args.input.suffix.lower() == ".tsv" else \
            "its suffix is not .csv, .tsv or .jsonl"
        warnings.warn(f"{args.input.name} is read as CoNLL (one word a line: {why}), which {' and '.join(unread)} do "
                      "not apply to; name a table .csv or .tsv to read its text column", stacklevel=2)
    sents = read_conll(args.input, tagged=False)
    tags = iter([t for sent in predictor.predict_tokens(sents.words) for t in sent])
    # read as read_conll reads it (a byte-order mark dropped), so each word line meets its own tag
    with atomic_file(args.output) as tmp, open(args.input, encoding="utf-8-sig") as src, \
            open(tmp, "w", encoding="utf-8") as dst:
        for line in src:
            body = line.rstrip("\n")
            if body.strip() and not body.strip().startswith("-DOCSTART-"):
                sep = "\t" if "\t" in body else " "
                body = f"{body.rstrip()}{sep}{next(tags)}"
            dst.write(body + "\n")
    print(f"wrote {sum(len(s) for s in sents.words):,} tagged words ({len(sents):,} sentences) to {args.output}",
          file=sys.stderr)
    return 0


def _sentence_blocks(path: Path, text_col: Any = None, lines: int = 10_000) -> bool:
    """Whether a file's first lines hold a blank line with more lines after it: CoNLL's sentence breaks, which a
    table does not have, unless its header names the text column (a quoted text of two paragraphs holds a blank line
    too)."""
    seen_blank = False
    with open(path, encoding="utf-8-sig", errors="replace") as f:
        header = [c.strip().strip('"') for c in f.readline().rstrip("\r\n").split("\t")]
        if (text_col if isinstance(text_col, str) else "text") in header:
            return False
        for line in itertools.islice(f, lines):
            if not line.strip():
                seen_blank = True
            elif seen_blank:
                return True
    return False


def _eval_ner(args: argparse.Namespace, predictor: Any) -> int:
    from .data import read_conll, read_jsonl
    from .data.conll import entity_type
    from .errors import DataError
    from .tasks.token_classification import entity_report, entity_scores

    if args.input.suffix.lower() in (".csv", ".tsv"):
        raise DataError(f"--input {str(args.input)!r}: {str(args.model)!r} is a token classifier (NER), scored on "
                        "tagged words: a CoNLL file (a word and its tag per line) or doccano JSONL (text and "
                        "[start, end, label] spans), not a CSV")
    jsonl = args.input.suffix.lower() == ".jsonl"
    unused = {"--text-col": not jsonl and args.text_col is not None,
              "--label-col": not jsonl and args.label_col is not None,
              "--label-delim": args.label_delim is not None, "--sep": args.sep is not None,
              "--quoting": args.quoting != "minimal"}
    if any(unused.values()):  # they were dropped without a word
        warnings.warn(f"{', '.join(k for k, v in unused.items() if v)}: no effect on scoring a token classifier "
                      f"on a {'JSONL' if jsonl else 'CoNLL'} file", stacklevel=2)
    if jsonl:  # the keys, as bertlearn predict reads --text-col from JSONL
        sents = read_jsonl(args.input, text_key=_jsonl_key(args.text_col, "--text-col", "text"),
                           labels_key=_jsonl_key(args.label_col, "--label-col", "labels"))
    else:
        sents = read_conll(args.input)
    # entity types the model never predicts score zero whatever it does: a file of another tag set, said up front
    model_types = {entity_type(t) for t in predictor.encoder.labels} - {None}
    data_types = {entity_type(t) for s in sents.tags for t in s} - {None}
    if data_types and not data_types & model_types:
        warnings.warn(f"--input {str(args.input)!r}: its entity types {sorted(data_types)[:20]} share none with those "
                      f"{str(args.model)!r} predicts, {sorted(model_types)[:20]}: every entity counts as missed and "
                      "every predicted one as wrong, so the scores are near zero whatever the model does; score it on "
                      "a file tagged with its types", stacklevel=2)
    pred = predictor.predict_tokens(sents.words)
    scores = entity_scores(sents.tags, pred)
    report = entity_report(sents.tags, pred)
    print(f"{len(sents):,} sentences, {sum(len(s) for s in sents.words):,} words of {args.input}")
    for k, v in scores.items():
        print(f"{k:<10} {v:.4f}")
    print(report.to_string(float_format=lambda v: f"{v:.4f}"))
    if args.json:
        from .atomic import atomic_file
        per_type = {kind: {"precision": float(row["precision"]), "recall": float(row["recall"]),
                           "f1": float(row["f1"]), "support": int(row["support"])} for kind, row in report.iterrows()}
        with atomic_file(args.json) as tmp:
            tmp.write_text(_json({"sentences": len(sents), **scores, "per_type": per_type}))
    return 0


def _load_predictor(path: Path, device: str | None, bs: int, precision: str = "auto", compile: bool = False,
                    cuda_graphs: str = "auto") -> Any:
    from .errors import ModelError
    from .predict import is_onnx_folder, load_predictor

    folder = path.parent if path.suffix == ".onnx" else path
    if not folder.is_dir():
        raise ModelError(f"--model {str(path)!r} is not a folder; pass the folder written by bertlearn train or save_model")
    if compile and is_onnx_folder(path):
        warnings.warn("--compile applies to PyTorch models; this ONNX model runs on ONNX Runtime as it is",
                      stacklevel=2)
        compile = False
    return load_predictor(path, device=device, bs=bs, precision=precision, compile=compile,
                          cuda_graphs=_GRAPHS[cuda_graphs])


def _text_cols(args: argparse.Namespace, predictor: Any, columns: Sequence[str]) -> Any:
    from .errors import DataError

    if args.text_col:
        cols = list(args.text_col)
    else:
        saved = predictor.settings.get("text_col")
        cols = list(saved) if isinstance(saved, list) else [saved] if saved else ["text"]
        if not saved and not set(cols) <= set(columns) and predictor.encoder.pairs:
            # a plain Hugging Face pair model records no columns; a bertlearn one does, and a file without them
            # was read as text_a, text_b whatever those held (the training pair's order swapped, without a word)
            cols = ["text_a", "text_b"]
        missing = [c for c in cols if c not in columns]
        if missing and len(cols) > 1:
            raise DataError(f"{str(args.input)!r} has no column {missing[0]!r}: the model was trained on the columns "
                            f"{cols} (its bertlearn.json), and the file's columns are {list(columns)}; pass "
                            f"--text-col with the file's columns holding those texts, in that order")
    missing = [c for c in cols if c not in columns]
    if missing:
        raise DataError(f"--text-col: column {missing[0]!r} not in {str(args.input)!r}; columns are {list(columns)}")
    return cols


def _texts_of(df: Any, cols: list[str], source: str,
              empty_fix: str = "fill or remove those rows (the predictions file has a row for every input row)"
              ) -> list:
    from .data import texts_from_frame
    texts, _ = texts_from_frame(df, cols if len(cols) > 1 else cols[0], source, dropna=False, numbers=True,
                                empty_fix=empty_fix)
    return texts


@contextlib.contextmanager
def _progress_line_ended(rows: Any) -> Any:
    # an error in a later chunk (a bad row) was printed on the end of the "predicted N rows" progress line
    try:
        yield
    except Exception:
        if rows():
            print(file=sys.stderr)
        raise


def _refuse_overwritten_columns(columns: list, written: list[str], path: Path) -> None:
    # the output keeps the input's columns: one of the predictions' names among them (a previous model's output,
    # gold labels named "prediction") was written over without a word
    clash = [c for c in written if c in columns]
    if clash:
        from .errors import DataError
        raise DataError(f"--input: {path.name} already has the column(s) {clash} that the predictions are written "
                        f"to (the output keeps the input's columns and adds {written}); rename them in the file, or "
                        "predict from a copy without them")


def _predict(args: argparse.Namespace) -> int:
    from .atomic import atomic_file
    from .data import read_csv
    from .data.frames import read_csv_chunks
    from .predict import decide

    predictor = _load_predictor(args.model, args.device, args.bs, args.precision, args.compile, args.cuda_graphs)
    if not args.input.is_file():
        read_csv(args.input, "--input")  # raises with the folder's listing
    if _is_tagger(predictor):
        return _predict_ner(args, predictor)
    enc = predictor.encoder
    n, t0, cols = 0, time.perf_counter(), None
    # read as train and eval read (cp1252 with a warning, parse errors and rows with fields past the header's as
    # DataErrors): pandas' own reader gave tracebacks, and took the first field of rows ending in a delimiter as
    # the index, predicting the next column in place of the texts
    reader = read_csv_chunks(args.input, "--input", sep=args.sep, chunksize=max(1, args.chunk_size),
                             quoting=_quoting(args))
    # written aside and renamed at the end: an interrupted run never leaves a truncated predictions file
    with atomic_file(args.output) as tmp, open(tmp, "w", newline="", encoding="utf-8") as fh, \
            _progress_line_ended(lambda: n):
        for i, chunk in enumerate(reader):
            if i == 0:
                cols = _text_cols(args, predictor, list(chunk.columns))
                written = ["prediction"] + ([] if enc.regression else [f"prob_{label}" for label in enc.labels])
                _refuse_overwritten_columns(list(chunk.columns), written, args.input)
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
                    # as computed (float32's shortest text): rounded to 6 places, a confident row read 0.0 / 1.0,
                    # so a log-loss of the file was infinite and its scores tied when ranked
                    out[f"prob_{label}"] = probs[:, j]
            out.to_csv(fh, header=i == 0, index=False)
            fh.flush()
            n += len(chunk)
            rate = n / max(time.perf_counter() - t0, 1e-9)
            print(f"\rpredicted {n:,} rows ({rate:,.0f}/s)", end="", file=sys.stderr, flush=True)
    print(f"\nwrote {n:,} predictions to {args.output}", file=sys.stderr)
    return 0


def _eval(args: argparse.Namespace) -> int:
    from .data import read_csv, targets_from_frame
    from .metrics import evaluate

    predictor = _load_predictor(args.model, args.device, args.bs, getattr(args, "precision", "auto"))
    if _is_tagger(predictor):
        return _eval_ner(args, predictor)
    df = read_csv(args.input, "--input", sep=args.sep, quoting=_quoting(args))
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
    # the saved delimiter reads the saved (joined) column; 0/1 columns named here take none
    inherit = not args.label_col or len(args.label_col) == 1
    label_delim = args.label_delim if args.label_delim is not None else \
        predictor.settings.get("label_delim") if inherit else None
    # saved_model: a label the model lacks is fixed in the data (or by training), not in labels.csv
    targets = targets_from_frame(df, label_col, enc, label_delim=label_delim, source=str(args.input),
                                 saved_model=True)
    logits = predictor.predict_logits(_texts_of(df, cols, str(args.input), "fill or remove those rows"))
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
        from .atomic import atomic_file
        with atomic_file(args.json) as tmp:
            tmp.write_text(_json({"rows": len(df), **metrics}))
    return 0


def _json(payload: dict) -> str:
    """`payload` as strict JSON (--json files): a number that is not finite is null; json.dumps wrote NaN, which
    jq, JavaScript and strict parsers refuse."""
    from .saved import json_ready
    return json.dumps(json_ready(payload), indent=2, allow_nan=False)


def _senses(args: argparse.Namespace) -> int:
    import numpy as np

    from .embed import EXAMPLE_SENSES, cosine_similarity_matrix, project_2d, sense_separation, word_in_context
    from .errors import DataError

    if args.file is not None and args.sentence:
        # the -s sentences were dropped without a word
        raise DataError(f"--file {str(args.file)!r} and -s both give the sentences to compare; pass one of them (put "
                        "the -s sentences in the file, one a line)")
    if args.file is not None:
        if not args.file.is_file():
            raise DataError(f"--file {str(args.file)!r} not found")
        lines = [l.rstrip("\r") for l in args.file.read_text(encoding="utf-8-sig").split("\n") if l.strip()]
        pairs = [l.split("\t", 1) if "\t" in l else (None, l) for l in lines]
    elif args.sentence:
        pairs = [(None, s) for s in args.sentence]
    elif args.word.lower() in EXAMPLE_SENSES:
        pairs = [(sense, s) for sense, sents in EXAMPLE_SENSES[args.word.lower()].items() for s in sents]
    else:
        raise DataError(f"no sentences for {args.word!r}: pass -s SENTENCE (repeat) or --file; built-in examples "
                        f"exist for {sorted(EXAMPLE_SENSES)}")
    if len(pairs) < 2:
        raise DataError(f"{len(pairs)} sentence given; comparing contexts needs at least 2")
    senses = [p[0] for p in pairs]
    sentences = [p[1].strip() for p in pairs]
    layer = args.layer[0] if len(args.layer) == 1 else args.layer
    wic = word_in_context(args.word, sentences, args.model, layer=layer, device=args.device)
    sim = cosine_similarity_matrix(wic.contextual)
    names = [f"{i + 1}" + (f" {senses[i]}" if senses[i] else "") for i in range(len(sentences))]
    for name, sentence in zip(names, sentences):
        print(f"[{name}] {sentence}")
    width = max(len(n) for n in names)
    print(f"\ncosine similarity of the contextual vectors of {args.word!r}:")
    print(" " * (width + 2) + " ".join(f"{i + 1:>5}" for i in range(len(names))))
    for name, row in zip(names, sim):
        print(f"[{name:<{width}}] " + " ".join(f"{v:5.2f}" for v in row))
    static = cosine_similarity_matrix(np.stack([wic.static] * len(sentences)))
    print(f"\nstatic (input-embedding) vector: one vector in every sentence, similarity {static.min():.2f} everywhere")
    if all(senses) and len(set(senses)) > 1:
        sep = sense_separation(sim, senses)
        print(f"same-sense similarity {sep['same_sense']:.3f} vs cross-sense {sep['cross_sense']:.3f}; "
              f"{sep['closest_to_own_sense']:.0%} of sentences are closest to their own sense")
    if args.plot is not None:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
        pts = project_2d(wic.contextual)  # the static vector lives in another space (the input embeddings)
        fig, ax = plt.subplots(figsize=(7, 5))
        kinds = sorted({s or "sentence" for s in senses})
        for kind in kinds:
            idx = [i for i, s in enumerate(senses) if (s or "sentence") == kind]
            ax.scatter(pts[idx, 0], pts[idx, 1], label=kind, s=60)
            for i in idx:
                ax.annotate(str(i + 1), pts[i], textcoords="offset points", xytext=(4, 4))
        ax.set_title(f"contextual vectors of '{args.word}' (PCA); a static embedding would be one point")
        ax.legend()
        fig.tight_layout()
        fig.savefig(args.plot)
        print(f"plot saved to {args.plot}")
    return 0


def _serve(args: argparse.Namespace) -> int:
    from .errors import ModelError
    from .serve import ServeLimits, serve

    from .predict import is_onnx_folder

    path = args.model / "onnx" if args.onnx else args.model
    if not path.is_dir():
        hint = ""
        if args.onnx and args.model.is_dir() and is_onnx_folder(args.model):
            hint = f"; {str(args.model)!r} is itself an ONNX export: serve it without --onnx"
        elif args.onnx and is_onnx_folder(args.model.parent / "onnx"):
            # to_onnx() and save_model() by default write output_dir/onnx and output_dir/model_out, side by side
            hint = (f"; an export sits beside it in {str(args.model.parent / 'onnx')!r}: serve that folder (without "
                    f"--onnx), or export into the model's folder with learner.to_onnx({str(path)!r})")
        raise ModelError(f"{str(path)!r} is not a folder; pass the folder written by bertlearn train / save_model"
                         + (" (--onnx serves its onnx/ subfolder, written by --onnx / to_onnx)" if args.onnx else "")
                         + hint)
    if args.onnx:
        from .saved import check_same_settings, check_same_weights
        check_same_weights(args.model, path)
        check_same_settings(args.model, path)  # same weights, other thresholds or maxlen: other decisions
    serve(path, host=args.host, port=args.port, log_level=args.log_level, device=args.device,
          max_batch_size=args.max_batch_size, max_wait_ms=args.max_wait_ms, precision=args.precision,
          limits=ServeLimits(args.max_body_bytes, args.max_texts, args.max_chars), drain_s=args.drain_ms / 1000)
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    """Run the `bertlearn` command with `argv` (default: the process's arguments); return the exit code.

    Args:
        argv: the arguments after `bertlearn` (default: `sys.argv[1:]`).
    """
    parser = build_parser()
    args = parser.parse_args(argv)
    from .errors import BertLearnError

    try:
        return {"train": _train, "predict": _predict, "eval": _eval, "senses": _senses,
                "serve": _serve}[args.command](args)
    except BertLearnError as e:
        print(f"bertlearn {args.command}: error: {e}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print(f"\nbertlearn {args.command}: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
