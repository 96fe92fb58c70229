"""Translate an objective `Recipe` (data) into the integer/float codes the numba kernels read.

This is the only place that knows the kernel layout (kernels.py slot names); it reads the recipe's
components, so a recipe is still defined once, in collapse_lab.objective.recipes.
"""

from __future__ import annotations

import numpy as np

from collapse_lab.objective import SUCCESS_THRESHOLD

from ..objective import BBG, IPS, ISAC, Recipe, ZeroSuccess
from . import kernels as kn

__all__ = ["recipe_codes", "ADV_CODES", "AGG_CODES", "DIV_CODES", "check_supported"]

ADV_CODES = {"grpo": kn.A_GRPO, "dr_grpo": kn.A_DR, "rloo": kn.A_RLOO, "reinforce": kn.A_REINFORCE,
             "passk": kn.A_PASSK, "unlikeliness": kn.A_UNLIKELY}
STD_CODES = {"group": 0, "batch": 1, "none": 2}
AGG_CODES = {"token-mean": 0, "seq-mean-token-mean": 1, "seq-mean-token-sum": 2,
             "seq-mean-token-sum-norm": 3}
DIV_CODES = {"k1": kn.D_K1, "k2": kn.D_K2, "k3": kn.D_K3, "forward": kn.D_FORWARD, "js": kn.D_JS,
             "alpha": kn.D_ALPHA}
WEIGHT_CODES = {ISAC: kn.W_ISAC, ZeroSuccess: kn.W_ZERO, BBG: kn.W_BBG}


def check_supported(rec: Recipe, backend: str = "numba") -> None:
    """ValueError for recipe settings the numba kernels cannot represent (backend "numba"): a
    torch-only component (`Recipe.torch_only`: no `numba = True`, so no kernel term) is named in the
    error; the torch backend (sampled mode) differentiates `Recipe.loss` and runs any recipe."""
    if backend != "numba":
        return
    if rec.torch_only:
        raise ValueError(f"backend = 'numba' is invalid; allowed: 'torch' (sampled mode) for recipe "
                         f"{rec.name!r}: component(s) {', '.join(rec.torch_only)} are torch-only "
                         f"(no numba kernel term)")
    if isinstance(rec.advantage.baseline, (list, tuple, np.ndarray)):
        raise ValueError("recipe advantage.baseline must be a float in the simulator")
    if len(rec.weights) > 3:
        raise ValueError(f"at most 3 advantage weights are supported, got {len(rec.weights)}")
    if len([s for s in rec.shapers if isinstance(s, IPS)]) != len(rec.shapers):
        raise ValueError("only the IPS reward shaper is known to the simulator")


def recipe_codes(rec: Recipe, max_len: int = 1) -> kn.RecipeCodes:
    """RecipeCodes(ic int64 [N_IC], fp float64 [N_FP]) for `kernels.recipe_grad` (unpacks as a pair)."""
    check_supported(rec)
    ic = np.zeros(kn.N_IC, dtype=np.int64)
    fp = np.zeros(kn.N_FP, dtype=np.float64)
    a, pol = rec.advantage, rec.policy
    ic[kn.ADV], ic[kn.STD], ic[kn.DDOF], ic[kn.PASSK_K] = ADV_CODES[a.kind], STD_CODES[a.std], a.ddof, a.k
    fp[kn.EPS], fp[kn.BETA_RANK], fp[kn.BASELINE] = a.eps, a.beta_rank, float(a.baseline)
    ic[kn.AGG], ic[kn.TMAX], ic[kn.DYN] = AGG_CODES[pol.agg], max_len, int(rec.dynamic_sampling)
    fp[kn.CLIP_LO], fp[kn.CLIP_HI] = pol.clip_low, pol.clip_high
    if pol.dual_clip is not None:
        ic[kn.DUAL], fp[kn.DUAL_C] = 1, pol.dual_clip
    ips = [s for s in rec.shapers if isinstance(s, IPS)]
    if ips:
        ic[kn.IPS], fp[kn.IPS_EPS], fp[kn.IPS_ALPHA] = 1, ips[0].eps, ips[0].power
    ic[kn.KL] = -1 if rec.kl is None else DIV_CODES[rec.kl.kind]
    if rec.kl is not None:
        ic[kn.KL_IN_REWARD], fp[kn.KL_BETA] = int(rec.kl.in_reward), rec.kl.beta
    ic[kn.DPH] = -1 if rec.dph is None or rec.dph.eta <= 0 else DIV_CODES[rec.dph.kind]
    if rec.dph is not None:
        fp[kn.DPH_ETA], fp[kn.DPH_ALPHA] = rec.dph.eta, rec.dph.order
    ic[kn.NW] = len(rec.weights)
    for i, w in enumerate(rec.weights):
        ic[kn.W0 + i] = WEIGHT_CODES[type(w)]
        if isinstance(w, ISAC):
            fp[kn.ISAC_ALPHA], ic[kn.ISAC_NORM] = w.exponent, int(w.normalize)
        elif isinstance(w, ZeroSuccess):
            ic[kn.ZS_COUNTS], ic[kn.ZS_MAX] = int(w.counts == "history"), w.max_success
        else:
            ic[kn.BBG_COUNTS], ic[kn.BBG_KREF] = int(w.counts == "history"), w.k_ref
            fp[kn.BBG_TAU], fp[kn.BBG_LAMBDA] = w.tau, w.lambda_neg
    ic[kn.OFF_POLICY] = int(rec.memory is not None)
    ic[kn.ENT] = int(rec.needs_entropy)
    fp[kn.ENT_COEF] = rec.entropy.coef if rec.entropy is not None else 0.0
    fp[kn.THRESH] = SUCCESS_THRESHOLD  # the kernels read the threshold from here
    return kn.RecipeCodes(ic, fp)
