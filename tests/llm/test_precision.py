"""Mixed precision (llm/precision.py, issue 12): float32 master weights under bfloat16 / float16
autocast, float16 loss scaling, TF32 flags, the pure-low-precision warning."""

import contextlib
import math
import warnings

import pytest
import torch

from llm import config as C
from llm.precision import Precision, autocast_context, enable_tf32, low_precision_warning, make_precision
from llm.train import TrainConfig, ppo_update, rollout_step, setup


def small(tmp_path, train_config, name="entropy", **model):
    """The entropy recipe: its bonus has a gradient on an untrained policy (rewards are all 0)."""
    return train_config(tmp_path, name=name, steps=1, model={"hidden_size": 32, "num_layers": 1, **model},
                        optim={"lr": 1e-6})


def one_update(cfg, hook_dtypes=None):
    """setup, one rollout, one ppo_update: (ctx, initial parameters, metrics); `hook_dtypes` collects
    the lm_head's output dtype of every forward."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        ctx = setup(cfg)
    if hook_dtypes is not None:
        ctx.model.lm_head.register_forward_hook(lambda m, i, o: hook_dtypes.append(o.dtype))
    init = [p.detach().clone() for p in ctx.model.parameters()]
    exp = rollout_step(ctx, 0)
    return ctx, init, ppo_update(ctx, exp)


def changed_share(ctx, init) -> float:
    n = sum(int((p.detach() != q).sum()) for p, q in zip(ctx.model.parameters(), init))
    return n / sum(q.numel() for q in init)


def test_bf16_autocast_with_float32_masters_applies_tiny_updates(tmp_path, train_config):
    """The issue's failing case: AdamW at lr 1e-6 moves almost no pure-bfloat16 weight (measured
    410 / 34080), while float32 masters with bfloat16 autocast move almost all (32670 / 34080)."""
    pure, init_pure, _ = one_update(small(tmp_path / "a", train_config, dtype="bfloat16"))
    seen = []
    mixed, init_mixed, out = one_update(small(tmp_path / "b", train_config, autocast="bfloat16"), seen)
    assert all(p.dtype == torch.float32 for p in mixed.model.parameters())  # masters stay float32
    assert all(s["exp_avg"].dtype == torch.float32 for s in mixed.optimizer.state.values())
    assert seen and set(seen) == {torch.bfloat16}  # rollout and loss forwards ran in bfloat16
    assert out["nonfinite_skips"] == 0 and "loss_scale" not in out
    assert changed_share(pure, init_pure) < 0.05
    assert changed_share(mixed, init_mixed) > 0.9


def test_float16_autocast_runs_with_a_gradient_scaler(tmp_path, train_config):
    """CPU torch runs float16 autocast, so the scaler path is tested for real (not a stub)."""
    seen = []
    ctx, init, out = one_update(small(tmp_path, train_config, autocast="float16"), seen)
    assert set(seen) == {torch.float16}
    assert isinstance(ctx.precision.scaler, torch.amp.GradScaler)
    assert out["scaler_skips"] == 0 and out["nonfinite_skips"] == 0 and out["loss_scale"] == 2.0 ** 16
    assert math.isfinite(out["grad_norm"]) and changed_share(ctx, init) > 0.9


def test_scaler_overflow_is_skipped_without_counting_as_nonfinite(tmp_path, train_config):
    """A loss scale so large that the float16 backward overflows: the scaler halves its scale, the
    minibatch is skipped as scaler_skips (no error although no minibatch stepped), nothing changes."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        ctx = setup(small(tmp_path, train_config, autocast="float16"))
    ctx.precision.scaler = torch.amp.GradScaler("cpu", init_scale=2.0 ** 100)
    init = [p.detach().clone() for p in ctx.model.parameters()]
    out = ppo_update(ctx, rollout_step(ctx, 0))
    assert out["scaler_skips"] == 1 and out["nonfinite_skips"] == 0 and out["loss_scale"] == 2.0 ** 99
    assert changed_share(ctx, init) == 0


def test_nonfinite_loss_under_the_scaler_is_still_an_error(tmp_path, train_config):
    """A NaN loss is not a scaler event: it is counted as non-finite and stops the update."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        ctx = setup(small(tmp_path, train_config, autocast="float16"))
        exp = rollout_step(ctx, 0)
        with torch.no_grad():
            ctx.model.model.norm.weight.fill_(float("nan"))
        with pytest.raises(FloatingPointError, match="non-finite loss or gradient"):
            ppo_update(ctx, exp)


def test_autocast_none_is_inert():
    """autocast none: a null context, no scaler, plain backward/step, no extra metrics (the trainer
    run was also checked bit-identical to the trainer before this module: grpo, reverse_kl,
    dr_grpo, memory, 2 steps, equal SHA-256 of the final state dict)."""
    p = make_precision("none", torch.device("cpu"))
    assert p.scaler is None and isinstance(p.autocast(), contextlib.nullcontext)
    assert p.metrics(0) == {} and p.state_dict() is None
    assert not p.overflowed([], float("nan"), None)  # no scaler: never a scaler event, no sync
    w = torch.nn.Parameter(torch.tensor([1.0, 2.0]))
    opt = torch.optim.SGD([w], lr=0.5)
    p.backward((w ** 2).sum())
    p.unscale(opt)
    p.step(opt)
    assert torch.equal(w.detach(), torch.tensor([0.0, 0.0]))


def test_autocast_context_dtype():
    lin = torch.nn.Linear(4, 4)
    x = torch.randn(2, 4)
    for mode, dtype in (("none", torch.float32), ("bfloat16", torch.bfloat16), ("float16", torch.float16)):
        with autocast_context(mode, torch.device("cpu")):
            assert lin(x).dtype == dtype


def test_tf32_only_on_cuda():
    matmul, conv = torch.backends.cuda.matmul, torch.backends.cudnn.conv
    before = matmul.fp32_precision, conv.fp32_precision
    try:
        assert not enable_tf32(torch.device("cpu")) and (matmul.fp32_precision, conv.fp32_precision) == before
        assert not enable_tf32(torch.device("cuda", 0), on=False)
        assert enable_tf32(torch.device("cuda", 0)) and matmul.fp32_precision == conv.fp32_precision == "tf32"
    finally:
        matmul.fp32_precision, conv.fp32_precision = before


def test_pure_low_precision_adamw_warns_once(tmp_path, train_config):
    assert low_precision_warning(torch.float32, "none", "adamw") is None
    assert low_precision_warning(torch.bfloat16, "none", "sgd") is None
    msg = low_precision_warning(torch.bfloat16, "none", "adamw")
    assert msg.startswith("model.dtype = 'bfloat16' with model.autocast = 'none'") and "\n" not in msg
    with pytest.warns(RuntimeWarning, match="pure bfloat16") as rec:
        setup(small(tmp_path, train_config, dtype="bfloat16"))
    assert sum("pure bfloat16" in str(r.message) for r in rec) == 1


def test_autocast_config_errors_name_the_field():
    with pytest.raises(ValueError, match=r"^model\.autocast = 'fp8' is invalid; allowed: none, bfloat16, float16$"):
        C.parse(TrainConfig, ["--model.autocast", "fp8"])
    with pytest.raises(ValueError, match=r"^model\.autocast = 'bfloat16' is invalid; allowed: none unless"):
        C.parse(TrainConfig, ["--model.autocast", "bfloat16", "--model.dtype", "bfloat16"])
    cfg = C.parse(TrainConfig, ["--model.autocast", "bfloat16", "--model.tf32", "false"])
    assert cfg.model.autocast == "bfloat16" and cfg.model.tf32 is False


def test_scaler_state_round_trips():
    p = Precision("float16", torch.device("cpu"), torch.amp.GradScaler("cpu", init_scale=8.0))
    q = make_precision("float16", torch.device("cpu"))
    q.load_state_dict(p.state_dict())
    assert q.scaler.get_scale() == 8.0


def test_float16_resume_restores_the_scaler_exactly(tmp_path, train_config):
    from llm.checkpoint import latest_checkpoint, safe_load
    from llm.train import train

    def cfg(out, steps, **run):
        return train_config(out, name="entropy", steps=steps, model={"hidden_size": 32, "num_layers": 1,
                            "autocast": "float16"}, optim={"lr": 1e-3}, run={"save_every": 1, **run})
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        full = train(cfg(tmp_path / "full", 2))
        train(cfg(tmp_path / "cut", 1))
        state = safe_load(latest_checkpoint(tmp_path / "cut") / "state.pt")
        resumed = train(cfg(tmp_path / "cut", 2, resume=True))
    assert state["precision"]["scale"] == 2.0 ** 16
    for p, q in zip(full.model.parameters(), resumed.model.parameters()):
        assert torch.equal(p, q)
    assert resumed.precision.state_dict() == full.precision.state_dict()  # growth tracker 2, not 1


def test_autocast_needs_float32_masters_of_a_model_passed_in(tmp_path, train_config):
    from llm.models import CharTokenizer, tiny_llama
    from llm.train import train
    tok = CharTokenizer()
    model = tiny_llama(tok.vocab_size, "tiny", hidden_size=32, num_layers=1, dtype=torch.bfloat16)
    cfg = small(tmp_path, train_config, autocast="bfloat16")
    with pytest.raises(ValueError, match=r"^model\.autocast = 'bfloat16' is invalid; allowed: none for a model "
                                         r"with bfloat16 parameters"):
        train(cfg, model=model, tok=tok)
