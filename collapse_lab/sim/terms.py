"""Scalar and per-group math of the numba kernels, each a re-expression of collapse_lab.objective
(docs/methods.md §1-§4), pinned to it to 1e-10 by tests/sim/test_kernels.py.

    div_term_grad   divergence term and its derivative at a log-ratio (objective.divergence)
    pg_grad         derivative of the clipped (dual-clip) surrogate as torch autograd takes it (§4)
    group_advantage advantages of one group (objective.advantages, §1)
    apply_weight    ISAC, zero-success gate, BBG (objective.components, §2); bbg_weight, log_comb
"""

from __future__ import annotations

import math

import numpy as np
from numba import njit

from ..objective.advantages import PASSK_EPS
from ..objective.divergences import CLAMP_LOG, CLAMP_TERM
from .layout import (
    A_DR,
    A_PASSK,
    A_REINFORCE,
    A_RLOO,
    ADV,
    BASELINE,
    BBG_COUNTS,
    BBG_KREF,
    BBG_LAMBDA,
    BBG_TAU,
    CLIP_HI,
    CLIP_LO,
    D_FORWARD,
    D_JS,
    D_K1,
    D_K2,
    D_K3,
    DDOF,
    DUAL,
    DUAL_C,
    EPS,
    ISAC_EXPONENT,
    ISAC_NORM,
    PASSK_K,
    STD,
    THRESH,
    W_BBG,
    W_ISAC,
    W_ZERO,
    ZS_COUNTS,
    ZS_MAX,
)

# One source for the objective's constants (imported above): numba freezes module-level floats at
# compile time. The on-disk cache (cache=True) keys on this file, so after changing one of them in
# collapse_lab/objective clear NUMBA_CACHE_DIR (or touch this file).
LOG2 = math.log(2.0)


@njit(cache=True, error_model="numpy")
def div_term_grad(code, d, alpha):
    """(term, dterm/dd) of docs/methods.md §3 at log-ratio d, clamped as objective.divergence does
    (d to +-CLAMP_LOG and the term to +-CLAMP_TERM for k3/forward/js/alpha): where a clamp is active the
    gradient is 0 (torch.clamp passes it on the closed range)."""
    if code == D_K1:
        return d, 1.0
    if code == D_K2:
        return 0.5 * d * d, d
    live = -CLAMP_LOG <= d <= CLAMP_LOG
    d = min(max(d, -CLAMP_LOG), CLAMP_LOG)
    u = math.exp(d)
    if code == D_K3:
        t, dt = math.expm1(-d) + d, -math.expm1(-d)
    elif code == D_FORWARD:
        t, dt = math.expm1(d) - d, math.expm1(d)
    elif code == D_JS:
        sp = max(d, 0.0) + math.log1p(math.exp(-abs(d)))  # softplus(d) = log(1 + u)
        t, dt = u * d - (u + 1.0) * (sp - LOG2), u * (d - sp + LOG2)
    else:  # alpha
        t = (math.exp((1.0 - alpha) * d) - (1.0 - alpha) * u - alpha) / (alpha * (alpha - 1.0))
        dt = (u - math.exp((1.0 - alpha) * d)) / alpha
    if t < -CLAMP_TERM or t > CLAMP_TERM:
        live = False
        t = min(max(t, -CLAMP_TERM), CLAMP_TERM)
    return t, (dt if live else 0.0)


@njit(cache=True, error_model="numpy")
def log_comb(n, k):
    """log C(n, k) via lgamma; -inf outside 0 <= k <= n (objective.advantages.log_comb)."""
    if k < 0 or k > n:
        return -np.inf
    return math.lgamma(n + 1.0) - math.lgamma(k + 1.0) - math.lgamma(n - k + 1.0)


@njit(cache=True, error_model="numpy")
def bbg_weight(m, n, k, tau):
    """u(m; n, k)/u(1; n, k), 0 where u(m) < tau (n + 1)  (docs/methods.md §2, paper C Eqs. 8-9)."""
    lu_m = math.lgamma(n - m + k) - math.lgamma(n - m + 1) + math.lgamma(n + 2) - math.lgamma(n + 1 + k)
    lu_1 = math.lgamma(n - 1 + k) - math.lgamma(n) + math.lgamma(n + 2) - math.lgamma(n + 1 + k)
    u_m = k * math.exp(lu_m)
    if u_m < tau * (n + 1.0):
        return 0.0
    return u_m / (k * math.exp(lu_1))


@njit(cache=True, error_model="numpy")
def pg_grad(logp, old, a, ic, fp):
    """d/dlogp of max(-A rho, -A clip(rho)) [then min(., -c A) for A < 0] as torch autograd does it.

    torch.maximum/minimum split the gradient equally on ties; clamp passes it on its closed range.
    """
    if logp == old:  # on-policy: rho = 1, unclipped and clipped tie, each half-gradient is -A
        return -a
    rho = math.exp(logp - old)
    lo, hi = 1.0 - fp[CLIP_LO], 1.0 + fp[CLIP_HI]
    rc = min(max(rho, lo), hi)
    unc, clp = -a * rho, -a * rc
    g_unc, g_clp = -a * rho, (-a * rho if (rho >= lo and rho <= hi) else 0.0)
    if unc > clp:
        per, g = unc, g_unc
    elif clp > unc:
        per, g = clp, g_clp
    else:
        per, g = unc, 0.5 * (g_unc + g_clp)
    if ic[DUAL] == 1 and a < 0:
        cap = -a * fp[DUAL_C]
        if per > cap:
            g = 0.0
        elif per == cap:
            g = 0.5 * g
    return g


@njit(cache=True, error_model="numpy")
def group_stats(x, G, ddof):
    """(mean, sum of squared deviations / (G - ddof)) of a group's values x[G]."""
    s = 0.0
    for g in range(G):
        s += x[g]
    mean = s / G
    ss = 0.0
    for g in range(G):
        ss += (x[g] - mean) ** 2
    return mean, ss / (G - ddof)


@njit(cache=True, error_model="numpy")
def group_advantage(x, ic, fp, bstd, adv):
    """Advantages of one group from pre-advantage rewards x[G] (docs/methods.md §1, objective.advantages)."""
    G = x.shape[0]
    kind = ic[ADV]
    mean, var = group_stats(x, G, ic[DDOF])
    if kind == A_PASSK:
        kk = float(ic[PASSK_K])
        n_neg = 0.0
        for b in range(G):
            n_neg += 0.0 if x[b] >= fp[THRESH] else 1.0
        big_r = 1.0 - math.exp(log_comb(n_neg, kk) - log_comb(float(G), kk))
        s = math.sqrt(max(big_r * (1.0 - big_r), 0.0))
        frac = math.exp(log_comb(n_neg - 1.0, kk - 1.0) - log_comb(G - 1.0, kk - 1.0))
        for b in range(G):
            adv[b] = (1.0 - big_r) / (s + PASSK_EPS) if x[b] >= fp[THRESH] else (1.0 - big_r - frac) / (s + PASSK_EPS)
        return
    if kind == A_REINFORCE:
        for b in range(G):
            adv[b] = x[b] - fp[BASELINE]
    elif kind == A_RLOO:
        for b in range(G):
            adv[b] = x[b] - (mean * G - x[b]) / (G - 1)
    elif kind == A_DR or ic[STD] == 2:
        for b in range(G):
            adv[b] = x[b] - mean
    else:  # grpo / unlikeliness with group or batch std
        sd = math.sqrt(var) if ic[STD] == 0 else bstd
        for b in range(G):
            adv[b] = (x[b] - mean) / (sd + fp[EPS])


@njit(cache=True, error_model="numpy")
def apply_weight(code, adv, yg, rew, c, prior_s, prior_n, isac_mean, ic, fp):
    """Advantage weights of docs/methods.md §2 in place: ISAC, zero-success gate, BBG (objective.components)."""
    G = adv.shape[0]
    thr = fp[THRESH]
    if code == W_ISAC:
        for b in range(G):
            if rew[yg[b]] >= thr:
                m = (G - c) ** fp[ISAC_EXPONENT]
                adv[b] *= m / isac_mean if ic[ISAC_NORM] == 1 else m
    elif code == W_ZERO:
        open_ = prior_s == 0 if ic[ZS_COUNTS] == 1 else c <= ic[ZS_MAX]
        for b in range(G):
            adv[b] *= 1.0 if open_ else 0.0
    elif code == W_BBG:
        m, n = c, float(G)
        if ic[BBG_COUNTS] == 1:
            m, n = c + prior_s, n + prior_n
        w = bbg_weight(m, n, float(ic[BBG_KREF]), fp[BBG_TAU])
        for b in range(G):
            adv[b] = -fp[BBG_LAMBDA] * w if c == 0 else adv[b] * w
