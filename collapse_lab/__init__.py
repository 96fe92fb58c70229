"""collapse-lab: simulation and theory of diversity collapse in RL with verifiable rewards.

Subpackages: `objective` (the one copy of the loss math), `metrics`, `sim` (numba bandit/tabular
simulator), `theory` (sympy predictions), `runs` (result cache). See README.md.
"""

__version__ = "0.1.0"
