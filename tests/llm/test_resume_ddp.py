"""Exact continuation: an interrupted and resumed run equals an uninterrupted one; a 2-process gloo
DDP run equals a single-process run with the same global batch (1e-6)."""

import os
import socket
import subprocess
import sys

import pytest
import torch

from llm import config as C
from llm.checkpoint import latest_checkpoint, safe_load
from llm.logger import read_metrics
from llm.models import load_model
from llm.tasks.base import STATUSES
from llm.train import train


def _weights(path) -> torch.Tensor:
    model, _ = load_model(C.ModelConfig(name=str(path)))
    return torch.cat([p.detach().flatten() for p in model.parameters()])


@pytest.mark.parametrize("name", ["bbg", "memory", "zero_success+dph_js"])
def test_resume_equals_uninterrupted(sft_model, train_config, tmp_path, name):
    """AdamW state, history counts, the memory LM and DPH's stored samples all survive a restart."""
    kw = dict(optim={"optimizer": "adamw", "ppo_epochs": 2, "num_minibatches": 2},
              recipe={"overrides": {"n_pre": 2} if "dph" in name else {}})
    train(train_config(tmp_path / "full", sft_model, name, steps=4, **kw))
    train(train_config(tmp_path / "cut", sft_model, name, steps=2, **kw))  # interrupted after 2 steps
    assert latest_checkpoint(tmp_path / "cut").name == "step_00000002"
    train(train_config(tmp_path / "cut", sft_model, name, steps=4, run={"resume": True}, **kw))
    full, cut = _weights(tmp_path / "full" / "model"), _weights(tmp_path / "cut" / "model")
    assert (full - _weights(sft_model)).abs().max() > 1e-4  # training moved the weights
    assert torch.equal(full, cut)
    m_full, m_cut = read_metrics(tmp_path / "full"), read_metrics(tmp_path / "cut")
    assert [r["step"] for r in m_cut] == [1, 2, 3, 4]
    assert [r["loss"] for r in m_full] == [r["loss"] for r in m_cut]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.parametrize("name, overrides", [("grpo", {}), ("zero_success", {}), ("memory", {}),
                                             ("isac+dph_js", {"normalize": True, "std": "batch", "n_pre": 1})])
def test_ddp_two_processes_equal_one(sft_model, train_config, tmp_path, name, overrides):
    """zero_success reads per-prompt history, which every process must hold for all prompts; isac with
    normalize and std="batch" reduces batch statistics over processes in recipe.prepare; dph_js's
    reference rows and their denominators are split over processes."""
    kw = dict(rollout={"prompts_per_step": 8}, optim={"num_minibatches": 2, "micro_groups": 1},
              model={"dtype": "float64"}, task={"num_prompts": 8},  # 6 train prompts: repeats
              recipe={"overrides": overrides})
    single = train_config(tmp_path / "single", sft_model, name, steps=3, **kw)
    train(single)
    ddp = train_config(tmp_path / "ddp", sft_model, name, steps=3, **kw)
    cfg_file = C.save(ddp, tmp_path)
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc-per-node", "2", "--master-addr",
           "127.0.0.1", "--master-port", str(_free_port()), "-m", "llm.train", "--config", str(cfg_file)]
    done = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    a, b = _weights(tmp_path / "single" / "model"), _weights(tmp_path / "ddp" / "model")
    assert (a - _weights(sft_model)).abs().max() > 1e-4
    assert (a - b).abs().max() < 1e-6
    ha, hb = (safe_load(latest_checkpoint(tmp_path / d) / "state.pt")["history"]
              for d in ("single", "ddp"))
    assert (ha["trials"] == hb["trials"]).all() and (ha["success"] == hb["success"]).all()
    assert ha["trials"].sum() == 3 * 8 * 4  # every rollout of both processes is counted
    ra, rb = read_metrics(tmp_path / "single"), read_metrics(tmp_path / "ddp")
    assert [r["pass@1"] for r in ra] == [r["pass@1"] for r in rb]  # the same samples were drawn
    for s in STATUSES:  # status counts are summed over both processes
        assert [r[f"status/{s}"] for r in ra] == [r[f"status/{s}"] for r in rb]
    assert all(sum(r[f"status/{s}"] for s in STATUSES) == 8 * 4 for r in rb)
    if "dph" in name:  # D_pef is not empty: the divergence term was trained, equally in both runs
        assert ra[0]["pef_prompts"] > 0 and any(r["div_loss"] != 0 for r in ra)
        assert all(abs(x["div_loss"] - y["div_loss"]) < 1e-9 for x, y in zip(ra, rb))
