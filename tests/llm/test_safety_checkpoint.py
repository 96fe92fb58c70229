"""Checkpoints load nothing that can run code (weights_only=True everywhere; a crafted pickle is
refused before its payload runs), and a resumed run equals an uninterrupted one (bandit, fast)."""

from pathlib import Path

import pytest
import torch

from llm.checkpoint import latest_checkpoint, safe_load
from llm.logger import read_metrics
from llm.train import train

RECIPES = ["memory", "zero_success+dph_js"]  # RNG, history, memory LM + its SGD, DPH store


def _touch(path):
    """The payload: proves code ran by creating a file."""
    Path(path).write_text("pwned")
    return {}


class Payload:
    def __init__(self, marker):
        self.marker = str(marker)

    def __reduce__(self):
        return (_touch, (self.marker,))


def _kw(name):
    return dict(recipe={"overrides": {"n_pre": 2} if "dph" in name else {}})


@pytest.mark.parametrize("name", RECIPES)
def test_checkpoint_files_are_plain_tensors_and_containers(bandit_config, tmp_path, name):
    train(bandit_config(tmp_path, name, steps=2, **_kw(name)))
    ckpt = latest_checkpoint(tmp_path)
    for f in ("state.pt", "optim.pt"):
        torch.load(ckpt / f, weights_only=True)  # raises if anything else were pickled
    state = safe_load(ckpt / "state.pt")
    assert state["step"] == 2 and isinstance(state["history"]["trials"], torch.Tensor)
    assert isinstance(state["rng"]["numpy"]["keys"], torch.Tensor)
    assert (ckpt / "config.json").exists()


@pytest.mark.parametrize("target", ["state.pt", "optim.pt"])
def test_crafted_pickle_is_refused_and_runs_no_code(bandit_config, tmp_path, target):
    train(bandit_config(tmp_path / "run", steps=1))
    ckpt = latest_checkpoint(tmp_path / "run")
    marker = tmp_path / "marker"
    evil = {"step": 1, "rng": Payload(marker)} if target == "state.pt" else {"state": Payload(marker)}
    torch.save(evil, ckpt / target)
    torch.load(ckpt / target, weights_only=False)  # the payload is real: an unsafe load runs it
    assert marker.read_text() == "pwned"
    marker.unlink()
    config_before = (tmp_path / "run" / "config.toml").read_text()
    with pytest.raises(ValueError, match=rf"{target} is invalid; allowed: tensors and plain containers"):
        train(bandit_config(tmp_path / "run", steps=2, run={"resume": True}))
    assert not marker.exists()  # no code ran
    assert (tmp_path / "run" / "config.toml").read_text() == config_before


@pytest.mark.parametrize("name", RECIPES)
def test_resume_equals_uninterrupted_bandit(bandit_config, tmp_path, name):
    train(bandit_config(tmp_path / "full", name, steps=4, **_kw(name)))
    train(bandit_config(tmp_path / "cut", name, steps=2, **_kw(name)))
    ctx = train(bandit_config(tmp_path / "cut", name, steps=4, run={"resume": True}, **_kw(name)))
    full = safe_load(latest_checkpoint(tmp_path / "full") / "state.pt")
    cut = safe_load(latest_checkpoint(tmp_path / "cut") / "state.pt")
    a = torch.load(latest_checkpoint(tmp_path / "full") / "optim.pt", weights_only=True)
    b = torch.load(latest_checkpoint(tmp_path / "cut") / "optim.pt", weights_only=True)
    assert a["param_groups"] == b["param_groups"]
    from safetensors.torch import load_file
    wa, wb = (load_file(str(latest_checkpoint(tmp_path / d) / "model.safetensors"))["table"] for d in ("full", "cut"))
    assert torch.equal(wa, wb) and torch.equal(wb, ctx.model.table.detach())
    assert torch.equal(full["history"]["trials"], cut["history"]["trials"])
    assert torch.equal(full["rng"]["torch"], cut["rng"]["torch"])
    if name == "memory":
        for k, v in full["memory"]["memory"].items():
            assert torch.equal(v, cut["memory"]["memory"][k])
    m_full, m_cut = read_metrics(tmp_path / "full"), read_metrics(tmp_path / "cut")
    assert [r["step"] for r in m_cut] == [1, 2, 3, 4]
    assert [r["loss"] for r in m_full] == [r["loss"] for r in m_cut]
    assert [r["pass@1"] for r in m_full] == [r["pass@1"] for r in m_cut]
