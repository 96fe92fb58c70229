"""vLLM rollout engine (`--rollout.engine vllm`): a colocated `vllm.LLM` in the trainer's process.

- Colocated: the LLM lives in this process (executor "external_launcher", as under torchrun; every
  process samples its own prompts) and takes `rollout.vllm_gpu_memory_utilization` of the GPU.
  It is built from the policy's config only (`load_format="dummy"`, no tokenizer: prompts go in as
  token ids) and gets its weights from the trainer: `sync_weights(model)` loads the policy's state
  dict into vLLM's model (the worker's `reload_weights`, i.e. the model's `load_weights` plus
  vLLM's post-load processing) and drops the prefix cache; the trainer calls it before every
  rollout step.
- `old_logp` keeps meaning "the sampling distribution" (docs/methods.md §4): the LLM runs with
  `logprobs_mode="processed_logprobs"`, so the log-prob of each sampled token is taken after
  temperature and top-p, as HFEngine records it.
- Reproducible: one request per row, each with its own seed (`SamplingParams(seed=...)`) derived
  from its prompt's seed and its index in the group (`row_seeds`), so a row's sample does not
  depend on the batch it is scheduled with (up to kernels that differ with the batch shape).
- Stops on `stop_ids(tok, model)` (tokenizer EOS + the generation config's EOS list) and nothing
  else (`generation_config="vllm"`: the model's own sampling defaults are not applied).
- No custom logits processor: recipes with the memory sampler stay on the hf engine
  (`llm.rollout.make_engine` refuses them).

vllm is imported when the engine is built; without it the error says how to install the extra.
"""

from __future__ import annotations

import copy
import os
import socket
import tempfile

import numpy as np
import torch

from .rollout import Rollouts, _forward_of, stop_ids

INSTALL = 'pip install -e ".[vllm]"'


def import_vllm():
    """The vllm module, or a one-line ValueError saying how to install it."""
    try:
        import vllm
    except ImportError as e:
        raise ValueError(f"rollout.engine = 'vllm' is invalid here: vllm is not installed ({e}); "
                         f"allowed: hf, or install the extra with {INSTALL}") from None
    return vllm


def row_seeds(seeds, group_size: int) -> list[int]:
    """(B,) 63-bit request seeds, prompt-major: row g of prompt j from SeedSequence([seeds[j], g])."""
    return [int(np.random.SeedSequence([int(s) % 2**63, g]).generate_state(2, np.uint64)[0] >> 1)
            for s in seeds for g in range(group_size)]


def state_items(model) -> list[tuple[str, torch.Tensor]]:
    """(name, full tensor) pairs of the policy's state dict in Hugging Face names; sharded (FSDP2
    DTensor) entries are gathered with `full_tensor()`."""
    sd = _forward_of(model).state_dict()
    return [(k, v.full_tensor() if hasattr(v, "full_tensor") else v) for k, v in sd.items()]


def _launcher_env() -> None:
    """torch.distributed variables the external launcher reads, when not run under torchrun."""
    if "MASTER_PORT" not in os.environ:
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            os.environ["MASTER_PORT"] = str(s.getsockname()[1])
    for k, v in (("RANK", "0"), ("LOCAL_RANK", "0"), ("WORLD_SIZE", "1"), ("MASTER_ADDR", "127.0.0.1")):
        os.environ.setdefault(k, v)


class VLLMEngine:
    """Sampling through a colocated vllm.LLM with the `generate` signature of HFEngine."""

    supports_processor = False

    def __init__(self, model, tok, rcfg=None, **llm_kwargs):
        """llm_kwargs: further vllm.LLM arguments (e.g. enforce_eager=True), over the defaults here."""
        policy = _forward_of(model)
        if not hasattr(policy, "config"):  # BanditLM: no Hugging Face config for vLLM to build from
            raise ValueError(f"rollout.engine = 'vllm' is invalid for {type(policy).__name__} (not a Hugging "
                             "Face causal LM); allowed: hf")
        vllm = import_vllm()
        self.vllm, self.tok, self.stop = vllm, tok, stop_ids(tok, model)
        self._dir = tempfile.TemporaryDirectory(prefix="collapse-lab-vllm-")
        config = copy.deepcopy(policy.config)  # config.json only: the weights come from sync_weights
        config.architectures = [type(policy).__name__]  # e.g. LlamaForCausalLM (None on a fresh model)
        config.save_pretrained(self._dir.name)
        _launcher_env()
        util = rcfg.vllm_gpu_memory_utilization if rcfg is not None else 0.3
        kw = dict(model=self._dir.name, skip_tokenizer_init=True, load_format="dummy",
                  dtype=str(next(policy.parameters()).dtype).removeprefix("torch."),
                  gpu_memory_utilization=util, seed=0, logprobs_mode="processed_logprobs",
                  distributed_executor_backend="external_launcher", generation_config="vllm",
                  enable_prefix_caching=True)
        self.llm = vllm.LLM(**{**kw, **llm_kwargs})
        self.sync_weights(model)

    @torch.no_grad()
    def sync_weights(self, model) -> None:
        """Load the policy's current weights into vLLM's model and drop cached prefixes (computed
        with the old weights). The worker's `reload_weights` takes checkpoint-format (HF) tensors
        and re-runs vLLM's post-load processing (e.g. the CPU backend's repacked linear weights,
        which a bare `model.load_weights` cannot write into)."""
        self.llm.collective_rpc("reload_weights", kwargs={"weights_iterator": state_items(model),
                                                          "is_checkpoint_format": True})
        self.llm.reset_prefix_cache()

    def generate(self, prompts: list[list[int]], group_size: int, seeds: list[int], max_new_tokens: int,
                 temperature: float = 1.0, top_p: float = 1.0, processor=None) -> Rollouts:
        """G samples per prompt (rows prompt-major), one seeded request per row; logp: vLLM's
        processed log-prob of each sampled token (0 off the mask)."""
        if processor is not None:
            raise ValueError("rollout.engine = 'vllm' is invalid with a custom logits processor; allowed: hf")
        rows = [p for p in prompts for _ in range(group_size)]
        params = [self.vllm.SamplingParams(n=1, temperature=temperature, top_p=top_p, max_tokens=max_new_tokens,
                                           seed=s, logprobs=0, stop_token_ids=list(self.stop), detokenize=False)
                  for s in row_seeds(seeds, group_size)]
        outs = self.llm.generate([{"prompt_token_ids": list(p)} for p in rows], params, use_tqdm=False)
        return self._rollouts(rows, [o.outputs[0] for o in outs], max_new_tokens)

    def _rollouts(self, rows: list, outs: list, max_new_tokens: int) -> Rollouts:
        """Rollouts (B, T = longest response) from vLLM completions (token_ids, logprobs per position:
        {token id: Logprob}); the stop token is kept (mask 1), as HFEngine keeps it."""
        T = max([len(o.token_ids) for o in outs] + [1])
        tokens = torch.full((len(rows), T), self.tok.pad_id, dtype=torch.long)
        mask, logp = torch.zeros(len(rows), T), torch.zeros(len(rows), T)
        for b, o in enumerate(outs):
            ids = [int(i) for i in o.token_ids][:max_new_tokens]
            n = len(ids)
            tokens[b, :n] = torch.tensor(ids, dtype=torch.long)
            mask[b, :n] = 1.0
            logp[b, :n] = torch.tensor([o.logprobs[t][i].logprob for t, i in enumerate(ids)])
        return Rollouts(rows, tokens, mask, logp)
