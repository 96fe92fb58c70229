"""docs/theory.md item 8: the finite-group IPS mean field against enumeration of every ordered group
(shaping and advantages from the objective), and its rest point against direct integration."""

import itertools

import numpy as np
import pytest
import sympy as sp
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from collapse_lab.objective import group_advantages, ips_rewards
from collapse_lab.theory import ips_growth_rates, ips_mean_field, ips_rest_point, ips_survival_threshold
from collapse_lab.theory.ips import ips_mean_field_expr


def enumerated_update(r, p, G, baseline, eps, alpha):
    """E[(1/G) sum_n A_n (e_{y_n} - p)] over all K^G ordered groups."""
    K = len(p)
    y = np.array(list(itertools.product(range(K), repeat=G)))  # (S, G)
    prob = np.prod(p[y], axis=1)
    grp = torch.from_numpy(np.repeat(np.arange(len(y)), G))
    shaped = ips_rewards(torch.from_numpy(r[y].ravel()), torch.from_numpy(y.ravel()), grp,
                         eps=eps, alpha=alpha)
    if baseline is False:
        A = shaped
    else:
        A = group_advantages(shaped, grp, kind="dr_grpo" if baseline is True else "grpo")
    A = A.numpy().reshape(y.shape)
    dz = np.einsum("sg,sgk->sk", A, np.eye(K)[y] - p) / G
    return prob @ dz


CASES = [  # (r, p, G, eps, alpha)
    ([0.6, 0.4, 0.2], [0.5, 0.3, 0.2], 1, 0.01, 1.0),
    ([0.6, 0.4, 0.2], [0.5, 0.3, 0.2], 5, 0.01, 1.0),
    ([1.0, 0.0, 0.5], [0.2, 0.7, 0.1], 6, 0.3, 1.0),  # eps active (1/6 < 0.3)
    ([1.0, 1.0, 0.3], [0.6, 0.1, 0.3], 4, 0.01, 0.5),
    ([0.6, 0.4, 0.2, 0.1], [0.1, 0.2, 0.3, 0.4], 6, 0.01, 1.0),
    ([0.9, 0.5, 0.2], [0.1, 0.3, 0.6], 8, 0.01, 1.0),
    ([0.6, 0.4, 0.2, 0.1], [0.4, 0.0, 0.35, 0.25], 6, 0.2, 1.5),  # an absent outcome, eps active
]


@pytest.mark.parametrize("r,p,G,eps,alpha,baseline",
                         [c + (b,) for c in CASES for b in (False, True) if c[2] >= 2 or not b])
def test_mean_field_vs_enumeration(r, p, G, eps, alpha, baseline):
    r, p = np.array(r), np.array(p)
    want = enumerated_update(r, p, G, baseline, eps, alpha)
    got = ips_mean_field(r, p, G, baseline=baseline, eps=eps, alpha=alpha)
    np.testing.assert_allclose(got, want, atol=1e-10, rtol=0)


@pytest.mark.parametrize("r,p,G,eps,alpha", [CASES[1], CASES[3], CASES[6]])
def test_grpo_baseline_enumeration_vs_ordered_groups(r, p, G, eps, alpha):
    r, p = np.array(r), np.array(p)
    want = enumerated_update(r, p, G, "grpo", eps, alpha)
    got = ips_mean_field(r, p, G, baseline="grpo", eps=eps, alpha=alpha)
    np.testing.assert_allclose(got, want, atol=1e-10, rtol=0)


@pytest.mark.parametrize("G", [1, 3, 10, 50])
def test_closed_form_without_baseline(G):
    # alpha = 1, eps < 1/G: E[dz] = r phi - p sum(r phi), phi = 1 - (1 - p)^G
    r, p = np.array([0.6, 0.4, 0.2, 0.1]), np.array([0.1, 0.2, 0.3, 0.4])
    phi = 1 - (1 - p) ** G
    got = ips_mean_field(r, p, G, eps=1.0 / (G + 1))
    np.testing.assert_allclose(got, r * phi - p * np.sum(r * phi), atol=1e-13)
    expr = ips_mean_field_expr(4)
    subs = {sp.Symbol("G", positive=True, integer=True): G,
            **dict(zip(sp.symbols("p0:4", positive=True), p)),
            **dict(zip(sp.symbols("r0:4", nonnegative=True), r))}
    np.testing.assert_allclose([float(e.subs(subs)) for e in expr], got, atol=1e-13)


@pytest.mark.parametrize("baseline", [False, True])
def test_growth_rate_at_zero_is_the_invasion_limit(baseline):
    r = np.array([0.6, 0.4, 0.2])
    for tiny in (1e-6, 1e-7):
        p = np.array([0.7 - tiny, 0.3, tiny])
        rate = ips_mean_field(r, p, 6, baseline=baseline)[2] / tiny
        at_zero = ips_growth_rates(r, np.array([0.7, 0.3, 0.0]), 6, baseline)[2]
        assert rate == pytest.approx(at_zero, abs=50 * tiny)


def rk4_mean_field(r, G, baseline, t_end, dt, eps=0.01, alpha=1.0):
    z = np.zeros(len(r))

    def V(z):
        p = np.exp(z - z.max())
        p /= p.sum()
        return ips_mean_field(r, p, G, baseline=baseline, eps=eps, alpha=alpha)

    for _ in range(int(round(t_end / dt))):
        k1 = V(z)
        k2 = V(z + dt / 2 * k1)
        k3 = V(z + dt / 2 * k2)
        k4 = V(z + dt * k3)
        z = z + dt / 6 * (k1 + 2 * k2 + 2 * k3 + k4)
    p = np.exp(z - z.max())
    return p / p.sum()


@pytest.mark.parametrize("r,G,baseline,alpha,t_end", [([0.6, 0.4, 0.3], 8, False, 1.0, 200.0),
                                                      ([0.6, 0.5, 0.4], 6, True, 1.0, 200.0),
                                                      ([1.0, 0.7, 0.7, 0.5], 5, True, 1.3, 600.0)])
def test_rest_point_vs_direct_integration(r, G, baseline, alpha, t_end):
    # interior rest points: the integrated mean field converges exponentially (checked: < 1e-8)
    r = np.array(r)
    want = rk4_mean_field(r, G, baseline, t_end=t_end, dt=0.2, alpha=alpha)
    got = ips_rest_point(r, G, baseline=baseline, alpha=alpha)
    assert np.all(got > 0)
    np.testing.assert_allclose(got, want, atol=1e-6)
    # a rest point: every surviving growth rate vanishes
    assert np.abs(ips_growth_rates(r, got, G, baseline, 0.01, alpha)).max() < 1e-9


@pytest.mark.parametrize("r,G,baseline,alpha,n_dead", [([0.6, 0.4, 0.2, 0.1], 4, False, 1.0, 2),
                                                       ([1.0, 0.7, 0.7, 0.2], 5, True, 1.3, 1)])
def test_rest_point_extinction_matches_integration(r, G, baseline, alpha, n_dead):
    # The weakest outcomes die with negative invasion rates; extinction is algebraic (p ~ 1/t),
    # so the integrated trajectory's distance to the predicted point halves when t doubles.
    r = np.array(r)
    got = ips_rest_point(r, G, baseline, alpha=alpha)
    K = len(r)
    assert np.all(got[K - n_dead:] == 0) and np.all(got[:K - n_dead] > 0)
    F = ips_growth_rates(r, got, G, baseline, 0.01, alpha)
    assert np.abs(F[:K - n_dead]).max() < 1e-9 and np.all(F[K - n_dead:] < 0)
    d1 = np.abs(rk4_mean_field(r, G, baseline, 400.0, 0.25, alpha=alpha) - got).max()
    d2 = np.abs(rk4_mean_field(r, G, baseline, 800.0, 0.25, alpha=alpha) - got).max()
    assert d2 < 0.01 and 1.6 < d1 / d2 < 2.4


@pytest.mark.parametrize("baseline", [False, True])
def test_rest_point_tends_to_reward_proportional(baseline):
    r = np.array([0.6, 0.4, 0.2, 0.1])
    target = r / r.sum()
    errs = [np.abs(ips_rest_point(r, G, baseline) - target).max() for G in (16, 64, 400)]
    assert errs[0] > errs[1] > errs[2] and errs[2] < 1e-6


@pytest.mark.parametrize("G", [4, 8, 16])
def test_survival_threshold_with_group_mean_baseline(G):
    th = ips_survival_threshold(1.0, 0.5, G)
    below = ips_rest_point([1.0, 0.5], G, baseline=True, alpha=th - 0.05)
    above = ips_rest_point([1.0, 0.5], G, baseline=True, alpha=th + 0.05)
    assert below[1] == 0.0 and above[1] > 0.01
    # the invasion rate at the majority vertex changes sign exactly at the threshold
    for a, sign in ((th - 1e-6, -1), (th + 1e-6, 1)):
        rate = ips_growth_rates(np.array([1.0, 0.5]), np.array([1.0, 0.0]), G, True, 0.01, a)[1]
        assert np.sign(rate) == sign


def test_bad_inputs():
    with pytest.raises(ValueError, match="baseline"):
        ips_mean_field([1, 0], [0.5, 0.5], 4, baseline="std")
    with pytest.raises(ValueError, match="pi"):
        ips_mean_field([1, 0], [0.5, 0.6], 4)
    with pytest.raises(ValueError, match="G"):
        ips_rest_point([1, 0.5], 1, baseline=True)


@settings(deadline=None)
@given(st.lists(st.floats(0.0, 1.0), min_size=2, max_size=6), st.data(), st.integers(2, 40),
       st.sampled_from([False, True]), st.floats(0.3, 2.0))
def test_mean_field_sums_to_zero_and_matches_closed_form(w, data, G, baseline, alpha):
    # Every update has sum_k dz_k = 0 (e_y - p sums to 0; centred advantages sum to 0); without a
    # baseline, alpha = 1 and eps < 1/G the closed form r phi - p sum(r phi) holds for every p.
    K = len(w)
    r = np.array(data.draw(st.lists(st.floats(0.0, 1.0), min_size=K, max_size=K)))
    p = np.array(w) + 1e-3
    p /= p.sum()
    dz = ips_mean_field(r, p, G, baseline=baseline, alpha=alpha)
    assert abs(dz.sum()) < 1e-12
    phi = 1 - (1 - p) ** G
    np.testing.assert_allclose(ips_mean_field(r, p, G, eps=0.5 / G), r * phi - p * np.sum(r * phi),
                               atol=1e-12)
