"""Datasets and loaders: tokenized rows become fastai batches, padded per batch, grouped by length for training.

A batch gathers its rows padded to its longest row (rounded up to a multiple of 8 on a GPU), so per-batch work is a
few numpy operations. Training batches are length-grouped (random mega-batches sorted inside, batch order
shuffled, the longest batch first), which removes most padding; validation and prediction run longest-first.
"""

from __future__ import annotations

import math
import textwrap
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd
import torch
from fastai.data.load import DataLoader
from fastai.data.transforms import CategoryMap
from fastai.torch_core import to_device
from fastcore.foundation import L

from ..device import batch_overhead_for
from ..errors import DataError
from .store import RaggedRows

if TYPE_CHECKING:  # annotations only: encode imports this module
    from .encode import TextEncoder

__all__ = ["EncodedDataset", "BertDataLoader", "StoredRow", "TextInputs", "display_frame", "batch_to_frame", "decode_targets",
           "PAD_MULTIPLE", "MEGA_BATCH", "padding_aware_cuts"]

PAD_MULTIPLE = 8  # GPU tensor cores and SDPA kernels like sequence lengths that are multiples of 8
MEGA_BATCH = 50  # batches per length-sorted mega-batch, as in fastai's SortedDL


def padding_aware_cuts(lengths: np.ndarray, bs: int, overhead: int) -> np.ndarray:
    """Where to cut longest-first rows into batches of at most `bs` so that padded tokens plus `overhead` tokens
    per batch are fewest: the batch widths follow the lengths instead of every `bs` rows taking the longest one's.

    A batch of rows i..j-1 costs `overhead + (j - i) * lengths[i]` (rows sorted longest first, so row i sets the
    width; attention's part that grows with the square of the width is left out: at prediction lengths the linear
    layers dominate, and leaving it out only errs toward fewer cuts); the cheapest partition is found exactly
    (dynamic programming, O(rows x bs): about 0.4 s for 100,000 rows at bs 64). Where neighbouring rows
    have equal lengths, as in a large sorted call, this gives the usual batches of `bs`.

    Args:
        lengths: the rows' token counts, longest first.
        bs: the most rows a batch may hold.
        overhead: a batch's fixed cost in tokens (launches, Python): the larger, the fewer and fuller the batches.

    Returns:
        The start index of every batch, then len(lengths).
    """
    n = len(lengths)
    width = np.asarray(lengths, dtype=np.float64)
    cost = np.zeros(n + 1)
    back = np.zeros(n + 1, dtype=np.int64)
    for j in range(1, n + 1):
        starts = np.arange(max(0, j - bs), j)
        total = cost[starts] + overhead + (j - starts) * width[starts]
        k = len(total) - 1 - int(np.argmin(total[::-1]))  # of equal costs the last start: full batches come first
        cost[j], back[j] = total[k], starts[k]
    cuts = [n]
    while cuts[-1] > 0:
        cuts.append(int(back[cuts[-1]]))
    return np.array(cuts[::-1], dtype=np.int64)


def _round_up(n: int, multiple: int) -> int:
    return int(math.ceil(n / multiple) * multiple)


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
        texts: the original texts ((a, b) tuples for sentence pairs), kept for show_batch and interpretation.
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

    def rows(self, idx: Any) -> "EncodedDataset":
        """A dataset of rows `idx` of this one, as stored (ids, token types, targets), one text a row.

        Args:
            idx: the row indices.
        """
        idx = np.asarray(idx, dtype=np.int64)
        lengths = self.lengths[idx]

        def take(rows: Any, fill: int) -> RaggedRows:
            return RaggedRows.from_lists([np.asarray(rows[i, :n]) for i, n in zip(idx.tolist(), lengths.tolist())],
                                         rows.dtype, fill=fill)

        return EncodedDataset(take(self.ids, self.encoder.pad_id), lengths.copy(),
                              None if self.targets is None else self.targets[idx], self.encoder,
                              type_ids=None if self.type_ids is None else take(self.type_ids, 0))

    def new_empty(self) -> "EncodedDataset":
        """An empty dataset with the same encoder: what `learner.export` keeps of the data."""
        targets = None if self.targets is None else self.targets[:0]
        empty = np.zeros(1, dtype=np.int64)
        ids = RaggedRows(np.zeros(0, dtype=self.ids.dtype), empty, fill=self.encoder.pad_id)
        types = None if self.type_ids is None else RaggedRows(np.zeros(0, dtype=np.uint8), empty)
        return EncodedDataset(ids, self.lengths[:0], targets, self.encoder, type_ids=types, owner=self.owner[:0],
                              n_texts=0)


class StoredRow(str):
    """A row's text as a loader's `items` shows it (a sliding window decoded, or a row stored on disk), which
    remembers the row: `test_dl(items, with_labels=True)` (fastai's `Interpretation`) takes those rows as stored.
    Encoded again, a decoded window is not the same row ("##s" becomes "#", "#", "s"; a full window splits in
    two), and every later row of fastai's top losses showed another row's text.

    Args:
        text: the text shown.
        dataset: the dataset holding the row.
        row: its index there.
    """

    def __new__(cls, text: str, dataset: "EncodedDataset", row: int) -> "StoredRow":
        obj = super().__new__(cls, text)
        obj.dataset, obj.row = dataset, int(row)
        return obj

    def __getnewargs__(self) -> tuple:  # copy and pickle call __new__ with these
        return str(self), self.dataset, self.row


class BertDataLoader(DataLoader):
    """A fastai `DataLoader` over an `EncodedDataset` with length grouping and per-batch padding.

    Batches are `(input_ids, attention_mask[, token_type_ids][, targets])`.

    Args:
        dataset: the `EncodedDataset` to batch.
        bs: batch size (the most rows a batch holds when `batch_overhead` cuts longest-first batches).
        shuffle: length-grouped random order (training) instead of longest-first order.
        drop_last: drop the last incomplete batch.
        device: where batches go; CUDA batches are pinned and copied without blocking the host.
        keep_order: batches in row order (no sorting).
        rank, world_size: this loader's share of a distributed run (see `shard`).
        batch_overhead: longest-first batches only: cut them by `padding_aware_cuts` with this fixed cost per batch
            in tokens; "auto": `bertlearn.device.batch_overhead_for` the loader's device when it batches (prediction
            on a CPU: cut; on CUDA: every `bs` rows); None: every `bs` rows.
        same_width: pad every batch to the dataset's longest row, so batches of inputs concatenate (fastai's
            `Interpretation` gathers the inputs of a `test_dl(..., with_labels=True)` loader into one tensor).
    """

    # what a loader pickled before the options existed (a learner exported by an earlier bertlearn) batches with
    batch_overhead: int | str | None = None
    same_width: bool = False

    def __init__(self, dataset: EncodedDataset, bs: int = 32, shuffle: bool = False, drop_last: bool = False,
                 device: torch.device | None = None, *, keep_order: bool = False, rank: int = 0, world_size: int = 1,
                 batch_overhead: int | str | None = None, same_width: bool = False, **kwargs):
        kwargs.pop("num_workers", None)  # batching is a numpy slice: worker processes would only add IPC
        self.keep_order, self.rank, self.world_size = keep_order, int(rank), int(world_size)
        self.same_width = bool(same_width)
        if not (batch_overhead is None or batch_overhead == "auto"
                or (isinstance(batch_overhead, int) and batch_overhead >= 0)):
            raise DataError(f"batch_overhead={batch_overhead!r}: pass a whole number of tokens >= 0, 'auto' (the "
                            "device's, bertlearn.device.batch_overhead_for) or None (every bs rows)")
        self.batch_overhead = batch_overhead
        super().__init__(dataset, bs=bs, shuffle=shuffle, drop_last=drop_last, device=device, num_workers=0,
                         **kwargs)

    def new(self, dataset: Any = None, cls: Any = None, **kwargs: Any) -> "BertDataLoader":
        """fastai's `new` (a copy with some options changed), keeping `batch_overhead` unless it is given.

        Args:
            dataset: the dataset of the copy (default: this one's).
            cls: the class of the copy (default: this one's).
            **kwargs: options to change.
        """
        kwargs.setdefault("batch_overhead", self.batch_overhead)
        kwargs.setdefault("same_width", self.same_width)
        return super().new(dataset, cls, **kwargs)

    def to_detach(self, b: Any, cpu: bool = True, gather: bool = True) -> Any:
        """fastai's `to_detach` (what `learn.to_detach` calls), without the per-batch gather across ranks on a
        validation shard: the shards differ by a row between ranks, which fastai's gather of equal shapes cannot
        take; `bertlearn.distributed.gather_fastai_metrics` gathers the metrics once, whole.

        Args:
            b: tensors (nested) to detach.
            cpu: move them to the CPU.
            gather: gather them across ranks (not on a validation shard).
        """
        from fastai.torch_core import to_detach
        return to_detach(b, cpu=cpu, gather=gather and not (self.world_size > 1 and not self.shuffle))

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
            from ..distributed import shared_seed
            seed = shared_seed(self.rng.getrandbits(64))
            order = self._length_grouped_order(self.dataset.lengths, np.random.default_rng(seed),
                                               bs=self.bs * self.world_size)
            step = self.bs * self.world_size
            out, self._global_rows, self._repeats = [], [], []
            for start in range(0, len(order), step):
                rows = order[start:start + step]
                real = len(rows)
                if real < self.world_size:
                    rows = np.resize(rows, self.world_size)  # a tiny last batch: repeat rows so every rank steps
                out.append(np.array_split(rows, self.world_size)[self.rank])
                # the global batch is its real rows; a rank holding a repeat weighs 0 (bertlearn.distributed)
                self._global_rows.append(real)
                self._repeats.append(self.rank >= real)
            return out
        order = np.asarray(self.get_idxs(), dtype=np.int64)
        overhead = self._overhead()
        if overhead is not None:
            cuts = padding_aware_cuts(self.dataset.lengths[order], self.bs, overhead)
            return [order[a:b] for a, b in zip(cuts[:-1], cuts[1:])]
        stop = len(order) - (len(order) % self.bs if self.drop_last and self.world_size == 1 else 0)
        return [order[i:i + self.bs] for i in range(0, stop, self.bs)]

    def _overhead(self) -> int | None:
        # only a single process's longest-first pass is cut: training, kept order and shards batch every bs rows
        if self.batch_overhead is None or self.shuffle or self.keep_order or self.drop_last or self.world_size > 1:
            return None
        return batch_overhead_for(self.device) if self.batch_overhead == "auto" else int(self.batch_overhead)

    def __len__(self) -> int:
        if self._overhead() is not None:
            return len(self._batches())
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
        `Interpretation` does this). Rows cut from a longer text by a sliding window (or stored on disk without
        their texts) show the row decoded, as a `StoredRow` that `test_dl` takes as stored. A sentence pair's text
        is its `(text_a, text_b)` tuple, as stored. A single-label target is the label's name (an index is
        ambiguous where labels are numbers: ratings '1' to '5'), a multi-label one its 0/1 row, a regression one
        its value."""
        ds = self.dataset
        texts = ds.texts if ds.texts is not None and len(ds.texts) == len(ds) else \
            [StoredRow(self.dataset.encoder.tokenizer.decode(ds.ids[i, :ds.lengths[i]].tolist(),
                                                             skip_special_tokens=True), ds, i)
             for i in range(len(ds))]
        labels = getattr(ds.encoder, "labels", None)
        if ds.targets is None:
            targets = [None] * len(ds)
        elif getattr(ds.encoder, "problem_type", None) == "single_label_classification" and labels:
            targets = [labels[int(t)] for t in np.asarray(ds.targets).tolist()]
        else:
            targets = ds.targets
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
        longest = int((ds.lengths if self.same_width else lengths).max())
        # on a GPU, widths that are multiples of 8 suit tensor cores (never past maxlen: the position table may
        # end there); a CPU only pays for the extra tokens
        multiple = PAD_MULTIPLE if self.device is not None and self.device.type == "cuda" else 1
        width = min(_round_up(longest, multiple), max(longest, ds.encoder.maxlen))
        cols = np.arange(width)[None, :]
        if getattr(ds.encoder, "pad_left", False):
            # each row's tokens end at the right edge, as the tokenizer pads: a classifier that reads the last
            # position (XLNet's) reads the row's own last token, not a pad
            src = cols - (width - lengths)[:, None]
            real = src >= 0
            take = np.maximum(src, 0)
            ids = np.where(real, np.take_along_axis(ds.ids[idx, :width].astype(np.int64), take, 1), ds.encoder.pad_id)
            batch = [torch.from_numpy(ids), torch.from_numpy(real.astype(np.int64))]
            if ds.type_ids is not None:
                types = np.take_along_axis(ds.type_ids[idx, :width].astype(np.int64), take, 1)
                batch.append(torch.from_numpy(np.where(real, types, 0)))
        else:
            batch = [torch.from_numpy(ds.ids[idx, :width].astype(np.int64)),
                     torch.from_numpy((cols < lengths[:, None]).astype(np.int64))]
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
        self._global_rows = self._repeats = None
        batches = self._batches()
        sizes, repeats = self._global_rows, self._repeats
        for k, idx in enumerate(batches):
            # rows of the global batch this one is a rank's share of: what DDP counts and weighs steps by
            # a rank's share of rank::world evaluation rows has no global batch: None (DDP then counts nothing new)
            self.global_rows = sizes[k] if sizes is not None else (len(idx) if self.world_size == 1 else None)
            self.repeats_rows = bool(repeats[k]) if repeats is not None else False
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
            # a sliding window shows its whole text; a pair both texts, around the separator the model reads
            df["text"] = [_shown_text(t) for t in ds.texts[ds.owner[idx]]]
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
        df["prediction"] = decode_targets(torch.as_tensor(out)[:max_n].cpu(), self.dataset.encoder)
        display_frame(df)
        return df

    def _pre_show_batch(self, b: tuple, max_n: int = 9) -> tuple:
        # fastai's Interpretation.plot_top_losses calls this twice (with targets, then with predictions) and
        # dispatches `plot_top_losses` on the type of the first value returned
        n = self._n_inp
        df = batch_to_frame(tuple(b[:n]), self.dataset.encoder, max_n=max_n)
        labels = decode_targets(b[n][:max_n].cpu(), self.dataset.encoder) if len(b) > n else [None] * len(df)
        rows = [(text, *([None] * (n - 1)), label) for text, label in zip(df["text"], labels)]
        return TextInputs(df["text"].tolist()), labels, L(rows)


def _shown_text(text: Any) -> str:
    """A stored text as shown: a sentence pair's `(text_a, text_b)` as "text_a [SEP] text_b" (for reading only:
    the pair itself stays a tuple), anything else as its string.

    Args:
        text: a dataset's stored text or pair.
    """
    return " [SEP] ".join(map(str, text)) if isinstance(text, tuple) else str(text)


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


def decode_targets(y: torch.Tensor, encoder: TextEncoder) -> list:
    """Class indices, multi-hot rows or regression values as readable labels.

    Args:
        y: targets or decoded predictions.
        encoder: the `TextEncoder` with the labels and task.
    """
    if encoder.multi_label:
        return [";".join(l for l, on in zip(encoder.labels, row) if on > 0.5) for row in y.float().tolist()]
    if encoder.regression:
        return [round(float(v), 4) for v in y.reshape(-1).tolist()]
    return [encoder.labels[int(i)] for i in y.reshape(-1).tolist()]


def batch_to_frame(b: tuple, encoder: TextEncoder, *, max_n: int = 9) -> pd.DataFrame:
    """Decode the first `max_n` rows of a batch into a DataFrame of text and label.

    Args:
        b: a batch of this loader's form.
        encoder: the `TextEncoder` that made its ids.
        max_n: how many rows.
    """
    ids, mask = b[0][:max_n].cpu(), b[1][:max_n].cpu()
    texts = [encoder.tokenizer.decode(row[m.bool()].tolist(), skip_special_tokens=not encoder.pairs)
             for row, m in zip(ids, mask)]
    out = {"text": texts}
    n_inputs = 3 if encoder.with_token_types else 2
    if len(b) > n_inputs:
        out[encoder.labels[0] if encoder.regression else "label"] = decode_targets(b[-1][:max_n].cpu(), encoder)
    return pd.DataFrame(out)
