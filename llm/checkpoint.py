"""Atomic, code-free checkpoints: model (safetensors), optimiser, RNG states, step, trainer state, config.

Layout: `out_dir/checkpoints/step_00000010/{model.safetensors, optim.pt, state.pt, config.json}` and a
`out_dir/checkpoints/latest` file naming the newest. A checkpoint is written into a `.tmp` directory
(files fsynced) that is renamed into place with `os.replace`, and `latest` is replaced the same way,
so an interrupted write never leaves a readable half checkpoint.

Nothing loaded can run code: `optim.pt` and `state.pt` hold only tensors and plain containers
(dict, list, tuple, str, int, float, bool, None) and are read with `torch.load(weights_only=True)`;
numpy arrays (RNG state, history counts) are stored as tensors. A file holding anything else (a pickle
with a `__reduce__` payload) is refused with a ValueError before any of it is executed.
`config.json` is the resolved run config, compared with the current one on resume (llm.train).

FSDP2 (`dist.strategy = "fsdp2"`, llm.fsdp): the model and optimiser are saved sharded, every process
writing its own shards with torch.distributed.checkpoint into `step_.../dcp/` (read by `dcp.load` into
the sharded state dicts of `get_state_dict`, applied with `set_state_dict`: a resumed run continues
exactly; llm.fsdp.load_sharded reads DCP's pickled metadata with an allow-list unpickler and its
non-tensor items with weights_only, so loading runs no code either); `state.pt` and `config.json` as
above. The final model is gathered to the main process and written in the Hugging Face layout
(`save_final`).
"""

from __future__ import annotations

import json
import os
import pickle
import random
import shutil
from pathlib import Path

import numpy as np
import torch
from safetensors.torch import load_model, save_model

from collapse_lab.runs import atomic_write

from .dist import Dist, barrier
from .fsdp import full_state_dict, is_sharded, load_sharded, save_sharded


def _fsync(path) -> None:
    """Flush a file (or directory) to disk; a no-op where the platform cannot open it for that."""
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def atomic_write_text(path, text: str) -> None:
    """Write `text` to `path` via `path.tmp` + fsync + os.replace: a crash leaves the old or the new
    file, never a truncated one."""
    atomic_write(path, text.encode("utf-8"))
    _fsync(Path(path).parent)


def replace_dir(tmp, final) -> None:
    """Move the finished directory `tmp` to `final`. An existing `final` is first renamed to
    `final.old` (deleted afterwards), so a crash leaves either copy on disk, never a mixed one."""
    tmp, final = Path(tmp), Path(final)
    for f in tmp.iterdir():
        _fsync(f)
    old = final.with_name(final.name + ".old")
    if final.exists():
        shutil.rmtree(old, ignore_errors=True)
        os.replace(final, old)
    os.replace(tmp, final)
    _fsync(final.parent)
    shutil.rmtree(old, ignore_errors=True)


def to_safe(obj):
    """`obj` with numpy arrays as tensors and numpy scalars as Python numbers (weights_only-loadable)."""
    if isinstance(obj, np.ndarray):
        return torch.from_numpy(obj.copy())
    if isinstance(obj, np.generic):
        return obj.item()
    if isinstance(obj, dict):
        return type(obj)((k, to_safe(v)) for k, v in obj.items())
    if isinstance(obj, (list, tuple)):
        return type(obj)(to_safe(v) for v in obj)
    return obj


def rng_state() -> dict:
    """Python, numpy (global MT19937, key as an int64 tensor), torch CPU and CUDA RNG states."""
    key, keys, pos, has_gauss, gauss = np.random.get_state()
    return {"python": random.getstate(),
            "numpy": {"name": key, "keys": torch.from_numpy(keys.astype(np.int64)), "pos": int(pos),
                      "has_gauss": int(has_gauss), "gauss": float(gauss)},
            "torch": torch.get_rng_state(),
            "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else None}


def set_rng_state(state: dict) -> None:
    random.setstate(state["python"])
    n = state["numpy"]
    np.random.set_state((n["name"], n["keys"].numpy().astype(np.uint32), n["pos"], n["has_gauss"], n["gauss"]))
    torch.set_rng_state(state["torch"])
    if state.get("cuda") is not None and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def seed_everything(seed: int, threads: int = 0) -> None:
    """The one place the global RNGs are seeded (and torch's CPU thread count set, if threads > 0)."""
    if threads:
        torch.set_num_threads(threads)
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def _unwrap(model):
    return getattr(model, "module", model)


def save_checkpoint(out_dir, step: int, model, optimizer, state: dict, keep_last: int = 2,
                    config: dict | None = None, dist: Dist | None = None) -> Path | None:
    """Write checkpoint `step` atomically. `state`: trainer state of tensors, numpy arrays (stored as
    tensors) and plain containers; `config`: the resolved run config (JSON). Every process calls it:
    an FSDP2 model is saved sharded by all of them, a DDP / single model by the main process only
    (the others return None)."""
    dist = dist or Dist()
    sharded = is_sharded(model)
    if not sharded and not dist.is_main:
        return None
    root = Path(out_dir, "checkpoints")
    final = root / f"step_{step:08d}"
    tmp = root / f"step_{step:08d}.tmp"
    if dist.is_main:
        root.mkdir(parents=True, exist_ok=True)
        shutil.rmtree(tmp, ignore_errors=True)
        tmp.mkdir()
    if sharded:
        barrier(dist)  # tmp exists before any process writes its shards
        save_sharded(tmp / "dcp", model, optimizer)
    else:
        save_model(_unwrap(model), str(tmp / "model.safetensors"))
        torch.save(to_safe(optimizer.state_dict()), tmp / "optim.pt")
    if dist.is_main:
        torch.save(to_safe({"step": step, "rng": rng_state(), **state}), tmp / "state.pt")
        if config is not None:
            (tmp / "config.json").write_text(json.dumps(config, indent=1, sort_keys=True))
        replace_dir(tmp, final)
        atomic_write_text(root / "latest", final.name)
        done = sorted(p for p in root.glob("step_*") if p.suffix not in (".tmp", ".old"))
        stale = [p for p in root.glob("step_*") if p.suffix in (".tmp", ".old")]  # left by a crash
        for old in done[:-keep_last] + stale:
            shutil.rmtree(old, ignore_errors=True)
    if sharded:
        barrier(dist)  # the checkpoint is in place before any process goes on
    return final


def save_final(model, tok, path, dist: Dist | None = None) -> None:
    """The model in the Hugging Face layout (config.json, model.safetensors, tokenizer files) in
    directory `path`, written by the main process. Every process calls it: an FSDP2 model's full
    state dict is first gathered to the main process."""
    dist = dist or Dist()
    if not is_sharded(model):
        if dist.is_main:
            from .models import save_model as save_pretrained
            save_pretrained(model, tok, path)
        return
    sd = full_state_dict(model)  # a collective: every process
    if dist.is_main:
        from transformers.utils import logging as hf_logging
        hf_logging.disable_progress_bar()
        Path(path).mkdir(parents=True, exist_ok=True)
        model.save_pretrained(path, state_dict=sd)
        tok.save(path)


def latest_checkpoint(out_dir) -> Path | None:
    """Directory of the newest complete checkpoint, or None."""
    latest = Path(out_dir, "checkpoints", "latest")
    if not latest.exists():
        return None
    path = latest.parent / latest.read_text().strip()
    return path if path.is_dir() else None


def safe_load(file):
    """torch.load(weights_only=True): tensors and plain containers only; anything else (objects whose
    unpickling would run code) is refused with a ValueError naming the file."""
    try:
        return torch.load(file, weights_only=True)
    except pickle.UnpicklingError as e:
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise ValueError(f"checkpoint file {file} is invalid; allowed: tensors and plain containers only "
                         f"(it holds other objects, whose loading could run code; refused: {first})") from None


def checkpoint_config(path) -> dict | None:
    """The resolved config saved with checkpoint `path` (None for checkpoints without config.json)."""
    file = Path(path, "config.json")
    return json.loads(file.read_text()) if file.exists() else None


RESUME_FREE = frozenset({"run.out_dir", "run.progress", "run.tensorboard", "run.steps", "run.save_every",
                         "run.resume", "run.threads", "run.device", "run.allow_config_change",
                         "run.eval_every", "run.eval_samples", "run.eval_k", "run.eval_prompts", "run.wandb",
                         "run.wandb_project", "run.wandb_name", "run.progress_every", "run.progress_interval_s"})
"""Fields that may change between a checkpoint and its resumption (they do not change the run)."""


def config_changes(saved: dict, current: dict, free=RESUME_FREE, defaults: dict | None = None) -> dict:
    """{'section.field': (saved value, current value)} for the fields outside `free` that differ
    between two nested config dicts (JSON layout); a field missing on one side is '<absent>'. A field
    the checkpoint predates (absent in `saved`) whose current value is its default in `defaults` (the
    same layout) is no change: the older run ran with that default's behaviour."""
    flat = lambda d: {f"{sec}.{k}": v for sec, vals in (d or {}).items() for k, v in vals.items()}  # noqa: E731
    old, new, dflt = flat(saved), flat(current), flat(defaults)
    same = lambda k: old.get(k, "<absent>") == new.get(k, "<absent>") or (  # noqa: E731
        k not in old and k in dflt and new.get(k) == dflt[k])
    return {k: (old.get(k, "<absent>"), new.get(k, "<absent>")) for k in sorted(old.keys() | new.keys())
            if k not in free and not same(k)}


def load_checkpoint(path, model, optimizer=None) -> dict:
    """Load weights (and optimiser) in place, restore RNG states, return the trainer state dict.
    A sharded checkpoint (`dcp/`) is loaded by every process of an FSDP2 run."""
    path = Path(path)
    state = safe_load(path / "state.pt")  # first: a refused file stops before anything is changed
    if (path / "dcp").is_dir():
        if not is_sharded(model):
            raise ValueError(f"checkpoint {path} is sharded (dist.strategy = 'fsdp2'); allowed: resuming it "
                             "with dist.strategy = 'fsdp2'")
        load_sharded(path / "dcp", model, optimizer)
        set_rng_state(state["rng"])
        return state
    if is_sharded(model):
        raise ValueError(f"checkpoint {path} is not sharded (dist.strategy = 'ddp'); allowed: resuming it "
                         "with dist.strategy = 'ddp'")
    optim = safe_load(path / "optim.pt") if optimizer is not None else None
    missing, unexpected = load_model(_unwrap(model), str(path / "model.safetensors"), strict=False)
    if unexpected or [m for m in missing if "rotary" not in m]:
        raise ValueError(f"checkpoint {path} does not match the model: missing {missing}, "
                         f"unexpected {unexpected}")
    if optimizer is not None:
        optimizer.load_state_dict(optim)
    set_rng_state(state["rng"])
    return state
