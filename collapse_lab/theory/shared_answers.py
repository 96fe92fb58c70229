"""Flow of the semantic-coupling benchmark (sim.problems.shared_answers / answer_pair; docs/theory.md item 12).

Linear parametrisation z(x, y) = z0(x, y) + phi(x, y) . w with answer features phi(x, y) =
sqrt(c) e_y. At G = infinity (simulator mode "flow", token-mean over P prompts) the ascent
direction of the expected objective is, per prompt, v(x, y) = (1/P) pi(y|x) (A(x, y) - E_pi A(x, .))
with A the objective's population advantage (collapse_lab.objective.population_advantages, never
re-derived here), and dw/dt = sum_{x,y} phi(x, y) v(x, y)  (`linear_flow_velocity`).

Two-prompt instance `answer_pair(d1, d2, c)` (answer a correct on prompt 1 only, b on prompt 2 only,
base logit of the correct answer over the wrong one d_i): with u = sqrt(c) (w_a - w_b),

    du/dt = c [h(d1 + u) - h(d2 - u)],   h(l) = P (1 - P) Delta(P),  P = sigmoid(l),
    Delta(P) = A_correct - A_wrong  (grpo: 1/sqrt(P(1-P)) as eps -> 0, so h(l) = 1/(2 cosh(l/2));
                                      dr_grpo / rloo: 1, h(l) = P(1-P)).

(`pair_reduction_expr` derives this from the chain rule in sympy.) For h even and strictly
decreasing in |l| (grpo, dr_grpo, rloo) the only fixed point is u* = (d2 - d1)/2, where both
prompts sit at logit m = (d1 + d2)/2, and dh/du there is 2 c h'(m): it is stable iff m > 0.
So from u = 0 the flow either *equalises* the prompts (d1 + d2 > 0: both P -> sigmoid(m), the easy
prompt loses mass) or *collapses* the harder one (d1 + d2 < 0: its P -> 0, the other's -> 1): an
answer wrong on one prompt and correct on the other is pushed down on both. GRPO's tail in the
collapsing case: h(l) ~ exp(-|l|/2), so e^(u/2) ~ c kappa t / 2 with kappa = e^(-d_w/2) - e^(d_l/2)
(w = winner, l = loser) and t^2 P_loser(t) -> 4 e^(d_l) / (c kappa)^2  (`pair_tail_constant`).
"""

from __future__ import annotations

import functools

import numpy as np
import sympy as sp

from ._numerics import ode_solve

__all__ = ["linear_flow_velocity", "linear_flow_solve", "advantage_gap", "pair_rate",
           "pair_reduction_expr", "pair_fixed_point", "pair_stable", "pair_limit", "pair_solve",
           "pair_tail_constant", "PAIR_KINDS"]

PAIR_KINDS = ("grpo", "dr_grpo", "rloo")  # population advantages with an even h(l)


def _softmax(z):
    e = np.exp(z - z.max(-1, keepdims=True))
    return e / e.sum(-1, keepdims=True)


def _population_advantages(x, pi, kind, std):
    import torch

    from collapse_lab.objective import population_advantages, successes

    x = torch.from_numpy(np.array(x, dtype=float))  # a writable copy for torch.from_numpy
    return population_advantages(x, torch.from_numpy(np.array(pi, dtype=float)), kind, std,
                                 success=successes(x)).numpy()


def linear_flow_velocity(w, z0, rewards, features, kind: str = "grpo", std: str = "group") -> np.ndarray:
    """dw/dt [D] of the G = infinity flow of z = z0 + phi . w (module docstring).

    w [D]; z0, rewards [P, K]; features [P, K, D]. v = (1/P) pi (A - E_pi A) with A from
    objective.population_advantages(rewards, pi, kind, std); dw/dt = sum_{x,y} phi(x,y) v(x,y).
    """
    phi = np.asarray(features, float)
    z = np.asarray(z0, float) + phi @ np.asarray(w, float)  # (P, K)
    pi = _softmax(z)
    adv = _population_advantages(rewards, pi, kind, std)  # (P, K)
    v = pi * (adv - (pi * adv).sum(-1, keepdims=True)) / z.shape[0]
    return np.einsum("xyd,xy->d", phi, v)


def linear_flow_solve(z0, rewards, features, t, kind: str = "grpo", std: str = "group",
                      eta: float = 1.0) -> np.ndarray:
    """Shared parameters w(t) [T, D] of the flow dw/dt = eta * linear_flow_velocity, w(0) = 0.

    t is flow time (a simulator run with step eta at step n sits at t = n); adaptive RK45
    (collapse_lab.theory._numerics.ode_solve, rtol 1e-11).
    """
    D = np.asarray(features).shape[2]
    f = lambda _, w: eta * linear_flow_velocity(w, z0, rewards, features, kind, std)  # noqa: E731
    return ode_solve(f, np.zeros(D), np.asarray(t, float))


def advantage_gap(P, kind: str = "grpo", std: str = "group") -> np.ndarray:
    """Delta(P) = A_correct - A_wrong of a two-answer prompt with correct mass P (objective's
    population advantages, GRPO with its eps = 1e-6). P array-like in (0, 1)."""
    P = np.atleast_1d(np.asarray(P, float))
    pi = np.stack([P, 1.0 - P], -1)  # (n, 2)
    x = np.broadcast_to(np.array([1.0, 0.0]), pi.shape)
    adv = _population_advantages(x, pi, kind, std)
    return adv[:, 0] - adv[:, 1]


def _check_kind(kind):
    if kind not in PAIR_KINDS:
        raise ValueError(f"kind = {kind!r} is invalid; allowed: {', '.join(PAIR_KINDS)}")


def _h(l, kind):
    P = 1.0 / (1.0 + np.exp(-np.asarray(l, float)))
    return P * (1.0 - P) * advantage_gap(P.ravel(), kind).reshape(P.shape)


def pair_rate(u, d1, d2, coupling: float = 1.0, kind: str = "grpo") -> np.ndarray:
    """du/dt = c [h(d1 + u) - h(d2 - u)] of answer_pair (module docstring); u array-like."""
    _check_kind(kind)
    u = np.asarray(u, float)
    return coupling * (_h(d1 + u, kind) - _h(d2 - u, kind))


@functools.lru_cache(maxsize=1)
def pair_reduction_expr() -> sp.Expr:
    """Sympy: (du/dt from the chain rule of the 2 x 2 shared-answer flow) - c [h(P1) - h(P2)].

    Symbols: shared scores w_a, w_b, base logits d1, d2, coupling c; A_c(P), A_w(P) are undefined
    functions (any advantage of the correct / wrong answer). simplify(result) == 0 proves the
    reduction for every advantage.
    """
    wa, wb, d1, d2 = sp.symbols("w_a w_b d1 d2", real=True)
    c = sp.Symbol("c", positive=True)
    Ac, Aw = sp.Function("A_c"), sp.Function("A_w")
    z = [[d1 + sp.sqrt(c) * wa, sp.sqrt(c) * wb], [sp.sqrt(c) * wa, d2 + sp.sqrt(c) * wb]]
    correct = [0, 1]
    dw = [0, 0]
    for x in range(2):
        den = sp.exp(z[x][0]) + sp.exp(z[x][1])
        pi = [sp.exp(z[x][y]) / den for y in range(2)]
        P = pi[correct[x]]
        A = [Ac(P) if y == correct[x] else Aw(P) for y in range(2)]
        mean = pi[0] * A[0] + pi[1] * A[1]
        for y in range(2):
            dw[y] += sp.sqrt(c) * pi[y] * (A[y] - mean) / 2  # token-mean over 2 prompts
    du = sp.sqrt(c) * (dw[0] - dw[1])

    def h(P):
        return P * (1 - P) * (Ac(P) - Aw(P))

    P1 = 1 / (1 + sp.exp(-(z[0][0] - z[0][1])))
    P2 = 1 / (1 + sp.exp(-(z[1][1] - z[1][0])))
    return sp.simplify(du - c * (h(P1) - h(P2)))


def pair_fixed_point(d1, d2) -> float:
    """u* = (d2 - d1)/2: both prompts at logit m = (d1 + d2)/2 (h even)."""
    return (float(d2) - float(d1)) / 2.0


def pair_stable(d1, d2) -> bool:
    """u* is stable iff m = (d1 + d2)/2 > 0 (du'/du = 2 c h'(m), h decreasing in |l|)."""
    return (float(d1) + float(d2)) > 0.0


def pair_limit(d1, d2) -> tuple[float, float]:
    """Terminal (P1, P2) of the flow from u = 0: equalised at sigmoid(m) if d1 + d2 > 0, the
    harder prompt collapses (P -> 0, the other -> 1) if d1 + d2 < 0, frozen if d1 + d2 = 0 or d1 = d2."""
    d1, d2 = float(d1), float(d2)
    if d1 + d2 == 0.0 or d1 == d2:
        return 1.0 / (1.0 + np.exp(-d1)), 1.0 / (1.0 + np.exp(-d2))
    if d1 + d2 > 0.0:
        m = 1.0 / (1.0 + np.exp(-(d1 + d2) / 2.0))
        return m, m
    return (1.0, 0.0) if d1 > d2 else (0.0, 1.0)


def pair_solve(d1, d2, t, coupling: float = 1.0, kind: str = "grpo") -> dict:
    """u(t), P1(t), P2(t) [T] of the reduced flow du/dt = pair_rate(u) from u(0) = 0 (RK45)."""
    u = ode_solve(lambda _, v: pair_rate(v, d1, d2, coupling, kind), np.zeros(1),
                  np.asarray(t, float))[:, 0]
    sig = lambda x: 1.0 / (1.0 + np.exp(-x))  # noqa: E731
    return {"u": u, "P1": sig(d1 + u), "P2": sig(d2 - u)}


def pair_tail_constant(d1, d2, coupling: float = 1.0) -> float:
    """GRPO, collapsing case (d1 + d2 < 0): lim t^2 P_loser(t) = 4 e^(d_l) / (c kappa)^2 with
    kappa = e^(-d_w/2) - e^(d_l/2) (module docstring); NaN when the pair does not collapse."""
    d1, d2 = float(d1), float(d2)
    if d1 + d2 >= 0.0 or d1 == d2:
        return float("nan")
    dw, dl = max(d1, d2), min(d1, d2)
    kappa = np.exp(-dw / 2.0) - np.exp(dl / 2.0)
    return float(4.0 * np.exp(dl) / (coupling * kappa) ** 2)
