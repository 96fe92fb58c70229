"""Models and tokenizers: any Hugging Face causal LM, tiny Llama-style presets, and `BanditLM`.

Every model is called like a Hugging Face causal LM:
`model(input_ids, attention_mask=None, position_ids=None, past_key_values=None, use_cache=False)`
returns an object with `.logits` (B, L, V) and `.past_key_values`; the KV-cache keyword is whatever
`forward` declares (`cache` on transformers 5.x; see `llm.rollout.decode_step`). Every tokenizer has
`encode(text) -> list[int]` (no special tokens), `decode(ids) -> str`, `pad_id`, `bos_id`, `eos_id`
(None: responses end only at max_new_tokens) and `vocab_size`.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn

ALPHABET = "0123456789+-*/()=:;,.<>?!_ abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ"
SPECIALS = ("<pad>", "<bos>", "<eos>", "<unk>")

# Llama-style presets: (hidden, layers, heads, intermediate); parameter counts at vocab 83:
# tiny 0.35M, small 3.2M.
PRESETS = {"tiny": (128, 2, 4, 256), "small": (256, 4, 8, 688)}


class CharTokenizer:
    """Character-level tokenizer: ids 0..3 are <pad> <bos> <eos> <unk>, then one id per character."""

    def __init__(self, alphabet: str = ALPHABET):
        self.alphabet = alphabet
        self.itos = list(SPECIALS) + list(alphabet)
        self.stoi = {c: i for i, c in enumerate(self.itos) if i >= len(SPECIALS)}
        self.pad_id, self.bos_id, self.eos_id, self.unk_id = 0, 1, 2, 3
        self.vocab_size = len(self.itos)

    def encode(self, text: str) -> list[int]:
        return [self.stoi.get(c, self.unk_id) for c in text]

    def decode(self, ids) -> str:
        """Text of `ids`; <pad> <bos> <eos> are dropped, and an id beyond the alphabet (an LM head
        padded past the tokenizer) reads as <unk>."""
        n = len(self.itos)
        return "".join(self.itos[i] if i < n else self.itos[self.unk_id] for i in ids
                       if i >= len(SPECIALS) or i == self.unk_id)

    def save(self, path) -> None:
        Path(path, "char_tokenizer.json").write_text(json.dumps({"alphabet": self.alphabet}))

    @classmethod
    def load(cls, path) -> CharTokenizer:
        return cls(json.loads(Path(path, "char_tokenizer.json").read_text())["alphabet"])


class HFTokenizer:
    """Adapter giving a Hugging Face tokenizer the interface above."""

    def __init__(self, tok):
        self.tok = tok
        self.eos_id = tok.eos_token_id
        self.bos_id = tok.bos_token_id
        self.pad_id = tok.pad_token_id if tok.pad_token_id is not None else tok.eos_token_id
        self.vocab_size = len(tok)
        self.chat_template = getattr(tok, "chat_template", None)  # None: no template (llm.chat)

    def encode(self, text: str) -> list[int]:
        return self.tok.encode(text, add_special_tokens=False)

    def render_chat(self, messages: list[dict]) -> str:
        """`messages` rendered by the chat template, ending with the assistant's generation prompt."""
        return self.tok.apply_chat_template(messages, add_generation_prompt=True, tokenize=False)

    def decode(self, ids) -> str:
        return self.tok.decode(list(ids), skip_special_tokens=True)

    def save(self, path) -> None:
        self.tok.save_pretrained(path)


@dataclass
class _Out:
    logits: torch.Tensor
    past_key_values: object = None


class BanditLM(nn.Module):
    """Degenerate LM for the toy-to-scale link: a prompt is one token p in [0, P), a response one
    token y in [0, K), and logits(y | p) = table[p, y] (the tabular softmax policy of the simulator).
    Every position returns the prompt's row, so position 0 predicts the response token."""

    def __init__(self, num_prompts: int, num_outcomes: int, logits=None, dtype=torch.float32):
        super().__init__()
        init = torch.zeros(num_prompts, num_outcomes, dtype=dtype) if logits is None else logits
        self.table = nn.Parameter(torch.as_tensor(init, dtype=dtype).clone())  # (P, K)

    def forward(self, input_ids, attention_mask=None, position_ids=None, past_key_values=None,
                use_cache=False, **_):
        prompt = input_ids[:, :1] if past_key_values is None else past_key_values  # (B, 1)
        logits = self.table[prompt].expand(-1, input_ids.shape[1], -1)  # (B, L, K)
        return _Out(logits=logits, past_key_values=prompt if use_cache else None)

    def save_pretrained(self, path, **_) -> None:
        from safetensors.torch import save_file
        save_file({"table": self.table.detach().contiguous()}, str(Path(path, "model.safetensors")))
        P, K = self.table.shape
        Path(path, "bandit.json").write_text(json.dumps({"num_prompts": P, "num_outcomes": K,
                                                         "dtype": str(self.table.dtype)[6:]}))


class BanditTokenizer:
    """Prompt text 'p<i>' <-> token i; response token k <-> text '<k>'. No special tokens."""

    def __init__(self, num_outcomes: int):
        self.vocab_size, self.pad_id, self.bos_id, self.eos_id = num_outcomes, 0, None, None

    def encode(self, text: str) -> list[int]:
        return [int(text[1:])] if text.startswith("p") else [int(text)]

    def decode(self, ids) -> str:
        return ",".join(str(int(i)) for i in ids)

    def save(self, path) -> None:
        Path(path, "bandit_tokenizer.json").write_text(json.dumps({"num_outcomes": self.vocab_size}))


def tiny_llama(vocab_size: int, preset: str = "tiny", hidden_size: int = 0, num_layers: int = 0,
               max_positions: int = 256, dtype=torch.float32, field: str = "model.name"):
    """A freshly initialised Llama-style causal LM from a preset (no download); `field` names the
    config field the preset came from in the error for an unknown preset."""
    if preset not in PRESETS:
        raise ValueError(f"{field} = {preset!r} is invalid; allowed: {', '.join(PRESETS)}")
    from transformers import LlamaConfig, LlamaForCausalLM
    h, n, heads, inter = PRESETS[preset]
    h, n = hidden_size or h, num_layers or n
    cfg = LlamaConfig(vocab_size=vocab_size, hidden_size=h, num_hidden_layers=n,
                      num_attention_heads=heads, num_key_value_heads=heads, intermediate_size=inter or 2 * h,
                      max_position_embeddings=max_positions, pad_token_id=0, bos_token_id=1,
                      eos_token_id=2, tie_word_embeddings=False, attention_dropout=0.0)
    return LlamaForCausalLM(cfg).to(dtype)


def load_model(mcfg, task=None):
    """(model, tokenizer) for ModelConfig `mcfg`: a preset (char tokenizer), 'bandit' (sizes from the
    bandit `task`), a directory written by `save_model`, or any Hugging Face causal LM id/path."""
    dtype = getattr(torch, mcfg.dtype)
    name = mcfg.name
    if name in PRESETS:
        tok = CharTokenizer()
        return tiny_llama(tok.vocab_size, name, mcfg.hidden_size, mcfg.num_layers, dtype=dtype), tok
    if name == "bandit":
        if task is None or not hasattr(task, "rewards"):
            raise ValueError("model.name = 'bandit' needs task.name = 'bandit'")
        P, K = task.rewards.shape
        return BanditLM(P, K, dtype=dtype), BanditTokenizer(K)
    path = Path(name)
    if (path / "bandit.json").exists():
        from safetensors.torch import load_file
        meta = json.loads((path / "bandit.json").read_text())
        table = load_file(str(path / "model.safetensors"))["table"]
        return BanditLM(meta["num_prompts"], meta["num_outcomes"], table, dtype), \
            BanditTokenizer(meta["num_outcomes"])
    from transformers import AutoModelForCausalLM, AutoTokenizer
    from transformers.utils import logging as hf_logging
    hf_logging.disable_progress_bar()
    where = "the model directory" if path.is_dir() else "the Hub id (not a local directory)"
    allowed = f"{', '.join(PRESETS)}, bandit, a model directory with config.json, or a Hub id 'org/name'"
    if path.is_dir() and not (path / "config.json").is_file():
        raise ValueError(f"model.name = {name!r} is invalid; allowed: {allowed} ({path} has no "
                         "config.json or bandit.json)")
    try:
        model = AutoModelForCausalLM.from_pretrained(name, dtype=dtype)
        if (path / "char_tokenizer.json").exists():
            return model, CharTokenizer.load(path)
        return model, HFTokenizer(AutoTokenizer.from_pretrained(name))
    except OSError as e:  # transformers reports a missing / unreachable model as OSError
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise ValueError(f"model.name = {name!r} is invalid; allowed: {allowed} (loading {where} "
                         f"failed: {first})") from e


def save_model(model, tok, path) -> None:
    """Write model weights (safetensors), its config and the tokenizer into directory `path`."""
    Path(path).mkdir(parents=True, exist_ok=True)
    model = getattr(model, "module", model)
    from transformers.utils import logging as hf_logging
    hf_logging.disable_progress_bar()
    model.save_pretrained(path, safe_serialization=True)
    tok.save(path)


def enable_gradient_checkpointing(model) -> None:
    """Hugging Face gradient checkpointing (use_reentrant=False) of every decoder layer. HF checkpoints
    a layer only while that layer is in training mode, so the checkpointed layers themselves are
    flagged training (not their submodules: dropout keeps the mode the model was loaded in, and
    no-grad rollouts keep their KV cache). A ValueError names model.gradient_checkpointing for a
    model without it (BanditLM)."""
    if not getattr(model, "supports_gradient_checkpointing", False):
        raise ValueError("model.gradient_checkpointing = True is invalid; allowed: false for "
                         f"{type(model).__name__} (it has no Hugging Face gradient checkpointing)")
    kw = {"use_reentrant": False}
    if hasattr(model, "activation_checkpointing_enable"):  # transformers >= 5.x name
        model.activation_checkpointing_enable(activation_checkpointing_kwargs=kw)
    else:
        model.gradient_checkpointing_enable(gradient_checkpointing_kwargs=kw)
    from transformers.modeling_layers import GradientCheckpointingLayer
    for m in model.modules():
        if isinstance(m, GradientCheckpointingLayer) and m.gradient_checkpointing:
            m.training = True  # this flag only: submodules keep their mode


def num_params(model) -> int:
    return sum(p.numel() for p in model.parameters())
