"""Config validation, problem generators and the Trajectory's logged metrics."""

import json

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from collapse_lab import metrics
from collapse_lab.sim import DEFAULT_KS, Problem, SimConfig, bandit, coupled, multimode, simulate

PR = multimode(6, 5, 2, seed=0)


@pytest.mark.parametrize("kw,match", [
    ({"lr": -0.1}, "lr = -0.1 is invalid; allowed: a finite float > 0"),
    ({"lr": 0.0}, "lr = 0.0 is invalid"),
    ({"lr": True}, "lr = True is invalid"),
    ({"lr": float("inf")}, "lr = inf is invalid"),
    ({"lr": float("nan")}, "lr = nan is invalid"),
    ({"lr": "0.1"}, "lr = '0.1' is invalid"),
    ({"adam_eps": 0.0}, "adam_eps = 0.0 is invalid; allowed: a finite float > 0"),
    ({"adam_eps": float("nan")}, "adam_eps = nan is invalid"),
    ({"adam_eps": -1e-8, "optimizer": "adam"}, "adam_eps = -1e-08 is invalid"),
    ({"adam_betas": (0.9, 1.0)}, r"adam_betas = \(0.9, 1.0\) is invalid; allowed: a pair"),
    ({"adam_betas": (0.9,)}, "adam_betas = .* is invalid"),
    ({"adam_betas": (True, 0.9)}, "adam_betas = .* is invalid"),
    ({"adam_betas": (float("nan"), 0.9)}, "adam_betas = .* is invalid"),
    ({"recipe": "grpo", "group_size": 1}, "group_size = 1 is invalid; allowed: an int >= 2"),
    ({"recipe": "rloo", "group_size": 1}, "group_size = 1 is invalid; allowed: an int >= 2"),
    ({"group_size": 4.0}, "group_size = 4.0 is invalid; allowed: an int >= 1"),
    ({"recipe": "no_such_recipe"}, "recipe.*unknown recipe 'no_such_recipe'"),
    ({"recipe": 3}, "recipe = 3 is invalid"),
    ({"overrides": {"no_such_field": 1}}, "overrides.*no_such_field"),
    ({"overrides": [("eta", 1)]}, "overrides = .* is invalid; allowed: a dict"),
    ({"mode": "exact"}, "mode = 'exact' is invalid; allowed: sampled, mean_field, flow"),
    ({"backend": "jax"}, "backend = 'jax' is invalid; allowed: numba, torch"),
    ({"backend": "torch", "mode": "flow"}, "backend = 'torch' is invalid; allowed: 'numba' for mode='flow'"),
    ({"backend": "torch", "mode": "mean_field"}, "backend = 'torch' is invalid; allowed: 'numba' for mode="),
    ({"optimizer": "rmsprop"}, "optimizer = 'rmsprop' is invalid; allowed: sgd, adam, npg"),
    ({"param": "linear"}, "param = 'linear' is invalid; allowed: 'tabular'"),
    ({"steps": -1}, "steps = -1 is invalid; allowed: an int >= 0"),
    ({"steps": True}, "steps = True is invalid"),
    ({"replicates": 0}, "replicates = 0 is invalid; allowed: an int >= 1"),
    ({"log_every": 0}, "log_every = 0 is invalid; allowed: an int >= 1"),
    ({"saturation_k": 2.5}, "saturation_k = 2.5 is invalid"),
    ({"ks": (0, 2)}, r"ks = \(0, 2\) is invalid; allowed: a non-empty tuple of ints >= 1"),
    ({"ks": ()}, "ks = .* is invalid"),
    ({"ks": (1, True)}, "ks = .* is invalid"),
    ({"ks": (1, 2.0)}, "ks = .* is invalid"),
    ({"coverage_threshold": 1.0}, "coverage_threshold = 1.0 is invalid; allowed: a float in \\(0, 1\\)"),
    ({"coverage_threshold": float("nan")}, "coverage_threshold = nan is invalid"),
    ({"saturation": 0.0}, "saturation = 0.0 is invalid"),
    ({"track": ((0, 1, 9),)}, "track = .* is invalid; allowed: a tuple of \\(prompt, i, j\\)"),
    ({"track": ((0, 1.0, 2),)}, "track = .* is invalid"),
    ({"train_prompts": (99,)}, r"train_prompts = \(99,\) is invalid; allowed: None or a non-empty"),
    ({"train_prompts": (0.5,)}, r"train_prompts = \(0.5,\) is invalid"),
    ({"train_prompts": (True,)}, "train_prompts = .* is invalid"),
    ({"train_prompts": ()}, "train_prompts = .* is invalid"),
    ({"snapshots": 1}, "snapshots = 1 is invalid; allowed: True or False"),
    ({"optimizer": "npg"}, "optimizer = 'npg' is invalid"),
    ({"recipe": "passk", "group_size": 2}, "group_size = 2 is invalid; allowed: an int >= passk k=4"),
    ({"recipe": "dapo", "mode": "mean_field"}, "mean_field mode is undefined"),
    ({"recipe": "isac", "mode": "flow"}, "flow mode is undefined"),
])
def test_config_errors_name_the_field(kw, match):
    with pytest.raises(ValueError, match=match):
        simulate(PR, SimConfig(**({"steps": 2} | kw)))


def test_numpy_integers_are_ints():
    """Indices from numpy (np.flatnonzero, np.arange) are accepted where ints are expected."""
    tp = tuple(np.flatnonzero(np.arange(6) % 2 == 0))
    tr = simulate(PR, SimConfig(steps=2, train_prompts=tp, ks=tuple(np.array([1, 4])), replicates=np.int64(2)))
    assert tr.pass_at_k.shape == (2, 3, 2)  # R x (steps 0, 1, 2) x ks


def test_k_mismatch_between_rewards_and_logits():
    with pytest.raises(ValueError, match="K mismatch"):
        Problem(np.zeros((2, 4)), np.zeros((2, 5)))
    with pytest.raises(ValueError, match="K mismatch"):
        bandit([1, 0, 0], [0.5, 0.5])


def test_multimode_has_rare_correct_modes_and_hard_prompts():
    pr = multimode(200, 32, 4, min_mass=1e-3, max_mass=0.9, seed=1)
    mass = (pr.base_probs() * pr.correct).sum(1)
    assert pr.rewards.shape == (200, 32) and np.all(pr.correct.sum(1) == 4)
    assert mass.min() < 2e-3 and mass.max() > 0.5  # some prompts almost never solved
    np.testing.assert_allclose(pr.base_probs().sum(1), 1.0, atol=1e-12)
    within = np.where(pr.correct, pr.base_probs(), np.nan) / mass[:, None]
    assert np.nanmin(within) < 0.1  # long tail inside the correct set: rare modes


def test_coupled_kernel_structure():
    """phi(x, y) = sqrt(c) e_y (x) u_x: K((x,y),(x',y')) = c delta_yy' u_x.u_x'."""
    pr = coupled(6, 4, n_clusters=2, dim=3, coupling=0.25, seed=0)
    k = np.einsum("xyd,abd->xyab", pr.features, pr.features)
    assert np.allclose(k[0, 1, 3, 2], 0.0) and k[0, 1, 3, 1] != 0.0
    np.testing.assert_allclose(k[2, 1, 2, 1], 0.25, atol=1e-12)  # unit-norm u_x


def test_trajectory_metrics_at_step_zero_and_json():
    cfg = SimConfig(recipe="grpo", steps=6, log_every=3, replicates=2, track=((0, 0, 1),), snapshots=True)
    tr = simulate(PR, cfg, seed=1)
    assert list(tr.steps) == [0, 3, 6] and tuple(tr.ks) == DEFAULT_KS and DEFAULT_KS[-1] == 1024
    mass = (PR.base_probs() * PR.correct).sum(1)
    np.testing.assert_allclose(tr.pass_at_k[0, 0], metrics.pass_at_k_exact(mass[:, None], tr.ks).mean(0))
    np.testing.assert_allclose(tr.coverage[0, 0], metrics.coverage(PR.base_probs(), PR.correct).mean())
    np.testing.assert_allclose(tr.effective_modes[0, 0], metrics.effective_modes(PR.base_probs(), PR.correct).mean())
    p0 = PR.base_probs()
    np.testing.assert_allclose(tr.entropy[0, 0], -(p0 * np.log(p0)).sum(1).mean(), rtol=1e-12)
    assert tr.kl[0, 0] == pytest.approx(0.0, abs=1e-12) and np.all(tr.kl[:, 1:] > 0)
    assert np.isnan(tr.zero_var_frac[0, 0]) and np.all((tr.zero_var_frac[:, 1:] >= 0) & (tr.zero_var_frac[:, 1:] <= 1))
    assert np.all((tr.saturated_share[:, 1:] >= 0) & (tr.saturated_share[:, 1:] <= 1))
    assert tr.probs.shape == (2, 3, 6, 5) and tr.log_ratios.shape == (2, 3, 1)
    np.testing.assert_allclose(tr.log_ratios[:, -1, 0], tr.final_logits[:, 0, 0] - tr.final_logits[:, 0, 1])
    json.dumps(tr.to_dict())


def test_saturated_share_counts_updates_on_solved_prompts():
    """GRPO spends part of its first update on prompts whose pass@16 is already > 0.99 (paper C);
    training only prompt 0 (hard, mass 0.03) puts the share at exactly 0."""
    pr = multimode(20, 8, 2, min_mass=0.03, max_mass=0.9, seed=2)
    kw = dict(steps=1, replicates=4, group_size=8, lr=1.0)
    g = simulate(pr, SimConfig(recipe="grpo", **kw), seed=0).saturated_share[:, -1]
    assert np.all((g > 0) & (g < 1))
    hard = int(np.argmin((pr.base_probs() * pr.correct).sum(1)))
    h = simulate(pr, SimConfig(recipe="grpo", train_prompts=(hard,), **kw), seed=0).saturated_share[:, -1]
    assert np.all(h == 0)


def test_progress_bar_and_zero_steps(capsys):
    tr = simulate(PR, SimConfig(steps=0), seed=0)
    assert list(tr.steps) == [0]
    simulate(PR, SimConfig(steps=3, progress=True), seed=0)


@settings(deadline=None, max_examples=25)
@given(logits=st.lists(st.floats(-4, 4), min_size=3, max_size=6), reward=st.sampled_from([0.0, 1.0, 0.4]),
       recipe=st.sampled_from(["grpo", "dr_grpo", "rloo", "ips_grpo", "passk", "unlikeliness"]),
       seed=st.integers(0, 10))
def test_equal_rewards_give_zero_update(logits, reward, recipe, seed):
    """Group-relative advantages vanish when every outcome has the same reward (docs/methods.md §1);
    IPS and unlikeliness reshape equal rewards into unequal ones, so only r = 0 is checked there. Zero up to round-off
    (rloo's r - (sum - r)/(G-1) leaves ~1e-17 for r = 0.4, in the objective too)."""
    K = len(logits)
    pr = Problem(np.full((1, K), reward), np.array([logits]))
    tr = simulate(pr, SimConfig(recipe=recipe, steps=3, group_size=4, replicates=2, lr=1.0, ks=(1,)), seed=seed)
    if recipe in ("ips_grpo", "unlikeliness") and reward != 0.0:
        return
    np.testing.assert_allclose(tr.final_logits, np.broadcast_to(pr.logits, tr.final_logits.shape), atol=1e-12)


def test_bench_quick_smoke():
    from collapse_lab import bench

    rep = bench.main(["--quick", "--no-subprocess", "--repeats", "1", "--steps", "5", "--torch-steps", "2"])
    assert rep["numba"]["rate"] > 0 and rep["torch"]["rate"] > 0 and rep["ratio"] > 0
    lg = rep["logging"]  # default logging vs log_every = steps, same run
    assert [r["logging"] for r in lg["rows"]] == ["log_every=steps", "log_every=1"]
    assert lg["ratio"] == pytest.approx(lg["rows"][1]["rate"] / lg["rows"][0]["rate"])


@pytest.mark.filterwarnings("ignore:overflow encountered")
@pytest.mark.parametrize("backend", ["numba", "torch"])
def test_divergence_is_a_clear_error(backend):
    from collapse_lab.sim import SimConfig, bandit, simulate
    prob = bandit([1e308, 0.0, 0.0], [0.2, 0.4, 0.4])  # finite rewards whose update overflows
    cfg = SimConfig(recipe="reinforce", lr=10.0, steps=5, group_size=4, backend=backend)
    with pytest.raises(FloatingPointError, match="non-finite logits at step"):
        simulate(prob, cfg, seed=0)
