"""Nothing is lost: every file the trainer rewrites (metrics.jsonl on resume, config.toml, the final
model, checkpoints and `latest`) goes through a temporary file and os.replace. A crash is simulated
by making os.replace fail, i.e. the process dies after writing the new copy and before renaming it."""

import json
import os
from pathlib import Path

try:
    import tomllib
except ImportError:  # Python 3.10
    import tomli as tomllib

import pytest
import torch

import llm.checkpoint as ckpt_mod
from llm.checkpoint import atomic_write_text, latest_checkpoint, load_checkpoint
from llm.logger import MetricsLogger, read_metrics
from llm.models import load_model
from llm.tasks import make_task
from llm.train import train


class Killed(Exception):
    pass


def _die(*a, **k):
    raise Killed("killed between write and rename")


def _log(tmp_path, n):
    text = "".join(json.dumps({"step": s, "loss": s / 10}) + "\n" for s in range(1, n + 1))
    (tmp_path / "metrics.jsonl").write_text(text)
    return text


def test_truncate_after_crash_keeps_the_old_log(tmp_path, monkeypatch):
    text = _log(tmp_path, 60)
    log = MetricsLogger(tmp_path, resume=True)
    monkeypatch.setattr(ckpt_mod.os, "replace", _die)
    with pytest.raises(Killed):
        log.truncate_after(30)
    assert (tmp_path / "metrics.jsonl").read_text() == text  # the 60-line log is intact
    monkeypatch.undo()
    log.truncate_after(30)
    assert [r["step"] for r in read_metrics(tmp_path)] == list(range(1, 31))
    assert not list(tmp_path.glob("*.tmp"))


def test_line_cut_by_a_crash_is_dropped_on_resume(tmp_path):
    text = _log(tmp_path, 4)
    (tmp_path / "metrics.jsonl").write_text(text + '{"step": 5, "lo')
    MetricsLogger(tmp_path, resume=True).truncate_after(4)
    assert [r["step"] for r in read_metrics(tmp_path)] == [1, 2, 3, 4]


def test_atomic_write_text_crash_leaves_old_file(tmp_path, monkeypatch):
    f = tmp_path / "a.txt"
    f.write_text("old")
    monkeypatch.setattr(ckpt_mod.os, "replace", _die)
    with pytest.raises(Killed):
        atomic_write_text(f, "new")
    assert f.read_text() == "old"


@pytest.mark.parametrize("target", ["config.toml", "step_00000003", "latest", "model"])
def test_crash_while_rewriting_leaves_a_whole_copy(bandit_config, tmp_path, monkeypatch, target):
    """A resumed run killed at the rename of `target` (config.toml, checkpoint 3, `latest`, the final
    model) leaves checkpoint 2, the previous model and config.toml whole, and the run resumes."""
    train(bandit_config(tmp_path, steps=2))
    model_before = (tmp_path / "model" / "model.safetensors").read_bytes()
    toml_before = (tmp_path / "config.toml").read_text()
    real = os.replace

    def kill_at_target(src, dst):
        if Path(dst).name == target:
            raise Killed(f"killed before renaming {src} -> {dst}")
        real(src, dst)

    monkeypatch.setattr(os, "replace", kill_at_target)
    with pytest.raises(Killed):
        train(bandit_config(tmp_path, steps=3, run={"resume": True}))
    monkeypatch.undo()
    steps = tomllib.loads((tmp_path / "config.toml").read_text())["run"]["steps"]  # a whole file
    assert steps == (2 if target == "config.toml" else 3)
    if target == "config.toml":
        assert (tmp_path / "config.toml").read_text() == toml_before
    if target == "model":  # between the two renames of replace_dir the old copy is model.old
        assert (tmp_path / "model.old" / "model.safetensors").read_bytes() == model_before
    else:
        assert (tmp_path / "model" / "model.safetensors").read_bytes() == model_before
    expect = "step_00000003" if target == "model" else "step_00000002"  # model is written after step 3's
    assert latest_checkpoint(tmp_path).name == expect
    cfg = bandit_config(tmp_path)
    model, _ = load_model(cfg.model, make_task(cfg.task))
    load_checkpoint(latest_checkpoint(tmp_path), model)
    assert torch.isfinite(model.table).all()
    (tmp_path / "checkpoints" / "step_00000001.old").mkdir()  # stale copy of an earlier crash: removed
    train(bandit_config(tmp_path, steps=4, run={"resume": True}))  # the run continues from it
    assert latest_checkpoint(tmp_path).name == "step_00000004"
    assert [r["step"] for r in read_metrics(tmp_path)] == [1, 2, 3, 4]
    assert not [p for p in tmp_path.rglob("*") if p.name.endswith((".tmp", ".old"))]
