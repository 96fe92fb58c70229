"""Bridge to the objective's advantage math for binary groups (docs/theory.md items 7 and 10).

The theory never re-implements an advantage: it calls `collapse_lab.objective.group_advantages`
on constructed binary groups (float64) and tabulates a(r, c), the advantage of a sample with
reward r in a group of N samples of which c are correct. GRPO uses the objective's eps = 1e-6.
"""

from __future__ import annotations

import functools

import numpy as np

from ._numerics import check_int

OBJECTIVE_EPS = 1e-6  # collapse_lab.objective.group_advantages default, used for GRPO
ALIASES = {"mean": "dr_grpo", "mean_baseline": "dr_grpo"}
# kinds whose advantage is not a function of (r, c) alone
UNSUPPORTED = {"unlikeliness": "its advantage depends on each sample's log-probability rank"}


def resolve_kind(estimator: str) -> str:
    """Objective advantage kind for an estimator name ("mean" = dr_grpo); ValueError if unknown."""
    from collapse_lab.objective import ADVANTAGES

    kind = ALIASES.get(estimator, estimator)
    if kind in UNSUPPORTED:
        raise ValueError(f"estimator {estimator!r} is not supported: {UNSUPPORTED[kind]}")
    if kind not in ADVANTAGES:
        allowed = sorted(set(ADVANTAGES) - set(UNSUPPORTED) | set(ALIASES))
        raise ValueError(f"estimator must be one of {allowed}, got {estimator!r}")
    return kind


@functools.lru_cache(maxsize=256)
def advantage_table(estimator: str, N: int, ddof: int = 0, kw: tuple = ()):
    """(a1, a0), each float64 (N + 1,): a1[c] = a(1, c) (nan at c = 0), a0[c] = a(0, c) (nan at c = N).

    One batched call of group_advantages over the N + 1 groups with c = 0..N successes
    (rewards 1 for the first c samples, 0 after). kw: extra keyword arguments as sorted items.
    """
    import torch

    from collapse_lab.objective import group_advantages

    N = check_int("N", N, 2)
    kind = resolve_kind(estimator)
    c = np.arange(N + 1)
    rewards = (np.arange(N)[None, :] < c[:, None]).astype(np.float64)  # (N+1, N)
    group = np.repeat(c, N)
    opts = dict(kw)
    if kind == "grpo":
        opts.update(ddof=ddof, eps=OBJECTIVE_EPS)
    A = group_advantages(torch.from_numpy(rewards.ravel()), torch.from_numpy(group),
                         kind=kind, **opts).numpy().reshape(N + 1, N)
    _check_exchangeable(A, rewards, estimator)
    a1 = np.where(c > 0, A[:, 0], np.nan)
    a0 = np.where(c < N, A[:, -1], np.nan)
    return a1, a0


def _check_exchangeable(A, rewards, estimator):
    # The Bernstein form needs a(r, c): equal rewards in one group must get equal advantages.
    for r in (0.0, 1.0):
        masked = np.where(rewards == r, A, np.nan)
        spread = np.nanmax(masked, 1, initial=-np.inf) - np.nanmin(masked, 1, initial=np.inf)
        if np.any(spread[np.isfinite(spread)] > 1e-12):
            raise ValueError(f"estimator {estimator!r} does not give equal advantages to equal rewards")


def weight_differences(estimator: str, N: int, ddof: int = 0, kw: tuple = ()) -> np.ndarray:
    """d_m = a(1, m + 1) - a(0, m) for m = 0..N-1 (docs/theory.md item 7), float64 (N,)."""
    a1, a0 = advantage_table(estimator, N, ddof, kw)
    return a1[1:] - a0[:-1]
