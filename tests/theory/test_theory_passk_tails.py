"""docs/theory.md items 9, 11, 14-16: enumeration over Binomial/multinomial outcomes and Gauss-Legendre
quadrature against the closed forms."""

import itertools
import math
from fractions import Fraction

import numpy as np
import pytest
import sympy as sp
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from collapse_lab import metrics
from collapse_lab.objective import bbg_utility as objective_bbg
from collapse_lab.theory import (
    bbg_utility,
    neutral_drift_time,
    passk_plugin_mean,
    passk_variance,
    posterior_passk,
    tail_miss,
    tail_miss_peak,
)
from collapse_lab.theory import passk as passk_mod
from collapse_lab.theory._numerics import gauss_legendre

# ---- item 14 ----------------------------------------------------------------------------------


def estimator_moments(n, k, p):
    """(mean, var) of 1 - C(n-c,k)/C(n,k) over c ~ Binom(n, p), by direct enumeration of c."""
    c = np.arange(n + 1)
    w = np.array([math.comb(n, j) * p**j * (1 - p) ** (n - j) for j in c])
    x = np.array([1 - math.comb(n - j, k) / math.comb(n, k) for j in c])
    mean = w @ x
    return mean, w @ (x - mean) ** 2


@pytest.mark.parametrize("n", [1, 2, 3, 5, 8, 13, 20])
def test_passk_variance_vs_binomial_enumeration(n):
    for k in range(1, n + 1):
        for p in (0.0, 0.13, 0.5, 0.9, 1.0):
            mean, var = estimator_moments(n, k, p)
            assert mean == pytest.approx(1 - (1 - p) ** k, abs=1e-12)  # unbiased
            assert float(passk_variance(n, k, p)) == pytest.approx(var, abs=1e-10)


def test_passk_variance_vectorised_and_estimator_matches_metrics():
    p = np.array([0.1, 0.4, 0.7])
    want = [estimator_moments(16, 4, q)[1] for q in p]
    np.testing.assert_allclose(passk_variance(16, 4, p), want, atol=1e-12)
    c = np.arange(17)
    np.testing.assert_allclose(metrics.pass_at_k(16, c, 4),
                               [1 - math.comb(16 - j, 4) / math.comb(16, 4) for j in c], atol=1e-12)


def test_passk_variance_expr_matches_numeric():
    expr = passk_mod.passk_variance_expr()
    n, k, q = passk_mod.n_, passk_mod.k_, passk_mod.q_
    val = expr.subs({n: 9, k: 3}).doit().subs(q, sp.Rational(3, 10))
    assert float(val) == pytest.approx(float(passk_variance(9, 3, 0.7)), abs=1e-14)


@settings(deadline=None)
@given(st.integers(2, 30), st.data(), st.floats(0.01, 0.99))
def test_plugin_estimator_is_biased_low(n, data, p):
    k = data.draw(st.integers(2, n))
    assert float(passk_plugin_mean(n, k, p)) < 1 - (1 - p) ** k
    assert float(passk_plugin_mean(n, 1, p)) == pytest.approx(p, abs=1e-12)  # k = 1 is unbiased


# ---- items 15, 16 -------------------------------------------------------------------------------


def beta_expectation(g, a, b):
    """E[g(p)] under Beta(a, b) by Gauss-Legendre on p = sin^2(theta) (smooth for a, b >= 1)."""
    def dens(th):
        s, c = np.sin(th), np.cos(th)
        return 2 * s ** (2 * a - 1) * c ** (2 * b - 1)

    norm = gauss_legendre(dens, 0, np.pi / 2, n=40, panels=20)
    return gauss_legendre(lambda th: dens(th) * g(np.sin(th) ** 2), 0, np.pi / 2, n=40, panels=20) / norm


@pytest.mark.parametrize("m,n,k", [(0, 8, 16), (1, 8, 16), (3, 8, 4), (8, 8, 16), (5, 40, 64), (2, 16, 1)])
def test_bbg_utility_vs_quadrature(m, n, k):
    want = beta_expectation(lambda p: k * (1 - p) ** (k - 1), m + 1, n - m + 1)
    assert float(bbg_utility(m, n, k)) == pytest.approx(want, rel=1e-9)


def test_bbg_utility_matches_objective_and_symbolic_product():
    m, n = np.arange(0, 9), np.full(9, 8)
    np.testing.assert_allclose(bbg_utility(m, n, 16),
                               objective_bbg(torch.tensor(m), torch.tensor(n), 16).numpy(), rtol=1e-12)
    expr = passk_mod.bbg_utility_expr()
    for mm, nn, kk in [(0, 8, 16), (3, 5, 4), (5, 5, 2)]:
        exact = kk * math.prod(Fraction(nn - mm + j, nn + 1 + j) for j in range(1, kk))
        got = expr.subs({passk_mod.m_: mm, passk_mod.n_: nn, passk_mod.k_: kk})
        assert sp.nsimplify(got) == sp.Rational(exact.numerator, exact.denominator)
        assert float(bbg_utility(mm, nn, kk)) == pytest.approx(float(exact), rel=1e-14)


@pytest.mark.parametrize("a,b,k", [(1.0, 1.0, 4), (2.5, 3.7, 1), (2.5, 3.7, 10), (1.0, 9.0, 64), (6.2, 1.5, 3)])
def test_posterior_passk_vs_quadrature(a, b, k):
    want = beta_expectation(lambda p: 1 - (1 - p) ** k, a, b)
    assert float(posterior_passk(a, b, k)) == pytest.approx(want, abs=1e-8)


def test_posterior_passk_symbolic_and_golden():
    # Beta(1, 1), k = 2: 1 - (1/2)(2/3) = 2/3
    assert float(posterior_passk(1, 1, 2)) == pytest.approx(2 / 3, abs=1e-15)
    expr = passk_mod.posterior_passk_expr().subs({passk_mod.a_: 3, passk_mod.b_: 5, passk_mod.k_: 4})
    assert float(expr) == pytest.approx(float(posterior_passk(3, 5, 4)), abs=1e-14)
    assert float(posterior_passk(3, 5, 0)) == 0.0


def test_marginal_value():
    p = np.array([0.0, 0.2, 0.9])
    np.testing.assert_allclose(passk_mod.passk_marginal(p, 5), 5 * (1 - p) ** 4, atol=1e-15)


# ---- item 9 -------------------------------------------------------------------------------------


@pytest.mark.parametrize("tau,c", [(0.05, 0.5), (0.01, 0.3), (0.2, 0.2), (0.1, 0.9)])
def test_tail_miss_vs_multinomial_enumeration(tau, c):
    w = 1 - tau - c
    for N in range(1, 11):
        total = 0.0
        for n_tau, n_c in itertools.product(range(N + 1), repeat=2):
            n_w = N - n_tau - n_c
            if n_w < 0 or n_tau > 0 or n_c == 0 or n_w == 0:
                continue  # keep: rare mode missed, group mixed (non-zero update)
            total += (math.factorial(N) // (math.factorial(n_c) * math.factorial(n_w))) * c**n_c * w**n_w
        assert float(tail_miss(tau, c, N)) == pytest.approx(total, abs=1e-12)


def test_tail_miss_is_non_monotone():
    N = np.arange(1, 200)
    v = tail_miss(0.05, 0.5, N)
    peak = tail_miss_peak(0.05, 0.5)
    assert 1 < peak < 199 and v[peak - 1] == v.max()
    assert v[0] < v[peak - 1] and v[-1] < v[peak - 1]


def test_tail_miss_rejects_bad_input():
    with pytest.raises(ValueError, match="tau"):
        tail_miss(-0.1, 0.5, 3)
    with pytest.raises(ValueError, match="tau \\+ c"):
        tail_miss(0.6, 0.5, 3)


# ---- item 11 ------------------------------------------------------------------------------------


@pytest.mark.parametrize("G,h,r,U,u0", [(4, 0.05, 1.0, 1.0, 0.0), (8, 0.01, 0.5, 2.5, 0.0),
                                        (2, 0.1, 2.0, 1.5, -0.7)])
def test_neutral_drift_vs_quadrature(G, h, r, U, u0):
    # (1/2) Var(du) T'' = -1, T(+-U) = 0, Var(du) = 4 h^2 r^2 p(1-p)/G with p = sigmoid(u):
    # T(u0) = int_{|u0|}^{U} int_0^{v} 2/Var(w) dw dv steps; time = h * steps.
    def inv_var(w):
        p = 1 / (1 + np.exp(-w))
        return 2 / (4 * h**2 * r**2 * p * (1 - p) / G)

    def inner(v):
        return np.vectorize(lambda x: gauss_legendre(inv_var, 0.0, x, n=30))(v)

    steps = gauss_legendre(inner, abs(u0), U, n=30)
    assert float(neutral_drift_time(G, h, r, U, u0)) == pytest.approx(h * steps, rel=1e-10)


def test_neutral_drift_vs_simulated_chain():
    # Discrete chain u <- u + (2 h r / G)(n_1 - G p), n_1 ~ Binom(G, p), from u = 0 to |u| >= U.
    # Tolerance: 4 standard errors plus the overshoot bias of a walk with step sd s, about
    # 0.58 s (U + sinh U) / (U^2/2 + cosh U - 1) in relative terms (Siegmund's correction).
    G, h, r, U, paths = 2, 0.04, 1.0, 1.0, 4000
    rng = np.random.default_rng(11)
    u, steps, alive = np.zeros(paths), np.zeros(paths), np.ones(paths, bool)
    while alive.any():
        p = 1 / (1 + np.exp(-u[alive]))
        u[alive] += 2 * h * r / G * (rng.binomial(G, p) - G * p)
        steps[alive] += 1
        alive &= np.abs(u) < U
    t = h * steps
    pred = float(neutral_drift_time(G, h, r, U))
    se = t.std() / np.sqrt(paths)
    s = 2 * h * r * np.sqrt(0.25 / G)
    bias = 0.58 * s * (U + np.sinh(U)) / (U**2 / 2 + np.cosh(U) - 1) * pred
    assert abs(t.mean() - pred) < 4 * se + bias, (t.mean(), pred, se, bias)
