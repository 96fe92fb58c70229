"""Every command answers --help, and each default it prints is the value the command then uses."""

import ast
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from llm import bench, evaluate, sft, train
from llm import config as C

COMMANDS = {"train": train, "sft": sft, "evaluate": evaluate, "bench": bench}
ROOT = Path(__file__).resolve().parents[2]


def printed_defaults(text: str) -> dict[str, str]:
    """{'section.field': default text} from an argparse help page: one chunk per option line."""
    chunks = re.findall(r"^ {2}--(\w+\.\w+) \S+(.*?)(?=^ {2}-|^\S|\Z)", text, re.M | re.S)
    out = {}
    for flag, body in chunks:
        m = re.search(r"\(default: (.*)\)$", " ".join(body.split()))
        assert m, f"--{flag} prints no default"
        out[flag] = m.group(1)
    return out


class Resolved(Exception):
    """Raised by the patched parse with the config the command resolved."""


@pytest.mark.parametrize("name", list(COMMANDS))
def test_help_prints_the_defaults_the_command_uses(name, capsys, monkeypatch):
    monkeypatch.setenv("COLUMNS", "100")
    mod = COMMANDS[name]
    with pytest.raises(SystemExit) as e:
        mod.main(["--help"])
    assert e.value.code == 0
    text = capsys.readouterr().out
    shown = printed_defaults(text)
    assert "--debug" in text

    real_parse = C.parse

    def capture(cls, argv=None, description=""):
        raise Resolved(real_parse(cls, argv, description))

    monkeypatch.setattr(C, "parse", capture)  # the command resolves its config with no flags, then stops
    with pytest.raises(Resolved) as got:
        mod.main([])
    cfg = got.value.args[0]
    used = {f"{sec}.{k}": v for sec, vals in C.to_dict(cfg).items() for k, v in vals.items()}
    assert set(shown) == set(used), f"{name}: flags and config fields differ"
    for flag, value in used.items():
        assert ast.literal_eval(shown[flag]) == value, f"{name} --{flag}: help says {shown[flag]}, runs {value!r}"


def test_sft_help_shows_its_own_run_defaults(capsys):
    with pytest.raises(SystemExit):
        sft.main(["--help"])
    shown = printed_defaults(capsys.readouterr().out)
    assert shown["run.steps"] == "600" and shown["run.out_dir"] == "'runs/sft'"


def test_help_in_a_real_process():
    """The __main__ entry point (bench: TrainConfig sections with a '%' in a docstring)."""
    env = dict(os.environ, COLUMNS="100")
    r = subprocess.run([sys.executable, "-m", "llm.bench", "--help"], cwd=ROOT, env=env,
                       capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr
    shown = printed_defaults(r.stdout)
    assert shown["bench.warmup"] == "1" and shown["optim.num_minibatches"] == "1"
    assert "j % M == m" in " ".join(r.stdout.split())


def test_help_lists_the_registries(capsys):
    """--recipe.name lists every recipe with its RECIPE_INFO line; task and engine choices come from
    their registries."""
    from collapse_lab.objective import RECIPE_INFO
    from llm.rollout import ENGINES
    from llm.tasks import TASKS
    with pytest.raises(SystemExit):
        train.main(["--help"])
    flat = lambda t: re.sub(r"-\s+", "-", " ".join(t.split()))  # noqa: E731 -- argparse wraps at hyphens
    text = flat(capsys.readouterr().out)
    for name, line in RECIPE_INFO.items():
        assert f"{name}: {flat(line).rstrip('.')}" in text
    for name in list(TASKS) + list(ENGINES):
        assert f" {name}: " in text or f" {name}." in text or f"Choices: {name}" in text
