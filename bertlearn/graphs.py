"""CUDA graphs for the training step: one captured forward + backward pass per static sequence-length bucket.

An eager BERT step on a fast GPU is host-bound: about 1,500 kernel launches a bert-base training step, each
queued by Python, take longer than the GPU needs to run them (docs/benchmarks.md has the numbers, measured on an
H200 with the earlier bench method and marked stale until re-measured). A CUDA graph replays a
whole captured pass with one launch. Graphs need static shapes, so each training batch is padded (on the
GPU, with masked tokens, which leave a sequence classifier's logits unchanged) up to the next of a handful
of bucket widths, and each bucket is captured once, the first time it is seen (a quarter to a third of a
second each for bert-base on an H200).

The callback patches the model's `forward` on the instance for each training epoch, as
`torch.cuda.make_graphed_callables` itself does, and restores it after: `learner.model` stays the plain
Hugging Face model (its class, parameters and state dict), validation and prediction run eagerly.
"""

from __future__ import annotations

import inspect
import logging
import warnings
from typing import Any, Callable

import torch
import torch.nn.functional as F
from fastai.callback.core import Callback
from transformers.modeling_outputs import SequenceClassifierOutput

from .errors import ModelError, user_stacklevel
from .model import position_limit
from .saved import MODEL_INPUTS

__all__ = ["CudaGraphCallback", "InferenceGraphs", "inference_graphs", "capture_forward", "graph_buckets",
           "GRAPH_MIN_STEPS"]

_log = logging.getLogger(__name__)

# with cuda_graphs="auto", a fit of fewer steps stays eager. On an H200 (commit 96d63c9, earlier bench method, stale
# until re-measured), capturing 4 buckets cost at most 0.8 s and graphs paid back after ~32 steps of bs 64; 300
# leaves room for GPUs whose eager step is less host-bound
GRAPH_MIN_STEPS = 300
_WIDTHS = (16, 32, 48, 64, 96, 128, 192, 256, 384, 512)
# make_graphed_callables warms up on a side stream of its own, and the captured autograd graph keeps the parameters'
# AccumulateGrad nodes of that stream alive; later backward passes on the default stream then wait across streams (a
# device-side event, no host sync) and PyTorch warns once, hinting at broken capture. Capture and replays are right
# (tests/test_graphs.py::TestOnGPU), so this one warning is muted inside captures and graphed backward passes only.
_STREAM_MISMATCH = "The AccumulateGrad node's stream does not match"

# the seams the CPU tests replace (no CUDA there): where tensors must live, and the captures (capture_forward below)
make_graphed_callables: Callable[..., Any] = torch.cuda.make_graphed_callables


def _on_cuda(t: torch.Tensor) -> bool:
    return t.is_cuda


def graph_buckets(maxlen: int) -> tuple[int, ...]:
    """The static widths batches are padded to: multiples of 16 up to 64, then steps of 1.5-2x, and `maxlen`.

    Args:
        maxlen: the longest batch width (the databunch's `maxlen`).
    """
    if int(maxlen) < 1:
        raise ModelError(f"maxlen={maxlen} must be a positive number of tokens")
    return (*(w for w in _WIDTHS if w < maxlen), int(maxlen))


def _logits(forward: Callable[..., Any], inputs: dict[str, torch.Tensor], amp_dtype: torch.dtype | None
            ) -> torch.Tensor:
    """float32 logits of `forward(**inputs)`, under autocast when `amp_dtype` is set: what every graph captures."""
    # capture refuses autocast's weight-cast cache: casts cached outside the capture would be read by its replays
    with torch.autocast(inputs["input_ids"].device.type, dtype=amp_dtype or torch.float32,
                        enabled=amp_dtype is not None, cache_enabled=False):
        out = forward(**inputs)
    return (out.logits if hasattr(out, "logits") else out[0]).float()


# graphs pad each batch on the right up to its bucket: a batch padded on the left would end in pads again
PAD_LEFT_REASON = ("the tokenizer pads on the left (the model's classifier reads the last position, XLNet's), and "
                   "graphs pad every batch on the right up to its width bucket")


def inference_graphs(model: torch.nn.Module, maxlen: int, amp_dtype: torch.dtype | None,
                     cuda_graphs: bool | str, *, pad_left: bool = False) -> "InferenceGraphs | None":
    """`InferenceGraphs` for `model` where the `cuda_graphs` setting applies them, else None: never off CUDA or for
    a compiled model; under "auto" only in bf16 (float32 inference is bound by the GPU's arithmetic, where padding
    to the bucket only adds work: on an H200, 0.99x with graphs in float32, 4.7x in bf16; commit 96d63c9, earlier
    bench method, stale until re-measured), capturing a shape on its
    second use; with True in any precision, at once.

    Args:
        model: the Hugging Face sequence classifier.
        maxlen: the longest width.
        amp_dtype: the autocast dtype prediction runs at (None: float32).
        cuda_graphs: True, False or "auto".
        pad_left: the batches are padded on the left (`TextEncoder.pad_left`): no graphs (True is refused).
    """
    if pad_left and cuda_graphs:
        if cuda_graphs is True:
            raise ModelError(f"cuda_graphs=True: {PAD_LEFT_REASON}. Pass cuda_graphs='auto' or False")
        return None
    param = next(model.parameters(), None)
    compiled = getattr(model, "_compiled_call_impl", None) is not None
    if not cuda_graphs or param is None or not _on_cuda(param) or compiled:
        return None
    if cuda_graphs == "auto" and amp_dtype is None:
        return None
    return InferenceGraphs(model, maxlen, amp_dtype=amp_dtype, min_uses=1 if cuda_graphs is True else 2)


class _Step(torch.nn.Module):
    """What one graph holds: the model's own forward (under bf16 autocast when the learner trains in bf16) to
    float32 logits. A separate module per bucket, so each capture patches its own `forward`, not the model's."""

    def __init__(self, model: torch.nn.Module, forward: Callable[..., Any], amp_dtype: torch.dtype | None):
        super().__init__()
        self.model = model  # registered, so the graph's input surface holds the model's parameters
        self._model_forward = forward
        self.amp_dtype = amp_dtype

    def forward(self, *inputs: torch.Tensor) -> torch.Tensor:
        return _logits(self._model_forward, dict(zip(MODEL_INPUTS, inputs)), self.amp_dtype)


class CudaGraphCallback(Callback):
    """Run each full training batch's forward and backward pass as CUDA graph replays, one pair of graphs per
    sequence-length bucket; everything else (loss, clipping, the optimizer, validation) stays eager.

    `BertLearner.from_pretrained_model(cuda_graphs=...)` adds it on CUDA devices. With "auto" it switches itself
    on for bf16 fits (`is_fp16=True`) of at least `min_steps` steps, where nothing rules graphs out (a float32
    step is bound by the GPU's arithmetic, where padding to the bucket only adds work); with True it insists,
    and a fit it cannot graph raises `ModelError` saying why.

    Args:
        enabled: True, or "auto".
        buckets: the static widths (default: `graph_buckets(databunch.maxlen)`).
        min_steps: the shortest fit "auto" graphs.
    """

    _failed: tuple | None = None  # class default: learners exported before it existed still load

    def __init__(self, enabled: bool | str = "auto", *, buckets: tuple[int, ...] | None = None,
                 min_steps: int = GRAPH_MIN_STEPS):
        if enabled not in (True, "auto"):
            raise ModelError(f"cuda_graphs={enabled!r} is not one of True, False, 'auto'")
        self.enabled, self.buckets, self.min_steps = enabled, buckets, int(min_steps)
        self.active = False
        self.captures = 0  # graphs captured so far (one per bucket and input count), for tests and benchmarks
        self._graphs: dict[tuple[int, int], torch.nn.Module] = {}
        self._signature: Any = None
        self._pool: Any = None
        self._model: torch.nn.Module | None = None
        self._orig_forward: Callable[..., Any] | None = None
        self._graphed_batch = False
        self._quiet: Any = None
        self._params: list[torch.Tensor] = []
        self._inference: InferenceGraphs | None = None
        self._inference_signature: Any = None
        self._failed: tuple | None = None  # (parameter signature, error) of a capture that failed

    def __getstate__(self) -> dict:
        # `export` pickles the learner with its callbacks: graphs and the patched forward stay behind
        state = dict(self.__dict__)
        state.update(_graphs={}, _signature=None, _pool=None, _model=None, _orig_forward=None, _params=[],
                     active=False, _graphed_batch=False, _quiet=None, _inference=None, _inference_signature=None,
                     _failed=None)
        return state

    # --- deciding ---

    def blocker(self) -> str | None:
        """Why this learner's fit cannot be graphed, or None."""
        from fastai.callback.fp16 import MixedPrecision
        from fastai.callback.training import GradientAccumulation
        model = self.learn.model
        if getattr(getattr(self.dls, "encoder", None), "pad_left", False):
            return PAD_LEFT_REASON
        param = next(model.parameters(), None)
        if param is None or not _on_cuda(param):
            return f"the model is on {'no device' if param is None else param.device.type}, not a CUDA GPU"
        if isinstance(model, torch.nn.parallel.DistributedDataParallel):
            return "the model is wrapped for distributed training, whose gradient all-reduce graphs cannot hold"
        if getattr(model, "_compiled_call_impl", None) is not None:
            return "the model is compiled (compile=True); use one or the other"
        checkpointing = "is_activation_checkpointing" if hasattr(type(model), "is_activation_checkpointing") else \
            "is_gradient_checkpointing"  # renamed in transformers 5.20
        if getattr(model, checkpointing, False):
            return "gradient checkpointing recomputes activations outside the captured pass"
        for cb in self.learn.cbs:
            # bertlearn's StepAccumulation counts batches (`batches`; masked LM's n_acc is that count too), fastai's
            # counts rows: AccumulateBatches(2) has n_acc=2, under any batch size, and was let through
            batches = getattr(cb, "batches", None)
            if isinstance(cb, GradientAccumulation) and (batches > 1 if batches is not None
                                                         else cb.n_acc > self.dls.train.bs):
                return "gradient accumulation adds into gradients that the graph's replay overwrites"
            if isinstance(cb, MixedPrecision):
                return "fp16 mixed precision scales the loss and checks it on the host every step; bf16 needs neither"
        return None

    def plan(self) -> tuple[bool, str]:
        """Whether this fit's training steps replay CUDA graphs, and why not (or which buckets): what the fit's
        summary line says. Raises `ModelError` where `cuda_graphs=True` cannot be honoured."""
        reason = self.blocker()
        if reason is not None:
            if self.enabled is True:
                raise ModelError(f"cuda_graphs=True: {reason}. Pass cuda_graphs='auto' (graphs where they apply) or "
                                 "False")
            return False, reason
        if self._failed is not None and self._failed[0] == self._param_signature():
            return False, f"capturing failed earlier in this learner ({self._failed[1]})"
        steps = self.n_epoch * len(self.dls.train)
        if self.enabled == "auto" and steps < self.min_steps:
            return False, f"{steps} steps is under the {self.min_steps} that pay for the captures"
        amp = self.learn._amp_dtype() if hasattr(self.learn, "_amp_dtype") else None
        if self.enabled == "auto" and amp is None:
            # a float32 step is bound by the GPU's arithmetic, not by kernel launches: padding to the bucket would
            # only add work (float32 prediction measured 0.85-0.99x with graphs on an H200; bf16 up to 4.7x; stale,
            # see docs/benchmarks.md)
            return False, "float32 steps are bound by arithmetic, not launches (is_fp16=True or cuda_graphs=True)"
        return True, f"buckets {', '.join(map(str, self.buckets or graph_buckets(self._maxlen())))}"

    def _maxlen(self) -> int:
        return min(int(getattr(self.dls, "maxlen", 512)), position_limit(self.learn.model) or 512)

    def _param_signature(self) -> tuple:
        return tuple((p.data_ptr(), p.requires_grad) for p in self.learn.model.parameters())

    def before_train(self) -> None:
        # per training epoch, not per fit: fastai runs before_fit for validate()/get_preds() too, which stay eager
        self._restore()
        graphed, why = self.plan()
        if not graphed:
            _log.debug("cuda_graphs=%r: training eagerly, %s", self.enabled, why)
            return
        model = self.learn.model
        amp = self.learn._amp_dtype() if hasattr(self.learn, "_amp_dtype") else None
        signature = (amp, self.dls.train.bs, self._param_signature())
        if signature != self._signature:
            # new parameters (load, freeze/unfreeze, another precision): graphs hold the old ones
            self._graphs, self._pool, self._signature = {}, None, signature
        self._buckets = tuple(self.buckets) if self.buckets else graph_buckets(self._maxlen())
        self._amp, self._bs = amp, self.dls.train.bs
        self._params = [p for p in model.parameters() if p.requires_grad]
        self._model, self._orig_forward = model, model.forward
        model.forward = self._forward  # the instance attribute wins over the class's forward in Module.__call__
        self.active = True
        _log.info("cuda_graphs: training steps replay CUDA graphs (buckets %s)", self._buckets)

    def before_backward(self) -> None:
        if self._graphed_batch:
            # AccumulateGrad may hand a parameter the replay's own gradient buffer as its .grad; a stale .grad
            # there would be summed with itself after the next replay, so every graphed step starts without one
            for p in self._params:
                p.grad = None
            self._quiet = warnings.catch_warnings()
            self._quiet.__enter__()
            warnings.filterwarnings("ignore", message=_STREAM_MISMATCH)

    def after_backward(self) -> None:
        self._loud()

    def after_batch(self) -> None:
        self._graphed_batch = False
        self._loud()

    def after_train(self) -> None:
        self._restore()

    def after_fit(self) -> None:
        self._restore()

    def _loud(self) -> None:
        quiet, self._quiet = self._quiet, None
        if quiet is not None:
            quiet.__exit__(None, None, None)

    def _restore(self) -> None:
        if self._model is not None:
            if self._model.__dict__.get("forward") == self._forward:
                del self._model.forward
            self._model = None
        self.active = False

    # --- prediction ---

    def for_prediction(self, model: torch.nn.Module, maxlen: int, amp_dtype: torch.dtype | None
                       ) -> "InferenceGraphs | None":
        """`InferenceGraphs` for the learner's own prediction (`predict_batch`...), or None where they do not apply
        (see `inference_graphs`). Kept while the parameters stay where they are (training updates them in place,
        which the graphs read); rebuilt when they move.

        Args:
            model: the learner's model.
            maxlen: the longest width.
            amp_dtype: the autocast dtype prediction runs at (None: float32).
        """
        signature = (amp_dtype, maxlen, tuple(p.data_ptr() for p in model.parameters()))
        if self._inference_signature != signature:
            pad_left = getattr(getattr(self.dls, "encoder", None), "pad_left", False)
            self._inference = inference_graphs(model, maxlen, amp_dtype, self.enabled, pad_left=pad_left)
            self._inference_signature = signature
        return self._inference

    # --- the step ---

    def _forward(self, *args: Any, **kwargs: Any) -> Any:
        orig = self._orig_forward
        inputs = self._graphable(args, kwargs)
        if inputs is None:
            return orig(*args, **kwargs)
        width = inputs[0].shape[1]
        bucket = next(b for b in self._buckets if b >= width)
        if bucket > width:  # masked padding: the classifier's logits do not change
            inputs = [F.pad(t, (0, bucket - width)) for t in inputs]
        key = (bucket, len(inputs))
        step = self._graphs.get(key)
        if step is None:
            step = self._capture(key, inputs)
            if step is None:
                return orig(*args, **kwargs)
        logits = step(*inputs)
        if logits.ndim == 3:  # a token classifier scores every position: the padded ones go again
            logits = logits[:, :width]
        self._graphed_batch = True
        # the replay writes its logits into the same buffer every step: callbacks that keep predictions get a copy
        return SequenceClassifierOutput(logits=logits.clone())

    def _graphable(self, args: tuple, kwargs: dict) -> list[torch.Tensor] | None:
        """The input tensors if this call is a full training batch the graphs can take, else None."""
        model = self._model
        if not (self.active and model is not None and model.training and torch.is_grad_enabled()):
            return None
        if kwargs:
            if args or set(kwargs) - set(MODEL_INPUTS):
                return None
            args = tuple(kwargs.get(name) for name in MODEL_INPUTS[:len(kwargs)])
        if not 2 <= len(args) <= 3 or any(not isinstance(t, torch.Tensor) for t in args):
            return None
        ids = args[0]
        if ids.ndim != 2 or ids.shape[0] != self._bs or ids.shape[1] > self._buckets[-1] or not _on_cuda(ids):
            return None  # the last, smaller batch of an epoch, or an unexpected width: eager
        if any(t.shape != ids.shape for t in args[1:]):
            return None
        return list(args)

    def _capture(self, key: tuple[int, int], inputs: list[torch.Tensor]) -> torch.nn.Module | None:
        if self._pool is None:
            # one memory pool for every bucket: only one bucket's pass is in flight at a time, so their
            # activations can share memory (the largest bucket's, not the sum)
            takes_pool = "pool" in inspect.signature(make_graphed_callables).parameters  # torch >= 2.5
            self._pool = torch.cuda.graph_pool_handle() if takes_pool and torch.cuda.is_available() else None
        step = _Step(self._model, self._orig_forward, self._amp)
        sample = tuple(t.clone() for t in inputs)  # these become the graph's static inputs
        try:
            # fastai's autocast context (BF16Autocast) caches weight casts, which capture refuses; _Step enters its own
            with torch.autocast(inputs[0].device.type, enabled=False), warnings.catch_warnings():
                warnings.filterwarnings("ignore", message=_STREAM_MISMATCH)
                pool = {"pool": self._pool} if self._pool is not None else {}
                graphed = make_graphed_callables(step, sample, allow_unused_input=True, **pool)
        except Exception as e:  # noqa: BLE001 - any kernel that cannot be captured: train on, eagerly
            if self.enabled is True:
                raise ModelError(f"cuda_graphs=True: capturing the {key[0]}-token training step failed "
                                 f"({type(e).__name__}: {e}); pass cuda_graphs=False") from e
            warnings.warn(f"cuda_graphs='auto': capturing the {key[0]}-token training step failed "
                          f"({type(e).__name__}: {e}); this learner trains eagerly from here on (not retried each "
                          "epoch)", stacklevel=user_stacklevel())
            self._failed = (self._param_signature(), f"{type(e).__name__}: {e}")
            self.active = False
            return None
        self._graphs[key] = graphed
        self.captures += 1
        _log.debug("captured the training step for width %d", key[0])
        return graphed


def capture_forward(fn: Callable[[], torch.Tensor], pool: Any = None) -> tuple[Callable[[], None], torch.Tensor]:
    """Capture `fn()` (a forward pass without autograd) as a CUDA graph, after two warm-up runs on a side stream
    (lazy initialisation must not land in the graph). Returns the replay function and the static output.

    Args:
        fn: reads the static inputs, returns the output tensor.
        pool: a memory pool shared with other graphs that never run at the same time.
    """
    side = torch.cuda.Stream()
    side.wait_stream(torch.cuda.current_stream())
    with torch.cuda.stream(side):
        for _ in range(2):
            fn()
    torch.cuda.current_stream().wait_stream(side)
    graph = torch.cuda.CUDAGraph()
    with torch.cuda.graph(graph, pool=pool):
        out = fn()
    return graph.replay, out


class InferenceGraphs:
    """CUDA graphs of a classifier's forward pass for prediction: one per (rows, width bucket, inputs), each batch
    padded up to it (padded rows are dropped from the output, padded tokens are masked).

    On a fast GPU an eager forward pass of a BERT is host-bound (hundreds of kernel launches for a few
    milliseconds of GPU work); a replay is one launch. With `min_uses=2` a shape is captured the second time
    it is met, so a one-off call never pays a capture (about 0.1 s) it would not win back.

    Args:
        model: the Hugging Face sequence classifier (in eval mode when called).
        maxlen: the longest width (buckets: `graph_buckets(maxlen)`).
        amp_dtype: autocast dtype (None: float32).
        min_uses: how many times a shape is met before it is captured.
    """

    def __init__(self, model: torch.nn.Module, maxlen: int, *, amp_dtype: torch.dtype | None = None,
                 min_uses: int = 2):
        self.model, self.amp_dtype, self.min_uses = model, amp_dtype, int(min_uses)
        self.buckets = graph_buckets(maxlen)
        self.captures = 0
        self._graphs: dict[tuple, tuple[dict[str, torch.Tensor], Callable[[], None], torch.Tensor]] = {}
        self._seen: dict[tuple, int] = {}
        self._pool: Any = None
        self._failed = False

    def __call__(self, inputs: dict[str, torch.Tensor], rows: int) -> torch.Tensor | None:
        """float32 logits for a batch of at most `rows` rows, or None where this batch runs eagerly."""
        ids = inputs["input_ids"]
        n, width = ids.shape
        if self._failed or n > rows or width > self.buckets[-1] or not _on_cuda(ids):
            return None
        bucket = next(b for b in self.buckets if b >= width)
        key = (rows, bucket, tuple(inputs))
        entry = self._graphs.get(key)
        if entry is None:
            self._seen[key] = self._seen.get(key, 0) + 1
            if self._seen[key] < self.min_uses:
                return None
            entry = self._capture(key, inputs)
            if entry is None:
                return None
        static, replay, out = entry
        for name, t in inputs.items():
            static[name].copy_(F.pad(t, (0, bucket - width, 0, rows - n)))
        replay()
        return out[:n].clone()  # the next replay overwrites `out`

    def _capture(self, key: tuple, inputs: dict[str, torch.Tensor]) -> tuple | None:
        rows, bucket, _ = key
        n, width = inputs["input_ids"].shape
        static = {name: F.pad(t, (0, bucket - width, 0, rows - n)).clone() for name, t in inputs.items()}
        if self._pool is None and torch.cuda.is_available():
            self._pool = torch.cuda.graph_pool_handle()  # one pool: graphs replay one at a time
        try:
            replay, out = capture_forward(lambda: _logits(self.model, static, self.amp_dtype), self._pool)
        except Exception as e:  # noqa: BLE001 - a kernel that cannot be captured: predict on, eagerly
            warnings.warn(f"cuda_graphs: capturing the {bucket}-token forward pass failed ({type(e).__name__}: {e}); "
                          "predicting eagerly", stacklevel=user_stacklevel())
            self._failed = True
            return None
        self._graphs[key] = (static, replay, out)
        self.captures += 1
        return self._graphs[key]
