"""Translate an objective `Recipe` (data) into the integer/float codes the numba kernels read.

The codes come from the components' own declarations (`kernel_codes()` in collapse_lab.objective:
{slot name: value}); this module only places them in the slots of layout.py, translating kind names
through the kernels' vocabularies (layout.VOCABULARY) and a weight's key to its kernel code
(layout.WEIGHT_CODES). Adding a component is one class with its `kernel_codes` plus its kernel term
(slots in layout.py, arithmetic in recipe_kernel.py / terms.py); nothing here changes. A recipe is
still defined once, in collapse_lab.objective.registry.
"""

from __future__ import annotations

import numpy as np

from collapse_lab.objective import SUCCESS_THRESHOLD

from ..objective import Recipe
from . import layout as ly

__all__ = ["recipe_codes", "check_supported", "encode_component", "ADV_CODES", "AGG_CODES", "DIV_CODES"]

ADV_CODES, AGG_CODES, DIV_CODES, STD_CODES = ly.ADV_CODES, ly.AGG_CODES, ly.DIV_CODES, ly.STD_CODES
_IC = {name: i for i, name in enumerate(ly.IC_NAMES)}
_FP = {name: i for i, name in enumerate(ly.FP_NAMES)}


def check_supported(rec: Recipe, backend: str = "numba") -> None:
    """ValueError for recipe settings the numba kernels cannot represent (backend "numba"): a
    torch-only component (`Recipe.torch_only`: no `kernel_codes`, so no kernel term) is named in the
    error; the torch backend (sampled mode) differentiates `Recipe.loss` and runs any recipe."""
    if backend != "numba":
        return
    if rec.torch_only:
        raise ValueError(f"backend = 'numba' is invalid; allowed: 'torch' (sampled mode) for recipe "
                         f"{rec.name!r}: component(s) {', '.join(rec.torch_only)} are torch-only "
                         f"(no numba kernel term)")
    if len(rec.weights) > ly.MAX_WEIGHTS:
        raise ValueError(f"at most {ly.MAX_WEIGHTS} advantage weights are supported by the numba kernels, "
                         f"got {len(rec.weights)}")
    unknown = [w.key for w in rec.weights if w.key not in ly.WEIGHT_CODES]
    if unknown:
        raise ValueError(f"weight(s) {', '.join(unknown)} have no numba kernel code; allowed: "
                         f"{', '.join(ly.WEIGHT_CODES)} (layout.WEIGHT_CODES)")
    if len(rec.shapers) > 1:
        raise ValueError(f"at most one reward shaper is supported by the numba kernels, got "
                         f"{', '.join(s.key for s in rec.shapers)}")


def encode_component(comp, ic: np.ndarray, fp: np.ndarray) -> None:
    """Write comp.kernel_codes() into ic / fp (None leaves a slot at its default); ValueError names a
    slot or kind the kernels do not have."""
    for name, value in comp.kernel_codes().items():
        if value is None:
            continue
        if name in ly.VOCABULARY:
            vocab = ly.VOCABULARY[name]
            if value not in vocab:
                raise ValueError(f"{comp.key}: kernel slot {name} = {value!r} is invalid; allowed: "
                                 f"{', '.join(vocab)}")
            value = vocab[value]
        if name in _IC:
            ic[_IC[name]] = int(value)
        elif name in _FP:
            fp[_FP[name]] = float(value)
        else:
            raise ValueError(f"{comp.key}: kernel slot {name!r} is invalid; allowed: "
                             f"{', '.join(ly.IC_NAMES + ly.FP_NAMES)}")


def recipe_codes(rec: Recipe, max_len: int = 1) -> ly.RecipeCodes:
    """RecipeCodes(ic int64 [N_IC], fp float64 [N_FP]) for `recipe_grad` (unpacks as a pair): slot
    defaults, then every component's declaration, then the recipe's own flags and the weights' order."""
    check_supported(rec)
    ic = np.zeros(ly.N_IC, dtype=np.int64)
    fp = np.zeros(ly.N_FP, dtype=np.float64)
    for name, value in ly.IC_DEFAULTS.items():
        ic[_IC[name]] = value
    for comp in rec.components().values():
        encode_component(comp, ic, fp)
    ic[ly.NW] = len(rec.weights)
    for i, w in enumerate(rec.weights):
        ic[ly.W0 + i] = ly.WEIGHT_CODES[w.key]
    ic[ly.DYN], ic[ly.TMAX] = int(rec.dynamic_sampling), max_len
    fp[ly.THRESH] = SUCCESS_THRESHOLD  # the kernels read the threshold from here
    return ly.RecipeCodes(ic, fp)
