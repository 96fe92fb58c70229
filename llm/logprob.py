"""The policy's training / reference forward: per-token log-probs (and entropies) of given responses.

`sequence_logp(model, prompt_tokens, tokens, mask, pad_id, temperature, with_entropy)` returns
log_softmax(z / temperature) at the taken tokens, (B, T), the token entropy of that distribution
when asked, and gradients through both. Memory and compute (docs/methods.md §4 defines the terms):

1. Hidden states, not logits, leave the transformer: for a Hugging Face causal LM the decoder's last
   hidden state is captured by a forward hook while the model itself is called with
   `logits_to_keep=1` (its LM head runs on one position). The LM head then runs only on the response
   positions with mask != 0, in chunks of `chunk_size` rows, each chunk under non-reentrant
   activation checkpointing: no (B, T, V) tensor exists, and the backward keeps no chunk's logits
   (it recomputes one chunk at a time).
2. One prefill per distinct prompt: rows with identical prompt token lists (a GRPO group) share one
   prefill whose KV cache is gathered to the rows; the responses then run against it. The prompt's
   KV cache stays in the autograd graph, so gradients flow through the prefill (tested equal to the
   unshared forward to 1e-10 in float64). Default on accelerators and for float32 / bf16 on CPU
   (float64 on CPU: opt-in, SHARE_ON_CPU).
3. The last response token predicts nothing, so the response forward takes T - 1 tokens.

Wrappers: the call that produces the loss's hidden states goes through `model` itself (a DDP wrapper's
forward, so its gradient hooks are armed); the shared prefill runs on the unwrapped module (one DDP
forward per backward). peft models work through their forward's **kwargs. Models without a decoder /
output-embedding pair, or whose logits are post-processed after the LM head (soft-capping, logit
scales), take the full-logits path: the model's logits for the T + 1 last positions, then the same
chunked log-softmax.
"""

from __future__ import annotations

import contextlib
import functools

import torch
import torch.nn.functional as F
from torch.utils.checkpoint import checkpoint

# On CPU the shared prefill needs the math SDPA backend to stay bit-identical across thread counts
# (_deterministic_attention), and the math backend's sums depend on the left-padding width in the last
# float64 bits, which transformers' float32 RMSNorm amplifies to ~1e-8 in a float64 model: the trainer's
# micro-batch = whole-batch check (tests/llm/test_train.py, 1e-10) would fail. So float64 runs on CPU
# (the exactness checks) default to one forward over [prompt | response]; float32 / bf16 runs on CPU
# share the prefill (their rounding is far above that effect); SHARE_ON_CPU forces it for float64 too.
SHARE_ON_CPU = False
LOGITS_BUDGET = 2 ** 26  # elements of one chunk's (rows, V) logits when chunk_size is None (256 MB fp32)
POSTPROCESSED = ("final_logit_softcapping", "logit_scale", "logits_scaling")  # config fields: z != head(h)


def _unwrap(model):
    """The Hugging Face model under a DDP wrapper (.module) and a peft wrapper (get_base_model())."""
    inner = getattr(model, "module", model)
    return inner.get_base_model() if hasattr(inner, "get_base_model") else inner


@functools.lru_cache(maxsize=64)
def _body(base):
    """(decoder, head) of an HF causal LM whose logits are head(decoder's last hidden state) and whose
    forward takes logits_to_keep; None otherwise (BanditLM, custom models, soft-capped logits)."""
    from .rollout import _declares  # late: llm.rollout re-exports sequence_logp
    if not (_declares(type(base), "logits_to_keep") and hasattr(base, "get_decoder")
            and hasattr(base, "get_output_embeddings")):
        return None
    cfg = getattr(base, "config", None)
    if any(getattr(cfg, k, None) not in (None, 0, 1, 1.0) for k in POSTPROCESSED):
        return None
    decoder, head = base.get_decoder(), base.get_output_embeddings()
    return None if decoder is None or head is None or decoder is base else (decoder, head)


def _chunk_stats(head, h, y, temperature: float, with_entropy: bool):
    """(log-prob (N,), entropy (N,) or an empty tensor) of rows h (N, H) -> logits head(h) (N, V)
    (head None: h are the logits) at targets y (N,); half-precision logits upcast to float32."""
    z = h if head is None else head(h)
    if z.dtype in (torch.float16, torch.bfloat16):
        z = z.float()
    lp = F.log_softmax(z / temperature, -1)  # (N, V)
    logp = lp.gather(-1, y[:, None])[:, 0]
    ent = -(lp.exp() * lp).nan_to_num().sum(-1) if with_entropy else logp.new_zeros(0)
    return logp, ent


def token_logp(head, h, y, temperature: float = 1.0, with_entropy: bool = False, chunk_size: int | None = None):
    """(log-probs (N,), entropies (N,) or None) of targets y (N,) under logits head(h), h (N, H), in
    chunks of chunk_size rows (None: LOGITS_BUDGET // V rows, at least 1024), each checkpointed when
    gradients are recorded, so at most one chunk's (rows, V) logits exist at a time."""
    if chunk_size is None:
        chunk_size = max(1024, LOGITS_BUDGET // max(_vocab(head, h), 1))
    grad = torch.is_grad_enabled() and (h.requires_grad or any(p.requires_grad for p in _params(head)))
    fn = functools.partial(_chunk_stats, head, temperature=temperature, with_entropy=with_entropy)
    parts = [checkpoint(fn, hc, yc, use_reentrant=False, preserve_rng_state=False) if grad else fn(hc, yc)
             for hc, yc in zip(h.split(chunk_size), y.split(chunk_size))]
    if not parts:
        dtype = torch.float32 if h.dtype in (torch.float16, torch.bfloat16) else h.dtype
        empty = h.new_zeros(0, dtype=dtype)
        return empty, (empty if with_entropy else None)
    logp = torch.cat([p[0] for p in parts])
    return logp, (torch.cat([p[1] for p in parts]) if with_entropy else None)


def _vocab(head, h) -> int:
    """The logits width: h's last dimension without a head, else the head's output features."""
    if head is None:
        return h.shape[-1]
    return int(getattr(head, "out_features", 0) or head.weight.shape[0])


def _params(head):
    return () if head is None else head.parameters()


def _capture(decoder, store: list):
    """Forward hook on the decoder that appends its last hidden state (B, S, H) to `store`."""
    def hook(_module, _args, out):
        store.append(out.last_hidden_state if hasattr(out, "last_hidden_state") else out[0])
    return decoder.register_forward_hook(hook)


def _hidden(call, decoder, **kwargs):
    """(decoder's last hidden state (B, S, H), model output) of call(**kwargs, logits_to_keep=1)."""
    store: list = []
    handle = _capture(decoder, store)
    try:
        out = call(**kwargs, logits_to_keep=1)
    finally:
        handle.remove()
    return store[-1], out


def _drops_cache(base) -> bool:
    """True where transformers' activation checkpointing would drop a KV cache passed to the layers
    (a checkpointed layer in training mode with gradients recorded)."""
    return (torch.is_grad_enabled() and base.training
            and any(getattr(m, "gradient_checkpointing", False) is True for m in base.modules()))


def _deterministic_attention(device):
    """On CPU, the math SDPA backend for the shared-prefill forwards: torch's CPU flash-attention
    backward gives results that depend on the thread count in the last bits for some shapes (e.g. 3
    queries against 9 cached keys), which would break the trainer's bit-identical runs across
    run.threads (tests/llm/test_train.py). Elsewhere (CUDA) a no-op."""
    if device.type != "cpu":
        return contextlib.nullcontext()
    from torch.nn.attention import SDPBackend, sdpa_kernel
    return sdpa_kernel([SDPBackend.MATH])


def _group_rows(prompt_tokens) -> tuple[list, torch.Tensor]:
    """(distinct prompts in order of first appearance, inv (B,) with prompt_tokens[b] == uniq[inv[b]])."""
    first: dict = {}
    inv = [first.setdefault(tuple(p), len(first)) for p in prompt_tokens]
    return [list(p) for p in first], torch.tensor(inv, dtype=torch.long)


def response_hidden(model, decoder, prompt_tokens, tokens, mask, pad_id: int, share: bool = True):
    """(B, T, H) hidden states whose row t predicts tokens[:, t]: position L - 1 of the left-padded
    prompt, then response positions 0 .. T - 2. With `share` and repeated prompts, each distinct
    prompt is prefilled once (unwrapped module) and its KV cache gathered to its rows; the response
    forward (through `model`) attends to it. Gradients flow through both forwards."""
    from .rollout import cache_keyword, pad_left  # late: llm.rollout re-exports sequence_logp
    base, dev = _unwrap(model), tokens.device
    B, T = tokens.shape
    uniq, inv = _group_rows(prompt_tokens)
    share = (share and T > 1 and len(uniq) < B and not _drops_cache(base))
    key = cache_keyword(base)
    if share:
        ids, attn, pos = pad_left(uniq, pad_id, dev)  # (P, L)
        inner = getattr(model, "module", model)
        with _deterministic_attention(dev):
            hp, out = _hidden(inner, decoder, input_ids=ids, attention_mask=attn, position_ids=pos, use_cache=True)
        cache = getattr(out, key, None)
        if hasattr(cache, "batch_select_indices"):
            inv = inv.to(dev)
            cache.batch_select_indices(inv)  # (P, ...) -> (B, ...), a differentiable gather
            ids, attn, pos = ids[inv], attn[inv], pos[inv]
            L = ids.shape[1]
            rattn = torch.cat([attn, mask[:, :T - 1].to(attn.dtype)], 1)  # (B, L + T - 1)
            rpos = pos[:, -1:] + torch.arange(1, T, device=dev)  # (B, T - 1)
            with _deterministic_attention(dev):
                hr, _ = _hidden(model, decoder, input_ids=tokens[:, :T - 1], attention_mask=rattn,
                                position_ids=rpos, use_cache=True, **{key: cache})
            if cache.get_seq_length() != L + T - 1:
                raise RuntimeError(f"{type(base).__name__} ignored the prompt KV cache in the response forward "
                                   "(sequence_logp's shared prefill); call it with share_prompts=False")
            return torch.cat([hp[inv, -1:], hr], 1)
    ids, attn, pos = pad_left(prompt_tokens, pad_id, dev)  # (B, L)
    L = ids.shape[1]
    full = torch.cat([ids, tokens[:, :T - 1]], 1)  # (B, L + T - 1)
    fattn = torch.cat([attn, mask[:, :T - 1].to(attn.dtype)], 1)
    fpos = torch.cat([pos, pos[:, -1:] + torch.arange(1, T, device=dev)], 1)
    h, _ = _hidden(model, decoder, input_ids=full, attention_mask=fattn, position_ids=fpos)
    return h[:, L - 1:L + T - 1]


def full_logits(model, prompt_tokens, tokens, mask, pad_id: int):
    """(B, T, V) logits predicting `tokens` from the model's own output (the full-logits path, for
    models without a separable LM head); the LM head runs on the T + 1 last positions where the
    model takes logits_to_keep."""
    from .rollout import keep_kwargs, pad_left
    ids, attn, pos = pad_left(prompt_tokens, pad_id, tokens.device)
    T = tokens.shape[1]
    full = torch.cat([ids, tokens], 1)
    fattn = torch.cat([attn, mask.to(attn.dtype)], 1)
    fpos = torch.cat([pos, pos[:, -1:] + torch.arange(1, T + 1, device=ids.device)], 1)
    out = model(input_ids=full, attention_mask=fattn, position_ids=fpos, **keep_kwargs(_unwrap(model), T + 1)).logits
    return out[:, out.shape[1] - T - 1:-1]  # positions L-1 .. L+T-2 predict the tokens


def sequence_logp(model, prompt_tokens: list[list[int]], tokens, mask, pad_id: int,
                  temperature: float = 1.0, with_entropy: bool = False, chunk_size: int | None = None,
                  share_prompts: bool | None = None):
    """Per-token log-probs (B, T) of `tokens` (B, T) given their prompts (B lists of ids), under
    log_softmax(z / temperature), 0 where mask (B, T) is 0, and the token entropy (B, T) of that
    distribution when asked (else None). Gradients flow. Half-precision logits are upcast to float32.
    Only rows with mask != 0 get logits, `chunk_size` rows at a time (module docstring);
    `share_prompts` prefills each distinct prompt once; None: on accelerators, and on CPU unless the
    computation is float64 (see SHARE_ON_CPU)."""
    if share_prompts is None:
        share_prompts = tokens.device.type != "cpu" or SHARE_ON_CPU or mask.dtype != torch.float64
    body = _body(_unwrap(model))
    sel = mask != 0  # (B, T)
    if body is not None:
        decoder, head = body
        h = response_hidden(model, decoder, prompt_tokens, tokens, mask, pad_id, share_prompts)[sel]  # (N, H)
    else:
        head, h = None, full_logits(model, prompt_tokens, tokens, mask, pad_id)[sel]  # (N, V)
    lp, ent = token_logp(head, h, tokens[sel], temperature, with_entropy, chunk_size)

    def scatter(v):  # (N,) -> (B, T), times the mask as in the full computation
        return v.new_zeros(tokens.shape).index_put((sel,), v) * mask
    return scatter(lp), (scatter(ent) if with_entropy else None)
