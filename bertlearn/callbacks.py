"""Callbacks that fit a Hugging Face model into fastai's loop without host-device syncs per batch.

fastai's defaults read a GPU value on every training batch in two places: `AvgSmoothLoss` copies the
loss to the CPU and `ProgressCallback` formats it with `.item()`. Either one makes the host wait for
the GPU each step, so it can never queue work ahead. The replacements here keep running values on the
device and read them only when a person could see them (a bar refresh, the end of an epoch).
"""

from __future__ import annotations

import logging
import os
import sys
import time
import warnings
import weakref
from typing import Any

import torch
from fastai.callback.core import Callback, CancelValidException
from fastai.callback.progress import ProgressCallback
from fastai.callback.training import GradientClip as _FastaiGradientClip
from fastai.learner import AvgLoss, AvgSmoothLoss
from fastai.torch_core import find_bs
from fastai.learner import noop  # the very object `no_logging()` swaps in (not fastcore.basics.noop)

__all__ = ["HFOutputCallback", "SparseProgressCallback", "DeviceSmoothLoss", "DeviceAvgLoss", "EpochLoggerCallback",
           "SkipValidationCallback", "CheckpointCallback", "TensorBoardLogger", "BF16Autocast", "native_bf16",
           "mixed_precision", "GradientClip", "interactive_output"]


class HFOutputCallback(Callback):
    """Replace the model's `ModelOutput` by its logits, so fastai's losses and metrics see a tensor."""

    order = -5  # before MixedPrecision (10) casts the prediction

    def after_pred(self) -> None:
        logits = getattr(self.pred, "logits", None)
        if logits is not None:
            self.learn.pred = logits


def native_bf16(device: torch.device | str) -> bool:
    """Whether `device` computes bfloat16 matrix products in hardware: a CUDA GPU with bf16 (Ampere and later)
    or a CPU with AMX or AVX512-BF16 (Xeon Sapphire Rapids and later). Elsewhere bf16 is emulated and slower.

    Args:
        device: the device to train or predict on.
    """
    device = torch.device(device)
    if device.type == "cuda":
        return torch.cuda.is_available() and torch.cuda.is_bf16_supported()
    if device.type == "cpu":
        cpu = torch.cpu
        return any(getattr(cpu, f, lambda: False)() for f in ("_is_amx_tile_supported", "_is_avx512_bf16_supported"))
    return False


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
        self._exit()

    def after_cancel_batch(self) -> None:
        self._exit()

    def after_fit(self) -> None:
        self._exit()

    def _exit(self) -> None:
        if self._ctx is not None:
            ctx, self._ctx = self._ctx, None
            ctx.__exit__(None, None, None)


def mixed_precision(device: torch.device | str) -> Callback | None:
    """The mixed-precision callback for `device`: `BF16Autocast` where bf16 is native, fastai's fp16
    `MixedPrecision` (with loss scaling) on older GPUs, None with a warning on CPUs without bf16 hardware.

    Args:
        device: the device the learner trains on.
    """
    device = torch.device(device)
    if native_bf16(device):
        return BF16Autocast(device.type)
    if device.type == "cuda":
        from fastai.callback.fp16 import AMPMode, MixedPrecision
        return MixedPrecision(amp_mode=AMPMode.FP16)
    warnings.warn("is_fp16=True: this CPU has no bfloat16 hardware (AMX or AVX512-BF16), where mixed precision would "
                  "be slower; training in float32", stacklevel=3)
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
        # as fastai's before_fit, without the master bar
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
            line = "".join(c.ljust(len(n) + 2) for c, n in zip(cells, self._names))
        print(line.rstrip(), flush=True)


class DeviceSmoothLoss(AvgSmoothLoss):
    """`AvgSmoothLoss` that stays on the loss's device; also keeps the plain mean of the fit's losses."""

    def reset(self) -> None:
        super().reset()
        self.total, self.n = None, 0

    def accumulate(self, learn: Any) -> None:
        """Fold this batch's loss into the running average, on the loss's device (no host read).

        Args:
            learn: the learner, whose `loss` is this batch's.
        """
        loss = learn.loss.detach().float().mean()
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


class DeviceAvgLoss(AvgLoss):
    """`AvgLoss` (the validation loss) summed on the device; read once per epoch; summed over ranks in a
    distributed run."""

    def reset(self) -> None:
        super().reset()
        self._cached = None

    def accumulate(self, learn: Any) -> None:
        """Add this batch's loss, weighted by its rows, on the loss's device (no host read).

        Args:
            learn: the learner, whose `loss` and `yb` are this batch's.
        """
        bs = find_bs(learn.yb)
        self.total = learn.loss.detach().float().mean() * bs + self.total
        self.count += bs
        self._cached = None

    def _sums(self) -> tuple[Any, Any]:
        from .distributed import all_sum, rank_world
        if rank_world()[1] == 1:
            return self.total, self.count
        if self._cached is None:
            self._cached = (all_sum(self.total), int(all_sum(self.count)))
        return self._cached

    @property
    def value(self) -> Any:
        total, count = self._sums()
        return total / count if count != 0 else None


class EpochLoggerCallback(Callback):
    """Send each epoch's losses and metrics to a `logging.Logger` (fast-bert's `logger` argument).

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
        self.py_logger.info("epoch %d: %s", self.epoch, stats)


class SkipValidationCallback(Callback):
    """Skip the validation pass (`fit(..., validate=False)`)."""

    def before_validate(self) -> None:
        raise CancelValidException()


class CheckpointCallback(Callback):
    """Save everything needed to resume after each epoch: weights (safetensors), optimizer state, RNG states
    and the position in the schedule, into `folder` (written to a temporary folder, then swapped in).

    Args:
        folder: the checkpoint folder (`BertLearner.fit(checkpoint=True)` uses `output_dir/checkpoints/last`).
        lr: the fit's learning rate, recorded so a resume can check it continues the same schedule.
    """

    order = 60  # after the Recorder has closed the epoch

    def __init__(self, folder: Any, lr: Any = None):
        self.folder, self.lr = folder, lr

    def after_epoch(self) -> None:
        from .checkpoint import save_checkpoint
        from .distributed import barrier, is_main_process
        if not is_main_process():  # one writer; the others wait so no rank runs ahead of a half-written checkpoint
            barrier()
            return
        save_checkpoint(self.learn, self.folder, epochs_done=self.epoch + 1, n_epoch=self.n_epoch, lr=self.lr)
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

    def after_batch(self) -> None:
        if not (self.run and self.training) or self.train_iter % self.every:
            return
        self.writer.add_scalar("train/smooth_loss", float(self.learn.smooth_loss), self.train_iter)  # the one sync
        self._log_lrs()

    def _log_lrs(self) -> None:
        for i, h in enumerate(self.opt.hypers):  # host-side floats: no sync
            self.writer.add_scalar(f"lr/group_{i}", float(h["lr"]), self.train_iter)

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
            self.writer.add_scalar(tag, value, self.train_iter)
        self.writer.flush()

    def after_fit(self) -> None:
        if self.run and self._own and self.writer is not None:
            self.writer.close()
            self.writer = None
