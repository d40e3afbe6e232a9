"""Masked-LM domain adaptation (ULMFiT's stage 2; fast-bert's `BertLMDataBunch` / `BertLMLearner`).

Continue the encoder's masked-language-model pretraining on unlabelled text from the target domain, save
it, and start the classifier from it: `BertLearner.from_pretrained_model(databunch, adapted_dir)`.

Masking follows Hugging Face's `DataCollatorForLanguageModeling` (15% of tokens; of those 80% [MASK],
10% a random token, 10% unchanged), redrawn every epoch for training and fixed once for validation so
validation losses are comparable across epochs. The vocabulary projection (the costly part of the LM
head: hidden size x 30k) runs only on the masked positions.

No token of the corpus is dropped: a text longer than `maxlen` becomes consecutive blocks, one row each, with the
tokenizer's own special tokens around every block; `pack=True` joins the texts and cuts them into full blocks
(fast-bert's `TextDataset`, transformers' `run_mlm` `group_texts`), keeping the shorter last block.
"""

from __future__ import annotations

import csv
import functools
import logging
import random
import re
import warnings
from pathlib import Path
from typing import Any, Iterator, Sequence

import numpy as np
import pandas as pd
import torch
import torch.nn.functional as F
from fastai.data.core import DataLoaders
from fastai.data.load import DataLoader
from torch import nn


from ..atomic import atomic_dir, atomic_file
from ..compat import note_no_effect
from ..callbacks import DeviceAvgLoss, StepAccumulation
from ..data import (BertDataBunch, BertDataLoader, EncodedDataset, RaggedRows, TextEncoder, as_texts, positive_int,
                    read_csv)
from ..data.encode import save_tokenizer_as_used
from ..data.frames import holdout_order
from ..device import resolve_device
from ..distributed import main_process_only, multi_gpu_without_effect
from ..embed import sentence_transformers_files
from ..errors import BertLearnError, DataError, ModelError, user_stacklevel
from ..learner import TaskLearner, accumulation_steps, factory_setup, prepare_model, training_callbacks
from ..model import load_error, load_pretrained, load_tokenizer, quiet_hub, resolve_pretrained
from ..saved import check_replaceable

__all__ = ["BertLMDataBunch", "BertLMLearner", "MaskedLMModel", "MaskedLMLoss", "Perplexity", "AccumulateBatches",
           "masked_positions"]

_log = logging.getLogger(__name__)


def masked_positions(labels: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """The flat indices (row * width + column) of the scored tokens of (rows, width) `labels` (-100 elsewhere),
    in row-major order, and their ids. Data-dependent in size: on a GPU the host waits for it, so the loader
    calls it on the host while making the batch.

    Args:
        labels: original ids at the masked positions, -100 elsewhere.
    """
    flat = labels.reshape(-1)
    positions = (flat != -100).nonzero().view(-1)
    return positions, flat[positions]


class MaskedLMDataLoader(BertDataLoader):
    """Batches `(masked input_ids, attention_mask, positions, targets)`: `positions` holds the flat indices
    (row * width + column) of the masked tokens and `targets` their original ids. Both are found on the host
    while the batch is made, so the model picks the masked rows with an index on the device instead of a
    boolean mask, whose output size the host would have to wait for (a device sync every step).

    Args:
        dataset: an unlabelled `EncodedDataset`.
        collator: a `transformers.DataCollatorForLanguageModeling`: training batches are masked by it as is,
            validation batches by its rule and probabilities (`mlm_probability`, `mask_replace_prob`,
            `random_replace_prob`) with draws of their own (see `seed`).
        seed: for validation, a fixed seed: every draw is a hash of (seed, row index, the token's place in its
            row), so the masks are the same every epoch whatever the batch size, the batches' order or the number
            of processes sharing the rows (DDP). None: fresh masks each epoch, drawn batch by batch by the collator
            from the loader's seeded generator.
    """

    def __init__(self, dataset: EncodedDataset, bs: int = 32, shuffle: bool = False, drop_last: bool = False,
                 device: torch.device | None = None, *, collator: Any = None, seed: int | None = None, **kwargs):
        self.collator, self.seed = collator, seed
        super().__init__(dataset, bs=bs, shuffle=shuffle, drop_last=drop_last, device=device, **kwargs)
        tok = dataset.encoder.tokenizer
        self._special = torch.as_tensor(sorted(set(tok.all_special_ids)), dtype=torch.long)

    def new(self, dataset: Any = None, cls: Any = None, **kwargs: Any) -> "MaskedLMDataLoader":
        kwargs.setdefault("collator", self.collator)
        kwargs.setdefault("seed", self.seed)
        return super().new(dataset, cls, **kwargs)

    def before_iter(self) -> None:
        super().before_iter()
        # training: masks follow fastai's seeded rng (new each epoch)
        self._gen = torch.Generator().manual_seed(self.rng.getrandbits(63))

    def create_batch(self, b: list[int]) -> tuple[torch.Tensor, ...]:
        ids, mask = BertDataLoader.create_batch(self, b)[:2]
        ids, mask = ids.clone(), mask.clone()  # pinned copies may alias; masking writes in place
        special = torch.isin(ids, self._special) | (mask == 0)
        if self.seed is None:
            self.collator.generator = self._gen
            inputs, labels = self.collator.torch_mask_tokens(ids, special_tokens_mask=special)
        else:
            inputs, labels = self._row_masks(b, ids, mask, special)
        positions, targets = masked_positions(labels)
        if self.device is not None and self.device.type == "cuda":
            positions, targets = positions.pin_memory(), targets.pin_memory()
        return inputs, mask, positions, targets

    def _row_masks(self, b: list[int], ids: torch.Tensor, mask: torch.Tensor,
                   special: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Validation masks that are each row's own: the collator's rule (mask `mlm_probability` of the tokens that
        are not special; of those, `mask_replace_prob` become the mask token, `random_replace_prob` a random token,
        the rest stay) with every draw a function of (seed, row index, the token's place in its row, draw). Drawn
        batch-wise from one generator, a row's masks depended on which rows shared its batch and on the batch's
        width, so the perplexity of the same model on the same texts moved with the batch size and the number of
        DDP processes. Nothing is kept between passes: the same draws come back, vectorized, every time."""
        c = self.collator
        rows = torch.as_tensor(np.asarray(b, dtype=np.int64))[:, None]
        place = torch.arange(ids.shape[1])[None, :] - mask.argmax(1, keepdim=True)  # left padding too
        u = _uniforms(self.seed, rows, place, 4)
        masked = (u[0] < c.mlm_probability) & ~special
        mask_p, random_p = getattr(c, "mask_replace_prob", 0.8), getattr(c, "random_replace_prob", 0.1)
        replaced = masked & (u[1] < mask_p)
        # as the collator scales it: random_replace_prob of all masked tokens, drawn among those not replaced
        randomized = masked & ~replaced & (u[2] < (random_p / (1 - mask_p) if mask_p < 1 else 0.0))
        labels = torch.where(masked, ids, torch.full_like(ids, -100))
        ids = torch.where(replaced, torch.full_like(ids, c.tokenizer.mask_token_id), ids)
        ids = torch.where(randomized, (u[3] * len(c.tokenizer)).long().clamp_max(len(c.tokenizer) - 1), ids)
        return ids, labels


def _uniforms(seed: int, rows: torch.Tensor, place: torch.Tensor, draws: int) -> torch.Tensor:
    """`draws` uniform [0, 1) numbers per (row, place), shape (draws, rows, places), each a hash (splitmix64) of
    (seed, row, place, draw): the same number for a token whatever batch it comes in.

    Args:
        seed: the loader's seed.
        rows: row indices, shape (rows, 1).
        place: each token's place in its row, shape (rows, places) or (1, places).
        draws: how many independent numbers per token.
    """
    key = ((rows * 0x1F3D5B79 + place) * draws).numpy().astype(np.uint64)
    x = key[None] + np.arange(draws, dtype=np.uint64)[:, None, None] + \
        np.uint64((seed * 0x9E3779B97F4A7C15) & 0xFFFFFFFFFFFFFFFF)
    x ^= x >> np.uint64(30)
    x *= np.uint64(0xBF58476D1CE4E5B9)
    x ^= x >> np.uint64(27)
    x *= np.uint64(0x94D049BB133111EB)
    x ^= x >> np.uint64(31)
    return torch.from_numpy((x >> np.uint64(11)).astype(np.float64) * 2.0 ** -53)


LM_FILES = ("lm_train.txt", "lm_val.txt")  # what from_raw_corpus(data_dir, ...) writes, as fast-bert did

# fast-bert's `BertLMDataBunch.from_raw_corpus` arguments, in its order, and bertlearn's own order
FAST_BERT_LM_ORDER = ("data_dir", "text_list", "tokenizer", "batch_size_per_gpu", "max_seq_length", "multi_gpu",
                      "test_size", "model_type", "logger", "clear_cache", "no_cache")
LM_OWN_ORDER = ("corpus", "tokenizer", "bs", "maxlen", "mlm_probability")
LM_ALIASES = {"batch_size_per_gpu": "bs", "max_seq_length": "maxlen", "test_size": "valid_pct"}  # fast-bert's: own


def _lm_positions(factory: Any) -> Any:
    """Name `from_raw_corpus`'s positional arguments by the caller's order: fast-bert's (a folder, then a list of
    texts) or bertlearn's own; refuse a value given twice, by position and by name or under both of its names.
    Without it fast-bert's `(data_dir, text_list, tokenizer, 16)` set maxlen=16 and left the batch size at 32."""
    @functools.wraps(factory)
    def call(cls: Any, *args: Any, **kwargs: Any) -> Any:
        fast = bool(args) and isinstance(args[0], (str, Path)) and (
            (len(args) > 1 and isinstance(args[1], (list, tuple, pd.Series))) or "text_list" in kwargs)
        order = FAST_BERT_LM_ORDER if fast else LM_OWN_ORDER
        if len(args) > len(order):
            raise BertLearnError(f"from_raw_corpus takes at most {len(order)} arguments by position "
                                 f"({'fast-bert' if fast else 'its own'} order: {', '.join(order)}), got {len(args)}; "
                                 "pass the others by name")
        named = dict(zip(order, args))
        same = {**LM_ALIASES, **{own: theirs for theirs, own in LM_ALIASES.items()}}
        for k, v in [*named.items(), *kwargs.items()]:
            for other in (k, same.get(k)):
                if other in kwargs and (k in named or other != k):
                    how = f"by position ({'fast-bert' if fast else 'its own'} order)" if k in named else "by name"
                    raise BertLearnError(f"from_raw_corpus: {k}={v!r} given {how} and {other}={kwargs[other]!r} by "
                                         f"name{'' if other == k else ' (the same setting)'}; give it once")
        return factory(cls, **named, **kwargs) if fast else factory(cls, *args, **kwargs)
    return call


class BertLMDataBunch(BertDataBunch):
    """fastai `DataLoaders` of unlabelled texts for masked-LM training. Build it with `from_raw_corpus`.

    fast-bert's `BertLMDataBunch(data_dir, tokenizer, batch_size_per_gpu=..., max_seq_length=..., ...)` works too:
    it reads the `lm_train.txt` and `lm_val.txt` (one text a line) that `from_raw_corpus(data_dir, texts, ...)`
    wrote there, and takes the rest of `from_raw_corpus`'s options.

    Args:
        *args, **kwargs: fastai's `(train_dl, valid_dl, path=, device=)`, which stores the loaders, or fast-bert's
            `(data_dir, tokenizer, batch_size_per_gpu=..., max_seq_length=..., ...)`.
    """

    # every token of the corpus is in one block: cutting the blocks to a model's shorter position limit would drop
    # each long block's tail, so `prepare_model` refuses a maxlen above the limit instead
    keeps_every_token = True

    def __init__(self, *args: Any, **kwargs: Any):
        if (not args and "data_dir" not in kwargs) or (args and isinstance(args[0], DataLoader)):
            DataLoaders.__init__(self, *args, **kwargs)  # fastai's own form: store the loaders
            return
        built = type(self)._from_lm_files(*args, **kwargs)
        self.__dict__.update(built.__dict__)

    @classmethod
    def _from_lm_files(cls, data_dir: str | Path, tokenizer: Any = None, **kwargs: Any) -> "BertLMDataBunch":
        data_dir = Path(data_dir)
        missing = [f for f in LM_FILES if not (data_dir / f).is_file()]
        if missing:
            raise DataError(f"BertLMDataBunch(data_dir={str(data_dir)!r}) reads {list(LM_FILES)}, which "
                            f"from_raw_corpus(data_dir, texts, ...) writes; {missing} not found there. Build it with "
                            "BertLMDataBunch.from_raw_corpus first")
        given = [k for k in ("valid_pct", "test_size") if kwargs.get(k) is not None]
        if given:  # the files' split is used: the share asked for was dropped without a word
            named = ", ".join(f"{k}={kwargs[k]!r}" for k in given)
            warnings.warn(f"BertLMDataBunch(data_dir=..., {named}): the split is the one {list(LM_FILES)} in "
                          f"{str(data_dir)!r} hold, so {' and '.join(given)} {'has' if len(given) == 1 else 'have'} no effect; leave it out, or split "
                          f"again with BertLMDataBunch.from_raw_corpus(texts, ..., {given[0]}=...)",
                          stacklevel=user_stacklevel())
            for k in given:  # not checked either: a share that has no effect is not refused for its value
                kwargs.pop(k)
        train, valid = (_read_lines(data_dir / f, "data_dir") for f in LM_FILES)
        return cls.from_raw_corpus(train + valid, tokenizer, path=data_dir, _split=len(train), **kwargs)

    @property
    def n_inp(self) -> int:
        return 3  # input_ids, attention_mask, positions (the model scores only the masked positions)

    @classmethod
    @_lm_positions
    def from_raw_corpus(cls, corpus: Sequence[str] | str | Path | pd.DataFrame | None = None, tokenizer: Any = None,
                        bs: int = 32, maxlen: int = 128, mlm_probability: float = 0.15, *, text_col: str = "text",
                        valid_pct: float = 0.1, seed: int | None = None, device: torch.device | str | None = None,
                        path: str | Path = ".", logger: logging.Logger | None = None, pack: bool = False,
                        quoting: int = csv.QUOTE_MINIMAL, **kwargs: Any) -> "BertLMDataBunch":
        """Tokenize raw texts for masked-LM training; a `valid_pct` share is held out for validation.

        fast-bert's call `from_raw_corpus(data_dir, text_list, tokenizer, batch_size_per_gpu=32, max_seq_length=512,
        multi_gpu=True, test_size=0.1, model_type='bert', logger=None, clear_cache=False, no_cache=False)` works as
        well, by position in that order (a folder, then a list of texts, marks it) or by keyword; a setting given
        twice (by position and by name, or as `bs` and `batch_size_per_gpu`) is refused. Like fast-bert it then
        writes the split to `data_dir/lm_train.txt` and `lm_val.txt` (one text a line, a line break inside a text
        written as a space), which `BertLMDataBunch(data_dir, tokenizer, ...)` reads back as the same tokens.

        No token is dropped: a text longer than `maxlen` is split into consecutive blocks, each a row with the
        tokenizer's special tokens around it ([CLS] + up to maxlen - 2 tokens + [SEP] for BERT), in training and
        validation alike, and the log says how many texts were split into how many blocks. `pack=True` instead joins
        each split's texts and cuts them into full blocks, as fast-bert's `TextDataset` did (less padding; a block
        can span two texts).

        Args:
            corpus: a list of texts, a .txt file (one text a line, no header, blank lines skipped: fast-bert's
                lm_train.txt), a CSV file (with `text_col`), or a DataFrame.
            tokenizer: tokenizer object, hub name, local path; None for the packaged default model's.
            bs: batch size (alias `batch_size_per_gpu`).
            maxlen: tokens per row, special tokens included (alias `max_seq_length`); a longer text is split into
                consecutive blocks of at most this many tokens.
            mlm_probability: share of tokens masked.
            text_col: the text column of a CSV or DataFrame.
            valid_pct: share of texts held out (alias `test_size`).
            seed: seeds the split, the order and the masks.
            device: where batches go (default: CUDA when available).
            path: the folder things are saved relative to.
            logger: a `logging.Logger`.
            pack: join each split's texts and cut them into blocks of `maxlen` tokens (the last one shorter) instead
                of splitting each long text on its own.
            quoting: how a CSV corpus is read: `csv.QUOTE_MINIMAL` (fields in double quotes) or `csv.QUOTE_NONE` (a
                file written without quoting, every quote part of its text).
        """
        corpus, tokenizer, bs, path, write_to = _fast_bert_form(corpus, tokenizer, bs, path, kwargs)
        bs = kwargs.pop("batch_size_per_gpu", bs)
        maxlen = kwargs.pop("max_seq_length", maxlen)
        valid_pct = kwargs.pop("test_size", valid_pct)
        split = kwargs.pop("_split", None)  # BertLMDataBunch(data_dir): the first `split` texts are the training set
        _note_unused_options(kwargs)
        if kwargs:
            raise TypeError(f"from_raw_corpus() got unexpected arguments {sorted(kwargs)}")
        bs, maxlen = positive_int(bs, "bs"), positive_int(maxlen, "maxlen")
        if not 0 < float(mlm_probability) < 1:
            raise DataError(f"mlm_probability={mlm_probability!r} must be between 0 and 1 (usually 0.15)")
        if not 0 < float(valid_pct) < 1:
            raise DataError(f"valid_pct={valid_pct!r} must be between 0 and 1")
        if not isinstance(pack, (bool, np.bool_)):
            raise DataError(f"pack={pack!r} must be True (join the texts and cut them into full blocks) or False "
                            "(split each long text into blocks of its own)")
        texts = _corpus_texts(corpus, text_col, quoting)
        tok = load_tokenizer(tokenizer)
        if tok.mask_token is None:
            raise ModelError(f"tokenizer {type(tok).__name__} has no mask token, so it cannot train a masked LM")
        from transformers import DataCollatorForLanguageModeling
        collator = DataCollatorForLanguageModeling(tok, mlm=True, mlm_probability=float(mlm_probability))
        train_texts, valid_texts = _split_corpus(texts, split=split, valid_pct=float(valid_pct), seed=seed)
        if not train_texts:  # refused here: fit on no batch ended in a raw AttributeError (no smooth_loss)
            if split is not None:
                raise DataError(f"data_dir={str(path)!r}: lm_train.txt holds no text (no non-blank line), so there is "
                                "nothing to train on; allowed: at least one text a line; write the split again with "
                                "from_raw_corpus(data_dir, texts, ...) and a smaller valid_pct (test_size)")
            raise DataError(f"valid_pct={valid_pct!r} holds out all {len(texts)} texts, leaving none to train on; "
                            "allowed: a share that leaves at least one text for training; pass a smaller valid_pct "
                            "(test_size), e.g. 0.1, or more texts")
        if write_to is not None:  # fast-bert wrote the split to data_dir; BertLMDataBunch(data_dir) reads it back
            _write_split(write_to, train_texts, valid_texts)
        encoder = TextEncoder(tok, maxlen, [])
        encoder.warn_unfollowed_padding()
        budget = _text_budget(tok, maxlen)
        blocks = _packed_dataset if pack else _split_dataset
        (train_ds, n_train), (valid_ds, n_valid) = (blocks(encoder, part, budget)
                                                    for part in (train_texts, valid_texts))
        (logger or _log).info(_blocks_notice(train_ds, valid_ds, n_train, n_valid, maxlen, budget, bool(pack)))
        loaders = [MaskedLMDataLoader(train_ds, bs=bs, shuffle=True, collator=collator),
                   MaskedLMDataLoader(valid_ds, bs=2 * bs, collator=collator, seed=0 if seed is None else seed)]
        _refuse_unmasked_validation(loaders[1], float(mlm_probability),
                                    "lm_val.txt" if split is not None else f"valid_pct={valid_pct!r}")
        if seed is not None:
            loaders[0].rng = random.Random(seed)
        dls = cls(*loaders, path=path, device=resolve_device(device))
        dls.seed = seed  # a seeded learner built on it starts the training order over from this seed
        dls.mlm_probability = float(mlm_probability)
        return dls


def _fast_bert_form(corpus: Any, tokenizer: Any, bs: Any, path: Any, kwargs: dict) -> tuple:
    """fast-bert's `from_raw_corpus(data_dir=, text_list=, tokenizer=, ...)` (`_lm_positions` names its positional
    form so) as (corpus, tokenizer, bs, path, folder to write the split to or None); bertlearn's own form as given."""
    if "data_dir" in kwargs or "text_list" in kwargs:  # fast-bert's keywords: data_dir=, text_list=, tokenizer=
        if "data_dir" not in kwargs or "text_list" not in kwargs or corpus is not None:
            raise TypeError("from_raw_corpus(): fast-bert's form needs both data_dir= and text_list= (and no corpus)")
        path, corpus = kwargs.pop("data_dir"), kwargs.pop("text_list")
        return corpus, tokenizer, bs, path, Path(path)
    return corpus, tokenizer, bs, path, None


def _note_unused_options(kwargs: dict) -> None:
    given = {k: kwargs.pop(k) for k in ("multi_gpu", "model_type", "clear_cache", "no_cache") if k in kwargs}
    if not multi_gpu_without_effect(given.get("multi_gpu")):
        given.pop("multi_gpu", None)
    note_no_effect("BertLMDataBunch.from_raw_corpus", given,
                   why={"clear_cache": "masked-LM data is tokenized afresh each time (no cache to clear)",
                        "no_cache": "masked-LM data is tokenized afresh each time (nothing is cached)"})


def _corpus_texts(corpus: Any, text_col: str, quoting: int = csv.QUOTE_MINIMAL) -> list[str]:
    """The non-empty texts of a list, a .txt file's lines, a CSV file's `text_col` or a DataFrame's."""
    if isinstance(corpus, (str, Path)) and Path(corpus).suffix.lower() == ".txt":
        corpus = _read_lines(Path(corpus), "corpus")
    elif isinstance(corpus, (str, Path)):
        corpus = read_csv(Path(corpus), "corpus", quoting=quoting)
    if isinstance(corpus, pd.DataFrame):
        if text_col not in corpus.columns:
            raise DataError(f"text_col: column {text_col!r} not in corpus; columns are {list(corpus.columns)}")
        corpus = corpus[text_col].dropna().astype(str).tolist()
    texts = [t for t in as_texts(corpus, "corpus", say_empty=False) if t.strip()]
    if len(texts) < 2:
        raise DataError(f"corpus has {len(texts)} non-empty texts; masked-LM training needs at least 2")
    return texts


def _read_lines(path: Path, arg: str) -> list[str]:
    """The non-blank lines of a text file (fast-bert's lm_train.txt: one text a line, no header), UTF-8 with a cp1252
    fallback as for CSV files."""
    if not path.is_file():
        raise DataError(f"{arg}: file {str(path)!r} not found")
    try:
        text = path.read_text(encoding="utf-8-sig")  # universal newlines: \r\n and \r end lines too
    except UnicodeDecodeError:
        warnings.warn(f"{path.name} is not valid UTF-8; reading it as cp1252", stacklevel=user_stacklevel())
        text = path.read_text(encoding="cp1252")
    return [line for line in text.split("\n") if line.strip()]


def _refuse_unmasked_validation(dl: MaskedLMDataLoader, mlm_probability: float, held_out: str) -> None:
    """Refuse a validation set whose fixed masks mask no token: with nothing to score, its loss and perplexity were
    None every epoch and `validate()` failed on them."""
    tokens = 0
    for ids, mask, positions, _ in dl:  # the masks are seeded: these are the ones every epoch will see
        if len(positions):
            return  # usually at the first batch
        tokens += int(((mask == 1) & ~torch.isin(ids, dl._special)).sum())
    # read back from lm_val.txt, the split is the files': valid_pct has no say there
    fix = ("add texts to lm_val.txt (or build the split again with from_raw_corpus and a larger valid_pct)"
           if held_out == "lm_val.txt" else "give more or longer validation texts, or a larger valid share "
           "(valid_pct / test_size)")
    raise DataError(f"{held_out}: the masks drawn for the {dl.dataset.n_texts} validation texts ({tokens} tokens that "
                    f"can be masked, mlm_probability={mlm_probability}) mask no token, so validation would have no "
                    f"loss; {fix}")


def _text_budget(tok: Any, maxlen: int) -> int:
    """The text tokens a row of `maxlen` tokens holds beside the special tokens the tokenizer adds to a single text.

    Args:
        tok: the tokenizer.
        maxlen: tokens per row, special tokens included.
    """
    n_special = int(tok.num_special_tokens_to_add(pair=False))
    if maxlen <= n_special:  # a row of special tokens only: a long text would never fit, however many blocks
        raise DataError(f"maxlen={maxlen} leaves no room for text: {type(tok).__name__} adds {n_special} special "
                        f"tokens to every row; allowed: maxlen >= {n_special + 1}; give a larger maxlen "
                        "(max_seq_length), e.g. 128")
    return maxlen - n_special


_WHOLE_CHUNK = 1024  # texts per tokenizer call when encoding whole texts: bounded memory, few calls


def _whole_encodings(tok: Any, texts: Sequence[str]) -> Iterator[tuple[list[int], np.ndarray, list[int]]]:
    """(leading special tokens, text tokens as int64, trailing special tokens) of each text, encoded whole (no cut)
    by the tokenizer's own call; its special-tokens mask marks only what the tokenizer added ([CLS] ... [SEP],
    <s> ... </s>), not special-token strings inside a text.

    Args:
        tok: the tokenizer.
        texts: the texts.
    """
    for start in range(0, len(texts), _WHOLE_CHUNK):
        enc = tok(list(texts[start:start + _WHOLE_CHUNK]), truncation=False, return_attention_mask=False,
                  return_token_type_ids=False, return_special_tokens_mask=True, verbose=False)
        for ids, special in zip(enc["input_ids"], enc["special_tokens_mask"]):
            lead = next((i for i, s in enumerate(special) if not s), len(ids))
            trail = next((i for i, s in enumerate(reversed(special)) if not s), 0)
            yield list(ids[:lead]), np.asarray(ids[lead:len(ids) - trail], dtype=np.int64), list(ids[len(ids) - trail:])


def _blocks(lead: list[int], body: np.ndarray, trail: list[int], budget: int,
            dtype: np.dtype) -> tuple[np.ndarray, np.ndarray]:
    """`body` cut into consecutive blocks of `budget` tokens (the last one shorter), each as `lead + block + trail`:
    the blocks' ids back to back and their lengths. Built in numpy: a corpus on one line is millions of tokens.

    Args:
        lead, trail: the special tokens the tokenizer puts before and after a text.
        body: the text tokens.
        budget: text tokens per block.
        dtype: the ids' storage dtype.
    """
    n_full, rest = divmod(len(body), budget)
    full = np.concatenate([np.tile(np.asarray(lead, dtype=dtype), (n_full, 1)),
                           body[:n_full * budget].astype(dtype).reshape(n_full, budget),
                           np.tile(np.asarray(trail, dtype=dtype), (n_full, 1))], axis=1).reshape(-1)
    lengths = [len(lead) + budget + len(trail)] * n_full
    if rest:
        full = np.concatenate([full, np.asarray(lead, dtype=dtype), body[n_full * budget:].astype(dtype),
                               np.asarray(trail, dtype=dtype)])
        lengths.append(len(lead) + rest + len(trail))
    return full, np.asarray(lengths, dtype=np.int64)


def _split_dataset(encoder: TextEncoder, texts: list[str], budget: int) -> tuple[EncodedDataset, int]:
    """The texts encoded one row each, except that a text longer than `encoder.maxlen` becomes consecutive blocks
    of `budget` text tokens (the last shorter), each with the tokenizer's special tokens around it: no token is
    dropped. Returns the dataset and how many texts were split.

    Args:
        encoder: the masked-LM data's encoder (cuts at its maxlen).
        texts: the texts of one split.
        budget: text tokens per block (maxlen less the special tokens).
    """
    ds = encoder.dataset(texts)  # the fast batched call; it cuts at maxlen, so only rows that reach it may be cut
    reached = np.flatnonzero(np.asarray(ds.lengths) >= encoder.maxlen)
    if not len(reached):
        return ds, 0
    ids, dtype = ds.ids, ds.ids.dtype
    values, lengths, owner, prev, n_split = [], [], [], 0, 0
    whole = _whole_encodings(encoder.tokenizer, [texts[int(ds.owner[r])] for r in reached])
    for i, (lead, body, trail) in zip(reached.tolist(), whole):
        if len(lead) + len(body) + len(trail) <= encoder.maxlen:
            continue  # exactly maxlen tokens: nothing was cut, the encoded row stays
        block_ids, block_lengths = _blocks(lead, body, trail, budget, dtype)
        values += [ids.values[ids.offsets[prev]:ids.offsets[i]], block_ids]
        lengths += [ids.lengths[prev:i], block_lengths]
        owner += [ds.owner[prev:i], np.full(len(block_lengths), ds.owner[i], dtype=np.int64)]
        prev, n_split = i + 1, n_split + 1
    if not n_split:
        return ds, 0
    values.append(ids.values[ids.offsets[prev]:])
    lengths.append(ids.lengths[prev:])
    owner.append(ds.owner[prev:])
    rows = RaggedRows.from_flat(np.concatenate(values), np.concatenate(lengths), dtype, fill=encoder.pad_id)
    out = EncodedDataset(rows, rows.lengths, None, encoder, owner=np.concatenate(owner).astype(np.int64),
                         n_texts=ds.n_texts, texts=ds.texts)
    out.encoded_by = ds.encoded_by
    return out, n_split


def _packed_dataset(encoder: TextEncoder, texts: list[str], budget: int) -> tuple[EncodedDataset, int]:
    """The texts' tokens joined in order and cut into blocks of `budget` text tokens (the last one shorter, not
    dropped as fast-bert and `group_texts` did), each with the tokenizer's special tokens around it. Returns the
    dataset and how many texts it holds.

    Args:
        encoder: the masked-LM data's encoder.
        texts: the texts of one split.
        budget: text tokens per block (maxlen less the special tokens).
    """
    lead, trail, bodies = None, None, []
    for lead_i, body, trail_i in _whole_encodings(encoder.tokenizer, texts):
        if lead is None and len(body):  # every text gets the same; an empty text's mask cannot tell lead from trail
            lead, trail = lead_i, trail_i
        bodies.append(body)
    flat = np.concatenate(bodies) if bodies else np.zeros(0, np.int64)
    block_ids, block_lengths = _blocks(lead or [], flat, trail or [], budget, encoder.id_dtype)
    rows = RaggedRows.from_flat(block_ids, block_lengths, encoder.id_dtype, fill=encoder.pad_id)
    # a block's owner is the text it starts in (show_batch decodes packed rows: they span texts)
    starts = np.cumsum([0] + [len(b) for b in bodies[:-1]])
    owner = np.searchsorted(starts, np.arange(len(block_lengths)) * budget, side="right") - 1
    ds = EncodedDataset(rows, rows.lengths, None, encoder, owner=owner.astype(np.int64), n_texts=len(texts))
    ds.encoded_by = "tokenized by the tokenizer's own call (whole texts, packed)"
    return ds, len(texts)


def _blocks_notice(train_ds: EncodedDataset, valid_ds: EncodedDataset, n_train: int, n_valid: int, maxlen: int,
                   budget: int, pack: bool) -> str:
    """The one line the data reports: texts and rows per split, and which texts became several blocks.

    Args:
        train_ds, valid_ds: the two datasets.
        n_train, n_valid: texts split (per-text blocks) or packed (`pack`) per dataset.
        maxlen: tokens per row.
        budget: text tokens per block.
        pack: whether the texts were packed.
    """
    head = f"masked-LM data: {train_ds.n_texts} train / {valid_ds.n_texts} valid texts, maxlen {maxlen}"
    if pack:
        return (f"{head}; packed (pack=True) into {len(train_ds)} train / {len(valid_ds)} valid blocks of "
                f"{budget} text tokens (each split's last block shorter; no token dropped)")
    if not n_train and not n_valid:
        return head
    blocks = [len(ds) - (ds.n_texts - n) for ds, n in ((train_ds, n_train), (valid_ds, n_valid))]
    return (f"{head}; {n_train} train / {n_valid} valid texts longer than maxlen were split into {blocks[0]} / "
            f"{blocks[1]} consecutive blocks of up to {budget} text tokens (no token dropped): {len(train_ds)} train "
            f"/ {len(valid_ds)} valid rows")


def _split_corpus(texts: list[str], *, split: int | None, valid_pct: float,
                  seed: int | None) -> tuple[list[str], list[str]]:
    if split is not None:
        return texts[:split], texts[split:]
    perm = holdout_order(len(texts), seed)
    n_valid = max(1, int(round(len(texts) * valid_pct)))
    return [texts[i] for i in perm[n_valid:]], [texts[i] for i in perm[:n_valid]]


# what `_read_lines` ends a line at: Path.read_text's universal newlines turn \r\n and \r into \n, then it splits
# on \n. Only these are replaced; str.split() also took \x85, \u2028, \x1c... for spaces, which the tokenizer does
# not ("a\x85b" is one word to BERT, and came back as two)
_LINE_BREAK = re.compile(r"\r\n|[\r\n]")


def _write_split(folder: Path, train_texts: list[str], valid_texts: list[str]) -> None:
    for name, part in zip(LM_FILES, (train_texts, valid_texts)):
        with atomic_file(folder / name) as tmp:
            tmp.write_text("\n".join(_LINE_BREAK.sub(" ", t) for t in part) + "\n", encoding="utf-8")


class MaskedLMModel(nn.Module):
    """A Hugging Face `AutoModelForMaskedLM` whose vocabulary projection runs only on the masked positions.

    `forward(input_ids, attention_mask, positions)` returns (n_masked, vocab) logits for the flat token indices
    `positions` (1-D, as `MaskedLMDataLoader` makes them), or, given a (rows, width) `labels` tensor instead, for
    its entries other than -100 in row-major order. The plain Hugging Face model is `.hf`; `save_pretrained`
    saves it with `carried`.

    Args:
        hf: the masked-LM model.
        carried: weights of the checkpoint that `hf` does not use but its task models do (BERT's pooler), keyed as
            they load them (`bert.pooler.dense.weight`); saved beside `hf`'s own, unchanged.
    """

    def __init__(self, hf: nn.Module, carried: dict[str, torch.Tensor] | None = None):
        super().__init__()
        self.hf = hf
        # a plain dict, not buffers: they are not trained, and the learner's checkpoints hold the trained state only
        self.carried = dict(carried or {})
        self._positions: torch.Tensor | None = None
        # a pre-hook on the output projection (found through the HF API, whatever the architecture calls it)
        # drops the unmasked rows just before the hidden-size x vocabulary matmul
        hf.get_output_embeddings().register_forward_pre_hook(self._select)

    def _select(self, module: nn.Module, args: tuple) -> tuple | None:
        if self._positions is None:
            return None
        hidden = args[0]
        return (hidden.reshape(-1, hidden.shape[-1]).index_select(0, self._positions),)

    @property
    def base_model(self) -> nn.Module:
        return self.hf.base_model

    @property
    def config(self) -> Any:
        return self.hf.config

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor,
                positions: torch.Tensor | None = None) -> torch.Tensor:
        """Vocabulary logits of the masked positions only (of every position without `positions`).

        Args:
            input_ids: (rows, width) token ids, some replaced by [MASK].
            attention_mask: (rows, width) 1 for real tokens.
            positions: the flat indices of the masked tokens (1-D), or (rows, width) labels with -100 where nothing is
                scored; None: logits for every position.
        """
        if positions is not None and positions.dim() == 2:  # labels with -100 where nothing is scored
            positions = masked_positions(positions)[0]
        self._positions = positions
        try:
            return self.hf(input_ids=input_ids, attention_mask=attention_mask).logits
        finally:
            self._positions = None

    def save_pretrained(self, path: str | Path, **kwargs: Any) -> None:
        """Save the wrapped Hugging Face masked-LM model and the `carried` weights (`AutoModelForMaskedLM` reads it
        back; a `*ForSequenceClassification` finds the pooler it started from).

        Args:
            path: the folder.
            **kwargs: passed to the Hugging Face model's `save_pretrained`.
        """
        if self.carried and "state_dict" not in kwargs:
            kwargs["state_dict"] = {**self.hf.state_dict(), **self.carried}
        self.hf.save_pretrained(path, **kwargs)


def _unused_base_weights(hf: nn.Module, name: str, unexpected: Any) -> dict[str, torch.Tensor]:
    """The checkpoint's weights of the architecture's base model that `hf` builds without (BERT's pooler: its
    *ForMaskedLM leaves it out, its *ForSequenceClassification classifies through it), keyed as the task models load
    them; {} where the architecture has none or the checkpoint lacks them. Without them the adapted folder had no
    pooler, and a classifier started from it a random one where one from the original kept the pretrained.

    Args:
        hf: the loaded masked-LM model.
        name: the checkpoint (hub name or folder).
        unexpected: the checkpoint keys `hf` did not use (from Hugging Face's loading info).
    """
    from transformers import AutoModel
    prefix = hf.base_model_prefix
    try:
        with torch.device("meta"):  # the architecture's base model, for its names only: no memory, no weights read
            names = list(AutoModel.from_config(hf.config).state_dict())
    except (ValueError, NotImplementedError, RuntimeError):
        return {}  # no base model class for this config: the masked-LM model still trains, and saves as it always did
    own = set(hf.base_model.state_dict())
    given = {k[len(prefix) + 1:] if prefix and k.startswith(prefix + ".") else k for k in unexpected}
    wanted = [k for k in names if k not in own and k in given]
    if not wanted:
        return {}
    with quiet_hub():  # the checkpoint has them: read them through the base model, whatever its file layout
        base, info = AutoModel.from_pretrained(name, output_loading_info=True)
    state, missing = base.state_dict(), set(info.get("missing_keys") or ())
    dtype = next(hf.base_model.parameters()).dtype
    return {f"{prefix}.{k}" if prefix else k: state[k].detach().to(dtype=dtype, device="cpu").clone()
            for k in wanted if k not in missing}


class MaskedLMLoss(nn.Module):
    """Cross-entropy between the masked positions' logits and their original token ids (`targets`, 1-D; or
    (rows, width) labels with -100 where nothing is scored)."""

    def forward(self, logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        """The mean cross-entropy over the masked tokens, in float32.

        Args:
            logits: (n_masked, vocab) logits of the masked positions.
            targets: their original ids (1-D), or (rows, width) labels with -100 elsewhere.
        """
        if targets.dim() == 2:
            targets = masked_positions(targets)[1]
        # a batch can hold no masked token (short lines): the mean over nothing is NaN, which made the epoch's
        # validation loss NaN and stopped training as "diverged"; the sum over nothing is 0, weighted by 0 rows
        return F.cross_entropy(logits.float(), targets, reduction="sum") / max(targets.numel(), 1)

    def denominator(self, targets: torch.Tensor) -> torch.Tensor:
        """What `forward`'s mean divides by: the number of masked tokens (`bertlearn.losses.loss_denominator`).

        Args:
            targets: as for `forward`.
        """
        if targets.dim() == 2:
            return (targets != -100).sum()
        # filled on the device, not copied from the host (a copy per batch would wait on the GPU)
        return torch.full((), targets.numel(), device=targets.device, dtype=torch.int64)


class AccumulateBatches(StepAccumulation):
    """`StepAccumulation` counting batches: one optimizer step every `n_acc` batches. fastai's counts the rows of the
    targets, and a masked-LM batch's targets are its masked tokens, not its rows. Each batch weighs by its masked
    tokens, so the step is one batch of all its masked tokens.

    Args:
        n_acc: batches per optimizer step.
    """

    def __init__(self, n_acc: int = 2):
        super().__init__(n_acc=n_acc, batches=n_acc)


class Perplexity(DeviceAvgLoss):
    """exp(mean masked-LM loss) over the validation set, accumulated on the device; each batch weighs by its
    number of masked tokens (the length of its targets), so this is the per-token perplexity."""

    @property
    def value(self) -> torch.Tensor | None:
        total, count = self._sums()
        return torch.exp(torch.as_tensor(total / count)) if count else None

    @property
    def name(self) -> str:
        return "perplexity"


def _no_mlm_head(name: str) -> ModelError | None:
    """The error for a loadable model whose architecture transformers gives no masked-LM head (XLNet: a
    permutation LM), which the loader reported as a folder it could not load; None otherwise."""
    from transformers import MODEL_FOR_MASKED_LM_MAPPING, AutoConfig
    try:
        with quiet_hub():  # the loader read it already: local files, or the hub's cache
            config = AutoConfig.from_pretrained(name, local_files_only=True)
    except (OSError, ValueError):
        return None
    if type(config) in MODEL_FOR_MASKED_LM_MAPPING:
        return None
    return ModelError(f"pretrained_path: {name!r} holds a model of type {config.model_type!r}, for which "
                      f"transformers has no masked-LM head (AutoModelForMaskedLM does not take "
                      f"{type(config).__name__}), so it cannot be adapted by masked-LM training; fine-tune it directly "
                      "with BertLearner, or adapt a model with such a head (BERT, RoBERTa, ALBERT, DistilBERT, ELECTRA, "
                      "DeBERTa, XLM-R)")


class BertLMLearner(TaskLearner):
    """A fastai `Learner` that continues masked-LM pretraining; build it with `from_pretrained_model`.

    `fit`, `fit_one_cycle`, `lr_find`, checkpoints and callbacks work as for `BertLearner` (the same core); `save_model`
    writes a Hugging Face folder that `BertLearner.from_pretrained_model(databunch, folder)` starts a classifier from.
    A classifier's methods (`predict_batch`...) raise `NotForThisTaskError` saying so.

    `pretrained_path` is the checkpoint it started from and `sentence_transformers_files` that checkpoint's
    sentence-transformers settings (`bertlearn.embed.sentence_transformers_files`; {} for a plain checkpoint), which
    `save_model` writes beside the adapted weights and `embed(texts, learner)` follows.
    """

    other_tasks_hint = ("a BertLMLearner trains a masked language model and does not classify; save_model() it and "
                        "start a classifier with BertLearner.from_pretrained_model(databunch, that_folder)")

    @classmethod
    def from_pretrained_model(cls, databunch: BertLMDataBunch | None = None, pretrained_path: str | Path | None = None,
                              output_dir: str | Path | None = None, metrics: Any = None,
                              device: torch.device | str | None = None, logger: logging.Logger | None = None,
                              multi_gpu: bool = False, is_fp16: bool = False, *, grad_accumulation_steps: int = 1,
                              max_grad_norm: float | None = 1.0, adam_epsilon: float = 1e-8,
                              learning_rate: float = 5e-5, epochs: int = 1, seed: int | None = None,
                              **kwargs: Any) -> "BertLMLearner":
        """Load `AutoModelForMaskedLM` weights (the packaged default: its pretrained MLM head if it has one, else a
        new head tied to the input embeddings) and wrap them for masked-LM training on `databunch`.

        Args:
            databunch: a `BertLMDataBunch`.
            pretrained_path: hub name, local folder, or None for the packaged all-MiniLM-L6-v2.
            output_dir: where `save_model` and checkpoints go (default: `output_dir/lm` of the data path).
            metrics: extra fastai metrics (perplexity is always reported); fast-bert's metric dicts are refused
                (they score a classifier's outputs).
            device: torch device (None: CUDA when available).
            logger: a `logging.Logger` for per-epoch results.
            multi_gpu: fast-bert's flag: under `accelerate launch` / `torchrun` every process trains with DDP; with
                several GPUs in one process it warns how to launch; otherwise no effect (named once).
            is_fp16: mixed precision on CUDA.
            grad_accumulation_steps, max_grad_norm, adam_epsilon: as for `BertLearner.from_pretrained_model`.
            learning_rate, epochs: defaults of `fit()`.
            seed: seeds the new head's initialisation and starts the databunch's training order (and masks) over
                from its `seed`, else this one.
            **kwargs: fast-bert's `warmup_steps`, `schedule_type` and `optimizer_type` (as for
                `BertLearner.from_pretrained_model`); its `logging_steps`, `fp16_opt_level`, `loss_scale` and
                `model_type` have no effect and are named once; the rest go to fastai's `Learner`.
        """
        if databunch is None and "dataBunch" in kwargs:
            databunch = kwargs.pop("dataBunch")  # fast-bert's name for the first argument
        if not isinstance(databunch, BertLMDataBunch):
            raise DataError("BertLMLearner needs a BertLMDataBunch (BertLMDataBunch.from_raw_corpus(texts, ...)); "
                            f"got {type(databunch).__name__}")
        from fastai.metrics import Metric
        if isinstance(metrics, (dict, str)) or (callable(metrics) and not isinstance(metrics, Metric)):
            metrics = [metrics]
        dicts = [m for m in metrics or [] if isinstance(m, (dict, str))]
        if dicts:
            # a fast-bert dict trained a whole epoch, then failed at validation ('dict' object is not callable):
            # the masked-LM loop takes fastai metrics (or functions fastai averages) that read the masked positions
            m = dicts[0]
            what = f"the fast-bert metric dict {m.get('name')!r}" if isinstance(m, dict) else repr(m)
            raise BertLearnError(f"metrics: {what} is not a metric of the masked-LM learner, which reports "
                                 "perplexity and takes fastai Metric objects (or functions of the logits and "
                                 "labels, -100 where nothing is masked) besides: leave it out (metrics=[] or None)")
        warmup_steps, schedule_type = kwargs.pop("warmup_steps", None), kwargs.pop("schedule_type", None)
        optimizer_type = kwargs.pop("optimizer_type", "adamw")
        # the classifier's steps: fast-bert options named, the optimizer (or fastai's opt_func=), device, seed
        opt_func, device = factory_setup("BertLMLearner.from_pretrained_model", kwargs, device=device,
                                         optimizer_type=optimizer_type, adam_epsilon=adam_epsilon,
                                         multi_gpu=multi_gpu, logging_steps=kwargs.pop("logging_steps", None),
                                         seed=seed, databunch=databunch)

        model = cls.load_head(pretrained_path)
        prepare_model(model, databunch, device)
        grad_accumulation_steps = accumulation_steps(grad_accumulation_steps)
        accumulation = AccumulateBatches(n_acc=grad_accumulation_steps) if grad_accumulation_steps > 1 else None
        cbs, logger = training_callbacks(kwargs.pop("cbs", None), device=device, logger=logger,
                                         max_grad_norm=max_grad_norm, accumulation=accumulation)
        learner = cls(databunch, model, loss_func=MaskedLMLoss(), opt_func=opt_func,
                      metrics=[Perplexity(), *(metrics or [])], cbs=cbs,
                      path=Path(output_dir) if output_dir is not None else Path(databunch.path) / "lm",
                      py_logger=logger, default_lr=float(learning_rate), default_epochs=int(epochs),
                      optimizer_type=optimizer_type, adam_epsilon=adam_epsilon,
                      warmup_steps=warmup_steps, schedule_type=schedule_type,
                      grad_accumulation_steps=grad_accumulation_steps, **kwargs)
        # where the encoder came from, and its sentence-transformers files (the packaged MiniLM's mean pooling,
        # Normalize and max_seq_length): adaptation keeps the encoder's use, so save_model writes them beside the
        # adapted weights and embed(texts, learner) follows them, instead of falling back to 'cls' silently
        learner.pretrained_path = resolve_pretrained(pretrained_path)
        learner.sentence_transformers_files = sentence_transformers_files(learner.pretrained_path)
        return learner.finish_setup(is_fp16=is_fp16, seeded=seed is not None)

    @classmethod
    def load_head(cls, pretrained_path: str | Path | None) -> "MaskedLMModel":
        """`AutoModelForMaskedLM` weights (the checkpoint's MLM head where it has one, else a new head tied to the
        input embeddings), wrapped so the vocabulary projection runs on the masked positions only; the checkpoint's
        pooler, which the masked-LM model is built without, is carried for `save_model`.

        Args:
            pretrained_path: hub name, local folder, or None for the packaged default.
        """
        from transformers import AutoModelForMaskedLM
        name = resolve_pretrained(pretrained_path)
        try:
            hf, info = load_pretrained(AutoModelForMaskedLM, name, head="masked-LM head")
            carried = _unused_base_weights(hf, name, info.get("unexpected_keys") or ())
        except (OSError, ValueError) as e:
            raise _no_mlm_head(name) or load_error("pretrained_path", name, e) from e
        return MaskedLMModel(hf, carried)

    @main_process_only
    def save_model(self, path: str | Path | None = None) -> Path:
        """Write the adapted model and tokenizer as a Hugging Face folder (default: `output_dir/model_out`).

        `BertLearner.from_pretrained_model(databunch, path)` starts a classifier from it (a new head on the
        adapted encoder and the pooler of the checkpoint the LM started from, where the architecture has one).

        A learner started from a sentence-transformers folder (the packaged MiniLM) writes that folder's
        sentence-transformers files too (modules.json, the Pooling config, sentence_bert_config.json...), so
        `embed(texts, path)` and sentence-transformers pool, normalise and cut as they did for the source.

        Args:
            path: target folder.
        """
        path = Path(path) if path is not None else self.output_dir / "model_out"
        check_replaceable(path, "save_model")
        with atomic_dir(path) as tmp, quiet_hub():
            self.model.save_pretrained(tmp, safe_serialization=True)
            # as training encoded, or refused: a classifier started from this folder reads its texts with it
            save_tokenizer_as_used(self.dls.encoder.tokenizer, tmp, maxlen=self.dls.encoder.maxlen)
            # the source's sentence-transformers settings, not its weights (the adapted ones are saved above):
            # without them embed() and sentence-transformers read the folder as a plain checkpoint ('cls', not
            # normalised, 512 tokens) where the source pooled by mean, normalised, at 256 (the packaged MiniLM)
            for rel, data in (getattr(self, "sentence_transformers_files", None) or {}).items():
                target = tmp / rel
                if data is None:  # a module's folder with nothing in it (sentence-transformers' Normalize)
                    target.mkdir(parents=True, exist_ok=True)
                else:
                    target.parent.mkdir(parents=True, exist_ok=True)
                    target.write_bytes(data)
        _log.info("masked-LM model saved to %s", path)
        return path
