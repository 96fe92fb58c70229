"""Chat and instruction models: prompts rendered with the tokenizer's chat template, a system
prompt, conversational rows, and a one-line error for a tokenizer without a template. The tokenizer
is a character-level PreTrainedTokenizerFast built here with a ChatML-style template (no download)."""

import json
import pickle
import string
from pathlib import Path

import pytest

from llm import config as C
from llm.chat import ChatText, as_chat, chat_task, encode_chat
from llm.models import CharTokenizer, HFTokenizer, tiny_llama
from llm.rollout import encode_prompt
from llm.tasks import MathTask, make_task, score

GSM = str(Path(__file__).resolve().parents[1] / "data" / "gsm8k_tiny.jsonl")
CHATML = ("{% for m in messages %}<|im_start|>{{ m['role'] }}\n{{ m['content'] }}<|im_end|>\n{% endfor %}"
          "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}")


def char_tokenizer(template: str | None = CHATML):
    """A Hugging Face fast tokenizer: one token per printable character, <pad> <s> </s> and the
    ChatML markers as special tokens; `template` its chat template (None: none)."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast
    specials = ["<pad>", "<s>", "</s>", "<|im_start|>", "<|im_end|>"]
    vocab = {s: i for i, s in enumerate(specials)}
    for c in string.printable:
        vocab.setdefault(c, len(vocab))
    core = Tokenizer(models.WordLevel(vocab, unk_token="<pad>"))
    core.pre_tokenizer = pre_tokenizers.Split("", "isolated")
    core.decoder = decoders.Fuse()
    tok = PreTrainedTokenizerFast(tokenizer_object=core, bos_token="<s>", eos_token="<|im_end|>",
                                  pad_token="<pad>", additional_special_tokens=specials[3:])
    tok.chat_template = template
    return tok


@pytest.fixture(scope="module")
def hf_tok():
    return char_tokenizer()


def test_encode_prompt_renders_the_chat_template(hf_tok):
    tok = HFTokenizer(hf_tok)
    messages = [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "1+1?"}]
    ids = encode_prompt(tok, ChatText(messages))
    want = hf_tok.apply_chat_template(messages, add_generation_prompt=True, tokenize=True)["input_ids"]
    assert ids == list(want)
    assert hf_tok.decode(ids) == ("<|im_start|>system\nBe brief.<|im_end|>\n<|im_start|>user\n1+1?<|im_end|>\n"
                                  "<|im_start|>assistant\n")
    assert encode_prompt(tok, "1+1?") == [hf_tok.bos_token_id] + hf_tok.encode("1+1?", add_special_tokens=False)


def test_chat_text_is_the_user_text_and_keeps_its_messages():
    c = as_chat("2+2=", "Answer with a number.")
    assert c == "2+2=" and isinstance(c, str)
    assert c.messages == ({"role": "system", "content": "Answer with a number."}, {"role": "user", "content": "2+2="})
    assert as_chat(c, "another").messages == c.messages  # a system message already there wins; no nesting
    assert as_chat("x").messages == ({"role": "user", "content": "x"},)
    back = pickle.loads(pickle.dumps(c))
    assert back == c and back.messages == c.messages and isinstance(back, ChatText)
    turns = ChatText([{"role": "user", "content": "a"}, {"role": "assistant", "content": "b"},
                      {"role": "user", "content": "c"}])
    assert str(turns) == "c"


def test_make_task_wraps_every_task_and_checks_are_unchanged():
    plain = make_task(C.TaskConfig(name="multisolution", num_prompts=8))
    chat = make_task(C.TaskConfig(name="multisolution", num_prompts=8, chat_template=True, system_prompt="S"))
    for split in ("train", "test", "all"):
        a, b = plain.prompts(split), chat.prompts(split)
        assert [p.id for p in a] == [p.id for p in b] and [p.text for p in a] == [str(p.text) for p in b]
        assert all(p.text.messages == ({"role": "system", "content": "S"}, {"role": "user", "content": q.text})
                   for p, q in zip(b, a))
    p, q = plain.prompts("train")[0], chat.prompts("train")[0]
    right = plain.answers(p, 1, __import__("numpy").random.default_rng(0))[0]
    assert score(chat, q, right) == score(plain, p, right) and score(chat, q, right).reward == 1.0
    assert chat_task(chat, "S").prompts("train") == chat.prompts("train")  # applying twice does not nest
    assert chat.prompts("train")[0].text.messages == q.text.messages


def test_without_a_chat_template_it_is_one_line_naming_the_field():
    task = make_task(C.TaskConfig(name="countdown", num_prompts=4, chat_template=True))
    text = task.prompts("train")[0].text
    for tok, kind in ((CharTokenizer(), "CharTokenizer"), (HFTokenizer(char_tokenizer(None)), "HFTokenizer")):
        with pytest.raises(ValueError) as e:
            encode_prompt(tok, text)
        assert str(e.value) == ("task.chat_template = True is invalid; allowed: false for a tokenizer without "
                                f"a chat template ({kind} has none)")
    with pytest.raises(ValueError, match=r"^task.chat_template = True"):
        encode_chat(CharTokenizer(), as_chat("x"))


def write(path, rows) -> str:
    path.write_text("\n".join(json.dumps(r) for r in rows) + "\n")
    return str(path)


CONV = [{"messages": [{"role": "system", "content": "You are a calculator."},
                      {"role": "user", "content": "What is 2+3?"}], "answer": "5"},
        {"messages": [{"role": "user", "content": "What is 7*6?"}], "answer": 42},
        {"messages": "What is 1+1? (a plain string row)", "answer": "2"}]


def test_conversational_rows(tmp_path, hf_tok):
    path = write(tmp_path / "conv.jsonl", CONV)
    task = MathTask(path, prompt_column="messages", chat_template=True, test_fraction=0.3)
    texts = {p.answer: p.text for p in task.prompts("all")}
    assert texts["5"].messages == tuple(CONV[0]["messages"]) and texts["5"] == "What is 2+3?"
    assert not hasattr(texts["2"], "messages") and texts["2"].endswith("\\boxed{}.\n")  # template as before
    tcfg = C.TaskConfig(name="math", path=path, prompt_column="messages", chat_template=True,
                        system_prompt="Think step by step.")
    tcfg.validate()
    by_answer = {p.answer: p.text.messages for p in make_task(tcfg).prompts("all")}
    assert by_answer["5"] == tuple(CONV[0]["messages"])  # the row's own system message is kept
    assert by_answer["42"][0] == {"role": "system", "content": "Think step by step."}
    assert hf_tok.decode(encode_prompt(HFTokenizer(hf_tok), texts["42"])).startswith("<|im_start|>user\nWhat is 7*6?")


def test_conversational_rows_need_chat_template_and_valid_messages(tmp_path):
    path = write(tmp_path / "conv.jsonl", CONV)
    with pytest.raises(ValueError) as e:
        MathTask(path, prompt_column="messages")
    assert str(e.value) == ("task.chat_template = False is invalid; allowed: true when task.path gives prompts "
                            f"as role/content messages ({path!r} line 1)")
    for msgs, why in [([{"role": "bot", "content": "hi"}], "message 1 has role 'bot'"),
                      ([{"role": "user"}], "message 1 has no string 'content'"),
                      ([{"role": "system", "content": "s"}], "no message has role 'user'"),
                      ([], "field 'messages' is a list but not role/content messages (not a non-empty list")]:
        bad = write(tmp_path / "bad.jsonl", CONV[:2] + [{"messages": msgs, "answer": "1"}])
        with pytest.raises(ValueError) as e:
            MathTask(bad, prompt_column="messages", chat_template=True)
        assert str(e.value).startswith(f"task.path = {bad!r} is invalid; allowed: ") and "(line 3: " in str(e.value)
        assert why in str(e.value) and "\n" not in str(e.value)


def test_training_step_with_a_chat_template(tmp_path, hf_tok, train_config, monkeypatch):
    """llm.train on the GSM8K sample with chat_template and a system prompt: every rollout prompt is
    encoded through the chat template (a spy on llm.chat.encode_chat records them)."""
    import llm.chat
    from llm.train import train
    seen = []
    real = llm.chat.encode_chat
    monkeypatch.setattr(llm.chat, "encode_chat", lambda tok, text: seen.append(real(tok, text)) or seen[-1])
    cfg = train_config(tmp_path, steps=1, task={"name": "math", "path": GSM, "prompt_column": "question",
                                                 "answer_format": "gsm8k", "chat_template": True,
                                                 "system_prompt": "Be brief.", "num_prompts": 4},
                       rollout={"group_size": 2, "prompts_per_step": 2, "max_new_tokens": 3})
    tok = HFTokenizer(hf_tok)
    model = tiny_llama(len(hf_tok), hidden_size=32, num_layers=1)
    ctx = train(cfg, model=model, tok=tok)
    assert len(seen) == 2 and all(hf_tok.decode(ids).startswith("<|im_start|>system\nBe brief.") for ids in seen)
    prompts = ctx.task.prompts("train")
    assert len(prompts) == 4 and all(p.text.messages[0]["content"] == "Be brief." for p in prompts)
    rendered = hf_tok.decode(encode_prompt(tok, prompts[0].text))
    assert rendered.startswith("<|im_start|>system\nBe brief.<|im_end|>\n<|im_start|>user\n")
    assert rendered.endswith("\\boxed{}.\n<|im_end|>\n<|im_start|>assistant\n")
