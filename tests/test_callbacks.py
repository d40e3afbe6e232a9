"""fastai callbacks on a BertLearner, and bertlearn's own TensorBoard logger."""

from __future__ import annotations


import numpy as np
import pytest
import torch
from fastai.callback.core import Callback
from fastai.callback.progress import CSVLogger
from conftest import FirstStepGrads, assert_same_grads, quiet_fit, without_dropout
from fastai.callback.tracker import EarlyStoppingCallback, SaveModelCallback

from bertlearn import BertLearner, GradientClip



class CountSteps(Callback):
    order = 99

    def before_fit(self):
        self.steps = self.batches = 0

    def after_step(self):
        self.steps += 1

    def after_batch(self):
        self.batches += self.training


class RecordGradNorm(Callback):
    order = 99  # after GradientClip (before_step) has clipped

    def before_fit(self):
        self.norms = []

    def before_step(self):
        grads = [p.grad for p in self.learn.model.parameters() if p.grad is not None]
        self.norms.append(float(torch.linalg.vector_norm(torch.stack([torch.linalg.vector_norm(g) for g in grads]))))


def test_early_stopping_stops(tiny_learner):
    # an improvement of 1.0 in accuracy is impossible, so patience runs out after the first epoch
    cb = EarlyStoppingCallback(monitor="accuracy", comp=np.greater, min_delta=1.0, patience=1)
    quiet_fit(tiny_learner, 6, lr=1e-4, cbs=[cb])
    assert len(tiny_learner.recorder.values) == 2


def test_save_model_callback_leaves_the_best_weights_in_the_model(tiny_databunch, tiny_model_dir, tmp_path):
    learner = BertLearner.from_pretrained_model(tiny_databunch, str(tiny_model_dir), None, "cpu", None,
                                                output_dir=tmp_path, seed=0)
    quiet_fit(learner, 4, lr=3e-3, cbs=[SaveModelCallback(monitor="valid_loss", fname="best")])
    best = min(v[1] for v in learner.recorder.values)
    saved = torch.load(tmp_path / "models" / "best.pth", map_location="cpu", weights_only=True)
    state = saved.get("model", saved)
    for name, tensor in learner.model.state_dict().items():
        torch.testing.assert_close(tensor, state[name])
    assert learner.validate(quiet=True)["loss"] == pytest.approx(best, rel=1e-5)


def test_a_tracker_of_a_renamed_lower_is_better_metric_keeps_the_lowest(tiny_tokenizer, tiny_model_dir, tmp_path):
    # before: the direction came from the monitor's name alone, so fast-bert's {'name': 'MAE', 'function': mae} and
    # partial(mse) (named "mse()") were tracked as higher-is-better: SaveModelCallback kept and loaded the epoch with
    # the highest error
    from functools import partial

    from conftest import make_texts

    from bertlearn import BertDataBunch
    from bertlearn.metrics import mae, mse
    df = make_texts(32, seed=3)
    df["score"] = np.linspace(-1.0, 2.0, len(df))
    db = BertDataBunch.from_df(df, df, tiny_tokenizer, label_col="score", regression=True, bs=8, device="cpu")
    learner = BertLearner.from_pretrained_model(db, str(tiny_model_dir), [{"name": "MAE", "function": mae},
                                                                          partial(mse)], "cpu", None, seed=0,
                                                output_dir=tmp_path)
    saver = SaveModelCallback(monitor="MAE", fname="best")
    stopper = EarlyStoppingCallback(monitor="mse()", patience=10)
    mine = EarlyStoppingCallback(monitor="MAE", comp=np.greater_equal, patience=10)  # the user's comp stays
    with pytest.warns(UserWarning) as caught:
        quiet_fit(learner, 4, lr=1e-2, cbs=[saver, stopper, mine])
    said = [str(w.message) for w in caught if "Callback(monitor=" in str(w.message)]
    assert said == [f"{kind}(monitor={name!r}): fastai reads a metric whose name holds neither 'loss' nor 'error' as "
                    f"higher-is-better, so it would keep the epoch with the highest {name}; it is tracked as "
                    "lower-is-better (pass comp=np.less to say so)"
                    for kind, name in [("SaveModelCallback", "MAE"), ("EarlyStoppingCallback", "mse()")]]
    names = learner.recorder.metric_names[1:]
    maes = [row[names.index("MAE")] for row in learner.recorder.values]
    mses = [row[names.index("mse()")] for row in learner.recorder.values]
    assert min(maes) < max(maes) and min(mses) < max(mses)  # the epochs differ: the best is one of them
    assert saver.comp is np.less and stopper.comp is np.less and mine.comp is np.greater_equal
    assert saver.best == min(maes) and stopper.best == min(mses)
    assert learner.validate(quiet=True)["MAE"] == pytest.approx(min(maes), abs=1e-6)  # the lowest epoch's weights


def test_gradient_accumulation_steps_the_optimizer_every_n_batches(tiny_databunch, tiny_model_dir, tmp_path):
    learner = BertLearner.from_pretrained_model(tiny_databunch, str(tiny_model_dir), None, "cpu", None,
                                                output_dir=tmp_path, grad_accumulation_steps=2)
    counter = CountSteps()
    quiet_fit(learner, 1, lr=1e-4, cbs=[counter])
    assert counter.batches == 6 and counter.steps == 3  # 96 rows, bs 16


@pytest.mark.parametrize("bs, weight", [(40, None), (16, [1.0, 5.0])])
def test_an_accumulated_step_is_one_batch_of_all_its_rows(tiny_csv_dir, tiny_tokenizer, tiny_model_dir, tmp_path, bs,
                                                          weight):
    # each batch was scaled by its rows / (bs x steps), fastai's rule: a step holding the short last batch (96 rows
    # in batches of 40: 40 + 40 + 16) was divided by 120 rows, and a class-weighted cross-entropy, a mean over its
    # targets' weights, was weighed by rows; the step is now one batch of all its rows, as transformers' Trainer
    from bertlearn import BertDataBunch
    model = without_dropout(tiny_model_dir, tmp_path / "model")
    db = BertDataBunch.from_csv(tiny_csv_dir, tiny_tokenizer, bs=bs, maxlen=64, seed=3, device="cpu")
    learner = BertLearner.from_pretrained_model(db, str(model), None, "cpu", None, output_dir=tmp_path / "out", seed=3,
                                                grad_accumulation_steps=3, weight=weight)
    start = {k: v.clone() for k, v in learner.model.state_dict().items()}
    rec = FirstStepGrads()
    quiet_fit(learner, 1, lr=1e-3, cbs=[rec])
    w = torch.tensor(weight or [1.0, 1.0])
    weights = [float(w[y].sum()) for _, (y,) in rec.batches]
    assert len(weights) == 3 and len(set(weights)) > 1, weights
    learner.model.load_state_dict(start)
    learner.model.zero_grad(set_to_none=True)
    total = sum(torch.nn.functional.cross_entropy(learner.model(*xb).logits, y, weight=w, reduction="sum")
                for xb, (y,) in rec.batches)
    (total / sum(weights)).backward()
    assert_same_grads(learner.model, rec.grads)


def test_a_fit_after_one_that_ended_mid_step_starts_its_step_afresh(tiny_csv_dir, tiny_tokenizer, tiny_model_dir,
                                                                    tmp_path):
    # 96 rows in batches of 40, 2 a step: the first fit ends one batch into a step, whose gradients and running
    # count the next fit drops; its first step is its own two batches, divided by their rows alone
    from bertlearn import BertDataBunch
    model = without_dropout(tiny_model_dir, tmp_path / "model")
    db = BertDataBunch.from_csv(tiny_csv_dir, tiny_tokenizer, bs=40, maxlen=64, seed=3, device="cpu")
    learner = BertLearner.from_pretrained_model(db, str(model), None, "cpu", None, output_dir=tmp_path / "out", seed=3,
                                                grad_accumulation_steps=2)
    quiet_fit(learner, 1, lr=1e-3)
    start = {k: v.clone() for k, v in learner.model.state_dict().items()}
    rec = FirstStepGrads()
    quiet_fit(learner, 1, lr=1e-3, cbs=[rec])
    assert len(rec.batches) == 2
    learner.model.load_state_dict(start)
    learner.model.zero_grad(set_to_none=True)
    total = sum(torch.nn.functional.cross_entropy(learner.model(*xb).logits, y, reduction="sum")
                for xb, (y,) in rec.batches)
    (total / sum(len(y) for _, (y,) in rec.batches)).backward()
    assert_same_grads(learner.model, rec.grads)


def test_gradient_clip_bounds_the_gradient_norm(tiny_databunch, tiny_model_dir, tmp_path):
    learner = BertLearner.from_pretrained_model(tiny_databunch, str(tiny_model_dir), None, "cpu", None,
                                                output_dir=tmp_path, max_grad_norm=1e-3)
    rec = RecordGradNorm()
    quiet_fit(learner, 1, lr=1e-4, cbs=[rec])
    assert rec.norms and max(rec.norms) <= 1e-3 * 1.001


class TestGradientClip:
    """bertlearn's GradientClip: fastai's, with the parameter list kept between steps."""

    @pytest.mark.parametrize("norm", [-1, -0.5, float("inf"), "1.0"])
    def test_a_norm_that_is_not_positive_is_refused(self, tiny_databunch, tiny_model_dir, norm):
        # before: max_grad_norm=-1 (transformers' "no clipping") multiplied every gradient by a negative factor,
        # and training went uphill without a word
        from bertlearn import BertLearnError
        message = (f"max_grad_norm={norm!r}: clipping scales the gradients down to this total norm, so it must be a "
                   "finite number > 0; for no clipping (what transformers' max_grad_norm=-1 means) pass "
                   "max_grad_norm=None or 0 to the learner, or leave GradientClip out")
        with pytest.raises(BertLearnError) as e:
            BertLearner.from_pretrained_model(tiny_databunch, str(tiny_model_dir), None, "cpu", None,
                                              max_grad_norm=norm)
        assert str(e.value) == message
        with pytest.raises(BertLearnError):
            GradientClip(norm)
        learn = BertLearner.from_pretrained_model(tiny_databunch, str(tiny_model_dir), None, "cpu", None,
                                                  max_grad_norm=0)
        assert not any(isinstance(c, GradientClip) for c in learn.cbs)

    def test_a_learner_clips_with_it_and_fastai_sees_its_own_callback(self, tiny_learner):
        from fastai.callback.training import GradientClip as FastaiGradientClip
        cb = tiny_learner.gradient_clip  # the attribute fastai names after the class
        assert type(cb) is GradientClip and isinstance(cb, FastaiGradientClip) and cb.max_norm == 1.0
        assert cb.order == FastaiGradientClip.order  # after fp16's unscaling, as fastai orders it
        tiny_learner.remove_cb(FastaiGradientClip)
        assert not any(isinstance(c, FastaiGradientClip) for c in tiny_learner.cbs)

    def test_clips_exactly_as_fastai_does(self, tiny_learner):
        from fastai.callback.training import GradientClip as FastaiGradientClip
        model = tiny_learner.model
        tiny_learner.create_opt()
        grads = {}
        for kind in (FastaiGradientClip, GradientClip):
            torch.manual_seed(0)
            for p in model.parameters():
                p.grad = torch.randn_like(p)
            model.classifier.bias.grad = None  # a parameter without a gradient is left out of the norm
            cb = kind(max_norm=0.5)
            cb.learn = tiny_learner
            cb.before_step()
            grads[kind] = [None if p.grad is None else p.grad.clone() for p in model.parameters()]
        for mine, theirs in zip(grads[GradientClip], grads[FastaiGradientClip]):
            assert (mine is None and theirs is None) or torch.equal(mine, theirs)
        total = torch.linalg.vector_norm(torch.stack([torch.linalg.vector_norm(g) for g in grads[GradientClip]
                                                      if g is not None]))
        assert float(total) == pytest.approx(0.5, rel=1e-4)

    def test_the_list_is_kept_until_the_model_or_the_optimizer_changes(self, tiny_learner, monkeypatch):
        tiny_learner.create_opt()
        cb = tiny_learner.gradient_clip
        walks = []
        real = type(tiny_learner.model).parameters
        monkeypatch.setattr(type(tiny_learner.model), "parameters",
                            lambda self, *a, **k: walks.append(1) or real(self, *a, **k))
        first = cb._parameters()
        assert cb._parameters() is first and len(walks) == 1
        assert [id(p) for p in first] == [id(p) for p in real(tiny_learner.model)]
        tiny_learner.create_opt()  # a new optimizer: parameters may have been replaced
        before = len(walks)
        assert cb._parameters() is not first and len(walks) == before + 1
        import copy
        tiny_learner.model = copy.deepcopy(tiny_learner.model)  # a new model object (as a DDP wrapper is)
        before = len(walks)
        new = cb._parameters()
        assert len(walks) == before + 1 and {id(p) for p in new} == {id(p) for p in real(tiny_learner.model)}

    def test_a_fit_and_an_export_with_the_kept_list(self, tiny_learner):
        quiet_fit(tiny_learner, 1, lr=1e-4)
        assert tiny_learner.gradient_clip._params is not None  # the fit clipped through the kept list
        tiny_learner.export("learner.pkl")  # weak references do not pickle: they stay behind
        from bertlearn import load_learner
        loaded = load_learner(tiny_learner.path / "learner.pkl")
        assert loaded.gradient_clip._params is None and loaded.gradient_clip.max_norm == 1.0


class TestProgressOutput:
    """Bars where output redraws in place; one table row per epoch where it cannot (files, pipes, batch logs)."""

    def test_interactive_output_asks_the_terminal(self, monkeypatch):
        import io
        import sys

        from bertlearn.callbacks import interactive_output

        class Terminal(io.StringIO):
            def isatty(self):
                return True

        monkeypatch.delenv("PYCHARM_HOSTED", raising=False)
        monkeypatch.setattr(sys, "stdout", io.StringIO())
        assert interactive_output() is False  # fastprogress's own check says True here: it never calls isatty
        monkeypatch.setattr(sys, "stdout", Terminal())
        assert interactive_output() is True
        monkeypatch.setattr(sys, "stdout", None)
        assert interactive_output() is False
        monkeypatch.setenv("PYCHARM_HOSTED", "1")
        assert interactive_output() is True

    def _fit_output(self, learner, capsys, live):
        bar = learner.progress
        bar.live = live
        capsys.readouterr()
        learner.fit(2, lr=1e-4)  # fastai's logger on: the epoch table is what is checked
        return capsys.readouterr().out

    def test_without_a_terminal_the_epoch_table_comes_line_by_line(self, tiny_learner, capsys):
        out = self._fit_output(tiny_learner, capsys, live=None)  # pytest captures stdout: not a terminal
        assert "\r" not in out and "\u2588" not in out  # no redraws, no bar characters
        summary, *lines = out.splitlines()
        assert summary.startswith("bertlearn: training on cpu, float32, eager steps; 2 epochs of 6 batches of 16; "
                                  "texts ")
        assert lines[0].split() == ["epoch", "train_loss", "valid_loss", "accuracy", "f1_macro", "time"]
        assert [line.split()[0] for line in lines[1:]] == ["0", "1"]
        assert lines[1].index(lines[1].split()[1]) == lines[0].index("train_loss")  # columns under their names
        losses = [float(line.split()[1]) for line in lines[1:]]
        assert losses == pytest.approx([v[0] for v in tiny_learner.recorder.values], abs=1e-6)

    def test_a_cell_wider_than_its_header_keeps_the_columns_apart(self, tiny_learner, capsys):
        # before: a masked-LM perplexity ran into the time ("38477.16796900:07"): cells were padded to the header
        bar = tiny_learner.progress
        bar._drawing, bar._names = False, None
        capsys.readouterr()
        bar._write_stats(["epoch", "train_loss", "valid_loss", "perplexity", "time"])
        bar._write_stats([0, 10.93257, 10.55782, 38477.167969, "00:07"])
        header, row = capsys.readouterr().out.splitlines()
        assert row.split() == ["0", "10.932570", "10.557820", "38477.167969", "00:07"]
        assert row.index("10.557820") == header.index("valid_loss")

    def test_live_bars_redraw(self, tiny_learner, capsys):
        out = self._fit_output(tiny_learner, capsys, live=True)
        assert "\r" in out and "Epoch 1/2" in out
        assert "epoch" in out and "train_loss" in out

    def test_show_graph_callback_without_a_terminal_lets_the_fit_finish(self, tiny_learner, capsys):
        # before: the bar-less path set no master bar, so fastai's ShowGraphCallback (which draws on
        # learn.progress.mbar after each epoch) ended the fit after epoch 1 with AttributeError 'mbar'
        from fastai.callback.progress import ShowGraphCallback
        tiny_learner.progress.live = None  # pytest captures stdout: not a terminal
        capsys.readouterr()
        tiny_learner.fit(2, lr=1e-4, cbs=[ShowGraphCallback()])
        lines = capsys.readouterr().out.splitlines()
        assert len(tiny_learner.recorder.values) == 2
        assert [line.split()[0] for line in lines[2:]] == ["0", "1"]  # after the summary and the header
        assert not hasattr(tiny_learner.progress, "mbar")  # let go at the end of the fit, as fastai's

    def test_validate_prints_nothing_without_a_terminal(self, tiny_learner, capsys):
        capsys.readouterr()
        tiny_learner.validate()
        assert capsys.readouterr().out == ""


NO_VALIDATION = ("fit(validate=False): {} monitors a value only validation computes, and validate=False computes no "
                 "validation values (each epoch records train_loss only); fit with validate=True, or give the callback "
                 "monitor='train_loss'")


@pytest.mark.parametrize("where", ["cbs", "learner", "class"])
def test_fit_without_validation_refuses_trackers_of_validation_values(tiny_learner, where):
    # before: the first epoch trained, then the tracker's after_epoch failed with a raw IndexError (the epoch's row
    # holds train_loss only)
    from bertlearn import BertLearnError
    weights = {k: v.clone() for k, v in tiny_learner.model.state_dict().items()}
    if where == "cbs":
        cbs, named = [SaveModelCallback(monitor="valid_loss", fname="best")], "SaveModelCallback(monitor='valid_loss')"
    elif where == "learner":
        tiny_learner.add_cb(EarlyStoppingCallback(monitor="accuracy", patience=0))
        cbs, named = None, "EarlyStoppingCallback(monitor='accuracy')"
    else:  # fastai instantiates a class given in cbs, with its default monitor
        cbs, named = [SaveModelCallback], "SaveModelCallback(monitor='valid_loss')"
    with pytest.raises(BertLearnError) as e:
        quiet_fit(tiny_learner, 2, lr=1e-4, validate=False, cbs=cbs)
    assert str(e.value) == NO_VALIDATION.format(named)
    assert all(torch.equal(v, tiny_learner.model.state_dict()[k]) for k, v in weights.items())  # refused before


def test_fit_without_validation_keeps_trackers_of_the_training_loss(tiny_learner):
    save = SaveModelCallback(monitor="train_loss", fname="best")
    quiet_fit(tiny_learner, 2, lr=1e-4, validate=False, cbs=[save, EarlyStoppingCallback(monitor="train_loss")])
    assert len(tiny_learner.recorder.values) == 2 and len(tiny_learner.recorder.values[0]) == 1
    assert (tiny_learner.path / "models" / "best.pth").is_file()


def test_csv_logger_writes_one_row_per_epoch(tiny_learner):
    quiet_fit(tiny_learner, 2, lr=1e-4, cbs=[CSVLogger(fname="history.csv")])
    import pandas as pd
    df = pd.read_csv(tiny_learner.path / "history.csv")
    assert list(df.columns) == ["epoch", "train_loss", "valid_loss", "accuracy", "f1_macro", "time"]
    assert df["epoch"].tolist() == [0, 1]


def _scalars(log_dir):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
    acc = EventAccumulator(str(log_dir))
    acc.Reload()
    return {tag: [e.value for e in acc.Scalars(tag)] for tag in acc.Tags()["scalars"]}


def test_log_dir_writes_tensorboard_scalars(tiny_databunch, tiny_model_dir, tmp_path):
    learner = BertLearner.from_pretrained_model(tiny_databunch, str(tiny_model_dir), None, "cpu", None,
                                                output_dir=tmp_path, log_dir=tmp_path / "tb")
    quiet_fit(learner, 2, lr=1e-4)
    with learner.no_bar():
        learner.fit(1, lr=1e-4)  # logging on: the epoch values must arrive
    scalars = _scalars(tmp_path / "tb")
    assert {"train/loss", "valid/loss", "valid/accuracy", "valid/f1_macro", "lr/group_0"} <= set(scalars)
    assert scalars["valid/accuracy"][-1] == pytest.approx(learner.recorder.values[-1][2])


def test_logger_argument_can_be_a_summary_writer(tiny_databunch, tiny_model_dir, tmp_path):
    from torch.utils.tensorboard import SummaryWriter
    writer = SummaryWriter(log_dir=str(tmp_path / "tb"))
    learner = BertLearner.from_pretrained_model(tiny_databunch, str(tiny_model_dir), None, "cpu", writer,
                                                output_dir=tmp_path)
    with learner.no_bar():
        learner.fit(1, lr=1e-4)
    writer.flush()
    assert "valid/accuracy" in _scalars(tmp_path / "tb")


def test_layer_decay_sets_geometric_rates_per_group(tiny_learner):
    quiet_fit(tiny_learner, 1, lr=1e-3, layer_decay=0.5, schedule_type="constant")
    lrs = [g["lr"] for g in tiny_learner.opt.param_groups]
    np.testing.assert_allclose(lrs, [1e-3 * 0.5 ** 3, 1e-3 * 0.5 ** 2, 1e-3 * 0.5, 1e-3])


def test_layer_decay_with_a_slice_is_refused(tiny_learner):
    from bertlearn import BertLearnError
    with pytest.raises(BertLearnError, match=r"layer_decay=0.9 and lr=slice\(1e-05, 0.0001, None\) both set"):
        tiny_learner.fit(1, lr=slice(1e-5, 1e-4), layer_decay=0.9)
    with pytest.raises(BertLearnError, match=r"layer_decay=1.5 must be a number in \(0, 1\]"):
        tiny_learner.layerwise_lrs(1e-4, 1.5)


def test_freeze_to_trains_only_the_top_groups(tiny_learner):
    tiny_learner.freeze_to(-2)  # last layer + head
    groups = tiny_learner.splitter(tiny_learner.model)
    trainable = [all(p.requires_grad for p in g) for g in groups]
    assert trainable == [False, False, True, True]
    quiet_fit(tiny_learner, 1, lr=1e-4)
    tiny_learner.unfreeze()
    assert all(p.requires_grad for p in tiny_learner.model.parameters())


def test_fine_tune_runs_frozen_then_unfrozen(tiny_learner):
    with tiny_learner.no_bar(), tiny_learner.no_logging():
        tiny_learner.fine_tune(1, base_lr=1e-4, freeze_epochs=1)
    assert len(tiny_learner.recorder.values) == 1  # the recorder keeps the last fit (the unfrozen epoch)
    assert all(p.requires_grad for p in tiny_learner.model.parameters())


def test_tensorboard_points_of_a_resumed_fit_fall_on_the_uninterrupted_fits_steps():
    """The `every` test read the resumed fit's own batch count: with every=4 and 6 batches an epoch, a fit resumed
    after epoch 1 wrote at steps 6, 10, 14 where the uninterrupted fit wrote at 8, 12, 16."""
    from types import SimpleNamespace

    from bertlearn.callbacks import TensorBoardLogger
    steps = []
    writer = SimpleNamespace(add_scalar=lambda tag, value, step: steps.append((tag, step)))
    cb = TensorBoardLogger(writer=writer, every=4)
    learn = SimpleNamespace(first_epoch=1, dls=SimpleNamespace(train=[0] * 6), training=True, smooth_loss=0.5,
                            opt=SimpleNamespace(hypers=[{"lr": 1e-4}]), train_iter=0)
    cb.learn = learn
    cb.before_train()
    for i in range(12):
        learn.train_iter = i
        cb.after_batch()
    assert [s for tag, s in steps if tag == "train/smooth_loss"] == [8, 12, 16]


def test_tensorboard_points_come_every_logging_steps_optimizer_steps_under_accumulation():
    """Counted in batches, logging_steps=2 under 3 batches a step wrote a point every 2 batches (6 for 4 steps) on a
    batch axis, where fast-bert's global_step counts optimizer steps."""
    from types import SimpleNamespace

    from bertlearn.callbacks import TensorBoardLogger
    steps = []
    writer = SimpleNamespace(add_scalar=lambda tag, value, step: steps.append((tag, step)))
    cb = TensorBoardLogger(writer=writer, every=2)
    learn = SimpleNamespace(first_epoch=0, dls=SimpleNamespace(train=[0] * 12), training=True, smooth_loss=0.5,
                            opt=SimpleNamespace(hypers=[{"lr": 1e-4}]), train_iter=0, grad_accumulation_steps=3)
    cb.learn = learn
    cb.before_train()
    for i in range(1, 13):  # fastai has counted the batch by after_batch
        learn.train_iter = i
        cb.after_batch()
    assert [s for tag, s in steps if tag == "train/smooth_loss"] == [2, 4]
