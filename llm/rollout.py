"""Rollout engines and per-token log-probs.

An engine turns prompts into sampled responses with the log-probs of the sampled tokens under the
*sampling* distribution (temperature, top-p and an optional logits processor applied) — the
behaviour policy's `old_logp` of METHODS §4. `ENGINES` maps a name to a factory; a vLLM engine plugs
in with `register_engine("vllm", factory)` and the same `generate` signature.

Determinism: prompt j's G samples draw their Gumbel noise from their own generator seeded with
`seeds[j]`, so a prompt's samples do not depend on which other prompts share the batch or the
process (the DDP run equals the single-process run).
"""

from __future__ import annotations

import inspect
from dataclasses import dataclass
from typing import Protocol

import torch
import torch.nn.functional as F


@dataclass
class Rollouts:
    """G samples per prompt, prompt-major (rows j*G .. j*G+G-1 belong to prompt j).

    prompt_tokens: list of B token lists; tokens: (B, T) response ids (pad after the end);
    mask: (B, T) 1.0 on response tokens (EOS included); logp: (B, T) sampling log-probs (0 off mask).
    """

    prompt_tokens: list
    tokens: torch.Tensor
    mask: torch.Tensor
    logp: torch.Tensor


class LogitsProcessor(Protocol):
    """Stateful processor run alongside the policy (e.g. the memory LM of paper A)."""

    def begin(self, input_ids, attention_mask, position_ids) -> None: ...

    def advance(self, next_ids, attention_mask, position_ids) -> None: ...

    def __call__(self, logits: torch.Tensor) -> torch.Tensor: ...


def encode_prompt(tok, text: str) -> list[int]:
    """Prompt ids: BOS (when the tokenizer has one) + encode(text)."""
    ids = tok.encode(text)
    return ([tok.bos_id] if tok.bos_id is not None else []) + ids


def pad_left(seqs: list[list[int]], pad_id: int, device=None):
    """(ids (B, L), attention_mask (B, L), position_ids (B, L)) for left-padded sequences."""
    L = max(len(s) for s in seqs)
    ids = torch.full((len(seqs), L), pad_id, dtype=torch.long)
    attn = torch.zeros((len(seqs), L), dtype=torch.long)
    for i, s in enumerate(seqs):
        if s:
            ids[i, L - len(s):] = torch.tensor(s)
            attn[i, L - len(s):] = 1
    pos = (attn.cumsum(-1) - 1).clamp_min(0)
    return ids.to(device), attn.to(device), pos.to(device)


def top_p_filter(logp: torch.Tensor, top_p: float) -> torch.Tensor:
    """Renormalised log-probs keeping the smallest set of tokens with mass >= top_p (others -inf)."""
    if top_p >= 1.0:
        return logp
    sorted_lp, idx = logp.sort(-1, descending=True)
    cum = sorted_lp.exp().cumsum(-1)
    drop_sorted = (cum - sorted_lp.exp()) >= top_p  # mass before this token already reaches top_p
    drop = torch.zeros_like(drop_sorted).scatter(-1, idx, drop_sorted)
    return torch.log_softmax(logp.masked_fill(drop, float("-inf")), -1)


def gumbel_noise(generators, group_size: int, vocab: int, device) -> torch.Tensor:
    """(B, V) Gumbel(0, 1) noise, rows of prompt j drawn from generators[j] (float64, then cast)."""
    rows = [torch.rand(group_size, vocab, generator=g, dtype=torch.float64) for g in generators]
    u = torch.cat(rows).clamp(1e-300, 1.0 - 1e-16)
    return (-torch.log(-torch.log(u))).to(device)


def cache_keyword(model) -> str:
    """The KV-cache keyword of `model.forward` (and attribute of its output): 'cache' for
    transformers >= 5.x causal LMs (whose 'past_key_values' is deprecated, removed in 5.40), else
    'past_key_values' (BanditLM, older transformers)."""
    forward = getattr(model, "module", model).forward
    return "cache" if "cache" in inspect.signature(forward).parameters else "past_key_values"


def decode_step(model, input_ids, attention_mask, position_ids, cache=None):
    """One forward with a KV cache: (last-position logits (B, V), the updated cache). `cache` None
    starts a new one (prefill); the cache is passed under the keyword the model declares."""
    key = cache_keyword(model)
    kw = {key: cache} if cache is not None else {}
    out = model(input_ids=input_ids, attention_mask=attention_mask, position_ids=position_ids,
                use_cache=True, **kw)
    return out.logits[:, -1], getattr(out, key)


class HFEngine:
    """Batched sampling from any HF-style causal LM with a KV cache (manual decode loop)."""

    def __init__(self, model, tok):
        self.model, self.tok = model, tok

    @torch.no_grad()
    def generate(self, prompts: list[list[int]], group_size: int, seeds: list[int], max_new_tokens: int,
                 temperature: float = 1.0, top_p: float = 1.0, processor=None) -> Rollouts:
        model = getattr(self.model, "module", self.model)
        device = next(model.parameters()).device
        rows = [p for p in prompts for _ in range(group_size)]
        gens = [torch.Generator().manual_seed(int(s)) for s in seeds]
        ids, attn, pos = pad_left(rows, self.tok.pad_id, device)
        B = len(rows)
        logits, cache = decode_step(model, ids, attn, pos)
        if processor is not None:
            processor.begin(ids, attn, pos)
        tokens, logps, masks = [], [], []
        alive = torch.ones(B, dtype=torch.bool, device=device)
        for _ in range(max_new_tokens):
            z = logits.float() if logits.dtype in (torch.float16, torch.bfloat16) else logits
            if processor is not None:
                z = processor(z)
            lp = top_p_filter(torch.log_softmax(z / temperature, -1), top_p)  # (B, V)
            nxt = (lp + gumbel_noise(gens, group_size, lp.shape[-1], device).to(lp.dtype)).argmax(-1)
            tokens.append(torch.where(alive, nxt, torch.full_like(nxt, self.tok.pad_id)))
            logps.append(torch.where(alive, lp.gather(-1, nxt[:, None])[:, 0], torch.zeros_like(lp[:, 0])))
            masks.append(alive.to(lp.dtype))
            if self.tok.eos_id is not None:
                alive = alive & (nxt != self.tok.eos_id)
            if not alive.any():
                break
            attn = torch.cat([attn, torch.ones_like(attn[:, :1])], -1)
            pos = pos[:, -1:] + 1
            step = tokens[-1][:, None]
            logits, cache = decode_step(model, step, attn, pos, cache)
            if processor is not None:
                processor.advance(step, attn, pos)
        return Rollouts(rows, torch.stack(tokens, 1), torch.stack(masks, 1), torch.stack(logps, 1))


ENGINES = {"hf": HFEngine}


def register_engine(name: str, factory) -> None:
    """Make `factory(model, tok)` available as rollout.engine = name."""
    ENGINES[name] = factory


def make_engine(name: str, model, tok):
    if name not in ENGINES:
        hint = " (install vllm and register_engine('vllm', ...))" if name == "vllm" else ""
        raise ValueError(f"rollout.engine = {name!r} is not available{hint}; allowed: {', '.join(ENGINES)}")
    return ENGINES[name](model, tok)


def sequence_logp(model, prompt_tokens: list[list[int]], tokens, mask, pad_id: int,
                  temperature: float = 1.0, with_entropy: bool = False):
    """Per-token log-probs (B, T) of `tokens` given their prompts, log_softmax(z / temperature),
    and the token entropy (B, T) of that distribution when asked (else None). Gradients flow.
    Half-precision logits are upcast to float32 first."""
    ids, attn, pos = pad_left(prompt_tokens, pad_id, tokens.device)
    L, T = ids.shape[1], tokens.shape[1]
    full = torch.cat([ids, tokens], 1)
    fattn = torch.cat([attn, mask.to(attn.dtype)], 1)
    fpos = torch.cat([pos, pos[:, -1:] + torch.arange(1, T + 1, device=ids.device)], 1)
    logits = model(input_ids=full, attention_mask=fattn, position_ids=fpos).logits[:, L - 1:L + T - 1]
    if logits.dtype in (torch.float16, torch.bfloat16):  # log-probs in float32 for half models
        logits = logits.float()
    lp = F.log_softmax(logits / temperature, -1)  # (B, T, V)
    logp = lp.gather(-1, tokens[..., None])[..., 0] * mask
    ent = -(lp.exp() * lp).nan_to_num().sum(-1) * mask if with_entropy else None
    return logp, ent
