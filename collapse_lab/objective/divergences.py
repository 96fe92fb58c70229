"""Divergences to the reference policy (docs/methods.md §3): per-token estimators and exact categorical forms.

Per token, d = logp - ref_logp and u = exp(d) = pi / pi_ref:

    k1       d                                       KL(pi || ref), on policy samples
    k2       d^2 / 2                                 KL(pi || ref), low bias
    k3       exp(-d) - 1 + d                         KL(pi || ref), unbiased, low variance
    forward  u - log u - 1                           KL(ref || pi), on *reference* samples (DPH-F)
    js       u log u - (u+1) log((u+1)/2)            JS generator (= 2 JS), reference samples (DPH-JS)
    alpha    (u^(1-a) - (1-a) u - a) / (a (a-1))     alpha-divergence, reference samples

As in DPH-RL's `dp_actor.py`, d is clamped to [-20, 20] and the term to [-10, 10] for k3, forward,
js and alpha (k1 and k2 follow verl, unclamped). The exact forms treat D_f(pi || ref) =
sum_y ref(y) f(pi(y)/ref(y)) for a categorical policy (the simulator's flow mode), with the closed
gradient dD_f/dz_j = pi_j (f'(u_j) - E_pi f'(u)) (docs/theory.md item 17).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor

__all__ = [
    "divergence",
    "DIVERGENCES",
    "REFERENCE_SAMPLED",
    "f_generator",
    "categorical_divergence",
    "categorical_divergence_grad",
    "CLAMP_LOG",
    "CLAMP_TERM",
    "DEFAULT_ALPHA",
]

LOG2 = math.log(2.0)
CLAMP_LOG = 20.0  # DPH-RL `dp_actor.py`: the log-ratio d is clamped to [-CLAMP_LOG, CLAMP_LOG] ...
CLAMP_TERM = 10.0  # ... and the term to [-CLAMP_TERM, CLAMP_TERM] (k3, forward, js, alpha)
DEFAULT_ALPHA = 0.2  # alpha of the alpha-divergence when none is given (unused by k1-k3 and forward/js)
REFERENCE_SAMPLED = frozenset({"forward", "js", "alpha"})
_CLAMPED = frozenset({"k3", "forward", "js", "alpha"})


def _check_alpha(alpha: float) -> None:
    if not 0.0 < alpha < 1.0:
        raise ValueError(f"alpha-divergence needs alpha in (0, 1), got alpha={alpha}")


def _term(kind: str, d: Tensor, alpha: float) -> Tensor:
    """Per-token term for log-ratio d (already clamped where applicable)."""
    if kind == "k1":
        return d
    if kind == "k2":
        return 0.5 * d * d
    if kind == "k3":
        return torch.expm1(-d) + d
    if kind == "forward":
        return torch.expm1(d) - d
    if kind == "js":  # u d - (u+1)(log(u+1) - log 2), log(1+u) = softplus(d)
        u = torch.exp(d)
        return u * d - (u + 1.0) * (F.softplus(d) - LOG2)
    _check_alpha(alpha)  # "alpha"
    return (torch.exp((1.0 - alpha) * d) - (1.0 - alpha) * torch.exp(d) - alpha) / (alpha * (alpha - 1.0))


DIVERGENCES = ("k1", "k2", "k3", "forward", "js", "alpha")


def divergence(logp: Tensor, ref_logp: Tensor, kind: str, alpha: float = DEFAULT_ALPHA,
               clamp_log: float = CLAMP_LOG, clamp_term: float = CLAMP_TERM) -> Tensor:
    """Per-token divergence term, same shape as logp ([B] or [B, T]); see the module table.

    `forward`, `js` and `alpha` must be evaluated on samples drawn from the reference policy
    (E_ref of the term is the divergence); `k1`-`k3` on samples from the policy.
    """
    if kind not in DIVERGENCES:
        raise ValueError(f"unknown divergence {kind!r}; valid: {', '.join(DIVERGENCES)}")
    if logp.shape != ref_logp.shape:
        raise ValueError(f"logp shape {tuple(logp.shape)} does not match ref_logp shape {tuple(ref_logp.shape)}")
    d = logp - ref_logp
    if kind in _CLAMPED:
        d = d.clamp(-clamp_log, clamp_log)
        return _term(kind, d, alpha).clamp(-clamp_term, clamp_term)
    return _term(kind, d, alpha)


# Exact categorical forms. Generators f with f(1) = 0, f'(1) = 0 (so every term is >= 0):
#   reverse KL  f = u log u - u + 1,  f' = log u
#   forward KL  f = u - log u - 1,    f' = 1 - 1/u
#   JS          f = u log u - (u+1) log((u+1)/2),  f' = log(2u/(u+1))
#   alpha       f = (u^(1-a) - (1-a)u - a)/(a(a-1)),  f' = (1 - u^(-a))/a
_EXACT_KIND = {"k1": "reverse_kl", "k2": "reverse_kl", "k3": "reverse_kl", "reverse_kl": "reverse_kl",
               "forward": "forward", "js": "js", "alpha": "alpha"}


def f_generator(kind: str, alpha: float = DEFAULT_ALPHA):
    """(f, f') of the f-divergence behind `kind`, as functions of the log-ratio d = log u."""
    exact = _resolve(kind)
    if exact == "reverse_kl":
        return (lambda d: torch.exp(d) * d - torch.expm1(d)), (lambda d: d)
    if exact == "forward":
        return (lambda d: torch.expm1(d) - d), (lambda d: -torch.expm1(-d))
    if exact == "js":
        return (lambda d: _term("js", d, alpha)), (lambda d: LOG2 + d - F.softplus(d))
    _check_alpha(alpha)
    return (lambda d: _term("alpha", d, alpha)), (lambda d: -torch.expm1(-alpha * d) / alpha)


def _resolve(kind: str) -> str:
    if kind not in _EXACT_KIND:
        raise ValueError(f"unknown divergence {kind!r}; valid: {', '.join(_EXACT_KIND)}")
    return _EXACT_KIND[kind]


def categorical_divergence(logits: Tensor, ref_logits: Tensor, kind: str, alpha: float = DEFAULT_ALPHA) -> Tensor:
    """Exact D_f(pi || ref) = sum_y ref_y f(pi_y / ref_y) over the last axis [..., K] -> [...].

    k1/k2/k3/reverse_kl give KL(pi || ref); forward gives KL(ref || pi); js and alpha their f.
    """
    if logits.shape != ref_logits.shape:
        raise ValueError(f"logits shape {tuple(logits.shape)} does not match ref_logits {tuple(ref_logits.shape)}")
    logpi, logref = F.log_softmax(logits, -1), F.log_softmax(ref_logits, -1)
    f, _ = f_generator(kind, alpha)
    return (logref.exp() * f(logpi - logref)).sum(-1)


def categorical_divergence_grad(logits: Tensor, ref_logits: Tensor, kind: str,
                                alpha: float = DEFAULT_ALPHA) -> Tensor:
    """Closed-form gradient dD_f/dz_j = pi_j (f'(u_j) - E_pi f'(u)) for pi = softmax(z) -> [..., K]."""
    if logits.shape != ref_logits.shape:
        raise ValueError(f"logits shape {tuple(logits.shape)} does not match ref_logits {tuple(ref_logits.shape)}")
    logpi, logref = F.log_softmax(logits, -1), F.log_softmax(ref_logits, -1)
    _, fprime = f_generator(kind, alpha)
    pi, g = logpi.exp(), fprime(logpi - logref)
    return pi * (g - (pi * g).sum(-1, keepdim=True))
