"""Linear layers that skip padded rows (bertlearn.unpadded) and the predictors that use them on a CPU."""

from __future__ import annotations

import copy
import pickle

import pytest
import torch
from torch import nn

import bertlearn.predict as predict_module
from bertlearn import BertClassificationPredictor
from bertlearn.unpadded import (MIN_PADDED_SHARE, UnpaddedLinear, restore_linears, skipping_padded_rows,
                                unpad_linears)
from conftest import spy_skips


def _mask(lengths, width):
    return (torch.arange(width)[None, :] < torch.tensor(lengths)[:, None]).long()


def test_real_rows_equal_a_plain_linear_and_padded_rows_are_zero():
    torch.manual_seed(0)
    plain = nn.Linear(8, 5)
    layer = copy.deepcopy(plain)
    layer.__class__ = UnpaddedLinear
    x = torch.randn(3, 6, 8)
    mask = _mask([6, 2, 4], 6)  # 6 of 18 positions padding
    with skipping_padded_rows(mask) as skipping:
        y = layer(x)
    assert skipping
    real = mask.bool()
    torch.testing.assert_close(y[real], plain(x)[real], rtol=0, atol=1e-6)
    assert torch.equal(y[~real], torch.zeros(int((~real).sum()), 5))
    assert torch.equal(layer(x), plain(x))  # outside the block: a plain linear layer


def test_rows_are_skipped_only_with_enough_padding_and_a_matching_shape():
    layer = nn.Linear(4, 4)
    layer.__class__ = UnpaddedLinear
    calls = []
    real_linear = torch.nn.functional.linear

    def spy(x, w, b=None):
        calls.append(x.shape[:-1].numel())
        return real_linear(x, w, b)

    width = 20  # 10 rows of 20: 200 positions, 20 of them the threshold
    little = _mask([20] * 9 + [1], width)  # 19 padded, just under the share: dense
    enough = _mask([20] * 9 + [0], width)  # 20 padded, exactly the share: skipped
    assert MIN_PADDED_SHARE == 0.1
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(torch.nn.functional, "linear", spy)
        with skipping_padded_rows(little) as on:
            layer(torch.randn(10, width, 4))
        assert not on and calls[-1] == 200
        with skipping_padded_rows(enough) as on:
            layer(torch.randn(10, width, 4))
            layer(torch.randn(10, width + 1, 4))  # another shape (a pooled or internally padded input): dense
            layer(torch.randn(10, 4))
        assert on and calls[-3:] == [180, 210, 10]
        with skipping_padded_rows(None) as on:
            layer(torch.randn(10, width, 4))
        assert not on and calls[-1] == 200


class _PoolsPadding(nn.Module):
    """Averages every position, padding included: positions meet outside masked attention."""

    def __init__(self):
        super().__init__()
        self.emb, self.mix, self.out = nn.Embedding(10, 8), nn.Linear(8, 8), nn.Linear(8, 2)

    def forward(self, input_ids, attention_mask):
        return self.out(self.mix(self.emb(input_ids)).mean(1))


def test_a_model_whose_outputs_change_is_left_dense_with_a_warning():
    torch.manual_seed(0)
    model = _PoolsPadding().eval()
    ids, mask = torch.tensor([[1, 2, 3, 4], [5, 0, 0, 0]]), _mask([4, 1], 4)
    with pytest.warns(UserWarning, match=r"^_PoolsPadding's outputs change \(by up to [0-9.e-]+\) when its linear "
                                         r"layers skip padded positions: its predictions run on padded batches$"):
        assert unpad_linears(model, lambda: model(ids, mask), mask) is False
    assert [type(m) for m in model.modules() if isinstance(m, nn.Linear)] == [nn.Linear, nn.Linear]


def test_a_probe_without_padding_tests_nothing_and_leaves_the_model_dense():
    model = _PoolsPadding().eval()
    ids, mask = torch.tensor([[1, 2], [3, 4]]), _mask([2, 2], 2)
    with pytest.warns(UserWarning, match=r"^the probe batch is 0% padding, under the 10% at which rows are skipped, so "
                                         r"whether _PoolsPadding may skip padded rows is untested: its predictions "
                                         r"run on padded batches$"):
        assert unpad_linears(model, lambda: model(ids, mask), mask) is False
    assert all(type(m) is not UnpaddedLinear for m in model.modules())


class _LengthFirst(nn.Module):
    """Runs its layers on (length, batch, features), as XLNet does."""

    def __init__(self):
        super().__init__()
        self.emb, self.mix, self.out = nn.Embedding(10, 8), nn.Linear(8, 8), nn.Linear(8, 2)

    def forward(self, input_ids, attention_mask):
        h = self.mix(self.emb(input_ids).transpose(0, 1))  # (length, batch, 8)
        return self.out(h[0])


def test_layers_in_another_layout_are_not_probed_vacuously_and_square_batches_run_dense():
    torch.manual_seed(0)
    model = _LengthFirst().eval()
    ids, mask = torch.tensor([[1, 2, 3, 4, 5, 6], [7, 0, 0, 0, 0, 0]]), _mask([6, 1], 6)
    # no layer takes (batch, length, features): nothing was skipped, so equal outputs prove nothing
    with pytest.warns(UserWarning, match=r"^no linear layer of it takes \(batch, length, features\) inputs, so whether "
                                         r"_LengthFirst may skip padded rows is untested"):
        assert unpad_linears(model, lambda: model(ids, mask), mask) is False
    assert all(type(m) is nn.Linear for m in model.modules() if isinstance(m, nn.Linear))
    # a (length, batch) input of a square batch looks like (batch, length): such batches are never skipped; nor is
    # a batch of one, whose shape a model's own (1, n, d) tensors may share
    with skipping_padded_rows(_mask([4, 1, 2, 3], 4)) as on:
        assert not on
    with skipping_padded_rows(_mask([2], 6)) as on:
        assert not on


def test_a_probe_that_fails_leaves_the_model_as_it_was():
    model = _PoolsPadding().eval()

    def run():
        raise RuntimeError("the probe could not run")

    with pytest.raises(RuntimeError, match="the probe could not run"):
        unpad_linears(model, run, _mask([4, 1], 4))
    assert all(type(m) is nn.Linear for m in model.modules() if isinstance(m, nn.Linear))


def test_a_tiny_xlnet_is_left_dense():
    from transformers import XLNetConfig, XLNetForSequenceClassification
    torch.manual_seed(0)
    model = XLNetForSequenceClassification(XLNetConfig(vocab_size=50, d_model=32, n_layer=2, n_head=4, d_inner=37,
                                                       num_labels=2)).eval()
    ids = torch.randint(5, 50, (2, 12))
    mask = _mask([12, 3], 12)
    with pytest.warns(UserWarning, match="untested: its predictions run on padded batches"):
        assert unpad_linears(model, lambda: model(input_ids=ids, attention_mask=mask).logits, mask) is False
    square = torch.randint(5, 50, (12, 12)), _mask([12] + [3] * 11, 12)
    dense = model(input_ids=square[0], attention_mask=square[1]).logits
    for m in model.modules():  # even if it were swapped, a square batch runs dense
        if type(m) is nn.Linear:
            m.__class__ = UnpaddedLinear
    with torch.inference_mode(), skipping_padded_rows(square[1]):
        torch.testing.assert_close(model(input_ids=square[0], attention_mask=square[1]).logits, dense)


def test_swapped_layers_pickle_copy_and_restore_as_plain_linears():
    layer = nn.Linear(3, 2)
    layer.__class__ = UnpaddedLinear
    for clone in (pickle.loads(pickle.dumps(layer)), copy.deepcopy(layer)):
        assert type(clone) is nn.Linear and torch.equal(clone.weight, layer.weight)
    model = nn.Sequential(layer, nn.ReLU(), UnpaddedLinear(2, 2))
    assert restore_linears(model) == 2
    assert [type(m) for m in model] == [nn.Linear, nn.ReLU, nn.Linear]


def test_skip_padding_off_before_loading_keeps_every_linear(trained_learner, tmp_path, monkeypatch):
    monkeypatch.setattr(BertClassificationPredictor, "skip_padding", False)
    predictor = BertClassificationPredictor(trained_learner.save_model(tmp_path / "saved"), device="cpu")
    assert not predictor.padding_skippable
    assert not any(type(m) is UnpaddedLinear for m in predictor.model.modules())


@pytest.fixture
def skips(monkeypatch):
    """Whether each batch of the prediction calls skipped its padded rows."""
    return spy_skips(monkeypatch, predict_module)


def test_the_predictor_skips_padding_on_a_cpu_and_predicts_the_same(trained_learner, tmp_path, skips):
    folder = trained_learner.save_model(tmp_path / "saved")
    predictor = BertClassificationPredictor(folder, device="cpu")
    assert predictor.padding_skippable
    linears = [m for m in predictor.model.modules() if isinstance(m, nn.Linear)]
    assert linears and all(type(m) is UnpaddedLinear for m in linears)
    texts = ["good", "a truly wonderful , moving and beautifully acted film with a great cast and story",
             "bad", "terrible", "an awful , boring and far too long movie that nobody should ever watch", "fine"]
    skipped = predictor.predict_logits(texts)
    assert any(skips), "no batch skipped its padding: the comparison below tests nothing"
    predictor.skip_padding = False
    skips.clear()
    dense = predictor.predict_logits(texts)
    assert not any(skips)
    torch.testing.assert_close(skipped, dense, rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(skipped, trained_learner.predict_logits(texts), rtol=1e-5, atol=1e-6)
    # the model stays a plain Hugging Face model where it matters: same state dict, copies and pickles
    assert set(predictor.model.state_dict()) == set(trained_learner.model.state_dict())
    clone = pickle.loads(pickle.dumps(predictor.model))
    from bertlearn.saved import input_names
    inputs = dict(zip(input_names(False), next(iter(predictor.loader(texts)))))
    torch.testing.assert_close(clone(**inputs).logits, predictor.model(**inputs).logits)


def test_bf16_predictions_run_dense(trained_learner, tmp_path, skips):
    # measured: in bf16 the row gathers cost what the padding did (docs/benchmarks.md), so they are not done
    from bertlearn.device import native_bf16
    if not native_bf16("cpu"):
        pytest.skip("no bf16 hardware on this CPU")
    predictor = BertClassificationPredictor(trained_learner.save_model(tmp_path / "saved"), device="cpu",
                                            precision="bf16")
    assert not predictor.padding_skippable and predictor.amp_dtype == torch.bfloat16
    assert not any(type(m) is UnpaddedLinear for m in predictor.model.modules())  # not even swapped
    predictor.predict_logits(["good", "a truly wonderful , moving and beautifully acted film with a great cast"])
    assert skips and not any(skips)
