"""The prepared GPU check: throughput, memory and MFU of llm.train on a Qwen2.5-0.5B-shaped model.

    python -m llm.gpu_check --out gpu_check.json                 # one GPU (sized for < 8 min on an H200)
    python -m llm.gpu_check --tiny --device cpu --out check.json # the same code path on a tiny shape

No download: a randomly initialised Qwen2ForCausalLM of Qwen2.5-0.5B's shape (hidden 896, 24 layers,
14 heads, 2 KV heads, intermediate 4864, vocabulary 151936, tied embeddings) built from a config,
an id tokenizer (text = token ids) and a synthetic task (reward 1 when the response's first token
id is even: about half the rows of a random model, so the GRPO loss has real gradients; EOS none,
so every row samples max_new_tokens). The trainer runs as configured by TrainConfig fields:
dist.strategy = fsdp2 (world 1: a one-process group), model.autocast = bfloat16 (float32 master
weights) and model.gradient_checkpointing = true (flags --autocast none / --gradient-checkpointing
false leave a field at its default). Each step times `rollout_step` and `ppo_update` separately
(CUDA synchronised); the first `--warmup` steps are not counted.

Reported (printed and written atomically as JSON to --out): rollout tokens/s (sampled tokens),
update tokens/s (prompt + response tokens through forward and backward, times ppo_epochs), the
update's model FLOP/s 6 * params * tokens / time (params counted once when tied; attention's
sequence-length term left out) and its MFU against --peak-tflops (default 989: H200 dense bf16),
peak memory (CUDA max allocated; the CPU's max RSS on a CPU run), and an all_reduce of host values
through llm.dist on the run's backend (NCCL on a GPU).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import resource
import time
from pathlib import Path

import numpy as np
import torch

from collapse_lab.runs import atomic_write

from . import config as C
from .tasks.base import Prompt, Score, Task

QWEN25_05B = dict(hidden_size=896, num_hidden_layers=24, num_attention_heads=14, num_key_value_heads=2,
                  intermediate_size=4864, vocab_size=151936)
TINY = dict(hidden_size=32, num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=2,
            intermediate_size=64, vocab_size=256)


class IdTokenizer:
    """Text is space-separated token ids; every id of the vocabulary decodes. No BOS, no EOS."""

    def __init__(self, vocab_size: int):
        self.vocab_size, self.pad_id, self.bos_id, self.eos_id = vocab_size, 0, None, None

    def encode(self, text: str) -> list[int]:
        return [int(t) for t in text.split()]

    def decode(self, ids) -> str:
        return " ".join(str(int(i)) for i in ids)

    def save(self, path) -> None:
        Path(path, "id_tokenizer.json").write_text(json.dumps({"vocab_size": self.vocab_size}))


class SyntheticTask(Task):
    """Prompts of `prompt_len` random token ids; reward 1 when the first response id is even; the
    outcome is that id mod 16 (so distinct-correct counts are defined)."""

    name = "synthetic"

    def __init__(self, vocab_size: int, num_prompts: int, prompt_len: int, seed: int = 0):
        rng = np.random.default_rng(seed)
        ids = rng.integers(1, vocab_size, size=(num_prompts, prompt_len))
        self._prompts = [Prompt(i, " ".join(map(str, row))) for i, row in enumerate(ids.tolist())]

    def prompts(self, split: str) -> list[Prompt]:
        return self._prompts

    def check(self, prompt: Prompt, response: str) -> Score:
        first = response.split()[:1]
        if not first:
            return Score(0.0, None, "unparsed")
        tid = int(first[0])
        return Score(float(tid % 2 == 0), str(tid % 16), "correct" if tid % 2 == 0 else "wrong")


def build_model(shape: dict, device: torch.device):
    """A randomly initialised Qwen2ForCausalLM of `shape` (tied embeddings), float32, on `device`."""
    from transformers import Qwen2Config, Qwen2ForCausalLM
    cfg = Qwen2Config(**shape, tie_word_embeddings=True, max_position_embeddings=4096, rope_theta=1e6,
                      attention_dropout=0.0, pad_token_id=0, bos_token_id=None, eos_token_id=None)
    with torch.device(device):
        return Qwen2ForCausalLM(cfg).float()


def train_config(a, out_dir: str, device: str):
    """The TrainConfig of the check; precision and checkpointing set by field name (only when asked)."""
    from .train import TrainConfig
    model = {"name": "tiny", "dtype": "float32"}
    if a.autocast != "none":
        model["autocast"] = a.autocast
    if a.gradient_checkpointing:
        model["gradient_checkpointing"] = True
    data = {"model": model, "dist": {"strategy": a.strategy},
            "rollout": {"group_size": a.group_size, "prompts_per_step": a.prompts, "max_new_tokens": a.max_new_tokens},
            "recipe": {"name": "grpo"}, "optim": {"lr": 1e-6, "micro_groups": a.micro_groups},
            "run": {"out_dir": out_dir, "steps": a.steps, "progress": False, "device": device, "seed": 0}}
    cfg = C.from_dict(TrainConfig, data)
    C.validate(cfg)
    return cfg


def _sync(device: torch.device) -> float:
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    return time.perf_counter()


def peak_memory_gib(device: torch.device) -> tuple[float, str]:
    """(GiB, what): CUDA max allocated on a GPU, else the process's max resident set size."""
    if device.type == "cuda":
        return torch.cuda.max_memory_allocated(device) / 2**30, "cuda_max_allocated"
    rss_kib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return rss_kib / 2**20, "cpu_max_rss"


def collective_check(dist) -> dict:
    """all_reduce of [1, 2] through llm.dist on the run's process group, with world forced to 2 so the
    collective path runs (a one-process group returns the values): the NCCL-device fix on a GPU."""
    import torch.distributed as tdist

    from .dist import all_reduce_many, backend, reduce_device
    n = tdist.get_world_size() if tdist.is_available() and tdist.is_initialized() else 1  # the real group
    out = all_reduce_many([1.0, 2.0], dataclasses.replace(dist, world=2))
    return {"backend": backend(), "device": str(reduce_device(dist)), "ok": out == [float(n), 2.0 * n]}


def run_check(a) -> dict:
    """Build, run `a.steps` trainer steps, time them; the result dict (also written to a.out)."""
    from .train import ppo_update, rollout_step, setup
    device = torch.device(a.device if a.device != "auto" else ("cuda" if torch.cuda.is_available() else "cpu"))
    shape = TINY if a.tiny else QWEN25_05B
    torch.manual_seed(0)
    t0 = time.perf_counter()
    model = build_model(shape, device)
    task = SyntheticTask(shape["vocab_size"], max(a.prompts * 4, 8), a.prompt_len)
    tok = IdTokenizer(shape["vocab_size"])
    cfg = train_config(a, str(Path(a.out).parent / "gpu_check_run"), device.type)
    ctx = setup(cfg, task, model, tok)
    params = sum(p.numel() for p in ctx.model.parameters())
    build_s = time.perf_counter() - t0
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    roll_tok = upd_tok = roll_s = upd_s = 0.0
    steps = []
    for step in range(a.steps):
        t = _sync(device)
        exp = rollout_step(ctx, step)
        t_roll = _sync(device)
        out = ppo_update(ctx, exp)
        t_upd = _sync(device)
        ctx.step += 1
        sampled = float(exp.mask.sum())
        processed = float(sum(len(p) for p in exp.prompt_tokens) + exp.mask.shape[0] * exp.mask.shape[1])
        processed *= cfg.optim.ppo_epochs
        steps.append({"rollout_s": t_roll - t, "update_s": t_upd - t_roll, "loss": out.get("loss"),
                      "reward": float(exp.rewards.mean())})
        if step >= a.warmup:
            roll_tok, upd_tok, roll_s, upd_s = roll_tok + sampled, upd_tok + processed, roll_s + t_roll - t, \
                upd_s + t_upd - t_roll
    flops = 6.0 * params * upd_tok / max(upd_s, 1e-12)
    mem, mem_kind = peak_memory_gib(device)
    result = {
        "device": torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu",
        "torch": torch.__version__, "shape": "tiny" if a.tiny else "Qwen2.5-0.5B", "params": params,
        "strategy": cfg.dist.strategy, "autocast": getattr(cfg.model, "autocast", "absent"),
        "gradient_checkpointing": getattr(cfg.model, "gradient_checkpointing", "absent"),
        "rows_per_step": a.prompts * a.group_size, "prompt_len": a.prompt_len, "max_new_tokens": a.max_new_tokens,
        "measured_steps": a.steps - a.warmup, "build_s": build_s,
        "rollout_tokens_per_s": roll_tok / max(roll_s, 1e-12), "update_tokens_per_s": upd_tok / max(upd_s, 1e-12),
        "update_tflops": flops / 1e12, "peak_tflops": a.peak_tflops, "mfu": flops / (a.peak_tflops * 1e12),
        "peak_memory_gib": mem, "peak_memory_kind": mem_kind, "collective": collective_check(ctx.dist),
        "steps": steps}
    atomic_write(a.out, (json.dumps(result, indent=1) + "\n").encode())
    return result


def parse(argv=None) -> argparse.Namespace:
    """Flags of the check, validated (one line naming the flag on bad input)."""
    p = argparse.ArgumentParser(prog="python -m llm.gpu_check", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--out", default="gpu_check.json", help="JSON file the numbers are written to (atomic)")
    p.add_argument("--tiny", action="store_true", help="a tiny shape (CPU test of the same code path)")
    p.add_argument("--device", default="auto", help="auto, cuda or cpu")
    p.add_argument("--peak-tflops", type=float, default=989.0, help="the chip's dense bf16 peak (H200: 989)")
    p.add_argument("--strategy", default="fsdp2", help="dist.strategy: fsdp2 or ddp")
    p.add_argument("--autocast", default="bfloat16", help="model.autocast (none: leave the field unset)")
    p.add_argument("--gradient-checkpointing", default="true", help="model.gradient_checkpointing: true/false")
    p.add_argument("--steps", type=int, default=4, help="trainer steps, including warmup")
    p.add_argument("--warmup", type=int, default=1, help="first steps left out of the numbers")
    p.add_argument("--prompts", type=int, default=8, help="rollout.prompts_per_step")
    p.add_argument("--group-size", type=int, default=8, help="rollout.group_size")
    p.add_argument("--prompt-len", type=int, default=64, help="prompt length in tokens")
    p.add_argument("--max-new-tokens", type=int, default=256, help="rollout.max_new_tokens (no EOS: all sampled)")
    p.add_argument("--micro-groups", type=int, default=2, help="optim.micro_groups (gradient accumulation)")
    a = p.parse_args(argv)
    C._check(a.device in ("auto", "cuda", "cpu"), "--device", a.device, "auto, cuda, cpu")
    C._check(a.peak_tflops > 0, "--peak-tflops", a.peak_tflops, "> 0")
    C._check(a.gradient_checkpointing in ("true", "false"), "--gradient-checkpointing",
             a.gradient_checkpointing, "true, false")
    a.gradient_checkpointing = a.gradient_checkpointing == "true"
    C._check(a.steps > a.warmup >= 0, "--steps", a.steps, f"> --warmup ({a.warmup}) >= 0")
    for name in ("prompts", "group_size", "prompt_len", "max_new_tokens"):
        C._check(getattr(a, name) >= 1, "--" + name.replace("_", "-"), getattr(a, name), ">= 1")
    C._check(a.micro_groups >= 0, "--micro-groups", a.micro_groups, ">= 0")
    return a


def main(argv=None) -> dict:
    """Parse the flags, run the check, print its numbers; the result dict."""
    from .dist import cleanup
    a = parse(argv)
    try:
        r = run_check(a)
    finally:
        cleanup()  # the one-process group FSDP2 created
    print(f"{r['device']} | {r['shape']} ({r['params'] / 1e6:.1f}M params) | {r['strategy']}, autocast "
          f"{r['autocast']}, gradient checkpointing {r['gradient_checkpointing']}")
    print(f"rollout {r['rollout_tokens_per_s']:.4g} tok/s | update {r['update_tokens_per_s']:.4g} tok/s, "
          f"{r['update_tflops']:.4g} TFLOP/s, MFU {100 * r['mfu']:.3g}% of {a.peak_tflops:g} | peak memory "
          f"{r['peak_memory_gib']:.2f} GiB ({r['peak_memory_kind']}) | collective {r['collective']}")
    print(f"numbers written to {a.out}")
    return r


if __name__ == "__main__":
    C.run_cli(main)
