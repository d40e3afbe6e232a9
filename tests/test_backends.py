"""The batch tokenization backends: the tokenizer's Rust backend and tokie must give the tokenizer's own ids."""

from __future__ import annotations

import logging
import multiprocessing

import numpy as np
import pandas as pd
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import bertlearn.data.encode as data
from bertlearn import TextEncoder, load_tokenizer
from bertlearn.data.backends import BatchEncoder, TokieBatchEncoder, batch_encoder, tokie_encoder

tokie = pytest.importorskip("tokie")


@pytest.fixture(scope="module")
def minilm():
    return load_tokenizer(None)  # the packaged all-MiniLM-L6-v2: a real uncased WordPiece vocabulary


@pytest.fixture(scope="module")
def minilm_tokie(minilm):
    """MiniLM's tokie encoders for the property test's lengths, set up once rather than once per example."""
    return {maxlen: encoders(minilm, maxlen)[1] for maxlen in (4, 9, 128)}


def reference(tokenizer, texts, maxlen):
    return [list(r) for r in tokenizer(list(texts), truncation=True, max_length=maxlen)["input_ids"]]


def encoders(tokenizer, maxlen):
    slow = batch_encoder(tokenizer, maxlen)
    return slow, tokie_encoder(slow, tokenizer, maxlen)


def ids(encoder, texts):
    return encoder.rows(encoder.encode(texts), np.int64).tolist()


ascii_text = st.text(alphabet=st.sampled_from([c for c in map(chr, range(127))]), max_size=60)
wordy_text = st.lists(st.sampled_from(["the", "Movie", "UNAFFABLE", "[SEP]", "[cls]", "don't", "3.5", "@user",
                                       "x" * 101, " ", "  ", "\t", "\n", ".", "-", "naive", "http://a.b/c?d=e"]),
                      max_size=40).map("".join)


class TestTokie:
    def test_used_for_bert_wordpiece(self, minilm):
        slow, fast = encoders(minilm, 128)
        assert type(slow) is BatchEncoder and isinstance(fast, TokieBatchEncoder)

    @settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
    @given(texts=st.lists(st.one_of(ascii_text, wordy_text), min_size=1, max_size=30),
           maxlen=st.sampled_from([4, 9, 128]))
    def test_ascii_texts_give_the_tokenizers_ids(self, minilm, minilm_tokie, texts, maxlen):
        fast = minilm_tokie[maxlen]
        assert ids(fast, texts) == reference(minilm, texts, maxlen)

    def test_other_texts_go_to_the_tokenizers_backend_in_order(self, minilm):
        # texts tokie 0.1.4 gets wrong, mixed with ASCII ones: the chunk is split and put back in order
        odd = ["\ud7ff\ue000 private", "⼅➜ᵾྌᵔⶒൎ⾭న☩℡⹖ពₕ", "del\x7fchar", "café naïve", "日本語 text"]
        texts = [t for pair in zip(odd, ["plain one", "two", "", "three four"]) for t in pair] + odd[4:]
        _, fast = encoders(minilm, 16)
        got = fast.encode(texts)
        assert sorted(got.fast.tolist() + got.rest.tolist()) == list(range(len(texts)))
        assert [texts[i] for i in got.rest] == odd
        assert fast.rows(got, np.uint16).tolist() == reference(minilm, texts, 16)
        assert not isinstance(fast.encode(odd), type(got))  # no ASCII text: the backend's encodings as they are
        assert ids(fast, odd) == reference(minilm, odd, 16)

    def test_left_truncation(self, minilm):
        tok = load_tokenizer(None)
        tok.truncation_side = "left"
        texts = ["one two three four five six seven eight nine ten", "short"]
        _, fast = encoders(tok, 6)
        assert isinstance(fast, TokieBatchEncoder)
        assert ids(fast, texts) == reference(tok, texts, 6)
        assert tok.decode(ids(fast, texts)[0]) == "[CLS] seven eight nine ten [SEP]"

    @pytest.mark.parametrize("case, reason", [
        ("gap", "it reads another vocabulary from it (ids with gaps?)"),
        ("added", "it has added tokens that are not special"),
        ("split", "split_special_tokens=True"),
        ("roberta", "model 'BPE' is not WordPiece"),
    ])
    def test_not_used_where_not_known_to_agree(self, case, reason, tiny_tokenizer, minilm, tmp_path, caplog):
        if case == "gap":
            tok = tiny_tokenizer  # its vocabulary skips an id ("a" is listed twice); tokie renumbers it
        elif case == "roberta":
            from transformers import AutoTokenizer

            from conftest import build_tiny_architecture
            tok = AutoTokenizer.from_pretrained(build_tiny_architecture("roberta", tmp_path))
        else:
            tok = load_tokenizer(None)
            if case == "added":
                tok.add_tokens(["bertlearnword"])
            else:
                tok.split_special_tokens = True
        with caplog.at_level(logging.INFO, logger="bertlearn.data.backends"):
            _, fast = encoders(tok, 32)
        assert fast is None
        assert f"tokie not used for this tokenizer: {reason}" in caplog.text

    def test_not_used_when_the_probe_texts_differ(self, minilm, monkeypatch, caplog):
        real = TokieBatchEncoder.rows
        monkeypatch.setattr(TokieBatchEncoder, "rows", lambda self, enc, dtype, fill=0: real(self, enc, dtype).take(
            np.arange(len(enc.flat[1]))[::-1]))
        with caplog.at_level(logging.INFO, logger="bertlearn.data.backends"):
            assert encoders(minilm, 32)[1] is None
        assert "tokie not used for this tokenizer: it gives other ids on the probe texts" in caplog.text

    def test_turned_off_by_the_environment_or_absent(self, minilm, monkeypatch):
        monkeypatch.setenv("BERTLEARN_TOKIE", "0")
        assert encoders(minilm, 32)[1] is None
        monkeypatch.delenv("BERTLEARN_TOKIE")
        monkeypatch.setitem(__import__("sys").modules, "tokie", None)  # import fails as if not installed
        assert encoders(minilm, 32)[1] is None

    def test_text_encoder_uses_tokie_for_large_batches_of_single_texts(self, minilm, monkeypatch):
        monkeypatch.setattr(data, "TOKIE_MIN_TEXTS", 8)
        monkeypatch.setattr(data, "_TOKENIZE_CHUNK", 5)  # several chunks, each mixing ASCII and other texts
        texts = [f"Review {i}: {'très bien' if i % 3 == 0 else 'quite good'} {'!' * (i % 4)}" for i in range(23)]
        enc = TextEncoder(minilm, 12, ["a", "b"])
        assert type(enc._backend(7)) is BatchEncoder and isinstance(enc._backend(8), TokieBatchEncoder)
        assert isinstance(enc._backend(1), TokieBatchEncoder)  # once set up, for small calls too
        got = enc.encode(texts)
        assert got["ids"].tolist() == reference(minilm, texts, 12) and got["ids"].dtype == np.uint16
        assert got["owner"].tolist() == list(range(23))
        pairs = TextEncoder(minilm, 12, ["a", "b"], pairs=True)
        assert type(pairs._backend(100)) is BatchEncoder  # tokie encodes single texts only
        assert pairs.encode(texts, texts[::-1])["ids"].tolist() == \
            [list(r) for r in minilm(texts, texts[::-1], truncation=True, max_length=12)["input_ids"]]

    def test_encoder_pickles_without_its_backends(self, minilm, monkeypatch):
        import pickle
        monkeypatch.setattr(data, "TOKIE_MIN_TEXTS", 1)
        enc = TextEncoder(minilm, 12, ["a", "b"])
        enc.encode(["a text"])
        assert enc._tokie is not False
        again = pickle.loads(pickle.dumps(enc))
        assert "_tokie" not in again.__dict__ and again.encode(["a text"])["ids"].tolist() == [[101, 1037, 3793, 102]]

    def test_works_in_a_forked_child(self, minilm):
        # a forked child (DataLoader workers, notebook launchers) inherits tokie after the parent used it
        _, fast = encoders(minilm, 32)
        ids(fast, ["warm the thread pool up"] * 2000)
        _FORKED["fast"] = fast
        ctx = multiprocessing.get_context("fork")
        queue = ctx.Queue()
        child = ctx.Process(target=_encode_in_child, args=(queue,))
        child.start()
        try:
            assert queue.get(timeout=60) == reference(minilm, ["in the child", "second"], 32)
        finally:
            child.join(10)
            if child.is_alive():
                child.kill()
        _FORKED.clear()


_FORKED: dict = {}


def _encode_in_child(queue) -> None:
    queue.put(ids(_FORKED["fast"], ["in the child", "second"]))

@pytest.mark.slow
def test_real_datasets_give_the_tokenizers_ids(shared_data, minilm):
    texts = []
    for name in ("sentiment140/test.csv", "goemotions/train.csv", "sms_spam/all.csv", "trec6/train.csv",
                 "ag_news/test.csv", "sst2/valid.csv"):
        df = pd.read_csv(shared_data / name)
        col = next(c for c in ("text", "sentence", "question", "message", "description") if c in df.columns)
        texts += df[col].dropna().astype(str).tolist()
    assert len(texts) > 50_000 and 0 < sum(not t.isascii() for t in texts) < len(texts)
    _, fast = encoders(minilm, 128)
    assert ids(fast, texts) == reference(minilm, texts, 128)

