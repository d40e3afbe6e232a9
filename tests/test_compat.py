"""fast-bert compatibility: calls in fast-bert's positional order, and notices of what differs from fast-bert."""

from __future__ import annotations

import logging
import warnings
from pathlib import Path

import pytest

import bertlearn.compat
from bertlearn import BertLearner, BertLearnError, FastBertCompatWarning
from bertlearn.compat import FAST_BERT_LEARNER_ORDER, fast_bert_positions
from bertlearn.metrics import accuracy


class Factory:
    """A stand-in with from_pretrained_model's own order, recording what reached it by name."""

    @classmethod
    @fast_bert_positions(("is_fp16", "multi_gpu", "multi_label"), FAST_BERT_LEARNER_ORDER)
    def build(cls, databunch=None, pretrained_path=None, metrics=None, device=None, logger=None, output_dir=None,
              is_fp16=False, multi_gpu=False, multi_label=None, **kwargs):
        return dict(databunch=databunch, pretrained_path=pretrained_path, metrics=metrics, device=device,
                    logger=logger, output_dir=output_dir, is_fp16=is_fp16, multi_gpu=multi_gpu,
                    multi_label=multi_label, **kwargs)


BASE = dict(databunch="db", pretrained_path="bert", metrics=None, device=None, logger=None, output_dir=None,
            is_fp16=False, multi_gpu=False, multi_label=None)


class TestFastBertPositions:
    @pytest.mark.parametrize("args, kwargs, expected", [
        # a path third, the rest by name: fast-bert's README call (it raised "got multiple values for 'metrics'")
        (("db", "bert", "out"), dict(metrics=["m"], device="cpu"), dict(output_dir="out", metrics=["m"], device="cpu")),
        (("db", "bert", Path("out"), ["m"]), dict(device="cpu", logger="log"),
         dict(output_dir=Path("out"), metrics=["m"], device="cpu", logger="log")),
        (("db", "bert", "out", ["m"], "cpu"), dict(logger="log"),
         dict(output_dir="out", metrics=["m"], device="cpu", logger="log")),
        (("db", "bert", "out", ["m"], "cpu", "log"), {},
         dict(output_dir="out", metrics=["m"], device="cpu", logger="log")),
        (("db", "bert", "out", ["m"], "cpu", "log", "w.bin", True, False), dict(warmup_steps=7),
         dict(output_dir="out", metrics=["m"], device="cpu", logger="log", finetuned_wgts_path="w.bin",
              multi_gpu=True, is_fp16=False, warmup_steps=7)),
        # the factory's own order: metrics (a list) third
        ((("db", "bert", ["m"], "cpu")), dict(output_dir="out"), dict(metrics=["m"], device="cpu", output_dir="out")),
        (("db", "bert", ["m"], "cpu", "log", "out", True), {},
         dict(metrics=["m"], device="cpu", logger="log", output_dir="out", is_fp16=True)),
    ], ids=["3-path", "4-path", "5-path", "6-path", "9-path", "4-own", "7-own"])
    def test_a_path_third_names_every_place_by_fast_berts_order(self, args, kwargs, expected):
        assert Factory.build(*args, **kwargs) == {**BASE, **expected}

    def test_an_argument_given_by_position_and_by_name_is_named(self):
        with pytest.raises(BertLearnError) as e:
            Factory.build("db", "bert", "out", ["m"], metrics=["n"])
        assert str(e.value) == ("Factory.build: ['metrics'] given both by position (fast-bert order) and by name; "
                                "give each once")
        with pytest.raises(BertLearnError) as e:
            Factory.build("db", "bert", "out", output_dir="other")
        assert str(e.value) == ("Factory.build: ['output_dir'] given both by position (fast-bert order) and by name; "
                                "give each once")

    def test_too_many_positions_are_refused(self):
        args = ("db", "bert", "out") + (None,) * (4 + len(FAST_BERT_LEARNER_ORDER))
        with pytest.raises(BertLearnError) as e:
            Factory.build(*args)
        assert str(e.value) == (f"Factory.build takes at most {2 + 4 + len(FAST_BERT_LEARNER_ORDER)} arguments by "
                                f"position (fast-bert order), got {len(args)}; pass the others by name")

    @pytest.mark.parametrize("n", [3, 4, 5])
    def test_the_learner_takes_fast_berts_order_with_the_rest_by_name(self, tiny_databunch, tiny_model_dir, tmp_path,
                                                                      n):
        metrics = [{"name": "acc", "function": accuracy}]
        places = (tiny_databunch, str(tiny_model_dir), tmp_path / "out", metrics, "cpu", logging.getLogger("fb"))
        named = dict(zip(("output_dir", "metrics", "device", "logger"), places[2:]))
        learner = BertLearner.from_pretrained_model(*places[:n], **{k: v for k, v in named.items()
                                                                    if k not in ("output_dir", "metrics", "device",
                                                                                 "logger")[:n - 2]})
        assert learner.path == tmp_path / "out" and [m.name for m in learner.metrics] == ["acc"]
        assert learner.dls.device.type == "cpu"

    def test_the_learner_names_a_true_conflict(self, tiny_databunch, tiny_model_dir, tmp_path):
        with pytest.raises(BertLearnError, match=r"^BertLearner.from_pretrained_model: \['metrics'\] given both by "
                                                 r"position \(fast-bert order\) and by name; give each once$"):
            BertLearner.from_pretrained_model(tiny_databunch, str(tiny_model_dir), tmp_path, [], metrics=None)


def test_note_difference_is_said_once_per_case(monkeypatch):
    monkeypatch.setattr(bertlearn.compat, "_said", set())
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        assert bertlearn.compat.note_difference("Where", "case", "what differs") is True
        assert bertlearn.compat.note_difference("Where", "case", "what differs") is False
        assert bertlearn.compat.note_difference("Where", "other", "another") is True
    assert [(w.category, str(w.message)) for w in caught] == [(FastBertCompatWarning, "Where: what differs"),
                                                              (FastBertCompatWarning, "Where: another")]
