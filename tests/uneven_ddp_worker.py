"""Worker for tests/test_distributed.py: a tiny BERT without dropout trained on batches that do not split evenly
between two ranks, in one process (global batch) or under torchrun (half of it per rank).

    python tests/uneven_ddp_worker.py OUT MODEL TASK BS [ROWS]  # TASK: classification (gradient accumulation and a
    python -m torch.distributed.run --nproc_per_node 2 ...      #   warmup_linear schedule) or ner (a token-level loss,
                                                                #   its accumulated steps weighed by tagged words)

ROWS (37 unless given) is the number of training rows.

Each process writes its weights, learning rates and smoothed training losses.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from safetensors.torch import save_file  # noqa: E402

from bertlearn.distributed import rank_world  # noqa: E402


def main() -> None:
    out, model, task, bs = Path(sys.argv[1]), sys.argv[2], sys.argv[3], int(sys.argv[4])
    rows = int(sys.argv[5]) if len(sys.argv) > 5 else 37
    if task == "ner":
        from test_token_classification import make_tagged

        from bertlearn import BertNERDataBunch, BertNERLearner
        from bertlearn.data import TaggedSentences
        words, tags = make_tagged(rows, seed=1)
        valid = make_tagged(16, seed=2)
        db = BertNERDataBunch.from_sentences(TaggedSentences(words, tags, source="train"),
                                             TaggedSentences(*valid, source="valid"), model, bs=bs, maxlen=64, seed=0,
                                             device="cpu")
        learner = BertNERLearner.from_pretrained_model(db, model, out, "cpu", seed=0, grad_accumulation_steps=2)
    else:
        from conftest import make_texts

        from bertlearn import BertDataBunch, BertLearner
        db = BertDataBunch.from_df(make_texts(rows, seed=1), make_texts(16, seed=2), model, bs=bs, maxlen=64, seed=0,
                                   device="cpu")
        learner = BertLearner.from_pretrained_model(db, model, None, "cpu", None, output_dir=out, seed=0,
                                                    grad_accumulation_steps=2, warmup_steps=2,
                                                    schedule_type="warmup_linear")
    with learner.no_bar(), learner.no_logging():
        learner.fit(3, lr=5e-3, validate=False)
    rank, world = rank_world()
    tag = f"rank{rank}" if world > 1 else "single"
    out.mkdir(parents=True, exist_ok=True)
    save_file({k: v.detach().clone().contiguous() for k, v in learner.model.state_dict().items()},
              str(out / f"{tag}.safetensors"))
    (out / f"{tag}.json").write_text(json.dumps({"lrs": [float(v) for v in learner.recorder.lrs],
                                                 "losses": [float(v) for v in learner.recorder.losses]}))


if __name__ == "__main__":
    main()
