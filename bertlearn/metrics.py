"""Metrics usable both the fast-bert way (`{'name': ..., 'function': f(y_pred, y_true)}`) and as fastai metrics.

A metric function takes the logits and targets of the whole validation set. `DeviceAccumMetric` keeps
the per-batch tensors on the device during validation (fastai's `AvgMetric` copies each batch to the CPU,
a host-device sync per batch) and hands the concatenated CPU tensors to the function once at the end.

Every metric gives scikit-learn's (or SciPy's) value on the same decisions; where a docstring says otherwise it
says how and why. fast-bert's metric names (`accuracy`, `accuracy_multilabel`, `accuracy_thresh`, `fbeta`,
`roc_auc`, `F1`, `Hamming_loss`, `Exact_Match_Ratio`) take fast-bert's defaults and give its numbers, except
`fbeta` on a row with no true and no predicted label (see there). tests/test_metrics.py checks all of it on random
inputs.
"""

from __future__ import annotations

import warnings
from typing import Any, Callable, Sequence

import numpy as np
import scipy.stats
import sklearn.metrics as skm
import torch
from fastai.learner import Metric

from .errors import BertLearnError, user_stacklevel

__all__ = ["accuracy", "f1", "f1_macro", "f1_micro", "f1_weighted", "precision", "precision_macro", "recall",
           "recall_macro", "f1_per_class", "matthews_corrcoef", "confusion_matrix", "roc_auc",
           "accuracy_multilabel", "accuracy_thresh", "fbeta", "f1_multilabel_macro", "f1_multilabel_micro",
           "f1_per_label", "roc_auc_micro", "roc_auc_macro", "hamming_loss", "exact_match",
           "F1", "Hamming_loss", "Exact_Match_Ratio",
           "mse", "mae", "pearson", "spearman",
           "DeviceAccumMetric", "to_fastai_metrics", "check_metrics", "default_metrics", "evaluate"]


def _np(t: Any) -> np.ndarray:
    return t.detach().cpu().float().numpy() if isinstance(t, torch.Tensor) else np.asarray(t)


def accuracy(y_pred: torch.Tensor, y_true: torch.Tensor, **kwargs: Any) -> torch.Tensor:
    """Share of rows whose highest logit is the true class.

    Args:
        y_pred: (n, c) logits or probabilities.
        y_true: (n,) class indices.
    """
    return (y_pred.argmax(dim=-1) == y_true.view(-1)).float().mean()


def _classes(y_pred: torch.Tensor, y_true: torch.Tensor) -> tuple[np.ndarray, np.ndarray, list[int]]:
    return _np(y_true).astype(int).reshape(-1), _np(y_pred.argmax(dim=-1)).astype(int), list(range(y_pred.shape[-1]))


# sklearn averages over the classes present in the targets or the predictions: a class the validation set lacks
# and the model never predicts has no precision or recall to average (counting it as 0 would lower macro scores
# for a class that was not there). zero_division=0 is sklearn's default value, without its warning.
_AVERAGED = ("precision, recall and F1 average over the classes that occur in the targets or the predictions, as "
             "sklearn does")


def _single(fn: Callable, name: str, **fixed: Any) -> Callable:
    def metric(y_pred: torch.Tensor, y_true: torch.Tensor, **kwargs: Any) -> float:
        t, p, _ = _classes(y_pred, y_true)
        return float(fn(t, p, zero_division=0, **fixed))
    metric.__name__ = metric.__qualname__ = name
    metric.__doc__ = (f"{name.replace('_', ' ')} of the argmax class: sklearn `{fn.__name__}(average="
                      f"{fixed['average']!r}, zero_division=0)` ({_AVERAGED}).\n\n"
                      "Args:\n    y_pred: (n, c) logits (or probabilities) of the whole set.\n"
                      "    y_true: (n,) class indices.\n"
                      "    **kwargs: options this metric does not take, ignored.")
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
        **kwargs: options this metric does not take, ignored (one call can serve several metrics).
    """
    t, p, _ = _classes(y_pred, y_true)
    return float(skm.f1_score(t, p, average=average, zero_division=0))


def precision(y_pred: torch.Tensor, y_true: torch.Tensor, average: str = "macro", **kwargs: Any) -> float:
    """Precision of the argmax class: sklearn `precision_score(average=average, zero_division=0)`.

    Args:
        y_pred: (n, c) logits (or probabilities) of the whole set.
        y_true: (n,) class indices.
        average: sklearn's average: 'macro', 'micro' or 'weighted'.
        **kwargs: options this metric does not take, ignored (one call can serve several metrics).
    """
    t, p, _ = _classes(y_pred, y_true)
    return float(skm.precision_score(t, p, average=average, zero_division=0))


def recall(y_pred: torch.Tensor, y_true: torch.Tensor, average: str = "macro", **kwargs: Any) -> float:
    """Recall of the argmax class: sklearn `recall_score(average=average, zero_division=0)`.

    Args:
        y_pred: (n, c) logits (or probabilities) of the whole set.
        y_true: (n,) class indices.
        average: sklearn's average: 'macro', 'micro' or 'weighted'.
        **kwargs: options this metric does not take, ignored (one call can serve several metrics).
    """
    t, p, _ = _classes(y_pred, y_true)
    return float(skm.recall_score(t, p, average=average, zero_division=0))


def f1_per_class(y_pred: torch.Tensor, y_true: torch.Tensor, **kwargs: Any) -> np.ndarray:
    """F1 of each class (array in label order) for single-label tasks: sklearn `f1_score(labels=range(c),
    average=None, zero_division=0)`, so a class absent from targets and predictions shows 0.

    Args:
        y_pred: (n, c) logits (or probabilities) of the whole set.
        y_true: (n,) class indices.
        **kwargs: options this metric does not take, ignored (one call can serve several metrics).
    """
    t, p, labels = _classes(y_pred, y_true)
    return skm.f1_score(t, p, labels=labels, average=None, zero_division=0)


def matthews_corrcoef(y_pred: torch.Tensor, y_true: torch.Tensor, **kwargs: Any) -> float:
    """Matthews correlation of the argmax class: sklearn `matthews_corrcoef`'s value, computed from the confusion
    matrix over all classes (sklearn's own call warns when a single class occurs); 0 where it is undefined.

    Args:
        y_pred: (n, c) logits (or probabilities) of the whole set.
        y_true: (n,) class indices.
        **kwargs: options this metric does not take, ignored (one call can serve several metrics).
    """
    t, p, labels = _classes(y_pred, y_true)
    cm = skm.confusion_matrix(t, p, labels=labels).astype(np.float64)
    true_k, pred_k, right, n = cm.sum(1), cm.sum(0), np.trace(cm), cm.sum()
    denominator = np.sqrt((n * n - pred_k @ pred_k) * (n * n - true_k @ true_k))
    return float((right * n - true_k @ pred_k) / denominator) if denominator > 0 else 0.0


def confusion_matrix(y_pred: torch.Tensor, y_true: torch.Tensor, **kwargs: Any) -> np.ndarray:
    """Confusion matrix (rows: true class, columns: predicted), in label order.

    Args:
        y_pred: (n, c) logits (or probabilities) of the whole set.
        y_true: (n,) class indices.
        **kwargs: options this metric does not take, ignored (one call can serve several metrics).
    """
    t, p, labels = _classes(y_pred, y_true)
    return skm.confusion_matrix(t, p, labels=labels)


def roc_auc(y_pred: torch.Tensor, y_true: torch.Tensor, **kwargs: Any) -> float:
    """ROC AUC. Single-label (y_true of class indices): of softmax probabilities, binary on class 1, else sklearn's
    one-vs-rest macro average. Multi-label (y_true of 0/1 rows like y_pred): fast-bert's `roc_auc`, the micro
    average over every (row, label) score (sklearn `roc_auc_score(y_true.ravel(), y_pred.ravel())`). NaN where
    the AUC is undefined (sklearn raises): a class without positives or negatives in y_true.

    Args:
        y_pred: (n, c) logits of the whole set.
        y_true: (n,) class indices, or (n, c) 0/1 targets.
        **kwargs: options this metric does not take, ignored (one call can serve several metrics).
    """
    if y_true.dim() == 2 and tuple(y_true.shape) == tuple(y_pred.shape):
        return roc_auc_micro(y_pred, y_true)
    probs = _np(y_pred.float().softmax(dim=-1))
    t = _np(y_true).astype(int).reshape(-1)
    if len(np.unique(t)) < max(2, probs.shape[1]):  # a class without positives (or negatives): undefined
        return float("nan")
    if probs.shape[1] == 2:
        return float(skm.roc_auc_score(t, probs[:, 1]))
    return float(skm.roc_auc_score(t, probs, multi_class="ovr", average="macro", labels=list(range(probs.shape[1]))))


# --- multi-label: y_pred (n, c) logits, y_true (n, c) 0/1 ---

def accuracy_multilabel(y_pred: torch.Tensor, y_true: torch.Tensor, sigmoid: bool = True, **kwargs: Any
                        ) -> torch.Tensor:
    """fast-bert's `accuracy_multilabel`: the share of rows whose highest-scored label is their first true label
    (argmax of the 0/1 row; a row without true labels counts as label 0). It ignores every other label: for the
    share of right (row, label) decisions use `accuracy_thresh`.

    Args:
        y_pred: (n, c) logits (or probabilities with `sigmoid=False`).
        y_true: (n, c) 0/1 targets.
        sigmoid: apply a sigmoid to `y_pred` first (the argmax is the same either way).
    """
    if "thresh" in kwargs:
        raise TypeError("accuracy_multilabel() is fast-bert's top-label match and takes no thresh; for the share of "
                        "right decisions at a threshold use accuracy_thresh(y_pred, y_true, thresh=...)")
    probs = y_pred.sigmoid() if sigmoid else y_pred
    return (probs.argmax(dim=-1) == y_true.argmax(dim=-1)).float().mean()


def accuracy_thresh(y_pred: torch.Tensor, y_true: torch.Tensor, thresh: float = 0.5, sigmoid: bool = True,
                    **kwargs: Any) -> torch.Tensor:
    """Share of (row, label) decisions that are right, thresholding sigmoid outputs at `thresh` (fast-bert's
    `accuracy_thresh`; 1 - sklearn's `hamming_loss`).

    Args:
        y_pred: (n, c) logits (or probabilities with `sigmoid=False`).
        y_true: (n, c) 0/1 targets.
        thresh: decision threshold on probabilities, a float or one per label.
        sigmoid: apply a sigmoid to `y_pred` first.
    """
    probs = y_pred.sigmoid() if sigmoid else y_pred
    thresh = torch.as_tensor(thresh, dtype=probs.dtype, device=probs.device)
    return ((probs > thresh) == y_true.bool()).float().mean()


def _decisions(y_pred: torch.Tensor, thresh: Any) -> np.ndarray:
    # float32 thresholds, as accuracy_thresh and the predictors compare: a float64 0.05 against float32(0.05)
    # decided a tie the other way
    return (_np(y_pred.float().sigmoid()) > np.asarray(thresh, dtype=np.float32)).astype(int)


_EMPTY_ROWS_SAID = False


def fbeta(y_pred: torch.Tensor, y_true: torch.Tensor, thresh: float = 0.3, beta: float = 2.0, eps: float = 1e-9,
          sigmoid: bool = True, *, average: str = "samples", **kwargs: Any) -> float:
    """F-beta of sigmoid outputs thresholded at `thresh`: fast-bert's `fbeta` (beta 2, threshold 0.3, averaged over
    rows), computed as sklearn `fbeta_score(average=average)`.

    With `average="samples"`, a row with no true label and no predicted label is a correct empty prediction and
    scores 1 (sklearn's `zero_division=1`); fast-bert's formula scored it 0, so where such rows occur this
    value is higher than fast-bert's, and a warning (once) says by how much. Elsewhere the two agree. Other
    averages use `zero_division=0`, sklearn's default value.

    Args:
        y_pred: (n, c) logits of the whole set (probabilities with `sigmoid=False`).
        y_true: (n, c) 0/1 targets.
        thresh: probability threshold, a float or one per label.
        beta: weight of recall.
        eps: fast-bert's guard against division by zero; the value here is exact, so it changes nothing.
        sigmoid: apply a sigmoid to `y_pred` first.
        average: sklearn's average: 'samples', 'micro', 'macro' or 'weighted'.
        **kwargs: options this metric does not take, ignored (one call can serve several metrics).
    """
    global _EMPTY_ROWS_SAID
    t = _np(y_true).astype(int)
    d = _decisions(y_pred, thresh) if sigmoid else (_np(y_pred) > np.asarray(thresh)).astype(int)
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


def f1_multilabel_macro(y_pred: torch.Tensor, y_true: torch.Tensor, thresh: float = 0.5, **kwargs: Any) -> float:
    """Macro-F1 over labels of sigmoid outputs thresholded at `thresh`: sklearn `f1_score(average="macro",
    zero_division=0)`, which averages over every label, so a label with no positive and no prediction counts 0.

    Args:
        y_pred: (n, c) logits of the whole set.
        y_true: (n, c) 0/1 targets.
        thresh: probability threshold, a float or one per label.
        **kwargs: options this metric does not take, ignored (one call can serve several metrics).
    """
    return float(skm.f1_score(_np(y_true).astype(int), _decisions(y_pred, thresh), average="macro", zero_division=0))


def f1_multilabel_micro(y_pred: torch.Tensor, y_true: torch.Tensor, thresh: float = 0.5, **kwargs: Any) -> float:
    """Micro-F1 over all (row, label) decisions of sigmoid outputs thresholded at `thresh` (sklearn
    `f1_score(average="micro")`).

    Args:
        y_pred: (n, c) logits of the whole set.
        y_true: (n, c) 0/1 targets.
        thresh: probability threshold, a float or one per label.
        **kwargs: options this metric does not take, ignored (one call can serve several metrics).
    """
    return float(skm.f1_score(_np(y_true).astype(int), _decisions(y_pred, thresh), average="micro", zero_division=0))


def f1_per_label(y_pred: torch.Tensor, y_true: torch.Tensor, thresh: float = 0.5, **kwargs: Any) -> np.ndarray:
    """F1 of each label (array in label order) at `thresh` (sklearn `f1_score(average=None, zero_division=0)`).

    Args:
        y_pred: (n, c) logits of the whole set.
        y_true: (n, c) 0/1 targets.
        thresh: probability threshold, a float or one per label.
        **kwargs: options this metric does not take, ignored (one call can serve several metrics).
    """
    return skm.f1_score(_np(y_true).astype(int), _decisions(y_pred, thresh), average=None, zero_division=0)


def roc_auc_micro(y_pred: torch.Tensor, y_true: torch.Tensor, **kwargs: Any) -> float:
    """Micro-averaged ROC AUC of sigmoid outputs over every (row, label) score: sklearn
    `roc_auc_score(average="micro")`, which is fast-bert's `roc_auc`. NaN where undefined (sklearn raises): all
    targets 0, or all 1.

    Args:
        y_pred: (n, c) logits of the whole set.
        y_true: (n, c) 0/1 targets.
        **kwargs: options this metric does not take, ignored (one call can serve several metrics).
    """
    t, probs = _np(y_true).astype(int), _np(y_pred.float().sigmoid())
    if len(np.unique(t)) < 2:
        return float("nan")
    return float(skm.roc_auc_score(t.ravel(), probs.ravel()))


def roc_auc_macro(y_pred: torch.Tensor, y_true: torch.Tensor, **kwargs: Any) -> float:
    """Macro-averaged ROC AUC of sigmoid outputs: the mean of sklearn's per-label AUC over the labels that have
    both positives and negatives in y_true. sklearn's `roc_auc_score(average="macro")` raises instead when a label
    has one class only (common for rare labels in a validation set); NaN when no label has both.

    Args:
        y_pred: (n, c) logits of the whole set.
        y_true: (n, c) 0/1 targets.
        **kwargs: options this metric does not take, ignored (one call can serve several metrics).
    """
    t, probs = _np(y_true).astype(int), _np(y_pred.float().sigmoid())
    present = (t.sum(0) > 0) & (t.sum(0) < len(t))  # AUC is undefined for labels that never / always occur
    if not present.any():
        return float("nan")
    return float(skm.roc_auc_score(t[:, present], probs[:, present], average="macro"))


def hamming_loss(y_pred: torch.Tensor, y_true: torch.Tensor, thresh: float = 0.5, **kwargs: Any) -> float:
    """Share of wrong (row, label) decisions at `thresh` (sklearn `hamming_loss`).

    Args:
        y_pred: (n, c) logits of the whole set.
        y_true: (n, c) 0/1 targets.
        thresh: probability threshold, a float or one per label.
        **kwargs: options this metric does not take, ignored (one call can serve several metrics).
    """
    return float(skm.hamming_loss(_np(y_true).astype(int), _decisions(y_pred, thresh)))


def exact_match(y_pred: torch.Tensor, y_true: torch.Tensor, thresh: float = 0.5, **kwargs: Any) -> float:
    """Share of rows whose whole label set is right at `thresh` (subset accuracy: sklearn `accuracy_score`).

    Args:
        y_pred: (n, c) logits of the whole set.
        y_true: (n, c) 0/1 targets.
        thresh: probability threshold, a float or one per label.
        **kwargs: options this metric does not take, ignored (one call can serve several metrics).
    """
    return float((_decisions(y_pred, thresh) == _np(y_true).astype(int)).all(axis=1).mean())


# --- fast-bert's multi-label names, with its signatures and defaults ---

def F1(y_pred: torch.Tensor, y_true: torch.Tensor, threshold: float = 0.5, **kwargs: Any) -> float:  # noqa: N802
    """fast-bert's `F1`: `fbeta` with beta 1 at `threshold`, averaged over rows (multi-label).

    Args:
        y_pred: (n, c) logits of the whole set.
        y_true: (n, c) 0/1 targets.
        threshold: probability threshold.
        **kwargs: options this metric does not take, ignored.
    """
    return fbeta(y_pred, y_true, thresh=threshold, beta=1.0)


def Hamming_loss(y_pred: torch.Tensor, y_true: torch.Tensor, sigmoid: bool = True, thresh: float = 0.5,  # noqa: N802
                 sample_weight: Any = None, **kwargs: Any) -> float:
    """fast-bert's `Hamming_loss`: sklearn `hamming_loss` of the outputs thresholded at `thresh`.

    Args:
        y_pred: (n, c) logits (probabilities with `sigmoid=False`).
        y_true: (n, c) 0/1 targets.
        sigmoid: apply a sigmoid first.
        thresh: probability threshold.
        sample_weight: per-row weights.
        **kwargs: options this metric does not take, ignored.
    """
    probs = _np(y_pred.float().sigmoid() if sigmoid else y_pred.float())
    return float(skm.hamming_loss(_np(y_true).astype(int), (probs > np.asarray(thresh)).astype(int),
                                  sample_weight=sample_weight))


def Exact_Match_Ratio(y_pred: torch.Tensor, y_true: torch.Tensor, sigmoid: bool = True, thresh: float = 0.5,  # noqa: N802
                      normalize: bool = True, sample_weight: Any = None, **kwargs: Any) -> float:
    """fast-bert's `Exact_Match_Ratio`: sklearn `accuracy_score` (subset accuracy) of the thresholded outputs.

    Args:
        y_pred: (n, c) logits (probabilities with `sigmoid=False`).
        y_true: (n, c) 0/1 targets.
        sigmoid: apply a sigmoid first.
        thresh: probability threshold.
        normalize: the share (True) or the count (False) of exactly right rows.
        sample_weight: per-row weights.
        **kwargs: options this metric does not take, ignored.
    """
    probs = _np(y_pred.float().sigmoid() if sigmoid else y_pred.float())
    return float(skm.accuracy_score(_np(y_true).astype(int), (probs > np.asarray(thresh)).astype(int),
                                    normalize=normalize, sample_weight=sample_weight))


# --- regression: y_pred (n, 1), y_true (n,) ---

def _reg(y_pred: torch.Tensor, y_true: torch.Tensor) -> tuple[np.ndarray, np.ndarray]:
    return _np(y_pred).reshape(-1), _np(y_true).reshape(-1)


def mse(y_pred: torch.Tensor, y_true: torch.Tensor, **kwargs: Any) -> float:
    """Mean squared error (sklearn `mean_squared_error`).

    Args:
        y_pred: (n, 1) predictions of the whole set.
        y_true: (n,) targets.
        **kwargs: options this metric does not take, ignored (one call can serve several metrics).
    """
    p, t = _reg(y_pred, y_true)
    return float(np.mean((p - t) ** 2))


def mae(y_pred: torch.Tensor, y_true: torch.Tensor, **kwargs: Any) -> float:
    """Mean absolute error (sklearn `mean_absolute_error`).

    Args:
        y_pred: (n, 1) predictions of the whole set.
        y_true: (n,) targets.
        **kwargs: options this metric does not take, ignored (one call can serve several metrics).
    """
    p, t = _reg(y_pred, y_true)
    return float(np.mean(np.abs(p - t)))


def pearson(y_pred: torch.Tensor, y_true: torch.Tensor, **kwargs: Any) -> float:
    """Pearson correlation of predictions and targets (SciPy `pearsonr`; NaN where either is constant, where SciPy
    warns and gives NaN).

    Args:
        y_pred: (n, 1) predictions of the whole set.
        y_true: (n,) targets.
        **kwargs: options this metric does not take, ignored (one call can serve several metrics).
    """
    p, t = _reg(y_pred, y_true)
    return float(scipy.stats.pearsonr(p, t)[0]) if len(p) > 1 and p.std() > 0 and t.std() > 0 else float("nan")


def spearman(y_pred: torch.Tensor, y_true: torch.Tensor, **kwargs: Any) -> float:
    """Spearman rank correlation of predictions and targets (SciPy `spearmanr`; NaN where either is constant).

    Args:
        y_pred: (n, 1) predictions of the whole set.
        y_true: (n,) targets.
        **kwargs: options this metric does not take, ignored (one call can serve several metrics).
    """
    p, t = _reg(y_pred, y_true)
    return float(scipy.stats.spearmanr(p, t)[0]) if len(p) > 1 and p.std() > 0 and t.std() > 0 else float("nan")


def _as_value(out: Any) -> Any:
    """A metric function's result as validation reports it: a float, or an array for per-class metrics."""
    if isinstance(out, torch.Tensor):
        out = out.item() if out.numel() == 1 else out.numpy()
    return float(out) if np.ndim(out) == 0 else out


class DeviceAccumMetric(Metric):
    """A fastai metric that gathers predictions on the device and scores the whole set once.

    Args:
        func: `func(y_pred, y_true)` on CPU tensors of the whole set, returning a number or 0-d tensor.
        name: the column name in fastai's table and in `validate()`'s dict.
    """

    def __init__(self, func: Callable, name: str | None = None):
        self.func, self._name = func, name or getattr(func, "__name__", "metric")
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
        self.preds.append(learn.pred.detach())
        self.targs.append(learn.yb[0].detach())
        self._cached = None

    def _all(self) -> tuple[torch.Tensor, torch.Tensor] | None:
        from .distributed import gather_objects, rank_world
        local = (torch.cat(self.preds).float().cpu(), torch.cat(self.targs).cpu()) if self.preds else None
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


def to_fastai_metrics(metrics: Sequence[Any] | None) -> list[Metric]:
    """Turn fast-bert metric dicts, plain functions and fastai metrics into fastai metrics.

    Args:
        metrics: items of the form `{'name': str, 'function': f}`, functions `f(y_pred, y_true)`,
            or fastai `Metric` instances (kept as they are).
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
            out.append(DeviceAccumMetric(m["function"], m.get("name")))
        elif isinstance(m, Metric):
            out.append(m)
        elif callable(m):
            out.append(DeviceAccumMetric(m))
        elif isinstance(m, str) and callable(globals().get(m)) and m in __all__:
            raise BertLearnError(f"metrics item {m!r} is a name; pass the function: from bertlearn.metrics import "
                                 f"{m}, then metrics=[{{'name': '{m}', 'function': {m}}}] or [{m}]")
        else:
            raise BertLearnError(f"metrics items must be dicts {{'name': ..., 'function': f}}, functions or fastai "
                                 f"Metrics; got {type(m).__name__} {m!r}")
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
    n = 2 if multi or problem_type == "regression" else max(2, n_outputs)
    # every class present (single-label), every label both on and off (multi-label), distinct values (regression):
    # what a metric needs of a real validation set
    if multi:
        values = np.stack([np.ones(n_outputs), np.zeros(n_outputs)])
    elif problem_type == "regression":
        values = np.arange(n, dtype=np.float64)
    else:
        values = np.arange(n) % n_outputs
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
