"""Rollout engines and per-token log-probs.

An engine turns prompts into sampled responses with the log-probs of the sampled tokens under the
*sampling* distribution (temperature, top-p and an optional logits processor applied) — the
behaviour policy's `old_logp` of docs/methods.md §4. `ENGINES` maps a name to a factory: "hf" (below) and
"vllm" (llm/vllm_engine.py, imported on first use); more plug in with `register_engine(name, factory)`
and the same `generate` signature.

Cost (HFEngine): each prompt is prefilled once and its KV cache repeated to its G rows; a response
of T tokens costs 1 prefill + T - 1 one-token decode forwards (none after the last token); sampling
draws one uniform per row and token (inverse CDF), not a noise vector over the vocabulary.

Determinism: prompt j's G rows draw their uniforms, a (G, max_new_tokens) float64 block, from their
own CPU generator seeded with `seeds[j]`, so a prompt's samples depend neither on which other
prompts share the batch or the process (the DDP run equals the single-process run) nor on the
device or thread count (up to logits that differ in the last bits at a CDF boundary). For the same
reason `generate_chunks`, which splits a large batch into calls of at most `max_rows` rows, returns the
rows of one call.

Stopping: a row ends at the first token of `stop_ids(tok, model)`: the tokenizer's EOS and every EOS
id of the model's generation config (an int or a list: Qwen's chat models list <|im_end|> and
<|endoftext|>). The stop token is part of the response (mask 1).
"""

from __future__ import annotations

import functools
import inspect
import itertools
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
    """Prompt ids: BOS (when the tokenizer has one) + encode(text); a conversation (llm.chat.ChatText,
    task.chat_template) is rendered by the tokenizer's chat template instead (llm.chat.encode_chat)."""
    if hasattr(text, "messages"):
        from .chat import encode_chat
        return encode_chat(tok, text)
    ids = tok.encode(text)
    return ([tok.bos_id] if tok.bos_id is not None else []) + ids


def stop_ids(tok, model=None) -> tuple[int, ...]:
    """Sorted token ids that end a response: `tok.eos_id` (when not None) and every id of
    `model.generation_config.eos_token_id` (None, an int or a list); () means responses end only at
    max_new_tokens (BanditLM)."""
    gen = getattr(_forward_of(model), "generation_config", None)
    eos = getattr(gen, "eos_token_id", None)
    ids = [] if eos is None else [eos] if isinstance(eos, int) else list(eos)
    return tuple(sorted({int(i) for i in ids + ([] if tok.eos_id is None else [tok.eos_id])}))


def pad_left(seqs: list[list[int]], pad_id: int, device=None):
    """(ids (B, L), attention_mask (B, L), position_ids (B, L)) for left-padded sequences, built
    with one mask assignment (no per-row loop): row i holds seqs[i] in its last len(seqs[i]) slots."""
    lens = torch.tensor([len(s) for s in seqs], dtype=torch.long)  # (B,)
    L = int(lens.max()) if len(seqs) else 0
    keep = torch.arange(L) >= (L - lens)[:, None]  # (B, L) True on the tokens
    ids = torch.full((len(seqs), L), pad_id, dtype=torch.long)
    ids[keep] = torch.tensor(list(itertools.chain.from_iterable(seqs)), dtype=torch.long)  # row-major
    attn = keep.long()
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


def uniforms(seeds, group_size: int, steps: int) -> torch.Tensor:
    """(B, steps) float64 U[0, 1): rows j*G .. j*G+G-1 from a CPU generator seeded with seeds[j]."""
    gens = (torch.Generator().manual_seed(int(s)) for s in seeds)
    blocks = [torch.rand(group_size, steps, generator=g, dtype=torch.float64) for g in gens]
    return torch.cat(blocks) if blocks else torch.zeros(0, steps, dtype=torch.float64)


def inverse_cdf_sample(logp: torch.Tensor, u: torch.Tensor) -> torch.Tensor:
    """(B,) samples of softmax rows `logp` (B, V) by inverse CDF: the first i with F_i > u F_V, where
    F = cumsum(exp(logp)) in float64 (B, V) and u (B,) ~ U[0, 1). Exact up to float64 rounding of F;
    a token of probability 0 (-inf log-prob) is never drawn, since F is flat there and u F_V < F_V."""
    cdf = logp.double().exp().cumsum(-1)  # (B, V), non-decreasing
    x = (u.to(cdf.device) * cdf[:, -1])[:, None]  # (B, 1)
    return torch.searchsorted(cdf, x, right=True)[:, 0].clamp_max(cdf.shape[-1] - 1)


@functools.lru_cache(maxsize=64)
def _declares(cls, name: str) -> bool:
    return name in inspect.signature(cls.forward).parameters


def _forward_of(model):
    return getattr(model, "module", model)


def cache_keyword(model) -> str:
    """The KV-cache keyword of `model.forward` (and attribute of its output): 'cache' for
    transformers >= 5.x causal LMs (whose 'past_key_values' is deprecated, removed in 5.40), else
    'past_key_values' (BanditLM, older transformers)."""
    return "cache" if _declares(type(_forward_of(model)), "cache") else "past_key_values"


def keep_kwargs(model, n: int) -> dict:
    """{'logits_to_keep': n} when the model's forward takes it (HF causal LMs: the LM head runs on
    the last n positions only), else {} (the caller slices the full logits)."""
    return {"logits_to_keep": n} if _declares(type(_forward_of(model)), "logits_to_keep") else {}


def decode_step(model, input_ids, attention_mask, position_ids, cache=None):
    """One forward with a KV cache: (last-position logits (B, V), the updated cache). `cache` None
    starts a new one (prefill); the cache is passed under the keyword the model declares and the LM
    head runs on the last position only (logits_to_keep=1) where the model supports it."""
    key = cache_keyword(model)
    kw = {key: cache} if cache is not None else {}
    out = model(input_ids=input_ids, attention_mask=attention_mask, position_ids=position_ids,
                use_cache=True, **kw, **keep_kwargs(model, 1))
    return out.logits[:, -1], getattr(out, key)


def repeat_cache(cache, repeats: int):
    """The cache with each batch row repeated `repeats` times consecutively (row j -> rows
    j*repeats .. j*repeats+repeats-1), or None for a cache type that cannot be repeated.
    transformers Cache objects: `batch_repeat_interleave` (in place); tensors (BanditLM) and legacy
    tuples of (B, ...) tensors: repeat_interleave on dim 0."""
    if repeats == 1:
        return cache
    if hasattr(cache, "batch_repeat_interleave"):
        cache.batch_repeat_interleave(repeats)
        return cache
    if isinstance(cache, torch.Tensor):
        return cache.repeat_interleave(repeats, 0)
    if isinstance(cache, (tuple, list)) and cache:
        parts = [repeat_cache(c, repeats) for c in cache]
        return None if any(p is None for p in parts) else type(cache)(parts)
    return None


def prefill(model, prompts: list[list[int]], group_size: int, pad_id: int, device):
    """Prefill each prompt once and share its KV cache with its G rows:
    (last logits (B, V), cache of B = len(prompts) * G rows, ids (B, L), attn (B, L), pos (B, L)).
    A cache type that cannot be repeated falls back to prefilling all B rows."""
    ids, attn, pos = pad_left(prompts, pad_id, device)  # (P, L)
    rep = lambda x: x.repeat_interleave(group_size, 0)  # noqa: E731  (P, ...) -> (P * G, ...)
    logits, cache = decode_step(model, ids, attn, pos)
    shared = repeat_cache(cache, group_size)
    if shared is None:
        logits, shared = decode_step(model, rep(ids), rep(attn), rep(pos))
        return logits, shared, rep(ids), rep(attn), rep(pos)
    return rep(logits), shared, rep(ids), rep(attn), rep(pos)


class HFEngine:
    """Batched sampling from any HF-style causal LM with a KV cache (manual decode loop)."""

    def __init__(self, model, tok, rcfg=None):
        self.model, self.tok = model, tok
        self.stop = stop_ids(tok, model)  # rcfg: unused (the hf engine has no options)

    @torch.no_grad()
    def generate(self, prompts: list[list[int]], group_size: int, seeds: list[int], max_new_tokens: int,
                 temperature: float = 1.0, top_p: float = 1.0, processor=None) -> Rollouts:
        """G samples per prompt; step t samples token i of row b with u[b, t] by inverse CDF of
        top_p(softmax(processor(z) / temperature)) and records its log-prob there (old_logp)."""
        model = _forward_of(self.model)
        device = next(model.parameters()).device
        rows = [p for p in prompts for _ in range(group_size)]
        u = uniforms(seeds, group_size, max_new_tokens).to(device)  # (B, T)
        logits, cache, ids, attn, pos = prefill(model, prompts, group_size, self.tok.pad_id, device)
        if processor is not None:
            processor.begin(ids, attn, pos)
        B, L = ids.shape
        attn = torch.cat([attn, attn.new_ones(B, max_new_tokens)], -1)  # (B, L + T)
        last = pos[:, -1:]  # (B, 1)
        pad = torch.full((B,), self.tok.pad_id, dtype=torch.long, device=device)
        tokens, logps, masks = [], [], []
        alive = torch.ones(B, dtype=torch.bool, device=device)
        stop = torch.tensor(self.stop, dtype=torch.long, device=device)  # (S,)
        for t in range(max_new_tokens):
            z = logits.float() if logits.dtype in (torch.float16, torch.bfloat16) else logits
            if processor is not None:
                z = processor(z)
            lp = top_p_filter(torch.log_softmax(z / temperature, -1), top_p)  # (B, V)
            nxt = inverse_cdf_sample(lp, u[:, t])
            tokens.append(torch.where(alive, nxt, pad))
            logps.append(torch.where(alive, lp.gather(-1, nxt[:, None])[:, 0], torch.zeros_like(lp[:, 0])))
            masks.append(alive.to(lp.dtype))
            if len(self.stop):
                alive = alive & ~torch.isin(nxt, stop)
            if t == max_new_tokens - 1 or not alive.any():
                break  # no forward after the last token
            step, a, p = tokens[-1][:, None], attn[:, :L + t + 1], last + (t + 1)
            logits, cache = decode_step(model, step, a, p, cache)
            if processor is not None:
                processor.advance(step, a, p)
        return Rollouts(rows, torch.stack(tokens, 1), torch.stack(masks, 1), torch.stack(logps, 1))


def generate_chunks(engine, prompts: list[list[int]], group_size: int, seeds: list[int], max_new_tokens: int,
                    temperature: float = 1.0, top_p: float = 1.0, processor=None, max_rows: int = 0) -> Rollouts:
    """engine.generate over consecutive prompt chunks of at most max_rows // group_size prompts
    (max_rows rows per call; 0: one call), each chunk with its prompts' own seeds, the rows
    concatenated prompt-major and padded to max_new_tokens. Seeds are per prompt, so the samples equal
    one call's (see the module docstring)."""
    if max_rows and group_size > max_rows:
        raise ValueError(f"rollout.max_rows_per_call = {max_rows} is invalid for a group of {group_size} "
                         f"samples per prompt; allowed: >= {group_size}")
    per = max(max_rows // group_size, 1) if max_rows else max(len(prompts), 1)
    parts = [engine.generate(prompts[i:i + per], group_size, seeds[i:i + per], max_new_tokens, temperature,
                             top_p, processor) for i in range(0, len(prompts), per)]
    if len(parts) == 1:
        return parts[0]
    pad = lambda x, v: F.pad(x, (0, max_new_tokens - x.shape[1]), value=v)  # noqa: E731  (B, t) -> (B, T)
    return Rollouts(sum((r.prompt_tokens for r in parts), []),
                    torch.cat([pad(r.tokens, engine.tok.pad_id) for r in parts]),
                    torch.cat([pad(r.mask, 0) for r in parts]), torch.cat([pad(r.logp, 0) for r in parts]))


def _vllm(model, tok, rcfg=None):
    """The vLLM engine, imported on first use (llm/vllm_engine.py; needs the `vllm` extra)."""
    from .vllm_engine import VLLMEngine
    return VLLMEngine(model, tok, rcfg)


_vllm.supports_processor = False  # vLLM samples without the trainer's logits processors
ENGINES = {"hf": HFEngine, "vllm": _vllm}


def register_engine(name: str, factory) -> None:
    """Make `factory(model, tok)` (or `factory(model, tok, rcfg)`, given the RolloutConfig when it takes
    a third argument) available as rollout.engine = name. A factory with `supports_processor = False`
    refuses recipes that sample through a logits processor."""
    ENGINES[name] = factory


def make_engine(name: str, model, tok, rcfg=None, needs_processor: bool = False):
    """The engine `name` of the registry for `model`; needs_processor: the recipe samples through a
    logits processor (the memory sampler), which only engines without supports_processor = False run."""
    if name not in ENGINES:
        raise ValueError(f"rollout.engine = {name!r} is invalid; allowed: {', '.join(ENGINES)}")
    factory = ENGINES[name]
    if needs_processor and not getattr(factory, "supports_processor", True):
        raise ValueError(f"rollout.engine = {name!r} is invalid for a recipe with a custom logits processor "
                         "(the memory sampler); allowed: hf (use --rollout.engine hf)")
    takes_cfg = len(inspect.signature(factory).parameters) >= 3
    return factory(model, tok, rcfg) if takes_cfg else factory(model, tok)


from .logprob import sequence_logp  # noqa: E402,F401  (moved to llm.logprob; re-exported)
