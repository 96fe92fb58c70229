"""Numba kernels (the only numba code of the simulator). Raw arrays in, `out=` buffers filled.

Every kernel is a deterministic function of its inputs: uniforms are drawn outside (simulate.py),
loops over replicates/prompts are `prange` with no cross-iteration reductions, so results do not
depend on the thread count. The recipe is passed as integer codes `ic` and floats `fp` (layout in
`spec.py`); `recipe_grad` is the closed-form gradient of `Recipe.loss` (collapse_lab.objective,
docs/methods.md §1-§4) with respect to the logits, for a batch of T = 1 responses:

    dL/dz_p = sum_{b in p} c_b (e_{y_b} - pi_p) - c_H (n_kept_p / Den) dH_p/dz
              + eta / Den_ref sum_{j ref of p} f_j (e_{y_j} - pi_p),      c_b = dL/dlogp_b.

It runs in three phases: `_sample_and_shape` (per group: softmax, inverse-CDF draws, rewards and
shaping, and the logged statistics of the softmax it holds), `_batch_normalisers` (per replicate:
aggregation denominator, batch std, ISAC mean) and `_group_gradient` (per group: advantages,
weights, surrogate and regulariser gradients, and the fused tabular SGD step). Its arguments come
in named groups (namedtuples `Draws`, `Task`, `History`, `RecipeCodes`, `Out`, `LogStats`).
tests/sim/test_parity.py pins it to torch autograd through the objective to 1e-10.
"""

from __future__ import annotations

import math
from collections import namedtuple

import numpy as np
from numba import njit, prange

from ..objective.advantages import PASSK_EPS
from ..objective.divergences import CLAMP_LOG, CLAMP_TERM, DEFAULT_ALPHA
from ..objective.shaping import ISAC_MEAN_FLOOR
from .metric_kernels import GRAD_L1, N_STATS, grad_l1, row_stats, softmax_row  # noqa: F401  (re-exported)

# integer code slots (ic) ------------------------------------------------------------------------
ADV, STD, DDOF, PASSK_K, AGG, DYN, IPS, KL, KL_IN_REWARD, DPH, NW, W0, W1, W2 = range(14)
ZS_COUNTS, ZS_MAX, BBG_COUNTS, BBG_KREF, ISAC_NORM, OFF_POLICY, TMAX, DUAL, ENT = range(14, 23)
N_IC = 23
# float slots (fp)
EPS, BETA_RANK, BASELINE, CLIP_LO, CLIP_HI, DUAL_C, IPS_EPS, IPS_ALPHA, KL_BETA, DPH_ETA, \
    DPH_ALPHA, ISAC_ALPHA, BBG_TAU, BBG_LAMBDA, ENT_COEF, THRESH = range(16)
N_FP = 16
# advantage / weight / divergence codes
A_GRPO, A_DR, A_RLOO, A_REINFORCE, A_PASSK, A_UNLIKELY = range(6)
W_ISAC, W_ZERO, W_BBG = 1, 2, 3
D_K1, D_K2, D_K3, D_FORWARD, D_JS, D_ALPHA = range(6)
LOG2 = math.log(2.0)
# One source for the objective's constants (imported above): numba freezes module-level floats at
# compile time. The on-disk cache (cache=True) keys on this file, so after changing one of them in
# collapse_lab/objective clear NUMBA_CACHE_DIR (or touch this file).
KL_ALPHA = DEFAULT_ALPHA  # the alpha argument of div_term_grad for KL terms (unused by k1-k3)

# argument groups of recipe_grad (numba namedtuples: named fields, no runtime cost) -----------------
Draws = namedtuple("Draws", ["u", "y"])
Task = namedtuple("Task", ["tp", "rewards", "ref_lp", "corr_idx"])
History = namedtuple("History", ["prior_s", "prior_n", "pef", "ref_y"])
RecipeCodes = namedtuple("RecipeCodes", ["ic", "fp"])
Out = namedtuple("Out", ["g", "coef", "n_succ", "varied"])
LogStats = namedtuple("LogStats", ["on", "threshold", "stats"])
Scratch = namedtuple("Scratch", ["xs", "old", "lp", "pi", "norm", "cum"])
"""recipe_grad's scratch: xs [R, Pt, G] pre-advantage rewards (shaped, unlikeliness-scaled),
old [R, Pt, G] behaviour log-probs of the samples, lp / pi [R, Pt, K] policy log-probs / probs,
norm [R, 4] per-replicate normalisers, cum [R, Pt, K] CDF scratch."""


def no_log_stats(R=0, P=0):
    """LogStats switched off (a [R, P, N_STATS] buffer that recipe_grad does not touch)."""
    return LogStats(False, 0.0, np.empty((R, P, N_STATS)))


@njit(cache=True, error_model="numpy")
def log_softmax_row(z, out):
    """out = z - max - log sum exp(z - max) for one row [K]."""
    m = z[0]
    for k in range(1, z.shape[0]):
        m = max(m, z[k])
    s = 0.0
    for k in range(z.shape[0]):
        s += math.exp(z[k] - m)
    ls = m + math.log(s)
    for k in range(z.shape[0]):
        out[k] = z[k] - ls


@njit(cache=True, parallel=True, error_model="numpy")
def sample_outcomes(qz, tp, u, y):
    """y[r, j, g] = inverse-CDF draw from softmax(qz[r, tp[j]]) with uniform u[r, j, g]."""
    R, Pt, G = u.shape
    K = qz.shape[2]
    for i in prange(R * Pt):
        r, j = i // Pt, i % Pt
        lp, pi, cum = np.empty(K), np.empty(K), np.empty(K)
        softmax_row(qz[r, tp[j]], lp, pi)
        draw_row(pi, u[r, j], y[r, j], cum)


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
def softmax_probs(z, out):
    """out = softmax(z) for one row [K]; returns log sum exp(z) (so log softmax = z - lse)."""
    m = z[0]
    for k in range(1, z.shape[0]):
        m = max(m, z[k])
    s = 0.0
    for k in range(z.shape[0]):
        out[k] = math.exp(z[k] - m)
        s += out[k]
    inv = 1.0 / s
    for k in range(z.shape[0]):
        out[k] = out[k] * inv
    return m + math.log(s)


@njit(cache=True, error_model="numpy")
def draw_row(pi, u, out, cum):
    """out[g] = first k with u[g] < cumsum(pi)_k, K - 1 on round-off (inverse-CDF sampling).

    Since cum is non-decreasing this is the branch-free count #{k < K-1 : u[g] >= cum[k]}
    (cum [K] is scratch and may be pi itself), the same comparisons against the same running sums
    as a search.
    """
    K = pi.shape[0]
    acc = 0.0
    for k in range(K):
        acc += pi[k]
        cum[k] = acc
    for g in range(u.shape[0]):
        ug, m = u[g], 0
        for k in range(K - 1):
            m += ug >= cum[k]
        out[g] = m


@njit(cache=True, parallel=True, error_model="numpy")
def recipe_grad(z, qz, draws, task, hist, codes, out, sc, log, lr_fused, by_replicate):
    """Closed-form dL/dz of `Recipe.loss` for every replicate (module docstring).

    z, qz [R, P, K] policy and sampling logits; argument groups (namedtuples above):
    draws  Draws(u [R, Pt, G], y [R, Pt, G]): when u.size > 0 the outcomes y of the trained prompts
           are drawn here from softmax(qz) (as `sample_outcomes`), else y is an input.
    task   Task(tp [Pt] trained prompts, rewards [P, K], ref_lp [P, K], corr_idx [P, C] correct
           outcomes per prompt, -1 padded (metric_kernels.correct_index)).
    hist   History(prior_s, prior_n [R, P] history counts, pef [R, P] uint8 DPH D_pef flag,
           ref_y [R, P, NR] stored reference outcomes, -1 = none).
    codes  RecipeCodes(ic [N_IC], fp [N_FP]) from spec.recipe_codes.
    out    Out(g [R, P, K] (rows off tp are not written: callers zero them once), coef [R, Pt, G] =
           dL/dlogp_b of the policy and KL terms, n_succ [R, Pt] raw successes per group, varied [R, Pt]
           group rewards not all equal).
    sc     Scratch buffers (`scratch(R, Pt, G, K)`), reused across steps.
    log    LogStats(on, threshold, stats [R, P, N_STATS]): when on, the logged statistics of the
           pre-update policy of each trained prompt (metric_kernels.row_stats) from the softmax
           computed here anyway.
    lr_fused > 0: also take the tabular SGD step z[r, tp] -= lr_fused g[r, tp].
    by_replicate: one parallel region over replicates (R >= threads) instead of three over
    (replicate, prompt) pairs; the arithmetic and its order are the same either way.
    """
    R, Pt = draws.y.shape[0], draws.y.shape[1]
    # the groups are unpacked here, outside the parallel loops: numba 0.68 loses writes made through
    # a namedtuple's fields inside a prange body, and the inlined phases take plain arrays
    u, y = draws.u, draws.y
    tp, rewards, ref_lp, correct = task.tp, task.rewards, task.ref_lp, task.corr_idx
    prior_s, prior_n, pef, ref_y = hist.prior_s, hist.prior_n, hist.pef, hist.ref_y
    ic, fp = codes.ic, codes.fp
    g, coef, n_succ, varied = out.g, out.coef, out.n_succ, out.varied
    xs, old, lpw, piw, norm, cum = sc.xs, sc.old, sc.lp, sc.pi, sc.norm, sc.cum
    on, thr, stats = log.on, log.threshold, log.stats
    if by_replicate:
        for r in prange(R):
            for j in range(Pt):
                _sample_and_shape(r, j, z, qz, u, y, tp, rewards, ref_lp, ic, fp, xs, old, lpw, piw, n_succ,
                                  varied, cum, on, correct, thr, stats)
            _batch_normalisers(r, y, tp, rewards, pef, ref_y, ic, fp, xs, n_succ, varied, norm)
            for j in range(Pt):
                _group_gradient(r, j, z, y, tp, rewards, ref_lp, prior_s, prior_n, pef, ref_y, ic, fp, g, coef,
                                xs, old, lpw, piw, n_succ, varied, norm, lr_fused, on, stats)
    else:
        for i in prange(R * Pt):
            _sample_and_shape(i // Pt, i % Pt, z, qz, u, y, tp, rewards, ref_lp, ic, fp, xs, old, lpw, piw,
                              n_succ, varied, cum, on, correct, thr, stats)
        for r in prange(R):
            _batch_normalisers(r, y, tp, rewards, pef, ref_y, ic, fp, xs, n_succ, varied, norm)
        for i in prange(R * Pt):
            _group_gradient(i // Pt, i % Pt, z, y, tp, rewards, ref_lp, prior_s, prior_n, pef, ref_y, ic, fp,
                            g, coef, xs, old, lpw, piw, n_succ, varied, norm, lr_fused, on, stats)


def scratch(R, Pt, G, K) -> Scratch:
    """Fresh scratch buffers of recipe_grad (allocate once per run and reuse: no page faults per step)."""
    return Scratch(np.empty((R, Pt, G)), np.empty((R, Pt, G)), np.empty((R, Pt, K)), np.empty((R, Pt, K)),
                   np.empty((R, 4)), np.empty((R, Pt, K)))


@njit(cache=True, error_model="numpy", inline="always")
def _sample_and_shape(r, j, z, qz, u, y, tp, rewards, ref_lp, ic, fp, xs, old, lpw, piw, n_succ, varied, cum,
                      log_on, correct, threshold, stats):
    """Softmax of the group's prompt, inverse-CDF draws, raw rewards, success count, reward shaping
    (KL-in-reward, IPS), unlikeliness ranks -> xs[r, j]; and, when log_on, the logged statistics of
    that softmax -> stats[r, tp[j]] (metric_kernels.row_stats)."""
    p, G = tp[j], y.shape[2]
    lp, pi, cr = lpw[r, j], piw[r, j], cum[r, j]
    softmax_row(z[r, p], lp, pi)
    if log_on:
        row_stats(lp, pi, correct[p], ref_lp[p], threshold, stats[r, p])
    off = ic[OFF_POLICY] == 1
    lse_q = 0.0
    if off:  # sampling distribution softmax(qz) into the CDF scratch row (in-place prefix sum below)
        lse_q = softmax_probs(qz[r, p], cr)
    if u.shape[0] > 0:
        draw_row(cr if off else pi, u[r, j], y[r, j], cr)
    thr, kl_rew, ips = fp[THRESH], ic[KL] >= 0 and ic[KL_IN_REWARD] == 1, ic[IPS] == 1  # hoisted
    c, lo, hi = 0.0, np.inf, -np.inf
    for b in range(G):
        yb = y[r, j, b]
        old[r, j, b] = qz[r, p, yb] - lse_q if off else lp[yb]
        raw = rewards[p, yb]
        c += 1.0 if raw >= thr else 0.0
        lo, hi = min(lo, raw), max(hi, raw)
        xs[r, j, b] = raw
    if kl_rew or ips:
        for b in range(G):
            yb = y[r, j, b]
            x = xs[r, j, b]
            if kl_rew:
                t, _ = div_term_grad(ic[KL], lp[yb] - ref_lp[p, yb], KL_ALPHA)
                x -= fp[KL_BETA] * t
            if ips:
                n_o = 0.0
                for b2 in range(G):
                    n_o += 1.0 if y[r, j, b2] == yb else 0.0
                x = x / max(n_o / G, fp[IPS_EPS]) ** fp[IPS_ALPHA]
            xs[r, j, b] = x
    n_succ[r, j], varied[r, j] = c, hi > lo
    if ic[ADV] == A_UNLIKELY:  # rank by behaviour log-prob, ties by position (groups.within_group_rank)
        for b in range(G):
            rank = 0
            for b2 in range(G):
                s2, s = old[r, j, b2], old[r, j, b]
                rank += 1 if (s2 < s or (s2 == s and b2 < b)) else 0
            xs[r, j, b] *= 1.0 - fp[BETA_RANK] * rank / G


@njit(cache=True, error_model="numpy")
def _batch_normalisers(r, y, tp, rewards, pef, ref_y, ic, fp, xs, n_succ, varied, norm):
    """Batch-level normalisers of replicate r (docs/methods.md §4): norm[r] = (Den, Den_ref, batch std,
    ISAC mean multiplier)."""
    Pt, G = y.shape[1], y.shape[2]
    B, kept, nref, s, ns = Pt * G, 0.0, 0.0, 0.0, 0.0
    for j in range(Pt):
        if (varied[r, j] or ic[DYN] == 0) and pef[r, tp[j]] == 0:
            kept += G
        if ic[DPH] >= 0 and pef[r, tp[j]] == 1:
            for q in range(ref_y.shape[2]):
                nref += 1.0 if ref_y[r, tp[j], q] >= 0 else 0.0
        if ic[ISAC_NORM] == 1:
            for b in range(G):
                if rewards[tp[j], y[r, j, b]] >= fp[THRESH]:
                    s += (G - n_succ[r, j]) ** fp[ISAC_ALPHA]
                    ns += 1.0
    rows = max(nref, 1.0)  # no reference rows: the DPH term is 0 (denominator guarded)
    norm[r, 0] = max(kept, 1.0) if ic[AGG] == 0 else (B * ic[TMAX] if ic[AGG] == 3 else B)
    norm[r, 1] = rows if ic[AGG] < 3 else rows * ic[TMAX]
    norm[r, 2] = np.nan
    norm[r, 3] = max(s / ns, ISAC_MEAN_FLOOR) if ns > 0 else 1.0
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
        norm[r, 2] = math.sqrt(v / (B - ic[DDOF])) if B > ic[DDOF] else np.nan


@njit(cache=True, error_model="numpy", inline="always")
def _group_gradient(r, j, z, y, tp, rewards, ref_lp, prior_s, prior_n, pef, ref_y, ic, fp, g, coef, xs, old,
                    lpw, piw, n_succ, varied, norm, lr_fused, log_on, stats):
    """Advantages, weights, clipped surrogate, KL/entropy/DPH terms -> g[r, tp[j]] (and the step);
    when log_on, stats[r, tp[j], GRAD_L1] = sum_k |g[r, tp[j], k]| (for the saturated share)."""
    p, G, K = tp[j], y.shape[2], z.shape[2]
    lp, pi, adv = lpw[r, j], piw[r, j], coef[r, j]  # advantages live in coef until overwritten
    group_advantage(xs[r, j], ic, fp, norm[r, 2], adv)
    c = n_succ[r, j]
    for w in range(ic[NW]):
        apply_weight(ic[W0 + w], adv, y[r, j], rewards[p], c, prior_s[r, p], prior_n[r, p],
                     norm[r, 3], ic, fp)
    keep = 1.0 if ((varied[r, j] or ic[DYN] == 0) and pef[r, p] == 0) else 0.0
    scale = keep / norm[r, 0]
    sum_c = 0.0
    for b in range(G):
        yb = y[r, j, b]
        cb = scale * pg_grad(lp[yb], old[r, j, b], adv[b], ic, fp)
        if ic[KL] >= 0 and ic[KL_IN_REWARD] == 0 and fp[KL_BETA] > 0:
            _, dt = div_term_grad(ic[KL], lp[yb] - ref_lp[p, yb], KL_ALPHA)
            cb += fp[KL_BETA] * scale * dt
        coef[r, j, b] = cb
        sum_c += cb
    ent = fp[ENT_COEF] * G * scale if ic[ENT] == 1 else 0.0
    if ent != 0.0:
        h = 0.0
        for k in range(K):
            h -= pi[k] * lp[k]
        for k in range(K):
            g[r, p, k] = -pi[k] * sum_c + ent * pi[k] * (lp[k] + h)
    else:
        for k in range(K):
            g[r, p, k] = -pi[k] * sum_c
    for b in range(G):
        g[r, p, y[r, j, b]] += coef[r, j, b]
    if ic[DPH] >= 0 and pef[r, p] == 1:
        for q in range(ref_y.shape[2]):
            yq = ref_y[r, p, q]
            if yq < 0:
                continue
            _, dt = div_term_grad(ic[DPH], lp[yq] - ref_lp[p, yq], fp[DPH_ALPHA])
            cq = fp[DPH_ETA] * dt / norm[r, 1]
            g[r, p, yq] += cq
            for k in range(K):
                g[r, p, k] -= cq * pi[k]
    if log_on:
        stats[r, p, GRAD_L1] = grad_l1(g[r, p])
    if lr_fused > 0.0:
        for k in range(K):
            z[r, p, k] -= lr_fused * g[r, p, k]


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
                m = (G - c) ** fp[ISAC_ALPHA]
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


@njit(cache=True, parallel=True, error_model="numpy")
def features_grad(phi, gz, out):
    """out[r, d] = sum_{p, k} phi[p, k, d] gz[r, p, k]   (chain rule of z = z0 + phi . w)."""
    R, P, K = gz.shape
    D = phi.shape[2]
    for r in prange(R):
        for d in range(D):
            out[r, d] = 0.0
        for p in range(P):
            for k in range(K):
                gk = gz[r, p, k]
                if gk != 0.0:
                    for d in range(D):
                        out[r, d] += phi[p, k, d] * gk


@njit(cache=True, parallel=True, error_model="numpy")
def features_logits(phi, w, out):
    """out[r, p, k] += sum_d phi[p, k, d] w[r, d]."""
    R, P, K = out.shape
    D = phi.shape[2]
    for i in prange(R * P):
        r, p = i // P, i % P
        for k in range(K):
            s = 0.0
            for d in range(D):
                s += phi[p, k, d] * w[r, d]
            out[r, p, k] += s


@njit(cache=True, parallel=True, error_model="numpy")
def adam_update(x, grad, m, v, lr, b1, b2, eps, t):
    """torch.optim.Adam step t (>= 1) on flat arrays: x -= lr mhat / (sqrt(vhat) + eps)."""
    bc1, bc2 = 1.0 - b1**t, 1.0 - b2**t
    for i in prange(x.shape[0]):
        m[i] = b1 * m[i] + (1.0 - b1) * grad[i]
        v[i] = b2 * v[i] + (1.0 - b2) * grad[i] * grad[i]
        x[i] -= (lr / bc1) * m[i] / (math.sqrt(v[i]) / math.sqrt(bc2) + eps)


@njit(cache=True, parallel=True, error_model="numpy")
def memory_update(zmem, y, tp, lr):
    """SGD on memory_loss summed over prompts, averaged over each prompt's group (docs/methods.md §2):
    L_mem = -sum_p mean_{b in p} log softmax(zmem[p])[y_b], so zmem[p] += lr/G sum_{b in p} (e_{y_b} - pi_mem,p).

    Each prompt's memory row takes the step of its own G samples, the scale of the policy's per-prompt
    step (a mean over all Pt G samples would make the memory learn Pt times slower than the policy).
    """
    R, Pt, G = y.shape
    K = zmem.shape[2]
    for i in prange(R * Pt):
        r, j = i // Pt, i % Pt
        p = tp[j]
        lp = np.empty(K)
        log_softmax_row(zmem[r, p], lp)
        for b in range(G):
            zmem[r, p, y[r, j, b]] += lr / G
        for k in range(K):
            zmem[r, p, k] -= lr * math.exp(lp[k])
