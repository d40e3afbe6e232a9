"""The losses: fastai's flattened losses, same values and decoding, on plain tensors."""

from __future__ import annotations

import pickle

import fastai.losses as fl
import pytest
import torch
from conftest import quiet_fit
from fastai.torch_core import TensorBase

from bertlearn.losses import BCEWithLogitsLossFlat, CrossEntropyLossFlat, MSELossFlat


def _cases():
    g = torch.Generator().manual_seed(0)
    logits = torch.randn(6, 3, generator=g)
    return [
        (CrossEntropyLossFlat(), fl.CrossEntropyLossFlat(), logits, torch.tensor([0, 2, 1, 1, 0, 2])),
        (CrossEntropyLossFlat(weight=torch.tensor([1.0, 2.0, 0.5])),
         fl.CrossEntropyLossFlat(weight=torch.tensor([1.0, 2.0, 0.5])), logits, torch.tensor([0, 2, 1, 1, 0, 2], dtype=torch.int32)),
        (BCEWithLogitsLossFlat(), fl.BCEWithLogitsLossFlat(), logits, (torch.rand(6, 3, generator=g) > 0.5).float()),
        (BCEWithLogitsLossFlat(pos_weight=torch.tensor([1.0, 3.0, 2.0])),
         fl.BCEWithLogitsLossFlat(pos_weight=torch.tensor([1.0, 3.0, 2.0])), logits, (torch.rand(6, 3, generator=g) > 0.5).float()),
        (MSELossFlat(), fl.MSELossFlat(), logits[:, :1], torch.randn(6, generator=g)),
    ]


@pytest.mark.parametrize("i", range(5))
def test_same_loss_gradient_and_decoding_as_fastai_on_plain_tensors(i):
    ours, theirs, inp, targ = _cases()[i]
    a, b = inp.clone().requires_grad_(), inp.clone().requires_grad_()
    mine, ref = ours(a, targ), theirs(b, targ)
    assert type(mine) is torch.Tensor and isinstance(ref, TensorBase)
    torch.testing.assert_close(mine, ref.as_subclass(torch.Tensor), rtol=0, atol=0)
    mine.backward()
    ref.backward()
    assert torch.equal(a.grad, b.grad)
    assert torch.equal(ours.activation(inp), theirs.activation(inp))
    assert torch.equal(ours.decodes(inp), theirs.decodes(inp))
    assert repr(ours) == repr(theirs)


def test_subclass_inputs_come_out_plain():
    out = CrossEntropyLossFlat()(TensorBase(torch.randn(4, 2)), TensorBase(torch.tensor([0, 1, 1, 0])))
    assert type(out) is torch.Tensor


def test_reduction_and_pickling_as_fastai():
    loss = BCEWithLogitsLossFlat(thresh=0.3)
    loss.reduction = "none"
    assert loss(torch.zeros(2, 3), torch.ones(2, 3)).shape == (6,)
    back = pickle.loads(pickle.dumps(loss))  # export() pickles the learner with its loss
    assert type(back) is BCEWithLogitsLossFlat and back.thresh == 0.3 and back.reduction == "none"


def test_learner_losses_are_plain_tensors(tiny_learner):
    assert type(tiny_learner.loss_func) is CrossEntropyLossFlat
    seen = []
    from fastai.callback.core import Callback

    class Spy(Callback):
        def after_loss(self):
            seen.append((type(self.learn.loss_grad), type(self.learn.loss)))

    quiet_fit(tiny_learner, 1, lr=1e-3, cbs=[Spy()])
    assert seen and set(seen) == {(torch.Tensor, torch.Tensor)}


def _whole_set_loss(learner, loss):
    # the validation set's loss as PyTorch computes it over all of it at once, batch by batch only for memory
    learner.model.eval()
    logits, targets = [], []
    with torch.no_grad():
        for *xb, yb in learner.dls.valid:
            out = learner.model(*xb)
            logits.append(out.logits.float().reshape(-1, out.logits.shape[-1]))
            targets.append(yb.reshape(-1))
    return float(loss(torch.cat(logits), torch.cat(targets)))


def test_a_weighted_validation_loss_is_the_whole_sets(tiny_csv_dir, tiny_tokenizer, tiny_model_dir, tmp_path):
    # the mean of per-batch weighted means, weighted by rows, was not the set's weighted cross-entropy
    from bertlearn import BertDataBunch, BertLearner
    tiny_databunch = BertDataBunch(tiny_csv_dir, tiny_csv_dir, tiny_tokenizer, bs=4, maxlen=64, device="cpu")
    assert len(tiny_databunch.valid) > 1
    learner = BertLearner.from_pretrained_model(tiny_databunch, str(tiny_model_dir), None, "cpu", None,
                                                output_dir=tmp_path, weight=[1.0, 4.0], seed=0)
    quiet_fit(learner, 1, lr=1e-3)
    expected = _whole_set_loss(learner, torch.nn.CrossEntropyLoss(weight=torch.tensor([1.0, 4.0])))
    assert learner.validate(quiet=True)["loss"] == pytest.approx(expected, rel=1e-5)
    plain = BertLearner.from_pretrained_model(tiny_databunch, str(tiny_model_dir), None, "cpu", None,
                                              output_dir=tmp_path, seed=0)
    assert plain.validate(quiet=True)["loss"] == pytest.approx(_whole_set_loss(plain, torch.nn.CrossEntropyLoss()),
                                                               rel=1e-5)


@pytest.mark.parametrize("ignore_index", [-100, 2, 7])
def test_loss_denominator_is_what_pytorchs_weighted_mean_divides_by(ignore_index):
    from bertlearn.losses import loss_denominator
    weight, target = torch.tensor([1.0, 4.0]), torch.tensor([0, 1, ignore_index, 1])
    logits = torch.randn(4, 2, generator=torch.Generator().manual_seed(0))
    loss = CrossEntropyLossFlat(weight=weight, ignore_index=ignore_index)
    total = torch.nn.functional.cross_entropy(logits, target, weight=weight, ignore_index=ignore_index,
                                              reduction="sum")
    assert float(loss_denominator(loss, target)) == 9.0  # 1 + 4 + 4, the ignored row counting nothing
    assert float(loss(logits, target)) == pytest.approx(float(total) / 9.0, rel=1e-6)


@pytest.mark.parametrize("weight, target", [
    (torch.tensor([0.0, 1.0]), torch.tensor([0, 0, 0])),  # every target of class weight 0
    (None, torch.tensor([-100, -100, -100])),  # every target ignored (a batch of untagged pieces)
])
def test_a_batch_with_nothing_to_count_has_loss_0_not_nan(weight, target):
    # PyTorch's mean is 0 / 0 here: a NaN loss whose NaN gradients spoiled the step (a whole accumulated one) and
    # every weight after it; fastai's CrossEntropyLossFlat gives the NaN
    logits = torch.randn(3, 2, generator=torch.Generator().manual_seed(0))
    assert torch.isnan(fl.CrossEntropyLossFlat(weight=weight)(logits, target))
    x = logits.clone().requires_grad_()
    loss = CrossEntropyLossFlat(weight=weight)(x, target)
    loss.backward()
    assert float(loss) == 0.0 and torch.equal(x.grad, torch.zeros_like(x))
    mixed = torch.tensor([0, 1, 1]) if weight is not None else torch.tensor([-100, 1, 0])
    expected = torch.nn.functional.cross_entropy(logits, mixed, weight=weight)  # otherwise PyTorch's value
    assert float(CrossEntropyLossFlat(weight=weight)(logits, mixed)) == pytest.approx(float(expected), rel=1e-6)


def test_label_smoothing_and_per_row_losses_are_pytorchs():
    logits = torch.randn(5, 3, generator=torch.Generator().manual_seed(1))
    target, weight = torch.tensor([0, 2, -100, 1, 2]), torch.tensor([1.0, 3.0, 0.5])
    ours = CrossEntropyLossFlat(weight=weight, label_smoothing=0.1)
    expected = torch.nn.functional.cross_entropy(logits, target, weight=weight, label_smoothing=0.1)
    assert float(ours(logits, target)) == pytest.approx(float(expected), rel=1e-6)
    ours.reduction = "none"
    torch.testing.assert_close(ours(logits, target), torch.nn.functional.cross_entropy(
        logits, target, weight=weight, label_smoothing=0.1, reduction="none"))


def test_an_earlier_export_gets_the_mean_over_nothing_too(tiny_learner, tmp_path):
    # a learner exported before the loss's empty mean was 0 held nn.CrossEntropyLoss: its further training still
    # turned an all-ignored batch into NaN
    from bertlearn import load_learner
    from bertlearn.losses import CrossEntropyLoss
    tiny_learner.loss_func.func.__class__ = torch.nn.CrossEntropyLoss  # as such an export holds it
    try:
        path = tiny_learner.export(tmp_path / "old.pkl")
    finally:
        tiny_learner.loss_func.func.__class__ = CrossEntropyLoss
    loaded = load_learner(path)
    assert type(loaded.loss_func.func) is CrossEntropyLoss
    assert float(loaded.loss_func(torch.randn(3, 2), torch.full((3,), -100))) == 0.0
