"""FSDP2 (dist.strategy = "fsdp2") on the CPU with gloo: a 2-process sharded run, interrupted and resumed
from its sharded checkpoint, equals one process (1e-6); a 1-process FSDP2 run equals DDP and resumes
exactly; the final model is written in the Hugging Face layout (loadable by llm.models.load_model)."""

import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from llm import config as C
from llm.checkpoint import latest_checkpoint, load_checkpoint
from llm.dist import cleanup
from llm.logger import read_metrics
from llm.models import load_model
from llm.train import train


@pytest.fixture(autouse=True)
def _no_process_group_left():
    """In-process FSDP2 runs create a one-process group; leave none behind for other tests."""
    yield
    cleanup()


KW = dict(rollout={"prompts_per_step": 8}, optim={"optimizer": "adamw", "num_minibatches": 2, "micro_groups": 1},
          model={"dtype": "float64"}, task={"num_prompts": 8})


def _weights(path) -> torch.Tensor:
    model, _ = load_model(C.ModelConfig(name=str(path)))
    return torch.cat([p.detach().flatten() for p in model.parameters()])


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _torchrun(cfg_file) -> None:
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc-per-node", "2", "--master-addr",
           "127.0.0.1", "--master-port", str(_free_port()), "-m", "llm.train", "--config", str(cfg_file)]
    done = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]


def test_fsdp2_two_processes_resumed_equal_one(sft_model, train_config, tmp_path):
    """2 gloo processes, FSDP2, gradient accumulation (micro_groups 1) over 2 minibatches, AdamW; the
    run stops after 2 steps and resumes from its sharded checkpoint to 4 = one process, 4 steps
    (weights, losses, gradient norms, the held-out evaluation at step 4)."""
    ev = {"eval_every": 4, "eval_samples": 4}  # held-out eval at step 4: sampling with gathered shards
    train(train_config(tmp_path / "single", sft_model, "grpo", steps=4, run=ev, **KW))
    cut = train_config(tmp_path / "fsdp", sft_model, "grpo", steps=2, dist={"strategy": "fsdp2"}, run=ev, **KW)
    _torchrun(C.save(cut, tmp_path / "a"))
    ckpt = latest_checkpoint(tmp_path / "fsdp")
    assert ckpt.name == "step_00000002" and (ckpt / "dcp" / ".metadata").is_file()
    assert not (ckpt / "model.safetensors").exists()  # sharded, not a gathered copy
    resumed = train_config(tmp_path / "fsdp", sft_model, "grpo", steps=4, dist={"strategy": "fsdp2"},
                           run={"resume": True, **ev}, **KW)
    _torchrun(C.save(resumed, tmp_path / "b"))
    a, b = _weights(tmp_path / "single" / "model"), _weights(tmp_path / "fsdp" / "model")
    assert (a - _weights(sft_model)).abs().max() > 1e-4  # training moved the weights
    assert (a - b).abs().max() < 1e-6
    ra, rb = read_metrics(tmp_path / "single"), read_metrics(tmp_path / "fsdp")
    assert [r["step"] for r in rb] == [1, 2, 3, 4]
    assert [r["pass@1"] for r in ra] == [r["pass@1"] for r in rb]  # the same samples were drawn
    assert all(abs(x["loss"] - y["loss"]) < 1e-9 for x, y in zip(ra, rb))
    assert all(abs(x["grad_norm"] - y["grad_norm"]) < 1e-9 for x, y in zip(ra, rb))
    evals = [k for k in ra[-1] if k.startswith("eval/") and k != "eval/time_s"]  # time_s: wall clock
    assert evals and all(abs(ra[-1][k] - rb[-1][k]) < 1e-9 for k in evals)


def test_fsdp2_one_process_equals_ddp_and_resumes(sft_model, train_config, tmp_path):
    """In one process FSDP2 (a one-process group) gives DDP's weights bit for bit, and a run cut after 1
    step and resumed from the sharded checkpoint equals the uninterrupted one."""
    train(train_config(tmp_path / "ddp", sft_model, "grpo", steps=2, **KW))
    fsdp = dict(dist={"strategy": "fsdp2"}, **KW)
    train(train_config(tmp_path / "full", sft_model, "grpo", steps=2, **fsdp))
    train(train_config(tmp_path / "cut", sft_model, "grpo", steps=1, **fsdp))
    train(train_config(tmp_path / "cut", sft_model, "grpo", steps=2, run={"resume": True}, **fsdp))
    ddp, full, cut = (_weights(tmp_path / d / "model") for d in ("ddp", "full", "cut"))
    assert (ddp - _weights(sft_model)).abs().max() > 1e-4
    assert torch.equal(ddp, full) and torch.equal(full, cut)
    assert Path(tmp_path, "full", "model", "config.json").is_file()  # Hugging Face layout
    assert [r["loss"] for r in read_metrics(tmp_path / "full")] == [r["loss"] for r in read_metrics(tmp_path / "cut")]


def test_sharded_checkpoint_refused_by_ddp(sft_model, train_config, tmp_path):
    """A sharded checkpoint resumed with dist.strategy = 'ddp' (allow_config_change) is a one-line error."""
    train(train_config(tmp_path, sft_model, "grpo", steps=1, dist={"strategy": "fsdp2"}, **KW))
    model, _ = load_model(C.ModelConfig(name=sft_model, dtype="float64"))
    with pytest.raises(ValueError, match=r"is sharded \(dist.strategy = 'fsdp2'\)"):
        load_checkpoint(latest_checkpoint(tmp_path), model)


def test_dist_strategy_validated(train_config, tmp_path):
    with pytest.raises(ValueError, match=r"^dist.strategy = 'zero3' is invalid; allowed: ddp, fsdp2$"):
        train_config(tmp_path, "tiny", "grpo", dist={"strategy": "zero3"})


def test_sharded_checkpoint_loads_no_code(tmp_path):
    """A DCP checkpoint whose metadata pickle calls a function is refused (ValueError naming the file)
    before the call runs; an untampered one loads the saved weights and optimiser state."""
    import pickle

    from llm.dist import Dist
    from llm.fsdp import load_sharded, save_sharded, shard
    from llm.models import tiny_llama

    def build():
        torch.manual_seed(0)
        model = shard(tiny_llama(40, hidden_size=32), Dist())
        return model, torch.optim.AdamW(model.parameters(), lr=1e-2)

    model, opt = build()
    model(torch.randint(0, 40, (2, 5))).logits.sum().backward()
    opt.step()
    save_sharded(tmp_path / "ok", model, opt)
    fresh, fresh_opt = build()
    load_sharded(tmp_path / "ok", fresh, fresh_opt)
    for p, q in zip(model.parameters(), fresh.parameters()):
        assert torch.equal(p.full_tensor(), q.full_tensor())
    assert fresh_opt.state_dict()["state"][0]["step"] == 1

    class Payload:
        def __reduce__(self):
            return (Path.touch, (tmp_path / "pwned",))

    (tmp_path / "ok" / ".metadata").write_bytes(pickle.dumps(Payload()))
    with pytest.raises(ValueError, match=r"\.metadata is invalid; allowed: torch distributed checkpoint "
                                         r"metadata only \(refused: global 'pathlib.Path.touch' is not allowed\)"):
        load_sharded(tmp_path / "ok", fresh, fresh_opt)
    assert not (tmp_path / "pwned").exists()


def test_final_model_hf_layout_tied_embeddings(tmp_path):
    """A sharded Qwen2 with tied embeddings is gathered and saved in the Hugging Face layout; loading it
    back with transformers gives the sharded model's logits."""
    from transformers import AutoModelForCausalLM

    from llm.checkpoint import save_final
    from llm.dist import Dist
    from llm.fsdp import gathered, shard
    from llm.gpu_check import TINY, IdTokenizer, build_model

    torch.manual_seed(0)
    model = shard(build_model(TINY, torch.device("cpu")), Dist())
    with torch.no_grad():  # make the shared matrix differ from any fresh initialisation
        model.lm_head.weight.mul_(2.0)
    save_final(model, IdTokenizer(TINY["vocab_size"]), tmp_path / "model", Dist())
    assert (tmp_path / "model" / "config.json").is_file() and (tmp_path / "model" / "model.safetensors").is_file()
    loaded = AutoModelForCausalLM.from_pretrained(tmp_path / "model")
    assert loaded.lm_head.weight.data_ptr() == loaded.model.embed_tokens.weight.data_ptr()  # still tied
    x = torch.randint(1, TINY["vocab_size"], (2, 7))
    with torch.no_grad(), gathered(model):
        want = model(x).logits
    assert torch.equal(loaded(x).logits, want)


@pytest.mark.parametrize("model, allowed", [
    ("bandit", r"^dist.strategy = 'fsdp2' is invalid for model.name = 'bandit'; allowed: ddp$"),
    ("lora", r"^dist.strategy = 'fsdp2' is invalid with model.lora_rank > 0; allowed: ddp$")])
def test_fsdp2_refuses_bandit_and_lora(bandit_config, train_config, tmp_path, model, allowed):
    if model == "bandit":
        cfg = bandit_config(tmp_path, dist={"strategy": "fsdp2"})
    else:
        cfg = train_config(tmp_path, "tiny", "grpo", dist={"strategy": "fsdp2"}, model={"lora_rank": 2})
    with pytest.raises(ValueError, match=allowed):
        train(cfg)
