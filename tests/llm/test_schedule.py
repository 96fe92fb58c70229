"""The learning-rate schedule (llm/schedule.py): linear warmup from 0, constant / cosine / linear decay
to min_lr_ratio * lr at run.steps; the trainer applies and logs it every step, and a resumed run
continues it exactly (the rate is a pure function of the step)."""

import math
import re

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from llm import config as C
from llm.checkpoint import latest_checkpoint
from llm.logger import read_metrics
from llm.schedule import SCHEDULES, lr_at, lr_factor
from llm.train import train


def test_warmup_is_linear_from_zero_then_full():
    f = [lr_factor(s, 100, warmup=4) for s in range(6)]
    assert f == pytest.approx([0.2, 0.4, 0.6, 0.8, 1.0, 1.0])


@pytest.mark.parametrize("schedule", ["cosine", "linear"])
def test_decay_starts_at_one_and_reaches_min_at_the_end(schedule):
    assert lr_factor(10, 110, 10, schedule, 0.1) == 1.0
    assert lr_factor(110, 110, 10, schedule, 0.1) == pytest.approx(0.1)
    mid = lr_factor(60, 110, 10, schedule, 0.1)  # halfway through the decay
    assert mid == pytest.approx(0.55)  # cosine and linear meet at the midpoint: 0.1 + 0.9 / 2


def test_cosine_and_linear_values():
    assert lr_factor(25, 100, 0, "cosine", 0.0) == pytest.approx(0.5 * (1 + math.cos(math.pi / 4)))
    assert lr_factor(25, 100, 0, "linear", 0.0) == pytest.approx(0.75)
    assert lr_factor(99, 100, 0, "constant", 0.0) == 1.0


@settings(deadline=None, max_examples=200)
@given(total=st.integers(1, 500), warmup=st.integers(0, 50), schedule=st.sampled_from(SCHEDULES),
       min_ratio=st.floats(0, 1))
def test_factor_in_range_rises_in_warmup_and_never_rises_after(total, warmup, schedule, min_ratio):
    f = [lr_factor(s, total, warmup, schedule, min_ratio) for s in range(total)]
    assert all(0 < x <= 1 for x in f)
    assert all(a < b for a, b in zip(f[:warmup], f[1:warmup + 1]))  # strictly rising warmup
    after = f[warmup:]
    assert all(b <= a + 1e-12 for a, b in zip(after, after[1:]))  # decays (or stays) after it
    assert all(x >= min_ratio - 1e-12 for x in after)


@pytest.mark.parametrize("field, value, allowed", [("schedule", "step", "constant, cosine, linear"),
                                                   ("warmup_steps", -1, ">= 0"), ("min_lr_ratio", 1.5, "[0, 1]")])
def test_bad_schedule_fields_are_one_clear_error(field, value, allowed):
    with pytest.raises(ValueError, match=rf"^optim.{field} = .* is invalid; allowed: {re.escape(allowed)}"):
        C.OptimConfig(**{field: value}).validate()


def test_default_lr_suits_pretrained_models():
    assert C.OptimConfig().lr == 1e-6 and C.OptimConfig().schedule == "constant"


SCHED = {"warmup_steps": 2, "schedule": "cosine", "min_lr_ratio": 0.1}


def test_trainer_applies_and_logs_the_schedule_and_resumes_it_exactly(bandit_config, tmp_path):
    full = train(bandit_config(tmp_path / "full", steps=5, optim=SCHED))
    cfg = bandit_config(tmp_path / "full", steps=5, optim=SCHED)
    want = [lr_at(s, cfg.optim, 5) for s in range(5)]
    assert [r["lr"] for r in read_metrics(tmp_path / "full")] == want
    assert want[0] == pytest.approx(0.5 / 3) and want[2] == 0.5  # warmup, then the peak
    assert full.optimizer.param_groups[0]["lr"] == want[-1]  # the rate the last update used
    train(bandit_config(tmp_path / "cut", steps=3, optim=SCHED, run={"save_every": 1}))
    assert latest_checkpoint(tmp_path / "cut").name == "step_00000003"
    cut = train(bandit_config(tmp_path / "cut", steps=5, optim=SCHED, run={"resume": True}))
    assert [r["lr"] for r in read_metrics(tmp_path / "cut")] == want
    for a, b in zip(full.model.parameters(), cut.model.parameters()):
        assert torch.equal(a, b)
    const = train(bandit_config(tmp_path / "const", steps=5))  # the schedule changed the updates
    assert any(not torch.equal(a, b) for a, b in zip(full.model.parameters(), const.model.parameters()))
