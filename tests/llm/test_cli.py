"""The command-line entry points run in-process: train (bandit), evaluate (JSON + plot), bench."""

import json
from pathlib import Path

import pytest

from llm import bench, evaluate, train
from llm.logger import read_metrics


def test_train_cli_bandit(tmp_path):
    out = tmp_path / "run"
    train.main(["--model.name", "bandit", "--model.dtype", "float64", "--task.name", "bandit",
                "--task.num_prompts", "6", "--task.num_outcomes", "5", "--rollout.max_new_tokens", "1",
                "--recipe.name", "ips_grpo", "--optim.optimizer", "sgd", "--optim.lr", "0.5",
                "--run.steps", "3", "--run.save_every", "1", "--run.progress", "false",
                "--run.out_dir", str(out)])
    assert [r["step"] for r in read_metrics(out)] == [1, 2, 3]
    assert (out / "config.toml").exists() and (out / "model" / "model.safetensors").exists()
    assert (out / "checkpoints" / "latest").read_text() == "step_00000003"
    assert sorted(p.name for p in (out / "checkpoints").glob("step_*")) == ["step_00000002", "step_00000003"]
    with pytest.raises(ValueError, match="rollout.max_new_tokens"):
        train.main(["--model.name", "bandit", "--task.name", "bandit", "--run.out_dir", str(out)])


def test_evaluate_cli(sft_model, tmp_path):
    res = evaluate.main(["--model.name", sft_model, "--task.difficulty", "2", "--rollout.max_new_tokens",
                         "4", "--eval.n", "8", "--eval.max_prompts", "4", "--run.out_dir", str(tmp_path)])
    saved = json.loads(Path(tmp_path, "eval.json").read_text())
    assert saved["pass_at_k"] == res["pass_at_k"] and list(saved["pass_at_k"]) == ["1", "2", "4", "8"]
    curve = list(saved["pass_at_k"].values())
    assert all(a <= b + 1e-12 for a, b in zip(curve, curve[1:]))  # pass@k is non-decreasing in k
    assert curve[-1] == pytest.approx(sum(c > 0 for c in saved["correct_counts"]) / 4)  # pass@n
    assert curve[0] == pytest.approx(sum(saved["correct_counts"]) / 32)  # pass@1 = mean success
    assert Path(tmp_path, "eval.png").stat().st_size > 1000
    per = saved["distinct_per_prompt"]  # per-prompt diversity: means match, distinct <= correct count
    assert len(per) == 4 and sum(per) / 4 == pytest.approx(saved["distinct_correct"])
    assert all(d <= c for d, c in zip(per, saved["correct_counts"]))
    assert sum(saved["entropy_per_prompt"]) / 4 == pytest.approx(saved["correct_entropy"])


def test_bench_cli(tmp_path):
    res = bench.main(["--model.name", "tiny", "--model.hidden_size", "32", "--rollout.prompts_per_step",
                      "2", "--rollout.group_size", "2", "--rollout.max_new_tokens", "3", "--run.steps", "1",
                      "--bench.warmup", "0", "--run.out_dir", str(tmp_path)])
    assert res["gen_tokens_per_s"] > 0 and res["update_s_per_step"] > 0
    assert json.loads(Path(tmp_path, "bench.json").read_text()) == res


def test_sft_countdown_and_rl_on_math_file(tmp_path):
    """SFT's answer generator on countdown; RL on a math JSONL with an untrained model: every
    response is unparseable (no \\boxed{}), gets reward 0 and is counted."""
    from llm import sft
    sft.main(["--task.name", "countdown", "--task.num_prompts", "4", "--model.hidden_size", "32",
              "--run.steps", "2", "--sft.batch_size", "4", "--run.progress", "false",
              "--run.out_dir", str(tmp_path / "sft")])
    assert len(read_metrics(tmp_path / "sft")) == 2
    data = tmp_path / "math.jsonl"
    data.write_text("\n".join(json.dumps({"problem": f"{i} + {i} = ?", "answer": str(2 * i)})
                              for i in range(8)))
    train.main(["--task.name", "math", "--task.path", str(data), "--model.hidden_size", "32",
                "--rollout.prompts_per_step", "2", "--rollout.group_size", "2", "--run.steps", "1",
                "--run.progress", "false", "--run.out_dir", str(tmp_path / "rl")])
    row = read_metrics(tmp_path / "rl")[0]
    assert row["unparsed_frac"] == 1.0 and row["reward"] == 0.0
