"""Rare modes and neutral drift (docs/theory.md items 9 and 11).

- item 9: `tail_miss` — probability that a group of N gives a non-zero (mixed) update yet never
  samples a rare correct mode of probability tau;
- item 11: `neutral_drift_time` — expected time for the log-ratio of two exactly tied outcomes to
  reach |u| = U under REINFORCE without a baseline (a martingale), diffusion approximation.
"""

from __future__ import annotations

import numpy as np
import sympy as sp

from ._numerics import cached_lambdify, check_probabilities

TAU, C, N_ = sp.symbols("tau c N", positive=True)


def tail_miss_expr() -> sp.Expr:
    """Item 9 by inclusion-exclusion over the three classes (rare tau, other correct c, wrong w).

    {no rare sample} contains the disjoint events {all other-correct} and {all wrong}, the groups
    with zero update; removing them leaves (1-tau)^N - c^N - w^N with w = 1 - tau - c.
    """
    w = 1 - TAU - C
    no_rare, all_c, all_w = (1 - TAU) ** N_, C**N_, w**N_
    return no_rare - all_c - all_w


def tail_miss(tau, c, N) -> np.ndarray:
    """Item 9: (1 - tau)^N - c^N - w^N, w = 1 - tau - c (arrays broadcast; N >= 1 integer)."""
    tau, c = check_probabilities("tau", tau), check_probabilities("c", c)
    if np.any(tau + c > 1 + 1e-12):
        raise ValueError("tau + c must be <= 1")
    N = np.asarray(N)
    if np.any(N < 1) or np.any(N != np.round(N)):
        raise ValueError("N must be an integer >= 1")
    fn = cached_lambdify("tail_miss", lambda: ([TAU, C, N_], tail_miss_expr()))
    return np.asarray(fn(tau, c, N.astype(float)))


def tail_miss_peak(tau: float, c: float, n_max: int = 10_000) -> int:
    """The group size N in 1..n_max that maximises `tail_miss` (the non-monotonicity of item 9)."""
    n = np.arange(1, n_max + 1)
    return int(n[np.argmax(tail_miss(tau, c, n))])


# ---- item 11 -------------------------------------------------------------------------------

def neutral_drift_expr():
    """Item 11 derivation; returns (step variance, T(u)) as sympy expressions.

    Two outcomes tied at reward r, G samples, no baseline, step h: with u = z_1 - z_2 and
    n_1 ~ Binom(G, p), p = sigmoid(u), du = (2 h r / G)(n_1 - G p): mean 0 (martingale), variance
    4 h^2 r^2 p (1-p)/G = 2 h^2 r^2 / (G (1 + cosh u)). The expected number of steps T(u) to exit
    (-U, U) solves (1/2) Var(du) T'' = -1, T(+-U) = 0 (symmetric, T'(0) = 0):
    T(u) = G/(h^2 r^2) ((U^2 - u^2)/2 + cosh U - cosh u) steps; time t = h * steps.
    """
    u, U, G, h, r = sp.symbols("u U G h r", positive=True)
    p = 1 / (1 + sp.exp(-u))
    var = sp.simplify((2 * h * r / G) ** 2 * G * p * (1 - p)).rewrite(sp.cosh)
    var = sp.simplify(var)
    T2 = sp.simplify(-2 / var)  # T''(u)
    T1 = sp.integrate(T2, u)  # T'(0) = 0 fixes the constant to 0 (T1 is odd)
    T0 = sp.integrate(T1, u)
    T = sp.simplify(T0 - T0.subs(u, U))
    return var, T


def neutral_drift_time(G, h, r, U, u0=0.0) -> np.ndarray:
    """Item 11: expected time t = h * steps to reach |u| = U from u0 (default 0):
    (G/(h r^2)) ((U^2 - u0^2)/2 + cosh U - cosh u0); at u0 = 0, (G/(h r^2))(U^2/2 + cosh U - 1).

    Diffusion approximation, exact as h -> 0 (the discrete chain overshoots U by O(h)).
    """
    G, h, r, U, u0 = (np.asarray(x, dtype=float) for x in (G, h, r, U, u0))
    if np.any(G < 1) or np.any(h <= 0) or np.any(r == 0) or np.any(U <= 0):
        raise ValueError("need G >= 1, h > 0, r != 0, U > 0")
    if np.any(np.abs(u0) > U):
        raise ValueError("|u0| must be <= U")

    def build():
        _, T = neutral_drift_expr()
        u, Us, Gs, hs, rs = sp.symbols("u U G h r", positive=True)
        return [Gs, hs, rs, Us, u], hs * T  # time = h * steps

    fn = cached_lambdify("neutral_drift", build)
    return np.asarray(fn(G, h, r, U, np.abs(u0)))
