"""The AdamW wrapper: PyTorch's fused step under fastai's groups (merged where options agree), without decay on biases and LayerNorm."""

from __future__ import annotations

from functools import partial

import pytest
import torch
from conftest import quiet_fit
from fastai.callback.core import Callback

from bertlearn.optim import DecayGroupsOptimWrapper, decays, merged_groups



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


def test_wd_bn_bias_true_decays_biases_and_layernorm_too(tiny_databunch, tiny_model_dir, tmp_path):
    # before: fastai's Learner(wd_bn_bias=True) was taken and did nothing (the twins kept weight_decay 0)
    from bertlearn import BertLearner
    learner = BertLearner.from_pretrained_model(tiny_databunch, str(tiny_model_dir), metrics=None, device="cpu",
                                                logger=None, output_dir=tmp_path / "out", wd_bn_bias=True)
    learner.create_opt()
    learner.opt.set_hypers(lr=0.1, wd=0.5)
    params = [p for p in learner.model.parameters()]
    assert any(not decays(p) for p in params)
    before = [p.detach().clone() for p in params]
    for p in params:
        p.grad = torch.zeros_like(p)
    learner.opt.step()
    for p, b in zip(params, before):
        torch.testing.assert_close(p.detach(), b * (1 - 0.1 * 0.5))
    learner.opt.param_lists = learner.opt.param_lists  # a later assignment keeps the choice
    assert all(not pg["params"] for pg in learner.opt.opt.param_groups[1::2])


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


def _layers(seed: int = 0) -> list[list[torch.nn.Parameter]]:
    """Three "splitter groups" of four parameters each: two matrices, two vectors."""
    g = torch.Generator().manual_seed(seed)
    return [[torch.nn.Parameter(torch.randn(3, 5, generator=g) if i % 2 == 0 else torch.randn(5, generator=g))
             for i in range(4)] for _ in range(3)]


def _twin_groups(layers, lrs) -> list[dict]:
    """What DecayGroupsOptimWrapper hands PyTorch: per layer, the matrices with decay, the vectors without."""
    out = []
    for layer, lr in zip(layers, lrs):
        out.append({"params": [p for p in layer if p.ndim == 2], "lr": lr})
        out.append({"params": [p for p in layer if p.ndim == 1], "lr": lr, "weight_decay": 0.0})
    return out


@pytest.mark.parametrize("impl", [{"fused": True}, {"foreach": True}, {"foreach": False}])
def test_merged_step_matches_pytorch_adamw_group_by_group_bit_for_bit(impl):
    lrs = [1e-3, 1e-3, 5e-3]
    ref_layers, layers = _layers(), _layers()
    ref = torch.optim.AdamW(_twin_groups(ref_layers, lrs), weight_decay=0.1, **impl)
    opt = DecayGroupsOptimWrapper(layers, partial(torch.optim.AdamW, **impl), lr=1e-3, weight_decay=0.1)
    opt.set_hyper("lr", lrs)
    ref_params, params = [p for l in ref_layers for p in l], [p for l in layers for p in l]
    g = torch.Generator().manual_seed(1)
    for step in range(4):
        for p, q in zip(ref_params, params):
            p.grad = torch.randn(p.shape, generator=g)
            q.grad = p.grad.clone()
        if step == 2:
            params[0].grad = ref_params[0].grad = None  # a parameter without a gradient is skipped, as in AdamW
        ref.step()
        opt.step()
        for p, q in zip(ref_params, params):
            assert torch.equal(p, q)
    # the groups and the state are PyTorch's, untouched by the merging
    assert [len(pg["params"]) for pg in opt.opt.param_groups] == [len(pg["params"]) for pg in ref.param_groups]
    a, b = ref.state_dict(), opt.opt.state_dict()
    assert a["param_groups"] == b["param_groups"]
    assert a["state"].keys() == b["state"].keys()
    for k in a["state"]:
        for name in ("step", "exp_avg", "exp_avg_sq"):
            assert torch.equal(a["state"][k][name], b["state"][k][name])


def _count_adam_calls(monkeypatch) -> list:
    import torch.optim.adam as adam_module
    calls, real = [], adam_module.adam
    monkeypatch.setattr(adam_module, "adam", lambda *a, **k: calls.append((k["lr"], k["weight_decay"], len(a[0])))
                        or real(*a, **k))
    return calls


def test_one_adam_call_per_distinct_options(monkeypatch):
    opt = DecayGroupsOptimWrapper(_layers(), partial(torch.optim.AdamW, fused=True), lr=1e-3, weight_decay=0.1)
    opt.set_hyper("lr", [1e-3, 1e-3, 5e-3])
    for p in (p for pg in opt.opt.param_groups for p in pg["params"]):
        p.grad = torch.ones_like(p)
    calls = _count_adam_calls(monkeypatch)
    opt.step()
    # six groups, four distinct (lr, weight decay) pairs: the first two layers' rates are equal
    assert sorted(calls) == [(1e-3, 0.0, 4), (1e-3, 0.1, 4), (5e-3, 0.0, 2), (5e-3, 0.1, 2)]
    assert len(opt.opt.param_groups) == 6
    calls.clear()
    opt.opt.param_groups[0]["betas"] = [0.9, 0.99]  # a list cannot be a key: group by group, as PyTorch does
    opt.step()
    assert len(calls) == 6


def test_merged_groups_keeps_order_and_leaves_groups_alone():
    a, b, c = (torch.nn.Parameter(torch.zeros(2)) for _ in range(3))
    groups = [{"params": [a], "lr": 1.0, "eps": 1e-8}, {"params": [b], "eps": 1e-8, "lr": 2.0},
              {"params": [c], "eps": 1e-8, "lr": 1.0}]  # key order differs: still equal options
    merged = merged_groups(groups)
    assert [[id(p) for p in g["params"]] for g in merged] == [[id(a), id(c)], [id(b)]]
    assert [len(g["params"]) for g in groups] == [1, 1, 1]
    assert merged_groups(groups[:2]) is None  # nothing to join
    lr = torch.tensor(1.0)
    assert merged_groups([{"params": [a], "lr": lr}, {"params": [b], "lr": torch.tensor(1.0)}]) is None
    assert len(merged_groups([{"params": [a], "lr": lr}, {"params": [b], "lr": lr}])) == 1  # the same tensor
    assert merged_groups([{"params": [a], "lr": 1.0}, {"params": [b], "lr": 1.0, "extra": 1}]) is None
    assert merged_groups([{"params": [a], "lr": 1.0, "eps": 1}, {"params": [b], "lr": 1.0, "extra": 1}]) is None


def test_fit_steps_splitter_groups_in_two_calls(tiny_learner, monkeypatch):
    calls = _count_adam_calls(monkeypatch)
    quiet_fit(tiny_learner, 1, lr=1e-3)
    assert len(tiny_learner.opt.opt.param_groups) >= 4
    assert len(calls) == 2 * len(tiny_learner.dls.train)  # decayed and not decayed, whatever the number of groups
    assert sum(n for *_, n in calls[:2]) == sum(1 for p in tiny_learner.model.parameters() if p.requires_grad)


def test_hypers_read_like_fastais_list_one_group_at_a_time(tiny_learner):
    from fastai.optimizer import detuplify_pg
    tiny_learner.create_opt()
    opt = tiny_learner.opt
    opt.set_hyper("lr", [1e-5 * (i + 1) for i in range(len(opt.hypers))])
    expected = [{opt.fwd_map.get(k, k): v for k, v in detuplify_pg(pg).items() if k != "params"}
                for pg in opt.opt.param_groups[::2]]
    hypers = opt.hypers
    assert len(hypers) == len(expected) >= 2 and list(hypers) == expected
    assert hypers[-1] == expected[-1] and hypers[0]["lr"] == 1e-5 and hypers[-1]["mom"] == expected[-1]["mom"]
    assert hypers[1:] == expected[1:] and repr(hypers) == repr(expected)
    with pytest.raises(IndexError, match="out of range"):
        hypers[len(expected)]
    # a view: what set_hyper changes shows at the next read
    opt.set_hyper("lr", 3e-4)
    assert [h["lr"] for h in hypers] == [3e-4] * len(expected)
