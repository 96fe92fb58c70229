"""`countdown`: reach a target with the given numbers, each used exactly once, and + - * / ( ).

Prompt "3,5,7>22:" (difficulty = how many numbers, 2..4). A response is an arithmetic expression;
it is evaluated exactly (fractions). Outcome = the canonical expression: sums and products are
flattened and their operands sorted, so "(5+3)*2" and "2*(3+5)" share one outcome. Unparseable
(bad characters, syntax, division by zero, over 64 characters) gets reward 0 with status "unparsed";
a valid expression with the wrong numbers or the wrong value is "wrong".
"""

from __future__ import annotations

import ast
import itertools
from fractions import Fraction

import numpy as np

from .base import DEFAULT_NUM_PROMPTS, Prompt, Score, Task, check_split, split_ids

_OPS = {ast.Add: "+", ast.Sub: "-", ast.Mult: "*", ast.Div: "/"}
_CHARS = set("0123456789+-*/() ")


def _eval(node) -> Fraction:
    if isinstance(node, ast.Constant) and isinstance(node.value, int) and not isinstance(node.value, bool):
        return Fraction(node.value)
    if isinstance(node, ast.BinOp) and type(node.op) in _OPS:
        a, b = _eval(node.left), _eval(node.right)
        op = _OPS[type(node.op)]
        return a + b if op == "+" else a - b if op == "-" else a * b if op == "*" else a / b
    raise ValueError("unsupported expression")


def _leaves(node) -> list[int]:
    if isinstance(node, ast.Constant):
        return [node.value]
    return _leaves(node.left) + _leaves(node.right)


def _terms(node, kind: str, sign: int):
    """Flatten an additive ("+") or multiplicative ("*") chain into [(sign, subnode)]."""
    inverse = "-" if kind == "+" else "/"
    if isinstance(node, ast.BinOp) and _OPS[type(node.op)] in (kind, inverse):
        right_sign = sign if _OPS[type(node.op)] == kind else -sign
        return _terms(node.left, kind, sign) + _terms(node.right, kind, right_sign)
    return [(sign, node)]


def canonical(node) -> str:
    """Canonical string: operands of flattened + / * chains sorted, inverses marked by - and /."""
    if isinstance(node, ast.Constant):
        return str(node.value)
    kind = "+" if _OPS[type(node.op)] in "+-" else "*"
    inv = "-" if kind == "+" else "/"
    parts = sorted((kind if s > 0 else inv) + canonical(n) for s, n in _terms(node, kind, 1))
    return "(" + "".join(parts) + ")"


def parse(expr: str):
    """ast of a plain arithmetic expression, or None when it is not one."""
    if len(expr) > 64 or not expr or not set(expr) <= _CHARS:
        return None
    try:
        node = ast.parse(expr, mode="eval").body
        _eval(node)
        return node
    except (SyntaxError, ValueError, ZeroDivisionError, RecursionError):
        return None


def all_expressions(numbers) -> dict[str, tuple[str, Fraction]]:
    """{canonical: (expression, value)} over every use of all numbers once (brute force, n <= 4)."""
    out: dict[str, tuple[str, Fraction]] = {}

    def build(items):  # items: list of (text, value); combine any ordered pair until one is left
        if len(items) == 1:
            node = parse(items[0][0])
            if node is not None:
                out.setdefault(canonical(node), items[0])
            return
        for i, j in itertools.permutations(range(len(items)), 2):
            (ta, va), (tb, vb) = items[i], items[j]
            rest = [x for k, x in enumerate(items) if k not in (i, j)]
            for op in "+-*/":
                if op == "/" and vb == 0:
                    continue
                v = va + vb if op == "+" else va - vb if op == "-" else va * vb if op == "*" else va / vb
                text = f"{ta}{op}{tb}" if not rest else f"({ta}{op}{tb})"
                build(rest + [(text, v)])

    build([(str(n), Fraction(n)) for n in numbers])
    return out


class Countdown(Task):
    """An arithmetic expression of the given numbers that equals the target (many per prompt)."""

    name = "countdown"
    supports_sft = True

    def __init__(self, num_prompts: int = 64, test_fraction: float = 0.25, difficulty: int = 3,
                 seed: int = 0, max_number: int = 10):
        if not 2 <= difficulty <= 4:
            raise ValueError(f"task.difficulty = {difficulty} is invalid for countdown; allowed: 2..4")
        rng = np.random.default_rng(seed)
        self._all, self._solutions = [], {}
        while len(self._all) < num_prompts:
            nums = sorted(int(x) for x in rng.integers(1, max_number + 1, difficulty))
            exprs = all_expressions(nums)
            targets = sorted({int(v) for _, v in exprs.values() if v.denominator == 1 and 0 < v <= 99})
            target = targets[rng.integers(len(targets))]
            pid = len(self._all)
            self._all.append(Prompt(pid, f"{','.join(map(str, nums))}>{target}:", (tuple(nums), target)))
            self._solutions[pid] = sorted(e for e, v in exprs.values() if v == target)
        self._train, self._test = split_ids(num_prompts, test_fraction, rng)

    @classmethod
    def from_config(cls, tcfg):
        """The task of TaskConfig `tcfg`."""
        return cls(tcfg.num_prompts or DEFAULT_NUM_PROMPTS, tcfg.test_fraction, tcfg.difficulty, tcfg.seed)

    def prompts(self, split: str) -> list[Prompt]:
        check_split(split)
        ids = {"train": self._train, "test": self._test}.get(split, range(len(self._all)))
        return [self._all[i] for i in ids]

    def correct_set(self, prompt: Prompt) -> frozenset[str]:
        """Every canonical expression of the given numbers that equals the target."""
        return frozenset(self._solutions[prompt.id])

    def check(self, prompt: Prompt, response: str) -> Score:
        """Reward 1 iff the expression uses each given number once and equals the target."""
        node = parse(response.strip())
        if node is None:
            return Score(0.0, None, "unparsed")
        numbers, target = prompt.answer
        ok = sorted(_leaves(node)) == list(numbers) and _eval(node) == target
        return Score(float(ok), canonical(node), "correct" if ok else "wrong")

    def answers(self, prompt: Prompt, n: int, rng, wrong_share: float = 0.0) -> list[str]:
        """n SFT targets: uniform over distinct correct expressions; with probability `wrong_share`
        an expression of the same numbers with another value."""
        correct = self._solutions[prompt.id]
        wrong = [e for e, v in all_expressions(prompt.answer[0]).values() if v != prompt.answer[1]]
        pick = [wrong if (rng.random() < wrong_share and wrong) else correct for _ in range(n)]
        return [p[rng.integers(len(p))] for p in pick]
