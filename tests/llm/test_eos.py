"""Stopping: a response ends at the tokenizer's EOS or at any EOS id of the model's generation
config (an int or a list, as Qwen's <|im_end|> and <|endoftext|>), read from a saved model too."""

import types

import pytest
import torch

from llm.models import BanditLM, BanditTokenizer, CharTokenizer, tiny_llama
from llm.rollout import HFEngine, encode_prompt, stop_ids

EXTRA = 5  # the second EOS id of the generation config ('1' is id 5 in CharTokenizer)


def _uniform_model(eos):
    """A tiny Llama with zero LM head (uniform next-token distribution, every id equally likely),
    whose generation config lists `eos`."""
    torch.manual_seed(0)
    tok = CharTokenizer()
    model = tiny_llama(tok.vocab_size, "tiny", hidden_size=32)
    torch.nn.init.zeros_(model.lm_head.weight)
    model.generation_config.eos_token_id = eos
    return model, tok


def _check_ends(ro, stops, T):
    """Every row's response holds a stop id only as its last token, and ends early only on one."""
    for b in range(ro.tokens.shape[0]):
        body = ro.tokens[b, :int(ro.mask[b].sum())].tolist()
        assert not any(i in stops for i in body[:-1])
        assert len(body) == T or body[-1] in stops


def test_stop_ids_kinds():
    tok = CharTokenizer()
    gen = lambda eos: types.SimpleNamespace(generation_config=types.SimpleNamespace(eos_token_id=eos))  # noqa: E731
    assert stop_ids(tok, gen(None)) == (2,)
    assert stop_ids(tok, gen(7)) == (2, 7)
    assert stop_ids(tok, gen([9, 2, 7])) == (2, 7, 9)
    assert stop_ids(tok, object()) == (2,)  # no generation config
    assert stop_ids(BanditTokenizer(4), BanditLM(2, 4)) == ()  # no EOS anywhere: max_new_tokens only
    none_tok = types.SimpleNamespace(eos_id=None)
    assert stop_ids(none_tok, gen([3, 4])) == (3, 4)
    ddp = types.SimpleNamespace(module=gen([4]))  # a wrapped model: the inner module's config
    assert stop_ids(tok, ddp) == (2, 4)


def test_generation_config_eos_list_ends_responses():
    T = 40
    model, tok = _uniform_model([2, EXTRA])
    prompts = [encode_prompt(tok, t) for t in ["12:4=", "3:9="]]
    ro = HFEngine(model, tok).generate(prompts, 16, [3, 4], T)
    _check_ends(ro, {2, EXTRA}, T)
    # the same uniforms with only the tokenizer's EOS: the same tokens, ends only on 2
    model.generation_config.eos_token_id = 2
    single = HFEngine(model, tok).generate(prompts, 16, [3, 4], T)
    _check_ends(single, {2}, T)
    ended_on_extra = 0
    for b in range(ro.tokens.shape[0]):
        n = int(ro.mask[b].sum())
        assert torch.equal(ro.tokens[b, :n], single.tokens[b, :n])
        if int(ro.tokens[b, n - 1]) == EXTRA:
            ended_on_extra += 1
            assert int(single.mask[b].sum()) > n or n == T  # the single-EOS engine went on
    assert ended_on_extra >= 3  # uniform over 83 ids, 32 rows x 40 tokens: about 13 expected


def test_saved_model_generation_config_is_read(tmp_path):
    from transformers import AutoModelForCausalLM
    model, tok = _uniform_model([2, EXTRA])
    model.save_pretrained(tmp_path)
    loaded = AutoModelForCausalLM.from_pretrained(tmp_path)
    assert stop_ids(tok, loaded) == (2, EXTRA)
    assert HFEngine(loaded, tok).stop == (2, EXTRA)


@pytest.mark.parametrize("eos", [None, [], 2])
def test_tokenizer_eos_alone_still_stops(eos):
    model, tok = _uniform_model(eos)
    ro = HFEngine(model, tok).generate([encode_prompt(tok, "1:1=")], 16, [0], 30)
    _check_ends(ro, {2}, 30)
    assert (ro.mask.sum(1) < 30).any()  # some row did stop
