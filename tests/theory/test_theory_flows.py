"""docs/theory.md items 1-5: symbolic flows vs direct differentiation, numeric laws vs an independent
fixed-step RK4 written here, asymptotes vs the discrete iteration."""

import numpy as np
import pytest
import sympy as sp
from hypothesis import given, settings
from hypothesis import strategies as st

from collapse_lab.theory import flows, logratio
from collapse_lab.theory.logratio import flow_velocity

RNG = np.random.default_rng(0)


def softmax(z):
    e = np.exp(z - z.max(-1, keepdims=True))
    return e / e.sum(-1, keepdims=True)


def rk4(f, y0, t_end, n_steps):
    """Classic fixed-step RK4 from t = 0 (independent of the library's adaptive RK45)."""
    y, h = np.array(y0, float), t_end / n_steps
    for i in range(n_steps):
        t = i * h
        k1 = f(t, y)
        k2 = f(t + h / 2, y + h / 2 * k1)
        k3 = f(t + h / 2, y + h / 2 * k2)
        k4 = f(t + h, y + h * k3)
        y = y + h / 6 * (k1 + 2 * k2 + 2 * k3 + k4)
    return y


def numeric_grad(fun, z, h=1e-6):
    return np.array([(fun(z + h * e) - fun(z - h * e)) / (2 * h) for e in np.eye(z.size)])


# ---- symbolic derivations --------------------------------------------------------------------

def test_pg_flow_is_p_times_advantage():
    _, p, r = flows.symbols(3)
    J = sum(a * b for a, b in zip(p, r))
    for i, e in enumerate(flows.pg_flow(3)):
        assert sp.simplify(e - p[i] * (r[i] - J)) == 0


def test_npg_general_solution_is_r_plus_shared_shift():
    _, _, r = flows.symbols(3)
    sol = flows.npg_flow(3)
    shifts = [sp.simplify(sol[i] - r[i]) for i in range(3)]
    assert all(sp.simplify(s - shifts[0]) == 0 for s in shifts)


def test_ips_flow_and_fixed_point():
    _, p, r = flows.symbols(4)
    R = sum(r)
    flow = flows.ips_flow(4)
    for i in range(4):
        assert sp.simplify(flow[i] - (r[i] - p[i] * R)) == 0
    fp = flows.ips_fixed_point(4)
    assert all(sp.simplify(fp[i] - r[i] / R) == 0 for i in range(4))
    # docs/theory.md item 3 example: r = (0.6, 0.4, 0.2, 0.1) -> (0.4615, 0.3077, 0.1538, 0.0769)
    vals = [float(e.subs(dict(zip(r, [0.6, 0.4, 0.2, 0.1])))) for e in fp]
    np.testing.assert_allclose(vals, [6 / 13, 4 / 13, 2 / 13, 1 / 13], atol=1e-15)
    np.testing.assert_allclose(vals, [0.4615, 0.3077, 0.1538, 0.0769], atol=1e-4)


@pytest.mark.parametrize("alpha", [0.5, 1.0, 2.0])
def test_ips_alpha_flow_matches_numeric_gradient_with_stop_gradient(alpha):
    K = 3
    z0, r = RNG.normal(size=K), RNG.uniform(0.1, 1.0, K)
    q = softmax(z0)  # sg(p), frozen

    def J(z):
        return np.sum(softmax(z) * r * q ** (-alpha))

    expr = flows.ips_alpha_flow(K)
    _, p, rs = flows.symbols(K)
    subs = {**dict(zip(p, q)), **dict(zip(rs, r)), flows.ALPHA: alpha}
    sym = np.array([float(e.subs(subs)) for e in expr])
    np.testing.assert_allclose(sym, numeric_grad(J, z0), atol=1e-8)
    np.testing.assert_allclose(sym, flow_velocity("ips", np.log(q), r, alpha), atol=1e-12)


def test_ips_alpha_fixed_point_is_r_power():
    p_sol = flows.ips_alpha_fixed_point()
    r, S = sp.symbols("r S", positive=True)
    assert sp.simplify(p_sol ** (1 - flows.ALPHA) * r - p_sol * S) == 0
    r_num, alpha = np.array([0.6, 0.4, 0.2, 0.1]), 0.5
    pstar = r_num ** (1 / alpha) / np.sum(r_num ** (1 / alpha))
    assert np.abs(flow_velocity("ips", np.log(pstar), r_num, alpha)).max() < 1e-14


def test_pg_fixed_points_are_vertices():
    sols = flows.pg_fixed_points(3)
    got = sorted(tuple(int(s[k]) for k in sorted(s, key=str)) for s in sols)
    assert got == [(0, 0, 1), (0, 1, 0), (1, 0, 0)]


def test_k2_invariants():
    u = flows.U
    assert sp.simplify(flows.pg_k2_invariant() - (u + sp.sinh(u))) == 0
    H = flows.ips_k2_invariant()
    r1v, r2v = 0.7, 0.3
    dH = sp.lambdify(u, sp.diff(H, u).subs({sp.Symbol("r1", positive=True): r1v,
                                             sp.Symbol("r2", positive=True): r2v}))
    for uv in [-1.0, 0.2, 2.0]:
        rate = (r1v - r2v) - (r1v + r2v) * np.tanh(uv / 2)
        assert abs(complex(dH(uv)).real - 1 / rate) < 1e-12


def test_asymptote_and_tie_exponents_symbolic():
    K = sp.Symbol("K", positive=True)
    assert sp.simplify(flows.pg_asymptote_expr() - (K - 1) / (K * flows.ETA)) == 0
    assert float(logratio.pg_asymptote(4, 0.4)) == pytest.approx(1.875, abs=1e-15)
    np.testing.assert_allclose(logratio.partial_tie_exponent([1, 2, 3]), [-1 / 2, -2 / 3, -3 / 4])


def test_entropy_expr_is_minus_covariance():
    e = flows.entropy_change_expr(3)
    _, p, _ = flows.symbols(3)
    v = sp.symbols("v0:3", real=True)
    pv, vv = np.array([0.5, 0.3, 0.2]), RNG.normal(size=3)
    num = float(e.subs({**dict(zip(p, pv)), **dict(zip(v, vv))}))
    assert num == pytest.approx(float(logratio.entropy_change(pv, vv)), abs=1e-13)


# ---- numeric laws vs independent integration --------------------------------------------------

@pytest.mark.parametrize("u0,delta,t", [(0.3, 0.5, 4.0), (-2.0, 1.0, 7.0), (1.0, -0.8, 3.0)])
def test_pg_k2_closed_form_vs_rk4(u0, delta, t):
    r = np.array([delta, 0.0])
    z = rk4(lambda _, z: flow_velocity("pg", z, r), [u0, 0.0], t, 4000)
    assert logratio.pg_logratio_k2(u0, delta, t) == pytest.approx(z[0] - z[1], abs=1e-9)
    # eta rescales time
    assert logratio.pg_logratio_k2(u0, delta, t / 2, eta=2.0) == pytest.approx(z[0] - z[1], abs=1e-9)


@pytest.mark.parametrize("u0,r1,r2,t", [(0.0, 0.6, 0.2, 3.0), (3.0, 0.6, 0.2, 5.0),
                                        (-1.0, 0.3, 0.9, 2.0), (0.5, 0.8, 0.0, 4.0),
                                        (0.5, 0.0, 0.8, 4.0), (0.0, 0.5, 0.5, 2.0)])
def test_ips_k2_closed_form_vs_rk4(u0, r1, r2, t):
    r = np.array([r1, r2])
    z = rk4(lambda _, z: flow_velocity("ips", z, r), [u0, 0.0], t, 4000)
    assert logratio.ips_logratio_k2(u0, r1, r2, t) == pytest.approx(z[0] - z[1], abs=1e-9)


def test_ips_k2_converges_to_log_ratio_of_rewards():
    assert logratio.ips_logratio_k2(-3.0, 0.6, 0.2, 200.0) == pytest.approx(np.log(3.0), abs=1e-12)


@pytest.mark.parametrize("flow,alpha", [("pg", 1.0), ("npg", 1.0), ("ips", 1.0), ("ips", 0.5)])
def test_flow_solve_vs_rk4(flow, alpha):
    z0, r = RNG.normal(size=4), np.array([0.6, 0.4, 0.2, 0.1])
    got = logratio.flow_solve(flow, z0, r, [2.5], eta=0.8, alpha=alpha)[0]
    want = rk4(lambda _, z: 0.8 * flow_velocity(flow, z, r, alpha), z0, 2.5, 2000)
    np.testing.assert_allclose(got, want, atol=1e-8)


def test_npg_logratio_slope_is_exact():
    z0, r = np.array([0.2, -0.4, 1.0]), np.array([1.0, 0.3, 0.3])
    ts = np.array([1.0, 2.0, 5.0])
    z = logratio.flow_solve("npg", z0, r, ts, eta=0.5)
    for i, j in [(0, 1), (1, 2)]:
        want = logratio.npg_logratio(z0[i] - z0[j], r[i], r[j], ts, eta=0.5)
        np.testing.assert_allclose(z[:, i] - z[:, j], want, atol=1e-10)
    # equal rewards keep their ratio: slope exactly 0
    assert np.ptp(z[:, 1] - z[:, 2]) < 1e-12


@settings(deadline=None)
@given(st.lists(st.floats(-3, 3), min_size=4, max_size=4), st.floats(0.0, 1.0))
def test_pg_rich_get_richer_for_tied_rewards(z, r_low):
    # outcomes 0, 1 tied at reward 1 > r_low: rate of log(p0/p1) = (p0 - p1)(1 - J), item 1
    p = softmax(np.array(z))
    r = np.array([1.0, 1.0, r_low, r_low])
    rate = logratio.logratio_rate("pg", p, r, 0, 1)
    assert rate == pytest.approx((p[0] - p[1]) * (1 - p @ r), abs=1e-12)
    if p[0] > p[1] and p @ r < 1 - 1e-9:
        assert rate > 0


def test_pg_asymptote_matches_discrete_iteration():
    # batch of (K, eta) cases, z <- z + eta p (r - J); t (r* - J) should approach (K-1)/(K eta)
    cases = [(4, 0.4, [1.0, 0.7, 0.5, 0.2]), (3, 1.0, [1.0, 0.0, 0.5]), (5, 0.2, [0.9, 1.0, 0.3, 0.1, 0.6])]
    seen = {}
    for K, eta, r in cases:
        r, z = np.array(r), np.zeros(K)
        vals = {}
        for t in range(1, 100_001):
            p = softmax(z)
            z = z + eta * p * (r - p @ r)
            if t in (10_000, 100_000):
                vals[t] = t * (r.max() - softmax(z) @ r)
        seen[(K, eta)] = vals
    for (K, eta), vals in seen.items():
        pred = float(logratio.pg_asymptote(K, eta))
        err4, err5 = abs(vals[10_000] - pred), abs(vals[100_000] - pred)
        assert err5 < 1e-2 * pred and err5 < err4 / 4, (K, eta, vals, pred)  # O(log t / t)


def test_mei_bound_holds_along_iteration():
    r, z, eta = np.array([1.0, 0.7, 0.5, 0.2]), np.array([0.0, 1.0, 0.5, 0.0]), 0.4
    gaps, pstar = [], []
    for _ in range(20_000):
        p = softmax(z)
        z = z + eta * p * (r - p @ r)
        p = softmax(z)
        gaps.append(1 - p @ r)
        pstar.append(p[0])
    c, t = min(pstar), np.arange(1, 20_001)
    assert np.all(np.array(gaps) <= logratio.mei_gap_bound(c, t))


@pytest.mark.parametrize("n_worse", [1, 2, 3])
def test_partial_tie_exponent_vs_log_time_integration(n_worse):
    # Vanilla PG flow integrated in s = log t (dz/ds = t dz/dt), fixed-step RK4, t from 1 to e^14.
    r = np.array([1.0, 1.0] + [0.5 - 0.1 * i for i in range(n_worse)])
    z0 = np.array([0.5, 0.0] + [0.0] * n_worse)

    def f(s, z):
        return np.exp(s) * flow_velocity("pg", z, r)

    z12 = rk4(f, z0, 12.0, 2400)
    z14 = rk4(lambda s, z: f(s + 12.0, z), z12, 2.0, 400)
    slope = ((z14[1] - z14[0]) - (z12[1] - z12[0])) / 2.0
    assert slope == pytest.approx(float(logratio.partial_tie_exponent(n_worse)), abs=5e-3)


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_entropy_change_vs_finite_difference(seed):
    rng = np.random.default_rng(seed)
    z, v = rng.normal(size=5), rng.normal(size=5)

    def H(x):
        p = softmax(x)
        return -np.sum(p * np.log(p))

    h = 1e-5
    fd = (H(z + h * v) - H(z - h * v)) / (2 * h)
    assert float(logratio.entropy_change(softmax(z), v)) == pytest.approx(fd, abs=1e-8)
