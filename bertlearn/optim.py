"""The optimizer: PyTorch's fused AdamW inside fastai, with weight decay only where it belongs.

fastai's own Adam updates each parameter in a Python loop; for a BERT that is hundreds of small kernel
launches per step, which is host time the GPU waits on. PyTorch's AdamW does the step in one fused kernel, on
CUDA and on CPU. fastai wraps such optimizers in `OptimWrapper`, but the wrapper loses one thing
fastai's own optimizers do: `Learner(wd_bn_bias=False)` marks normalization and bias parameters `do_wd=False`
in a state the PyTorch optimizer never reads, so they would be decayed too (and `wd_bn_bias=True` would do nothing
either way). `DecayGroupsOptimWrapper` keeps
fastai's groups (one per splitter group, for discriminative rates, `freeze_to` and one-cycle) and gives each a
PyTorch twin group without weight decay for its 1-D parameters (biases, LayerNorm weights), as BERT's recipe
and the Hugging Face Trainer do.

Those groups cost host time of their own: PyTorch steps each group with its own kernel call and Python
bookkeeping, and a bert-base split per layer has 28. `DecayGroupsOptimWrapper.step` hands PyTorch's Adam/AdamW
the groups merged by equal options for the length of the step, so a fit with one learning rate makes two
calls per step (decayed and not decayed), whatever the number of groups.
"""

from __future__ import annotations

from collections.abc import Sequence
from functools import partial
from typing import Any

import torch
from fastai.optimizer import OptimWrapper, detuplify_pg, set_item_pg

from .errors import BertLearnError

__all__ = ["DecayGroupsOptimWrapper", "GroupHypers", "adamw", "decays", "merged_groups", "opt_func_for", "OPTIMIZERS"]


def decays(p: torch.Tensor) -> bool:
    """Whether `p` gets weight decay: matrices do; biases and normalization weights (1-D) do not.

    Args:
        p: a parameter.
    """
    return p.ndim >= 2


def merged_groups(groups: list[dict]) -> list[dict] | None:
    """`groups` with those of equal options (all keys but "params") joined into one, in first-seen order; None
    when there is nothing to join, the groups have different option names, or an option cannot be a key (a list).

    Args:
        groups: a PyTorch optimizer's `param_groups`.
    """
    if len(groups) < 2:
        return None
    names = [k for k in groups[0] if k != "params"]
    merged: dict[tuple, dict] = {}
    try:
        for group in groups:
            if len(group) != len(names) + 1:
                return None
            # a tensor option (a tensor lr) hashes by identity, so it joins only groups holding the same tensor
            key = tuple([group[k] for k in names])
            into = merged.get(key)
            if into is None:
                merged[key] = {**group, "params": list(group["params"])}
            else:
                into["params"].extend(group["params"])
    except (KeyError, TypeError):
        return None
    return list(merged.values()) if len(merged) < len(groups) else None


class GroupHypers(Sequence):
    """A `DecayGroupsOptimWrapper`'s hyper-parameters, one dict per fastai group, read from the PyTorch groups when
    indexed (what fastai's `OptimWrapper.hypers` returns as a list, built in full on every read). Like that list,
    the dicts are copies: change options with `set_hyper`.

    Args:
        wrapper: the optimizer wrapper.
    """

    def __init__(self, wrapper: "DecayGroupsOptimWrapper"):
        self._wrapper = wrapper

    def __len__(self) -> int:
        return len(self._wrapper.opt.param_groups) // 2

    def __getitem__(self, i: Any) -> Any:
        if isinstance(i, slice):
            return [self[j] for j in range(*i.indices(len(self)))]
        n = len(self)
        if not -n <= i < n:
            raise IndexError(f"group {i} out of range: the optimizer has {n} groups")
        return self._wrapper._hyper_dict(self._wrapper.opt.param_groups[2 * (i % n)])

    def __repr__(self) -> str:
        return repr(list(self))


class DecayGroupsOptimWrapper(OptimWrapper):
    """fastai `OptimWrapper` whose PyTorch optimizer holds two groups per fastai group: the decayed parameters,
    and the others with `weight_decay` pinned to 0. fastai sees and schedules one group per splitter group.

    Args:
        params: parameters, or a list of parameter lists (one per splitter group).
        opt: a PyTorch optimizer class or factory taking param groups and keyword options.
        **kwargs: options for `opt` (lr, weight_decay, eps...).
    """

    def __init__(self, params: Any, opt: Any, **kwargs: Any):
        groups = list(params)
        if groups and isinstance(groups[0], torch.Tensor):
            groups = [groups]
        torch_groups = []
        for group in groups:
            group = list(group)
            torch_groups.append({"params": [p for p in group if decays(p)]})
            torch_groups.append({"params": [p for p in group if not decays(p)], "weight_decay": 0.0})
        super().__init__(opt=opt(torch_groups, **kwargs))
        self.decay_1d = False

    def decay_everything(self) -> None:
        """Decay biases and normalization weights too, as fastai's `Learner(wd_bn_bias=True)` asks: each fastai
        group's parameters move into its decayed PyTorch group, and its twin is left empty (for good: a later
        `param_lists` assignment follows this choice)."""
        self.decay_1d = True
        self.param_lists = self.param_lists

    def step(self, closure: Any = None) -> Any:
        """One optimizer step; for PyTorch's Adam and AdamW, one kernel call per distinct set of options.

        Adam's update is elementwise and each parameter keeps its own state (moments, step count), so stepping
        the merged groups gives the same parameters, bit for bit, as stepping group by group. The groups are
        swapped back before this returns: `param_groups`, `state_dict` and fastai's schedules never see the
        merged ones (step hooks registered on the PyTorch optimizer do).

        Args:
            closure: re-evaluates the loss, as PyTorch optimizers take it (fastai passes none).
        """
        opt = self.opt
        merged = merged_groups(opt.param_groups) if isinstance(opt, torch.optim.Adam) else None
        if merged is None:
            return opt.step(closure)
        groups, opt.param_groups = opt.param_groups, merged
        try:
            return opt.step(closure)
        finally:
            opt.param_groups = groups

    @property
    def hypers(self) -> "GroupHypers":
        # fastai reads this five times per batch (set_hyper's length check, ParamScheduler, Recorder), mostly for
        # its length or its last group: a view that builds a group's dict only when that group is asked for
        return GroupHypers(self)

    def _hyper_dict(self, pg: dict) -> dict:
        """One group's options as fastai names them: what fastai's `OptimWrapper.hypers` gives for it."""
        return {self.fwd_map.get(k, k): v for k, v in detuplify_pg(pg).items()}

    def _set_hyper(self, k: str, v: Any) -> None:
        name = self.bwd_map[k]
        for i, value in enumerate(v):
            set_item_pg(self.opt.param_groups[2 * i], name, value)
            if name != "weight_decay":  # the twin group never decays
                set_item_pg(self.opt.param_groups[2 * i + 1], name, value)

    @property
    def param_lists(self) -> list[list[torch.Tensor]]:
        pgs = self.opt.param_groups
        return [pgs[i]["params"] + pgs[i + 1]["params"] for i in range(0, len(pgs), 2)]

    @param_lists.setter
    def param_lists(self, v: list[list[torch.Tensor]]) -> None:
        for i, group in enumerate(v):
            self.opt.param_groups[2 * i]["params"] = [p for p in group if self.decay_1d or decays(p)]
            self.opt.param_groups[2 * i + 1]["params"] = [p for p in group if not (self.decay_1d or decays(p))]


def adamw(params: Any, **kwargs: Any) -> DecayGroupsOptimWrapper:
    """fastai `opt_func` for PyTorch's AdamW: one fused kernel per step (CUDA and CPU), no weight
    decay on biases and LayerNorm weights (the recipe BERT was trained with, and fastai's `wd_bn_bias=False`); a
    learner built with `wd_bn_bias=True` decays them too (`DecayGroupsOptimWrapper.decay_everything`).

    Args:
        params: fastai's parameter groups (one list per splitter group).
        **kwargs: PyTorch AdamW options, under fastai's names where it has one (lr, mom, sqr_mom, wd, eps).
    """
    groups = list(params)
    flat = [p for group in groups for p in (group if isinstance(group, (list, tuple)) else [group])]
    # the fused kernel exists for CUDA and CPU; on a CPU it is 4x faster than the multi-tensor one (15 vs 65 ms
    # per step for MiniLM's 22.7M parameters on 2 cores), a fifth of a whole training step
    fused = bool(flat) and all(p.device.type in ("cuda", "cpu") for p in flat)
    return DecayGroupsOptimWrapper(groups, partial(torch.optim.AdamW, **({"fused": True} if fused else {"foreach": True})),
                                   **kwargs)


OPTIMIZERS = ("adamw", "lamb")


def opt_func_for(optimizer_type: str, eps: float = 1e-8) -> Any:
    """The fastai `opt_func` for fast-bert's `optimizer_type`: "adamw" (`adamw`, PyTorch's fused AdamW) or "lamb"
    (fastai's `Lamb`).

    Args:
        optimizer_type: "adamw" or "lamb".
        eps: the optimizer's epsilon (fast-bert's `adam_epsilon`).
    """
    if optimizer_type == "adamw":
        return partial(adamw, eps=eps)
    if optimizer_type == "lamb":
        from fastai.optimizer import Lamb
        return partial(Lamb, eps=eps)
    raise BertLearnError(f"optimizer_type={optimizer_type!r} is not one of {list(OPTIMIZERS)}")
