"""fast-bert compatibility: the arguments fast-bert code passes that have no effect here, said once, with why.

bertlearn accepts fast-bert's calls verbatim (docs/migration.md). Most of fast-bert's arguments map to something
(`warmup_steps` sets the warm-up, `optimizer_type` the optimizer, `schedule_type` the schedule...); the ones
listed in `NO_EFFECT` cannot, because bertlearn does the thing another way. Passing one of them asks for
something that will not happen, so `note_no_effect` names it, once per process and argument, in a
`FastBertCompatWarning` (a `UserWarning`: `warnings.filterwarnings("ignore", category=FastBertCompatWarning)`
silences them). It imports only the leaf `errors` from bertlearn.
"""

from __future__ import annotations

import warnings
from typing import Any, Callable

from .errors import user_stacklevel

__all__ = ["FastBertCompatWarning", "NO_EFFECT", "note_no_effect"]


class FastBertCompatWarning(UserWarning):
    """A fast-bert argument that bertlearn accepts but that has no effect here."""


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
