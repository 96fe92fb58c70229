"""Policy loss and aggregation (docs/methods.md §4): clip cases, aggregation identities, REINFORCE gradient."""

import math

import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st

from collapse_lab.objective import AGG_MODES, aggregate, policy_loss

f64 = torch.float64


# Clip cases, eps_low = eps_high = 0.2, per-token loss max(-rho A, -clip(rho, 0.8, 1.2) A):
#   A = +1, rho = 1.5 -> max(-1.5, -1.2) = -1.2 (clipped, no gradient)
#   A = +1, rho = 0.5 -> max(-0.5, -0.8) = -0.5 (unclipped)
#   A = -1, rho = 0.5 -> max(0.5, 0.8)  = 0.8  (clipped, no gradient)
#   A = -1, rho = 1.5 -> max(1.5, 1.2)  = 1.5  (unclipped)
@pytest.mark.parametrize("adv, rho, loss, has_grad", [
    (1.0, 1.5, -1.2, False), (1.0, 0.5, -0.5, True), (-1.0, 0.5, 0.8, False), (-1.0, 1.5, 1.5, True)])
def test_clip_cases(adv, rho, loss, has_grad):
    logp = torch.tensor([math.log(rho)], dtype=f64, requires_grad=True)
    out, diag = policy_loss(logp, torch.zeros(1, dtype=f64), torch.tensor([adv], dtype=f64))
    out.backward()
    assert out.item() == pytest.approx(loss, abs=1e-12)
    assert (logp.grad.abs().item() > 0) == has_grad
    assert diag["clip_frac_high"] == (1.0 if (adv > 0 and rho > 1.2) else 0.0)
    assert diag["clip_frac_low"] == (1.0 if (adv < 0 and rho < 0.8) else 0.0)


def test_dual_clip_caps_negative_advantages():
    # A = -1, rho = 5: PPO term max(5, 1.2) = 5; dual clip c = 3 caps it at -c A = 3
    logp = torch.tensor([math.log(5.0)], dtype=f64)
    a = torch.tensor([-1.0], dtype=f64)
    loss, diag = policy_loss(logp, torch.zeros(1, dtype=f64), a, dual_clip=3.0)
    assert loss.item() == pytest.approx(3.0) and diag["dual_clip_frac"] == 1.0
    assert policy_loss(logp, torch.zeros(1, dtype=f64), a)[0].item() == pytest.approx(5.0)


def test_aggregation_golden():
    L = torch.tensor([[1.0, 2.0, 3.0], [4.0, 0.0, 0.0]], dtype=f64)
    m = torch.tensor([[1.0, 1.0, 1.0], [1.0, 0.0, 0.0]], dtype=f64)
    assert aggregate(L, m, "token-mean").item() == pytest.approx(10 / 4)
    assert aggregate(L, m, "seq-mean-token-mean").item() == pytest.approx((2 + 4) / 2)
    assert aggregate(L, m, "seq-mean-token-sum").item() == pytest.approx((6 + 4) / 2)
    assert aggregate(L, m, "seq-mean-token-sum-norm").item() == pytest.approx(10 / 6)
    assert aggregate(L, m, "seq-mean-token-sum-norm", max_len=5).item() == pytest.approx(1.0)
    with pytest.raises(ValueError, match="valid: token-mean"):
        aggregate(L, m, "mean")


@given(st.lists(st.floats(-5, 5, allow_nan=False), min_size=1, max_size=10))
def test_t1_first_three_modes_agree(values):
    L = torch.tensor(values, dtype=f64)  # [B] is read as [B, 1]
    outs = [aggregate(L, None, mode).item() for mode in AGG_MODES[:3]]
    assert max(outs) - min(outs) < 1e-12


@pytest.mark.parametrize("agg", AGG_MODES)
def test_on_policy_gradient_is_reinforce(agg):
    # On-policy (old_logp = logp) rho = 1 and grad loss = -sum_{b,t} w_bt A_b grad logp_bt,
    # with w the aggregation weights; checked through a softmax parameterisation.
    torch.manual_seed(0)
    B, T, V = 5, 4, 7
    theta = torch.randn(B, T, V, dtype=f64, requires_grad=True)
    tokens = torch.randint(V, (B, T))
    mask = (torch.rand(B, T) > 0.3).to(f64)
    mask[:, 0] = 1.0
    adv = torch.randn(B, dtype=f64)

    def logp_fn():
        return torch.log_softmax(theta, -1).gather(-1, tokens[..., None])[..., 0]

    loss, _ = policy_loss(logp_fn(), None, adv, mask, agg=agg)
    (g_loss,) = torch.autograd.grad(loss, theta)
    w = {"token-mean": mask / mask.sum(),
         "seq-mean-token-mean": mask / mask.sum(-1, keepdim=True) / B,
         "seq-mean-token-sum": mask / B,
         "seq-mean-token-sum-norm": mask / (B * T)}[agg]
    (g_ref,) = torch.autograd.grad(-(w * adv[:, None] * logp_fn()).sum(), theta)
    assert torch.allclose(g_loss, g_ref, atol=1e-14)


@pytest.mark.parametrize("agg", ["seq-mean-token-mean", "seq-mean-token-sum", "seq-mean-token-sum-norm"])
def test_microbatch_accumulation_equivalence(agg):
    # For per-sequence means, two half-batches with weights 1/2 each give the full batch's gradient.
    torch.manual_seed(1)
    logp = torch.randn(6, 3, dtype=f64, requires_grad=True)
    old = logp.detach() + 0.1 * torch.randn(6, 3, dtype=f64)
    adv, mask = torch.randn(6, dtype=f64), torch.ones(6, 3, dtype=f64)
    (full,) = torch.autograd.grad(policy_loss(logp, old, adv, mask, agg=agg, max_len=3)[0], logp)
    halves = sum(0.5 * policy_loss(logp[s], old[s], adv[s], mask[s], agg=agg, max_len=3)[0]
                 for s in (slice(0, 3), slice(3, 6)))
    (acc,) = torch.autograd.grad(halves, logp)
    assert torch.allclose(full, acc, atol=1e-14)


def test_sequence_level_ratio_gspo():
    # sequence ratio = exp(token-mean log-ratio) = exp((0.1 + 0.3)/2) = exp(0.2), clipped at 1.2 for A > 0
    logp = torch.tensor([[0.1, 0.3]], dtype=f64)
    loss, diag = policy_loss(logp, torch.zeros(1, 2, dtype=f64), torch.tensor([1.0], dtype=f64),
                             level="sequence", clip_high=0.5)
    assert loss.item() == pytest.approx(-math.exp(0.2), abs=1e-12)
    assert diag["ratio_mean"] == pytest.approx(math.exp(0.2))


def test_shape_errors():
    with pytest.raises(ValueError, match=r"old_logp shape \(2, 1\).*\(3, 1\)"):
        policy_loss(torch.zeros(3), torch.zeros(2), torch.zeros(3))
    with pytest.raises(ValueError, match="level"):
        policy_loss(torch.zeros(3), None, torch.zeros(3), level="token-sum")
