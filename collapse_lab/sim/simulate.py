"""Public entry point: `simulate(problem, cfg, seed) -> Trajectory`.

Validates the config, owns the only RNG (np.random.default_rng(seed)), and runs one of three
dynamics (docs/methods.md §5 recipes from collapse_lab.objective):
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
Per-run state outside the parameters lives in a typed RunState (state.py). Logged metrics are
numba (metric_kernels.py); on the numba sampled path the kernel computes them from the softmax it
holds, so the row of a logged step t is completed during step t + 1 (or by a final pass).
RNG protocol (both backends, so they see the same samples): [DPH: u_pre [R, Pt, n_pre]], then per
step u [R, Pt, G]; y = #{k < K-1 : u >= cumsum(softmax(sampling logits))_k}.
"""

from __future__ import annotations

import time

import numba
import numpy as np
import torch

from collapse_lab.objective import successes

from ..objective import recipe as make_recipe
from . import kernels as kn
from .config import SimConfig
from .dynamics import flow_grad, mean_field_grad
from .params import Params
from .problems import softmax_np
from .reference import sample_numpy, torch_grads, torch_memory_update
from .spec import check_supported
from .state import RunState
from .trajectory import Logger, Trajectory

__all__ = ["simulate", "build_recipe"]

_GROUP_RELATIVE = ("grpo", "dr_grpo", "rloo", "passk", "unlikeliness")


def build_recipe(cfg: SimConfig):
    """The objective Recipe of cfg (ValueError names cfg.recipe / cfg.overrides / cfg.group_size)."""
    if not isinstance(cfg.recipe, str):
        raise ValueError(f"recipe = {cfg.recipe!r} is invalid; allowed: a recipe name string")
    try:
        rec = make_recipe(cfg.recipe, **dict(cfg.overrides))
    except ValueError as e:
        raise ValueError(f"recipe/overrides: {e}") from None
    except TypeError as e:
        raise ValueError(f"overrides: {e}") from None
    check_supported(rec, cfg.backend)  # the torch backend runs sampled mode only (SimConfig)
    if cfg.group_size < 2 and rec.advantage.kind in _GROUP_RELATIVE and cfg.mode != "flow":
        raise ValueError(f"group_size = {cfg.group_size!r} is invalid; allowed: an int >= 2 for recipe "
                         f"{cfg.recipe!r} (advantage {rec.advantage.kind!r} is group-relative)")
    if rec.advantage.kind == "passk" and cfg.mode != "flow" and rec.advantage.k > cfg.group_size:
        raise ValueError(f"group_size = {cfg.group_size!r} is invalid; allowed: an int >= passk "
                         f"k={rec.advantage.k}")
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
    state = RunState.init(problem, rec, cfg, rng, R, tp)
    log = Logger(problem, cfg, R, state.ref_lp)
    z = params.logits()
    log.measure(z, 0)
    log.open_row(0, z, None, None)
    log.close_row()
    t0 = time.perf_counter()
    bar = _progress(cfg)
    for step in range(1, cfg.steps + 1):
        logged = step % cfg.log_every == 0 or step == cfg.steps
        # statistics of z (after step - 1 updates): from the kernel's softmax, else a standalone pass
        in_kernel = state.fused_stats and (logged or log.pending is not None)
        if logged and not in_kernel and log.measured != step - 1:
            log.measure(z, step - 1)  # the saturation share needs the pre-update correct mass
        if cfg.mode == "sampled":
            gz, grads, zero_var = _sampled_grads(problem, cfg, rec, params, z, state, rng,
                                                 log.kernel_stats(in_kernel))
        else:
            fn = flow_grad if cfg.mode == "flow" else mean_field_grad
            args = () if cfg.mode == "flow" else (cfg.group_size,)
            gz = fn(rec, z[0], problem, tp, *args)[None]
            grads, zero_var = params.grads_from_logits(gz), _expected_zero_var(problem, z, tp, cfg)
        if in_kernel:
            log.mark_measured(step - 1)
            log.close_row()  # the row of step - 1, if it was logged
        saturated = log.saturated(None if in_kernel else gz) if logged else None
        if grads is None:  # fused tabular SGD: the kernel already stepped z in place
            params.t += 1
        else:
            params.step(grads, softmax_np(z) if cfg.optimizer == "npg" else None)
            z = params.logits()
        if logged:
            log.open_row(step, z, zero_var, saturated)
            if not (state.fused_stats and step < cfg.steps):  # else completed by the next kernel call
                log.measure(z, step)
                log.close_row()
        if bar is not None:
            bar.update(1)
    if bar is not None:
        bar.close()
    if state.lr_fused > 0:
        params.theta[:] = z - problem.logits
    extra = {"dph_pef_frac": float(state.pef[:, tp].mean())} if rec.dph is not None else {}
    return log.trajectory(params, z, recipe=rec.to_dict(), seed=seed, wall_s=time.perf_counter() - t0,
                          **extra)


def _progress(cfg):
    if not cfg.progress:
        return None
    from tqdm.auto import tqdm

    return tqdm(total=cfg.steps, desc=f"{cfg.recipe}/{cfg.mode}")


def _sampled_grads(problem, cfg, rec, params, z, state, rng, log_stats):
    """One stochastic update: (g_z [R, P, K], parameter grads or None when the kernel stepped z,
    zero-variance group share [R]) (module docstring)."""
    R, G, tp = z.shape[0], cfg.group_size, state.tp
    u = rng.random((R, len(tp), G))
    qz = z if rec.memory is None else z - rec.memory.mu * state.zmem
    state.qz = qz
    if cfg.backend == "numba":
        y, out, sc = state.buffers(z.shape, G)
        kn.recipe_grad(kn.Logits(z, qz), kn.Draws(u, y), state.task(problem), state.history(), state.codes, out, sc,
                       log_stats, state.lr_fused, R >= numba.get_num_threads())
        gz, succ, varied = out.g, out.n_succ, out.varied
        grads = None if state.lr_fused > 0 else params.grads_from_logits(gz)
    else:
        y = sample_numpy(qz, tp, u)
        grads, gz, _ = torch_grads(rec, params, problem, tp, y, state)
        r = problem.rewards[tp[None, :, None], y]  # (R, Pt, G)
        succ, varied = successes(r).sum(-1), r.max(-1) > r.min(-1)
    state.prior_s[:, tp] += succ
    state.prior_n[:, tp] += G
    if rec.memory is not None:
        if cfg.backend == "numba":
            kn.memory_update(state.zmem, y, tp, rec.memory.lr)
        else:
            torch_memory_update(state.zmem, y, tp, rec.memory.lr)
    return gz, grads, 1.0 - varied.mean(-1)


def _expected_zero_var(problem, z, tp, cfg) -> np.ndarray:
    """Expected zero-variance-group fraction: sum over reward levels v of (mass on v)^G (0 in flow)."""
    pi = softmax_np(z[0][tp])
    r = problem.rewards[tp]
    if cfg.mode == "flow":
        return np.array([float(np.mean(r.max(1) == r.min(1)))])
    frac = np.zeros(len(tp))
    for v in np.unique(r):
        frac += (np.where(r == v, pi, 0.0).sum(1)) ** cfg.group_size
    return np.array([frac.mean()])
