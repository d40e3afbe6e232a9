"""BertDataBunch's fast-bert constructor: fast-bert's positional order, and what `val_file=None` does here."""

from __future__ import annotations

import logging
import warnings

import pytest

import bertlearn.compat
from bertlearn import BertDataBunch, FastBertCompatWarning


class ListHandler(logging.Handler):
    def __init__(self):
        super().__init__()
        self.lines = []

    def emit(self, record):
        self.lines.append(record.getMessage())


class TestFastBertPositionalOrder:
    """fast-bert's order: (data_dir, label_dir, tokenizer, train_file, val_file, test_data, label_file, text_col,
    label_col, batch_size_per_gpu, max_seq_length, multi_gpu, multi_label, backend, model_type, logger, clear_cache,
    no_cache, custom_sampler, pos_weight, weight)."""

    def test_every_place_lands_where_fast_bert_put_it(self, tiny_csv_dir, tiny_tokenizer, monkeypatch):
        monkeypatch.setattr(bertlearn.compat, "_said", set())
        logger = logging.getLogger("test_bunch.positional")
        handler = ListHandler()
        logger.addHandler(handler)
        logger.setLevel(logging.INFO)
        try:
            with warnings.catch_warnings(record=True) as caught:
                warnings.simplefilter("always")
                db = BertDataBunch(tiny_csv_dir, tiny_csv_dir, tiny_tokenizer, "train.csv", "val.csv", None,
                                   "labels.csv", "text", "label", 8, 64, False, False, "nccl", "bert", logger, False,
                                   True, None, None, [1.0, 3.0])
        finally:
            logger.removeHandler(handler)
        # backend took its own place: model_type was 'nccl', the logger a string ('str' has no attribute 'info')
        assert [str(w.message) for w in caught if w.category is FastBertCompatWarning] == [
            "BertDataBunch: fast-bert arguments without effect in bertlearn: model_type='bert': the architecture "
            "comes from the checkpoint's config.json, never from a name; backend='nccl': the distributed backend is "
            "the launcher's (nccl on GPUs, gloo on CPUs)"]
        assert (db.bs, db.maxlen, db.multi_label) == (8, 64, False)
        assert [l.split(" in ")[0] for l in handler.lines] == ["tokenized 96 train and 32 valid texts"]
        assert not (tiny_csv_dir / "cache").exists()  # no_cache=True, eighteenth
        assert db.weight.tolist() == [1.0, 3.0]  # weight, twenty-first

    def test_a_call_that_ends_at_no_cache(self, tiny_csv_dir, tiny_tokenizer, monkeypatch):
        # fast-bert's README order up to no_cache: backend was read as model_type, model_type as the logger
        # ('str' object has no attribute 'info'), the logger as clear_cache
        monkeypatch.setattr(bertlearn.compat, "_said", set())
        with pytest.warns(FastBertCompatWarning, match=r"model_type='bert': .*; backend='nccl': "):
            db = BertDataBunch(tiny_csv_dir, tiny_csv_dir, tiny_tokenizer, "train.csv", "val.csv", None, "labels.csv",
                               "text", "label", 8, 64, False, False, "nccl", "bert", logging.getLogger("fb"), False,
                               True)
        assert (db.bs, db.maxlen, len(db.train.dataset)) == (8, 64, 96)
        assert not (tiny_csv_dir / "cache").exists()

    def test_pos_weight_in_its_place(self, tiny_csv_dir, tiny_tokenizer):
        import pandas as pd
        df = pd.read_csv(tiny_csv_dir / "train.csv")
        df["positive"] = (df["label"] == "positive").astype(int)
        df["negative"] = 1 - df["positive"]
        df.to_csv(tiny_csv_dir / "train.csv", index=False)
        df.to_csv(tiny_csv_dir / "val.csv", index=False)
        (tiny_csv_dir / "labels.csv").write_text("positive\nnegative\n")
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", FastBertCompatWarning)
            db = BertDataBunch(tiny_csv_dir, tiny_csv_dir, tiny_tokenizer, "train.csv", "val.csv", None,
                               "labels.csv", "text", ["positive", "negative"], 8, 64, False, True, "nccl", "bert",
                               None, False, True, None, [2.0, 0.5])
        assert db.multi_label and db.pos_weight.tolist() == [2.0, 0.5] and db.weight is None


class TestValFileNone:
    def test_the_held_out_rows_are_said_once_with_the_counts_and_the_other_way(self, tiny_csv_dir, tiny_tokenizer,
                                                                              monkeypatch):
        monkeypatch.setattr(bertlearn.compat, "_said", set())
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            db = BertDataBunch(tiny_csv_dir, tiny_csv_dir, tiny_tokenizer, val_file=None, no_cache=True, maxlen=32)
            BertDataBunch(tiny_csv_dir, tiny_csv_dir, tiny_tokenizer, val_file=None, no_cache=True, maxlen=32)
        assert (len(db.train.dataset), len(db.valid.dataset)) == (77, 19)
        said = [w for w in caught if w.category is FastBertCompatWarning]
        assert [str(w.message) for w in said] == [
            "BertDataBunch: val_file=None holds out a random 20% of train.csv for validation (valid_pct=0.2): the "
            "model trains on 77 of its 96 rows and validates on the other 19, where fast-bert trained on all 96 and "
            "validated on none. bertlearn always has a validation set: to train on every row, pass "
            "val_file='train.csv' (and fit(..., validate=False), as its scores would be of rows it trained on); or "
            "pass val_file= a held-out file, valid_pct= another share, seed= for a repeatable split"]
        assert said[0].filename == __file__  # points at the caller's line

    def test_valid_pct_is_the_share_said(self, tiny_csv_dir, tiny_tokenizer, monkeypatch):
        monkeypatch.setattr(bertlearn.compat, "_said", set())
        with pytest.warns(FastBertCompatWarning, match=r"holds out a random 25% of train.csv for validation "
                                                       r"\(valid_pct=0.25\): the model trains on 72 of its 96 rows "
                                                       r"and validates on the other 24"):
            BertDataBunch(tiny_csv_dir, tiny_csv_dir, tiny_tokenizer, val_file=None, valid_pct=0.25, seed=0,
                          no_cache=True, maxlen=32)

    def test_the_way_it_names_trains_on_every_row(self, tiny_csv_dir, tiny_tokenizer, monkeypatch):
        monkeypatch.setattr(bertlearn.compat, "_said", set())
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            db = BertDataBunch(tiny_csv_dir, tiny_csv_dir, tiny_tokenizer, val_file="train.csv", no_cache=True,
                               maxlen=32)
        assert len(db.train.dataset) == 96 and not [w for w in caught if w.category is FastBertCompatWarning]


class TestTestData:
    @pytest.mark.parametrize("on_disk", [False, True], ids=["in-memory", "on-disk"])
    def test_test_rows_are_never_dropped_by_dropna(self, tiny_tokenizer, tmp_path, on_disk):
        # before: dropna=True (meant for an empty training text) dropped test.csv's empty row too, so predict_batch()
        # returned 3 rows for 4 and every later prediction moved onto the row before it in the file
        from bertlearn import DataError
        (tmp_path / "train.csv").write_text("text,label\ngood film,pos\n,neg\ngreat,pos\nawful,neg\n")
        (tmp_path / "val.csv").write_text("text,label\nfine,pos\npoor,neg\n")
        (tmp_path / "test.csv").write_text("id,text\n1,lovely film\n2,\n3,dull\n4,good\n")
        kwargs = dict(chunksize=2) if on_disk else {}
        with pytest.raises(DataError) as e:
            BertDataBunch.from_csv(tmp_path, tiny_tokenizer, test_data="test.csv", dropna=True, maxlen=32,
                                   device="cpu", on_disk=on_disk, **kwargs)
        assert str(e.value) == (
            "text_col 'text' in test.csv has 1 empty or missing texts (CSV lines [3]); test_data gets one prediction "
            "per row, so its rows are never dropped (dropna= applies to the training and validation files); fill "
            "them or remove those rows from the file")
        (tmp_path / "test.csv").write_text("id,text\n1,lovely film\n2,bad\n3,dull\n4,good\n")
        db = BertDataBunch.from_csv(tmp_path, tiny_tokenizer, test_data="test.csv", dropna=True, maxlen=32,
                                    device="cpu", on_disk=on_disk, **kwargs)
        assert list(db.test.dataset.texts) == ["lovely film", "bad", "dull", "good"]
        assert len(db.train.dataset) == 3  # the empty training row is still dropped

    @pytest.mark.parametrize("name", ["test.csv", "path"])
    def test_a_file_name_given_to_from_df_is_refused(self, tiny_tokenizer, tmp_path, name):
        # before: the file name became the one text to predict (a Path: a raw TypeError)
        import pandas as pd
        from pathlib import Path
        from bertlearn import DataError
        df = pd.DataFrame({"text": ["good film", "awful"], "label": ["pos", "neg"]})
        given = "test.csv" if name == "test.csv" else Path("data/test.csv")
        with pytest.raises(DataError) as e:
            BertDataBunch.from_df(df, df, tiny_tokenizer, test_data=given, maxlen=32, device="cpu")
        assert str(e.value) == (
            f"test_data={str(given)!r} is one {type(given).__name__}, but from_df takes a list of test texts: pass "
            "[text, ...] (e.g. pd.read_csv(file)['text'].tolist()), or a file through BertDataBunch.from_csv(data_dir, "
            "..., test_data='test.csv')")
