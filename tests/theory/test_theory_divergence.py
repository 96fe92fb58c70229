"""docs/theory.md item 17: f-divergence-regularised optima against long exact-gradient ascent, the
symbolic gradient against the closed form, and the equal-reward-ratio property for all inputs."""

import numpy as np
import pytest
import sympy as sp
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from collapse_lab.objective import categorical_divergence_grad, f_generator
from collapse_lab.theory import divergence as D
from collapse_lab.theory import fdiv_fixed_point, fdiv_multiplier

# f' of each generator, typed from the docs/methods.md §3 table (f' is defined up to an additive constant,
# which does not move the optimum); checked against the objective's f' below.
FPRIME = {
    "reverse_kl": lambda u: np.log(u),
    "forward_kl": lambda u: 1 - 1 / u,
    "js": lambda u: np.log(2 * u / (u + 1)),
    "alpha": lambda u: (1 - u**-0.2) / 0.2,
}
OBJECTIVE_NAME = {"reverse_kl": "reverse_kl", "forward_kl": "forward", "js": "js", "alpha": "alpha"}


def ascend(ref, r, beta, fp, max_steps=60_000):
    """Exact-gradient ascent on E_pi[r] - beta D_f(pi || ref) in the logits, until |grad| < 1e-15."""
    z = np.zeros_like(ref)
    for _ in range(max_steps):
        pi = np.exp(z - z.max(-1, keepdims=True))
        pi /= pi.sum(-1, keepdims=True)
        f = fp(pi / ref)
        g = pi * (r - (pi * r).sum(-1, keepdims=True)) - beta * pi * (f - (pi * f).sum(-1, keepdims=True))
        if np.abs(g).max() < 1e-15:
            break
        z += 2.0 * g / (1 + beta)
    return pi


@pytest.mark.parametrize("kind", D.KINDS)
def test_fixed_point_vs_gradient_ascent(kind):
    rng = np.random.default_rng(0)
    K = 5
    ref = rng.dirichlet(2 * np.ones(K), size=4)
    r = rng.uniform(0, 1, (4, K))
    r[:, 1] = r[:, 0]  # a tie
    beta = np.array([0.1, 0.3, 1.0, 3.0])
    want = ascend(ref, r, beta[:, None], FPRIME[kind])
    np.testing.assert_allclose(fdiv_fixed_point(ref, r, beta, kind), want, atol=1e-10, rtol=0)


@pytest.mark.parametrize("kind", D.KINDS)
def test_theory_fprime_matches_objective_up_to_constant(kind):
    d = torch.linspace(-3, 3, 13, dtype=torch.float64)
    _, fp_obj = f_generator(OBJECTIVE_NAME[kind], alpha=0.2)
    fp_theory = sp.lambdify([D.u_, D.ALPHA], sp.diff(D.generator_expr(kind), D.u_))
    diff = fp_theory(np.exp(d.numpy()), 0.2) - fp_obj(d).numpy()
    assert np.ptp(diff) < 1e-12
    diff_test = FPRIME[kind](np.exp(d.numpy())) - fp_obj(d).numpy()
    assert np.ptp(diff_test) < 1e-12


@pytest.mark.parametrize("kind", D.KINDS)
def test_symbolic_gradient_is_closed_form(kind):
    K = 3
    expr = D.fdiv_gradient_expr(kind, K)
    z, ref = np.array([0.3, -0.5, 1.1]), np.array([0.2, 0.5, 0.3])
    subs = {**dict(zip(sp.symbols(f"z0:{K}", real=True), z)),
            **dict(zip(sp.symbols(f"ref0:{K}", positive=True), ref)), D.ALPHA: 0.2}
    sym = np.array([float(e.subs(subs)) for e in expr])
    pi = np.exp(z) / np.exp(z).sum()
    f = FPRIME[kind](pi / ref)
    np.testing.assert_allclose(sym, pi * (f - pi @ f), atol=1e-12)
    obj = categorical_divergence_grad(torch.tensor(z), torch.tensor(np.log(ref)), OBJECTIVE_NAME[kind])
    np.testing.assert_allclose(sym, obj.numpy(), atol=1e-12)


def test_closed_forms_reverse_and_forward_kl():
    ref, r, beta = np.array([0.4, 0.3, 0.2, 0.1]), np.array([1.0, 0.2, 0.5, 0.9]), 0.4
    rev = fdiv_fixed_point(ref, r, beta, "reverse_kl")
    np.testing.assert_allclose(rev, ref * np.exp(r / beta) / np.sum(ref * np.exp(r / beta)), atol=1e-15)
    fwd = fdiv_fixed_point(ref, r, beta, "forward")
    lam = beta * ref / fwd + r  # pi* = beta ref / (Lambda - r) -> Lambda = beta ref/pi + r
    assert np.ptp(lam) < 1e-12 and lam[0] > r.max()
    # the multiplier: r - beta f'(u) equal across outcomes (f' = 1 - 1/u) -> Lambda - beta
    assert float(fdiv_multiplier(ref, r, beta, "forward_kl")) == pytest.approx(lam[0] - beta, abs=1e-12)


def test_inverse_derivative_symbolic():
    for kind in D.KINDS:
        inv, sup = D.fprime_inverse_expr(kind)
        fp = sp.diff(D.generator_expr(kind), D.u_)
        for y in (-2.0, -0.3, 0.4):
            if y < float(sup.subs(D.ALPHA, 0.2)):
                u = float(inv.subs({D.y_: y, D.ALPHA: 0.2}))
                assert float(fp.subs({D.u_: u, D.ALPHA: 0.2})) == pytest.approx(y, abs=1e-12)


probs = st.lists(st.floats(0.05, 1.0), min_size=4, max_size=4)


@settings(deadline=None)
@given(probs, st.lists(st.sampled_from([0.0, 0.3, 1.0]), min_size=4, max_size=4),
       st.floats(0.05, 5.0), st.sampled_from(D.KINDS))
def test_equal_rewards_keep_reference_ratio(w, r, beta, kind):
    ref = np.array(w) / np.sum(w)
    r = np.array(r)
    pi = fdiv_fixed_point(ref, r, beta, kind)
    assert abs(pi.sum() - 1) < 1e-12 and np.all(pi > 0)
    for i in range(4):
        for j in range(4):
            if r[i] == r[j]:
                assert pi[i] / pi[j] == pytest.approx(ref[i] / ref[j], rel=1e-10)
    # stationarity of E[r] - beta D_f at pi* (gradient from the objective's closed form)
    z = np.log(pi)
    grad = pi * (r - pi @ r) - beta * categorical_divergence_grad(
        torch.tensor(z), torch.tensor(np.log(ref)), OBJECTIVE_NAME[kind]).numpy()
    assert np.abs(grad).max() < 1e-9


def test_bad_inputs():
    with pytest.raises(ValueError, match="kind"):
        fdiv_fixed_point([0.5, 0.5], [1, 0], 1.0, "tv")
    with pytest.raises(ValueError, match="beta"):
        fdiv_fixed_point([0.5, 0.5], [1, 0], 0.0, "js")
    with pytest.raises(ValueError, match="ref"):
        fdiv_fixed_point([0.5, 0.6], [1, 0], 1.0, "js")
