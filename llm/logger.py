"""Run logging: JSONL metrics (the simulator's diagnostic names), optional TensorBoard and wandb;
the per-step rollout statistics (truncation rate, tokens per second) of `llm.train`. Every
wall-clock metric's name ends in `_s` (time_s, rollout_time_s, update_tokens_per_s, eval/time_s).

Lines are appended; the only rewrites (a fresh run's empty log, dropping lines after a resumed
checkpoint) go through a temporary file and os.replace, so a crash never erases the log."""

from __future__ import annotations

import json
import math
import uuid
from pathlib import Path

import torch

from .checkpoint import atomic_write_text
from .dist import all_reduce_many


class MetricsLogger:
    """Append one JSON object per step to `out_dir/metrics.jsonl` (main process only)."""

    def __init__(self, out_dir, enabled: bool = True, tensorboard: bool = False, resume: bool = False,
                 wandb: dict | None = None):
        """wandb: None, or the keyword arguments of `wandb.init` (project, name, config); the package
        is imported only then, and its mode (WANDB_MODE=offline) is left to the environment."""
        self.enabled, self.tb, self.wandb = enabled, None, None
        self.path = Path(out_dir, "metrics.jsonl")
        if not enabled:
            return
        self.path.parent.mkdir(parents=True, exist_ok=True)
        if not resume:
            atomic_write_text(self.path, "")
        if tensorboard:
            try:
                from torch.utils.tensorboard import SummaryWriter
            except ImportError as e:
                raise ImportError("run.tensorboard = true needs the tensorboard package") from e
            self.tb = SummaryWriter(str(Path(out_dir, "tb")))
        if wandb is not None:
            self.wandb = start_wandb(out_dir, resume, **wandb)

    def log(self, step: int, metrics: dict) -> None:
        if not self.enabled:
            return
        clean = {k: (None if isinstance(v, float) and not math.isfinite(v) else v) for k, v in metrics.items()}
        with self.path.open("a") as fh:
            fh.write(json.dumps({"step": step, **clean}) + "\n")
        if self.tb is not None:
            for k, v in metrics.items():
                if isinstance(v, (int, float)) and math.isfinite(v):
                    self.tb.add_scalar(k, v, step)
        if self.wandb is not None:
            self.wandb.log(clean, step=step)

    def truncate_after(self, step: int) -> None:
        """On resume, drop lines logged after the checkpoint's step (they will be redone); the log is
        rewritten atomically (temporary file + os.replace)."""
        if not self.enabled or not self.path.exists():
            return
        lines = [ln for ln in self.path.read_text().splitlines() if ln and _step_of(ln) <= step]
        atomic_write_text(self.path, "".join(ln + "\n" for ln in lines))

    def close(self) -> None:
        if self.tb is not None:
            self.tb.close()
        if self.wandb is not None:
            self.wandb.finish()


def start_wandb(out_dir, resume: bool, project: str, name: str = "", config: dict | None = None):
    """`wandb.init` for the run in `out_dir` (files under out_dir/wandb). A resumed run continues the
    same wandb run: its id is kept in out_dir/wandb_id. Without the package: one ValueError line."""
    try:
        import wandb
    except ImportError:
        raise ValueError("run.wandb = True is invalid; allowed: false, or true with the wandb package "
                         "installed (pip install wandb)") from None
    id_file = Path(out_dir, "wandb_id")
    run_id = id_file.read_text().strip() if resume and id_file.exists() else uuid.uuid4().hex[:12]
    atomic_write_text(id_file, run_id)
    return wandb.init(project=project, name=name or None, config=config, dir=str(out_dir), id=run_id,
                      resume="allow")


def truncated(tokens, mask, eos) -> torch.Tensor:
    """(B,) bool: rows that hit max_new_tokens without an EOS (the last position T - 1 is on the
    response mask and holds no EOS id). tokens, mask: (B, T), padded to max_new_tokens; eos: the ids
    that end a response (none: every full-length row is truncated)."""
    full = mask[:, -1] > 0
    for e in eos:
        full = full & (tokens[:, -1] != e)
    return full


def step_stats(exp, tok, dist, rollout_s: float, update_s: float, epochs: int) -> dict:
    """Per-step statistics summed over processes (one collective): truncation rate, and tokens per
    second of the rollout (response tokens generated / rollout seconds) and of the update (prompt +
    response tokens through forward and backward, times PPO epochs / update seconds)."""
    resp = float(exp.mask.sum())
    seen = resp + sum(len(p) for p in exp.prompt_tokens)
    n, trunc, resp, seen = all_reduce_many([len(exp), float(truncated(exp.tokens, exp.mask, eos_ids(tok)).sum()),
                                            resp, seen], dist)
    return {"truncated_frac": trunc / max(n, 1), "rollout_time_s": rollout_s, "update_time_s": update_s,
            "rollout_tokens_per_s": resp / max(rollout_s, 1e-9),
            "update_tokens_per_s": seen * epochs / max(update_s, 1e-9)}


def eos_ids(tok) -> list[int]:
    """The EOS ids of tokenizer wrapper `tok`: `tok.eos_ids` where it has a list, else [tok.eos_id]."""
    ids = getattr(tok, "eos_ids", None)
    if ids is None:
        ids = [] if getattr(tok, "eos_id", None) is None else [tok.eos_id]
    return [int(i) for i in ids]


def _step_of(line: str) -> float:
    """The step of a log line; a line cut short by a crash mid-append counts as after every step."""
    try:
        return json.loads(line)["step"]
    except (json.JSONDecodeError, KeyError, TypeError):
        return math.inf


def read_metrics(out_dir) -> list[dict]:
    path = Path(out_dir, "metrics.jsonl")
    return [json.loads(ln) for ln in path.read_text().splitlines() if ln]
