"""Prediction: the loop shared by the learners and the predictors, and the predictors of saved folders: PyTorch
(`BertClassificationPredictor`, safetensors and JSON, no pickle) and ONNX Runtime (`OnnxPredictor`);
`load_predictor(path)` opens either."""

from __future__ import annotations

import contextlib
import importlib
import json
import threading
import warnings
from pathlib import Path
from typing import Any, Callable, Iterator, Sequence

import numpy as np
import torch
from torch import nn

from .compat import note_difference, note_no_effect
from .device import amp_dtype_for, resolve_device
from .data import BertDataLoader, TextEncoder, as_texts
from .errors import ModelError, user_stacklevel
from .graphs import InferenceGraphs, inference_graphs
from .model import compile_model, load_pretrained, position_limit
from .saved import ONNX_FILE, SETTINGS_FILE, generic_labels, input_names, read_settings
from .unpadded import PROBE_TEXT, skipping_padded_rows, unpad_linears

__all__ = ["Predictor", "BertClassificationPredictor", "OnnxPredictor", "load_predictor", "is_onnx_folder",
           "onnx_file_name", "onnx_graph_file", "predict_logits",
           "per_text_logits", "check_fast_bert_predictor_args", "read_label_path", "labels_from_label_path",
           "refuse_device_as_label_path", "rank_predictions",
           "decide", "float32_head"]





def decide(logits: torch.Tensor, encoder: TextEncoder, thresholds: Sequence[float] | float | None = None) -> list:
    """Final decisions: the top label (single-label), the labels whose probability passes their threshold
    (multi-label), or the value (regression).

    Args:
        logits: (n, n_labels) model outputs.
        encoder: the `TextEncoder` with the labels and task.
        thresholds: multi-label decision thresholds (default 0.5).
    """
    if encoder.regression:
        return logits[:, 0].tolist()
    if encoder.multi_label:
        thr = torch.as_tensor(0.5 if thresholds is None else thresholds, dtype=torch.float)
        on = logits.sigmoid() > thr
        return [[l for l, flag in zip(encoder.labels, row) if flag] for row in on.tolist()]
    return [encoder.labels[i] for i in logits.argmax(dim=-1).tolist()]


@contextlib.contextmanager
def float32_head(model: nn.Module, device_type: str) -> Iterator[None]:
    """Inside the block, the model's head (its modules beside `model.base_model`, the encoder) runs outside autocast,
    on its inputs cast to float32, so its outputs are float32 values rather than bf16's 8 significant bits.

    A regression value near 2000 in bf16 is a multiple of 8; the encoder still runs in bf16 (the speed), and the
    head, a few small layers, costs next to nothing in float32. Any architecture: the head is whatever the model
    holds besides its base model (BERT's dropout and classifier, RoBERTa's classification head...). Blocks may
    nest and run in several threads at once: the head is put back as it was when the last one ends.

    Args:
        model: a Hugging Face model with a head on its base model (e.g. `AutoModelForSequenceClassification`).
        device_type: the device type autocast runs on ("cpu", "cuda").
    """
    # DDP's module, torch.compile's original module: their children are the wrapped model, which holds the encoder
    model = getattr(model, "module", model)
    model = getattr(model, "_orig_mod", model)
    base = getattr(model, "base_model", model)
    # only children that do not hold the encoder: patching one that does would run the whole model in float32
    head = [m for m in model.children() if not any(x is base for x in m.modules())] if base is not model else []
    patched = []
    try:
        with _HEAD_LOCK:
            for m in head:
                run = m.__dict__.get("forward")
                if getattr(run, "float32_users", 0):
                    run.float32_users += 1  # another block (or thread) put it in place: it stays until both end
                else:
                    m.forward = _in_float32(m.forward, device_type, own=run)
                patched.append(m)
        yield
    finally:
        with _HEAD_LOCK:
            for m in patched:  # only those this block patched, even when it was interrupted part-way
                run = m.__dict__.get("forward")
                if not getattr(run, "float32_users", 0):
                    continue  # replaced by someone else meanwhile: theirs stays
                run.float32_users -= 1
                if not run.float32_users:
                    if run.own is None:
                        del m.forward
                    else:
                        m.forward = run.own


_HEAD_LOCK = threading.Lock()  # float32_head's counts: prediction may run in several threads on one model


def _in_float32(forward: Callable[..., Any], device_type: str, *, own: Any) -> Callable[..., Any]:
    """`forward` outside autocast on float32 inputs; `own` is the module's own forward override to put back."""
    def cast(v: Any) -> Any:
        return v.float() if torch.is_tensor(v) and v.is_floating_point() else v

    def run(*args: Any, **kwargs: Any) -> Any:
        with torch.autocast(device_type, enabled=False):
            return forward(*map(cast, args), **{k: cast(v) for k, v in kwargs.items()})

    run.float32_users, run.own = 1, own
    return run


@torch.inference_mode()
def predict_logits(model: nn.Module, dl: BertDataLoader, *, amp_dtype: torch.dtype | None = None,
                   graphs: InferenceGraphs | None = None, skip_padding: bool = False) -> torch.Tensor:
    """Logits for every text of `dl.dataset`, in input order, as a float32 CPU tensor.

    The loader runs longest-first (less padding); logits stay on the device until the end and are put
    back in input order in one step, so there is a single device-to-host copy. Sliding windows of one
    text are averaged into that text's logits.

    Args:
        model: a Hugging Face sequence classifier.
        dl: a `BertDataLoader` (a shuffled one is read in a fixed order instead, every row once).
        amp_dtype: run under autocast with this dtype, e.g. torch.bfloat16 (see `amp_dtype_for`); a regression
            model's head then runs in float32 (`float32_head`): its value is the prediction, not rounded to bf16.
        graphs: `InferenceGraphs` of `model` (CUDA): batches they take run as graph replays.
        skip_padding: `UnpaddedLinear` layers (see `unpad_linears`) skip each batch's padded rows (CPU batches).
    """
    if getattr(dl, "shuffle", False) or getattr(dl, "drop_last", False):
        # a training loader draws another order each pass (and may drop rows): the outputs could not be put back
        dl = dl.new(shuffle=False, drop_last=False)
    was_training = model.training
    model.eval()
    device = next(model.parameters()).device
    names = input_names(dl.dataset.type_ids is not None)
    amp = torch.autocast(device.type, dtype=amp_dtype) if amp_dtype else contextlib.nullcontext()
    # a regression value is the prediction itself: in bf16 a value near 2000 would be a multiple of 8
    regression = getattr(getattr(dl.dataset, "encoder", None), "regression", False)
    head = float32_head(model, device.type) if amp_dtype and regression else contextlib.nullcontext()
    out = []
    try:
        with amp, head:
            for b in dl:
                inputs = dict(zip(names, (t.to(device, non_blocking=True) for t in b[:len(names)])))
                logits = graphs(inputs, dl.bs) if graphs is not None else None
                if logits is None:
                    with skipping_padded_rows(inputs["attention_mask"] if skip_padding else None):
                        logits = model(**inputs).logits.float()
                out.append(logits)
    finally:
        model.train(was_training)
    return per_text_logits(out, dl, model.config.num_labels)


def per_text_logits(out: list[torch.Tensor], dl: BertDataLoader, num_labels: int) -> torch.Tensor:
    """Put per-batch outputs of a `shuffle=False` loader back in input order; average sliding windows per text.

    Args:
        out: the loader's per-batch outputs, in loader order.
        dl: the loader (longest-first, not shuffled).
        num_labels: outputs per row.
    """
    ds = dl.dataset
    order = torch.as_tensor(dl.get_idxs(), dtype=torch.long)
    logits = torch.cat(out).cpu() if out else torch.zeros(0, num_labels)
    if getattr(dl, "world_size", 1) > 1:
        # each rank scored its share of the rows: put every rank's rows together
        from .distributed import gather_objects
        parts = gather_objects((order, logits))
        order, logits = torch.cat([o for o, _ in parts]), torch.cat([l for _, l in parts])
    if not len(logits):
        return torch.zeros(ds.n_texts, num_labels)
    rows = torch.empty_like(logits)
    rows[order] = logits
    if len(ds) == ds.n_texts:
        return rows
    owner = torch.as_tensor(ds.owner, dtype=torch.long)
    counts = torch.bincount(owner, minlength=ds.n_texts).clamp(min=1).unsqueeze(1).to(rows.dtype)
    return torch.zeros(ds.n_texts, rows.shape[1]).index_add_(0, owner, rows) / counts


def rank_predictions(logits: torch.Tensor, labels: Sequence[str], *, multi_label: bool = False,
                     regression: bool = False) -> list[list[tuple[str, float]]] | list[float]:
    """For each row, `(label, probability)` pairs sorted by probability, highest first (fast-bert's format);
    for regression, the predicted value of each row.

    Args:
        logits: (n, c) logits.
        labels: label names.
        multi_label: sigmoid per label instead of a softmax over labels.
        regression: return the raw outputs as floats.
    """
    if regression:
        return logits[:, 0].tolist()
    probs = (logits.sigmoid() if multi_label else logits.softmax(dim=-1)).numpy()
    order = np.argsort(-probs, axis=1, kind="stable")
    return [[(labels[j], float(row[j])) for j in idx] for row, idx in zip(probs, order)]


class Predictor:
    """What every saved-model predictor offers on top of `predict_logits`: ranked labels and decisions.

    Args:
        encoder: the `TextEncoder` that tokenizes like training did.
        thresholds: multi-label decision thresholds (None: 0.5).
        bs: the most texts in a batch (on a CPU a call's longest-first texts are cut into narrower batches where
            padding would cost more than a batch: `bertlearn.data.padding_aware_cuts`; set `batch_overhead = None` on
            the predictor to keep every `bs` texts together).
        settings: everything `bertlearn.json` held (columns used in training, versions...).
    """

    # on a CPU a call's longest-first texts are cut into narrower batches where padding would cost more than a batch
    # ("auto": bertlearn.device.batch_overhead_for); None keeps every bs texts in one batch
    batch_overhead: int | str | None = "auto"
    # on a CPU, in float32, the linear layers skip the padded rows of a batch with much padding (bertlearn.unpadded),
    # where a probe at load time found the model's outputs unchanged by it (`padding_skippable`); False runs them
    # all. Not in bf16: there the gathers cost what the padding did (bench/batch_cuts.py, docs/benchmarks.md)
    skip_padding: bool = True
    padding_skippable: bool = False

    def __init__(self, encoder: TextEncoder, thresholds: Any = None, *, bs: int = 64, settings: dict | None = None):
        self.encoder, self.thresholds, self.bs = encoder, thresholds, bs
        self.settings = dict(settings or {})

    @property
    def labels(self) -> list[str]:
        return self.encoder.labels

    def loader(self, texts: Sequence[Any], device: torch.device | None = None) -> BertDataLoader:
        """A longest-first loader over `texts`, tokenized like the training data.

        Args:
            texts: the texts, or (text_a, text_b) pairs.
            device: where batches go (default: the CPU).
        """
        ds = self.encoder.dataset(as_texts(texts, "texts", pairs=self.encoder.pairs))
        return BertDataLoader(ds, bs=self.bs, device=device, batch_overhead=self.batch_overhead)

    def probe_padding(self, model: nn.Module, device: torch.device) -> bool:
        """Whether `model` may skip padded rows (`unpad_linears` on a padded probe batch): on a CPU only.

        Args:
            model: the predictor's model, eager (not compiled), in eval mode.
            device: where it runs.
        """
        if device.type != "cpu":
            return False  # finding the rows reads the mask on the host: a sync per batch on a GPU
        probe = [("a", "b"), (PROBE_TEXT, PROBE_TEXT)] if self.encoder.pairs else ["a", PROBE_TEXT]
        ds = self.encoder.dataset(as_texts(probe, "texts", pairs=self.encoder.pairs))
        batch = next(iter(BertDataLoader(ds, bs=len(ds), batch_overhead=None)))
        inputs = dict(zip(input_names(ds.type_ids is not None), batch))
        return unpad_linears(model, lambda: model(**inputs).logits, inputs["attention_mask"])

    def predict_logits(self, texts: Sequence[Any]) -> torch.Tensor:
        """Raw model outputs (n_texts, n_labels) on the CPU, in input order; subclasses implement it.

        Args:
            texts: the texts, or (text_a, text_b) pairs for a pair model.
        """
        raise NotImplementedError

    def predict_batch(self, texts: Sequence[Any]) -> list:
        """For each text (or (a, b) pair), `(label, probability)` pairs sorted by probability; floats for regression.

        Args:
            texts: the texts, or (text_a, text_b) pairs for a pair model.
        """
        enc = self.encoder
        return rank_predictions(self.predict_logits(texts), self.labels, multi_label=enc.multi_label,
                                regression=enc.regression)

    def predict(self, text: Any) -> list[tuple[str, float]] | float:
        """The `predict_batch` result for one text (or pair).

        Args:
            text: one text, or a (text_a, text_b) pair.
        """
        return self.predict_batch([text])[0]

    def predict_labels(self, texts: Sequence[Any]) -> list:
        """Decisions per text: top label, labels over their saved thresholds (multi-label), or the value.

        Args:
            texts: the texts, or (text_a, text_b) pairs.
        """
        return decide(self.predict_logits(texts), self.encoder, self.thresholds)


def check_fast_bert_predictor_args(path: Path, labels: Sequence[str], tokenizer: Any, *, label_path: Any = None,
                                   do_lower_case: bool | None = None, where: str = "BertClassificationPredictor",
                                   label_file: str = "labels.csv", implicit: Sequence[str] = (),
                                   **ignored: Any) -> None:
    """Hold fast-bert's predictor arguments against the saved model: `label_path` (a labels file or its folder) must
    name the model's labels, `do_lower_case` must match the saved tokenizer; the rest have no effect (named once).

    Args:
        path: the model folder.
        labels: the model's labels, in output order.
        tokenizer: the saved tokenizer.
        label_path: fast-bert's labels file, or the folder holding it.
        do_lower_case: fast-bert's casing flag.
        where: the predictor's name, for the messages.
        label_file: the labels file's name in a folder (fast-bert's: labels.csv; labels.txt for NER).
        implicit: labels the file may leave out (fast-bert's NER added "O" itself).
        **ignored: `model_type`, `use_fast_tokenizer`.
    """
    note_no_effect(where, ignored)
    if label_path is not None:
        file, listed = read_label_path(label_path, label_file)
        listed = [l for l in implicit if l in labels and l not in listed] + listed  # first, as fast-bert put "O"
        if sorted(listed) != sorted(labels):
            raise ModelError(f"label_path {str(file)!r} lists the labels {listed[:20]}, but the model in "
                             f"{str(path)!r} predicts {list(labels)[:20]}; leave label_path out (the labels are saved "
                             "with the model) or point it at that model's labels")
        if listed != list(labels):
            warnings.warn(f"label_path {str(file)!r} lists the labels in another order than the model's outputs "
                          f"{list(labels)[:20]}; every prediction names its label, so the file's order is not used",
                          stacklevel=user_stacklevel())
    if do_lower_case is not None:
        lowers = tokenizer.tokenize("Paris") == tokenizer.tokenize("paris")
        if bool(do_lower_case) != lowers:
            warnings.warn(f"do_lower_case={do_lower_case}, but the tokenizer saved with the model "
                          f"{'lower-cases' if lowers else 'keeps the case of'} its input, as in training; it is used "
                          "as saved, so predictions match training", stacklevel=user_stacklevel())


def read_label_path(label_path: str | Path, label_file: str = "labels.csv") -> tuple[Path, list[str]]:
    """fast-bert's `label_path`: the labels file (or the folder holding `label_file`) and its labels, in file order.

    Args:
        label_path: the file, or its folder.
        label_file: the file's name in a folder.
    """
    file = Path(label_path) / label_file if Path(label_path).is_dir() else Path(label_path)
    if not file.is_file():
        raise ModelError(f"label_path {str(label_path)!r} is neither a {label_file} file nor a folder holding one; "
                         "leave it out: the labels are saved with the model")
    return file, [l.strip() for l in file.read_text(encoding="utf-8-sig").splitlines() if l.strip()]


def labels_from_label_path(path: Path, labels: Sequence[str], label_path: str | Path | None, *,
                           where: str = "BertClassificationPredictor") -> list[str]:
    """The label names of a model folder without `bertlearn.json` whose config names only `LABEL_0, LABEL_1, ...`
    (as fast-bert saved its models): those of `label_path`, in file order, as fast-bert's predictor named its
    outputs (said once per folder, in a `FastBertCompatWarning`). Otherwise `labels` as they are (a folder whose
    config or bertlearn.json names its labels is checked against `label_path` by `check_fast_bert_predictor_args`).

    Args:
        path: the model folder.
        labels: the labels its config or bertlearn.json gives, in output order.
        label_path: fast-bert's labels.csv, or the folder holding it (None: keep `labels`).
        where: the predictor's name, for the messages.
    """
    if label_path is None or (path / SETTINGS_FILE).is_file() or not generic_labels(labels):
        return list(labels)
    file, listed = read_label_path(label_path)
    shown = ", ".join(labels[:5]) + (", ..." if len(labels) > 5 else "")
    if len(listed) != len(labels) or len(set(listed)) != len(listed):
        what = f"{len(listed)} labels" if len(set(listed)) == len(listed) else "duplicate labels"
        raise ModelError(f"label_path {str(file)!r} lists {what} {listed[:20]}, but the model in {str(path)!r} has "
                         f"{len(labels)} outputs, unnamed in its config ({shown}); point label_path at the labels.csv "
                         "the model was trained with (one label per line, in training order)")
    note_difference(where, f"label names of {path}",
                    f"the model in {str(path)!r} names its outputs only {shown} (no bertlearn.json: a fast-bert or "
                    f"plain transformers save), so they take the names in label_path {str(file)!r}, in file order, "
                    f"as fast-bert's predictor named them: "
                    + ", ".join(f"{g}={n!r}" for g, n in list(zip(labels, listed))[:20]))
    return listed


def refuse_device_as_label_path(label_path: Any, where: str) -> None:
    """Raise `ModelError` when `label_path` (fast-bert's second argument) is a device: a caller who meant
    `Predictor(path, "cuda")` is told to pass `device=`.

    Args:
        label_path: what came second.
        where: the predictor's name, for the message.
    """
    if label_path is None or isinstance(label_path, Path) or (isinstance(label_path, str) and Path(label_path).exists()):
        return
    try:
        torch.device(label_path)  # "cpu", "cuda:1", "mps", 0, a torch.device
    except (RuntimeError, TypeError, ValueError):
        return
    shown = str(label_path) if isinstance(label_path, torch.device) else label_path
    raise ModelError(f"label_path={label_path!r} is a device: {where}'s second argument is fast-bert's label_path; "
                     f"pass the device as a keyword, {where}(model_path, device={shown!r})")


class BertClassificationPredictor(Predictor):
    """Predict with a folder written by `learner.save_model` (or a Hugging Face / fast-bert model folder with
    safetensors weights), loading only safetensors and JSON (no pickle).

    Args:
        model_path: the saved folder (Hugging Face format plus `bertlearn.json`).
        label_path: fast-bert's labels.csv (or its folder): checked against the saved labels, which are used; for a
            folder without bertlearn.json whose config names only LABEL_0, LABEL_1, ... (a fast-bert save), its
            labels name the outputs, in file order (said once).
        multi_label: fast-bert's flag: must agree with the saved task (None: use the saved one).
        model_type, use_fast_tokenizer: fast-bert's; no effect (the architecture comes from the saved config, the
            tokenizer is always the fast one), named once when they ask for something.
        do_lower_case: fast-bert's; the saved tokenizer's casing is used, with a warning if this disagrees.
        device: where to run (None: CUDA when available).
        bs: the most texts in a batch (on a CPU a call's longest-first texts are cut into narrower batches where
            padding would cost more than a batch: `bertlearn.data.padding_aware_cuts`; set `batch_overhead = None` on
            the predictor to keep every `bs` texts together; and in float32 the linear layers skip the padded rows
            of a batch that is at least 10% padding, where a probe at load time found the outputs unchanged by it:
            `bertlearn.unpadded`; set `skip_padding = False` to run them).
        precision: "fp32", "bf16" (autocast where the device has bf16 hardware, i.e. Ampere+ GPUs and CPUs with AMX
            or AVX512-BF16: 2.8x float32 on a 2-core CPU, docs/benchmarks.md; on a GPU it pays with CUDA graphs, see docs/benchmarks.md;
            probabilities mostly within 1e-2 of float32 (the packaged model on 1,000 review texts: median 2.6e-4,
            largest 0.021, one label of 1,000 flipped); a regression model's head runs in float32, so its values
            are not rounded to bf16's 8 significant bits), or "auto": what training
            used (`is_fp16=True` trains in bf16) where this device has bf16 hardware, else fp32.
        compile: compile the model with `torch.compile` (True, or a dict of its options; see `compile_model`):
            the first batch pays a one-time compilation (10-30 s on a CPU), later batches run faster; worth it
            for a long-lived predictor or a large job.
        cuda_graphs: on a CUDA GPU, replay the forward pass as CUDA graphs, one per batch width bucket (batches
            are padded up to it; see `InferenceGraphs`): the eager bf16 pass is host-bound there. "auto": in bf16,
            a shape is captured the second time it is met (so one-off calls stay eager); True: at once, in any
            precision (error off CUDA); False: never. Not combined with `compile`.
    """

    def __init__(self, model_path: str | Path, label_path: str | Path | None = None, multi_label: bool | None = None,
                 model_type: str | None = None, use_fast_tokenizer: bool = True, do_lower_case: bool | None = None,
                 device: torch.device | str | None = None, *, bs: int = 64, precision: str = "auto",
                 compile: bool | dict = False, cuda_graphs: bool | str = "auto"):
        from transformers import AutoModelForSequenceClassification, AutoTokenizer

        refuse_device_as_label_path(label_path, "BertClassificationPredictor")
        path = Path(model_path)
        if not path.is_dir():
            raise ModelError(f"model_path {str(path)!r} is not a directory; pass the folder written by save_model")
        needed = ["config.json", "model.safetensors"]
        missing = [f for f in needed if not (path / f).is_file()]
        if missing:
            # save_model's default folder is output_dir/model_out: point at a saved model one level down
            inside = sorted(str(p.parent) for p in path.glob("*/config.json") if (p.parent / needed[1]).is_file())
            pickled = sorted(p.name for p in path.glob("pytorch_model*.bin"))
            if inside:
                hint = f" It contains a saved model in {inside[:3]}: pass that folder."
            elif missing == ["model.safetensors"] and pickled:
                # fast-bert (transformers < 5) saved pickled weights; a fast-bert user has no learner to save again
                hint = (f" Its weights are in {pickled[0]}, PyTorch's pickle format (as fast-bert and transformers "
                        "before 5 saved them), which this predictor never loads (unpickling runs code). Convert the "
                        "folder once, in Python (it adds model.safetensors and leaves the .bin as it is): "
                        "from transformers import AutoModelForSequenceClassification; "
                        f"AutoModelForSequenceClassification.from_pretrained({str(path)!r})"
                        f".save_pretrained({str(path)!r})")
            else:
                hint = " Save it again with learner.save_model(path)"
            raise ModelError(f"model_path {str(path)!r} lacks {missing}; it holds {sorted(p.name for p in path.iterdir())}."
                             + hint)
        self.device = resolve_device(device)
        if cuda_graphs not in (True, False, "auto"):
            raise ModelError(f"cuda_graphs={cuda_graphs!r} is not one of True, False, 'auto'")
        if cuda_graphs is True and self.device.type != "cuda":
            raise ModelError(f"cuda_graphs=True needs a CUDA GPU, but the predictor runs on {str(self.device)!r}; "
                             "pass device='cuda', or cuda_graphs='auto' (graphs only where they apply)")
        if cuda_graphs is True and compile:
            raise ModelError("cuda_graphs=True and compile=True: use one or the other")
        try:
            self.model, _ = load_pretrained(AutoModelForSequenceClassification, str(path), complete=True,
                                            use_safetensors=True)
            self.model.to(self.device)
            tokenizer = AutoTokenizer.from_pretrained(path)
        except (OSError, ValueError) as e:
            raise ModelError(f"model_path {str(path)!r} could not be loaded: {e}") from e
        self.model.eval()
        compiled = compile_model(self.model, compile)
        settings = read_settings(path, tokenizer, self.model.config, multi_label, limit=position_limit(self.model))
        named = labels_from_label_path(path, settings["labels"], label_path)
        if named != settings["labels"]:
            # the config then names what the predictions name (for whatever reads id2label off the model)
            settings["labels"] = named
            self.model.config.id2label = dict(enumerate(named))
            self.model.config.label2id = {l: i for i, l in enumerate(named)}
        check_fast_bert_predictor_args(path, settings["labels"], tokenizer, label_path=label_path,
                                       do_lower_case=do_lower_case, model_type=model_type,
                                       use_fast_tokenizer=use_fast_tokenizer)
        super().__init__(TextEncoder.from_settings(tokenizer, settings), settings.get("thresholds"), bs=bs,
                         settings=settings)
        if precision == "auto" and settings.get("precision", "fp32") == "fp32":
            precision = "fp32"  # predict at the precision training ran at: same outputs as learner.predict_batch
        self.amp_dtype = amp_dtype_for(precision, self.device)
        self.graphs = inference_graphs(self.model, self.encoder.maxlen, self.amp_dtype, cuda_graphs,
                                       pad_left=self.encoder.pad_left)
        # probed (and the layers swapped) only where skipping is on and in float32 (in bf16 it gains nothing):
        # `BertClassificationPredictor.skip_padding = False` before loading keeps every nn.Linear as it is
        self.padding_skippable = (self.skip_padding and not compiled and self.amp_dtype is None
                                  and self.probe_padding(self.model, self.device))

    def predict_logits(self, texts: Sequence[Any]) -> torch.Tensor:
        """Raw model outputs (n_texts, n_labels) on the CPU, in input order (sliding windows averaged).

        Args:
            texts: the texts, or (text_a, text_b) pairs for a pair model.
        """
        return predict_logits(self.model, self.loader(texts, self.device), amp_dtype=self.amp_dtype,
                              graphs=self.graphs, skip_padding=self.skip_padding and self.padding_skippable)


class OnnxPredictor(Predictor):
    """Predict with a folder written by `learner.to_onnx`, on ONNX Runtime.

    Args:
        path: the folder (or a `.onnx` file in it: one its bertlearn.json does not record runs with that graph's
            settings, with a warning; see `bertlearn.predict.onnx_graph_file`).
        providers: ONNX Runtime execution providers (default: CUDA when onnxruntime-gpu sees a GPU, else CPU).
        bs: batch size (the most texts a batch holds: on a CPU, prediction cuts longest-first batches by padding).
        intra_op_num_threads: CPU threads per operator (default: ONNX Runtime's choice, the physical cores).
    """

    def __init__(self, path: str | Path, *, providers: Sequence[str] | None = None, bs: int = 64,
                 intra_op_num_threads: int | None = None):
        try:
            import onnxruntime as ort
        except ImportError as e:
            raise ModelError("OnnxPredictor needs onnxruntime: pip install 'bertlearn[onnx]'") from e
        from transformers import AutoConfig, AutoTokenizer

        path = Path(path)
        graph = onnx_graph_file(path)  # a .onnx file beside another graph's settings is said
        folder, fname = graph.parent, graph.name
        if not graph.is_file():
            held = sorted(p.name for p in folder.iterdir()) if folder.is_dir() else []
            raise ModelError(f"path {str(path)!r} holds no {fname} (it holds {held[:15]}); pass the folder written by "
                             "learner.to_onnx(path)")
        tokenizer = AutoTokenizer.from_pretrained(folder)
        config = AutoConfig.from_pretrained(folder)
        settings = read_settings(folder, tokenizer, config)
        super().__init__(TextEncoder.from_settings(tokenizer, settings), settings.get("thresholds"), bs=bs,
                         settings=settings)
        options = ort.SessionOptions()
        if intra_op_num_threads:
            options.intra_op_num_threads = int(intra_op_num_threads)
        available = ort.get_available_providers()
        if providers is None:
            providers = [p for p in ("CUDAExecutionProvider", "CPUExecutionProvider") if p in available]
        self.session = ort.InferenceSession(str(graph), sess_options=options, providers=list(providers))
        self.num_labels = int(config.num_labels)
        self._names = [i.name for i in self.session.get_inputs()]

    def predict_logits(self, texts: Sequence[Any]) -> torch.Tensor:
        """Raw model outputs (n_texts, n_labels) in input order (sliding windows averaged).

        Args:
            texts: the texts, or (text_a, text_b) pairs for a pair model.
        """
        dl = self.loader(texts)
        if self.session.get_providers()[0] != "CPUExecutionProvider":
            dl.batch_overhead = None  # the padding-aware cuts are a CPU measurement: a GPU provider gets every bs rows
        names = input_names(dl.dataset.type_ids is not None)
        if names != self._names:
            raise ModelError(f"the ONNX graph takes {self._names} but the tokenizer gives {names}; export again")
        out = []
        for b in dl:
            feed = {n: np.ascontiguousarray(t.numpy()) for n, t in zip(names, b)}
            out.append(torch.from_numpy(self.session.run(["logits"], feed)[0]).float())
        return per_text_logits(out, dl, self.num_labels)


def load_predictor(path: str | Path, *, device: torch.device | str | None = None, bs: int = 64,
                   precision: str = "auto", compile: bool | dict = False, cuda_graphs: bool | str = "auto") -> Predictor:
    """The predictor for a saved folder: `OnnxPredictor` for a `to_onnx` folder (or a `.onnx` file),
    `BertClassificationPredictor` for a `save_model` folder (one holding both is read with PyTorch); a token
    classifier's folders (the task recorded in bertlearn.json, or a plain Hugging Face folder saved from a
    `...ForTokenClassification` model) open as `BertNERPredictor` / `OnnxNERPredictor`.

    Args:
        path: the folder, or its `.onnx` file.
        device: where the model runs (None: CUDA when available); for an ONNX folder, the ONNX Runtime provider
            ('cpu' or 'cuda'; a CUDA device without onnxruntime-gpu runs on the CPU, with a warning).
        bs: batch size (the most texts a batch holds: on a CPU, prediction cuts longest-first batches by padding).
        precision, compile, cuda_graphs: PyTorch predictor options (see `BertClassificationPredictor`); an ONNX
            folder runs as exported, and says so when they ask for something else.
    """
    path = Path(path)
    folder = path.parent if path.suffix == ".onnx" else path
    if not folder.is_dir():
        raise ModelError(f"model path {str(path)!r} is not a folder; pass the folder written by save_model or "
                         "to_onnx (or bertlearn train)")
    task = _saved_task(folder)
    if task in _TASK_PREDICTORS:
        # a task module's predictors, imported by name: the core does not import the tasks (tests/test_layout.py)
        module, torch_cls, onnx_cls = _TASK_PREDICTORS[task]
        classes = importlib.import_module(module)
        if is_onnx_folder(path):
            return getattr(classes, onnx_cls)(path, bs=bs, providers=_onnx_providers(device, precision, compile,
                                                                                    cuda_graphs))
        if cuda_graphs is True:
            warnings.warn(f"cuda_graphs=True: the {task} predictor runs eagerly (its inference graphs are not built "
                          "yet)", stacklevel=user_stacklevel())
        return getattr(classes, torch_cls)(folder, device=device, bs=bs, precision=precision, compile=compile)
    if is_onnx_folder(path):
        return OnnxPredictor(path, bs=bs, providers=_onnx_providers(device, precision, compile, cuda_graphs))
    return BertClassificationPredictor(folder, device=device, bs=bs, precision=precision, compile=compile,
                                       cuda_graphs=cuda_graphs)


def _onnx_providers(device: Any, precision: str, compile: Any, cuda_graphs: Any) -> list | None:
    # load_predictor's PyTorch options for an ONNX folder: device picks the execution provider (it was dropped, so
    # --device cpu ran on CUDA where onnxruntime-gpu sees one); the others do not apply, which is said
    amp_dtype_for(precision, "cpu")  # a value no folder takes (precision="fp16", a typo) is refused as for PyTorch
    ignored = [f"{name}={value!r}" for name, value, asked in (("precision", precision, precision == "bf16"),
                                                               ("compile", compile, bool(compile)),
                                                               ("cuda_graphs", cuda_graphs, cuda_graphs is True))
               if asked]
    if ignored:
        warnings.warn(f"{', '.join(ignored)}: PyTorch predictor options, which an ONNX model does not take; it runs "
                      "on ONNX Runtime as it was exported (open the save_model folder to use them)",
                      stacklevel=user_stacklevel())
    if device is None:
        return None  # ONNX Runtime's CUDA provider where it has one, else the CPU
    try:
        device = torch.device(device)
    except (RuntimeError, TypeError):
        raise ModelError(f"device={device!r} is not a device; an ONNX model runs on 'cpu' or 'cuda' ('cuda:1'...), "
                         "or pass None for CUDA where ONNX Runtime has it") from None
    if device.type == "cpu":
        return ["CPUExecutionProvider"]
    if device.type != "cuda":
        raise ModelError(f"device={str(device)!r}: an ONNX model runs on 'cpu' or 'cuda' (ONNX Runtime's providers); "
                         "open the save_model folder for other devices")
    try:
        import onnxruntime as ort
    except ImportError:
        return None  # the predictor says how to install it
    if "CUDAExecutionProvider" not in ort.get_available_providers():
        warnings.warn(f"device={str(device)!r}: this onnxruntime has no CUDA provider (pip install onnxruntime-gpu), "
                      "so the ONNX model runs on the CPU", stacklevel=user_stacklevel())
        return ["CPUExecutionProvider"]
    return [("CUDAExecutionProvider", {"device_id": device.index or 0}), "CPUExecutionProvider"]


# saved tasks whose predictors live in a task module: task -> (module, PyTorch predictor, ONNX predictor)
_TASK_PREDICTORS = {"token_classification": ("bertlearn.tasks.token_classification", "BertNERPredictor",
                                             "OnnxNERPredictor")}


def _saved_task(folder: Path) -> str | None:
    file = folder / SETTINGS_FILE
    try:
        task = json.loads(file.read_text()).get("problem_type") if file.is_file() else None
    except (OSError, ValueError) as e:
        raise ModelError(f"{str(file)!r} is not readable JSON ({e}); save the model again (save_model / to_onnx write "
                         "it)") from e
    if task is None and (folder / "config.json").is_file():
        # a plain Hugging Face folder records its task in the head class it was saved from (what pipeline() reads)
        from transformers.models.auto.modeling_auto import MODEL_FOR_TOKEN_CLASSIFICATION_MAPPING_NAMES
        try:
            heads = json.loads((folder / "config.json").read_text()).get("architectures") or []
        except (OSError, ValueError):
            return None  # the loader says what is wrong with the config
        if set(heads) & set(MODEL_FOR_TOKEN_CLASSIFICATION_MAPPING_NAMES.values()):
            task = "token_classification"
    return task


def onnx_file_name(folder: str | Path) -> str:
    """The ONNX graph's file name in an export folder: what `to_onnx(path)` recorded in bertlearn.json (a path
    ending in another name than model.onnx), else model.onnx.

    Args:
        folder: the export folder.
    """
    settings = Path(folder) / SETTINGS_FILE
    try:
        return str(json.loads(settings.read_text()).get("onnx_file", ONNX_FILE)) if settings.is_file() else ONNX_FILE
    except (OSError, ValueError, AttributeError):  # unreadable, or JSON that is no object: the readers say so
        return ONNX_FILE


def onnx_graph_file(path: str | Path) -> Path:
    """The ONNX graph a predictor of `path` runs: a folder's own (`onnx_file_name`), or the `.onnx` file named.

    A folder holds one bertlearn.json, config.json and tokenizer, written by its export. A `.onnx` file there that
    bertlearn.json does not record as its graph ("onnx_file") runs with those settings: right for a copy made from
    that export (`quantize_dynamic`, ONNX Runtime's optimizer), wrong for another model's graph (`to_onnx("exp/a.onnx")`
    then another model's `to_onnx("exp/b.onnx")`, which `to_onnx` now refuses), so it is said once, in a warning.

    Args:
        path: an export folder, or its `.onnx` file.
    """
    path = Path(path)
    if path.suffix != ".onnx":
        return path / onnx_file_name(path)
    folder = path.parent
    try:
        recorded = json.loads((folder / SETTINGS_FILE).read_text()).get("onnx_file")
    except (OSError, ValueError, AttributeError):
        return path  # no bertlearn.json, or one the settings reader refuses with its own message
    if recorded is None or str(recorded) == path.name or not path.is_file():
        return path
    recorded = str(recorded)
    there = "" if (folder / recorded).is_file() else f" (not in the folder: renamed to {path.name}?)"
    warnings.warn(f"path {str(path)!r}: the {SETTINGS_FILE} beside it records {recorded!r} as its graph "
                  f"(\"onnx_file\"){there}, so {path.name} runs with {recorded}'s labels, settings and tokenizer: "
                  f"right for a copy of {recorded} (quantized or optimized), wrong for another model's graph, which "
                  f"belongs in a folder of its own (to_onnx({str(folder / path.stem / path.name)!r}))",
                  stacklevel=user_stacklevel())
    return path


def is_onnx_folder(path: str | Path) -> bool:
    """Whether `load_predictor` reads `path` with ONNX Runtime: a `.onnx` file, or a folder holding an ONNX graph
    (under the name its bertlearn.json records) and no PyTorch weights.

    Args:
        path: a folder or a `.onnx` file.
    """
    path = Path(path)
    if path.suffix == ".onnx":
        return True
    return (path / onnx_file_name(path)).is_file() and not (path / "model.safetensors").is_file()
