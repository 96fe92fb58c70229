"""Pass@k and outcome-diversity metrics (docs/methods.md §6), used by the simulator and the LLM trainer.

All functions are numpy, vectorised, and accept array-likes (including torch tensors on CPU).
"""

from __future__ import annotations

import numpy as np

__all__ = [
    "pass_at_k",
    "pass_at_k_exact",
    "pass_at_k_curve",
    "powers_of_two",
    "distinct_correct",
    "correct_entropy",
    "effective_modes",
    "coverage",
]


_ROUNDING = 1e-9


def _int_array(name: str, x) -> np.ndarray:
    a = np.asarray(x)
    if a.dtype.kind == "f":
        if not np.all(np.isfinite(a)) or not np.all(a == np.round(a)):
            raise ValueError(f"{name} must hold whole numbers, got {x!r}")
        a = a.astype(np.int64)
    elif a.dtype.kind not in "iu":
        raise ValueError(f"{name} must be integer, got dtype {a.dtype}")
    return a.astype(np.int64)


def pass_at_k(n, c, k) -> np.ndarray:
    """Unbiased pass@k from n samples with c correct: 1 - C(n-c, k)/C(n, k) (Chen et al. 2021).

    Stable product form 1 - prod_{i=n-c+1}^{n} (1 - k/i), evaluated as exp(sum log1p(-k/i)) so it
    never forms a binomial; one cumulative sum per distinct k makes it vectorised.
    n, c, k broadcast; requires 0 <= c <= n, 1 <= k <= n.
    Returns float64 of the broadcast shape (1.0 where n - c < k).
    """
    n, c, k = np.broadcast_arrays(_int_array("n", n), _int_array("c", c), _int_array("k", k))
    if np.any(c < 0) or np.any(c > n):
        raise ValueError("pass_at_k needs 0 <= c <= n")
    if np.any(k < 1) or np.any(k > n):
        raise ValueError("pass_at_k needs 1 <= k <= n")
    out = np.ones(n.shape, dtype=np.float64)
    valid = n - c >= k
    for kk in np.unique(k[valid]):  # one cumulative sum per distinct k
        sel = valid & (k == kk)
        i = np.arange(kk + 1, n[sel].max() + 1, dtype=np.float64)
        cs = np.concatenate([[0.0], np.cumsum(np.log1p(-kk / i))])  # cs[j] = sum_{i=k+1}^{k+j}
        log_q = cs[n[sel] - kk] - cs[n[sel] - c[sel] - kk]  # sum_{i=n-c+1}^{n} log(1 - k/i)
        out[sel] = -np.expm1(log_q) + 0.0  # + 0.0: no negative zero
    return out


def pass_at_k_exact(p_correct, k) -> np.ndarray:
    """Exact pass@k when the correct mass p is known: 1 - (1 - p)^k, elementwise (broadcast).

    Computed as -expm1(k log1p(-p)) for accuracy at small p. Average over prompts for a benchmark.
    p within 1e-9 outside [0, 1] (a summed probability's rounding) is clipped; further is an error.
    """
    p = np.asarray(p_correct, dtype=np.float64)
    k = np.asarray(k, dtype=np.float64)
    if np.any((p < -_ROUNDING) | (p > 1 + _ROUNDING)) or np.any(np.isnan(p)):
        raise ValueError("pass_at_k_exact needs 0 <= p_correct <= 1")
    p = np.clip(p, 0.0, 1.0)  # a sum of probabilities may exceed 1 by rounding
    if np.any(k < 1):
        raise ValueError("pass_at_k_exact needs k >= 1")
    with np.errstate(divide="ignore"):
        return -np.expm1(k * np.log1p(-p))


def powers_of_two(n: int) -> list[int]:
    """[1, 2, 4, ..., <= n]: the k grid of every pass@k curve."""
    if n < 1:
        raise ValueError(f"n must be >= 1, got {n}")
    return [1 << i for i in range(int(np.log2(n)) + 1)]


def pass_at_k_curve(n, c, ks=None) -> dict[int, float]:
    """Mean unbiased pass@k over prompts for each k (default powers of two up to min n).

    n, c: per-prompt sample and correct counts [P].
    """
    n, c = np.broadcast_arrays(_int_array("n", n), _int_array("c", c))
    ks = powers_of_two(int(n.min())) if ks is None else list(ks)
    return {int(k): float(pass_at_k(n, c, k).mean()) for k in ks}


def distinct_correct(outcomes, correct) -> int:
    """Number of distinct outcome ids among the correct samples of one prompt."""
    outcomes, correct = np.asarray(outcomes), np.asarray(correct, dtype=bool)
    if outcomes.shape != correct.shape:
        raise ValueError(f"outcomes shape {outcomes.shape} does not match correct shape {correct.shape}")
    return int(np.unique(outcomes[correct]).size)


def correct_entropy(weights, correct=None, axis: int = -1) -> np.ndarray:
    """Entropy (nats) of the correct-outcome distribution, renormalised over correct outcomes.

    weights: probabilities or counts [..., K]; correct: bool mask [..., K] (default all).
    Returns [...]; 0 where there is no correct mass. Uses 0 log 0 = 0.
    """
    w = np.asarray(weights, dtype=np.float64)
    if np.any(w < 0):
        raise ValueError("correct_entropy needs non-negative weights")
    if correct is not None:
        w = np.where(np.asarray(correct, dtype=bool), w, 0.0)
    total = w.sum(axis=axis, keepdims=True)
    q = np.divide(w, total, out=np.zeros_like(w), where=total > 0)
    logq = np.log(q, out=np.zeros_like(q), where=q > 0)
    return -(q * logq).sum(axis=axis)


def effective_modes(weights, correct=None, axis: int = -1) -> np.ndarray:
    """Effective number of correct modes exp(H) of the renormalised correct distribution (>= 1)."""
    return np.exp(correct_entropy(weights, correct, axis))


def coverage(probs, correct, threshold: float = 1e-3, axis: int = -1) -> np.ndarray:
    """Share of a prompt's correct outcomes whose probability stays above `threshold` [...]."""
    p = np.asarray(probs, dtype=np.float64)
    corr = np.asarray(correct, dtype=bool)
    n_corr = corr.sum(axis=axis)
    alive = (corr & (p > threshold)).sum(axis=axis)
    return np.divide(alive, n_corr, out=np.zeros(np.shape(alive), dtype=np.float64), where=n_corr > 0)
