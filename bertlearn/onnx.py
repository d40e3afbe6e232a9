"""ONNX export of a fine-tuned classifier and a predictor that runs it on ONNX Runtime.

`learner.to_onnx(path)` writes a folder: `model.onnx` (dynamic batch and sequence axes), the tokenizer,
`config.json` (label names) and `bertlearn.json` (maxlen, task, thresholds). `OnnxPredictor(path)`
tokenizes and batches exactly as training did and offers the same `predict_*` methods as
`BertClassificationPredictor`, without PyTorch models at serving time.
"""

from __future__ import annotations

import copy
import json
import os
import re
import shutil
import tempfile
import warnings
from pathlib import Path
from typing import Any

import torch
from torch import nn

from .atomic import atomic_dir, atomic_file
from .data import TextEncoder
from .errors import ModelError
from .model import quiet_hub
from .predict import OnnxPredictor, onnx_file_name
from .saved import ONNX_FILE, SETTINGS_FILE, input_names, settings_for, weights_digest, write_settings

__all__ = ["export_onnx", "OnnxPredictor", "ONNX_FILE"]


class _LogitsOnly(nn.Module):
    """The classifier with keyword inputs and a plain logits output, the graph ONNX gets."""

    def __init__(self, model: nn.Module):
        super().__init__()
        self.model = model

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor,
                token_type_ids: torch.Tensor | None = None) -> torch.Tensor:
        extra = {} if token_type_ids is None else {"token_type_ids": token_type_ids}
        return self.model(input_ids=input_ids, attention_mask=attention_mask, **extra).logits


def export_onnx(model: nn.Module, encoder: TextEncoder, path: str | Path, *, thresholds: Any = None,
                opset: int = 18, columns: dict | None = None, extra_settings: dict | None = None) -> Path:
    """Export `model` to `path/model.onnx` with dynamic batch and sequence axes, plus tokenizer and settings.

    Args:
        model: a Hugging Face sequence classifier (exported in float32 from a CPU copy).
        encoder: the `TextEncoder` of its training data.
        path: target folder (or a `.onnx` file name, whose folder gets the rest). A folder holds one export: one
            whose bertlearn.json records another graph still there is refused (`ModelError`; the same file name
            again replaces the export).
        thresholds: multi-label thresholds to store.
        opset: ONNX opset version.
        columns: the text and label columns trained on (for `bertlearn predict` / `eval`).
        extra_settings: more keys for `bertlearn.json`.

    Returns:
        The `.onnx` file.
    """
    path = Path(path)
    folder, fname = (path.parent, path.name) if path.suffix == ".onnx" else (path, ONNX_FILE)
    _refuse_another_export(path, folder, fname)
    kept = _check_saved_weights(model, folder)
    names = input_names(encoder.with_token_types)
    cpu_model = copy.deepcopy(model).float().cpu().eval()
    wrapper = _LogitsOnly(cpu_model).eval()
    # batch 2 and a length with padding: no axis is specialised to 1 and the padded-mask path is traced
    ids = torch.full((2, 16), encoder.pad_id, dtype=torch.long)
    ids[:, :12] = encoder.tokenizer.unk_token_id if encoder.tokenizer.unk_token_id is not None else 1
    mask = (ids != encoder.pad_id).long()
    mask[0, :] = 1
    dummy = [ids, mask] + ([torch.zeros_like(ids)] if "token_type_ids" in names else [])
    batch, seq = torch.export.Dim("batch", min=1), torch.export.Dim("sequence", min=1, max=4096)
    with torch.no_grad(), warnings.catch_warnings():
        # the exporter notes that each named axis is shared by all inputs, which is the intent
        warnings.filterwarnings("ignore", message=r"# The axis name: .* will not be used", category=UserWarning)
        try:
            program = torch.onnx.export(wrapper, tuple(dummy), input_names=names, output_names=["logits"],
                                        dynamic_shapes={n: {0: batch, 1: seq} for n in names}, opset_version=opset,
                                        dynamo=True, verbose=False)
        except (MemoryError, RecursionError):
            raise
        except Exception as e:  # noqa: BLE001 - the exporter's own errors (ConversionError, TorchExportError...)
            plain = re.sub(r"\x1b\[[0-9;]*m", "", str(e)).strip()  # the exporter colours its text for terminals
            first = re.split(r"(?<=\.)\s", (plain.splitlines() or [""])[0])[0][:300]
            raise ModelError(f"torch {torch.__version__}'s ONNX exporter could not convert "
                             f"{type(model).__name__} ({type(e).__name__}: {first}); serve this model without ONNX: "
                             "save_model(path), then bertlearn.load_predictor(path)") from e
    written = dict(getattr(getattr(program, "model", None), "opset_imports", None) or {}).get("")
    if written is not None and written != opset:  # torch converts down where it can, and keeps its own where not
        raise ModelError(f"opset={opset}: torch {torch.__version__}'s ONNX exporter could not write this model in "
                         f"opset {opset} and kept opset {written}; pass opset={written} or later (ONNX Runtime 1.14+ "
                         "runs 18), or convert the file with onnx.version_converter yourself")
    settings = {**kept, **settings_for(encoder, thresholds=thresholds, columns=columns, onnx_file=fname,
                                       weights=weights_digest(cpu_model)),
                **(extra_settings or {})}
    def write(into: Path) -> None:
        program.save(str(into / fname))
        encoder.save_tokenizer(into)  # model_input_names as trained: ONNX Runtime pipelines send the same inputs
        model.config.save_pretrained(into)
        write_settings(into, settings)

    with quiet_hub():
        if _ours(folder):
            # the whole folder is written aside and swapped in, so a crash leaves the previous export (or none)
            # whole; files it does not write (a save_model folder can hold its ONNX export) are kept
            with atomic_dir(folder) as tmp:
                write(tmp)
                _keep_others(folder, tmp)
        else:
            # a folder of the user's (`to_onnx("out/model.onnx")`): left as it is, each file written aside and
            # renamed in, bertlearn.json last, so a folder holding it holds a complete export
            with tempfile.TemporaryDirectory(dir=folder, prefix=".bertlearn-onnx-") as tmp:
                write(Path(tmp))
                files = sorted(Path(tmp).iterdir(), key=lambda f: f.name == SETTINGS_FILE)
                for f in files:
                    with atomic_file(folder / f.name) as target:
                        os.replace(f, target)
    return folder / fname


def _refuse_another_export(path: Path, folder: Path, fname: str) -> None:
    """Refuse to write `fname` into a folder whose bertlearn.json belongs to another graph still there.

    A folder holds one export's bertlearn.json, config.json and tokenizer. `_keep_others` keeps what an export
    does not write (a `save_model` folder's weights, the user's files), so `to_onnx("exp/a.onnx")` then another
    model's `to_onnx("exp/b.onnx")` left a.onnx beside b's labels and settings, and `OnnxPredictor("exp/a.onnx")`
    read them without a word. The same file name again replaces the export; a graph the folder's bertlearn.json
    does not record is not bertlearn's to judge.
    """
    if not (folder / SETTINGS_FILE).is_file():
        return
    other = onnx_file_name(folder)  # the recorded name, or model.onnx for a folder from before it was recorded
    if other == fname or not (folder / other).is_file():
        return
    try:
        recorded = "onnx_file" in json.loads((folder / SETTINGS_FILE).read_text())
    except (OSError, ValueError, TypeError):
        recorded = False
    how = (f"{SETTINGS_FILE}'s \"onnx_file\" is {other!r}" if recorded else
           f"{SETTINGS_FILE} records no \"onnx_file\", so the graph read is {other}")
    raise ModelError(f"to_onnx({str(path)!r}): {str(folder)!r} holds {other}, another export, and the "
                     f"{SETTINGS_FILE}, config.json and tokenizer there are its own ({how}); writing {fname} there "
                     f"would replace them with this model's and leave {other} to be read with another model's labels "
                     "and settings. Export into a folder of its own "
                     f"(to_onnx({str(folder / Path(fname).stem / fname)!r})), or delete {other} first to replace "
                     "that export")


def _check_saved_weights(model: nn.Module, folder: Path) -> dict:
    """Refuse to export beside PyTorch weights of another state of the model; return the saved settings to keep.

    A `save_model` folder can hold its own ONNX export, but `load_predictor`, `bertlearn predict` and `serve`
    read its `model.safetensors` first: if the model trained since that save, the folder would serve the old
    weights under the new export's settings, with nothing to tell. The PyTorch predictor's precision, which the
    export does not set, is kept.
    """
    weights = folder / "model.safetensors"
    if not weights.is_file():
        return {}
    from safetensors.torch import load_file
    saved = load_file(str(weights))
    own = {k: v.detach().float().cpu() for k, v in model.state_dict().items()}
    differ = [k for k, v in saved.items() if k not in own or own[k].shape != v.shape or not torch.equal(own[k],
                                                                                                        v.float())]
    if differ:
        raise ModelError(f"to_onnx({str(folder)!r}): the folder holds model.safetensors from an earlier save_model "
                         f"whose weights differ from this model's ({len(differ)} tensors, e.g. {differ[0]}), and "
                         "load_predictor, bertlearn predict and serve read those first. Call save_model on the folder "
                         "first, or export elsewhere (to_onnx() writes output_dir/onnx)")
    try:
        old = json.loads((folder / SETTINGS_FILE).read_text())
    except (OSError, ValueError):
        return {}
    return {"precision": old["precision"]} if "precision" in old else {}


def _ours(folder: Path) -> bool:
    """Whether `folder` is bertlearn's to replace as a whole: missing, empty, or holding a bertlearn save (its
    bertlearn.json), and not the working directory."""
    if not folder.exists():
        return True
    if Path.cwd() == folder.absolute() or folder.absolute() in Path.cwd().parents:
        return False
    return not any(folder.iterdir()) or (folder / SETTINGS_FILE).is_file()


def _keep_others(old: Path, new: Path) -> None:
    """Link (or copy) into `new` every entry of the folder `old` that `new` does not hold."""
    if not old.is_dir():
        return
    for entry in old.iterdir():
        target = new / entry.name
        if target.exists():
            continue
        if entry.is_dir():
            shutil.copytree(entry, target, copy_function=_link_or_copy)
        else:
            _link_or_copy(entry, target)


def _link_or_copy(src: Any, dst: Any) -> None:
    try:
        os.link(src, dst)  # same file system: no bytes copied
    except OSError:
        shutil.copy2(src, dst)
