"""Finite-group predictions for binary rewards (docs/theory.md items 6, 7 and 10).

Setting: one prompt, softmax policy p over K outcomes, a group of N samples, per-sample advantage
a(r, c) from the objective (c = number of correct samples in the group), update per unit step
dz = (eta/N) sum_n A_n (e_{y_n} - p)   (grad_z log p(y) = e_y - p).
Advantages come from `collapse_lab.objective.group_advantages` via `_advantages` (GRPO: eps 1e-6,
ddof as given); the Bernstein / binomial sums are the theory's.
"""

from __future__ import annotations

import numpy as np
import sympy as sp

from ._advantages import weight_differences
from ._numerics import binom_pmf, check_int, check_probabilities

P = sp.Symbol("P", positive=True)


def _kw(kw: dict) -> tuple:
    return tuple(sorted(kw.items()))


def bernstein_weight_expr(N: int, diffs=None) -> sp.Expr:
    """Item 7: w_N(P) = sum_{m=0}^{N-1} C(N-1, m) P^m (1-P)^(N-1-m) d_m, d_m = a(1, m+1) - a(0, m).

    Derivation: by exchangeability E[g] = E[a(r_1, c) grad log p(y_1)]; condition on y_1 = y, the
    other N-1 samples give M ~ Binom(N-1, P) successes, and sum_y p_y grad log p_y (.) = grad p_y,
    so E[g] = grad P E[a(1, M+1)] + grad(1-P) E[a(0, M)] = w_N(P) grad P.
    diffs: the N numbers d_m (sympy or float), or None for symbols d_0..d_{N-1}.
    """
    N = check_int("N", N, 1)
    d = sp.symbols(f"d0:{N}") if diffs is None else [sp.sympify(x) for x in diffs]
    return sum(sp.binomial(N - 1, m) * P**m * (1 - P) ** (N - 1 - m) * d[m] for m in range(N))


def _exact_number(x: float):
    # Rational when x is a small-denominator fraction to 1e-13 (rloo, dr_grpo), else a Float.
    q = sp.Rational(x).limit_denominator(10**6)
    return q if abs(float(q) - x) < 1e-13 else sp.Float(x)


def population_weight_expr(estimator: str, N: int, ddof: int = 0, expand: bool = False,
                           **kw) -> sp.Expr:
    """Item 7 for an objective advantage kind: w_N(P) as a polynomial in P (Bernstein form, or
    expanded in powers of P with expand=True; the monomial form loses digits for N >~ 20).

    rloo gives exactly 1 and dr_grpo ("mean baseline") exactly (N-1)/N (rational coefficients
    simplify); GRPO has float coefficients (square roots of the group variance, eps = 1e-6).
    """
    diffs = weight_differences(estimator, N, ddof, _kw(kw))
    coeffs = [_exact_number(float(x)) for x in diffs]
    expr = bernstein_weight_expr(N, coeffs)
    exact = all(isinstance(c, sp.Rational) for c in coeffs)
    return sp.expand(expr) if expand or exact else expr


def population_weight(estimator: str, N: int, P, ddof: int = 0, **kw) -> np.ndarray:
    """Item 7: w_N(P) = sum_m Binom(m; N-1, P) [a(1, m+1) - a(0, m)], with E[g] = w_N(P) grad P.

    estimator: an objective advantage kind ("grpo", "dr_grpo" = "mean", "rloo", "reinforce",
    "passk" with k=...); kw go to group_advantages. GRPO uses the objective's eps = 1e-6 and the
    given ddof (0: population std; as N -> inf, w -> 1/sqrt(P(1-P)) for either ddof).
    P: array in [0, 1]; returns an array of P's shape. The a(r, c) table is cached per
    (estimator, N, ddof, kw), so repeated calls cost one binomial table.
    """
    P = check_probabilities("P", P)
    d = weight_differences(estimator, N, ddof, _kw(kw))  # (N,)
    return binom_pmf(N - 1, P) @ d


def grpo_weight_limit(P) -> np.ndarray:
    """Item 7: lim_{N->inf} w_N(P) for GRPO = 1/sqrt(P(1-P)) = d/dP [2 arcsin sqrt(P)]."""
    P = check_probabilities("P", P, allow_edges=False)
    return 1.0 / np.sqrt(P * (1.0 - P))


def unsampled_logprob_change(p, samples, advantages, eta: float = 1.0):
    """Item 6: (dz, dlogp_first_order) for one update on a group.

    dz = (eta/N) sum_n A_n (e_{y_n} - p) (exact logit change); for an unsampled outcome y,
    dz_y = -(eta/N) p_y sum_n A_n = 0 when the advantages are mean-centred, and to first order
    dlog p_y = dz_y - sum_k p_k dz_k = -(eta/N) sum_n A_n p(y_n) (+ the dz_y term, zero then).
    p: (K,), samples: int (N,), advantages: (N,). Returns two (K,) arrays.
    """
    p = np.asarray(p, dtype=float)
    y = np.asarray(samples, dtype=int)
    A = np.asarray(advantages, dtype=float)
    if y.shape != A.shape or y.ndim != 1:
        raise ValueError("samples and advantages must be 1-D of equal length")
    N = y.size
    dz = -(eta / N) * A.sum() * p
    np.add.at(dz, y, (eta / N) * A)
    return dz, dz - np.dot(p, dz)


def logratio_moments(pi, correct, i: int, j: int, N: int, eta: float = 1.0, ddof: int = 0,
                     estimator: str = "grpo", **kw):
    """Item 10: (mean, var) of dL_ij = d log(p_i/p_j) = dz_i - dz_j for one group of N samples.

    i, j correct, P = correct mass, c ~ Binom(N, P). Since both are correct,
    dL = (eta/N) a(1, c) (n_i - n_j) and, given c, (n_i, n_j) are multinomial over the c correct
    samples with q = p/P. Hence (exact; no second-order term since log p_i/p_j = z_i - z_j)
      E[dL]   = eta (p_i - p_j)/(N P) E[c a(1, c)]
      E[dL^2] = (eta/N)^2 E[a(1,c)^2 (c (q_i + q_j) + c (c-1) (q_i - q_j)^2)].
    a from the objective (GRPO: eps 1e-6, the given ddof). Returns two floats.
    """
    pi = np.asarray(pi, dtype=float)
    correct = np.asarray(correct, dtype=bool)
    if not (correct[i] and correct[j]) or i == j:
        raise ValueError("i and j must be two distinct correct outcomes")
    N = check_int("N", N, 2)
    P = float(pi[correct].sum())
    from ._advantages import advantage_table

    a1, _ = advantage_table(estimator, N, ddof, _kw(kw))
    c = np.arange(N + 1)
    w = binom_pmf(N, P)  # (N+1,)
    a1 = np.nan_to_num(a1)  # c = 0 contributes c a(1, c) = 0
    qi, qj = pi[i] / P, pi[j] / P
    mean = eta * (pi[i] - pi[j]) / (N * P) * np.dot(w, c * a1)
    second = (eta / N) ** 2 * np.dot(w, a1**2 * (c * (qi + qj) + c * (c - 1) * (qi - qj) ** 2))
    return float(mean), float(second - mean**2)


def logratio_mean_limit(pi_i, pi_j, P, eta: float = 1.0) -> np.ndarray:
    """Item 10, N -> inf for GRPO: E[dL_ij] -> eta (p_i - p_j) sqrt((1-P)/P).

    (E[c a(1,c)]/N -> P (1-P)/sqrt(P(1-P)) = sqrt(P(1-P)).)
    """
    P = check_probabilities("P", P, allow_edges=False)
    return eta * (np.asarray(pi_i) - np.asarray(pi_j)) * np.sqrt((1.0 - P) / P)
