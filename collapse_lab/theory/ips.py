"""Finite-group IPS mean field and its rest point (docs/theory.md item 8, docs/methods.md §2 paper D).

One IPS step on a tabular softmax p over K outcomes (outcome = its own id), G samples from p,
shaped reward r~_n = r(y_n) f(n_{y_n}), f(n) = 1 / max(n/G, eps)^alpha (objective `ips_rewards`),
per-sample update dz = (1/G) sum_n A_n (e_{y_n} - p) per unit step, with
  baseline=False: A_n = r~_n                       (REINFORCE on the shaped reward)
  baseline=True:  A_n = r~_n - mean_m r~_m         (objective `ips_rewards` + `dr_grpo`)
  baseline="grpo": A_n = grpo(r~)_n                (objective `ips_rewards` + `grpo`; enumeration)
Both exact forms are E[dz_k] = p_k F_k(p) with per-outcome binomial sums (n_o ~ Binom(G, p_o),
and given that sample 1 is k, the others' counts are Binom(G-1, p_o)). With B_o ~ Binom(G-1, p_o):
  a_o = E f(1+B_o),  b_o = E[(1+B_o) f(1+B_o)],  c_o = E[B_o f(B_o)]
  no baseline: F_k = r_k a_k - sum_o r_o p_o a_o
  mean baseline: F_k = r_k a_k - (1/G) (r_k b_k + sum_{o != k} r_o c_o).
alpha = 1, eps < 1/G, no baseline: p_k a_k = phi_k = 1 - (1 - p_k)^G (docs/theory.md item 8).
"""

from __future__ import annotations

import itertools

import numpy as np
import sympy as sp

from ._numerics import binom_pmf, check_int

BASELINES = (False, True, "mean", "grpo")


def _shape_factor(n, G, eps, alpha):
    return 1.0 / np.maximum(n / G, eps) ** alpha  # f(n), (n,)


def ips_growth_rates(r, pi, G: int, baseline=False, eps: float = 0.01, alpha: float = 1.0):
    """F(p) with E[dz_k] = p_k F_k(p) (module docstring); (..., K). Exact also at p_k = 0, where
    F_k is the invasion rate of an absent outcome k."""
    r, pi = np.asarray(r, dtype=float), np.asarray(pi, dtype=float)
    b = np.arange(G, dtype=float)  # values of B ~ Binom(G-1, p)
    pmf = binom_pmf(G - 1, pi)  # (..., K, G)
    f1, f0 = _shape_factor(b + 1, G, eps, alpha), _shape_factor(b, G, eps, alpha)
    a = pmf @ f1
    if baseline is False:
        return r * a - np.sum(r * pi * a, axis=-1, keepdims=True)
    bb, cc = pmf @ ((b + 1) * f1), pmf @ (b * f0)
    rc = np.sum(r * cc, axis=-1, keepdims=True)
    return r * a - (r * bb + rc - r * cc) / G


def _validate(r, pi, G, baseline):
    r = np.asarray(r, dtype=float)
    if r.ndim != 1 or r.size < 2 or np.any(r < 0):
        raise ValueError("r must be a 1-D array of K >= 2 non-negative rewards")
    if baseline not in BASELINES:
        raise ValueError(f"baseline must be one of {BASELINES}, got {baseline!r}")
    G = check_int("G", G, 2 if baseline else 1)
    if pi is not None:
        pi = np.asarray(pi, dtype=float)
        if pi.shape[-1] != r.size or np.any(pi < 0) or np.any(np.abs(pi.sum(-1) - 1) > 1e-9):
            raise ValueError("pi must be probability vectors (..., K) matching r")
    return r, pi, G


def ips_mean_field(r, pi, G: int, baseline=False, eps: float = 0.01, alpha: float = 1.0,
                   ddof: int = 1) -> np.ndarray:
    """Item 8: exact E[dz] of one IPS step with G samples from pi, per unit step size; (..., K).

    baseline False / True ("mean") use the closed binomial sums of the module docstring (O(K G));
    "grpo" enumerates the multinomial compositions and calls the objective (ips_rewards + grpo
    with `ddof`, eps 1e-6); it is exponential in K, refused above 2e6 compositions.
    """
    r, pi, G = _validate(r, pi, G, baseline)
    if baseline == "grpo":
        return _enumerated_mean_field(r, pi, G, eps, alpha, ddof)
    return pi * ips_growth_rates(r, pi, G, baseline in (True, "mean"), eps, alpha)


def ips_mean_field_expr(K: int = 3) -> sp.Matrix:
    """Item 8 closed form for alpha = 1, eps < 1/G, no baseline: r_k phi_k - p_k sum_o r_o phi_o,
    phi_o = 1 - (1 - p_o)^G (E[n_o f(n_o)]/G = P(n_o >= 1) since n f(n) = G for n >= 1)."""
    p, r = sp.symbols(f"p0:{K}", positive=True), sp.symbols(f"r0:{K}", nonnegative=True)
    G = sp.Symbol("G", positive=True, integer=True)
    phi = [1 - (1 - pk) ** G for pk in p]
    S = sum(rk * fk for rk, fk in zip(r, phi))
    return sp.Matrix([rk * fk - pk * S for rk, fk, pk in zip(r, phi, p)])


def _compositions(G, K):
    for cut in itertools.combinations(range(G + K - 1), K - 1):
        yield np.diff(np.concatenate([[-1], cut, [G + K - 1]])) - 1


def _enumerated_mean_field(r, pi, G, eps, alpha, ddof):
    import math

    import torch

    from collapse_lab.objective import group_advantages, ips_rewards

    K = r.size
    if math.comb(G + K - 1, K - 1) > 2_000_000 or pi.ndim != 1:
        raise ValueError("baseline='grpo' enumerates compositions: needs 1-D pi and <= 2e6 of them")
    comps = np.array(list(_compositions(G, K)))  # (S, K)
    y = np.stack([np.repeat(np.arange(K), c) for c in comps])  # (S, G) outcome of each sample
    groups = np.repeat(np.arange(len(comps)), G)
    rew = torch.from_numpy(r[y].ravel())
    out, grp = torch.from_numpy(y.ravel()), torch.from_numpy(groups)
    shaped = ips_rewards(rew, out, grp, eps=eps, alpha=alpha)
    A = group_advantages(shaped, grp, kind="grpo", ddof=ddof).numpy().reshape(y.shape)
    log_w = (math.lgamma(G + 1) - np.sum([[math.lgamma(n + 1) for n in c] for c in comps], 1)
             + np.sum(np.where(comps > 0, comps * np.log(np.where(pi > 0, pi, 1.0)), 0.0), 1))
    w = np.exp(log_w) * np.all((comps == 0) | (pi > 0), 1)  # multinomial probabilities (S,)
    onehot = np.eye(K)[y]  # (S, G, K)
    dz = np.einsum("sg,sgk->sk", A, onehot - pi) / G
    return w @ dz


def ips_rest_point(r, G: int, baseline=False, eps: float = 0.01, alpha: float = 1.0,
                   tol: float = 1e-9, max_steps: int = 2000) -> np.ndarray:
    """Item 8: the rest point of the finite-G IPS mean field dz/dt = p F(p) from a uniform start.

    Integrated by pseudo-transient continuation (backward Euler in z with growing steps, logit
    change per step capped at 1, so it follows the trajectory's basin while the step grows to
    1e16, after which it is Newton's method on the rest-point equations). Outcomes that go
    extinct (p < tol at the end, negative invasion rate F_k there) are reported as 0 and the rest
    renormalised. With no baseline, alpha = 1, G -> inf this tends to r / sum r (item 3).
    Caveats: an outcome whose invasion rate is within ~1e-7 of zero decays too slowly to pass
    tol and keeps a tiny mass; the capped steps follow the trajectory closely but are not an
    accurate ODE solve, so in a bistable case near a basin boundary the basin may differ.
    baseline: False or True ("mean"); "grpo" is not supported here.
    """
    r, _, G = _validate(r, None, G, baseline)
    if baseline == "grpo":
        raise ValueError("ips_rest_point supports baseline False or True only")
    use_b = baseline in (True, "mean")
    if not np.any(r > 0):
        return np.full(r.size, 1.0 / r.size)

    def V(z):  # (..., K) -> (..., K)
        p = np.exp(z - z.max(-1, keepdims=True))
        p /= p.sum(-1, keepdims=True)
        return p * ips_growth_rates(r, p, G, use_b, eps, alpha)

    z = np.zeros(r.size)
    h = 0.1 / max(np.abs(V(z)).max(), 1e-12)
    for _ in range(max_steps):
        z_new = _backward_euler(V, z, h)
        if z_new is None or np.abs(z_new - z).max() > 1.0:
            h *= 0.5
            continue
        z, h = z_new - z_new.max(), min(h * 1.5, 1e16)
        if h >= 1e16 and np.abs(V(z)).max() < 1e-14:
            break
    p = np.exp(z - z.max())
    p /= p.sum()
    F = ips_growth_rates(r, p, G, use_b, eps, alpha)
    p = np.where((p < tol) & (F <= 0), 0.0, p)
    return p / p.sum()


def _backward_euler(V, z, h, iters: int = 20):
    """Solve x = z + h V(x) by Newton with a forward-difference Jacobian; None if it fails."""
    K, x = z.size, z.copy()
    for _ in range(iters):
        d = 1e-7 * (1 + np.abs(x))
        X = np.vstack([x, x + np.diag(d)])  # (K+1, K): base point and perturbations
        VX = V(X)
        R = x - z - h * VX[0]
        Jv = (VX[1:] - VX[0]).T / d  # (K, K) dV_i/dx_j
        try:
            step = np.linalg.solve(np.eye(K) - h * Jv, -R)
        except np.linalg.LinAlgError:
            return None
        x = x + np.clip(step, -2.0, 2.0)
        if np.abs(step).max() < 1e-12 * (1 + np.abs(x).max()):
            return x
    return x if np.all(np.isfinite(x)) and np.abs(x - z - h * V(x)).max() < 1e-8 * (1 + h) else None


def ips_survival_threshold(r1: float, r2: float, G: int) -> float:
    """Item 8 [3rd party]: with the group-mean baseline and eps < 1/G, a minority outcome of
    reward r2 < r1 invades the majority's vertex iff alpha > ln(r1/r2)/ln(G-1). Exact for the
    mean field above: F_2 at p_2 = 0 is ((G-1)/G)(r2 G^alpha - r1 (G/(G-1))^alpha)."""
    G = check_int("G", G, 3)
    if not r1 > r2 > 0:
        raise ValueError("need r1 > r2 > 0")
    return float(np.log(r1 / r2) / np.log(G - 1))
