"""The `Batch` every recipe consumes, and the per-prompt history that gating recipes read.

Shapes: B samples (responses), T response tokens (T = 1 for a bandit). Per-token tensors may be
given as [B] and are read as [B, 1]. The simulator and the LLM trainer fill the same fields.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from torch import Tensor

from .policy import as_tokens

__all__ = ["Batch", "RefSamples", "PromptHistory"]


@dataclass
class RefSamples:
    """Samples drawn from the reference (initial) policy, for DPH divergences (METHODS §3).

    logp: current policy's log-probs of the stored tokens [R, T] (with grad);
    ref_logp: stored reference log-probs [R, T]; mask: [R, T] or None.
    R = 0 (a batch with no D_pef prompt) gives a zero divergence term; `Batch.ref_samples=None`
    with a DPH recipe is an error (the caller forgot them).
    """

    logp: Tensor
    ref_logp: Tensor
    mask: Tensor | None = None

    def __post_init__(self):
        self.logp = as_tokens(self.logp, "ref_samples.logp")
        self.ref_logp = as_tokens(self.ref_logp, "ref_samples.ref_logp", self.logp)
        self.mask = as_tokens(self.mask, "ref_samples.mask", self.logp)


@dataclass
class Batch:
    """One optimisation batch of B responses.

    logp: current policy log-probs of the sampled tokens [B, T] (requires grad).
    rewards: verifier rewards [B] (float). group: group ids [B] (int; one group = one prompt's G samples).
    old_logp: behaviour-policy log-probs [B, T]; None = on-policy (logp.detach()).
    mask: response mask [B, T]; None = all ones.
    outcome: canonical outcome ids [B] (int; equal answers share an id) — IPS needs it.
    ref_logp: reference log-probs of the sampled tokens [B, T] — reverse-KL recipes need it.
    entropy: per-token policy entropy [B, T] — the entropy bonus needs it.
    ref_samples: RefSamples from the initial policy — DPH recipes need them.
    prior_success, prior_trials: the sample's prompt's cumulative successes / rollouts before this
        batch [B] — history-counted gating (zero_success, bbg with counts="history") needs them.
    pef: [B] bool, True for samples of prompts in DPH's D_pef (they get only the divergence term).
    success_threshold: a sample is a success when reward >= this (default 1.0, binary rewards).
    max_len: T_max for the seq-mean-token-sum-norm aggregation (default T).
    """

    logp: Tensor
    rewards: Tensor
    group: Tensor
    old_logp: Tensor | None = None
    mask: Tensor | None = None
    outcome: Tensor | None = None
    ref_logp: Tensor | None = None
    entropy: Tensor | None = None
    ref_samples: RefSamples | None = None
    prior_success: Tensor | None = None
    prior_trials: Tensor | None = None
    pef: Tensor | None = None
    success_threshold: float = 1.0
    max_len: int | None = None

    def __post_init__(self):
        self.logp = as_tokens(self.logp, "logp")
        B = self.logp.shape[0]
        for name in ("old_logp", "mask", "ref_logp", "entropy"):
            setattr(self, name, as_tokens(getattr(self, name), name, self.logp))
        for name in ("rewards", "group", "outcome", "prior_success", "prior_trials", "pef"):
            x = getattr(self, name)
            if x is not None and tuple(x.shape) != (B,):
                raise ValueError(f"Batch.{name} must have shape ({B},) to match logp {tuple(self.logp.shape)}, "
                                 f"got {tuple(x.shape)}")
        if not self.rewards.dtype.is_floating_point:
            raise ValueError(f"Batch.rewards must be float, got {self.rewards.dtype}")

    @property
    def success(self) -> Tensor:
        """bool [B]: reward >= success_threshold."""
        return self.rewards >= self.success_threshold

    @property
    def token_mask(self) -> Tensor:
        """Response mask [B, T] in logp's dtype (ones when none was given)."""
        return torch.ones_like(self.logp) if self.mask is None else self.mask.to(self.logp.dtype)


class PromptHistory:
    """Cumulative per-prompt success and rollout counts (papers C: zero-success gating and BBG).

    `lookup(prompt_ids)` gives the counts *before* the current batch; `update(prompt_ids, success)`
    adds the batch after the loss is computed. Prompt ids are non-negative ints; storage grows.
    """

    def __init__(self, n_prompts: int = 0):
        self.success = np.zeros(n_prompts, dtype=np.int64)
        self.trials = np.zeros(n_prompts, dtype=np.int64)

    def _grow(self, max_id: int) -> None:
        if max_id >= self.success.size:
            extra = max_id + 1 - self.success.size
            self.success = np.concatenate([self.success, np.zeros(extra, np.int64)])
            self.trials = np.concatenate([self.trials, np.zeros(extra, np.int64)])

    def lookup(self, prompt_ids) -> tuple[Tensor, Tensor]:
        """(prior_success[B], prior_trials[B]) as float64 tensors."""
        ids = np.asarray(prompt_ids, dtype=np.int64)
        if ids.size and ids.min() < 0:
            raise ValueError("prompt ids must be >= 0")
        self._grow(int(ids.max()) if ids.size else -1)
        return torch.from_numpy(self.success[ids].astype(np.float64)), torch.from_numpy(
            self.trials[ids].astype(np.float64))

    def update(self, prompt_ids, success) -> None:
        """Add one rollout per entry: trials += 1, success += success[i]."""
        ids = np.asarray(prompt_ids, dtype=np.int64)
        s = np.asarray(success, dtype=np.int64)
        self._grow(int(ids.max()) if ids.size else -1)
        np.add.at(self.trials, ids, 1)
        np.add.at(self.success, ids, s)

    def state_dict(self) -> dict:
        return {"success": self.success.copy(), "trials": self.trials.copy()}

    def load_state_dict(self, state: dict) -> None:
        self.success = np.asarray(state["success"], dtype=np.int64).copy()
        self.trials = np.asarray(state["trials"], dtype=np.int64).copy()
