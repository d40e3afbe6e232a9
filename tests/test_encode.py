"""Encoding's checks of the tokenizer and maxlen together: a maxlen must leave room for text beside the special
tokens, for single texts and sentence pairs, wherever data is built."""

from __future__ import annotations

import re

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


@pytest.mark.parametrize("truncation", ["tail", "head+tail"])
def test_a_truncation_sliding_windows_cannot_follow_is_refused(tiny_tokenizer, truncation):
    # before: taken, and each window cut nothing, so the option did nothing without a word
    with pytest.raises(DataError, match=rf"^truncation='{re.escape(truncation)}' chooses what a cut keeps, and "
                                        r"long_text='sliding_window' cuts nothing \(its windows cover the whole "
                                        r"text\); leave truncation='head' with sliding windows, or pass "
                                        r"long_text=None to cut long texts$"):
        TextEncoder(tiny_tokenizer, 12, ["a", "b"], truncation=truncation, long_text="sliding_window")
    # a folder saved with the pair before it was refused still opens: its truncation did nothing
    encoder = TextEncoder.from_settings(tiny_tokenizer, {"maxlen": 12, "labels": ["a", "b"], "truncation": truncation,
                                                         "long_text": "sliding_window", "stride": 4})
    assert (encoder.truncation, encoder.long_text) == ("head", "sliding_window")


def test_a_stride_without_sliding_windows_is_refused(tiny_tokenizer):
    """stride= without long_text='sliding_window' was taken, saved in bertlearn.json and did nothing: long texts
    were cut at maxlen."""
    with pytest.raises(DataError, match=r"^stride=4 is the overlap of sliding windows, and long_text=None cuts long "
                                        r"texts instead; pass long_text='sliding_window' with it, or leave stride "
                                        r"out$"):
        TextEncoder(tiny_tokenizer, 16, ["a", "b"], stride=4)
    # every folder saves a stride: one without windows still opens
    encoder = TextEncoder.from_settings(tiny_tokenizer, {"maxlen": 16, "labels": ["a", "b"], "long_text": None,
                                                         "stride": 4})
    assert encoder.long_text is None
    assert TextEncoder(tiny_tokenizer, 16, ["a", "b"], stride=4, long_text="sliding_window").stride == 4


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


# sentence pairs' segment ids (token_type_ids): transformers 5's ALBERT tokenizer does not list them in
# model_input_names (huggingface/transformers#48128), though its template gives them and ALBERT was pretrained with them

@pytest.fixture(scope="module")
def arch_dirs(tmp_path_factory):
    from conftest import build_tiny_architecture
    root = tmp_path_factory.mktemp("segment_archs")
    return {k: build_tiny_architecture(k, root / k) for k in ("albert", "distilbert", "roberta")}


def pair_frames():
    df = make_texts(24, seed=1)
    pairs = df.assign(text_a=df["text"], text_b=df["text"].iloc[::-1].values)[["text_a", "text_b", "label"]]
    return pairs, pairs[:8]


def test_albert_pairs_carry_the_segment_ids_its_template_gives(arch_dirs):
    from transformers import AutoTokenizer
    # before: every token got segment 0 and batches held 2 inputs
    db = BertDataBunch.from_df(*pair_frames(), str(arch_dirs["albert"]), text_col=["text_a", "text_b"], maxlen=32,
                               device="cpu")
    assert db.n_inp == 3 and db.encoder.settings()["token_type_ids"] is True
    tok = AutoTokenizer.from_pretrained(arch_dirs["albert"])
    row = db.train_ds.texts[0]
    expected = tok(row[0], row[1], truncation=True, max_length=32, return_token_type_ids=True)["token_type_ids"]
    assert db.encoder.encode([row[0]], [row[1]])["type_ids"][0].tolist() == expected
    assert 1 in expected


def test_distilbert_pairs_stay_two_inputs(arch_dirs):
    # its tokenizer's template gives segments, but the model has no segment embeddings (no type_vocab_size)
    db = BertDataBunch.from_df(*pair_frames(), str(arch_dirs["distilbert"]), text_col=["text_a", "text_b"],
                               maxlen=32, device="cpu")
    assert db.n_inp == 2 and db.encoder.settings()["token_type_ids"] is False


def test_token_type_ids_false_turns_off_what_the_tokenizer_lists(tiny_tokenizer, tmp_path):
    on = TextEncoder(tiny_tokenizer, 32, ["a", "b"], pairs=True)
    off = TextEncoder(tiny_tokenizer, 32, ["a", "b"], pairs=True, token_type_ids=False)
    assert on.with_token_types and not off.with_token_types
    assert off.encode(["good movie"], ["bad film"])["type_ids"] is None
    assert on.key_parts() != off.key_parts()  # the cache never hands one the other's rows


def test_token_type_ids_true_on_a_roberta_style_tokenizer_is_refused(arch_dirs):
    from transformers import AutoTokenizer
    tok = AutoTokenizer.from_pretrained(arch_dirs["roberta"])
    with pytest.raises(DataError) as e:
        TextEncoder(tok, 32, ["a", "b"], pairs=True, token_type_ids=True)
    assert str(e.value) == (
        "token_type_ids=True: RobertaTokenizer gives both texts of a pair segment 0 (its pair template has no "
        "segments, as RoBERTa-style models have none), so there are no segment ids to send; allowed: None (decide "
        "from the tokenizer) or False; leave token_type_ids out for this tokenizer")
    assert not TextEncoder(tok, 32, ["a", "b"], pairs=True).with_token_types


def test_token_type_ids_reaches_the_on_disk_path(arch_dirs, tmp_path):
    train, valid = pair_frames()
    train.to_csv(tmp_path / "train.csv", index=False)
    valid.to_csv(tmp_path / "val.csv", index=False)
    db = BertDataBunch.from_csv(tmp_path, str(arch_dirs["albert"]), text_col=["text_a", "text_b"], maxlen=32,
                                device="cpu", on_disk=True, token_type_ids=False)
    assert db.n_inp == 2
    db = BertDataBunch(tmp_path, tmp_path, str(arch_dirs["albert"]), text_col=["text_a", "text_b"], maxlen=32,
                       device="cpu", token_type_ids=True, no_cache=True)
    assert db.n_inp == 3


def test_a_folder_saved_before_the_setting_decides_as_before(arch_dirs):
    from transformers import AutoTokenizer
    tok = AutoTokenizer.from_pretrained(arch_dirs["albert"])
    old = {"maxlen": 32, "labels": ["a", "b"], "pairs": True}  # trained without segment ids: predicts so
    assert not TextEncoder.from_settings(tok, old).with_token_types
    assert TextEncoder.from_settings(tok, {**old, "token_type_ids": True}).with_token_types
