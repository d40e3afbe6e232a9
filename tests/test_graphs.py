"""CUDA-graph training steps: bucketing, when graphs switch on, and that a graphed fit computes what an eager one does.

The CPU tests replace the capture by the captured module itself (what a replay computes, run eagerly) and
pretend the tensors are on a GPU, so every part of the dispatch runs here; the `gpu` tests capture for real.
"""

from __future__ import annotations

import warnings

import numpy as np
import pytest
import torch
from fastai.callback.training import GradientAccumulation

from bertlearn import BertDataBunch, BertLearner, CudaGraphCallback, ModelError, graph_buckets, load_learner
from bertlearn import graphs
from conftest import make_texts, quiet_fit


def no_dropout(model: torch.nn.Module) -> torch.nn.Module:
    for m in model.modules():
        if isinstance(m, torch.nn.Dropout):
            m.p = 0.0
    return model


@pytest.fixture
def fake_capture(monkeypatch):
    """Capture on the CPU: the 'graph' is the step module itself; records each capture's input shapes."""
    shapes = []

    def capture(step, sample, allow_unused_input=False, pool=None):
        assert allow_unused_input, "frozen or unused parameters have no gradient"
        assert not torch.is_autocast_enabled("cpu"), "capture must run outside fastai's autocast (weight-cast cache)"
        shapes.append(tuple(tuple(t.shape) for t in sample))
        return step

    monkeypatch.setattr(graphs, "_on_cuda", lambda t: True)
    monkeypatch.setattr(graphs, "make_graphed_callables", capture)
    return shapes


def make_learner(model_dir, tmp_path, *, rows=100, bs=16, device="cpu", is_fp16=False, **kwargs):
    db = BertDataBunch.from_df(make_texts(rows, seed=3), make_texts(32, seed=4), str(model_dir), bs=bs, maxlen=64,
                               device=device, seed=0)
    learner = BertLearner.from_pretrained_model(db, str(model_dir), None, device, None, output_dir=tmp_path,
                                                is_fp16=is_fp16, seed=0, **kwargs)
    no_dropout(learner.model)
    return learner


class TestBuckets:
    def test_widths(self):
        assert graph_buckets(128) == (16, 32, 48, 64, 96, 128)
        assert graph_buckets(140) == (16, 32, 48, 64, 96, 128, 140)
        assert graph_buckets(512)[-3:] == (256, 384, 512)
        assert graph_buckets(10) == (10,)

    def test_bad_maxlen(self):
        with pytest.raises(ModelError, match=r"^maxlen=0 must be a positive number of tokens$"):
            graph_buckets(0)


class TestOptions:
    def test_true_on_cpu_says_why(self, tiny_databunch, tiny_model_dir, tmp_path):
        with pytest.raises(ModelError, match=r"^cuda_graphs=True needs a CUDA GPU, but the model goes to 'cpu'; pass "
                                             r"device='cuda', or cuda_graphs='auto' \(graphs only where they apply\)$"):
            BertLearner.from_pretrained_model(tiny_databunch, str(tiny_model_dir), None, "cpu", None,
                                              output_dir=tmp_path, cuda_graphs=True)

    def test_bad_value(self, tiny_databunch, tiny_model_dir, tmp_path):
        with pytest.raises(ModelError, match=r"^cuda_graphs='yes' is not one of True, False, 'auto'$"):
            BertLearner.from_pretrained_model(tiny_databunch, str(tiny_model_dir), None, "cpu", None,
                                              output_dir=tmp_path, cuda_graphs="yes")

    def test_auto_on_cpu_adds_nothing(self, tiny_learner):
        assert not any(isinstance(cb, CudaGraphCallback) for cb in tiny_learner.cbs)
        assert "forward" not in tiny_learner.model.__dict__


class TestDispatch:
    def test_graphed_fit_matches_eager(self, fake_capture, tiny_model_dir, tmp_path):
        eager = make_learner(tiny_model_dir, tmp_path / "e", cuda_graphs=False)
        quiet_fit(eager, 2, lr=1e-3)
        graphed = make_learner(tiny_model_dir, tmp_path / "g", cuda_graphs=False)
        cb = CudaGraphCallback(True)
        graphed.add_cb(cb)
        quiet_fit(graphed, 2, lr=1e-3)
        # same batches, same updates: padding to the bucket leaves the logits unchanged
        np.testing.assert_allclose([float(x) for x in graphed.recorder.losses],
                                   [float(x) for x in eager.recorder.losses], rtol=1e-4, atol=1e-5)
        np.testing.assert_allclose(graphed.recorder.values[-1], eager.recorder.values[-1], rtol=1e-4, atol=1e-5)
        # one capture per bucket seen, each a full batch at a bucket width; the 4-row last batch ran eagerly
        widths = [s[0][1] for s in fake_capture]
        assert cb.captures == len(fake_capture) == len(set(widths)) >= 2
        assert all(s[0] == (16, w) and w in graph_buckets(64) for s, w in zip(fake_capture, widths))
        assert "forward" not in graphed.model.__dict__  # the model is plain again after the fit

    def test_bf16_graphed_fit_tracks_eager(self, fake_capture, tiny_model_dir, tmp_path):
        from bertlearn import native_bf16
        if not native_bf16("cpu"):
            pytest.skip("this CPU has no bf16 hardware")
        eager = make_learner(tiny_model_dir, tmp_path / "e", is_fp16=True, cuda_graphs=False)
        quiet_fit(eager, 1, lr=1e-3)
        graphed = make_learner(tiny_model_dir, tmp_path / "g", is_fp16=True, cuda_graphs=False)
        graphed.add_cb(CudaGraphCallback(True))
        quiet_fit(graphed, 1, lr=1e-3)
        np.testing.assert_allclose([float(x) for x in graphed.recorder.losses],
                                   [float(x) for x in eager.recorder.losses], atol=2e-2)

    def test_only_the_stream_mismatch_warning_is_muted_and_only_in_graphed_backward(self, monkeypatch, tiny_model_dir,
                                                                                    tmp_path):
        class WarnInBackward(torch.autograd.Function):
            @staticmethod
            def forward(ctx, x):
                return x.clone()

            @staticmethod
            def backward(ctx, g):
                warnings.warn("The AccumulateGrad node's stream does not match the stream of the node ...")
                warnings.warn("an unrelated warning")
                return g

        class Noisy(torch.nn.Module):
            def __init__(self, step):
                super().__init__()
                self.step = step

            def forward(self, *inputs):
                return WarnInBackward.apply(self.step(*inputs))

        monkeypatch.setattr(graphs, "_on_cuda", lambda t: True)
        monkeypatch.setattr(graphs, "make_graphed_callables", lambda step, sample, **kw: Noisy(step))
        learner = make_learner(tiny_model_dir, tmp_path, cuda_graphs=False)
        learner.add_cb(CudaGraphCallback(True))
        with warnings.catch_warnings(record=True) as seen:
            warnings.simplefilter("always")
            quiet_fit(learner, 1, lr=1e-3)
            warnings.warn("The AccumulateGrad node's stream does not match, outside a graphed backward")
        messages = [str(w.message) for w in seen]
        assert sum("unrelated" in m for m in messages) == 6  # one per graphed batch (6 full batches)
        assert [m for m in messages if "AccumulateGrad" in m] == [
            "The AccumulateGrad node's stream does not match, outside a graphed backward"]

    def test_graphed_batches_read_nothing_back_from_the_device(self, fake_capture, tiny_model_dir, tmp_path,
                                                               sync_spy):
        learner = make_learner(tiny_model_dir, tmp_path, cuda_graphs=False)
        learner.add_cb(CudaGraphCallback(True))
        next(cb for cb in learner.cbs if type(cb).__name__ == "SparseProgressCallback").every = 1e9
        # the watchdog reads the loss once a second: a slow or busy machine reached it within the fit
        next(cb for cb in learner.cbs if type(cb).__name__ == "FitWatchdog").every = 1e9
        learner.fit(2, lr=1e-3, cbs=sync_spy.window())
        assert len(fake_capture) >= 2 and sync_spy.calls == []

    def test_validation_and_prediction_stay_eager(self, fake_capture, fake_forward_capture, tiny_model_dir,
                                                  tmp_path):
        learner = make_learner(tiny_model_dir, tmp_path, cuda_graphs=False)
        cb = CudaGraphCallback(True)
        learner.add_cb(cb)
        quiet_fit(learner, 1, lr=1e-3)
        n = cb.captures
        learner.validate(quiet=True)
        assert fake_forward_capture == []
        learner.predict_batch(["a good film"] * 20)  # the forward-only graphs, not the training step's
        assert cb.captures == n and "forward" not in learner.model.__dict__ and len(fake_forward_capture) == 1

    def test_export_after_a_graphed_fit(self, fake_capture, fake_forward_capture, tiny_model_dir, tmp_path):
        learner = make_learner(tiny_model_dir, tmp_path, cuda_graphs=False)
        learner.add_cb(CudaGraphCallback(True))
        quiet_fit(learner, 1, lr=1e-3)
        before = learner.predict_batch(["a good film", "bad plot"])
        loaded = load_learner(learner.export())
        cb = next(c for c in loaded.cbs if isinstance(c, CudaGraphCallback))
        assert cb._graphs == {} and not cb.active
        assert loaded.predict_batch(["a good film", "bad plot"]) == before

    def test_auto_waits_for_a_long_enough_bf16_fit(self, fake_capture, tiny_model_dir, tmp_path):
        from bertlearn import native_bf16
        if not native_bf16("cpu"):
            pytest.skip("this CPU has no bf16 hardware")
        learner = make_learner(tiny_model_dir, tmp_path, is_fp16=True, cuda_graphs=False)
        cb = CudaGraphCallback("auto", min_steps=15)
        learner.add_cb(cb)
        quiet_fit(learner, 1, lr=1e-3)  # 7 steps
        assert cb.captures == 0
        quiet_fit(learner, 3, lr=1e-3)  # 21 steps
        assert cb.captures >= 1

    def test_auto_leaves_float32_fits_eager(self, fake_capture, tiny_model_dir, tmp_path):
        learner = make_learner(tiny_model_dir, tmp_path, cuda_graphs=False)
        cb = CudaGraphCallback("auto", min_steps=1)
        learner.add_cb(cb)
        quiet_fit(learner, 2, lr=1e-3)
        assert cb.captures == 0

    def test_the_fits_summary_says_which_steps_ran(self, fake_capture, tiny_model_dir, tmp_path):
        from bertlearn.callbacks import FitSummary
        learner = make_learner(tiny_model_dir, tmp_path, cuda_graphs=False)
        lines = []
        learner.remove_cb(FitSummary)
        learner.add_cbs([FitSummary(out=lines.append), CudaGraphCallback(True)])
        learner.fit(1, lr=1e-3)
        learner.remove_cb(CudaGraphCallback)
        learner.add_cb(CudaGraphCallback("auto"))
        learner.fit(1, lr=1e-3)
        assert [line.split("; ")[0] for line in lines] == [
            "bertlearn: training on cpu, float32, CUDA-graph steps (buckets 16, 32, 48, 64)",
            "bertlearn: training on cpu, float32, eager steps (CUDA graphs: 7 steps is under the 300 that pay for the "
            "captures)"]

    def test_a_failed_capture_warns_once_and_is_not_retried(self, monkeypatch, tiny_model_dir, tmp_path):
        from bertlearn import native_bf16
        if not native_bf16("cpu"):
            pytest.skip("this CPU has no bf16 hardware")
        attempts = []

        def failing(step, sample, allow_unused_input=False, pool=None):
            attempts.append(sample[0].shape)
            raise RuntimeError("operation not permitted when stream is capturing")

        monkeypatch.setattr(graphs, "_on_cuda", lambda t: True)
        monkeypatch.setattr(graphs, "make_graphed_callables", failing)
        learner = make_learner(tiny_model_dir, tmp_path, is_fp16=True, cuda_graphs=False)
        cb = CudaGraphCallback("auto", min_steps=1)
        learner.add_cb(cb)
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            quiet_fit(learner, 3, lr=1e-3)
            quiet_fit(learner, 1, lr=1e-3)
        said = [str(w.message) for w in caught if "capturing" in str(w.message)]
        assert len(attempts) == 1 and len(said) == 1  # one try in the learner's life, not one per epoch or fit
        assert said[0].endswith("RuntimeError: operation not permitted when stream is capturing); this learner "
                                "trains eagerly from here on (not retried each epoch)")
        assert cb.plan() == (False, "capturing failed earlier in this learner (RuntimeError: operation not permitted "
                                    "when stream is capturing)")

    def test_graphs_keep_across_fits_until_the_parameters_change(self, fake_capture, tiny_model_dir, tmp_path):
        learner = make_learner(tiny_model_dir, tmp_path, cuda_graphs=False)
        cb = CudaGraphCallback(True, buckets=(64,))
        learner.add_cb(cb)
        quiet_fit(learner, 1, lr=1e-3)
        quiet_fit(learner, 1, lr=1e-3)
        assert cb.captures == 1
        learner.freeze()  # other parameters need gradients: the old graph does not apply
        quiet_fit(learner, 1, lr=1e-3)
        assert cb.captures == 2

    def test_true_refuses_gradient_accumulation(self, fake_capture, tiny_model_dir, tmp_path):
        learner = make_learner(tiny_model_dir, tmp_path, cuda_graphs=False)
        learner.add_cb(CudaGraphCallback(True))
        # fastai prefixes the message with the callback and event it came from
        with pytest.raises(ModelError, match=r"\tcuda_graphs=True: gradient accumulation adds into gradients that the "
                                             r"graph's replay overwrites\. Pass cuda_graphs='auto' \(graphs where they "
                                             r"apply\) or False$"):
            quiet_fit(learner, 1, lr=1e-3, cbs=[GradientAccumulation(n_acc=32)])
        assert "forward" not in learner.model.__dict__

    def test_auto_trains_eagerly_with_gradient_accumulation(self, fake_capture, tiny_model_dir, tmp_path):
        learner = make_learner(tiny_model_dir, tmp_path, is_fp16=True, cuda_graphs=False)
        cb = CudaGraphCallback("auto", min_steps=1)
        learner.add_cb(cb)
        quiet_fit(learner, 1, lr=1e-3, cbs=[GradientAccumulation(n_acc=32)])
        assert cb.captures == 0

    def test_batch_counting_accumulation_blocks_graphs(self, fake_capture, tiny_model_dir, tmp_path):
        """Masked LM's AccumulateBatches(2) stores the batch count as n_acc (2), which the row-count check let
        through: graphed steps would overwrite the gradients it accumulates."""
        from bertlearn.callbacks import StepAccumulation
        from bertlearn.tasks.lm import AccumulateBatches
        learner = make_learner(tiny_model_dir, tmp_path, cuda_graphs=False)
        cb = CudaGraphCallback(True)
        learner.add_cb(cb)
        for acc in (AccumulateBatches(2), StepAccumulation(n_acc=2 * learner.dls.train.bs, batches=2)):
            learner.add_cb(acc)
            assert cb.blocker() == "gradient accumulation adds into gradients that the graph's replay overwrites"
            learner.remove_cb(acc)
        learner.add_cb(StepAccumulation(n_acc=learner.dls.train.bs, batches=1))  # a step every batch
        assert cb.blocker() is None

    def test_compiled_model_is_refused(self, fake_capture, tiny_model_dir, tmp_path):
        learner = make_learner(tiny_model_dir, tmp_path, cuda_graphs=False)
        learner.model.compile()  # never runs: the check comes first
        cb = CudaGraphCallback(True)
        learner.add_cb(cb)
        assert cb.blocker() == "the model is compiled (compile=True); use one or the other"

    def test_on_cpu_the_blocker_names_the_device(self, tiny_learner):
        cb = CudaGraphCallback(True)
        tiny_learner.add_cb(cb)
        assert cb.blocker() == "the model is on cpu, not a CUDA GPU"


def _cuda():
    if not torch.cuda.is_available():
        pytest.skip("needs a CUDA device")


@pytest.mark.gpu
class TestOnGPU:
    @pytest.mark.parametrize("is_fp16", [False, True])
    def test_graphed_losses_match_eager(self, tiny_model_dir, tmp_path, is_fp16):
        _cuda()
        eager = make_learner(tiny_model_dir, tmp_path / "e", device="cuda", is_fp16=is_fp16, cuda_graphs=False)
        quiet_fit(eager, 2, lr=1e-3)
        graphed = make_learner(tiny_model_dir, tmp_path / "g", device="cuda", is_fp16=is_fp16, cuda_graphs=True)
        cb = next(c for c in graphed.cbs if isinstance(c, CudaGraphCallback))
        quiet_fit(graphed, 2, lr=1e-3)
        tol = dict(atol=3e-2) if is_fp16 else dict(rtol=1e-3, atol=1e-4)
        np.testing.assert_allclose([float(x) for x in graphed.recorder.losses],
                                   [float(x) for x in eager.recorder.losses], **tol)
        np.testing.assert_allclose(graphed.recorder.values[-1], eager.recorder.values[-1], **tol)
        assert cb.captures >= 2 and "forward" not in graphed.model.__dict__
        pe = torch.cat([p.detach().flatten() for p in eager.model.parameters()])
        pg = torch.cat([p.detach().flatten() for p in graphed.model.parameters()])
        assert float((pg - pe).norm() / pe.norm()) < (2e-2 if is_fp16 else 1e-3)

    def test_learner_prediction_replays_match_eager(self, tiny_model_dir, tmp_path):
        _cuda()
        learner = make_learner(tiny_model_dir, tmp_path, device="cuda", is_fp16=True, cuda_graphs=True)
        cb = next(c for c in learner.cbs if isinstance(c, CudaGraphCallback))
        learner.remove_cb(cb)
        want = learner.predict_logits(TestInferenceGraphs.TEXTS)
        learner.add_cb(cb)
        for _ in range(2):
            torch.testing.assert_close(learner.predict_logits(TestInferenceGraphs.TEXTS), want, atol=3e-2, rtol=3e-2)
        assert cb._inference.captures >= 2

    def test_dropout_draws_new_masks_each_replay(self, tiny_model_dir, tmp_path):
        _cuda()
        learner = make_learner(tiny_model_dir, tmp_path, device="cuda", cuda_graphs=True)
        for m in learner.model.modules():
            if isinstance(m, torch.nn.Dropout):
                m.p = 0.3
        cb = next(c for c in learner.cbs if isinstance(c, CudaGraphCallback))
        learner.model.train()
        cb.learn = learner
        learner.n_epoch = 1
        cb.before_train()
        try:
            ids = torch.randint(5, 40, (16, 30), device="cuda")
            mask = torch.ones_like(ids)
            a = learner.model(ids, mask).logits
            b = learner.model(ids, mask).logits
            assert cb.captures == 1 and not torch.equal(a, b)
        finally:
            cb.after_train()
        quiet_fit(learner, 1, lr=1e-3)
        assert np.isfinite(float(learner.recorder.losses[-1]))


@pytest.fixture
def fake_forward_capture(monkeypatch):
    """Inference capture on the CPU: the 'replay' recomputes into the static output; records captured shapes."""
    shapes = []

    def capture(fn, pool=None):
        out = fn()
        shapes.append(None)
        return (lambda: out.copy_(fn())), out

    monkeypatch.setattr(graphs, "_on_cuda", lambda t: True)
    monkeypatch.setattr(graphs, "capture_forward", capture)
    return shapes


class TestInferenceGraphs:
    TEXTS = [" ".join(["good film"] * k) for k in range(1, 40)] + ["bad"] * 7  # widths across buckets; a short batch

    def test_true_on_cpu_says_why(self, trained_learner, tmp_path):
        from bertlearn import BertClassificationPredictor
        folder = trained_learner.save_model(tmp_path / "m")
        with pytest.raises(ModelError, match=r"^cuda_graphs=True needs a CUDA GPU, but the predictor runs on 'cpu'; "
                                             r"pass device='cuda', or cuda_graphs='auto' \(graphs only where they "
                                             r"apply\)$"):
            BertClassificationPredictor(folder, device="cpu", cuda_graphs=True)
        assert BertClassificationPredictor(folder, device="cpu").graphs is None  # "auto" off CUDA: nothing

    def test_replays_match_eager_and_capture_on_second_use(self, trained_learner, tmp_path, fake_forward_capture):
        from bertlearn import BertClassificationPredictor, InferenceGraphs
        pred = BertClassificationPredictor(trained_learner.save_model(tmp_path / "m"), device="cpu", bs=8,
                                           cuda_graphs=False)
        eager = pred.predict_logits(self.TEXTS)
        pred.graphs = InferenceGraphs(pred.model, pred.encoder.maxlen)  # min_uses=2, what "auto" uses
        first = pred.predict_logits(self.TEXTS)
        # a shape is captured when met for the second time (in this call or a later one), never on its first
        assert {k for k, n in pred.graphs._seen.items() if n >= 2} == set(pred.graphs._graphs)
        second = pred.predict_logits(self.TEXTS)
        captured = pred.graphs.captures
        assert captured >= 2 and len(fake_forward_capture) == captured
        torch.testing.assert_close(first, eager)
        torch.testing.assert_close(second, eager, atol=1e-5, rtol=1e-4)  # padded rows and tokens change nothing
        pred.predict_logits(self.TEXTS)
        assert pred.graphs.captures == captured  # shapes seen before replay their graph

    def test_wider_batches_than_the_graph_run_eagerly(self, trained_learner, fake_forward_capture):
        from bertlearn import InferenceGraphs
        g = InferenceGraphs(trained_learner.model, 64, min_uses=1)
        ids = torch.randint(5, 30, (4, 80))
        assert g({"input_ids": ids, "attention_mask": torch.ones_like(ids)}, rows=8) is None  # wider than maxlen
        assert g({"input_ids": ids[:, :20], "attention_mask": torch.ones_like(ids[:, :20])}, rows=2) is None
        assert g.captures == 0

    @pytest.mark.gpu
    @pytest.mark.parametrize("precision", ["fp32", "bf16"])
    def test_on_gpu_replays_match_eager(self, trained_learner, tmp_path, precision):
        _cuda()
        from bertlearn import BertClassificationPredictor
        folder = trained_learner.save_model(tmp_path / "m")
        eager = BertClassificationPredictor(folder, device="cuda", bs=8, precision=precision, cuda_graphs=False)
        graphed = BertClassificationPredictor(folder, device="cuda", bs=8, precision=precision, cuda_graphs=True)
        want = eager.predict_logits(self.TEXTS)
        for _ in range(2):  # the second call replays only
            got = graphed.predict_logits(self.TEXTS)
            torch.testing.assert_close(got, want, **({"atol": 3e-2, "rtol": 3e-2} if precision == "bf16" else
                                                      {"atol": 1e-4, "rtol": 1e-4}))
        assert graphed.graphs.captures >= 2

    @pytest.mark.gpu
    def test_on_gpu_auto_graphs_bf16_only(self, trained_learner, tmp_path):
        _cuda()
        from bertlearn import BertClassificationPredictor
        folder = trained_learner.save_model(tmp_path / "m")
        assert BertClassificationPredictor(folder, device="cuda", precision="fp32").graphs is None
        assert BertClassificationPredictor(folder, device="cuda", precision="bf16").graphs.min_uses == 2


class TestLearnerPrediction:
    TEXTS = TestInferenceGraphs.TEXTS

    def test_predict_batch_replays_graphs_kept_with_the_callback(self, tiny_model_dir, tmp_path,
                                                                fake_forward_capture):
        learner = make_learner(tiny_model_dir, tmp_path, cuda_graphs=False)
        eager = learner.predict_logits(self.TEXTS)
        cb = CudaGraphCallback(True)
        learner.add_cb(cb)
        got = learner.predict_logits(self.TEXTS)
        assert cb._inference is not None and cb._inference.captures >= 2
        torch.testing.assert_close(got, eager, atol=1e-5, rtol=1e-4)
        captured = cb._inference.captures
        learner.predict_batch(self.TEXTS)
        assert cb._inference.captures == captured  # the same graphs, weights read where they live
        loaded = load_learner(learner.export())
        assert next(c for c in loaded.cbs if isinstance(c, CudaGraphCallback))._inference is None

    def test_auto_leaves_float32_prediction_eager(self, tiny_model_dir, tmp_path, fake_forward_capture):
        learner = make_learner(tiny_model_dir, tmp_path, cuda_graphs=False)
        cb = CudaGraphCallback("auto")
        learner.add_cb(cb)
        learner.predict_logits(self.TEXTS)
        assert cb._inference is None and fake_forward_capture == []
