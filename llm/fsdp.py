"""FSDP2 (`torch.distributed.fsdp.fully_shard`) for `dist.strategy = "fsdp2"`: sharding, rollouts with
gathered parameters, and the state dicts of sharded checkpoints.

Sharding: every repeated block named in the model's `_no_split_modules` (Hugging Face's list, e.g.
LlamaDecoderLayer, Qwen2DecoderLayer) is its own FSDP unit, the root holds the rest (embeddings, the
final norm, the LM head; tied embeddings stay in one unit). Parameters become DTensors sharded on
dim 0 over all processes; the optimiser is built after sharding, so its state is sharded too.

Exactness (llm.train's accounting, docs in its module string): FSDP2 reduce-scatters gradients as a
mean over processes, like DDP, so each process still backpropagates loss * world; gradient
accumulation defers the reduction with `set_requires_gradient_sync(False)` (llm.dist.grad_sync).

Rollouts: a sampling loop stops when every row of *this* process has ended, so processes run
different numbers of forwards; under FSDP2 each forward all-gathers, which would deadlock. `gathered`
all-gathers every unit once (the same collectives in every process) and keeps the parameters
unsharded until sampling ends, so sampling forwards run no collectives (and skip per-layer gathers
in a single process too).

A single process (world 1, e.g. llm.gpu_check) still shards, on a one-process group created here.
"""

from __future__ import annotations

import contextlib

import torch
import torch.distributed as tdist
from torch.distributed.fsdp import FSDPModule, fully_shard


def ensure_group(device: torch.device) -> None:
    """A process group for FSDP2: the one torchrun made, else a one-process group (NCCL on CUDA,
    gloo on the CPU) on an in-memory store."""
    if not tdist.is_initialized():
        tdist.init_process_group("nccl" if device.type == "cuda" else "gloo", store=tdist.HashStore(),
                                 rank=0, world_size=1)
        if device.type == "cuda":
            torch.cuda.set_device(device)


def blocks(model) -> list[torch.nn.Module]:
    """The modules sharded as their own unit: those whose class is named in `_no_split_modules`."""
    names = set(getattr(model, "_no_split_modules", None) or ())
    return [m for m in model.modules() if type(m).__name__ in names]


def shard(model, dist):
    """fully_shard every block, then the root, over all processes of `dist`; returns `model` itself
    (sharded in place). Models without save_pretrained(state_dict=...) (BanditLM) are refused."""
    from .models import BanditLM
    if isinstance(model, BanditLM):
        raise ValueError("dist.strategy = 'fsdp2' is invalid for model.name = 'bandit'; allowed: ddp")
    ensure_group(dist.device)
    from torch.distributed.device_mesh import init_device_mesh
    mesh = init_device_mesh(dist.device.type, (tdist.get_world_size(),))
    for block in blocks(model):
        fully_shard(block, mesh=mesh)
    fully_shard(model, mesh=mesh)
    return model


def is_sharded(model) -> bool:
    """True for a model wrapped by `shard` (FSDP2)."""
    return isinstance(model, FSDPModule)


@contextlib.contextmanager
def gathered(model):
    """Inside: every FSDP unit's parameters all-gathered once and kept (no reshard after forward), so
    forwards run no collectives; on exit every unit is resharded and reshard-after-forward restored to
    FSDP2's default (True for blocks, False for the root). A model that is not sharded: nothing."""
    units = [m for m in model.modules() if isinstance(m, FSDPModule)]
    for m in units:
        m.set_reshard_after_forward(False, recurse=False)
        m.unshard()
    try:
        yield
    finally:
        for m in units:
            m.reshard()
            m.set_reshard_after_forward(m is not model, recurse=False)


class GatheredEngine:
    """A rollout engine whose `generate` runs inside `gathered(module)`; other attributes are the
    engine's own."""

    def __init__(self, engine, module):
        self.engine, self.module = engine, module

    def generate(self, *args, **kwargs):
        """The engine's generate with the policy's parameters gathered."""
        with gathered(self.module):
            return self.engine.generate(*args, **kwargs)

    def __getattr__(self, name):
        return getattr(self.engine, name)


def full_state_dict(model) -> dict:
    """The full (unsharded) state dict on the CPU of the main process (every process must call: it
    all-gathers; other processes get {}); a model that is not sharded: its own state dict."""
    if not is_sharded(model):
        return getattr(model, "module", model).state_dict()
    from torch.distributed.checkpoint.state_dict import StateDictOptions, get_model_state_dict
    return get_model_state_dict(model, options=StateDictOptions(full_state_dict=True, cpu_offload=True))
