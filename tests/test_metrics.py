"""Metrics (docs/methods.md §6): unbiased pass@k against binomials, its expectation, diversity helpers."""

import math
from fractions import Fraction

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from collapse_lab.metrics import (
    correct_entropy,
    coverage,
    distinct_correct,
    effective_modes,
    pass_at_k,
    pass_at_k_curve,
    pass_at_k_exact,
    powers_of_two,
)


def exact_unbiased(n, c, k):
    return float(1 - Fraction(math.comb(n - c, k), math.comb(n, k)))


def test_matches_binomial_definition_small():
    n, c, k = np.meshgrid(np.arange(1, 21), np.arange(0, 21), np.arange(1, 21), indexing="ij")
    ok = (c <= n) & (k <= n)
    got = pass_at_k(n[ok], c[ok], k[ok])
    expect = [exact_unbiased(a, b, d) for a, b, d in zip(n[ok], c[ok], k[ok])]
    assert np.allclose(got, expect, atol=1e-13, rtol=0)


@pytest.mark.parametrize("n, c, k", [(4096, 1, 1), (4096, 3, 1024), (4096, 4000, 4096), (4096, 17, 256)])
def test_large_n_stable(n, c, k):
    assert pass_at_k(n, c, k) == pytest.approx(exact_unbiased(n, c, k), abs=1e-12)


@given(st.integers(1, 40), st.floats(0.0, 1.0), st.integers(1, 40))
def test_expectation_over_binomial_is_exact_passk(n, p, k):
    k = min(k, n)
    c = np.arange(n + 1)
    pmf = np.array([math.comb(n, int(j)) * p**j * (1 - p) ** (n - j) for j in c])
    mean = float((pmf * pass_at_k(n, c, k)).sum())
    assert mean == pytest.approx(float(pass_at_k_exact(p, k)), abs=1e-10)


def test_exact_and_curve():
    assert pass_at_k_exact(0.5, 3) == pytest.approx(0.875)
    assert pass_at_k_exact(1e-12, 2) == pytest.approx(2e-12, rel=1e-6)  # no cancellation
    assert pass_at_k_exact(np.array([0.0, 1.0]), 4).tolist() == [0.0, 1.0]
    assert powers_of_two(10) == [1, 2, 4, 8]
    curve = pass_at_k_curve([8, 8], [1, 8])
    assert list(curve) == [1, 2, 4, 8] and curve[1] == pytest.approx((1 / 8 + 1) / 2)


def test_errors():
    with pytest.raises(ValueError, match="0 <= c <= n"):
        pass_at_k(4, 5, 1)
    with pytest.raises(ValueError, match="1 <= k <= n"):
        pass_at_k(4, 1, 5)
    with pytest.raises(ValueError, match="0 <= p_correct <= 1"):
        pass_at_k_exact(1.01, 2)
    assert pass_at_k_exact(1 + 1e-15, 2) == 1.0  # summed probabilities may round above 1
    with pytest.raises(ValueError, match="whole numbers"):
        pass_at_k(4.5, 1, 1)


def test_diversity_helpers():
    assert distinct_correct([3, 3, 5, 7, 9], [True, True, True, False, False]) == 2
    # two equally likely correct outcomes: H = ln 2, effective modes 2; wrong mass ignored
    probs = np.array([[0.25, 0.25, 0.5], [0.0, 0.0, 1.0]])
    corr = np.array([[True, True, False], [True, True, False]])
    assert correct_entropy(probs, corr).tolist() == pytest.approx([math.log(2), 0.0])
    assert effective_modes(probs, corr).tolist() == pytest.approx([2.0, 1.0])
    assert effective_modes([3, 1]) == pytest.approx(math.exp(-(0.75 * math.log(0.75) + 0.25 * math.log(0.25))))
    assert coverage([[0.5, 1e-5, 0.3]], [[True, True, True]], threshold=1e-3).tolist() == pytest.approx([2 / 3])
