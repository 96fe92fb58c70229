"""The RL loop: every recipe trains, the reference/memory/DPH machinery appears only when the recipe
asks for it, dynamic sampling filters, and gradient accumulation equals one big batch."""

import math

import pytest
import torch

from collapse_lab.objective import RECIPES
from llm.logger import read_metrics
from llm.train import train


@pytest.mark.parametrize("name", list(RECIPES) + ["ips_grpo+dph_js"])
def test_every_recipe_runs_two_steps(sft_model, train_config, tmp_path, name):
    cfg = train_config(tmp_path, sft_model, name, steps=2, recipe={"overrides": (
        {"n_pre": 4} if "dph" in name else {})}, optim={"micro_groups": 2})
    ctx = train(cfg)
    rec = cfg.recipe.build()
    rows = read_metrics(tmp_path)
    assert len(rows) == 2 and all(math.isfinite(r["loss"]) for r in rows)
    assert (ctx.ref_model is not None) == rec.needs_ref
    assert (ctx.memory is not None) == (rec.sampler is not None)
    assert (ctx.refstore is not None) == rec.needs_ref_samples
    if rec.needs_ref:
        assert all(math.isfinite(r["kl_ref"]) for r in rows)
    if rec.sampler is not None:
        assert all(math.isfinite(r["memory_loss"]) for r in rows)
    if rec.needs_history:
        assert ctx.history.trials.sum() == 2 * 4 * 4  # 2 steps x 4 prompts x G = 4


def test_reverse_kl_without_beta_loads_no_reference(sft_model, train_config, tmp_path):
    ctx = train(train_config(tmp_path, sft_model, "reverse_kl", steps=1, recipe={"overrides": {"beta": 0.0}}))
    assert ctx.ref_model is None


def test_dph_split(sft_model, train_config, tmp_path):
    cfg = train_config(tmp_path, sft_model, "dph_forward", steps=1, recipe={"overrides": {"n_pre": 2, "n_ref": 1}})
    ctx = train(cfg)
    assert ctx.refstore.samples  # some prompt was solved 2 / 2 times by the SFT model
    for pid, s in ctx.refstore.samples.items():  # D_pef prompts: stored correct samples and log-probs
        prompt = next(p for p in ctx.task.prompts("train") if p.id == pid)
        text = ctx.tok.decode(s["tokens"][0][s["mask"][0] > 0].tolist())
        assert ctx.task.check(prompt, text).status == "correct"
        assert s["ref_logp"].shape == s["tokens"].shape and (s["ref_logp"] <= 0).all()


def test_dynamic_sampling_keeps_varied_groups(sft_model, train_config, tmp_path):
    ctx = train(train_config(tmp_path, sft_model, "dapo", steps=2))
    rows = read_metrics(tmp_path)
    assert all(r["zero_var_frac"] == 0.0 for r in rows)  # every trained group had reward variance
    assert all(1 <= r["groups"] <= 4 for r in rows)
    assert ctx.recipe.dynamic_sampling


ACCUMULATION = {  # recipe name -> overrides; every statistic spanning the batch is prepared once
    "grpo": {}, "grpo_std_batch": {"std": "batch"}, "isac": {"normalize": True}, "dapo": {},
    "dph_js": {"n_pre": 2}, "dr_grpo": {},
}


@pytest.mark.parametrize("key", list(ACCUMULATION))
def test_accumulation_equals_one_batch(sft_model, train_config, tmp_path, key):
    """micro-batches of one group (accumulated) vs the whole minibatch at once: same weights (float64)."""
    from llm import config as C
    from llm.models import load_model
    name = key.split("_std")[0]
    init = torch.cat([p.detach().flatten().double() for p in load_model(C.ModelConfig(name=sft_model))[0].parameters()])
    params, ctxs = [], []
    for micro in (0, 1):
        cfg = train_config(tmp_path / f"m{micro}", sft_model, name, steps=2, model={"dtype": "float64"},
                           recipe={"overrides": ACCUMULATION[key]},
                           optim={"micro_groups": micro, "num_minibatches": 2})
        ctxs.append(train(cfg))
        params.append(torch.cat([p.detach().flatten() for p in ctxs[-1].model.parameters()]))
    if name == "dph_js":
        assert ctxs[0].refstore.samples  # the divergence term is present
    assert (params[0] - init).abs().max() > 1e-4  # the steps moved the weights
    err = float((params[0] - params[1]).abs().max())
    print(f"accumulation {key}: max |dw| = {err:.3g}")
    assert err < 1e-10


def test_nonfinite_loss_is_a_counted_skip_then_an_error(sft_model, train_config, tmp_path, monkeypatch):
    """A NaN loss skips its minibatch (counted in metrics, warned); a step with nothing finite raises."""
    import llm.update as T  # ppo_update calls micro_loss there
    real, calls = T.micro_loss, []

    def flaky(*args):
        loss, diag = real(*args)
        calls.append(1)
        return (loss * float("nan") if len(calls) == 1 else loss), diag

    monkeypatch.setattr(T, "micro_loss", flaky)
    cfg = train_config(tmp_path / "a", sft_model, "grpo", steps=2, optim={"num_minibatches": 2})
    with pytest.warns(RuntimeWarning, match="non-finite"):
        train(cfg)
    rows = read_metrics(tmp_path / "a")
    assert [r["nonfinite_skips"] for r in rows] == [1.0, 0.0]
    assert all(math.isfinite(r["loss"]) for r in rows)

    monkeypatch.setattr(T, "micro_loss", lambda *a: (lambda l, d: (l * float("nan"), d))(*real(*a)))
    with pytest.raises(FloatingPointError, match="every minibatch"), pytest.warns(RuntimeWarning):
        train(train_config(tmp_path / "b", sft_model, "grpo", steps=1))


def test_dph_with_empty_pef_warns_and_logs_its_size(sft_model, train_config, tmp_path):
    # n_pre = 64 of a diverse base model: no prompt is solved every time, so D_pef is empty
    cfg = train_config(tmp_path, sft_model, "dph_js", steps=1, recipe={"overrides": {"n_pre": 64}})
    with pytest.warns(RuntimeWarning, match="D_pef is empty"):
        train(cfg)
    assert read_metrics(tmp_path)[0]["pef_prompts"] == 0.0


def test_identical_across_runs_and_thread_counts(sft_model, train_config, tmp_path):
    """The same config gives bit-identical weights and metrics, run again and with 2 torch threads."""
    from llm.checkpoint import latest_checkpoint
    weights, metrics = [], []
    try:
        for i, threads in enumerate((1, 1, 2)):
            cfg = train_config(tmp_path / str(i), sft_model, "grpo", steps=2, run={"threads": threads})
            ctx = train(cfg)
            weights.append(torch.cat([p.detach().flatten() for p in ctx.model.parameters()]))
            metrics.append([{k: v for k, v in r.items() if not k.endswith("_s")}  # wall-clock: time_s, *_per_s
                            for r in read_metrics(tmp_path / str(i))])
            assert latest_checkpoint(tmp_path / str(i)).name == "step_00000002"
    finally:
        torch.set_num_threads(1)
    assert torch.equal(weights[0], weights[1]) and torch.equal(weights[0], weights[2])
    assert metrics[0] == metrics[1] == metrics[2]
