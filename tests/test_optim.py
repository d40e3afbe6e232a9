"""The AdamW wrapper: PyTorch's multi-tensor step under fastai's groups, without decay on biases and LayerNorm."""

from __future__ import annotations

import pytest
import torch
from conftest import quiet_fit
from fastai.callback.core import Callback

from bertlearn.optim import DecayGroupsOptimWrapper, decays



class Snapshot(Callback):
    """Record the PyTorch optimizer's groups at the first step (the one-cycle values then)."""

    order = 99

    def before_step(self):
        if not hasattr(self, "groups"):
            self.groups = [{k: v for k, v in pg.items() if k != "params"} for pg in self.learn.opt.opt.param_groups]


def test_each_splitter_group_has_a_twin_without_weight_decay(tiny_learner):
    snap = Snapshot()
    quiet_fit(tiny_learner, 1, lr=1e-3, wd=0.1, cbs=[snap])
    opt = tiny_learner.opt
    n = len(tiny_learner.splitter(tiny_learner.model))
    assert isinstance(opt, DecayGroupsOptimWrapper) and len(opt.opt.param_groups) == 2 * n == 2 * len(opt.hypers)
    assert [pg["weight_decay"] for pg in snap.groups] == [0.1, 0.0] * n
    decayed = {id(p) for pg in opt.opt.param_groups[::2] for p in pg["params"]}
    for name, p in tiny_learner.model.named_parameters():
        assert (id(p) in decayed) == ("bias" not in name and "LayerNorm" not in name), name
    # fastai's one-cycle schedule reaches both twins: same lr and momentum
    for a, b in zip(snap.groups[::2], snap.groups[1::2]):
        assert a["lr"] == b["lr"] and a["betas"] == b["betas"]


def test_decay_shrinks_matrices_only(tiny_learner):
    tiny_learner.create_opt()
    opt = tiny_learner.opt
    opt.set_hypers(lr=0.1, wd=0.5)
    params = [p for p in tiny_learner.model.parameters()]
    before = [p.detach().clone() for p in params]
    for p in params:
        p.grad = torch.zeros_like(p)  # Adam's own update is then zero: only decay moves a parameter
    opt.step()
    for p, b in zip(params, before):
        expected = b * (1 - 0.1 * 0.5) if decays(p) else b
        torch.testing.assert_close(p.detach(), expected)


def test_discriminative_rates_and_freezing_follow_splitter_groups(tiny_learner):
    snap = Snapshot()
    quiet_fit(tiny_learner, 1, lr=slice(1e-5, 1e-3), cbs=[snap])
    lrs = [pg["lr"] for pg in snap.groups]
    assert lrs[::2] == lrs[1::2] and lrs[0] < lrs[-2]
    assert lrs[-2] == pytest.approx(1e-3 / 25, rel=1e-6)  # one-cycle starts at lr / div
    tiny_learner.freeze_to(-1)
    head = set(map(id, tiny_learner.opt.param_lists[-1]))
    for name, p in tiny_learner.model.named_parameters():
        # fastai's train_bn keeps normalization weights trainable in frozen groups
        assert p.requires_grad == (id(p) in head or "LayerNorm" in name), name
    tiny_learner.unfreeze()
