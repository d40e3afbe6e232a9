"""Token classification (NER): `BertNERLearner`, a `TaskLearner` around `AutoModelForTokenClassification`, and the
pickle-free predictors of its saved folders (`BertNERPredictor`, `OnnxNERPredictor`).

What the task adds to the core: the head (sized and named for the tags), the loss (cross-entropy over the tagged
pieces, -100 elsewhere), entity-level metrics (seqeval, conlleval-compatible: micro precision, recall and F1 plus
per-type scores and word accuracy), and two kinds of prediction. `predict_tokens(sentences)` takes pre-split words
and gives one tag per word, what CoNLL-style evaluation needs. `predict(text)` / `predict_batch(texts)` take raw text
and give entities with character offsets, as `pipeline('token-classification', aggregation_strategy='first')` does:
the text is tokenized with offsets, a word is a token and the sub-word tokens after it, a word takes the tag and
probability of its first piece, and neighbouring words of one entity are grouped (I- continues, B- opens; BIOES and
BILOU tags are read as B-/I- for grouping, which the pipeline does not do).
"""

from __future__ import annotations

import contextlib
import itertools
import logging
import unicodedata
import warnings
from pathlib import Path
from typing import Any, Callable, Iterator, Sequence

import numpy as np
import pandas as pd
import torch
from fastai.callback.core import Callback
from fastai.learner import Metric
from fastcore.foundation import L
from seqeval.metrics.sequence_labeling import get_entities

from ..atomic import atomic_dir
from ..compat import fast_bert_validate_order
from ..data import BertNERDataBunch, TagEncoder, TaggedDataLoader, TaggedDataset
from ..data.tagged import IGNORE_INDEX, word_pieces
from ..data.conll import entity_type, split_words, to_seqeval
from ..data.frames import refuse_table
from ..device import amp_dtype_for, resolve_device
from ..distributed import main_process_only, rank_world
from ..errors import BertLearnError, DataError, ModelError, NotFittedError, user_stacklevel
from ..learner import TaskLearner, factory_setup, prepare_model, sample_accumulation, training_callbacks
from ..losses import CrossEntropyLossFlat
from ..metrics import to_fastai_metrics
from ..model import (compile_model, load_labelled_head, load_pretrained, match_head_to_labels, position_limit,
                     quiet_hub, resolve_pretrained)
from ..predict import check_fast_bert_predictor_args, onnx_graph_file, refuse_device_as_label_path
from ..saved import (SETTINGS_FILE, check_replaceable, check_saved_labels, plain_maxlen, settings_for,
                     weights_digest, write_settings)
from ..unpadded import PROBE_TEXT, skipping_padded_rows, unpad_linears

__all__ = ["BertNERLearner", "BertNERPredictor", "OnnxNERPredictor", "NERTagger", "EntityMetric", "TagCollector",
           "entity_metrics", "entity_scores", "entity_report", "tag_loss", "group_entities", "text_words",
           "WORD_SPLITS"]

_log = logging.getLogger(__name__)

TagLogits = Callable[[TaggedDataLoader], Iterator[tuple[np.ndarray, np.ndarray]]]

# how raw text is cut into words at prediction: "tokenizer" (the tokenizer's own words, as the token-classification
# pipeline finds them) or "split_words" (`bertlearn.data.conll.split_words`, how doccano JSONL texts are cut for
# training: a model trained on JSONL reads raw text as the same words). Saved as bertlearn.json's "word_split"
WORD_SPLITS = ("tokenizer", "split_words")


def tag_loss() -> CrossEntropyLossFlat:
    """Cross-entropy over every tagged piece; pieces tagged -100 (special tokens, padding, a word's later pieces)
    add nothing."""
    return CrossEntropyLossFlat(ignore_index=-100, axis=-1)


# --- scores ---

def _names(sentences: list[list[int]], labels: Sequence[str]) -> list[list[str]]:
    # the model's own tag names: seqeval's spellings (BILOU's U-/L- as S-/E-, "PER" as "I-PER") came back from
    # validate(return_preds=True) and show_results, and beside predict_tokens' names a correct tag compared unequal;
    # the scores read them through to_seqeval themselves
    return [[labels[t] for t in s] for s in sentences]


def entity_scores(gold: list[list[str]], pred: list[list[str]]) -> dict[str, float]:
    """Entity-level micro precision, recall and F1 (seqeval's default, conlleval-compatible mode) and word accuracy.

    Args:
        gold: per sentence, the true tag of each word.
        pred: per sentence, the predicted tag of each word.
    """
    from seqeval.metrics import accuracy_score, f1_score, precision_score, recall_score
    gold, pred = [[to_seqeval(t) for t in s] for s in gold], [[to_seqeval(t) for t in s] for s in pred]
    return {"precision": float(precision_score(gold, pred, zero_division=0)),
            "recall": float(recall_score(gold, pred, zero_division=0)),
            "f1": float(f1_score(gold, pred, zero_division=0)), "accuracy": float(accuracy_score(gold, pred))}


def entity_report(gold: list[list[str]], pred: list[list[str]]) -> pd.DataFrame:
    """Per entity type: precision, recall, F1 and support (seqeval's classification report), plus the micro, macro
    and weighted averages.

    Args:
        gold: per sentence, the true tag of each word.
        pred: per sentence, the predicted tag of each word.
    """
    from seqeval.metrics import classification_report
    gold, pred = [[to_seqeval(t) for t in s] for s in gold], [[to_seqeval(t) for t in s] for s in pred]
    report = classification_report(gold, pred, output_dict=True, zero_division=0)
    table = pd.DataFrame(report).T.rename(columns={"f1-score": "f1"})
    return table.astype({"support": int})  # a count (seqeval's dict makes the column float)


class TagCollector:
    """What the entity metrics of one learner share: each validation batch's predicted tags (kept on the device) and
    dataset rows, taken once per batch however many metrics read them, put back into sentences and scored once."""

    def __init__(self):
        self.reset()

    def reset(self) -> None:
        """Forget the last validation's batches (fastai resets metrics before each pass)."""
        self.rows, self.preds, self.dataset, self._tags, self._scores, self._last = [], [], None, None, None, None

    def __getstate__(self) -> dict:
        return {}  # export pickles the metrics: the last validation's predictions and data stay behind

    def __setstate__(self, state: dict) -> None:
        self.reset()

    def accumulate(self, learn: Any) -> None:
        """Keep this batch's predicted tags and rows (once per batch).

        Args:
            learn: the learner; its `dl` is the `TaggedDataLoader` being validated.
        """
        if self._last is learn.pred:
            return
        self._last = learn.pred
        self.dataset = learn.dl.dataset
        self.rows.append(np.array(learn.dl.current_rows))
        self.preds.append(learn.pred.argmax(-1).to(torch.int16))
        self._tags = self._scores = None

    def tags(self) -> tuple[list[list[str]], list[list[str]]] | None:
        """The validation sentences' true and predicted word tags (every rank's rows under DDP)."""
        if self._tags is None and self.dataset is not None:
            rows = np.concatenate(self.rows) if self.rows else np.zeros(0, np.int64)
            width = max((p.shape[1] for p in self.preds), default=0)
            preds = np.concatenate([torch.nn.functional.pad(p, (0, width - p.shape[1])).cpu().numpy()
                                    for p in self.preds]) if self.preds else np.zeros((0, 0), np.int16)
            if rank_world()[1] > 1:
                from ..distributed import gather_objects
                parts = gather_objects((rows, preds))
                width = max(p.shape[1] for _, p in parts)
                rows = np.concatenate([r for r, _ in parts])
                preds = np.concatenate([np.pad(p, ((0, 0), (0, width - p.shape[1]))) for _, p in parts])
            ds, labels = self.dataset, self.dataset.encoder.labels
            pred = ds.word_tags_of(rows, preds)
            seen = [i for i, p in enumerate(pred) if -1 not in p]
            if len(seen) < len(pred):  # a word left unread would count as predicted O and pull recall down
                warnings.warn(f"entity scores: {len(pred) - len(seen)} of {len(pred)} validation sentences were not "
                              f"predicted (the pass stopped early, e.g. ShortEpochCallback); the scores count the "
                              f"{len(seen)} that were{' (NaN)' if not seen else ''}", stacklevel=user_stacklevel())
            self._tags = (_names([ds.word_tags[i] for i in seen], labels), _names([pred[i] for i in seen], labels))
        return self._tags

    def scores(self) -> dict[str, float] | None:
        """`entity_scores` of the collected tags."""
        if self._scores is None and self.tags() is not None:
            # no sentence whole (a pass stopped in the first batch of long, windowed texts): nothing to score
            self._scores = entity_scores(*self.tags()) if self.tags()[0] else \
                dict.fromkeys(("precision", "recall", "f1", "accuracy"), float("nan"))
        return self._scores


class EntityMetric(Metric):
    """A fastai metric of the whole validation set at the entity level: "precision", "recall", "f1" (micro, seqeval)
    or "accuracy" (of word tags). Each batch's predicted tags stay on the device with the batch's dataset rows; at the
    end the rows' words are put back into sentences (windows of one sentence joined) and scored once. Metrics made by
    `entity_metrics()` share one `TagCollector`.

    Args:
        kind: "precision", "recall", "f1" or "accuracy".
        collector: the `TagCollector` to read (default: one of its own).
    """

    def __init__(self, kind: str = "f1", collector: TagCollector | None = None):
        if kind not in ("precision", "recall", "f1", "accuracy"):
            raise BertLearnError(f"EntityMetric(kind={kind!r}): pass 'precision', 'recall', 'f1' or 'accuracy'")
        self.kind, self.collector = kind, collector if collector is not None else TagCollector()

    def reset(self) -> None:
        """Empty the shared collector before a validation pass."""
        self.collector.reset()

    def accumulate(self, learn: Any) -> None:
        """Hand this batch to the collector (fastai calls it after each validation batch).

        Args:
            learn: the learner.
        """
        self.collector.accumulate(learn)

    def tags(self) -> tuple[list[list[str]], list[list[str]]] | None:
        """The validation sentences' true and predicted word tags."""
        return self.collector.tags()

    @property
    def value(self) -> float | None:
        """The score of the last validation."""
        scores = self.collector.scores()
        return None if scores is None else scores[self.kind]

    @property
    def name(self) -> str:
        """The column name: the kind."""
        return self.kind


def entity_metrics() -> list[EntityMetric]:
    """The default NER metrics: entity precision, recall, F1 and word accuracy, sharing one collector."""
    shared = TagCollector()
    return [EntityMetric(k, shared) for k in ("precision", "recall", "f1", "accuracy")]


# --- from token scores to entities ---

def _subword_prefix(tokenizer: Any) -> str | None:
    # WordPiece's "##": the tokenizer marks a word's later pieces, so a word's pieces in a text are its pieces alone
    model = getattr(getattr(tokenizer, "backend_tokenizer", None), "model", None)
    return getattr(model, "continuing_subword_prefix", None) or None


def _is_subword(tokenizer: Any, token: str, text: str, start: int, end: int) -> bool:
    # word-aware tokenizers (a continuing-subword prefix such as WordPiece's ##) mark later pieces with it. The
    # pipeline tests len(token) != len(text[start:end]) instead, which normalization breaks: an uncased tokenizer
    # strips the accent of a decomposed "Sa\u0303o" (4 characters) to "sao" (3), and the pipeline then glues the
    # word to the one before it. Others fall back, as the pipeline does, to "no space before it"
    prefix = _subword_prefix(tokenizer)
    if prefix:
        return token.startswith(prefix)
    if id(tokenizer) not in _GUESSED:
        _GUESSED.add(id(tokenizer))
        warnings.warn(f"{type(tokenizer).__name__} marks no sub-words (no continuing-subword prefix such as '##'): "
                      "words of raw text are guessed as the pipeline does, a token not preceded by a space "
                      "continuing the word before it, which joins punctuation to its word; predict_tokens on "
                      "pre-split words has no such guess", stacklevel=user_stacklevel())
    return start > 0 and not text[start - 1].isspace()


_GUESSED: set[int] = set()  # tokenizers whose word guessing was said


def text_words(tokenizer: Any, texts: Sequence[str], *, split: str = "tokenizer") -> list[list[dict]]:
    """The words of raw texts as token classification reads them: per text, per word, its pieces' ids, tokens and
    character span. With `split="tokenizer"` words are found in the text's tokens (as the token-classification
    pipeline finds them); with `split="split_words"` they are `split_words`' (how JSONL texts are cut for training:
    runs of letters, digits, underscores and combining marks, and each other non-space character). Either way their
    pieces are those of the words encoded as pre-split words, as training encoded them (for a tokenizer without a
    sub-word prefix they differ from the text's: a space mark of its own, "Ġ" or "▁", before a word, a newline or a
    run of spaces before it).

    Args:
        tokenizer: a fast tokenizer.
        texts: the texts.
        split: "tokenizer" or "split_words" (`WORD_SPLITS`).
    """
    if split not in WORD_SPLITS:
        raise BertLearnError(f"split={split!r} is not one of {list(WORD_SPLITS)}")
    if not texts:
        return []
    if split == "split_words":
        return _split_text_words(tokenizer, texts)
    enc = tokenizer(list(texts), add_special_tokens=False, return_offsets_mapping=True)
    unk = tokenizer.unk_token_id
    # WordPiece's unknown token stands for a whole word; SentencePiece's and BPE's for a character inside one
    whole_unk = _subword_prefix(tokenizer) is not None  # and a word's pieces in a text are its pieces alone
    space: dict[int, bool] = {}  # per token id: decodes to nothing but white space ("Ġ", "▁", "Ċ", "ĠĠ")
    out = []
    for i, text in enumerate(texts):
        ids, offsets = enc["input_ids"][i], enc["offset_mapping"][i]
        tokens = tokenizer.convert_ids_to_tokens(ids)
        words: list[dict] = []
        after_space = True
        for tid, tok, (s, e) in zip(ids, tokens, offsets):
            if tid not in space:
                space[tid] = tid != unk and not tokenizer.convert_tokens_to_string([tok]).strip()
            if space[tid]:  # part of no word (pre-split words hold no white space); the next token opens one
                after_space = True
                continue
            while s < e and text[s].isspace():  # offsets that take in the space before the piece (Metaspace)
                s += 1
            if s >= e and e > 0 and text[e - 1].isspace():
                # a piece of white space alone, which decodes to more than space: one of the bytes of a non-break or
                # ideographic space that byte-level BPE (or SentencePiece) splits into several pieces. Part of no word
                after_space = True
                continue
            # pieces of one character (an emoji's or a CJK character's bytes, a ligature) share its offsets
            same_char = bool(words) and not whole_unk and s < words[-1]["end"]
            sub = same_char or (not after_space and not (whole_unk and tid == unk)
                                and _is_subword(tokenizer, tok, text, s, e))
            after_space = False
            if tid == unk:
                tok = text[s:e]
            if words and sub:
                w = words[-1]
                w["ids"].append(tid), w["tokens"].append(tok)
                w["end"] = e
            else:
                words.append({"ids": [tid], "tokens": [tok], "start": s, "end": e})
        # a combining mark the normalizer dropped (a decomposed "Jose\u0301") still ends its word, up to the next
        for w, nxt in zip(words, [*(v["start"] for v in words[1:]), len(text)]):
            while w["end"] < nxt and unicodedata.combining(text[w["end"]]):
                w["end"] += 1
        out.append(words)
    if not whole_unk:
        _as_split_words(tokenizer, texts, out)
    return out


def _split_text_words(tokenizer: Any, texts: Sequence[str]) -> list[list[dict]]:
    # the words `split_words` cuts (as JSONL texts are cut for training), each with the pieces it has encoded alone,
    # as the training data's words were encoded (a word the tokenizer drops: the unknown token)
    cut = [split_words(t) for t in texts]
    pieces = word_pieces(tokenizer, [[w for w, _, _ in ws] for ws in cut])
    unk = tokenizer.unk_token_id if tokenizer.unk_token_id is not None else tokenizer.pad_token_id or 0
    prefix = _subword_prefix(tokenizer)
    out = []
    for ws, per_word in zip(cut, pieces):
        words = []
        for (w, s, e), ids in zip(ws, per_word):
            ids = list(ids) or [unk]
            # a word with an unknown piece is shown as written (its unknown token would decode to "[UNK]"); the
            # pieces of a word the tokenizer cuts in several ("mary", "_", "jones") decode as one word
            tokens = [w] if unk in ids else tokenizer.convert_ids_to_tokens(ids)
            if prefix:
                tokens = tokens[:1] + [t if t.startswith(prefix) else prefix + t for t in tokens[1:]]
            words.append({"ids": ids, "tokens": tokens, "start": s, "end": e})
        out.append(words)
    return out


def _as_split_words(tokenizer: Any, texts: Sequence[str], words: list[list[dict]]) -> None:
    # each word's ids and tokens become those of the word encoded alone, as pre-split words are in training
    which = [i for i, ws in enumerate(words) if ws]
    if not which:
        return
    pieces = word_pieces(tokenizer, [[texts[i][w["start"]:w["end"]] for w in words[i]] for i in which])
    unk = tokenizer.unk_token_id if tokenizer.unk_token_id is not None else tokenizer.pad_token_id or 0
    for i, per_word in zip(which, pieces):
        for w, ids in zip(words[i], per_word):
            w["ids"] = ids or [unk]  # a word the tokenizer drops alone: the unknown token, as in training
            if unk not in w["ids"]:  # else the text's tokens stay, which spell the unknown part with its letters
                w["tokens"] = tokenizer.convert_ids_to_tokens(w["ids"])


def group_entities(words: list[dict], probs: np.ndarray, labels: Sequence[str], tokenizer: Any, *,
                   group: bool = True, exclude: Sequence[str] | None = ("O",)) -> list[dict]:
    """Entities from one text's words and their first pieces' probabilities (aggregation "first").

    Args:
        words: the text's words (`text_words`).
        probs: (n_words, n_labels) probabilities of each word's first piece.
        labels: the tags.
        tokenizer: the tokenizer (it joins tokens back into words).
        group: join the words of one entity (`{'entity_group', 'score', 'word', 'start', 'end'}`); False: one
            `{'entity', 'score', 'word', 'start', 'end', 'index'}` per word.
        exclude: tags or entity types left out (None: none); grouped, an entity whose type or first word's tag is
            listed (fast-bert left out a group by its first tag: "B-PER" drops the persons that open with it). Where
            "O" is not listed, each run of O words between entities is a group of its own, `entity_group` "O" (as
            fast-bert grouped them, and the pipeline with `ignore_labels=[]`).
    """
    tagged = []
    for k, (w, p) in enumerate(zip(words, probs)):
        best = int(p.argmax())
        tagged.append({"entity": labels[best], "score": float(p[best]),
                       "word": tokenizer.convert_tokens_to_string(w["tokens"]), "start": int(w["start"]),
                       "end": int(w["end"]), "index": k})
    exclude = {exclude} if isinstance(exclude, str) else set(exclude or ())
    if not group:
        return [t for t in tagged if t["entity"] not in exclude and entity_type(t["entity"]) not in exclude]
    # the entities are the chunks that scoring counts (seqeval's conlleval rules, on the tags as scoring reads
    # them), so `predict` and `validate`/`bertlearn eval` agree even on ill-formed tag runs such as S-PER I-PER
    chunks = list(get_entities([to_seqeval(t["entity"]) for t in tagged]))
    if "O" not in exclude:  # the runs of words outside every entity, O groups (fast-bert returned them unless excluded)
        inside = np.zeros(len(tagged), bool)
        for _, first, last in chunks:
            inside[first:last + 1] = True
        k = 0
        while k < len(tagged):
            if inside[k]:
                k += 1
                continue
            last = k
            while last + 1 < len(tagged) and not inside[last + 1]:
                last += 1
            chunks.append(("O", k, last))
            k = last + 1
        chunks.sort(key=lambda c: c[1])
    out = []
    for kind, first, last in chunks:
        run = tagged[first:last + 1]
        if kind in exclude or run[0]["entity"] in exclude:
            continue
        # the run's tokens decoded once: the pipeline decodes the decoded words again, which garbles byte-level
        # BPE's non-ASCII words ("café" read back through the byte table)
        out.append({"entity_group": kind, "score": float(np.mean([t["score"] for t in run])),
                    "word": tokenizer.convert_tokens_to_string([p for w in words[first:last + 1] for p in w["tokens"]]),
                    "start": run[0]["start"], "end": run[-1]["end"]})
    return out


class NERTagger:
    """Tagging with a token-classification model, whatever runs it (the learner's PyTorch model, a saved folder, ONNX
    Runtime): words to tags, raw texts to entities. Subclasses supply `tag_logits`.

    Args:
        encoder: the `TagEncoder` the model was trained with.
        bs: the most sentences in a batch (on a CPU a call's longest-first sentences are cut into narrower batches where
            padding would cost more than a batch: `bertlearn.data.padding_aware_cuts`; set `batch_overhead = None` on
            the predictor to keep every `bs` sentences together).
    """

    # on a CPU a call's longest-first sentences are cut into narrower batches where padding would cost more than a
    # batch ("auto": bertlearn.device.batch_overhead_for); None keeps every bs sentences in one batch
    batch_overhead: int | str | None = "auto"
    # on a CPU, in float32, a saved folder's linear layers skip the padded rows of a batch with much padding
    # (bertlearn.unpadded), where a probe at load time found the outputs unchanged (`padding_skippable`)
    skip_padding: bool = True
    padding_skippable: bool = False
    # how raw texts are cut into words (`WORD_SPLITS`): as the training data's words were cut. "split_words" for a
    # model trained on JSONL (its saved bertlearn.json says "word_split"), else "tokenizer"
    word_split: str = "tokenizer"

    def __init__(self, encoder: TagEncoder, *, bs: int = 64):
        self.encoder, self.bs = encoder, int(bs)

    @property
    def labels(self) -> list[str]:
        return self.encoder.labels

    def tag_logits(self, dl: TaggedDataLoader) -> Iterator[tuple[np.ndarray, np.ndarray]]:
        """Per batch of `dl`: its dataset rows and the (rows, width, n_labels) float32 logits.

        Args:
            dl: the loader.
        """
        raise NotImplementedError

    def _first_piece_probs(self, ds: TaggedDataset) -> list[np.ndarray]:
        # per sentence, the probabilities at each word's first piece; a batch's other positions are dropped as soon
        # as it is read, so memory holds words, not tokens
        dl = TaggedDataLoader(ds, bs=self.bs, device=getattr(self, "device", None), batch_overhead=self.batch_overhead)
        out = [np.zeros((len(w), len(self.labels)), np.float32) for w in ds.words]
        for rows, logits in self.tag_logits(dl):
            for line, r in enumerate(rows):
                pos = np.asarray(ds.word_pos[int(r)], dtype=np.int64)
                start = int(ds.first_word[r])
                out[int(ds.owner[r])][start:start + len(pos)] = _softmax(logits[line, pos])
        return out

    def predict_tokens(self, sentences: Sequence[Sequence[str]]) -> list[list[str]]:
        """One tag per word of pre-split sentences (a sentence longer than maxlen is tagged window by window).

        Args:
            sentences: one list of words per sentence.
        """
        sentences = _check_sentences(sentences)
        probs = self._first_piece_probs(self.encoder.dataset(sentences))
        return [[self.labels[int(k)] for k in p.argmax(-1)] for p in probs]

    def predict_batch(self, texts: Sequence[str], *, group: bool = True,
                      exclude_entities: Sequence[str] | None = ("O",)) -> list[list[dict]]:
        """Per text, its entities `{'entity_group', 'word', 'start', 'end', 'score'}` with character offsets (as
        the token-classification pipeline with aggregation "first" gives them).

        Args:
            texts: raw texts.
            group: join each entity's words (fast-bert's `group`); False: one dict per word with its tag.
            exclude_entities: tags or entity types left out (fast-bert's; default: O; None: none); grouped, an
                entity whose type or first word's tag is listed. Where O is not listed, each run of O words between
                entities is returned as a group, `entity_group` "O" (as fast-bert and the pipeline with
                `ignore_labels=[]` return them).

        Raw texts are cut into words as the training data was: the tokenizer's words (as the pipeline finds them),
        or, for a model trained on doccano JSONL, `split_words`' (`word_split`; bertlearn.json's "word_split").
        """
        texts = _check_texts(texts)
        if not texts:
            return []
        words = text_words(self.encoder.tokenizer, texts, split=self.word_split)
        ds = self.encoder.dataset_from_pieces([[w["ids"] for w in ws] for ws in words],
                                              [[w["tokens"][0] for w in ws] for ws in words])
        probs = self._first_piece_probs(ds)
        return [group_entities(ws, p, self.labels, self.encoder.tokenizer, group=group, exclude=exclude_entities)
                for ws, p in zip(words, probs)]

    def predict(self, text: str, group: bool = True, exclude_entities: Sequence[str] | None = ("O",)) -> list[dict]:
        """The entities of one text (see `predict_batch`).

        Args:
            text: the text.
            group: join each entity's words; False: one dict per word.
            exclude_entities: tags or entity types left out.
        """
        if not isinstance(text, str):
            raise DataError(f"predict(text) takes one text, got {type(text).__name__} {str(text)[:60]}: pre-split "
                            "words go to predict_tokens([words]), several texts to predict_batch(texts)")
        return self.predict_batch([text], group=group, exclude_entities=exclude_entities)[0]


def _softmax(logits: np.ndarray) -> np.ndarray:
    # as the pipeline computes it, in float32 numpy, so scores match it to float precision
    shifted = np.exp(logits - logits.max(-1, keepdims=True))
    return shifted / shifted.sum(-1, keepdims=True)


def _check_texts(texts: Any) -> list[str]:
    if isinstance(texts, str):
        raise DataError("predict_batch(texts) takes a list of texts; for one text call predict(text)")
    refuse_table(texts, "texts")
    texts = list(texts)
    bad = [(i, t) for i, t in enumerate(texts) if not isinstance(t, str)]
    if bad:
        raise DataError(f"texts[{bad[0][0]}] is {type(bad[0][1]).__name__} {bad[0][1]!r}, not a string; pass raw "
                        "texts (predict_tokens takes pre-split words)")
    return texts


def _check_sentences(sentences: Any) -> list[list[str]]:
    sentences = [sentences] if isinstance(sentences, str) else list(sentences)
    if any(isinstance(s, str) for s in sentences):
        raise DataError("predict_tokens(sentences) takes lists of words, e.g. [['Jane', 'lives', 'in', 'Paris']]; "
                        "for raw text call predict(text)")
    return [[str(w) for w in s] for s in sentences]


_FLUSH = 32  # batches whose logits stay on the device before they are copied back together


def _torch_run(model: torch.nn.Module, amp_dtype: torch.dtype | None, skip_padding: bool = False) -> TagLogits:
    def run(dl: TaggedDataLoader) -> Iterator[tuple[np.ndarray, np.ndarray]]:
        was_training = model.training
        model.eval()
        device = next(model.parameters()).device
        amp = torch.autocast(device.type, dtype=amp_dtype) if amp_dtype else contextlib.nullcontext()
        batches = iter(dl)
        try:
            while True:
                # per-token logits stay on the device for a few batches (the host queues the next ones meanwhile),
                # then come back together: a copy per _FLUSH batches, memory bounded. The yield is outside the
                # inference-mode block, whose switch is global to the thread, not to this generator
                with torch.inference_mode(), amp:
                    kept = []
                    for b in itertools.islice(batches, _FLUSH):
                        mask = b[1].to(device, non_blocking=True)
                        with skipping_padded_rows(mask if skip_padding else None):
                            logits = model(input_ids=b[0].to(device, non_blocking=True),
                                           attention_mask=mask).logits.float()
                        kept.append((dl.current_rows, logits))
                    kept = [(rows, logits.cpu().numpy()) for rows, logits in kept]
                if not kept:
                    return
                yield from kept
        finally:
            model.train(was_training)
    return run


# --- the learner ---

class BertNERLearner(NERTagger, TaskLearner):
    """A fastai `Learner` whose `model` is a plain Hugging Face `AutoModelForTokenClassification`.

    Build it with `from_pretrained_model`. `fit(epochs, lr)` runs fastai's one-cycle schedule; `validate()` gives the
    loss, entity-level precision, recall and F1 (micro and per type) and word accuracy.

    Args:
        dls: a `BertNERDataBunch`.
        model: the Hugging Face model.
        **kwargs: what `TaskLearner` takes, and fastai's `Learner` options. The loss defaults to `tag_loss()`.
    """

    other_tasks_hint = ("a token-classification learner predicts entities (predict, predict_batch) and word tags "
                        "(predict_tokens); classification and masked-LM methods belong to BertLearner / BertLMLearner")

    def same_targets_fix(self) -> str:
        """How to read tagged sentences numbered as this learner's tags: the end of `check_targets_match`'s message."""
        return ("Read them with this learner's tags: BertNERDataBunch.from_sentences(train, test, labels=learn.labels) "
                "(or a label_file listing learn.labels in order), or score with "
                "entity_scores(tags, learn.predict_tokens(words))")

    def __init__(self, dls: BertNERDataBunch, model: torch.nn.Module, **kwargs: Any):
        if kwargs.get("loss_func") is None:
            kwargs["loss_func"] = tag_loss()
        TaskLearner.__init__(self, dls, model, **kwargs)
        # sentences read from raw texts (doccano JSONL) were cut into words by `split_words`: raw text at
        # prediction is cut alike, here and in the saved folders (bertlearn.json's "word_split")
        train = getattr(dls, "train", None)
        if getattr(getattr(train, "dataset", None), "texts", None) is not None:
            self.word_split = "split_words"

    @property
    def metrics(self) -> L:
        """The fastai metrics validation reports."""
        return self._metrics

    @metrics.setter
    def metrics(self, v: Any) -> None:
        # fastai wraps a plain function (or bertlearn a fast-bert dict) in AvgMetric, a mean of per-batch values
        # weighted by rows (sentences), not the set's score: each is scored once on every tagged token of the set,
        # whether set by the factory, the constructor or `learn.metrics = [...]`
        self._metrics = L(to_fastai_metrics(v if v is None or isinstance(v, (dict, str)) else list(L(v)),
                                            ignore_index=IGNORE_INDEX))

    @property
    def bs(self) -> int:
        return self.dls.valid.bs

    @property
    def encoder(self) -> TagEncoder:
        return self.dls.encoder

    @classmethod
    def from_pretrained_model(cls, databunch: BertNERDataBunch | None = None,
                              pretrained_path: str | Path | None = None, output_dir: str | Path | None = None,
                              device: torch.device | str | None = None, logger: logging.Logger | None = None,
                              finetuned_wgts_path: str | Path | None = None, multi_gpu: bool = False,
                              is_fp16: bool = False, *, metrics: Sequence[Any] | None = None,
                              grad_accumulation_steps: int = 1, max_grad_norm: float | None = 1.0,
                              adam_epsilon: float = 1e-8, freeze_transformer_layers: bool = False,
                              callbacks: Sequence[Callback] | None = None, learning_rate: float = 5e-5,
                              epochs: int = 3, optimizer_type: str = "adamw", warmup_steps: int | None = None,
                              schedule_type: str | None = None, logging_steps: int | None = None,
                              ignore_mismatched_sizes: bool = False, seed: int | None = None,
                              log_dir: str | Path | None = None, gradient_checkpointing: bool = False,
                              compile: bool | dict = False, cuda_graphs: bool | str = "auto",
                              **kwargs: Any) -> "BertNERLearner":
        """Load a pretrained model with a token-classification head sized for the databunch's tags.

        Args:
            databunch: the `BertNERDataBunch`.
            pretrained_path: hub name, local folder, or None / "all-MiniLM-L6-v2" for the packaged default.
            output_dir: where `save_model`, `export` and checkpoints go (default: the data folder).
            device: torch device; None picks CUDA when available.
            logger: a `logging.Logger` for per-epoch metrics, or a TensorBoard `SummaryWriter`.
            finetuned_wgts_path: further-pretrained encoder weights to load.
            multi_gpu: fast-bert's flag (DDP runs under `accelerate launch` / `torchrun`).
            is_fp16: mixed precision (bf16 autocast where the hardware has it; see `BertLearner`).
            metrics: fastai metrics (kept as they are), functions `f(y_pred, y_true)` or fast-bert dicts
                `{'name': ..., 'function': f}` ([]: none, the loss alone); default (None): entity precision, recall,
                F1 and word accuracy (`EntityMetric`). A function is called once per validation with the whole set: y_pred the
                (tokens, n_tags) float32 logits and y_true the (tokens,) int64 tag indices of every tagged
                sub-word (each word's first piece; every piece with `label_all_tokens`), on the CPU, the positions
                without a tag (-100: special tokens, padding, later pieces) left out.
            grad_accumulation_steps, max_grad_norm, adam_epsilon, freeze_transformer_layers, callbacks,
            learning_rate, epochs, optimizer_type, warmup_steps, schedule_type, logging_steps,
            ignore_mismatched_sizes, seed, log_dir, gradient_checkpointing, compile, cuda_graphs: as for
                `BertLearner.from_pretrained_model`.
            **kwargs: anything else goes to fastai's `Learner` (as for `BertLearner.from_pretrained_model`);
                fast-bert options without effect are named once.
        """
        if databunch is None and "dataBunch" in kwargs:
            databunch = kwargs.pop("dataBunch")
        if not isinstance(databunch, BertNERDataBunch):
            raise DataError(f"BertNERLearner.from_pretrained_model needs a BertNERDataBunch as its first argument, got "
                            f"{type(databunch).__name__}; build one with BertNERDataBunch(data_dir, tokenizer, ...)")
        opt_func, device = factory_setup("BertNERLearner.from_pretrained_model", kwargs, device=device,
                                         optimizer_type=optimizer_type, adam_epsilon=adam_epsilon,
                                         multi_gpu=multi_gpu, logging_steps=logging_steps,
                                         tensorboard=log_dir is not None or hasattr(logger, "add_scalar"),
                                         cuda_graphs=cuda_graphs, compile=compile, seed=seed, databunch=databunch)
        model, fresh_head = cls.load_head(databunch, pretrained_path, finetuned_wgts_path=finetuned_wgts_path,
                                          ignore_mismatched_sizes=ignore_mismatched_sizes)
        prepare_model(model, databunch, device, gradient_checkpointing=gradient_checkpointing, compile=compile)
        cbs, logger = training_callbacks([*L(callbacks), *L(kwargs.pop("cbs", None))], device=device, cuda_graphs=cuda_graphs, log_dir=log_dir,
                                         logger=logger, logging_steps=logging_steps, max_grad_norm=max_grad_norm,
                                         accumulation=sample_accumulation(grad_accumulation_steps, databunch.bs))
        learner = cls(databunch, model, loss_func=tag_loss(), opt_func=opt_func,
                      # None: the defaults; [] is none, as in fast-bert. Functions: see the metrics setter
                      metrics=entity_metrics() if metrics is None else metrics,
                      cbs=cbs, path=Path(output_dir) if output_dir is not None else Path(databunch.path),
                      py_logger=logger, fresh_head=fresh_head, default_lr=float(learning_rate),
                      default_epochs=int(epochs), optimizer_type=optimizer_type, adam_epsilon=adam_epsilon,
                      warmup_steps=warmup_steps, schedule_type=schedule_type,
                      grad_accumulation_steps=grad_accumulation_steps, **kwargs)
        return learner.finish_setup(is_fp16=is_fp16, freeze=freeze_transformer_layers, seeded=seed is not None)

    @classmethod
    def load_head(cls, databunch: BertNERDataBunch, pretrained_path: str | Path | None, *,
                  finetuned_wgts_path: str | Path | None = None, ignore_mismatched_sizes: bool = False
                  ) -> tuple[torch.nn.Module, bool]:
        """The pretrained model with a token-classification head sized and named for the tags. Returns the model
        and whether its head is new.

        Args:
            databunch: the data.
            pretrained_path: hub name, local folder, or None for the packaged default.
            finetuned_wgts_path: further-pretrained encoder weights to load.
            ignore_mismatched_sizes: start a new head where the checkpoint's has another tag count.
        """
        from transformers import AutoModelForTokenClassification
        name, labels = resolve_pretrained(pretrained_path), databunch.labels
        model, info = load_labelled_head(AutoModelForTokenClassification, name, labels,
                                         head="token-classification head", units="tags",
                                         finetuned_wgts_path=finetuned_wgts_path,
                                         ignore_mismatched_sizes=ignore_mismatched_sizes)
        fresh = bool(info.get("missing_keys")) or bool(info.get("mismatched_keys"))
        if not fresh:
            # from_pretrained names the outputs after the data's tags by position: a checkpoint listing the same tags
            # in another order would have its outputs relabelled, so its rows are put in the data's order instead
            fresh = match_head_to_labels(model, name, list(labels), new_head=ignore_mismatched_sizes,
                                         head="token-classification head", units="tags",
                                         fix="Give the data the checkpoint's tags (a label_file= listing them, or "
                                             "labels=)")
        return model, fresh

    # --- prediction ---

    def tag_logits(self, dl: TaggedDataLoader) -> Iterator[tuple[np.ndarray, np.ndarray]]:
        if self.fresh_head:
            warnings.warn("predicting with a token-classification head that has not been trained yet; call fit() "
                          "first", stacklevel=user_stacklevel())
        dl.device = next(self.model.parameters()).device
        yield from _torch_run(getattr(self.model, "module", self.model), self._amp_dtype())(dl)

    def predict_tokens(self, sentences: Sequence[Sequence[str]] | None = None) -> list[list[str]]:
        """One tag per word of pre-split sentences; None: the databunch's test sentences.

        Args:
            sentences: one list of words per sentence.
        """
        if sentences is None:
            if self.dls.test is None:
                raise NotFittedError("predict_tokens() without sentences tags the databunch's test_file, but none "
                                     "was given; pass sentences or build the BertNERDataBunch with test_file=")
            sentences = self.dls.test.dataset.words
        return NERTagger.predict_tokens(self, sentences)

    def predict(self, text: str, group: bool = True, exclude_entities: Sequence[str] | None = ("O",)) -> list[dict]:
        """The entities of one text (see `predict_batch`); fastai's `Learner.predict` does not apply here.

        Args:
            text: the text.
            group: join each entity's words; False: one dict per word.
            exclude_entities: tags or entity types left out.
        """
        return NERTagger.predict(self, text, group=group, exclude_entities=exclude_entities)

    # --- evaluation ---

    def validate(self, ds_idx: int = 1, dl: Any = None, cbs: Any = None, *, quiet: bool = False,
                 loss_only: bool = False, return_preds: bool = False) -> dict[str, Any]:
        """Loss, entity-level precision, recall and F1 (micro), word accuracy, and per entity type
        `{type}_precision`, `{type}_recall`, `{type}_f1` on the validation set (or `dl`); with the learner's
        `metrics=[]`, the loss alone (and other metrics given, under their names).

        Args:
            ds_idx: which loader (1: validation).
            dl: another `TaggedDataLoader` with tags.
            cbs: extra callbacks for this pass.
            quiet: no progress bar.
            loss_only: only the loss.
            return_preds: also return (true, predicted) word tags per sentence.

        fast-bert's positional order, `validate(quiet, loss_only, return_preds)`, is read as fast-bert's when the
        first argument is a bool.
        """
        if isinstance(ds_idx, bool):
            ds_idx, dl, cbs, quiet, loss_only, return_preds = fast_bert_validate_order(ds_idx, dl, cbs, loss_only,
                                                                                     return_preds)
        results = TaskLearner.validate(self, ds_idx, dl, cbs, quiet=quiet, loss_only=loss_only)
        both = None if loss_only else self._validated_tags()
        if both is None and return_preds:  # no entity metric among the learner's (or loss only): tag the words
            ds = (dl if dl is not None else self.dls[ds_idx]).dataset
            both = (_names(ds.word_tags, self.labels), self.predict_tokens(ds.words))
        if both is not None and not loss_only:
            # no sentence whole (the pass stopped early, which the collector said): no type can be scored
            report = entity_report(*both) if both[0] else pd.DataFrame()
            for kind in self.dls.entity_types:
                row = report.loc[kind] if kind in report.index else None
                for col in ("precision", "recall", "f1"):
                    results[f"{kind}_{col}"] = float(row[col]) if row is not None else \
                        (0.0 if both[0] else float("nan"))
        return (results, both) if return_preds else results

    def _validated_tags(self) -> tuple[list[list[str]], list[list[str]]] | None:
        metric = next((m for m in self.metrics if isinstance(m, EntityMetric)), None)
        return metric.tags() if metric is not None else None

    def report(self, ds_idx: int = 1, dl: Any = None) -> pd.DataFrame:
        """Per entity type precision, recall, F1 and support on the validation set (or `dl`), with the averages.

        Args:
            ds_idx: which loader (1: validation).
            dl: another `TaggedDataLoader` with tags.
        """
        _, (gold, pred) = self.validate(ds_idx, dl, quiet=True, return_preds=True)
        return entity_report(gold, pred)

    def confusions(self, ds_idx: int = 1, dl: Any = None) -> pd.DataFrame:
        """Words counted by true entity type (rows) and predicted type (columns), "O" for none: where the model
        mixes types up, misses entities (column O) or invents them (row O).

        Args:
            ds_idx: which loader (1: validation).
            dl: another `TaggedDataLoader` with tags.
        """
        _, (gold, pred) = self.validate(ds_idx, dl, quiet=True, return_preds=True)
        kinds = ["O", *self.dls.entity_types]
        table = pd.DataFrame(0, index=pd.Index(kinds, name="true"), columns=pd.Index(kinds, name="predicted"))
        for g, p in zip(gold, pred):
            for a, b in zip(g, p):
                table.loc[entity_type(a) or "O", entity_type(b) or "O"] += 1
        return table

    def show_results(self, max_n: int = 5) -> pd.DataFrame:
        """Validation sentences with their true and predicted entities side by side (words as `word/TAG`).

        Args:
            max_n: how many sentences.
        """
        _, (gold, pred) = self.validate(quiet=True, return_preds=True)
        words = self.dls.valid.dataset.words
        show = lambda ws, ts: " ".join(w if t == "O" else f"{w}/{t}" for w, t in zip(ws, ts))  # noqa: E731
        return pd.DataFrame({"true": [show(w, g) for w, g in zip(words[:max_n], gold)],
                             "predicted": [show(w, p) for w, p in zip(words[:max_n], pred)]})

    # --- saving ---

    @main_process_only
    def save_model(self, path: str | Path | None = None) -> Path:
        """Write model (safetensors), tokenizer and settings in Hugging Face format: the folder loads in
        `pipeline('token-classification', model=path)`, `AutoModelForTokenClassification.from_pretrained(path)` and
        `BertNERPredictor(path)`. Written aside and swapped in, so a crash keeps the old folder.

        Args:
            path: target folder (default: `output_dir/model_out`).
        """
        path = Path(path) if path is not None else self.output_dir / "model_out"
        check_replaceable(path, "save_model")
        with atomic_dir(path) as tmp, quiet_hub():
            self.model.save_pretrained(tmp, safe_serialization=True)
            self.encoder.save_tokenizer(tmp)  # as training encoded, or refused
            write_settings(tmp, {**settings_for(self.encoder, precision="bf16" if self._amp_dtype() == torch.bfloat16
                                                else "fp32", weights=weights_digest(self.model)),
                                 "word_split": self.word_split})
        _log.info("model saved to %s", path)
        return path

    @main_process_only
    def to_onnx(self, path: str | Path | None = None, *, opset: int = 18) -> Path:
        """Export the model to ONNX (dynamic batch and sequence axes) with tokenizer and settings, for
        `OnnxNERPredictor` (needs `bertlearn[onnx]`).

        Args:
            path: target folder, or a `.onnx` file name (default: `output_dir/onnx`).
            opset: ONNX opset version.
        """
        from ..onnx import export_onnx
        return export_onnx(self.model, self.encoder, Path(path) if path is not None else self.output_dir / "onnx",
                           opset=opset, extra_settings={"word_split": self.word_split})


# --- predictors of saved folders ---

def _tag_settings(folder: Path, tokenizer: Any, config: Any, *, limit: int | None = None) -> dict:
    import json

    from ..data.conll import detect_scheme
    file = folder / SETTINGS_FILE
    saved = json.loads(file.read_text()) if file.is_file() else {}
    if saved.get("problem_type", "token_classification") != "token_classification":
        raise ModelError(f"{str(folder)!r} holds a {saved['problem_type']} model, not a token classifier; open it "
                         "with load_predictor(path) or BertClassificationPredictor")
    labels = [config.id2label[i] for i in range(config.num_labels)]
    if "labels" in saved:  # as for classifiers: a stale bertlearn.json named every output after another tag
        check_saved_labels(folder, saved["labels"], labels)
    settings = {"maxlen": plain_maxlen(tokenizer, limit), "labels": labels, "word_split": "tokenizer", **saved}
    if settings["word_split"] not in WORD_SPLITS:
        raise ModelError(f"{str(file)!r}: word_split={settings['word_split']!r} is not one of {list(WORD_SPLITS)} "
                         "(how raw text is cut into words: as the tokenizer cuts it, or as split_words cuts JSONL "
                         "texts for training)")
    if "tag_scheme" not in settings:
        closing = any(l[:2] in ("E-", "S-", "L-", "U-") for l in labels)
        settings["tag_scheme"] = detect_scheme([labels]) if closing else "IOB2"
        # a plain Hugging Face folder does not record how its tags open and close entities: IOB1 and IOB2 use the
        # same tag names, and reading one as the other splits or merges entities, so the guess is said
        how = "from its end and single tags" if closing else "as pipeline('token-classification') reads them"
        warnings.warn(f"{str(folder)!r} does not record its tag scheme: its tags are read as "
                      f"{settings['tag_scheme']} ({how}); for a model trained on IOB1, BIOES or BILOU tags, write "
                      f'{{"tag_scheme": "IOB1"}} (or "BIOES", "BILOU") to {SETTINGS_FILE} in that folder',
                      stacklevel=user_stacklevel())
    return settings


class BertNERPredictor(NERTagger):
    """Predict entities with a folder written by `BertNERLearner.save_model` (or any Hugging Face token classifier),
    loading only safetensors and JSON (no pickle).

    Args:
        model_path: the folder.
        label_path: fast-bert's labels.txt (or its folder): checked against the saved tags, which are used ("O" may
            be left out of it, as fast-bert added it).
        model_type, use_fast_tokenizer: fast-bert's; no effect (the architecture comes from the saved config, the
            tokenizer is always the fast one), named once when they ask for something.
        do_lower_case: fast-bert's; the saved tokenizer's casing is used, with a warning if this disagrees.
        device: where to run (None: CUDA when available).
        bs: the most sentences in a batch (on a CPU a call's longest-first sentences are cut into narrower batches where
            padding would cost more than a batch: `bertlearn.data.padding_aware_cuts`; set `batch_overhead = None` on
            the predictor to keep every `bs` sentences together; and in float32 the linear layers skip the padded
            rows of a batch that is at least 10% padding, where a probe at load time found the outputs unchanged
            by it: `bertlearn.unpadded`; set `skip_padding = False` to run them).
        precision: "fp32", "bf16" or "auto" (what training used, where this device has bf16 hardware).
        compile: compile the model with `torch.compile` (True, or a dict of its options; see `compile_model`).
    """

    def __init__(self, model_path: str | Path, label_path: str | Path | None = None, model_type: str | None = None,
                 use_fast_tokenizer: bool = True, do_lower_case: bool | None = None,
                 device: torch.device | str | None = None, *, bs: int = 64, precision: str = "auto",
                 compile: bool | dict = False):
        from transformers import AutoModelForTokenClassification, AutoTokenizer
        refuse_device_as_label_path(label_path, "BertNERPredictor")
        path = Path(model_path)
        if not (path / "config.json").is_file():
            raise ModelError(f"model_path {str(path)!r} holds no config.json; pass the folder written by "
                             "BertNERLearner.save_model")
        self.device = resolve_device(device)
        tokenizer = AutoTokenizer.from_pretrained(path)
        self.model, _ = load_pretrained(AutoModelForTokenClassification, str(path), complete=True,
                                        head="token-classification head")
        self.model.to(self.device).eval()
        compiled = compile_model(self.model, compile)
        settings = _tag_settings(path, tokenizer, self.model.config, limit=position_limit(self.model))
        check_fast_bert_predictor_args(path, settings["labels"], tokenizer, label_path=label_path,
                                       do_lower_case=do_lower_case, where="BertNERPredictor", label_file="labels.txt",
                                       implicit=("O",), model_type=model_type, use_fast_tokenizer=use_fast_tokenizer)
        super().__init__(TagEncoder.from_settings(tokenizer, settings), bs=bs)
        if precision == "auto" and settings.get("precision", "fp32") == "fp32":
            precision = "fp32"
        self.amp_dtype = amp_dtype_for(precision, self.device)
        self.settings, self.word_split = settings, settings["word_split"]
        self.padding_skippable = (self.skip_padding and not compiled and self.device.type == "cpu"
                                  and self.amp_dtype is None and self._probe_padding())

    def _probe_padding(self) -> bool:
        ds = self.encoder.dataset([["a"], PROBE_TEXT.split()])
        ids, mask = next(iter(TaggedDataLoader(ds, bs=2, batch_overhead=None)))[:2]
        return unpad_linears(self.model, lambda: self.model(input_ids=ids, attention_mask=mask).logits[mask.bool()],
                             mask)

    def tag_logits(self, dl: TaggedDataLoader) -> Iterator[tuple[np.ndarray, np.ndarray]]:
        dl.device = self.device
        skip = self.skip_padding and self.padding_skippable
        yield from _torch_run(self.model, self.amp_dtype, skip)(dl)


class OnnxNERPredictor(NERTagger):
    """Predict entities with a folder written by `BertNERLearner.to_onnx`, on ONNX Runtime.

    Args:
        path: the folder (or a `.onnx` file in it: one its bertlearn.json does not record runs with that graph's
            settings, with a warning; see `bertlearn.predict.onnx_graph_file`).
        providers: ONNX Runtime execution providers (default: CUDA when available, else CPU).
        bs: the most sentences in a batch (on a CPU a call's longest-first sentences are cut into narrower batches where
            padding would cost more than a batch: `bertlearn.data.padding_aware_cuts`; set `batch_overhead = None` on
            the predictor to keep every `bs` sentences together).
    """

    def __init__(self, path: str | Path, *, providers: Sequence[str] | None = None, bs: int = 64):
        try:
            import onnxruntime as ort
        except ImportError as e:
            raise ModelError("OnnxNERPredictor needs onnxruntime: pip install 'bertlearn[onnx]'") from e
        from transformers import AutoConfig, AutoTokenizer
        path = Path(path)
        graph = onnx_graph_file(path)  # the file named, never the one bertlearn.json records instead
        folder = graph.parent
        if not graph.is_file():
            raise ModelError(f"path {str(path)!r} holds no {graph.name}; pass the folder written by "
                             "learner.to_onnx(path)")
        tokenizer = AutoTokenizer.from_pretrained(folder)
        settings = _tag_settings(folder, tokenizer, AutoConfig.from_pretrained(folder))
        super().__init__(TagEncoder.from_settings(tokenizer, settings), bs=bs)
        available = ort.get_available_providers()
        if providers is None:
            providers = [p for p in ("CUDAExecutionProvider", "CPUExecutionProvider") if p in available]
        self.session = ort.InferenceSession(str(graph), providers=list(providers))
        self.settings, self.word_split = settings, settings["word_split"]

    def tag_logits(self, dl: TaggedDataLoader) -> Iterator[tuple[np.ndarray, np.ndarray]]:
        if self.session.get_providers()[0] != "CPUExecutionProvider":
            dl.batch_overhead = None  # the padding-aware cuts are a CPU measurement: a GPU provider gets every bs rows
        for b in dl:
            feed = {"input_ids": b[0].numpy(), "attention_mask": b[1].numpy()}
            yield dl.current_rows, self.session.run(["logits"], feed)[0].astype(np.float32)
