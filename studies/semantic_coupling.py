"""semantic_coupling: does collapse on one prompt spread to others? (paper A; docs/theory.md item 12)

`coupled` problem, param "both" (z = z0 + theta + phi . w, phi(x, y) = sqrt(c) e_y (x) u_x).
(a) One flow step of GRPO on the prompts of cluster 0: the logit change of every untrained prompt
    against the kernel prediction eta sum_x K(x, x') g_x (theory.coupling_prediction, exact), and
    the first-order log-prob change (theory.coupling_logprob_change).
(b) Sampled GRPO on prompt 0 only: entropy change of every untrained prompt against its
    similarity u_0 . u_x', coupled vs tabular (c = 0: shared parameters are zero, no coupling).
(c) Mean entropy change of the untrained prompts of prompt 0's cluster vs coupling strength c.
"""

from __future__ import annotations

import time

import matplotlib.pyplot as plt
import numpy as np

from collapse_lab import theory
from collapse_lab.runs import cached
from collapse_lab.sim import SimConfig, build_recipe, coupled, flow_grad, simulate
from studies._common import band, close, finish, greater, holds, panel_labels, setup_style, single_thread

SEED = 0
PROBLEM = dict(n_prompts=32, n_outcomes=8, n_correct=2, n_clusters=4, dim=4, noise=0.5, seed=0)
ONE_STEP_LR = 0.5
TRAIN = dict(recipe="grpo", lr=0.5, steps=150, group_size=8, param="both", log_every=150)
REPS = dict(full=32, quick=8)
COUPLINGS = (0.0, 0.25, 0.5, 1.0, 2.0)
# verdicts on the papers' claims (reproduced or not, never a failure of the run); every other claim is a check
VERDICTS = ("entropy_drop_tracks_similarity", "spread_grows_with_coupling")


def entropy(p):
    return -(p * np.log(np.maximum(p, 1e-300))).sum(-1)


def one_step():
    pb = coupled(coupling=1.0, **PROBLEM)
    tp = tuple(np.flatnonzero(np.asarray(pb.meta["cluster"]) == 0))
    cfg = SimConfig(recipe="grpo", mode="flow", lr=ONE_STEP_LR, steps=1, param="both", train_prompts=tp)
    gz = flow_grad(build_recipe(cfg), pb.logits, pb, np.asarray(tp))  # dLoss/dz (P, K)
    t = simulate(pb, cfg, seed=SEED)
    return {"dz": t.final_logits[0] - pb.logits, "grad": -gz, "tp": np.asarray(tp)}


def sweep(size):
    out = {}
    for c in COUPLINGS:
        pb = coupled(coupling=c, **PROBLEM)
        t = simulate(pb, SimConfig(train_prompts=(0,), replicates=REPS[size], **TRAIN), seed=SEED)
        out[f"dH_{c}"] = entropy(t.final_probs()) - entropy(pb.base_probs())[None]  # (R, P)
    return out


def main(quick: bool = False) -> bool:
    """Run (or load) the sweep, draw the figure, check its claims; True when all pass."""
    t0 = time.perf_counter()
    setup_style()
    size = "quick" if quick else "full"
    config = dict(problem=PROBLEM, one_step_lr=ONE_STEP_LR, train=TRAIN, reps=REPS[size], couplings=COUPLINGS)
    with single_thread():  # small problems: numba's parallel start-up dominates (_common)
        d = cached("semantic_coupling", config, lambda: {**one_step(), **sweep(size)}, __file__)
    pb = coupled(coupling=1.0, **PROBLEM)
    cluster, claims = np.asarray(pb.meta["cluster"]), []
    fig, axes = plt.subplots(1, 3, figsize=(10, 3.3))
    # (a) item 12: exact logit change and first-order log-prob change on untrained prompts
    un = np.setdiff1d(np.arange(pb.n_prompts), d["tp"])
    pred = theory.coupling_prediction(pb.features, d["grad"], ONE_STEP_LR)
    claims.append(close("kernel_logit_change", float(np.abs(d["dz"][un] - pred[un]).max()), 0.0, 1e-10,
                        "max |dz(x') - eta sum_x K(x,x') g_x| over untrained prompts x'"))
    lp0 = np.log(pb.base_probs())
    z1 = pb.logits + d["dz"]
    dlp = (z1 - np.log(np.exp(z1).sum(-1, keepdims=True)) - lp0)[un].ravel()
    dlp_pred = theory.coupling_logprob_change(pb.features, d["grad"], ONE_STEP_LR, pb.base_probs())[un].ravel()
    ax = axes[0]
    ax.plot(dlp_pred, dlp, "o", ms=3, mfc="none", label="untrained (prompt, outcome)")
    lim = np.abs(dlp).max() * 1.1
    ax.plot([-lim, lim], [-lim, lim], "k-", lw=0.8, label="$y = x$")
    ax.set(xlabel="predicted $\\Delta\\log\\pi$, $(I - 1\\pi^T)\\,\\eta K g$", ylabel="simulated $\\Delta\\log\\pi$",
           title="one step on cluster 0")
    ax.legend()
    rel = np.abs(dlp - dlp_pred).max() / np.abs(dlp).max()
    claims.append(close("kernel_logprob_first_order", float(rel), 0.0, 0.05,
                        "max |sim - first-order prediction| / max |sim|: O(eta) second-order remainder"))
    # (b) collapse spreads with similarity; tabular shows none
    sim = theory.coupling_kernel(pb.features)[0, 0, :, 0]  # u_0 . u_x' (c = 1)
    others = np.arange(1, pb.n_prompts)
    ax = axes[1]
    for c, color in ((1.0, "#0072B2"), (0.0, "#000000")):
        dh = d[f"dH_{c}"].mean(0)
        ax.plot(sim[others], dh[others], "o", ms=4, color=color, mfc="none" if c else color,
                label=f"coupling c={c:g}" + (" (tabular)" if c == 0 else ""))
    ax.axhline(0, color="k", lw=0.6)
    ax.set(xlabel="similarity $u_0\\cdot u_{x'}$", ylabel="entropy change of untrained prompt (nats)",
           title="GRPO on prompt 0 only")
    ax.legend()
    dh1 = d["dH_1.0"].mean(0)[others]
    r = float(np.corrcoef(sim[others], -dh1)[0, 1])
    claims.append(greater("entropy_drop_tracks_similarity", r, 0.7,
                          detail="Pearson correlation of similarity with the entropy drop over untrained prompts"))
    claims.append(holds("tabular_no_spread", bool(np.all(d["dH_0.0"][:, others] == 0)),
                        float(np.abs(d["dH_0.0"][:, others]).max()), "c = 0: untrained prompts unchanged exactly"))
    # (c) strength of coupling
    same = others[cluster[others] == cluster[0]]
    drops = np.array([-d[f"dH_{c}"][:, same].mean(1) for c in COUPLINGS]).T  # (R, C)
    band(axes[2], COUPLINGS, drops, label="same-cluster untrained prompts", marker="o")
    axes[2].set(xlabel="coupling strength $c$", ylabel="entropy drop (nats, ±2 SE)", title="spread vs coupling")
    axes[2].legend()
    m = drops.mean(0)
    claims.append(holds("spread_grows_with_coupling", bool(np.all(np.diff(m) > 0)), float(m[-1]),
                        "mean entropy drop on same-cluster untrained prompts increases with c"))
    panel_labels(axes)
    return finish("semantic_coupling", fig, claims, seed=SEED, config=config, t0=t0, quick=quick,
                  verdicts=VERDICTS)


if __name__ == "__main__":
    main()
