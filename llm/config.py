"""Typed run configuration for the `llm` command-line tools.

Every tool (`llm.train`, `llm.sft`, `llm.evaluate`, `llm.bench`) has one top-level dataclass built from
the section dataclasses below. `parse(cls, argv)` resolves it from, in order of precedence,
`--section.field value` flags, a TOML file given with `--config`, and the field defaults; the resolved
config is validated once (a ValueError names the field) and saved with every run (`save`). The parsing
half lives in llm/cli.py; its names are re-exported here.
Field docstrings (the string under each field) are the documentation and the `--help` text.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path

OPTIMIZERS = ("adamw", "sgd")
DTYPES = ("float32", "float64", "bfloat16", "float16")
AUTOCAST = ("none", "bfloat16", "float16")
TEMPERATURE_RANGE = (1e-2, 1e2)  # logits / T must stay finite in float16 / bfloat16


def _check(ok: bool, name: str, value, allowed: str) -> None:
    """Raise ValueError naming the field `name` unless `ok`."""
    if not ok:
        raise ValueError(f"{name} = {value!r} is invalid; allowed: {allowed}")


HUB_ID = re.compile(r"[A-Za-z0-9][\w.-]*/[A-Za-z0-9][\w.-]*", re.ASCII)  # Hugging Face Hub id 'org/name'


def check_model_name(name: str, field: str = "model.name") -> None:
    """A preset, 'bandit', an existing model directory, or something shaped like a Hub id 'org/name'
    (and not like a local path: no leading '.', '/' or '~'). Anything else is an error here, before
    any download is attempted."""
    from .models import PRESETS
    allowed = f"{', '.join(PRESETS)}, bandit, an existing model directory, or a Hub id 'org/name'"
    if name in PRESETS or name == "bandit":
        return
    path = Path(name).expanduser()
    if path.exists():
        _check(path.is_dir(), field, name, allowed + " (this is a file, not a directory)")
        return
    _check(bool(HUB_ID.fullmatch(name)) and not name.startswith((".", "~")), field, name,
           allowed + " (no such directory)")


@dataclass
class ModelConfig:
    name: str = "tiny"
    """'tiny' / 'small' (Llama-style presets built from a config), 'bandit' (BanditLM), or a Hugging
    Face causal LM given by local path or hub id."""
    dtype: str = "float32"
    """Parameter dtype: float32, float64, bfloat16 or float16."""
    hidden_size: int = 0
    """Override the preset's hidden size (0 keeps the preset)."""
    num_layers: int = 0
    """Override the preset's number of layers (0 keeps the preset)."""
    memory_preset: str = "tiny"
    """Preset of the memory LM used by sampler-side recipes (docs/methods.md §2, paper A)."""
    autocast: str = "none"
    """Mixed precision of llm.train: none, bfloat16 or float16. Parameters and optimiser state stay in
    model.dtype (float32 master weights); rollout and loss forwards run under torch.autocast in this
    dtype; float16 adds a gradient scaler (llm/precision.py)."""
    tf32: bool = True
    """On CUDA, let float32 matmuls and convolutions use TF32 tensor cores."""
    gradient_checkpointing: bool = False
    """Recompute each decoder layer's activations in the backward pass (Hugging Face models,
    use_reentrant=False): less memory for one more forward."""
    lora_rank: int = 0
    """LoRA rank through peft (0: full fine-tuning). Only adapters train; the reverse-KL reference is
    the adapter-disabled model; the final model is saved merged (llm/lora.py)."""
    lora_alpha: float = 16.0
    """LoRA scaling numerator: the update is (lora_alpha / lora_rank) B A."""
    lora_dropout: float = 0.0
    """Dropout on the LoRA branch's input, in [0, 1)."""
    lora_targets: str = "q_proj,k_proj,v_proj,o_proj,gate_proj,up_proj,down_proj"
    """Comma-separated module names that get adapters, or all-linear; the default names the attention
    and MLP projections of Llama and Qwen."""

    def validate(self, p: str = "model") -> None:
        from .models import PRESETS
        check_model_name(self.name, f"{p}.name")
        _check(self.dtype in DTYPES, f"{p}.dtype", self.dtype, ", ".join(DTYPES))
        _check(self.hidden_size >= 0, f"{p}.hidden_size", self.hidden_size, ">= 0")
        _check(self.num_layers >= 0, f"{p}.num_layers", self.num_layers, ">= 0")
        _check(self.memory_preset in PRESETS, f"{p}.memory_preset", self.memory_preset, ", ".join(PRESETS))
        _check(self.autocast in AUTOCAST, f"{p}.autocast", self.autocast, ", ".join(AUTOCAST))
        _check(self.autocast == "none" or self.dtype == "float32", f"{p}.autocast", self.autocast,
               "none unless model.dtype = 'float32' (autocast keeps float32 master weights)")
        _check(self.lora_rank >= 0, f"{p}.lora_rank", self.lora_rank, ">= 0 (0: no LoRA)")
        _check(self.lora_alpha > 0, f"{p}.lora_alpha", self.lora_alpha, "> 0")
        _check(0.0 <= self.lora_dropout < 1.0, f"{p}.lora_dropout", self.lora_dropout, "[0, 1)")
        names = self.lora_targets.split(",")
        _check(all(re.fullmatch(r"[\w.-]+", n) for n in names), f"{p}.lora_targets", self.lora_targets,
               "comma-separated module names (e.g. q_proj,v_proj) or all-linear")


@dataclass
class TaskConfig:
    name: str = "multisolution"
    """Task, one of the registry llm.tasks.TASKS (register_task adds one)."""
    path: str = ""
    """Data of the math task: a JSONL or parquet file, or hf:NAME[:CONFIG][@SPLIT] (a Hugging Face
    data set id or save_to_disk directory; needs the optional package datasets)."""
    eval_path: str = ""
    """Held-out data of the math task (same forms as task.path); empty: a task.test_fraction split."""
    prompt_column: str = "problem"
    """Column of the prompt: a string, or a list of {role, content} messages (with task.chat_template)."""
    answer_column: str = "answer"
    """Column of the reference answer."""
    answer_format: str = "plain"
    """How the answer column gives the answer: plain (as is), gsm8k (the text after '####', commas
    removed) or boxed (the last \\boxed{...}, e.g. a worked solution)."""
    chat_template: bool = False
    """Render each prompt with the tokenizer's chat template (instruction / chat models)."""
    system_prompt: str = ""
    """System message put before each prompt (needs task.chat_template; empty: none; a conversational
    row's own system message is kept instead)."""
    num_prompts: int = 0
    """Number of prompts: synthetic tasks generate this many (train and test together; 0: 64);
    math keeps at most this many training prompts (a seeded choice; 0: all rows)."""
    test_fraction: float = 0.25
    """Share of prompts held out for evaluation."""
    difficulty: int = 3
    """Synthetic difficulty: answer digits (multisolution), numbers given (countdown)."""
    num_outcomes: int = 8
    """Outcomes per prompt for the bandit task."""
    timeout_s: float = 2.0
    """Time limit of one reward check; a check that runs over gets reward 0 and is counted."""
    seed: int = 0
    """Seed of the synthetic prompt set (fixed across runs so that splits agree)."""

    @staticmethod
    def choices(name: str) -> dict[str, str]:
        """{choice: description} of field `name` for --help (task.name: the task registry)."""
        from .tasks import TASKS
        return {k: (cls.__doc__ or "").strip().split("\n")[0] for k, cls in TASKS.items()} if name == "name" else {}

    def validate(self, p: str = "task") -> None:
        from .tasks import TASKS  # the task registry
        _check(self.name in TASKS, f"{p}.name", self.name, ", ".join(TASKS))
        _check(self.name != "math" or bool(self.path), f"{p}.path", self.path,
               "a JSONL/parquet file or hf:NAME[:CONFIG][@SPLIT] when task.name = 'math'")
        _check(not self.eval_path or self.name == "math", f"{p}.eval_path", self.eval_path,
               "empty unless task.name = 'math'")
        from .tasks.data import ANSWER_FORMATS, HF_PREFIX, parse_hf
        for name in ("path", "eval_path"):
            value = getattr(self, name)
            if value.startswith(HF_PREFIX):
                parse_hf(value, f"{p}.{name}")
            else:
                _check(not value or Path(value).is_file(), f"{p}.{name}", value,
                       "an existing JSONL/parquet file (not a directory) or hf:NAME[:CONFIG][@SPLIT]")
        for name in ("prompt_column", "answer_column"):
            _check(bool(getattr(self, name).strip()), f"{p}.{name}", getattr(self, name), "a column name")
        _check(self.answer_column != self.prompt_column, f"{p}.answer_column", self.answer_column,
               f"a column other than task.prompt_column ({self.prompt_column!r})")
        _check(self.answer_format in ANSWER_FORMATS, f"{p}.answer_format", self.answer_format,
               ", ".join(ANSWER_FORMATS))
        _check(not self.system_prompt or self.chat_template, f"{p}.system_prompt", self.system_prompt,
               "empty unless task.chat_template = true")
        _check(self.num_prompts == 0 or self.num_prompts >= 2, f"{p}.num_prompts", self.num_prompts,
               "0 (the task's default) or >= 2")
        _check(0.0 < self.test_fraction < 1.0, f"{p}.test_fraction", self.test_fraction, "(0, 1)")
        _check(1 <= self.difficulty <= 8, f"{p}.difficulty", self.difficulty, "1..8")
        _check(self.num_outcomes >= 2, f"{p}.num_outcomes", self.num_outcomes, ">= 2")
        from .tasks.base import TIMEOUT_RANGE
        lo, hi = TIMEOUT_RANGE
        _check(lo <= self.timeout_s <= hi, f"{p}.timeout_s", self.timeout_s, f"[{lo:g}, {hi:g}] seconds")


@dataclass
class RolloutConfig:
    engine: str = "hf"
    """Rollout engine, one of the registry llm.rollout.ENGINES: hf (batched sampling with KV cache),
    vllm (colocated vLLM, needs the vllm extra; not with the memory sampler); more with
    llm.rollout.register_engine."""
    group_size: int = 8
    """Samples per prompt G."""
    prompts_per_step: int = 8
    """Prompts per training step (global, over all processes)."""
    max_new_tokens: int = 8
    """Maximum response length in tokens."""
    temperature: float = 1.0
    """Sampling temperature; training log-probs use the same temperature."""
    top_p: float = 1.0
    """Nucleus sampling threshold in (0, 1]."""
    max_rows_per_call: int = 512
    """Most rows (prompts x samples) per engine call: larger batches (DPH pre-sampling, many prompts
    per step) are split into calls of whole groups, with the same samples as one call."""
    vllm_gpu_memory_utilization: float = 0.3
    """vllm engine: share of the GPU memory vLLM may take (weights + KV cache), beside the trainer."""

    @staticmethod
    def choices(name: str) -> dict[str, str]:
        """{choice: description} of field `name` for --help (rollout.engine: the engine registry)."""
        from .rollout import ENGINES
        return {k: "" for k in ENGINES} if name == "engine" else {}

    def validate(self, p: str = "rollout") -> None:
        from .rollout import ENGINES  # the engine registry
        _check(self.engine in ENGINES, f"{p}.engine", self.engine,
               ", ".join(ENGINES) + " (more with llm.rollout.register_engine, e.g. vllm)")
        _check(self.group_size >= 1, f"{p}.group_size", self.group_size, ">= 1")
        _check(self.prompts_per_step >= 1, f"{p}.prompts_per_step", self.prompts_per_step, ">= 1")
        _check(self.max_new_tokens >= 1, f"{p}.max_new_tokens", self.max_new_tokens, ">= 1")
        lo, hi = TEMPERATURE_RANGE
        _check(lo <= self.temperature <= hi, f"{p}.temperature", self.temperature, f"[{lo:g}, {hi:g}]")
        _check(0 < self.top_p <= 1, f"{p}.top_p", self.top_p, "(0, 1]")
        _check(self.max_rows_per_call >= self.group_size, f"{p}.max_rows_per_call", self.max_rows_per_call,
               f">= {p}.group_size ({self.group_size})")
        _check(0 < self.vllm_gpu_memory_utilization <= 1, f"{p}.vllm_gpu_memory_utilization",
               self.vllm_gpu_memory_utilization, "(0, 1]")


@dataclass
class RecipeConfig:
    name: str = "grpo"
    """Recipe of collapse_lab.objective.RECIPES, or a combination such as 'ips_grpo+dph_js'."""
    overrides: dict = field(default_factory=dict)
    """Recipe parameters to override, e.g. {beta = 0.05, n_pre = 8, mu = 0.5} (passed to
    collapse_lab.objective.recipe; DPH's n_pre/n_ref and the memory's mu/lr live there too)."""
    max_resample: int = 4
    """Dynamic sampling: extra rollout rounds allowed to replace groups with equal rewards."""

    @staticmethod
    def choices(name: str) -> dict[str, str]:
        """{choice: description} of field `name` for --help (recipe.name: RECIPE_INFO's one-liners)."""
        from collapse_lab.objective import RECIPE_INFO
        return dict(RECIPE_INFO) if name == "name" else {}

    def validate(self, p: str = "recipe") -> None:
        from collapse_lab.objective import RECIPES
        for part in self.name.split("+"):
            _check(part in RECIPES, f"{p}.name", self.name, ", ".join(RECIPES) + " (joined by +)")
        _check(isinstance(self.overrides, dict), f"{p}.overrides", self.overrides, "a table")
        for k, v in self.overrides.items():
            _check(not _has_nan(v), f"{p}.overrides.{k}", v, "a number, not NaN")
        _check(self.max_resample >= 0, f"{p}.max_resample", self.max_resample, ">= 0")
        try:
            self.build()
        except (ValueError, TypeError) as e:
            msg = " ".join(str(e).split())
            if re.match(r"^[\w.]+ = .* is invalid; allowed: ", msg):  # already names its field
                raise ValueError(f"{p}.overrides.{msg.removeprefix('recipe.')}") from None
            raise ValueError(f"{p}.overrides = {self.overrides!r} is invalid; allowed: overrides that "
                             f"recipe {self.name!r} accepts ({msg})") from None

    def build(self):
        """The collapse_lab.objective Recipe this section describes."""
        from collapse_lab.objective import recipe
        return recipe(self.name, **dict(self.overrides))


@dataclass
class OptimConfig:
    optimizer: str = "adamw"
    """adamw or sgd."""
    lr: float = 1e-6
    """Peak learning rate (after warmup). 1e-6 suits pretrained LLMs; the toy tiny/small presets and
    the README's CPU examples set 1e-3."""
    warmup_steps: int = 0
    """Training steps of linear warmup from 0 (step s < W runs at lr * (s + 1) / (W + 1))."""
    schedule: str = "constant"
    """Rate after warmup, per training step (llm/schedule.py): constant, cosine or linear decay to
    min_lr_ratio * lr at run.steps."""
    min_lr_ratio: float = 0.0
    """Final rate of the cosine / linear decay as a share of lr, in [0, 1]."""
    weight_decay: float = 0.0
    """AdamW weight decay."""
    grad_clip: float = 1.0
    """Global gradient-norm clip (0 disables)."""
    ppo_epochs: int = 1
    """Passes over each rollout batch."""
    num_minibatches: int = 1
    """Optimizer steps per epoch (minibatch m = prompt slots j with j % M == m); processes are
    balanced when prompts_per_step is divisible by num_minibatches * world size."""
    micro_groups: int = 0
    """Groups per forward/backward (gradient accumulation unit); 0 = the whole minibatch."""

    def validate(self, p: str = "optim") -> None:
        _check(self.optimizer in OPTIMIZERS, f"{p}.optimizer", self.optimizer, ", ".join(OPTIMIZERS))
        _check(self.lr > 0, f"{p}.lr", self.lr, "> 0")
        _check(self.warmup_steps >= 0, f"{p}.warmup_steps", self.warmup_steps, ">= 0")
        from .schedule import SCHEDULES
        _check(self.schedule in SCHEDULES, f"{p}.schedule", self.schedule, ", ".join(SCHEDULES))
        _check(0.0 <= self.min_lr_ratio <= 1.0, f"{p}.min_lr_ratio", self.min_lr_ratio, "[0, 1]")
        _check(self.weight_decay >= 0, f"{p}.weight_decay", self.weight_decay, ">= 0")
        _check(self.grad_clip >= 0, f"{p}.grad_clip", self.grad_clip, ">= 0")
        _check(self.ppo_epochs >= 1, f"{p}.ppo_epochs", self.ppo_epochs, ">= 1")
        _check(self.num_minibatches >= 1, f"{p}.num_minibatches", self.num_minibatches, ">= 1")
        _check(self.micro_groups >= 0, f"{p}.micro_groups", self.micro_groups, ">= 0")


@dataclass
class RunConfig:
    out_dir: str = "runs/llm"
    """Output directory: config.toml, metrics.jsonl, checkpoints, model."""
    seed: int = 0
    """The one seed of the run (python, numpy, torch and the sampling generator)."""
    steps: int = 100
    """Training steps."""
    save_every: int = 0
    """Checkpoint period in steps (0: only at the end)."""
    resume: bool = False
    """Continue from the latest checkpoint in out_dir."""
    tensorboard: bool = False
    """Also write TensorBoard scalars (needs the tensorboard package)."""
    progress: bool = True
    """Show a progress bar with the key metrics."""
    device: str = "auto"
    """auto (cuda if available), cpu or cuda."""
    threads: int = 0
    """CPU threads for torch (0: torch's default; 1 avoids oversubscription on shared machines)."""
    allow_config_change: bool = False
    """Let run.resume continue a checkpoint whose config differs in fields that change the run (warned)."""
    eval_every: int = 0
    """Evaluate on the held-out prompts every this many steps and at the last step (0: never); logged
    as eval/pass@k, eval/distinct_correct, eval/correct_entropy (llm.evaluate's code and seeds)."""
    eval_samples: int = 8
    """Samples per held-out prompt of the periodic evaluation (n of the unbiased pass@k)."""
    eval_k: list = field(default_factory=list)
    """k values of the periodic eval/pass@k, each in 1..eval_samples ([]: 1, 2, 4, ..., eval_samples)."""
    eval_prompts: int = 0
    """Evaluate at most this many held-out prompts (0: all)."""
    wandb: bool = False
    """Also log to Weights & Biases (needs the wandb package; WANDB_MODE=offline is honoured)."""
    wandb_project: str = "collapse-lab"
    """wandb project."""
    wandb_name: str = ""
    """wandb run name ('': wandb's default)."""
    progress_every: int = 10
    """When stderr is not a terminal (SLURM, CI): print one progress line every this many steps..."""
    progress_interval_s: float = 60.0
    """...or when this many seconds have passed since the last line (first and last steps always)."""

    def validate(self, p: str = "run") -> None:
        _check(self.steps >= 0, f"{p}.steps", self.steps, ">= 0")
        _check(self.save_every >= 0, f"{p}.save_every", self.save_every, ">= 0")
        _check(self.device in ("auto", "cpu", "cuda"), f"{p}.device", self.device, "auto, cpu, cuda")
        _check(self.threads >= 0, f"{p}.threads", self.threads, ">= 0")
        _check(self.eval_every >= 0, f"{p}.eval_every", self.eval_every, ">= 0")
        _check(self.eval_samples >= 1, f"{p}.eval_samples", self.eval_samples, ">= 1")
        _check(all(type(k) is int and 1 <= k <= self.eval_samples for k in self.eval_k), f"{p}.eval_k",
               self.eval_k, f"a list of integers in 1..run.eval_samples = {self.eval_samples}")
        _check(self.eval_prompts >= 0, f"{p}.eval_prompts", self.eval_prompts, ">= 0")
        import importlib.util
        _check(not self.wandb or importlib.util.find_spec("wandb") is not None, f"{p}.wandb", self.wandb,
               "false, or true with the wandb package installed (pip install wandb)")
        _check(self.progress_every >= 1, f"{p}.progress_every", self.progress_every, ">= 1")
        _check(self.progress_interval_s > 0, f"{p}.progress_interval_s", self.progress_interval_s, "> 0")


STRATEGIES = ("ddp", "fsdp2")


@dataclass
class DistConfig:
    strategy: str = "ddp"
    """Data parallelism over torchrun processes: ddp (DistributedDataParallel, a full replica per
    process) or fsdp2 (torch.distributed.fsdp.fully_shard per decoder layer and the root: parameters,
    gradients and optimiser state sharded; sharded checkpoints via torch.distributed.checkpoint). Both
    give the same updates."""

    def validate(self, p: str = "dist") -> None:
        _check(self.strategy in STRATEGIES, f"{p}.strategy", self.strategy, ", ".join(STRATEGIES))


# ---------------------------------------------------------------- parsing ---------------------------
# The parsing half lives in llm/cli.py; its names are re-exported here (C.parse, C.run_cli, C.save, ...).
from .cli import (  # noqa: E402,F401
    _BARE_KEY,
    _choices_text,
    _coerce,
    _has_nan,
    _Parser,
    _sections,
    _toml_str,
    _toml_value,
    build_parser,
    debug_requested,
    field_docs,
    from_dict,
    parse,
    read_toml,
    run_cli,
    save,
    to_dict,
    to_toml,
    validate,
    write_atomic,
)
