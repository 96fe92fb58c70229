"""overtraining: are most updates overtraining? (paper C; THEORY.md items 15-16, METHODS §2)

Sampled GRPO, zero-success gating and Bayesian Boundary Gating on the shared benchmark
(studies._common.BENCHMARK), R replicates each.
(a) Share of the update (sum |dL/dz|) spent on prompts whose exact Pass@K_REF already exceeds
    SATURATION (the simulator's `saturated_share`, saturation_k = K_REF = BBG's k_ref).
(b) Pass@k, k = 1..1024, at the end of training against the base model.
(c) Pass@256 over training.
"""

from __future__ import annotations

import time

import matplotlib.pyplot as plt
import numpy as np

from collapse_lab.runs import cached
from collapse_lab.sim import SimConfig, simulate
from studies._common import (
    BENCH_KS,
    BENCH_TRAIN,
    BENCHMARK,
    RECIPE_COLORS,
    band,
    benchmark,
    finish,
    greater,
    log_ticks,
    mean_se,
    panel_labels,
    setup_style,
)

SEED = 0
RECIPES = ("grpo", "zero_success", "bbg")
K_REF, SATURATION, K_EVAL = 16, 0.99, 256
REPS = dict(full=16, quick=8)
# verdicts on the papers' claims (reproduced or not, never a failure of the run); every other claim is a check
VERDICTS = ("grpo_mostly_overtraining", "bbg_cuts_overtraining", "grpo_below_base_at_256",
            "zero_success_above_base_at_256")


def compute(size):
    out, pb = {}, benchmark()
    for rec in RECIPES:
        cfg = SimConfig(recipe=rec, replicates=REPS[size], ks=BENCH_KS, saturation=SATURATION,
                        saturation_k=K_REF, **BENCH_TRAIN)
        t = simulate(pb, cfg, seed=SEED)
        out[f"{rec}_sat"], out[f"{rec}_pk"], out["steps"] = t.saturated_share, t.pass_at_k, t.steps
    return out


def main(quick: bool = False) -> bool:
    """Run (or load) the sweep, draw the figure, check its claims; True when all pass."""
    t0 = time.perf_counter()
    setup_style()
    size = "quick" if quick else "full"
    config = dict(benchmark=BENCHMARK, train=BENCH_TRAIN, ks=BENCH_KS, recipes=RECIPES, k_ref=K_REF,
                  saturation=SATURATION, reps=REPS[size])
    d = cached("overtraining", config, lambda: compute(size), __file__)
    steps, ks, ie = d["steps"], np.asarray(BENCH_KS), BENCH_KS.index(K_EVAL)
    fig, axes = plt.subplots(1, 3, figsize=(10, 3.2))
    base = d["grpo_pk"][0, 0]  # step 0 = base policy (identical in every run)
    axes[1].plot(ks, base, "k--", lw=1.2, label="base model")
    axes[2].axhline(base[ie], color="k", ls="--", lw=1.2, label="base model")
    for rec in RECIPES:
        c = RECIPE_COLORS[rec]
        band(axes[0], steps[1:], d[f"{rec}_sat"][:, 1:], label=rec, color=c)
        band(axes[1], ks, d[f"{rec}_pk"][:, -1], label=rec, color=c, marker="o", ms=3)
        band(axes[2], steps, d[f"{rec}_pk"][:, :, ie], label=rec, color=c)
    axes[0].set(xlabel="training step", ylabel=f"share of update on prompts\nwith Pass@{K_REF} > {SATURATION}",
                title="overtraining share", ylim=(-0.02, 1.02))
    axes[1].set(xscale="log", xlabel="k", ylabel="Pass@k (exact, end of training)", title="Pass@k after training")
    log_ticks(axes[1], ks[::2])
    axes[2].set(xlabel="training step", ylabel=f"Pass@{K_EVAL}", title=f"Pass@{K_EVAL} over training")
    for ax in axes:
        ax.legend()
    panel_labels(axes)
    sat_grpo, _ = mean_se(np.nanmean(d["grpo_sat"][:, 1:], 1))
    sat_bbg, _ = mean_se(np.nanmean(d["bbg_sat"][:, 1:], 1))
    zs, zs_se = mean_se(d["zero_success_pk"][:, -1, ie])
    g, g_se = mean_se(d["grpo_pk"][:, -1, ie])
    claims = [
        greater("grpo_mostly_overtraining", float(sat_grpo), 0.5,
                detail=f"mean over training of GRPO's update share on prompts with Pass@{K_REF} > {SATURATION}"),
        greater("bbg_cuts_overtraining", float(sat_grpo), float(sat_bbg), 0.25,
                detail="GRPO's saturated share exceeds BBG's by more than 0.25. Observed, not claimed: BBG ends "
                       f"below the base at k = {K_EVAL} ({mean_se(d['bbg_pk'][:, -1, ie])[0]:.4f}); its negative "
                       "REINFORCE term on all-failure groups raises the likeliest other (wrong) outcomes most "
                       "(squeezing, THEORY.md item 13)"),
        greater("grpo_below_base_at_256", float(base[ie]), float(g), float(4 * g_se),
                detail=f"paper C: standard RLVR ends below the base at Pass@{K_EVAL} (base > GRPO + 4 SE); GRPO "
                       f"{g:.4f} ± {g_se:.4f}, base {base[ie]:.4f}. In this tabular benchmark (no shared parameters) "
                       "GRPO's expected update never lowers a prompt's correct mass"),
        greater("zero_success_above_base_at_256", float(zs), float(base[ie]), float(4 * zs_se),
                detail=f"final Pass@{K_EVAL} of zero-success gating > base + 4 SE"),
    ]
    return finish("overtraining", fig, claims, seed=SEED, config=config, t0=t0, quick=quick,
                  verdicts=VERDICTS)


if __name__ == "__main__":
    main()
