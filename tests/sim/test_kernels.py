"""Numba helpers that re-express objective math, pinned to the objective to 1e-10 (hypothesis)."""

import numpy as np
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from collapse_lab import objective as obj
from collapse_lab.sim import SimConfig
from collapse_lab.sim import kernels as kn
from collapse_lab.sim.simulate import build_recipe
from collapse_lab.sim.spec import DIV_CODES, recipe_codes

floats = st.floats(-30.0, 30.0, allow_nan=False)


@settings(deadline=None, max_examples=200)
@given(d=floats, kind=st.sampled_from(list(DIV_CODES)), alpha=st.floats(0.05, 0.95))
def test_divergence_term_and_grad(d, kind, alpha):
    x = torch.tensor([d], dtype=torch.float64, requires_grad=True)
    t = obj.divergence(x, torch.zeros(1, dtype=torch.float64), kind, alpha=alpha)
    t.sum().backward()
    term, got = kn.div_term_grad(DIV_CODES[kind], d, alpha)
    t = float(t.detach())
    assert abs(term - t) <= 1e-10 * max(1.0, abs(t))
    assert abs(got - float(x.grad)) <= 1e-10 * max(1.0, abs(float(x.grad)))


@settings(deadline=None, max_examples=100)
@given(n=st.integers(1, 64), frac=st.floats(0, 1), k=st.integers(1, 64), tau=st.sampled_from([0.0, 1e-3, 0.01, 0.1]))
def test_bbg_weight(n, frac, k, tau):
    m = float(round(frac * n))
    ref = float(obj.bbg_weights(torch.tensor([m]), torch.tensor([float(n)]), k, tau)[0])
    assert abs(kn.bbg_weight(m, float(n), float(k), tau) - ref) <= 1e-10 * max(1.0, abs(ref))


@settings(deadline=None, max_examples=100)
@given(n=st.integers(-2, 40), k=st.integers(-2, 40))
def test_log_comb(n, k):
    ref = float(obj.log_comb(torch.tensor([n]), torch.tensor([k]))[0])
    got = kn.log_comb(float(n), float(k))
    assert (np.isinf(ref) and np.isinf(got)) or abs(got - ref) <= 1e-10 * max(1.0, abs(ref))


@settings(deadline=None, max_examples=150)
@given(rewards=st.lists(st.sampled_from([0.0, 0.25, 1.0, 1.5]), min_size=2, max_size=9),
       kind=st.sampled_from(["grpo", "dr_grpo", "rloo", "reinforce", "passk"]),
       std=st.sampled_from(["group", "none"]), ddof=st.sampled_from([0, 1]))
def test_group_advantage(rewards, kind, std, ddof):
    G = len(rewards)
    ov = {"advantage_kind": kind, "advantage_std": std, "advantage_ddof": ddof, "advantage_k": min(2, G)}
    rec = build_recipe(SimConfig(recipe="grpo", overrides=ov, group_size=G))
    ic, fp = recipe_codes(rec)
    adv = np.empty(G)
    kn.group_advantage(np.array(rewards), ic, fp, np.nan, adv)
    kw = {"k": min(2, G)} if kind == "passk" else {}
    ref = obj.group_advantages(torch.tensor(rewards, dtype=torch.float64), torch.zeros(G, dtype=torch.long),
                               kind, std=std, ddof=ddof, **kw).numpy()
    np.testing.assert_allclose(adv, ref, rtol=1e-10, atol=1e-10)


@settings(deadline=None, max_examples=100)
@given(logits=st.lists(st.floats(-5, 5), min_size=2, max_size=8), data=st.data())
def test_sampler_inverse_cdf(logits, data):
    """sample_outcomes draws y = #{k: u >= cumsum(pi)_k} (the numpy/torch backend's rule)."""
    z = np.array(logits)[None, None]
    u = np.array(data.draw(st.lists(st.floats(0, 1, exclude_max=True), min_size=1, max_size=5)))[None, None]
    y = np.empty(u.shape, np.int64)
    kn.sample_outcomes(z, np.zeros(1, np.int64), u, y)
    from collapse_lab.sim.reference import sample_numpy

    assert np.array_equal(y, sample_numpy(z, np.zeros(1, np.int64), u))


def test_memory_update_golden():
    """One memory step on 2 prompts moves each row by lr (counts/G - pi_mem), hand-derived, in both backends:
    row 0 from uniform memory with y = (0, 0, 1, 2): 0.1 (1/2 - 1/3, 1/4 - 1/3, 1/4 - 1/3);
    row 1 from pi_mem = (1/2, 1/4, 1/4) with y = (2, 2, 2, 2): 0.1 (-1/2, -1/4, 3/4)."""
    from collapse_lab.sim.reference import torch_memory_update

    zmem0 = np.zeros((1, 2, 3))
    zmem0[0, 1, 0] = np.log(2.0)
    y = np.array([[[0, 0, 1, 2], [2, 2, 2, 2]]], np.int64)
    tp = np.array([0, 1], np.int64)
    golden = np.array([[1 / 60, -1 / 120, -1 / 120], [-0.05, -0.025, 0.075]])
    for update in (kn.memory_update, torch_memory_update):
        zmem = zmem0.copy()
        update(zmem, y, tp, 0.1)
        np.testing.assert_allclose(zmem[0] - zmem0[0], golden, rtol=0, atol=1e-12)
