"""fast-bert's warm-up schedules as a fastai callback, on a plain fastai Learner."""

from __future__ import annotations

import re
import warnings
from functools import partial

import pytest
import torch
from fastai.data.core import DataLoaders
from fastai.learner import Learner
from fastai.optimizer import Adam
from torch.utils.data import TensorDataset

from bertlearn.schedules import WarmupSchedule


def plain_learner(opt_func):
    x = torch.randn(32, 3)
    ds = TensorDataset(x, x.sum(1, keepdim=True))
    dls = DataLoaders.from_dsets(ds, ds, bs=8, device="cpu")
    return Learner(dls, torch.nn.Linear(3, 1), loss_func=torch.nn.MSELoss(), opt_func=opt_func)


def fit_warmup(learn):
    with learn.no_bar(), learn.no_logging():
        learn.fit(1, 1e-2, cbs=WarmupSchedule("warmup_linear", 0.25))


def test_a_plain_learner_starts_from_its_opt_funcs_momentum():
    learn = plain_learner(partial(Adam, mom=0.8))
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        fit_warmup(learn)
    assert [h["mom"] for h in learn.opt.hypers] == [0.8]


def test_an_unknown_starting_momentum_is_said():
    # a wrapper whose signature hides Adam's `mom`: 0.9 is a guess, and a guess is said
    learn = plain_learner(lambda params, lr: Adam(params, lr, mom=0.8))
    message = ("the warm-up schedule starts the momentum at 0.9 (AdamW's beta1): opt_func=<function "
               "test_an_unknown_starting_momentum_is_said.<locals>.<lambda> at 0x")
    with pytest.warns(UserWarning, match="^" + re.escape(message)) as record:
        fit_warmup(learn)
    assert str(record[0].message).endswith(" has no `mom` default to read the optimizer's own from; give it one "
                                           "(e.g. functools.partial(Adam, mom=0.95)) or build the learner with "
                                           "bertlearn, whose optimizers record it")
    assert [h["mom"] for h in learn.opt.hypers] == [0.9]


def test_hard_restarts_end_at_zero_as_transformers():
    # progress % 1.0 restarted the cosine at its peak at the fit's end
    from transformers import get_cosine_with_hard_restarts_schedule_with_warmup

    from bertlearn.schedules import warmup_schedule
    opt = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=1.0)
    sched, expected = get_cosine_with_hard_restarts_schedule_with_warmup(opt, 2, 10), []
    for _ in range(11):
        expected.append(opt.param_groups[0]["lr"])
        opt.step()
        sched.step()
    rate = warmup_schedule(1.0, "warmup_cosine_hard_restarts", 0.2)
    assert [rate(k / 10) for k in range(11)] == pytest.approx(expected, abs=1e-12)
    assert rate(1.0) == 0.0
