"""sweep(): grid expansion, tidy table, cache resume, failure naming, executors bit-for-bit equal."""

import numpy as np
import pandas as pd
import pytest

from collapse_lab import runs
from collapse_lab.sim import SimConfig, multimode, simulate
from collapse_lab.sim import sweeps as sweep_mod
from collapse_lab.sim.sweeps import SweepError, expand_grid, sweep

PR = multimode(6, 5, 2, seed=0)
BASE = SimConfig(steps=4, replicates=2, group_size=4, log_every=2, ks=(1, 4))
GRID = {"recipe": ["grpo", "ips_grpo"], ("lr", "steps"): [(0.5, 4), (1.0, 2)]}


@pytest.fixture
def cache(tmp_path, monkeypatch):
    monkeypatch.setattr(runs, "CACHE_DIR", tmp_path)
    return tmp_path


def test_expand_grid_product_and_zip():
    pts = expand_grid({"a": [1, 2], ("b", "c"): [(3, 4), (5, 6)], "d": [7]})
    assert pts == [{"a": 1, "b": 3, "c": 4, "d": 7}, {"a": 1, "b": 5, "c": 6, "d": 7},
                   {"a": 2, "b": 3, "c": 4, "d": 7}, {"a": 2, "b": 5, "c": 6, "d": 7}]
    assert expand_grid([{"a": 1}, {"b": 2}]) == [{"a": 1}, {"b": 2}]
    with pytest.raises(ValueError, match=r"grid\[\('b', 'c'\)\] = .* is invalid; allowed: a list of 2-tuples"):
        expand_grid({("b", "c"): [(1, 2, 3)]})
    with pytest.raises(ValueError, match=r"grid\['a'\] = \[\] is invalid"):
        expand_grid({"a": []})


def test_table_matches_simulate(cache):
    df = sweep(PR, GRID, seeds=[3, 5], base=BASE, progress=False)
    assert isinstance(df, pd.DataFrame)
    # 4 points x 2 seeds x 2 replicates x logged steps (3 for steps=4, 2 for steps=2)
    assert len(df) == 2 * 2 * 2 * (3 + 2)
    assert {"point", "seed", "replicate", "step", "recipe", "lr", "steps", "pass@1", "pass@4", "entropy",
            "coverage", "effective_modes", "kl", "zero_var_frac", "saturated_share"} <= set(df.columns)
    tr = simulate(PR, SimConfig(**(BASE.to_dict() | {"recipe": "ips_grpo", "lr": 1.0, "steps": 2,
                                                      "ks": (1, 4), "track": ()})), seed=5)
    sel = df[(df.recipe == "ips_grpo") & (df.lr == 1.0) & (df.seed == 5) & (df.replicate == 1)]
    assert list(sel.step) == list(tr.steps)
    assert np.array_equal(sel["pass@4"].to_numpy(), tr.pass_at_k[1, :, 1])
    assert np.array_equal(sel["kl"].to_numpy(), tr.kl[1])


def test_cache_resume_and_replot_costs_nothing(cache, monkeypatch):
    calls = []
    real = sweep_mod.run_one

    def counting(*a):
        calls.append(a[2])
        return real(*a)

    monkeypatch.setattr(sweep_mod, "run_one", counting)
    small = {"lr": [0.5, 1.0]}
    a = sweep(PR, small, seeds=[0, 1], base=BASE, progress=False)
    assert len(calls) == 4
    b = sweep(PR, small, seeds=[0, 1], base=BASE, progress=False)  # re-plot: all from the cache
    assert len(calls) == 4
    pd.testing.assert_frame_equal(a, b)
    sweep(PR, small, seeds=[0, 1, 2], base=BASE, progress=False)  # one more seed: only it runs
    assert len(calls) == 6 and calls[-2:] == [2, 2]


def test_failure_names_the_point_and_keeps_the_rest(cache, monkeypatch):
    """A run that diverges raises one SweepError naming its point; the other runs were cached."""
    real = sweep_mod.run_one

    def flaky(pr, cfg, seed):
        if cfg.lr == 1.0:
            raise FloatingPointError("simulate: non-finite logits at step 3")
        return real(pr, cfg, seed)

    monkeypatch.setattr(sweep_mod, "run_one", flaky)
    grid = {"lr": [0.5, 1.0, 0.25]}
    with pytest.raises(SweepError, match=r"1 of 3 runs failed.*point 1 \{'lr': 1.0\} seed 0: FloatingPointError"):
        sweep(PR, grid, base=BASE, progress=False)
    assert len(list(cache.glob("sweep-*.npz"))) == 2
    monkeypatch.setattr(sweep_mod, "run_one", real)
    calls = []
    monkeypatch.setattr(sweep_mod, "run_one", lambda *a: calls.append(a) or real(*a))
    df = sweep(PR, grid, base=BASE, progress=False)  # resume: only the failed point runs
    assert len(calls) == 1 and sorted(df.lr.unique()) == [0.25, 0.5, 1.0]


def test_bad_points_are_named_before_any_run(cache):
    with pytest.raises(ValueError, match=r"sweep point 1 \{'lr': -1.0\}: lr = -1.0 is invalid"):
        sweep(PR, {"lr": [0.5, -1.0]}, base=BASE, progress=False)
    with pytest.raises(ValueError, match="grid key 'coupling' is invalid"):
        sweep(PR, {"coupling": [0.5]}, base=BASE, progress=False)
    with pytest.raises(ValueError, match="executor = 'dask' is invalid; allowed: inline, process, ray"):
        sweep(PR, {"lr": [0.5]}, base=BASE, executor="dask")
    with pytest.raises(ValueError, match="seeds = .* is invalid"):
        sweep(PR, {"lr": [0.5]}, seeds=[True], base=BASE)
    assert not list(cache.glob("*.npz"))


def test_factory_and_override_keys(cache):
    df = sweep(lambda n_correct: multimode(4, 5, n_correct, seed=1),
               {"n_correct": [1, 2], "overrides.ips_power": [0.5]}, base=SimConfig(**(BASE.to_dict() | {
                   "recipe": "ips_grpo", "ks": (1, 4), "track": ()})), progress=False)
    assert sorted(df.n_correct.unique()) == [1, 2] and set(df["overrides.ips_power"]) == {0.5}
    tr = simulate(multimode(4, 5, 2, seed=1), SimConfig(**(BASE.to_dict() | {
        "recipe": "ips_grpo", "overrides": {"ips_power": 0.5}, "ks": (1, 4), "track": ()})), seed=0)
    sel = df[(df.n_correct == 2) & (df.replicate == 0)]
    assert np.array_equal(sel["pass@1"].to_numpy(), tr.pass_at_k[0, :, 0])


def test_process_pool_equals_inline(cache, tmp_path_factory, monkeypatch):
    a = sweep(PR, GRID, seeds=[0, 1], base=BASE, progress=False, cache=False)
    b = sweep(PR, GRID, seeds=[0, 1], base=BASE, progress=False, cache=False, executor="process", workers=2)
    pd.testing.assert_frame_equal(a, b, check_exact=True)


@pytest.fixture(scope="module")
def local_ray():
    ray = pytest.importorskip("ray", reason="Ray is an optional extra (pip install collapse-lab[ray])")
    import os

    root = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    env = {"PYTHONPATH": root}
    if os.environ.get("NUMBA_CACHE_DIR"):
        env["NUMBA_CACHE_DIR"] = os.environ["NUMBA_CACHE_DIR"]
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False, runtime_env={"env_vars": env})
    yield ray
    ray.shutdown()


def test_ray_equals_inline(local_ray, cache):
    a = sweep(PR, GRID, seeds=[0, 1], base=BASE, progress=False, cache=False)
    b = sweep(PR, GRID, seeds=[0, 1], base=BASE, progress=False, cache=False, executor="ray")
    pd.testing.assert_frame_equal(a, b, check_exact=True)
