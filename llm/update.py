"""The update half of `llm.train`'s step: the rollout batch for `recipe.prepare` (no forward pass), the
micro-batch loss (one forward), and `ppo_update`: PPO epochs over minibatches of whole groups with
gradient accumulation, each micro-batch loss its exact share of the minibatch loss (the docstring of
llm/train.py, items 1 and 3)."""

from __future__ import annotations

import dataclasses
from typing import TYPE_CHECKING

import torch

from collapse_lab.objective import Batch, Prepared, RefSamples

from .dist import Dist, all_reduce_dict, all_reduce_many, grad_sync
from .experience import Experience
from .guards import check_parameters, finite_update
from .rollout import sequence_logp

if TYPE_CHECKING:
    from .train import Context


def logp_dtype(model: torch.nn.Module) -> torch.dtype:
    """The dtype of sequence_logp's output: the parameters' dtype, float32 for half precision."""
    dtype = next(model.parameters()).dtype
    return torch.float32 if dtype in (torch.float16, torch.bfloat16) else dtype


def step_batch(ctx: Context, exp: Experience, ref: dict | None) -> Batch:
    """This process's whole rollout batch for `recipe.prepare`: no forward pass, logp = old_logp.

    DPH: every reference row of the step's D_pef prompts (`ref`, from RefStore.ref_rows) with
    RefSamples.group = the slot of its prompt, so `Batch.select` keeps each micro-batch's own rows.
    """
    dev, T, dtype = ctx.dist.device, ctx.cfg.rollout.max_new_tokens, logp_dtype(ctx.model)
    to = lambda x: None if x is None else x.to(dev)  # noqa: E731
    ref_samples = None
    if ref is not None:
        rl = ref["ref_logp"].to(dev, dtype)
        ref_samples = RefSamples(rl, rl, ref["mask"].to(dev, dtype), to(ref["group"]))
    elif ctx.refstore is not None:  # no D_pef prompt in this step: an empty reference set, divergence 0
        empty = torch.zeros(0, T, dtype=dtype, device=dev)
        ref_samples = RefSamples(empty, empty, empty, torch.zeros(0, dtype=torch.long, device=dev))
    prior = ctx.history.lookup(exp.prompt_id.tolist()) if ctx.recipe.needs_history else (None, None)
    old = exp.old_logp.to(dev, dtype)  # (B, T)
    return Batch(logp=old, rewards=exp.rewards.to(dev, dtype), group=to(exp.slot), old_logp=old,
                 mask=exp.mask.to(dev, dtype), outcome=to(exp.outcome),
                 ref_logp=None if exp.ref_logp is None else exp.ref_logp.to(dev, dtype),
                 ref_samples=ref_samples, prior_success=to(prior[0]), prior_trials=to(prior[1]),
                 pef=to(exp.pef), max_len=T)


def micro_loss(ctx: Context, exp: Experience, batch: Batch, ref: dict | None, rows: torch.Tensor,
               prepared: Prepared):
    """recipe.loss on the micro-batch `rows` (whole groups) of the step's batch, with `prepared` (its
    rows, the minibatch's denominators): one forward pass over its rows and its DPH reference rows."""
    dev = ctx.dist.device
    sub, mb = exp.select(rows), batch.select(rows)
    prompts, tokens, mask = sub.prompt_tokens, sub.tokens, sub.mask
    if ref is not None:  # one forward through the DDP module for both row sets
        pick = torch.isin(ref["group"], sub.slot).nonzero()[:, 0]  # the order Batch.select keeps
        prompts = prompts + [ref["prompt_tokens"][i] for i in pick.tolist()]
        tokens, mask = torch.cat([tokens, ref["tokens"][pick]]), torch.cat([mask, ref["mask"][pick]])
    logp, ent = sequence_logp(ctx.ddp, prompts, tokens.to(dev), mask.to(dev, batch.logp.dtype), ctx.tok.pad_id,
                              ctx.cfg.rollout.temperature, ctx.recipe.needs_entropy)
    B, rs = len(sub), mb.ref_samples
    if rs is not None and rs.logp.shape[0] > 0:
        rs = RefSamples(logp[B:], rs.ref_logp, rs.mask, rs.group)
    mb = dataclasses.replace(mb, logp=logp[:B], entropy=None if ent is None else ent[:B], ref_samples=rs)
    return ctx.recipe.loss(mb, prepared)


LOSS_KEYS = ("loss", "pg_loss", "kl_loss", "div_loss", "entropy_loss")  # shares of the loss: summed


def make_reduce(dist: Dist):
    """The reduction callback of Recipe.prepare (collapse_lab.objective.prepared): sum / max over
    processes; None in a single process."""
    if dist.world == 1:
        return None

    def reduce(x: torch.Tensor, op: str) -> torch.Tensor:
        y = x.clone()  # all_reduce works in place
        torch.distributed.all_reduce(y, torch.distributed.ReduceOp.SUM if op == "sum" else
                                     torch.distributed.ReduceOp.MAX)
        return y
    return reduce


def ppo_update(ctx: Context, exp: Experience) -> dict:
    """ppo_epochs passes; minibatch m holds the groups with slot % M == m; accumulation over
    micro-batches of optim.micro_groups groups.

    recipe.prepare runs once on the process's whole rollout batch (advantages fixed across epochs,
    batch statistics reduced over processes); each minibatch is renormalised to its own global
    denominators, so each micro-batch loss is its exact share of the minibatch loss. DDP averages
    gradients, so each process backpropagates loss * world.
    """
    oc, dist, prec = ctx.cfg.optim, ctx.dist, ctx.precision
    M, sums, n_opt, skipped, part, overflows = oc.num_minibatches, {}, 0, 0, {}, 0
    reduce = make_reduce(dist)
    ref = ctx.refstore.ref_rows(exp.prompt_id.tolist(), exp.slot.tolist()) if ctx.refstore is not None else None
    batch = step_batch(ctx, exp, ref)
    prepared = ctx.recipe.prepare(batch, reduce=reduce)
    plan = []  # per minibatch m, the same in every epoch: (its global denominators, its micro-batches)
    for m in range(M):
        groups = [g for g in exp.slot.unique().tolist() if g % M == m]
        rows_m = torch.isin(exp.slot, torch.tensor(groups, dtype=torch.long))
        den = prepared if M == 1 else prepared.select(rows_m).renormalized(batch.select(rows_m), reduce)
        size = oc.micro_groups or max(len(groups), 1)
        plan.append((den, [groups[i:i + size] for i in range(0, len(groups), size)]))
    n_micros = all_reduce_many([len(micro) for _, micro in plan], dist, "max")  # one collective
    for _ in range(oc.ppo_epochs):
        for (den, micro), n_micro in zip(plan, map(int, n_micros)):
            if den.policy.tokens == 0 and den.ref.rows == 0:  # global: the same on every process
                continue
            ctx.optimizer.zero_grad(set_to_none=True)
            part = {}
            for i in range(n_micro):
                pad = i >= len(micro)  # this process has fewer micro-batches: a zero-weight backward
                rows = exp.slot == exp.slot[0] if pad else torch.isin(exp.slot, torch.tensor(micro[i]))
                p = dataclasses.replace(prepared.select(rows), policy=den.policy, ref=den.ref)
                sync = i == n_micro - 1 or dist.world == 1
                with grad_sync(ctx.ddp, sync):
                    with prec.autocast():
                        loss, diag = micro_loss(ctx, exp, batch, ref, rows, p)
                    prec.backward(loss * (0.0 if pad else float(dist.world)))
                if pad:
                    continue
                share = int(rows.sum()) / max(den.policy.rows, 1.0)  # the micro-batch's rows / all rows
                for k, v in diag.items():
                    part[k] = part.get(k, 0.0) + (v if k in LOSS_KEYS else share * v)
            prec.unscale(ctx.optimizer)  # float16: true gradients before the guard and the clip
            if prec.overflowed(ctx.model.parameters(), part.get("loss", 0.0), dist):  # loss scale too high:
                overflows += 1  # the scaler lowered it; not a non-finite skip
                ctx.optimizer.zero_grad(set_to_none=True)
                continue
            if not finite_update(ctx):  # NaN/inf loss or gradient on any process: skip, count, log
                skipped += 1
                prec.skip()
                ctx.optimizer.zero_grad(set_to_none=True)
                continue
            for k, v in part.items():
                sums[k] = sums.get(k, 0.0) + v
            if oc.grad_clip > 0:
                sums["grad_norm"] = sums.get("grad_norm", 0.0) + float(
                    torch.nn.utils.clip_grad_norm_(ctx.model.parameters(), oc.grad_clip))
            prec.step(ctx.optimizer)
            check_parameters(ctx)
            n_opt += 1
    if skipped and n_opt == 0:
        raise FloatingPointError(f"step {ctx.step + 1}: every minibatch of recipe {ctx.recipe.name!r} had a "
                                 f"non-finite loss or gradient ({skipped} skipped); last diagnostics: {part}")
    reduced = all_reduce_dict({k: v for k, v in sums.items() if k != "grad_norm"}, dist)  # one collective
    out = {k: reduced.get(k, v) / max(n_opt, 1) for k, v in sums.items()}
    out["nonfinite_skips"] = float(skipped)
    out.update(prec.metrics(overflows))
    return out
