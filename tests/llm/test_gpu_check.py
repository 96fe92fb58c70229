"""llm.gpu_check on the CPU with its tiny shape: the code path of the one-GPU check (FSDP2 world 1,
synthetic task, timing, MFU arithmetic, atomic JSON) runs and its numbers are consistent."""

import json

import pytest

from llm.gpu_check import TINY, main, parse


def test_tiny_check_runs_and_numbers_agree(tmp_path):
    out = tmp_path / "check.json"
    argv = ["--tiny", "--device", "cpu", "--out", str(out), "--steps", "3", "--warmup", "1", "--prompts", "2",
            "--group-size", "4", "--prompt-len", "6", "--max-new-tokens", "5", "--peak-tflops", "2.5",
            "--autocast", "bfloat16", "--gradient-checkpointing", "true"]
    r = main(argv)
    assert json.loads(out.read_text()) == json.loads(json.dumps(r))  # the JSON holds the printed numbers
    assert r["strategy"] == "fsdp2" and r["shape"] == "tiny" and r["measured_steps"] == 2
    assert r["autocast"] == "bfloat16" and r["gradient_checkpointing"] is True
    h, v, inter, L = TINY["hidden_size"], TINY["vocab_size"], TINY["intermediate_size"], TINY["num_hidden_layers"]
    kv = h // TINY["num_attention_heads"] * TINY["num_key_value_heads"]
    layer = h * h * 2 + 2 * h * kv + h + 2 * kv + 3 * h * inter + 2 * h  # q,o; k,v; biases; MLP; 2 norms
    assert r["params"] == v * h + L * layer + h  # tied embeddings counted once, final norm
    measured = r["steps"][1:]
    tokens = 2 * 4 * (6 + 5) * len(measured)  # rows x (prompt + response) per measured step, 1 epoch
    update_s = sum(s["update_s"] for s in measured)
    assert r["update_tokens_per_s"] == pytest.approx(tokens / update_s, rel=1e-9)
    assert r["rollout_tokens_per_s"] == pytest.approx(2 * 4 * 5 * len(measured) /
                                                      sum(s["rollout_s"] for s in measured), rel=1e-9)
    assert r["mfu"] == pytest.approx(6 * r["params"] * r["update_tokens_per_s"] / 2.5e12, rel=1e-9)
    assert r["peak_memory_gib"] > 0 and r["peak_memory_kind"] == "cpu_max_rss"
    assert r["collective"] == {"backend": "gloo", "device": "cpu", "ok": True}
    assert all(s["loss"] is not None for s in r["steps"])
    assert 0 < sum(s["reward"] for s in r["steps"]) < len(r["steps"])  # rewards vary: real gradients


@pytest.mark.parametrize("flag, value, allowed", [("--peak-tflops", "0", "> 0"), ("--device", "tpu", "auto, cuda, cpu"),
                                                  ("--gradient-checkpointing", "yes", "true, false")])
def test_bad_flags_one_line(flag, value, allowed):
    with pytest.raises(ValueError, match=rf"^{flag} = .*{value}.* is invalid; allowed: {allowed}$"):
        parse([flag, value])
