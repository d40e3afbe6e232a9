"""Distributed data parallel training through Hugging Face Accelerate, fastai's own distributed engine.

Launch the same script with `accelerate launch` or `torchrun` (one process per GPU, or per CPU slot with
gloo); `BertLearner.fit` then trains with DDP on its own. What bertlearn adds to fastai's
`DistributedTrainer`:

- its loaders shard themselves: training batches are built length-grouped from one shared order (the seed is
  broadcast from rank 0) and dealt out round-robin, so step k on every rank holds neighbouring batches of the
  same global order and every rank runs the same number of steps; validation and prediction rows are split
  between ranks and gathered back;
- no CUDA-only broadcast (fastai's `DistributedDL` moves indices to CUDA), so CPU runs with gloo work;
- validation runs on the unwrapped model (DDP's forward would sync buffers for nothing) and the metrics
  gather predictions and losses from every rank before scoring;
- only rank 0 writes files (`save_model`, `export`, `to_onnx`, checkpoints) and logs.
"""

from __future__ import annotations

import atexit
import functools
import gc
import os
import warnings
from typing import Any, Callable

import torch

from .errors import user_stacklevel

__all__ = ["ddp_loss_share", "ddp_loss_weight", "rank_world", "launched_distributed", "is_main_process", "shared_seed",
           "gather_objects", "all_sum", "barrier", "main_process_only", "distributed_trainer", "multi_gpu_without_effect",
           "gather_fastai_metrics", "metrics_gatherer"]


def rank_world() -> tuple[int, int]:
    """(rank, world size) of this process; (0, 1) when no process group is running."""
    if torch.distributed.is_available() and torch.distributed.is_initialized():
        return torch.distributed.get_rank(), torch.distributed.get_world_size()
    return 0, 1


def launched_distributed() -> bool:
    """Whether a launcher (accelerate launch, torchrun, mpirun) started several processes."""
    for var in ("WORLD_SIZE", "PMI_SIZE", "OMPI_COMM_WORLD_SIZE"):
        if int(os.environ.get(var, "1")) > 1:
            return True
    return False


def multi_gpu_without_effect(multi_gpu: Any) -> bool:
    """Whether fast-bert's `multi_gpu=True` changes nothing in this process (one or no GPU, no launcher): the caller
    names it as an argument without effect. With several GPUs and no launcher it warns how to use them instead.

    Args:
        multi_gpu: the value passed.
    """
    if not multi_gpu or launched_distributed():
        return False  # under accelerate launch / torchrun every process trains with DDP: what multi_gpu asks for
    n = torch.cuda.device_count()
    if n > 1:
        warnings.warn(f"multi_gpu=True: one process uses one GPU; to train on all {n} launch the script with "
                      "`accelerate launch --multi_gpu script.py` or `torchrun --nproc_per_node N script.py` "
                      "(DistributedDataParallel; see docs/distributed.md)", stacklevel=user_stacklevel())
        return False
    return True


def is_main_process() -> bool:
    """Rank 0, or the only process."""
    return rank_world()[0] == 0


def init_distributed() -> Any:
    """Start (or join) the process group the launcher described; gloo on machines without CUDA. The group is
    destroyed when the process exits."""
    from accelerate import PartialState
    state = PartialState(cpu=not torch.cuda.is_available())
    atexit.unregister(_destroy_process_group)  # once, however often this is called
    atexit.register(_destroy_process_group)
    return state


def _destroy_process_group() -> None:
    # PyTorch asks for destroy_process_group() before exit. Without it a rank that finishes first tears its gloo
    # threads down during interpreter shutdown, which aborted a rank ("terminate called without an active
    # exception") while rank 0 was still saving the model. Destroying alone still let it happen about once in ten
    # CI runs: gloo work objects left in reference cycles (fastai learners and their DDP wrappers) were freed during
    # interpreter finalization, and the ranks tore down at different moments. So: free them now, while the
    # interpreter is whole, and let every rank reach this point before any tears the group down.
    if torch.distributed.is_available() and torch.distributed.is_initialized():
        gc.collect()
        try:
            torch.distributed.barrier()
        except Exception:  # noqa: BLE001 - a peer already gone (its launcher stops the run): tear down regardless
            pass
        torch.distributed.destroy_process_group()


def shared_seed(local: int) -> int:
    """Rank 0's `local` value on every rank (so all ranks draw the same data order).

    Args:
        local: this rank's value.
    """
    rank, world = rank_world()
    if world == 1:
        return local
    box = [local]
    torch.distributed.broadcast_object_list(box, src=0)
    return int(box[0])


def gather_objects(obj: Any) -> list[Any]:
    """`obj` from every rank, in rank order (CPU tensors of any shape are fine).

    Args:
        obj: this rank's object (picklable).
    """
    rank, world = rank_world()
    if world == 1:
        return [obj]
    out: list[Any] = [None] * world
    torch.distributed.all_gather_object(out, obj)
    return out


def all_sum(value: torch.Tensor | float) -> torch.Tensor:
    """Sum of `value` over ranks (a float64 CPU tensor).

    Args:
        value: this rank's share.
    """
    t = torch.as_tensor(value, dtype=torch.float64).detach().cpu()
    if rank_world()[1] == 1:
        return t
    return torch.as_tensor(sum(gather_objects(t)), dtype=torch.float64)


def barrier() -> None:
    """Wait for every rank (no-op in a single process)."""
    if rank_world()[1] > 1:
        torch.distributed.barrier()


def main_process_only(method: Callable) -> Callable:
    """Run a file-writing method on rank 0 only; other ranks wait for it and get the same return value.

    Args:
        method: the method to wrap.
    """

    @functools.wraps(method)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        if rank_world()[1] == 1:
            return method(*args, **kwargs)
        result = method(*args, **kwargs) if is_main_process() else None
        barrier()
        return gather_objects(result)[0]
    return wrapper


_TRAINER_CLASS: Any = None


def distributed_trainer(**kwargs: Any) -> Any:
    """A `BertDistributedTrainer` callback (fastai's `DistributedTrainer` with bertlearn's self-sharding loaders
    and an unwrapped validation model).

    fastai.distributed imports accelerate, which adds a global warning filter; importing it only when a
    distributed run starts keeps `import bertlearn` free of that side effect.

    Args:
        **kwargs: passed to `accelerate.Accelerator` (`cpu=True` is set on machines without CUDA).
    """
    global _TRAINER_CLASS
    if _TRAINER_CLASS is None:
        from fastai.distributed import DistributedTrainer

        class BertDistributedTrainer(DistributedTrainer):
            """fastai's `DistributedTrainer` with bertlearn's self-sharding loaders and an unwrapped validation model."""

            is_bertlearn_ddp = True

            def __init__(self, **kwargs: Any):
                kwargs.setdefault("cpu", not torch.cuda.is_available())
                super().__init__(sync_bn=False, **kwargs)

            def _wrap_dl(self, dl: Any) -> Any:
                rank, world = rank_world()
                if world == 1 or getattr(dl, "world_size", 1) == world or not hasattr(dl, "shard"):
                    return dl
                # a validation shard's loader does not gather per batch (`BertDataLoader.to_detach`): its
                # fastai metrics are gathered once, whole, in after_validate
                return dl.shard(rank, world)

            def before_validate(self) -> None:
                super().before_validate()
                # DDP's forward syncs buffers across ranks, which would deadlock ranks holding different numbers of
                # validation batches; evaluation needs no gradient sync, so it runs on the plain module
                self._ddp = self.learn.model
                self.learn.model = getattr(self._ddp, "module", self._ddp)

            def after_validate(self) -> None:
                self.learn.model = getattr(self, "_ddp", self.learn.model)
                gather_fastai_metrics(self.learn.metrics)  # before the Recorder (order 50) reads their values

            def after_loss(self) -> None:
                # DDP averages the ranks' gradients, each the gradient of its own mean: the global batch's mean only
                # when every rank's mean is over as many rows (or tagged / masked tokens, or class weight) as the
                # others'. An uneven last batch, a token-level loss (NER, masked LM) or class weights made a DDP step
                # differ from one process's on the global batch; each rank's loss is weighted by its share
                if self.training:
                    # kept on this callback, which leaves the learner with distrib_ctx: the training loss shown is
                    # the global batch's as well (DeviceSmoothLoss reads it), not rank 0's rows'
                    self.loss_share = ddp_loss_share(self.learn)
                    self.learn.loss_grad = self.learn.loss_grad * ddp_loss_weight(self.learn, self.loss_share)

            def before_fit(self) -> None:
                super().before_fit()
                self.loss_share = None

        _TRAINER_CLASS = BertDistributedTrainer
    return _TRAINER_CLASS(**kwargs)


def metrics_gatherer() -> Any:
    """A callback that gathers fastai's metrics from every rank after a validation pass on sharded loaders
    (`gather_fastai_metrics`), before the Recorder reads them."""
    from fastai.callback.core import Callback
    from fastai.learner import Recorder

    class GatherFastaiMetrics(Callback):
        order = Recorder.order - 1

        def after_validate(self) -> None:
            gather_fastai_metrics(self.learn.metrics)

    return GatherFastaiMetrics()


def gather_fastai_metrics(metrics: Any) -> None:
    """Gather fastai's `AccumMetric`s (their predictions and targets) and `AvgMetric`s (their sums) from every rank,
    once per validation, so each reports the whole validation set as one process would. bertlearn's own metrics
    gather themselves; other `Metric`s are left as they are. A no-op in a single process.

    Args:
        metrics: the learner's metrics, after a validation pass on this rank's shard.
    """
    from fastai.learner import AvgMetric
    from fastai.metrics import AccumMetric
    if rank_world()[1] == 1:
        return
    for m in metrics:  # in the same order on every rank: each gather is a collective
        if isinstance(m, AccumMetric):
            local = (torch.cat(m.preds), torch.cat(m.targs)) if m.preds else None
            parts = [p for p in gather_objects(local) if p is not None]
            m.preds, m.targs = ([torch.cat([p for p, _ in parts])], [torch.cat([t for _, t in parts])]) if parts \
                else ([], [])
        elif isinstance(m, AvgMetric):
            totals = gather_objects((torch.as_tensor(m.total).detach().cpu(), m.count))
            m.total, m.count = sum(t for t, _ in totals), sum(c for _, c in totals)


def ddp_loss_share(learn: Any) -> Any:
    """This rank's share of the global batch's training loss under DDP: its rows over the global batch's, or its
    loss's denominator over the global one (`bertlearn.losses.loss_denominator`: tagged or masked tokens, class
    weights), so that the sum over ranks of `loss * share` is one process's loss on the global batch. A float for a
    mean over rows, else a device tensor (the denominators' sum is an all-reduce on the device; no host sync).

    Args:
        learn: the learner, after its loss (`yb`, `loss_func`, `dl` of this batch).
    """
    from fastai.torch_core import find_bs

    from .losses import loss_denominator
    yb = learn.yb
    rows = find_bs(yb)
    global_rows = getattr(learn.dl, "global_rows", None) or rows * rank_world()[1]
    # a global batch of fewer rows than ranks is repeated so every rank steps: the repeats count for nothing
    repeat = getattr(learn.dl, "repeats_rows", False)
    d = loss_denominator(learn.loss_func, yb[0]) if len(yb) == 1 else None
    if d is None:  # a mean over rows
        return 0.0 if repeat else rows / global_rows
    d = d.detach().float() * (0.0 if repeat else 1.0)
    total = d.clone()
    torch.distributed.all_reduce(total)
    return d / total.clamp_min(torch.finfo(total.dtype).tiny)


def ddp_loss_weight(learn: Any, share: Any = None) -> Any:
    """The factor on one rank's training loss under DDP that makes the averaged gradient the one of a single
    process on the global batch: the rank's share of the global batch's loss (`ddp_loss_share`) times the number
    of ranks. Where gradient accumulation already weighs batches by their rows (fastai's `GradientAccumulation`),
    only the token / weight denominator is corrected. A device tensor or a float; no host sync.

    Args:
        learn: the learner, after its loss (`yb`, `loss_func`, `dl` of this batch).
        share: `ddp_loss_share(learn)` when the caller has it already.
    """
    from fastai.callback.training import GradientAccumulation
    from fastai.torch_core import find_bs
    world = rank_world()[1]
    share = ddp_loss_share(learn) if share is None else share
    # fastai's own GradientAccumulation scales each batch by rows / n_acc; bertlearn's StepAccumulation weighs the
    # global batch by its denominator itself (`weighs_rows = False`) and leaves the ranks' shares to this weight
    by_rows = any(getattr(cb, "weighs_rows", isinstance(cb, GradientAccumulation)) for cb in learn.cbs)
    if not isinstance(share, torch.Tensor):  # a mean over rows: accumulation weighed its rows already
        if getattr(learn.dl, "repeats_rows", False):
            return 0.0
        return 1.0 if by_rows else share * world
    rows = find_bs(learn.yb)
    global_rows = getattr(learn.dl, "global_rows", None) or rows * world
    # accumulation scaled the batch by rows / n_acc already: the rank's mean is re-based from rows to the denominator
    return share * (global_rows / rows if by_rows else world)