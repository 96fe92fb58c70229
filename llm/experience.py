"""Rollouts scored into training rows, and DPH's stored reference samples.

`collect` samples G responses per prompt, decodes and scores them (reward, canonical outcome,
status) and returns an `Experience` of B = n_prompts * G rows. Outcome strings become int64 ids by a
stable hash (crc32), identical in every process, so that IPS counts and diversity metrics compare
answers, not token strings. `presample` runs DPH-RL's split before training (docs/methods.md §3).
"""

from __future__ import annotations

import zlib
from dataclasses import dataclass, fields, replace

import numpy as np
import torch

from collapse_lab.objective import successes

from .rollout import encode_prompt, generate_chunks, sequence_logp
from .tasks import score


def outcome_id(outcome: str | None) -> int:
    """Stable int id of a canonical outcome; all unparsed responses share the id of ''."""
    return zlib.crc32((outcome or "").encode()) & 0x7FFFFFFF


def sample_seed(*keys: int) -> int:
    """A 63-bit seed derived from integer keys (run seed, step, round, prompt slot)."""
    return int(np.random.SeedSequence([int(k) % 2**63 for k in keys]).generate_state(2, np.uint64)[0] >> 1)


@dataclass
class Experience:
    """B scored rows. slot (B,): the row's group (one per prompt and step); pef (B,): DPH's D_pef."""

    prompt_tokens: list
    tokens: torch.Tensor  # (B, T) long
    mask: torch.Tensor  # (B, T)
    old_logp: torch.Tensor  # (B, T) sampling log-probs
    rewards: torch.Tensor  # (B,) float64
    outcome: torch.Tensor  # (B,) int64
    slot: torch.Tensor  # (B,) int64
    prompt_id: torch.Tensor  # (B,) int64
    pef: torch.Tensor  # (B,) bool
    status: list
    texts: list
    ref_logp: torch.Tensor | None = None  # (B, T)

    def __len__(self) -> int:
        return len(self.status)

    def select(self, rows) -> Experience:
        """The sub-experience of boolean mask or index tensor `rows`."""
        idx = torch.as_tensor(rows)
        idx = idx.nonzero()[:, 0] if idx.dtype == torch.bool else idx
        out = {}
        for f in fields(self):
            v = getattr(self, f.name)
            out[f.name] = None if v is None else [v[i] for i in idx.tolist()] if isinstance(v, list) else v[idx]
        return Experience(**out)

    @staticmethod
    def cat(parts: list[Experience]) -> Experience:
        out = {}
        for f in fields(Experience):
            vs = [getattr(p, f.name) for p in parts]
            out[f.name] = None if vs[0] is None else sum(vs, []) if isinstance(vs[0], list) else torch.cat(vs)
        return Experience(**out)


def pad_to(x: torch.Tensor, T: int, value=0) -> torch.Tensor:
    return torch.nn.functional.pad(x, (0, T - x.shape[1]), value=value)


def collect(engine, task, tok, slots, prompts, seeds, rcfg, timeout_s: float, processor=None,
            pef_ids=frozenset()) -> Experience:
    """Sample rcfg.group_size responses for each prompt and score them (rows prompt-major); at most
    rcfg.max_rows_per_call rows per engine call."""
    G, T = rcfg.group_size, rcfg.max_new_tokens
    ro = generate_chunks(engine, [encode_prompt(tok, p.text) for p in prompts], G, seeds, T,
                         rcfg.temperature, rcfg.top_p, processor, rcfg.max_rows_per_call)
    texts = [tok.decode(t[m > 0].tolist()) for t, m in zip(ro.tokens, ro.mask)]
    rows = [p for p in prompts for _ in range(G)]
    scores = [score(task, p, s, timeout_s) for p, s in zip(rows, texts)]
    ids = torch.tensor([p.id for p in rows], dtype=torch.long)
    return Experience(
        prompt_tokens=ro.prompt_tokens, tokens=pad_to(ro.tokens, T, tok.pad_id).cpu(),
        mask=pad_to(ro.mask, T).cpu(), old_logp=pad_to(ro.logp, T).cpu(),
        rewards=torch.tensor([s.reward for s in scores], dtype=torch.float64),
        outcome=torch.tensor([outcome_id(s.outcome) for s in scores], dtype=torch.long),
        slot=torch.tensor([s for s in slots for _ in range(G)], dtype=torch.long),
        prompt_id=ids, pef=torch.tensor([i in pef_ids for i in ids.tolist()], dtype=torch.bool),
        status=[s.status for s in scores], texts=texts)


class RefStore:
    """DPH-RL's pre-sampling split: D_pef prompt ids and their stored correct reference samples."""

    def __init__(self):
        self.samples: dict[int, dict] = {}  # prompt id -> {tokens, mask, ref_logp, prompt_tokens}

    @property
    def pef_ids(self) -> frozenset:
        return frozenset(self.samples)

    def state_dict(self) -> dict:
        return {"samples": self.samples}

    def load_state_dict(self, state: dict) -> None:
        self.samples = state["samples"]

    def ref_rows(self, prompt_ids, slots=None) -> dict | None:
        """Stored samples of the D_pef prompts among `prompt_ids`, once per slot, concatenated.

        slots[i] is row i's group (default: i). Keys prompt_tokens (list), tokens, mask, ref_logp
        (R, T) and group (R,) long: the slot each reference row belongs to (RefSamples.group). A
        prompt drawn into two slots of a step brings its samples twice, as it brings its rollouts
        twice, so the reference rows of a step do not depend on how it is split over processes.
        None when no prompt is in D_pef.
        """
        slots = list(range(len(prompt_ids))) if slots is None else list(slots)
        pairs = dict.fromkeys(zip(slots, prompt_ids))  # (slot, prompt id) in order of first row
        chosen = [(self.samples[pid], slot) for slot, pid in pairs if pid in self.samples]
        if not chosen:
            return None
        return {"prompt_tokens": sum((c["prompt_tokens"] for c, _ in chosen), []),
                **{k: torch.cat([c[k] for c, _ in chosen]) for k in ("tokens", "mask", "ref_logp")},
                "group": torch.cat([torch.full((len(c["tokens"]),), s, dtype=torch.long) for c, s in chosen])}


@torch.no_grad()
def presample(engine, model, task, tok, prompts, spec, rcfg, seed: int, timeout_s: float) -> RefStore:
    """Sample each prompt spec.n_pre times from the initial policy; prompts solved every time form
    D_pef and keep spec.n_ref correct samples with ref_logp = log pi_ref at the training temperature.

    The prompts go through `collect` in chunks of rcfg.max_rows_per_call // n_pre prompts (a real data
    set has tens of thousands), only D_pef's samples are kept; seeds are per prompt id, so the store
    equals one call's."""
    store = RefStore()
    pre = replace(rcfg, group_size=spec.n_pre)
    if spec.n_pre > rcfg.max_rows_per_call:
        raise ValueError(f"rollout.max_rows_per_call = {rcfg.max_rows_per_call} is invalid for DPH "
                         f"pre-sampling with n_pre = {spec.n_pre}; allowed: >= {spec.n_pre}")
    per = rcfg.max_rows_per_call // spec.n_pre  # prompts per chunk
    for start in range(0, len(prompts), per):
        chunk = prompts[start:start + per]
        seeds = [sample_seed(seed, -1, p.id) for p in chunk]
        exp = collect(engine, task, tok, range(len(chunk)), chunk, seeds, pre, timeout_s)
        for j, p in enumerate(chunk):
            rows = torch.arange(j * spec.n_pre, (j + 1) * spec.n_pre)
            if bool(successes(exp.rewards[rows]).all()):
                keep = exp.select(rows[: spec.n_ref])
                ref_logp, _ = sequence_logp(model, keep.prompt_tokens, keep.tokens, keep.mask, tok.pad_id,
                                            rcfg.temperature)
                store.samples[p.id] = {"prompt_tokens": keep.prompt_tokens, "tokens": keep.tokens,
                                       "mask": keep.mask, "ref_logp": ref_logp.cpu()}
    return store
