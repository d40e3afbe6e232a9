"""Training checkpoints: what `fit(checkpoint=True)` writes each epoch and `fit(resume=True)` reads back.

A checkpoint folder holds `model.safetensors` (weights), `optimizer.pt` (optimizer state, read back with
`weights_only=True`), `rng.safetensors` (torch RNG states), `state.json` (epochs done, schedule, Python
and numpy RNG states, the smoothed training loss) and, when an epoch ended part-way through a step of gradient
accumulation, `accumulated.safetensors` (the gradients summed so far, unscaled, which the resumed fit goes on adding
to). Nothing in it needs pickle to load. The folder is written under a temporary name and swapped in whole, so a kill
at any moment leaves the previous complete checkpoint.
"""

from __future__ import annotations

import hashlib
import json
import pickle
import random
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import torch
from fastcore.foundation import L

from .atomic import atomic_dir
from .errors import BertLearnError, user_stacklevel

__all__ = ["save_checkpoint", "load_checkpoint", "tracker_states", "restore_trackers", "read_checkpoint_state",
           "check_weights", "identity", "model_config", "model_source", "data_digest",
           "rng_states", "lr_json", "CHECKPOINT_FILES"]

CHECKPOINT_FILES = ("model.safetensors", "optimizer.pt", "rng.safetensors", "state.json")
ACCUMULATED_FILE = "accumulated.safetensors"  # gradients part-way accumulated at the epoch's end, when there are any


def lr_json(lr: Any) -> Any:
    """A fit's learning rate as JSON: a number, a list (per group), or a slice's ends; what a checkpoint records.

    Args:
        lr: a float, a slice, or one rate per parameter group.
    """
    if isinstance(lr, slice):
        return {"slice": [lr.start, lr.stop]}
    if isinstance(lr, (list, tuple)) or getattr(lr, "ndim", 0):
        return [float(v) for v in lr]
    return None if lr is None else float(lr)


def identity(learn: Any) -> dict:
    """What a checkpoint must match to be resumed into `learn`: its labels (in order: the head's rows), task, model
    class and configuration, its training rows and batch size, and the number of processes; its validation rows
    (where trackers scored on them are resumed); and the model's name or folder, which a resume only names where it
    differs.

    Args:
        learn: the `BertLearner`.
    """
    from .distributed import rank_world
    enc = getattr(learn.dls, "encoder", None)
    model = getattr(learn.model, "module", learn.model)
    train = learn.dls.train
    try:  # rows, not batches: under DDP the loader is sharded during the fit and whole before it
        rows = len(train.dataset)
    except (AttributeError, TypeError):  # a stream without a length
        rows = None
    return {"labels": [str(l) for l in getattr(enc, "labels", None) or []],
            "problem_type": getattr(enc, "problem_type", None), "model": type(model).__name__,
            "config": model_config(model),
            "name_or_path": model_source(model),
            "train_rows": rows, "train_data": data_digest(getattr(train, "dataset", None)), "bs": int(train.bs),
            # the trackers' best values were scored on it: another set's epochs compared against them
            "valid_data": data_digest(getattr(getattr(learn.dls, "valid", None), "dataset", None)),
            "processes": rank_world()[1]}


# config entries that are not the model's computation or are checked on their own: the head's labels and task (the
# labels check), where the model was loaded from (name_or_path), what wrote it (save_model adds the task's
# architecture), its dtype (bertlearn trains float32 weights whatever a config says: model.load_pretrained), and
# what a forward returns besides the logits (hidden states asked for to embed), which trains nothing else
_NOT_COMPUTATION = ("_name_or_path", "transformers_version", "architectures", "id2label", "label2id", "problem_type",
                    "dtype", "torch_dtype", "output_hidden_states", "output_attentions", "return_dict", "use_cache")


def model_config(model: Any) -> dict | None:
    """The model's Hugging Face configuration as JSON values, less what does not change its computation (its labels,
    where it was loaded from, the transformers version, the dtype); None for a model without one. Another dropout
    or activation of the same shapes is another run, which the weights check cannot see.

    Args:
        model: the model (unwrapped: a DDP module's own `.module`).
    """
    config = getattr(model, "config", None)
    if not hasattr(config, "to_json_string"):
        return None
    return {k: v for k, v in json.loads(config.to_json_string(use_diff=False)).items() if k not in _NOT_COMPUTATION}


def model_source(model: Any) -> str | None:
    """Where the model was loaded from: a hub name as given, a local folder as its absolute path (the same folder
    spelt "m", "./m" or "/abs/m" is one source); None for a model without a config.

    Args:
        model: the model (unwrapped).
    """
    name = getattr(getattr(model, "config", None), "_name_or_path", None)
    if not name:
        return None
    return str(Path(name).resolve()) if Path(name).is_dir() else str(name)


def data_digest(dataset: Any) -> str | None:
    """A digest of a dataset's token ids and targets (None for data that holds no id rows, e.g. a stream): the same
    count of other rows (another `valid_pct` split, an edited file) is another run.

    Args:
        dataset: a loader's dataset (an `EncodedDataset` or a subclass): the training or the validation set.
    """
    parts = [getattr(dataset, "ids", None), getattr(dataset, "targets", None)]
    if not hasattr(parts[0], "digest"):
        return None
    h = hashlib.blake2b(digest_size=16)
    for part in parts:
        if hasattr(part, "digest"):
            h.update(part.digest().encode())
        elif part is not None:
            h.update(np.ascontiguousarray(part).tobytes())
            h.update(str(np.asarray(part).dtype).encode())
    return h.hexdigest()


def rng_states() -> dict[str, torch.Tensor]:
    """This process's torch RNG states (CPU, and each CUDA device's): what a checkpoint restores per rank."""
    rng = {"torch": torch.get_rng_state()}
    if torch.cuda.is_available():
        rng.update({f"cuda{i}": s for i, s in enumerate(torch.cuda.get_rng_state_all())})
    return rng


def save_checkpoint(learn: Any, folder: str | Path, *, epochs_done: int, n_epoch: int, lr: Any = None,
                    fit: dict | None = None, rank_rngs: list[dict] | None = None, finished: bool = False) -> Path:
    """Write a complete checkpoint of `learn` into `folder` atomically.

    Args:
        learn: the `BertLearner`.
        folder: the checkpoint folder.
        epochs_done: epochs finished so far; n_epoch: epochs of the whole fit; lr: the fit's learning rate.
        fit: the fit's other settings (schedule, weight decay, optimizer...), which a resume must repeat.
        rank_rngs: every process's `rng_states()`, in rank order (DDP; None: this process's alone).
        finished: the fit is over (all its epochs, or stopped early by a callback such as early stopping): a resume
            loads it and trains nothing.
    """
    from safetensors.torch import save_file, save_model


    folder = Path(folder)
    with atomic_dir(folder) as tmp:
        save_model(getattr(learn.model, "module", learn.model), str(tmp / "model.safetensors"))  # DDP: the module
        # fastai's schedulers leave numpy scalars in param groups; plain numbers keep weights_only loading possible
        torch.save(_plain(learn.opt.state_dict()) if learn.opt is not None else {}, tmp / "optimizer.pt")
        ranks = rank_rngs or [rng_states()]
        rng = {k: v.clone() for k, v in ranks[0].items()}  # rank 0's under the plain names, as one process writes
        if len(ranks) > 1:
            rng.update({f"rank{r}.{k}": v for r, states in enumerate(ranks) for k, v in states.items()})
        save_file(rng, str(tmp / "rng.safetensors"))
        acc = _accumulation(learn)
        accumulated = int(getattr(acc, "count", 0) or 0)
        if accumulated:  # the epoch ended part-way through an accumulated step: its gradients go on in the resume
            named = getattr(learn.model, "module", learn.model).named_parameters()
            scaler = getattr(learn, "scaler", None)  # fp16: gradients carry the loss scale, which a resume resets
            scale = float(scaler.get_scale()) if scaler is not None else 1.0
            save_file({n: (p.grad.detach().float() / scale).contiguous() for n, p in named if p.grad is not None},
                      str(tmp / ACCUMULATED_FILE))
        np_state = np.random.get_state()
        smooth = getattr(getattr(learn, "recorder", None), "smooth_loss", None)
        state = {"epochs_done": epochs_done, "n_epoch": n_epoch, "lr": lr_json(lr), "fit": fit or {},
                 "accumulated": accumulated,
                 "accumulated_unit": getattr(acc, "accumulated_unit", "rows"),
                 # the step's denominators so far (its first batch's, and their sum in that unit), when its batches
                 # weigh by their denominators: the resumed step divides by the whole step's
                 "accumulated_weights": [float(acc.ref), float(acc.total)]
                 if accumulated and getattr(acc, "total", None) is not None else None,
                 "steps_done": int(getattr(learn, "steps_done", 0) or 0),
                 "trackers": tracker_states(learn),
                 # the smoothed training loss the epochs show and fit() returns (read here, once an epoch)
                 "smooth_loss": smooth.checkpoint_state() if hasattr(smooth, "checkpoint_state") else None,
                 "finished": finished or epochs_done >= n_epoch,
                 # fp16's loss scale and its growth count: a resume started from the initial scale, skipping again
                 # the overflowing steps the interrupted fit had found its scale with (other weights)
                 "scaler": _scaler_state(getattr(learn, "scaler", None)),
                 "identity": identity(learn),
                 "python_rng": _jsonable(random.getstate()),
                 "numpy_rng": [np_state[0], np_state[1].tolist(), *np_state[2:]],
                 "train_dl_rng": _jsonable(learn.dls.train.rng.getstate())}
        (tmp / "state.json").write_text(json.dumps(state))  # written last: its presence marks a whole checkpoint
    return folder


def _scaler_state(scaler: Any) -> dict | None:
    if scaler is None or not getattr(scaler, "is_enabled", lambda: False)():
        return None
    return dict(scaler.state_dict())  # plain numbers: the scale, its factors and growth count


def tracker_states(learn: Any) -> list[dict]:
    """The best value (and patience count) of each fastai tracker on `learn` (`SaveModelCallback`,
    `EarlyStoppingCallback`, `ReduceLROnPlateau`...), in callback order, as a checkpoint records them.

    Args:
        learn: the learner.
    """
    from fastai.callback.tracker import TrackerCallback
    out = []
    for cb in learn.cbs:
        if isinstance(cb, TrackerCallback) and cb.best is not None:
            out.append({"type": type(cb).__name__, "monitor": cb.monitor, "best": float(cb.best),
                        **({"wait": int(cb.wait)} if hasattr(cb, "wait") else {})})
    return out


def restore_trackers(learn: Any, saved: list[dict], folder: str | Path) -> None:
    """Put each tracker's best value and patience count back from a checkpoint's `saved` states (matched by type
    and monitored value, in order); a tracker the checkpoint has no record of starts afresh, which is said.

    Args:
        learn: the resumed learner, after its trackers' `before_fit` reset them.
        saved: `tracker_states` as the checkpoint recorded them.
        folder: the checkpoint folder, for the message.
    """
    from fastai.callback.tracker import TrackerCallback
    left = list(saved)
    fresh = []
    for cb in learn.cbs:
        if not isinstance(cb, TrackerCallback):
            continue
        match = next((s for s in left if s["type"] == type(cb).__name__ and s["monitor"] == cb.monitor), None)
        if match is None:
            fresh.append(f"{type(cb).__name__}(monitor={cb.monitor!r})")
            continue
        left.remove(match)
        cb.best = match["best"]
        if "wait" in match and hasattr(cb, "wait"):
            cb.wait = match["wait"]
    if fresh:
        warnings.warn(f"resume=True: the checkpoint in {str(folder)!r} has no record of {', '.join(fresh)} (it was not "
                      "in the interrupted fit, or the checkpoint predates tracker records), so it compares only the "
                      "resumed epochs", stacklevel=user_stacklevel())


def _accumulation(learn: Any) -> Any:
    # callbacks.StepAccumulation (known by its resume_count; callbacks imports this module): fastai's own
    # GradientAccumulation restarts its count at every fit, so with it a resume starts a step afresh
    return next((cb for cb in learn.cbs if hasattr(cb, "resume_count") and hasattr(cb, "n_acc")), None)


def _plain(obj: Any) -> Any:
    if isinstance(obj, dict):
        return {k: _plain(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return type(obj)(_plain(v) for v in obj)
    if isinstance(obj, L):  # fastai's own optimizers (lamb, ranger...) keep their hyper-parameters in an L
        return [_plain(v) for v in obj]
    return obj.item() if isinstance(obj, np.generic) else obj


def _jsonable(state: Any) -> Any:
    return [_jsonable(s) for s in state] if isinstance(state, (tuple, list)) else state


def _tupled(state: Any) -> Any:
    return tuple(_tupled(s) for s in state) if isinstance(state, list) else state


def read_checkpoint_state(folder: str | Path) -> dict:
    """A checkpoint's `state.json` (epochs done, the fit's settings, what it belongs to), read before anything is
    restored, so a resume can refuse a checkpoint without touching the learner.

    Args:
        folder: a folder written by `save_checkpoint`.
    """
    folder = Path(folder)
    missing = [f for f in CHECKPOINT_FILES if not (folder / f).is_file()]
    if missing:
        raise BertLearnError(f"checkpoint {str(folder)!r} is incomplete (missing {missing}); delete it to start over")
    try:
        return json.loads((folder / "state.json").read_text())
    except (OSError, ValueError) as e:
        raise BertLearnError(f"checkpoint {str(folder)!r} cannot be read ({type(e).__name__}: {e}); delete it to start "
                             "over") from e


def check_weights(model: Any, file: str | Path) -> None:
    """Raise unless every tensor in the safetensors `file` has its name and shape in `model` and every tensor of
    `model` is in it (or shares storage with one that is: tied weights), before any is copied: torch's own
    loading copies the tensors that fit before it raises on the others, leaving a half-restored model.

    Args:
        model: the module to load into (unwrapped: a DDP module's own `.module`).
        file: a safetensors file written by `save_model`.
    """
    from safetensors import safe_open
    own = model.state_dict()
    with safe_open(str(file), framework="pt") as f:
        shapes = {k: tuple(f.get_slice(k).get_shape()) for k in f.keys()}
    stored = {own[k].data_ptr() for k in shapes if k in own}
    unknown = [k for k in shapes if k not in own]
    wrong = [f"{k}: {list(shapes[k])} in the checkpoint, {list(own[k].shape)} here" for k in shapes
             if k in own and tuple(own[k].shape) != shapes[k]]
    absent = [k for k, t in own.items() if k not in shapes and t.data_ptr() not in stored]
    if unknown or wrong or absent:
        what = wrong[:3] + [f"{k} only in the checkpoint" for k in unknown[:3]] + [f"{k} not in the checkpoint"
                                                                                    for k in absent[:3]]
        raise BertLearnError(f"checkpoint {str(Path(file).parent)!r} holds another model's weights "
                             f"({len(wrong) + len(unknown) + len(absent)} tensors differ: {'; '.join(what)}); resume "
                             "with the model and labels that wrote it, or delete the folder to start over")


def load_checkpoint(learn: Any, folder: str | Path) -> dict:
    """Restore weights, optimizer state and RNG states from `folder`; return its `state.json`. The weights are
    checked against the model before any is copied (`check_weights`).

    Args:
        learn: the `BertLearner` to restore into (same architecture and labels).
        folder: a folder written by `save_checkpoint`.
    """
    from safetensors import SafetensorError
    from safetensors.torch import load_file, load_model

    folder = Path(folder)
    state = read_checkpoint_state(folder)
    model = getattr(learn.model, "module", learn.model)
    try:
        check_weights(model, folder / "model.safetensors")
    except (OSError, SafetensorError) as e:
        raise BertLearnError(f"checkpoint {str(folder)!r} cannot be read ({type(e).__name__}: {e}); delete it to start "
                             "over") from e
    try:  # everything read before anything is restored: a file that fails leaves the learner as it was
        opt_state = torch.load(folder / "optimizer.pt", weights_only=True, map_location="cpu")
        rng = load_file(str(folder / "rng.safetensors"))
        accumulated = int(state.get("accumulated", 0))
        grads = load_file(str(folder / ACCUMULATED_FILE)) if accumulated else {}
        load_model(model, str(folder / "model.safetensors"), device=str(next(model.parameters()).device))
    except (OSError, ValueError, RuntimeError, EOFError, pickle.UnpicklingError, SafetensorError,
            json.JSONDecodeError) as e:
        raise BertLearnError(f"checkpoint {str(folder)!r} cannot be read ({type(e).__name__}: {e}); delete it to start "
                             "over") from e
    for p in model.parameters():  # an interrupted fit's gradients must not flow into the resumed first step
        p.grad = None
    acc = _accumulation(learn)
    if acc is not None:  # StepAccumulation takes them up when the resumed fit starts training (see there)
        if accumulated and getattr(acc, "batches", None) and state.get("accumulated_unit", "rows") == "rows":
            # written when bertlearn's StepAccumulation counted rows (of the global batch under DDP): as batches,
            # whole ones of the fit's global batch size, a short one counted as one
            processes = int((state.get("identity") or {}).get("processes", 1))
            accumulated = -(-accumulated // (max(int(getattr(learn.dls.train, "bs", 1) or 1), 1) * processes))
        acc.resume_count, acc.resume_grads = accumulated, grads
        weights = state.get("accumulated_weights")
        acc.resume_weights = tuple(weights) if accumulated and weights else None
    if learn.opt is None:
        learn.create_opt()
    if opt_state:
        was_l = isinstance(getattr(learn.opt, "hypers", None), L)
        learn.opt.load_state_dict(opt_state)
        if was_l and isinstance(learn.opt.hypers, list):  # saved as a list (see _plain): as it was
            learn.opt.hypers = L(learn.opt.hypers)
    from .distributed import rank_world
    rank = rank_world()[0]
    if f"rank{rank}.torch" in rng:  # a DDP checkpoint: this rank's own states
        rng = {k.partition(".")[2]: v for k, v in rng.items() if k.startswith(f"rank{rank}.")}
    torch.set_rng_state(rng["torch"])
    cuda = [rng[k] for k in sorted((k for k in rng if k.startswith("cuda")), key=lambda k: int(k[4:]))]
    if cuda and torch.cuda.is_available():  # the devices this process has (a checkpoint may come from more)
        torch.cuda.set_rng_state_all(cuda[:torch.cuda.device_count()])
    random.setstate(_tupled(state["python_rng"]))
    kind, keys, *rest = state["numpy_rng"]
    np.random.set_state((kind, np.asarray(keys, dtype=np.uint32), *rest))
    learn.dls.train.rng.setstate(_tupled(state["train_dl_rng"]))
    return state
