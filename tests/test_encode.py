"""Encoding's checks of the tokenizer and maxlen together: a maxlen must leave room for text beside the special
tokens, for single texts and sentence pairs, wherever data is built."""

from __future__ import annotations

import pytest
from conftest import make_texts

from bertlearn import BertDataBunch, BertNERDataBunch, DataError
from bertlearn.data import TextEncoder, tokenizer_within

SINGLE = (r"^maxlen={} leaves no room for text: BertTokenizer adds 2 special tokens to every text; allowed: "
          r"maxlen >= 3; give a larger maxlen, e.g. 128$")
PAIRS = (r"^maxlen={} leaves no room for a token of each text: BertTokenizer adds 3 special tokens to every sentence "
         r"pair; allowed: maxlen >= 5 for sentence pairs; give a larger maxlen, e.g. 128$")


@pytest.mark.parametrize("maxlen", [1, 2])
def test_a_maxlen_without_room_for_a_text_is_refused(tiny_tokenizer, tiny_csv_dir, maxlen):
    # before: maxlen=1 was ignored by the Rust tokenizer (nothing cut: a 702-token text failed in the model later),
    # maxlen=2 kept [CLS] [SEP] of every text (the model never saw a word)
    with pytest.raises(DataError, match=SINGLE.format(maxlen)):
        tokenizer_within(tiny_tokenizer, maxlen)
    with pytest.raises(DataError, match=SINGLE.format(maxlen)):
        BertDataBunch.from_df(make_texts(16, 1), make_texts(8, 2), tiny_tokenizer, maxlen=maxlen, device="cpu")
    with pytest.raises(DataError, match=SINGLE.format(maxlen)):  # streamed from disk
        BertDataBunch.from_csv(tiny_csv_dir, tiny_tokenizer, maxlen=maxlen, on_disk=True, device="cpu")


def test_the_least_maxlen_keeps_one_token_of_text(tiny_tokenizer):
    db = BertDataBunch.from_df(make_texts(16, 1), make_texts(8, 2), tiny_tokenizer, bs=4, maxlen=3, device="cpu")
    rows = db.train_ds.ids.tolist()
    assert {len(r) for r in rows} == {3} and all(r[0] == 2 and r[2] == 3 for r in rows)  # [CLS] word [SEP]
    assert tokenizer_within(tiny_tokenizer, 3)[1] == 3


def test_a_maxlen_without_room_for_a_sentence_pair_is_refused(tiny_tokenizer):
    df = make_texts(16, 1)
    pairs = df.assign(text_a=df["text"], text_b=df["text"])[["text_a", "text_b", "label"]]
    with pytest.raises(DataError, match=PAIRS.format(3)):
        BertDataBunch.from_df(pairs, pairs[:8], tiny_tokenizer, text_col=["text_a", "text_b"], maxlen=3,
                              device="cpu")
    with pytest.raises(DataError, match=PAIRS.format(4)):  # [CLS] [SEP] bad [SEP]: the first text dropped whole
        TextEncoder(tiny_tokenizer, 4, ["a", "b"], pairs=True)
    encoded = TextEncoder(tiny_tokenizer, 5, ["a", "b"], pairs=True).encode(["good movie"], ["bad film"])
    assert encoded["ids"].tolist() == [[2, 15, 3, 8, 3]]  # [CLS] good [SEP] bad [SEP]: a token of each text
    single = TextEncoder(tiny_tokenizer, 3, ["a", "b"]).encode(["good movie"])
    assert single["ids"].tolist() == [[2, 15, 3]]  # [CLS] good [SEP]


def test_token_classification_refuses_it_too(tiny_tokenizer, tmp_path):
    for name in ("train.txt", "val.txt"):
        (tmp_path / name).write_text("John B-PER\nis O\ngood O\n\nMary B-PER\nwas O\nhere O\n")
    with pytest.raises(DataError, match=SINGLE.format(2)):
        BertNERDataBunch.from_conll(tmp_path, tiny_tokenizer, maxlen=2, device="cpu")


@pytest.mark.parametrize("options", [{"long_text": "sliding_window", "stride": 4}, {}])
def test_a_left_padding_tokenizer_gives_the_tokenizers_own_rows(tiny_tokenizer, options):
    # the rows were read back as each padded row's first `length` columns: a tokenizer padding on the left gave
    # rows starting with [PAD], cut before their last tokens and [SEP]
    import copy

    import numpy as np
    tok = copy.deepcopy(tiny_tokenizer)
    tok.padding_side = "left"
    texts = list(make_texts(12, 3).text)
    encoder = TextEncoder(tok, 12, ["a", "b"], **options)
    if not options:
        encoder._backend = lambda n_texts=0: None  # the tokenizer's own call, as a tokenizer without a Rust backend
    got = encoder.encode(texts)
    kwargs = {"return_overflowing_tokens": True, "stride": 4} if options else {}
    expected = tok(texts, truncation=True, max_length=12, padding_side="right", **kwargs)["input_ids"]
    rows = [list(map(int, r[:n])) for r, n in zip(got["ids"].tolist(), got["lengths"])]
    assert rows == [list(r) for r in expected]
    assert not np.isin(tok.pad_token_id, np.concatenate([np.asarray(r) for r in rows]))


def test_tokens_added_after_the_data_was_built_are_read(tiny_tokenizer):
    # the encoder kept a copy of the tokenizer's backend from before: test_dl and predict_batch split an added token
    # into pieces where the tokenizer's own call (and a reloaded model) read it whole
    import copy
    tok = copy.deepcopy(tiny_tokenizer)
    db = BertDataBunch.from_df(make_texts(16, 1), make_texts(8, 2), tok, bs=4, maxlen=16, device="cpu")
    tok.add_tokens(["moviegoer"])
    ds = db.test_dl(["the moviegoer was good"]).dataset
    assert ds.ids.tolist()[0][: ds.lengths[0]] == tok("the moviegoer was good")["input_ids"]


def test_another_tokenizer_of_the_same_size_is_read(tiny_tokenizer):
    # the backend copy was keyed on the tokenizer's size: a swapped tokenizer of the same size kept the old copy
    import copy
    encoder = TextEncoder(tiny_tokenizer, 16, ["a", "b"])
    assert encoder.encode(["Good Movie"])["ids"].tolist() == [tiny_tokenizer("Good Movie")["input_ids"]]
    cased = copy.deepcopy(tiny_tokenizer)
    from tokenizers import normalizers
    cased.backend_tokenizer.normalizer = normalizers.BertNormalizer(lowercase=False)
    encoder.tokenizer = cased
    assert len(cased) == len(tiny_tokenizer)
    assert encoder.encode(["Good Movie"])["ids"].tolist() == [cased("Good Movie")["input_ids"]]
