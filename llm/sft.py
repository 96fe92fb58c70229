"""Supervised fine-tuning of a diverse base model for a synthetic task.

    python -m llm.sft --task.name multisolution --model.name tiny --run.steps 600 --run.out_dir runs/sft

Each step draws `sft.batch_size` prompts uniformly and, for each, one target from
`task.answers(prompt, 1, rng, wrong_share)`: a correct answer drawn uniformly from all correct ones,
or with probability `wrong_share` a wrong one. The base model therefore spreads its mass over many
correct modes (and keeps some errors), so RL has modes to collapse and room to improve.
Loss: token-mean cross-entropy on the response tokens and EOS. The model is written to
`run.out_dir/model` (safetensors + tokenizer), loadable with `--model.name run.out_dir/model`.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import torch

from . import config as C
from .checkpoint import seed_everything
from .cli import refuse_unused
from .dist import pick_device
from .guards import parameter_problem
from .logger import MetricsLogger
from .models import load_model, save_model
from .progress import Progress
from .rollout import encode_prompt, sequence_logp
from .tasks import TASKS, make_task


@dataclass
class SFTSection:
    batch_size: int = 64
    """Sequences per step."""
    lr: float = 3e-3
    """AdamW learning rate."""
    wrong_share: float = 0.3
    """Probability that a target is a wrong answer."""
    split: str = "all"
    """Prompts to train on: all, train or test."""

    def validate(self, p: str = "sft") -> None:
        C._check(self.batch_size >= 1, f"{p}.batch_size", self.batch_size, ">= 1")
        C._check(self.lr > 0, f"{p}.lr", self.lr, "> 0")
        C._check(0 <= self.wrong_share <= 1, f"{p}.wrong_share", self.wrong_share, "[0, 1]")
        C._check(self.split in ("all", "train", "test"), f"{p}.split", self.split, "all, train, test")


@dataclass
class SFTConfig:
    model: C.ModelConfig = field(default_factory=C.ModelConfig)
    task: C.TaskConfig = field(default_factory=C.TaskConfig)
    sft: SFTSection = field(default_factory=SFTSection)
    run: C.RunConfig = field(default_factory=lambda: C.RunConfig(out_dir="runs/sft", steps=600))


def make_batch(task, tok, prompts, n: int, rng, wrong_share: float):
    """(prompt token lists, targets (n, T), mask (n, T)) with EOS appended to every target."""
    chosen = [prompts[int(i)] for i in rng.integers(0, len(prompts), n)]
    targets = [tok.encode(task.answers(p, 1, rng, wrong_share)[0]) for p in chosen]
    if tok.eos_id is not None:
        targets = [t + [tok.eos_id] for t in targets]
    T = max(len(t) for t in targets)
    ids = torch.full((n, T), tok.pad_id, dtype=torch.long)
    mask = torch.zeros(n, T)
    for i, t in enumerate(targets):
        ids[i, :len(t)], mask[i, :len(t)] = torch.tensor(t), 1.0
    return [encode_prompt(tok, p.text) for p in chosen], ids, mask


# ModelConfig / RunConfig fields llm.sft does not use: a non-default value is an error, not ignored
UNUSED = ("model.autocast", "model.gradient_checkpointing", "model.lora_rank", "run.resume",
          "run.save_every", "run.eval_every", "run.wandb", "run.tensorboard")


def sft(cfg: SFTConfig):
    """Train and save; returns (model, tok)."""
    refuse_unused(cfg, UNUSED, "llm.sft")
    seed_everything(cfg.run.seed, cfg.run.threads)
    device = pick_device(cfg.run.device)
    if cfg.task.name in TASKS and not TASKS[cfg.task.name].supports_sft:  # checked before building it
        sft_tasks = [n for n, cls in TASKS.items() if cls.supports_sft]
        raise ValueError(f"task.name = {cfg.task.name!r} has no answer generator; allowed: "
                         f"a task with supports_sft ({', '.join(sft_tasks)})")
    task = make_task(cfg.task)
    model, tok = load_model(cfg.model, task)
    model.to(device)
    C.save(cfg, cfg.run.out_dir)
    prompts = task.prompts(cfg.sft.split)
    opt = torch.optim.AdamW(model.parameters(), lr=cfg.sft.lr)
    rng = np.random.default_rng(cfg.run.seed)
    log = MetricsLogger(cfg.run.out_dir)
    bar = Progress(cfg.run.steps, 0, "sft", cfg.run.progress, cfg.run.progress_every, cfg.run.progress_interval_s,
                   keys=("sft_loss",))  # tqdm on a TTY, else plain lines
    dtype = next(model.parameters()).dtype
    for step in range(cfg.run.steps):
        ptoks, ids, mask = make_batch(task, tok, prompts, cfg.sft.batch_size, rng, cfg.sft.wrong_share)
        logp, _ = sequence_logp(model, ptoks, ids.to(device), mask.to(device, dtype), tok.pad_id)
        loss = -logp.sum() / mask.sum()
        opt.zero_grad(set_to_none=True)
        loss.backward()
        try:
            opt.step()
            problem = parameter_problem(model.named_parameters())  # one fused pass, one sync per step
        except RuntimeError as e:  # torch: "value cannot be converted to type float without overflow"
            if "overflow" not in str(e):
                raise
            problem = "parameters overflowed in the optimizer step"
        if problem:
            raise ValueError(f"sft.lr = {cfg.sft.lr!r} is invalid; allowed: a smaller learning rate "
                             f"(optimizer step {step + 1}: {problem}; no model was saved)")
        metrics = {"sft_loss": float(loss.detach())}
        log.log(step + 1, metrics)
        bar.update(step + 1, metrics)
    bar.close()
    save_model(model, tok, f"{cfg.run.out_dir}/model")
    log.close()
    return model, tok


def main(argv=None) -> None:
    sft(C.parse(SFTConfig, argv, description=__doc__))


if __name__ == "__main__":
    C.run_cli(main)
