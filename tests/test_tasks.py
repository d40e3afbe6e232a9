"""Task coverage on the tiny model: multi-label, sentence pairs, regression, class weights, long texts,
and that each mode survives save_model -> BertClassificationPredictor and export -> load_learner."""

from __future__ import annotations

import random

import numpy as np
import pandas as pd
import pytest
import torch

from bertlearn import (BertClassificationPredictor, BertDataBunch, BertLearner, BertLearnError, DataError,
                       load_learner)
from bertlearn.predict import predict_logits

from conftest import FILLER, NEGATIVE, POSITIVE, make_texts


def quiet_fit(learner, epochs=1, lr=1e-3):
    with learner.no_bar(), learner.no_logging():
        learner.fit(epochs, lr=lr)


def multilabel_df(n, seed=0):
    rng = random.Random(seed)
    rows = []
    for _ in range(n):
        words = [rng.choice(FILLER) for _ in range(rng.randint(2, 10))]
        pos, neg = rng.random() < 0.5, rng.random() < 0.4
        if pos:
            words.insert(rng.randint(0, len(words)), rng.choice(POSITIVE))
        if neg:
            words.insert(rng.randint(0, len(words)), rng.choice(NEGATIVE))
        rows.append((" ".join(words), int(pos), int(neg)))
    return pd.DataFrame(rows, columns=["text", "praise", "complaint"])


def pairs_df(n, seed=0):
    rng = random.Random(seed)
    rows = []
    for _ in range(n):
        a_pos, b_pos = rng.random() < 0.5, rng.random() < 0.5
        a = f"{rng.choice(FILLER)} {rng.choice(POSITIVE if a_pos else NEGATIVE)} {rng.choice(FILLER)}"
        b = f"{rng.choice(POSITIVE if b_pos else NEGATIVE)} {rng.choice(FILLER)}"
        rows.append((a, b, "same" if a_pos == b_pos else "different"))
    return pd.DataFrame(rows, columns=["text_a", "text_b", "label"])


def regression_df(n, seed=0):
    rng = random.Random(seed)
    rows = []
    for _ in range(n):
        k = rng.randint(0, 3)
        words = [rng.choice(FILLER) for _ in range(rng.randint(2, 8))] + [rng.choice(POSITIVE) for _ in range(k)]
        rng.shuffle(words)
        rows.append((" ".join(words), 1.0 + k + rng.random() * 0.1))
    return pd.DataFrame(rows, columns=["text", "score"])


def learner_for(db, tiny_model_dir, tmp_path, **kwargs):
    return BertLearner.from_pretrained_model(db, str(tiny_model_dir), None, "cpu", None, output_dir=tmp_path, **kwargs)


class TestMultiLabel:
    @pytest.fixture
    def learner(self, tiny_tokenizer, tiny_model_dir, tmp_path):
        db = BertDataBunch.from_df(multilabel_df(400, 1), multilabel_df(100, 2), tiny_tokenizer,
                                   label_col=["praise", "complaint"], multi_label=True, bs=16, maxlen=32)
        learner = learner_for(db, tiny_model_dir, tmp_path)
        quiet_fit(learner, 6, 1e-3)
        return learner

    def test_bce_sigmoid_and_learning(self, learner):
        assert isinstance(learner.loss_func.func, torch.nn.BCEWithLogitsLoss)
        assert learner.model.config.problem_type == "multi_label_classification"
        results = learner.validate(quiet=True)
        assert set(results) == {"loss", "accuracy_thresh", "f1_multilabel_macro", "f1_multilabel_micro"}
        assert results["f1_multilabel_macro"] > 0.65  # the 32-wide random BERT learns; real data is in test_end_to_end
        texts = ["the movie was great", "awful film"]
        expected = learner.predict_logits(texts).sigmoid()  # independent sigmoids, not a softmax
        for row, probs in zip(learner.predict_batch(texts), expected.tolist()):
            assert dict(row) == pytest.approx({"praise": probs[0], "complaint": probs[1]})
            assert [p for _, p in row] == sorted((p for _, p in row), reverse=True)
        assert learner.predict_labels(["good but boring film", "the plot"]) == [["praise", "complaint"], []]

    def test_tune_thresholds_and_they_survive_saving(self, learner, tmp_path):
        thresholds = learner.tune_thresholds()
        assert len(thresholds) == 2 and all(0 < t < 1 for t in thresholds)
        texts = ["good but boring film", "the plot", "a lovely film"]
        expected = learner.predict_labels(texts)
        predictor = BertClassificationPredictor(learner.save_model(tmp_path / "m"), device="cpu")
        assert predictor.thresholds == thresholds and predictor.encoder.multi_label
        assert predictor.predict_labels(texts) == expected
        learner.export(tmp_path / "e.pkl")
        loaded = load_learner(tmp_path / "e.pkl")
        assert loaded.thresholds == thresholds and loaded.predict_labels(texts) == expected

    def test_a_learner_from_the_saved_folder_decides_at_its_thresholds(self, learner, tmp_path, tiny_tokenizer,
                                                                       tiny_model_dir):
        # BertClassificationPredictor(folder) decided at the tuned thresholds, a learner built from the same folder
        # at 0.5: the same model gave two answers
        thresholds = learner.tune_thresholds()
        assert thresholds != [0.5, 0.5]
        folder = learner.save_model(tmp_path / "m")
        texts = ["good but boring film", "the plot", "a lovely film", "boring", "great", "the film was dull"]
        expected = BertClassificationPredictor(folder, device="cpu").predict_labels(texts)
        again = learner_for(learner.dls, folder, tmp_path / "again")
        assert again.thresholds == thresholds and again.predict_labels(texts) == expected
        # the data listing the labels the other way round: the head's rows and the thresholds follow the names
        db = BertDataBunch.from_df(multilabel_df(40, 1), multilabel_df(20, 2), tiny_tokenizer,
                                   label_col=["complaint", "praise"], multi_label=True, bs=16, maxlen=32)
        swapped = learner_for(db, folder, tmp_path / "swapped")
        assert db.labels == ["complaint", "praise"] and swapped.thresholds == thresholds[::-1]
        assert [sorted(r) for r in swapped.predict_labels(texts)] == [sorted(r) for r in expected]
        # a new head decides at 0.5: the thresholds belong to the saved head
        assert learner_for(db, tiny_model_dir, tmp_path / "fresh").thresholds == 0.5

    def test_delimited_label_column(self, tiny_tokenizer):
        df = multilabel_df(40)
        df["tags"] = [";".join(n for n, on in (("praise", p), ("complaint", c)) if on)
                      for p, c in zip(df.praise, df.complaint)]
        db = BertDataBunch.from_df(df, df, tiny_tokenizer, label_col="tags", label_delim=";", bs=8, maxlen=32)
        assert db.multi_label and db.labels == ["complaint", "praise"]
        assert np.array_equal(db.train.dataset.targets, df[["complaint", "praise"]].to_numpy(np.float32))

    def test_labels_file_in_another_order_is_matched_by_name(self, tmp_path, tiny_tokenizer, tiny_model_dir):
        multilabel_df(400, 1).to_csv(tmp_path / "train.csv", index=False)
        multilabel_df(100, 2).to_csv(tmp_path / "val.csv", index=False)
        built = {}
        for order in (["praise", "complaint"], ["complaint", "praise"]):
            (tmp_path / "labels.csv").write_text("\n".join(order) + "\n")
            built[order[0]] = BertDataBunch(tmp_path, tmp_path, tiny_tokenizer, label_col=["praise", "complaint"],
                                            multi_label=True, bs=16, maxlen=32, no_cache=True)
        df = multilabel_df(400, 1)
        for db in built.values():  # output j trains on the column named labels[j], whatever the file's order
            assert np.array_equal(db.train.dataset.targets, df[db.labels].to_numpy(np.float32))
        reversed_db = built["complaint"]
        assert reversed_db.labels == ["complaint", "praise"]
        learner = learner_for(reversed_db, tiny_model_dir, tmp_path / "out")
        with pytest.warns(UserWarning, match="is high for fine-tuning"):
            quiet_fit(learner, 10, 2e-3)
        top = [ranked[0][0] for ranked in learner.predict_batch(["a lovely film", "a boring film"])]
        assert top == ["praise", "complaint"]

    def test_a_label_without_a_column_is_an_error(self, tiny_tokenizer):
        df = multilabel_df(20)
        with pytest.raises(DataError) as e:
            BertDataBunch.from_df(df, df, tiny_tokenizer, label_col=["praise", "complaint"], multi_label=True,
                                  labels=["praise", "anger"])
        assert str(e.value) == ("the labels ['praise', 'anger'] (labels.csv or labels=) and the label_col columns "
                                "['praise', 'complaint'] of train_df name different labels (label ['anger'] without a "
                                "column and column ['complaint'] without a label); columns are matched to labels by "
                                "name, so list the same names, in any order.")

    def test_one_label_column_for_multi_label_names_label_delim(self, tiny_tokenizer):
        # fast-bert one-hot encoded a single label column; here that column is read with label_delim
        df = make_texts(20)
        with pytest.raises(DataError) as e:
            BertDataBunch.from_df(df, df, tiny_tokenizer, multi_label=True, labels=["negative", "positive"])
        assert str(e.value).endswith("in any order. A single column holding several labels per row takes "
                                     "label_delim= (e.g. '|').")

    def test_boolean_columns_written_by_pandas_are_read_as_0_and_1(self, tiny_tokenizer, tmp_path):
        # CSV cells are read as written: pandas writes a bool column as True / False
        df = multilabel_df(20)
        flags = df.assign(praise=df["praise"].astype(bool), complaint=df["complaint"].astype(bool))
        for name in ("train.csv", "val.csv"):
            flags.to_csv(tmp_path / name, index=False)
        assert "True" in (tmp_path / "train.csv").read_text()
        db = BertDataBunch(tmp_path, tmp_path, tiny_tokenizer, label_col=["praise", "complaint"], multi_label=True,
                           label_file=None)
        np.testing.assert_array_equal(db.train_ds.targets, df[["praise", "complaint"]].to_numpy(dtype=np.float32))

    def test_eval_targets_match_columns_by_name(self, tiny_tokenizer):
        from bertlearn.data import TextEncoder, targets_from_frame
        enc = TextEncoder(tiny_tokenizer, 32, ["praise", "complaint"], problem_type="multi_label_classification")
        df = multilabel_df(30)
        natural = targets_from_frame(df, ["praise", "complaint"], enc)
        assert np.array_equal(natural, df[["praise", "complaint"]].to_numpy(np.float32))
        assert np.array_equal(targets_from_frame(df, ["complaint", "praise"], enc), natural)  # `eval --label-col`

    def test_columns_must_be_zero_one(self, tiny_tokenizer):
        df = multilabel_df(20).assign(praise=2)
        with pytest.raises(DataError, match=r"multi-label columns \['praise', 'complaint'\] in train_df must hold only 0 and 1"):
            BertDataBunch.from_df(df, df, tiny_tokenizer, label_col=["praise", "complaint"], multi_label=True)

    def test_pos_weight_reaches_the_loss(self, tiny_tokenizer, tiny_model_dir, tmp_path):
        df = multilabel_df(50)
        db = BertDataBunch.from_df(df, df, tiny_tokenizer, label_col=["praise", "complaint"], multi_label=True,
                                   pos_weight="balanced")
        learner = learner_for(db, tiny_model_dir, tmp_path)
        pos = df[["praise", "complaint"]].sum().to_numpy()
        expected = (len(df) - pos) / pos
        assert learner.loss_func.func.pos_weight.tolist() == pytest.approx(expected.tolist())


class TestPairs:
    def test_pairs_use_token_type_ids_and_predict_on_pairs(self, tiny_tokenizer, tiny_model_dir, tmp_path):
        db = BertDataBunch.from_df(pairs_df(400, 1), pairs_df(80, 2), tiny_tokenizer, text_col=["text_a", "text_b"],
                                   bs=16, maxlen=32)
        assert db.n_inp == 3 and db.encoder.pairs
        ids, mask, types, y = db.one_batch()
        sep = tiny_tokenizer.sep_token_id
        row = ids[0][mask[0].bool()].tolist()
        first_sep = row.index(sep)
        assert types[0][: first_sep + 1].sum() == 0 and types[0][first_sep + 1: len(row)].min() == 1
        learner = learner_for(db, tiny_model_dir, tmp_path)
        quiet_fit(learner, 8, 1e-3)
        pairs = [("the good movie", "great film"), ("a bad plot", "lovely acting")]
        preds = learner.predict_batch(pairs)
        assert len(preds) == 2 and {l for l, _ in preds[0]} == {"same", "different"}
        predictor = BertClassificationPredictor(learner.save_model(tmp_path / "m"), device="cpu")
        assert predictor.encoder.pairs
        ours = [row[0] for row in preds]
        theirs = [row[0] for row in predictor.predict_batch(pairs)]
        assert [l for l, _ in ours] == [l for l, _ in theirs]
        assert [p for _, p in ours] == pytest.approx([p for _, p in theirs], abs=1e-5)

    def test_pair_model_rejects_single_texts(self, tiny_tokenizer):
        db = BertDataBunch.from_df(pairs_df(20), pairs_df(20), tiny_tokenizer, text_col=["text_a", "text_b"], bs=8)
        with pytest.raises(DataError, match=r"items \[0\] are not \(text_a, text_b\) pairs of strings"):
            db.test_dl(["just one text"])

    def test_missing_side_of_a_pair(self, tiny_tokenizer):
        df = pairs_df(20)
        df.loc[4, "text_b"] = None
        with pytest.raises(DataError, match=r"text_col 'text_b' in train_df has 1 empty or missing texts \(CSV lines \[6\]\)"):
            BertDataBunch.from_df(df, df, tiny_tokenizer, text_col=["text_a", "text_b"])


class TestRegression:
    def test_float_target_mse_and_float_predictions(self, tiny_tokenizer, tiny_model_dir, tmp_path):
        db = BertDataBunch.from_df(regression_df(400, 1), regression_df(100, 2), tiny_tokenizer, label_col="score",
                                   regression=True, bs=16, maxlen=32)
        learner = learner_for(db, tiny_model_dir, tmp_path)
        assert learner.model.config.num_labels == 1 and learner.model.config.problem_type == "regression"
        assert isinstance(learner.loss_func.func, torch.nn.MSELoss)
        quiet_fit(learner, 8, 1e-3)
        results = learner.validate(quiet=True)
        assert set(results) == {"loss", "mse", "pearson", "spearman"} and results["pearson"] > 0.6
        preds = learner.predict_batch(["the plot", "good great lovely movie"])
        assert all(isinstance(p, float) for p in preds)
        assert preds == pytest.approx(learner.predict_logits(["the plot", "good great lovely movie"])[:, 0].tolist())
        predictor = BertClassificationPredictor(learner.save_model(tmp_path / "m"), device="cpu")
        assert predictor.predict_batch(["the plot", "good great lovely movie"]) == pytest.approx(preds, abs=1e-5)

    def test_new_head_starts_at_the_target_mean(self, tiny_tokenizer, tiny_model_dir, tmp_path):
        from bertlearn.model import head_output_layer
        train = regression_df(200, 1)
        train["score"] = train["score"] * 2 + 10  # far from 0, where an untouched head starts
        db = BertDataBunch.from_df(train, regression_df(50, 2), tiny_tokenizer, label_col="score", regression=True,
                                   bs=16, maxlen=32)
        learner = learner_for(db, tiny_model_dir, tmp_path)
        mean = float(train["score"].mean())
        assert float(head_output_layer(learner.model).bias) == pytest.approx(mean)
        with pytest.warns(UserWarning, match="has not been trained yet"):
            before = learner.predict_logits(train["text"].head(20).tolist())[:, 0]
        assert before.mean().item() == pytest.approx(mean, abs=0.5)

    def test_non_numeric_target(self, tiny_tokenizer):
        df = regression_df(10).astype({"score": object})
        df.loc[2, "score"] = "high"
        with pytest.raises(DataError, match=r"needs numbers for regression; CSV lines \[4\] are missing or not numeric \(e.g. 'high'\)"):
            BertDataBunch.from_df(df, df, tiny_tokenizer, label_col="score", regression=True)


class TestClassWeights:
    def test_weight_reaches_the_loss(self, tiny_databunch, tiny_model_dir, tmp_path):
        learner = learner_for(tiny_databunch, tiny_model_dir, tmp_path, weight=[1.0, 3.0])
        assert learner.loss_func.func.weight.tolist() == [1.0, 3.0]

    def test_balanced_weight(self, tiny_tokenizer, tiny_model_dir, tmp_path):
        from conftest import make_texts
        df = make_texts(40)
        df = pd.concat([df, df[df.label == "positive"]])  # 40 positive, 20 negative
        db = BertDataBunch.from_df(df, df, tiny_tokenizer, weight="balanced")
        learner = learner_for(db, tiny_model_dir, tmp_path)
        assert learner.loss_func.func.weight.tolist() == pytest.approx([60 / (2 * 20), 60 / (2 * 40)])

    def test_weight_errors(self, tiny_databunch, tiny_model_dir, tmp_path):
        with pytest.raises(DataError, match=r"weight has 3 values \[1.0, 2.0, 3.0\]; give 2 positive numbers"):
            learner_for(tiny_databunch, tiny_model_dir, tmp_path, weight=[1, 2, 3])
        with pytest.raises(DataError, match="pos_weight applies to multi label classification; this task is single label"):
            learner_for(tiny_databunch, tiny_model_dir, tmp_path, pos_weight=[1, 2])


class TestLongTexts:
    TEXT = " ".join(["good"] + ["the"] * 40 + ["bad"])

    def encode(self, tok, **kwargs):
        db = BertDataBunch.from_df(pd.DataFrame({"text": [self.TEXT, "fun"], "label": ["a", "b"]}),
                                   pd.DataFrame({"text": ["fun"], "label": ["a"]}), tok, maxlen=16, **kwargs)
        ds = db.train.dataset
        return db, [tok.convert_ids_to_tokens(ds.ids[i, :ds.lengths[i]].tolist()) for i in range(len(ds))]

    def test_head_tail_and_head_plus_tail(self, tiny_tokenizer):
        _, (head, _) = self.encode(tiny_tokenizer, truncation="head")
        _, (tail, _) = self.encode(tiny_tokenizer, truncation="tail")
        _, (both, _) = self.encode(tiny_tokenizer, truncation="head+tail")
        assert head[:2] == ["[CLS]", "good"] and head[-2:] == ["the", "[SEP]"] and len(head) == 16
        assert tail[:2] == ["[CLS]", "the"] and tail[-2:] == ["bad", "[SEP]"] and len(tail) == 16
        assert both[:2] == ["[CLS]", "good"] and both[-2:] == ["bad", "[SEP]"] and len(both) == 16

    def test_sliding_window_rows_and_averaged_prediction(self, tiny_tokenizer, tiny_model_dir, tmp_path):
        db, rows = self.encode(tiny_tokenizer, long_text="sliding_window", stride=4)
        ds = db.train.dataset
        assert ds.n_texts == 2 and len(ds) > 3 and ds.owner.tolist() == [0] * (len(ds) - 1) + [1]
        assert (ds.targets[:-1] == 0).all() and ds.targets[-1] == 1  # each window carries its text's label
        assert all(len(r) <= 16 for r in rows)
        learner = learner_for(db, tiny_model_dir, tmp_path)
        dl = db.test_dl([self.TEXT, "fun"])
        per_text = predict_logits(learner.model, dl)
        assert per_text.shape == (2, 2)
        windows = db.encoder.dataset([self.TEXT])
        learner.model.eval()
        with torch.no_grad():
            manual = torch.stack([learner.model(input_ids=torch.as_tensor(windows.ids[i:i + 1, :windows.lengths[i]].astype(np.int64))).logits[0]
                                  for i in range(len(windows))]).mean(0)
        assert per_text[0].tolist() == pytest.approx(manual.tolist(), abs=1e-5)
        predictor = BertClassificationPredictor(learner.save_model(tmp_path / "m"), device="cpu")
        assert predictor.encoder.long_text == "sliding_window" and predictor.encoder.stride == 4
        assert len(predictor.predict_batch([self.TEXT, "fun", self.TEXT])) == 3

    def test_truncation_mode_survives_saving(self, tiny_tokenizer, tiny_model_dir, tmp_path):
        db, _ = self.encode(tiny_tokenizer, truncation="head+tail")
        learner = learner_for(db, tiny_model_dir, tmp_path)
        predictor = BertClassificationPredictor(learner.save_model(tmp_path / "m"), device="cpu")
        assert predictor.encoder.truncation == "head+tail" and predictor.encoder.maxlen == 16

    def test_bad_modes(self, tiny_tokenizer):
        with pytest.raises(DataError, match=r"truncation='middle' is not one of \['head', 'tail', 'head\+tail'\]"):
            self.encode(tiny_tokenizer, truncation="middle")
        with pytest.raises(DataError, match="apply to single texts; sentence pairs are cut longest-first"):
            BertDataBunch.from_df(pairs_df(10), pairs_df(10), tiny_tokenizer, text_col=["text_a", "text_b"],
                                  truncation="tail")


def test_best_thresholds_by_hand():
    from bertlearn.tasks.classification import best_thresholds
    grid = np.arange(0.05, 0.951, 0.05, dtype=np.float32)
    probs = np.array([[0.9, 0.1, 0.6], [0.8, 0.2, 0.4], [0.3, 0.3, 0.35], [0.2, 0.4, 0.1]], dtype=np.float32)
    truth = np.array([[1, 0, 1], [1, 0, 1], [0, 0, 0], [0, 0, 0]], dtype=bool)
    # label 0: F1 is 1 for every threshold in [0.30, 0.80): the tie goes to 0.5. Label 1 has no positive: 0.5,
    # not the grid's lowest (F1 is 0 everywhere). Label 2: only 0.35 separates 0.4 from 0.35 (F1 1 vs 0.8 at 0.3)
    assert best_thresholds(probs, truth, grid) == [0.5, 0.5, 0.35]


def test_a_label_absent_from_validation_keeps_half_and_is_named(tiny_tokenizer, tiny_model_dir, tmp_path):
    valid = multilabel_df(40, 2).assign(complaint=0)
    db = BertDataBunch.from_df(multilabel_df(60, 1), valid, tiny_tokenizer, label_col=["praise", "complaint"],
                               multi_label=True, bs=16, maxlen=32)
    learner = learner_for(db, tiny_model_dir, tmp_path)
    with pytest.warns(UserWarning) as caught:
        thresholds = learner.tune_thresholds()
    assert thresholds[1] == 0.5
    assert [str(w.message) for w in caught if "tune_thresholds" in str(w.message)] == [
        "tune_thresholds(): label ['complaint'] never occurs in the validation set, so there is nothing to tune it on; "
        "it keeps 0.5"]


def test_tune_thresholds_needs_multi_label(tiny_learner):
    with pytest.raises(BertLearnError, match=r"tune_thresholds\(\) applies to multi-label tasks"):
        tiny_learner.tune_thresholds()


@pytest.mark.parametrize("mode", ["multi_label", "pairs", "regression", "head+tail", "sliding_window"])
def test_every_mode_survives_export_and_save(mode, tiny_tokenizer, tiny_model_dir, tmp_path):
    long = " ".join(["good"] + ["the"] * 30 + ["bad"])
    if mode == "multi_label":
        df, kw, texts = multilabel_df(30), dict(label_col=["praise", "complaint"], multi_label=True), ["good", long]
    elif mode == "pairs":
        df, kw, texts = pairs_df(30), dict(text_col=["text_a", "text_b"]), [("good", "bad"), ("fun film", long)]
    elif mode == "regression":
        df, kw, texts = regression_df(30), dict(label_col="score", regression=True), ["good", long]
    else:
        from conftest import make_texts
        df = make_texts(30)
        kw = dict(truncation="head+tail") if mode == "head+tail" else dict(long_text="sliding_window", stride=4)
        texts = ["good", long]
    db = BertDataBunch.from_df(df, df, tiny_tokenizer, maxlen=16, bs=8, **kw)
    learner = learner_for(db, tiny_model_dir, tmp_path)
    quiet_fit(learner, 1, 1e-4)
    expected = learner.predict_logits(texts)
    learner.export(tmp_path / "e.pkl")
    loaded = load_learner(tmp_path / "e.pkl")
    assert loaded.dls.encoder.settings() == db.encoder.settings()
    assert torch.allclose(loaded.predict_logits(texts), expected, atol=1e-5)
    predictor = BertClassificationPredictor(learner.save_model(tmp_path / "m"), device="cpu")
    assert predictor.encoder.settings() == db.encoder.settings()
    assert torch.allclose(predictor.predict_logits(texts), expected, atol=1e-5)
