"""fast-bert's learning-rate schedules, as fastai schedules: a linear warm-up, then cosine, linear or constant.

`BertLearner.fit` runs fastai's one-cycle by default; `fit(..., schedule_type="warmup_cosine")` (fast-bert's
default) and its siblings run the schedule fast-bert took from Hugging Face: the rate climbs linearly from 0 to
`lr` over the warm-up steps, then follows the named shape to the end of the fit. `WarmupSchedule` sets it before
each training batch from the batch's position in the fit (0 to 1), as fastai's `ParamScheduler` does, scaling
each parameter group's own peak rate (a slice or `layer_decay` gives groups different peaks).
"""

from __future__ import annotations

import math
import warnings
from typing import Any, Callable

from fastai.callback.core import Callback
from fastai.callback.schedule import ParamScheduler

from .errors import BertLearnError

__all__ = ["SCHEDULE_TYPES", "FLAT", "ONE_CYCLE", "warmup_schedule", "WarmupSchedule", "StepParamScheduler",
           "fresh_momentum"]

FLAT = ("none", "constant")
ONE_CYCLE = ("one_cycle",)
_AFTER_WARMUP: dict[str, Callable[[float], float]] = {
    "warmup_linear": lambda progress: max(0.0, 1.0 - progress),
    "warmup_cosine": lambda progress: 0.5 * (1.0 + math.cos(math.pi * progress)),
    # Hugging Face's hard-restart cosine with fast-bert's one cycle: the same curve as warmup_cosine
    # (at the end it is 0, as transformers' is: progress % 1.0 restarted it at the peak)
    "warmup_cosine_hard_restarts": lambda progress: 0.0 if progress >= 1.0 else
    0.5 * (1.0 + math.cos(math.pi * (progress % 1.0))),
    "warmup_constant": lambda progress: 1.0,
}
SCHEDULE_TYPES = (*ONE_CYCLE, *FLAT, *_AFTER_WARMUP)


def warmup_schedule(lr: Any, schedule_type: str, warmup: float) -> Callable[[float], Any]:
    """The rate at each position `pos` (0 to 1) of a fit: linear from 0 to `lr` over the first `warmup` of the fit,
    then `lr` times the schedule's shape over the rest.

    Args:
        lr: the peak rate (a float, or an array of per-group rates).
        schedule_type: one of "warmup_linear", "warmup_cosine", "warmup_cosine_hard_restarts", "warmup_constant".
        warmup: the share of the fit spent warming up (above 1: a warm-up longer than the fit).
    """
    if schedule_type not in _AFTER_WARMUP:
        raise BertLearnError(f"schedule_type={schedule_type!r} is not one of {list(SCHEDULE_TYPES)}")
    shape = _AFTER_WARMUP[schedule_type]

    def rate(pos: float) -> Any:
        if pos < warmup:
            return lr * (pos / warmup)
        return lr * shape((pos - warmup) / (1.0 - warmup) if warmup < 1.0 else 1.0)

    return rate


class WarmupSchedule(Callback):
    """Before each training batch, set every parameter group's rate to its peak (what `fit(lr=...)` gave it)
    times the schedule's factor at the fit's position in optimizer steps, as transformers' schedules count: with
    gradient accumulation the batches of one step share the rate of that step (counted by batches, the rate of
    step k was that of step k + (n-1)/n, and the peak was never applied). The optimizer's momentum starts at its
    default, not where an earlier one-cycle fit left it.

    Args:
        schedule_type: one of the "warmup_*" schedules.
        warmup: the share of the fit spent warming up (above 1: a warm-up longer than the fit, which the rate
            climbs without reaching its peak, as in transformers).
        accumulate: batches per optimizer step.
    """

    order, run_valid = 60, False  # where fastai's ParamScheduler runs

    def __init__(self, schedule_type: str, warmup: float, accumulate: int = 1):
        self.factor = warmup_schedule(1.0, schedule_type, warmup)
        self.accumulate = max(int(accumulate), 1)

    def before_fit(self) -> None:
        self.peaks = [h["lr"] for h in self.opt.hypers]
        self.steps = max(self.n_epoch * len(self.dls.train) // self.accumulate, 1)
        if "mom" in self.opt.hypers[0]:
            # what the optimizer started with (recorded by TaskLearner.create_opt); a plain fastai Learner's from
            # its opt_func's signature
            moms = getattr(self.opt, "start_moms", None)
            if not moms or None in moms or len(moms) != len(self.opt.hypers):
                moms = fresh_momentum(self.learn.opt_func)
            self.opt.set_hyper("mom", moms)

    def before_batch(self) -> None:
        # counted from the epoch, not train_iter: fastai restarts train_iter at 0 in every fit, and a resumed fit's
        # skipped epochs run no batches, so the warm-up began again
        done = (int(self.epoch) * int(self.n_iter) + int(self.iter)) // self.accumulate
        factor = self.factor(min(done / self.steps, 1.0))
        self.opt.set_hyper("lr", [peak * factor for peak in self.peaks])


class StepParamScheduler(ParamScheduler):
    """fastai's `ParamScheduler` (one-cycle's schedules) at the fit's position in optimizer steps: with gradient
    accumulation fastai's position counts batches, so each step ran at its last batch's rate (n batches a step: the
    first step at one-cycle's peak, no warm-up, and the peak never reached with a short warm-up), as `WarmupSchedule`
    counts its own.

    Args:
        scheds: the hyper-parameters' schedules, as `ParamScheduler` takes them.
        accumulate: batches per optimizer step.
    """

    def __init__(self, scheds: dict, accumulate: int = 1):
        super().__init__(scheds)
        self.accumulate = max(int(accumulate), 1)

    def before_batch(self) -> None:
        steps = max(self.n_epoch * self.n_iter // self.accumulate, 1)
        done = (int(self.epoch) * int(self.n_iter) + int(self.iter)) // self.accumulate
        self._update_val(min(done / steps, 1.0))


def fresh_momentum(opt_func: Any) -> float:
    """The momentum (Adam's beta1) a new optimizer from `opt_func` starts with: its `mom` default, else PyTorch
    AdamW's 0.9 (with a warning: that is a guess).

    Args:
        opt_func: a fastai `opt_func`.
    """
    import inspect
    try:
        default = inspect.signature(opt_func).parameters["mom"].default
    except (KeyError, TypeError, ValueError):
        default = inspect.Parameter.empty
    if default is inspect.Parameter.empty:
        warnings.warn(f"the warm-up schedule starts the momentum at 0.9 (AdamW's beta1): opt_func={opt_func!r} "
                      "has no `mom` default to read the optimizer's own from; give it one (e.g. "
                      "functools.partial(Adam, mom=0.95)) or build the learner with bertlearn, whose optimizers "
                      "record it", stacklevel=2)
        return 0.9
    return float(default)
