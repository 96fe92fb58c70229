"""Clipped policy-gradient surrogate and loss aggregation (docs/methods.md §4).

Per token, with ratio rho = exp(logp - old_logp) (or, at level="sequence", GSPO's
exp(token-mean log-ratio) of the whole response, broadcast to its tokens):

    L = max(-rho A, -clip(rho, 1 - eps_low, 1 + eps_high) A)        PPO clip
    L = min(L, -c A)  where A < 0                                     dual clip (c > 1)

Aggregation over a response mask uses verl's four mode names (`AGG_MODES`). Bandit responses are
a single token: tensors of shape [B] are read as [B, 1].
"""

from __future__ import annotations

from typing import NamedTuple

import torch
from torch import Tensor

__all__ = ["aggregate", "policy_loss", "as_tokens", "AGG_MODES", "LEVELS", "Denominators"]

AGG_MODES = ("token-mean", "seq-mean-token-mean", "seq-mean-token-sum", "seq-mean-token-sum-norm")
LEVELS = ("token", "sequence")


def as_tokens(x: Tensor | None, name: str, like: Tensor | None = None) -> Tensor | None:
    """[B] -> [B, 1]; [B, T] unchanged; checks the shape against `like` (already [B, T])."""
    if x is None:
        return None
    if x.dim() == 1:
        x = x.unsqueeze(-1)
    if x.dim() != 2:
        raise ValueError(f"{name} must be [B] or [B, T], got shape {tuple(x.shape)}")
    if like is not None and x.shape != like.shape:
        raise ValueError(f"{name} shape {tuple(x.shape)} does not match logp shape {tuple(like.shape)}")
    return x


class Denominators(NamedTuple):
    """Global aggregation denominators of a rollout batch (all its rows, all processes).

    tokens: sum of the mask; rows: number of responses B; max_len: T_max of seq-mean-token-sum-norm.
    """

    tokens: float
    rows: float
    max_len: int


def aggregate(per_token: Tensor, mask: Tensor | None, mode: str, max_len: int | None = None,
              denom: Denominators | None = None) -> Tensor:
    """Reduce a per-token loss L[B, T] under mask[B, T] to a scalar (docs/methods.md §4 table).

    token-mean:              sum(L m) / sum(m)
    seq-mean-token-mean:     mean_b [sum_t L m / sum_t m]      (empty responses contribute 0)
    seq-mean-token-sum:      mean_b [sum_t L m]
    seq-mean-token-sum-norm: sum(L m) / (B * T_max), T_max = max_len or T (Dr. GRPO)
    With `denom` (a micro-batch of a larger batch), sum(m), B and T_max are the whole batch's, so
    the losses of any split into micro-batches add up to the loss of the whole batch.
    """
    if mode not in AGG_MODES:
        raise ValueError(f"unknown aggregation mode {mode!r}; valid: {', '.join(AGG_MODES)}")
    per_token = as_tokens(per_token, "per_token")
    mask = torch.ones_like(per_token) if mask is None else as_tokens(mask, "mask", per_token)
    mask = mask.to(per_token.dtype)
    masked = per_token * mask
    if denom is None:  # this batch is the whole batch
        tokens, rows = mask.sum().clamp_min(1.0), per_token.shape[0]
        t_max = per_token.shape[-1] if max_len is None else max_len
    else:
        tokens, rows, t_max = max(denom.tokens, 1.0), denom.rows, denom.max_len
    if mode == "token-mean":
        return masked.sum() / tokens
    if mode == "seq-mean-token-mean":
        return (masked.sum(-1) / mask.sum(-1).clamp_min(1.0)).sum() / rows
    if mode == "seq-mean-token-sum":
        return masked.sum(-1).sum() / rows
    if t_max <= 0:
        raise ValueError(f"max_len must be positive, got {t_max}")
    return masked.sum() / (rows * t_max)


def _ratio(logp: Tensor, old_logp: Tensor, mask: Tensor, level: str) -> Tensor:
    """Importance ratio per token [B, T]: token level, or GSPO's sequence level broadcast to tokens."""
    log_ratio = logp - old_logp
    if level == "sequence":
        seq = (log_ratio * mask).sum(-1, keepdim=True) / mask.sum(-1, keepdim=True).clamp_min(1.0)
        log_ratio = seq.expand_as(logp)
    return torch.exp(log_ratio)


def _masked_mean(x: Tensor, mask: Tensor) -> float:
    return float((x * mask).sum() / mask.sum().clamp_min(1.0))


def policy_loss(logp: Tensor, old_logp: Tensor | None, advantages: Tensor, mask: Tensor | None = None,
                clip_low: float = 0.2, clip_high: float = 0.2, dual_clip: float | None = None,
                agg: str = "token-mean", level: str = "token", max_len: int | None = None,
                denom: Denominators | None = None) -> tuple[Tensor, dict[str, float]]:
    """Clipped surrogate -> (loss, diagnostics). advantages: [B] (per sequence) or [B, T].

    old_logp=None means on-policy (old_logp = logp.detach(), rho = 1, REINFORCE gradient).
    denom: the whole batch's Denominators when this is a micro-batch (see `aggregate`).
    Diagnostics: pg_loss, clip_frac_low (rho < 1-eps_low with A < 0), clip_frac_high
    (rho > 1+eps_high with A > 0), dual_clip_frac, ratio_mean, ratio_max (token-mean over mask).
    """
    if level not in LEVELS:
        raise ValueError(f"unknown ratio level {level!r}; valid: {', '.join(LEVELS)}")
    if clip_low < 0 or clip_high < 0:
        raise ValueError(f"clip_low and clip_high must be >= 0, got {clip_low}, {clip_high}")
    if dual_clip is not None and dual_clip <= 1.0:
        raise ValueError(f"dual_clip must be > 1 (or None), got {dual_clip}")
    logp = as_tokens(logp, "logp")
    old = logp.detach() if old_logp is None else as_tokens(old_logp, "old_logp", logp)
    mask = torch.ones_like(logp) if mask is None else as_tokens(mask, "mask", logp).to(logp.dtype)
    adv = as_tokens(advantages, "advantages")
    if adv.shape[0] != logp.shape[0]:
        raise ValueError(f"advantages shape {tuple(advantages.shape)} does not match logp shape {tuple(logp.shape)}")
    adv = adv.to(logp.dtype).expand_as(logp)  # (B, T)
    rho = _ratio(logp, old, mask, level)
    unclipped = -adv * rho
    clipped = -adv * rho.clamp(1.0 - clip_low, 1.0 + clip_high)
    per_token = torch.maximum(unclipped, clipped)
    dual = torch.zeros_like(per_token, dtype=torch.bool)
    if dual_clip is not None:
        cap = -adv * dual_clip
        dual = (adv < 0) & (per_token > cap)
        per_token = torch.where(adv < 0, torch.minimum(per_token, cap), per_token)
    loss = aggregate(per_token, mask, agg, max_len, denom)
    with torch.no_grad():
        r = rho.detach()
        diag = {
            "pg_loss": float(loss.detach()),
            "clip_frac_low": _masked_mean(((r < 1 - clip_low) & (adv < 0)).to(r.dtype), mask),
            "clip_frac_high": _masked_mean(((r > 1 + clip_high) & (adv > 0)).to(r.dtype), mask),
            "dual_clip_frac": _masked_mean(dual.to(r.dtype), mask),
            "ratio_mean": _masked_mean(r, mask),
            "ratio_max": float(torch.where(mask > 0, r, torch.zeros_like(r)).max()) if r.numel() else 1.0,
        }
    return loss, diag
