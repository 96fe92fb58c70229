"""Coupling across prompts through shared parameters, and squeezing (docs/theory.md items 12-13).

- item 12: logits z(x, .) = W u_x (tabular outcomes, shared W (K, d), prompt features u_x) or
  z(x, y) = phi(x, y) . w (general features). One gradient step moves every prompt's logits by
  the kernel of the features: dz = eta K g, exactly (the model is linear in its parameters);
- item 13: a negative-advantage step on a sampled outcome raises the most likely other one.
"""

from __future__ import annotations

import numpy as np
import sympy as sp


def coupling_kernel(features) -> np.ndarray:
    """K(x, x') = u_x . u_x' for features (X, d) -> (X, X); for general features phi (X, K, d),
    K((x,y),(x',y')) = phi(x,y) . phi(x',y') -> (X, K, X, K)."""
    u = np.asarray(features, dtype=float)
    if u.ndim == 2:
        return u @ u.T
    if u.ndim == 3:
        return np.einsum("xyd,abd->xyab", u, u)
    raise ValueError("features must have shape (X, d) or (X, K, d)")


def coupling_prediction(features, grads, eta) -> np.ndarray:
    """Item 12: exact logit change of every prompt after one step W <- W + eta sum_x g_x u_x^T.

    features (X, d), grads (X, K) (dObjective/dz(x, .), ascent direction): dz(x') =
    eta sum_x K(x, x') g_x -> (X, K). General features (X, K, d): w <- w + eta sum g(x,y) phi(x,y),
    dz(x', y') = eta sum_{x,y} phi(x',y') . phi(x,y) g(x,y) -> (X, K).
    """
    u, g = np.asarray(features, dtype=float), np.asarray(grads, dtype=float)
    if g.ndim != 2 or g.shape[0] != u.shape[0] or (u.ndim == 3 and u.shape[1] != g.shape[1]):
        raise ValueError("grads must be (X, K) with X matching features")
    Kmat = coupling_kernel(u)
    if u.ndim == 2:
        return eta * Kmat @ g  # K symmetric: sum_x K(x, x') g_x
    return eta * np.einsum("xyab,ab->xy", Kmat, g)


def coupling_logprob_change(features, grads, eta, probs) -> np.ndarray:
    """Item 12, first order: dlog p(x', .) = (I - 1 p_x'^T) dz(x') (Ren & Sutherland's A K G form).

    probs (X, K): the current policy of every prompt. Returns (X, K).
    """
    dz = coupling_prediction(features, grads, eta)
    p = np.asarray(probs, dtype=float)
    return dz - np.sum(p * dz, -1, keepdims=True)


def squeeze_expr(K: int = 3, y: int = 0) -> sp.Matrix:
    """Item 13: first-order dlog p after dz = -eta (e_y - p) (negative advantage on sample y).

    dlog p_k = dz_k - sum_j p_j dz_j = eta (p_k + p_y - sum_j p_j^2) for k != y. Since
    sum_j p_j^2 <= max_j p_j, the most likely other outcome k* (p_k* + p_y >= max p) gains.
    """
    p = sp.symbols(f"p0:{K}", positive=True)
    eta = sp.Symbol("eta", positive=True)
    dz = [-eta * ((1 if k == y else 0) - p[k]) for k in range(K)]
    mean = sum(pk * dk for pk, dk in zip(p, dz))
    return sp.Matrix([sp.expand((dk - mean).subs(p[y], 1 - sum(p[j] for j in range(K) if j != y)))
                      for dk in dz])


def squeeze_logprob_change(p, y: int, eta: float = 1.0) -> np.ndarray:
    """Item 13: first-order dlog p after a negative-advantage step on outcome y, (K,):
    eta (p_k + p_y - sum p^2) for k != y and -eta (1 - 2 p_y + sum p^2) for k = y."""
    p = np.asarray(p, dtype=float)
    e = np.zeros_like(p)
    e[..., y] = 1.0
    dz = -eta * (e - p)
    return dz - np.sum(p * dz, -1, keepdims=True)
