"""Named recipes (METHODS.md §5) as data: compositions of the components, never string branches.

    recipe("grpo"); recipe("dapo", clip_high=0.3); recipe("ips_grpo+dph_js", eta=0.05)
    loss, diagnostics = recipe("bbg").loss(batch)

`Recipe.loss` runs the stages of `components.py` in order. Every recipe returns the same
diagnostic names (`DIAGNOSTICS`); a quantity a batch cannot provide (no reference log-probs, no
entropy) is NaN, a loss term a recipe does not have is 0.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field, replace

import torch
from torch import Tensor

from .batch import Batch
from .components import BBG, DPH, IPS, ISAC, Advantage, Entropy, KLPenalty, Memory, PolicySpec, ZeroSuccess
from .divergences import divergence
from .groups import group_index, group_sum
from .policy import aggregate, policy_loss
from .shaping import dynamic_sampling_keep

__all__ = ["Recipe", "RECIPES", "DIAGNOSTICS", "recipe", "combine"]

DIAGNOSTICS = (
    "loss", "pg_loss", "kl_loss", "div_loss", "entropy_loss",
    "clip_frac_low", "clip_frac_high", "dual_clip_frac", "ratio_mean", "ratio_max",
    "kl_ref", "entropy", "adv_mean", "adv_std", "adv_abs_max",
    "reward_mean", "shaped_reward_mean", "zero_var_frac", "kept_frac",
)
_SLOTS = ("kl", "dph", "entropy", "memory")  # optional single components
_STAGES = ("shapers", "weights")  # ordered tuples of components


@dataclass(frozen=True)
class Recipe:
    """A training objective as data. See module docstring; build with `recipe(name, **overrides)`."""

    name: str
    advantage: Advantage = field(default_factory=Advantage)
    policy: PolicySpec = field(default_factory=PolicySpec)
    shapers: tuple = ()
    weights: tuple = ()
    kl: KLPenalty | None = None
    dph: DPH | None = None
    entropy: Entropy | None = None
    memory: Memory | None = None
    dynamic_sampling: bool = False

    # what a caller (simulator, trainer) must provide --------------------------------------------
    @property
    def needs_ref(self) -> bool:
        """A frozen reference model is needed (reverse KL with beta > 0)."""
        return self.kl is not None and self.kl.beta > 0

    @property
    def needs_ref_samples(self) -> bool:
        """Stored samples of the initial policy are needed (DPH)."""
        return self.dph is not None

    @property
    def needs_history(self) -> bool:
        """Per-prompt cumulative counts (Batch.prior_success / prior_trials) are needed."""
        return any(getattr(w, "counts", None) == "history" for w in self.weights)

    @property
    def needs_outcome(self) -> bool:
        return any(isinstance(s, IPS) for s in self.shapers)

    @property
    def needs_entropy(self) -> bool:
        return self.entropy is not None and self.entropy.coef != 0

    @property
    def sampler(self) -> Memory | None:
        return self.memory

    def components(self) -> dict[str, object]:
        """Named components present in this recipe (for overrides and provenance)."""
        out = {"advantage": self.advantage, "policy": self.policy}
        for comp in self.shapers + self.weights:
            out[_key(comp)] = comp
        out.update({s: getattr(self, s) for s in _SLOTS if getattr(self, s) is not None})
        return out

    def to_dict(self) -> dict:
        """JSON-ready description (saved with every run)."""
        return {"name": self.name, "dynamic_sampling": self.dynamic_sampling,
                **{k: dataclasses.asdict(v) for k, v in self.components().items()}}

    # the loss ------------------------------------------------------------------------------------
    def loss(self, batch: Batch) -> tuple[Tensor, dict[str, float]]:
        """(scalar loss, detached diagnostics) for one batch; METHODS §1-§4 composed as declared."""
        rewards = batch.rewards
        if self.kl is not None and self.kl.in_reward:
            rewards = self.kl.shape_rewards(batch, rewards)
        for shaper in self.shapers:
            rewards = shaper(batch, rewards)
        adv = self.advantage(batch, rewards)
        for weight in self.weights:
            adv = weight(batch, adv)
        varied = dynamic_sampling_keep(batch.rewards, batch.group)  # (B,)
        keep = varied if self.dynamic_sampling else torch.ones_like(varied)
        if batch.pef is not None:
            keep = keep & ~batch.pef.bool()
        mask = batch.token_mask * keep.to(batch.logp.dtype).unsqueeze(-1)  # (B, T)
        agg, max_len = self.policy.agg, batch.max_len
        pg, diag = policy_loss(batch.logp, batch.old_logp, adv, mask, self.policy.clip_low,
                               self.policy.clip_high, self.policy.dual_clip, agg, self.policy.level,
                               max_len)
        zero = pg.new_zeros(())
        kl_loss = div_loss = ent_loss = zero
        if self.kl is not None and not self.kl.in_reward and self.kl.beta > 0:
            kl_loss = self.kl.beta * aggregate(self.kl.term(batch), mask, agg, max_len)
        if self.dph is not None and self.dph.eta > 0:
            term, ref_mask = self.dph.term(batch)  # (R, T); R = 0: no D_pef prompt in this batch
            if term.shape[0] > 0:
                div_loss = self.dph.eta * aggregate(term, ref_mask, agg, max_len)
        if self.needs_entropy:
            if batch.entropy is None:
                raise ValueError("the entropy bonus needs Batch.entropy, which is None")
            ent_loss = -self.entropy.coef * aggregate(batch.entropy, mask, agg, max_len)
        loss = pg + kl_loss + div_loss + ent_loss
        diag.update(_diagnostics(batch, rewards, adv, varied, keep))
        diag.update(loss=float(loss.detach()), kl_loss=float(kl_loss.detach()),
                    div_loss=float(div_loss.detach()), entropy_loss=float(ent_loss.detach()))
        return loss, {k: diag[k] for k in DIAGNOSTICS}


def _diagnostics(batch: Batch, shaped: Tensor, adv: Tensor, varied: Tensor, keep: Tensor) -> dict:
    """Batch-level measurements with stable names (NaN where the batch lacks the input)."""
    nan = float("nan")
    m = batch.token_mask
    with torch.no_grad():
        inv, n = group_index(batch.group)
        flat_groups = group_sum((~varied).double(), inv, n) > 0  # (n_groups,) all-equal rewards
        kl_ref = nan if batch.ref_logp is None else float(
            (divergence(batch.logp.detach(), batch.ref_logp, "k3") * m).sum() / m.sum().clamp_min(1))
        ent = nan if batch.entropy is None else float((batch.entropy * m).sum() / m.sum().clamp_min(1))
        adv = adv.detach().double()
        return {
            "kl_ref": kl_ref, "entropy": ent,
            "adv_mean": float(adv.mean()), "adv_std": float(adv.std(correction=0)),
            "adv_abs_max": float(adv.abs().max()) if adv.numel() else 0.0,
            "reward_mean": float(batch.rewards.double().mean()),
            "shaped_reward_mean": float(shaped.detach().double().mean()),
            "zero_var_frac": float(flat_groups.double().sum() / max(n, 1)),
            "kept_frac": float(keep.double().mean()),
        }


def _key(component) -> str:
    return {IPS: "ips", ISAC: "isac", ZeroSuccess: "zero_success", BBG: "bbg"}[type(component)]


_DAPO_POLICY = PolicySpec(clip_low=0.2, clip_high=0.28, agg="token-mean")
_REGISTRY: dict[str, Recipe] = {
    "grpo": Recipe("grpo"),
    "dr_grpo": Recipe("dr_grpo", Advantage("dr_grpo"), PolicySpec(agg="seq-mean-token-sum-norm")),
    "dapo": Recipe("dapo", policy=_DAPO_POLICY, dynamic_sampling=True),
    "rloo": Recipe("rloo", Advantage("rloo")),
    "reinforce": Recipe("reinforce", Advantage("reinforce")),
    "reverse_kl": Recipe("reverse_kl", kl=KLPenalty("k3", beta=0.05)),
    "ips_grpo": Recipe("ips_grpo", shapers=(IPS(),)),
    "isac": Recipe("isac", weights=(ISAC(),)),
    "memory": Recipe("memory", memory=Memory()),
    "dph_forward": Recipe("dph_forward", policy=PolicySpec(clip_high=0.28), dph=DPH("forward", eta=0.03)),
    "dph_js": Recipe("dph_js", policy=PolicySpec(clip_high=0.28), dph=DPH("js", eta=0.1)),
    "dph_alpha": Recipe("dph_alpha", policy=PolicySpec(clip_high=0.28), dph=DPH("alpha", eta=0.1)),
    "zero_success": Recipe("zero_success", weights=(ZeroSuccess(),)),
    "bbg": Recipe("bbg", weights=(BBG(),)),
    "passk": Recipe("passk", Advantage("passk", k=4)),
    "unlikeliness": Recipe("unlikeliness", Advantage("unlikeliness")),
    "entropy": Recipe("entropy", entropy=Entropy(0.01)),
}
RECIPES: tuple[str, ...] = tuple(_REGISTRY)


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
        for stage in _STAGES:
            merged = list(getattr(out, stage))
            for c in getattr(r, stage):
                same = [m for m in merged if type(m) is type(c)]
                if not same:
                    merged.append(c)
                elif same[0] != c:
                    raise ValueError(f"cannot combine recipes: both set {_key(c)} differently")
            kw[stage] = tuple(merged)
        for slot in _SLOTS:
            kw[slot] = _merge_one(slot, getattr(out, slot), getattr(r, slot), None)
        out = Recipe(**kw)
    return out


def recipe(name: str, **overrides) -> Recipe:
    """The named recipe of METHODS §5 (or a '+'-joined combination) with hyper-parameter overrides.

    An override is `field` when exactly one component of the recipe has that field (e.g.
    clip_high, beta, eta, k_ref) or `<component>_<field>` (advantage_eps, ips_alpha, dph_kind, ...);
    `dynamic_sampling` is a flag of the recipe itself.
    """
    parts = name.split("+")
    for p in parts:
        if p not in _REGISTRY:
            raise ValueError(f"unknown recipe {p!r}; valid: {', '.join(RECIPES)}")
    out = combine(*[_REGISTRY[p] for p in parts])
    if "dynamic_sampling" in overrides:
        out = replace(out, dynamic_sampling=bool(overrides.pop("dynamic_sampling")))
    for key, value in overrides.items():
        out = _override(out, key, value)
    return out


def _override(r: Recipe, key: str, value) -> Recipe:
    comps = r.components()
    options = [f"{c}_{f.name}" for c, obj in comps.items() for f in dataclasses.fields(obj)]
    owners = [c for c, obj in comps.items() if key in {f.name for f in dataclasses.fields(obj)}]
    target = next((c for c in comps if key.startswith(c + "_") and key[len(c) + 1:] in
                   {f.name for f in dataclasses.fields(comps[c])}), None)
    if target is not None:
        fname = key[len(target) + 1:]
    elif len(owners) == 1:
        target, fname = owners[0], key
    else:
        why = f"ambiguous (in {', '.join(owners)})" if owners else "unknown"
        raise ValueError(f"override {key!r} for recipe {r.name!r} is {why}; options: {', '.join(options)}")
    new = replace(comps[target], **{fname: value})
    if target in ("advantage", "policy") or target in _SLOTS:
        return replace(r, **{target: new})
    stage = "shapers" if target == "ips" else "weights"
    return replace(r, **{stage: tuple(new if _key(c) == target else c for c in getattr(r, stage))})

