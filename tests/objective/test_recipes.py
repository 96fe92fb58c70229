"""Recipes (docs/methods.md §5): every recipe runs, names are stable, composition and overrides behave."""

import json
import math

import pytest
import torch

from collapse_lab.objective import (
    DIAGNOSTICS,
    RECIPES,
    Batch,
    RefSamples,
    combine,
    group_advantages,
    policy_loss,
    recipe,
)

f64 = torch.float64


def random_batch(seed=0, P=4, G=6, T=3, V=5, dtype=f64):
    g = torch.Generator().manual_seed(seed)
    B = P * G
    theta = torch.randn(B, T, V, generator=g, dtype=dtype, requires_grad=True)
    tokens = torch.randint(V, (B, T), generator=g)
    logp = torch.log_softmax(theta, -1).gather(-1, tokens[..., None])[..., 0]
    ent = -(torch.softmax(theta, -1) * torch.log_softmax(theta, -1)).sum(-1)
    mask = torch.ones(B, T, dtype=dtype)
    mask[::3, -1] = 0
    rewards = (torch.rand(B, generator=g) < 0.4).to(dtype)
    rewards[:G] = 0.0  # one all-failure group
    ref = RefSamples(logp=logp[:P] * 0.9, ref_logp=logp[:P].detach() + 0.1)
    return theta, Batch(
        logp=logp, rewards=rewards, group=torch.arange(B) // G,
        old_logp=logp.detach() + 0.05 * torch.randn(B, T, generator=g, dtype=dtype), mask=mask,
        outcome=torch.randint(3, (B,), generator=g), ref_logp=logp.detach() - 0.2, entropy=ent,
        ref_samples=ref, prior_success=torch.tensor([0.0, 2.0, 0.0, 5.0]).repeat_interleave(G),
        prior_trials=torch.full((B,), 12.0), pef=torch.zeros(B, dtype=torch.bool))


@pytest.mark.parametrize("name", RECIPES)
def test_every_recipe_finite_with_stable_names(name):
    theta, batch = random_batch()
    loss, diag = recipe(name).loss(batch)
    assert math.isfinite(loss.item())
    assert tuple(diag) == DIAGNOSTICS
    loss.backward()
    assert torch.isfinite(theta.grad).all()
    json.dumps(recipe(name).to_dict())


def test_recipe_float32():
    _, batch = random_batch(dtype=torch.float32)
    loss, _ = recipe("ips_grpo+dph_js").loss(batch)
    assert loss.dtype == torch.float32 and math.isfinite(loss.item())


def test_grpo_recipe_equals_its_pieces():
    _, batch = random_batch(1)
    adv = group_advantages(batch.rewards, batch.group)
    expect, _ = policy_loss(batch.logp, batch.old_logp, adv, batch.mask)
    assert recipe("grpo").loss(batch)[0].item() == pytest.approx(expect.item(), abs=1e-14)


def test_ips_recipe_is_grpo_on_shaped_rewards():
    _, batch = random_batch(2)
    counts = {}
    for gi, o in zip(batch.group.tolist(), batch.outcome.tolist()):
        counts[(gi, o)] = counts.get((gi, o), 0) + 1
    G = 6
    shaped = torch.tensor([r * G / counts[(gi, o)] for r, gi, o in
                           zip(batch.rewards.tolist(), batch.group.tolist(), batch.outcome.tolist())], dtype=f64)
    expect, _ = policy_loss(batch.logp, batch.old_logp, group_advantages(shaped, batch.group), batch.mask)
    loss, diag = recipe("ips_grpo").loss(batch)
    assert loss.item() == pytest.approx(expect.item(), abs=1e-14)
    assert diag["shaped_reward_mean"] == pytest.approx(shaped.mean().item())


def test_dph_pef_samples_only_get_divergence():
    theta, batch = random_batch(3)
    batch.pef = torch.ones_like(batch.pef)  # every prompt solved in pre-sampling: no RL term
    loss, diag = recipe("dph_js", eta=0.5).loss(batch)
    assert diag["pg_loss"] == 0.0 and diag["kept_frac"] == 0.0
    assert loss.item() == pytest.approx(diag["div_loss"]) and diag["div_loss"] > 0


def test_reverse_kl_adds_beta_k2_and_needs_reference():
    _, batch = random_batch(4)
    base, _ = recipe("grpo").loss(batch)
    loss, diag = recipe("reverse_kl", beta=0.1).loss(batch)
    assert loss.item() == pytest.approx(base.item() + diag["kl_loss"], abs=1e-14)
    d, m = batch.logp.detach() - batch.ref_logp, batch.mask  # token-mean of k2 = d^2 / 2
    assert diag["kl_loss"] == pytest.approx(0.1 * float((0.5 * d * d * m).sum() / m.sum()), rel=1e-12)
    _, diag3 = recipe("k3_kl", beta=0.1).loss(batch)  # k3 in the loss: the diagnostic kl_ref is k3 too
    assert diag3["kl_loss"] == pytest.approx(0.1 * diag3["kl_ref"], rel=1e-12)
    assert recipe("reverse_kl").needs_ref and not recipe("reverse_kl", beta=0.0).needs_ref
    batch.ref_logp = None
    with pytest.raises(ValueError, match="ref_logp"):
        recipe("reverse_kl").loss(batch)


def test_dynamic_sampling_drops_flat_groups():
    _, batch = random_batch(5)
    _, diag = recipe("dapo").loss(batch)
    assert diag["zero_var_frac"] >= 0.25  # group 0 is all failures
    assert diag["kept_frac"] == pytest.approx(1 - diag["zero_var_frac"])
    assert recipe("grpo").loss(batch)[1]["kept_frac"] == 1.0


def test_bbg_history_and_needs():
    _, batch = random_batch(6)
    assert recipe("zero_success").needs_history and not recipe("bbg").needs_history
    assert recipe("bbg", counts="history").needs_history
    loss, _ = recipe("bbg", counts="history").loss(batch)
    assert math.isfinite(loss.item())
    assert recipe("ips_grpo").needs_outcome and recipe("dph_js").needs_ref_samples
    assert recipe("memory").sampler is not None and recipe("grpo").sampler is None


def test_combine_and_overrides():
    r = recipe("ips_grpo+dph_js", ips_power=0.5, dph_order=0.3, eta=0.05)
    assert r.name == "ips_grpo+dph_js"
    assert r.shapers[0].power == 0.5 and r.dph.order == 0.3 and r.dph.eta == 0.05
    assert r.policy.clip_high == 0.28  # dph's clip-higher carries over
    assert combine(recipe("isac"), recipe("bbg")).weights == recipe("isac+bbg").weights
    assert recipe("grpo", dynamic_sampling=True).dynamic_sampling
    with pytest.raises(ValueError, match="ambiguous"):
        recipe("ips_grpo+dph_js", eps=0.5)
    with pytest.raises(ValueError, match="unknown recipe 'ppo'; valid: grpo"):
        recipe("ppo")
    with pytest.raises(ValueError, match="options: advantage_kind"):
        recipe("grpo", beta=0.1)
    with pytest.raises(ValueError, match="policy.agg"):
        recipe("grpo", agg="sum")
    with pytest.raises(ValueError, match="cannot combine"):
        recipe("dr_grpo+passk")


def test_kl_in_reward_shapes_rewards():
    _, batch = random_batch(7)
    _, diag = recipe("reverse_kl", in_reward=True, kl_kind="k1", beta=0.1).loss(batch)
    k1_per_seq = ((batch.logp.detach() - batch.ref_logp) * batch.mask).sum(-1)
    expect = (batch.rewards - 0.1 * k1_per_seq).mean().item()
    assert diag["shaped_reward_mean"] == pytest.approx(expect, abs=1e-14) and diag["kl_loss"] == 0.0


def test_bbg_weights_on_a_batch():
    # G = 8 groups with c = 0, 1, 2, 4 (n = 8, k_ref = 16): weights u(c)/u(1) = 2.875, 1, 0.3182, gated 0;
    # the all-failure group gets -lambda_neg * u(0)/u(1) on every sample
    c_per_group = [0, 1, 2, 4]
    rewards = torch.tensor([float(i < c) for c in c_per_group for i in range(8)], dtype=f64)
    group = torch.arange(32) // 8
    logp = torch.zeros(32, dtype=f64, requires_grad=True)
    b = Batch(logp=logp, rewards=rewards, group=group)
    u = {0: 6.0, 1: 48 / 23, 2: 16 * 504 / 12144}
    grpo = group_advantages(rewards, group)
    adv = recipe("bbg").weights[0](b, grpo)
    assert torch.allclose(adv[:8], torch.full((8,), -u[0] / u[1], dtype=f64))
    assert torch.allclose(adv[8:16], grpo[8:16])
    assert torch.allclose(adv[16:24], grpo[16:24] * u[2] / u[1])
    assert torch.all(adv[24:] == 0)


def test_dph_empty_reference_set_is_zero_but_missing_is_an_error():
    _, batch = random_batch(8)
    empty = torch.zeros(0, 3, dtype=f64)
    batch.ref_samples = RefSamples(logp=empty, ref_logp=empty)
    for agg in ("token-mean", "seq-mean-token-mean", "seq-mean-token-sum-norm"):
        loss, diag = recipe("dph_forward", agg=agg).loss(batch)
        assert diag["div_loss"] == 0.0 and math.isfinite(loss.item())
    batch.ref_samples = None
    with pytest.raises(ValueError, match="ref_samples"):
        recipe("dph_js").loss(batch)


def test_renamed_overrides_still_work_with_a_warning():
    """ips_alpha / isac_alpha / dph_alpha were renamed (no field shares a name with the recipe dph_alpha)."""
    import pytest

    for old, new, get in (("ips_alpha", "ips_power", lambda r: r.shapers[0].power),
                          ("isac_alpha", "isac_exponent", lambda r: r.weights[0].exponent),
                          ("dph_alpha", "dph_order", lambda r: r.dph.order)):
        name = {"ips": "ips_grpo", "isac": "isac", "dph": "dph_alpha"}[old.split("_")[0]]
        with pytest.warns(DeprecationWarning, match=f"'{old}' is renamed '{new}'"):
            assert get(recipe(name, **{old: 0.4})) == 0.4 == get(recipe(name, **{new: 0.4}))
