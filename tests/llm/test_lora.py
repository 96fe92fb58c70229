"""LoRA through peft (model.lora_rank, llm/lora.py, issue 12): only adapters train, the reverse-KL
reference is the adapter-disabled policy (no copy), checkpoints resume exactly, the final model is
saved merged and loads as a plain Hugging Face model."""

import json
import warnings

import pytest
import torch

from llm import config as C
from llm.models import load_model
from llm.rollout import sequence_logp
from llm.train import TrainConfig, train

LORA = {"hidden_size": 32, "num_layers": 1, "lora_rank": 4, "lora_alpha": 8.0}


def lora_config(tmp_path, train_config, name="entropy", steps=2, **run):
    return train_config(tmp_path, name=name, steps=steps, model=dict(LORA), optim={"lr": 1e-2},
                        run={"seed": 3, **run})


def run(cfg, **kw):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        return train(cfg, **kw)


def base_of(ctx) -> dict:
    """The base (non-adapter) weights of the policy under their plain Hugging Face names."""
    return {n.replace("base_layer.", ""): p.detach().clone() for n, p in ctx.model.named_parameters()
            if "lora_" not in n}


def logps(model, tok):
    prompts = [[1, 20, 21, 22], [1, 23, 24]]
    tokens = torch.tensor([[30, 31, 32], [33, 34, 2]])
    return sequence_logp(model, prompts, tokens, torch.ones(2, 3), tok.pad_id, 1.0)[0]


def test_only_adapters_train_and_the_final_model_is_merged(tmp_path, train_config):
    cfg = lora_config(tmp_path, train_config)
    torch.manual_seed(cfg.run.seed)  # the run's own seeding: the same initial policy
    fresh, _ = load_model(cfg.model)
    ctx = run(cfg)
    trained = [n for n, p in ctx.model.named_parameters() if p.requires_grad]
    assert trained and all("lora_" in n for n in trained)
    opt_params = [p for g in ctx.optimizer.param_groups for p in g["params"]]
    assert len(opt_params) == len(trained)
    base = base_of(ctx)
    for n, p in fresh.named_parameters():  # base weights untouched
        assert torch.equal(base[n], p.detach()), n
    lora_b = [p for n, p in ctx.model.named_parameters() if "lora_B" in n]
    assert any(bool(p.abs().sum() > 0) for p in lora_b)  # B starts at 0: the adapters moved
    merged, tok = load_model(C.ModelConfig(name=str(tmp_path / "model")))
    assert not any("lora" in n for n, _ in merged.named_parameters())
    torch.testing.assert_close(logps(merged, ctx.tok), logps(ctx.model, ctx.tok), rtol=0, atol=1e-5)
    assert not torch.allclose(logps(fresh, ctx.tok), logps(ctx.model, ctx.tok), atol=1e-5)


def test_reference_is_the_adapter_disabled_policy(tmp_path, train_config):
    cfg = lora_config(tmp_path, train_config, name="reverse_kl+entropy", steps=3)
    torch.manual_seed(cfg.run.seed)
    fresh, _ = load_model(cfg.model)
    ctx = run(cfg)
    assert ctx.ref_model is ctx.model  # no second copy in memory
    with torch.no_grad():
        with ctx.lora.disable_adapter():
            ref = logps(ctx.ref_model, ctx.tok)
        policy = logps(ctx.model, ctx.tok)
        base = logps(fresh, ctx.tok)
    torch.testing.assert_close(ref, base, rtol=0, atol=1e-6)
    assert not torch.allclose(policy, base, atol=1e-5)  # the adapters are back on after the context
    rows = [json.loads(x) for x in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    assert len(rows) == 3 and all(r["kl_loss"] == r["kl_loss"] for r in rows)  # finite, not NaN
    assert rows[-1]["kl_ref"] > 0  # the policy left its reference


def test_lora_resume_is_exact(tmp_path, train_config):
    full = run(lora_config(tmp_path / "full", train_config, steps=2))
    run(lora_config(tmp_path / "cut", train_config, steps=1))
    cfg = lora_config(tmp_path / "cut", train_config, steps=2, resume=True)
    resumed = run(cfg)
    for (n, p), (_, q) in zip(full.model.named_parameters(), resumed.model.named_parameters()):
        assert torch.equal(p, q), n


def test_lora_config_errors(tmp_path, train_config):
    with pytest.raises(ValueError, match=r"^model\.lora_rank = -1 is invalid; allowed: >= 0"):
        C.parse(TrainConfig, ["--model.lora_rank", "-1"])
    with pytest.raises(ValueError, match=r"^model\.lora_dropout = 1\.0 is invalid; allowed: \[0, 1\)$"):
        C.parse(TrainConfig, ["--model.lora_dropout", "1.0"])
    cfg = train_config(tmp_path, model={**LORA, "lora_targets": "no_such_proj"})
    with pytest.raises(ValueError, match=r"^model\.lora_targets = 'no_such_proj' is invalid; allowed: module"):
        run(cfg)


def test_lora_with_checkpointing_and_bf16_autocast(tmp_path, train_config):
    cfg = train_config(tmp_path, name="entropy", steps=1, optim={"lr": 1e-2},
                       model={**LORA, "gradient_checkpointing": True, "autocast": "bfloat16"})
    ctx = run(cfg)
    lora_b = [p for n, p in ctx.model.named_parameters() if "lora_B" in n]
    assert lora_b and any(bool(p.abs().sum() > 0) for p in lora_b)
    assert all(p.dtype == torch.float32 for p in ctx.model.parameters())


def test_lora_needs_a_hugging_face_model():
    from llm.lora import apply_lora
    from llm.models import BanditLM
    with pytest.raises(ValueError, match=r"^model\.lora_rank = 4 is invalid; allowed: 0 for BanditLM"):
        apply_lora(BanditLM(2, 3), C.ModelConfig(name="bandit", lora_rank=4))
    assert apply_lora(BanditLM(2, 3), C.ModelConfig(name="bandit")) is None
