"""Batch tokenization backends behind `TextEncoder`: the tokenizer's own Rust backend called directly, and
tokie's WordPiece for the texts where it gives the same ids.

`TextEncoder` calls a private copy of the Hugging Face tokenizer's Rust backend instead of `tokenizer(...)`
(which builds per-text dicts, masks and padding in Python). Where the optional `tokie` package is installed
(`pip install 'bertlearn[fast]'`), single texts of plain ASCII go to tokie's `encode_batch_flat` instead,
which returns every text's ids in one flat array (what `RaggedRows` stores) about 20x faster than the
tokenizers library's batch call on 2 cores. tokie is used only where it was found to agree exactly:

- the tokenizer is BERT's standard WordPiece pipeline (BertNormalizer with clean_text, BertPreTokenizer,
  WordPiece with "##" and 100 characters per word, BERT's template), has no non-special added tokens, does
  not split special tokens, and tokie reads the same vocabulary from it and encodes a set of probe texts
  identically (checked once per encoder);
- each text is ASCII without DEL. tokie 0.1.4 differs from the tokenizers library on some other texts
  (rare scripts and symbols, DEL; found by fuzzing), and on vocabularies whose ids have gaps; on 290,000
  texts of the shared datasets and 270,000 fuzzed ASCII texts (cased and uncased, cut left and right at
  3-128 tokens) it gave the tokenizers library's ids every time (`bench/tokie_agreement.py`). Other texts,
  and sentence pairs, go to the tokenizers backend, in the same call.

`BERTLEARN_TOKIE=0` in the environment turns tokie off.
"""

from __future__ import annotations

import json
import logging
import os
import tempfile
from typing import Any, Sequence

import numpy as np

from .store import RaggedRows

__all__ = ["BatchEncoder", "TokieBatchEncoder", "batch_encoder", "tokie_encoder", "TOKIE_MIN_TEXTS"]

_log = logging.getLogger(__name__)

# tokie's setup (reading the definition, the checks) takes ~0.1 s once per encoder: what the tokenizers library
# needs for ~5,000 texts on 2 cores. Smaller calls keep to the tokenizers library until a large one comes.
TOKIE_MIN_TEXTS = 4096
_PROBE = ["Hello, World! The cafe's 3rd naive resume.", "  ", "", "a " * 200, "x" * 101 + " " + "y" * 100,
          "UPPER lower MiXeD unaffable supercalifragilistic", "[CLS] [SEP] [PAD] [MASK] [UNK] [cls]",
          "tab\there\nnew\rline\x00\x07 ctrl", "$100.00 @user #tag http://x.co/a?b=c&d ...!!!???---___ (1+2)*3=9"]


class BatchEncoder:
    """The tokenizer's Rust backend (a `tokenizers.Tokenizer` set to cut and never pad), called on a batch.

    `encode` runs the Rust call (it releases the GIL, so it may run on a helper thread); `rows` / `type_rows`
    turn its result into `RaggedRows` on the caller's thread.

    Args:
        backend: the `tokenizers.Tokenizer` to call.
    """

    def __init__(self, backend: Any):
        self.backend = backend

    def encode(self, texts: Sequence[str], texts_b: Sequence[str] | None = None) -> Any:
        """Encode single texts, or (texts[i], texts_b[i]) pairs.

        Args:
            texts: the first (or only) texts.
            texts_b: the second texts of sentence pairs, or None.
        """
        inputs = list(texts) if texts_b is None else list(zip(texts, texts_b))
        # encode_batch_fast (tokenizers >= 0.21) skips character offsets, which nothing here uses
        fast = getattr(self.backend, "encode_batch_fast", None)
        return fast(inputs) if fast is not None else self.backend.encode_batch(inputs)

    def rows(self, encoded: Any, dtype: Any, *, fill: int = 0) -> RaggedRows:
        """The token ids of `encode`'s result.

        Args:
            encoded: what `encode` returned.
            dtype: the ids' numpy dtype.
            fill: the id that pads rows into batches.
        """
        return RaggedRows.from_lists([e.ids for e in encoded], dtype, fill=fill)

    def type_rows(self, encoded: Any) -> RaggedRows:
        """The segment ids of `encode`'s result (sentence pairs).

        Args:
            encoded: what `encode` returned for sentence pairs.
        """
        return RaggedRows.from_lists([e.type_ids for e in encoded], np.uint8)


class _Routed:
    """`TokieBatchEncoder.encode`'s result: tokie's flat ids for rows `fast`, the backend's encodings for `rest`."""

    def __init__(self, flat: tuple, fast: np.ndarray | None, rest: np.ndarray | None, slow: Any):
        self.flat, self.fast, self.rest, self.slow = flat, fast, rest, slow


class TokieBatchEncoder(BatchEncoder):
    """tokie for single ASCII texts, the tokenizers backend for everything else (see the module docstring).

    Args:
        backend: the `tokenizers.Tokenizer`, for pairs and non-ASCII texts.
        tokie_tokenizer: a `tokie.Tokenizer` of the same definition, truncation set, no padding.
    """

    def __init__(self, backend: Any, tokie_tokenizer: Any):
        super().__init__(backend)
        self.tokie = tokie_tokenizer

    def encode(self, texts: Sequence[str], texts_b: Sequence[str] | None = None) -> Any:
        """Encode single texts, tokie's ASCII ones on the flat path and the rest with the tokenizers backend.

        Args:
            texts: the first (or only) texts.
            texts_b: the second texts of sentence pairs (the tokenizers backend encodes pairs).
        """
        if texts_b is not None:
            return super().encode(texts, texts_b)
        texts = texts if isinstance(texts, list) else list(texts)
        joined = "".join(texts)  # one C-speed check for the common case: the whole chunk is plain ASCII
        if joined.isascii() and "\x7f" not in joined:
            return _Routed(self.tokie.encode_batch_flat(texts), None, None, None)
        safe = np.fromiter((t.isascii() and "\x7f" not in t for t in texts), dtype=bool, count=len(texts))
        if not safe.any():  # a chunk of another script: nothing to split and put back together
            return super().encode(texts)
        fast, rest = np.flatnonzero(safe), np.flatnonzero(~safe)
        flat = self.tokie.encode_batch_flat([texts[i] for i in fast])
        return _Routed(flat, fast, rest, super().encode([texts[i] for i in rest]))

    def rows(self, encoded: Any, dtype: Any, *, fill: int = 0) -> RaggedRows:
        """The token ids of `encode`'s result, in input order.

        Args:
            encoded: what `encode` returned.
            dtype: the ids' numpy dtype.
            fill: the id that pads rows into batches.
        """
        if not isinstance(encoded, _Routed):
            return super().rows(encoded, dtype, fill=fill)
        fast = RaggedRows.from_flat(*encoded.flat, dtype, fill=fill)
        if encoded.fast is None:
            return fast
        both = RaggedRows.concat([fast, super().rows(encoded.slow, dtype, fill=fill)], dtype, fill=fill)
        where = np.empty(len(both), dtype=np.int64)  # row i of the chunk is row where[i] of `both`
        where[np.concatenate([encoded.fast, encoded.rest])] = np.arange(len(both))
        return both.take(where)


def batch_encoder(tokenizer: Any, maxlen: int, *, pairs: bool = False) -> BatchEncoder | None:
    """A `BatchEncoder` over a private copy of `tokenizer`'s Rust backend, set to cut at `maxlen` and never pad,
    or None when the tokenizer has no Rust backend or the copy gives other ids than calling the tokenizer.

    Args:
        tokenizer: a Hugging Face tokenizer.
        maxlen: tokens per input, special tokens included.
        pairs: inputs are sentence pairs (the agreement check encodes pairs).
    """
    source = getattr(tokenizer, "backend_tokenizer", None)
    if source is None or not hasattr(source, "to_str"):
        return None
    from tokenizers import Tokenizer
    try:
        backend = Tokenizer.from_str(source.to_str())
        backend.no_padding()
        backend.enable_truncation(maxlen, strategy="longest_first", direction=_side(tokenizer))
        backend.encode_special_tokens = bool(getattr(tokenizer, "split_special_tokens", False))
    except Exception as e:  # custom Python components do not serialize; the plain call still works
        _log.info("cannot copy the tokenizer's Rust backend (%s); using the slower call", e)
        return None
    encoder = BatchEncoder(backend)
    probe = ["Hello, World! The café's 3rd naïve résumé.", "  ", "a " * (maxlen + 5), "\u4e2d\u6587 test."]
    probe_b = list(reversed(probe)) if pairs else None
    ref = tokenizer(probe, probe_b, truncation=True, max_length=maxlen)
    if encoder.rows(encoder.encode(probe, probe_b), np.int64).tolist() != [list(r) for r in ref["input_ids"]]:
        _log.info("the tokenizer's Rust backend alone gives other ids than calling %s; using the slower call",
                  type(tokenizer).__name__)
        return None
    return encoder


def tokie_encoder(encoder: BatchEncoder, tokenizer: Any, maxlen: int, *,
                  why_not: list[str] | None = None) -> TokieBatchEncoder | None:
    """`encoder` with tokie taking the single ASCII texts, or None where tokie is not installed, is turned off
    (`BERTLEARN_TOKIE=0`), or is not known to give the same ids for this tokenizer (the reason is logged, and
    appended to `why_not` where tokie is installed and on).

    Args:
        encoder: the `BatchEncoder` of `tokenizer` (from `batch_encoder`).
        tokenizer: the Hugging Face tokenizer.
        maxlen: tokens per input, special tokens included.
        why_not: a list that gets the reason when an installed tokie is not used for this tokenizer.
    """
    found = _tokie_encoder(encoder, tokenizer, maxlen)
    if isinstance(found, str):
        if why_not is not None:
            why_not.append(found)
        return None
    return found


def _tokie_encoder(encoder: BatchEncoder, tokenizer: Any, maxlen: int) -> TokieBatchEncoder | str | None:
    if os.environ.get("BERTLEARN_TOKIE", "1").strip().lower() in ("0", "false", "no", "off"):
        return None
    try:
        import tokie
    except ImportError:
        return None
    definition = encoder.backend.to_str()
    reason = _unsupported(json.loads(definition), tokenizer)
    if reason:
        _log.info("tokie not used for this tokenizer: %s", reason)
        return reason
    try:
        with tempfile.TemporaryDirectory(prefix="bertlearn-tokie-") as tmp:  # tokie reads definitions from files
            path = os.path.join(tmp, "tokenizer.json")
            with open(path, "w", encoding="utf-8") as f:
                f.write(definition)
            fast = tokie.Tokenizer.from_json(path)
        fast.no_padding()
        fast.enable_truncation(maxlen, direction=_side(tokenizer))
        if fast.get_vocab() != encoder.backend.get_vocab(with_added_tokens=True):
            _log.info("tokie not used for this tokenizer: it reads another vocabulary from it (ids with gaps?)")
            return "it reads another vocabulary from this tokenizer, whose ids may have gaps"
        candidate = TokieBatchEncoder(encoder.backend, fast)
        probe = _PROBE + ["word " * maxlen]
        got = candidate.rows(candidate.encode(probe), np.int64).tolist()
        ref = encoder.rows(encoder.encode(probe), np.int64).tolist()
    except Exception as e:  # a definition tokie cannot read, a truncation it refuses
        _log.info("tokie not used for this tokenizer: %s: %s", type(e).__name__, e)
        return f"{type(e).__name__}: {e}"
    if got != ref:
        _log.info("tokie not used for this tokenizer: it gives other ids on the probe texts")
        return "it gives other ids than the tokenizer on bertlearn's probe texts"
    return candidate


def _side(tokenizer: Any) -> str:
    return getattr(tokenizer, "truncation_side", "right")


def _unsupported(definition: dict, tokenizer: Any) -> str | None:
    """Why tokie is not known to agree with this tokenizer definition, or None."""
    def kind(part: str) -> str | None:
        return (definition.get(part) or {}).get("type")

    model, normalizer = definition.get("model") or {}, definition.get("normalizer") or {}
    if model.get("type") != "WordPiece":
        return f"model {model.get('type')!r} is not WordPiece"
    if model.get("continuing_subword_prefix", "##") != "##" or model.get("max_input_chars_per_word", 100) != 100:
        return "non-default WordPiece settings"
    if kind("normalizer") != "BertNormalizer" or not normalizer.get("clean_text", True):
        return f"normalizer {kind('normalizer')!r} is not BertNormalizer(clean_text=True)"
    if kind("pre_tokenizer") != "BertPreTokenizer":
        return f"pre-tokenizer {kind('pre_tokenizer')!r} is not BertPreTokenizer"
    if kind("post_processor") not in ("TemplateProcessing", "BertProcessing"):
        return f"post-processor {kind('post_processor')!r} is not BERT's"
    if any(not t.get("special", False) for t in definition.get("added_tokens") or ()):
        return "it has added tokens that are not special"
    if getattr(tokenizer, "split_special_tokens", False):
        return "split_special_tokens=True"
    return None
