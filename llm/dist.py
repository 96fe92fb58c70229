"""Multi-process plumbing: `torchrun` environment, the one place models are wrapped, reductions.

CPU runs use the gloo backend, CUDA runs NCCL. `wrap_model` is the single place a model is wrapped
for data parallelism (`dist.strategy`: DDP, or FSDP2 in llm.fsdp). Host values (metrics, counts,
flags) are reduced as one float64 vector per call on the device the backend needs (`reduce_device`:
the process's GPU under NCCL, which rejects CPU tensors; the CPU under gloo). float64 keeps counts
exact and is one of NCCL's types.
"""

from __future__ import annotations

import contextlib
import os
from dataclasses import dataclass

import torch
import torch.distributed as tdist


@dataclass(frozen=True)
class Dist:
    rank: int = 0
    world: int = 1
    device: torch.device = torch.device("cpu")

    @property
    def is_main(self) -> bool:
        return self.rank == 0


def pick_device(pref: str) -> torch.device:
    if pref == "cuda" or (pref == "auto" and torch.cuda.is_available()):
        if not torch.cuda.is_available():
            raise ValueError("run.device = 'cuda' but CUDA is not available")
        return torch.device("cuda", int(os.environ.get("LOCAL_RANK", 0)))
    return torch.device("cpu")


def init_distributed(pref: str = "auto") -> Dist:
    """Join the process group when launched by torchrun (WORLD_SIZE > 1); else a single process."""
    device = pick_device(pref)
    world = int(os.environ.get("WORLD_SIZE", 1))
    if world == 1:
        return Dist(0, 1, device)
    if device.type == "cuda":
        torch.cuda.set_device(device)  # before NCCL starts: its communicator lives on this device
    if not tdist.is_initialized():
        tdist.init_process_group("nccl" if device.type == "cuda" else "gloo")
    return Dist(tdist.get_rank(), tdist.get_world_size(), device)


def wrap_model(model, dist: Dist, strategy: str = "ddp"):
    """The one place a model is wrapped for data parallelism: DDP (none in a single process) or FSDP2
    (llm.fsdp.shard, also in a single process, whose result is `model` itself, sharded in place)."""
    if strategy == "fsdp2":
        from .fsdp import shard
        return shard(model, dist)
    if dist.world == 1:
        return model
    from torch.nn.parallel import DistributedDataParallel
    ids = [dist.device.index] if dist.device.type == "cuda" else None
    return DistributedDataParallel(model, device_ids=ids)


def rollout_engine(engine, module):
    """`engine` as the trainer uses it: under FSDP2 it samples with the policy's parameters gathered
    (llm.fsdp.GatheredEngine), otherwise unchanged."""
    from .fsdp import GatheredEngine, is_sharded
    return GatheredEngine(engine, module) if is_sharded(module) else engine


@contextlib.contextmanager
def grad_sync(module, enabled: bool):
    """Backward passes inside reduce gradients over processes (enabled) or only accumulate them
    locally (DDP's no_sync, FSDP2's set_requires_gradient_sync(False)); a plain module: nothing."""
    if enabled:
        yield
    elif hasattr(module, "set_requires_gradient_sync"):  # FSDP2
        module.set_requires_gradient_sync(False)
        try:
            yield
        finally:
            module.set_requires_gradient_sync(True)
    elif hasattr(module, "no_sync"):  # DDP
        with module.no_sync():
            yield
    else:
        yield


def backend() -> str | None:
    """The default process group's backend ('nccl', 'gloo'), None without a process group."""
    return tdist.get_backend() if tdist.is_available() and tdist.is_initialized() else None


def reduce_device(dist: Dist) -> torch.device:
    """Where a collective on host values runs: the process's device under NCCL (CUDA tensors only),
    the CPU under any other backend (gloo)."""
    return dist.device if backend() == "nccl" else torch.device("cpu")


def pack(xs, dist: Dist) -> torch.Tensor:
    """(N,) float64 tensor of the floats `xs` on reduce_device(dist): the buffer one collective reduces."""
    return torch.tensor([float(x) for x in xs], dtype=torch.float64, device=reduce_device(dist))


def _op(op: str):
    if op not in ("sum", "max"):
        raise ValueError(f"op = {op!r} is invalid; allowed: sum, max")
    return tdist.ReduceOp.SUM if op == "sum" else tdist.ReduceOp.MAX


def all_reduce(x: float, dist: Dist, op: str = "sum") -> float:
    """Sum (or max) of a float over processes (one collective, float64 so counts stay exact)."""
    return all_reduce_many([x], dist, op)[0]


def all_reduce_many(xs, dist: Dist, op: str = "sum") -> list[float]:
    """[sum (or max) over processes of x_i] for several floats in one collective (float64)."""
    if dist.world == 1:
        return [float(x) for x in xs]
    t = pack(xs, dist)
    tdist.all_reduce(t, op=_op(op))
    return t.tolist()


def all_reduce_dict(d: dict, dist: Dist, op: str = "sum") -> dict:
    """{k: sum (or max) over processes of d[k]} in one collective; every process passes the same keys
    (reduced in sorted order)."""
    keys = sorted(d)
    return dict(zip(keys, all_reduce_many([d[k] for k in keys], dist, op)))


def average_grads(params, dist: Dist) -> None:
    """Average .grad over processes in place with one collective per dtype (for models not wrapped for
    data parallelism, e.g. the memory LM): the gradients are flattened into one buffer."""
    if dist.world == 1:
        return
    grads = [p.grad for p in params if p.grad is not None]
    for dtype in sorted({g.dtype for g in grads}, key=str):
        same = [g for g in grads if g.dtype == dtype]
        flat = torch.cat([g.reshape(-1) for g in same])  # (sum of numels,)
        tdist.all_reduce(flat)
        flat /= dist.world
        for g, chunk in zip(same, flat.split([g.numel() for g in same])):
            g.copy_(chunk.view_as(g))


def barrier(dist: Dist) -> None:
    if dist.world > 1:
        tdist.barrier()


def cleanup() -> None:
    """Leave the process group after every process has arrived (gloo aborts a process that tears
    down while its peer is still busy, e.g. writing the final checkpoint)."""
    if tdist.is_initialized():
        tdist.barrier()
        tdist.destroy_process_group()
