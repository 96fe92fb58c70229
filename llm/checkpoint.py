"""Atomic checkpoints: model (safetensors), optimiser, RNG states, step and trainer state.

Layout: `out_dir/checkpoints/step_00000010/{model.safetensors, optim.pt, state.pt}` and a
`out_dir/checkpoints/latest` file naming the newest. A checkpoint is written into a `.tmp` directory
that is renamed into place with `os.replace`, and `latest` is replaced the same way, so an
interrupted write never leaves a readable half checkpoint.
"""

from __future__ import annotations

import os
import random
import shutil
from pathlib import Path

import numpy as np
import torch
from safetensors.torch import load_model, save_model


def rng_state() -> dict:
    """Python, numpy (global), torch CPU and CUDA RNG states."""
    return {"python": random.getstate(), "numpy": np.random.get_state(),
            "torch": torch.get_rng_state(),
            "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else None}


def set_rng_state(state: dict) -> None:
    random.setstate(state["python"])
    np.random.set_state(state["numpy"])
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


def save_checkpoint(out_dir, step: int, model, optimizer, state: dict, keep_last: int = 2) -> Path:
    """Write checkpoint `step` atomically; `state` holds any picklable trainer state."""
    root = Path(out_dir, "checkpoints")
    root.mkdir(parents=True, exist_ok=True)
    final = root / f"step_{step:08d}"
    tmp = root / f"step_{step:08d}.tmp"
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir()
    save_model(_unwrap(model), str(tmp / "model.safetensors"))
    torch.save(optimizer.state_dict(), tmp / "optim.pt")
    torch.save({"step": step, "rng": rng_state(), **state}, tmp / "state.pt")
    shutil.rmtree(final, ignore_errors=True)
    os.replace(tmp, final)
    latest_tmp = root / "latest.tmp"
    latest_tmp.write_text(final.name)
    os.replace(latest_tmp, root / "latest")
    for old in sorted(p for p in root.glob("step_*") if p.suffix != ".tmp")[:-keep_last]:
        shutil.rmtree(old, ignore_errors=True)
    return final


def latest_checkpoint(out_dir) -> Path | None:
    """Directory of the newest complete checkpoint, or None."""
    latest = Path(out_dir, "checkpoints", "latest")
    if not latest.exists():
        return None
    path = latest.parent / latest.read_text().strip()
    return path if path.is_dir() else None


def load_checkpoint(path, model, optimizer=None) -> dict:
    """Load weights (and optimiser) in place, restore RNG states, return the trainer state dict."""
    path = Path(path)
    missing, unexpected = load_model(_unwrap(model), str(path / "model.safetensors"), strict=False)
    if unexpected or [m for m in missing if "rotary" not in m]:
        raise ValueError(f"checkpoint {path} does not match the model: missing {missing}, "
                         f"unexpected {unexpected}")
    if optimizer is not None:
        optimizer.load_state_dict(torch.load(path / "optim.pt", weights_only=False))
    state = torch.load(path / "state.pt", weights_only=False)
    set_rng_state(state["rng"])
    return state
