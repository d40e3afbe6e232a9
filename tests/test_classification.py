"""BertLearner's factory and predictions: metrics checked against the task when the learner is built, and
predict_batch() without texts."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from conftest import make_texts, quiet_fit

import bertlearn
from bertlearn import BertDataBunch, BertLearner, BertLearnError, DataError
from bertlearn import metrics as M


def multi_label_bunch(tokenizer):
    rng = np.random.default_rng(0)
    frames = []
    for n, seed in ((48, 1), (16, 2)):
        df = make_texts(n, seed=seed)[["text"]]
        for label in ("toxic", "obscene", "insult"):
            df[label] = rng.integers(0, 2, n)
        frames.append(df)
    return BertDataBunch.from_df(*frames, tokenizer, label_col=["toxic", "obscene", "insult"], multi_label=True,
                                 bs=16, maxlen=32, device="cpu")


class TestMetricsCheckedAtBuild:
    def test_fast_berts_readme_accuracy_on_multi_label_fails_when_the_learner_is_built(self, tiny_tokenizer,
                                                                                      tiny_model_dir, tmp_path):
        # it failed only after the first epoch had trained, as a RuntimeError from fastai's Recorder
        db = multi_label_bunch(tiny_tokenizer)
        with pytest.raises(BertLearnError) as e:
            BertLearner.from_pretrained_model(db, str(tiny_model_dir), metrics=[{"name": "accuracy",
                                                                                "function": M.accuracy}],
                                              device="cpu", logger=None, output_dir=tmp_path, multi_label=True)
        assert str(e.value).startswith(
            "metrics: 'accuracy' cannot score this multi-label classification task: called as validation calls it, "
            "with y_pred of shape (2, 3) (logits) and y_true of shape (2, 3) (float32 0/1 rows), it raised "
            "ValueError: accuracy() takes y_pred (n, c) of scores, one column per class, and y_true (n,) of class "
            "indices in [0, c); got y_pred of shape (2, 3) and y_true of shape (2, 3) (float32)")
        assert str(e.value).endswith(
            "For multi-label classification use accuracy_thresh (right (row, label) decisions at 0.5) or "
            "accuracy_multilabel (fast-bert's top-label match) where fast-bert's README has accuracy; also fbeta, "
            "F1, roc_auc, Hamming_loss, Exact_Match_Ratio, f1_multilabel_macro (from bertlearn.metrics import "
            "accuracy_thresh), or metrics=None for the task's defaults")

    def test_metrics_set_on_the_learner_are_checked_too(self, tiny_tokenizer, tiny_model_dir, tmp_path):
        # before: learn.metrics = [...] (fastai's way) skipped the check: accuracy on a multi-label task failed only
        # after the next fit's first epoch, inside fastai's Recorder
        db = multi_label_bunch(tiny_tokenizer)
        learner = BertLearner.from_pretrained_model(db, str(tiny_model_dir), metrics=None, device="cpu", logger=None,
                                                    output_dir=tmp_path, multi_label=True)
        before = list(learner.metrics)
        with pytest.raises(BertLearnError, match=r"^metrics: 'accuracy' cannot score this multi-label classification "
                                                 r"task: called as validation calls it"):
            learner.metrics = [M.accuracy]
        assert list(learner.metrics) == before  # a refused setting leaves the metrics as they were
        learner.metrics = [M.accuracy_thresh]
        assert [m.name for m in learner.metrics] == ["accuracy_thresh"]

    def test_fast_berts_multi_label_metrics_build_and_score(self, tiny_tokenizer, tiny_model_dir, tmp_path):
        from fastai.metrics import accuracy_multi
        db = multi_label_bunch(tiny_tokenizer)
        fns = [M.accuracy_thresh, M.accuracy_multilabel, M.fbeta, M.roc_auc, M.F1, M.Hamming_loss,
               M.Exact_Match_Ratio]
        learner = BertLearner.from_pretrained_model(db, str(tiny_model_dir), tmp_path,
                                                    [{"name": f.__name__, "function": f} for f in fns] +
                                                    [accuracy_multi], "cpu", None)
        assert set(learner.validate(quiet=True)) == {"loss", "accuracy_multi"} | {f.__name__ for f in fns}

    @pytest.mark.parametrize("task", ["single", "pairs", "regression"])
    def test_each_tasks_metrics_build(self, tiny_tokenizer, tiny_model_dir, tmp_path, task):
        from fastai.metrics import F1Score
        train, valid = make_texts(48, seed=1), make_texts(16, seed=2)
        if task == "pairs":
            for df in (train, valid):
                df["text_b"] = df["text"].str[::-1]
            db = BertDataBunch.from_df(train, valid, tiny_tokenizer, text_col=["text", "text_b"], bs=16, maxlen=32,
                                       device="cpu")
        elif task == "regression":
            for df in (train, valid):
                df["score"] = df["text"].str.len().astype(float)
            db = BertDataBunch.from_df(train, valid, tiny_tokenizer, label_col="score", regression=True, bs=16,
                                       maxlen=32, device="cpu")
        else:
            db = BertDataBunch.from_df(train, valid, tiny_tokenizer, bs=16, maxlen=32, device="cpu")
        fns = [M.mse, M.mae, M.pearson, M.spearman] if task == "regression" else \
            [M.accuracy, M.f1_macro, M.roc_auc, M.matthews_corrcoef, M.confusion_matrix]
        extra = [] if task == "regression" else [F1Score()]
        learner = BertLearner.from_pretrained_model(db, str(tiny_model_dir), metrics=[
            {"name": f.__name__, "function": f} for f in fns] + extra, device="cpu", logger=None, output_dir=tmp_path)
        assert [m.name for m in learner.metrics] == [f.__name__ for f in fns] + [m.name for m in extra]


def test_a_bf16_regression_learner_scores_the_float32_head_values_it_returns(tiny_model_dir, tmp_path, monkeypatch):
    # before: fastai's loop ran the head in bf16, so the loss and metrics scored values rounded to multiples of 8 near
    # 2000 while validate(return_preds=True) returned the float32 head's values (mse 624.2 against 618.0 on these rows)
    import torch
    from sklearn.metrics import mean_absolute_error, mean_squared_error
    import bertlearn.callbacks as callbacks
    monkeypatch.setattr(callbacks, "native_bf16", lambda device: True)  # as on a CPU with AMX
    monkeypatch.setattr("bertlearn.device.native_bf16", lambda device: True)

    def years(n, seed):
        df = make_texts(n, seed)
        df["year"] = 1950.0 + 50 * (df.label == "positive") + np.linspace(0, 7, n)
        return df[["text", "year"]]

    valid = years(16, 2)
    db = BertDataBunch.from_df(years(32, 1), valid, str(tiny_model_dir), label_col="year", regression=True, bs=8,
                               maxlen=32, device="cpu")
    learner = BertLearner.from_pretrained_model(db, str(tiny_model_dir), [{"name": "mse", "function": M.mse},
                                                                          {"name": "mae", "function": M.mae}],
                                                "cpu", None, output_dir=tmp_path, seed=0, is_fp16=True)
    with learner.no_bar(), learner.no_logging():
        learner.fit(1, lr=1e-3)
    results, preds = learner.validate(quiet=True, return_preds=True)
    values = preds[:, 0].numpy()
    assert not [v for v in values if float(torch.tensor(v, dtype=torch.bfloat16)) == v]  # none is a bf16 value
    assert results["mse"] == pytest.approx(mean_squared_error(valid.year, values), rel=1e-5)
    assert results["loss"] == pytest.approx(mean_squared_error(valid.year, values), rel=1e-5)
    assert results["mae"] == pytest.approx(mean_absolute_error(valid.year, values), rel=1e-5)
    raw = learner.get_preds(dl=learner.dls.valid.new(shuffle=False))[0]
    assert not [v for v in raw.flatten().tolist() if float(torch.tensor(v, dtype=torch.bfloat16)) == v]
    assert learner.model.classifier.forward.__func__ is type(learner.model.classifier).forward  # the head put back


@pytest.mark.filterwarnings("ignore:predicting with a classification head that has not been trained")
class TestPredictWithoutTexts:
    def test_no_texts_and_no_test_data_is_a_data_error_with_the_validation_call(self, tiny_learner):
        with pytest.raises(DataError) as e:
            tiny_learner.predict_batch()
        assert str(e.value) == (
            "predict_batch() without texts predicts the databunch's test_data, but none was given; pass texts: "
            "learner.predict_batch(['a text', ...]) (or build the BertDataBunch with test_data=). fast-bert "
            "predicted the validation set here; for its rows, in order: bertlearn.rank_predictions("
            "learner.validation_predictions(learner.dls.valid), learner.dls.labels, multi_label=False)")
        assert not isinstance(e.value, bertlearn.NotFittedError)  # the model may well be fitted
        # the call it names ranks the validation rows, as fast-bert's predict_batch() did
        call = str(e.value).rsplit("in order: ", 1)[1]
        ranked = eval(call, {"bertlearn": bertlearn, "learner": tiny_learner})
        valid = tiny_learner.dls.valid.dataset
        assert len(ranked) == valid.n_texts
        texts = [str(t) for t in valid.texts]
        expected = tiny_learner.predict_batch(texts)
        assert [[l for l, _ in row] for row in ranked] == [[l for l, _ in row] for row in expected]
        assert np.allclose([[p for _, p in row] for row in ranked], [[p for _, p in row] for row in expected],
                           atol=1e-5)

    def test_a_regression_learner_names_its_own_call(self, tiny_tokenizer, tiny_model_dir, tmp_path):
        train, valid = make_texts(32, seed=1), make_texts(8, seed=2)
        for df in (train, valid):
            df["score"] = df["text"].str.len().astype(float)
        db = BertDataBunch.from_df(train, valid, tiny_tokenizer, label_col="score", regression=True, bs=16,
                                   maxlen=32, device="cpu")
        learner = BertLearner.from_pretrained_model(db, str(tiny_model_dir), metrics=None, device="cpu", logger=None,
                                                    output_dir=tmp_path)
        with pytest.raises(DataError, match=r"learner.dls.labels, regression=True\)$"):
            learner.predict_labels()


def test_learner_embed_takes_the_larger_maxlen_its_cut_warning_offers(tiny_learner, tmp_path):
    # before: the warning offered "pass a larger maxlen (up to 512)", but learner.embed had no maxlen (a TypeError)
    import warnings

    import torch
    from transformers import AutoModel, AutoTokenizer
    text = "good " * 80  # 80 words: more than the databunch's maxlen of 64 tokens
    with pytest.warns(UserWarning) as said:
        cut = tiny_learner.embed([text])
    assert [str(w.message) for w in said if "maxlen" in str(w.message)] == [
        "embed: 1 of 1 texts are longer than maxlen=64 tokens (text 0 the first) and were cut to their first 64; "
        "their vectors describe only that part. Split long texts, or pass a larger maxlen (up to 512)"]
    with warnings.catch_warnings(record=True) as said:
        warnings.simplefilter("always")
        whole = tiny_learner.embed([text], maxlen=128)
    assert not [w for w in said if "maxlen" in str(w.message)]  # 82 tokens, none cut
    # independent: the saved encoder in plain transformers, float32, its [CLS] vector
    folder = tiny_learner.save_model(tmp_path / "m")
    encoder = AutoModel.from_pretrained(folder).eval()
    tok = AutoTokenizer.from_pretrained(folder)
    with torch.no_grad():
        for maxlen, got in ((128, whole), (64, cut)):
            enc = tok([text], truncation=True, max_length=maxlen, return_tensors="pt")
            expected = encoder(**enc).last_hidden_state[:, 0].numpy()
            np.testing.assert_allclose(got, expected, atol=1e-5, rtol=1e-5)
    assert enc["input_ids"].shape[1] == 64 and not np.allclose(whole, cut, atol=1e-3)


# sentence pairs' segment ids: transformers 5's ALBERT tokenizer does not list token_type_ids in model_input_names
# (huggingface/transformers#48128) although ALBERT has trained segment embeddings; pairs were sent without them

@pytest.fixture(scope="module")
def segment_archs(tmp_path_factory):
    from conftest import build_tiny_architecture
    root = tmp_path_factory.mktemp("segment_archs")
    return {k: build_tiny_architecture(k, root / k) for k in ("albert", "distilbert")}


def pair_frames():
    df = make_texts(24, seed=1)
    pairs = df.assign(text_a=df["text"], text_b=df["text"].iloc[::-1].values)[["text_a", "text_b", "label"]]
    return pairs, pairs[:8]


PAIRS = [("good film really", "bad awful plot"), ("boring", "a great and lovely movie indeed")]


@pytest.mark.filterwarnings("ignore:predicting with a classification head")
def test_albert_pairs_predict_with_segment_ids_everywhere(segment_archs, tmp_path):
    import torch
    from transformers import AutoTokenizer, pipeline
    from bertlearn import BertClassificationPredictor, OnnxPredictor

    folder = segment_archs["albert"]
    db = BertDataBunch.from_df(*pair_frames(), str(folder), text_col=["text_a", "text_b"], maxlen=64, device="cpu")
    learner = BertLearner.from_pretrained_model(db, str(folder), None, "cpu", None, output_dir=tmp_path)
    logits = learner.predict_logits(PAIRS)
    tok, model = AutoTokenizer.from_pretrained(folder), learner.model.eval()
    enc = tok([a for a, _ in PAIRS], [b for _, b in PAIRS], padding=True, truncation=True, max_length=64,
              return_tensors="pt", return_token_type_ids=True)
    with torch.no_grad():
        expected = model(**enc).logits
        unsegmented = model(input_ids=enc["input_ids"], attention_mask=enc["attention_mask"]).logits
    assert (logits - expected).abs().max().item() < 1e-6
    # before: these were the learner's logits (a fresh head on a tiny model: small logits, a clear difference)
    assert (logits - unsegmented).abs().max().item() > 5e-5

    saved = learner.save_model(tmp_path / "m")
    assert "token_type_ids" in AutoTokenizer.from_pretrained(saved).model_input_names
    assert (BertClassificationPredictor(saved).predict_logits(PAIRS) - expected).abs().max().item() < 1e-5
    assert (OnnxPredictor(learner.to_onnx(tmp_path / "onnx")).predict_logits(PAIRS) - expected).abs().max() < 1e-5
    clf = pipeline("text-classification", model=str(saved), device=-1)
    out = clf([{"text": a, "text_pair": b} for a, b in PAIRS], top_k=None, function_to_apply="none")
    by_label = [[{o["label"]: o["score"] for o in row}[name] for name in db.labels] for row in out]
    assert np.abs(np.array(by_label) - expected.numpy()).max() < 1e-5


def test_pairs_sent_without_segment_ids_the_model_has_are_warned_about(segment_archs, tmp_path):
    from transformers import AutoTokenizer
    # a tokenizer saved on its own (no config beside it to tell segment embeddings): pairs go without them
    AutoTokenizer.from_pretrained(segment_archs["albert"]).save_pretrained(tmp_path / "tok")
    db = BertDataBunch.from_df(*pair_frames(), str(tmp_path / "tok"), text_col=["text_a", "text_b"], maxlen=32,
                               device="cpu")
    assert db.n_inp == 2
    with pytest.warns(UserWarning) as record:
        BertLearner.from_pretrained_model(db, str(segment_archs["albert"]), None, "cpu", None, output_dir=tmp_path)
    said = [str(w.message) for w in record if "segment" in str(w.message)]
    assert said == [
        "the sentence pairs were encoded without token_type_ids (segment ids), so every token gets segment 0, "
        "although AlbertForSequenceClassification has 2 segment embeddings and was pretrained with them: "
        "AlbertTokenizer does not list token_type_ids in its model_input_names (transformers 5 dropped them from "
        "ALBERT's and other tokenizers); build the BertDataBunch with token_type_ids=True to send them"]
    db = BertDataBunch.from_df(*pair_frames(), str(tmp_path / "tok"), text_col=["text_a", "text_b"], maxlen=32,
                               device="cpu", token_type_ids=True)
    import warnings
    with warnings.catch_warnings():
        warnings.simplefilter("error", UserWarning)  # nothing left to warn about
        assert BertLearner.from_pretrained_model(db, str(segment_archs["albert"]), None, "cpu", None,
                                                 output_dir=tmp_path).dls.n_inp == 3


def test_distilbert_pairs_keep_two_inputs_and_forced_segments_name_the_fix(segment_archs, tmp_path):
    folder = str(segment_archs["distilbert"])
    db = BertDataBunch.from_df(*pair_frames(), folder, text_col=["text_a", "text_b"], maxlen=32, device="cpu")
    assert BertLearner.from_pretrained_model(db, folder, None, "cpu", None, output_dir=tmp_path).dls.n_inp == 2
    db = BertDataBunch.from_df(*pair_frames(), folder, text_col=["text_a", "text_b"], maxlen=32, device="cpu",
                               token_type_ids=True)
    with pytest.raises(bertlearn.ModelError) as e:
        BertLearner.from_pretrained_model(db, folder, None, "cpu", None, output_dir=tmp_path)
    assert str(e.value) == (
        "DistilBertForSequenceClassification.forward takes ['input_ids', 'attention_mask', 'inputs_embeds'] first, "
        "but batches hold ['input_ids', 'attention_mask', 'token_type_ids']; this architecture cannot be driven "
        "positionally by fastai; the sentence pairs carry token_type_ids, which this model does not take: build the "
        "BertDataBunch with token_type_ids=False")


@pytest.mark.filterwarnings("ignore:predicting with a classification head")
def test_a_left_padding_tokenizers_texts_predict_alike_in_any_batch(tmp_path, tiny_model_dir):
    # before: batches were padded on the right whatever the tokenizer's padding_side, so XLNet's classifier (which
    # reads the last position) read a pad for every shorter row: a text's logits changed with the other texts of
    # its batch (0.66 off at bs 3, twice the logits' size), in training, validation and prediction alike
    import torch
    import transformers as T
    from conftest import build_tiny_architecture

    from bertlearn import BertClassificationPredictor, ModelError
    from bertlearn.graphs import inference_graphs
    folder = build_tiny_architecture("xlnet", tmp_path / "xlnet")
    df = make_texts(24, seed=1)
    db = BertDataBunch.from_df(df, df[:8], str(folder), bs=8, maxlen=64, device="cpu")
    learner = BertLearner.from_pretrained_model(db, str(folder), None, "cpu", None, seed=0)
    texts = ["good", "the plot was really very dull and the acting was poor and boring", "bad film"]
    tok = T.AutoTokenizer.from_pretrained(folder)
    assert tok.padding_side == "left" and db.encoder.pad_left
    model = learner.model.eval()
    with torch.no_grad():
        alone = torch.cat([model(**tok([t], return_tensors="pt")).logits for t in texts])
        together = model(**tok(texts, padding=True, return_tensors="pt")).logits
    torch.testing.assert_close(together, alone, atol=1e-5, rtol=0)  # the tokenizer's own left padding
    for bs in (1, 3):
        torch.testing.assert_close(learner.predict_logits(texts, bs=bs), alone, atol=1e-5, rtol=0)
    predictor = BertClassificationPredictor(learner.save_model(tmp_path / "m"), device="cpu")
    torch.testing.assert_close(predictor.predict_logits(texts), alone, atol=1e-5, rtol=0)
    # CUDA graphs pad each batch on the right up to its width bucket: left out for such a tokenizer, True refused
    assert inference_graphs(model, 64, torch.bfloat16, "auto", pad_left=True) is None
    with pytest.raises(ModelError) as err:
        inference_graphs(model, 64, None, True, pad_left=True)
    assert str(err.value) == (
        "cuda_graphs=True: the tokenizer pads on the left (the model's classifier reads the last position, XLNet's), "
        "and graphs pad every batch on the right up to its width bucket. Pass cuda_graphs='auto' or False")
    # XLNet takes token_type_ids by name only (its third input is mems): forced segment ids are refused saying so
    pairs = df.assign(text_b=df["text"].iloc[::-1].values)
    xl_pairs = BertDataBunch.from_df(pairs, pairs[:8], str(folder), text_col=["text", "text_b"], bs=8, maxlen=64,
                                     device="cpu", token_type_ids=True)
    with pytest.raises(ModelError) as err:
        BertLearner.from_pretrained_model(xl_pairs, str(folder), None, "cpu", None, seed=0)
    assert str(err.value).endswith(
        "cannot be driven positionally by fastai; the sentence pairs carry token_type_ids, which this model takes by "
        "name only (its third input is 'mems'), while fastai passes inputs by position: build the BertDataBunch with "
        "token_type_ids=False")
    # left to decide, XLNet's pairs go without segment ids: said (it was silent), not when token_type_ids=False
    xl_auto = BertDataBunch.from_df(pairs, pairs[:8], str(folder), text_col=["text", "text_b"], bs=8, maxlen=64,
                                    device="cpu")
    with pytest.warns(UserWarning) as seen:
        BertLearner.from_pretrained_model(xl_auto, str(folder), None, "cpu", None, seed=0)
    assert [str(w.message) for w in seen if "token_type_ids" in str(w.message)] == [
        "the sentence pairs are encoded without token_type_ids (segment ids), although XLNetTokenizer's pair template "
        "gives the two texts segments: XLNetForSequenceClassification takes them by name only (its third input is "
        "'mems'), while fastai passes inputs by position, so the model tells the texts apart by the separator token "
        "alone; pass token_type_ids=False to the BertDataBunch to say this is meant"]
    xl_off = BertDataBunch.from_df(pairs, pairs[:8], str(folder), text_col=["text", "text_b"], bs=8, maxlen=64,
                                   device="cpu", token_type_ids=False)
    import warnings
    with warnings.catch_warnings(record=True) as quiet:
        warnings.simplefilter("always")
        BertLearner.from_pretrained_model(xl_off, str(folder), None, "cpu", None, seed=0)
    assert not [w for w in quiet if "token_type_ids" in str(w.message)]
    # padding_side="right" set on the XLNet tokenizer is not followed either (its classifier reads the last position)
    right = T.AutoTokenizer.from_pretrained(folder, padding_side="right")
    with pytest.warns(UserWarning, match=r"^padding_side='right' on the XLNetTokenizer is not followed: batches pad "
                      r"on the left, as its class does \(its model's classifier reads the last position, which "
                      r"right padding would make a pad for every shorter row\); the tokenizer is left as it is$"):
        right_db = BertDataBunch.from_df(df, df[:8], right, bs=8, maxlen=64, device="cpu")
    assert right.padding_side == "right" and right_db.encoder.pad_left
    # padding_side="left" set on a BERT tokenizer is not followed: BERT counts positions from the first token, pads
    # included, so left padding moved a text's positions with its batch (1.3e-2 between bs 1 and 3 in review)
    bert_tok = T.AutoTokenizer.from_pretrained(tiny_model_dir, padding_side="left")
    with pytest.warns(UserWarning, match=r"^padding_side='left' on the BertTokenizer is not followed: batches pad on "
                      r"the right, as its class does \(these models number positions from the first token, pads "
                      r"included, so left padding would move a text's positions with its batch\); the tokenizer is "
                      r"left as it is$"):
        bert_db = BertDataBunch.from_df(df, df[:8], bert_tok, bs=8, maxlen=64, device="cpu")
    bert = BertLearner.from_pretrained_model(bert_db, str(tiny_model_dir), None, "cpu", None, seed=0)
    assert bert_tok.padding_side == "left" and not bert_db.encoder.pad_left
    with torch.no_grad():
        bert_alone = torch.cat([bert.model.eval()(**bert_tok([t], return_tensors="pt")).logits for t in texts])
    for bs in (1, 3):
        torch.testing.assert_close(bert.predict_logits(texts, bs=bs), bert_alone, atol=1e-5, rtol=0)
    # said where the data is built, not again by every load of the saved folder (its tokenizer keeps the setting)
    import warnings
    with warnings.catch_warnings(record=True) as seen:
        warnings.simplefilter("always")
        BertClassificationPredictor(bert.save_model(tmp_path / "bert"), device="cpu")
    assert not [w for w in seen if str(w.message).startswith("padding_side")]


def test_pairs_for_a_model_with_one_segment_embedding(tmp_path, tiny_model_dir):
    # a RoBERTa model shipped with a BERT tokenizer (klue/roberta-*: type_vocab_size=1): the tokenizer lists
    # token_type_ids, so pairs sent segment 1, past the model's one-row table: a bare IndexError in fit and predict
    import torch
    import transformers as T

    from bertlearn import ModelError
    tok = T.AutoTokenizer.from_pretrained(tiny_model_dir)
    config = T.RobertaConfig(vocab_size=len(tok), pad_token_id=tok.pad_token_id, hidden_size=32, num_hidden_layers=2,
                             num_attention_heads=4, intermediate_size=37, max_position_embeddings=514,
                             type_vocab_size=1)
    torch.manual_seed(0)
    folder = tmp_path / "roberta"
    T.AutoModel.from_config(config).save_pretrained(folder)
    tok.save_pretrained(folder)
    df = make_texts(16, seed=1).assign(text_b=lambda d: d["text"].iloc[::-1].values)
    db = BertDataBunch.from_df(df, df[:8], str(folder), text_col=["text", "text_b"], bs=8, maxlen=32, device="cpu")
    assert "token_type_ids" in tok.model_input_names and not db.encoder.with_token_types
    learner = BertLearner.from_pretrained_model(db, str(folder), None, "cpu", None, seed=0, output_dir=tmp_path / "o")
    quiet_fit(learner, 1, lr=1e-3)
    pair = ("good movie", "bad film")
    with torch.no_grad():
        expected = learner.model.eval()(**tok(*pair, return_tensors="pt", return_token_type_ids=False)).logits
    torch.testing.assert_close(learner.predict_logits([pair]), expected, atol=1e-5, rtol=0)
    forced = BertDataBunch.from_df(df, df[:8], str(folder), text_col=["text", "text_b"], bs=8, maxlen=32,
                                   device="cpu", token_type_ids=True)
    with pytest.raises(ModelError) as err:
        BertLearner.from_pretrained_model(forced, str(folder), None, "cpu", None, seed=0, output_dir=tmp_path / "o")
    assert str(err.value) == (
        "the sentence pairs carry token_type_ids (segment 1 for the second text), but RobertaForSequenceClassification "
        "has one segment embedding (type_vocab_size=1), so segment 1 is past its table; build the BertDataBunch with "
        "token_type_ids=False (the model tells a pair's texts apart by its separator tokens)")
