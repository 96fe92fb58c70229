"""The task protocol: prompts, a reward check, and the canonical outcome of a response.

A task gives `prompts(split)` (split "train" or "test"; prompt ids are unique over both splits) and
`check(prompt, response) -> Score`. `score()` runs `check` under a time limit and never raises for a
bad response: unparseable output gets reward 0 with status "unparsed", a check past its time limit
gets reward 0 with status "timeout", and any other failure while checking (an exception of the
verifier: parse error, overflow, recursion, memory; or a malformed Score) gets reward 0 with status
"error". The trainer counts every status of STATUSES per step. The outcome string is the canonical
final answer (equal answers share it); the trainer maps it to the integer ids that IPS and the
diversity metrics need.
Tasks subclass `Task`, which declares the optional parts of the protocol with their defaults
(`supports_sft` / `answers` for SFT data, `correct_set` for the exact correct-answer set).
"""

from __future__ import annotations

import contextlib
import math
import signal
import threading
from dataclasses import dataclass, field

STATUSES = ("correct", "wrong", "unparsed", "timeout", "error")
DEFAULT_NUM_PROMPTS = 64  # prompts of a synthetic task when task.num_prompts = 0


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


class Task:
    """The task protocol; every task subclasses it and is registered in `llm.tasks.TASKS`.

    Required: `name`; `from_config(tcfg)` (classmethod: the task of an llm.config.TaskConfig);
    `prompts(split) -> list[Prompt]` (split "train", "test" or "all");
    `check(prompt, response) -> Score` (run through `score`, which bounds its time and failures).
    Optional, declared here with their defaults:
    - `supports_sft: bool` (False): `answers` generates SFT targets; `llm.sft` refuses other tasks.
    - `answers(prompt, n, rng, wrong_share=0.0) -> list[str]`: n SFT target responses, correct ones
      drawn uniformly from the correct set, each replaced with probability `wrong_share` by a wrong
      one (numpy Generator `rng`). Default: NotImplementedError.
    - `correct_set(prompt) -> frozenset[str] | None`: every canonical correct outcome of the prompt
      (the outcome strings `check` gives with reward 1), or None when the task cannot enumerate them
      (math). Default: None.
    """

    name: str = ""
    supports_sft: bool = False

    @classmethod
    def from_config(cls, tcfg) -> Task:
        raise NotImplementedError(f"task {cls.name!r} must define the classmethod from_config(tcfg)")

    def prompts(self, split: str) -> list[Prompt]:
        raise NotImplementedError(f"task {self.name!r} must define prompts(split)")

    def check(self, prompt: Prompt, response: str) -> Score:
        raise NotImplementedError(f"task {self.name!r} must define check(prompt, response)")

    def answers(self, prompt: Prompt, n: int, rng, wrong_share: float = 0.0) -> list[str]:
        raise NotImplementedError(f"task {self.name!r} has no answer generator (supports_sft = False)")

    def correct_set(self, prompt: Prompt) -> frozenset[str] | None:
        return None


class VerifierTimeout(BaseException):
    """Raised inside a check that ran past its time limit. A BaseException so that verifiers that
    catch `Exception` (math-verify does) cannot swallow it."""


TIMEOUT_RANGE = (1e-3, 3600.0)  # seconds; setitimer(0) would mean "no limit", inf overflows it


def _check_seconds(seconds: float) -> None:
    lo, hi = TIMEOUT_RANGE
    if not (isinstance(seconds, (int, float)) and lo <= seconds <= hi):  # False for nan
        raise ValueError(f"task.timeout_s = {seconds!r} is invalid; allowed: [{lo:g}, {hi:g}] seconds")


def signal_timer_available() -> bool:
    """SIGALRM timers exist (POSIX) and can be set from this thread (only the main thread)."""
    return threading.current_thread() is threading.main_thread() and hasattr(signal, "setitimer")


@contextlib.contextmanager
def time_limit(seconds: float):
    """Raise VerifierTimeout in the block after `seconds` (SIGALRM timer; main thread on POSIX only,
    elsewhere the block runs unlimited: `score` then uses a watchdog thread instead).
    The signal handler runs between Python bytecodes, so one long C call (a huge integer power)
    is not interrupted: verifiers bound such work before doing it (math_task.too_costly)."""
    _check_seconds(seconds)
    if not signal_timer_available():
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


def _checked(task, prompt: Prompt, response) -> Score:
    """task.check, with every exception of the check and any malformed result mapped to
    Score(0, None, 'error'); a reward must be a finite number in [0, 1], the status in STATUSES."""
    try:
        if not isinstance(response, str):
            return Score(0.0, None, "error")
        s = task.check(prompt, response)
        r = float(s.reward)
        ok = (math.isfinite(r) and 0.0 <= r <= 1.0 and s.status in STATUSES
              and (s.outcome is None or isinstance(s.outcome, str)))
        return Score(r, s.outcome, s.status) if ok else Score(0.0, None, "error")
    except VerifierTimeout:
        raise
    except Exception:  # noqa: BLE001 -- any failure on one response costs that response only
        return Score(0.0, None, "error")


def _score_watchdog(task, prompt: Prompt, response, timeout_s: float) -> Score:
    """Outside the main thread (no SIGALRM): run the check in a daemon worker thread and wait at most
    timeout_s; a check still running is abandoned (it finishes in the background, its result is
    dropped) and the response gets 'timeout'."""
    box: list = []
    worker = threading.Thread(target=lambda: box.append(_checked(task, prompt, response)), daemon=True)
    worker.start()
    worker.join(timeout_s)
    return box[0] if box else Score(0.0, None, "timeout")


def score(task, prompt: Prompt, response: str, timeout_s: float = 2.0) -> Score:
    """task.check under a time limit; never raises for any response. A time-out gives
    Score(0, None, 'timeout'), any other failure Score(0, None, 'error'). In the main thread the
    limit is a SIGALRM timer; in other threads a watchdog thread (see `_score_watchdog`)."""
    _check_seconds(timeout_s)  # a config error (validated in TaskConfig), not a model output
    if not signal_timer_available():
        return _score_watchdog(task, prompt, response, timeout_s)
    try:
        with time_limit(timeout_s):
            return _checked(task, prompt, response)
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
