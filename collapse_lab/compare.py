"""The fair comparison protocol of recipes (docs/studies.md "Compare at equal footing"; issue 11).

A recipe that rescales its advantages takes a bigger step at the same learning rate, so recipes are
never ranked at one shared lr. Each recipe runs over a learning-rate grid (>= 5 log-spaced values,
`lr_grid`) with checkpoints along training and replicates; results are a tidy DataFrame, one row per
(recipe, lr, replicate, step), with metric columns "pass@1", "pass@k" (`pass_col`), "kl", ...

Matching. A *trajectory* is one (recipe, lr, replicate) run, its checkpoints joined by straight
lines in the (x, y) plane, x = the matching metric (Pass@1, or KL(pi || base)), y = Pass@k. Its
value at target x* is the largest y where the path crosses x = x* (`curve_value`); a trajectory that
never reaches x* has NaN. For one lr, the value is the replicate mean of the trajectory values and
its standard error std(ddof=1)/sqrt(R) (NaN if any replicate does not reach x*: no lr is credited
with a target some of its replicates miss). The recipe's frontier value F(x*) is the value of its
best lr (largest mean): the upper envelope over step size and training time. A recipe whose frontier
never reaches x* gets NaN and status "not reached"; nothing is extrapolated. Picking the best lr on
the same replicates biases every recipe up by the same kind of selection (one grid for all).

`rank` orders recipes by F(x*) at one target; `common_target` is the largest x* every recipe reaches,
so a ranking there is defined for all. `differs_from` tests whether a recipe moves the policy away from
a baseline recipe by more than replicate noise (does a fix act at all?). `crossover` reports where a
trained Pass@k curve falls below the base model's (Yue et al. 2025). `run_grid` produces the DataFrame with
collapse_lab.sim.
"""

from __future__ import annotations

import warnings

import numpy as np
import pandas as pd

__all__ = ["pass_col", "lr_grid", "check_results", "curve_value", "matched_values", "frontier_at",
           "frontier", "rank", "common_target", "differs_from", "crossover", "run_grid", "KEYS"]

KEYS = ("recipe", "lr", "replicate", "step")


def pass_col(k: int) -> str:
    """Column name of exact Pass@k: 'pass@{k}'."""
    return f"pass@{int(k)}"


def lr_grid(lo: float, hi: float, n: int = 5) -> np.ndarray:
    """n >= 5 log-spaced learning rates lo * (hi/lo)^(i/(n-1)), i = 0..n-1 (float64 [n])."""
    if not (isinstance(n, int) and n >= 5):
        raise ValueError(f"n = {n!r} is invalid; allowed: an integer >= 5")
    if not (0 < lo < hi < np.inf):
        raise ValueError(f"(lo, hi) = {(lo, hi)!r} is invalid; allowed: 0 < lo < hi < inf")
    return np.exp(np.linspace(np.log(lo), np.log(hi), n))


def check_results(df: pd.DataFrame, x: str, y: str, min_lrs: int = 5) -> None:
    """ValueError unless df has the KEYS and the x, y columns, unique keys, and >= min_lrs distinct
    learning rates per recipe."""
    missing = [c for c in (*KEYS, x, y) if c not in df.columns]
    if missing:
        raise ValueError(f"columns = {missing!r} are missing; allowed: a DataFrame with {list(KEYS)} + "
                         f"metric columns, has {list(df.columns)}")
    if df.duplicated(list(KEYS)).any():
        raise ValueError("rows = duplicated (recipe, lr, replicate, step) keys is invalid; allowed: one row each")
    n_lr = df.groupby("recipe")["lr"].nunique()
    few = n_lr[n_lr < min_lrs]
    if len(few):
        raise ValueError(f"lr grid = {dict(few)!r} distinct lrs is invalid; allowed: >= {min_lrs} per recipe "
                         "(the fair protocol compares over a learning-rate grid)")


def curve_value(xs, ys, target: float) -> float:
    """Largest y where the polyline through (xs[t], ys[t]) (checkpoint order) crosses x = target.

    On a segment with x0 != x1 the crossing is y0 + (target - x0)/(x1 - x0) (y1 - y0) for target
    between x0 and x1 (inclusive); a checkpoint with x == target contributes its y. Non-finite
    checkpoints are dropped (a diverged run). NaN when the path never reaches the target.
    """
    xs, ys = np.asarray(xs, float), np.asarray(ys, float)
    ok = np.isfinite(xs) & np.isfinite(ys)
    xs, ys = xs[ok], ys[ok]
    if xs.size == 0:
        return float("nan")
    vals = list(ys[xs == target])
    x0, x1, y0, y1 = xs[:-1], xs[1:], ys[:-1], ys[1:]  # (T-1,) segments
    cross = (np.minimum(x0, x1) <= target) & (target <= np.maximum(x0, x1)) & (x0 != x1)
    th = (target - x0[cross]) / (x1[cross] - x0[cross])
    vals += list(y0[cross] + th * (y1[cross] - y0[cross]))
    return float(max(vals)) if vals else float("nan")


def matched_values(df: pd.DataFrame, target: float, x: str = "pass@1", y: str = "pass@256") -> pd.DataFrame:
    """Per trajectory (recipe, lr, replicate): curve_value of y at x = target -> columns
    recipe, lr, replicate, value (NaN where not reached)."""
    rows = []
    for (rec, lr, rep), g in df.sort_values("step").groupby(["recipe", "lr", "replicate"], sort=True):
        rows.append((rec, lr, rep, curve_value(g[x].to_numpy(), g[y].to_numpy(), target)))
    return pd.DataFrame(rows, columns=["recipe", "lr", "replicate", "value"])


def _mean_se(v: np.ndarray) -> tuple[float, float]:
    if np.isnan(v).any():
        return float("nan"), float("nan")
    se = v.std(ddof=1) / np.sqrt(v.size) if v.size > 1 else float("nan")
    return float(v.mean()), float(se)


def frontier_at(df: pd.DataFrame, target: float, x: str = "pass@1", y: str = "pass@256",
                min_lrs: int = 5) -> pd.DataFrame:
    """Frontier value F(target) of every recipe (module docstring).

    Returns one row per recipe: value (mean over replicates at the best lr), se (its replicate
    standard error), lr (the best lr; NaN if none), n_replicates, lrs_reached (how many lrs reach the
    target with all replicates), status ("ok" or "not reached").
    """
    check_results(df, x, y, min_lrs)
    mv = matched_values(df, target, x, y)
    out = []
    for rec, g in mv.groupby("recipe", sort=True):
        per_lr = [(lr, *_mean_se(h["value"].to_numpy()), len(h)) for lr, h in g.groupby("lr")]
        reached = [p for p in per_lr if np.isfinite(p[1])]
        if reached:
            lr, m, se, n = max(reached, key=lambda p: p[1])
            out.append((rec, target, m, se, lr, n, len(reached), "ok"))
        else:
            out.append((rec, target, np.nan, np.nan, np.nan, per_lr[0][3], 0, "not reached"))
    return pd.DataFrame(out, columns=["recipe", "target", "value", "se", "lr", "n_replicates",
                                      "lrs_reached", "status"])


def frontier(df: pd.DataFrame, targets, x: str = "pass@1", y: str = "pass@256", min_lrs: int = 5) -> pd.DataFrame:
    """frontier_at over a grid of targets (the Pass@1-Pass@k frontier curve of every recipe)."""
    return pd.concat([frontier_at(df, float(t), x, y, min_lrs) for t in np.atleast_1d(targets)],
                     ignore_index=True)


def rank(df: pd.DataFrame, target: float, x: str = "pass@1", y: str = "pass@256", min_lrs: int = 5) -> pd.DataFrame:
    """Recipes ordered by F(target), best first; rank 1, 2, ... ("not reached" rows last, rank NaN).

    Adds z_vs_best = (value - best value) / sqrt(se^2 + se_best^2): how many standard errors a
    recipe is behind the leader (0 for the leader).
    """
    f = frontier_at(df, target, x, y, min_lrs).sort_values(["value", "recipe"], ascending=[False, True],
                                                           na_position="last").reset_index(drop=True)
    ok = f["status"] == "ok"
    f["rank"] = np.where(ok, np.arange(1, len(f) + 1), np.nan)
    if ok.any():
        b = f.loc[0]
        f["z_vs_best"] = (f["value"] - b["value"]) / np.sqrt(f["se"] ** 2 + b["se"] ** 2)
        f.loc[0, "z_vs_best"] = 0.0
    else:
        f["z_vs_best"] = np.nan
    return f


def common_target(df: pd.DataFrame, x: str = "pass@1") -> float:
    """Largest x every recipe reaches at some lr with all its replicates:
    min over recipes of max over lr of min over replicates of max over checkpoints of x."""
    best = df.groupby(["recipe", "lr", "replicate"])[x].max().groupby(["recipe", "lr"]).min()
    return float(best.groupby("recipe").max().min())


def _welch_z(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """(mean a - mean b) / sqrt(var a / n_a + var b / n_b) over axis 0 (replicates); a [Ra, T], b [Rb, T].
    Where both variances are 0: 0 if the means agree, +-inf if not."""
    d = a.mean(0) - b.mean(0)
    se = np.sqrt(a.var(0, ddof=1) / a.shape[0] + b.var(0, ddof=1) / b.shape[0])
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(se > 0, d / np.where(se > 0, se, 1.0), np.where(d == 0, 0.0, np.sign(d) * np.inf))


def differs_from(df: pd.DataFrame, baseline: str = "grpo", metrics=("pass@1", "pass@256", "kl"),
                 z: float = 4.0) -> pd.DataFrame:
    """Does each recipe move the policy away from `baseline` by more than replicate noise?

    For every (recipe, lr) and every metric and checkpoint after step 0, the Welch statistic
    (mean - baseline mean) / SE of the difference (replicate SEs, unpaired: the noise is the spread
    between replicates, not the tiny paired noise of common random numbers) against the baseline at the
    same lr and step; a recipe differs when the largest |statistic| exceeds `z` (fixed by the caller
    before the run). Needs >= 2 replicates per run and the baseline at every lr. Returns one row per
    (recipe, lr) other than the baseline: recipe, lr, z (largest |statistic|), metric and step where
    it is reached, diff (the mean difference there), differs.
    """
    need = [c for c in (*KEYS, *metrics) if c not in df.columns]
    if need:
        raise ValueError(f"columns = {need!r} are missing; allowed: a run_grid DataFrame with {list(metrics)}")
    if df.groupby(["recipe", "lr"])["replicate"].nunique().min() < 2:
        raise ValueError("replicates = 1 is invalid; allowed: >= 2 per (recipe, lr) (the noise is their spread)")
    rows = []
    for (rec, lr), g in df[df["step"] > 0].groupby(["recipe", "lr"], sort=True):
        if rec == baseline:
            continue
        b = df[(df["recipe"] == baseline) & (df["lr"] == lr) & (df["step"] > 0)]
        if b.empty:
            raise ValueError(f"baseline = {baseline!r} at lr = {lr:g} is missing; allowed: a baseline run at every lr")
        best = None  # (statistic, metric, step, diff) with the largest |statistic|
        for m in metrics:
            a_, b_ = (h.pivot(index="replicate", columns="step", values=m) for h in (g, b))
            steps = a_.columns.intersection(b_.columns)  # (T,) common checkpoints
            zs = _welch_z(a_[steps].to_numpy(float), b_[steps].to_numpy(float))  # (T,)
            zs = np.where(np.isnan(zs), 0.0, zs)  # a diverged run is no evidence of acting
            i = int(np.argmax(np.abs(zs)))
            if best is None or abs(zs[i]) > abs(best[0]):
                best = (float(zs[i]), m, float(steps[i]), float(a_[steps[i]].mean() - b_[steps[i]].mean()))
        rows.append((rec, lr, abs(best[0]), best[1], best[2], best[3], bool(abs(best[0]) > z)))
    return pd.DataFrame(rows, columns=["recipe", "lr", "z", "metric", "step", "diff", "differs"])


def crossover(pass_at_k, ks, z: float = 4.0) -> dict:
    """Where the trained Pass@k curve falls below the base (Yue et al. 2025).

    pass_at_k [R, L, nk] (a Trajectory's, step 0 = the base model, identical across replicates);
    the end is the last logged step. Returns base [nk], mean [nk], se [nk] (replicate SE,
    std(ddof=1)/sqrt(R)), diff = mean - base, crossover_k = the smallest k with mean < base (None if
    none), below_k = the ks with mean < base - z se, above_k = the ks with mean > base + z se.
    """
    a = np.asarray(pass_at_k, float)
    ks = np.asarray(ks)
    if a.ndim != 3 or a.shape[2] != ks.size or a.shape[0] < 2:
        raise ValueError(f"pass_at_k shape = {a.shape!r} is invalid; allowed: [R >= 2, L, len(ks) = {ks.size}]")
    base, end = a[0, 0], a[:, -1]
    mean, se = end.mean(0), end.std(0, ddof=1) / np.sqrt(end.shape[0])
    below = mean < base
    return {"ks": ks.tolist(), "base": base, "mean": mean, "se": se, "diff": mean - base,
            "crossover_k": int(ks[np.argmax(below)]) if below.any() else None,
            "below_k": ks[mean < base - z * se].tolist(), "above_k": ks[mean > base + z * se].tolist()}


def run_grid(problem, recipes, lrs, replicates: int, steps: int, log_every: int, seed: int = 0,
             threads: int | None = None, **cfg) -> pd.DataFrame:
    """Simulate every recipe at every lr (one `collapse_lab.sim.simulate` call each, same seed:
    common random numbers across recipes) -> the tidy DataFrame of this module.

    recipes: names, or a dict label -> SimConfig keyword overrides (e.g. {"dph_js": {"recipe":
    "dph_js", "overrides": {"eta": 1.0}}}). cfg: SimConfig fields shared by all runs (param, ks,
    group_size, ...). Columns: recipe, lr, replicate, step, pass@k for cfg's ks, kl, entropy,
    coverage, diverged. A run whose logits become non-finite (FloatingPointError) keeps one row per
    replicate with NaN metrics and diverged = True (it reaches no target), and a warning.
    threads: numba threads during the grid (results do not depend on it; 1 avoids pool overhead
    for small problems on a busy machine).
    """
    import numba

    from .sim import SimConfig, simulate

    specs = ({r: {"recipe": r} for r in recipes} if not isinstance(recipes, dict)
             else {k: {"recipe": k, **v} for k, v in recipes.items()})
    old = numba.get_num_threads()
    if threads is not None:
        numba.set_num_threads(threads)
    frames = []
    try:
        for label, spec in specs.items():
            for lr in lrs:
                c = SimConfig(**{**cfg, **spec, "lr": float(lr), "replicates": replicates, "steps": steps,
                                 "log_every": log_every})
                try:
                    frames.append(_rows(label, float(lr), simulate(problem, c, seed=seed)))
                except FloatingPointError as e:
                    warnings.warn(f"run_grid: {label} at lr={lr:g} diverged ({e})", stacklevel=2)
                    frames.append(pd.DataFrame({"recipe": label, "lr": float(lr), "replicate": np.arange(replicates),
                                                "step": steps, "diverged": True}))
    finally:
        numba.set_num_threads(old)
    return pd.concat(frames, ignore_index=True)


def _rows(label, lr, tr) -> pd.DataFrame:
    R, L = tr.kl.shape
    d = {"recipe": label, "lr": lr, "replicate": np.repeat(np.arange(R), L), "step": np.tile(tr.steps, R)}
    for j, k in enumerate(tr.ks):
        d[pass_col(k)] = tr.pass_at_k[:, :, j].ravel()  # (R*L,)
    d.update(kl=tr.kl.ravel(), entropy=tr.entropy.ravel(), coverage=tr.coverage.ravel(), diverged=False)
    return pd.DataFrame(d)
