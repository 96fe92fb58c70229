"""Typed run configuration for the `llm` command-line tools.

Every tool (`llm.train`, `llm.sft`, `llm.evaluate`, `llm.bench`) has one top-level dataclass built from
the section dataclasses below. `parse(cls, argv)` resolves it from, in order of precedence,
`--section.field value` flags, a TOML file given with `--config`, and the field defaults; the resolved
config is validated once (a ValueError names the field) and saved with every run (`save`).
Field docstrings (the string under each field) are the documentation and the `--help` text.
"""

from __future__ import annotations

import argparse
import ast
import dataclasses
import inspect
import math
import os
import re
import sys
import textwrap
import typing
from dataclasses import dataclass, field
from pathlib import Path

try:
    import tomllib
except ImportError:  # Python 3.10
    import tomli as tomllib

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
    """Rollout engine, one of the registry llm.rollout.ENGINES: hf (batched sampling with KV cache);
    more with llm.rollout.register_engine (e.g. vllm)."""
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
    lr: float = 1e-4
    """Learning rate."""
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

    def validate(self, p: str = "run") -> None:
        _check(self.steps >= 0, f"{p}.steps", self.steps, ">= 0")
        _check(self.save_every >= 0, f"{p}.save_every", self.save_every, ">= 0")
        _check(self.device in ("auto", "cpu", "cuda"), f"{p}.device", self.device, "auto, cpu, cuda")
        _check(self.threads >= 0, f"{p}.threads", self.threads, ">= 0")


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

def field_docs(cls) -> dict[str, str]:
    """Attribute docstrings of a dataclass: {field: text}, read from its source."""
    try:
        tree = ast.parse(textwrap.dedent(inspect.getsource(cls)))
    except (OSError, TypeError):
        return {}
    body, docs = tree.body[0].body, {}
    for a, b in zip(body, body[1:]):
        if isinstance(a, ast.AnnAssign) and isinstance(b, ast.Expr) and isinstance(b.value, ast.Constant):
            docs[a.target.id] = " ".join(str(b.value.value).split())
    return docs


def _sections(cls) -> dict[str, type]:
    hints = typing.get_type_hints(cls)
    return {f.name: hints[f.name] for f in dataclasses.fields(cls)}


def _has_nan(v) -> bool:
    if isinstance(v, float):
        return math.isnan(v)
    if isinstance(v, dict):
        return any(_has_nan(x) for x in v.values())
    return isinstance(v, (list, tuple)) and any(_has_nan(x) for x in v)


def _coerce(value, typ, name: str):
    """Convert a flag string or TOML value to the field type, naming the field on failure.
    Floats must be finite (inf / nan are rejected for every float field)."""
    if isinstance(value, str) and typ is not str:
        try:
            value = tomllib.loads(f"v = {value}")["v"]
        except tomllib.TOMLDecodeError:
            if typ is bool and value.lower() in ("true", "false"):
                value = value.lower() == "true"
        except RecursionError:
            _check(False, name, value[:40] + "...", "a TOML value nested less deeply")
    if typ is float and isinstance(value, int) and not isinstance(value, bool):
        value = float(value)
    ok = isinstance(value, typ) and not (typ is int and isinstance(value, bool))
    _check(ok, name, value, f"a value of type {typ.__name__}")
    _check(typ is not float or math.isfinite(value), name, value, "a finite number")
    return value


def from_dict(cls, data: dict):
    """Build the top-level config `cls` from a nested dict (TOML layout), rejecting unknown keys."""
    secs, kwargs = _sections(cls), {}
    for key, sub in data.items():
        _check(key in secs, key, "...", ", ".join(secs))
        scls = secs[key]
        shints = typing.get_type_hints(scls)
        _check(isinstance(sub, dict), key, sub, f"a [{key}] table with fields {', '.join(shints)}")
        for k in sub:
            _check(k in shints, f"{key}.{k}", sub[k], ", ".join(shints))
        kwargs[key] = scls(**{k: _coerce(v, shints[k], f"{key}.{k}") for k, v in sub.items()})
    return cls(**kwargs)


def to_dict(cfg) -> dict:
    return dataclasses.asdict(cfg)


def validate(cfg) -> None:
    """Validate every section; the error names the field (`section.field`). Every float field must
    be finite, however the config was built."""
    for f in dataclasses.fields(cfg):
        sec = getattr(cfg, f.name)
        for g in dataclasses.fields(sec):
            v = getattr(sec, g.name)
            _check(not isinstance(v, float) or math.isfinite(v), f"{f.name}.{g.name}", v, "a finite number")
        sec.validate(f.name)


def read_toml(path, name: str = "config") -> dict:
    """Parse the TOML file `path`; a missing, unreadable, non-UTF-8 or malformed file is a
    ValueError naming `name` and the file."""
    allowed = "a readable UTF-8 TOML file"
    p = Path(path)
    _check(p.is_file(), name, str(path), allowed + (" (this is a directory)" if p.is_dir() else
                                                    " (no such file)"))
    try:
        return tomllib.loads(p.read_bytes().decode("utf-8"))
    except UnicodeDecodeError as e:
        raise ValueError(f"{name} = {str(path)!r} is invalid; allowed: {allowed} (byte {e.start} is "
                         "not UTF-8)") from None
    except tomllib.TOMLDecodeError as e:
        raise ValueError(f"{name} = {str(path)!r} is invalid; allowed: {allowed} ({e})") from None
    except RecursionError:
        raise ValueError(f"{name} = {str(path)!r} is invalid; allowed: {allowed} (nested too deeply)") from None
    except OSError as e:
        raise ValueError(f"{name} = {str(path)!r} is invalid; allowed: {allowed} ({e.strerror})") from None


class _Parser(argparse.ArgumentParser):
    """argparse with a usage error raised as one ValueError line instead of usage text + exit."""

    argv: list | None = None

    def error(self, message):
        argv = sys.argv[1:] if self.argv is None else self.argv
        raise ValueError(f"command line = {' '.join(argv)!r} is invalid; allowed: the flags of --help "
                         f"({message})")


def _choices_text(section, name: str) -> str:
    """' Choices: a (what a does); b; ...' from the section's `choices(field)` registry hook, or ''."""
    hook = getattr(section, "choices", None)
    items = hook(name) if callable(hook) else {}
    if not items:
        return ""
    return " Choices: " + " | ".join(f"{k}: {v.rstrip('.')}" if v else k for k, v in items.items()) + "."


def build_parser(cls, description: str = "") -> argparse.ArgumentParser:
    """The argparse parser of command config `cls`; each flag's help ends with the default that
    the command uses (`cls()`'s value, which may differ from the section class default)."""
    ap = _Parser(description=description, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--config", help="TOML file with [section] tables")
    ap.add_argument("--resume", action="store_true", help="continue from the latest checkpoint")
    ap.add_argument("--debug", action="store_true",
                    help="show the full traceback of an error (also: COLLAPSE_LAB_DEBUG=1)")
    defaults = cls()
    for sec in _sections(cls):
        sdef = getattr(defaults, sec)
        docs = field_docs(type(sdef))
        g = ap.add_argument_group(sec)
        for f in dataclasses.fields(sdef):
            text = f"{docs.get(f.name, '')}{_choices_text(sdef, f.name)} (default: {getattr(sdef, f.name)!r})"
            g.add_argument(f"--{sec}.{f.name}", dest=f"{sec}.{f.name}", default=None,
                           help=text.replace("%", "%%"))  # argparse %-formats help strings
    return ap


def parse(cls, argv=None, description: str = ""):
    """Resolve `cls` from `--config FILE` and `--section.field value` flags (flags win); validate."""
    ap = build_parser(cls, description)
    ap.argv = None if argv is None else list(argv)
    args = vars(ap.parse_args(argv))
    args.pop("debug")
    data: dict = {}
    config_path = args.pop("config")
    if config_path:
        data = read_toml(config_path)
    if args.pop("resume"):
        run = data.setdefault("run", {})
        _check(isinstance(run, dict), "run", run, "a [run] table")
        run["resume"] = True
    for key, value in args.items():
        if value is not None:
            sec, name = key.split(".", 1)
            sub = data.setdefault(sec, {})
            _check(isinstance(sub, dict), sec, sub, f"a [{sec}] table")
            sub[name] = value
    cfg = from_dict(cls, data)
    validate(cfg)
    return cfg


_BARE_KEY = re.compile(r"[A-Za-z0-9_-]+")


def _toml_str(s: str) -> str:
    """A TOML basic string; control characters escaped; a lone surrogate cannot be written."""
    out = []
    for ch in s:
        o = ord(ch)
        _check(not 0xD800 <= o <= 0xDFFF, "string", s, "text without lone surrogates")
        out.append("\\\\" if ch == "\\" else '\\"' if ch == '"' else
                   f"\\u{o:04x}" if o < 0x20 or o == 0x7F else ch)
    return '"' + "".join(out) + '"'


def _toml_value(v) -> str:
    """TOML text of v; `tomllib.loads(f"x = {_toml_value(v)}")["x"] == v` for every bool, int,
    finite or non-finite float (inf, nan), str, list and dict (TOML has no null: None is an error)."""
    if isinstance(v, dict):
        keys = [k if _BARE_KEY.fullmatch(str(k)) else _toml_str(str(k)) for k in v]
        return "{" + ", ".join(f"{k} = {_toml_value(x)}" for k, x in zip(keys, v.values())) + "}"
    if isinstance(v, (list, tuple)):
        return "[" + ", ".join(_toml_value(x) for x in v) + "]"
    if isinstance(v, bool):
        return str(v).lower()
    if isinstance(v, int):
        return str(v)
    if isinstance(v, float):
        return repr(v) if math.isfinite(v) else "nan" if math.isnan(v) else ("inf" if v > 0 else "-inf")
    if isinstance(v, str):
        return _toml_str(v)
    raise ValueError(f"config value = {v!r} is invalid; allowed: bool, int, float, str, list, table")


def to_toml(cfg) -> str:
    """The resolved config as TOML text (one [section] table per section)."""
    lines = []
    for sec, values in to_dict(cfg).items():
        lines.append(f"[{sec}]")
        lines += [f"{k} = {_toml_value(v)}" for k, v in values.items()]
        lines.append("")
    return "\n".join(lines)


def write_atomic(path, text: str) -> None:
    """Write `text` (UTF-8) to `path` atomically (collapse_lab.runs.atomic_write: temp file, fsync,
    os.replace)."""
    from collapse_lab.runs import atomic_write

    atomic_write(path, text.encode("utf-8"))


def save(cfg, out_dir) -> Path:
    """Write the resolved config as `out_dir/config.toml` (loadable with --config), atomically."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    path = out / "config.toml"
    write_atomic(path, to_toml(cfg))
    return path


def debug_requested(argv) -> bool:
    """True with `--debug` among the arguments or COLLAPSE_LAB_DEBUG set to anything but '' / '0'."""
    return "--debug" in argv or os.environ.get("COLLAPSE_LAB_DEBUG", "") not in ("", "0")


def run_cli(main, argv=None):
    """Run a command's `main(argv)` for `if __name__ == "__main__"`: bad input (a ValueError, e.g. a
    failed validation, or an OSError such as an unreadable file) prints one line
    `error: <field> = <value> is invalid; allowed: ...` to stderr and exits with status 2; with
    `--debug` or COLLAPSE_LAB_DEBUG=1 the exception propagates with its traceback."""
    argv = list(sys.argv[1:] if argv is None else argv)
    try:
        return main(argv)
    except (ValueError, OSError) as e:
        if debug_requested(argv):
            raise
        msg = " ".join(str(e).split()) or type(e).__name__
        print(f"error: {msg}", file=sys.stderr)
        raise SystemExit(2) from None
