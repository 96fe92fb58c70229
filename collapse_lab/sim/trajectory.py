"""Trajectory (the result of `simulate`) and the Logger that fills it every `log_every` steps.

Per replicate r and logged step l (L logged steps, step 0 included):
    pass_at_k [R, L, nk]   mean over prompts of 1 - (1 - P_x)^k  (metrics.pass_at_k_exact)
    correct_mass [R, L, P] P_x = sum of pi over correct outcomes
    entropy [R, L]         mean over prompts of H(pi_x) (nats)
    coverage [R, L]        mean over prompts with correct outcomes of the share with pi > threshold
    effective_modes [R, L] mean over those prompts of exp(H(correct distribution))
    kl [R, L]              mean over prompts of KL(pi_x || base_x) (objective.categorical_divergence)
    zero_var_frac [R, L]   share of trained groups whose rewards were all equal in the update that
                           produced this step (expected value in mean_field; NaN at step 0)
    saturated_share [R, L] share of sum |dL/dz| spent on prompts whose exact pass@saturation_k
                           exceeded `saturation` before the update (NaN at step 0)
    log_ratios [R, L, n]   z_i - z_j = log(pi_i/pi_j) for each tracked (prompt, i, j)
    probs [R, L, P, K]     optional snapshots
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import torch

from .. import metrics
from ..objective import categorical_divergence
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
    """Accumulates the metrics of the module docstring at each logged step."""

    def __init__(self, problem, cfg, R):
        self.problem, self.cfg, self.R = problem, cfg, R
        self.rows: list[dict] = []
        self.has_correct = problem.correct.any(1)
        self.base = torch.from_numpy(problem.logits)

    def record(self, step: int, z: np.ndarray, stats: dict | None) -> None:
        cfg, pr = self.cfg, self.problem
        pi = softmax_np(z)  # (R, P, K)
        mass = np.clip((pi * pr.correct).sum(-1), 0.0, 1.0)  # (R, P)
        ks = np.asarray(cfg.ks, float)
        row = {"step": step, "correct_mass": mass,
               "pass_at_k": metrics.pass_at_k_exact(mass[..., None], ks).mean(1),
               "entropy": metrics.correct_entropy(pi).mean(1),  # no mask: H(pi) over all outcomes
               "coverage": self._over_correct(metrics.coverage(pi, pr.correct, cfg.coverage_threshold)),
               "effective_modes": self._over_correct(metrics.effective_modes(pi, pr.correct)),
               "kl": categorical_divergence(torch.from_numpy(z), self.base.expand(z.shape),
                                            "reverse_kl").numpy().mean(1),
               "log_ratios": np.stack([z[:, p, i] - z[:, p, j] for p, i, j in cfg.track], -1)
               if cfg.track else np.zeros((self.R, 0))}
        nan = np.full(self.R, np.nan)
        row["zero_var_frac"] = nan if stats is None else np.broadcast_to(stats["zero_var"], (self.R,))
        row["saturated_share"] = nan if stats is None else self._saturated(stats["gz"], stats["pre_mass"])
        if cfg.snapshots:
            row["probs"] = pi
        self.rows.append(row)

    def _over_correct(self, x):
        return x[:, self.has_correct].mean(1) if self.has_correct.any() else np.zeros(x.shape[0])

    def _saturated(self, gz, prev):
        """Share of sum |dL/dz| on prompts whose pass@saturation_k before the step > cfg.saturation."""
        mag = np.abs(gz).sum(-1)  # (R, P)
        tot = mag.sum(1)
        saturated = metrics.pass_at_k_exact(prev, self.cfg.saturation_k) > self.cfg.saturation
        sat = (mag * saturated).sum(1)
        return np.divide(sat, tot, out=np.zeros_like(tot), where=tot > 0)

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
