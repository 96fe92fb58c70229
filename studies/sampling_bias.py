"""sampling_bias: how do finite groups bias learning toward sampled modes? (paper A; docs/theory.md items 6, 9, 11)

(a) One sampled GRPO update from the multimode base policy, R replicates per group size N: mass change
    of the correct outcomes the group did not sample (tabular + mean-centred advantage: an unsampled
    outcome's logit does not move, item 6, so "unsampled" = logit unchanged; all-equal groups move
    nothing and add exactly zero either way).
(b) Tail miss: P(non-zero update, rare mode of mass TAU missed), Monte Carlo vs (1-tau)^N - c^N - w^N.
(c) Neutral drift: two tied correct outcomes, REINFORCE without baseline (sampled mode, step H):
    mean first time |log(pi_0/pi_1)| >= U against the diffusion law of item 11.
"""

from __future__ import annotations

import time

import matplotlib.pyplot as plt
import numpy as np

from collapse_lab import theory
from collapse_lab.runs import cached
from collapse_lab.sim import SimConfig, bandit, multimode, simulate
from studies._common import close, finish, greater, holds, log_ticks, mean_se, panel_labels, setup_style, single_thread

SEED = 0
NS = (2, 4, 8, 16, 32, 64)
PROBLEM = dict(n_prompts=64, n_outcomes=32, seed=0)
STEP_LR = 0.5  # per-prompt step (the token-mean loss averages over prompts: lr = STEP_LR * P)
REPS = dict(full=400, quick=100)
TAU, C = 0.02, 0.30
NS_MISS = np.unique(np.geomspace(1, 256, 30).astype(int))
MC_GROUPS = dict(full=40_000, quick=10_000)
H, U = 0.25, 1.0
GS = dict(full=(2, 4, 8, 16, 32), quick=(2, 4, 8))
DRIFT_REPS = dict(full=200, quick=100)
DRIFT_TOL = 0.12  # relative, beyond 4 SE: exact as H -> 0; overshooting U by O(H) lengthens the passage


def unsampled_mass(size):
    pb = multimode(**PROBLEM)
    p0, out = pb.base_probs(), []
    for n in NS:
        cfg = SimConfig(recipe="grpo", steps=1, lr=STEP_LR * pb.n_prompts, group_size=n, replicates=REPS[size])
        t = simulate(pb, cfg, seed=SEED)
        unsampled = (np.abs(t.final_logits - pb.logits) < 1e-10) & pb.correct  # (R, P, K)
        out.append(((t.final_probs() - p0) * unsampled).sum((1, 2)) / (p0 * pb.correct).sum())
    return np.array(out)  # (len(NS), R): change of unsampled correct mass / total correct mass


def drift_times(size):
    rng, out = np.random.default_rng(SEED), []
    for G in GS[size]:
        steps = int(6 * theory.neutral_drift_time(G, H, 1.0, U) / H)
        cfg = SimConfig(recipe="reinforce", steps=steps, lr=H, group_size=G, replicates=DRIFT_REPS[size],
                        track=((0, 0, 1),))
        t = simulate(bandit([1.0, 1.0]), cfg, seed=int(rng.integers(1 << 31)))
        hit = np.abs(t.log_ratios[:, :, 0]) >= U
        out.append(np.where(hit.any(1), t.steps[np.argmax(hit, 1)] * H, np.nan))
    return np.array(out)  # (len(GS), R) first-passage times t = H * steps


def compute(size):
    rng = np.random.default_rng(SEED)
    counts = [rng.multinomial(n, [TAU, C, 1 - TAU - C], size=MC_GROUPS[size]) for n in NS_MISS]
    miss = np.array([np.mean((c[:, 0] == 0) & (c[:, 1] > 0) & (c[:, 2] > 0)) for c in counts])
    return {"dmass": unsampled_mass(size), "miss": miss, "drift": drift_times(size)}


def main(quick: bool = False) -> bool:
    """Run (or load) the sweep, draw the figure, check its claims; True when all pass."""
    t0 = time.perf_counter()
    setup_style()
    size = "quick" if quick else "full"
    config = dict(ns=NS, problem=PROBLEM, step_lr=STEP_LR, reps=REPS[size], tau=TAU, c=C, ns_miss=NS_MISS,
                  mc_groups=MC_GROUPS[size], h=H, U=U, gs=GS[size], drift_reps=DRIFT_REPS[size])
    with single_thread():  # small problems: numba's parallel start-up dominates (_common)
        d = cached("sampling_bias", config, lambda: compute(size), __file__)
    fig, axes, claims = *plt.subplots(1, 3, figsize=(10, 3.2)), []
    m, se = mean_se(d["dmass"], axis=1)
    axes[0].errorbar(NS, 100 * m, 200 * se, fmt="o-", capsize=3, label="sampled GRPO, one step (±2 SE)")
    axes[0].axhline(0, color="k", lw=0.8)
    axes[0].set(xscale="log", xlabel="group size $N$", title="unsampled correct modes lose mass",
                ylabel="mass change of unsampled\ncorrect modes (% of correct mass)")
    log_ticks(axes[0], NS)
    axes[0].legend()
    claims.append(holds("unsampled_modes_lose_mass", bool(np.all(m + 4 * se < 0)), float(m.max()),
                        "mean one-step mass change of unsampled correct modes < 0 by 4 SE at every N (item 6)"))
    nn = np.arange(1, NS_MISS[-1] + 1)
    axes[1].plot(nn, theory.tail_miss(TAU, C, nn), label="$(1-\\tau)^N - c^N - w^N$")
    axes[1].plot(NS_MISS, d["miss"], "o", mfc="none", label=f"Monte Carlo ({MC_GROUPS[size]} groups)")
    axes[1].set(xscale="log", xlabel="group size $N$", ylabel="P(update misses the rare mode)",
                title=f"tail miss, $\\tau$={TAU}, c={C}")
    axes[1].legend()
    se_mc = np.sqrt(np.maximum(d["miss"] * (1 - d["miss"]), 1e-12) / MC_GROUPS[size])  # binomial SE
    z = np.abs(d["miss"] - theory.tail_miss(TAU, C, NS_MISS)) / se_mc
    claims.append(close("tail_miss_mc_zscore", float(z.max()), 0.0, 4.5, "max |MC - formula| / SE over N"))
    peak = theory.tail_miss_peak(TAU, C)
    claims.append(holds("tail_miss_non_monotone", 1 < peak < NS_MISS[-1] and d["miss"][-1] < d["miss"].max(),
                        float(peak), "formula peaks at an interior N; MC falls after its maximum"))
    dr, gs = d["drift"], np.asarray(GS[size])
    tm, tse = np.nanmean(dr, 1), np.nanstd(dr, 1, ddof=1) / np.sqrt(dr.shape[1])
    gg, pred = np.geomspace(gs[0], gs[-1], 50), theory.neutral_drift_time(gs, H, 1.0, U)
    axes[2].plot(gg, theory.neutral_drift_time(gg, H, 1.0, U), label="$(G/h r^2)(U^2/2+\\cosh U-1)$")
    axes[2].errorbar(gs, tm, 2 * tse, fmt="o", capsize=3, label="sampled REINFORCE (±2 SE)")
    axes[2].set(xscale="log", yscale="log", xlabel="group size $G$", title=f"neutral drift of a tie, h={H}, U={U:g}",
                ylabel="time to $|\\log(\\pi_0/\\pi_1)|=U$ ($\\eta$ steps)")
    log_ticks(axes[2], gs)
    log_ticks(axes[2], [t for t in (5, 10, 20, 50, 100, 200, 500) if tm.min() / 2 < t < 2 * tm.max()], "y")
    axes[2].legend()
    rel = np.maximum((np.abs(tm - pred) - 4 * tse) / pred, 0.0)
    claims.append(close("neutral_drift_rel_error", float(rel.max()), 0.0, DRIFT_TOL,
                        "max over G of (|mean first passage - law| - 4 SE) / law; relative errors "
                        f"{np.round(tm / pred - 1, 3).tolist()}"))
    claims.append(greater("drift_censoring_ok", 1 - float(np.isnan(dr).mean()), 0.98, detail="share of replicates "
                          "that reached U within 6x the predicted time"))
    panel_labels(axes)
    return finish("sampling_bias", fig, claims, seed=SEED, config=config, t0=t0, quick=quick)


if __name__ == "__main__":
    main()
