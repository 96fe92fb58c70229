"""HF engine: engine log-probs equal a full forward pass; samples do not depend on batch
composition; top-p keeps the smallest nucleus; BanditLM and tiny presets; one prefill per prompt
(shared KV cache), no forward after the last token, the inverse-CDF sampler and its seeding."""

import torch

from llm.models import PRESETS, BanditLM, BanditTokenizer, CharTokenizer, num_params, tiny_llama
from llm.rollout import (
    HFEngine,
    decode_step,
    encode_prompt,
    inverse_cdf_sample,
    pad_left,
    sequence_logp,
    top_p_filter,
    uniforms,
)


def _model():
    torch.manual_seed(0)
    tok = CharTokenizer()
    return tiny_llama(tok.vocab_size, "tiny", hidden_size=32, dtype=torch.float64), tok


def test_engine_logp_matches_forward_and_is_batch_independent():
    model, tok = _model()
    eng = HFEngine(model, tok)
    prompts = [encode_prompt(tok, t) for t in ["12:4=", "3:9=", "0:1="]]  # different lengths: padding
    ro = eng.generate(prompts, 3, [11, 12, 13], 5, temperature=0.8)
    lp, ent = sequence_logp(model, ro.prompt_tokens, ro.tokens, ro.mask, tok.pad_id, 0.8, True)
    assert torch.allclose(lp, ro.logp, atol=1e-10)
    assert (ent[ro.mask > 0] > 0).all()
    alone = eng.generate(prompts[1:2], 3, [12], 5, temperature=0.8)
    assert torch.equal(alone.tokens, ro.tokens[3:6, :alone.tokens.shape[1]])


class EosOnOddRows:
    """Logits processor: EOS forced on odd rows at step 2, forbidden elsewhere."""

    def __init__(self, eos):
        self.eos, self.step = eos, 0

    def begin(self, *a):
        self.step = 0

    def advance(self, *a):
        self.step += 1

    def __call__(self, z):
        z = z.clone()
        z[:, self.eos] = float("-inf")
        if self.step == 1:
            z[1::2, self.eos] = 1e4
        return z


def test_eos_ends_a_response_and_processor_applies():
    model, tok = _model()
    ro = HFEngine(model, tok).generate([encode_prompt(tok, "1:1=")], 6, [0], 5,
                                       processor=EosOnOddRows(tok.eos_id))
    assert ro.mask.sum(1).tolist() == [5, 2, 5, 2, 5, 2]
    assert (ro.tokens[1::2, 1] == tok.eos_id).all() and (ro.tokens[1::2, 2:] == tok.pad_id).all()
    assert (ro.logp[1::2, 1] == 0).all()  # log 1: EOS was certain under the processed logits
    lp, _ = sequence_logp(model, ro.prompt_tokens, ro.tokens, ro.mask, tok.pad_id)
    assert (lp[ro.mask == 0] == 0).all()


def test_top_p_filter():
    logp = torch.log(torch.tensor([[0.5, 0.3, 0.15, 0.05]]))
    out = top_p_filter(logp, 0.7).exp()  # 0.5 + 0.3 >= 0.7: keep two, renormalise
    assert torch.allclose(out, torch.tensor([[0.625, 0.375, 0.0, 0.0]]))
    assert torch.equal(top_p_filter(logp, 1.0), logp)


def test_bandit_lm():
    table = torch.tensor([[0.0, 1.0, 2.0], [2.0, 0.0, 0.0]], dtype=torch.float64)
    model, tok = BanditLM(2, 3, table, torch.float64), BanditTokenizer(3)
    ro = HFEngine(model, tok).generate([[0], [1]], 2000, [1, 2], 1)
    freq = torch.stack([torch.bincount(ro.tokens[i * 2000:(i + 1) * 2000, 0], minlength=3) / 2000
                        for i in range(2)]).double()
    assert torch.allclose(freq, torch.softmax(table, -1), atol=0.045)  # 4 sd of a 2000-sample mean (p=2/3)
    assert torch.allclose(ro.logp[:, 0], torch.log_softmax(table, -1)[[0] * 2000 + [1] * 2000, ro.tokens[:, 0]])


def test_presets_sizes():
    vocab = CharTokenizer().vocab_size
    sizes = {p: num_params(tiny_llama(vocab, p)) for p in PRESETS}
    assert 2e5 < sizes["tiny"] < 1e6 and 1e6 < sizes["small"] < 5e6


def test_decode_uses_the_cache_keyword_without_deprecation_warning(monkeypatch):
    """transformers 5.x renamed past_key_values -> cache (the old name warns, removed in 5.40): the
    engine passes the keyword the model declares, so no warning; the cached decode equals a full
    forward (test above) and BanditLM (past_key_values) still works."""
    import transformers.utils.generic as gen

    from llm.rollout import cache_keyword, decode_step
    seen = []
    monkeypatch.setattr(gen.logger, "warning_once", lambda msg, *a, **k: seen.append(str(msg)))
    model, tok = _model()
    assert cache_keyword(model) == "cache"
    import warnings
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # the FutureWarning of @deprecate_kwarg would raise here
        HFEngine(model, tok).generate([encode_prompt(tok, "12:4=")], 2, [1], 4)
    assert not [m for m in seen if "deprecated" in m]
    ids = torch.tensor([encode_prompt(tok, "1:2=")])
    _, cache = decode_step(model, ids, torch.ones_like(ids), torch.arange(ids.shape[1])[None])
    with warnings.catch_warnings(record=True) as caught:  # control: the old keyword does warn
        warnings.simplefilter("always")
        model(input_ids=ids[:, -1:], past_key_values=cache, use_cache=True)
    assert [w for w in caught if "past_key_values" in str(w.message)]
    bandit = BanditLM(3, 4)
    assert cache_keyword(bandit) == "past_key_values"
    ro = HFEngine(bandit, BanditTokenizer(4)).generate([[0], [2]], 3, [5, 6], 1)
    assert ro.tokens.shape == (6, 1)


# ---------------------------------------------------------------- engine cost and sampling contract ----

class Recorder:
    """Identity logits processor that keeps the logits the engine samples from at each step."""

    def __init__(self):
        self.seen = []

    def begin(self, *a):
        self.seen = []

    def advance(self, *a):
        pass

    def __call__(self, z):
        self.seen.append(z.clone())
        return z


def _per_row_logits(model, rows, tokens):
    """Reference of the former engine: prefill every row (G copies of each prompt), then decode the
    given tokens one at a time; the (B, V) logits before each token."""
    from llm.rollout import decode_step, pad_left
    ids, attn, pos = pad_left(rows, 0)
    logits, cache = decode_step(model, ids, attn, pos)
    out = [logits]
    for t in range(tokens.shape[1] - 1):
        attn = torch.cat([attn, torch.ones_like(attn[:, :1])], -1)
        pos = pos[:, -1:] + 1
        logits, cache = decode_step(model, tokens[:, t:t + 1], attn, pos, cache)
        out.append(logits)
    return out


def test_shared_prefill_gives_the_per_row_prefill_logits():
    """Prefilling each prompt once and repeating its KV cache over the G rows gives, at every decode
    step, the logits of prefilling all G rows (float64). Same arithmetic on the same numbers except
    the batch size of the matmuls, so the difference is rounding: observed <= 1e-15; bound 1e-12."""
    model, tok = _model()
    prompts = [encode_prompt(tok, t) for t in ["12:4=", "3:9=", "0:1=7"]]
    rec = Recorder()
    ro = HFEngine(model, tok).generate(prompts, 4, [5, 6, 7], 6, processor=rec)
    assert ro.tokens.shape == (12, 6) and len(rec.seen) == 6
    ref = _per_row_logits(model, ro.prompt_tokens, ro.tokens)
    for got, want in zip(rec.seen, ref):
        assert got.dtype == torch.float64
        assert (got - want).abs().max() <= 1e-12


class Counter:
    """Forward pre-hook recording the batch size and length of every model call."""

    def __init__(self, model):
        self.calls = []
        model.register_forward_pre_hook(lambda m, a, kw: self.calls.append(tuple(kw["input_ids"].shape)),
                                        with_kwargs=True)


class NoEos(EosOnOddRows):
    def __call__(self, z):
        z = z.clone()
        z[:, self.eos] = float("-inf")
        return z


def test_one_prefill_per_prompt_and_no_forward_after_the_last_token():
    model, tok = _model()
    count = Counter(model)
    prompts = [encode_prompt(tok, t) for t in ["12:4=", "3:9="]]
    ro = HFEngine(model, tok).generate(prompts, 3, [1, 2], 5, processor=NoEos(tok.eos_id))
    assert ro.mask.sum().item() == 6 * 5  # every row ran to max_new_tokens
    assert count.calls == [(2, 6)] + [(6, 1)] * 4  # prefill of the 2 prompts, then T - 1 decodes
    count.calls.clear()
    ro = HFEngine(model, tok).generate(prompts[:1], 6, [0], 5, processor=EosOnOddRows(tok.eos_id))
    assert count.calls == [(1, 6)] + [(6, 1)] * 4  # odd rows ended at step 2, even rows at the cap
    count.calls.clear()

    class AllEos(NoEos):
        def __call__(self, z):
            z = super().__call__(z)
            if self.step == 1:
                z[:, self.eos] = 1e4
            return z
    ro = HFEngine(model, tok).generate(prompts, 2, [3, 4], 5, processor=AllEos(tok.eos_id))
    assert ro.tokens.shape == (4, 2) and count.calls == [(2, 6), (4, 1)]  # stops once every row ended


def test_samples_are_deterministic_across_runs_and_thread_counts():
    model, tok = _model()
    prompts = [encode_prompt(tok, t) for t in ["12:4=", "3:9=", "0:1="]]
    eng = HFEngine(model, tok)
    threads = torch.get_num_threads()
    try:
        torch.set_num_threads(1)
        a = eng.generate(prompts, 4, [11, 12, 13], 6, temperature=0.9, top_p=0.95)
        torch.set_num_threads(2)
        b = eng.generate(prompts, 4, [11, 12, 13], 6, temperature=0.9, top_p=0.95)
    finally:
        torch.set_num_threads(threads)
    assert torch.equal(a.tokens, b.tokens) and torch.equal(a.mask, b.mask)
    assert torch.allclose(a.logp, b.logp, atol=1e-12, rtol=0)
    c = eng.generate(prompts, 4, [11, 12, 14], 6, temperature=0.9, top_p=0.95)
    assert torch.equal(c.tokens[:8], a.tokens[:8]) and not torch.equal(c.tokens[8:], a.tokens[8:])


class Bias:
    """Stateless logits processor: adds a fixed vector."""

    def __init__(self, bias):
        self.bias = bias

    def begin(self, *a):
        pass

    def advance(self, *a):
        pass

    def __call__(self, z):
        return z + self.bias


def test_old_logp_is_the_log_prob_under_the_sampling_distribution():
    """old_logp = log top_p(softmax((z + bias) / T))[token], recomputed from one full forward."""
    model, tok = _model()
    torch.manual_seed(3)
    bias = torch.randn(tok.vocab_size, dtype=torch.float64)
    prompts = [encode_prompt(tok, t) for t in ["12:4=", "3:9="]]
    ro = HFEngine(model, tok).generate(prompts, 5, [8, 9], 6, temperature=0.7, top_p=0.8, processor=Bias(bias))
    ids, attn, pos = pad_left(ro.prompt_tokens, tok.pad_id)
    L, T = ids.shape[1], ro.tokens.shape[1]
    full = torch.cat([ids, ro.tokens], 1)
    fattn = torch.cat([attn, torch.ones_like(ro.tokens)], 1)
    fpos = torch.cat([pos, pos[:, -1:] + torch.arange(1, T + 1)], 1)
    z = model(input_ids=full, attention_mask=fattn, position_ids=fpos).logits[:, L - 1:L + T - 1]
    lp = top_p_filter(torch.log_softmax((z + bias) / 0.7, -1), 0.8)
    want = lp.gather(-1, ro.tokens[..., None])[..., 0] * ro.mask
    on = ro.mask > 0
    assert torch.isfinite(want[on]).all()  # a token outside the top-p nucleus is never sampled
    assert (ro.logp[on] - want[on]).abs().max() <= 1e-10 and (ro.logp[~on] == 0).all()


def test_inverse_cdf_sample_golden_and_exact_on_a_grid():
    p = torch.tensor([[0.1, 0.0, 0.6, 0.3]], dtype=torch.float64)
    u = torch.tensor([0.0, 0.0999, 0.1001, 0.6999, 0.7001, 0.999999], dtype=torch.float64)
    got = inverse_cdf_sample(p.log().expand(6, -1), u)
    assert got.tolist() == [0, 0, 2, 2, 3, 3]
    # u on the grid (i + 1/2) / N hits token k exactly N p_k times (+-1): the map u -> token is the
    # inverse CDF, so the sampler is exact; a zero-probability token is never drawn
    torch.manual_seed(0)
    logits = torch.randn(3, 50, dtype=torch.float64)
    logits[:, ::7] = float("-inf")
    lp = torch.log_softmax(logits, -1)
    N = 20000
    u = (torch.arange(N, dtype=torch.float64) + 0.5) / N
    for r in range(3):
        counts = torch.bincount(inverse_cdf_sample(lp[r].expand(N, -1), u), minlength=50)
        assert (counts[::7] == 0).all()
        assert ((counts - N * lp[r].exp()).abs() <= 1.0 + 1e-9).all()


def test_uniforms_are_per_prompt_blocks():
    u = uniforms([5, 7], 3, 4)
    assert u.shape == (6, 4) and u.dtype == torch.float64
    assert torch.equal(u[3:], uniforms([7], 3, 4)) and torch.equal(u[:3], uniforms([5, 1], 3, 4)[:3])
    assert torch.equal(u[:3], torch.rand(3, 4, generator=torch.Generator().manual_seed(5), dtype=torch.float64))


def test_pad_left_golden():
    ids, attn, pos = pad_left([[5, 6, 7], [], [9]], 0)
    assert ids.tolist() == [[5, 6, 7], [0, 0, 0], [0, 0, 9]]
    assert attn.tolist() == [[1, 1, 1], [0, 0, 0], [0, 0, 1]]
    assert pos.tolist() == [[0, 1, 2], [0, 0, 0], [0, 0, 0]]


class OpaqueCacheBandit(BanditLM):
    """A BanditLM whose cache is an object the engine cannot repeat: it falls back to a per-row prefill."""

    class Box:
        def __init__(self, x):
            self.x = x

    def forward(self, input_ids, attention_mask=None, position_ids=None, past_key_values=None, use_cache=False, **_):
        out = super().forward(input_ids, attention_mask, position_ids,
                              None if past_key_values is None else past_key_values.x, use_cache)
        out.past_key_values = self.Box(out.past_key_values)
        return out


def test_repeat_cache_kinds_and_fallback():
    from transformers import DynamicCache

    from llm.rollout import repeat_cache
    x = torch.arange(6.0).reshape(2, 3)
    assert repeat_cache(x, 2).tolist() == [[0, 1, 2], [0, 1, 2], [3, 4, 5], [3, 4, 5]]
    assert repeat_cache((x, (x,)), 3)[1][0].shape == (6, 3)
    assert repeat_cache(object(), 2) is None
    model, tok = _model()
    _, cache = decode_step(model, torch.tensor([[1, 5, 6]]), torch.ones(1, 3, dtype=torch.long),
                           torch.arange(3)[None])
    assert isinstance(cache, DynamicCache)
    k = cache.layers[0].keys
    assert torch.equal(repeat_cache(cache, 4).layers[0].keys, k.repeat_interleave(4, 0))
    table = torch.tensor([[0.0, 1.0, 2.0], [2.0, 0.0, 0.0]], dtype=torch.float64)
    a = HFEngine(BanditLM(2, 3, table, torch.float64), BanditTokenizer(3)).generate([[0], [1]], 50, [1, 2], 1)
    b = HFEngine(OpaqueCacheBandit(2, 3, table, torch.float64), BanditTokenizer(3)).generate([[0], [1]], 50, [1, 2], 1)
    assert torch.equal(a.tokens, b.tokens) and torch.equal(a.logp, b.logp)


def test_sequence_logp_keeps_only_response_logits():
    """logits_to_keep = T + 1 gives the log-probs and entropies of the full-logits computation."""
    model, tok = _model()
    prompts = [encode_prompt(tok, t) for t in ["12:4=", "3:9="]]
    ro = HFEngine(model, tok).generate(prompts, 2, [1, 2], 4)
    lp, ent = sequence_logp(model, ro.prompt_tokens, ro.tokens, ro.mask, tok.pad_id, 1.3, True)
    ids, attn, pos = pad_left(ro.prompt_tokens, tok.pad_id)
    L, T = ids.shape[1], ro.tokens.shape[1]
    z = model(input_ids=torch.cat([ids, ro.tokens], 1), attention_mask=torch.cat([attn, ro.mask.long()], 1),
              position_ids=torch.cat([pos, pos[:, -1:] + torch.arange(1, T + 1)], 1)).logits[:, L - 1:L + T - 1]
    full = torch.log_softmax(z / 1.3, -1)
    assert torch.allclose(lp, full.gather(-1, ro.tokens[..., None])[..., 0] * ro.mask, atol=1e-12, rtol=0)
    assert torch.allclose(ent, -(full.exp() * full).sum(-1) * ro.mask, atol=1e-12, rtol=0)
