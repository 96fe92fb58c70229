"""Bandit problems: reward tables, base policies and (optional) shared features.

A `Problem` holds P prompts with K outcomes each:
    rewards  [P, K] float64   reward of outcome y on prompt x
    logits   [P, K] float64   base (initial = reference) policy logits z0
    correct  [P, K] bool      which outcomes count as solved (default rewards > 0)
    features [P, K, D] float64 or None   phi(x, y) for the linear parametrisation (docs/theory.md item 12)

Generators: `bandit` (one prompt), `multimode` (many prompts, several long-tailed correct modes, a
spread of difficulty down to correct mass ~1e-3), `coupled` (clustered prompt features,
phi(x, y) = e_y (x) u_x so that K((x,y),(x',y')) = delta_{yy'} coupling * u_x . u_x'), and the
semantic-coupling benchmark `shared_answers` / `answer_pair` (answers shared by every prompt,
phi(x, y) = sqrt(coupling) e_y, correct on some prompts and wrong on others: paper A's mechanism).

Control vs benchmark: with a tabular policy and a mean-centred advantage (grpo, dr_grpo, rloo) a
sampled update raises correct sampled logits and lowers wrong ones, so a prompt's correct mass can
only grow and `multimode` cannot show the Pass@k crossover of Yue et al. 2025. In `shared_answers`
(param "linear" or "both") an answer pushed down where it is wrong falls on every prompt, so plain
GRPO raises Pass@1 and ends below the base at large k (tests/sim/test_benchmark_collapse.py).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

__all__ = ["Problem", "bandit", "multimode", "coupled", "shared_answers", "answer_pair", "answer_features",
           "log_softmax_np", "softmax_np"]


def log_softmax_np(z: np.ndarray) -> np.ndarray:
    """log pi = z - logsumexp(z) over the last axis."""
    m = z.max(axis=-1, keepdims=True)
    return z - m - np.log(np.exp(z - m).sum(axis=-1, keepdims=True))


def softmax_np(z: np.ndarray) -> np.ndarray:
    """pi = softmax(z) over the last axis."""
    return np.exp(log_softmax_np(z))


@dataclass(frozen=True)
class Problem:
    """P prompts x K outcomes: rewards, base logits, correctness mask and optional features."""

    rewards: np.ndarray
    """[P, K] float64 rewards r(x, y)."""
    logits: np.ndarray
    """[P, K] float64 base-policy logits z0 (also the reference policy of KL/DPH recipes)."""
    correct: np.ndarray | None = None
    """[P, K] bool: outcomes counted as correct by the metrics; None -> rewards > 0."""
    features: np.ndarray | None = None
    """[P, K, D] float64 features phi(x, y) of the linear parametrisation z = z0 + phi . w."""
    name: str = "problem"
    """Short label saved with trajectories."""
    meta: dict = field(default_factory=dict)
    """Generator arguments (provenance)."""

    def __post_init__(self):
        r = np.ascontiguousarray(np.asarray(self.rewards, dtype=np.float64))
        z = np.ascontiguousarray(np.asarray(self.logits, dtype=np.float64))
        if r.ndim != 2 or z.ndim != 2:
            raise ValueError(f"rewards and logits must be 2-D [P, K]; got rewards {r.shape}, logits {z.shape}")
        if r.shape != z.shape:
            raise ValueError(f"K mismatch: rewards has shape {r.shape} but logits has shape {z.shape}")
        if r.shape[1] < 2:
            raise ValueError(f"a problem needs K >= 2 outcomes, got K={r.shape[1]}")
        if not (np.isfinite(r).all() and np.isfinite(z).all()):
            raise ValueError("rewards and logits must be finite")
        c = r > 0 if self.correct is None else np.asarray(self.correct, dtype=bool)
        if c.shape != r.shape:
            raise ValueError(f"correct must have shape {r.shape}, got {c.shape}")
        f = self.features
        if f is not None:
            f = np.ascontiguousarray(np.asarray(f, dtype=np.float64))
            if f.ndim != 3 or f.shape[:2] != r.shape:
                raise ValueError(f"features must have shape [P, K, D] = [{r.shape[0]}, {r.shape[1]}, D], got {f.shape}")
        object.__setattr__(self, "rewards", r)
        object.__setattr__(self, "logits", z)
        object.__setattr__(self, "correct", np.ascontiguousarray(c))
        object.__setattr__(self, "features", f)

    @property
    def n_prompts(self) -> int:
        return self.rewards.shape[0]

    @property
    def n_outcomes(self) -> int:
        return self.rewards.shape[1]

    def base_probs(self) -> np.ndarray:
        """[P, K] base-policy probabilities softmax(z0)."""
        return softmax_np(self.logits)


def bandit(rewards, init_probs=None, correct=None) -> Problem:
    """One prompt: rewards [K], initial probabilities [K] (default uniform); logits = log(init_probs)."""
    r = np.asarray(rewards, dtype=np.float64).reshape(1, -1)
    p = np.full(r.shape, 1.0 / r.shape[1]) if init_probs is None else np.asarray(init_probs, float).reshape(1, -1)
    if p.shape != r.shape:
        raise ValueError(f"K mismatch: rewards has K={r.shape[1]}, init_probs has K={p.shape[1]}")
    if (p <= 0).any() or abs(p.sum() - 1) > 1e-9:
        raise ValueError("init_probs must be positive and sum to 1")
    c = None if correct is None else np.asarray(correct, bool).reshape(1, -1)
    return Problem(r, np.log(p), c, name="bandit", meta={"K": r.shape[1]})


def multimode(n_prompts=64, n_outcomes=32, n_correct=4, tail=1.2, min_mass=1e-3, max_mass=0.9,
              seed=0) -> Problem:
    """Many prompts, `n_correct` correct outcomes each, long-tailed base probabilities.

    Base weights w_k = k^(-tail) (Zipf) over a random permutation of outcomes; the total correct mass
    P_x is drawn log-uniformly in [min_mass, max_mass] (so some prompts are almost never solved) and
    the correct (wrong) weights are rescaled to sum to P_x (1 - P_x). Rewards are binary.
    """
    if not (1 <= n_correct < n_outcomes):
        raise ValueError(f"n_correct must be in [1, n_outcomes), got {n_correct}")
    if not (0 < min_mass <= max_mass < 1):
        raise ValueError(f"need 0 < min_mass <= max_mass < 1, got {min_mass}, {max_mass}")
    rng = np.random.default_rng(seed)
    zipf = np.arange(1, n_outcomes + 1, dtype=float) ** (-tail)
    rewards = np.zeros((n_prompts, n_outcomes))
    probs = np.zeros((n_prompts, n_outcomes))
    mass = np.exp(rng.uniform(np.log(min_mass), np.log(max_mass), n_prompts))
    for x in range(n_prompts):
        w = zipf[rng.permutation(n_outcomes)]
        good = rng.choice(n_outcomes, n_correct, replace=False)
        rewards[x, good] = 1.0
        ok = rewards[x] > 0
        probs[x, ok] = mass[x] * w[ok] / w[ok].sum()
        probs[x, ~ok] = (1 - mass[x]) * w[~ok] / w[~ok].sum()
    meta = dict(n_prompts=n_prompts, n_outcomes=n_outcomes, n_correct=n_correct, tail=tail,
                min_mass=min_mass, max_mass=max_mass, seed=seed)
    return Problem(rewards, np.log(probs), name="multimode", meta=meta)


def coupled(n_prompts=32, n_outcomes=8, n_correct=2, n_clusters=4, dim=4, coupling=1.0, noise=0.3,
            tail=1.0, seed=0) -> Problem:
    """Clustered prompts sharing parameters: phi(x, y) = sqrt(coupling) * e_y (x) u_x  [P, K, K*dim].

    u_x = normalise(centre_{cluster(x)} + noise * N(0, I)); prompts of one cluster share their correct
    outcomes. The induced kernel is K((x,y),(x',y')) = coupling * delta_{yy'} u_x . u_x' (docs/theory.md
    item 12). Used with param="both" (z = z0 + theta + phi . w), coupling = 0 is exactly tabular.
    """
    if coupling < 0:
        raise ValueError(f"coupling must be >= 0, got {coupling}")
    rng = np.random.default_rng(seed)
    base = multimode(n_prompts, n_outcomes, n_correct, tail, 0.05, 0.5, seed)
    centres = rng.normal(size=(n_clusters, dim))
    cluster = np.arange(n_prompts) % n_clusters
    u = centres[cluster] + noise * rng.normal(size=(n_prompts, dim))
    u /= np.linalg.norm(u, axis=1, keepdims=True)
    # each cluster shares the correct set of its first prompt, base probs keep their shape
    rewards = base.rewards[cluster]
    feats = np.sqrt(coupling) * np.einsum("yk,xd->xykd", np.eye(n_outcomes), u)
    feats = feats.reshape(n_prompts, n_outcomes, n_outcomes * dim)
    meta = dict(n_prompts=n_prompts, n_outcomes=n_outcomes, n_correct=n_correct,
                n_clusters=n_clusters, dim=dim, coupling=coupling, noise=noise, seed=seed,
                cluster=cluster.tolist())
    return Problem(rewards, base.logits, features=feats, name="coupled", meta=meta)


def answer_features(n_prompts: int, n_answers: int, coupling: float = 1.0) -> np.ndarray:
    """phi(x, y) = sqrt(coupling) e_y for every prompt x  [P, K, K] (float64).

    Answer y carries one shared score w_y on every prompt: z(x, y) = z0(x, y) + sqrt(c) w_y, and the
    kernel K((x,y),(x',y')) = coupling * delta_{yy'} (docs/theory.md item 12) couples all prompts.
    """
    if not (isinstance(coupling, (int, float)) and 0 <= coupling < float("inf")):
        raise ValueError(f"coupling = {coupling!r} is invalid; allowed: a finite number >= 0")
    eye = np.sqrt(float(coupling)) * np.eye(n_answers)  # (K, K)
    return np.ascontiguousarray(np.broadcast_to(eye, (n_prompts, n_answers, n_answers)))


def shared_answers(n_prompts=64, n_answers=32, n_correct=2, tail=1.0, tilt=1.5, noise=2.0,
                   coupling=1.0, n_easy=0, easy_mass=0.97, seed=0) -> Problem:
    """Semantic-coupling benchmark: K answers shared by all prompts, popular answers usually right.

    Answer y has popularity q_y proportional to (y + 1)^(-tail) (answer 0 the most popular); base logits
    z0(x, y) = log q_y + noise * N(0, 1) (a prompt-specific perturbation); each prompt's n_correct
    correct answers are drawn without replacement with probabilities proportional to q_y^tilt
    (tilt > 0: answers are correct about as often as they are popular; tilt = 0: uniformly). So a
    rare answer is the right one on a few prompts and wrong on most others. Rewards are binary.
    Features phi(x, y) = sqrt(coupling) e_y ([P, K, K], `answer_features`): with param="linear"
    z = z0 + sqrt(c) w_y; with param="both" z = z0 + theta + sqrt(c) w_y, and coupling = 0 is exactly
    tabular (the control). Under plain GRPO (sampled, G = 8, lr = 0.1, sgd, param="linear") the
    shared scores of rare answers fall, Pass@1 rises and Pass@k ends below the base for k >= 64
    after 300 steps (tests/sim/test_benchmark_collapse.py).
    n_easy: the first n_easy prompts get their correct logits shifted by one constant so that their
    base correct mass is easy_mass (prompts the base already solves reliably, e.g. DPH's D_pef);
    the random draws, hence every other prompt, do not depend on n_easy.
    """
    if not (1 <= n_correct < n_answers):
        raise ValueError(f"n_correct = {n_correct!r} is invalid; allowed: integers in [1, n_answers)")
    for name, v in (("tail", tail), ("tilt", tilt), ("noise", noise)):
        if not (isinstance(v, (int, float)) and 0 <= v < float("inf")):
            raise ValueError(f"{name} = {v!r} is invalid; allowed: a finite number >= 0")
    rng = np.random.default_rng(seed)
    pop = np.arange(1, n_answers + 1, dtype=float) ** (-float(tail))
    pop /= pop.sum()  # (K,)
    logits = np.log(pop)[None, :] + noise * rng.normal(size=(n_prompts, n_answers))  # (P, K)
    q = pop ** float(tilt)
    q /= q.sum()
    rewards = np.zeros((n_prompts, n_answers))
    for x in range(n_prompts):
        rewards[x, rng.choice(n_answers, n_correct, replace=False, p=q)] = 1.0
    if not (isinstance(n_easy, int) and 0 <= n_easy <= n_prompts):
        raise ValueError(f"n_easy = {n_easy!r} is invalid; allowed: integers in [0, n_prompts]")
    if not (0 < easy_mass < 1):
        raise ValueError(f"easy_mass = {easy_mass!r} is invalid; allowed: a number in (0, 1)")
    for x in range(n_easy):
        ok = rewards[x] > 0
        lse = lambda v: np.logaddexp.reduce(v)  # noqa: E731
        logits[x, ok] += np.log(easy_mass / (1 - easy_mass)) - (lse(logits[x, ok]) - lse(logits[x, ~ok]))
    meta = dict(n_prompts=n_prompts, n_answers=n_answers, n_correct=n_correct, tail=tail, tilt=tilt,
                noise=noise, coupling=coupling, n_easy=n_easy, easy_mass=easy_mass, seed=seed)
    return Problem(rewards, logits, features=answer_features(n_prompts, n_answers, coupling),
                   name="shared_answers", meta=meta)


def answer_pair(d1: float, d2: float, coupling: float = 1.0) -> Problem:
    """Two prompts, two shared answers a (index 0) and b (index 1): a is correct on prompt 0 only,
    b on prompt 1 only. Base logits z0 = [[d1, 0], [0, d2]], so d_i is prompt i's base logit of its
    correct answer over its wrong one (P_i = sigmoid(d_i)); phi = answer_features(2, 2, coupling).
    The GRPO flow of this instance is solved in collapse_lab.theory.shared_answers.
    """
    for name, v in (("d1", d1), ("d2", d2)):
        if not (isinstance(v, (int, float)) and np.isfinite(v)):
            raise ValueError(f"{name} = {v!r} is invalid; allowed: a finite number")
    rewards = np.array([[1.0, 0.0], [0.0, 1.0]])
    logits = np.array([[float(d1), 0.0], [0.0, float(d2)]])
    return Problem(rewards, logits, features=answer_features(2, 2, coupling), name="answer_pair",
                   meta=dict(d1=d1, d2=d2, coupling=coupling))
