"""Distribution-level calibration with a memory model (paper A; docs/methods.md §2).

Rollouts are drawn from softmax(z_policy - mu * z_memory) instead of pi_theta; the memory model is
trained by cross-entropy on past rollouts. Because the rollouts are then off-policy, the behaviour
log-probs (`Batch.old_logp`) are those of this sampling distribution and the clipped ratio of
docs/methods.md §4 corrects for it [ours].
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

from .policy import aggregate

__all__ = ["sampling_logits", "sampling_logp", "memory_loss"]


def sampling_logits(policy_logits: Tensor, memory_logits: Tensor, mu: float) -> Tensor:
    """Logits of the calibrated sampler: z_policy - mu * z_memory (same shape, [..., V])."""
    if policy_logits.shape != memory_logits.shape:
        raise ValueError(f"policy_logits shape {tuple(policy_logits.shape)} does not match "
                         f"memory_logits shape {tuple(memory_logits.shape)}")
    return policy_logits - mu * memory_logits


def sampling_logp(policy_logits: Tensor, memory_logits: Tensor, mu: float) -> Tensor:
    """Log-probabilities of the calibrated sampler, log_softmax(z_policy - mu z_memory) [..., V]."""
    return F.log_softmax(sampling_logits(policy_logits, memory_logits, mu), -1)


def memory_loss(memory_logp: Tensor, mask: Tensor | None = None, group: Tensor | None = None) -> Tensor:
    """Cross-entropy of past rollouts under the memory model: -token-mean of memory log-probs.

    memory_logp: log-probs the memory model gives the sampled tokens, [B] or [B, T]; mask [B, T].
    group [B] (optional): the loss is then the sum over groups of each group's own token-mean, so every
    prompt's memory takes the step of its own G samples, the per-prompt scale of the policy's update
    (the simulator's tabular memory, collapse_lab/sim: memory_update; docs/methods.md §2).
    """
    if group is None:
        return -aggregate(memory_logp, mask, "token-mean")
    from .groups import group_index, group_sum
    m = torch.ones_like(memory_logp) if mask is None else mask.to(memory_logp.dtype)
    inv, n = group_index(group)
    tokens = group_sum(m.reshape(m.shape[0], -1).sum(-1), inv, n)  # [n_groups]
    w = m / tokens.clamp_min(1.0)[inv].reshape(-1, *([1] * (m.dim() - 1)))  # [B] or [B, T]
    return -(memory_logp * w).sum()
