"""Optima of E_pi[r] - beta D_f(pi || ref) for a categorical policy (docs/theory.md item 17, paper B).

D_f(pi || ref) = sum_y ref_y f(u_y), u = pi/ref. Generators (normalised as in the objective's
`f_generator`, f(1) = f'(1) = 0; docs/theory.md's u log u and -log u differ by a (u - 1), which changes
neither D_f nor the optimum):
  reverse_kl  f = u log u - u + 1                      f' = log u
  forward_kl  f = u - log u - 1      (= KL(ref||pi))    f' = 1 - 1/u
  js          f = u log u - (u+1) log((u+1)/2)          f' = log(2u/(u+1))
  alpha       f = (u^(1-a) - (1-a) u - a)/(a (a-1))     f' = (1 - u^(-a))/a
Stationarity of the Lagrangian gives pi* = ref (f')^{-1}((r - lambda)/beta) with lambda fixing
sum pi* = 1: reverse KL pi* ~ ref exp(r/beta); forward KL pi* = beta ref/(Lambda - r).
"""

from __future__ import annotations

import functools

import numpy as np
import sympy as sp

from ._numerics import bisect_decreasing, cached_lambdify

KINDS = ("reverse_kl", "forward_kl", "js", "alpha")
_ALIASES = {"forward": "forward_kl", "k1": "reverse_kl", "k2": "reverse_kl", "k3": "reverse_kl"}
u_ = sp.Symbol("u", positive=True)
y_ = sp.Symbol("y", real=True)
ALPHA = sp.Symbol("alpha", positive=True)


def resolve(kind: str) -> str:
    """Canonical generator name; accepts the objective's names (forward, k1-k3). ValueError else."""
    kind = _ALIASES.get(kind, kind)
    if kind not in KINDS:
        raise ValueError(f"kind must be one of {KINDS} (or forward, k1, k2, k3), got {kind!r}")
    return kind


def generator_expr(kind: str) -> sp.Expr:
    """f(u) of the named f-divergence (module table); alpha-divergence in the symbol alpha."""
    kind, u, a = resolve(kind), u_, ALPHA
    return {
        "reverse_kl": u * sp.log(u) - u + 1,
        "forward_kl": u - sp.log(u) - 1,
        "js": u * sp.log(u) - (u + 1) * sp.log((u + 1) / 2),
        "alpha": (u ** (1 - a) - (1 - a) * u - a) / (a * (a - 1)),
    }[kind]


@functools.lru_cache(maxsize=8)
def fprime_inverse_expr(kind: str):
    """((f')^{-1}(y), sup f'): solves f'(u) = y for u > 0; y must stay below sup f' = lim f'(u)."""
    fp = sp.simplify(sp.diff(generator_expr(kind), u_))
    (inv,) = sp.solve(sp.Eq(fp, y_), u_)
    return sp.simplify(inv), sp.limit(fp, u_, sp.oo)


def fdiv_optimum_expr(kind: str) -> sp.Expr:
    """Item 17: pi*_y = ref_y (f')^{-1}((r_y - lambda)/beta) for the named generator."""
    ref, r, lam, beta = sp.symbols("ref r lambda beta", positive=True)
    inv, _ = fprime_inverse_expr(resolve(kind))
    return ref * inv.subs(y_, (r - lam) / beta)


def fdiv_gradient_expr(kind: str, K: int = 3) -> sp.Matrix:
    """dD_f/dz_j for pi = softmax(z), by direct differentiation (compare with the closed form
    pi_j (f'(u_j) - E_pi f'(u)) of item 17)."""
    z = sp.symbols(f"z0:{K}", real=True)
    ref = sp.symbols(f"ref0:{K}", positive=True)
    s = sum(sp.exp(zi) for zi in z)
    f = generator_expr(kind)
    D = sum(q * f.subs(u_, sp.exp(zi) / s / q) for zi, q in zip(z, ref))
    return sp.Matrix([sp.diff(D, zi) for zi in z])


def _numeric(kind: str):
    # lambdified f'(u; alpha) and (f')^{-1}(y; alpha), compiled once per kind
    def build_fp():
        return [u_, ALPHA], sp.diff(generator_expr(kind), u_)

    def build_inv():
        return [y_, ALPHA], fprime_inverse_expr(kind)[0]

    return (cached_lambdify(("fprime", kind), build_fp),
            cached_lambdify(("fprime_inv", kind), build_inv))


def fdiv_fixed_point(ref, r, beta, kind: str, alpha: float = 0.2) -> np.ndarray:
    """Item 17: argmax_pi E_pi[r] - beta D_f(pi || ref), pi = ref (f')^{-1}((r - lambda)/beta).

    ref, r: (..., K) (ref > 0, rows summing to 1), beta > 0 broadcast over the leading dims.
    Reverse KL is the softmax of log ref + r/beta. Otherwise the multiplier is found by bisection
    on the largest ratio u_max = pi/ref of a best outcome, which lies in [1, 1/ref_best]
    (sum ref u = 1 with u <= u_max); then lambda = max r - beta f'(u_max). Equal rewards give
    equal u, so outcomes of equal reward keep their reference ratio.
    """
    kind = resolve(kind)
    ref, r = np.broadcast_arrays(np.asarray(ref, float), np.asarray(r, float))
    beta = np.asarray(beta, dtype=float)[..., None]
    if np.any(ref <= 0) or np.any(np.abs(ref.sum(-1) - 1) > 1e-9):
        raise ValueError("ref must be positive and sum to 1 along the last axis")
    if np.any(beta <= 0):
        raise ValueError("beta must be > 0")
    if kind == "alpha" and not 0 < alpha < 1:
        raise ValueError(f"alpha must lie in (0, 1), got {alpha}")
    if kind == "reverse_kl":
        logits = np.log(ref) + r / beta
        e = np.exp(logits - logits.max(-1, keepdims=True))
        return e / e.sum(-1, keepdims=True)
    fp, inv = _numeric(kind)
    gap = (r.max(-1, keepdims=True) - r) / beta  # (..., K) >= 0
    ref_best = np.take_along_axis(ref, np.argmax(r, -1)[..., None], -1)  # (..., 1)

    def excess(log_umax):  # sum ref u - 1, increasing in u_max
        y_top = fp(np.exp(log_umax), alpha)
        return np.sum(ref * inv(y_top - gap, alpha), -1, keepdims=True) - 1.0

    lo, hi = np.zeros(ref_best.shape), -np.log(ref_best)
    log_umax = bisect_decreasing(lambda x: -excess(x), lo, hi)
    pi = ref * inv(fp(np.exp(log_umax), alpha) - gap, alpha)
    return pi / pi.sum(-1, keepdims=True)


def fdiv_multiplier(ref, r, beta, kind: str, alpha: float = 0.2) -> np.ndarray:
    """lambda of item 17 at the optimum: r_y - beta f'(pi*_y/ref_y) (the same for every y)."""
    kind = resolve(kind)
    pi = fdiv_fixed_point(ref, r, beta, kind, alpha)
    fp, _ = _numeric(kind)
    lam = np.asarray(r, float) - np.asarray(beta, float)[..., None] * fp(pi / np.asarray(ref), alpha)
    return lam.mean(-1)
