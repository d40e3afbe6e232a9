"""A training process killed with SIGKILL mid-epoch resumes from its last complete checkpoint."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import time

import torch

from bertlearn.checkpoint import CHECKPOINT_FILES

SCRIPT = textwrap.dedent("""
    import sys, time
    from fastai.callback.core import Callback
    from bertlearn import BertDataBunch, BertLearner
    data, model, out, mode = sys.argv[1:5]

    class Slow(Callback):  # stretch each batch so the parent can kill mid-epoch
        def after_batch(self):
            if mode == "slow":
                time.sleep(0.05)

    db = BertDataBunch.from_csv(data, model, bs=8, maxlen=32, seed=1, device="cpu")
    learner = BertLearner.from_pretrained_model(db, model, None, "cpu", None, output_dir=out, seed=1)
    with learner.no_bar():
        learner.fit(4, lr=1e-3, checkpoint=True, resume=(mode == "resume"), cbs=[Slow()])
    print("DONE", learner.validate(quiet=True))
""")


def test_sigkill_mid_epoch_then_resume(tiny_csv_dir, tiny_model_dir, tmp_path):
    script = tmp_path / "train.py"
    script.write_text(SCRIPT)
    out = tmp_path / "out"
    state_file = out / "checkpoints" / "last" / "state.json"
    args = [sys.executable, str(script), str(tiny_csv_dir), str(tiny_model_dir), str(out)]
    env = {**os.environ, "PYTHONWARNINGS": "ignore"}
    proc = subprocess.Popen(args + ["slow"], stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env)
    try:
        deadline = time.time() + 300
        while not state_file.exists() and time.time() < deadline and proc.poll() is None:
            time.sleep(0.1)
        assert state_file.exists(), proc.stderr.read().decode()[-2000:] if proc.poll() is not None else "no checkpoint"
        time.sleep(0.3)  # now inside epoch 2 (an epoch is 12 batches of >= 0.05 s)
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == -signal.SIGKILL

    folder = state_file.parent
    assert all((folder / f).is_file() for f in CHECKPOINT_FILES)
    state = json.loads(state_file.read_text())
    assert 1 <= state["epochs_done"] < 4
    from safetensors.torch import load_file
    load_file(str(folder / "model.safetensors"))
    torch.load(folder / "optimizer.pt", weights_only=True)

    done = subprocess.run(args + ["resume"], capture_output=True, text=True, env=env, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    assert "DONE" in done.stdout
    assert json.loads(state_file.read_text())["epochs_done"] == 4
    assert [p.name for p in folder.parent.iterdir()] == ["last"]  # the killed run's temporary folder is gone
