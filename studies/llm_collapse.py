"""llm_collapse: does the same happen in a real transformer? (toy to scale; docs/methods.md §5-6)

`llm.sft` fine-tunes a tiny Llama (preset `tiny`, hidden 64) into a diverse base model for `multisolution`
(3 digits <= m summing to t: 1 to 70 correct answers; uniform correct targets, 30 % wrong), then
`llm.train` (public API; AdamW, grad clip 1.0) runs every recipe over the learning-rate grid LRS, with
seeds as the unit of replication, and `llm.evaluate` samples N_EVAL answers per held-out prompt at
checkpoints along training (every EVERY steps). Two held-out splits: the task's test prompts, and the
HARD split, fixed before the run: every prompt never trained on (test prompts and the (t, m) pairs the
task never drew) whose sum lies in the top third of its range (t >= HARD_RATIO m: the base's weakest
region, few answers with large digits), on which the base leaves some prompts unsolved
at k = N_EVAL (so paper C's "initially unsolvable become solvable" can be measured).
(a) Pass@k at the default lr LR, k = 1..N_EVAL (test split). (b) Distinct correct answers per prompt at
LR. (c) The fair protocol of the simulator (collapse_lab.compare): each recipe's distinct correct
answers at matched Pass@1 = TARGET_P1 over lrs x checkpoints, against the simulator's Pass@256 rank
at matched Pass@1 (fixes_leaderboard). The optimisers differ and are stated: AdamW here, SGD on
logits in the simulator.
Bands, bars and claims: ±2 SE over seeds of per-seed paired differences (same prompts, same base).
"""

import copy
import itertools
import math
import tempfile
import time
from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import torch

from collapse_lab import compare
from collapse_lab.metrics import pass_at_k
from collapse_lab.runs import cached
from llm import config as C
from llm.evaluate import evaluate
from llm.sft import SFTConfig, sft
from llm.tasks import make_task
from llm.train import TrainConfig, train
from studies import fixes_leaderboard as fl
from studies._common import (
    RECIPE_COLORS,
    band,
    finish,
    greater,
    holds,
    log_ticks,
    mean_se,
    panel_labels,
    power_one_sided,
    setup_style,
)

SEED, THREADS, MODEL = 0, 1, dict(name="tiny", hidden_size=64)
TASK = dict(name="multisolution", difficulty=3, num_prompts=128, test_fraction=0.25, seed=0)
ALL_PAIRS = 144  # every (t, m) pair of multisolution with 3 digits: the never-drawn ones join the HARD split
SFT, SFT_STEPS = dict(batch_size=64, lr=6e-3, wrong_share=0.3), 600
ROLLOUT, LR = dict(group_size=8, prompts_per_step=8, max_new_tokens=4), 1e-3  # 3 digits + EOS
LRS = tuple(float(f"{x:.6g}") for x in compare.lr_grid(2.5e-4, 4e-3, 5))  # AdamW, factor 2, LR in the middle
RECIPES, N_EVAL, HARD_RATIO = ("grpo", "ips_grpo", "isac", "bbg"), 128, 2
# full: MAIN_SEEDS seeds at LR (the per-seed claims), GRID_SEEDS at the other lrs (the frontier);
# quick: two recipes, one seed, a few steps: it exercises the pipeline and claims nothing (not assessed)
SIZES = dict(full=dict(recipes=RECIPES, steps=100, every=50, main_seeds=8, grid_seeds=2),
             quick=dict(recipes=RECIPES[::2], steps=10, every=5, main_seeds=1, grid_seeds=1))
TARGET_P1 = 0.2  # matched held-out Pass@1 of the fair protocol (base about 0.09), fixed before the run
# smallest effects of interest, fixed before the run: the power of each test at them goes in the sidecar
MIN_EFFECT = {"grpo_raises_pass1": 0.05, "grpo_loses_distinct": 1.0, f"grpo_lowers_pass_at_{N_EVAL}": 0.05,
              "fixes_keep_distinct": 0.5, "grpo_solves_unsolvable_llm": 0.25}
# verdicts on the papers' claims in a transformer (reproduced or not, never a failure of the run)
VERDICTS = ("grpo_raises_pass1", "grpo_loses_distinct", f"grpo_lowers_pass_at_{N_EVAL}", "fixes_keep_distinct",
            "grpo_solves_unsolvable_llm", "ranking_agrees_with_simulator")


def splits(task):
    """(test prompts, HARD prompts, the all-pairs task): HARD = never-trained prompts with t >= HARD_RATIO m,
    from the test split and the (t, m) pairs the task did not draw (taken from the task built on all pairs)."""
    full = make_task(C.TaskConfig(**{**TASK, "num_prompts": ALL_PAIRS}))
    trained = {p.text for p in task.prompts("train")}
    hard = [p for p in full.prompts("all") if p.text not in trained and p.answer[0] >= HARD_RATIO * p.answer[1]]
    return task.prompts("test"), hard, full


def evaluation(model, tok, parts):
    """[3, P] per prompt: correct count, distinct correct answers, entropy of the correct answers, for the
    prompts of every (task, prompts) pair of `parts` in order (each prompt scored by its own task)."""
    out = []
    for task, prompts in parts:
        r = evaluate(model.eval(), tok, task, prompts, N_EVAL, C.RolloutConfig(**ROLLOUT), seed=1)
        out.append(np.array([r["correct_counts"], r["distinct_per_prompt"], r["entropy_per_prompt"]], dtype=float))
    return np.concatenate(out, axis=1)


def plan(size):
    """(recipe, lr, seed) runs: MAIN_SEEDS at LR, GRID_SEEDS at every other lr of LRS."""
    s = SIZES[size]
    return [(r, lr, seed) for r in s["recipes"] for lr in LRS
            for seed in range(s["main_seeds"] if lr == LR else s["grid_seeds"])]


def compute(size):
    """SFT once; then every run of plan(size) from the same base, evaluated on test + HARD prompts at every
    EVERY steps (training continued with run.resume). Returns base [3, P] and run_<recipe>_<lr>_<seed>
    [n_checkpoints, 3, P] (P = test prompts then HARD prompts), checkpoint steps and the split sizes."""
    torch.set_num_threads(THREADS)
    s = SIZES[size]
    ckpts = list(range(s["every"], s["steps"] + 1, s["every"]))
    with tempfile.TemporaryDirectory() as tmp:
        def make(cls, name, steps, seed=SEED, resume=False, **sections):  # validated llm config, run in tmp/name
            run = dict(out_dir=f"{tmp}/{name}", steps=steps, seed=seed, progress=False, threads=THREADS,
                       resume=resume)
            C.validate(cfg := C.from_dict(cls, dict(model=MODEL, task=TASK, run=run, **sections)))
            return cfg
        (base, tok), task = sft(make(SFTConfig, "sft", SFT_STEPS, sft=SFT)), make_task(C.TaskConfig(**TASK))
        test, hard, full = splits(task)
        parts = ((task, test), (full, hard))
        out = {"base": evaluation(base, tok, parts), "steps": np.asarray(ckpts),
               "n_test": np.asarray(len(test)), "n_hard": np.asarray(len(hard))}
        for rec, lr, seed in plan(size):
            model, evals = copy.deepcopy(base), []
            for i, step in enumerate(ckpts):
                cfg = make(TrainConfig, f"{rec}-{lr:g}-{seed}", step, seed, resume=i > 0, rollout=ROLLOUT,
                           recipe=dict(name=rec), optim=dict(lr=lr))
                model = train(cfg, task, model, tok).model
                evals.append(evaluation(model, tok, parts))
                model.train()
            out[f"run_{rec}_{lr:g}_{seed}"] = np.asarray(evals)
    return out


def tidy(d, size) -> pd.DataFrame:
    """compare's DataFrame (recipe, lr, replicate = seed, step; pass@1 and distinct on the test split),
    step 0 = the base for every run."""
    n_test, rows = int(d["n_test"]), []
    for rec, lr, seed in plan(size):
        ev = np.concatenate([d["base"][None], d[f"run_{rec}_{lr:g}_{seed}"]])[:, :, :n_test]  # [L, 3, P]
        for step, e in zip([0, *d["steps"].tolist()], ev):
            rows.append((rec, lr, seed, step, e[0].mean() / N_EVAL, e[1].mean()))
    return pd.DataFrame(rows, columns=["recipe", "lr", "replicate", "step", "pass@1", "distinct"])


def spearman_test(a, b) -> tuple[float, float]:
    """(Spearman rho of a and b, exact one-sided permutation p-value P(rho_perm >= rho)); NaN values rank
    last (not reached), ties get average ranks; (NaN, 1) when either side is constant (no order to test)."""
    ra = pd.Series(np.nan_to_num(np.asarray(a, float), nan=-np.inf)).rank().to_numpy()
    rb = pd.Series(np.nan_to_num(np.asarray(b, float), nan=-np.inf)).rank().to_numpy()
    if np.ptp(ra) == 0 or np.ptp(rb) == 0:  # one side has no order (e.g. no recipe reached the target)
        return float("nan"), 1.0
    rho = lambda x, y: float(np.corrcoef(x, y)[0, 1])  # noqa: E731
    obs = rho(ra, rb)
    perms = [rho(ra, rb[list(p)]) for p in itertools.permutations(range(len(rb)))]
    return obs, float(np.mean([r >= obs - 1e-12 for r in perms]))


def main(quick: bool = False) -> bool:
    """Run (or load) the sweep, draw the figure, check its claims; True when all pass."""
    t0, size, N = time.perf_counter(), "quick" if quick else "full", N_EVAL
    setup_style()
    s = SIZES[size]
    config = dict(task=TASK, model=MODEL, sft=SFT, sft_steps=SFT_STEPS, rollout=ROLLOUT, lr=LR, lrs=LRS,
                  size=s, n_eval=N, hard_ratio=HARD_RATIO, threads=THREADS, optimizer="adamw (llm.train default)")
    llm_src = sorted((Path(__file__).resolve().parents[1] / "llm").rglob("*.py"))  # trainer code in the key
    d = cached("llm_collapse", config, lambda: compute(size), __file__, *llm_src)
    recs, n_test, base = s["recipes"], int(d["n_test"]), d["base"]  # base [3, P]
    ks = np.arange(1, N + 1)
    at_lr = {r: np.asarray([d[f"run_{r}_{LR:g}_{sd}"][-1] for sd in range(s["main_seeds"])]) for r in recs}
    test = {r: v[:, :, :n_test] for r, v in at_lr.items()}  # [S, 3, P_test] at the end, default lr
    btest, bhard = base[:, :n_test], base[:, n_test:]
    curve = lambda c: pass_at_k(N, c[..., None], ks).mean(-2)  # noqa: E731  [..., P] -> [..., K]
    df = tidy(d, size)
    f_p1 = compare.frontier_at(df, TARGET_P1, x="pass@1", y="distinct").set_index("recipe").reindex(list(recs))
    _, lb = fl.load(quick)
    sim = compare.frontier_at(fl.grid_frame(lb), fl.TARGET_P1, y=compare.pass_col(fl.K_EVAL)).set_index("recipe")
    sim = sim.reindex(list(recs))
    rho, p_perm = spearman_test(f_p1["value"], sim["value"])

    fig, axes = plt.subplots(1, 3, figsize=(11, 3.6))
    axes[0].plot(ks, curve(btest[0]), "--", color="0.4", label="base (SFT)")
    axes[1].axhline(btest[1].mean(), color="0.4", ls="--", lw=1.2, label="base (SFT)")
    for i, rec in enumerate(recs):
        col, dc = RECIPE_COLORS[rec], test[rec][:, 1].mean(-1)
        band(axes[0], ks, curve(test[rec][:, 0]), label=rec, color=col)
        axes[1].bar(i, dc.mean(), yerr=2 * mean_se(dc)[1], color=col, capsize=3, ecolor="0.6")
        fr = compare.frontier(df[df["recipe"] == rec], np.round(np.arange(0.1, 0.51, 0.025), 3), y="distinct")
        axes[2].plot(fr["target"], fr["value"], "o-", ms=3, color=col, label=rec)
    axes[2].plot(btest[0].mean() / N, btest[1].mean(), "*", color="0.4", ms=11, label="base (SFT)")
    axes[2].axvline(TARGET_P1, color="k", ls=":", lw=1)
    axes[0].set(xscale="log", xlabel="k", ylabel="Pass@k (held-out prompts)",
                title=f"Pass@k at lr {LR:g} (±2 SE, {s['main_seeds']} seed{'s' * (s['main_seeds'] > 1)})")
    log_ticks(axes[0], [k for k in 2 ** np.arange(9) if k <= N])
    axes[1].set(xticks=range(len(recs)), xticklabels=recs, title=f"distinct correct at lr {LR:g} (±2 SE, seeds)",
                ylim=(0, 1.25 * btest[1].mean()), ylabel=f"distinct correct answers / prompt\n(of {N} samples)")
    axes[2].set(xlabel="held-out Pass@1 (matched)", ylabel="distinct correct on the frontier",
                title=f"frontier: {len(LRS)} lrs x {len(d['steps'])} checkpoints")
    fig.suptitle(f"LLM: AdamW, lrs {LRS[0]:g}..{LRS[-1]:g}, {s['steps']} steps; simulator: SGD on logits. Recipe "
                 f"ranking vs the simulator's at matched Pass@1: Spearman {rho:+.2f} (permutation p = {p_perm:.2f})",
                 fontsize=8.5)
    for ax, loc in zip(axes, ("lower right", "upper right", "upper right")):
        ax.legend(loc=loc)
    panel_labels(axes)

    # seeds are the unit of replication: one paired (same prompts) difference per seed, SE over seeds
    per_seed = lambda x, y: mean_se((x - y).mean(-1))  # noqa: E731  [S, P] - [S or 1, P] -> (mean, SE)
    g = test["grpo"]
    stats = {"grpo_raises_pass1": per_seed(g[:, 0] / N, btest[None, 0] / N),
             "grpo_loses_distinct": per_seed(btest[None, 1], g[:, 1]),
             f"grpo_lowers_pass_at_{N}": per_seed(pass_at_k(N, btest[None, 0], N), pass_at_k(N, g[:, 0], N))}
    fix = {r: per_seed(test[r][:, 1], g[:, 1]) for r in recs[1:]}
    stats["fixes_keep_distinct"] = fix[worst := min(fix, key=lambda r: fix[r][0] / max(fix[r][1], 1e-12))]
    unsolved = bhard[0] == 0  # [P_hard] the base's 128 samples hold no correct answer
    runs_hard = np.asarray([d[f"run_grpo_{LR:g}_{sd}"][:, 0, n_test:] for sd in range(s["main_seeds"])])
    solved = (runs_hard[:, :, unsolved] > 0).any(1).mean(-1) if unsolved.any() else np.full(s["main_seeds"], np.nan)
    stats["grpo_solves_unsolvable_llm"] = mean_se(solved)  # over seeds; NaN when nothing is unsolved
    avg = {name: f"base {f(btest[None]).mean():.3g}, " + ", ".join(f"{r} {f(test[r]).mean():.3g}" for r in recs)
           for name, f in (("Pass@1", lambda x: x[:, 0] / N), (f"Pass@{N}", lambda x: pass_at_k(N, x[:, 0], N)),
                           ("distinct", lambda x: x[:, 1]), ("entropy", lambda x: x[:, 2]))}  # x [S, 3, P]
    what = {"grpo_raises_pass1": f"GRPO minus base held-out Pass@1; Pass@1 {avg['Pass@1']}",
            "grpo_loses_distinct": f"base minus GRPO distinct correct answers per prompt; {avg['distinct']}; "
                                   f"correct-answer entropy {avg['entropy']}",
            f"grpo_lowers_pass_at_{N}": f"base minus GRPO Pass@{N}; Pass@{N} {avg[f'Pass@{N}']}",
            "fixes_keep_distinct": f"every fix minus GRPO distinct correct answers, shown for the weakest ({worst}); "
                                   "all: " + ", ".join(f"{r} {m:+.2f} ± {e:.2f}" for r, (m, e) in fix.items()),
            "grpo_solves_unsolvable_llm": f"paper C in a transformer: of the {int(unsolved.sum())} HARD prompts (of "
                                          f"{unsolved.size}, t >= {HARD_RATIO} m, never trained on) with no "
                                          f"correct answer in the base's {N} samples, the fraction GRPO solves "
                                          f"(>= 1 of {N} samples correct) at some checkpoint"}
    n_s = s["main_seeds"]
    claims = [greater(name, float(m), 0.0, float(2 * se), assessed=not quick and n_s > 1,
                      power=power_one_sided(MIN_EFFECT[name], float(se)) if n_s > 1 else None,
                      detail=f"{what[name]}. Test: mean over {n_s} seeds (lr {LR:g}, {s['steps']} steps) of the "
                             f"per-seed paired difference > 2 SE (SE over seeds); power at the smallest effect of "
                             f"interest {MIN_EFFECT[name]} (normal approximation)"
                             + (". Quick mode: too few seeds to decide" if quick else ""))
              for name, (m, se) in stats.items()]
    ranks = ", ".join(f"{r}: LLM {f_p1.loc[r, 'value']:.2f} (lr {f_p1.loc[r, 'lr']:g}), sim "
                      f"{sim.loc[r, 'value']:.4f}" for r in recs)
    claims.append(holds(
        "ranking_agrees_with_simulator", bool(rho > 0 and p_perm <= 0.05), float(rho), assessed=not quick,
        detail=f"the fair protocol on both sides: the LLM recipes' distinct correct answers at matched held-out "
               f"Pass@1 = {TARGET_P1:g} (best of {len(LRS)} AdamW lrs x checkpoints; not reached ranks last) against "
               f"the simulator's Pass@{fl.K_EVAL} at matched Pass@1 = {fl.TARGET_P1:g} (fixes_leaderboard, SGD on "
               f"logits). Test: Spearman rho > 0 with exact one-sided permutation p <= 0.05 over all "
               f"{math.factorial(len(recs))} orders (p = {p_perm:.3f}); value = rho. {ranks}"))
    finite = all(np.isfinite(d[f"run_{r}_{lr:g}_{sd}"]).all() for r, lr, sd in plan(size)) and np.isfinite(base).all()
    claims.append(holds("runs_complete", bool(finite and btest[1].mean() >= 2 and df.groupby("recipe")["lr"].nunique()
                                              .min() >= 5), float(btest[1].mean()),
                        f"every recipe x lr x seed ({len(plan(size))} runs, {len(LRS)} lrs) trained and evaluated "
                        f"with finite results, and the SFT base has >= 2 distinct correct answers per held-out "
                        f"prompt (diversity to lose): {btest[1].mean():.2f}"))
    claims.append(holds("hard_split_has_unsolved", bool(unsolved.any()), float(unsolved.sum()),
                        f"the HARD split ({unsolved.size} prompts never trained on with t >= {HARD_RATIO} m) "
                        f" holds prompts the base leaves unsolved at k = {N}: {int(unsolved.sum())}"))
    return finish("llm_collapse", fig, claims, seed=SEED, config=config, t0=t0, quick=quick,
                  verdicts=VERDICTS)


if __name__ == "__main__":
    main()
