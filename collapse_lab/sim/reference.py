"""Torch backend: the ground truth. Builds the objective's `Batch` and differentiates `Recipe.loss`.

One replicate = one Batch of T = 1 responses: all trained prompts x G samples,
    logp[b] = log_softmax(z)[p_b, y_b], group = p_b, outcome = y_b, rewards = R[p_b, y_b],
    old_logp = log softmax(z - mu z_mem)[p_b, y_b] for the memory sampler (else None = on-policy),
    ref_logp = log softmax(z0)[p_b, y_b], entropy = H(pi_{p_b}) (exact categorical entropy),
    ref_samples = stored base-policy samples of the D_pef prompts (DPH), prior_* = history counts.
The parameter gradient is torch autograd of the loss; the optimiser step is shared (params.py).
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

from ..objective import Batch, RefSamples, memory_loss

__all__ = ["torch_grads", "torch_memory_update", "sample_numpy"]


def sample_numpy(qz: np.ndarray, tp: np.ndarray, u: np.ndarray) -> np.ndarray:
    """y[r, j, g] = first k with u < cumsum(softmax(qz[r, tp[j]]))_k (inverse CDF; K-1 on round-off)."""
    lq = F.log_softmax(torch.from_numpy(qz[:, tp]), -1).exp().numpy()  # (R, Pt, K)
    cum = np.cumsum(lq, axis=-1)
    y = (u[..., None] >= cum[:, :, None, :]).sum(-1)
    return np.minimum(y, qz.shape[-1] - 1).astype(np.int64)


def _batch(rec, lp, problem, tp, y, r, state) -> Batch:
    """The objective's Batch for replicate r (module docstring); state: state.RunState."""
    G = y.shape[2]
    pb = torch.from_numpy(np.repeat(tp, G))
    yb = torch.from_numpy(y[r].reshape(-1))
    R = torch.from_numpy(problem.rewards)
    ref_lp = torch.from_numpy(state.ref_lp)
    old = None
    if rec.memory is not None:
        old = F.log_softmax(torch.from_numpy(state.qz[r]), -1)[pb, yb]
    refs = None
    if rec.dph is not None:
        sel = state.pef[r][:, None] & (state.ref_y[r] >= 0)  # (P, NR) stored samples of D_pef
        sel[~np.isin(np.arange(sel.shape[0]), tp)] = False
        pr, q = np.nonzero(sel)
        yr = state.ref_y[r][pr, q]
        if len(pr):
            pr_t, yr_t = torch.from_numpy(pr), torch.from_numpy(yr)
            refs = RefSamples(lp[pr_t, yr_t], ref_lp[pr_t, yr_t], None, pr_t)  # group = prompt: splittable
        else:  # no D_pef prompt: an empty reference set, the divergence term is 0
            refs = RefSamples(lp.new_zeros(0), ref_lp.new_zeros(0), None, pb.new_zeros(0))
    entropy = -(lp.exp() * lp).sum(-1)[pb]
    return Batch(logp=lp[pb, yb], rewards=R[pb, yb], group=pb, old_logp=old, outcome=yb,
                 ref_logp=ref_lp[pb, yb], entropy=entropy, ref_samples=refs,
                 prior_success=torch.from_numpy(state.prior_s[r][pb.numpy()]),
                 prior_trials=torch.from_numpy(state.prior_n[r][pb.numpy()]),
                 pef=torch.from_numpy(state.pef[r][pb.numpy()]) if rec.dph is not None else None)


def torch_grads(rec, params, problem, tp, y, state) -> tuple[dict, np.ndarray, list]:
    """Autograd gradients of `rec.loss(batch, rec.prepare(batch))` per replicate
    -> ({'theta': [R,P,K], 'w': [R,D]}, g_z, diags)."""
    R = y.shape[0]
    z0 = torch.from_numpy(params.z0)
    phi = None if params.phi is None else torch.from_numpy(params.phi)
    grads = {name: np.zeros_like(a) for name, a in params.arrays().items()}
    gz = np.zeros((R,) + params.z0.shape)
    diags = []
    for r in range(R):
        leaves = {name: torch.tensor(a[r], requires_grad=True) for name, a in params.arrays().items()}
        z = z0 + leaves["theta"] if "theta" in leaves else z0.clone()
        if "w" in leaves:
            z = z + torch.einsum("pkd,d->pk", phi, leaves["w"])
        z.retain_grad()
        lp = F.log_softmax(z, -1)
        b = _batch(rec, lp, problem, tp, y, r, state)
        prep = rec.prepare(b)  # phase 1 on the whole rollout batch (advantages, denominators)
        loss, diag = rec.loss(b, prep)  # phase 2 (the trainer runs it per micro-batch)
        loss.backward()
        for name, leaf in leaves.items():
            grads[name][r] = leaf.grad.numpy()
        gz[r] = z.grad.numpy()
        diags.append(diag)
    return grads, gz, diags


def torch_memory_update(zmem: np.ndarray, y: np.ndarray, tp: np.ndarray, lr: float) -> None:
    """zmem <- zmem - lr * dL_mem/dzmem with L_mem = sum_p memory_loss(log softmax(zmem[p])[y_p]):
    memory_loss (the objective's, a mean) over each prompt's own G samples, summed over prompts, so
    each prompt's memory row takes the step of its own group (kernels.memory_update)."""
    pb = torch.from_numpy(np.repeat(tp, y.shape[2]))  # [Pt * G] the prompt of each sample
    for r in range(y.shape[0]):
        zm = torch.tensor(zmem[r], requires_grad=True)
        lp = F.log_softmax(zm, -1)[pb, torch.from_numpy(y[r].reshape(-1))]  # [Pt * G]
        memory_loss(lp, group=pb).backward()  # sum over prompts of each group's mean (objective/memory.py)
        zmem[r] -= lr * zm.grad.numpy()
