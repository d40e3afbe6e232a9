"""Real model, real data: the packaged all-MiniLM-L6-v2 on SST-2 and the fast-bert example on TREC-6.

These read ../shared/data and skip cleanly without it.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

from bertlearn import BertClassificationPredictor, BertDataBunch, BertLearner

ROOT = Path(__file__).resolve().parents[1]
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


def test_fast_bert_example_runs_unchanged(shared_data, tmp_path):
    env = {**os.environ, "OUTPUT_DIR": str(tmp_path), "EPOCHS": "1", "DATA_PATH": str(shared_data / "trec6")}
    out = subprocess.run([sys.executable, str(ROOT / "examples" / "fast_bert_style.py")], env=env,
                         capture_output=True, text=True, timeout=900)
    assert out.returncode == 0, out.stderr[-3000:]
    assert "CUDA is not available here; using the CPU" in out.stderr or "cuda" in out.stderr.lower()
    assert (tmp_path / "model_out" / "model.safetensors").is_file()
    assert "'accuracy':" in out.stdout
