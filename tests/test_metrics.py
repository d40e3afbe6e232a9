"""Metrics: fast-bert dicts, plain functions and fastai metrics all end up as whole-set fastai metrics."""

from __future__ import annotations

import pytest
import torch
from fastai.metrics import F1Score

from bertlearn import DeviceAccumMetric, accuracy, accuracy_multilabel, default_metrics, to_fastai_metrics


def test_accuracy_on_logits():
    logits = torch.tensor([[2.0, 1.0], [0.1, 0.9], [3.0, -1.0], [0.0, 1.0]])
    assert float(accuracy(logits, torch.tensor([0, 1, 1, 1]))) == 0.75


def test_accuracy_multilabel_thresholds_sigmoid():
    logits = torch.tensor([[2.0, -2.0], [-1.0, 1.0]])
    assert float(accuracy_multilabel(logits, torch.tensor([[1.0, 0.0], [1.0, 1.0]]))) == 0.75


def test_to_fastai_metrics_accepts_every_form():
    f1 = F1Score()
    out = to_fastai_metrics([{"name": "acc", "function": accuracy}, accuracy, f1])
    assert [m.name for m in out] == ["acc", "accuracy", "f1_score"] and out[2] is f1
    with pytest.raises(TypeError, match="needs a callable under 'function'"):
        to_fastai_metrics([{"name": "x"}])
    with pytest.raises(TypeError, match="must be dicts, functions or fastai Metrics; got int"):
        to_fastai_metrics([3])


def test_device_metric_scores_the_whole_set_once():
    calls = []

    def fn(y_pred, y_true):
        calls.append((y_pred.shape, y_pred.device.type))
        return accuracy(y_pred, y_true)

    m = DeviceAccumMetric(fn, "acc")

    class FakeLearn:
        pass

    for logits, y in [(torch.tensor([[1.0, 0.0]]), torch.tensor([0])), (torch.tensor([[1.0, 0.0], [0.0, 1.0]]), torch.tensor([1, 1]))]:
        learn = FakeLearn()
        learn.pred, learn.yb = logits, (y,)
        m.accumulate(learn)
    assert m.value == pytest.approx(2 / 3) and calls == [(torch.Size([3, 2]), "cpu")]
    m.reset()
    assert m.value is None


def test_default_metrics_follow_the_task():
    assert [m.name for m in default_metrics("single_label_classification")] == ["accuracy", "f1_macro"]
    assert [m.name for m in default_metrics("multi_label_classification")] == [
        "accuracy_thresh", "f1_multilabel_macro", "f1_multilabel_micro"]
    assert [m.name for m in default_metrics("regression")] == ["mse", "pearson", "spearman"]
