"""Checkpoints: a training process killed with SIGKILL mid-epoch resumes from its last complete checkpoint; a resume
that would train something else is refused; a resumed fit reports the uninterrupted fit's training loss."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import textwrap
import time
import warnings

import pytest
import torch
from conftest import quiet_fit, without_dropout
from fastai.callback.core import Callback, CancelFitException
from fastai.losses import FocalLossFlat

from bertlearn import BertDataBunch, BertLearner, BertLearnError
from bertlearn.callbacks import BF16Autocast
from bertlearn.checkpoint import CHECKPOINT_FILES
from bertlearn.checkpoint import identity as checkpoint_identity
from bertlearn.losses import CrossEntropyLossFlat

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


class StopAfter(Callback):
    """Ends the fit once epoch `epoch` is checkpointed: an interruption."""

    order = 100  # after the checkpoint is written

    def __init__(self, epoch: int):
        self.at = epoch

    def after_epoch(self):
        if self.epoch == self.at:
            raise CancelFitException()


def make(csv_dir, tokenizer, model_dir, out, **kwargs):
    db = BertDataBunch.from_csv(csv_dir, tokenizer, bs=16, maxlen=64, seed=3, device="cpu")
    return BertLearner.from_pretrained_model(db, str(model_dir), None, "cpu", None, output_dir=out, seed=3, **kwargs)


HINTS = {"precision": r"precision is is_fp16= \(or a mixed-precision callback\)",
         "wd_bn_bias": r"wd_bn_bias is the factory's \(fastai Learner's\) wd_bn_bias=",
         "config": r"config\.\* is the pretrained_path folder's config\.json",
         "loss": r"loss\.\* is learner\.loss_func"}


def another_run(what: str, hint: str | None = None) -> str:
    # the message of a resume refused for `what` (a regular expression), naming where `hint`'s setting comes from
    return (r"^resume=True: the checkpoint in '.*last' belongs to another run \(" + what + r"\); resume with the same "
            r"model, data and fit settings so the schedule continues where it stopped, or delete the folder to start "
            r"over" + (rf" \({HINTS[hint]}\)" if hint else "") + "$")


class TestResumeChecksWhatTrains:
    """A resume that would train the rest of the fit in another precision, another model configuration or with another
    loss is refused; a checkpoint of another model folder (same configuration) resumes with a warning."""

    @pytest.fixture
    def interrupted(self, tiny_csv_dir, tiny_tokenizer, tiny_model_dir, tmp_path):
        # a 2-epoch float32 fit stopped after its first epoch; returns a maker of learners on its checkpoint
        quiet_fit(make(tiny_csv_dir, tiny_tokenizer, tiny_model_dir, tmp_path), 2, lr=1e-3, checkpoint=True,
                  cbs=[StopAfter(0)])
        return lambda model_dir=tiny_model_dir, **kwargs: make(tiny_csv_dir, tiny_tokenizer, model_dir, tmp_path,
                                                                **kwargs)

    def test_another_precision_is_refused(self, interrupted):
        # before: the float32 fit's last epoch trained under bf16 autocast (is_fp16=True on a bf16 CPU) without a word
        bf16 = interrupted()
        bf16.add_cb(BF16Autocast("cpu"))  # what is_fp16=True adds where bf16 is native
        with pytest.raises(BertLearnError, match=another_run(r"precision: 'float32' in the checkpoint, 'bf16' now",
                                                                    "precision")):
            quiet_fit(bf16, 2, lr=1e-3, resume=True)
        quiet_fit(interrupted(), 2, lr=1e-3, resume=True)  # the same precision resumes

    def test_precision_from_the_fits_own_callbacks_is_recorded(self, tiny_csv_dir, tiny_tokenizer, tiny_model_dir,
                                                               tmp_path):
        # before: fit(cbs=[BF16Autocast()]) was recorded as float32, so a resume without it trained the rest of the fit
        # in float32 without a word
        learner = lambda: make(tiny_csv_dir, tiny_tokenizer, tiny_model_dir, tmp_path)
        quiet_fit(learner(), 2, lr=1e-3, checkpoint=True, cbs=[BF16Autocast("cpu"), StopAfter(0)])
        with pytest.raises(BertLearnError, match=another_run(r"precision: 'bf16' in the checkpoint, 'float32' now",
                                                             "precision")):
            quiet_fit(learner(), 2, lr=1e-3, resume=True)
        quiet_fit(learner(), 2, lr=1e-3, resume=True, cbs=[BF16Autocast("cpu")])  # the same precision resumes

    def test_fastais_own_gradient_clip_is_recorded(self, tiny_csv_dir, tiny_tokenizer, tiny_model_dir, tmp_path):
        # before: only the first clip (the factory's 1.0) was recorded, so a resume without a fit's own fastai
        # GradientClip(0.01) trained the rest unclipped at 0.01 without a word
        from fastai.callback.training import GradientClip as FastaiGradientClip
        learner = lambda: make(tiny_csv_dir, tiny_tokenizer, tiny_model_dir, tmp_path)
        quiet_fit(learner(), 2, lr=1e-3, checkpoint=True, cbs=[FastaiGradientClip(0.01), StopAfter(0)])
        with pytest.raises(BertLearnError, match=another_run(r"max_grad_norm: \[0\.01, 1\.0\] in the checkpoint, 1\.0 "
                                                             r"now")):
            quiet_fit(learner(), 2, lr=1e-3, resume=True)
        quiet_fit(learner(), 2, lr=1e-3, resume=True, cbs=[FastaiGradientClip(0.01)])  # the same clips resume

    def test_a_checkpoint_a_killed_writer_left_aside_is_resumed(self, interrupted, tmp_path):
        # before: a kill between atomic_dir's two renames left the checkpoint as .last.old-PID; the resume found no
        # last/, trained from the start, and its first save replaced the checkpoint it should have resumed
        import os
        last = tmp_path / "checkpoints" / "last"
        epochs_done = json.loads((last / "state.json").read_text())["epochs_done"]
        os.replace(last, last.parent / ".last.old-999999")  # a writer that no longer runs
        learner = interrupted()
        with warnings.catch_warnings(record=True) as said:
            warnings.simplefilter("always")
            quiet_fit(learner, 2, lr=1e-3, resume=True, cbs=[StopAfter(1)])
        assert not [w for w in said if "no checkpoint" in str(w.message)]
        # the resumed fit ran its second epoch only; from the start it would have run both
        assert epochs_done == 1 and len(learner.recorder.values) == 1 and (last / "state.json").is_file()

    def test_the_fp16_loss_scale_goes_on_from_the_checkpoint(self, tiny_csv_dir, tiny_tokenizer, tiny_model_dir,
                                                             tmp_path):
        # before: fastai's MixedPrecision built a new GradScaler at its initial scale in the resumed fit, which
        # skipped again the overflowing steps the interrupted fit had found its scale with (other weights). A CPU
        # GradScaler stands in for the GPU's, built where MixedPrecision builds its own
        class Scaler(Callback):
            order = 10

            def __init__(self, scale):
                self.scale, self.seen = scale, None

            def before_fit(self):
                self.learn.scaler = torch.amp.GradScaler("cpu", init_scale=self.scale)

            def before_train(self):
                self.seen = self.learn.scaler.get_scale()
        learner = lambda: make(tiny_csv_dir, tiny_tokenizer, tiny_model_dir, tmp_path)
        quiet_fit(learner(), 2, lr=1e-3, checkpoint=True, cbs=[Scaler(2.0 ** 5), StopAfter(0)])
        assert json.loads((tmp_path / "checkpoints" / "last" / "state.json").read_text())["scaler"]["scale"] == 32.0
        resumed = Scaler(2.0 ** 16)  # a new scaler starts at its initial scale
        quiet_fit(learner(), 2, lr=1e-3, resume=True, cbs=[resumed])
        assert resumed.seen == 32.0

    def test_trackers_resumed_on_other_validation_rows_are_refused(self, tiny_csv_dir, tiny_tokenizer,
                                                                    tiny_model_dir, tmp_path):
        # before: SaveModelCallback went on comparing the new set's losses with its best on the old set
        from fastai.callback.tracker import SaveModelCallback
        from conftest import make_texts
        learner = lambda: make(tiny_csv_dir, tiny_tokenizer, tiny_model_dir, tmp_path)
        quiet_fit(learner(), 2, lr=1e-3, checkpoint=True, cbs=[SaveModelCallback(), StopAfter(0)])
        original = (tiny_csv_dir / "val.csv").read_text()
        make_texts(32, seed=7).to_csv(tiny_csv_dir / "val.csv", index=False)  # an edited validation file
        with pytest.raises(BertLearnError, match=r"^resume=True: the checkpoint in '.*last' was validated on other "
                                                 r"rows than this learner's, and its trackers \(SaveModelCallback\) "
                                                 r"would compare this set's scores with their best on that one"):
            quiet_fit(learner(), 2, lr=1e-3, resume=True, cbs=[SaveModelCallback()])
        (tiny_csv_dir / "val.csv").write_text(original)  # the same rows resume
        quiet_fit(learner(), 2, lr=1e-3, resume=True, cbs=[SaveModelCallback()])
        # a tracker of the training loss scored no validation row: other validation rows resume
        quiet_fit(learner(), 2, lr=1e-3, checkpoint=True, cbs=[SaveModelCallback(monitor="train_loss"),
                                                               StopAfter(0)])
        make_texts(32, seed=7).to_csv(tiny_csv_dir / "val.csv", index=False)
        quiet_fit(learner(), 2, lr=1e-3, resume=True, cbs=[SaveModelCallback(monitor="train_loss")])

    def test_decay_of_biases_and_layernorm_switched_is_refused(self, interrupted):
        with pytest.raises(BertLearnError, match=another_run(r"wd_bn_bias: False in the checkpoint, True now",
                                                             "wd_bn_bias")):
            quiet_fit(interrupted(wd_bn_bias=True), 2, lr=1e-3, resume=True)

    def test_another_model_config_is_refused(self, interrupted, tiny_model_dir, tmp_path):
        # before: the same shapes without dropout resumed silently, and trained the last epoch without dropout
        undropped = without_dropout(tiny_model_dir, tmp_path / "nodrop")
        with pytest.raises(BertLearnError, match=another_run(
                r"config\.attention_probs_dropout_prob: 0\.1 in the checkpoint, 0\.0 now; "
                r"config\.hidden_dropout_prob: 0\.1 in the checkpoint, 0\.0 now", "config")):
            quiet_fit(interrupted(undropped), 2, lr=1e-3, resume=True)

    def test_a_config_is_the_same_after_save_model_and_loading_it_again(self, tiny_csv_dir, tiny_tokenizer,
                                                                         tiny_model_dir, tmp_path):
        first = make(tiny_csv_dir, tiny_tokenizer, tiny_model_dir, tmp_path / "first")
        again = make(tiny_csv_dir, tiny_tokenizer, first.save_model(tmp_path / "saved"), tmp_path / "again")
        assert checkpoint_identity(again)["config"] == checkpoint_identity(first)["config"]

    def test_another_model_folder_of_the_same_config_resumes_with_a_warning(self, interrupted, tiny_model_dir,
                                                                           tmp_path):
        # before: nothing said that the resumed fit continues the checkpoint's model, not the one the learner loaded
        from transformers import AutoConfig, AutoModel, AutoTokenizer
        torch.manual_seed(1)  # other random weights, the same config
        AutoModel.from_config(AutoConfig.from_pretrained(tiny_model_dir)).save_pretrained(tmp_path / "other")
        AutoTokenizer.from_pretrained(tiny_model_dir).save_pretrained(tmp_path / "other")
        with pytest.warns(UserWarning, match=rf"^resume=True: the checkpoint in '.*last' continues a fit of "
                                             rf"'{re.escape(str(tiny_model_dir))}', not of "
                                             rf"'{re.escape(str(tmp_path / 'other'))}': its weights replace this "
                                             r"model's, so the resume trains on from them \(the same model moved or "
                                             r"copied is the same run\); to train this model, delete the folder or "
                                             r"fit without resume$"):
            quiet_fit(interrupted(tmp_path / "other"), 2, lr=1e-3, resume=True)

    def test_another_loss_is_refused(self, interrupted):
        # before: the loss's class weights were checked, and nothing else of it
        smoothed = interrupted()
        smoothed.loss_func = CrossEntropyLossFlat(label_smoothing=0.3)
        with pytest.raises(BertLearnError, match=another_run(r"loss\.label_smoothing: 0\.0 in the checkpoint, 0\.3 "
                                                             r"now", "loss")):
            quiet_fit(smoothed, 2, lr=1e-3, resume=True)
        other = interrupted()
        other.loss_func = FocalLossFlat()
        with pytest.raises(BertLearnError, match=another_run(r"loss\.class: 'CrossEntropyLossFlat' in the checkpoint, "
                                                             r"'FocalLossFlat' now; loss\.func: 'CrossEntropyLoss' in "
                                                             r"the checkpoint, 'FocalLoss' now", "loss")):
            quiet_fit(other, 2, lr=1e-3, resume=True)
        same = interrupted()
        same.loss_func = CrossEntropyLossFlat()  # set again as the factory set it: the same run
        quiet_fit(same, 2, lr=1e-3, resume=True)

    def test_a_checkpoint_from_before_these_records_resumes(self, interrupted, tmp_path):
        state_file = tmp_path / "checkpoints" / "last" / "state.json"
        state = json.loads(state_file.read_text())
        for key in ("precision", "loss"):
            del state["fit"][key]
        for key in ("config", "name_or_path"):
            del state["identity"][key]
        del state["smooth_loss"]
        state_file.write_text(json.dumps(state))
        smoothed = interrupted()
        smoothed.loss_func = CrossEntropyLossFlat(label_smoothing=0.3)  # not recorded, so not compared
        quiet_fit(smoothed, 2, lr=1e-3, resume=True)
        assert len(smoothed.recorder.values) == 1


def test_a_resumed_fit_reports_the_uninterrupted_training_loss(tiny_csv_dir, tiny_tokenizer, tiny_model_dir,
                                                               tmp_path):
    # before: the smoothed training loss restarted at the resume, so the resumed epochs' train_loss and fit()'s mean
    # training loss differed from the uninterrupted fit's although the weights were the same
    whole = make(tiny_csv_dir, tiny_tokenizer, tiny_model_dir, tmp_path / "whole")
    steps, loss, results = quiet_fit(whole, 3, lr=1e-3, return_results=True)
    quiet_fit(make(tiny_csv_dir, tiny_tokenizer, tiny_model_dir, tmp_path / "cut"), 3, lr=1e-3, checkpoint=True,
              cbs=[StopAfter(0)])
    resumed = make(tiny_csv_dir, tiny_tokenizer, tiny_model_dir, tmp_path / "cut")
    assert quiet_fit(resumed, 3, lr=1e-3, resume=True, return_results=True) == (steps, loss, results[1:])
    assert resumed.recorder.values == whole.recorder.values[1:]
    assert resumed.recorder.iters == whole.recorder.iters[1:]  # the batch count goes on too
