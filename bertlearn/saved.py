"""The saved-model format: what `save_model` and `to_onnx` add to a Hugging Face folder, and the inputs a model
takes. One place writes it and one reads it back; a new saved setting is a key here and in the task that uses it.

`bertlearn.json` holds the encoder's settings (maxlen, labels, task, pairs and their segment ids, truncation,
windows), the columns trained on, multi-label thresholds, the training precision, a digest of the weights and
bertlearn's version; an ONNX folder adds `onnx_file`. A plain Hugging Face folder without it is read from its config
and tokenizer.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from .errors import ModelError
from .version import __version__

__all__ = ["SETTINGS_FILE", "ONNX_FILE", "check_replaceable", "json_ready", "MODEL_INPUTS", "WEIGHTS_KEY", "generic_labels", "check_saved_labels",
           "input_names", "weights_digest", "settings_for", "write_settings", "plain_maxlen", "read_settings",
           "check_same_weights", "PREDICTION_SETTINGS", "check_same_settings", "saved_thresholds"]

SETTINGS_FILE = "bertlearn.json"
ONNX_FILE = "model.onnx"
MODEL_INPUTS = ("input_ids", "attention_mask", "token_type_ids")  # the order batches carry them in
WEIGHTS_KEY = "weights_sha256"
# the bertlearn.json keys that decide what a model's outputs are read as: the encoder's settings and the thresholds
PREDICTION_SETTINGS = ("labels", "problem_type", "thresholds", "maxlen", "pairs", "truncation", "long_text", "stride",
                       "word_split", "token_type_ids")


def json_ready(x: Any, *, numpy_scalars: bool = True) -> Any:
    """`x` with every number that is not finite as None (JSON has no NaN: `json.dumps` wrote it, which jq, JavaScript
    and strict parsers refuse), through dicts, lists and tuples.

    Args:
        x: a JSON payload (a metric undefined on the data, roc_auc of one class, is NaN).
        numpy_scalars: numpy scalars become Python numbers (np.float32 is no float); False leaves them for the
            encoder to refuse, as FastAPI's does (serve writes what FastAPI would).
    """
    if numpy_scalars and type(x).__module__ == "numpy" and hasattr(x, "item"):
        x = x.item()
    if isinstance(x, float):
        return x if np.isfinite(x) else None
    if isinstance(x, dict):
        return {k: json_ready(v, numpy_scalars=numpy_scalars) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [json_ready(v, numpy_scalars=numpy_scalars) for v in x]
    return x


def generic_labels(labels: Any) -> bool:
    """Whether `labels` are transformers' placeholder names `LABEL_0, LABEL_1, ...` in order: a config that names
    no labels (fast-bert saved its models so, its label names living in labels.csv).

    Args:
        labels: the label names, in output order.
    """
    return all(str(name) == f"LABEL_{i}" for i, name in enumerate(labels))


def input_names(token_types: bool) -> list[str]:
    """The model inputs a batch carries, in batch order.

    Args:
        token_types: the batches carry segment ids (sentence pairs on a model that takes them).
    """
    return list(MODEL_INPUTS[:3 if token_types else 2])


def weights_digest(model: Any) -> str:
    """SHA-256 of the model's weights as float32, by name: equal for a model, its save and its ONNX export, so a
    folder can tell whether the export beside it holds the same state of the model.

    Args:
        model: the PyTorch model (any device or precision).
    """
    digest = hashlib.sha256()
    for name, tensor in sorted(model.state_dict().items()):
        digest.update(f"{name}{tuple(tensor.shape)}".encode())
        digest.update(tensor.detach().float().cpu().contiguous().numpy())  # hashed in place, no copy
    return digest.hexdigest()


def settings_for(encoder: Any, *, thresholds: Any = None, columns: dict | None = None, precision: str | None = None,
                 onnx_file: str | None = None, weights: str | None = None) -> dict:
    """What `bertlearn.json` holds for a model trained with `encoder`.

    Args:
        encoder: the `TextEncoder` of the training data.
        thresholds: multi-label decision thresholds (a float or one per label).
        columns: the text and label columns trained on, for `bertlearn predict` / `eval`.
        precision: "bf16" or "fp32", what training ran at (predictors follow it by default).
        onnx_file: the graph's file name, in an ONNX folder.
        weights: the model's `weights_digest`.
    """
    settings = {**encoder.settings(), **{k: [str(c) for c in v] if isinstance(v, list) else v
                                         for k, v in (columns or {}).items()}}
    settings["thresholds"] = thresholds if thresholds is None or isinstance(thresholds, (int, float)) else \
        [float(t) for t in thresholds]
    if precision is not None:
        settings["precision"] = precision
    if onnx_file is not None:
        settings["onnx_file"] = onnx_file
    if weights is not None:
        settings[WEIGHTS_KEY] = weights
    settings["bertlearn_version"] = __version__
    return settings


def write_settings(folder: Path, settings: dict) -> None:
    """Write `settings` as `folder/bertlearn.json` (inside a save's temporary folder: the save is atomic), and make
    the config.json written beside it name the outputs and the task as they do.

    Args:
        folder: the folder being written.
        settings: what `settings_for` gave.
    """
    (Path(folder) / SETTINGS_FILE).write_text(json.dumps(settings, indent=2))
    config_file = Path(folder) / "config.json"
    labels = settings.get("labels")
    if not config_file.is_file() or labels is None:
        return
    # the model's own config can name other outputs or another task (a model given to the constructor, trained from
    # a Hugging Face checkpoint saved with its problem_type): pipeline() read it that way, and the predictor refused
    # the folder as saved over; the data decided both, as the factories set them when they load the model
    from transformers import AutoConfig
    config = AutoConfig.from_pretrained(folder)  # transformers leaves default names (LABEL_0, LABEL_1) out of the file
    if config.num_labels != len(labels):
        return  # a head of another size: check_saved_labels names it when the folder is read
    config.id2label = dict(enumerate(map(str, labels)))
    config.label2id = {str(label): i for i, label in enumerate(labels)}
    if settings.get("problem_type") in ("single_label_classification", "multi_label_classification", "regression"):
        config.problem_type = settings["problem_type"]
    config.save_pretrained(folder)


def saved_thresholds(path: Any, labels: list) -> list[float] | float | None:
    """The multi-label thresholds a bertlearn folder was saved with, one per name of `labels` (matched by name, as
    the head's outputs are) or one for all; None where there are none to take: not a local folder, no
    `bertlearn.json`, no thresholds or 0.5, a single-label model, or other label names.

    Args:
        path: `from_pretrained_model`'s `pretrained_path` (a hub name or None reads nothing).
        labels: the data's label names, in output order.
    """
    try:
        file = Path(path) / SETTINGS_FILE
        settings = json.loads(file.read_text()) if path is not None and file.is_file() else {}
    except (OSError, TypeError, ValueError):  # a hub name that is no path, an unreadable file: nothing saved here
        return None
    thresholds, names = settings.get("thresholds"), [str(n) for n in settings.get("labels") or []]
    if settings.get("problem_type") != "multi_label_classification" or thresholds in (None, 0.5) or \
            sorted(names) != sorted(str(l) for l in labels) or \
            not isinstance(thresholds, (int, float)) and len(thresholds) != len(names):
        return None
    if isinstance(thresholds, (int, float)):
        return float(thresholds)
    by_name = dict(zip(names, thresholds))
    return [float(by_name[str(l)]) for l in labels]


def plain_maxlen(tokenizer: Any, limit: int | None = None) -> int:
    """Tokens per input for a plain Hugging Face folder: the smaller of the tokenizer's limit and the model's (a
    tokenizer can claim more than the model's position table holds, and a longer input fails in its lookup); 512 at
    most where the model's limit is unknown.

    Args:
        tokenizer: the folder's tokenizer.
        limit: the model's limit (None: unknown, as for an ONNX graph).
    """
    try:
        claimed = int(tokenizer.model_max_length)  # a huge sentinel where the tokenizer sets none
    except (AttributeError, TypeError, ValueError):
        claimed = 512
    # 512 only where the model's limit is unknown: a model and tokenizer both taking 1024 were cut at 512 in silence
    return min(claimed if claimed > 0 else 512, limit or 512)


_STALE = ("the model was saved again after bertlearn saved it (or its bertlearn.json was written by hand). Save it "
          f"with learner.save_model(path) again, or delete the stale {SETTINGS_FILE} to read the folder as a plain "
          "Hugging Face model")


def check_saved_labels(path: Path, saved: Sequence[Any], own: Sequence[Any]) -> None:
    """Refuse a `bertlearn.json` whose output names are not the model's: config.json follows the weights
    (transformers writes both on every save), bertlearn.json can be left behind by a later save of other weights
    (a Trainer run with another label2id or another head size), which would name every output after another label
    (or read a larger head through its first outputs) without a word.

    Args:
        path: the model folder.
        saved: the labels bertlearn.json names.
        own: the labels config.json names (`id2label` in output order; placeholders `LABEL_0...` name none).
    """
    if len(saved) != len(own):
        raise ModelError(f"{str(path)!r}: {SETTINGS_FILE} names {len(saved)} outputs ({_short_names(list(saved))}) "
                         f"but the model has {len(own)}; {_STALE}")
    if not generic_labels(own) and [str(n) for n in own] != [str(n) for n in saved]:
        raise ModelError(f"{str(path)!r}: {SETTINGS_FILE} names the outputs {_short_names(list(saved))} but "
                         f"config.json names them {_short_names(list(own))}; {_STALE}")


def read_settings(path: Path, tokenizer: Any, config: Any, multi_label: bool | None = None, *,
                  limit: int | None = None) -> dict:
    """The task settings saved beside a model (`bertlearn.json`), or what a plain Hugging Face config implies.

    Args:
        path: the model folder.
        tokenizer: the model's tokenizer.
        config: the model's config.
        multi_label: fast-bert's predictor argument: must agree with the task recorded in `bertlearn.json` or
            `config.problem_type` (the head was trained for a softmax or for sigmoids; reading it the other way
            gives meaningless probabilities); where neither records it, it sets the task (False on a head of one
            output is refused: a softmax over one output is always 1).
        limit: the most tokens the model takes in one input (`bertlearn.model.position_limit`), which caps the
            tokenizer's limit for a folder without `bertlearn.json`.
    """
    settings = json.loads((path / SETTINGS_FILE).read_text()) if (path / SETTINGS_FILE).is_file() else {}
    # a plain Hugging Face folder: what its config implies, under what a hand-written bertlearn.json says
    # ({"pairs": true} for a cross-encoder's folder)
    settings.setdefault("maxlen", plain_maxlen(tokenizer, limit))
    own = [config.id2label[i] for i in range(config.num_labels)]
    if "labels" in settings:
        check_saved_labels(path, settings["labels"], own)
    if settings.get("problem_type") and config.problem_type and settings["problem_type"] != config.problem_type:
        # a head retrained for sigmoids (or a softmax) and saved over the folder: read the old way, every
        # probability is wrong
        raise ModelError(f"{str(path)!r}: {SETTINGS_FILE} records the task {settings['problem_type']!r} but "
                         f"config.json records {config.problem_type!r}; {_STALE}")
    settings.setdefault("labels", own)
    if "problem_type" not in settings:
        settings["problem_type"] = config.problem_type or "single_label_classification"
        if not config.problem_type and multi_label is not None:  # nothing records the task: the caller says it
            settings["problem_type"] = "multi_label_classification" if multi_label else "single_label_classification"
        elif not config.problem_type and config.num_labels == 1:
            # transformers trains one output without a problem_type as regression (a reranker's, an STS score); a
            # softmax over one output is 1.0 for every text
            settings["problem_type"] = "regression"
        if settings["problem_type"] == "single_label_classification" and config.num_labels == 1:
            asked = "multi_label=False" if multi_label is not None else \
                f"config.json's problem_type={config.problem_type!r}"
            raise ModelError(f"{asked}: the model in {str(path)!r} has one output, and a single-label "
                             "classifier's softmax over one output is 1.0 for every text; leave multi_label out (one "
                             "output is read as a regression score, as transformers trains it) or pass "
                             "multi_label=True (one label, its sigmoid)")
    if settings["problem_type"] == "regression" and config.num_labels != 1:
        # every reader of a regression model (predict_batch, bertlearn predict's one column, serve's score) takes
        # output 0: the other outputs would be dropped without a word
        raise ModelError(f"the model in {str(path)!r} is a regression with {config.num_labels} outputs "
                         f"({_short_names(own)}); bertlearn predicts one regression score per text (num_labels=1). "
                         "Read its outputs with transformers' AutoModelForSequenceClassification, or train one "
                         "model per target with regression=True")
    saved_multi = settings["problem_type"] == "multi_label_classification"
    if multi_label is not None and bool(multi_label) != saved_multi:
        raise ModelError(f"multi_label={multi_label} disagrees with the model in {str(path)!r}, which was trained as "
                         f"{settings['problem_type'].replace('_', ' ')}; its outputs are read the way they were "
                         f"trained: pass multi_label={saved_multi} or leave it out")
    return settings


def _short_names(names: list) -> str:
    return ", ".join(map(str, names[:5])) + (f", ... ({len(names)} in all)" if len(names) > 5 else "")


def check_same_weights(saved: Path, export: Path) -> None:
    """Refuse an ONNX export whose weights are not those of the save it sits beside (`bertlearn serve P --onnx`
    serves P/onnx as P's model): an export made after the learner trained further (save_model replaces P whole, so
    the export is the later one), or copied in from another run, would answer with another model than P's, with
    nothing to tell. Folders written before the digest existed pass unchecked.

    Args:
        saved: the `save_model` folder.
        export: the ONNX export that stands for it.
    """
    def digest(folder: Path) -> str | None:
        try:
            return json.loads((folder / SETTINGS_FILE).read_text()).get(WEIGHTS_KEY)
        except (OSError, ValueError, AttributeError):
            return None

    ours, theirs = digest(Path(saved)), digest(Path(export))
    if ours is not None and theirs is not None and ours != theirs:
        raise ModelError(f"{str(export)!r} holds other weights than {str(saved)!r} (weights_sha256 {theirs[:12]}... "
                         f"against {ours[:12]}... in their bertlearn.json): the export was made after the model "
                         "trained further, or comes from another run. Export the saved model again "
                         f"(learner.to_onnx({str(export)!r}) after save_model({str(saved)!r}), or bertlearn train "
                         f"--onnx), or serve {str(saved)!r} without --onnx")


def check_same_settings(saved: Path, export: Path) -> None:
    """Refuse an ONNX export that predicts with other settings than the save it sits beside (`bertlearn serve P
    --onnx` serves P/onnx as P's model): same weights but other `PREDICTION_SETTINGS` in bertlearn.json, as when
    `tune_thresholds()` ran between `save_model(P)` and `to_onnx(P/onnx)`, decide otherwise with and without --onnx.
    A setting one of the files lacks (written by an older version) is not compared.

    Args:
        saved: the `save_model` folder.
        export: the ONNX export that stands for it.
    """
    def settings(folder: Path) -> dict:
        try:
            read = json.loads((folder / SETTINGS_FILE).read_text())
        except (OSError, ValueError):
            return {}
        return read if isinstance(read, dict) else {}

    def same(key: str, a: Any, b: Any) -> bool:
        if key == "thresholds" and a is not None and b is not None:
            # one threshold for every label decides as that threshold repeated per label
            try:
                return bool(np.array_equal(*np.broadcast_arrays(np.asarray(a, float), np.asarray(b, float))))
            except ValueError:  # other numbers of labels
                return False
        return a == b

    ours, theirs = settings(Path(saved)), settings(Path(export))
    for both in (ours, theirs):  # a folder from before word_split cut raw text the tokenizer's way
        if "labels" in both and "word_split" not in both:
            both["word_split"] = "tokenizer"
    differ = [f"{k} {ours[k]!r} against {theirs[k]!r}" for k in PREDICTION_SETTINGS
              if k in ours and k in theirs and not same(k, ours[k], theirs[k])]
    if differ:
        raise ModelError(f"{str(export)!r} predicts with other settings than {str(saved)!r} (in their "
                         f"bertlearn.json, the save's against the export's: {'; '.join(differ)}): the export was made "
                         "after those settings changed (tune_thresholds() after save_model, say), or comes from "
                         f"another run. Export again after saving (learner.save_model({str(saved)!r}) then "
                         f"learner.to_onnx({str(export)!r}), or bertlearn train --onnx), or serve {str(saved)!r} "
                         "without --onnx")


def check_replaceable(folder: str | Path, where: str) -> None:
    """Refuse to replace a folder that holds files no model save wrote: saving replaces the folder as a whole, so
    a run folder's notes or TensorBoard logs would be deleted. Missing, empty, bertlearn's own saves (their
    bertlearn.json) and Hugging Face model folders (their config.json) may be replaced.

    Args:
        folder: the folder a save would replace.
        where: the call, as the message names it.
    """
    folder = Path(folder)
    if not folder.is_dir() or (folder / SETTINGS_FILE).is_file() or (folder / "config.json").is_file():
        return
    entries = sorted(e.name for e in folder.iterdir())
    if entries:
        raise ModelError(f"{where}: {str(folder)!r} holds {entries[:5]}{'...' if len(entries) > 5 else ''}, which "
                         "no model save wrote, and saving replaces the folder as a whole (deleting them); save to a "
                         f"new or empty folder, e.g. {str(folder / 'model')!r}")
