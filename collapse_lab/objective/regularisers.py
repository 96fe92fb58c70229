"""The regulariser and sampler components (docs/methods.md §2-§3), same protocol as components.py:
reverse KL on policy samples, DPH's f-divergence on reference samples, entropy bonus, memory sampler.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

import torch
from torch import Tensor

from .batch import Batch
from .checks import check_bool, check_choice, check_float, check_int
from .divergences import DEFAULT_ALPHA, REFERENCE_SAMPLED, divergence

__all__ = ["KLPenalty", "DPH", "Entropy", "Memory"]


def _need(batch: Batch, field: str, who: str):
    value = getattr(batch, field)
    if value is None:
        raise ValueError(f"{who} needs Batch.{field}, which is None")
    return value


@dataclass(frozen=True)
class KLPenalty:
    """KL to the reference on policy samples (verl names k1/k2/k3), in the loss or in the reward.

    With d = log pi(y) - log ref(y) and y ~ pi (on-policy), grad_theta E_pi[k(d)] is not E_pi[grad k(d)]
    (the samples depend on the policy), so the loss term's expected gradient is, per estimator:
        k1 in the loss     E[grad d] = sum_y grad pi(y) = 0                       -> nothing
        k2 in the loss     E[d grad log pi] = grad KL(pi || ref)                  -> "reverse_kl"
        k3 in the loss     E[(1 - ref/pi) grad log pi] = -sum_y ref grad log pi
                           = grad KL(ref || pi)  (mass-covering, although k3's value estimates
                           KL(pi || ref); verl `low_var_kl`, DPH-RL's baseline)  -> "forward"
        k1 in the reward   policy-gradient part -E[A grad log pi] with A = -beta d + (terms whose
                           baseline does not depend on the sample: REINFORCE, RLOO) -> "reverse_kl";
                           GRPO's std division and dr_grpo's own-sample mean bias it; k2 or k3 in the
                           reward have no divergence gradient (None).
    `expected_gradient_of` states it for the enumeration check of objective.testing.
    """

    key: ClassVar[str] = "kl"
    stage: ClassVar[str] = "regulariser"

    kind: str = "k3"
    beta: float = 0.05
    in_reward: bool = False

    def __post_init__(self):
        check_choice("kl.kind", self.kind, ("k1", "k2", "k3"))
        check_float("kl.beta", self.beta, 0)
        check_bool("kl.in_reward", self.in_reward)

    def kernel_codes(self) -> dict:
        """Encoding for the simulator's numba kernels (sim/layout.py slot name -> value)."""
        return {"KL": self.kind, "KL_IN_REWARD": self.in_reward, "KL_BETA": self.beta}

    @property
    def needs(self) -> frozenset:
        return frozenset({"ref_logp"}) if self.beta > 0 else frozenset()

    @property
    def expected_gradient_of(self) -> str | None:
        """categorical_divergence kind whose gradient the term has in expectation (class docstring):
        in the loss None means zero; in the reward only k1 has one (with an unbiased baseline)."""
        if self.in_reward:
            return "reverse_kl" if self.kind == "k1" else None
        return {"k1": None, "k2": "reverse_kl", "k3": "forward"}[self.kind]

    def term(self, batch: Batch) -> Tensor:
        """Per-token term [B, T] on the batch's own samples."""
        return divergence(batch.logp, _need(batch, "ref_logp", "reverse KL"), self.kind)

    def shape_rewards(self, batch: Batch, rewards: Tensor) -> Tensor:
        """r - beta * sum_t k(d_t) (detached) when the penalty sits in the reward."""
        per_seq = (self.term(batch).detach() * batch.token_mask).sum(-1)
        return rewards - self.beta * per_seq.to(rewards.dtype)


@dataclass(frozen=True)
class DPH:
    """DPH-RL (paper B): eta * f-divergence on stored reference samples; D_pef/D_exp split settings.

    On reference samples y ~ ref the term's expectation is D_f(pi || ref), and so is its expected
    gradient (the samples do not depend on the policy): forward -> KL(ref || pi), js, alpha.
    """

    key: ClassVar[str] = "dph"
    stage: ClassVar[str] = "regulariser"
    needs: ClassVar[frozenset] = frozenset({"ref_samples"})

    kind: str = "js"
    eta: float = 0.1
    order: float = DEFAULT_ALPHA  # the alpha-divergence's order (kind "alpha" only)
    n_pre: int = 8
    n_ref: int = 1

    def __post_init__(self):
        check_choice("dph.kind", self.kind, sorted(REFERENCE_SAMPLED))
        check_float("dph.eta", self.eta, 0)
        check_float("dph.order", self.order, 0, 1, lo_open=True, hi_open=True)
        check_int("dph.n_pre", self.n_pre, 1)
        check_int("dph.n_ref", self.n_ref, 1)

    def kernel_codes(self) -> dict:
        """Encoding for the simulator's numba kernels (sim/layout.py slot name -> value; None keeps the
        slot's "no term" default). n_pre / n_ref are read by the simulator's D_pef split, not the kernel."""
        return {"DPH": self.kind if self.eta > 0 else None, "DPH_ETA": self.eta, "DPH_ORDER": self.order}

    @property
    def expected_gradient_of(self) -> str:
        return self.kind

    def term(self, batch: Batch) -> tuple[Tensor, Tensor]:
        """(per-token term [R, T], mask [R, T]) on the reference samples."""
        ref = _need(batch, "ref_samples", f"dph_{self.kind}")
        mask = torch.ones_like(ref.logp) if ref.mask is None else ref.mask.to(ref.logp.dtype)
        return divergence(ref.logp, ref.ref_logp, self.kind, alpha=self.order), mask


@dataclass(frozen=True)
class Entropy:
    """Entropy bonus: loss -= coef * aggregate(token entropy)."""

    key: ClassVar[str] = "entropy"
    stage: ClassVar[str] = "regulariser"

    coef: float = 0.01

    def __post_init__(self):
        check_float("entropy.coef", self.coef)

    def kernel_codes(self) -> dict:
        """Encoding for the simulator's numba kernels (sim/layout.py slot name -> value)."""
        return {"ENT": self.coef != 0, "ENT_COEF": self.coef}

    @property
    def needs(self) -> frozenset:
        return frozenset({"entropy"}) if self.coef != 0 else frozenset()


@dataclass(frozen=True)
class Memory:
    """Distribution-level calibration (paper A): sample from softmax(z - mu z_mem); memory trained by CE.

    Sampling-side only: the loss is the recipe's usual one with old_logp = the sampling log-probs.
    """

    key: ClassVar[str] = "memory"
    stage: ClassVar[str] = "sampler"
    needs: ClassVar[frozenset] = frozenset({"old_logp"})

    mu: float = 0.5
    lr: float = 0.1

    def __post_init__(self):
        check_float("memory.mu", self.mu, 0)
        check_float("memory.lr", self.lr, 0, lo_open=True)

    def kernel_codes(self) -> dict:
        """Encoding for the simulator's numba kernels (sim/layout.py slot name -> value): rollouts are
        off-policy; mu and lr are used by the simulator's sampler and memory update, outside the kernel."""
        return {"OFF_POLICY": True}
