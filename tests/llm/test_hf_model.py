"""Any Hugging Face causal LM + tokenizer from a local directory: the generic path (no char tokenizer).

The directory is built here (LlamaForCausalLM.save_pretrained + a fast tokenizer saved with
save_pretrained), exactly what a downloaded hub model looks like; nothing is downloaded."""

import math

import torch

from llm import config as C
from llm.logger import read_metrics
from llm.models import HFTokenizer, load_model, tiny_llama
from llm.train import train


def _hf_dir(path):
    from tokenizers import Regex, Tokenizer, decoders, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast
    vocab = {"<pad>": 0, "<s>": 1, "</s>": 2, "<unk>": 3, **{c: i + 4 for i, c in enumerate("0123456789:=")}}
    tk = Tokenizer(models.WordLevel(vocab, unk_token="<unk>"))
    tk.pre_tokenizer = pre_tokenizers.Split(Regex("."), behavior="isolated")
    tk.decoder = decoders.Fuse()
    fast = PreTrainedTokenizerFast(tokenizer_object=tk, bos_token="<s>", eos_token="</s>",
                                   pad_token="<pad>", unk_token="<unk>")
    torch.manual_seed(0)
    tiny_llama(len(vocab), "tiny", hidden_size=32).save_pretrained(path)
    fast.save_pretrained(path)
    return path


def test_hf_directory_trains(tmp_path, train_config):
    path = str(_hf_dir(tmp_path / "hf"))
    model, tok = load_model(C.ModelConfig(name=path))
    assert isinstance(tok, HFTokenizer) and tok.eos_id == 2 and tok.pad_id == 0 and tok.bos_id == 1
    assert tok.decode(tok.encode("12:3=") + [tok.eos_id]) == "12:3="
    ctx = train(train_config(tmp_path / "run", path, "reverse_kl", steps=2))
    assert ctx.ref_model is not None
    assert all(math.isfinite(r["loss"]) and math.isfinite(r["kl_ref"]) for r in read_metrics(tmp_path / "run"))
    reloaded, _ = load_model(C.ModelConfig(name=str(tmp_path / "run" / "model")))
    assert type(reloaded) is type(model)
