"""Group bookkeeping shared by every estimator: ids -> dense indices, per-group sums and sizes.

A *group* is the G samples one prompt received in one step (docs/methods.md, notation). Group ids are an
int tensor `group[B]`; they need not be sorted or contiguous. Everything here is vectorised with
`index_add_`, so it runs unchanged on CPU and GPU and keeps the input dtype (float32 or float64).
"""

from __future__ import annotations

import torch
from torch import Tensor

__all__ = [
    "check_1d",
    "group_index",
    "group_sum",
    "group_size",
    "group_mean",
    "group_var",
    "within_group_rank",
    "pair_counts",
]


def check_1d(name: str, x: Tensor, like: Tensor | None = None, like_name: str = "rewards") -> None:
    """Raise ValueError unless `x` is 1-D (and, if `like` is given, has the same length)."""
    if not isinstance(x, Tensor):
        raise TypeError(f"{name} must be a torch.Tensor, got {type(x).__name__}")
    if x.dim() != 1:
        raise ValueError(f"{name} must be 1-D [B], got shape {tuple(x.shape)}")
    if like is not None and x.shape != like.shape:
        raise ValueError(
            f"{name} shape {tuple(x.shape)} does not match {like_name} shape {tuple(like.shape)}"
        )


def group_index(group: Tensor) -> tuple[Tensor, int]:
    """Dense group index: returns (inv[B] in 0..n_groups-1, n_groups), groups in sorted-id order."""
    check_1d("group", group)
    if group.dtype.is_floating_point:
        raise ValueError(f"group must be an integer tensor of group ids, got dtype {group.dtype}")
    uniq, inv = torch.unique(group, return_inverse=True)
    return inv, int(uniq.numel())


def group_sum(x: Tensor, inv: Tensor, n_groups: int) -> Tensor:
    """Per-group sum of x[B] -> [n_groups]."""
    return torch.zeros(n_groups, dtype=x.dtype, device=x.device).index_add_(0, inv, x)


def group_size(inv: Tensor, n_groups: int, dtype: torch.dtype = torch.float64) -> Tensor:
    """Per-group sample count G_g -> [n_groups] in `dtype`."""
    ones = torch.ones(inv.shape[0], dtype=dtype, device=inv.device)
    return group_sum(ones, inv, n_groups)


def group_mean(x: Tensor, inv: Tensor, n_groups: int) -> Tensor:
    """Per-group mean of x[B] -> [n_groups]."""
    return group_sum(x, inv, n_groups) / group_size(inv, n_groups, x.dtype)


def group_var(x: Tensor, inv: Tensor, n_groups: int, ddof: int = 1) -> Tensor:
    """Per-group variance with `ddof` (1 = unbiased sample variance, as verl/TRL) -> [n_groups].

    Two-pass form sum((x - mean)^2) / (G - ddof) for accuracy; groups with G <= ddof give NaN.
    """
    mean = group_mean(x, inv, n_groups)
    sq = group_sum((x - mean[inv]) ** 2, inv, n_groups)
    return sq / (group_size(inv, n_groups, x.dtype) - ddof)


def within_group_rank(score: Tensor, inv: Tensor, n_groups: int) -> Tensor:
    """Rank of each sample inside its group by ascending `score` (0 = smallest), ties by position.

    Two stable sorts give a lexicographic (group, score) order; rank = position - group start.
    """
    order = torch.sort(score, stable=True).indices
    order = order[torch.sort(inv[order], stable=True).indices]  # (B,) sorted by group, then score
    sizes = group_size(inv, n_groups, torch.long)
    starts = torch.cumsum(sizes, 0) - sizes  # (n_groups,)
    pos = torch.arange(score.shape[0], device=score.device)
    rank = torch.empty_like(pos)
    rank[order] = pos - starts[inv[order]]
    return rank


def pair_counts(inv: Tensor, outcome: Tensor) -> Tensor:
    """n_o for each sample: how many samples of its group share its outcome id -> [B] (long)."""
    check_1d("outcome", outcome, inv, "group")
    _, pair_inv = torch.unique(torch.stack([inv, outcome.to(inv.dtype)]), dim=1, return_inverse=True)
    counts = torch.bincount(pair_inv)
    return counts[pair_inv]
