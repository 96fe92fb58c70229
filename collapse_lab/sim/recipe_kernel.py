"""`recipe_grad`: the closed-form gradient of `Recipe.loss` (collapse_lab.objective, docs/methods.md
§1-§4) with respect to the logits, for a batch of T = 1 responses, in named phases:

    dL/dz_p = sum_{b in p} c_b (e_{y_b} - pi_p) - c_H (n_kept_p / Den) dH_p/dz
              + eta / Den_ref sum_{j ref of p} f_j (e_{y_j} - pi_p),      c_b = dL/dlogp_b.

per group (r, j), prompt p = tp[j]:
    sample_group         softmax of z[r, p] (and its logged statistics), behaviour distribution,
                         inverse-CDF draws, behaviour log-probs of the samples
    group_rewards        raw rewards, success count, "rewards vary" flag
    shape_rewards        KL-in-reward, IPS, unlikeliness ranks -> pre-advantage rewards
per replicate r:
    batch_normalisers    aggregation denominators, batch std, ISAC mean multiplier (§4)
per group again:
    group_advantages     advantages and weights (§1, §2)
    sample_coefficients  c_b: clipped surrogate and KL-in-loss derivatives, kept-group scaling
    logit_gradient       g[r, p] = sum_b c_b (e_{y_b} - pi) [+ entropy bonus term]
    reference_divergence DPH's f-divergence on stored reference samples (§3)
    sgd_step             the fused tabular step z[r, p] -= lr g[r, p] (and the logged |g|_1)

The phases take the argument groups of layout.py whole and are inlined (numba IR) into two group
loops, `_rollout_groups` and `_update_groups`, which the parallel loops call. Numba 0.68 loses writes
made through a namedtuple's fields by code inlined (at IR level) into a prange body, not by a called
function; the group loops are inlined by LLVM instead (`forceinline`), after that analysis, so that
they run inside the parallel region (a call per phase from the parallel loop measured ~3x slower).
No reference counting (`_nrt=False` on recipe_grad, the group loops and batch_normalisers): every
`group.field` read binds a new array reference that numba increfs and decrefs (an atomic op per
read, ~170 per group in the parallel loop, 4x the plain-array kernel's), which made this kernel
~30% slower on one thread; these functions allocate nothing (np.empty is unavailable without NRT),
they only read and write arrays the caller owns. Uniforms are drawn outside and the parallel loops
(over replicates, or over contiguous chunks of (replicate, prompt) groups) have no cross-iteration
reductions, so results do not depend on the thread count.
tests/sim/test_parity.py pins it to torch autograd through the objective to 1e-10.
"""

from __future__ import annotations

import math

import numpy as np
from numba import njit, prange

from ..objective.divergences import DEFAULT_ALPHA
from ..objective.shaping import ISAC_MEAN_FLOOR
from .layout import (
    A_UNLIKELY,
    ADV,
    AGG,
    BETA_RANK,
    DDOF,
    DPH,
    DPH_ETA,
    DPH_ORDER,
    DYN,
    ENT,
    ENT_COEF,
    IPS,
    IPS_EPS,
    IPS_POWER,
    ISAC_EXPONENT,
    ISAC_NORM,
    KL,
    KL_BETA,
    KL_IN_REWARD,
    NORM_BATCH_STD,
    NORM_DEN,
    NORM_DEN_REF,
    NORM_ISAC_MEAN,
    NW,
    OFF_POLICY,
    STD,
    THRESH,
    TMAX,
    W0,
)
from .metric_kernels import GRAD_L1, grad_l1, row_stats, softmax_row
from .row_kernels import draw_row, softmax_probs
from .terms import apply_weight, div_term_grad, group_advantage, pg_grad

KL_ALPHA = DEFAULT_ALPHA  # the alpha argument of div_term_grad for KL terms (unused by k1-k3)
CHUNKS = 256  # (replicate, prompt)-parallel path: groups are processed in this many contiguous chunks


@njit(cache=True, parallel=True, error_model="numpy", _nrt=False)
def recipe_grad(logits, draws, task, hist, codes, out, sc, log, lr_fused, by_replicate):
    """Closed-form dL/dz of `Recipe.loss` for every replicate (module docstring) -> out.g (layout.Out).

    Argument groups (layout.py): logits Logits(z, qz); draws Draws(u, y): when u.size > 0 the outcomes
    y are drawn here from softmax(qz), else y is an input; task Task; hist History; codes RecipeCodes
    (spec.recipe_codes); out Out; sc Scratch (reused across steps); log LogStats: when on, the logged
    statistics of each trained prompt's pre-update policy, from the softmax computed here anyway.
    lr_fused > 0: also take the tabular SGD step z[r, tp] -= lr_fused g[r, tp].
    by_replicate: one parallel region over replicates (R >= threads) instead of three over chunks of
    (replicate, prompt) groups (the batch normalisers need every group of a replicate); the arithmetic
    and its order are the same either way.
    """
    R, Pt = draws.y.shape[0], draws.y.shape[1]
    if by_replicate:
        for r in prange(R):
            _rollout_groups(r * Pt, (r + 1) * Pt, logits, draws, task, codes, out, sc, log)
            batch_normalisers(r, draws, task, hist, codes, out, sc)
            _update_groups(r * Pt, (r + 1) * Pt, logits, draws, task, hist, codes, out, sc, log, lr_fused)
    else:
        n = R * Pt
        m = min(n, CHUNKS)
        for c in prange(m):
            _rollout_groups(c * n // m, (c + 1) * n // m, logits, draws, task, codes, out, sc, log)
        for r in prange(R):
            batch_normalisers(r, draws, task, hist, codes, out, sc)
        for c in prange(m):
            _update_groups(c * n // m, (c + 1) * n // m, logits, draws, task, hist, codes, out, sc, log, lr_fused)


@njit(cache=True, error_model="numpy", forceinline=True, _nrt=False)
def _rollout_groups(lo, hi, logits, draws, task, codes, out, sc, log):
    """The per-group phases before the batch normalisers, for groups i in [lo, hi) (r, j = divmod(i, Pt))."""
    Pt = draws.y.shape[1]
    for i in range(lo, hi):
        r, j = i // Pt, i % Pt
        sample_group(r, j, logits, draws, task, codes, sc, log)
        group_rewards(r, j, draws, task, codes, out, sc)
        shape_rewards(r, j, draws, task, codes, sc)


@njit(cache=True, error_model="numpy", forceinline=True, _nrt=False)
def _update_groups(lo, hi, logits, draws, task, hist, codes, out, sc, log, lr_fused):
    """The per-group phases after the batch normalisers, for groups i in [lo, hi)."""
    Pt = draws.y.shape[1]
    for i in range(lo, hi):
        r, j = i // Pt, i % Pt
        group_advantages(r, j, draws, task, hist, codes, out, sc)
        sum_c, scale = sample_coefficients(r, j, draws, task, hist, codes, out, sc)
        logit_gradient(r, j, draws, task, codes, out, sc, sum_c, scale)
        reference_divergence(r, j, task, hist, codes, out, sc)
        sgd_step(r, j, logits, task, out, log, lr_fused)


@njit(cache=True, error_model="numpy", inline="always")
def sample_group(r, j, logits, draws, task, codes, sc, log):
    """sc.lp/pi[r, j] = log softmax / softmax of z[r, p]; when log.on its statistics -> log.stats[r, p]
    (metric_kernels.row_stats); draws.y[r, j] by inverse CDF from pi, or from softmax(qz[r, p]) for the
    memory sampler (when draws.u is non-empty); sc.old[r, j] = behaviour log-probs of the samples."""
    p, G, y, old = task.tp[j], draws.y.shape[2], draws.y, sc.old  # (phases index arrays, not row views:
    lp, pi, cr = sc.lp[r, j], sc.pi[r, j], sc.cum[r, j]          # each view costs reference counting)
    softmax_row(logits.z[r, p], lp, pi)
    if log.on:
        row_stats(lp, pi, task.corr_idx[p], task.ref_lp[p], log.threshold, log.stats[r, p])
    off = codes.ic[OFF_POLICY] == 1
    lse_q = 0.0
    if off:  # sampling distribution softmax(qz) into the CDF scratch row (in-place prefix sum below)
        lse_q = softmax_probs(logits.qz[r, p], cr)
    if draws.u.shape[0] > 0:
        draw_row(cr if off else pi, draws.u[r, j], y[r, j], cr)
    for b in range(G):
        yb = y[r, j, b]
        old[r, j, b] = logits.qz[r, p, yb] - lse_q if off else lp[yb]


@njit(cache=True, error_model="numpy", inline="always")
def group_rewards(r, j, draws, task, codes, out, sc):
    """sc.xs[r, j] = raw rewards of the samples; out.n_succ[r, j] = successes (reward >= threshold);
    out.varied[r, j] = the group's rewards are not all equal."""
    p, G, y, xs, rewards = task.tp[j], draws.y.shape[2], draws.y, sc.xs, task.rewards
    thr = codes.fp[THRESH]
    c, lo, hi = 0.0, np.inf, -np.inf
    for b in range(G):
        raw = rewards[p, y[r, j, b]]
        c += 1.0 if raw >= thr else 0.0
        lo, hi = min(lo, raw), max(hi, raw)
        xs[r, j, b] = raw
    out.n_succ[r, j], out.varied[r, j] = c, hi > lo


@njit(cache=True, error_model="numpy", inline="always")
def shape_rewards(r, j, draws, task, codes, sc):
    """sc.xs[r, j] <- pre-advantage rewards: r - beta k(d) for KL in the reward, / max(n_o/G, eps)^power
    for IPS (§2), then (1 - beta_rank rank/G) for unlikeliness, rank by behaviour log-prob with ties by
    position (objective.groups.within_group_rank)."""
    ic, fp = codes.ic, codes.fp
    p, G, y, xs, lp, old = task.tp[j], draws.y.shape[2], draws.y, sc.xs, sc.lp, sc.old
    kl_rew, ips = ic[KL] >= 0 and ic[KL_IN_REWARD] == 1, ic[IPS] == 1
    if kl_rew or ips:
        for b in range(G):
            yb = y[r, j, b]
            x = xs[r, j, b]
            if kl_rew:
                t, _ = div_term_grad(ic[KL], lp[r, j, yb] - task.ref_lp[p, yb], KL_ALPHA)
                x -= fp[KL_BETA] * t
            if ips:
                n_o = 0.0
                for b2 in range(G):
                    n_o += 1.0 if y[r, j, b2] == yb else 0.0
                x = x / max(n_o / G, fp[IPS_EPS]) ** fp[IPS_POWER]
            xs[r, j, b] = x
    if ic[ADV] == A_UNLIKELY:
        for b in range(G):
            rank = 0
            for b2 in range(G):
                s2, s = old[r, j, b2], old[r, j, b]
                rank += 1 if (s2 < s or (s2 == s and b2 < b)) else 0
            xs[r, j, b] *= 1.0 - fp[BETA_RANK] * rank / G


@njit(cache=True, error_model="numpy", _nrt=False)
def batch_normalisers(r, draws, task, hist, codes, out, sc):
    """sc.norm[r] = (Den, Den_ref, batch std, ISAC mean multiplier) of replicate r (docs/methods.md §4)."""
    ic, fp, tp, y, xs, norm = codes.ic, codes.fp, task.tp, draws.y, sc.xs, sc.norm
    Pt, G = y.shape[1], y.shape[2]
    B, kept, nref, s, ns = Pt * G, 0.0, 0.0, 0.0, 0.0
    for j in range(Pt):
        if (out.varied[r, j] or ic[DYN] == 0) and hist.pef[r, tp[j]] == 0:
            kept += G
        if ic[DPH] >= 0 and hist.pef[r, tp[j]] == 1:
            for q in range(hist.ref_y.shape[2]):
                nref += 1.0 if hist.ref_y[r, tp[j], q] >= 0 else 0.0
        if ic[ISAC_NORM] == 1:
            for b in range(G):
                if task.rewards[tp[j], y[r, j, b]] >= fp[THRESH]:
                    s += (G - out.n_succ[r, j]) ** fp[ISAC_EXPONENT]
                    ns += 1.0
    rows = max(nref, 1.0)  # no reference rows: the DPH term is 0 (denominator guarded)
    norm[r, NORM_DEN] = max(kept, 1.0) if ic[AGG] == 0 else (B * ic[TMAX] if ic[AGG] == 3 else B)
    norm[r, NORM_DEN_REF] = rows if ic[AGG] < 3 else rows * ic[TMAX]
    norm[r, NORM_BATCH_STD] = np.nan
    norm[r, NORM_ISAC_MEAN] = max(s / ns, ISAC_MEAN_FLOOR) if ns > 0 else 1.0
    if ic[STD] == 1:
        m = 0.0
        for j in range(Pt):
            for b in range(G):
                m += xs[r, j, b]
        m /= B
        v = 0.0
        for j in range(Pt):
            for b in range(G):
                v += (xs[r, j, b] - m) ** 2
        norm[r, NORM_BATCH_STD] = math.sqrt(v / (B - ic[DDOF])) if B > ic[DDOF] else np.nan


@njit(cache=True, error_model="numpy", inline="always")
def group_advantages(r, j, draws, task, hist, codes, out, sc):
    """out.coef[r, j] <- the group's advantages from sc.xs[r, j], times its weights (§1, §2); coef holds
    them until sample_coefficients overwrites it."""
    ic, fp, p = codes.ic, codes.fp, task.tp[j]
    adv = out.coef[r, j]
    group_advantage(sc.xs[r, j], ic, fp, sc.norm[r, NORM_BATCH_STD], adv)
    for w in range(ic[NW]):
        apply_weight(ic[W0 + w], adv, draws.y[r, j], task.rewards[p], out.n_succ[r, j], hist.prior_s[r, p],
                     hist.prior_n[r, p], sc.norm[r, NORM_ISAC_MEAN], ic, fp)


@njit(cache=True, error_model="numpy", inline="always")
def sample_coefficients(r, j, draws, task, hist, codes, out, sc):
    """out.coef[r, j, b] = c_b = dL/dlogp_b of the clipped surrogate and the KL-in-loss term, scaled by
    keep / Den (dynamic sampling and D_pef drop a group); returns (sum_b c_b, keep / Den)."""
    ic, fp, p, G = codes.ic, codes.fp, task.tp[j], draws.y.shape[2]
    y, lp, old, coef = draws.y, sc.lp, sc.old, out.coef
    keep = 1.0 if ((out.varied[r, j] or ic[DYN] == 0) and hist.pef[r, p] == 0) else 0.0
    scale = keep / sc.norm[r, NORM_DEN]
    kl_loss = ic[KL] >= 0 and ic[KL_IN_REWARD] == 0 and fp[KL_BETA] > 0
    sum_c = 0.0
    for b in range(G):
        yb = y[r, j, b]
        cb = scale * pg_grad(lp[r, j, yb], old[r, j, b], coef[r, j, b], ic, fp)
        if kl_loss:
            _, dt = div_term_grad(ic[KL], lp[r, j, yb] - task.ref_lp[p, yb], KL_ALPHA)
            cb += fp[KL_BETA] * scale * dt
        coef[r, j, b] = cb
        sum_c += cb
    return sum_c, scale


@njit(cache=True, error_model="numpy", inline="always")
def logit_gradient(r, j, draws, task, codes, out, sc, sum_c, scale):
    """out.g[r, p] = sum_b c_b (e_{y_b} - pi) - c_H G scale dH/dz (entropy bonus; dH/dz = -pi (lp + H))."""
    p, G, K = task.tp[j], draws.y.shape[2], out.g.shape[2]
    lp, pi, g, coef, y = sc.lp, sc.pi, out.g, out.coef, draws.y
    ent = codes.fp[ENT_COEF] * G * scale if codes.ic[ENT] == 1 else 0.0
    if ent != 0.0:
        h = 0.0
        for k in range(K):
            h -= pi[r, j, k] * lp[r, j, k]
        for k in range(K):
            g[r, p, k] = -pi[r, j, k] * sum_c + ent * pi[r, j, k] * (lp[r, j, k] + h)
    else:
        for k in range(K):
            g[r, p, k] = -pi[r, j, k] * sum_c
    for b in range(G):
        g[r, p, y[r, j, b]] += coef[r, j, b]


@njit(cache=True, error_model="numpy", inline="always")
def reference_divergence(r, j, task, hist, codes, out, sc):
    """out.g[r, p] += eta / Den_ref sum_q f'(d_q) (e_{y_q} - pi) over the stored reference samples of a
    D_pef prompt (DPH, docs/methods.md §3)."""
    ic, fp, p = codes.ic, codes.fp, task.tp[j]
    if ic[DPH] < 0 or hist.pef[r, p] != 1:
        return
    lp, pi, g = sc.lp, sc.pi, out.g
    for q in range(hist.ref_y.shape[2]):
        yq = hist.ref_y[r, p, q]
        if yq < 0:
            continue
        _, dt = div_term_grad(ic[DPH], lp[r, j, yq] - task.ref_lp[p, yq], fp[DPH_ORDER])
        cq = fp[DPH_ETA] * dt / sc.norm[r, NORM_DEN_REF]
        g[r, p, yq] += cq
        for k in range(g.shape[2]):
            g[r, p, k] -= cq * pi[r, j, k]


@njit(cache=True, error_model="numpy", inline="always")
def sgd_step(r, j, logits, task, out, log, lr_fused):
    """log.stats[r, p, GRAD_L1] = |g[r, p]|_1 when logging (the saturated share); z[r, p] -= lr g[r, p]
    when the tabular SGD step is fused (lr_fused > 0)."""
    p, g, z = task.tp[j], out.g, logits.z
    if log.on:
        log.stats[r, p, GRAD_L1] = grad_l1(g[r, p])
    if lr_fused > 0.0:
        for k in range(g.shape[2]):
            z[r, p, k] -= lr_fused * g[r, p, k]
