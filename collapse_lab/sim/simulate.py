"""Public entry point: `simulate(problem, cfg, seed) -> Trajectory`.

Validates the config, owns the only RNG (np.random.default_rng(seed)), and runs one of three
dynamics (METHODS §5 recipes from collapse_lab.objective):
    sampled     per step, per replicate: u ~ U(0,1)^[R, Pt, G] drawn here, y by inverse CDF from the
                sampling policy (softmax(z - mu z_mem) for the memory recipe, else pi), then the
                recipe's gradient (numba closed form or torch autograd), optimiser step, history
                and memory updates. DAPO dynamic sampling *masks* zero-variance groups (no resample).
                DPH: before training each trained prompt gets n_pre base-policy samples (uniforms
                [R, Pt, n_pre] drawn first); prompts solved n_pre/n_pre times form D_pef and keep the
                first n_ref of them as stored reference samples.
    mean_field  exact expectation of one G-sample update (dynamics.mean_field_grad), R = 1.
    flow        exact expected gradient at G = infinity (dynamics.flow_grad), R = 1.
The numba path reuses its buffers across steps and, for tabular SGD, takes the step inside the
kernel (z -= lr g); the torch path builds the objective's Batch and uses autograd (reference.py).
RNG protocol (both backends, so they see the same samples): [DPH: u_pre [R, Pt, n_pre]], then per
step u [R, Pt, G]; y = #{k < K-1 : u >= cumsum(softmax(sampling logits))_k}.
"""

from __future__ import annotations

import time

import numba
import numpy as np
import torch

from ..objective import recipe as make_recipe
from . import kernels as kn
from .config import SimConfig
from .dynamics import flow_grad, mean_field_grad
from .params import Params
from .problems import softmax_np
from .reference import sample_numpy, torch_grads, torch_memory_update
from .spec import check_supported, recipe_codes
from .trajectory import Logger, Trajectory

__all__ = ["simulate", "build_recipe"]

_GROUP_RELATIVE = ("grpo", "dr_grpo", "rloo", "passk", "unlikeliness")


def build_recipe(cfg: SimConfig):
    """The objective Recipe of cfg (ValueError names cfg.recipe / cfg.overrides on failure)."""
    if not isinstance(cfg.recipe, str):
        raise ValueError(f"recipe must be a recipe name string, got {cfg.recipe!r}")
    try:
        rec = make_recipe(cfg.recipe, **dict(cfg.overrides))
    except ValueError as e:
        raise ValueError(f"recipe/overrides: {e}") from None
    except TypeError as e:
        raise ValueError(f"overrides: {e}") from None
    check_supported(rec)
    if cfg.group_size < 2 and rec.advantage.kind in _GROUP_RELATIVE and cfg.mode != "flow":
        raise ValueError(f"group_size must be >= 2 for recipe {cfg.recipe!r} (advantage "
                         f"{rec.advantage.kind!r} is group-relative), got {cfg.group_size}")
    if rec.advantage.kind == "passk" and cfg.mode != "flow" and rec.advantage.k > cfg.group_size:
        raise ValueError(f"group_size must be >= passk k={rec.advantage.k}, got {cfg.group_size}")
    return rec


def simulate(problem, cfg: SimConfig | None = None, seed: int = 0) -> Trajectory:
    """Run cfg on problem; see the module docstring. Returns a Trajectory (numpy arrays + config).

    Torch runs single-threaded inside (restored after): its tensors here are tiny and intra-op
    threads only contend with numba's pool.
    """
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        return _simulate(problem, SimConfig() if cfg is None else cfg, seed)
    finally:
        torch.set_num_threads(threads)


def _simulate(problem, cfg, seed):
    cfg.validate(problem)
    rec = build_recipe(cfg)
    rng = np.random.default_rng(seed)
    R = cfg.replicates if cfg.mode == "sampled" else 1
    P, K = problem.rewards.shape
    tp = np.arange(P) if cfg.train_prompts is None else np.asarray(sorted(set(cfg.train_prompts)), np.int64)
    params = Params.init(problem, cfg, R)
    ctx = _context(problem, rec, cfg, rng, R, tp)
    log = Logger(problem, cfg, R)
    z = params.logits()
    log.record(0, z, None)
    t0 = time.perf_counter()
    bar = _progress(cfg)
    for step in range(1, cfg.steps + 1):
        logged = step % cfg.log_every == 0 or step == cfg.steps
        pre_mass = np.clip((softmax_np(z) * problem.correct).sum(-1), 0, 1) if logged else None
        if cfg.mode == "sampled":
            gz, grads, stats = _sampled_grads(problem, cfg, rec, params, z, tp, ctx, rng)
        else:
            fn = flow_grad if cfg.mode == "flow" else mean_field_grad
            args = () if cfg.mode == "flow" else (cfg.group_size,)
            gz = fn(rec, z[0], problem, tp, *args)[None]
            grads, stats = params.grads_from_logits(gz), _expected_stats(problem, z, tp, cfg)
        if logged:
            stats.update(gz=gz, pre_mass=pre_mass)
        if grads is None:  # fused tabular SGD: the kernel already stepped z in place
            params.t += 1
        else:
            params.step(grads, softmax_np(z) if cfg.optimizer == "npg" else None)
            z = params.logits()
        if logged:
            if not np.isfinite(z).all():
                raise FloatingPointError(f"simulate: non-finite logits at step {step} (recipe {cfg.recipe!r}, "
                                         f"lr={cfg.lr}, optimizer={cfg.optimizer!r}); lower lr")
            log.record(step, z, stats)
        if bar is not None:
            bar.update(1)
    if bar is not None:
        bar.close()
    if ctx["lr_fused"] > 0:
        params.theta[:] = z - problem.logits
    extra = {"dph_pef_frac": float(ctx["pef"][:, tp].mean())} if rec.dph is not None else {}
    return log.trajectory(params, z, recipe=rec.to_dict(), seed=seed, wall_s=time.perf_counter() - t0,
                          **extra)


def _progress(cfg):
    if not cfg.progress:
        return None
    from tqdm.auto import tqdm

    return tqdm(total=cfg.steps, desc=f"{cfg.recipe}/{cfg.mode}")


def _context(problem, rec, cfg, rng, R, tp) -> dict:
    """Per-run state outside the parameters: history counts, memory logits, DPH split."""
    P, K = problem.rewards.shape
    ref_lp = np.log(problem.base_probs())
    ctx = {"ref_lp": ref_lp, "prior_s": np.zeros((R, P)), "prior_n": np.zeros((R, P)),
           "pef": np.zeros((R, P), bool), "ref_y": -np.ones((R, P, 1), np.int64),
           "zmem": np.zeros((R, P, K)) if rec.memory is not None else None}
    if rec.dph is not None and cfg.mode == "sampled":
        u = rng.random((R, len(tp), rec.dph.n_pre))  # drawn once, before any training uniforms
        z0 = np.broadcast_to(problem.logits, (R, P, K))
        y = sample_numpy(np.ascontiguousarray(z0), tp, u)  # (R, Pt, n_pre)
        solved = problem.rewards[tp[None, :, None], y] >= 1.0
        ctx["pef"][:, tp] = solved.all(-1)
        n_ref = min(rec.dph.n_ref, rec.dph.n_pre)
        ref_y = -np.ones((R, P, n_ref), np.int64)
        ref_y[:, tp] = np.where(ctx["pef"][:, tp, None], y[:, :, :n_ref], -1)
        ctx["ref_y"] = ref_y
    ctx["ic"], ctx["fp"] = recipe_codes(rec)
    fused = (cfg.mode, cfg.backend, cfg.param, cfg.optimizer) == ("sampled", "numba", "tabular", "sgd")
    ctx["lr_fused"] = float(cfg.lr) if fused else 0.0
    return ctx


def _sampled_grads(problem, cfg, rec, params, z, tp, ctx, rng):
    """One stochastic update's gradients and per-group statistics (module docstring)."""
    R, G = z.shape[0], cfg.group_size
    u = rng.random((R, len(tp), G))
    qz = z if rec.memory is None else z - rec.memory.mu * ctx["zmem"]
    ctx["qz"] = qz
    if cfg.backend == "numba":
        if "work" not in ctx:
            ctx["work"] = _work(z.shape, len(tp), G)
        w = ctx["work"]
        kn.recipe_grad(z, qz, u, w["y"], tp, problem.rewards, ctx["ref_lp"], ctx["prior_s"],
                       ctx["prior_n"], ctx["pef"].view(np.uint8), ctx["ref_y"], ctx["ic"], ctx["fp"],
                       w["gz"], w["coef"], w["succ"], w["varied"], w["buf"], ctx["lr_fused"],
                       z.shape[0] >= numba.get_num_threads())
        y, gz, succ, varied = w["y"], w["gz"], w["succ"], w["varied"]
        grads = None if ctx["lr_fused"] > 0 else params.grads_from_logits(gz)
    else:
        y = sample_numpy(qz, tp, u)
        grads, gz, _ = torch_grads(rec, params, problem, tp, y, ctx)
        r = problem.rewards[tp[None, :, None], y]  # (R, Pt, G)
        succ, varied = (r >= 1.0).sum(-1), r.max(-1) > r.min(-1)
    stats = {"zero_var": 1.0 - varied.mean(-1)}
    ctx["prior_s"][:, tp] += succ
    ctx["prior_n"][:, tp] += G
    if rec.memory is not None:
        if cfg.backend == "numba":
            kn.memory_update(ctx["zmem"], y, tp, rec.memory.lr, float(len(tp) * G))
        else:
            torch_memory_update(ctx["zmem"], y, tp, rec.memory.lr)
    return gz, grads, stats


def _work(shape, n_train, G) -> dict:
    """Buffers reused by every numba step (allocated once: no page faults per step)."""
    R, P, K = shape
    return {"y": np.empty((R, n_train, G), np.int64), "coef": np.empty((R, n_train, G)),
            "gz": np.zeros(shape), "succ": np.empty((R, n_train)),
            "varied": np.empty((R, n_train), np.bool_),
            "buf": np.empty(R * n_train * (2 * G + 3 * K) + 4 * R)}


def _expected_stats(problem, z, tp, cfg) -> dict:
    """Expected zero-variance-group fraction: sum over reward levels v of (mass on v)^G (0 in flow)."""
    pi = softmax_np(z[0][tp])
    r = problem.rewards[tp]
    if cfg.mode == "flow":
        return {"zero_var": np.array([float(np.mean(r.max(1) == r.min(1)))])}
    frac = np.zeros(len(tp))
    for v in np.unique(r):
        frac += (np.where(r == v, pi, 0.0).sum(1)) ** cfg.group_size
    return {"zero_var": np.array([frac.mean()])}
