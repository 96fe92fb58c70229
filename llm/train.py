"""RLVR trainer: rollouts -> rewards and outcome ids -> recipe loss -> PPO epochs over minibatches.

    python -m llm.train --model.name runs/sft/model --task.name multisolution --recipe.name ips_grpo
    torchrun --nproc-per-node 2 -m llm.train --config run.toml          # DDP (gloo on CPU)
    torchrun --nproc-per-node 8 -m llm.train --config run.toml --dist.strategy fsdp2   # FSDP2 (NCCL)

How this departs from textbook PPO (Schulman et al. 2017) and GRPO (Shao et al. 2024):
1. No value network, no GAE. The whole loss (reward shaping, advantage, advantage weights, clipped
   surrogate, aggregation, KL / divergence, entropy) is `collapse_lab.objective`'s recipe, in two
   phases: `recipe.prepare(batch)` once per rollout step on the process's whole rollout batch (built
   from the behaviour log-probs, no forward pass; batch statistics reduced over processes), then
   `recipe.loss(micro_batch, prepared)` per micro-batch. Advantages stay fixed across PPO epochs.
   The trainer never branches on a recipe's name; it asks the recipe what it needs: needs_ref,
   needs_ref_samples (dph), needs_history, needs_entropy, sampler, dynamic_sampling.
2. old_logp is the log-prob under the *sampling* distribution (temperature, top-p, memory logits
   processor) as returned by the rollout engine, not a recomputation by the trainer, so the ratio of
   docs/methods.md §4 corrects for memory-calibrated sampling.
3. Minibatches and micro-batches hold whole groups (advantages are group-relative). Each minibatch
   (one optimizer step) is renormalised to its own denominators over all processes
   (`Prepared.renormalized`: tokens, rows, T_max, DPH's reference rows), and every micro-batch loss
   is its exact share of the minibatch loss, so gradient accumulation and DDP give the gradient of
   one big batch, for every recipe (tests/llm/test_train.py: grpo, std="batch", ISAC normalize,
   DAPO, DPH-JS, Dr. GRPO to 1e-10 in float64; tests/llm/test_resume_ddp.py: 2 processes = 1).
   DDP and FSDP2 (dist.strategy, llm/fsdp.py) average gradients, so each process backpropagates loss * world.
4. The reverse-KL reference is a frozen copy of the initial model, built only when beta > 0 (with LoRA,
   model.lora_rank > 0, the policy itself with its adapters disabled: no copy; llm/lora.py). DPH runs
   no reference model during training: a pre-sampling pass splits the training prompts into D_pef
   (solved n_pre / n_pre times; only the divergence on stored reference samples) and D_exp (RL loss).
5. Rewards come from verifiers under a time limit; unparseable and timed-out responses get reward 0
   and are counted: every status of llm.tasks.base.STATUSES is logged per step as `status/<name>`
   (summed over processes). Outcomes are canonical answers hashed to ids (IPS, diversity metrics).
6. Dynamic sampling (DAPO) drops zero-variance groups and draws new prompts, at most
   recipe.max_resample extra rounds; it may end with fewer groups than prompts_per_step.
7. Sampling noise is seeded per (run seed, step, round, prompt slot): a resumed run and a DDP run
   draw the same samples as one uninterrupted single-process run.
8. Numerical safety: gradients are checked before, parameters after every `optimizer.step()` (one
   fused max-|x| per check, reduced over processes). A minibatch with a non-finite gradient is skipped
   and counted; a parameter that is non-finite or whose square overflows its dtype (at least float32:
   |x| > sqrt(finfo.max)) after the step stops the run with an error naming optim.lr, before
   anything of that step is saved.
   model.autocast: forwards under torch.autocast with float32 master weights; float16 scales the loss
   and unscales the gradients before these checks, and an overflow of the scaled gradient is the
   scaler's (`scaler_skips`), not a non-finite skip (llm/precision.py).
9. Resume: each checkpoint stores the resolved config (config.json); resuming with a config that
   differs in a field that changes the run (anything but checkpoint.RESUME_FREE) is an error listing them,
   unless run.allow_config_change. config.toml is written only once the run is known to start.
"""

from __future__ import annotations

import contextlib
import copy
import os
import sys
import time
import warnings
from dataclasses import dataclass, field

import numpy as np
import torch

from collapse_lab.metrics import distinct_correct
from collapse_lab.objective import PromptHistory, dynamic_sampling_keep, successes

from . import config as C
from .chat import check_tokenizer
from .checkpoint import save_checkpoint, seed_everything
from .dist import (
    Dist,
    all_reduce_many,
    barrier,
    cleanup,
    init_distributed,
    rollout_engine,
    wrap_model,
)
from .evaluate import periodic_eval
from .experience import Experience, RefStore, collect, presample, sample_seed
from .guards import check_outputs
from .logger import MetricsLogger, step_stats
from .lora import adapter_parameters, apply_lora
from .memory import MemorySampler, build_memory
from .models import BanditLM, enable_gradient_checkpointing, load_model
from .precision import Precision, check_master_dtype, low_precision_warning, make_precision
from .progress import Progress
from .rollout import make_engine, sequence_logp, stop_ids
from .schedule import lr_at, set_lr
from .tasks import make_task
from .tasks.base import STATUSES
from .trainer_state import resume, resume_point, save_final_model, trainer_state
from .update import LOSS_KEYS, logp_dtype, make_reduce, micro_loss, ppo_update, step_batch  # noqa: F401


@dataclass
class TrainConfig:
    model: C.ModelConfig = field(default_factory=C.ModelConfig)
    task: C.TaskConfig = field(default_factory=C.TaskConfig)
    rollout: C.RolloutConfig = field(default_factory=C.RolloutConfig)
    recipe: C.RecipeConfig = field(default_factory=C.RecipeConfig)
    optim: C.OptimConfig = field(default_factory=C.OptimConfig)
    run: C.RunConfig = field(default_factory=C.RunConfig)
    dist: C.DistConfig = field(default_factory=C.DistConfig)


@dataclass
class Context:
    """Everything one training process holds."""

    cfg: TrainConfig
    dist: Dist
    task: object
    model: torch.nn.Module  # the unwrapped policy
    ddp: torch.nn.Module  # the policy as wrapped for data parallelism (dist.wrap_model)
    tok: object
    recipe: object
    optimizer: torch.optim.Optimizer
    engine: object
    history: PromptHistory
    ref_model: torch.nn.Module | None = None
    memory: MemorySampler | None = None
    refstore: RefStore | None = None
    step: int = 0
    precision: Precision = field(default_factory=Precision)  # autocast / loss scaling (llm/precision.py)
    lora: torch.nn.Module | None = None  # the PeftModel around `model` with model.lora_rank > 0 (llm/lora.py)


def make_optimizer(model, ocfg: C.OptimConfig) -> torch.optim.Optimizer:
    """SGD, or AdamW with the fused kernel (one kernel over all parameters, CPU and CUDA); where torch
    cannot fuse (a parameter's device or dtype) the foreach implementation. Only parameters that
    require gradients (with LoRA: the adapters)."""
    params = adapter_parameters(model)
    if ocfg.optimizer == "sgd":
        return torch.optim.SGD(params, lr=ocfg.lr)
    try:
        return torch.optim.AdamW(params, lr=ocfg.lr, weight_decay=ocfg.weight_decay, fused=True)
    except RuntimeError:  # "`fused=True` requires all the params to be floating point Tensors of supported devices"
        return torch.optim.AdamW(params, lr=ocfg.lr, weight_decay=ocfg.weight_decay, foreach=True)


def setup(cfg: TrainConfig, task=None, model=None, tok=None) -> Context:
    """Seed, build task/model/recipe/optimiser/engine, the optional reference, memory and DPH split."""
    dist = init_distributed(cfg.run.device)
    seed_everything(cfg.run.seed, cfg.run.threads)
    task = task or make_task(cfg.task)
    if model is None:
        model, tok = load_model(cfg.model, task)
    model.to(dist.device)
    if isinstance(model, BanditLM) and cfg.rollout.max_new_tokens != 1:
        raise ValueError(f"rollout.max_new_tokens = {cfg.rollout.max_new_tokens} is invalid for "
                         "BanditLM; allowed: 1")
    mc, dtype = cfg.model, next(model.parameters()).dtype
    check_tokenizer(tok, cfg.task.chat_template)  # before any rollout: the template must exist
    check_master_dtype(dtype, mc.autocast)
    if (msg := low_precision_warning(dtype, mc.autocast, cfg.optim.optimizer)) and dist.is_main:
        warnings.warn(msg, RuntimeWarning, stacklevel=2)
    C._check(not (mc.lora_rank and cfg.rollout.engine == "vllm"), "model.lora_rank", mc.lora_rank,
             "0 with rollout.engine = vllm (vLLM syncs plain weights; LoRA trains on the hf engine)")
    lora = apply_lora(model, mc)  # adapters injected into `model` in place; base weights frozen
    if mc.gradient_checkpointing:
        enable_gradient_checkpointing(model)
    recipe = cfg.recipe.build()
    # reverse KL with beta > 0: frozen copy of the initial policy, copied before any sharding; with LoRA
    # the policy itself, run with its adapters disabled (add_reference_logp): no second copy
    ref_model = None if not recipe.needs_ref else model if lora is not None else \
        copy.deepcopy(model).requires_grad_(False).eval()
    C._check(not (cfg.dist.strategy == "fsdp2" and cfg.rollout.engine == "vllm"), "dist.strategy",
             cfg.dist.strategy, "ddp with rollout.engine = vllm (the weight sync reads unsharded parameters)")
    engine = make_engine(cfg.rollout.engine, model, tok, cfg.rollout, recipe.sampler is not None)
    wrapped = wrap_model(model, dist, cfg.dist.strategy)  # FSDP2 shards `model` in place
    ctx = Context(cfg, dist, task, model, wrapped, tok, recipe, make_optimizer(model, cfg.optim),
                  rollout_engine(engine, wrapped), PromptHistory(),
                  ref_model, precision=make_precision(mc.autocast, dist.device, mc.tf32), lora=lora)
    if recipe.sampler is not None:  # paper A: memory LM as a logits processor
        memory = build_memory(model, tok, cfg.model.memory_preset).to(dist.device)
        ctx.memory = MemorySampler(memory, recipe.sampler, tok, dist, cfg.rollout.temperature)
    if recipe.needs_ref_samples:  # DPH: pre-sampling split with stored reference samples
        with ctx.precision.autocast():
            ctx.refstore = presample(ctx.engine, model, task, tok, task.prompts("train"), recipe.dph,
                                     cfg.rollout, cfg.run.seed, cfg.task.timeout_s)
        if not ctx.refstore.samples:  # every prompt goes to D_exp: the run is plain RL (+ clip-higher)
            warnings.warn(f"DPH pre-sampling: no training prompt was solved {recipe.dph.n_pre}/"
                          f"{recipe.dph.n_pre} times, so D_pef is empty and the divergence term is 0; "
                          "lower recipe overrides n_pre or start from a stronger model", RuntimeWarning,
                          stacklevel=2)
    return ctx


def local_slots(n_prompts: int, n_minibatches: int, dist: Dist) -> list[int]:
    """Prompt positions this process owns: j with (j // M) % world == rank (minibatch = j % M)."""
    return [j for j in range(n_prompts) if (j // n_minibatches) % dist.world == dist.rank]


def choose_prompts(prompts: list, n: int, seed: int, step: int, rnd: int) -> list:
    """n training prompts for (step, round), identical in every process."""
    rng = np.random.default_rng([seed, step, rnd])
    idx = rng.permutation(len(prompts))[:n] if n <= len(prompts) else rng.integers(0, len(prompts), n)
    return [prompts[int(i)] for i in idx]


def rollout_step(ctx: Context, step: int) -> Experience:
    """Sample and score this process's groups; with dynamic sampling, replace zero-variance groups."""
    cfg, rc = ctx.cfg, ctx.cfg.rollout
    slots = local_slots(rc.prompts_per_step, cfg.optim.num_minibatches, ctx.dist)
    rounds = 1 + (cfg.recipe.max_resample if ctx.recipe.dynamic_sampling else 0)
    pef = ctx.refstore.pef_ids if ctx.refstore is not None else frozenset()
    if hasattr(ctx.engine, "sync_weights"):  # an engine with its own copy of the weights (vllm)
        ctx.engine.sync_weights(ctx.model)
    kept: list[Experience] = []
    for rnd in range(rounds):
        prompts = choose_prompts(ctx.task.prompts("train"), rc.prompts_per_step, cfg.run.seed, step, rnd)
        seeds = [sample_seed(cfg.run.seed, step, rnd, j) for j in slots]
        with ctx.precision.autocast():
            exp = collect(ctx.engine, ctx.task, ctx.tok, slots, [prompts[j] for j in slots], seeds, rc,
                          cfg.task.timeout_s, ctx.memory, pef)
        if not ctx.recipe.dynamic_sampling:
            return exp
        kept.append(exp.select(dynamic_sampling_keep(exp.rewards, exp.slot)))
        if sum(len(k) for k in kept) >= len(slots) * rc.group_size:
            break
    exp = Experience.cat(kept).select(torch.arange(min(sum(map(len, kept)), len(slots) * rc.group_size)))
    exp.slot = torch.arange(len(exp)) // rc.group_size  # renumber groups: minibatch = slot % M
    return exp


@torch.no_grad()
def add_reference_logp(ctx: Context, exp: Experience) -> None:
    """Reverse-KL recipes: log pi_ref of the sampled tokens (with LoRA: the adapter-disabled policy)."""
    dev = ctx.dist.device
    off = ctx.lora.disable_adapter() if ctx.lora is not None else contextlib.nullcontext()
    with off, ctx.precision.autocast():
        exp.ref_logp, _ = sequence_logp(ctx.ref_model, exp.prompt_tokens, exp.tokens.to(dev),
                                        exp.mask.to(dev), ctx.tok.pad_id, ctx.cfg.rollout.temperature)


def rollout_metrics(exp: Experience, dist: Dist) -> dict:
    """Reward, pass@1, unparsed/time-out shares, distinct correct answers per group, length."""
    correct = successes(exp.rewards)
    distinct = sum(distinct_correct(exp.outcome[exp.slot == g].numpy(), correct[exp.slot == g].numpy())
                   for g in exp.slot.unique().tolist())
    local = [len(exp), len(exp.slot.unique()), exp.rewards.sum(), correct.sum(), exp.mask.sum(), distinct,
             *status_counts(exp.status)]
    n, groups, reward, passed, length, distinct, *counts = all_reduce_many(local, dist)  # one collective
    counts = dict(zip(STATUSES, counts))
    return {"reward": reward / max(n, 1), "pass@1": passed / max(n, 1),
            "unparsed_frac": counts["unparsed"] / max(n, 1), "timeout_frac": counts["timeout"] / max(n, 1),
            **{f"status/{k}": v for k, v in counts.items()},
            "response_len": length / max(n, 1), "distinct_correct": distinct / max(groups, 1),
            "groups": groups}


def status_counts(statuses: list) -> list[int]:
    """Rows per status, in the order of llm.tasks.base.STATUSES; a status outside it is a task bug."""
    unknown = sorted(set(statuses) - set(STATUSES))
    if unknown:
        raise ValueError(f"reward status = {unknown[0]!r} is invalid; allowed: {', '.join(STATUSES)}")
    return [sum(st == k for st in statuses) for k in STATUSES]


def gather_history(ctx: Context, exp: Experience) -> None:
    """Add every process's rows to the per-prompt history (identical in all processes)."""
    rows = [(exp.prompt_id.tolist(), successes(exp.rewards).tolist())]
    if ctx.dist.world > 1:
        rows = [None] * ctx.dist.world
        torch.distributed.all_gather_object(rows, (exp.prompt_id.tolist(), successes(exp.rewards).tolist()))
    for ids, succ in rows:
        ctx.history.update(ids, succ)


def train(cfg: TrainConfig, task=None, model=None, tok=None) -> Context:
    """Run cfg.run.steps training steps (continuing from the latest checkpoint with run.resume).

    Each step: set the step's learning rate (llm/schedule.py, a pure function of the step), roll out,
    update, log the metrics with the lr, truncation rate and tokens/s (llm.logger.step_stats) and, every
    run.eval_every steps, the held-out evaluation (llm.evaluate.periodic_eval); checkpoint.
    A `model` passed in is trained in place (copy it first to keep the original); returns the Context.
    """
    ckpt = resume_point(cfg) if cfg.run.resume else None  # config checked before any work
    ctx = setup(cfg, task, model, tok)
    main = ctx.dist.is_main
    if ckpt is not None:
        resume(ctx, ckpt)
    if main:  # the run is known to start
        C.save(cfg, cfg.run.out_dir)  # atomic
    wandb = (dict(project=cfg.run.wandb_project, name=cfg.run.wandb_name, config=C.to_dict(cfg))
             if cfg.run.wandb else None)  # optional, beside metrics.jsonl and TensorBoard
    log = MetricsLogger(cfg.run.out_dir, main, cfg.run.tensorboard, resume=cfg.run.resume, wandb=wandb)
    log.truncate_after(ctx.step)
    start = ctx.step
    bar = Progress(cfg.run.steps, ctx.step, f"rl {ctx.recipe.name}", main and cfg.run.progress,
                   cfg.run.progress_every, cfg.run.progress_interval_s)  # tqdm on a TTY, else plain lines
    stop = stop_ids(ctx.tok, ctx.model)  # the EOS ids a response may end on (truncation rate)
    while ctx.step < cfg.run.steps:
        t0 = time.perf_counter()
        lr = lr_at(ctx.step, cfg.optim, cfg.run.steps)         # a pure function of the step: resumes exactly
        set_lr(ctx.optimizer, lr)
        exp = rollout_step(ctx, ctx.step)                       # rollouts -> rewards, outcome ids
        t_rollout = time.perf_counter() - t0
        check_outputs(ctx, exp, start)
        if ctx.ref_model is not None:
            add_reference_logp(ctx, exp)
        metrics = rollout_metrics(exp, ctx.dist)
        if ctx.refstore is not None:
            metrics["pef_prompts"] = float(len(ctx.refstore.samples))  # size of DPH's D_pef
        t1 = time.perf_counter()
        metrics.update(ppo_update(ctx, exp))                    # recipe loss, PPO epochs
        t_update = time.perf_counter() - t1
        gather_history(ctx, exp)                                # counts *after* the loss used them
        if ctx.memory is not None:
            metrics["memory_loss"] = ctx.memory.update(exp.prompt_tokens, exp.tokens.to(ctx.dist.device),
                                                       exp.mask.to(ctx.dist.device), exp.slot)
        ctx.step += 1
        metrics["time_s"] = time.perf_counter() - t0
        metrics.update(lr=lr, **step_stats(exp, stop, ctx.dist, t_rollout, t_update, cfg.optim.ppo_epochs))
        if cfg.run.eval_every and (ctx.step % cfg.run.eval_every == 0 or ctx.step == cfg.run.steps):
            metrics.update(periodic_eval(ctx))                  # eval/pass@k etc. on held-out prompts
        log.log(ctx.step, metrics)
        bar.update(ctx.step, metrics)
        every = cfg.run.save_every
        if (every and ctx.step % every == 0) or ctx.step == cfg.run.steps:  # every process (FSDP2 shards)
            save_checkpoint(cfg.run.out_dir, ctx.step, ctx.model, ctx.optimizer, trainer_state(ctx),
                            config=C.to_dict(cfg), dist=ctx.dist)
    save_final_model(ctx)
    barrier(ctx.dist)
    bar.close()
    log.close()
    return ctx


def main(argv=None) -> None:
    cfg = C.parse(TrainConfig, argv, description=__doc__)
    multi = int(os.environ.get("WORLD_SIZE", 1)) > 1
    try:
        train(cfg)
    finally:
        cleanup()
    if multi:  # every file is written and the group destroyed: skip interpreter finalisation, where
        sys.stdout.flush()  # gloo's worker threads can abort the process (SIGABRT, "terminate called
        sys.stderr.flush()  # without an active exception") after a run that succeeded
        os._exit(0)


if __name__ == "__main__":
    C.run_cli(main)
