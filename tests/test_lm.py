"""Masked-LM domain adaptation: masking, the masked-positions-only head, training, and the hand-off to a classifier."""

from __future__ import annotations

import pandas as pd
import pytest
import torch
from conftest import make_texts

from bertlearn import BertDataBunch, BertLearner, BertLearnError, DataError
from bertlearn.tasks.lm import BertLMDataBunch, BertLMLearner, MaskedLMModel


@pytest.fixture
def corpus():
    return make_texts(200, seed=3)["text"].tolist()


def test_masking_follows_the_collator_and_skips_special_tokens(corpus, tiny_model_dir):
    db = BertLMDataBunch.from_raw_corpus(corpus, str(tiny_model_dir), bs=16, maxlen=32, seed=0, device="cpu")
    ids, mask, positions, targets = db.train.one_batch()
    assert db.n_inp == 3 and positions.dtype == torch.long and positions.dim() == 1 and targets.shape == positions.shape
    picked = torch.zeros(ids.numel(), dtype=torch.bool)
    picked[positions] = True
    picked = picked.view(ids.shape)
    assert torch.equal(positions, picked.view(-1).nonzero().view(-1))  # row-major, each position once
    assert 0.05 < picked.float().sum() / mask.sum() < 0.3  # about 15% of real tokens
    tok = db.tokenizer
    assert not torch.isin(targets, torch.tensor(tok.all_special_ids)).any()
    assert (mask[picked] == 1).all()
    assert (ids[picked] == tok.mask_token_id).float().mean() > 0.6  # ~80% replaced by [MASK]
    # the targets are the original ids: unmasking a batch in a known order gives back the tokenized texts
    dl = db.train.new(shuffle=False)
    ids, mask, positions, targets = next(iter(dl))
    restored = ids.clone().view(-1)
    restored[positions] = targets
    rows = dl.dataset
    order = dl.get_idxs()[:len(ids)]
    for row, i in zip(restored.view(ids.shape), order):
        assert row[:rows.lengths[i]].tolist() == rows.ids[i, :rows.lengths[i]].tolist()


def test_training_step_selects_masked_rows_by_index(corpus, tiny_model_dir, tmp_path):
    """On a GPU a boolean mask (or `labels != -100` selection) makes the host wait for the device every step;
    the model and loss get host-made indices and never build one."""
    from torch.overrides import TorchFunctionMode

    seen = []
    data_dependent = {torch.nonzero, torch.Tensor.nonzero, torch.argwhere, torch.Tensor.argwhere, torch.masked_select,
                      torch.Tensor.masked_select}

    class Spy(TorchFunctionMode):  # sees every torch call made from Python, leaves no state behind
        def __torch_function__(self, func, types, args=(), kwargs=None):
            if func in data_dependent:
                seen.append(func.__name__)
            elif func is torch.Tensor.__getitem__:
                index = args[1] if isinstance(args[1], tuple) else (args[1],)
                if any(isinstance(i, torch.Tensor) and i.dtype == torch.bool for i in index):
                    seen.append("boolean index")
            return func(*args, **(kwargs or {}))

    db = BertLMDataBunch.from_raw_corpus(corpus, str(tiny_model_dir), bs=16, maxlen=32, seed=0, device="cpu")
    learner = BertLMLearner.from_pretrained_model(db, str(tiny_model_dir), output_dir=tmp_path, device="cpu", seed=0)
    with Spy():
        batch = db.train.one_batch()  # the loader finds the positions on the host
    assert "nonzero" in seen
    seen.clear()
    learner.model.train()
    with Spy():
        logits = learner.model(*batch[:3])
        loss = learner.loss_func(logits, batch[3])
        loss.backward()
    assert seen == [] and logits.shape == (len(batch[2]), learner.model.config.vocab_size)
    # the spy sees the selection this replaced
    with Spy():
        learner.model(batch[0], batch[1], torch.full_like(batch[0], -100).index_fill_(1, torch.tensor([1]), 7))
    assert "nonzero" in seen


def test_head_scores_only_masked_positions_and_matches_the_full_head(tiny_model_dir):
    from transformers import AutoModelForMaskedLM
    hf = AutoModelForMaskedLM.from_pretrained(tiny_model_dir).eval()
    model = MaskedLMModel(hf)
    ids = torch.randint(5, 40, (3, 10))
    mask = torch.ones_like(ids)
    labels = torch.full_like(ids, -100)
    labels[0, 2], labels[2, 7] = 11, 12
    with torch.no_grad():
        part = model(ids, mask, labels)
        full = hf(input_ids=ids, attention_mask=mask).logits
    assert part.shape == (2, hf.config.vocab_size)
    torch.testing.assert_close(part, full[labels != -100], atol=1e-5, rtol=1e-4)


def test_fit_lowers_validation_loss_and_the_saved_encoder_starts_a_classifier(tiny_model_dir, tmp_path):
    corpus = make_texts(600, seed=4)["text"].tolist()
    db = BertLMDataBunch.from_raw_corpus(corpus, str(tiny_model_dir), bs=32, maxlen=40, seed=0, device="cpu")
    learner = BertLMLearner.from_pretrained_model(db, str(tiny_model_dir), output_dir=tmp_path, device="cpu", seed=0)
    before = learner.validate(quiet=True)
    with learner.no_bar(), learner.no_logging():
        learner.fit(3, lr=3e-3)
    after = learner.validate(quiet=True)
    assert after["loss"] < before["loss"] - 0.5
    assert after["perplexity"] == pytest.approx(float(torch.exp(torch.tensor(after["loss"]))), rel=0.05)
    path = learner.save_model()
    cls_db = BertDataBunch.from_df(make_texts(64, seed=1), make_texts(32, seed=2), str(path), bs=16, maxlen=40,
                                   device="cpu")
    classifier = BertLearner.from_pretrained_model(cls_db, str(path), None, "cpu", None, output_dir=tmp_path / "c")
    adapted = learner.model.hf.base_model.embeddings.word_embeddings.weight
    torch.testing.assert_close(classifier.model.base_model.embeddings.word_embeddings.weight, adapted)
    with pytest.raises(BertLearnError, match="does not classify; save_model"):
        learner.predict_batch(["good"])


def test_fast_bert_call_and_bad_input(tiny_model_dir, tmp_path, corpus, tiny_tokenizer):
    db = BertLMDataBunch.from_raw_corpus(tmp_path, corpus, tiny_tokenizer, batch_size_per_gpu=8, max_seq_length=24,
                                         multi_gpu=False, test_size=0.2, model_type="bert", device="cpu")
    assert db.bs == 8 and db.maxlen == 24 and len(db.valid_ds) == 40
    pd.DataFrame({"body": corpus}).to_csv(tmp_path / "c.csv", index=False)
    with pytest.raises(DataError, match=r"text_col: column 'text' not in corpus; columns are \['body'\]"):
        BertLMDataBunch.from_raw_corpus(tmp_path / "c.csv", str(tiny_model_dir))
    with pytest.raises(DataError, match="mlm_probability=1.5 must be between 0 and 1"):
        BertLMDataBunch.from_raw_corpus(corpus, str(tiny_model_dir), mlm_probability=1.5)
    with pytest.raises(DataError, match="needs a BertLMDataBunch"):
        BertLMLearner.from_pretrained_model(BertDataBunch.from_df(make_texts(32), None, str(tiny_model_dir),
                                                                  device="cpu"), str(tiny_model_dir))


def test_gradient_accumulation_steps_every_n_batches(corpus, tiny_model_dir, tmp_path):
    """fastai's GradientAccumulation counts target rows; a masked-LM batch's targets are its masked tokens, so
    the LM learner counts batches instead: 2 accumulation steps = one optimizer step per 2 batches."""
    from fastai.callback.core import Callback
    db = BertLMDataBunch.from_raw_corpus(corpus, str(tiny_model_dir), bs=16, maxlen=32, seed=0, device="cpu")
    learner = BertLMLearner.from_pretrained_model(db, str(tiny_model_dir), output_dir=tmp_path, device="cpu", seed=0,
                                                  grad_accumulation_steps=2)
    events = []

    class Count(Callback):
        order = 100

        def after_loss(self):
            if self.training:
                events.append("batch")

        def after_step(self):
            events.append("step")

    with learner.no_bar(), learner.no_logging():
        learner.fit(1, lr=1e-4, cbs=[Count()])
    n = len(db.train)
    assert n >= 4 and events.count("batch") == n and events.count("step") == n // 2
    assert events[:4] == ["batch", "batch", "step", "batch"]


def test_fast_bert_readme_lm_flow(tiny_model_dir, tmp_path, corpus, monkeypatch):
    """fast-bert's README: from_raw_corpus(data_dir=, text_list=, tokenizer=) writes the split to data_dir, the
    BertLMDataBunch(data_dir=...) constructor reads it back, and BertLMLearner takes dataBunch=."""
    import warnings

    import bertlearn.compat
    monkeypatch.setattr(bertlearn.compat, "_said", set())
    corpus = corpus[:-1] + ["a text  with\nits own line break"]
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        first = BertLMDataBunch.from_raw_corpus(data_dir=tmp_path, text_list=corpus, tokenizer=str(tiny_model_dir),
                                                batch_size_per_gpu=8, max_seq_length=32, multi_gpu=False,
                                                model_type="bert", logger=None)
        again = BertLMDataBunch(data_dir=tmp_path, tokenizer=str(tiny_model_dir), batch_size_per_gpu=8,
                                max_seq_length=32, multi_gpu=False, model_type="bert", logger=None)
    train = (tmp_path / "lm_train.txt").read_text().splitlines()
    valid = (tmp_path / "lm_val.txt").read_text().splitlines()
    assert len(train) + len(valid) == len(corpus) and len(valid) == 20  # 10% held out, one text a line
    assert "a text with its own line break" in train + valid
    for a, b in ((first.train_ds, again.train_ds), (first.valid_ds, again.valid_ds)):
        assert a.ids.tolist() == b.ids.tolist()  # the same texts, in the same order
    said = [str(w.message) for w in caught if w.category is bertlearn.compat.FastBertCompatWarning]
    assert said == ["BertLMDataBunch.from_raw_corpus: fast-bert argument without effect in bertlearn: "
                    "model_type='bert': the architecture comes from the checkpoint's config.json, never from a name"]
    learner = BertLMLearner.from_pretrained_model(dataBunch=again, pretrained_path=str(tiny_model_dir),
                                                  output_dir=tmp_path / "lm", metrics=[], device="cpu", logger=None,
                                                  multi_gpu=False, logging_steps=0, fp16_opt_level="O2")
    with learner.no_bar(), learner.no_logging():
        learner.fit(1, lr=6e-5, validate=True, schedule_type="warmup_cosine", optimizer_type="lamb")
    assert learner.optimizer_type == "lamb" and learner.save_model().joinpath("model.safetensors").is_file()


def test_a_batch_without_masked_tokens_leaves_the_loss_the_mean_over_the_others(tiny_model_dir, tmp_path):
    # three-word lines in batches of two: some validation batches mask nothing, and their NaN made the loss NaN
    import torch.nn.functional as F
    corpus = [f"{w} {w} {w}" for w in ("good", "bad", "film", "plot", "fun") for _ in range(8)]
    db = BertLMDataBunch.from_raw_corpus(corpus, str(tiny_model_dir), bs=1, maxlen=8, seed=0, device="cpu",
                                         valid_pct=0.25)
    learner = BertLMLearner.from_pretrained_model(db, str(tiny_model_dir), output_dir=tmp_path, device="cpu", seed=0)
    total, count, empty = 0.0, 0, 0
    learner.model.eval()
    with torch.no_grad():
        for xb, yb in ((b[:-1], b[-1]) for b in learner.dls.valid):
            logits = learner.model(*xb)
            total += float(F.cross_entropy(logits.float(), yb, reduction="sum")) if len(yb) else 0.0
            count, empty = count + len(yb), empty + (len(yb) == 0)
    assert empty > 0 and count > 0
    assert learner.validate(quiet=True)["loss"] == pytest.approx(total / count, rel=1e-5)


def test_fastai_opt_func_and_splitter_go_to_the_learner(corpus, tiny_model_dir, tmp_path):
    # the factory passed its own (Python's "multiple values for keyword argument" before)
    from functools import partial
    from fastai.optimizer import OptimWrapper
    db = BertLMDataBunch.from_raw_corpus(corpus, str(tiny_model_dir), bs=16, maxlen=32, seed=0, device="cpu")
    learner = BertLMLearner.from_pretrained_model(db, str(tiny_model_dir), output_dir=tmp_path, device="cpu", seed=0,
                                                  opt_func=partial(OptimWrapper, opt=torch.optim.SGD),
                                                  splitter=lambda m: [list(m.parameters())])
    with learner.no_bar(), learner.no_logging():
        learner.fit(1, lr=1e-4)
    assert isinstance(learner.opt.opt, torch.optim.SGD) and len(learner.opt.param_lists) == 1
