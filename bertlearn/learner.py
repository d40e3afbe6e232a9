"""The task-agnostic learner: fastai's `Learner` around one Hugging Face model, for any task.

`TaskLearner` holds what every task shares: the loop (`fit` with one-cycle or fast-bert's schedules, `lr_find`,
checkpoints and `resume`, DDP under a launcher), the device-side losses and the callbacks that keep the step free of
host syncs, the fit's summary line and watchdog, export. The factory steps every task's `from_pretrained_model`
reads as (`learning_device`, `prepare_model`, `training_callbacks`, then the task's own head and loss) are
functions here. Tasks live in `bertlearn.tasks`: sequence classification (`BertLearner`), masked LM
(`BertLMLearner`); each adds its head, loss, default metrics, predictions and what it saves.
"""

from __future__ import annotations

import contextlib
import difflib
import functools
import inspect
import json
import logging
import pickle
import random
import types
import warnings
from pathlib import Path
from typing import Any, Iterator, Sequence

import numpy as np
import torch
from fastai.callback.core import Callback, CancelEpochException, event
from fastai.callback.fp16 import AMPMode, MixedPrecision
from fastai.callback.schedule import LRFinder, ParamScheduler
from fastai.callback.tracker import TrackerCallback
from fastai.callback.training import GradientAccumulation
from fastai.callback.training import GradientClip as FastaiGradientClip
from fastai.learner import Learner
from fastai.learner import load_learner as _fastai_load_learner
from fastai.torch_core import set_seed
from fastcore.foundation import L
from torch import nn

from .atomic import atomic_file, recover
from .callbacks import (BF16Autocast, CheckpointCallback, DeviceAvgLoss, DeviceSmoothLoss, EpochLoggerCallback,
                        FitSummary, FitWatchdog, GradientClip, HFOutputCallback, SkipValidationCallback,
                        SparseProgressCallback, StepAccumulation, TensorBoardLogger, mixed_precision)
from .checkpoint import identity as checkpoint_identity
from .checkpoint import check_weights, load_checkpoint, lr_json, read_checkpoint_state
from .compat import (FAST_BERT_LEARNER_ORDER, fast_bert_fit_order, fast_bert_lr_find_order,
                     fast_bert_validate_order, note_no_effect)
from .data import positive_int
from .device import resolve_device
from .distributed import (barrier, distributed_trainer, init_distributed, is_main_process,
                          launched_distributed, main_process_only, metrics_gatherer, multi_gpu_without_effect,
                          rank_world)
from .errors import BertLearnError, DataError, ModelError, NotForThisTaskError, NotFittedError, user_stacklevel
from .graphs import CudaGraphCallback
from .losses import CrossEntropyLoss
from .metrics import lower_is_better
from .model import bert_splitter, compile_model, position_limit, position_limit_source
from .optim import DecayGroupsOptimWrapper, opt_func_for
from .schedules import FLAT, ONE_CYCLE, SCHEDULE_TYPES, StepParamScheduler, WarmupSchedule

__all__ = ["TaskLearner", "load_learner", "learning_device", "check_graph_options", "prepare_model",
           "training_callbacks", "note_fast_bert_options", "factory_setup", "sample_accumulation",
           "accumulation_steps"]

_log = logging.getLogger(__name__)
_HIGH_LR = 1e-3


def _as_lr(lr: Any) -> float | slice:
    if isinstance(lr, slice):
        return lr
    try:
        value = float(lr)  # fast-bert examples pass lr='1e-2'
    except (TypeError, ValueError):
        raise BertLearnError(f"lr={lr!r} is not a number; pass e.g. lr=2e-5 (or a slice for discriminative rates)") from None
    if not value > 0:
        raise BertLearnError(f"lr={lr!r} must be positive; BERT fine-tuning usually uses 1e-5 to 5e-5")
    if value > _HIGH_LR:
        warnings.warn(f"lr={value:g} is high for fine-tuning a BERT model (usually 1e-5 to 5e-5); training often "
                      "diverges above 1e-3. learner.lr_find() suggests a rate.", stacklevel=user_stacklevel())
    return value


def _json_value(value: Any) -> Any:
    # a fit setting as JSON: arrays, tensors and fastcore's L as lists, numbers as floats, anything else by repr
    if hasattr(value, "tolist"):
        return value.tolist()
    if isinstance(value, (tuple, list, set, L)):
        return list(value)
    try:
        return float(value)
    except (TypeError, ValueError):
        return repr(value)


def _as_epochs(epochs: Any) -> int:
    return positive_int(epochs, "epochs", BertLearnError)




class TaskLearner(Learner):
    """A fastai `Learner` around one Hugging Face model, for any task; the tasks subclass it (`BertLearner`,
    `BertLMLearner`) and build it with their `from_pretrained_model`.

    `fit(epochs, lr)` runs fastai's one-cycle schedule; every other fastai verb (`fit_one_cycle`, `lr_find`,
    `freeze`, `get_preds`, `export`...) works as in fastai.

    Args:
        dls: the task's `DataLoaders` (a `BertDataBunch` or a subclass).
        model: the Hugging Face model (or the task's wrapper of one).
        py_logger: a `logging.Logger` that gets each epoch's metrics.
        fresh_head: whether the task head is untrained (prediction warns until a fit).
        default_lr, default_epochs: what `fit()` uses when called without them.
        optimizer_type: "adamw" (PyTorch's fused AdamW) or "lamb" (fastai's Lamb); `fit(optimizer_type=)` switches.
        adam_epsilon: the optimizer's epsilon.
        warmup_steps: warm-up length in steps for every schedule `fit` runs (None: one-cycle's `pct_start`).
        schedule_type: the schedule `fit` runs when not given one (None: one-cycle; see `fit`).
        grad_accumulation_steps: batches per optimizer step, which the schedules count by (`warmup_steps` counts
            optimizer steps, as fast-bert's); the accumulating itself is a callback the task's `from_pretrained_model`
            adds: `fit` refuses a count no such callback takes.
        **kwargs: passed to fastai's `Learner` (loss_func, metrics, cbs, path, wd, moms...).
    """

    first_epoch = 0  # the epoch the running fit started at: above 0 in a resumed fit (its earlier epochs are skipped)
    steps_done = 0  # optimizer steps of the running (or last) fit, a resumed fit's steps before the checkpoint included
    _resumed_steps = 0  # steps_done of the checkpoint a resume loaded
    _resumed_trackers: list | None = None  # its fastai trackers' states
    _resumed_smooth: dict | None = None  # its smoothed training loss
    _resumed_scaler: dict | None = None  # its fp16 loss scaler's state
    _resumed_done = 0  # its epochs_done
    _seeded_start: dict | None = None  # a seeded learner's random states as its factory left them, until its first fit
    _fits_started = 0  # fits begun in this process by any learner (class-wide): a seeded learner's restore reads it

    # class-level defaults: learners exported before these settings existed still load and fit
    optimizer_type, adam_epsilon, warmup_steps, schedule_type = "adamw", 1e-8, None, None
    grad_accumulation_steps, lr_find_results, fresh_head = 1, None, False
    # what AttributeError says when a method of another task is called on this one (see __getattr__)
    other_tasks_hint = ""

    def __init__(self, dls: Any, model: torch.nn.Module, *, py_logger: logging.Logger | None = None,
                 fresh_head: bool = False, default_lr: float = 2e-5, default_epochs: int = 3,
                 optimizer_type: str = "adamw", adam_epsilon: float = 1e-8, warmup_steps: int | None = None,
                 schedule_type: str | None = None, grad_accumulation_steps: int = 1, **kwargs: Any):
        kwargs.setdefault("opt_func", opt_func_for(optimizer_type, adam_epsilon))
        kwargs.setdefault("splitter", bert_splitter)
        kwargs.setdefault("wd", 0.01)
        kwargs.setdefault("lr", default_lr)
        kwargs["cbs"] = [HFOutputCallback(), *(kwargs.get("cbs") or [])]
        super().__init__(dls, model, **kwargs)
        self.py_logger, self.fresh_head = py_logger, fresh_head
        self.default_lr, self.default_epochs = default_lr, default_epochs
        self.optimizer_type, self.adam_epsilon = optimizer_type, adam_epsilon
        self.warmup_steps, self.schedule_type = _warmup_steps(warmup_steps), _schedule_type(schedule_type)
        self.grad_accumulation_steps = accumulation_steps(grad_accumulation_steps)
        self.lr_find_results: dict | None = None  # the last lr_find's rates and losses, for plot()
        # fastai's defaults read the loss on the CPU every batch; swap in device-resident versions
        self.recorder.smooth_loss = DeviceSmoothLoss(beta=self.recorder.smooth_loss.beta)
        self.recorder.loss = DeviceAvgLoss()
        if hasattr(self, "progress"):
            self.remove_cb(self.progress)
            self.add_cb(SparseProgressCallback())
        if py_logger is not None:
            self.add_cb(EpochLoggerCallback(py_logger))
        self.add_cbs([FitSummary(), FitWatchdog()])

    def __call__(self, event_name: str | Sequence[str]) -> None:
        # fastai wraps each event name in an `L` and asks every callback, which looks the handler up through
        # fastcore's attribute delegation even where there is none: ~30 us an event, 8 events a step. Asking only
        # the callbacks that handle the event, in the same order, saved 0.66 ms a step on a bert-base-shaped model
        # (issue 8: on a GPU the step is host-bound)
        if isinstance(event_name, str):
            self._call_one(event_name)
        else:
            for name in event_name:
                self._call_one(name)

    def _call_one(self, event_name: str) -> None:
        if event_name == "after_fit" or not hasattr(event, event_name):
            # after_fit also resets every callback's `run` flag; an unknown name gets fastai's error
            return super()._call_one(event_name)
        cache = self.__dict__.get("_event_handlers")
        ids = tuple(map(id, self.cbs))
        if cache is None or cache[0] != ids:
            # one set of callbacks at a time: a removed one (get_preds' gatherer holds every prediction) is let go
            cache = self.__dict__["_event_handlers"] = (ids, {})
        handlers = cache[1].get(event_name)
        if handlers is None:
            handlers = cache[1][event_name] = [cb for cb in self.cbs.sorted("order") if _handles(cb, event_name)]
        for cb in handlers:
            cb(event_name)

    def remove_cb(self, cb: Any) -> "TaskLearner":
        """fastai's `remove_cb`; also forgets which callbacks handle which event.

        Args:
            cb: a callback, or a callback class (all of its instances go).
        """
        self.__dict__.pop("_event_handlers", None)
        return super().remove_cb(cb)

    def __getstate__(self) -> dict:
        # export pickles this; a seeded learner's random states are this process's, not the loading one's
        return {k: v for k, v in super().__getstate__().items() if k not in ("_event_handlers", "_seeded_start")}

    def __getattr__(self, name: str) -> Any:
        # fastai hands unknown names on to the model, whose error would name the model; a method that another task's
        # learner has (predict_batch on a masked-LM learner) gets a message saying what to do instead
        try:
            return super().__getattr__(name)
        except AttributeError:
            if not name.startswith("_") and self.other_tasks_hint and any(
                    callable(getattr(task, name, None)) for task in _all_tasks(TaskLearner)):
                raise NotForThisTaskError(f"{type(self).__name__} has no {name}(): {self.other_tasks_hint}") from None
            raise

    def finish_setup(self, *, is_fp16: bool = False, freeze: bool = False, seeded: bool = False) -> "TaskLearner":
        """The last step of a task's `from_pretrained_model`: mixed precision where asked (bf16 autocast, fp16 with
        loss scaling, or float32 with a warning; see `mixed_precision`), a frozen encoder where asked, and a seeded
        learner's random states kept for its first fit.

        Args:
            is_fp16: train in mixed precision.
            freeze: train only what is outside the encoder (the classifier) until `unfreeze()`, as fast-bert's
                `freeze_transformer_layers`.
            seeded: the factory was given `seed=`: a first fit that comes after another learner's fit starts from
                the random states (Python, numpy, torch, the databunch's training order) the seed left here.
        """
        amp = mixed_precision(next(self.model.parameters()).device) if is_fp16 else None
        if amp is not None:
            self.add_cb(amp)
        if freeze:
            # fast-bert froze every parameter of the encoder; fastai's freeze() keeps its LayerNorms training
            # (train_bn, meant for BatchNorm) and the pooler sits in the head group: both drifted. A later freeze()
            # is fastai's own again
            self.freeze()
            for p in getattr(self.model, "base_model", self.model).parameters():
                p.requires_grad_(False)
        if seeded:
            # CUDA's states only where CUDA is running already: reading them starts it (a CPU learner's seed would
            # take GPU memory); set_seed seeded it either way
            self._seeded_start = {"fits": TaskLearner._fits_started, "order": self.dls.train.rng.getstate(),
                                  "python": random.getstate(), "numpy": np.random.get_state(),
                                  "torch": torch.get_rng_state(),
                                  "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_initialized() else []}
        return self

    @property
    def output_dir(self) -> Path:
        return Path(self.path)

    @property
    def encoder(self) -> Any:
        return self.dls.encoder

    # --- training ---

    def fit(self, epochs: int | None = None, lr: float | str | slice | None = None, wd: float | None = None,
            cbs: Any = None, reset_opt: bool = False, start_epoch: int = 0, *, validate: bool = True,
            return_results: bool = False, schedule_type: str | None = None, optimizer_type: str | None = None,
            pct_start: float | None = None, checkpoint: bool = False, resume: bool = False,
            layer_decay: float | None = None, **kwargs: Any):
        """Train for `epochs` with fastai's one-cycle schedule peaking at `lr` (or the schedule named).

        fastai's schedulers (`fit_one_cycle`, `lr_find`, `fine_tune`...) call this with their own
        `ParamScheduler`; those calls run exactly as fastai's `Learner.fit`, and such a call with any of the
        options below but `epochs`, `lr`, `wd`, `cbs` is refused (fastai's fit takes none of them).

        Args:
            epochs: number of epochs (default: the learner's `epochs`).
            lr: peak learning rate: a float, a numeric string, or a slice for discriminative rates.
            wd: weight decay (default 0.01).
            cbs: extra callbacks for this fit.
            validate: run validation after each epoch.
            return_results: also return per-epoch results.
            schedule_type: None or "one_cycle": fastai's one-cycle; "none" / "constant": a flat rate; fast-bert's
                "warmup_cosine", "warmup_linear", "warmup_constant", "warmup_cosine_hard_restarts": a linear
                warm-up over the learner's `warmup_steps`, then that shape down to the end of the fit. Default:
                the learner's `schedule_type`.
            optimizer_type: "adamw" or "lamb": train this fit (and later ones) with that optimizer.
            pct_start: one-cycle's share of steps spent warming up (default: `warmup_steps` over the fit's
                steps when the learner has them, else 0.25).
            checkpoint: after each epoch, save weights, optimizer, RNG states and schedule position to
                `output_dir/checkpoints/last` (atomically).
            resume: continue from that checkpoint (same `epochs` and `lr`), then keep checkpointing; without
                a checkpoint, train from the start with a warning.
            layer_decay: layer-wise learning-rate decay: the head trains at `lr`, each group below it at
                `layer_decay` times the rate of the group above (e.g. 0.9; see `layerwise_lrs`).
            **kwargs: passed to fastai's `fit_one_cycle` (div, div_final, moms...).

        fast-bert's positional order, `fit(epochs, lr, validate, return_results, schedule_type, optimizer_type)`, is
        read as fast-bert's when the third argument is a bool (a weight decay never is): in fastai's order those
        places are `wd, cbs, reset_opt, start_epoch`.

        Returns:
            `(global_step, mean training loss)`, plus a list of per-epoch dicts with `return_results`.
        """
        if isinstance(wd, bool):
            # fast-bert's fit(4, 6e-5, False) meant validate=False; read in fastai's order it set wd=0 and validated
            wd, cbs, reset_opt, start_epoch, validate, return_results, schedule_type, optimizer_type = \
                fast_bert_fit_order(wd, cbs, reset_opt, start_epoch, return_results, schedule_type, optimizer_type)
        self._refuse_empty_training_set("fit")
        self._refuse_accumulation_without_callback(cbs)
        if any(isinstance(c, ParamScheduler) for c in L(cbs)):
            # fastai's fit_one_cycle, lr_find and fine_tune come here with their own schedule and none of these; a
            # user's ParamScheduler with them had every one dropped without a word (and fit returned None). Refused
            # before anything changes (the seeded start, the fit count)
            asked = {"validate": validate, "return_results": return_results, "schedule_type": schedule_type,
                     "optimizer_type": optimizer_type, "pct_start": pct_start, "checkpoint": checkpoint,
                     "resume": resume, "layer_decay": layer_decay, **kwargs}
            defaults = {"validate": True, "return_results": False, "checkpoint": False, "resume": False}
            given = [f"{k}={v!r}" for k, v in asked.items() if v is not None and v is not defaults.get(k)]
            if given:
                raise BertLearnError(f"fit(cbs=[ParamScheduler(...)]) runs fastai's own fit with that schedule, which "
                                     f"does not take {', '.join(given)}; leave them out (per-epoch results: "
                                     "learner.epoch_results()), or drop the ParamScheduler and let fit() schedule "
                                     "(schedule_type=...)")
        if not validate:
            self._refuse_trackers_without_validation(cbs)
        self._start_from_seed()
        TaskLearner._fits_started += 1
        if launched_distributed() and not self._in_distributed_fit():
            # started by accelerate launch / torchrun: train with DDP through fastai's distrib_ctx (which
            # fastai.distributed patches onto Learner when imported; bertlearn imports it only here)
            import fastai.distributed  # noqa: F401
            with self.distrib_ctx():
                return self.fit(epochs, lr, wd, cbs, reset_opt, start_epoch, validate=validate,
                                return_results=return_results, schedule_type=schedule_type,
                                optimizer_type=optimizer_type, pct_start=pct_start, checkpoint=checkpoint,
                                resume=resume, layer_decay=layer_decay, **kwargs)
        cbs = list(L(cbs))
        self._track_lower_is_better(cbs)
        # gradients a stopped fit (or a step part-way accumulated) left on the parameters would go into this fit's
        # first step, frozen parameters included; a resume restores its own (StepAccumulation)
        for p in self.model.parameters():
            p.grad = None
        # fastai's CSVLogger (and anything else writing to learn.path) expects the folder to exist
        if is_main_process():
            Path(self.path).mkdir(parents=True, exist_ok=True)
        if any(isinstance(c, ParamScheduler) for c in cbs):
            if not any(isinstance(c, LRFinder) for c in cbs):
                # fit_one_cycle / fine_tune after a refused fit(optimizer_type=...): the optimizer named, not the
                # one in place (lr_find puts its own optimizer back)
                reset_opt = self._use_optimizer(None) or reset_opt
            accumulate = int(getattr(self, "grad_accumulation_steps", 1) or 1)
            if accumulate > 1:
                # one-cycle (fit's default, fit_one_cycle, fine_tune) at the position in optimizer steps, as the
                # warm-up schedules count: by batches, each step ran at its last batch's rate and the warm-up was
                # cut off. A new callback: the caller's own ParamScheduler is left as it was given
                cbs = [StepParamScheduler(c.scheds, accumulate) if type(c) is ParamScheduler else c for c in cbs]
            result = self._fastai_fit(epochs, lr=lr, wd=wd, cbs=cbs, reset_opt=reset_opt, start_epoch=start_epoch)
            self._raise_if_diverged()
            # fit_one_cycle, fine_tune... train the head as fit() does: prediction stops warning it is untrained.
            # lr_find's sweep steps too, but puts the weights it started from back
            if self.steps_done and not any(isinstance(c, LRFinder) for c in cbs):
                self.fresh_head = False
            return result
        epochs = _as_epochs(epochs if epochs is not None else self.default_epochs)
        schedule_type = _schedule_type(schedule_type) if schedule_type is not None else self.schedule_type
        if schedule_type not in (None, *ONE_CYCLE) and (pct_start is not None or kwargs):
            # refused before anything changes (the optimizer, a resume's restore)
            options = sorted({*kwargs, *(["pct_start"] if pct_start is not None else [])})
            raise BertLearnError(f"{options} set fastai's one-cycle schedule, which schedule_type={schedule_type!r} "
                                 "does not run; leave them out, or use schedule_type=None (one-cycle)")
        reset_opt = self._use_optimizer(optimizer_type) or reset_opt
        lr = self._group_rates(_as_lr(lr if lr is not None else self.default_lr), layer_decay)
        if not validate:
            cbs.append(SkipValidationCallback())
        folder = self.output_dir / "checkpoints" / "last"
        warmup = self._warmup_share(epochs, schedule_type)
        # the fit's own callbacks count: fit(cbs=[MixedPrecision()]) trains in fp16 as much as to_fp16() does
        settings = self._fit_settings(schedule_type, pct_start, kwargs, wd, warmup, cbs=cbs)
        if resume:
            start_epoch = self._resume_from(folder, epochs, lr, settings, new_opt=reset_opt,
                                            given=self._given_settings(schedule_type, pct_start, kwargs, wd, cbs=cbs))
            reset_opt = reset_opt and not start_epoch  # fastai would rebuild the optimizer, dropping what was restored
            if start_epoch >= epochs:
                self.fresh_head = False  # the finished fit's weights are loaded
                for cb in self.cbs:  # a step part-way accumulated at the end is dropped, as after any fit
                    if isinstance(cb, StepAccumulation):
                        cb.resume_count, cb.resume_grads, cb.resume_weights = 0, {}, None
                done = self._resumed_done
                ended = f"has finished all {epochs} epochs of this fit" if done >= epochs else \
                    f"holds a fit that a callback (early stopping) ended after epoch {done} of {epochs}"
                warnings.warn(f"resume=True: the checkpoint in {str(folder)!r} {ended}, so nothing was trained; its "
                              "weights are loaded. To train again, delete the folder or fit without resume",
                              stacklevel=user_stacklevel())
                steps, self._resumed_steps = self._resumed_steps, 0  # the finished fit's, as it returned them
                return (steps, float("nan"), []) if return_results else (steps, float("nan"))
        if checkpoint or resume:
            # a resumed fit's trackers (SaveModelCallback...) go on from the checkpoint's best value and patience
            trackers, self._resumed_trackers = (self._resumed_trackers if start_epoch else None), None
            # and the training loss it shows and returns goes on from the interrupted fit's running average and sum
            smooth, self._resumed_smooth = (self._resumed_smooth if start_epoch else None), None
            # and fp16's loss scale from where it had settled
            scaler, self._resumed_scaler = (self._resumed_scaler if start_epoch else None), None
            cbs.append(CheckpointCallback(folder, lr, settings, trackers=trackers, smooth_loss=smooth, scaler=scaler))
        self._run_schedule(schedule_type, epochs, lr, wd=wd, cbs=cbs, reset_opt=reset_opt, start_epoch=start_epoch,
                           pct_start=pct_start, one_cycle_options=kwargs, warmup=warmup)
        self._raise_if_diverged()
        self.fresh_head = False
        # fast-bert's global_step: optimizer steps of the whole fit (it returned batches of this call: too many under
        # gradient accumulation, too few after a resume)
        result = (int(self.steps_done), self.recorder.smooth_loss.mean)
        return (*result, self.epoch_results()) if return_results else result

    def _track_lower_is_better(self, cbs: list) -> None:
        # fastai's trackers read a metric as higher-is-better unless its name holds "loss" or "error": a
        # SaveModelCallback(monitor="mse") kept the epoch with the highest error and loaded it at the end. The
        # monitored metric's function decides (a fast-bert dict named 'MAE' holds mae); a comp other than fastai's
        # default np.greater was the user's and stays
        from fastai.callback.tracker import TrackerCallback
        names = [getattr(m, "name", None) for m in self.metrics]
        reported = ["train_loss", "valid_loss", *names, *(f"train_{n}" for n in names)]  # train_metrics=True
        for cb in [*self.cbs, *cbs]:
            if isinstance(cb, TrackerCallback) and cb.monitor not in reported:
                # fastai's bare assert then failed as "IndexError: tuple index out of range" inside its wrapper
                raise BertLearnError(f"{type(cb).__name__}(monitor={cb.monitor!r}): this learner reports no such "
                                     f"value; it reports {reported[:2 + len(names)]}"
                                     + (" (metrics=[] scores the loss alone)" if not self.metrics else "")
                                     + ": monitor one of them, or give the learner that metric")
            if (isinstance(cb, TrackerCallback) and cb.comp is np.greater
                    and lower_is_better(cb.monitor, self.metrics)):
                cb.comp, cb.min_delta = np.less, -cb.min_delta  # as fastai's own init sets both for a loss
                warnings.warn(f"{type(cb).__name__}(monitor={cb.monitor!r}): fastai reads a metric whose name holds "
                              f"neither 'loss' nor 'error' as higher-is-better, so it would keep the epoch with the "
                              f"highest {cb.monitor}; it is tracked as lower-is-better (pass comp=np.less to say so)",
                              stacklevel=user_stacklevel())

    def fine_tune(self, epochs: int, base_lr: float = 2e-3, freeze_epochs: int = 1, lr_mult: float = 100,
                  pct_start: float = 0.3, div: float = 5.0, **kwargs: Any) -> Any:
        """fastai's `fine_tune`: one-cycle on the frozen model, then on the unfrozen one with discriminative rates;
        a learner without training data is refused before it freezes anything.

        Args:
            epochs: epochs of the unfrozen phase.
            base_lr: the head's peak rate (halved in the unfrozen phase, which spreads it over the groups).
            freeze_epochs: epochs of the frozen phase.
            lr_mult: how many times lower the first group's rate is than the head's in the unfrozen phase.
            pct_start, div: the unfrozen phase's one-cycle warm-up share and start divisor.
            **kwargs: passed to fastai's `fit_one_cycle` (div_final, moms, wd, cbs...).
        """
        self._refuse_empty_training_set("fine_tune")  # else fastai's freeze() ran first and left the model frozen
        return super().fine_tune(epochs, base_lr=base_lr, freeze_epochs=freeze_epochs, lr_mult=lr_mult,
                                 pct_start=pct_start, div=div, **kwargs)

    def create_opt(self) -> None:
        """fastai's `create_opt`, recording on the new optimizer each group's momentum as it starts (its own default,
        e.g. a custom `opt_func`'s beta1), which fast-bert's warmup_* and flat schedules start every fit from, and
        decaying biases and LayerNorm weights in bertlearn's AdamW when the learner has `wd_bn_bias=True`."""
        super().create_opt()
        if self.wd_bn_bias and isinstance(self.opt, DecayGroupsOptimWrapper):
            # fastai marks what wd_bn_bias excludes in a state PyTorch's optimizer never reads: without this, True
            # kept biases and LayerNorm weights undecayed, without a word
            self.opt.decay_everything()
        self.opt.start_moms = [h.get("mom") for h in self.opt.hypers]
        self.opt.built_as = getattr(self, "optimizer_type", None)

    def _use_optimizer(self, optimizer_type: str | None) -> bool:
        # a different optimizer from this fit on; True when the optimizer has to be rebuilt: whenever the one in place
        # was built as another type (a fit refused after the switch, say for a bad lr, left 'lamb' named and AdamW
        # stepping, and the next fit(optimizer_type='lamb') saw nothing to change)
        if optimizer_type is not None and optimizer_type != self.optimizer_type:
            self.opt_func = opt_func_for(optimizer_type, self.adam_epsilon)
            self.optimizer_type = optimizer_type
        built = getattr(self.opt, "built_as", self.optimizer_type) if self.opt is not None else self.optimizer_type
        return built != self.optimizer_type

    def _group_rates(self, lr: float | slice, layer_decay: float | None) -> Any:
        if layer_decay is None:
            return lr
        if isinstance(lr, slice):
            raise BertLearnError(f"layer_decay={layer_decay} and lr={lr} both set per-group rates; pass a single "
                                 "lr with layer_decay, or a slice without it")
        return self.layerwise_lrs(lr, layer_decay)

    def _fit_settings(self, schedule_type: str | None, pct_start: float | None, one_cycle: dict, wd: Any,
                      warmup: float | None, *, cbs: list = ()) -> dict:
        # what a resume must repeat besides epochs and lr, as the values the fit runs with (a checkpoint records
        # them as JSON): pct_start=0.25 given and pct_start left to its default of 0.25 are the same run
        if schedule_type is None or schedule_type in ONE_CYCLE:
            schedule = "one_cycle"
            fastai = {k: p.default for k, p in inspect.signature(Learner.fit_one_cycle).parameters.items()}
            share = pct_start if pct_start is not None else warmup if warmup is not None else fastai["pct_start"]
            # fastai reads moms=None as the learner's moms; any sequence (tuple, array, tensor, L) is kept as floats
            moms = one_cycle.get("moms")
            options = {"div": fastai["div"], "div_final": fastai["div_final"], **one_cycle,
                       "moms": [float(m) for m in (self.moms if moms is None else moms)]}
        else:
            schedule = "constant" if schedule_type in FLAT else schedule_type
            share, options = (None if schedule_type in FLAT else warmup or 0.0), one_cycle
        # warmup_steps is recorded beside the share it gives, so a changed warm-up is named as such
        settings = {"values": "effective", "schedule_type": schedule, "pct_start": share,
                    "warmup_steps": self.warmup_steps if warmup is not None and pct_start is None else None,
                    "one_cycle_options": options, **self._given_settings(schedule_type, pct_start, one_cycle, wd,
                                                                          only_shared=True, cbs=cbs)}
        return json.loads(json.dumps(settings, default=_json_value))

    def _given_settings(self, schedule_type: str | None, pct_start: float | None, one_cycle: dict, wd: Any, *,
                        only_shared: bool = False, cbs: list = ()) -> dict:
        # the settings as given, which checkpoints recorded before they recorded the effective values
        shared = {"wd": self.wd if wd is None else wd, "optimizer_type": self.optimizer_type,
                  "frozen_groups": getattr(self.opt, "frozen_idx", 0) if self.opt is not None else 0,
                  # a resume with another accumulation dropped the saved gradients, with another epsilon the restored
                  # optimizer kept the checkpoint's, and clipping or class weights changed the run; all were silent
                  "grad_accumulation_steps": self.grad_accumulation_steps, "adam_epsilon": self.adam_epsilon,
                  # every clip, fastai's own GradientClip too (bertlearn's subclasses it): a fit(cbs=[GradientClip(
                  # 0.01)]) recorded the factory's 1.0 alone, so a resume without it was not refused
                  "max_grad_norm": _clip_norms([*self.cbs, *cbs]),
                  "loss_weights": self._loss_weights(), "loss": _loss_options(self.loss_func),
                  # autocast set after the checkpoint (is_fp16, to_fp16()) trained the rest of the fit in bf16 or fp16
                  "wd_bn_bias": bool(self.wd_bn_bias),
                  "precision": {torch.bfloat16: "bf16", torch.float16: "fp16"}.get(self._amp_dtype(cbs), "float32"),
                  # freeze_transformer_layers freezes more than fastai's freeze() of the same groups (counted
                  # frozen, not trainable: another model's other number of tensors is the weights check's to name)
                  "frozen_tensors": sum(not p.requires_grad for p in self.model.parameters())}
        collator = getattr(self.dls.train, "collator", None)
        if collator is not None:  # masked LM: what the model trains on (the data digest is of the unmasked ids)
            shared["masking"] = {k: getattr(collator, k, None)
                                 for k in ("mlm_probability", "mask_replace_prob", "random_replace_prob")}
        settings = shared if only_shared else {"schedule_type": schedule_type, "pct_start": pct_start,
                                               "one_cycle_options": one_cycle, **shared}
        return json.loads(json.dumps(settings, default=_json_value))

    def _loss_weights(self) -> dict | None:
        # the class weights of the loss (weight=, pos_weight=), as plain numbers
        func = getattr(self.loss_func, "func", self.loss_func)
        weights = {name: [float(v) for v in getattr(func, name).flatten()] for name in ("weight", "pos_weight")
                   if isinstance(getattr(func, name, None), torch.Tensor)}
        return weights or None

    def _resume_from(self, folder: Path, epochs: int, lr: Any, settings: dict, *, given: dict,
                     new_opt: bool = False) -> int:
        # the epoch to start from: the checkpoint's (weights, optimizer, RNG and schedule restored), or 0; every
        # check runs before anything is restored, so a refused resume leaves the learner as it was
        if is_main_process():  # the writer's rank puts it back, once; the others wait to read it
            recover(folder)
        barrier()
        if not (folder / "state.json").is_file():
            warnings.warn(f"resume=True but there is no checkpoint in {str(folder)!r}; training from the start",
                          stacklevel=user_stacklevel())
            return 0
        state = read_checkpoint_state(folder)
        if state["n_epoch"] != epochs or state["lr"] != lr_json(lr):
            raise BertLearnError(f"resume=True: the checkpoint in {str(folder)!r} belongs to fit({state['n_epoch']}, "
                                 f"lr={state['lr']}), not fit({epochs}, lr={lr_json(lr)}); resume with the same "
                                 "epochs and lr so the schedule continues where it stopped")
        self._check_resume(folder, state, settings if state.get("fit", {}).get("values") == "effective" else given)
        if new_opt:  # this fit's optimizer (another type than the learner's last), built before its state is restored
            self.create_opt()
        load_checkpoint(self, folder)
        self._resumed_steps = int(state.get("steps_done", 0))
        self._resumed_trackers = state.get("trackers", [])  # a checkpoint from before tracker records: none
        self._resumed_smooth = state.get("smooth_loss")  # one from before: the average restarts
        self._resumed_scaler = state.get("scaler")  # one from before: the scale restarts
        _log.info("resuming from %s after epoch %d of %d", folder, state["epochs_done"], epochs)
        # a fit early stopping ended is over too: resumed, it trained on (one epoch more each time it was re-run)
        self._resumed_done = state["epochs_done"]
        return epochs if state.get("finished") else state["epochs_done"]

    def _check_resume(self, folder: Path, state: dict, settings: dict) -> None:
        # the checkpoint must belong to this learner's labels, model and data, and to a fit with these settings
        saved, now = state.get("identity"), checkpoint_identity(self)
        if saved is None:
            warnings.warn(f"resume=True: the checkpoint in {str(folder)!r} was written by a bertlearn that did not "
                          "record its labels, data and fit settings; resuming without checking them",
                          stacklevel=user_stacklevel())
            return
        if (saved["labels"], saved["problem_type"]) != (now["labels"], now["problem_type"]):
            raise BertLearnError(f"resume=True: the checkpoint in {str(folder)!r} was trained for "
                                 f"{saved['problem_type']} on labels {saved['labels']}; this learner has "
                                 f"{now['problem_type']} on {now['labels']}, so its head's rows would answer with "
                                 "the wrong labels. Resume with the same labels in the same order, or delete the "
                                 "folder to start over")
        if saved.get("train_data") not in (None, now["train_data"]) and saved.get("train_rows") == now["train_rows"]:
            raise BertLearnError(f"resume=True: the checkpoint in {str(folder)!r} was trained on other rows than this "
                                 f"learner's {now['train_rows']} training rows (the same count, other texts or "
                                 "labels: an edited file, or a valid_pct split drawn again: without the databunch's seed= it "
                                 "follows numpy's global random state); resume with the same training data (pass "
                                 "seed= to the databunch), or delete the folder to start over")
        scored = [t for t in state.get("trackers") or [] if t.get("monitor") not in ("train_loss", None)]
        if saved.get("valid_data") not in (None, now["valid_data"]) and scored:
            kinds = sorted({t.get("type", "tracker") for t in scored})
            raise BertLearnError(f"resume=True: the checkpoint in {str(folder)!r} was validated on other rows than this "
                                 f"learner's, and its trackers ({', '.join(kinds)}) would compare this set's scores "
                                 "with their best on that one (another epoch kept or stopped at); resume with the "
                                 "same validation data, or delete the folder to start over")
        keys = ("model", "processes", "train_rows", "bs")
        then = {**{k: saved[k] for k in keys if k in saved}, **state.get("fit", {})}
        current = {**{k: now[k] for k in keys}, **settings}
        for values, config in ((then, saved.get("config")), (current, now["config"])):
            # the model's config and the loss option by option: their whole dicts would hide the one that differs (and
            # an option only one side has, such as a config key a later transformers adds, is not compared)
            values.update({f"config.{k}": v for k, v in (config or {}).items()})
            values.update({f"loss.{k}": v for k, v in (values.pop("loss", None) or {}).items()})
        diffs = [f"{k}: {then[k]!r} in the checkpoint, {current[k]!r} now" for k in current
                 if k in then and then[k] != current[k]]
        if "pct_start" in [d.split(":")[0] for d in diffs] and "warmup_steps" in then and \
                current.get("warmup_steps") is not None:
            diffs.append("pct_start is the share of optimizer steps warmup_steps gives, which the number of steps "
                         "per epoch and grad_accumulation_steps change")
        if any(d.startswith("config.") for d in diffs):
            # another architecture has other shapes too, and the weights check names the tensors that differ; the
            # config names what the shapes cannot show (dropout, activation). An unreadable file: the refusal below
            from safetensors import SafetensorError
            with contextlib.suppress(OSError, SafetensorError):
                check_weights(getattr(self.model, "module", self.model), folder / "model.safetensors")
        if diffs:
            # where the settings without a fit() argument of their own come from, for those that differ
            hints = {"precision": "precision is is_fp16= (or a mixed-precision callback)",
                     "wd_bn_bias": "wd_bn_bias is the factory's (fastai Learner's) wd_bn_bias=",
                     "config.": "config.* is the pretrained_path folder's config.json",
                     "loss.": "loss.* is learner.loss_func"}
            named = [h for key, h in hints.items() if any(d.startswith(key) for d in diffs)]
            raise BertLearnError(f"resume=True: the checkpoint in {str(folder)!r} belongs to another run "
                                 f"({'; '.join(diffs)}); resume with the same model, data and fit settings so the "
                                 "schedule continues where it stopped, or delete the folder to start over"
                                 + (f" ({'; '.join(named)})" if named else ""))
        source = saved.get("name_or_path")
        if source and now["name_or_path"] and source != now["name_or_path"]:
            # the same config with other weights (another seed or fine-tune of it) passes every check above, and the
            # checkpoint's weights replace the loaded ones; not refused: a moved or copied folder is the same model
            warnings.warn(f"resume=True: the checkpoint in {str(folder)!r} continues a fit of {source!r}, not of "
                          f"{now['name_or_path']!r}: its weights replace this model's, so the resume trains on from "
                          "them (the same model moved or copied is the same run); to train this model, delete the "
                          "folder or fit without resume", stacklevel=user_stacklevel())

    def _run_schedule(self, schedule_type: str | None, epochs: int, lr: Any, *, pct_start: float | None,
                      one_cycle_options: dict, warmup: float | None, **fit_args: Any) -> None:
        # fastai's one-cycle, a flat rate, or one of fast-bert's warm-up schedules, all through fastai's fit
        if schedule_type is None or schedule_type in ONE_CYCLE:
            if pct_start is None and warmup is not None:
                pct_start = warmup
            share = {} if pct_start is None else {"pct_start": pct_start}  # else fastai's default
            self.fit_one_cycle(epochs, lr_max=lr, **share, **fit_args, **one_cycle_options)
            return
        # a flat rate is the constant shape without warm-up; both start from a fresh momentum
        shape, share = ("warmup_constant", 0.0) if schedule_type in FLAT else (schedule_type, warmup or 0.0)
        fit_args["cbs"] = [*fit_args["cbs"], WarmupSchedule(shape, share, self.grad_accumulation_steps or 1)]
        self._fastai_fit(epochs, lr=lr, **fit_args)

    def _fastai_fit(self, epochs: int, *, start_epoch: int = 0, **fit_args: Any) -> Any:
        # fastai's fit(start_epoch=k) cancels epochs 0..k-1 in before_epoch, but their after_epoch still runs: a
        # checkpoint was rewritten for a skipped epoch (epochs_done going backwards, the accumulated gradients not
        # yet restored, so a second resume lost them), trackers read an empty row and failed, loggers wrote empty
        # epochs. Here the skipped epochs run no events at all (_do_fit starts at the first epoch to train)
        self.first_epoch = start_epoch
        self.steps_done = self._resumed_steps if start_epoch else 0
        self._resumed_steps = 0
        try:
            return super().fit(epochs, start_epoch=0, **fit_args)
        finally:
            self.first_epoch = 0

    def _do_grad_opt(self) -> None:
        super()._do_grad_opt()  # gradient accumulation cancels the batch before a step it skips
        self.steps_done += 1  # a step fp16's scaler skips counts, as in transformers and fast-bert

    def _do_fit(self) -> None:
        for epoch in range(self.first_epoch, self.n_epoch):
            self.epoch = epoch
            self._with_events(self._do_epoch, "epoch", CancelEpochException)

    def _start_from_seed(self) -> None:
        # learners built with one seed= on one databunch and then fitted in turn (a learning-rate sweep set up first)
        # went on from the last fit's data order and dropout draws: the same settings gave other weights. A seeded
        # learner whose first fit comes after another fit starts where its factory left the random states; what the
        # user drew or seeded in between without a fit (show_batch, set_seed) is left as it is
        start, self._seeded_start = self._seeded_start, None
        if start is None or start["fits"] == TaskLearner._fits_started:
            return
        self.dls.train.rng.setstate(start["order"])
        random.setstate(start["python"])
        np.random.set_state(start["numpy"])
        torch.set_rng_state(start["torch"])
        if start["cuda"]:
            torch.cuda.set_rng_state_all(start["cuda"])

    def _raise_if_diverged(self) -> None:
        watchdog = next((cb for cb in self.cbs if isinstance(cb, FitWatchdog)), None)
        if watchdog is not None and watchdog.diverged:
            raise BertLearnError(watchdog.diverged)

    def _refuse_accumulation_without_callback(self, cbs: Any) -> None:
        # the schedules and steps_done count an optimizer step per grad_accumulation_steps batches, but only an
        # accumulation callback makes the steps that rare: a learner built by its constructor (or given the
        # attribute later) stepped every batch while a warm-up and decay planned for a quarter of the steps ended
        # a quarter of the way in, the rest at rate 0
        n = self.grad_accumulation_steps or 1
        accumulating = [cb for cb in [*self.cbs, *L(cbs)] if isinstance(cb, GradientAccumulation)]
        if n > 1 and not accumulating:
            raise BertLearnError(f"grad_accumulation_steps={n}: this learner has no gradient-accumulation callback, "
                                 "so it would step every batch while its schedule counts a step every "
                                 f"{n} batches; build it with the task's from_pretrained_model(..., "
                                 f"grad_accumulation_steps={n}), which adds one, or set grad_accumulation_steps=1")
        # bertlearn's own callback counts batches; the attribute changed after the factory (to turn accumulation
        # off) left the callback stepping every `batches` while the schedule counted every n
        counts = {cb.batches for cb in accumulating if getattr(cb, "batches", None) is not None}
        if counts and counts != {n}:
            k = counts.pop()
            raise BertLearnError(f"grad_accumulation_steps={n}, but this learner's accumulation callback steps every "
                                 f"{k} batches, so its schedule would count {'more' if n < k else 'fewer'} steps than "
                                 f"it takes; set learner.grad_accumulation_steps = {k}, or build the learner "
                                 f"with from_pretrained_model(..., grad_accumulation_steps={n})")

    def _refuse_empty_training_set(self, verb: str) -> None:
        # fastai's export() empties the DataLoaders (it keeps the model and the text processing, not the rows): on a
        # learner from load_learner fit() trained nothing and returned (0, nan) without a word, and lr_find() failed
        # with a ZeroDivisionError. Said before anything runs (fine_tune's freeze, an optimizer, a schedule)
        train = self.dls.train
        if len(train):
            return
        rows = len(getattr(train, "dataset", ()))
        if rows:
            raise DataError(f"{verb}: the training loader has no batches ({rows} rows, bs={train.bs}, drop_last="
                            f"{getattr(train, 'drop_last', None)}), so there is nothing to train on; build the "
                            "databunch with bs at most the number of training rows")
        raise DataError(f"{verb}: this learner's training set is empty (0 rows), so there is nothing to train on: a "
                        "learner from export() / load_learner carries no data (fastai's export keeps the model and "
                        "the text processing, not the rows). Give it data first: learner.dls = "
                        f"{type(self.dls).__name__}(...) built with the same tokenizer and labels, then train")

    def _refuse_trackers_without_validation(self, cbs: Any) -> None:
        # fastai's trackers (SaveModelCallback, EarlyStoppingCallback...) read their monitored value from the epoch's
        # row, which holds only train_loss when validation is skipped: the first epoch trained, then an IndexError
        # inside the tracker's after_epoch ended the fit
        trackers = [cb for cb in [*self.cbs, *L(cbs)]
                    if isinstance(cb, TrackerCallback) or (isinstance(cb, type) and issubclass(cb, TrackerCallback))]
        blind = [cb for cb in trackers if getattr(cb, "monitor", "valid_loss") != "train_loss"]
        if blind:
            named = ", ".join(f"{getattr(cb, '__name__', type(cb).__name__)}(monitor="
                              f"{getattr(cb, 'monitor', 'valid_loss')!r})" for cb in blind)
            raise BertLearnError(f"fit(validate=False): {named} monitors a value only validation computes, and "
                                 "validate=False computes no validation values (each epoch records train_loss "
                                 "only); fit with validate=True, or give the callback monitor='train_loss'")

    def _warmup_share(self, epochs: int, schedule_type: str | None) -> float | None:
        """`warmup_steps` as a share of this fit's steps (None without them); a warm-up longer than the fit spans
        the whole fit, which is said."""
        if self.warmup_steps is None or schedule_type in FLAT:
            return None
        # fast-bert counted warm-up in optimizer steps, which gradient accumulation makes rarer than batches; under
        # DDP a step is a global batch (the loader is sharded only once the fit starts: counted at bs rows, a
        # warm-up was half as long as asked on 2 ranks)
        train = self.dls.train
        rank, world = rank_world()
        if world > 1 and getattr(train, "world_size", 1) != world and hasattr(train, "shard"):
            train = train.shard(rank, world)
        batches = len(train)
        steps = epochs * batches // max(self.grad_accumulation_steps, 1)
        share = self.warmup_steps / max(steps, 1)
        if share > 1:
            # one-cycle's rising part can at most fill the fit; fast-bert's (transformers') warm-up rises
            # step / warmup_steps, so a longer one never reaches the peak
            how = "warms up over the whole fit to its peak and never decays" if schedule_type in (None, *ONE_CYCLE) \
                else f"rises to {1 / share:.0%} of lr by the fit's end, as in transformers' schedules, and never decays"
            warnings.warn(f"warmup_steps={self.warmup_steps} is longer than this fit's {steps} optimizer steps "
                          f"({epochs} epoch{'s' if epochs > 1 else ''} of {batches} batches): the rate "
                          f"{how}", stacklevel=user_stacklevel())
        return min(share, 1.0) if schedule_type in (None, *ONE_CYCLE) else share

    def lr_find(self, start_lr: float = 1e-7, end_lr: float = 10, num_it: int = 100, stop_div: bool = True,
                show_plot: bool = True, suggest_funcs: Any = None, *, optimizer_type: str | None = None,
                num_iter: int | None = None, **fast_bert: Any) -> Any:
        """fastai's learning-rate finder (exponential sweep from `start_lr` to `end_lr`), also taking fast-bert's
        arguments: `optimizer_type` sweeps with that optimizer, `num_iter` is `num_it`; `use_val_loss`,
        `step_mode`, `smooth_f` and `diverge_th` have no effect here and are named once. The model and
        optimizer are restored afterwards; `plot()` draws the curve again.

        Args:
            start_lr, end_lr: the sweep's first and last rate.
            num_it: steps of the sweep (fast-bert: `num_iter`).
            stop_div: stop once the loss exceeds 4x its minimum.
            show_plot: draw the loss against the rate.
            suggest_funcs: fastai's suggestion functions (default: `valley`).
            optimizer_type: "adamw" or "lamb" for the sweep (default: the learner's).
            num_iter: fast-bert's name for `num_it`.
            **fast_bert: fast-bert's `use_val_loss`, `step_mode`, `smooth_f`, `diverge_th`.

        fast-bert's positional order, `lr_find(start_lr, end_lr, use_val_loss, optimizer_type, num_iter, step_mode)`,
        is read as fast-bert's when the third argument is a bool (a step count never is): in fastai's order those
        places are `num_it, stop_div, show_plot, suggest_funcs`.
        """
        from fastai.callback.schedule import valley
        if isinstance(num_it, bool):
            # fast-bert's lr_find(1e-7, 10, True, "lamb", 100) was read as num_it=1, stop_div="lamb", show_plot=100:
            # a one-step sweep with the learner's own optimizer
            fast_bert["use_val_loss"] = num_it
            num_it, stop_div, show_plot, suggest_funcs, optimizer_type, num_iter, step_mode = \
                fast_bert_lr_find_order(stop_div, show_plot, suggest_funcs, optimizer_type, num_iter)
            if step_mode is not None:
                fast_bert["step_mode"] = step_mode
        self._refuse_empty_training_set("lr_find")
        unknown = sorted(set(fast_bert) - {"use_val_loss", "step_mode", "smooth_f", "diverge_th"})
        if unknown:
            raise TypeError(f"lr_find() got unexpected arguments {unknown}; it takes fastai's start_lr, end_lr, num_it, "
                            "stop_div, show_plot, suggest_funcs and fast-bert's optimizer_type, num_iter, use_val_loss, "
                            "step_mode, smooth_f, diverge_th")
        note_no_effect("BertLearner.lr_find", fast_bert)
        if num_iter is not None:
            num_it = num_iter
        opt_func, opt = self.opt_func, self.opt
        if optimizer_type is not None and optimizer_type != self.optimizer_type:
            self.opt_func, self.opt = opt_func_for(optimizer_type, self.adam_epsilon), None
        try:
            found = super().lr_find(start_lr=float(start_lr), end_lr=float(end_lr), num_it=int(num_it),
                                    stop_div=stop_div, show_plot=show_plot,
                                    suggest_funcs=suggest_funcs if suggest_funcs is not None else (valley,))
            self.lr_find_results = {"lrs": [float(v) for v in self.recorder.lrs],
                                    "losses": [float(v) for v in self.recorder.losses], "suggestion": found}
        finally:
            if self.opt_func is not opt_func:  # the next fit builds its own optimizer again
                self.opt_func, self.opt = opt_func, opt
        return found

    def plot(self, skip_start: int = 10, skip_end: int = 5, log_lr: bool = True, show_lr: float | None = None,
             ax: Any = None) -> Any:
        """fast-bert's `plot()`: the last `lr_find`'s loss against the learning rate; returns the matplotlib axes.

        Args:
            skip_start, skip_end: points left out at the start and the end of the sweep.
            log_lr: a logarithmic rate axis.
            show_lr: draw a vertical line at this rate (default: the suggested one).
            ax: axes to draw on (default: a new figure).
        """
        if self.lr_find_results is None:
            raise NotFittedError("plot() draws the learning-rate finder's curve: call learner.lr_find() first")
        import matplotlib.pyplot as plt
        lrs, losses = self.lr_find_results["lrs"], self.lr_find_results["losses"]
        stop = max(len(lrs) - int(skip_end), 0)
        lrs, losses = lrs[int(skip_start):stop], losses[int(skip_start):stop]
        if ax is None:
            _, ax = plt.subplots()
        ax.plot(lrs, losses)
        if log_lr:
            ax.set_xscale("log")
        ax.set_xlabel("learning rate")
        ax.set_ylabel("loss (smoothed)")
        suggestion = self.lr_find_results.get("suggestion")
        line = show_lr if show_lr is not None else getattr(suggestion, "valley", None)
        if line is not None:
            ax.axvline(float(line), color="red", linestyle="--", label=f"lr {float(line):.2e}")
            ax.legend()
        return ax

    def layerwise_lrs(self, lr: float, decay: float) -> np.ndarray:
        """Learning rate per parameter group (embeddings, each layer, head) with layer-wise decay.

        The head gets `lr`, the top layer `lr * decay`, the next `lr * decay**2`, down to the embeddings
        (as in ELECTRA and "How to Fine-Tune BERT for Text Classification", Sun et al. 2019). The result
        can be passed as `lr_max` to `fit_one_cycle`; `fit(lr, layer_decay=decay)` applies it in one call.

        Args:
            lr: the head's learning rate.
            decay: factor between neighbouring groups, in (0, 1].
        """
        if not (isinstance(decay, (int, float)) and 0 < decay <= 1):
            raise BertLearnError(f"layer_decay={decay!r} must be a number in (0, 1], e.g. 0.9 (1 means no decay)")
        n = len(self.splitter(self.model))
        return float(lr) * float(decay) ** np.arange(n - 1, -1, -1, dtype=np.float64)

    def _in_distributed_fit(self) -> bool:
        return any(getattr(cb, "is_bertlearn_ddp", False) for cb in self.cbs)

    def to_distributed(self, sync_bn: bool = False, **kwargs: Any) -> "TaskLearner":
        """Train with DDP in this process's rank (what fastai's `distrib_ctx()` calls); see `bertlearn.distributed`.

        Args:
            sync_bn: ignored (BERT models have no batch norm).
            **kwargs: passed to `accelerate.Accelerator`.
        """
        init_distributed()
        self.add_cb(distributed_trainer(**kwargs))
        if not is_main_process() and hasattr(self, "progress"):
            self.remove_cb(self.progress)
        return self

    def detach_distributed(self) -> "TaskLearner":
        """Undo `to_distributed` (fastai's `distrib_ctx` calls it on exit)."""
        for cb in [cb for cb in self.cbs if getattr(cb, "is_bertlearn_ddp", False)]:
            self.remove_cb(cb)
        if not hasattr(self, "progress"):
            self.add_cb(SparseProgressCallback())
        return self

    def epoch_results(self) -> list[dict[str, float]]:
        """One dict per epoch of the last fit: train_loss, valid_loss and each metric."""
        names = [n for n in self.recorder.metric_names[1:] if n != "time"]
        return [dict(zip(names, values)) for values in self.recorder.values]

    @contextlib.contextmanager
    def no_bar(self):
        """Train without progress bars for the duration of the `with` block."""
        bar = getattr(self, "progress", None)
        if bar is not None:
            self.remove_cb(bar)
        try:
            yield self
        finally:
            if bar is not None:
                self.add_cb(bar)

    def validate(self, ds_idx: int = 1, dl: Any = None, cbs: Any = None, *, quiet: bool = False,
                 loss_only: bool = False, return_preds: bool = False) -> dict[str, float]:
        """Loss and metrics on the validation set (or `dl`), as a dict `{'loss': ..., metric name: ...}`.

        Args:
            ds_idx: which loader of the databunch (1: validation).
            dl: another loader to evaluate instead.
            quiet: no progress bar.
            loss_only: return only the loss.
            return_preds: also return the task's outputs (the classifier's logits, in dataset order).

        fast-bert's positional order, `validate(quiet, loss_only, return_preds)`, is read as fast-bert's when the
        first argument is a bool (`validate(False)` scored the training set as `ds_idx=0`).
        """
        if isinstance(ds_idx, bool):
            ds_idx, dl, cbs, quiet, loss_only, return_preds = fast_bert_validate_order(ds_idx, dl, cbs, loss_only,
                                                                                     return_preds)
        loader = dl if dl is not None else self.dls[ds_idx]
        self.check_targets_match(loader, "validate")
        rows, n_texts = _window_rows(loader)
        if rows is not None and hasattr(self, "predict_logits"):
            # scored per window (as fit's epoch table is): a text of five windows counted five times, and the numbers
            # differed from what predict_labels and bertlearn eval decide per text, without a word
            warnings.warn(f"validate: the {rows} rows of this loader are sliding windows of {n_texts} texts, and "
                          "its loss and metrics score each window as a row (as fit's table does); for per-text "
                          "scores, score learner.predict_logits(texts) (one row per text, its windows' logits "
                          "averaged), as bertlearn eval does", stacklevel=user_stacklevel())
        rank, world = rank_world()
        if world > 1 and getattr(loader, "world_size", 1) != world and hasattr(loader, "shard"):
            # under a launcher, outside a distributed fit (which shards it), every rank read the whole loader while
            # the losses and metrics still gathered every rank's rows: each row counted once per rank (a confusion
            # matrix of twice the rows). Each rank scores its share, as in the fit
            loader = loader.shard(rank, world)
            # the shards differ in rows and batches: fastai's metrics keep their rank's rows (the shard's
            # `to_detach` does not gather) and are gathered once (their per-batch gather aborted or waited for ever)
            cbs = [*L(cbs), metrics_gatherer()]
        with (self.no_bar() if quiet else contextlib.nullcontext()), self.keeping_history():
            values = super().validate(dl=loader, cbs=cbs)
        if values is None or not len(values):  # fastai records nothing for a pass a callback cancelled
            raise BertLearnError("validate: the pass was cancelled before it recorded a loss (a callback such as "
                                 "ShortEpochCallback stopped it); validate without that callback")
        if values[0] is None:  # the loss averaged over nothing: no row, masked token or tagged word was scored
            raise BertLearnError("validate: the loader scored nothing (no rows, or no masked token / tagged word in "
                                 "them), so there is no loss or metric; validate on a loader with data to score")
        results = {"loss": float(values[0])}
        if not loss_only:
            results.update({m.name: v for m, v in zip(self.metrics, values[1:])})
        if return_preds:
            return results, self.validation_predictions(dl if dl is not None else self.dls[ds_idx])
        return results

    def check_targets_match(self, dl: Any, verb: str) -> None:
        """Refuse a loader whose targets are indices into other labels (or another task) than this learner's outputs.

        A loader built by another databunch (a test file read with its own `BertDataBunch`) numbers its labels by
        its own list: one class missing from the file, or the labels in another order, and every target index
        names another output, so metrics and confusion matrices come out wrong without a word.

        Args:
            dl: the loader about to be read.
            verb: the method, as the message names it.
        """
        data = getattr(dl, "dataset", None)
        theirs, ours = getattr(data, "encoder", None), getattr(self.dls, "encoder", None)
        if theirs is None or ours is None or theirs is ours or not getattr(data, "has_targets", False):
            return
        # a regression's one "label" is its target column's name: its targets are values, not indices
        attrs = ("problem_type",) if getattr(ours, "problem_type", None) == "regression" else ("problem_type", "labels")
        for attr in attrs:
            a, b = getattr(ours, attr, None), getattr(theirs, attr, None)
            if a is None or b is None:
                continue
            if (list(a) if not isinstance(a, str) else a) != (list(b) if not isinstance(b, str) else b):
                raise DataError(f"{verb}(dl=...): the loader's targets are {attr} {_listed(b)}, this learner's outputs "
                                f"are {attr} {_listed(a)}: its target indices would be read as other outputs. "
                                f"{self.same_targets_fix()}")

    def same_targets_fix(self) -> str:
        """How to build a loader numbered as this learner's outputs: the end of `check_targets_match`'s message."""
        return ("Build the loader from this learner's data: learn.dls.test_dl(df, with_labels=True) (a DataFrame with "
                "the training columns, or (text, label) items)")

    def validation_predictions(self, dl: Any) -> Any:
        """What `validate(return_preds=True)` returns beside the metrics: the task's outputs for `dl`.

        Args:
            dl: the loader validated.
        """
        raise NotForThisTaskError(f"{type(self).__name__}.validate(return_preds=True): this task returns no "
                                  "predictions; validate() gives the loss and metrics")

    def get_preds(self, *args: Any, **kwargs: Any) -> Any:
        """fastai's `get_preds`, keeping the last fit's losses in `recorder` (fastai's resets them).

        Args:
            *args, **kwargs: as for fastai's `Learner.get_preds` (ds_idx, dl, with_input, with_decoded, ...).
        """
        names = ("ds_idx", "dl")
        given = {**dict(zip(names, args)), **{k: kwargs[k] for k in names if k in kwargs}}
        dl = given.get("dl") if given.get("dl") is not None else self.dls[given.get("ds_idx", 1)]
        self.check_targets_match(dl, "get_preds")
        rows, n_texts = _window_rows(dl)
        if rows is not None:
            # fastai's inference recipe (get_preds(dl=dls.test_dl(texts)), zipped with the texts) gave one row per
            # window, and zip paired texts with other texts' predictions
            warnings.warn(f"get_preds: the {rows} rows of this loader are sliding windows of {n_texts} texts, "
                          "one prediction row each, not one per text; " + (
                              "learner.predict_logits(texts) gives one row per text (its windows' logits averaged)"
                              if hasattr(self, "predict_logits") else
                              "learner.predict_tokens(words) gives one tag per word of each sentence"),
                          stacklevel=user_stacklevel())
        self.sync_decoding()
        with self.keeping_history():
            return super().get_preds(*args, **kwargs)

    def sync_decoding(self) -> None:
        """Bring the loss's decoding (fastai's `decodes`, used by `get_preds(with_decoded=True)` and `show_results`)
        in line with the task's own decisions before a `get_preds`: a task's hook; nothing here."""

    def all_batches(self) -> None:
        # one pass over self.dl (a training epoch, a validation, get_preds), in the task's pass context
        was_on = {t: torch.is_autocast_enabled(t) for t in ("cpu", "cuda")}
        with self.pass_context():
            try:
                super().all_batches()
            except BaseException:
                # an error or KeyboardInterrupt in the forward pass skips after_loss, which leaves the mixed-precision
                # autocast: without this the thread (a notebook's) computed everything after it in bf16/fp16
                self._leave_autocast(was_on)
                raise

    def pass_context(self) -> contextlib.AbstractContextManager:
        """The context each pass over a loader (training epoch, validation, `get_preds`) runs in: a task's hook
        (a bf16 regression model's float32 head); none here."""
        return contextlib.nullcontext()

    def _leave_autocast(self, was_on: dict[str, bool]) -> None:
        for cb in self.cbs:
            if isinstance(cb, BF16Autocast):
                cb.leave()
            elif isinstance(cb, MixedPrecision) and getattr(cb, "autocast", None) is not None:
                device = cb.autocast.device
                if torch.is_autocast_enabled(device) and not was_on.get(device, False):
                    cb.autocast.__exit__(None, None, None)

    @contextlib.contextmanager
    def keeping_history(self) -> Iterator["TaskLearner"]:
        """Inside the block, passes that are not training (validation, prediction) leave `recorder`'s losses,
        rates and per-epoch values of the last fit as they were: fastai runs the Recorder's `before_fit` for them,
        which empties its lists, so `recorder.plot_loss()` after `validate()` drew nothing."""
        rec = getattr(self, "recorder", None)
        kept = None if rec is None else {k: getattr(rec, k) for k in ("lrs", "iters", "losses", "values")
                                         if hasattr(rec, k)}
        try:
            yield self
        finally:
            if kept:
                for k, v in kept.items():
                    setattr(rec, k, v)

    def _amp_dtype(self, cbs: Any = ()) -> torch.dtype | None:
        # the autocast dtype the training and evaluation passes run under, which prediction, the fit's summary line
        # and save_model's recorded precision follow; a checkpoint's adds the fit's own callbacks `cbs` (gone after
        # the fit, so prediction and save_model then run and record float32)
        cbs = [*self.cbs, *cbs]
        param = next(self.model.parameters(), None)
        where = param.device.type if param is not None else None
        # an autocast for another device than the model's casts nothing there (a GPU-trained learner's
        # BF16Autocast('cuda') after load_learner on the CPU): its passes run float32, and so must prediction
        if any(isinstance(cb, BF16Autocast) and cb.device_type == where for cb in cbs):
            return torch.bfloat16
        mp = next((cb for cb in cbs if isinstance(cb, MixedPrecision)), None)
        if mp is None:
            return None
        # fastai's MixedPrecision enters torch.autocast('cuda'), which casts nothing on a model on the CPU (and torch
        # disables it without CUDA): after to_fp16() on a CPU, fit, validate and get_preds ran float32 while
        # prediction ran under CPU float16 autocast (1e-4 off) and save_model recorded fp32
        if where != "cuda" or not torch.cuda.is_available():
            return None
        return torch.bfloat16 if mp.amp_mode == AMPMode.BF16 else torch.float16

    @main_process_only
    def export(self, fname: str | Path = "export.pkl", **kwargs: Any) -> Path:
        """fastai's `export` (pickle; load with `load_learner`, trusted files only), written atomically.

        Args:
            fname: file name, relative to `output_dir`.
            **kwargs: passed to fastai's export (pickle_module, pickle_protocol).
        """
        target = Path(self.path) / fname
        with atomic_file(target) as tmp:  # an interrupted export leaves the previous file whole
            # fastai joins the name onto learn.path, an absolute one as itself: a relative output_dir ("out")
            # made it out/out/.tmp..., a folder that does not exist
            super().export(Path(tmp).absolute(), **kwargs)
        return target



def _window_rows(dl: Any) -> tuple[int | None, int | None]:
    # (rows, texts) of a loader whose rows are sliding windows of fewer texts; (None, None) for one row a text
    data = getattr(dl, "dataset", None)
    n_texts = getattr(data, "n_texts", None)
    return (len(data), n_texts) if n_texts is not None and n_texts != len(data) else (None, None)


def _all_tasks(cls: type) -> list[type]:
    return [cls, *[t for sub in cls.__subclasses__() for t in _all_tasks(sub)]]

def _warmup_steps(value: Any) -> int | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 0:
        raise BertLearnError(f"warmup_steps={value!r} must be a whole number of steps >= 0 (or None)")
    return int(value)


def _schedule_type(value: Any) -> str | None:
    if value is None:
        return None
    if value not in SCHEDULE_TYPES:
        raise BertLearnError(f"schedule_type={value!r} is not one of {list(SCHEDULE_TYPES)} (None: one-cycle)")
    return value


def _loss_options(loss: Any) -> dict:
    """The loss's class and its plain options (label_smoothing, ignore_index, reduction, axis...): fastai's losses
    keep the PyTorch loss in `func`, a partial its options in `keywords`. Tensors are the class weights
    (`_loss_weights`); `thresh` only decodes predictions (`tune_thresholds` moves it), so neither is here."""
    options: dict = {}
    for key, part in (("class", loss), ("func", getattr(loss, "func", None))):
        if part is None:
            continue
        options[key] = part.__qualname__ if isinstance(part, types.FunctionType) else type(part).__name__
        own = {**getattr(part, "__dict__", {}), **(part.keywords if isinstance(part, functools.partial) else {})}
        options.update({k: v for k, v in own.items() if not k.startswith("_") and k not in ("training", "thresh")
                        and isinstance(v, (bool, int, float, str, type(None)))})
    return options


def _handles(cb: Callback, event_name: str) -> bool:
    """Whether `cb` has a handler for `event_name` (a method of its class, or one given to its constructor)."""
    return event_name in cb.__dict__ or hasattr(type(cb), event_name)




def note_fast_bert_options(where: str, kwargs: dict, *, multi_gpu: Any = False, logging_steps: Any = None,
                           tensorboard: bool = False) -> None:
    """Take fast-bert's learner options that have no effect here out of `kwargs` and name them once.

    Args:
        where: the factory, as the message names it.
        kwargs: the factory's extra keyword arguments (edited: the options are removed).
        multi_gpu: fast-bert's flag.
        logging_steps: fast-bert's logging interval (it sets TensorBoard's where there is TensorBoard).
        tensorboard: whether the learner logs to TensorBoard.
    """
    ignored = {k: kwargs.pop(k) for k in ("fp16_opt_level", "loss_scale", "model_type", "save_steps") if k in kwargs}
    if logging_steps and not tensorboard:
        ignored["logging_steps"] = logging_steps
    if multi_gpu_without_effect(multi_gpu):
        ignored["multi_gpu"] = multi_gpu
    note_no_effect(where, ignored)
    # fastai's Learner options the factory sets itself (a TypeError about 'multiple values' before)
    if "loss_func" in kwargs:
        raise BertLearnError(f"{where}: loss_func={kwargs['loss_func']!r}: the task sets the loss that its "
                             "predictions and metrics decode (BertLearner: pass weight= or pos_weight= to weight "
                             "the classes); to train with another, set learner.loss_func after the factory")
    if "path" in kwargs:
        raise BertLearnError(f"{where}: path={kwargs['path']!r}: the learner's folder is output_dir; pass "
                             f"output_dir={kwargs['path']!r}")
    fastai = set(inspect.signature(Learner.__init__).parameters) - {"self", "dls", "model", "loss_func", "path"}
    unknown = [k for k in kwargs if k not in fastai]
    if unknown:  # said here, not by a TypeError from deep inside fastai's Learner
        near = [m for k in unknown for m in difflib.get_close_matches(k, sorted(fastai | set(FAST_BERT_LEARNER_ORDER)),
                                                                       n=1)]
        raise BertLearnError(f"{where}: unknown argument{'s' if len(unknown) > 1 else ''} {unknown}"
                             + (f" (did you mean {near}?)" if near else "")
                             + f"; help({where}) lists its options, and the rest go to fastai's Learner "
                             f"({sorted(fastai)})")


def factory_setup(where: str, kwargs: dict, *, device: torch.device | str | None, optimizer_type: str = "adamw",
                  adam_epsilon: float = 1e-8, multi_gpu: Any = False, logging_steps: Any = None,
                  tensorboard: bool = False, cuda_graphs: Any = False, compile: Any = False,
                  seed: int | None = None, databunch: Any = None) -> tuple[Any, torch.device]:
    """The steps every task's `from_pretrained_model` takes before it loads weights, so that a wrong option fails
    fast and the head starts from the seed. Returns the optimizer function (fastai's `opt_func=` when given,
    else `optimizer_type`'s) and the device to train on.

    Args:
        where: the factory, as messages name it.
        kwargs: the factory's extra keyword arguments (edited: fast-bert's options without effect are removed).
        device: what the user asked for (None: CUDA when available).
        optimizer_type: "adamw" or "lamb".
        adam_epsilon: the optimizer's epsilon.
        multi_gpu, logging_steps, tensorboard: see `note_fast_bert_options`.
        cuda_graphs, compile: see `check_graph_options`.
        seed: seed Python, numpy and torch before the head is initialised, and start `databunch`'s training order
            over from its own seed (this one where it has none): a learning-rate sweep of learners on one databunch
            drew a different order for each, so the same settings gave different weights. cuDNN's process-wide
            flags are left as the user set them.
        databunch: the learner's data.
    """
    note_fast_bert_options(where, kwargs, multi_gpu=multi_gpu, logging_steps=logging_steps, tensorboard=tensorboard)
    opt_func = opt_func_for(optimizer_type, adam_epsilon)  # a wrong name fails before the model loads
    opt_func = kwargs.pop("opt_func", None) or opt_func  # fastai's option: the user's optimizer instead
    device = learning_device(device)
    check_graph_options(cuda_graphs, device, compile)
    if seed is not None:
        set_seed(seed)
        if databunch is not None:
            own = getattr(databunch, "seed", None)
            databunch.train.rng = random.Random(own if own is not None else seed)
    return opt_func, device


def accumulation_steps(value: Any) -> int:
    """fast-bert's `grad_accumulation_steps` as a count of batches per optimizer step (None: 1), or a
    `BertLearnError` naming the value (2.5 was taken as 2, "two" failed with a bare TypeError, 0 and negatives
    trained without accumulation without a word).

    Args:
        value: what the user gave.
    """
    if isinstance(value, bool):  # True is 1 to Python, not a count anyone means
        raise BertLearnError(f"grad_accumulation_steps={value!r} must be a positive integer")
    return 1 if value is None else positive_int(value, "grad_accumulation_steps", BertLearnError)


def sample_accumulation(grad_accumulation_steps: int | None, bs: int) -> GradientAccumulation | None:
    """Gradient accumulation for fast-bert's `grad_accumulation_steps`: a step every that many batches (fastai's
    own counts samples), or None for a step every batch.

    Args:
        grad_accumulation_steps: batches per optimizer step.
        bs: the training batch size.
    """
    n = accumulation_steps(grad_accumulation_steps)
    if n > 1:
        return StepAccumulation(n_acc=n * bs, batches=n)
    return None


def learning_device(device: torch.device | str | None) -> torch.device:
    """The device a learner trains on: this process's under `accelerate launch` / `torchrun` (cuda:LOCAL_RANK, or
    the CPU with gloo), else `resolve_device(device)`.

    Args:
        device: what the user asked for (None: CUDA when available).
    """
    if launched_distributed():
        device = init_distributed().device
        if device.type == "cpu":
            # accelerate says "cpu:0", which torch.load's map_location cannot restore to (fastai's learn.load, so
            # SaveModelCallback's end of fit, failed under gloo)
            device = torch.device("cpu")
    return resolve_device(device)


def check_graph_options(cuda_graphs: Any, device: torch.device, compile: Any) -> None:
    """Refuse `cuda_graphs` values that cannot be honoured, before any model loads.

    Args:
        cuda_graphs: True, False or "auto".
        device: where the model trains.
        compile: the learner's `compile` option.
    """
    if cuda_graphs not in (True, False, "auto"):
        raise ModelError(f"cuda_graphs={cuda_graphs!r} is not one of True, False, 'auto'")
    if cuda_graphs is True and device.type != "cuda":
        raise ModelError(f"cuda_graphs=True needs a CUDA GPU, but the model goes to {str(device)!r}; pass "
                         "device='cuda', or cuda_graphs='auto' (graphs only where they apply)")
    if cuda_graphs is True and compile:
        raise ModelError("cuda_graphs=True and compile=True: use one or the other (both attack the per-kernel "
                         "launch overhead; graphing a compiled model is not supported)")


def prepare_model(model: torch.nn.Module, databunch: Any, device: torch.device, *,
                  gradient_checkpointing: bool = False, compile: bool | dict = False) -> None:
    """Ready a loaded model for training on `databunch`: its inputs no longer than its position table (the data is
    cut to fit, in place, and that is said), activation checkpointing where asked, the device (before the optimizer
    exists, so AdamW picks its fused kernel for it), `torch.compile` where asked; the databunch follows the device.

    Args:
        model: the Hugging Face model (or a task's wrapper with its `config`).
        databunch: the learner's data (its `maxlen` may be lowered, and its loaders clipped: the learner and the
            caller share it, as a fastai `Learner` and its `DataLoaders` do).
        device: where to train.
        gradient_checkpointing: recompute activations in the backward pass.
        compile: `torch.compile` options (see `compile_model`).
    """
    limit = position_limit(model)
    enc = databunch.encoder
    keeps_other = (getattr(enc, "truncation", "head") != "head" or getattr(enc, "long_text", None)
                   or getattr(enc.tokenizer, "truncation_side", "right") == "left" or getattr(enc, "pairs", False)
                   or getattr(databunch, "keeps_every_token", False))
    if limit is not None and databunch.maxlen > limit and keeps_other:
        # cutting the encoded rows keeps their first tokens: a tail cut, a left-truncating tokenizer, windows
        # stepped for the longer maxlen or a pair (whose second text the cut drops whole) would train on other tokens
        # than prediction (encoding at the limit) reads
        what = ("masked-LM data (a long text's tokens fill consecutive blocks: a cut drops every block's tail)"
                if getattr(databunch, "keeps_every_token", False) else
                f"long_text={enc.long_text!r}" if getattr(enc, "long_text", None) else
                "a sentence pair (prediction cuts both texts, longest first)" if getattr(enc, "pairs", False) else
                f"truncation={enc.truncation!r}" if getattr(enc, "truncation", "head") != "head" else
                "the tokenizer's truncation_side='left'")
        raise DataError(f"maxlen={databunch.maxlen} exceeds the model's {position_limit_source(model)}, and cutting "
                        f"the encoded rows to {limit} tokens keeps their first tokens, which {what} does not; build "
                        f"the {type(databunch).__name__} with maxlen<={limit}")
    cut = getattr(databunch, "cut_for_positions", None)  # (tokens, maxlen built with, the model's limit as said)
    if cut is not None and (limit is None or limit > cut[0]):
        # the cut below is in place: a learner built on the databunch later trains, saves and predicts at it too
        warnings.warn(f"this {type(databunch).__name__}'s texts were cut to {cut[0]} tokens for an earlier learner's "
                      f"model ({cut[2]}), and this model takes more, but is given them cut; build the "
                      f"{type(databunch).__name__} again (maxlen={cut[1]}) to train it on the whole texts",
                      stacklevel=user_stacklevel())
    if limit is not None and databunch.maxlen > limit:
        warnings.warn(f"maxlen={databunch.maxlen} exceeds the model's {position_limit_source(model)}; "
                      f"cutting texts to {limit} tokens (build the {type(databunch).__name__} with maxlen<={limit} "
                      "to choose how; the cut is the databunch's own, which a learner built on it later gets too)",
                      stacklevel=user_stacklevel())
        databunch.cut_for_positions = (limit, databunch.maxlen, position_limit_source(model))
        for dl in databunch.loaders:
            dl.dataset.clip(limit)
        databunch.encoder.maxlen = limit  # texts encoded later (prediction) follow the same limit
    if gradient_checkpointing:
        if not getattr(model, "supports_gradient_checkpointing", False):
            raise ModelError(f"gradient_checkpointing=True: {type(model).__name__} does not support it")
        # non-reentrant checkpointing keeps the RNG state, so dropout (and the result) match a normal step
        if hasattr(model, "activation_checkpointing_enable"):  # transformers >= 5.20 renamed it
            model.activation_checkpointing_enable(activation_checkpointing_kwargs={"use_reentrant": False})
        else:
            model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
    model.to(device)
    compile_model(model, compile)
    databunch.device = device


def training_callbacks(callbacks: Sequence[Callback] | None, *, device: torch.device, cuda_graphs: Any = False,
                       log_dir: str | Path | None = None, logger: Any = None, logging_steps: int | None = None,
                       max_grad_norm: float | None = 1.0, accumulation: Callback | None = None
                       ) -> tuple[list[Callback], Any]:
    """The callbacks a learner trains with: the user's, CUDA graphs (on a CUDA device), TensorBoard (with `log_dir`
    or a `SummaryWriter` as logger), gradient clipping and accumulation. Returns them and the logger left for
    per-epoch lines (None when it was a `SummaryWriter`).

    Args:
        callbacks: the user's fastai callbacks.
        device: where the model trains.
        cuda_graphs: True, False or "auto" (see `CudaGraphCallback`).
        log_dir: TensorBoard's folder.
        logger: a `logging.Logger`, or a TensorBoard `SummaryWriter` (anything with `add_scalar`).
        logging_steps: steps between TensorBoard's training-loss points (default 50).
        max_grad_norm: gradient clipping norm (None: no clipping).
        accumulation: the task's gradient-accumulation callback, or None.
    """
    cbs = list(L(callbacks))
    if cuda_graphs and device.type == "cuda":
        cbs.append(CudaGraphCallback(cuda_graphs))
    every = {"every": int(logging_steps)} if logging_steps else {}
    if log_dir is not None:
        cbs.append(TensorBoardLogger(log_dir, **every))
    if logger is not None and hasattr(logger, "add_scalar"):
        cbs.append(TensorBoardLogger(writer=logger, **every))
        logger = None
    if logger is not None and not all(hasattr(logger, a) for a in ("info", "isEnabledFor")):
        # said now, not by an AttributeError inside fastai at the end of the first epoch
        raise BertLearnError(f"logger={logger!r} is not a logger; pass a logging.Logger (e.g. logging.getLogger("
                             "'bertlearn')), a TensorBoard SummaryWriter, or None")
    if max_grad_norm:
        cbs.append(GradientClip(max_norm=max_grad_norm))
    if accumulation is not None:
        cbs.append(accumulation)
    return cbs, logger


# where the classes of exports written before the re-layout live now: (module, name) or module -> module
_MOVED = {("bertlearn.learner", "BertLearner"): "bertlearn.tasks.classification",
          "bertlearn.lm": "bertlearn.tasks.lm", "bertlearn.store": "bertlearn.data.store",
          "bertlearn.cache": "bertlearn.data.cache", "bertlearn.backends": "bertlearn.data.backends"}


class _MovedClassesUnpickler(pickle.Unpickler):
    def find_class(self, module: str, name: str) -> Any:
        return super().find_class(_MOVED.get((module, name), _MOVED.get(module, module)), name)


_PICKLE = types.ModuleType("bertlearn_pickle")  # what torch.load takes as pickle_module: pickle, with the map above
_PICKLE.__dict__.update({k: v for k, v in vars(pickle).items() if not k.startswith("__")},
                        Unpickler=_MovedClassesUnpickler)


def load_learner(fname: str | Path, cpu: bool = True) -> TaskLearner:
    """Load a learner written by `learner.export()` (any task; exports of earlier bertlearn versions too); pickle:
    only load files you trust. A learner exported with bf16 autocast on another device than it loads on (a GPU's
    export on a CPU) gets the precision `is_fp16=True` picks there (bf16 autocast on a CPU with bf16 hardware, else
    float32), with a warning: its old autocast cast nothing on the new device.

    Args:
        fname: the exported file.
        cpu: map the model to the CPU.
    """
    path = Path(fname)
    if not path.is_file():
        raise ModelError(f"load_learner: {str(path)!r} is not a file; pass the file written by learner.export()")
    learner = _fastai_load_learner(path, cpu=cpu, pickle_module=_PICKLE)
    if not isinstance(learner, TaskLearner):
        raise ModelError(f"load_learner: {str(path)!r} holds a {type(learner).__name__}, not a bertlearn learner")
    learner.dls.device = next(learner.model.parameters()).device
    _retarget_autocast(learner, path)
    func = getattr(learner.loss_func, "func", None)
    if type(func) is nn.CrossEntropyLoss:  # an export from before the loss's mean over nothing was 0, not NaN
        func.__class__ = CrossEntropyLoss  # the same state and, otherwise, the same values
    return learner


def _retarget_autocast(learner: TaskLearner, path: Path) -> None:
    """A learner exported with bf16 autocast on one device and loaded on another (a GPU's export on a CPU: fastai's
    `cpu=True` drops only its own MixedPrecision) kept BF16Autocast('cuda'), which casts nothing on the CPU: it
    trained in float32 with torch's warning each batch. Its precision is chosen again for the device it is on, as
    `is_fp16=True` would choose it there, and said."""
    device = learner.dls.device
    stale = [cb for cb in learner.cbs if isinstance(cb, BF16Autocast) and cb.device_type != device.type]
    if not stale:
        return
    learner.remove_cbs(stale)
    # as is_fp16=True chooses, without its message: the user asked for nothing here, and this says what it chose
    replacement = mixed_precision(device, say=False)
    if replacement is not None:
        learner.add_cb(replacement)
    now = "bf16 autocast" if isinstance(replacement, BF16Autocast) else \
        "fp16 autocast with loss scaling" if replacement is not None else "float32"
    warnings.warn(f"load_learner: {path.name} was exported with bf16 autocast on {stale[0].device_type}; on "
                  f"{device.type} it now trains and predicts in {now}", stacklevel=user_stacklevel())


def _clip_norms(cbs: list) -> float | list[float] | None:
    # one clip (the factory's) is recorded as its norm, as checkpoints always had it; several as the list
    norms = sorted(float(cb.max_norm) for cb in cbs if isinstance(cb, FastaiGradientClip))  # in any order alike
    return norms[0] if len(norms) == 1 else norms or None


def _listed(names: Any) -> str:
    if isinstance(names, str):
        return repr(names)
    names = [str(n) for n in names]
    return str(names[:8])[:-1] + (f", ... ({len(names)} in all)]" if len(names) > 8 else "]")
