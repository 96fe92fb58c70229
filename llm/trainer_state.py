"""Checkpoint plumbing of `llm.train`: the trainer state saved beside the weights, the resume point
(with its config check, llm.checkpoint.RESUME_FREE), loading a checkpoint into a Context, and the
final model in the Hugging Face layout. """

from __future__ import annotations

import json
import shutil
import warnings
from pathlib import Path
from typing import TYPE_CHECKING

from . import config as C
from .checkpoint import checkpoint_config, config_changes, latest_checkpoint, load_checkpoint, replace_dir, save_final
from .lora import merged_model

if TYPE_CHECKING:
    from .train import Context, TrainConfig


def trainer_state(ctx: Context) -> dict:
    return {"history": ctx.history.state_dict(),
            "refstore": ctx.refstore.state_dict() if ctx.refstore is not None else None,
            "memory": ctx.memory.state_dict() if ctx.memory is not None else None,
            "precision": ctx.precision.state_dict()}


def resume_point(cfg: TrainConfig) -> Path:
    """The checkpoint run.resume continues from, after checking its config against `cfg`: a change in a
    field outside RESUME_FREE is a ValueError listing the fields, a warning with run.allow_config_change."""
    path = latest_checkpoint(cfg.run.out_dir)
    if path is None:
        raise ValueError(f"run.resume = True is invalid; allowed: an out_dir holding a checkpoint "
                         f"({cfg.run.out_dir}/checkpoints has none)")
    saved = checkpoint_config(path)
    current = json.loads(json.dumps(C.to_dict(cfg)))
    defaults = json.loads(json.dumps(C.to_dict(type(cfg)())))  # fields added since: their defaults
    changes = config_changes(saved, current, defaults=defaults) if saved is not None else {
        "config.json": ("<missing: checkpoint written before configs were stored>", "<required>")}
    if changes:
        listed = "; ".join(f"{k}: {a!r} -> {b!r}" for k, (a, b) in changes.items())
        if not cfg.run.allow_config_change:
            raise ValueError(f"run.resume = True is invalid with this config; allowed: the config of checkpoint "
                             f"{path} or run.allow_config_change = true. Changed (checkpoint -> now): {listed}")
        warnings.warn(f"run.allow_config_change = true: resuming {path} with a changed config "
                      f"(checkpoint -> now): {listed}", RuntimeWarning, stacklevel=2)
    return path


def resume(ctx: Context, path: Path) -> None:
    """Load checkpoint `path`: weights, optimiser (unless the optimiser type changed), RNG, history,
    DPH store and memory. The current config's optimiser hyperparameters (lr, weight decay) win."""
    saved = checkpoint_config(path) or {}
    same_opt = saved.get("optim", {}).get("optimizer") == ctx.cfg.optim.optimizer
    if not same_opt:
        warnings.warn(f"optim.optimizer changed to {ctx.cfg.optim.optimizer!r}: its state starts fresh",
                      RuntimeWarning, stacklevel=2)
    state = load_checkpoint(path, ctx.model, ctx.optimizer if same_opt else None)
    for group in ctx.optimizer.param_groups:  # a no-op unless run.allow_config_change let them change
        group.update({k: v for k, v in ctx.optimizer.defaults.items() if k in group})
    ctx.step = int(state["step"])
    ctx.history.load_state_dict(state["history"])
    scaler = ctx.precision if ctx.precision.scaler is not None else None
    for name, part in (("refstore", ctx.refstore), ("memory", ctx.memory), ("precision", scaler)):
        if part is not None and state.get(name) is not None:
            part.load_state_dict(state[name])
        elif part is not None:
            warnings.warn(f"checkpoint {path} has no {name} state: it starts fresh", RuntimeWarning, stacklevel=2)


def save_final_model(ctx: Context) -> None:
    """out_dir/model (Hugging Face layout) written into model.tmp, then moved into place
    (llm.checkpoint.replace_dir); a LoRA policy is saved merged (llm.lora.merged_model). Every
    process calls it (FSDP2 gathers the weights: llm.checkpoint.save_final)."""
    out, main = Path(ctx.cfg.run.out_dir), ctx.dist.is_main
    if main:
        shutil.rmtree(out / "model.tmp", ignore_errors=True)
    policy = ctx.model if ctx.lora is None else merged_model(ctx.lora) if main else None  # LoRA: no FSDP2
    save_final(policy, ctx.tok, out / "model.tmp", ctx.dist)
    if main:
        replace_dir(out / "model.tmp", out / "model")
