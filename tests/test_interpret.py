"""fastai's interpretation and result views on bertlearn learners: texts, not token ids; plots render headless."""

from __future__ import annotations

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


def test_most_confused_names_labels(interp):
    cm = interp.confusion_matrix()
    off = [(interp.vocab[i], interp.vocab[j], cm[i, j]) for i in range(2) for j in range(2) if i != j and cm[i, j]]
    assert sorted(interp.most_confused()) == sorted(off)


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
    out = capsys.readouterr().out
    header = out.strip().splitlines()[0].split()
    assert header == ["text", "label", "prediction"]
    assert len(out.strip().splitlines()) == 5


def test_show_batch_decodes_text(trained_learner, capsys):
    trained_learner.dls.show_batch(max_n=3)
    lines = capsys.readouterr().out.strip().splitlines()
    assert lines[0].split() == ["text", "label"] and len(lines) == 4
    assert "[PAD]" not in "\n".join(lines)


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
