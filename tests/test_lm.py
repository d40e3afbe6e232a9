"""Masked-LM domain adaptation: masking, the masked-positions-only head, training, and the hand-off to a classifier."""

from __future__ import annotations

import logging

import pandas as pd
import pytest
import torch
from conftest import FirstStepGrads, assert_same_grads, make_texts, quiet_fit, without_dropout

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
    assert db.bs == 8 and db.maxlen == 24 and db.valid_ds.n_texts == 40  # texts: long ones are blocks
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


def test_an_accumulated_step_weighs_every_masked_token_alike(corpus, tiny_model_dir, tmp_path):
    # each batch weighed 1 / 2 whatever its masked tokens: a step's gradients were not those of one batch of both
    # batches' masked tokens (what transformers' Trainer computes: it weighs tokens)
    model = without_dropout(tiny_model_dir, tmp_path / "model")
    db = BertLMDataBunch.from_raw_corpus(corpus, str(model), bs=16, maxlen=32, seed=0, device="cpu")
    learner = BertLMLearner.from_pretrained_model(db, str(model), output_dir=tmp_path / "out", device="cpu", seed=0,
                                                  grad_accumulation_steps=2)
    start = {k: v.clone() for k, v in learner.model.state_dict().items()}
    rec = FirstStepGrads()
    quiet_fit(learner, 1, lr=1e-4, cbs=[rec])
    counts = [len(y) for _, (y,) in rec.batches]
    assert len(counts) == 2 and counts[0] != counts[1], counts
    learner.model.load_state_dict(start)
    learner.model.zero_grad(set_to_none=True)
    total = sum(torch.nn.functional.cross_entropy(learner.model(*xb).float(), y, reduction="sum")
                for xb, (y,) in rec.batches)
    (total / sum(counts)).backward()
    assert_same_grads(learner.model, rec.grads)


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
    assert "a text  with its own line break" in train + valid  # the line break a space, other characters kept
    for a, b in ((first.train_ds, again.train_ds), (first.valid_ds, again.valid_ds)):
        assert a.ids.tolist() == b.ids.tolist()  # the same texts, in the same order
    said = [str(w.message) for w in caught if w.category is bertlearn.compat.FastBertCompatWarning]
    assert said == ["BertLMDataBunch.from_raw_corpus: fast-bert argument without effect in bertlearn: "
                    "model_type='bert': the architecture comes from the checkpoint's config.json, never from a name"]
    # before: a share given here was dropped without a word (the files' split is used)
    with pytest.warns(UserWarning, match=r"^BertLMDataBunch\(data_dir=\.\.\., test_size=0\.5\): the split is the one "
                                         r"\['lm_train\.txt', 'lm_val\.txt'\] in .* hold, so test_size has no effect"):
        split = BertLMDataBunch(data_dir=tmp_path, tokenizer=str(tiny_model_dir), test_size=0.5, device="cpu")
    assert split.valid_ds.n_texts == again.valid_ds.n_texts
    with pytest.warns(UserWarning, match=r"^BertLMDataBunch\(data_dir=\.\.\., valid_pct=0, test_size=0\): .* so "
                                         r"valid_pct and test_size have no effect"):
        BertLMDataBunch(data_dir=tmp_path, tokenizer=str(tiny_model_dir), valid_pct=0, test_size=0, device="cpu")
    learner = BertLMLearner.from_pretrained_model(dataBunch=again, pretrained_path=str(tiny_model_dir),
                                                  output_dir=tmp_path / "lm", metrics=[], device="cpu", logger=None,
                                                  multi_gpu=False, logging_steps=0, fp16_opt_level="O2")
    with learner.no_bar(), learner.no_logging():
        learner.fit(1, lr=6e-5, validate=True, schedule_type="warmup_cosine", optimizer_type="lamb")
    assert learner.optimizer_type == "lamb" and learner.save_model().joinpath("model.safetensors").is_file()
    # a fast-bert metric dict trained a whole epoch, then failed at validation ('dict' object is not callable)
    from bertlearn.metrics import accuracy
    with pytest.raises(BertLearnError) as e:
        BertLMLearner.from_pretrained_model(dataBunch=again, pretrained_path=str(tiny_model_dir), device="cpu",
                                            metrics=[{"name": "accuracy", "function": accuracy}])
    assert str(e.value) == ("metrics: the fast-bert metric dict 'accuracy' is not a metric of the masked-LM "
                            "learner, which reports perplexity and takes fastai Metric objects (or functions of the "
                            "logits and labels, -100 where nothing is masked) besides: leave it out (metrics=[] or "
                            "None)")


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


def test_a_classifier_from_the_adapted_folder_keeps_the_pretrained_pooler(tiny_model_dir, tmp_path, corpus):
    """*ForMaskedLM builds BERT without its pooler, so the adapted folder had none and a classifier started from it
    classified through a random pooler, where one started from the original model kept the pretrained one."""
    import logging

    from transformers import AutoModel, AutoModelForMaskedLM, DistilBertConfig, DistilBertModel
    db = BertLMDataBunch.from_raw_corpus(corpus, str(tiny_model_dir), bs=16, maxlen=32, seed=0, device="cpu")
    lm = BertLMLearner.from_pretrained_model(db, str(tiny_model_dir), output_dir=tmp_path / "lm", device="cpu", seed=0)
    with lm.no_bar(), lm.no_logging():
        lm.fit(1, lr=1e-3)
    path = lm.save_model()
    reports = []

    class Hold(logging.Handler):
        def emit(self, record):
            reports.append(record.getMessage())

    hold = Hold()
    logging.getLogger("transformers").addHandler(hold)
    try:
        cls_db = BertDataBunch.from_df(make_texts(32, seed=1), make_texts(16, seed=2), str(path), bs=16, maxlen=32,
                                       device="cpu")
        classifier = BertLearner.from_pretrained_model(cls_db, str(path), None, "cpu", None, output_dir=tmp_path / "c")
    finally:
        logging.getLogger("transformers").removeHandler(hold)
    original = AutoModel.from_pretrained(tiny_model_dir)
    pooler, adapted = classifier.model.bert.pooler.dense, lm.model.hf.bert.encoder.layer[1].output.dense
    assert torch.equal(pooler.weight, original.pooler.dense.weight)
    assert torch.equal(pooler.bias, original.pooler.dense.bias)
    assert torch.equal(classifier.model.bert.encoder.layer[1].output.dense.weight, adapted.weight)
    assert not torch.equal(adapted.weight, original.encoder.layer[1].output.dense.weight)  # the LM did train
    assert [r for r in reports if "MISSING" in r] == []
    # the folder is still a masked-LM model: every weight it needs is there, the pooler is the only extra
    _, info = AutoModelForMaskedLM.from_pretrained(path, output_loading_info=True)
    assert info["missing_keys"] == set() and info["mismatched_keys"] == set()
    assert info["unexpected_keys"] == {"bert.pooler.dense.weight", "bert.pooler.dense.bias"}
    # adapting the adapted folder again carries the same pooler on
    again = BertLMLearner.load_head(str(path))
    assert sorted(again.carried) == ["bert.pooler.dense.bias", "bert.pooler.dense.weight"]
    assert torch.equal(again.carried["bert.pooler.dense.weight"], original.pooler.dense.weight)
    # an architecture without a pooler carries nothing
    distil = tmp_path / "distil"
    torch.manual_seed(0)
    DistilBertModel(DistilBertConfig(vocab_size=original.config.vocab_size, dim=32, n_layers=1, n_heads=4,
                                     hidden_dim=37)).save_pretrained(distil)
    assert BertLMLearner.load_head(str(distil)).carried == {}


def test_fast_bert_positional_order_maps_every_place(tiny_model_dir, tmp_path, corpus, tiny_tokenizer):
    """fast-bert's from_raw_corpus(data_dir, text_list, tokenizer, batch_size_per_gpu, max_seq_length, multi_gpu,
    test_size, model_type, logger, clear_cache, no_cache): its fourth place was taken for maxlen, bs stayed 32."""
    import logging
    import warnings
    db = BertLMDataBunch.from_raw_corpus(tmp_path, corpus, tiny_tokenizer, 8, device="cpu")
    assert (db.bs, db.maxlen, len(db.valid_ds)) == (8, 128, 20)
    said = []

    class Hold(logging.Handler):
        def emit(self, record):
            said.append(record.getMessage())

    logger = logging.getLogger("test_fast_bert_positional_order")
    logger.setLevel(logging.INFO)
    logger.addHandler(Hold())
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # model_type='bert' is named once as without effect
        db = BertLMDataBunch.from_raw_corpus(tmp_path, corpus, tiny_tokenizer, 8, 24, False, 0.25, "bert", logger,
                                             False, False, device="cpu")
    assert (db.bs, db.maxlen, db.train_ds.n_texts, db.valid_ds.n_texts) == (8, 24, 150, 50)
    assert said == ["masked-LM data: 150 train / 50 valid texts, maxlen 24; 40 train / 19 valid texts longer than maxlen "
                    "were split into 80 / 38 consecutive blocks of up to 22 text tokens (no token dropped): 190 train / "
                    "69 valid rows"]
    assert len((tmp_path / "lm_val.txt").read_text().splitlines()) == 50
    with pytest.raises(BertLearnError, match=r"^from_raw_corpus: batch_size_per_gpu=8 given by position \(fast-bert "
                                             r"order\) and bs=16 by name \(the same setting\); give it once$"):
        BertLMDataBunch.from_raw_corpus(tmp_path, corpus, tiny_tokenizer, 8, bs=16)
    with pytest.raises(BertLearnError, match=r"^from_raw_corpus: max_seq_length=24 given by position \(fast-bert "
                                             r"order\) and max_seq_length=64 by name; give it once$"):
        BertLMDataBunch.from_raw_corpus(tmp_path, corpus, tiny_tokenizer, 8, 24, max_seq_length=64)
    with pytest.raises(BertLearnError, match=r"^from_raw_corpus: bs=8 given by position \(its own order\) and "
                                             r"batch_size_per_gpu=16 by name \(the same setting\); give it once$"):
        BertLMDataBunch.from_raw_corpus(corpus, tiny_tokenizer, 8, batch_size_per_gpu=16)
    with pytest.raises(BertLearnError, match=r"^from_raw_corpus takes at most 11 arguments by position \(fast-bert "
                                             r"order: data_dir, text_list, tokenizer, batch_size_per_gpu, "
                                             r"max_seq_length, multi_gpu, test_size, model_type, logger, clear_cache, "
                                             r"no_cache\), got 12; pass the others by name$"):
        BertLMDataBunch.from_raw_corpus(tmp_path, corpus, tiny_tokenizer, 8, 24, False, 0.25, "bert", None, False,
                                        False, "cpu")


def test_a_validation_set_without_a_masked_token_is_refused(tiny_model_dir, tmp_path):
    """With no masked token to score, valid_loss and perplexity were None every epoch and validate() failed."""
    texts = ["good", "bad film", "fun", "dull plot", "great acting", "poor", "lovely movie", "awful", "fine",
             "boring film"] * 2
    with pytest.raises(DataError, match=r"^valid_pct=0\.1: the masks drawn for the 2 validation texts \(3 tokens that "
                                        r"can be masked, mlm_probability=0\.15\) mask no token, so validation would "
                                        r"have no loss; give more or longer validation texts, or a larger valid share "
                                        r"\(valid_pct / test_size\)$"):
        BertLMDataBunch.from_raw_corpus(texts, str(tiny_model_dir), bs=4, maxlen=16, seed=1, device="cpu")
    # read back from lm_train.txt / lm_val.txt the split is the files': valid_pct cannot help there
    (tmp_path / "lm_train.txt").write_text("\n".join(texts * 2))
    (tmp_path / "lm_val.txt").write_text("good\n")
    with pytest.raises(DataError, match=r"^lm_val\.txt: the masks drawn for the 1 validation texts .* mask no token, so "
                                        r"validation would have no loss; add texts to lm_val\.txt \(or build the "
                                        r"split again with from_raw_corpus and a larger valid_pct\)$"):
        BertLMDataBunch(tmp_path, str(tiny_model_dir), bs=4, maxlen=16, seed=1, device="cpu")
    db = BertLMDataBunch.from_raw_corpus(texts * 4, str(tiny_model_dir), bs=4, maxlen=16, seed=1, valid_pct=0.5,
                                         device="cpu")
    learner = BertLMLearner.from_pretrained_model(db, str(tiny_model_dir), output_dir=tmp_path, device="cpu", seed=0)
    assert learner.validate(quiet=True)["loss"] > 0


def test_validate_on_a_loader_that_scores_nothing_says_so(tiny_model_dir, tmp_path, monkeypatch):
    # a loss averaged over nothing is None: validate() failed with float()'s TypeError
    import bertlearn.tasks.lm as lm
    monkeypatch.setattr(lm, "_refuse_unmasked_validation", lambda *args: None)
    texts = ["good", "bad film", "fun", "dull plot", "great acting", "poor", "lovely movie", "awful", "fine",
             "boring film"] * 2
    db = BertLMDataBunch.from_raw_corpus(texts, str(tiny_model_dir), bs=4, maxlen=16, seed=1, device="cpu")
    learner = BertLMLearner.from_pretrained_model(db, str(tiny_model_dir), output_dir=tmp_path, device="cpu", seed=0)
    with pytest.raises(BertLearnError, match=r"^validate: the loader scored nothing \(no rows, or no masked token / "
                                             r"tagged word in them\), so there is no loss or metric; validate on a "
                                             r"loader with data to score$"):
        learner.validate(quiet=True)


def test_a_txt_corpus_is_read_one_text_a_line(tiny_model_dir, tmp_path, tiny_tokenizer):
    """fast-bert's lm_train.txt is one text a line without a header; it was read as a CSV whose first text was the
    column name."""
    lines = ["the movie was good", "it was a fun film, really", "", "   ", "the plot was dull"] * 4
    (tmp_path / "corpus.txt").write_bytes(("\ufeff" + "\r\n".join(lines) + "\r\n").encode("utf-8"))
    db = BertLMDataBunch.from_raw_corpus(tmp_path / "corpus.txt", tiny_tokenizer, maxlen=32, seed=0,
                                         valid_pct=0.5, device="cpu")
    read = [ds.ids[i, :ds.lengths[i]].tolist() for ds in (db.train_ds, db.valid_ds) for i in range(len(ds))]
    expected = tiny_tokenizer([t for t in lines if t.strip()])["input_ids"]
    assert sorted(read) == sorted(expected) and len(read) == 12
    with pytest.raises(DataError, match=r"^corpus: file '.*missing\.txt' not found$"):
        BertLMDataBunch.from_raw_corpus(tmp_path / "missing.txt", tiny_tokenizer)


def _long_texts(n, lo, hi, seed):
    """`n` texts of `lo`..`hi` words of the tiny vocabulary (one token a word)."""
    import random

    from conftest import FILLER, NEGATIVE, POSITIVE
    rng = random.Random(seed)
    return [" ".join(rng.choice(POSITIVE + NEGATIVE + FILLER) for _ in range(rng.randint(lo, hi))) for _ in range(n)]


def _rows(ds):
    return [ds.ids[i, :ds.lengths[i]].tolist() for i in range(len(ds))]


def test_long_texts_become_consecutive_blocks_holding_every_token_once(tiny_model_dir, tiny_tokenizer):
    """Each text was encoded alone and cut at maxlen (with an INFO line only): 20 texts of ~400 tokens at maxlen 64
    kept 16% of the corpus. Now each long text is consecutive blocks, together its whole encoding."""
    texts = _long_texts(14, 20, 90, seed=0) + ["good [MASK] film " * 10 + "the end"]  # a special token's text inside
    db = BertLMDataBunch.from_raw_corpus(texts, tiny_tokenizer, bs=4, maxlen=16, seed=0, valid_pct=0.25, device="cpu")
    cls, sep = tiny_tokenizer.cls_token_id, tiny_tokenizer.sep_token_id
    seen = []
    for ds in (db.train_ds, db.valid_ds):
        assert (ds.lengths <= 16).all() and list(ds.owner) == sorted(ds.owner)  # a text's blocks are consecutive
        rows = _rows(ds)
        for j in range(ds.n_texts):
            whole = tiny_tokenizer(str(ds.texts[j]), truncation=False)["input_ids"]
            mine = [rows[r] for r in range(len(ds)) if ds.owner[r] == j]
            assert all(r[0] == cls and r[-1] == sep for r in mine)
            assert all(len(r) == 16 for r in mine[:-1]) and len(mine) == -(-(len(whole) - 2) // 14)
            assert [t for r in mine for t in r[1:-1]] == whole[1:-1]  # every token once, in order
            seen.append(str(ds.texts[j]))
    assert sorted(seen) == sorted(texts) and len(db.train_ds) + len(db.valid_ds) > 2 * len(texts)
    # the validation masks are still drawn once: the same every pass
    first, second = ([b[2].tolist() for b in db.valid] for _ in range(2))
    assert first == second and sum(map(len, first)) > 0


def test_fast_bert_one_line_lm_train_txt_gives_every_block(tiny_model_dir, tiny_tokenizer, tmp_path):
    """fast-bert's create_corpus wrote all of lm_train.txt on one line: it was one training row of 64 tokens out of
    7,200; its TextDataset cut the joined corpus into blocks."""
    texts = _long_texts(20, 350, 450, seed=1)
    (tmp_path / "lm_train.txt").write_text(" ".join(texts[:18]) + " ")
    (tmp_path / "lm_val.txt").write_text(" ".join(texts[18:]) + " ")
    db = BertLMDataBunch(data_dir=tmp_path, tokenizer=tiny_tokenizer, batch_size_per_gpu=4, max_seq_length=64,
                         multi_gpu=False, device="cpu")
    for ds, part in ((db.train_ds, texts[:18]), (db.valid_ds, texts[18:])):
        n_tokens = len(tiny_tokenizer.tokenize(" ".join(part)))
        assert len(ds) == -(-n_tokens // 62) and int(ds.lengths.sum()) == n_tokens + 2 * len(ds)
        assert (ds.lengths <= 64).all() and ds.n_texts == 1


def test_short_texts_keep_their_row_beside_split_ones(tiny_model_dir, tiny_tokenizer):
    short = make_texts(30, seed=4)["text"].tolist()  # at most 31 tokens with [CLS] and [SEP]
    exact = " ".join(["film"] * 30)  # exactly maxlen tokens: nothing to split
    texts = short + [exact] + _long_texts(3, 60, 80, seed=2)
    db = BertLMDataBunch.from_raw_corpus(texts, tiny_tokenizer, bs=4, maxlen=32, seed=0, valid_pct=0.2, device="cpu")
    n_rows = {}
    for ds in (db.train_ds, db.valid_ds):
        rows = _rows(ds)
        for r, j in enumerate(ds.owner):
            n_rows[str(ds.texts[j])] = n_rows.get(str(ds.texts[j]), 0) + 1
            if str(ds.texts[j]) in short + [exact]:
                assert rows[r] == tiny_tokenizer(str(ds.texts[j]))["input_ids"]
    assert all(n_rows[t] == 1 for t in short + [exact])
    assert all(n_rows[t] == -(-len(t.split()) // 30) > 1 for t in texts[-3:])


def test_split_notice_names_texts_and_blocks(tiny_model_dir, tiny_tokenizer, tmp_path, caplog):
    train = ["good film", "bad plot", "fun"] + [" ".join(["film"] * 50), " ".join(["plot"] * 30)]  # 4 + 3 blocks
    valid = [" ".join(["good"] * 40), "dull"]  # 3 blocks, 1 row
    (tmp_path / "lm_train.txt").write_text("\n".join(train) + "\n")
    (tmp_path / "lm_val.txt").write_text("\n".join(valid) + "\n")
    with caplog.at_level(logging.INFO, logger="bertlearn.tasks.lm"):
        BertLMDataBunch(tmp_path, tiny_tokenizer, bs=4, maxlen=16, seed=0, device="cpu")
    assert [r.getMessage() for r in caplog.records if r.name == "bertlearn.tasks.lm"] == [
        "masked-LM data: 5 train / 2 valid texts, maxlen 16; 2 train / 1 valid texts longer than maxlen were split "
        "into 7 / 3 consecutive blocks of up to 14 text tokens (no token dropped): 10 train / 4 valid rows"]
    caplog.clear()
    with caplog.at_level(logging.INFO, logger="bertlearn.tasks.lm"):
        BertLMDataBunch.from_raw_corpus(make_texts(40, seed=3)["text"].tolist(), tiny_tokenizer, maxlen=32, seed=0,
                                        device="cpu")
    assert [r.getMessage() for r in caplog.records if r.name == "bertlearn.tasks.lm"] == [
        "masked-LM data: 36 train / 4 valid texts, maxlen 32"]


def test_pack_joins_texts_into_full_blocks_by_hand(tiny_model_dir, tiny_tokenizer, tmp_path, caplog):
    """pack=True: fast-bert's TextDataset and run_mlm's group_texts (joined, cut into full blocks), keeping the last
    shorter block they dropped."""
    train = [["good", "film", "was", "fun", "a"], ["bad", "plot"] * 3 + ["the"], ["dull", "acting"] * 5]  # 5 + 7 + 10
    valid = [["lovely", "movie", "is", "very", "fine", "really"] * 5]  # 30
    (tmp_path / "lm_train.txt").write_text("\n".join(map(" ".join, train)) + "\n")
    (tmp_path / "lm_val.txt").write_text("\n".join(map(" ".join, valid)) + "\n")
    with caplog.at_level(logging.INFO, logger="bertlearn.tasks.lm"):
        db = BertLMDataBunch(tmp_path, tiny_tokenizer, bs=4, maxlen=8, seed=0, device="cpu", pack=True)
    cls, sep = tiny_tokenizer.cls_token_id, tiny_tokenizer.sep_token_id
    for ds, words in ((db.train_ds, train), (db.valid_ds, valid)):
        flat = tiny_tokenizer.convert_tokens_to_ids([w for text in words for w in text])
        assert _rows(ds) == [[cls, *flat[k:k + 6], sep] for k in range(0, len(flat), 6)]
    assert [len(r) for r in _rows(db.train_ds)] == [8, 8, 8, 6] and list(db.train_ds.owner) == [0, 1, 2, 2]
    assert len(db.valid_ds) == 5 and db.valid_ds.n_texts == 1
    assert [r.getMessage() for r in caplog.records if r.name == "bertlearn.tasks.lm"] == [
        "masked-LM data: 3 train / 1 valid texts, maxlen 8; packed (pack=True) into 4 train / 5 valid blocks of 6 text "
        "tokens (each split's last block shorter; no token dropped)"]
    with pytest.raises(DataError, match=r"^pack='yes' must be True \(join the texts and cut them into full blocks\) or "
                                        r"False \(split each long text into blocks of its own\)$"):
        BertLMDataBunch(tmp_path, tiny_tokenizer, maxlen=8, device="cpu", pack="yes")


def test_maxlen_without_room_for_text_is_refused(tiny_model_dir, tiny_tokenizer, corpus):
    with pytest.raises(DataError, match=r"^maxlen=2 leaves no room for text: BertTokenizer adds 2 special tokens to "
                                        r"every row; allowed: maxlen >= 3; give a larger maxlen \(max_seq_length\), "
                                        r"e\.g\. 128$"):
        BertLMDataBunch.from_raw_corpus(corpus, tiny_tokenizer, maxlen=2, device="cpu")


def test_the_saved_folder_and_the_learner_embed_with_the_sources_sentence_transformers_settings(tmp_path):
    """save_model wrote the adapted MiniLM without modules.json, 1_Pooling/ or sentence_bert_config.json, so embed()
    of the saved folder switched from mean pooling, normalised, 256 tokens to [CLS], not normalised, 512 (cosine 0.6
    to the vectors before saving)."""
    import numpy as np
    from transformers import AutoModel, AutoTokenizer

    from bertlearn import embed
    from bertlearn.model import default_model_path
    corpus = make_texts(16, seed=5)["text"].tolist()
    db = BertLMDataBunch.from_raw_corpus(corpus, None, bs=8, maxlen=32, seed=0, device="cpu", valid_pct=0.25)
    lm = BertLMLearner.from_pretrained_model(db, None, output_dir=tmp_path, device="cpu", seed=0)
    with lm.no_bar(), lm.no_logging():
        lm.fit(1, lr=1e-3)
    texts = ["I ate an apple", "Apple released a phone", " ".join(["the river bank was muddy"] * 70)]  # 350 tokens
    with pytest.warns(UserWarning, match=r"^embed: 1 of 3 texts are longer than maxlen=256 tokens"):
        from_learner = embed(texts, lm)  # the source's max_seq_length, not the model's 512
    path = lm.save_model()
    source = default_model_path()
    for rel in ("modules.json", "sentence_bert_config.json", "config_sentence_transformers.json",
                "1_Pooling/config.json"):
        assert (path / rel).read_bytes() == (source / rel).read_bytes(), rel
    assert (path / "2_Normalize").is_dir()
    with pytest.warns(UserWarning, match=r"^embed: 1 of 3 texts are longer than maxlen=256 tokens"):
        saved = embed(texts, str(path), device="cpu")
    # by hand with plain transformers from the saved weights: mean over the first 256 tokens' states, length 1
    tok, model = AutoTokenizer.from_pretrained(str(path)), AutoModel.from_pretrained(str(path)).eval()
    with torch.no_grad():
        for i, text in enumerate(texts):
            h = model(**tok(text, truncation=True, max_length=256, return_tensors="pt")).last_hidden_state[0].mean(0)
            np.testing.assert_allclose(saved[i], (h / h.norm()).numpy(), atol=1e-6)
    np.testing.assert_allclose(from_learner, saved, atol=1e-6)
    assert not np.allclose(saved[:2], embed(texts[:2], device="cpu"), atol=1e-4)  # the adapted weights, not the source's
    st = pytest.importorskip("sentence_transformers")
    np.testing.assert_allclose(st.SentenceTransformer(str(path), device="cpu").encode(texts), saved, atol=1e-6)


def test_a_plain_checkpoints_learner_records_no_sentence_transformers_files(tiny_model_dir, tmp_path, recwarn):
    import numpy as np

    from bertlearn import embed
    db = BertLMDataBunch.from_raw_corpus(make_texts(20)["text"].tolist(), str(tiny_model_dir), bs=8, maxlen=32,
                                         seed=0, device="cpu")
    lm = BertLMLearner.from_pretrained_model(db, str(tiny_model_dir), output_dir=tmp_path, device="cpu", seed=0)
    assert lm.sentence_transformers_files == {} and lm.pretrained_path == str(tiny_model_dir)
    path = lm.save_model()
    assert not (path / "modules.json").exists()
    np.testing.assert_allclose(embed(["good movie"], lm), embed(["good movie"], str(path), pooling="cls",
                                                                 normalize=False, device="cpu"), atol=1e-6)
    assert not [w for w in recwarn.list if "sentence-transformers" in str(w.message)]


def test_an_empty_training_split_is_refused_naming_valid_pct_or_the_file(tiny_model_dir, tiny_tokenizer, tmp_path):
    """A training split without a text was accepted, and fit ended in a raw AttributeError (no smooth_loss)."""
    texts = make_texts(30, seed=11)["text"].tolist()
    with pytest.raises(DataError) as e:
        BertLMDataBunch.from_raw_corpus(texts, tiny_tokenizer, bs=4, maxlen=32, seed=0, device="cpu", valid_pct=0.99)
    assert str(e.value) == ("valid_pct=0.99 holds out all 30 texts, leaving none to train on; allowed: a share that "
                            "leaves at least one text for training; pass a smaller valid_pct (test_size), e.g. 0.1, "
                            "or more texts")
    with pytest.raises(DataError) as e:
        BertLMDataBunch.from_raw_corpus(texts[:2], tiny_tokenizer, seed=0, device="cpu", valid_pct=0.75)
    assert str(e.value).startswith("valid_pct=0.75 holds out all 2 texts, leaving none to train on;")
    (tmp_path / "lm_train.txt").write_text("\n  \n")
    (tmp_path / "lm_val.txt").write_text("the movie was good\nthe plot was dull\n")
    with pytest.raises(DataError) as e:
        BertLMDataBunch(tmp_path, tiny_tokenizer, batch_size_per_gpu=4, max_seq_length=32, device="cpu")
    assert str(e.value) == (f"data_dir={str(tmp_path)!r}: lm_train.txt holds no text (no non-blank line), so there is "
                            "nothing to train on; allowed: at least one text a line; write the split again with "
                            "from_raw_corpus(data_dir, texts, ...) and a smaller valid_pct (test_size)")
    # the fast-bert form refuses before writing a split
    with pytest.raises(DataError, match=r"^valid_pct=0.99 holds out all 30 texts"):
        BertLMDataBunch.from_raw_corpus(tmp_path / "new", texts, tiny_tokenizer, 4, 32, False, 0.99)
    assert not (tmp_path / "new" / "lm_train.txt").exists()
    # one text left to train on is enough
    db = BertLMDataBunch.from_raw_corpus(texts[:3], tiny_tokenizer, seed=0, device="cpu", valid_pct=0.5)
    assert db.train_ds.n_texts == 1


def test_maxlen_above_the_position_limit_is_refused_not_cut(tiny_model_dir, tiny_tokenizer, tmp_path):
    """The learner cut every block to the model's 512 positions, dropping each long block's tail (21% of a corpus's
    tokens) while the data promises no token is dropped."""
    texts = _long_texts(4, 600, 800, seed=2) + _long_texts(6, 5, 20, seed=3)
    db = BertLMDataBunch.from_raw_corpus(texts, tiny_tokenizer, bs=4, maxlen=700, seed=0, device="cpu")

    def n_tokens():
        return sum(int(l) - 2 for ds in (db.train_ds, db.valid_ds) for l in ds.lengths)
    every = sum(len(tiny_tokenizer(t, add_special_tokens=False)["input_ids"]) for t in texts)
    assert n_tokens() == every
    with pytest.raises(DataError) as e:
        BertLMLearner.from_pretrained_model(db, str(tiny_model_dir), output_dir=tmp_path, device="cpu")
    assert str(e.value) == ("maxlen=700 exceeds the model's max_position_embeddings=512, and cutting the encoded rows "
                            "to 512 tokens keeps their first tokens, which masked-LM data (a long text's tokens fill "
                            "consecutive blocks: a cut drops every block's tail) does not; build the BertLMDataBunch "
                            "with maxlen<=512")
    assert n_tokens() == every and db.maxlen == 700  # the data is left as it was
    db = BertLMDataBunch.from_raw_corpus(texts, tiny_tokenizer, bs=4, maxlen=512, seed=0, device="cpu")
    BertLMLearner.from_pretrained_model(db, str(tiny_model_dir), output_dir=tmp_path, device="cpu")
    assert n_tokens() == every


def test_fast_bert_lm_files_give_back_the_same_tokens(tiny_model_dir, tiny_tokenizer, tmp_path):
    """The writer joined `t.split()`, which also splits at \\x85, \\u2028, \\x1c...: "a\\x85b" (one word to the
    tokenizer, which drops the control character) came back as "a b". Only what the reader ends a line at is
    replaced now."""
    odd = ["a\x85b good", "x\u2028y film", "line one\nline two", "fine\r\nacting", "bad\rplot", "tab\tsep  text",
           "  leading space", "p\x1cq\x1dr\x1es\x0bt\x0cu"]
    texts = make_texts(30, seed=4)["text"].tolist() + odd
    first = BertLMDataBunch.from_raw_corpus(tmp_path, texts, tiny_tokenizer, 4, 64, False, 0.2, seed=0)
    again = BertLMDataBunch(tmp_path, tiny_tokenizer, batch_size_per_gpu=4, max_seq_length=64, seed=0)
    for a, b in ((first.train_ds, again.train_ds), (first.valid_ds, again.valid_ds)):
        assert _rows(a) == _rows(b) and a.n_texts == b.n_texts
    lines = [l for f in ("lm_train.txt", "lm_val.txt") for l in (tmp_path / f).read_text(encoding="utf-8")
             .split("\n") if l]
    assert len(lines) == len(texts)
    assert "a\x85b good" in lines and "x\u2028y film" in lines and "fine acting" in lines and "bad plot" in lines


def test_a_model_without_a_masked_lm_head_is_named(tmp_path):
    # XLNet (a permutation LM) has no AutoModelForMaskedLM class: the message said the folder was not loadable and
    # needed config.json, weights and tokenizer files, which it held
    from conftest import build_tiny_architecture

    from bertlearn import ModelError
    folder = build_tiny_architecture("xlnet", tmp_path / "xlnet")
    with pytest.raises(ModelError) as err:
        BertLMLearner.load_head(str(folder))
    assert str(err.value) == (
        f"pretrained_path: {str(folder)!r} holds a model of type 'xlnet', for which transformers has no masked-LM head "
        "(AutoModelForMaskedLM does not take XLNetConfig), so it cannot be adapted by masked-LM training; fine-tune it "
        "directly with BertLearner, or adapt a model with such a head (BERT, RoBERTa, ALBERT, DistilBERT, ELECTRA, "
        "DeBERTa, XLM-R)")


def test_seeded_lm_learners_on_one_databunch_repeat(corpus, tiny_model_dir, tmp_path):
    # the training order and the masks follow the databunch's loader: a second seeded learner on it went on from
    # where the first left them; it starts them over from the databunch's seed
    db = BertLMDataBunch.from_raw_corpus(corpus, str(tiny_model_dir), bs=16, maxlen=32, seed=3, device="cpu")
    batches = []
    for seed in (7, 8):
        learner = BertLMLearner.from_pretrained_model(db, str(tiny_model_dir), output_dir=tmp_path, device="cpu",
                                                      seed=seed)
        batches.append([b[0].clone() for b in learner.dls.train])  # the masked inputs, as drawn
    assert len(batches[0]) > 1 and all(torch.equal(a, b) for a, b in zip(*batches))
    with pytest.raises(BertLearnError) as err:
        BertLMLearner.from_pretrained_model(db, str(tiny_model_dir), output_dir=tmp_path, device="cpu",
                                            grad_accumulation_steps="two")
    assert str(err.value) == "grad_accumulation_steps='two' must be a positive integer"


def test_a_csv_corpus_written_without_quoting_reads_with_quoting_none(tmp_path, tiny_model_dir):
    # the quote check's message says quoting=csv.QUOTE_NONE, which from_raw_corpus did not take
    import csv
    path = tmp_path / "corpus.csv"
    texts = ['"good" film and fun', "bad movie", 'a "great" plot'] * 10
    path.write_text("text\n" + "\n".join(texts) + "\n")
    with pytest.raises(DataError, match=r"line 2 \('\"good\" film and fun'\) has a field that starts with a quote"):
        BertLMDataBunch.from_raw_corpus(path, str(tiny_model_dir), bs=8, maxlen=16, seed=0, device="cpu")
    db = BertLMDataBunch.from_raw_corpus(path, str(tiny_model_dir), bs=8, maxlen=16, seed=0, device="cpu",
                                         quoting=csv.QUOTE_NONE, valid_pct=0.2)
    tok = db.tokenizer
    got = sorted(tok.decode(ids, skip_special_tokens=True) for ds in (db.train_ds, db.valid_ds)
                 for ids in (ds[i][0] for i in range(len(ds))))
    assert got == sorted(tok.decode(tok(t)["input_ids"], skip_special_tokens=True) for t in texts)


def _validation_masks(dls) -> dict:
    """Each row index's (masked ids, masked columns), read from the batches of the given loaders."""
    out = {}
    for dl in dls:
        order = iter(dl.get_idxs())
        for ids, mask, positions, _ in dl:
            picked = torch.zeros(ids.numel(), dtype=torch.bool)
            picked[positions] = True
            picked = picked.view(ids.shape)
            for j in range(len(ids)):
                real = mask[j].bool()
                out[next(order)] = (ids[j, real].tolist(), picked[j, real].nonzero().view(-1).tolist())
    return out


def test_validation_masks_are_each_rows_own_whatever_the_batching(corpus, tiny_model_dir):
    """The validation masks were drawn batch by batch from one seeded generator, so a row's masks (and the
    perplexity of the same model on the same texts) moved with the batch size and with the number of DDP
    processes sharing the rows."""
    db = BertLMDataBunch.from_raw_corpus(corpus, str(tiny_model_dir), bs=16, maxlen=32, seed=0, valid_pct=0.3,
                                         device="cpu")
    whole = _validation_masks([db.valid])
    assert len(whole) == len(db.valid_ds) and sum(len(cols) for _, cols in whole.values()) > 0
    assert _validation_masks([db.valid.new(bs=3)]) == whole
    assert _validation_masks([db.valid.new(bs=5).shard(r, 2) for r in range(2)]) == whole
    assert _validation_masks([db.valid.shard(r, 3) for r in range(3)]) == whole
    # the collator's rule: 15% of the tokens that are not special, 80% of those [MASK], 10% a random token (bounds
    # of about 4 standard deviations on ~2,500 tokens)
    db = BertLMDataBunch.from_raw_corpus(corpus, str(tiny_model_dir), bs=16, maxlen=32, seed=0, valid_pct=0.9,
                                         device="cpu")
    tok, n_real, n_masked, n_mask_token, n_same = db.tokenizer, 0, 0, 0, 0
    for ids, mask, positions, targets in db.valid:
        restored = ids.clone().view(-1)
        restored[positions] = targets
        n_real += int(((mask.view(-1) == 1) & ~torch.isin(restored, torch.tensor(tok.all_special_ids))).sum())
        n_masked += len(positions)
        n_mask_token += int((ids.view(-1)[positions] == tok.mask_token_id).sum())
        n_same += int((ids.view(-1)[positions] == targets).sum())
    assert n_real > 2000 and 0.12 < n_masked / n_real < 0.18 and 0.72 < n_mask_token / n_masked < 0.88
    assert 0.035 < n_same / n_masked < 0.165
    # the masks follow the seed and the collator's probabilities (a cache by row index kept the first ones)
    whole, seeded = _validation_masks([db.valid]), _validation_masks([db.valid.new(seed=1)])
    assert seeded.keys() == whole.keys() and seeded != whole
    db.valid.collator.mlm_probability = 0.5
    try:
        assert sum(map(len, (c for _, c in _validation_masks([db.valid]).values()))) > 2 * n_masked
    finally:
        db.valid.collator.mlm_probability = 0.15
    # the training masks still change from epoch to epoch
    first, second = ([b[2].tolist() for b in db.train] for _ in range(2))
    assert first != second


def test_a_resume_with_other_masking_is_refused(corpus, tiny_model_dir, tmp_path):
    """The checkpoint's data digest is of the unmasked ids: a resume with another mlm_probability trained the rest
    of the fit on other inputs without a word."""
    from fastai.callback.core import Callback, CancelFitException

    class StopAfterFirst(Callback):
        order = 100  # after the checkpoint is written

        def after_epoch(self):
            raise CancelFitException()

    def learner(p):
        db = BertLMDataBunch.from_raw_corpus(corpus, str(tiny_model_dir), bs=16, maxlen=32, seed=0, device="cpu",
                                             mlm_probability=p)
        return BertLMLearner.from_pretrained_model(db, str(tiny_model_dir), output_dir=tmp_path, device="cpu", seed=0)
    quiet_fit(learner(0.15), 2, lr=1e-4, checkpoint=True, cbs=[StopAfterFirst()])
    with pytest.raises(BertLearnError, match=r"^resume=True: the checkpoint in '.*last' belongs to another run "
                                             r"\(masking: \{'mlm_probability': 0\.15, 'mask_replace_prob': 0\.8, "
                                             r"'random_replace_prob': 0\.1\} in the checkpoint, \{'mlm_probability': "
                                             r"0\.5, 'mask_replace_prob': 0\.8, 'random_replace_prob': 0\.1\} now\)"):
        quiet_fit(learner(0.5), 2, lr=1e-4, resume=True)
    quiet_fit(learner(0.15), 2, lr=1e-4, resume=True)  # the same masking resumes
