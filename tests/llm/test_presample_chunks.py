"""rollout.max_rows_per_call: DPH pre-sampling and rollouts go through the engine in calls of at most
that many rows (whole groups), and give the same samples and RefStore as one call."""

import dataclasses

import pytest
import torch

from collapse_lab.objective import DPH
from llm import config as C
from llm.experience import collect, presample
from llm.models import CharTokenizer, tiny_llama
from llm.rollout import HFEngine, generate_chunks
from llm.tasks import Prompt, Score


class NoSevenTask:
    """A prompt is solved by a response without the character '7' (most samples of a random tiny
    model), so D_pef holds some prompts and not others."""

    def check(self, prompt, response):
        ok = "7" not in response
        return Score(float(ok), "ok" if ok else "seven", "correct" if ok else "wrong")


class CountingEngine:
    """An HFEngine that records the rows of every generate call."""

    def __init__(self, model, tok):
        self.inner, self.tok, self.calls = HFEngine(model, tok), tok, []

    def generate(self, prompts, group_size, *a, **k):
        self.calls.append(len(prompts) * group_size)
        return self.inner.generate(prompts, group_size, *a, **k)


def _setup(n_prompts=11):
    torch.manual_seed(0)
    tok = CharTokenizer()
    model = tiny_llama(tok.vocab_size, "tiny", hidden_size=32, dtype=torch.float64)
    prompts = [Prompt(i, f"{i}:{3 * i}=") for i in range(n_prompts)]  # lengths 4..6: left padding varies
    return model, tok, prompts


def _stores_equal(a, b):
    assert a.samples.keys() == b.samples.keys()
    for pid in a.samples:
        x, y = a.samples[pid], b.samples[pid]
        assert x["prompt_tokens"] == y["prompt_tokens"]
        for k in ("tokens", "mask", "ref_logp"):
            assert torch.equal(x[k], y[k]), (pid, k)


def test_presample_chunks_equal_one_call():
    model, tok, prompts = _setup()
    spec = DPH("js", n_pre=4, n_ref=2)
    rc = C.RolloutConfig(max_new_tokens=3, temperature=0.9, max_rows_per_call=10_000)
    one = CountingEngine(model, tok)
    ref = presample(one, model, NoSevenTask(), tok, prompts, spec, rc, seed=5, timeout_s=1.0)
    assert one.calls == [len(prompts) * 4]
    assert 0 < len(ref.samples) < len(prompts)  # a real split, not all or nothing
    for cap in (4, 10, 12):  # one prompt, two prompts (10 // 4), three prompts per call
        eng = CountingEngine(model, tok)
        store = presample(eng, model, NoSevenTask(), tok, prompts, spec,
                          dataclasses.replace(rc, max_rows_per_call=cap), seed=5, timeout_s=1.0)
        per = cap // 4
        assert eng.calls == [4 * min(per, len(prompts) - i) for i in range(0, len(prompts), per)]
        assert max(eng.calls) <= cap and len(eng.calls) > 1
        _stores_equal(store, ref)


def test_presample_cap_below_n_pre_is_a_one_line_error():
    model, tok, prompts = _setup(2)
    rc = C.RolloutConfig(group_size=2, max_new_tokens=2, max_rows_per_call=3)
    with pytest.raises(ValueError, match=r"rollout.max_rows_per_call = 3 is invalid .* allowed: >= 4"):
        presample(HFEngine(model, tok), model, NoSevenTask(), tok, prompts, DPH("js", n_pre=4), rc, 0, 1.0)


def test_rollout_collect_is_chunked_with_the_same_rows():
    model, tok, prompts = _setup(7)
    rc = C.RolloutConfig(group_size=3, max_new_tokens=5, max_rows_per_call=1000)
    seeds = [11 * i + 1 for i in range(len(prompts))]
    whole = collect(CountingEngine(model, tok), NoSevenTask(), tok, range(7), prompts, seeds, rc, 1.0)
    eng = CountingEngine(model, tok)
    parts = collect(eng, NoSevenTask(), tok, range(7), prompts, seeds,
                    dataclasses.replace(rc, max_rows_per_call=7), 1.0)
    assert eng.calls == [6, 6, 6, 3]  # two prompts (6 rows) per call, then the last one
    for f in ("tokens", "mask", "rewards", "outcome", "slot", "prompt_id"):
        assert torch.equal(getattr(parts, f), getattr(whole, f)), f
    # the sampling log-probs of a row come from a batch of another shape: equal up to float64 rounding
    assert torch.allclose(parts.old_logp, whole.old_logp, rtol=0, atol=1e-12)
    assert parts.prompt_tokens == whole.prompt_tokens and parts.texts == whole.texts


def test_generate_chunks_pads_every_call_to_max_new_tokens():
    model, tok, prompts = _setup(3)
    from llm.rollout import encode_prompt
    ids = [encode_prompt(tok, p.text) for p in prompts]
    ro = generate_chunks(HFEngine(model, tok), ids, 2, [1, 2, 3], 6, max_rows=2)
    assert ro.tokens.shape == ro.mask.shape == ro.logp.shape == (6, 6)
    assert len(ro.prompt_tokens) == 6 and ro.prompt_tokens[0] == ro.prompt_tokens[1] == ids[0]
    with pytest.raises(ValueError, match="max_rows_per_call = 1 is invalid"):
        generate_chunks(HFEngine(model, tok), ids, 2, [1, 2, 3], 6, max_rows=1)


def test_config_validates_max_rows_per_call():
    msg = r"rollout.max_rows_per_call = 4 is invalid; allowed: >= rollout.group_size \(8\)"
    with pytest.raises(ValueError, match=msg):
        C.RolloutConfig(group_size=8, max_rows_per_call=4).validate()
    with pytest.raises(ValueError, match="rollout.vllm_gpu_memory_utilization = 0 is invalid"):
        C.RolloutConfig(vllm_gpu_memory_utilization=0).validate()
    C.RolloutConfig(group_size=8, max_rows_per_call=8).validate()
