"""Tasks and verifiers behind one protocol (`base.Task`), in one registry: `TASKS`.

    make_task(TaskConfig(name="countdown"))   # TASKS["countdown"].from_config(tcfg)
    register_task(MyTask)                     # a new `Task` subclass, as task.name = MyTask.name

`TASKS` maps a name to its `Task` subclass; the config's task.name choices are its keys, and the
optional parts of the protocol (`supports_sft`, `correct_set`) are read from the class.
"""

from __future__ import annotations

from .bandit import BanditTask
from .base import STATUSES, Prompt, Score, Task, VerifierTimeout, score, time_limit
from .countdown import Countdown
from .math_task import MathTask, last_boxed, read_rows
from .multisolution import MultiSolution

__all__ = ["BanditTask", "Countdown", "MathTask", "MultiSolution", "Prompt", "Score", "STATUSES",
           "TASKS", "Task", "VerifierTimeout", "last_boxed", "make_task", "read_rows", "register_task",
           "score", "time_limit"]

TASKS: dict[str, type[Task]] = {}


def register_task(cls: type[Task]) -> type[Task]:
    """Make Task subclass `cls` available as task.name = cls.name (usable as a class decorator)."""
    if not (isinstance(cls, type) and issubclass(cls, Task)) or not cls.name:
        raise ValueError(f"task = {cls!r} is invalid; allowed: a llm.tasks.Task subclass with a name")
    TASKS[cls.name] = cls
    return cls


for _cls in (MultiSolution, Countdown, MathTask, BanditTask):
    register_task(_cls)


def make_task(tcfg) -> Task:
    """The task named by TaskConfig `tcfg` (ValueError naming task.name when it is not registered);
    with tcfg.chat_template its prompts are conversations (llm.chat.chat_task, tcfg.system_prompt)."""
    if tcfg.name not in TASKS:
        raise ValueError(f"task.name = {tcfg.name!r} is invalid; allowed: {', '.join(TASKS)}")
    task = TASKS[tcfg.name].from_config(tcfg)
    if getattr(tcfg, "chat_template", False):  # prompts become conversations (llm.chat)
        from ..chat import chat_task
        chat_task(task, getattr(tcfg, "system_prompt", ""))
    return task
