"""Token classification (NER): reading tagged data, encoding sub-words, entity metrics, predictions with offsets."""

from __future__ import annotations

import importlib.util
import json
import random
import re
import warnings

import numpy as np
import pandas as pd
import pytest
import torch

from bertlearn import (BertNERDataBunch, BertNERLearner, BertNERPredictor, DataError, ModelError, NotFittedError,
                       load_predictor)
from bertlearn.data.conll import (check_scheme, detect_scheme, labels_for, read_conll, read_jsonl, read_tag_file,
                                  sentences_from_df, split_words)
from bertlearn.data.tagged import IGNORE_INDEX, TagEncoder
from bertlearn.tasks.token_classification import entity_report, entity_scores, group_entities, text_words

from conftest import FILLER, POSITIVE, FirstStepGrads, assert_same_grads, quiet_fit, without_dropout
from test_graphs import fake_capture  # noqa: F401  (a fixture)

NAMES = ["bob", "ann", "kim", "lee", "sue"]  # not in the tiny vocabulary: each is cut into letter pieces


def make_tagged(n: int, seed: int = 0) -> tuple[list[list[str]], list[list[str]]]:
    """Synthetic IOB2 sentences: names (one or two words) are PER, positive words are POS, the rest O."""
    rng = random.Random(seed)
    words, tags = [], []
    for _ in range(n):
        w, t = [], []
        for _ in range(rng.randint(3, 14)):
            r = rng.random()
            if r < 0.15 and not (t and t[-1].endswith("PER")):  # two names in a row are one person
                w.append(rng.choice(NAMES)), t.append("B-PER")
                if rng.random() < 0.4:
                    w.append(rng.choice(NAMES)), t.append("I-PER")
            elif r < 0.25:
                w.append(rng.choice(POSITIVE)), t.append("B-POS")
            else:
                w.append(rng.choice(FILLER)), t.append("O")
        words.append(w), tags.append(t)
    return words, tags


def tag_probs(tags, labels, *, hit=0.9, miss=0.01) -> np.ndarray:
    """Per word, probabilities that pick its tag (`hit`) over every other label (`miss`)."""
    p = np.full((len(tags), len(labels)), miss, np.float32)
    p[np.arange(len(tags)), [labels.index(t) for t in tags]] = hit
    return p


def write_conll(path, words, tags, *, sep="\t", blank="\n") -> None:
    with open(path, "w") as f:
        for ws, ts in zip(words, tags):
            for w, t in zip(ws, ts):
                f.write(f"{w}{sep}{t}\n")
            f.write(blank)


@pytest.fixture
def ner_dir(tmp_path):
    write_conll(tmp_path / "train.txt", *make_tagged(240, seed=1))
    write_conll(tmp_path / "val.txt", *make_tagged(48, seed=2))
    (tmp_path / "labels.txt").write_text("O\nB-PER\nI-PER\nB-POS\nI-POS\n")
    return tmp_path


@pytest.fixture(scope="module")
def ner_learner(tiny_model_dir, tmp_path_factory):
    """A tiny BERT trained on the synthetic names until it tags them (shared: tests must not train it further)."""
    torch.manual_seed(0)
    d = tmp_path_factory.mktemp("ner")
    write_conll(d / "train.txt", *make_tagged(480, seed=3))
    write_conll(d / "val.txt", *make_tagged(64, seed=4))
    db = BertNERDataBunch(d, str(tiny_model_dir), train_file="train.txt", val_file="val.txt", label_file=None,
                          bs=16, maxlen=64, device="cpu", seed=0)
    learner = BertNERLearner.from_pretrained_model(db, str(tiny_model_dir), d / "out", "cpu", None, seed=0)
    quiet_fit(learner, 15, lr=5e-3)
    return learner


# --- reading ---

def test_conll_reads_last_column_skips_docstart_and_whitespace_only_separators(tmp_path):
    f = tmp_path / "a.conll"
    f.write_text("-DOCSTART- -X- -X- O\n\nEU NNP B-NP B-ORG\nrejects VBZ B-VP O\n \t \nPeter NNP B-NP B-PER\n"
                 "Blackburn NNP I-NP I-PER\n\t\n\n")
    s = read_conll(f)
    assert s.words == [["EU", "rejects"], ["Peter", "Blackburn"]]
    assert s.tags == [["B-ORG", "O"], ["B-PER", "I-PER"]]
    assert s.lines == [3, 6]


def test_a_byte_order_mark_is_read_past(tmp_path):
    # before, Windows tools' BOM stuck to the first line: "\ufeff-DOCSTART-" was read as a word tagged O, and a
    # label file's first tag was "\ufeffO"
    f = tmp_path / "a.conll"
    f.write_bytes("-DOCSTART- O\n\nEU B-ORG\nrejects O\n".encode("utf-8-sig"))
    assert read_conll(f).words == [["EU", "rejects"]]
    (tmp_path / "d.jsonl").write_bytes((json.dumps({"text": "Jane", "labels": [[0, 4, "PER"]]}) + "\n").encode(
        "utf-8-sig"))
    assert read_jsonl(tmp_path / "d.jsonl").tags == [["B-PER"]]
    (tmp_path / "labels.txt").write_bytes("O\nB-ORG\nI-ORG\n".encode("utf-8-sig"))
    assert read_tag_file(tmp_path / "labels.txt") == ["O", "B-ORG", "I-ORG"]


def test_conll_errors_name_file_and_line(tmp_path):
    f = tmp_path / "bad.conll"
    f.write_text("Peter\tB-PER\nBlackburn\n")
    with pytest.raises(DataError, match=r"bad.conll, line 2: 'Blackburn' has no tag"):
        read_conll(f)
    (tmp_path / "empty.conll").write_text("\n-DOCSTART- O\n\n")
    with pytest.raises(DataError, match=r"empty.conll holds no sentences"):
        read_conll(tmp_path / "empty.conll")


@pytest.mark.parametrize("tags, scheme", [
    ([["B-PER", "I-PER", "O", "B-LOC"]], "IOB2"),
    ([["I-PER", "I-PER", "O", "I-LOC", "B-LOC"]], "IOB1"),
    ([["O", "I-PER", "B-PER", "I-LOC", "I-LOC"]], "IOB1"),
    ([["O", "B-PER", "I-LOC"]], "IOB2"),  # B- opens an entity, so I- opening one is an error, not IOB1
    ([["B-PER", "E-PER", "S-LOC"]], "BIOES"),
    ([["B-PER", "L-PER", "U-LOC"]], "BILOU"),
])
def test_scheme_detection(tags, scheme):
    assert detect_scheme(tags) == scheme


def test_strict_scheme_and_label_file_errors_name_the_line(tmp_path):
    f = tmp_path / "t.conll"
    f.write_text("a\tO\nb\tB-PER\nc\tI-LOC\n")
    s = read_conll(f)
    with pytest.raises(DataError, match=r"t.conll, line 3: 'I-LOC' follows 'B-PER', which breaks the IOB2 scheme"):
        check_scheme(s, "IOB2")
    check_scheme(s, "IOB1")  # there, I-LOC opens an entity
    with pytest.raises(DataError, match=r"t.conll, line 2: tag 'B-PER' is not in the label file"):
        check_scheme(s, "IOB1", labels=["O", "B-LOC", "I-LOC"])
    f.write_text("a\tO\nb\tE-PER\n")
    with pytest.raises(DataError, match=r"line 2: 'E-PER' follows 'O', which breaks the BIOES scheme"):
        check_scheme(read_conll(f), "BIOES")


def test_jsonl_spans_become_iob2_words(tmp_path):
    f = tmp_path / "d.jsonl"
    f.write_text(json.dumps({"text": "Jane Doe visited New York.", "labels": [[0, 8, "PER"], [17, 25, "LOC"]]}) + "\n")
    s = read_jsonl(f)
    assert s.words == [["Jane", "Doe", "visited", "New", "York", "."]]
    assert s.tags == [["B-PER", "I-PER", "O", "B-LOC", "I-LOC", "O"]]
    assert s.spans[0][3] == (17, 20)
    assert split_words("it's 5%") == [("it", 0, 2), ("'", 2, 3), ("s", 3, 4), ("5", 5, 6), ("%", 6, 7)]
    # combining marks stay in their word (before, a decomposed accent or a Devanagari vowel sign cut it)
    assert split_words("Jose\u0301 in हिन्दी!\u0301") == [("Jose\u0301", 0, 5), ("in", 6, 8), ("हिन्दी", 9, 15),
                                                         ("!\u0301", 15, 17)]
    assert split_words("x² CO₂") == [("x²", 0, 2), ("CO₂", 3, 6)]  # other numbers stay in their word, as with re
    f.write_text(json.dumps({"text": "Jose\u0301 Ruiz left", "labels": [[0, 4, "PER"]]}) + "\n")
    with pytest.raises(DataError, match=r"entity \[0, 4, 'PER'\] \('Jose'\) cuts the word 'Jose\u0301'"):
        read_jsonl(f)  # a span that leaves the accent out is found, not tagged on a cut word


@pytest.mark.parametrize("line, message", [
    ({"text": "abc", "labels": [[0, 9, "X"]]}, r"d.jsonl, line 1: entity \[0, 9, 'X'\] lies outside the text \(3 "),
    ({"text": "ab cd", "labels": [[0, 2, "X"], [1, 5, "Y"]]}, r"line 1: entities \[0, 2, 'X'\] and \[1, 5, 'Y'\] "
                                                             r"overlap"),
    ({"labels": []}, r"line 1: no 'text' string"),
])
def test_jsonl_errors(tmp_path, line, message):
    (tmp_path / "d.jsonl").write_text(json.dumps(line) + "\n")
    with pytest.raises(DataError, match=message):
        read_jsonl(tmp_path / "d.jsonl")


def test_df_rows_need_one_tag_per_word():
    df = pd.DataFrame({"tokens": [["a", "b"], ["c"]], "tags": [["O", "B-X"], ["O", "O"]]})
    with pytest.raises(DataError, match=r"train_df, row 1: 1 words but 2 tags"):
        sentences_from_df(df, source="train_df")


def test_labels_are_ordered_o_then_type_then_prefix():
    assert labels_for([["I-PER", "B-LOC", "O", "B-PER", "E-LOC"]]) == ["O", "B-LOC", "E-LOC", "B-PER", "I-PER"]


# --- encoding ---

def test_first_piece_carries_the_tag_and_later_pieces_are_left_out(tiny_tokenizer):
    enc = TagEncoder(tiny_tokenizer, 64, ["O", "B-PER", "I-PER"])
    ds = enc.dataset([["the", "bob", "ann"]], [[0, 1, 2]])
    ids = list(ds.ids[0])
    tokens = tiny_tokenizer.convert_ids_to_tokens(ids)
    assert tokens == ["[CLS]", "the", "b", "##o", "##b", "a", "##n", "##n", "[SEP]"]
    assert list(ds.targets[0]) == [IGNORE_INDEX, 0, 1, IGNORE_INDEX, IGNORE_INDEX, 2, IGNORE_INDEX, IGNORE_INDEX,
                                   IGNORE_INDEX]
    assert list(ds.word_pos[0]) == [1, 2, 5]
    every = TagEncoder(tiny_tokenizer, 64, ["O", "B-PER", "I-PER"], label_all_tokens=True).dataset(
        [["the", "bob", "ann"]], [[0, 1, 2]])
    assert list(every.targets[0]) == [IGNORE_INDEX, 0, 1, 2, 2, 2, 2, 2, IGNORE_INDEX]  # B- continues as I-
    underscored = TagEncoder(tiny_tokenizer, 64, ["O", "B_PER", "I_PER"], label_all_tokens=True).dataset(
        [["the", "bob", "ann"]], [[0, 1, 2]])
    assert list(underscored.targets[0]) == list(every.targets[0])  # B_PER continues as I_PER


def test_long_sentences_are_windowed_and_no_word_is_dropped(tiny_tokenizer):
    enc = TagEncoder(tiny_tokenizer, 10, ["O", "B-PER"])  # 8 pieces a window
    words = ["the", "bob", "movie", "ann", "kim", "was", "lee", "sue", "it", "good"]  # 1+3+1+3+3+1+3+3+1+1 = 20
    ds = enc.dataset([words, ["a"]], [[0] * 10, [0]])
    assert ds.lengths.max() <= 10
    assert list(ds.owner) == [0, 0, 0, 1]
    covered = [ds.first_word[r] + k for r in range(3) for k in range(len(ds.word_pos[r]))]
    assert covered == list(range(10))
    one = TagEncoder(tiny_tokenizer, 4, ["O"]).dataset([["bob", "the"]], [[0, 0]])  # a word longer than a window
    assert [len(one.word_pos[r]) for r in range(len(one))] == [1, 1] and one.lengths.max() <= 4


def test_batches_pad_tags_with_ignore_index(ner_dir, tiny_model_dir):
    db = BertNERDataBunch(ner_dir, str(tiny_model_dir), bs=8, maxlen=64, device="cpu")
    ids, mask, tags = db.one_batch()
    assert ids.shape == tags.shape and (tags[mask == 0] == IGNORE_INDEX).all()
    assert db.labels == ["O", "B-PER", "I-PER", "B-POS", "I-POS"] and db.scheme == "IOB2"
    assert db.entity_types == ["PER", "POS"]


def test_a_left_padding_side_is_said_and_tags_pad_on_the_right(ner_dir, tiny_model_dir):
    # padding_side="left" set on the BERT tokenizer was ignored without a word (classification data said it)
    import transformers as T
    tok = T.AutoTokenizer.from_pretrained(tiny_model_dir, padding_side="left")
    with pytest.warns(UserWarning, match=r"^padding_side='left' on the BertTokenizer is not followed: batches pad on "
                      r"the right, as its class does \(these models number positions from the first token, pads "
                      r"included, so left padding would move a text's positions with its batch\); the tokenizer is "
                      r"left as it is$"):
        db = BertNERDataBunch(ner_dir, tok, bs=8, maxlen=64, device="cpu")
    ids, mask, tags = db.one_batch()
    assert tok.padding_side == "left" and (mask[:, 0] == 1).all() and (mask[:, :-1] >= mask[:, 1:]).all()
    import warnings
    with warnings.catch_warnings(record=True) as seen:  # the class's own side is not a request
        warnings.simplefilter("always")
        BertNERDataBunch(ner_dir, str(tiny_model_dir), bs=8, maxlen=64, device="cpu")
    assert not [w for w in seen if str(w.message).startswith("padding_side")]


def test_fast_bert_constructor_and_label_file_checks(ner_dir, tiny_model_dir):
    (ner_dir / "labels.txt").write_text("O\nB-PER\nI-PER\n")
    with pytest.raises(DataError, match=r"train.txt, line \d+: tag 'B-POS' is not in the label file"):
        BertNERDataBunch(ner_dir, str(tiny_model_dir), batch_size_per_gpu=8, max_seq_length=64)
    db = BertNERDataBunch(ner_dir, str(tiny_model_dir), label_file=None, batch_size_per_gpu=8, max_seq_length=48,
                          device="cpu")
    assert db.bs == 8 and db.maxlen == 48


def test_from_jsonl_splits_and_tags(tmp_path, tiny_model_dir):
    rng = random.Random(0)
    with open(tmp_path / "d.jsonl", "w") as f:
        for _ in range(20):
            name = rng.choice(NAMES)
            text = f"the movie {name} was good"
            f.write(json.dumps({"text": text, "labels": [[10, 10 + len(name), "PER"]]}) + "\n")
    db = BertNERDataBunch.from_jsonl(tmp_path, "d.jsonl", str(tiny_model_dir), train_size=0.75, random_state=0,
                                     bs=4, maxlen=32, device="cpu")
    assert (db.train_ds.n_texts, db.valid_ds.n_texts) == (15, 5)
    assert db.labels == ["O", "B-PER"]


def test_from_jsonl_names_fast_berts_flags_without_effect(tmp_path, tiny_model_dir, monkeypatch):
    """from_jsonl dropped falsy flags before naming them (use_fast_tokenizer=False was never said) and named
    clear_cache / no_cache with no reason, i.e. not at all; the constructor said both."""
    import bertlearn.compat
    from bertlearn.compat import FastBertCompatWarning
    monkeypatch.setattr(bertlearn.compat, "_said", set())
    with open(tmp_path / "d.jsonl", "w") as f:
        for name in NAMES * 2:
            f.write(json.dumps({"text": f"the movie {name} was good", "labels": [[10, 10 + len(name), "PER"]]}) + "\n")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        BertNERDataBunch.from_jsonl(tmp_path, "d.jsonl", str(tiny_model_dir), bs=4, maxlen=32, device="cpu",
                                    use_fast_tokenizer=False, clear_cache=True, no_cache=False, multi_gpu=False)
    said = [str(w.message) for w in caught if issubclass(w.category, FastBertCompatWarning)]
    assert said == ["BertNERDataBunch.from_jsonl: fast-bert arguments without effect in bertlearn: clear_cache=True: "
                    "tagged data is encoded in memory each time (no cache to clear); use_fast_tokenizer=False: the "
                    "fast (Rust) tokenizer is always used"]


def test_a_jsonl_test_file_keeps_a_sentence_for_every_line(tmp_path, tiny_model_dir):
    # before: the empty and blank texts of the test file were dropped, so predict_tokens() returned 3 lists for its 5
    # lines and every line after the first empty one got another line's tags
    rng = random.Random(0)
    with open(tmp_path / "d.jsonl", "w") as f:
        for _ in range(12):
            name = rng.choice(NAMES)
            f.write(json.dumps({"text": f"the movie {name} was good", "labels": [[10, 10 + len(name), "PER"]]}) + "\n")
    texts = ["good movie", "   ", "the bad film", "", "the plot"]
    (tmp_path / "t.jsonl").write_text("".join(json.dumps({"text": t}) + "\n" for t in texts))
    db = BertNERDataBunch.from_jsonl(tmp_path, "d.jsonl", str(tiny_model_dir), test_file_name="t.jsonl",
                                     train_size=0.75, random_state=0, bs=4, maxlen=32, device="cpu")
    assert db.test.dataset.words == [["good", "movie"], [], ["the", "bad", "film"], [], ["the", "plot"]]
    learner = BertNERLearner.from_pretrained_model(db, str(tiny_model_dir), device="cpu", output_dir=tmp_path / "o")
    tags = learner.predict_tokens()
    assert [len(t) for t in tags] == [2, 0, 3, 0, 2]
    assert tags == learner.predict_tokens([["good", "movie"], [], ["the", "bad", "film"], [], ["the", "plot"]])


# --- scores ---

def test_entity_scores_equal_seqeval_and_conlleval_reads_iob1():
    from seqeval.metrics import f1_score, precision_score, recall_score
    gold = [["B-PER", "I-PER", "O", "B-LOC"], ["O", "B-ORG"]]
    pred = [["B-PER", "I-PER", "O", "B-ORG"], ["O", "B-ORG"]]
    s = entity_scores(gold, pred)
    assert s == {"precision": precision_score(gold, pred), "recall": recall_score(gold, pred),
                 "f1": f1_score(gold, pred), "accuracy": 5 / 6}
    assert s["precision"] == pytest.approx(2 / 3) and s["recall"] == pytest.approx(2 / 3)
    # IOB1: I- opens an entity, B- splits two neighbours of one type: 3 true entities, all found
    assert entity_scores([["I-PER", "I-PER", "B-PER", "O", "I-LOC"]],
                         [["I-PER", "I-PER", "B-PER", "O", "I-LOC"]])["f1"] == 1.0
    report = entity_report(gold, pred)
    assert report.loc["LOC", "recall"] == 0.0 and report.loc["PER", "f1"] == 1.0 and report.loc["ORG", "support"] == 1


def test_grouping_follows_the_scheme(tiny_tokenizer):
    words = text_words(tiny_tokenizer, ["bob ann the kim"])[0]
    assert [(w["start"], w["end"]) for w in words] == [(0, 3), (4, 7), (8, 11), (12, 15)]
    labels = ["O", "B-PER", "I-PER", "E-PER", "S-PER"]

    def probs(tags):
        return tag_probs(tags, labels, hit=0.8, miss=0.05)

    got = group_entities(words, probs(["B-PER", "I-PER", "O", "I-PER"]), labels, tiny_tokenizer)
    assert [(e["entity_group"], e["word"], e["start"], e["end"]) for e in got] == [
        ("PER", "bob ann", 0, 7), ("PER", "kim", 12, 15)]
    got = group_entities(words, probs(["S-PER", "B-PER", "O", "S-PER"]), labels, tiny_tokenizer)
    assert [(e["word"], e["start"]) for e in got] == [("bob", 0), ("ann", 4), ("kim", 12)]
    got = group_entities(words, probs(["B-PER", "E-PER", "O", "O"]), labels, tiny_tokenizer)
    assert [(e["word"], e["score"]) for e in got] == [("bob ann", pytest.approx(0.8))]


# --- the learner ---

def test_fit_learns_and_validate_equals_seqeval_on_predicted_words(ner_learner):
    from seqeval.metrics import f1_score, precision_score, recall_score
    res = ner_learner.validate(quiet=True)
    ds = ner_learner.dls.valid.dataset
    gold = [[ner_learner.dls.labels[t] for t in s] for s in ds.word_tags]
    pred = ner_learner.predict_tokens(ds.words)
    assert res["f1"] == pytest.approx(f1_score(gold, pred), abs=1e-12)
    assert res["precision"] == pytest.approx(precision_score(gold, pred), abs=1e-12)
    assert res["recall"] == pytest.approx(recall_score(gold, pred), abs=1e-12)
    assert res["f1"] > 0.8, res
    assert {"PER_f1", "POS_f1", "PER_precision", "POS_recall"} <= set(res)
    conf = ner_learner.confusions()
    assert int(conf.values.sum()) == sum(len(s) for s in ds.words)


def test_validation_loss_is_the_mean_over_every_tagged_piece(ner_learner):
    # batch means weighted by sentences were not the set's per-piece cross-entropy
    ner_learner.model.eval()
    logits, tags = [], []
    with torch.no_grad():
        for *xb, yb in ner_learner.dls.valid:
            out = ner_learner.model(*xb).logits
            logits.append(out.reshape(-1, out.shape[-1]))
            tags.append(yb.reshape(-1))
    assert len(tags) > 1
    expected = torch.nn.functional.cross_entropy(torch.cat(logits), torch.cat(tags), ignore_index=-100)
    assert ner_learner.validate(quiet=True)["loss"] == pytest.approx(float(expected), rel=1e-5)


def test_a_function_metric_on_tagged_batches_of_different_widths(ner_dir, tiny_model_dir):
    # the whole-set metric wrapping meant for classifiers joined (B, T, C) predictions of different widths and
    # failed after the first epoch; a tagger's functions see the tagged tokens of the whole set (test_metrics.py)
    def tagged_accuracy(preds, targets):
        keep = targets != -100
        return (preds.argmax(-1) == targets)[keep].float().mean()

    db = BertNERDataBunch(ner_dir, str(tiny_model_dir), bs=8, maxlen=64, device="cpu")
    learner = BertNERLearner.from_pretrained_model(db, str(tiny_model_dir), ner_dir / "out", "cpu", None,
                                                   metrics=[tagged_accuracy])
    assert len(db.valid) > 1
    assert 0.0 <= learner.validate(quiet=True)["tagged_accuracy"] <= 1.0


def test_windows_score_like_whole_sentences(ner_learner, tiny_tokenizer):
    words = make_tagged(30, seed=9)[0]
    whole = ner_learner.predict_tokens(words)
    enc = ner_learner.dls.encoder
    small = TagEncoder(tiny_tokenizer, 12, enc.labels)
    ds = small.dataset(words)
    assert len(ds) > len(words)  # some sentences were windowed
    saved, ner_learner.dls.train_ds.encoder = ner_learner.dls.train_ds.encoder, small
    try:
        windowed = ner_learner.predict_tokens(words)
    finally:
        ner_learner.dls.train_ds.encoder = saved
    assert [len(w) for w in windowed] == [len(w) for w in words]
    same = np.mean([a == b for x, y in zip(whole, windowed) for a, b in zip(x, y)])
    assert same > 0.8


def test_a_dataframe_given_as_texts_is_refused_not_read_as_its_column_names(ner_learner):
    frame = pd.DataFrame({"text": ["bob was good"], "id": [1]})
    with pytest.raises(DataError) as e:
        ner_learner.predict_batch(frame)
    assert str(e.value) == "texts: got a DataFrame with columns ['text', 'id']; pass its texts, e.g. df['text']"


def test_entities_match_the_pipeline_on_the_saved_folder(ner_learner, tmp_path):
    from transformers import pipeline
    path = ner_learner.save_model(tmp_path / "m")
    texts = ["the movie bob ann was good", "kim is fun and lee was great", "it was the plot", "sue",
             "bob, ann! the café € was good.", "  lee\tand  kim  "]
    ours = ner_learner.predict_batch(texts)
    pipe = pipeline("token-classification", model=str(path), aggregation_strategy="first", device="cpu")
    theirs = [pipe(t) for t in texts]
    assert any(ours), "the trained model found no entity at all"
    for a, b in zip(ours, theirs):
        assert [(e["entity_group"], e["word"], e["start"], e["end"]) for e in a] == \
            [(e["entity_group"], e["word"], e["start"], e["end"]) for e in b]
        assert [e["score"] for e in a] == pytest.approx([float(e["score"]) for e in b], abs=1e-5)
    assert texts[0][ours[0][0]["start"]:ours[0][0]["end"]] == ours[0][0]["word"]
    predictor = load_predictor(path)
    assert isinstance(predictor, BertNERPredictor)
    again = predictor.predict_batch(texts)
    assert [[(e["entity_group"], e["word"], e["start"], e["end"]) for e in x] for x in again] == \
        [[(e["entity_group"], e["word"], e["start"], e["end"]) for e in x] for x in ours]
    assert [e["score"] for x in again for e in x] == pytest.approx([e["score"] for x in ours for e in x], abs=1e-6)
    assert predictor.predict_tokens([["bob", "was", "good"]]) == ner_learner.predict_tokens([["bob", "was", "good"]])


def test_plain_hugging_face_folder_opens_as_a_tagger_and_says_its_scheme_guess(ner_learner, tmp_path):
    path = ner_learner.save_model(tmp_path / "m")
    reference = load_predictor(path).predict_batch(["bob was good", "kim and ann"])
    (path / "bertlearn.json").unlink()  # what model.save_pretrained alone writes
    with pytest.warns(UserWarning) as caught:
        plain = load_predictor(path)
    assert isinstance(plain, BertNERPredictor)
    said = [str(w.message) for w in caught if "tag scheme" in str(w.message)]
    assert said == [f"{str(path)!r} does not record its tag scheme: its tags are read as IOB2 (as "
                    "pipeline('token-classification') reads them); for a model trained on IOB1, BIOES or BILOU tags, "
                    'write {"tag_scheme": "IOB1"} (or "BIOES", "BILOU") to bertlearn.json in that folder']
    assert plain.predict_batch(["bob was good", "kim and ann"]) == reference
    # the fix the warning names: the scheme alone is enough, and nothing is said any more
    (path / "bertlearn.json").write_text('{"tag_scheme": "IOB1"}')
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        told = load_predictor(path)
    assert told.settings["tag_scheme"] == "IOB1" and told.settings["labels"] == ner_learner.dls.labels


def test_onnx_predictor_matches_pytorch(ner_learner, tmp_path):
    pytest.importorskip("onnxruntime")
    from bertlearn import OnnxNERPredictor
    folder = ner_learner.to_onnx(tmp_path / "onnx").parent
    onnx = load_predictor(folder)
    assert isinstance(onnx, OnnxNERPredictor)
    saved = ner_learner.save_model(tmp_path / "m")  # the same weights: the same digest (serve --onnx pairs them)
    assert json.loads((saved / "bertlearn.json").read_text())["weights_sha256"] == \
        json.loads((folder / "bertlearn.json").read_text())["weights_sha256"]
    texts = ["the movie bob ann was good", "kim is fun"]
    a, b = onnx.predict_batch(texts), ner_learner.predict_batch(texts)
    assert [[(e["entity_group"], e["start"], e["end"]) for e in x] for x in a] == \
        [[(e["entity_group"], e["start"], e["end"]) for e in x] for x in b]
    assert [e["score"] for x in a for e in x] == pytest.approx([e["score"] for x in b for e in x], abs=1e-4)


def test_per_word_output_and_argument_errors(ner_learner):
    words = ner_learner.predict("bob was good", group=False, exclude_entities=[])
    assert [(w["word"], w["start"], w["end"]) for w in words] == [("bob", 0, 3), ("was", 4, 7), ("good", 8, 12)]
    assert words[0]["entity"] in ner_learner.dls.labels
    with pytest.raises(DataError, match=r"predict_batch\(texts\) takes a list of texts"):
        ner_learner.predict_batch("bob")
    with pytest.raises(DataError, match=r"predict_tokens\(sentences\) takes lists of words"):
        ner_learner.predict_tokens(["bob", "was"])


def test_classifier_learner_refuses_tagged_data(ner_dir, tiny_model_dir):
    from bertlearn import BertLearner
    db = BertNERDataBunch(ner_dir, str(tiny_model_dir), bs=8, maxlen=64, device="cpu")
    with pytest.raises(DataError, match=r"this BertNERDataBunch holds tagged words: train it with BertNERLearner"):
        BertLearner.from_pretrained_model(db, str(tiny_model_dir), device="cpu")


@pytest.mark.slow
def test_wnut17_reads_as_published(shared_data):
    train = read_conll(shared_data / "wnut17" / "train.conll")
    dev = read_conll(shared_data / "wnut17" / "dev.conll")
    test = read_conll(shared_data / "wnut17" / "test.conll")
    assert (len(train), len(dev), len(test)) == (3394, 1009, 1287)
    assert detect_scheme(train.tags) == "IOB2"
    assert {t[2:] for s in train.tags for t in s if t != "O"} == {"corporation", "creative-work", "group",
                                                                  "location", "person", "product"}


@pytest.mark.slow
def test_entity_metrics_gather_every_rank_under_ddp(shared_data, tmp_path):
    import os
    import socket
    import subprocess
    import sys
    from pathlib import Path
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false", "OMP_NUM_THREADS": "1"}
    worker = str(Path(__file__).resolve().parent / "ner_distributed_worker.py")
    run = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "--master_port",
                          str(port), worker, str(tmp_path), str(shared_data / "wnut17")], env=env,
                         capture_output=True, text=True, timeout=900)
    assert run.returncode == 0, run.stdout[-2000:] + run.stderr[-4000:]
    for rank in (0, 1):
        got = json.loads((tmp_path / f"rank{rank}.json").read_text())
        assert got["world"] == 2
        for k in ("precision", "recall", "f1", "accuracy"):
            assert got["validate"][k] == pytest.approx(got["own"][k], abs=1e-9), (rank, k, got)


# --- the command line ---

def test_cli_trains_predicts_and_evaluates_ner(tmp_path, tiny_model_dir, capsys):
    from seqeval.metrics import f1_score

    from bertlearn.cli import main
    write_conll(tmp_path / "train.conll", *make_tagged(240, seed=1))
    test_words, test_tags = make_tagged(20, seed=7)
    write_conll(tmp_path / "dev.conll", test_words, test_tags)
    out = tmp_path / "model"
    assert main(["train", "--data", str(tmp_path), "--train-file", "train.conll", "--val-file", "dev.conll",
                 "--model", str(tiny_model_dir), "--epochs", "2", "--lr", "5e-3", "--bs", "16", "--maxlen", "64",
                 "--out", str(out), "--seed", "0", "--device", "cpu"]) == 0
    err = capsys.readouterr().err
    assert "data: token classification (from the file suffix; --task classification to override), 240 train / 20 " \
           "valid sentences, 4 tags (IOB2), entity types ['PER', 'POS']" in err
    assert json.loads((out / "bertlearn.json").read_text())["problem_type"] == "token_classification"
    # predict: the input's lines come back with the predicted tag appended
    assert main(["predict", "--model", str(out), "--input", str(tmp_path / "dev.conll"), "--output",
                 str(tmp_path / "pred.conll"), "--device", "cpu"]) == 0
    lines = [l.split("\t") for l in (tmp_path / "pred.conll").read_text().splitlines()]
    words = [l for l in lines if l != [""]]
    assert len(words) == sum(map(len, test_words)) and all(len(l) == 3 for l in words)
    pred = [[l.split("\t")[2] for l in block.splitlines()]
            for block in (tmp_path / "pred.conll").read_text().split("\n\n") if block.strip()]
    assert [len(p) for p in pred] == [len(w) for w in test_words]
    # a byte-order mark and a -DOCSTART- line (before, the mark hid it from the writer: tags shifted, then a crash)
    (tmp_path / "bom.conll").write_bytes(b"\xef\xbb\xbf-DOCSTART- O\n\n" + (tmp_path / "dev.conll").read_bytes())
    assert main(["predict", "--model", str(out), "--input", str(tmp_path / "bom.conll"), "--output",
                 str(tmp_path / "bom_pred.conll"), "--device", "cpu"]) == 0
    assert (tmp_path / "bom_pred.conll").read_text().split("\n")[2:] == \
        (tmp_path / "pred.conll").read_text().split("\n")
    # eval: the same scores as seqeval on the predicted file
    assert main(["eval", "--model", str(out), "--input", str(tmp_path / "dev.conll"), "--device", "cpu", "--json",
                 str(tmp_path / "m.json")]) == 0
    metrics = json.loads((tmp_path / "m.json").read_text())
    assert metrics["f1"] == pytest.approx(f1_score(test_tags, pred), abs=1e-12)
    assert set(metrics["per_type"]) >= {"PER", "POS"}
    pd.DataFrame({"text": ["bob was good", "the movie"]}).to_csv(tmp_path / "t.csv", index=False)
    assert main(["predict", "--model", str(out), "--input", str(tmp_path / "t.csv"), "--output",
                 str(tmp_path / "t.out.csv"), "--device", "cpu"]) == 0
    got = pd.read_csv(tmp_path / "t.out.csv")
    assert all(isinstance(json.loads(x), list) for x in got["entities"])
    # an input column named "entities" (a previous run's output) was written over without a word
    capsys.readouterr()
    assert main(["predict", "--model", str(out), "--input", str(tmp_path / "t.out.csv"), "--output",
                 str(tmp_path / "t.again.csv"), "--device", "cpu"]) == 1
    assert capsys.readouterr().err.strip().splitlines()[-1] == (
        "bertlearn predict: error: --input: t.out.csv already has the column(s) ['entities'] that the predictions "
        "are written to (the output keeps the input's columns and adds ['entities']); rename them in the file, or "
        "predict from a copy without them")
    assert isinstance(metrics["per_type"]["PER"]["support"], int)
    # what a newcomer gets wrong: a CSV to eval, a NER folder without --train-file, no validation file
    capsys.readouterr()
    assert main(["eval", "--model", str(out), "--input", str(tmp_path / "t.csv"), "--device", "cpu"]) == 1
    assert capsys.readouterr().err == (
        f"bertlearn eval: error: --input '{tmp_path / 't.csv'}': '{out}' is a token classifier (NER), scored on tagged "
        "words: a CoNLL file (a word and its tag per line) or doccano JSONL (text and [start, end, label] spans), not "
        "a CSV\n")
    (tmp_path / "t.csv").unlink()
    assert main(["train", "--data", str(tmp_path), "--out", str(tmp_path / "m2")]) == 1
    assert capsys.readouterr().err == (
        f"bertlearn train: error: --train-file 'train.csv' is not in '{tmp_path}', which holds ['train.conll']; for "
        "token classification (NER) pass --train-file train.conll (the suffix chooses the task)\n")
    (tmp_path / "dev.conll").unlink()
    assert main(["train", "--data", str(tmp_path), "--train-file", "train.conll", "--out", str(tmp_path / "m2")]) == 1
    assert capsys.readouterr().err.endswith(
        f"bertlearn train: error: no validation file in '{tmp_path}': looked for val.txt, dev.conll, valid.conll, "
        "val.conll, dev.txt, valid.txt; pass --val-file (token classification validates on its own file)\n")


# --- CUDA graphs: the graphed step slices the padded positions off the per-token logits ---

def _graph_learners(tiny_model_dir, tmp_path, device, is_fp16):
    from test_graphs import no_dropout
    write_conll(tmp_path / "train.txt", *make_tagged(100, seed=1))
    write_conll(tmp_path / "val.txt", *make_tagged(32, seed=2))
    out = []
    for name in ("e", "g"):
        db = BertNERDataBunch(tmp_path, str(tiny_model_dir), label_file=None, bs=16, maxlen=64, device=device, seed=0)
        learner = BertNERLearner.from_pretrained_model(db, str(tiny_model_dir), tmp_path / name, device,
                                                       is_fp16=is_fp16, seed=0, cuda_graphs=False)
        no_dropout(learner.model)
        out.append(learner)
    return out


def test_graphed_ner_fit_matches_eager(fake_capture, tiny_model_dir, tmp_path):
    from bertlearn import CudaGraphCallback
    eager, graphed = _graph_learners(tiny_model_dir, tmp_path, "cpu", False)
    quiet_fit(eager, 2, lr=1e-3)
    cb = CudaGraphCallback(True)
    graphed.add_cb(cb)
    quiet_fit(graphed, 2, lr=1e-3)
    np.testing.assert_allclose([float(x) for x in graphed.recorder.losses],
                               [float(x) for x in eager.recorder.losses], rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(graphed.recorder.values[-1], eager.recorder.values[-1], rtol=1e-4, atol=1e-5)
    assert cb.captures >= 2


@pytest.mark.gpu
@pytest.mark.parametrize("is_fp16", [False, True])
def test_graphed_ner_fit_matches_eager_on_gpu(tiny_model_dir, tmp_path, is_fp16):
    if not torch.cuda.is_available():
        pytest.skip("needs a CUDA device")
    from bertlearn import CudaGraphCallback
    eager, graphed = _graph_learners(tiny_model_dir, tmp_path, "cuda", is_fp16)
    quiet_fit(eager, 2, lr=1e-3)
    cb = CudaGraphCallback(True)
    graphed.add_cb(cb)
    quiet_fit(graphed, 2, lr=1e-3)
    tol = dict(atol=3e-2) if is_fp16 else dict(rtol=1e-3, atol=1e-4)
    np.testing.assert_allclose([float(x) for x in graphed.recorder.losses],
                               [float(x) for x in eager.recorder.losses], **tol)
    assert cb.captures >= 2


def test_export_and_load_learner_keep_predictions(ner_learner, tmp_path):
    from bertlearn import load_learner
    ner_learner.validate(quiet=True)  # the metrics now hold predictions: export must not pickle them
    ner_learner.path = tmp_path
    f = ner_learner.export("ner.pkl")
    assert f.stat().st_size < 5_000_000
    again = load_learner(f)
    assert isinstance(again, BertNERLearner)
    words = [["bob", "ann", "was", "good"], ["the", "kim"]]
    assert again.predict_tokens(words) == ner_learner.predict_tokens(words)



# --- review follow-ups: schemes, frames, windows, fallbacks ---

def test_entity_scores_on_iob1_bioes_and_bilou_count_entities_as_conlleval():
    # IOB1: gold has 3 entities (I-PER I-PER | B-PER | I-LOC); the prediction merges the two persons into one
    # (wrong), finds LOC and adds an ORG: 1 of 3 predicted entities right, 1 of 3 true entities found
    gold = [["I-PER", "I-PER", "B-PER", "O", "I-LOC", "O"]]
    pred = [["I-PER", "I-PER", "I-PER", "O", "I-LOC", "I-ORG"]]
    s = entity_scores(gold, pred)
    assert s["precision"] == pytest.approx(1 / 3) and s["recall"] == pytest.approx(1 / 3)  # PER PER merged: 1 of 3
    # BIOES and BILOU: the same entities written two ways score the same
    bioes = [["B-PER", "E-PER", "S-LOC", "O"]]
    bilou = [["B-PER", "L-PER", "U-LOC", "O"]]
    assert entity_scores(bioes, bioes)["f1"] == 1.0 and entity_scores(bilou, bilou)["f1"] == 1.0
    half = entity_scores(bilou, [["B-PER", "L-PER", "O", "O"]])
    assert (half["precision"], half["recall"]) == (1.0, 0.5)


def test_strict_bioes_and_bilou_need_closed_entities(tmp_path):
    f = tmp_path / "t.conll"
    f.write_text("a\tB-PER\nb\tO\n")
    with pytest.raises(DataError, match=r"t.conll, line 1: 'B-PER' is not closed \(the next tag is 'O'\); in BIOES"):
        check_scheme(read_conll(f), "BIOES")
    f.write_text("a\tB-PER\nb\tI-PER\n")
    with pytest.raises(DataError, match=r"line 2: 'I-PER' is not closed \(the next tag is 'the sentence end'\); in "
                                        r"BILOU a B- entity continues with I- and ends with L-"):
        check_scheme(read_conll(f), "BILOU")
    f.write_text("a\tB-PER\nb\tL-PER\nc\tU-LOC\n")
    check_scheme(read_conll(f), "BILOU")


def test_auto_detection_refuses_iob2_data_with_a_broken_entity(tmp_path, tiny_model_dir):
    (tmp_path / "train.txt").write_text("bob\tB-PER\nann\tI-PER\n\nthe\tO\nkim\tI-PER\n")
    (tmp_path / "val.txt").write_text("bob\tB-PER\n")
    with pytest.raises(DataError, match=r"train.txt, line 5: 'I-PER' follows 'O', which breaks the IOB2 scheme .* "
                                        r"pass tag_scheme='IOB1'"):
        BertNERDataBunch(tmp_path, str(tiny_model_dir), label_file=None, maxlen=32)
    db = BertNERDataBunch(tmp_path, str(tiny_model_dir), label_file=None, maxlen=32, tag_scheme="IOB1", device="cpu")
    assert db.scheme == "IOB1"


def test_window_targets_hold_every_word_tag_exactly_once(tiny_tokenizer):
    words, tags = make_tagged(40, seed=11)
    labels = ["O", "B-PER", "I-PER", "B-POS"]
    ids = [[labels.index(t) for t in ts] for ts in tags]
    ds = TagEncoder(tiny_tokenizer, 12, labels).dataset(words, ids)
    assert len(ds) > len(words)
    got = [[None] * len(w) for w in words]
    for r in range(len(ds)):
        row = np.asarray(ds.targets[r])
        labelled = np.flatnonzero(row != IGNORE_INDEX)
        assert list(labelled) == list(ds.word_pos[r])  # only first pieces carry a tag
        for k, pos in enumerate(ds.word_pos[r]):
            j = int(ds.first_word[r]) + k
            assert got[ds.owner[r]][j] is None
            got[ds.owner[r]][j] = int(row[pos])
    assert got == ids


def test_from_df_and_row_errors_name_the_frames_index(tiny_model_dir):
    w, t = make_tagged(30, seed=5)
    df = pd.DataFrame({"tokens": w, "tags": t}, index=range(100, 130))
    db = BertNERDataBunch.from_df(df, None, str(tiny_model_dir), valid_pct=0.2, seed=0, bs=8, maxlen=32, device="cpu")
    assert (db.train_ds.n_texts, db.valid_ds.n_texts) == (24, 6)
    bad = df.copy()
    bad.at[117, "tags"] = ["O"]
    with pytest.raises(DataError, match=r"train_df, row 117: \d+ words but 1 tags"):
        BertNERDataBunch.from_df(bad, df, str(tiny_model_dir))
    with pytest.raises(DataError, match=r"train_df has no column 'words' \(words_col\).*pass words_col="):
        BertNERDataBunch.from_df(df, df, str(tiny_model_dir), words_col="words")
    # before: 1.5 held out half the rows (a negative slice), 0 and -0.5 one row, without a word
    for pct in (1.5, 0, -0.5, 1):
        with pytest.raises(DataError, match=rf"^valid_pct={pct} must be between 0 and 1 when valid_df is None "
                                            r"\(e\.g\. 0\.2, the share held out\), or pass valid_df$"):
            BertNERDataBunch.from_df(df, None, str(tiny_model_dir), valid_pct=pct)
    with pytest.raises(DataError, match=r"^valid_pct=0.99 of 30 rows leaves no training rows; give more rows or a "
                                        r"smaller valid_pct$"):
        BertNERDataBunch.from_df(df, None, str(tiny_model_dir), valid_pct=0.99)


def test_jsonl_span_cutting_a_word_is_refused(tmp_path):
    (tmp_path / "d.jsonl").write_text(json.dumps({"text": "New Yorker", "labels": [[0, 8, "LOC"]]}) + "\n")
    with pytest.raises(DataError, match=r"d.jsonl, line 1: entity \[0, 8, 'LOC'\] \('New York'\) cuts the word "
                                        r"'Yorker'"):
        read_jsonl(tmp_path / "d.jsonl")


def test_show_batch_counts_entities_by_the_scheme(tmp_path, tiny_model_dir):
    (tmp_path / "train.txt").write_text("bob\tI-PER\nann\tI-PER\nkim\tB-PER\nthe\tO\n")
    (tmp_path / "val.txt").write_text("bob\tI-PER\n")
    db = BertNERDataBunch(tmp_path, str(tiny_model_dir), label_file=None, maxlen=32, device="cpu")
    frame = db.train.frame()
    assert frame["text"].tolist() == ["bob/I-PER ann/I-PER kim/B-PER the"] and frame["entities"].tolist() == [2]


def test_test_file_is_read_untagged_and_predicted_by_default(ner_dir, tiny_model_dir):
    (ner_dir / "test.txt").write_text("bob\nwas\ngood\n\nthe\tX\tO\n")
    db = BertNERDataBunch(ner_dir, str(tiny_model_dir), test_file="test.txt", bs=8, maxlen=64, device="cpu")
    learner = BertNERLearner.from_pretrained_model(db, str(tiny_model_dir), ner_dir / "o", "cpu")
    with pytest.warns(UserWarning, match="not been trained yet"):
        tags = learner.predict_tokens()
    assert [len(t) for t in tags] == [3, 1]
    db2 = BertNERDataBunch(ner_dir, str(tiny_model_dir), bs=8, maxlen=64, device="cpu")
    learner2 = BertNERLearner.from_pretrained_model(db2, str(tiny_model_dir), ner_dir / "o2", "cpu")
    with pytest.raises(NotFittedError, match=r"predict_tokens\(\) without sentences tags the databunch's test_file"):
        learner2.predict_tokens()
    with pytest.raises(TypeError, match=r"test_dl\(\) got unexpected arguments \['with_labels'\]"):
        db2.test_dl([["bob"]], with_labels=True)
    # raw text (fastai's habit with test_dl) was cut into characters: "bob is fun" became 10 words, spaces too
    raw = (r"^{}: items \[0, 1\] are strings, and sentences are lists of words, e\.g\. \[\['Jane', 'lives', 'in', "
           r"'Paris'\]\] \(a string would be cut into characters, one word each\); split the texts into words first, "
           r"or tag raw text with learner\.predict_batch\(texts\)$")
    with pytest.raises(DataError, match=raw.format("test_items")):
        db2.test_dl(["bob is fun", "ann was good"])
    frame = pd.DataFrame({"tokens": [["bob", "was", "good"]] * 8, "tags": [["B-PER", "O", "O"]] * 8})
    with pytest.raises(DataError, match=raw.format("test")):
        BertNERDataBunch.from_df(frame, frame, str(tiny_model_dir), test=["bob is fun", "ann was good"], device="cpu")
    assert db2.test_dl([["bob", "is", "fun"]]).dataset.words == [["bob", "is", "fun"]]


def test_report_confusions_and_results_without_the_default_metrics(ner_dir, tiny_model_dir):
    db = BertNERDataBunch(ner_dir, str(tiny_model_dir), bs=8, maxlen=64, device="cpu")
    learner = BertNERLearner.from_pretrained_model(db, str(tiny_model_dir), ner_dir / "o", "cpu", metrics=[],
                                                   seed=0)
    quiet_fit(learner, 1, lr=1e-3)
    report = learner.report()
    assert {"PER", "POS", "micro avg"} <= set(report.index)
    assert int(learner.confusions().values.sum()) == sum(len(s) for s in db.valid_ds.words)
    shown = learner.show_results(2)
    assert list(shown.columns) == ["true", "predicted"] and len(shown) == 2


def test_generators_and_slow_tokenizers(ner_learner, tiny_model_dir):
    words = [["bob", "was", "good"], ["the"]]
    assert ner_learner.predict_tokens(w for w in words) == ner_learner.predict_tokens(words)
    class PythonTokenizer:  # transformers 5's classes are all fast; a tokenizer without word ids is refused
        is_fast = False

    with pytest.raises(DataError, match=r"token classification needs a fast tokenizer .* PythonTokenizer is not one"):
        TagEncoder(PythonTokenizer(), 32, ["O"])


def test_checkpoint_and_resume(ner_dir, tiny_model_dir):
    db = BertNERDataBunch(ner_dir, str(tiny_model_dir), bs=8, maxlen=64, device="cpu", seed=0)
    learner = BertNERLearner.from_pretrained_model(db, str(tiny_model_dir), ner_dir / "ck", "cpu", seed=0)
    quiet_fit(learner, 2, lr=1e-3, checkpoint=True)
    assert (ner_dir / "ck" / "checkpoints" / "last" / "state.json").is_file()
    again = BertNERLearner.from_pretrained_model(db, str(tiny_model_dir), ner_dir / "ck", "cpu", seed=1)
    quiet_fit(again, 2, lr=1e-3, resume=True)  # both epochs done: nothing left to train, the weights are restored
    for a, b in zip(learner.model.parameters(), again.model.parameters()):
        torch.testing.assert_close(a, b)


class TestAccumulation:
    """Gradient accumulation of a loss over tagged words: a step is one batch that many times as large."""

    @staticmethod
    def learner(tmp_path, tiny_model_dir, rows):
        model = without_dropout(tiny_model_dir, tmp_path / "model")
        write_conll(tmp_path / "train.txt", *make_tagged(rows, seed=1))
        write_conll(tmp_path / "val.txt", *make_tagged(8, seed=2))
        db = BertNERDataBunch(tmp_path, str(model), train_file="train.txt", val_file="val.txt", label_file=None, bs=4,
                              maxlen=64, device="cpu", seed=0)
        return BertNERLearner.from_pretrained_model(db, str(model), tmp_path / "out", "cpu", seed=0,
                                                    grad_accumulation_steps=3)

    def test_a_step_weighs_every_tagged_word_alike(self, tmp_path, tiny_model_dir):
        # each batch's mean was scaled by its rows (fastai's rule): batches of 50, 33 and 51 tagged words weighed a
        # word of the second 1.5x one of the others, and the step's gradients were 4% (of their norm) off those of
        # one batch of all three, which transformers' Trainer computes (it weighs tokens)
        learner = self.learner(tmp_path, tiny_model_dir, 24)
        start = {k: v.clone() for k, v in learner.model.state_dict().items()}
        rec = FirstStepGrads()
        quiet_fit(learner, 1, lr=1e-3, cbs=[rec])
        counts = [int((y != IGNORE_INDEX).sum()) for _, (y,) in rec.batches]
        assert len(counts) == 3 and len(set(counts)) == 3, counts
        learner.model.load_state_dict(start)
        learner.model.zero_grad(set_to_none=True)
        total = sum(torch.nn.functional.cross_entropy(learner.model(*xb).logits.flatten(0, 1), y.flatten(),
                                                      ignore_index=IGNORE_INDEX, reduction="sum")
                    for xb, (y,) in rec.batches)
        (total / sum(counts)).backward()
        assert_same_grads(learner.model, rec.grads)

    def test_an_epoch_ending_mid_step_resumes_as_the_whole_fit(self, tmp_path, tiny_model_dir, monkeypatch):
        # 20 sentences in batches of 4, 3 a step: epoch 1 ends 2 batches into a step, whose tagged words so far the
        # checkpoint keeps with its gradients (the resumed step divides by the whole step's words)
        import json

        from fastai.callback.core import Callback, CancelFitException

        class StopAfterFirstEpoch(Callback):
            order = 100  # after the checkpoint is written

            def after_epoch(self):
                raise CancelFitException()

        whole = self.learner(tmp_path / "whole", tiny_model_dir, 20)
        quiet_fit(whole, 2, lr=1e-3)
        cut = self.learner(tmp_path / "cut", tiny_model_dir, 20)
        quiet_fit(cut, 2, lr=1e-3, checkpoint=True, cbs=[StopAfterFirstEpoch()])
        state_file = tmp_path / "cut" / "out" / "checkpoints" / "last" / "state.json"
        state = json.loads(state_file.read_text())
        assert state["accumulated"] == 2 and state["accumulated_weights"][1] > 1
        resumed = self.learner(tmp_path / "cut", tiny_model_dir, 20)
        quiet_fit(resumed, 2, lr=1e-3, resume=True)
        for (name, a), b in zip(whole.model.named_parameters(), resumed.model.parameters()):
            torch.testing.assert_close(a, b, atol=1e-6, rtol=1e-5, msg=name)
        # a checkpoint written before steps weighed tagged words holds rows-scaled gradients: left out, said once
        del state["accumulated_weights"]
        state_file.write_text(json.dumps(state))
        import shutil
        shutil.copytree(tmp_path / "cut", tmp_path / "cut_rank1")
        old = self.learner(tmp_path / "cut", tiny_model_dir, 20)
        with pytest.warns(UserWarning, match=r"^resume: the checkpoint holds a step part-way accumulated as fastai "
                          r"weighs batches \(each by its rows / n_acc; written before bertlearn weighed an accumulated "
                          r"step as one batch of all its rows or tagged / masked tokens\); those batches' gradients "
                          r"are left out of the resumed step, which goes on with the batches after them$"):
            quiet_fit(old, 2, lr=1e-3, resume=True)
        # under DDP the other ranks say nothing (it was said once per rank)
        import warnings

        import bertlearn.distributed
        monkeypatch.setattr(bertlearn.distributed, "is_main_process", lambda: False)
        other = self.learner(tmp_path / "cut_rank1", tiny_model_dir, 20)
        with warnings.catch_warnings(record=True) as seen:
            warnings.simplefilter("always")
            quiet_fit(other, 2, lr=1e-3, resume=True)
        assert not [w for w in seen if str(w.message).startswith("resume: the checkpoint holds")]
        for (name, a), b in zip(other.model.state_dict().items(), old.model.state_dict().values()):
            torch.testing.assert_close(a, b, msg=name)  # the same resumed step, the same weights


def test_cli_jsonl_train_and_predict(tmp_path, tiny_model_dir, capsys):
    from bertlearn.cli import main
    rng = random.Random(1)
    with open(tmp_path / "d.jsonl", "w") as f:
        for _ in range(40):
            name = rng.choice(NAMES)
            f.write(json.dumps({"text": f"the movie {name} was good", "labels": [[10, 10 + len(name), "PER"]]}) + "\n")
    out = tmp_path / "m"
    with pytest.warns(UserWarning, match=r"--tag-scheme: no effect on token classification from JSONL"):
        assert main(["train", "--data", str(tmp_path), "--train-file", "d.jsonl", "--model", str(tiny_model_dir),
                     "--epochs", "1", "--bs", "8", "--maxlen", "32", "--out", str(out), "--device", "cpu",
                     "--tag-scheme", "IOB2"]) == 0
    # a text may hold U+2028 / U+0085, which json.dumps leaves as they are (before, str.splitlines cut the line there)
    (tmp_path / "new.jsonl").write_text(json.dumps({"text": "bob was good"}) + "\n" +
                                        json.dumps({"text": "x\u2028y\x85z"}, ensure_ascii=False) + "\r\n")
    assert main(["predict", "--model", str(out), "--input", str(tmp_path / "new.jsonl"), "--output",
                 str(tmp_path / "p.jsonl"), "--device", "cpu"]) == 0
    got = [json.loads(l) for l in (tmp_path / "p.jsonl").read_text().split("\n") if l]
    assert [g["text"] for g in got] == ["bob was good", "x\u2028y\x85z"]
    assert all(isinstance(g["entities"], list) for g in got)
    # eval reads --text-col / --label-col as the JSONL keys (they were dropped, and the file refused or misread) and
    # says the CSV options do nothing
    gold = [json.dumps({"sentence": "the movie bob was good", "ents": [[10, 13, "PER"]]}),
            json.dumps({"sentence": "the movie anna was good", "ents": [[10, 14, "PER"]]})]
    (tmp_path / "gold.jsonl").write_text("\n".join(gold) + "\n")
    with pytest.warns(UserWarning, match=r"^--sep: no effect on scoring a token classifier on a JSONL file$"):
        assert main(["eval", "--model", str(out), "--input", str(tmp_path / "gold.jsonl"), "--text-col", "sentence",
                     "--label-col", "ents", "--sep", ";", "--device", "cpu", "--json", str(tmp_path / "e.json")]) == 0
    assert json.loads((tmp_path / "e.json").read_text())["sentences"] == 2
    capsys.readouterr()
    assert main(["eval", "--model", str(out), "--input", str(tmp_path / "gold.jsonl"), "--text-col", "sentence",
                 "title", "--device", "cpu"]) == 1
    assert capsys.readouterr().err.strip().splitlines()[-1].endswith(
        "--text-col sentence title: each line of a token classifier's JSONL file is read at one key (default 'text'); "
        "pass one name")
    # before: a text that is not a string (null, a number, a word list) was tagged as its str(): "None", "42"
    (tmp_path / "odd.jsonl").write_text(json.dumps({"text": "bob was good"}) + "\n" + json.dumps({"text": None}))
    assert main(["predict", "--model", str(out), "--input", str(tmp_path / "odd.jsonl"), "--output",
                 str(tmp_path / "q.jsonl"), "--device", "cpu"]) == 1
    assert capsys.readouterr().err.strip().splitlines()[-1].endswith(
        f"{tmp_path / 'odd.jsonl'}, line 2: 'text' holds None, not a string; each line holds one text, like "
        '{"text": "..."}')
    assert not (tmp_path / "q.jsonl").exists()


def test_a_folder_saved_again_with_its_tags_reordered_is_refused(ner_learner, tmp_path):
    # before: bertlearn.json's tag order was taken over config.json's without a look, so a folder a Trainer saved
    # again with another label2id tagged every word with another tag (as classification folders are refused)
    import transformers as T
    folder = ner_learner.save_model(tmp_path / "m")
    model = T.AutoModelForTokenClassification.from_pretrained(folder)
    with torch.no_grad():
        model.classifier.weight.copy_(model.classifier.weight.flip(0))
        model.classifier.bias.copy_(model.classifier.bias.flip(0))
    flipped = list(reversed(ner_learner.labels))
    model.config.id2label = dict(enumerate(flipped))
    model.config.label2id = {l: i for i, l in enumerate(flipped)}
    model.save_pretrained(folder)
    names = ", ".join(ner_learner.labels[:5])
    with pytest.raises(ModelError, match=rf"^{re.escape(repr(str(folder)))}: bertlearn.json names the outputs "
                                         rf"{re.escape(names)}.* but config.json names them "
                                         rf"{re.escape(', '.join(flipped[:5]))}.*; the model was saved again after "
                                         r"bertlearn saved it \(or its bertlearn\.json was written by hand\)\. Save it "
                                         r"with learner\.save_model\(path\) again, or delete the stale "
                                         r"bertlearn\.json to read the folder as a plain Hugging Face model$"):
        BertNERPredictor(folder, device="cpu")


def test_the_saved_predictor_skips_padding_on_a_cpu_and_tags_alike(ner_learner, tmp_path, monkeypatch):
    import bertlearn.tasks.token_classification as tc
    from conftest import spy_skips
    seen = spy_skips(monkeypatch, tc)
    predictor = BertNERPredictor(ner_learner.save_model(tmp_path / "m"), device="cpu")
    assert predictor.padding_skippable  # the probe compared the real positions' logits, dense and skipped
    texts = ["Anna", "a wonderful film with Anna Smith and John in it , a great one , truly great and good"]
    words = [t.split() for t in texts]
    got, tags = predictor.predict_batch(texts), predictor.predict_tokens(words)
    assert any(seen), "no batch skipped its padding: the comparisons below test nothing"
    predictor.skip_padding = False
    seen.clear()
    dense = predictor.predict_batch(texts)
    assert not any(seen)
    assert tags == predictor.predict_tokens(words) == ner_learner.predict_tokens(words)
    for a, b in zip(got, dense):
        assert [{**e, "score": pytest.approx(e["score"], abs=1e-6)} for e in a] == b
    assert any(got), "the tagger found no entity: the comparison of entities tests little"


# --- a third review: grouping as scoring counts, underscore tags, decomposed accents ---

def test_grouping_counts_the_entities_scoring_counts(tiny_tokenizer):
    from seqeval.metrics.sequence_labeling import get_entities
    words = text_words(tiny_tokenizer, ["bob ann the kim bob ann"])[0]
    labels = ["O", "B-PER", "I-PER", "E-PER", "S-PER", "B-LOC", "I-LOC", "E-LOC", "S-LOC"]

    def spans(tags):
        return [(e["entity_group"], e["start"], e["end"])
                for e in group_entities(words, tag_probs(tags, labels), labels, tiny_tokenizer)]

    # ill-formed runs an imperfect model produces: an entity ends after E- and S-, as conlleval (seqeval) counts
    assert spans(["S-PER", "I-PER", "E-PER", "O", "O", "O"]) == [("PER", 0, 3), ("PER", 4, 11)]
    assert spans(["B-PER", "E-PER", "E-PER", "O", "O", "O"]) == [("PER", 0, 7), ("PER", 8, 11)]
    assert spans(["B-PER", "I-LOC", "E-LOC", "O", "S-LOC", "I-LOC"]) == [
        ("PER", 0, 3), ("LOC", 4, 11), ("LOC", 16, 19), ("LOC", 20, 23)]
    ends = [(w["start"], w["end"]) for w in words]
    rng = random.Random(0)
    for _ in range(300):  # any tag sequence: the same chunks scoring counts
        tags = [rng.choice(labels) for _ in words]
        assert spans(tags) == [(k, ends[a][0], ends[b][1]) for k, a, b in get_entities(tags)], tags


def test_underscore_tags_score_and_group_as_dashed_ones(tiny_tokenizer):
    gold = [["B_PER", "I_PER", "O", "B_LOC"], ["B_LOC", "O", "O", "O"]]
    pred = [["B_PER", "I_PER", "O", "O"], ["B_LOC", "O", "B_PER", "O"]]
    dashed = [[t.replace("_", "-") for t in s] for s in gold], [[t.replace("_", "-") for t in s] for s in pred]
    # PER: 1 right of 2 predicted, 1 true; LOC: 1 right of 1 predicted, 2 true
    assert entity_scores(gold, pred) == entity_scores(*dashed)
    report = entity_report(gold, pred)
    assert sorted(k for k in report.index if k.isupper()) == ["LOC", "PER"]
    assert report.loc["PER", "precision"] == 0.5 and report.loc["LOC", "recall"] == 0.5
    words = text_words(tiny_tokenizer, ["bob ann the kim"])[0]
    labels = ["O", "B_PER", "I_PER"]
    p = tag_probs(["B_PER", "I_PER", "O", "I_PER"], labels)
    assert [(e["entity_group"], e["word"]) for e in group_entities(words, p, labels, tiny_tokenizer)] == [
        ("PER", "bob ann"), ("PER", "kim")]


def test_tags_without_a_prefix_are_types_of_their_own(tiny_tokenizer):
    # a Hugging Face folder's labels may carry no scheme (a POS model, LABEL_n): each is one type, and neighbouring
    # words of a type run together, as the pipeline groups them (seqeval alone would read "PER" as type "ER")
    words = text_words(tiny_tokenizer, ["bob ann the kim bob ann"])[0]
    labels = ["O", "PER", "NOUN", "LABEL_1", "X", "N_A"]
    tags = ["PER", "PER", "NOUN", "LABEL_1", "X", "N_A"]
    p = tag_probs(tags, labels)
    assert [(e["entity_group"], e["word"]) for e in group_entities(words, p, labels, tiny_tokenizer)] == [
        ("PER", "bob ann"), ("NOUN", "the"), ("LABEL_1", "kim"), ("X", "bob"), ("N_A", "ann")]
    report = entity_report([tags], [tags])
    assert sorted(k for k in report.index if "avg" not in k) == ["LABEL_1", "NOUN", "N_A", "PER", "X"]


def test_decomposed_accents_keep_their_words():
    import unicodedata

    from bertlearn import load_tokenizer
    tok = load_tokenizer(None)  # the packaged MiniLM's: uncased, strips accents
    text = unicodedata.normalize("NFD", "visit São Paulo with José")
    assert len(text) == 27  # "S a \u0303 o" and "J o s e \u0301"
    words = text_words(tok, [text])[0]
    # one word per word, each span covering its accents: the pipeline's length test would glue "sao" to "visit"
    assert [(w["tokens"], text[w["start"]:w["end"]]) for w in words] == [
        (["visit"], "visit"), (["sao"], "Sa\u0303o"), (["paulo"], "Paulo"), (["with"], "with"),
        (["jose"], "Jose\u0301")]



def test_a_combining_mark_extends_a_word_only_up_to_the_next(tmp_path):
    from transformers import BertTokenizerFast
    vocab = tmp_path / "vocab.txt"
    vocab.write_text("\n".join(["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", "ok", "(", ")", "x", "##x"]))
    cased = BertTokenizerFast(vocab_file=str(vocab), do_lower_case=False, strip_accents=False)
    text = "ok (\u0301x)"  # the mark stays with "x" (an unknown word from 4 to 6), right after "("
    assert [(w["start"], w["end"]) for w in text_words(cased, [text])[0]] == [(0, 2), (3, 4), (4, 6), (6, 7)]


# --- a fast-bert migrant's NER code, pasted ---

def test_fast_bert_ner_code_runs_as_pasted(ner_dir, ner_learner, tiny_model_dir, tmp_path, monkeypatch):
    import bertlearn.compat
    from bertlearn.compat import FastBertCompatWarning
    monkeypatch.setattr(bertlearn.compat, "_said", set())  # each argument is named once per process
    (ner_dir / "labels.txt").write_text("B-PER\nI-PER\nB-POS\nI-POS\n")  # no O: fast-bert's reader added it
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        databunch = BertNERDataBunch(ner_dir, str(tiny_model_dir), train_file="train.txt", val_file="val.txt",
                                     label_file="labels.txt", batch_size_per_gpu=16, max_seq_length=64,
                                     multi_gpu=False, clear_cache=True)
        BertNERLearner.from_pretrained_model(databunch, str(tiny_model_dir), output_dir=tmp_path / "o",
                                             device="cpu", logger=None, is_fp16=False, save_steps=500)
    assert databunch.labels == ["O", "B-PER", "I-PER", "B-POS", "I-POS"]
    said = " | ".join(str(w.message) for w in caught if issubclass(w.category, FastBertCompatWarning))
    assert "clear_cache=True: tagged data is encoded in memory each time (no cache to clear)" in said
    assert "save_steps=500: checkpoints are written per epoch: fit(..., checkpoint=True)" in said
    with pytest.raises(DataError, match=r"^train_file=None, val_file=None: BertNERDataBunch trains on a training "
                                        r"and a validation file in data_dir; to predict with a saved model, use "
                                        r"BertNERPredictor\(model_dir\)"):
        BertNERDataBunch(ner_dir, str(tiny_model_dir), train_file=None, val_file=None)
    # the trained learner's entities: exclusion by fast-bert's opening tag, by type, and none at all
    text = "ann kim liked the great film with bob"
    every = ner_learner.predict(text, exclude_entities=None)
    kinds = [e["entity_group"] for e in every]
    assert "PER" in kinds and "O" in kinds  # O words not excluded: runs of them, as fast-bert returned them
    assert ner_learner.predict(text, exclude_entities=["O", "B-PER"]) == \
        [e for e in every if e["entity_group"] not in ("PER", "O")]
    assert ner_learner.predict(text) == [e for e in every if e["entity_group"] != "O"]
    assert ner_learner.predict(text, exclude_entities=["PER"]) == [e for e in every if e["entity_group"] != "PER"]
    words = ner_learner.predict(text, group=False, exclude_entities=None)
    assert len(words) == len(text.split()) and {w["entity"] for w in words} <= set(ner_learner.dls.labels)
    assert [w for w in ner_learner.predict(text, group=False, exclude_entities=["PER", "O"])] == [
        w for w in words if w["entity"] not in ("O", "B-PER", "I-PER")]
    # fast-bert's predictor signature: label_path checked against the saved tags ("O" may be left out of it)
    folder = ner_learner.save_model(tmp_path / "model_out")
    (tmp_path / "labels.txt").write_text("\n".join(t for t in ner_learner.dls.labels if t != "O") + "\n")
    with warnings.catch_warnings():
        warnings.simplefilter("error", UserWarning)  # the file's order is the model's: nothing to say but model_type
        warnings.filterwarnings("ignore", category=FastBertCompatWarning)
        predictor = BertNERPredictor(folder, tmp_path, "bert", True, None, "cpu")
    assert predictor.device == torch.device("cpu") and predictor.predict(text) == ner_learner.predict(text)
    (tmp_path / "labels.txt").write_text("B-LOC\nI-LOC\n")
    with pytest.raises(ModelError, match=r"lists the labels \['O', 'B-LOC', 'I-LOC'\], but the model in"):
        BertNERPredictor(folder, label_path=tmp_path, device="cpu")
    with pytest.raises(DataError, match=r"^predict\(text\) takes one text, got list \['ann', 'kim'\]: pre-split words "
                                        r"go to predict_tokens\(\[words\]\), several texts to predict_batch\(texts\)$"):
        predictor.predict(["ann", "kim"])
    for device, shown in (("cpu", "'cpu'"), (torch.device("cpu"), "'cpu'"), ("cuda:1", "'cuda:1'"), (0, "0")):
        # a bertlearn caller's old order (device second) is named, before anything loads
        with pytest.raises(ModelError, match=r"^label_path=.* is a device: BertNERPredictor's second argument is "
                                             r"fast-bert's label_path; pass the device as a keyword, "
                                             rf"BertNERPredictor\(model_path, device={shown}\)$"):
            BertNERPredictor(tmp_path / "nowhere", device)


@pytest.mark.parametrize("kind", ["roberta", "albert", "deberta-v2"])
def test_raw_text_is_tagged_from_the_pieces_its_words_were_trained_on(kind, tmp_path):
    # before: a RoBERTa tokenizer loaded without add_prefix_space trained on "word" where a text has "Ġword"; and a
    # bare space mark ("Ġ", "▁") before a word with no marked piece became a word of its own in predict, so
    # predict and predict_tokens tagged one sentence as different words from different pieces
    import transformers as T

    from conftest import build_tiny_architecture
    folder = build_tiny_architecture(kind, tmp_path / kind)
    tok = T.AutoTokenizer.from_pretrained(folder)
    words, tags = make_tagged(24, seed=6)
    df = pd.DataFrame({"tokens": words, "tags": tags})
    with warnings.catch_warnings(record=True) as said:
        warnings.simplefilter("always")
        db = BertNERDataBunch.from_df(df, df, tok, bs=8, maxlen=256, device="cpu")
    copied = [str(w.message) for w in said if "add_prefix_space=False" in str(w.message)]
    if kind == "roberta":
        assert copied == ["RobertaTokenizer was loaded with add_prefix_space=False, which encodes pre-split words "
                          "without the space mark their words carry in a text; token classification uses a copy "
                          "with add_prefix_space=True (saved with the model; your tokenizer object is unchanged). "
                          "Load it with add_prefix_space=True to say so yourself"]
        assert tok.add_prefix_space is False and db.tokenizer.add_prefix_space is True
    else:
        assert copied == [] and db.tokenizer is tok
    ds = db.train_ds
    assert list(ds.owner) == list(range(len(words))) and not ds.first_word.any()  # one whole sentence a row
    for i, sentence in enumerate(words):  # a training row holds the pieces its words have in the text
        in_text = text_words(db.tokenizer, [" ".join(sentence)])[0]
        assert list(ds.ids[i])[1:-1] == [p for w in in_text for p in w["ids"]]
    learner = BertNERLearner.from_pretrained_model(db, str(folder), tmp_path / "out", "cpu", None, seed=0)
    torch.manual_seed(0)
    torch.nn.init.normal_(learner.model.classifier.weight, std=5.0)  # tags that differ from word to word
    # words apart by a space, a run of spaces, a newline, a tab, and text that starts with spaces
    for join in (" ", "  ", "\n", " \n\t", "\t"):
        texts = [("  " if join == "\t" else "") + join.join(s) for s in words[:8]]
        per_word = learner.predict_batch(texts, group=False, exclude_entities=None)
        assert [[t[d["start"]:d["end"]] for d in ws] for t, ws in zip(texts, per_word)] == words[:8]
        assert [[d["entity"] for d in ws] for ws in per_word] == learner.predict_tokens(words[:8])
        assert len({d["entity"] for ws in per_word for d in ws}) > 1
    # characters of several pieces (an emoji's or a CJK character's bytes, a ligature) are one word, and so are
    # the pieces DeBERTa's offsets start at the space before
    texts = ["bob 😀 ann", "東京 bob was good", "ﬁne bob", "good the movie was"]
    per_word = learner.predict_batch(texts, group=False, exclude_entities=None)
    assert [[t[d["start"]:d["end"]] for d in ws] for t, ws in zip(texts, per_word)] == [t.split() for t in texts]
    assert [[d["entity"] for d in ws] for ws in per_word] == learner.predict_tokens([t.split() for t in texts])


def test_an_entity_word_is_its_pieces_decoded_once(tmp_path):
    # before, the entity's words were decoded, then decoded again as if they were tokens (as the pipeline does):
    # byte-level BPE read "é" back through its byte table and answered "cafÃ©"
    import transformers as T

    from bertlearn.data.tagged import tokenizer_for_words
    from conftest import build_tiny_architecture
    tok = T.AutoTokenizer.from_pretrained(build_tiny_architecture("roberta", tmp_path / "roberta"),
                                          add_prefix_space=True)
    assert tokenizer_for_words(tok) is tok
    text = "we met at café olé today"
    words = text_words(tok, [text])[0]
    labels = ["O", "B-LOC", "I-LOC"]
    [entity] = group_entities(words, tag_probs(["O", "O", "O", "B-LOC", "I-LOC", "O"], labels), labels, tok)
    assert (entity["word"], text[entity["start"]:entity["end"]]) == (" café olé", "café olé")


def test_sentences_a_validation_pass_did_not_reach_are_left_out_of_the_scores(tiny_tokenizer):
    # before, their words were read as tag 0 ("O"): every entity in them became a miss, and recall fell silently
    from bertlearn.tasks.token_classification import TagCollector
    labels = ["O", "B-PER", "I-PER"]
    words = [["bob", "was", "here"], ["ann", "lee", "left"], ["kim", "is", "good"]]
    tags = [[1, 0, 0], [1, 2, 0], [1, 0, 0]]
    ds = TagEncoder(tiny_tokenizer, 64, labels).dataset(words, tags)
    collector = TagCollector()
    collector.dataset = ds
    collector.rows = [np.array([0, 2])]  # sentence 1 never predicted
    rows = [np.asarray(ds.targets[r]) for r in (0, 2)]
    perfect = np.zeros((2, max(map(len, rows))), np.int64)
    for line, r in enumerate(rows):
        perfect[line, :len(r)] = r.clip(0)
    collector.preds = [torch.as_tensor(perfect, dtype=torch.int16)]
    with pytest.warns(UserWarning, match=r"^entity scores: 1 of 3 validation sentences were not predicted \(the pass "
                                         r"stopped early, e.g. ShortEpochCallback\); the scores count the 2 that were$"):
        gold, pred = collector.tags()
    assert gold == pred == [["B-PER", "O", "O"], ["B-PER", "O", "O"]]
    assert collector.scores()["f1"] == 1.0
    # none whole (a long sentence's windows cut by the pass's end): NaN scores, not seqeval's TypeError
    long = TagEncoder(tiny_tokenizer, 8, labels).dataset([["bob"] * 6], [[1] * 6])
    assert len(long) > 1
    collector.reset()
    collector.dataset, collector.rows = long, [np.array([0])]
    collector.preds = [torch.as_tensor(np.asarray(long.targets[0]).clip(0)[None], dtype=torch.int16)]
    with pytest.warns(UserWarning, match=r"^entity scores: 1 of 1 validation sentences were not predicted .* the "
                                         r"scores count the 0 that were \(NaN\)$"):
        assert all(np.isnan(v) for v in collector.scores().values())


def test_a_generic_byte_level_tokenizer_gets_its_space_mark_and_a_saved_model_keeps_its_own(tmp_path):
    # a tokenizer.json alone (as ModernBERT ships) loads as a generic class whose add_prefix_space= does not reach
    # the pre-tokenizer: the copy sets it there (before, such tokenizers were refused); and a model saved with a
    # tokenizer that encodes words without the mark is read with that tokenizer, the pieces it was trained on
    import transformers as T

    from bertlearn.data.tagged import tokenizer_for_words
    from conftest import build_tiny_architecture
    folder = build_tiny_architecture("roberta", tmp_path / "roberta")
    generic = T.PreTrainedTokenizerFast(tokenizer_file=str(folder / "tokenizer.json"), pad_token="<pad>",
                                        unk_token="<unk>")
    split = generic([["the", "movie"]], is_split_into_words=True, add_special_tokens=False)
    assert generic.convert_ids_to_tokens(split["input_ids"][0])[-1] == "movie"  # no mark: unlike "the movie"
    with pytest.warns(UserWarning, match="uses a copy with add_prefix_space=True"):
        fixed = tokenizer_for_words(generic)
    assert generic.backend_tokenizer.pre_tokenizer.add_prefix_space is False  # the caller's is untouched
    fixed.save_pretrained(tmp_path / "saved")
    reloaded = T.AutoTokenizer.from_pretrained(tmp_path / "saved")
    for tok in (fixed, reloaded):
        split = tok([["the", "movie"]], is_split_into_words=True, add_special_tokens=False)
        assert tok.convert_ids_to_tokens(split["input_ids"][0]) == ["Ġthe", "Ġmovie"]
        # offsets trimmed as the mark was added (RoBERTa's post-processor too): the first word keeps its letters
        raw = tok("the movie", add_special_tokens=False, return_offsets_mapping=True)
        assert [("the movie")[a:b] for a, b in raw["offset_mapping"]] == ["the", "movie"]
    old = T.AutoTokenizer.from_pretrained(folder)  # as a model saved before the copy existed holds it
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert TagEncoder.from_settings(old, {"maxlen": 32, "labels": ["O", "B-PER"]}).tokenizer is old


def test_a_cancelled_validation_says_so(ner_learner):
    # before, fastai's empty record raised an IndexError from inside validate
    from fastai.callback.training import ShortEpochCallback

    from bertlearn import BertLearnError
    with pytest.raises(BertLearnError, match=r"^validate: the pass was cancelled before it recorded a loss \(a callback "
                                             r"such as ShortEpochCallback stopped it\); validate without that callback$"):
        ner_learner.validate(cbs=[ShortEpochCallback(pct=0.01, short_valid=True)], quiet=True)
    assert ner_learner.validate(quiet=True)["f1"] > 0.5  # the learner is as it was


# --- a fourth review: a checkpoint's tag order, doccano's entities, all-O data, IO tags, raw text, tabs ---

def _io_to_iob2(tags: list[list[str]]) -> list[list[str]]:
    """IO tags as IOB2: a run of one type is one entity, opened by B-."""
    return [[t if t == "O" else ("I-" if j and s[j - 1] == t else "B-") + t for j, t in enumerate(s)] for s in tags]


def test_a_checkpoint_listing_its_tags_in_another_order_tags_as_it_was_saved(ner_learner, tmp_path):
    # before, from_pretrained named the checkpoint's outputs after the data's tags by position: its B-PER output
    # was read as the data's second tag, B-POS
    folder = ner_learner.save_model(tmp_path / "m")
    assert ner_learner.labels == ["O", "B-PER", "I-PER", "B-POS"]
    words, tags = make_tagged(24, seed=8)
    df = pd.DataFrame({"tokens": words, "tags": tags})
    reordered = ["O", "B-POS", "I-PER", "B-PER"]
    db = BertNERDataBunch.from_df(df, df, str(folder), labels=reordered, bs=8, maxlen=64, device="cpu")
    learner = BertNERLearner.from_pretrained_model(db, str(folder), tmp_path / "o", "cpu", None)
    assert learner.labels == reordered and learner.fresh_head is False
    saved = BertNERPredictor(folder, device="cpu").predict_tokens(words)
    assert {t for s in saved for t in s} == {"O", "B-PER", "I-PER", "B-POS"}
    assert learner.predict_tokens(words) == saved


def test_a_checkpoint_with_other_tags_of_the_same_count_is_refused_or_gets_a_new_output_layer(ner_learner, tmp_path):
    # before, the same number of other tags loaded silently, the outputs renamed by position
    folder = ner_learner.save_model(tmp_path / "m")
    df = pd.DataFrame({"tokens": [["bob", "ann", "was", "good"]] * 4,
                       "tags": [["B-NAME", "I-NAME", "O", "B-POS"]] * 4})
    db = BertNERDataBunch.from_df(df, df, str(folder), bs=4, maxlen=32, device="cpu")
    assert db.labels == ["O", "B-NAME", "I-NAME", "B-POS"]
    with pytest.raises(ModelError, match=(
            rf"^pretrained_path '{re.escape(str(folder))}' has a trained token-classification head for the tags "
            r"\['O', 'B-PER', 'I-PER', 'B-POS'\], but the data's tags are \['O', 'B-NAME', 'I-NAME', 'B-POS'\]: "
            r"loading it would give those outputs the data's names by position\. Give the data the checkpoint's "
            r"tags \(a label_file= listing them, or labels=\), or pass ignore_mismatched_sizes=True to start a new "
            r"output layer$")):
        BertNERLearner.from_pretrained_model(db, str(folder), tmp_path / "o", "cpu", None)
    with pytest.warns(UserWarning, match=(
            rf"^pretrained_path '{re.escape(str(folder))}': its head was trained for the tags "
            r"\['O', 'B-PER', 'I-PER', 'B-POS'\], not the data's \['O', 'B-NAME', 'I-NAME', 'B-POS'\]; "
            r"ignore_mismatched_sizes=True starts a new output layer$")):
        learner = BertNERLearner.from_pretrained_model(db, str(folder), tmp_path / "o", "cpu", None,
                                                       ignore_mismatched_sizes=True)
    assert learner.fresh_head is True and learner.model.classifier.bias.abs().sum().item() == 0.0


def test_doccano_entity_objects_are_read_and_a_file_without_spans_is_refused(tmp_path):
    # doccano's export with relations: before, the "entities" key was not looked at and every word was tagged O
    f = tmp_path / "d.jsonl"
    f.write_text(json.dumps({"id": 1, "text": "Jane Doe visited Paris", "relations": [], "entities": [
        {"id": 1, "label": "PER", "start_offset": 0, "end_offset": 8},
        {"id": 2, "label": "LOC", "start_offset": 17, "end_offset": 22}]}) + "\n")
    s = read_jsonl(f)
    assert s.words == [["Jane", "Doe", "visited", "Paris"]] and s.tags == [["B-PER", "I-PER", "O", "B-LOC"]]
    f.write_text(json.dumps({"id": 1, "text": "Jane Doe", "spans": [[0, 8, "PER"]]}) + "\n" +
                 json.dumps({"id": 2, "text": "Paris", "meta": {}}) + "\n")
    with pytest.raises(DataError, match=(
            rf"^{re.escape(str(f))}: no line has a 'labels' or 'label' or 'entities' key, so every word would be "
            r"tagged O; its objects have the keys \['id', 'text', 'spans', 'meta'\]: pass labels_key= the key of the "
            r'entity spans \(\[start, end, label\] lists, or \{"start_offset", "end_offset", "label"\} objects\)$')):
        read_jsonl(f)
    assert read_jsonl(f, labels_key="spans").tags == [["B-PER", "I-PER"], ["O"]]
    assert read_jsonl(f, tagged=False).tags is None  # texts to predict need no spans


def test_data_tagged_only_o_is_refused(tiny_model_dir):
    # before, it trained a head of one output whose every prediction was right: accuracy 1.0
    df = pd.DataFrame({"tokens": [["bob", "was"], ["the", "movie"]] * 4, "tags": [["O", "O"], ["O", "O"]] * 4})
    with pytest.raises(DataError, match=(
            r"^train_df and valid_df: every word is tagged O, so there are no entities to learn; tag each entity's "
            r"words \(B-PER on the first, I-PER on the rest\), or read the tags from where they are \(CoNLL: the last "
            r"column; tags_col=, labels_key=\)$")):
        BertNERDataBunch.from_df(df, df, str(tiny_model_dir), maxlen=32, device="cpu")


def test_io_tags_are_read_scored_as_seqeval_reads_their_iob2_and_saved(tiny_model_dir, tmp_path):
    # IO data (types without a prefix) was refused with a hint no tag_scheme= could follow
    from seqeval.metrics import classification_report, f1_score, precision_score, recall_score
    rng = random.Random(3)
    words, tags = make_tagged(40, seed=9)
    tags = [[t[2:] if t != "O" else "O" for t in s] for s in tags]
    df = pd.DataFrame({"tokens": words, "tags": tags})
    db = BertNERDataBunch.from_df(df, df, str(tiny_model_dir), bs=8, maxlen=64, device="cpu", seed=0)
    assert db.scheme == "IO" and db.labels == ["O", "PER", "POS"] and db.entity_types == ["PER", "POS"]
    learner = BertNERLearner.from_pretrained_model(db, str(tiny_model_dir), tmp_path / "o", "cpu", None, seed=0)
    quiet_fit(learner, 2, lr=5e-3)
    results, (gold, pred) = learner.validate(quiet=True, return_preds=True)
    assert gold == tags  # the model's own names (seqeval's reading of a bare type, I-PER, is the scores' business)
    io_pred = pred
    g2, p2 = _io_to_iob2(tags), _io_to_iob2(io_pred)
    assert (results["precision"], results["recall"], results["f1"]) == (
        precision_score(g2, p2, zero_division=0), recall_score(g2, p2, zero_division=0),
        f1_score(g2, p2, zero_division=0))
    report = classification_report(g2, p2, output_dict=True, zero_division=0)
    assert [results[f"{k}_f1"] for k in ("PER", "POS")] == [report[k]["f1-score"] for k in ("PER", "POS")]
    assert entity_scores([["PER", "PER", "O", "POS"]], [["PER", "O", "O", "POS"]])["f1"] == 0.5
    folder = learner.save_model(tmp_path / "m")
    assert json.loads((folder / "bertlearn.json").read_text())["tag_scheme"] == "IO"
    sample = [rng.choice(words) for _ in range(8)]
    assert BertNERPredictor(folder, device="cpu").predict_tokens(sample) == learner.predict_tokens(sample)


@pytest.mark.parametrize("tags, message", [
    ([["0", "3", "4"], ["0", "1"]], r"^train_df, row 0: tag '0' is a number: the tags are numbers; map them to their "
                                    r"names \(a Hugging Face dataset's features\['ner_tags'\]\.feature\.names lists "
                                    r"them in id order\)$"),
    ([["O", "B-PER", "LOC"], ["O", "O"]], r"^train_df, row 0: tag 'LOC' has no prefix, which the IOB2 scheme needs "
                                          r"\(B/I-, or O\); the tag is each line's last column \(is it a POS or chunk "
                                          r"column\?\); tags that all lack one, with O outside entities \(PER, LOC, O: "
                                          r"the IO scheme\), are read with tag_scheme='auto' or 'IO': give every tag "
                                          r"its prefix \(B- on each entity's first word\), or none$"),
    # lower-case prefixes and a POS column were read as IO: "o" an entity type, B and I two types
    ([["b-per", "i-per", "o"], ["o", "o"]], r"^train_df, row 0: tag 'b-per' has its prefix in lower case; tags are "
                                            r"read as written: write the prefixes and O in capitals \('B-per', O\)$"),
    ([["NNP", "VBZ", "DT"], ["DT", "NN"]], r"^train_df, row 0: tag 'NNP' has no prefix, which the IOB2 scheme needs"),
])
def test_numbers_and_tags_mixing_prefixes_say_what_is_wrong(tiny_model_dir, tags, message):
    words = [["bob", "ann", "kim"], ["the", "movie"]]
    df = pd.DataFrame({"tokens": words, "tags": [[int(t) if t.isdigit() else t for t in s] for s in tags]})
    with pytest.raises(DataError, match=message):
        BertNERDataBunch.from_df(df, df, str(tiny_model_dir), maxlen=32, device="cpu")


def test_cli_predict_says_raw_sentences_are_not_conll(ner_learner, tmp_path):
    # before, each line of raw text was read as one word of a single sentence, without a word said
    from bertlearn.cli import main
    folder = ner_learner.save_model(tmp_path / "m")
    raw = tmp_path / "raw.txt"
    raw.write_text("bob and ann was good .\nthe movie was fun\n")
    with pytest.warns(UserWarning, match=(
            rf"^{re.escape(str(raw))} is read as CoNLL \(one word a line, in the first column\), but it has no blank "
            r"line between sentences and its lines hold 4 to 6 fields, where a CoNLL file has the same columns on "
            r"every line: it looks like raw text, one sentence a line, of which only each line's first word would be "
            r'read\. Give raw text as JSONL \(\{"text": "\.\.\."\} a line\) or as a CSV with a text column \(or to '
            r"predict_batch\(texts\)\)$")):
        assert main(["predict", "--model", str(folder), "--input", str(raw), "--output", str(tmp_path / "o.txt"),
                     "--device", "cpu"]) == 0
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # one sentence of CoNLL, or columns alike on every line, say nothing
        read_conll(_write(tmp_path / "a.conll", "bob B-PER\nwas O\n"))
        read_conll(_write(tmp_path / "b.conll", "bob\nwas good\n\nkim\n"), tagged=False)


def test_cli_predict_reads_a_tsv_as_a_table(ner_learner, tmp_path, capsys):
    """A .tsv of texts was read as CoNLL: its header and id column tagged as words and a tag added to each row; a
    second --text-col was dropped without a word."""
    from bertlearn.cli import main
    folder = ner_learner.save_model(tmp_path / "m")
    table = tmp_path / "texts.tsv"
    table.write_text("id\ttext\n1\tbob was good\n2\tthe movie was fun\n")
    assert main(["predict", "--model", str(folder), "--input", str(table), "--output", str(tmp_path / "o.csv"),
                 "--device", "cpu"]) == 0
    out = pd.read_csv(tmp_path / "o.csv")
    assert list(out.columns) == ["id", "text", "entities"] and out["id"].tolist() == [1, 2]
    assert out["entities"].map(json.loads).tolist() == ner_learner.predict_batch(["bob was good", "the movie was fun"])
    assert main(["predict", "--model", str(folder), "--input", str(table), "--output", str(tmp_path / "o2.csv"),
                 "--text-col", "text", "id"]) == 1
    assert capsys.readouterr().err.strip().splitlines()[-1] == (
        "bertlearn predict: error: --text-col text id: a token classifier tags one text a row; give one column")
    # word<TAB>tag lines in sentences (BioBERT's NER sets ship as .tsv) are CoNLL, as before
    blocks = _write(tmp_path / "test.tsv", "bob\tO\nwas\tO\n\nthe\tO\nmovie\tO\n")
    assert main(["predict", "--model", str(folder), "--input", str(blocks), "--output", str(tmp_path / "o.conll"),
                 "--device", "cpu"]) == 0
    tagged = [l.split("\t") for l in (tmp_path / "o.conll").read_text().splitlines() if l]
    assert [t[0] for t in tagged] == ["bob", "was", "the", "movie"] and all(len(t) == 3 for t in tagged)
    # a table whose quoted text holds a blank line (two paragraphs) is still a table: its header names the text
    _write(tmp_path / "paragraphs.tsv", 'id\ttext\n1\t"bob was good\n\nann was fun"\n2\tthe movie\n')
    assert main(["predict", "--model", str(folder), "--input", str(tmp_path / "paragraphs.tsv"), "--output",
                 str(tmp_path / "p.csv"), "--device", "cpu"]) == 0
    assert pd.read_csv(tmp_path / "p.csv")["id"].tolist() == [1, 2]
    _write(tmp_path / "texts.jsonl", '{"text": "bob was good"}\n')
    with pytest.warns(UserWarning, match=r"^texts\.jsonl is read as JSONL \(one JSON object a line\), which --sep "
                                         r"does not apply to$"):
        assert main(["predict", "--model", str(folder), "--input", str(tmp_path / "texts.jsonl"), "--output",
                     str(tmp_path / "o.jsonl"), "--sep", ";"]) == 0
    conll = _write(tmp_path / "words.txt", "bob\nwas\ngood\n")
    with pytest.warns(UserWarning, match=r"^words\.txt is read as CoNLL \(one word a line: its suffix is not \.csv, "
                                         r"\.tsv or \.jsonl\), which --sep and --text-col do not apply to; name a "
                                         r"table \.csv or \.tsv to read its text column$"):
        assert main(["predict", "--model", str(folder), "--input", str(conll), "--output", str(tmp_path / "o.txt"),
                     "--sep", "\\t", "--text-col", "text"]) == 0


def _write(path, text):
    path.write_text(text)
    return path


def test_tab_separated_words_keep_their_spaces(tmp_path, tiny_model_dir):
    # before, "New York" was cut at its space to "New", and from_conll could not pass delimiter=
    train = "New York\tB-LOC\nis\tO\nbig\tO\n\nbob\tB-PER\n"
    (tmp_path / "train.txt").write_text(train)
    (tmp_path / "val.txt").write_text("bob\tB-PER\nann\tO\n")
    with pytest.warns(UserWarning, match=(
            rf"^{re.escape(str(tmp_path / 'train.txt'))}: every word line holds a tab, so its columns are split at "
            r"tabs alone and a word or tag may hold a space \(line 1: 'New York'\); pass delimiter= to split "
            r"otherwise$")):
        db = BertNERDataBunch(tmp_path, str(tiny_model_dir), label_file=None, maxlen=32, device="cpu")
    assert db.train_ds.words == [["New York", "is", "big"], ["bob"]]
    (tmp_path / "train.txt").write_text(train.replace("\t", "|"))
    (tmp_path / "val.txt").write_text("bob|B-PER\nann|O\n")
    db = BertNERDataBunch(tmp_path, str(tiny_model_dir), label_file=None, maxlen=32, device="cpu", delimiter="|")
    assert db.train_ds.words == [["New York", "is", "big"], ["bob"]] and db.labels == ["O", "B-LOC", "B-PER"]
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # a tab-separated file whose fields hold no space reads as before, unsaid
        assert read_conll(_write(tmp_path / "c.conll", "bob\tX\tB-PER\nwas\tY\tO\n")).words == [["bob", "was"]]


def test_cli_eval_says_when_the_files_entity_types_are_none_of_the_models(ner_learner, tmp_path, capsys):
    # before, a file of other entity types scored near zero without a word
    from bertlearn.cli import main
    folder = ner_learner.save_model(tmp_path / "m")
    gold = tmp_path / "g.conll"
    gold.write_text("bob\tB-person\nwas\tO\ngood\tB-opinion\n")
    with pytest.warns(UserWarning, match=(
            rf"^--input '{re.escape(str(gold))}': its entity types \['opinion', 'person'\] share none with those "
            rf"'{re.escape(str(folder))}' "
            r"predicts, \['PER', 'POS'\]: every entity counts as missed and every predicted one as wrong, so the "
            r"scores are near zero whatever the model does; score it on a file tagged with its types$")):
        assert main(["eval", "--model", str(folder), "--input", str(gold), "--device", "cpu"]) == 0
    gold.write_text("bob\tB-PER\nwas\tO\ngood\tB-opinion\n")
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # one type in common: the scores mean something
        assert main(["eval", "--model", str(folder), "--input", str(gold), "--device", "cpu"]) == 0


# --- raw text is cut into the words the model was trained on ---

JSONL_TEXTS = [  # (text, the names tagged PER): underscores, symbols, an emoji, apostrophes and hyphens
    ("i met @bob_ann at the movie", ["bob_ann"]),
    ("kim's film costs 5€ and sue-lee was good", ["kim", "sue"]),
    ("the movie 😀 was fun with ann_kim_lee", ["ann_kim_lee"]),
    ("bob—ann liked it, and it's a very fine plot!", ["bob", "ann"]),
]


def _write_jsonl(path, rows, repeat=1):
    with open(path, "w") as f:
        for _ in range(repeat):
            for text, names in rows:
                spans, at = [], 0
                for name in names:
                    s = text.index(name, at)
                    spans.append([s, s + len(name), "PER"])
                    at = s + len(name)
                f.write(json.dumps({"text": text, "labels": spans}) + "\n")


def test_a_jsonl_trained_model_reads_raw_text_as_the_words_it_was_trained_on(tmp_path, tiny_model_dir):
    # before: JSONL texts were cut into training words by split_words ("bob_ann" one word, "5€" two), but
    # predict()/predict_batch() cut raw text the tokenizer's way ("bob", "_", "ann"; "5€"): pieces never trained as
    # a word's first got tags of their own, so predict gave ('bob', 'PER'), ('_', 'PER') where eval on the same file
    # (split_words' words) scored every entity right
    from bertlearn.cli import main
    _write_jsonl(tmp_path / "d.jsonl", JSONL_TEXTS, repeat=3)
    db = BertNERDataBunch.from_jsonl(tmp_path, "d.jsonl", str(tiny_model_dir), train_size=0.5, random_state=0,
                                     bs=4, maxlen=64, device="cpu")
    learner = BertNERLearner.from_pretrained_model(db, str(tiny_model_dir), tmp_path / "out", "cpu", None, seed=0)
    torch.manual_seed(0)
    torch.nn.init.normal_(learner.model.classifier.weight, std=5.0)  # tags that differ from word to word
    texts = [t for t, _ in JSONL_TEXTS]
    trained = read_jsonl(tmp_path / "d.jsonl")  # the words training cut: split_words', independently
    words, spans = trained.words[:len(texts)], trained.spans[:len(texts)]
    assert words[0] == ["i", "met", "@", "bob_ann", "at", "the", "movie"] and "5" in words[1] and "€" in words[1]
    assert [[(s, e) for _, s, e in split_words(t)] for t in texts] == spans
    expected_tags = learner.predict_tokens(words)
    assert len({t for ts in expected_tags for t in ts}) > 1
    per_word = learner.predict_batch(texts, group=False, exclude_entities=None)
    assert [[texts[i][d["start"]:d["end"]] for d in ws] for i, ws in enumerate(per_word)] == words
    saved = learner.save_model(tmp_path / "m")
    assert json.loads((saved / "bertlearn.json").read_text())["word_split"] == "split_words"
    predictors = [learner, load_predictor(saved)]
    if importlib.util.find_spec("onnxruntime") is not None:
        predictors.append(load_predictor(learner.to_onnx(tmp_path / "onnx").parent))
    for predictor in predictors:
        per_word = predictor.predict_batch(texts, group=False, exclude_entities=None)
        assert [[(d["start"], d["end"]) for d in ws] for ws in per_word] == spans, type(predictor).__name__
        assert [[d["entity"] for d in ws] for ws in per_word] == expected_tags, type(predictor).__name__
        assert per_word[0][3]["word"] == "bob_ann"
    # bertlearn predict on JSONL reads the saved folder's words too
    (tmp_path / "new.jsonl").write_text("".join(json.dumps({"text": t}) + "\n" for t in texts))
    assert main(["predict", "--model", str(saved), "--input", str(tmp_path / "new.jsonl"), "--output",
                 str(tmp_path / "p.jsonl"), "--device", "cpu"]) == 0
    got = [json.loads(l)["entities"] for l in (tmp_path / "p.jsonl").read_text().splitlines()]
    assert [[(e["start"], e["end"]) for e in ents] for ents in got] == \
        [[(e["start"], e["end"]) for e in ents] for ents in learner.predict_batch(texts)]
    # a model trained on pre-split words (CoNLL, frames) keeps the tokenizer's words, as the pipeline cuts them
    conll = BertNERDataBunch.from_df(pd.DataFrame({"tokens": words, "tags": [["O"] * (len(w) - 1) + ["B-PER"]
                                                                             for w in words]}),
                                     tokenizer=str(tiny_model_dir), bs=4, maxlen=64, device="cpu")
    other = BertNERLearner.from_pretrained_model(conll, str(tiny_model_dir), tmp_path / "o", "cpu", None, seed=0)
    assert other.word_split == "tokenizer"
    assert [texts[0][d["start"]:d["end"]] for d in other.predict(texts[0], group=False, exclude_entities=None)][3:6] == \
        ["bob", "_", "ann"]


def test_a_jsonl_trained_model_finds_its_training_entities_whole(tmp_path, tiny_model_dir):
    # before: trained on "@bob_ann" spans, predict("i met @bob_ann ...") gave ('bob', 'PER'), ('_', 'PER'), ...:
    # the tokenizer's words, not the one word the span was trained on; validate (split_words' words) said F1 1.0
    rng = random.Random(0)
    rows = []
    for _ in range(240):
        ws = [rng.choice(FILLER) for _ in range(rng.randint(3, 8))]
        name = f"{rng.choice(NAMES)}_{rng.choice(NAMES)}"
        k = rng.randint(0, len(ws))
        rows.append((" ".join(ws[:k] + ["@" + name] + ws[k:]), [name]))
    _write_jsonl(tmp_path / "d.jsonl", rows)
    torch.manual_seed(0)
    db = BertNERDataBunch.from_jsonl(tmp_path, "d.jsonl", str(tiny_model_dir), train_size=0.8, random_state=0,
                                     bs=16, maxlen=32, device="cpu")
    learner = BertNERLearner.from_pretrained_model(db, str(tiny_model_dir), tmp_path / "out", "cpu", None, seed=0)
    quiet_fit(learner, 6, lr=5e-3)
    assert learner.validate(quiet=True)["f1"] > 0.9
    texts = [t for t, _ in rows[:80]]
    gold = [[(t.index(n), t.index(n) + len(n), "PER") for n in names] for t, names in rows[:80]]
    got = [[(e["start"], e["end"], e["entity_group"]) for e in ents] for ents in learner.predict_batch(texts)]
    # what validate and `bertlearn eval` score: tags of split_words' words, read as seqeval's chunks
    from seqeval.metrics.sequence_labeling import get_entities
    cut = [split_words(t) for t in texts]
    scored = [[(ws[a][1], ws[b][2], kind) for kind, a, b in get_entities(tags)]
              for ws, tags in zip(cut, learner.predict_tokens([[w for w, _, _ in ws] for ws in cut]))]
    assert got == scored
    assert sum(g == x for g, x in zip(gold, got)) >= 0.9 * len(texts)  # learnt: the gold spans, whole


@pytest.mark.parametrize("kind", ["roberta", "deberta-v2"])
def test_unicode_spaces_between_words_make_no_empty_words(kind, tmp_path):
    # before: a non-break, em or ideographic space that byte-level BPE (or SentencePiece) cuts into several pieces
    # became "words" with an empty span (start == end) between the real ones: extra model inputs that changed the
    # real words' tags, and empty entities in the output
    import transformers as T

    from conftest import build_tiny_architecture
    folder = build_tiny_architecture(kind, tmp_path / kind)
    tok = T.AutoTokenizer.from_pretrained(folder)
    words, tags = make_tagged(16, seed=6)
    df = pd.DataFrame({"tokens": words, "tags": tags})
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        db = BertNERDataBunch.from_df(df, df, tok, bs=8, maxlen=128, device="cpu")
    learner = BertNERLearner.from_pretrained_model(db, str(folder), tmp_path / "out", "cpu", None, seed=0)
    torch.manual_seed(0)
    torch.nn.init.normal_(learner.model.classifier.weight, std=5.0)
    texts = ["New\u00a0York", "a\u3000b", "bob\u2003ann was\u00a0\u00a0good", "\u3000kim\u00a0", "bob ann"]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        per_word = learner.predict_batch(texts, group=False, exclude_entities=None)
        expected = learner.predict_tokens([t.split() for t in texts])
    assert [[t[d["start"]:d["end"]] for d in ws] for t, ws in zip(texts, per_word)] == [t.split() for t in texts]
    assert [[d["entity"] for d in ws] for ws in per_word] == expected


def test_predicting_no_texts_gives_no_entities(ner_learner, tmp_path):
    # before: predict_batch([]) raised IndexError inside the tokenizer call (predict_tokens([]) gave [])
    predictors = [ner_learner, load_predictor(ner_learner.save_model(tmp_path / "m"))]
    if importlib.util.find_spec("onnxruntime") is not None:
        predictors.append(load_predictor(ner_learner.to_onnx(tmp_path / "onnx").parent))
    for predictor in predictors:
        assert predictor.predict_batch([]) == [] and predictor.predict_batch(()) == []
        assert predictor.predict_batch([], group=False, exclude_entities=None) == []
    assert text_words(ner_learner.encoder.tokenizer, []) == []


def test_o_runs_are_groups_of_their_own_unless_o_is_excluded(ner_learner, tiny_tokenizer, tmp_path):
    # before: exclude_entities=None (or any list without "O") never returned O words, which fast-bert grouped and
    # returned ({'entity': 'O', ...}) unless excluded, as the pipeline does with ignore_labels=[]
    from transformers import pipeline
    text = "the movie bob ann was good kim"
    words = text_words(tiny_tokenizer, [text])[0]
    labels = ["O", "B-PER", "I-PER", "B-POS"]
    tags = ["O", "O", "B-PER", "I-PER", "O", "B-POS", "B-PER"]
    got = group_entities(words, tag_probs(tags, labels), labels, tiny_tokenizer, exclude=None)
    assert [(e["entity_group"], text[e["start"]:e["end"]], e["word"]) for e in got] == \
        [("O", "the movie", "the movie"), ("PER", "bob ann", "bob ann"), ("O", "was", "was"),
         ("POS", "good", "good"), ("PER", "kim", "kim")]
    assert [e["entity_group"] for e in group_entities(words, tag_probs(tags, labels), labels, tiny_tokenizer,
                                                      exclude=["O", "B-PER"])] == ["POS"]
    assert [e["entity_group"] for e in group_entities(words, tag_probs(tags, labels), labels, tiny_tokenizer,
                                                      exclude=["PER"])] == ["O", "O", "POS"]
    # the saved folder through the pipeline, O groups kept
    path = ner_learner.save_model(tmp_path / "m")
    pipe = pipeline("token-classification", model=str(path), aggregation_strategy="first", device="cpu",
                    ignore_labels=[])
    texts = ["the movie bob ann was good", "kim is fun and lee was great", "it was the plot", "sue"]
    got = ner_learner.predict_batch(texts, exclude_entities=None)
    assert any(e["entity_group"] == "O" for ents in got for e in ents)
    assert any(e["entity_group"] != "O" for ents in got for e in ents)
    for t, ours in zip(texts, got):
        theirs = pipe(t)
        assert [(e["entity_group"], e["word"], e["start"], e["end"]) for e in ours] == \
            [(e["entity_group"], e["word"], e["start"], e["end"]) for e in theirs]
        assert [e["score"] for e in ours] == pytest.approx([float(e["score"]) for e in theirs], abs=1e-5)


def test_sentences_numbered_by_another_databunch_are_refused_with_a_way_that_works(ner_learner, tiny_model_dir):
    # a test file read with its own BertNERDataBunch numbers its tags by its own list: validate read its indices as
    # other tags; the message's way out is one this task has (test_dl(..., with_labels=True) is the classifier's)
    from bertlearn.data import TaggedSentences
    words, tags = make_tagged(40, seed=9)
    sents = TaggedSentences(words, tags, source="test")
    other = BertNERDataBunch.from_sentences(sents, sents, str(tiny_model_dir), labels=ner_learner.labels[::-1],
                                            maxlen=64, device="cpu")
    with pytest.raises(DataError) as e:
        ner_learner.validate(dl=other.valid, quiet=True)
    assert str(e.value) == (
        f"validate(dl=...): the loader's targets are labels {ner_learner.labels[::-1]}, this learner's outputs are "
        f"labels {ner_learner.labels}: its target indices would be read as other outputs. Read them with this "
        "learner's tags: BertNERDataBunch.from_sentences(train, test, labels=learn.labels) (or a label_file listing "
        "learn.labels in order), or score with entity_scores(tags, learn.predict_tokens(words))")
    same = BertNERDataBunch.from_sentences(sents, sents, str(tiny_model_dir), labels=ner_learner.labels, maxlen=64,
                                           device="cpu")
    scored = ner_learner.validate(dl=same.valid, quiet=True)
    assert scored["f1"] == pytest.approx(entity_scores(tags, ner_learner.predict_tokens(words))["f1"], abs=1e-6)
    assert scored["f1"] > 0.8


def test_ner_validate_reads_fast_berts_positional_order(ner_learner):
    """fast-bert's validate(quiet, loss_only, return_preds) by position: validate(False) scored the training set."""
    with ner_learner.no_bar():
        on_valid = ner_learner.validate(quiet=True)
        assert ner_learner.validate(False) == on_valid != ner_learner.validate(0, quiet=True)
        assert ner_learner.validate(True, True) == {"loss": on_valid["loss"]}
        results, (gold, pred) = ner_learner.validate(True, False, True)
    assert results == on_valid and len(gold) == len(pred) == ner_learner.dls.valid_ds.n_texts


def test_returned_tags_are_the_models_own_names(tiny_model_dir, tmp_path):
    """validate(return_preds=True) and show_results gave seqeval's spellings (BILOU's U-/L- as S-/E-): beside the
    labels, predict_tokens and, with custom metrics, the predictions (which kept the names), a correct tag compared
    unequal."""
    from bertlearn.data.conll import TaggedSentences
    words, tags = [["bob", "is", "fun"], ["ann", "lee", "was", "good"]], [["U-PER", "O", "U-POS"],
                                                                         ["B-PER", "L-PER", "O", "U-POS"]]
    db = BertNERDataBunch.from_sentences(TaggedSentences(words * 4, tags * 4), TaggedSentences(words, tags),
                                         str(tiny_model_dir), bs=4, maxlen=32, device="cpu")
    assert db.scheme == "BILOU"
    for metrics in (None, [lambda p, t: 0.0]):
        learner = BertNERLearner.from_pretrained_model(db, str(tiny_model_dir), tmp_path / "o", "cpu", None, seed=0,
                                                       metrics=metrics)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # an untrained head: what its tags are does not matter here
            _, (gold, pred) = learner.validate(quiet=True, return_preds=True)
            assert gold == tags and all(t in learner.labels for s in pred for t in s)
            assert pred == learner.predict_tokens(words)


def test_conll_columns_split_at_ascii_spaces_or_the_lines_tab(tmp_path):
    """str.split cut a word at a no-break space ("10\u00a0000" read as "10"), and one space-separated line in a tab
    file made the whole file split at every space ("New York\tB-LOC" read as "New")."""
    f = tmp_path / "mixed.conll"
    f.write_text("10\u00a0000 B-MONEY\nbig  O\n\nNew York\tB-LOC\nis O\nbig\tO\n")
    with pytest.warns(UserWarning, match=r"mixed\.conll: line 4 holds a tab, so its columns are split at tabs alone "
                                         r"and a word or tag may hold a space \(line 4: 'New York'\)"):
        sents = read_conll(f)
    assert sents.words == [["10\u00a0000", "big"], ["New York", "is", "big"]]
    assert sents.tags == [["B-MONEY", "O"], ["B-LOC", "O", "O"]]


def test_cli_conll_train_names_the_flags_it_does_not_use(ner_dir, tiny_model_dir, tmp_path, monkeypatch):
    # before: --train-size (NER from one JSONL file) and --chunk-size (--on-disk) did nothing here without a word
    from bertlearn import cli
    with pytest.warns(UserWarning, match=r"^--train-size, --chunk-size: no effect on token classification$"):
        assert cli.main(["train", "--data", str(ner_dir), "--model", str(tiny_model_dir), "--epochs", "1",
                         "--bs", "16", "--maxlen", "32", "--out", str(tmp_path / "m"), "--device", "cpu",
                         "--train-file", "train.txt", "--task", "ner", "--train-size", "0.5", "--chunk-size",
                         "10"]) == 0


def test_a_size_given_under_both_names_is_refused(ner_dir, tiny_model_dir, tmp_path):
    # before: BertNERDataBunch kept bs/maxlen and from_jsonl (as BertDataBunch) the fast-bert names, without a word
    from bertlearn import BertLearnError
    with pytest.raises(BertLearnError) as e:
        BertNERDataBunch(ner_dir, str(tiny_model_dir), bs=4, batch_size_per_gpu=16, device="cpu")
    assert str(e.value) == ("BertNERDataBunch: bs=4 and batch_size_per_gpu=16 name the same setting (bertlearn's "
                            "name and fast-bert's); give it once")
    (tmp_path / "d.jsonl").write_text((json.dumps({"text": "bob was good", "labels": [[0, 3, "PER"]]}) + "\n") * 5)
    with pytest.raises(BertLearnError, match=r"^BertNERDataBunch.from_jsonl: maxlen=16 and max_seq_length=64 name "):
        BertNERDataBunch.from_jsonl(tmp_path, "d.jsonl", str(tiny_model_dir), maxlen=16, max_seq_length=64)
    same = BertNERDataBunch(ner_dir, str(tiny_model_dir), bs=8, batch_size_per_gpu=8, device="cpu")
    assert same.train.bs == 8


def test_valid_pct_beside_a_validation_set_is_refused(tiny_model_dir):
    # before: valid_pct=0.5 with a valid_df was ignored in silence
    frame = pd.DataFrame({"tokens": [["bob", "runs"]] * 8, "tags": [["B-PER", "O"]] * 8})
    with pytest.raises(DataError) as e:
        BertNERDataBunch.from_df(frame, frame, str(tiny_model_dir), valid_pct=0.5, device="cpu")
    assert str(e.value) == ("valid_pct=0.5 holds out a share of the training rows only when no validation set is "
                            "given, and a validation set (valid_df) is: leave valid_pct out, or give no validation set")
    assert len(BertNERDataBunch.from_df(frame, None, str(tiny_model_dir), valid_pct=0.25, device="cpu").valid_ds) == 2


def test_metrics_empty_list_means_none(ner_dir, tiny_model_dir):
    # fast-bert's metrics=[] scored nothing; it gave the default entity metrics here
    db = BertNERDataBunch(ner_dir, str(tiny_model_dir), bs=16, maxlen=32, device="cpu")
    assert BertNERLearner.from_pretrained_model(db, str(tiny_model_dir), device="cpu", metrics=[]).metrics == []
    assert len(BertNERLearner.from_pretrained_model(db, str(tiny_model_dir), device="cpu").metrics) > 0
