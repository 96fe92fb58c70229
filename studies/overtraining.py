"""overtraining: are most updates overtraining? (paper C; docs/theory.md items 15-16, docs/methods.md §2)

Sampled GRPO, zero-success gating, Bayesian Boundary Gating and BBG without its negative branch on
all-failure groups (`recipe("bbg", lambda_neg=0.0)`) on the shared collapsing benchmark
(studies._common.SHARED: shared_answers, param "linear", SGD), one shared step size
lr = SHARED_LR (the benchmark's default; labelled), R replicates each, common random numbers.
(a) Share of the update (sum |dL/dz|) spent on prompts whose exact Pass@K_REF already exceeds
    SATURATION (the simulator's `saturated_share`, saturation_k = K_REF = BBG's k_ref).
(b) Pass@k - base Pass@k, k = 1..1024, at the end of training (±2 SE).
(c) Pass@256 over training.
Interpretations (docs/methods.md §2): zero-success gating trains a prompt only while it has no observed
success in its history; BBG weights advantages by u(m)/u(1) and gives all-failure groups a negative
REINFORCE term -lambda_neg * w (lambda_neg = 1 by default; 0 removes that branch).
"""

from __future__ import annotations

import time

import matplotlib.pyplot as plt
import numpy as np

from collapse_lab.metrics import pass_at_k_exact
from collapse_lab.runs import cached
from collapse_lab.sim import SimConfig, simulate
from studies._common import (
    BENCH_KS,
    RECIPE_COLORS,
    SHARED,
    SHARED_LR,
    SHARED_TRAIN,
    VARIANTS,
    band,
    finish,
    greater,
    holds,
    log_ticks,
    mean_se,
    panel_labels,
    setup_style,
    shared_benchmark,
    single_thread,
)

SEED = 0
RUNS = {"grpo": dict(recipe="grpo"), "zero_success": dict(recipe="zero_success"), "bbg": dict(recipe="bbg"),
        "bbg_noneg": VARIANTS["bbg_noneg"]}
K_REF, SATURATION, K_EVAL = 16, 0.99, 256
# fixed before the run: a prompt is "initially unsolvable" when the base's exact Pass@K_UNSOLVED is
# below UNSOLVED (no prompt of the benchmark has base Pass@1024 < 0.5, so k = 64 is the largest k
# with unsolvable prompts); it "becomes solvable" when its Pass@K_UNSOLVED reaches UNSOLVED at some
# checkpoint of standard RLVR (GRPO)
K_UNSOLVED, UNSOLVED = 64, 0.5
REPS = dict(full=16, quick=8)
# verdicts on the papers' claims (reproduced or not, never a failure of the run); every other claim is a check
VERDICTS = ("grpo_mostly_overtraining", "bbg_cuts_overtraining", "grpo_below_base_at_256",
            "zero_success_above_base_at_256", "bbg_improves_passk_across_k", "bbg_noneg_improves_passk_across_k",
            "grpo_solves_unsolvable")


def compute(size):
    out, pb = {}, shared_benchmark()
    with single_thread():
        for name, spec in RUNS.items():
            cfg = SimConfig(**spec, lr=SHARED_LR, replicates=REPS[size], ks=BENCH_KS, saturation=SATURATION,
                            saturation_k=K_REF, **SHARED_TRAIN)
            t = simulate(pb, cfg, seed=SEED)
            out[f"{name}_sat"], out[f"{name}_pk"], out["steps"] = t.saturated_share, t.pass_at_k, t.steps
            out[f"{name}_mass"] = t.correct_mass  # (R, L, P)
    return out


def main(quick: bool = False) -> bool:
    """Run (or load) the sweep, draw the figure, check its claims; True when all pass."""
    t0 = time.perf_counter()
    setup_style()
    size = "quick" if quick else "full"
    config = dict(benchmark=SHARED, train=SHARED_TRAIN, lr=SHARED_LR, ks=BENCH_KS, runs=RUNS, k_ref=K_REF,
                  saturation=SATURATION, reps=REPS[size])
    d = cached("overtraining", config, lambda: compute(size), __file__)
    steps, ks, ie = d["steps"], np.asarray(BENCH_KS), BENCH_KS.index(K_EVAL)
    fig, axes = plt.subplots(1, 3, figsize=(11, 3.6))
    base = d["grpo_pk"][0, 0]  # step 0 = base policy (identical in every run)
    axes[1].axhline(0, color="k", ls="--", lw=1.2, label="base model")
    axes[2].axhline(base[ie], color="k", ls="--", lw=1.2, label="base model")
    for name in RUNS:
        c = RECIPE_COLORS[name]
        band(axes[0], steps[1:], d[f"{name}_sat"][:, 1:], label=name, color=c)
        band(axes[1], ks, d[f"{name}_pk"][:, -1] - base, label=name, color=c, marker="o", ms=3)
        band(axes[2], steps, d[f"{name}_pk"][:, :, ie], label=name, color=c)
    axes[0].set(xlabel="training step", ylabel=f"share of update on prompts\nwith Pass@{K_REF} > {SATURATION}",
                title="overtraining share", ylim=(-0.02, 1.02))
    axes[1].set(xscale="log", xlabel="k", ylabel="Pass@k − base Pass@k (end)", title="gain over the base (±2 SE)")
    log_ticks(axes[1], ks[::2])
    axes[2].set(xlabel="training step", ylabel=f"Pass@{K_EVAL}", title=f"Pass@{K_EVAL} over training")
    axes[0].legend(loc="center right")
    axes[2].legend(loc="lower left")
    panel_labels(axes)
    fig.suptitle(f"shared collapsing benchmark, one shared step size (lr = {SHARED_LR:g}, SGD), "
                 f"{REPS[size]} replicates", fontsize=9)
    sat_grpo, _ = mean_se(np.nanmean(d["grpo_sat"][:, 1:], 1))
    sat_bbg, _ = mean_se(np.nanmean(d["bbg_sat"][:, 1:], 1))
    zs, zs_se = mean_se(d["zero_success_pk"][:, -1, ie])
    g, g_se = mean_se(d["grpo_pk"][:, -1, ie])
    finite = all(np.isfinite(d[f"{n}_pk"]).all() for n in RUNS)
    claims = [holds("runs_finite", finite, float(len(RUNS)),
                    f"{len(RUNS)} runs x {REPS[size]} replicates, finite Pass@k at every checkpoint")]
    claims += [
        greater("grpo_mostly_overtraining", float(sat_grpo), 0.5,
                detail=f"mean over training of GRPO's update share on prompts with Pass@{K_REF} > {SATURATION}"),
        greater("bbg_cuts_overtraining", float(sat_grpo), float(sat_bbg), 0.25,
                detail=f"GRPO's saturated share ({sat_grpo:.3f}) exceeds BBG's ({sat_bbg:.3f}) by more than 0.25"),
        greater("grpo_below_base_at_256", float(base[ie]), float(g), float(4 * g_se),
                detail=f"paper C: standard RLVR ends below the base at Pass@{K_EVAL} (base > GRPO + 4 SE); GRPO "
                       f"{g:.4f} ± {g_se:.4f}, base {base[ie]:.4f}"),
        greater("zero_success_above_base_at_256", float(zs), float(base[ie]), float(4 * zs_se),
                detail=f"final Pass@{K_EVAL} of zero-success gating > base + 4 SE: {zs:.4f} ± {zs_se:.4f}, "
                       f"base {base[ie]:.4f}; final Pass@1 {d['zero_success_pk'][:, -1, 0].mean():.4f} vs base "
                       f"{base[0]:.4f}"),
    ]
    for name in ("bbg", "bbg_noneg"):  # paired over replicates (common random numbers)
        dm, dse = mean_se(d[f"{name}_pk"][:, -1] - d["grpo_pk"][:, -1])  # (nk,)
        z = dm / np.where(dse > 0, dse, np.nan)
        claims.append(greater(
            f"{name}_improves_passk_across_k", float(np.nanmin(z)), 2.0,
            detail=f"{name} minus GRPO final Pass@k > 2 SE (paired over replicates) at every k in {list(BENCH_KS)}; "
                   f"value = the smallest z; differences: " + ", ".join(f"k={k}: {m:+.4f}±{s:.4f}"
                                                                       for k, m, s in zip(BENCH_KS, dm, dse))))
    mass = d["grpo_mass"]  # (R, L, P)
    pk = pass_at_k_exact(mass, K_UNSOLVED)  # (R, L, P)
    unsolved = pk[0, 0] < UNSOLVED  # (P,)  base (step 0)
    n_un = int(unsolved.sum())
    if n_un:
        frac = (pk[:, :, unsolved] >= UNSOLVED).any(axis=1).mean(axis=1)  # (R,)
        fm, fse = mean_se(frac)
    else:
        fm, fse = float("nan"), float("nan")
    claims.append(greater(
        "grpo_solves_unsolvable", float(fm), 0.0, float(2 * fse) if n_un else 0.0,
        detail=f"{n_un} of {mass.shape[2]} prompts are initially unsolvable (base Pass@{K_UNSOLVED} < {UNSOLVED}); "
               f"the fraction of them whose Pass@{K_UNSOLVED} reaches {UNSOLVED} at some checkpoint of GRPO, mean over "
               f"replicates {fm:.3f} ± {fse:.3f}, > 0 by 2 SE; at the end of training: "
               + (f"{(pk[:, -1, unsolved] >= UNSOLVED).mean():.3f}" if n_un else "n/a")))
    return finish("overtraining", fig, claims, seed=SEED, config=config, t0=t0, quick=quick, verdicts=VERDICTS)


if __name__ == "__main__":
    main()
