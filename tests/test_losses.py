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
