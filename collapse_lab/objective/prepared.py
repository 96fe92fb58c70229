"""What `Recipe.prepare` computes once per rollout batch, for `Recipe.loss` on any micro-batch.

Two phases (verl splits advantage computation from the per-micro-batch loss the same way):

    prepared = rec.prepare(batch, reduce=None)            # once, on the whole rollout batch
    for rows in split_into_whole_groups(batch):           # gradient accumulation / PPO epochs
        loss, diag = rec.loss(batch.select(rows), prepared.select(rows))
        loss.backward()                                   # sum of grads == grad of rec.loss(batch)

`prepare` fixes reward shaping, advantages, advantage weights, the dynamic-sampling keep mask and
the aggregation denominators (tokens, rows, T_max; the same for DPH's reference rows) on the whole
batch, so every micro-batch loss is its exact share of the whole-batch loss, and a loss summed over
processes is exact too.

The reduction callback (the objective never imports torch.distributed). Contract:

    reduce(x: Tensor, op: str) -> Tensor    op in {"sum", "max"}

returns the elementwise sum (or max) of `x` over every process, same shape and dtype, on every
process. A DDP trainer passes

    def reduce(x, op):
        y = x.clone()  # all_reduce works in place
        torch.distributed.all_reduce(y, ReduceOp.SUM if op == "sum" else ReduceOp.MAX)
        return y

Every process calls `prepare` with its own whole groups (a group never spans two processes);
`prepare` calls `reduce` the same number of times in the same order on every process
(the order depends on the recipe only, never on the data). Statistics that span the batch and use
it: GRPO with std="batch", ISAC(normalize=True), the aggregation denominators, T_max.
reduce=None means this process holds the whole batch. Note that DDP *averages* gradients over
processes: with global denominators each process's loss is its share of the global loss, so a DDP
trainer backpropagates `loss * world_size` (the sum of the shares is the loss).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, replace

import torch
from torch import Tensor

from .policy import Denominators

__all__ = ["Prepared", "Reduce", "row_index", "policy_masks", "global_denominators"]

Reduce = Callable[[Tensor, str], Tensor]


def row_index(rows, n: int, what: str = "rows") -> Tensor:
    """Row indices (long [k]) from a bool mask [n] or integer indices; ValueError when out of range."""
    idx = torch.as_tensor(rows)
    if idx.dtype == torch.bool:
        if tuple(idx.shape) != (n,):
            raise ValueError(f"{what}: a bool mask must have shape ({n},), got {tuple(idx.shape)}")
        return idx.nonzero().flatten()
    if idx.dtype.is_floating_point or idx.dim() > 1:
        raise ValueError(f"{what} must be a bool mask [{n}] or 1-D integer indices, got {idx.dtype} "
                         f"{tuple(idx.shape)}")
    idx = idx.long().flatten()
    if idx.numel() and (int(idx.min()) < -n or int(idx.max()) >= n):
        raise ValueError(f"{what} must lie in [0, {n}), got min {int(idx.min())}, max {int(idx.max())}")
    return idx % max(n, 1)


@dataclass
class Prepared:
    """Per-row results of `Recipe.prepare` [B] and the whole batch's denominators.

    group: group ids [B] (a loss call checks its batch against them); rewards: shaped rewards [B];
    advantages: weighted advantages [B] (detached); varied: bool [B], the group's rewards are not
    all equal; keep: bool [B], the row enters the policy terms (dynamic sampling, not D_pef);
    policy: Denominators of the policy rows (tokens = sum of mask * keep over the whole batch);
    ref: Denominators of DPH's reference rows (zeros without reference samples).
    """

    group: Tensor
    rewards: Tensor
    advantages: Tensor
    varied: Tensor
    keep: Tensor
    policy: Denominators
    ref: Denominators

    def __len__(self) -> int:
        return int(self.group.shape[0])

    def select(self, rows) -> Prepared:
        """The rows `rows` (bool mask or indices, as `Batch.select`) with the denominators unchanged."""
        idx = row_index(rows, len(self)).to(self.group.device)
        return replace(self, group=self.group[idx], rewards=self.rewards[idx],
                       advantages=self.advantages[idx], varied=self.varied[idx], keep=self.keep[idx])

    def renormalized(self, batch, reduce: Reduce | None = None) -> Prepared:
        """The same rows with the denominators of `batch` (these rows, summed over processes).

        For a PPO minibatch that is one optimizer step: advantages stay those of the whole rollout
        batch (`prepare` once), the aggregation is the minibatch's own (as verl normalises each
        mini-batch); split the minibatch into micro-batches with `.select(rows)` afterwards.
        """
        self.check_rows(batch.group)
        pol, ref = global_denominators(*policy_masks(batch, self.keep), batch.max_len, reduce)
        return replace(self, policy=pol, ref=ref)

    def check_rows(self, group: Tensor) -> None:
        """ValueError unless `group` (a loss call's Batch.group) is this Prepared's group, row by row."""
        if tuple(group.shape) != tuple(self.group.shape) or not torch.equal(group.to(self.group.device),
                                                                             self.group):
            raise ValueError("prepared does not match the batch: pass prepared.select(rows) with "
                             f"batch.select(rows) (batch has {group.shape[0]} rows, prepared {len(self)})")


def policy_masks(batch, keep: Tensor) -> tuple[Tensor, Tensor | None]:
    """(policy mask [B, T] = response mask * keep, reference mask [R, T'] or None), detached."""
    mask = batch.token_mask.detach() * keep.to(batch.logp.dtype).unsqueeze(-1)  # (B, T)
    ref = batch.ref_samples
    if ref is None:
        return mask, None
    return mask, (torch.ones_like(ref.logp) if ref.mask is None else ref.mask.to(ref.logp.dtype)).detach()


def global_denominators(mask: Tensor, ref_mask: Tensor | None, max_len: int | None,
                        reduce: Reduce | None) -> tuple[Denominators, Denominators]:
    """(policy, ref) Denominators over every process: sums of masks and rows, max of T_max.

    mask: policy mask [B, T] (already times keep); ref_mask: [R, T'] or None. Two reduce calls
    (one "sum" of 4 numbers, one "max" of 2) when `reduce` is given.
    """
    t_pol = mask.shape[-1] if max_len is None else max_len
    t_ref = (ref_mask.shape[-1] if ref_mask is not None else 1) if max_len is None else max_len
    ref_tokens = float(ref_mask.sum()) if ref_mask is not None else 0.0
    ref_rows = ref_mask.shape[0] if ref_mask is not None else 0
    sums = torch.tensor([float(mask.sum()), mask.shape[0], ref_tokens, ref_rows], dtype=torch.float64,
                        device=mask.device)
    maxes = torch.tensor([t_pol, t_ref], dtype=torch.float64, device=mask.device)
    if reduce is not None:
        sums, maxes = reduce(sums, "sum"), reduce(maxes, "max")
    s, m = sums.tolist(), [int(v) for v in maxes.tolist()]
    return Denominators(s[0], s[1], m[0]), Denominators(s[2], s[3], m[1])
