"""BertDataBunch's fast-bert constructor: fast-bert's positional order, and what `val_file=None` does here."""

from __future__ import annotations

import logging
import warnings

import numpy as np
import pytest
import torch

import bertlearn.compat
from bertlearn import BertDataBunch, DataError, FastBertCompatWarning


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


def _three_class_frames():
    """Training and validation frames of 3 labels in an unsorted order of appearance (pos, neg, neu: a sentiment word,
    or none), with each row's sentence pair (the words reversed) and 0/1 label columns."""
    import random
    import pandas as pd
    from conftest import FILLER, NEGATIVE, POSITIVE
    frames = []
    for n, seed in ((90, 1), (21, 2)):
        rng, rows = random.Random(seed), []
        for i in range(n):
            label = ("pos", "neg", "neu")[i % 3]
            words = [rng.choice(FILLER) for _ in range(rng.randint(2, 20))]
            if label != "neu":
                words.insert(rng.randint(0, len(words)), rng.choice(POSITIVE if label == "pos" else NEGATIVE))
            rows.append((" ".join(words), " ".join(words[::-1]), label))
        df = pd.DataFrame(rows, columns=["text", "text_b", "label"])
        for name in ("pos", "neg", "neu"):
            df[name] = (df["label"] == name).astype(int)
        frames.append(df)
    return frames


class TestTestDlWithLabels:
    """`dls.test_dl(items, with_labels=True)`, what fastai users validate or interpret new labelled data with."""

    @pytest.mark.filterwarnings("ignore:epoch 1. the model predicts")
    @pytest.mark.parametrize("task", ["single", "multi", "pairs"])
    def test_a_dataframe_validates_as_the_validation_set(self, tiny_model_dir, tmp_path, task):
        # before: a DataFrame raised a raw "ValueError: too many values to unpack" (it was iterated as items)
        from bertlearn import BertLearner
        from conftest import quiet_fit
        train_df, valid_df = _three_class_frames()
        kwargs = dict(single={}, multi=dict(label_col=["pos", "neg", "neu"], multi_label=True),
                      pairs=dict(text_col=["text", "text_b"]))[task]
        db = BertDataBunch.from_df(train_df, valid_df, str(tiny_model_dir), bs=16, maxlen=48, device="cpu", seed=0,
                                   **kwargs)
        learn = BertLearner.from_pretrained_model(db, str(tiny_model_dir), None, "cpu", None,
                                                  output_dir=tmp_path / "out")
        quiet_fit(learn, 10, lr=3e-3)  # long enough to leave one class per row (a learner that has not is warned of)
        expected = learn.validate(quiet=True)
        got = learn.validate(dl=db.test_dl(valid_df, with_labels=True), quiet=True)
        assert list(got) == list(expected) and len(expected) > 1
        assert got == pytest.approx(expected, abs=1e-6)
        if task != "multi":  # (text, label name) items: the same rows again
            texts = list(zip(valid_df["text"], valid_df["text_b"])) if task == "pairs" else list(valid_df["text"])
            items = list(zip(texts, valid_df["label"]))
            assert learn.validate(dl=db.test_dl(items, with_labels=True), quiet=True) == \
                pytest.approx(expected, abs=1e-6)

    def test_a_tuple_label_is_a_name_or_its_index(self, tiny_tokenizer):
        # before: a label name raised "TypeError: can't convert np.ndarray of type numpy.str_"
        train_df, valid_df = _three_class_frames()
        db = BertDataBunch.from_df(train_df, valid_df, tiny_tokenizer, maxlen=32, device="cpu")
        assert db.labels == ["neg", "neu", "pos"]
        texts = list(valid_df["text"][:4])
        by_name = db.test_dl(list(zip(texts, ["pos", "neg", "neu", "pos"])), with_labels=True)
        by_index = db.test_dl(list(zip(texts, [2, 0, 1, np.int64(2)])), with_labels=True)
        assert by_name.dataset.targets.tolist() == by_index.dataset.targets.tolist() == [2, 0, 1, 2]
        assert by_name.dataset.targets.dtype == db.valid.dataset.targets.dtype
        # a loader's own items (what fastai's Interpretation passes) still come back as they were
        again = db.test_dl(db.valid.items, with_labels=True).dataset.targets
        assert again.tolist() == db.valid.dataset.targets.tolist()

    @pytest.mark.parametrize("kind", ["on_disk", "windows"])
    def test_a_loaders_own_rows_take_the_labels_given(self, tiny_model_dir, tmp_path, kind):
        # before: rows as stored (on disk, sliding windows) kept their stored targets, whatever labels the items
        # gave: relabelled rows were validated against the old labels without a word
        train_df, valid_df = _three_class_frames()
        for name, df in (("train.csv", train_df), ("val.csv", valid_df)):
            df.to_csv(tmp_path / name, index=False)
        kw = dict(on_disk=True) if kind == "on_disk" else dict(long_text="sliding_window", stride=4)
        db = BertDataBunch.from_csv(tmp_path, str(tiny_model_dir), label_file=None, maxlen=8, device="cpu", **kw)
        items = db.valid.items
        assert all(type(t).__name__ == "StoredRow" for t, _ in items)
        turned = {"neg": "neu", "neu": "pos", "pos": "neg"}
        relabelled = [(t, turned[y]) for t, y in items]
        dl = db.test_dl(relabelled, with_labels=True)
        assert dl.dataset.targets.tolist() == [db.labels.index(y) for _, y in relabelled]
        assert dl.dataset.targets.dtype == db.valid.dataset.targets.dtype
        assert db.test_dl(items, with_labels=True).dataset.targets.tolist() == db.valid.dataset.targets.tolist()

    def test_labels_named_by_numbers_are_not_read_as_indices(self, tiny_tokenizer):
        # before: with labels '1', '2', '3' (ratings), the item label 1 was read as index 1, i.e. '2': every rating
        # moved up by one without a word, while the DataFrame path read '1'
        from bertlearn import DataError
        train_df, valid_df = _three_class_frames()
        mapping = {"neg": 1, "neu": 2, "pos": 3}
        train_df, valid_df = (d.assign(label=d["label"].map(mapping)) for d in (train_df, valid_df))
        db = BertDataBunch.from_df(train_df, valid_df, tiny_tokenizer, maxlen=32, device="cpu")
        assert db.labels == ["1", "2", "3"]
        texts, ratings = list(valid_df["text"][:3]), list(valid_df["label"][:3])
        assert ratings == [3, 1, 2]
        got = db.test_dl(list(zip(texts, map(str, ratings))), with_labels=True).dataset.targets.tolist()
        assert got == db.test_dl(valid_df[:3], with_labels=True).dataset.targets.tolist() == [2, 0, 1]
        with pytest.raises(DataError) as e:
            db.test_dl(list(zip(texts, ratings)), with_labels=True)
        assert str(e.value) == (
            "test_items: item 0 has the label 3 (a number, which may be the name '3' or an index, as this model's "
            "labels are named by numbers: give the label as its name, '3'); with_labels=True takes (text, label) items whose label is one of this "
            "model's labels ['1', '2', '3'] or its index 0 to 2: fix or remove those 3 items (items [0, 1, 2])")

    LABELS = "one of this model's labels ['neg', 'neu', 'pos'] or its index 0 to 2"

    @pytest.mark.parametrize("case", ["index 3 of 3", "index -100", "float", "unknown name", "nan", "bare texts"])
    def test_bad_single_labels_are_refused_naming_the_item(self, tiny_tokenizer, case):
        # before: index 3 raised "IndexError: Target 3 is out of bounds" inside validate, a float "RuntimeError:
        # expected target dtype to be Long", and -100 scored as an ignored row (accuracy 0 over the others)
        from bertlearn import DataError
        train_df, valid_df = _three_class_frames()
        db = BertDataBunch.from_df(train_df, valid_df, tiny_tokenizer, maxlen=32, device="cpu")
        texts = list(valid_df["text"][:3])
        label, why = {"index 3 of 3": (3, "an index out of range for 3 labels"),
                      "index -100": (-100, "an index out of range for 3 labels"),
                      "float": (1.0, "a float; a label is a name or an integer index"),
                      "unknown name": ("maybe", "not a label of this model"),
                      "nan": (float("nan"), "missing"), "bare texts": (None, None)}[case]
        items = texts if case == "bare texts" else [(texts[0], "pos"), (texts[1], label), (texts[2], 0)]
        with pytest.raises(DataError) as e:
            db.test_dl(items, with_labels=True)
        if case == "bare texts":
            assert str(e.value) == (
                f"test_items: item 0 is {texts[0]!r}, not a (text, label) pair (items [0, 1, 2]); with_labels=True "
                "takes (text, label) items, or a DataFrame with the training data's columns; without labels, pass "
                "with_labels=False")
            return
        assert str(e.value) == (
            f"test_items: item 1 has the label {label!r} ({why}); with_labels=True takes (text, label) items whose "
            f"label is {self.LABELS}: fix or remove that item")

    def test_many_bad_items_are_counted(self, tiny_tokenizer):
        from bertlearn import DataError
        train_df, valid_df = _three_class_frames()
        db = BertDataBunch.from_df(train_df, valid_df, tiny_tokenizer, maxlen=32, device="cpu")
        with pytest.raises(DataError) as e:
            db.test_dl([(t, 3) for t in valid_df["text"]], with_labels=True)
        assert str(e.value) == (
            f"test_items: item 0 has the label 3 (an index out of range for 3 labels); with_labels=True takes (text, "
            f"label) items whose label is {self.LABELS}: fix or remove those 21 items (items [0, 1, 2, 3, 4, 5, 6, "
            "7, 8, 9, ...])")

    @pytest.mark.parametrize("case", ["width", "not 0/1", "a name"])
    def test_bad_multi_label_rows_are_refused(self, tiny_tokenizer, case):
        from bertlearn import DataError
        train_df, valid_df = _three_class_frames()
        db = BertDataBunch.from_df(train_df, valid_df, tiny_tokenizer, label_col=["pos", "neg", "neu"],
                                   multi_label=True, maxlen=32, device="cpu")
        label, why = {"width": ([1, 0], "not 3 numbers"), "not 0/1": ([1, 0, 2], "not 0/1 values"),
                      "a name": ("pos", "not a 0/1 row")}[case]
        texts = list(valid_df["text"][:2])
        with pytest.raises(DataError) as e:
            db.test_dl([(texts[0], np.array([0, 1, 0], dtype=np.float32)), (texts[1], label)], with_labels=True)
        assert str(e.value) == (
            f"test_items: item 1 has the label {label!r} ({why}); with_labels=True takes (text, label) items whose "
            "label is a row of 3 0/1 values, one per label in the order ['pos', 'neg', 'neu']: fix or remove that "
            "item")

    def test_a_dataframe_is_read_as_training_read_it(self, tiny_tokenizer):
        from bertlearn import DataError
        train_df, valid_df = _three_class_frames()
        db = BertDataBunch.from_df(train_df, valid_df, tiny_tokenizer, maxlen=32, device="cpu")
        # a label with spaces around it, as a hand-edited CSV has it, is the label (as in training)
        padded = valid_df.assign(label=" " + valid_df["label"])
        assert db.test_dl(padded, with_labels=True).dataset.targets.tolist() == db.valid.dataset.targets.tolist()
        unknown = valid_df.copy()
        unknown.loc[[3, 7], "label"] = "maybe"
        with pytest.raises(DataError) as e:
            db.test_dl(unknown, with_labels=True)
        assert str(e.value) == (
            "test_items: label_col 'label' in test_items has labels ['maybe'] that the model does not predict: it "
            "predicts only ['neg', 'neu', 'pos']; remove or relabel those rows, or retrain with that label; rows "
            "refused (by position): [3, 7], e.g. position 3 (index 3): 'maybe'")
        with pytest.raises(DataError) as e:
            db.test_dl(valid_df.rename(columns={"label": "y"}), with_labels=True)
        assert str(e.value) == (
            "test_items: the DataFrame has no column 'label' (its columns are ['text', 'text_b', 'y', 'pos', 'neg', "
            "'neu']); with_labels=True reads a DataFrame by the training data's columns, text_col=['text'] and "
            "label_col=['label']: name its columns so, or pass (text, label) items")

    def test_a_multi_label_dataframe_with_a_bad_cell(self, tiny_tokenizer):
        from bertlearn import DataError
        train_df, valid_df = _three_class_frames()
        db = BertDataBunch.from_df(train_df, valid_df, tiny_tokenizer, label_col=["pos", "neg", "neu"],
                                   multi_label=True, maxlen=32, device="cpu")
        bad = valid_df.astype({"neg": float})
        bad.loc[2, "neg"] = np.nan
        with pytest.raises(DataError) as e:
            db.test_dl(bad, with_labels=True)
        assert str(e.value) == (
            "test_items: multi-label columns ['pos', 'neg', 'neu'] in test_items must hold only 0 and 1; rows "
            "refused (by position): [2], e.g. position 2 (index 2): [0.0, nan, 1.0]")


class TestItemsAndBatches:
    """A loader's `items` given back to `test_dl(..., with_labels=True)`, as fastai's Interpretation does."""

    @staticmethod
    def _ratings():
        train_df, valid_df = _three_class_frames()
        mapping = {"neg": "1", "neu": "2", "pos": "3"}  # star ratings: labels named by numbers
        return [d.assign(label=d["label"].map(mapping)) for d in (train_df, valid_df)]

    def test_items_name_the_labels_so_ratings_round_trip(self, tiny_tokenizer):
        # before: items gave class indices, which labels '1'...'3' make ambiguous: test_dl refused them
        train_df, valid_df = self._ratings()
        db = BertDataBunch.from_df(train_df, valid_df, tiny_tokenizer, maxlen=32, device="cpu")
        assert [y for _, y in db.valid.items] == valid_df["label"].tolist()
        again = db.test_dl(db.valid.items, with_labels=True).dataset.targets
        assert again.tolist() == db.valid.dataset.targets.tolist()

    def test_top_losses_over_several_batches_with_numbered_labels(self, tiny_model_dir, tmp_path):
        import matplotlib
        matplotlib.use("Agg")
        from bertlearn import BertLearner, ClassificationInterpretation
        train_df, valid_df = self._ratings()
        db = BertDataBunch.from_df(train_df, valid_df, str(tiny_model_dir), bs=4, maxlen=32, device="cpu")
        learner = BertLearner.from_pretrained_model(db, str(tiny_model_dir), None, "cpu", None, output_dir=tmp_path)
        with learner.no_bar():
            interp = ClassificationInterpretation.from_learner(learner)
            inputs, _, targets, _, losses = interp[list(range(len(valid_df)))]  # 21 rows: 3 batches of 8
            assert inputs[0].shape[0] == len(valid_df) and targets.tolist() == db.valid.dataset.targets.tolist()
            interp.plot_top_losses(len(valid_df), show_df=False)

    def test_labelled_items_are_batched_by_bs(self, tiny_tokenizer):
        # before: bs=max(bs, len(items)) put every item in one batch (out of memory on a long list)
        train_df, valid_df = _three_class_frames()
        db = BertDataBunch.from_df(train_df, valid_df, tiny_tokenizer, maxlen=32, device="cpu")
        for items in (list(zip(valid_df["text"], valid_df["label"])), db.valid.items, valid_df):
            dl = db.test_dl(items, bs=4, with_labels=True)
            batches = list(dl)
            assert [len(b[0]) for b in batches] == [4, 4, 4, 4, 4, 1]
            # items: one width, as fastai's Interpretation concatenates the batches' inputs (it reads a loader's
            # rows back through its items); a DataFrame, as validate reads it: each batch its own width
            widths = {b[0].shape[1] for b in batches}
            assert widths == {int(dl.dataset.lengths.max())} if items is not valid_df else len(widths) > 1
            assert torch.cat([b[-1] for b in batches]).tolist() == db.valid.dataset.targets.tolist()


def test_on_disk_refuses_a_class_per_row_as_in_memory(tmp_path, tiny_tokenizer):
    # before: on_disk=True built a 283-class classifier over 300 rows of numbers, where in memory it was refused
    from conftest import make_texts
    df = make_texts(300)
    df["score"] = np.round(np.random.default_rng(0).normal(3, 1, 300), 3).astype(str)
    df.to_csv(tmp_path / "train.csv", index=False)
    df.iloc[:50].to_csv(tmp_path / "val.csv", index=False)
    said = []
    for on_disk in (False, True):
        with pytest.raises(DataError) as e:
            BertDataBunch.from_csv(tmp_path, tiny_tokenizer, label_file=None, label_col="score", maxlen=32,
                                   device="cpu", on_disk=on_disk, chunksize=64)
        said.append(str(e.value))
    assert said[0] == said[1] == (
        "label_col 'score' in train.csv has 283 distinct values in 300 rows (e.g. ['3.126', '2.868', '3.64']): a "
        "class per row. Are they numbers to predict? pass regression=True")
