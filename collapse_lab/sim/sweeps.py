"""Sweeps: run a grid of SimConfigs x seeds, cached per run, into one tidy pandas DataFrame.

    from collapse_lab.sim import SimConfig, multimode, sweep
    df = sweep(multimode(64, 32), {"recipe": ["grpo", "ips_grpo"], "lr": [0.1, 0.3, 1.0]},
               seeds=range(4), base=SimConfig(steps=200, replicates=8), executor="process")
    curves = df.groupby(["recipe", "lr", "step"])["pass@64"].mean()

Grid: a dict. A string key is a SimConfig field (or "overrides.<name>", one recipe override) with
a list of values; several keys form their Cartesian product. A tuple key zips fields that vary
together: {("lr", "steps"): [(0.1, 400), (1.0, 40)]} is two points. With a problem factory
(a callable instead of a Problem), keys that are not SimConfig fields are its keyword arguments,
e.g. sweep(lambda coupling: coupled(coupling=coupling), {"coupling": [0, 0.5, 1]}, ...).
`base` gives the fields the grid does not set. A list of dicts is taken as explicit points.

Every run is `simulate(problem, cfg, seed)` for each seed in `seeds` (the same seeds at every point:
common random numbers), so the table does not depend on the executor, the worker count or the order
of completion: "inline" (this process), "process" (a local spawn pool of `workers`) and "ray"
(`ray.init()` locally unless Ray is already initialised, e.g. `ray.init(address=...)` on a
cluster; needs `pip install collapse-lab[ray]`) give bit-identical tables.

Caching (collapse_lab/runs.py): each (point, seed) is stored as it finishes, keyed by the hash of
its config, its problem's arrays, its seed and the code version; rerunning an interrupted sweep
computes only the missing runs, and a re-plot computes nothing. Configs are validated before any
run (the error names the point); a run that fails at run time is reported after the others have
finished and been cached, as one SweepError naming each failed point.

Columns (one row per point x seed x replicate x logged step):
    point (int, grid order), seed, replicate (r < cfg.replicates), step,
    one column per grid key (tuple keys: one per field; "overrides.eta" keeps its name),
    pass@<k> for every k of the runs' ks (NaN where a point logs another k set),
    entropy, coverage, effective_modes, kl, zero_var_frac, saturated_share (trajectory.py defines
    them), log_ratio<i> for each tracked pair. df.attrs["base"] holds the base config.
"""

from __future__ import annotations

import dataclasses
import hashlib
import itertools
import os
from typing import TYPE_CHECKING

import numpy as np

from .. import runs
from .config import SimConfig
from .problems import Problem
from .simulate import build_recipe, simulate

if TYPE_CHECKING:
    import pandas

__all__ = ["sweep", "expand_grid", "SweepError", "EXECUTORS"]

EXECUTORS = ("inline", "process", "ray")
FIELDS = tuple(f.name for f in dataclasses.fields(SimConfig))
_SCALARS = ("entropy", "coverage", "effective_modes", "kl", "zero_var_frac", "saturated_share")


class SweepError(RuntimeError):
    """Some runs of a sweep failed; `failures` lists (point index, point, seed, exception)."""

    def __init__(self, message, failures):
        super().__init__(message)
        self.failures = failures


def expand_grid(grid) -> list[dict]:
    """Points of a grid (module docstring): product over keys, zip within a tuple key."""
    if isinstance(grid, (list, tuple)):
        if not all(isinstance(p, dict) for p in grid):
            raise ValueError(f"grid = {grid!r} is invalid; allowed: a dict of lists or a list of dicts")
        return [dict(p) for p in grid]
    if not isinstance(grid, dict):
        raise ValueError(f"grid = {grid!r} is invalid; allowed: a dict of lists or a list of dicts")
    axes = []
    for key, values in grid.items():
        values = list(values) if isinstance(values, (list, tuple, range, np.ndarray)) else None
        if not values:
            raise ValueError(f"grid[{key!r}] = {grid[key]!r} is invalid; allowed: a non-empty list of values")
        if isinstance(key, tuple):
            if not all(isinstance(v, (tuple, list)) and len(v) == len(key) for v in values):
                raise ValueError(f"grid[{key!r}] = {values!r} is invalid; allowed: a list of "
                                 f"{len(key)}-tuples (zipped fields)")
            axes.append([dict(zip(key, v)) for v in values])
        else:
            axes.append([{key: v} for v in values])
    return [dict(kv for d in combo for kv in d.items()) for combo in itertools.product(*axes)]


def _config(point: dict, base: SimConfig, factory: bool) -> tuple[SimConfig, dict]:
    """(SimConfig of a point, the factory's keyword arguments)."""
    fields, dotted, kwargs = {}, {}, {}
    for k, v in point.items():
        if k in FIELDS:
            fields[k] = v
        elif isinstance(k, str) and k.startswith("overrides."):
            dotted[k.split(".", 1)[1]] = v
        elif factory:
            kwargs[k] = v
        else:
            raise ValueError(f"grid key {k!r} is invalid; allowed: SimConfig fields ({', '.join(FIELDS)}), "
                             "'overrides.<name>', or keyword arguments of a problem factory")
    overrides = dict(fields.pop("overrides", base.overrides)) | dotted
    return dataclasses.replace(base, **fields, overrides=overrides, progress=False), kwargs


def _problem_hash(pr: Problem) -> str:
    h = hashlib.sha256(pr.name.encode())
    for a in (pr.rewards, pr.logits, pr.correct, pr.features):
        h.update(b"-" if a is None else np.ascontiguousarray(a).tobytes() + str(a.shape).encode())
    return h.hexdigest()[:20]


def run_one(problem: Problem, cfg: SimConfig, seed: int) -> dict[str, np.ndarray]:
    """The arrays a sweep keeps of one simulate() call (executor workers run this)."""
    tr = simulate(problem, cfg, seed=seed)
    return {"steps": tr.steps, "ks": tr.ks, "pass_at_k": tr.pass_at_k, "log_ratios": tr.log_ratios,
            **{k: getattr(tr, k) for k in _SCALARS}}


def _init_worker(threads: int) -> None:
    import numba

    numba.set_num_threads(max(1, min(threads, numba.config.NUMBA_NUM_THREADS)))


def sweep(problem, grid, seeds=(0,), *, base: SimConfig | None = None, executor: str = "inline",
          workers: int | None = None, cache: bool = True, name: str = "sweep", progress: bool = True,
          extra_files=()) -> pandas.DataFrame:
    """Run every grid point x seed (module docstring) and return the tidy DataFrame.

    problem: a Problem, or a factory called with the point's non-SimConfig keys. base: SimConfig of
    the fields the grid leaves out. executor: "inline" | "process" | "ray"; workers: pool size
    ("process": default os.cpu_count()). cache: store/load each run under runs.CACHE_DIR (name is
    the file prefix; extra_files, e.g. a study script, enter the code version of the key).
    """
    if executor not in EXECUTORS:
        raise ValueError(f"executor = {executor!r} is invalid; allowed: {', '.join(EXECUTORS)}")
    base = SimConfig() if base is None else base
    if not isinstance(base, SimConfig):
        raise ValueError(f"base = {base!r} is invalid; allowed: a SimConfig")
    seeds = list(seeds)
    if not seeds or not all(isinstance(s, (int, np.integer)) and not isinstance(s, bool) and s >= 0 for s in seeds):
        raise ValueError(f"seeds = {seeds!r} is invalid; allowed: a non-empty list of ints >= 0")
    factory = not isinstance(problem, Problem)
    if factory and not callable(problem):
        raise ValueError(f"problem = {problem!r} is invalid; allowed: a Problem or a callable returning one")
    points = expand_grid(grid)
    jobs, problems = [], {}
    code = runs.code_version(*extra_files) if cache else None
    for i, point in enumerate(points):
        try:
            cfg, kwargs = _config(point, base, factory)
            pr = problem(**kwargs) if factory else problem
            cfg.validate(pr)
            build_recipe(cfg)
        except Exception as e:
            raise ValueError(f"sweep point {i} {point!r}: {e}") from e
        ph = _problem_hash(pr)
        problems[ph] = pr
        for s in seeds:
            key = {"sim": cfg.to_dict(), "problem": ph, "seed": int(s)}
            jobs.append((i, point, int(s), cfg, ph, runs.cache_path(name, key, code=code) if cache else None))
    results = _execute(jobs, problems, executor, workers, progress)
    return _table(points, jobs, results, base)


def _execute(jobs, problems, executor, workers, progress) -> list:
    """Results of every job in job order (cache first); SweepError after all others finished."""
    from tqdm.auto import tqdm

    results = [runs.load_cached(path) if path is not None else None for *_, path in jobs]
    todo = [j for j, r in enumerate(results) if r is None]
    failures = []
    bar = tqdm(total=len(jobs), initial=len(jobs) - len(todo), desc="sweep", disable=not progress)

    def done(j, res, err):
        i, point, seed, _, _, path = jobs[j]
        if err is not None:
            failures.append((i, point, seed, err))
        else:
            results[j] = res
            if path is not None:
                runs.store_cached(path, res)
        bar.update(1)

    runner = {"inline": _inline, "process": _process, "ray": _ray}[executor]
    runner([(j, problems[jobs[j][4]], jobs[j][3], jobs[j][2]) for j in todo], workers, done)
    bar.close()
    if failures:
        i, point, seed, err = failures[0]
        raise SweepError(f"sweep: {len(failures)} of {len(jobs)} runs failed (the others are cached; "
                         f"rerunning computes only the failed ones); first: point {i} {point!r} seed {seed}: "
                         f"{type(err).__name__}: {err}", failures) from err
    return results


def _inline(tasks, workers, done):
    for j, pr, cfg, seed in tasks:
        try:
            res = run_one(pr, cfg, seed)
        except Exception as e:  # noqa: BLE001  (reported with its point after the other runs)
            done(j, None, e)
        else:
            done(j, res, None)


def _process(tasks, workers, done):
    import multiprocessing as mp
    from concurrent.futures import ProcessPoolExecutor, as_completed

    workers = workers or os.cpu_count() or 1
    threads = max(1, (os.cpu_count() or 1) // workers)
    with ProcessPoolExecutor(workers, mp_context=mp.get_context("spawn"), initializer=_init_worker,
                             initargs=(threads,)) as pool:
        futures = {pool.submit(run_one, pr, cfg, seed): j for j, pr, cfg, seed in tasks}
        for f in as_completed(futures):
            err = f.exception()
            done(futures[f], None if err else f.result(), err)


def _ray(tasks, workers, done):
    try:
        import ray
    except ImportError as e:
        raise ImportError("executor='ray' needs Ray: pip install collapse-lab[ray]") from e
    if not ray.is_initialized():
        ray.init()
    remote = ray.remote(num_cpus=1)(run_one)
    refs = {remote.remote(pr, cfg, seed): j for j, pr, cfg, seed in tasks}
    pending = list(refs)
    while pending:
        ready, pending = ray.wait(pending, num_returns=1)
        try:
            res, err = ray.get(ready[0]), None
        except ray.exceptions.RayTaskError as e:
            res, err = None, e.as_instanceof_cause()
        done(refs[ready[0]], res, err)


def _table(points, jobs, results, base) -> pandas.DataFrame:
    """Tidy DataFrame (module docstring) from the per-run arrays, in job order."""
    import pandas as pd  # imported here: `import collapse_lab.sim` stays light

    all_ks = sorted({int(k) for r in results for k in r["ks"]})
    frames = []
    for (i, point, seed, _, _, _), res in zip(jobs, results):
        R, L = res["entropy"].shape
        cols = {"point": np.full(R * L, i), "seed": np.full(R * L, seed), "replicate": np.repeat(np.arange(R), L),
                "step": np.tile(res["steps"], R)}
        for k, v in point.items():
            cols[k] = [v] * (R * L)
        ks = [int(k) for k in res["ks"]]
        for k in all_ks:
            cols[f"pass@{k}"] = res["pass_at_k"][:, :, ks.index(k)].ravel() if k in ks else np.full(R * L, np.nan)
        for k in _SCALARS:
            cols[k] = res[k].ravel()
        for n in range(res["log_ratios"].shape[2]):
            cols[f"log_ratio{n}"] = res["log_ratios"][:, :, n].ravel()
        frames.append(pd.DataFrame(cols))
    df = pd.concat(frames, ignore_index=True)
    df.attrs["base"] = base.to_dict()
    return df
