"""BertLearner: construction, fit/one-cycle, validate, predict, device fallback and the no-sync hot path."""

from __future__ import annotations

import json
import logging
import random
import re
from functools import partial
from pathlib import Path

import numpy as np
import pytest
import torch
from fastai.callback.core import Callback, CancelFitException
from fastai.learner import Learner
from fastai.metrics import accuracy as fastai_accuracy
from conftest import make_texts, quiet_fit
from transformers import PreTrainedModel

from bertlearn import BertDataBunch, BertLearner, BertLearnError, DataError, NotFittedError, accuracy
from bertlearn.callbacks import BF16Autocast, SparseProgressCallback, TensorBoardLogger



class StopAfterEpoch(Callback):
    """Stop a fit after `epoch`, once its checkpoint is written (an interruption to resume from)."""

    order = 100

    def __init__(self, epoch):
        self.at = epoch

    def after_epoch(self):
        if self.epoch == self.at:
            raise CancelFitException()


class TestConstruction:
    def test_is_a_fastai_learner_around_a_plain_hf_model(self, tiny_learner):
        assert isinstance(tiny_learner, Learner)
        assert isinstance(tiny_learner.model, PreTrainedModel)
        cfg = tiny_learner.model.config
        assert cfg.id2label == {0: "negative", 1: "positive"} and cfg.label2id == {"negative": 0, "positive": 1}
        assert cfg.problem_type == "single_label_classification"

    def test_cuda_without_cuda_warns_once_and_uses_cpu(self, tiny_databunch, tiny_model_dir, monkeypatch):
        import warnings
        import bertlearn.device
        monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
        monkeypatch.setattr(bertlearn.device, "_FELL_BACK", set())
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            learners = [BertLearner.from_pretrained_model(tiny_databunch, str(tiny_model_dir), None,
                                                          torch.device("cuda"), None) for _ in range(2)]
        assert [str(w.message) for w in caught if "CUDA" in str(w.message)] == [
            "device='cuda' was asked for but CUDA is not available here; using the CPU (device=None picks the GPU "
            "where there is one)"]  # once for the process, not once per call
        assert all(next(lr.model.parameters()).device.type == "cpu" for lr in learners)

    def test_fast_bert_positional_order_with_output_dir_third(self, tiny_databunch, tiny_model_dir, tmp_path):
        metrics = [{"name": "accuracy", "function": accuracy}]
        learner = BertLearner.from_pretrained_model(tiny_databunch, str(tiny_model_dir), str(tmp_path / "o"), metrics,
                                                    "cpu", logging.getLogger("x"))
        assert learner.output_dir == tmp_path / "o" and [m.name for m in learner.metrics] == ["accuracy"]

    def test_fast_bert_positional_order_past_the_logger(self, tiny_databunch, tiny_model_dir, tmp_path):
        # fast-bert's 7th place is finetuned_wgts_path: it was read as is_fp16 (weights not loaded, bf16 on)
        from safetensors.torch import save_file
        from bertlearn import load_model
        model, _ = load_model(str(tiny_model_dir), labels=["a", "b"])
        save_file({k: torch.full_like(v, 0.5) for k, v in model.state_dict().items() if "word_embeddings" in k},
                  tmp_path / "w.safetensors")
        learner = BertLearner.from_pretrained_model(tiny_databunch, str(tiny_model_dir), str(tmp_path / "o"), [],
                                                    "cpu", None, str(tmp_path / "w.safetensors"), False, False, 0, 40)
        assert torch.all(learner.model.bert.embeddings.word_embeddings.weight == 0.5)
        assert learner._amp_dtype() is None and learner.warmup_steps == 40
        own = BertLearner.from_pretrained_model(tiny_databunch, str(tiny_model_dir), [], "cpu", None, tmp_path / "p",
                                                False, False, False)  # its own order: is_fp16, multi_gpu, multi_label
        assert own.output_dir == tmp_path / "p" and own._amp_dtype() is None
        with pytest.raises(BertLearnError) as e:
            BertLearner.from_pretrained_model(tiny_databunch, str(tiny_model_dir), str(tmp_path / "o"), [], "cpu",
                                              None, None, False, False, is_fp16=True)
        assert str(e.value) == ("BertLearner.from_pretrained_model: ['is_fp16'] given both by position (fast-bert "
                                "order) and by name; give each once")

    def test_fast_bert_keyword_options_are_accepted(self, tiny_databunch, tiny_model_dir, tmp_path):
        learner = BertLearner.from_pretrained_model(
            tiny_databunch, pretrained_path=str(tiny_model_dir), metrics=[], device="cpu", logger=None,
            output_dir=tmp_path, finetuned_wgts_path=None, warmup_steps=500, multi_gpu=False, is_fp16=False,
            multi_label=False, logging_steps=50, fp16_opt_level="O1", max_grad_norm=1.0, adam_epsilon=1e-8)
        assert learner.default_lr == 2e-5

    def test_multi_label_disagreement(self, tiny_databunch, tiny_model_dir):
        with pytest.raises(DataError, match=r"multi_label=True disagrees with the databunch \(multi_label=False\)"):
            BertLearner.from_pretrained_model(tiny_databunch, str(tiny_model_dir), None, "cpu", None, multi_label=True)

    def test_splitter_gives_embeddings_each_layer_and_head(self, tiny_learner):
        groups = tiny_learner.splitter(tiny_learner.model)
        assert len(groups) == 4  # embeddings, 2 layers, pooler + classifier
        n_params = sum(1 for _ in tiny_learner.model.parameters())
        assert sum(len(g) for g in groups) == n_params
        assert any(p is tiny_learner.model.classifier.weight for p in groups[-1])
        assert tiny_learner.model.bert.embeddings.word_embeddings.weight is groups[0][0]


    def test_deberta_relative_positions_are_an_embedding_not_the_head(self):
        # DeBERTa-v3 keeps its only position table (encoder.rel_embeddings) after the blocks: it was in the head
        # group, so freeze() ("train the head") retrained the positions and layer_decay gave them the head's rate
        from transformers import DebertaV2Config, DebertaV2ForSequenceClassification
        from bertlearn.model import bert_splitter
        config = DebertaV2Config(vocab_size=50, hidden_size=32, num_hidden_layers=2, num_attention_heads=4,
                                 intermediate_size=37, relative_attention=True, position_biased_input=False,
                                 max_relative_positions=16, pos_att_type=["p2c", "c2p"], norm_rel_ebd="layer_norm",
                                 num_labels=2)
        model = DebertaV2ForSequenceClassification(config)
        groups = bert_splitter(model)
        encoder = model.deberta.encoder
        for table in (encoder.rel_embeddings.weight, encoder.LayerNorm.weight, encoder.LayerNorm.bias):
            assert any(p is table for p in groups[0]) and not any(p is table for g in groups[1:] for p in g)
        assert sum(len(g) for g in groups) == sum(1 for _ in model.parameters())
        assert any(p is model.classifier.weight for p in groups[-1])


class TestFit:
    def test_fit_runs_one_cycle_and_learns(self, trained_learner):
        assert trained_learner.validate(quiet=True)["accuracy"] > 0.95

    def test_fit_runs_one_cycle(self, tiny_learner):
        step, loss = quiet_fit(tiny_learner, 4, lr=1e-3)
        assert step == 4 * len(tiny_learner.dls.train)
        lrs = tiny_learner.recorder.lrs
        peak = max(range(len(lrs)), key=lrs.__getitem__)
        assert lrs[0] < 1e-3 / 10 and abs(lrs[peak] - 1e-3) < 1e-4 and lrs[-1] < 1e-3 / 50  # one-cycle shape
        assert 0 < peak < len(lrs) // 2

    @pytest.mark.parametrize("pass_", ["fit", "validate"])
    def test_an_error_in_the_forward_pass_leaves_bf16_autocast(self, tiny_learner, pass_):
        # before: an error or KeyboardInterrupt between before_batch and after_loss skipped BF16Autocast's exit, so
        # the thread (a notebook's) computed everything after it in bf16
        class Interrupt(Callback):
            def after_pred(self):  # order 0: before BF16Autocast's (10), inside its autocast
                raise KeyboardInterrupt

        cbs = [BF16Autocast("cpu"), Interrupt()]
        with pytest.raises(KeyboardInterrupt), tiny_learner.no_bar(), tiny_learner.no_logging():
            tiny_learner.fit(1, lr=1e-4, cbs=cbs) if pass_ == "fit" else tiny_learner.validate(cbs=cbs)
        assert not torch.is_autocast_enabled("cpu")
        x = torch.randn(3, 3)
        assert (x @ x).dtype == torch.float32

    def test_train_loss_is_debiased_correctly(self, tiny_learner):
        # a 2-class head at start: the first epoch's smoothed loss is near ln 2, not inflated
        quiet_fit(tiny_learner, 1, lr=1e-6)
        assert 0.6 < tiny_learner.recorder.values[0][0] < 0.8

    def test_lr_as_string_and_results(self, tiny_learner):
        from fastai.callback.core import Callback

        class Losses(Callback):
            def after_loss(self):
                if self.training:
                    seen.append(self.loss.item())

        seen = []
        step, loss, results = quiet_fit(tiny_learner, 2, lr="5e-4", return_results=True, cbs=[Losses()])
        assert [sorted(r) for r in results] == [["accuracy", "f1_macro", "train_loss", "valid_loss"]] * 2
        assert step == len(seen) and loss == pytest.approx(np.mean(seen), rel=1e-5)  # the mean training loss

    def test_high_lr_warns(self, tiny_learner):
        with pytest.warns(UserWarning, match=r"lr=0.01 is high for fine-tuning a BERT model .*lr_find"):
            quiet_fit(tiny_learner, 1, lr="1e-2")

    @pytest.mark.parametrize("lr, msg", [("fast", "lr='fast' is not a number"), (0, "lr=0 must be positive"),
                                         (-1e-5, "lr=-1e-05 must be positive")])
    def test_bad_lr(self, tiny_learner, lr, msg):
        with pytest.raises(BertLearnError, match=msg):
            tiny_learner.fit(1, lr=lr)

    @pytest.mark.parametrize("epochs", [0, -2, 1.5])
    def test_bad_epochs(self, tiny_learner, epochs):
        with pytest.raises(BertLearnError, match=rf"epochs={epochs!r} must be a positive integer"):
            tiny_learner.fit(epochs, lr=1e-4)

    @pytest.mark.parametrize("steps", [0, -2, 2.5, "two", True])
    def test_bad_grad_accumulation_steps(self, tiny_databunch, tiny_model_dir, tmp_path, steps):
        # 0 and -2 trained without accumulation without a word; 2.5 accumulated 2; "two" was a bare TypeError
        with pytest.raises(BertLearnError) as err:
            BertLearner.from_pretrained_model(tiny_databunch, str(tiny_model_dir), None, "cpu", None,
                                              output_dir=tmp_path, grad_accumulation_steps=steps)
        assert str(err.value) == f"grad_accumulation_steps={steps!r} must be a positive integer"

    def test_fastai_verbs_still_work(self, tiny_learner):
        with tiny_learner.no_bar(), tiny_learner.no_logging():
            tiny_learner.fit_one_cycle(1, 1e-4)
            tiny_learner.lr_find(num_it=10, show_plot=False)
            tiny_learner.freeze()
            tiny_learner.fit_one_cycle(1, 1e-4)
            assert not tiny_learner.model.bert.embeddings.word_embeddings.weight.requires_grad
            tiny_learner.unfreeze()
            tiny_learner.fit(1, lr=slice(1e-5, 1e-4))
        assert len(tiny_learner.opt.param_groups) == 4
        lrs = [g["lr"] for g in tiny_learner.opt.param_groups]
        assert lrs == sorted(lrs)

    def test_fit_without_validation(self, tiny_learner):
        quiet_fit(tiny_learner, 1, lr=1e-4, validate=False)
        assert len(tiny_learner.recorder.values[0]) == 1  # train loss only

    def test_fit_reads_fast_berts_positional_order(self, tiny_learner):
        """fast-bert's fit(epochs, lr, validate, return_results, schedule_type, optimizer_type) by position was read
        in fastai's order (wd, cbs, reset_opt, start_epoch): fit(1, 1e-4, False) validated and trained with wd=0."""
        with tiny_learner.no_bar():
            tiny_learner.fit(1, 1e-4, False)
        assert len(tiny_learner.recorder.values[0]) == 1  # train loss only: not validated
        assert {h["wd"] for h in tiny_learner.opt.hypers} == {0.01}
        with tiny_learner.no_bar():
            step, loss, results = tiny_learner.fit(1, 1e-4, True, True, "warmup_linear", "lamb")
        assert tiny_learner.optimizer_type == "lamb" and len(results) == 1 and "valid_loss" in results[0]
        assert {h["wd"] for h in tiny_learner.opt.hypers} == {0.01}
        lrs = np.diff(tiny_learner.recorder.lrs)
        assert len(lrs) > 2 and lrs == pytest.approx([lrs[0]] * len(lrs)) and lrs[0] < 0  # warmup_linear: a line down
        # fastai's order is unchanged: a number third is the weight decay, then callbacks by place
        with tiny_learner.no_bar():
            tiny_learner.fit(1, 1e-4, 0.1, [])
        assert {h["wd"] for h in tiny_learner.opt.hypers} == {0.1} and len(tiny_learner.recorder.values[0]) > 1
        # callbacks by name beside fast-bert's validate stay callbacks
        seen = []

        class Count(Callback):
            def after_batch(self):
                seen.append(1)
        with tiny_learner.no_bar():
            tiny_learner.fit(1, 1e-4, False, cbs=[Count()])
        assert seen and len(tiny_learner.recorder.values[0]) == 1

    def test_accumulation_without_its_callback_is_refused(self, tiny_databunch, tiny_model_dir, tiny_learner):
        """The constructor stored grad_accumulation_steps, which the schedules count steps by, but only the
        factories add the callback that accumulates: such a learner stepped every batch and its warm-up and decay
        ended a quarter of the way into the fit."""
        import transformers as T
        model = T.AutoModelForSequenceClassification.from_pretrained(tiny_model_dir, num_labels=2)
        learner = BertLearner(tiny_databunch, model, grad_accumulation_steps=4, schedule_type="warmup_linear")
        message = (r"^grad_accumulation_steps=4: this learner has no gradient-accumulation callback, so it would step "
                   r"every batch while its schedule counts a step every 4 batches; build it with the task's "
                   r"from_pretrained_model\(\.\.\., grad_accumulation_steps=4\), which adds one, or set "
                   r"grad_accumulation_steps=1$")
        with pytest.raises(BertLearnError, match=message):
            learner.fit(1, 1e-4)
        assert learner.steps_done == 0 and learner.opt is None  # refused before anything ran
        tiny_learner.grad_accumulation_steps = 4
        with pytest.raises(BertLearnError, match=message):
            tiny_learner.fit(1, 1e-4)
        # a factory-built accumulating learner told to stop accumulating kept its callback's count
        accumulating = BertLearner.from_pretrained_model(tiny_databunch, str(tiny_model_dir), None, "cpu", None,
                                                         grad_accumulation_steps=4)
        accumulating.grad_accumulation_steps = 1
        with pytest.raises(BertLearnError, match=r"^grad_accumulation_steps=1, but this learner's accumulation "
                                                 r"callback steps every 4 batches, so its schedule would count more "
                                                 r"steps than it takes; set learner.grad_accumulation_steps = 4, "
                                                 r"or build the learner with from_pretrained_model\(\.\.\., "
                                                 r"grad_accumulation_steps=1\)$"):
            accumulating.fit(1, 1e-4)

    def test_fastai_metric_functions_work(self, tiny_databunch, tiny_model_dir):
        learner = BertLearner.from_pretrained_model(tiny_databunch, str(tiny_model_dir), [fastai_accuracy], "cpu", None)
        assert set(learner.validate(quiet=True)) == {"loss", "accuracy"}

    def test_logger_gets_one_line_per_epoch(self, tiny_databunch, tiny_model_dir, caplog):
        logger = logging.getLogger("bertlearn-test")
        learner = BertLearner.from_pretrained_model(tiny_databunch, str(tiny_model_dir), None, "cpu", logger)
        with caplog.at_level(logging.INFO, logger="bertlearn-test"), learner.no_bar():
            learner.fit(2, lr=1e-4)
            learner.validate(quiet=True)
        lines = [r.getMessage() for r in caplog.records if r.name == "bertlearn-test"]
        assert len(lines) == 2 and lines[0].startswith("epoch 0: train_loss: ")
        assert "valid_loss: " in lines[1] and "accuracy: " in lines[1]


class TestPredict:
    def test_empty_texts_are_named_and_keep_their_rows(self, trained_learner, tmp_path):
        """A blank item of a list (predict_batch(df.text.tolist())) got a confident label for no text without a word,
        while `bertlearn predict` refuses such rows."""
        from bertlearn import BertClassificationPredictor
        # a zero-width space and a byte-order mark become no token, as the empty string does
        texts = ["the movie was great fun", "", "awful and boring film", " \n\t", "\u200b\ufeff"]
        message = (r"^texts: items \[1, 3, 4\] are blank \(empty, or only whitespace and invisible characters\): each "
                   r"still gets a prediction, the model's answer for no text; drop or fill them if that is not what "
                   r"you want$")
        tok = trained_learner.dls.encoder.tokenizer
        assert tok(texts[4], add_special_tokens=False)["input_ids"] == []
        with pytest.warns(UserWarning, match=message):
            preds = trained_learner.predict_batch(texts)
        assert len(preds) == 5 and preds[0][0][0] == "positive" and preds[2][0][0] == "negative"
        predictor = BertClassificationPredictor(trained_learner.save_model(tmp_path / "m"), device="cpu")
        with pytest.warns(UserWarning, match=message):
            assert len(predictor.predict_batch(texts)) == 5
        with pytest.warns(UserWarning, match=r"^texts: item \[0\] is blank \(empty, or only whitespace and "):
            predictor.predict("  ")
        import warnings
        with warnings.catch_warnings():
            warnings.simplefilter("error")
            predictor.predict_batch(texts[::2][:2] + ["caf\u00e9\u200b!"])  # nothing said for texts that have words

    def test_predict_batch_format(self, trained_learner):
        preds = trained_learner.predict_batch(["the movie was great fun", "awful and boring film", "good"])
        assert len(preds) == 3
        for row in preds:
            assert [l for l, _ in sorted(row)] == ["negative", "positive"]
            probs = [p for _, p in row]
            assert probs == sorted(probs, reverse=True) and sum(probs) == pytest.approx(1, abs=1e-5)
        assert preds[0][0][0] == "positive" and preds[1][0][0] == "negative"
        label, idx, probs = trained_learner.predict("awful and boring film")  # alone: no padding, so up to rounding
        labels = trained_learner.dls.encoder.labels
        assert label == preds[1][0][0] and labels[int(idx)] == label
        assert dict(zip(labels, probs.tolist())) == pytest.approx(dict(preds[1]), abs=1e-6)

    def test_prediction_order_matches_input_order(self, trained_learner):
        texts = ["good", "the plot was really very dull and the acting was poor and boring", "bad film"]
        batch = trained_learner.predict_batch(texts)
        single = [trained_learner.predict(t) for t in texts]
        for a, (label, _, probs) in zip(batch, single):
            assert a[0][0] == label and a[0][1] == pytest.approx(float(probs.max()), abs=1e-5)

    def test_predict_returns_fastais_decoded_index_and_probabilities(self, trained_learner):
        # before: predict returned predict_batch's [(label, p), ...] pairs, so fastai's `label, idx, probs =
        # learn.predict(text)` unpacked a 3-label model's pairs into three tuples without an error
        text = "awful and boring film"
        tok, model = trained_learner.dls.encoder.tokenizer, trained_learner.model.eval()
        with torch.no_grad():
            want = model(**tok([text], return_tensors="pt")).logits[0].softmax(-1)
        label, idx, probs = trained_learner.predict(text)
        torch.testing.assert_close(probs, want, atol=1e-6, rtol=0)
        assert idx.item() == int(want.argmax()) and label == trained_learner.dls.encoder.labels[int(want.argmax())]
        assert trained_learner.predict(text, with_input=True)[0] == text
        with pytest.raises(TypeError, match=r"^predict\(rm_type_tfms=\[1\]\): a BertLearner has no fastai item "
                                            r"transforms to remove; allowed: None; leave rm_type_tfms out$"):
            trained_learner.predict(text, [1])

    def test_predict_of_a_multi_label_and_a_regression_learner(self, tiny_model_dir, tiny_tokenizer):
        from bertlearn import BertDataBunch
        df = make_texts(32, seed=3)
        df["pos"], df["neg"] = (df["label"] == "positive").astype(int), (df["label"] == "negative").astype(int)
        df["score"] = np.linspace(-1.0, 2.0, len(df))
        text = "a good and lovely film"
        for kind in ("multi", "regression"):
            if kind == "multi":
                db = BertDataBunch.from_df(df, df, tiny_tokenizer, label_col=["pos", "neg"], multi_label=True, bs=16,
                                           device="cpu")
            else:
                db = BertDataBunch.from_df(df, df, tiny_tokenizer, label_col="score", regression=True, bs=16,
                                           device="cpu")
            learner = BertLearner.from_pretrained_model(db, str(tiny_model_dir), None, "cpu", None, seed=0)
            learner.fresh_head = False
            model = learner.model.eval()
            with torch.no_grad():
                logits = model(**tiny_tokenizer([text], return_tensors="pt")).logits[0]
            decoded, tensor, probs = learner.predict(text)
            if kind == "multi":
                learner.thresholds = [float(logits[0].sigmoid()) - 1e-3, float(logits[1].sigmoid()) + 1e-3]
                decoded, tensor, probs = learner.predict(text)
                torch.testing.assert_close(probs, logits.sigmoid(), atol=1e-6, rtol=0)
                assert decoded == ["pos"] and tensor.tolist() == [True, False]
            else:
                assert decoded == pytest.approx(float(logits[0]), abs=1e-6)
                torch.testing.assert_close(tensor, logits[:1], atol=1e-6, rtol=0)
                torch.testing.assert_close(probs, logits[:1], atol=1e-6, rtol=0)

    def test_untrained_head_warns(self, tiny_learner):
        with pytest.warns(UserWarning, match="head that has not been trained yet"):
            tiny_learner.predict("good")

    @pytest.mark.parametrize("verb", ["fit_one_cycle", "fine_tune"])
    def test_fastais_fits_train_the_head_but_lr_find_does_not(self, tiny_learner, verb):
        # before: fastai's schedulers went through fit's ParamScheduler path, which never cleared fresh_head, so
        # every prediction after fit_one_cycle / fine_tune still said the head was untrained
        import warnings
        untrained = "predicting with a classification head that has not been trained yet; call fit() first"

        def said():
            with warnings.catch_warnings(record=True) as caught:
                warnings.simplefilter("always")
                tiny_learner.predict_batch(["good fun"])
            return [str(w.message) for w in caught if "not been trained" in str(w.message)]

        with tiny_learner.no_bar(), tiny_learner.no_logging():
            tiny_learner.lr_find(num_it=5, show_plot=False)  # puts the weights it started from back
            assert said() == [untrained]
            getattr(tiny_learner, verb)(1, 1e-4)
        assert said() == []

    def test_predict_test_data(self, tiny_csv_dir, tiny_tokenizer, tiny_model_dir):
        from bertlearn import BertDataBunch
        db = BertDataBunch(tiny_csv_dir, tiny_csv_dir, tiny_tokenizer, test_data=["good", "bad", "fun"], bs=16)
        learner = BertLearner.from_pretrained_model(db, str(tiny_model_dir), None, "cpu", None)
        quiet_fit(learner, 1, lr=1e-4)
        assert len(learner.predict_batch()) == 3

    def test_predict_batch_without_texts_or_test_data(self, tiny_learner):
        with pytest.raises(DataError, match="none was given; pass texts"):
            tiny_learner.predict_batch()


class TestLoadedLearner:
    EMPTY = ("{}: this learner's training set is empty (0 rows), so there is nothing to train on: a learner from "
             "export() / load_learner carries no data (fastai's export keeps the model and the text processing, not "
             "the rows). Give it data first: learner.dls = BertDataBunch(...) built with the same tokenizer and "
             "labels, then train")

    def test_a_gpu_bf16_export_loaded_on_the_cpu_trains_and_predicts_at_one_precision(self, tiny_learner):
        """A GPU learner's BF16Autocast('cuda') survived load_learner on a CPU, where it casts nothing: fit and
        validate ran float32 while prediction (and save_model's recorded precision) went by bf16."""
        from bertlearn import load_learner
        from bertlearn.callbacks import BF16Autocast
        from bertlearn.device import native_bf16
        texts = ["a good movie", "the plot was dull and long"]
        plain = tiny_learner.predict_logits(texts)
        tiny_learner.add_cb(BF16Autocast("cuda"))  # as is_fp16=True on an Ampere GPU adds it
        torch.testing.assert_close(tiny_learner.predict_logits(texts), plain, rtol=0, atol=0)  # it casts nothing here
        path = tiny_learner.export("bf16.pkl")
        with pytest.warns(UserWarning) as said:
            learner = load_learner(path)
        cpu_bf16 = native_bf16("cpu")
        now = "bf16 autocast" if cpu_bf16 else "float32"
        assert f"load_learner: bf16.pkl was exported with bf16 autocast on cuda; on cpu it now trains and predicts " \
               f"in {now}" in [str(w.message) for w in said]
        autocasts = [cb.device_type for cb in learner.cbs if isinstance(cb, BF16Autocast)]
        assert autocasts == (["cpu"] if cpu_bf16 else [])

    def test_training_a_learner_from_export_is_refused_until_it_has_data(self, tiny_learner, tiny_databunch):
        # before: fit() trained nothing and returned (0, nan) without a word; lr_find() raised ZeroDivisionError
        from bertlearn import load_learner
        learner = load_learner(tiny_learner.export("e.pkl"))
        assert len(learner.dls.train.dataset) == 0
        weights = {k: v.clone() for k, v in learner.model.state_dict().items()}
        calls = {"fit": lambda: learner.fit(1, lr=1e-4), "fit_one_cycle": lambda: learner.fit_one_cycle(1, 1e-4),
                 "fine_tune": lambda: learner.fine_tune(1, 1e-4), "lr_find": lambda: learner.lr_find(show_plot=False)}
        for verb, call in calls.items():
            with pytest.raises(DataError) as e:
                call()
            # fastai's fit_one_cycle trains through fit()
            assert str(e.value) == self.EMPTY.format("fit" if verb == "fit_one_cycle" else verb), verb
        assert all(torch.equal(v, learner.model.state_dict()[k]) for k, v in weights.items())
        assert all(p.requires_grad for p in learner.model.parameters())  # fine_tune was refused before its freeze
        learner.dls = tiny_databunch  # the fix the message names
        steps, _ = quiet_fit(learner, 1, lr=1e-4)
        assert steps == len(tiny_databunch.train)


class TestMixedPrecisionOnCPU:
    def test_to_fp16_on_a_cpu_predicts_as_fit_and_get_preds_compute(self, tiny_learner):
        # fastai's MixedPrecision autocasts CUDA only: on a CPU, fit, validate and get_preds run float32. Before,
        # predict_logits / predict_batch ran under CPU float16 autocast after to_fp16() (1e-4 from float32) and the
        # fit's summary line said fp16
        import warnings

        from bertlearn.callbacks import fit_description
        quiet_fit(tiny_learner, 1, lr=1e-3)
        texts = make_texts(20, seed=3).text.tolist()
        before = tiny_learner.predict_logits(texts)
        tiny_learner.to_fp16()
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # torch, without CUDA: autocast('cuda') and GradScaler are disabled
            probs, _ = tiny_learner.get_preds(dl=tiny_learner.dls.test_dl(texts))
        after = tiny_learner.predict_logits(texts)
        torch.testing.assert_close(after, before, atol=1e-6, rtol=0)
        torch.testing.assert_close(after.softmax(-1), probs, atol=1e-6, rtol=0)
        assert ", float32, " in fit_description(tiny_learner)


class TestHotPath:
    """No host-device synchronisation per training batch (checked on CPU by counting the calls that sync on GPU)."""

    @pytest.mark.parametrize("live", [True, False], ids=["bars", "no-terminal"])
    def test_no_sync_calls_inside_training_batches(self, tiny_learner, sync_spy, live):
        from bertlearn.callbacks import FitWatchdog
        bar = next(cb for cb in tiny_learner.cbs if isinstance(cb, SparseProgressCallback))
        bar.every, bar.live = 1e9, live  # the bar's readout is a deliberate, time-limited sync
        next(cb for cb in tiny_learner.cbs if isinstance(cb, FitWatchdog)).every = 1e9  # so is the loss check
        # TensorBoard's training-loss point every `every` steps is the other one
        tb = TensorBoardLogger(tiny_learner.path / "tb", every=10**9)
        # with bf16 autocast too (what is_fp16=True adds where the hardware has bf16): no GradScaler, no reads
        tiny_learner.fit(2, lr=1e-4, cbs=[*sync_spy.window(), tb, BF16Autocast("cpu")])
        assert sync_spy.calls == []
        assert list((tiny_learner.path / "tb").glob("events.*"))

    def test_no_sync_calls_with_gradient_accumulation_and_class_weights(self, tiny_databunch, tiny_model_dir,
                                                                         tmp_path, sync_spy):
        # an accumulated step weighs its batches by their denominators (the targets' class weights here) and
        # divides the step's gradients by their sum: device tensors, read by no one on the host
        from bertlearn.callbacks import FitWatchdog
        learner = BertLearner.from_pretrained_model(tiny_databunch, str(tiny_model_dir), None, "cpu", None,
                                                    output_dir=tmp_path / "out", grad_accumulation_steps=2,
                                                    weight=[1.0, 3.0])
        next(cb for cb in learner.cbs if isinstance(cb, SparseProgressCallback)).every = 1e9
        next(cb for cb in learner.cbs if isinstance(cb, FitWatchdog)).every = 1e9
        learner.fit(2, lr=1e-4, cbs=[*sync_spy.window()])
        assert sync_spy.calls == []

    def test_the_spy_sees_a_planted_read(self, tiny_learner, sync_spy):
        from fastai.callback.core import Callback

        class Reads(Callback):
            def after_loss(self):
                float(self.loss)

        tiny_learner.fit(1, lr=1e-4, cbs=[*sync_spy.window(), Reads()])
        assert sync_spy.calls and sync_spy.calls[0][0] == "__float__"


class TestEventDispatch:
    """BertLearner asks only the callbacks that handle an event (fastai asks all of them): same calls, same order."""

    def _log_callbacks(self, log):
        from fastai.callback.core import Callback

        class First(Callback):
            order = -50

            def before_batch(self):
                log.append(("first", "before_batch", self.training))

            def after_fit(self):
                log.append(("first", "after_fit", None))

        class Last(Callback):
            order = 90
            run_valid = False  # fastai's rule: inner-loop events during validation skip it

            def before_batch(self):
                log.append(("last", "before_batch", self.training))

            def after_step(self):
                log.append(("last", "after_step", None))

        given = Callback(before_batch=lambda self: log.append(("given", "before_batch", None)))  # fastai's funcs_kwargs
        return [Last(), First(), given]

    def test_same_calls_in_the_same_order_as_fastai(self, tiny_learner):
        ours, theirs = [], []
        quiet_fit(tiny_learner, 1, lr=1e-4, cbs=self._log_callbacks(ours))
        tiny_learner.__dict__.pop("_event_handlers", None)
        orig = type(tiny_learner).__call__
        try:
            type(tiny_learner).__call__ = Learner.__call__  # fastai's own dispatch
            type(tiny_learner)._call_one_ours = type(tiny_learner)._call_one
            type(tiny_learner)._call_one = Learner._call_one
            quiet_fit(tiny_learner, 1, lr=1e-4, cbs=self._log_callbacks(theirs))
        finally:
            type(tiny_learner).__call__ = orig
            type(tiny_learner)._call_one = type(tiny_learner)._call_one_ours
            del type(tiny_learner)._call_one_ours
        assert ours == theirs and len(ours) > 10 and ("given", "before_batch", None) in ours
        steps = len(tiny_learner.dls.train)
        assert ours.count(("last", "after_step", None)) == steps
        assert ("last", "before_batch", False) not in ours and ("first", "before_batch", False) in ours
        assert ours[-1] == ("first", "after_fit", None)

    def test_run_flags_reset_after_fit_and_unknown_events_fail_as_in_fastai(self, tiny_learner):
        from fastai.callback.core import Callback

        class Off(Callback):
            calls = 0

            def before_fit(self):
                self.run = False  # fastai's way to switch a callback off for the rest of a fit

            def before_batch(self):
                Off.calls += 1

        off = Off()
        quiet_fit(tiny_learner, 1, lr=1e-4, cbs=[off])
        assert Off.calls == 0 and off.run  # after_fit turned it back on
        with pytest.raises(Exception, match="missing no_such_event"):
            tiny_learner("no_such_event")

    def test_removed_callbacks_are_let_go(self, tiny_learner):
        import gc
        import weakref
        from fastai.callback.core import Callback

        class Holds(Callback):
            def after_batch(self):
                self.seen = getattr(self, "seen", 0) + 1

        cb = Holds()
        ref = weakref.ref(cb)
        quiet_fit(tiny_learner, 1, lr=1e-4, cbs=[cb])  # fit(cbs=...) adds it, then removes it
        assert cb.seen == len(tiny_learner.dls.train) + len(tiny_learner.dls.valid)
        del cb
        gc.collect()
        assert ref() is None
        tiny_learner.get_preds()  # its gatherer (holding every prediction) is not kept either
        cached = tiny_learner.__dict__.get("_event_handlers")
        assert cached is None or not any(type(c).__name__ == "GatherPredsCallback"
                                         for handlers in cached[1].values() for c in handlers)

    def test_export_leaves_the_dispatch_cache_behind(self, tiny_learner):
        from bertlearn import load_learner
        quiet_fit(tiny_learner, 1, lr=1e-4)
        tiny_learner("after_cancel_step")  # an event no callback handles: fills the cache, does nothing
        assert tiny_learner.__dict__.get("_event_handlers")
        assert "_event_handlers" not in tiny_learner.__getstate__()
        path = tiny_learner.export("exported.pkl")
        assert "_event_handlers" not in load_learner(path).__dict__


class TestReproducibility:
    def _run(self, tiny_csv_dir, tiny_tokenizer, tiny_model_dir, tmp_path):
        from bertlearn import BertDataBunch
        db = BertDataBunch.from_csv(tiny_csv_dir, tiny_tokenizer, bs=16, maxlen=64, seed=7, device="cpu")
        learner = BertLearner.from_pretrained_model(db, str(tiny_model_dir), None, "cpu", None, output_dir=tmp_path,
                                                    seed=7)
        quiet_fit(learner, 2, lr=1e-3)
        return learner.recorder.values, learner.predict_logits(["good fun", "the acting was poor"])

    def test_seeded_cpu_runs_are_bit_identical(self, tiny_csv_dir, tiny_tokenizer, tiny_model_dir, tmp_path):
        values_a, logits_a = self._run(tiny_csv_dir, tiny_tokenizer, tiny_model_dir, tmp_path / "a")
        torch.manual_seed(123)  # disturb the global RNGs between the runs
        values_b, logits_b = self._run(tiny_csv_dir, tiny_tokenizer, tiny_model_dir, tmp_path / "b")
        assert values_a == values_b
        assert torch.equal(logits_a, logits_b)

    @pytest.mark.parametrize("db_seed", [3, None])
    def test_seeded_learners_on_one_databunch_repeat(self, tiny_csv_dir, tiny_tokenizer, tiny_model_dir, tmp_path,
                                                     db_seed):
        # a learning-rate sweep on one databunch: each seeded learner went on with the databunch's training order
        # where the last left it (or, unseeded, from where fastai's global random put it), so the same settings gave
        # different weights; a seeded learner starts the order over (from the databunch's seed, else its own)
        from bertlearn import BertDataBunch

        def fit(db, seed):
            learner = BertLearner.from_pretrained_model(db, str(tiny_model_dir), None, "cpu", None, seed=seed,
                                                        output_dir=tmp_path)
            order = [x.clone() for x, *_ in learner.dls.train]  # the first epoch's batches, as drawn
            learner.dls.train.rng.setstate(random.Random(db_seed if db_seed is not None else seed).getstate())
            quiet_fit(learner, 1, lr=1e-3)
            return order, learner.model.state_dict()

        def same(a, b):
            return len(a) == len(b) and all(x.shape == y.shape and torch.equal(x, y) for x, y in zip(a, b))

        db = BertDataBunch.from_csv(tiny_csv_dir, tiny_tokenizer, bs=16, maxlen=64, seed=db_seed, device="cpu")
        (order, first), (again, second) = fit(db, 7), fit(db, 7)
        assert same(order, again)
        for name in first:
            assert torch.equal(first[name], second[name]), name
        other_order, _ = fit(db, 8)  # another learner seed: the databunch's own order, if it has a seed
        assert same(order, other_order) == (db_seed is not None)
        if db_seed is not None:  # the order a fresh databunch of that seed draws
            fresh = BertDataBunch.from_csv(tiny_csv_dir, tiny_tokenizer, bs=16, maxlen=64, seed=db_seed, device="cpu")
            assert same(order, [x for x, *_ in fresh.train])

    def test_seeded_learners_built_first_then_fitted_in_turn_repeat(self, tiny_csv_dir, tiny_tokenizer,
                                                                     tiny_model_dir, tmp_path):
        # a sweep set up first: the second learner's fit went on from the first fit's data order and dropout draws,
        # so two learners of the same seed and settings ended with other weights
        from bertlearn import BertDataBunch
        db = BertDataBunch.from_csv(tiny_csv_dir, tiny_tokenizer, bs=16, maxlen=64, seed=3, device="cpu")
        learners = [BertLearner.from_pretrained_model(db, str(tiny_model_dir), None, "cpu", None, seed=7,
                                                      output_dir=tmp_path / str(i)) for i in range(2)]
        quiet_fit(learners[0], 1, lr=1e-3)
        list(learners[1].dls.train)  # a look at the batches (show_batch) draws an order too
        torch.rand(3)
        quiet_fit(learners[1], 1, lr=1e-3)
        first, second = (learner.model.state_dict() for learner in learners[:2])
        for name in first:
            assert torch.equal(first[name], second[name]), name
        # a seed the user sets before a learner's first fit, with no fit since its factory, is the user's to keep
        third = BertLearner.from_pretrained_model(db, str(tiny_model_dir), None, "cpu", None, seed=7,
                                                  output_dir=tmp_path / "2")
        torch.manual_seed(123)
        quiet_fit(third, 1, lr=1e-3)
        assert not torch.equal(third.model.classifier.weight, learners[0].model.classifier.weight)

    def test_a_seed_leaves_cudnns_flags_as_the_user_set_them(self, tiny_databunch, tiny_model_dir, tmp_path,
                                                             monkeypatch):
        # fastai's set_seed(reproducible=True) turned cudnn.benchmark off and deterministic on for the whole process
        monkeypatch.setattr(torch.backends.cudnn, "benchmark", True)
        monkeypatch.setattr(torch.backends.cudnn, "deterministic", False)
        BertLearner.from_pretrained_model(tiny_databunch, str(tiny_model_dir), None, "cpu", None, seed=0,
                                          output_dir=tmp_path)
        assert torch.backends.cudnn.benchmark is True and torch.backends.cudnn.deterministic is False


class TestAtomicSaves:
    def test_export_with_a_relative_output_dir(self, tiny_databunch, tiny_model_dir, tmp_path, monkeypatch):
        # before: output_dir="out" (the quickstart's own) made export() fail with "Parent directory out/out does
        # not exist": fastai joined the relative temporary name onto learn.path a second time
        from bertlearn import load_learner
        monkeypatch.chdir(tmp_path)
        learner = BertLearner.from_pretrained_model(tiny_databunch, str(tiny_model_dir), None, "cpu", None,
                                                    output_dir="out")
        path = learner.export()
        assert path == Path("out") / "export.pkl" and path.is_file()
        assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["export.pkl"]
        texts = ["good fun", "the acting was poor"]
        torch.testing.assert_close(load_learner(path).predict_logits(texts), learner.predict_logits(texts))

    def test_interrupted_export_keeps_the_previous_file(self, tiny_learner, monkeypatch):
        first = tiny_learner.export("e.pkl")
        before = first.read_bytes()

        def crash(*args, **kwargs):
            raise KeyboardInterrupt("killed mid-write")

        monkeypatch.setattr(torch, "save", crash)
        with pytest.raises(KeyboardInterrupt):
            tiny_learner.export("e.pkl")
        assert first.read_bytes() == before
        assert [p.name for p in first.parent.iterdir() if p.name.startswith(".")] == []

    def test_interrupted_save_model_keeps_the_previous_folder(self, tiny_learner, tmp_path, monkeypatch):
        path = tiny_learner.save_model(tmp_path / "m")
        weights = (path / "model.safetensors").read_bytes()

        def crash(*args, **kwargs):
            raise KeyboardInterrupt("killed mid-write")

        monkeypatch.setattr(type(tiny_learner.model), "save_pretrained", crash)
        with pytest.raises(KeyboardInterrupt):
            tiny_learner.save_model(tmp_path / "m")
        assert (path / "model.safetensors").read_bytes() == weights
        assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == []  # no temporary folder left


class TestCheckpoints:
    def test_checkpoint_files_are_written_each_epoch_without_pickle(self, tiny_learner):
        from safetensors.torch import load_file
        quiet_fit(tiny_learner, 2, lr=1e-4, checkpoint=True)
        folder = tiny_learner.output_dir / "checkpoints" / "last"
        state = __import__("json").loads((folder / "state.json").read_text())
        assert state["epochs_done"] == 2 and state["n_epoch"] == 2 and state["lr"] == 1e-4
        weights = load_file(str(folder / "model.safetensors"))
        assert torch.equal(weights["classifier.weight"], tiny_learner.model.classifier.weight.detach())
        torch.load(folder / "optimizer.pt", weights_only=True)

    @pytest.mark.parametrize("bs,accumulate,schedule", [(16, 1, None), (20, 2, None), (16, 1, "warmup_linear"),
                                                         (20, 2, "warmup_cosine")],
                             ids=["every-batch", "accumulated-across-epochs", "warmup", "warmup-accumulated"])
    def test_resume_after_an_interruption_matches_an_uninterrupted_fit(self, tiny_csv_dir, tiny_tokenizer,
                                                                       tiny_model_dir, tmp_path, bs, accumulate,
                                                                       schedule):
        # bs 20: 5 batches an epoch, so with 2 batches a step the first epoch ends half-way through a step, whose
        # gradients (and fastai's count) the resumed fit dropped
        from fastai.callback.core import CancelFitException
        from fastai.callback.core import Callback

        from bertlearn import BertDataBunch

        def make(out):
            db = BertDataBunch.from_csv(tiny_csv_dir, tiny_tokenizer, bs=bs, maxlen=64, seed=3, device="cpu")
            return BertLearner.from_pretrained_model(db, str(tiny_model_dir), None, "cpu", None, output_dir=out, seed=3,
                                                     grad_accumulation_steps=accumulate, warmup_steps=4,
                                                     schedule_type=schedule)

        class StopAfter(Callback):
            order = 100  # after the checkpoint is written
            def after_epoch(self):
                if self.epoch == 1:
                    raise CancelFitException()

        whole = make(tmp_path / "whole")
        quiet_fit(whole, 3, lr=1e-3)
        interrupted = make(tmp_path / "resumed")
        quiet_fit(interrupted, 3, lr=1e-3, checkpoint=True, cbs=[StopAfter()])
        resumed = make(tmp_path / "resumed")  # a fresh process would start like this
        quiet_fit(resumed, 3, lr=1e-3, resume=True)
        texts = ["good fun", "the acting was poor"]
        # a resumed warmup_* fit restarted its warm-up (fastai's train_iter starts at 0 in every fit)
        assert resumed.recorder.lrs == pytest.approx(whole.recorder.lrs[-len(resumed.recorder.lrs):], abs=1e-12)
        assert torch.allclose(resumed.predict_logits(texts), whole.predict_logits(texts), atol=1e-6)
        assert len([v for v in resumed.recorder.values if v]) == 1  # only epoch 3 ran (skipped ones are empty)

    @staticmethod
    def _scripted_learner(tiny_csv_dir, tiny_tokenizer, tiny_model_dir, out, scores):
        from fastai.metrics import Metric

        from bertlearn import BertDataBunch

        class Scripted(Metric):  # the monitored value, epoch by epoch
            def reset(self):
                pass

            def accumulate(self, learn):
                self.epoch = learn.epoch

            @property
            def value(self):
                return scores[self.epoch]

            @property
            def name(self):
                return "scripted"

        db = BertDataBunch.from_csv(tiny_csv_dir, tiny_tokenizer, bs=16, maxlen=64, seed=3, device="cpu")
        learner = BertLearner.from_pretrained_model(db, str(tiny_model_dir), None, "cpu", None, output_dir=out, seed=3)
        learner.metrics = [Scripted()]
        return learner

    def test_a_resumed_save_model_callback_keeps_the_best_from_before_the_stop(self, tiny_csv_dir, tiny_tokenizer,
                                                                            tiny_model_dir, tmp_path):
        # before: a resumed fit's SaveModelCallback started from no best value, so the better of the resumed epochs
        # (0.4, worse than epoch 1's 0.9) was saved as the best and loaded at the end
        from fastai.callback.tracker import SaveModelCallback
        make = partial(self._scripted_learner, tiny_csv_dir, tiny_tokenizer, tiny_model_dir, scores=[0.5, 0.9, 0.3, 0.4])
        whole = make(tmp_path / "whole")
        quiet_fit(whole, 4, lr=1e-3, cbs=[SaveModelCallback(monitor="scripted")])
        quiet_fit(make(tmp_path / "resumed"), 4, lr=1e-3, checkpoint=True,
                  cbs=[SaveModelCallback(monitor="scripted"), StopAfterEpoch(2)])
        resumed = make(tmp_path / "resumed")  # a fresh process would start like this
        tracker = SaveModelCallback(monitor="scripted")
        quiet_fit(resumed, 4, lr=1e-3, resume=True, cbs=[tracker])
        assert tracker.best == 0.9
        texts = ["good fun", "the acting was poor"]
        assert torch.allclose(resumed.predict_logits(texts), whole.predict_logits(texts), atol=1e-6)  # epoch 1's

    def test_a_resumed_early_stopping_keeps_its_patience(self, tiny_csv_dir, tiny_tokenizer, tiny_model_dir, tmp_path):
        # before: its wait restarted at 0 and its best at -inf: the resumed fit ran 3 more epochs instead of 1
        import json

        from fastai.callback.tracker import EarlyStoppingCallback
        make = partial(self._scripted_learner, tiny_csv_dir, tiny_tokenizer, tiny_model_dir,
                       scores=[0.5, 0.9, 0.3, 0.4, 0.2, 0.1])
        whole = make(tmp_path / "whole")
        quiet_fit(whole, 6, lr=1e-3, cbs=[EarlyStoppingCallback(monitor="scripted", patience=2)])
        assert len(whole.recorder.values) == 4  # epochs 0-3: no gain after epoch 1 for two epochs
        quiet_fit(make(tmp_path / "resumed"), 6, lr=1e-3, checkpoint=True,
                  cbs=[EarlyStoppingCallback(monitor="scripted", patience=2), StopAfterEpoch(2)])
        resumed = make(tmp_path / "resumed")
        quiet_fit(resumed, 6, lr=1e-3, resume=True, cbs=[EarlyStoppingCallback(monitor="scripted", patience=2)])
        assert len([v for v in resumed.recorder.values if v]) == 1  # epoch 3 only, where it stops
        texts = ["good fun", "the acting was poor"]
        assert torch.allclose(resumed.predict_logits(texts), whole.predict_logits(texts), atol=1e-6)
        # the epoch early stopping closed is checkpointed (it stops the fit before the checkpoint's after_epoch)
        state = json.loads((tmp_path / "resumed" / "checkpoints" / "last" / "state.json").read_text())
        assert state["epochs_done"] == 4 and state["finished"]
        assert state["trackers"] == [{"type": "EarlyStoppingCallback", "monitor": "scripted", "best": 0.9, "wait": 2}]

    @pytest.mark.parametrize("tracker", ["early_stopping", "save_model"])
    def test_a_finished_fit_run_again_with_resume_ends_as_it_did(self, tiny_csv_dir, tiny_tokenizer, tiny_model_dir,
                                                                 tmp_path, tracker):
        # before: a fit early stopping ended was resumed as unfinished (one more epoch each time the script ran
        # again), and a finished fit's checkpoint held its last epoch's weights, not the ones SaveModelCallback
        # loaded back at its end
        from fastai.callback.tracker import EarlyStoppingCallback, SaveModelCallback
        make = partial(self._scripted_learner, tiny_csv_dir, tiny_tokenizer, tiny_model_dir,
                       scores=[0.5, 0.9, 0.3, 0.4, 0.2, 0.1])
        new = (lambda: EarlyStoppingCallback(monitor="scripted", patience=2)) if tracker == "early_stopping" else \
            (lambda: SaveModelCallback(monitor="scripted"))
        epochs = 6 if tracker == "early_stopping" else 4
        first = make(tmp_path / "out")
        quiet_fit(first, epochs, lr=1e-3, checkpoint=True, cbs=[new()])
        texts = ["good fun", "the acting was poor"]
        ended = first.predict_logits(texts)
        again = make(tmp_path / "out")  # the script run again
        with pytest.warns(UserWarning, match="so nothing was trained") as seen:
            quiet_fit(again, epochs, lr=1e-3, resume=True, cbs=[new()])
        if tracker == "early_stopping":
            assert any("ended after epoch 4 of 6" in str(w.message) for w in seen)
        assert torch.equal(again.predict_logits(texts), ended)

    def test_a_tracker_the_checkpoint_has_no_record_of_is_said(self, tiny_csv_dir, tiny_tokenizer, tiny_model_dir,
                                                              tmp_path):
        from fastai.callback.tracker import SaveModelCallback
        make = partial(self._scripted_learner, tiny_csv_dir, tiny_tokenizer, tiny_model_dir, scores=[0.5, 0.9, 0.3])
        quiet_fit(make(tmp_path / "out"), 3, lr=1e-3, checkpoint=True, cbs=[StopAfterEpoch(0)])
        folder = tmp_path / "out" / "checkpoints" / "last"
        with pytest.warns(UserWarning) as seen:
            quiet_fit(make(tmp_path / "out"), 3, lr=1e-3, resume=True, cbs=[SaveModelCallback(monitor="scripted")])
        assert [str(w.message) for w in seen if "no record" in str(w.message)] == [
            f"resume=True: the checkpoint in {str(folder)!r} has no record of SaveModelCallback(monitor='scripted') (it "
            "was not in the interrupted fit, or the checkpoint predates tracker records), so it compares only the "
            "resumed epochs"]

    @pytest.mark.parametrize("bs,accumulate", [(16, 1), (16, 2), (20, 2)])
    def test_resume_in_the_same_learner_after_a_stop_mid_epoch(self, tiny_csv_dir, tiny_tokenizer, tiny_model_dir,
                                                              tmp_path, bs, accumulate):
        # a Ctrl-C in a notebook, then fit(resume=True) on the same learner: the stopped step's gradients were
        # still on the parameters and went into the resumed first step
        from fastai.callback.core import Callback, CancelFitException

        from bertlearn import BertDataBunch

        def make(out):
            db = BertDataBunch.from_csv(tiny_csv_dir, tiny_tokenizer, bs=bs, maxlen=64, seed=3, device="cpu")
            return BertLearner.from_pretrained_model(db, str(tiny_model_dir), None, "cpu", None, output_dir=out, seed=3,
                                                     grad_accumulation_steps=accumulate)

        class StopMidEpoch(Callback):
            def after_backward(self):
                if self.epoch == 1 and self.iter == 2:
                    raise CancelFitException()

        whole = make(tmp_path / "whole")
        quiet_fit(whole, 3, lr=1e-3)
        learner = make(tmp_path / "resumed")
        quiet_fit(learner, 3, lr=1e-3, checkpoint=True, cbs=[StopMidEpoch()])
        assert any(p.grad is not None and p.grad.abs().sum() > 0 for p in learner.model.parameters())
        quiet_fit(learner, 3, lr=1e-3, resume=True)
        texts = ["good fun", "the acting was poor"]
        assert torch.allclose(learner.predict_logits(texts), whole.predict_logits(texts), atol=1e-6)

    @staticmethod
    def accumulating(tiny_csv_dir, tiny_tokenizer, tiny_model_dir, out, bs=20, **kwargs):
        from bertlearn import BertDataBunch
        db = BertDataBunch.from_csv(tiny_csv_dir, tiny_tokenizer, bs=bs, maxlen=64, seed=3, device="cpu")
        return BertLearner.from_pretrained_model(db, str(tiny_model_dir), None, "cpu", None, output_dir=out, seed=3,
                                                 grad_accumulation_steps=2, **kwargs)

    def test_a_second_interruption_after_a_resume_keeps_the_accumulated_gradients(self, tiny_csv_dir, tiny_tokenizer,
                                                                                 tiny_model_dir, tmp_path):
        # fastai's start_epoch ran the skipped epochs' after_epoch: the checkpoint was rewritten for them with
        # epochs_done going backwards and none of the accumulated gradients (not yet restored), so a second stop
        # and resume lost them
        import json

        from fastai.callback.core import Callback, CancelFitException

        class Stop(Callback):
            order = 100  # after the checkpoint is written

            def __init__(self, epoch, batch=None):
                self.at = (epoch, batch)

            def after_epoch(self):
                if self.at == (self.epoch, None):
                    raise CancelFitException()

            def after_backward(self):
                if self.at == (self.epoch, self.iter):
                    raise CancelFitException()

        make = lambda out: self.accumulating(tiny_csv_dir, tiny_tokenizer, tiny_model_dir, out)  # noqa: E731
        whole = make(tmp_path / "whole")
        quiet_fit(whole, 3, lr=1e-3)
        quiet_fit(make(tmp_path / "cut"), 3, lr=1e-3, checkpoint=True, cbs=[Stop(0)])
        state = tmp_path / "cut" / "checkpoints" / "last" / "state.json"
        assert json.loads(state.read_text())["accumulated"] == 1  # 5 batches: epoch 1 ends half-way through a step
        quiet_fit(make(tmp_path / "cut"), 3, lr=1e-3, resume=True, cbs=[Stop(1, 2)])
        assert json.loads(state.read_text())["epochs_done"] == 1  # not rewritten by the skipped epoch
        again = make(tmp_path / "cut")
        quiet_fit(again, 3, lr=1e-3, resume=True)
        texts = ["good fun", "the acting was poor"]
        assert torch.allclose(again.predict_logits(texts), whole.predict_logits(texts), atol=1e-6)

    @pytest.mark.parametrize("processes", [1, 2])
    def test_a_checkpoint_that_counted_rows_resumes_in_batches(self, tiny_csv_dir, tiny_tokenizer, tiny_model_dir,
                                                               tmp_path, processes):
        # checkpoints written before accumulation counted batches hold rows (of the global batch under DDP)
        import json

        from fastai.callback.core import Callback, CancelFitException

        from bertlearn.callbacks import StepAccumulation
        from bertlearn.checkpoint import load_checkpoint

        Stop = partial(StopAfterEpoch, 0)  # noqa: N806

        make = lambda out: self.accumulating(tiny_csv_dir, tiny_tokenizer, tiny_model_dir, out)  # noqa: E731
        whole = make(tmp_path / "whole")
        quiet_fit(whole, 3, lr=1e-3)
        quiet_fit(make(tmp_path / "cut"), 3, lr=1e-3, checkpoint=True, cbs=[Stop()])
        folder = tmp_path / "cut" / "checkpoints" / "last"
        state = json.loads((folder / "state.json").read_text())
        assert (state["accumulated"], state["accumulated_unit"]) == (1, "batches")
        del state["accumulated_unit"], state["steps_done"]
        state["accumulated"] = 20 * processes  # one batch of 20 rows on each rank, as the old count had it
        state["identity"]["processes"] = processes
        (folder / "state.json").write_text(json.dumps(state))
        learner = make(tmp_path / "cut")
        load_checkpoint(learner, folder)
        assert next(cb for cb in learner.cbs if isinstance(cb, StepAccumulation)).resume_count == 1
        if processes == 1:
            resumed = make(tmp_path / "cut")
            quiet_fit(resumed, 3, lr=1e-3, resume=True)
            texts = ["good fun", "the acting was poor"]
            assert torch.allclose(resumed.predict_logits(texts), whole.predict_logits(texts), atol=1e-6)

    def test_a_resume_into_another_freeze_is_refused(self, tiny_csv_dir, tiny_tokenizer, tiny_model_dir, tmp_path):
        # freeze_transformer_layers freezes the encoder's LayerNorms and pooler, fastai's freeze() of the same
        # groups does not: the same frozen groups, another run
        from bertlearn import BertDataBunch

        def make(**options):
            db = BertDataBunch.from_csv(tiny_csv_dir, tiny_tokenizer, bs=16, maxlen=64, seed=3, device="cpu")
            return BertLearner.from_pretrained_model(db, str(tiny_model_dir), None, "cpu", None, output_dir=tmp_path,
                                                     seed=3, **options)

        quiet_fit(make(freeze_transformer_layers=True), 2, lr=1e-3, checkpoint=True)
        other = make()
        other.freeze()
        with pytest.raises(BertLearnError, match=r"belongs to another run \(frozen_tensors: 39 in the checkpoint, "
                                                 r"\d+ now\)"):
            quiet_fit(other, 2, lr=1e-3, resume=True)

    def test_fastai_trackers_and_loggers_see_only_the_resumed_epochs(self, tiny_csv_dir, tiny_tokenizer,
                                                                     tiny_model_dir, tmp_path):
        # SaveModelCallback / EarlyStoppingCallback read the skipped epochs' empty rows and failed; TensorBoard
        # restarted its steps at 0 on top of the first epochs' points
        from fastai.callback.core import Callback, CancelFitException
        from fastai.callback.tracker import EarlyStoppingCallback, SaveModelCallback

        Stop = partial(StopAfterEpoch, 0)  # noqa: N806

        class Writer:
            def __init__(self):
                self.points = []

            def add_scalar(self, tag, value, step):
                self.points.append((tag, step))

            def flush(self):
                pass

        def board():
            return TensorBoardLogger(writer=Writer(), every=1)

        make = lambda out: self.accumulating(tiny_csv_dir, tiny_tokenizer, tiny_model_dir, out)  # noqa: E731
        whole, whole_board = make(tmp_path / "whole"), board()
        quiet_fit(whole, 3, lr=1e-3, cbs=[whole_board])
        quiet_fit(make(tmp_path / "cut"), 3, lr=1e-3, checkpoint=True, cbs=[Stop()])
        resumed, resumed_board = make(tmp_path / "cut"), board()
        quiet_fit(resumed, 3, lr=1e-3, resume=True,
                  cbs=[SaveModelCallback(monitor="valid_loss", fname="best"),
                       EarlyStoppingCallback(monitor="valid_loss", patience=5), resumed_board])
        assert len(resumed.recorder.values) == 2 and all(resumed.recorder.values)
        # epoch 1 is 5 batches, 2 optimizer steps (of 2 batches) and half of one: points are at optimizer steps
        tail = [p for p in whole_board.writer.points if p[1] > 5 // 2]
        assert resumed_board.writer.points == tail and tail

    def test_a_finished_resume_drops_the_step_left_part_way(self, tiny_csv_dir, tiny_tokenizer, tiny_model_dir,
                                                            tmp_path):
        # the finished fit's last step part-way accumulated went into the next, unrelated fit's first step
        make = lambda: self.accumulating(tiny_csv_dir, tiny_tokenizer, tiny_model_dir, tmp_path)  # noqa: E731
        from bertlearn.callbacks import StepAccumulation
        quiet_fit(make(), 3, lr=1e-3, checkpoint=True)  # 15 batches: ends half-way through a step
        weights = []
        for clear in (False, True):  # the resume restores the RNG states, so each fit starts from the same ones
            learner = make()
            with pytest.warns(UserWarning, match="has finished all 3 epochs"):
                quiet_fit(learner, 3, lr=1e-3, resume=True)
            if clear:  # what a new fit after a finished one starts from
                acc = next(cb for cb in learner.cbs if isinstance(cb, StepAccumulation))
                acc.resume_count, acc.resume_grads = 0, {}
            quiet_fit(learner, 1, lr=1e-4, schedule_type="none")
            weights.append([p.detach().clone() for p in learner.model.parameters()])
        assert all(torch.equal(a, b) for a, b in zip(*weights))

    def test_fit_returns_optimizer_steps_of_the_whole_fit(self, tiny_csv_dir, tiny_tokenizer, tiny_model_dir,
                                                          tmp_path):
        # fast-bert's global_step: it was this call's batches (10 for 5 steps of 2 batches; 5 after a resume of a
        # 15-step fit)
        from fastai.callback.core import Callback, CancelFitException

        Stop = partial(StopAfterEpoch, 1)  # noqa: N806

        make = lambda out: self.accumulating(tiny_csv_dir, tiny_tokenizer, tiny_model_dir, out, bs=16)  # noqa: E731
        learner = make(tmp_path / "a")
        assert quiet_fit(learner, 2, lr=1e-3)[0] == 6  # 2 epochs of 6 batches, a step every 2
        quiet_fit(make(tmp_path / "b"), 3, lr=1e-3, checkpoint=True, cbs=[Stop()])
        assert quiet_fit(make(tmp_path / "b"), 3, lr=1e-3, resume=True)[0] == 9

    @pytest.mark.parametrize("schedule", ["warmup_linear", "warmup_cosine", "warmup_cosine_hard_restarts"])
    def test_warmup_schedules_follow_transformers_with_a_short_last_batch(self, tiny_csv_dir, tiny_tokenizer,
                                                                         tiny_model_dir, tmp_path, schedule):
        # 96 rows in batches of 20 end with a batch of 16: accumulation counted rows, so its steps fell on other
        # batches than the schedule assumed (a warm-up step skipped, the decay never finished)
        from transformers import (get_cosine_schedule_with_warmup, get_cosine_with_hard_restarts_schedule_with_warmup,
                                  get_linear_schedule_with_warmup)
        from fastai.callback.core import Callback
        learner = self.accumulating(tiny_csv_dir, tiny_tokenizer, tiny_model_dir, tmp_path, warmup_steps=2)
        steps = []

        class Rates(Callback):
            def before_step(self):  # after accumulation (order 6) let the step through
                steps.append(self.opt.hypers[0]["lr"])

        Rates.order = 90
        quiet_fit(learner, 3, lr=1e-3, schedule_type=schedule, cbs=[Rates()])
        make = {"warmup_linear": get_linear_schedule_with_warmup, "warmup_cosine": get_cosine_schedule_with_warmup,
                "warmup_cosine_hard_restarts": get_cosine_with_hard_restarts_schedule_with_warmup}[schedule]
        opt = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=1e-3)
        sched, expected = make(opt, 2, 7), []  # 15 batches, a step every 2: 7 steps
        for _ in range(7):
            expected.append(opt.param_groups[0]["lr"])
            opt.step()
            sched.step()
        assert steps == pytest.approx(expected, abs=1e-12)

    @pytest.mark.parametrize("option,before,after,named", [
        ("grad_accumulation_steps", 2, 4, "grad_accumulation_steps: 2 in the checkpoint, 4 now"),
        ("adam_epsilon", 1e-8, 1e-3, "adam_epsilon: 1e-08 in the checkpoint, 0.001 now"),
        ("max_grad_norm", 1.0, None, "max_grad_norm: 1.0 in the checkpoint, None now"),
        ("weight", None, [1.0, 5.0], "loss_weights: None in the checkpoint, {'weight': [1.0, 5.0]} now")])
    def test_a_resume_with_other_training_options_is_refused(self, tiny_csv_dir, tiny_tokenizer, tiny_model_dir,
                                                             tmp_path, option, before, after, named):
        # each resumed silently before: another accumulation dropped the saved gradients, another epsilon kept the
        # checkpoint's in the restored optimizer
        from bertlearn import BertDataBunch

        def make(value):
            db = BertDataBunch.from_csv(tiny_csv_dir, tiny_tokenizer, bs=16, maxlen=64, seed=3, device="cpu")
            options = {} if value is None and option == "weight" else {option: value}
            return BertLearner.from_pretrained_model(db, str(tiny_model_dir), None, "cpu", None, output_dir=tmp_path,
                                                     seed=3, **options)

        quiet_fit(make(before), 2, lr=1e-3, checkpoint=True)
        with pytest.raises(BertLearnError, match=r"^resume=True: the checkpoint in '.*last' belongs to another run \("
                                                 + re.escape(named) + r"\); resume with the same model"):
            quiet_fit(make(after), 2, lr=1e-3, resume=True)

    def test_resume_with_another_schedule_is_refused(self, tiny_learner):
        quiet_fit(tiny_learner, 1, lr=1e-4, checkpoint=True)
        with pytest.raises(BertLearnError, match=r"belongs to fit\(1, lr=0.0001\), not fit\(2, lr=0.0001\)"):
            tiny_learner.fit(2, lr=1e-4, resume=True)

    def test_resume_without_checkpoint_warns(self, tiny_learner):
        with pytest.warns(UserWarning, match="resume=True but there is no checkpoint"):
            quiet_fit(tiny_learner, 1, lr=1e-4, resume=True)

    def test_corrupt_checkpoint_is_reported(self, tiny_learner):
        quiet_fit(tiny_learner, 1, lr=1e-4, checkpoint=True)
        weights = tiny_learner.output_dir / "checkpoints" / "last" / "model.safetensors"
        weights.write_bytes(weights.read_bytes()[: 100])
        with pytest.raises(BertLearnError, match=r"cannot be read .* delete it to start over"):
            tiny_learner.fit(1, lr=1e-4, resume=True)


class TestResumeRefusesAnotherRun:
    """A resume whose checkpoint belongs to other labels, another model, other data or other fit settings is refused
    before anything is restored: weights, optimizer and RNG stay as they were."""

    @staticmethod
    def make(tiny_csv_dir, tiny_tokenizer, model_dir, out, *, labels=None, bs=16):
        from bertlearn import BertDataBunch
        db = BertDataBunch.from_csv(tiny_csv_dir, tiny_tokenizer, bs=bs, maxlen=64, seed=3, device="cpu",
                                    **({"labels": labels} if labels else {}))
        return BertLearner.from_pretrained_model(db, str(model_dir), None, "cpu", None, output_dir=out, seed=3)

    @staticmethod
    def untouched(learner, before_weights, before_rng):
        assert all(torch.equal(v, before_weights[k]) for k, v in learner.model.state_dict().items())
        assert learner.opt is None and torch.equal(torch.get_rng_state(), before_rng)

    def refused(self, learner, match, *args, **kwargs):
        weights = {k: v.clone() for k, v in learner.model.state_dict().items()}
        rng = torch.get_rng_state()
        with pytest.raises(BertLearnError, match=match):
            quiet_fit(learner, *args, resume=True, **kwargs)
        self.untouched(learner, weights, rng)

    def test_labels_in_another_order(self, tiny_csv_dir, tiny_tokenizer, tiny_model_dir, tmp_path):
        quiet_fit(self.make(tiny_csv_dir, tiny_tokenizer, tiny_model_dir, tmp_path), 2, lr=1e-3, checkpoint=True)
        swapped = self.make(tiny_csv_dir, tiny_tokenizer, tiny_model_dir, tmp_path, labels=["positive", "negative"])
        self.refused(swapped, r"^resume=True: the checkpoint in '.*last' was trained for single_label_classification "
                              r"on labels \['negative', 'positive'\]; this learner has single_label_classification on "
                              r"\['positive', 'negative'\], so its head's rows would answer with the wrong labels\. "
                              r"Resume with the same labels in the same order, or delete the folder to start over$",
                     2, lr=1e-3)

    def test_another_split_of_the_same_rows(self, tiny_csv_dir, tiny_model_dir, tmp_path):
        # a valid_pct split drew OS entropy every run, and the checkpoint compared only the row count: the resumed
        # fit trained on rows the first run had validated on
        from bertlearn import BertDataBunch

        def make(**seed):
            db = BertDataBunch.from_csv(tiny_csv_dir, str(tiny_model_dir), val_file=None, valid_pct=0.25, bs=16,
                                        maxlen=64, device="cpu", **seed)
            return BertLearner.from_pretrained_model(db, str(tiny_model_dir), None, "cpu", None, output_dir=tmp_path)

        np.random.seed(5)
        first = make()
        quiet_fit(first, 2, lr=1e-3, checkpoint=True)
        np.random.seed(5)  # numpy's global state draws the split when the databunch has no seed
        assert make().dls.train.dataset.texts.tolist() == first.dls.train.dataset.texts.tolist()
        other = make(seed=1)
        assert len(other.dls.train.dataset) == len(first.dls.train.dataset)
        self.refused(other, r"^resume=True: the checkpoint in '.*last' was trained on other rows than this learner's "
                            r"72 training rows \(the same count, other texts or labels: an edited file, or a valid_pct "
                            r"split drawn again: without the databunch's seed= it follows numpy's global random "
                            r"state\); resume with the same training data \(pass seed= to the databunch\), or delete "
                            r"the folder to start over$", 2, lr=1e-3)

    def test_other_fit_settings_or_data(self, tiny_csv_dir, tiny_tokenizer, tiny_model_dir, tmp_path):
        quiet_fit(self.make(tiny_csv_dir, tiny_tokenizer, tiny_model_dir, tmp_path), 2, lr=1e-3, checkpoint=True)
        again = self.make(tiny_csv_dir, tiny_tokenizer, tiny_model_dir, tmp_path)
        self.refused(again, r"belongs to another run \(wd: 0\.01 in the checkpoint, 0\.5 now\); resume with the same "
                            r"model, data and fit settings", 2, lr=1e-3, wd=0.5)
        self.refused(again, r"\(schedule_type: 'one_cycle' in the checkpoint, 'warmup_linear' now; pct_start: 0\.25 in "
                            r"the checkpoint, 0\.0 now; one_cycle_options: \{'div': 25\.0, 'div_final': 100000\.0, "
                            r"'moms': \[0\.95, 0\.85, 0\.95\]\} in the checkpoint, \{\} now\)", 2, lr=1e-3,
                     schedule_type="warmup_linear")
        self.refused(again, r"\(pct_start: 0\.25 in the checkpoint, 0\.9 now\)", 2, lr=1e-3, pct_start=0.9)
        self.refused(again, r"\(one_cycle_options: \{'div': 25\.0, 'div_final': 100000\.0, 'moms': \[0\.95, 0\.85, "
                            r"0\.95\]\} in the checkpoint, \{'div': 10\.0, 'div_final': 100000\.0, 'moms': \[0\.95, "
                            r"0\.85, 0\.95\]\} now\)", 2, lr=1e-3, div=10.0)
        with pytest.raises(BertLearnError, match=r"^\['pct_start'\] set fastai's one-cycle schedule, which "
                                                 r"schedule_type='constant' does not run"):
            quiet_fit(again, 2, lr=1e-3, resume=True, schedule_type="constant", pct_start=0.3)
        assert again.opt is None  # refused before the resume restored anything
        other_bs = self.make(tiny_csv_dir, tiny_tokenizer, tiny_model_dir, tmp_path, bs=8)
        self.refused(other_bs, r"\(bs: 16 in the checkpoint, 8 now\)",
                     2, lr=1e-3)
        with pytest.warns(UserWarning, match="has finished all 2 epochs"):
            quiet_fit(again, 2, lr=1e-3, resume=True)  # the same run resumes (here: finished, so it says so)
        # the defaults given by value are the same run (before, pct_start=0.25 against None was refused)
        with pytest.warns(UserWarning, match="has finished all 2 epochs"):
            quiet_fit(again, 2, lr=1e-3, resume=True, schedule_type="one_cycle", pct_start=0.25, div=25.0,
                      div_final=1e5, moms=(0.95, 0.85, 0.95))
        # momenta as an array or a tensor are the same run (before, recording them raised a TypeError in every fit)
        for moms in (np.array([0.95, 0.85, 0.95]), torch.tensor([0.95, 0.85, 0.95], dtype=torch.float64)):
            with pytest.warns(UserWarning, match="has finished all 2 epochs"):
                quiet_fit(again, 2, lr=1e-3, resume=True, moms=moms)
        again.moms = np.array([0.95, 0.85, 0.95])
        with pytest.warns(UserWarning, match="has finished all 2 epochs"):
            quiet_fit(again, 2, lr=1e-3, resume=True)

    def test_another_warm_up_is_named(self, tiny_csv_dir, tiny_tokenizer, tiny_model_dir, tmp_path):
        first = self.make(tiny_csv_dir, tiny_tokenizer, tiny_model_dir, tmp_path)
        first.warmup_steps = 2
        quiet_fit(first, 2, lr=1e-3, checkpoint=True)
        steps = 2 * len(first.dls.train)
        again = self.make(tiny_csv_dir, tiny_tokenizer, tiny_model_dir, tmp_path)
        again.warmup_steps = 4
        # before, only "pct_start" was named, a setting this run was never given
        self.refused(again, rf"\(pct_start: {2 / steps!r} in the checkpoint, {4 / steps!r} now; warmup_steps: 2 in "
                            r"the checkpoint, 4 now; pct_start is the share of optimizer steps warmup_steps gives, "
                            r"which the number of steps per epoch and grad_accumulation_steps change\)", 2, lr=1e-3)
        again.warmup_steps = 2
        with pytest.warns(UserWarning, match="has finished all 2 epochs"):
            quiet_fit(again, 2, lr=1e-3, resume=True)

    def test_a_checkpoint_that_recorded_the_settings_as_given_is_checked_as_given(self, tiny_csv_dir, tiny_tokenizer,
                                                                                tiny_model_dir, tmp_path):
        import json
        quiet_fit(self.make(tiny_csv_dir, tiny_tokenizer, tiny_model_dir, tmp_path), 2, lr=1e-3, checkpoint=True)
        state_file = tmp_path / "checkpoints" / "last" / "state.json"
        state = json.loads(state_file.read_text())
        state["fit"] = {"schedule_type": None, "pct_start": None, "one_cycle_options": {}, "wd": 0.01,
                        "optimizer_type": "adamw", "frozen_groups": 0}  # as the previous release wrote it
        state_file.write_text(json.dumps(state))
        again = self.make(tiny_csv_dir, tiny_tokenizer, tiny_model_dir, tmp_path)
        self.refused(again, r"\(pct_start: None in the checkpoint, 0\.9 now\)", 2, lr=1e-3, pct_start=0.9)
        with pytest.warns(UserWarning, match="has finished all 2 epochs"):
            quiet_fit(again, 2, lr=1e-3, resume=True)

    def test_another_model_is_refused_before_any_weight_is_copied(self, tiny_csv_dir, tiny_tokenizer, tiny_model_dir,
                                                                   tmp_path):
        from transformers import BertConfig, BertModel
        quiet_fit(self.make(tiny_csv_dir, tiny_tokenizer, tiny_model_dir, tmp_path), 1, lr=1e-3, checkpoint=True)
        config = BertConfig(vocab_size=len(tiny_tokenizer), hidden_size=32, num_hidden_layers=1,
                            num_attention_heads=4, intermediate_size=37)
        BertModel(config).save_pretrained(tmp_path / "one_layer")  # the same labels, one layer fewer
        other = self.make(tiny_csv_dir, tiny_tokenizer, tmp_path / "one_layer", tmp_path)
        # 16 tensors of the second layer, and the word embeddings (the tiny model has one row more than the tokenizer)
        self.refused(other, r"^checkpoint '.*last' holds another model's weights \(17 tensors differ: "
                            r"bert\.embeddings\.word_embeddings\.weight: \[81, 32\] in the checkpoint, \[80, 32\] here; "
                            r"bert\.encoder\.layer\.1\.attention\.output\.LayerNorm\.bias only in the checkpoint; .*\); "
                            r"resume with the model and labels that wrote it, or delete the folder to start over$",
                     1, lr=1e-3)

    def test_a_lamb_run_resumes_to_the_uninterrupted_weights(self, tiny_csv_dir, tiny_tokenizer, tiny_model_dir,
                                                             tmp_path):
        from fastai.callback.core import CancelFitException, Callback

        class StopAfter(Callback):
            order = 100  # after the checkpoint is written
            def after_epoch(self):
                if self.epoch == 0:
                    raise CancelFitException()

        whole = self.make(tiny_csv_dir, tiny_tokenizer, tiny_model_dir, tmp_path / "whole")
        quiet_fit(whole, 2, lr=1e-3, optimizer_type="lamb")
        cut = self.make(tiny_csv_dir, tiny_tokenizer, tiny_model_dir, tmp_path / "cut")
        quiet_fit(cut, 2, lr=1e-3, optimizer_type="lamb", checkpoint=True, cbs=[StopAfter()])
        resumed = self.make(tiny_csv_dir, tiny_tokenizer, tiny_model_dir, tmp_path / "cut")
        # fastai's own optimizer (hypers in an L); and another type than the learner's default, which fastai's fit
        # rebuilt after the state was restored
        quiet_fit(resumed, 2, lr=1e-3, optimizer_type="lamb", resume=True)
        texts = ["good fun", "the acting was poor"]
        assert torch.allclose(resumed.predict_logits(texts), whole.predict_logits(texts), atol=1e-6)

    def test_a_finished_checkpoint_says_nothing_was_trained(self, tiny_learner):
        quiet_fit(tiny_learner, 1, lr=1e-4, checkpoint=True)
        tiny_learner.fresh_head = True  # as a new learner starts
        with pytest.warns(UserWarning, match=r"resume=True: the checkpoint in '.*last' has finished all 1 epochs of "
                                             r"this fit, so nothing was trained; its weights are loaded"):
            # the finished fit's optimizer steps, as fit returned them
            assert quiet_fit(tiny_learner, 1, lr=1e-4, resume=True)[0] == len(tiny_learner.dls.train)
        assert tiny_learner.fresh_head is False

    def test_a_file_that_fails_after_the_checks_leaves_the_learner_as_it_was(self, tiny_csv_dir, tiny_tokenizer,
                                                                               tiny_model_dir, tmp_path):
        import json
        quiet_fit(self.make(tiny_csv_dir, tiny_tokenizer, tiny_model_dir, tmp_path), 2, lr=1e-3, checkpoint=True)
        folder = tmp_path / "checkpoints" / "last"
        state = json.loads((folder / "state.json").read_text())
        state["epochs_done"] = 1
        (folder / "state.json").write_text(json.dumps(state))
        (folder / "optimizer.pt").write_bytes((folder / "optimizer.pt").read_bytes()[:200])  # weights intact
        fresh = self.make(tiny_csv_dir, tiny_tokenizer, tiny_model_dir, tmp_path)
        self.refused(fresh, r"^checkpoint '.*last' cannot be read \(.*\); delete it to start over$", 2, lr=1e-3)

    def test_a_checkpoint_from_before_the_checks_resumes_saying_so(self, tiny_learner):
        import json
        quiet_fit(tiny_learner, 2, lr=1e-4, checkpoint=True)
        state_file = tiny_learner.output_dir / "checkpoints" / "last" / "state.json"
        state = json.loads(state_file.read_text())
        state["epochs_done"] = 1
        del state["identity"], state["fit"]
        state_file.write_text(json.dumps(state))
        with pytest.warns(UserWarning, match="was written by a bertlearn that did not record its labels, data and "
                                             "fit settings; resuming without checking them"):
            quiet_fit(tiny_learner, 2, lr=1e-4, resume=True)


def test_maxlen_above_the_models_positions_is_clipped_with_a_warning(tiny_tokenizer, tiny_model_dir, tmp_path):
    from transformers import BertConfig, BertModel

    from bertlearn import BertDataBunch
    from conftest import make_texts

    config = BertConfig(vocab_size=len(tiny_tokenizer), hidden_size=32, num_hidden_layers=1, num_attention_heads=4,
                        intermediate_size=37, max_position_embeddings=16)
    BertModel(config).save_pretrained(tmp_path / "short")
    df = make_texts(40)
    db = BertDataBunch.from_df(df, df, tiny_tokenizer, maxlen=64, bs=8, device="cpu")
    assert db.train.dataset.lengths.max() > 16
    with pytest.warns(UserWarning, match=r"^maxlen=64 exceeds the model's max_position_embeddings=16; cutting texts "
                      r"to 16 tokens \(build the BertDataBunch with maxlen<=16 to choose how; the cut is the "
                      r"databunch's own, which a learner built on it later gets too\)$"):
        learner = BertLearner.from_pretrained_model(db, str(tmp_path / "short"), None, "cpu", None)
    ds = db.train.dataset
    assert learner.dls is db and ds.lengths.max() == 16 and ds.ids.shape[1] == 16
    long = ds.ids[np.flatnonzero(ds.lengths == 16), :16]
    assert (long[:, 15] == tiny_tokenizer.sep_token_id).all() and (long[:, 0] == tiny_tokenizer.cls_token_id).all()
    for ids, mask, _ in db.train:
        assert ids.shape[1] <= 16
    quiet_fit(learner, 1, lr=1e-4)
    assert len(learner.predict_batch([" ".join(["good"] * 40)])) == 1
    # a second learner on the cut databunch, whose model takes 512 positions, trained, saved (maxlen 16) and
    # predicted on 16 tokens without a word: said now
    with pytest.warns(UserWarning, match=r"^this BertDataBunch's texts were cut to 16 tokens for an earlier learner's "
                      r"model \(max_position_embeddings=16\), and this model takes more, but is given them cut; "
                      r"build the BertDataBunch again \(maxlen=64\) to train it on the whole texts$"):
        BertLearner.from_pretrained_model(db, str(tiny_model_dir), None, "cpu", None, output_dir=tmp_path / "w")
    import warnings
    with warnings.catch_warnings(record=True) as seen:  # another learner of the short model: nothing to say
        warnings.simplefilter("always")
        BertLearner.from_pretrained_model(db, str(tmp_path / "short"), None, "cpu", None, output_dir=tmp_path / "s")
    assert not [w for w in seen if "were cut to" in str(w.message)]

def test_freeze_transformer_layers_trains_nothing_of_the_encoder(tiny_databunch, tiny_model_dir, tmp_path):
    # fast-bert froze every encoder parameter; fastai's freeze() kept the LayerNorms (train_bn) and the pooler
    # (in the head group) training, so the "frozen" encoder drifted
    learner = BertLearner.from_pretrained_model(tiny_databunch, str(tiny_model_dir), None, "cpu", None,
                                                output_dir=tmp_path, freeze_transformer_layers=True)
    before = {n: p.detach().clone() for n, p in learner.model.named_parameters()}
    quiet_fit(learner, 1, lr=1e-2)
    base = {f"{learner.model.base_model_prefix}.{n}" for n, _ in learner.model.base_model.named_parameters()}
    changed = {n for n, p in learner.model.named_parameters() if not torch.equal(p, before[n])}
    assert changed == {"classifier.weight", "classifier.bias"} and not changed & base
    learner.unfreeze()
    assert all(p.requires_grad for p in learner.model.parameters())
    learner.freeze()  # fastai's own again: its LayerNorms train (train_bn)
    norms = [p for m in learner.model.base_model.modules() if isinstance(m, torch.nn.LayerNorm) for p in m.parameters()]
    assert norms and all(p.requires_grad for p in norms)


@pytest.mark.parametrize("option", [{"truncation": "tail"}, {"long_text": "sliding_window", "stride": 4},
                                    {"text_col": ["text", "text_b"]}])
def test_a_cut_that_would_not_keep_tail_or_windows_is_refused(tiny_tokenizer, tmp_path, option):
    # cutting the encoded rows keeps their first tokens: training read the middle of a text where prediction read
    # its tail, windows stepped for maxlen 64 left tokens unseen, and a pair lost its second text whole where
    # prediction cut both
    from transformers import BertConfig, BertModel

    from bertlearn import BertDataBunch
    from conftest import make_texts
    BertModel(BertConfig(vocab_size=max(tiny_tokenizer.get_vocab().values()) + 1, hidden_size=32,
                         num_hidden_layers=1, num_attention_heads=4, intermediate_size=37,
                         max_position_embeddings=16)).save_pretrained(tmp_path / "short")
    df = make_texts(40)
    df["text_b"] = df["text"].str[::-1]
    db = BertDataBunch.from_df(df, df, tiny_tokenizer, maxlen=64, bs=8, device="cpu", **option)
    what = ("truncation='tail'" if "truncation" in option else "long_text='sliding_window'" if "long_text" in option
            else "a sentence pair (prediction cuts both texts, longest first)")
    with pytest.raises(DataError) as e:
        BertLearner.from_pretrained_model(db, str(tmp_path / "short"), None, "cpu", None)
    assert str(e.value) == (f"maxlen=64 exceeds the model's max_position_embeddings=16, and cutting the encoded rows "
                            f"to 16 tokens keeps their first tokens, which {what} does not; build the BertDataBunch "
                            "with maxlen<=16")


def test_a_roberta_position_table_is_clipped_to_the_tokens_it_holds(tmp_path):
    # RoBERTa counts positions from padding_idx + 1, so 18 places hold 16 tokens; before, maxlen was cut to 18
    # and a long text crashed in the position lookup
    import transformers as T

    from bertlearn import BertDataBunch
    from conftest import build_tiny_architecture, make_texts
    folder = build_tiny_architecture("roberta", tmp_path / "roberta")
    config = T.AutoConfig.from_pretrained(folder)
    config.max_position_embeddings = 18
    T.AutoModel.from_config(config).save_pretrained(tmp_path / "short")
    tok = T.AutoTokenizer.from_pretrained(folder)
    df = make_texts(40)
    db = BertDataBunch.from_df(df, df, tok, maxlen=64, bs=8, device="cpu")
    with pytest.warns(UserWarning, match=r"^maxlen=64 exceeds the model's max_position_embeddings=18, of which its "
                                         r"position table holds 16 tokens; cutting texts to 16 tokens \(build the "
                                         r"BertDataBunch with maxlen<=16 to choose how; the cut is the databunch's "
                                         r"own, which a learner built on it later gets too\)$"):
        learner = BertLearner.from_pretrained_model(db, str(tmp_path / "short"), None, "cpu", None)
    assert db.train.dataset.lengths.max() == 16
    quiet_fit(learner, 1, lr=1e-4)
    assert len(learner.predict_batch([" ".join(["good"] * 40)])) == 1


def test_gradient_checkpointing_trains_to_the_same_weights(tiny_csv_dir, tiny_tokenizer, tiny_model_dir, tmp_path):
    import pandas as pd
    from bertlearn import BertDataBunch
    weights = []
    for checkpointing in (False, True):
        db = BertDataBunch.from_df(pd.read_csv(tiny_csv_dir / "train.csv"), pd.read_csv(tiny_csv_dir / "val.csv"),
                                   tiny_tokenizer, bs=16, maxlen=64, device="cpu", seed=0)
        learner = BertLearner.from_pretrained_model(db, str(tiny_model_dir), None, "cpu", None, seed=0,
                                                    output_dir=tmp_path / str(checkpointing),
                                                    gradient_checkpointing=checkpointing)
        flag = getattr(type(learner.model), "is_activation_checkpointing", None)
        assert (learner.model.is_activation_checkpointing if flag is not None
                else learner.model.is_gradient_checkpointing) == checkpointing
        quiet_fit(learner, 1, lr=1e-3)
        weights.append(learner.model.state_dict())
    for name in weights[0]:
        torch.testing.assert_close(weights[0][name], weights[1][name], atol=1e-6, rtol=1e-5)


class TestFastBertFlow:
    """fast-bert's calls that have a meaning here do it; the ones that cannot are named once."""

    def test_validate_reads_fast_berts_positional_order(self, trained_learner):
        """fast-bert's validate(quiet, loss_only, return_preds) by position was read as fastai's (ds_idx, dl, cbs):
        validate(False) scored the training set (ds_idx=0) and validate(True, True) took True for a loader."""
        with trained_learner.no_bar():
            on_valid = trained_learner.validate()
            on_train = trained_learner.validate(0)
            assert on_valid != on_train
            assert trained_learner.validate(False) == on_valid
            assert trained_learner.validate(True, True) == {"loss": on_valid["loss"]}
            results, logits = trained_learner.validate(True, False, True)
        assert results == on_valid and len(logits) == len(trained_learner.dls.valid_ds)

    @pytest.mark.parametrize("how", ["fit", "fit_one_cycle"])
    def test_one_cycle_under_accumulation_counts_optimizer_steps(self, tiny_model_dir, tmp_path, how):
        # before: fastai's position counted batches, so each step ran at its last batch's rate: with 4 batches a step
        # the first step ran at the peak (no warm-up) and the schedule's end was cut off
        from fastai.callback.schedule import combined_cos
        db = BertDataBunch.from_df(make_texts(96, seed=5), make_texts(32, seed=6), str(tiny_model_dir), bs=16,
                                   maxlen=32, device="cpu")
        learn = BertLearner.from_pretrained_model(db, str(tiny_model_dir), device="cpu", output_dir=tmp_path,
                                                  grad_accumulation_steps=4, max_grad_norm=None)

        class Rates(Callback):
            order = 99  # after the accumulation callback: only real steps come here

            def before_fit(self):
                self.rates = []

            def before_step(self):
                self.rates.append(self.opt.hypers[-1]["lr"])

        rates = Rates()
        with learn.no_bar(), learn.no_logging():
            if how == "fit":
                learn.fit(2, lr=1e-3, cbs=[rates])
            else:
                learn.fit_one_cycle(2, lr_max=1e-3, cbs=[rates])
        steps = 2 * len(db.train) // 4
        want = combined_cos(0.25, 1e-3 / 25, 1e-3, 1e-3 / 1e5)  # fastai's div=25, div_final=1e5
        assert rates.rates == pytest.approx([float(want(k / steps)) for k in range(steps)], rel=1e-6)

    def test_a_refused_fit_does_not_leave_the_optimizer_switched_but_unbuilt(self, tiny_learner):
        # before: the switch came before fit's checks; a refused fit(optimizer_type='lamb') left 'lamb' named and
        # AdamW stepping, and the next fit(optimizer_type='lamb') saw nothing to change
        quiet_fit(tiny_learner, 1, lr=1e-4)
        with pytest.raises(BertLearnError, match=r"^lr='2e-5x' is not a number"):
            tiny_learner.fit(1, lr="2e-5x", optimizer_type="lamb")
        with tiny_learner.no_bar(), tiny_learner.no_logging():
            tiny_learner.fit_one_cycle(1, 1e-4)  # fastai's path (ParamScheduler) builds the type named too
        assert "lamb_step" in [getattr(c, "func", c).__name__ for c in tiny_learner.opt.cbs]

    def test_metrics_empty_list_means_none(self, tiny_databunch, tiny_model_dir):
        # fast-bert's metrics=[] scored nothing; it gave the task's default metrics here
        from fastai.callback.tracker import SaveModelCallback
        learn = BertLearner.from_pretrained_model(tiny_databunch, str(tiny_model_dir), metrics=[], device="cpu")
        assert learn.metrics == []
        quiet_fit(learn, 1, lr=1e-4)
        assert list(learn.validate(quiet=True)) == ["loss"]
        # a tracker on a value nobody reports failed inside fastai as "IndexError: tuple index out of range"
        with pytest.raises(BertLearnError) as e:
            learn.fit(1, lr=1e-4, cbs=[SaveModelCallback(monitor="accuracy")])
        assert str(e.value) == ("SaveModelCallback(monitor='accuracy'): this learner reports no such value; it "
                                "reports ['train_loss', 'valid_loss'] (metrics=[] scores the loss alone): monitor one "
                                "of them, or give the learner that metric")
        assert [m.name for m in BertLearner.from_pretrained_model(tiny_databunch, str(tiny_model_dir),
                                                                  device="cpu").metrics] == ["accuracy", "f1_macro"]

    def test_optimizer_type_in_fit_switches_the_optimizer(self, tiny_learner):
        from bertlearn.optim import DecayGroupsOptimWrapper
        quiet_fit(tiny_learner, 1, lr=1e-4)
        assert isinstance(tiny_learner.opt, DecayGroupsOptimWrapper)  # AdamW
        quiet_fit(tiny_learner, 1, lr=1e-4, optimizer_type="lamb")
        assert tiny_learner.optimizer_type == "lamb" and "lamb_step" in [getattr(c, "func", c).__name__ for c in tiny_learner.opt.cbs]
        with pytest.raises(BertLearnError, match=r"^optimizer_type='sgd' is not one of \['adamw', 'lamb'\]$"):
            tiny_learner.fit(1, lr=1e-4, optimizer_type="sgd")

    @pytest.mark.parametrize("schedule", ["warmup_cosine", "warmup_linear", "warmup_constant"])
    def test_warmup_schedules_by_hand(self, tiny_databunch, tiny_model_dir, tmp_path, schedule):
        import math
        learner = BertLearner.from_pretrained_model(tiny_databunch, str(tiny_model_dir), None, "cpu", None,
                                                    output_dir=tmp_path, warmup_steps=3)
        quiet_fit(learner, 2, lr=1e-3, schedule_type=schedule)
        n = 2 * len(learner.dls.train)  # 12 steps; step i runs at position i / n of the fit
        w = 3 / n
        after = {"warmup_cosine": lambda p: 0.5 * (1 + math.cos(math.pi * p)),
                 "warmup_linear": lambda p: 1 - p, "warmup_constant": lambda p: 1.0}[schedule]
        expected = [1e-3 * (i / n / w if i / n < w else after((i / n - w) / (1 - w))) for i in range(n)]
        assert learner.recorder.lrs == pytest.approx(expected, abs=1e-12)

    def test_warmup_steps_set_one_cycles_rise(self, tiny_databunch, tiny_model_dir, tmp_path):
        learner = BertLearner.from_pretrained_model(tiny_databunch, str(tiny_model_dir), None, "cpu", None,
                                                    output_dir=tmp_path, warmup_steps=9)
        quiet_fit(learner, 2, lr=1e-3)  # one-cycle over 12 steps, peaking where the warm-up ends
        lrs = learner.recorder.lrs
        assert max(range(len(lrs)), key=lrs.__getitem__) == 9 and lrs[9] == pytest.approx(1e-3)

    def test_bad_schedule_and_warmup(self, tiny_learner, tiny_databunch, tiny_model_dir):
        with pytest.raises(BertLearnError, match=r"^schedule_type='cosine' is not one of \['one_cycle', 'none', "
                                                 r"'constant', 'warmup_linear', 'warmup_cosine', "
                                                 r"'warmup_cosine_hard_restarts', 'warmup_constant'\] \(None: "
                                                 r"one-cycle\)$"):
            tiny_learner.fit(1, lr=1e-4, schedule_type="cosine")
        with pytest.raises(BertLearnError, match=r"^warmup_steps=-5 must be a whole number of steps >= 0 \(or None\)$"):
            BertLearner.from_pretrained_model(tiny_databunch, str(tiny_model_dir), None, "cpu", None, warmup_steps=-5)
        with pytest.raises(BertLearnError, match=r"^\['div', 'pct_start'\] set fastai's one-cycle schedule, which "
                                                 r"schedule_type='warmup_linear' does not run; leave them out, or use "
                                                 r"schedule_type=None \(one-cycle\)$"):
            tiny_learner.fit(1, lr=1e-4, schedule_type="warmup_linear", pct_start=0.1, div=10)

    @pytest.mark.parametrize("schedule", ["warmup_constant", "warmup_linear", "warmup_cosine"])
    def test_warmup_counts_optimizer_steps_under_gradient_accumulation(self, tiny_databunch, tiny_model_dir, tmp_path,
                                                                       schedule):
        # 12 batches are 6 optimizer steps, and step k runs at transformers' rate for step k (the rate of its last
        # batch); counted by batches, each step ran half a step late and the peak was never applied
        from transformers import (get_constant_schedule_with_warmup, get_cosine_schedule_with_warmup,
                                  get_linear_schedule_with_warmup)
        learner = BertLearner.from_pretrained_model(tiny_databunch, str(tiny_model_dir), None, "cpu", None,
                                                    output_dir=tmp_path, warmup_steps=3, grad_accumulation_steps=2)
        quiet_fit(learner, 2, lr=1e-3, schedule_type=schedule)
        make = {"warmup_constant": lambda o: get_constant_schedule_with_warmup(o, 3),
                "warmup_linear": lambda o: get_linear_schedule_with_warmup(o, 3, 6),
                "warmup_cosine": lambda o: get_cosine_schedule_with_warmup(o, 3, 6)}[schedule]
        opt = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=1e-3)
        sched, expected = make(opt), []
        for _ in range(6):
            expected.append(opt.param_groups[0]["lr"])
            opt.step()
            sched.step()
        assert learner.recorder.lrs[1::2] == pytest.approx(expected, abs=1e-12)  # each step's last batch
        assert learner.recorder.lrs[0::2] == learner.recorder.lrs[1::2]

    def test_a_warmup_longer_than_the_fit_never_reaches_the_peak(self, tiny_databunch, tiny_model_dir, tmp_path):
        learner = BertLearner.from_pretrained_model(tiny_databunch, str(tiny_model_dir), None, "cpu", None,
                                                    output_dir=tmp_path, warmup_steps=20)
        with pytest.warns(UserWarning, match=r"^warmup_steps=20 is longer than this fit's 12 optimizer steps \(2 "
                                             r"epochs of 6 batches\): the rate rises to 60% of lr by the fit's end, "
                                             r"as in transformers' schedules, and never decays$"):
            quiet_fit(learner, 2, lr=1e-3, schedule_type="warmup_linear")
        assert learner.recorder.lrs == pytest.approx([1e-3 * k / 20 for k in range(12)], abs=1e-12)

    def test_fast_bert_schedules_start_from_a_fresh_momentum(self, tiny_learner):
        # one-cycle leaves Adam's beta1 where its last batch put it; warmup_* and flat fits ran with it
        quiet_fit(tiny_learner, 1, lr=1e-4)
        assert tiny_learner.opt.hypers[0]["mom"] != 0.9
        for schedule in ("warmup_linear", "none"):
            quiet_fit(tiny_learner, 1, lr=1e-4, schedule_type=schedule)
            assert [h["mom"] for h in tiny_learner.opt.hypers] == [0.9] * len(tiny_learner.opt.hypers)

    def test_fast_bert_schedules_start_from_a_custom_optimizers_own_momentum(self, tiny_databunch, tiny_model_dir,
                                                                              tmp_path):
        # an opt_func whose signature has no `mom` default (PyTorch's AdamW through fastai's wrapper, beta1 0.8)
        # was reset to AdamW's usual 0.9
        from functools import partial
        from fastai.optimizer import OptimWrapper
        learner = BertLearner.from_pretrained_model(tiny_databunch, str(tiny_model_dir), None, "cpu", None,
                                                    output_dir=tmp_path,
                                                    opt_func=partial(OptimWrapper, opt=torch.optim.AdamW,
                                                                     betas=(0.8, 0.999)))
        quiet_fit(learner, 1, lr=1e-4)
        assert learner.opt.hypers[0]["mom"] != 0.8
        quiet_fit(learner, 1, lr=1e-4, schedule_type="warmup_cosine")
        assert [h["mom"] for h in learner.opt.hypers] == [0.8] * len(learner.opt.hypers)
        assert [g["betas"][0] for g in learner.opt.opt.param_groups] == [0.8] * len(learner.opt.opt.param_groups)

    def test_fastai_cbs_and_opt_func_go_to_the_learner(self, tiny_databunch, tiny_model_dir, tmp_path):
        # fastai's own names for callbacks and the optimizer (Python's "multiple values for keyword argument" before)
        from functools import partial
        from fastai.callback.core import Callback
        from fastai.optimizer import OptimWrapper

        class Count(Callback):
            batches = 0

            def after_batch(self):
                Count.batches += self.training

        learner = BertLearner.from_pretrained_model(tiny_databunch, str(tiny_model_dir), None, "cpu", None,
                                                    output_dir=tmp_path, cbs=Count(),
                                                    opt_func=partial(OptimWrapper, opt=torch.optim.SGD))
        quiet_fit(learner, 1, lr=1e-4)
        assert Count.batches == len(tiny_databunch.train) and isinstance(learner.opt.opt, torch.optim.SGD)
        with pytest.raises(BertLearnError, match=r"^BertLearner.from_pretrained_model: path='x': the learner's folder "
                                                 r"is output_dir; pass output_dir='x'$"):
            BertLearner.from_pretrained_model(tiny_databunch, str(tiny_model_dir), None, "cpu", None, path="x")

    def test_frozen_parameters_stay_put_after_a_fit_that_ended_mid_accumulation(self, tiny_databunch, tiny_model_dir,
                                                                                 tmp_path):
        # 6 batches a fit of 2 batches a step end on a whole step; 5 (bs 20) leave one batch's gradients behind,
        # which the next fit's first step applied to the parameters frozen in between
        from bertlearn import BertDataBunch
        db = BertDataBunch.from_df(make_texts(100, seed=1), make_texts(20, seed=2), tiny_databunch.encoder.tokenizer,
                                   bs=20, maxlen=64, device="cpu")
        learner = BertLearner.from_pretrained_model(db, str(tiny_model_dir), None, "cpu", None, output_dir=tmp_path,
                                                    grad_accumulation_steps=2)
        quiet_fit(learner, 1, lr=1e-4)
        learner.freeze()
        frozen = {n: p.detach().clone() for n, p in learner.model.named_parameters() if not p.requires_grad}
        quiet_fit(learner, 1, lr=1e-4)
        assert frozen and all(torch.equal(p, frozen[n]) for n, p in learner.model.named_parameters() if n in frozen)

    def test_lr_find_takes_fast_berts_arguments_and_plot_draws_it(self, tiny_learner):
        from bertlearn.optim import DecayGroupsOptimWrapper
        with pytest.raises(NotFittedError, match=r"^plot\(\) draws the learning-rate finder's curve: call "
                                                 r"learner.lr_find\(\) first$"):
            tiny_learner.plot()
        quiet_fit(tiny_learner, 1, lr=1e-4)
        import bertlearn.compat
        bertlearn.compat._said.discard("step_mode")
        with tiny_learner.no_bar(), pytest.warns(bertlearn.compat.FastBertCompatWarning,
                                                 match=r"step_mode='linear': fastai's lr_find sweeps the rate "
                                                       r"exponentially"):
            found = tiny_learner.lr_find(start_lr=1e-5, optimizer_type="lamb", num_iter=20, show_plot=False,
                                         step_mode="linear")
        lrs = tiny_learner.lr_find_results["lrs"]
        assert lrs[0] == pytest.approx(1e-5) and len(lrs) <= 20 and found.valley > 0
        ax = tiny_learner.plot(skip_start=2, skip_end=1)
        xs, ys = ax.lines[0].get_data()
        assert list(xs) == lrs[2:-1] and list(ys) == tiny_learner.lr_find_results["losses"][2:-1]
        assert ax.get_xscale() == "log" and ax.lines[1].get_xdata()[0] == pytest.approx(found.valley)
        quiet_fit(tiny_learner, 1, lr=1e-4)  # the sweep's Lamb was for the sweep only
        assert tiny_learner.optimizer_type == "adamw" and isinstance(tiny_learner.opt, DecayGroupsOptimWrapper)

    def test_lr_find_reads_fast_berts_positional_order(self, tiny_learner, monkeypatch):
        """fast-bert's lr_find(start_lr, end_lr, use_val_loss, optimizer_type, num_iter, step_mode) by position was
        read as num_it=1, stop_div='lamb', show_plot=100: a one-step sweep with the learner's own optimizer."""
        import matplotlib
        import bertlearn.compat
        import bertlearn.learner
        matplotlib.use("Agg")
        monkeypatch.setattr(bertlearn.compat, "_said", set())
        asked = []
        real = bertlearn.learner.opt_func_for
        monkeypatch.setattr(bertlearn.learner, "opt_func_for", lambda kind, eps: asked.append(kind) or real(kind, eps))
        with tiny_learner.no_bar(), pytest.warns(bertlearn.compat.FastBertCompatWarning,
                                                 match=r"use_val_loss=True: fastai's lr_find follows the smoothed "
                                                       r"training loss"):
            tiny_learner.lr_find(1e-5, 1e-3, True, "lamb", 6, "exp")
        swept = tiny_learner.lr_find_results["lrs"]
        assert asked == ["lamb"] and tiny_learner.optimizer_type == "adamw"
        with tiny_learner.no_bar():
            tiny_learner.lr_find(1e-5, 1e-3, num_it=6, show_plot=False)
        assert swept == tiny_learner.lr_find_results["lrs"] and len(swept) >= 6
        with tiny_learner.no_bar():
            tiny_learner.lr_find(1e-5, 1e-3, 9, True, False)  # fastai's order: num_it, stop_div, show_plot
        assert len(tiny_learner.lr_find_results["lrs"]) == len(swept) + 3

    def test_arguments_without_effect_are_named_once(self, tiny_databunch, tiny_model_dir, tmp_path, monkeypatch):
        import warnings

        import bertlearn.compat
        from bertlearn.compat import FastBertCompatWarning
        monkeypatch.setattr(bertlearn.compat, "_said", set())
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            for _ in range(2):
                BertLearner.from_pretrained_model(dataBunch=tiny_databunch, pretrained_path=str(tiny_model_dir),
                                                  device="cpu", output_dir=tmp_path, fp16_opt_level="O1",
                                                  loss_scale=0, model_type="bert", logging_steps=50)
        said = [str(w.message) for w in caught if w.category is FastBertCompatWarning]
        assert said == [
            "BertLearner.from_pretrained_model: fast-bert arguments without effect in bertlearn: fp16_opt_level='O1': "
            "apex optimisation levels do not apply: is_fp16=True uses PyTorch's autocast (bf16, or fp16 with dynamic "
            "loss scaling); model_type='bert': the architecture comes from the checkpoint's config.json, never from a "
            "name; logging_steps=50: validation runs once per epoch (fast-bert validated every logging_steps steps), "
            "and the training loss goes to TensorBoard every logging_steps steps only with log_dir= or a SummaryWriter "
            "as logger"]  # loss_scale=0 asks for nothing; the second call says nothing again


class TestHistory:
    def test_validation_prediction_and_interpretation_keep_the_fits_losses(self, tiny_learner):
        from bertlearn import ClassificationInterpretation
        quiet_fit(tiny_learner, 2, lr=1e-4)
        rec = tiny_learner.recorder
        losses, values = list(rec.losses), list(rec.values)
        assert len(losses) == 2 * len(tiny_learner.dls.train) and len(values) == 2
        tiny_learner.validate(quiet=True)
        with tiny_learner.no_bar():
            tiny_learner.get_preds()
            ClassificationInterpretation.from_learner(tiny_learner)
        assert list(rec.losses) == losses and list(rec.values) == values
        import matplotlib.pyplot as plt
        plt.close("all")
        rec.plot_loss(skip_start=0, with_valid=True)
        assert list(plt.gca().lines[0].get_ydata()) == [float(v) for v in losses]  # the fit's losses, all of them
        plt.close("all")


class TestValidationPredictions:
    def test_preds_of_the_shuffled_training_loader_are_in_dataset_order(self, trained_learner):
        # the training loader draws a new length-grouped order each pass: the logits were put back by another one
        texts = list(trained_learner.dls.train.dataset.texts)
        results, logits = trained_learner.validate(ds_idx=0, quiet=True, return_preds=True)
        assert trained_learner.dls.train.shuffle
        assert torch.allclose(logits, trained_learner.predict_logits(texts), atol=1e-5)
        targets = torch.as_tensor(trained_learner.dls.train.dataset.targets)
        assert float((logits.argmax(1) == targets).float().mean()) == pytest.approx(results["accuracy"], abs=1e-6)

    def test_preds_are_in_the_precision_the_metrics_were_computed_in(self, trained_learner, monkeypatch):
        import bertlearn.tasks.classification as classification
        seen = []
        monkeypatch.setattr(classification, "predict_logits", lambda m, dl, **kw: seen.append(kw) or torch.zeros(1))
        monkeypatch.setattr(type(trained_learner), "_amp_dtype", lambda self: torch.bfloat16)
        trained_learner.validation_predictions(trained_learner.dls.valid)
        assert seen == [{"amp_dtype": torch.bfloat16}]


class TestWatchdog:
    @pytest.mark.parametrize("every", [1e9, 0.0], ids=["at-epoch-end", "mid-epoch"])
    def test_a_nan_loss_stops_the_fit_with_an_error(self, tiny_learner, every):
        from bertlearn.callbacks import FitWatchdog
        next(cb for cb in tiny_learner.cbs if isinstance(cb, FitWatchdog)).every = every  # seconds between checks
        with torch.no_grad():
            tiny_learner.model.classifier.weight.fill_(float("nan"))
        with pytest.raises(BertLearnError) as e:
            quiet_fit(tiny_learner, 3, lr=2e-5)
        step = len(tiny_learner.dls.train) if every else 1  # the end of epoch 1, or the first check in it
        assert str(e.value).startswith(
            f"training stopped at step {step} (epoch 1 of 3): the training loss became nan. A learning rate too high "
            "for fine-tuning is the usual cause (it peaked at ")
        assert "learner.lr_find() suggests one" in str(e.value)
        assert tiny_learner.train_iter == step  # not the third epoch's end
        assert "forward" not in tiny_learner.model.__dict__ and len(tiny_learner.recorder.values) == 0

    def test_a_collapsed_classifier_is_named_after_the_epoch(self, tiny_learner):
        with torch.no_grad():
            tiny_learner.model.classifier.bias.copy_(torch.tensor([50.0, 0.0]))  # 'negative' for everything
        with pytest.warns(UserWarning) as caught:
            quiet_fit(tiny_learner, 2, lr=1e-7)
        valid = tiny_learner.dls.valid.dataset
        share = (valid.targets == 0).mean()
        said = [str(w.message) for w in caught if "collapsed" in str(w.message)]
        assert said == [f"epoch 1: the model predicts 'negative' for every one of the {len(valid)} validation texts "
                        f"({share:.0%} of which are 'negative'): it has collapsed onto one class. At a peak learning "
                        "rate of 1e-07, the usual cause is too little training yet: more epochs or more data "
                        "(learner.lr_find() checks the rate)"]  # once per fit, not every epoch

    def test_multi_label_rows_without_any_label_are_named(self, tiny_tokenizer, tiny_model_dir, tmp_path):
        from bertlearn import BertDataBunch
        from conftest import make_texts
        df = make_texts(48).assign(pos=lambda d: (d.label == "positive").astype(int),
                                   neg=lambda d: (d.label == "negative").astype(int))
        db = BertDataBunch.from_df(df, df, tiny_tokenizer, label_col=["pos", "neg"], multi_label=True, bs=16)
        learner = BertLearner.from_pretrained_model(db, str(tiny_model_dir), None, "cpu", None, output_dir=tmp_path)
        with torch.no_grad():
            learner.model.classifier.bias.fill_(-50.0)  # every sigmoid near 0
        with pytest.warns(UserWarning) as caught:
            quiet_fit(learner, 1, lr=1e-7)
        said = [str(w.message) for w in caught if "no label" in str(w.message)]
        assert said == ["epoch 1: 48 of the 48 validation texts get no label at the thresholds in use (0.5), though 48 "
                        "of them have at least one: the sigmoid outputs stay under the thresholds, as they do for rare "
                        "labels under plain BCE. Remedies: learner.tune_thresholds() after the fit, "
                        "pos_weight=\"balanced\" (weights each label's positives), more epochs"]

    def test_a_healthy_fit_says_nothing(self, trained_learner):
        import warnings
        with warnings.catch_warnings():
            warnings.simplefilter("error")
            quiet_fit(trained_learner, 1, lr=1e-6, validate=True)


class TestOutput:
    """What a newcomer sees: the learner's creation and a short fit, as printed."""

    def test_a_short_fit_prints_the_summary_and_one_row_per_epoch(self, tiny_csv_dir, tiny_tokenizer, tiny_model_dir,
                                                                   capfd):
        from bertlearn import BertDataBunch
        from bertlearn.callbacks import SparseProgressCallback
        logger = logging.getLogger("first-hour")
        handler = logging.StreamHandler()  # a console logger, as fast-bert's examples set up
        logger.addHandler(handler)
        logger.setLevel(logging.INFO)
        import warnings
        try:
            with warnings.catch_warnings(record=True) as caught:  # counted below, not printed
                warnings.simplefilter("always")
                db = BertDataBunch(tiny_csv_dir, tiny_csv_dir, tiny_tokenizer, bs=16, maxlen=64, device="cpu")
                learner = BertLearner.from_pretrained_model(db, str(tiny_model_dir), None, "cpu", logger,
                                                            output_dir=tiny_csv_dir / "out")
                next(cb for cb in learner.cbs if isinstance(cb, SparseProgressCallback)).live = False
                learner.fit(2, lr=5e-5)
        finally:
            logger.removeHandler(handler)
        assert [str(w.message) for w in caught if "collapsed" not in str(w.message)] == []
        out, err = capfd.readouterr()
        lines = [line for line in (out + err).splitlines() if line.strip()]
        assert "LOAD REPORT" not in out + err and "MISSING" not in out + err and "Loading weights" not in out + err
        assert lines[0] == (f"bertlearn: new classification head with 2 outputs on the pretrained encoder of "
                            f"{tiny_model_dir}; training sets its weights")
        assert lines[1] == ("bertlearn: training on cpu, float32, eager steps; 2 epochs of 6 batches of 16; texts "
                            "tokenized by the tokenizers library")
        assert lines[2].split() == ["epoch", "train_loss", "valid_loss", "accuracy", "f1_macro", "time"]
        assert [line.split()[0] for line in lines[3:5]] == ["0", "1"]
        assert len(lines) == 5  # nothing else
        assert len(set(lines)) == len(lines)  # no line twice (the logger's epoch lines stay off the console)


def test_export_from_before_the_relayout_loads_predicts_and_trains(tmp_path):
    """An export written by bertlearn 0.1.0 at 699b797 (classes then in bertlearn.learner, bertlearn.store...)
    loads through load_learner, gives the logits it gave then, and keeps training and saving."""
    import json
    from pathlib import Path

    from bertlearn import BertLearner, load_learner
    fixture = Path(__file__).parent / "data"
    expected = json.loads((fixture / "export-0.1.0-699b797.json").read_text())
    learner = load_learner(fixture / "export-0.1.0-699b797.pkl")
    assert type(learner) is BertLearner and type(learner).__module__ == "bertlearn.tasks.classification"
    np.testing.assert_allclose(learner.predict_logits(expected["texts"]), expected["logits"], atol=1e-5)
    learner.path = tmp_path
    from bertlearn import BertDataBunch
    learner.dls = BertDataBunch.from_df(make_texts(32), make_texts(16, seed=1), learner.dls.encoder.tokenizer,
                                        labels=list(learner.dls.vocab), bs=16, maxlen=64, device="cpu")
    quiet_fit(learner, 1, lr=1e-4)
    assert (learner.save_model(tmp_path / "model") / "config.json").is_file()


def test_a_loader_numbering_other_labels_is_refused_by_validate_get_preds_and_interpret(trained_learner,
                                                                                         tiny_model_dir):
    # a test file read with its own BertDataBunch numbers its labels by its own list: labels in another order (or a
    # class missing from the file) made every target index name another output: validate said accuracy 0.0 for a
    # model right on every row, and interpret's matrix put every row off the diagonal
    from bertlearn import BertDataBunch, DataError
    df = make_texts(40, seed=7)
    other = BertDataBunch.from_df(df, df, str(tiny_model_dir), labels=["positive", "negative"], bs=16, maxlen=64,
                                  device="cpu")
    said = ("(dl=...): the loader's targets are labels ['positive', 'negative'], this learner's outputs are labels "
            "['negative', 'positive']: its target indices would be read as other outputs. Build the loader from this "
            "learner's data: learn.dls.test_dl(df, with_labels=True) (a DataFrame with the training columns, or "
            "(text, label) items)")
    for verb, call in (("validate", lambda: trained_learner.validate(dl=other.valid, quiet=True)),
                       ("get_preds", lambda: trained_learner.get_preds(dl=other.valid)),
                       ("interpret", lambda: trained_learner.interpret(dl=other.valid))):
        with pytest.raises(DataError) as e:
            call()
        assert str(e.value) == verb + said
    # the way the message gives scores the same rows right: accuracy as predict_batch's decisions give it
    right = trained_learner.validate(dl=trained_learner.dls.test_dl(df, with_labels=True), quiet=True)
    decided = [p[0][0] for p in trained_learner.predict_batch(list(df["text"]))]
    assert right["accuracy"] == pytest.approx(float(np.mean(np.array(decided) == df["label"].to_numpy())))
    assert right["accuracy"] > 0.9
    # a regression's one "label" is its target column's name, not a numbering: another file's column is accepted
    scores = df.assign(score=np.arange(len(df), dtype=np.float32) / 10)
    reg = BertLearner.from_pretrained_model(BertDataBunch.from_df(scores, scores, str(tiny_model_dir),
                                                                  label_col="score", regression=True, maxlen=64,
                                                                  device="cpu"), str(tiny_model_dir), device="cpu")
    rated = BertDataBunch.from_df(scores.rename(columns={"score": "rating"}), None, str(tiny_model_dir),
                                  label_col="rating", regression=True, maxlen=64, device="cpu", valid_pct=0.5)
    assert set(reg.validate(dl=rated.valid, quiet=True)) == {"loss", "mse", "pearson", "spearman"}
    # a databunch of the same labels in the same order is this learner's numbering: still accepted
    same = BertDataBunch.from_df(df, df, str(tiny_model_dir), bs=16, maxlen=64, device="cpu")
    assert trained_learner.validate(dl=same.valid, quiet=True)["accuracy"] == pytest.approx(right["accuracy"])


def test_a_tracker_of_a_lower_is_better_metric_keeps_the_lowest(tiny_tokenizer, tiny_model_dir, tmp_path):
    # before: fastai read monitor="mse" as higher-is-better (no "loss" in the name), so SaveModelCallback kept and
    # loaded the epoch with the highest error
    from fastai.callback.tracker import SaveModelCallback

    from bertlearn import BertDataBunch
    df = make_texts(32, seed=3)
    df["score"] = np.linspace(-1.0, 2.0, len(df))
    db = BertDataBunch.from_df(df, df, tiny_tokenizer, label_col="score", regression=True, bs=8, device="cpu")
    learner = BertLearner.from_pretrained_model(db, str(tiny_model_dir), None, "cpu", None, seed=0,
                                                output_dir=tmp_path)
    saver = SaveModelCallback(monitor="mse", fname="best")
    with pytest.warns(UserWarning, match=r"^SaveModelCallback\(monitor='mse'\): fastai reads a metric whose name "
                                         r"holds neither 'loss' nor 'error' as higher-is-better, so it would keep the "
                                         r"epoch with the highest mse; it is tracked as lower-is-better \(pass "
                                         r"comp=np.less to say so\)$"):
        quiet_fit(learner, 4, lr=1e-3, cbs=[saver])
    mses = [row[learner.recorder.metric_names[1:].index("mse")] for row in learner.recorder.values]
    assert saver.best == min(mses)
    assert learner.validate(quiet=True)["mse"] == pytest.approx(min(mses), abs=1e-6)  # the lowest epoch's weights
    # as fastai's own init sets a loss tracker: an improvement is a fall of more than min_delta, said once
    from fastai.callback.tracker import EarlyStoppingCallback
    stopper = EarlyStoppingCallback(monitor="mse", min_delta=0.5, patience=0)
    with pytest.warns(UserWarning, match=r"^EarlyStoppingCallback\(monitor='mse'\)"):
        quiet_fit(learner, 1, lr=1e-3, cbs=[stopper])
    assert stopper.comp is np.less and stopper.min_delta == -0.5
    import warnings
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        quiet_fit(learner, 1, lr=1e-3, cbs=[stopper])


def test_a_param_scheduler_with_fit_options_is_refused(tiny_learner):
    # before: fit(cbs=[ParamScheduler(...)], layer_decay=0.5, checkpoint=True, validate=False) ran fastai's fit with
    # none of them and returned None
    from fastai.callback.schedule import ParamScheduler, SchedCos
    from bertlearn.learner import TaskLearner
    sched = ParamScheduler({"lr": SchedCos(1e-3, 1e-5)})
    fits = TaskLearner._fits_started
    with pytest.raises(BertLearnError) as e:
        tiny_learner.fit(1, cbs=[sched], layer_decay=0.5, checkpoint=True, validate=False)
    assert str(e.value) == ("fit(cbs=[ParamScheduler(...)]) runs fastai's own fit with that schedule, which does not "
                            "take validate=False, checkpoint=True, layer_decay=0.5; leave them out (per-epoch results: "
                            "learner.epoch_results()), or drop the ParamScheduler and let fit() schedule "
                            "(schedule_type=...)")
    with pytest.raises(BertLearnError, match=r"which does not take pct_start=0\.0;"):  # a zero counts as given
        tiny_learner.fit(1, cbs=[sched], pct_start=0.0)
    assert TaskLearner._fits_started == fits  # refused before anything changed
    quiet_fit(tiny_learner, 1, cbs=[sched])  # fastai's own form runs as before


def test_validate_over_sliding_windows_says_it_scores_windows(tiny_model_dir, tmp_path):
    # before: validate() scored each window as a row without a word, while get_preds and interpret said so
    from bertlearn import BertDataBunch
    df = make_texts(16, seed=2)
    db = BertDataBunch.from_df(df, df, str(tiny_model_dir), bs=8, maxlen=12, long_text="sliding_window", stride=4,
                               device="cpu")
    learner = BertLearner.from_pretrained_model(db, str(tiny_model_dir), None, "cpu", None, output_dir=tmp_path)
    n = len(db.valid_ds)
    assert n > 16
    with pytest.warns(UserWarning, match=rf"^validate: the {n} rows of this loader are sliding windows of 16 texts, "
                                         r"and its loss and metrics score each window as a row"):
        learner.validate(quiet=True)
