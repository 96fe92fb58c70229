"""Numeric flow predictions: log-ratio laws as functions of time (docs/theory.md items 1-5).

Time t is continuous flow time; a discrete run with step eta at step n sits at t = n (the
functions take eta and use eta * t). Flows (kind names used throughout):
- "pg":   dz_i/dt = p_i (r_i - J)                      (item 1)
- "npg":  dz_i/dt = r_i                                 (item 2)
- "ips":  dz_i/dt = r_i p_i^(1-alpha) - p_i sum_o r_o p_o^(1-alpha)   (item 3; alpha = 1 default)
Their symbolic derivations are in `collapse_lab.theory.flows`; the vector fields below are the
closed forms those derivations return (checked against them in tests/theory).
"""

from __future__ import annotations

import numpy as np

from . import flows
from ._numerics import bisect_decreasing, cached_lambdify, check_int, ode_solve

FLOWS = ("pg", "npg", "ips")


def _softmax(z):
    z = np.asarray(z, dtype=float)
    e = np.exp(z - z.max(axis=-1, keepdims=True))
    return e / e.sum(axis=-1, keepdims=True)


def flow_velocity(flow: str, z, r, alpha: float = 1.0) -> np.ndarray:
    """dz/dt of the named flow at logits z (..., K) with rewards r (K,)."""
    p, r = _softmax(z), np.asarray(r, dtype=float)
    if flow == "pg":
        return p * (r - np.sum(p * r, axis=-1, keepdims=True))
    if flow == "npg":
        return np.broadcast_to(r, p.shape).copy()
    if flow == "ips":
        w = r * p ** (1.0 - alpha)  # r_o p_o^(1-alpha)
        return w - p * np.sum(w, axis=-1, keepdims=True)
    raise ValueError(f"flow must be one of {FLOWS}, got {flow!r}")


def flow_solve(flow: str, z0, r, t, eta: float = 1.0, alpha: float = 1.0) -> np.ndarray:
    """Logits z(t) of the named flow from z0 (K,), at the times t (T,); shape (T, K).

    Adaptive RK45 (rtol 1e-11), so the result carries integration error only (~1e-9).
    """
    t = np.atleast_1d(np.asarray(t, dtype=float))
    return ode_solve(lambda _, z: eta * flow_velocity(flow, z, r, alpha), z0, t)


def logratio_rate(flow: str, p, r, i: int, j: int, alpha: float = 1.0) -> np.ndarray:
    """d/dt log(p_i/p_j): pg p_i a_i - p_j a_j (item 1); npg r_i - r_j (item 2);
    ips (r_i - r_j) - (p_i - p_j) sum r for alpha = 1 (item 3)."""
    v = flow_velocity(flow, np.log(np.asarray(p, dtype=float)), r, alpha)
    return v[..., i] - v[..., j]


def npg_logratio(L0, r_i, r_j, t, eta: float = 1.0) -> np.ndarray:
    """Item 2, exact: log(p_i/p_j)(t) = log(p_i/p_j)(0) + eta t (r_i - r_j)."""
    return np.asarray(L0, float) + eta * np.asarray(t, float) * (np.asarray(r_i) - np.asarray(r_j))


def pg_logratio_k2(u0, delta, t, eta: float = 1.0) -> np.ndarray:
    """Item 1, K = 2 vanilla PG: u = z_1 - z_2 solves u + sinh u = Delta eta t + u0 + sinh u0.

    Delta = r_1 - r_2. Solved by bisection on |u| <= asinh|v| (u + sinh u is increasing).
    """
    u0, delta, t = np.broadcast_arrays(*(np.asarray(x, dtype=float) for x in (u0, delta, t)))
    v = u0 + np.sinh(u0) + delta * eta * t
    b = np.arcsinh(np.abs(v)) + 1e-12
    return bisect_decreasing(lambda u: v - u - np.sinh(u), -b, b)


def _ips_k2_H(u, r1, r2):
    # 2 r1 H(u), H from flows.ips_k2_invariant, with log|.| so that both sides of u* are real.
    with np.errstate(divide="ignore"):
        return u - (r1 + r2) / r2 * np.log(np.abs(r1 - r2 * np.exp(u)))


def ips_logratio_k2(u0, r1: float, r2: float, t, eta: float = 1.0) -> np.ndarray:
    """Item 3, K = 2 IPS flow: u(t) = z_1 - z_2 with du/dt = (r1 - r2) - (r1 + r2) tanh(u/2).

    For r1, r2 > 0: u - ((r1 + r2)/r2) log|r1 - r2 e^u| = 2 r1 eta t + const (`ips_k2_invariant`),
    u -> u* = log(r1/r2) monotonically; solved by bisection between u0 and u*. If r2 = 0,
    (1 + e^u) du = 2 r1 dt gives u + e^u = 2 r1 eta t + const (u -> infinity); r1 = 0 by symmetry.
    """
    if r1 < 0 or r2 < 0 or r1 + r2 == 0:
        raise ValueError("r1, r2 must be >= 0 and not both 0")
    if r1 == 0:
        return -ips_logratio_k2(-np.asarray(u0, float), r2, 0.0, t, eta)
    u0, t = np.broadcast_arrays(np.asarray(u0, float), np.asarray(t, float))
    s = 2 * r1 * eta * t
    if r2 == 0:
        v = u0 + np.exp(u0) + s
        return bisect_decreasing(lambda u: v - u - np.exp(u), np.minimum(u0, v - 1), v)
    ustar = np.log(r1 / r2)
    target = _ips_k2_H(u0, r1, r2) + s
    up = u0 < ustar  # u increases toward u* from below
    sign = np.where(up, 1.0, -1.0)
    lo, hi = np.where(up, u0, ustar), np.where(up, ustar, u0)
    # (H - target) increases along the direction of motion; flip sign so g decreases in u when up.
    with np.errstate(invalid="ignore"):  # u0 == u*: an empty bracket, fixed below
        u = bisect_decreasing(lambda u: sign * (target - _ips_k2_H(u, r1, r2)), lo, hi)
    return np.where(u0 == ustar, ustar, u)


def pg_asymptote(K: int, eta) -> np.ndarray:
    """Item 1: lim t (r* - J_t) = (K - 1)/(K eta) for the discrete exact-gradient iteration
    z <- z + eta p (r - J) with a unique optimum (K = 4, eta = 0.4: 1.875)."""
    check_int("K", K, 2)
    fn = cached_lambdify("pg_asymptote", lambda: (
        [flows.sp.Symbol("K", positive=True), flows.ETA], flows.pg_asymptote_expr()))
    return np.asarray(fn(float(K), np.asarray(eta, dtype=float)))


def mei_gap_bound(c, t) -> np.ndarray:
    """Mei et al. 2020 at eta = 2/5 (item 1, [S]): r* - J_t <= 5 / (c^2 t), c = inf_t p_t(a*)."""
    return 5.0 / (np.asarray(c, float) ** 2 * np.asarray(t, float))


def partial_tie_exponent(n_worse) -> np.ndarray:
    """Item 4: p_j / p_1 ~ t^(-|W|/(|W|+1)) for the less likely of two tied correct outcomes."""
    fn = cached_lambdify("partial_tie", lambda: (
        [flows.sp.Symbol("n_W", positive=True)], flows.partial_tie_exponent_expr()))
    return np.asarray(fn(np.asarray(n_worse, dtype=float)))


def entropy_change(p, dz) -> np.ndarray:
    """Item 5: first-order entropy change dH = -Cov_p(log p, dz) for a logit change dz (..., K)."""
    p, dz = np.asarray(p, float), np.asarray(dz, float)
    with np.errstate(divide="ignore", invalid="ignore"):
        logp = np.where(p > 0, np.log(p), 0.0)
    e_l, e_d = np.sum(p * logp, -1), np.sum(p * dz, -1)
    return -(np.sum(p * logp * dz, -1) - e_l * e_d)
