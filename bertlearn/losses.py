"""Loss functions: fastai's flattened losses, computed on plain tensors.

fastai's `BaseLoss` wraps the prediction and the target in its `TensorBase` subclass before calling the PyTorch
loss, so the loss it returns, and every operation on it afterwards (the copy fastai keeps, the backward call, the
smoothed loss), goes through `TensorBase.__torch_function__`, a Python dispatch per operation. On a 2-core CPU
that cost MiniLM's `fit` 1.3% of each epoch (two learners timed in one process); on a GPU, where the step is
host-bound, any Python per operation counts more. These subclasses keep everything fastai uses (`activation`, `decodes`,
`thresh`, `y_int`, `reduction`, pickling for `export`) and return a plain `torch.Tensor`.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from fastai.losses import BaseLoss
from fastai.losses import BCEWithLogitsLossFlat as _BCEWithLogitsLossFlat
from fastai.losses import CrossEntropyLossFlat as _CrossEntropyLossFlat
from torch import nn

__all__ = ["CrossEntropyLoss", "CrossEntropyLossFlat", "BCEWithLogitsLossFlat", "MSELossFlat", "PlainTensorLoss", "loss_denominator"]


def _plain(x: Any) -> Any:
    return x.as_subclass(torch.Tensor) if isinstance(x, torch.Tensor) and type(x) is not torch.Tensor else x


class PlainTensorLoss(BaseLoss):
    """fastai's `BaseLoss` (move the class axis last, flatten, cast the target) on plain tensors: a subclass
    such as fastai's `TensorBase` coming in is unwrapped, and nothing is wrapped on the way out.

    Args:
        loss_cls: an uninitialised PyTorch loss (`nn.MSELoss`...).
        *args: its positional arguments.
        axis, flatten, floatify, is_2d: as for fastai's `BaseLoss`.
        **kwargs: its keyword arguments.
    """

    def _contiguous(self, x: Any) -> Any:
        return _plain(x.transpose(self.axis, -1).contiguous()) if isinstance(x, torch.Tensor) else x


def _counted(weight: torch.Tensor | None, ignore_index: int, target: torch.Tensor) -> torch.Tensor:
    """What a mean cross-entropy divides class-index `target`'s summed losses by: the summed class `weight`s of
    the targets not `ignore_index`, else their number (PyTorch's rule)."""
    t = target.reshape(-1)
    counted = t != ignore_index
    if weight is None:
        return counted.sum()
    # ignored targets index row 0, then count nothing: ignore_index may be any number, past the classes too
    return (weight.to(t.device)[t.masked_fill(~counted, 0)] * counted).sum()


class CrossEntropyLoss(nn.CrossEntropyLoss):
    """`nn.CrossEntropyLoss` whose mean over nothing is 0, not NaN: a batch whose targets all weigh 0 (a class
    weight of 0) or are all `ignore_index` counts nothing, and PyTorch's 0 / 0 would turn the step's gradients
    (the whole accumulated step's) and the weights after it into NaN. Otherwise the same value as PyTorch's."""

    def forward(self, input: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        """The cross-entropy of `input` against `target`, reduced as `self.reduction` says.

        Args:
            input: (n, c) logits.
            target: (n,) class indices (or (n, c) probabilities).
        """
        if self.reduction != "mean" or target.is_floating_point():  # soft targets: a mean over rows
            return super().forward(input, target)
        total = F.cross_entropy(input, target, weight=self.weight, ignore_index=self.ignore_index, reduction="sum",
                                label_smoothing=self.label_smoothing)
        n = _counted(self.weight, self.ignore_index, target)
        return total / torch.where(n > 0, n, torch.ones_like(n))  # on the device: no host read


class CrossEntropyLossFlat(PlainTensorLoss, _CrossEntropyLossFlat):
    """fastai's `CrossEntropyLossFlat` (softmax activation, argmax decoding) returning a plain tensor; a batch
    with nothing to count (all its targets ignored or of class weight 0) has loss 0 and no gradient, not NaN.

    Args:
        *args, axis, **kwargs: as for fastai's `CrossEntropyLossFlat` (weight, ignore_index, reduction...).
    """

    def __init__(self, *args: Any, axis: int = -1, **kwargs: Any) -> None:
        kwargs = {"weight": None, "ignore_index": -100, "reduction": "mean", **kwargs}
        BaseLoss.__init__(self, CrossEntropyLoss, *args, axis=axis, **kwargs)


class BCEWithLogitsLossFlat(PlainTensorLoss, _BCEWithLogitsLossFlat):
    """fastai's `BCEWithLogitsLossFlat` (sigmoid activation, `thresh` decoding) returning a plain tensor.

    Args:
        *args, axis, floatify, thresh, **kwargs: as for fastai's `BCEWithLogitsLossFlat` (pos_weight...).
    """


def MSELossFlat(*args: Any, axis: int = -1, floatify: bool = True, **kwargs: Any) -> PlainTensorLoss:  # noqa: N802
    """fastai's `MSELossFlat` returning a plain tensor.

    Args:
        *args, axis, floatify, **kwargs: as for fastai's `MSELossFlat` (reduction...).
    """
    return PlainTensorLoss(nn.MSELoss, *args, axis=axis, floatify=floatify, is_2d=False, **kwargs)


def loss_denominator(loss_func: Any, target: Any) -> torch.Tensor | None:
    """What `loss_func`'s mean divided `target`'s losses by, where that is not the row count: for a cross-entropy
    the summed class `weight`s of the targets it counted (those not `ignore_index`), else their number; None for
    other losses (and soft targets), whose mean is over rows; a loss with a `denominator(target)` method says its
    own. A set's mean loss is then sum(loss x denominator) /
    sum(denominators), as PyTorch computes it over the whole set.

    Args:
        loss_func: the learner's loss (fastai's flattened losses keep the PyTorch loss in `func`).
        target: one batch's target.
    """
    own = getattr(loss_func, "denominator", None)
    if callable(own) and isinstance(target, torch.Tensor):  # a loss that says its own (the masked-LM loss)
        return own(target)
    func = getattr(loss_func, "func", loss_func)
    if not isinstance(func, nn.CrossEntropyLoss) or func.reduction != "mean" or not isinstance(target, torch.Tensor) \
            or target.is_floating_point():
        return None
    return _counted(func.weight, func.ignore_index, _plain(target))
