"""The reduce callback of `Recipe.prepare` with real torch.distributed (2 gloo processes) equals one
process: the documented DDP callback, a batch-spanning recipe, exact to 1e-12."""

import torch
import torch.distributed as dist
import torch.multiprocessing as mp
from test_prepare import make_case

from collapse_lab.objective import recipe

NAME, OVER = "ips_grpo+isac+dph_js", {"std": "batch", "normalize": True, "agg": "seq-mean-token-mean"}
HALVES = ([3, 11, 7], [0, 5, 2])


def _reduce(x, op):
    """The DDP callback of objective.prepared's docstring."""
    y = x.clone()
    dist.all_reduce(y, dist.ReduceOp.SUM if op == "sum" else dist.ReduceOp.MAX)
    return y


def _worker(rank, path, out):
    torch.set_num_threads(1)
    dist.init_process_group("gloo", init_method=f"file://{path}", rank=rank, world_size=2)
    try:
        rec, case = recipe(NAME, **OVER), make_case(6)
        theta, phi = case.leaves()
        mine = case.batch(theta, phi).select(torch.isin(case.group, torch.tensor(HALVES[rank])))
        prep = rec.prepare(mine, reduce=_reduce)
        loss, _ = rec.loss(mine, prep)
        loss.backward()
        torch.save({"adv": prep.advantages, "policy": tuple(prep.policy), "ref": tuple(prep.ref),
                    "loss": loss.item(), "theta": theta.grad, "phi": phi.grad}, f"{out}/{rank}.pt")
    finally:
        dist.destroy_process_group()


def test_two_gloo_processes_equal_one(tmp_path):
    mp.spawn(_worker, args=(str(tmp_path / "pg"), str(tmp_path)), nprocs=2, join=True)
    got = [torch.load(tmp_path / f"{r}.pt", weights_only=True) for r in (0, 1)]
    rec, case = recipe(NAME, **OVER), make_case(6)
    theta, phi = case.leaves()
    full = case.batch(theta, phi)
    one = rec.prepare(full)
    loss, _ = rec.loss(full, one)
    loss.backward()
    for r, half in enumerate(HALVES):
        ref = one.select(torch.isin(case.group, torch.tensor(half)))
        assert got[r]["policy"] == tuple(ref.policy) and got[r]["ref"] == tuple(ref.ref)
        assert float((got[r]["adv"] - ref.advantages).abs().max()) <= 1e-12
    assert abs(got[0]["loss"] + got[1]["loss"] - loss.item()) <= 1e-12
    assert float((got[0]["theta"] + got[1]["theta"] - theta.grad).abs().max()) <= 1e-12
    assert float((got[0]["phi"] + got[1]["phi"] - phi.grad).abs().max()) <= 1e-12
