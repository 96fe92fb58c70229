"""ips_terminal: where does each objective end? (paper D; docs/theory.md items 1, 3, 8)

(a) Flow (G = infinity) from a uniform start on graded rewards R: GRPO and REINFORCE collapse onto
    the best outcome, IPS-GRPO ends at R / sum R.
(b, c) Finite groups: the rest point of the exact G-sample IPS mean field (sim `mean_field` mode,
    which enumerates the multinomial through the objective) against theory.ips_rest_point (closed
    binomial sums), without a baseline (REINFORCE on the shaped reward) and with the group mean.
"""

from __future__ import annotations

import time

import matplotlib.pyplot as plt
import numpy as np

from collapse_lab import theory
from collapse_lab.runs import cached
from collapse_lab.sim import SimConfig, bandit, simulate
from studies._common import (
    PALETTE,
    RECIPE_COLORS,
    close,
    finish,
    greater,
    log_ticks,
    panel_labels,
    setup_style,
    single_thread,
)

SEED = 0
R = np.array([0.6, 0.4, 0.2, 0.1])
FLOW = dict(lr=1.0, steps=3000)
FLOW_RECIPES = ("grpo", "reinforce", "ips_grpo")
GS = (2, 3, 4, 6, 8, 16)
GS_QUICK = (2, 4, 8)
MF = dict(lr=4.0, steps=400)
BASELINES = {"none": (False, "reinforce"), "mean": (True, "dr_grpo")}  # theory flag, advantage kind
REST_TOL = 5e-3  # extinct outcomes decay algebraically (~1/t): O(1e-3) left after MF["steps"]
PROBE = np.array([0.1, 0.2, 0.3, 0.4])  # policy at which one mean-field step is compared exactly


def compute(gs):
    out = {}
    for rec in FLOW_RECIPES:
        # IPS flow with std "none": the idealised J_IPS; GRPO's std of r/pi vanishes at r/sum r
        over = {"std": "none"} if rec == "ips_grpo" else {}
        t = simulate(bandit(R), SimConfig(recipe=rec, overrides=over, mode="flow", log_every=100, **FLOW), seed=SEED)
        out[f"flow_{rec}"] = t.final_probs()[0, 0]
    for name, (_, kind) in BASELINES.items():
        rest, step = [], []
        for G in gs:
            cfg = SimConfig(recipe="ips_grpo", overrides={"advantage_kind": kind}, mode="mean_field",
                            group_size=G, log_every=MF["steps"], **MF)
            rest.append(simulate(bandit(R), cfg, seed=SEED).final_probs()[0, 0])
            one = SimConfig(recipe="ips_grpo", overrides={"advantage_kind": kind}, mode="mean_field",
                            group_size=G, lr=1.0, steps=1)
            step.append(simulate(bandit(R, PROBE), one, seed=SEED).final_logits[0, 0] - np.log(PROBE))
        out[f"rest_{name}"], out[f"step_{name}"] = np.array(rest), np.array(step)
    return out


def main(quick: bool = False) -> bool:
    """Run (or load) the sweep, draw the figure, check its claims; True when all pass."""
    t0 = time.perf_counter()
    setup_style()
    gs = GS_QUICK if quick else GS
    config = dict(rewards=R, flow=FLOW, gs=gs, mean_field=MF, probe=PROBE)
    with single_thread():  # small problems: numba's parallel start-up dominates (_common)
        d = cached("ips_terminal", config, lambda: compute(gs), __file__)
    fig, axes = plt.subplots(1, 3, figsize=(10, 3.2))
    claims, ax, x = [], axes[0], np.arange(len(R))
    for n, rec in enumerate(FLOW_RECIPES):
        label = rec + (" (std none)" if rec == "ips_grpo" else "")
        ax.bar(x + (n - 1) * 0.27, d[f"flow_{rec}"], 0.27, color=RECIPE_COLORS[rec], label=label)
    ax.plot(x + 0.27, R / R.sum(), "_", ms=14, mew=2, color="#D55E00", label="$r/\\sum r$ (theory)")
    ax.set(xticks=x, xticklabels=[f"r={v}" for v in R], ylabel="terminal probability",
           title="flow ($G=\\infty$)", xlabel="outcome")
    ax.legend()
    for rec in ("grpo", "reinforce"):
        claims.append(greater(f"flow_{rec}_collapses", float(d[f"flow_{rec}"][0]), 0.99,
                              detail="terminal probability of the best outcome"))
    claims.append(close("flow_ips_reward_proportional", float(np.abs(d["flow_ips_grpo"] - R / R.sum()).max()),
                        0.0, 1e-6, "max |pi - r/sum r| (docs/theory.md item 3); ips_grpo with std='none' (the "
                        "idealised "
                        "J_IPS flow): with GRPO's std the shaped rewards r/pi become equal at the fixed point, "
                        "std -> 0 and the normalised flow chatters around it at step size lr"))
    gg = np.arange(2, max(gs) + 1)
    for ax, (name, (flag, _)) in zip(axes[1:], BASELINES.items()):
        pred = np.array([theory.ips_rest_point(R, G, baseline=flag) for G in gg])
        for k in range(len(R)):
            ax.plot(gg, pred[:, k], color=PALETTE[k], lw=1.2, label=f"theory r={R[k]}")
            ax.plot(gs, d[f"rest_{name}"][:, k], "o", mfc="none", color=PALETTE[k], label=f"sim r={R[k]}")
            ax.axhline(R[k] / R.sum(), color=PALETTE[k], ls=":", lw=0.8)
        ax.set(xlabel="group size $G$", ylabel="rest-point probability", xscale="log",
               title=f"IPS mean field, baseline: {name}")
        log_ticks(ax, gs)
        if name == "mean":  # its upper right is empty
            ax.legend(ncol=2, fontsize=6.5, title="dotted: $r/\\sum r$ ($G\\to\\infty$)", title_fontsize=6.5,
                      loc="upper right")
        rest_th = np.array([theory.ips_rest_point(R, G, baseline=flag) for G in gs])
        claims.append(close(f"rest_point_{name}_baseline", float(np.abs(d[f"rest_{name}"] - rest_th).max()),
                            0.0, REST_TOL, "max |sim mean-field rest point - theory.ips_rest_point| over G, outcomes"))
        step_th = np.array([theory.ips_mean_field(R, PROBE, G, baseline=flag) for G in gs])
        claims.append(close(f"one_step_{name}_baseline", float(np.abs(d[f"step_{name}"] - step_th).max()),
                            0.0, 1e-10, "one mean-field step (enumeration) vs closed binomial sums, item 8"))
    panel_labels(axes)
    return finish("ips_terminal", fig, claims, seed=SEED, config=config, t0=t0, quick=quick)


if __name__ == "__main__":
    main()
