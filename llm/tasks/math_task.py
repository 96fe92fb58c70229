"""`math`: problems with a reference answer, read from JSONL or parquet, checked by math-verify.

Each row needs string fields `problem` and `answer`. The response's final answer is the content of
its last `\\boxed{...}` (balanced braces); no box means "unparsed". Equivalence is decided by
`math_verify.verify(parse(gold), parse(boxed))` under the task's time limit (math-verify's own signal
timers are disabled so that ours governs). Outcome = the canonical answer: the first sympy form
math-verify parses from the box, else the box text with spaces removed.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path

import numpy as np

from .base import Prompt, Score, check_split, split_ids

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


def read_rows(path) -> list[dict]:
    """Rows of a JSONL or parquet file; a malformed row raises ValueError naming file and line."""
    path = Path(path)
    if not path.exists():
        raise ValueError(f"task.path = {str(path)!r} does not exist")
    if path.suffix == ".parquet":
        try:
            import pyarrow.parquet as pq
        except ImportError as e:
            raise ImportError("reading parquet needs pyarrow (pip install pyarrow)") from e
        rows = [(i + 1, r) for i, r in enumerate(pq.read_table(path).to_pylist())]
        where = "row"
    else:
        rows, where = [], "line"
        for i, line in enumerate(path.read_text().splitlines(), 1):
            if not line.strip():
                continue
            try:
                rows.append((i, json.loads(line)))
            except json.JSONDecodeError as e:
                raise ValueError(f"{path}:{i}: malformed JSON ({e.msg})") from None
    for i, r in rows:
        for key in ("problem", "answer"):
            if not isinstance(r, dict) or not isinstance(r.get(key), (str, int, float)):
                raise ValueError(f"{path}: {where} {i}: field {key!r} missing or not a string")
    return [{"problem": str(r["problem"]), "answer": str(r["answer"])} for _, r in rows]


def _parse(text: str):
    from math_verify import parse
    return parse(f"${text}$", parsing_timeout=None)


def canonical_answer(boxed: str) -> str:
    """str of the parsed sympy answer, decimals made rational (0.75 -> 3/4); else the box text."""
    import sympy
    parsed = _parse(boxed)
    if not parsed:
        return "".join(boxed.split())
    expr = parsed[0]
    if isinstance(expr, sympy.Basic) and expr.has(sympy.Float):
        expr = sympy.nsimplify(expr, rational=True)
    return str(expr)


class MathTask:
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
        ok = verify(_parse(str(prompt.answer)), _parse(boxed), timeout_seconds=None)
        return Score(float(ok), canonical_answer(boxed), "correct" if ok else "wrong")
