"""Per-step statistics logged by llm.train: the learning rate, the truncation rate (responses that hit
max_new_tokens without EOS) and tokens per second of the rollout and of the update."""

import pytest
import torch

from llm.logger import eos_ids, truncated
from llm.train import train


def test_truncated_rows_from_tokens_and_mask():
    eos, pad = 2, 0
    tokens = torch.tensor([[5, 6, 7], [5, 6, 2], [5, 2, pad], [5, 6, 7]])
    mask = torch.tensor([[1, 1, 1], [1, 1, 1], [1, 1, 0], [1, 1, 1]], dtype=torch.float32)
    assert truncated(tokens, mask, [eos]).tolist() == [True, False, False, True]
    assert truncated(tokens, mask, [eos, 7]).tolist() == [False, False, False, False]  # an EOS list
    assert truncated(tokens, mask, []).tolist() == [True, True, False, True]  # no EOS: full rows


def test_eos_ids_of_a_tokenizer():
    class Tok:
        eos_id = 2
    assert eos_ids(Tok()) == [2]
    Tok.eos_ids = [2, 9]
    assert eos_ids(Tok()) == [2, 9]
    Tok.eos_id, Tok.eos_ids = None, None
    assert eos_ids(Tok()) == []


def test_logged_every_step(sft_model, train_config, tmp_path):
    from llm.logger import read_metrics
    long = train_config(tmp_path / "long", sft_model, "grpo", steps=2, rollout={"max_new_tokens": 8})
    train(long)
    rows = read_metrics(tmp_path / "long")
    assert all({"lr", "truncated_frac", "rollout_tokens_per_s", "update_tokens_per_s"} <= r.keys() for r in rows)
    assert all(r["lr"] == 1e-3 for r in rows)
    assert all(r["truncated_frac"] < 0.5 for r in rows)  # the SFT model ends its answers with EOS
    n = long.rollout.group_size * long.rollout.prompts_per_step
    for r in rows:  # rollout tokens/s: the response tokens generated per second of rollout
        assert r["rollout_tokens_per_s"] * r["rollout_time_s"] == pytest.approx(r["response_len"] * n)
    train(train_config(tmp_path / "short", sft_model, "grpo", steps=1, rollout={"max_new_tokens": 1}))
    assert read_metrics(tmp_path / "short")[0]["truncated_frac"] == 1.0  # no answer fits in one token
    train(train_config(tmp_path / "e2", sft_model, "grpo", steps=1, rollout={"max_new_tokens": 8},
                       optim={"ppo_epochs": 2}))
    seen = [r["update_tokens_per_s"] * r["update_time_s"] for r in
            (rows[0], read_metrics(tmp_path / "e2")[0])]  # the same rollout, one and two PPO epochs
    assert seen[1] == pytest.approx(2 * seen[0]) and seen[0] > rows[0]["response_len"] * n  # prompts count too
