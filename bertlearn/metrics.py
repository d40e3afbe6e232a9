"""Metrics usable both the fast-bert way (`{'name': ..., 'function': f(y_pred, y_true)}`) and as fastai metrics.

A metric function takes the logits and targets of the whole validation set. `DeviceAccumMetric` keeps
the per-batch tensors on the device during validation (fastai's `AvgMetric` copies each batch to the CPU,
a host-device sync per batch) and hands the concatenated CPU tensors to the function once at the end. A function
refuses another task's targets (class indices, 0/1 rows, values) with a ValueError that names it and the metrics
that fit, where it would have scored them as a number that meant nothing.

Every metric gives scikit-learn's (or SciPy's) value on the same decisions; where a docstring says otherwise it
says how and why. fast-bert's metric names (`accuracy`, `accuracy_multilabel`, `accuracy_thresh`, `fbeta`,
`roc_auc`, `F1`, `Hamming_loss`, `Exact_Match_Ratio`) take fast-bert's defaults and give its numbers, except
`fbeta` on a row with no true and no predicted label (see there). tests/test_metrics.py checks all of it on random
inputs.
"""

from __future__ import annotations

import functools
import inspect
import warnings
from typing import Any, Callable, Sequence

import numpy as np
import scipy.stats
import sklearn.metrics as skm
import torch
from fastai.learner import Metric

from .errors import BertLearnError, user_stacklevel

__all__ = ["metric_name", "LOWER_IS_BETTER",
           "accuracy", "f1", "f1_macro", "f1_micro", "f1_weighted", "precision", "precision_macro", "recall",
           "recall_macro", "f1_per_class", "matthews_corrcoef", "confusion_matrix", "roc_auc",
           "accuracy_multilabel", "accuracy_thresh", "fbeta", "f1_multilabel_macro", "f1_multilabel_micro",
           "f1_per_label", "roc_auc_micro", "roc_auc_macro", "hamming_loss", "exact_match",
           "F1", "Hamming_loss", "Exact_Match_Ratio",
           "mse", "mae", "pearson", "spearman",
           "DeviceAccumMetric", "to_fastai_metrics", "check_metrics", "default_metrics", "evaluate"]


def _np(t: Any) -> np.ndarray:
    return t.detach().cpu().float().numpy() if isinstance(t, torch.Tensor) else np.asarray(t)


def _np64(t: Any) -> np.ndarray:
    """Scores in float64, for rankings: float32 sigmoids and softmaxes of confident logits are all 1.0 (ties)."""
    return t.detach().cpu().double().numpy() if isinstance(t, torch.Tensor) else np.asarray(t, dtype=np.float64)


def _tensor(t: Any) -> torch.Tensor:
    return t if isinstance(t, torch.Tensor) else torch.as_tensor(np.asarray(t))


def _got(y_pred: torch.Tensor, y_true: torch.Tensor) -> str:
    return (f"got y_pred of shape {tuple(y_pred.shape)} and y_true of shape {tuple(y_true.shape)} "
            f"({str(y_true.dtype).replace('torch.', '')})")


# fast-bert's validate() calls every metric with labels= (the label names), which no metric here reads
_FAST_BERT_PASSES = ("labels",)
# where an option a metric does not take has a metric that takes it
_INSTEAD = {
    ("roc_auc", "average"): "; roc_auc is fast-bert's micro average on multi-label targets (the one-vs-rest macro "
                            "average on class indices): for the macro average over labels use roc_auc_macro",
    ("hamming_loss", "sample_weight"): "; Hamming_loss(y_pred, y_true, sample_weight=...) weights the rows",
    ("exact_match", "sample_weight"): "; Exact_Match_Ratio(y_pred, y_true, sample_weight=...) weights the rows",
    (None, "sample_weight"): "; to weight the rows, call sklearn.metrics' function with sample_weight= on the "
                             "decisions (y_pred.argmax(-1), or y_pred.sigmoid() > thresh for multi-label)",
}
_OTHER_SPELLING = {"thresh": "threshold", "threshold": "thresh"}


def _shown(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 60 and "\n" not in text else f"<{type(value).__name__}>"


def _no_other_options(func: Callable, kwargs: dict) -> None:
    """A TypeError naming `func`, the first keyword of `kwargs` it does not take and the options it does: `**kwargs`
    is there for fast-bert's labels=, and it took average=, sample_weight= or a misspelt option too, scoring without
    them in silence."""
    unknown = [k for k in kwargs if k not in _FAST_BERT_PASSES]
    if not unknown:
        return
    key, name = unknown[0], func.__name__
    options = [p for p in inspect.signature(func).parameters if p not in ("y_pred", "y_true", "kwargs")]
    takes = ", ".join(f"{p}= (or {_OTHER_SPELLING[p]}=)" if p in _OTHER_SPELLING else f"{p}=" for p in options)
    raise TypeError(f"{name}() got an unexpected keyword argument {key}={_shown(kwargs[key])}: it takes "
                    f"{takes + ' and' if takes else 'only'} fast-bert's labels= (ignored); remove {key}="
                    f"{_INSTEAD.get((name, key)) or _INSTEAD.get((None, key), '')}")


class _Default(float):
    """A threshold's default, told apart from the same value passed: thresh=0.5 beside threshold=0.3 is refused."""


def _threshold(name: str, own: str, value: Any, kwargs: dict) -> Any:
    """The threshold passed as `own` (thresh or threshold), or under the other spelling, taken out of `kwargs`:
    fast-bert's F1 spells it threshold and its other metrics thresh, and the spelling a metric did not take was
    dropped in silence (F1(thresh=0.3) scored at 0.5)."""
    other = _OTHER_SPELLING[own]
    if other not in kwargs:
        return value
    given = kwargs.pop(other)
    # compared in float32, as the decisions are: a float32 tensor of 0.3 and the float 0.3 decide alike
    if not isinstance(value, _Default) and not np.array_equal(_np64(value).astype(np.float32),
                                                              _np64(given).astype(np.float32)):
        raise TypeError(f"{name}() got {own}={_shown(value)} and {other}={_shown(given)}, two spellings of one "
                        f"threshold that disagree; pass one of them")
    return given


# what to use instead, said by the checks below
_SINGLE_NAMES = "accuracy, f1_macro, roc_auc or matthews_corrcoef"
_MULTI_NAMES = "accuracy_thresh, accuracy_multilabel, fbeta, f1_multilabel_macro, roc_auc or hamming_loss"
_REGRESSION_NAMES = "mse, mae, pearson or spearman"


def _class_indices(name: str, y_pred: Any, y_true: Any) -> tuple[torch.Tensor, torch.Tensor]:
    """y_pred as (n, c) scores and y_true as (n,) int64 class indices in [0, c), or a ValueError naming `name`, what
    the call gave and the metrics that take it: a regression value or a multi-label row read as a class index gave
    a number that meant nothing."""
    y_pred, y_true = _tensor(y_pred), _tensor(y_true)
    takes = (f"{name}() takes y_pred (n, c) of scores, one column per class, and y_true (n,) of class indices in "
             f"[0, c); {_got(y_pred, y_true)}")
    if y_pred.dim() != 2:
        raise ValueError(f"{takes}: y_pred is not (n, c); pass the logits of every row, one column per class")
    if y_true.dim() > 2 or y_true.dim() == 2 and y_true.shape[1] != 1:
        raise ValueError(f"{takes}: y_true holds a row per example, not a class index. Multi-label 0/1 rows: use "
                         f"{_MULTI_NAMES}; one-hot single-label rows: pass y_true.argmax(-1)")
    y = y_true.reshape(-1)
    if len(y) != len(y_pred):
        raise ValueError(f"{takes}: y_pred has {len(y_pred)} rows and y_true {len(y)}; pass one target per row")
    if y.is_floating_point() and len(y):
        bad = ~torch.isfinite(y) | (y != y.round())
        if bool(bad.any()):
            raise ValueError(f"{takes}: y_true holds {float(y[bad][0]):g}, not a whole number. Regression targets: "
                             f"use {_REGRESSION_NAMES}; class indices are whole numbers in [0, c)")
    y = y.long()
    if len(y) and (int(y.min()) < 0 or int(y.max()) >= y_pred.shape[1]):
        v = int(y.min()) if int(y.min()) < 0 else int(y.max())
        raise ValueError(f"{takes}: y_true holds class index {v}, outside [0, {y_pred.shape[1]}) (y_pred's "
                         f"columns). Pass a column of logits for every class; regression targets: use "
                         f"{_REGRESSION_NAMES}")
    return y_pred, y


def _label_rows(name: str, y_pred: Any, y_true: Any) -> tuple[torch.Tensor, torch.Tensor]:
    """y_pred and y_true as (n, c) scores and 0/1 labels of one shape, or a ValueError naming `name`, what the call
    gave and the metrics that take it (class indices broadcast against (n, c) scores, or fit them where n == c)."""
    y_pred, y_true = _tensor(y_pred), _tensor(y_true)
    takes = (f"{name}() takes y_pred (n, c) of scores and y_true (n, c) of 0/1 labels, one column per label, shaped "
             f"like y_pred; {_got(y_pred, y_true)}")
    if y_pred.dim() != 2 or tuple(y_true.shape) != tuple(y_pred.shape):
        if y_true.dim() == 1:
            raise ValueError(f"{takes}: y_true is one value per row. Class indices: use {_SINGLE_NAMES}; regression "
                             f"values: use {_REGRESSION_NAMES}")
        raise ValueError(f"{takes}: the shapes differ; pass y_pred (n, c) and one 0/1 column per label in y_true")
    if y_true.numel() and y_true.dtype != torch.bool:
        bad = (y_true != 0) & (y_true != 1)
        if bool(bad.any()):
            raise ValueError(f"{takes}: y_true holds {float(y_true[bad][0]):g}, not 0 or 1. Pass 0/1 labels; "
                             f"regression targets: use {_REGRESSION_NAMES}")
    return y_pred, y_true


def _share(hits: torch.Tensor) -> torch.Tensor:
    """The share of True in `hits`, in float64 where the device has it: a float32 mean of 69 hits in 100 was
    0.6899999976 in `validate()`'s dict and the logs, not 0.69."""
    return hits.to(torch.float32 if hits.device.type == "mps" else torch.float64).mean()


def accuracy(y_pred: torch.Tensor, y_true: torch.Tensor, **kwargs: Any) -> torch.Tensor:
    """Share of rows whose highest logit is the true class.

    Args:
        y_pred: (n, c) logits or probabilities.
        y_true: (n,) class indices (whole numbers in [0, c); a ValueError says where they are not).
        **kwargs: fast-bert's labels= (the label names), ignored; any other keyword is refused (TypeError).
    """
    _no_other_options(accuracy, kwargs)
    y_pred, y = _class_indices("accuracy", y_pred, y_true)
    return _share(y_pred.argmax(dim=-1) == y.to(y_pred.device))


def _classes(y_pred: torch.Tensor, y_true: torch.Tensor, name: str) -> tuple[np.ndarray, np.ndarray, list[int]]:
    y_pred, y = _class_indices(name, y_pred, y_true)
    return y.cpu().numpy(), y_pred.argmax(dim=-1).cpu().numpy(), list(range(y_pred.shape[-1]))


# sklearn averages over the classes present in the targets or the predictions: a class the validation set lacks
# and the model never predicts has no precision or recall to average (counting it as 0 would lower macro scores
# for a class that was not there). zero_division=0 is sklearn's default value, without its warning.
_AVERAGED = ("precision, recall and F1 average over the classes that occur in the targets or the predictions, as "
             "sklearn does")


def _single(fn: Callable, name: str, **fixed: Any) -> Callable:
    def metric(y_pred: torch.Tensor, y_true: torch.Tensor, **kwargs: Any) -> float:
        _no_other_options(metric, kwargs)
        t, p, _ = _classes(y_pred, y_true, name)
        return float(fn(t, p, zero_division=0, **fixed))
    metric.__name__ = metric.__qualname__ = name
    metric.__doc__ = (f"{name.replace('_', ' ')} of the argmax class: sklearn `{fn.__name__}(average="
                      f"{fixed['average']!r}, zero_division=0)` ({_AVERAGED}).\n\n"
                      "Args:\n    y_pred: (n, c) logits (or probabilities) of the whole set.\n"
                      "    y_true: (n,) class indices.\n"
                      "    **kwargs: fast-bert's labels= (the label names), ignored; any other keyword is refused "
                      "(TypeError).")
    return metric


f1_macro = _single(skm.f1_score, "f1_macro", average="macro")
f1_micro = _single(skm.f1_score, "f1_micro", average="micro")
f1_weighted = _single(skm.f1_score, "f1_weighted", average="weighted")
precision_macro = _single(skm.precision_score, "precision_macro", average="macro")
recall_macro = _single(skm.recall_score, "recall_macro", average="macro")


def f1(y_pred: torch.Tensor, y_true: torch.Tensor, average: str = "macro", **kwargs: Any) -> float:
    """F1 of the argmax class: sklearn `f1_score(average=average, zero_division=0)` (the average runs over the
    classes that occur in the targets or the predictions).

    Args:
        y_pred: (n, c) logits (or probabilities) of the whole set.
        y_true: (n,) class indices.
        average: sklearn's average: 'macro', 'micro' or 'weighted'.
        **kwargs: fast-bert's labels= (the label names), ignored; any other keyword is refused (TypeError).
    """
    _no_other_options(f1, kwargs)
    t, p, _ = _classes(y_pred, y_true, "f1")
    return float(skm.f1_score(t, p, average=average, zero_division=0))


def precision(y_pred: torch.Tensor, y_true: torch.Tensor, average: str = "macro", **kwargs: Any) -> float:
    """Precision of the argmax class: sklearn `precision_score(average=average, zero_division=0)`.

    Args:
        y_pred: (n, c) logits (or probabilities) of the whole set.
        y_true: (n,) class indices.
        average: sklearn's average: 'macro', 'micro' or 'weighted'.
        **kwargs: fast-bert's labels= (the label names), ignored; any other keyword is refused (TypeError).
    """
    _no_other_options(precision, kwargs)
    t, p, _ = _classes(y_pred, y_true, "precision")
    return float(skm.precision_score(t, p, average=average, zero_division=0))


def recall(y_pred: torch.Tensor, y_true: torch.Tensor, average: str = "macro", **kwargs: Any) -> float:
    """Recall of the argmax class: sklearn `recall_score(average=average, zero_division=0)`.

    Args:
        y_pred: (n, c) logits (or probabilities) of the whole set.
        y_true: (n,) class indices.
        average: sklearn's average: 'macro', 'micro' or 'weighted'.
        **kwargs: fast-bert's labels= (the label names), ignored; any other keyword is refused (TypeError).
    """
    _no_other_options(recall, kwargs)
    t, p, _ = _classes(y_pred, y_true, "recall")
    return float(skm.recall_score(t, p, average=average, zero_division=0))


def f1_per_class(y_pred: torch.Tensor, y_true: torch.Tensor, **kwargs: Any) -> np.ndarray:
    """F1 of each class (array in label order) for single-label tasks: sklearn `f1_score(labels=range(c),
    average=None, zero_division=0)`, so a class absent from targets and predictions shows 0.

    Args:
        y_pred: (n, c) logits (or probabilities) of the whole set.
        y_true: (n,) class indices.
        **kwargs: fast-bert's labels= (the label names), ignored; any other keyword is refused (TypeError).
    """
    _no_other_options(f1_per_class, kwargs)
    t, p, labels = _classes(y_pred, y_true, "f1_per_class")
    return skm.f1_score(t, p, labels=labels, average=None, zero_division=0)


def matthews_corrcoef(y_pred: torch.Tensor, y_true: torch.Tensor, **kwargs: Any) -> float:
    """Matthews correlation of the argmax class: sklearn `matthews_corrcoef`'s value, computed from the confusion
    matrix over all classes (sklearn's own call warns when a single class occurs); 0 where it is undefined.

    Args:
        y_pred: (n, c) logits (or probabilities) of the whole set.
        y_true: (n,) class indices.
        **kwargs: fast-bert's labels= (the label names), ignored; any other keyword is refused (TypeError).
    """
    _no_other_options(matthews_corrcoef, kwargs)
    t, p, labels = _classes(y_pred, y_true, "matthews_corrcoef")
    cm = skm.confusion_matrix(t, p, labels=labels).astype(np.float64)
    true_k, pred_k, right, n = cm.sum(1), cm.sum(0), np.trace(cm), cm.sum()
    denominator = np.sqrt((n * n - pred_k @ pred_k) * (n * n - true_k @ true_k))
    return float((right * n - true_k @ pred_k) / denominator) if denominator > 0 else 0.0


def confusion_matrix(y_pred: torch.Tensor, y_true: torch.Tensor, **kwargs: Any) -> np.ndarray:
    """Confusion matrix (rows: true class, columns: predicted), in label order.

    Args:
        y_pred: (n, c) logits (or probabilities) of the whole set.
        y_true: (n,) class indices.
        **kwargs: fast-bert's labels= (the label names), ignored; any other keyword is refused (TypeError).
    """
    _no_other_options(confusion_matrix, kwargs)
    t, p, labels = _classes(y_pred, y_true, "confusion_matrix")
    return skm.confusion_matrix(t, p, labels=labels)


def _log_odds(x: np.ndarray) -> np.ndarray:
    """Each class's softmax log-odds against the rest, log(p_k / (1 - p_k)) = x_k - logsumexp(x_j, j != k), of (n, c)
    float64 logits: per class, rows rank as their probabilities do, without the ties of a saturated softmax (1.0 in
    float32 for every logit gap above ~17, in float64 above ~37). Each value is computed from the row's sorted
    logits, so rows holding the same logits in another order get the same value: a tie stays a tie."""
    order = np.sort(x, axis=1)
    top = order[:, -1:]
    total = np.exp(order - top).sum(1, keepdims=True)  # >= 1: a top class's own term
    # a class below the top: the rest hold the top's term 1, so total - e_k >= 1 and nothing cancels away
    rest = np.log(np.maximum(total - np.exp(x - top), 1.0))
    if x.shape[1] > 1:
        # a top class (all of them where several tie): the rest's log-sum-exp about their own maximum, the second
        # largest logit (total - 1 would cancel to 0 when the row is confident, the very rows that saturate)
        second = order[:, -2:-1]
        at_top = second - top + np.log(np.exp(order[:, :-1] - second).sum(1, keepdims=True))
        rest = np.where(x == top, at_top, rest)
    return (x - top) - rest


def roc_auc(y_pred: torch.Tensor, y_true: torch.Tensor, **kwargs: Any) -> float:
    """ROC AUC. Single-label (y_true of class indices): the AUC of the softmax probabilities, binary of class 1,
    else sklearn's one-vs-rest macro average (the mean over classes of each class's AUC). Multi-label (y_true of 0/1
    rows like y_pred): fast-bert's `roc_auc`, the micro average over every (row, label) score (sklearn
    `roc_auc_score(y_true.ravel(), y_pred.ravel())`, on the logits). NaN where the AUC is undefined (sklearn
    raises): a class without positives or negatives in y_true.

    AUC reads only the order of the scores, so rows are ranked by float64 transforms that keep the probabilities'
    order and do not saturate: logits[:, 1] - logits[:, 0] when binary, each class's log-odds against the rest
    otherwise, the logits for multi-label. float32 softmax and sigmoid outputs are 1.0 for every confident row:
    ties that changed the AUC.

    Args:
        y_pred: (n, c) logits of the whole set.
        y_true: (n,) class indices, or (n, c) 0/1 targets.
        **kwargs: fast-bert's labels= (the label names), ignored; any other keyword is refused (TypeError).
    """
    _no_other_options(roc_auc, kwargs)
    if _tensor(y_true).dim() == 2 and tuple(_tensor(y_true).shape) == tuple(_tensor(y_pred).shape):
        return _roc_auc_micro("roc_auc", y_pred, y_true)
    y_pred, y = _class_indices("roc_auc", y_pred, y_true)
    t, x = y.cpu().numpy(), _np64(y_pred)
    if len(np.unique(t)) < max(2, x.shape[1]):  # a class without positives (or negatives): undefined
        return float("nan")
    if x.shape[1] == 2:
        return float(skm.roc_auc_score(t, x[:, 1] - x[:, 0]))
    z = _log_odds(x)
    return float(np.mean([skm.roc_auc_score(t == k, z[:, k]) for k in range(x.shape[1])]))


# --- multi-label: y_pred (n, c) logits, y_true (n, c) 0/1 ---

def accuracy_multilabel(y_pred: torch.Tensor, y_true: torch.Tensor, sigmoid: bool = True, **kwargs: Any
                        ) -> torch.Tensor:
    """fast-bert's `accuracy_multilabel`: the share of rows whose highest-scored label is their first true label
    (argmax of the 0/1 row; a row without true labels counts as label 0). It ignores every other label: for the
    share of right (row, label) decisions use `accuracy_thresh`.

    Args:
        y_pred: (n, c) logits (or probabilities with `sigmoid=False`).
        y_true: (n, c) 0/1 targets.
        sigmoid: fast-bert's flag, without effect: the sigmoid keeps the order, so the argmax is taken of `y_pred`
            itself (float32 sigmoids of confident logits are all 1.0, ties that the argmax broke to label 0).
        **kwargs: fast-bert's labels= (the label names), ignored; any other keyword is refused (TypeError).
    """
    for key in ("thresh", "threshold"):
        if key in kwargs:
            raise TypeError(f"accuracy_multilabel() is fast-bert's top-label match and takes no {key}; for the share "
                            "of right decisions at a threshold use accuracy_thresh(y_pred, y_true, thresh=...)")
    _no_other_options(accuracy_multilabel, kwargs)
    y_pred, y_true = _label_rows("accuracy_multilabel", y_pred, y_true)
    return _share(y_pred.argmax(dim=-1) == y_true.float().argmax(dim=-1).to(y_pred.device))


def accuracy_thresh(y_pred: torch.Tensor, y_true: torch.Tensor, thresh: float = _Default(0.5), sigmoid: bool = True,
                    **kwargs: Any) -> torch.Tensor:
    """Share of (row, label) decisions that are right, thresholding float32 sigmoid outputs at `thresh` (fast-bert's
    `accuracy_thresh`; 1 - sklearn's `hamming_loss`, and 1 - `hamming_loss` here, whatever the logits' dtype).

    Args:
        y_pred: (n, c) logits (or probabilities with `sigmoid=False`).
        y_true: (n, c) 0/1 targets.
        thresh: decision threshold on probabilities, a float or one per label (or as threshold=).
        sigmoid: apply a sigmoid to `y_pred` first.
        **kwargs: fast-bert's labels= (the label names), ignored; any other keyword is refused (TypeError).
    """
    thresh = _threshold("accuracy_thresh", "thresh", thresh, kwargs)
    _no_other_options(accuracy_thresh, kwargs)
    y_pred, y_true = _label_rows("accuracy_thresh", y_pred, y_true)
    # in float32, as hamming_loss and the predictors decide: bf16 / fp16 logits compared in their own precision
    # rounded probabilities near the threshold to the other side
    probs = y_pred.float().sigmoid() if sigmoid else y_pred.float()
    thresh = torch.as_tensor(thresh, dtype=torch.float32, device=probs.device)
    return _share((probs > thresh) == y_true.bool())


def _decisions(y_pred: torch.Tensor, thresh: Any, sigmoid: bool = True) -> np.ndarray:
    # float32 thresholds, as accuracy_thresh and the predictors compare: a float64 0.05 against float32(0.05)
    # decided a tie the other way
    probs = y_pred.float().sigmoid() if sigmoid else y_pred.float()
    return (_np(probs) > np.asarray(thresh, dtype=np.float32)).astype(int)


_EMPTY_ROWS_SAID = False


def fbeta(y_pred: torch.Tensor, y_true: torch.Tensor, thresh: float = _Default(0.3), beta: float = 2.0,
          eps: float = 1e-9, sigmoid: bool = True, *, average: str = "samples", **kwargs: Any) -> float:
    """F-beta of sigmoid outputs thresholded at `thresh`: fast-bert's `fbeta` (beta 2, threshold 0.3, averaged over
    rows), computed as sklearn `fbeta_score(average=average)`.

    With `average="samples"`, a row with no true label and no predicted label is a correct empty prediction and
    scores 1 (sklearn's `zero_division=1`); fast-bert's formula scored it 0, so where such rows occur this
    value is higher than fast-bert's, and a warning (once) says by how much. Elsewhere the two agree. Other
    averages use `zero_division=0`, sklearn's default value.

    Args:
        y_pred: (n, c) logits of the whole set (probabilities with `sigmoid=False`).
        y_true: (n, c) 0/1 targets.
        thresh: probability threshold, a float or one per label (or as threshold=).
        beta: weight of recall.
        eps: fast-bert's guard against division by zero; the value here is exact, so it changes nothing.
        sigmoid: apply a sigmoid to `y_pred` first.
        average: sklearn's average: 'samples', 'micro', 'macro' or 'weighted'.
        **kwargs: fast-bert's labels= (the label names), ignored; any other keyword is refused (TypeError).
    """
    global _EMPTY_ROWS_SAID
    thresh = _threshold("fbeta", "thresh", thresh, kwargs)
    _no_other_options(fbeta, kwargs)
    y_pred, y_true = _label_rows("fbeta", y_pred, y_true)
    t = _np(y_true).astype(int)
    d = _decisions(y_pred, thresh, sigmoid)
    samples = average == "samples"
    if t.ndim == 2 and t.shape[1] == 1:
        # one label: sklearn reads a single 0/1 column as binary, not multi-label, and refuses average="samples"
        # (and would average "macro" over the classes 0 and 1); with one label every average is that label's
        # F-beta, and a row's is 1 where the row is right (an empty row correctly left empty scores 1, as above)
        value = float(((t == d).all(1)).mean()) if samples else \
            float(skm.fbeta_score(t[:, 0], d[:, 0], beta=beta, average="binary", zero_division=0))
    else:
        value = float(skm.fbeta_score(t, d, beta=beta, average=average, zero_division=1 if samples else 0))
    empty = int(((t.sum(1) == 0) & (d.sum(1) == 0)).sum()) if samples else 0
    if empty and not _EMPTY_ROWS_SAID:
        _EMPTY_ROWS_SAID = True
        warnings.warn(f"fbeta: {empty} of {len(t)} rows have no true and no predicted label; they score 1 (a correct "
                      f"empty prediction), where fast-bert's fbeta scored them 0, which would give "
                      f"{value - empty / len(t):.4f} instead of {value:.4f}", stacklevel=user_stacklevel())
    return value


def f1_multilabel_macro(y_pred: torch.Tensor, y_true: torch.Tensor, thresh: float = _Default(0.5), sigmoid: bool = True,
                        **kwargs: Any) -> float:
    """Macro-F1 over labels of sigmoid outputs thresholded at `thresh`: sklearn `f1_score(average="macro",
    zero_division=0)`, which averages over every label, so a label with no positive and no prediction counts 0.

    Args:
        y_pred: (n, c) logits of the whole set (probabilities with `sigmoid=False`).
        y_true: (n, c) 0/1 targets.
        thresh: probability threshold, a float or one per label (or as threshold=).
        sigmoid: apply a sigmoid to `y_pred` first.
        **kwargs: fast-bert's labels= (the label names), ignored; any other keyword is refused (TypeError).
    """
    thresh = _threshold("f1_multilabel_macro", "thresh", thresh, kwargs)
    _no_other_options(f1_multilabel_macro, kwargs)
    y_pred, y_true = _label_rows("f1_multilabel_macro", y_pred, y_true)
    return float(skm.f1_score(_np(y_true).astype(int), _decisions(y_pred, thresh, sigmoid), average="macro",
                              zero_division=0))


def f1_multilabel_micro(y_pred: torch.Tensor, y_true: torch.Tensor, thresh: float = _Default(0.5), sigmoid: bool = True,
                        **kwargs: Any) -> float:
    """Micro-F1 over all (row, label) decisions of sigmoid outputs thresholded at `thresh` (sklearn
    `f1_score(average="micro")`).

    Args:
        y_pred: (n, c) logits of the whole set (probabilities with `sigmoid=False`).
        y_true: (n, c) 0/1 targets.
        thresh: probability threshold, a float or one per label (or as threshold=).
        sigmoid: apply a sigmoid to `y_pred` first.
        **kwargs: fast-bert's labels= (the label names), ignored; any other keyword is refused (TypeError).
    """
    thresh = _threshold("f1_multilabel_micro", "thresh", thresh, kwargs)
    _no_other_options(f1_multilabel_micro, kwargs)
    y_pred, y_true = _label_rows("f1_multilabel_micro", y_pred, y_true)
    return float(skm.f1_score(_np(y_true).astype(int), _decisions(y_pred, thresh, sigmoid), average="micro",
                              zero_division=0))


def f1_per_label(y_pred: torch.Tensor, y_true: torch.Tensor, thresh: float = _Default(0.5), sigmoid: bool = True,
                 **kwargs: Any) -> np.ndarray:
    """F1 of each label (array in label order) at `thresh` (sklearn `f1_score(average=None, zero_division=0)`).

    Args:
        y_pred: (n, c) logits of the whole set (probabilities with `sigmoid=False`).
        y_true: (n, c) 0/1 targets.
        thresh: probability threshold, a float or one per label (or as threshold=).
        sigmoid: apply a sigmoid to `y_pred` first.
        **kwargs: fast-bert's labels= (the label names), ignored; any other keyword is refused (TypeError).
    """
    thresh = _threshold("f1_per_label", "thresh", thresh, kwargs)
    _no_other_options(f1_per_label, kwargs)
    y_pred, y_true = _label_rows("f1_per_label", y_pred, y_true)
    return skm.f1_score(_np(y_true).astype(int), _decisions(y_pred, thresh, sigmoid), average=None, zero_division=0)


def _roc_auc_micro(name: str, y_pred: Any, y_true: Any) -> float:
    y_pred, y_true = _label_rows(name, y_pred, y_true)
    t = _np(y_true).astype(int)
    if len(np.unique(t)) < 2:
        return float("nan")
    return float(skm.roc_auc_score(t.ravel(), _np64(y_pred).ravel()))


def roc_auc_micro(y_pred: torch.Tensor, y_true: torch.Tensor, **kwargs: Any) -> float:
    """Micro-averaged ROC AUC over every (row, label) score: sklearn `roc_auc_score(average="micro")` of the
    float64 logits, which is fast-bert's `roc_auc`; the AUC of the sigmoid outputs, whose order the logits keep
    without the ties of float32 sigmoids (1.0 for every logit above ~17). NaN where undefined (sklearn raises): all
    targets 0, or all 1.

    Args:
        y_pred: (n, c) logits of the whole set.
        y_true: (n, c) 0/1 targets.
        **kwargs: fast-bert's labels= (the label names), ignored; any other keyword is refused (TypeError).
    """
    _no_other_options(roc_auc_micro, kwargs)
    return _roc_auc_micro("roc_auc_micro", y_pred, y_true)


def roc_auc_macro(y_pred: torch.Tensor, y_true: torch.Tensor, **kwargs: Any) -> float:
    """Macro-averaged ROC AUC of the sigmoid outputs: the mean of sklearn's per-label AUC over the labels that have
    both positives and negatives in y_true, ranked by the float64 logits (the sigmoids' order, without float32's
    ties at 1.0). sklearn's `roc_auc_score(average="macro")` raises instead when a label has one class only (common
    for rare labels in a validation set); NaN when no label has both.

    Args:
        y_pred: (n, c) logits of the whole set.
        y_true: (n, c) 0/1 targets.
        **kwargs: fast-bert's labels= (the label names), ignored; any other keyword is refused (TypeError).
    """
    _no_other_options(roc_auc_macro, kwargs)
    y_pred, y_true = _label_rows("roc_auc_macro", y_pred, y_true)
    t, x = _np(y_true).astype(int), _np64(y_pred)
    present = (t.sum(0) > 0) & (t.sum(0) < len(t))  # AUC is undefined for labels that never / always occur
    if not present.any():
        return float("nan")
    return float(skm.roc_auc_score(t[:, present], x[:, present], average="macro"))


def hamming_loss(y_pred: torch.Tensor, y_true: torch.Tensor, thresh: float = _Default(0.5), sigmoid: bool = True,
                 **kwargs: Any) -> float:
    """Share of wrong (row, label) decisions at `thresh` (sklearn `hamming_loss`).

    Args:
        y_pred: (n, c) logits of the whole set (probabilities with `sigmoid=False`).
        y_true: (n, c) 0/1 targets.
        thresh: probability threshold, a float or one per label (or as threshold=).
        sigmoid: apply a sigmoid to `y_pred` first.
        **kwargs: fast-bert's labels= (the label names), ignored; any other keyword is refused (TypeError).
    """
    thresh = _threshold("hamming_loss", "thresh", thresh, kwargs)
    _no_other_options(hamming_loss, kwargs)
    y_pred, y_true = _label_rows("hamming_loss", y_pred, y_true)
    return float(skm.hamming_loss(_np(y_true).astype(int), _decisions(y_pred, thresh, sigmoid)))


def exact_match(y_pred: torch.Tensor, y_true: torch.Tensor, thresh: float = _Default(0.5), sigmoid: bool = True,
                **kwargs: Any) -> float:
    """Share of rows whose whole label set is right at `thresh` (subset accuracy: sklearn `accuracy_score`).

    Args:
        y_pred: (n, c) logits of the whole set (probabilities with `sigmoid=False`).
        y_true: (n, c) 0/1 targets.
        thresh: probability threshold, a float or one per label (or as threshold=).
        sigmoid: apply a sigmoid to `y_pred` first.
        **kwargs: fast-bert's labels= (the label names), ignored; any other keyword is refused (TypeError).
    """
    thresh = _threshold("exact_match", "thresh", thresh, kwargs)
    _no_other_options(exact_match, kwargs)
    y_pred, y_true = _label_rows("exact_match", y_pred, y_true)
    return float((_decisions(y_pred, thresh, sigmoid) == _np(y_true).astype(int)).all(axis=1).mean())


# --- fast-bert's multi-label names, with its signatures and defaults ---

def F1(y_pred: torch.Tensor, y_true: torch.Tensor, threshold: float = _Default(0.5), sigmoid: bool = True,  # noqa: N802
       **kwargs: Any) -> float:
    """fast-bert's `F1`: `fbeta` with beta 1 at `threshold`, averaged over rows (multi-label).

    Args:
        y_pred: (n, c) logits of the whole set (probabilities with `sigmoid=False`).
        y_true: (n, c) 0/1 targets.
        threshold: probability threshold (or as thresh=, the spelling of fast-bert's other metrics).
        sigmoid: apply a sigmoid to `y_pred` first.
        **kwargs: fast-bert's labels= (the label names), ignored; any other keyword is refused (TypeError).
    """
    threshold = _threshold("F1", "threshold", threshold, kwargs)
    _no_other_options(F1, kwargs)
    y_pred, y_true = _label_rows("F1", y_pred, y_true)
    return fbeta(y_pred, y_true, thresh=threshold, beta=1.0, sigmoid=sigmoid)


def Hamming_loss(y_pred: torch.Tensor, y_true: torch.Tensor, sigmoid: bool = True,  # noqa: N802
                 thresh: float = _Default(0.5), sample_weight: Any = None, **kwargs: Any) -> float:
    """fast-bert's `Hamming_loss`: sklearn `hamming_loss` of the outputs thresholded at `thresh`.

    Args:
        y_pred: (n, c) logits (probabilities with `sigmoid=False`).
        y_true: (n, c) 0/1 targets.
        sigmoid: apply a sigmoid first.
        thresh: probability threshold (or as threshold=).
        sample_weight: per-row weights.
        **kwargs: fast-bert's labels= (the label names), ignored; any other keyword is refused (TypeError).
    """
    thresh = _threshold("Hamming_loss", "thresh", thresh, kwargs)
    _no_other_options(Hamming_loss, kwargs)
    y_pred, y_true = _label_rows("Hamming_loss", y_pred, y_true)
    probs = _np(y_pred.float().sigmoid() if sigmoid else y_pred.float())
    decided = (probs > np.asarray(thresh, dtype=np.float32)).astype(int)  # float32, as the predictors decide
    return float(skm.hamming_loss(_np(y_true).astype(int), decided, sample_weight=sample_weight))


def Exact_Match_Ratio(y_pred: torch.Tensor, y_true: torch.Tensor, sigmoid: bool = True,  # noqa: N802
                      thresh: float = _Default(0.5), normalize: bool = True, sample_weight: Any = None,
                      **kwargs: Any) -> float:
    """fast-bert's `Exact_Match_Ratio`: sklearn `accuracy_score` (subset accuracy) of the thresholded outputs.

    Args:
        y_pred: (n, c) logits (probabilities with `sigmoid=False`).
        y_true: (n, c) 0/1 targets.
        sigmoid: apply a sigmoid first.
        thresh: probability threshold (or as threshold=).
        normalize: the share (True) or the count (False) of exactly right rows.
        sample_weight: per-row weights.
        **kwargs: fast-bert's labels= (the label names), ignored; any other keyword is refused (TypeError).
    """
    thresh = _threshold("Exact_Match_Ratio", "thresh", thresh, kwargs)
    _no_other_options(Exact_Match_Ratio, kwargs)
    y_pred, y_true = _label_rows("Exact_Match_Ratio", y_pred, y_true)
    probs = _np(y_pred.float().sigmoid() if sigmoid else y_pred.float())
    decided = (probs > np.asarray(thresh, dtype=np.float32)).astype(int)  # float32, as the predictors decide
    return float(skm.accuracy_score(_np(y_true).astype(int), decided,
                                    normalize=normalize, sample_weight=sample_weight))


# --- regression: y_pred (n, 1), y_true (n,) ---

def _reg(y_pred: torch.Tensor, y_true: torch.Tensor, name: str) -> tuple[np.ndarray, np.ndarray]:
    # float64, as sklearn and SciPy compute: in float32 the Pearson of predictions 3000 +- 1e-3 was off by 1e-3
    p, t = _np64(y_pred).reshape(-1), _np64(y_true).reshape(-1)
    if p.size != t.size or np.ndim(y_pred) > 2 or np.ndim(y_pred) == 2 and np.shape(y_pred)[1] != 1:
        # (n, c) class scores against n targets broadcast, or failed in numpy's words
        raise ValueError(f"{name}() takes y_pred (n, 1) of predicted values and y_true (n,) of targets; "
                         f"{_got(_tensor(y_pred), _tensor(y_true))}: not one predicted value per target. "
                         f"Class indices: use {_SINGLE_NAMES}; multi-label 0/1 rows: use {_MULTI_NAMES}")
    return p, t


def mse(y_pred: torch.Tensor, y_true: torch.Tensor, **kwargs: Any) -> float:
    """Mean squared error (sklearn `mean_squared_error`).

    Args:
        y_pred: (n, 1) predictions of the whole set.
        y_true: (n,) targets.
        **kwargs: fast-bert's labels= (the label names), ignored; any other keyword is refused (TypeError).
    """
    _no_other_options(mse, kwargs)
    p, t = _reg(y_pred, y_true, "mse")
    return float(np.mean((p - t) ** 2))


def mae(y_pred: torch.Tensor, y_true: torch.Tensor, **kwargs: Any) -> float:
    """Mean absolute error (sklearn `mean_absolute_error`).

    Args:
        y_pred: (n, 1) predictions of the whole set.
        y_true: (n,) targets.
        **kwargs: fast-bert's labels= (the label names), ignored; any other keyword is refused (TypeError).
    """
    _no_other_options(mae, kwargs)
    p, t = _reg(y_pred, y_true, "mae")
    return float(np.mean(np.abs(p - t)))


def pearson(y_pred: torch.Tensor, y_true: torch.Tensor, **kwargs: Any) -> float:
    """Pearson correlation of predictions and targets (SciPy `pearsonr`; NaN where either is constant, where SciPy
    warns and gives NaN).

    Args:
        y_pred: (n, 1) predictions of the whole set.
        y_true: (n,) targets.
        **kwargs: fast-bert's labels= (the label names), ignored; any other keyword is refused (TypeError).
    """
    _no_other_options(pearson, kwargs)
    p, t = _reg(y_pred, y_true, "pearson")
    return float(scipy.stats.pearsonr(p, t)[0]) if len(p) > 1 and p.std() > 0 and t.std() > 0 else float("nan")


def spearman(y_pred: torch.Tensor, y_true: torch.Tensor, **kwargs: Any) -> float:
    """Spearman rank correlation of predictions and targets (SciPy `spearmanr`; NaN where either is constant).

    Args:
        y_pred: (n, 1) predictions of the whole set.
        y_true: (n,) targets.
        **kwargs: fast-bert's labels= (the label names), ignored; any other keyword is refused (TypeError).
    """
    _no_other_options(spearman, kwargs)
    p, t = _reg(y_pred, y_true, "spearman")
    return float(scipy.stats.spearmanr(p, t)[0]) if len(p) > 1 and p.std() > 0 and t.std() > 0 else float("nan")


def _as_value(out: Any) -> Any:
    """A metric function's result as validation reports it: a float, or an array for per-class metrics."""
    if isinstance(out, torch.Tensor):
        out = out.item() if out.numel() == 1 else out.numpy()
    return float(out) if np.ndim(out) == 0 else out


class DeviceAccumMetric(Metric):
    """A fastai metric that gathers predictions on the device and scores the whole set once.

    Token-level tasks (`ignore_index` given): each batch's (B, T, C) logits and (B, T) targets are flattened to
    (B*T, C) and (B*T,) on the device, and the positions whose target is `ignore_index` are dropped from the
    whole set, so `func` sees every scored token of the set, however wide each batch was padded.

    Args:
        func: `func(y_pred, y_true)` on CPU tensors of the whole set, returning a number or 0-d tensor.
        name: the column name in fastai's table and in `validate()`'s dict.
        ignore_index: None for one prediction a row; for one a token, the target of positions that are not
            scored (-100 for bertlearn's tagged data).
    """

    ignore_index: int | None = None  # what metrics pickled (export) before the option read as

    def __init__(self, func: Callable, name: str | None = None, *, ignore_index: int | None = None):
        self.func, self._name, self.ignore_index = func, name or metric_name(func), ignore_index
        self.reset()

    def reset(self) -> None:
        self.preds, self.targs, self._cached = [], [], None

    def __getstate__(self) -> dict:
        # export() pickles the learner with its metrics: the last validation's rows are not the metric's state
        state = dict(self.__dict__)
        state.update(preds=[], targs=[], _cached=None)
        return state

    def accumulate(self, learn: Any) -> None:
        """Keep this batch's predictions and targets, on their device (fastai calls it after each batch).

        Args:
            learn: the learner, whose `pred` and `yb` are the batch's.
        """
        pred, targ = learn.pred.detach(), learn.yb[0].detach()
        if self.ignore_index is not None:  # one row a token: batches of any width join
            pred, targ = pred.reshape(-1, pred.shape[-1]), targ.reshape(-1)
        self.preds.append(pred)
        self.targs.append(targ)
        self._cached = None

    def _all(self) -> tuple[torch.Tensor, torch.Tensor] | None:
        from .distributed import gather_objects, rank_world
        local = (torch.cat(self.preds).float().cpu(), torch.cat(self.targs).cpu()) if self.preds else None
        if local is not None and self.ignore_index is not None:
            # dropped here, once: a boolean index per batch would wait for the device each batch
            keep = local[1] != self.ignore_index
            local = local[0][keep], local[1][keep]
        if rank_world()[1] == 1:
            return local
        # every rank scored its share of the rows: score the union (each rank joins, even with no rows)
        if self._cached is None:
            parts = [p for p in gather_objects(local) if p is not None]
            self._cached = (torch.cat([p for p, _ in parts]), torch.cat([t for _, t in parts])) if parts else ()
        return self._cached or None

    @property
    def value(self) -> float | None:
        both = self._all()
        if both is None:
            return None
        preds, targs = both
        return _as_value(self.func(preds, targs))

    @property
    def name(self) -> str:
        return self._name


def metric_name(func: Callable) -> str:
    """A metric function's column name: its `__name__`, or a partial's function and options (`f1(average='macro')`:
    every partial was named "metric", and `validate()`'s dict kept only the last of them).

    Args:
        func: the function.
    """
    if isinstance(func, functools.partial):
        options = [*map(_option, func.args), *(f"{k}={_option(v)}" for k, v in func.keywords.items())]
        # "; " joins them: a comma would split fastai's CSVLogger header into more columns than its rows
        return f"{metric_name(func.func)}({'; '.join(options)})"
    return getattr(func, "__name__", "metric")


def _option(value: Any) -> str:
    # a plain value as written; anything else (an array, a function: long, or with a memory address that changes
    # between runs) by its type, so the name stays short and the same from run to run
    if value is None or isinstance(value, (bool, int, float, str)):
        text = repr(value)
        return text if len(text) <= 40 and "\n" not in text else f"<{type(value).__name__}>"
    return f"<{type(value).__name__}>"


# metrics where lower is better, which fastai's trackers (SaveModelCallback, EarlyStoppingCallback...) read as
# higher-is-better: fastai decides by "loss" or "error" in the name
LOWER_IS_BETTER = ("mse", "mae", "perplexity", "_rmse", "rmse", "msle", "exp_rmspe")
# the functions of this module where lower is better, whatever a metric dict or a partial names them
LOWER_IS_BETTER_FUNCTIONS = (mse, mae, hamming_loss, Hamming_loss)


def lower_is_better(monitor: str, metrics: Sequence[Any] | None) -> bool:
    """Whether the metric a tracker monitors is lower-is-better: by its function first, then by `monitor` alone.

    Args:
        monitor: the tracker's monitor, a metric's column name.
        metrics: the learner's metrics.
    """
    # the name alone missed {'name': 'MAE', 'function': mae} and partial(mse): their trackers kept the worst epoch
    for m in metrics or []:
        if getattr(m, "name", None) != monitor:
            continue
        func = m
        for _ in range(32):  # DeviceAccumMetric's, fastai's AccumMetric / AvgMetric's and partials' .func, nested
            if not hasattr(func, "func"):
                break
            func = func.func
        name = getattr(func, "__name__", "")
        # by identity and exact names first; then sklearn's naming convention (a *_score is higher-is-better, a
        # *loss / *error / *deviance lower: mean_squared_error renamed 'MSE'), which fastai's bare "loss"/"error"
        # substrings get wrong for d2_absolute_error_score
        if any(func is f for f in LOWER_IS_BETTER_FUNCTIONS) or name in (*LOWER_IS_BETTER, "error_rate"):
            return True
        if name.endswith("_score"):
            return False
        if any(word in name for word in ("loss", "error", "deviance")):
            return True
    return monitor in LOWER_IS_BETTER


def to_fastai_metrics(metrics: Sequence[Any] | None, *, ignore_index: int | None = None) -> list[Metric]:
    """Turn fast-bert metric dicts, plain functions and fastai metrics into fastai metrics.

    Args:
        metrics: items of the form `{'name': str, 'function': f}`, functions `f(y_pred, y_true)`,
            or fastai `Metric` instances (kept as they are).
        ignore_index: for token-level tasks, the target of unscored positions: each function then sees the whole
            set's (tokens, C) logits and (tokens,) targets without them (see `DeviceAccumMetric`).
    """
    if isinstance(metrics, (dict, str)) or callable(metrics):
        # iterating one dict gives its keys ('name', 'function'), which the item check could only call strings
        raise BertLearnError(f"metrics={metrics!r} is one metric; pass a list of them, e.g. metrics=[{{'name': "
                             "'accuracy', 'function': accuracy}] (fast-bert's form), [accuracy] or None for the "
                             "task's defaults")
    out = []
    for m in metrics or []:
        if isinstance(m, type):  # a metric class, as fastai's mk_metric takes it: its instance
            m = m()
        if isinstance(m, dict):
            if "function" not in m or not callable(m["function"]):
                raise BertLearnError(f"metric dict {m!r} needs a callable under 'function' (and a 'name')")
            out.append(DeviceAccumMetric(m["function"], m.get("name"), ignore_index=ignore_index))
        elif isinstance(m, Metric):
            out.append(m)
        elif callable(m):
            out.append(DeviceAccumMetric(m, ignore_index=ignore_index))
        elif isinstance(m, str) and callable(globals().get(m)) and m in __all__:
            raise BertLearnError(f"metrics item {m!r} is a name; pass the function: from bertlearn.metrics import "
                                 f"{m}, then metrics=[{{'name': '{m}', 'function': {m}}}] or [{m}]")
        else:
            raise BertLearnError(f"metrics items must be dicts {{'name': ..., 'function': f}}, functions or fastai "
                                 f"Metrics; got {type(m).__name__} {m!r}")
    names = [m.name for m in out]
    twice = sorted({n for n in names if names.count(n) > 1})
    if twice:  # validate()'s dict and fastai's table keep one value per name: the others were dropped
        raise BertLearnError(f"metrics: {twice} name more than one metric ({names}), and validate() and the epoch "
                             "table keep one value per name; give each its own name: {'name': 'f1_macro', "
                             "'function': f} for a function (fast-bert's form), AccumMetric(func, name=...) or "
                             "skm_to_fastai(sklearn_func, ..., name=...) for a fastai metric (or bertlearn's "
                             "f1_macro, f1_micro...)")
    return out


# what each task's metric functions take, and the ones that fit it, for check_metrics' message
_TASK_METRICS = {
    "multi_label_classification": ("multi-label classification", "0/1 rows",
                                   "accuracy_thresh (right (row, label) decisions at 0.5) or accuracy_multilabel "
                                   "(fast-bert's top-label match) where fast-bert's README has accuracy; also fbeta, "
                                   "F1, roc_auc, Hamming_loss, Exact_Match_Ratio, f1_multilabel_macro",
                                   "accuracy_thresh"),
    "regression": ("regression", "values", "mse, mae, pearson, spearman", "mse"),
    "single_label_classification": ("single-label classification", "class indices",
                                    "accuracy, f1_macro, roc_auc, matthews_corrcoef", "accuracy"),
}


def check_metrics(metrics: Sequence[Metric], problem_type: str, n_outputs: int, targets: np.ndarray | None) -> None:
    """Score every metric function once on a tiny made-up validation set of the task's shapes, so a metric that
    cannot take this task's outputs (fast-bert's `accuracy` on a multi-label task) is refused, named, when the
    learner is built: validation calls it only after the first epoch has trained, where it failed as a raw error
    inside fastai's Recorder. Only `DeviceAccumMetric`s (functions and fast-bert's dicts) are tried; other fastai
    `Metric`s accumulate per batch on their own terms and are left as they are. No random state is drawn, no
    warning is shown.

    The made-up set holds every class (single-label: one row per class and one more), every label both on and off
    (multi-label) or values that are no class index (regression: 0.5, 1.5), and never as many rows as outputs, so
    (n, n) scores cannot pass against (n,) targets by broadcasting. bertlearn's metric functions refuse another
    task's targets themselves (a ValueError naming the function): `accuracy` of regression values, or
    `accuracy_multilabel` of class indices, is refused here, where it reported a number that meant nothing.

    Args:
        metrics: the learner's metrics (after `to_fastai_metrics`).
        problem_type: the task: "single_label_classification", "multi_label_classification" or "regression".
        n_outputs: the model's outputs per row (the number of labels; 1 for regression).
        targets: the training targets (only their dtype and per-row shape are read); None skips the check.

    Raises:
        BertLearnError: naming the metric, the task, what it raised and the metrics that fit the task.
    """
    global _EMPTY_ROWS_SAID
    tried = [m for m in metrics if isinstance(m, DeviceAccumMetric)]
    if not tried or targets is None:
        return
    targets = np.asarray(targets[:0])  # dtype and row shape, without reading rows (a memory map stays unread)
    multi = problem_type == "multi_label_classification"
    # every class present (single-label), every label both on and off (multi-label), distinct values that are no
    # class indices (regression): what a metric needs of a real validation set. Never as many rows as outputs: (n, n)
    # scores against n targets broadcast, and a metric of another task's shapes passed here and failed on the real set
    single = not multi and problem_type != "regression"
    n = max(2, n_outputs) + 1 if single else 3 if n_outputs == 2 else 2
    width = int(np.prod(targets.shape[1:], dtype=np.int64))
    if multi:
        values = np.stack([np.ones(n_outputs), np.zeros(n_outputs), np.arange(n_outputs) % 2][:n])
    elif problem_type == "regression":
        values = np.arange(n * width, dtype=np.float64) + 0.5
    else:
        values = np.arange(n) % max(1, n_outputs)
    y_true = torch.from_numpy(np.ascontiguousarray(values.reshape((n,) + targets.shape[1:]).astype(targets.dtype)))
    y_pred = torch.linspace(-2.0, 2.0, n * n_outputs).reshape(n, n_outputs)
    task, takes, fits, example = _TASK_METRICS.get(problem_type, _TASK_METRICS["single_label_classification"])
    said = _EMPTY_ROWS_SAID
    try:
        for m in tried:
            try:
                with warnings.catch_warnings(), torch.no_grad():
                    warnings.simplefilter("ignore")  # a made-up set's warnings (fbeta's empty rows...) are no news
                    _as_value(m.func(y_pred.clone(), y_true.clone()))
            except Exception as e:  # whatever the user's function raises: said with the task and the fix
                func = getattr(m.func, "__name__", type(m.func).__name__)
                named = repr(m.name) + (f" ({func})" if func != m.name else "")
                raise BertLearnError(
                    f"metrics: {named} cannot score this {task} task: called as validation calls it, with "
                    f"y_pred of shape ({n}, {n_outputs}) (logits) and y_true of shape {tuple(y_true.shape)} "
                    f"({str(y_true.dtype).replace('torch.', '')} {takes}), it raised {type(e).__name__}: {e}. For "
                    f"{task} use {fits} (from bertlearn.metrics import {example}), or metrics=None for the task's "
                    "defaults") from e
    finally:
        _EMPTY_ROWS_SAID = said  # fbeta's once-only note stays for the real validation set


def default_metrics(problem_type: str | bool) -> list[Metric]:
    """The metrics used when none are given, chosen by task (never binary F1 on a multi-class task).

    Args:
        problem_type: "single_label_classification", "multi_label_classification" or "regression"
            (True / False are read as multi-label / single-label).
    """
    if problem_type is True or problem_type == "multi_label_classification":
        return [DeviceAccumMetric(accuracy_thresh), DeviceAccumMetric(f1_multilabel_macro),
                DeviceAccumMetric(f1_multilabel_micro)]
    if problem_type == "regression":
        return [DeviceAccumMetric(mse), DeviceAccumMetric(pearson), DeviceAccumMetric(spearman)]
    return [DeviceAccumMetric(accuracy, "accuracy"), DeviceAccumMetric(f1_macro)]


def evaluate(logits: torch.Tensor, targets: Any, problem_type: str, labels: Sequence[str], *,
             thresholds: Any = None) -> dict[str, Any]:
    """The full metric report for a task, from raw model outputs and encoded targets.

    Single-label: accuracy, macro/micro/weighted F1, macro precision and recall, MCC, ROC-AUC (binary:
    of the second label; multi-class: one-vs-rest macro), F1 per label. Multi-label (at `thresholds`):
    accuracy_thresh, micro/macro F1, hamming loss, exact match, micro/macro ROC-AUC, F1 per label.
    Regression: MSE, MAE, Pearson, Spearman.

    Args:
        logits: (n, n_labels) model outputs.
        targets: class indices, multi-hot rows or floats (see `targets_from_frame`).
        problem_type: the task.
        labels: label names, in output order.
        thresholds: multi-label decision threshold(s) (default 0.5).
    """
    y = torch.as_tensor(np.require(targets, requirements="W"))  # a copy only of read-only input (pandas 3 views)
    if problem_type == "regression":
        return {"mse": mse(logits, y), "mae": mae(logits, y), "pearson": pearson(logits, y),
                "spearman": spearman(logits, y)}
    if problem_type == "multi_label_classification":
        thr = 0.5 if thresholds is None else thresholds
        out = {"accuracy_thresh": float(accuracy_thresh(logits, y, thresh=thr)),
               "f1_micro": f1_multilabel_micro(logits, y, thresh=thr), "f1_macro": f1_multilabel_macro(logits, y, thresh=thr),
               "hamming_loss": hamming_loss(logits, y, thresh=thr), "exact_match": exact_match(logits, y, thresh=thr)}
        out.update(roc_auc_micro=roc_auc_micro(logits, y), roc_auc_macro=roc_auc_macro(logits, y))  # NaN if undefined
        out["f1_per_label"] = dict(zip(labels, (float(v) for v in f1_per_label(logits, y, thresh=thr))))
        return out
    out = {"accuracy": float(accuracy(logits, y)), "f1_macro": f1(logits, y, "macro"),
           "f1_micro": f1(logits, y, "micro"), "f1_weighted": f1(logits, y, "weighted"),
           "precision_macro": precision(logits, y, "macro"), "recall_macro": recall(logits, y, "macro"),
           "matthews_corrcoef": matthews_corrcoef(logits, y)}
    out["roc_auc"] = roc_auc(logits, y)  # NaN where a class is absent from the targets
    per = f1_per_class(logits, y)
    out["f1_per_label"] = dict(zip(labels, (float(v) for v in per)))
    return out
