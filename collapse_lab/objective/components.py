"""The pieces a recipe is composed of (docs/methods.md §1-§4), each a small frozen dataclass.

A component's fields are its hyper-parameters, validated on construction (checks.py: strict types,
finite values, ranges). Every component declares the same protocol as class data:
    key     its name in overrides and `Recipe.components()` ("ips", "dph", ...)
    stage   where `Recipe.prepare` / `Recipe.loss` use it (`STAGES`)
    needs   the optional `Batch` fields it reads (a property where it depends on the settings)
    kernel_codes()  its encoding for the simulator's numba kernels: {slot name: value} over the slots
            of sim/layout.py (a kind name where the slot has a vocabulary); sim/spec.py derives the
            kernel codes from these alone. A component without it, or with `torch_only = True`, is
            torch-only (`Recipe.torch_only` lists such components; the numba backend refuses them)
Calling a shaper or weight applies it: `component(batch, x, reduce=None)`; `reduce` is the
batch-spanning reduction of `Recipe.prepare` (see prepared.py), used only by ISAC(normalize=True).
Stages, in the order the recipe runs them:
    shaper      (batch, r) -> r~            IPS (and KLPenalty(in_reward=True))
    advantage   (batch, r~) -> A            group estimators of §1
    weight      (batch, A) -> A'            ISAC, zero-success gate, BBG
    policy      clipped surrogate + aggregation (§4)
    regulariser reverse KL on policy samples, DPH divergence on reference samples, entropy
    sampler     memory-calibrated sampling (used by the sim / trainer)
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

import torch
from torch import Tensor

from .advantages import ADVANTAGES, STD_MODES, group_advantages
from .batch import Batch
from .checks import check_bool, check_choice, check_float, check_int
from .policy import AGG_MODES, LEVELS
from .regularisers import DPH, Entropy, KLPenalty, Memory, _need
from .shaping import (
    COUNT_SOURCES,
    bbg_weights,
    group_success_counts,
    ips_rewards,
    isac_multiplier,
    zero_success_gate,
)

__all__ = ["Advantage", "PolicySpec", "IPS", "ISAC", "ZeroSuccess", "BBG", "KLPenalty", "DPH",
           "Entropy", "Memory", "check_choice", "STAGES"]

STAGES = ("shaper", "advantage", "weight", "policy", "regulariser", "sampler")


@dataclass(frozen=True)
class Advantage:
    """Group advantage estimator (§1). k: passk's k; beta_rank: unlikeliness; baseline: reinforce."""

    key: ClassVar[str] = "advantage"
    stage: ClassVar[str] = "advantage"

    kind: str = "grpo"
    std: str = "group"
    ddof: int = 1
    eps: float = 1e-6
    k: int = 4
    beta_rank: float = 0.25
    baseline: float = 0.0

    def __post_init__(self):
        check_choice("advantage.kind", self.kind, tuple(ADVANTAGES))
        check_choice("advantage.std", self.std, STD_MODES)
        check_int("advantage.ddof", self.ddof, 0)
        check_float("advantage.eps", self.eps, 0)
        check_int("advantage.k", self.k, 1)
        check_float("advantage.beta_rank", self.beta_rank, 0, 1)
        check_float("advantage.baseline", self.baseline)

    def kernel_codes(self) -> dict:
        """Encoding for the simulator's numba kernels (sim/layout.py slot name -> value)."""
        return {"ADV": self.kind, "STD": self.std, "DDOF": self.ddof, "PASSK_K": self.k, "EPS": self.eps,
                "BETA_RANK": self.beta_rank, "BASELINE": self.baseline}

    @property
    def needs(self) -> frozenset:
        return frozenset()

    @property
    def flat_zero(self) -> bool:
        """A group whose (shaped) rewards are all equal gets A = 0 (unlikeliness re-ranks them)."""
        return self.kind in ("grpo", "dr_grpo", "rloo", "passk")

    def __call__(self, batch: Batch, rewards: Tensor, reduce=None) -> Tensor:
        extra = {"passk": {"k": self.k, "success_threshold": batch.success_threshold},
                 "unlikeliness": {"logp": batch.old_logp if batch.old_logp is not None else batch.logp,
                                  "mask": batch.mask, "beta_rank": self.beta_rank},
                 "reinforce": {"baseline": self.baseline}}.get(self.kind, {})
        return group_advantages(rewards, batch.group, self.kind, std=self.std, ddof=self.ddof,
                                eps=self.eps, reduce=reduce, **extra)


@dataclass(frozen=True)
class PolicySpec:
    """Clipped surrogate settings (§4): clip range, dual clip, aggregation mode, ratio level."""

    key: ClassVar[str] = "policy"
    stage: ClassVar[str] = "policy"
    needs: ClassVar[frozenset] = frozenset()

    clip_low: float = 0.2
    clip_high: float = 0.2
    dual_clip: float | None = None
    agg: str = "token-mean"
    level: str = "token"

    def __post_init__(self):
        check_float("policy.clip_low", self.clip_low, 0, 1)
        check_float("policy.clip_high", self.clip_high, 0)
        check_float("policy.dual_clip", self.dual_clip, 1, lo_open=True, none=True)
        check_choice("policy.agg", self.agg, AGG_MODES)
        check_choice("policy.level", self.level, LEVELS)

    def kernel_codes(self) -> dict:
        """Encoding for the simulator's numba kernels (sim/layout.py slot name -> value); `level` needs
        none: the simulator's responses have one token, where token and sequence ratios coincide."""
        return {"AGG": self.agg, "CLIP_LO": self.clip_low, "CLIP_HI": self.clip_high,
                "DUAL": self.dual_clip is not None, "DUAL_C": 0.0 if self.dual_clip is None else self.dual_clip}


@dataclass(frozen=True)
class IPS:
    """Inverse probability scaling of rewards (paper D): r / max(n_o/G, eps)^power."""

    key: ClassVar[str] = "ips"
    stage: ClassVar[str] = "shaper"
    needs: ClassVar[frozenset] = frozenset({"outcome"})
    flat_zero: ClassVar[bool] = False  # equal rewards, different outcomes: shaped rewards differ

    eps: float = 0.01
    power: float = 1.0  # exponent of the inverse propensity (1: plain IPS, 0: no shaping)

    def __post_init__(self):
        check_float("ips.eps", self.eps, 0, 1, lo_open=True)
        check_float("ips.power", self.power, 0)

    def kernel_codes(self) -> dict:
        """Encoding for the simulator's numba kernels (sim/layout.py slot name -> value)."""
        return {"IPS": True, "IPS_EPS": self.eps, "IPS_POWER": self.power}

    def __call__(self, batch: Batch, rewards: Tensor, reduce=None) -> Tensor:
        return ips_rewards(rewards, _need(batch, "outcome", "ips"), batch.group, self.eps, self.power)


@dataclass(frozen=True)
class ISAC:
    """Inverse-success advantage calibration (paper A): correct samples' A times (G - c)^exponent."""

    key: ClassVar[str] = "isac"
    stage: ClassVar[str] = "weight"
    needs: ClassVar[frozenset] = frozenset()
    flat_zero: ClassVar[bool] = True  # multiplies A

    exponent: float = 1.0
    normalize: bool = False

    def __post_init__(self):
        check_float("isac.exponent", self.exponent, 0)
        check_bool("isac.normalize", self.normalize)

    def kernel_codes(self) -> dict:
        """Encoding for the simulator's numba kernels (sim/layout.py slot name -> value; the weight's
        own kernel code is looked up by its key)."""
        return {"ISAC_EXPONENT": self.exponent, "ISAC_NORM": self.normalize}

    def __call__(self, batch: Batch, adv: Tensor, reduce=None) -> Tensor:
        m = isac_multiplier(batch.success, batch.group, self.exponent, self.normalize, reduce)
        return adv * m.to(adv.dtype)


@dataclass(frozen=True)
class ZeroSuccess:
    """Zero-success gating (paper C intervention): train a prompt only until it is first solved."""

    key: ClassVar[str] = "zero_success"
    stage: ClassVar[str] = "weight"
    flat_zero: ClassVar[bool] = True  # multiplies A

    counts: str = "history"
    max_success: int = 1

    def __post_init__(self):
        check_choice("zero_success.counts", self.counts, COUNT_SOURCES)
        check_int("zero_success.max_success", self.max_success, 0)

    def kernel_codes(self) -> dict:
        """Encoding for the simulator's numba kernels (sim/layout.py slot name -> value)."""
        return {"ZS_COUNTS": self.counts == "history", "ZS_MAX": self.max_success}

    @property
    def needs(self) -> frozenset:
        return frozenset({"prior_success"}) if self.counts == "history" else frozenset()

    def __call__(self, batch: Batch, adv: Tensor, reduce=None) -> Tensor:
        gate = zero_success_gate(batch.success, batch.group, self.counts, batch.prior_success,
                                 self.max_success)
        return adv * gate.to(adv.dtype)


@dataclass(frozen=True)
class BBG:
    """Bayesian Boundary Gating (paper C): A * u(m)/u(1), gated; all-fail groups get -lambda_neg * w."""

    key: ClassVar[str] = "bbg"
    stage: ClassVar[str] = "weight"
    flat_zero: ClassVar[bool] = False  # all-failure groups are pushed down by design

    k_ref: int = 16
    tau: float = 0.01
    lambda_neg: float = 1.0
    counts: str = "group"

    def __post_init__(self):
        check_int("bbg.k_ref", self.k_ref, 1)
        check_float("bbg.tau", self.tau, 0)
        check_float("bbg.lambda_neg", self.lambda_neg, 0)
        check_choice("bbg.counts", self.counts, COUNT_SOURCES)

    def kernel_codes(self) -> dict:
        """Encoding for the simulator's numba kernels (sim/layout.py slot name -> value)."""
        return {"BBG_COUNTS": self.counts == "history", "BBG_KREF": self.k_ref, "BBG_TAU": self.tau,
                "BBG_LAMBDA": self.lambda_neg}

    @property
    def needs(self) -> frozenset:
        return frozenset({"prior_success", "prior_trials"}) if self.counts == "history" else frozenset()

    def __call__(self, batch: Batch, adv: Tensor, reduce=None) -> Tensor:
        c, size = group_success_counts(batch.success, batch.group)  # (B,) float64 each
        m, n = c, size
        if self.counts == "history":
            m = c + _need(batch, "prior_success", "bbg(counts='history')").double()
            n = size + _need(batch, "prior_trials", "bbg(counts='history')").double()
        w = bbg_weights(m, n, self.k_ref, self.tau).to(adv.dtype)
        # all-failure groups carry no group-relative signal: signed REINFORCE on failures [ours]
        neg = torch.full_like(adv, -self.lambda_neg) * w
        return torch.where(c == 0, neg, adv * w)
