"""Token-classification data: tagged sentences become fastai batches of sub-word ids with a tag per sub-word.

`TagEncoder` cuts each sentence's words into sub-words (one batched call of the fast tokenizer with
`is_split_into_words`); a word's first piece carries its tag and the others are left out of the loss (-100), unless
`label_all_tokens`. A sentence longer than `maxlen` is split, at word boundaries, into windows that each fit: no word
is ever dropped, and every word's first piece lies in exactly one window, so each word gets one prediction. A word the
tokenizer turns into nothing (a lone control or zero-width character) is encoded as the unknown token, for the same
reason. Rows are stored ragged and batched by the classifier's length-grouping loader; tags pad with -100.
"""

from __future__ import annotations

import logging
import random
import time
import warnings
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import pandas as pd
import torch
from fastai.data.transforms import CategoryMap
from seqeval.metrics.sequence_labeling import get_entities

from ..compat import note_no_effect, one_setting
from ..device import resolve_device
from ..distributed import multi_gpu_without_effect
from ..errors import DataError, user_stacklevel
from .bunch import BertDataBunch
from .conll import (SCHEMES, TaggedSentences, check_scheme, detect_scheme, entity_type, labels_for, read_conll,
                    read_jsonl, read_tag_file, sentences_from_df, tag_prefix, to_seqeval)
from .encode import save_tokenizer_as_used, tokenizer_within, warn_unfollowed_padding
from .frames import holdout_order, holdout_share, positive_int
from .loader import BertDataLoader, EncodedDataset, display_frame
from .store import RaggedRows

__all__ = ["TOKEN_CLASSIFICATION", "IGNORE_INDEX", "word_pieces", "tokenizer_for_words", "TagEncoder",
           "TaggedDataset", "TaggedDataLoader", "BertNERDataBunch", "word_lists"]

# fast-bert's cache flags, which tagged data has nothing to act on
_NO_CACHE_WHY = {"clear_cache": "tagged data is encoded in memory each time (no cache to clear)",
                 "no_cache": "tagged data is encoded in memory each time (nothing is cached)"}

_log = logging.getLogger(__name__)

TOKEN_CLASSIFICATION = "token_classification"
IGNORE_INDEX = -100  # PyTorch's cross-entropy default: positions with this target add nothing to the loss


def _splits_like_text(tokenizer: Any) -> bool:
    # the pieces of a word after the first, encoded from pre-split words and from the words in a text
    try:
        split = tokenizer([["the", "word"]], is_split_into_words=True, add_special_tokens=False)
    except Exception:  # noqa: BLE001 - transformers < 5 refused pre-split words without add_prefix_space
        return False
    raw = tokenizer(["the word"], add_special_tokens=False)
    return ([i for i, w in zip(split["input_ids"][0], split.word_ids(0)) if w == 1] ==
            [i for i, w in zip(raw["input_ids"][0], raw.word_ids(0)) if w == 1])


def word_pieces(tokenizer: Any, words: Sequence[Sequence[str]]) -> list[list[list[int]]]:
    """Each word's sub-word ids, per sentence, as the tokenizer encodes pre-split words (an empty list for a word it
    drops).

    Args:
        tokenizer: a fast tokenizer.
        words: one list of words per sentence.
    """
    enc = tokenizer([list(w) for w in words], is_split_into_words=True, add_special_tokens=False)
    out = []
    for i, sent in enumerate(words):
        per_word: list[list[int]] = [[] for _ in sent]
        for tid, wid in zip(enc["input_ids"][i], enc.word_ids(i)):
            if wid is not None:
                per_word[wid].append(tid)
        out.append(per_word)
    return out


def tokenizer_for_words(tokenizer: Any) -> Any:
    """`tokenizer`, or a copy that encodes pre-split words as it encodes them in a text. A byte-level BPE tokenizer
    (RoBERTa, GPT-2 style) loaded without `add_prefix_space` encodes pre-split words without the space mark their
    words carry in a text ("word" against "Ġword"): a model would fine-tune on pieces unlike those it was pretrained
    on. The copy adds the mark (`add_prefix_space=True`, as Hugging Face's token-classification examples load it)
    and is saved with the model; the caller's tokenizer is left as it was, and the change is said. Where no copy can
    be made to, that is said, and training goes on with the tokenizer's own pieces (predictions read raw texts as
    the same pre-split words, so they stay consistent with training).

    Args:
        tokenizer: a fast tokenizer.
    """
    if _splits_like_text(tokenizer):
        return tokenizer
    name = type(tokenizer).__name__
    fixed = _with_prefix_space(tokenizer)
    if fixed is not None:
        warnings.warn(f"{name} was loaded with add_prefix_space=False, which encodes pre-split words without the "
                      "space mark their words carry in a text; token classification uses a copy with "
                      "add_prefix_space=True (saved with the model; your tokenizer object is unchanged). Load it "
                      "with add_prefix_space=True to say so yourself", stacklevel=user_stacklevel())
        return fixed
    warnings.warn(f"{name} encodes pre-split words unlike the same words in a text, and no copy of it could be made "
                  "that does not (its pre-tokenizer has no add_prefix_space to set): the model fine-tunes on other "
                  "pieces than those of running text it was pretrained on. Predictions read texts as the same "
                  "pre-split words, so they match training; a tokenizer that encodes words as text may score better",
                  stacklevel=user_stacklevel())
    return tokenizer


def _with_prefix_space(tokenizer: Any) -> Any:
    # a copy of `tokenizer` with add_prefix_space=True that encodes pre-split words as text, or None
    import copy
    import tempfile
    if getattr(tokenizer, "add_prefix_space", None) is False:  # classes that build their pre-tokenizer from it
        with tempfile.TemporaryDirectory() as folder:
            tokenizer.save_pretrained(folder)
            fixed = type(tokenizer).from_pretrained(folder, add_prefix_space=True)
        if _splits_like_text(fixed):
            return fixed
    # a generic tokenizer (tokenizer.json alone) keeps the pre-tokenizer it was saved with: set the option there
    fixed = copy.deepcopy(tokenizer)
    pre = getattr(getattr(fixed, "backend_tokenizer", None), "pre_tokenizer", None)
    if pre is None or not hasattr(pre, "add_prefix_space"):
        return None
    pre.add_prefix_space = True
    post = fixed.backend_tokenizer.post_processor  # RoBERTa's trims offsets by it: the first word would lose a letter
    if post is not None and hasattr(post, "add_prefix_space"):
        post.add_prefix_space = True
    if hasattr(fixed, "add_prefix_space"):
        fixed.add_prefix_space = True
    return fixed if _splits_like_text(fixed) else None


class TagEncoder:
    """How words become model inputs and tags become targets; saved with the model so prediction encodes alike.

    Args:
        tokenizer: a Hugging Face fast tokenizer.
        maxlen: tokens per model input, special tokens included.
        labels: the tags, in output order.
        scheme: the tag scheme ("IOB1", "IOB2", "BIOES", "BILOU", "IO").
        label_all_tokens: every piece of a word carries its tag (B- turned into I- after the first piece), not only
            the first; predictions and scores still read each word's first piece.
    """

    problem_type = TOKEN_CLASSIFICATION
    pairs = multi_label = regression = with_token_types = False

    def __init__(self, tokenizer: Any, maxlen: int, labels: Sequence[str], *, scheme: str = "IOB2",
                 label_all_tokens: bool = False):
        if scheme not in SCHEMES:
            raise DataError(f"tag_scheme={scheme!r} is not one of {list(SCHEMES)} (or 'auto' to detect it)")
        if not getattr(tokenizer, "is_fast", False):
            raise DataError(f"token classification needs a fast tokenizer (word ids and character offsets); "
                            f"{type(tokenizer).__name__} is not one: load it with AutoTokenizer(..., use_fast=True)")
        self.tokenizer, self.maxlen, self.labels = tokenizer, int(maxlen), [str(l) for l in labels]
        self.scheme, self.label_all_tokens = scheme, bool(label_all_tokens)
        self.prefix, self.suffix = _special_tokens(tokenizer)
        self.lead, self.n_special = len(self.prefix), len(self.prefix) + len(self.suffix)
        if self.maxlen - self.n_special < 1:
            raise DataError(f"maxlen={maxlen} leaves no room for words beside the {self.n_special} special tokens; "
                            f"pass maxlen >= {self.n_special + 1} (e.g. 128)")

    @property
    def pad_id(self) -> int:
        """The id padding is filled with (0 where the tokenizer has no pad token)."""
        pad = self.tokenizer.pad_token_id
        return 0 if pad is None else int(pad)

    @property
    def budget(self) -> int:
        """Sub-words per window, special tokens left out."""
        return self.maxlen - self.n_special

    def save_tokenizer(self, folder: str | Path) -> None:
        """Save the tokenizer into `folder` (a save or an ONNX export), as `TextEncoder.save_tokenizer` does.

        Args:
            folder: the model folder being written.
        """
        save_tokenizer_as_used(self.tokenizer, folder, maxlen=self.maxlen)

    def settings(self) -> dict:
        """What `save_model` writes to bertlearn.json to rebuild this encoder."""
        return {"maxlen": self.maxlen, "labels": self.labels, "problem_type": TOKEN_CLASSIFICATION,
                "tag_scheme": self.scheme, "label_all_tokens": self.label_all_tokens}

    @classmethod
    def from_settings(cls, tokenizer: Any, settings: dict) -> "TagEncoder":
        """Rebuild an encoder from `settings()` output.

        Args:
            tokenizer: the tokenizer the settings were saved with.
            settings: what `settings()` returned.
        """
        return cls(tokenizer, settings["maxlen"], settings["labels"], scheme=settings.get("tag_scheme", "IOB2"),
                   label_all_tokens=settings.get("label_all_tokens", False))

    def pieces(self, words: Sequence[Sequence[str]]) -> list[list[list[int]]]:
        """Each word's sub-word ids, per sentence (a word the tokenizer drops becomes the unknown token).

        Args:
            words: one list of words per sentence.
        """
        tok = self.tokenizer
        out = word_pieces(tok, words)
        empty = [w for sent, ps in zip(words, out) for w, p in zip(sent, ps) if not p]
        unk = tok.unk_token_id if tok.unk_token_id is not None else self.pad_id
        out = [[p if p else [unk] for p in ps] for ps in out]
        if empty:
            warnings.warn(f"{len(empty)} word{'s' if len(empty) > 1 else ''} (e.g. {empty[0]!r}) became no sub-word at "
                          f"all (the tokenizer drops them); each is encoded as the unknown token "
                          f"{tok.unk_token!r} so that it keeps its tag and gets a prediction", stacklevel=user_stacklevel())
        return out

    def windows(self, n_pieces: Sequence[int]) -> list[tuple[int, int]]:
        """Split a sentence's words into windows of at most `budget` sub-words: (first word, end word) pairs. A
        word longer than a whole window gets a window of its own, its pieces cut to fit (its first piece stays).

        Args:
            n_pieces: the number of sub-words of each word.
        """
        out, start, used = [], 0, 0
        for j, n in enumerate(n_pieces):
            n = min(n, self.budget)
            if used + n > self.budget and j > start:
                out.append((start, j))
                start, used = j, 0
            used += n
        out.append((start, len(n_pieces)))
        return out

    def dataset(self, words: Sequence[Sequence[str]], tags: Sequence[Sequence[int]] | None = None, *,
                texts: Sequence[str] | None = None, spans: Sequence[Any] | None = None) -> "TaggedDataset":
        """Encode sentences (and their tag ids) into a `TaggedDataset`, one row per window.

        Args:
            words: one list of words per sentence.
            tags: one list of tag ids per sentence, or None.
            texts: the raw texts the words were cut from, kept for showing entities.
            spans: each word's character offsets into its text.
        """
        return self.dataset_from_pieces(self.pieces(words), words, tags, texts=texts, spans=spans)

    def dataset_from_pieces(self, pieces: Sequence[Sequence[Sequence[int]]], words: Sequence[Sequence[str]],
                            tags: Sequence[Sequence[int]] | None = None, *, texts: Sequence[str] | None = None,
                            spans: Sequence[Any] | None = None) -> "TaggedDataset":
        """A `TaggedDataset` of sentences already cut into sub-word ids (raw texts are, at prediction).

        Args:
            pieces: per sentence, each word's sub-word ids.
            words: per sentence, its words (for showing).
            tags: one list of tag ids per sentence, or None.
            texts, spans: raw texts and word offsets, kept for showing entities.
        """
        rows, targets, word_pos, owner, first_word = [], [], [], [], []
        lead = self.lead
        long = [words[i][j] for i, ws in enumerate(pieces) for j, p in enumerate(ws) if len(p) > self.budget]
        if long:
            warnings.warn(f"{len(long)} word{'s' if len(long) > 1 else ''} (e.g. {long[0][:40]!r}) have more sub-words "
                          f"than the {self.budget} a window holds at maxlen={self.maxlen}; each gets a window of its "
                          "own, cut to fit (its first piece, which carries its tag and prediction, stays)",
                          stacklevel=user_stacklevel())
        for i, per_word in enumerate(pieces):
            for start, end in self.windows([len(p) for p in per_word]):
                ids, labels, positions = [], [], []
                for j in range(start, end):
                    piece = list(per_word[j][:self.budget])
                    positions.append(lead + len(ids))
                    ids.extend(piece)
                    if tags is not None:
                        labels.append(int(tags[i][j]))
                        labels.extend([self._continued(int(tags[i][j]))] * (len(piece) - 1))
                rows.append(self.prefix + ids + self.suffix)
                if tags is not None:
                    row = [IGNORE_INDEX] * len(rows[-1])
                    row[lead:lead + len(labels)] = labels
                    targets.append(row)
                word_pos.append(positions)
                owner.append(i)
                first_word.append(start)
        ids = RaggedRows.from_lists(rows, np.int32, fill=self.pad_id)
        return TaggedDataset(
            ids, ids.lengths.astype(np.int32),
            RaggedRows.from_lists(targets, np.int16, fill=IGNORE_INDEX) if tags is not None else None, self,
            word_pos=RaggedRows.from_lists(word_pos, np.int32), owner=np.asarray(owner, dtype=np.int64),
            first_word=np.asarray(first_word, dtype=np.int64), words=[list(w) for w in words],
            word_tags=[list(map(int, t)) for t in tags] if tags is not None else None,
            texts=list(texts) if texts is not None else None, spans=list(spans) if spans is not None else None)

    def _continued(self, tag: int) -> int:
        # label_all_tokens: the pieces after a word's first carry its tag, an opening B- as I- (where the tag set has it)
        if not self.label_all_tokens:
            return IGNORE_INDEX
        name = self.labels[tag]
        inside = "I" + name[1:]  # the tag's own separator: B-PER continues as I-PER, B_PER as I_PER
        if tag_prefix(name) in ("B", "S", "U") and inside in self.labels:
            return self.labels.index(inside)
        return tag


def _special_tokens(tokenizer: Any) -> tuple[list[int], list[int]]:
    # the ids the tokenizer puts before and after a text ([CLS] ... [SEP]; <s> ... </s>), read off one encoding
    plain = tokenizer("a", add_special_tokens=False)["input_ids"]
    full = tokenizer("a", add_special_tokens=True)["input_ids"]
    for k in range(len(full) - len(plain) + 1):
        if full[k:k + len(plain)] == plain:
            return list(full[:k]), list(full[k + len(plain):])
    raise DataError(f"could not tell which special tokens {type(tokenizer).__name__} adds around a text (its "
                    "encoding of 'a' with special tokens does not contain the one without); token classification "
                    "needs a tokenizer that wraps a text in fixed special tokens, as BERT-style tokenizers do")


class TaggedDataset(EncodedDataset):
    """Windows of tagged sentences as ragged id rows, with each row's targets and where its words' first pieces lie.

    Args:
        ids, lengths, encoder: as for `EncodedDataset`.
        targets: a `RaggedRows` of each row's per-token tag ids (-100: left out of the loss), or None.
        word_pos: per row, the position of each of its words' first piece.
        owner: per row, the sentence it came from.
        first_word: per row, the index of its first word within the sentence.
        words: the sentences' words.
        word_tags: the sentences' tag ids, or None.
        texts, spans: raw texts and word offsets (JSONL input), else None.
    """

    def __init__(self, ids: Any, lengths: np.ndarray, targets: RaggedRows | None, encoder: TagEncoder, *,
                 word_pos: RaggedRows, owner: np.ndarray, first_word: np.ndarray, words: list[list[str]],
                 word_tags: list[list[int]] | None, texts: list[str] | None = None, spans: list | None = None):
        super().__init__(ids, lengths, targets, encoder, owner=owner, n_texts=len(words), texts=texts)
        self.word_pos, self.first_word, self.words, self.word_tags = word_pos, first_word, words, word_tags
        self.spans = spans

    def clip(self, maxlen: int) -> None:
        """Refuse rows longer than the model takes: cutting them would drop words.

        Args:
            maxlen: the longest row the model takes.
        """
        if int(self.lengths.max(initial=0)) > maxlen:
            raise DataError(f"these sentences were cut into windows of up to {int(self.lengths.max())} tokens but the "
                            f"model takes {maxlen}; build the BertNERDataBunch with maxlen<={maxlen}")

    def new_empty(self) -> "TaggedDataset":
        """An empty dataset with the same encoder: what `learner.export` keeps of the data."""
        return self.encoder.dataset([], [] if self.targets is not None else None)

    def word_tags_of(self, rows: np.ndarray, token_tags: np.ndarray) -> list[list[int]]:
        """Per sentence, one tag id per word, read at each word's first piece from per-row token tags; -1 for a word
        no row of `rows` holds.

        Args:
            rows: the row index of each line of `token_tags`.
            token_tags: (len(rows), width) tag ids per token.
        """
        out: list[list[int]] = [[-1] * len(w) for w in self.words]
        for line, r in enumerate(rows):
            pos = np.asarray(self.word_pos[int(r)], dtype=np.int64)
            start = int(self.first_word[r])
            out[int(self.owner[r])][start:start + len(pos)] = token_tags[line, pos].tolist()
        return out


class TaggedDataLoader(BertDataLoader):
    """The classifier's loader (length grouping, per-batch padding, pinned copies) for `TaggedDataset`s: batches
    are `(input_ids, attention_mask, tags)`, the tags padded with -100. `current_rows` holds the dataset rows of the
    batch last made, which the entity metrics read."""

    current_rows: np.ndarray | None = None

    @property
    def _n_inp(self) -> int:
        return 2

    @property
    def vocab(self) -> CategoryMap:
        return CategoryMap(self.dataset.encoder.labels, sort=False)

    def create_batch(self, b: list[int]) -> tuple[torch.Tensor, ...]:
        """The batch's tensors (ids, attention mask, tags), padded to its longest row (the dataset's with `same_width`).

        Args:
            b: the row indices of the batch.
        """
        ds, idx = self.dataset, np.asarray(b, dtype=np.int64)
        self.current_rows = idx
        lengths = ds.lengths[idx]
        width = int((ds.lengths if self.same_width else lengths).max())
        if self.device is not None and self.device.type == "cuda":
            width = min(-(-width // 8) * 8, max(width, ds.encoder.maxlen))
        batch = [torch.from_numpy(ds.ids[idx, :width].astype(np.int64)),
                 torch.from_numpy((np.arange(width)[None, :] < lengths[:, None]).astype(np.int64))]
        if ds.targets is not None:
            batch.append(torch.from_numpy(ds.targets[idx, :width].astype(np.int64)))
        if self.device is not None and self.device.type == "cuda":
            batch = [t.pin_memory() for t in batch]
        return tuple(batch)

    def show_batch(self, b: Any = None, max_n: int = 9, **kwargs: Any) -> None:
        """Print (or display in a notebook) the sentences of one batch, each tagged word as `word/TAG`.

        Args:
            b: ignored when given (a batch holds sub-words; the sentences show their words).
            max_n: how many rows.
        """
        display_frame(self.frame(max_n=max_n))

    def frame(self, max_n: int = 9) -> pd.DataFrame:
        """The first batch's windows as a frame: the words with their tags, and how many entities each holds.

        Args:
            max_n: how many rows.
        """
        ds = self.dataset
        idx = next(iter(self._batches()), np.zeros(0, np.int64))[:max_n]
        labels = ds.encoder.labels
        texts, counts = [], []
        for r in idx:
            i, start = int(ds.owner[r]), int(ds.first_word[r])
            words = ds.words[i][start:start + len(ds.word_pos[int(r)])]
            tags = [labels[t] for t in ds.word_tags[i][start:start + len(words)]] if ds.word_tags else ["O"] * len(words)
            texts.append(" ".join(w if t == "O" else f"{w}/{t}" for w, t in zip(words, tags)))
            counts.append(len(get_entities([to_seqeval(t) for t in tags])))
        return pd.DataFrame({"text": texts, "entities": counts})


class BertNERDataBunch(BertDataBunch):
    """fastai `DataLoaders` of tagged sentences for token classification (NER).

    fast-bert's call `BertNERDataBunch(data_dir, tokenizer, train_file="train.txt", val_file="val.txt",
    test_file=None, label_file="labels.txt", batch_size_per_gpu=16, max_seq_length=512, ...)` reads CoNLL files
    (see `from_conll`); `from_jsonl` reads doccano exports, `from_df` frames of word and tag lists.

    Args:
        data_dir: folder holding the files.
        tokenizer: a tokenizer object, a hub name or folder, or None for the packaged default model's.
        train_file, val_file: CoNLL files in `data_dir`.
        test_file: a CoNLL file of sentences to predict later (its tags are ignored), or None.
        label_file: the tag list (one per line) in `data_dir`, or None to take the tags of the training file.
        batch_size_per_gpu / bs: batch size; max_seq_length / maxlen: tokens per model input.
        multi_gpu, backend, model_type, use_fast_tokenizer, custom_sampler: fast-bert's; accepted, no effect (named
            once in a `FastBertCompatWarning`).
        logger: a `logging.Logger` for progress messages.
        clear_cache, no_cache: fast-bert's cache flags; tagged data is not cached (encoding wnut17 takes ~1 s), so
            they have no effect.
        **kwargs: what `from_conll` takes (tag_scheme, delimiter, label_all_tokens, seed, device...).
    """

    @classmethod
    def _from_fast_bert_args(cls, data_dir: str | Path, tokenizer: Any = None, train_file: str = "train.txt",
                             val_file: str = "val.txt", test_file: str | None = None,
                             label_file: str | None = "labels.txt", batch_size_per_gpu: int | None = None,
                             max_seq_length: int | None = None, multi_gpu: bool = False, backend: str | None = None,
                             model_type: str | None = None, logger: logging.Logger | None = None,
                             clear_cache: bool = False, no_cache: bool = False, use_fast_tokenizer: bool = True,
                             custom_sampler: Any = None, *, bs: int | None = None, maxlen: int | None = None,
                             **kwargs: Any) -> "BertNERDataBunch":
        _note_fast_bert_flags("BertNERDataBunch", {
            "backend": backend, "model_type": model_type, "custom_sampler": custom_sampler, "clear_cache": clear_cache,
            "no_cache": no_cache, "use_fast_tokenizer": use_fast_tokenizer, "multi_gpu": multi_gpu})
        if train_file is None or val_file is None:
            raise DataError(f"train_file={train_file!r}, val_file={val_file!r}: BertNERDataBunch trains on a training "
                            "and a validation file in data_dir; to predict with a saved model, use "
                            "BertNERPredictor(model_dir) (fast-bert's predictor built an empty databunch here)")
        return cls.from_conll(data_dir, tokenizer, train_file=train_file, val_file=val_file, test_file=test_file,
                              label_file=label_file,
                              bs=one_setting("BertNERDataBunch", "bs", bs, "batch_size_per_gpu", batch_size_per_gpu, 16),
                              maxlen=one_setting("BertNERDataBunch", "maxlen", maxlen, "max_seq_length", max_seq_length,
                                                 512), logger=logger, **kwargs)

    @classmethod
    def from_conll(cls, data_dir: str | Path, tokenizer: Any = None, *, train_file: str = "train.txt",
                   val_file: str = "val.txt", test_file: str | None = None, label_file: str | None = None,
                   tag_scheme: str = "auto", label_all_tokens: bool = False, bs: int = 16, val_bs: int | None = None,
                   maxlen: int = 512, seed: int | None = None, device: torch.device | str | None = None,
                   logger: logging.Logger | None = None, encoding: str = "utf-8",
                   delimiter: str | None = None) -> "BertNERDataBunch":
        """Read CoNLL-style files (a word and its tag per line, tag in the last column) into a `BertNERDataBunch`.

        Args:
            data_dir: the folder holding the files.
            tokenizer: tokenizer object, hub name or local path; None for the packaged default model's.
            train_file, val_file: file names in `data_dir`.
            test_file: sentences to predict later (`learner.predict_tokens()` without sentences), or None.
            label_file: the tag list in `data_dir` (one per line); None: the tags of the training file.
            tag_scheme: "IOB1", "IOB2", "BIOES", "BILOU", "IO" (types without a prefix), or "auto" to detect it from
                the training file.
            label_all_tokens: every piece of a word carries its tag in the loss (see `TagEncoder`).
            bs: training batch size; val_bs: validation batch size (default 2 * bs).
            maxlen: tokens per model input (longer sentences are split into windows at word boundaries).
            seed: seeds the training order.
            device: where batches go (default: CUDA when available).
            logger: a `logging.Logger` for progress messages.
            encoding: the files' text encoding.
            delimiter: the files' column separator (default: a tab in a file where every word line holds one, so that
                a word may hold a space; else any run of whitespace).
        """
        data_dir = Path(data_dir)
        train, valid = (read_conll(data_dir / f, encoding=encoding, delimiter=delimiter)
                        for f in (train_file, val_file))
        test = read_conll(data_dir / test_file, encoding=encoding, delimiter=delimiter, tagged=False) \
            if test_file else None
        labels = read_tag_file(data_dir / label_file) if label_file else None
        return cls.from_sentences(train, valid, tokenizer, test=test, labels=labels, tag_scheme=tag_scheme,
                                  label_all_tokens=label_all_tokens, bs=bs, val_bs=val_bs, maxlen=maxlen, seed=seed,
                                  device=device, path=data_dir, logger=logger)

    @classmethod
    def from_jsonl(cls, data_dir: str | Path, file_name: str, tokenizer: Any = None, *, train_size: float = 0.8,
                   random_state: int | None = None, test_file_name: str | None = None,
                   batch_size_per_gpu: int | None = None, max_seq_length: int | None = None, bs: int | None = None,
                   maxlen: int | None = None, text_key: str = "text", labels_key: str = "labels",
                   logger: logging.Logger | None = None, **kwargs: Any) -> "BertNERDataBunch":
        """Read doccano's JSONL export (one object a line: `text` and `labels` as `[start, end, label]` character
        spans), cut the texts into words (`split_words`), tag them IOB2 and split off a validation share, as
        fast-bert's `from_jsonl` (which wrote the split to train.txt/val.txt; this one keeps it in memory).

        Args:
            data_dir: the folder holding the file.
            file_name: the JSONL file.
            tokenizer: tokenizer object, hub name or local path; None for the packaged default model's.
            train_size: the share of texts trained on; the rest validates.
            random_state: seeds that split (and the training order).
            test_file_name: a JSONL file of texts to predict later, or None.
            batch_size_per_gpu / bs, max_seq_length / maxlen: batch size and tokens per model input.
            text_key, labels_key: the keys of the text and the spans.
            logger: a `logging.Logger` for progress messages.
            **kwargs: what `from_sentences` takes (label_all_tokens, device...).
        """
        # as the constructor names them (dropping the falsy values first lost use_fast_tokenizer=False)
        _note_fast_bert_flags("BertNERDataBunch.from_jsonl", {
            k: kwargs.pop(k) for k in ("multi_gpu", "backend", "model_type", "clear_cache", "no_cache",
                                       "use_fast_tokenizer") if k in kwargs})
        data_dir = Path(data_dir)
        sents = read_jsonl(data_dir / file_name, text_key=text_key, labels_key=labels_key)
        if not 0 < train_size < 1:
            raise DataError(f"train_size={train_size!r} must be between 0 and 1 (the share of texts trained on)")
        order = holdout_order(len(sents), random_state)
        cut = int(round(len(sents) * train_size))
        if cut == 0 or cut == len(sents):
            raise DataError(f"train_size={train_size} of {len(sents)} texts leaves an empty training or validation "
                            "set; give more texts or another train_size")
        train, valid = _subset(sents, order[:cut]), _subset(sents, order[cut:])
        test = read_jsonl(data_dir / test_file_name, text_key=text_key, labels_key=labels_key, tagged=False) \
            if test_file_name else None
        return cls.from_sentences(train, valid, tokenizer, test=test, tag_scheme="IOB2",
                                  bs=one_setting("BertNERDataBunch.from_jsonl", "bs", bs, "batch_size_per_gpu",
                                                 batch_size_per_gpu, 16),
                                  maxlen=one_setting("BertNERDataBunch.from_jsonl", "maxlen", maxlen,
                                                     "max_seq_length", max_seq_length, 512),
                                  seed=kwargs.pop("seed", random_state), path=data_dir, logger=logger, **kwargs)

    @classmethod
    def from_df(cls, train_df: pd.DataFrame, valid_df: pd.DataFrame | None = None, tokenizer: Any = None, *,
                words_col: Any = "tokens", tags_col: Any = "tags", valid_pct: float | None = None,
                seed: int | None = None, path: str | Path = ".", **kwargs: Any) -> "BertNERDataBunch":
        """Frames with one sentence a row: a column of word lists and a column of tag lists (as Hugging Face
        datasets hold CoNLL-2003 and WNUT-17, tags as names).

        Args:
            train_df, valid_df: the data; with `valid_df=None`, a `valid_pct` random share of train is held out.
            tokenizer: tokenizer object, hub name or local path; None for the packaged default model's.
            words_col, tags_col: the columns of word lists and tag lists.
            valid_pct: the held-out share when `valid_df` is None (default 0.2); refused beside a `valid_df`.
            seed: seeds that split and the training order.
            path: the folder things are saved relative to.
            **kwargs: what `from_sentences` takes (labels, tag_scheme, bs, maxlen, test...).
        """
        valid_pct = holdout_share(valid_pct, None if valid_df is None else "a validation set (valid_df)")
        if valid_df is None:
            # as BertDataBunch.from_df: 1.5 was a negative slice (half the rows trained), 0 and -0.5 one row held out
            if not 0 < valid_pct < 1:
                raise DataError(f"valid_pct={valid_pct} must be between 0 and 1 when valid_df is None (e.g. 0.2, the "
                                "share held out), or pass valid_df")
            order = holdout_order(len(train_df), seed)
            cut = len(train_df) - max(1, int(round(len(train_df) * valid_pct)))
            if cut < 1:
                raise DataError(f"valid_pct={valid_pct} of {len(train_df)} rows leaves no training rows; give more "
                                "rows or a smaller valid_pct")
            train_df, valid_df = train_df.iloc[order[:cut]], train_df.iloc[order[cut:]]
        train = sentences_from_df(train_df, words_col, tags_col, source="train_df")
        valid = sentences_from_df(valid_df, words_col, tags_col, source="valid_df")
        return cls.from_sentences(train, valid, tokenizer, seed=seed, path=path, **kwargs)

    @classmethod
    def from_sentences(cls, train: TaggedSentences, valid: TaggedSentences, tokenizer: Any = None, *,
                       test: TaggedSentences | Sequence[Sequence[str]] | None = None,
                       labels: Sequence[str] | None = None, tag_scheme: str = "auto", label_all_tokens: bool = False,
                       bs: int = 16, val_bs: int | None = None, maxlen: int = 512, seed: int | None = None,
                       device: torch.device | str | None = None, path: str | Path = ".",
                       logger: logging.Logger | None = None) -> "BertNERDataBunch":
        """The databunch of tagged sentences, as every factory ends: check tags and scheme, encode, assemble.

        Args:
            train, valid: the tagged sentences.
            tokenizer: tokenizer object, hub name or local path; None for the packaged default model's.
            test: sentences (word lists) to predict later, or None.
            labels: the tag set in output order (default: O, then each type's tags, from train and valid).
            tag_scheme: "IOB1", "IOB2", "BIOES", "BILOU", "IO" or "auto".
            label_all_tokens: every piece of a word carries its tag in the loss.
            bs, val_bs, maxlen, seed, device, path, logger: as for `from_conll`.
        """
        bs = positive_int(bs, "bs", DataError)
        val_bs = positive_int(val_bs, "val_bs", DataError) if val_bs is not None else 2 * bs
        maxlen = positive_int(maxlen, "maxlen", DataError)
        for sents in (train, valid):
            if sents.tags is None:
                raise DataError(f"{sents.source} has no tags; training and validation sentences need one per word")
        scheme = detect_scheme(train.tags) if tag_scheme == "auto" else tag_scheme
        if labels is None:
            labels = labels_for(train.tags + valid.tags)
        for sents in (train, valid):
            check_scheme(sents, scheme, labels=labels)
        if set(labels) <= {"O"}:  # a 1-output head, whose every prediction is right: accuracy 1.0 with nothing learnt
            sources = " and ".join(dict.fromkeys((train.source, valid.source)))
            raise DataError(f"{sources}: every word is tagged O, so there are no entities to learn; tag each entity's "
                            "words (B-PER on the first, I-PER on the rest), or read the tags from where they are "
                            "(CoNLL: the last column; tags_col=, labels_key=)")
        t0 = time.perf_counter()
        tok, maxlen = tokenizer_within(tokenizer, maxlen)
        warn_unfollowed_padding(tok, pad_left=False)  # tags are read per position: rows pad on the right
        # new training only: a saved model keeps the tokenizer it was trained with, whatever its pieces
        encoder = TagEncoder(tokenizer_for_words(tok), maxlen, labels, scheme=scheme,
                             label_all_tokens=label_all_tokens)
        index = {l: i for i, l in enumerate(encoder.labels)}
        train_ds, valid_ds = ([encoder.dataset(s.words, [[index[t] for t in ts] for ts in s.tags], texts=s.texts,
                                               spans=s.spans) for s in (train, valid)])
        (logger or _log).info("tagged data: %d + %d sentences (%d + %d windows), %d tags, scheme %s, %.1f s",
                              train_ds.n_texts, valid_ds.n_texts, len(train_ds), len(valid_ds), len(labels), scheme,
                              time.perf_counter() - t0)
        loaders = [TaggedDataLoader(train_ds, bs=bs, shuffle=True), TaggedDataLoader(valid_ds, bs=val_bs)]
        if seed is not None:
            loaders[0].rng = random.Random(seed)
        if test is not None:
            words = test.words if isinstance(test, TaggedSentences) else word_lists(test, "test")
            loaders.append(TaggedDataLoader(encoder.dataset(words), bs=val_bs, batch_overhead="auto"))
        dls = cls(*loaders, path=path, device=resolve_device(device))
        dls.seed = seed  # a seeded learner built on it starts the training order over from this seed
        dls.columns, dls.weight, dls.pos_weight = None, None, None
        return dls

    @property
    def scheme(self) -> str:
        """The tag scheme: "IOB1", "IOB2", "BIOES", "BILOU" or "IO"."""
        return self.encoder.scheme

    @property
    def entity_types(self) -> list[str]:
        """The entity types the tags name, in tag order."""
        return list(dict.fromkeys(t for t in map(entity_type, self.labels) if t is not None))

    @property
    def n_inp(self) -> int:
        return 2

    def test_dl(self, test_items: Sequence[Sequence[str]], bs: int | None = None, **kwargs: Any) -> TaggedDataLoader:
        """A loader over new sentences (lists of words), encoded like the training data.

        Args:
            test_items: one list of words per sentence.
            bs: the most sentences a batch holds (default: the validation batch size; on a CPU, longest-first
                batches are cut by padding).
            **kwargs: fastai's loader options, which a tagged loader does not take: named in a TypeError.
        """
        if kwargs:
            raise TypeError(f"BertNERDataBunch.test_dl() got unexpected arguments {sorted(kwargs)}; it takes the "
                            "sentences (lists of words) and bs")
        return TaggedDataLoader(self.encoder.dataset(word_lists(test_items, "test_items")), bs=bs or self.valid.bs,
                                device=self.device, batch_overhead="auto")


def _note_fast_bert_flags(where: str, given: dict) -> None:
    # fast-bert's data flags that tagged data has no use for, named once each where they ask for something: a
    # multi_gpu a launcher does not take over, clear_cache / no_cache set, use_fast_tokenizer=False
    asked = {**given}
    if "multi_gpu" in asked and not multi_gpu_without_effect(asked["multi_gpu"]):
        del asked["multi_gpu"]
    if "use_fast_tokenizer" in asked:
        asked["use_fast_tokenizer"] = None if asked["use_fast_tokenizer"] else False
    for k in ("clear_cache", "no_cache"):
        if k in asked:
            asked[k] = asked[k] or None
    note_no_effect(where, {k: v for k, v in asked.items() if v is not None}, why=_NO_CACHE_WHY)


def word_lists(sentences: Any, arg: str) -> list[list[str]]:
    """Sentences as lists of words; raw text refused: `list("Jane runs")` made every character (spaces too) a word
    with a tag of its own.

    Args:
        sentences: one list of words per sentence.
        arg: the argument's name, as the message says it.
    """
    sentences = [sentences] if isinstance(sentences, str) else list(sentences)
    bad = [i for i, s in enumerate(sentences) if isinstance(s, str)]
    if bad:
        raise DataError(f"{arg}: items {bad[:10]} are strings, and sentences are lists of words, e.g. [['Jane', "
                        "'lives', 'in', 'Paris']] (a string would be cut into characters, one word each); split "
                        "the texts into words first, or tag raw text with learner.predict_batch(texts)")
    return [[str(w) for w in s] for s in sentences]


def _subset(sents: TaggedSentences, idx: np.ndarray) -> TaggedSentences:
    pick = lambda xs: [xs[i] for i in idx] if xs is not None else None  # noqa: E731
    return TaggedSentences(pick(sents.words), pick(sents.tags), source=sents.source, lines=pick(sents.lines) or [],
                           spans=pick(sents.spans), texts=pick(sents.texts), line_per_word=sents.line_per_word, unit=sents.unit)
