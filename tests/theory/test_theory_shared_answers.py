"""collapse_lab.theory.shared_answers: the two-prompt pair law against the general linear flow,
its fixed point / stability / terminal states, and the GRPO tail constant (ODE, 1e-3)."""

import numpy as np
import sympy as sp
from hypothesis import given, settings
from hypothesis import strategies as st

from collapse_lab.sim.problems import answer_pair
from collapse_lab.theory import shared_answers as sa

logit = st.floats(-4.0, 4.0)


def test_reduction_holds_for_any_advantage():
    """sympy: chain rule of the 2 x 2 shared-answer flow == c [h(P1) - h(P2)] for any A_c, A_w."""
    assert sp.simplify(sa.pair_reduction_expr()) == 0


@settings(deadline=None, max_examples=25)
@given(d1=logit, d2=logit, u=st.floats(-3.0, 3.0), c=st.floats(0.1, 3.0), kind=st.sampled_from(sa.PAIR_KINDS))
def test_pair_rate_equals_general_linear_flow(d1, d2, u, c, kind):
    """Two implementations: the reduced 1-D rate and sqrt(c)(dw_a - dw_b) of linear_flow_velocity."""
    pb = answer_pair(d1, d2, c)
    w = np.array([u / np.sqrt(c), 0.0])  # u = sqrt(c)(w_a - w_b)
    v = sa.linear_flow_velocity(w, pb.logits, pb.rewards, pb.features, kind)
    np.testing.assert_allclose(np.sqrt(c) * (v[0] - v[1]), sa.pair_rate(u, d1, d2, c, kind), rtol=1e-10, atol=1e-14)


def test_advantage_gap_closed_forms():
    """grpo: Delta = 1/(sqrt(P(1-P)) + 1e-6) (the objective's eps), so h(l) -> 1/(2 cosh(l/2));
    dr_grpo and rloo: Delta = 1. Delta(P) = Delta(1 - P), so h is even."""
    P = np.linspace(0.01, 0.99, 41)
    s = np.sqrt(P * (1 - P))
    np.testing.assert_allclose(sa.advantage_gap(P, "grpo"), 1 / (s + 1e-6), rtol=1e-12)
    np.testing.assert_allclose(sa.advantage_gap(P, "dr_grpo"), 1.0, rtol=1e-12)
    np.testing.assert_allclose(sa.advantage_gap(P, "rloo"), 1.0, rtol=1e-12)
    for kind in sa.PAIR_KINDS:
        np.testing.assert_allclose(sa.advantage_gap(P, kind), sa.advantage_gap(1 - P, kind), rtol=1e-12)
    l = np.linspace(-6, 6, 13)
    h = sa.pair_rate(0.0, l, -80.0)  # h(l) - h(-80); h(-80) ~ 1e-29; eps makes h = s^2/(s + eps) = s - eps + ...
    np.testing.assert_allclose(h, 1 / (2 * np.cosh(l / 2)), rtol=0, atol=1.01e-6)


@settings(deadline=None, max_examples=30)
@given(d1=logit, d2=logit, kind=st.sampled_from(sa.PAIR_KINDS))
def test_fixed_point_and_stability(d1, d2, kind):
    """rate(u*) = 0 at u* = (d2 - d1)/2; the rate's slope there is negative iff d1 + d2 > 0."""
    us = sa.pair_fixed_point(d1, d2)
    assert abs(sa.pair_rate(us, d1, d2, 1.0, kind)) < 1e-12
    if abs(d1 + d2) > 0.05:
        slope = (sa.pair_rate(us + 1e-4, d1, d2, 1.0, kind) - sa.pair_rate(us - 1e-4, d1, d2, 1.0, kind)) / 2e-4
        assert (slope < 0) == sa.pair_stable(d1, d2)


def test_terminal_states_by_ode():
    """Equalise (d1 + d2 > 0) to 1e-9 by t = 400; collapse (d1 + d2 < 0): the harder prompt's P -> 0
    with t^2 P -> pair_tail_constant (1e-3 at t = 1e4, the O(log t / t) approach)."""
    r = sa.pair_solve(2.0, -1.0, [400.0])
    np.testing.assert_allclose([r["P1"][-1], r["P2"][-1]], sa.pair_limit(2.0, -1.0), atol=1e-9)
    for d1, d2 in [(1.0, -3.0), (-2.5, 0.5)]:
        r = sa.pair_solve(d1, d2, [1e4])
        lose = "P2" if d1 > d2 else "P1"
        assert abs(1e8 * r[lose][-1] / sa.pair_tail_constant(d1, d2) - 1) < 1e-3
    assert np.isnan(sa.pair_tail_constant(2.0, -1.0))
    assert sa.pair_limit(1.0, -3.0) == (1.0, 0.0) and sa.pair_limit(-3.0, 1.0) == (0.0, 1.0)
