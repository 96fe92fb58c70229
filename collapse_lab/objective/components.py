"""The pieces a recipe is composed of (METHODS.md §1-§4), each a small frozen dataclass.

A component's fields are its hyper-parameters; calling it applies it. Stages, in the order
`Recipe.loss` runs them:
    reward shapers     (batch, r) -> r~            IPS
    advantage          (batch, r~) -> A            group estimators of §1
    advantage weights  (batch, A) -> A'            ISAC, zero-success gate, BBG
    policy             clipped surrogate + aggregation (§4)
    regularisers       reverse KL on policy samples, DPH divergence on reference samples, entropy
    sampler / filters  memory-calibrated sampling and dynamic sampling (used by the sim / trainer)
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

from .advantages import ADVANTAGES, STD_MODES, group_advantages
from .batch import Batch
from .divergences import REFERENCE_SAMPLED, divergence
from .policy import AGG_MODES, LEVELS
from .shaping import (
    COUNT_SOURCES,
    bbg_weights,
    group_success_counts,
    ips_rewards,
    isac_multiplier,
    zero_success_gate,
)

__all__ = ["Advantage", "PolicySpec", "IPS", "ISAC", "ZeroSuccess", "BBG", "KLPenalty", "DPH",
           "Entropy", "Memory", "check_choice"]


def check_choice(field: str, value, allowed) -> None:
    """ValueError naming the field and the allowed values unless value in allowed."""
    if value not in allowed:
        raise ValueError(f"{field}={value!r} is not valid; allowed: {', '.join(map(str, allowed))}")


def _need(batch: Batch, field: str, who: str):
    value = getattr(batch, field)
    if value is None:
        raise ValueError(f"{who} needs Batch.{field}, which is None")
    return value


@dataclass(frozen=True)
class Advantage:
    """Group advantage estimator (§1). k: passk's k; beta_rank: unlikeliness; baseline: reinforce."""

    kind: str = "grpo"
    std: str = "group"
    ddof: int = 1
    eps: float = 1e-6
    k: int = 4
    beta_rank: float = 0.25
    baseline: float = 0.0

    def __post_init__(self):
        check_choice("advantage.kind", self.kind, ADVANTAGES)
        check_choice("advantage.std", self.std, STD_MODES)

    def __call__(self, batch: Batch, rewards: Tensor) -> Tensor:
        extra = {"passk": {"k": self.k, "success_threshold": batch.success_threshold},
                 "unlikeliness": {"logp": batch.old_logp if batch.old_logp is not None else batch.logp,
                                  "mask": batch.mask, "beta_rank": self.beta_rank},
                 "reinforce": {"baseline": self.baseline}}.get(self.kind, {})
        return group_advantages(rewards, batch.group, self.kind, std=self.std, ddof=self.ddof,
                                eps=self.eps, **extra)


@dataclass(frozen=True)
class PolicySpec:
    """Clipped surrogate settings (§4): clip range, dual clip, aggregation mode, ratio level."""

    clip_low: float = 0.2
    clip_high: float = 0.2
    dual_clip: float | None = None
    agg: str = "token-mean"
    level: str = "token"

    def __post_init__(self):
        check_choice("policy.agg", self.agg, AGG_MODES)
        check_choice("policy.level", self.level, LEVELS)
        if self.clip_low < 0 or self.clip_high < 0:
            raise ValueError(f"policy.clip_low/clip_high must be >= 0, got {self.clip_low}, {self.clip_high}")


@dataclass(frozen=True)
class IPS:
    """Inverse probability scaling of rewards (paper D): r / max(n_o/G, eps)^alpha."""

    eps: float = 0.01
    alpha: float = 1.0

    def __call__(self, batch: Batch, rewards: Tensor) -> Tensor:
        return ips_rewards(rewards, _need(batch, "outcome", "ips"), batch.group, self.eps, self.alpha)


@dataclass(frozen=True)
class ISAC:
    """Inverse-success advantage calibration (paper A): correct samples' A times (G - c)^alpha."""

    alpha: float = 1.0
    normalize: bool = False

    def __call__(self, batch: Batch, adv: Tensor) -> Tensor:
        m = isac_multiplier(batch.success, batch.group, self.alpha, self.normalize)
        return adv * m.to(adv.dtype)


@dataclass(frozen=True)
class ZeroSuccess:
    """Zero-success gating (paper C intervention): train a prompt only until it is first solved."""

    counts: str = "history"
    max_success: int = 1

    def __post_init__(self):
        check_choice("zero_success.counts", self.counts, COUNT_SOURCES)

    def __call__(self, batch: Batch, adv: Tensor) -> Tensor:
        gate = zero_success_gate(batch.success, batch.group, self.counts, batch.prior_success,
                                 self.max_success)
        return adv * gate.to(adv.dtype)


@dataclass(frozen=True)
class BBG:
    """Bayesian Boundary Gating (paper C): A * u(m)/u(1), gated; all-fail groups get -lambda_neg * w."""

    k_ref: int = 16
    tau: float = 0.01
    lambda_neg: float = 1.0
    counts: str = "group"

    def __post_init__(self):
        check_choice("bbg.counts", self.counts, COUNT_SOURCES)

    def __call__(self, batch: Batch, adv: Tensor) -> Tensor:
        c, size = group_success_counts(batch.success, batch.group)  # (B,) float64 each
        m, n = c, size
        if self.counts == "history":
            m = c + _need(batch, "prior_success", "bbg(counts='history')").double()
            n = size + _need(batch, "prior_trials", "bbg(counts='history')").double()
        w = bbg_weights(m, n, self.k_ref, self.tau).to(adv.dtype)
        # all-failure groups carry no group-relative signal: signed REINFORCE on failures [ours]
        neg = torch.full_like(adv, -self.lambda_neg) * w
        return torch.where(c == 0, neg, adv * w)


@dataclass(frozen=True)
class KLPenalty:
    """Reverse KL to the reference on policy samples (verl names k1/k2/k3), in loss or reward."""

    kind: str = "k3"
    beta: float = 0.05
    in_reward: bool = False

    def __post_init__(self):
        check_choice("kl.kind", self.kind, ("k1", "k2", "k3"))
        if self.beta < 0:
            raise ValueError(f"kl.beta must be >= 0, got {self.beta}")

    def term(self, batch: Batch) -> Tensor:
        """Per-token term [B, T] on the batch's own samples."""
        return divergence(batch.logp, _need(batch, "ref_logp", "reverse KL"), self.kind)

    def shape_rewards(self, batch: Batch, rewards: Tensor) -> Tensor:
        """r - beta * sum_t k(d_t) (detached) when the penalty sits in the reward."""
        per_seq = (self.term(batch).detach() * batch.token_mask).sum(-1)
        return rewards - self.beta * per_seq.to(rewards.dtype)


@dataclass(frozen=True)
class DPH:
    """DPH-RL (paper B): eta * f-divergence on stored reference samples; D_pef/D_exp split settings."""

    kind: str = "js"
    eta: float = 0.1
    alpha: float = 0.2
    n_pre: int = 8
    n_ref: int = 1

    def __post_init__(self):
        check_choice("dph.kind", self.kind, sorted(REFERENCE_SAMPLED))
        if self.eta < 0 or self.n_pre < 1 or self.n_ref < 1:
            raise ValueError(f"dph needs eta >= 0, n_pre >= 1, n_ref >= 1; got {self.eta}, {self.n_pre}, {self.n_ref}")

    def term(self, batch: Batch) -> tuple[Tensor, Tensor]:
        """(per-token term [R, T], mask [R, T]) on the reference samples."""
        ref = _need(batch, "ref_samples", f"dph_{self.kind}")
        mask = torch.ones_like(ref.logp) if ref.mask is None else ref.mask.to(ref.logp.dtype)
        return divergence(ref.logp, ref.ref_logp, self.kind, alpha=self.alpha), mask


@dataclass(frozen=True)
class Entropy:
    """Entropy bonus: loss -= coef * aggregate(token entropy)."""

    coef: float = 0.01


@dataclass(frozen=True)
class Memory:
    """Distribution-level calibration (paper A): sample from softmax(z - mu z_mem); memory trained by CE.

    Sampling-side only: the loss is the recipe's usual one with old_logp = the sampling log-probs.
    """

    mu: float = 0.5
    lr: float = 0.1

    def __post_init__(self):
        if self.mu < 0 or self.lr <= 0:
            raise ValueError(f"memory needs mu >= 0 and lr > 0, got mu={self.mu}, lr={self.lr}")
