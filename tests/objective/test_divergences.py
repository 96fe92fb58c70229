"""Divergences (docs/methods.md §3): golden terms, sign, exact expectations over categoricals, gradients."""

import math

import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st

from collapse_lab.objective import (
    DIVERGENCES,
    categorical_divergence,
    categorical_divergence_grad,
    divergence,
)

f64 = torch.float64


# u = pi/ref = 2, d = ln 2 = 0.693147:
#   k1 = d = 0.693147;  k2 = d^2/2 = 0.240227;  k3 = 1/2 - 1 + d = 0.193147
#   forward = 2 - ln 2 - 1 = 0.306853
#   js = 2 ln 2 - 3 ln(3/2) = 1.386294 - 1.216395 = 0.169899
#   alpha(0.5) = (sqrt 2 - 1 - 0.5) / (-0.25) = 0.343146
#   alpha(0.2) = (2^0.8 - 1.6 - 0.2) / (-0.16) = 0.368118
@pytest.mark.parametrize("kind, alpha, value", [
    ("k1", 0.2, 0.693147), ("k2", 0.2, 0.240227), ("k3", 0.2, 0.193147),
    ("forward", 0.2, 0.306853), ("js", 0.2, 0.169899), ("alpha", 0.5, 0.343146),
    ("alpha", 0.2, 0.368118)])
def test_golden_at_u2(kind, alpha, value):
    logp = torch.tensor([math.log(0.5)], dtype=f64)
    ref = torch.tensor([math.log(0.25)], dtype=f64)
    assert divergence(logp, ref, kind, alpha=alpha).item() == pytest.approx(value, abs=1e-6)


def test_clamps_follow_dph():
    logp, ref = torch.tensor([0.0], dtype=f64), torch.tensor([-30.0], dtype=f64)
    assert divergence(logp, ref, "forward").item() == 10.0  # d -> 20, term -> 10
    assert divergence(logp, ref, "k1").item() == 30.0  # k1 is not clamped (verl)
    assert divergence(logp, ref, "k3").item() == pytest.approx(10.0)


@given(st.floats(-15, 15), st.floats(0.05, 0.95))
def test_terms_nonnegative_and_zero_at_one(d, alpha):
    logp = torch.tensor([d, 0.0], dtype=f64)
    ref = torch.zeros(2, dtype=f64)
    for kind in ("k2", "k3", "forward", "js", "alpha"):
        t = divergence(logp, ref, kind, alpha=alpha)
        assert t[0].item() >= -1e-12
        assert abs(t[1].item()) < 1e-15


def random_categorical(seed, K=5):
    # scale 0.5 keeps |d| small enough that the DPH clamps (term <= 10) are inactive
    g = torch.Generator().manual_seed(seed)
    return 0.5 * torch.randn(K, generator=g, dtype=f64), 0.5 * torch.randn(K, generator=g, dtype=f64)


@pytest.mark.parametrize("seed", range(4))
def test_exact_expectations(seed):
    z, z_ref = random_categorical(seed)
    logpi, logref = torch.log_softmax(z, 0), torch.log_softmax(z_ref, 0)
    pi, ref = logpi.exp(), logref.exp()
    kl_pi_ref = (pi * (logpi - logref)).sum()
    kl_ref_pi = (ref * (logref - logpi)).sum()
    # k3 and k1 are unbiased for KL(pi || ref) under pi (exact sum, no Monte Carlo)
    assert (pi * divergence(logpi, logref, "k3")).sum().item() == pytest.approx(kl_pi_ref.item(), abs=1e-12)
    assert (pi * divergence(logpi, logref, "k1")).sum().item() == pytest.approx(kl_pi_ref.item(), abs=1e-12)
    # forward term under ref is KL(ref || pi)
    assert (ref * divergence(logpi, logref, "forward")).sum().item() == pytest.approx(kl_ref_pi.item(), abs=1e-12)
    # the exact categorical forms agree with the per-token terms' expectations under ref
    for kind in ("forward", "js", "alpha"):
        expect = (ref * divergence(logpi, logref, kind)).sum().item()
        assert categorical_divergence(z, z_ref, kind).item() == pytest.approx(expect, abs=1e-12)
    assert categorical_divergence(z, z_ref, "k3").item() == pytest.approx(kl_pi_ref.item(), abs=1e-12)
    # JS generator is 2 * JS(pi, ref)
    m = 0.5 * (pi + ref)
    js = 0.5 * (pi * (pi / m).log()).sum() + 0.5 * (ref * (ref / m).log()).sum()
    assert categorical_divergence(z, z_ref, "js").item() == pytest.approx(2 * js.item(), abs=1e-12)


@pytest.mark.parametrize("kind", ["k3", "forward", "js", "alpha"])
@pytest.mark.parametrize("seed", range(3))
def test_closed_form_gradient_matches_autograd(kind, seed):
    z, z_ref = random_categorical(seed)
    z = z.clone().requires_grad_(True)
    categorical_divergence(z, z_ref, kind, alpha=0.3).backward()
    closed = categorical_divergence_grad(z.detach(), z_ref, kind, alpha=0.3)
    assert torch.allclose(z.grad, closed, atol=1e-13)


def test_errors():
    x = torch.zeros(3, dtype=f64)
    with pytest.raises(ValueError, match="valid: " + ", ".join(DIVERGENCES)):
        divergence(x, x, "tv")
    with pytest.raises(ValueError, match=r"\(3,\).*\(2,\)"):
        divergence(x, x[:2], "k1")
    with pytest.raises(ValueError, match="alpha in"):
        divergence(x, x, "alpha", alpha=1.5)
