"""Numba kernels of the logged metrics: the second implementation of collapse_lab.metrics.

The simulator logs, at every logged step, per replicate r (trajectory.py holds the table):

    per prompt p, from lp = log softmax(z[r, p]) and pi = exp(lp) (one row [K], `row_stats`):
        MASS      P_p = clip(sum_{y correct} pi_y, 0, 1)                     (correct mass)
        ENTROPY   H(q) with q = pi / sum pi, = log sum pi - sum pi lp / sum pi  (metrics.correct_entropy
                  without a mask: the entropy of the whole policy)
        KL        KL(pi || base) = sum_y pi_y (lp_y - lbase_y)               (objective.categorical_divergence
                  'reverse_kl' = sum base (u log u - (u - 1)), equal since sum pi = sum base = 1)
        COVERAGE  #{y correct : pi_y > threshold} / #{y correct}, 0 if none   (metrics.coverage)
        MODES     exp(H(q_c)), q_c = pi restricted to the correct set / its mass, H = -sum q_c (lp - log m);
                  1 where the correct mass is 0                              (metrics.effective_modes)
    per replicate (`reduce_stats`, prompts in index order, so results do not depend on threads):
        pass@k    mean_p 1 - (1 - P_p)^k = mean_p -expm1(k log1p(-P_p))     (metrics.pass_at_k_exact);
                  for k = 2 k' the identity expm1(2t) = expm1(t) (expm1(t) + 2) replaces the transcendental
                  (relative error <= ~2 eps per doubling since expm1(t) in (-1, 0]), so the default powers
                  of two cost one log1p and one expm1 per prompt
        entropy, kl      mean over all prompts; coverage, modes   mean over prompts with a correct outcome
    `saturated_share`: sum_p |dL/dz_p|_1 [pass@k_sat(P_p before the update) > saturation] / sum_p |dL/dz_p|_1.

`recipe_grad` (kernels.py) calls `row_stats` on the softmax it already computed for each trained
prompt, so logging every step costs no extra exp; `prompt_stats` is the standalone pass.
tests/sim/test_logging.py pins every quantity to collapse_lab.metrics / objective to 1e-12.
"""

from __future__ import annotations

import math

import numpy as np
from numba import njit, prange

MASS, ENTROPY, KL, COVERAGE, MODES = range(5)
N_STATS = 5


@njit(cache=True, error_model="numpy", inline="always")
def row_stats(lp, pi, correct, base_lp, threshold, out):
    """out[N_STATS] = per-prompt statistics (module docstring) of one row: lp, pi [K] (softmax of the
    logits), correct [K] uint8, base_lp [K] log base probabilities."""
    K = lp.shape[0]
    total, s_lp, kl, m, n_corr, alive = 0.0, 0.0, 0.0, 0.0, 0, 0
    for k in range(K):
        total += pi[k]
        s_lp += pi[k] * lp[k]
        kl += pi[k] * (lp[k] - base_lp[k])
        if correct[k]:
            m += pi[k]
            n_corr += 1
            alive += 1 if pi[k] > threshold else 0
    h_c = 0.0
    if m > 0.0:
        log_m = math.log(m)
        for k in range(K):
            if correct[k] and pi[k] > 0.0:
                h_c -= (pi[k] / m) * (lp[k] - log_m)
    out[MASS] = min(max(m, 0.0), 1.0)
    out[ENTROPY] = math.log(total) - s_lp / total
    out[KL] = kl
    out[COVERAGE] = alive / n_corr if n_corr > 0 else 0.0
    out[MODES] = math.exp(h_c)


@njit(cache=True, error_model="numpy")
def softmax_row(z, lp, pi):
    """lp = log softmax(z), pi = softmax(z) for one row [K] (one exp per entry; the simulator's only
    softmax, so the fused and standalone metric passes see the same bits)."""
    m = z[0]
    for k in range(1, z.shape[0]):
        m = max(m, z[k])
    s = 0.0
    for k in range(z.shape[0]):
        pi[k] = math.exp(z[k] - m)
        s += pi[k]
    ls = m + math.log(s)
    inv = 1.0 / s
    for k in range(z.shape[0]):
        lp[k] = z[k] - ls
        pi[k] = pi[k] * inv


@njit(cache=True, parallel=True, error_model="numpy")
def prompt_stats(z, correct, base_lp, threshold, stats):
    """stats[r, p] = row_stats of softmax(z[r, p]) for every replicate and prompt. z [R, P, K]."""
    R, P, K = z.shape
    for i in prange(R * P):
        r, p = i // P, i % P
        lp, pi = np.empty(K), np.empty(K)
        softmax_row(z[r, p], lp, pi)
        row_stats(lp, pi, correct[p], base_lp[p], threshold, stats[r, p])


@njit(cache=True, error_model="numpy", inline="always")
def pass_curve(m, ks, out):
    """out[i] += 1 - (1 - m)^ks[i] = -expm1(ks[i] log1p(-m)), doubling identity for ks[i] = 2 ks[i-1]."""
    t = math.log1p(-m)
    e = 0.0
    for i in range(ks.shape[0]):
        if i > 0 and ks[i] == 2.0 * ks[i - 1]:
            e = e * (e + 2.0)
        else:
            e = math.expm1(ks[i] * t)
        out[i] -= e


@njit(cache=True, parallel=True, error_model="numpy")
def reduce_stats(stats, has_correct, ks, pass_at_k, means, mass):
    """Per replicate: pass_at_k [R, nk], means [R, 4] = (entropy, kl, coverage, modes), mass [R, P].

    Returns False when some prompt's entropy is not finite (non-finite logits), else True.
    """
    R, P = stats.shape[0], stats.shape[1]
    n_c = 0
    for p in range(P):
        n_c += 1 if has_correct[p] else 0
    bad = 0
    for r in prange(R):
        for i in range(ks.shape[0]):
            pass_at_k[r, i] = 0.0
        h, kl, cov, modes = 0.0, 0.0, 0.0, 0.0
        for p in range(P):
            st = stats[r, p]
            mass[r, p] = st[MASS]
            pass_curve(st[MASS], ks, pass_at_k[r])
            h += st[ENTROPY]
            kl += st[KL]
            if has_correct[p]:
                cov += st[COVERAGE]
                modes += st[MODES]
            if not math.isfinite(st[ENTROPY]):
                bad += 1
        for i in range(ks.shape[0]):
            pass_at_k[r, i] /= P
        means[r, 0], means[r, 1] = h / P, kl / P
        means[r, 2] = cov / n_c if n_c > 0 else 0.0
        means[r, 3] = modes / n_c if n_c > 0 else 0.0
    return bad == 0


@njit(cache=True, parallel=True, error_model="numpy")
def saturated_share(gz, stats, sat_k, saturation, out):
    """out[r] = share of sum |gz[r]| on prompts whose pass@sat_k (from stats[r, p, MASS], taken
    before the update) exceeds `saturation`; 0 where gz[r] is all zero. gz [R, P, K]."""
    R, P, K = gz.shape
    for r in prange(R):
        tot, sat = 0.0, 0.0
        for p in range(P):
            mag = 0.0
            for k in range(K):
                mag += abs(gz[r, p, k])
            tot += mag
            if -math.expm1(sat_k * math.log1p(-stats[r, p, MASS])) > saturation:
                sat += mag
        out[r] = sat / tot if tot > 0.0 else 0.0
