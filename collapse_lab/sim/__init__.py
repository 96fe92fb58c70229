"""Bandit/tabular simulator of RLVR dynamics (ARCHITECTURE.md: sim/), driven by collapse_lab.objective.

    from collapse_lab.sim import SimConfig, simulate, multimode
    traj = simulate(multimode(64, 32), SimConfig(recipe="ips_grpo", steps=200), seed=0)

Modes: sampled / mean_field / flow. Backends: numba (kernels.py) / torch (reference.py, autograd
through the objective: the ground truth). Parametrisations: tabular / linear / both.
"""

from .config import BACKENDS, DEFAULT_KS, MODES, OPTIMIZERS, PARAMS, SimConfig
from .dynamics import flow_grad, mean_field_grad
from .problems import Problem, bandit, coupled, multimode
from .simulate import build_recipe, simulate
from .trajectory import Trajectory

__all__ = ["Problem", "SimConfig", "Trajectory", "simulate", "bandit", "multimode", "coupled",
           "build_recipe", "flow_grad", "mean_field_grad", "MODES", "BACKENDS", "OPTIMIZERS",
           "PARAMS", "DEFAULT_KS"]
