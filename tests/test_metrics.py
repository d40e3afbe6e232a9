"""Metrics: fast-bert dicts, plain functions and fastai metrics all end up as whole-set fastai metrics."""

from __future__ import annotations

import numpy as np
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


from bertlearn import metrics as M  # noqa: E402

LOGITS = torch.tensor([[2.0, 0.0, 0.0], [0.0, 2.0, 0.0], [0.0, 0.0, 2.0], [2.0, 0.0, 0.0], [0.0, 2.0, 0.0]])
TARGET = torch.tensor([0, 1, 1, 0, 2])  # predictions: 0, 1, 2, 0, 1 -> 3 of 5 right


class TestSingleLabelSuite:
    def test_values(self):
        assert float(M.accuracy(LOGITS, TARGET)) == pytest.approx(0.6)
        # per class F1: class 0: 1.0; class 1: p=1/2, r=1/2 -> 0.5; class 2: p=0, r=0 -> 0
        assert M.f1_per_class(LOGITS, TARGET).tolist() == pytest.approx([1.0, 0.5, 0.0])
        assert M.f1_macro(LOGITS, TARGET) == pytest.approx(0.5)
        assert M.f1_micro(LOGITS, TARGET) == pytest.approx(0.6)
        assert M.f1_weighted(LOGITS, TARGET) == pytest.approx((2 * 1.0 + 2 * 0.5 + 0) / 5)
        assert M.f1(LOGITS, TARGET, average="micro") == pytest.approx(0.6)
        assert M.precision_macro(LOGITS, TARGET) == pytest.approx((1 + 0.5 + 0) / 3)
        assert M.recall_macro(LOGITS, TARGET) == pytest.approx((1 + 0.5 + 0) / 3)
        assert M.confusion_matrix(LOGITS, TARGET).tolist() == [[2, 0, 0], [0, 1, 1], [0, 1, 0]]
        assert -1 <= M.matthews_corrcoef(LOGITS, TARGET) <= 1
        assert 0 <= M.roc_auc(LOGITS, TARGET) <= 1

    def test_binary_roc_auc_and_undefined_auc(self):
        logits = torch.tensor([[0.0, 1.0], [1.0, 0.0], [0.0, 3.0], [2.0, 0.0]])
        assert M.roc_auc(logits, torch.tensor([1, 0, 1, 0])) == 1.0
        assert np.isnan(M.roc_auc(logits, torch.tensor([1, 1, 1, 1])))


    def test_evaluate_takes_read_only_targets_without_a_warning(self):
        import warnings
        target = TARGET.numpy().copy()
        target.flags.writeable = False  # what pandas 3 gives for an int64 column
        with warnings.catch_warnings():
            warnings.simplefilter("error")
            report = M.evaluate(LOGITS, target, "single_label_classification", ["a", "b", "c"])
        assert report["accuracy"] == pytest.approx(0.6) and not target.flags.writeable


class TestMultiLabelSuite:
    logits = torch.tensor([[3.0, -3.0, 3.0], [-3.0, 3.0, -3.0], [3.0, 3.0, -3.0]])
    target = torch.tensor([[1.0, 0.0, 1.0], [0.0, 1.0, 1.0], [1.0, 0.0, 0.0]])  # decisions differ in 2 of 9

    def test_values(self):
        assert float(M.accuracy_thresh(self.logits, self.target)) == pytest.approx(7 / 9)
        assert M.hamming_loss(self.logits, self.target) == pytest.approx(2 / 9)
        assert M.exact_match(self.logits, self.target) == pytest.approx(1 / 3)
        # per label: label0 tp2 -> 1.0; label1 tp1 fp1 -> 2/3; label2 tp1 fn1 -> 2/3
        assert M.f1_per_label(self.logits, self.target).tolist() == pytest.approx([1.0, 2 / 3, 2 / 3])
        assert M.f1_multilabel_macro(self.logits, self.target) == pytest.approx((1 + 2 / 3 + 2 / 3) / 3)
        assert M.f1_multilabel_micro(self.logits, self.target) == pytest.approx(2 * 4 / (2 * 4 + 1 + 1))
        assert M.fbeta(self.logits, self.target, beta=1.0, average="micro") == pytest.approx(0.8)
        assert 0 <= M.roc_auc_micro(self.logits, self.target) <= 1
        assert 0 <= M.roc_auc_macro(self.logits, self.target) <= 1

    def test_per_label_thresholds(self):
        # 0.9999 on label 1 (sigmoid(3) = 0.95) turns its false positive right and its true positive into a miss
        assert M.hamming_loss(self.logits, self.target, thresh=[0.5, 0.9999, 0.5]) == pytest.approx(2 / 9)
        assert M.exact_match(self.logits, self.target, thresh=[0.5, 0.99999, 0.5]) == pytest.approx(2 / 3)


class TestRegressionSuite:
    def test_values(self):
        pred, y = torch.tensor([[1.0], [2.0], [4.0]]), torch.tensor([1.0, 3.0, 5.0])
        assert M.mse(pred, y) == pytest.approx(2 / 3)
        assert M.mae(pred, y) == pytest.approx(2 / 3)
        assert M.pearson(pred, y) == pytest.approx(np.corrcoef([1, 2, 4], [1, 3, 5])[0, 1])
        assert M.spearman(pred, y) == pytest.approx(1.0)


def test_every_single_label_metric_runs_inside_validate(tiny_learner):
    fns = [M.accuracy, M.f1_macro, M.f1_micro, M.f1_weighted, M.precision_macro, M.recall_macro,
           M.matthews_corrcoef, M.roc_auc, M.confusion_matrix]
    tiny_learner.metrics = to_fastai_metrics([{"name": f.__name__, "function": f} for f in fns])
    results = tiny_learner.validate(quiet=True)
    assert set(results) == {"loss"} | {f.__name__ for f in fns}
    assert results["confusion_matrix"].sum() == len(tiny_learner.dls.valid.dataset)
