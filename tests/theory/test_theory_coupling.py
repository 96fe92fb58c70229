"""docs/theory.md items 12-13: the kernel prediction against a real parameter update (torch autograd),
and squeezing for all policies (hypothesis)."""

import numpy as np
import pytest
import sympy as sp
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from collapse_lab.theory import coupling_logprob_change, coupling_prediction, squeeze_logprob_change
from collapse_lab.theory.coupling import coupling_kernel, squeeze_expr


def objective(z, counts):
    # an arbitrary smooth per-prompt objective: sum_x sum_k c_xk log softmax(z_x)_k
    return (counts * torch.log_softmax(z, -1)).sum()


def test_tabular_features_prediction_vs_autograd_step():
    rng = np.random.default_rng(0)
    X, K, d, eta = 6, 4, 3, 0.3
    U = torch.tensor(rng.normal(size=(X, d)))
    W = torch.tensor(rng.normal(size=(K, d)), requires_grad=True)
    counts = torch.tensor(rng.integers(0, 4, size=(X, K)).astype(float))
    z = U @ W.T  # (X, K)
    z.retain_grad()
    objective(z, counts).backward()
    g = z.grad.numpy()
    with torch.no_grad():
        z_new = U @ (W + eta * W.grad).T
    np.testing.assert_allclose(coupling_prediction(U.numpy(), g, eta), (z_new - z).detach().numpy(),
                               atol=1e-12)


def test_general_features_prediction_vs_autograd_step():
    rng = np.random.default_rng(1)
    X, K, d, eta = 4, 5, 6, 0.2
    phi = torch.tensor(rng.normal(size=(X, K, d)))
    w = torch.tensor(rng.normal(size=d), requires_grad=True)
    counts = torch.tensor(rng.integers(0, 3, size=(X, K)).astype(float))
    z = phi @ w
    z.retain_grad()
    objective(z, counts).backward()
    with torch.no_grad():
        z_new = phi @ (w + eta * w.grad)
    np.testing.assert_allclose(coupling_prediction(phi.numpy(), z.grad.numpy(), eta),
                               (z_new - z).detach().numpy(), atol=1e-12)


def test_one_hot_features_do_not_couple():
    g = np.zeros((3, 4))
    g[0] = [1.0, -0.5, 0.0, -0.5]  # only prompt 0 is trained
    dz = coupling_prediction(np.eye(3), g, 0.1)
    np.testing.assert_allclose(dz[0], 0.1 * g[0])
    assert np.all(dz[1:] == 0)
    # overlapping features: prompt 1 (K(0, 1) > 0) moves the same way, prompt 2 (K = 0) does not
    u = np.array([[1.0, 0.0], [0.5, 0.5], [0.0, 1.0]])
    dz = coupling_prediction(u, g, 0.1)
    np.testing.assert_allclose(dz[1], 0.5 * dz[0])
    assert np.all(dz[2] == 0)
    assert coupling_kernel(u)[0, 1] == 0.5


def test_logprob_change_is_first_order():
    rng = np.random.default_rng(2)
    X, K, d = 5, 4, 3
    U, W = rng.normal(size=(X, d)), rng.normal(size=(K, d))
    g = rng.normal(size=(X, K))
    z = U @ W.T
    p = np.exp(z) / np.exp(z).sum(-1, keepdims=True)
    errs = []
    for eta in (1e-2, 1e-3):
        dz = coupling_prediction(U, g, eta)
        exact = np.log(np.exp(z + dz) / np.exp(z + dz).sum(-1, keepdims=True)) - np.log(p)
        errs.append(np.abs(exact - coupling_logprob_change(U, g, eta, p)).max())
    assert errs[1] < errs[0] / 50  # O(eta^2)


def test_squeeze_expr_matches_numeric():
    expr = squeeze_expr(4, y=1)
    p = np.array([0.1, 0.2, 0.3, 0.4])
    subs = {**dict(zip(sp.symbols("p0:4", positive=True), p)), sp.Symbol("eta", positive=True): 0.5}
    np.testing.assert_allclose([float(e.subs(subs)) for e in expr], squeeze_logprob_change(p, 1, 0.5),
                               atol=1e-14)


@settings(deadline=None)
@given(st.lists(st.floats(0.01, 1.0), min_size=2, max_size=7), st.data())
def test_negative_gradient_raises_most_likely_other(w, data):
    p = np.array(w) / np.sum(w)
    y = data.draw(st.integers(0, len(p) - 1))
    others = np.delete(np.arange(len(p)), y)
    k_star = others[np.argmax(p[others])]
    first = squeeze_logprob_change(p, y, 1.0)
    assert first[k_star] > 0
    # the exact step agrees for a small step
    e = np.zeros_like(p)
    e[y] = 1
    z = np.log(p) - 1e-4 * (e - p)
    assert np.log(np.exp(z[k_star]) / np.exp(z).sum()) > np.log(p[k_star])
    assert first[k_star] == pytest.approx(p[k_star] + p[y] - np.sum(p**2), abs=1e-14)
