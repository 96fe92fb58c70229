"""Two implementations that must agree: numba closed-form gradients vs torch autograd through the
objective (`Recipe.loss`), for every recipe of docs/methods.md §5 and the variants that exercise each
branch of kernels.recipe_grad; plus determinism (same seed -> same bits, 1 vs 2 threads)."""

import numba
import numpy as np
import pytest

from collapse_lab.objective import RECIPES
from collapse_lab.objective import recipe as make_recipe
from collapse_lab.sim import Problem, SimConfig, coupled, multimode, simulate


def _easy(base, prompts=(0, 1, 2), mass=0.99):
    """base with the correct mass of `prompts` set to `mass` (so DPH finds D_pef prompts)."""
    probs = base.base_probs()
    for x in prompts:
        ok = base.correct[x]
        probs[x] = np.where(ok, mass * probs[x] / probs[x][ok].sum(), (1 - mass) * probs[x] / probs[x][~ok].sum())
    return Problem(base.rewards, np.log(probs), features=base.features, name="parity")


PROBLEM = _easy(multimode(10, 6, 2, min_mass=0.03, max_mass=0.9, seed=3))
COUPLED = _easy(coupled(8, 5, n_correct=2, n_clusters=2, dim=3, coupling=0.5, seed=1), (0, 1))

VARIANTS = [(name, {}) for name in RECIPES] + [
    ("grpo", {"advantage_std": "batch"}), ("grpo", {"advantage_std": "none"}),
    ("grpo", {"advantage_ddof": 0}), ("grpo", {"agg": "seq-mean-token-mean"}),
    ("grpo", {"agg": "seq-mean-token-sum"}), ("dr_grpo", {"agg": "token-mean"}),
    ("reinforce", {"baseline": 0.3}), ("rloo", {"dynamic_sampling": True}),
    ("reverse_kl", {"kl_kind": "k1"}), ("reverse_kl", {"beta": 0.5}), ("k3_kl", {"beta": 0.5}),
    ("reverse_kl", {"in_reward": True, "beta": 0.3}), ("k3_kl", {"in_reward": True, "beta": 0.3}),
    ("reverse_kl", {"in_reward": True, "kl_kind": "k1", "advantage_kind": "rloo", "beta": 0.3}),
    ("ips_grpo", {"ips_power": 0.5, "ips_eps": 0.2}), ("isac", {"normalize": True}),
    ("isac", {"isac_exponent": 0.5}), ("zero_success", {"counts": "group"}),
    ("bbg", {"counts": "history", "tau": 0.001}), ("bbg", {"k_ref": 4, "lambda_neg": 0.5}),
    ("passk", {"k": 2}), ("unlikeliness", {"beta_rank": 0.5}), ("entropy", {"coef": 0.2}),
    ("memory", {"mu": 2.0, "clip_low": 0.05, "clip_high": 0.05, "dual_clip": 1.5}),
    ("memory+unlikeliness", {"mu": 1.0}),
    ("dph_forward", {"eta": 1.0, "n_ref": 2}),
    ("dph_alpha", {"dph_order": 0.5, "agg": "seq-mean-token-sum-norm"}),
    ("ips_grpo+dph_js", {"eta": 0.5}),
    ("isac+bbg+zero_success", {"zero_success_counts": "group", "bbg_counts": "history"}),
    ("reverse_kl+entropy+ips_grpo", {}),
]


def _pair(problem, **kw):
    cfg = dict(steps=50, replicates=2, lr=0.5, group_size=6, log_every=25) | kw
    a = simulate(problem, SimConfig(**cfg, backend="numba"), seed=11)
    b = simulate(problem, SimConfig(**cfg, backend="torch"), seed=11)
    return a, b


def skip_marks(rec):
    """() when the numba kernels encode every component of rec, else a skip mark saying which are torch-only."""
    if not rec.torch_only:
        return ()
    return pytest.mark.skip(reason=f"{rec.name}: torch-only component(s) {', '.join(rec.torch_only)} "
                                   "(no numba kernel term)")


def _params(variants):
    """pytest params; a recipe with torch-only components (no numba kernel term) is skipped, with why."""
    return [pytest.param(name, over, marks=skip_marks(make_recipe(name, **over)), id=f"{name}{over or ''}")
            for name, over in variants]


@pytest.mark.parametrize("name,overrides", _params(VARIANTS))
def test_numba_matches_torch(name, overrides):
    a, b = _pair(PROBLEM, recipe=name, overrides=dict(overrides))
    moved = np.abs(a.final_logits - PROBLEM.logits).max()
    assert moved > 1e-3 or name == "zero_success"  # the run did something (zero_success may gate all)
    np.testing.assert_allclose(a.final_logits, b.final_logits, rtol=0, atol=1e-10)
    np.testing.assert_allclose(a.pass_at_k, b.pass_at_k, rtol=0, atol=1e-10)
    if "dph" in name:
        assert 0 < a.info["dph_pef_frac"] < 1  # both D_pef and D_exp prompts exist


@pytest.mark.parametrize("name,param,opt", [("grpo", "linear", "sgd"), ("ips_grpo", "both", "sgd"),
                                            ("grpo", "tabular", "adam"), ("dph_js", "both", "adam"),
                                            ("dph_forward", "both", "sgd"), ("dph_alpha", "linear", "sgd"),
                                            ("memory", "linear", "adam")])
def test_parametrisations_and_adam(name, param, opt):
    problem = PROBLEM if param == "tabular" else COUPLED
    # Adam divides by sqrt(v) + eps: a gradient that is 0 in one backend and 1e-17 (round-off) in
    # the other moves by up to lr * 1e-17 / eps per step; eps = 1e-6 keeps that below 1e-12.
    a, b = _pair(problem, recipe=name, param=param, optimizer=opt, lr=0.05 if opt == "adam" else 0.5,
                 adam_eps=1e-6)
    assert np.abs(a.final_logits - problem.logits).max() > 1e-3
    np.testing.assert_allclose(a.final_logits, b.final_logits, rtol=0, atol=1e-10)


def test_dph_divergence_term_is_active():
    """eta > 0 must change the trajectory relative to eta = 0 (else parity would not test it).

    Tabular D_pef prompts never leave the reference (no RL term, divergence minimal at pi = ref),
    so the term acts only through shared parameters: param='both' on a coupled problem.
    """
    cfg = dict(recipe="dph_forward", steps=20, replicates=2, lr=0.5, group_size=6, param="both")
    a = simulate(COUPLED, SimConfig(**cfg, overrides={"eta": 1.0}), seed=2)
    b = simulate(COUPLED, SimConfig(**cfg, overrides={"eta": 0.0}), seed=2)
    assert 0 < a.info["dph_pef_frac"] < 1
    assert np.abs(a.final_logits - b.final_logits).max() > 1e-4


@pytest.mark.parametrize("replicates", [1, 4])
def test_same_seed_same_bits_and_thread_independent(replicates):
    """With R = 1 and 2 threads the kernel runs its (replicate, prompt)-parallel path, with 1
    thread the replicate-parallel one: both must give the same bits."""
    cfg = SimConfig(recipe="ips_grpo+dph_js", steps=30, replicates=replicates, group_size=8, lr=0.3)
    a = simulate(PROBLEM, cfg, seed=5)
    b = simulate(PROBLEM, cfg, seed=5)
    assert np.array_equal(a.final_logits, b.final_logits)
    assert np.array_equal(a.pass_at_k, b.pass_at_k)
    old = numba.get_num_threads()
    try:
        numba.set_num_threads(1)
        c = simulate(PROBLEM, cfg, seed=5)
    finally:
        numba.set_num_threads(old)
    assert np.array_equal(a.final_logits, c.final_logits)
    d = simulate(PROBLEM, cfg, seed=6)
    assert not np.array_equal(a.final_logits, d.final_logits)


def test_torch_backend_batch_splits_into_micro_batches():
    """The torch backend's Batch (reference rows tagged with their prompt) runs the two phases: the
    gradient of one batch equals the sum over micro-batches of whole groups (prepare once), 1e-10."""
    import torch

    from collapse_lab.sim.reference import _batch, sample_numpy
    from collapse_lab.sim.simulate import build_recipe
    from collapse_lab.sim.state import RunState

    cfg = SimConfig(recipe="isac+dph_js", overrides={"normalize": True, "advantage_std": "batch", "eta": 0.5},
                    replicates=1, group_size=6, backend="torch")
    rec, rng, tp = build_recipe(cfg), np.random.default_rng(0), np.arange(PROBLEM.rewards.shape[0])
    state = RunState.init(PROBLEM, rec, cfg, rng, 1, tp)
    y = sample_numpy(PROBLEM.logits[None], tp, rng.random((1, len(tp), 6)))

    def grads(parts):
        z = torch.tensor(PROBLEM.logits, requires_grad=True)
        b = _batch(rec, torch.log_softmax(z, -1), PROBLEM, tp, y, 0, state)
        prep = rec.prepare(b)
        for part in parts:
            rows = torch.isin(b.group, torch.tensor(part))
            rec.loss(b.select(rows), prep.select(rows))[0].backward(retain_graph=True)
        return z.grad

    assert 0 < state.pef[0].mean() < 1 and len(state.ref_y[0][state.pef[0]]) > 0
    whole, split = grads([tp]), grads([tp[::3], tp[1::3], tp[2::3]])
    assert float(whole.abs().max()) > 1e-3
    np.testing.assert_allclose(split, whole, rtol=0, atol=1e-10)


def test_numba_backend_refuses_torch_only_components():
    from dataclasses import dataclass
    from typing import ClassVar

    from collapse_lab.objective import Recipe
    from collapse_lab.sim.spec import check_supported, recipe_codes

    @dataclass(frozen=True)
    class Halve:  # a user's advantage weight without a kernel term (no `kernel_codes`)
        key: ClassVar[str] = "halve"
        stage: ClassVar[str] = "weight"
        needs: ClassVar[frozenset] = frozenset()

        def __call__(self, batch, adv, reduce=None):
            return 0.5 * adv

    rec = Recipe("mine", weights=(Halve(),))
    assert rec.torch_only == ("halve",)
    for call in (lambda: check_supported(rec), lambda: recipe_codes(rec)):
        with pytest.raises(ValueError, match="backend = 'numba' is invalid; allowed: 'torch'.*halve.*torch-only"):
            call()
    check_supported(rec, "torch")  # the torch backend differentiates Recipe.loss: any recipe
