"""fastai's interpretation and result views on bertlearn learners: texts, not token ids; plots render headless."""

from __future__ import annotations

import warnings

import matplotlib

matplotlib.use("Agg")  # headless: what CI and servers have

import matplotlib.pyplot as plt
import numpy as np
import pytest
import torch
from sklearn.metrics import confusion_matrix

from bertlearn import ClassificationInterpretation


@pytest.fixture(scope="module")
def interp(trained_learner):
    with trained_learner.no_bar():
        return ClassificationInterpretation.from_learner(trained_learner)


def _valid_truth_and_preds(learner):
    ds = learner.dls.valid.dataset
    texts = [str(t) for t in ds.texts]
    preds = learner.predict_logits(texts).argmax(-1).numpy()
    return ds.targets, preds


def test_confusion_matrix_matches_sklearn_on_predictions(interp, trained_learner):
    y, preds = _valid_truth_and_preds(trained_learner)
    cm = interp.confusion_matrix()
    assert cm.sum() == len(y)
    np.testing.assert_array_equal(cm, confusion_matrix(y, preds, labels=[0, 1]))
    assert list(interp.vocab) == ["negative", "positive"]


def test_most_confused_counts_the_learners_own_mistakes(tiny_learner):
    from collections import Counter
    with torch.no_grad():  # an untrained head leaning to 'positive': mistakes of both kinds, in known numbers
        tiny_learner.model.classifier.bias.copy_(torch.tensor([0.0, 0.02]))
    y, preds = _valid_truth_and_preds(tiny_learner)  # from predict_logits, not from the interpretation's matrix
    names = ["negative", "positive"]
    expected = Counter((names[t], names[p]) for t, p in zip(y, preds) if t != p)
    with tiny_learner.no_bar():
        got = ClassificationInterpretation.from_learner(tiny_learner).most_confused()
    assert {(a, b): n for a, b, n in got} == dict(expected) and expected


def test_classification_report_prints_label_names(interp, capsys):
    interp.print_classification_report()
    out = capsys.readouterr().out
    assert "negative" in out and "positive" in out and "accuracy" in out


def test_plots_save_as_png(interp, tmp_path):
    interp.plot_confusion_matrix()
    plt.savefig(tmp_path / "cm.png")
    plt.close("all")
    interp.plot_top_losses(4)  # fastai's method returns nothing; the figure is the current one
    plt.savefig(tmp_path / "top.png")
    plt.close("all")
    for name in ("cm.png", "top.png"):
        assert (tmp_path / name).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_top_losses_show_the_texts_with_the_largest_losses(interp, trained_learner, capsys):
    losses, idx, items = interp.top_losses(3, items=True)
    assert torch.all(losses[:-1] >= losses[1:])
    assert losses[0] == interp.losses.max()
    texts = trained_learner.dls.valid.dataset.texts
    assert [t for t, _ in items] == [texts[i] for i in idx.tolist()]
    interp.plot_top_losses(3)
    plt.close("all")
    out = capsys.readouterr().out
    assert "predicted" in out and "loss" in out
    first_words = " ".join(str(texts[int(idx[0])]).split()[:4])
    assert first_words in out  # decoded text, not token ids


def test_learner_interpret_is_the_same_object_kind(trained_learner):
    with trained_learner.no_bar():
        assert isinstance(trained_learner.interpret(), ClassificationInterpretation)


def test_show_results_shows_text_label_prediction(trained_learner, capsys):
    with trained_learner.no_bar():
        trained_learner.show_results(max_n=4)
    lines = capsys.readouterr().out.strip().splitlines()
    heads = [line for line in lines if not line.startswith("    ")]
    assert len(heads) == 4 and lines[0] == heads[0]  # a "label: ... prediction: ..." line over each text
    for head in heads:
        label, prediction = head.split("   ")
        assert label.split(": ")[1] in ("positive", "negative") and prediction.split(": ")[1] in ("positive", "negative")


def test_show_batch_shows_the_training_texts(trained_learner, capsys):
    trained_learner.dls.show_batch(max_n=3)
    texts = [" ".join(line.strip() for line in block.splitlines()[1:])
             for block in ("\n" + capsys.readouterr().out).split("\nlabel: ")[1:]]
    assert len(texts) == 3 and set(texts) <= set(trained_learner.dls.train.dataset.texts)


def test_get_preds_returns_probabilities_in_dataset_order(trained_learner):
    with trained_learner.no_bar():
        probs, targs = trained_learner.get_preds()
    np.testing.assert_array_equal(targs.numpy(), trained_learner.dls.valid.dataset.targets)
    torch.testing.assert_close(probs.sum(-1), torch.ones(len(probs)))


def test_plot_loss_and_lr_find_plot_render_headless(tiny_learner, tmp_path):
    with tiny_learner.no_bar(), tiny_learner.no_logging():
        tiny_learner.fit(1, lr=1e-4)
        tiny_learner.recorder.plot_loss()
        plt.savefig(tmp_path / "loss.png")
        plt.close("all")
        suggestion = tiny_learner.lr_find(num_it=12)
        plt.savefig(tmp_path / "lr.png")
        plt.close("all")
    assert suggestion.valley > 0
    assert (tmp_path / "loss.png").stat().st_size > 1000 and (tmp_path / "lr.png").stat().st_size > 1000


def test_classification_report_without_sklearns_warnings(tiny_learner, capsys):
    import warnings
    from bertlearn import ClassificationInterpretation
    with torch.no_grad():
        tiny_learner.model.classifier.bias.copy_(torch.tensor([50.0, 0.0]))  # 'positive' is never predicted
    with tiny_learner.no_bar():
        interp = ClassificationInterpretation.from_learner(tiny_learner)
        with warnings.catch_warnings():
            warnings.simplefilter("error")  # sklearn's UndefinedMetricWarning came three times here
            interp.print_classification_report()
    row = next(line.split() for line in capsys.readouterr().out.splitlines() if line.strip().startswith("positive"))
    assert row[1:4] == ["0.00", "0.00", "0.00"]


def test_confusion_matrix_figure_holds_its_axis_labels(trained_learner):
    import matplotlib
    matplotlib.use("Agg")
    from bertlearn import ClassificationInterpretation
    with trained_learner.no_bar():
        fig = ClassificationInterpretation.from_learner(trained_learner).plot_confusion_matrix()
    fig.canvas.draw()
    renderer = fig.canvas.get_renderer()
    ax = fig.axes[0]
    figure_box = fig.bbox
    for label in (ax.xaxis.label, ax.yaxis.label):  # "Predicted" was cut off below the saved PNG
        box = label.get_window_extent(renderer)
        assert label.get_text() in ("Predicted", "Actual")
        assert box.x0 >= figure_box.x0 and box.y0 >= figure_box.y0 and box.x1 <= figure_box.x1


@pytest.mark.parametrize("task", ["multi_label", "regression"])
def test_interpretation_refuses_tasks_without_a_single_label_confusion_matrix(tiny_model_dir, tmp_path, task):
    # fastai read a multi-label row's 0/1 targets as class indices 0 and 1: a matrix that looked right, meant nothing
    import pandas as pd
    from conftest import make_texts
    from bertlearn import BertDataBunch, BertLearner, NotForThisTaskError
    df = make_texts(32)
    if task == "multi_label":
        df = df.assign(good=(df["label"] == "positive").astype(int), bad=(df["label"] == "negative").astype(int))
        db = BertDataBunch.from_df(df, df, str(tiny_model_dir), label_col=["good", "bad"], multi_label=True, bs=16,
                                   maxlen=32, device="cpu")
    else:
        db = BertDataBunch.from_df(df.assign(score=np.arange(32) / 7), df.assign(score=np.arange(32) / 7),
                                   str(tiny_model_dir), label_col="score", regression=True, bs=16, maxlen=32,
                                   device="cpu")
    learner = BertLearner.from_pretrained_model(db, str(tiny_model_dir), None, "cpu", None, output_dir=tmp_path)
    with pytest.raises(NotForThisTaskError, match=r"^interpret\(\) builds fastai's single-label confusion matrix, "
                                                  r"which a (multi-label|regression) task does not have"):
        learner.interpret()


def test_interpretation_over_sliding_windows_says_it_counts_windows(tiny_model_dir, tmp_path):
    from conftest import make_texts
    from bertlearn import BertDataBunch, BertLearner
    df = make_texts(24)
    db = BertDataBunch.from_df(df, df, str(tiny_model_dir), bs=16, maxlen=12, long_text="sliding_window",
                               stride=4, device="cpu")
    learner = BertLearner.from_pretrained_model(db, str(tiny_model_dir), None, "cpu", None, output_dir=tmp_path)
    windows = len(db.valid.dataset)
    assert windows > 24
    with learner.no_bar(), pytest.warns(UserWarning, match=rf"^interpret\(\): the {windows} rows here are sliding "
                                                           r"windows of 24 texts; the confusion matrix"):
        interp = learner.interpret()
    assert interp.confusion_matrix().sum() == windows
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # said once by interpret(), not again by get_preds
        interp.print_classification_report()
    with pytest.warns(UserWarning, match=r"^get_preds: the \d+ rows of this loader are sliding windows of 24 texts, "
                                         r"one prediction row each, not one per text; learner\.predict_logits\(texts\) "
                                         r"gives one row per text \(its windows' logits averaged\)$"):
        preds, _ = learner.get_preds(dl=db.test_dl(df["text"].tolist()))
    assert len(preds) == windows


def test_top_losses_over_sliding_windows_show_their_own_rows(tiny_model_dir, tmp_path):
    # fastai's Interpretation re-encodes dl.items: a window decoded to text ("##zz ...") encoded again was another
    # row, a full one split in two, and the rows after it showed other rows' texts and probabilities
    from fastai.interpret import ClassificationInterpretation

    from bertlearn import BertDataBunch, BertLearner
    from conftest import make_texts
    df = make_texts(24)
    df["text"] = df["text"].str.replace(" ", "zzy ", regex=False)  # words of several pieces: windows open mid-word
    db = BertDataBunch.from_df(df, df, str(tiny_model_dir), bs=16, maxlen=12, long_text="sliding_window",
                               stride=4, device="cpu")
    learner = BertLearner.from_pretrained_model(db, str(tiny_model_dir), None, "cpu", None, output_dir=tmp_path)
    ds = db.valid.dataset
    assert any(db.encoder.tokenizer.convert_ids_to_tokens(int(ds.ids[i, 1])).startswith("##") for i in range(len(ds)))
    with learner.no_bar(), pytest.warns(UserWarning, match=rf"^get_preds: the {len(ds)} rows of this loader are "
                                                           r"sliding windows of 24 texts, one prediction row each"):
        interp = ClassificationInterpretation.from_learner(learner)
    losses, idx = interp.top_losses(None)
    inputs, preds, targets, _, row_losses = interp[idx]
    assert len(inputs[0]) == len(idx) == len(ds)
    for k, i in enumerate(idx.tolist()):
        n = int(ds.lengths[i])
        assert inputs[0][k, :n].tolist() == ds.ids[i, :n].tolist() and int(inputs[1][k].sum()) == n
    learner.model.eval()
    with torch.no_grad():
        logits = learner.model(*inputs).logits
    again = torch.nn.functional.cross_entropy(logits, targets, reduction="none")
    assert torch.allclose(again, row_losses, atol=1e-5)


def test_pairs_round_trip_through_items_and_interpretation_exactly(tiny_model_dir, tmp_path, capsys):
    # a pair was stored as "a [SEP] b" and split back at the first " [SEP] ": ("good [SEP] bad movie", "awful") came
    # back as ("good", "bad movie [SEP] awful"), and Interpretation (which re-encodes dl.items) scored another pair
    import pandas as pd
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    from bertlearn import BertDataBunch, BertLearner
    from conftest import make_texts
    a, b = make_texts(16, 1), make_texts(16, 2)
    train = pd.DataFrame({"text_a": a.text, "text_b": b.text, "label": b.label})
    pairs = [("good [SEP] bad movie", "awful"), ("the film [SEP] awful plot was", "great"), ("fun", "dull [SEP] it")]
    valid = pd.DataFrame({"text_a": [x for x, _ in pairs], "text_b": [y for _, y in pairs],
                          "label": ["negative", "positive", "negative"]})
    db = BertDataBunch.from_df(train, valid, str(tiny_model_dir), text_col=["text_a", "text_b"], bs=16, maxlen=32,
                               device="cpu")
    assert [t for t, _ in db.valid.items] == pairs
    learner = BertLearner.from_pretrained_model(db, str(tiny_model_dir), None, "cpu", None, output_dir=tmp_path,
                                                seed=0)
    with learner.no_bar():
        interp = learner.interpret()
    inputs, probs, targets, _, _ = interp[[0, 1, 2]]
    # independent: the saved model in plain transformers, each pair tokenized as a pair
    folder = learner.save_model(tmp_path / "m")
    model = AutoModelForSequenceClassification.from_pretrained(folder).eval()
    tok = AutoTokenizer.from_pretrained(folder)
    for k, (x, y) in enumerate(pairs):
        enc = tok(x, y, truncation=True, max_length=32, return_tensors="pt")
        n = enc["input_ids"].shape[1]
        assert inputs[0][k, :n].tolist() == enc["input_ids"][0].tolist() and int(inputs[1][k].sum()) == n
        with torch.no_grad():
            expected = model(**enc).logits.softmax(-1)[0]
        torch.testing.assert_close(probs[k], expected, atol=1e-5, rtol=1e-5)
    # shown for reading as "a [SEP] b"
    db.valid.show_batch(max_n=3)
    shown = [" ".join(line.strip() for line in block.splitlines()[1:])
             for block in ("\n" + capsys.readouterr().out).split("\nlabel: ")[1:]]
    assert sorted(shown) == sorted(f"{x} [SEP] {y}" for x, y in pairs)


def test_multi_label_decoded_outputs_and_show_results_use_the_learners_thresholds(tiny_model_dir, tmp_path,
                                                                                   monkeypatch):
    # before: fastai decoded with the loss's thresh (0.5), so show_results and get_preds(with_decoded=True) disagreed
    # with predict_labels, save_model, bertlearn predict and serve, which use the tuned thresholds
    import torch
    import bertlearn.data.loader as loader
    from conftest import make_texts
    from bertlearn import BertDataBunch, BertLearner
    df = make_texts(32)
    rng = np.random.default_rng(0)
    for label in ("toxic", "obscene", "insult"):
        df[label] = rng.integers(0, 2, len(df))
    db = BertDataBunch.from_df(df, df, str(tiny_model_dir), label_col=["toxic", "obscene", "insult"], multi_label=True,
                               bs=16, maxlen=32, device="cpu")
    learner = BertLearner.from_pretrained_model(db, str(tiny_model_dir), None, "cpu", None, output_dir=tmp_path)
    learner.thresholds = [0.3, 0.7, 0.4]
    with learner.no_bar():
        probs, _, decoded = learner.get_preds(dl=db.valid.new(shuffle=False), with_decoded=True)
    assert ((probs > 0.4) & (probs < 0.6)).all()  # an untrained head: every label's probability near 0.5
    assert torch.equal(decoded.bool(), probs > torch.tensor([0.3, 0.7, 0.4]))
    assert not torch.equal(decoded.bool(), probs > 0.5)  # the 0.5 cut decides these rows otherwise
    learner.thresholds[2] = 0.65  # changed in place: followed too
    shown = []
    monkeypatch.setattr(loader, "display_frame", lambda frame, **kwargs: shown.append(frame))
    with learner.no_bar():
        learner.show_results(max_n=8, shuffle=False)
    assert list(shown[0]["prediction"]) == ["toxic"] * 8
