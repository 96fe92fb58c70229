"""A recipe: a training objective as data (docs/methods.md §5), run in two phases.

    prepared = rec.prepare(batch)                           # once per rollout batch
    loss, diag = rec.loss(batch.select(rows), prepared.select(rows))   # any split into whole groups
    loss, diag = rec.loss(batch)                            # = both phases on one batch

`prepare` runs the stages of `components.py` that read the whole batch (shapers, advantage, weights,
dynamic sampling, denominators; see prepared.py for the reduction callback of DDP); `loss` the ones
that carry the gradient (clipped surrogate, KL, DPH divergence, entropy). Every recipe returns the
same diagnostic names (`DIAGNOSTICS`); a quantity a batch cannot provide (no reference log-probs, no
entropy) is NaN, a loss term a recipe does not have is 0. Named recipes live in registry.py.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field

import torch
from torch import Tensor

from .batch import Batch
from .checks import check_bool
from .components import DPH, Advantage, Entropy, KLPenalty, Memory, PolicySpec
from .divergences import divergence
from .groups import group_index, group_sum
from .policy import aggregate, policy_loss
from .prepared import Prepared, Reduce, global_denominators, policy_masks
from .shaping import dynamic_sampling_keep

__all__ = ["Recipe", "DIAGNOSTICS", "SLOTS"]

DIAGNOSTICS = (
    "loss", "pg_loss", "kl_loss", "div_loss", "entropy_loss",
    "clip_frac_low", "clip_frac_high", "dual_clip_frac", "ratio_mean", "ratio_max",
    "kl_ref", "entropy", "adv_mean", "adv_std", "adv_abs_max",
    "reward_mean", "shaped_reward_mean", "zero_var_frac", "kept_frac",
)
SLOTS = ("kl", "dph", "entropy", "memory")  # optional single components, named by their key
TERMS = ("pg", "kl", "div", "entropy")  # the loss terms of `Recipe.terms`


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

    def __post_init__(self):
        check_bool("dynamic_sampling", self.dynamic_sampling)

    # what a caller (simulator, trainer) must provide: derived from the components' `needs` ------
    @property
    def needs(self) -> frozenset:
        """Optional Batch fields this recipe reads (union of its components' `needs`)."""
        return frozenset().union(*(c.needs for c in self.components().values()))

    @property
    def needs_ref(self) -> bool:
        """A frozen reference model is needed (reverse KL with beta > 0)."""
        return "ref_logp" in self.needs

    @property
    def needs_ref_samples(self) -> bool:
        """Stored samples of the initial policy are needed (DPH)."""
        return "ref_samples" in self.needs

    @property
    def needs_history(self) -> bool:
        """Per-prompt cumulative counts (Batch.prior_success / prior_trials) are needed."""
        return "prior_success" in self.needs

    @property
    def needs_outcome(self) -> bool:
        return "outcome" in self.needs

    @property
    def needs_entropy(self) -> bool:
        return "entropy" in self.needs

    @property
    def torch_only(self) -> tuple[str, ...]:
        """Keys of components the numba simulator cannot run (no `kernel_codes`, or `torch_only = True`)."""
        return tuple(k for k, c in self.components().items()
                     if getattr(c, "torch_only", False) or not callable(getattr(c, "kernel_codes", None)))

    @property
    def sampler(self) -> Memory | None:
        return self.memory

    def components(self) -> dict[str, object]:
        """Named components present in this recipe, by key (for overrides and provenance)."""
        out = {"advantage": self.advantage, "policy": self.policy}
        for comp in self.shapers + self.weights:
            out[comp.key] = comp
        out.update({s: getattr(self, s) for s in SLOTS if getattr(self, s) is not None})
        return out

    def to_dict(self) -> dict:
        """JSON-ready description (saved with every run)."""
        return {"name": self.name, "dynamic_sampling": self.dynamic_sampling,
                **{k: dataclasses.asdict(v) for k, v in self.components().items()}}

    # phase 1: once per rollout batch ------------------------------------------------------------
    def prepare(self, batch: Batch, reduce: Reduce | None = None) -> Prepared:
        """Shaped rewards, advantages, weights, keep mask and global denominators of a whole batch.

        r~ = shapers(r) (KL in the reward first), A = advantage(r~), A' = weights(A);
        keep = varied groups (dynamic sampling) and not D_pef; denominators of the policy rows
        (mask * keep) and of DPH's reference rows. `reduce` (prepared.py) makes the batch-spanning
        statistics span every process; each process passes whole groups. No gradient flows here:
        batch.logp is read detached (KL in the reward; unlikeliness ranks when old_logp is None),
        so a trainer may build this batch from the rollout's behaviour log-probs, before any forward.
        """
        rewards = batch.rewards
        if self.kl is not None and self.kl.in_reward:
            rewards = self.kl.shape_rewards(batch, rewards)
        for shaper in self.shapers:
            rewards = shaper(batch, rewards, reduce=reduce)
        adv = self.advantage(batch, rewards, reduce=reduce)
        for weight in self.weights:
            adv = weight(batch, adv, reduce=reduce)
        varied = dynamic_sampling_keep(batch.rewards, batch.group)  # (B,)
        keep = varied if self.dynamic_sampling else torch.ones_like(varied)
        if batch.pef is not None:
            keep = keep & ~batch.pef.bool()
        pol, refd = global_denominators(*policy_masks(batch, keep), batch.max_len, reduce)
        return Prepared(batch.group, rewards.detach(), adv.detach(), varied, keep, pol, refd)

    # phase 2: any micro-batch of whole groups ---------------------------------------------------
    def terms(self, batch: Batch, prepared: Prepared | None = None) -> tuple[dict[str, Tensor], dict]:
        """The loss terms {pg, kl, div, entropy} (scalars with grad) and the surrogate's diagnostics.

        pg = clipped surrogate of A' (§4); kl = beta * agg(k(logp - ref_logp)); div = eta *
        agg_ref(f-divergence on the reference samples); entropy = -coef * agg(H). Each aggregation
        divides by the whole batch's denominators (prepared.policy, prepared.ref).
        """
        if prepared is None:
            prepared = self.prepare(batch)
        prepared.check_rows(batch.group)
        mask = batch.token_mask * prepared.keep.to(batch.logp.dtype).unsqueeze(-1)  # (B, T)
        agg, den = self.policy.agg, prepared.policy
        pg, diag = policy_loss(batch.logp, batch.old_logp, prepared.advantages, mask, self.policy.clip_low,
                               self.policy.clip_high, self.policy.dual_clip, agg, self.policy.level,
                               denom=den)
        zero = pg.new_zeros(())
        out = {"pg": pg, "kl": zero, "div": zero, "entropy": zero}
        if self.kl is not None and not self.kl.in_reward and self.kl.beta > 0:
            out["kl"] = self.kl.beta * aggregate(self.kl.term(batch), mask, agg, denom=den)
        if self.dph is not None and self.dph.eta > 0:
            term, ref_mask = self.dph.term(batch)  # (R, T); R = 0 on every process: no D_pef prompt
            if prepared.ref.rows > 0:
                out["div"] = self.dph.eta * aggregate(term, ref_mask, agg, denom=prepared.ref)
        if self.needs_entropy:
            if batch.entropy is None:
                raise ValueError("the entropy bonus needs Batch.entropy, which is None")
            out["entropy"] = -self.entropy.coef * aggregate(batch.entropy, mask, agg, denom=den)
        return out, diag

    def loss(self, batch: Batch, prepared: Prepared | None = None) -> tuple[Tensor, dict[str, float]]:
        """(scalar loss, detached diagnostics); docs/methods.md §1-§4 composed as declared.

        prepared=None: both phases on this batch (`self.prepare(batch)`). Otherwise `batch` is any
        subset of whole groups of the prepared batch, given with `prepared.select(rows)`: the losses
        of a split add up to the loss of the whole batch (and so do their gradients).
        """
        if prepared is None:
            prepared = self.prepare(batch)
        t, diag = self.terms(batch, prepared)
        loss = t["pg"] + t["kl"] + t["div"] + t["entropy"]
        diag.update(_diagnostics(batch, prepared))
        diag.update(loss=float(loss.detach()), kl_loss=float(t["kl"].detach()),
                    div_loss=float(t["div"].detach()), entropy_loss=float(t["entropy"].detach()))
        return loss, {k: diag[k] for k in DIAGNOSTICS}


def _diagnostics(batch: Batch, prep: Prepared) -> dict:
    """Measurements of this (micro-)batch with stable names (NaN where the batch lacks the input)."""
    nan = float("nan")
    m = batch.token_mask
    with torch.no_grad():
        inv, n = group_index(batch.group)
        flat_groups = group_sum((~prep.varied).double(), inv, n) > 0  # (n_groups,) all-equal rewards
        kl_ref = nan if batch.ref_logp is None else float(
            (divergence(batch.logp.detach(), batch.ref_logp, "k3") * m).sum() / m.sum().clamp_min(1))
        ent = nan if batch.entropy is None else float((batch.entropy * m).sum() / m.sum().clamp_min(1))
        adv = prep.advantages.double()
        return {
            "kl_ref": kl_ref, "entropy": ent,
            "adv_mean": float(adv.mean()), "adv_std": float(adv.std(correction=0)),
            "adv_abs_max": float(adv.abs().max()) if adv.numel() else 0.0,
            "reward_mean": float(batch.rewards.double().mean()),
            "shaped_reward_mean": float(prep.rewards.double().mean()),
            "zero_var_frac": float(flat_groups.double().sum() / max(n, 1)),
            "kept_frac": float(prep.keep.double().mean()),
        }
