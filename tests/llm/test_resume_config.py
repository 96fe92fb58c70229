"""Resume checks the checkpoint's config: a change that alters the run is one error listing the
fields (config.toml untouched); run-only fields may change; run.allow_config_change lets it through
with a warning and the current optimiser settings."""

import warnings

import pytest

from llm.checkpoint import checkpoint_config, latest_checkpoint
from llm.logger import read_metrics
from llm.train import train

CHANGES = [  # (section, field, new value, old value printed)
    ("recipe", "name", "dr_grpo", "'grpo'"),
    ("run", "seed", 1, "0"),
    ("rollout", "prompts_per_step", 8, "4"),
    ("optim", "optimizer", "adamw", "'sgd'"),
    ("optim", "lr", 0.1, "0.5"),
    ("task", "num_prompts", 10, "8"),
    ("recipe", "overrides", {"policy_clip_high": 0.3}, "{}"),
]


@pytest.mark.parametrize("sec,name,new,old", CHANGES, ids=[f"{c[0]}.{c[1]}" for c in CHANGES])
def test_changed_config_is_one_clear_error(bandit_config, tmp_path, sec, name, new, old):
    train(bandit_config(tmp_path, steps=1))
    toml = (tmp_path / "config.toml").read_text()
    sections = {sec: {name: new}}
    sections["run"] = {**sections.get("run", {}), "resume": True}
    cfg = bandit_config(tmp_path, steps=2, **sections)
    with pytest.raises(ValueError, match="run.resume = True is invalid with this config") as e:
        train(cfg)
    assert f"{sec}.{name}: {old} -> {new!r}" in str(e.value)
    assert str(e.value).split("Changed (checkpoint -> now): ")[1].count(" -> ") == 1  # only this field
    assert (tmp_path / "config.toml").read_text() == toml  # written only once a run starts
    assert latest_checkpoint(tmp_path).name == "step_00000001"


def test_several_changes_are_listed_together(bandit_config, tmp_path):
    train(bandit_config(tmp_path, steps=1))
    with pytest.raises(ValueError) as e:
        train(bandit_config(tmp_path, "dr_grpo", steps=2, run={"resume": True, "seed": 3}))
    assert "recipe.name: 'grpo' -> 'dr_grpo'" in str(e.value) and "run.seed: 0 -> 3" in str(e.value)


def test_run_only_fields_may_change(bandit_config, tmp_path):
    train(bandit_config(tmp_path, steps=1, run={"save_every": 1}))
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no config-change warning either
        train(bandit_config(tmp_path, steps=3, run={"resume": True, "threads": 2, "save_every": 2,
                                                    "progress": False, "device": "cpu"}))
    assert [r["step"] for r in read_metrics(tmp_path)] == [1, 2, 3]
    assert checkpoint_config(latest_checkpoint(tmp_path))["run"]["save_every"] == 2


def test_no_checkpoint_is_a_clear_error(bandit_config, tmp_path):
    with pytest.raises(ValueError, match="run.resume = True is invalid; allowed: an out_dir holding a checkpoint"):
        train(bandit_config(tmp_path, steps=1, run={"resume": True}))
    assert not (tmp_path / "config.toml").exists()


def test_allow_config_change_new_optimiser_and_lr(bandit_config, tmp_path):
    """sgd -> adamw used to raise KeyError 'momentum'; allowed, the new optimiser starts fresh and the
    new lr is the one in use (not the checkpoint's)."""
    train(bandit_config(tmp_path, steps=1))
    cfg = bandit_config(tmp_path, steps=2, optim={"optimizer": "adamw", "lr": 0.01},
                        run={"resume": True, "allow_config_change": True})
    with pytest.warns(RuntimeWarning, match=r"optim.lr: 0.5 -> 0.01; optim.optimizer: 'sgd' -> 'adamw'"):
        ctx = train(cfg)
    assert type(ctx.optimizer).__name__ == "AdamW" and ctx.optimizer.param_groups[0]["lr"] == 0.01
    assert 'optimizer = "adamw"' in (tmp_path / "config.toml").read_text()
    assert [r["step"] for r in read_metrics(tmp_path)] == [1, 2]


def test_allow_config_change_same_optimiser_new_lr(bandit_config, tmp_path):
    train(bandit_config(tmp_path, steps=1))
    with pytest.warns(RuntimeWarning, match="optim.lr: 0.5 -> 0.05"):
        ctx = train(bandit_config(tmp_path, steps=2, optim={"lr": 0.05},
                                  run={"resume": True, "allow_config_change": True}))
    assert ctx.optimizer.param_groups[0]["lr"] == 0.05


def test_a_field_the_checkpoint_predates_is_no_change_at_its_default():
    """Checkpoints written before a config field existed resume when the field is at its default (the
    old run had that behaviour); a non-default value of the new field is still a change."""
    from llm.checkpoint import config_changes
    saved = {"optim": {"lr": 1e-3}}
    defaults = {"optim": {"lr": 1e-6, "schedule": "constant"}, "dist": {"strategy": "ddp"}}
    now = {"optim": {"lr": 1e-3, "schedule": "constant"}, "dist": {"strategy": "ddp"}}
    assert config_changes(saved, now, defaults=defaults) == {}
    now["optim"]["schedule"] = "cosine"
    assert config_changes(saved, now, defaults=defaults) == {"optim.schedule": ("<absent>", "cosine")}
    assert "dist.strategy" in config_changes(saved, now)  # without defaults: every new field differs
