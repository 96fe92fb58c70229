"""Parametrisations and optimisers, shared by both backends.

    tabular  z = z0 + theta                 theta [R, P, K]
    linear   z = z0 + phi . w               w [R, D], phi [P, K, D] (docs/theory.md item 12)
    both     z = z0 + theta + phi . w

Gradients arrive either as logit gradients g_z (numba backend; chain rule here) or directly per
parameter (torch backend, autograd). Optimisers: sgd, adam (torch.optim.Adam's update), npg
(tabular natural gradient dz = g_z / pi, docs/theory.md item 2: for PG it gives dz_i = eta a_i).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from . import kernels as kn

__all__ = ["Params"]


@dataclass
class Params:
    """Parameters of R replicates and their optimiser state."""

    z0: np.ndarray  # [P, K]
    phi: np.ndarray | None  # [P, K, D]
    theta: np.ndarray | None  # [R, P, K]
    w: np.ndarray | None  # [R, D]
    optimizer: str = "sgd"
    lr: float = 0.1
    betas: tuple = (0.9, 0.999)
    eps: float = 1e-8
    t: int = 0

    @classmethod
    def init(cls, problem, cfg, replicates: int) -> Params:
        P, K = problem.rewards.shape
        theta = np.zeros((replicates, P, K)) if cfg.param in ("tabular", "both") else None
        w = np.zeros((replicates, problem.features.shape[2])) if cfg.param in ("linear", "both") else None
        p = cls(problem.logits, problem.features if w is not None else None, theta, w,
                cfg.optimizer, float(cfg.lr), tuple(cfg.adam_betas), float(cfg.adam_eps))
        p._state = {name: (np.zeros(a.size), np.zeros(a.size)) for name, a in p.arrays().items()}
        return p

    def arrays(self) -> dict[str, np.ndarray]:
        return {k: v for k, v in (("theta", self.theta), ("w", self.w)) if v is not None}

    def logits(self) -> np.ndarray:
        """z [R, P, K] = z0 + theta + phi . w."""
        R = (self.theta if self.theta is not None else self.w).shape[0]
        z = np.broadcast_to(self.z0, (R,) + self.z0.shape).copy()
        if self.theta is not None:
            z += self.theta
        if self.w is not None:
            kn.features_logits(self.phi, self.w, z)
        return z

    def grads_from_logits(self, gz: np.ndarray) -> dict[str, np.ndarray]:
        """Chain rule: dL/dtheta = g_z; dL/dw_d = sum_{p,k} phi[p,k,d] g_z[p,k]."""
        out = {}
        if self.theta is not None:
            out["theta"] = gz
        if self.w is not None:
            gw = np.empty_like(self.w)
            kn.features_grad(self.phi, np.ascontiguousarray(gz), gw)
            out["w"] = gw
        return out

    def step(self, grads: dict[str, np.ndarray], pi: np.ndarray | None = None) -> None:
        """One optimiser update x <- x - lr * direction(grad)."""
        self.t += 1
        for name, x in self.arrays().items():
            gr = grads[name]
            if self.optimizer == "sgd":
                x -= self.lr * gr
            elif self.optimizer == "npg":
                x -= self.lr * gr / pi
            else:
                m, v = self._state[name]
                flat = x.reshape(-1)
                kn.adam_update(flat, np.ascontiguousarray(gr).reshape(-1), m, v, self.lr,
                               self.betas[0], self.betas[1], self.eps, self.t)
