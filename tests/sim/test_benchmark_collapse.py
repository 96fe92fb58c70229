"""The semantic-coupling benchmark (sim.problems.shared_answers) reproduces the crossover of
Yue et al. 2025 under plain GRPO; the tabular multimode control cannot; the simulator's flow on the
two-prompt instance (answer_pair) follows collapse_lab.theory.shared_answers.

Tolerances: crossover and control claims at 4 replicate standard errors; one flow step equals
lr * theory rate to 1e-12 (same arithmetic up to rounding); the Euler iteration of the flow is
first order in lr, so err(lr) / err(lr/2) = 2 +- 0.05 and the Richardson extrapolation
2 u(lr/2) - u(lr) matches the RK45 ODE solution to 5e-5 (the O(lr^2) remainder, measured ~1e-5).
"""

import numba
import numpy as np
import pytest

from collapse_lab.compare import crossover
from collapse_lab.sim import SimConfig, multimode, simulate
from collapse_lab.sim.problems import answer_pair, shared_answers
from collapse_lab.theory import shared_answers as sa

BENCH = dict(param="linear", steps=300, replicates=8, log_every=100)  # all else SimConfig defaults


@pytest.fixture(autouse=True, scope="module")
def one_thread():
    """Small problems: numba's pool launch overhead dominates on a busy machine; results do not
    depend on the thread count (kernels.py)."""
    old = numba.get_num_threads()
    numba.set_num_threads(1)
    yield
    numba.set_num_threads(old)


def test_grpo_crossover_on_shared_answers():
    """Plain GRPO (sampled, G = 8, lr = 0.1, sgd): Pass@1 up, Pass@k below base for k >= 256 by
    more than 4 SE; the crossover k is between 2 and 256 (measured: 64)."""
    cfg = SimConfig(**BENCH)
    assert (cfg.recipe, cfg.mode, cfg.optimizer, cfg.lr, cfg.group_size) == ("grpo", "sampled", "sgd", 0.1, 8)
    tr = simulate(shared_answers(), cfg, seed=0)
    c = crossover(tr.pass_at_k, tr.ks)
    ks = list(tr.ks)
    assert np.all(c["se"] > 0)  # a real replicate spread, not a degenerate 0
    assert c["diff"][0] > 0.3 and 1 in c["above_k"]
    assert {256, 512, 1024} <= set(c["below_k"])
    assert c["crossover_k"] is not None and 2 <= c["crossover_k"] <= 256
    i = ks.index(c["crossover_k"])
    assert all(k in c["above_k"] for k in ks[:i] if k <= 16)  # above the base at small k
    print("shared_answers GRPO crossover:", {int(k): (round(float(b), 4), round(float(m), 4), round(float(s), 5))
          for k, b, m, s in zip(ks, c["base"], c["mean"], c["se"])}, "k* =", c["crossover_k"])


def test_tabular_control_cannot_collapse():
    """Tabular GRPO (mean-centred advantages, binary rewards): dz = sum_b A_b e_{y_b} raises sampled
    correct logits and lowers sampled wrong ones, so every prompt's correct mass is non-decreasing
    at every step and every replicate, at any lr; so Pass@k ends >= base at every k. Checked on the
    multimode control at the studies' lr (0.5 per prompt) and on shared_answers without sharing."""
    for pb in (multimode(), shared_answers(n_prompts=32)):
        cfg = SimConfig(steps=120, lr=0.5 * pb.n_prompts, replicates=4, ks=(1, 16, 256, 1024))
        tr = simulate(pb, cfg, seed=1)
        steps = np.diff(tr.correct_mass, axis=1)  # (R, L-1, P)
        assert steps.min() >= -1e-12
        assert (tr.correct_mass[:, -1] - tr.correct_mass[:, 0]).max() > 0.1  # it did train
        c = crossover(tr.pass_at_k, tr.ks)
        assert c["crossover_k"] is None and c["below_k"] == []


def test_zero_coupling_with_both_is_tabular():
    """shared_answers(coupling=0) with param='both' reproduces the tabular run (to rounding: the
    tabular SGD path steps z in place, 'both' recomputes z0 + theta)."""
    pb = shared_answers(n_prompts=16, n_answers=8, coupling=0.0)
    runs = [simulate(pb, SimConfig(param=p, steps=20, replicates=2, lr=2.0), seed=3).final_logits
            for p in ("both", "tabular")]
    np.testing.assert_allclose(runs[0], runs[1], rtol=0, atol=1e-12)
    assert np.abs(runs[0] - pb.logits).max() > 0.1


PAIRS = [(1.0, -3.0, "grpo", 1.0), (2.0, -1.0, "grpo", 1.0), (1.0, -3.0, "dr_grpo", 2.0)]


def _pair_flow(d1, d2, kind, c, lr, steps, log_every=1):
    cfg = SimConfig(recipe=kind, mode="flow", param="linear", lr=lr, steps=steps, ks=(1,),
                    track=((0, 0, 1),), log_every=log_every)
    tr = simulate(answer_pair(d1, d2, c), cfg)
    return tr, tr.log_ratios[0, :, 0] - d1  # u = sqrt(c)(w_a - w_b) = (z_a - z_b on prompt 0) - d1


@pytest.mark.parametrize("d1,d2,kind,c", PAIRS)
def test_pair_flow_step_is_theory_rate(d1, d2, kind, c):
    """Each flow step moves u by exactly lr * c [h(d1 + u) - h(d2 - u)] (theory.pair_rate)."""
    _, u = _pair_flow(d1, d2, kind, c, 0.3, 60)
    np.testing.assert_allclose(np.diff(u), 0.3 * sa.pair_rate(u[:-1], d1, d2, c, kind), rtol=0, atol=1e-12)


@pytest.mark.parametrize("d1,d2,kind,c", PAIRS)
def test_pair_flow_trajectory_matches_ode(d1, d2, kind, c):
    """Flow iterates vs the RK45 solution of the reduced ODE on t in [0, 20] (module docstring)."""
    us = {lr: _pair_flow(d1, d2, kind, c, lr, int(round(20 / lr)), int(round(1 / lr)))[1] for lr in (0.1, 0.05)}
    t = np.arange(21.0)
    ode = sa.pair_solve(d1, d2, t, c, kind)["u"]
    e1, e2 = np.abs(us[0.1] - ode).max(), np.abs(us[0.05] - ode).max()
    assert abs(e1 / e2 - 2.0) < 0.05
    assert np.abs(2 * us[0.05] - us[0.1] - ode).max() < 5e-5


def test_pair_flow_terminal_states():
    """d1 + d2 > 0: both prompts equalise at sigmoid((d1 + d2)/2) (1e-9); d1 + d2 < 0: the harder
    prompt collapses with t^2 P -> 4 e^d2 / kappa^2 (theory.pair_tail_constant; the discrete
    iteration approaches it as O(log t / t): within 1% at t = 4000)."""
    tr, _ = _pair_flow(2.0, -1.0, "grpo", 1.0, 0.5, 800, 800)
    np.testing.assert_allclose(tr.correct_mass[0, -1], sa.pair_limit(2.0, -1.0), rtol=0, atol=1e-9)
    tr, _ = _pair_flow(1.0, -3.0, "grpo", 1.0, 1.0, 4000, 4000)
    p1, p2 = tr.correct_mass[0, -1]
    assert p1 > 0.9999 and abs(4000.0**2 * p2 / sa.pair_tail_constant(1.0, -3.0) - 1) < 0.01


def test_general_linear_flow_matches_ode():
    """A 4-prompt, 3-answer shared_answers instance: flow logits vs theory.linear_flow_solve (the
    objective's population advantages through the chain rule), Richardson-extrapolated, 5e-5."""
    pb = shared_answers(4, 3, 1, seed=1)
    z = {}
    for lr in (0.1, 0.05):
        n = int(round(10 / lr))
        cfg = SimConfig(mode="flow", param="linear", lr=lr, steps=n, ks=(1,), log_every=n)
        z[lr] = simulate(pb, cfg).final_logits[0]
    w = sa.linear_flow_solve(pb.logits, pb.rewards, pb.features, [10.0])[-1]
    pred = pb.logits + pb.features @ w
    assert np.abs(z[0.1] - pred).max() > 1e-3  # first-order error is visible ...
    assert np.abs(2 * z[0.05] - z[0.1] - pred).max() < 5e-5  # ... and extrapolates away


def test_easy_prompts_and_validation():
    """n_easy prompts get base correct mass easy_mass exactly; the others are unchanged; bad
    arguments name the field."""
    a, b = shared_answers(n_easy=0), shared_answers(n_easy=8, easy_mass=0.97)
    mass = (b.base_probs() * b.correct).sum(1)
    np.testing.assert_allclose(mass[:8], 0.97, rtol=0, atol=1e-12)
    assert np.array_equal(a.logits[8:], b.logits[8:]) and np.array_equal(a.rewards, b.rewards)
    for kw, field in ((dict(n_easy=-1), "n_easy"), (dict(easy_mass=1.0), "easy_mass"),
                      (dict(n_correct=32), "n_correct"), (dict(coupling=-1.0), "coupling"),
                      (dict(noise=float("nan")), "noise")):
        with pytest.raises(ValueError, match=f"{field} = .* is invalid; allowed"):
            shared_answers(**kw)
