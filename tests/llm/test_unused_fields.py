"""llm.sft and llm.evaluate share ModelConfig / RunConfig with llm.train but do not use its LoRA,
autocast, checkpointing, evaluation or logging fields: a non-default value of one is a one-line error
naming the field, never silently ignored."""

import pytest

from llm import config as C
from llm.cli import refuse_unused
from llm.evaluate import UNUSED as EVAL_UNUSED
from llm.evaluate import EvalConfig
from llm.evaluate import main as evaluate_main
from llm.sft import UNUSED as SFT_UNUSED
from llm.sft import SFTConfig, sft


@pytest.mark.parametrize("flag, value", [("--model.lora_rank", "4"), ("--model.autocast", "bfloat16"),
                                         ("--run.save_every", "5"), ("--run.eval_every", "5")])
def test_sft_refuses_a_train_only_field(tmp_path, flag, value):
    cfg = C.parse(SFTConfig, ["--run.out_dir", str(tmp_path), "--run.steps", "1", flag, value])
    with pytest.raises(ValueError, match=rf"^{flag[2:]} = .* is invalid; allowed: .*: llm.sft does not use it"):
        sft(cfg)
    assert not (tmp_path / "config.toml").exists()  # refused before anything is written


def test_evaluate_refuses_a_train_only_field(tmp_path):
    with pytest.raises(ValueError, match=r"^model.gradient_checkpointing = True is invalid; allowed: False: "
                                         r"llm.evaluate does not use it"):
        evaluate_main(["--run.out_dir", str(tmp_path), "--model.gradient_checkpointing", "true"])


@pytest.mark.parametrize("cls, unused", [(SFTConfig, SFT_UNUSED), (EvalConfig, EVAL_UNUSED)])
def test_defaults_pass_and_every_listed_field_exists(cls, unused):
    cfg = cls()
    refuse_unused(cfg, unused, "tool")  # the command's own defaults are fine
    for name in unused:
        sec, key = name.split(".")
        assert hasattr(getattr(cfg, sec), key), name
