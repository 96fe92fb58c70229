"""llm.logprob.sequence_logp: equal to the straightforward full-logits computation (log-probs,
entropies and their gradients, 1e-10 in float64) with padding, masks, temperature != 1, repeated
prompts (shared prefill) and chunking, on tiny Llama and Qwen2 shapes, BanditLM, DDP, peft LoRA and
activation checkpointing; no (B, T, V) tensor is created or saved for backward."""

import pytest
import torch
import torch.nn.functional as F
from torch.utils._python_dispatch import TorchDispatchMode

from llm.logprob import response_hidden, sequence_logp
from llm.models import BanditLM, tiny_llama
from llm.rollout import pad_left

V, PAD = 83, 0


def reference(model, prompts, tokens, mask, temperature=1.0):
    """The straightforward computation: full logits of [prompt | response], log_softmax of all of them."""
    ids, attn, pos = pad_left(prompts, PAD)
    L, T = ids.shape[1], tokens.shape[1]
    z = model(input_ids=torch.cat([ids, tokens], 1), attention_mask=torch.cat([attn, mask.long()], 1),
              position_ids=torch.cat([pos, pos[:, -1:] + torch.arange(1, T + 1)], 1)).logits[:, L - 1:L + T - 1]
    lp = F.log_softmax(z.double() / temperature, -1)
    return lp.gather(-1, tokens[..., None])[..., 0] * mask, -(lp.exp() * lp).nan_to_num().sum(-1) * mask


def batch(G=3, T=5, seed=0, vocab=V, shuffle=False):
    """Four prompts of lengths 2..6, G rows each (prompt-major, or shuffled rows), random responses
    whose masks end at random lengths (1..T)."""
    g = torch.Generator().manual_seed(seed)
    prompts = [[1] + torch.randint(4, vocab, (n,), generator=g).tolist() for n in (4, 1, 5, 3)]
    rows = [p for p in prompts for _ in range(G)]
    if shuffle:
        rows = [rows[i] for i in torch.randperm(len(rows), generator=g).tolist()]
    tokens = torch.randint(3, vocab, (len(rows), T), generator=g)
    lens = torch.randint(1, T + 1, (len(rows),), generator=g)
    mask = (torch.arange(T) < lens[:, None]).double()
    tokens = torch.where(mask > 0, tokens, torch.full_like(tokens, PAD))
    return rows, tokens, mask


def float64_norms(model):
    """Transformers' RMSNorm computes in float32 whatever the input dtype, so a float64 model's
    gradients carry float32 rounding (1e-7 relative) that depends on how a sum is grouped. For the
    1e-10 comparisons every *RMSNorm runs in the input's dtype (the same formula)."""
    def forward(self, x):
        return self.weight * (x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + self.variance_epsilon))
    for m in model.modules():
        if type(m).__name__.endswith("RMSNorm"):
            m.forward = forward.__get__(m)
    return model


def llama(**kw):
    torch.manual_seed(0)
    return float64_norms(tiny_llama(V, "tiny", hidden_size=32, dtype=torch.float64, **kw))


def qwen2():
    from transformers import Qwen2Config, Qwen2ForCausalLM
    torch.manual_seed(0)
    cfg = Qwen2Config(vocab_size=V, hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=4,
                      num_key_value_heads=2, tie_word_embeddings=True, max_position_embeddings=64)
    return float64_norms(Qwen2ForCausalLM(cfg).double())


def grads(model, lp, ent, w):
    """d/dθ of sum(w0 * logp + w1 * entropy), flattened."""
    model.zero_grad(set_to_none=True)
    ((w[0] * lp).sum() + (w[1] * ent).sum()).backward()
    return torch.cat([p.grad.flatten() for p in model.parameters() if p.grad is not None])


def check_equal(model, rows, tokens, mask, temperature=0.7, **kw):
    w = torch.randn(2, *tokens.shape, dtype=torch.float64, generator=torch.Generator().manual_seed(1))
    lp0, ent0 = reference(model, rows, tokens, mask, temperature)
    g0 = grads(model, lp0, ent0, w)
    kw.setdefault("share_prompts", True)  # None would mean unshared on CPU
    lp, ent = sequence_logp(model, rows, tokens, mask, PAD, temperature, True, **kw)
    assert lp.dtype == torch.float64 and ent.shape == tokens.shape
    assert torch.allclose(lp, lp0, atol=1e-10, rtol=0) and torch.allclose(ent, ent0, atol=1e-10, rtol=0)
    g = grads(model, lp, ent, w)
    assert g.shape == g0.shape and torch.allclose(g, g0, atol=1e-10, rtol=0)
    assert (lp[mask == 0] == 0).all() and (ent[mask > 0] > 0).all()


@pytest.mark.parametrize("share,chunk,shuffle", [(True, None, False), (False, None, False), (True, 7, True),
                                                 (False, 1, False)])
def test_llama_equals_full_logits(share, chunk, shuffle):
    rows, tokens, mask = batch(shuffle=shuffle)
    check_equal(llama(), rows, tokens, mask, share_prompts=share, chunk_size=chunk)


def test_qwen2_tied_embeddings_and_one_token_responses():
    model = qwen2()
    check_equal(model, *batch(G=2, T=4, seed=3), chunk_size=5)
    check_equal(model, *batch(G=2, T=1, seed=4))  # T = 1: the prefill alone


def test_shared_prefill_runs_each_prompt_once_and_gradients_flow_through_it():
    model = llama()
    rows, tokens, mask = batch(G=3, T=5)
    shapes = []
    h = model.model.register_forward_hook(lambda m, a, kw_out: shapes.append(kw_out.last_hidden_state.shape[:2]))
    try:
        hid = response_hidden(model, model.model, rows, tokens, mask, PAD, share=True)
        hid_full = response_hidden(model, model.model, rows, tokens, mask, PAD, share=False)
    finally:
        h.remove()
    assert shapes == [(4, 6), (12, 4), (12, 10)]  # 4 prompts prefilled once, T - 1 response tokens
    assert torch.allclose(hid, hid_full, atol=1e-12, rtol=0)
    w = torch.randn_like(hid)
    ga = torch.autograd.grad((w * hid).sum(), model.model.embed_tokens.weight)[0]
    gb = torch.autograd.grad((w * hid_full).sum(), model.model.embed_tokens.weight)[0]
    assert torch.allclose(ga, gb, atol=1e-10, rtol=0)
    # the prompt tokens' embeddings get gradient only through the prefill's KV cache
    assert ga[rows[0][1]].abs().sum() > 0


def test_bandit_lm_takes_the_full_logits_path():
    table = torch.randn(3, 6, dtype=torch.float64, generator=torch.Generator().manual_seed(0))
    model = BanditLM(3, 6, table, torch.float64)
    rows = [[0]] * 4 + [[2]] * 4
    tokens = torch.randint(0, 6, (8, 1), generator=torch.Generator().manual_seed(1))
    check_equal(model, rows, tokens, torch.ones(8, 1, dtype=torch.float64), temperature=1.3)


def test_activation_checkpointing_turns_sharing_off():
    model = llama()
    model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
    model.train()
    check_equal(model, *batch())


def test_peft_lora_model():
    peft = pytest.importorskip("peft")
    model = peft.get_peft_model(llama(), peft.LoraConfig(r=4, target_modules=["q_proj", "v_proj"],
                                                         init_lora_weights=False))
    check_equal(model, *batch(G=2))


def test_ddp_wrapped_model(tmp_path):
    import torch.distributed as dist
    from torch.nn.parallel import DistributedDataParallel
    dist.init_process_group("gloo", init_method=f"file://{tmp_path}/pg", rank=0, world_size=1)
    try:
        model = llama()
        ddp = DistributedDataParallel(model)
        rows, tokens, mask = batch()
        w = torch.randn(2, *tokens.shape, dtype=torch.float64)
        g0 = grads(model, *reference(model, rows, tokens, mask, 0.7), w)
        for _ in range(2):  # twice: the reducer is ready again after a backward through the shared prefill
            lp, ent = sequence_logp(ddp, rows, tokens, mask, PAD, 0.7, True, share_prompts=True)
            assert torch.allclose(grads(model, lp, ent, w), g0, atol=1e-10, rtol=0)
    finally:
        dist.destroy_process_group()


def is_logits(t) -> bool:
    """A tensor of logits shape (..., V): not the LM head's weight (V, H) or its transpose (H, V)."""
    return isinstance(t, torch.Tensor) and t.dim() >= 1 and t.shape[-1] == V and tuple(t.shape) != (32, V)


class LargestV(TorchDispatchMode):
    """Records the largest number of elements of any logits-shaped tensor an op creates."""

    def __init__(self):
        super().__init__()
        self.largest = 0

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        out = func(*args, **(kwargs or {}))
        for t in out if isinstance(out, (tuple, list)) else (out,):
            if is_logits(t):
                self.largest = max(self.largest, t.numel())
        return out


def test_no_full_logits_tensor_is_created_or_saved_for_backward():
    model = llama()
    rows, tokens, mask = batch(G=4, T=8)
    n = int((mask != 0).sum())
    assert n > 3 * 16
    saved = []

    def pack(t):
        if is_logits(t):
            saved.append(t.numel())
        return t
    for fn, bound in ((lambda: sequence_logp(model, rows, tokens, mask, PAD, 0.7, True, chunk_size=16,
                                             share_prompts=True), 16 * V),
                      (lambda: reference(model, rows, tokens, mask, 0.7), tokens.numel() * V)):
        saved.clear()
        with LargestV() as mode, torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
            lp, ent = fn()
            (lp.sum() + ent.sum()).backward()
        if bound == 16 * V:
            assert mode.largest == bound  # chunks of 16 rows
            assert saved == []  # checkpointed chunks: no logits kept for backward
        else:  # the measures see the reference's full logits: B x (L + T) positions, and saved log-softmax
            assert mode.largest >= bound and max(saved) >= bound


def test_shared_prefill_is_bit_identical_across_thread_counts():
    """3 response queries against 9 keys: a shape where CPU flash attention's backward is not."""
    torch.manual_seed(0)
    model = tiny_llama(V, "tiny", hidden_size=64)
    rows, tokens, mask = batch(G=4, T=4)
    out = []
    try:
        for threads in (1, 2):
            torch.set_num_threads(threads)
            model.zero_grad()
            lp, ent = sequence_logp(model, rows, tokens, mask.float(), PAD, 1.0, True, share_prompts=True)
            (lp.sum() + ent.sum()).backward()
            out.append(torch.cat([lp.flatten(), ent.flatten()] + [p.grad.flatten() for p in model.parameters()]))
    finally:
        torch.set_num_threads(1)
    assert torch.equal(out[0], out[1])
