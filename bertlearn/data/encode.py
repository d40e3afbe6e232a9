"""Encoding: how raw texts become token ids, once, in batched Rust calls, stored ragged (no padding kept).

`TextEncoder` is saved with a model (its `settings()` go to bertlearn.json) so that prediction encodes exactly as
training did; `key_parts()` is everything that decides the ids, what the caches key on.
"""

from __future__ import annotations

import json
import warnings
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, Iterator, Sequence

import numpy as np

from ..errors import DataError, ModelError, user_stacklevel
from ..model import load_tokenizer, quiet_hub
from .backends import TOKIE_MIN_TEXTS, BatchEncoder, TokieBatchEncoder, batch_encoder, tokie_encoder
from .frames import PROBLEM_TYPES, MULTI, REGRESSION, SINGLE
from .loader import EncodedDataset
from .store import RaggedRows

__all__ = ["TextEncoder", "TRUNCATIONS", "tokenizer_within", "warn_unfollowed_padding", "check_maxlen_room", "pair_template_segments",
           "segment_embeddings_beside", "save_tokenizer_as_used"]

_TOKENIZE_CHUNK = 4096  # texts per tokenizer call: bounded memory, still one Rust call per chunk
TRUNCATIONS = ("head", "tail", "head+tail")


def warn_unfollowed_padding(tokenizer: Any, *, pad_left: bool) -> None:
    """Say that the `padding_side` set on `tokenizer` (other than its class's) is not the side batches pad on.

    Args:
        tokenizer: the tokenizer the data is built with.
        pad_left: whether batches pad on the left (`TextEncoder.pad_left`; token classification pads on the right).
    """
    asked = getattr(tokenizer, "padding_side", None)
    used = "left" if pad_left else "right"
    if asked not in ("left", "right") or asked == used or asked == getattr(type(tokenizer), "padding_side", "right"):
        return  # followed, or the class's own side (not asked for)
    why = ("these models number positions from the first token, pads included, so left padding would move a "
           "text's positions with its batch" if used == "right" else
           "its model's classifier reads the last position, which right padding would make a pad for every "
           "shorter row")
    warnings.warn(f"padding_side={asked!r} on the {type(tokenizer).__name__} is not followed: batches pad on the "
                  f"{used}, as its class does ({why}); the tokenizer is left as it is", stacklevel=user_stacklevel())


# mixed case, accents, a ligature, CJK, a no-break space, digits and literal special tokens: what normalisation and
# special-token options change
_SAVE_PROBE = "The Movie WAS naïve, Café ﬁne: 中文 don't x\u00a0y 1,234 [SEP] [UNK] <s> </s> [MASK]"


def save_tokenizer_as_used(tokenizer: Any, folder: str | Path, *, maxlen: int, patch: dict | None = None,
                           pairs: bool = False) -> None:
    """Save `tokenizer` into `folder` so that loading the folder encodes as the object does; a `ModelError` if not.

    `save_pretrained` writes the options the tokenizer was loaded with and some set on the object afterwards: a
    `truncation_side` or `split_special_tokens` set after loading was lost (the folder cut long texts on the other
    side), and `tokenizer.do_lower_case = False` on a fast tokenizer changes nothing in it but was written (the
    folder stopped lowercasing). The side and the split are written; then the folder is loaded back and a probe
    text, one longer than `maxlen` and (for pairs) a pair are encoded both ways.

    Args:
        tokenizer: the tokenizer training encoded with.
        folder: the model folder being written.
        maxlen: the encoder's maxlen (the long probe is cut there).
        patch: further tokenizer_config.json entries to write.
        pairs: the model reads sentence pairs.
    """
    from transformers import AutoTokenizer

    tokenizer.save_pretrained(folder)
    patch = dict(patch or {})
    if getattr(tokenizer, "split_special_tokens", False):
        # the folder's predictors read a literal "[SEP]" in a text as the special token training split into pieces
        patch["split_special_tokens"] = True
    if getattr(tokenizer, "truncation_side", "right") != "right":
        patch["truncation_side"] = tokenizer.truncation_side
    config = Path(folder) / "tokenizer_config.json"
    if patch and config.is_file():
        saved = json.loads(config.read_text())
        if any(saved.get(k) != v for k, v in patch.items()):
            config.write_text(json.dumps({**saved, **patch}, indent=2, ensure_ascii=False) + "\n")
    long = f"{_SAVE_PROBE} " + " ".join(f"w{i}" for i in range(maxlen))
    probes: list[Any] = [_SAVE_PROBE, _SAVE_PROBE.lower(), long]
    if pairs:
        probes.append((_SAVE_PROBE, long))
    try:
        reloaded = AutoTokenizer.from_pretrained(folder)
    except (OSError, ValueError) as e:
        raise ModelError(f"the tokenizer written with the model cannot be loaded back ({e}); the folder would not "
                         "open: train with a tokenizer loaded by AutoTokenizer.from_pretrained") from e
    for probe in probes:
        a, b = (probe, None) if isinstance(probe, str) else probe
        live = tokenizer(a, b, truncation=True, max_length=maxlen)["input_ids"]
        saved = reloaded(a, b, truncation=True, max_length=maxlen)["input_ids"]
        if live != saved:
            at = next((i for i, (x, y) in enumerate(zip(live, saved)) if x != y), min(len(live), len(saved)))
            shown = a if len(a) <= 60 else a[:57] + "..."
            raise ModelError(
                "the tokenizer written with the model encodes differently from the one training used: "
                f"{shown!r}{' (with a second text)' if b is not None else ''} gives {tokenizer.convert_ids_to_tokens(live[at:at + 5])} "
                f"from token {at} here and {reloaded.convert_ids_to_tokens(saved[at:at + 5])} loaded back, so every "
                "predictor, server and pipeline on the folder would read texts otherwise. An option set on the "
                "tokenizer object after loading is the usual cause (tokenizer.do_lower_case = False does nothing to "
                "a fast tokenizer, yet is written to the folder): undo it and save again, or load the tokenizer "
                "with the option (AutoTokenizer.from_pretrained(name, do_lower_case=...)) and train with that")


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
        stride: tokens shared by consecutive windows (default maxlen // 4); only with `long_text="sliding_window"`.
        token_type_ids: give sentence pairs segment ids (token_type_ids): None decides (the tokenizer lists them
            and the config beside it, if any, has not type_vocab_size 1; or its pair template gives the second text
            segment 1 and that config has type_vocab_size > 1), True forces them, False leaves them out. Single
            texts never carry them.
    """

    def __init__(self, tokenizer: Any, maxlen: int, labels: Sequence[str], *, problem_type: str = SINGLE,
                 pairs: bool = False, truncation: str = "head", long_text: str | None = None,
                 stride: int | None = None, token_type_ids: bool | None = None):
        if problem_type not in PROBLEM_TYPES:
            raise DataError(f"problem_type={problem_type!r} is not one of {list(PROBLEM_TYPES)}")
        if truncation not in TRUNCATIONS:
            raise DataError(f"truncation={truncation!r} is not one of {list(TRUNCATIONS)}")
        if long_text not in (None, "truncate", "sliding_window"):
            raise DataError(f"long_text={long_text!r} is not one of [None, 'truncate', 'sliding_window']")
        if pairs and (truncation != "head" or long_text == "sliding_window"):
            raise DataError(f"truncation={truncation!r} / long_text={long_text!r} apply to single texts; sentence "
                            "pairs are cut longest-first: leave truncation='head' and long_text=None")
        if long_text == "sliding_window" and truncation != "head":
            # windows cover the whole text, so nothing is cut: the option was taken and did nothing
            raise DataError(f"truncation={truncation!r} chooses what a cut keeps, and long_text='sliding_window' cuts "
                            "nothing (its windows cover the whole text); leave truncation='head' with sliding "
                            "windows, or pass long_text=None to cut long texts")
        if pairs:  # single texts were checked where the tokenizer was loaded; a pair holds one more special token
            check_maxlen_room(tokenizer, maxlen, pairs=True)
        self.tokenizer, self.maxlen = tokenizer, int(maxlen)
        self.labels, self.problem_type, self.pairs = [str(l) for l in labels], problem_type, bool(pairs)
        self.truncation = truncation
        self.long_text = "sliding_window" if long_text == "sliding_window" else None
        if stride is not None and self.long_text is None:
            # only windows overlap: the option was taken, saved, and did nothing
            raise DataError(f"stride={stride!r} is the overlap of sliding windows, and long_text={long_text!r} cuts long "
                            "texts instead; pass long_text='sliding_window' with it, or leave stride out")
        self.stride = int(stride) if stride is not None else max(1, self.maxlen // 4)
        if self.long_text and not 0 < self.stride < self.maxlen - 3:
            raise DataError(f"stride={stride} must be between 1 and maxlen - 4 = {self.maxlen - 4}")
        self.token_type_ids_option = token_type_ids  # what was asked: the learner warns only where it decided
        self._token_types = self._decide_token_types(token_type_ids)

    def _decide_token_types(self, asked: bool | None) -> bool:
        """Whether pairs carry segment ids (see `token_type_ids` in the class docstring)."""
        if asked not in (None, True, False):
            raise DataError(f"token_type_ids={asked!r} is not one of [None, True, False]; pass True to give sentence "
                            "pairs segment ids, False to leave them out, None (default) to decide from the tokenizer")
        if asked is not None and not self.pairs:
            if asked:
                raise DataError("token_type_ids=True applies to sentence pairs, but these are single texts (every "
                                "token would get segment 0, what the model takes without them); allowed: True with "
                                "a text_col of two columns; leave token_type_ids out for single texts")
            return False
        if not self.pairs:
            return False
        if asked is False:
            return False
        listed = "token_type_ids" in getattr(self.tokenizer, "model_input_names", ())
        if asked is None and listed:
            # a BERT tokenizer beside a model with one segment embedding (klue/roberta-*: RoBERTa, type_vocab_size
            # 1): a second text's segment 1 would index past the model's table
            return _type_vocab_size_beside(self.tokenizer) != 1  # 0 (DeBERTa-v3): no table, the ids are not read
        segments = pair_template_segments(self.tokenizer)
        if asked:
            if not segments:
                raise DataError(f"token_type_ids=True: {type(self.tokenizer).__name__} gives both texts of a pair "
                                "segment 0 (its pair template has no segments, as RoBERTa-style models have none), "
                                "so there are no segment ids to send; allowed: None (decide from the tokenizer) or "
                                "False; leave token_type_ids out for this tokenizer")
            return True
        # transformers 5 dropped token_type_ids from some tokenizers' model_input_names (ALBERT, Funnel, XLNet...,
        # huggingface/transformers#48128) although their template still gives segments and their models were
        # pretrained with them: the config beside the tokenizer tells whether the model has segment embeddings
        return segments and segment_embeddings_beside(self.tokenizer)

    @property
    def pad_id(self) -> int:
        pad = self.tokenizer.pad_token_id
        return 0 if pad is None else int(pad)

    @property
    def pad_left(self) -> bool:
        """Whether batches put each row's tokens at the right end, the padding first: where the tokenizer's class
        pads on the left (XLNet's, whose classifier reads the last position, which a right-padded row made a pad
        token: a text's logits changed with the other texts of its batch). `padding_side="left"` set on a tokenizer
        whose class pads on the right (a BERT tokenizer) is not followed: those models number positions from the
        first token, pads included, so left padding would move a text's positions with its batch."""
        return getattr(type(self.tokenizer), "padding_side", "right") == "left"

    def warn_unfollowed_padding(self) -> None:
        """Say that a `padding_side` set on the tokenizer is not followed (see `pad_left`); called where training
        data is built, not where a saved folder is loaded."""
        warn_unfollowed_padding(self.tokenizer, pad_left=self.pad_left)

    @property
    def multi_label(self) -> bool:
        return self.problem_type == MULTI

    @property
    def regression(self) -> bool:
        return self.problem_type == REGRESSION

    @property
    def with_token_types(self) -> bool:
        """Whether batches carry token_type_ids (sentence pairs for a model with segment embeddings)."""
        decided = self.__dict__.get("_token_types")
        if decided is None:  # an encoder pickled before the setting existed decided from the tokenizer's list alone
            return self.pairs and "token_type_ids" in getattr(self.tokenizer, "model_input_names", ())
        return self.pairs and decided

    def settings(self) -> dict:
        """What `save_model` writes to bertlearn.json to rebuild this encoder."""
        return {"maxlen": self.maxlen, "labels": self.labels, "problem_type": self.problem_type, "pairs": self.pairs,
                "truncation": self.truncation, "long_text": self.long_text, "stride": self.stride,
                # pairs only: single texts never carry segment ids, and their cache keys stay as they were
                **({"token_type_ids": self.with_token_types} if self.pairs else {})}

    def save_tokenizer(self, folder: str | Path) -> None:
        """Save the tokenizer into `folder`, its `model_input_names` listing token_type_ids exactly when this
        encoder sends them, so `transformers.pipeline` on the folder encodes pairs as training did.

        Args:
            folder: the model folder being written.
        """
        patch = {}
        if self.pairs:
            names = [n for n in getattr(self.tokenizer, "model_input_names", ()) if n != "token_type_ids"]
            names += ["token_type_ids"] if self.with_token_types else []
            if names != list(getattr(self.tokenizer, "model_input_names", ())):
                # the pipeline asks the tokenizer for token_type_ids only where model_input_names lists them (an
                # ALBERT tokenizer of transformers 5 does not): the saved list says what the model was trained with
                patch["model_input_names"] = names
        save_tokenizer_as_used(self.tokenizer, folder, maxlen=self.maxlen, patch=patch, pairs=self.pairs)

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
        options = {k: settings[k] for k in keys if k in settings}
        if options.get("long_text") == "sliding_window":
            options["truncation"] = "head"  # a folder saved before that pair was refused: its truncation did nothing
        else:
            options.pop("stride", None)  # saved by every folder, read only with windows
        encoder = cls(tokenizer, settings["maxlen"], settings["labels"], **options)
        if "token_type_ids" in settings:  # the decision training made, whatever the tokenizer now lists
            encoder._token_types = bool(settings["token_type_ids"])
        else:  # a folder saved before the setting: pairs carried segment ids where the tokenizer listed them
            encoder._token_types = "token_type_ids" in getattr(tokenizer, "model_input_names", ())
        return encoder

    @property
    def id_dtype(self) -> np.dtype:
        """How token ids are stored: uint16 when every id fits (BERT, RoBERTa...: half the memory), else int32.
        Decided by the highest id, not the vocabulary's size: a vocabulary with gaps gives ids past its length,
        which wrapped around in uint16."""
        size = len(self.tokenizer)
        if getattr(self, "_id_dtype", None) is None or self.__dict__.get("_id_dtype_for") != size:
            # decided again when tokens were added: ids past 65535 wrapped around in uint16
            self._id_dtype_for = size
            top = size - 1
            try:
                top = max(top, max(self.tokenizer.get_vocab().values(), default=0))
            except (AttributeError, NotImplementedError, TypeError):
                pass  # a tokenizer without get_vocab: its length is all there is to go by
            self._id_dtype = np.dtype(np.uint16 if top <= np.iinfo(np.uint16).max else np.int32)
        return self._id_dtype

    def encode(self, texts: Sequence[str], texts_b: Sequence[str] | None = None) -> dict[str, Any]:
        """Tokenize into `ids` (a `RaggedRows`: each row as long as its text), `lengths`, optional `type_ids`
        (RaggedRows) and `owner` (the text each row came from; rows and texts differ only with sliding windows).

        Args:
            texts: the first (or only) texts.
            texts_b: the second texts of sentence pairs, or None.
        """
        texts = list(texts)
        dtype = self.id_dtype
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
        """The Rust backend to encode `n_texts` texts with (see `bertlearn.data.backends`), or None to call the
        tokenizer itself: a private copy of the tokenizer's backend set to cut at maxlen and never pad, which
        skips the Python work of `tokenizer(...)` (per-text dicts, masks, padding) and gives the same ids; for
        single texts, from the first call of `TOKIE_MIN_TEXTS` texts on, tokie where it gives the same ids. Each
        is checked once per encoder."""
        # maxlen can be lowered, the tokenizer's options changed, tokens added to it (its size: the copy kept the
        # old vocabulary, so test_dl and predict_batch split an added token into pieces)
        made_for = (self.maxlen, id(self.tokenizer), len(self.tokenizer), *self._call_options().values())
        if self.__dict__.get("_fast_for") != made_for:
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
        # padded on the right whatever the tokenizer's padding_side: the rows are read back as each one's first
        # `length` columns (a left-padding tokenizer gave rows of padding, cut before their last tokens)
        kwargs = dict(truncation=True, max_length=self.maxlen, padding="longest", padding_side="right",
                      return_tensors="np", return_attention_mask=True, return_token_type_ids=self.with_token_types)
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
        if self.pairs:
            # kept as (a, b) tuples, never joined: a joined "a [SEP] b" split back at its first " [SEP] " made
            # another pair of a text_a holding " [SEP] " (fastai's Interpretation re-encodes `items`)
            shown = np.empty(len(texts), dtype=object)
            for i, (a, b) in enumerate(texts):
                shown[i] = (a, b)
        else:
            shown = np.asarray(texts, dtype=object)
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
                            n_texts=len(texts), texts=shown)
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


def pair_template_segments(tokenizer: Any) -> bool:
    """Whether the tokenizer's pair template gives the second text a nonzero segment (BERT, ALBERT: 0s then 1s;
    RoBERTa-style templates give every token 0).

    Args:
        tokenizer: the loaded tokenizer.
    """
    try:
        types = tokenizer("a", "b", return_token_type_ids=True)["token_type_ids"]
    except Exception:  # noqa: BLE001 - a stand-in, or a tokenizer that takes no pairs: no segments to give
        return False
    return any(int(t) != 0 for t in types)


def segment_embeddings_beside(tokenizer: Any) -> bool:
    """Whether the model config in the tokenizer's source (its `name_or_path`, read from local files only) has
    more than one segment embedding (`type_vocab_size > 1`); False where there is no such config.

    Args:
        tokenizer: the loaded tokenizer.
    """
    size = _type_vocab_size_beside(tokenizer)
    return size is not None and size > 1


def _type_vocab_size_beside(tokenizer: Any) -> int | None:
    """The `type_vocab_size` of the model config in the tokenizer's source (local files only); None where there
    is no such config or it has no such setting."""
    source = getattr(tokenizer, "name_or_path", None)
    if not source:
        return None
    from transformers import AutoConfig

    try:
        with quiet_hub():
            config = AutoConfig.from_pretrained(source, local_files_only=True)
    except Exception:  # noqa: BLE001 - no config beside the tokenizer (a tokenizer-only folder, a stand-in): unknown
        return None
    size = getattr(config, "type_vocab_size", None)
    return size if isinstance(size, int) else None


def tokenizer_within(tokenizer: Any, maxlen: int) -> tuple[Any, int]:
    """The loaded tokenizer, and `maxlen` cut to its `model_max_length` (with a warning) when above it; a `maxlen`
    that leaves no room for text beside the tokenizer's special tokens is refused (`check_maxlen_room`).

    Args:
        tokenizer: a tokenizer, a hub name or folder, or None for the packaged default's.
        maxlen: the tokens per input asked for.
    """
    tok = load_tokenizer(tokenizer)
    limit = getattr(tok, "model_max_length", None)
    if isinstance(limit, int) and 0 < limit < 100_000 and maxlen > limit:
        warnings.warn(f"maxlen={maxlen} exceeds the tokenizer's model_max_length={limit}; using {limit}",
                      stacklevel=user_stacklevel())
        maxlen = limit
    check_maxlen_room(tok, maxlen)
    return tok, maxlen


def check_maxlen_room(tokenizer: Any, maxlen: int, *, pairs: bool = False) -> None:
    """Refuse a `maxlen` that leaves no token of text beside the special tokens the tokenizer adds.

    Below that the Rust tokenizer either ignores the limit (nothing is cut: a long text fails in the model) or
    keeps only the special tokens ([CLS] [SEP]: the model never sees a word).

    Args:
        tokenizer: the loaded tokenizer.
        maxlen: tokens per model input, special tokens included.
        pairs: the inputs are sentence pairs (BERT adds 3 special tokens to a pair, 2 to a single text).
    """
    count = getattr(tokenizer, "num_special_tokens_to_add", None)
    if count is None:  # not a Hugging Face tokenizer (a stand-in): nothing to tell the minimum by
        return
    n_special = int(count(pair=pairs))
    least = n_special + (2 if pairs else 1)  # a pair needs a token of each text, or one is dropped whole
    if int(maxlen) < least:
        what = "sentence pair" if pairs else "text"
        room = "for a token of each text" if pairs else "for text"
        raise DataError(f"maxlen={maxlen} leaves no room {room}: {type(tokenizer).__name__} adds {n_special} "
                        f"special tokens to every {what}; allowed: maxlen >= {least}"
                        f"{' for sentence pairs' if pairs else ''}; give a larger maxlen, e.g. 128")
