"""Toy-to-scale equivalence: the LLM trainer with BanditLM and the simulator's torch backend, fed the
same samples, follow the same parameter trajectory (20 SGD steps, 1e-6) for grpo, ips_grpo, isac,
dph_js, bbg and the memory sampler (z - mu z_mem, memory trained by SGD on each batch).

The simulator owns its RNG (np.random.default_rng(seed)): DPH draws u[1, P, n_pre] once, then every
step draws u[1, P, G] and samples by inverse CDF (`sample_numpy`). The test replays that stream
against the *trainer's* current BanditLM table, builds the trainer's Experience from the samples and
calls `llm.train.ppo_update`; if the two parameter paths ever differed, the samples would diverge too.
"""

import numpy as np
import pytest
import torch

from collapse_lab.sim import SimConfig, multimode, simulate
from collapse_lab.sim.reference import sample_numpy
from llm import config as C
from llm.experience import Experience, RefStore, outcome_id
from llm.models import BanditLM, BanditTokenizer
from llm.tasks import BanditTask
from llm.train import TrainConfig, ppo_update, setup

STEPS, G, LR, SEED = 20, 8, 0.5, 3


def _trainer(problem, name, tmp_path):
    P, K = problem.rewards.shape
    cfg = TrainConfig(model=C.ModelConfig(name="bandit", dtype="float64"),
                      task=C.TaskConfig(name="bandit", num_prompts=P, num_outcomes=K),
                      rollout=C.RolloutConfig(group_size=G, prompts_per_step=P, max_new_tokens=1),
                      recipe=C.RecipeConfig(name=name, overrides={"n_pre": 2} if "dph" in name else {}),
                      optim=C.OptimConfig(optimizer="sgd", lr=LR, grad_clip=0.0),
                      run=C.RunConfig(out_dir=str(tmp_path), progress=False, device="cpu"))
    C.validate(cfg)
    model = BanditLM(P, K, torch.from_numpy(problem.logits), torch.float64)
    return setup(cfg, BanditTask(problem.rewards), model, BanditTokenizer(K))


def _sampling_logits(ctx) -> torch.Tensor:
    """The sampler's logits: the policy table, or z - mu z_mem for the memory recipe (paper A)."""
    z = ctx.model.table.detach()
    return z if ctx.memory is None else ctx.memory(z)


def _experience(ctx, problem, y, pef_ids) -> Experience:
    """Rows p-major: prompt p's G samples y[p, :], old_logp = log-prob under the sampler."""
    P, _ = problem.rewards.shape
    pb = np.repeat(np.arange(P), G)
    yb = torch.from_numpy(y.reshape(-1))
    with torch.no_grad():
        old = torch.log_softmax(_sampling_logits(ctx), -1)[torch.from_numpy(pb), yb][:, None]
    return Experience(
        prompt_tokens=[[int(p)] for p in pb], tokens=yb[:, None], mask=torch.ones(len(pb), 1,
                                                                                  dtype=torch.float64),
        old_logp=old, rewards=torch.from_numpy(problem.rewards[pb, y.reshape(-1)]),
        outcome=torch.tensor([outcome_id(str(int(k))) for k in yb]), slot=torch.from_numpy(pb),
        prompt_id=torch.from_numpy(pb), pef=torch.tensor([int(p) in pef_ids for p in pb]),
        status=["correct"] * len(pb), texts=[""] * len(pb))


@pytest.mark.parametrize("name", ["grpo", "ips_grpo", "isac", "dph_js", "bbg", "memory"])
def test_trainer_matches_simulator(name, tmp_path):
    problem = multimode(n_prompts=4, n_outcomes=6, n_correct=3, min_mass=0.2, max_mass=0.9, seed=1)
    P, K = problem.rewards.shape
    overrides = {"n_pre": 2} if "dph" in name else {}
    traj = simulate(problem, SimConfig(recipe=name, overrides=overrides, backend="torch", steps=STEPS,
                                       lr=LR, group_size=G, snapshots=True), seed=SEED)
    ctx = _trainer(problem, name, tmp_path)
    rng = np.random.default_rng(SEED)
    tp = np.arange(P)
    if ctx.refstore is not None:  # replay the simulator's DPH split: n_pre base samples per prompt
        ctx.refstore = RefStore()
        y0 = sample_numpy(problem.logits[None], tp, rng.random((1, P, 2)))[0]  # (P, n_pre)
        ref_lp = np.log(problem.base_probs())
        for p in tp:
            if (problem.rewards[p, y0[p]] >= 1).all():
                ctx.refstore.samples[int(p)] = {
                    "prompt_tokens": [[int(p)]], "tokens": torch.tensor([[int(y0[p, 0])]]),
                    "mask": torch.ones(1, 1, dtype=torch.float64),
                    "ref_logp": torch.tensor([[ref_lp[p, y0[p, 0]]]])}
        assert 0 < len(ctx.refstore.samples) < P  # both D_pef and D_exp are exercised
    for step in range(STEPS):
        if ctx.memory is not None:  # the processor's view of the memory: its table row per prompt
            ctx.memory._last = ctx.memory.memory.table.detach()
        z = _sampling_logits(ctx).numpy()[None]
        y = sample_numpy(z, tp, rng.random((1, P, G)))[0]  # (P, G)
        exp = _experience(ctx, problem, y, ctx.refstore.pef_ids if ctx.refstore else set())
        ppo_update(ctx, exp)
        if ctx.memory is not None:
            ctx.memory.update(exp.prompt_tokens, exp.tokens, exp.mask, exp.slot)
        probs = torch.softmax(ctx.model.table.detach(), -1).numpy()
        assert np.abs(probs - traj.probs[0, step + 1]).max() < 1e-6, f"{name}: step {step + 1}"
    theta = ctx.model.table.detach().numpy() - problem.logits
    assert np.abs(theta).max() > 0.05  # the parameters moved
    final = ctx.model.table.detach().numpy()
    # logits are defined up to a per-prompt constant only through softmax; SGD keeps the same one
    assert np.abs(final - traj.final_logits[0]).max() < 1e-6
