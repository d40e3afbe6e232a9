"""Training checkpoints: what `fit(checkpoint=True)` writes each epoch and `fit(resume=True)` reads back.

A checkpoint folder holds `model.safetensors` (weights), `optimizer.pt` (optimizer state, read back with
`weights_only=True`), `rng.safetensors` (torch RNG states) and `state.json` (epochs done, schedule, Python
and numpy RNG states). Nothing in it needs pickle to load. The folder is written under a temporary name and
swapped in whole, so a kill at any moment leaves the previous complete checkpoint.
"""

from __future__ import annotations

import json
import random
from pathlib import Path
from typing import Any

import numpy as np
import torch

from .atomic import atomic_dir
from .errors import BertLearnError

__all__ = ["save_checkpoint", "load_checkpoint", "lr_json", "CHECKPOINT_FILES"]

CHECKPOINT_FILES = ("model.safetensors", "optimizer.pt", "rng.safetensors", "state.json")


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


def save_checkpoint(learn: Any, folder: str | Path, *, epochs_done: int, n_epoch: int, lr: Any = None) -> Path:
    """Write a complete checkpoint of `learn` into `folder` atomically.

    Args:
        learn: the `BertLearner`.
        folder: the checkpoint folder.
        epochs_done: epochs finished so far; n_epoch: epochs of the whole fit; lr: the fit's learning rate.
    """
    from safetensors.torch import save_file, save_model


    folder = Path(folder)
    with atomic_dir(folder) as tmp:
        save_model(getattr(learn.model, "module", learn.model), str(tmp / "model.safetensors"))  # DDP: the module
        # fastai's schedulers leave numpy scalars in param groups; plain numbers keep weights_only loading possible
        torch.save(_plain(learn.opt.state_dict()) if learn.opt is not None else {}, tmp / "optimizer.pt")
        rng = {"torch": torch.get_rng_state()}
        if torch.cuda.is_available():
            rng.update({f"cuda{i}": s for i, s in enumerate(torch.cuda.get_rng_state_all())})
        save_file(rng, str(tmp / "rng.safetensors"))
        np_state = np.random.get_state()
        state = {"epochs_done": epochs_done, "n_epoch": n_epoch, "lr": lr_json(lr),
                 "python_rng": _jsonable(random.getstate()),
                 "numpy_rng": [np_state[0], np_state[1].tolist(), *np_state[2:]],
                 "train_dl_rng": _jsonable(learn.dls.train.rng.getstate())}
        (tmp / "state.json").write_text(json.dumps(state))  # written last: its presence marks a whole checkpoint
    return folder


def _plain(obj: Any) -> Any:
    if isinstance(obj, dict):
        return {k: _plain(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return type(obj)(_plain(v) for v in obj)
    return obj.item() if isinstance(obj, np.generic) else obj


def _jsonable(state: Any) -> Any:
    return [_jsonable(s) for s in state] if isinstance(state, (tuple, list)) else state


def _tupled(state: Any) -> Any:
    return tuple(_tupled(s) for s in state) if isinstance(state, list) else state


def load_checkpoint(learn: Any, folder: str | Path) -> dict:
    """Restore weights, optimizer state and RNG states from `folder`; return its `state.json`.

    Args:
        learn: the `BertLearner` to restore into (same architecture and labels).
        folder: a folder written by `save_checkpoint`.
    """
    from safetensors import SafetensorError
    from safetensors.torch import load_file, load_model

    folder = Path(folder)
    missing = [f for f in CHECKPOINT_FILES if not (folder / f).is_file()]
    if missing:
        raise BertLearnError(f"checkpoint {str(folder)!r} is incomplete (missing {missing}); delete it to start over")
    try:
        state = json.loads((folder / "state.json").read_text())
        model = getattr(learn.model, "module", learn.model)
        load_model(model, str(folder / "model.safetensors"), device=str(next(model.parameters()).device))
        opt_state = torch.load(folder / "optimizer.pt", weights_only=True, map_location="cpu")
        rng = load_file(str(folder / "rng.safetensors"))
    except (OSError, ValueError, RuntimeError, SafetensorError, json.JSONDecodeError) as e:
        raise BertLearnError(f"checkpoint {str(folder)!r} cannot be read ({type(e).__name__}: {e}); delete it to start "
                             "over") from e
    if learn.opt is None:
        learn.create_opt()
    if opt_state:
        learn.opt.load_state_dict(opt_state)
    torch.set_rng_state(rng["torch"])
    cuda = [rng[k] for k in sorted(k for k in rng if k.startswith("cuda"))]
    if cuda and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(cuda)
    random.setstate(_tupled(state["python_rng"]))
    kind, keys, *rest = state["numpy_rng"]
    np.random.set_state((kind, np.asarray(keys, dtype=np.uint32), *rest))
    learn.dls.train.rng.setstate(_tupled(state["train_dl_rng"]))
    return state
