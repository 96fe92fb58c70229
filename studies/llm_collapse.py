"""llm_collapse: does the same happen in a real transformer? (toy to scale; docs/methods.md §5-6)

`llm.sft` fine-tunes a tiny Llama (preset `tiny`, hidden 64) into a diverse base model for `multisolution`
(3 digits <= m summing to t: 1 to 70 correct answers; uniform correct targets, 30 % wrong), then `llm.train`
runs GRPO and three fixes, SEEDS each, on CPU; `llm.evaluate` samples N_EVAL answers per held-out prompt.
(a) Unbiased Pass@k, k = 1..N_EVAL. (b) Distinct correct answers per prompt. (c) Pass@1 vs (b), per seed.
Bands, bars and claims: ±2 SE over seeds (the unit of replication) of per-seed paired differences.
"""

import copy
import tempfile
import time
from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np
import torch

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
SFT, SFT_STEPS = dict(batch_size=64, lr=6e-3, wrong_share=0.3), 600
ROLLOUT, LR = dict(group_size=8, prompts_per_step=8, max_new_tokens=4), 1e-3  # 3 digits + EOS
RECIPES, N_EVAL = ("grpo", "ips_grpo", "isac", "bbg"), 128  # N_EVAL samples per held-out prompt
RL_STEPS, SEEDS = 150, dict(full=(0, 1, 2, 3), quick=(0, 1))  # --quick: the first two seeds only
# smallest effects of interest, fixed before the run: the power of each test at them goes in the sidecar
MIN_EFFECT = {"grpo_raises_pass1": 0.05, "grpo_loses_distinct": 1.0, f"grpo_lowers_pass_at_{N_EVAL}": 0.05,
              "fixes_keep_distinct": 0.5}
# verdicts on the papers' claims in a transformer (reproduced or not, never a failure of the run)
VERDICTS = ("grpo_raises_pass1", "grpo_loses_distinct", f"grpo_lowers_pass_at_{N_EVAL}", "fixes_keep_distinct",
            "ranking_agrees_with_simulator")


def evaluation(model, tok, task):
    """[3, P] per held-out prompt: correct count, distinct correct answers, entropy of the correct answers."""
    r = evaluate(model.eval(), tok, task, task.prompts("test"), N_EVAL, C.RolloutConfig(**ROLLOUT), seed=1)
    return np.array([r["correct_counts"], r["distinct_per_prompt"], r["entropy_per_prompt"]], dtype=float)


def compute(size):
    """SFT once, then every recipe x seed from the same base; runs live in a temporary folder."""
    torch.set_num_threads(THREADS)
    with tempfile.TemporaryDirectory() as tmp:
        def make(cls, name, steps, seed=SEED, **sections):  # validated llm config, run in tmp/name
            run = dict(out_dir=f"{tmp}/{name}", steps=steps, seed=seed, progress=False, threads=THREADS)
            C.validate(cfg := C.from_dict(cls, dict(model=MODEL, task=TASK, run=run, **sections)))
            return cfg
        (base, tok), task = sft(make(SFTConfig, "sft", SFT_STEPS, sft=SFT)), make_task(C.TaskConfig(**TASK))
        out = {"base": evaluation(base, tok, task)}
        for rec, s in ((r, s) for r in RECIPES for s in SEEDS[size]):
            cfg = make(TrainConfig, f"{rec}{s}", RL_STEPS, s, rollout=ROLLOUT, recipe=dict(name=rec), optim=dict(lr=LR))
            out.setdefault(rec, []).append(evaluation(train(cfg, task, copy.deepcopy(base), tok).model, tok, task))
    return {k: np.asarray(v) for k, v in out.items()}  # base [3, P]; recipe [S, 3, P]


def main(quick: bool = False) -> bool:
    """Run (or load) the sweep, draw the figure, check its claims; True when all pass."""
    t0, size, N = time.perf_counter(), "quick" if quick else "full", N_EVAL
    setup_style()
    config = dict(task=TASK, model=MODEL, sft=SFT, sft_steps=SFT_STEPS, rollout=ROLLOUT, lr=LR, recipes=RECIPES,
                  rl_steps=RL_STEPS, seeds=SEEDS[size], n_eval=N, threads=THREADS)
    llm_src = sorted((Path(__file__).resolve().parents[1] / "llm").rglob("*.py"))  # trainer code in the key
    d = cached("llm_collapse", config, lambda: compute(size), __file__, *llm_src)
    ks, base = np.arange(1, N + 1), d["base"]  # base [3, P]; d[rec] [S, 3, P]
    curve = lambda c: pass_at_k(N, c[..., None], ks).mean(-2)  # noqa: E731  [..., P] -> [..., K]
    fig, axes = plt.subplots(1, 3, figsize=(10.5, 3.4))
    axes[0].plot(ks, curve(base[0]), "--", color="0.4", label="base (SFT)")
    axes[1].axhline(base[1].mean(), color="0.4", ls="--", lw=1.2, label="base (SFT)")
    axes[2].plot(base[0].mean() / N, base[1].mean(), "*", color="0.4", ms=11, label="base (SFT)")
    for i, rec in enumerate(RECIPES):
        col, p1, dc = RECIPE_COLORS[rec], d[rec][:, 0].mean(-1) / N, d[rec][:, 1].mean(-1)
        band(axes[0], ks, curve(d[rec][:, 0]), label=rec, color=col)
        axes[1].bar(i, dc.mean(), yerr=2 * mean_se(dc)[1], color=col, capsize=3, ecolor="0.6")
        axes[2].plot(p1, dc, "o", color=col, ms=3, alpha=0.5)
        axes[2].errorbar(p1.mean(), dc.mean(), 2 * mean_se(dc)[1], 2 * mean_se(p1)[1], "o", color=col, label=rec)
    axes[0].set(xscale="log", xlabel="k", ylabel="Pass@k (held-out prompts)", title="Pass@k after RL (±2 SE, seeds)")
    log_ticks(axes[0], [k for k in 2 ** np.arange(9) if k <= N])
    axes[1].set(xticks=range(len(RECIPES)), xticklabels=RECIPES, title="distinct correct answers (±2 SE, seeds)",
                ylim=(0, 1.25 * base[1].mean()), ylabel=f"distinct correct answers / prompt\n(of {N} samples)")
    axes[2].set(xlabel="Pass@1 (held-out)", ylabel="distinct correct answers / prompt", title="Pass@1 vs diversity")
    for ax, loc in zip(axes, ("lower right", "upper right", "upper right")):
        ax.legend(loc=loc)
    panel_labels(axes)
    # seeds are the unit of replication: one paired (same prompts) difference per seed, SE over seeds
    per_seed = lambda x, y: mean_se((x - y).mean(-1))  # noqa: E731  [S, P] - [S or 1, P] -> (mean, SE)
    stats = {"grpo_raises_pass1": per_seed(d["grpo"][:, 0] / N, base[None, 0] / N),
             "grpo_loses_distinct": per_seed(base[None, 1], d["grpo"][:, 1]),
             f"grpo_lowers_pass_at_{N}": per_seed(pass_at_k(N, base[None, 0], N), pass_at_k(N, d["grpo"][:, 0], N))}
    fix = {r: per_seed(d[r][:, 1], d["grpo"][:, 1]) for r in RECIPES[1:]}
    stats["fixes_keep_distinct"] = fix[worst := min(fix, key=lambda r: fix[r][0] / max(fix[r][1], 1e-12))]
    lb_config = dict(benchmark=fl.BENCHMARK, train=fl.BENCH_TRAIN, quick_steps=fl.QUICK_STEPS if quick else None,
                     ks=fl.BENCH_KS, recipes=fl.RECIPES, reps=fl.REPS[size])  # = fixes_leaderboard.main's: its cache
    lb = cached("fixes_leaderboard", lb_config, lambda: fl.compute(size), fl.__file__)
    rho = lambda a, b: np.corrcoef(np.argsort(np.argsort(a)), np.argsort(np.argsort(b)))[0, 1]  # noqa: E731 Spearman
    rho_div = rho([d[r][:, 1].mean() for r in RECIPES], [lb[f"{r}_cov"].mean() for r in RECIPES])
    rho_p1 = rho([d[r][:, 0].mean() for r in RECIPES], [lb[f"{r}_pk"][:, 0].mean() for r in RECIPES])
    avg = {name: f"base {f(base[None]).mean():.3g}, " + ", ".join(f"{r} {f(d[r]).mean():.3g}" for r in RECIPES)
           for name, f in (("Pass@1", lambda x: x[:, 0] / N), (f"Pass@{N}", lambda x: pass_at_k(N, x[:, 0], N)),
                           ("distinct", lambda x: x[:, 1]), ("entropy", lambda x: x[:, 2]))}  # x [S, 3, P]
    what = {"grpo_raises_pass1": f"GRPO minus base held-out Pass@1; Pass@1 {avg['Pass@1']}",
            "grpo_loses_distinct": f"base minus GRPO distinct correct answers per prompt; {avg['distinct']}; "
                                   f"correct-answer entropy {avg['entropy']}",
            f"grpo_lowers_pass_at_{N}": f"base minus GRPO Pass@{N}; Pass@{N} {avg[f'Pass@{N}']}",
            "fixes_keep_distinct": f"every fix minus GRPO distinct correct answers, shown for the weakest ({worst}); "
                                   "all: " + ", ".join(f"{r} {m:+.2f} ± {s:.2f}" for r, (m, s) in fix.items())}
    n_s = len(SEEDS[size])
    claims = [greater(name, float(m), 0.0, float(2 * se), assessed=not quick,
                      power=power_one_sided(MIN_EFFECT[name], float(se)),
                      detail=f"{what[name]}. Test: mean over {n_s} seeds of the per-seed paired difference > 2 SE "
                             f"(SE over seeds); power at the smallest effect of interest "
                             f"{MIN_EFFECT[name]}" + (". Quick mode: too few seeds to decide" if quick else ""))
              for name, (m, se) in stats.items()]
    claims.append(greater("ranking_agrees_with_simulator", float(rho_div), 0.8 - 1e-9, assessed=not quick,
                          detail=f"Spearman correlation of the {len(RECIPES)} recipes' distinct correct answers with "
                                 f"fixes_leaderboard's coverage >= 0.8 (at most one adjacent swap); Pass@1 ranks "
                                 f"{rho_p1:+.2f}. Both sides at one fixed step size (LLM: AdamW lr {LR}, grad clip; "
                                 f"simulator: SGD), not yet the matched-Pass@1 protocol"))
    finite = all(np.isfinite(d[r]).all() and d[r].shape[0] == n_s for r in RECIPES) and np.isfinite(base).all()
    claims.append(holds("runs_complete", bool(finite and base[1].mean() >= 2), float(base[1].mean()),
                        f"every recipe x seed trained and evaluated with finite results, and the SFT base has >= 2 "
                        f"distinct correct answers per held-out prompt (diversity to lose): {base[1].mean():.2f}"))
    return finish("llm_collapse", fig, claims, seed=SEED, config=config, t0=t0, quick=quick,
                  verdicts=VERDICTS)


if __name__ == "__main__":
    main()
