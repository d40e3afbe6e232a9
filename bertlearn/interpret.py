"""fastai's `ClassificationInterpretation` for bertlearn data: the top losses are shown as texts.

`ClassificationInterpretation.from_learner(learner)` works as in fastai (confusion matrix, `most_confused`,
`print_classification_report`); its `plot_top_losses` dispatches on the type of the decoded inputs, and
bertlearn's loaders decode to `TextInputs`, which the method registered here draws as a table of texts.
"""

from __future__ import annotations

import textwrap
import warnings
from typing import Any

import pandas as pd
import torch
from fastai.imports import dispatch
from fastai.interpret import ClassificationInterpretation as _FastaiClassificationInterpretation

from .data import MULTI, REGRESSION, TextInputs, display_frame
from .errors import NotForThisTaskError, user_stacklevel

__all__ = ["ClassificationInterpretation", "plot_top_losses", "top_losses_frame"]


class ClassificationInterpretation(_FastaiClassificationInterpretation):
    """fastai's `ClassificationInterpretation` (build it with `from_learner(learner)`), with a confusion-matrix
    figure whose axis labels fit inside it and a classification report without scikit-learn's warnings.

    Single-label classification only: fastai's confusion matrix reads a multi-label row's 0/1 values as the
    label indices 0 and 1 (a matrix and report that look right and mean nothing), and a regression has no
    classes, so both are refused. With sliding windows the rows are windows, as validate's metrics are, which
    is said."""

    @classmethod
    def from_learner(cls, learn: Any, ds_idx: int = 1, dl: Any = None, act: Any = None) -> Any:
        """fastai's `from_learner`, after checking the task (see the class).

        Args:
            learn: the learner; ds_idx: which loader of its databunch (1: validation); dl: another loader.
            act: the activation (default: the loss function's).
        """
        if dl is not None and hasattr(learn, "check_targets_match"):
            learn.check_targets_match(dl, "interpret")
        data = (dl if dl is not None else learn.dls[ds_idx]).dataset
        problem = getattr(getattr(data, "encoder", None), "problem_type", None)
        if problem in (MULTI, REGRESSION):
            what = "multi-label" if problem == MULTI else "regression"
            fix = ("per label sklearn.metrics.multilabel_confusion_matrix(targets, learner.predict_logits(texts)"
                   ".sigmoid().numpy() > learner.thresholds), or bertlearn.metrics.evaluate" if problem == MULTI else
                   "bertlearn.metrics.evaluate (MSE, Pearson, Spearman) or learner.validate()")
            raise NotForThisTaskError(f"interpret() builds fastai's single-label confusion matrix, which a "
                                      f"{what} task does not have (it would read the targets as class indices); "
                                      f"use {fix}")
        if len(data) != getattr(data, "n_texts", len(data)):
            warnings.warn(f"interpret(): the {len(data)} rows here are sliding windows of {data.n_texts} texts; the "
                          "confusion matrix, report and top losses count windows (as validate's metrics do), "
                          "not texts; bertlearn eval and predict_labels decide per text",
                          stacklevel=user_stacklevel())
        with warnings.catch_warnings():
            # said just above in interpret()'s own words; get_preds' would be the same fact again
            warnings.filterwarnings("ignore", message=r"get_preds: the \d+ rows of this loader are sliding windows")
            return super().from_learner(learn, ds_idx=ds_idx, dl=dl, act=act)

    def plot_confusion_matrix(self, *args: Any, **kwargs: Any) -> Any:
        """fastai's plot, laid out after its axis labels are set (fastai lays out before, so a saved PNG cut off
        "Predicted"); returns the figure.

        Args:
            *args, **kwargs: as for fastai's (normalize, title, cmap, norm_dec, plot_txt, figure options).
        """
        import matplotlib.pyplot as plt
        super().plot_confusion_matrix(*args, **kwargs)
        fig = plt.gcf()
        fig.tight_layout()
        return fig

    def print_classification_report(self) -> None:
        """scikit-learn's classification report of the set: precision, recall, F1 and support per label. A label
        never predicted shows precision 0 (scikit-learn's value; it also warned, three times)."""
        import sklearn.metrics as skm
        from fastai.torch_core import flatten_check
        with warnings.catch_warnings():  # interpret() said that the rows are windows
            warnings.filterwarnings("ignore", message=r"get_preds: the \d+ rows of this loader are sliding windows")
            _, targs, decoded = self.learn.get_preds(dl=self.dl, with_decoded=True, with_preds=True,
                                                     with_targs=True, act=self.act)
        d, t = flatten_check(decoded, targs)
        names = [str(v) for v in self.vocab]
        print(skm.classification_report(t, d, labels=list(self.vocab.o2i.values()), target_names=names,
                                        zero_division=0))


def top_losses_frame(x: TextInputs, samples: Any, outs: Any, raws: torch.Tensor, losses: torch.Tensor,
                     trunc_at: int = 300) -> pd.DataFrame:
    """Text, target, prediction, probability of the prediction (or raw output) and loss, one row per sample.

    Args:
        x: the decoded texts.
        samples: `(text, ..., target)` rows; outs: `(prediction,)` rows, as fastai's interpretation passes them.
        raws: the model's activated outputs; losses: the per-sample losses.
        trunc_at: characters of text kept.
    """
    raws = raws.float().cpu()
    score = raws.max(dim=-1).values if raws.ndim > 1 and raws.shape[-1] > 1 else raws.reshape(len(raws), -1)[:, 0]
    return pd.DataFrame({
        "text": [t if len(t) <= trunc_at else t[:trunc_at - 1] + "…" for t in x],
        "target": [s[-1] for s in samples],
        "predicted": [o[-1] if isinstance(o, tuple) else o for o in outs],
        "probability": [round(float(v), 4) for v in score],
        "loss": [round(float(v), 4) for v in losses.float().cpu()],
    })


@dispatch
def plot_top_losses(x: TextInputs, y: object, samples: object, outs: object, raws: object, losses: object,
                    trunc_at: int = 300, width: int = 100, figsize: Any = None, show_df: bool = True,
                    **kwargs: Any):
    """Draw the top-loss texts with target, prediction, probability and loss as a matplotlib table.

    The figure renders headless (any matplotlib backend) and `plt.savefig` writes it as PNG; the same rows
    are displayed as a DataFrame in a notebook (or printed) unless `show_df=False`.
    """
    import matplotlib.pyplot as plt

    df = top_losses_frame(x, samples, outs, raws, losses, trunc_at=trunc_at)
    wrapped = ["\n".join(textwrap.wrap(str(t), width)) or " " for t in df["text"]]
    lines = [w.count("\n") + 1 for w in wrapped]
    fig, ax = plt.subplots(figsize=figsize or (12, 0.6 + 0.28 * (sum(lines) + len(lines))))
    ax.axis("off")
    cells = [[w, str(t), str(p), f"{pr:.3f}", f"{l:.3f}"]
             for w, t, p, pr, l in zip(wrapped, df["target"], df["predicted"], df["probability"], df["loss"])]
    table = ax.table(cellText=cells, colLabels=["text", "target", "predicted", "probability", "loss"],
                     colWidths=[0.64, 0.1, 0.1, 0.08, 0.08], loc="upper center", cellLoc="left")
    table.auto_set_font_size(False)
    table.set_fontsize(8)
    for (row, _), cell in table.get_celld().items():
        cell.set_height(0.28 * (lines[row - 1] if row > 0 else 1) / fig.get_figheight())
    ax.set_title("Top losses")
    fig.tight_layout()
    if show_df:
        display_frame(df)
    return fig
