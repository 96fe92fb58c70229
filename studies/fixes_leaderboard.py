"""fixes_leaderboard: which fix wins on a benchmark that collapses, compared fairly? (all papers; docs/methods.md §5)

The shared collapsing benchmark (studies._common.SHARED: sim.problems.shared_answers, answers shared by
all prompts, param "linear", SGD, G = 8, with N_EASY prompts the base already solves so that DPH's
D_pef is non-empty). Every recipe of collapse_lab.objective.RECIPES at its default hyper-parameters,
and the variants of studies._common.VARIANTS (bbg_noneg: BBG without the negative branch on
all-failure groups, shown beside BBG), run over the learning-rate grid LRS (6 log-spaced values) with
checkpoints every 25 steps and REPS replicates (collapse_lab.compare.run_grid, common random numbers). The fair protocol
(collapse_lab.compare, docs/studies.md standard 2):
(a) one shared step size (lr = SHARED_LR), labelled as such: Pass@k - base at the end of training;
    plain GRPO's crossover (Pass@1 up, large-k Pass@k below the base) is the benchmark's check.
(b) each recipe's Pass@1-Pass@K frontier over step size and training time (its best lr at every
    Pass@1), K = K_EVAL.
(c) ranking by Pass@K at matched Pass@1 = TARGET_P1 (fixed before the run), ±2 replicate SE; a
    recipe whose frontier never reaches the target is "not reached".
(d) ranking by Pass@K at matched KL(pi || base) = TARGET_KL nats (fixed before the run).
Does every fix act? At lr = SHARED_LR each recipe must differ from GRPO by more than replicate noise
(compare.differs_from, |Welch z| > ACT_Z over Pass@1, Pass@256, KL and the checkpoints) unless listed in
studies._common.CANNOT_DIFFER with its reason (a check; tests/studies/test_fixes_act.py asserts the same);
a recipe that does not act is marked "(inert)" in panels (c) and (d).
Interpretation of zero_success (paper C; history counts): a prompt is trained only until its first
observed success, and most prompts of the benchmark succeed in their first group, so it barely trains:
it keeps the base's coverage by not training (its Pass@1 stays near the base's and its frontier never
reaches the matched Pass@1); the figure says so.
The tabular multimode problem is not used here: it cannot collapse (studies._common.BENCHMARK).
"""

from __future__ import annotations

import time

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
from matplotlib.ticker import MaxNLocator

from collapse_lab import compare
from collapse_lab.runs import cached
from collapse_lab.sim import SimConfig, simulate
from studies._common import (
    ACT_METRICS,
    ACT_REPS,
    ACT_Z,
    BENCH_KS,
    CANNOT_DIFFER,
    RECIPE_COLORS,
    SHARED,
    SHARED_LR,
    SHARED_TRAIN,
    act_table,
    finish,
    greater,
    holds,
    log_ticks,
    mean_se,
    panel_labels,
    recipe_specs,
    setup_style,
    shared_benchmark,
    single_thread,
)

SEED = 0
BENCHMARK = SHARED  # read by studies.llm_collapse (its cache key)
BENCH_TRAIN = SHARED_TRAIN
SPECS = recipe_specs()  # label -> SimConfig fields: RECIPES, then bbg_noneg
LABELS = tuple(SPECS)
REPS = dict(full=8, quick=4)
assert REPS["full"] == ACT_REPS, "the full grid at SHARED_LR doubles as the act test's run"
QUICK_STEPS = 100
LRS = tuple(float(f"{x:.6g}") for x in compare.lr_grid(0.025, 0.8, 6))  # 0.025 .. 0.8, factor 2
X_REPS = 8  # replicates of the crossover run (lr = SHARED_LR, full length, also in quick mode)
# fixed before the run: the matching targets and the k the fixes are ranked by
TARGET_P1, TARGET_KL, K_EVAL = 0.5, 0.5, 256
P1_GRID = np.round(np.arange(0.3, 0.851, 0.05), 3)  # frontier curve, panel (b)
# each paper's fix (paper -> recipes); every verdict: the fix beats GRPO at matched Pass@1
PAPER_FIXES = {"A": ("isac", "memory"), "B": ("dph_forward", "dph_js", "dph_alpha"),
               "C": ("zero_success", "bbg", "bbg_noneg"), "D": ("ips_grpo",)}
FIXES = tuple(r for rs in PAPER_FIXES.values() for r in rs)
# verdicts on the papers' claims (reproduced or not, never a failure of the run); every other claim is a check
VERDICTS = tuple(f"{r}_beats_grpo_matched_pass1" for r in FIXES)


def compute(size):
    """The lr grid (tidy DataFrame stored column-wise as grid_<col>), the shared-lr panel ({r}_pk [R, nk]
    and {r}_cov [R] at the end, lr = SHARED_LR) and GRPO's full-length crossover run (x_pk [R, L, nk])."""
    pb = shared_benchmark()
    train = dict(SHARED_TRAIN, steps=QUICK_STEPS, log_every=10) if size == "quick" else dict(SHARED_TRAIN)
    df = compare.run_grid(pb, SPECS, LRS, REPS[size], seed=SEED, threads=1, ks=BENCH_KS, **train)
    out = {f"grid_{c}": df[c].to_numpy(dtype=str if c == "recipe" else float) for c in df.columns}
    assert SHARED_LR in LRS, "the shared-step-size panel's lr must be on the grid"
    end = df[(df["lr"] == SHARED_LR) & (df["step"] == df["step"].max())].sort_values("replicate")
    cols = [compare.pass_col(k) for k in BENCH_KS]
    for rec in LABELS:
        e = end[end["recipe"] == rec]
        out[f"{rec}_pk"], out[f"{rec}_cov"] = e[cols].to_numpy(), e["coverage"].to_numpy()
    first = df[(df["step"] == 0) & (df["recipe"] == "grpo")].iloc[0]
    out["base_pk"], out["base_cov"] = first[cols].to_numpy(float), np.asarray(first["coverage"])
    with single_thread():
        tr = simulate(pb, SimConfig(recipe="grpo", lr=SHARED_LR, replicates=X_REPS, ks=BENCH_KS, **SHARED_TRAIN),
                      seed=SEED)
    out["x_pk"], out["x_steps"] = tr.pass_at_k, tr.steps
    if size == "quick":  # the act check at full length and ACT_REPS (the quick grid is too short to power it)
        act = act_table().reset_index()
        out.update({f"act_{c}": act[c].to_numpy(dtype=str if c in ("recipe", "metric") else float) for c in act})
    return out


def load(quick: bool) -> tuple[dict, dict]:
    """(cache config, arrays) of the sweep: run it, or read it back from the cache (also for the studies
    that reuse it: paper_claims, llm_collapse)."""
    size = "quick" if quick else "full"
    config = dict(benchmark=BENCHMARK, train=BENCH_TRAIN, quick_steps=QUICK_STEPS if quick else None,
                  ks=BENCH_KS, recipes=SPECS, reps=REPS[size])
    return config, cached("fixes_leaderboard", config, lambda: compute(size), __file__)


def grid_frame(d) -> pd.DataFrame:
    """The run_grid DataFrame back from the cached arrays."""
    df = pd.DataFrame({k[5:]: v for k, v in d.items() if k.startswith("grid_")})
    df["diverged"] = df["diverged"].astype(bool)
    return df


def _rank_bars(ax, r, base_val, xlabel, title, tags, why_not):
    """Horizontal bars of a compare.rank table (best at the top), ±2 SE; 'not reached' as text (with
    why_not[recipe] where given); tags[recipe] is appended to the recipe's tick label."""
    r = r.iloc[::-1].reset_index(drop=True)  # best last = top
    y = np.arange(len(r))
    ok = r["status"] == "ok"
    vals = r["value"].where(ok, np.nan)
    lo = np.nanmin(vals - 2 * r["se"]) if ok.any() else base_val
    left = min(lo, base_val) - 0.01
    ax.barh(y[ok], (vals - left)[ok], left=left, xerr=2 * r["se"][ok],
            color=[RECIPE_COLORS[x] for x in r["recipe"][ok]], capsize=2)
    for i in y[~ok]:
        ax.text(left + 0.0005, i, "not reached" + why_not.get(r["recipe"][i], ""), va="center", fontsize=6.5,
                color="0.35")
    ax.axvline(base_val, color="k", ls="--", lw=1, label="base model")
    ax.set(yticks=y, yticklabels=[x + tags.get(x, "") for x in r["recipe"]], xlabel=xlabel, title=title)
    ax.set_xlim(left=left)
    ax.set_ylim(-0.6, len(r) - 0.4)
    ax.xaxis.set_major_locator(MaxNLocator(5))
    ax.legend(loc="upper right")


def main(quick: bool = False) -> bool:
    """Run (or load) the sweep, draw the figure, check its claims; True when all pass."""
    t0 = time.perf_counter()
    setup_style()
    size = "quick" if quick else "full"
    config, d = load(quick)
    df, ks, base = grid_frame(d), np.asarray(BENCH_KS), d["base_pk"]
    ycol, ik = compare.pass_col(K_EVAL), BENCH_KS.index(K_EVAL)
    r_p1 = compare.rank(df, TARGET_P1, x="pass@1", y=ycol)
    r_kl = compare.rank(df, TARGET_KL, x="kl", y=ycol)
    fr = compare.frontier(df, P1_GRID, x="pass@1", y=ycol)
    xo = compare.crossover(d["x_pk"], BENCH_KS)
    if quick:
        acts = pd.DataFrame({k[4:]: v for k, v in d.items() if k.startswith("act_")}).set_index("recipe")
        acts["differs"] = acts["differs"].astype(bool)
    else:  # the grid at SHARED_LR is the act test's run (SHARED_TRAIN, REPS = ACT_REPS)
        acts = act_table(df[df["lr"] == SHARED_LR])
    tags = {r: " (cannot differ)" if r in CANNOT_DIFFER else " (inert)" for r in acts.index[~acts["differs"]]}
    zs_p1 = mean_se(d["zero_success_pk"][:, 0])
    why_not = {"zero_success": f" (stops training a prompt at its first success: Pass@1 {zs_p1[0]:.3f}, "
                               f"base {base[0]:.3f})"}

    fig, axes = plt.subplots(2, 2, figsize=(11, 8.6))
    ax = axes[0, 0]
    for rec in LABELS:
        m, se = mean_se(d[f"{rec}_pk"] - base)
        lw = 2.4 if rec == "grpo" else 1.1
        ax.plot(ks, m, color=RECIPE_COLORS[rec], lw=lw, ls="-" if LABELS.index(rec) < 9 else "--", label=rec,
                zorder=3 if rec == "grpo" else 2)
        ax.fill_between(ks, m - 2 * se, m + 2 * se, color=RECIPE_COLORS[rec], alpha=0.12, lw=0)
    ax.axhline(0, color="k", lw=0.6)
    if xo["crossover_k"] is not None:
        ax.axvline(xo["crossover_k"], color="k", ls=":", lw=1)
        ax.annotate(f"GRPO crossover k = {xo['crossover_k']}\n({SHARED_TRAIN['steps']} steps, {X_REPS} replicates)",
                    (xo["crossover_k"], ax.get_ylim()[1]), fontsize=7,
                    xytext=(4, -22), textcoords="offset points")
    steps_note = f"{QUICK_STEPS} steps" if quick else f"{SHARED_TRAIN['steps']} steps"
    ax.set(xscale="log", xlabel="k", ylabel="Pass@k − base Pass@k",
           title=f"one shared step size (lr = {SHARED_LR:g}, {steps_note}), ±2 SE")
    log_ticks(ax, ks[::2])
    ax = axes[0, 1]
    for rec in LABELS:
        f = fr[fr["recipe"] == rec]
        ax.plot(f["target"], f["value"], color=RECIPE_COLORS[rec], lw=2.4 if rec == "grpo" else 1.1,
                ls="-" if LABELS.index(rec) < 9 else "--", marker="o", ms=2.5, zorder=3 if rec == "grpo" else 2)
    ax.plot(d["x_pk"][0, 0, 0], base[ik], "k*", ms=10, label="base model")
    ax.axvline(TARGET_P1, color="k", ls=":", lw=1)
    ax.set(xlabel="Pass@1 (matched)", ylabel=f"Pass@{K_EVAL} on the frontier",
           title=f"frontier over {len(LRS)} lrs x training time")
    ax.legend(loc="lower left")
    _rank_bars(axes[1, 0], r_p1, base[ik], f"Pass@{K_EVAL} at Pass@1 = {TARGET_P1:g} (best lr)",
               f"matched Pass@1 = {TARGET_P1:g}, ±2 SE", tags, why_not)
    _rank_bars(axes[1, 1], r_kl, base[ik], f"Pass@{K_EVAL} at KL(π‖base) = {TARGET_KL:g} (best lr)",
               f"matched KL = {TARGET_KL:g} nats, ±2 SE", tags, why_not)
    panel_labels(axes)
    h, lab = axes[0, 0].get_legend_handles_labels()
    fig.legend(h, lab, loc="outside lower center", ncol=10, fontsize=7)

    # claims
    n_reps = df.groupby(["recipe", "lr"])["replicate"].nunique()
    finite = df[~df["diverged"]][[compare.pass_col(k) for k in BENCH_KS]].notna().all().all()
    n_div = int(df.groupby(["recipe", "lr"])["diverged"].any().sum())
    claims = [holds("every_recipe_on_lr_grid",
                    bool(df.groupby("recipe")["lr"].nunique().min() >= 5 and n_reps.min() >= REPS[size] and finite),
                    float(len(LABELS)),
                    f"{len(LABELS)} recipes and variants x {len(LRS)} lrs ({LRS[0]:g}..{LRS[-1]:g}, log-spaced) x "
                    f"{REPS[size]} replicates, checkpoints every {10 if quick else SHARED_TRAIN['log_every']} steps; "
                    f"finite Pass@k on every run that did not diverge ({n_div} (recipe, lr) runs diverged and reach "
                    "no target)")]
    inert = [r for r in acts.index if not acts.loc[r, "differs"] and r not in CANNOT_DIFFER]
    hidden = [r for r in CANNOT_DIFFER if acts.loc[r, "differs"]]
    claims.append(holds(
        "every_recipe_acts", not inert and not hidden, float(acts["z"].min()),
        f"at lr = {SHARED_LR:g} every recipe and variant differs from GRPO by more than replicate noise: largest "
        f"|Welch z| over {', '.join(ACT_METRICS)} and checkpoints > {ACT_Z:g} (compare.differs_from), unless listed "
        f"in studies._common.CANNOT_DIFFER ({', '.join(f'{r}: {w}' for r, w in CANNOT_DIFFER.items()) or 'none'}), "
        f"which must not; value = the smallest |z|. Not acting: {', '.join(inert) or 'none'}; listed but acting: "
        f"{', '.join(hidden) or 'none'}. |z| per recipe: " + ", ".join(
            f"{r} {acts.loc[r, 'z']:.1f} ({acts.loc[r, 'metric']}, step {acts.loc[r, 'step']:g})" for r in acts.index)))
    p1_up = xo["diff"][0] - 4 * xo["se"][0]
    big = [k for k in BENCH_KS if k >= 256]
    margin = min(float(xo["base"][BENCH_KS.index(k)] - xo["mean"][BENCH_KS.index(k)] - 4 * xo["se"][BENCH_KS.index(k)])
                 for k in big)
    claims.append(holds(
        "grpo_crossover_on_benchmark", bool(p1_up > 0 and margin > 0),
        float(xo["crossover_k"]) if xo["crossover_k"] is not None else None,
        f"plain GRPO at lr = {SHARED_LR:g}, {SHARED_TRAIN['steps']} steps, {X_REPS} replicates: Pass@1 "
        f"{xo['base'][0]:.3f} -> {xo['mean'][0]:.3f} ± {xo['se'][0]:.3f} (up by > 4 SE), Pass@k below the base by "
        "> 4 SE for every k >= 256 (" + ", ".join(
            f"k={k}: {xo['base'][BENCH_KS.index(k)]:.4f} -> {xo['mean'][BENCH_KS.index(k)]:.4f} ± "
            f"{xo['se'][BENCH_KS.index(k)]:.4f}" for k in big) + "); value = crossover k"))
    g = r_p1.set_index("recipe")
    gk = r_kl.set_index("recipe")
    ranking = lambda r: ", ".join(  # noqa: E731
        f"{x.recipe} {x.value:.4f}±{x.se:.4f} (lr {x.lr:g})" if x.status == "ok" else f"{x.recipe} not reached"
        for x in r.itertuples())
    for paper, recs in PAPER_FIXES.items():
        for rec in recs:
            f, b = g.loc[rec], g.loc["grpo"]
            diff, se = float(f["value"] - b["value"]), float(np.hypot(f["se"], b["se"]))
            reached = f["status"] == "ok" and b["status"] == "ok"
            both_ok = gk.loc[rec, "status"] == "ok" and gk.loc["grpo", "status"] == "ok"
            kl_note = (f"at matched KL = {TARGET_KL:g}: {rec} {gk.loc[rec, 'value']:.4f} vs grpo "
                       f"{gk.loc['grpo', 'value']:.4f}" if both_ok
                       else f"at matched KL = {TARGET_KL:g}: {rec} {gk.loc[rec, 'status']}")
            claims.append(greater(
                f"{rec}_beats_grpo_matched_pass1", diff if reached else float("nan"), 0.0, 2 * se if reached else 0.0,
                detail=f"paper {paper}: {rec} has higher Pass@{K_EVAL} than GRPO at matched Pass@1 = {TARGET_P1:g} "
                       f"(each at its best lr on the frontier), by more than 2 SE of the difference; "
                       + (f"{rec} {f['value']:.4f} ± {f['se']:.4f} (lr {f['lr']:g}) vs grpo {b['value']:.4f} ± "
                          f"{b['se']:.4f} (lr {b['lr']:g})" if reached else f"{rec}: {f['status']} (no Pass@1 = "
                          f"{TARGET_P1:g} at any lr, so it cannot beat GRPO there)") + f"; {kl_note}"
                       + (f"; interpretation: {rec} keeps coverage by not training{why_not[rec]}"
                          if rec in why_not else ""),
                assessed=not quick))
    claims[0].detail += (f". Ranking at matched Pass@1 = {TARGET_P1:g}: {ranking(r_p1)}. "
                         f"At matched KL = {TARGET_KL:g}: {ranking(r_kl)}")
    return finish("fixes_leaderboard", fig, claims, seed=SEED, config=dict(config, lrs=LRS, target_pass1=TARGET_P1,
                  target_kl=TARGET_KL, k_eval=K_EVAL, x_reps=X_REPS), t0=t0, quick=quick, verdicts=VERDICTS)


if __name__ == "__main__":
    main()
