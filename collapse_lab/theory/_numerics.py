"""Small numpy-only numerical tools shared by the theory modules (no scipy).

Binomial probability tables, Gauss-Legendre quadrature, an adaptive Dormand-Prince (RK45) ODE
integrator, vectorised bisection and a cache for lambdified sympy expressions. None of these
carries a docs/theory.md result; they are the plumbing the predictions are evaluated with.
"""

from __future__ import annotations

import functools

import numpy as np
import sympy as sp


def binom_pmf(n: int, p) -> np.ndarray:
    """Binom(m; n, p) for m = 0..n, shape p.shape + (n + 1,), computed in log space.

    p = 0 and p = 1 give the point masses at m = 0 and m = n exactly.
    """
    p = np.asarray(p, dtype=float)[..., None]  # (..., 1)
    m = np.arange(n + 1, dtype=float)  # (n+1,)
    i = np.arange(1, n + 1, dtype=float)
    log_c = np.concatenate([[0.0], np.cumsum(np.log(n - i + 1) - np.log(i))])  # log C(n, m)
    with np.errstate(divide="ignore", invalid="ignore"):
        lp, lq = np.log(p), np.log1p(-p)
        t1 = np.where(m == 0, 0.0, m * lp)  # 0 * log 0 = 0
        t2 = np.where(m == n, 0.0, (n - m) * lq)
    return np.exp(log_c + t1 + t2)


@functools.lru_cache(maxsize=32)
def _leggauss(n: int):
    return np.polynomial.legendre.leggauss(n)


def gauss_legendre(f, a: float, b: float, n: int = 64, panels: int = 1) -> float:
    """Composite Gauss-Legendre rule for int_a^b f(x) dx; f must accept a numpy array."""
    x, w = _leggauss(n)
    edges = np.linspace(a, b, panels + 1)
    half = 0.5 * np.diff(edges)[:, None]  # (panels, 1)
    mid = 0.5 * (edges[1:] + edges[:-1])[:, None]
    nodes = mid + half * x[None, :]  # (panels, n)
    return float(np.sum(half * w[None, :] * f(nodes)))


# Dormand-Prince 5(4) tableau.
_C = np.array([0, 1 / 5, 3 / 10, 4 / 5, 8 / 9, 1, 1])
_A = [
    [],
    [1 / 5],
    [3 / 40, 9 / 40],
    [44 / 45, -56 / 15, 32 / 9],
    [19372 / 6561, -25360 / 2187, 64448 / 6561, -212 / 729],
    [9017 / 3168, -355 / 33, 46732 / 5247, 49 / 176, -5103 / 18656],
    [35 / 384, 0, 500 / 1113, 125 / 192, -2187 / 6784, 11 / 84],
]
_B5 = np.array([35 / 384, 0, 500 / 1113, 125 / 192, -2187 / 6784, 11 / 84, 0])
_B4 = np.array([5179 / 57600, 0, 7571 / 16695, 393 / 640, -92097 / 339200, 187 / 2100, 1 / 40])


def _dp_step(f, t, y, h):
    k = []
    for s in range(7):
        ys = y + h * sum(a * kk for a, kk in zip(_A[s], k)) if s else y
        k.append(f(t + _C[s] * h, ys))
    k = np.stack(k)  # (7, ...)
    y5 = y + h * np.tensordot(_B5, k, axes=1)
    err = h * np.tensordot(_B5 - _B4, k, axes=1)
    return y5, err


def ode_solve(f, y0, t_eval, rtol: float = 1e-11, atol: float = 1e-13, h0: float = 1e-3):
    """Integrate y' = f(t, y) from t = 0 with adaptive RK45; returns y at each t in t_eval.

    Output shape (len(t_eval),) + y0.shape; t_eval must be non-decreasing and >= 0.
    """
    t_eval = np.atleast_1d(np.asarray(t_eval, dtype=float))
    if np.any(np.diff(t_eval) < 0) or np.any(t_eval < 0):
        raise ValueError("t_eval must be non-negative and non-decreasing")
    y = np.array(y0, dtype=float)
    t, h, out = 0.0, h0, []
    for te in t_eval:
        while t < te:
            step = min(h, te - t)
            y_new, err = _dp_step(f, t, y, step)
            scale = atol + rtol * np.maximum(np.abs(y), np.abs(y_new))
            e = float(np.sqrt(np.mean((err / scale) ** 2)))
            if e <= 1.0:
                t, y = t + step, y_new
            h = step * min(5.0, max(0.2, 0.9 * (e + 1e-300) ** -0.2))
        out.append(y.copy())
    return np.stack(out)


def bisect_decreasing(g, lo, hi, iters: int = 200):
    """Root of an elementwise decreasing function g on [lo, hi] (arrays), g(lo) > 0 > g(hi)."""
    lo, hi = np.array(lo, dtype=float), np.array(hi, dtype=float)
    for _ in range(iters):
        mid = 0.5 * (lo + hi)
        pos = g(mid) > 0
        lo, hi = np.where(pos, mid, lo), np.where(pos, hi, mid)
        if np.all((hi - lo) <= 4e-16 * np.maximum(1.0, np.abs(lo))):
            break
    return 0.5 * (lo + hi)


_LAMBDIFIED: dict = {}


def cached_lambdify(key, build):
    """Lambdify the sympy expression `build()` returns, once per key (numpy backend).

    build() returns (args, expr); the compiled function is memoised so that prediction functions
    called in loops never re-derive or re-compile.
    """
    fn = _LAMBDIFIED.get(key)
    if fn is None:
        args, expr = build()
        fn = sp.lambdify(args, expr, modules="numpy")
        _LAMBDIFIED[key] = fn
    return fn


def check_probabilities(name: str, x, allow_edges: bool = True) -> np.ndarray:
    """Float array with entries in [0, 1] (or (0, 1) when allow_edges is False); ValueError else."""
    x = np.asarray(x, dtype=float)
    bad = (x < 0) | (x > 1) if allow_edges else (x <= 0) | (x >= 1)
    if np.any(bad) or np.any(~np.isfinite(x)):
        rng = "[0, 1]" if allow_edges else "(0, 1)"
        raise ValueError(f"{name} must lie in {rng}")
    return x


def check_int(name: str, v, low: int) -> int:
    """An integer >= low; ValueError naming the field otherwise."""
    if isinstance(v, bool) or int(v) != v or v < low:
        raise ValueError(f"{name} must be an integer >= {low}, got {v!r}")
    return int(v)
