"""Benchmark: sampled-outcome throughput of the numba and torch simulator backends.

    python -m collapse_lab.bench            # standard config: P=256, K=32, G=8, R=32, 200 steps
    python -m collapse_lab.bench --quick    # smaller, for CI smoke runs

Reports (1) JIT compile time separately from run time: two fresh subprocesses share an empty
NUMBA_CACHE_DIR, the first compiles (cache=True writes the cache), the second must load it without
compiling (its dispatcher cache_misses must be 0); (2) outcomes/s of each backend on the same
config (the torch backend runs fewer steps: it is the slow ground truth, and throughput is per
outcome); (3) their ratio against the targets (numba >= 2e7 outcomes/s and >= 10x torch on a
2-core machine); (4) the cost of logging: the same numba run with `simulate()`'s default logging
(log_every = 1, the eleven default ks) and with log_every = steps, timed alternately in this process
(best of `repeats` each), and their throughput ratio against the target >= 0.8.
Timings are wall clock on a possibly shared machine: the load average is printed.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time

import numpy as np

TARGET_RATE, TARGET_RATIO, TARGET_LOGGING = 2e7, 10.0, 0.8
STANDARD = dict(prompts=256, outcomes=32, group=8, replicates=32, steps=200, torch_steps=10)
QUICK = dict(prompts=64, outcomes=16, group=8, replicates=8, steps=50, torch_steps=5)


def _config(a, backend: str, steps: int):
    from collapse_lab.sim import SimConfig

    return SimConfig(recipe=a.recipe, steps=steps, replicates=a.replicates, group_size=a.group,
                     lr=0.1, log_every=steps, ks=(1, 1024), backend=backend)


def _problem(a):
    from collapse_lab.sim import multimode

    return multimode(a.prompts, a.outcomes, n_correct=4, seed=0)


def warmup_report(a) -> dict:
    """Import + first tiny numba simulate in this process: seconds, and the kernels' cache stats."""
    t0 = time.perf_counter()
    from collapse_lab.sim import SimConfig, kernels, simulate

    small = SimConfig(recipe=a.recipe, steps=2, replicates=2, group_size=a.group, ks=(1,))
    simulate(_problem(argparse.Namespace(prompts=4, outcomes=a.outcomes)), small, seed=0)
    stats = kernels.recipe_grad.stats
    return {"seconds": time.perf_counter() - t0, "cache_hits": sum(stats.cache_hits.values()),
            "cache_misses": sum(stats.cache_misses.values())}


def compile_times(a) -> list[dict]:
    """Cold (compiling) and warm (cached) start of two fresh processes sharing a new cache dir."""
    out = []
    with tempfile.TemporaryDirectory() as cache:
        env = dict(os.environ, NUMBA_CACHE_DIR=cache)
        for _ in range(2):
            cmd = [sys.executable, "-m", "collapse_lab.bench", "--warmup-only", "--recipe", a.recipe,
                   "--group", str(a.group), "--outcomes", str(a.outcomes)]
            res = subprocess.run(cmd, env=env, capture_output=True, text=True, check=True)
            out.append(json.loads(res.stdout.strip().splitlines()[-1]))
    return out


def logging_cost(a, repeats: int) -> dict:
    """Default logging (log_every = 1, DEFAULT_KS) vs log_every = steps, same run, timed alternately.

    Returns both rows (best-of-`repeats` outcomes/s) and ratio = rate(logged) / rate(log_every=steps).
    """
    from collapse_lab.sim import DEFAULT_KS, SimConfig, simulate

    problem = _problem(a)
    base = dict(recipe=a.recipe, steps=a.steps, replicates=a.replicates, group_size=a.group, lr=0.1,
                ks=DEFAULT_KS)
    cfgs = {"log_every=steps": SimConfig(**base, log_every=a.steps), "log_every=1": SimConfig(**base)}
    times = {k: [] for k in cfgs}
    for r in range(repeats):
        for name, cfg in cfgs.items():
            t0 = time.perf_counter()
            simulate(problem, cfg, seed=r)
            times[name].append(time.perf_counter() - t0)
    n = a.replicates * a.prompts * a.group * a.steps
    rows = [{"logging": k, "steps": a.steps, "outcomes": n, "best_s": min(v), "median_s": float(np.median(v)),
             "rate": n / min(v)} for k, v in times.items()]
    return {"rows": rows, "ratio": rows[1]["rate"] / rows[0]["rate"]}


def throughput(a, backend: str, steps: int, repeats: int) -> dict:
    """Best-of-`repeats` wall time of simulate() -> sampled outcomes per second."""
    from collapse_lab.sim import simulate

    problem, cfg = _problem(a), _config(a, backend, steps)
    times = []
    for r in range(repeats):
        t0 = time.perf_counter()
        simulate(problem, cfg, seed=r)
        times.append(time.perf_counter() - t0)
    n = a.replicates * a.prompts * a.group * steps
    return {"backend": backend, "steps": steps, "outcomes": n, "best_s": min(times),
            "median_s": float(np.median(times)), "rate": n / min(times)}


def main(argv=None) -> dict:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--quick", action="store_true", help="small config for smoke runs")
    p.add_argument("--recipe", default="grpo")
    for k, v in STANDARD.items():
        p.add_argument("--" + k.replace("_", "-"), type=int, default=None, help=f"default {v}")
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--no-subprocess", action="store_true", help="skip the cold/warm compile check")
    p.add_argument("--warmup-only", action="store_true", help=argparse.SUPPRESS)
    a = p.parse_args(argv)
    for k, v in (QUICK if a.quick else STANDARD).items():
        if getattr(a, k) is None:
            setattr(a, k, v)
    if a.warmup_only:
        print(json.dumps(warmup_report(a)))
        return {}
    import numba

    report = {"config": {k: getattr(a, k) for k in STANDARD} | {"recipe": a.recipe},
              "cpus": os.cpu_count(), "numba_threads": numba.get_num_threads(),
              "load_avg": os.getloadavg()}
    if not a.no_subprocess:
        report["compile"] = compile_times(a)
    report["warmup_this_process"] = warmup_report(a)
    runs = []
    for n in sorted({1, numba.get_num_threads()}):
        numba.set_num_threads(n)
        runs.append(dict(throughput(a, "numba", a.steps, a.repeats), threads=n))
    nb = max(runs, key=lambda x: x["rate"])
    th = dict(throughput(a, "torch", a.torch_steps, 1), threads=1)
    report.update(numba_runs=runs, numba=nb, torch=th, ratio=nb["rate"] / th["rate"],
                  threading_layer=numba.threading_layer())
    numba.set_num_threads(nb["threads"])
    report["logging"] = dict(logging_cost(a, a.repeats), threads=nb["threads"])
    _print(report)
    return report


def _print(rep):
    c = rep["config"]
    print(f"collapse_lab.bench  recipe={c['recipe']} P={c['prompts']} K={c['outcomes']} G={c['group']} "
          f"R={c['replicates']}  cpus={rep['cpus']} numba_threads={rep['numba_threads']} "
          f"load_avg={tuple(round(x, 2) for x in rep['load_avg'])}")
    if "compile" in rep:
        cold, warm = rep["compile"]
        print(f"JIT  cold process (compiles, writes cache): {cold['seconds']:.2f} s  misses={cold['cache_misses']}")
        print(f"JIT  warm process (cache=True, no compile): {warm['seconds']:.2f} s  misses={warm['cache_misses']} "
              f"hits={warm['cache_hits']}  -> {'OK' if warm['cache_misses'] == 0 else 'RECOMPILED'}")
    print(f"{'backend':8s} {'threads':>7s} {'steps':>6s} {'outcomes':>12s} {'best s':>8s} {'median s':>9s} "
          f"{'outcomes/s':>12s}   (numba threading layer: {rep['threading_layer']})")
    for b in rep["numba_runs"] + [rep["torch"]]:
        print(f"{b['backend']:8s} {b['threads']:7d} {b['steps']:6d} {b['outcomes']:12d} {b['best_s']:8.3f} "
              f"{b['median_s']:9.3f} {b['rate']:12.3e}")
    ok_rate, ok_ratio = rep["numba"]["rate"] >= TARGET_RATE, rep["ratio"] >= TARGET_RATIO
    print(f"numba (best) / torch = {rep['ratio']:.1f}x  targets: numba >= {TARGET_RATE:.0e}/s "
          f"[{'met' if ok_rate else 'NOT met'}], ratio >= {TARGET_RATIO:.0f}x [{'met' if ok_ratio else 'NOT met'}]")
    lg = rep["logging"]
    print(f"logging cost (numba, {lg['threads']} threads, default ks, timed alternately):")
    for b in lg["rows"]:
        print(f"  {b['logging']:16s} {b['steps']:6d} {b['outcomes']:12d} {b['best_s']:8.3f} {b['median_s']:9.3f} "
              f"{b['rate']:12.3e}")
    print(f"  log_every=1 / log_every=steps = {lg['ratio']:.2f}  target >= {TARGET_LOGGING} "
          f"[{'met' if lg['ratio'] >= TARGET_LOGGING else 'NOT met'}]")


if __name__ == "__main__":
    main()
