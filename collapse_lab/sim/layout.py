"""The numba kernels' data layout: recipe code slots, the kernel vocabularies, and the argument groups.

A recipe reaches the kernels as two flat arrays, `ic` (int64 [N_IC]) and `fp` (float64 [N_FP]),
indexed by the slot constants below; spec.py fills them from the components' own declarations
(`kernel_codes()` in collapse_lab.objective). Slot names are the strings those declarations use,
so IC_NAMES / FP_NAMES must list the constants in index order (checked at import).

The kernels take their arrays in named groups (namedtuples: named fields, no runtime cost). Numba
0.68 loses writes made through a namedtuple's fields in a prange body (also by a function inlined
there at IR level), not inside a called function: recipe_kernel.py's parallel loops call group loops
(LLVM-inlined) that pass whole groups to the phases.
"""

from __future__ import annotations

from collections import namedtuple

import numpy as np

from .metric_kernels import N_STATS

# integer code slots (ic) ------------------------------------------------------------------------
IC_NAMES = ("ADV", "STD", "DDOF", "PASSK_K", "AGG", "DYN", "IPS", "KL", "KL_IN_REWARD", "DPH", "NW", "W0",
            "W1", "W2", "ZS_COUNTS", "ZS_MAX", "BBG_COUNTS", "BBG_KREF", "ISAC_NORM", "OFF_POLICY", "TMAX",
            "DUAL", "ENT")
ADV, STD, DDOF, PASSK_K, AGG, DYN, IPS, KL, KL_IN_REWARD, DPH, NW, W0, W1, W2 = range(14)
ZS_COUNTS, ZS_MAX, BBG_COUNTS, BBG_KREF, ISAC_NORM, OFF_POLICY, TMAX, DUAL, ENT = range(14, 23)
N_IC = len(IC_NAMES)
IC_DEFAULTS = {"KL": -1, "DPH": -1}  # "no such term"; every other slot defaults to 0
# float slots (fp)
FP_NAMES = ("EPS", "BETA_RANK", "BASELINE", "CLIP_LO", "CLIP_HI", "DUAL_C", "IPS_EPS", "IPS_POWER",
            "KL_BETA", "DPH_ETA", "DPH_ORDER", "ISAC_EXPONENT", "BBG_TAU", "BBG_LAMBDA", "ENT_COEF", "THRESH")
EPS, BETA_RANK, BASELINE, CLIP_LO, CLIP_HI, DUAL_C, IPS_EPS, IPS_POWER, KL_BETA, DPH_ETA, \
    DPH_ORDER, ISAC_EXPONENT, BBG_TAU, BBG_LAMBDA, ENT_COEF, THRESH = range(16)
N_FP = len(FP_NAMES)
MAX_WEIGHTS = 3  # slots W0..W2
assert all(globals()[n] == i for names in (IC_NAMES, FP_NAMES) for i, n in enumerate(names))

# the kernel vocabularies: which kinds the kernels implement, and their codes ---------------------
A_GRPO, A_DR, A_RLOO, A_REINFORCE, A_PASSK, A_UNLIKELY = range(6)
W_ISAC, W_ZERO, W_BBG = 1, 2, 3
D_K1, D_K2, D_K3, D_FORWARD, D_JS, D_ALPHA = range(6)
ADV_CODES = {"grpo": A_GRPO, "dr_grpo": A_DR, "rloo": A_RLOO, "reinforce": A_REINFORCE, "passk": A_PASSK,
             "unlikeliness": A_UNLIKELY}
STD_CODES = {"group": 0, "batch": 1, "none": 2}
AGG_CODES = {"token-mean": 0, "seq-mean-token-mean": 1, "seq-mean-token-sum": 2, "seq-mean-token-sum-norm": 3}
DIV_CODES = {"k1": D_K1, "k2": D_K2, "k3": D_K3, "forward": D_FORWARD, "js": D_JS, "alpha": D_ALPHA}
WEIGHT_CODES = {"isac": W_ISAC, "zero_success": W_ZERO, "bbg": W_BBG}  # by component key
VOCABULARY = {"ADV": ADV_CODES, "STD": STD_CODES, "AGG": AGG_CODES, "KL": DIV_CODES, "DPH": DIV_CODES}
"""Slots whose declared value is a name, translated to the kernel's code here."""

# argument groups of recipe_grad ------------------------------------------------------------------
Logits = namedtuple("Logits", ["z", "qz"])
"""z [R, P, K] policy logits (stepped in place when the SGD step is fused), qz [R, P, K] sampling logits."""
Draws = namedtuple("Draws", ["u", "y"])
"""u [R, Pt, G] uniforms (size 0: y is given), y [R, Pt, G] sampled outcomes."""
Task = namedtuple("Task", ["tp", "rewards", "ref_lp", "corr_idx"])
"""tp [Pt] trained prompts, rewards [P, K], ref_lp [P, K] log base probs, corr_idx [P, C] correct
outcomes per prompt, -1 padded (metric_kernels.correct_index)."""
History = namedtuple("History", ["prior_s", "prior_n", "pef", "ref_y"])
"""prior_s, prior_n [R, P] history counts, pef [R, P] uint8 DPH D_pef flag, ref_y [R, P, NR] stored
reference outcomes (-1 = none)."""
RecipeCodes = namedtuple("RecipeCodes", ["ic", "fp"])
"""ic int64 [N_IC], fp float64 [N_FP] (spec.recipe_codes)."""
Out = namedtuple("Out", ["g", "coef", "n_succ", "varied"])
"""g [R, P, K] dL/dz (rows off tp are not written: zero them once), coef [R, Pt, G] dL/dlogp_b of the
policy and KL terms, n_succ [R, Pt] raw successes per group, varied [R, Pt] group rewards not all equal."""
LogStats = namedtuple("LogStats", ["on", "threshold", "stats"])
"""on: compute the logged statistics of each trained prompt's pre-update softmax into stats [R, P, N_STATS]."""
Scratch = namedtuple("Scratch", ["xs", "old", "lp", "pi", "norm", "cum"])
"""xs [R, Pt, G] pre-advantage rewards (shaped, unlikeliness-scaled), old [R, Pt, G] behaviour log-probs
of the samples, lp / pi [R, Pt, K] policy log-probs / probs, norm [R, 4] per-replicate normalisers
(NORM_* below), cum [R, Pt, K] CDF scratch."""
NORM_DEN, NORM_DEN_REF, NORM_BATCH_STD, NORM_ISAC_MEAN = range(4)


def scratch(R, Pt, G, K) -> Scratch:
    """Fresh scratch buffers of recipe_grad (allocate once per run and reuse: no page faults per step)."""
    return Scratch(np.empty((R, Pt, G)), np.empty((R, Pt, G)), np.empty((R, Pt, K)), np.empty((R, Pt, K)),
                   np.empty((R, 4)), np.empty((R, Pt, K)))


def out_buffers(R, P, Pt, G, K) -> Out:
    """Fresh Out buffers (g zeroed: rows of untrained prompts stay 0)."""
    return Out(np.zeros((R, P, K)), np.empty((R, Pt, G)), np.empty((R, Pt)), np.empty((R, Pt), np.bool_))


def no_history(R, P) -> History:
    """History of a run without counts or DPH reference samples (zeros, -1)."""
    return History(np.zeros((R, P)), np.zeros((R, P)), np.zeros((R, P), np.uint8), -np.ones((R, P, 1), np.int64))


def given_draws(y) -> Draws:
    """Draws whose outcomes y [R, Pt, G] are given (the kernel does not sample)."""
    return Draws(np.empty((0, 0, 0)), np.ascontiguousarray(y))


def no_log_stats(R=0, P=0) -> LogStats:
    """LogStats switched off (a [R, P, N_STATS] buffer that recipe_grad does not touch)."""
    return LogStats(False, 0.0, np.empty((R, P, N_STATS)))
