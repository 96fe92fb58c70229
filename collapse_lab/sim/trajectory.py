"""Trajectory (the result of `simulate`) and the Logger that fills it every `log_every` steps.

Per replicate r and logged step l (L logged steps, step 0 included):
    pass_at_k [R, L, nk]   mean over prompts of 1 - (1 - P_x)^k  (metrics.pass_at_k_exact)
    correct_mass [R, L, P] P_x = sum of pi over correct outcomes (clipped to [0, 1])
    entropy [R, L]         mean over prompts of H(pi_x) (nats; metrics.correct_entropy, no mask)
    coverage [R, L]        mean over prompts with correct outcomes of the share with pi > threshold
                           (metrics.coverage)
    effective_modes [R, L] mean over those prompts of exp(H(correct distribution))
                           (metrics.effective_modes)
    kl [R, L]              mean over prompts of KL(pi_x || base_x) (objective.categorical_divergence)
    zero_var_frac [R, L]   share of trained groups whose rewards were all equal in the update that
                           produced this step (expected value in mean_field; NaN at step 0)
    saturated_share [R, L] share of sum |dL/dz| spent on prompts whose exact pass@saturation_k
                           exceeded `saturation` before the update (NaN at step 0)
    log_ratios [R, L, n]   z_i - z_j = log(pi_i/pi_j) for each tracked (prompt, i, j)
    probs [R, L, P, K]     optional snapshots

The numbers are computed by numba (metric_kernels.py: a second implementation of those functions,
pinned to them to 1e-12 by tests/sim/test_logging.py), mostly inside the simulator's kernel.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from . import metric_kernels as mk
from .kernels import LogStats
from .problems import softmax_np

__all__ = ["Trajectory", "Logger"]


@dataclass
class Trajectory:
    """Logged metrics of one simulate() call (module docstring for shapes) plus its config."""

    config: dict
    steps: np.ndarray
    ks: np.ndarray
    pass_at_k: np.ndarray
    correct_mass: np.ndarray
    entropy: np.ndarray
    coverage: np.ndarray
    effective_modes: np.ndarray
    kl: np.ndarray
    zero_var_frac: np.ndarray
    saturated_share: np.ndarray
    log_ratios: np.ndarray
    final_logits: np.ndarray
    probs: np.ndarray | None = None
    info: dict = field(default_factory=dict)

    def to_dict(self) -> dict:
        """JSON-ready dict (arrays as nested lists)."""
        out = {}
        for k, v in self.__dict__.items():
            out[k] = v.tolist() if isinstance(v, np.ndarray) else v
        return out

    def final_probs(self) -> np.ndarray:
        """[R, P, K] probabilities after the last step."""
        return softmax_np(self.final_logits)


class Logger:
    """Fills the metrics of the module docstring at each logged step (numba: metric_kernels).

    Protocol (simulate.py): `measure(z, step)` computes the per-prompt statistics of logits z, or the
    kernel computes them from the softmax it holds (then `mark_measured(step)`); `open_row` starts
    the row of a logged step (tracked log-ratios, snapshot, update statistics) and `close_row`
    completes it from the statistics once they describe that step's logits. With the fused kernel
    the row of step t is completed during step t + 1, whose kernel softmaxes exactly those logits.
    """

    def __init__(self, problem, cfg, R, base_lp):
        P, _ = problem.rewards.shape
        self.problem, self.cfg, self.R = problem, cfg, R
        self.corr_idx, self.base_lp = mk.correct_index(problem.correct), base_lp  # (P, C), (P, K)
        self.m_star = mk.saturation_mass(float(cfg.saturation_k), float(cfg.saturation))
        self.has_correct = problem.correct.any(1)  # (P,)
        self.ks = np.asarray(cfg.ks, float)
        self.stats = np.zeros((R, P, mk.N_STATS))  # per-prompt statistics of the logits at `measured`
        self.measured = -1
        self.pending: dict | None = None
        self.rows: list[dict] = []

    def measure(self, z: np.ndarray, step: int) -> None:
        """Standalone statistics pass over logits z [R, P, K] (the logits after `step` updates)."""
        mk.prompt_stats(z, self.corr_idx, self.base_lp, float(self.cfg.coverage_threshold), self.stats)
        self.measured = step

    def mark_measured(self, step: int) -> None:
        """The kernel just wrote the statistics of the logits after `step` updates."""
        self.measured = step

    def kernel_stats(self, on: bool):
        """The kernel's `log` argument group (kernels.LogStats)."""
        return LogStats(on, float(self.cfg.coverage_threshold), self.stats)

    def saturated(self, gz: np.ndarray | None) -> np.ndarray:
        """Share of sum |dL/dz| [R] on prompts whose pass@saturation_k, measured on the logits before
        the update (self.stats), exceeds cfg.saturation. gz [R, P, K]; None: the kernel already wrote
        the per-prompt |dL/dz|_1 into the statistics."""
        if gz is not None:
            mk.grad_l1_rows(np.ascontiguousarray(gz), self.stats)
        out = np.empty(self.R)
        mk.saturated_share(self.stats, self.m_star, out)
        return out

    def open_row(self, step: int, z: np.ndarray, zero_var, saturated) -> None:
        """Start the row of logged step `step` (z: its logits); statistics come at close_row."""
        cfg, nan = self.cfg, np.full(self.R, np.nan)
        self.pending = {
            "step": step,
            "log_ratios": np.stack([z[:, p, i] - z[:, p, j] for p, i, j in cfg.track], -1)
            if cfg.track else np.zeros((self.R, 0)),
            "zero_var_frac": nan if zero_var is None else np.broadcast_to(zero_var, (self.R,)).astype(float),
            "saturated_share": nan if saturated is None else saturated}
        if cfg.snapshots:
            self.pending["probs"] = softmax_np(z)

    def close_row(self) -> None:
        """Complete the pending row (if any) from the statistics of its step."""
        row = self.pending
        if row is None:
            return
        if self.measured != row["step"]:
            raise RuntimeError(f"Logger: statistics describe step {self.measured}, row is step {row['step']}")
        R, P = self.stats.shape[:2]
        pass_at_k, means, mass = np.empty((R, len(self.ks))), np.empty((R, 4)), np.empty((R, P))
        if not mk.reduce_stats(self.stats, self.has_correct, self.ks, pass_at_k, means, mass):
            cfg = self.cfg
            raise FloatingPointError(f"simulate: non-finite logits at step {row['step']} (recipe {cfg.recipe!r}, "
                                     f"lr={cfg.lr}, optimizer={cfg.optimizer!r}); lower lr")
        row.update(pass_at_k=pass_at_k, correct_mass=mass, entropy=means[:, 0], kl=means[:, 1],
                   coverage=means[:, 2], effective_modes=means[:, 3])
        self.rows.append(row)
        self.pending = None

    def trajectory(self, params, z, **info) -> Trajectory:
        stack = lambda k: np.stack([r[k] for r in self.rows], 1)  # noqa: E731  (R, L, ...)
        return Trajectory(
            config=self.cfg.to_dict(), steps=np.array([r["step"] for r in self.rows]),
            ks=np.asarray(self.cfg.ks), pass_at_k=stack("pass_at_k"), correct_mass=stack("correct_mass"),
            entropy=stack("entropy"), coverage=stack("coverage"), effective_modes=stack("effective_modes"),
            kl=stack("kl"), zero_var_frac=stack("zero_var_frac"), saturated_share=stack("saturated_share"),
            log_ratios=stack("log_ratios"), final_logits=z.copy(),
            probs=stack("probs") if self.cfg.snapshots else None,
            info=dict(info, problem=self.problem.name, problem_meta=self.problem.meta))
