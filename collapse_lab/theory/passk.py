"""Pass@k estimators and Bayesian gating (docs/theory.md items 14-16, docs/methods.md §2 paper C, §6).

- item 14: `passk_variance` (exact variance of the unbiased estimator), `passk_plugin_mean`
  (the biased-low plug-in);
- item 15: `passk_marginal`, `bbg_utility` (posterior mean of the marginal value);
- item 16: `posterior_passk`.
"""

from __future__ import annotations

import functools
import math
from fractions import Fraction

import numpy as np
import sympy as sp

from ._numerics import binom_pmf, cached_lambdify, check_int, check_probabilities

n_, k_, j_, m_ = sp.symbols("n k j m", integer=True, nonnegative=True)
q_, p_ = sp.symbols("q p", positive=True)
a_, b_ = sp.symbols("a b", positive=True)


def passk_variance_expr() -> sp.Expr:
    """Item 14: Var[1 - C(n-c,k)/C(n,k)], c ~ Binom(n, p), q = 1 - p.

    X = C(n-c,k)/C(n,k) is the chance that a uniform k-subset of the n samples is all wrong, so
    E[X] = q^k (unbiased) and E[X^2] is the chance that two independent k-subsets are both all
    wrong: with overlap j (hypergeometric, C(k,j) C(n-k,k-j)/C(n,k)) they cover 2k - j samples.
    """
    hyper = sp.binomial(k_, j_) * sp.binomial(n_ - k_, k_ - j_) / sp.binomial(n_, k_)
    return sp.Sum(hyper * q_ ** (2 * k_ - j_), (j_, 0, k_)) - q_ ** (2 * k_)


@functools.lru_cache(maxsize=512)
def _overlap_weights(n: int, k: int) -> np.ndarray:
    # hypergeometric overlap of two k-subsets of n, exact rationals -> float64 (k+1,)
    total = math.comb(n, k)
    return np.array([float(Fraction(math.comb(k, j) * math.comb(n - k, k - j), total))
                     for j in range(k + 1)])


def passk_variance(n: int, k: int, p) -> np.ndarray:
    """Item 14: sum_j [C(k,j) C(n-k,k-j)/C(n,k)] q^(2k-j) - q^(2k), q = 1 - p; p array in [0, 1]."""
    n, k = check_int("n", n, 1), check_int("k", k, 1)
    if k > n:
        raise ValueError(f"k must be <= n, got k={k}, n={n}")
    q = 1.0 - check_probabilities("p", p)
    w = _overlap_weights(n, k)
    powers = q[..., None] ** (2 * k - np.arange(k + 1))  # (..., k+1)
    return np.maximum(powers @ w - q ** (2 * k), 0.0)


def passk_plugin_mean(n: int, k: int, p) -> np.ndarray:
    """Item 14: E[1 - (1 - c/n)^k], c ~ Binom(n, p): below 1 - (1-p)^k for 1 < k (Jensen)."""
    n, k = check_int("n", n, 1), check_int("k", k, 1)
    p = check_probabilities("p", p)
    c = np.arange(n + 1)
    return binom_pmf(n, p) @ (1.0 - (1.0 - c / n) ** k)


def passk_marginal_expr() -> sp.Expr:
    """Item 15: d/dp [1 - (1-p)^k] = k (1-p)^(k-1)."""
    return sp.diff(1 - (1 - p_) ** k_, p_)


def passk_marginal(p, k) -> np.ndarray:
    """Item 15: k (1 - p)^(k - 1)."""
    fn = cached_lambdify("passk_marginal", lambda: ([p_, k_], passk_marginal_expr()))
    return np.asarray(fn(check_probabilities("p", p), np.asarray(k, dtype=float)))


def bbg_utility_expr() -> sp.Expr:
    """Item 15 / paper C Eq. 8: E[k (1-p)^(k-1)] under Beta(m+1, n-m+1).

    int p^m (1-p)^(n-m+k-1) dp / B(m+1, n-m+1) = B(m+1, n-m+k)/B(m+1, n-m+1); returned as the
    gamma ratio k Gamma(n-m+k) Gamma(n+2) / (Gamma(n-m+1) Gamma(n+k+1))
    = k prod_{j=1}^{k-1} (n-m+j)/(n+1+j).
    """
    num = sp.gamma(m_ + 1) * sp.gamma(n_ - m_ + k_) / sp.gamma(n_ + k_ + 1)
    den = sp.gamma(m_ + 1) * sp.gamma(n_ - m_ + 1) / sp.gamma(n_ + 2)
    return sp.gammasimp(k_ * num / den)


def _rising_ratio(x, y, k):
    """prod_{j=0}^{k-1} (x + j)/(y + j), broadcast over arrays x, y, k (k integer >= 0)."""
    x, y, k = np.broadcast_arrays(*(np.asarray(v, dtype=float) for v in (x, y, k)))
    out = np.ones(x.shape)
    for j in range(int(k.max(initial=0))):
        out = np.where(j < k, out * (x + j) / (y + j), out)
    return out


def bbg_utility(m, n, k) -> np.ndarray:
    """Item 15: u(m; n, k) = k prod_{j=1}^{k-1} (n-m+j)/(n+1+j) (0 <= m <= n, k >= 1; broadcast)."""
    m, n, k = (np.asarray(v, dtype=float) for v in (m, n, k))
    if np.any(m < 0) or np.any(m > n) or np.any(k < 1) or np.any(k != np.round(k)):
        raise ValueError("bbg_utility needs 0 <= m <= n and integer k >= 1")
    return k * _rising_ratio(n - m + 1, n + 2, k - 1)


def posterior_passk_expr() -> sp.Expr:
    """Item 16: E[1 - (1-p)^k] under Beta(a, b) = 1 - B(a, b+k)/B(a, b)
    = 1 - prod_{j=0}^{k-1} (b+j)/(a+b+j)."""
    ratio = sp.gamma(b_ + k_) * sp.gamma(a_ + b_) / (sp.gamma(b_) * sp.gamma(a_ + b_ + k_))
    return 1 - sp.gammasimp(ratio)


def posterior_passk(a, b, k) -> np.ndarray:
    """Item 16: 1 - prod_{j=0}^{k-1} (b+j)/(a+b+j) for Beta(a, b), a, b > 0, integer k >= 0."""
    a, b, k = (np.asarray(v, dtype=float) for v in (a, b, k))
    if np.any(a <= 0) or np.any(b <= 0) or np.any(k < 0) or np.any(k != np.round(k)):
        raise ValueError("posterior_passk needs a > 0, b > 0 and integer k >= 0")
    return 1.0 - _rising_ratio(b, a + b, k)
