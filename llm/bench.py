"""Throughput benchmark of the RL loop's two halves: rollouts and the PPO update.

    python -m llm.bench --model.name tiny --rollout.prompts_per_step 16 --run.steps 5

Runs `bench.warmup` untimed steps, then `run.steps` timed ones, and reports (JSON on stdout and in
`run.out_dir/bench.json`) seconds per step for rollout and update, generated tokens per second,
and trained tokens per second. Uses the trainer's own functions, so it measures what training runs.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, field
from pathlib import Path

import torch

from . import config as C
from .models import num_params
from .train import TrainConfig, add_reference_logp, ppo_update, rollout_step, setup


@dataclass
class BenchSection:
    warmup: int = 1
    """Untimed steps before timing."""

    def validate(self, p: str = "bench") -> None:
        C._check(self.warmup >= 0, f"{p}.warmup", self.warmup, ">= 0")


@dataclass
class BenchConfig(TrainConfig):
    bench: BenchSection = field(default_factory=BenchSection)


def _sync(device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def bench(cfg: BenchConfig) -> dict:
    ctx = setup(cfg)
    dev = ctx.dist.device
    t_roll = t_upd = gen_tokens = 0.0
    for step in range(cfg.bench.warmup + cfg.run.steps):
        timed = step >= cfg.bench.warmup
        _sync(dev)
        t0 = time.perf_counter()
        exp = rollout_step(ctx, step)
        if ctx.ref_model is not None:
            add_reference_logp(ctx, exp)
        _sync(dev)
        t1 = time.perf_counter()
        ppo_update(ctx, exp)
        _sync(dev)
        t2 = time.perf_counter()
        if timed:
            t_roll, t_upd = t_roll + t1 - t0, t_upd + t2 - t1
            gen_tokens += float(exp.mask.sum())
    n = max(cfg.run.steps, 1)
    epochs = cfg.optim.ppo_epochs
    return {"device": str(dev), "params": num_params(ctx.model), "recipe": ctx.recipe.name,
            "rollout_s_per_step": t_roll / n, "update_s_per_step": t_upd / n,
            "gen_tokens_per_s": gen_tokens / max(t_roll, 1e-9),
            "train_tokens_per_s": epochs * gen_tokens / max(t_upd, 1e-9)}


def main(argv=None) -> dict:
    cfg = C.parse(BenchConfig, argv, description=__doc__)
    result = bench(cfg)
    out = Path(cfg.run.out_dir)
    C.save(cfg, out)
    C.write_atomic(out / "bench.json", json.dumps(result, indent=1))
    print(json.dumps(result))
    return result


if __name__ == "__main__":
    C.run_cli(main)
