"""Tagged sentences for token classification: reading CoNLL files, doccano JSONL and frames; tag schemes.

A sentence is a list of words with one tag each. CoNLL files hold one word a line, the tag in the last column (POS
and chunk columns between are ignored), sentences split by blank or whitespace-only lines, `-DOCSTART-` lines
skipped. Tag schemes: IOB1 (CoNLL-2003's original files: I- may open an entity, B- only splits two neighbours of
one type), IOB2 (BIO), BIOES, BILOU and IO (types without a prefix: a run of one type is one entity, as scoring and
grouping read a tag without a prefix); `detect_scheme` reads which one a file uses. Every error names the file and
line (JSONL: the line of the object).
"""

from __future__ import annotations

import json
import re
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

import pandas as pd
import regex

from ..errors import DataError, user_stacklevel

__all__ = ["TaggedSentences", "read_conll", "read_jsonl", "sentences_from_df", "read_tag_file", "SCHEMES",
           "detect_scheme", "check_scheme", "labels_for", "to_bio", "to_seqeval", "entity_type", "tag_prefix",
           "split_words"]

SCHEMES = ("IOB1", "IOB2", "BIOES", "BILOU", "IO")
# IO tags are entity types without a prefix (PER, LOC, O): a run of words of one type is one entity
_PREFIXES = {"IOB1": "BI", "IOB2": "BI", "BIOES": "BIES", "BILOU": "BILU", "IO": ""}
# words of raw text, as a doccano span is cut into them: runs of word characters, or one other non-space character,
# each with the combining marks that follow it. The regex module's \w holds marks (Python's re would cut a
# decomposed "Jose\u0301" or Devanagari "हिन्दी" at every mark)
_WORD = regex.compile(r"[\w\p{No}]+|[^\w\p{No}\s]\p{M}*")  # \p{No}: "x²", "CO₂", which re's \w held too


def _without_bom(encoding: str | None) -> str:
    # files saved by Windows tools open with a byte-order mark, which would stick to the first word (and hide a
    # first -DOCSTART- line); utf-8-sig reads files with and without one alike
    return "utf-8-sig" if encoding is None or encoding.lower().replace("_", "-") in ("utf-8", "utf8") else encoding


@dataclass
class TaggedSentences:
    """Sentences of words with a tag each, and where each came from (for error messages).

    Args:
        words: one list of words per sentence.
        tags: one list of tags per sentence (same lengths), or None for untagged text.
        source: the file (or "the DataFrame") they were read from.
        lines: the line of each sentence's first word (1-based), or its row in a frame.
        spans: per sentence, each word's (start, end) character offsets into `texts` (JSONL input), else None.
        texts: the raw texts the words were cut from (JSONL input), else None.
        line_per_word: each word has its own line (CoNLL), so word j of a sentence is on line `lines[i] + j`.
        unit: what `lines` count: "line" (files) or "row" (a frame's index labels).
    """

    words: list[list[str]]
    tags: list[list[str]] | None
    source: str = "the data"
    lines: list[int] = field(default_factory=list)
    spans: list[list[tuple[int, int]]] | None = None
    texts: list[str] | None = None
    line_per_word: bool = False
    unit: str = "line"

    def __len__(self) -> int:
        return len(self.words)

    def where(self, i: int, j: int = 0) -> str:
        """'file, line N' of word `j` of sentence `i` (the object's line for JSONL, the row for a frame).

        Args:
            i: the sentence.
            j: the word within it.
        """
        if not self.lines:
            return f"{self.source}, sentence {i + 1}"
        if self.unit == "row":
            return f"{self.source}, row {self.lines[i]!r}"
        return f"{self.source}, line {self.lines[i] + (j if self.line_per_word else 0)}"


_COLUMN_SPACES = re.compile(r"[ \t]+")  # CoNLL's column separator without a tab: ASCII spaces, as conlleval splits

def read_conll(path: str | Path, *, encoding: str = "utf-8", delimiter: str | None = None,
               tagged: bool = True) -> TaggedSentences:
    """Read a CoNLL-style file: one word per line with its tag in the last column.

    Args:
        path: the file.
        encoding: its text encoding.
        delimiter: the column separator (default: a tab on each line that holds one, so that a word may hold a
            space, which is said once; else runs of ASCII spaces and tabs, as conlleval splits: a no-break space
            stays inside its word).
        tagged: each line must hold a tag; False reads only the words (first column) of untagged text.
    """
    path = Path(path)
    if not path.is_file():
        raise DataError(f"{str(path)!r} does not exist; pass the CoNLL file (one word and its tag per line)")
    with open(path, encoding=_without_bom(encoding)) as f:
        body = [(n, line.strip()) for n, line in enumerate(f, 1)]
    content = [b for _, b in body if b and not b.startswith("-DOCSTART-")]
    tabbed = delimiter is None and bool(content) and all("\t" in b for b in content)
    # line by line: a tab file with one space-separated line was split at every whitespace, cutting "New York\tB-LOC"
    # to "New" everywhere; and str.split's Unicode whitespace cut "10\u00a0000" at its no-break space
    split = (lambda b: [c.strip() for c in b.split(delimiter)]) if delimiter else \
        (lambda b: [c.strip(" \t") for c in b.split("\t")] if "\t" in b else _COLUMN_SPACES.split(b))
    words, tags, lines = [], [], []
    cur_w: list[str] = []
    cur_t: list[str] = []
    start, fields, spaced = 0, set(), None
    for n, stripped in body:
        if not stripped or stripped.startswith("-DOCSTART-"):
            if cur_w:
                words.append(cur_w), tags.append(cur_t), lines.append(start)
                cur_w, cur_t = [], []
            continue
        cols = split(stripped)
        fields.add(len(cols))
        if len(cols) < 2 and tagged:
            raise DataError(f"{path}, line {n}: {stripped!r} has no tag; each line holds a word and its tag in "
                            "the last column (separated by whitespace), and sentences end with a blank line")
        if delimiter is None and "\t" in stripped and spaced is None:
            spaced = next(((n, c) for c in cols if len(c.split()) > 1), None)
        if not cur_w:
            start = n
        cur_w.append(cols[0])
        cur_t.append(cols[-1])
    if cur_w:
        words.append(cur_w), tags.append(cur_t), lines.append(start)
    if not words:
        raise DataError(f"{path} holds no sentences (it is empty, or only blank and -DOCSTART- lines); a CoNLL file "
                        "has one word and its tag per line")
    if spaced is not None:  # only where it changes what is read: a plain tab-separated file reads as it always did
        held = "every word line holds a tab, so its columns are split" if tabbed else \
            f"line {spaced[0]} holds a tab, so its columns are split"
        warnings.warn(f"{path}: {held} at tabs alone and a word or tag may hold a space (line {spaced[0]}: "
                      f"{spaced[1]!r}); pass delimiter= to split otherwise", stacklevel=user_stacklevel())
    # CoNLL's columns are the same on every line; raw text, one sentence a line, has as many fields as words and,
    # with no blank line, would be read as one sentence whose words are each line's first
    if len(words) == 1 and len(words[0]) > 1 and len(fields) > 1:
        warnings.warn(f"{path} is read as CoNLL (one word a line, in the first column), but it has no blank line "
                      f"between sentences and its lines hold {min(fields)} to {max(fields)} fields, where a CoNLL "
                      "file has the same columns on every line: it looks like raw text, one sentence a line, of "
                      "which only each line's first word would be read. Give raw text as JSONL "
                      '({"text": "..."} a line) or as a CSV with a text column (or to predict_batch(texts))',
                      stacklevel=user_stacklevel())
    return TaggedSentences(words, tags if tagged else None, source=str(path), lines=lines, line_per_word=True)


def split_words(text: str) -> list[tuple[str, int, int]]:
    """The words of a raw text with their character offsets: runs of letters, digits, underscores and combining marks,
    and each other non-space character on its own (how JSONL spans are cut into tagged words, and how a model
    trained on them cuts raw text at prediction: `text_words(..., split="split_words")`).

    Args:
        text: the text.
    """
    return [(m.group(), m.start(), m.end()) for m in _WORD.finditer(text)]


def read_jsonl(path: str | Path, *, text_key: str = "text", labels_key: str = "labels",
               encoding: str = "utf-8", tagged: bool = True) -> TaggedSentences:
    """Read doccano's JSONL export: one object a line with the text and its entities as `[start, end, label]`
    character spans (or, as doccano's export with relations writes them, `{"start_offset", "end_offset", "label"}`
    objects). The text is cut into words (`split_words`); a word inside a span gets B-label (the first) or I-label
    (IOB2).

    Args:
        path: the file.
        text_key: the key of the text (doccano: "text"; older exports: "data").
        labels_key: the key of the spans (doccano: "labels"; newer exports: "label"; with relations: "entities",
            each read by default).
        encoding: its text encoding.
        tagged: some line must hold the spans' key (a file without it would be tagged O throughout); False reads
            only the texts of untagged text.
    """
    path = Path(path)
    if not path.is_file():
        raise DataError(f"{str(path)!r} does not exist; pass the JSONL file (one JSON object a line)")
    words, tags, lines, spans, texts = [], [], [], [], []
    keys = ("labels", "label", "entities") if labels_key == "labels" else (labels_key,)
    seen: dict[str, None] = {}  # the objects' keys, in order, for the message of a file without spans
    with open(path, encoding=_without_bom(encoding)) as f:
        for n, line in enumerate(f, 1):
            if not line.strip():
                continue
            where = f"{path}, line {n}"
            try:
                obj = json.loads(line)
            except json.JSONDecodeError as e:
                raise DataError(f"{where}: not a JSON object ({e.msg}); each line holds one object like "
                                '{"text": "...", "labels": [[0, 5, "PER"]]}') from None
            text = obj.get(text_key) if isinstance(obj, dict) else None
            if not isinstance(text, str):
                raise DataError(f"{where}: no {text_key!r} string in {str(obj)[:80]!r}; pass text_key= if the text "
                                "is under another key")
            seen.update(dict.fromkeys(map(str, obj)))
            ents = next((obj[k] for k in keys if k in obj), None) if tagged else None
            w, t, s = _tag_spans(text, ents or [], where)
            if not w and tagged:
                continue  # a text without words (empty or only spaces) has nothing to tag
            # an untagged (test) file keeps it, as an empty sentence: predictions line up with the file's lines
            words.append([x for x, _, _ in w]), tags.append(t), lines.append(n), spans.append(s), texts.append(text)
    if not words:
        raise DataError(f"{path} holds no texts to tag; each line holds one object like "
                        '{"text": "...", "labels": [[0, 5, "PER"]]}')
    if tagged and not any(k in seen for k in keys):
        named = " or ".join(repr(k) for k in keys)
        raise DataError(f"{path}: no line has a {named} key, so every word would be tagged O; its objects have the "
                        f"keys {list(seen)[:20]}: pass labels_key= the key of the entity spans ([start, end, label] "
                        'lists, or {"start_offset", "end_offset", "label"} objects)')
    return TaggedSentences(words, tags if tagged else None, source=str(path), lines=lines, spans=spans, texts=texts)


def _tag_spans(text: str, ents: Sequence[Any], where: str) -> tuple[list, list[str], list[tuple[int, int]]]:
    checked = []
    for e in ents:
        if isinstance(e, dict) and {"start_offset", "end_offset", "label"} <= e.keys():  # doccano with relations
            e = [e["start_offset"], e["end_offset"], e["label"]]
        if not (isinstance(e, (list, tuple)) and len(e) == 3 and all(isinstance(v, int) for v in e[:2])):
            raise DataError(f"{where}: entity {e!r} is not [start, end, label] with integer character offsets (nor "
                            '{"start_offset": ..., "end_offset": ..., "label": ...})')
        s, t, label = int(e[0]), int(e[1]), str(e[2])
        if not 0 <= s < t <= len(text):
            raise DataError(f"{where}: entity {list(e)!r} lies outside the text ({len(text)} characters); spans are "
                            "[start, end) character offsets with 0 <= start < end <= len(text)")
        checked.append((s, t, label))
    checked.sort()
    for (s1, t1, l1), (s2, t2, l2) in zip(checked, checked[1:]):
        if s2 < t1:
            raise DataError(f"{where}: entities [{s1}, {t1}, {l1!r}] and [{s2}, {t2}, {l2!r}] overlap; a word has one "
                            "tag, so spans must not overlap")
    words = split_words(text)
    tags = ["O"] * len(words)
    for s, t, label in checked:
        inside = [i for i, (_, ws, we) in enumerate(words) if ws < t and we > s]
        if not inside:
            raise DataError(f"{where}: entity [{s}, {t}, {label!r}] ({text[s:t]!r}) covers no word")
        cut = [words[i][0] for i in inside if words[i][1] < s or words[i][2] > t]
        if cut:
            raise DataError(f"{where}: entity [{s}, {t}, {label!r}] ({text[s:t]!r}) cuts the word {cut[0]!r}; a word "
                            "takes one tag, so spans start and end at word boundaries (runs of letters and digits, "
                            "or single other characters): move the span's ends")
        for k, i in enumerate(inside):
            if tags[i] != "O":
                raise DataError(f"{where}: entities share the word {words[i][0]!r}; spans must not cut a word in two")
            tags[i] = ("B-" if k == 0 else "I-") + label
    return words, tags, [(s, e) for _, s, e in words]


def sentences_from_df(df: pd.DataFrame, words_col: Any = "tokens", tags_col: Any = "tags", *,
                      source: str = "the DataFrame") -> TaggedSentences:
    """Sentences from a frame with one row per sentence: a column of word lists and a column of tag lists.

    Args:
        df: the frame.
        words_col: the words column (lists of strings).
        tags_col: the tags column (lists of strings, as long as the words), or None for untagged sentences.
        source: how messages name the frame.
    """
    for arg, col in [("words_col", words_col)] + ([("tags_col", tags_col)] if tags_col is not None else []):
        if col not in df.columns:
            raise DataError(f"{source} has no column {col!r} ({arg}); it has {list(df.columns)[:20]}: pass "
                            f"{arg}= the column holding the {'word' if arg == 'words_col' else 'tag'} lists")
    words, tags = [], [] if tags_col is not None else None
    tag_rows = df[tags_col].tolist() if tags_col is not None else [None] * len(df)
    for i, w, t in zip(df.index, df[words_col].tolist(), tag_rows):
        w = w.split() if isinstance(w, str) else list(w)
        if tags is not None:
            t = t.split() if isinstance(t, str) else list(t)
            if len(t) != len(w):
                raise DataError(f"{source}, row {i!r}: {len(w)} words but {len(t)} tags; each word needs one tag")
            tags.append([str(x) for x in t])
        words.append([str(x) for x in w])
    return TaggedSentences(words, tags, source=source, lines=list(df.index), unit="row")


def read_tag_file(path: str | Path) -> list[str]:
    """Tag names from fast-bert's `labels.txt`: one per line (blank lines skipped), with "O" first where the file
    leaves it out (as fast-bert's reader, Hugging Face's `get_labels`, adds it).

    Args:
        path: the file.
    """
    path = Path(path)
    if not path.is_file():
        raise DataError(f"label_file {str(path)!r} does not exist; pass label_file=None to take the tags from the "
                        "training file")
    tags = [l.strip() for l in path.read_text(encoding="utf-8-sig").split("\n") if l.strip()]
    if not tags:
        raise DataError(f"label_file {str(path)!r} is empty; it lists one tag per line (O, B-PER, I-PER...)")
    return tags if "O" in tags else ["O", *tags]


def entity_type(tag: str) -> str | None:
    """The entity type of a tag ('B-PER' -> 'PER'), None for O.

    Args:
        tag: the tag.
    """
    return None if tag == "O" else (tag[2:] if tag_prefix(tag) else tag)


_LOWER_PREFIX = re.compile(r"^(?:[bieslu][-_].|o$)")  # "b-per", "o": a scheme written in lower case


def tag_prefix(tag: str) -> str:
    """The scheme letter of a tag (B, I, E, S, L or U before "-" or "_"), "O" for O, "" for a tag without one (a POS
    tag, LABEL_1, "N_A"): a type of its own.

    Args:
        tag: the tag.
    """
    return "O" if tag == "O" else (tag[0] if len(tag) > 2 and tag[0] in "BIESLU" and tag[1] in "-_" else "")


def detect_scheme(tags: Sequence[Sequence[str]]) -> str:
    """The tag scheme of tagged sentences: IO (no tag has a prefix), BIOES (E-/S- tags), BILOU (L-/U-), IOB1 (an I-
    tag opens an entity somewhere, after O, at a sentence start or after another type, and B- never does: in IOB1 it
    only splits two neighbours of one type), else IOB2. Data where both I- and B- open entities is IOB2 with errors,
    which `check_scheme` then names, as it names a tag without a prefix among tags with one.

    Args:
        tags: the sentences' tags.
    """
    prefixes = {tag_prefix(t) for sent in tags for t in sent}
    # IO only with O among the tags and no prefix written in lower case: a POS column read as the tags, or "b-per"
    # tags, would otherwise train as entity types of their own ("o" an entity, B and I two types)
    if "" in prefixes and prefixes == {"", "O"} and not any(_LOWER_PREFIX.match(t) for sent in tags for t in sent):
        return "IO"
    if prefixes & {"E", "S"}:
        return "BIOES"
    if prefixes & {"L", "U"}:
        return "BILOU"
    i_opens = b_opens = False
    for sent in tags:
        prev = "O"
        for t in sent:
            opens = prev == "O" or entity_type(prev) != entity_type(t)
            i_opens |= tag_prefix(t) == "I" and opens
            b_opens |= tag_prefix(t) == "B" and opens
            prev = t
    return "IOB1" if i_opens and not b_opens else "IOB2"


def check_scheme(sents: TaggedSentences, scheme: str, *, labels: Sequence[str] | None = None) -> None:
    """Refuse tags outside `labels` or outside the scheme, and breaks of a strict scheme (IOB2, BIOES, BILOU: an
    entity continued without being opened, or continued as another type), naming the file and line.

    Args:
        sents: the sentences.
        scheme: one of SCHEMES.
        labels: the allowed tags (None: any).
    """
    if scheme not in SCHEMES:
        raise DataError(f"tag_scheme={scheme!r} is not one of {list(SCHEMES)} (or 'auto' to detect it)")
    allowed = set(labels) if labels is not None else None
    inside = {"IOB1": "I", "IOB2": "I", "BIOES": "IE", "BILOU": "IL", "IO": ""}[scheme]
    opening = {"IOB1": "BI", "IOB2": "B", "BIOES": "BS", "BILOU": "BU", "IO": ""}[scheme]
    open_after = {"IOB1": "", "IOB2": "", "BIOES": "ES", "BILOU": "LU", "IO": ""}[scheme]  # prefixes that close one
    closing = {"BIOES": "E", "BILOU": "L"}.get(scheme)
    for i, sent in enumerate(sents.tags or []):
        prev = "O"
        for j, t in enumerate([*sent, "O"] if closing else sent):
            if closing and tag_prefix(prev) in ("B", "I") and not (tag_prefix(t) in ("I", closing) and
                                                                 entity_type(t) == entity_type(prev)):
                raise DataError(f"{sents.where(i, j - 1)}: {prev!r} is not closed (the next tag is "
                                f"{t if j < len(sent) else 'the sentence end'!r}); in {scheme} a B- entity continues "
                                f"with I- and ends with {closing}-, and a one-word entity is "
                                f"{'S' if scheme == 'BIOES' else 'U'}-")
            if j == len(sent):
                break
            if allowed is not None and t not in allowed:
                raise DataError(f"{sents.where(i, j)}: tag {t!r} is not in the label file (which has "
                                f"{sorted(allowed)[:20]}); add it there, or fix the tag")
            p = tag_prefix(t)
            if t.lstrip("-").isdigit():
                raise DataError(f"{sents.where(i, j)}: tag {t!r} is a number: the tags are numbers; map them to their "
                                "names (a Hugging Face dataset's features['ner_tags'].feature.names lists them in id "
                                "order)")
            if scheme == "IO" and p != "O" and p:
                raise DataError(f"{sents.where(i, j)}: tag {t!r} has a {p}- prefix, but the data's tags are read as IO "
                                "(entity types without a prefix: PER, LOC, O); give every tag its prefix (B- on "
                                "each entity's first word), or none")
            if scheme != "IO" and not p and _LOWER_PREFIX.match(t):
                raise DataError(f"{sents.where(i, j)}: tag {t!r} has its prefix in lower case; tags are read as "
                                f"written: write the prefixes and O in capitals ({t[0].upper() + t[1:]!r}"
                                f"{', O' if t != 'o' else ''})")
            if scheme != "IO" and not p:
                raise DataError(f"{sents.where(i, j)}: tag {t!r} has no prefix, which the {scheme} scheme needs "
                                f"({'/'.join(_PREFIXES[scheme])}-, or O); the tag is each line's last column (is it a "
                                "POS or chunk column?); tags that all lack one, with O outside entities (PER, LOC, O: "
                                "the IO scheme), are read with tag_scheme='auto' or 'IO': give every tag its prefix "
                                "(B- on each entity's first word), or none")
            if p not in ("O", "", *_PREFIXES[scheme]):
                raise DataError(f"{sents.where(i, j)}: tag {t!r} does not belong to the {scheme} scheme (prefixes "
                                f"{'/'.join(_PREFIXES[scheme])}-, or O); pass tag_scheme= for the scheme the data uses")
            if scheme not in ("IOB1", "IO") and p in inside:
                pp = tag_prefix(prev)
                if prev == "O" or pp in open_after or entity_type(prev) != entity_type(t):
                    raise DataError(f"{sents.where(i, j)}: {t!r} follows {prev!r}, which breaks the {scheme} scheme "
                                    f"(an entity opens with {'/'.join(opening)}- and continues with the same type); "
                                    "fix the tag, or pass tag_scheme='IOB1' if I- may open an entity in this data")
            prev = t


def labels_for(tags: Sequence[Sequence[str]]) -> list[str]:
    """The tag set of tagged sentences in a stable order: O first, then by entity type, B/I/E/S/L/U within one.

    Args:
        tags: the sentences' tags.
    """
    found = {t for sent in tags for t in sent}
    order = "BIESLU"
    return sorted(found, key=lambda t: (t != "O", entity_type(t) or "", order.find(tag_prefix(t)), t))


def to_bio(tag: str) -> str:
    """The tag in B-/I- form: S-/U- open (B-), E-/L- continue (I-), "B_PER" is "B-PER", a tag without a prefix is
    I- of its own type.

    Args:
        tag: a tag of any scheme.
    """
    p = tag_prefix(tag)
    if p in ("S", "U"):
        return "B-" + tag[2:]
    if p in ("E", "L"):
        return "I-" + tag[2:]
    if p in ("B", "I"):
        return p + "-" + tag[2:]
    return tag if p == "O" else "I-" + tag  # no prefix: words of one type run together, as the pipeline groups them


def to_seqeval(tag: str) -> str:
    """The tag as seqeval's conlleval-compatible scoring reads it: BILOU's L-/U- become E-/S-, an underscore
    after the prefix a dash ("B_PER" is "B-PER": seqeval splits the type at a dash, and would score "_PER"), and a
    tag without a prefix ("PER", "NOUN", "LABEL_1") is I- of its own type, as the pipeline reads it.

    Args:
        tag: a tag of any scheme.
    """
    p = tag_prefix(tag)
    if p == "O":
        return tag
    if p == "":  # a tag without a prefix is one type (seqeval would read its first letter as a prefix: "ER")
        return "I-" + tag
    return {"L": "E", "U": "S"}.get(p, p) + "-" + tag[2:]
