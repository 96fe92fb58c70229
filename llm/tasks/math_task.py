"""`math`: problems with a reference answer, read from JSONL, parquet or `datasets`, checked by math-verify.

Rows are read by `data.read_rows` (a prompt column, an answer column with format plain / gsm8k /
boxed, conversational rows, hf: sources); an eval file or a seeded split gives the test prompts,
and task.num_prompts caps the training prompts (`MathTask`). The response's final answer is the content of
its last `\\boxed{...}` (balanced braces); no box means "unparsed". Equivalence is decided by
`math_verify.verify(parse(gold), parse(boxed))` under the task's time limit (math-verify's own signal
timers are disabled so that ours governs). Outcome = the canonical answer: the first sympy form
math-verify parses from the box, else (no parse, or a number too long to print) the box text with
spaces removed.

No answer can stall or crash a run. A SIGALRM time limit cannot interrupt one long C call (a huge
integer power inside sympy) and does not exist outside the main thread, so every box is bounded
*before* any evaluation: `too_costly` rejects (status "error", reward 0) a box over 512 characters
or 24 brackets deep, a number literal over 40 digits, a binomial with large arguments (math-verify
evaluates those while parsing), and any parsed expression whose value may have more than 10^5
digits (`magnitude`: an upper bound on log10 of the size of every number it denotes, e.g. 9^{9^{9}},
(10^{5})!, (x+1)^{10^{4}}). What remains costs at most milliseconds of integer arithmetic, and any
exception of the verifier is an "error" status (`base.score`).
"""

from __future__ import annotations

import logging
import math
import re
import warnings

import numpy as np

from .base import Prompt, Score, Task, check_split, split_ids
from .data import _depth, last_boxed, prompt_key, read_rows  # noqa: F401 -- read_rows re-exported

logging.getLogger("math_verify").setLevel(logging.ERROR)  # we run our own time limit (base.time_limit)
TEMPLATE = "{problem}\nPut the final answer within \\boxed{{}}.\n"


MAX_BOX_CHARS = 512  # a final answer longer than this is not checked (status "error")
MAX_DEPTH = 24  # bracket nesting of a box
MAX_LITERAL_DIGITS = 40  # digits of one number literal
MAX_DIGITS = 1e5  # bound on the digits of any number an answer denotes (`magnitude`)
MAX_SYMBOLIC_POWER = 64  # largest exponent of a compound symbolic base such as (x+1)


def _number_size(e) -> tuple[float, float]:
    """(log10 size, |value| upper bound) of a sympy number, without printing it."""
    if e.is_Float:
        _, man, exp, bc = e._mpf_ if len(e._mpf_) == 4 else (0, 0, 0, 0)
        size = abs(exp + bc) * math.log10(2) + 1 if man else 1.0
    elif e.is_Rational:
        size = max(abs(e.p).bit_length(), e.q.bit_length()) * math.log10(2) + 1
    else:  # nan, zoo, oo
        return 1.0, math.inf
    return size, (float(abs(e)) if size < 300 else math.inf)


def magnitude(e) -> float:
    """Upper bound on log10 of the size (digits of numerator / denominator) of the numbers that
    evaluating sympy expression `e` can produce; symbols count as size 1. Rules: a number its own
    size; a^b -> size(a) * |b| (|b| bounded by 10^size(b) unless b is a number; inf when a compound
symbolic base has |b| > 64, since simplifying (x+1)^b expands b terms); n! and binomial(n, k)
    -> n log10 n; a sum / product over k in [lo, hi] -> (hi - lo + 1) * size(term); any other node ->
    sum of its arguments' sizes + 1. math.inf when a bound exceeds 10^6."""
    import sympy
    if e.is_Number:
        return _number_size(e)[0]
    if e.is_Atom:
        return 1.0
    if isinstance(e, sympy.Pow):
        b, x = e.args
        xv = _number_size(x)[1] if x.is_Number else 10.0 ** min(magnitude(x), 400)
        if xv > MAX_SYMBOLIC_POWER and not b.is_Atom and b.free_symbols:  # expanding (x+1)^n: n terms
            return math.inf
        return magnitude(b) * max(1.0, xv) + 1
    if isinstance(e, (sympy.factorial, sympy.factorial2, sympy.subfactorial, sympy.binomial, sympy.gamma)):
        n = e.args[0]
        v = _number_size(n)[1] if n.is_Number else 10.0 ** min(magnitude(n), 400)
        return v * math.log10(v + 10) + sum(magnitude(a) for a in e.args) if v < 1e6 else math.inf
    if hasattr(e, "limits"):
        count = 1.0
        for lim in e.limits:
            ends = [_number_size(x)[1] if x.is_Number else 10.0 ** min(magnitude(x), 400) for x in lim[1:]]
            count *= max(ends, default=1.0) + 1
        return count * magnitude(e.function) + 1 if count < 1e6 else math.inf
    total = 1.0 + sum(magnitude(a) for a in e.args)
    return total if total < 1e6 else math.inf


def too_costly(boxed: str, parsed=None) -> str | None:
    """Why checking this box could be unbounded (see the module docstring), or None. Without
    `parsed` only the text is examined (before math-verify parses it)."""
    if len(boxed) > MAX_BOX_CHARS:
        return f"longer than {MAX_BOX_CHARS} characters"
    if _depth(boxed) > MAX_DEPTH:
        return f"nested deeper than {MAX_DEPTH}"
    if re.search(rf"\d{{{MAX_LITERAL_DIGITS + 1}}}", boxed):
        return f"a number literal over {MAX_LITERAL_DIGITS} digits"
    if re.search(r"binom|choose", boxed) and re.search(r"\d{4}|\^|!", boxed):
        return "a binomial with large arguments"
    if parsed is not None:
        import sympy
        for e in parsed:
            if isinstance(e, sympy.Basic):
                try:
                    m = magnitude(e)
                except RecursionError:
                    m = math.inf
                if not m <= MAX_DIGITS:
                    return f"denotes numbers of more than {MAX_DIGITS:g} digits"
    return None


def _parse(text: str):
    from math_verify import parse
    return parse(f"${text}$", parsing_timeout=None)


def canonical_answer(boxed: str, parsed=None) -> str:
    """str of the parsed sympy answer, decimals made rational (0.75 -> 3/4); else (no parse, or a
    number too long for str) the box text without spaces."""
    import sympy
    parsed = _parse(boxed) if parsed is None else parsed
    if not parsed:
        return "".join(boxed.split())
    expr = parsed[0]
    try:
        if isinstance(expr, sympy.Basic) and expr.has(sympy.Float):
            expr = sympy.nsimplify(expr, rational=True)
        return str(expr)
    except ValueError:  # int -> str digit limit (sys.get_int_max_str_digits)
        return "".join(boxed.split())


def cap_ids(ids: list[int], n: int, seed: int) -> list[int]:
    """At most n of `ids` (0 or n >= len: all), chosen by a seeded permutation (a larger n keeps
    every id a smaller n chose), in ascending order."""
    if not n or n >= len(ids):
        return list(ids)
    order = np.random.default_rng([seed, 1]).permutation(len(ids))[:n]
    return sorted(ids[i] for i in order)


class MathTask(Task):
    """Problems with one reference answer each; no SFT generator, no enumerable correct set.

    Rows come from `path` (see llm.tasks.data.read_rows for the columns, answer formats and hf:
    sources). The test split is `eval_path`'s rows when given, else a seeded `test_fraction` share of
    `path`'s rows; `num_prompts` caps the training prompts (0: all; a seeded choice that does not
    touch the test split). Prompt ids: row i of `path` has id i, row j of `eval_path` id len(path) + j.
    A string prompt is shown through `template`; a conversational row (role/content messages, only
    with `chat_template`) is a llm.chat.ChatText used as given (no template)."""

    name = "math"

    def __init__(self, path, test_fraction: float = 0.25, seed: int = 0, template: str = TEMPLATE,
                 num_prompts: int = 0, *, eval_path: str = "", prompt_column: str = "problem",
                 answer_column: str = "answer", answer_format: str = "plain", chat_template: bool = False):
        cols = dict(prompt_column=prompt_column, answer_column=answer_column, answer_format=answer_format,
                    messages_ok=chat_template)
        rows = read_rows(path, **cols)
        if eval_path:
            test_rows = read_rows(eval_path, field="task.eval_path", **cols)
            for field, where, got in (("task.path", path, rows), ("task.eval_path", eval_path, test_rows)):
                if not got:
                    raise ValueError(f"{field} = {str(where)!r} is invalid; allowed: a data set with >= 1 "
                                     "row (it has 0)")
            train, test = list(range(len(rows))), list(range(len(rows), len(rows) + len(test_rows)))
            seen = {prompt_key(r["problem"]) for r in rows}
            both = sum(prompt_key(r["problem"]) in seen for r in test_rows)
            if both:
                warnings.warn(f"task.eval_path = {str(eval_path)!r}: {both} of its {len(test_rows)} problems "
                              f"are also in task.path", stacklevel=2)
            rows = rows + test_rows
        else:
            if len(rows) < 2:
                raise ValueError(f"task.path = {str(path)!r} has {len(rows)} rows; need >= 2")
            train, test = split_ids(len(rows), test_fraction, np.random.default_rng(seed))
        self._train, self._test = cap_ids(train, num_prompts, seed), test
        self._all = {i: Prompt(i, self._text(rows[i]["problem"], template), rows[i]["answer"])
                     for i in sorted(self._train + self._test)}
        self._golds: dict = {}

    @staticmethod
    def _text(problem, template: str):
        """The prompt text: the template around a string problem, a ChatText of a messages row."""
        if isinstance(problem, str):
            return template.format(problem=problem)
        from ..chat import ChatText
        return ChatText(problem)

    @classmethod
    def from_config(cls, tcfg):
        """The task of TaskConfig `tcfg`."""
        return cls(tcfg.path, tcfg.test_fraction, tcfg.seed, num_prompts=tcfg.num_prompts,
                   eval_path=tcfg.eval_path, prompt_column=tcfg.prompt_column,
                   answer_column=tcfg.answer_column, answer_format=tcfg.answer_format,
                   chat_template=tcfg.chat_template)

    def prompts(self, split: str) -> list[Prompt]:
        check_split(split)
        ids = {"train": self._train, "test": self._test}.get(split, list(self._all))
        return [self._all[i] for i in ids]

    def check(self, prompt: Prompt, response: str) -> Score:
        """Reward 1 iff the last boxed answer is equivalent to the reference (math-verify)."""
        from math_verify import verify
        boxed = last_boxed(response)
        if not boxed:
            return Score(0.0, None, "unparsed")
        if too_costly(boxed):
            return Score(0.0, None, "error")
        parsed = _parse(boxed)
        if too_costly(boxed, parsed):
            return Score(0.0, None, "error")
        ok = verify(self._gold(prompt), parsed, timeout_seconds=None)
        return Score(float(ok), canonical_answer(boxed, parsed), "correct" if ok else "wrong")

    def _gold(self, prompt: Prompt):
        """The parsed reference answer (parsed once per prompt)."""
        if prompt.id not in self._golds:
            self._golds[prompt.id] = _parse(str(prompt.answer))
        return self._golds[prompt.id]
