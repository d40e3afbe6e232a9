"""Tasks: one module per kind of model trained on the `TaskLearner` core.

`classification` is `BertLearner` (single-label, multi-label, pairs, regression); `lm` is masked-LM domain
adaptation (`BertLMDataBunch`, `BertLMLearner`); `token_classification` is NER (`BertNERLearner` and its
predictors). A task module adds its head, loss, metrics, predictions and what
`save_model` writes; the loop, schedules, checkpoints and export are the core's.
"""

from .classification import BertLearner, best_thresholds, classification_loss
from .lm import BertLMDataBunch, BertLMLearner, MaskedLMLoss, MaskedLMModel, Perplexity
from .token_classification import BertNERLearner, BertNERPredictor, EntityMetric, OnnxNERPredictor

__all__ = ["BertLearner", "BertLMDataBunch", "BertLMLearner", "MaskedLMModel", "MaskedLMLoss", "Perplexity",
           "best_thresholds", "classification_loss", "BertNERLearner", "BertNERPredictor", "OnnxNERPredictor",
           "EntityMetric"]
