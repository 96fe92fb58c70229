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
    """Strategy for a valid BatchCase: whole groups of varied sizes, masks with >= 1 token per row,
    rewards (binary or real, all equal within a group when `flat`), outcomes, history counts,
    distinct row log-probs (so within-group ranks have no ties), and for `dph` D_pef groups with
    1-2 reference rows each. `extreme` widens log-probs to [-50, 0], log-ratios to +-30 and rewards
    to +-100."""
    n = draw(st.integers(min_groups, max_groups))
    sizes = [draw(st.integers(min_group_size, max_group_size)) for _ in range(n)]
    B, T = sum(sizes), draw(st.integers(1, max_tokens))
    ids = draw(st.lists(st.integers(0, 50), min_size=n, max_size=n, unique=True))
    group = torch.tensor([ids[g] for g, s in enumerate(sizes) for _ in range(s)])
    lo, dr, rw = (-50.0, 30.0, 100.0) if extreme else (-4.0, 0.5, 1.0)
    fl = lambda a, b: st.floats(a, b, allow_nan=False, allow_infinity=False)  # noqa: E731
    base = draw(st.lists(fl(lo, 0.0), min_size=B, max_size=B, unique=True))
    tok = draw(st.lists(fl(-1e-3, 0.0), min_size=B * T, max_size=B * T))
    logp = torch.tensor(base, dtype=f64)[:, None] + torch.tensor(tok, dtype=f64).view(B, T)
    vec = lambda a, b, k: torch.tensor(draw(st.lists(fl(a, b), min_size=k, max_size=k)), dtype=f64)  # noqa: E731
    old_delta, ref_delta = vec(-dr, dr, B * T).view(B, T), vec(-2 * dr, 2 * dr, B * T).view(B, T)
    mask = torch.tensor(draw(st.lists(st.booleans(), min_size=B * T, max_size=B * T)), dtype=f64).view(B, T)
    mask[:, 0] = 1.0
    values = st.sampled_from([0.0, 1.0]) if binary and not extreme else fl(-rw, rw)
    if flat:
        per_group = [draw(values) for _ in range(n)]
        rewards = torch.tensor([per_group[g] for g, s in enumerate(sizes) for _ in range(s)], dtype=f64)
    else:
        rewards = torch.tensor(draw(st.lists(values, min_size=B, max_size=B)), dtype=f64)
    outcome = torch.tensor(draw(st.lists(st.integers(0, 3), min_size=B, max_size=B)))
    trials = [draw(st.integers(0, 20)) for _ in range(n)]
    succ = [draw(st.integers(0, t)) for t in trials]
    per_row = lambda v: torch.tensor([float(v[g]) for g, s in enumerate(sizes) for _ in range(s)], dtype=f64)  # noqa: E731
    pef, ref_rows = None, []
    if dph:
        is_pef = [draw(st.booleans()) for _ in range(n)]
        pef = per_row(is_pef).bool()
        ref_rows = [ids[g] for g in range(n) if is_pef[g] for _ in range(draw(st.integers(1, 2)))]
    R = len(ref_rows)
    ref_logp = vec(lo, 0.0, R * T).view(R, T)
    ref_ref = ref_logp + vec(-2 * dr, 2 * dr, R * T).view(R, T)
    max_len = draw(st.one_of(st.none(), st.integers(T, T + 3)))
    return BatchCase(logp, old_delta, ref_delta, mask, rewards, group, outcome, per_row(succ), per_row(trials),
                     pef, ref_logp, ref_ref, torch.tensor(ref_rows, dtype=torch.long), max_len)


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
