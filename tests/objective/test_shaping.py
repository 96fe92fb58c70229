"""Reward shaping and weights (docs/methods.md §2): IPS, ISAC, BBG, zero-success gating, dynamic sampling."""

import math

import numpy as np
import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st

from collapse_lab.objective import (
    bbg_utility,
    bbg_weights,
    dynamic_sampling_keep,
    ips_rewards,
    isac_multiplier,
    zero_success_gate,
)

f64 = torch.float64


def test_ips_golden():
    # G = 8, outcomes (0,0,0,1,1,2,3,3): n_o = 3,3,3,2,2,1,2,2; correct rewards become G/n_o
    out = torch.tensor([0, 0, 0, 1, 1, 2, 3, 3])
    r = torch.tensor([1, 1, 1, 1, 1, 0, 1, 1], dtype=f64)
    g = torch.zeros(8, dtype=torch.long)
    expect = torch.tensor([8 / 3] * 3 + [4, 4, 0, 4, 4], dtype=f64)
    assert torch.allclose(ips_rewards(r, out, g), expect, atol=1e-14)
    assert torch.allclose(ips_rewards(r, out, g, alpha=0.5), expect.sqrt() * r, atol=1e-14)
    # eps floor: one sample of outcome 7 among 200 -> p_hat = 0.005 < eps = 0.01 -> r / 0.01
    out2 = torch.cat([torch.tensor([7]), torch.zeros(199, dtype=torch.long)])
    shaped = ips_rewards(torch.ones(200, dtype=f64), out2, torch.zeros(200, dtype=torch.long))
    assert shaped[0].item() == pytest.approx(100.0) and shaped[1].item() == pytest.approx(200 / 199)


@given(st.lists(st.integers(0, 4), min_size=2, max_size=40), st.lists(st.booleans(), min_size=40, max_size=40))
def test_ips_correct_rewards_equal_g_over_n(outcomes, correct):
    G = len(outcomes)
    o = torch.tensor(outcomes)
    r = torch.tensor(correct[:G], dtype=f64)
    shaped = ips_rewards(r, o, torch.zeros(G, dtype=torch.long))
    n_o = torch.tensor([outcomes.count(x) for x in outcomes], dtype=f64)
    assert torch.allclose(shaped, r * G / n_o, atol=1e-12)


def test_ips_counts_are_per_group():
    # the same outcome id in two groups is counted separately
    o = torch.tensor([5, 5, 5, 6])
    g = torch.tensor([0, 0, 1, 1])
    assert ips_rewards(torch.ones(4, dtype=f64), o, g).tolist() == [1.0, 1.0, 2.0, 2.0]


def test_isac_multiplier():
    # G = 4 with c = 1: the correct sample gets (4 - 1)^alpha, failures keep 1
    s = torch.tensor([True, False, False, False, True, True, False, False])
    g = torch.tensor([0, 0, 0, 0, 1, 1, 1, 1])
    assert isac_multiplier(s, g).tolist() == [3, 1, 1, 1, 2, 2, 1, 1]
    assert isac_multiplier(s, g, alpha=2.0).tolist() == [9, 1, 1, 1, 4, 4, 1, 1]
    # normalize: correct multipliers (3, 2, 2) divided by their mean 7/3
    m = isac_multiplier(s, g, normalize=True)
    assert m[0].item() == pytest.approx(9 / 7) and m[4].item() == pytest.approx(6 / 7)


def test_bbg_utility_golden():
    # n = 8, k = 16: u(m) = 16 prod_{j=1}^{15} (8 - m + j)/(9 + j) telescopes:
    #   m = 0: 16 * 9/24 = 6;  m = 1: 16 * (8*9)/(23*24) = 2.086957;  m = 2: 16 * 504/12144 = 0.664032
    #   m = 4: 16 * (5*6*7*8*9)/(20*21*22*23*24) = 0.047431 < tau (n+1) = 0.09 -> gated
    u = bbg_utility(torch.tensor([0.0, 1.0, 2.0, 4.0]), torch.tensor(8.0), 16)
    assert u.tolist() == pytest.approx([6.0, 48 / 23, 16 * 504 / 12144, 16 * 15120 / 5100480], abs=1e-12)
    w = bbg_weights(torch.tensor([0.0, 1.0, 2.0, 4.0]), torch.tensor(8.0), 16, 0.01)
    assert w.tolist() == pytest.approx([6 / (48 / 23), 1.0, (16 * 504 / 12144) / (48 / 23), 0.0])


@pytest.mark.parametrize("m, n, k", [(0, 8, 16), (3, 8, 4), (5, 20, 32), (1, 1, 2)])
def test_bbg_utility_matches_beta_mean(m, n, k):
    # E[k (1-p)^(k-1)] under Beta(m+1, n-m+1) = k B(m+1, n-m+k) / B(m+1, n-m+1)   (Beta integral)
    def log_beta(a, b):
        return math.lgamma(a) + math.lgamma(b) - math.lgamma(a + b)
    expect = k * math.exp(log_beta(m + 1, n - m + k) - log_beta(m + 1, n - m + 1))
    assert bbg_utility(torch.tensor(float(m)), torch.tensor(float(n)), k).item() == pytest.approx(expect, rel=1e-12)


def test_zero_success_gate():
    s = torch.tensor([True, False, False, False])
    g = torch.tensor([0, 0, 1, 1])
    prior = torch.tensor([0.0, 0.0, 3.0, 3.0])
    assert zero_success_gate(s, g, "history", prior).tolist() == [1, 1, 0, 0]
    assert zero_success_gate(torch.tensor([True, True, False, True]), g, "group").tolist() == [0, 0, 1, 1]
    with pytest.raises(ValueError, match="prior_success"):
        zero_success_gate(s, g, "history")
    with pytest.raises(ValueError, match="valid: group, history"):
        zero_success_gate(s, g, "batch")


def test_dynamic_sampling_tests_variance_not_mean():
    r = torch.tensor([0.1, 0.1, 0.1, 1.0, 1.0, 0.0, 1.0, 1.0, 1.0], dtype=f64)
    g = torch.tensor([0, 0, 0, 1, 1, 1, 2, 2, 2])
    keep = dynamic_sampling_keep(r, g)
    assert keep.tolist() == [False] * 3 + [True] * 3 + [False] * 3
    # float noise: three 0.1s have mean != 0.1 in float, yet the group must drop
    assert float(np.mean([0.1, 0.1, 0.1])) != 0.1
