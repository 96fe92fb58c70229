"""Every built-in recipe passes the invariants it declares (collapse_lab.objective.testing), and each
invariant catches a recipe that breaks it (the controls)."""

from dataclasses import dataclass, replace
from typing import ClassVar

import pytest
import torch

from collapse_lab.objective import RECIPE_INFO, RECIPES, Advantage, KLPenalty, Recipe, recipe
from collapse_lab.objective.testing import INVARIANTS, check_recipe, declared_invariants

N = 5  # hypothesis examples per invariant: seconds for the whole file


@pytest.mark.parametrize("name", RECIPES + ("ips_grpo+isac+dph_js", "dapo+reverse_kl"))
def test_builtin_recipes_hold_their_invariants(name):
    checked = check_recipe(recipe(name), max_examples=N)
    assert {"micro_batch", "processes", "permutation", "finite"} <= set(checked)


@pytest.mark.parametrize("over", [{"std": "batch"}, {"normalize": True}, {"agg": "seq-mean-token-sum-norm"},
                                  {"agg": "seq-mean-token-mean", "level": "sequence"}])
def test_batch_spanning_variants_hold_their_invariants(over):
    name = "isac" if "normalize" in over else "grpo"
    check_recipe(recipe(name, **over), invariants=("micro_batch", "processes"), max_examples=N)


def test_declarations():
    assert declared_invariants(recipe("grpo")) == ("micro_batch", "processes", "permutation", "flat_groups",
                                                   "finite")
    assert "flat_groups" not in declared_invariants(recipe("bbg"))  # all-failure groups are pushed down
    assert "flat_groups" not in declared_invariants(recipe("ips_grpo"))  # outcomes reshape equal rewards
    assert "divergence" in declared_invariants(recipe("dph_js"))
    assert "divergence" not in declared_invariants(recipe("reverse_kl", in_reward=True))
    assert set(RECIPE_INFO) == set(RECIPES) and all(len(v) < 110 for v in RECIPE_INFO.values())
    with pytest.raises(ValueError, match="invariants = \\['commutes'\\] is invalid"):
        check_recipe(recipe("grpo"), invariants=("commutes",))


def test_kl_estimators_have_the_expected_gradient_they_declare():
    # k1 in the loss: zero expected gradient; k2: KL(pi || ref); k3: KL(ref || pi)
    for kind, want in (("k1", None), ("k2", "reverse_kl"), ("k3", "forward")):
        rec = recipe("reverse_kl", kl_kind=kind)
        assert rec.kl.expected_gradient_of == want
        check_recipe(rec, invariants=("divergence",), max_examples=N)


# Every recipe with a divergence term: the exact expectation of its gradient over all K^G groups
# (K = 3, G = 3; objective.testing's `divergence` invariant) is the gradient of the divergence its name
# states, to 1e-10. DPH's clamps: only where none is active (logits in [-1, 1], |term| < 10 assumed).
_EXPECTED_GRADIENT = [
    ("reverse_kl", {}, "reverse_kl"),  # k2 in the loss: KL(pi || ref)
    ("k3_kl", {}, "forward"),  # k3 in the loss (verl low_var_kl): KL(ref || pi)
    ("dph_forward", {}, "forward"), ("dph_js", {}, "js"), ("dph_alpha", {}, "alpha"),
    ("reverse_kl", {"in_reward": True, "kl_kind": "k1", "advantage_kind": "reinforce"}, "reverse_kl"),
    ("reverse_kl", {"in_reward": True, "kl_kind": "k1", "advantage_kind": "rloo"}, "reverse_kl"),
]


@pytest.mark.parametrize("name,over,want", _EXPECTED_GRADIENT, ids=[f"{n}{o or ''}" for n, o, _ in _EXPECTED_GRADIENT])
def test_divergence_recipes_have_the_expected_gradient_their_name_states(name, over, want):
    rec = recipe(name, **over)
    comp = rec.dph if rec.dph is not None else rec.kl
    assert comp.expected_gradient_of == want
    assert "divergence" in declared_invariants(rec)
    assert check_recipe(rec, invariants=("divergence",), max_examples=10) == ("divergence",)


@pytest.mark.parametrize("adv", ["grpo", "dr_grpo"])
def test_kl_in_reward_with_a_sample_dependent_baseline_is_not_the_kl_gradient(adv):
    # GRPO's std division and dr_grpo's own-sample mean (factor 1 - 1/G) bias k1-in-reward: not declared,
    # and the enumeration catches it when asked
    rec = recipe("reverse_kl", in_reward=True, kl_kind="k1", advantage_kind=adv)
    assert "divergence" not in declared_invariants(rec)
    with pytest.raises(AssertionError, match="violates divergence \\(pg\\)"):
        check_recipe(rec, invariants=("divergence",), max_examples=10, shrink=False)
    with pytest.raises(AssertionError, match="no divergence term"):
        check_recipe(recipe("grpo"), invariants=("divergence",), max_examples=2, shrink=False)


# ---- controls: a recipe that breaks an invariant is caught -------------------------------------
@dataclass(frozen=True)
class _Weight:
    """A test advantage weight: A' = fn(batch, A)."""

    key: ClassVar[str] = "test_weight"
    stage: ClassVar[str] = "weight"
    needs: ClassVar[frozenset] = frozenset()
    flat_zero: ClassVar[bool] = True
    fn: object = None

    def __call__(self, batch, adv, reduce=None):
        return self.fn(batch, adv)


class _NoPrepare(Recipe):
    """Ignores `prepared`: every micro-batch recomputes its own statistics (the old behaviour)."""

    def loss(self, batch, prepared=None):
        return super().loss(batch)


class _K3ClaimsReverse(KLPenalty):
    @property
    def expected_gradient_of(self):
        return "reverse_kl"


@pytest.mark.parametrize("invariant, rec", [
    ("micro_batch", _NoPrepare("no_prepare", Advantage(std="batch"))),
    ("processes", Recipe("local_norm", weights=(_Weight(lambda b, a: a / (1 + a.abs().sum())),))),
    ("permutation", Recipe("by_position", weights=(_Weight(lambda b, a: a * torch.arange(len(a))),))),
    ("flat_groups", recipe("grpo", eps=0.0)),  # 0 / 0 on a flat group
    ("finite", Recipe("blow_up", weights=(_Weight(lambda b, a: a * torch.exp(50 * b.rewards)),))),
    ("divergence", replace(recipe("reverse_kl"), kl=_K3ClaimsReverse("k3", 0.05))),
], ids=lambda x: x if isinstance(x, str) else "")
def test_each_invariant_catches_a_recipe_that_breaks_it(invariant, rec):
    assert invariant in INVARIANTS
    with pytest.raises(AssertionError, match=f"violates {invariant}"):
        check_recipe(rec, invariants=(invariant,), max_examples=30, shrink=False)


def test_readme_example_a_user_recipe():
    from dataclasses import dataclass
    from typing import ClassVar

    from collapse_lab.objective import Advantage, Recipe
    from collapse_lab.objective.testing import check_recipe

    @dataclass(frozen=True)
    class ClipAdvantage:  # a new advantage weight: |A| <= c
        c: float = 2.0
        key: ClassVar[str] = "clip_adv"
        stage: ClassVar[str] = "weight"
        needs: ClassVar[frozenset] = frozenset()  # no optional Batch field
        flat_zero: ClassVar[bool] = True  # A = 0 stays 0

        def __call__(self, batch, adv, reduce=None):
            return adv.clamp(-self.c, self.c)

    mine = Recipe("rloo_clip", Advantage("rloo"), weights=(ClipAdvantage(),))
    assert check_recipe(mine, max_examples=N) == ("micro_batch", "processes", "permutation", "flat_groups",
                                                  "finite")
