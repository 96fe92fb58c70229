"""`math`: problems with a reference answer, read from JSONL or parquet, checked by math-verify.

Each row needs string fields `problem` and `answer`. The response's final answer is the content of
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

import json
import logging
import math
import re
import warnings
from pathlib import Path

import numpy as np

from .base import Prompt, Score, Task, check_split, split_ids

logging.getLogger("math_verify").setLevel(logging.ERROR)  # we run our own time limit (base.time_limit)
TEMPLATE = "{problem}\nPut the final answer within \\boxed{{}}.\n"


def last_boxed(text: str) -> str | None:
    """Content of the last \\boxed{...} (or \\fbox{...}) in text, braces balanced; None if absent."""
    start = max(text.rfind("\\boxed{"), text.rfind("\\fbox{"))
    if start < 0:
        return None
    i = text.index("{", start) + 1
    depth = 1
    for j in range(i, len(text)):
        depth += {"{": 1, "}": -1}.get(text[j], 0)
        if depth == 0:
            return text[i:j].strip()
    return None


MAX_BOX_CHARS = 512  # a final answer longer than this is not checked (status "error")
MAX_DEPTH = 24  # bracket nesting of a box
MAX_LITERAL_DIGITS = 40  # digits of one number literal
MAX_DIGITS = 1e5  # bound on the digits of any number an answer denotes (`magnitude`)
MAX_NESTING = 64  # JSON nesting of a data row
MAX_SYMBOLIC_POWER = 64  # largest exponent of a compound symbolic base such as (x+1)


def _depth(text: str) -> int:
    depth = top = 0
    for ch in text:
        depth += 1 if ch in "{([" else -1 if ch in "})]" else 0
        top = max(top, depth)
    return top


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


def _row_error(path, where, i, what: str) -> ValueError:
    return ValueError(f"task.path = {str(path)!r} is invalid; allowed: rows with a non-empty string "
                      f"'problem' and a non-empty string or finite number 'answer' ({where} {i}: {what})")


def _json_row(path, i: int, raw: bytes):
    try:
        line = raw.decode("utf-8")
    except UnicodeDecodeError as e:
        raise _row_error(path, "line", i, f"byte {e.start} is not UTF-8") from None
    if not line.strip():
        return None
    if _depth(re.sub(r'"(?:[^"\\]|\\.)*"', '""', line)) > MAX_NESTING:
        raise _row_error(path, "line", i, f"JSON nested deeper than {MAX_NESTING}")
    try:
        return json.loads(line)
    except (json.JSONDecodeError, RecursionError) as e:
        msg = e.msg if isinstance(e, json.JSONDecodeError) else "nested too deeply"
        raise _row_error(path, "line", i, f"malformed JSON: {msg}") from None


def _field_problem(r, key: str) -> str | None:
    """Why field `key` of row `r` is unusable, or None."""
    v = r.get(key) if isinstance(r, dict) else None
    if not isinstance(r, dict):
        return "not a JSON object"
    if key not in r or v is None:
        return f"field {key!r} missing or null"
    if isinstance(v, bool):
        return f"field {key!r} is a boolean"
    if key == "problem" and not isinstance(v, str):
        return f"field {key!r} is not a string"
    if not isinstance(v, (str, int, float)):
        return f"field {key!r} is a {type(v).__name__}, not a string or number"
    if isinstance(v, float) and not math.isfinite(v):
        return f"field {key!r} is not finite ({v!r})"
    if isinstance(v, str) and not v.strip():
        return f"field {key!r} is empty"
    return None


def read_rows(path) -> list[dict]:
    """Rows {problem, answer} of a JSONL or parquet file. A missing / unreadable file, a non-UTF-8,
    malformed or absurdly nested line, or a row whose problem is not a non-empty string or whose
    answer is null, boolean, non-finite, empty or not a string / number raises ValueError naming the
    file and row. Exact duplicate rows are dropped with a warning giving their count; the same
    problem with two different answers is an error naming both rows."""
    path = Path(path)
    if not path.is_file():
        raise ValueError(f"task.path = {str(path)!r} is invalid; allowed: an existing JSONL/parquet "
                         f"file ({'a directory' if path.is_dir() else 'no such file'})")
    if path.suffix == ".parquet":
        try:
            import pyarrow.parquet as pq
        except ImportError as e:
            raise ImportError("reading parquet needs pyarrow (pip install pyarrow)") from e
        rows = [(i + 1, r) for i, r in enumerate(pq.read_table(path).to_pylist())]
        where = "row"
    else:
        rows, where = [], "line"
        for i, raw in enumerate(path.read_bytes().splitlines(), 1):
            r = _json_row(path, i, raw)
            if r is not None:
                rows.append((i, r))
    out, seen, dups = [], {}, []
    for i, r in rows:
        for key in ("problem", "answer"):
            why = _field_problem(r, key)
            if why:
                raise _row_error(path, where, i, why)
        row = {"problem": r["problem"], "answer": str(r["answer"])}
        if row["problem"] in seen:
            j, answer = seen[row["problem"]]
            if answer != row["answer"]:
                raise _row_error(path, where, i, f"same problem as {where} {j} with another answer")
            dups.append(i)
            continue
        seen[row["problem"]] = (i, row["answer"])
        out.append(row)
    if dups:
        warnings.warn(f"task.path = {str(path)!r}: dropped {len(dups)} duplicate row(s) ({where}s "
                      f"{', '.join(map(str, dups[:10]))}{', ...' if len(dups) > 10 else ''}); "
                      f"{len(out)} distinct rows kept", stacklevel=2)
    return out


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


class MathTask(Task):
    """Problems with one reference answer each; no SFT generator, no enumerable correct set."""

    name = "math"

    def __init__(self, path, test_fraction: float = 0.25, seed: int = 0, template: str = TEMPLATE,
                 num_prompts: int = 0):
        rows = read_rows(path)
        if num_prompts:
            rows = rows[:num_prompts]
        if len(rows) < 2:
            raise ValueError(f"task.path = {str(path)!r} has {len(rows)} rows; need >= 2")
        self._all = [Prompt(i, template.format(problem=r["problem"]), r["answer"])
                     for i, r in enumerate(rows)]
        self._train, self._test = split_ids(len(rows), test_fraction, np.random.default_rng(seed))
        self._golds: dict = {}

    @classmethod
    def from_config(cls, tcfg):
        """The task of TaskConfig `tcfg`."""
        return cls(tcfg.path, tcfg.test_fraction, tcfg.seed)

    def prompts(self, split: str) -> list[Prompt]:
        check_split(split)
        ids = {"train": self._train, "test": self._test}.get(split, range(len(self._all)))
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
