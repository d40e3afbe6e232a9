"""One exception hierarchy for everything bertlearn rejects, so callers can catch `BertLearnError`; and where its
warnings point."""

import inspect
import os

__all__ = ["BertLearnError", "DataError", "ModelError", "NotFittedError", "NotForThisTaskError", "user_stacklevel"]

# frames of these packages are not where a user's call is: a warning raised deep inside a fit points past them
_LIBRARIES = tuple(os.sep + name + os.sep for name in ("bertlearn", "fastai", "fastcore", "torch", "transformers"))


class BertLearnError(Exception):
    """Base class of every error bertlearn raises on purpose."""


class DataError(BertLearnError, ValueError):
    """Bad input data or data arguments: missing files or columns, bad labels, bad sizes."""


class ModelError(BertLearnError, ValueError):
    """A model or tokenizer that cannot be loaded or does not fit the data."""


class NotFittedError(BertLearnError, RuntimeError):
    """An operation that needs a trained or loaded model was called too early."""


class NotForThisTaskError(BertLearnError, AttributeError):
    """A method of another task's learner was called on this one (`predict_batch` on a masked-LM learner); an
    `AttributeError` too, so `hasattr` says False."""


def user_stacklevel() -> int:
    """The `stacklevel` for `warnings.warn` that points at the first caller outside bertlearn, fastai, fastcore,
    torch, transformers and `contextlib` (a warning from a callback would otherwise name a line in fastai's loop)."""
    frame, level = inspect.currentframe().f_back, 1  # the frame that calls warnings.warn is level 1
    while frame is not None and frame.f_back is not None and _in_library(frame.f_code.co_filename):
        frame, level = frame.f_back, level + 1
    return level


def _in_library(filename: str) -> bool:
    return any(lib in filename for lib in _LIBRARIES) or filename.endswith("contextlib.py")
