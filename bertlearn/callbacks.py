"""Callbacks that fit a Hugging Face model into fastai's loop without host-device syncs per batch.

fastai's defaults read a GPU value on every training batch in two places: `AvgSmoothLoss` copies the
loss to the CPU and `ProgressCallback` formats it with `.item()`. Either one makes the host wait for
the GPU each step, so it can never queue work ahead. The replacements here keep running values on the
device and read them only when a person could see them (a bar refresh, the end of an epoch).
"""

from __future__ import annotations

import logging
import math
import numbers
import os
import sys
import time
import warnings
import weakref
from typing import Any

import torch
from fastai.callback.core import Callback, CancelBatchException, CancelFitException, CancelValidException
from fastai.callback.progress import ProgressCallback
from fastai.callback.training import GradientAccumulation
from fastai.callback.training import GradientClip as _FastaiGradientClip
from fastai.learner import AvgLoss, AvgSmoothLoss
from fastai.torch_core import find_bs
from fastai.learner import noop  # the very object `no_logging()` swaps in (not fastcore.basics.noop)

from .device import native_bf16
from .distributed import rank_world
from .errors import BertLearnError, user_stacklevel
from .losses import loss_denominator

__all__ = ["HFOutputCallback", "SparseProgressCallback", "DeviceSmoothLoss", "DeviceAvgLoss", "EpochLoggerCallback",
           "SkipValidationCallback", "CheckpointCallback", "TensorBoardLogger", "BF16Autocast",
           "mixed_precision", "GradientClip", "interactive_output", "log_except_console", "FitSummary",
           "FitWatchdog", "fit_description", "StepAccumulation"]


class HFOutputCallback(Callback):
    """Replace the model's `ModelOutput` by its logits, so fastai's losses and metrics see a tensor."""

    order = -5  # before MixedPrecision (10) casts the prediction

    def after_pred(self) -> None:
        logits = getattr(self.pred, "logits", None)
        if logits is not None:
            self.learn.pred = logits


class BF16Autocast(Callback):
    """Run the forward pass and loss under bfloat16 autocast, on CUDA or CPU; weights, gradients and the
    optimizer stay float32.

    fastai's `MixedPrecision` always steps through a `GradScaler`, whose inf check and scale read copy a GPU
    value to the host every step. bf16 has float32's exponent range and needs no loss scaling, so this
    callback has no per-step host work at all.

    Args:
        device_type: "cuda" or "cpu".
    """

    order = 10  # where MixedPrecision sits: after HFOutputCallback unwraps the logits

    def __init__(self, device_type: str = "cuda"):
        self.device_type = device_type
        self._ctx: Any = None

    def before_batch(self) -> None:
        self._ctx = torch.autocast(self.device_type, dtype=torch.bfloat16)
        self._ctx.__enter__()

    def after_pred(self) -> None:
        self.learn.pred = self.pred.float()  # losses and metrics in float32

    def after_loss(self) -> None:
        self.leave()

    def after_cancel_batch(self) -> None:
        self.leave()

    def after_fit(self) -> None:
        self.leave()

    def leave(self) -> None:
        """Leave the batch's autocast if it is still entered (an error or interrupt in the forward pass skips
        `after_loss`; `TaskLearner` calls this then, so the thread does not go on computing in bf16)."""
        if self._ctx is not None:
            ctx, self._ctx = self._ctx, None
            ctx.__exit__(None, None, None)


def mixed_precision(device: torch.device | str, *, say: bool = True) -> Callback | None:
    """The mixed-precision callback for `device`: `BF16Autocast` where bf16 is native, fastai's fp16
    `MixedPrecision` (with loss scaling) on older GPUs, None with a warning on CPUs without bf16 hardware.

    Args:
        device: the device the learner trains on.
        say: give that warning (it names is_fp16=True; a caller choosing on its own says what it chose itself).
    """
    device = torch.device(device)
    if native_bf16(device):
        return BF16Autocast(device.type)
    if device.type == "cuda":
        from fastai.callback.fp16 import AMPMode, MixedPrecision
        return MixedPrecision(amp_mode=AMPMode.FP16)
    if say:
        warnings.warn("is_fp16=True: this CPU has no bfloat16 hardware (AMX or AVX512-BF16), where mixed precision "
                      "would be slower; training in float32", stacklevel=user_stacklevel())
    return None


class GradientClip(_FastaiGradientClip):
    """fastai's `GradientClip` (same order, same norm over the model's parameters) that keeps the parameter list.

    fastai walks `model.parameters()` through every submodule each step: for a bert-base-shaped model (231
    modules) keeping the list took the host time around a graphed GPU step from 3.98 to 3.65 ms on the 2-core CPU
    of docs/benchmarks.md (`bench/loop_overhead.py`). The list is kept while `learn.model` and `learn.opt` stay
    the same objects: a new model (a DDP wrapper) or a new optimizer (`create_opt()`, which fastai's own optimizer
    also needs after parameters are replaced) rebuilds it.

    Args:
        max_norm: the largest total gradient norm.
        norm_type: the p of the p-norm.
    """

    _owners: Any = None
    _params: Any = None

    def __init__(self, max_norm: float = 1.0, norm_type: float = 2.0) -> None:
        # clip_grad_norm_ multiplies by max_norm / norm: a negative one reversed every gradient (training uphill),
        # and transformers users write -1 for "no clipping"
        if isinstance(max_norm, bool) or not isinstance(max_norm, numbers.Real) or not max_norm > 0 or \
                not math.isfinite(max_norm):
            raise BertLearnError(f"max_grad_norm={max_norm!r}: clipping scales the gradients down to this total norm, "
                                 "so it must be a finite number > 0; for no clipping (what transformers' "
                                 "max_grad_norm=-1 means) pass max_grad_norm=None or 0 to the learner, or leave "
                                 "GradientClip out")
        super().__init__(max_norm=max_norm, norm_type=norm_type)

    def before_step(self) -> None:
        torch.nn.utils.clip_grad_norm_(self._parameters(), self.max_norm, self.norm_type)

    def _parameters(self) -> list[torch.Tensor]:
        model, opt = self.learn.model, self.learn.opt
        owners = self._owners
        if owners is None or owners[0]() is not model or owners[1]() is not opt:
            try:
                self._owners = (weakref.ref(model), weakref.ref(opt))  # weak: a replaced model is let go
            except TypeError:  # an object that takes no weak reference: walk every step, as fastai does
                return list(model.parameters())
            self._params = list(model.parameters())
        return self._params

    def __getstate__(self) -> dict:
        # `export` pickles the learner's callbacks; weak references do not pickle, and the list is rebuilt anyway
        return {k: v for k, v in self.__dict__.items() if k not in ("_owners", "_params")}


def interactive_output() -> bool:
    """Whether progress bars can redraw in place: in a notebook, in PyCharm's console, or with stdout on a terminal.

    fastprogress means to ask the same (`printing()`), but tests `stdout.isatty` without calling it, so its bars
    also go to files and pipes, where each redraw is appended to one ever-growing line.
    """
    from fastprogress.fastprogress import IN_NOTEBOOK
    if IN_NOTEBOOK or "PYCHARM_HOSTED" in os.environ:
        return True
    try:
        return bool(sys.stdout.isatty())
    except (AttributeError, ValueError):  # no stdout, or a closed one
        return False


class _NoBar:
    """Stands in for a progress bar where none is drawn."""

    comment = ""

    def update(self, val: int) -> None:
        pass

    def on_iter_end(self) -> None:
        pass


class _NoMasterBar:
    """Stands in for fastai's master bar where none is drawn: callbacks that draw on it (fastai's
    `ShowGraphCallback` calls `learn.progress.mbar.update_graph`) find it and draw nothing, as on fastprogress's
    console bar."""

    def update(self, val: int) -> None:
        pass

    def write(self, line: Any, table: bool = False) -> None:
        pass

    def update_graph(self, *args: Any, **kwargs: Any) -> None:
        pass

    def show_imgs(self, *args: Any, **kwargs: Any) -> None:
        pass

    def add_child(self, child: Any) -> None:
        pass

    def on_iter_begin(self) -> None:
        pass

    def on_interrupt(self) -> None:
        pass

    def on_iter_end(self) -> None:
        pass


class SparseProgressCallback(ProgressCallback):
    """fastai's progress bars, reading the smoothed loss at most every `every` seconds instead of each batch.

    Where output cannot redraw in place (a file, a pipe, a batch job's log), no bars are drawn: the epoch table
    fastai prints under them comes out line by line, one row per epoch, as on a terminal.

    Args:
        every: seconds between loss readouts on the bar.
        live: draw bars (True), print the epoch table only (False), or decide by the output (None:
            `interactive_output()`).
    """

    # class-level defaults also serve learners exported before these options existed
    live: bool | None = None
    _drawing = True

    def __init__(self, every: float = 1.0, *, live: bool | None = None):
        self.every, self._last, self.live = every, 0.0, live

    @property
    def name(self) -> str:
        return "progress"  # the name fastai's `no_bar` and `learn.progress` look for

    def before_fit(self) -> None:
        self._drawing = interactive_output() if self.live is None else bool(self.live)
        if self._drawing:
            return super().before_fit()
        self._names: list[str] | None = None
        # as fastai's before_fit, with a master bar that draws nothing: without one, a callback drawing on it
        # (fastai's ShowGraphCallback) failed with AttributeError 'mbar' after the first epoch, ending the fit
        self.mbar = _NoMasterBar()
        if self.learn.logger != noop:
            self.old_logger, self.learn.logger = self.logger, self._write_stats
            self._write_stats(self.recorder.metric_names)
        else:
            self.old_logger = noop

    def _launch_pbar(self) -> None:
        if self._drawing:
            return super()._launch_pbar()
        self.pbar = _NoBar()

    def after_batch(self) -> None:
        if not self._drawing:
            return
        self.pbar.update(self.iter + 1)
        now = time.monotonic()
        if hasattr(self, "smooth_loss") and now - self._last >= self.every:
            self._last = now
            self.pbar.comment = f"{float(self.smooth_loss):.4f}"

    def _write_stats(self, log: list) -> None:
        if self._drawing:
            return super()._write_stats(log)
        cells = [f"{v:.6f}" if isinstance(v, float) else str(v) for v in log]
        if self._names is None:  # the header, laid out as fastprogress's console table
            self._names = [c.ljust(8) for c in cells]
            line = "  ".join(self._names)
        else:
            # a cell wider than its header (a perplexity of 38477.167969) keeps two spaces before the next one
            line = "".join(c.ljust(max(len(n), len(c)) + 2) for c, n in zip(cells, self._names))
        print(line.rstrip(), flush=True)


class DeviceSmoothLoss(AvgSmoothLoss):
    """`AvgSmoothLoss` that stays on the loss's device; also keeps the plain mean of the fit's losses. Under DDP
    both are of the global batches' losses, as one process would show them."""

    def reset(self) -> None:
        super().reset()
        self.total, self.n = None, 0

    def accumulate(self, learn: Any) -> None:
        """Fold this batch's loss into the running average, on the loss's device (no host read).

        Args:
            learn: the learner, whose `loss` is this batch's.
        """
        loss = learn.loss.detach().float().mean()
        trainer = next((cb for cb in learn.cbs if getattr(cb, "is_bertlearn_ddp", False)), None)
        share = getattr(trainer, "loss_share", None)
        if share is not None:
            # under DDP a rank's loss is its own rows' mean: the global batch's is the ranks' share-weighted sum, as
            # one process would show it (an all-reduce on the device, no host read)
            loss = loss * share
            torch.distributed.all_reduce(loss)
        self.count += 1
        # start from zero on the loss's device: `value` debiases assuming a zero start, like fastai's
        prev = torch.zeros_like(loss) if self.count == 1 else self.val
        self.val = torch.lerp(loss, prev, self.beta)
        self.total = loss.clone() if self.total is None else self.total + loss
        self.n += 1

    @property
    def mean(self) -> float:
        """Mean training loss since the fit started (one sync: call it after training)."""
        return float(self.total / self.n) if self.n else float("nan")

    def checkpoint_state(self) -> dict:
        """The running average, its count and the fit's sum of losses as plain numbers, for a checkpoint (one sync:
        call it once an epoch)."""
        return {"val": float(self.val), "count": int(self.count), "n": int(self.n),
                "total": None if self.total is None else float(self.total)}

    def restore_state(self, state: dict, device: torch.device) -> None:
        """Go on from a checkpoint's `checkpoint_state()`, so a resumed fit shows the uninterrupted fit's losses
        (float32 values, as accumulated: restored exactly).

        Args:
            state: what `checkpoint_state` returned.
            device: where the losses are computed (the model's device).
        """
        def tensor(value: float) -> torch.Tensor:
            return torch.tensor(value, dtype=torch.float32, device=device)

        self.val, self.count, self.n = tensor(state["val"]), int(state["count"]), int(state["n"])
        self.total = None if state["total"] is None else tensor(state["total"])


class DeviceAvgLoss(AvgLoss):
    """`AvgLoss` (the validation loss) summed on the device; read once per epoch; summed over ranks in a
    distributed run."""

    def reset(self) -> None:
        super().reset()
        self._cached = None

    def accumulate(self, learn: Any) -> None:
        """Add this batch's loss, weighted by its rows (a cross-entropy's by the weights of the targets it counted:
        see `loss_denominator`), on the loss's device (no host read).

        Args:
            learn: the learner, whose `loss` and `yb` are this batch's.
        """
        n = loss_denominator(learn.loss_func, learn.yb[0]) if len(learn.yb) == 1 else None
        if n is None:
            bs = find_bs(learn.yb)
            self.total = learn.loss.detach().float().mean() * bs + self.total
            self.count += bs
        else:
            # a weighted (or ignore_index) cross-entropy's batch mean divides by its targets' weights, not its rows:
            # weighting the batch means by rows was not the set's loss (and a batch with nothing counted is NaN)
            loss = learn.loss.detach().float()
            self.total = torch.where(n > 0, loss * n, torch.zeros_like(loss)) + self.total
            self.count = n.float() + self.count
        self._cached = None

    def _sums(self) -> tuple[Any, Any]:
        from .distributed import all_sum, rank_world
        if rank_world()[1] == 1:
            return self.total, self.count
        if self._cached is None:
            self._cached = (all_sum(self.total), all_sum(self.count))
        return self._cached

    @property
    def value(self) -> Any:
        total, count = self._sums()
        return total / count if count != 0 else None


class EpochLoggerCallback(Callback):
    """Send each epoch's losses and metrics to a `logging.Logger` (fast-bert's `logger` argument).

    The progress table already shows each epoch on the console, so the logger's console handlers (streams on
    stdout or stderr) do not get the line again; its other handlers (files, sockets...) do.

    Args:
        logger: the logger; records go out at INFO level.
    """

    order = 55  # after the Recorder (50) has written the epoch's values

    def __init__(self, logger: logging.Logger):
        self.py_logger = logger

    def after_epoch(self) -> None:
        rec = self.learn.recorder
        if not rec.values or self.learn.logger is noop:  # `validate()` runs with logging switched off
            return
        names = [n for n in rec.metric_names[1:] if n != "time"]
        values = rec.values[-1]
        stats = ", ".join(f"{n}: {v:.4f}" if isinstance(v, float) else f"{n}: {v}" for n, v in zip(names, values))
        table_shown = getattr(self.learn, "progress", None) is not None
        log_except_console(self.py_logger, logging.INFO, "epoch %d: %s", self.epoch, stats, skip_console=table_shown)


def _console(handler: logging.Handler) -> bool:
    stream = getattr(handler, "stream", None)
    return isinstance(handler, logging.StreamHandler) and not isinstance(handler, logging.FileHandler) and \
        stream in (sys.stdout, sys.stderr, sys.__stdout__, sys.__stderr__)


def log_except_console(logger: logging.Logger, level: int, msg: str, *args: Any, skip_console: bool = True) -> None:
    """`logger.log(level, msg, *args)`, handed to every handler that would get it except those writing to stdout or
    stderr (where the caller already printed the same thing) when `skip_console`.

    Args:
        logger: the logger.
        level: the record's level.
        msg, *args: the message and its %-arguments.
        skip_console: leave out console handlers; False logs as usual.
    """
    if not skip_console:
        logger.log(level, msg, *args)
        return
    if not logger.isEnabledFor(level):
        return
    record = logger.makeRecord(logger.name, level, "(bertlearn)", 0, msg, args, None)
    if not logger.filter(record):
        return
    node: logging.Logger | None = logger
    while node is not None:  # what Logger.callHandlers walks, minus the console handlers
        for handler in node.handlers:
            if not _console(handler) and record.levelno >= handler.level:
                handler.handle(record)
        node = node.parent if node.propagate else None


class SkipValidationCallback(Callback):
    """Skip the validation pass (`fit(..., validate=False)`)."""

    def before_validate(self) -> None:
        raise CancelValidException()


class StepAccumulation(GradientAccumulation):
    """fastai's `GradientAccumulation` stepping every `batches` batches (fast-bert's and transformers'
    `grad_accumulation_steps`), whose count carries into a resumed fit, and whose accumulated step is one batch of
    all its batches' rows: each batch's loss is weighed by its denominator (its rows, or what its loss is a mean
    over: the tagged tokens of NER, the masked tokens of masked LM, the targets' class weights;
    `bertlearn.losses.loss_denominator`), and the step's gradients are divided by the step's whole denominator
    before clipping and the optimizer see them, as transformers' Trainer does (`num_items_in_batch`). fastai's
    scales each batch's mean by its rows / `n_acc`: for a loss over tokens a step with a batch of few tagged tokens
    counted each of them more than one of a batch of many, and a step holding a short last batch was divided by
    rows it did not have.

    The count runs across epochs, so an epoch can end with gradients part-way accumulated: the checkpoint records
    them and the denominator so far (`bertlearn.checkpoint`) and the resumed fit starts from that count, as the
    uninterrupted fit goes on; fastai's restarts from zero, so the resumed weights drifted from the uninterrupted
    fit's.

    fastai's counts rows (a step once `n_acc` rows are in): with a short last batch its steps fell on other
    batches than fast-bert's warm-up schedules (which count a step every `batches` batches, as transformers does)
    assumed, so the rates drifted and a small fit could take its only step at rate 0. `batches=None` keeps fastai's
    count (of the global batch's rows under DDP, so the ranks step together).

    Args:
        n_acc: rows per optimizer step (batch size times `batches`), what fastai's count (`batches=None`) steps at.
        batches: batches per optimizer step; None: step once `n_acc` rows are in, as fastai does.
    """

    resume_count = 0  # set by load_checkpoint, taken by the next fit
    resume_grads: dict = {}  # the checkpoint's accumulated gradients (unscaled), by parameter name
    # the checkpoint's (reference denominator, step's denominator so far in that unit); None: written before steps
    # were weighed by their denominators
    resume_weights: tuple[float, float] | None = None
    # what bertlearn.distributed asks: the batches are not scaled by rows / n_acc (each rank's share is left to it)
    weighs_rows = False
    ref = total = None  # the step's first denominator (the unit) and its denominators so far in that unit: tensors
    _weights, _legacy = None, False

    def __init__(self, n_acc: int = 32, batches: int | None = None):
        super().__init__(n_acc=n_acc)
        self.batches = batches

    @property
    def accumulated_unit(self) -> str:
        """What the count (and a checkpoint's) is of: "batches", or "rows" as fastai counts."""
        return "batches" if self.batches else "rows"

    def before_fit(self) -> None:
        # a step part-way accumulated when the last fit ended is dropped, as fastai's count is: its gradients went
        # into the next fit's first step (and moved parameters frozen in between); a resume's come in before_train
        for p in self.model.parameters():
            p.grad = None
        self.count, self.resume_count = self.resume_count, 0
        self.ref = self.total = None
        self._weights, self.resume_weights = self.resume_weights, None
        self._legacy = False

    def after_loss(self) -> None:
        d = self._denominator()
        if self._legacy:
            self._drop_legacy_gradients()
        if self.ref is None:
            self.ref, self.total = torch.ones_like(d), torch.zeros_like(d)
        # the step's first batch with a denominator is the unit, so a batch's gradients keep the size of one batch's
        # mean (a sum over thousands of tokens would overflow float16's loss scale); batches before it weighed 0
        self.ref = torch.where((self.total > 0) | (d <= 0), self.ref, d)
        w = d / self.ref
        self.total = self.total + w
        self.learn.loss_grad = self.learn.loss_grad * w

    def before_step(self) -> None:
        """Count this batch; skip the step (the gradients add up) until the step's batches are in, then divide the
        gradients by the step's denominator. fastai's row count is of the global batch's rows under DDP: a rank's
        share of an uneven last batch differs between ranks, so counting its own rows made the ranks step on
        different batches (every rank has as many batches, so counting batches keeps them together)."""
        rows = find_bs(self.learn.yb)
        if self.batches is not None:
            self.count += 1
            if self.count < self.batches:
                raise CancelBatchException()  # skips the step and zero_grad: the gradients add up
        else:
            world = rank_world()[1]
            counted = getattr(self.dl, "global_rows", None) if world > 1 else None
            self.count += counted if counted is not None else rows
            if self.count < self.n_acc * (world if counted is not None else 1):
                raise CancelBatchException()
        self.count = 0
        if self.total is not None:  # the gradients are of the step's summed losses over `ref`: one mean
            grads = [p.grad for p in self.model.parameters() if p.grad is not None]
            if grads:
                torch._foreach_mul_(grads, 1 / self.total.clamp_min(torch.finfo(self.total.dtype).tiny))
            self.ref = self.total = None

    def before_train(self) -> None:
        # here, not in before_fit: fp16's loss scaler is made in MixedPrecision.before_fit, which runs after this
        # callback's; the restored gradients take the new scale, as the resumed steps' own gradients will
        weights, self._weights = self._weights, None
        if not self.resume_grads:
            return
        grads, self.resume_grads = self.resume_grads, {}
        scaler = getattr(self.learn, "scaler", None)
        scale = float(scaler.get_scale()) if scaler is not None else 1.0
        device = next(self.model.parameters()).device
        for name, p in getattr(self.model, "module", self.model).named_parameters():
            if name in grads:
                p.grad = (grads[name].to(p.device) * scale).to(p.dtype)
        if weights is not None:
            self.ref, self.total = (torch.tensor(float(v), device=device) for v in weights)
        else:  # a checkpoint from before steps were weighed by their denominators
            self._legacy = True

    def _denominator(self) -> torch.Tensor:
        # the batch's loss denominator (its rows for a mean over rows), of the global batch under DDP (a device
        # all-reduce, no host read); a rank's repeated rows (a global batch of fewer rows than ranks) count for
        # nothing, as their loss does
        learn = self.learn
        world = rank_world()[1]
        d = loss_denominator(learn.loss_func, learn.yb[0]) if len(learn.yb) == 1 else None
        if d is None:  # a mean over rows: the global batch's real rows are known on the host (no all-reduce)
            rows = getattr(learn.dl, "global_rows", None) if world > 1 else find_bs(learn.yb)
            if rows is not None:  # filled on the device, not copied from the host
                return torch.full((), float(rows), device=learn.loss_grad.device)
            d = torch.full((), find_bs(learn.yb), device=learn.loss_grad.device)
        d = d.detach().float() * (0.0 if getattr(learn.dl, "repeats_rows", False) else 1.0)
        if world > 1:
            torch.distributed.all_reduce(d)
        return d

    def _drop_legacy_gradients(self) -> None:
        # gradients restored from a checkpoint that scaled the step's batches by rows / n_acc: mixed with batches
        # weighed by their denominators they would be neither; the step goes on with its batches from here
        self._legacy = False
        for p in self.model.parameters():
            p.grad = None
        from .distributed import is_main_process
        if is_main_process():  # once, not once per rank
            warnings.warn("resume: the checkpoint holds a step part-way accumulated as fastai weighs batches (each by "
                          "its rows / n_acc; written before bertlearn weighed an accumulated step as one batch of all "
                          "its rows or tagged / masked tokens); those batches' gradients are left out of the resumed "
                          "step, which goes on with the batches after them", stacklevel=user_stacklevel())


class CheckpointCallback(Callback):
    """Save everything needed to resume after each epoch: weights (safetensors), optimizer state, RNG states,
    the position in the schedule, fastai trackers' best values and patience (`SaveModelCallback`,
    `EarlyStoppingCallback`...), the smoothed training loss and fp16's loss scale, into `folder` (written to a
    temporary folder, then swapped in).

    Args:
        folder: the checkpoint folder (`BertLearner.fit(checkpoint=True)` uses `output_dir/checkpoints/last`).
        lr: the fit's learning rate, recorded so a resume can check it continues the same schedule.
        fit: the fit's other settings (schedule, weight decay, optimizer...), recorded for the same check.
        trackers: a resumed checkpoint's tracker states, put back once the trackers have reset themselves.
        smooth_loss: a resumed checkpoint's smoothed training loss (`DeviceSmoothLoss.checkpoint_state`), put back
            once the Recorder has reset it.
        scaler: a resumed checkpoint's fp16 `GradScaler` state, put back once fastai's `MixedPrecision` has built
            a new scaler.
    """

    order = 64  # after the Recorder has closed the epoch and fastai's trackers (60-63) have scored it

    def __init__(self, folder: Any, lr: Any = None, fit: dict | None = None, *, trackers: list[dict] | None = None,
                 smooth_loss: dict | None = None, scaler: dict | None = None):
        self.folder, self.lr, self.fit = folder, lr, fit
        self.trackers, self.smooth_loss, self.scaler_state = trackers, smooth_loss, scaler
        self._rows, self._saved, self._stopped = None, None, False

    def before_fit(self) -> None:
        from .checkpoint import restore_trackers
        self._rows, self._saved, self._stopped = None, None, False
        if self.trackers is not None:  # the trackers' before_fit (orders 60-63) has just reset them
            restore_trackers(self.learn, self.trackers, self.folder)
            self.trackers = None
        smooth = getattr(getattr(self.learn, "recorder", None), "smooth_loss", None)
        if self.smooth_loss is not None and hasattr(smooth, "restore_state"):  # the Recorder's (50) has reset it
            # under DDP every rank's is the same (it averages the all-reduced global batch losses), so rank 0's, which
            # the checkpoint holds, is each rank's own
            smooth.restore_state(self.smooth_loss, next(self.learn.model.parameters()).device)
        self.smooth_loss = None
        scaler = getattr(self.learn, "scaler", None)
        if self.scaler_state is not None and scaler is not None:  # MixedPrecision's before_fit (10) has built it
            scaler.load_state_dict(self.scaler_state)
        self.scaler_state = None

    def before_epoch(self) -> None:
        self._rows = len(self.learn.recorder.values)

    def after_epoch(self) -> None:
        self._save()

    def after_cancel_fit(self) -> None:
        # EarlyStoppingCallback (order 63) ends the fit in its after_epoch, before this one's: the epoch it closed
        # (the Recorder has its row) is saved still, and the fit is over (a resume of it trained on); a fit
        # stopped mid-epoch saves nothing
        if self._rows is not None and len(self.learn.recorder.values) > self._rows and self._saved != self.epoch:
            self._stopped = True  # saved in after_fit, once the trackers have put their chosen weights back

    def after_fit(self) -> None:
        from fastai.callback.tracker import TrackerCallback
        # a finished (or early-stopped) fit ends with the weights its trackers chose (SaveModelCallback loads the
        # best epoch's in its after_fit, before this one): the checkpoint gets those, marked finished, so a resume
        # of the finished fit loads what the fit ended with, not its last epoch's
        last = self._saved is not None and self._saved == self.n_epoch - 1
        if self._stopped or (last and any(isinstance(cb, TrackerCallback) for cb in self.learn.cbs)):
            self._save(finished=True)

    def _save(self, *, finished: bool = False) -> None:
        from .checkpoint import rng_states, save_checkpoint
        from .distributed import barrier, gather_objects, is_main_process
        self._saved = self.epoch
        ranks = gather_objects(rng_states())  # every rank's own (dropout) RNG: each resumes its own stream
        if not is_main_process():  # one writer; the others wait so no rank runs ahead of a half-written checkpoint
            barrier()
            return
        save_checkpoint(self.learn, self.folder, epochs_done=self.epoch + 1, n_epoch=self.n_epoch, lr=self.lr,
                        fit=self.fit, rank_rngs=ranks, finished=finished)
        barrier()


class TensorBoardLogger(Callback):
    """Write losses, metrics and learning rates to TensorBoard without a host-device sync per batch.

    fastai's `TensorBoardCallback` writes the loss and every optimizer hyper-parameter each batch (a GPU
    sync per step, and it fails on PyTorch optimizers' non-numeric settings such as `fused=None`). This
    one writes the smoothed training loss and the learning rates every `every` steps, and after each
    epoch the epoch's train/valid losses and metrics, under the step count.

    Args:
        log_dir: folder for the event files (a `SummaryWriter` is made there); or pass `writer`.
        writer: an existing `torch.utils.tensorboard.SummaryWriter` (or anything with `add_scalar`).
        every: steps between training-loss points.
    """

    order = 60  # after the Recorder (50) has closed the epoch

    def __init__(self, log_dir: Any = None, *, writer: Any = None, every: int = 50):
        if writer is None and log_dir is None:
            raise ValueError("TensorBoardLogger needs log_dir (a folder) or writer (a SummaryWriter)")
        self.log_dir, self.writer, self.every, self._own = log_dir, writer, max(1, int(every)), writer is None

    def before_fit(self) -> None:
        # lr_find and get_preds run fits of their own that are not training runs
        from .distributed import is_main_process
        self.run = not hasattr(self.learn, "lr_finder") and not hasattr(self.learn, "gather_preds") and \
            is_main_process()
        if self.run and self.writer is None:
            from torch.utils.tensorboard import SummaryWriter
            self.writer = SummaryWriter(log_dir=str(self.log_dir))

    def before_train(self) -> None:
        # a resumed fit skips the checkpoint's epochs: its points go where the uninterrupted fit's went (they
        # restarted at step 0, on top of the first epochs' points)
        self.offset = getattr(self.learn, "first_epoch", 0) * len(self.dls.train)

    @property
    def batches(self) -> int:
        """The batch count of the fit so far, a resumed fit's skipped epochs included."""
        return self.train_iter + getattr(self, "offset", 0)

    @property
    def step(self) -> int:
        """The optimizer steps of the fit so far: batches over the learner's `grad_accumulation_steps` (fast-bert's
        global_step; counted in batches, `logging_steps` under accumulation logged n times as often, on a batch
        axis)."""
        return self.batches // self._accumulate()

    def _accumulate(self) -> int:
        return max(int(getattr(self.learn, "grad_accumulation_steps", 1) or 1), 1)

    def after_batch(self) -> None:
        # every `every` steps of the whole fit: counted from the resumed fit's first batch, the points moved; a
        # point where a step ends (the batch that completes an accumulated step)
        if not (self.run and self.training) or self.batches % self._accumulate() or self.step % self.every:
            return
        self.writer.add_scalar("train/smooth_loss", float(self.learn.smooth_loss), self.step)  # the one sync
        self._log_lrs()

    def _log_lrs(self) -> None:
        for i, h in enumerate(self.opt.hypers):  # host-side floats: no sync
            self.writer.add_scalar(f"lr/group_{i}", float(h["lr"]), self.step)

    def after_epoch(self) -> None:
        rec = self.learn.recorder
        if not self.run or not rec.values or self.learn.logger is noop:
            return
        self._log_lrs()
        names = [n for n in rec.metric_names[1:] if n != "time"]
        for name, value in zip(names, rec.values[-1]):
            try:
                value = float(value)
            except (TypeError, ValueError):
                continue  # e.g. a confusion matrix
            tag = name.replace("_loss", "/loss") if name in ("train_loss", "valid_loss") else f"valid/{name}"
            self.writer.add_scalar(tag, value, self.step)
        self.writer.flush()

    def after_fit(self) -> None:
        if self.run and self._own and self.writer is not None:
            self.writer.close()
            self.writer = None


class FitSummary(Callback):
    """Say, once at the start of each training fit, how it trains: device, precision, how each step runs (eager,
    CUDA graphs with their buckets, or compiled) and how the texts were tokenized. Where the library picked another
    path than the one a user could expect (graphs under "auto", tokie, a cache), the line says which and why.

    Args:
        out: a function taking the line (default: print to stdout, on the main process only).
    """

    order = 40  # before the Recorder and the progress bar print the table's header

    def __init__(self, out: Any = None):
        self.out = out

    def before_fit(self) -> None:
        if hasattr(self.learn, "lr_finder") or self.learn.logger is noop:
            return  # lr_find's mock fit says nothing; validate() and get_preds() (run without logging) never train
        from .distributed import is_main_process
        line = f"bertlearn: {fit_description(self.learn)}"
        if self.out is not None:
            self.out(line)
        elif is_main_process():
            print(line, flush=True)


def fit_description(learn: Any) -> str:
    """One line on how `learn`'s next fit trains (see `FitSummary`).

    Args:
        learn: the learner, inside `before_fit`.
    """
    model = learn.model
    param = next(model.parameters(), None)
    device = param.device if param is not None else torch.device("cpu")
    where = str(device)
    if device.type == "cuda" and torch.cuda.is_available():
        where += f" ({torch.cuda.get_device_name(device)})"
    amp = learn._amp_dtype() if hasattr(learn, "_amp_dtype") else None
    precision = {torch.bfloat16: "bf16 autocast", torch.float16: "fp16 autocast with loss scaling"}.get(amp, "float32")
    if getattr(model, "_compiled_call_impl", None) is not None:
        steps = "compiled steps (torch.compile)"
    else:
        graphs = next((cb for cb in learn.cbs if type(cb).__name__ == "CudaGraphCallback"), None)
        steps = "eager steps"
        if graphs is not None:
            graphed, why = graphs.plan()
            steps = f"CUDA-graph steps ({why})" if graphed else f"eager steps (CUDA graphs: {why})"
    dl = learn.dls.train
    n_epoch = getattr(learn, "n_epoch", 1)
    line = (f"training on {where}, {precision}, {steps}; {n_epoch} epoch{'s' if n_epoch != 1 else ''} of "
            f"{len(dl)} batches of {dl.bs}")
    how = getattr(dl.dataset, "encoded_by", None)
    return f"{line}; texts {how}" if how else line


HIGH_LR = 1e-4  # above this, a collapsed or diverged fine-tuning run is most likely the learning rate's doing


class FitWatchdog(Callback):
    """Stop a fit whose training loss is no longer finite, and say after an epoch when validation shows a model
    that has collapsed: one class predicted for every text, or (multi-label) most texts with no label at all.

    The loss is read at most every `every` seconds (the progress bar reads it as often), and at the end of each
    epoch; the validation counts are kept on the device and read once per epoch, so nothing syncs per batch. A
    non-finite loss ends the fit through fastai's cancel path, and the learner then raises `BertLearnError`.

    Args:
        every: seconds between loss checks during an epoch.
    """

    order = 55  # after the Recorder (50) has the epoch's values
    _counts: Any = None

    def __init__(self, every: float = 1.0):
        self.every = every
        self.diverged: str | None = None

    def before_fit(self) -> None:
        # active from the first training epoch on: validate() and get_preds() run before_fit but never train, and
        # lr_find drives the loss up on purpose
        self.diverged, self._last, self._active = None, time.monotonic(), False
        self._said: set[str] = set()

    def before_train(self) -> None:
        self._active = not hasattr(self.learn, "lr_finder")

    def after_batch(self) -> None:
        if not self._active:
            return
        if self.training:
            now = time.monotonic()
            # in a distributed fit every rank must stop at the same step (a rank that stopped alone would leave the
            # others waiting in their next all-reduce), so the ranks compare notes at the end of each epoch only
            if now - self._last >= self.every and rank_world()[1] == 1:
                self._last = now
                self._check_loss()
        elif self._counts is not None:
            self._count()

    def after_train(self) -> None:
        if self._active:
            self._check_loss()

    def _check_loss(self) -> None:
        loss = float(self.learn.smooth_loss)  # NaN and inf stay in the running average once they enter it
        if rank_world()[1] > 1:
            from .distributed import all_sum
            if float(all_sum(0.0 if math.isfinite(loss) else 1.0)) == 0:
                return
            loss = loss if not math.isfinite(loss) else float("nan")  # another rank's loss went
        elif math.isfinite(loss):
            return
        lrs = getattr(self.learn.recorder, "lrs", None) or [0.0]
        self.diverged = (f"training stopped at step {self.train_iter} (epoch {self.epoch + 1} of {self.n_epoch}): the "
                         f"training loss became {loss}. A learning rate too high for fine-tuning is the usual cause "
                         f"(it peaked at {max(lrs):.3g} here; BERT models usually train at 1e-5 to 5e-5, and "
                         "learner.lr_find() suggests one). The weights may hold NaN now: build the learner again (or "
                         "load a checkpoint) before training on")
        raise CancelFitException()

    def before_validate(self) -> None:
        self._counts = None
        dls = self.learn.dls
        if self._active and getattr(dls, "problem_type", None) in ("single_label_classification",
                                                                   "multi_label_classification") and dls.c >= 2:
            self._counts = torch.zeros(2, dls.c if dls.problem_type == "single_label_classification" else 2,
                                       dtype=torch.long)
            # made once per validation, on the host: a tensor built from Python numbers per batch on a GPU would be
            # a blocking copy each batch
            self._thresholds = torch.as_tensor(getattr(self.learn, "thresholds", 0.5), dtype=torch.float)

    def _count(self) -> None:
        pred, y = self.learn.pred, self.learn.yb[0]
        if pred.ndim != 2 or pred.shape[-1] != self.dls.c:
            return
        device = pred.device
        if self._counts.device != device:
            self._counts, self._thresholds = self._counts.to(device), self._thresholds.to(device)
        if self.dls.problem_type == "single_label_classification":
            classes = torch.arange(self.dls.c, device=device)
            # compare-and-sum, not bincount: bincount sizes its output from the data, a device sync on a GPU
            self._counts[0] += (pred.argmax(-1)[:, None] == classes).sum(0)
            self._counts[1] += (y.view(-1)[:, None] == classes).sum(0)
        else:
            predicted = (pred.float().sigmoid() > self._thresholds).any(-1)
            labelled = (y > 0.5).any(-1)
            self._counts[0, 0] += (~predicted).sum()  # rows given no label
            self._counts[0, 1] += labelled.sum()  # rows that have one
            self._counts[1, 0] += predicted.numel()

    def after_epoch(self) -> None:
        counts, self._counts = getattr(self, "_counts", None), None
        if counts is None or self.diverged is not None:
            return
        from .distributed import all_sum, is_main_process
        counts = all_sum(counts.cpu()).long()  # every rank's share of the validation set
        if not is_main_process():
            return
        labels = list(self.dls.vocab) if hasattr(self.dls, "vocab") else []
        if self.dls.problem_type == "single_label_classification":
            predicted, true = counts[0], counts[1]
            n = int(true.sum())
            if n >= 2 and int((predicted > 0).sum()) == 1 and int((true > 0).sum()) >= 2 and "one" not in self._said:
                self._said.add("one")
                k = int(predicted.argmax())
                name = labels[k] if k < len(labels) else k
                peak = max(self.recorder.lrs or [0.0])
                cause = (f"The usual cause is a learning rate too high for fine-tuning: it peaked at {peak:.3g}, and "
                         "BERT models usually train at 1e-5 to 5e-5 (learner.lr_find() suggests one)"
                         if peak > HIGH_LR else
                         f"At a peak learning rate of {peak:.3g}, the usual cause is too little training yet: more "
                         "epochs or more data (learner.lr_find() checks the rate)")
                warnings.warn(f"epoch {self.epoch + 1}: the model predicts {name!r} for every one of the {n} "
                              f"validation texts ({int(true[k]) / n:.0%} of which are {name!r}): it has collapsed onto "
                              f"one class. {cause}", stacklevel=user_stacklevel())
        else:
            empty, labelled, n = int(counts[0, 0]), int(counts[0, 1]), int(counts[1, 0])
            if n and empty > n / 2 and labelled > n / 2 and "none" not in self._said:
                self._said.add("none")
                thresholds = getattr(self.learn, "thresholds", 0.5)
                thresholds = thresholds if isinstance(thresholds, (int, float)) else "tuned per label"
                warnings.warn(
                    f"epoch {self.epoch + 1}: {empty} of the {n} validation texts get no label at the thresholds in "
                    f"use ({thresholds}), though {labelled} of them have at least one: the sigmoid outputs stay under "
                    "the thresholds, as they do for rare labels under plain BCE. Remedies: learner.tune_thresholds() "
                    "after the fit, pos_weight=\"balanced\" (weights each label's positives), more epochs",
                    stacklevel=user_stacklevel())
