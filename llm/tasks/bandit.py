"""`bandit`: the simulator's problem as a task for BanditLM (toy-to-scale link).

Prompt i has text "p<i>"; the response is one token k in [0, K) decoded as "<k>"; reward =
rewards[i, k]; outcome = "<k>" (every outcome is its own answer). All prompts train and test.
"""

from __future__ import annotations

import numpy as np

from collapse_lab.objective import successes

from .base import DEFAULT_NUM_PROMPTS, Prompt, Score, Task, check_split


class BanditTask(Task):
    """The simulator's bandit problem for BanditLM: one token per response, reward table (P, K)."""

    name = "bandit"
    supports_sft = True

    def __init__(self, rewards):
        self.rewards = np.asarray(rewards, dtype=np.float64)  # (P, K)
        if self.rewards.ndim != 2:
            raise ValueError(f"rewards must be (P, K), got shape {self.rewards.shape}")
        self._all = [Prompt(i, f"p{i}", i) for i in range(self.rewards.shape[0])]

    @classmethod
    def random(cls, num_prompts: int, num_outcomes: int, seed: int = 0, p_correct: float = 0.3):
        """Binary rewards, each outcome correct with probability p_correct, >= 1 correct per prompt."""
        rng = np.random.default_rng(seed)
        r = (rng.random((num_prompts, num_outcomes)) < p_correct).astype(np.float64)
        r[np.arange(num_prompts), rng.integers(0, num_outcomes, num_prompts)] = 1.0
        return cls(r)

    @classmethod
    def from_config(cls, tcfg):
        """The task of TaskConfig `tcfg`."""
        return cls.random(tcfg.num_prompts or DEFAULT_NUM_PROMPTS, tcfg.num_outcomes, tcfg.seed)

    def prompts(self, split: str) -> list[Prompt]:
        check_split(split)
        return list(self._all)

    def correct_set(self, prompt: Prompt) -> frozenset[str]:
        """The outcomes k with a successful reward."""
        return frozenset(str(k) for k in np.flatnonzero(successes(self.rewards[prompt.id])))

    def check(self, prompt: Prompt, response: str) -> Score:
        try:
            k = int(response)
        except ValueError:
            return Score(0.0, None, "unparsed")
        if not 0 <= k < self.rewards.shape[1]:
            return Score(0.0, None, "unparsed")
        r = float(self.rewards[prompt.id, k])
        return Score(r, str(k), "correct" if successes(r) else "wrong")

    def answers(self, prompt: Prompt, n: int, rng, wrong_share: float = 0.0) -> list[str]:
        """n outcomes drawn uniformly from all K (the simulator's uniform start; wrong_share unused)."""
        K = self.rewards.shape[1]
        return [str(int(k)) for k in rng.integers(0, K, n)]
