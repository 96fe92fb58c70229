"""model.gradient_checkpointing: the same gradients (float32, 1e-6) for one more layer forward in the
backward pass; no-grad rollouts keep their KV cache and their samples (issue 12)."""

import copy
import warnings

import pytest
import torch

from llm.models import BanditLM, CharTokenizer, enable_gradient_checkpointing, tiny_llama
from llm.rollout import HFEngine, encode_prompt, sequence_logp
from llm.train import ppo_update, rollout_step, setup


def policy():
    torch.manual_seed(0)
    tok = CharTokenizer()
    return tiny_llama(tok.vocab_size, "tiny", hidden_size=32), tok


def batch(tok, B=4, T=5):
    g = torch.Generator().manual_seed(1)
    prompts = [encode_prompt(tok, "12+3=" * (1 + i % 2)) for i in range(B)]
    tokens = torch.randint(4, tok.vocab_size, (B, T), generator=g)
    mask = torch.ones(B, T)
    mask[0, 3:] = 0
    return prompts, tokens, mask


def grads_and_layer_calls(model, tok):
    """Gradients of a weighted log-prob loss, and how often layer 0's attention ran (forward and
    recomputation in backward)."""
    calls = []
    h = model.model.layers[0].self_attn.register_forward_hook(lambda *a: calls.append(1))
    prompts, tokens, mask = batch(tok)
    logp, ent = sequence_logp(model, prompts, tokens, mask, tok.pad_id, 0.9, True,
                             share_prompts=False)  # one forward: the layer-call count below
    (logp.sum() * 0.7 - ent.sum() * 0.1).backward()
    h.remove()
    return {n: p.grad.clone() for n, p in model.named_parameters()}, len(calls)


def test_checkpointed_gradients_equal_plain_ones():
    plain, tok = policy()
    ckpt = copy.deepcopy(plain)
    enable_gradient_checkpointing(ckpt)
    g0, calls0 = grads_and_layer_calls(plain, tok)
    g1, calls1 = grads_and_layer_calls(ckpt, tok)
    assert (calls0, calls1) == (1, 2)  # checkpointing really recomputed the layer in backward
    assert g0.keys() == g1.keys()
    for n in g0:
        torch.testing.assert_close(g1[n], g0[n], rtol=0, atol=1e-6, msg=n)


def test_rollouts_are_unchanged_by_checkpointing():
    plain, tok = policy()
    ckpt = copy.deepcopy(plain).eval()
    enable_gradient_checkpointing(ckpt)
    assert not ckpt.model.layers[0].mlp.training  # submodules keep the loaded mode (dropout off)
    prompts = [encode_prompt(tok, "7*6=")] * 2
    a = HFEngine(plain, tok).generate(prompts, 3, [5, 6], 6)
    b = HFEngine(ckpt, tok).generate(prompts, 3, [5, 6], 6)
    assert torch.equal(a.tokens, b.tokens)
    torch.testing.assert_close(b.logp, a.logp, rtol=0, atol=1e-6)


def test_trainer_flag(tmp_path, train_config):
    cfg = train_config(tmp_path, name="entropy", model={"hidden_size": 32, "num_layers": 1,
                                                        "gradient_checkpointing": True})
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        ctx = setup(cfg)
    layer = ctx.model.model.layers[0]
    assert layer.gradient_checkpointing and layer.training
    calls = []
    layer.self_attn.register_forward_hook(lambda *a: calls.append(torch.is_grad_enabled()))
    before = [p.detach().clone() for p in ctx.model.parameters()]
    exp = rollout_step(ctx, 0)
    n_rollout = len(calls)
    out = ppo_update(ctx, exp)
    assert calls[n_rollout:] == [True, True]  # the loss forward, recomputed once in backward
    assert out["nonfinite_skips"] == 0
    assert any(not torch.equal(p, q) for p, q in zip(ctx.model.parameters(), before))


def test_bandit_has_no_checkpointing():
    with pytest.raises(ValueError, match=r"^model\.gradient_checkpointing = True is invalid; allowed: false"):
        enable_gradient_checkpointing(BanditLM(2, 3))
