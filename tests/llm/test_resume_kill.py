"""kill -9 in the middle of a run that checkpoints every step: the latest checkpoint is whole, the
log is readable, and resuming from it gives the weights and metrics of an uninterrupted run."""

import os
import signal
import subprocess
import sys
import time

import torch

from llm import config as C
from llm.checkpoint import latest_checkpoint
from llm.logger import read_metrics
from llm.train import train

STEPS = 20


def test_kill_9_then_resume_equals_uninterrupted(bandit_config, tmp_path):
    full = train(bandit_config(tmp_path / "full", "memory", steps=STEPS))
    cfg = bandit_config(tmp_path / "cut", "memory", steps=STEPS, run={"save_every": 1})
    cfg_file = C.save(cfg, tmp_path)
    proc = subprocess.Popen([sys.executable, "-m", "llm.train", "--config", str(cfg_file)],
                            env={**os.environ, "OMP_NUM_THREADS": "1"}, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline and proc.poll() is None:
            path = latest_checkpoint(tmp_path / "cut")
            if path is not None and int(path.name[5:]) >= 5:
                break
            time.sleep(0.005)
        assert proc.poll() is None, "the run ended before it could be killed"
        proc.send_signal(signal.SIGKILL)
    finally:
        proc.wait(timeout=30)
    killed_at = int(latest_checkpoint(tmp_path / "cut").name[5:])
    assert 5 <= killed_at < STEPS
    resumed = train(bandit_config(tmp_path / "cut", "memory", steps=STEPS, run={"save_every": 1, "resume": True}))
    assert torch.equal(full.model.table, resumed.model.table)
    assert torch.equal(full.memory.memory.table, resumed.memory.memory.table)
    a, b = read_metrics(tmp_path / "full"), read_metrics(tmp_path / "cut")
    assert [r["step"] for r in b] == list(range(1, STEPS + 1))
    assert [r["loss"] for r in a] == [r["loss"] for r in b]
