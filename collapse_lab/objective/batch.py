"""The `Batch` every recipe consumes, and the per-prompt history that gating recipes read.

Shapes: B samples (responses), T response tokens (T = 1 for a bandit). Per-token tensors may be
given as [B] and are read as [B, 1]. The simulator and the LLM trainer fill the same fields.
"""

from __future__ import annotations

from dataclasses import dataclass, fields

import numpy as np
import torch
from torch import Tensor

from .policy import as_tokens
from .prepared import row_index

__all__ = ["Batch", "RefSamples", "PromptHistory", "SUCCESS_THRESHOLD", "successes"]

SUCCESS_THRESHOLD = 1.0  # the one success threshold: a sample succeeds when its reward >= this


def successes(rewards, threshold: float = SUCCESS_THRESHOLD):
    """success_i = [r_i >= threshold]: bool tensor for a tensor, bool numpy array otherwise.

    Verifier rewards are binary (1 correct, 0 not), so the default threshold 1.0 counts exactly the
    correct samples; every success count (pass@k, history, D_pef, diversity metrics) goes through here.
    """
    if isinstance(rewards, Tensor):
        return rewards >= threshold
    return np.asarray(rewards) >= threshold


@dataclass
class RefSamples:
    """Samples drawn from the reference (initial) policy, for DPH divergences (docs/methods.md §3).

    logp: current policy's log-probs of the stored tokens [R, T] (with grad);
    ref_logp: stored reference log-probs [R, T]; mask: [R, T] or None.
    group: [R] the Batch.group id of the prompt each reference row belongs to, or None; needed
    only to split a batch (`Batch.select` keeps the reference rows of the selected groups).
    R = 0 (a batch with no D_pef prompt) gives a zero divergence term; `Batch.ref_samples=None`
    with a DPH recipe is an error (the caller forgot them).
    """

    logp: Tensor
    ref_logp: Tensor
    mask: Tensor | None = None
    group: Tensor | None = None

    def __post_init__(self):
        self.logp = as_tokens(self.logp, "ref_samples.logp")
        self.ref_logp = as_tokens(self.ref_logp, "ref_samples.ref_logp", self.logp)
        self.mask = as_tokens(self.mask, "ref_samples.mask", self.logp)
        R = self.logp.shape[0]
        if self.group is not None and tuple(self.group.shape) != (R,):
            raise ValueError(f"RefSamples.group must have shape ({R},) to match logp, got {tuple(self.group.shape)}")

    def select_groups(self, groups: Tensor) -> RefSamples:
        """The reference rows whose `group` is in `groups` (all R = 0 sets are kept as they are)."""
        if self.logp.shape[0] == 0:
            return self
        if self.group is None:
            raise ValueError("RefSamples.group is None: Batch.select cannot tell which reference rows "
                             "belong to the selected groups; give RefSamples.group (the Batch.group id "
                             "of each reference row)")
        keep = torch.isin(self.group, groups.to(self.group.device))
        return RefSamples(self.logp[keep], self.ref_logp[keep], None if self.mask is None else self.mask[keep],
                          self.group[keep])


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
    success_threshold: a sample is a success when reward >= this (default SUCCESS_THRESHOLD = 1.0).
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
    success_threshold: float = SUCCESS_THRESHOLD
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

    def __len__(self) -> int:
        return int(self.logp.shape[0])

    def select(self, rows) -> Batch:
        """The sub-batch of `rows` (bool mask [B] or integer indices) holding whole groups.

        Every per-row field is indexed; the reference samples of the selected groups are kept
        (RefSamples.group); success_threshold and max_len are unchanged. ValueError when a selected
        group is not selected whole, or a row is selected twice.
        """
        idx = row_index(rows, len(self), "Batch.select rows").to(self.logp.device)
        if idx.unique().numel() != idx.numel():
            raise ValueError("Batch.select rows: a row is selected more than once")
        groups = self.group[idx].unique()
        whole = torch.isin(self.group, groups)
        if int(whole.sum()) != idx.numel():
            split = self.group[whole & ~torch.isin(torch.arange(len(self), device=idx.device), idx)]
            raise ValueError(f"Batch.select rows must hold whole groups; group {split[0].item()} is split")
        kw = {f.name: getattr(self, f.name) for f in fields(self)}
        for name in ("logp", "old_logp", "mask", "ref_logp", "entropy", "rewards", "group", "outcome",
                     "prior_success", "prior_trials", "pef"):
            if kw[name] is not None:
                kw[name] = kw[name][idx]
        if self.ref_samples is not None:
            kw["ref_samples"] = self.ref_samples.select_groups(groups)
        return Batch(**kw)

    @property
    def success(self) -> Tensor:
        """bool [B]: reward >= success_threshold (`successes`)."""
        return successes(self.rewards, self.success_threshold)

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
