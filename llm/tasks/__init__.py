"""Tasks and verifiers behind one protocol (see `base`): multisolution, countdown, math, bandit."""

from __future__ import annotations

from .bandit import BanditTask
from .base import STATUSES, Prompt, Score, Task, VerifierTimeout, score, time_limit
from .countdown import Countdown
from .math_task import MathTask, last_boxed, read_rows
from .multisolution import MultiSolution

__all__ = ["BanditTask", "Countdown", "MathTask", "MultiSolution", "Prompt", "Score", "STATUSES",
           "Task", "VerifierTimeout", "last_boxed", "make_task", "read_rows", "score", "time_limit"]


def make_task(tcfg):
    """The task named by TaskConfig `tcfg`."""
    if tcfg.name == "multisolution":
        return MultiSolution(tcfg.num_prompts, tcfg.test_fraction, tcfg.difficulty, tcfg.seed)
    if tcfg.name == "countdown":
        return Countdown(tcfg.num_prompts, tcfg.test_fraction, tcfg.difficulty, tcfg.seed)
    if tcfg.name == "math":
        return MathTask(tcfg.path, tcfg.test_fraction, tcfg.seed)
    if tcfg.name == "bandit":
        return BanditTask.random(tcfg.num_prompts, tcfg.num_outcomes, tcfg.seed)
    raise ValueError(f"task.name = {tcfg.name!r} is invalid; allowed: multisolution, countdown, math, bandit")
