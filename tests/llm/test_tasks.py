"""Verifiers: correct, wrong, malformed and time-out cases for every task; data-file errors."""

import json
import time

import numpy as np
import pytest

from llm.tasks import BanditTask, Countdown, MathTask, MultiSolution, Score, last_boxed, score
from llm.tasks.multisolution import solutions


class Slow:
    """Wraps a task so that check() sleeps first: exercises the time limit of `score`."""

    def __init__(self, task, seconds=2.0):
        self.task, self.seconds = task, seconds

    def check(self, prompt, response):
        time.sleep(self.seconds)
        return self.task.check(prompt, response)


def _timeout_case(task, prompt, response):
    t0 = time.perf_counter()
    s = score(Slow(task), prompt, response, timeout_s=0.05)
    assert s == Score(0.0, None, "timeout")
    assert time.perf_counter() - t0 < 1.0  # the check was interrupted, not waited for
    assert score(task, prompt, response, timeout_s=5.0).status == "correct"


def test_multisolution():
    task = MultiSolution(num_prompts=20, difficulty=3, seed=1)
    p = next(q for q in task.prompts("all") if q.answer == (7, 4)) if any(
        q.answer == (7, 4) for q in task.prompts("all")) else task.prompts("all")[0]
    t, m = p.answer
    good = sorted(task.correct_set(p))
    # hand count: 3 digits <= m summing to t, brute force over 1000 strings
    assert len(good) == sum(1 for i in range(1000) if sum(map(int, f"{i:03d}")) == t
                            and max(map(int, f"{i:03d}")) <= m)
    assert score(task, p, good[0]) == Score(1.0, good[0], "correct")
    bad = next(f"{i:03d}" for i in range(1000) if f"{i:03d}" not in good)
    assert score(task, p, bad) == Score(0.0, bad, "wrong")
    for junk in ["12", "1234", "1a2", ""]:
        assert score(task, p, junk).status == "unparsed"
    _timeout_case(task, p, good[0])
    assert solutions(4, 2, 2) == ["22"]  # digits <= 2 summing to 4


def test_multisolution_split_and_answers():
    task = MultiSolution(num_prompts=40, difficulty=2, test_fraction=0.25, seed=0)
    train, test = task.prompts("train"), task.prompts("test")
    assert len(test) == 10 and not {p.id for p in train} & {p.id for p in test}
    rng = np.random.default_rng(0)
    p = max(train, key=lambda q: len(task.correct_set(q)))
    answers = task.answers(p, 2000, rng, wrong_share=0.25)
    wrong = np.mean([a not in task.correct_set(p) for a in answers])
    assert abs(wrong - 0.25) < 4 * np.sqrt(0.25 * 0.75 / 2000)
    with pytest.raises(ValueError, match="task.difficulty"):
        MultiSolution(difficulty=9)
    with pytest.raises(ValueError, match="task.num_prompts"):
        MultiSolution(num_prompts=10_000)


def test_countdown():
    task = Countdown(num_prompts=4, difficulty=3, seed=0)
    p = task.prompts("all")[0]
    nums, target = p.answer
    good = sorted(task.correct_set(p))
    assert good and all(score(task, p, e).status == "correct" for e in good)
    # commuted / re-associated forms share the canonical outcome
    a, b, c = nums
    assert task.check(p, f"{a}+{b}+{c}").outcome == task.check(p, f"{c}+({b}+{a})").outcome
    assert task.check(p, f"{a}*{b}-{c}").outcome == task.check(p, f"{b}*{a}-{c}").outcome
    assert task.check(p, f"{a}-{b}").status == "wrong"  # a number missing
    assert task.check(p, f"{a}+{b}+{c}+{c}").status == "wrong"  # a number used twice
    for junk in ["", "(((", f"{a}/0+{b}+{c}", "import os", "2**3", "x" * 70]:
        assert score(task, p, junk).status == "unparsed"
    _timeout_case(task, p, good[0])


def test_math(tmp_path):
    rows = [{"problem": "What is 1/2 + 1/4?", "answer": "\\frac{3}{4}"},
            {"problem": "Solve x + 1 = 3.", "answer": "2"}]
    path = tmp_path / "m.jsonl"
    path.write_text("\n".join(json.dumps(r) for r in rows) + "\n")
    task = MathTask(path, test_fraction=0.5)
    p = next(q for q in task.prompts("all") if q.answer == "\\frac{3}{4}")
    s = score(task, p, "so the sum is \\boxed{0.75}.", timeout_s=10)
    assert s.status == "correct" and s.reward == 1.0
    assert score(task, p, "\\boxed{\\dfrac{3}{4}}", 10).outcome == s.outcome  # canonical answer
    assert score(task, p, "\\boxed{1/3}", 10).status == "wrong"
    assert score(task, p, "the answer is 3/4", 10).status == "unparsed"  # no box
    assert score(task, p, "\\boxed{3/4", 10).status == "unparsed"  # unbalanced
    _timeout_case(task, p, "\\boxed{3/4}")
    assert last_boxed("a \\boxed{1} b \\boxed{\\frac{1}{2}}") == "\\frac{1}{2}"


def test_math_bad_rows(tmp_path):
    path = tmp_path / "bad.jsonl"
    path.write_text(json.dumps({"problem": "p", "answer": "1"}) + "\n{not json\n")
    with pytest.raises(ValueError, match=r"bad.jsonl' is invalid.*\(line 2: malformed JSON"):
        MathTask(path)
    path.write_text(json.dumps({"problem": "p", "answer": "1"}) + "\n" + json.dumps({"problem": "q"}))
    with pytest.raises(ValueError, match=r"bad.jsonl' is invalid.*\(line 2: field 'answer' missing"):
        MathTask(path)
    with pytest.raises(ValueError, match="task.path"):
        MathTask(tmp_path / "missing.jsonl")


def test_bandit():
    task = BanditTask(np.array([[1.0, 0.0, 1.0], [0.0, 1.0, 0.0]]))
    p = task.prompts("all")[0]
    assert score(task, p, "2") == Score(1.0, "2", "correct")
    assert score(task, p, "1") == Score(0.0, "1", "wrong")
    assert score(task, p, "7").status == "unparsed" and score(task, p, "x").status == "unparsed"
    _timeout_case(task, p, "0")


def test_math_parquet(tmp_path):
    pa = pytest.importorskip("pyarrow")  # part of the [llm] extra, so CI has it
    import pyarrow.parquet as pq
    path = tmp_path / "m.parquet"
    pq.write_table(pa.table({"problem": ["What is 2 + 2?", "And 3 * 3?"], "answer": ["4", "9"]}), path)
    task = MathTask(path, test_fraction=0.5)
    p = next(q for q in task.prompts("all") if q.answer == "9")
    assert score(task, p, "\\boxed{9}", 10).status == "correct"
    pq.write_table(pa.table({"problem": ["a", "b"], "answer": ["1", None]}), path)
    with pytest.raises(ValueError, match=r"m.parquet' is invalid.*\(row 2: field 'answer' missing or null"):
        MathTask(path)


def test_task_registry_and_optional_protocol():
    """TASKS is the registry behind make_task and the config; the optional parts are declared on Task."""
    from llm import config as C
    from llm.tasks import TASKS, Task, make_task, register_task

    assert set(TASKS) == {"multisolution", "countdown", "math", "bandit"}
    assert all(issubclass(cls, Task) for cls in TASKS.values())
    assert {n for n, cls in TASKS.items() if cls.supports_sft} == {"multisolution", "countdown", "bandit"}
    assert Task.correct_set(TASKS["math"], None) is None  # the declared default: not enumerable
    bandit = make_task(C.TaskConfig(name="bandit", num_prompts=4, num_outcomes=5))
    p = bandit.prompts("train")[0]
    assert bandit.correct_set(p) == frozenset(str(k) for k in range(5) if bandit.rewards[p.id, k] >= 1.0)

    class Echo(Task):
        name = "echo_test"

        @classmethod
        def from_config(cls, tcfg):
            return cls()

    try:
        register_task(Echo)
        cfg = C.TaskConfig(name="echo_test")
        cfg.validate()  # the config's choices derive from the registry
        assert isinstance(make_task(cfg), Echo) and make_task(cfg).correct_set(p) is None
        with pytest.raises(NotImplementedError, match="supports_sft"):
            make_task(cfg).answers(p, 1, np.random.default_rng(0))
    finally:
        TASKS.pop("echo_test", None)
    with pytest.raises(ValueError, match=r"task.name = 'echo_test' is invalid; allowed: multisolution"):
        C.TaskConfig(name="echo_test").validate()
    with pytest.raises(ValueError, match="Task subclass"):
        register_task(object)


def test_sft_refuses_a_task_without_answers(tmp_path):
    from llm import config as C
    from llm.sft import SFTConfig, sft
    cfg = C.from_dict(SFTConfig, {"task": {"name": "math", "path": str(tmp_path / "none.jsonl")},
                                  "run": {"out_dir": str(tmp_path / "o")}})
    with pytest.raises(ValueError, match=r"task.name = 'math' has no answer generator; allowed: .*"
                                         r"multisolution, countdown, bandit"):
        sft(cfg)
