"""Logged metrics: the numba implementation (metric_kernels, fused into the kernel) against the
reference built from collapse_lab.metrics / objective (the pre-numba Logger, kept here), to 1e-12."""

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from collapse_lab import metrics
from collapse_lab.objective import categorical_divergence
from collapse_lab.sim import SimConfig, coupled, multimode, simulate
from collapse_lab.sim import state as state_mod
from collapse_lab.sim.problems import Problem, log_softmax_np, softmax_np
from collapse_lab.sim.trajectory import Logger

TOL = 1e-12
FIELDS = ("pass_at_k", "correct_mass", "entropy", "coverage", "effective_modes", "kl")


def reference_row(problem, cfg, z):
    """The metrics of logits z [R, P, K] as the numpy/torch Logger computed them (trajectory.py docs)."""
    pi = softmax_np(z)
    has = problem.correct.any(1)
    over = lambda x: x[:, has].mean(1) if has.any() else np.zeros(x.shape[0])  # noqa: E731
    mass = np.clip((pi * problem.correct).sum(-1), 0.0, 1.0)
    base = torch.from_numpy(problem.logits).expand(z.shape)
    return {"correct_mass": mass,
            "pass_at_k": metrics.pass_at_k_exact(mass[..., None], np.asarray(cfg.ks, float)).mean(1),
            "entropy": metrics.correct_entropy(pi).mean(1),
            "coverage": over(metrics.coverage(pi, problem.correct, cfg.coverage_threshold)),
            "effective_modes": over(metrics.effective_modes(pi, problem.correct)),
            "kl": categorical_divergence(torch.from_numpy(z), base, "reverse_kl").numpy().mean(1)}


def reference_saturated(cfg, gz, pre_mass):
    mag = np.abs(gz).sum(-1)
    tot = mag.sum(1)
    sat = (mag * (metrics.pass_at_k_exact(pre_mass, cfg.saturation_k) > cfg.saturation)).sum(1)
    return np.divide(sat, tot, out=np.zeros_like(tot), where=tot > 0)


def _row(problem, cfg, z, gz=None, z_pre=None):
    R = z.shape[0]
    log = Logger(problem, cfg, R, log_softmax_np(problem.logits))
    sat = None
    if gz is not None:
        log.measure(z_pre, 0)
        sat = log.saturated(gz)
    log.open_row(1, z, None, sat)
    log.measure(z, 1)
    log.close_row()
    return log.rows[0]


@settings(deadline=None, max_examples=60)
@given(data=st.data(), R=st.integers(1, 3), P=st.integers(1, 5), K=st.integers(2, 9),
       scale=st.sampled_from([0.1, 3.0, 30.0]),
       ks=st.sampled_from([(1,), (1, 2, 4, 8, 1024), (3, 6, 12, 5), tuple(2**i for i in range(11))]),
       thr=st.sampled_from([1e-3, 0.2]), sat_k=st.sampled_from([1, 16]))
def test_numba_metrics_equal_reference(data, R, P, K, scale, ks, thr, sat_k):
    seed = data.draw(st.integers(0, 2**31 - 1))
    rng = np.random.default_rng(seed)
    correct = rng.random((P, K)) < 0.4
    correct[0] = False  # a prompt without correct outcomes (excluded from coverage / modes)
    if P > 1:
        correct[1] = True  # and one whose correct mass is exactly 1
    pr = Problem((correct * 1.0), rng.normal(size=(P, K)) * scale, correct)
    cfg = SimConfig(ks=ks, coverage_threshold=thr, saturation_k=sat_k, saturation=0.9)
    z = rng.normal(size=(R, P, K)) * scale
    z_pre = rng.normal(size=(R, P, K)) * scale
    gz = rng.normal(size=(R, P, K)) * (rng.random((R, P, 1)) < 0.7)
    got, ref = _row(pr, cfg, z, gz, z_pre), reference_row(pr, cfg, z)
    for f in FIELDS:
        np.testing.assert_allclose(got[f], ref[f], rtol=TOL, atol=TOL, err_msg=f)
    pre_mass = np.clip((softmax_np(z_pre) * correct).sum(-1), 0, 1)
    np.testing.assert_allclose(got["saturated_share"], reference_saturated(cfg, gz, pre_mass), rtol=TOL, atol=TOL)


def test_pass_at_k_doubling_keeps_small_mass_accuracy():
    """1 - (1 - p)^k at p = 1e-15, k up to 1024: the doubling identity keeps the relative accuracy
    of -expm1(k log1p(-p)) (no 1 - q cancellation)."""
    pr = Problem(np.array([[1.0, 0.0]]), np.array([[-34.5, 0.0]]))  # correct mass ~1e-15
    cfg = SimConfig(ks=tuple(2**i for i in range(11)))
    z = pr.logits[None].copy()
    got, ref = _row(pr, cfg, z), reference_row(pr, cfg, z)
    np.testing.assert_allclose(got["pass_at_k"], ref["pass_at_k"], rtol=1e-13, atol=0)


CP = coupled(6, 5, n_correct=2, n_clusters=2, dim=3, coupling=0.5, seed=1)
PR = multimode(8, 6, 2, min_mass=0.05, max_mass=0.95, seed=3)
RUNS = [
    (PR, dict(recipe="grpo")),  # fused path: statistics from the kernel's softmax
    (PR, dict(recipe="dapo", log_every=3, train_prompts=(1, 4, 6))),
    (PR, dict(recipe="memory", optimizer="adam", lr=0.05)),
    (CP, dict(recipe="grpo", param="both")),
    (CP, dict(recipe="ips_grpo", param="linear", train_prompts=(0, 2))),  # shared params: standalone pass
    (PR, dict(recipe="grpo", backend="torch", steps=4)),
    (PR, dict(recipe="grpo", mode="mean_field", group_size=4)),
    (PR, dict(recipe="rloo", mode="flow")),
]


@pytest.mark.parametrize("problem,kw", RUNS, ids=[str(kw) for _, kw in RUNS])
def test_simulate_logs_equal_reference(problem, kw):
    """Every logged row of simulate() equals the reference metrics of its logits (from snapshots)."""
    cfg = SimConfig(**(dict(steps=7, replicates=2, lr=0.5, group_size=4, snapshots=True) | kw))
    tr = simulate(problem, cfg, seed=4)
    for li in range(len(tr.steps)):
        ref = reference_row(problem, cfg, np.log(tr.probs[:, li]))
        for f in FIELDS:
            np.testing.assert_allclose(getattr(tr, f)[:, li], ref[f], rtol=TOL, atol=TOL,
                                       err_msg=f"{f} at step {tr.steps[li]}")
    ref = reference_row(problem, cfg, tr.final_logits)
    np.testing.assert_allclose(tr.pass_at_k[:, -1], ref["pass_at_k"], rtol=TOL, atol=TOL)


@pytest.mark.parametrize("kw", [dict(recipe="grpo"), dict(recipe="ips_grpo+dph_js", log_every=2),
                                dict(recipe="grpo", train_prompts=(0, 3), log_every=4)])
def test_fused_statistics_equal_standalone_pass(kw, monkeypatch):
    """The kernel-fused statistics (row of step t completed at step t + 1) equal a standalone pass
    after every logged step, saturated share included: the same trajectory bit for bit, the metrics
    to 1e-14 (the one inlined row_stats may round its last bit differently in the two loops, where
    LLVM contracts a multiply-add into an FMA in one and not the other)."""
    cfg = SimConfig(**(dict(steps=9, replicates=3, lr=0.5, group_size=6) | kw))
    fused = simulate(PR, cfg, seed=2)
    init = state_mod.RunState.init.__func__

    def unfused(cls, *a, **k):
        st = init(cls, *a, **k)
        st.fused_stats = False
        return st

    monkeypatch.setattr(state_mod.RunState, "init", classmethod(unfused))
    plain = simulate(PR, cfg, seed=2)
    assert list(fused.steps) == list(plain.steps)
    for f in ("zero_var_frac", "final_logits", "log_ratios"):
        assert np.array_equal(getattr(fused, f), getattr(plain, f), equal_nan=True), f
    for f in FIELDS + ("saturated_share",):
        np.testing.assert_allclose(getattr(fused, f), getattr(plain, f), rtol=1e-14, atol=1e-14, err_msg=f)
    assert np.all(np.isfinite(fused.saturated_share[:, 1:]))
