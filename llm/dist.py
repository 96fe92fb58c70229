"""Multi-process plumbing: `torchrun` environment, the one place models are wrapped, reductions.

CPU runs use the gloo backend, CUDA runs NCCL. `wrap_model` is the single place a model is wrapped
for data parallelism (DDP today; FSDP2 on GPU belongs here too).
"""

from __future__ import annotations

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
    if not tdist.is_initialized():
        tdist.init_process_group("nccl" if device.type == "cuda" else "gloo")
    if device.type == "cuda":
        torch.cuda.set_device(device)
    return Dist(tdist.get_rank(), tdist.get_world_size(), device)


def wrap_model(model, dist: Dist):
    """The one place a model is wrapped for data parallelism (DDP; FSDP2 later)."""
    if dist.world == 1:
        return model
    from torch.nn.parallel import DistributedDataParallel
    ids = [dist.device.index] if dist.device.type == "cuda" else None
    return DistributedDataParallel(model, device_ids=ids)


def all_reduce(x: float, dist: Dist, op: str = "sum") -> float:
    """Sum (or max) a float over processes (float64, so counts stay exact)."""
    if dist.world == 1:
        return float(x)
    t = torch.tensor([float(x)], dtype=torch.float64)
    tdist.all_reduce(t, op=tdist.ReduceOp.SUM if op == "sum" else tdist.ReduceOp.MAX)
    return float(t)


def all_reduce_many(xs, dist: Dist, op: str = "sum") -> list[float]:
    """all_reduce of several floats in one collective (float64): [sum_or_max over processes of x_i]."""
    if dist.world == 1:
        return [float(x) for x in xs]
    t = torch.tensor([float(x) for x in xs], dtype=torch.float64)
    tdist.all_reduce(t, op=tdist.ReduceOp.SUM if op == "sum" else tdist.ReduceOp.MAX)
    return t.tolist()


def average_grads(params, dist: Dist) -> None:
    """Average .grad over processes in place (for models not wrapped in DDP, e.g. the memory LM)."""
    if dist.world == 1:
        return
    for p in params:
        if p.grad is not None:
            tdist.all_reduce(p.grad)
            p.grad /= dist.world


def barrier(dist: Dist) -> None:
    if dist.world > 1:
        tdist.barrier()


def cleanup() -> None:
    """Leave the process group after every process has arrived (gloo aborts a process that tears
    down while its peer is still busy, e.g. writing the final checkpoint)."""
    if tdist.is_initialized():
        tdist.barrier()
        tdist.destroy_process_group()
