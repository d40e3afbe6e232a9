"""bertlearn: fine-tune BERT-family text classifiers with fastai and Hugging Face in three calls."""

from .version import __version__

import warnings as _warnings

with _warnings.catch_warnings():
    # fastai.layers scripts two activations with torch.jit.script at import, which torch >= 2.10 deprecates;
    # nothing a bertlearn user can act on. The filter is scoped to this one import.
    _warnings.filterwarnings("ignore", message=r"`torch.jit.script` is deprecated", category=FutureWarning)
    import fastai.layers  # noqa: F401

from .callbacks import (BF16Autocast, DeviceAvgLoss, DeviceSmoothLoss, GradientClip, HFOutputCallback,
                        EpochLoggerCallback, SkipValidationCallback, SparseProgressCallback, TensorBoardLogger,
                        mixed_precision)
from .device import amp_dtype_for, native_bf16, resolve_device
from .data import BertDataBunch, BertDataLoader, EncodedDataset, TextEncoder
from .embed import TokenVectors, WordInContext, cosine_similarity_matrix, embed, word_in_context
from .errors import BertLearnError, DataError, ModelError, NotFittedError
from .graphs import GRAPH_MIN_STEPS, CudaGraphCallback, InferenceGraphs, graph_buckets, inference_graphs
from .interpret import ClassificationInterpretation, plot_top_losses, top_losses_frame
from .lm import BertLMDataBunch, BertLMLearner
from .losses import BCEWithLogitsLossFlat, CrossEntropyLossFlat, MSELossFlat, PlainTensorLoss
from .learner import BertLearner, load_learner
from .metrics import DeviceAccumMetric, accuracy, accuracy_multilabel, default_metrics, to_fastai_metrics
from .optim import DecayGroupsOptimWrapper, adamw, merged_groups
from .model import (DEFAULT_MODEL, bert_splitter, compile_model, default_model_path, load_model, load_tokenizer,
                    resolve_pretrained)
from .onnx import OnnxPredictor, export_onnx
from .data import RaggedRows
from .predict import BertClassificationPredictor, Predictor, predict_logits, rank_predictions

__all__ = [
    "__version__",
    "BertDataBunch", "BertDataLoader", "EncodedDataset", "TextEncoder", "RaggedRows",
    "BertLearner", "load_learner", "adamw", "DecayGroupsOptimWrapper", "merged_groups", "BertLMDataBunch", "BertLMLearner",
    "embed", "word_in_context", "cosine_similarity_matrix", "TokenVectors", "WordInContext",
    "ClassificationInterpretation", "plot_top_losses", "top_losses_frame",
    "BertClassificationPredictor", "Predictor", "OnnxPredictor", "export_onnx", "predict_logits", "rank_predictions", "resolve_device",
    "amp_dtype_for",
    "CrossEntropyLossFlat", "BCEWithLogitsLossFlat", "MSELossFlat", "PlainTensorLoss",
    "accuracy", "accuracy_multilabel", "DeviceAccumMetric", "default_metrics", "to_fastai_metrics",
    "DEFAULT_MODEL", "bert_splitter", "compile_model", "default_model_path", "load_model", "load_tokenizer",
    "resolve_pretrained",
    "HFOutputCallback", "SparseProgressCallback", "DeviceSmoothLoss", "DeviceAvgLoss", "EpochLoggerCallback",
    "SkipValidationCallback", "TensorBoardLogger", "BF16Autocast", "mixed_precision", "native_bf16", "GradientClip",
    "CudaGraphCallback", "InferenceGraphs", "inference_graphs", "graph_buckets", "GRAPH_MIN_STEPS",
    "BertLearnError", "DataError", "ModelError", "NotFittedError",
]
