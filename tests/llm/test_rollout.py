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
