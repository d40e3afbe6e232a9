"""Metrics usable both the fast-bert way (`{'name': ..., 'function': f(y_pred, y_true)}`) and as fastai metrics.

A metric function takes the logits and targets of the whole validation set. `DeviceAccumMetric` keeps
the per-batch tensors on the device during validation (fastai's `AvgMetric` copies each batch to the CPU,
a host-device sync per batch) and hands the concatenated CPU tensors to the function once at the end.
"""

from __future__ import annotations

from typing import Any, Callable, Sequence

import numpy as np
import scipy.stats
import sklearn.metrics as skm
import torch
from fastai.learner import Metric

__all__ = ["accuracy", "f1", "f1_macro", "f1_micro", "f1_weighted", "precision", "precision_macro", "recall",
           "recall_macro", "f1_per_class", "matthews_corrcoef", "confusion_matrix", "roc_auc",
           "accuracy_multilabel", "accuracy_thresh", "fbeta", "f1_multilabel_macro", "f1_multilabel_micro",
           "f1_per_label", "roc_auc_micro", "roc_auc_macro", "hamming_loss", "exact_match",
           "mse", "mae", "pearson", "spearman",
           "DeviceAccumMetric", "to_fastai_metrics", "default_metrics", "evaluate"]


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


def _single(fn: Callable, name: str, **fixed: Any) -> Callable:
    def metric(y_pred: torch.Tensor, y_true: torch.Tensor, **kwargs: Any) -> float:
        t, p, labels = _classes(y_pred, y_true)
        return float(fn(t, p, labels=labels, zero_division=0, **fixed))
    metric.__name__ = metric.__qualname__ = name
    metric.__doc__ = (f"{name.replace('_', ' ')} of the argmax class (sklearn `{fn.__name__}`, {fixed}).\n\n"
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
    """F1 of the argmax class with sklearn's `average` ('macro', 'micro', 'weighted').

    Args:
        y_pred: (n, c) logits (or probabilities) of the whole set.
        y_true: (n,) class indices.
        average: sklearn's average: 'macro', 'micro' or 'weighted'.
        **kwargs: options this metric does not take, ignored (one call can serve several metrics).
    """
    t, p, labels = _classes(y_pred, y_true)
    return float(skm.f1_score(t, p, labels=labels, average=average, zero_division=0))


def precision(y_pred: torch.Tensor, y_true: torch.Tensor, average: str = "macro", **kwargs: Any) -> float:
    """Precision of the argmax class with sklearn's `average`.

    Args:
        y_pred: (n, c) logits (or probabilities) of the whole set.
        y_true: (n,) class indices.
        average: sklearn's average: 'macro', 'micro' or 'weighted'.
        **kwargs: options this metric does not take, ignored (one call can serve several metrics).
    """
    t, p, labels = _classes(y_pred, y_true)
    return float(skm.precision_score(t, p, labels=labels, average=average, zero_division=0))


def recall(y_pred: torch.Tensor, y_true: torch.Tensor, average: str = "macro", **kwargs: Any) -> float:
    """Recall of the argmax class with sklearn's `average`.

    Args:
        y_pred: (n, c) logits (or probabilities) of the whole set.
        y_true: (n,) class indices.
        average: sklearn's average: 'macro', 'micro' or 'weighted'.
        **kwargs: options this metric does not take, ignored (one call can serve several metrics).
    """
    t, p, labels = _classes(y_pred, y_true)
    return float(skm.recall_score(t, p, labels=labels, average=average, zero_division=0))


def f1_per_class(y_pred: torch.Tensor, y_true: torch.Tensor, **kwargs: Any) -> np.ndarray:
    """F1 of each class (array in label order) for single-label tasks.

    Args:
        y_pred: (n, c) logits (or probabilities) of the whole set.
        y_true: (n,) class indices.
        **kwargs: options this metric does not take, ignored (one call can serve several metrics).
    """
    t, p, labels = _classes(y_pred, y_true)
    return skm.f1_score(t, p, labels=labels, average=None, zero_division=0)


def matthews_corrcoef(y_pred: torch.Tensor, y_true: torch.Tensor, **kwargs: Any) -> float:
    """Matthews correlation of the argmax class.

    Args:
        y_pred: (n, c) logits (or probabilities) of the whole set.
        y_true: (n,) class indices.
        **kwargs: options this metric does not take, ignored (one call can serve several metrics).
    """
    t, p, _ = _classes(y_pred, y_true)
    return float(skm.matthews_corrcoef(t, p))


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
    """ROC AUC of softmax probabilities: binary on class 1, else one-vs-rest macro. NaN if undefined.

    Args:
        y_pred: (n, c) logits of the whole set.
        y_true: (n,) class indices.
        **kwargs: options this metric does not take, ignored (one call can serve several metrics).
    """
    probs = _np(y_pred.float().softmax(dim=-1))
    t = _np(y_true).astype(int).reshape(-1)
    try:
        if probs.shape[1] == 2:
            return float(skm.roc_auc_score(t, probs[:, 1]))
        return float(skm.roc_auc_score(t, probs, multi_class="ovr", average="macro", labels=list(range(probs.shape[1]))))
    except ValueError:  # a class absent from y_true
        return float("nan")


# --- multi-label: y_pred (n, c) logits, y_true (n, c) 0/1 ---

def accuracy_multilabel(y_pred: torch.Tensor, y_true: torch.Tensor, thresh: float = 0.5, sigmoid: bool = True,
                        **kwargs: Any) -> torch.Tensor:
    """Share of (row, label) decisions that are right, thresholding sigmoid outputs at `thresh`.

    Args:
        y_pred: (n, c) logits (or probabilities with `sigmoid=False`).
        y_true: (n, c) 0/1 targets.
        thresh: decision threshold on probabilities.
        sigmoid: apply a sigmoid to `y_pred` first.
    """
    probs = y_pred.sigmoid() if sigmoid else y_pred
    return ((probs > thresh) == y_true.bool()).float().mean()


accuracy_thresh = accuracy_multilabel


def _decisions(y_pred: torch.Tensor, thresh: Any) -> np.ndarray:
    return (_np(y_pred.float().sigmoid()) > np.asarray(thresh)).astype(int)


def fbeta(y_pred: torch.Tensor, y_true: torch.Tensor, beta: float = 2.0, thresh: float = 0.5,
          average: str = "samples", **kwargs: Any) -> float:
    """F-beta of thresholded sigmoid outputs (fast-bert's `fbeta`: beta 2, averaged over samples).

    Args:
        y_pred: (n, c) logits of the whole set.
        y_true: (n, c) 0/1 targets.
        beta: weight of recall.
        thresh: probability threshold, a float or one per label.
        average: sklearn's average: 'samples', 'micro' or 'macro'.
        **kwargs: options this metric does not take, ignored (one call can serve several metrics).
    """
    return float(skm.fbeta_score(_np(y_true).astype(int), _decisions(y_pred, thresh), beta=beta, average=average,
                                 zero_division=0))


def f1_multilabel_macro(y_pred: torch.Tensor, y_true: torch.Tensor, thresh: float = 0.5, **kwargs: Any) -> float:
    """Macro-F1 over labels of sigmoid outputs thresholded at `thresh`.

    Args:
        y_pred: (n, c) logits of the whole set.
        y_true: (n, c) 0/1 targets.
        thresh: probability threshold, a float or one per label.
        **kwargs: options this metric does not take, ignored (one call can serve several metrics).
    """
    return float(skm.f1_score(_np(y_true).astype(int), _decisions(y_pred, thresh), average="macro", zero_division=0))


def f1_multilabel_micro(y_pred: torch.Tensor, y_true: torch.Tensor, thresh: float = 0.5, **kwargs: Any) -> float:
    """Micro-F1 over all (row, label) decisions of sigmoid outputs thresholded at `thresh`.

    Args:
        y_pred: (n, c) logits of the whole set.
        y_true: (n, c) 0/1 targets.
        thresh: probability threshold, a float or one per label.
        **kwargs: options this metric does not take, ignored (one call can serve several metrics).
    """
    return float(skm.f1_score(_np(y_true).astype(int), _decisions(y_pred, thresh), average="micro", zero_division=0))


def f1_per_label(y_pred: torch.Tensor, y_true: torch.Tensor, thresh: float = 0.5, **kwargs: Any) -> np.ndarray:
    """F1 of each label (array in label order) at `thresh`.

    Args:
        y_pred: (n, c) logits of the whole set.
        y_true: (n, c) 0/1 targets.
        thresh: probability threshold, a float or one per label.
        **kwargs: options this metric does not take, ignored (one call can serve several metrics).
    """
    return skm.f1_score(_np(y_true).astype(int), _decisions(y_pred, thresh), average=None, zero_division=0)


def _auc_multilabel(y_pred: torch.Tensor, y_true: torch.Tensor, average: str) -> float:
    t, probs = _np(y_true).astype(int), _np(y_pred.float().sigmoid())
    present = (t.sum(0) > 0) & (t.sum(0) < len(t))  # AUC is undefined for labels that never / always occur
    if not present.any():
        return float("nan")
    return float(skm.roc_auc_score(t[:, present], probs[:, present], average=average))


def roc_auc_micro(y_pred: torch.Tensor, y_true: torch.Tensor, **kwargs: Any) -> float:
    """Micro-averaged ROC AUC of sigmoid outputs (labels with a single class in y_true left out).

    Args:
        y_pred: (n, c) logits of the whole set.
        y_true: (n, c) 0/1 targets.
        **kwargs: options this metric does not take, ignored (one call can serve several metrics).
    """
    return _auc_multilabel(y_pred, y_true, "micro")


def roc_auc_macro(y_pred: torch.Tensor, y_true: torch.Tensor, **kwargs: Any) -> float:
    """Macro-averaged ROC AUC of sigmoid outputs (labels with a single class in y_true left out).

    Args:
        y_pred: (n, c) logits of the whole set.
        y_true: (n, c) 0/1 targets.
        **kwargs: options this metric does not take, ignored (one call can serve several metrics).
    """
    return _auc_multilabel(y_pred, y_true, "macro")


def hamming_loss(y_pred: torch.Tensor, y_true: torch.Tensor, thresh: float = 0.5, **kwargs: Any) -> float:
    """Share of wrong (row, label) decisions at `thresh`.

    Args:
        y_pred: (n, c) logits of the whole set.
        y_true: (n, c) 0/1 targets.
        thresh: probability threshold, a float or one per label.
        **kwargs: options this metric does not take, ignored (one call can serve several metrics).
    """
    return float(skm.hamming_loss(_np(y_true).astype(int), _decisions(y_pred, thresh)))


def exact_match(y_pred: torch.Tensor, y_true: torch.Tensor, thresh: float = 0.5, **kwargs: Any) -> float:
    """Share of rows whose whole label set is right at `thresh` (subset accuracy).

    Args:
        y_pred: (n, c) logits of the whole set.
        y_true: (n, c) 0/1 targets.
        thresh: probability threshold, a float or one per label.
        **kwargs: options this metric does not take, ignored (one call can serve several metrics).
    """
    return float((_decisions(y_pred, thresh) == _np(y_true).astype(int)).all(axis=1).mean())


# --- regression: y_pred (n, 1), y_true (n,) ---

def _reg(y_pred: torch.Tensor, y_true: torch.Tensor) -> tuple[np.ndarray, np.ndarray]:
    return _np(y_pred).reshape(-1), _np(y_true).reshape(-1)


def mse(y_pred: torch.Tensor, y_true: torch.Tensor, **kwargs: Any) -> float:
    """Mean squared error.

    Args:
        y_pred: (n, 1) predictions of the whole set.
        y_true: (n,) targets.
        **kwargs: options this metric does not take, ignored (one call can serve several metrics).
    """
    p, t = _reg(y_pred, y_true)
    return float(np.mean((p - t) ** 2))


def mae(y_pred: torch.Tensor, y_true: torch.Tensor, **kwargs: Any) -> float:
    """Mean absolute error.

    Args:
        y_pred: (n, 1) predictions of the whole set.
        y_true: (n,) targets.
        **kwargs: options this metric does not take, ignored (one call can serve several metrics).
    """
    p, t = _reg(y_pred, y_true)
    return float(np.mean(np.abs(p - t)))


def pearson(y_pred: torch.Tensor, y_true: torch.Tensor, **kwargs: Any) -> float:
    """Pearson correlation of predictions and targets.

    Args:
        y_pred: (n, 1) predictions of the whole set.
        y_true: (n,) targets.
        **kwargs: options this metric does not take, ignored (one call can serve several metrics).
    """
    p, t = _reg(y_pred, y_true)
    return float(scipy.stats.pearsonr(p, t)[0]) if len(p) > 1 and p.std() > 0 else float("nan")


def spearman(y_pred: torch.Tensor, y_true: torch.Tensor, **kwargs: Any) -> float:
    """Spearman rank correlation of predictions and targets.

    Args:
        y_pred: (n, 1) predictions of the whole set.
        y_true: (n,) targets.
        **kwargs: options this metric does not take, ignored (one call can serve several metrics).
    """
    p, t = _reg(y_pred, y_true)
    return float(scipy.stats.spearmanr(p, t)[0]) if len(p) > 1 and p.std() > 0 else float("nan")


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
        out = self.func(preds, targs)
        if isinstance(out, torch.Tensor):
            out = out.item() if out.numel() == 1 else out.numpy()
        return float(out) if np.ndim(out) == 0 else out

    @property
    def name(self) -> str:
        return self._name


def to_fastai_metrics(metrics: Sequence[Any] | None) -> list[Metric]:
    """Turn fast-bert metric dicts, plain functions and fastai metrics into fastai metrics.

    Args:
        metrics: items of the form `{'name': str, 'function': f}`, functions `f(y_pred, y_true)`,
            or fastai `Metric` instances (kept as they are).
    """
    out = []
    for m in metrics or []:
        if isinstance(m, dict):
            if "function" not in m or not callable(m["function"]):
                raise TypeError(f"metric dict {m!r} needs a callable under 'function' (and a 'name')")
            out.append(DeviceAccumMetric(m["function"], m.get("name")))
        elif isinstance(m, Metric):
            out.append(m)
        elif callable(m):
            out.append(DeviceAccumMetric(m))
        else:
            raise TypeError(f"metrics items must be dicts, functions or fastai Metrics; got {type(m).__name__}")
    return out


def default_metrics(problem_type: str | bool) -> list[Metric]:
    """The metrics used when none are given, chosen by task (never binary F1 on a multi-class task).

    Args:
        problem_type: "single_label_classification", "multi_label_classification" or "regression"
            (True / False are read as multi-label / single-label).
    """
    if problem_type is True or problem_type == "multi_label_classification":
        return [DeviceAccumMetric(accuracy_multilabel, "accuracy_thresh"), DeviceAccumMetric(f1_multilabel_macro),
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
        thr_t = torch.as_tensor(thr, dtype=torch.float)
        out = {"accuracy_thresh": float(accuracy_multilabel(logits, y, thresh=thr_t)),
               "f1_micro": f1_multilabel_micro(logits, y, thresh=thr), "f1_macro": f1_multilabel_macro(logits, y, thresh=thr),
               "hamming_loss": hamming_loss(logits, y, thresh=thr), "exact_match": exact_match(logits, y, thresh=thr)}
        try:
            out.update(roc_auc_micro=roc_auc_micro(logits, y), roc_auc_macro=roc_auc_macro(logits, y))
        except ValueError:
            pass  # a label with one class only in this data: AUC undefined
        out["f1_per_label"] = dict(zip(labels, (float(v) for v in f1_per_label(logits, y, thresh=thr))))
        return out
    out = {"accuracy": float(accuracy(logits, y)), "f1_macro": f1(logits, y, "macro"),
           "f1_micro": f1(logits, y, "micro"), "f1_weighted": f1(logits, y, "weighted"),
           "precision_macro": precision(logits, y, "macro"), "recall_macro": recall(logits, y, "macro"),
           "matthews_corrcoef": matthews_corrcoef(logits, y)}
    try:
        out["roc_auc"] = roc_auc(logits, y)
    except ValueError:
        pass
    per = f1_per_class(logits, y)
    out["f1_per_label"] = dict(zip(labels, (float(v) for v in per)))
    return out
