"""HF engine: engine log-probs equal a full forward pass; samples do not depend on batch
composition; top-p keeps the smallest nucleus; BanditLM and tiny presets."""

import torch

from llm.models import PRESETS, BanditLM, BanditTokenizer, CharTokenizer, num_params, tiny_llama
from llm.rollout import HFEngine, encode_prompt, sequence_logp, top_p_filter


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
