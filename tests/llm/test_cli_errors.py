"""Bad input: every command prints one line `error: <field> = <value> is invalid; allowed: ...` and
exits 2; the traceback only with --debug or COLLAPSE_LAB_DEBUG=1. One case per issue-9 finding."""

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from llm import bench, evaluate, sft, train
from llm import config as C

ROOT = Path(__file__).resolve().parents[2]
QUICK = ["--run.progress", "false", "--run.threads", "1"]


def one_line_error(capsys, main, argv) -> str:
    """Run main(argv) the way __main__ does; assert exit 2 and exactly one stderr line; return it."""
    with pytest.raises(SystemExit) as e:
        C.run_cli(main, argv)
    assert e.value.code == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("error: "), err
    assert "Traceback" not in err and " is invalid; allowed: " in err, err
    return err


@pytest.fixture
def files(tmp_path):
    """Bad input files: a directory, a non-UTF-8 file, a missing path, TOML with `run = 5`."""
    (tmp_path / "dir").mkdir()
    (tmp_path / "latin1.toml").write_bytes("[run]\nout_dir = 'caf\xe9'\n".encode("latin-1"))
    (tmp_path / "latin1.jsonl").write_bytes(b'{"problem": "p", "answer": "1"}\n{"problem": "caf\xe9", '
                                            b'"answer": "2"}\n')
    (tmp_path / "run5.toml").write_text("run = 5\n")
    (tmp_path / "infinity.toml").write_text("[optim]\nlr = Infinity\n")  # what the old save wrote
    (tmp_path / "nomodel").mkdir()  # a directory without config.json
    return tmp_path


CASES = [  # (command, argv with {tmp} for the fixture's folder, field named in the message)
    (train, ["--optim.lr", "inf"], "optim.lr"),
    (train, ["--optim.lr", "nan"], "optim.lr"),
    (bench, ["--optim.lr=-inf"], "optim.lr"),
    (train, ["--optim.lrr", "1"], "command line"),
    (sft, ["--sft.lr"], "command line"),
    (sft, ["--sft.lr", "inf"], "sft.lr"),
    (sft, ["--sft.wrong_share", "nan"], "sft.wrong_share"),
    (train, ["--task.timeout_s", "inf"], "task.timeout_s"),
    (train, ["--task.timeout_s", "1e300"], "task.timeout_s"),
    (train, ["--task.timeout_s", "1e-300"], "task.timeout_s"),  # setitimer(~0) would disable the limit
    (train, ["--rollout.temperature", "1e-300"], "rollout.temperature"),  # logits / T overflow
    (train, ["--rollout.temperature", "inf"], "rollout.temperature"),
    (evaluate, ["--rollout.top_p", "nan"], "rollout.top_p"),
    (evaluate, ["--task.test_fraction", "nan"], "task.test_fraction"),
    (train, ["--config", "{tmp}/dir"], "config"),
    (train, ["--config", "{tmp}/latin1.toml"], "config"),
    (sft, ["--config", "{tmp}/missing.toml"], "config"),
    (train, ["--config", "{tmp}/infinity.toml"], "config"),
    (train, ["--config", "{tmp}/run5.toml"], "run"),
    (train, ["--config", "{tmp}/run5.toml", "--run.steps", "3"], "run"),
    (train, ["--model.name", "{tmp}/no/such/model"], "model.name"),
    (evaluate, ["--model.name", "./model"], "model.name"),
    (sft, ["--model.name", "tinyy"], "model.name"),
    (train, ["--model.name", "{tmp}/nomodel"], "model.name"),  # exists, but holds no model
    (train, ["--model.memory_preset", "huge"], "model.memory_preset"),
    (train, ["--task.name", "math", "--task.path", "{tmp}/dir"], "task.path"),
    (train, ["--task.name", "math", "--task.path", "{tmp}/latin1.jsonl"], "task.path"),
    (train, ["--recipe.name", "dph_js", "--recipe.overrides", "{eta = nan}"], "recipe.overrides.eta"),
    (train, ["--recipe.overrides", "{beta = nan}"], "recipe.overrides.beta"),
    (train, ["--recipe.overrides", "{nonsense = 1}"], "recipe.overrides"),
    (train, ["--recipe.overrides", "{clip_high = -1.0}"], "recipe.overrides.policy.clip_high"),
]


@pytest.mark.parametrize("mod, argv, field", CASES,
                         ids=[f"{m.__name__.split('.')[-1]}:{' '.join(a)}" for m, a, _ in CASES])
def test_bad_input_is_one_line(mod, argv, field, files, capsys):
    argv = [a.replace("{tmp}", str(files)) for a in argv] + QUICK + ["--run.out_dir", str(files / "out")]
    err = one_line_error(capsys, mod.main, argv)
    assert err.startswith(f"error: {field} = "), err
    assert not (files / "out" / "model").exists()


def test_debug_flag_and_env_keep_the_traceback(monkeypatch):
    with pytest.raises(ValueError, match=r"optim\.lr = inf"):
        C.run_cli(train.main, ["--optim.lr", "inf", "--debug"])
    monkeypatch.setenv("COLLAPSE_LAB_DEBUG", "1")
    with pytest.raises(ValueError, match=r"optim\.lr = inf"):
        C.run_cli(train.main, ["--optim.lr", "inf"])


def test_real_process_exit_code_and_one_line(tmp_path):
    env = {k: v for k, v in os.environ.items() if k != "COLLAPSE_LAB_DEBUG"}
    r = subprocess.run([sys.executable, "-m", "llm.train", "--optim.lr", "inf", "--run.out_dir",
                        str(tmp_path)], cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
    assert r.returncode == 2 and r.stdout == ""
    assert r.stderr == "error: optim.lr = inf is invalid; allowed: a finite number\n"


def test_sft_stops_when_parameters_become_non_finite(tmp_path):
    """A finite but absurd lr: AdamW's first step overflows float32 parameters; the run stops with an
    error naming sft.lr and saves no model (before, gradients alone were checked)."""
    out = tmp_path / "sft"
    for lr in ("1e38", "1e39"):  # 1e39: torch itself overflows converting lr to float32
        with pytest.raises(ValueError, match=rf"^sft\.lr = {re.escape(repr(float(lr)))} is invalid; allowed: a smaller "
                           r"learning rate \(optimizer step [12]: "):
            sft.main(["--model.hidden_size", "16", "--task.num_prompts", "8", "--sft.batch_size", "4",
                      "--sft.lr", lr, "--run.steps", "3", "--run.out_dir", str(out)] + QUICK)
        assert not (out / "model").exists()


def test_parameter_problem_names_the_parameter():
    import torch

    from llm.guards import parameter_problem
    ok = [("a", torch.ones(3)), ("b", torch.zeros(2, 2))]
    assert parameter_problem(ok) is None and parameter_problem([]) is None
    for bad in (float("inf"), float("-inf"), float("nan")):
        assert "c has max |x| = non-finite" in parameter_problem(ok + [("c", torch.tensor([0.0, bad]))])
    assert "overflows float32" in parameter_problem([("d", torch.full((10,), 3e38))])  # finite, square overflows


def test_recipe_overrides_keep_their_toml_types(tmp_path):
    flags = ["--recipe.name", "dapo", "--recipe.overrides",
             "{dynamic_sampling = false, clip_high = 0.3, advantage_eps = 1e-6}"]
    cfg = C.parse(train.TrainConfig, flags)
    assert cfg.recipe.overrides == {"dynamic_sampling": False, "clip_high": 0.3, "advantage_eps": 1e-6}
    assert type(cfg.recipe.overrides["dynamic_sampling"]) is bool
    assert cfg.recipe.build().dynamic_sampling is False
    toml = tmp_path / "r.toml"
    toml.write_text('[recipe]\nname = "dapo"\noverrides = {dynamic_sampling = false, clip_high = 0.3, '
                    'advantage_eps = 1e-6}\n')
    assert C.parse(train.TrainConfig, ["--config", str(toml)]).recipe == cfg.recipe
    again = C.parse(train.TrainConfig, ["--config", str(C.save(cfg, tmp_path / "out"))])
    assert again == cfg and type(again.recipe.overrides["dynamic_sampling"]) is bool


def test_saved_eval_and_bench_outputs_are_json(tmp_path):
    """eval.json / bench.json go through the atomic writer: no temporary file is left behind."""
    C.write_atomic(tmp_path / "x.json", json.dumps({"a": 1}))
    assert json.loads((tmp_path / "x.json").read_text()) == {"a": 1}
    assert [p.name for p in tmp_path.iterdir()] == ["x.json"]
