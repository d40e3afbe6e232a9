"""Saving and loading: HF format (pipeline, AutoModel, predictor) and fastai export give the same predictions."""

from __future__ import annotations

import json
import warnings

import pandas as pd
import pytest
import torch

from conftest import make_texts

from bertlearn import BertClassificationPredictor, DataError, ModelError, load_learner

TEXTS = ["the movie was great fun", "awful and boring film", "good", "the plot was dull but the acting was lovely",
         "it is a very poor film"]


def top(preds):
    return [(row[0][0], round(row[0][1], 5)) for row in preds]


class TestSaveModel:
    def test_folder_is_hugging_face_format_with_settings(self, trained_learner, tmp_path):
        path = trained_learner.save_model(tmp_path / "m")
        names = {p.name for p in path.iterdir()}
        assert {"config.json", "model.safetensors", "tokenizer.json", "bertlearn.json"} <= names
        assert not any(n.endswith((".bin", ".pkl", ".pt")) for n in names)
        settings = json.loads((path / "bertlearn.json").read_text())
        assert settings["maxlen"] == 64 and settings["labels"] == ["negative", "positive"]
        assert not any(p.name.startswith(".m.") for p in tmp_path.iterdir())  # temporary folders cleaned up

    def test_default_path_is_output_dir_model_out(self, trained_learner):
        assert trained_learner.save_model() == trained_learner.output_dir / "model_out"

    def test_overwrite_replaces_previous_save(self, trained_learner, tmp_path):
        trained_learner.save_model(tmp_path / "m")
        (tmp_path / "m" / "stale.txt").write_text("old")
        path = trained_learner.save_model(tmp_path / "m")
        assert not (path / "stale.txt").exists() and (path / "config.json").exists()

    def test_a_folder_of_other_files_is_not_replaced(self, trained_learner, tmp_path):
        # saving replaces the folder as a whole: a run folder's notes and logs were deleted without a word
        runs = tmp_path / "runs"
        (runs / "tb").mkdir(parents=True)
        (runs / "notes.txt").write_text("keep me")
        with pytest.raises(ModelError) as e:
            trained_learner.save_model(runs)
        assert str(e.value) == (f"save_model: {str(runs)!r} holds ['notes.txt', 'tb'], which no model save wrote, and "
                                "saving replaces the folder as a whole (deleting them); save to a new or empty folder, "
                                f"e.g. {str(runs / 'model')!r}")
        assert (runs / "notes.txt").read_text() == "keep me" and (runs / "tb").is_dir()
        plain = tmp_path / "hf"  # a Hugging Face model folder is a model save to replace
        trained_learner.model.config.save_pretrained(plain)
        (plain / "README.md").write_text("card")
        assert (trained_learner.save_model(plain) / "model.safetensors").is_file()

    def test_predictor_gives_learner_predictions(self, trained_learner, tmp_path):
        path = trained_learner.save_model(tmp_path / "m")
        predictor = BertClassificationPredictor(path, device="cpu")
        assert predictor.labels == ["negative", "positive"]
        assert top(predictor.predict_batch(TEXTS)) == top(trained_learner.predict_batch(TEXTS))
        assert predictor.predict(TEXTS[0])[0][0] == "positive"
        with pytest.raises(ModelError) as e:  # the folder above the saved model (save_model's output_dir/model_out)
            BertClassificationPredictor(tmp_path, device="cpu")
        assert str(e.value).endswith(f"It contains a saved model in ['{path}']: pass that folder.")

    def test_transformers_pipeline_and_automodel_load_it(self, trained_learner, tmp_path):
        from transformers import AutoModelForSequenceClassification, pipeline

        path = trained_learner.save_model(tmp_path / "m")
        model = AutoModelForSequenceClassification.from_pretrained(path)
        assert model.config.id2label == {0: "negative", 1: "positive"}
        clf = pipeline("text-classification", model=str(path), device=-1)
        out = clf(TEXTS)
        expected = trained_learner.predict_batch(TEXTS)
        assert [o["label"] for o in out] == [row[0][0] for row in expected]
        assert [o["score"] for o in out] == pytest.approx([row[0][1] for row in expected], abs=1e-5)

    def test_predictor_on_incomplete_folder(self, trained_learner, tmp_path):
        path = trained_learner.save_model(tmp_path / "m")
        (path / "model.safetensors").unlink()
        with pytest.raises(ModelError, match=r"lacks \['model.safetensors'\]; it holds \[.*\]\. Save it again"):
            BertClassificationPredictor(path)
        with pytest.raises(ModelError, match="is not a directory"):
            BertClassificationPredictor(tmp_path / "nowhere")


class TestExport:
    def test_export_load_learner_round_trip(self, trained_learner, tmp_path):
        trained_learner.export(tmp_path / "export.pkl")
        loaded = load_learner(tmp_path / "export.pkl")
        assert type(loaded).__name__ == "BertLearner"
        assert loaded.dls.labels == ["negative", "positive"]
        assert top(loaded.predict_batch(TEXTS)) == top(trained_learner.predict_batch(TEXTS))

    def test_load_learner_missing_file(self, tmp_path):
        with pytest.raises(ModelError, match=r"is not a file; pass the file written by learner.export\(\)"):
            load_learner(tmp_path / "missing.pkl")

    def test_get_preds_agrees_with_predict_batch(self, trained_learner):
        with trained_learner.no_bar():
            probs, targs = trained_learner.get_preds()
        texts = list(trained_learner.dls.valid.dataset.texts)
        ours = trained_learner.predict_batch(texts)
        labels = trained_learner.dls.labels
        for p, row in zip(probs, ours):
            assert labels[int(p.argmax())] == row[0][0]
            assert float(p.max()) == pytest.approx(row[0][1], abs=1e-5)
        assert len(targs) == len(texts)


class TestPrecision:
    """bf16 autocast is opt-in for training (is_fp16=True) and follows training into the saved predictor."""

    def test_fp32_trained_model_predicts_in_fp32_unless_asked(self, trained_learner, tmp_path):
        path = trained_learner.save_model(tmp_path / "m")
        assert json.loads((path / "bertlearn.json").read_text())["precision"] == "fp32"
        expected = trained_learner.predict_logits(TEXTS)
        auto = BertClassificationPredictor(path, device="cpu")
        assert auto.amp_dtype is None
        torch.testing.assert_close(auto.predict_logits(TEXTS), expected, atol=1e-5, rtol=1e-5)
        fast = BertClassificationPredictor(path, device="cpu", precision="bf16")
        assert fast.amp_dtype == torch.bfloat16
        got = fast.predict_logits(TEXTS)
        assert not torch.equal(got, expected)  # it did run in bf16
        torch.testing.assert_close(got.softmax(-1), expected.softmax(-1), atol=3e-2, rtol=0)

    def test_bf16_trained_model_predicts_like_its_learner(self, tiny_databunch, tiny_model_dir, tmp_path, monkeypatch):
        import bertlearn.callbacks as callbacks
        from bertlearn import BF16Autocast, BertLearner
        monkeypatch.setattr(callbacks, "native_bf16", lambda device: True)  # as on a CPU with AMX
        monkeypatch.setattr("bertlearn.device.native_bf16", lambda device: True)
        learner = BertLearner.from_pretrained_model(tiny_databunch, str(tiny_model_dir), None, "cpu", None,
                                                    output_dir=tmp_path, is_fp16=True)
        assert any(isinstance(cb, BF16Autocast) for cb in learner.cbs)
        with learner.no_bar(), learner.no_logging():
            learner.fit(1, lr=1e-3)
        assert all(p.dtype == torch.float32 for p in learner.model.parameters())  # master weights stay fp32
        path = learner.save_model(tmp_path / "m")
        assert json.loads((path / "bertlearn.json").read_text())["precision"] == "bf16"
        predictor = BertClassificationPredictor(path, device="cpu")
        assert predictor.amp_dtype == torch.bfloat16
        torch.testing.assert_close(predictor.predict_logits(TEXTS), learner.predict_logits(TEXTS), atol=1e-5, rtol=1e-5)
        monkeypatch.setattr("bertlearn.device.native_bf16", lambda device: False)  # a machine without bf16 hardware
        assert BertClassificationPredictor(path, device="cpu").amp_dtype is None

    def test_bf16_regression_values_come_from_a_float32_head(self, tiny_model_dir, tmp_path, monkeypatch):
        # before: the whole forward ran under bf16 autocast, head included, so every value was rounded to bf16's 8
        # significant bits (multiples of 8 near 2000: 1976.0 for 1974.6), in the learner and in the saved predictor
        import bertlearn.callbacks as callbacks
        from transformers import AutoModelForSequenceClassification, AutoTokenizer
        from bertlearn import BertDataBunch, BertLearner
        monkeypatch.setattr(callbacks, "native_bf16", lambda device: True)  # as on a CPU with AMX
        monkeypatch.setattr("bertlearn.device.native_bf16", lambda device: True)

        def years(n, seed):
            df = make_texts(n, seed)
            df["year"] = 1950.0 + 50 * (df.label == "positive") + torch.linspace(0, 7, n).numpy()
            return df[["text", "year"]]

        db = BertDataBunch.from_df(years(32, 1), years(8, 2), str(tiny_model_dir), label_col="year", regression=True,
                                   bs=16, maxlen=32, device="cpu")
        learner = BertLearner.from_pretrained_model(db, str(tiny_model_dir), None, "cpu", None, output_dir=tmp_path,
                                                    seed=0, is_fp16=True)
        with learner.no_bar(), learner.no_logging():
            learner.fit(1, lr=1e-3)
        assert learner._amp_dtype() == torch.bfloat16
        path = learner.save_model(tmp_path / "m")
        predictor = BertClassificationPredictor(path, device="cpu")
        assert predictor.amp_dtype == torch.bfloat16  # "auto" follows training's bf16
        # independent: plain transformers, one text at a time, in float32, and with a bf16 encoder and float32 head
        model = AutoModelForSequenceClassification.from_pretrained(path).eval()
        tok = AutoTokenizer.from_pretrained(path)
        fp32, mixed = [], []
        with torch.no_grad():
            for t in TEXTS:
                enc = tok(t, truncation=True, max_length=32, return_tensors="pt")
                fp32.append(float(model(**enc).logits[0, 0]))
                with torch.autocast("cpu", dtype=torch.bfloat16):
                    pooled = model.bert(**enc).pooler_output
                mixed.append(float(model.classifier(pooled.float())[0, 0]))
        assert 1940 < min(fp32) <= max(fp32) < 2010
        for got in (learner.predict_batch(TEXTS), predictor.predict_batch(TEXTS)):
            assert got == pytest.approx(mixed, abs=1e-3)
            assert got == pytest.approx(fp32, abs=0.05)  # bf16 rounding alone would be up to 4 off
            assert not [v for v in got if float(torch.tensor(v, dtype=torch.bfloat16)) == v]  # none is a bf16 value
        # the float32 export and the explicit float32 predictor give the float32 values
        assert BertClassificationPredictor(path, device="cpu", precision="fp32").predict_batch(TEXTS) == \
            pytest.approx(fp32, abs=1e-3)

    def test_float32_head_blocks_nest_and_put_the_head_back(self, tiny_model_dir):
        from transformers import AutoModelForSequenceClassification
        from bertlearn.predict import float32_head
        model = AutoModelForSequenceClassification.from_pretrained(tiny_model_dir, num_labels=1).eval()
        x = torch.randn(3, 32)
        with torch.no_grad():
            expected = torch.nn.functional.linear(x, model.classifier.weight, model.classifier.bias)  # float32
        with torch.no_grad(), torch.autocast("cpu", dtype=torch.bfloat16):
            assert model.classifier(x).dtype == torch.bfloat16
            with float32_head(model, "cpu"):
                with float32_head(model, "cpu"):
                    pass
                out = model.classifier(x)  # the inner block's end leaves the outer block's head in float32
            assert out.dtype == torch.float32
            torch.testing.assert_close(out, expected, atol=1e-6, rtol=1e-6)
            assert model.classifier(x).dtype == torch.bfloat16
        assert "forward" not in vars(model.classifier) and "forward" not in vars(model.dropout)

    def test_float32_head_finds_the_head_through_wrappers(self, tiny_model_dir):
        # DDP's .module and torch.compile's _orig_mod wrap the model: the wrapper's only child holds the encoder,
        # so it was patched whole (the encoder in float32 too) or, through DDP, nothing was
        from transformers import AutoModelForSequenceClassification
        from bertlearn.predict import float32_head
        model = AutoModelForSequenceClassification.from_pretrained(tiny_model_dir, num_labels=1).eval()

        class Wrapper(torch.nn.Module):
            def __init__(self, inner, name):
                super().__init__()
                setattr(self, name, inner)

        for name in ("module", "_orig_mod"):
            with float32_head(Wrapper(model, name), "cpu"):
                assert "forward" in vars(model.classifier) and "forward" not in vars(model.bert)
            assert "forward" not in vars(model.classifier)
        with pytest.raises(RuntimeError):  # interrupted inside: the head is put back all the same
            with float32_head(model, "cpu"):
                raise RuntimeError("stop")
        assert "forward" not in vars(model.classifier) and "forward" not in vars(model.dropout)

    def test_cpu_without_bf16_hardware_trains_in_fp32_with_a_warning(self, tiny_databunch, tiny_model_dir, tmp_path,
                                                                      monkeypatch):
        import bertlearn.callbacks as callbacks
        from bertlearn import BF16Autocast, BertLearner
        monkeypatch.setattr(callbacks, "native_bf16", lambda device: False)
        with pytest.warns(UserWarning, match=r"is_fp16=True: this CPU has no bfloat16 hardware \(AMX or AVX512-BF16\), "
                                             r"where mixed precision would be slower; training in float32"):
            learner = BertLearner.from_pretrained_model(tiny_databunch, str(tiny_model_dir), None, "cpu", None,
                                                        output_dir=tmp_path, is_fp16=True)
        assert not any(isinstance(cb, BF16Autocast) for cb in learner.cbs)

    def test_unknown_precision_is_refused(self, trained_learner, tmp_path):
        from bertlearn import BertLearnError
        path = trained_learner.save_model(tmp_path / "m")
        with pytest.raises(BertLearnError, match=r"precision='fp8' is not one of \['auto', 'fp32', 'bf16'\]; 'auto' uses "
                                                 r"bfloat16 where the hardware computes it, 'fp32' gives float32 results"):
            BertClassificationPredictor(path, device="cpu", precision="fp8")


class TestFastBertArguments:
    """fast-bert's predictor arguments are held against the saved model instead of being dropped."""

    def test_multi_label_must_agree_with_the_saved_task(self, trained_learner, tmp_path):
        path = trained_learner.save_model(tmp_path / "m")
        assert BertClassificationPredictor(path, multi_label=False).encoder.problem_type == "single_label_classification"
        with pytest.raises(ModelError) as e:
            BertClassificationPredictor(path, multi_label=True)
        assert str(e.value) == (f"multi_label=True disagrees with the model in {str(path)!r}, which was trained as "
                                "single label classification; its outputs are read the way they were trained: pass "
                                "multi_label=False or leave it out")

    def test_label_path_do_lower_case_and_model_type(self, trained_learner, tmp_path, monkeypatch):
        import warnings

        import bertlearn.compat
        monkeypatch.setattr(bertlearn.compat, "_said", set())
        path = trained_learner.save_model(tmp_path / "m")
        (tmp_path / "labels").mkdir()
        (tmp_path / "labels" / "labels.csv").write_text("positive\nnegative\n")
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            predictor = BertClassificationPredictor(path, label_path=tmp_path / "labels", model_type="xlnet",
                                                    do_lower_case=False)
        assert [str(w.message) for w in caught] == [
            "BertClassificationPredictor: fast-bert argument without effect in bertlearn: model_type='xlnet': the "
            "architecture comes from the checkpoint's config.json, never from a name",
            f"label_path {str(tmp_path / 'labels' / 'labels.csv')!r} lists the labels in another order than the "
            "model's outputs ['negative', 'positive']; every prediction names its label, so the file's order is not "
            "used",
            "do_lower_case=False, but the tokenizer saved with the model lower-cases its input, as in training; it is "
            "used as saved, so predictions match training"]
        assert predictor.labels == ["negative", "positive"]
        (tmp_path / "labels" / "labels.csv").write_text("pos\nneg\n")
        with pytest.raises(ModelError, match=r"lists the labels \['pos', 'neg'\], but the model in .* predicts "
                                             r"\['negative', 'positive'\]; leave label_path out"):
            BertClassificationPredictor(path, label_path=tmp_path / "labels" / "labels.csv")

    def test_a_folder_without_a_trained_head_is_refused(self, tiny_model_dir, tmp_path):
        import shutil
        from safetensors.torch import load_file
        folder = tmp_path / "encoder"
        shutil.copytree(tiny_model_dir, folder)  # an encoder only: a pretraining checkpoint, not a classifier
        weights = next(folder.glob("*.safetensors"))
        if weights.name != "model.safetensors":
            weights.rename(folder / "model.safetensors")
        assert not any(k.startswith("classifier") for k in load_file(str(folder / "model.safetensors")))
        with pytest.raises(ModelError, match=r"lacks trained weights for \['classifier.bias', 'classifier.weight'\]: it "
                                             r"is not a fine-tuned classification head, and predicting with random "
                                             r"weights would give random answers"):
            BertClassificationPredictor(folder)

    def test_multi_label_sets_the_task_where_nothing_records_it(self, trained_learner, tmp_path):
        import json
        path = trained_learner.save_model(tmp_path / "m")
        (path / "bertlearn.json").unlink()  # a plain Hugging Face folder
        config = json.loads((path / "config.json").read_text())
        config.pop("problem_type", None)
        (path / "config.json").write_text(json.dumps(config))
        assert BertClassificationPredictor(path, multi_label=True).encoder.multi_label
        assert not BertClassificationPredictor(path).encoder.multi_label


class TestPaddingAwareBatches:
    """On a CPU a prediction call's longest-first rows are cut where padding costs more than a new batch."""

    @staticmethod
    def brute_force(lengths, bs, overhead):
        # every partition of the sorted rows into runs of at most bs: the cheapest cost, computed independently
        best = None
        n = len(lengths)
        for mask in range(2 ** max(n - 1, 0)):
            cuts = [0] + [i + 1 for i in range(n - 1) if mask >> i & 1] + [n]
            runs = list(zip(cuts[:-1], cuts[1:]))
            if any(b - a > bs for a, b in runs):
                continue
            cost = sum(overhead + (b - a) * lengths[a] for a, b in runs)
            best = cost if best is None else min(best, cost)
        return best

    def test_cuts_are_the_cheapest_partition(self):
        import numpy as np

        from bertlearn.data import padding_aware_cuts
        rng = np.random.default_rng(0)
        for _ in range(60):
            lengths = np.sort(rng.integers(2, 80, size=rng.integers(1, 11)))[::-1]
            bs, overhead = int(rng.integers(1, 6)), int(rng.integers(0, 200))
            cuts = padding_aware_cuts(lengths, bs, overhead)
            assert cuts[0] == 0 and cuts[-1] == len(lengths) and all(np.diff(cuts) >= 1)
            assert all(np.diff(cuts) <= bs)
            cost = sum(overhead + (b - a) * lengths[a] for a, b in zip(cuts[:-1], cuts[1:]))
            assert cost == self.brute_force(lengths, bs, overhead)

    def test_hand_example_and_equal_lengths(self):
        import numpy as np

        from bertlearn.data import padding_aware_cuts
        # 60 58 | 20 18 | 10 9 8 5 costs 3 x 10 + 120 + 40 + 40 = 230; one batch of 8 would cost 10 + 480
        assert padding_aware_cuts(np.array([60, 58, 20, 18, 10, 9, 8, 5]), 64, 10).tolist() == [0, 2, 4, 8]
        # a large sorted call of equal lengths keeps the usual batches of bs, full ones first
        assert padding_aware_cuts(np.full(200, 20), 64, 128).tolist() == [0, 64, 128, 192, 200]
        assert padding_aware_cuts(np.zeros(0, np.int64), 64, 128).tolist() == [0]

    def test_cpu_predictions_are_cut_and_unchanged(self, trained_learner, tmp_path):
        import numpy as np

        from bertlearn.device import CPU_BATCH_OVERHEAD, batch_overhead_for
        assert batch_overhead_for("cpu") == batch_overhead_for(None) == CPU_BATCH_OVERHEAD == 128
        assert batch_overhead_for("cuda") is None  # unmeasured on GPUs: every bs rows, as before
        path = trained_learner.save_model(tmp_path / "m")
        predictor = BertClassificationPredictor(path, device="cpu", bs=64)
        texts = [" ".join(["word"] * n) for n in (50, 48, 3, 2, 2, 1)] * 3
        dl = predictor.loader(texts)
        widths = [int(b[0].shape[1]) for b in dl]
        assert len(widths) == len(dl) > 1 and widths == sorted(widths, reverse=True)  # narrower batches
        assert sum(len(b[0]) for b in dl) == len(texts)
        cut = predictor.predict_logits(texts)
        predictor.loader = lambda t, device=None: type(dl)(dl.dataset.encoder.dataset(t), bs=64)  # every 64 rows
        assert len(predictor.loader(texts)) == 1
        np.testing.assert_allclose(cut.numpy(), predictor.predict_logits(texts).numpy(), atol=1e-5)

    def test_loader_cuts_only_longest_first_cpu_passes_and_keeps_the_setting(self, trained_learner):
        import torch

        from bertlearn import DataError
        dl = trained_learner.dls.test_dl([" ".join(["word"] * n) for n in (50, 48, 3, 2, 2, 1)], bs=64)
        assert dl.batch_overhead == "auto" and len(dl) == 2  # 52 50 | 5 4 4 3 tokens on the CPU
        assert len(dl.new(bs=64)) == 2  # fastai's copies keep the setting
        assert len(dl.new(batch_overhead=None)) == 1
        dl.device = torch.device("cuda")  # only the length is asked: no GPU needed
        assert len(dl) == 1  # CUDA keeps every bs rows (unmeasured there)
        shuffled = dl.new(shuffle=True, device=None)
        assert len(shuffled) == 1  # training order is never cut
        with pytest.raises(DataError, match=r"batch_overhead='none': pass a whole number of tokens >= 0, 'auto'"):
            type(dl)(dl.dataset, bs=64, batch_overhead="none")


def _plain_folders(tmp_path, tok, positions: int):
    """A plain Hugging Face classifier and tagger folder (no bertlearn.json) on `tok`, with `positions` positions:
    (head model, predictor type, folder) for each."""
    import transformers as T

    from bertlearn import BertNERPredictor
    size = dict(vocab_size=max(tok.get_vocab().values()) + 1, hidden_size=32, num_hidden_layers=1,
                num_attention_heads=4, intermediate_size=37, max_position_embeddings=positions)
    for head, predictor_type, labels in ((T.BertForSequenceClassification, BertClassificationPredictor,
                                          ["negative", "positive"]),
                                         (T.BertForTokenClassification, BertNERPredictor, ["O", "B-PER"])):
        folder = tmp_path / head.__name__
        torch.manual_seed(0)
        model = head(T.BertConfig(**size, num_labels=2, id2label=dict(enumerate(labels)))).eval()
        model.save_pretrained(folder)
        tok.save_pretrained(folder)
        yield model, predictor_type, folder


def test_a_plain_folder_reads_no_more_tokens_than_its_model_takes(tiny_tokenizer, tmp_path):
    # a Hugging Face folder without bertlearn.json: before, the tokenizer's 512 was used, and a text longer than the
    # model's 16 positions failed inside the model (a RuntimeError at its position table) in both predictors
    assert tiny_tokenizer.model_max_length == 512
    long = " ".join(["good"] * 40)
    for _, predictor_type, folder in _plain_folders(tmp_path, tiny_tokenizer, 16):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # the plain folder's scheme guess, and the cut text: said elsewhere
            predictor = predictor_type(folder, device="cpu")
            assert predictor.encoder.maxlen == 16
            if predictor_type is BertClassificationPredictor:
                assert len(predictor.predict_batch([long])[0]) == 2
            else:
                assert len(predictor.predict(long, group=False, exclude_entities=None)) == 40


def test_a_plain_folder_reads_as_many_tokens_as_its_model_and_tokenizer_take(tiny_model_dir, tmp_path):
    # before: both taking 1024 tokens, the predictors cut every text at 512 without a word
    import transformers as T
    tok = T.AutoTokenizer.from_pretrained(tiny_model_dir, model_max_length=1024)
    text = " ".join(["good"] * 700)
    for model, predictor_type, folder in _plain_folders(tmp_path, tok, 1024):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # the plain folder's scheme guess: said elsewhere
            predictor = predictor_type(folder, device="cpu")
        assert predictor.encoder.maxlen == 1024
        if predictor_type is BertClassificationPredictor:
            with torch.no_grad():
                whole = model(**tok([text], return_tensors="pt")).logits
            torch.testing.assert_close(predictor.predict_logits([text]), whole, atol=1e-5, rtol=1e-4)


def test_a_dataframe_given_as_texts_is_refused_not_read_as_its_column_names(trained_learner):
    # list(df) is its column names: predict_batch(df) answered for the texts "text" and "label"
    df = make_texts(9, seed=3)
    message = "texts: got a DataFrame with columns ['text', 'label']; pass its texts, e.g. df['text']"
    for call in (trained_learner.predict_batch, trained_learner.predict_labels, trained_learner.predict_logits):
        with pytest.raises(DataError) as e:
            call(df)
        assert str(e.value) == message
    with pytest.raises(DataError, match=r"^texts: got a dict with keys \['text'\]; pass its texts"):
        trained_learner.predict_batch({"text": ["good film"]})
    assert len(trained_learner.predict_batch(df["text"])) == 9


def test_a_list_given_to_predict_names_predict_batch(trained_learner):
    with pytest.raises(DataError) as e:
        trained_learner.predict(["good film", "bad film"])
    assert str(e.value) == ("texts: items [0] are not strings (got list); pass a list of texts; predict() takes one "
                            "text, predict_batch() a list of them")


def test_a_plain_folder_with_one_output_is_a_regression(tiny_tokenizer, tmp_path):
    # no problem_type and one output: transformers trains it as regression; read as single-label, a softmax over one
    # output gave probability 1.0 for every text
    import transformers as T
    torch.manual_seed(0)
    model = T.BertForSequenceClassification(T.BertConfig(vocab_size=max(tiny_tokenizer.get_vocab().values()) + 1,
                                                         hidden_size=32,
                                                         num_hidden_layers=1, num_attention_heads=4,
                                                         intermediate_size=37, num_labels=1))
    model.save_pretrained(tmp_path)
    tiny_tokenizer.save_pretrained(tmp_path)
    model.eval()
    texts = ["good film", "bad movie and a dull plot"]
    with torch.no_grad():
        expected = [float(model(**tiny_tokenizer(t, return_tensors="pt")).logits[0, 0]) for t in texts]
    predictor = BertClassificationPredictor(tmp_path, device="cpu")
    assert predictor.encoder.problem_type == "regression"
    assert predictor.predict_batch(texts) == pytest.approx(expected, abs=1e-5) and len(set(expected)) == 2
    with pytest.raises(ModelError) as e:
        BertClassificationPredictor(tmp_path, device="cpu", multi_label=False)
    assert str(e.value).startswith(f"multi_label=False: the model in {str(tmp_path)!r} has one output")


def test_a_plain_pair_folder_reads_pairs_from_a_hand_written_settings_file(tiny_tokenizer, tmp_path):
    # a cross-encoder's plain folder had no way to take pairs, and a pair given to a single-text model was told
    # "pass a list of texts; predict() takes one text"
    import transformers as T
    torch.manual_seed(0)
    model = T.BertForSequenceClassification(T.BertConfig(vocab_size=max(tiny_tokenizer.get_vocab().values()) + 1,
                                                         hidden_size=32, num_hidden_layers=1, num_attention_heads=4,
                                                         intermediate_size=37, num_labels=2)).eval()
    model.save_pretrained(tmp_path)
    tiny_tokenizer.save_pretrained(tmp_path)
    pairs = [("good film", "a fun movie"), ("bad plot", "great acting")]
    with pytest.raises(DataError) as e:
        BertClassificationPredictor(tmp_path, device="cpu").predict_batch(pairs)
    assert str(e.value) == ("texts: items [0, 1] are (text_a, text_b) pairs, and this model takes single texts; pass "
                            "one text per item (to predict pairs, train on them with text_col=[a, b]; for a plain "
                            'Hugging Face folder of a pair model, write {"pairs": true} to its bertlearn.json)')
    (tmp_path / "bertlearn.json").write_text('{"pairs": true}')
    predictor = BertClassificationPredictor(tmp_path, device="cpu")
    with torch.no_grad():
        expected = [torch.softmax(model(**tiny_tokenizer(a, b, return_tensors="pt")).logits[0], -1).tolist()
                    for a, b in pairs]
    got = predictor.predict_batch(pairs)
    assert [dict(row) for row in got] == [pytest.approx({"LABEL_0": p[0], "LABEL_1": p[1]}, abs=1e-5)
                                          for p in expected]


class TestFastBertModelFolders:
    """A `model_out` folder as fast-bert's save_model wrote it: no bertlearn.json, a config naming its outputs only
    LABEL_0, LABEL_1 (the names lived in labels.csv), and pickled weights (pytorch_model.bin)."""

    @staticmethod
    def fast_bert_folder(trained_learner, folder, *, pickled=False):
        path = trained_learner.save_model(folder)
        (path / "bertlearn.json").unlink()
        config = json.loads((path / "config.json").read_text())
        config["id2label"] = {"0": "LABEL_0", "1": "LABEL_1"}
        config["label2id"] = {"LABEL_0": 0, "LABEL_1": 1}
        (path / "config.json").write_text(json.dumps(config))
        if pickled:
            from safetensors.torch import load_file
            torch.save(load_file(str(path / "model.safetensors")), path / "pytorch_model.bin")
            (path / "model.safetensors").unlink()
        return path

    def test_label_path_names_generic_outputs_in_file_order_said_once(self, trained_learner, tmp_path, monkeypatch):
        import bertlearn.compat
        from bertlearn import FastBertCompatWarning
        monkeypatch.setattr(bertlearn.compat, "_said", set())
        path = self.fast_bert_folder(trained_learner, tmp_path / "model_out")
        (tmp_path / "labels.csv").write_text("negative\npositive\n")
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            predictor = BertClassificationPredictor(path, label_path=tmp_path, multi_label=False, model_type="bert",
                                                    do_lower_case=True)
            BertClassificationPredictor(path, label_path=tmp_path / "labels.csv")
        assert [str(w.message) for w in caught if w.category is FastBertCompatWarning] == [
            f"BertClassificationPredictor: the model in {str(path)!r} names its outputs only LABEL_0, LABEL_1 (no "
            f"bertlearn.json: a fast-bert or plain transformers save), so they take the names in label_path "
            f"{str(tmp_path / 'labels.csv')!r}, in file order, as fast-bert's predictor named them: "
            "LABEL_0='negative', LABEL_1='positive'",
            "BertClassificationPredictor: fast-bert argument without effect in bertlearn: model_type='bert': the "
            "architecture comes from the checkpoint's config.json, never from a name"]
        assert predictor.labels == ["negative", "positive"]
        assert predictor.model.config.id2label == {0: "negative", 1: "positive"}
        assert top(predictor.predict_batch(TEXTS)) == top(trained_learner.predict_batch(TEXTS))
        # without label_path the config's names stay
        assert BertClassificationPredictor(path).labels == ["LABEL_0", "LABEL_1"]

    def test_the_file_order_is_the_output_order(self, trained_learner, tmp_path, monkeypatch):
        import bertlearn.compat
        monkeypatch.setattr(bertlearn.compat, "_said", set())
        path = self.fast_bert_folder(trained_learner, tmp_path / "model_out")
        (tmp_path / "labels.csv").write_text("pos\nneg\n")
        with pytest.warns(UserWarning, match="LABEL_0='pos', LABEL_1='neg'"):
            predictor = BertClassificationPredictor(path, label_path=tmp_path)
        expected = trained_learner.predict_labels(TEXTS)
        assert predictor.predict_labels(TEXTS) == [{"negative": "pos", "positive": "neg"}[l] for l in expected]

    def test_a_label_file_of_another_count_is_refused(self, trained_learner, tmp_path):
        path = self.fast_bert_folder(trained_learner, tmp_path / "model_out")
        (tmp_path / "labels.csv").write_text("negative\nneutral\npositive\n")
        with pytest.raises(ModelError) as e:
            BertClassificationPredictor(path, label_path=tmp_path)
        assert str(e.value) == (
            f"label_path {str(tmp_path / 'labels.csv')!r} lists 3 labels ['negative', 'neutral', 'positive'], but "
            f"the model in {str(path)!r} has 2 outputs, unnamed in its config (LABEL_0, LABEL_1); point label_path "
            "at the labels.csv the model was trained with (one label per line, in training order)")

    def test_names_in_the_config_that_disagree_are_still_refused(self, trained_learner, tmp_path):
        path = trained_learner.save_model(tmp_path / "m")
        (path / "bertlearn.json").unlink()  # the config names negative, positive
        (tmp_path / "labels.csv").write_text("pos\nneg\n")
        with pytest.raises(ModelError, match=r"lists the labels \['pos', 'neg'\], but the model in .* predicts "
                                             r"\['negative', 'positive'\]; leave label_path out"):
            BertClassificationPredictor(path, label_path=tmp_path)

    def test_pickled_weights_are_refused_with_a_conversion_that_works(self, trained_learner, tmp_path, monkeypatch):
        import bertlearn.compat
        monkeypatch.setattr(bertlearn.compat, "_said", set())
        path = self.fast_bert_folder(trained_learner, tmp_path / "model_out", pickled=True)
        (tmp_path / "labels.csv").write_text("negative\npositive\n")
        with pytest.raises(ModelError) as e:
            BertClassificationPredictor(path, label_path=tmp_path)
        held = sorted(p.name for p in path.iterdir())
        assert str(e.value) == (
            f"model_path {str(path)!r} lacks ['model.safetensors']; it holds {held}. Its weights are in "
            "pytorch_model.bin, PyTorch's pickle format (as fast-bert and transformers before 5 saved them), which "
            "this predictor never loads (unpickling runs code). Convert the folder once, in Python (it adds "
            "model.safetensors and leaves the .bin as it is): from transformers import "
            f"AutoModelForSequenceClassification; AutoModelForSequenceClassification.from_pretrained({str(path)!r})"
            f".save_pretrained({str(path)!r})")
        exec(str(e.value).split("as it is): ", 1)[1], {})  # the conversion, as the message gives it
        assert (path / "model.safetensors").is_file() and (path / "pytorch_model.bin").is_file()
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            predictor = BertClassificationPredictor(path, label_path=tmp_path)
        assert top(predictor.predict_batch(TEXTS)) == top(trained_learner.predict_batch(TEXTS))


def test_a_plain_regression_folder_with_several_outputs_is_refused(tiny_tokenizer, tmp_path):
    # problem_type='regression' with 3 outputs (valence, arousal, dominance): predict_batch, bertlearn predict's one
    # column and serve's score all returned output 0 only, the other two dropped without a word
    import transformers as T
    names = ["valence", "arousal", "dominance"]
    model = T.BertForSequenceClassification(T.BertConfig(
        vocab_size=max(tiny_tokenizer.get_vocab().values()) + 1, hidden_size=32, num_hidden_layers=1,
        num_attention_heads=4, intermediate_size=37, num_labels=3, problem_type="regression",
        id2label=dict(enumerate(names)), label2id={n: i for i, n in enumerate(names)}))
    model.save_pretrained(tmp_path)
    tiny_tokenizer.save_pretrained(tmp_path)
    with pytest.raises(ModelError) as e:
        BertClassificationPredictor(tmp_path, device="cpu")
    assert str(e.value) == (
        f"the model in {str(tmp_path)!r} is a regression with 3 outputs (valence, arousal, dominance); bertlearn "
        "predicts one regression score per text (num_labels=1). Read its outputs with transformers' "
        "AutoModelForSequenceClassification, or train one model per target with regression=True")


def test_a_learner_built_on_a_model_whose_config_names_other_outputs_saves_a_folder_that_reads(tiny_model_dir,
                                                                                              tmp_path):
    # the constructor takes a model as it is: a Hugging Face checkpoint saved with problem_type single-label and
    # placeholder names, trained on multi-label data. Before, save_model wrote that config beside bertlearn.json's
    # multi-label task, so pipeline() read a softmax over LABEL_0/LABEL_1 and the predictor refused the folder
    import transformers as T

    from bertlearn import BertDataBunch, BertLearner, load_predictor
    df = make_texts(32, seed=4)
    df = pd.DataFrame({"text": df.text, "good": (df.label == "positive").astype(int),
                       "bad": (df.label == "negative").astype(int)})
    db = BertDataBunch.from_df(df, df, str(tiny_model_dir), label_col=["good", "bad"], multi_label=True, bs=8,
                               maxlen=32, device="cpu")
    model = T.AutoModelForSequenceClassification.from_pretrained(tiny_model_dir, num_labels=2,
                                                                 problem_type="single_label_classification")
    folder = BertLearner(db, model).save_model(tmp_path / "m")
    config = T.AutoConfig.from_pretrained(folder)
    assert (config.problem_type, config.id2label) == ("multi_label_classification", {0: "good", 1: "bad"})
    assert model.config.problem_type == "single_label_classification"  # the learner's model is left as it was
    predictor = load_predictor(folder, device="cpu")
    assert predictor.labels == ["good", "bad"] and predictor.encoder.problem_type == "multi_label_classification"


def test_a_model_saved_again_with_another_task_or_head_size_is_refused(trained_learner, tmp_path):
    # before: a single-label folder retrained as multi-label and saved over was read with a softmax (each sigmoid
    # probability replaced by a share of one), and a head of 3 placeholder-named outputs was read through its first 2
    import transformers as T
    folder = trained_learner.save_model(tmp_path / "m")
    stale = ("the model was saved again after bertlearn saved it (or its bertlearn.json was written by hand). Save it "
             "with learner.save_model(path) again, or delete the stale bertlearn.json to read the folder as a plain "
             "Hugging Face model")
    model = T.AutoModelForSequenceClassification.from_pretrained(folder, problem_type="multi_label_classification")
    model.save_pretrained(folder)
    with pytest.raises(ModelError) as e:
        BertClassificationPredictor(folder, device="cpu")
    assert str(e.value) == (f"{str(folder)!r}: bertlearn.json records the task 'single_label_classification' but "
                            f"config.json records 'multi_label_classification'; {stale}")
    model = T.AutoModelForSequenceClassification.from_pretrained(folder, num_labels=3, problem_type=None,
                                                                 ignore_mismatched_sizes=True)
    model.config.problem_type = None
    model.save_pretrained(folder)
    with pytest.raises(ModelError) as e:
        BertClassificationPredictor(folder, device="cpu")
    assert str(e.value) == (f"{str(folder)!r}: bertlearn.json names 2 outputs (negative, positive) but the model has "
                            f"3; {stale}")


def test_a_model_saved_again_with_its_outputs_reordered_is_refused_not_renamed(trained_learner, tmp_path):
    # a save_model folder whose weights a Hugging Face Trainer run saved again with another label2id: config.json
    # follows the new head, bertlearn.json kept the old names, and the predictor named every output after another
    # label (the pipeline said 'negative' where bertlearn said 'positive')
    import transformers as T
    folder = trained_learner.save_model(tmp_path / "m")
    assert BertClassificationPredictor(folder, device="cpu").labels == ["negative", "positive"]
    model = T.AutoModelForSequenceClassification.from_pretrained(folder)
    with torch.no_grad():
        model.classifier.weight.copy_(model.classifier.weight.flip(0))
        model.classifier.bias.copy_(model.classifier.bias.flip(0))
    model.config.id2label, model.config.label2id = {0: "positive", 1: "negative"}, {"positive": 0, "negative": 1}
    model.save_pretrained(folder)
    with pytest.raises(ModelError) as e:
        BertClassificationPredictor(folder, device="cpu")
    assert str(e.value) == (
        f"{str(folder)!r}: bertlearn.json names the outputs negative, positive but config.json names them positive, "
        "negative; the model was saved again after bertlearn saved it (or its bertlearn.json was written by hand). "
        "Save it with learner.save_model(path) again, or delete the stale bertlearn.json to read the folder as a plain "
        "Hugging Face model")
    # the way out the message gives: the folder read as Hugging Face saved it, each output under its own name
    (folder / "bertlearn.json").unlink()
    texts = ["good film and a great plot", "bad movie and a dull plot"]
    assert [p[0][0] for p in BertClassificationPredictor(folder, device="cpu").predict_batch(texts)] == \
        [p[0][0] for p in trained_learner.predict_batch(texts)]


def test_a_tokenizer_cutting_on_the_left_is_saved_so_when_its_rows_come_from_the_cache(tiny_model_dir, tmp_path):
    """truncation_side='left' set on the object reached the folder only when a tokenizer call wrote it into the
    backend: on a cache hit (the same script run again) the folder cut long texts on the right, the start kept."""
    from transformers import AutoTokenizer

    from bertlearn import BertDataBunch, BertLearner, load_predictor
    df = make_texts(16, seed=1)
    long = ["great fun " + " ".join(["the movie was very"] * 10) + " awful boring"]
    for run in ("fills the cache", "reads it"):
        tok = AutoTokenizer.from_pretrained(tiny_model_dir)
        tok.truncation_side = "left"
        db = BertDataBunch.from_df(df, df[:8], tok, bs=8, maxlen=12, device="cpu", cache_dir=tmp_path / "cache")
    learner = BertLearner.from_pretrained_model(db, str(tiny_model_dir), None, "cpu", None, output_dir=tmp_path / "o")
    predictor = load_predictor(learner.save_model(tmp_path / "m"), device="cpu")
    assert predictor.encoder.tokenizer.truncation_side == "left"
    assert predictor.encoder.dataset(long).ids.tolist() == db.encoder.dataset(long).ids.tolist()
    assert tok.convert_ids_to_tokens(predictor.encoder.dataset(long).ids.tolist()[0])[-3:] == \
        ["awful", "boring", "[SEP]"]


@pytest.mark.parametrize("task", ["classification", "ner"])
def test_a_folder_whose_tokenizer_reads_otherwise_is_refused(tiny_model_dir, tmp_path, task):
    """do_lower_case = False set on a fast tokenizer's object changes nothing in it (training lowercased), but
    save_pretrained wrote it: the folder's predictors stopped lowercasing, and "Terrible Acting" became [UNK]s."""
    from transformers import AutoTokenizer

    from bertlearn import BertDataBunch, BertLearner, BertNERDataBunch, BertNERLearner, ModelError
    tok = AutoTokenizer.from_pretrained(tiny_model_dir)
    tok.do_lower_case = False
    assert tok("The FILM")["input_ids"] == tok("the film")["input_ids"]  # still lowercases
    if task == "classification":
        df = make_texts(16, seed=1)
        db = BertDataBunch.from_df(df, df[:8], tok, bs=8, maxlen=24, device="cpu")
        learner = BertLearner.from_pretrained_model(db, str(tiny_model_dir), None, "cpu", None,
                                                    output_dir=tmp_path / "o")
    else:
        import pandas as pd
        df = pd.DataFrame({"tokens": [["the", "film", "was", "good"]] * 8, "tags": [["O", "B-X", "O", "O"]] * 8})
        db = BertNERDataBunch.from_df(df, df, tok, bs=4, maxlen=24, device="cpu")
        learner = BertNERLearner.from_pretrained_model(db, str(tiny_model_dir), device="cpu",
                                                       output_dir=tmp_path / "o")
    with pytest.raises(ModelError) as e:
        learner.save_model(tmp_path / "m")
    assert str(e.value) == (
        "the tokenizer written with the model encodes differently from the one training used: "
        + repr("The Movie WAS naïve, Café ﬁne: 中文 don't x\u00a0y 1,234 [SEP] [...") +
        " gives ['the', 'movie', 'was', 'n', '##a'] from token 1 here and ['[UNK]', '[UNK]', '[UNK]', '[UNK]', '[UNK]'] loaded back, so every predictor, server and "
        "pipeline on the folder would read texts otherwise. An option set on the tokenizer object after loading is the "
        "usual cause (tokenizer.do_lower_case = False does nothing to a fast tokenizer, yet is written to the folder): "
        "undo it and save again, or load the tokenizer with the option (AutoTokenizer.from_pretrained(name, "
        "do_lower_case=...)) and train with that")
    assert not (tmp_path / "m").exists()
    tok.do_lower_case = True  # the way out the message gives
    assert (learner.save_model(tmp_path / "m") / "config.json").is_file()


def test_a_tokenizer_told_to_split_special_tokens_is_saved_so(tiny_model_dir, tmp_path):
    """split_special_tokens=True set on the tokenizer object (training split a literal "[SEP]" in a text into pieces)
    was lost by save_pretrained: the folder's predictors read it as the special token, other ids and logits."""
    from transformers import AutoTokenizer

    from bertlearn import BertDataBunch, BertLearner, load_predictor
    tok = AutoTokenizer.from_pretrained(tiny_model_dir)
    tok.split_special_tokens = True
    df = make_texts(16, seed=1)
    db = BertDataBunch.from_df(df, df[:8], tok, bs=8, maxlen=24, device="cpu")
    learner = BertLearner.from_pretrained_model(db, str(tiny_model_dir), None, "cpu", None, output_dir=tmp_path / "o")
    texts = ["good [SEP] bad [CLS] fun", "the [MASK] film"]
    predictor = load_predictor(learner.save_model(tmp_path / "m"), device="cpu")
    assert predictor.encoder.tokenizer.split_special_tokens
    assert predictor.encoder.dataset(texts).ids.tolist() == db.encoder.dataset(texts).ids.tolist()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # an untrained head: only the agreement matters
        torch.testing.assert_close(predictor.predict_logits(texts), learner.predict_logits(texts))
