"""Numba kernels of the logged metrics: the second implementation of collapse_lab.metrics.

The simulator logs, at every logged step, per replicate r (trajectory.py holds the table):

    per prompt p, from lp = log softmax(z[r, p]) and pi = exp(lp) (one row [K], `row_stats`):
        MASS      P_p = clip(sum_{y correct} pi_y, 0, 1)                     (correct mass)
        ENTROPY   H(pi) = -sum pi lp  (metrics.correct_entropy without a mask, which renormalises by
                  the rounded sum pi: a difference below K eps)
        KL        KL(pi || base) = sum_y pi_y (lp_y - lbase_y)               (objective.categorical_divergence
                  'reverse_kl' = sum base (u log u - (u - 1)), equal since sum pi = sum base = 1)
        COVERAGE  #{y correct : pi_y > threshold} / #{y correct}, 0 if none   (metrics.coverage)
        MODES     exp(H(q_c)), q_c = pi restricted to the correct set / its mass m,
                  H = -sum q_c (lp - log m) = log m - sum_c pi lp / m; 1 where m = 0
                  (metrics.effective_modes)
    per replicate (`reduce_stats`, prompts in index order, so results do not depend on threads):
        pass@k    mean_p 1 - (1 - P_p)^k = mean_p -expm1(k log1p(-P_p))     (metrics.pass_at_k_exact);
                  expm1(log1p(-m)) = -m at k = 1, and for k = 2 k' the identity
                  expm1(2t) = expm1(t) (expm1(t) + 2) replaces the transcendental (relative error
                  <= ~2 eps per doubling since expm1(t) in (-1, 0]): the default powers of two cost
                  ten multiply-adds per prompt
        entropy, kl      mean over all prompts; coverage, modes   mean over prompts with a correct outcome
    `saturated_share`: sum_p |dL/dz_p|_1 [pass@k_sat(P_p before the update) > saturation] / sum_p |dL/dz_p|_1
        (the test pass@k(P) > s as P > m*, pass@k being increasing in P; `saturation_mass`),
        with the per-prompt GRAD_L1 = |dL/dz_p|_1 written by the kernel (`grad_l1`) or from g_z.

`recipe_grad` (kernels.py) calls `row_stats` on the softmax it already computed for each trained
prompt, so logging every step costs no extra exp; `prompt_stats` is the standalone pass.
tests/sim/test_logging.py pins every quantity to collapse_lab.metrics / objective to 1e-12.
"""

from __future__ import annotations

import math

import numpy as np
from numba import njit, prange

MASS, ENTROPY, KL, COVERAGE, MODES, GRAD_L1 = range(6)
N_STATS = 6


def correct_index(correct: np.ndarray) -> np.ndarray:
    """[P, C] int64: the correct outcomes of each prompt, padded with -1 (C = max count, >= 1)."""
    correct = np.asarray(correct, bool)
    out = -np.ones((correct.shape[0], max(1, int(correct.sum(1).max(initial=0)))), np.int64)
    for p, row in enumerate(correct):
        idx = np.flatnonzero(row)
        out[p, :len(idx)] = idx
    return out


@njit(cache=True, error_model="numpy", inline="always")
def row_stats(lp, pi, corr_idx, base_lp, threshold, out):
    """out[N_STATS] = per-prompt statistics (module docstring) of one row: lp, pi [K] (softmax of the
    logits), corr_idx [C] its correct outcomes (-1 padded), base_lp [K] log base probabilities.

    One dense pass (sum pi lp, sum pi lbase) and one over the correct outcomes. sum pi = 1 is taken
    exactly (the reference renormalises by the rounded sum: a difference below K eps), and
    H_c = -sum_c q (lp - log m) = log m - sum_c pi lp / m.
    """
    s_lp, s_base = 0.0, 0.0
    for k in range(lp.shape[0]):
        s_lp += pi[k] * lp[k]
        s_base += pi[k] * base_lp[k]
    m, s_c, n_corr, alive = 0.0, 0.0, 0, 0
    for i in range(corr_idx.shape[0]):
        k = corr_idx[i]
        if k >= 0:
            m += pi[k]
            s_c += pi[k] * lp[k]
            n_corr += 1
            alive += 1 if pi[k] > threshold else 0
    out[MASS] = min(max(m, 0.0), 1.0)
    out[ENTROPY] = -s_lp
    out[KL] = s_lp - s_base
    out[COVERAGE] = alive / n_corr if n_corr > 0 else 0.0
    out[MODES] = math.exp(math.log(m) - s_c / m) if m > 0.0 else 1.0
    out[GRAD_L1] = 0.0  # written by the kernel's gradient phase / grad_l1_rows


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
def prompt_stats(z, corr_idx, base_lp, threshold, stats):
    """stats[r, p] = row_stats of softmax(z[r, p]) for every replicate and prompt. z [R, P, K]."""
    R, P, K = z.shape
    for i in prange(R * P):
        r, p = i // P, i % P
        lp, pi = np.empty(K), np.empty(K)
        softmax_row(z[r, p], lp, pi)
        row_stats(lp, pi, corr_idx[p], base_lp[p], threshold, stats[r, p])


@njit(cache=True, error_model="numpy", inline="always")
def pass_curve(m, ks, out):
    """out[i] += 1 - (1 - m)^ks[i] = -e_i, e_i = expm1(ks[i] log1p(-m)): e = -m at k = 1 and
    e_2k = e_k (e_k + 2) at each doubling (no transcendental), expm1 otherwise."""
    e = 0.0
    for i in range(ks.shape[0]):
        if i > 0 and ks[i] == 2.0 * ks[i - 1]:
            e = e * (e + 2.0)
        elif ks[i] == 1.0:
            e = -m
        else:
            e = math.expm1(ks[i] * math.log1p(-m))
        out[i] -= e


@njit(cache=True, error_model="numpy")
def reduce_stats(stats, has_correct, ks, pass_at_k, means, mass):
    """Per replicate: pass_at_k [R, nk], means [R, 4] = (entropy, kl, coverage, modes), mass [R, P].
    Serial: ~10 multiply-adds per prompt cost less than a parallel region's barrier on a busy host.

    Returns False when some prompt's entropy is not finite (non-finite logits), else True.
    """
    R, P = stats.shape[0], stats.shape[1]
    n_c = 0
    for p in range(P):
        n_c += 1 if has_correct[p] else 0
    bad = 0
    for r in range(R):
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


@njit(cache=True, error_model="numpy", inline="always")
def grad_l1(g):
    """sum_k |g[k]| of one row."""
    mag = 0.0
    for k in range(g.shape[0]):
        mag += abs(g[k])
    return mag


@njit(cache=True, parallel=True, error_model="numpy")
def grad_l1_rows(gz, stats):
    """stats[r, p, GRAD_L1] = sum_k |gz[r, p, k]| for every row (when the kernel did not write it)."""
    R, P, K = gz.shape
    for i in prange(R * P):
        stats[i // P, i % P, GRAD_L1] = grad_l1(gz[i // P, i % P])


def saturation_mass(sat_k: float, saturation: float) -> float:
    """The correct mass m* with pass@sat_k(m*) = saturation: 1 - (1 - m)^k > s <=> m > m* =
    1 - (1 - s)^(1/k) (pass@k is increasing in m), = -expm1(log1p(-s) / k)."""
    return float(-np.expm1(np.log1p(-saturation) / sat_k))


@njit(cache=True, error_model="numpy")
def saturated_share(stats, m_star, out):
    """out[r] = share of sum_p stats[r, p, GRAD_L1] on prompts whose correct mass (stats[r, p, MASS],
    measured before the update) exceeds m_star = saturation_mass(k, s), i.e. whose pass@k > s;
    0 where the update is all zero."""
    R, P = stats.shape[0], stats.shape[1]
    for r in range(R):  # serial, as reduce_stats
        tot, sat = 0.0, 0.0
        for p in range(P):
            mag = stats[r, p, GRAD_L1]
            tot += mag
            if stats[r, p, MASS] > m_star:
                sat += mag
        out[r] = sat / tot if tot > 0.0 else 0.0
