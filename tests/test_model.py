"""Model and tokenizer loading: the packaged default, local folders, offline hub names, the splitter."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from transformers import AutoConfig, AutoModelForSequenceClassification

from conftest import ARCHITECTURES, build_tiny_architecture, make_texts, spy_skips

from bertlearn import (DEFAULT_MODEL, ModelError, bert_splitter, compile_model, default_model_path, load_model,
                       load_tokenizer)


class TestDefaultModel:
    def test_alias_and_none_resolve_to_the_packaged_minilm(self):
        path = default_model_path()
        assert (path / "config.json").is_file() and (path / "model.safetensors").is_file()
        cfg = AutoConfig.from_pretrained(path)
        assert (cfg.model_type, cfg.num_hidden_layers, cfg.hidden_size) == ("bert", 6, 384)
        assert load_tokenizer(None).name_or_path == load_tokenizer(DEFAULT_MODEL).name_or_path == str(path)

    def test_default_load_does_not_import_sentence_transformers(self):
        import subprocess
        import sys
        code = ("import sys, bertlearn; bertlearn.load_tokenizer(None); "
                "print('sentence_transformers' in sys.modules)")
        out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
        assert out.stdout.strip() == "False"


class TestLoading:
    def test_offline_hub_name_explains_what_to_do(self, monkeypatch):
        monkeypatch.setenv("HF_HUB_OFFLINE", "1")
        with pytest.raises(ModelError) as e:
            load_model("bert-base-uncased", labels=["a", "b"])
        msg = str(e.value)
        assert msg.startswith("pretrained_path: could not load 'bert-base-uncased': it is not a local directory and "
                              "the Hugging Face Hub could not be reached (offline, or HF_HUB_OFFLINE=1). Pass a local "
                              "directory")
        assert "None / 'all-MiniLM-L6-v2' for the packaged default model" in msg

    def test_offline_hub_tokenizer(self, monkeypatch):
        monkeypatch.setenv("HF_HUB_OFFLINE", "1")
        with pytest.raises(ModelError, match="tokenizer: could not load 'bert-base-uncased'"):
            load_tokenizer("bert-base-uncased")

    def test_directory_without_config(self, tmp_path):
        (tmp_path / "notes.txt").write_text("x")
        with pytest.raises(ModelError, match=r"is not a loadable Hugging Face folder \(it holds \['notes.txt'\]\)"):
            load_model(str(tmp_path), labels=["a", "b"])

    def test_missing_local_directory(self, tmp_path):
        with pytest.raises(ModelError, match="directory '.*/nope' does not exist"):
            load_model(str(tmp_path / "nope"), labels=["a", "b"])

    def test_labels_and_problem_type_reach_the_config(self, tiny_model_dir):
        model, fresh = load_model(str(tiny_model_dir), labels=["x", "y", "z"], multi_label=True)
        assert fresh and model.config.num_labels == 3
        assert model.config.id2label == {0: "x", 1: "y", 2: "z"}
        assert model.config.problem_type == "multi_label_classification"

    def test_label_count_mismatch_explains_ignore_mismatched_sizes(self, trained_learner, tmp_path):
        path = trained_learner.save_model(tmp_path / "two-labels")
        with pytest.raises(ModelError, match="different number of labels .* ignore_mismatched_sizes=True"):
            load_model(str(path), labels=["a", "b", "c"])
        model, fresh = load_model(str(path), labels=["a", "b", "c"], ignore_mismatched_sizes=True)
        assert fresh and model.config.num_labels == 3

    def test_finetuned_weights_are_loaded(self, tiny_model_dir, tmp_path, capsys):
        from safetensors.torch import save_file
        model, _ = load_model(str(tiny_model_dir), labels=["a", "b"])
        state = {k: torch.full_like(v, 0.5) for k, v in model.state_dict().items() if "word_embeddings" in k}
        save_file(state, tmp_path / "w.safetensors")
        capsys.readouterr()
        model2, _ = load_model(str(tiny_model_dir), labels=["a", "b"], finetuned_wgts_path=tmp_path / "w.safetensors")
        assert torch.all(model2.bert.embeddings.word_embeddings.weight == 0.5)
        # said after the "new classification head on the pretrained encoder of ..." line, which names the checkpoint
        assert capsys.readouterr().out.splitlines()[-1] == (
            f"bertlearn: 1 of the model's tensors loaded from finetuned_wgts_path {tmp_path / 'w.safetensors'}")


class TestHeadLabels:
    """A trained head's outputs keep their meaning when its checkpoint is loaded for data that lists the labels
    in another order (Hugging Face itself loads the rows by position)."""

    TEXTS = ["good fun", "the acting was poor", "a lovely film", "boring"]

    def test_the_same_labels_in_another_order_are_reordered(self, trained_learner, tmp_path):
        from bertlearn import BertDataBunch, BertLearner
        folder = trained_learner.save_model(tmp_path / "m")
        db = BertDataBunch.from_df(make_texts(32), make_texts(16, seed=3), str(folder), labels=["positive", "negative"],
                                   bs=8, maxlen=64, device="cpu")
        learner = BertLearner.from_pretrained_model(db, str(folder), None, "cpu", None, output_dir=tmp_path / "o")
        assert learner.model.config.id2label == {0: "positive", 1: "negative"} and not learner.fresh_head
        for mine, theirs in zip(learner.predict_batch(self.TEXTS), trained_learner.predict_batch(self.TEXTS)):
            assert dict(mine) == pytest.approx(dict(theirs), abs=1e-6)

    def test_other_label_names_are_an_error_or_a_new_head(self, trained_learner, tmp_path):
        from bertlearn import BertDataBunch, BertLearner
        folder = trained_learner.save_model(tmp_path / "m")
        df = make_texts(32).replace({"label": {"positive": "pos", "negative": "neg"}})
        db = BertDataBunch.from_df(df, df, str(folder), bs=8, maxlen=64, device="cpu")
        with pytest.raises(ModelError) as e:
            BertLearner.from_pretrained_model(db, str(folder), None, "cpu", None, output_dir=tmp_path / "o")
        assert str(e.value) == (
            f"pretrained_path {str(folder)!r} has a trained classification head for the labels ['negative', "
            "'positive'], but the data's labels are ['neg', 'pos']: loading it would give those outputs the data's "
            "names by position. Give the data the checkpoint's label names (labels.csv or labels=), or pass "
            "ignore_mismatched_sizes=True to start a new output layer")
        with pytest.warns(UserWarning, match="ignore_mismatched_sizes=True starts a new output layer"):
            learner = BertLearner.from_pretrained_model(db, str(folder), None, "cpu", None, output_dir=tmp_path / "o",
                                                        ignore_mismatched_sizes=True)
        assert learner.fresh_head


class TestSplitter:
    @pytest.mark.parametrize("kind", ["bert", "distilbert", "roberta", "electra"])
    def test_groups_are_embeddings_layers_head_without_name_sniffing(self, kind):
        from transformers import CONFIG_MAPPING
        kw = dict(vocab_size=99, hidden_size=32, num_hidden_layers=3, num_attention_heads=4, intermediate_size=37)
        if kind == "distilbert":
            kw = dict(vocab_size=99, dim=32, n_layers=3, n_heads=4, hidden_dim=37)
        if kind == "electra":
            kw["embedding_size"] = 16
        config = CONFIG_MAPPING[kind](num_labels=2, **kw)
        model = AutoModelForSequenceClassification.from_config(config)
        groups = bert_splitter(model)
        assert len(groups) == 5  # embeddings, 3 layers, head
        ids = [{id(p) for p in g} for g in groups]
        assert sum(len(g) for g in ids) == len({id(p) for p in model.parameters()})
        emb = model.get_input_embeddings().weight
        assert id(emb) in ids[0]
        head_params = {id(p) for n, p in model.named_parameters() if "classifier" in n}
        assert head_params <= ids[-1]

    @pytest.mark.parametrize("kind", ["xlm", "flaubert"])
    def test_a_layer_is_the_ith_module_of_each_parallel_list(self, kind):
        """XLM and FlauBERT keep each block's attention, norms and feed-forward in parallel lists; the largest list
        alone (the feed-forwards) was taken for the blocks, so freeze() left every attention and norm of the
        encoder to the embedding or head group (trained while frozen) and layer_decay gave them the wrong rates."""
        from transformers import CONFIG_MAPPING
        config = CONFIG_MAPPING[kind](vocab_size=99, emb_dim=32, n_layers=3, n_heads=4, num_labels=2,
                                      use_lang_emb=False)
        model = AutoModelForSequenceClassification.from_config(config)
        names = {id(p): n for n, p in model.named_parameters()}
        groups = [sorted(names[id(p)] for p in g) for g in bert_splitter(model)]
        base = model.base_model_prefix
        assert len(groups) == 5 and sum(map(len, groups)) == len(names)
        assert groups[0] == sorted(n for n in names.values() if n.split(".")[1] in ("position_embeddings",
                                                                                  "embeddings", "layer_norm_emb"))
        for i in range(3):
            assert groups[1 + i] == sorted(n for n in names.values() if n.startswith(base) and
                                           n.split(".")[2] == str(i)), groups[1 + i]
            assert {n.split(".")[1] for n in groups[1 + i]} == {"attentions", "layer_norm1", "ffns", "layer_norm2"}
        assert all(not n.startswith(base + ".") for n in groups[-1])


class TestArchitectures:
    """Any encoder that AutoModelForSequenceClassification knows trains, saves and serves; nothing is keyed
    on the architecture's name."""

    @pytest.fixture(scope="class", params=ARCHITECTURES)
    def arch_dir(self, request, tmp_path_factory):
        return request.param, build_tiny_architecture(request.param, tmp_path_factory.mktemp(request.param))

    @pytest.mark.parametrize("pairs", [False, True], ids=["single", "pairs"])
    def test_encoding_equals_calling_the_tokenizer(self, arch_dir, pairs):
        """The encoder calls the Rust backend directly (a third faster); the ids must be the tokenizer's own."""
        from transformers import AutoTokenizer

        from bertlearn.data import TextEncoder

        tok = AutoTokenizer.from_pretrained(arch_dir[1])
        texts = make_texts(40, seed=3)["text"].tolist() + ["", "Ünïcode Café!", "good " * 60]
        others = [t[::-1] for t in texts]
        enc = TextEncoder(tok, 24, ["a", "b"], pairs=pairs)
        got = enc.encode(texts, others if pairs else None)
        assert enc._backend() is not None  # the fast path was taken
        # asked for explicitly: transformers 5's ALBERT tokenizer leaves them out by default (transformers#48128)
        ref = tok(texts, others if pairs else None, truncation=True, max_length=24,
                  return_token_type_ids=enc.with_token_types or None)
        assert got["ids"].tolist() == ref["input_ids"]
        if enc.with_token_types:
            assert got["type_ids"].tolist() == ref["token_type_ids"]

    @pytest.mark.parametrize("pairs", [False, True], ids=["single", "pairs"])
    def test_trains_saves_and_serves(self, arch_dir, pairs, tmp_path):
        from transformers import pipeline

        from bertlearn import BertClassificationPredictor, BertDataBunch, BertLearner

        kind, folder = arch_dir
        train, valid = make_texts(64, seed=1), make_texts(32, seed=2)
        text_col = "text"
        if pairs:
            for df in (train, valid):
                df["other"] = df["text"].str.split().str[:3].str.join(" ")
            text_col = ["text", "other"]
        db = BertDataBunch.from_df(train, valid, str(folder), text_col=text_col, bs=16, maxlen=48, device="cpu")
        learner = BertLearner.from_pretrained_model(db, str(folder), None, "cpu", None, output_dir=tmp_path)
        assert type(learner.model).__name__.lower().startswith(kind.replace("-", ""))
        groups = learner.splitter(learner.model)
        assert len(groups) == (3 if kind == "albert" else 4)  # ALBERT shares one layer's weights across depth
        with learner.no_bar(), learner.no_logging():
            learner.fit(1, lr=1e-3)
        assert np.isfinite(learner.recorder.values[-1][0])
        texts = list(zip(valid["text"], valid["other"])) if pairs else valid["text"].tolist()
        expected = learner.predict_logits(texts).softmax(-1)
        out = learner.save_model(tmp_path / "saved")
        predictor = BertClassificationPredictor(out)
        assert predictor.padding_skippable  # on a CPU its linear layers skip padding: the probe found no change
        served = predictor.predict_logits(texts).softmax(-1)
        torch.testing.assert_close(served, expected, atol=1e-5, rtol=1e-4)
        long = (texts[3][0] + " ") * 6 if pairs else (texts[3] + " ") * 6
        short = [("good", "fine"), ("bad", "dull"), ("ok", "so")] if pairs else ["good", "bad", "ok"]
        mixed = short + [(long, texts[3][1]) if pairs else long]  # one batch, mostly padding
        import bertlearn.predict as predict_module
        with pytest.MonkeyPatch.context() as mp:
            seen = spy_skips(mp, predict_module)
            mp.setattr(predictor, "batch_overhead", None)  # no padding-aware cut: the four texts in one batch
            skipped = predictor.predict_logits(mixed).softmax(-1)
        assert seen == [True], seen  # the comparison below is of a batch whose padding was skipped
        torch.testing.assert_close(skipped, learner.predict_logits(mixed).softmax(-1), atol=1e-5, rtol=1e-4)
        if not pairs:
            clf = pipeline("text-classification", model=str(out), device=-1, top_k=None)
            scores = {d["label"]: d["score"] for d in clf([texts[0]])[0]}
            assert set(scores) == {"negative", "positive"}
            assert scores["positive"] == pytest.approx(float(expected[0, 1]), abs=1e-5)


class TestCompile:
    def test_bad_value_names_what_is_allowed(self):
        with pytest.raises(ModelError) as e:
            compile_model(torch.nn.Linear(2, 2), "yes")
        assert str(e.value) == ("compile='yes' is not a bool or a dict of torch.compile options; pass True, False or "
                                "e.g. {'mode': 'max-autotune-no-cudagraphs'}")

    def test_cuda_graph_modes_are_refused_with_the_reason(self):
        with pytest.raises(ModelError, match="compile mode 'reduce-overhead' captures CUDA graphs.*use mode 'default'"):
            compile_model(torch.nn.Linear(2, 2), {"mode": "reduce-overhead"})

    def test_false_leaves_the_model_eager(self):
        layer = torch.nn.Linear(2, 2)
        assert compile_model(layer, False) is False and compile_model(layer, None) is False
        assert getattr(layer, "_compiled_call_impl", None) is None

    @pytest.mark.slow
    def test_compiled_training_gives_the_eager_losses(self, tiny_model_dir, tmp_path):
        """Same data, seed and weights, dropout off (compiled code draws other random numbers): the compiled fit
        must record the eager fit's losses, validate and predict alike, and save / export a plain model."""
        import json
        import shutil

        from transformers import BertForSequenceClassification

        from bertlearn import BertClassificationPredictor, BertDataBunch, BertLearner, load_learner

        folder = tmp_path / "no-dropout"
        shutil.copytree(tiny_model_dir, folder)
        config = json.loads((folder / "config.json").read_text())
        config.update(hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0)
        (folder / "config.json").write_text(json.dumps(config))
        texts = make_texts(40, seed=9)["text"].tolist()
        runs = {}
        for compiled in (False, True):
            db = BertDataBunch.from_df(make_texts(64, seed=1), make_texts(32, seed=2), str(folder), bs=16, maxlen=64,
                                       device="cpu", seed=0)
            learner = BertLearner.from_pretrained_model(db, str(folder), None, "cpu", None, seed=0, compile=compiled,
                                                        output_dir=tmp_path / f"out-{compiled}")
            assert (getattr(learner.model, "_compiled_call_impl", None) is not None) == compiled
            with learner.no_bar(), learner.no_logging():
                learner.fit(2, lr=1e-3)
            runs[compiled] = (torch.stack([torch.as_tensor(l) for l in learner.recorder.losses]),
                              learner.validate(quiet=True)["loss"], learner.predict_logits(texts))
        eager, graphed = runs[False], runs[True]
        assert len(graphed[0]) == 8  # 64 rows / 16 per batch x 2 epochs
        torch.testing.assert_close(graphed[0], eager[0], atol=1e-5, rtol=1e-4)
        assert graphed[1] == pytest.approx(eager[1], abs=1e-5)
        torch.testing.assert_close(graphed[2], eager[2], atol=1e-5, rtol=1e-4)

        assert type(learner.model) is BertForSequenceClassification
        assert not any("_orig_mod" in k for k in learner.model.state_dict())
        saved = learner.save_model(tmp_path / "saved")
        served = BertClassificationPredictor(saved, compile=True)
        assert served.model._compiled_call_impl is not None
        torch.testing.assert_close(served.predict_logits(texts), eager[2], atol=1e-5, rtol=1e-4)
        exported = load_learner(learner.export("export.pkl"))  # the compiled function is not pickled
        assert getattr(exported.model, "_compiled_call_impl", None) is None
        torch.testing.assert_close(exported.predict_logits(texts), eager[2], atol=1e-5, rtol=1e-4)


@pytest.mark.parametrize("kind, places, tokens", [
    ("bert", 512, 512), ("distilbert", 512, 512), ("electra", 512, 512), ("deberta-v2", 512, 512),
    ("roberta", 514, 512), ("xlm-roberta", 514, 512), ("mpnet", 514, 512), ("ibert", 514, 512),  # from padding_idx+1
    ("lxmert", 512, 512),  # a padding row in its table, but positions count from 0
])
def test_position_limit_is_the_tokens_a_position_table_holds(kind, places, tokens):
    # before, I-BERT's quantized table was not seen (514, and an IndexError at 513) and LXMERT lost a place
    import transformers as T

    from bertlearn.model import position_limit
    size = dict(vocab_size=100, hidden_size=32, num_attention_heads=4, intermediate_size=37)
    if kind == "distilbert":
        config = T.DistilBertConfig(vocab_size=100, dim=32, n_layers=1, n_heads=4, hidden_dim=37)
    elif kind == "lxmert":
        config = T.LxmertConfig(**size, l_layers=1, x_layers=1, r_layers=1)
    else:
        config = T.CONFIG_MAPPING[kind](**size, num_hidden_layers=1, max_position_embeddings=places)
    model = T.LxmertModel(config) if kind == "lxmert" else T.AutoModel.from_config(config)
    assert (config.max_position_embeddings, position_limit(model)) == (places, tokens)


def test_a_half_precision_checkpoint_trains_and_predicts_on_float32_weights(tmp_path, tiny_model_dir):
    # transformers 5 loads dtype="auto": a checkpoint saved in bfloat16 trained in it (AdamW's state too), so
    # updates below bf16's spacing were lost (14.5% of a layer's weights moved in 6 steps at 2e-5, all of them from
    # the float32 copy), while the fit said "float32"; the saved folder and its predictor were bf16 too
    import transformers as T

    from bertlearn import BertClassificationPredictor, BertDataBunch, BertLearner, embed
    from conftest import quiet_fit
    half = T.AutoModel.from_pretrained(tiny_model_dir).to(torch.bfloat16)
    half.save_pretrained(tmp_path / "bf16")
    T.AutoTokenizer.from_pretrained(tiny_model_dir).save_pretrained(tmp_path / "bf16")
    assert AutoConfig.from_pretrained(tmp_path / "bf16").dtype == torch.bfloat16
    df = make_texts(32, seed=1)
    db = BertDataBunch.from_df(df, df[:8], str(tmp_path / "bf16"), bs=8, maxlen=32, device="cpu")
    learner = BertLearner.from_pretrained_model(db, str(tmp_path / "bf16"), None, "cpu", None, seed=0,
                                                output_dir=tmp_path / "out")
    assert {p.dtype for p in learner.model.parameters()} == {torch.float32}
    word = learner.model.base_model.embeddings.word_embeddings.weight
    assert torch.equal(word, half.embeddings.word_embeddings.weight.float())  # the checkpoint's values, upcast
    before = learner.model.base_model.encoder.layer[0].attention.self.query.weight.detach().clone()
    quiet_fit(learner, 1, lr=2e-5)
    after = learner.model.base_model.encoder.layer[0].attention.self.query.weight.detach()
    assert bool((after != before).all())
    assert {v.dtype for s in learner.opt.opt.state.values() for v in s.values() if v.is_floating_point()} == \
        {torch.float32}
    predictor = BertClassificationPredictor(learner.save_model(tmp_path / "saved"), device="cpu", precision="fp32")
    assert {p.dtype for p in predictor.model.parameters()} == {torch.float32}
    assert embed(["good film"], str(tmp_path / "bf16")).dtype == np.float32
