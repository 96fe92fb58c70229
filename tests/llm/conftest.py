"""Shared fixtures for the llm tests: one thread per process (the machine is shared), tiny configs,
and one SFT base model per session (multisolution, difficulty 2), built from a config, no downloads."""

import pytest
import torch

from llm import config as C

torch.set_num_threads(1)

TASK = dict(name="multisolution", difficulty=2, num_prompts=64, test_fraction=0.25, seed=0)


def make_train_config(out_dir, path="tiny", name="grpo", steps=2, **sections):
    """A small TrainConfig; `sections` maps a section name to a dict of field overrides."""
    data = {"model": {"name": path, "hidden_size": 64}, "task": dict(TASK),
            "rollout": {"group_size": 4, "prompts_per_step": 4, "max_new_tokens": 4},
            "recipe": {"name": name}, "optim": {"lr": 1e-3},
            "run": {"out_dir": str(out_dir), "steps": steps, "progress": False, "threads": 1}}
    return _build(data, sections)


def _build(data: dict, sections: dict):
    """The validated TrainConfig of `data` with `sections` merged in (section -> field overrides)."""
    from llm.train import TrainConfig
    for sec, values in sections.items():
        data.setdefault(sec, {}).update(values)
    cfg = C.from_dict(TrainConfig, data)
    C.validate(cfg)
    return cfg


@pytest.fixture
def train_config():
    """The factory make_train_config(out_dir, model, recipe name, steps, **sections)."""
    return make_train_config


@pytest.fixture(scope="session")
def sft_model(tmp_path_factory):
    """Path of a tiny Llama (hidden 64, 2 layers) fine-tuned for 300 steps on multisolution
    (uniform correct answers, 30 % wrong ones)."""
    from llm.sft import SFTConfig, sft
    out = tmp_path_factory.mktemp("sft")
    cfg = C.from_dict(SFTConfig, {"model": {"name": "tiny", "hidden_size": 64}, "task": dict(TASK),
                                  "sft": {"batch_size": 64, "lr": 6e-3, "wrong_share": 0.3},
                                  "run": {"out_dir": str(out), "steps": 300, "progress": False,
                                          "threads": 1}})
    C.validate(cfg)
    sft(cfg)
    return str(out / "model")


def make_bandit_config(out_dir, name="grpo", steps=2, **sections):
    """A fast TrainConfig on the bandit task with BanditLM (8 prompts x 6 outcomes, SGD, G = 8)."""
    data = {"model": {"name": "bandit", "dtype": "float64"},
            "task": {"name": "bandit", "num_prompts": 8, "num_outcomes": 6},
            "rollout": {"group_size": 8, "prompts_per_step": 4, "max_new_tokens": 1},
            "recipe": {"name": name}, "optim": {"optimizer": "sgd", "lr": 0.5},
            "run": {"out_dir": str(out_dir), "steps": steps, "progress": False, "threads": 1}}
    return _build(data, sections)


@pytest.fixture
def bandit_config():
    """The factory make_bandit_config(out_dir, recipe name, steps, **sections)."""
    return make_bandit_config
