"""Evaluation every run.eval_every steps: eval/pass@k (unbiased, collapse_lab.metrics) and
eval/distinct_correct beside the training metrics, computed by llm.evaluate's code with its seeds, and
without changing the training run."""


import pytest
import torch

from collapse_lab.metrics import pass_at_k_curve
from llm.evaluate import evaluate, score_prompts, summarize
from llm.logger import read_metrics
from llm.rollout import make_engine
from llm.train import train

EVAL = {"eval_every": 2, "eval_samples": 8, "eval_k": [1, 3, 8], "eval_prompts": 6}


def _training_keys(row: dict) -> dict:
    return {k: v for k, v in row.items() if not k.startswith("eval/") and not k.endswith("_s")}


def test_eval_is_logged_every_n_steps_and_at_the_end(bandit_config, tmp_path):
    ctx = train(bandit_config(tmp_path, steps=5, run=EVAL))
    rows = read_metrics(tmp_path)
    assert [r["step"] for r in rows if "eval/pass@1" in r] == [2, 4, 5]
    last = rows[-1]
    assert {f"eval/pass@{k}" for k in (1, 3, 8)} <= last.keys() and "eval/pass@2" not in last
    assert 0 <= last["eval/pass@1"] <= last["eval/pass@3"] <= last["eval/pass@8"] <= 1
    assert last["eval/distinct_correct"] >= 0 and last["eval/time_s"] > 0
    # the final evaluation is llm.evaluate's on the final weights: same code, seeds and batches
    cfg = ctx.cfg
    prompts = ctx.task.prompts("test")[:6]
    want = evaluate(ctx.model, ctx.tok, ctx.task, prompts, 8, cfg.rollout, cfg.run.seed, cfg.task.timeout_s,
                    cfg.rollout.prompts_per_step, [1, 3, 8])
    assert last["eval/pass@3"] == want["pass_at_k"]["3"] and last["eval/distinct_correct"] == want["distinct_correct"]
    assert want["pass_at_k"] == {str(k): v for k, v in
                                 pass_at_k_curve([8] * 6, want["correct_counts"], [1, 3, 8]).items()}


def test_eval_does_not_change_training(bandit_config, tmp_path):
    a = train(bandit_config(tmp_path / "a", steps=4, run=EVAL))
    b = train(bandit_config(tmp_path / "b", steps=4))
    for p, q in zip(a.model.parameters(), b.model.parameters()):
        assert torch.equal(p, q)
    ra, rb = read_metrics(tmp_path / "a"), read_metrics(tmp_path / "b")
    assert [_training_keys(r) for r in ra] == [_training_keys(r) for r in rb]
    assert a.model.training == b.model.training  # eval mode was restored


class Counting:
    """A rollout engine wrapper that counts generate calls (prompts per call)."""

    def __init__(self, inner):
        self.inner, self.calls = inner, []

    def generate(self, prompts, *args, **kwargs):
        self.calls.append(len(prompts))
        return self.inner.generate(prompts, *args, **kwargs)


def test_sharded_scoring_equals_one_process(bandit_config, tmp_path):
    """The rows do not depend on how prompts are batched or split over processes (seed per prompt):
    the shards of evaluate_sharded, merged in prompt order, give the single-process summary."""
    ctx = train(bandit_config(tmp_path, steps=1))
    prompts = ctx.task.prompts("test")
    engine = make_engine("hf", ctx.model, ctx.tok)
    args = (ctx.task, ctx.tok)
    rc = ctx.cfg.rollout
    whole, st = score_prompts(engine, *args, prompts, 4, rc, 0, 2.0, per_batch=3)
    shards = [score_prompts(engine, *args, prompts[r::2], 4, rc, 0, 2.0, 3, n_batches=2) for r in range(2)]
    order = {p.id: i for i, p in enumerate(prompts)}
    merged = sorted(shards[0][0] + shards[1][0], key=lambda r: order[r[0]])
    assert merged == whole
    # more batches than prompts: empty batches sample a filler prompt (FSDP) whose rows are dropped
    counting = Counting(engine)
    few, _ = score_prompts(counting, *args, prompts[:2], 4, rc, 0, 2.0, 3, n_batches=4, filler=prompts[5])
    assert few == whole[:2] and counting.calls == [1, 1, 1, 1]  # 2 prompts + 2 fillers, one batch each
    assert summarize(merged, shards[0][1] + shards[1][1], 4) == summarize(whole, st, 4)


@pytest.mark.parametrize("run, allowed", [({"eval_k": [0]}, "a list of integers in 1..run.eval_samples = 8"),
                                          ({"eval_k": [16]}, "a list of integers in 1..run.eval_samples = 8"),
                                          ({"eval_samples": 0}, ">= 1"), ({"eval_every": -1}, ">= 0")])
def test_bad_eval_fields_are_one_clear_error(bandit_config, tmp_path, run, allowed):
    field = next(iter(run))
    with pytest.raises(ValueError, match=rf"^run.{field} = .* is invalid; allowed: {allowed.replace('.', '[.]')}"):
        bandit_config(tmp_path, steps=1, run=run)


def test_eval_on_a_tiny_llm_with_resume(sft_model, train_config, tmp_path):
    """A real tokenizer and model: eval rows at steps 1 and 2; a resumed run logs the same eval rows."""
    run = {"eval_every": 1, "eval_samples": 4, "eval_prompts": 4, "save_every": 1}
    train(train_config(tmp_path / "full", sft_model, "grpo", steps=2, run=run))
    train(train_config(tmp_path / "cut", sft_model, "grpo", steps=1, run=run))
    train(train_config(tmp_path / "cut", sft_model, "grpo", steps=2, run={**run, "resume": True}))
    full, cut = read_metrics(tmp_path / "full"), read_metrics(tmp_path / "cut")
    ev = lambda rows: [{k: v for k, v in r.items() if k.startswith("eval/") and k != "eval/time_s"}  # noqa: E731
                       for r in rows]
    assert ev(full) == ev(cut) and all("eval/pass@4" in r for r in ev(full))
    assert 0 < full[-1]["eval/pass@4"] <= 1  # the SFT model solves some held-out prompts


@pytest.mark.slow  # two processes under torchrun, about 20 s
def test_two_processes_evaluate_like_one(bandit_config, tmp_path):
    """Under DDP each process scores every other prompt (the same number of batches each) and the rows
    are gathered: the eval/ metrics equal a single process's."""
    import os
    import socket
    import subprocess
    import sys

    from llm import config as C
    kw = dict(rollout={"prompts_per_step": 2}, run={"eval_every": 2, "eval_samples": 8, "eval_prompts": 7})
    train(bandit_config(tmp_path / "single", steps=2, **kw))
    cfg_file = C.save(bandit_config(tmp_path / "ddp", steps=2, **kw), tmp_path)
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc-per-node", "2", "--master-addr", "127.0.0.1",
           "--master-port", str(port), "-m", "llm.train", "--config", str(cfg_file)]
    done = subprocess.run(cmd, env={**os.environ, "OMP_NUM_THREADS": "1"}, capture_output=True, text=True,
                          timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    a, b = read_metrics(tmp_path / "single")[-1], read_metrics(tmp_path / "ddp")[-1]
    ev = sorted(k for k in a if k.startswith("eval/") and k != "eval/time_s")
    assert "eval/pass@8" in ev and ev == sorted(k for k in b if k.startswith("eval/") and k != "eval/time_s")
    assert [a[k] for k in ev] == pytest.approx([b[k] for k in ev], abs=1e-12)
