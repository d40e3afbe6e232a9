"""Contextual embeddings: shapes, word merging, errors, and the polysemy property on the packaged model."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
import torch

from bertlearn import BertLearnError, DataError, ModelError, cosine_similarity_matrix, embed, word_in_context
from bertlearn.embed import EXAMPLE_SENSES, project_2d, sense_separation

SENSES = EXAMPLE_SENSES


class TestEmbedTiny:
    def test_cls_mean_and_layers(self, tiny_model_dir):
        texts = ["good movie", "a really bad film was it"]
        cls = embed(texts, str(tiny_model_dir), pooling="cls", device="cpu")
        mean = embed(texts, str(tiny_model_dir), pooling="mean", device="cpu")
        assert cls.shape == mean.shape == (2, 32) and cls.dtype == np.float32
        assert not np.allclose(cls, mean)
        first = embed(texts, str(tiny_model_dir), layer=0, pooling="mean", device="cpu")
        both = embed(texts, str(tiny_model_dir), layer=[0, -1], pooling="mean", device="cpu")
        np.testing.assert_allclose(both, (first + mean) / 2, atol=1e-5)

    def test_batching_and_order_do_not_change_vectors(self, tiny_model_dir):
        texts = ["good", "a really bad film was it the plot", "fine acting"]
        one_by_one = np.concatenate([embed([t], str(tiny_model_dir), device="cpu") for t in texts])
        batched = embed(texts, str(tiny_model_dir), bs=2, device="cpu")
        np.testing.assert_allclose(batched, one_by_one, atol=1e-5)

    def test_tokens_merge_word_pieces(self, tiny_model_dir):
        out = embed(["goodz movie"], str(tiny_model_dir), pooling="tokens", device="cpu")[0]
        assert out.words == ["goodz", "movie"]  # "goodz" is several word pieces in the tiny vocabulary
        assert out.vectors.shape == (2, 32)

    def test_learner_embed_uses_the_fine_tuned_encoder(self, trained_learner):
        texts = ["good movie", "bad film"]
        ours = trained_learner.embed(texts, pooling="mean")
        direct = embed(texts, trained_learner, pooling="mean")
        np.testing.assert_allclose(ours, direct)
        assert ours.shape == (2, 32)

    def test_errors(self, tiny_model_dir):
        with pytest.raises(BertLearnError, match=r"pooling='max' is not one of \['cls', 'mean', 'tokens'\]"):
            embed(["x"], str(tiny_model_dir), pooling="max")
        with pytest.raises(BertLearnError, match=r"layer=7 is out of range: this model has hidden states 0 "
                                                 r"\(embeddings\) to 2 \(last layer\)"):
            embed(["good"], str(tiny_model_dir), layer=7, device="cpu")
        with pytest.raises(DataError, match=r"word 'bank' does not occur in sentences \[1\] "
                                            r"\(e.g. 'the film was good'\)"):
            word_in_context("bank", ["the bank was good", "the film was good"], str(tiny_model_dir))
        with pytest.raises(DataError, match="word='two words' must be a single non-empty word"):
            word_in_context("two words", ["two words"], str(tiny_model_dir))
        # a zero-width space is no token: its vector was the special tokens' alone
        with pytest.raises(DataError, match=r"^texts: items \[1, 2\] are not non-empty strings \(a text of only "
                                            r"whitespace or invisible characters has nothing to embed\)$"):
            embed(["good", " ", "\u200b"], str(tiny_model_dir), device="cpu")


def test_word_in_context_handles_case_and_subwords(tiny_model_dir):
    wic = word_in_context("Goodz", ["the goodz movie", "GOODZ it was"], str(tiny_model_dir), device="cpu")
    assert wic.contextual.shape == (2, 32) and wic.static.shape == (32,)
    assert wic.spans == [(4, 9), (0, 5)]
    assert not np.allclose(wic.contextual[0], wic.contextual[1])


@pytest.mark.slow
@pytest.mark.parametrize("word", list(SENSES))
def test_contextual_vectors_cluster_by_sense_static_ones_cannot(word):
    senses = [sense for sense, sents in SENSES[word].items() for _ in sents]
    sentences = [s for sents in SENSES[word].values() for s in sents]
    wic = word_in_context(word, sentences, None, device="cpu")  # the packaged all-MiniLM-L6-v2
    sep = sense_separation(cosine_similarity_matrix(wic.contextual), senses)
    assert sep["same_sense"] > sep["cross_sense"] + 0.02, sep
    assert sep["closest_to_own_sense"] >= 0.75, sep
    static = cosine_similarity_matrix(np.stack([wic.static] * len(sentences)))
    assert np.allclose(static, 1.0)  # one vector for every sentence: no sense can be told apart


def test_sense_separation_and_projection():
    sim = np.array([[1, .9, .1], [.9, 1, .2], [.1, .2, 1]])
    sep = sense_separation(sim, ["a", "a", "b"])
    assert sep["same_sense"] == pytest.approx(0.9) and sep["cross_sense"] == pytest.approx(0.15)
    assert sep["closest_to_own_sense"] == 1.0
    points = project_2d(np.random.default_rng(0).normal(size=(5, 8)))
    assert points.shape == (5, 2)


def test_hidden_states_match_transformers_and_the_learner_still_exports(trained_learner, tmp_path):
    import copy
    texts = ["good movie", "a really bad film was it"]
    ours = embed(texts, trained_learner, layer=[0, 1, 2], pooling="mean")
    reference = copy.deepcopy(trained_learner.model.base_model).eval()
    tok = trained_learner.dls.encoder.tokenizer
    with torch.no_grad():
        expected = []
        for t in texts:
            enc = tok(t, return_tensors="pt")
            hs = reference(**enc, output_hidden_states=True).hidden_states
            expected.append(torch.stack([hs[0], hs[1], hs[2]]).mean(0)[0].mean(0).numpy())
    np.testing.assert_allclose(ours, np.stack(expected), atol=1e-5)
    trained_learner.export(tmp_path / "after_embed.pkl")  # no permanent hooks left on the model


def test_the_packaged_model_embeds_as_sentence_transformers_does_by_default():
    from transformers import AutoModel, AutoTokenizer

    from bertlearn.model import default_model_path
    texts = ["I ate an apple", "Apple released a phone", "the river bank was muddy"]
    ours = embed(texts, device="cpu")
    # by hand from the folder's own files: mean over the tokens of the last hidden state, then length 1
    path = str(default_model_path())
    tok, model = AutoTokenizer.from_pretrained(path), AutoModel.from_pretrained(path).eval()
    with torch.no_grad():
        for i, text in enumerate(texts):
            h = model(**tok(text, return_tensors="pt")).last_hidden_state[0].mean(0).numpy()
            np.testing.assert_allclose(ours[i], h / np.linalg.norm(h), atol=1e-6)
    np.testing.assert_allclose(np.linalg.norm(ours, axis=1), 1.0, atol=1e-6)
    st = pytest.importorskip("sentence_transformers")
    np.testing.assert_allclose(ours, st.SentenceTransformer(path, device="cpu").encode(texts), atol=1e-6)
    # what was asked is what is done: cls, not normalised
    cls = embed(texts, pooling="cls", normalize=False, device="cpu")
    with torch.no_grad():
        first = model(**tok(texts[0], return_tensors="pt")).last_hidden_state[0, 0].numpy()
    np.testing.assert_allclose(cls[0], first, atol=1e-5)


def test_a_text_cut_on_the_left_is_said_to_keep_its_last_tokens(tiny_model_dir, tmp_path, recwarn):
    # before: a tokenizer that truncates on the left kept each cut text's end and the warning said "first"
    import shutil

    from transformers import AutoTokenizer
    folder = shutil.copytree(tiny_model_dir, tmp_path / "left")
    AutoTokenizer.from_pretrained(tiny_model_dir, truncation_side="left").save_pretrained(folder)
    texts = ["good movie", "a really bad film was it the plot was dull"]
    cut = embed(texts, str(folder), maxlen=6, pooling="mean", device="cpu")
    said = [str(w.message) for w in recwarn.list if "longer than maxlen" in str(w.message)]
    assert said == ["embed: 1 of 2 texts are longer than maxlen=6 tokens (text 1 the first) and were cut to their "
                    "last 6; their vectors describe only that part. Split long texts, or pass a larger maxlen (up "
                    "to 512)"]
    end = embed(["the plot was dull"], str(folder), pooling="mean", device="cpu")
    np.testing.assert_allclose(cut[1], end[0], atol=1e-5)


def test_a_text_cut_to_maxlen_is_said(tiny_model_dir, recwarn):
    texts = ["good movie", "a really bad film was it the plot was dull", "fine"]
    short = embed(texts, str(tiny_model_dir), maxlen=6, pooling="mean", device="cpu")
    said = [str(w.message) for w in recwarn.list if "longer than maxlen" in str(w.message)]
    assert [w.filename for w in recwarn.list if "longer than maxlen" in str(w.message)] == [__file__]  # the caller's
    assert said == ["embed: 1 of 3 texts are longer than maxlen=6 tokens (text 1 the first) and were cut to their "
                    "first 6; their vectors describe only that part. Split long texts, or pass a larger maxlen (up "
                    "to 512)"]
    # the cut text's vector is that of its first 6 tokens (4 words and the two specials here)
    start = embed(["a really bad film"], str(tiny_model_dir), pooling="mean", device="cpu")
    np.testing.assert_allclose(short[1], start[0], atol=1e-5)
    recwarn.clear()
    embed(texts, str(tiny_model_dir), pooling="mean", device="cpu")
    assert not [w for w in recwarn.list if "longer than maxlen" in str(w.message)]


def test_a_sentence_transformers_folder_pooling_another_way_is_refused_until_pooling_is_given(tiny_model_dir, tmp_path):
    import json
    import shutil
    folder = tmp_path / "st"
    shutil.copytree(tiny_model_dir, folder)
    (folder / "modules.json").write_text(json.dumps([
        {"idx": 0, "name": "0", "path": "", "type": "sentence_transformers.models.Transformer"},
        {"idx": 1, "name": "1", "path": "1_Pooling", "type": "sentence_transformers.models.Pooling"}]))
    (folder / "1_Pooling").mkdir()
    (folder / "1_Pooling" / "config.json").write_text(json.dumps({"pooling_mode_cls_token": False,
                                                                  "pooling_mode_max_tokens": True}))
    with pytest.raises(BertLearnError, match=r"^model='.*st': its sentence-transformers Pooling uses "
                                             r"\['pooling_mode_max_tokens'\]; embed pools by 'cls' or 'mean' only: "
                                             r"pass pooling= to choose one knowingly, or use sentence-transformers "
                                             r"for this model$"):
        embed(["good"], str(folder), device="cpu")
    np.testing.assert_allclose(embed(["good"], str(folder), pooling="mean", device="cpu"),
                               embed(["good"], str(tiny_model_dir), pooling="mean", device="cpu"), atol=1e-6)
    # a module embed does not run (a Dense projection, as LaBSE has): refused until pooling= is given
    (folder / "1_Pooling" / "config.json").write_text(json.dumps({"pooling_mode_cls_token": True}))
    (folder / "modules.json").write_text(json.dumps([
        {"idx": 0, "name": "0", "path": "", "type": "sentence_transformers.models.Transformer"},
        {"idx": 1, "name": "1", "path": "1_Pooling", "type": "sentence_transformers.models.Pooling"},
        {"idx": 2, "name": "2", "path": "2_Dense", "type": "sentence_transformers.models.Dense"}]))
    with pytest.raises(BertLearnError, match=r"its sentence-transformers modules include "
                                             r"\['sentence_transformers\.models\.Dense'\], which embed does not run"):
        embed(["good"], str(folder), device="cpu")
    with pytest.raises(BertLearnError, match=r"^normalize=True scales sentence vectors \(pooling 'cls' or 'mean'\); "
                                             r"pooling='tokens' returns one vector per word"):
        embed(["good"], str(folder), pooling="tokens", normalize=True, device="cpu")
    (folder / "modules.json").write_text(json.dumps([
        {"idx": 0, "name": "0", "path": "", "type": "sentence_transformers.models.Transformer"},
        {"idx": 1, "name": "1", "path": "1_Pooling", "type": "sentence_transformers.models.Pooling"}]))
    # a folder that pools by [CLS] (no Normalize module): cls, not normalised, by default
    (folder / "1_Pooling" / "config.json").write_text(json.dumps({"pooling_mode_cls_token": True}))
    np.testing.assert_allclose(embed(["good"], str(folder), device="cpu"),
                               embed(["good"], str(tiny_model_dir), pooling="cls", device="cpu"), atol=1e-6)


def test_the_static_vector_is_that_of_the_pieces_the_sentences_hold(tmp_path):
    from transformers import AutoModel, AutoTokenizer

    from conftest import build_tiny_architecture
    folder = build_tiny_architecture("roberta", tmp_path / "roberta")  # byte-level BPE: "Ġmovie" inside a sentence
    wic = word_in_context("movie", ["the movie was good", "a very dull movie"], str(folder), device="cpu")
    tok = AutoTokenizer.from_pretrained(str(folder))
    inside, alone = tok(" movie", add_special_tokens=False)["input_ids"], tok("movie", add_special_tokens=False)[
        "input_ids"]
    assert inside != alone  # the word starts with its space marker inside a sentence
    table = AutoModel.from_pretrained(str(folder)).get_input_embeddings().weight.detach().numpy()
    np.testing.assert_allclose(wic.static, table[inside].mean(0), atol=1e-6)


def test_a_missing_folder_and_an_unreachable_hub_name_fail_clearly(tiny_model_dir, tmp_path, recwarn):
    import json
    import shutil

    from bertlearn import ModelError
    with pytest.raises(ModelError, match="does not exist"):  # the model loader's message, not the hub client's
        embed(["good"], str(tmp_path / "does" / "not" / "exist"), device="cpu")
    with pytest.raises(ModelError):  # offline (the tests' HF_HUB_OFFLINE) and not cached: said before it fails
        embed(["good"], "someone/never-cached-model", device="cpu")
    said = [str(w.message) for w in recwarn.list if "could not look for" in str(w.message)]
    assert said == ["embed: could not look for modules.json of 'someone/never-cached-model' (LocalEntryNotFoundError), "
                    "so whether it is a sentence-transformers model (mean pooling, normalised) is unknown; the "
                    "defaults stay 'cls', not normalised. Pass pooling=, normalize= and maxlen= to choose"]
    # sentence-transformers >= 6 names the mode ({"pooling_mode": "mean"}) instead of one flag per mode
    folder = tmp_path / "st6"
    shutil.copytree(tiny_model_dir, folder)
    (folder / "modules.json").write_text(json.dumps([
        {"idx": 0, "name": "0", "path": "", "type": "sentence_transformers.base.modules.transformer.Transformer"},
        {"idx": 1, "name": "1", "path": "1_Pooling",
         "type": "sentence_transformers.sentence_transformer.modules.pooling.Pooling"}]))
    (folder / "1_Pooling").mkdir()
    (folder / "1_Pooling" / "config.json").write_text(json.dumps({"pooling_mode": "mean"}))
    np.testing.assert_allclose(embed(["good movie"], str(folder), device="cpu"),
                               embed(["good movie"], str(tiny_model_dir), pooling="mean", device="cpu"), atol=1e-6)


@pytest.mark.parametrize("kind", ["modernbert", "deberta-v2-conv", "xlm", "flaubert"])
def test_layers_are_the_states_the_model_carries_on_and_minus_one_is_its_output(kind, tiny_tokenizer):
    # ModernBERT normalises the last block's output outside the blocks, DeBERTa-v2 adds a convolution to the first
    # block's output: states read from the blocks' outputs were not the model's (before the fix, layer=-1 on
    # ModernBERT was the un-normalised state, and layer=1 on DeBERTa-v2 was missing the convolution). XLM and
    # FlauBERT keep each block's parts in parallel lists: layer i was the input of the i-th feed-forward (after
    # attention and the first norm), not the block's
    import transformers as T
    size = dict(vocab_size=len(tiny_tokenizer), pad_token_id=tiny_tokenizer.pad_token_id, hidden_size=32,
                num_hidden_layers=2, num_attention_heads=4, intermediate_size=37, max_position_embeddings=512)
    if kind in ("xlm", "flaubert"):
        config = T.CONFIG_MAPPING[kind](vocab_size=len(tiny_tokenizer), emb_dim=32, n_layers=2, n_heads=4,
                                        pad_index=tiny_tokenizer.pad_token_id, use_lang_emb=False)
    elif kind == "modernbert":
        config = T.ModernBertConfig(**size, cls_token_id=tiny_tokenizer.cls_token_id,
                                    sep_token_id=tiny_tokenizer.sep_token_id, bos_token_id=None, eos_token_id=None)
    else:
        config = T.DebertaV2Config(**size, conv_kernel_size=3)
    torch.manual_seed(0)
    model = T.AutoModel.from_config(config).eval()
    texts = ["good movie", "a really bad film was it"]
    with torch.no_grad():
        # embed sends ids and mask (FlauBERT would add an embedding row for the tokenizer's token types)
        runs = [model(**tiny_tokenizer(t, return_tensors="pt", return_token_type_ids=False), output_hidden_states=True)
                for t in texts]
    for layer in (0, 1):
        ours = embed(texts, model, tokenizer=tiny_tokenizer, layer=layer, pooling="mean")
        np.testing.assert_allclose(ours, np.stack([r.hidden_states[layer][0].mean(0).numpy() for r in runs]),
                                   atol=1e-5)
    output = np.stack([r.last_hidden_state[0].mean(0).numpy() for r in runs])
    for layer in (-1, 2):
        np.testing.assert_allclose(embed(texts, model, tokenizer=tiny_tokenizer, layer=layer, pooling="mean"),
                                   output, atol=1e-5)


def test_a_model_whose_blocks_embed_cannot_read_gives_only_its_output(tiny_tokenizer):
    """Funnel keeps its blocks in lists of lists, never called as modules: no state was captured, and layer=0 gave
    the encoder's output as if it were the embeddings."""
    import transformers as T
    config = T.FunnelConfig(vocab_size=len(tiny_tokenizer), d_model=32, n_head=4, d_head=8, d_inner=37,
                            block_sizes=[1, 1], num_decoder_layers=1)
    torch.manual_seed(0)
    model = T.FunnelModel(config).eval()
    with pytest.raises(BertLearnError, match=r"^layer=0: embed found no transformer block of FunnelModel that runs as "
                                             r"a module it can read \(Funnel nests its blocks in lists of lists\), so "
                                             r"only layer=-1, the encoder's output, is available$"):
        embed(["good movie"], model, tokenizer=tiny_tokenizer, layer=0, pooling="mean")
    with pytest.raises(BertLearnError, match=r"^layer=2: embed found no transformer block of FunnelModel"):
        embed(["good movie"], model, tokenizer=tiny_tokenizer, layer=2, pooling="mean")
    np.testing.assert_allclose(embed(["good movie"], model, tokenizer=tiny_tokenizer, layer=[-1, -1], pooling="mean"),
                               embed(["good movie"], model, tokenizer=tiny_tokenizer, pooling="mean"), atol=1e-6)
    with torch.no_grad():
        out = model(**tiny_tokenizer("good movie", return_tensors="pt", return_token_type_ids=False))
    np.testing.assert_allclose(embed(["good movie"], model, tokenizer=tiny_tokenizer, pooling="mean")[0],
                               out.last_hidden_state[0].mean(0).numpy(), atol=1e-5)


def test_sizes_and_devices_embed_cannot_use_are_refused_with_the_fix(tiny_model_dir, tiny_tokenizer, trained_learner):
    # before: bs=0 crashed in range(), maxlen past the position table in the embedding lookup, and device= moved a
    # given model's encoder alone, leaving its head behind
    with pytest.raises(BertLearnError, match=r"^bs=0: texts per forward pass must be a whole number >= 1 "
                                             r"\(e.g. bs=64\)$"):
        embed(["good"], str(tiny_model_dir), bs=0, device="cpu")
    with pytest.raises(BertLearnError, match=r"^bs=0: "):
        trained_learner.embed(["good"], bs=0)
    with pytest.raises(BertLearnError, match=r"^maxlen=600: the model takes at most 512 tokens in one input \(its "
                                             r"config's max_position_embeddings=512\); pass maxlen<=512, or leave "
                                             r"it out for the model's limit$"):
        embed(["good"], str(tiny_model_dir), maxlen=600, device="cpu")
    from transformers import AutoConfig, AutoModel
    config = AutoConfig.from_pretrained(tiny_model_dir)
    with torch.device("meta"):
        model = AutoModel.from_config(config)
    with pytest.raises(BertLearnError, match=r"^device='cpu': the model given is on meta, and embed runs a model it "
                                             r"was given where it is; move it first \(model.to\('cpu'\), for a "
                                             r"learner learner.model.to\(...\)\), or leave device out$"):
        embed(["good"], model, tokenizer=tiny_tokenizer, device="cpu")
    assert next(model.parameters()).device.type == "meta"  # not moved
    # the learner's own device is accepted
    np.testing.assert_allclose(embed(["good"], trained_learner, device="cpu", pooling="mean"),
                               trained_learner.embed(["good"], pooling="mean"))


def test_a_roberta_position_table_holds_two_tokens_fewer_than_its_places(tmp_path):
    # RoBERTa counts positions from padding_idx + 1: a table of 66 places holds 64 tokens. Before, the default
    # maxlen of such a model was 66 (a long text crashed in the embedding lookup) and maxlen=514 passed the check
    # on a 514-place table
    import transformers as T

    from conftest import build_tiny_architecture
    folder = build_tiny_architecture("roberta", tmp_path / "roberta")
    with pytest.raises(BertLearnError, match=r"^maxlen=513: the model takes at most 512 tokens in one input \(its "
                                             r"config's max_position_embeddings=514, of which its position table "
                                             r"holds 512 tokens\); pass maxlen<=512, "):
        embed(["good"], str(folder), maxlen=513, device="cpu")
    config = T.AutoConfig.from_pretrained(folder)
    config.max_position_embeddings = 66
    torch.manual_seed(0)
    model = T.AutoModel.from_config(config).eval()
    tok = T.AutoTokenizer.from_pretrained(folder)
    text = " ".join(["good movie"] * 60)
    with pytest.warns(UserWarning, match="cut"):
        ours = embed([text], model, tokenizer=tok, pooling="cls")
    with torch.no_grad():
        theirs = model(**tok(text, truncation=True, max_length=64, return_tensors="pt")).last_hidden_state[0, 0]
    np.testing.assert_allclose(ours[0], theirs.numpy(), atol=1e-5)
    with pytest.warns(UserWarning, match=r"Split long texts, or pass a larger maxlen \(up to 64\)$"):  # not 512
        embed([text], model, tokenizer=tok, pooling="cls", maxlen=10)


def test_a_sentence_transformers_length_is_kept_up_to_what_the_positions_take(tmp_path, tiny_tokenizer):
    # before, a folder's max_seq_length over 512 was cut to 512 without a word (a long-context model's own setting)
    import json

    import transformers as T
    config = T.BertConfig(vocab_size=len(tiny_tokenizer), hidden_size=32, num_hidden_layers=1, num_attention_heads=4,
                          intermediate_size=37, max_position_embeddings=1024)
    torch.manual_seed(0)
    model = T.BertModel(config).eval()
    for name, st_maxlen in (("long", 700), ("too-long", 2048)):
        folder = tmp_path / name
        model.save_pretrained(folder)
        tiny_tokenizer.save_pretrained(folder)
        (folder / "modules.json").write_text(json.dumps([
            {"idx": 0, "name": "0", "path": "", "type": "sentence_transformers.models.Transformer"},
            {"idx": 1, "name": "1", "path": "1_Pooling", "type": "sentence_transformers.models.Pooling"}]))
        (folder / "1_Pooling").mkdir()
        (folder / "1_Pooling" / "config.json").write_text(json.dumps({"pooling_mode_mean_tokens": True}))
        (folder / "sentence_bert_config.json").write_text(json.dumps({"max_seq_length": st_maxlen}))
    text = " ".join(["good"] * 1100)
    for name, kept in (("long", 700), ("too-long", 1024)):
        with warnings.catch_warnings(record=True) as said:
            warnings.simplefilter("always")
            ours = embed([text], str(tmp_path / name), device="cpu")
        with torch.no_grad():
            theirs = model(**tiny_tokenizer(text, truncation=True, max_length=kept, return_tensors="pt"))
        np.testing.assert_allclose(ours[0], theirs.last_hidden_state[0].mean(0).numpy(), atol=1e-5)
        told = [str(w.message) for w in said if "max_seq_length" in str(w.message)]
        assert told == ([] if name == "long" else [
            f"embed: {str(tmp_path / name)!r} says max_seq_length=2048 (sentence_bert_config.json), but the model "
            "takes at most 1024 tokens in one input; keeping 1024 (pass maxlen= to choose)"])


def test_device_cuda_is_whichever_gpu_a_given_model_is_on(monkeypatch):
    # before, device="cuda" was refused for a model on cuda:0 (torch.device("cuda") != torch.device("cuda:0"));
    # no GPU here, so the model's device is stood in for and resolve_device lets "cuda" through
    import types

    import bertlearn.device
    from bertlearn.embed import _place
    monkeypatch.setattr(bertlearn.device, "resolve_device", torch.device)
    on_gpu0 = types.SimpleNamespace(parameters=lambda: iter([types.SimpleNamespace(device=torch.device("cuda:0"))]))
    assert _place(on_gpu0, object(), "cuda") == torch.device("cuda:0")
    assert _place(on_gpu0, object(), "cuda:0") == torch.device("cuda:0")
    with pytest.raises(BertLearnError, match=r"^device='cuda:1': the model given is on cuda:0, "):
        _place(on_gpu0, object(), "cuda:1")


def test_a_maxlen_without_room_for_text_is_refused_as_training_refuses_it(tiny_model_dir):
    # before: maxlen=2 was accepted and every text became [CLS] [SEP] (the same vector for every text)
    with pytest.raises(DataError, match=r"^maxlen=2 leaves no room for text: BertTokenizer adds 2 special tokens to "
                                        r"every text; allowed: maxlen >= 3; give a larger maxlen, e.g. 128$"):
        embed(["good movie", "bad film"], str(tiny_model_dir), maxlen=2, device="cpu")
    with pytest.raises(BertLearnError, match=r"^maxlen='8': tokens kept per text must be a whole number "
                                             r"\(e.g. 256\)$"):
        embed(["good movie"], str(tiny_model_dir), maxlen="8", device="cpu")
    with pytest.warns(UserWarning, match=r"^embed: 1 of 1 texts are longer than maxlen=3 tokens"):
        tv = embed(["good movie"], str(tiny_model_dir), maxlen=3, pooling="tokens", device="cpu")
    assert tv[0].words == ["good"]  # the least maxlen keeps one word


def _lowercasing_folder(folder):
    """A sentence-transformers folder with a cased tokenizer (Good and good are different tokens) whose
    sentence_bert_config.json says do_lower_case."""
    import json

    from transformers import BertConfig, BertModel, BertTokenizer
    vocab = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", "good", "Good", "movie", "Movie", "bad", "the", "The"]
    BertTokenizer(vocab={w: i for i, w in enumerate(vocab)}, do_lower_case=False,
                  model_max_length=512).save_pretrained(folder)
    torch.manual_seed(0)
    BertModel(BertConfig(vocab_size=len(vocab), hidden_size=32, num_hidden_layers=2, num_attention_heads=4,
                         intermediate_size=37)).save_pretrained(folder)
    (folder / "modules.json").write_text(json.dumps([
        {"idx": 0, "name": "0", "path": "", "type": "sentence_transformers.models.Transformer"},
        {"idx": 1, "name": "1", "path": "1_Pooling", "type": "sentence_transformers.models.Pooling"},
        {"idx": 2, "name": "2", "path": "2_Normalize", "type": "sentence_transformers.models.Normalize"}]))
    (folder / "sentence_bert_config.json").write_text(json.dumps({"max_seq_length": 64, "do_lower_case": True}))
    (folder / "1_Pooling").mkdir()
    (folder / "1_Pooling" / "config.json").write_text(json.dumps({"word_embedding_dimension": 32,
                                                                  "pooling_mode_mean_tokens": True}))
    (folder / "2_Normalize").mkdir()
    return folder


def test_a_sentence_transformers_folder_that_lowercases_has_its_texts_lowercased(tmp_path):
    # before: sentence_bert_config.json's do_lower_case was not read, and "Good Movie" met the cased tokens
    # (vectors up to 0.139 away from sentence-transformers' own)
    from transformers import AutoTokenizer
    folder = _lowercasing_folder(tmp_path / "st")
    texts = ["Good Movie", "The good movie"]
    ours = embed(texts, str(folder), device="cpu")
    np.testing.assert_allclose(ours, embed([t.lower() for t in texts], str(folder), device="cpu"), atol=1e-6)
    st = pytest.importorskip("sentence_transformers")
    np.testing.assert_allclose(ours, st.SentenceTransformer(str(folder), device="cpu").encode(texts), atol=1e-6)
    # the words come back as the text has them; a tokenizer passed in is not changed
    tok = AutoTokenizer.from_pretrained(folder)
    words = embed(texts, str(folder), tokenizer=tok, pooling="tokens", device="cpu")
    assert [w.words for w in words] == [["Good", "Movie"], ["The", "good", "movie"]]
    assert tok("Good")["input_ids"] == [2, 6, 3]


def test_no_texts_give_no_vectors(tiny_model_dir):
    # before: an IndexError inside transformers' tokenizer call
    for pooling in ("cls", "mean"):
        out = embed([], str(tiny_model_dir), pooling=pooling, device="cpu")
        assert out.shape == (0, 32) and out.dtype == np.float32
    assert embed([], str(tiny_model_dir), pooling="mean", normalize=True, device="cpu").shape == (0, 32)
    assert embed([], str(tiny_model_dir), pooling="tokens", device="cpu") == []
    wic = word_in_context("goodz", [], str(tiny_model_dir), device="cpu")
    assert (wic.word, wic.sentences, wic.spans, wic.contextual.shape) == ("goodz", [], [], (0, 32))
    from transformers import AutoModel, AutoTokenizer
    pieces = AutoTokenizer.from_pretrained(tiny_model_dir)("goodz", add_special_tokens=False)["input_ids"]
    assert len(pieces) > 1
    table = AutoModel.from_pretrained(tiny_model_dir).get_input_embeddings().weight.detach().numpy()
    np.testing.assert_allclose(wic.static, table[pieces].mean(0), atol=1e-6)
    # the same static vector as a sentence holding the word gives, where the tokenizer splits it the same way
    np.testing.assert_allclose(wic.static, word_in_context("goodz", ["a goodz film"], str(tiny_model_dir),
                                                           device="cpu").static, atol=1e-6)


def test_a_tokenizer_larger_than_the_embedding_table_is_refused(tiny_model_dir):
    # before: a raw IndexError from torch.embedding on the first id past the table
    from bertlearn import ModelError
    from transformers import AutoModel
    model = AutoModel.from_pretrained(tiny_model_dir)
    said = (r"^tokenizer='all-MiniLM-L6-v2' has 30522 tokens, but the model's embedding table holds 81 \(ids 0 to "
            r"80\): ids past it cannot be looked up\. Pass the model's own tokenizer \(tokenizer= the folder or hub "
            r"name the model was saved with\), or, after adding tokens to a tokenizer, "
            r"model\.resize_token_embeddings\(len\(tokenizer\)\) and fine-tune$")
    with pytest.raises(ModelError, match=said):
        embed(["hello world"], model, tokenizer="all-MiniLM-L6-v2")
    with pytest.raises(ModelError, match=said):
        word_in_context("world", ["hello world"], model, tokenizer="all-MiniLM-L6-v2")
    # the tiny tokenizer has 80 tokens (its vocabulary has a gap) for 81 rows: a smaller tokenizer is fine
    assert embed(["good movie"], model, tokenizer=str(tiny_model_dir)).shape == (1, 32)


def test_sentencepiece_words_come_without_the_space_before_them(tmp_path):
    # before: DeBERTa-v2 / ALBERT pieces ("▁movie") covered the space before the word: words were ' movie'
    from conftest import build_tiny_architecture
    for kind in ("deberta-v2", "albert"):
        folder = build_tiny_architecture(kind, tmp_path / kind)
        out = embed(["the movie  was good"], str(folder), pooling="tokens", device="cpu")[0]
        assert out.words == ["the", "movie", "was", "good"]
        assert out.vectors.shape == (4, 32)


def test_a_dataframe_or_dict_given_as_texts_is_refused_with_the_column_to_pass(tiny_model_dir):
    # iterating a DataFrame gives its column names: embed(df) returned the vectors of "text" and "label", silently
    import pandas as pd
    df = pd.DataFrame({"text": ["good movie", "bad film", "fine acting"], "label": [1, 0, 1]})
    with pytest.raises(DataError) as e:
        embed(df, str(tiny_model_dir), device="cpu")
    assert str(e.value) == "texts: got a DataFrame with columns ['text', 'label']; pass its texts, e.g. df['text']"
    with pytest.raises(DataError) as e:
        embed({"text": "good movie"}, str(tiny_model_dir), device="cpu")
    assert str(e.value) == "texts: got a dict with keys ['text']; pass its texts, e.g. df['text']"
    with pytest.raises(DataError) as e:
        word_in_context("good", df, str(tiny_model_dir), device="cpu")
    assert str(e.value) == "sentences: got a DataFrame with columns ['text', 'label']; pass its texts, e.g. df['text']"
    # the column itself is what was meant
    np.testing.assert_allclose(embed(df["text"], str(tiny_model_dir), device="cpu"),
                               embed(df["text"].tolist(), str(tiny_model_dir), device="cpu"), atol=0)


def test_sentence_transformers_files_are_the_settings_laid_out_for_weights_at_the_top(tiny_model_dir, tmp_path,
                                                                                      recwarn):
    import json
    import shutil

    from bertlearn.embed import sentence_transformers_files
    from bertlearn.model import default_model_path
    packaged = default_model_path()
    files = sentence_transformers_files(None)  # the packaged MiniLM: Normalize has no folder there
    assert files == {"modules.json": (packaged / "modules.json").read_bytes(),
                     "sentence_bert_config.json": (packaged / "sentence_bert_config.json").read_bytes(),
                     "config_sentence_transformers.json": (packaged / "config_sentence_transformers.json").read_bytes(),
                     "1_Pooling/config.json": (packaged / "1_Pooling" / "config.json").read_bytes(),
                     "2_Normalize": None}
    assert sentence_transformers_files(str(tiny_model_dir)) == {}  # a plain checkpoint
    # older sentence-transformers kept the weights in 0_Transformer: not copied, the module points at the top
    folder = tmp_path / "old"
    shutil.copytree(tiny_model_dir, folder / "0_Transformer")
    (folder / "0_Transformer" / "sentence_bert_config.json").write_text('{"max_seq_length": 128}')
    modules = [{"idx": 0, "name": "0", "path": "0_Transformer", "type": "sentence_transformers.models.Transformer"},
               {"idx": 1, "name": "1", "path": "1_Pooling", "type": "sentence_transformers.models.Pooling"},
               {"idx": 2, "name": "2", "path": "2_Dense", "type": "sentence_transformers.models.Dense"}]
    (folder / "modules.json").write_text(json.dumps(modules))
    (folder / "1_Pooling").mkdir()
    (folder / "1_Pooling" / "config.json").write_text('{"pooling_mode_cls_token": true}')
    (folder / "2_Dense").mkdir()
    (folder / "2_Dense" / "model.safetensors").write_bytes(b"\x00\x01weights")
    files = sentence_transformers_files(folder)
    assert json.loads(files.pop("modules.json")) == [{**modules[0], "path": ""}, *modules[1:]]
    assert files == {"sentence_bert_config.json": b'{"max_seq_length": 128}',
                     "1_Pooling/config.json": b'{"pooling_mode_cls_token": true}',
                     "2_Dense/model.safetensors": b"\x00\x01weights"}
    # a hub name that cannot be looked up (offline, not cached): unknown, and said once
    recwarn.clear()
    assert sentence_transformers_files("someone/never-cached-model") == {}
    assert [str(w.message) for w in recwarn.list] == [
        "BertLMLearner: could not look for modules.json of 'someone/never-cached-model' (LocalEntryNotFoundError), so "
        "whether it is a sentence-transformers model (mean pooling, normalised) is unknown; save_model writes no "
        "sentence-transformers files beside the adapted weights, and embed(texts, learner) pools by 'cls', not "
        "normalised (pass pooling=, normalize= and maxlen= to embed)"]
    # a module path outside the folder: save_model would write there
    modules[1]["path"] = "../1_Pooling"
    (folder / "modules.json").write_text(json.dumps(modules))
    with pytest.raises(ModelError) as err:
        sentence_transformers_files(folder)
    assert str(err.value) == (
        f"model={str(folder)!r}: its modules.json names the module path(s) ['../1_Pooling'], outside the model "
        "folder; allowed: paths inside it, as sentence-transformers writes them (e.g. '1_Pooling'); fix the model's "
        "modules.json")


# XLNet's blocks carry (length, batch, dim) and its tokenizer puts <cls> last; BERT, batch-first with [CLS] first, is
# the control. Expected values come from a plain transformers forward of each text alone (output_hidden_states=True)
EMBED_FAMILIES = ("xlnet", "bert")


@pytest.fixture(scope="module")
def family_models(tmp_path_factory):
    """Tiny random XLNet and BERT encoders with tokenizers of their own kind: {kind: (folder, tokenizer, model)}."""
    import transformers as T
    from conftest import build_tiny_architecture
    root = tmp_path_factory.mktemp("embed_families")
    out = {}
    for kind in EMBED_FAMILIES:
        folder = build_tiny_architecture(kind, root / kind)
        out[kind] = (folder, T.AutoTokenizer.from_pretrained(folder), T.AutoModel.from_pretrained(folder).eval())
    return out


def _alone(model, tok, text, layer):
    """The text's hidden states (n_tokens, dim), the mean of `layer`'s, from a transformers forward of it alone;
    and its encoding (ids, word ids, offsets) as the tokenizer gives it."""
    enc = tok(text, return_offsets_mapping=True)
    with torch.no_grad():
        hs = model(input_ids=torch.tensor([enc["input_ids"]]), output_hidden_states=True).hidden_states
    layers = layer if isinstance(layer, list) else [layer]
    return torch.stack([hs[l][0] for l in layers]).mean(0).numpy(), enc


def _check_every_pooling(model, tok, texts, layer, **kw):
    """embed's "mean", "cls" and "tokens" vectors of `texts` at `layer` are each text's own states, alone."""
    ref = [_alone(model, tok, t, layer) for t in texts]
    # the <cls> position from the tokenizer's own ids: first for BERT, last for XLNet
    cls_at = [enc["input_ids"].index(tok.cls_token_id) for _, enc in ref]
    np.testing.assert_allclose(embed(texts, model, tokenizer=tok, layer=layer, pooling="mean", **kw),
                               np.stack([h.mean(0) for h, _ in ref]), atol=1e-5, err_msg=f"mean, layer={layer}")
    np.testing.assert_allclose(embed(texts, model, tokenizer=tok, layer=layer, pooling="cls", **kw),
                               np.stack([h[p] for (h, _), p in zip(ref, cls_at)]), atol=1e-5,
                               err_msg=f"cls, layer={layer}")
    for tv, (h, enc) in zip(embed(texts, model, tokenizer=tok, layer=layer, pooling="tokens", **kw), ref):
        words: dict[int, list[int]] = {}
        for pos, w in enumerate(enc.word_ids()):
            if w is not None:
                words.setdefault(w, []).append(pos)
        np.testing.assert_allclose(tv.vectors, np.stack([h[p].mean(0) for p in words.values()]), atol=1e-5,
                                   err_msg=f"tokens, layer={layer}")
    return cls_at


@pytest.mark.parametrize("kind", EMBED_FAMILIES)
def test_every_layer_and_pooling_is_each_texts_own_state(kind, family_models):
    # XLNet's block inputs are (length, batch, dim): read as (batch, length, dim), layer=0 mean vectors were off by
    # twice their size, "tokens" at layers 0 and 1 raised IndexError, and layer=[-2, -1] a RuntimeError in torch.stack;
    # "cls" read the first word piece, not <cls> (XLNet's is last)
    _, tok, model = family_models[kind]
    texts = ["good movie", "the plot was really very dull and the acting was poor", "a fine film", "bad"]
    for layer in (0, 1, 2, -1, [0, 1], [-2, -1]):
        for bs in (64, 2, 1):  # one batch, padded batches, and one text a batch
            cls_at = _check_every_pooling(model, tok, texts, layer, bs=bs)
    lengths = [len(tok(t)["input_ids"]) for t in texts]
    assert cls_at == ([n - 1 for n in lengths] if kind == "xlnet" else [0] * len(texts))
    # word_in_context reads the same states: the word's pieces (by the tokenizer's offsets), each sentence alone
    sentences = ["the movie was good", "a really dull movie", "movie"]
    for layer in (0, 1, -1, [0, 1]):
        expected = []
        for s in sentences:
            h, enc = _alone(model, tok, s, layer)
            start = s.index("movie")
            expected.append(h[[p for p, (a, b) in enumerate(enc["offset_mapping"])
                               if b > a and a < start + 5 and b > start]].mean(0))
        np.testing.assert_allclose(word_in_context("movie", sentences, model, tokenizer=tok, layer=layer).contextual,
                                   np.stack(expected), atol=1e-5, err_msg=f"word_in_context, layer={layer}")


@pytest.mark.parametrize("kind", EMBED_FAMILIES)
def test_a_batch_of_as_many_texts_as_tokens_is_read_right(kind, family_models):
    # with as many rows as tokens a (length, batch, dim) state has the shape of a (batch, length, dim) one: embed
    # must not build such a batch, or XLNet's layers would be read the wrong way round without a sign
    _, tok, model = family_models[kind]
    texts = ["fine", "fun", "bad", "film", "is"] if kind == "xlnet" else ["good", "bad", "fine"]
    assert {len(tok(t)["input_ids"]) for t in texts} == {len(texts)}  # n texts of n tokens each
    for layer in (0, 1, -1, [0, 1]):
        _check_every_pooling(model, tok, texts, layer)


def test_learner_embed_of_an_xlnet_classifier_is_the_cls_state_its_head_reads(family_models, tmp_path):
    # BertLearner.embed pools "cls" by default: for XLNet that read the first word piece, not the <cls> state at the
    # end that its classifier (summary_type "last") reads
    from conftest import make_texts

    from bertlearn import BertDataBunch, BertLearner
    folder, tok, _ = family_models["xlnet"]
    df = make_texts(24, seed=1)
    db = BertDataBunch.from_df(df, df[:8], str(folder), bs=8, maxlen=64, device="cpu")
    learner = BertLearner.from_pretrained_model(db, str(folder), None, "cpu", None, seed=0, output_dir=tmp_path)
    texts = ["good movie", "the plot was really very dull", "bad"]
    encoder = learner.model.base_model.eval()
    expected = []
    for t in texts:
        ids = tok(t)["input_ids"]
        assert ids.index(tok.cls_token_id) == len(ids) - 1  # XLNet's <cls> is its last token
        with torch.no_grad():
            expected.append(encoder(input_ids=torch.tensor([ids])).last_hidden_state[0, -1].numpy())
    np.testing.assert_allclose(learner.embed(texts), np.stack(expected), atol=1e-5)


def test_cls_pooling_without_a_cls_token_reads_the_first_token_and_says_so(family_models, recwarn):
    # position 0 is another vector than the CLS token's that was asked for: said once per call, not silently
    import transformers as T
    folder, _, model = family_models["bert"]
    texts = ["good movie", "bad"]
    no_cls = T.AutoTokenizer.from_pretrained(folder)
    no_cls.cls_token = None  # the [CLS] its template adds is then no CLS token it names
    recwarn.clear()
    vectors = embed(texts, model, tokenizer=no_cls, pooling="cls")
    assert [str(w.message) for w in recwarn.list] == [
        "embed: pooling='cls', but the tokenizer (BertTokenizer) has no CLS token, so each text's vector is its first "
        "token's state (position 0); pass pooling='mean' for the average over the text's tokens, or the model's own "
        "tokenizer if it has a CLS token"]
    np.testing.assert_allclose(vectors, np.stack([_alone(model, no_cls, t, -1)[0][0] for t in texts]), atol=1e-5)
    unadded = T.AutoTokenizer.from_pretrained(folder)
    unadded.backend_tokenizer.post_processor = None  # a CLS token it names but does not add
    recwarn.clear()
    vectors = embed(texts, model, tokenizer=unadded, pooling="cls")
    assert [str(w.message) for w in recwarn.list] == [
        "embed: pooling='cls', but 2 of 2 texts (text 0 the first) hold no CLS token ('[CLS]': the tokenizer did not "
        "add it), so their vectors are their first token's state (position 0); pass pooling='mean' for the average "
        "over the text's tokens, or a tokenizer that adds its CLS token"]
    np.testing.assert_allclose(vectors, np.stack([_alone(model, unadded, t, -1)[0][0] for t in texts]), atol=1e-5)


def test_a_block_input_of_neither_layout_is_refused_naming_the_model(family_models, monkeypatch):
    import importlib
    E = importlib.import_module("bertlearn.embed")  # the package's `embed` attribute is the function
    _, tok, model = family_models["xlnet"]
    carried = E._hidden_states

    def cut(encoder, ids, mask):  # a block input one token short: neither (batch, length) nor (length, batch)
        states = carried(encoder, ids, mask)
        return [states[0][:-1], *states[1:]]

    monkeypatch.setattr(E, "_hidden_states", cut)
    with pytest.raises(ModelError) as err:
        embed(["good movie", "bad"], model, tokenizer=tok, layer=0, pooling="mean")
    width = len(tok("good movie")["input_ids"])
    assert str(err.value) == (
        f"layer=0: XLNetModel carries a hidden state of shape ({width - 1}, 2, 32) into its transformer blocks, for "
        f"a batch of 2 texts of {width} tokens: neither (batch, length, dim) = (2, {width}, ...) nor (length, batch, "
        f"dim) = ({width}, 2, ...), so which vector is which token's cannot be told; allowed for this model: layer=-1, "
        "the encoder's output (last_hidden_state), which is batch-first")
    assert embed(["good movie", "bad"], model, tokenizer=tok, layer=-1).shape == (2, 32)  # the output is read


def test_a_long_context_plain_folder_is_embedded_at_512_tokens_by_default(tiny_model_dir, tmp_path, recwarn):
    # embed's default stays at 512 where the predictors now read a plain folder's whole limit: vectors of an
    # 8,192-token model at bs 64 would be batches of half a million tokens
    import transformers as T
    tok = T.AutoTokenizer.from_pretrained(tiny_model_dir, model_max_length=1024)
    config = T.BertConfig(vocab_size=max(tok.get_vocab().values()) + 1, hidden_size=32, num_hidden_layers=1,
                          num_attention_heads=4, intermediate_size=37, max_position_embeddings=1024)
    torch.manual_seed(0)
    T.BertModel(config).save_pretrained(tmp_path / "long")
    tok.save_pretrained(tmp_path / "long")
    embed([" ".join(["good"] * 700)], str(tmp_path / "long"), device="cpu")
    said = [str(w.message) for w in recwarn.list if "longer than maxlen" in str(w.message)]
    assert said == ["embed: 1 of 1 texts are longer than maxlen=512 tokens (text 0 the first) and were cut to their "
                    "first 512; their vectors describe only that part. Split long texts, or pass a larger maxlen (up "
                    "to 1024)"]
