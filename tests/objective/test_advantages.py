"""Advantage estimators (docs/methods.md §1): golden numbers, brute-force definitions, invariants, errors."""

import itertools
import math

import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st

from collapse_lab.objective import group_advantages, population_advantages

f64 = torch.float64


def one_group(rewards):
    r = torch.tensor(rewards, dtype=f64)
    return r, torch.zeros(len(rewards), dtype=torch.long)


# --- golden numbers -----------------------------------------------------------------------------
# G = 8 binary group with c successes, ddof = 1: mean = c/8,
# s^2 = [c (1 - c/8)^2 + (8 - c)(c/8)^2] / 7 = c (8 - c) / 56.
#   c = 1: s^2 = 1/8   -> A+ = (7/8)/sqrt(1/8) = 2.4749,  A- = -(1/8)/sqrt(1/8) = -0.3536
#   c = 2: s^2 = 3/14  -> A+ = (3/4)/sqrt(3/14) = 1.6202, A- = -(1/4)/sqrt(3/14) = -0.5401
#   c = 4: s^2 = 2/7   -> A+ = (1/2)/sqrt(2/7) = 0.9354,  A- = -0.9354
@pytest.mark.parametrize("c, a_pos, a_neg", [(1, 2.4749, -0.3536), (2, 1.6202, -0.5401),
                                             (4, 0.9354, -0.9354)])
def test_grpo_golden_g8(c, a_pos, a_neg):
    r, g = one_group([1.0] * c + [0.0] * (8 - c))
    adv = group_advantages(r, g, "grpo")
    s = math.sqrt(c * (8 - c) / 56)
    exact_pos, exact_neg = (1 - c / 8) / (s + 1e-6), -(c / 8) / (s + 1e-6)
    assert adv[0].item() == pytest.approx(exact_pos, abs=1e-12)
    assert adv[-1].item() == pytest.approx(exact_neg, abs=1e-12)
    assert adv[0].item() == pytest.approx(a_pos, abs=1e-4)
    assert adv[-1].item() == pytest.approx(a_neg, abs=1e-4)


def test_grpo_ddof0_golden():
    # c = 1, G = 8, ddof = 0: std = sqrt(1/8 * 7/8) = sqrt(7)/8, so A+ = sqrt(7), A- = -1/sqrt(7).
    r, g = one_group([1.0] + [0.0] * 7)
    adv = group_advantages(r, g, "grpo", ddof=0, eps=0.0)
    assert adv[0].item() == pytest.approx(math.sqrt(7), abs=1e-12)
    assert adv[1].item() == pytest.approx(-1 / math.sqrt(7), abs=1e-12)


def test_grpo_std_modes():
    # two groups (1,0) and (1,1): batch std (ddof=1) of [1,0,1,1] = sqrt(1/4) = 0.5
    r = torch.tensor([1.0, 0.0, 1.0, 1.0], dtype=f64)
    g = torch.tensor([0, 0, 1, 1])
    assert torch.allclose(group_advantages(r, g, std="none"), torch.tensor([0.5, -0.5, 0, 0], dtype=f64))
    batch = group_advantages(r, g, std="batch", eps=0.0)
    assert torch.allclose(batch, torch.tensor([1.0, -1.0, 0, 0], dtype=f64))


def test_rloo_dr_grpo_reinforce_golden():
    r, g = one_group([1.0, 0.0, 0.0, 1.0])
    # RLOO: A_1 = 1 - (0 + 0 + 1)/3 = 2/3, A_2 = 0 - 2/3
    assert torch.allclose(group_advantages(r, g, "rloo"), torch.tensor([2, -2, -2, 2], dtype=f64) / 3)
    assert torch.allclose(group_advantages(r, g, "dr_grpo"), torch.tensor([.5, -.5, -.5, .5], dtype=f64))
    assert torch.allclose(group_advantages(r, g, "reinforce", baseline=0.25), r - 0.25)


def test_passk_golden():
    # G = 4, one success, k = 2: R = 1 - C(3,2)/C(4,2) = 1/2, s = 1/2,
    # A_pos = (1/2)/(1/2 + 1e-6); A_neg = (1 - 1/2 - C(2,1)/C(3,1)) / (1/2 + 1e-6) = (-1/6)/(1/2 + 1e-6)
    r, g = one_group([1.0, 0.0, 0.0, 0.0])
    adv = group_advantages(r, g, "passk", k=2)
    assert adv[0].item() == pytest.approx(0.5 / 0.500001, abs=1e-12)
    assert adv[1].item() == pytest.approx((-1 / 6) / 0.500001, abs=1e-12)
    # fewer than k failures: every k-subset passes, no signal
    r, g = one_group([1.0, 1.0, 1.0, 0.0])
    assert torch.all(group_advantages(r, g, "passk", k=2) == 0)


def passk_brute(rewards, k):
    """Definition: each k-subset S is one 'sample' with reward max_S r; A_S = (r_S - R)/(s + 1e-6)
    with R, s the mean and (population) std over subsets; a sample's advantage is the mean A_S over
    the subsets that contain it."""
    n = len(rewards)
    subsets = list(itertools.combinations(range(n), k))
    r_s = [max(rewards[i] for i in s) for s in subsets]
    big_r = sum(r_s) / len(r_s)
    sd = math.sqrt(big_r * (1 - big_r))
    out = []
    for i in range(n):
        mine = [(rs - big_r) / (sd + 1e-6) for s, rs in zip(subsets, r_s) if i in s]
        out.append(sum(mine) / len(mine))
    return out


@given(st.lists(st.sampled_from([0.0, 1.0]), min_size=2, max_size=8), st.integers(1, 8))
def test_passk_matches_brute_force(rewards, k):
    k = min(k, len(rewards))
    r, g = one_group(rewards)
    adv = group_advantages(r, g, "passk", k=k)
    assert torch.allclose(adv, torch.tensor(passk_brute(rewards, k), dtype=f64), atol=1e-7, rtol=1e-9)


def test_unlikeliness_golden():
    # ranks by logp ascending: idx1 (-3) -> 0, idx2 (-2) -> 1, idx0 (-1) -> 2, idx3 (-0.5) -> 3
    # r' = r (1 - 0.25 rank / 4) = (0.875, 1, 0, 0.8125), then grpo
    r, g = one_group([1.0, 1.0, 0.0, 1.0])
    logp = torch.tensor([-1.0, -3.0, -2.0, -0.5], dtype=f64)
    adv = group_advantages(r, g, "unlikeliness", logp=logp)
    expect = group_advantages(torch.tensor([0.875, 1.0, 0.0, 0.8125], dtype=f64), g, "grpo")
    assert torch.allclose(adv, expect, atol=1e-14)
    # per-token logp [B, T] with a mask uses the token mean
    tok = torch.stack([logp, torch.full_like(logp, 50.0)], -1)
    mask = torch.tensor([[1.0, 0.0]] * 4, dtype=f64)
    assert torch.allclose(group_advantages(r, g, "unlikeliness", logp=tok, mask=mask), expect)


# --- invariants -----------------------------------------------------------------------------------
rewards_st = st.lists(st.floats(-3, 3, allow_nan=False).map(lambda x: round(x, 3)), min_size=2,
                      max_size=9)


@given(rewards_st, st.randoms(use_true_random=False))
def test_permutation_within_group(rewards, rnd):
    r, g = one_group(rewards)
    perm = list(range(len(rewards)))
    rnd.shuffle(perm)
    p = torch.tensor(perm)
    for kind in ("grpo", "dr_grpo", "rloo", "reinforce"):
        assert torch.allclose(group_advantages(r, g, kind)[p], group_advantages(r[p], g, kind), atol=1e-12)
    binary = (r > 0).to(f64)
    k = min(2, len(rewards))
    assert torch.allclose(group_advantages(binary, g, "passk", k=k)[p],
                          group_advantages(binary[p], g, "passk", k=k), atol=1e-12)


@given(rewards_st, st.floats(-5, 5), st.floats(0.1, 10))
def test_shift_and_scale(rewards, shift, scale):
    r, g = one_group(rewards)
    for kind in ("dr_grpo", "rloo"):
        assert torch.allclose(group_advantages(r, g, kind), group_advantages(r + shift, g, kind), atol=1e-9)
    a = group_advantages(r, g, "grpo")
    assert torch.allclose(a, group_advantages(r + shift, g, "grpo"), atol=1e-6)
    if r.std() > 1e-2:  # eps = 0 so the scale cancels exactly
        assert torch.allclose(group_advantages(r, g, "grpo", eps=0.0),
                              group_advantages(r * scale, g, "grpo", eps=0.0), atol=1e-9)


@given(st.floats(-3, 3), st.integers(2, 9))
def test_equal_rewards_zero_advantage(value, size):
    r, g = one_group([value] * size)
    for kind in ("grpo", "dr_grpo", "rloo"):
        assert torch.all(group_advantages(r, g, kind).abs() < 1e-9)


@given(st.lists(st.floats(-2, 2, allow_nan=False), min_size=4, max_size=12), st.integers(2, 4))
def test_centred_estimators_sum_to_zero_per_group(rewards, n_groups):
    r = torch.tensor(rewards, dtype=f64)
    g = torch.arange(len(rewards)) % n_groups
    if int(torch.bincount(g).min()) < 2:
        return
    for kind in ("dr_grpo", "rloo"):
        a = group_advantages(r, g, kind)
        sums = torch.zeros(n_groups, dtype=f64).index_add_(0, g, a)
        assert torch.all(sums.abs() < 1e-9)


def test_groups_need_not_be_sorted():
    r = torch.tensor([1.0, 5.0, 0.0, 7.0], dtype=f64)
    g = torch.tensor([10, 3, 10, 3])
    a = group_advantages(r, g, "dr_grpo")
    assert torch.allclose(a, torch.tensor([0.5, -1.0, -0.5, 1.0], dtype=f64))


# --- errors ---------------------------------------------------------------------------------------
def test_errors_are_clear():
    r, g = one_group([1.0, 0.0])
    with pytest.raises(ValueError, match="valid: grpo, dr_grpo, rloo"):
        group_advantages(r, g, "ppo")
    with pytest.raises(ValueError, match=r"\(3,\).*\(2,\)"):
        group_advantages(r, torch.zeros(3, dtype=torch.long))
    with pytest.raises(ValueError, match="at least 2 samples"):
        group_advantages(r, torch.tensor([0, 1]), "grpo")
    with pytest.raises(ValueError, match="std mode"):
        group_advantages(r, g, std="global")
    with pytest.raises(ValueError, match="unknown options"):
        group_advantages(r, g, "grpo", k=3)
    with pytest.raises(ValueError, match=r"k = 4 is invalid; allowed: .*\[1, 2\]"):
        group_advantages(r, g, "passk", k=4)
    # reinforce needs no group: a size-1 group is fine
    assert group_advantages(r, torch.tensor([0, 1]), "reinforce").tolist() == [1.0, 0.0]


def test_float32_supported():
    r = torch.tensor([1.0, 0.0, 0.0, 0.0])
    a = group_advantages(r, torch.zeros(4, dtype=torch.long))
    assert a.dtype == torch.float32 and a[0].item() == pytest.approx(1.5, rel=1e-5)


def test_population_advantages_equal_a_group_with_the_same_distribution():
    # a group of 8 with outcome counts (1, 3, 4) has empirical distribution pi = (1/8, 3/8, 1/2):
    # its grpo (ddof = 0) and dr_grpo advantages are the population advantages of those outcomes
    x = torch.tensor([[1.0, 0.3, 0.0]], dtype=f64)
    pi = torch.tensor([[1 / 8, 3 / 8, 1 / 2]], dtype=f64)
    outcomes = torch.tensor([0, 1, 1, 1, 2, 2, 2, 2])
    r, g = x[0, outcomes], torch.zeros(8, dtype=torch.long)
    for kind, kw in (("grpo", {"ddof": 0}), ("dr_grpo", {})):
        pop = population_advantages(x, pi, kind)[0, outcomes]
        assert torch.allclose(group_advantages(r, g, kind, **kw), pop, atol=1e-14)
    # rloo and passk approach theirs as G grows (factor G/(G-1); C(N_neg,k)/C(N,k) -> (1-P)^k)
    big = outcomes.repeat(400)
    rb, gb = x[0, big], torch.zeros(big.numel(), dtype=torch.long)
    assert torch.allclose(group_advantages(rb, gb, "rloo"), population_advantages(x, pi, "rloo")[0, big], atol=1e-3)
    succ = x > 0.5
    pk = group_advantages((x[0, big] > 0.5).to(f64), gb, "passk", k=4)
    assert torch.allclose(pk, population_advantages(x, pi, "passk", k=4, success=succ)[0, big], atol=5e-3)
    with pytest.raises(ValueError, match="population advantages are defined"):
        population_advantages(x, pi, "unlikeliness")


@pytest.mark.parametrize("kind", ["grpo", "dr_grpo", "rloo"])
def test_empty_batch_has_no_group_to_check(kind):
    """DAPO can drop every group of a step (all rewards equal): the empty batch gives empty advantages,
    and the dapo recipe prepares it without error (regression: min() of an empty tensor)."""
    from collapse_lab.objective import Batch, recipe
    empty = torch.zeros(0, dtype=torch.float64)
    assert group_advantages(empty, torch.zeros(0, dtype=torch.long), kind).shape == (0,)
    b = Batch(logp=torch.zeros(0, 3, dtype=torch.float64), rewards=empty, group=torch.zeros(0, dtype=torch.long),
              old_logp=torch.zeros(0, 3, dtype=torch.float64), mask=torch.zeros(0, 3, dtype=torch.float64))
    p = recipe("dapo").prepare(b)
    assert p.policy.tokens == 0
