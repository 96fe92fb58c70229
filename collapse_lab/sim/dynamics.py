"""Deterministic dynamics: the flow (G = infinity) and the finite-group mean field of one update.

Both return the expected logit gradient E[dL/dz] [P, K] for the trained prompts; params.py maps it
to parameters and steps with lr.

flow (exact expected gradient at infinite group size, on-policy; scale s = 1/Pt from the
aggregation over Pt G samples, or 1/(number of kept prompts) for token-mean with dynamic sampling,
which drops prompts whose rewards are all equal):
    dL/dz_p = -s sum_y pi_y A_y (e_y - pi_p) + beta s dKL(pi||ref)/dz + eta s dD_f/dz - c_H s dH/dz
    A_y: grpo (x_y - E_pi x)/(sd_pi x + eps) (std group/batch/none), dr_grpo/rloo E-centred,
    reinforce x_y - b, passk with R = 1 - (1-P)^k; x_y = r_y [- beta k(d_y) in-reward]
    [/ max(pi_y, eps)^power for IPS: p_hat -> pi]. Divergence terms use the exact gradient of the
    divergence whose gradient the sampled term has in expectation (`expected_gradient_of`, by
    objective.categorical_divergence_grad): KL in the loss k2 (`reverse_kl`) -> KL(pi || ref),
    k3 (`k3_kl`) -> KL(ref || pi), k1 -> none; DPH -> its D_f. DPH in flow applies E[r] - eta D_f to every
    trained prompt (no D_pef split). Undefined (ValueError): ISAC, BBG, zero-success, unlikeliness,
    memory sampling.
mean_field (exact E over the G samples of each prompt):
    closed form for binary rewards and advantages that depend only on (r_i, c) (docs/theory.md item 7):
    E[dL/dz_p] = (G/Pt) (h1 - h0) pi_p (r_p - P_p) with h1 = E_m coef(success, m+1),
    h0 = E_m coef(failure, m), m ~ Binom(G-1, P_p); otherwise enumeration of the multinomial.
"""

from __future__ import annotations

import math

import numpy as np
import torch

from collapse_lab.objective import successes

from ..objective import IPS, categorical_divergence_grad, divergence, population_advantages
from . import kernels as kn
from .spec import recipe_codes

__all__ = ["flow_grad", "mean_field_grad", "closed_form_ok", "compositions", "binom_pmf"]

_FLOW_ADV = ("grpo", "dr_grpo", "rloo", "reinforce", "passk")


def flow_grad(rec, z, problem, tp) -> np.ndarray:
    """Expected logit gradient at G = infinity [P, K] (module docstring) for logits z [P, K]."""
    if rec.weights or rec.memory is not None or rec.advantage.kind not in _FLOW_ADV:
        raise ValueError(f"flow mode is undefined for recipe {rec.name!r} (needs finite groups); "
                         f"flow supports advantages {', '.join(_FLOW_ADV)} without weights/memory")
    zt = torch.from_numpy(z[tp])
    lp = torch.log_softmax(zt, -1).numpy()
    pi = np.exp(lp)
    r = problem.rewards[tp]
    ref_lp = torch.log_softmax(torch.from_numpy(problem.logits[tp]), -1).numpy()
    x = r.copy()
    if rec.kl is not None and rec.kl.in_reward:
        x = x - rec.kl.beta * divergence(torch.from_numpy(lp), torch.from_numpy(ref_lp), rec.kl.kind).numpy()
    for sh in rec.shapers:
        if isinstance(sh, IPS):
            x = x / np.maximum(pi, sh.eps) ** sh.power
    adv = _flow_advantage(rec.advantage, x, pi, successes(r))
    keep = (r.max(1) > r.min(1)) if rec.dynamic_sampling else np.ones(len(tp), bool)
    n = max(int(keep.sum()), 1) if rec.policy.agg == "token-mean" else len(tp)
    s = 1.0 / n  # aggregation over n G samples; T_max = 1 for bandit responses
    g = -s * keep[:, None] * (pi * adv - pi * (pi * adv).sum(1, keepdims=True))
    kl_kind = None if rec.kl is None or rec.kl.in_reward else rec.kl.expected_gradient_of
    if kl_kind is not None and rec.kl.beta > 0:
        g += s * rec.kl.beta * keep[:, None] * categorical_divergence_grad(
            zt, torch.from_numpy(problem.logits[tp]), kl_kind).numpy()
    if rec.dph is not None and rec.dph.eta > 0:
        g += s * rec.dph.eta * categorical_divergence_grad(
            zt, torch.from_numpy(problem.logits[tp]), rec.dph.kind, rec.dph.order).numpy()
    if rec.needs_entropy:
        h = -(pi * lp).sum(1, keepdims=True)
        g += s * rec.entropy.coef * keep[:, None] * pi * (lp + h)  # -c_H dH/dz, dH/dz = -pi (lp + H)
    out = np.zeros_like(z)
    out[tp] = g
    return out


def _flow_advantage(a, x, pi, success):
    """Infinite-group advantage A_y [Pt, K] of each outcome: the objective's population_advantages."""
    adv = population_advantages(torch.from_numpy(x), torch.from_numpy(pi), a.kind, a.std, a.eps, a.k,
                                a.baseline, torch.from_numpy(success))
    return adv.numpy()


def closed_form_ok(rec, problem, tp) -> bool:
    """True when E[update] has the population-weight closed form (binary rewards, a = a(r, c))."""
    r = problem.rewards[tp]
    return (bool(np.all((r == 0) | (r == 1))) and rec.advantage.kind in _FLOW_ADV
            and not (rec.advantage.kind == "grpo" and rec.advantage.std == "batch")
            and not rec.shapers and rec.kl is None and rec.dph is None and rec.memory is None
            and not rec.dynamic_sampling and not rec.needs_history
            and not any(getattr(w, "normalize", False) for w in rec.weights))


def _enumerable(rec):
    bad = (rec.dynamic_sampling or rec.needs_history or rec.memory is not None or rec.dph is not None
           or rec.advantage.std == "batch" and rec.advantage.kind in ("grpo", "unlikeliness")
           or any(getattr(w, "normalize", False) for w in rec.weights))
    if bad:
        raise ValueError(f"mean_field mode is undefined for recipe {rec.name!r}: its update couples "
                         "prompts or depends on history/memory/reference draws (use mode='sampled')")


def binom_pmf(n: int, p: np.ndarray) -> np.ndarray:
    """Binom(m; n, p) for m = 0..n -> [..., n+1] (exact combinatorial coefficients)."""
    p = np.asarray(p, dtype=np.float64)[..., None]
    m = np.arange(n + 1)
    coef = np.array([math.comb(n, int(i)) for i in m], dtype=np.float64)
    return coef * p**m * (1.0 - p) ** (n - m)


def compositions(G: int, K: int) -> np.ndarray:
    """All count vectors n [C, K] with sum n = G (stars and bars, lexicographic)."""
    if K == 1:
        return np.array([[G]], dtype=np.int64)
    out = [np.concatenate([np.full((len(rest), 1), first), rest], 1)
           for first in range(G, -1, -1) for rest in [compositions(G - first, K - 1)]]
    return np.concatenate(out, 0)


def _kernel_grads(rec, z_rows, y, rewards, ref_lp):
    """recipe_grad on C single-prompt 'replicates' -> (g [C, K], coef [C, G])."""
    C, G = y.shape
    z3 = np.ascontiguousarray(z_rows[:, None, :])
    K = z3.shape[2]
    task = kn.Task(np.zeros(1, np.int64), rewards[None], ref_lp[None], -np.ones((1, 1), np.int64))
    out = kn.out_buffers(C, 1, 1, G, K)
    kn.recipe_grad(kn.Logits(z3, z3), kn.given_draws(y[:, None, :]), task, kn.no_history(C, 1),
                   recipe_codes(rec), out, kn.scratch(C, 1, G, K), kn.no_log_stats(), 0.0, True)
    return out.g[:, 0], out.coef[:, 0]


def mean_field_grad(rec, z, problem, tp, G, method="auto", max_compositions=200_000) -> np.ndarray:
    """Exact E[dL/dz] [P, K] of one G-sample update at logits z [P, K] (module docstring)."""
    _enumerable(rec)
    if method == "auto":
        method = "closed" if closed_form_ok(rec, problem, tp) else "enumerate"
    out = np.zeros_like(z)
    lp = torch.log_softmax(torch.from_numpy(z), -1).numpy()
    pi = np.exp(lp)
    ref_lp = torch.log_softmax(torch.from_numpy(problem.logits), -1).numpy()
    if method == "closed":
        if not closed_form_ok(rec, problem, tp):
            raise ValueError(f"no closed-form mean field for recipe {rec.name!r} on this problem")
        h1, h0 = _success_coefs(rec, G)
        for p in tp:
            P = float((pi[p] * problem.rewards[p]).sum())
            w = binom_pmf(G - 1, P)
            gp = G * (w @ h1 - w @ h0) * pi[p] * (problem.rewards[p] - P)
            if rec.needs_entropy:
                h = -(pi[p] * lp[p]).sum()
                gp += rec.entropy.coef * pi[p] * (lp[p] + h)
            out[p] = gp / len(tp)
        return out
    K = z.shape[1]
    if math.comb(G + K - 1, K - 1) > max_compositions:
        raise ValueError(f"mean_field enumeration needs C(G+K-1, K-1) = {math.comb(G + K - 1, K - 1)} "
                         f"> {max_compositions} compositions; reduce K or group_size")
    counts = compositions(G, K)
    y = np.repeat(np.tile(np.arange(K), (len(counts), 1)).ravel(), counts.ravel()).reshape(len(counts), G)
    logw = (math.lgamma(G + 1) - np.sum([[math.lgamma(c + 1) for c in row] for row in counts], 1))
    for p in tp:
        prob = np.exp(logw + (counts * np.where(counts > 0, lp[p], 0.0)).sum(1))
        g, _ = _kernel_grads(rec, np.repeat(z[p][None], len(counts), 0), y,
                             problem.rewards[p], ref_lp[p])
        out[p] = prob @ g / len(tp)
    return out


def _success_coefs(rec, G):
    """(h1[m] = coef of a success with m+1 successes, h0[m] = coef of a failure with m), m < G."""
    c = np.arange(G + 1)
    y = (np.arange(G)[None, :] >= c[:, None]).astype(np.int64)  # outcome 0 = correct, 1 = wrong
    _, coef = _kernel_grads(rec, np.zeros((G + 1, 2)), y, np.array([1.0, 0.0]), np.log([0.5, 0.5]))
    return coef[1:, 0], coef[:G, G - 1]
