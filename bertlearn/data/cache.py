"""On-disk cache of tokenized features, keyed by everything that changes them.

The key hashes the texts themselves (so an edited CSV misses), the tokenizer's identity (its name and a
hash of its full serialized definition: vocabulary, normaliser, special tokens), the encoder's settings
(maxlen, truncation, windows, pairs, labels, problem type), what encoding reads off the tokenizer object at
call time (`truncation_side`, `split_special_tokens`, `model_input_names`) and the tokenizers library's
version: everything `TextEncoder.key_parts()` lists. A cache file is an `.npz` (no
pickle) holding the key it was made for; it is written under a temporary name and renamed, so readers
never see half a file and two processes building the same entry both leave a whole one. A file that
cannot be read or does not match is rebuilt.
"""

from __future__ import annotations

import functools
import hashlib
import json
import logging
import warnings
import zipfile
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from ..atomic import atomic_file
from ..errors import user_stacklevel
from .store import RaggedRows, rows_revision

__all__ = ["tokenizer_fingerprint", "cache_key", "load_cached", "save_cached", "CACHE_VERSION"]

CACHE_VERSION = 2  # 2: ragged rows (values + offsets) instead of a padded matrix
_log = logging.getLogger(__name__)
_HASH_BLOCK = 8192
_unwritable: set[str] = set()  # cache folders already reported as unwritable


# how a tokenizer was loaded, not how it tokenizes: HF_HUB_OFFLINE sets local_files_only, so the same tokenizer
# online and offline missed the cache
_LOADER_OPTIONS = frozenset({"local_files_only", "is_local", "trust_remote_code", "use_fast", "_from_auto",
                             "_commit_hash", "revision", "subfolder", "cache_dir", "force_download", "token",
                             "use_auth_token", "proxies", "from_slow"})

# mixed case, accents, a ligature, CJK, punctuation, a no-break space and a special token: what normalisation options
# change
_PROBE = "The Movie WAS naïve, Café ﬁne: 中文 don't x\u00a0y [MASK] [UNK]"


def tokenizer_fingerprint(tokenizer: Any) -> str:
    """Name plus a hash of the tokenizer's whole definition (vocab, normalisation, special tokens).

    Args:
        tokenizer: a Hugging Face tokenizer.
    """
    h = hashlib.sha256()
    backend = getattr(tokenizer, "backend_tokenizer", None)
    if backend is not None:
        h.update(_definition_hash(backend.to_str()).encode())
    else:
        h.update(json.dumps(sorted(tokenizer.get_vocab().items())).encode())
        # a Python tokenizer keeps its normalisation (do_lower_case, strip_accents, CJK splitting...) in its options,
        # not its vocabulary: two that differ only there shared a key, and the cache or the on-disk store returned
        # the other's ids. Its plain options and the ids it gives a probe text go in
        options = {k: v for k, v in getattr(tokenizer, "init_kwargs", {}).items()
                   if isinstance(v, (bool, int, float, str, type(None))) and not k.endswith(("_file", "name_or_path"))
                   and k not in _LOADER_OPTIONS}
        h.update(json.dumps(options, sort_keys=True).encode())
        h.update(json.dumps(tokenizer(_PROBE)["input_ids"]).encode())
    h.update(json.dumps(getattr(tokenizer, "special_tokens_map", {}), sort_keys=True, default=str).encode())
    h.update(type(tokenizer).__name__.encode())
    return f"{getattr(tokenizer, 'name_or_path', '')}:{h.hexdigest()[:16]}"


@functools.lru_cache(maxsize=4)
def _definition_hash(serialized: str) -> str:
    # calling the tokenizer sets truncation and padding on its backend: call options, not its identity. A copy
    # with both cleared serializes canonically (ordered vocabulary, fixed field order) in ~20 ms; parsing the
    # JSON into Python instead makes ~60k objects, 30 ms and, with a garbage collection, up to 190 ms. A build
    # asks once per split and the serialization is fetched afresh each time (2 ms), so an edited tokenizer is
    # never taken for the old one.
    from tokenizers import Tokenizer
    try:
        plain = Tokenizer.from_str(serialized)
        plain.no_truncation()
        plain.no_padding()
        canonical = plain.to_str()
    except Exception:  # a definition this tokenizers version cannot read back
        definition = json.loads(serialized)
        definition.pop("truncation", None)
        definition.pop("padding", None)
        canonical = json.dumps(definition, sort_keys=True)
    return hashlib.sha256(canonical.encode()).hexdigest()


def cache_key(texts: Sequence[Any], tokenizer: Any, settings: dict) -> str:
    """A hex key over the texts' content, the tokenizer fingerprint and the encoder settings.

    Args:
        texts: the texts (or text pairs) to encode.
        tokenizer: the tokenizer that encodes them.
        settings: the encoder settings (maxlen, truncation...).
    """
    h = hashlib.sha256()
    h.update(json.dumps({"v": CACHE_VERSION, "rows": rows_revision(), "tok": tokenizer_fingerprint(tokenizer),
                         **settings}, sort_keys=True, default=str).encode())
    # each text (pairs joined by \x1f) followed by \x1e, a block at a time; where a text itself holds \x1e or \x1f
    # (the separators counted do not match), every part's length (int64) after them: such a text would otherwise
    # hash as two texts (["the\x1ebad"] as ["the", "bad"]) and get their ids
    ambiguous = False
    for start in range(0, len(texts), _HASH_BLOCK):
        items = texts[start:start + _HASH_BLOCK]
        block = [t if isinstance(t, str) else "\x1f".join(t) for t in items]
        joined = "\x1e".join(block) + "\x1e"
        units = joined.count("\x1f")  # pairs' joins, counted by a loop only where there are any
        ambiguous = ambiguous or joined.count("\x1e") != len(block) or \
            (units > 0 and units != sum(len(t) - 1 for t in items if not isinstance(t, str)))
        h.update(joined.encode("utf-8", "surrogatepass"))
    if ambiguous:
        parts = [len(p) for t in texts for p in ((t,) if isinstance(t, str) else t)]
        h.update(np.asarray(parts, dtype=np.int64).tobytes())
    return h.hexdigest()[:32]


def load_cached(path: Path, key: str, *, pad_id: int = 0) -> dict | None:
    """The cached encoding at `path` (as `TextEncoder.encode` returns it) if it is whole and was made for `key`,
    else None. `pad_id` fills the id rows when they are padded into batches.

    Args:
        path: the cache file.
        key: what `cache_key` gave for these inputs.
        pad_id: the padding id.
    """
    if not path.is_file():
        return None
    try:
        with np.load(path, allow_pickle=False) as z:
            if str(z["key"]) != key:
                return None
            offsets, owner = z["offsets"], z["owner"]
            ids = RaggedRows(z["ids"], offsets, fill=pad_id)
            types = RaggedRows(z["type_ids"], offsets) if "type_ids" in z.files else None
        if len(owner) != len(ids):
            raise ValueError("array lengths disagree")
        return {"ids": ids, "lengths": ids.lengths, "type_ids": types, "owner": owner}
    except (OSError, ValueError, KeyError, EOFError, zipfile.BadZipFile) as e:
        _log.warning("tokenization cache %s is unreadable (%s); rebuilding it", path, e)
        return None


def save_cached(path: Path, key: str, enc: dict) -> None:
    """Write `enc` to `path` atomically (temporary file, then rename); failures only log.

    Args:
        path: the cache file.
        key: what `cache_key` gave for these inputs.
        enc: the encoding, as `TextEncoder.encode` returns it.
    """
    try:
        with atomic_file(path) as tmp, open(tmp, "wb") as f:
            arrays = {"ids": enc["ids"].values, "offsets": enc["ids"].offsets, "owner": enc["owner"]}
            if enc.get("type_ids") is not None:
                arrays["type_ids"] = enc["type_ids"].values
            np.savez(f, key=np.asarray(key), **arrays)
    except OSError as e:  # a read-only data folder must not stop training, but the user asked for a cache
        if str(path.parent) not in _unwritable:  # said once per folder, not once per split
            _unwritable.add(str(path.parent))
            warnings.warn(f"could not write the tokenization cache in {str(path.parent)!r} ({type(e).__name__}: "
                          f"{e.strerror or e}); training goes on without it, and the texts will be tokenized again "
                          "next time (pass a writable cache_dir, or no_cache=True)", stacklevel=user_stacklevel())
