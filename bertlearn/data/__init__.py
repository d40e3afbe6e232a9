"""Data: files and DataFrames in, fastai `DataLoaders` of token ids out.

`frames` reads files and label columns into texts and targets; `encode` turns texts into ids (`TextEncoder`, with
the tokenizer `backends`); `store` keeps ids ragged, in memory or on disk, and `cache` keeps them between runs;
`loader` batches them; `bunch` is `BertDataBunch`, whose factories read, encode and assemble through one step.
Token classification: `conll` reads tagged sentences (CoNLL, doccano JSONL, frames) and tag schemes, `tagged` encodes
them (`TagEncoder`, `TaggedDataset`, `TaggedDataLoader`, `BertNERDataBunch`).
"""

from .bunch import BertDataBunch
from .encode import TRUNCATIONS, TextEncoder, tokenizer_within
from .frames import (MULTI, PROBLEM_TYPES, REGRESSION, SINGLE, as_texts, check_column_counts, class_weights,
                     positive_int, read_csv, read_label_file, resolve_columns, targets_from_frame, texts_from_frame)
from .loader import (MEGA_BATCH, PAD_MULTIPLE, BertDataLoader, EncodedDataset, TextInputs, batch_to_frame,
                     display_frame, padding_aware_cuts)
from .store import DiskRows, RaggedRows
from .conll import TaggedSentences, read_conll, read_jsonl
from .tagged import (IGNORE_INDEX, TOKEN_CLASSIFICATION, BertNERDataBunch, TagEncoder, TaggedDataLoader,
                     TaggedDataset)

__all__ = ["BertDataBunch", "BertDataLoader", "EncodedDataset", "TextEncoder", "TextInputs", "RaggedRows",
           "DiskRows", "read_csv", "read_label_file", "resolve_columns", "texts_from_frame", "targets_from_frame",
           "check_column_counts", "as_texts", "positive_int", "class_weights", "display_frame", "batch_to_frame", "tokenizer_within",
           "SINGLE", "MULTI", "REGRESSION", "PROBLEM_TYPES", "TRUNCATIONS", "PAD_MULTIPLE", "MEGA_BATCH",
           "BertNERDataBunch", "TagEncoder", "TaggedDataset", "TaggedDataLoader", "TaggedSentences", "read_conll",
           "read_jsonl", "IGNORE_INDEX", "TOKEN_CLASSIFICATION", "padding_aware_cuts"]
