"""Property tests for recipes, built-in or your own: `check_recipe` checks a recipe against the
invariants it declares, on hypothesis-generated batches (strategies.py).

Needs the dev extra (`pip install -e '.[dev]'`, for hypothesis); nothing else in the package does.

    from collapse_lab.objective import ISAC, Advantage, Recipe
    from collapse_lab.objective.testing import check_recipe
    mine = Recipe("rloo_isac", Advantage("rloo"), weights=(ISAC(exponent=0.5),))
    check_recipe(mine)  # AssertionError on a minimal failing batch, else the invariants checked

Invariants (`declared_invariants(recipe)` lists the ones a recipe claims):
    micro_batch   loss and gradient of a batch = sums over a random split into whole groups, with
                  `prepare` run once on the whole batch (float64, 1e-10 relative)
    processes     `prepare` split over 2 simulated processes (reduce callback, FakeWorld) = one process
    permutation   reordering the rows leaves the loss unchanged and permutes the gradient
    flat_groups   groups whose rewards are all equal give zero advantages and no policy gradient;
                  declared when the advantage and every shaper and weight have `flat_zero = True`
                  (and no KL sits in the reward)
    finite        finite loss and gradients on extreme inputs (log-ratios to +-30, rewards to +-100)
    divergence    the expected gradient of the KL / DPH term, enumerating every G-sample group
                  (G = max(3, min_group_size)) of a 3-outcome bandit, is beta (eta) times the gradient
                  of the divergence the component declares (`expected_gradient_of`; None = zero), by
                  categorical_divergence_grad. KL in the loss: its own term; KL in the reward (k1,
                  with an advantage whose baseline does not depend on the sample: `UNBIASED_BASELINE`):
                  the policy-gradient term, whose rewards do not depend on the samples; DPH: one
                  reference sample y ~ ref. Logits in [-1, 1], and only where no +-10 clamp of a term
                  (DPH-RL's) is active (`assume`): the check does not cover the clamped region
"""

from __future__ import annotations

import itertools
import math

import torch
import torch.nn.functional as F

try:
    from hypothesis import HealthCheck, Phase, assume, given, settings
    from hypothesis import strategies as st
except ImportError as e:  # pragma: no cover - the dev extra is missing
    raise ImportError("collapse_lab.objective.testing needs hypothesis: pip install -e '.[dev]'") from e

from .batch import Batch, RefSamples
from .divergences import categorical_divergence_grad, divergence
from .recipes import Recipe
from .strategies import BatchCase, FakeWorld, batches

__all__ = ["check_recipe", "declared_invariants", "kl_term_name", "UNBIASED_BASELINE", "min_group_size",
           "INVARIANTS", "batches", "BatchCase",
           "FakeWorld", "whole_grads", "split_grads", "group_rows", "assert_same"]

INVARIANTS = ("micro_batch", "processes", "permutation", "flat_groups", "finite", "divergence")
TOL = 1e-10
f64 = torch.float64
UNBIASED_BASELINE = ("reinforce", "rloo")  # the baseline of sample i does not depend on y_i


def kl_term_name(rec: Recipe) -> str | None:
    """The `Recipe.terms` entry that carries the KL's gradient: "kl" (in the loss), "pg" (k1 in the
    reward, `expected_gradient_of` = "reverse_kl"), or None (no KL, beta = 0, no divergence)."""
    kl = rec.kl
    if kl is None or kl.beta <= 0:
        return None
    if not kl.in_reward:
        return "kl"
    return "pg" if kl.expected_gradient_of is not None else None


def _kl_declared(rec: Recipe) -> bool:
    """KL in the reward claims its divergence only with an UNBIASED_BASELINE advantage, unshaped."""
    term = kl_term_name(rec)
    return term == "kl" or (term == "pg" and rec.advantage.kind in UNBIASED_BASELINE
                            and not rec.shapers and not rec.weights)


def declared_invariants(rec: Recipe) -> tuple[str, ...]:
    """The invariants `rec` claims (module docstring), in INVARIANTS order."""
    flat = getattr(rec.advantage, "flat_zero", False) and all(
        getattr(c, "flat_zero", False) for c in rec.shapers + rec.weights) and not (
        rec.kl is not None and rec.kl.in_reward and rec.kl.beta > 0)
    div = _kl_declared(rec) or (rec.dph is not None and rec.dph.eta > 0)
    return tuple(n for n in INVARIANTS if (n != "flat_groups" or flat) and (n != "divergence" or div))


def min_group_size(rec: Recipe) -> int:
    """Smallest group the recipe accepts: 2, passk's k, GRPO's ddof + 1 with std='group'."""
    a = rec.advantage
    size = max(2, a.k if a.kind == "passk" else 2)
    return max(size, a.ddof + 1) if a.kind in ("grpo", "unlikeliness") and a.std == "group" else size


def _close(a: torch.Tensor, b: torch.Tensor) -> bool:
    return bool((a - b).abs().max() <= TOL * max(1.0, float(a.abs().max()))) if a.numel() else True


def _grads(theta, phi, total: float):
    zero = lambda x: torch.zeros_like(x) if x.grad is None else x.grad  # noqa: E731
    return total, zero(theta), zero(phi)


def whole_grads(rec: Recipe, case: BatchCase) -> tuple[float, torch.Tensor, torch.Tensor]:
    """(loss, d/dtheta [B, T], d/dphi [R, T]) of rec.loss on the whole batch (one phase call)."""
    theta, phi = case.leaves()
    loss, _ = rec.loss(case.batch(theta, phi, rec.needs_ref_samples))
    loss.backward()
    return _grads(theta, phi, loss.item())


def group_rows(case: BatchCase, groups) -> torch.Tensor:
    """bool [B]: the rows of the given group ids."""
    return torch.isin(case.group, torch.tensor(sorted(groups), dtype=case.group.dtype))


def split_grads(rec: Recipe, case: BatchCase, parts: list, processes: bool = False):
    """Summed (loss, d/dtheta, d/dphi) of rec.loss(batch.select(rows_i), prepared_i) over the parts
    (lists of group ids). prepared_i = rec.prepare(whole batch).select(rows_i) (gradient
    accumulation), or with processes=True each part's own prepare under a FakeWorld reduce (DDP)."""
    theta, phi = case.leaves()
    full = case.batch(theta, phi, rec.needs_ref_samples)
    rows = [group_rows(case, p) for p in parts]
    if processes:
        preps = FakeWorld(len(parts)).run(rec.prepare, [(full.select(r),) for r in rows])
    else:
        whole = rec.prepare(full)
        preps = [whole.select(r) for r in rows]
    total = 0.0
    for r, prep in zip(rows, preps):
        loss, _ = rec.loss(case.batch(theta, phi, rec.needs_ref_samples).select(r), prep)
        loss.backward()
        total += loss.item()
    return _grads(theta, phi, total)


def assert_same(name: str, rec: Recipe, a, b) -> None:
    """AssertionError unless (loss, grad_theta, grad_phi) a and b agree to 1e-10 (relative)."""
    la, ta, pa = a
    lb, tb, pb = b
    ok = abs(la - lb) <= TOL * max(1.0, abs(la)) and _close(ta, tb) and _close(pa, pb)
    assert ok, (f"recipe {rec.name!r} violates {name}: loss {la!r} vs {lb!r}, max grad difference "
                f"{float((ta - tb).abs().max()) if ta.numel() else 0.0:.3e}")


def _parts(data, groups: list, n_parts: int) -> list[list]:
    who = data.draw(st.lists(st.integers(0, n_parts - 1), min_size=len(groups), max_size=len(groups)))
    return [p for p in ([g for g, w in zip(groups, who) if w == i] for i in range(n_parts)) if p]


def _check_micro_batch(rec, case, data):
    parts = _parts(data, case.groups, 3)
    assert_same("micro_batch", rec, whole_grads(rec, case), split_grads(rec, case, parts))


def _check_processes(rec, case, data):
    parts = _parts(data, case.groups, 2)
    assume(len(parts) == 2)
    theta, phi = case.leaves()
    full = case.batch(theta, phi, rec.needs_ref_samples)
    one = rec.prepare(full)
    preps = FakeWorld(2).run(rec.prepare, [(full.select(group_rows(case, p)),) for p in parts])
    for p, prep in zip(parts, preps):
        ref = one.select(group_rows(case, p))
        assert prep.policy == ref.policy and prep.ref == ref.ref, (
            f"recipe {rec.name!r} violates processes: denominators {prep.policy}, {prep.ref} vs "
            f"{ref.policy}, {ref.ref}")
        for k in ("rewards", "advantages"):
            assert _close(getattr(ref, k), getattr(prep, k)), f"recipe {rec.name!r} violates processes: {k}"
        assert torch.equal(ref.keep, prep.keep), f"recipe {rec.name!r} violates processes: keep"
    assert_same("processes", rec, whole_grads(rec, case), split_grads(rec, case, parts, processes=True))


def _token_mean(x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    return (x * mask).sum(-1) / mask.sum(-1)


def _check_permutation(rec, case, data):
    for x in (case.logp, case.logp + case.old_delta):  # ranks (unlikeliness) break ties by position
        key = torch.stack([case.group.double(), _token_mean(x, case.mask)], -1)
        assume(key.unique(dim=0).shape[0] == key.shape[0])
    perm = torch.tensor(data.draw(st.permutations(range(case.group.shape[0]))))
    la, ta, pa = whole_grads(rec, case)
    lb, tb, pb = whole_grads(rec, case.permuted(perm))
    assert_same("permutation", rec, (la, ta[perm], pa), (lb, tb, pb))


def _check_flat_groups(rec, case, data):
    theta, phi = case.leaves()
    batch = case.batch(theta, phi, rec.needs_ref_samples)
    prep = rec.prepare(batch)
    assert float(prep.advantages.abs().max()) <= TOL, (
        f"recipe {rec.name!r} violates flat_groups: advantages {prep.advantages.tolist()}")
    terms, _ = rec.terms(batch, prep)
    terms["pg"].backward()
    grad = torch.zeros_like(theta) if theta.grad is None else theta.grad
    assert float(grad.abs().max()) <= TOL, f"recipe {rec.name!r} violates flat_groups: policy gradient {grad}"


def _check_finite(rec, case, data):
    loss, t, p = whole_grads(rec, case)
    assert math.isfinite(loss) and bool(torch.isfinite(t).all()) and bool(torch.isfinite(p).all()), (
        f"recipe {rec.name!r} violates finite: loss {loss}, gradients finite: "
        f"{bool(torch.isfinite(t).all())}, {bool(torch.isfinite(p).all())}")


def _bandit_batch(z, z0, y: list[int], ref_y: list[int]) -> Batch:
    """One group of G = len(y) one-token samples of pi = softmax(z), reference rows ref_y (group 0)."""
    lp, lr = F.log_softmax(z, -1), F.log_softmax(z0, -1)
    yt, ry, G = torch.tensor(y), torch.tensor(ref_y, dtype=torch.long), len(y)
    rewards = torch.tensor([1.0] + [0.0] * (G - 1), dtype=f64)  # a varied group: dynamic sampling keeps it
    zeros = torch.zeros(G, dtype=f64)
    return Batch(logp=lp[yt], rewards=rewards, group=torch.zeros(G, dtype=torch.long), outcome=yt,
                 ref_logp=lr[yt], entropy=-(lp.exp() * lp).sum().expand(G), prior_success=zeros,
                 prior_trials=zeros, ref_samples=RefSamples(lp[ry], lr[ry], None, torch.zeros_like(ry)))


def _check_divergence(rec, case, data):
    K, G = 3, max(3, min_group_size(rec))
    z = torch.tensor(data.draw(st.lists(st.floats(-1, 1), min_size=K, max_size=K)), dtype=f64)
    z0 = torch.tensor(data.draw(st.lists(st.floats(-1, 1), min_size=K, max_size=K)), dtype=f64)
    pi, ref = F.softmax(z, -1), F.softmax(z0, -1)
    d = F.log_softmax(z, -1) - F.log_softmax(z0, -1)  # (K,) no clamp of the terms is active here:
    for kind in [c.kind for c in (rec.kl, rec.dph) if c is not None]:  # DPH-RL clamps the term to +-10
        alpha = rec.dph.order if rec.dph is not None else 0.2
        assume(bool((divergence(d, torch.zeros_like(d), kind, alpha, clamp_term=math.inf).abs() < 10).all()))
    checks = []
    kl_term = kl_term_name(rec)
    if kl_term is not None:  # on-policy groups y ~ pi
        kind = rec.kl.expected_gradient_of
        want = (rec.kl.beta * categorical_divergence_grad(z, z0, kind) if kind else torch.zeros(K, dtype=f64))
        cases = [(list(y), [], float(pi[list(y)].prod())) for y in itertools.product(range(K), repeat=G)]
        checks.append((kl_term, want, cases))
    if rec.dph is not None and rec.dph.eta > 0:  # one reference sample y ~ ref
        want = rec.dph.eta * categorical_divergence_grad(z, z0, rec.dph.kind, rec.dph.order)
        checks.append(("div", want, [([0] * G, [y], float(ref[y])) for y in range(K)]))
    assert checks, f"recipe {rec.name!r} violates divergence: it has no divergence term to check"
    for term, want, cases in checks:
        got = torch.zeros(K, dtype=f64)
        for y, ref_y, prob in cases:
            zz = z.clone().requires_grad_(True)
            terms, _ = rec.terms(_bandit_batch(zz, z0, y, ref_y))
            terms[term].backward()
            got += prob * (torch.zeros(K, dtype=f64) if zz.grad is None else zz.grad)
        assert _close(want, got), (f"recipe {rec.name!r} violates divergence ({term}): expected gradient "
                                   f"{got.tolist()} vs declared {want.tolist()}")


_CHECKS = {"micro_batch": _check_micro_batch, "processes": _check_processes,
           "permutation": _check_permutation, "flat_groups": _check_flat_groups,
           "finite": _check_finite, "divergence": _check_divergence}


def check_recipe(rec: Recipe, invariants=None, max_examples: int = 20, shrink: bool = True,
                 **batch_kwargs) -> tuple[str, ...]:
    """Check `rec` against `invariants` (default: `declared_invariants(rec)`) on `max_examples`
    hypothesis batches each (derandomized: the same examples every run). batch_kwargs go to
    `strategies.batches` (defaults: groups of at least `min_group_size(rec)`, DPH reference rows when
    the recipe needs them). Raises AssertionError naming the recipe and the invariant, on a minimal
    failing batch (shrink=False: the first one found, faster); returns the names checked."""
    names = declared_invariants(rec) if invariants is None else tuple(invariants)
    unknown = set(names) - set(INVARIANTS)
    if unknown:
        raise ValueError(f"invariants = {sorted(unknown)!r} is invalid; allowed: {', '.join(INVARIANTS)}")
    phases = [Phase.explicit, Phase.generate] + ([Phase.shrink] if shrink else [])
    cfg = settings(max_examples=max_examples, deadline=None, derandomize=True, database=None,
                   suppress_health_check=list(HealthCheck), phases=phases, print_blob=False)
    for name in names:
        kw = {"min_group_size": min_group_size(rec), "max_group_size": max(5, min_group_size(rec) + 1),
              "dph": rec.needs_ref_samples, "extreme": name == "finite", "flat": name == "flat_groups",
              "min_groups": 2 if name == "processes" else 1, **batch_kwargs}

        _run(cfg, batches(**kw), _CHECKS[name], rec)
    return names


def _run(cfg, strategy, check, rec: Recipe) -> None:
    @cfg
    @given(case=strategy, data=st.data())
    def run(case, data):
        check(rec, case, data)
    run()
