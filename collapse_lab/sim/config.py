"""SimConfig: the typed, documented configuration of one simulation (saved with every Trajectory)."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field

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
    """'numba' (closed-form kernels) or 'torch' (autograd through the objective: ground truth)."""
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
    dz = g / pi, THEORY.md item 2). In flow/mean_field modes the optimiser is applied to the exact
    expected gradient (so mean_field + adam is Adam on E[g], not E[Adam update])."""
    adam_betas: tuple = (0.9, 0.999)
    """Adam (beta1, beta2)."""
    adam_eps: float = 1e-8
    """Adam epsilon."""
    param: str = "tabular"
    """'tabular' z = z0 + theta; 'linear' z = z0 + phi . w; 'both' z = z0 + theta + phi . w."""
    train_prompts: tuple | None = None
    """Indices of the prompts that are sampled and trained (None = all); others only evolve through
    shared parameters (THEORY.md item 12)."""
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
        """Raise ValueError naming the first bad field and the allowed values."""
        _choice("mode", self.mode, MODES)
        _choice("backend", self.backend, BACKENDS)
        _choice("optimizer", self.optimizer, OPTIMIZERS)
        _choice("param", self.param, PARAMS)
        _positive_int("steps", self.steps, 0)
        _positive_int("replicates", self.replicates, 1)
        _positive_int("log_every", self.log_every, 1)
        _positive_int("group_size", self.group_size, 1)
        _positive_int("saturation_k", self.saturation_k, 1)
        if not (isinstance(self.lr, (int, float)) and 0 < self.lr < float("inf")):
            raise ValueError(f"lr must be a positive finite number, got {self.lr!r}")
        if not (0 < self.coverage_threshold < 1):
            raise ValueError(f"coverage_threshold must be in (0, 1), got {self.coverage_threshold}")
        if not (0 < self.saturation < 1):
            raise ValueError(f"saturation must be in (0, 1), got {self.saturation}")
        if not self.ks or any(not isinstance(k, int) or k < 1 for k in self.ks):
            raise ValueError(f"ks must be a non-empty list of integers >= 1, got {self.ks!r}")
        if self.param != "tabular" and problem.features is None:
            raise ValueError(f"param={self.param!r} needs problem.features; use param='tabular'")
        if self.optimizer == "npg" and (self.param != "tabular" or self.mode == "sampled"):
            raise ValueError("optimizer='npg' is defined for param='tabular' in flow/mean_field modes")
        p, k = problem.rewards.shape
        for t in self.track:
            if len(t) != 3 or not (0 <= t[0] < p and 0 <= t[1] < k and 0 <= t[2] < k):
                raise ValueError(f"track entries must be (prompt, i, j) within P={p}, K={k}; got {t!r}")
        if self.train_prompts is not None and (
                len(self.train_prompts) == 0 or any(not 0 <= x < p for x in self.train_prompts)):
            raise ValueError(f"train_prompts must be non-empty indices in [0, {p}), got {self.train_prompts!r}")


def _choice(name, value, allowed):
    if value not in allowed:
        raise ValueError(f"{name} must be one of {', '.join(allowed)}; got {value!r}")


def _positive_int(name, value, lo):
    if not isinstance(value, int) or isinstance(value, bool) or value < lo:
        raise ValueError(f"{name} must be an integer >= {lo}, got {value!r}")
