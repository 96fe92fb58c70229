"""The kernel encoding of components (sim/spec.py): derived from each component's own `kernel_codes()`
declaration; every registered component is encoded or declared torch-only, and torch-only ones are
refused by the numba backend and skipped, with a reason, by the parity test."""

import inspect
from dataclasses import dataclass
from typing import ClassVar

import numpy as np
import pytest

from collapse_lab.objective import ISAC, Recipe, components, regularisers
from collapse_lab.objective import recipe as make_recipe
from collapse_lab.sim import layout as ly
from collapse_lab.sim.spec import encode_component, recipe_codes

REGISTERED = [c for mod in (components, regularisers) for _, c in inspect.getmembers(mod, inspect.isclass)
              if c.__module__ == mod.__name__ and hasattr(c, "stage")]


def test_registered_components_are_listed():
    keys = {c.key for c in REGISTERED}
    assert keys == {"advantage", "policy", "ips", "isac", "zero_success", "bbg", "kl", "dph", "entropy", "memory"}


@pytest.mark.parametrize("cls", REGISTERED, ids=lambda c: c.key)
def test_every_component_is_encoded_or_torch_only(cls):
    comp = cls()
    if getattr(comp, "torch_only", False):  # declared torch-only: refused by the numba backend (test below)
        return
    assert callable(getattr(comp, "kernel_codes", None)), f"{cls.__name__}: neither kernel_codes nor torch_only"
    ic, fp = np.full(ly.N_IC, -7, np.int64), np.full(ly.N_FP, -7.0)
    encode_component(comp, ic, fp)  # every declared slot and kind exists in the kernels' layout
    assert (ic != -7).any() or (fp != -7.0).any()
    if comp.stage == "weight":
        assert comp.key in ly.WEIGHT_CODES


def test_codes_follow_the_declarations():
    ic, fp = recipe_codes(make_recipe("isac+bbg+reverse_kl", isac_exponent=0.5, k_ref=8, beta=0.2))
    assert ic[ly.NW] == 2 and (ic[ly.W0], ic[ly.W1]) == (ly.W_ISAC, ly.W_BBG)
    assert fp[ly.ISAC_EXPONENT] == 0.5 and ic[ly.BBG_KREF] == 8 and fp[ly.KL_BETA] == 0.2
    assert ic[ly.KL] == ly.D_K2 and ic[ly.DPH] == -1 and ic[ly.ADV] == ly.A_GRPO  # defaults: no DPH term
    ic, fp = recipe_codes(make_recipe("dph_alpha", dph_order=0.3, eta=0.0))
    assert ic[ly.DPH] == -1 and fp[ly.DPH_ORDER] == 0.3  # eta = 0: no DPH term in the kernel


def test_bad_declarations_name_the_slot():
    @dataclass(frozen=True)
    class Typo(ISAC):
        def kernel_codes(self):
            return {"ISAC_EXPONET": 1.0}

    @dataclass(frozen=True)
    class Unknown(ISAC):
        def kernel_codes(self):
            return {"ADV": "vimco"}

    with pytest.raises(ValueError, match="isac: kernel slot 'ISAC_EXPONET' is invalid; allowed: ADV"):
        recipe_codes(Recipe("r", weights=(Typo(),)))
    with pytest.raises(ValueError, match="kernel slot ADV = 'vimco' is invalid; allowed: grpo"):
        recipe_codes(Recipe("r", weights=(Unknown(),)))


def test_declared_torch_only_is_refused_and_skipped_with_a_reason():
    from test_parity import skip_marks

    @dataclass(frozen=True)
    class Experimental(ISAC):  # has an encoding it inherits, but declares that the kernels do not run it
        torch_only: ClassVar[bool] = True

    rec = Recipe("mine", weights=(Experimental(),))
    assert rec.torch_only == ("isac",)
    with pytest.raises(ValueError, match="torch-only"):
        recipe_codes(rec)
    mark = skip_marks(rec)
    assert mark.name == "skip" and "isac" in mark.kwargs["reason"] and "torch-only" in mark.kwargs["reason"]
    assert skip_marks(make_recipe("isac")) == ()
