"""Device and precision policy: which device a model runs on, whether it computes bfloat16 in hardware, and which
autocast dtype a precision setting means there. A leaf module: it imports nothing else from bertlearn but the leaf
`errors`."""

from __future__ import annotations

import warnings

import torch

from .errors import BertLearnError, ModelError, user_stacklevel

__all__ = ["resolve_device", "same_device", "native_bf16", "amp_dtype_for", "batch_overhead_for", "PRECISIONS",
           "CPU_BATCH_OVERHEAD"]

# A prediction batch's fixed cost on a CPU, in tokens of model work: what cutting a call's longest-first rows into
# more, narrower batches must save in padding to pay (bertlearn.data.padding_aware_cuts). On the 2-core AMD EPYC
# of docs/benchmarks.md a MiniLM batch costs 3-5 ms beyond its tokens, 30-110 tokens' worth; 128 left a one-call
# sorted run unchanged and made calls of 32-64 tweets 1.2-1.7x faster (bench/batch_cuts.py)
CPU_BATCH_OVERHEAD = 128


def resolve_device(device: torch.device | str | None) -> torch.device:
    """None: CUDA when available, else CPU; a CUDA request without CUDA falls back to the CPU, saying so once.

    Args:
        device: "cuda", "cpu", a `torch.device`, or None.
    """
    if device is None:
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        device = torch.device(device)
    except (RuntimeError, TypeError):
        raise ModelError(f"device={device!r} is not a device torch knows; pass \"cuda\" (or \"cuda:1\"), \"cpu\", "
                         "\"mps\", a torch.device, or None for the GPU where there is one") from None
    if device.type == "cuda" and not torch.cuda.is_available():
        if str(device) not in _FELL_BACK:  # said once per process: a script asks for its device many times
            _FELL_BACK.add(str(device))
            warnings.warn(f"device={str(device)!r} was asked for but CUDA is not available here; using the CPU "
                          "(device=None picks the GPU where there is one)", stacklevel=user_stacklevel())
        return torch.device("cpu")
    return device


_FELL_BACK: set[str] = set()


def same_device(asked: torch.device, here: torch.device) -> bool:
    """Whether a tensor on `here` is where `asked` points: "cuda" (no index) means any GPU, "cuda:1" that one.

    Args:
        asked: the device asked for.
        here: the device something is on.
    """
    return asked.type == here.type and (asked.index is None or here.index is None or asked.index == here.index)


def native_bf16(device: torch.device | str) -> bool:
    """Whether `device` computes bfloat16 matrix products in hardware: a CUDA GPU with bf16 (Ampere and later)
    or a CPU with AMX or AVX512-BF16 (Xeon Sapphire Rapids and later). Elsewhere bf16 is emulated and slower.

    Args:
        device: the device to train or predict on.
    """
    device = torch.device(device)
    if device.type == "cuda":
        return torch.cuda.is_available() and torch.cuda.is_bf16_supported()
    if device.type == "cpu":
        cpu = torch.cpu
        return any(getattr(cpu, f, lambda: False)() for f in ("_is_amx_tile_supported", "_is_avx512_bf16_supported"))
    return False


PRECISIONS = ("auto", "fp32", "bf16")


def amp_dtype_for(precision: str, device: torch.device | str) -> torch.dtype | None:
    """The autocast dtype for a `precision` setting: "fp32" none, "bf16" bfloat16, "auto" bfloat16 where `device`
    has bf16 hardware (see `native_bf16`), else none.

    Args:
        precision: "auto", "fp32" or "bf16".
        device: where the model runs.
    """
    if precision not in PRECISIONS:
        raise BertLearnError(f"precision={precision!r} is not one of {list(PRECISIONS)}; 'auto' uses bfloat16 where "
                             "the hardware computes it, 'fp32' gives float32 results")
    if precision == "fp32":
        return None
    return torch.bfloat16 if precision == "bf16" or native_bf16(device) else None


def batch_overhead_for(device: torch.device | str | None) -> int | None:
    """The fixed cost of a prediction batch on `device`, in tokens (`CPU_BATCH_OVERHEAD` on a CPU), or None where
    every `bs` rows stay one batch: on CUDA a batch's kernel launches cost far more, and the prediction graphs
    replay fixed batch shapes (cutting batches there is not measured). A loader's device None is the CPU.

    Args:
        device: where the batches run.
    """
    kind = torch.device(device).type if device is not None else "cpu"
    return CPU_BATCH_OVERHEAD if kind == "cpu" else None
