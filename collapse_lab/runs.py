"""Result cache and provenance: the only library module that touches disk.

    result = cached("sampling_bias", config, lambda: {"mass": array, ...})   # npz under .cache/
    prov = provenance(seed=0, config=config)                                  # git, versions, time
    write_json(path, payload)                                                 # atomic

The cache key hashes the JSON of the config together with the code version: a hash of every
`collapse_lab` source file and of the calling study script, so editing the math or the study
recomputes, while re-plotting an unchanged run is instant.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import platform
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from importlib import metadata
from pathlib import Path

import numpy as np

__all__ = ["cached", "cache_key", "cache_path", "load_cached", "store_cached", "code_version", "provenance",
           "write_json", "atomic_write", "CACHE_DIR", "to_jsonable"]

ROOT = Path(__file__).resolve().parent.parent
CACHE_DIR = Path(os.environ.get("COLLAPSE_LAB_CACHE", ROOT / ".cache" / "runs"))
_PACKAGES = ("numpy", "numba", "torch", "sympy", "matplotlib", "transformers")


def atomic_write(path: str | Path, data: bytes) -> None:
    """Write bytes to `path` atomically: a temporary file in the same folder, fsync, os.replace."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def to_jsonable(obj):
    """numpy scalars/arrays, Paths, dataclass-like objects -> plain JSON types; a non-finite float
    (NaN, inf: a quantity that could not be computed) -> None, so every file is strict JSON."""
    if isinstance(obj, dict):
        return {str(k): to_jsonable(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [to_jsonable(v) for v in obj]
    if isinstance(obj, np.ndarray):
        return to_jsonable(obj.tolist())
    if isinstance(obj, (np.bool_,)):
        return bool(obj)
    if isinstance(obj, np.integer):
        return int(obj)
    if isinstance(obj, (float, np.floating)):
        return float(obj) if math.isfinite(obj) else None
    if isinstance(obj, Path):
        return str(obj)
    if hasattr(obj, "to_dict"):
        return to_jsonable(obj.to_dict())
    return obj


def write_json(path: str | Path, payload: dict) -> None:
    """Atomically write `payload` as indented JSON."""
    text = json.dumps(to_jsonable(payload), indent=2, sort_keys=False, allow_nan=False)
    atomic_write(path, (text + "\n").encode())


def _hash_files(paths) -> str:
    h = hashlib.sha256()
    for p in sorted(paths):
        h.update(str(p.relative_to(ROOT) if p.is_relative_to(ROOT) else p.name).encode())
        h.update(p.read_bytes())
    return h.hexdigest()[:16]


def code_version(*extra_files: str | Path) -> str:
    """Hash of the collapse_lab sources plus `extra_files` (e.g. the study script)."""
    files = list((ROOT / "collapse_lab").rglob("*.py")) + [Path(f).resolve() for f in extra_files]
    return _hash_files(files)


def _git(*args: str) -> str | None:
    try:
        out = subprocess.run(["git", *args], cwd=ROOT, capture_output=True, text=True, timeout=10)
    except (OSError, subprocess.SubprocessError):
        return None
    return out.stdout.strip() if out.returncode == 0 else None


def provenance(seed=None, config=None, wall_time: float | None = None) -> dict:
    """Where a result came from: git commit (and dirty flag), seed, config, versions, host, time."""
    versions = {}
    for pkg in _PACKAGES:
        try:
            versions[pkg] = metadata.version(pkg)
        except metadata.PackageNotFoundError:
            versions[pkg] = None
    status = _git("status", "--porcelain", "--untracked-files=no")
    return {
        "git_commit": _git("rev-parse", "HEAD"),
        "git_dirty": None if status is None else bool(status),
        "seed": seed,
        "config": to_jsonable(config),
        "python": sys.version.split()[0],
        "platform": platform.platform(),
        "packages": versions,
        "code_version": code_version(),
        "wall_time_s": wall_time,
        "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    }


def cache_key(name: str, config: dict, *extra_files: str | Path, code: str | None = None) -> str:
    """sha256 of (name, config JSON, code version) — 20 hex digits. `code`: a precomputed
    code_version(*extra_files) (a sweep hashes the sources once, not once per run)."""
    code = code_version(*extra_files) if code is None else code
    blob = json.dumps({"name": name, "config": to_jsonable(config), "code": code}, sort_keys=True)
    return hashlib.sha256(blob.encode()).hexdigest()[:20]


def cache_path(name: str, config: dict, *extra_files: str | Path, code: str | None = None) -> Path:
    """Where `cached` stores the result of (name, config, code version): CACHE_DIR/<name>-<key>.npz."""
    return CACHE_DIR / f"{name}-{cache_key(name, config, *extra_files, code=code)}.npz"


def load_cached(path: str | Path, refresh: bool = False) -> dict[str, np.ndarray] | None:
    """The arrays stored at `path`, or None when absent or refreshing (env COLLAPSE_LAB_REFRESH=1)."""
    path = Path(path)
    if refresh or os.environ.get("COLLAPSE_LAB_REFRESH") == "1" or not path.exists():
        return None
    with np.load(path, allow_pickle=False) as data:
        return {k: data[k] for k in data.files}


def store_cached(path: str | Path, result: dict) -> dict[str, np.ndarray]:
    """Atomically write a dict of arrays as npz at `path` (temp file + os.replace); returns the arrays."""
    path = Path(path)
    result = {k: np.asarray(v) for k, v in result.items()}
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.stem}.", suffix=".tmp.npz")
    os.close(fd)
    try:
        np.savez(tmp, **result)
        os.replace(tmp, path)
    finally:
        Path(tmp).unlink(missing_ok=True)
    return result


def cached(name: str, config: dict, compute: Callable[[], dict[str, np.ndarray]], *extra_files,
           refresh: bool = False) -> dict[str, np.ndarray]:
    """Return compute()'s dict of arrays, loading it from the npz cache when the key matches.

    The key covers `config` and the code version (collapse_lab sources + `extra_files`).
    `refresh=True` (or env COLLAPSE_LAB_REFRESH=1) recomputes and overwrites.
    """
    path = cache_path(name, config, *extra_files)
    hit = load_cached(path, refresh)
    return hit if hit is not None else store_cached(path, compute())
