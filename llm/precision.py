"""Mixed precision for llm.train: float32 master weights, autocast compute, float16 loss scaling, TF32.

`model.autocast` = bfloat16 / float16 keeps the parameters and the optimiser state in `model.dtype`
(float32: the master weights) and runs the forward passes (rollout, reference and loss) under
`torch.autocast(device.type, dtype)`: matmuls in the low precision, reductions and log-softmax in
float32. Gradients land in float32 on the float32 parameters, so an update far below bfloat16's
resolution (lr 1e-6 on a weight of size 1: bfloat16 has 8 mantissa bits) still changes the weight,
where pure bfloat16 AdamW loses it (tests/llm/test_precision.py).

float16 has a narrow exponent range, so its loss is multiplied by a dynamic scale
(torch.amp.GradScaler) before backward and the gradients are unscaled before the finiteness guard
and the gradient clip. A minibatch whose loss is finite but whose scaled gradient overflowed is an
ordinary scaler event: the scaler halves its scale, the minibatch is skipped and counted as
`scaler_skips` (never as `nonfinite_skips`, which can stop the run).

`model.autocast = none` is a null context, no scaler and a plain `loss.backward()` /
`optimizer.step()`: the run is bit-identical to the trainer without this module.

Pure low precision (model.dtype bfloat16 / float16 without autocast, AdamW) is allowed for memory-bound
runs but warned once (`low_precision_warning`): small updates round away.
"""

from __future__ import annotations

import contextlib
import math
from dataclasses import dataclass

import torch

from .dist import Dist, all_reduce
from .guards import max_abs

HALF = (torch.bfloat16, torch.float16)


def autocast_context(mode: str, device: torch.device):
    """The forward context of `mode`: contextlib.nullcontext() for 'none', else
    torch.autocast(device.type, dtype=torch.<mode>)."""
    if mode == "none":
        return contextlib.nullcontext()
    return torch.autocast(device.type, dtype=getattr(torch, mode))


def make_scaler(mode: str, device: torch.device, enabled: bool | None = None):
    """A torch.amp.GradScaler for float16 autocast (`enabled` defaults to mode == 'float16'), else None."""
    on = mode == "float16" if enabled is None else enabled
    return torch.amp.GradScaler(device.type) if on else None


def enable_tf32(device: torch.device, on: bool = True) -> bool:
    """On CUDA with `on`: float32 matmuls and convolutions may use TF32 (the fp32_precision API of
    torch >= 2.9, else allow_tf32). Returns whether it was switched on (never on CPU)."""
    if not on or device.type != "cuda":
        return False
    matmul, conv = torch.backends.cuda.matmul, torch.backends.cudnn.conv
    if hasattr(matmul, "fp32_precision"):  # the legacy flags must not be mixed with this API
        matmul.fp32_precision = "tf32"
        conv.fp32_precision = "tf32"
    else:
        torch.backends.cuda.matmul.allow_tf32 = True
        torch.backends.cudnn.allow_tf32 = True
    return True


def low_precision_warning(param_dtype: torch.dtype, mode: str, optimizer: str) -> str | None:
    """One line when training is pure low precision (bfloat16 / float16 parameters, no autocast,
    AdamW): its small updates round away; None otherwise."""
    if param_dtype not in HALF or mode != "none" or optimizer != "adamw":
        return None
    name = str(param_dtype).removeprefix("torch.")
    return (f"model.dtype = {name!r} with model.autocast = 'none' trains AdamW in pure {name}: updates "
            f"below {name}'s resolution are lost (at lr 1e-6 almost no weight changes); use model.dtype = "
            f"'float32' with model.autocast = {'bfloat16' if name == 'bfloat16' else 'float16'!r}")


def check_master_dtype(param_dtype: torch.dtype, mode: str) -> None:
    """autocast needs float32 master weights: ValueError naming model.autocast otherwise."""
    if mode != "none" and param_dtype != torch.float32:
        raise ValueError(f"model.autocast = {mode!r} is invalid; allowed: none for a model with "
                         f"{str(param_dtype).removeprefix('torch.')} parameters (autocast keeps float32 "
                         "master weights: load the model in float32)")


@dataclass
class Precision:
    """The trainer's precision hooks: `autocast()` around forwards, `backward(loss)`,
    `unscale(opt)` before the guard and the clip, `overflowed(...)`, `step(opt)`, `skip()`."""

    mode: str = "none"
    device: torch.device = torch.device("cpu")
    scaler: object = None  # torch.amp.GradScaler or None

    def autocast(self):
        """The forward context (autocast_context)."""
        return autocast_context(self.mode, self.device)

    def backward(self, loss: torch.Tensor) -> None:
        """loss.backward(), through the scaler when there is one."""
        (self.scaler.scale(loss) if self.scaler is not None else loss).backward()

    def unscale(self, optimizer) -> None:
        """Divide the gradients by the loss scale in place (a no-op without a scaler)."""
        if self.scaler is not None:
            self.scaler.unscale_(optimizer)

    def overflowed(self, params, loss: float, dist: Dist) -> bool:
        """After `unscale`: True when the scaled float16 gradient overflowed although every process's
        loss is finite. The scaler then lowers its scale (update) and the caller skips the minibatch
        without counting it as non-finite. Always False without a scaler (no extra sync)."""
        if self.scaler is None:
            return False
        grads = [p.grad for p in params if p.grad is not None]
        bad_grad = bool((~max_abs(grads).isfinite()).any()) if grads else False
        flags = [float(bad_grad), float(not math.isfinite(loss))]
        bad_grad, bad_loss = (all_reduce(f, dist, "max") > 0 for f in flags)
        if bad_grad and not bad_loss:
            self.scaler.update()  # found_inf was recorded by unscale_: the scale is lowered
            return True
        return False

    def step(self, optimizer) -> None:
        """optimizer.step(), through the scaler (which then updates its scale) when there is one."""
        if self.scaler is None:
            optimizer.step()
            return
        self.scaler.step(optimizer)
        self.scaler.update()

    def skip(self) -> None:
        """A minibatch skipped after `unscale`: the scaler closes its iteration (update)."""
        if self.scaler is not None:
            self.scaler.update()

    def metrics(self, overflows: int) -> dict:
        """{'scaler_skips', 'loss_scale'} with a scaler, else {} (metrics unchanged without one)."""
        if self.scaler is None:
            return {}
        return {"scaler_skips": float(overflows), "loss_scale": float(self.scaler.get_scale())}

    def state_dict(self) -> dict | None:
        """The scaler's state (plain numbers, weights_only-loadable), None without a scaler."""
        return self.scaler.state_dict() if self.scaler is not None else None

    def load_state_dict(self, state: dict) -> None:
        self.scaler.load_state_dict(state)


def make_precision(mode: str, device: torch.device, tf32: bool = True) -> Precision:
    """The Precision of ModelConfig's autocast / tf32 fields on `device` (TF32 switched on here)."""
    enable_tf32(device, tf32)
    return Precision(mode, device, make_scaler(mode, device))
