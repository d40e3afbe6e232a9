"""Linear layers that skip the padded rows of a batch: on a CPU, where a batch of mixed lengths spends its matrix
products on padding as much as on text.

A prediction batch is padded to its longest row; a transformer's linear layers (three quarters of a small BERT's
time on a CPU) multiply every position, padding included. Inside `skipping_padded_rows(attention_mask)`, an
`UnpaddedLinear` multiplies only the rows the mask marks real and gives zeros for the others. That leaves the real
positions' outputs unchanged wherever positions meet only in attention that masks padded keys (BERT, RoBERTa,
ELECTRA, DeBERTa...); a model that mixes positions otherwise (convolutions, Fourier mixing, pooling over the
sequence) would change, so `unpad_linears` first compares the two on a padded probe batch and leaves a model that
differs as it was, with a warning. Outside the context manager, or for inputs of another shape, the layer is a
plain `nn.Linear`. Code that matches `type(m) is nn.Linear` (`torch.ao.quantization.quantize_dynamic`) no longer
sees these layers: `restore_linears(model)` gives them back, or set `skip_padding = False` on the predictor class
before loading.
"""

from __future__ import annotations

import contextlib
import copyreg
import threading
import warnings
from typing import Callable, Iterator

import torch
import torch.nn.functional as F
from torch import nn

from .errors import user_stacklevel

__all__ = ["UnpaddedLinear", "MIN_PADDED_SHARE", "PROBE_TEXT", "skipping_padded_rows", "unpad_linears",
           "restore_linears"]

# a batch with less padding than this runs dense: there the row gathers cost about what the padding does (with it,
# bench/batch_cuts.py measures one large sorted call, a few % padding, unchanged: docs/benchmarks.md)
MIN_PADDED_SHARE = 0.1

# a probe batch's long text: beside a one-word text, enough tokens that the short row is mostly padding
PROBE_TEXT = "a probe text long enough that the other one in its batch is mostly padding, whatever the tokenizer"

_local = threading.local()  # per thread: the batch's (shape, real rows, padded rows) or None; layers that skipped


class UnpaddedLinear(nn.Linear):
    """An `nn.Linear` that, inside `skipping_padded_rows(mask)`, multiplies only the real rows of a (batch, length,
    features) input shaped like the mask; padded rows come out zero. Same parameters and state dict; it pickles
    and copies as a plain `nn.Linear`. A square batch (batch size = length) runs dense: a (length, batch,
    features) layout, as XLNet's, would look the same; so does a batch of one."""

    def __reduce_ex__(self, protocol: int) -> tuple:
        # a pickle or a deepcopy is a plain nn.Linear (outside the context manager the two compute the same), so
        # loading one needs no bertlearn; copyreg's reconstructor makes the object, nn.Module.__setstate__ fills it
        return copyreg._reconstructor, (nn.Linear, object, None), self.__getstate__()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """`x @ weight.T + bias`, on the real rows only where this thread is inside `skipping_padded_rows`.

        Args:
            x: (..., in_features) inputs.
        """
        rows = getattr(_local, "rows", None)
        if rows is None or x.dim() != 3 or tuple(x.shape[:2]) != rows[0]:
            return F.linear(x, self.weight, self.bias)
        (b, n), keep, drop = rows
        _local.skipped = getattr(_local, "skipped", 0) + 1
        y = F.linear(x.reshape(b * n, x.shape[-1]).index_select(0, keep), self.weight, self.bias)
        out = y.new_empty(b * n, y.shape[-1])
        out.index_copy_(0, keep, y)
        out.index_fill_(0, drop, 0)  # zeros, not garbage: later layers (layer norm, masked attention) stay finite
        return out.view(b, n, y.shape[-1])


@contextlib.contextmanager
def skipping_padded_rows(attention_mask: torch.Tensor | None) -> Iterator[bool]:
    """Within the block, this thread's `UnpaddedLinear` layers skip the rows `attention_mask` marks padding, when
    at least `MIN_PADDED_SHARE` of the batch is padding. Yields whether they do. For CPU tensors: finding the rows
    reads the mask on the host (a device sync per batch on a GPU).

    Args:
        attention_mask: (batch, length), 1 for real tokens; None: nothing is skipped.
    """
    previous = getattr(_local, "rows", None)
    rows = None
    # a square batch runs dense: a layer whose input is (length, batch, features) could not be told apart; so does a
    # batch of one (bertlearn's loaders never pad it), whose shape a model's own (1, n, d) tensors could share, as
    # DeBERTa-v2's relative position embeddings do at n = twice its buckets
    if (attention_mask is not None and attention_mask.dim() == 2 and attention_mask.shape[0] > 1
            and attention_mask.shape[0] != attention_mask.shape[1]):
        real = attention_mask.reshape(-1) != 0
        keep = real.nonzero().squeeze(1)
        if len(keep) and real.numel() - len(keep) >= MIN_PADDED_SHARE * real.numel():
            rows = (tuple(attention_mask.shape), keep, (~real).nonzero().squeeze(1))
    _local.rows = rows
    try:
        yield rows is not None
    finally:
        _local.rows = previous


def _swap(model: nn.Module, old: type, new: type) -> int:
    n = 0
    for m in model.modules():
        if type(m) is old:
            m.__class__ = new
            n += 1
    return n


def unpad_linears(model: nn.Module, run: Callable[[], torch.Tensor], attention_mask: torch.Tensor, *,
                  atol: float = 1e-4) -> bool:
    """Turn `model`'s `nn.Linear` layers into `UnpaddedLinear` (in place: same parameters and state dict) if the
    model's outputs stay the same when padded rows are skipped; otherwise leave it as it was and warn once.

    Args:
        model: the model, in eval mode, on the CPU.
        run: runs the model on a probe batch with padding and returns its outputs at real positions (a token
            classifier's outputs at padded positions differ by design); called once dense and once inside
            `skipping_padded_rows(attention_mask)`.
        attention_mask: the probe batch's mask: at least `MIN_PADDED_SHARE` of it padding (else nothing is
            tested: the layers stay dense, with a warning).
        atol: the largest difference allowed (float32 sums in another order differ by ~1e-6).

    Returns whether the layers skip padded rows from now on.
    """
    if not _swap(model, nn.Linear, UnpaddedLinear):
        return False
    try:
        with torch.inference_mode():
            dense = run()
            _local.skipped = 0
            with skipping_padded_rows(attention_mask):
                skipped = run()
    except BaseException:
        restore_linears(model)  # a probe that fails leaves the model as it was
        raise
    finally:
        layers, _local.skipped = getattr(_local, "skipped", 0), 0
    name = type(model).__name__
    if not layers:  # no layer skipped a row, so the comparison proves nothing
        restore_linears(model)
        share = 1 - attention_mask.float().mean().item()
        why = (f"the probe batch is {share:.0%} padding, under the {MIN_PADDED_SHARE:.0%} at which rows are skipped"
               if share < MIN_PADDED_SHARE else "no linear layer of it takes (batch, length, features) inputs")
        warnings.warn(f"{why}, so whether {name} may skip padded rows is untested: its predictions run on padded "
                      "batches", stacklevel=user_stacklevel())
        return False
    if dense.shape == skipped.shape and torch.allclose(dense.float(), skipped.float(), rtol=1e-4, atol=atol):
        return True
    restore_linears(model)
    diff = (dense.float() - skipped.float()).abs().max().item() if dense.shape == skipped.shape else float("nan")
    warnings.warn(f"{name}'s outputs change (by up to {diff:.3g}) when its linear layers skip padded positions: its "
                  "predictions run on padded batches", stacklevel=user_stacklevel())
    return False


def restore_linears(model: nn.Module) -> int:
    """Turn `model`'s `UnpaddedLinear` layers back into plain `nn.Linear` (for code that matches the exact type,
    such as `torch.ao.quantization.quantize_dynamic`); returns how many.

    Args:
        model: a model `unpad_linears` changed (a predictor's `.model`).
    """
    return _swap(model, UnpaddedLinear, nn.Linear)
