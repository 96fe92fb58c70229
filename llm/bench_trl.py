"""Side-by-side CPU timing of `llm.train` against TRL's GRPOTrainer on one fixed configuration.

    python -m llm.bench --bench.mode trl --bench.repeats 5      # needs: pip install "collapse-lab[bench]"

The configuration is TRL's CPU baseline (`CONFIG_JSON`, byte-identical to the baseline's config.json):
a random tiny Llama (vocab 18, hidden 128, 4 layers, 661,120 parameters, `torch.manual_seed(0)` right
before construction, fp32), the digit-sum task ("S=13:" -> "a+b" with a + b = S, single digits), 512
prompts, G = 8, 16 prompts per step, 6 new tokens, T = 1, beta = 0, AdamW lr 1e-4 (constant),
gradient clipping 1.0, 30 steps of which the first 3 are discarded. Both trainers get the same model
init and the same vocabulary: TRL the transformers tokenizer of `build_tokenizer` (its
processing_class), llm.train the pure-Python `DigitTokenizer` with the same ids and texts.

Step time: TRL's is `on_step_begin` -> `on_step_end` of a TrainerCallback (generation, reward,
advantages, forward, backward, clipping, AdamW); llm.train's is its own `time_s` metric (rollout,
reward, metrics, forward, backward, clipping, AdamW; not the JSONL write or checkpoints). Each trainer
runs in a fresh interpreter (`run_one`), alternating TRL / llm.train (ABBA order), and the median step
of each run is compared (`compare`).
"""

from __future__ import annotations

import argparse
import json
import os
import random
import re
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch

from .tasks.base import Prompt, Score

CONFIG_JSON = """\
{
  "seed": 0,
  "dtype": "float32",
  "task": {"n_prompts": 512, "dataset_seed": 0, "target_min": 3, "target_max": 15},
  "max_prompt_length": 8,
  "model": {
    "class": "LlamaForCausalLM",
    "init": "random, torch.manual_seed(seed) right before construction",
    "config": {
      "vocab_size": 18,
      "hidden_size": 128,
      "intermediate_size": 256,
      "num_hidden_layers": 4,
      "num_attention_heads": 4,
      "num_key_value_heads": 4,
      "max_position_embeddings": 64,
      "tie_word_embeddings": false,
      "pad_token_id": 0,
      "bos_token_id": 1,
      "eos_token_id": 2
    }
  },
  "timing": {"warmup_steps_discarded": 3},
  "grpo_config": {
    "output_dir": "trl_out",
    "seed": 0,
    "use_cpu": true,
    "bf16": false,
    "fp16": false,
    "max_steps": 30,
    "per_device_train_batch_size": 128,
    "gradient_accumulation_steps": 1,
    "num_generations": 8,
    "max_completion_length": 6,
    "temperature": 1.0,
    "top_p": 1.0,
    "top_k": 0,
    "repetition_penalty": 1.0,
    "beta": 0.0,
    "loss_type": "grpo",
    "epsilon": 0.2,
    "scale_rewards": "group",
    "importance_sampling_level": "token",
    "mask_truncated_completions": false,
    "num_iterations": 1,
    "learning_rate": 0.0001,
    "lr_scheduler_type": "constant",
    "warmup_steps": 0,
    "optim": "adamw_torch",
    "adam_beta1": 0.9,
    "adam_beta2": 0.999,
    "adam_epsilon": 1e-08,
    "weight_decay": 0.0,
    "max_grad_norm": 1.0,
    "gradient_checkpointing": false,
    "use_vllm": false,
    "eval_strategy": "no",
    "save_strategy": "no",
    "logging_strategy": "no",
    "report_to": "none",
    "disable_tqdm": true,
    "dataloader_num_workers": 0
  }
}
"""
CONFIG = json.loads(CONFIG_JSON)
INSTALL_HINT = 'llm.bench --bench.mode trl needs TRL: pip install "collapse-lab[bench]"'

# ------------------------------------------------------------------ task and tokenizer ------------

PAD, BOS, EOS = "<pad>", "<s>", "</s>"
CHARS = "0123456789+=S: "
_ANSWER = re.compile(r"(\d)\+(\d)")
_PROMPT = re.compile(r"S=(\d+):")


def build_prompts(n_prompts: int, seed: int, lo: int = 3, hi: int = 15) -> list[str]:
    """n_prompts prompts "S=<S>:" with S uniform in lo..hi, from random.Random(seed) (deterministic)."""
    rng = random.Random(seed)
    return [f"S={rng.randint(lo, hi)}:" for _ in range(n_prompts)]


def digit_sum_reward(prompt: str, completion: str) -> float:
    """1.0 if the completion (special tokens removed, whitespace stripped) is exactly "a+b" with
    single digits and a + b = S of prompt "S=<S>:", else 0.0."""
    m = _ANSWER.fullmatch(completion.strip())
    if m is None:
        return 0.0
    return float(int(m.group(1)) + int(m.group(2)) == int(_PROMPT.fullmatch(prompt.strip()).group(1)))


class DigitSumTask:
    """The baseline's task in the llm.tasks protocol: every prompt is a training prompt."""

    name = "digit_sum"

    def __init__(self, n_prompts: int = 512, seed: int = 0, lo: int = 3, hi: int = 15):
        texts = build_prompts(n_prompts, seed, lo, hi)
        self._prompts = [Prompt(i, t, int(t[2:-1])) for i, t in enumerate(texts)]

    def prompts(self, split: str) -> list[Prompt]:
        return list(self._prompts) if split in ("train", "all") else []

    def check(self, prompt: Prompt, response: str) -> Score:
        """Score of digit_sum_reward; outcome "a+b" when the response has that form."""
        m = _ANSWER.fullmatch(response.strip())
        if m is None:
            return Score(0.0, None, "unparsed")
        r = digit_sum_reward(prompt.text, response)
        return Score(r, m.group(0), "correct" if r == 1.0 else "wrong")


class DigitTokenizer:
    """`build_tokenizer`'s vocabulary in the llm.models tokenizer interface (pure Python): encode
    gives one id per character (no specials; an unknown character is an error, as in the HF
    tokenizer), decode drops <pad>, <s>, </s>. Same ids and texts as build_tokenizer (tested)."""

    def __init__(self):
        self.itos = [PAD, BOS, EOS, *CHARS]
        self.stoi = {c: i for i, c in enumerate(self.itos)}
        self.pad_id, self.bos_id, self.eos_id, self.vocab_size = 0, 1, 2, len(self.itos)

    def encode(self, text: str) -> list[int]:
        bad = sorted(set(text) - set(CHARS))
        if bad:
            raise ValueError(f"text = {text!r} is invalid; allowed: characters of {CHARS!r} (got {bad[0]!r})")
        return [self.stoi[c] for c in text]

    def decode(self, ids) -> str:
        return "".join(self.itos[i] for i in ids if i > 2)

    def save(self, path) -> None:
        from .config import write_atomic
        write_atomic(Path(path, "digit_tokenizer.json"), json.dumps({"itos": self.itos}))


def build_tokenizer():
    """The baseline's character tokenizer (18 ids: <pad>=0, <s>=1, </s>=2, then "0123456789+=S: "),
    a transformers PreTrainedTokenizerFast built in code; encoding adds <s>, padding is on the left."""
    from tokenizers import Regex, Tokenizer, decoders, models, pre_tokenizers, processors
    from transformers import PreTrainedTokenizerFast
    vocab = {t: i for i, t in enumerate([PAD, BOS, EOS, *CHARS])}
    tok = Tokenizer(models.WordLevel(vocab=vocab))
    tok.pre_tokenizer = pre_tokenizers.Split(Regex("."), behavior="isolated")
    tok.post_processor = processors.TemplateProcessing(single=f"{BOS} $A", special_tokens=[(BOS, vocab[BOS])])
    tok.decoder = decoders.Fuse()
    return PreTrainedTokenizerFast(tokenizer_object=tok, bos_token=BOS, eos_token=EOS, pad_token=PAD,
                                   padding_side="left", truncation_side="left")


def build_model():
    """The baseline's LlamaForCausalLM, random init right after torch.manual_seed(CONFIG['seed'])."""
    from transformers import LlamaConfig, LlamaForCausalLM
    torch.manual_seed(CONFIG["seed"])
    return LlamaForCausalLM(LlamaConfig(**CONFIG["model"]["config"])).to(torch.float32)


# ------------------------------------------------------------------ the two trainers --------------

def llm_train_config(out_dir: str):
    """llm.train's TrainConfig for the baseline: GRPO with std + 1e-4 (Bessel), seq-mean-token-mean,
    clip 0.2, beta 0, one PPO epoch on one minibatch, AdamW lr 1e-4 (wd 0), clip-norm 1.0."""
    from . import config as C
    from .train import TrainConfig
    g = CONFIG["grpo_config"]
    cfg = TrainConfig(
        rollout=C.RolloutConfig(group_size=g["num_generations"], prompts_per_step=g["per_device_train_batch_size"]
                                // g["num_generations"], max_new_tokens=g["max_completion_length"],
                                temperature=g["temperature"], top_p=g["top_p"]),
        recipe=C.RecipeConfig(name="grpo", overrides={"advantage_eps": 1e-4, "agg": "seq-mean-token-mean",
                                                      "clip_low": g["epsilon"], "clip_high": g["epsilon"]}),
        optim=C.OptimConfig(optimizer="adamw", lr=g["learning_rate"], weight_decay=g["weight_decay"],
                            grad_clip=g["max_grad_norm"], ppo_epochs=g["num_iterations"], num_minibatches=1),
        run=C.RunConfig(out_dir=out_dir, seed=g["seed"], steps=g["max_steps"], progress=False, device="cpu"))
    C.validate(cfg)
    return cfg


def run_llm(out_dir: str) -> list[float]:
    """Step times (s) of one llm.train run on the baseline configuration."""
    from .logger import read_metrics
    from .train import train
    train(llm_train_config(out_dir), task=DigitSumTask(**_task_kwargs()), model=build_model(),
          tok=DigitTokenizer())
    return [m["time_s"] for m in read_metrics(out_dir)]


def _task_kwargs() -> dict:
    t = CONFIG["task"]
    return {"n_prompts": t["n_prompts"], "seed": t["dataset_seed"], "lo": t["target_min"], "hi": t["target_max"]}


def run_trl(out_dir: str) -> list[float]:
    """Step times (s) of one TRL GRPOTrainer run on the baseline configuration (as run_trl.py)."""
    from datasets import Dataset
    from transformers import TrainerCallback
    from trl import GRPOConfig, GRPOTrainer

    class StepTimer(TrainerCallback):
        def __init__(self):
            self.times, self._start = [], 0.0

        def on_step_begin(self, args, state, control, **kwargs):
            self._start = time.perf_counter()

        def on_step_end(self, args, state, control, **kwargs):
            self.times.append(time.perf_counter() - self._start)

    def reward(prompts, completions, **kwargs):
        return [digit_sum_reward(p, c) for p, c in zip(prompts, completions)]

    tok, model = build_tokenizer(), build_model()
    prompts = build_prompts(**_task_kwargs())
    assert max(len(ids) for ids in tok(prompts)["input_ids"]) <= CONFIG["max_prompt_length"]
    timer = StepTimer()
    args = GRPOConfig(**{**CONFIG["grpo_config"], "output_dir": out_dir})
    GRPOTrainer(model=model, reward_funcs=reward, args=args, train_dataset=Dataset.from_dict({"prompt": prompts}),
                processing_class=tok, callbacks=[timer]).train()
    return timer.times


RUNNERS = {"trl": run_trl, "llm": run_llm}


def summary(times: list[float]) -> dict:
    """Median, p10, p90 of the step times after the discarded warm-up steps."""
    t = times[CONFIG["timing"]["warmup_steps_discarded"]:]
    q = statistics.quantiles(t, n=10, method="inclusive")
    return {"median_step_s": statistics.median(t), "p10_step_s": q[0], "p90_step_s": q[-1], "steps_timed": len(t)}


def run_one(trainer: str, threads: int = 0) -> dict:
    """One run of `trainer` ('trl' or 'llm') in this process with `threads` torch threads (0: torch's
    default): its summary and raw step times."""
    if threads:
        torch.set_num_threads(threads)
    with tempfile.TemporaryDirectory(prefix=f"bench_{trainer}_") as tmp:
        times = RUNNERS[trainer](tmp)
    return {"trainer": trainer, **summary(times), "step_times_s": times, "torch_threads": torch.get_num_threads()}


def _child(trainer: str, threads: int = 0) -> dict:
    """run_one in a fresh interpreter (same Python, project root on the path)."""
    root = Path(__file__).resolve().parents[1]
    env = {**os.environ, **({"OMP_NUM_THREADS": str(threads)} if threads else {})}
    out = subprocess.run([sys.executable, "-m", "llm.bench_trl", trainer, "--threads", str(threads)], cwd=root,
                         env=env, capture_output=True, text=True, check=False)
    if out.returncode != 0:
        raise RuntimeError(f"{trainer} run failed (exit {out.returncode}):\n{out.stderr[-3000:]}")
    return json.loads(out.stdout.strip().splitlines()[-1])


def compare(repeats: int, threads: int = 0, runner=_child) -> dict:
    """`repeats` interleaved pairs in ABBA order (trl, llm, llm, trl, ...), each run a fresh process:
    per-run medians, each trainer's median of run medians, ratio = llm / trl of those, and the ratio
    of each pair (its spread shows the machine's noise)."""
    runs: dict[str, list[dict]] = {"trl": [], "llm": []}
    for r in range(repeats):
        for trainer in (("trl", "llm") if r % 2 == 0 else ("llm", "trl")):
            runs[trainer].append(runner(trainer, threads))
    med = {k: [x["median_step_s"] for x in v] for k, v in runs.items()}
    mom = {k: statistics.median(v) for k, v in med.items()}
    return {"repeats": repeats, "trl_median_step_s": mom["trl"], "llm_median_step_s": mom["llm"],
            "ratio": mom["llm"] / mom["trl"], "pair_ratios": [a / b for a, b in zip(med["llm"], med["trl"])],
            "run_medians": med, "threads": sorted({x["torch_threads"] for v in runs.values() for x in v}),
            "runs": runs}


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description="one timed run; prints its JSON summary")
    ap.add_argument("trainer", choices=sorted(RUNNERS))
    ap.add_argument("--threads", type=int, default=0, help="torch threads (0: torch's default)")
    args = ap.parse_args(argv)
    print(json.dumps(run_one(args.trainer, args.threads)))


if __name__ == "__main__":
    main()
