"""Worker for tests/test_distributed.py: what a learner does under a launcher after its fit, outside the distributed
fit (validate, predictions), in one process or under torchrun with two.

    python tests/ddp_after_fit_worker.py OUT MODEL 8
    python -m torch.distributed.run --nproc_per_node 2 tests/ddp_after_fit_worker.py OUT MODEL 4

Each process writes what validate() reported and what it predicted.
"""

from __future__ import annotations

import json
import sys
import warnings
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from conftest import make_texts  # noqa: E402
from fastai.callback.tracker import SaveModelCallback  # noqa: E402
from fastai.learner import AvgMetric  # noqa: E402
from fastai.metrics import F1Score, error_rate  # noqa: E402

from bertlearn import BertDataBunch, BertLearner  # noqa: E402
from bertlearn import metrics as M  # noqa: E402
from bertlearn.distributed import rank_world  # noqa: E402

POSITIVE = ["good great excellent film", "lovely fun movie", "fine acting", "great plot"]
NEGATIVE = ["bad awful terrible film", "boring dull movie", "poor acting", "awful plot"]


def main() -> None:
    out, model, bs = Path(sys.argv[1]), sys.argv[2], int(sys.argv[3])
    db = BertDataBunch.from_df(make_texts(32, seed=1), make_texts(33, seed=2), model, bs=bs, maxlen=64, seed=0,
                               device="cpu")
    # fastai's own metrics too: they gather each batch across ranks, and the 33 validation rows split 17 / 16 (batches
    # 4+4+4+4+1 against 4+4+4+4 at bs 4)
    learner = BertLearner.from_pretrained_model(db, model, [{"name": "confusion_matrix", "function": M.confusion_matrix},
                                                            {"name": "accuracy", "function": M.accuracy},
                                                            F1Score(average="macro"), AvgMetric(error_rate)],
                                                "cpu", None, output_dir=out, seed=0)
    with learner.no_bar(), learner.no_logging():
        # its end of fit loads the best weights back: under gloo the device was "cpu:0", which torch.load refused
        learner.fit(1, lr=5e-3, cbs=[SaveModelCallback(monitor="accuracy")])
    rank, world = rank_world()
    fit_metrics = {name: float(v) for name, v in zip(learner.recorder.metric_names[2:], learner.recorder.values[-1][1:])
                   if name != "confusion_matrix"}
    results = learner.validate(quiet=True)
    mine = POSITIVE if rank == 0 else NEGATIVE  # each rank its own texts (one process: the positive ones)
    with warnings.catch_warnings(record=True) as seen:
        warnings.simplefilter("always")
        own = learner.predict_logits(mine)
    shared = learner.predict_logits(POSITIVE + NEGATIVE)  # the same texts on every rank: split and gathered
    tag = f"rank{rank}" if world > 1 else "single"
    out.mkdir(parents=True, exist_ok=True)
    (out / f"{tag}.json").write_text(json.dumps({
        "confusion_matrix": [[int(v) for v in row] for row in results["confusion_matrix"]],
        "accuracy": float(results["accuracy"]), "loss": float(results["loss"]), "own": own.tolist(),
        "fit_metrics": fit_metrics, "f1_score": float(results["f1_score"]), "error_rate": float(results["error_rate"]),
        "shared": shared.tolist(), "warnings": [str(w.message) for w in seen if "launcher" in str(w.message)]}))


if __name__ == "__main__":
    main()
