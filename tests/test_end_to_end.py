"""Real model, real data: the packaged all-MiniLM-L6-v2 on SST-2, AG News, SICK, SMS spam (MRPC pairs: the pairs
notebook, tests/test_notebooks.py, trains the same 1,500 pairs).

These read ../shared/data and skip cleanly without it.
"""

from __future__ import annotations

import pandas as pd
import pytest

from bertlearn import BertClassificationPredictor, BertDataBunch, BertLearner

pytestmark = pytest.mark.slow


def test_minilm_learns_sst2(shared_data, tmp_path):
    train = pd.read_csv(shared_data / "sst2" / "train.csv").sample(n=1200, random_state=0)
    valid = pd.read_csv(shared_data / "sst2" / "valid.csv")
    db = BertDataBunch.from_df(train, valid, None, bs=32, maxlen=64, device="cpu")
    learner = BertLearner.from_pretrained_model(db, None, None, "cpu", None, output_dir=tmp_path)
    with learner.no_bar():
        learner.fit(1, lr=1e-4)
    acc = learner.validate(quiet=True)["accuracy"]
    assert acc > 0.70, f"SST-2 dev accuracy {acc:.3f} after 1,200 training rows is not clearly above chance"
    path = learner.save_model()
    texts = valid["text"].head(16).tolist()
    ours = [row[0] for row in learner.predict_batch(texts)]
    theirs = [row[0] for row in BertClassificationPredictor(path, device="cpu").predict_batch(texts)]
    assert [l for l, _ in ours] == [l for l, _ in theirs]
    assert [p for _, p in ours] == pytest.approx([p for _, p in theirs], abs=1e-5)


def _fit(db, tmp_path, epochs=1, lr=1e-4, **kwargs):
    learner = BertLearner.from_pretrained_model(db, None, None, "cpu", None, output_dir=tmp_path, **kwargs)
    with learner.no_bar():
        learner.fit(epochs, lr=lr)
    return learner


def test_multi_label_ag_news_topics(shared_data, tmp_path):
    """The multi-label path (0/1 columns, BCE, sigmoid, tuned thresholds) on real news text.

    GoEmotions itself (28 sparse labels; needs pos_weight="balanced" with the packaged MiniLM, test macro-F1
    0.477) is in bench/tasks.py: all 43k comments take longer than a CI test can spend.
    """
    import torch
    from bertlearn.metrics import f1_multilabel_macro, roc_auc_macro

    import numpy as np
    import sklearn.metrics as skm

    df = pd.read_csv(shared_data / "ag_news" / "test.csv").sample(n=1800, random_state=1)
    topics = sorted(df["label"].unique())
    df = pd.concat([df[["text"]], pd.get_dummies(df["label"]).astype(int)[topics]], axis=1)
    train, valid, test = df.iloc[:1200], df.iloc[1200:1500], df.iloc[1500:]
    db = BertDataBunch.from_df(train, valid, None, label_col=topics, multi_label=True, bs=16, maxlen=48, device="cpu")
    learner = _fit(db, tmp_path, epochs=1, lr=2e-4)
    logits = learner.predict_logits(test["text"].tolist())
    y = torch.as_tensor(test[topics].to_numpy("float32", copy=True))  # writable (pandas 3 views are not)
    print(f"AG News multi-label: macro AUC {roc_auc_macro(logits, y):.3f}")
    assert roc_auc_macro(logits, y) > 0.85  # chance is 0.5
    thresholds = learner.tune_thresholds()  # tuned on the validation rows...
    # ...as an independent search would pick them: per label, sklearn's F1 on the grid, ties nearest 0.5
    probs = learner.predict_logits(valid["text"].tolist()).sigmoid().numpy()
    truth = valid[topics].to_numpy()
    grid = np.arange(0.05, 0.951, 0.05, dtype=np.float32)
    for k, chosen in enumerate(thresholds):
        f1s = [skm.f1_score(truth[:, k], probs[:, k] > t, zero_division=0) for t in grid]
        best = [float(t) for t, f in zip(grid, f1s) if np.isclose(f, max(f1s))]
        assert chosen == pytest.approx(min(best, key=lambda t: abs(t - 0.5)), abs=1e-4)
    # ...and scored on the held-out test rows, which they were not tuned on
    print(f"AG News multi-label: macro F1 {f1_multilabel_macro(logits, y, thresh=thresholds):.3f}")
    assert f1_multilabel_macro(logits, y, thresh=thresholds) > 0.75
    probs = dict(learner.predict_batch(["Stocks fell as oil prices rose and investors sold shares"])[0])
    assert max(probs, key=probs.get) == "Business"


def test_regression_sick(shared_data, tmp_path):
    train = pd.read_csv(shared_data / "sick" / "train.csv").sample(n=1500, random_state=0)
    test = pd.read_csv(shared_data / "sick" / "test.csv").sample(n=500, random_state=0)
    db = BertDataBunch.from_df(train, test, None, text_col=["text_a", "text_b"], label_col="relatedness",
                               regression=True, bs=32, maxlen=64, device="cpu", seed=0)
    learner = _fit(db, tmp_path, epochs=2, lr=2e-4, seed=0)
    # the new head starts at the mean score; without that, runs of this test gave Pearson 0.04 to 0.73
    assert learner.validate(quiet=True)["pearson"] > 0.75


def test_class_weights_sms_spam(shared_data, tmp_path):
    df = pd.read_csv(shared_data / "sms_spam" / "all.csv")
    train, valid = df.iloc[:1500], df.iloc[4000:4800]
    db = BertDataBunch.from_df(train, valid, None, bs=32, maxlen=64, weight="balanced", device="cpu")
    learner = _fit(db, tmp_path, epochs=1, lr=2e-4)
    assert learner.loss_func.func.weight[db.labels.index("spam")] > 2
    from bertlearn.metrics import f1_per_class
    logits = learner.predict_logits(valid["text"].tolist())
    y = __import__("torch").as_tensor((valid["label"] == "spam").to_numpy().astype("int64"))
    f1 = f1_per_class(logits, y)[db.labels.index("spam")]
    print(f"SMS spam F1 after one epoch: {f1:.3f}")
    assert f1 > 0.8


def test_sliding_window_ag_news(shared_data, tmp_path):
    df = pd.read_csv(shared_data / "ag_news" / "test.csv").sample(n=1600, random_state=0)
    train, valid = df.iloc[:1200], df.iloc[1200:]
    db = BertDataBunch.from_df(train, valid, None, bs=32, maxlen=32, long_text="sliding_window", stride=8,
                               device="cpu")
    assert len(db.train.dataset) > db.train.dataset.n_texts  # news texts are longer than 32 tokens
    learner = _fit(db, tmp_path, epochs=1, lr=2e-4)
    preds = learner.predict_batch(valid["text"].tolist())
    acc = sum(p[0][0] == l for p, l in zip(preds, valid["label"])) / len(valid)
    print(f"sliding-window AG News accuracy after one epoch: {acc:.3f}")
    assert len(preds) == len(valid) and acc > 0.7  # 4 balanced classes: chance is 0.25
