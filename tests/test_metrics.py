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


def test_shares_are_the_exact_ratio_a_user_reads():
    # a float32 mean of 69 hits in 100 was 0.6899999976158142 in validate()'s dict and the logs
    from bertlearn.metrics import accuracy_thresh
    y = torch.arange(100) % 2
    logits = torch.nn.functional.one_hot(torch.where(torch.arange(100) < 69, y, 1 - y), 2).float()
    m = DeviceAccumMetric(accuracy, "accuracy")
    from types import SimpleNamespace
    m.reset()
    m.accumulate(SimpleNamespace(pred=logits, yb=(y,)))
    assert m.value == 0.69 and str(m.value) == "0.69"
    assert float(accuracy_multilabel(logits, torch.nn.functional.one_hot(y, 2))) == 0.69
    assert float(accuracy_thresh(logits * 10 - 5, torch.nn.functional.one_hot(y, 2))) == 0.69


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


def test_partials_are_named_by_their_options_and_a_name_twice_is_refused():
    # before: every partial was named "metric", and validate()'s dict kept the last: macro-F1 was dropped and the
    # micro one reported under "metric"
    from functools import partial

    from bertlearn.metrics import f1
    out = to_fastai_metrics([partial(f1, average="macro"), partial(f1, average="micro"), accuracy])
    assert [m.name for m in out] == ["f1(average='macro')", "f1(average='micro')", "accuracy"]
    # no comma (fastai's CSVLogger header), nothing long or run-dependent
    assert M.metric_name(partial(M.fbeta, beta=2, average="macro")) == "fbeta(beta=2; average='macro')"
    assert M.metric_name(partial(f1, labels=np.arange(3))) == "f1(labels=<ndarray>)"
    with pytest.raises(BertLearnError) as e:
        to_fastai_metrics([{"name": "f1", "function": accuracy}, {"name": "f1", "function": f1}])
    assert str(e.value) == ("metrics: ['f1'] name more than one metric (['f1', 'f1']), and validate() and the epoch "
                            "table keep one value per name; give each its own name: {'name': 'f1_macro', 'function': "
                            "f} for a function (fast-bert's form), AccumMetric(func, name=...) or "
                            "skm_to_fastai(sklearn_func, ..., name=...) for a fastai metric (or bertlearn's f1_macro, "
                            "f1_micro...)")
    # fastai's own metrics of one default name, and the way out the message gives
    with pytest.raises(BertLearnError, match=r"^metrics: \['f1_score'\] name more than one metric"):
        to_fastai_metrics([F1Score(average="macro"), F1Score(average="micro")])
    import sklearn.metrics as skm
    from fastai.metrics import skm_to_fastai
    named = to_fastai_metrics([skm_to_fastai(skm.f1_score, average="macro", name="f1_macro"), F1Score()])
    assert [m.name for m in named] == ["f1_macro", "f1_score"]


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
        # float64 probabilities rounded to 12 digits: rows holding the same logits in another order tie, as they do
        # exactly (float32 softmax sums in column order and split such ties by an ulp, turning AUC pairs around)
        probs = np.round(logits.double().softmax(-1).numpy(), 12)
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
        pn, yn = p.double().numpy().ravel(), y.double().numpy()  # the references in float64, as the metrics
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
        assert functions - {"to_fastai_metrics", "check_metrics", "default_metrics", "evaluate", "metric_name"} == covered


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
            "ValueError: accuracy() takes y_pred (n, c) of scores, one column per class, and y_true (n,) of class "
            "indices in [0, c); got y_pred of shape (2, 3) and y_true of shape (2, 3) (float32): y_true holds a row "
            "per example, not a class index. Multi-label 0/1 rows: use accuracy_thresh, accuracy_multilabel, fbeta, "
            "f1_multilabel_macro, roc_auc or hamming_loss; one-hot single-label rows: pass y_true.argmax(-1). For "
            "multi-label classification use accuracy_thresh (right (row, label) decisions at 0.5) or "
            "accuracy_multilabel (fast-bert's top-label match) where fast-bert's README has accuracy; also fbeta, "
            "F1, roc_auc, Hamming_loss, Exact_Match_Ratio, f1_multilabel_macro (from bertlearn.metrics import "
            "accuracy_thresh), or metrics=None for the task's defaults")
        assert isinstance(e.value.__cause__, ValueError)

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
                                                 r"classification task: .* with y_pred of shape \(4, 3\) \(logits\) "
                                                 r"and y_true of shape \(4,\) \(int64 class indices\).* For "
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


# --- confident models: AUC and top-label metrics rank float64 transforms that do not saturate ---

class TestConfidentModels:
    """A float32 sigmoid is 1.0 for every logit above ~16.6, a float32 softmax for every gap above ~17: distinct
    confident scores became ties, and the AUC (which reads only the order) and argmax-based metrics changed."""

    # positives score 22, 17, 20, 19, 17, 21; negatives 18 (a confident mistake), -3, -1, -2, -4, -5
    ML_LOGITS = torch.tensor([[22.0, 17.0], [20.0, -3.0], [18.0, 19.0], [17.0, -1.0], [-2.0, 21.0], [-4.0, -5.0]])
    ML_TARGET = torch.tensor([[1., 1.], [1., 0.], [0., 1.], [1., 0.], [0., 1.], [0., 0.]])

    def test_multi_label_auc_ranks_the_logits(self):
        assert (self.ML_LOGITS.sigmoid() == 1.0).sum() == 7  # the premise: float32 sigmoids tie
        t, x = self.ML_TARGET.numpy().astype(int), self.ML_LOGITS.double().numpy()
        # micro, by hand: 36 (positive, negative) pairs, of which the negative 18 beats the two positives 17
        assert M.roc_auc_micro(self.ML_LOGITS, self.ML_TARGET) == pytest.approx(34 / 36, abs=1e-12)
        assert M.roc_auc_micro(self.ML_LOGITS, self.ML_TARGET) == pytest.approx(skm.roc_auc_score(t.ravel(), x.ravel()),
                                                                            abs=1e-12)
        assert M.roc_auc(self.ML_LOGITS, self.ML_TARGET) == pytest.approx(34 / 36, abs=1e-12)  # fast-bert's roc_auc
        # macro: label 0 (17 < 18: one of 9 pairs wrong), label 1 (all 9 right)
        assert M.roc_auc_macro(self.ML_LOGITS, self.ML_TARGET) == pytest.approx((8 / 9 + 1) / 2, abs=1e-12)
        assert M.roc_auc_macro(self.ML_LOGITS, self.ML_TARGET) == pytest.approx(
            skm.roc_auc_score(t, x, average="macro"), abs=1e-12)

    def test_binary_auc_ranks_the_logit_gap(self):
        # positives' gaps 25, 18, 20 all above the negatives' 17, -3, 1: every pair is right
        logits = torch.tensor([[0.0, 25.0], [0.0, 17.0], [0.0, 18.0], [0.0, 20.0], [0.0, -3.0], [0.0, 1.0]])
        target = torch.tensor([1, 0, 1, 1, 0, 0])
        assert (logits.softmax(-1)[:, 1] == 1.0).sum() == 4  # the premise: 17 ties 25, 18, 20
        assert M.roc_auc(logits, target) == 1.0
        assert M.roc_auc(logits, target) == skm.roc_auc_score(target.numpy(), logits.double().softmax(-1).numpy()[:, 1])

    def test_multi_class_auc_is_sklearns_one_vs_rest_of_exact_probabilities(self):
        logits = torch.tensor([[30.0, 0, 0], [20, 0, 0], [25, 0, 0], [0, 18, 0], [0, 0, 22], [0, 21, 0], [0, 0, 19]])
        target = torch.tensor([0, 1, 0, 1, 2, 2, 2])
        # by hand, one class against the rest: class 0, positives 30 and 25 above the negative 20 and the rest: 1.
        # class 1: positive [0, 18, 0] loses only to the negative [0, 21, 0] (4/5); positive [20, 0, 0] (p1 ~ e^-20)
        # beats the negatives with p1 ~ e^-30, e^-25, e^-22 and loses to e^-19 and [0, 21, 0] (3/5): 7/10.
        # class 2: positives 22 and 19 beat all 4 negatives; [0, 21, 0] (p2 ~ e^-21) beats e^-30, e^-25 and loses
        # to e^-20 and e^-18: 10/12
        expected = (1 + 7 / 10 + 10 / 12) / 3
        assert M.roc_auc(logits, target) == pytest.approx(expected, abs=1e-12)
        probs = logits.double().softmax(-1).numpy()  # float64 holds these apart (1 - p ~ e^-30 > 1e-16)
        assert skm.roc_auc_score(target.numpy(), probs, multi_class="ovr") == pytest.approx(expected, abs=1e-12)
        # float32 ties the three rows of class 0 and two of class 1: (0.9 + 0.75 + 10/12) / 3
        assert skm.roc_auc_score(target.numpy(), logits.softmax(-1).numpy(), multi_class="ovr") != pytest.approx(
            expected)

    def test_multi_class_auc_past_float64_saturation(self):
        # gaps of 40 to 50: 1 - p < 1e-17, so float64 softmax (and float64 log_softmax) are exactly 1.0 (0.0) too
        logits = torch.tensor([[50.0, 0, 0], [40, 0, 0], [45, 0, 0], [0, 1, 0], [0, 0, 1], [0, 0, 2]])
        target = torch.tensor([0, 1, 0, 1, 2, 2])
        assert (logits.double().softmax(-1)[:3, 0] == 1.0).all()  # the premise
        # by hand: class 0, positives 50 and 45 above the negative 40 and the rest: 1. class 1: [0, 1, 0]
        # (p1 = e / (e + 2)) beats all 4 negatives; [40, 0, 0] (p1 ~ e^-40) beats e^-50 and e^-45 and loses to
        # [0, 0, 1] (1 / (2 + e)) and [0, 0, 2] (1 / (2 + e^2)): 6/8. class 2: both positives beat all 4: 1
        assert M.roc_auc(logits, target) == pytest.approx((1 + 6 / 8 + 1) / 3, abs=1e-12)

    def test_a_permuted_row_ties_with_itself(self):
        # rows holding the same logits in another order have the same probability of class 0: a tie (1/2), which
        # sums in column order split by an ulp
        logits = torch.tensor([[0.0, -1.0, -0.5, 0.5], [0.0, 0.5, -0.5, -1.0], [1.0, 0, 0, 0], [0, 1.0, 0, 0],
                               [0, 0, 1.0, 0], [0, 0, 0, 1.0]])
        target = torch.tensor([0, 1, 0, 1, 2, 3])
        # class 0: positives rows 0 and 2 (p0 = 1/(1+3e^-1)); negatives row 1 (same p0 as row 0), rows 3-5
        # (p0 = 1/(3+e)): row 0 ties row 1 and beats 3 -> 3.5; row 2 beats all 4 -> 4: 7.5/8
        # class 1: positives rows 1 (p1 = e^.5/(1+e^.5+e^-.5+e^-1)) and 3 (e/(e+3)); negatives rows 0 (e^-1/...),
        # 2, 4, 5 (1/(e+3)): row 1 p1 = 0.413 > 0.175, beats all; row 3 (0.475) beats all: 1
        # class 2: positive row 4 (e/(e+3) = 0.475) beats all 5: 1. class 3: positive row 5 beats all 5: 1
        assert M.roc_auc(logits, target) == pytest.approx((7.5 / 8 + 1 + 1 + 1) / 4, abs=1e-12)

    def test_accuracy_multilabel_takes_the_argmax_of_the_logits(self):
        # both sigmoids of each row are 1.0 in float32: the argmax of the ties is label 0, where label 1 scores higher
        logits, target = torch.tensor([[18.0, 25.0], [17.5, 30.0]]), torch.tensor([[0.0, 1.0], [0.0, 1.0]])
        assert float(M.accuracy_multilabel(logits, target)) == 1.0
        assert float(M.accuracy_multilabel(logits, target, sigmoid=False)) == 1.0


def test_accuracy_thresh_decides_half_precision_logits_in_float32():
    # bf16 / fp16 probabilities rounded near the threshold to the other side: 0.4955 for 1 - hamming_loss's 0.4945
    rng = np.random.default_rng(1)
    logits32 = torch.tensor(rng.normal(size=(400, 5)) * 2, dtype=torch.float32)
    target = torch.tensor((rng.random((400, 5)) < 0.4).astype(np.float32))
    for dtype in (torch.bfloat16, torch.float16):
        logits = logits32.to(dtype)
        for thresh in (0.5, 0.3, 0.7):
            decided = (logits.double().sigmoid().numpy() > thresh).astype(int)
            expected = 1 - skm.hamming_loss(target.int().numpy(), decided)
            got = float(M.accuracy_thresh(logits, target, thresh=thresh))
            assert got == pytest.approx(expected, abs=1e-6), (dtype, thresh)
            assert got == pytest.approx(1 - M.hamming_loss(logits, target, thresh=thresh), abs=1e-6), (dtype, thresh)


def test_every_thresholded_metric_decides_a_tie_as_the_predictors_do():
    # a float32 sigmoid equal to float32(0.4) (0.40000000596) is not above the predictors' float32 threshold, but
    # was above a float64 0.4 in fast-bert's Hamming_loss / Exact_Match_Ratio and in fbeta(sigmoid=False)
    base = np.float32(np.log(0.4 / 0.6))
    near = base + np.arange(-2000, 2000, dtype=np.float32) * np.spacing(base)
    tied = near[torch.from_numpy(near).sigmoid().numpy() == np.float32(0.4)]
    x, negative, positive = torch.tensor([[float(tied[0])]]), torch.tensor([[0.0]]), torch.tensor([[1.0]])
    assert not bool(x.sigmoid() > torch.tensor(0.4, dtype=torch.float32))  # the predictors' float32 comparison
    assert M.hamming_loss(x, negative, thresh=0.4) == M.Hamming_loss(x, negative, thresh=0.4) == 0.0
    assert M.exact_match(x, negative, thresh=0.4) == M.Exact_Match_Ratio(x, negative, thresh=0.4) == 1.0
    on_probs = M.fbeta(x.sigmoid(), positive, thresh=0.4, sigmoid=False, beta=1.0)
    assert on_probs == M.fbeta(x, positive, thresh=0.4, beta=1.0) == 0.0


# --- another task's targets are refused by the functions themselves, with what they take ---

SINGLE_TAKES = ("{f}() takes y_pred (n, c) of scores, one column per class, and y_true (n,) of class indices in "
                "[0, c); got y_pred of shape {p} and y_true of shape {t} ({d})")
MULTI_TAKES = ("{f}() takes y_pred (n, c) of scores and y_true (n, c) of 0/1 labels, one column per label, shaped "
               "like y_pred; got y_pred of shape {p} and y_true of shape {t} ({d})")
NOT_WHOLE = (": y_true holds {v}, not a whole number. Regression targets: use mse, mae, pearson or spearman; class "
             "indices are whole numbers in [0, c)")
ONE_PER_ROW = (": y_true is one value per row. Class indices: use accuracy, f1_macro, roc_auc or matthews_corrcoef; "
               "regression values: use mse, mae, pearson or spearman")
ROWS = (": y_true holds a row per example, not a class index. Multi-label 0/1 rows: use accuracy_thresh, "
        "accuracy_multilabel, fbeta, f1_multilabel_macro, roc_auc or hamming_loss; one-hot single-label rows: pass "
        "y_true.argmax(-1)")


class TestWrongTargetsAreRefused:
    def test_class_index_metrics_refuse_regression_values_rows_and_indices_out_of_range(self):
        # a near-perfect regression model scored accuracy 0 (argmax of one column is always 0)
        pred, values = torch.tensor([[1.02], [2.97], [4.01], [2.0]]), torch.tensor([1.0, 3.0, 4.0, 2.5])
        for f in (M.accuracy, M.f1_macro, M.matthews_corrcoef, M.roc_auc, M.confusion_matrix):
            with pytest.raises(ValueError) as e:
                f(pred, values)
            assert str(e.value) == SINGLE_TAKES.format(f=f.__name__, p="(4, 1)", t="(4,)", d="float32") + \
                NOT_WHOLE.format(v="2.5")
        with pytest.raises(ValueError) as e:
            M.f1_macro(torch.zeros(2, 3), torch.tensor([[1.0, 0.0, 1.0], [0.0, 1.0, 0.0]]))
        assert str(e.value) == SINGLE_TAKES.format(f="f1_macro", p="(2, 3)", t="(2, 3)", d="float32") + ROWS
        with pytest.raises(ValueError) as e:
            M.accuracy(torch.zeros(2, 3), torch.tensor([0, 3]))
        assert str(e.value) == SINGLE_TAKES.format(f="accuracy", p="(2, 3)", t="(2,)", d="int64") + (
            ": y_true holds class index 3, outside [0, 3) (y_pred's columns). Pass a column of logits for every "
            "class; regression targets: use mse, mae, pearson or spearman")

    def test_multi_label_metrics_refuse_class_indices_and_values_other_than_0_1(self):
        # a perfect single-label model scored accuracy_multilabel 1/3 (argmax of a 1-D target is one number)
        logits = torch.tensor([[3.0, 0, 0], [0, 3.0, 0], [0, 0, 3.0], [3.0, 0, 0], [0, 3.0, 0], [0, 0, 3.0]])
        classes = torch.tensor([0, 1, 2, 0, 1, 2])
        for f in (M.accuracy_multilabel, M.accuracy_thresh, M.fbeta, M.F1, M.f1_multilabel_macro, M.hamming_loss,
                  M.Hamming_loss, M.exact_match, M.Exact_Match_Ratio, M.roc_auc_micro, M.roc_auc_macro):
            with pytest.raises(ValueError) as e:
                f(logits, classes)
            assert str(e.value) == MULTI_TAKES.format(f=f.__name__, p="(6, 3)", t="(6,)", d="int64") + ONE_PER_ROW
        # as many rows as classes: (3, 3) > 0.5 against (3,) broadcast and gave a number
        with pytest.raises(ValueError) as e:
            M.accuracy_thresh(logits[:3], classes[:3])
        assert str(e.value) == MULTI_TAKES.format(f="accuracy_thresh", p="(3, 3)", t="(3,)", d="int64") + ONE_PER_ROW
        with pytest.raises(ValueError) as e:
            M.Hamming_loss(torch.zeros(2, 3), torch.tensor([[1.0, 0.0, 2.0], [0.0, 1.0, 0.0]]))
        assert str(e.value) == MULTI_TAKES.format(f="Hamming_loss", p="(2, 3)", t="(2, 3)", d="float32") + (
            ": y_true holds 2, not 0 or 1. Pass 0/1 labels; regression targets: use mse, mae, pearson or spearman")

    def test_regression_metrics_refuse_class_scores(self):
        with pytest.raises(ValueError) as e:
            M.mse(torch.zeros(2, 3), torch.tensor([1.5, 2.5]))
        assert str(e.value) == (
            "mse() takes y_pred (n, 1) of predicted values and y_true (n,) of targets; got y_pred of shape (2, 3) and "
            "y_true of shape (2,) (float32): not one predicted value per target. Class indices: use accuracy, "
            "f1_macro, roc_auc or matthews_corrcoef; multi-label 0/1 rows: use accuracy_thresh, accuracy_multilabel, "
            "fbeta, f1_multilabel_macro, roc_auc or hamming_loss")

    def test_every_legitimate_form_still_scores(self):
        logits = torch.tensor([[2.0, 0.0, 0.0], [0.0, 2.0, 0.0], [0.0, 0.0, 2.0], [2.0, 0.0, 0.0]])
        # class indices as int64, whole floats, an (n, 1) column, numpy; 3 of 4 right
        for y in (torch.tensor([0, 1, 1, 0]), torch.tensor([0.0, 1.0, 1.0, 0.0]), torch.tensor([[0], [1], [1], [0]]),
                  np.array([0, 1, 1, 0])):
            assert float(M.accuracy(logits, y)) == 0.75
            assert M.f1_micro(logits, y) == pytest.approx(0.75)
        rows = torch.tensor([[1.0, 0.0, 0.0], [0.0, 1.0, 1.0], [0.0, 0.0, 1.0], [1.0, 1.0, 0.0]])
        # 0/1 rows as float32, int64 and bool: decisions at 0.5 are the diagonal and row 3's label 0; wrong: (1, 2),
        # (3, 1) -> 10 of 12 right
        for y in (rows, rows.long(), rows.bool()):
            assert float(M.accuracy_thresh(logits, y)) == pytest.approx(10 / 12)
            assert M.hamming_loss(logits, y) == pytest.approx(2 / 12)
            assert float(M.accuracy_multilabel(logits, y)) == pytest.approx(1.0)  # top label = first true label
        assert M.mse(torch.tensor([1.0, 2.0]), torch.tensor([[1.0], [4.0]])) == pytest.approx(2.0)


WRONG_TASK = [  # (function, task, outputs, the ValueError it now raises on the made-up set)
    (M.accuracy_multilabel, "single_label_classification", 3,
     MULTI_TAKES.format(f="accuracy_multilabel", p="(4, 3)", t="(4,)", d="int64") + ONE_PER_ROW),
    (M.accuracy_thresh, "single_label_classification", 3,  # passed by broadcasting: 3 rows of 3 classes
     MULTI_TAKES.format(f="accuracy_thresh", p="(4, 3)", t="(4,)", d="int64") + ONE_PER_ROW),
    (M.accuracy_thresh, "single_label_classification", 2,
     MULTI_TAKES.format(f="accuracy_thresh", p="(3, 2)", t="(3,)", d="int64") + ONE_PER_ROW),
    (M.accuracy, "regression", 1, SINGLE_TAKES.format(f="accuracy", p="(2, 1)", t="(2,)", d="float32") +
     NOT_WHOLE.format(v="0.5")),
    (M.f1_macro, "regression", 1, SINGLE_TAKES.format(f="f1_macro", p="(2, 1)", t="(2,)", d="float32") +
     NOT_WHOLE.format(v="0.5")),
    (M.matthews_corrcoef, "regression", 1,
     SINGLE_TAKES.format(f="matthews_corrcoef", p="(2, 1)", t="(2,)", d="float32") + NOT_WHOLE.format(v="0.5")),
    (M.Hamming_loss, "regression", 1,
     MULTI_TAKES.format(f="Hamming_loss", p="(2, 1)", t="(2,)", d="float32") + ONE_PER_ROW),
    (M.accuracy_thresh, "regression", 1,
     MULTI_TAKES.format(f="accuracy_thresh", p="(2, 1)", t="(2,)", d="float32") + ONE_PER_ROW),
]


@pytest.mark.parametrize("fn, problem_type, c, cause", WRONG_TASK,
                         ids=[f"{f.__name__}-{p.split('_')[0]}-{c}" for f, p, c, _ in WRONG_TASK])
def test_check_metrics_refuses_a_metric_of_another_task(fn, problem_type, c, cause):
    # each was accepted when the learner was built, then reported a number that meant nothing (or failed on the
    # real validation set, whose row count is not the class count)
    with pytest.raises(BertLearnError) as e:
        M.check_metrics(to_fastai_metrics([fn]), problem_type, c, targets_like(problem_type, c))
    assert str(e.value.__cause__) == cause and isinstance(e.value.__cause__, ValueError)
    task, takes, fits, example = M._TASK_METRICS[problem_type]
    rows = "(4,)" if c == 3 else "(3,)" if problem_type.startswith("single") else "(2,)"
    assert str(e.value) == (
        f"metrics: '{fn.__name__}' cannot score this {task} task: called as validation calls it, with y_pred of shape "
        f"({rows[1]}, {c}) (logits) and y_true of shape {rows} ({'int64' if c > 1 else 'float32'} {takes}), it raised "
        f"ValueError: {cause}. For {task} use {fits} (from bertlearn.metrics import {example}), or metrics=None for "
        "the task's defaults")


def test_check_metrics_says_the_regression_example_in_full():
    with pytest.raises(BertLearnError) as e:
        M.check_metrics(to_fastai_metrics([{"name": "accuracy", "function": accuracy}]), "regression", 1,
                        targets_like("regression", 1))
    assert str(e.value) == (
        "metrics: 'accuracy' cannot score this regression task: called as validation calls it, with y_pred of shape "
        "(2, 1) (logits) and y_true of shape (2,) (float32 values), it raised ValueError: accuracy() takes y_pred "
        "(n, c) of scores, one column per class, and y_true (n,) of class indices in [0, c); got y_pred of shape "
        "(2, 1) and y_true of shape (2,) (float32): y_true holds 0.5, not a whole number. Regression targets: use "
        "mse, mae, pearson or spearman; class indices are whole numbers in [0, c). For regression use mse, mae, "
        "pearson, spearman (from bertlearn.metrics import mse), or metrics=None for the task's defaults")


# --- NER: a function metric scores every tagged token of the validation set once ---

from test_token_classification import make_tagged, ner_dir, write_conll  # noqa: E402, F401  (ner_dir: a fixture)


@pytest.mark.parametrize("form", ["function", "dict"])
def test_a_ner_function_metric_scores_every_tagged_token_of_the_set(ner_dir, tiny_model_dir, form):
    # fastai's AvgMetric averaged each batch's value weighted by its rows (sentences), not by its tagged tokens
    from bertlearn import BertNERDataBunch, BertNERLearner
    from bertlearn.tasks.token_classification import EntityMetric

    seen = []

    def tagged_accuracy(preds, targets):
        seen.append((tuple(preds.shape), tuple(targets.shape), int((targets == -100).sum())))
        keep = targets != -100
        return (preds.argmax(-1) == targets)[keep].float().mean()

    entity_f1 = EntityMetric("f1")
    # fast-bert's dicts went to fastai's AvgMetric as they were, and failed: 'dict' object is not callable
    metrics = [tagged_accuracy, entity_f1] if form == "function" else [
        {"name": "tagged_accuracy", "function": tagged_accuracy}, entity_f1, {"name": "acc", "function": accuracy}]
    db = BertNERDataBunch(ner_dir, str(tiny_model_dir), bs=8, maxlen=64, device="cpu", seed=0)
    learner = BertNERLearner.from_pretrained_model(db, str(tiny_model_dir), ner_dir / "out", "cpu", None, seed=0,
                                                   metrics=metrics)
    assert learner.metrics[1] is entity_f1  # a fastai Metric stays as it is
    with torch.no_grad():  # a head that predicts several tags
        learner.model.classifier.weight.normal_(0, 2.0, generator=torch.Generator().manual_seed(0))
    got = learner.validate(quiet=True)
    learner.model.eval()
    right = total = 0
    widths = set()
    with torch.no_grad():
        for *xb, yb in db.valid:
            pred = learner.model(*xb).logits.argmax(-1)
            keep = yb != -100
            right += int((pred == yb)[keep].sum())
            total += int(keep.sum())
            widths.add(yb.shape[1])
    assert len(widths) > 1 and 0 < right < total
    assert got["tagged_accuracy"] == pytest.approx(right / total, abs=1e-6)  # a float32 mean
    assert seen[-1] == ((total, len(db.labels)), (total,), 0)
    if form == "dict":
        assert got["acc"] == pytest.approx(right / total, abs=1e-6)  # bertlearn's accuracy takes the tokens too
    # set after the learner is built: the same whole-set score (fastai's setter had made it a per-batch mean)
    learner.metrics = [tagged_accuracy]
    assert learner.validate(quiet=True)["tagged_accuracy"] == pytest.approx(right / total, abs=1e-6)


# --- options: sigmoid=False, both spellings of the threshold, keywords a metric does not take ---

# probabilities; at 0.5 the decisions are [[1, 0, 1], [0, 1, 0], [1, 0, 0]]: (1, 2) and (2, 1) are missed
PROBS = torch.tensor([[0.9, 0.2, 0.6], [0.1, 0.8, 0.4], [0.7, 0.3, 0.2]])
PROB_TARGET = torch.tensor([[1.0, 0.0, 1.0], [0.0, 1.0, 1.0], [1.0, 1.0, 0.0]])


def test_thresholded_multi_label_metrics_take_probabilities_with_sigmoid_false():
    # before: sigmoid=False was swallowed by **kwargs and the sigmoid applied to probabilities (all above 0.5 after
    # it): every label of every row was decided positive
    t, d = PROB_TARGET.int().numpy(), (PROBS.numpy() > 0.5).astype(int)
    # per label: label 0 tp 2 -> 1; label 1 tp 1, fn 1 -> 2/3; label 2 tp 1, fn 1 -> 2/3. Micro: tp 4, fn 2 -> 8/10
    assert M.f1_per_label(PROBS, PROB_TARGET, sigmoid=False).tolist() == pytest.approx([1.0, 2 / 3, 2 / 3])
    assert M.f1_multilabel_macro(PROBS, PROB_TARGET, sigmoid=False) == pytest.approx(7 / 9)
    assert M.f1_multilabel_micro(PROBS, PROB_TARGET, sigmoid=False) == pytest.approx(0.8)
    assert M.hamming_loss(PROBS, PROB_TARGET, sigmoid=False) == pytest.approx(2 / 9)
    assert M.exact_match(PROBS, PROB_TARGET, sigmoid=False) == pytest.approx(1 / 3)
    # per row F1: 1, (p 1, r 1/2) 2/3, (p 1, r 1/2) 2/3
    assert M.F1(PROBS, PROB_TARGET, sigmoid=False) == pytest.approx(7 / 9)
    assert M.F1(PROBS, PROB_TARGET, sigmoid=False) == pytest.approx(skm.f1_score(t, d, average="samples"))
    assert M.f1_multilabel_macro(PROBS, PROB_TARGET, sigmoid=False) == pytest.approx(
        skm.f1_score(t, d, average="macro"))
    assert M.hamming_loss(PROBS, PROB_TARGET, sigmoid=False) == pytest.approx(skm.hamming_loss(t, d))


def test_a_threshold_is_taken_under_either_spelling():
    # before: F1 (fast-bert's spelling: threshold) dropped thresh=, and accuracy_thresh, hamming_loss... dropped
    # threshold=, scoring at 0.5 in silence. At 0.3 only (2, 1) is missed
    logits = torch.logit(PROBS)
    # F1 per row at 0.3: 1, 1, (p 1, r 1/2) 2/3; at 0.5: 1, 2/3, 2/3
    assert M.F1(logits, PROB_TARGET, thresh=0.3) == pytest.approx(8 / 9)
    assert M.F1(logits, PROB_TARGET, threshold=0.3) == pytest.approx(8 / 9)
    assert M.F1(logits, PROB_TARGET) == pytest.approx(7 / 9)
    assert float(M.accuracy_thresh(logits, PROB_TARGET, threshold=0.3)) == pytest.approx(8 / 9)
    assert M.hamming_loss(logits, PROB_TARGET, threshold=0.3) == pytest.approx(1 / 9)
    assert M.Hamming_loss(logits, PROB_TARGET, threshold=0.3) == pytest.approx(1 / 9)
    assert M.exact_match(logits, PROB_TARGET, threshold=[0.3, 0.3, 0.3]) == pytest.approx(2 / 3)
    assert M.F1(logits, PROB_TARGET, 0.3, thresh=0.3) == pytest.approx(8 / 9)  # the same value twice is one
    with pytest.raises(TypeError) as e:
        M.F1(logits, PROB_TARGET, threshold=0.5, thresh=0.3)
    assert str(e.value) == ("F1() got threshold=0.5 and thresh=0.3, two spellings of one threshold that disagree; "
                            "pass one of them")
    with pytest.raises(TypeError) as e:
        M.accuracy_thresh(logits, PROB_TARGET, 0.5, threshold=0.3)  # a value passed equal to the default is passed
    assert str(e.value) == ("accuracy_thresh() got thresh=0.5 and threshold=0.3, two spellings of one threshold "
                            "that disagree; pass one of them")


def test_a_keyword_a_metric_does_not_take_is_refused_but_fast_berts_labels_is_not():
    # before: **kwargs dropped every keyword in silence: roc_auc(average="macro") gave the micro average on
    # multi-label targets, f1(sample_weight=w) the unweighted F1
    logits, y = LOGITS, TARGET
    with pytest.raises(TypeError) as e:
        M.roc_auc(PROBS, PROB_TARGET, average="macro")
    assert str(e.value) == (
        "roc_auc() got an unexpected keyword argument average='macro': it takes only fast-bert's labels= (ignored); "
        "remove average=; roc_auc is fast-bert's micro average on multi-label targets (the one-vs-rest macro average "
        "on class indices): for the macro average over labels use roc_auc_macro")
    with pytest.raises(TypeError) as e:
        M.f1(logits, y, sample_weight=[1, 2, 1, 1, 1])
    assert str(e.value) == (
        "f1() got an unexpected keyword argument sample_weight=[1, 2, 1, 1, 1]: it takes average= and fast-bert's "
        "labels= (ignored); remove sample_weight=; to weight the rows, call sklearn.metrics' function with "
        "sample_weight= on the decisions (y_pred.argmax(-1), or y_pred.sigmoid() > thresh for multi-label)")
    with pytest.raises(TypeError) as e:
        M.hamming_loss(PROBS, PROB_TARGET, sample_weight=[1, 2, 1])
    assert str(e.value) == (
        "hamming_loss() got an unexpected keyword argument sample_weight=[1, 2, 1]: it takes thresh= (or "
        "threshold=), sigmoid= and fast-bert's labels= (ignored); remove sample_weight=; Hamming_loss(y_pred, "
        "y_true, sample_weight=...) weights the rows")
    for fn, args in [(M.accuracy, (logits, y)), (M.precision, (logits, y)), (M.recall, (logits, y)),
                     (M.f1_macro, (logits, y)), (M.exact_match, (PROBS, PROB_TARGET)), (M.mse, (PROBS[:, :1], y))]:
        with pytest.raises(TypeError, match=rf"^{fn.__name__}\(\) got an unexpected keyword argument "
                                            r"sample_weight=\[1\]: it takes "):
            fn(*args, sample_weight=[1])
    # fast-bert's validate() passes labels= (the label names) to every metric: accepted, and nothing changes
    names = ["a", "b", "c"]
    regression = (torch.tensor([[1.0], [2.0], [4.0]]), torch.tensor([1.0, 3.0, 5.0]))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # fbeta's empty-rows notice
        for fn in SINGLE_FNS + MULTI_FNS + REGRESSION_FNS:
            args = (LOGITS, TARGET) if fn in SINGLE_FNS and fn is not M.roc_auc else \
                regression if fn in REGRESSION_FNS else (torch.logit(PROBS), PROB_TARGET)
            np.testing.assert_array_equal(np.asarray(fn(*args, labels=names)), np.asarray(fn(*args)))


def test_regression_metrics_compute_in_float64():
    # before: predictions and targets were cast to float32 first: the Pearson of predictions 3000 +- 1e-3 was off by
    # 1e-3, and the MSE of float64 targets near 1e6 lost their fractions
    rng = np.random.default_rng(0)
    t = rng.normal(3, 1, 5000)
    p = torch.tensor(3000 + 1e-3 * t + rng.normal(0, 1e-3, 5000), dtype=torch.float32)[:, None]
    y = torch.tensor(t, dtype=torch.float32)
    p64, y64 = p.double().numpy().ravel(), y.double().numpy()  # the same float32 values, read exactly
    assert M.pearson(p, y) == pytest.approx(scipy.stats.pearsonr(p64, y64)[0], rel=1e-9)
    assert M.spearman(p, y) == pytest.approx(scipy.stats.spearmanr(p64, y64)[0], rel=1e-9)
    big = 1e6 + rng.normal(0, 1, 200)
    pred = torch.tensor(big + rng.normal(0, 0.5, 200))[:, None]  # float64 tensors
    assert M.mse(pred, torch.tensor(big)) == pytest.approx(skm.mean_squared_error(big, pred.numpy().ravel()),
                                                           rel=1e-9)
    assert M.mae(pred, torch.tensor(big)) == pytest.approx(skm.mean_absolute_error(big, pred.numpy().ravel()),
                                                           rel=1e-9)


def test_the_direction_of_a_monitored_metric_follows_its_function():
    # before: only the monitor's name was read, so a fast-bert dict {'name': 'MAE', 'function': mae} or partial(mse)
    # was tracked as higher-is-better (see tests/test_callbacks.py for the fit)
    from functools import partial

    from fastai.metrics import AccumMetric, error_rate
    from fastai.metrics import rmse as fastai_rmse

    metrics = to_fastai_metrics([{"name": "MAE", "function": M.mae}, partial(partial(M.mse)),
                                 {"name": "wrong", "function": M.hamming_loss}, {"name": "err", "function": error_rate},
                                 {"name": "acc", "function": accuracy}])
    metrics.append(AccumMetric(fastai_rmse.func, name="RMSE"))
    assert [M.lower_is_better(m.name, metrics) for m in metrics] == [True, True, True, True, False, True]
    assert M.lower_is_better("mse", []) and not M.lower_is_better("accuracy", metrics)  # by the name alone
    # a function whose name merely holds "error" is not read as lower-is-better (higher is better here)
    from sklearn.metrics import d2_absolute_error_score
    assert not M.lower_is_better("d2", to_fastai_metrics([{"name": "d2", "function": d2_absolute_error_score}]))
    # ... while sklearn's errors and losses under a name of the user's are (fastai kept their worst epoch)
    from sklearn.metrics import log_loss, mean_squared_error
    renamed = to_fastai_metrics([{"name": "MSE", "function": mean_squared_error}, {"name": "LL", "function": log_loss}])
    assert M.lower_is_better("MSE", renamed) and M.lower_is_better("LL", renamed)
