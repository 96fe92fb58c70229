"""Optional wandb logging beside metrics.jsonl: wandb is imported only when run.wandb is on, gets every
step's metrics, continues the same run on resume, leaves its mode (WANDB_MODE=offline) to the
environment; without the package, one clear line."""

import importlib.machinery
import sys
import types

import pytest

from llm import config as C
from llm import train as T
from llm.logger import read_metrics
from llm.train import train


class FakeRun:
    def __init__(self, kwargs):
        self.kwargs, self.logged, self.finished = kwargs, [], False

    def log(self, data, step=None):
        self.logged.append((step, data))

    def finish(self):
        self.finished = True


@pytest.fixture
def fake_wandb(monkeypatch):
    mod = types.ModuleType("wandb")
    mod.__spec__ = importlib.machinery.ModuleSpec("wandb", None)
    mod.runs = []
    mod.init = lambda **kw: mod.runs.append(FakeRun(kw)) or mod.runs[-1]
    monkeypatch.setitem(sys.modules, "wandb", mod)
    return mod


def test_wandb_gets_every_step_and_resumes_the_same_run(bandit_config, tmp_path, fake_wandb):
    run = {"wandb": True, "wandb_project": "proj", "wandb_name": "bandit-grpo", "save_every": 1}
    train(bandit_config(tmp_path, steps=2, run=run))
    first = fake_wandb.runs[0]
    kw = first.kwargs
    assert kw["project"] == "proj" and kw["name"] == "bandit-grpo" and kw["dir"] == str(tmp_path)
    assert "mode" not in kw  # WANDB_MODE (offline) is left to the environment
    assert kw["config"]["optim"]["lr"] == 0.5 and kw["config"]["run"]["wandb"] is True
    rows = read_metrics(tmp_path)
    assert [s for s, _ in first.logged] == [1, 2] and [d for _, d in first.logged] == [
        {k: v for k, v in r.items() if k != "step"} for r in rows]
    assert "lr" in first.logged[0][1] and first.finished
    train(bandit_config(tmp_path, steps=3, run={**run, "resume": True}))
    second = fake_wandb.runs[1]
    assert second.kwargs["id"] == kw["id"] and second.kwargs["resume"] == "allow"
    assert [s for s, _ in second.logged] == [3]


def test_wandb_off_never_imports_it(bandit_config, tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "wandb", None)  # any import would raise
    train(bandit_config(tmp_path, steps=1))


def test_wandb_missing_is_one_line(bandit_config, tmp_path, monkeypatch, capsys):
    monkeypatch.setitem(sys.modules, "wandb", None)  # not installed
    with pytest.raises(ValueError, match=r"^run.wandb = True is invalid; allowed: false, or true with the wandb "
                                         r"package installed \(pip install wandb\)$"):
        bandit_config(tmp_path, steps=1, run={"wandb": True})
    with pytest.raises(SystemExit) as e:
        C.run_cli(T.main, ["--run.wandb", "true", "--run.out_dir", str(tmp_path)])
    assert e.value.code == 2
    assert capsys.readouterr().err == ("error: run.wandb = True is invalid; allowed: false, or true with the "
                                       "wandb package installed (pip install wandb)\n")


def test_logger_import_failure_is_the_same_line(tmp_path, monkeypatch):
    from llm.logger import MetricsLogger
    monkeypatch.setitem(sys.modules, "wandb", None)
    with pytest.raises(ValueError, match=r"^run.wandb = True is invalid; allowed: false, or true with the wandb"):
        MetricsLogger(tmp_path, wandb={"project": "p"})


@pytest.mark.slow  # about 15 s: wandb starts its service process
def test_real_wandb_offline_mode_from_the_environment(bandit_config, tmp_path, monkeypatch):
    wandb = pytest.importorskip("wandb")
    monkeypatch.setenv("WANDB_MODE", "offline")
    monkeypatch.setenv("WANDB_SILENT", "true")
    monkeypatch.setenv("WANDB_CONFIG_DIR", str(tmp_path / "cfg"))
    train(bandit_config(tmp_path, steps=2, run={"wandb": True}))
    assert wandb.run is None  # finished
    runs = list((tmp_path / "wandb").glob("offline-run-*"))
    assert len(runs) == 1 and any(runs[0].rglob("*.wandb"))
