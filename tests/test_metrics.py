"""Metrics: fast-bert dicts, plain functions and fastai metrics all end up as whole-set fastai metrics."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from fastai.metrics import F1Score

from bertlearn import BertLearnError, DeviceAccumMetric, accuracy, accuracy_multilabel, default_metrics, to_fastai_metrics


def test_accuracy_on_logits():
    logits = torch.tensor([[2.0, 1.0], [0.1, 0.9], [3.0, -1.0], [0.0, 1.0]])
    assert float(accuracy(logits, torch.tensor([0, 1, 1, 1]))) == 0.75


def test_accuracy_multilabel_is_fast_berts_top_label_match():
    logits = torch.tensor([[2.0, -2.0], [-1.0, 1.0], [-1.0, 1.0]])
    # row 0: top label 0 = first true label 0; row 1: top 1, first true label 0; row 2: top 1 = first true 1.
    # (The share of right (row, label) decisions at 0.5, accuracy_thresh, is 5/6 here.)
    y = torch.tensor([[1.0, 0.0], [1.0, 1.0], [0.0, 1.0]])
    assert float(accuracy_multilabel(logits, y)) == pytest.approx(2 / 3)


def test_to_fastai_metrics_accepts_every_form():
    f1 = F1Score()
    out = to_fastai_metrics([{"name": "acc", "function": accuracy}, accuracy, f1])
    assert [m.name for m in out] == ["acc", "accuracy", "f1_score"] and out[2] is f1
    with pytest.raises(BertLearnError, match="needs a callable under 'function'"):
        to_fastai_metrics([{"name": "x"}])
    with pytest.raises(BertLearnError, match=r"must be dicts \{'name': ..., 'function': f\}, functions or fastai "
                                             r"Metrics; got int 3$"):
        to_fastai_metrics([3])
    with pytest.raises(BertLearnError) as e:  # one dict, not a list: its keys were read as the metrics
        to_fastai_metrics({"name": "acc", "function": accuracy})
    assert str(e.value).startswith("metrics={'name': 'acc', 'function': <function accuracy") and str(e.value).endswith(
        "is one metric; pass a list of them, e.g. metrics=[{'name': 'accuracy', 'function': accuracy}] (fast-bert's "
        "form), [accuracy] or None for the task's defaults")
    with pytest.raises(BertLearnError) as e:
        to_fastai_metrics(["accuracy"])
    assert str(e.value) == ("metrics item 'accuracy' is a name; pass the function: from bertlearn.metrics import "
                            "accuracy, then metrics=[{'name': 'accuracy', 'function': accuracy}] or [accuracy]")


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



def test_device_metric_pickles_without_the_last_validation():
    """export() pickles the learner with its metrics: the last validation's predictions must not ride along."""
    import pickle

    m = DeviceAccumMetric(accuracy, "acc")

    class FakeLearn:
        pass

    learn = FakeLearn()
    learn.pred, learn.yb = torch.randn(1000, 4), (torch.randint(0, 4, (1000,)),)
    m.accumulate(learn)
    data = pickle.dumps(m)
    back = pickle.loads(data)
    assert len(data) < 2000  # 1000x4 floats would be 16 kB
    assert back.preds == [] and back.targs == [] and back.value is None and back.name == "acc"
    assert len(m.preds) == 1  # the live metric keeps its rows

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
        # MCC from the confusion matrix C (Gorodkin): t = row sums, p = column sums, c = trace, s = n
        # t = (2, 2, 1), p = (2, 2, 1), c = 3, s = 5: (c*s - t.p) / sqrt((s^2 - p.p)(s^2 - t.t)) = (15 - 9) / 16
        assert M.matthews_corrcoef(LOGITS, TARGET) == pytest.approx(6 / 16)

    def test_a_class_absent_from_targets_and_predictions_is_left_out_of_macro_averages(self):
        logits = torch.tensor([[2.0, 0.0, 0.0], [0.0, 2.0, 0.0], [2.0, 0.0, 0.0], [0.0, 2.0, 0.0]])
        target = torch.tensor([0, 1, 1, 1])  # class 2 neither occurs nor is predicted
        # class 0: p = 1/2, r = 1 -> F1 2/3; class 1: p = 1, r = 2/3 -> F1 4/5; macro over the 2 classes present
        assert M.f1_macro(logits, target) == pytest.approx((2 / 3 + 4 / 5) / 2)
        assert M.precision_macro(logits, target) == pytest.approx((1 / 2 + 1) / 2)
        assert M.recall_macro(logits, target) == pytest.approx((1 + 2 / 3) / 2)
        assert M.f1_per_class(logits, target).tolist() == pytest.approx([2 / 3, 4 / 5, 0.0])  # all classes, by index

    def test_multiclass_roc_auc_by_hand(self):
        # one-vs-rest AUC of each class = share of (positive, negative) pairs ranked right, ties 1/2
        logits = torch.tensor([[3.0, 0.0, 0.0], [0.0, 3.0, 0.0], [0.0, 0.0, 3.0], [1.0, 2.0, 0.0], [0.0, 1.0, 2.0]])
        target = torch.tensor([0, 1, 2, 0, 1])
        probs = logits.softmax(-1).numpy()
        aucs = []
        for k in range(3):
            pos, neg = probs[target.numpy() == k, k], probs[target.numpy() != k, k]
            pairs = [(a > b) + 0.5 * (a == b) for a in pos for b in neg]
            aucs.append(sum(pairs) / len(pairs))
        assert M.roc_auc(logits, target) == pytest.approx(np.mean(aucs))

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
        # micro AUC over the 9 (row, label) scores: 5 positives score high x4, low x1; 4 negatives high x1, low x3.
        # Of 5*4 pairs, 4*3 are ranked right and 4*1 + 1*3 tie (count 1/2): (12 + 3.5) / 20
        assert M.roc_auc_micro(self.logits, self.target) == pytest.approx(15.5 / 20)
        assert M.roc_auc(self.logits, self.target) == pytest.approx(15.5 / 20)  # fast-bert's roc_auc, not NaN
        # per label: label 0 positives high, high vs a low negative -> 1; label 1: positive high vs negatives low,
        # high -> (1 + 0.5) / 2; label 2: positives high, low vs a low negative -> (1 + 0.5) / 2
        assert M.roc_auc_macro(self.logits, self.target) == pytest.approx((1 + 0.75 + 0.75) / 3)

    def test_macro_auc_leaves_out_a_label_with_one_class(self):
        target = self.target.clone()
        target[:, 0] = 1  # label 0 now only positive: its AUC is undefined (sklearn raises), so it is left out
        assert M.roc_auc_macro(self.logits, target) == pytest.approx((0.75 + 0.75) / 2)

    def test_per_label_thresholds(self):
        # 0.99 on label 1 (sigmoid(3) = 0.953) turns its false positive (row 2) and its true positive (row 1)
        # into a right negative and a miss: still 2 wrong; 0.99 on label 0 as well turns its 2 true positives
        # into misses: 4 of 9 wrong
        assert M.hamming_loss(self.logits, self.target, thresh=[0.99, 0.99, 0.5]) == pytest.approx(4 / 9)
        # exact rows at [0.5, 0.99, 0.5]: row 0 right, row 1 (label 1 missed) wrong, row 2 right -> 2 of 3
        assert M.exact_match(self.logits, self.target, thresh=[0.5, 0.99, 0.5]) == pytest.approx(2 / 3)
        assert M.exact_match(self.logits, self.target) == pytest.approx(1 / 3)


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


# --- every metric against its reference on random inputs: sklearn / SciPy, and fast-bert's formulas ---

import contextlib  # noqa: E402
import warnings  # noqa: E402

import scipy.stats  # noqa: E402
import sklearn.metrics as skm  # noqa: E402
from hypothesis import given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402


@st.composite
def single_label(draw):
    n, c = draw(st.integers(2, 30)), draw(st.integers(2, 5))
    logits = draw(st.lists(st.lists(st.integers(-4, 4), min_size=c, max_size=c), min_size=n, max_size=n))
    # small integer logits: ties and classes absent from targets and predictions are frequent, as in real sets
    y = draw(st.lists(st.integers(0, c - 1), min_size=n, max_size=n))
    return torch.tensor(logits, dtype=torch.float32) / 2, torch.tensor(y)


@st.composite
def multi_label(draw, min_rows=2):
    n, c = draw(st.integers(min_rows, 30)), draw(st.integers(2, 5))
    logits = draw(st.lists(st.lists(st.integers(-4, 4), min_size=c, max_size=c), min_size=n, max_size=n))
    y = draw(st.lists(st.lists(st.integers(0, 1), min_size=c, max_size=c), min_size=n, max_size=n))
    return torch.tensor(logits, dtype=torch.float32) / 2, torch.tensor(y, dtype=torch.float32)


@contextlib.contextmanager
def quiet_fbeta():
    """fbeta's once-per-process warning about empty rows has its own test; keep it out of the others."""
    said, M._EMPTY_ROWS_SAID = M._EMPTY_ROWS_SAID, True
    try:
        yield
    finally:
        M._EMPTY_ROWS_SAID = said


def fast_bert_fbeta(logits, y, thresh=0.3, beta=2.0, eps=1e-9):
    """fast-bert's fbeta, as its metrics.py computes it: per row, with eps in every denominator, then the mean."""
    d = (logits.sigmoid().numpy() > thresh).astype(float)
    t = y.numpy().astype(float)
    tp = (d * t).sum(1)
    p, r = tp / (d.sum(1) + eps), tp / (t.sum(1) + eps)
    return float(np.mean((p * r) / (p * beta ** 2 + r + eps) * (1 + beta ** 2)))


class TestAgainstReferences:
    @settings(max_examples=150, deadline=None)
    @given(case=single_label())
    def test_single_label_metrics_equal_sklearn(self, case):
        logits, y = case
        t, p = y.numpy(), logits.argmax(-1).numpy()
        c = logits.shape[1]
        assert float(M.accuracy(logits, y)) == pytest.approx(skm.accuracy_score(t, p))
        for avg in ("macro", "micro", "weighted"):
            assert M.f1(logits, y, average=avg) == pytest.approx(skm.f1_score(t, p, average=avg, zero_division=0))
            assert M.precision(logits, y, average=avg) == pytest.approx(
                skm.precision_score(t, p, average=avg, zero_division=0))
            assert M.recall(logits, y, average=avg) == pytest.approx(skm.recall_score(t, p, average=avg, zero_division=0))
        assert M.f1_macro(logits, y) == pytest.approx(skm.f1_score(t, p, average="macro", zero_division=0))
        assert M.f1_micro(logits, y) == pytest.approx(skm.f1_score(t, p, average="micro", zero_division=0))
        assert M.f1_weighted(logits, y) == pytest.approx(skm.f1_score(t, p, average="weighted", zero_division=0))
        assert M.precision_macro(logits, y) == pytest.approx(skm.precision_score(t, p, average="macro", zero_division=0))
        assert M.recall_macro(logits, y) == pytest.approx(skm.recall_score(t, p, average="macro", zero_division=0))
        assert M.f1_per_class(logits, y).tolist() == pytest.approx(
            skm.f1_score(t, p, labels=list(range(c)), average=None, zero_division=0).tolist())
        with warnings.catch_warnings():  # sklearn warns when a single class occurs (its value is still defined)
            warnings.simplefilter("ignore")
            assert M.matthews_corrcoef(logits, y) == pytest.approx(skm.matthews_corrcoef(t, p))
        assert M.confusion_matrix(logits, y).tolist() == skm.confusion_matrix(t, p, labels=list(range(c))).tolist()
        probs = logits.softmax(-1).numpy()
        if len(np.unique(t)) < c:
            assert np.isnan(M.roc_auc(logits, y))  # sklearn raises: a class without positives
        elif c == 2:
            assert M.roc_auc(logits, y) == pytest.approx(skm.roc_auc_score(t, probs[:, 1]))
        else:
            assert M.roc_auc(logits, y) == pytest.approx(skm.roc_auc_score(t, probs, multi_class="ovr", average="macro"))

    @settings(max_examples=150, deadline=None)
    @given(case=multi_label())
    def test_multi_label_metrics_equal_sklearn(self, case):
        logits, y = case
        t, probs = y.numpy().astype(int), logits.sigmoid().numpy()
        d = (probs > 0.5).astype(int)
        assert float(M.accuracy_thresh(logits, y)) == pytest.approx(1 - skm.hamming_loss(t, d))
        assert M.hamming_loss(logits, y) == pytest.approx(skm.hamming_loss(t, d))
        assert M.exact_match(logits, y) == pytest.approx(skm.accuracy_score(t, d))
        assert M.f1_multilabel_macro(logits, y) == pytest.approx(skm.f1_score(t, d, average="macro", zero_division=0))
        assert M.f1_multilabel_micro(logits, y) == pytest.approx(skm.f1_score(t, d, average="micro", zero_division=0))
        assert M.f1_per_label(logits, y).tolist() == pytest.approx(
            skm.f1_score(t, d, average=None, zero_division=0).tolist())
        d3 = (probs > 0.3).astype(int)
        with quiet_fbeta():
            assert M.fbeta(logits, y) == pytest.approx(skm.fbeta_score(t, d3, beta=2, average="samples",
                                                                       zero_division=1))
            assert M.fbeta(logits, y, average="macro", thresh=0.5) == pytest.approx(
                skm.fbeta_score(t, d, beta=2, average="macro", zero_division=0))
        assert M.Hamming_loss(logits, y) == pytest.approx(skm.hamming_loss(t, d))
        assert M.Exact_Match_Ratio(logits, y) == pytest.approx(skm.accuracy_score(t, d))
        if len(np.unique(t)) == 2:
            assert M.roc_auc_micro(logits, y) == pytest.approx(skm.roc_auc_score(t, probs, average="micro"))
        else:
            assert np.isnan(M.roc_auc_micro(logits, y))
        both = [k for k in range(t.shape[1]) if 0 < t[:, k].sum() < len(t)]
        expected = np.mean([skm.roc_auc_score(t[:, k], probs[:, k]) for k in both]) if both else float("nan")
        assert M.roc_auc_macro(logits, y) == pytest.approx(expected, nan_ok=True)

    @settings(max_examples=150, deadline=None)
    @given(case=multi_label())
    def test_fast_bert_names_give_fast_berts_numbers(self, case):
        logits, y = case
        t, probs = y.numpy(), logits.sigmoid().numpy()
        # accuracy_multilabel: argmax of the sigmoid against argmax of the 0/1 row
        assert float(M.accuracy_multilabel(logits, y)) == pytest.approx(np.mean(probs.argmax(1) == t.argmax(1)))
        # accuracy_thresh: the share of right (row, label) decisions at 0.5
        assert float(M.accuracy_thresh(logits, y)) == pytest.approx(np.mean((probs > 0.5) == (t > 0.5)))
        # roc_auc: fast-bert's micro ROC curve over the raveled scores
        if len(np.unique(t)) == 2:
            fpr, tpr, _ = skm.roc_curve(t.ravel(), logits.numpy().ravel())
            assert M.roc_auc(logits, y) == pytest.approx(skm.auc(fpr, tpr))
        # fbeta and F1: fast-bert's per-row formula, except on rows with no true and no predicted label; fbeta's
        # arguments in fast-bert's order (thresh, beta); sigmoid=False takes probabilities
        with quiet_fbeta():
            pairs = ((M.fbeta(logits, y), 0.3, 2.0), (M.F1(logits, y), 0.5, 1.0), (M.fbeta(logits, y, 0.5, 1.0), 0.5, 1.0),
                     (M.fbeta(logits.sigmoid(), y, 0.4, sigmoid=False), 0.4, 2.0))
            for value, thresh, beta in pairs:
                empty = ((t.sum(1) == 0) & ((probs > thresh).sum(1) == 0)).sum()
                assert value == pytest.approx(fast_bert_fbeta(logits, y, thresh, beta) + empty / len(t), abs=1e-6)
        with pytest.raises(TypeError, match=r"accuracy_multilabel\(\) is fast-bert's top-label match and takes no "
                                            r"thresh; for the share of right decisions at a threshold use "
                                            r"accuracy_thresh"):
            M.accuracy_multilabel(logits, y, thresh=0.5)

    def test_fbeta_says_once_where_it_differs_from_fast_bert(self, monkeypatch):
        monkeypatch.setattr(M, "_EMPTY_ROWS_SAID", False)
        logits = torch.tensor([[3.0, -3.0], [-3.0, -3.0], [-3.0, 3.0], [-3.0, -3.0]])
        y = torch.tensor([[1.0, 0.0], [0.0, 0.0], [0.0, 1.0], [0.0, 0.0]])  # rows 1 and 3: correctly empty
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            assert M.fbeta(logits, y) == pytest.approx(1.0)
            assert M.fbeta(logits, y) == pytest.approx(1.0)
        assert fast_bert_fbeta(logits, y) == pytest.approx(0.5, abs=1e-6)
        assert [str(w.message) for w in caught] == [
            "fbeta: 2 of 4 rows have no true and no predicted label; they score 1 (a correct empty prediction), "
            "where fast-bert's fbeta scored them 0, which would give 0.5000 instead of 1.0000"]

    @settings(max_examples=100, deadline=None)
    @given(st.lists(st.tuples(st.integers(-20, 20), st.integers(-20, 20)), min_size=3, max_size=30))
    def test_regression_metrics_equal_sklearn_and_scipy(self, pairs):
        p = torch.tensor([[a / 4] for a, _ in pairs])
        y = torch.tensor([b / 4 for _, b in pairs])
        pn, yn = p.numpy().ravel(), y.numpy()
        assert M.mse(p, y) == pytest.approx(skm.mean_squared_error(yn, pn))
        assert M.mae(p, y) == pytest.approx(skm.mean_absolute_error(yn, pn))
        if pn.std() > 0 and yn.std() > 0:
            assert M.pearson(p, y) == pytest.approx(scipy.stats.pearsonr(pn, yn)[0])
            assert M.spearman(p, y) == pytest.approx(scipy.stats.spearmanr(pn, yn)[0])
        else:
            assert np.isnan(M.pearson(p, y)) and np.isnan(M.spearman(p, y))

    def test_every_public_metric_is_covered_here(self):
        covered = {"accuracy", "f1", "f1_macro", "f1_micro", "f1_weighted", "precision", "precision_macro", "recall",
                   "recall_macro", "f1_per_class", "matthews_corrcoef", "confusion_matrix", "roc_auc",
                   "accuracy_multilabel", "accuracy_thresh", "fbeta", "f1_multilabel_macro", "f1_multilabel_micro",
                   "f1_per_label", "roc_auc_micro", "roc_auc_macro", "hamming_loss", "exact_match", "F1",
                   "Hamming_loss", "Exact_Match_Ratio", "mse", "mae", "pearson", "spearman"}
        functions = {n for n in M.__all__ if n[0].islower() or n in ("F1", "Hamming_loss", "Exact_Match_Ratio")}
        assert functions - {"to_fastai_metrics", "check_metrics", "default_metrics", "evaluate"} == covered


def test_metrics_set_the_fastai_way_score_the_whole_set(tiny_model_dir, tmp_path):
    # learn.metrics = [f1_macro, roc_auc] went through fastai's AvgMetric: a mean of per-batch F1s and AUCs (NaN
    # where a batch held one class) where from_pretrained_model(metrics=) scored the whole set
    import sklearn.metrics as skm
    from conftest import make_texts

    from bertlearn import BertDataBunch, BertLearner
    from bertlearn import metrics as bm

    def three_classes(n, seed):
        df = make_texts(n, seed=seed)
        df["label"] = np.random.default_rng(seed).choice(["a", "b", "c"], size=n, p=[0.6, 0.3, 0.1])
        return df

    db = BertDataBunch.from_df(three_classes(120, 1), three_classes(80, 2), str(tiny_model_dir), bs=8, maxlen=64,
                               device="cpu", seed=0)
    learner = BertLearner.from_pretrained_model(db, str(tiny_model_dir), None, "cpu", None, output_dir=tmp_path,
                                                seed=0)
    with torch.no_grad():
        learner.model.classifier.weight.normal_(0, 2.0, generator=torch.Generator().manual_seed(0))
    learner.metrics = [bm.f1_macro, bm.roc_auc]
    got = learner.validate(quiet=True)
    learner.model.eval()
    probs, targets = [], []
    with torch.no_grad():
        for *xb, yb in db.valid:
            probs.append(torch.softmax(learner.model(*xb).logits, -1))
            targets.append(yb)
    p, t = torch.cat(probs).numpy(), torch.cat(targets).numpy()
    assert got["f1_macro"] == pytest.approx(skm.f1_score(t, p.argmax(1), average="macro"), abs=1e-6)
    assert got["roc_auc"] == pytest.approx(skm.roc_auc_score(t, p, multi_class="ovr"), abs=1e-6)


def test_a_metric_class_is_instantiated_as_fastai_does():
    # a class given as a metric (fastai's mk_metric instantiates it) was wrapped as a function and called with
    # (preds, targets) at the end of validation
    from fastai.learner import Metric

    class Rows(Metric):
        def reset(self):
            self.n = 0

        def accumulate(self, learn):
            self.n += len(learn.yb[0])

        @property
        def value(self):
            return self.n

    out = to_fastai_metrics([Rows])
    assert len(out) == 1 and isinstance(out[0], Rows)


# --- fast-bert's metric imports, as docs/migration.md tells them ---

FAST_BERT_METRICS = ["accuracy", "accuracy_multilabel", "accuracy_thresh", "fbeta", "roc_auc", "Hamming_loss",
                     "Exact_Match_Ratio", "F1"]


def test_the_migration_guide_names_a_module_holding_every_fast_bert_metric():
    import importlib
    import re
    from pathlib import Path

    guide = (Path(__file__).resolve().parents[1] / "docs" / "migration.md").read_text()
    # the prose says where `fast_bert.metrics` imports go; the example's after-column shows one
    targets = re.findall(r"`fast_bert\.metrics` to `([\w.]+)`", guide)
    example = re.findall(r"^from fast_bert\.metrics import [\w, ]+?\s{2,}from ([\w.]+) import ([\w, ]+)$", guide,
                         flags=re.M)
    assert targets == ["bertlearn.metrics"] and [m for m, _ in example] == ["bertlearn.metrics"]
    module = importlib.import_module(targets[0])
    assert [n for n in FAST_BERT_METRICS if not callable(getattr(module, n, None))] == []
    namespace: dict = {}
    exec(f"from {example[0][0]} import {example[0][1]}", namespace)  # the example's import line runs


# --- check_metrics: a metric that cannot score the task is refused when the learner is built ---

SINGLE_FNS = [M.accuracy, M.f1, M.f1_macro, M.f1_micro, M.f1_weighted, M.precision, M.precision_macro, M.recall,
              M.recall_macro, M.f1_per_class, M.matthews_corrcoef, M.confusion_matrix, M.roc_auc]
MULTI_FNS = [M.accuracy_multilabel, M.accuracy_thresh, M.fbeta, M.f1_multilabel_macro, M.f1_multilabel_micro,
             M.f1_per_label, M.roc_auc_micro, M.roc_auc_macro, M.hamming_loss, M.exact_match, M.F1, M.Hamming_loss,
             M.Exact_Match_Ratio, M.roc_auc]
REGRESSION_FNS = [M.mse, M.mae, M.pearson, M.spearman]


# written the way fast-bert's metrics.py calls them (numpy on tensors, .byte(), sklearn on tensors), with its
# extra `labels` argument: user code pasted from fast-bert passes these
def fb_accuracy(y_pred, y_true, labels=None):
    return np.mean(np.argmax(y_pred, axis=1).numpy() == y_true.numpy())


def fb_accuracy_thresh(y_pred, y_true, thresh=0.5, sigmoid=True, labels=None):
    return ((y_pred.sigmoid() > thresh) == y_true.byte()).float().mean().item()


def fb_hamming(y_pred, y_true, labels=None):
    return skm.hamming_loss(y_true, (y_pred.sigmoid() > 0.5).float())


def targets_like(problem_type, c):
    """What a databunch's training targets look like: int64 indices, float32 0/1 rows, float32 values."""
    if problem_type == "multi_label_classification":
        return np.zeros((5, c), dtype=np.float32)
    return np.zeros(5, dtype=np.int64 if problem_type == "single_label_classification" else np.float32)


class TestCheckMetrics:
    @pytest.mark.parametrize("problem_type, c, fns", [
        ("single_label_classification", 2, SINGLE_FNS + [fb_accuracy]),
        ("single_label_classification", 5, SINGLE_FNS + [fb_accuracy]),
        ("multi_label_classification", 3, MULTI_FNS + [fb_accuracy_thresh, fb_hamming]),
        ("multi_label_classification", 2, MULTI_FNS + [fb_accuracy_thresh, fb_hamming]),
        ("regression", 1, REGRESSION_FNS),
    ], ids=["binary", "multi-class", "multi-label-3", "multi-label-2", "regression"])
    def test_every_metric_of_the_task_passes(self, problem_type, c, fns):
        from fastai.metrics import F1Score, accuracy_multi, rmse
        extra = {"single_label_classification": [F1Score(average="macro")],
                 "multi_label_classification": [accuracy_multi], "regression": [rmse]}[problem_type]
        metrics = to_fastai_metrics([{"name": getattr(f, "__name__", "m"), "function": f} for f in fns] + extra)
        state = torch.random.get_rng_state(), np.random.get_state()[1].copy()
        with warnings.catch_warnings():
            warnings.simplefilter("error")  # the dry run shows no warning
            M.check_metrics(metrics, problem_type, c, targets_like(problem_type, c))
        assert torch.equal(state[0], torch.random.get_rng_state()) and (state[1] == np.random.get_state()[1]).all()

    def test_fast_berts_accuracy_on_multi_label_is_refused_with_the_fix(self):
        metrics = to_fastai_metrics([{"name": "accuracy", "function": accuracy}])
        with pytest.raises(BertLearnError) as e:
            M.check_metrics(metrics, "multi_label_classification", 3, targets_like("multi_label_classification", 3))
        assert str(e.value) == (
            "metrics: 'accuracy' cannot score this multi-label classification task: called as validation calls it, "
            "with y_pred of shape (2, 3) (logits) and y_true of shape (2, 3) (float32 0/1 rows), it raised "
            "RuntimeError: The size of tensor a (2) must match the size of tensor b (6) at non-singleton dimension "
            "0. For multi-label classification use accuracy_thresh (right (row, label) decisions at 0.5) or "
            "accuracy_multilabel (fast-bert's top-label match) where fast-bert's README has accuracy; also fbeta, "
            "F1, roc_auc, Hamming_loss, Exact_Match_Ratio, f1_multilabel_macro (from bertlearn.metrics import "
            "accuracy_thresh), or metrics=None for the task's defaults")
        assert isinstance(e.value.__cause__, RuntimeError)

    def test_the_function_is_named_beside_its_metric_name_and_the_task_says_its_fix(self):
        def rows_only(y_pred, y_true):
            raise ValueError("needs 0/1 rows")

        with pytest.raises(BertLearnError) as e:
            M.check_metrics(to_fastai_metrics([{"name": "mine", "function": rows_only}]), "regression", 1,
                            targets_like("regression", 1))
        assert str(e.value) == (
            "metrics: 'mine' (rows_only) cannot score this regression task: called as validation calls it, with "
            "y_pred of shape (2, 1) (logits) and y_true of shape (2,) (float32 values), it raised ValueError: needs "
            "0/1 rows. For regression use mse, mae, pearson, spearman (from bertlearn.metrics import mse), or "
            "metrics=None for the task's defaults")
        with pytest.raises(BertLearnError, match=r"^metrics: 'hamming_loss' cannot score this single-label "
                                                 r"classification task: .* with y_pred of shape \(3, 3\) \(logits\) "
                                                 r"and y_true of shape \(3,\) \(int64 class indices\).* For "
                                                 r"single-label classification use accuracy, f1_macro, roc_auc, "
                                                 r"matthews_corrcoef \(from bertlearn.metrics import accuracy\)"):
            M.check_metrics(to_fastai_metrics([M.accuracy, M.hamming_loss]), "single_label_classification",
                            3, targets_like("single_label_classification", 3))

    def test_fastai_metric_objects_are_left_to_fastai(self):
        from fastai.learner import Metric

        class Broken(Metric):
            @property
            def value(self):
                raise AssertionError("never called by the check")

        M.check_metrics([Broken()], "multi_label_classification", 3, targets_like("multi_label_classification", 3))

    def test_fbetas_once_only_note_is_kept_for_the_real_set(self, monkeypatch):
        monkeypatch.setattr(M, "_EMPTY_ROWS_SAID", False)
        M.check_metrics(to_fastai_metrics([M.fbeta, M.F1]), "multi_label_classification", 3,
                        targets_like("multi_label_classification", 3))
        assert M._EMPTY_ROWS_SAID is False


@pytest.mark.parametrize("average", ["samples", "micro", "macro", "weighted"])
def test_fbeta_on_a_single_label_multi_label_task(average):
    # sklearn reads one 0/1 column as binary: average="samples" (fast-bert's fbeta and F1) raised, and "macro" would
    # have averaged over the classes 0 and 1. A duplicated label column changes no row's or label's F-beta, and
    # sklearn scores two columns as multi-label: the reference
    from bertlearn.metrics import F1, fbeta
    logits = torch.tensor([[2.0], [-1.0], [0.5], [-3.0], [-0.2]])
    targets = torch.tensor([[1.0], [0.0], [0.0], [1.0], [0.0]])
    d = (torch.sigmoid(logits) > 0.3).int().numpy()
    t = targets.int().numpy()
    expected = skm.fbeta_score(np.hstack([t, t]), np.hstack([d, d]), beta=2.0, average=average,
                               zero_division=1 if average == "samples" else 0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the empty-rows notice
        assert fbeta(logits, targets, average=average) == pytest.approx(expected, abs=1e-12)
        if average == "samples":
            d1 = (torch.sigmoid(logits) > 0.5).int().numpy()
            assert F1(logits, targets) == pytest.approx(
                skm.fbeta_score(np.hstack([t, t]), np.hstack([d1, d1]), beta=1.0, average="samples",
                                zero_division=1), abs=1e-12)
