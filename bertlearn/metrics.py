"""Metrics usable both the fast-bert way (`{'name': ..., 'function': f(y_pred, y_true)}`) and as fastai metrics.

A metric function takes the logits and targets of the whole validation set. `DeviceAccumMetric` keeps
the per-batch tensors on the device during validation (fastai's `AvgMetric` copies each batch to the CPU,
a host-device sync per batch) and hands the concatenated CPU tensors to the function once at the end.
"""

from __future__ import annotations

from typing import Any, Callable, Sequence

import torch
from fastai.learner import Metric

__all__ = ["accuracy", "accuracy_multilabel", "DeviceAccumMetric", "to_fastai_metrics", "default_metrics"]


def accuracy(y_pred: torch.Tensor, y_true: torch.Tensor, **kwargs: Any) -> torch.Tensor:
    """Share of rows whose highest logit is the true class.

    Args:
        y_pred: (n, c) logits or probabilities.
        y_true: (n,) class indices.
    """
    return (y_pred.argmax(dim=-1) == y_true.view(-1)).float().mean()


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
        self.preds, self.targs = [], []

    def accumulate(self, learn: Any) -> None:
        self.preds.append(learn.pred.detach())
        self.targs.append(learn.yb[0].detach())

    @property
    def value(self) -> float | None:
        if not self.preds:
            return None
        preds, targs = torch.cat(self.preds).float().cpu(), torch.cat(self.targs).cpu()
        out = self.func(preds, targs)
        return float(out) if not isinstance(out, (tuple, list, dict)) else out

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


def default_metrics(multi_label: bool) -> list[Metric]:
    """The metrics used when none are given: accuracy, per decision for multi-label."""
    if multi_label:
        return [DeviceAccumMetric(accuracy_multilabel, "accuracy_thresh")]
    return [DeviceAccumMetric(accuracy, "accuracy")]
