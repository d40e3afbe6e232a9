"""Tokenization cache: hits, misses on any change, no_cache / clear_cache, corruption, concurrent writers."""

from __future__ import annotations

import json
import multiprocessing as mp
import warnings

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from bertlearn import BertDataBunch
from bertlearn.data.cache import cache_key, load_cached, tokenizer_fingerprint
from bertlearn.data.store import rows_revision

from conftest import make_texts


def cache_files(d):
    return sorted(p.name for p in (d / "cache").glob("tok-*.npz")) if (d / "cache").exists() else []


def test_fast_bert_form_caches_and_reuses(tiny_csv_dir, tiny_tokenizer, monkeypatch):
    db1 = BertDataBunch(tiny_csv_dir, tiny_csv_dir, tiny_tokenizer, maxlen=32)
    files = cache_files(tiny_csv_dir)
    assert len(files) == 2  # train and valid
    from bertlearn.data import TextEncoder
    monkeypatch.setattr(TextEncoder, "encode", lambda *a, **k: pytest.fail("tokenized again despite a cache hit"))
    db2 = BertDataBunch(tiny_csv_dir, tiny_csv_dir, tiny_tokenizer, maxlen=32)
    assert db1.train.dataset.ids.tolist() == db2.train.dataset.ids.tolist()


@pytest.mark.parametrize("change", ["maxlen", "file", "column", "truncation", "labels"])
def test_any_change_misses(tiny_csv_dir, tiny_tokenizer, change):
    BertDataBunch(tiny_csv_dir, tiny_csv_dir, tiny_tokenizer, maxlen=32)
    kwargs = dict(maxlen=32)
    if change == "maxlen":
        kwargs["maxlen"] = 24
    elif change == "file":
        df = pd.read_csv(tiny_csv_dir / "train.csv")
        df.loc[0, "text"] = "an edited review"
        df.to_csv(tiny_csv_dir / "train.csv", index=False)
    elif change == "column":
        df = pd.read_csv(tiny_csv_dir / "train.csv")
        df["other"] = df["text"].str.upper() + " good"
        df.to_csv(tiny_csv_dir / "train.csv", index=False)
        vdf = pd.read_csv(tiny_csv_dir / "val.csv")
        vdf["other"] = vdf["text"]
        vdf.to_csv(tiny_csv_dir / "val.csv", index=False)
        kwargs["text_col"] = "other"
    elif change == "truncation":
        kwargs["truncation"] = "head+tail"
    elif change == "labels":
        (tiny_csv_dir / "labels.csv").write_text("positive\nnegative\n")
    db = BertDataBunch(tiny_csv_dir, tiny_csv_dir, tiny_tokenizer, **kwargs)
    fresh = BertDataBunch(tiny_csv_dir, tiny_csv_dir, tiny_tokenizer, no_cache=True, **kwargs)
    assert db.train.dataset.ids.tolist() == fresh.train.dataset.ids.tolist()
    assert np.array_equal(db.train.dataset.targets, fresh.train.dataset.targets)
    assert len(cache_files(tiny_csv_dir)) > 2


def test_tokenizer_identity_is_part_of_the_key(tiny_tokenizer, tiny_model_dir):
    from transformers import AutoTokenizer
    cased = AutoTokenizer.from_pretrained(tiny_model_dir, do_lower_case=False)
    assert tokenizer_fingerprint(cased) != tokenizer_fingerprint(tiny_tokenizer)
    settings = {"maxlen": 16}
    assert cache_key(["a"], cased, settings) != cache_key(["a"], tiny_tokenizer, settings)


def test_an_edited_tokenizer_is_a_new_key(tiny_model_dir):
    from transformers import AutoTokenizer
    tok = AutoTokenizer.from_pretrained(tiny_model_dir)
    before = tokenizer_fingerprint(tok)
    assert tokenizer_fingerprint(tok) == before
    tok(["good movie"], truncation=True, max_length=4, padding="max_length")  # call options are not identity
    assert tokenizer_fingerprint(tok) == before
    tok.add_tokens(["brandnewword"])  # the same object, edited: its definition hash is computed afresh
    assert tokenizer_fingerprint(tok) != before


def test_definition_unreadable_by_tokenizers_falls_back_to_json(tiny_model_dir, monkeypatch):
    import tokenizers
    from transformers import AutoTokenizer

    import bertlearn.data.cache as cache
    tok = AutoTokenizer.from_pretrained(tiny_model_dir)
    canonical = tokenizer_fingerprint(tok)

    def unreadable(_):
        raise ValueError("unknown component")

    monkeypatch.setattr(tokenizers.Tokenizer, "from_str", unreadable)
    cache._definition_hash.cache_clear()
    fallback = tokenizer_fingerprint(tok)
    tok(["good movie"], truncation=True, max_length=4, padding="max_length")
    assert tokenizer_fingerprint(tok) == fallback != canonical  # still blind to call options
    cache._definition_hash.cache_clear()


# every setting the encoder reads, each changed to another value
FLIPS = {
    "maxlen": lambda enc: setattr(enc, "maxlen", enc.maxlen + 8),
    "truncation": lambda enc: setattr(enc, "truncation", "tail"),
    "long_text": lambda enc: setattr(enc, "long_text", "sliding_window"),
    "stride": lambda enc: setattr(enc, "stride", enc.stride + 1),
    "pairs": lambda enc: setattr(enc, "pairs", True),
    "labels": lambda enc: setattr(enc, "labels", enc.labels[::-1]),
    "problem_type": lambda enc: setattr(enc, "problem_type", "multi_label_classification"),
    "truncation_side": lambda enc: setattr(enc.tokenizer, "truncation_side",
                                           {"right": "left", "left": "right"}[enc.tokenizer.truncation_side]),
    "split_special_tokens": lambda enc: setattr(enc.tokenizer, "split_special_tokens", True),
    "model_input_names": lambda enc: setattr(enc.tokenizer, "model_input_names", ["input_ids", "attention_mask"]),
    "vocabulary": lambda enc: enc.tokenizer.add_tokens(["brandnewword"]),
}


@settings(max_examples=25, deadline=None)
@given(texts=st.lists(st.text(min_size=1, max_size=20), min_size=1, max_size=4),
       maxlen=st.integers(8, 64), side=st.sampled_from(["right", "left"]))
def test_flipping_any_encoder_setting_misses_the_cache(tiny_model_dir, texts, maxlen, side):
    from transformers import AutoTokenizer

    from bertlearn.data import TextEncoder
    for flip, change in FLIPS.items():  # every setting, from every drawn starting point
        tok = AutoTokenizer.from_pretrained(tiny_model_dir)
        tok.truncation_side = side
        enc = TextEncoder(tok, maxlen, ["negative", "positive"])
        before = cache_key(texts, enc.tokenizer, enc.key_parts())
        assert cache_key(texts, enc.tokenizer, enc.key_parts()) == before  # the same settings hit
        change(enc)
        assert cache_key(texts, enc.tokenizer, enc.key_parts()) != before, flip


def test_truncation_side_gives_its_own_ids_through_the_cache(tiny_csv_dir, tiny_model_dir):
    from transformers import AutoTokenizer
    tok = AutoTokenizer.from_pretrained(tiny_model_dir)
    right = BertDataBunch(tiny_csv_dir, tiny_csv_dir, tok, maxlen=8).train.dataset.ids.tolist()
    tok.truncation_side = "left"
    left = BertDataBunch(tiny_csv_dir, tiny_csv_dir, tok, maxlen=8).train.dataset.ids.tolist()
    fresh = BertDataBunch(tiny_csv_dir, tiny_csv_dir, tok, maxlen=8, no_cache=True).train.dataset.ids.tolist()
    assert left == fresh and left != right  # the cached right-cut rows are not reused for a left cut


def test_texts_are_hashed_with_their_boundaries(tiny_tokenizer, monkeypatch):
    import hashlib
    import bertlearn.data.cache as cache
    settings = {"maxlen": 16}
    texts = [f"text {i}" for i in range(50)] + [("a pair", "its second text")]
    monkeypatch.setattr(cache, "_HASH_BLOCK", 7)  # blocks do not change the key
    key = cache_key(texts, tiny_tokenizer, settings)
    monkeypatch.setattr(cache, "_HASH_BLOCK", 8192)
    assert cache_key(texts, tiny_tokenizer, settings) == key
    # what is hashed: each text (a pair joined by \x1f) followed by \x1e, after the settings
    h = hashlib.sha256(json.dumps({"v": cache.CACHE_VERSION, "rows": rows_revision(), "tok": tokenizer_fingerprint(tiny_tokenizer),
                                   **settings}, sort_keys=True, default=str).encode())
    for t in texts:
        h.update((t if isinstance(t, str) else "\x1f".join(t)).encode() + b"\x1e")
    assert h.hexdigest()[:32] == key
    # ... and every part's length after them, where a text holds a separator
    odd = ["a\x1eb", "c"]
    h = hashlib.sha256(json.dumps({"v": cache.CACHE_VERSION, "rows": rows_revision(), "tok": tokenizer_fingerprint(tiny_tokenizer),
                                   **settings}, sort_keys=True, default=str).encode())
    h.update("a\x1eb\x1ec\x1e".encode())
    h.update(np.array([3, 1], dtype=np.int64).tobytes())
    assert cache_key(odd, tiny_tokenizer, settings) == h.hexdigest()[:32]
    assert cache_key(["ab", "c"], tiny_tokenizer, settings) != cache_key(["a", "bc"], tiny_tokenizer, settings)
    # a text holding the separators is not the texts they separate (it got their ids)
    assert cache_key(["the\x1ebad"], tiny_tokenizer, settings) != cache_key(["the", "bad"], tiny_tokenizer, settings)
    assert cache_key([("a\x1fb", "c")], tiny_tokenizer, settings) != cache_key([("a", "b\x1fc")], tiny_tokenizer,
                                                                               settings)


def test_the_key_follows_the_reading_rules_and_the_version(tiny_tokenizer, monkeypatch):
    # a cache written before a change to how texts become rows was served after it (the key held no code version)
    import bertlearn.data.store as store
    import bertlearn.version as version
    key = cache_key(["a text"], tiny_tokenizer, {"maxlen": 16})
    monkeypatch.setattr(store, "ROWS_REVISION", store.ROWS_REVISION + 1)
    bumped = cache_key(["a text"], tiny_tokenizer, {"maxlen": 16})
    monkeypatch.setattr(version, "__version__", "9.9.9")
    assert len({key, bumped, cache_key(["a text"], tiny_tokenizer, {"maxlen": 16})}) == 3


def test_no_cache_and_clear_cache(tiny_csv_dir, tiny_tokenizer):
    BertDataBunch(tiny_csv_dir, tiny_csv_dir, tiny_tokenizer, maxlen=32, no_cache=True)
    assert cache_files(tiny_csv_dir) == []
    BertDataBunch(tiny_csv_dir, tiny_csv_dir, tiny_tokenizer, maxlen=32)
    BertDataBunch(tiny_csv_dir, tiny_csv_dir, tiny_tokenizer, maxlen=24)
    assert len(cache_files(tiny_csv_dir)) == 4
    BertDataBunch(tiny_csv_dir, tiny_csv_dir, tiny_tokenizer, maxlen=24, clear_cache=True)
    assert len(cache_files(tiny_csv_dir)) == 2


@pytest.mark.parametrize("damage", ["truncate", "garbage", "empty"])
def test_corrupt_cache_file_is_rebuilt(tiny_csv_dir, tiny_tokenizer, damage, caplog):
    expected = BertDataBunch(tiny_csv_dir, tiny_csv_dir, tiny_tokenizer, maxlen=32).train.dataset.ids.tolist()
    for f in (tiny_csv_dir / "cache").glob("tok-*.npz"):
        raw = f.read_bytes()
        f.write_bytes({"truncate": raw[: len(raw) // 2], "garbage": b"\x00garbage" * 50, "empty": b""}[damage])
    db = BertDataBunch(tiny_csv_dir, tiny_csv_dir, tiny_tokenizer, maxlen=32)
    assert db.train.dataset.ids.tolist() == expected
    assert "unreadable" in caplog.text and "rebuilding" in caplog.text
    assert all(load_cached(f, f.stem[4:]) is not None for f in (tiny_csv_dir / "cache").glob("tok-*.npz"))


def test_read_only_data_folder_still_works(tiny_csv_dir, tiny_tokenizer):
    (tiny_csv_dir / "cache").write_text("a file where the cache folder should be")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        db = BertDataBunch(tiny_csv_dir, tiny_csv_dir, tiny_tokenizer, maxlen=32)
    assert len(db.train.dataset) == 96
    said = [str(w.message) for w in caught if "tokenization cache" in str(w.message)]
    assert said == [f"could not write the tokenization cache in {str(tiny_csv_dir / 'cache')!r} (FileExistsError: "
                    "File exists); training goes on without it, and the texts will be tokenized again next time "
                    "(pass a writable cache_dir, or no_cache=True)"]  # once, for train and valid together


def _build(args):
    d, vocab_dir = args
    from transformers import AutoTokenizer
    tok = AutoTokenizer.from_pretrained(vocab_dir)
    db = BertDataBunch(d, d, tok, maxlen=32)
    return db.train.dataset.ids.tolist()


def test_two_processes_building_the_same_cache(tmp_path, tiny_model_dir):
    make_texts(3000, seed=4).to_csv(tmp_path / "train.csv", index=False)
    make_texts(500, seed=5).to_csv(tmp_path / "val.csv", index=False)
    with mp.get_context("spawn").Pool(2) as pool:
        a, b = pool.map(_build, [(tmp_path, str(tiny_model_dir))] * 2)
    assert a == b
    files = list((tmp_path / "cache").glob("tok-*.npz"))
    assert len(files) == 2 and all(load_cached(f, f.stem[4:]) is not None for f in files)
    assert not list((tmp_path / "cache").glob(".*"))  # no temporary files left


def test_datasets_say_how_their_ids_were_made(tiny_csv_dir, tiny_tokenizer, tmp_path):
    from bertlearn.data import TextEncoder
    from conftest import build_tiny_architecture
    first = BertDataBunch(tiny_csv_dir, tiny_csv_dir, tiny_tokenizer, maxlen=32).train.dataset
    again = BertDataBunch(tiny_csv_dir, tiny_csv_dir, tiny_tokenizer, maxlen=32).train.dataset
    assert first.encoded_by == "tokenized by the tokenizers library"  # 96 texts: under tokie's 4,096
    assert again.encoded_by == "read from the tokenization cache"
    pytest.importorskip("tokie")
    from transformers import AutoTokenizer
    roberta = AutoTokenizer.from_pretrained(build_tiny_architecture("roberta", tmp_path / "roberta"))
    texts = [f"text number {i}" for i in range(4100)]
    ds = TextEncoder(roberta, 16, ["a", "b"]).dataset(texts)
    assert ds.encoded_by == ("tokenized by the tokenizers library (tokie is installed but not used: model 'BPE' is "
                             "not WordPiece)")
    from bertlearn.model import load_tokenizer
    minilm = TextEncoder(load_tokenizer(None), 16, ["a", "b"]).dataset(texts)  # the packaged BERT WordPiece
    assert minilm.encoded_by == "tokenized by tokie (non-ASCII texts and pairs by the tokenizers library)"


def test_a_python_tokenizers_options_are_part_of_the_key(tiny_csv_dir, tiny_tokenizer, tmp_path_factory):
    # without a Rust backend the key was the vocabulary, special tokens and class: do_lower_case=False read the
    # lower-casing tokenizer's cached ids (and on-disk store)
    from transformers import BertTokenizerLegacy
    vocab = tmp_path_factory.mktemp("vocab") / "vocab.txt"
    vocab.write_text("".join(f"{w}\n" for w, _ in sorted(tiny_tokenizer.get_vocab().items(), key=lambda x: x[1])))
    vocab = str(vocab)
    lower, cased = BertTokenizerLegacy(vocab, do_lower_case=True), BertTokenizerLegacy(vocab, do_lower_case=False)
    assert tokenizer_fingerprint(lower) != tokenizer_fingerprint(cased)
    assert tokenizer_fingerprint(lower) == tokenizer_fingerprint(BertTokenizerLegacy(vocab, do_lower_case=True))
    df = pd.read_csv(tiny_csv_dir / "train.csv")
    df.loc[0, "text"] = "The Movie Was GOOD"
    df.to_csv(tiny_csv_dir / "train.csv", index=False)
    for options in ({}, {"on_disk": True, "chunksize": 40}):
        for tok in (lower, cased):
            db = BertDataBunch(tiny_csv_dir, tiny_csv_dir, tok, train_file="train.csv", val_file="val.csv",
                               label_file="labels.csv", bs=8, maxlen=32, **options)
            ds = db.train.dataset
            rows = [list(ds.ids[i][: ds.lengths[i]]) for i in range(len(ds))]
            expected = tok(list(df.text), truncation=True, max_length=32)["input_ids"]
            assert sorted(map(tuple, rows)) == sorted(map(tuple, expected))


def test_no_cache_and_clear_cache_act_on_the_cache_dir_given(tiny_csv_dir, tiny_tokenizer, tmp_path_factory):
    # fast-bert's flags acted on data_dir/cache only: no_cache=True with cache_dir= still wrote there, and
    # clear_cache=True emptied data_dir/cache instead
    folder = tmp_path_factory.mktemp("given-cache")
    args = (tiny_csv_dir, tiny_csv_dir, tiny_tokenizer)
    BertDataBunch(*args, bs=8, maxlen=32, no_cache=True, cache_dir=folder)
    assert list(folder.glob("*")) == []
    BertDataBunch(*args, bs=8, maxlen=32, cache_dir=folder)
    written = sorted(folder.glob("tok-*.npz"))
    assert written and not (tiny_csv_dir / "cache").exists()
    (folder / "tok-other.npz").write_bytes(b"x")
    db = BertDataBunch(*args, bs=8, maxlen=32, clear_cache=True, cache_dir=folder)
    assert not (folder / "tok-other.npz").exists() and "cache" not in db.train.dataset.encoded_by
    (folder / "tok-other.npz").write_bytes(b"x")
    BertDataBunch(*args, bs=8, maxlen=32, clear_cache=True, no_cache=True, cache_dir=folder)  # cleared, not used
    assert list(folder.glob("*")) == []


def test_how_a_python_tokenizer_was_loaded_is_not_part_of_the_key(tiny_tokenizer, tmp_path_factory):
    # HF_HUB_OFFLINE sets local_files_only in init_kwargs: the same tokenizer online and offline missed the cache
    from transformers import BertTokenizerLegacy
    vocab = tmp_path_factory.mktemp("vocab-loader") / "vocab.txt"
    vocab.write_text("".join(f"{w}\n" for w, _ in sorted(tiny_tokenizer.get_vocab().items(), key=lambda x: x[1])))
    online, offline = BertTokenizerLegacy(str(vocab)), BertTokenizerLegacy(str(vocab))
    offline.init_kwargs.update(local_files_only=True, is_local=True)
    assert tokenizer_fingerprint(online) == tokenizer_fingerprint(offline)
