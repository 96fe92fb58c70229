"""Numerical guards of the trainers: one fused max-|x| pass per check, one host sync.

A minibatch whose gradient is non-finite is skipped and counted (`finite_update`); a parameter that
is non-finite, or whose square overflows its dtype (at least float32: |x| > sqrt(finfo.max)), after
`optimizer.step()` stops the run with an error naming the learning rate (`check_parameters`, and
`parameter_problem` for the SFT loop); non-finite sampling log-probs name the lr after an update, the
model before any (`check_outputs`).
"""

from __future__ import annotations

import math
import warnings

import torch

from .dist import all_reduce


def _local(t: torch.Tensor) -> torch.Tensor:
    """This process's shard of an FSDP2 DTensor (a plain tensor: itself); an empty shard as one 0."""
    t = t.to_local() if hasattr(t, "to_local") else t
    return t if t.numel() else t.new_zeros(1)


def max_abs(tensors) -> torch.Tensor:
    """(N,) float64 max |x| of each tensor (of this process's shard under FSDP2: callers reduce the
    verdict over processes), NaN where a tensor holds a NaN: one fused torch._foreach_norm(ord=inf)
    pass, no host sync (the caller syncs once on the result)."""
    norms = torch._foreach_norm([_local(t) for t in tensors], float("inf"))
    return torch.stack([n.to(torch.float64) for n in norms])


def overflow_limit(dtype: torch.dtype) -> float:
    """sqrt(finfo.max) of `dtype` promoted to at least float32: the largest |x| whose square is finite
    in the precision norms and softmax run in (half-precision models upcast to float32)."""
    return math.sqrt(torch.finfo(torch.promote_types(dtype, torch.float32)).max)


def finite_update(ctx) -> bool:
    """True when every gradient is finite on every process (one fused check, one reduction);
    a skipped minibatch is warned and counted."""
    grads = [p.grad for p in ctx.model.parameters() if p.grad is not None]
    bad = bool((~max_abs(grads).isfinite()).any()) if grads else False
    bad = all_reduce(float(bad), ctx.dist, "max") > 0
    if bad:
        warnings.warn(f"step {ctx.step + 1}: non-finite loss or gradient, minibatch skipped "
                      "(counted in metrics as nonfinite_skips)", RuntimeWarning, stacklevel=2)
    return not bad


def parameter_problem(named_parameters) -> str | None:
    """(name, tensor) pairs -> None when every parameter is finite with |x| <= overflow_limit(dtype)
    (one fused check, one sync), else a description of the first that is not."""
    named = list(named_parameters)
    if not named:
        return None
    limits = torch.tensor([overflow_limit(p.dtype) for _, p in named], dtype=torch.float64)
    m = max_abs([p.detach() for _, p in named]).cpu()  # (N,)
    bad = (~(m <= limits)).nonzero()  # NaN compares False: bad
    if not len(bad):
        return None
    i = int(bad[0, 0])
    v = float(m[i])
    wide = str(torch.promote_types(named[i][1].dtype, torch.float32)).removeprefix("torch.")
    return f"parameter {named[i][0]} has max |x| = " + (
        "non-finite" if not math.isfinite(v) else f"{v:.3g}, whose square overflows {wide}")


def check_parameters(ctx) -> None:
    """After optimizer.step(): parameter_problem on every process, else a ValueError naming optim.lr
    and the first bad parameter (nothing of this step is saved)."""
    problem = parameter_problem(ctx.model.named_parameters())
    if all_reduce(float(problem is not None), ctx.dist, "max") == 0:
        return
    oc = ctx.cfg.optim
    raise ValueError(f"optim.lr = {oc.lr!r} is invalid; allowed: a smaller rate (step {ctx.step + 1}: after "
                     f"{oc.optimizer}.step() {problem or 'another process has a non-finite parameter'}; "
                     "this step was not saved)")


def check_outputs(ctx, exp, start: int) -> None:
    """The rollout's sampling log-probs must be finite: a policy with finite parameters but non-finite
    outputs was broken by the last update (optim.lr) or, before any update, by the model itself."""
    bad = all_reduce(float(not bool(exp.old_logp.isfinite().all())), ctx.dist, "max") > 0
    if not bad:
        return
    if ctx.step > start:
        raise ValueError(f"optim.lr = {ctx.cfg.optim.lr!r} is invalid; allowed: a smaller rate (step "
                         f"{ctx.step + 1}: the policy's sampling log-probs are non-finite after step "
                         f"{ctx.step}'s update)")
    raise ValueError(f"model.name = {ctx.cfg.model.name!r} is invalid; allowed: a model whose log-probs are "
                     f"finite (step {ctx.step + 1}: non-finite sampling log-probs before any update; "
                     f"model.dtype = {ctx.cfg.model.dtype!r})")
