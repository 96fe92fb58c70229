"""Reward shaping and advantage weights: the fixes of papers A, C and D (docs/methods.md §2).

All functions are pure and vectorised over a batch of groups:
    ips_rewards          paper D, Eq. 9: r / max(n_o/G, eps)^alpha
    isac_multiplier      paper A: (G - c)^alpha on correct samples
    bbg_utility/weights  paper C, Eqs. 8-9: Beta-posterior marginal value of Pass@k and its gate
    zero_success_gate    paper C intervention: train a prompt only until it is first solved
    dynamic_sampling_keep  DAPO: keep groups whose rewards *vary*
"""

from __future__ import annotations

import torch
from torch import Tensor

from .groups import check_1d, group_index, group_size, group_sum, pair_counts

__all__ = [
    "ips_rewards",
    "isac_multiplier",
    "bbg_utility",
    "bbg_weights",
    "zero_success_gate",
    "dynamic_sampling_keep",
    "group_success_counts",
    "COUNT_SOURCES",
    "ISAC_MEAN_FLOOR",
]

COUNT_SOURCES = ("group", "history")
ISAC_MEAN_FLOOR = 1e-12  # ISAC normalize: the batch-mean multiplier is floored here (sim kernels read it)


def ips_rewards(rewards: Tensor, outcome: Tensor, group: Tensor, eps: float = 0.01,
                alpha: float = 1.0) -> Tensor:
    """Inverse-probability-scaled rewards r~_i = r_i / max(p_hat(o_i), eps)^alpha (paper D, Eq. 9).

    p_hat(o) = n_o / G is the frequency of outcome o in its group. With binary rewards, eps inactive
    and alpha = 1, a correct sample's shaped reward is G / n_o.
    """
    if eps <= 0 or alpha < 0:
        raise ValueError(f"ips needs eps > 0 and alpha >= 0, got eps={eps}, alpha={alpha}")
    check_1d("rewards", rewards)
    check_1d("outcome", outcome, rewards)
    inv, n = group_index(group)
    p_hat = pair_counts(inv, outcome).to(rewards.dtype) / group_size(inv, n, rewards.dtype)[inv]
    return rewards / p_hat.clamp_min(eps) ** alpha


def group_success_counts(success: Tensor, group: Tensor) -> tuple[Tensor, Tensor]:
    """(c, G) per sample: successes and size of the sample's group, both float64 [B]."""
    inv, n = group_index(group)
    c = group_sum(success.double(), inv, n)[inv]
    return c, group_size(inv, n, torch.float64)[inv]


def isac_multiplier(success: Tensor, group: Tensor, alpha: float = 1.0,
                    normalize: bool = False, reduce=None) -> Tensor:
    """Inverse-success advantage calibration (paper A): m_i = (G - c)^alpha if sample i is correct, else 1.

    Positive advantages of hard prompts (few successes c) are scaled up; negative ones unchanged.
    normalize=True [ours]: divide the correct samples' multipliers by their batch mean, so the
    average scale of correct samples stays 1 (the paper's choice is unknown). The batch mean spans
    every process when `reduce` (prepared.py contract: reduce(t, "sum") sums t over processes) is given.
    Returns float64 [B].
    """
    c, size = group_success_counts(success, group)
    scale = (size - c) ** alpha
    if normalize:
        total, count = scale[success].sum(), success.sum().to(scale.dtype)
        if reduce is not None:
            total, count = reduce(total, "sum"), reduce(count, "sum")
        if float(count) > 0:
            scale = scale / (total / count).clamp_min(ISAC_MEAN_FLOOR)
    return torch.where(success, scale, torch.ones_like(scale))


def bbg_utility(m: Tensor, n: Tensor, k: int) -> Tensor:
    """Expected marginal Pass@k value under the Beta(m+1, n-m+1) posterior (paper C, Eq. 8).

    u(m; n, k) = E[k (1-p)^(k-1)] = k prod_{j=1}^{k-1} (n - m + j)/(n + 1 + j)
               = k Gamma(n-m+k) Gamma(n+2) / (Gamma(n-m+1) Gamma(n+1+k))   (float64, via lgamma).
    """
    m, n = torch.as_tensor(m, dtype=torch.float64), torch.as_tensor(n, dtype=torch.float64)
    log_u = (torch.lgamma(n - m + k) - torch.lgamma(n - m + 1)
             + torch.lgamma(n + 2) - torch.lgamma(n + 1 + k))
    return k * torch.exp(log_u)


def bbg_weights(m: Tensor, n: Tensor, k_ref: int = 16, tau: float = 0.01) -> Tensor:
    """Bayesian Boundary Gating weight u(m)/u(1), gated to 0 where u(m) < tau (n+1) (paper C, Eq. 9)."""
    if not isinstance(k_ref, int) or k_ref < 1:
        raise ValueError(f"bbg needs an integer k_ref >= 1, got {k_ref!r}")
    u = bbg_utility(m, n, k_ref)
    w = u / bbg_utility(torch.ones_like(u), n, k_ref)
    return torch.where(u < tau * (torch.as_tensor(n, dtype=torch.float64) + 1), torch.zeros_like(w), w)


def zero_success_gate(success: Tensor, group: Tensor, counts: str = "history",
                      prior_success: Tensor | None = None, max_success: int = 1) -> Tensor:
    """1.0 where a sample's prompt may still be trained, else 0.0 (paper C intervention) [ours].

    counts="history": open while the prompt's cumulative successes *before this batch* are zero.
    counts="group": open while this group has at most `max_success` successes (just discovered).
    Returns float64 [B].
    """
    if counts not in COUNT_SOURCES:
        raise ValueError(f"unknown counts source {counts!r}; valid: {', '.join(COUNT_SOURCES)}")
    if counts == "history":
        if prior_success is None:
            raise ValueError("zero_success with counts='history' needs batch.prior_success")
        return (prior_success == 0).double()
    c, _ = group_success_counts(success, group)
    return (c <= max_success).double()


def dynamic_sampling_keep(rewards: Tensor, group: Tensor) -> Tensor:
    """DAPO dynamic sampling: True for samples whose group's rewards are not all equal -> bool [B].

    Tests the group's spread (max > min), not its mean, so all-correct and all-wrong groups drop.
    """
    check_1d("rewards", rewards)
    inv, n = group_index(group)
    inf = torch.full((n,), torch.inf, dtype=rewards.dtype, device=rewards.device)
    hi = (-inf).scatter_reduce(0, inv, rewards, "amax")
    lo = inf.scatter_reduce(0, inv, rewards, "amin")
    return (hi > lo)[inv]
