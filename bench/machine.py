"""What the bench scripts share: the machine line, where the data is, the tokenizer and model folders.

On the GPU machine lent to some sessions neither `../shared` nor the 88 MB packaged MiniLM can travel (a call
carries 64 MiB); `bench/device_prepare.sh` copies the data and the MiniLM tokenizer (bert-base-uncased's
vocabulary) into `.devdata/`, and `BERTLEARN_DATA=.devdata` points the scripts there.
"""

import os
import platform
from pathlib import Path

# the datasets folder (see ../shared/data/README.md); BERTLEARN_DATA overrides it
DATA_ROOT = Path(os.environ.get("BERTLEARN_DATA") or Path(__file__).resolve().parents[2] / "shared" / "data")


def describe() -> str:
    import torch  # here, not at the top: streaming.py's parent process measures memory without torch

    cpu, flags = platform.processor() or platform.machine(), set()
    try:
        for line in open("/proc/cpuinfo"):
            if line.startswith("model name") and cpu in (platform.processor(), platform.machine()):
                cpu = line.split(":", 1)[1].strip()
            elif line.startswith("flags"):
                flags = set(line.split(":", 1)[1].split())
                break
    except OSError:
        pass
    # bf16 speed on a CPU depends on these (two "AMD EPYC, 2 cores" machines differed 1.7x against 2.8x in bf16)
    bf16 = ("AMX-BF16" if "amx_bf16" in flags else "AVX512-BF16" if "avx512_bf16" in flags
            else "no native bf16" if flags else "bf16 support unknown")
    gpu = torch.cuda.get_device_name(0) if torch.cuda.is_available() else "no GPU"
    return (f"{cpu} ({bf16}), {os.cpu_count()} cores, torch {torch.__version__} "
            f"({torch.get_num_threads()} threads), {gpu}")


def bench_tokenizer():
    """The packaged MiniLM's tokenizer, or (where the package is not installed) its copy under DATA_ROOT/tokenizer."""
    from bertlearn import load_tokenizer
    copy = DATA_ROOT / "tokenizer"
    try:
        return load_tokenizer(None)
    except Exception:
        if not (copy / "tokenizer.json").is_file():
            raise
        return load_tokenizer(str(copy))


def model_folder(kind: str, workdir: Path) -> Path:
    """The packaged MiniLM's folder, or a saved random bert-base-uncased-shaped encoder (what a hub checkpoint is)."""
    from bertlearn.model import default_model_path
    if kind == "minilm":
        return Path(default_model_path())
    folder = workdir / "bert-base-random"
    if not (folder / "config.json").is_file():
        import torch
        from transformers import BertConfig, BertModel
        torch.manual_seed(0)
        BertModel(BertConfig()).save_pretrained(folder)  # BertConfig() defaults are bert-base-uncased's shape
    return folder
