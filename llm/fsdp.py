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

Sharded checkpoints (`save_sharded` / `load_sharded`, called by llm.checkpoint): torch distributed
checkpoint of `get_state_dict(model, optimizer)`, every process writing its own shards. torch's
reader unpickles `.metadata` with pickle.load and non-tensor items with torch.load(weights_only=
False); `load_sharded` replaces both (an allow-list unpickler, llm.checkpoint.safe_load), so a
tampered checkpoint is refused with a ValueError instead of running code.
"""

from __future__ import annotations

import contextlib
import pickle

import torch
import torch.distributed as tdist
from torch.distributed.fsdp import FSDPModule, fully_shard


def ensure_group(device: torch.device) -> None:
    """A process group for FSDP2: the one torchrun made, else a one-process group (NCCL on CUDA,
    gloo on the CPU) on an in-memory store."""
    if not tdist.is_initialized():
        if device.type == "cuda":
            torch.cuda.set_device(device)  # before NCCL starts: its communicator lives on this device
        tdist.init_process_group("nccl" if device.type == "cuda" else "gloo", store=tdist.HashStore(),
                                 rank=0, world_size=1)


def blocks(model) -> list[torch.nn.Module]:
    """The modules sharded as their own unit: those whose class is named in `_no_split_modules`."""
    names = set(getattr(model, "_no_split_modules", None) or ())
    return [m for m in model.modules() if type(m).__name__ in names]


def shard(model, dist):
    """fully_shard every block, then the root, over all processes of `dist`; returns `model` itself
    (sharded in place). BanditLM (no save_pretrained(state_dict=...)) and LoRA policies (whose final
    model is merged from full weights, llm.lora.merged_model) are refused: use ddp for them."""
    from .models import BanditLM
    if isinstance(model, BanditLM):
        raise ValueError("dist.strategy = 'fsdp2' is invalid for model.name = 'bandit'; allowed: ddp")
    if any("lora_" in name for name, _ in model.named_parameters()):  # merging adapters needs full weights
        raise ValueError("dist.strategy = 'fsdp2' is invalid with model.lora_rank > 0; allowed: ddp")
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


def save_sharded(path, model, optimizer) -> None:
    """torch.distributed.checkpoint of the sharded model and optimiser state into directory `path`
    (every process writes its shards)."""
    import torch.distributed.checkpoint as dcp
    from torch.distributed.checkpoint.state_dict import get_state_dict
    msd, osd = get_state_dict(model, optimizer)
    dcp.save({"model": msd, "optim": osd}, checkpoint_id=str(path))


_DCP_GLOBALS = frozenset({("torch", "Size"), ("torch.serialization", "_get_layout"), ("pathlib", "PosixPath"),
                          ("pathlib", "WindowsPath"), ("torch.distributed.checkpoint.filesystem", "_StorageInfo")})
"""The globals a torch.distributed.checkpoint `.metadata` pickle may name, besides torch dtypes and the
classes defined in torch.distributed.checkpoint.metadata."""


class _MetadataUnpickler(pickle.Unpickler):
    """Unpickles DCP metadata; a global outside _DCP_GLOBALS, torch dtypes and the classes defined in
    torch.distributed.checkpoint.metadata is refused before it is imported or called."""

    def find_class(self, module, name):
        import torch.distributed.checkpoint.metadata as md
        ok = ((module, name) in _DCP_GLOBALS
              or (module == "torch" and isinstance(getattr(torch, name, None), torch.dtype))
              or (module == md.__name__ and getattr(getattr(md, name, None), "__module__", None) == md.__name__))
        if not ok:
            raise pickle.UnpicklingError(f"global '{module}.{name}' is not allowed")
        return super().find_class(module, name)


def _safe_dcp_io(path):
    """(storage reader, load planner) for dcp.load that run no code from the checkpoint: the metadata is
    read by _MetadataUnpickler, non-tensor items (optimiser hyperparameters) by safe_load (torch's
    defaults use pickle.load and torch.load(weights_only=False) there)."""
    from torch.distributed.checkpoint import DefaultLoadPlanner, FileSystemReader
    from torch.distributed.checkpoint._traverse import set_element
    from torch.distributed.checkpoint.metadata import StorageMeta

    class Reader(FileSystemReader):
        def read_metadata(self, *args, **kwargs):
            file = self._get_metadata_path(kwargs.get("rank"))
            with self.fs.create_stream(file, "rb") as f:
                try:
                    metadata = _MetadataUnpickler(f).load()
                except pickle.UnpicklingError as e:
                    raise ValueError(f"checkpoint file {file} is invalid; allowed: torch distributed checkpoint "
                                     f"metadata only (refused: {e})") from None
            if getattr(metadata, "storage_meta", None) is None:
                metadata.storage_meta = StorageMeta()
            metadata.storage_meta.load_id = self.load_id
            return metadata

    class Planner(DefaultLoadPlanner):
        def load_bytes(self, read_item, value) -> None:
            from .checkpoint import safe_load
            value = safe_load(value)
            if self.flatten_state_dict:
                set_element(self.original_state_dict, self.mappings[read_item.dest_index.fqn], value)
            else:
                self.state_dict[read_item.dest_index.fqn] = value

    return Reader(str(path)), Planner()


def load_sharded(path, model, optimizer=None) -> None:
    """Load a `save_sharded` directory into the (sharded) model and, if given, the optimiser; nothing
    read can run code (_safe_dcp_io)."""
    import torch.distributed.checkpoint as dcp
    from torch.distributed.checkpoint.state_dict import (
        get_model_state_dict,
        get_state_dict,
        set_model_state_dict,
        set_state_dict,
    )
    reader, planner = _safe_dcp_io(path)
    reader.read_metadata()  # a refusal raised here (dcp.load catches read errors and retries per rank)
    if optimizer is None:
        sd = {"model": get_model_state_dict(model)}
        dcp.load(sd, storage_reader=reader, planner=planner)
        set_model_state_dict(model, sd["model"])
        return
    msd, osd = get_state_dict(model, optimizer)
    sd = {"model": msd, "optim": osd}
    dcp.load(sd, storage_reader=reader, planner=planner)
    set_state_dict(model, optimizer, model_state_dict=sd["model"], optim_state_dict=sd["optim"])
