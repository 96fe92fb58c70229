"""The simulator's numba kernels, one import for their callers (the only numba code of the simulator
besides metric_kernels.py):

    layout.py         recipe code slots (ic / fp), kernel vocabularies, named argument groups
    recipe_kernel.py  `recipe_grad`: closed-form dL/dz of `Recipe.loss`, in named phases
    terms.py          scalar / per-group math re-expressing collapse_lab.objective
    row_kernels.py    softmax rows, inverse-CDF sampling, memory / feature / Adam updates

Raw arrays in, `out=` buffers filled; every kernel is a deterministic function of its inputs
(uniforms are drawn in simulate.py), so results do not depend on the thread count.
"""

from __future__ import annotations

from .layout import *  # noqa: F401,F403  (slot constants, vocabularies, argument groups)
from .layout import Draws, History, Logits, LogStats, Out, RecipeCodes, Scratch, Task  # noqa: F401
from .metric_kernels import GRAD_L1, N_STATS, grad_l1, row_stats, softmax_row  # noqa: F401
from .recipe_kernel import KL_ALPHA, recipe_grad  # noqa: F401
from .row_kernels import (  # noqa: F401
    adam_update,
    draw_row,
    features_grad,
    features_logits,
    log_softmax_row,
    memory_update,
    sample_outcomes,
    softmax_probs,
)
from .terms import apply_weight, bbg_weight, div_term_grad, group_advantage, group_stats, log_comb, pg_grad  # noqa: F401
