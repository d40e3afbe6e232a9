"""One exception hierarchy for everything bertlearn rejects, so callers can catch `BertLearnError`."""

__all__ = ["BertLearnError", "DataError", "ModelError", "NotFittedError"]


class BertLearnError(Exception):
    """Base class of every error bertlearn raises on purpose."""


class DataError(BertLearnError, ValueError):
    """Bad input data or data arguments: missing files or columns, bad labels, bad sizes."""


class ModelError(BertLearnError, ValueError):
    """A model or tokenizer that cannot be loaded or does not fit the data."""


class NotFittedError(BertLearnError, RuntimeError):
    """An operation that needs a trained or loaded model was called too early."""
