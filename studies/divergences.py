"""divergences: which divergence keeps coverage? (paper B; docs/theory.md item 17, docs/methods.md §3)

All runs are `flow` mode with the plain advantage r - J (grpo, std "none"), so each recipe ascends
exactly E[r] - beta D_f(pi || ref): `reverse_kl` (beta on the exact reverse KL), `dph_forward`,
`dph_js`, `dph_alpha` (in flow the divergence term acts on every prompt: no D_pef split).
(a) Fixed points on one bandit against theory.fdiv_fixed_point (closed forms, bisection).
(b) On a multimode problem: correct-mode coverage against Pass@1 along training, so recipes are
    compared at equal Pass@1 (COEF shared by all divergences); (c) Pass@k there, k = 1..1024.
"""

from __future__ import annotations

import time

import matplotlib.pyplot as plt
import numpy as np

from collapse_lab import theory
from collapse_lab.runs import cached
from collapse_lab.sim import SimConfig, bandit, multimode, simulate
from studies._common import RECIPE_COLORS, close, finish, greater, log_ticks, panel_labels, setup_style, single_thread

SEED = 0
REF = np.array([0.35, 0.25, 0.2, 0.1, 0.06, 0.04])
REW = np.array([0.0, 1.0, 0.0, 1.0, 0.0, 1.0])
BETA = 0.5
FP = dict(lr=2.0, steps=4000)
KINDS = {"reverse_kl": ("reverse_kl", "beta"), "dph_forward": ("forward", "eta"),
         "dph_js": ("js", "eta"), "dph_alpha": ("alpha", "eta")}  # recipe: (theory kind, coefficient)
PROBLEM = dict(n_prompts=32, n_outcomes=16, n_correct=4, seed=1)
COEF = 0.1
TRAIN = dict(lr=30.0, steps=2000, log_every=20)
TARGET_P1 = 0.85  # Pass@1 at which coverage and Pass@k are compared (reached by every recipe)
KS = (1, 2, 4, 8, 16, 32, 64, 128, 256, 1024)
K_CLAIM = 256
# verdicts on the papers' claims (reproduced or not, never a failure of the run); every other claim is a check
VERDICTS = ("forward_vs_reverse_kl", "forward_vs_no_kl", "js_vs_no_kl", "js_vs_reverse_kl", "alpha_vs_no_kl",
            "forward_passk_vs_reverse_kl", "forward_passk_vs_grpo")


def compute(quick):
    out = {}
    for rec, (_, coef) in KINDS.items():
        cfg = SimConfig(recipe=rec, overrides={coef: BETA, "std": "none"}, mode="flow", log_every=FP["steps"], **FP)
        out[f"fp_{rec}"] = simulate(bandit(REW, REF), cfg, seed=SEED).final_probs()[0, 0]
    pb = multimode(**PROBLEM)
    train = dict(TRAIN, steps=TRAIN["steps"] // 2) if quick else TRAIN
    for rec in ("grpo",) + tuple(KINDS):
        over = {"std": "none"} if rec == "grpo" else {KINDS[rec][1]: COEF, "std": "none"}
        t = simulate(pb, SimConfig(recipe=rec, overrides=over, mode="flow", ks=KS, **train), seed=SEED)
        out[f"pk_{rec}"], out[f"cov_{rec}"] = t.pass_at_k[0], t.coverage[0]  # (L, nk), (L,)
    return out


def at_target(p1, y):
    """y (L, ...) where Pass@1 p1 (L,) first reaches TARGET_P1 (linear interpolation between logged steps)."""
    i = int(np.argmax(p1 >= TARGET_P1))
    if p1[i] < TARGET_P1 or i == 0:
        return y[i] if p1[i] >= TARGET_P1 else np.full(y.shape[1:], np.nan)
    f = (TARGET_P1 - p1[i - 1]) / (p1[i] - p1[i - 1])
    return y[i - 1] + f * (y[i] - y[i - 1])


def main(quick: bool = False) -> bool:
    """Run (or load) the sweep, draw the figure, check its claims; True when all pass."""
    t0 = time.perf_counter()
    setup_style()
    config = dict(ref=REF, rewards=REW, beta=BETA, fixed_point=FP, problem=PROBLEM, coef=COEF,
                  train=TRAIN, target_p1=TARGET_P1, quick=quick)
    with single_thread():  # small problems: numba's parallel start-up dominates (_common)
        d = cached("divergences", config, lambda: compute(quick), __file__)
    fig, axes = plt.subplots(1, 3, figsize=(11, 3.4), gridspec_kw=dict(width_ratios=[1.2, 1, 1]))
    ax, claims, x = axes[0], [], np.arange(len(REF))
    ax.bar(x - 0.36, REF, 0.16, color="#BBBBBB", label="reference")
    for n, (rec, (kind, _)) in enumerate(KINDS.items()):
        pred = theory.fdiv_fixed_point(REF, REW, BETA, kind)
        ax.bar(x - 0.18 + 0.16 * n, d[f"fp_{rec}"], 0.16, color=RECIPE_COLORS[rec], label=f"{rec} (sim)")
        ax.plot(x - 0.18 + 0.16 * n, pred, "_", color="k", ms=6, mew=1.5, label="closed form" if n == 0 else None)
        claims.append(close(f"fixed_point_{kind}", float(np.abs(d[f"fp_{rec}"] - pred).max()), 0.0, 1e-6,
                            f"flow fixed point of E[r] - {BETA} D_f vs theory.fdiv_fixed_point"))
    ax.set(xticks=x, xticklabels=[f"{'✓' if r else '✗'} {p:.2f}" for r, p in zip(REW, REF)],
           xlabel="outcome (✓ correct, reference probability)", ylabel="probability at the optimum",
           title=f"optima of $E[r]-\\beta D_f$, $\\beta$={BETA}")
    ax.legend(fontsize=6.5)
    cov, pk = {}, {}
    for rec in ("grpo",) + tuple(KINDS):
        label, p1 = "no KL (grpo)" if rec == "grpo" else rec, d[f"pk_{rec}"][:, 0]
        axes[1].plot(p1, d[f"cov_{rec}"], color=RECIPE_COLORS[rec], label=label)
        cov[rec], pk[rec] = float(at_target(p1, d[f"cov_{rec}"])), at_target(p1, d[f"pk_{rec}"])
        axes[2].plot(KS, pk[rec], "o-", ms=3, color=RECIPE_COLORS[rec], label=label)
    axes[1].axvline(TARGET_P1, color="k", ls=":", lw=0.8)
    axes[1].set(xlabel="Pass@1 (mean over prompts)", ylabel="correct-mode coverage ($\\pi > 10^{-3}$)",
                title=f"training path, coefficient {COEF}")
    axes[2].set(xscale="log", xlabel="k", ylabel="Pass@k (exact)", title=f"Pass@k at equal Pass@1 = {TARGET_P1}")
    log_ticks(axes[2], (1, 4, 16, 64, 256, 1024))
    for ax in axes[1:]:
        ax.legend()
    panel_labels(axes)
    ik = KS.index(K_CLAIM)
    det = f"coverage at Pass@1 = {TARGET_P1}"
    claims.append(greater("forward_vs_reverse_kl", cov["dph_forward"], cov["reverse_kl"], detail=det))
    claims.append(greater("forward_vs_no_kl", cov["dph_forward"], cov["grpo"], detail=det))
    claims.append(greater("js_vs_no_kl", cov["dph_js"], cov["grpo"], detail=det))
    claims.append(greater("js_vs_reverse_kl", cov["dph_js"], cov["reverse_kl"], detail=det + " (paper B ranks JS, "
                          "a mass-covering f-divergence, above reverse KL; here at equal coefficient)"))
    claims.append(greater("alpha_vs_no_kl", cov["dph_alpha"], cov["grpo"], detail=det))
    det = (f"Pass@{K_CLAIM} at Pass@1 = {TARGET_P1}; JS {pk['dph_js'][ik]:.4f}, reverse KL "
           f"{pk['reverse_kl'][ik]:.4f}, no KL {pk['grpo'][ik]:.4f}")
    for other in ("reverse_kl", "grpo"):
        claims.append(greater(f"forward_passk_vs_{other}", float(pk["dph_forward"][ik]), float(pk[other][ik]),
                              detail=det))
    return finish("divergences", fig, claims, seed=SEED, config=config, t0=t0, quick=quick,
                  verdicts=VERDICTS)


if __name__ == "__main__":
    main()
