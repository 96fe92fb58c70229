"""llm.bench --bench.mode trl: the baseline's config, task and tokenizer reimplemented in the project;
the interleaving and ratio arithmetic; the install hint without TRL; a short llm.train run."""

import hashlib
import json
from pathlib import Path

import pytest

from llm import bench, bench_trl
from llm.tasks.base import Prompt

SHARED = Path(__file__).resolve().parents[2] / ".." / "shared" / "bench" / "trl_baseline"
SHARED = SHARED if SHARED.is_dir() else Path("/work/shared/bench/trl_baseline")


@pytest.mark.skipif(not SHARED.is_dir(), reason="the TRL baseline folder is not beside the project")
def test_config_is_the_baseline_config_byte_for_byte():
    raw = (SHARED / "config.json").read_bytes()
    assert bench_trl.CONFIG_JSON.encode() == raw
    recorded = json.loads((SHARED / "results" / "run1.json").read_text())["config_sha256"]
    assert hashlib.sha256(bench_trl.CONFIG_JSON.encode()).hexdigest() == recorded


def test_digit_sum_task_golden():
    prompts = bench_trl.build_prompts(512, 0)
    assert len(prompts) == 512 and prompts == bench_trl.build_prompts(512, 0)
    assert {int(p[2:-1]) for p in prompts} == set(range(3, 16))
    task = bench_trl.DigitSumTask()
    p = Prompt(0, "S=13:", 13)
    assert task.check(p, "4+9").status == "correct" and task.check(p, " 9+4 ").reward == 1.0
    assert task.check(p, "4+8").reward == 0.0 and task.check(p, "4+8").outcome == "4+8"
    assert task.check(p, "13").status == "unparsed" and task.check(p, "4+9+0").reward == 0.0
    assert bench_trl.digit_sum_reward("S=3:", "0+3") == 1.0 and bench_trl.digit_sum_reward("S=3:", "03") == 0.0
    n_correct = [sum(bench_trl.digit_sum_reward(q, f"{a}+{b}") for a in range(10) for b in range(10))
                 for q in prompts]
    assert min(n_correct) == 4 and max(n_correct) == 10


def test_digit_tokenizer_matches_the_hf_tokenizer():
    import random
    hf, tok = bench_trl.build_tokenizer(), bench_trl.DigitTokenizer()
    assert len(hf) == tok.vocab_size == 18
    assert (hf.pad_token_id, hf.bos_token_id, hf.eos_token_id) == (tok.pad_id, tok.bos_id, tok.eos_id)
    for text in bench_trl.build_prompts(64, 1) + ["3+4", " 12 "]:
        assert hf(text)["input_ids"] == [tok.bos_id] + tok.encode(text)
    rng = random.Random(0)
    for _ in range(200):
        ids = [rng.randrange(18) for _ in range(rng.randrange(8))]
        assert tok.decode(ids) == hf.decode(ids, skip_special_tokens=True)
    with pytest.raises(ValueError, match="text = 'x' is invalid"):
        tok.encode("x")


def test_compare_interleaves_abba_and_takes_medians_of_medians():
    order = []

    def fake(trainer, threads):
        order.append(trainer)
        k = sum(t == trainer for t in order)
        return {"median_step_s": (0.1 if trainer == "trl" else 0.06) * k, "torch_threads": 2}
    r = bench_trl.compare(3, runner=fake)
    assert order == ["trl", "llm", "llm", "trl", "trl", "llm"]
    assert r["trl_median_step_s"] == pytest.approx(0.2) and r["llm_median_step_s"] == pytest.approx(0.12)
    assert r["ratio"] == pytest.approx(0.6) and r["pair_ratios"] == pytest.approx([0.6, 0.6, 0.6])


def test_trl_mode_without_trl_prints_the_install_hint(monkeypatch, capsys):
    import importlib.util
    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "trl" else real(name, *a))
    with pytest.raises(SystemExit) as e:
        bench.main(["--bench.mode", "trl"])
    assert e.value.code == 2
    assert capsys.readouterr().err.strip() == 'llm.bench --bench.mode trl needs TRL: pip install "collapse-lab[bench]"'


def test_trl_mode_rejects_a_changed_training_field():
    with pytest.raises(ValueError, match=r"rollout.group_size = 4 is invalid with bench.mode = 'trl'"):
        bench.main(["--bench.mode", "trl", "--rollout.group_size", "4"])
    with pytest.raises(ValueError, match="bench.mode = 'fast' is invalid; allowed: split, trl"):
        bench.main(["--bench.mode", "fast"])


def test_llm_train_runs_the_baseline_config(tmp_path, monkeypatch):
    """A 5-step llm.train run on the baseline model, task and tokenizer (the bench's own driver)."""
    real = bench_trl.llm_train_config

    def short(out_dir):
        cfg = real(out_dir)
        cfg.run.steps = 5
        return cfg
    monkeypatch.setattr(bench_trl, "llm_train_config", short)
    out = bench_trl.run_one("llm", threads=1)
    assert out["steps_timed"] == 2 and out["median_step_s"] > 0 and len(out["step_times_s"]) == 5
    cfg = real(str(tmp_path))
    assert cfg.rollout.group_size * cfg.rollout.prompts_per_step == 128 and cfg.rollout.max_new_tokens == 6
    assert cfg.optim.lr == 1e-4 and cfg.run.steps == 30
    assert sum(p.numel() for p in bench_trl.build_model().parameters()) == 661120
