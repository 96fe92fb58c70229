"""RunState: the typed per-run state of one simulation outside the parameters (params.py).

    tp       [Pt]          trained prompts (sorted, distinct)
    ref_lp   [P, K]        log base probabilities (the reference policy of KL / DPH terms)
    corr_idx [P, C]        correct outcomes of each prompt, -1 padded (the logged statistics)
    prior_s  [R, P]        successes seen so far per prompt (history counts of ZeroSuccess / BBG)
    prior_n  [R, P]        samples seen so far per prompt
    pef      [R, P] bool   DPH: prompt solved n_pre / n_pre times by the base policy (D_pef)
    ref_y    [R, P, NR]    DPH: stored base-policy outcomes of the D_pef prompts (-1 = none)
    zmem     [R, P, K]     memory recipe: logits of the memory policy (None otherwise)
    codes    RecipeCodes   the recipe as kernel codes (spec.recipe_codes; None on the torch backend)
    lr_fused float         > 0: tabular SGD taken inside the kernel (sampled, numba, tabular, sgd)
    qz       [R, P, K]     sampling logits of the current step (z - mu zmem for the memory recipe)

The numba kernel reads it through the named argument groups of layout.py (`task`, `history`);
the torch backend (reference.py) reads the same fields.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from collapse_lab.objective import successes

from . import kernels as kn
from .metric_kernels import correct_index
from .reference import sample_numpy
from .spec import recipe_codes

__all__ = ["RunState"]


@dataclass
class RunState:
    """Per-run state outside the parameters (module docstring for fields and shapes)."""

    tp: np.ndarray
    ref_lp: np.ndarray
    corr_idx: np.ndarray
    prior_s: np.ndarray
    prior_n: np.ndarray
    pef: np.ndarray
    ref_y: np.ndarray
    zmem: np.ndarray | None
    codes: kn.RecipeCodes | None
    lr_fused: float
    fused_stats: bool
    """The kernel computes the logged statistics of the logits it holds (metric_kernels)."""
    qz: np.ndarray | None = None
    out: kn.Out | None = None
    scratch: kn.Scratch | None = None
    y: np.ndarray | None = None

    @classmethod
    def init(cls, problem, rec, cfg, rng, R: int, tp: np.ndarray) -> RunState:
        """Fresh state; DPH draws its pre-training base samples u_pre [R, Pt, n_pre] from rng here."""
        P, K = problem.rewards.shape
        sampled_numba = (cfg.mode, cfg.backend) == ("sampled", "numba")
        fused = sampled_numba and (cfg.param, cfg.optimizer) == ("tabular", "sgd")
        st = cls(tp=tp, ref_lp=np.log(problem.base_probs()), corr_idx=correct_index(problem.correct),
                 prior_s=np.zeros((R, P)), prior_n=np.zeros((R, P)), pef=np.zeros((R, P), bool),
                 ref_y=-np.ones((R, P, 1), np.int64),
                 zmem=np.zeros((R, P, K)) if rec.memory is not None else None,
                 codes=recipe_codes(rec) if cfg.backend == "numba" else None, lr_fused=float(cfg.lr) if fused else 0.0,
                 # untrained prompts keep their logits only when parameters are not shared
                 fused_stats=sampled_numba and (cfg.param == "tabular" or len(tp) == P))
        if rec.dph is not None and cfg.mode == "sampled":
            st._dph_split(problem, rec, rng, R)
        return st

    def _dph_split(self, problem, rec, rng, R):
        """D_pef: prompts solved by all n_pre base samples; keep their first n_ref samples."""
        tp, P = self.tp, problem.rewards.shape[0]
        u = rng.random((R, len(tp), rec.dph.n_pre))  # drawn once, before any training uniforms
        z0 = np.broadcast_to(problem.logits, (R,) + problem.logits.shape)
        y = sample_numpy(np.ascontiguousarray(z0), tp, u)  # (R, Pt, n_pre)
        solved = successes(problem.rewards[tp[None, :, None], y])
        self.pef[:, tp] = solved.all(-1)
        n_ref = min(rec.dph.n_ref, rec.dph.n_pre)
        self.ref_y = -np.ones((R, P, n_ref), np.int64)
        self.ref_y[:, tp] = np.where(self.pef[:, tp, None], y[:, :, :n_ref], -1)

    def task(self, problem) -> kn.Task:
        """The kernel's `task` argument group."""
        return kn.Task(self.tp, problem.rewards, self.ref_lp, self.corr_idx)

    def history(self) -> kn.History:
        """The kernel's `hist` argument group (views: the kernel sees later count updates)."""
        return kn.History(self.prior_s, self.prior_n, self.pef.view(np.uint8), self.ref_y)

    def buffers(self, shape, G: int) -> tuple[np.ndarray, kn.Out, kn.Scratch]:
        """(y [R, Pt, G], Out, Scratch) reused by every numba step (allocated once: no page faults)."""
        if self.out is None:
            R, P, K = shape
            n = len(self.tp)
            self.y = np.empty((R, n, G), np.int64)
            self.out = kn.out_buffers(R, P, n, G, K)
            self.scratch = kn.scratch(R, n, G, K)
        return self.y, self.out, self.scratch
