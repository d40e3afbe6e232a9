"""BertDataBunch: CSV files or DataFrames plus a tokenizer become fastai `DataLoaders`.

Texts are tokenized once, with the fast tokenizer's batched Rust call, into ragged id rows (one flat
array plus offsets, no padding stored); a batch gathers its rows padded to its longest row (rounded up
to a multiple of 8 on a GPU), so per-batch work is a few numpy operations. Training batches are
length-grouped (random mega-batches sorted inside, batch order shuffled), which removes most padding;
validation and prediction run sorted by length.
"""

from __future__ import annotations

import difflib
import random
import logging
import math
import textwrap
import time
import warnings
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, Iterator, Sequence

import numpy as np
import pandas as pd
import torch
from fastai.data.core import DataLoaders
from fastai.data.load import DataLoader
from fastai.data.transforms import CategoryMap
from fastcore.foundation import L
from fastai.torch_core import to_device

from .backends import TOKIE_MIN_TEXTS, BatchEncoder, TokieBatchEncoder, batch_encoder, tokie_encoder
from .compat import note_no_effect
from .distributed import multi_gpu_without_effect
from .errors import DataError, user_stacklevel
from .model import load_tokenizer
from .store import RaggedRows

__all__ = ["BertDataBunch", "BertDataLoader", "EncodedDataset", "TextEncoder", "TextInputs", "targets_from_frame",
           "read_csv", "display_frame"]

_log = logging.getLogger(__name__)

PAD_MULTIPLE = 8  # GPU tensor cores and SDPA kernels like sequence lengths that are multiples of 8
MEGA_BATCH = 50  # batches per length-sorted mega-batch, as in fastai's SortedDL
_TOKENIZE_CHUNK = 4096  # texts per tokenizer call: bounded memory, still one Rust call per chunk


def _round_up(n: int, multiple: int) -> int:
    return int(math.ceil(n / multiple) * multiple)


def _no_effect(kwargs: dict) -> dict:
    """fast-bert's data arguments without effect here, taken out of `kwargs` (see `bertlearn.compat`)."""
    given = {k: kwargs.pop(k) for k in ("multi_gpu", "model_type", "backend", "custom_sampler") if k in kwargs}
    if not multi_gpu_without_effect(given.get("multi_gpu")):
        given.pop("multi_gpu", None)
    return given


SINGLE, MULTI, REGRESSION = "single_label_classification", "multi_label_classification", "regression"
PROBLEM_TYPES = (SINGLE, MULTI, REGRESSION)
TRUNCATIONS = ("head", "tail", "head+tail")


class TextEncoder:
    """How raw texts become model inputs; saved with the model so prediction encodes exactly like training.

    Args:
        tokenizer: a Hugging Face (fast) tokenizer.
        maxlen: tokens per model input, special tokens included.
        labels: label names in output order (for regression: the target's name).
        problem_type: "single_label_classification", "multi_label_classification" or "regression".
        pairs: inputs are (text_a, text_b) pairs, encoded with token_type_ids where the model has them.
        truncation: which tokens of a long text to keep: "head" (first), "tail" (last) or "head+tail"
            (the first quarter and the last three quarters of the budget, as in Sun et al. 2019).
        long_text: "sliding_window" splits long texts into overlapping windows instead of cutting them;
            predictions average the windows' logits.
        stride: tokens shared by consecutive windows (default maxlen // 4).
    """

    def __init__(self, tokenizer: Any, maxlen: int, labels: Sequence[str], *, problem_type: str = SINGLE,
                 pairs: bool = False, truncation: str = "head", long_text: str | None = None,
                 stride: int | None = None):
        if problem_type not in PROBLEM_TYPES:
            raise DataError(f"problem_type={problem_type!r} is not one of {list(PROBLEM_TYPES)}")
        if truncation not in TRUNCATIONS:
            raise DataError(f"truncation={truncation!r} is not one of {list(TRUNCATIONS)}")
        if long_text not in (None, "truncate", "sliding_window"):
            raise DataError(f"long_text={long_text!r} is not one of [None, 'truncate', 'sliding_window']")
        if pairs and (truncation != "head" or long_text == "sliding_window"):
            raise DataError(f"truncation={truncation!r} / long_text={long_text!r} apply to single texts; sentence "
                            "pairs are cut longest-first: leave truncation='head' and long_text=None")
        self.tokenizer, self.maxlen = tokenizer, int(maxlen)
        self.labels, self.problem_type, self.pairs = [str(l) for l in labels], problem_type, bool(pairs)
        self.truncation = truncation
        self.long_text = "sliding_window" if long_text == "sliding_window" else None
        self.stride = int(stride) if stride is not None else max(1, self.maxlen // 4)
        if self.long_text and not 0 < self.stride < self.maxlen - 3:
            raise DataError(f"stride={stride} must be between 1 and maxlen - 4 = {self.maxlen - 4}")

    @property
    def pad_id(self) -> int:
        pad = self.tokenizer.pad_token_id
        return 0 if pad is None else int(pad)

    @property
    def multi_label(self) -> bool:
        return self.problem_type == MULTI

    @property
    def regression(self) -> bool:
        return self.problem_type == REGRESSION

    @property
    def with_token_types(self) -> bool:
        # only pairs need segment ids; models without them (RoBERTa, DistilBERT) do not list them as inputs
        return self.pairs and "token_type_ids" in getattr(self.tokenizer, "model_input_names", ())

    def settings(self) -> dict:
        """What `save_model` writes to bertlearn.json to rebuild this encoder."""
        return {"maxlen": self.maxlen, "labels": self.labels, "problem_type": self.problem_type, "pairs": self.pairs,
                "truncation": self.truncation, "long_text": self.long_text, "stride": self.stride}

    def key_parts(self) -> dict:
        """Everything besides the texts and the tokenizer's definition that decides the ids, for cache keys: the
        settings, and what encoding reads off the tokenizer object (which side it cuts, whether special tokens in
        the text are split, which inputs the model takes) and the tokenizers library's version."""
        import tokenizers
        return {**self.settings(), **self._call_options(), "input_names": list(self.tokenizer.model_input_names),
                "tokenizers": tokenizers.__version__}

    def _call_options(self) -> dict:
        tok = self.tokenizer
        return {"truncation_side": getattr(tok, "truncation_side", "right"),
                "split_special_tokens": bool(getattr(tok, "split_special_tokens", False))}

    @classmethod
    def from_settings(cls, tokenizer: Any, settings: dict) -> "TextEncoder":
        """Rebuild an encoder from `settings()` output.

        Args:
            tokenizer: the tokenizer the settings were saved with.
            settings: what `settings()` returned.
        """
        keys = ("problem_type", "pairs", "truncation", "long_text", "stride")
        return cls(tokenizer, settings["maxlen"], settings["labels"], **{k: settings[k] for k in keys if k in settings})

    def encode(self, texts: Sequence[str], texts_b: Sequence[str] | None = None) -> dict[str, Any]:
        """Tokenize into `ids` (a `RaggedRows`: each row as long as its text), `lengths`, optional `type_ids`
        (RaggedRows) and `owner` (the text each row came from; rows and texts differ only with sliding windows).

        Args:
            texts: the first (or only) texts.
            texts_b: the second texts of sentence pairs, or None.
        """
        texts = list(texts)
        # uint16 halves the memory of the ids for every vocabulary that fits (BERT, RoBERTa...)
        dtype = np.uint16 if len(self.tokenizer) <= np.iinfo(np.uint16).max else np.int32
        ids, types, owners = [], [], []
        backend = self._backend(len(texts)) if self.truncation == "head" and not self.long_text else None
        self.encoded_by = self._described(backend)
        if backend is not None:
            for start, encoded in _encoded_chunks(backend, texts, texts_b):
                rows = backend.rows(encoded, dtype, fill=self.pad_id)
                ids.append(rows)
                if self.with_token_types:
                    types.append(backend.type_rows(encoded))
                owners.append(np.arange(start, start + len(rows)))
        else:  # cutting other than at the end, windows, or no Rust backend: the tokenizer's own call
            for start in range(0, len(texts), _TOKENIZE_CHUNK):
                chunk_a = texts[start:start + _TOKENIZE_CHUNK]
                chunk_b = None if texts_b is None else list(texts_b[start:start + _TOKENIZE_CHUNK])
                enc = self._encode_cut(chunk_a) if self.truncation != "head" and not self.long_text else \
                    self._encode_fast(chunk_a, chunk_b)
                lengths = enc["attention_mask"].sum(axis=1)
                ids.append(RaggedRows.from_padded(enc["input_ids"].astype(dtype), lengths, fill=self.pad_id))
                if self.with_token_types:
                    types.append(RaggedRows.from_padded(enc["token_type_ids"].astype(np.uint8), lengths))
                owner = enc.get("overflow_to_sample_mapping")
                owners.append(start + (np.asarray(owner) if owner is not None else np.arange(len(chunk_a))))
        out = {"ids": RaggedRows.concat(ids, dtype, fill=self.pad_id),
               "owner": np.concatenate(owners).astype(np.int64) if owners else np.zeros(0, np.int64)}
        out["lengths"] = out["ids"].lengths  # int32, shared with the rows (no second copy)
        out["type_ids"] = RaggedRows.concat(types, np.uint8) if self.with_token_types else None
        return out

    def _backend(self, n_texts: int = 0) -> BatchEncoder | None:
        """The Rust backend to encode `n_texts` texts with (see `bertlearn.backends`), or None to call the
        tokenizer itself: a private copy of the tokenizer's backend set to cut at maxlen and never pad, which
        skips the Python work of `tokenizer(...)` (per-text dicts, masks, padding) and gives the same ids; for
        single texts, from the first call of `TOKIE_MIN_TEXTS` texts on, tokie where it gives the same ids. Each
        is checked once per encoder."""
        made_for = (self.maxlen, *self._call_options().values())
        if self.__dict__.get("_fast_for") != made_for:  # maxlen can be lowered, the tokenizer's options changed
            self._fast = batch_encoder(self.tokenizer, self.maxlen, pairs=self.pairs)
            self._fast_for, self._tokie = made_for, False
        if self._fast is None or self.pairs:
            return self._fast
        if self._tokie is False:  # not tried yet: worth its setup for a large call; then used for every call
            if n_texts < TOKIE_MIN_TEXTS:
                return self._fast
            why_not: list[str] = []
            self._tokie = tokie_encoder(self._fast, self.tokenizer, self.maxlen, why_not=why_not)
            self._tokie_why_not = why_not[0] if why_not else None
        return self._tokie or self._fast

    def _described(self, backend: BatchEncoder | None) -> str:
        """How `encode` tokenized, as the fit's summary line says it."""
        if isinstance(backend, TokieBatchEncoder):
            return "tokenized by tokie (non-ASCII texts and pairs by the tokenizers library)"
        how = "tokenized by the tokenizers library" if backend is not None else "tokenized by the tokenizer's own call"
        why_not = self.__dict__.get("_tokie_why_not")
        return f"{how} (tokie is installed but not used: {why_not})" if why_not else how

    def __getstate__(self) -> dict:
        return {k: v for k, v in self.__dict__.items() if k not in ("_fast", "_fast_for", "_tokie", "_tokie_why_not")}

    def _encode_fast(self, texts: list[str], texts_b: list[str] | None) -> dict:
        kwargs = dict(truncation=True, max_length=self.maxlen, padding="longest", return_tensors="np",
                      return_attention_mask=True, return_token_type_ids=self.with_token_types)
        if self.long_text:
            kwargs.update(return_overflowing_tokens=True, stride=self.stride)
        return dict(self.tokenizer(texts, texts_b, **kwargs))

    def _encode_cut(self, texts: list[str]) -> dict:
        """'tail' and 'head+tail': tokenize whole texts in one batched call, then keep the chosen ends."""
        budget = self.maxlen - self.tokenizer.num_special_tokens_to_add(pair=False)
        head = 0 if self.truncation == "tail" else budget // 4
        enc = self.tokenizer(texts, truncation=False, return_attention_mask=False, return_token_type_ids=False,
                             return_special_tokens_mask=True, verbose=False)
        rows = []
        for ids, special in zip(enc["input_ids"], enc["special_tokens_mask"]):
            # the special tokens around the text ([CLS] ... [SEP], <s> ... </s>) stay; the text between is cut
            lead = next((i for i, s in enumerate(special) if not s), len(ids))
            trail = next((i for i, s in enumerate(reversed(special)) if not s), 0)
            body = ids[lead:len(ids) - trail]
            if len(body) > budget:
                body = body[:head] + body[len(body) - (budget - head):]
            rows.append(ids[:lead] + body + ids[len(ids) - trail:])
        width = max((len(r) for r in rows), default=1)
        ids = np.full((len(rows), width), self.pad_id, dtype=np.int64)
        mask = np.zeros((len(rows), width), dtype=np.int64)
        for i, r in enumerate(rows):
            ids[i, :len(r)], mask[i, :len(r)] = r, 1
        return {"input_ids": ids, "attention_mask": mask}

    def dataset(self, texts: Sequence[Any], targets: np.ndarray | None = None, *,
                cache_dir: str | Path | None = None) -> "EncodedDataset":
        """Encode `texts` (strings, or (a, b) pairs) and their already-numeric `targets` into a dataset.

        Args:
            texts: the texts or pairs.
            targets: numeric targets, one per text.
            cache_dir: folder of the tokenization cache (None: no cache).
        """
        texts = list(texts)
        shown = [f"{x} [SEP] {y}" for x, y in texts] if self.pairs else texts
        enc = None
        if cache_dir is not None:
            from .cache import cache_key, load_cached, save_cached
            key = cache_key(texts, self.tokenizer, self.key_parts())
            path = Path(cache_dir) / f"tok-{key}.npz"
            enc = load_cached(path, key, pad_id=self.pad_id)
        encoded_by = "read from the tokenization cache"
        if enc is None:
            enc = self.encode([t[0] for t in texts], [t[1] for t in texts]) if self.pairs else self.encode(texts)
            encoded_by = self.encoded_by
            if cache_dir is not None:
                save_cached(path, key, enc)
        if targets is not None and len(enc["owner"]) != len(texts):
            targets = targets[enc["owner"]]  # each window carries its text's target
        ds = EncodedDataset(enc["ids"], enc["lengths"], targets, self, type_ids=enc["type_ids"], owner=enc["owner"],
                            n_texts=len(texts), texts=np.asarray(shown, dtype=object))
        ds.encoded_by = encoded_by
        return ds


def _encoded_chunks(backend: BatchEncoder, texts: list,
                    texts_b: Sequence[str] | None) -> Iterator[tuple[int, Any]]:
    """(start, `backend.encode` result) for each chunk of `_TOKENIZE_CHUNK` texts, in order. The Rust call for the
    next chunk runs on a helper thread (it releases the GIL) while the caller turns this chunk into arrays, so the
    Python half of tokenization overlaps the Rust half instead of following it."""
    def chunk(start: int) -> Any:
        stop = start + _TOKENIZE_CHUNK
        return backend.encode(texts[start:stop], None if texts_b is None else texts_b[start:stop])

    starts = range(0, len(texts), _TOKENIZE_CHUNK)
    if len(starts) <= 1:
        yield from ((start, chunk(start)) for start in starts)
        return
    with ThreadPoolExecutor(max_workers=1, thread_name_prefix="bertlearn-tokenize") as pool:
        pending = pool.submit(chunk, starts[0])
        for k, start in enumerate(starts):
            encs = pending.result()
            if k + 1 < len(starts):
                pending = pool.submit(chunk, starts[k + 1])
            yield start, encs


class EncodedDataset:
    """Tokenized texts held as ragged id rows plus lengths and targets.

    Args:
        ids: the token ids of n rows: a `RaggedRows` in memory, or a `DiskRows` (the same layout in a file).
        lengths: (n,) number of real tokens per row.
        targets: (n,) int64 class indices, (n, c) float32 multi-hot rows, (n,) float32 regression targets,
            or None for unlabeled data.
        encoder: the `TextEncoder` that made it.
        type_ids: segment ids for sentence pairs, stored like `ids`; else None.
        owner: (n,) index of the text each row came from (sliding windows give one text several rows).
        n_texts: how many texts the rows came from.
        texts: the original texts, kept for show_batch and interpretation.
    """

    encoded_by: str | None = None  # how the ids were made, for the fit's summary line

    def __init__(self, ids: np.ndarray, lengths: np.ndarray, targets: np.ndarray | None, encoder: TextEncoder,
                 *, type_ids: np.ndarray | None = None, owner: np.ndarray | None = None, n_texts: int | None = None,
                 texts: np.ndarray | None = None):
        self.ids, self.lengths, self.targets, self.encoder, self.texts = ids, lengths, targets, encoder, texts
        self.type_ids = type_ids
        self.owner = owner if owner is not None else np.arange(len(lengths))
        self.n_texts = n_texts if n_texts is not None else len(lengths)

    def __len__(self) -> int:
        return len(self.lengths)

    def __getitem__(self, i: int) -> tuple:
        ids = torch.from_numpy(np.asarray(self.ids[i, :self.lengths[i]], dtype=np.int64))
        return (ids,) if self.targets is None else (ids, torch.as_tensor(self.targets[i]))

    @property
    def has_targets(self) -> bool:
        return self.targets is not None

    def clip(self, maxlen: int) -> None:
        """Cut rows to `maxlen` tokens in place, keeping each row's closing special token ([SEP], </s>).

        Args:
            maxlen: the longest row kept, in tokens.
        """
        if int(self.lengths.max(initial=0)) <= maxlen:
            return
        if not isinstance(self.ids, RaggedRows):
            raise DataError(f"this on-disk dataset holds rows of up to {int(self.lengths.max())} tokens but the model "
                            f"takes {maxlen}; build the BertDataBunch with maxlen<={maxlen}")
        self.ids = self.ids.clip(maxlen)
        if self.type_ids is not None:
            self.type_ids = self.type_ids.clip(maxlen)
        self.lengths = np.minimum(self.lengths, maxlen).astype(self.lengths.dtype)

    def new_empty(self) -> "EncodedDataset":
        """An empty dataset with the same encoder: what `learner.export` keeps of the data."""
        targets = None if self.targets is None else self.targets[:0]
        empty = np.zeros(1, dtype=np.int64)
        ids = RaggedRows(np.zeros(0, dtype=self.ids.dtype), empty, fill=self.encoder.pad_id)
        types = None if self.type_ids is None else RaggedRows(np.zeros(0, dtype=np.uint8), empty)
        return EncodedDataset(ids, self.lengths[:0], targets, self.encoder, type_ids=types, owner=self.owner[:0],
                              n_texts=0)


class BertDataLoader(DataLoader):
    """A fastai `DataLoader` over an `EncodedDataset` with length grouping and per-batch padding.

    Batches are `(input_ids, attention_mask[, token_type_ids][, targets])`.

    Args:
        dataset: the `EncodedDataset` to batch.
        bs: batch size.
        shuffle: length-grouped random order (training) instead of longest-first order.
        drop_last: drop the last incomplete batch.
        device: where batches go; CUDA batches are pinned and copied without blocking the host.
    """

    def __init__(self, dataset: EncodedDataset, bs: int = 32, shuffle: bool = False, drop_last: bool = False,
                 device: torch.device | None = None, *, keep_order: bool = False, rank: int = 0, world_size: int = 1,
                 **kwargs):
        kwargs.pop("num_workers", None)  # batching is a numpy slice: worker processes would only add IPC
        self.keep_order, self.rank, self.world_size = keep_order, int(rank), int(world_size)
        super().__init__(dataset, bs=bs, shuffle=shuffle, drop_last=drop_last, device=device, num_workers=0,
                         **kwargs)

    def shard(self, rank: int, world_size: int) -> "BertDataLoader":
        """This loader's share for one rank of a distributed run (see `bertlearn.distributed`).

        Training: the length-grouped order of global batches of `bs * world_size` rows is drawn from rank 0's seed
        and each global batch is split evenly between the ranks, so a DDP step sees exactly the rows one process
        with the global batch size would (same seed, same order). Otherwise: rows `rank::world_size` of the
        longest-first order, gathered back by the metrics and by prediction.

        Args:
            rank: this process's rank.
            world_size: the number of processes.
        """
        dl = self.new(rank=rank, world_size=world_size, keep_order=self.keep_order)
        dl.rng = self.rng  # the shared order follows this loader's (seeded) generator
        return dl

    def _batches(self) -> list[np.ndarray]:
        """The index arrays of this epoch's batches, in order (for this rank when sharded)."""
        if self.world_size > 1 and self.shuffle:
            from .distributed import shared_seed
            seed = shared_seed(self.rng.getrandbits(64))
            order = self._length_grouped_order(self.dataset.lengths, np.random.default_rng(seed),
                                               bs=self.bs * self.world_size)
            step = self.bs * self.world_size
            out = []
            for start in range(0, len(order), step):
                rows = order[start:start + step]
                if len(rows) < self.world_size:
                    rows = np.resize(rows, self.world_size)  # a tiny last batch: repeat rows so every rank steps
                out.append(np.array_split(rows, self.world_size)[self.rank])
            return out
        order = np.asarray(self.get_idxs(), dtype=np.int64)
        stop = len(order) - (len(order) % self.bs if self.drop_last and self.world_size == 1 else 0)
        return [order[i:i + self.bs] for i in range(0, stop, self.bs)]

    def __len__(self) -> int:
        if self.world_size > 1:
            if self.shuffle:
                step = self.bs * self.world_size
                return len(self.dataset) // step if self.drop_last else -(-len(self.dataset) // step)
            return -(-len(range(self.rank, len(self.dataset), self.world_size)) // self.bs)
        return super().__len__()

    @property
    def _n_inp(self) -> int:
        return 3 if self.dataset.type_ids is not None else 2

    @property
    def vocab(self) -> CategoryMap:
        """The label names, as fastai's interpretation tools expect them."""
        return CategoryMap(self.dataset.encoder.labels, sort=False)

    @property
    def items(self) -> list[tuple]:
        """One `(text, target)` per row, what `dls.test_dl(items, with_labels=True)` re-encodes (fastai's
        `Interpretation` does this). Rows cut from a longer text by a sliding window show that window."""
        ds = self.dataset
        texts = ds.texts if ds.texts is not None and len(ds.texts) == len(ds) else \
            [self.dataset.encoder.tokenizer.decode(ds.ids[i, :ds.lengths[i]].tolist(), skip_special_tokens=True)
             for i in range(len(ds))]
        if ds.encoder.pairs and ds.texts is not None and len(ds.texts) == len(ds):
            texts = [tuple(t.split(" [SEP] ", 1)) for t in texts]
        targets = ds.targets if ds.targets is not None else [None] * len(ds)
        return list(zip(texts, targets))

    def create_item(self, s: int) -> int:
        """The row index itself: batches are cut from the stored ids in one go in `create_batch`.

        Args:
            s: a row index.
        """
        return s

    def get_idxs(self) -> list[int]:
        lengths = self.dataset.lengths
        if self.keep_order:
            order = np.arange(len(lengths))
        elif not self.shuffle:
            # longest first: an out-of-memory error shows on the first batch, not the last
            order = np.argsort(-lengths, kind="stable")
        elif self.world_size > 1:
            return np.concatenate(self._batches() or [np.zeros(0, np.int64)]).tolist()
        else:
            order = self._length_grouped_order(lengths)
        if self.world_size > 1:
            order = order[self.rank::self.world_size]  # evaluation rows: each rank scores its share
        return order.tolist()

    def _length_grouped_order(self, lengths: np.ndarray, rng: np.random.Generator | None = None,
                              bs: int | None = None) -> np.ndarray:
        if rng is None:
            rng = np.random.default_rng(self.rng.getrandbits(64))  # self.rng follows fastai's set_seed
        bs = bs or self.bs
        perm = rng.permutation(len(lengths))
        mega = bs * MEGA_BATCH
        chunks = [c[np.argsort(-lengths[c], kind="stable")] for c in np.array_split(perm, range(mega, len(perm), mega))]
        order = np.concatenate(chunks) if chunks else perm
        batches = [order[i:i + bs] for i in range(0, len(order), bs)]
        if self.drop_last and batches and len(batches[-1]) < bs:
            batches = batches[:-1]
        if not batches:
            return np.zeros(0, dtype=np.int64)
        full = [b for b in batches if len(b) == bs]
        short = [b for b in batches if len(b) < bs]
        full = [full[i] for i in rng.permutation(len(full))]
        # the batch holding the longest text goes first, so memory peaks at step one (fastai SortedDL does this)
        if full:
            longest = max(range(len(full)), key=lambda i: lengths[full[i]].max())
            full[0], full[longest] = full[longest], full[0]
        return np.concatenate(full + short)

    def create_batch(self, b: list[int]) -> tuple[torch.Tensor, ...]:
        """The batch's tensors (ids, attention mask, token types if any, targets), padded to its longest row.

        Args:
            b: the row indices of the batch.
        """
        ds, idx = self.dataset, np.asarray(b, dtype=np.int64)
        lengths = ds.lengths[idx]
        longest = int(lengths.max())
        # on a GPU, widths that are multiples of 8 suit tensor cores (never past maxlen: the position table may
        # end there); a CPU only pays for the extra tokens
        multiple = PAD_MULTIPLE if self.device is not None and self.device.type == "cuda" else 1
        width = min(_round_up(longest, multiple), max(longest, ds.encoder.maxlen))
        batch = [torch.from_numpy(ds.ids[idx, :width].astype(np.int64)),
                 torch.from_numpy((np.arange(width)[None, :] < lengths[:, None]).astype(np.int64))]
        if ds.type_ids is not None:
            batch.append(torch.from_numpy(ds.type_ids[idx, :width].astype(np.int64)))
        if ds.targets is not None:
            batch.append(torch.from_numpy(ds.targets[idx]))
        if self.device is not None and self.device.type == "cuda":
            batch = [t.pin_memory() for t in batch]
        return tuple(batch)

    def __iter__(self):
        # fastai's own loop copies with non_blocking=False, which waits for the GPU every batch; pinned
        # tensors copied with non_blocking=True let the host queue the next steps while the GPU works.
        self.randomize()
        self.before_iter()
        for idx in self._batches():
            b = self.create_batch(idx)
            if self.device is not None:
                b = to_device(b, self.device, non_blocking=True)
            yield self.after_batch(b)
        self.after_iter()

    def show_batch(self, b: Any = None, max_n: int = 9, **kwargs) -> None:
        """Print (or display in a notebook) the texts and labels of one batch: the original texts, wrapped, when
        the batch is drawn here; the tokenizer's decoding of the ids when a batch `b` is given.

        Args:
            b: a batch from this loader; one is drawn when omitted.
            max_n: how many rows to show.
        """
        ds = self.dataset
        if b is None and ds.texts is not None and len(ds.texts) == ds.n_texts:
            idx = next(iter(self._batches()), np.zeros(0, np.int64))[:max_n]
            df = batch_to_frame(self.create_batch(idx), ds.encoder, max_n=max_n)
            df["text"] = [str(t) for t in ds.texts[ds.owner[idx]]]  # a sliding window shows its whole text
            display_frame(df)
            return
        display_frame(batch_to_frame(b if b is not None else self.one_batch(), ds.encoder, max_n=max_n))


    def show_results(self, b: tuple, out: Any, max_n: int = 9, **kwargs: Any) -> pd.DataFrame:
        """Show decoded texts, their labels and the model's (decoded) predictions for batch `b`.

        Args:
            b: a batch from this loader.
            out: decoded predictions for it (class indices, 0/1 rows or values), as `get_preds` gives them.
            max_n: how many rows to show.
        """
        df = batch_to_frame(b, self.dataset.encoder, max_n=max_n)
        df["prediction"] = _decode_targets(torch.as_tensor(out)[:max_n].cpu(), self.dataset.encoder)
        display_frame(df)
        return df

    def _pre_show_batch(self, b: tuple, max_n: int = 9) -> tuple:
        # fastai's Interpretation.plot_top_losses calls this twice (with targets, then with predictions) and
        # dispatches `plot_top_losses` on the type of the first value returned
        n = self._n_inp
        df = batch_to_frame(tuple(b[:n]), self.dataset.encoder, max_n=max_n)
        labels = _decode_targets(b[n][:max_n].cpu(), self.dataset.encoder) if len(b) > n else [None] * len(df)
        rows = [(text, *([None] * (n - 1)), label) for text, label in zip(df["text"], labels)]
        return TextInputs(df["text"].tolist()), labels, L(rows)


class TextInputs(list):
    """Decoded input texts of a batch; the type fastai's `plot_top_losses` dispatches on for bertlearn data."""


def display_frame(df: pd.DataFrame, *, width: int = 100) -> None:
    """Show a frame of texts: in a notebook as the DataFrame; elsewhere one block per row, the other columns on
    its first line and the text wrapped to `width` characters below (a table of long texts would run to hundreds
    of characters a line).

    Args:
        df: a frame with a "text" column.
        width: line width of the wrapped texts.
    """
    try:
        from IPython import get_ipython
        from IPython.display import display
        if get_ipython() is not None and "IPKernelApp" in get_ipython().config:
            display(df)
            return
    except ImportError:
        pass
    others = [c for c in df.columns if c != "text"]
    for _, row in df.iterrows():
        head = "   ".join(f"{c}: {row[c]}" for c in others)
        print(head or "-")
        print(textwrap.fill(str(row["text"]), width, initial_indent="    ", subsequent_indent="    "))


def _decode_targets(y: torch.Tensor, encoder: TextEncoder) -> list:
    """Class indices, multi-hot rows or regression values as readable labels."""
    if encoder.multi_label:
        return [";".join(l for l, on in zip(encoder.labels, row) if on > 0.5) for row in y.float().tolist()]
    if encoder.regression:
        return [round(float(v), 4) for v in y.reshape(-1).tolist()]
    return [encoder.labels[int(i)] for i in y.reshape(-1).tolist()]


def batch_to_frame(b: tuple, encoder: TextEncoder, *, max_n: int = 9) -> pd.DataFrame:
    """Decode the first `max_n` rows of a batch into a DataFrame of text and label."""
    ids, mask = b[0][:max_n].cpu(), b[1][:max_n].cpu()
    texts = [encoder.tokenizer.decode(row[m.bool()].tolist(), skip_special_tokens=not encoder.pairs)
             for row, m in zip(ids, mask)]
    out = {"text": texts}
    n_inputs = 3 if encoder.with_token_types else 2
    if len(b) > n_inputs:
        out[encoder.labels[0] if encoder.regression else "label"] = _decode_targets(b[-1][:max_n].cpu(), encoder)
    return pd.DataFrame(out)


# ---------------------------------------------------------------------------------------------------
# reading and checking user data


def read_csv(path: str | Path, arg: str = "input", *, sep: str | None = None, encoding: str | None = None) -> pd.DataFrame:
    """Read a CSV with bertlearn's checks: a missing file lists its folder, cp1252 is detected, a tab-separated
    file read as CSV is named.

    Args:
        path: the file.
        arg: how error messages name it.
        sep, encoding: as for `pandas.read_csv` (default "," and UTF-8 with a cp1252 fallback).
    """
    return _read_csv(Path(path), arg, sep=sep, encoding=encoding)


def _read_csv(path: Path, arg: str, *, sep: str | None, encoding: str | None) -> pd.DataFrame:
    if not path.is_file():
        where = path.parent if path.parent.is_dir() else None
        hint = f"; files there: {sorted(p.name for p in where.iterdir())[:20]}" if where else \
            f"; directory {str(path.parent)!r} does not exist either"
        raise DataError(f"{arg}: file {str(path)!r} not found{hint}")
    read_kwargs = dict(sep=sep or ",", encoding=encoding or "utf-8-sig")
    try:
        df = pd.read_csv(path, **read_kwargs)
    except UnicodeDecodeError:
        if encoding is not None:
            raise DataError(f"{arg}: {str(path)!r} cannot be decoded as {encoding!r}; pass the file's encoding")
        # files from Windows tools (rt-polarity's originals among them) are cp1252; say so, do not fail
        warnings.warn(f"{path.name} is not valid UTF-8; reading it as cp1252 (pass encoding=... to choose)",
                      stacklevel=user_stacklevel())
        df = pd.read_csv(path, **{**read_kwargs, "encoding": "cp1252"})
    except pd.errors.EmptyDataError:
        raise DataError(f"{arg}: {str(path)!r} is empty; it needs a header row and at least one data row") from None
    except pd.errors.ParserError as e:
        raise DataError(f"{arg}: {str(path)!r} is not a valid CSV ({e}); check sep= and quoting") from None
    if len(df) == 0:
        raise DataError(f"{arg}: {str(path)!r} has a header ({list(df.columns)}) but no data rows")
    if sep is None and len(df.columns) == 1 and "\t" in str(df.columns[0]):
        raise DataError(f"{arg}: {str(path)!r} has one column {str(df.columns[0])!r} containing tabs; "
                        "it looks tab-separated: pass sep='\\t'")
    return df


def _column(df: pd.DataFrame, col: Any, arg: str, source: str) -> str:
    """Resolve a column name or integer position to a column name."""
    cols = list(df.columns)
    if isinstance(col, (int, np.integer)) and not isinstance(col, bool):
        if not -len(cols) <= col < len(cols):
            raise DataError(f"{arg}={col} is out of range: {source} has {len(cols)} columns {cols}")
        return cols[col]
    if col in cols:
        return col
    close = difflib.get_close_matches(str(col), [str(c) for c in cols], n=1)
    hint = f"; did you mean {close[0]!r}?" if close else ""
    raise DataError(f"{arg}: column {col!r} not in {source}; columns are {cols}{hint}")


def _columns(df: pd.DataFrame, col: Any, arg: str, source: str) -> list[str]:
    cols = list(col) if isinstance(col, (list, tuple)) else [col]
    if not cols:
        raise DataError(f"{arg} is an empty list; give a column name or position")
    return [_column(df, c, arg, source) for c in cols]


def _texts(df: pd.DataFrame, cols: str | list[str], source: str, *, dropna: bool) -> tuple[list[Any], np.ndarray]:
    """The text column(s) as strings (pairs as tuples), and a mask of the rows kept."""
    cols = [cols] if isinstance(cols, str) else list(cols)
    keep = np.ones(len(df), dtype=bool)
    for col in cols:
        s = df[col]
        # a string column (pandas' default for text read from a CSV) cannot hold numbers: skip the per-row check
        numeric = np.zeros(len(s), dtype=bool) if isinstance(s.dtype, pd.StringDtype) else \
            s.map(lambda v: not isinstance(v, str) and not pd.isna(v)).to_numpy()
        if numeric.any():
            rows = (np.flatnonzero(numeric)[:10] + 2).tolist()
            example = s[numeric].iloc[0]
            example = example.item() if isinstance(example, np.generic) else example
            raise DataError(f"text_col {col!r} in {source} holds non-text values (e.g. {example!r} at CSV "
                            f"line {rows[0]}; lines {rows}); is it the right column? Texts must be strings")
        bad = s.isna().to_numpy() | (s.astype(str).str.strip() == "").to_numpy()
        if bad.any() and not dropna:
            rows = (np.flatnonzero(bad)[:10] + 2).tolist()  # +2: 1-based, after the header line
            raise DataError(f"text_col {col!r} in {source} has {int(bad.sum())} empty or missing texts "
                            f"(CSV lines {rows}{'...' if bad.sum() > 10 else ''}); fix them or pass dropna=True")
        keep &= ~bad
    columns = [df[c][keep].astype(str).tolist() for c in cols]
    return (columns[0] if len(cols) == 1 else list(zip(*columns))), keep


def targets_from_frame(df: pd.DataFrame, label_col: Any, encoder: TextEncoder, *, label_delim: str | None = None,
                       source: str = "data") -> np.ndarray:
    """Encode a frame's label column(s) for `encoder`'s task and label set (class indices, multi-hot rows or floats).

    Args:
        df: the data.
        label_col: the label column; for multi-label a list of 0/1 columns or one `label_delim` column.
        encoder: the trained model's `TextEncoder` (its labels decide the encoding).
        label_delim: separator of several labels in one column.
        source: how error messages name the data.
    """
    cols = _columns(df, label_col, "label_col", source)
    if encoder.multi_label:
        if label_delim is not None:
            return _delimited_multi_hot(df[cols[0]], encoder.labels, label_delim, source)
        return _multi_hot(df[cols], encoder.labels, source)
    if len(cols) != 1:
        raise DataError(f"label_col={label_col!r} names {len(cols)} columns; this model's task needs one")
    if encoder.regression:
        return _float_targets(df[cols[0]], source)
    return _label_indices(df[cols[0]], encoder.labels, source)


def _read_label_file(path: Path) -> list[str] | None:
    if not path.is_file():
        return None
    labels = [line.strip() for line in path.read_text(encoding="utf-8-sig").splitlines() if line.strip()]
    return labels or None


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
        multi_gpu, model_type: fast-bert's; accepted, no effect (named once in a `FastBertCompatWarning`).
        clear_cache: first delete every tokenization cache file (`data_dir/cache/tok-*.npz`), those of other
            settings and files too; with `on_disk=True`, rebuild the token stores of these files instead.
        no_cache: neither read nor write `data_dir/cache`. This constructor caches by default (as fast-bert did):
            the token ids of `train_file` and `val_file` (not `test_data`), one `.npz` each, keyed by the texts'
            content, the tokenizer and every encoding setting (`TextEncoder.key_parts`), so a changed input never
            reuses stale ids. The factories `from_csv` / `from_df` cache only when given `cache_dir`.
        multi_label: several labels per text.
        logger: a `logging.Logger` for progress messages.
    """

    def __init__(self, *args: Any, **kwargs: Any):
        if (not args and "data_dir" not in kwargs) or (args and isinstance(args[0], DataLoader)):
            # fastai's own form (used by `new_empty`, `export`...): store the loaders
            super().__init__(*args, **kwargs)
            return
        # fast-bert's form: do the work through the factory, then adopt what it built
        built = type(self)._from_fast_bert_args(*args, **kwargs)
        self.__dict__.update(built.__dict__)

    @classmethod
    def _from_fast_bert_args(cls, data_dir: str | Path, label_dir: str | Path | None = None, tokenizer: Any = None,
                             train_file: str = "train.csv", val_file: str | None = "val.csv",
                             test_data: Sequence[str] | str | None = None, label_file: str = "labels.csv",
                             text_col: Any = "text", label_col: Any = "label", bs: int = 32, maxlen: int = 512,
                             multi_gpu: bool = False, multi_label: bool = False, model_type: str | None = None,
                             logger: logging.Logger | None = None, clear_cache: bool = False,
                             no_cache: bool = False, *, batch_size_per_gpu: int | None = None,
                             max_seq_length: int | None = None, **kwargs: Any) -> "BertDataBunch":
        ignored = {"model_type": model_type, **{k: kwargs.pop(k) for k in ("backend", "custom_sampler") if k in kwargs}}
        if multi_gpu_without_effect(multi_gpu):
            ignored = {"multi_gpu": multi_gpu, **ignored}
        note_no_effect("BertDataBunch", ignored)
        cache_dir = Path(data_dir) / "cache"
        if kwargs.get("on_disk"):  # the token store is the cache: from_csv handles both flags
            kwargs.update(clear_cache=clear_cache, no_cache=no_cache)
        else:
            if clear_cache and cache_dir.is_dir():
                for f in cache_dir.glob("tok-*.npz"):
                    f.unlink()
            if not no_cache:
                kwargs.setdefault("cache_dir", cache_dir)  # fast-bert cached in data_dir/cache too
        return cls.from_csv(data_dir, tokenizer, train_file=train_file, val_file=val_file, test_data=test_data,
                            label_dir=label_dir, label_file=label_file, text_col=text_col, label_col=label_col,
                            bs=batch_size_per_gpu if batch_size_per_gpu is not None else bs,
                            maxlen=max_seq_length if max_seq_length is not None else maxlen,
                            multi_label=multi_label, logger=logger, **kwargs)

    @classmethod
    def from_csv(cls, data_dir: str | Path, tokenizer: Any = None, *, train_file: str = "train.csv",
                 val_file: str | None = "val.csv", test_data: Sequence[str] | str | None = None,
                 label_dir: str | Path | None = None, label_file: str = "labels.csv", sep: str | None = None,
                 encoding: str | None = None, on_disk: bool = False, chunksize: int = 50_000,
                 **kwargs: Any) -> "BertDataBunch":
        """Read `train_file` / `val_file` (and `labels.csv` when present) from `data_dir`, then call `from_df`.

        With `on_disk=True` the files are never loaded whole: they are read `chunksize` rows at a time,
        tokenized into a token store under `data_dir/cache/` (reused while the file and settings are unchanged)
        and batches read their rows from disk, so files larger than memory train (see `bertlearn.store`).

        Args:
            data_dir: folder of the CSV files.
            tokenizer: tokenizer object, name or path (None: the packaged default).
            train_file, val_file: CSV names; with `val_file=None`, `valid_pct` of train is held out.
            test_data: texts or a CSV file name (its `text_col` is used) for later prediction.
            label_dir, label_file: where the optional label list lives (default: `data_dir`).
            sep, encoding: CSV separator and encoding (default ',' and UTF-8, with cp1252 fallback).
            on_disk: stream the CSV files through an on-disk token store instead of reading them into memory.
            chunksize: rows per chunk with `on_disk`.
            **kwargs: everything `from_df` takes.
        """
        data_dir = Path(data_dir)
        if not data_dir.is_dir():
            raise DataError(f"data_dir {str(data_dir)!r} is not a directory")
        if on_disk:
            labels = kwargs.pop("labels", None)
            if labels is None and label_file:
                labels = _read_label_file(Path(label_dir if label_dir is not None else data_dir) / label_file)
            return cls._from_csv_on_disk(data_dir, tokenizer, train_file=train_file, val_file=val_file,
                                         labels=labels, sep=sep, encoding=encoding, chunksize=chunksize,
                                         test_data=test_data, **kwargs)
        train_df = _read_csv(data_dir / train_file, "train_file", sep=sep, encoding=encoding)
        valid_df = None if val_file is None else _read_csv(data_dir / val_file, "val_file", sep=sep, encoding=encoding)
        labels = kwargs.pop("labels", None)
        if labels is None and label_file:
            labels = _read_label_file(Path(label_dir if label_dir is not None else data_dir) / label_file)
        if isinstance(test_data, (str, Path)):
            test_df = _read_csv(data_dir / test_data, "test_data", sep=sep, encoding=encoding)
            text_col = kwargs.get("text_col", "text")
            cols = _columns(test_df, text_col, "text_col", str(test_data))
            test_data, _ = _texts(test_df, cols, str(test_data), dropna=kwargs.get("dropna", False))
        return cls.from_df(train_df, valid_df, tokenizer, labels=labels, test_data=test_data, path=data_dir,
                           sources=(str(train_file), str(val_file)), **kwargs)

    @classmethod
    def _from_csv_on_disk(cls, data_dir: Path, tokenizer: Any, *, train_file: str, val_file: str | None,
                          labels: Sequence[str] | None, sep: str | None, encoding: str | None, chunksize: int,
                          text_col: Any = "text", label_col: Any = "label", bs: int = 32, val_bs: int | None = None,
                          maxlen: int = 512, multi_label: bool = False, regression: bool = False,
                          label_delim: str | None = None, truncation: str = "head", seed: int | None = None,
                          device: torch.device | str | None = None, dropna: bool = False, weight: Any = None,
                          pos_weight: Any = None, logger: logging.Logger | None = None, test_data: Any = None,
                          **kwargs: Any) -> "BertDataBunch":
        from .cache import tokenizer_fingerprint
        from .distributed import barrier, init_distributed, is_main_process, launched_distributed
        from .store import build_store, load_store, store_key

        note_no_effect("BertDataBunch.from_csv", _no_effect(kwargs))
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
        log = logger or _log
        chunksize = _positive_int(chunksize, "chunksize")
        bs, val_bs, maxlen, multi_label, problem_type = _task_options(bs, val_bs, maxlen, multi_label, regression,
                                                                      label_delim)
        tok, maxlen = _tokenizer_within(tokenizer, maxlen)
        read = dict(sep=sep or ",", encoding=encoding or "utf-8-sig")
        paths = [data_dir / train_file, data_dir / val_file]
        for path, arg in zip(paths, ("train_file", "val_file")):
            if not path.is_file():
                _read_csv(path, arg, sep=sep, encoding=encoding)  # raises with the folder's listing
        heads = [pd.read_csv(path, nrows=5, **read) for path in paths]
        tcols = _columns(heads[0], text_col, "text_col", str(train_file))
        lcols = _columns(heads[0], label_col, "label_col", str(train_file))
        for head, name in zip(heads[1:], (str(val_file),)):
            _columns(head, tcols, "text_col", name)
            _columns(head, lcols, "label_col", name)
        if len(tcols) > 2:
            raise DataError(f"text_col={text_col!r} names {len(tcols)} columns; give one, or two for sentence pairs")
        if (not multi_label or label_delim is not None) and len(lcols) != 1:
            raise DataError(f"label_col={label_col!r} names {len(lcols)} columns; this task needs one label column")

        def label_chunks(path: Path):
            return pd.read_csv(path, usecols=lcols, chunksize=chunksize, **read)

        if multi_label and label_delim is None:
            labels = list(labels) if labels is not None else [str(c) for c in lcols]
        elif multi_label:
            if labels is None:
                seen = pd.Series(sorted({l.strip() for ch in label_chunks(paths[0]) for v in ch[lcols[0]].dropna()
                                         for l in str(v).split(label_delim) if l.strip()}))
                labels = sorted(seen.tolist())
        elif regression:
            labels = [str(lcols[0])]
        elif labels is None:
            uniques = pd.concat([pd.Series(ch[lcols[0]].dropna().unique()) for ch in label_chunks(paths[0])])
            labels = _single_labels(pd.Series(uniques.unique()), None, str(train_file))
        encoder = TextEncoder(tok, maxlen, labels, problem_type=problem_type, pairs=len(tcols) == 2,
                              truncation=truncation)

        def encode(chunk: pd.DataFrame, source: str) -> tuple[dict, np.ndarray]:
            texts, keep = _texts(chunk, tcols if len(tcols) == 2 else tcols[0], source, dropna=dropna)
            ldf = chunk.loc[keep, lcols] if not keep.all() else chunk[lcols]
            y = targets_from_frame(ldf, lcols, encoder, label_delim=label_delim, source=source)
            enc = encoder.encode([t[0] for t in texts], [t[1] for t in texts]) if encoder.pairs else encoder.encode(texts)
            return enc, y

        datasets = []
        for path, name in zip(paths, (str(train_file), str(val_file))):
            key = store_key(path, {"tok": tokenizer_fingerprint(tok), **encoder.key_parts(), "text_col": tcols,
                                   "label_col": lcols, "label_delim": label_delim, "dropna": dropna})
            folder = data_dir / "cache" / f"store-{Path(name).stem}-{key}"
            if launched_distributed():
                # one process builds the store (rank 0), the others wait and then read it
                init_distributed()
                if not is_main_process():
                    barrier()
            stored = None if clear_cache and is_main_process() else load_store(folder, pad_id=encoder.pad_id)
            if stored is None:
                t0 = time.perf_counter()
                meta = build_store(folder, pd.read_csv(path, chunksize=chunksize, **read),
                                   lambda ch, name=name: encode(ch, f"{name} (rows from {ch.index[0] + 1})"),
                                   len(tok))
                log.info("tokenized %d rows of %s to %s in %.1fs", meta["n"], name, folder, time.perf_counter() - t0)
                stored = load_store(folder, pad_id=encoder.pad_id)
            if launched_distributed() and is_main_process():
                barrier()
            ids, lengths, targets, types = stored
            datasets.append(EncodedDataset(ids, lengths, targets, encoder, type_ids=types))
            datasets[-1].encoded_by = f"read from the on-disk token store {str(folder)!r}"

        loaders = [BertDataLoader(datasets[0], bs=bs, shuffle=True), BertDataLoader(datasets[1], bs=val_bs)]
        if seed is not None:
            loaders[0].rng = random.Random(seed)
        if test_data is not None:
            if isinstance(test_data, (str, Path)):
                test_df = _read_csv(data_dir / test_data, "test_data", sep=sep, encoding=encoding)
                test_data, _ = _texts(test_df, tcols if len(tcols) == 2 else tcols[0], str(test_data), dropna=dropna)
            loaders.append(BertDataLoader(encoder.dataset(_as_texts(test_data, "test_data", pairs=encoder.pairs)),
                                          bs=val_bs))
        if device is None:
            device = torch.device("cuda") if torch.cuda.is_available() else torch.device("cpu")
        dls = cls(*loaders, path=data_dir, device=device)
        dls.columns = {"text_col": tcols, "label_col": lcols, "label_delim": label_delim}
        dls.weight = _class_weights(weight, datasets[0].targets, len(labels), "weight", problem_type, SINGLE)
        dls.pos_weight = _class_weights(pos_weight, datasets[0].targets, len(labels), "pos_weight", problem_type, MULTI)
        return dls

    @classmethod
    def from_df(cls, train_df: pd.DataFrame, valid_df: pd.DataFrame | None = None, tokenizer: Any = None, *,
                text_col: Any = "text", label_col: Any = "label", labels: Sequence[str] | None = None,
                bs: int = 32, val_bs: int | None = None, maxlen: int = 512, multi_label: bool = False,
                regression: bool = False, label_delim: str | None = None, truncation: str = "head",
                long_text: str | None = None, stride: int | None = None,
                weight: Sequence[float] | str | None = None, pos_weight: Sequence[float] | str | None = None,
                test_data: Sequence[Any] | None = None, valid_pct: float = 0.2, seed: int | None = None,
                dropna: bool = False, device: torch.device | str | None = None, path: str | Path = ".",
                logger: logging.Logger | None = None, cache_dir: str | Path | None = None,
                sources: tuple[str, str] = ("train_df", "valid_df"), **kwargs: Any) -> "BertDataBunch":
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
            stride: overlap of sliding windows in tokens.
            weight: per-class loss weights (single-label), or "balanced" for inverse class frequency.
            pos_weight: per-label positive weights (multi-label), or "balanced" for negatives / positives.
            test_data: texts (or pairs) to predict on later (`learner.predict_batch()` with no argument).
            valid_pct: the held-out share when `valid_df` is None.
            seed: seeds that split and the training order, for repeatable runs.
            dropna: drop rows with empty texts instead of raising.
            device: where batches go (default: CUDA when available).
            path: the folder things are saved relative to.
            logger: a `logging.Logger` for progress messages.
            cache_dir: keep tokenized features in this folder, keyed by the texts' content, the tokenizer and
                every encoding setting (see `bertlearn.cache`); None: tokenize every time.
        """
        note_no_effect("BertDataBunch.from_df", _no_effect(kwargs))
        if kwargs.pop("no_cache", False):
            cache_dir = None
        if kwargs.pop("clear_cache", False) and cache_dir is not None:
            for f in Path(cache_dir).glob("tok-*.npz"):
                f.unlink()
        if kwargs:
            raise TypeError(f"from_df() got unexpected arguments {sorted(kwargs)}")
        log = logger or _log
        bs, val_bs, maxlen, multi_label, problem_type = _task_options(bs, val_bs, maxlen, multi_label, regression,
                                                                      label_delim)
        if not isinstance(train_df, pd.DataFrame) or len(train_df) == 0:
            raise DataError(f"train_df must be a non-empty pandas DataFrame, got {type(train_df).__name__} "
                            f"with {len(train_df) if hasattr(train_df, '__len__') else '?'} rows")
        if valid_df is None:
            if not 0 < valid_pct < 1:
                raise DataError(f"valid_pct={valid_pct} must be between 0 and 1 when valid_df is None")
            perm = np.random.default_rng(seed).permutation(len(train_df))
            n_valid = max(1, int(round(len(train_df) * valid_pct)))
            train_df, valid_df = train_df.iloc[perm[n_valid:]], train_df.iloc[perm[:n_valid]]
            sources = (f"{sources[0]} (train part)", f"{sources[0]} (valid_pct part)")

        tok, maxlen = _tokenizer_within(tokenizer, maxlen)

        text_cols = [_columns(df, text_col, "text_col", src) for df, src in zip((train_df, valid_df), sources)]
        if len(text_cols[0]) > 2:
            raise DataError(f"text_col={text_col!r} names {len(text_cols[0])} columns; give one text column, or two "
                            "for sentence pairs")
        pairs = len(text_cols[0]) == 2
        label_cols = [_columns(df, label_col, "label_col", src) for df, src in zip((train_df, valid_df), sources)]
        if (not multi_label or label_delim is not None) and len(label_cols[0]) != 1:
            raise DataError(f"label_col={label_col!r} names {len(label_cols[0])} columns; this task needs one label "
                            "column (pass multi_label=True for 0/1 label columns)")

        t0 = time.perf_counter()
        parts = []
        for df, tcols, lcols, src in zip((train_df, valid_df), text_cols, label_cols, sources):
            texts, keep = _texts(df, tcols, src, dropna=dropna)
            parts.append((texts, df.loc[keep, lcols] if not keep.all() else df[lcols], src))
        if multi_label and label_delim is not None:
            split = [ldf.iloc[:, 0] for _, ldf, _ in parts]
            labels = list(labels) if labels is not None else _delimited_labels(split[0], label_delim, sources[0])
            targets = [_delimited_multi_hot(s, labels, label_delim, src) for s, (_, _, src) in zip(split, parts)]
        elif multi_label:
            labels = list(labels) if labels is not None else [str(c) for c in label_cols[0]]
            targets = [_multi_hot(ldf, labels, src) for _, ldf, src in parts]
        elif regression:
            labels = [str(label_cols[0][0])]
            targets = [_float_targets(ldf.iloc[:, 0], src) for _, ldf, src in parts]
        else:
            raw = [ldf.iloc[:, 0] for _, ldf, _ in parts]
            labels = _single_labels(raw[0], labels, sources[0])
            targets = [_label_indices(r, labels, src) for r, (_, _, src) in zip(raw, parts)]

        encoder = TextEncoder(tok, maxlen, labels, problem_type=problem_type, pairs=pairs, truncation=truncation,
                              long_text=long_text, stride=stride)
        train_ds = encoder.dataset(parts[0][0], targets[0], cache_dir=cache_dir)
        valid_ds = encoder.dataset(parts[1][0], targets[1], cache_dir=cache_dir)
        log.info("tokenized %d train and %d valid texts in %.1fs (maxlen %d)", train_ds.n_texts, valid_ds.n_texts,
                 time.perf_counter() - t0, maxlen)
        truncated = float((train_ds.lengths >= maxlen).mean())
        if truncated > 0.05 and not encoder.long_text:
            log.info("%.0f%% of training texts are cut at maxlen=%d (truncation=%r)", 100 * truncated, maxlen,
                     truncation)

        loaders = [BertDataLoader(train_ds, bs=bs, shuffle=True, drop_last=False),
                   BertDataLoader(valid_ds, bs=val_bs, shuffle=False)]
        if seed is not None:
            loaders[0].rng = random.Random(seed)  # the training order then repeats run to run
        if test_data is not None:
            loaders.append(BertDataLoader(encoder.dataset(_as_texts(test_data, "test_data", pairs=pairs)), bs=val_bs))
        if device is None:
            device = torch.device("cuda") if torch.cuda.is_available() else torch.device("cpu")
        dls = cls(*loaders, path=path, device=device)
        # saved beside the model, so `bertlearn predict/eval` find the same columns in new files
        dls.columns = {"text_col": text_cols[0], "label_col": label_cols[0], "label_delim": label_delim}
        dls.weight = _class_weights(weight, targets[0], len(labels), "weight", problem_type, SINGLE)
        dls.pos_weight = _class_weights(pos_weight, targets[0], len(labels), "pos_weight", problem_type, MULTI)
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

    def test_dl(self, test_items: Sequence[Any], bs: int | None = None, *, with_labels: bool = False,
                **kwargs: Any) -> BertDataLoader:
        """A loader over new texts (or (a, b) pairs), tokenized like the training data.

        Args:
            test_items: the texts; with `with_labels`, `(text, target)` items as a loader's `items` gives them.
            bs: batch size (default: the validation batch size).
            with_labels: items carry encoded targets; the loader then keeps the items' order in one batch
                when they fit (fastai's `Interpretation` matches its rows to its losses by position).
        """
        if with_labels:
            items = list(test_items)
            texts = _as_texts([t for t, _ in items], "texts", pairs=self.encoder.pairs)
            targets = np.stack([np.asarray(y) for _, y in items]) if items else None
            ds = self.encoder.dataset(texts, targets)
            return BertDataLoader(ds, bs=max(bs or self.valid.bs, len(ds)), device=self.device, keep_order=True)
        ds = self.encoder.dataset(_as_texts(test_items, "texts", pairs=self.encoder.pairs))
        return BertDataLoader(ds, bs=bs or self.valid.bs, shuffle=False, device=self.device)

    def show_batch(self, b: Any = None, max_n: int = 9, **kwargs: Any) -> None:
        """Show decoded texts and labels of a training batch.

        Args:
            b: a batch to show (default: the first training batch).
            max_n: how many rows.
            **kwargs: passed to the training loader's `show_batch` (which takes none; kept for fastai's calls).
        """
        self.train.show_batch(b, max_n=max_n, **kwargs)


def _task_options(bs: Any, val_bs: Any, maxlen: Any, multi_label: bool, regression: bool,
                  label_delim: str | None) -> tuple[int, int, int, bool, str]:
    """Checked batch sizes and maxlen, and the problem type the task flags describe."""
    bs, maxlen = _positive_int(bs, "bs"), _positive_int(maxlen, "maxlen")
    val_bs = _positive_int(val_bs, "val_bs") if val_bs is not None else 2 * bs
    multi_label = multi_label or label_delim is not None
    if multi_label and regression:
        raise DataError("multi_label=True and regression=True exclude each other; choose one")
    return bs, val_bs, maxlen, multi_label, MULTI if multi_label else REGRESSION if regression else SINGLE


def _tokenizer_within(tokenizer: Any, maxlen: int) -> tuple[Any, int]:
    """The loaded tokenizer, and `maxlen` cut to its `model_max_length` (with a warning) when above it."""
    tok = load_tokenizer(tokenizer)
    limit = getattr(tok, "model_max_length", None)
    if isinstance(limit, int) and 0 < limit < 100_000 and maxlen > limit:
        warnings.warn(f"maxlen={maxlen} exceeds the tokenizer's model_max_length={limit}; using {limit}",
                      stacklevel=user_stacklevel())
        maxlen = limit
    return tok, maxlen


def _positive_int(value: Any, arg: str, error: type[Exception] = DataError) -> int:
    try:
        ok = float(value) == int(value) and int(value) > 0
    except (TypeError, ValueError):
        ok = False
    if not ok:
        raise error(f"{arg}={value!r} must be a positive integer")
    return int(value)


def _as_texts(texts: Any, arg: str, *, pairs: bool = False) -> list[Any]:
    if pairs:
        texts = [texts] if isinstance(texts, tuple) and len(texts) == 2 and isinstance(texts[0], str) else list(texts)
        bad = [i for i, t in enumerate(texts) if not (isinstance(t, (tuple, list)) and len(t) == 2
                                                       and all(isinstance(s, str) for s in t))]
        if bad:
            raise DataError(f"{arg}: items {bad[:10]} are not (text_a, text_b) pairs of strings; this model was "
                            "trained on sentence pairs")
        return [tuple(t) for t in texts]
    if isinstance(texts, str):
        return [texts]
    texts = list(texts)
    bad = [i for i, t in enumerate(texts) if not isinstance(t, str)]
    if bad:
        raise DataError(f"{arg}: items {bad[:10]} are not strings (got {type(texts[bad[0]]).__name__}); "
                        "pass a list of texts")
    return texts


def _label_name(v: Any) -> str:
    # 1.0 and 1 from a CSV column are the same label; keep '1' rather than '1.0'
    if isinstance(v, (float, np.floating)) and float(v).is_integer():
        return str(int(v))
    return str(v).strip()


def _single_labels(train_labels: pd.Series, labels: Sequence[str] | None, source: str) -> list[str]:
    missing = train_labels.isna().to_numpy()
    if missing.any():
        rows = (np.flatnonzero(missing)[:10] + 2).tolist()
        raise DataError(f"label_col {train_labels.name!r} in {source} has {int(missing.sum())} missing labels "
                        f"(CSV lines {rows}); fill or drop those rows")
    if labels is not None:
        labels = [str(l) for l in labels]
        present = {_label_name(v) for v in pd.unique(train_labels)}
        extra = [l for l in labels if l not in present]
        if extra:
            raise DataError(f"labels ({len(labels)} given, e.g. from labels.csv) include {extra[:10]}, which never occur "
                            f"in {source}; a class without training examples cannot be learned: remove it")
        if len(labels) != len(set(labels)):
            raise DataError(f"labels contain duplicates: {sorted(l for l in set(labels) if labels.count(l) > 1)}")
        return labels
    values = pd.unique(train_labels)
    try:
        values = sorted(values)  # numeric labels sort as numbers (2 before 10)
    except TypeError:
        values = sorted(values, key=str)
    names = list(dict.fromkeys(_label_name(v) for v in values))
    if len(names) < 2:
        raise DataError(f"label_col {train_labels.name!r} in {source} has a single class {names}; "
                        "a classifier needs at least two")
    return names


def _label_indices(series: pd.Series, labels: list[str], source: str) -> np.ndarray:
    if series.isna().any():
        rows = (np.flatnonzero(series.isna().to_numpy())[:10] + 2).tolist()
        raise DataError(f"label_col {series.name!r} in {source} has missing labels (CSV lines {rows})")
    index = {l: i for i, l in enumerate(labels)}
    # once per distinct value, then a dictionary lookup per row (100k rows: 0.1 s less than naming every row)
    names = series.map({v: _label_name(v) for v in pd.unique(series)})
    codes = names.map(index)
    unknown = codes.isna().to_numpy()
    if unknown.any():
        extra = sorted(set(names[unknown]))[:10]
        raise DataError(f"label_col {series.name!r} in {source} has labels {extra} that are not among the known "
                        f"labels {labels[:20]}; add them to labels.csv or remove those rows")
    # copy=True: pandas 3 hands out read-only views, which torch warns about when a batch or metric wraps them
    return codes.to_numpy(dtype=np.int64, copy=True)


def _multi_hot(ldf: pd.DataFrame, labels: list[str], source: str) -> np.ndarray:
    """The 0/1 label columns as (n, len(labels)) float32 rows, column j holding label `labels[j]`.

    Columns are matched to labels by name, never by position: a labels.csv (or `labels=`) in another order than
    the columns must not train output j on another label's column."""
    names = [str(c) for c in ldf.columns]
    if len(set(labels)) != len(labels):
        twice = sorted(l for l in set(labels) if labels.count(l) > 1)
        raise DataError(f"the labels for {source} (labels.csv or labels=) list {twice} more than once; list each "
                        "label once")
    if len(set(names)) != len(names):
        raise DataError(f"label_col names the same column twice for {source}: {names}; name each column once")
    if set(names) != set(labels):
        no_column = [l for l in labels if l not in names]
        no_label = [c for c in names if c not in labels]
        gaps = ([f"label{'s' if len(no_column) > 1 else ''} {no_column[:10]} without a column"] if no_column else []) \
            + ([f"column{'s' if len(no_label) > 1 else ''} {no_label[:10]} without a label"] if no_label else [])
        raise DataError(f"the labels {labels[:20]} (labels.csv or labels=) and the label_col columns {names[:20]} of "
                        f"{source} name different labels ({' and '.join(gaps)}); columns are matched to labels by "
                        "name, so list the same names, in any order")
    values = ldf.iloc[:, [names.index(l) for l in labels]].to_numpy()
    try:
        arr = values.astype(np.float32)
        ok = np.isin(arr, (0.0, 1.0)).all()
    except (TypeError, ValueError):
        ok = False
    if not ok:
        raise DataError(f"multi-label columns {names[:10]} in {source} must hold only 0 and 1")
    return arr


def _delimited_labels(series: pd.Series, delim: str, source: str) -> list[str]:
    if series.isna().any():
        rows = (np.flatnonzero(series.isna().to_numpy())[:10] + 2).tolist()
        raise DataError(f"label_col {series.name!r} in {source} has missing labels (CSV lines {rows})")
    names = sorted({p.strip() for v in series.astype(str) for p in v.split(delim) if p.strip()})
    if len(names) < 2:
        raise DataError(f"label_col {series.name!r} in {source} has fewer than two labels {names} with "
                        f"label_delim={delim!r}")
    return names


def _delimited_multi_hot(series: pd.Series, labels: list[str], delim: str, source: str) -> np.ndarray:
    index = {l: i for i, l in enumerate(labels)}
    out = np.zeros((len(series), len(labels)), dtype=np.float32)
    unknown = set()
    for row, value in enumerate(series.fillna("").astype(str)):
        for part in value.split(delim):
            part = part.strip()
            if part in index:
                out[row, index[part]] = 1.0
            elif part:
                unknown.add(part)
    if unknown:
        raise DataError(f"label_col {series.name!r} in {source} has labels {sorted(unknown)[:10]} that are not among "
                        f"the known labels {labels[:20]}; add them to labels.csv or remove those rows")
    return out


def _float_targets(series: pd.Series, source: str) -> np.ndarray:
    values = pd.to_numeric(series, errors="coerce")
    bad = values.isna().to_numpy()
    if bad.any():
        rows = (np.flatnonzero(bad)[:10] + 2).tolist()
        raise DataError(f"label_col {series.name!r} in {source} needs numbers for regression; CSV lines {rows} are "
                        f"missing or not numeric (e.g. {series[bad].iloc[0]!r})")
    return values.to_numpy(dtype=np.float32, copy=True)  # writable, as in _label_indices


def _class_weights(value: Any, targets: np.ndarray, n_labels: int, arg: str, problem_type: str,
                   needs: str) -> np.ndarray | None:
    """Per-class `weight` (single-label) or per-label `pos_weight` (multi-label), given or 'balanced'."""
    if value is None:
        return None
    if problem_type != needs:
        other = "weight" if arg == "pos_weight" else "pos_weight"
        raise DataError(f"{arg} applies to {needs.replace('_', ' ')}; this task is {problem_type.replace('_', ' ')}"
                        + ("" if problem_type == REGRESSION else f" (use {other})"))
    if isinstance(value, str):
        if value != "balanced":
            raise DataError(f"{arg}={value!r}: give one number per label or 'balanced'")
        if problem_type == SINGLE:
            counts = np.bincount(targets, minlength=n_labels).astype(np.float64)
            return (len(targets) / (n_labels * np.maximum(counts, 1))).astype(np.float32)
        pos = targets.sum(axis=0)
        return ((len(targets) - pos) / np.maximum(pos, 1)).astype(np.float32)
    arr = np.asarray(value, dtype=np.float32).reshape(-1)
    if len(arr) != n_labels or not (arr > 0).all():
        raise DataError(f"{arg} has {len(arr)} values {arr.tolist()[:10]}; give {n_labels} positive numbers, one per "
                        "label in label order, or 'balanced'")
    return arr
