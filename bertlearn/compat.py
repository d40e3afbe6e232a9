"""fast-bert compatibility: the arguments fast-bert code passes that have no effect here, said once, with why.

bertlearn accepts fast-bert's calls verbatim (docs/migration.md). Most of fast-bert's arguments map to something
(`warmup_steps` sets the warm-up, `optimizer_type` the optimizer, `schedule_type` the schedule...); the ones
listed in `NO_EFFECT` cannot, because bertlearn does the thing another way. Passing one of them asks for
something that will not happen, so `note_no_effect` names it, once per process and argument, in a
`FastBertCompatWarning` (a `UserWarning`: `warnings.filterwarnings("ignore", category=FastBertCompatWarning)`
silences them). Where fast-bert code gets another behaviour (`val_file=None` holds out rows for validation),
`note_difference` says so the same way. It imports only the leaf `errors` from bertlearn.
"""

from __future__ import annotations

import functools
import warnings
from pathlib import Path
from typing import Any, Callable

from .errors import BertLearnError, user_stacklevel

__all__ = ["FastBertCompatWarning", "NO_EFFECT", "note_no_effect", "note_difference", "FAST_BERT_LEARNER_ORDER",
           "fast_bert_positions", "fast_bert_fit_order", "fast_bert_lr_find_order",
           "fast_bert_validate_order", "one_setting"]


class FastBertCompatWarning(UserWarning):
    """A fast-bert argument that bertlearn accepts but that has no effect here, or that does something else here
    than in fast-bert."""


def _given(value: Any) -> bool:
    return value is not None


# argument -> (does this value ask for something?, why it has no effect here)
NO_EFFECT: dict[str, tuple[Callable[[Any], bool], str]] = {
    "multi_gpu": (bool, "one process trains on one device (for several GPUs, launch the script with `accelerate "
                        "launch` or `torchrun`, which train with DistributedDataParallel: docs/distributed.md)"),
    "model_type": (_given, "the architecture comes from the checkpoint's config.json, never from a name"),
    "backend": (_given, "the distributed backend is the launcher's (nccl on GPUs, gloo on CPUs)"),
    "custom_sampler": (_given, "training batches are length-grouped by bertlearn's loader (a sampler would undo the "
                               "grouping that removes most padding)"),
    "fp16_opt_level": (_given, "apex optimisation levels do not apply: is_fp16=True uses PyTorch's autocast (bf16, or "
                               "fp16 with dynamic loss scaling)"),
    "loss_scale": (bool, "fp16 loss scaling is dynamic (fastai's MixedPrecision) and bf16 needs none"),
    "use_fast_tokenizer": (lambda v: v is not None and not v, "the fast (Rust) tokenizer is always used"),
    "logging_steps": (bool, "validation runs once per epoch (fast-bert validated every logging_steps steps), and the "
                            "training loss goes to TensorBoard every logging_steps steps only with log_dir= or a "
                            "SummaryWriter as logger"),
    "use_val_loss": (bool, "fastai's lr_find follows the smoothed training loss (fast-bert ran a whole validation pass "
                           "every iteration)"),
    "smooth_f": (_given, "fastai's lr_find smooths with the recorder's beta (0.98)"),
    "step_mode": (lambda v: v not in (None, "exp"), "fastai's lr_find sweeps the rate exponentially"),
    "diverge_th": (_given, "fastai's lr_find stops once the loss exceeds 4x its minimum (stop_div=True)"),
    "save_steps": (bool, "checkpoints are written per epoch: fit(..., checkpoint=True) (resume with "
                         "fit(..., resume=True)), where fast-bert saved every save_steps steps"),
}

def one_setting(where: str, ours: str, our_value: Any, theirs: str, their_value: Any, default: Any) -> Any:
    """The value of a setting bertlearn and fast-bert name differently (bs / batch_size_per_gpu): the one given, else
    `default`; both given and different is a `BertLearnError` (one was dropped in silence, and which one depended
    on the class).

    Args:
        where: the call, as the message names it.
        ours, our_value: bertlearn's name and the value given under it (None: not given).
        theirs, their_value: fast-bert's name and the value given under it (None: not given).
        default: the value when neither is given.
    """
    if our_value is not None and their_value is not None and our_value != their_value:
        raise BertLearnError(f"{where}: {ours}={our_value!r} and {theirs}={their_value!r} name the same setting "
                             f"(bertlearn's name and fast-bert's); give it once")
    return our_value if our_value is not None else their_value if their_value is not None else default


_said: set[Any] = set()  # argument names (and (where, name) for call-specific reasons) already named


def note_no_effect(where: str, given: dict[str, Any], *, why: dict[str, str] | None = None) -> list[str]:
    """Warn once per process for each argument of `given` in `NO_EFFECT` (or `why`) whose value asks for something.

    Args:
        where: the call, as the message names it (e.g. "BertLearner.from_pretrained_model").
        given: the fast-bert arguments the caller passed, name -> value.
        why: reasons for arguments that have no effect at this call only (asking for something when truthy).

    Returns:
        The names warned about now.
    """
    table = {**NO_EFFECT, **{k: (bool, reason) for k, reason in (why or {}).items()}}
    new = [k for k, v in given.items() if k in table and table[k][0](v) and (where, k) not in _said
           and k not in _said]
    if new:
        _said.update(new if why is None else [(where, k) if k in why else k for k in new])
        reasons = "; ".join(f"{k}={given[k]!r}: {table[k][1]}" for k in new)
        warnings.warn(f"{where}: fast-bert argument{'s' if len(new) > 1 else ''} without effect in bertlearn: "
                      f"{reasons}", FastBertCompatWarning, stacklevel=user_stacklevel())
    return new


def note_difference(where: str, what: str, message: str) -> bool:
    """Warn once per process for each (`where`, `what`) that fast-bert code gets another behaviour here than in
    fast-bert, in a `FastBertCompatWarning` (filtered like `note_no_effect`'s).

    Args:
        where: the call, as the message names it (e.g. "BertDataBunch").
        what: the argument or case, the key said once (e.g. "val_file=None").
        message: what happens here, what fast-bert did, and what to pass for the other behaviour.

    Returns:
        Whether it warned now.
    """
    if (where, what) in _said:
        return False
    _said.add((where, what))
    warnings.warn(f"{where}: {message}", FastBertCompatWarning, stacklevel=user_stacklevel())
    return True


# fast-bert's `BertLearner.from_pretrained_model` after (dataBunch, pretrained_path, output_dir, metrics, device, logger)
FAST_BERT_LEARNER_ORDER = ("finetuned_wgts_path", "multi_gpu", "is_fp16", "loss_scale", "warmup_steps",
                           "fp16_opt_level", "grad_accumulation_steps", "multi_label", "max_grad_norm", "adam_epsilon",
                           "logging_steps", "freeze_transformer_layers", "pos_weight", "weight", "callbacks",
                           "learning_rate", "optimizer_type", "epochs")


def fast_bert_positions(own: tuple[str, ...], fast_bert: tuple[str, ...], *, lead: int = 6,
                        fast_bert_at: int = 2,
                        fast_bert_lead: tuple[str, ...] = ("output_dir", "metrics", "device", "logger")) -> Callable:
    """Decorate a factory so the arguments given by position land where the caller's order puts them: when the
    argument at `fast_bert_at` is a path (fast-bert's output_dir comes before metrics), every argument from there on
    takes fast-bert's name (`fast_bert_lead`, then `fast_bert`), however many there are; else those after the first
    `lead` take the factory's own `own`. Without it, fast-bert's seventh argument (finetuned_wgts_path) was taken
    for is_fp16 (the weights were never loaded and training ran in bf16), and fast-bert's
    `(databunch, path, output_dir, metrics=...)` met Python's "got multiple values for argument 'metrics'".

    Args:
        own: the factory's own names for the places after `lead`, in order.
        fast_bert: fast-bert's names for the places after `fast_bert_at + len(fast_bert_lead)`, in order.
        lead: how many leading places the factory reads itself in its own order.
        fast_bert_at: the place whose path value marks a fast-bert call.
        fast_bert_lead: fast-bert's names for the places from `fast_bert_at` up to `fast_bert`'s.
    """
    def decorate(factory: Callable) -> Callable:
        @functools.wraps(factory)
        def call(cls: Any, *args: Any, **kwargs: Any) -> Any:
            # a str or Path there is fast-bert's output_dir: the factory's own order has metrics there (a list)
            fast = len(args) > fast_bert_at and isinstance(args[fast_bert_at], (str, Path))
            if not fast and len(args) <= lead:
                return factory(cls, *args, **kwargs)
            keep, names = (fast_bert_at, fast_bert_lead + fast_bert) if fast else (lead, own)
            order = "fast-bert" if fast else "its own"
            extra = args[keep:]
            if len(extra) > len(names):
                raise BertLearnError(f"{factory.__qualname__} takes at most {keep + len(names)} arguments by position "
                                     f"({order} order), got {len(args)}; pass the others by name")
            named = dict(zip(names, extra))
            twice = [k for k in named if k in kwargs]
            if twice:
                raise BertLearnError(f"{factory.__qualname__}: {twice} given both by position ({order} order) and "
                                     "by name; give each once")
            return factory(cls, *args[:keep], **named, **kwargs)
        return call
    return decorate


def fast_bert_validate_order(quiet: bool, dl: Any, cbs: Any, loss_only: bool, return_preds: bool) -> tuple:
    """validate's places 1-3 read in fast-bert's order (quiet, loss_only, return_preds) where they came in fastai's
    (ds_idx, dl, cbs), once the first is a bool (a loader index never is): validate(False) was ds_idx=0, the
    training set, and validate(True, True) took True for a loader. A bool in the later places is fast-bert's;
    a loader or callbacks given by name stay fastai's.

    Args:
        quiet: the bool given first (fast-bert's `quiet`).
        dl, cbs: what came in fastai's second and third places.
        loss_only, return_preds: the keyword values.

    Returns:
        ds_idx (1, the validation set), dl, cbs, quiet, loss_only, return_preds.
    """
    if isinstance(dl, bool):
        dl, loss_only = None, dl
    if isinstance(cbs, bool):
        cbs, return_preds = None, cbs
    return 1, dl, cbs, quiet, loss_only, return_preds


def fast_bert_fit_order(validate: bool, cbs: Any, reset_opt: Any, start_epoch: Any, return_results: bool,
                         schedule_type: str | None, optimizer_type: str | None) -> tuple:
    """fit's places 3-6 read in fast-bert's order (validate, return_results, schedule_type, optimizer_type) where
    they came in fastai's (wd, cbs, reset_opt, start_epoch): each place's value goes by its type, so a bool there is
    fast-bert's and callbacks, reset_opt=True or a start epoch given by name stay fastai's.

    Args:
        validate: the bool given third (fast-bert's `validate`).
        cbs, reset_opt, start_epoch: what came in fastai's fourth to sixth places.
        return_results, schedule_type, optimizer_type: the keyword values.

    Returns:
        wd, cbs, reset_opt, start_epoch, validate, return_results, schedule_type, optimizer_type.
    """
    if isinstance(cbs, bool):
        cbs, return_results = None, cbs
    if isinstance(reset_opt, str):
        reset_opt, schedule_type = False, reset_opt
    if isinstance(start_epoch, str):
        start_epoch, optimizer_type = 0, start_epoch
    return None, cbs, reset_opt, start_epoch, validate, return_results, schedule_type, optimizer_type


def fast_bert_lr_find_order(stop_div: Any, show_plot: Any, suggest_funcs: Any, optimizer_type: str | None,
                             num_iter: int | None) -> tuple:
    """lr_find's places 4-6 read in fast-bert's order (optimizer_type, num_iter, step_mode) where they came in
    fastai's (stop_div, show_plot, suggest_funcs), each by its type, as `fast_bert_fit_order` does.

    Args:
        stop_div, show_plot, suggest_funcs: what came in fastai's fourth to sixth places.
        optimizer_type, num_iter: the keyword values.

    Returns:
        num_it, stop_div, show_plot, suggest_funcs, optimizer_type, num_iter, step_mode.
    """
    step_mode = None
    if isinstance(stop_div, str):
        stop_div, optimizer_type = True, stop_div
    if isinstance(show_plot, int) and not isinstance(show_plot, bool):
        show_plot, num_iter = True, show_plot
    if isinstance(suggest_funcs, str):
        suggest_funcs, step_mode = None, suggest_funcs
    return 100, stop_div, show_plot, suggest_funcs, optimizer_type, num_iter, step_mode
