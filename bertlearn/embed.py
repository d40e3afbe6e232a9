"""Contextual embeddings: sentence, token and word-in-context vectors from any (fine-tuned) encoder.

A BERT token's hidden state depends on its sentence: "apple" next to "pie" and next to "iPhone" get
different vectors, while the input-embedding table (what word2vec-style models have) gives one vector for
both. `embed` returns sentence vectors (CLS-token or mean pooling) or per-word vectors (word pieces merged
back); `word_in_context` returns one word's contextual vector in each sentence next to its static one.
"""

from __future__ import annotations

import json
import re
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import torch
from torch import nn

from .data.encode import check_maxlen_room
from .data.frames import blank_text, refuse_table
from .errors import BertLearnError, DataError, ModelError, user_stacklevel
from .model import position_limit, position_limit_source
from .saved import plain_maxlen

__all__ = ["embed", "word_in_context", "TokenVectors", "WordInContext", "cosine_similarity_matrix", "sense_separation",
           "project_2d", "EXAMPLE_SENSES", "sentence_transformers_files"]

POOLINGS = ("cls", "mean", "tokens")

# four sentences per sense of three ambiguous words: `bertlearn senses apple` and the polysemy example use them
EXAMPLE_SENSES: dict[str, dict[str, list[str]]] = {
    "apple": {
        "fruit": ["I ate a crisp red apple for lunch.", "She baked an apple pie with cinnamon.",
                  "The apple fell from the tree in the orchard.", "He sliced an apple and shared it with the kids."],
        "company": ["Apple released a new iPhone this autumn.", "Shares of Apple rose after the earnings report.",
                    "Apple announced updates to its laptop software.", "The CEO of Apple spoke at the developer conference."],
    },
    "bank": {
        "river": ["We had a picnic on the grassy bank of the river.", "The fisherman sat on the muddy bank all day.",
                  "Reeds grew along the bank of the stream.", "The boat drifted toward the far bank of the lake."],
        "money": ["I deposited my paycheck at the bank.", "The bank approved her mortgage application.",
                  "He withdrew cash from the bank on Monday.", "The bank raised its interest rates on savings accounts."],
    },
    "bat": {
        "animal": ["A bat flew out of the cave at dusk.", "The bat hung upside down from the branch.",
                   "The bat hunts moths at night using echolocation.", "A small brown bat roosted in the barn."],
        "sports": ["He swung the baseball bat and hit a home run.", "She bought a new cricket bat for the season.",
                   "The batter gripped the bat tightly at the plate.", "He cracked his wooden bat on a fastball."],
    },
}


@dataclass
class TokenVectors:
    """Per-word contextual vectors of one text: `words[i]` is the text span whose vector is `vectors[i]`.

    Attributes:
        words: the text's words (as the tokenizer splits them, within maxlen), each as it appears in the text.
        vectors: (n_words, dim) each word's hidden state (its word pieces averaged).
    """

    words: list[str]
    vectors: np.ndarray


@dataclass
class WordInContext:
    """One word's contextual vector in each sentence, and its static (input-embedding) vector.

    Attributes:
        word: the word asked for.
        sentences: the sentences, in order.
        contextual: (n_sentences, dim) hidden states of the word (its word pieces averaged).
        static: (dim,) the input-embedding vector of the word as the sentences hold it (its pieces averaged, then
            over the sentences, which differ only where a tokenizer keeps case): one vector for all sentences; with
            no sentences, of the word tokenized alone.
        spans: (start, end) character span of the word in each sentence.
    """

    word: str
    sentences: list[str]
    contextual: np.ndarray
    static: np.ndarray
    spans: list[tuple[int, int]]


def cosine_similarity_matrix(vectors: np.ndarray) -> np.ndarray:
    """Pairwise cosine similarities of the rows of `vectors`.

    Args:
        vectors: (n, d) vectors, one per row.
    """
    v = np.asarray(vectors, dtype=np.float64)
    v = v / np.clip(np.linalg.norm(v, axis=1, keepdims=True), 1e-12, None)
    return v @ v.T


def _resolve(model: Any, tokenizer: Any) -> tuple[nn.Module, Any]:
    """The encoder (base model, no head) and its tokenizer from a name/path, an HF model or a BertLearner."""
    from .model import load_tokenizer, resolve_pretrained

    if hasattr(model, "dls") and hasattr(model, "model"):  # a BertLearner
        return model.model.base_model, tokenizer or model.dls.encoder.tokenizer
    if isinstance(model, nn.Module):
        if tokenizer is None:
            raise BertLearnError("embed: with a model object, pass its tokenizer too (tokenizer=...)")
        return getattr(model, "base_model", model), load_tokenizer(tokenizer)
    from transformers import AutoModel

    from .model import load_error, load_pretrained
    name = resolve_pretrained(model)
    try:
        encoder, _ = load_pretrained(AutoModel, name, head="layers")
    except (OSError, ValueError) as e:
        raise load_error("model", name, e) from e
    return encoder, load_tokenizer(tokenizer if tokenizer is not None else name)


def _tokenizer_limit(tokenizer: Any) -> int | None:
    """The longest input the tokenizer says its model takes (None where it gives the 'no limit' sentinel)."""
    limit = getattr(tokenizer, "model_max_length", None)
    return int(limit) if isinstance(limit, int) and 0 < limit < 1_000_000 else None


def _sentence_transformers_settings(model: Any) -> dict[str, Any]:
    """What a sentence-transformers model says about its sentence vectors: "pooling" ("mean", "cls", or None for a
    mode `embed` does not have, with "modes"), "normalize", "maxlen" and "lowercase" (sentence_bert_config.json's
    do_lower_case); empty for any other model (a model object, a plain checkpoint, a learner that records none).

    A learner that records the sentence-transformers files of the folder it started from
    (`sentence_transformers_files`, as a `BertLMLearner` does) is read from those: masked-LM adaptation keeps the
    encoder's use, and its saved folder carries the same files, so the learner and the folder embed alike.
    """
    from .model import resolve_pretrained
    if hasattr(model, "dls") and hasattr(model, "model"):  # a learner
        files = getattr(model, "sentence_transformers_files", None) or {}
        if "modules.json" not in files:
            return {}
        label = _label(model)

        def read(path: str) -> Any:
            if files.get(path) is None:
                return None
            try:
                return json.loads(files[path])
            except ValueError as e:
                raise BertLearnError(f"model={label}: {path} cannot be read ({e})") from e
    elif model is None or isinstance(model, (str, Path)):
        name, label = resolve_pretrained(model), _label(model)

        def read(path: str) -> Any:
            return _read_json(name, path)
    else:
        return {}
    modules = read("modules.json")
    if modules is None:
        return {}
    try:
        out: dict[str, Any] = {"normalize": any(m.get("type", "").endswith(".Normalize") for m in modules)}
        others = [m.get("type") for m in modules
                  if not m.get("type", "").endswith((".Transformer", ".Pooling", ".Normalize"))]
        if others:  # a Dense projection (LaBSE), a CNN...: vectors embed cannot give
            out["others"] = others
        pooling = next((m for m in modules if m.get("type", "").endswith(".Pooling")), None)
        config = read(f"{pooling.get('path', '')}/config.json".lstrip("/")) if pooling else None
        if config is not None:
            if isinstance(config.get("pooling_mode"), str):  # sentence-transformers >= 6 writes the mode by name
                modes = [config["pooling_mode"]]
                known = {"mean": "mean", "cls": "cls"}
            else:
                modes = sorted(k for k, v in config.items() if k.startswith("pooling_mode_") and v)
                known = {"pooling_mode_mean_tokens": "mean", "pooling_mode_cls_token": "cls"}
            out["pooling"], out["modes"] = (known.get(modes[0]) if len(modes) == 1 else None), modes
        st_config = read("sentence_bert_config.json") or {}
        maxlen = st_config.get("max_seq_length")
        if isinstance(maxlen, int) and maxlen > 0:
            out["maxlen"] = maxlen
        if st_config.get("do_lower_case"):  # taken as sentence-transformers takes it: any true value lowercases
            out["lowercase"] = True
    except (AttributeError, TypeError) as e:
        raise BertLearnError(f"model={label}: its sentence-transformers files (modules.json, the Pooling "
                             f"config) are not what sentence-transformers writes ({e}); pass pooling=, normalize= "
                             "and maxlen= yourself") from e
    return out


ST_ROOT_FILES = ("modules.json", "sentence_bert_config.json", "config_sentence_transformers.json")


def sentence_transformers_files(model: str | Path | None) -> dict[str, bytes | None]:
    """The sentence-transformers files of a model folder or hub repo, laid out for a folder that holds the weights
    at its top: {path relative to the folder: contents, None for a module's empty folder}; {} for a plain checkpoint.

    The Transformer module (the weights) is left out, so these are the settings only (pooling, Normalize,
    max_seq_length...): a masked-LM learner records them when it is built and writes them beside its adapted
    weights. A source that kept its weights in a subfolder (older sentence-transformers' 0_Transformer) has its
    modules.json point at the top and its sentence_bert_config.json moved up. Of a hub repo, a module's folder
    gives its config.json (what Pooling writes; a Dense module's weights are not fetched).

    Args:
        model: a hub name, a local folder, or None for the packaged all-MiniLM-L6-v2.
    """
    from .model import resolve_pretrained
    name = resolve_pretrained(model)
    local = Path(name).is_dir()

    def read(rel: str) -> bytes | None:
        file = (Path(name) / rel if (Path(name) / rel).is_file() else None) if local else _hub_file(
            name, rel, who="BertLMLearner",
            then="save_model writes no sentence-transformers files beside the adapted weights, and embed(texts, "
                 "learner) pools by 'cls', not normalised (pass pooling=, normalize= and maxlen= to embed)")
        return Path(file).read_bytes() if file is not None else None

    if (first := read("modules.json")) is None:  # a plain checkpoint (the others are not looked for)
        return {}
    files = {"modules.json": first, **{rel: data for rel in ST_ROOT_FILES[1:] if (data := read(rel)) is not None}}
    try:
        modules = json.loads(files["modules.json"])
        inner = [m.get("path", "") for m in modules if m.get("type", "").endswith(".Transformer")]
        others = [m.get("path", "") for m in modules if not m.get("type", "").endswith(".Transformer")]
    except (ValueError, AttributeError, TypeError):  # kept as they are: embed says what is wrong with them
        return files
    outside = [p for p in inner + others if Path(p).is_absolute() or ".." in Path(p).parts]
    if outside:  # save_model writes these paths into its folder: one outside it would write elsewhere
        raise ModelError(f"model={name!r}: its modules.json names the module path(s) {outside}, outside the model "
                         "folder; allowed: paths inside it, as sentence-transformers writes them (e.g. "
                         "'1_Pooling'); fix the model's modules.json")
    if any(inner):  # the weights in a subfolder: the learner writes them at the top, so the module points there
        modules = [{**m, "path": ""} if m.get("type", "").endswith(".Transformer") else m for m in modules]
        files["modules.json"] = json.dumps(modules, indent=2).encode()
        moved = read(f"{next(p for p in inner if p)}/sentence_bert_config.json")
        if moved is not None:
            files["sentence_bert_config.json"] = moved
    for sub in filter(None, others):
        if local:
            found = sorted(f for f in (Path(name) / sub).rglob("*") if f.is_file())
            part = {f.relative_to(name).as_posix(): f.read_bytes() for f in found}
        else:
            config = read(f"{sub}/config.json")
            part = {f"{sub}/config.json": config} if config is not None else {}
        files.update(part or {sub: None})  # Normalize writes nothing: its folder, empty
    return files


def _label(model: Any) -> str:
    """How messages name `model`: as given (quoted), or for a learner its class and the folder it started from."""
    if hasattr(model, "dls") and hasattr(model, "model"):
        source = getattr(model, "pretrained_path", None)
        return f"<{type(model).__name__}>" + (f" (started from {str(source)!r})" if source else "")
    return repr(str(model))


def _hub_file(name: str, path: str, *, who: str = "embed",
              then: str = "the defaults stay 'cls', not normalised. Pass pooling=, normalize= and maxlen= to choose"
              ) -> str | None:
    """A hub repo's file from the cache or the hub; None where the repo has none (or `name` is no hub name); a
    warning, from `who` and saying what happens `then`, where it cannot be told (offline, not cached)."""
    from huggingface_hub import hf_hub_download, try_to_load_from_cache
    from huggingface_hub.errors import EntryNotFoundError, LocalEntryNotFoundError
    try:
        cached = try_to_load_from_cache(name, path)
    except ValueError:  # not a hub name (a missing folder): loading the model says what is wrong
        return None
    if isinstance(cached, str) or cached is not None:  # the file, or a miss the cache remembers
        return cached if isinstance(cached, str) else None
    try:
        return hf_hub_download(name, path)
    except LocalEntryNotFoundError as e:  # offline and not cached: whether it is there cannot be told
        warnings.warn(f"{who}: could not look for {path} of {name!r} ({type(e).__name__}), so whether it is a "
                      f"sentence-transformers model (mean pooling, normalised) is unknown; {then}",
                      stacklevel=user_stacklevel())
        return None
    except (EntryNotFoundError, OSError, ValueError):  # no such file, or no such repo (loading says so)
        return None


def _read_json(name: str, path: str) -> Any:
    """A JSON file of a model folder or hub repo (None where it has none)."""
    local = Path(name) / path
    if Path(name).is_dir():
        file = local if local.is_file() else None
    else:
        file = _hub_file(name, path)
    if file is None:
        return None
    try:
        return json.loads(Path(file).read_text())
    except (OSError, ValueError) as e:
        raise BertLearnError(f"{name}: {path} cannot be read ({e})") from e


def _place(encoder: nn.Module, model: Any, device: Any) -> torch.device:
    """Run where asked; a model loaded here goes to CUDA when available; a given model runs where it is."""
    from pathlib import Path

    from .device import resolve_device, same_device
    if isinstance(model, (str, Path, type(None))):
        device = resolve_device(device)
        encoder.to(device)
        return device
    here = next(encoder.parameters()).device
    if device is not None and not same_device(resolve_device(device), here):  # moving the encoder would split it
        raise BertLearnError(f"device={str(device)!r}: the model given is on {here}, and embed runs a model it was "
                             f"given where it is; move it first (model.to({str(device)!r}), for a learner "
                             f"learner.model.to(...)), or leave device out")
    return here


def _limit(encoder: nn.Module, tokenizer: Any) -> int:
    """The longest input embed gives the model by default: what its positions and its tokenizer take, 512 at most."""
    # 512 at most here, unlike a plain folder's predictors: vectors of long-context models (8,192 tokens) at bs 64
    # were batches of half a million tokens; a longer maxlen= is the caller's to give
    return min(plain_maxlen(tokenizer, position_limit(encoder)), 512)


def _folder_maxlen(folder: dict, encoder: nn.Module, model: Any) -> int | None:
    """A sentence-transformers folder's `max_seq_length` (None without one), cut to what the model's positions
    take, which is said: sentence-transformers itself would fail on a longer input."""
    maxlen, limit = folder.get("maxlen"), position_limit(encoder)
    if maxlen is None or limit is None or maxlen <= limit:
        return maxlen
    warnings.warn(f"embed: {_label(model)} says max_seq_length={maxlen} (sentence_bert_config.json), but the model "
                  f"takes at most {limit} tokens in one input; keeping {limit} (pass maxlen= to choose)",
                  stacklevel=user_stacklevel())
    return limit


def _check_sizes(encoder: nn.Module, tokenizer: Any, bs: Any, maxlen: Any) -> None:
    """bs and maxlen as the forward pass can take them, refused with the fix before the texts are encoded."""
    if isinstance(bs, bool) or not isinstance(bs, (int, np.integer)) or bs < 1:
        raise BertLearnError(f"bs={bs!r}: texts per forward pass must be a whole number >= 1 (e.g. bs=64)")
    if isinstance(maxlen, bool) or not isinstance(maxlen, (int, np.integer)):
        raise BertLearnError(f"maxlen={maxlen!r}: tokens kept per text must be a whole number (e.g. 256)")
    # as training refuses it: below the special tokens + 1 the tokenizer ignores the limit or keeps no word
    check_maxlen_room(tokenizer, maxlen)
    limit = position_limit(encoder)
    if limit is not None and maxlen > limit:
        raise BertLearnError(f"maxlen={maxlen}: the model takes at most {limit} tokens in one input (its config's "
                             f"{position_limit_source(encoder)}); pass maxlen<={limit}, or leave it out for the "
                             "model's limit")


def _check_vocabulary(encoder: nn.Module, tokenizer: Any, given: Any) -> None:
    """Refuse a tokenizer with more tokens than the model's embedding table: its ids past the table fail the lookup
    (a raw IndexError in torch.embedding) as soon as a text holds one. `given` is the tokenizer argument, as named."""
    try:
        rows = encoder.get_input_embeddings().num_embeddings
    except (AttributeError, NotImplementedError):  # no lookup table to go by: the forward pass says what is wrong
        return
    try:
        size = len(tokenizer)
    except TypeError:  # a tokenizer without a length: nothing to compare
        return
    if size > rows:  # a table larger than the tokenizer (rounded up to a multiple of 8...) is common and fine
        name = repr(str(given)) if isinstance(given, (str, Path)) else type(tokenizer).__name__
        raise ModelError(f"tokenizer={name} has {size} tokens, but the model's embedding table holds {rows} (ids 0 "
                         f"to {rows - 1}): ids past it cannot be looked up. Pass the model's own "
                         "tokenizer (tokenizer= the folder or hub name the model was saved with), or, after adding "
                         "tokens to a tokenizer, model.resize_token_embeddings(len(tokenizer)) and fine-tune")


def _lowercasing(tokenizer: Any) -> Any:
    """A copy of `tokenizer` that lowercases texts first, as sentence-transformers (>= 6) sets up a folder whose
    sentence_bert_config.json says do_lower_case: a Lowercase normalizer before the tokenizer's own, unless it has
    one. Offsets still point into the original texts; the caller's tokenizer is left as it was."""
    import copy

    from tokenizers.normalizers import Lowercase
    from tokenizers.normalizers import Sequence as NormalizerSequence
    if not getattr(tokenizer, "is_fast", False):  # embed refuses a slow tokenizer with its own message
        return tokenizer
    normalizer = tokenizer.backend_tokenizer.normalizer
    parts = list(normalizer) if isinstance(normalizer, NormalizerSequence) else \
        [normalizer] if normalizer is not None else []
    if any(isinstance(n, Lowercase) for n in parts):
        return tokenizer
    tokenizer = copy.deepcopy(tokenizer)
    tokenizer.backend_tokenizer.normalizer = NormalizerSequence([Lowercase(), *parts])
    return tokenizer


def _hidden_size(encoder: nn.Module) -> int:
    """The width of the encoder's hidden states (an ALBERT's input embeddings are narrower)."""
    size = getattr(getattr(encoder, "config", None), "hidden_size", None)
    return int(size) if isinstance(size, int) else int(encoder.get_input_embeddings().embedding_dim)


def _layers(layer: int | Sequence[int], n_hidden: int) -> list[int]:
    layers = [layer] if isinstance(layer, (int, np.integer)) else list(layer)
    if not layers or any(not -n_hidden <= int(l) < n_hidden for l in layers):
        raise BertLearnError(f"layer={layer!r} is out of range: this model has hidden states 0 (embeddings) to "
                             f"{n_hidden - 1} (last layer); -1 is the last")
    return [int(l) for l in layers]


def _hidden_states(encoder: nn.Module, ids: torch.Tensor, mask: torch.Tensor) -> list[torch.Tensor]:
    """The hidden states as the model carries them: the input of each transformer block, then the encoder's output.

    The input of block i+1, not the output of block i: DeBERTa-v2 adds a convolution to the first block's output
    and ModernBERT normalises the last one, outside the blocks; the last state is the encoder's own
    `last_hidden_state`, what sentence-transformers pools. Hooks are added for this call only:
    `output_hidden_states=True` makes transformers install permanent output-capturing hooks (local functions) on
    the model, after which a learner holding it no longer pickles (`learner.export()` fails).
    """
    from .model import layer_lists

    lists = layer_lists(getattr(encoder, "base_model", encoder))
    if not lists:
        raise BertLearnError(f"{type(encoder).__name__} has no list of transformer blocks to read hidden states from")
    captured: list[torch.Tensor] = []
    entered: list[int] = []  # the layer each capture is the input of

    def before(i: int) -> Any:
        def hook(module: nn.Module, args: tuple, kwargs: dict) -> None:
            # ALBERT calls its one block n times: each call is a layer. With parallel lists (XLM's attention, norms,
            # feed-forward) a layer is entered by the first of its modules to run, whose input is the block's
            if len(lists) == 1 or not entered or entered[-1] != i:
                captured.append(args[0] if args else kwargs["hidden_states"])
                entered.append(i)
        return hook

    handles = [block.register_forward_pre_hook(before(i), with_kwargs=True)
               for blocks in lists for i, block in enumerate(blocks)]
    try:
        out = encoder(input_ids=ids, attention_mask=mask)
    finally:
        for h in handles:
            h.remove()
    last = out.last_hidden_state if hasattr(out, "last_hidden_state") else out[0]
    return captured + [last]


def _batch_first(state: torch.Tensor, last: torch.Tensor, encoder: nn.Module, layer: Any) -> torch.Tensor:
    """A captured hidden state as (batch, length, dim), its layout read from its shape against the encoder's output.

    `last` (`last_hidden_state`) is (batch, length, dim) by transformers' contract, but the blocks may carry their
    input the other way round (XLNet's are (length, batch, dim)). `_hidden` never builds a batch with as many rows
    as tokens (but 1 x 1, where both layouts are one), so the shape tells the two apart.

    Args:
        state: a block's input, as `_hidden_states` captured it.
        last: the encoder's output for the same batch.
        encoder: the encoder (named where the state fits neither layout).
        layer: the `layer` argument, as given (named there too).
    """
    rows, width = last.shape[:2]
    if state.dim() == 3 and tuple(state.shape[:2]) == (rows, width):
        return state
    if state.dim() == 3 and tuple(state.shape[:2]) == (width, rows):
        return state.transpose(0, 1)
    raise ModelError(f"layer={layer!r}: {type(encoder).__name__} carries a hidden state of shape "
                         f"{tuple(state.shape)} into its transformer blocks, for a batch of {rows} texts of {width} "
                         f"tokens: neither (batch, length, dim) = ({rows}, {width}, ...) nor (length, batch, dim) = "
                         f"({width}, {rows}, ...), so which vector is which token's cannot be told; allowed for this "
                         "model: layer=-1, the encoder's output (last_hidden_state), which is batch-first")


def _cls_positions(tokenizer: Any, input_ids: list[list[int]]) -> list[int]:
    """Where "cls" pooling reads each text: the first occurrence of the tokenizer's CLS token in its ids.

    BERT's tokenizer puts [CLS] first, XLNet's puts <cls> last (where its classifier head reads). Where the
    tokenizer has no CLS token, or a text's ids lack it, the text's first token is read, which is said.

    Args:
        tokenizer: the tokenizer the ids come from.
        input_ids: each text's ids, as `_hidden` encoded them.
    """
    cls = getattr(tokenizer, "cls_token_id", None)
    if cls is None:
        warnings.warn(f"embed: pooling='cls', but the tokenizer ({type(tokenizer).__name__}) has no CLS token, so "
                      "each text's vector is its first token's state (position 0); pass pooling='mean' for the "
                      "average over the text's tokens, or the model's own tokenizer if it has a CLS token",
                      stacklevel=user_stacklevel())
        return [0] * len(input_ids)
    missing = [i for i, ids in enumerate(input_ids) if cls not in ids]
    if missing:
        warnings.warn(f"embed: pooling='cls', but {len(missing)} of {len(input_ids)} texts (text {missing[0]} the "
                      f"first) hold no CLS token ({tokenizer.cls_token!r}: the tokenizer did not add it), so their "
                      "vectors are their first token's state (position 0); pass pooling='mean' for the average over "
                      "the text's tokens, or a tokenizer that adds its CLS token", stacklevel=user_stacklevel())
    return [ids.index(cls) if cls in ids else 0 for ids in input_ids]


@torch.inference_mode()
def _hidden(encoder: nn.Module, tokenizer: Any, texts: list[str], layer: Any, bs: int, maxlen: int,
            device: torch.device, *, caller: str = "embed") -> tuple[list[np.ndarray], list[Any]]:
    """Per text: (n_tokens, dim) hidden states (mean of the chosen layers) and the tokenizer's encoding."""
    if not getattr(tokenizer, "is_fast", False):
        raise BertLearnError("embed needs a fast (Rust) tokenizer for word alignment; load it with use_fast=True")
    enc = tokenizer(texts, truncation=True, max_length=maxlen, return_offsets_mapping=True)
    cut = [i for i, e in enumerate(enc.encodings) if e.overflowing]
    if cut:  # said, not hidden: a vector of a text's start is not the text's vector
        # what the model's positions take: the tokenizer's model_max_length can be more (or the no-limit sentinel)
        limits = [x for x in (_tokenizer_limit(tokenizer), position_limit(encoder)) if x is not None]
        limit = min(limits) if limits else None
        larger = (f", or pass a larger maxlen (up to {limit})" if caller == "embed" and limit and maxlen < limit
                  else "")
        kept = "last" if getattr(tokenizer, "truncation_side", "right") == "left" else "first"
        warnings.warn(f"{caller}: {len(cut)} of {len(texts)} texts are longer than maxlen={maxlen} tokens (text "
                      f"{cut[0]} the first) and were cut to their {kept} {maxlen}; their vectors describe only that "
                      f"part. Split long texts{larger}", stacklevel=user_stacklevel())
    lengths = np.array([len(ids) for ids in enc["input_ids"]])
    order = np.argsort(-lengths, kind="stable")  # longest first, as in prediction: little padding per batch
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0
    was_training = encoder.training
    encoder.eval()
    out: list[np.ndarray | None] = [None] * len(texts)
    try:
        start = 0
        while start < len(texts):
            idx = order[start:start + bs]
            width = int(lengths[idx].max())
            if len(idx) == width > 1:
                # as many rows as tokens: a (length, batch, dim) state would read as (batch, length, dim), so its
                # layout could not be told from its shape; the shortest text waits for the next batch (a pad column
                # instead could pass what the model's positions take)
                idx = idx[:-1]
            start += len(idx)
            ids = torch.full((len(idx), width), pad, dtype=torch.long)
            mask = torch.zeros((len(idx), width), dtype=torch.long)
            for row, i in enumerate(idx):
                ids[row, :lengths[i]] = torch.as_tensor(enc["input_ids"][i])
                mask[row, :lengths[i]] = 1
            states = _hidden_states(encoder, ids.to(device), mask.to(device))
            asked = [layer] if isinstance(layer, (int, np.integer)) else list(layer)
            if len(states) == 1 and any(int(l) != -1 for l in asked):
                # no block hook ran (Funnel keeps its blocks in lists of lists, never called as modules): the one
                # state is the output, which layer=0 read as the embeddings
                raise BertLearnError(f"layer={layer!r}: embed found no transformer block of "
                                     f"{type(encoder).__name__} that runs as a module it can read (Funnel nests its "
                                     "blocks in lists of lists), so only layer=-1, the encoder's output, is "
                                     "available")
            chosen = _layers(layer, len(states))
            h = torch.stack([_batch_first(states[l], states[-1], encoder, layer) for l in chosen])
            h = h.float().mean(0).cpu().numpy()
            for row, i in enumerate(idx):
                out[i] = h[row, :lengths[i]]
    finally:
        encoder.train(was_training)
    return out, enc  # type: ignore[return-value]


def embed(texts: Sequence[str] | str, model: Any = None, *, layer: int | Sequence[int] = -1,
          pooling: str | None = None, tokenizer: Any = None, bs: int = 64, maxlen: int | None = None,
          device: torch.device | str | None = None, normalize: bool | None = None) -> np.ndarray | list[TokenVectors]:
    """Contextual vectors of `texts` from an encoder's hidden states.

    Args:
        texts: a text or a list of texts (an empty list gives a (0, dim) array, [] for "tokens").
        model: hub name, local folder, None for the packaged all-MiniLM-L6-v2, a Hugging Face model (then pass
            `tokenizer`), or a `BertLearner` (its fine-tuned encoder and tokenizer). A sentence-transformers
            folder whose sentence_bert_config.json says do_lower_case has its texts lowercased, as there. A
            `BertLMLearner` started from a sentence-transformers folder (the packaged MiniLM) takes that folder's
            settings (pooling, normalize, maxlen, lowercasing), as the folder its `save_model` writes does.
        layer: which hidden state: 0 is the embedding output, i the input of block i+1 as the model carries it
            (XLNet's blocks carry (length, batch, dim): read the other way round), -1 the encoder's output
            (`last_hidden_state`, after any final norm); a list averages those layers.
        pooling: "cls" (the state of the tokenizer's CLS token, wherever it puts it: first for BERT, last for
            XLNet, where its classifier reads; the first token's, with a warning, where there is none), "mean"
            (average over the text's tokens, as sentence-transformers does) or "tokens" (one vector per word, its
            word pieces averaged). None: what a sentence-transformers folder says it was trained with (the
            packaged MiniLM: "mean"), else "cls".
        tokenizer: the tokenizer, when `model` is a model object (default: the model's own); one with more tokens
            than the model's embedding table is refused.
        bs: texts per forward pass (sorted by length first, so batches carry little padding).
        maxlen: tokens kept per text (a longer text is cut, with a warning): at least the tokenizer's special
            tokens + 1 (3 for BERT), at most what the model's positions take (`max_position_embeddings`, less the
            places a RoBERTa-family table keeps below its first position). None: a sentence-transformers folder's
            `max_seq_length` (the packaged MiniLM: 256), else the model's and the tokenizer's limit (512 at most).
        device: where to run a model loaded here (default: CUDA when available). A model object or learner runs
            where it is; a device other than its own is refused, since moving the encoder alone would split it.
        normalize: scale each sentence vector to length 1. None: as a sentence-transformers folder does (its
            Normalize module; the packaged MiniLM does), else no. With the defaults, the packaged model's vectors
            are sentence-transformers' own `encode`.

    Returns:
        An (n_texts, dim) float32 array for "cls" / "mean"; for "tokens" a list of `TokenVectors`.
    """
    refuse_table(texts, "texts")  # iterating a DataFrame or dict gives its column names / keys, not its texts
    folder = _sentence_transformers_settings(model)
    if pooling is None and folder.get("others"):
        raise BertLearnError(f"model={_label(model)}: its sentence-transformers modules include {folder['others']}, "
                             "which embed does not run, so its vectors would not be the model's: pass pooling= to "
                             "take the encoder's own states knowingly, or use sentence-transformers for this model")
    if pooling is None and "pooling" in folder and folder["pooling"] is None:
        raise BertLearnError(f"model={_label(model)}: its sentence-transformers Pooling uses {folder['modes']}; embed "
                             "pools by 'cls' or 'mean' only: pass pooling= to choose one knowingly, or use "
                             "sentence-transformers for this model")
    pooling = folder.get("pooling") or "cls" if pooling is None else pooling
    if pooling not in POOLINGS:
        raise BertLearnError(f"pooling={pooling!r} is not one of {list(POOLINGS)}")
    if normalize and pooling == "tokens":
        raise BertLearnError("normalize=True scales sentence vectors (pooling 'cls' or 'mean'); pooling='tokens' "
                             "returns one vector per word: normalise those yourself, or leave normalize out")
    normalize = folder.get("normalize", False) if normalize is None else bool(normalize)
    single = isinstance(texts, str)
    texts = [texts] if single else list(texts)
    bad = [i for i, t in enumerate(texts) if not isinstance(t, str) or blank_text(t)]
    if bad:
        raise DataError(f"texts: items {bad[:10]} are not non-empty strings (a text of only whitespace or invisible "
                        "characters has nothing to embed)")
    encoder, tok = _resolve(model, tokenizer)
    _check_vocabulary(encoder, tok, tokenizer)
    if folder.get("lowercase"):
        tok = _lowercasing(tok)
    maxlen = maxlen if maxlen is not None else _folder_maxlen(folder, encoder, model) or _limit(encoder, tok)
    _check_sizes(encoder, tok, bs, maxlen)
    device = _place(encoder, model, device)
    if not texts:  # the tokenizer fails on an empty batch; no texts, no vectors (sentence-transformers' answer too)
        return [] if pooling == "tokens" else np.zeros((0, _hidden_size(encoder)), np.float32)
    states, enc = _hidden(encoder, tok, texts, layer, bs, maxlen, device)
    if pooling in ("cls", "mean"):
        if pooling == "cls":  # the CLS token's state, wherever the tokenizer puts it (XLNet's <cls> is last)
            at = _cls_positions(tok, enc["input_ids"])
            vectors = np.stack([s[p] for s, p in zip(states, at)]).astype(np.float32)
        else:
            vectors = np.stack([s.mean(0) for s in states]).astype(np.float32)
        if normalize:  # as sentence-transformers' Normalize: v / max(|v|, 1e-12)
            vectors /= np.maximum(np.linalg.norm(vectors, axis=1, keepdims=True), 1e-12)
        return vectors
    out = []
    for i, (text, s) in enumerate(zip(texts, states)):
        word_ids = enc.word_ids(i)
        offsets = enc["offset_mapping"][i]
        groups: dict[int, list[int]] = {}
        for pos, w in enumerate(word_ids):
            if w is not None:
                groups.setdefault(w, []).append(pos)
        words = []
        for p in groups.values():
            # a SentencePiece (Metaspace) piece covers the space before its word ("▁movie" is " movie"): the word
            # starts after it, as with WordPiece and byte-level BPE
            start, end = offsets[p[0]][0], offsets[p[-1]][1]
            start += len(text[start:end]) - len(text[start:end].lstrip())
            words.append(text[start:end])
        vectors = np.stack([s[p].mean(0) for p in groups.values()]).astype(np.float32) if groups else \
            np.zeros((0, s.shape[1]), np.float32)
        out.append(TokenVectors(words, vectors))
    return out


def word_in_context(word: str, sentences: Sequence[str], model: Any = None, *, layer: int | Sequence[int] = -1,
                    tokenizer: Any = None, bs: int = 64, device: torch.device | str | None = None) -> WordInContext:
    """The contextual vector of `word` in each sentence, plus its static input-embedding vector.

    The word is found case-insensitively as a whole word (first occurrence per sentence); its vector is the
    mean of the hidden states of the word pieces that cover it.

    Args:
        word: the word (one token of text, e.g. "bank").
        sentences: sentences that each contain the word (none: `contextual` is (0, dim) and `static` the
            input embeddings of the word's pieces tokenized alone).
        model, layer, tokenizer, bs, device: as for `embed`.
    """
    if not isinstance(word, str) or not word.strip() or len(word.split()) != 1:
        raise DataError(f"word={word!r} must be a single non-empty word")
    refuse_table(sentences, "sentences")
    sentences = [sentences] if isinstance(sentences, str) else list(sentences)
    pattern = re.compile(rf"(?<!\w){re.escape(word.strip())}(?!\w)", re.IGNORECASE)
    spans, missing = [], []
    for i, s in enumerate(sentences):
        m = pattern.search(s) if isinstance(s, str) else None
        if m is None:
            missing.append(i)
        else:
            spans.append(m.span())
    if missing:
        raise DataError(f"word {word!r} does not occur in sentences {missing[:10]} (e.g. {sentences[missing[0]]!r}); "
                        "every sentence must contain it as a whole word")
    encoder, tok = _resolve(model, tokenizer)
    _check_vocabulary(encoder, tok, tokenizer)
    _check_sizes(encoder, tok, bs, _limit(encoder, tok))
    device = _place(encoder, model, device)
    table = encoder.get_input_embeddings().weight.detach().float().cpu().numpy()
    if not sentences:  # the tokenizer fails on an empty batch; the static vector is then the word's pieces alone
        alone = tok(word.strip(), add_special_tokens=False)["input_ids"]
        return WordInContext(word, [], np.zeros((0, _hidden_size(encoder)), np.float32),
                             table[alone].mean(0).astype(np.float32), [])
    states, enc = _hidden(encoder, tok, sentences, layer, bs, _limit(encoder, tok), device,
                          caller="word_in_context")
    vectors, pieces = [], []
    for i, ((start, end), s) in enumerate(zip(spans, states)):
        pos = [p for p, (a, b) in enumerate(enc["offset_mapping"][i]) if b > a and a < end and b > start]
        if not pos:
            raise DataError(f"word {word!r} in sentence {i} was cut off at the model's maximum length")
        vectors.append(s[pos].mean(0))
        pieces.append([enc["input_ids"][i][p] for p in pos])
    # the input embeddings of the pieces the sentences hold: tokenizing the word alone gives other pieces where the
    # tokenizer marks a word's start (RoBERTa's "Ġmovie" in a sentence, "movie" alone) or keeps case
    static = np.mean([table[ids].mean(0) for ids in pieces], axis=0)
    return WordInContext(word, sentences, np.stack(vectors).astype(np.float32), static.astype(np.float32), spans)


def sense_separation(similarity: np.ndarray, senses: Sequence[str]) -> dict[str, float]:
    """Mean cosine similarity within senses and across senses, and the share of sentences that are on average
    closer to the other sentences of their own sense (leave one out).

    Args:
        similarity: (n, n) cosine similarities of a word's vectors in n sentences.
        senses: the sense of each sentence.
    """
    senses = np.asarray(senses)
    same_mask = (senses[:, None] == senses[None, :]) & ~np.eye(len(senses), dtype=bool)
    cross_mask = senses[:, None] != senses[None, :]
    hits = [similarity[i, same_mask[i]].mean() > similarity[i, cross_mask[i]].mean() for i in range(len(senses))
            if same_mask[i].any() and cross_mask[i].any()]
    return {"same_sense": float(similarity[same_mask].mean()), "cross_sense": float(similarity[cross_mask].mean()),
            "closest_to_own_sense": float(np.mean(hits)) if hits else float("nan")}


def project_2d(vectors: np.ndarray) -> np.ndarray:
    """Principal-component projection of the rows of `vectors` to 2-D (for plotting).

    Args:
        vectors: (n, d) vectors, one per row.
    """
    v = np.asarray(vectors, dtype=np.float64)
    v = v - v.mean(0)
    _, _, vt = np.linalg.svd(v, full_matrices=False)
    return v @ vt[:2].T
