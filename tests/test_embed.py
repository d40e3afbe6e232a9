"""Contextual embeddings: shapes, word merging, errors, and the polysemy property on the packaged model."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from bertlearn import BertLearnError, DataError, cosine_similarity_matrix, embed, word_in_context

# four or more sentences per sense; the word itself is the only thing the senses share
SENSES = {
    "apple": {
        "fruit": ["I ate a crisp red apple for lunch.", "She baked an apple pie with cinnamon.",
                  "The apple fell from the tree in the orchard.", "He sliced an apple and shared it with the kids."],
        "company": ["Apple released a new iPhone this autumn.", "Shares of Apple rose after the earnings report.",
                    "Apple announced updates to its laptop software.", "The CEO of Apple spoke at the developer conference."],
    },
    "bank": {
        "river": ["We had a picnic on the grassy bank of the river.", "The fisherman sat on the muddy bank all day.",
                  "Reeds grew along the bank of the stream.", "The boat drifted toward the far bank of the lake."],
        "money": ["I deposited my paycheck at the bank.", "The bank approved her mortgage application.",
                  "He withdrew cash from the bank on Monday.", "The bank raised its interest rates on savings accounts."],
    },
    "bat": {
        "animal": ["A bat flew out of the cave at dusk.", "The bat hung upside down from the branch.",
                   "The bat hunts moths at night using echolocation.", "A small brown bat roosted in the barn."],
        "sports": ["He swung the baseball bat and hit a home run.", "She bought a new cricket bat for the season.",
                   "The batter gripped the bat tightly at the plate.", "He cracked his wooden bat on a fastball."],
    },
}


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


def test_word_in_context_handles_case_and_subwords(tiny_model_dir):
    wic = word_in_context("Goodz", ["the goodz movie", "GOODZ it was"], str(tiny_model_dir), device="cpu")
    assert wic.contextual.shape == (2, 32) and wic.static.shape == (32,)
    assert wic.spans == [(4, 9), (0, 5)]
    assert not np.allclose(wic.contextual[0], wic.contextual[1])


@pytest.mark.slow
@pytest.mark.parametrize("word", list(SENSES))
def test_contextual_vectors_cluster_by_sense_static_ones_cannot(word):
    (sense_a, a), (sense_b, b) = SENSES[word].items()
    wic = word_in_context(word, a + b, None, device="cpu")  # the packaged all-MiniLM-L6-v2
    sim = cosine_similarity_matrix(wic.contextual)
    n = len(a)
    same = np.concatenate([sim[:n, :n][np.triu_indices(n, 1)], sim[n:, n:][np.triu_indices(len(b), 1)]]).mean()
    cross = sim[:n, n:].mean()
    assert same > cross + 0.02, f"{word}: same-sense {same:.3f} vs cross-sense {cross:.3f}"
    # leave one out: each sentence is more similar, on average, to the other sentences of its own sense
    sense = np.array([0] * n + [1] * len(b))
    hits = 0
    for i in range(len(sense)):
        others = np.arange(len(sense)) != i
        own = sim[i, others & (sense == sense[i])].mean()
        other = sim[i, others & (sense != sense[i])].mean()
        hits += own > other
    assert hits / len(sense) >= 0.75, f"{word}: {hits}/{len(sense)} sentences closest to their own sense"
    static = cosine_similarity_matrix(np.stack([wic.static] * len(wic.sentences)))
    assert np.allclose(static, 1.0)  # one vector for every sentence: no sense can be told apart
