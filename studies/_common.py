"""Shared pieces of every figure script: one plot style, claim checks, and the save step.

A study builds its figure, states its claims with `close`, `holds` or `greater`, and hands both to
`finish`, which writes figures/<name>.png (and .pdf) and figures/<name>.json with the claim checks and
provenance, prints a one-line verdict, and returns whether every claim passed.
"""

from __future__ import annotations

import math
import os
import time
from contextlib import contextmanager
from dataclasses import asdict, dataclass, replace
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from collapse_lab.runs import provenance, write_json  # noqa: E402

FIG_DIR = Path(__file__).resolve().parent.parent / "figures"
# colour-blind-safe palette (Okabe-Ito), fixed per recipe so every figure agrees
PALETTE = ["#0072B2", "#D55E00", "#009E73", "#CC79A7", "#E69F00", "#56B4E9", "#F0E442", "#000000"]
RECIPE_COLORS = {
    "grpo": "#000000", "dr_grpo": "#7F7F7F", "dapo": "#A0A0A0", "rloo": "#56B4E9",
    "reinforce": "#B0B0B0", "reverse_kl": "#D55E00", "k3_kl": "#993404", "ips_grpo": "#0072B2", "isac": "#009E73",
    "memory": "#66C2A5", "dph_forward": "#CC79A7", "dph_js": "#E69F00", "dph_alpha": "#F0E442",
    "zero_success": "#8C510A", "bbg": "#BF812D", "bbg_noneg": "#762A83", "passk": "#5E3C99", "unlikeliness": "#B2ABD2",
    "entropy": "#E7298A", "base": "#1B9E77",
}


# the tabular multimode problem: the CONTROL where no collapse is possible (a prompt's correct mass
# can only grow under mean-centred advantages; tests/sim/test_benchmark_collapse.py)
BENCHMARK = dict(n_prompts=64, n_outcomes=32, n_correct=4, tail=1.2, min_mass=1e-4, max_mass=0.9, seed=0)
BENCH_KS = tuple(2**i for i in range(11))  # 1 .. 1024
BENCH_TRAIN = dict(steps=300, lr=0.5 * 64, group_size=8, log_every=25)  # lr = 0.5 per prompt (token-mean)

# the shared COLLAPSING benchmark of overtraining / fixes_leaderboard / phase_diagram: answers shared by
# all prompts (sim.problems.shared_answers, paper A's semantic coupling), param "linear", SGD; n_easy
# prompts the base already solves (DPH's D_pef, non-empty so that its divergence acts)
SHARED = dict(n_prompts=64, n_answers=32, n_easy=8, coupling=1.0, seed=0)
SHARED_TRAIN = dict(param="linear", optimizer="sgd", steps=300, group_size=8, log_every=25)
SHARED_LR = 0.1  # the benchmark's default step size (plain GRPO shows the crossover there)

# Does every fix act at its defaults? (issue 11, deliverable 3) On the shared benchmark at SHARED_LR a
# recipe must move the policy away from plain GRPO by more than replicate noise: the largest |Welch
# statistic| of its Pass@1, Pass@256 or KL(pi || base) against GRPO's over the checkpoints exceeds ACT_Z
# (collapse_lab.compare.differs_from; fixed before any run). The recipes that legitimately cannot are
# listed here, and only here, with the reason; tests/studies/test_fixes_act.py asserts both directions
# (every other recipe differs, every listed one does not) and fixes_leaderboard shows the same list.
ACT_Z = 4.0
# recipe variants shown beside their recipe (label -> SimConfig fields): BBG without the negative REINFORCE
# branch on all-failure groups (paper C's interpretation question; docs/methods.md §2)
VARIANTS = {"bbg_noneg": dict(recipe="bbg", overrides={"lambda_neg": 0.0})}
ACT_METRICS = ("pass@1", "pass@256", "kl")
ACT_REPS = 8  # replicates of the act test (full length, SHARED_TRAIN), also in --quick: it is a check
CANNOT_DIFFER: dict[str, str] = {}  # recipe -> reason; empty: every recipe acts on the shared benchmark
# where a fix is inert by construction, off the shared benchmark (stated in docs/studies.md, tested):
# with a tabular policy (the control) the D_pef prompts of DPH are masked out of the RL term and share no
# parameter with the rest, so they never leave the reference and every divergence gradient is 0
INERT_ON_CONTROL = {r: "tabular param: D_pef prompts never leave the reference, so the divergence gradient is 0"
                    for r in ("dph_forward", "dph_js", "dph_alpha")}


def benchmark():
    """The tabular multimode control Problem (BENCHMARK)."""
    from collapse_lab.sim import multimode

    return multimode(**BENCHMARK)


def recipe_specs() -> dict:
    """Every registered recipe, then VARIANTS: label -> SimConfig fields (compare.run_grid's `recipes`)."""
    from collapse_lab.objective import RECIPES

    return {**{r: dict(recipe=r) for r in RECIPES}, **VARIANTS}


def act_table(df=None):
    """compare.differs_from against GRPO on the shared benchmark at SHARED_LR (ACT_Z, ACT_METRICS), indexed by
    recipe; df: a run_grid DataFrame of recipe_specs() at SHARED_LR with SHARED_TRAIN and ACT_REPS replicates,
    run here when None (about 5 s on one core)."""
    from collapse_lab import compare

    if df is None:
        df = compare.run_grid(shared_benchmark(), recipe_specs(), [SHARED_LR], ACT_REPS, seed=0, threads=1,
                              ks=(1, 256), **SHARED_TRAIN)
    return compare.differs_from(df, "grpo", ACT_METRICS, ACT_Z).set_index("recipe")


def shared_benchmark(**changes):
    """The shared collapsing benchmark Problem: shared_answers(**SHARED, **changes)."""
    from collapse_lab.sim.problems import shared_answers

    return shared_answers(**{**SHARED, **changes})


@contextmanager
def single_thread():
    """numba on one thread inside the block: small problems run 10-15x faster on a busy machine (the
    parallel kernels' start-up dominates); results do not depend on the thread count."""
    import numba

    old = numba.get_num_threads()
    numba.set_num_threads(1)
    try:
        yield
    finally:
        numba.set_num_threads(old)


def setup_style() -> None:
    """One style for every figure: readable at README width (about 800 px)."""
    plt.rcParams.update({
        "figure.dpi": 110, "savefig.dpi": 150, "font.size": 9, "axes.titlesize": 10,
        "axes.labelsize": 9, "legend.fontsize": 7.5, "axes.spines.top": False,
        "axes.spines.right": False, "axes.grid": True, "grid.alpha": 0.25, "lines.linewidth": 1.6,
        "axes.prop_cycle": matplotlib.cycler(color=PALETTE), "figure.constrained_layout.use": True,
    })


def mean_se(x, axis=0):
    """(mean, standard error) over `axis` (replicates): se = std(ddof=1) / sqrt(n)."""
    x = np.asarray(x, dtype=float)
    n = x.shape[axis]
    se = x.std(axis=axis, ddof=1) / np.sqrt(n) if n > 1 else np.zeros_like(x.mean(axis=axis))
    return x.mean(axis=axis), se


def band(ax, x, reps, label=None, color=None, z=2.0, **kw):
    """Replicate mean as a line with a +-z standard-error band; reps [R, len(x)]. Returns (mean, se)."""
    m, se = mean_se(reps)
    line, = ax.plot(x, m, label=label, color=color, **kw)
    ax.fill_between(x, m - z * se, m + z * se, color=line.get_color(), alpha=0.2, lw=0)
    return m, se


def panel_labels(axes) -> None:
    """Prefix each axis title with (a), (b), ... (call after the titles are set)."""
    for i, ax in enumerate(np.ravel(axes)):
        ax.set_title(f"({chr(97 + i)}) {ax.get_title()}")


def log_ticks(ax, ticks, axis: str = "x") -> None:
    """Label a log axis at `ticks` only (plain integers), with no minor tick labels."""
    from matplotlib.ticker import NullFormatter

    getattr(ax, f"set_{axis}ticks")(list(ticks), [f"{t:g}" for t in ticks])
    getattr(ax, f"{axis}axis").set_minor_formatter(NullFormatter())


KINDS = ("check", "verdict")


@dataclass
class Claim:
    """One quantitative statement a figure supports, computed from its run.

    `kind` is fixed in the script before the run: a "check" tests the lab itself (simulation against
    theory, parity, a benchmark showing what it was built for) and its failure is a bug that fails
    `--check`; a "verdict" tests a paper's claim and is a result either way (reproduced or not
    reproduced), never a failure of the run. `assessed` is False when the run is too small to decide
    (quick mode); the numbers are still recorded, with the test's `power` where it is known.
    """

    name: str
    passed: bool
    value: float | None = None
    target: float | None = None
    tolerance: float | None = None
    detail: str = ""
    kind: str = "check"
    assessed: bool = True
    power: float | None = None
    test: str = ""

    @property
    def verdict(self) -> str:
        """'pass'/'fail' for a check; 'reproduced'/'not reproduced'/'not assessed' for a verdict."""
        if self.kind == "check":
            return "pass" if self.passed else "fail"
        if not self.assessed:
            return "not assessed"
        return "reproduced" if self.passed else "not reproduced"


def _f(x):
    return None if x is None else float(x)


def close(name: str, value: float, target: float, tol: float, detail: str = "", **kw) -> Claim:
    """|value - target| <= tol."""
    ok = math.isfinite(value) and abs(value - target) <= tol
    return Claim(name, bool(ok), _f(value), _f(target), _f(tol), detail, test=f"|value - {target:g}| <= {tol:g}", **kw)


def holds(name: str, condition: bool, value: float | None = None, detail: str = "", **kw) -> Claim:
    """A boolean statement (with the number it rests on, when there is one)."""
    return Claim(name, bool(condition), _f(value), None, None, detail, test="condition holds", **kw)


def greater(name: str, value: float, than: float, margin: float = 0.0, detail: str = "", **kw) -> Claim:
    """value > than + margin."""
    return Claim(name, bool(value > than + margin), _f(value), _f(than), _f(margin), detail,
                 test=f"value > {than:.4g} + {margin:.4g}", **kw)


def power_one_sided(effect: float, se: float, z: float = 2.0) -> float:
    """Normal-approximation power of `mean > z * SE` when the true effect is `effect`: Phi(effect/SE - z)."""
    if not (se > 0 and math.isfinite(se)):
        return float("nan")
    return 0.5 * math.erfc(-(effect / se - z) / math.sqrt(2.0))


def finish(name: str, fig, claims: list[Claim], *, seed, config: dict, t0: float, quick: bool,
           verdicts: tuple[str, ...] = ()) -> bool:
    """Save the figure (PNG + PDF) and its JSON sidecar; print the verdicts; True when every check passed.

    `verdicts` names the claims that are verdicts on a paper's claim (a module constant of the script,
    fixed before the run); they are recorded, reproduced or not, and never make the return value False;
    only a failed check (a bug in the lab) does.
    """
    unknown = sorted(set(verdicts) - {c.name for c in claims})
    if unknown:
        raise ValueError(f"verdicts = {unknown} is invalid; allowed: names of this figure's claims")
    claims = [replace(c, kind="verdict") if c.name in verdicts else c for c in claims]
    bad = [c.kind for c in claims if c.kind not in KINDS]
    if bad:
        raise ValueError(f"claim kind = {bad[0]!r} is invalid; allowed: {', '.join(KINDS)}")
    out = Path(os.environ.get("COLLAPSE_LAB_FIGURES", FIG_DIR))
    out.mkdir(parents=True, exist_ok=True)
    fig.savefig(out / f"{name}.png")
    fig.savefig(out / f"{name}.pdf")
    plt.close(fig)
    checks = [c for c in claims if c.kind == "check"]
    ok = all(c.passed for c in checks)
    verdicts = {v: sum(c.verdict == v for c in claims if c.kind == "verdict")
                for v in ("reproduced", "not reproduced", "not assessed")}
    wall = time.perf_counter() - t0
    write_json(out / f"{name}.json", {
        "figure": name, "quick": quick, "all_checks_passed": ok,
        "all_claims_passed": ok and all(c.passed for c in claims), "verdicts": verdicts,
        "claims": [dict(asdict(c), verdict=c.verdict) for c in claims],
        "provenance": provenance(seed=seed, config=config, wall_time=round(wall, 2)),
    })
    failed = [c.name for c in checks if not c.passed]
    line = f"checks {len(checks) - len(failed)}/{len(checks)} pass"
    line += f" (FAILED: {', '.join(failed)})" if failed else ""
    if len(checks) < len(claims):
        line += "; verdicts: " + ", ".join(f"{n} {v}" for v, n in verdicts.items() if n)
    print(f"[{name}] {line}  ({wall:.1f}s)", flush=True)
    return ok
