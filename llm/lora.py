"""LoRA through peft for llm.train (`model.lora_rank` > 0).

`apply_lora` injects adapters into the policy *in place* (peft.get_peft_model) and freezes the base
weights; the trainer keeps calling the policy itself (its forward signature, KV-cache keyword and
logits_to_keep are the Hugging Face model's), and holds the returned PeftModel only for
`disable_adapter()`: the reverse-KL reference is the policy with its adapters switched off, so no
second copy of the model exists. Only adapter parameters require gradients, so only they reach the
optimiser. Checkpoints hold the full state dict (base weights + adapters under peft's names), so
resume needs the same lora_* config; the final model is saved merged (`merged_model`:
merge_and_unload on a copy) in the plain Hugging Face layout, which llm.evaluate loads.
"""

from __future__ import annotations

import copy
import warnings

from torch import nn


def lora_targets(spec: str):
    """model.lora_targets -> peft's target_modules: 'all-linear' as is, else a list of names."""
    return spec if spec == "all-linear" else [s.strip() for s in spec.split(",") if s.strip()]


def apply_lora(model: nn.Module, mcfg):
    """The PeftModel wrapping `model` with adapters of rank mcfg.lora_rank injected in place, or None
    when lora_rank = 0. A ValueError names model.lora_rank / model.lora_targets when it cannot apply."""
    if mcfg.lora_rank == 0:
        return None
    if not hasattr(model, "config"):  # BanditLM: a table, no linear layers
        raise ValueError(f"model.lora_rank = {mcfg.lora_rank} is invalid; allowed: 0 for "
                         f"{type(model).__name__} (LoRA needs a Hugging Face model)")
    try:
        from peft import LoraConfig, get_peft_model
    except ImportError:
        raise ValueError(f"model.lora_rank = {mcfg.lora_rank} is invalid; allowed: 0 without peft "
                         "(pip install 'collapse-lab[llm]')") from None
    cfg = LoraConfig(r=mcfg.lora_rank, lora_alpha=mcfg.lora_alpha, lora_dropout=mcfg.lora_dropout,
                     target_modules=lora_targets(mcfg.lora_targets), bias="none")
    try:
        with warnings.catch_warnings():  # peft reads transformers' deprecated is_gradient_checkpointing
            warnings.filterwarnings("ignore", "`is_gradient_checkpointing` is deprecated", FutureWarning)
            peft_model = get_peft_model(model, cfg)
    except ValueError as e:  # "Target modules {...} not found in the base model"
        first = " ".join(str(e).split())[:200]
        raise ValueError(f"model.lora_targets = {mcfg.lora_targets!r} is invalid; allowed: module names of "
                         f"this model (peft: {first})") from None
    assert peft_model.base_model.model is model  # adapters live in `model` itself
    return peft_model


def adapter_parameters(model: nn.Module) -> list:
    """The trainable (adapter) parameters of a LoRA policy, in module order."""
    return [p for p in model.parameters() if p.requires_grad]


def merged_model(peft_model) -> nn.Module:
    """A copy of the policy with every adapter merged into its base weights (W + alpha/r B A) and the
    LoRA layers removed: the plain Hugging Face model. The training policy is left as it is (the copy
    costs one model's weights while it is saved)."""
    return copy.deepcopy(peft_model).merge_and_unload()
