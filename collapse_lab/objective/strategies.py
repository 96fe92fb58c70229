"""Hypothesis strategies for valid `Batch`es and a simulated multi-process reduce (objective.testing).

Needs the dev extra (hypothesis): `pip install -e '.[dev]'`.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass, replace

import torch
import torch.nn.functional as F

from .batch import Batch, RefSamples

try:
    from hypothesis import strategies as st
except ImportError as e:  # pragma: no cover - the dev extra is missing
    raise ImportError("collapse_lab.objective.strategies needs hypothesis: pip install -e '.[dev]'") from e

__all__ = ["BatchCase", "batches", "FakeWorld"]

f64 = torch.float64


@dataclass
class BatchCase:
    """Plain data of one valid Batch; `batch(theta, phi)` builds it on fresh leaves (float64).

    logp = theta [B, T], ref_samples.logp = phi [R, T] (the gradient is taken w.r.t. both);
    old_logp = theta + old_delta, ref_logp = theta + ref_delta (detached), entropy = softplus(theta).
    """

    logp: torch.Tensor
    old_delta: torch.Tensor
    ref_delta: torch.Tensor
    mask: torch.Tensor
    rewards: torch.Tensor
    group: torch.Tensor
    outcome: torch.Tensor
    prior_success: torch.Tensor
    prior_trials: torch.Tensor
    pef: torch.Tensor | None
    ref_logp: torch.Tensor  # (R, T) policy log-probs of the reference samples (leaf values)
    ref_ref_logp: torch.Tensor  # (R, T)
    ref_group: torch.Tensor  # (R,)
    max_len: int | None

    def leaves(self) -> tuple[torch.Tensor, torch.Tensor]:
        return self.logp.clone().requires_grad_(True), self.ref_logp.clone().requires_grad_(True)

    def batch(self, theta: torch.Tensor, phi: torch.Tensor, dph: bool = True) -> Batch:
        refs = RefSamples(phi, self.ref_ref_logp, None, self.ref_group) if dph else None
        return Batch(logp=theta, rewards=self.rewards, group=self.group,
                     old_logp=theta.detach() + self.old_delta, mask=self.mask, outcome=self.outcome,
                     ref_logp=theta.detach() + self.ref_delta, entropy=F.softplus(theta), ref_samples=refs,
                     prior_success=self.prior_success, prior_trials=self.prior_trials, pef=self.pef,
                     max_len=self.max_len)

    def permuted(self, perm: torch.Tensor) -> BatchCase:
        rows = ("logp", "old_delta", "ref_delta", "mask", "rewards", "group", "outcome", "prior_success",
                "prior_trials", "pef")
        return replace(self, **{k: getattr(self, k)[perm] for k in rows if getattr(self, k) is not None})

    @property
    def groups(self) -> list[int]:
        return self.group.unique().tolist()


@st.composite
def batches(draw, min_groups: int = 1, max_groups: int = 4, min_group_size: int = 2, max_group_size: int = 5,
            max_tokens: int = 3, dph: bool = False, extreme: bool = False, flat: bool = False,
            binary: bool = True) -> BatchCase:
    """Strategy for a valid BatchCase: whole groups of varied sizes (ids not contiguous), masks with
    >= 1 token per row, rewards (binary, or real when not `binary`; all equal within a group when
    `flat`), outcomes in 0..3, history counts, and for `dph` D_pef groups with 1-2 reference rows
    each. Structure and rewards are drawn by hypothesis; the float arrays come from a drawn seed
    (fast; continuous, so row log-probs never tie). `extreme` widens log-probs to [-50, 0],
    log-ratios to +-30 and rewards to +-100."""
    n = draw(st.integers(min_groups, max_groups))
    sizes = [draw(st.integers(min_group_size, max_group_size)) for _ in range(n)]
    B, T = sum(sizes), draw(st.integers(1, max_tokens))
    ids = draw(st.lists(st.integers(0, 50), min_size=n, max_size=n, unique=True))
    per_row = lambda v: torch.tensor([v[g] for g, s in enumerate(sizes) for _ in range(s)])  # noqa: E731
    group = per_row(ids)
    g = torch.Generator().manual_seed(draw(st.integers(0, 2**31 - 1)))
    lo, dr, rw = (-50.0, 30.0, 100.0) if extreme else (-4.0, 0.5, 1.0)
    u = lambda a, b, *shape: a + (b - a) * torch.rand(*shape, generator=g, dtype=f64)  # noqa: E731
    logp = u(lo, 0.0, B, 1) + u(-1e-3, 0.0, B, T)
    old_delta, ref_delta = u(-dr, dr, B, T), u(-2 * dr, 2 * dr, B, T)
    mask = (torch.rand(B, T, generator=g) < draw(st.sampled_from([1.0, 0.7, 0.3]))).to(f64)
    mask[:, 0] = 1.0
    values = st.sampled_from([0.0, 1.0]) if binary and not extreme else st.floats(-rw, rw)
    if flat:
        rewards = per_row([draw(values) for _ in range(n)]).to(f64)
    else:
        rewards = torch.tensor(draw(st.lists(values, min_size=B, max_size=B)), dtype=f64)
    outcome = torch.randint(0, 4, (B,), generator=g)
    trials = torch.randint(0, 21, (n,), generator=g)
    succ = (torch.rand(n, generator=g) * (trials + 1)).floor().clamp(max=trials)
    pef, ref_rows = None, []
    if dph:
        is_pef = [draw(st.booleans()) for _ in range(n)]
        pef = per_row(is_pef).bool()
        ref_rows = [ids[k] for k in range(n) if is_pef[k] for _ in range(1 + int(torch.randint(2, (1,), generator=g)))]
    R = len(ref_rows)
    ref_logp = u(lo, 0.0, R, T)
    ref_ref = ref_logp + u(-2 * dr, 2 * dr, R, T)
    max_len = draw(st.one_of(st.none(), st.integers(T, T + 3)))
    return BatchCase(logp, old_delta, ref_delta, mask, rewards, group, outcome, per_row(succ.tolist()).to(f64),
                     per_row(trials.tolist()).to(f64), pef, ref_logp, ref_ref, torch.tensor(ref_rows, dtype=torch.long),
                     max_len)


class FakeWorld:
    """n simulated processes in threads with the reduce contract of objective.prepared:
    `world.reducer(rank)(x, op)` returns the sum (or max) of x over the n ranks."""

    def __init__(self, n: int):
        self.n, self.barrier, self.slots = n, threading.Barrier(n), [None] * n

    def reducer(self, rank: int):
        def reduce(x: torch.Tensor, op: str) -> torch.Tensor:
            self.slots[rank] = x.detach().clone()
            self.barrier.wait()
            vals = list(self.slots)
            self.barrier.wait()
            out = vals[0].clone()
            for v in vals[1:]:
                out = out + v if op == "sum" else torch.maximum(out, v)
            return out
        return reduce

    def run(self, fn, args: list) -> list:
        """[fn(*args[r], reduce=reducer(r)) for every rank r], run concurrently; re-raises errors."""
        out, errors = [None] * self.n, []

        def work(r):
            try:
                out[r] = fn(*args[r], reduce=self.reducer(r))
            except BaseException as e:  # noqa: BLE001 - reported to the caller
                errors.append(e)
                self.barrier.abort()
        threads = [threading.Thread(target=work, args=(r,)) for r in range(self.n)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        if errors:
            raise errors[0]
        return out
