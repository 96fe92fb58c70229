"""The task protocol: prompts, a reward check, and the canonical outcome of a response.

A task gives `prompts(split)` (split "train" or "test"; prompt ids are unique over both splits) and
`check(prompt, response) -> Score`. `score()` runs `check` under a time limit and never raises for a
bad response: unparseable output gets reward 0 with status "unparsed", a check past its time limit
gets reward 0 with status "timeout". The outcome string is the canonical final answer (equal answers
share it); the trainer maps it to the integer ids that IPS and the diversity metrics need.
Synthetic tasks also give `answers(prompt, n, rng, wrong_share)` (SFT data) and `correct_set(prompt)`.
"""

from __future__ import annotations

import contextlib
import signal
import threading
from dataclasses import dataclass, field
from typing import Protocol

STATUSES = ("correct", "wrong", "unparsed", "timeout")


@dataclass(frozen=True)
class Prompt:
    """One prompt: `id` unique within the task, `text` fed to the model, `answer` task data."""

    id: int
    text: str
    answer: object = field(default=None, compare=False)


@dataclass(frozen=True)
class Score:
    """reward in [0, 1]; outcome: canonical answer (None when unparsed/timed out); status in STATUSES."""

    reward: float
    outcome: str | None
    status: str


class Task(Protocol):
    name: str

    def prompts(self, split: str) -> list[Prompt]: ...

    def check(self, prompt: Prompt, response: str) -> Score: ...


class VerifierTimeout(BaseException):
    """Raised inside a check that ran past its time limit. A BaseException so that verifiers that
    catch `Exception` (math-verify does) cannot swallow it."""


@contextlib.contextmanager
def time_limit(seconds: float):
    """Raise VerifierTimeout in the block after `seconds` (SIGALRM timer; main thread on POSIX only,
    elsewhere the block runs unlimited)."""
    if threading.current_thread() is not threading.main_thread() or not hasattr(signal, "setitimer"):
        yield
        return

    def _raise(signum, frame):
        raise VerifierTimeout(f"check exceeded {seconds} s")

    old = signal.signal(signal.SIGALRM, _raise)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, old)


def score(task, prompt: Prompt, response: str, timeout_s: float = 2.0) -> Score:
    """task.check under a time limit; a time-out gives Score(0, None, 'timeout')."""
    try:
        with time_limit(timeout_s):
            return task.check(prompt, response)
    except VerifierTimeout:
        return Score(0.0, None, "timeout")


def split_ids(n: int, test_fraction: float, rng) -> tuple[list[int], list[int]]:
    """Shuffle range(n) with `rng` and cut it into (train, test); test gets round(n * fraction) >= 1."""
    order = [int(i) for i in rng.permutation(n)]
    n_test = min(n - 1, max(1, round(n * test_fraction)))
    return sorted(order[n_test:]), sorted(order[:n_test])


def check_split(split: str) -> None:
    if split not in ("train", "test", "all"):
        raise ValueError(f"split = {split!r} is invalid; allowed: train, test, all")
