"""The memory LM is sized from the policy's logits width, not len(tokenizer): checkpoints pad the LM
head beyond the tokenizer (Qwen2.5: 151936 logits, 151665 tokens), issue 12."""

import math

from llm.memory import build_memory, logits_width
from llm.models import CharTokenizer, tiny_llama
from llm.train import train


def padded_policy():
    """A tiny Llama whose LM head has 13 rows more than the char tokenizer has tokens."""
    tok = CharTokenizer()
    return tiny_llama(tok.vocab_size + 13, "tiny", hidden_size=32, num_layers=1), tok


def test_memory_width_is_the_policy_logits_width():
    model, tok = padded_policy()
    assert tok.vocab_size < model.config.vocab_size
    assert logits_width(model, tok) == tok.vocab_size + 13
    memory = build_memory(model, tok)
    assert memory.get_output_embeddings().weight.shape[0] == tok.vocab_size + 13
    assert tok.decode([tok.encode("7")[0], tok.vocab_size + 5]) == "7<unk>"  # a padded row's id


def test_memory_recipe_trains_with_a_tokenizer_shorter_than_the_logits(tmp_path, train_config):
    model, tok = padded_policy()
    cfg = train_config(tmp_path, name="memory", steps=1)
    ctx = train(cfg, model=model, tok=tok)
    rows = [line for line in (tmp_path / "metrics.jsonl").read_text().splitlines() if line.strip()]
    assert len(rows) == 1 and ctx.step == 1
    assert math.isfinite(__import__("json").loads(rows[0])["memory_loss"])
