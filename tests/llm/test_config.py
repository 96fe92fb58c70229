"""Config: TOML + flags, precedence, validation naming the field, saved config reloads."""

import pytest

from llm import config as C
from llm.train import TrainConfig


def test_flags_and_toml(tmp_path):
    toml = tmp_path / "run.toml"
    toml.write_text('[rollout]\ngroup_size = 6\ntemperature = 0.7\n[recipe]\nname = "ips_grpo"\n'
                    'overrides = {ips_eps = 0.02}\n[run]\nsteps = 5\n')
    cfg = C.parse(TrainConfig, ["--config", str(toml), "--rollout.group_size", "3", "--optim.lr=0.01",
                                "--run.progress", "false"])
    assert cfg.rollout.group_size == 3  # the flag wins over the file
    assert cfg.rollout.temperature == 0.7 and cfg.run.steps == 5 and cfg.optim.lr == 0.01
    assert cfg.recipe.overrides == {"ips_eps": 0.02} and cfg.run.progress is False
    assert cfg.recipe.build().shapers[0].eps == 0.02
    saved = C.save(cfg, tmp_path / "out")
    again = C.parse(TrainConfig, ["--config", str(saved)])
    assert again == cfg


@pytest.mark.parametrize("argv, field", [
    (["--rollout.group_size", "0"], "rollout.group_size"),
    (["--rollout.top_p", "1.5"], "rollout.top_p"),
    (["--recipe.name", "nope"], "recipe.name"),
    (["--recipe.overrides", "{nonsense = 1}"], "recipe.overrides"),
    (["--optim.optimizer", "lion"], "optim.optimizer"),
    (["--task.name", "math"], "task.path"),
    (["--optim.lr", "abc"], "optim.lr"),
    (["--model.dtype", "int8"], "model.dtype"),
])
def test_invalid_values_name_the_field(argv, field):
    with pytest.raises(ValueError, match=field.replace(".", r"\.")):
        C.parse(TrainConfig, argv)


def test_unknown_keys(tmp_path):
    toml = tmp_path / "bad.toml"
    toml.write_text("[rollout]\ngroupsize = 4\n")
    with pytest.raises(ValueError, match=r"rollout\.groupsize"):
        C.parse(TrainConfig, ["--config", str(toml)])


def test_every_field_is_documented():
    for sec in (C.ModelConfig, C.TaskConfig, C.RolloutConfig, C.RecipeConfig, C.OptimConfig, C.RunConfig):
        docs = C.field_docs(sec)
        missing = [f for f in sec.__dataclass_fields__ if not docs.get(f)]
        assert not missing, f"{sec.__name__} fields without a docstring: {missing}"
