"""Named recipes (docs/methods.md §5): one registry line each, compositions of the components.

    recipe("grpo"); recipe("dapo", clip_high=0.3); recipe("ips_grpo+dph_js", eta=0.05)
    RECIPE_INFO["bbg"]  -> one-line description (for --help and the README table)

Overrides are validated by the components (strict types, finite values, ranges): a bad value is
one ValueError `<component>.<field> = <value!r> is invalid; allowed: ...`.
"""

from __future__ import annotations

import dataclasses
import warnings
from dataclasses import replace

from .checks import check_bool
from .components import BBG, DPH, IPS, ISAC, Advantage, Entropy, KLPenalty, Memory, PolicySpec, ZeroSuccess
from .recipes import SLOTS, Recipe

__all__ = ["RECIPES", "RECIPE_INFO", "recipe", "combine"]

_DAPO = PolicySpec(clip_low=0.2, clip_high=0.28, agg="token-mean")
_CLIP_HIGH = PolicySpec(clip_high=0.28)
_ENTRIES: dict[str, tuple[Recipe, str]] = {
    "grpo": (Recipe("grpo"),
             "GRPO: A = (r - group mean) / (group std + eps), PPO clip 0.2, token-mean"),
    "dr_grpo": (Recipe("dr_grpo", Advantage("dr_grpo"), PolicySpec(agg="seq-mean-token-sum-norm")),
                "Dr. GRPO: A = r - group mean (no std), seq-mean-token-sum-norm aggregation"),
    "dapo": (Recipe("dapo", policy=_DAPO, dynamic_sampling=True),
             "DAPO: clip-higher (0.2, 0.28), token-mean, dynamic sampling drops groups with equal rewards"),
    "rloo": (Recipe("rloo", Advantage("rloo")), "RLOO: leave-one-out baseline A = r_i - mean of the others"),
    "reinforce": (Recipe("reinforce", Advantage("reinforce")), "REINFORCE: A = r - constant baseline"),
    # k2 in the loss, not k1 in the reward: its on-policy expected gradient E[d grad log pi] is exactly
    # grad KL(pi || ref) whatever the advantage (k1 in the reward is exact only with a baseline that
    # does not depend on the sample, not with GRPO's std division); regularisers.KLPenalty
    "reverse_kl": (Recipe("reverse_kl", kl=KLPenalty("k2", beta=0.05)),
                   "GRPO + 0.05 * k2 = (log pi/ref)^2/2 in the loss: expected gradient of KL(pi || ref)"),
    "k3_kl": (Recipe("k3_kl", kl=KLPenalty("k3", beta=0.05)),
              "GRPO + 0.05 * k3 in the loss (verl low_var_kl): expected gradient of KL(ref || pi), not pi||ref"),
    "ips_grpo": (Recipe("ips_grpo", shapers=(IPS(),)),
                 "GRPO on inverse-probability-scaled rewards r / max(n_o/G, eps)^power (paper D)"),
    "isac": (Recipe("isac", weights=(ISAC(),)),
             "GRPO with correct samples' advantages times (G - c)^exponent, c = group successes (paper A)"),
    "memory": (Recipe("memory", memory=Memory()),
               "GRPO on rollouts from softmax(z - mu z_mem), a memory model of past rollouts (paper A)"),
    "dph_forward": (Recipe("dph_forward", policy=_CLIP_HIGH, dph=DPH("forward", eta=0.03)),
                    "DPH-RL: clip-higher GRPO + 0.03 * KL(ref || pi) on stored reference samples (paper B)"),
    "dph_js": (Recipe("dph_js", policy=_CLIP_HIGH, dph=DPH("js", eta=0.1)),
               "DPH-RL: clip-higher GRPO + 0.1 * JS divergence on stored reference samples (paper B)"),
    "dph_alpha": (Recipe("dph_alpha", policy=_CLIP_HIGH, dph=DPH("alpha", eta=0.1)),
                  "DPH-RL: clip-higher GRPO + 0.1 * alpha-divergence on stored reference samples (paper B)"),
    "zero_success": (Recipe("zero_success", weights=(ZeroSuccess(),)),
                     "GRPO that trains a prompt only until it is first solved (paper C)"),
    "bbg": (Recipe("bbg", weights=(BBG(),)),
            "Bayesian Boundary Gating: A times the Pass@k marginal value u(m)/u(1), gated (paper C)"),
    "passk": (Recipe("passk", Advantage("passk", k=4)),
              "Pass@k training advantage with k = 4 (Chen et al. 2025)"),
    "unlikeliness": (Recipe("unlikeliness", Advantage("unlikeliness")),
                     "GRPO on r (1 - beta_rank * rank / G), likely samples rewarded less (He et al. 2025)"),
    "entropy": (Recipe("entropy", entropy=Entropy(0.01)), "GRPO + 0.01 * token entropy bonus"),
}
_REGISTRY: dict[str, Recipe] = {name: entry[0] for name, entry in _ENTRIES.items()}
RECIPES: tuple[str, ...] = tuple(_ENTRIES)
RECIPE_INFO: dict[str, str] = {name: entry[1] for name, entry in _ENTRIES.items()}


def _merge_one(name: str, a, b, default):
    if a == b or b == default:
        return a
    if a == default:
        return b
    raise ValueError(f"cannot combine recipes: both set {name} differently ({a} vs {b})")


def combine(*recipes: Recipe) -> Recipe:
    """Compose recipes: shapers and weights concatenate; single components must not conflict."""
    out = recipes[0]
    for r in recipes[1:]:
        kw = {"name": f"{out.name}+{r.name}",
              "advantage": _merge_one("advantage", out.advantage, r.advantage, Advantage()),
              "policy": _merge_one("policy", out.policy, r.policy, PolicySpec()),
              "dynamic_sampling": out.dynamic_sampling or r.dynamic_sampling}
        for stage in ("shapers", "weights"):
            merged = list(getattr(out, stage))
            for c in getattr(r, stage):
                same = [m for m in merged if type(m) is type(c)]
                if not same:
                    merged.append(c)
                elif same[0] != c:
                    raise ValueError(f"cannot combine recipes: both set {c.key} differently")
            kw[stage] = tuple(merged)
        for slot in SLOTS:
            kw[slot] = _merge_one(slot, getattr(out, slot), getattr(r, slot), None)
        out = Recipe(**kw)
    return out


# overrides renamed so that no field shares a name with a recipe or another component's field
RENAMED = {"ips_alpha": "ips_power", "isac_alpha": "isac_exponent", "dph_alpha": "dph_order"}


def recipe(name: str, **overrides) -> Recipe:
    """The named recipe of docs/methods.md §5 (or a '+'-joined combination) with hyper-parameter overrides.

    An override is `field` when exactly one component of the recipe has that field (e.g.
    clip_high, beta, eta, k_ref) or `<component>_<field>` (advantage_eps, ips_power, dph_kind, ...);
    `dynamic_sampling` is a flag of the recipe itself (a real bool).
    """
    if not isinstance(name, str):
        raise ValueError(f"recipe name = {name!r} is invalid; allowed: {', '.join(RECIPES)} (joined by +)")
    parts = name.split("+")
    for p in parts:
        if p not in _REGISTRY:
            raise ValueError(f"unknown recipe {p!r}; valid: {', '.join(RECIPES)}")
    out = combine(*[_REGISTRY[p] for p in parts])
    if "dynamic_sampling" in overrides:
        flag = overrides.pop("dynamic_sampling")
        check_bool("dynamic_sampling", flag)
        out = replace(out, dynamic_sampling=flag)
    for key, value in overrides.items():
        if key in RENAMED:
            warnings.warn(f"recipe override {key!r} is renamed {RENAMED[key]!r}", DeprecationWarning, stacklevel=2)
            key = RENAMED[key]
        out = _override(out, key, value)
    return out


def _override(r: Recipe, key: str, value) -> Recipe:
    comps = r.components()
    names = {c: [f.name for f in dataclasses.fields(obj)] for c, obj in comps.items()}
    options = [f"{c}_{f}" for c, fs in names.items() for f in fs]
    owners = [c for c, fs in names.items() if key in fs]
    target = next((c for c in comps if key.startswith(c + "_") and key[len(c) + 1:] in names[c]), None)
    if target is not None:
        fname = key[len(target) + 1:]
    elif len(owners) == 1:
        target, fname = owners[0], key
    else:
        why = f"ambiguous (in {', '.join(owners)})" if owners else "unknown"
        raise ValueError(f"override {key!r} for recipe {r.name!r} is {why}; options: {', '.join(options)}")
    new = replace(comps[target], **{fname: value})  # the component validates the value
    stage = {"shaper": "shapers", "weight": "weights"}.get(new.stage)
    if stage is None:  # advantage, policy or a slot, named by the key
        return replace(r, **{target: new})
    return replace(r, **{stage: tuple(new if c.key == target else c for c in getattr(r, stage))})
