"""Worker for tests/test_distributed.py: fine-tune on a small SST-2 sample, in one process or under torchrun.

    python -m torch.distributed.run --nproc_per_node 2 tests/distributed_worker.py OUT SST2_DIR PER_RANK_BS
    python tests/distributed_worker.py OUT SST2_DIR GLOBAL_BS
    ... OUT SST2_DIR BS disk      # the same through from_csv(on_disk=True) (one rank builds the token store)

Each rank writes its final weights, its recorder's numbers and its predictions; rank 0 also saves the model.
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

import pandas as pd
import torch
from safetensors.torch import save_file

from bertlearn import BertDataBunch, BertLearner
from bertlearn.distributed import rank_world


def main() -> None:
    out, data, bs = Path(sys.argv[1]), Path(sys.argv[2]), int(sys.argv[3])
    train = pd.read_csv(data / "train.csv")
    train = train[train["text"].str.split().str.len() >= 4].sample(n=768, random_state=0)
    valid = pd.read_csv(data / "valid.csv").sample(n=96, random_state=0)
    if len(sys.argv) > 4 and sys.argv[4] == "disk":
        from bertlearn.distributed import barrier, init_distributed
        init_distributed()
        folder = out / "data"
        if rank_world()[0] == 0:
            folder.mkdir(parents=True, exist_ok=True)
            train.to_csv(folder / "train.csv", index=False)
            valid.to_csv(folder / "val.csv", index=False)
        barrier()
        db = BertDataBunch.from_csv(folder, None, bs=bs, maxlen=48, seed=0, on_disk=True, chunksize=200,
                                    label_file=None)
    else:
        db = BertDataBunch.from_df(train, valid, None, bs=bs, maxlen=48, seed=0)
    learner = BertLearner.from_pretrained_model(db, None, None, None, None, output_dir=out, seed=0)
    if len(sys.argv) > 4 and sys.argv[4] == "resume":  # interrupted after epoch 1, resumed by a new learner
        from fastai.callback.core import Callback, CancelFitException

        class StopAfterFirst(Callback):
            order = 100  # after the checkpoint is written

            def after_epoch(self):
                if self.epoch == 0:
                    raise CancelFitException()

        with learner.no_bar():
            learner.fit(2, lr=1e-4, checkpoint=True, cbs=[StopAfterFirst()])
        learner = BertLearner.from_pretrained_model(db, None, None, None, None, output_dir=out, seed=0)
        with learner.no_bar():
            learner.fit(2, lr=1e-4, resume=True)
        rank = rank_world()[0]
        save_file({k: v.contiguous() for k, v in learner.model.state_dict().items()}, str(out / f"rank{rank}.safetensors"))
        return
    with learner.no_bar():
        learner.fit(2, lr=1e-4)
    rank, world = rank_world()
    tag = f"rank{rank}" if world > 1 else "single"
    out.mkdir(parents=True, exist_ok=True)
    save_file({k: v.contiguous() for k, v in learner.model.state_dict().items()}, str(out / f"{tag}.safetensors"))
    logits = learner.predict_logits(valid["text"].tolist())
    torch.save(logits, out / f"{tag}_logits.pt")
    results = {"world": world, "values": [[float(v) for v in row] for row in learner.recorder.values],
               "names": list(learner.recorder.metric_names), "n_iter": len(learner.dls.train), "validate":
               learner.validate(quiet=True)}
    (out / f"{tag}.json").write_text(json.dumps(results))
    learner.save_model(out / "model")
    save_lm_model(out, train["text"].tolist()[:64], rank)


def save_lm_model(out: Path, texts: list, rank: int) -> None:
    """Save a masked-LM learner; each rank that writes weights leaves a mark, so the test sees who wrote."""
    from bertlearn import BertLMDataBunch, BertLMLearner

    lm = BertLMLearner.from_pretrained_model(BertLMDataBunch.from_raw_corpus(texts, None, bs=8, maxlen=32, seed=0),
                                             None, output_dir=out / "lm", device="cpu")
    write = lm.model.hf.save_pretrained

    def marked(path, **kwargs):
        (out / "lm_writers").mkdir(exist_ok=True)
        (out / "lm_writers" / f"rank{rank}").touch()
        return write(path, **kwargs)

    lm.model.hf.save_pretrained = marked
    lm.save_model(out / "lm_model")


if __name__ == "__main__":
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    main()
