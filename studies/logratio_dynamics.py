"""logratio_dynamics: does log(pi_i/pi_j) move linearly in r_i - r_j? (paper D; docs/theory.md items 1-3)

Three flows on one bandit, simulated in `flow` mode (exact expected gradient, Euler step LR) and
drawn over the analytic laws of collapse_lab.theory:
  (a) natural PG (optimizer npg, REINFORCE): log-ratio slopes equal r_i - r_j (item 2);
  (b) vanilla PG with two equal-reward correct outcomes: the likelier one wins (item 1);
  (c) IPS (ips_grpo, std none): log-ratios converge to log(r_i / r_j) (item 3).
"""

from __future__ import annotations

import time

import matplotlib.pyplot as plt
import numpy as np

from collapse_lab import theory
from collapse_lab.runs import cached
from collapse_lab.sim import SimConfig, bandit, simulate
from studies._common import close, finish, greater, holds, panel_labels, setup_style, single_thread

SEED = 0
LR = 0.05
PAIRS = ((0, 1), (1, 2), (0, 3))  # tracked (i, j) on the single prompt
NPG = dict(rewards=(1.0, 0.6, 0.3, 0.0), init=(0.1, 0.2, 0.3, 0.4), steps=200)
TIE = dict(rewards=(1.0, 1.0, 0.0, 0.0), init=(0.3, 0.1, 0.3, 0.3), steps=2000)
IPS = dict(rewards=(1.0, 0.6, 0.3, 0.1), init=(0.1, 0.2, 0.3, 0.4), steps=4000)
EULER_TOL = 0.02  # Euler (step LR) vs the continuous flow: O(LR) error in the log-ratio


def run(spec, recipe, quick, **cfg):
    # flow mode is cheap (about 1 s in all): --quick runs the same sizes
    c = SimConfig(recipe=recipe, mode="flow", lr=LR, steps=spec["steps"],
                  track=tuple((0, i, j) for i, j in PAIRS), **cfg)
    t = simulate(bandit(spec["rewards"], spec["init"]), c, seed=SEED)
    return {"t": t.steps * LR, "L": t.log_ratios[0]}


def compute(quick):
    out = {}
    for key, spec, rec, kw in (("npg", NPG, "reinforce", dict(optimizer="npg")), ("pg", TIE, "reinforce", {}),
                               ("ips", IPS, "ips_grpo", dict(overrides={"std": "none"}))):
        res = run(spec, rec, quick, **kw)
        out[f"{key}_t"], out[f"{key}_L"] = res["t"], res["L"]
    return out


def main(quick: bool = False) -> bool:
    """Run (or load) the sweep, draw the figure, check its claims; True when all pass."""
    t0 = time.perf_counter()
    setup_style()
    config = dict(lr=LR, pairs=PAIRS, npg=NPG, tie=TIE, ips=IPS, quick=quick)
    with single_thread():  # small problems: numba's parallel start-up dominates (_common)
        d = cached("logratio_dynamics", config, lambda: compute(quick), __file__)
    fig, axes = plt.subplots(1, 3, figsize=(10, 3.2))
    claims, lines = [], {}
    for ax, key, spec, title in zip(axes, ("npg", "pg", "ips"), (NPG, TIE, IPS),
                                    ("natural PG, r=(1,.6,.3,0): slope $r_i - r_j$",
                                     "vanilla PG, r=(1,1,0,0): tie (0,1) splits",
                                     "IPS, r=(1,.6,.3,.1): $\\to \\log(r_i/r_j)$")):
        t, L = d[f"{key}_t"], d[f"{key}_L"]
        r, z0 = np.asarray(spec["rewards"]), np.log(spec["init"])
        tt = np.linspace(0, t[-1], 200 if key != "ips" else 2000)
        zt = theory.flow_solve(key, z0, r, tt) if key != "npg" else None
        every = max(1, int(np.searchsorted(t, 30.0 if key == "ips" else t[-1])) // 25)
        for n, (i, j) in enumerate(PAIRS):
            pred = (theory.npg_logratio(z0[i] - z0[j], r[i], r[j], tt) if key == "npg"
                    else zt[:, i] - zt[:, j])
            ln, = ax.plot(tt, pred, lw=1.2, label=f"theory ({i},{j})")
            ax.plot(t[::every], L[::every, n], "o", ms=3, mfc="none", color=ln.get_color(), label=f"sim ({i},{j})")
            lines[(key, i, j)] = (t, L[:, n])
            if key == "ips":  # fixed point log(r_i / r_j); the run continues to t = 200 for the claim
                ax.axhline(np.log(r[i] / r[j]), color=ln.get_color(), ls=":", lw=0.8)
                ax.set_xlim(0, 30)
        ax.set(xlabel="time $t = \\eta\\,\\mathrm{steps}$", ylabel="$\\log(\\pi_i/\\pi_j)$ (nats)", title=title)
        ax.legend(ncol=2, fontsize=6.5)
    panel_labels(axes)
    # (a) NPG: least-squares slope of every tracked pair vs r_i - r_j (item 2, error < 1e-6)
    r = np.asarray(NPG["rewards"])
    err = max(abs(np.polyfit(*lines[("npg", i, j)], 1)[0] - (r[i] - r[j])) for i, j in PAIRS)
    claims.append(close("npg_slope_error", err, 0.0, 1e-6, "max |fitted slope - (r_i - r_j)| over pairs"))
    # (b) equal rewards: the initially likelier correct outcome gains log-ratio at every step
    tL = lines[("pg", 0, 1)][1]
    claims.append(holds("pg_rich_get_richer", bool(np.all(np.diff(tL) > 0)), float(tL[-1] - tL[0]),
                        "log(pi_0/pi_1) between equal-reward outcomes increases monotonically"))
    claims.append(greater("pg_tie_logratio_gain", float(tL[-1] - tL[0]), 0.5))
    zt = theory.flow_solve("pg", np.log(TIE["init"]), np.asarray(TIE["rewards"]), lines[("pg", 0, 1)][0])
    eul = np.max(np.abs(tL - (zt[:, 0] - zt[:, 1])))
    claims.append(close("pg_euler_vs_flow", eul, 0.0, EULER_TOL, f"step LR={LR} Euler vs RK45 flow_solve"))
    # (c) IPS: log-ratios converge to log(r_i / r_j) (item 3)
    r = np.asarray(IPS["rewards"])
    ips_err = max(abs(lines[("ips", i, j)][1][-1] - np.log(r[i] / r[j])) for i, j in PAIRS)
    claims.append(close("ips_terminal_logratio", ips_err, 0.0, 1e-6, "max |final log-ratio - log(r_i/r_j)|"))
    return finish("logratio_dynamics", fig, claims, seed=SEED, config=config, t0=t0, quick=quick)


if __name__ == "__main__":
    main()
