"""Evaluation: n samples per prompt -> unbiased pass@k curve and outcome diversity (docs/methods.md §6).

    python -m llm.evaluate --model.name runs/rl/model --task.name multisolution --eval.n 64

Writes `run.out_dir/eval.json` (pass@k for k = 1, 2, 4, ..., n; distinct correct answers per prompt;
entropy of the correct-answer distribution; unparsed / time-out shares) and `eval.png`.
"""

from __future__ import annotations

import json
import os
from collections import Counter
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np
import torch

from collapse_lab.metrics import correct_entropy, distinct_correct, pass_at_k_curve, powers_of_two
from collapse_lab.objective import successes

from . import config as C
from .checkpoint import seed_everything
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

    def validate(self, p: str = "eval") -> None:
        C._check(self.n >= 1, f"{p}.n", self.n, ">= 1")
        C._check(self.split in ("all", "train", "test"), f"{p}.split", self.split, "all, train, test")
        C._check(self.max_prompts >= 0, f"{p}.max_prompts", self.max_prompts, ">= 0")
        C._check(self.prompts_per_batch >= 1, f"{p}.prompts_per_batch", self.prompts_per_batch, ">= 1")


@dataclass
class EvalConfig:
    model: C.ModelConfig = field(default_factory=C.ModelConfig)
    task: C.TaskConfig = field(default_factory=C.TaskConfig)
    rollout: C.RolloutConfig = field(default_factory=C.RolloutConfig)
    eval: EvalSection = field(default_factory=EvalSection)
    run: C.RunConfig = field(default_factory=lambda: C.RunConfig(out_dir="runs/eval"))


@torch.no_grad()
def evaluate(model, tok, task, prompts, n: int, rcfg, seed: int = 0, timeout_s: float = 2.0,
             per_batch: int = 8) -> dict:
    """Sample n responses per prompt and summarise: mean unbiased pass@k curve, diversity."""
    engine = make_engine(rcfg.engine, model, tok)
    rc = replace(rcfg, group_size=n)
    c, distinct, entropy, statuses = [], [], [], Counter()
    for start in range(0, len(prompts), per_batch):
        chunk = prompts[start:start + per_batch]
        seeds = [sample_seed(seed, -2, p.id) for p in chunk]
        exp = collect(engine, task, tok, range(len(chunk)), chunk, seeds, rc, timeout_s)
        statuses.update(exp.status)
        for j in range(len(chunk)):
            r = exp.rewards[j * n:(j + 1) * n].numpy()
            o = exp.outcome[j * n:(j + 1) * n].numpy()
            ok = successes(r)
            c.append(int(ok.sum()))
            distinct.append(distinct_correct(o, ok))
            counts = np.array(list(Counter(o[ok].tolist()).values()), dtype=np.float64)
            entropy.append(float(correct_entropy(counts)) if counts.size else 0.0)
    ks = powers_of_two(n)
    curve = pass_at_k_curve(np.full(len(c), n), np.array(c), ks)
    return {"n": n, "prompts": len(prompts), "pass_at_k": {str(k): float(v) for k, v in curve.items()},
            "distinct_correct": float(np.mean(distinct)), "correct_entropy": float(np.mean(entropy)),
            "correct_counts": c, "distinct_per_prompt": distinct, "entropy_per_prompt": entropy,
            "status": {s: statuses[s] / max(sum(statuses.values()), 1) for s in statuses}}


def plot(result: dict, path) -> None:
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
    tmp = Path(path).with_name(f".{Path(path).name}.tmp")
    fig.savefig(tmp, dpi=120, format="png")
    plt.close(fig)
    os.replace(tmp, path)  # atomic: a reader never sees half a file


def main(argv=None) -> dict:
    cfg = C.parse(EvalConfig, argv, description=__doc__)
    seed_everything(cfg.run.seed, cfg.run.threads)
    task = make_task(cfg.task)
    model, tok = load_model(cfg.model, task)
    model.to(pick_device(cfg.run.device)).eval()
    prompts = task.prompts(cfg.eval.split)
    prompts = prompts[:cfg.eval.max_prompts] if cfg.eval.max_prompts else prompts
    result = evaluate(model, tok, task, prompts, cfg.eval.n, cfg.rollout, cfg.run.seed,
                      cfg.task.timeout_s, cfg.eval.prompts_per_batch)
    out = Path(cfg.run.out_dir)
    C.save(cfg, out)
    C.write_atomic(out / "eval.json", json.dumps(result, indent=1))
    plot(result, out / "eval.png")
    print(json.dumps({k: result[k] for k in ("pass_at_k", "distinct_correct", "correct_entropy")}))
    return result


if __name__ == "__main__":
    C.run_cli(main)
