"""SimConfig: the typed, documented configuration of one simulation (saved with every Trajectory)."""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field

import numpy as np

__all__ = ["SimConfig", "MODES", "BACKENDS", "OPTIMIZERS", "PARAMS", "DEFAULT_KS"]

MODES = ("sampled", "mean_field", "flow")
BACKENDS = ("numba", "torch")
OPTIMIZERS = ("sgd", "adam", "npg")
PARAMS = ("tabular", "linear", "both")
DEFAULT_KS = tuple(2**i for i in range(11))  # 1, 2, 4, ..., 1024


@dataclass
class SimConfig:
    """One simulation. Every field is validated by `validate(problem)`; errors name the field."""

    recipe: str = "grpo"
    """Recipe name from collapse_lab.objective.RECIPES (combinations "a+b" allowed)."""
    overrides: dict = field(default_factory=dict)
    """Keyword overrides passed to `recipe(name, **overrides)`."""
    mode: str = "sampled"
    """'sampled' (G draws per prompt), 'mean_field' (exact expectation of one G-sample update),
    'flow' (exact expected gradient at G = infinity), iterated with step `lr`."""
    backend: str = "numba"
    """'numba' (closed-form kernels) or 'torch' (autograd through the objective: ground truth; mode
    'sampled' only, refused for the deterministic modes, whose expectation has one implementation)."""
    steps: int = 100
    """Number of parameter updates."""
    lr: float = 0.1
    """Step size eta (> 0)."""
    group_size: int = 8
    """Samples per prompt per step G (>= 2 for group-relative advantages)."""
    replicates: int = 1
    """Independent runs R (sampled mode); deterministic modes use 1."""
    optimizer: str = "sgd"
    """'sgd' (the theory's setting), 'adam', or 'npg' (natural gradient, tabular only:
    dz = g / pi, docs/theory.md item 2). In flow/mean_field modes the optimiser is applied to the exact
    expected gradient (so mean_field + adam is Adam on E[g], not E[Adam update])."""
    adam_betas: tuple = (0.9, 0.999)
    """Adam (beta1, beta2)."""
    adam_eps: float = 1e-8
    """Adam epsilon."""
    param: str = "tabular"
    """'tabular' z = z0 + theta; 'linear' z = z0 + phi . w; 'both' z = z0 + theta + phi . w."""
    train_prompts: tuple | None = None
    """Indices of the prompts that are sampled and trained (None = all); others only evolve through
    shared parameters (docs/theory.md item 12)."""
    log_every: int = 1
    """Log metrics every this many steps (step 0 and the last step are always logged)."""
    ks: tuple = DEFAULT_KS
    """k values of the exact pass@k curve."""
    coverage_threshold: float = 1e-3
    """A correct outcome is 'covered' while its probability exceeds this."""
    saturation: float = 0.99
    """A prompt is 'saturated' when its exact pass@saturation_k exceeds this (paper C: the share of
    updates spent on saturated prompts measures overtraining)."""
    saturation_k: int = 16
    """k of the saturation criterion (paper C's k_ref)."""
    track: tuple = ()
    """Log-ratio pairs (prompt, i, j): log(pi_i / pi_j) = z_i - z_j is logged for each."""
    snapshots: bool = False
    """Also store the probability table [R, L, P, K] at every logged step."""
    progress: bool = False
    """Show a tqdm progress bar."""

    def to_dict(self) -> dict:
        d = asdict(self)
        d["ks"], d["track"] = list(self.ks), [list(t) for t in self.track]
        return d

    def validate(self, problem) -> None:
        """Raise ValueError naming the first bad field: `<field> = <value!r> is invalid; allowed: ...`.

        Numbers must be finite and of their type (ints are int or numpy integers, never bools; floats
        are real numbers, never bools); tuples hold ints within the problem's ranges.
        """
        P, K = problem.rewards.shape
        for name, allowed in (("mode", MODES), ("backend", BACKENDS), ("optimizer", OPTIMIZERS),
                              ("param", PARAMS)):
            _choice(name, getattr(self, name), allowed)
        if not isinstance(self.recipe, str):
            _bad("recipe", self.recipe, "a recipe name string from collapse_lab.objective.RECIPES")
        if not isinstance(self.overrides, dict):
            _bad("overrides", self.overrides, "a dict of recipe keyword overrides")
        for name, lo in (("steps", 0), ("group_size", 1), ("replicates", 1), ("log_every", 1),
                         ("saturation_k", 1)):
            _int(name, getattr(self, name), lo)
        _float("lr", self.lr, 0.0, None, "a finite float > 0")
        _float("adam_eps", self.adam_eps, 0.0, None, "a finite float > 0")
        b = self.adam_betas
        if not (isinstance(b, (tuple, list)) and len(b) == 2 and all(_is_real(x) and 0 <= x < 1 for x in b)):
            _bad("adam_betas", b, "a pair (beta1, beta2) of floats in [0, 1)")
        _float("coverage_threshold", self.coverage_threshold, 0.0, 1.0, "a float in (0, 1)")
        _float("saturation", self.saturation, 0.0, 1.0, "a float in (0, 1)")
        if not (isinstance(self.ks, (tuple, list)) and self.ks and all(_is_int(k) and k >= 1 for k in self.ks)):
            _bad("ks", self.ks, "a non-empty tuple of ints >= 1")
        if not isinstance(self.track, (tuple, list)) or not all(
                isinstance(t, (tuple, list)) and len(t) == 3 and all(_is_int(x) for x in t)
                and 0 <= t[0] < P and 0 <= t[1] < K and 0 <= t[2] < K for t in self.track):
            _bad("track", self.track, f"a tuple of (prompt, i, j) int triples with prompt < P={P}, i, j < K={K}")
        tp = self.train_prompts
        if tp is not None and not (isinstance(tp, (tuple, list)) and tp
                                   and all(_is_int(x) and 0 <= x < P for x in tp)):
            _bad("train_prompts", tp, f"None or a non-empty tuple of int prompt indices in [0, {P})")
        for name in ("snapshots", "progress"):
            if not isinstance(getattr(self, name), bool):
                _bad(name, getattr(self, name), "True or False")
        if self.param != "tabular" and problem.features is None:
            _bad("param", self.param, "'tabular' (this problem has no features; linear/both need them)")
        if self.optimizer == "npg" and (self.param != "tabular" or self.mode == "sampled"):
            _bad("optimizer", self.optimizer, "'sgd' or 'adam' ('npg' is defined for param='tabular' in "
                 "flow/mean_field modes)")
        if self.backend == "torch" and self.mode != "sampled":
            _bad("backend", self.backend, f"'numba' for mode={self.mode!r} (its exact expectation has one "
                 "implementation, dynamics.py; the torch backend differentiates sampled batches only)")


def _bad(name, value, allowed):
    raise ValueError(f"{name} = {value!r} is invalid; allowed: {allowed}")


def _is_int(x) -> bool:
    return isinstance(x, (int, np.integer)) and not isinstance(x, (bool, np.bool_))


def _is_real(x) -> bool:
    return isinstance(x, (int, float, np.integer, np.floating)) and not isinstance(x, (bool, np.bool_)) \
        and math.isfinite(x)


def _choice(name, value, allowed):
    if not isinstance(value, str) or value not in allowed:
        _bad(name, value, ", ".join(allowed))


def _int(name, value, lo):
    if not (_is_int(value) and value >= lo):
        _bad(name, value, f"an int >= {lo}")


def _float(name, value, lo, hi, allowed):
    """Finite real strictly between lo and hi (None = unbounded)."""
    if not (_is_real(value) and value > lo and (hi is None or value < hi)):
        _bad(name, value, allowed)
