"""Shared fixtures: a tiny random BERT with a hand-written vocabulary, tiny CSVs, and the real-data folder."""

from __future__ import annotations

import os
import random
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from fastai.callback.core import Callback, CancelFitException

os.environ.setdefault("HF_HUB_OFFLINE", "1")  # tests never touch the network
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

POSITIVE = ["good", "great", "excellent", "fine", "lovely", "fun"]
NEGATIVE = ["bad", "awful", "terrible", "poor", "boring", "dull"]
FILLER = ["the", "a", "movie", "film", "was", "is", "it", "this", "very", "really", "plot", "acting"]
SPECIAL = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]

# the real datasets (../shared/data); BERTLEARN_DATA points elsewhere, e.g. at the copy a GPU machine gets
SHARED_DATA = Path(os.environ.get("BERTLEARN_DATA") or Path(__file__).resolve().parents[2] / "shared" / "data")


def make_texts(n: int, seed: int = 0) -> pd.DataFrame:
    """Synthetic reviews: the label is decided by which sentiment words appear; lengths vary 3..30 words."""
    rng = random.Random(seed)
    rows = []
    for i in range(n):
        label = "positive" if i % 2 == 0 else "negative"
        words = [rng.choice(FILLER) for _ in range(rng.randint(2, 28))]
        for _ in range(rng.randint(1, 2)):
            words.insert(rng.randint(0, len(words)), rng.choice(POSITIVE if label == "positive" else NEGATIVE))
        rows.append((" ".join(words), label))
    return pd.DataFrame(rows, columns=["text", "label"])


@pytest.fixture(autouse=True)
def _seed():
    random.seed(0)
    np.random.seed(0)
    torch.manual_seed(0)


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory) -> Path:
    """A folder holding a 2-layer, 32-wide random BERT and its WordPiece tokenizer (hand-written vocab)."""
    from transformers import BertConfig, BertForSequenceClassification, BertTokenizer

    d = tmp_path_factory.mktemp("tiny-bert")
    vocab = SPECIAL + sorted(set(POSITIVE + NEGATIVE + FILLER)) + list("abcdefghijklmnopqrstuvwxyz") + \
        [f"##{c}" for c in "abcdefghijklmnopqrstuvwxyz"]
    tok = BertTokenizer(vocab={w: i for i, w in enumerate(vocab)}, do_lower_case=True, model_max_length=512)
    config = BertConfig(vocab_size=len(vocab), hidden_size=32, num_hidden_layers=2, num_attention_heads=4,
                        intermediate_size=37, max_position_embeddings=512, pad_token_id=0)
    torch.manual_seed(0)
    BertForSequenceClassification(config).bert.save_pretrained(d)  # an encoder only, like a hub checkpoint
    tok.save_pretrained(d)
    return d


@pytest.fixture(scope="session")
def tiny_tokenizer(tiny_model_dir):
    from transformers import AutoTokenizer
    return AutoTokenizer.from_pretrained(tiny_model_dir)


@pytest.fixture
def tiny_csv_dir(tmp_path) -> Path:
    """train.csv (96 rows), val.csv (32 rows) and labels.csv in a temp folder."""
    make_texts(96, seed=1).to_csv(tmp_path / "train.csv", index=False)
    make_texts(32, seed=2).to_csv(tmp_path / "val.csv", index=False)
    (tmp_path / "labels.csv").write_text("negative\npositive\n")
    return tmp_path


@pytest.fixture
def tiny_databunch(tiny_csv_dir, tiny_tokenizer):
    from bertlearn import BertDataBunch
    return BertDataBunch(tiny_csv_dir, tiny_csv_dir, tiny_tokenizer, train_file="train.csv", val_file="val.csv",
                         text_col="text", label_col="label", bs=16, maxlen=64, device="cpu")


@pytest.fixture
def tiny_learner(tiny_databunch, tiny_model_dir, tmp_path):
    from bertlearn import BertLearner
    return BertLearner.from_pretrained_model(tiny_databunch, str(tiny_model_dir), metrics=None, device="cpu",
                                             logger=None, output_dir=tmp_path / "out")


@pytest.fixture(scope="session")
def shared_data() -> Path:
    if not SHARED_DATA.is_dir():
        pytest.skip(f"real datasets not found at {SHARED_DATA}")
    return SHARED_DATA


@pytest.fixture(scope="session")
def trained_learner(tiny_model_dir, tmp_path_factory):
    """A tiny BERT fitted until it separates the synthetic reviews (shared: tests must not train it further)."""
    from bertlearn import BertDataBunch, BertLearner

    torch.manual_seed(0)
    random.seed(0)
    db = BertDataBunch.from_df(make_texts(480, seed=5), make_texts(64, seed=6), str(tiny_model_dir), bs=16,
                               maxlen=64, device="cpu")
    learner = BertLearner.from_pretrained_model(db, str(tiny_model_dir), None, "cpu", None,
                                                output_dir=tmp_path_factory.mktemp("trained"))
    with learner.no_bar(), learner.no_logging():
        learner.fit(5, lr=1e-3)
    assert learner.validate(quiet=True)["accuracy"] > 0.95, "the shared tiny learner failed to train"
    return learner


ARCHITECTURES = ["bert", "distilbert", "roberta", "albert", "electra", "deberta-v2"]


def build_tiny_architecture(kind: str, folder: Path) -> Path:
    """Save a tiny random encoder of `kind` (as a hub checkpoint has it: no classification head) plus a
    tokenizer of that architecture's own type (WordPiece, byte-level BPE or SentencePiece-Unigram, trained
    here on the synthetic reviews) into `folder`."""
    import json
    import transformers as T
    from tokenizers import ByteLevelBPETokenizer, SentencePieceUnigramTokenizer

    corpus = make_texts(300)["text"].tolist()
    wordpiece = {w: i for i, w in enumerate(SPECIAL + sorted(set(POSITIVE + NEGATIVE + FILLER)) +
                                            list("abcdefghijklmnopqrstuvwxyz") +
                                            [f"##{c}" for c in "abcdefghijklmnopqrstuvwxyz"])}
    if kind in ("bert", "electra"):
        tok = T.BertTokenizer(vocab=wordpiece, do_lower_case=True)
    elif kind == "distilbert":
        tok = T.DistilBertTokenizer(vocab=wordpiece, do_lower_case=True)
    elif kind == "roberta":
        bpe = ByteLevelBPETokenizer()
        bpe.train_from_iterator(corpus, vocab_size=300, min_frequency=1,
                                special_tokens=["<s>", "<pad>", "</s>", "<unk>", "<mask>"])
        model = json.loads(bpe.to_str())["model"]
        merges = [tuple(m.split()) if isinstance(m, str) else tuple(m) for m in model["merges"]]
        tok = T.RobertaTokenizer(vocab=model["vocab"], merges=merges)
    elif kind == "xlnet":  # pads on the left: its classifier reads the last position
        sp = SentencePieceUnigramTokenizer()
        sp.train_from_iterator(corpus, vocab_size=150, unk_token="<unk>",
                               special_tokens=["<pad>", "<unk>", "<s>", "</s>", "<cls>", "<sep>", "<mask>"])
        tok = T.XLNetTokenizer(vocab=[tuple(p) for p in json.loads(sp.to_str())["model"]["vocab"]])
    else:
        sp = SentencePieceUnigramTokenizer()
        sp.train_from_iterator(corpus, vocab_size=150, unk_token="<unk>",
                               special_tokens=["<pad>", "<unk>", "[CLS]", "[SEP]", "[MASK]"])
        pieces = [tuple(p) for p in json.loads(sp.to_str())["model"]["vocab"]]
        tok = (T.AlbertTokenizer if kind == "albert" else T.DebertaV2Tokenizer)(vocab=pieces, pad_token="<pad>")
    tok.model_max_length = 512
    # the highest id, not len(tok): "a" is a word and a letter in the hand-written vocabulary, so its ids have a gap
    # and a text with the last letters' pieces ran past an embedding of len(tok) rows
    size = dict(vocab_size=max(len(tok), max(tok.get_vocab().values()) + 1), pad_token_id=tok.pad_token_id)
    if kind == "distilbert":
        size.update(dim=32, n_layers=2, n_heads=4, hidden_dim=37)
    elif kind == "xlnet":
        size.update(d_model=32, n_layer=2, n_head=4, d_inner=37)
    else:
        size.update(hidden_size=32, num_hidden_layers=2, num_attention_heads=4, intermediate_size=37,
                    max_position_embeddings=514 if kind == "roberta" else 512)
    if kind in ("albert", "electra"):
        size["embedding_size"] = 16
    config = T.CONFIG_MAPPING[kind](**size)
    torch.manual_seed(0)
    T.AutoModel.from_config(config).save_pretrained(folder)
    tok.save_pretrained(folder)
    return folder


def quiet_fit(learner, *args, **kwargs):
    """`learner.fit` without the progress bar and per-epoch log lines."""
    with learner.no_bar(), learner.no_logging():
        return learner.fit(*args, **kwargs)


def without_dropout(model_dir: Path, folder: Path) -> Path:
    """A saved model and tokenizer copied without dropout, so two computations of a training step agree."""
    from transformers import AutoConfig, AutoModel, AutoTokenizer
    config = AutoConfig.from_pretrained(model_dir, hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0)
    AutoModel.from_pretrained(model_dir, config=config).save_pretrained(folder)
    AutoTokenizer.from_pretrained(model_dir).save_pretrained(folder)
    return folder


class FirstStepGrads(Callback):
    """Records the training batches of a fit's first optimizer step and the gradients that step's optimizer gets
    (after gradient accumulation, before clipping), then ends the fit."""

    order = 8  # after gradient accumulation (6) has let the step through, before clipping (11)

    def before_fit(self):
        self.batches, self.grads = [], None

    def before_batch(self):
        if self.training:
            self.batches.append((self.xb, self.yb))

    def before_step(self):
        self.grads = {n: p.grad.detach().clone() for n, p in self.learn.model.named_parameters() if p.grad is not None}
        raise CancelFitException()


def assert_same_grads(model, grads, *, rel=1e-5) -> None:
    """`model`'s gradients equal `grads` (by name), to `rel` of their whole norm."""
    mine = {n: p.grad for n, p in model.named_parameters() if p.grad is not None}
    assert mine.keys() == grads.keys()
    diff = sum(float((mine[n] - grads[n]).norm()) ** 2 for n in mine) ** 0.5
    assert diff <= rel * sum(float(g.norm()) ** 2 for g in mine.values()) ** 0.5, diff


# Tensor methods that copy a value to the host, i.e. make the host wait for the GPU when the tensor lives there
SYNCING = ("item", "cpu", "tolist", "numpy", "__format__", "__bool__", "__float__", "__int__")
# callers whose reads are not device syncs, or not ours to remove:
SYNC_ALLOWED = ("torch/optim/",  # AdamW's step counters are host tensors by design (non-capturable mode)
                "fastai/callback/schedule.py",  # one-cycle values computed from Python floats on the host
                "transformers/")  # SDPA mask `padding_mask.all()`: upstream (skipped under CUDA-graph capture)


@pytest.fixture
def sync_spy(monkeypatch):
    """Records (method, caller) for every SYNCING call outside SYNC_ALLOWED while `spy.on` is true; `spy.window()`
    gives two fastai callbacks that switch it on for each training batch, from before_batch to the last
    after_batch. On a CPU nothing syncs, but these are the calls that would on a GPU."""
    import traceback
    from types import SimpleNamespace

    from fastai.callback.core import Callback

    spy = SimpleNamespace(on=False, calls=[])

    def wrap(name, orig):
        def wrapper(self, *a, **k):
            if spy.on:
                frame = traceback.extract_stack()[-2]
                caller = f"{frame.filename}:{frame.lineno}"
                if not any(allowed in caller for allowed in SYNC_ALLOWED):
                    spy.calls.append((name, caller))
            return orig(self, *a, **k)
        return wrapper

    for name in SYNCING:
        monkeypatch.setattr(torch.Tensor, name, wrap(name, getattr(torch.Tensor, name)))

    class Start(Callback):
        order = -100

        def before_batch(self):
            spy.on = self.training

    class Stop(Callback):
        order = 1000  # after every other callback's after_batch (Recorder, progress bar)

        def after_batch(self):
            spy.on = False

    spy.window = lambda: [Start(), Stop()]
    return spy


def spy_skips(monkeypatch, module) -> list:
    """Record, per batch, whether `module`'s prediction loop skipped padded rows (its `skipping_padded_rows`)."""
    import contextlib
    seen = []
    real = module.skipping_padded_rows

    @contextlib.contextmanager
    def counting(mask):
        with real(mask) as on:
            seen.append(on)
            yield on

    monkeypatch.setattr(module, "skipping_padded_rows", counting)
    return seen
