"""Evaluation: n samples per prompt -> unbiased pass@k curve and outcome diversity (docs/methods.md §6).

    python -m llm.evaluate --model.name runs/rl/model --task.name multisolution --eval.n 64

Writes `run.out_dir/eval.json` (pass@k for k = 1, 2, 4, ..., n; distinct correct answers per prompt;
entropy of the correct-answer distribution; unparsed / time-out shares) and the pass@k curve as the
figure `eval.png`, both atomically. `llm.train --run.eval_every N` runs the same code (score_prompts,
summarize) with the same seeds on the held-out prompts during training.
"""

from __future__ import annotations

import io
import json
import math
import time
from collections import Counter
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np
import torch

from collapse_lab.metrics import correct_entropy, distinct_correct, pass_at_k_curve, powers_of_two
from collapse_lab.objective import successes
from collapse_lab.runs import atomic_write

from . import config as C
from .checkpoint import seed_everything
from .cli import refuse_unused
from .dist import pick_device
from .experience import collect, sample_seed
from .models import load_model
from .rollout import make_engine
from .tasks import make_task


@dataclass
class EvalSection:
    n: int = 32
    """Samples per prompt (pass@k is reported for k = 1, 2, 4, ..., n)."""
    split: str = "test"
    """Prompts to evaluate: test, train or all."""
    max_prompts: int = 0
    """Evaluate at most this many prompts (0: all)."""
    prompts_per_batch: int = 8
    """Prompts sampled together."""
    ks: list = field(default_factory=list)
    """k values of the pass@k curve, each in 1..n ([]: 1, 2, 4, ..., n)."""

    def validate(self, p: str = "eval") -> None:
        C._check(self.n >= 1, f"{p}.n", self.n, ">= 1")
        C._check(self.split in ("all", "train", "test"), f"{p}.split", self.split, "all, train, test")
        C._check(self.max_prompts >= 0, f"{p}.max_prompts", self.max_prompts, ">= 0")
        C._check(all(type(k) is int and 1 <= k <= self.n for k in self.ks), f"{p}.ks", self.ks,
                 f"a list of integers in 1..eval.n = {self.n}")
        C._check(self.prompts_per_batch >= 1, f"{p}.prompts_per_batch", self.prompts_per_batch, ">= 1")


@dataclass
class EvalConfig:
    model: C.ModelConfig = field(default_factory=C.ModelConfig)
    task: C.TaskConfig = field(default_factory=C.TaskConfig)
    rollout: C.RolloutConfig = field(default_factory=C.RolloutConfig)
    eval: EvalSection = field(default_factory=EvalSection)
    run: C.RunConfig = field(default_factory=lambda: C.RunConfig(out_dir="runs/eval"))


def score_prompts(engine, task, tok, prompts, n: int, rcfg, seed: int = 0, timeout_s: float = 2.0,
                  per_batch: int = 8, n_batches: int = 0, filler=None) -> tuple[list[tuple], Counter]:
    """Sample n responses per prompt (seed sample_seed(seed, -2, prompt id): the same samples however
    prompts are batched or split over processes) and score them.

    Returns ([(prompt id, correct count, distinct correct, entropy of the correct answers)] in prompt
    order, Counter of statuses). n_batches > 0 splits `prompts` into exactly that many batches, so
    every process of a sharded evaluation runs the same number of `generate` calls (FSDP needs every
    process in each): an empty batch samples the prompt `filler` and drops its rows (skipped if None).
    """
    rc = replace(rcfg, group_size=n)
    k = n_batches or max(math.ceil(len(prompts) / per_batch), 1)
    bounds = np.linspace(0, len(prompts), k + 1).round().astype(int)  # k near-equal contiguous batches
    rows, statuses = [], Counter()
    for a, b in zip(bounds[:-1], bounds[1:]):
        chunk, keep = prompts[a:b], a < b
        if not keep and filler is None:
            continue
        chunk = chunk if keep else [filler]
        seeds = [sample_seed(seed, -2, p.id) for p in chunk]
        exp = collect(engine, task, tok, range(len(chunk)), chunk, seeds, rc, timeout_s)
        if not keep:  # a filler batch: sampled for the collective's sake, not counted
            continue
        statuses.update(exp.status)
        for j, p in enumerate(chunk):
            o = exp.outcome[j * n:(j + 1) * n].numpy()
            ok = successes(exp.rewards[j * n:(j + 1) * n].numpy())
            counts = np.array(list(Counter(o[ok].tolist()).values()), dtype=np.float64)
            rows.append((p.id, int(ok.sum()), distinct_correct(o, ok),
                         float(correct_entropy(counts)) if counts.size else 0.0))
    return rows, statuses


def summarize(rows: list[tuple], statuses: Counter, n: int, ks=None) -> dict:
    """The evaluation summary of score_prompts' rows: mean unbiased pass@k (collapse_lab.metrics;
    ks default 1, 2, 4, ..., n), mean distinct correct answers and correct-answer entropy per prompt,
    status shares."""
    c = [r[1] for r in rows]
    distinct, entropy = [r[2] for r in rows], [r[3] for r in rows]
    curve = pass_at_k_curve(np.full(len(c), n), np.array(c, dtype=np.int64), ks or powers_of_two(n))
    return {"n": n, "prompts": len(rows), "pass_at_k": {str(k): float(v) for k, v in curve.items()},
            "distinct_correct": float(np.mean(distinct)), "correct_entropy": float(np.mean(entropy)),
            "correct_counts": c, "distinct_per_prompt": distinct, "entropy_per_prompt": entropy,
            "status": {s: statuses[s] / max(sum(statuses.values()), 1) for s in statuses}}


@torch.no_grad()
def evaluate(model, tok, task, prompts, n: int, rcfg, seed: int = 0, timeout_s: float = 2.0,
             per_batch: int = 8, ks=None, engine=None) -> dict:
    """Sample n responses per prompt and summarise: mean unbiased pass@k curve, diversity.
    `engine`: a rollout engine to reuse (default: a new rcfg.engine on `model`)."""
    engine = engine or make_engine(rcfg.engine, model, tok, rcfg)
    return summarize(*score_prompts(engine, task, tok, prompts, n, rcfg, seed, timeout_s, per_batch), n, ks)


@torch.no_grad()
def evaluate_sharded(engine, task, tok, prompts, n: int, rcfg, seed: int, timeout_s: float, per_batch: int,
                     ks, dist) -> dict:
    """`evaluate` over all processes: process r scores prompts r, r + world, ...; the same number of
    batches everywhere; the rows are gathered, so every process returns the single-process result."""
    mine = prompts[dist.rank::dist.world]
    n_batches = max(math.ceil(math.ceil(len(prompts) / dist.world) / per_batch), 1)
    rows, statuses = score_prompts(engine, task, tok, mine, n, rcfg, seed, timeout_s, per_batch, n_batches,
                                   filler=prompts[0] if prompts else None)
    if dist.world > 1:
        parts = [None] * dist.world
        torch.distributed.all_gather_object(parts, (rows, statuses))
        order = {p.id: i for i, p in enumerate(prompts)}
        rows = sorted((r for part in parts for r in part[0]), key=lambda r: order[r[0]])
        statuses = sum((part[1] for part in parts), Counter())
    return summarize(rows, statuses, n, ks)


def periodic_eval(ctx) -> dict:
    """llm.train's evaluation every run.eval_every steps: the policy (no memory sampler) on the held-out
    prompts (at most run.eval_prompts), run.eval_samples samples each, the seeds of llm.evaluate with
    run.seed, rollout.prompts_per_step prompts per batch; in eval mode, restored after. Returns the eval/
    metrics and eval/time_s; the training RNG is not touched (per-request sampling generators)."""
    rc, t0, was_training = ctx.cfg.run, time.perf_counter(), ctx.model.training
    rc_batch = ctx.cfg.rollout.prompts_per_step
    if hasattr(ctx.engine, "sync_weights"):  # an engine with its own weights (vllm): this step's update
        ctx.engine.sync_weights(ctx.model)
    prompts = ctx.task.prompts("test")
    prompts = prompts[:rc.eval_prompts] if rc.eval_prompts else prompts
    ctx.model.eval()
    try:
        with ctx.precision.autocast():  # the same compute precision as the training rollouts
            result = evaluate_sharded(ctx.engine, ctx.task, ctx.tok, prompts, rc.eval_samples,
                                      ctx.cfg.rollout, rc.seed, ctx.cfg.task.timeout_s, rc_batch,
                                      rc.eval_k or None, ctx.dist)
    finally:
        ctx.model.train(was_training)
    return {**eval_metrics(result), "eval/time_s": time.perf_counter() - t0}


def eval_metrics(result: dict) -> dict:
    """The training log's eval/ keys of an evaluation summary."""
    out = {f"eval/pass@{k}": v for k, v in result["pass_at_k"].items()}
    out.update({f"eval/{k}": float(result[k]) for k in ("distinct_correct", "correct_entropy")})
    return {**out, **{f"eval/status/{k}": v for k, v in result["status"].items()}}


def plot(result: dict, path) -> None:
    """The pass@k curve of `result` as a PNG at `path`, written atomically (collapse_lab.runs.atomic_write)."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    ks = [int(k) for k in result["pass_at_k"]]
    fig, ax = plt.subplots(figsize=(4.5, 3.2))
    ax.plot(ks, list(result["pass_at_k"].values()), "o-")
    ax.set(xscale="log", xlabel="k", ylabel="pass@k", ylim=(0, 1.02),
           title=f"distinct correct / prompt = {result['distinct_correct']:.2f}")
    ax.set_xticks(ks, [str(k) for k in ks])
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, dpi=120, format="png")
    plt.close(fig)
    atomic_write(path, buf.getvalue())  # a reader never sees half a file


# ModelConfig / RunConfig fields llm.evaluate does not use: a non-default value is an error, not ignored
UNUSED = ("model.autocast", "model.gradient_checkpointing", "model.lora_rank", "run.steps", "run.resume",
          "run.save_every", "run.eval_every", "run.wandb", "run.tensorboard")


def main(argv=None) -> dict:
    cfg = C.parse(EvalConfig, argv, description=__doc__)
    refuse_unused(cfg, UNUSED, "llm.evaluate")
    seed_everything(cfg.run.seed, cfg.run.threads)
    task = make_task(cfg.task)
    model, tok = load_model(cfg.model, task)
    model.to(pick_device(cfg.run.device)).eval()
    prompts = task.prompts(cfg.eval.split)
    prompts = prompts[:cfg.eval.max_prompts] if cfg.eval.max_prompts else prompts
    result = evaluate(model, tok, task, prompts, cfg.eval.n, cfg.rollout, cfg.run.seed,
                      cfg.task.timeout_s, cfg.eval.prompts_per_batch, cfg.eval.ks or None)
    out = Path(cfg.run.out_dir)
    C.save(cfg, out)
    C.write_atomic(out / "eval.json", json.dumps(result, indent=1))
    plot(result, out / "eval.png")
    print(json.dumps({k: result[k] for k in ("pass_at_k", "distinct_correct", "correct_entropy")}))
    return result


if __name__ == "__main__":
    C.run_cli(main)
