"""paper_claims: the papers' remaining headline claims, one verdict each (issue 11, scorecard rows)

(a) Paper A, ISAC improves generalisation: GRPO and ISAC train on the first half of the shared
    collapsing benchmark's prompts (SimConfig.train_prompts; the held-out half moves only through
    the shared answer scores) over the lr grid LRS; held-out Pass@K_EVAL at matched *training*
    Pass@1 = TARGET_P1 (collapse_lab.compare, frontier over lr and time).
(b) Paper B, DPH improves both Pass@1 and Pass@K_EVAL over GRPO at the same step size and budget:
    the end of fixes_leaderboard's shared-lr panel (lr = SHARED_LR, its cache), paired over replicates.
(c) Paper D, sampled IPS-GRPO with GRPO's group std at finite G = 8 on a graded-reward bandit: the
    terminal distribution against r / sum r (total variation), and GRPO's for comparison.
(d) Paper D, collapse regardless of an entropy bonus or the optimiser: GRPO + 0.01 entropy bonus
    (SGD, lr = SHARED_LR, fixes_leaderboard's panel) and plain GRPO with Adam (lr = ADAM_LR) on the
    shared benchmark: Pass@1 up and Pass@K_EVAL below the base by 4 SE.
Paper B's "JS above reverse KL" is a verdict of `divergences`.
"""

from __future__ import annotations

import time

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd

import studies.fixes_leaderboard as fl
from collapse_lab import compare
from collapse_lab.metrics import pass_at_k_exact
from collapse_lab.runs import cached
from collapse_lab.sim import SimConfig, bandit, simulate
from studies._common import (
    BENCH_KS,
    RECIPE_COLORS,
    SHARED,
    SHARED_LR,
    SHARED_TRAIN,
    close,
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
K_EVAL, TARGET_P1 = 256, 0.5  # fixed before the run
LRS = fl.LRS
N_TRAIN = 32  # prompts 0..31 train (the 8 easy ones among them), 32..63 are held out
GEN_REPS = dict(full=8, quick=4)
DPH = ("dph_forward", "dph_js", "dph_alpha")
IPS_REWARDS = (1.0, 0.6, 0.3, 0.0, 0.0, 0.0)
IPS_TRAIN = dict(steps=3000, lr=0.1, group_size=8, replicates=16, log_every=100)
TV_TOL = 0.05  # "ends at r / sum r": total variation below this
ADAM_LR = 0.01
# verdicts on the papers' claims (reproduced or not, never a failure of the run); every other claim is a check
VERDICTS = ("isac_generalises_held_out", *(f"{r}_improves_pass1_and_passk" for r in DPH),
            "ips_sampled_reward_proportional", "ips_sampled_closer_than_grpo", "collapse_with_entropy_bonus",
            "collapse_with_adam")


def compute(size):
    """Held-out grid (gen_* columns), the IPS bandit runs (ips_p, grpo_p [R, K] final policies, *_tv [R, L]) and
    the Adam run (adam_pk [R, L, nk])."""
    out, pb = {}, shared_benchmark()
    steps = fl.QUICK_STEPS if size == "quick" else SHARED_TRAIN["steps"]
    train, held = np.arange(N_TRAIN), np.arange(N_TRAIN, pb.n_prompts)
    rows = []
    with single_thread():
        for rec in ("grpo", "isac"):
            for lr in LRS:
                cfg = SimConfig(**dict(SHARED_TRAIN, steps=steps), recipe=rec, lr=lr, replicates=GEN_REPS[size],
                                ks=(1,), train_prompts=tuple(int(x) for x in train))
                tr = simulate(pb, cfg, seed=SEED)
                m = tr.correct_mass  # (R, L, P)
                p1 = m[:, :, train].mean(2)
                pk = pass_at_k_exact(m[:, :, held], K_EVAL).mean(2)  # (R, L)
                R, L = p1.shape
                rows.append(pd.DataFrame({"recipe": rec, "lr": lr, "replicate": np.repeat(np.arange(R), L),
                                          "step": np.tile(tr.steps, R), "pass@1": p1.ravel(),
                                          compare.pass_col(K_EVAL): pk.ravel()}))
        df = pd.concat(rows, ignore_index=True)
        out.update({f"gen_{c}": df[c].to_numpy(dtype=str if c == "recipe" else float) for c in df.columns})
        r = np.asarray(IPS_REWARDS)
        for rec in ("ips_grpo", "grpo"):
            tr = simulate(bandit(r), SimConfig(recipe=rec, ks=(1,), **IPS_TRAIN), seed=SEED)
            z = tr.final_logits[:, 0]  # (R, K)
            p = np.exp(z - z.max(1, keepdims=True))
            out[f"{rec}_p"] = p / p.sum(1, keepdims=True)
        tr = simulate(pb, SimConfig(**dict(SHARED_TRAIN, optimizer="adam"), recipe="grpo", lr=ADAM_LR,
                                    replicates=GEN_REPS[size], ks=BENCH_KS), seed=SEED)
        out["adam_pk"] = tr.pass_at_k
    return out


def main(quick: bool = False) -> bool:
    """Run (or load) the sweeps, draw the figure, check its claims; True when all pass."""
    t0 = time.perf_counter()
    setup_style()
    size = "quick" if quick else "full"
    config = dict(benchmark=SHARED, train=SHARED_TRAIN, lrs=LRS, n_train=N_TRAIN, reps=GEN_REPS[size],
                  ips_rewards=IPS_REWARDS, ips_train=IPS_TRAIN, adam_lr=ADAM_LR, quick=quick)
    d = cached("paper_claims", config, lambda: compute(size), __file__)
    lb = fl.load(quick)[1]  # fixes_leaderboard's sweep (its cache)
    df = pd.DataFrame({k[4:]: v for k, v in d.items() if k.startswith("gen_")})
    ycol, ik = compare.pass_col(K_EVAL), BENCH_KS.index(K_EVAL)
    ks, base = np.asarray(BENCH_KS), lb["base_pk"]

    fig, axes = plt.subplots(1, 4, figsize=(13, 3.6))
    ax = axes[0]
    targets = np.round(np.arange(0.3, 0.81, 0.05), 3)
    fr = compare.frontier(df, targets, x="pass@1", y=ycol)
    for rec in ("grpo", "isac"):
        f = fr[fr["recipe"] == rec]
        ax.errorbar(f["target"], f["value"], 2 * f["se"], color=RECIPE_COLORS[rec], marker="o", ms=3, label=rec,
                    capsize=2)
    ax.axvline(TARGET_P1, color="k", ls=":", lw=1)
    ax.set(xlabel="training-prompt Pass@1 (matched)", ylabel=f"held-out Pass@{K_EVAL}",
           title="A: held-out prompts (frontier)")
    ax.legend()
    ax = axes[1]
    for rec in ("grpo", *DPH):
        m, se = mean_se(lb[f"{rec}_pk"] - lb["grpo_pk"])
        ax.errorbar(ks, m, 2 * se, color=RECIPE_COLORS[rec], marker="o", ms=3, label=rec, capsize=2)
    ax.axhline(0, color="k", lw=0.6)
    ax.set(xscale="log", xlabel="k", ylabel="Pass@k − GRPO's", title=f"B: DPH vs GRPO, lr = {SHARED_LR:g}")
    log_ticks(ax, ks[::2])
    ax.legend(fontsize=6.5)
    ax = axes[2]
    r = np.asarray(IPS_REWARDS)
    x = np.arange(r.size)
    ax.bar(x - 0.27, r / r.sum(), 0.27, color="0.6", label="r / Σr")
    for off, rec in ((0.0, "ips_grpo"), (0.27, "grpo")):
        m, se = mean_se(d[f"{rec}_p"])
        ax.bar(x + off, m, 0.27, yerr=2 * se, color=RECIPE_COLORS[rec], label=rec, capsize=2)
    ax.set(xticks=x, xticklabels=[f"{v:g}" for v in r], xlabel="outcome reward r", ylabel="terminal probability",
           title=f"D: sampled, G = {IPS_TRAIN['group_size']}, {IPS_TRAIN['steps']} steps")
    ax.legend()
    ax = axes[3]
    ax.plot(ks, base, "k--", lw=1.2, label="base model")
    for lab, pk, c in (("grpo + entropy 0.01 (sgd)", lb["entropy_pk"], RECIPE_COLORS["entropy"]),
                       (f"grpo, adam lr {ADAM_LR:g}", d["adam_pk"][:, -1], "#0072B2")):
        m, se = mean_se(pk)
        ax.errorbar(ks, m, 2 * se, color=c, marker="o", ms=3, label=lab, capsize=2)
    ax.set(xscale="log", xlabel="k", ylabel="Pass@k (end)", title="D: entropy bonus / optimiser")
    log_ticks(ax, ks[::2])
    ax.legend(fontsize=6.5)
    panel_labels(axes)

    claims = [holds("runs_finite", bool(np.isfinite(df[ycol]).all() and np.isfinite(d["adam_pk"]).all()
                                        and all(np.isfinite(d[f"{x}_p"]).all() for x in ("ips_grpo", "grpo"))),
                    float(len(df)), "every run finite")]
    fa = compare.frontier_at(df, TARGET_P1, x="pass@1", y=ycol).set_index("recipe")
    ok = (fa["status"] == "ok").all()
    diff = float(fa.loc["isac", "value"] - fa.loc["grpo", "value"])
    se = float(np.hypot(fa.loc["isac", "se"], fa.loc["grpo", "se"]))
    claims.append(greater(
        "isac_generalises_held_out", diff if ok else float("nan"), 0.0, 2 * se if ok else 0.0, assessed=not quick,
        detail=f"paper A: ISAC minus GRPO held-out Pass@{K_EVAL} at matched training Pass@1 = {TARGET_P1:g} "
               f"(best lr of {len(LRS)}), > 2 SE; " + ", ".join(f"{x} {fa.loc[x, 'value']:.4f} ± {fa.loc[x, 'se']:.4f} "
                                                               f"(lr {fa.loc[x, 'lr']:g}, {fa.loc[x, 'status']})"
                                                               for x in ("isac", "grpo"))))
    for rec in DPH:
        d1, s1 = mean_se(lb[f"{rec}_pk"][:, 0] - lb["grpo_pk"][:, 0])
        dk, sk = mean_se(lb[f"{rec}_pk"][:, ik] - lb["grpo_pk"][:, ik])
        z = min(d1 / s1 if s1 > 0 else np.sign(d1) * np.inf, dk / sk if sk > 0 else np.sign(dk) * np.inf)
        claims.append(greater(
            f"{rec}_improves_pass1_and_passk", float(z), 2.0, assessed=not quick,
            detail=f"paper B: {rec} minus GRPO at lr {SHARED_LR:g} (same step size and budget, paired over "
                   f"replicates): Pass@1 {d1:+.4f} ± {s1:.4f}, Pass@{K_EVAL} {dk:+.4f} ± {sk:.4f}; both > 2 SE "
                   "(value = the smaller z)"))
    tv = {x: 0.5 * np.abs(d[f"{x}_p"] - r / r.sum()).sum(1) for x in ("ips_grpo", "grpo")}  # (R,)
    (ti, ti_se), (tg, tg_se) = mean_se(tv["ips_grpo"]), mean_se(tv["grpo"])
    claims.append(close(
        "ips_sampled_reward_proportional", float(ti), 0.0, TV_TOL,
        detail=f"paper D: sampled IPS-GRPO (GRPO's group std, G = {IPS_TRAIN['group_size']}) ends at r / sum r: "
               f"mean TV {ti:.4f} ± {ti_se:.4f} < {TV_TOL:g}; terminal probabilities "
               f"{np.round(d['ips_grpo_p'].mean(0), 3).tolist()} vs r / sum r {np.round(r / r.sum(), 3).tolist()}"))
    claims.append(greater(
        "ips_sampled_closer_than_grpo", float(tg - ti), 0.0, float(4 * np.hypot(ti_se, tg_se)),
        detail=f"TV to r / sum r: GRPO {tg:.4f} ± {tg_se:.4f} minus IPS-GRPO {ti:.4f} ± {ti_se:.4f} > 4 SE"))
    for name, pk in (("collapse_with_entropy_bonus", lb["entropy_pk"]), ("collapse_with_adam", d["adam_pk"][:, -1])):
        (p1, p1_se), (pk_m, pk_se) = mean_se(pk[:, 0]), mean_se(pk[:, ik])
        z = min((p1 - base[0]) / p1_se, (base[ik] - pk_m) / pk_se)
        claims.append(greater(
            name, float(z), 4.0, assessed=not quick,
            detail=f"paper D: Pass@1 {base[0]:.4f} -> {p1:.4f} ± {p1_se:.4f} and Pass@{K_EVAL} {base[ik]:.4f} -> "
                   f"{pk_m:.4f} ± {pk_se:.4f}: both moves > 4 SE (value = the smaller z)"))
    return finish("paper_claims", fig, claims, seed=SEED, config=config, t0=t0, quick=quick, verdicts=VERDICTS)


if __name__ == "__main__":
    main()
