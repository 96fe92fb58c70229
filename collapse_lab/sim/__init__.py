"""Bandit/tabular simulator of RLVR dynamics (docs/README.md: sim/), driven by collapse_lab.objective.

    from collapse_lab.sim import SimConfig, simulate, multimode
    traj = simulate(multimode(64, 32), SimConfig(recipe="ips_grpo", steps=200), seed=0)

Grids of configs x seeds: `sweep(problem, {"lr": [0.1, 1.0]}, seeds=range(4))` -> pandas DataFrame
(sweeps.py: cached per run, executors inline / process / ray).

Modes: sampled / mean_field / flow. Backends: numba (kernels.py) / torch (reference.py, autograd
through the objective: the ground truth). Parametrisations: tabular / linear / both.
"""

from .config import BACKENDS, DEFAULT_KS, MODES, OPTIMIZERS, PARAMS, SimConfig
from .dynamics import flow_grad, mean_field_grad
from .problems import Problem, answer_features, answer_pair, bandit, coupled, multimode, shared_answers
from .simulate import build_recipe, simulate
from .sweeps import EXECUTORS, SweepError, expand_grid, sweep
from .trajectory import Trajectory

__all__ = ["Problem", "SimConfig", "Trajectory", "simulate", "bandit", "multimode", "coupled",
           "shared_answers", "answer_pair", "answer_features",
           "build_recipe", "flow_grad", "mean_field_grad", "MODES", "BACKENDS", "OPTIMIZERS",
           "PARAMS", "DEFAULT_KS", "sweep", "expand_grid", "SweepError", "EXECUTORS"]
