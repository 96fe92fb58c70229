"""Row and flat-array numba kernels: softmax rows, inverse-CDF sampling, and the updates outside the
recipe's gradient (memory table, linear features, Adam).

Every kernel is a deterministic function of its inputs (uniforms are drawn outside, in simulate.py)
and parallel loops have no cross-iteration reductions, so results do not depend on the thread count.
"""

from __future__ import annotations

import math

import numpy as np
from numba import njit, prange

from .metric_kernels import softmax_row


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
def sample_outcomes(qz, tp, u, y):
    """y[r, j, g] = inverse-CDF draw from softmax(qz[r, tp[j]]) with uniform u[r, j, g]."""
    R, Pt, G = u.shape
    K = qz.shape[2]
    for i in prange(R * Pt):
        r, j = i // Pt, i % Pt
        lp, pi, cum = np.empty(K), np.empty(K), np.empty(K)
        softmax_row(qz[r, tp[j]], lp, pi)
        draw_row(pi, u[r, j], y[r, j], cum)


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
