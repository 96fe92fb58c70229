"""Advantage estimators from a group's rewards (docs/methods.md §1).

    group_advantages(rewards[B], group[B], kind, std, ddof, eps, **kw) -> A[B]

Every estimator is a small function `(rewards, inv, n_groups, **kw) -> A` registered in
`ADVANTAGES`; `group_advantages` validates the inputs and dispatches. Group-relative kinds refuse
groups of one sample (their baseline is undefined) instead of returning a silent zero.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import Tensor

from .batch import SUCCESS_THRESHOLD, successes
from .checks import invalid
from .groups import (
    check_1d,
    group_index,
    group_mean,
    group_size,
    group_sum,
    group_var,
    within_group_rank,
)

__all__ = ["group_advantages", "population_advantages", "ADVANTAGES", "GROUP_RELATIVE", "STD_MODES",
           "log_comb", "batch_std", "PASSK_EPS"]

STD_MODES = ("group", "batch", "none")
PASSK_EPS = 1e-6  # pass@k advantages divide by s + PASSK_EPS (Passk_Training `passk_adv.py`); sim kernels read it


def _grpo(rewards, inv, n, *, std="group", ddof=1, eps=1e-6, reduce=None, **_):
    """A_i = (r_i - mean_g r) / (std + eps); std over the group, the whole batch, or none."""
    if std not in STD_MODES:
        raise ValueError(f"unknown std mode {std!r}; valid: {', '.join(STD_MODES)}")
    centred = rewards - group_mean(rewards, inv, n)[inv]
    if std == "none":
        return centred
    if std == "group":
        smallest = int(group_size(inv, n, torch.long).min()) if n else ddof + 1
        if ddof >= smallest:
            raise invalid("ddof", ddof, f"an integer below the smallest group size ({smallest}) with std='group'")
        scale = group_var(rewards, inv, n, ddof).sqrt()[inv]
    else:  # "batch": one std over every reward of the batch (REINFORCE++-style)
        scale = batch_std(rewards, ddof, reduce)
    return centred / (scale + eps)


def batch_std(x: Tensor, ddof: int = 1, reduce=None) -> Tensor:
    """Standard deviation of every element of x over the whole rollout batch (all processes).

    reduce=None: x.std(correction=ddof). With a reduction callback (prepared.py contract,
    reduce(t, "sum") sums t over processes) the two-pass form: N = sum 1, mean = sum x / N,
    var = sum (x - mean)^2 / (N - ddof). Raises ValueError naming `ddof` when N <= ddof.
    """
    if reduce is None:
        count = x.numel()
    else:
        count = int(round(float(reduce(x.new_tensor(float(x.numel())), "sum"))))
    if ddof >= count:
        raise invalid("ddof", ddof, f"an integer below the batch size ({count}) with std='batch'")
    if reduce is None:
        return x.var(correction=ddof).sqrt()
    mean = reduce(x.sum(), "sum") / count
    return (reduce(((x - mean) ** 2).sum(), "sum") / (count - ddof)).sqrt()


def _dr_grpo(rewards, inv, n, **_):
    """A_i = r_i - mean_g r (Dr. GRPO: no std division)."""
    return rewards - group_mean(rewards, inv, n)[inv]


def _rloo(rewards, inv, n, **_):
    """A_i = r_i - (sum_{j != i} r_j) / (G - 1) = G/(G-1) (r_i - mean_g r)."""
    size = group_size(inv, n, rewards.dtype)[inv]
    return rewards - (group_sum(rewards, inv, n)[inv] - rewards) / (size - 1)


def _reinforce(rewards, inv, n, *, baseline: float | Tensor = 0.0, **_):
    """A_i = r_i - b with a constant (or running-mean, per-sample) baseline b; no group needed."""
    return rewards - baseline


def log_comb(n: Tensor, k: Tensor) -> Tensor:
    """log C(n, k) elementwise in float64; -inf where k < 0 or k > n (C = 0)."""
    n, k = n.double(), k.double()
    ok = (k >= 0) & (k <= n)
    n_, k_ = torch.where(ok, n, 0.0), torch.where(ok, k, 0.0)
    val = torch.lgamma(n_ + 1) - torch.lgamma(k_ + 1) - torch.lgamma(n_ - k_ + 1)
    return torch.where(ok, val, torch.full_like(val, -torch.inf))


def _passk(rewards, inv, n, *, k: int, success_threshold: float = SUCCESS_THRESHOLD, **_):
    """Pass@k training advantage (Chen et al. 2025, RUCAIBox/Passk_Training `passk_adv.py`).

    Per group of N samples with N_neg failures: R = 1 - C(N_neg,k)/C(N,k), s = sqrt(R(1-R)),
    A_pos = (1-R)/(s + PASSK_EPS), A_neg = (1 - R - C(N_neg-1,k-1)/C(N-1,k-1))/(s + PASSK_EPS).
    Both are 0 when N_neg < k (every k-subset passes). Combinatorics in float64 via lgamma.
    """
    size = group_size(inv, n, torch.float64)
    smallest = int(size.min()) if n else k
    if isinstance(k, bool) or not isinstance(k, int) or not 1 <= k <= smallest:
        raise invalid("k", k, f"an integer in [1, {smallest}] (passk: k <= the smallest group size)")
    success = successes(rewards, success_threshold).double()
    n_neg = size - group_sum(success, inv, n)
    kk = torch.full_like(size, float(k))
    big_r = 1.0 - torch.exp(log_comb(n_neg, kk) - log_comb(size, kk))  # (n_groups,)
    s = torch.sqrt((big_r * (1.0 - big_r)).clamp_min(0.0))
    frac_all_neg = torch.exp(log_comb(n_neg - 1, kk - 1) - log_comb(size - 1, kk - 1))
    a_pos = (1.0 - big_r) / (s + PASSK_EPS)
    a_neg = (1.0 - big_r - frac_all_neg) / (s + PASSK_EPS)
    adv = torch.where(success.bool(), a_pos[inv], a_neg[inv])
    return adv.to(rewards.dtype)


def _unlikeliness(rewards, inv, n, *, logp: Tensor, mask: Tensor | None = None,
                  beta_rank: float = 0.25, **kw):
    """Unlikeliness reward (He, Fried, Welleck 2025), then GRPO.

    Rank samples in each group by token-mean `logp` (use old_logp), ascending: least likely = 0.
    r_i <- r_i (1 - beta_rank * rank_i / G).
    """
    seq_logp = _token_mean(logp.detach(), mask)
    check_1d("logp (token-mean)", seq_logp, rewards)
    rank = within_group_rank(seq_logp, inv, n).to(rewards.dtype)
    size = group_size(inv, n, rewards.dtype)[inv]
    return _grpo(rewards * (1.0 - beta_rank * rank / size), inv, n, **kw)


def _token_mean(logp: Tensor, mask: Tensor | None) -> Tensor:
    """(B,) or (B, T) log-probs -> (B,) token-mean under the mask."""
    if logp.dim() == 1:
        return logp
    mask = torch.ones_like(logp) if mask is None else mask.to(logp.dtype)
    return (logp * mask).sum(-1) / mask.sum(-1).clamp_min(1.0)


ADVANTAGES: dict[str, Callable[..., Tensor]] = {
    "grpo": _grpo,
    "dr_grpo": _dr_grpo,
    "rloo": _rloo,
    "reinforce": _reinforce,
    "passk": _passk,
    "unlikeliness": _unlikeliness,
}
GROUP_RELATIVE = frozenset({"grpo", "dr_grpo", "rloo", "passk", "unlikeliness"})
_EXTRA_KW = {
    "grpo": set(), "dr_grpo": set(), "rloo": set(), "reinforce": {"baseline"},
    "passk": {"k", "success_threshold"}, "unlikeliness": {"logp", "mask", "beta_rank"},
}


def group_advantages(rewards: Tensor, group: Tensor, kind: str = "grpo", std: str = "group",
                     ddof: int = 1, eps: float = 1e-6, reduce=None, **kw) -> Tensor:
    """Per-sample advantages A[B] from rewards[B] and group ids group[B] (docs/methods.md §1).

    kind: one of `ADVANTAGES` — grpo (std "group" | "batch" | "none", `ddof`, `eps`), dr_grpo, rloo,
    reinforce (kw `baseline`), passk (kw `k`), unlikeliness (kw `logp` [B] or [B, T], `mask`,
    `beta_rank`). Groups whose rewards are all equal get A = 0 for grpo, dr_grpo and rloo.
    reduce: the batch-spanning reduction callback of `Recipe.prepare` (prepared.py); only std="batch"
    uses it, so that the std spans every process's rewards.
    Raises ValueError for an unknown kind, mismatched shapes, a group of size 1 with a
    group-relative kind, `ddof` >= the group (std "group") or batch (std "batch") size, or passk
    `k` outside [1, smallest group size].
    """
    if kind not in ADVANTAGES:
        raise ValueError(f"unknown advantage kind {kind!r}; valid: {', '.join(ADVANTAGES)}")
    unknown = set(kw) - _EXTRA_KW[kind]
    if unknown:
        allowed = ", ".join(sorted(_EXTRA_KW[kind])) or "none"
        raise ValueError(f"advantage kind {kind!r} got unknown options {sorted(unknown)}; allowed: {allowed}")
    check_1d("rewards", rewards)
    check_1d("group", group, rewards)
    if not rewards.dtype.is_floating_point:
        raise ValueError(f"rewards must be a float tensor, got dtype {rewards.dtype}")
    inv, n = group_index(group)
    if kind in GROUP_RELATIVE and n:  # an empty batch (DAPO dropped every group) has no group to check
        smallest = int(group_size(inv, n, torch.long).min())
        if smallest < 2:
            raise ValueError(
                f"advantage kind {kind!r} is group-relative and needs every group to have at least "
                f"2 samples; found a group of size {smallest}"
            )
    return ADVANTAGES[kind](rewards, inv, n, std=std, ddof=ddof, eps=eps, reduce=reduce, **kw)


def population_advantages(x: Tensor, pi: Tensor, kind: str = "grpo", std: str = "group",
                          eps: float = 1e-6, k: int = 4, baseline: float = 0.0,
                          success: Tensor | None = None) -> Tensor:
    """Advantage of every outcome at infinite group size (the flow limit of §1) -> [P, K].

    x: (shaped) reward of each outcome [P, K]; pi: the sampling policy [P, K]; success: bool [P, K]
    (passk). With m = E_pi x per prompt:
        grpo          (x - m) / (sd_pi(x) + eps); std "batch" pools the P prompts; "none" drops it
        dr_grpo, rloo x - m            (rloo's G/(G-1) factor -> 1)
        reinforce     x - baseline
        passk         P = pi . success, R = 1 - (1-P)^k, s = sqrt(R(1-R)):
                      A_pos = (1-R)/(s + PASSK_EPS), A_neg = (1 - R - (1-P)^(k-1))/(s + PASSK_EPS)
    A group whose empirical distribution equals pi gives these values exactly for grpo (ddof=0)
    and dr_grpo (tests/objective/test_advantages.py).
    """
    if x.shape != pi.shape or x.dim() != 2:
        raise ValueError(f"x and pi must both be [P, K]; got {tuple(x.shape)} and {tuple(pi.shape)}")
    mean = (pi * x).sum(-1, keepdim=True)  # (P, 1)
    if kind in ("dr_grpo", "rloo") or (kind == "grpo" and std == "none"):
        return x - mean
    if kind == "reinforce":
        return x - baseline
    if kind == "passk":
        if success is None:
            raise ValueError("passk population advantages need the success mask")
        P = (pi * success).sum(-1, keepdim=True)
        big_r = 1.0 - (1.0 - P) ** k
        s = (big_r * (1.0 - big_r)).clamp_min(0.0).sqrt()
        a_neg = (1.0 - big_r - (1.0 - P) ** (k - 1)) / (s + PASSK_EPS)
        return torch.where(success, (1.0 - big_r) / (s + PASSK_EPS), a_neg)
    if kind != "grpo":
        raise ValueError(f"population advantages are defined for grpo, dr_grpo, rloo, reinforce, passk; got {kind!r}")
    if std == "group":
        sd = (pi * (x - mean) ** 2).sum(-1, keepdim=True).sqrt()
    elif std == "batch":  # pooled over the P prompts, each weighted 1/P
        pooled = (pi * x).sum() / x.shape[0]
        sd = ((pi * (x - pooled) ** 2).sum() / x.shape[0]).sqrt()
    else:
        raise ValueError(f"unknown std mode {std!r}; valid: {', '.join(STD_MODES)}")
    return (x - mean) / (sd + eps)
