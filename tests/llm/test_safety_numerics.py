"""Numerical safety of the trainer: a learning rate that breaks the parameters stops the run at that
step with an error naming optim.lr (nothing non-finite saved); the fused finiteness checks agree with a
per-tensor reference; every reward status is counted per step."""

import math
import re

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from llm.checkpoint import latest_checkpoint
from llm.guards import check_outputs, max_abs, overflow_limit
from llm.logger import read_metrics
from llm.tasks.base import STATUSES, Score
from llm.train import setup, status_counts, train


@pytest.mark.parametrize("optimizer", ["sgd", "adamw"])
@pytest.mark.parametrize("dtype,lr", [("float32", 1e30), ("float64", 1e200)])
def test_huge_lr_stops_at_step_one_naming_optim_lr(bandit_config, tmp_path, optimizer, dtype, lr):
    """|update| ~ lr * |grad| (sgd) or lr (adamw) exceeds sqrt(finfo.max) of the parameter dtype."""
    cfg = bandit_config(tmp_path, steps=3, model={"dtype": dtype}, optim={"optimizer": optimizer, "lr": lr},
                        run={"save_every": 1})
    want = re.escape(f"optim.lr = {lr!r} is invalid; allowed: a smaller rate (step 1: after {optimizer}.step() "
                     "parameter table has max |x| = ")
    with pytest.raises(ValueError, match=want):
        train(cfg)
    assert latest_checkpoint(tmp_path) is None and not (tmp_path / "model").exists()
    assert read_metrics(tmp_path) == []


def test_nonfinite_parameter_at_a_later_step_is_caught_there(bandit_config, tmp_path, monkeypatch):
    """The update of step 3 turns a parameter into NaN: the error names step 3; checkpoints 1 and 2
    (save_every = 1) are finite and no later one exists."""
    real, calls = torch.optim.SGD.step, []

    def poisoned(self, *a, **k):
        out = real(self, *a, **k)
        calls.append(1)
        if len(calls) == 3:
            with torch.no_grad():
                self.param_groups[0]["params"][0][0, 0] = float("nan")
        return out

    monkeypatch.setattr(torch.optim.SGD, "step", poisoned)
    with pytest.raises(ValueError, match=r"optim.lr = 0.5 is invalid.*step 3: after sgd.step\(\) parameter table "
                                         r"has max \|x\| = non-finite"):
        train(bandit_config(tmp_path, steps=4, run={"save_every": 1}))
    assert latest_checkpoint(tmp_path).name == "step_00000002"
    assert [r["step"] for r in read_metrics(tmp_path)] == [1, 2]


def test_overflow_limit_golden():
    # finfo.max = 2^(emax+1) (1 - 2^-(mantissa+1)): float32 2^128 (1 - 2^-24), float64 2^1024 (1 - 2^-53)
    assert overflow_limit(torch.float32) == pytest.approx(2.0**64 * math.sqrt(1 - 2.0**-24), rel=1e-15)
    assert overflow_limit(torch.float32) == pytest.approx(1.844674352395373e19, rel=1e-15)
    assert overflow_limit(torch.float64) == pytest.approx(2.0**512 * math.sqrt(1 - 2.0**-53), rel=1e-15)
    for half in (torch.float16, torch.bfloat16):  # half models run norms / softmax in float32
        assert overflow_limit(half) == overflow_limit(torch.float32)


DTYPES = [torch.float32, torch.float64, torch.bfloat16, torch.float16]


@settings(deadline=None, max_examples=60)
@given(st.lists(st.tuples(st.integers(1, 40), st.sampled_from(range(4)), st.sampled_from([None, "nan", "inf", "-inf"]),
                          st.floats(-1e4, 1e4)), min_size=1, max_size=6), st.integers(0, 2**31 - 1))
def test_fused_max_abs_agrees_with_per_tensor_reference(specs, seed):
    g = torch.Generator().manual_seed(seed)
    tensors = []
    for n, d, special, scale in specs:
        t = (torch.randn(n, generator=g, dtype=torch.float64) * scale).to(DTYPES[d])
        if special is not None:
            t[int(torch.randint(n, (1,), generator=g))] = float(special)
        tensors.append(t)
    fused = max_abs(tensors)
    ref = [math.nan if bool(t.isnan().any()) else float(t.double().abs().max()) for t in tensors]
    for f, r, t in zip(fused.tolist(), ref, tensors):
        assert (math.isnan(f) and math.isnan(r)) or f == r
        assert math.isfinite(f) == bool(t.isfinite().all())  # the property the checks rely on


def test_nonfinite_rollout_logp_names_lr_after_an_update_else_the_model(bandit_config, tmp_path):
    ctx = setup(bandit_config(tmp_path))
    from llm.train import rollout_step
    exp = rollout_step(ctx, 0)
    check_outputs(ctx, exp, 0)  # finite: passes
    exp.old_logp[0, 0] = float("nan")
    with pytest.raises(ValueError, match=r"model.name = 'bandit' is invalid"):
        check_outputs(ctx, exp, 0)
    ctx.step = 2
    with pytest.raises(ValueError, match=r"optim.lr = 0.5 is invalid; allowed: a smaller rate \(step 3: .*after "
                                         r"step 2's update"):
        check_outputs(ctx, exp, 0)


class StatusTask:
    """Wraps a task: rows are scored by the task, then every 3rd response of a prompt times out, every
    5th is unparsed (deterministic in the response text and prompt)."""

    def __init__(self, task):
        self.task, self.name, self.rewards, self.n = task, task.name, task.rewards, 0

    def prompts(self, split):
        return self.task.prompts(split)

    def check(self, prompt, response):
        self.n += 1
        if self.n % 3 == 0:
            return Score(0.0, None, "timeout")
        if self.n % 5 == 0:
            return Score(0.0, None, "unparsed")
        return self.task.check(prompt, response)


def test_every_status_is_counted_per_step(bandit_config, tmp_path):
    from llm.tasks import make_task
    cfg = bandit_config(tmp_path, steps=3)
    task = StatusTask(make_task(cfg.task))
    train(cfg, task=task)
    rows = read_metrics(tmp_path)
    n = cfg.rollout.prompts_per_step * cfg.rollout.group_size
    for i, r in enumerate(rows):
        counts = [r[f"status/{s}"] for s in STATUSES]
        assert sum(counts) == n
        calls = np.arange(i * n + 1, (i + 1) * n + 1)  # this step's check() call numbers
        assert r["status/timeout"] == (calls % 3 == 0).sum()
        assert r["status/unparsed"] == ((calls % 5 == 0) & (calls % 3 != 0)).sum()
        assert r["status/correct"] == r["pass@1"] * n
        assert r["unparsed_frac"] == r["status/unparsed"] / n and r["timeout_frac"] == r["status/timeout"] / n


def test_unknown_status_is_an_error():
    assert status_counts(["correct", "wrong", "correct"])[:2] == [2, 1]
    with pytest.raises(ValueError, match="reward status = 'weird' is invalid; allowed: " + ", ".join(STATUSES)):
        status_counts(["correct", "weird"])
