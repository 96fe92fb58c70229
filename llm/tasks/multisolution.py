"""`multisolution`: a synthetic task with many correct answers per prompt.

Prompt "t:m=" asks for a string of d digits, each at most m, whose digits sum to t (d = task.difficulty,
1..5). The number of correct answers ranges from 1 (t = 0 or t = d m) to hundreds, so a policy can
cover many modes or collapse onto a few. Outcome = the digit string itself (every string is its own
canonical answer). A response that is not exactly d digits is unparsed.
"""

from __future__ import annotations

import itertools

import numpy as np

from .base import DEFAULT_NUM_PROMPTS, Prompt, Score, Task, check_split, split_ids


def solutions(t: int, m: int, d: int) -> list[str]:
    """All d-digit strings with digits <= m summing to t (lexicographic)."""
    return ["".join(map(str, c)) for c in itertools.product(range(m + 1), repeat=d) if sum(c) == t]


class MultiSolution(Task):
    """d digits, each <= m, summing to t: up to hundreds of correct answers per prompt."""

    name = "multisolution"
    supports_sft = True

    def __init__(self, num_prompts: int = 64, test_fraction: float = 0.25, difficulty: int = 3,
                 seed: int = 0):
        if not 1 <= difficulty <= 5:
            raise ValueError(f"task.difficulty = {difficulty} is invalid for multisolution; allowed: 1..5")
        self.d = difficulty
        pairs = [(t, m) for m in range(1, 10) for t in range(difficulty * m + 1)]
        if num_prompts > len(pairs):
            raise ValueError(f"task.num_prompts = {num_prompts} is invalid; multisolution with "
                             f"difficulty {difficulty} has {len(pairs)} prompts")
        rng = np.random.default_rng(seed)
        chosen = [pairs[i] for i in sorted(rng.choice(len(pairs), num_prompts, replace=False))]
        self._all = [Prompt(i, f"{t}:{m}=", (t, m)) for i, (t, m) in enumerate(chosen)]
        self._train, self._test = split_ids(num_prompts, test_fraction, rng)
        self._solutions: dict[int, list[str]] = {}

    @classmethod
    def from_config(cls, tcfg):
        """The task of TaskConfig `tcfg`."""
        return cls(tcfg.num_prompts or DEFAULT_NUM_PROMPTS, tcfg.test_fraction, tcfg.difficulty, tcfg.seed)

    def prompts(self, split: str) -> list[Prompt]:
        check_split(split)
        ids = {"train": self._train, "test": self._test}.get(split, range(len(self._all)))
        return [self._all[i] for i in ids]

    def _correct(self, prompt: Prompt) -> list[str]:
        """The correct answers in lexicographic order (cached; the order SFT sampling uses)."""
        if prompt.id not in self._solutions:
            self._solutions[prompt.id] = solutions(*prompt.answer, self.d)
        return self._solutions[prompt.id]

    def correct_set(self, prompt: Prompt) -> frozenset[str]:
        """Every d-digit string with digits <= m summing to t."""
        return frozenset(self._correct(prompt))

    def check(self, prompt: Prompt, response: str) -> Score:
        """Reward 1 iff the response is d digits, each <= m, summing to t."""
        s = response.strip()
        if len(s) != self.d or not all(c in "0123456789" for c in s):
            return Score(0.0, None, "unparsed")
        t, m = prompt.answer
        ok = sum(map(int, s)) == t and max(map(int, s)) <= m
        return Score(float(ok), s, "correct" if ok else "wrong")

    def answers(self, prompt: Prompt, n: int, rng, wrong_share: float = 0.0) -> list[str]:
        """n SFT targets: uniformly drawn correct answers, each replaced with probability
        `wrong_share` by a uniformly drawn wrong d-digit string."""
        correct = self._correct(prompt)
        out = []
        for _ in range(n):
            if rng.random() < wrong_share:
                while (s := "".join(map(str, rng.integers(0, 10, self.d)))) in correct:
                    pass
                out.append(s)
            else:
                out.append(correct[rng.integers(len(correct))])
        return out
