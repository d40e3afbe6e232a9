"""BertDataBunch: CSV files or DataFrames plus a tokenizer become fastai `DataLoaders`.

The factories read (`data.frames`), encode (`data.encode`) and assemble the loaders (`data.loader`) through one
assembly step; files larger than memory stream through an on-disk token store (`data.store`).
"""

from __future__ import annotations

import inspect
import logging
import random
import time
import warnings
from pathlib import Path
from typing import Any, Iterator, Sequence

import numpy as np
import pandas as pd
import torch
from fastai.data.core import DataLoaders
from fastai.data.load import DataLoader

from ..compat import note_difference, note_no_effect, one_setting
from ..device import resolve_device
from ..distributed import barrier, init_distributed, is_main_process, launched_distributed, multi_gpu_without_effect
from ..errors import DataError, user_stacklevel
from .cache import tokenizer_fingerprint
from .encode import TextEncoder, tokenizer_within
from .frames import (CSV_CELLS, MULTI, SINGLE, as_texts, check_column_counts, check_csv_text, check_label_use,
                     empty_texts, mark_repeated_names,
                     class_weights, columns_like_training, csv_quoting, holdout_order, label_parts, labels_and_targets,
                     positive_int, read_csv, read_label_file, read_watching_fields, refuse_number_columns,
                     refuse_text_as_labels, regression_name, resolve_columns, row_names_in_front, single_labels,
                     targets_from_frame, task_options, texts_from_frame, holdout_share)
from .loader import BertDataLoader, EncodedDataset, StoredRow
from .store import build_store, load_store, store_key

__all__ = ["BertDataBunch"]

_log = logging.getLogger(__name__)


class BertDataBunch(DataLoaders):
    """fastai `DataLoaders` of tokenized texts for a BERT-family classifier.

    Two ways in. The fast-bert call `BertDataBunch(data_dir, label_dir, tokenizer, train_file='train.csv',
    val_file='val.csv', ...)` reads the CSV files (see `from_csv`); the factories `from_csv` and `from_df`
    are the documented API, and fastai's internal form `BertDataBunch(train_dl, valid_dl, path=, device=)`
    only stores loaders.

    Args:
        data_dir: folder holding `train_file` and `val_file` (fast-bert form).
        label_dir: folder holding `label_file` (`labels.csv`, one label per line, no header; optional).
        tokenizer: a tokenizer object, or a hub name / local path to load one from; None for the
            packaged default model's tokenizer.
        train_file, val_file: CSV file names inside `data_dir`.
        test_data: texts (a list) or a CSV file name in `data_dir` to predict on later.
        label_file: the label list file name inside `label_dir`.
        text_col: text column name or integer position.
        label_col: label column name or position; for multi-label, a list of 0/1 columns.
        bs: batch size (alias `batch_size_per_gpu`).
        maxlen: maximum tokens per text, special tokens included (alias `max_seq_length`).
        multi_gpu, backend, model_type, custom_sampler: fast-bert's; accepted, no effect (named once in a
            `FastBertCompatWarning`). Given by position they take fast-bert's places: `(..., max_seq_length,
            multi_gpu, multi_label, backend, model_type, logger, clear_cache, no_cache, custom_sampler, pos_weight,
            weight)`.
        clear_cache: first delete every tokenization cache file (`tok-*.npz`) of the cache folder in effect
            (`cache_dir=` if given, else `data_dir/cache`), those of other settings and files too; with
            `on_disk=True`, rebuild the token stores of these files instead.
        no_cache: neither read nor write the cache folder in effect. This constructor caches by default in
            `data_dir/cache` (as fast-bert did):
            the token ids of `train_file` and `val_file` (not `test_data`), one `.npz` each, keyed by the texts'
            content, the tokenizer and every encoding setting (`TextEncoder.key_parts`), so a changed input never
            reuses stale ids. The factories `from_csv` / `from_df` cache only when given `cache_dir`.
        multi_label: several labels per text.
        logger: a `logging.Logger` for progress messages.
        pos_weight, weight: per-label positive weights (multi-label) / per-class weights (single-label) for the
            loss, or "balanced" (see `from_df`).
    """

    def __init__(self, *args: Any, **kwargs: Any):
        if (not args and "data_dir" not in kwargs) or (args and isinstance(args[0], DataLoader)):
            # fastai's own form (used by `new_empty`, `export`...): store the loaders
            super().__init__(*args, **kwargs)
            return
        # fast-bert's form: do the work through the factory, then adopt what it built
        factory = type(self)._from_fast_bert_args
        try:
            inspect.signature(factory).bind(*args, **kwargs)
        except TypeError as e:  # said with the order, not as Python's "got multiple values for argument"
            order = [n for n, p in inspect.signature(factory).parameters.items()
                     if p.kind == p.POSITIONAL_OR_KEYWORD][:4]
            hint = "" if "label_dir" in order else " (no label_dir here: the tag list is label_file= in data_dir)"
            raise DataError(f"{type(self).__name__}({', '.join(order)}, ...): {e}; check the order of the "
                            f"arguments given by position{hint}") from None
        built = factory(*args, **kwargs)
        self.__dict__.update(built.__dict__)

    @classmethod
    def _from_fast_bert_args(cls, data_dir: str | Path, label_dir: str | Path | None = None, tokenizer: Any = None,
                             train_file: str = "train.csv", val_file: str | None = "val.csv",
                             test_data: Sequence[str] | str | None = None, label_file: str = "labels.csv",
                             text_col: Any = "text", label_col: Any = "label", bs: int | None = None,
                             maxlen: int | None = None,
                             multi_gpu: bool = False, multi_label: bool = False, backend: str | None = None,
                             model_type: str | None = None, logger: logging.Logger | None = None,
                             clear_cache: bool = False, no_cache: bool = False, custom_sampler: Any = None,
                             pos_weight: Sequence[float] | str | None = None,
                             weight: Sequence[float] | str | None = None, *, batch_size_per_gpu: int | None = None,
                             max_seq_length: int | None = None, **kwargs: Any) -> "BertDataBunch":
        # the places after max_seq_length are fast-bert's, in its order (multi_gpu, multi_label, backend, model_type,
        # logger, clear_cache, no_cache, custom_sampler, pos_weight, weight): a call by position lands as it did there
        ignored = {"model_type": model_type, "backend": backend, "custom_sampler": custom_sampler}
        if multi_gpu_without_effect(multi_gpu):
            ignored = {"multi_gpu": multi_gpu, **ignored}
        note_no_effect("BertDataBunch", ignored)
        cache_dir = Path(data_dir) / "cache"
        if kwargs.get("on_disk"):  # the token store is the cache: from_csv handles both flags
            kwargs.update(clear_cache=clear_cache, no_cache=no_cache)
        else:
            # fast-bert cached in data_dir/cache too; both flags act on the folder in effect (a cache_dir= given
            # was written with no_cache=True, and clear_cache emptied data_dir/cache instead)
            kwargs.setdefault("cache_dir", cache_dir)
            kwargs.update(clear_cache=clear_cache, no_cache=no_cache)
        built = cls.from_csv(data_dir, tokenizer, train_file=train_file, val_file=val_file, test_data=test_data,
                             label_dir=label_dir, label_file=label_file, text_col=text_col, label_col=label_col,
                             bs=one_setting("BertDataBunch", "bs", bs, "batch_size_per_gpu", batch_size_per_gpu, 32),
                             maxlen=one_setting("BertDataBunch", "maxlen", maxlen, "max_seq_length", max_seq_length,
                                                512),
                             multi_label=multi_label, logger=logger, pos_weight=pos_weight, weight=weight, **kwargs)
        if val_file is None:
            # fast-bert trained on every row and validated on none; here rows are held out, fewer train
            valid_pct = holdout_share(kwargs.get("valid_pct"), None)
            _say_holdout(str(train_file), valid_pct, built.train.dataset.n_texts, built.valid.dataset.n_texts)
        return built

    @classmethod
    def from_csv(cls, data_dir: str | Path, tokenizer: Any = None, *, train_file: str = "train.csv",
                 val_file: str | None = "val.csv", test_data: Sequence[str] | str | None = None,
                 label_dir: str | Path | None = None, label_file: str = "labels.csv", sep: str | None = None,
                 encoding: str | None = None, quoting: int | None = None, on_disk: bool = False,
                 chunksize: int | None = None, **kwargs: Any) -> "BertDataBunch":
        """Read `train_file` / `val_file` (and `labels.csv` when present) from `data_dir`, then call `from_df`.

        With `on_disk=True` the files are never loaded whole: they are read `chunksize` rows at a time,
        tokenized into a token store under `data_dir/cache/` (reused while the file and settings are unchanged)
        and batches read their rows from disk, so files larger than memory train (see `bertlearn.data.store`).

        Args:
            data_dir: folder of the CSV files.
            tokenizer: tokenizer object, name or path (None: the packaged default).
            train_file, val_file: CSV names; with `val_file=None`, `valid_pct` of train is held out.
            test_data: texts or a CSV file name (its `text_col` is used) for later prediction.
            label_dir, label_file: where the optional label list lives (default: `data_dir`).
            sep, encoding: CSV separator and encoding (default ',' and UTF-8, with cp1252 fallback).
            quoting: `csv.QUOTE_MINIMAL` (default: a field in double quotes is quoted, its quotes doubled, as pandas
                and spreadsheets write them; a field that starts with a quote and does not end with it, or rows
                merged by one, is a `DataError` naming the line) or `csv.QUOTE_NONE` for files written without
                quoting (a TSV of texts as typed: every quote is part of its field).
            on_disk: stream the CSV files through an on-disk token store instead of reading them into memory.
            chunksize: rows per chunk with `on_disk` (default 50,000); without it, said to have no effect.
            **kwargs: everything `from_df` takes.
        """
        data_dir = Path(data_dir)
        if not data_dir.is_dir():
            raise DataError(f"data_dir {str(data_dir)!r} is not a directory")
        quoting = csv_quoting(quoting)
        if chunksize is not None and not on_disk:
            warnings.warn(f"chunksize={chunksize} has no effect without on_disk=True (it is the rows read at a time "
                          "when the files stream through an on-disk token store); the files are read whole",
                          stacklevel=user_stacklevel())
        chunksize = CHUNKSIZE if chunksize is None else chunksize
        if on_disk:
            labels = kwargs.pop("labels", None)
            if labels is None:
                labels = _label_list(data_dir, label_dir, label_file, regression=bool(kwargs.get("regression")))
            return cls._from_csv_on_disk(data_dir, tokenizer, train_file=train_file, val_file=val_file,
                                         labels=labels, sep=sep, encoding=encoding, quoting=quoting,
                                         chunksize=chunksize, test_data=test_data, **kwargs)
        read = dict(sep=sep, encoding=encoding, quoting=quoting)
        train_df = read_csv(data_dir / train_file, "train_file", **read)
        valid_df = None if val_file is None else read_csv(data_dir / val_file, "val_file", **read)
        labels = kwargs.pop("labels", None)
        if labels is None:
            labels = _label_list(data_dir, label_dir, label_file, regression=bool(kwargs.get("regression")))
        if isinstance(test_data, (str, Path)):
            # positions name the training file's columns, read in the test file by their names (as on disk)
            names = resolve_columns(train_df, kwargs.get("text_col", "text"), "text_col", str(train_file))
            test_data = _test_texts(data_dir / test_data, names if len(names) == 2 else names[0], **read)
        return cls.from_df(train_df, valid_df, tokenizer, labels=labels, test_data=test_data, path=data_dir,
                           sources=(str(train_file), str(val_file)), **kwargs)

    @classmethod
    def _from_csv_on_disk(cls, data_dir: Path, tokenizer: Any, *, train_file: str, val_file: str | None,
                          labels: Sequence[str] | None, sep: str | None, encoding: str | None, quoting: int,
                          chunksize: int, text_col: Any = "text", label_col: Any = "label", bs: int = 32,
                          val_bs: int | None = None, maxlen: int = 512, multi_label: bool = False,
                          regression: bool = False,
                          label_delim: str | None = None, truncation: str = "head", seed: int | None = None,
                          device: torch.device | str | None = None, dropna: bool = False, weight: Any = None,
                          pos_weight: Any = None, logger: logging.Logger | None = None, test_data: Any = None,
                          token_type_ids: bool | None = None, **kwargs: Any) -> "BertDataBunch":
        note_no_effect("BertDataBunch.from_csv", _no_effect(kwargs))
        clear_cache = _on_disk_options(kwargs, val_file)
        chunksize = positive_int(chunksize, "chunksize")
        bs, val_bs, maxlen, multi_label, problem_type = task_options(bs, val_bs, maxlen, multi_label, regression,
                                                                      label_delim)
        tok, maxlen = tokenizer_within(tokenizer, maxlen)
        read = dict(sep=sep or ",", encoding=encoding or "utf-8-sig", quoting=quoting, **CSV_CELLS)
        paths = [data_dir / train_file, data_dir / val_file]
        tcols, lcols = _streamed_columns(paths, (str(train_file), str(val_file)), text_col, label_col, read,
                                         multi_label=multi_label, label_delim=label_delim, sep=sep, encoding=encoding)
        labels = _streamed_labels(labels, paths[0], lcols, read, chunksize=chunksize, multi_label=multi_label,
                                  regression=regression, label_delim=label_delim, source=str(train_file),
                                  dropped_by=tcols if dropna else None)
        encoder = TextEncoder(tok, maxlen, labels, problem_type=problem_type, pairs=len(tcols) == 2,
                              truncation=truncation, token_type_ids=token_type_ids)
        encoder.warn_unfollowed_padding()
        rows = dict(tcols=tcols, lcols=lcols, label_delim=label_delim, dropna=dropna)
        datasets = [_stored_dataset(path, name, encoder, rows, read, cache=data_dir / "cache", chunksize=chunksize,
                                    clear_cache=clear_cache, log=logger or _log)
                    for path, name in zip(paths, (str(train_file), str(val_file)))]
        if multi_label:  # as in memory: a listed label no row has (a labels.csv header line) was a dead output
            check_label_use(labels, datasets[0].targets, str(train_file), delimited=label_delim is not None)
        if isinstance(test_data, (str, Path)):
            test_data = _test_texts(data_dir / test_data, tcols if len(tcols) == 2 else tcols[0], sep=sep,
                                    encoding=encoding, quoting=quoting)
        return cls._assemble(datasets[0], datasets[1], bs=bs, val_bs=val_bs, seed=seed, test_data=test_data,
                             device=device, path=data_dir, columns={"text_col": tcols, "label_col": lcols,
                                                                    "label_delim": label_delim},
                             weight=weight, pos_weight=pos_weight)

    @classmethod
    def from_df(cls, train_df: pd.DataFrame, valid_df: pd.DataFrame | None = None, tokenizer: Any = None, *,
                text_col: Any = "text", label_col: Any = "label", labels: Sequence[str] | None = None,
                bs: int = 32, val_bs: int | None = None, maxlen: int = 512, multi_label: bool = False,
                regression: bool = False, label_delim: str | None = None, truncation: str = "head",
                long_text: str | None = None, stride: int | None = None,
                weight: Sequence[float] | str | None = None, pos_weight: Sequence[float] | str | None = None,
                test_data: Sequence[Any] | None = None, valid_pct: float | None = None, seed: int | None = None,
                dropna: bool = False, device: torch.device | str | None = None, path: str | Path = ".",
                logger: logging.Logger | None = None, cache_dir: str | Path | None = None,
                sources: tuple[str, str] = ("train_df", "valid_df"), token_type_ids: bool | None = None,
                **kwargs: Any) -> "BertDataBunch":
        """Tokenize DataFrames into a `BertDataBunch`.

        Args:
            train_df, valid_df: the data; with `valid_df=None`, a `valid_pct` random share of train is held out.
            tokenizer: tokenizer object, hub name or local path; None for the packaged default model's.
            text_col: text column name or position; a list of two for sentence pairs (e.g. ['text_a', 'text_b']).
            label_col: label column name or position; for multi-label a list of 0/1 columns, or one column of
                `label_delim`-separated labels.
            labels: label names in output order; default: sorted labels of the training data.
            bs: training batch size; val_bs: validation batch size (default 2 * bs).
            maxlen: maximum tokens per model input, special tokens included.
            multi_label: several labels per text (sigmoid outputs, BCE loss).
            regression: a float target (one output, MSE loss).
            label_delim: separator of several labels in one column (implies multi_label).
            truncation: "head", "tail" or "head+tail": which tokens of a too-long text are kept.
            long_text: "sliding_window" to split long texts into overlapping windows (see `TextEncoder`).
            stride: overlap of sliding windows in tokens (with `long_text="sliding_window"` only).
            weight: per-class loss weights (single-label), or "balanced" for inverse class frequency.
            pos_weight: per-label positive weights (multi-label), or "balanced" for negatives / positives.
            test_data: texts (or pairs) to predict on later (`learner.predict_batch()` with no argument).
            valid_pct: the held-out share when `valid_df` is None (default 0.2); refused beside a `valid_df`.
            seed: seeds that split and the training order, for repeatable runs.
            dropna: drop training and validation rows with empty texts instead of raising (never test rows).
            device: where batches go (default: CUDA when available).
            path: the folder things are saved relative to.
            logger: a `logging.Logger` for progress messages.
            cache_dir: keep tokenized features in this folder, keyed by the texts' content, the tokenizer and
                every encoding setting (see `bertlearn.data.cache`); None: tokenize every time.
            token_type_ids: sentence pairs carry segment ids: None (default) where the tokenizer lists them, or
                its pair template gives segments and its folder's config has type_vocab_size > 1; True forces
                them (ALBERT's tokenizer in transformers 5 does not list them), False leaves them out.
        """
        note_no_effect("BertDataBunch.from_df", _no_effect(kwargs))
        if isinstance(test_data, (str, Path)):
            # as_texts would read a file name as the one text to predict; from_df takes no folder to find it in
            raise DataError(f"test_data={str(test_data)!r} is one {type(test_data).__name__}, but from_df takes a "
                            "list of test texts: pass [text, ...] (e.g. pd.read_csv(file)['text'].tolist()), or a "
                            "file through BertDataBunch.from_csv(data_dir, ..., test_data='test.csv')")
        cache_dir = _cache_options(kwargs, cache_dir)
        if kwargs:
            raise TypeError(f"from_df() got unexpected arguments {sorted(kwargs)}")
        bs, val_bs, maxlen, multi_label, problem_type = task_options(bs, val_bs, maxlen, multi_label, regression,
                                                                      label_delim)
        train_df, valid_df, sources = _split_frames(train_df, valid_df, valid_pct=valid_pct, seed=seed,
                                                    sources=sources)
        tok, maxlen = tokenizer_within(tokenizer, maxlen)
        # positions name the training frame's columns, which the validation frame is read by (as on disk, and as the
        # saved model's columns are): a val.csv in another column order swapped pairs' texts
        text_cols, label_cols = [], []
        for given, arg, out in ((text_col, "text_col", text_cols), (label_col, "label_col", label_cols)):
            names = resolve_columns(train_df, given, arg, sources[0])
            out.append(names)
            out.append(columns_like_training(valid_df, names, given, arg, sources[1], sources[0]))
        check_column_counts(text_cols[0], label_cols[0], text_col, label_col, multi_label=multi_label,
                            label_delim=label_delim)
        t0 = time.perf_counter()
        parts = []
        for df, tcols, lcols, src in zip((train_df, valid_df), text_cols, label_cols, sources):
            texts, keep = texts_from_frame(df, tcols, src, dropna=dropna)
            parts.append((texts, df.loc[keep, lcols] if not keep.all() else df[lcols], src))
        labels, targets = labels_and_targets([(ldf, src) for _, ldf, src in parts], problem_type, labels=labels,
                                             label_delim=label_delim)
        encoder = TextEncoder(tok, maxlen, labels, problem_type=problem_type, pairs=len(text_cols[0]) == 2,
                              truncation=truncation, long_text=long_text, stride=stride, token_type_ids=token_type_ids)
        encoder.warn_unfollowed_padding()
        train_ds = encoder.dataset(parts[0][0], targets[0], cache_dir=cache_dir)
        valid_ds = encoder.dataset(parts[1][0], targets[1], cache_dir=cache_dir)
        _log_encoding(logger or _log, train_ds, valid_ds, time.perf_counter() - t0)
        return cls._assemble(train_ds, valid_ds, bs=bs, val_bs=val_bs, seed=seed, test_data=test_data, device=device,
                             path=path, columns={"text_col": text_cols[0], "label_col": label_cols[0],
                                                 "label_delim": label_delim}, weight=weight, pos_weight=pos_weight)

    @classmethod
    def _assemble(cls, train_ds: EncodedDataset, valid_ds: EncodedDataset, *, bs: int, val_bs: int, seed: int | None,
                  test_data: Sequence[Any] | None, device: torch.device | str | None, path: str | Path,
                  columns: dict, weight: Any, pos_weight: Any) -> "BertDataBunch":
        """The loaders over encoded datasets, as every factory ends: length-grouped training batches (seeded),
        longest-first validation, the test texts, the device, the columns to save beside a model, class weights."""
        encoder = train_ds.encoder
        loaders = [BertDataLoader(train_ds, bs=bs, shuffle=True), BertDataLoader(valid_ds, bs=val_bs)]
        if seed is not None:
            loaders[0].rng = random.Random(seed)  # the training order then repeats run to run
        if test_data is not None:
            loaders.append(BertDataLoader(encoder.dataset(as_texts(test_data, "test_data", pairs=encoder.pairs)),
                                          bs=val_bs, batch_overhead="auto"))
        dls = cls(*loaders, path=path, device=resolve_device(device))
        dls.seed = seed  # a seeded learner built on it starts the training order over from this seed
        # saved beside the model, so `bertlearn predict/eval` find the same columns in new files
        dls.columns = columns
        problem_type, n = encoder.problem_type, len(encoder.labels)
        dls.weight = class_weights(weight, train_ds.targets, n, "weight", problem_type, SINGLE)
        dls.pos_weight = class_weights(pos_weight, train_ds.targets, n, "pos_weight", problem_type, MULTI)
        return dls

    # --- what fastai and fast-bert users read off a databunch ---

    @property
    def encoder(self) -> TextEncoder:
        return self.train.dataset.encoder

    @property
    def tokenizer(self) -> Any:
        return self.encoder.tokenizer

    @property
    def labels(self) -> list[str]:
        return self.encoder.labels

    @property
    def vocab(self) -> list[str]:
        return self.encoder.labels

    @property
    def c(self) -> int:
        return len(self.encoder.labels)

    @property
    def multi_label(self) -> bool:
        return self.encoder.multi_label

    @property
    def problem_type(self) -> str:
        return self.encoder.problem_type

    @property
    def maxlen(self) -> int:
        return self.encoder.maxlen

    @property
    def n_inp(self) -> int:
        return 3 if self.encoder.with_token_types else 2  # input_ids, attention_mask[, token_type_ids]

    @property
    def test(self) -> BertDataLoader | None:
        """The loader over `test_data`, when one was given."""
        return self.loaders[2] if len(self.loaders) > 2 else None

    @property
    def bs(self) -> int:
        return self.train.bs

    def test_dl(self, test_items: Sequence[Any] | pd.DataFrame, bs: int | None = None, *, with_labels: bool = False,
                **kwargs: Any) -> BertDataLoader:
        """A loader over new texts (or (a, b) pairs), tokenized like the training data.

        Args:
            test_items: the texts; with `with_labels`, `(text, label)` items (the label a name of `labels` or its
                index; a 0/1 row per label for multi-label; a number for regression), as a loader's `items` gives
                them, or a DataFrame with the training data's text and label columns, read as training read them.
            bs: the most texts a batch holds (default: the validation batch size; on a CPU, longest-first
                batches are cut by padding).
            with_labels: items carry labels, for `learn.validate(dl=...)` or `learn.interpret(dl=...)`; the loader
                keeps the rows' order (fastai's `Interpretation` matches its rows to its losses by position); items
                (not a DataFrame) pad every batch to the longest row (Interpretation gathers inputs over the batches
                of `items` into one tensor).
        """
        if with_labels:
            bs = positive_int(bs, "bs") if bs is not None else self.valid.bs
        if with_labels and isinstance(test_items, pd.DataFrame):
            ds = self._labelled_frame(test_items)
            # row order kept, in batches of bs: a frame may be a whole validation file. Each batch its own width:
            # Interpretation gathers inputs through `items`, which comes back through the items path below
            return BertDataLoader(ds, bs=bs, device=self.device, keep_order=True)
        if with_labels:
            items = list(test_items)
            stored = [t for t, _ in items if isinstance(t, StoredRow)] if _all_pairs(items) else []
            if items and len(stored) == len(items) and len({id(t.dataset) for t in stored}) == 1:
                # a loader's own rows (windows, rows on disk): as stored, not their decoded text encoded again
                ds = stored[0].dataset.rows([t.row for t in stored])
                ys = [y for _, y in items]
                if not all(y is None for y in ys):
                    # the labels given, not the stored ones: relabelled rows were scored against their old labels
                    ds.targets = self._item_targets(ys)
                return BertDataLoader(ds, bs=bs, device=self.device, keep_order=True, same_width=True)
            if not _all_pairs(items):
                bad = [i for i, t in enumerate(items) if not (isinstance(t, (tuple, list)) and len(t) == 2)]
                raise DataError(f"test_items: item {bad[0]} is {_shown(items[bad[0]])}, not a (text, label) pair "
                                f"(items {bad[:10]}); with_labels=True takes (text, label) items, or a DataFrame with "
                                "the training data's columns; without labels, pass with_labels=False")
            texts = as_texts([t for t, _ in items], "test_items", pairs=self.encoder.pairs)
            targets = self._item_targets([y for _, y in items]) if items else None
            ds = self.encoder.dataset(texts, targets)
            # every bs rows, not all in one batch (a long list ran out of memory); one width, as Interpretation
            # concatenates the batches' inputs
            return BertDataLoader(ds, bs=bs, device=self.device, keep_order=True, same_width=True)
        ds = self.encoder.dataset(as_texts(test_items, "texts", pairs=self.encoder.pairs))
        return BertDataLoader(ds, bs=bs or self.valid.bs, shuffle=False, device=self.device,
                              batch_overhead="auto")

    def _labelled_frame(self, df: pd.DataFrame) -> EncodedDataset:
        """A labelled DataFrame read through the training data's columns and label reading (`test_dl`)."""
        columns = getattr(self, "columns", None)
        if not columns:
            # fastai's DataLoaders(train_dl, valid_dl) form and a loaded export keep no column names
            raise DataError("test_items: a DataFrame is read by the training data's column names, and this "
                            f"{type(self).__name__} does not record them (it was built from loaders, not by "
                            "from_df / from_csv); pass (text, label) items with the labels' names, e.g. "
                            "list(zip(df['text'], df['label'].astype(str)))")
        tcols, lcols, delim = list(columns["text_col"]), list(columns["label_col"]), columns.get("label_delim")
        missing = [c for c in tcols + lcols if c not in list(df.columns)]
        if missing:
            raise DataError(f"test_items: the DataFrame has no column {missing[0]!r} (its columns are "
                            f"{list(df.columns)[:20]}); with_labels=True reads a DataFrame by the training data's "
                            f"columns, text_col={tcols} and label_col={lcols}: name its columns so, or pass "
                            "(text, label) items")
        resolve_columns(df, tcols + lcols, "test_items", "test_items")  # a column name given twice is refused
        # every row kept, as for prediction: dropped rows would shift a row's loss onto another in Interpretation
        texts, _ = texts_from_frame(df, tcols, "test_items", dropna=False,
                                    empty_fix="test_dl keeps every row; fill them or drop those rows first")
        targets, bad = _read_targets(df[lcols], lcols, self.encoder, delim)
        if isinstance(targets, DataError):
            where = ""
            if bad:
                first = bad[0]
                where = (f"; rows refused (by position): {_first_ten(bad)}, e.g. position {first} (index "
                         f"{_shown(df.index[first])}): {_shown(_row_value(df[lcols], first))}")
            raise DataError(f"test_items: {targets}{where}") from None
        return self.encoder.dataset(texts, targets)

    def _item_targets(self, ys: list[Any]) -> np.ndarray:
        """The labels of (text, label) items encoded as training encodes them, read by `targets_from_frame`; a
        `DataError` names the items, their labels and what this task takes."""
        enc = self.encoder
        labels, n = list(enc.labels), len(enc.labels)
        values = [_plain(y) for y in ys]
        why = {}
        if enc.multi_label:
            allowed = f"a row of {n} 0/1 values, one per label in the order {labels}"
            rows = [_as_row(v) for v in values]
            for i, (v, row) in enumerate(zip(values, rows)):
                if isinstance(v, str) or row.dtype.kind not in "biuf" or row.shape != (n,):
                    why[i] = f"not {n} numbers" if row.ndim == 1 and row.dtype.kind in "biuf" else "not a 0/1 row"
            frame = None if why else pd.DataFrame(np.stack(rows).astype(np.float64), columns=labels)
        elif enc.regression:
            allowed = "a finite number"
            for i, v in enumerate(values):
                if not _real(v) or not np.isfinite(v):
                    why[i] = "not a finite number"
            frame = None if why else pd.DataFrame({labels[0]: np.asarray(values, dtype=np.float64)})
        else:
            allowed = f"one of this model's labels {labels[:20]} or its index 0 to {n - 1}"
            names = []
            for i, v in enumerate(values):
                if isinstance(v, str):
                    names.append(v)
                elif isinstance(v, (int, np.integer)) and not isinstance(v, (bool, np.bool_)):
                    # an index as a loader's items give it; a name of a number ('3') is read as a name
                    if str(v) in labels and (not 0 <= v < n or labels[int(v)] != str(v)):
                        # labels named by numbers ('1'...'5' ratings): 1 is the name '1' or the index of '2',
                        # and reading it as the index shifted every such label by one without a word
                        why[i] = (f"a number, which may be the name {str(v)!r} or an index, as this model's labels "
                                  f"are named by numbers: give the label as its name, {str(v)!r}")
                    elif 0 <= v < n:
                        names.append(labels[int(v)])
                    else:
                        why[i] = f"an index out of range for {n} labels"
                elif v is None or (_real(v) and np.isnan(v)):
                    why[i] = "missing"
                elif _real(v):
                    why[i] = "a float; a label is a name or an integer index"
                else:
                    why[i] = f"a {type(v).__name__}"
            frame = None if why else pd.DataFrame({"label": pd.Series(names, dtype=object)})
        if frame is not None:
            targets, bad = _read_targets(frame, list(frame.columns), enc, None)
            if not isinstance(targets, DataError):
                return targets
            why = {i: "not a label of this model" if enc.problem_type == SINGLE else "not 0/1 values"
                   for i in (bad or range(len(ys)))}
        bad = sorted(why)
        first = bad[0]
        those = "that item" if len(bad) == 1 else f"those {len(bad)} items (items {_first_ten(bad)})"
        raise DataError(f"test_items: item {first} has the label {_shown(ys[first])} ({why[first]}); with_labels=True "
                        f"takes (text, label) items whose label is {allowed}: fix or remove {those}")

    def show_batch(self, b: Any = None, max_n: int = 9, **kwargs: Any) -> None:
        """Show decoded texts and labels of a training batch.

        Args:
            b: a batch to show (default: the first training batch).
            max_n: how many rows.
            **kwargs: passed to the training loader's `show_batch` (which takes none; kept for fastai's calls).
        """
        self.train.show_batch(b, max_n=max_n, **kwargs)


def _say_holdout(train_file: str, valid_pct: float, n_train: int, n_valid: int) -> bool:
    """Say (once per process, in a `FastBertCompatWarning`) that fast-bert's `val_file=None` held out rows of
    `train_file` for validation here, how many, and what to pass instead. Returns whether it was said now.

    Args:
        train_file: the training file's name.
        valid_pct: the share held out.
        n_train, n_valid: the texts that train and those held out.
    """
    n = n_train + n_valid
    return note_difference(
        "BertDataBunch", "val_file=None",
        f"val_file=None holds out a random {valid_pct:.0%} of {train_file} for validation (valid_pct={valid_pct}): "
        f"the model trains on {n_train} of its {n} rows and validates on the other {n_valid}, where fast-bert "
        f"trained on all {n} and validated on none. bertlearn always has a validation set: to train on every row, "
        f"pass val_file={train_file!r} (and fit(..., validate=False), as its scores would be of rows it trained "
        "on); or pass val_file= a held-out file, valid_pct= another share, seed= for a repeatable split")


def _no_effect(kwargs: dict) -> dict:
    """fast-bert's data arguments without effect here, taken out of `kwargs` (see `bertlearn.compat`)."""
    given = {k: kwargs.pop(k) for k in ("multi_gpu", "model_type", "backend", "custom_sampler") if k in kwargs}
    if not multi_gpu_without_effect(given.get("multi_gpu")):
        given.pop("multi_gpu", None)
    return given


def _on_disk_options(kwargs: dict, val_file: str | None) -> bool:
    """Check what `from_csv(on_disk=True)` was given besides its own arguments; return `clear_cache`."""
    if kwargs.pop("no_cache", False):
        raise DataError("on_disk=True streams the files through a token store in data_dir/cache, so no_cache=True "
                        "cannot apply; leave no_cache out (clear_cache=True rebuilds the store)")
    clear_cache = kwargs.pop("clear_cache", False)
    unsupported = sorted(k for k in kwargs if k in ("long_text", "stride", "valid_pct", "cache_dir"))
    if unsupported or kwargs:
        raise DataError(f"on_disk=True does not take {unsupported or sorted(kwargs)}; it streams train_file and "
                        "val_file as they are (no sliding windows, no random validation split)")
    if val_file is None:
        raise DataError("on_disk=True needs a val_file: a random split would need the whole file in memory")
    return clear_cache


def _cache_options(kwargs: dict, cache_dir: str | Path | None) -> str | Path | None:
    """Apply fast-bert's `no_cache` / `clear_cache` to `cache_dir`; return the cache folder to use (or None)."""
    no_cache = kwargs.pop("no_cache", False)
    if kwargs.pop("clear_cache", False) and cache_dir is not None:  # both given: cleared, then not used
        for f in Path(cache_dir).glob("tok-*.npz"):
            f.unlink()
    return None if no_cache else cache_dir


CHUNKSIZE = 50_000  # CSV rows read at a time with on_disk=True


def _label_list(data_dir: Path, label_dir: str | Path | None, label_file: str | None, *,
                regression: bool = False) -> list[str] | None:
    """The labels of `label_dir/label_file` (default folder: `data_dir`); None where the default labels.csv is
    absent from an existing folder (the labels then come from the training data). A file named otherwise, or a
    folder that does not exist, is a `DataError`: a typo there dropped the label order asked for without a word.
    A regression reads one name for its output, and says so when the file holds more (a classification's list)."""
    if not label_file:
        return None
    folder = Path(label_dir) if label_dir is not None else Path(data_dir)
    path = folder / label_file
    if not path.is_file() and (label_file != "labels.csv" or not folder.is_dir()):
        where = f"files there: {sorted(p.name for p in folder.iterdir())[:20]}" if folder.is_dir() else \
            f"folder {str(folder)!r} does not exist"
        raise DataError(f"label_file {str(path)!r} not found ({where}); fix label_dir/label_file, or pass "
                        "label_file=None to take the labels from the training data")
    labels = read_label_file(path)
    if regression and labels is not None and len(labels) != 1:  # one name names the output, as labels=[name] does
        # a classification's labels.csv beside a regression's files was ignored without a word
        warnings.warn(f"label_file {str(path)!r} (labels {labels[:10]}) is not read: regression predicts one number "
                      "per row, named after its label column; pass label_file=None to leave the file out",
                      stacklevel=user_stacklevel())
        return None
    return labels


def _split_frames(train_df: Any, valid_df: pd.DataFrame | None, *, valid_pct: float | None, seed: int | None,
                  sources: tuple[str, str]) -> tuple[pd.DataFrame, pd.DataFrame, tuple[str, str]]:
    """Check the training frame; without `valid_df`, hold out a seeded `valid_pct` share of it."""
    if not isinstance(train_df, pd.DataFrame) or len(train_df) == 0:
        raise DataError(f"train_df must be a non-empty pandas DataFrame, got {type(train_df).__name__} "
                        f"with {len(train_df) if hasattr(train_df, '__len__') else '?'} rows")
    valid_pct = holdout_share(valid_pct, None if valid_df is None else f"a validation set ({sources[1]})")
    if valid_df is not None:
        return train_df, valid_df, sources
    if not 0 < valid_pct < 1:
        raise DataError(f"valid_pct={valid_pct} must be between 0 and 1 when valid_df is None")
    perm = holdout_order(len(train_df), seed)
    n_valid = max(1, int(round(len(train_df) * valid_pct)))
    return (train_df.iloc[perm[n_valid:]], train_df.iloc[perm[:n_valid]],
            (f"{sources[0]} (train part)", f"{sources[0]} (valid_pct part)"))


def _log_encoding(log: logging.Logger, train_ds: EncodedDataset, valid_ds: EncodedDataset, secs: float) -> None:
    encoder = train_ds.encoder
    log.info("tokenized %d train and %d valid texts in %.1fs (maxlen %d)", train_ds.n_texts, valid_ds.n_texts, secs,
             encoder.maxlen)
    truncated = float((train_ds.lengths >= encoder.maxlen).mean())
    if truncated > 0.05 and not encoder.long_text:
        log.info("%.0f%% of training texts are cut at maxlen=%d (truncation=%r)", 100 * truncated, encoder.maxlen,
                 encoder.truncation)
    _warn_unknown_tokens(train_ds)


def _warn_unknown_tokens(ds: EncodedDataset, share: float = 0.05) -> float:
    """Warn when more than `share` of a dataset's tokens are the tokenizer's unknown token: the model would train on
    [UNK] in place of those words (a cased tokenizer over an uncased vocabulary, another script...). Returns the
    share found (in-memory rows; NaN for rows on disk, which are not read for it).

    Args:
        ds: the encoded training set.
        share: the share of tokens above which to warn.
    """
    tok = ds.encoder.tokenizer
    unk = getattr(tok, "unk_token_id", None)
    values = getattr(ds.ids, "values", None)
    if unk is None or values is None or not len(values):
        return float("nan")
    found = float(np.count_nonzero(values == unk)) / len(values)
    if found > share:
        warnings.warn(f"{found:.0%} of the training tokens are {tok.unk_token!r}: the tokenizer does not know much of "
                      f"this text, and the model sees {tok.unk_token!r} in place of those words. A tokenizer loaded "
                      "with do_lower_case=False for an uncased model, or a vocabulary without this text's script? "
                      "Use the model's own tokenizer", stacklevel=user_stacklevel())
    return found


def _csv_chunks(path: Path, read: dict, **kwargs: Any) -> Iterator[pd.DataFrame]:
    """A CSV read in chunks (`chunksize=`) or its first rows (`nrows=`, one frame), pandas' decoding and parsing
    errors said as `DataError`s with the fix (they came out raw, where the in-memory path names them)."""
    # with usecols= pandas says nothing of fields past the header (and with row names in front reads the column
    # beside the one named): reads with usecols are safe because _streamed_columns reads each file's first rows
    # without it first, where a file with row names is refused
    checked = False

    def check(dropped: bool) -> bool:
        # pandas (index_col=False) drops fields past the header's with a warning: empty ones (a delimiter ending
        # each row) are nothing lost; data there is a DataError naming the line (row_names_in_front raises it)
        if checked or not dropped:
            return checked
        if row_names_in_front(path, path.name, sep=read["sep"], encoding=read["encoding"], quoting=read["quoting"]):
            raise DataError(f"{str(path)!r}: every row has a field more than the header (row names in front, as R's "
                            "write.table writes them), which on_disk=True does not read: write the file without "
                            "them (write.table(..., row.names=FALSE)) or read it in memory (on_disk=False)")
        return True

    try:
        reader, dropped = read_watching_fields(lambda: pd.read_csv(path, **read, **kwargs))
        checked = check(dropped)
        if "chunksize" not in kwargs:
            yield reader
            return
        with reader:  # a reader left unfinished (a caller's early stop or error) closes its file
            while True:
                chunk, dropped = read_watching_fields(lambda: next(reader, None))
                checked = check(dropped)
                if chunk is None:
                    return
                yield chunk
    except UnicodeDecodeError:
        # read in chunks, the file cannot be tried whole as UTF-8 and read again as cp1252 the way read_csv does
        given = read["encoding"] != "utf-8-sig"
        raise DataError(f"{str(path)!r} cannot be decoded as {read['encoding'] if given else 'UTF-8'!r}; pass "
                        + ("the file's encoding=" if given else "encoding='cp1252' if it comes from a Windows tool "
                           "(what the in-memory path falls back to), or the file's encoding=")) from None
    except pd.errors.EmptyDataError:
        raise DataError(f"{str(path)!r} is empty; it needs a header row and at least one data row") from None
    except pd.errors.ParserError as e:
        raise DataError(f"{str(path)!r} is not a valid CSV ({str(e).strip()}); check sep= and quoting") from None


def _streamed_columns(paths: list[Path], names: tuple[str, str], text_col: Any, label_col: Any, read: dict, *,
                      multi_label: bool, label_delim: str | None, sep: str | None,
                      encoding: str | None) -> tuple[list, list]:
    """The text and label columns of streamed CSV files, resolved on their first rows; each file's header and
    quoting checked first (`check_csv_text`), as in memory."""
    for path, arg in zip(paths, ("train_file", "val_file")):
        if not path.is_file():
            read_csv(path, arg, sep=sep, encoding=encoding)  # raises with the folder's listing
    heads = [next(_csv_chunks(path, read, nrows=5)) for path in paths]
    for head, path, arg in zip(heads, paths, ("train_file", "val_file")):
        # after the first rows: a file that does not decode is said by _csv_chunks' message
        mark_repeated_names(head, check_csv_text(path, arg, sep=read["sep"], encoding=read["encoding"],
                                                 quoting=read["quoting"]))
    tcols = resolve_columns(heads[0], text_col, "text_col", names[0])
    lcols = resolve_columns(heads[0], label_col, "label_col", names[0])
    columns_like_training(heads[1], tcols, text_col, "text_col", names[1], names[0])
    columns_like_training(heads[1], lcols, label_col, "label_col", names[1], names[0])
    check_column_counts(tcols, lcols, text_col, label_col, multi_label=multi_label, label_delim=label_delim)
    return tcols, lcols


def _streamed_labels(labels: Sequence[str] | None, path: Path, lcols: list, read: dict, *, chunksize: int,
                     multi_label: bool, regression: bool, label_delim: str | None, source: str,
                     dropped_by: list | None = None) -> list[str]:
    """The label names: given, the 0/1 columns' names, or read from the training file a chunk at a time (from the
    rows `dropna` keeps: those whose text columns `dropped_by` are all filled, when it is given)."""
    def label_chunks():
        if not dropped_by:
            yield from _csv_chunks(path, read, usecols=lcols, chunksize=chunksize)
            return
        # as in memory, where labels are read after dropna: a label only rows without text had was an output no row
        # trained, and it moved the later labels' indices (on_disk=True only)
        for ch in _csv_chunks(path, read, usecols=list(dict.fromkeys([*dropped_by, *lcols])), chunksize=chunksize):
            empty = np.logical_or.reduce([empty_texts(ch[col]) for col in dropped_by])
            yield ch.loc[~empty, lcols]

    if multi_label and label_delim is None:
        return list(labels) if labels is not None else [str(c) for c in lcols]
    if multi_label:
        return list(labels) if labels is not None else sorted(
            {l for ch in label_chunks() for v in ch[lcols[0]].dropna() for l in label_parts(v, label_delim)})
    if regression:
        return [regression_name(labels, lcols[0])]
    # given labels are checked against the file as in memory (a duplicate, or one never in the file, was a dead
    # output: a duplicate's rows went to its second copy)
    n_rows, parts = 0, []
    for ch in label_chunks():
        n_rows += len(ch)
        parts.append(pd.Series(ch[lcols[0]].dropna().unique()))
    uniques = pd.Series(pd.concat(parts).unique(), name=lcols[0])
    refuse_text_as_labels(uniques, source, n_rows)  # a class per row, as in memory
    return single_labels(uniques, labels, source)


def _stored_dataset(path: Path, name: str, encoder: TextEncoder, rows: dict, read: dict, *, cache: Path,
                    chunksize: int, clear_cache: bool, log: logging.Logger) -> EncodedDataset:
    """A dataset whose rows live in the on-disk token store of `path` (built first when missing or stale)."""
    tcols, lcols = rows["tcols"], rows["lcols"]
    key = store_key(path, {"tok": tokenizer_fingerprint(encoder.tokenizer), **encoder.key_parts(), "text_col": tcols,
                           "label_col": lcols, "label_delim": rows["label_delim"], "dropna": rows["dropna"],
                           "read": read})
    folder = cache / f"store-{Path(name).stem}-{key}"

    def encode(chunk: pd.DataFrame) -> tuple[dict, np.ndarray]:
        source = f"{name} (rows from {chunk.index[0] + 1})"
        # numbers=True: refuse_number_columns decided over the whole file, not a chunk at a time
        texts, keep = texts_from_frame(chunk, tcols if len(tcols) == 2 else tcols[0], source, dropna=rows["dropna"],
                                       numbers=True)
        ldf = chunk.loc[keep, lcols] if not keep.all() else chunk[lcols]
        y = targets_from_frame(ldf, lcols, encoder, label_delim=rows["label_delim"], source=source)
        enc = encoder.encode([t[0] for t in texts], [t[1] for t in texts]) if encoder.pairs else encoder.encode(texts)
        return enc, y

    if launched_distributed():
        # one process builds the store (rank 0), the others wait and then read it
        init_distributed()
        if not is_main_process():
            barrier()
    stored = None if clear_cache and is_main_process() else load_store(folder, pad_id=encoder.pad_id)
    if stored is None:
        t0 = time.perf_counter()
        refuse_number_columns(_csv_chunks(path, read, usecols=tcols, chunksize=chunksize), tcols, name)
        meta = build_store(folder, _csv_chunks(path, read, chunksize=chunksize), encode, encoder.id_dtype)
        log.info("tokenized %d rows of %s to %s in %.1fs", meta["n"], name, folder, time.perf_counter() - t0)
        stored = load_store(folder, pad_id=encoder.pad_id)
    if launched_distributed() and is_main_process():
        barrier()
    ids, lengths, targets, types = stored
    dataset = EncodedDataset(ids, lengths, targets, encoder, type_ids=types)
    dataset.encoded_by = f"read from the on-disk token store {str(folder)!r}"
    return dataset


def _test_texts(path: Path, text_col: Any, *, sep: str | None, encoding: str | None, quoting: int) -> list[Any]:
    """The texts (or pairs) of a test CSV's `text_col`, every row: its predictions line up with the file's rows."""
    df = read_csv(path, "test_data", sep=sep, encoding=encoding, quoting=quoting)
    cols = resolve_columns(df, text_col, "text_col", path.name)
    # dropna= is for the training and validation files: a dropped test row shifted every later prediction onto the
    # row before it in the file (ids zipped with predict_batch() were paired with other rows' predictions)
    texts, _ = texts_from_frame(df, cols if len(cols) == 2 else cols[0], path.name, dropna=False,
                                empty_fix="test_data gets one prediction per row, so its rows are never dropped "
                                          "(dropna= applies to the training and validation files); fill them or "
                                          "remove those rows from the file")
    return texts


def _all_pairs(items: list[Any]) -> bool:
    return all(isinstance(t, (tuple, list)) and len(t) == 2 for t in items)


def _plain(y: Any) -> Any:
    """A label as Python or NumPy scalar: a 0-d array (a loader's target row) unwrapped, NumPy scalars kept."""
    return y.item() if isinstance(y, np.ndarray) and y.ndim == 0 else y


def _as_row(v: Any) -> np.ndarray:
    try:
        return np.asarray(v)
    except ValueError:  # a ragged list ([1, [0, 1]]): not a row of numbers
        return np.asarray(None)


def _first_ten(positions: list[int]) -> str:
    return str(positions[:10])[:-1] + (", ...]" if len(positions) > 10 else "]")


def _real(v: Any) -> bool:
    return isinstance(v, (int, float, np.integer, np.floating)) and not isinstance(v, (bool, np.bool_))


def _shown(v: Any, width: int = 60) -> str:
    # a label as an error shows it: a text named as the label made messages of whole reviews
    text = repr(v.tolist() if isinstance(v, np.ndarray) else v.item() if isinstance(v, np.generic) else v)
    return text if len(text) <= width else text[:width - 3] + "..."


def _row_value(ldf: pd.DataFrame, pos: int) -> Any:
    row = ldf.iloc[pos]
    return row.iloc[0] if len(row) == 1 else row.tolist()


def _read_targets(ldf: pd.DataFrame, lcols: list, encoder: TextEncoder, label_delim: str | None,
                  tries: int = 2000) -> tuple[np.ndarray | DataError, list[int]]:
    """Label columns encoded by `targets_from_frame` (training's reading, with the trained model's labels), or its
    `DataError` and the positions of the rows it refuses: its messages name the values, not always the rows, so
    each distinct row (up to `tries`) is read alone to find them."""
    try:
        return targets_from_frame(ldf, lcols, encoder, label_delim=label_delim, source="test_items",
                                  saved_model=True), []
    except DataError as e:
        error = e
    keys = [repr(tuple(r)) for r in ldf.itertuples(index=False)]
    first = {}
    for pos, key in enumerate(keys):
        first.setdefault(key, pos)
    refused = set()
    for key, pos in list(first.items())[:tries]:
        try:
            targets_from_frame(ldf.iloc[[pos]], lcols, encoder, label_delim=label_delim, source="test_items",
                               saved_model=True)
        except DataError:
            refused.add(key)
            if len(refused) >= 10:
                break
    return error, [p for p, key in enumerate(keys) if key in refused]
