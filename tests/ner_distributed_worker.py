"""Worker for tests/test_token_classification.py's DDP test: a NER fit on WNUT-17 sentences under torchrun.

    python -m torch.distributed.run --nproc_per_node 2 tests/ner_distributed_worker.py OUT WNUT17_DIR

Each rank writes validate()'s scores and the seqeval scores of its own predict_tokens() over the whole validation
set: with the metrics gathered across ranks, the two agree on every rank.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

from bertlearn import BertNERDataBunch, BertNERLearner
from bertlearn.data import TaggedSentences, read_conll
from bertlearn.distributed import rank_world
from bertlearn.tasks.token_classification import entity_scores


def main() -> None:
    out, data = Path(sys.argv[1]), Path(sys.argv[2])
    full = read_conll(data / "train.conll")
    train = TaggedSentences(full.words[:256], full.tags[:256], source="train")
    valid = TaggedSentences(full.words[256:352], full.tags[256:352], source="valid")
    db = BertNERDataBunch.from_sentences(train, valid, None, bs=16, maxlen=64, seed=0)
    learner = BertNERLearner.from_pretrained_model(db, None, output_dir=out, seed=0)
    with learner.no_bar():
        learner.fit(1, lr=1e-4)
    rank, world = rank_world()
    res = learner.validate(quiet=True)
    own = entity_scores(valid.tags, learner.predict_tokens(valid.words))
    out.mkdir(parents=True, exist_ok=True)
    (out / f"rank{rank}.json").write_text(json.dumps({"world": world, "validate": res, "own": own}))


if __name__ == "__main__":
    main()
