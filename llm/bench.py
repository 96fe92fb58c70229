"""Throughput benchmarks of the RL trainer.

    python -m llm.bench --model.name tiny --rollout.prompts_per_step 16 --run.steps 5
    python -m llm.bench --bench.mode trl --bench.repeats 5    # needs: pip install "collapse-lab[bench]"

bench.mode = "split" (default): `bench.warmup` untimed steps, then `run.steps` timed ones; reports
(JSON on stdout and in `run.out_dir/bench.json`) seconds per step for rollout and update, generated
tokens per second, and trained tokens per second. Uses the trainer's own functions, so it measures
what training runs.

bench.mode = "trl": `llm.train` against TRL's GRPOTrainer on one fixed configuration (TRL's CPU
baseline, see llm/bench_trl.py), `bench.repeats` interleaved pairs of fresh runs; prints both median
step times and their ratio, and writes `run.out_dir/bench_trl.json`. Only run.out_dir and
run.threads (0: torch's default, the same for both trainers) may be set in this mode.
"""

from __future__ import annotations

import json
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import torch

from . import config as C
from .models import num_params
from .train import TrainConfig, add_reference_logp, ppo_update, rollout_step, setup

MODES = ("split", "trl")


@dataclass
class BenchSection:
    mode: str = "split"
    """split: rollout and update times of this config; trl: llm.train vs TRL's GRPOTrainer, interleaved."""
    warmup: int = 1
    """Untimed steps before timing (mode split)."""
    repeats: int = 3
    """Interleaved pairs of runs, TRL and llm.train (mode trl)."""

    def validate(self, p: str = "bench") -> None:
        C._check(self.mode in MODES, f"{p}.mode", self.mode, ", ".join(MODES))
        C._check(self.warmup >= 0, f"{p}.warmup", self.warmup, ">= 0")
        C._check(self.repeats >= 1, f"{p}.repeats", self.repeats, ">= 1")


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


def check_trl_mode(cfg: BenchConfig) -> None:
    """Mode trl runs one fixed configuration: a training field set away from its default is an error
    naming it (run.out_dir and run.threads excepted)."""
    default = C.to_dict(BenchConfig(bench=cfg.bench))
    now = C.to_dict(cfg)
    free = {("run", "out_dir"), ("run", "threads")}
    for sec, fields in now.items():
        for k, v in fields.items():
            if sec != "bench" and (sec, k) not in free and v != default[sec][k]:
                raise ValueError(f"{sec}.{k} = {v!r} is invalid with bench.mode = 'trl'; allowed: its default "
                                 f"{default[sec][k]!r} (the TRL comparison runs the fixed baseline configuration)")


def bench_trl(cfg: BenchConfig) -> dict:
    """The interleaved TRL comparison (llm.bench_trl.compare), printed as three lines."""
    import importlib.util

    from . import bench_trl
    check_trl_mode(cfg)
    if importlib.util.find_spec("trl") is None:
        print(bench_trl.INSTALL_HINT, file=sys.stderr)
        raise SystemExit(2)
    result = bench_trl.compare(cfg.bench.repeats, threads=cfg.run.threads)
    med = result["run_medians"]
    for name, key in (("TRL GRPOTrainer", "trl"), ("llm.train", "llm")):
        runs = ", ".join(f"{x * 1e3:.1f}" for x in med[key])
        print(f"{name:16s} median step {result[key + '_median_step_s'] * 1e3:.1f} ms (run medians: {runs} ms)")
    pr = result["pair_ratios"]
    print(f"ratio llm.train / TRL = {result['ratio']:.3f} over {result['repeats']} interleaved pairs "
          f"(pair ratios {min(pr):.3f} .. {max(pr):.3f}, threads {result['threads']})")
    return result


def main(argv=None) -> dict:
    cfg = C.parse(BenchConfig, argv, description=__doc__)
    if cfg.bench.mode == "trl":
        result = bench_trl(cfg)
        out = Path(cfg.run.out_dir)
        out.mkdir(parents=True, exist_ok=True)
        C.write_atomic(out / "bench_trl.json", json.dumps(result, indent=1))
        return result
    result = bench(cfg)
    out = Path(cfg.run.out_dir)
    C.save(cfg, out)
    C.write_atomic(out / "bench.json", json.dumps(result, indent=1))
    print(json.dumps(result))
    return result


if __name__ == "__main__":
    C.run_cli(main)
