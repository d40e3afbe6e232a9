"""bertlearn: fine-tune BERT-family models with fastai and Hugging Face in three calls.

The names below are the curated API, in the order a run meets them: data, learners (the core and one per task),
the model, predictions, and what surrounds them. Building blocks for advanced use (`RaggedRows`, `adamw`,
`DeviceSmoothLoss`...) import from here too but are not listed in `__all__`; `ADVANCED` says where each lives.
"""

from .version import __version__

import importlib as _importlib
import warnings as _warnings

with _warnings.catch_warnings():
    # fastai.layers scripts two activations with torch.jit.script at import, which torch >= 2.10 deprecates;
    # nothing a bertlearn user can act on. The filter is scoped to this one import.
    _warnings.filterwarnings("ignore", message=r"`torch.jit.script` is deprecated", category=FutureWarning)
    import fastai.layers  # noqa: F401

from .errors import BertLearnError, DataError, ModelError, NotFittedError, NotForThisTaskError
from .compat import FastBertCompatWarning
from .device import resolve_device
from .data import BertDataBunch, BertDataLoader, BertNERDataBunch, TextEncoder
from .model import DEFAULT_MODEL, bert_splitter, compile_model, default_model_path, load_model, load_tokenizer
from .learner import TaskLearner, load_learner
from .tasks import BertLearner, BertLMDataBunch, BertLMLearner, BertNERLearner, BertNERPredictor, OnnxNERPredictor
from .losses import BCEWithLogitsLossFlat, CrossEntropyLossFlat, MSELossFlat
from .metrics import accuracy, accuracy_multilabel, default_metrics
from .callbacks import EpochLoggerCallback, GradientClip, SkipValidationCallback, TensorBoardLogger, mixed_precision
from .graphs import CudaGraphCallback, inference_graphs
from .predict import (BertClassificationPredictor, OnnxPredictor, Predictor, load_predictor, predict_logits,
                      rank_predictions)
from .onnx import export_onnx
from .embed import TokenVectors, WordInContext, cosine_similarity_matrix, embed, word_in_context
from .interpret import ClassificationInterpretation, plot_top_losses, top_losses_frame

__all__ = [
    "__version__",
    "BertDataBunch", "BertDataLoader", "TextEncoder", "BertNERDataBunch",
    "TaskLearner", "BertLearner", "BertLMDataBunch", "BertLMLearner", "BertNERLearner", "load_learner",
    "DEFAULT_MODEL", "load_model", "load_tokenizer", "default_model_path", "compile_model", "bert_splitter",
    "BertClassificationPredictor", "Predictor", "OnnxPredictor", "BertNERPredictor", "OnnxNERPredictor",
    "load_predictor", "predict_logits",
    "rank_predictions", "export_onnx",
    "accuracy", "accuracy_multilabel", "default_metrics",
    "CrossEntropyLossFlat", "BCEWithLogitsLossFlat", "MSELossFlat",
    "EpochLoggerCallback", "TensorBoardLogger", "GradientClip", "SkipValidationCallback", "mixed_precision",
    "CudaGraphCallback", "inference_graphs",
    "embed", "word_in_context", "cosine_similarity_matrix", "TokenVectors", "WordInContext",
    "ClassificationInterpretation", "plot_top_losses", "top_losses_frame",
    "resolve_device",
    "BertLearnError", "DataError", "ModelError", "NotFittedError", "NotForThisTaskError", "FastBertCompatWarning",
]

# building blocks importable from the top level (as before the re-layout) without crowding it: name -> module
ADVANCED = {
    "EncodedDataset": "data", "RaggedRows": "data", "TagEncoder": "data", "TaggedDataset": "data",
    "TaggedDataLoader": "data", "EntityMetric": "tasks",
    "adamw": "optim", "DecayGroupsOptimWrapper": "optim", "merged_groups": "optim",
    "amp_dtype_for": "device", "native_bf16": "device", "batch_overhead_for": "device", "resolve_pretrained": "model",
    "padding_aware_cuts": "data", "UnpaddedLinear": "unpadded", "unpad_linears": "unpadded",
    "PlainTensorLoss": "losses", "DeviceAccumMetric": "metrics", "to_fastai_metrics": "metrics",
    "HFOutputCallback": "callbacks", "SparseProgressCallback": "callbacks", "DeviceSmoothLoss": "callbacks",
    "DeviceAvgLoss": "callbacks", "BF16Autocast": "callbacks",
    "InferenceGraphs": "graphs", "graph_buckets": "graphs", "GRAPH_MIN_STEPS": "graphs",
}


def __getattr__(name: str):
    if name in ADVANCED:
        return getattr(_importlib.import_module(f".{ADVANCED[name]}", __name__), name)
    raise AttributeError(f"module 'bertlearn' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(ADVANCED))
