"""Recipe overrides are validated on construction (issue 9 §3): strict types, finite values, ranges,
one ValueError `<field> = <value!r> is invalid; allowed: ...`; batch-dependent limits at loss time."""

import math

import pytest
import torch

from collapse_lab.objective import Batch, recipe

nan, inf = float("nan"), float("inf")


def _msg(field, value):
    return rf"{field} = {repr(value).replace('(', '[(]').replace(')', '[)]')} is invalid; allowed: "


@pytest.mark.parametrize("name, key, value, field", [
    # the cases of issue 9 §3
    ("dph_js", "eta", nan, "dph.eta"),
    ("reverse_kl", "beta", nan, "kl.beta"),
    ("dapo", "clip_high", nan, "policy.clip_high"),
    ("grpo", "clip_high", "x", "policy.clip_high"),
    ("dph_js", "n_pre", 2.5, "dph.n_pre"),
    ("grpo", "eps", -1e-6, "advantage.eps"),
    ("passk", "k", 0, "advantage.k"),
    # every other kind of bad value
    ("grpo", "clip_low", inf, "policy.clip_low"),
    ("grpo", "clip_low", -0.1, "policy.clip_low"),
    ("grpo", "clip_low", 1.5, "policy.clip_low"),
    ("grpo", "clip_high", True, "policy.clip_high"),
    ("grpo", "dual_clip", 1.0, "policy.dual_clip"),
    ("grpo", "dual_clip", nan, "policy.dual_clip"),
    ("grpo", "agg", "sum", "policy.agg"),
    ("grpo", "level", 1, "policy.level"),
    ("grpo", "ddof", 1.0, "advantage.ddof"),
    ("grpo", "ddof", -1, "advantage.ddof"),
    ("grpo", "ddof", True, "advantage.ddof"),
    ("grpo", "std", "global", "advantage.std"),
    ("grpo", "advantage_kind", "ppo", "advantage.kind"),
    ("passk", "k", True, "advantage.k"),
    ("passk", "k", 2.0, "advantage.k"),
    ("unlikeliness", "beta_rank", 1.5, "advantage.beta_rank"),
    ("reinforce", "baseline", nan, "advantage.baseline"),
    ("reinforce", "baseline", "0", "advantage.baseline"),
    ("ips_grpo", "ips_eps", 0.0, "ips.eps"),
    ("ips_grpo", "ips_power", -inf, "ips.power"),
    ("isac", "isac_exponent", nan, "isac.exponent"),
    ("isac", "normalize", "false", "isac.normalize"),
    ("isac", "normalize", 1, "isac.normalize"),
    ("zero_success", "max_success", 1.5, "zero_success.max_success"),
    ("zero_success", "counts", "all", "zero_success.counts"),
    ("bbg", "k_ref", 0, "bbg.k_ref"),
    ("bbg", "tau", nan, "bbg.tau"),
    ("bbg", "lambda_neg", -1.0, "bbg.lambda_neg"),
    ("reverse_kl", "beta", -0.1, "kl.beta"),
    ("reverse_kl", "in_reward", "false", "kl.in_reward"),
    ("reverse_kl", "kl_kind", "k4", "kl.kind"),
    ("dph_js", "eta", inf, "dph.eta"),
    ("dph_js", "dph_order", 1.0, "dph.order"),
    ("dph_js", "dph_order", nan, "dph.order"),
    ("dph_js", "n_ref", 0, "dph.n_ref"),
    ("dph_js", "dph_kind", "k3", "dph.kind"),
    ("entropy", "coef", nan, "entropy.coef"),
    ("memory", "mu", nan, "memory.mu"),
    ("memory", "lr", 0.0, "memory.lr"),
])
def test_bad_override_is_one_clear_error(name, key, value, field):
    with pytest.raises(ValueError, match=_msg(field, value)):
        recipe(name, **{key: value})


@pytest.mark.parametrize("value", ["false", "true", 0, 1, None, nan])
def test_dynamic_sampling_must_be_a_real_bool(value):
    with pytest.raises(ValueError, match=_msg("dynamic_sampling", value)):
        recipe("grpo", dynamic_sampling=value)
    assert recipe("dapo", dynamic_sampling=False).dynamic_sampling is False
    assert recipe("grpo", dynamic_sampling=True).dynamic_sampling is True


def test_valid_edge_values_are_accepted():
    assert recipe("grpo", eps=0.0, ddof=0, clip_low=0.0, clip_high=3).policy.clip_high == 3
    assert recipe("passk", k=1).advantage.k == 1
    assert recipe("dph_js", eta=0.0, n_pre=1).dph.eta == 0.0
    assert recipe("entropy", coef=-0.01).entropy.coef == -0.01


def _batch(G=3, groups=2, dtype=torch.float64):
    B = G * groups
    logp = torch.linspace(-2.0, -0.1, B, dtype=dtype).requires_grad_(True)
    rewards = torch.tensor([1.0, 0.0, 0.0] * groups, dtype=dtype)[:B]
    return Batch(logp=logp, rewards=rewards, group=torch.arange(B) // G)


@pytest.mark.parametrize("std", ["group", "batch"])
def test_ddof_too_large_for_the_batch_is_named_at_loss_time(std):
    b = _batch(G=3, groups=2)  # groups of 3, batch of 6
    recipe("grpo", ddof=2, std=std).loss(b)  # fine: 2 < 3
    ddof = 3 if std == "group" else 6
    with pytest.raises(ValueError, match=rf"ddof = {ddof} is invalid; allowed: an integer below the"):
        recipe("grpo", ddof=ddof, std=std).loss(b)
    with pytest.raises(ValueError, match=rf"ddof = {ddof} is invalid"):
        recipe("unlikeliness", ddof=ddof, std=std).loss(b)
    recipe("dr_grpo", ddof=ddof).loss(b)  # dr_grpo does not use ddof


def test_passk_k_above_group_size_is_named_at_loss_time():
    b = _batch(G=3, groups=2)
    loss, _ = recipe("passk", k=3).loss(b)
    assert math.isfinite(loss.item())
    with pytest.raises(ValueError, match=r"k = 4 is invalid; allowed: an integer in \[1, 3\]"):
        recipe("passk", k=4).loss(b)
