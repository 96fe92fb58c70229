"""No model output can crash or stall a run: every verifier, fuzzed with random LaTeX, huge exponents,
deep nesting, random unicode and bytes, returns a Score with a status of STATUSES, never raises, and
returns within its time limit (wall time measured; SLACK covers signal delivery on a loaded machine)."""

import json
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from llm.tasks import STATUSES, BanditTask, Countdown, MathTask, MultiSolution, Score, score

LIMIT_S = 2.0  # the time limit given to score() (the default of task.timeout_s)
SLACK_S = 2.0  # a check is interrupted at LIMIT_S; returning may take longer on a loaded machine
SURE_S = 30.0  # the limit where a test asserts a specific status (never reached when things work)
FUZZ = settings(deadline=None, max_examples=25, suppress_health_check=list(HealthCheck),
                derandomize=True)


@pytest.fixture(scope="module")
def math_task(tmp_path_factory):
    path = tmp_path_factory.mktemp("math") / "m.jsonl"
    path.write_text("\n".join(json.dumps(r) for r in [{"problem": "p", "answer": "\\frac{3}{4}"},
                                                       {"problem": "q", "answer": "2^{10}"}]))
    task = MathTask(path)
    score(task, task.prompts("all")[0], boxed("0.75"), SURE_S)  # imports math-verify (seconds)
    return task


def synthetic_tasks():
    return [MultiSolution(num_prompts=8, difficulty=3), Countdown(num_prompts=2, difficulty=3),
            BanditTask(np.array([[1.0, 0.0, 1.0], [0.0, 1.0, 0.0]]))]


def bounded_score(task, prompt, response, limit_s=LIMIT_S) -> Score:
    t0 = time.perf_counter()
    s = score(task, prompt, response, limit_s)
    elapsed = time.perf_counter() - t0
    assert elapsed < limit_s + SLACK_S, f"{response[:80]!r} took {elapsed:.2f} s"
    assert isinstance(s, Score) and s.status in STATUSES and 0.0 <= s.reward <= 1.0
    assert (s.outcome is None) == (s.status in ("unparsed", "timeout", "error"))
    return s


# ------------------------------------------------------------------ strategies -----------------------
NUMBERS = st.one_of(st.integers(-10**3, 10**3).map(str), st.integers(0, 10**60).map(str),
                    st.floats(allow_nan=True, allow_infinity=True).map(repr),
                    st.sampled_from(["0", "2.0", "0.5", "1e5000", ".", "-", "\\pi", "e", "x", "\\infty"]))


def _latex(children):
    a, b = children, children
    return st.one_of(
        st.tuples(a, b).map(lambda t: f"\\frac{{{t[0]}}}{{{t[1]}}}"),
        st.tuples(a, b).map(lambda t: f"{t[0]}^{{{t[1]}}}"),
        st.tuples(a, b).map(lambda t: f"{t[0]} \\times {t[1]}"),
        st.tuples(a, b, st.sampled_from("+-*/=,")).map(lambda t: f"{t[0]}{t[2]}{t[1]}"),
        st.tuples(a, b).map(lambda t: f"\\binom{{{t[0]}}}{{{t[1]}}}"),
        st.tuples(a, b).map(lambda t: f"\\sum_{{k=1}}^{{{t[0]}}} {t[1]}"),
        st.tuples(a, b).map(lambda t: f"\\int_0^{{{t[0]}}} {t[1]} dx"),
        a.map(lambda x: f"\\sqrt{{{x}}}"), a.map(lambda x: f"({x})!"), a.map(lambda x: f"{x}!"),
        a.map(lambda x: f"\\left( {x} \\right)"), a.map(lambda x: f"\\log {x}"),
        a.map(lambda x: f"\\sin({x})"), a.map(lambda x: f"\\{{{x}\\}}"),
        st.tuples(a, st.sampled_from(["{", "}", "^", "_", "\\", "\\frac", "$", "&", "\\\\"])).map("".join),
    )


LATEX = st.recursive(NUMBERS, _latex, max_leaves=8)
HUGE_POWER = st.tuples(st.sampled_from(["2", "2.0", "0.5", "10", "1.0 \\times 10", "9", "x", "(x+1)"]),
                       st.integers(0, 10**30), st.sampled_from(["^{%d}", "^{%d!}", "^{9^{%d}}", "^{-%d}"])
                       ).map(lambda t: t[0] + t[2] % t[1])
NESTED = st.tuples(st.integers(1, 3000), st.sampled_from(["{", "\\frac{1}{", "2^{", "(", "\\sqrt{", "[", "-"])
                   ).map(lambda t: t[1] * t[0] + "1" + {"{": "}", "(": ")", "[": "]"}.get(t[1][-1], "}") * t[0])
UNICODE = st.text(st.characters(exclude_categories=()), max_size=300)  # includes lone surrogates
BYTES = st.binary(max_size=300).map(lambda b: b.decode("utf-8", "replace") + b.decode("latin-1"))


def boxed(s: str) -> str:
    return f"The answer is \\boxed{{{s}}}."


# ------------------------------------------------------------------ math ----------------------------
@FUZZ
@given(body=LATEX, which=st.integers(0, 1))
def test_math_random_latex(math_task, body, which):
    bounded_score(math_task, math_task.prompts("all")[which], boxed(body))


@FUZZ
@given(body=HUGE_POWER)
def test_math_huge_exponents(math_task, body):
    bounded_score(math_task, math_task.prompts("all")[0], boxed(body))


@settings(deadline=None, max_examples=15, derandomize=True)
@given(body=NESTED)
def test_math_deep_nesting(math_task, body):
    bounded_score(math_task, math_task.prompts("all")[0], boxed(body))


@FUZZ
@given(text=st.one_of(UNICODE, BYTES, UNICODE.map(boxed), BYTES.map(boxed)))
def test_math_random_text(math_task, text):
    bounded_score(math_task, math_task.prompts("all")[1], text)


@pytest.mark.parametrize("body, status", [
    ("2.0^{20000}", "wrong"), ("1.0 \\times 10^{5000}", "wrong"), ("0.5^{20000}", "wrong"),
    ("2^{20000}", "wrong"),  # large but cheap: checked, outcome = the box text when str() cannot print it
    ("9^{9^{9}}", "error"), ("2^{2^{100}}", "error"), ("(10^{5})!", "error"), ("10^{100000}", "error"),
    ("((2^{999})^{999})^{999}", "error"), ("(x+1)^{10000}", "error"), ("\\binom{10^{6}}{500000}", "error"),
    ("\\sum_{k=1}^{10^{7}} k!", "error"), ("1" * 41, "error"), ("{" * 30 + "1" + "}" * 30, "error"),
    ("0.75", "correct"), ("\\frac{6}{8}", "correct"), ("1000!", "wrong"), ("2^{10}", "wrong"),
])
def test_math_issue_examples(math_task, body, status):
    """The issue's three crashing answers are now checked (outcome = the box text without spaces);
    answers whose evaluation could be unbounded are refused before math-verify sees them."""
    t0 = time.perf_counter()
    s = bounded_score(math_task, math_task.prompts("all")[0], boxed(body), SURE_S)
    assert s.status == status
    if status == "error":  # refused before any evaluation
        assert time.perf_counter() - t0 < 1.0
    if body == "2.0^{20000}":
        assert s.outcome == "2.0^{20000}"


# ------------------------------------------------------------------ synthetic tasks -----------------
@settings(deadline=None, max_examples=150, derandomize=True)
@given(text=st.one_of(UNICODE, BYTES, LATEX, NESTED, HUGE_POWER,
                      st.integers(1, 6000).map(lambda n: "9" * n), st.from_regex(r"[0-9+\-*/() ]{0,80}")))
def test_synthetic_verifiers(text):
    for task in synthetic_tasks():
        for p in task.prompts("all")[:2]:
            bounded_score(task, p, text)


# ------------------------------------------------------------------ score() itself ------------------
class Raising:
    def __init__(self, exc):
        self.exc = exc

    def check(self, prompt, response):
        raise self.exc


class Returning:
    def __init__(self, result):
        self.result = result

    def check(self, prompt, response):
        return self.result


@pytest.mark.parametrize("task", [
    Raising(ValueError("Exceeds the limit (4300 digits)")), Raising(RecursionError()), Raising(MemoryError()),
    Raising(OverflowError()), Raising(ZeroDivisionError()), Raising(KeyError("x")),
    Returning(Score(float("nan"), "1", "correct")), Returning(Score(2.0, "1", "correct")),
    Returning(Score(1.0, "1", "bogus")), Returning(None), Returning(Score(1.0, 5, "correct")),
])
def test_any_failure_of_a_check_is_status_error(task):
    assert bounded_score(task, None, "x") == Score(0.0, None, "error")


def test_statuses():
    assert STATUSES[:4] == ("correct", "wrong", "unparsed", "timeout") and "error" in STATUSES


class Spin:
    """A verifier stuck in a Python loop (interruptible by SIGALRM, abandoned by the watchdog) until
    `release` is set (so that no abandoned thread outlives its test)."""

    release = threading.Event()

    def check(self, prompt, response):
        while not self.release.is_set():
            pass


def test_time_limit_in_main_thread_and_in_worker_threads(math_task):
    t0 = time.perf_counter()
    assert score(Spin(), None, "x", 0.2) == Score(0.0, None, "timeout")
    assert time.perf_counter() - t0 < 0.2 + SLACK_S
    assert threading.current_thread() is threading.main_thread()

    def worker(response):  # no SIGALRM outside the main thread: the watchdog bounds the wait
        t = time.perf_counter()
        s = score(Spin() if response == "spin" else math_task, math_task.prompts("all")[0], response, 0.5)
        return s, time.perf_counter() - t

    try:
        with ThreadPoolExecutor(2) as pool:
            results = list(pool.map(worker, ["spin", boxed("9^{9^{9}}"), boxed("0.75")]))
    finally:
        Spin.release.set()
    assert [s.status for s, _ in results] in (["timeout", "error", "correct"],  # a loaded machine may
                                              ["timeout", "error", "timeout"]), results  # time out 0.75
    assert all(dt < 0.5 + SLACK_S for _, dt in results), results


def test_bad_time_limit_is_a_config_error():
    for bad in (float("inf"), float("nan"), 0.0, -1.0, 1e300, 1e-300):
        with pytest.raises(ValueError, match="task.timeout_s"):
            score(Spin(), None, "x", bad)
