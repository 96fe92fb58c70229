"""docs/theory.md items 6, 7, 10: population weight and GRPO log-ratio moments against exact
enumeration of every ordered group (advantages from the objective, probabilities by product)."""

import itertools

import numpy as np
import pytest
import sympy as sp
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from collapse_lab.objective import group_advantages
from collapse_lab.theory import (
    grpo_weight_limit,
    logratio_mean_limit,
    logratio_moments,
    population_weight,
    population_weight_expr,
    unsampled_logprob_change,
)
from collapse_lab.theory.groups import P as P_SYM


def enumerate_groups(p, N, correct, kind, **kw):
    """All K^N ordered groups: (probabilities (S,), outcomes (S, N), advantages (S, N))."""
    K = len(p)
    y = np.array(list(itertools.product(range(K), repeat=N)))  # (S, N)
    prob = np.prod(np.asarray(p)[y], axis=1)
    rew = torch.from_numpy(correct[y].astype(np.float64).ravel())
    grp = torch.from_numpy(np.repeat(np.arange(len(y)), N))
    A = group_advantages(rew, grp, kind=kind, **kw).numpy().reshape(y.shape)
    return prob, y, A


def expected_gradient(p, N, correct, kind, **kw):
    """E[(1/N) sum_n A_n (e_{y_n} - p)] by enumeration -> (K,)."""
    prob, y, A = enumerate_groups(p, N, correct, kind, **kw)
    onehot = np.eye(len(p))[y]  # (S, N, K)
    g = np.einsum("sn,snk->sk", A, onehot - p) / N
    return prob @ g


ESTIMATORS = [("grpo", {"ddof": 0}, {}), ("grpo", {"ddof": 1}, {}), ("dr_grpo", {}, {}),
              ("rloo", {}, {}), ("reinforce", {}, {}), ("reinforce", {}, {"baseline": 0.3}),
              ("passk", {}, {"k": 2})]


@pytest.mark.parametrize("N", range(2, 9))
@pytest.mark.parametrize("est,theory_kw,kw", ESTIMATORS)
def test_population_weight_vs_enumeration(N, est, theory_kw, kw):
    p = np.array([0.25, 0.15, 0.6])  # outcomes 0, 1 correct: P = 0.4
    correct = np.array([1, 1, 0], bool)
    P = p[correct].sum()
    obj_kw = dict(kw)
    if est == "grpo":
        obj_kw["ddof"] = theory_kw["ddof"]
    g = expected_gradient(p, N, correct, est, **obj_kw)
    grad_P = p * (correct - P)
    w = population_weight(est, N, P, **theory_kw, **kw)
    np.testing.assert_allclose(g, w * grad_P, atol=1e-10, rtol=0)


def test_rloo_is_one_and_mean_baseline_is_n_minus_one_over_n():
    P = np.linspace(0, 1, 11)
    for N in range(2, 12):
        np.testing.assert_allclose(population_weight("rloo", N, P), 1.0, atol=1e-13)
        np.testing.assert_allclose(population_weight("mean", N, P), (N - 1) / N, atol=1e-13)
        assert population_weight_expr("rloo", N) == 1
        assert population_weight_expr("dr_grpo", N) == sp.Rational(N - 1, N)


def grpo_weight_by_hand(N, P, ddof, eps=1e-6):
    # Independent GRPO table: group of N binary rewards with c successes has mean c/N and
    # std sqrt(c (N - c) / (N (N - ddof))); a(1, c) = (1 - c/N)/(s + eps), a(0, c) = -(c/N)/(s + eps).
    from math import comb, sqrt

    def s(c):
        return sqrt(c * (N - c) / (N * (N - ddof)))

    total = 0.0
    for m in range(N):
        a1 = (1 - (m + 1) / N) / (s(m + 1) + eps)
        a0 = -(m / N) / (s(m) + eps)
        total += comb(N - 1, m) * P**m * (1 - P) ** (N - 1 - m) * (a1 - a0)
    return total


@pytest.mark.parametrize("N", [2, 5, 13, 30])
@pytest.mark.parametrize("ddof", [0, 1])
def test_grpo_weight_vs_hand_formula(N, ddof):
    for P in [0.0, 0.03, 0.4, 0.9, 1.0]:
        assert float(population_weight("grpo", N, P, ddof=ddof)) == pytest.approx(
            grpo_weight_by_hand(N, P, ddof), abs=1e-10)
    expr = population_weight_expr("grpo", N, ddof=ddof)  # Bernstein form
    assert float(expr.subs(P_SYM, 0.4)) == pytest.approx(grpo_weight_by_hand(N, 0.4, ddof), abs=1e-10)
    if N <= 13:  # the monomial form is ill-conditioned for large N
        expr = population_weight_expr("grpo", N, ddof=ddof, expand=True)
        assert sp.degree(expr, P_SYM) <= N - 1
        assert float(expr.subs(P_SYM, 0.4)) == pytest.approx(grpo_weight_by_hand(N, 0.4, ddof), abs=1e-9)


def test_grpo_weight_tends_to_inverse_sqrt():
    # error is O(1/N): quartering it from N = 200 to N = 800
    P = np.array([0.1, 0.3, 0.5, 0.7, 0.9])
    err = {N: np.abs(population_weight("grpo", N, P) / grpo_weight_limit(P) - 1) for N in (200, 800)}
    assert np.all(err[800] < 2.5e-3)
    assert np.all(err[200] / err[800] > 3.5)
    # and it grows toward the edges (docs/theory.md item 7)
    w = population_weight("grpo", 8, [0.02, 0.2, 0.5])
    assert w[0] > w[1] > w[2]


def test_population_weight_rejects_bad_input():
    with pytest.raises(ValueError, match="estimator"):
        population_weight("nope", 4, 0.5)
    with pytest.raises(ValueError, match="unlikeliness"):
        population_weight("unlikeliness", 4, 0.5)
    with pytest.raises(ValueError, match="P"):
        population_weight("grpo", 4, 1.5)
    with pytest.raises(ValueError, match="N"):
        population_weight("grpo", 1, 0.5)


@settings(deadline=None)
@given(st.lists(st.floats(0.05, 1.0), min_size=5, max_size=5),
       st.lists(st.integers(0, 2), min_size=2, max_size=6), st.floats(0.0, 1.0))
def test_unsampled_outcome_logit_does_not_move(weights, samples, r2):
    # outcomes 3, 4 are never sampled; rewards of the sampled 0, 1, 2 are (1, 0, r2)
    p = np.array(weights) / np.sum(weights)
    y = np.array(samples)
    rew = torch.tensor(np.array([1.0, 0.0, r2])[y])
    for kind in ("grpo", "dr_grpo", "rloo"):
        A = group_advantages(rew, torch.zeros(len(y), dtype=torch.long), kind=kind).numpy()
        dz, dlogp = unsampled_logprob_change(p, y, A, eta=0.1)
        assert np.abs(dz[3:]).max() < 1e-15
        want = -(0.1 / len(y)) * np.sum(A * p[y])
        np.testing.assert_allclose(dlogp[3:], want, atol=1e-15)


def test_unsampled_first_order_error_is_second_order():
    p = np.array([0.4, 0.3, 0.2, 0.1])
    y = np.array([0, 0, 1, 2])
    A = group_advantages(torch.tensor([1.0, 1.0, 0.0, 1.0]), torch.zeros(4, dtype=torch.long)).numpy()
    errs = []
    for eta in (1e-2, 1e-3):
        dz, first = unsampled_logprob_change(p, y, A, eta)
        z = np.log(p)
        exact = (z + dz) - np.log(np.sum(np.exp(z + dz))) - z
        errs.append(abs(exact[3] - first[3]))
    assert errs[1] < errs[0] / 50  # O(eta^2)


@pytest.mark.parametrize("N", [2, 3, 5, 6])
@pytest.mark.parametrize("ddof", [0, 1])
def test_logratio_moments_vs_enumeration(N, ddof):
    p = np.array([0.35, 0.2, 0.1, 0.35])
    correct = np.array([1, 1, 1, 0], bool)
    prob, y, A = enumerate_groups(p, N, correct, "grpo", ddof=ddof)
    eta = 0.3
    for i, j in [(0, 1), (1, 2), (2, 0)]:
        dL = eta / N * np.sum(A * ((y == i).astype(float) - (y == j)), axis=1)
        mean = prob @ dL
        var = prob @ (dL - mean) ** 2
        m, v = logratio_moments(p, correct, i, j, N, eta=eta, ddof=ddof)
        assert m == pytest.approx(mean, abs=1e-12)
        assert v == pytest.approx(var, abs=1e-12)


def test_logratio_mean_tends_to_limit():
    p, correct = np.array([0.3, 0.2, 0.1, 0.4]), np.array([1, 1, 1, 0], bool)
    lim = float(logratio_mean_limit(0.3, 0.2, 0.6, eta=0.5))
    err = [abs(logratio_moments(p, correct, 0, 1, N, eta=0.5)[0] / lim - 1) for N in (200, 800)]
    assert err[1] < 1e-3 and err[0] / err[1] > 3.5
