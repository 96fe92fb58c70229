"""The memory LM of paper A's distribution-level calibration (docs/methods.md §2), as a logits processor.

During sampling the policy logits z become `sampling_logits(z, z_mem, mu) = z - mu * z_mem`
(collapse_lab.objective.memory); after each step the memory LM takes one SGD step on
`memory_loss` (cross-entropy) of the step's rollouts, summed over prompts with each prompt's group
averaged (the simulator's scale), so outcomes sampled often are sampled less.
The memory is a BanditLM table for BanditLM policies (the simulator's tabular memory) and a fresh
tiny Llama preset otherwise (its logits start near zero, so early sampling is nearly on-policy).
"""

from __future__ import annotations

import torch

from collapse_lab.objective import memory_loss, sampling_logits

from .dist import average_grads
from .models import BanditLM, tiny_llama
from .rollout import decode_step, sequence_logp


def logits_width(policy, tok) -> int:
    """V of the policy's logits (B, L, V): its output embedding's rows, else config.vocab_size, else
    the tokenizer's length. Checkpoints often pad the LM head beyond the tokenizer (Qwen2.5: 151936
    logits, len(tokenizer) = 151665), and the memory's logits must have the policy's width."""
    head = policy.get_output_embeddings() if hasattr(policy, "get_output_embeddings") else None
    if head is not None and getattr(head, "weight", None) is not None:
        return int(head.weight.shape[0])
    vocab = getattr(getattr(policy, "config", None), "vocab_size", None)
    return int(vocab) if vocab else tok.vocab_size


def build_memory(policy, tok, preset: str = "tiny"):
    """A fresh memory model matching the policy's logits width (`logits_width`) and dtype."""
    policy = getattr(policy, "module", policy)
    dtype = next(policy.parameters()).dtype
    if isinstance(policy, BanditLM):
        return BanditLM(*policy.table.shape, dtype=dtype)
    return tiny_llama(logits_width(policy, tok), preset, dtype=dtype, field="model.memory_preset")


class MemorySampler:
    """LogitsProcessor for HFEngine plus the memory's own training step."""

    def __init__(self, memory, spec, tok, dist, temperature: float = 1.0):
        self.memory, self.mu, self.tok, self.dist = memory, spec.mu, tok, dist
        self.temperature = temperature
        self.opt = torch.optim.SGD(memory.parameters(), lr=spec.lr)
        self._cache = self._last = None

    @torch.no_grad()
    def begin(self, input_ids, attention_mask, position_ids) -> None:
        self._last, self._cache = decode_step(self.memory, input_ids, attention_mask, position_ids)

    @torch.no_grad()
    def advance(self, next_ids, attention_mask, position_ids) -> None:
        self._last, self._cache = decode_step(self.memory, next_ids, attention_mask, position_ids, self._cache)

    def __call__(self, logits: torch.Tensor) -> torch.Tensor:
        return sampling_logits(logits, self._last.to(logits.dtype), self.mu)  # (B, V)

    def update(self, prompt_tokens, tokens, mask, group) -> float:
        """One SGD step on memory_loss of the rollouts, summed over the step's groups (group [B]: each
        prompt's memory takes the step of its own group's token-mean, as in the simulator) and over
        processes (each backpropagates loss * world; average_grads averages)."""
        self.opt.zero_grad(set_to_none=True)
        mem_logp, _ = sequence_logp(self.memory, prompt_tokens, tokens, mask, self.tok.pad_id)
        loss = memory_loss(mem_logp, mask, group.to(mem_logp.device))
        (loss * self.dist.world).backward()
        average_grads(self.memory.parameters(), self.dist)
        self.opt.step()
        self._cache = self._last = None
        return float(loss.detach())

    def state_dict(self) -> dict:
        return {"memory": self.memory.state_dict(), "opt": self.opt.state_dict()}

    def load_state_dict(self, state: dict) -> None:
        self.memory.load_state_dict(state["memory"])
        self.opt.load_state_dict(state["opt"])
