"""Collectives of llm.dist: each runs on the device its backend needs (NCCL: the process's GPU, gloo: the
CPU), in float64, one collective per call; the trainer's per-step metrics are one all_reduce and their
values are those of the per-metric formulas; gradient-sync switching for DDP, FSDP2 and plain modules.

The CPU machine has no GPU and no NCCL: the backend name is monkeypatched, `torch.distributed.all_reduce`
replaced by a recorder, and the 'meta' device stands in for the process's GPU."""

import contextlib

import pytest
import torch

import llm.dist as D
from llm.dist import Dist, all_reduce_dict, all_reduce_many, average_grads, grad_sync, pack, reduce_device
from llm.experience import Experience
from llm.tasks.base import STATUSES
from llm.train import rollout_metrics


class Recorder:
    """Stands in for torch.distributed.all_reduce: records (device, dtype, values, op) and leaves the
    tensor as is (the other process contributes the identity), or raises `stop` after recording."""

    def __init__(self, stop=False):
        self.calls, self.stop = [], stop

    def __call__(self, t, op=None):
        self.calls.append((t.device, t.dtype, None if t.device.type == "meta" else t.tolist(), op))
        if self.stop:
            raise RuntimeError("recorded")


@pytest.fixture
def recorder(monkeypatch):
    rec = Recorder()
    monkeypatch.setattr(D.tdist, "all_reduce", rec)
    return rec


@pytest.mark.parametrize("backend, device, expected", [
    ("nccl", torch.device("cuda", 3), torch.device("cuda", 3)),  # NCCL rejects CPU tensors
    ("gloo", torch.device("cuda", 3), torch.device("cpu")),
    ("gloo", torch.device("cpu"), torch.device("cpu")),
    (None, torch.device("cuda", 1), torch.device("cpu")),  # no process group
])
def test_reduce_device_follows_backend(monkeypatch, backend, device, expected):
    monkeypatch.setattr(D, "backend", lambda: backend)
    assert reduce_device(Dist(0, 2, device)) == expected


def test_nccl_reduction_runs_on_the_process_device(monkeypatch):
    """Under NCCL the buffer handed to all_reduce is on the process's device (here 'meta' for the GPU)
    in float64 (an NCCL type); one collective for all values."""
    monkeypatch.setattr(D, "backend", lambda: "nccl")
    rec = Recorder(stop=True)
    monkeypatch.setattr(D.tdist, "all_reduce", rec)
    dist = Dist(0, 2, torch.device("meta"))
    assert pack([1, 2.5], dist).device.type == "meta"
    with pytest.raises(RuntimeError, match="recorded"):
        all_reduce_many([1.0, 2.0, 3.0], dist, "max")
    assert [(d.type, t) for d, t, _, _ in rec.calls] == [("meta", torch.float64)]
    assert rec.calls[0][3] == torch.distributed.ReduceOp.MAX


def test_gloo_reduction_on_cpu_one_collective(monkeypatch, recorder):
    monkeypatch.setattr(D, "backend", lambda: "gloo")
    out = all_reduce_dict({"b": 2.0, "a": 1.0, "c": 3}, Dist(0, 2, torch.device("cpu")))
    assert out == {"a": 1.0, "b": 2.0, "c": 3.0}
    assert [(d.type, t, v) for d, t, v, _ in recorder.calls] == [("cpu", torch.float64, [1.0, 2.0, 3.0])]
    with pytest.raises(ValueError, match=r"^op = 'mean' is invalid; allowed: sum, max$"):
        all_reduce_many([1.0], Dist(0, 2), "mean")


def _experience() -> Experience:
    """3 groups x 2 rows with rewards, outcomes, masks and statuses."""
    rewards = torch.tensor([1.0, 0.0, 1.0, 1.0, 0.0, 0.5], dtype=torch.float64)
    mask = torch.tensor([[1, 1, 0], [1, 0, 0], [1, 1, 1], [1, 1, 1], [1, 0, 0], [1, 1, 0]], dtype=torch.float32)
    status = ["correct", "unparsed", "correct", "correct", "timeout", "wrong"]
    assert set(status) <= set(STATUSES)
    n = len(status)
    return Experience(prompt_tokens=[[1]] * n, tokens=torch.zeros(n, 3, dtype=torch.long), mask=mask,
                      old_logp=torch.zeros(n, 3), rewards=rewards, outcome=torch.tensor([7, 8, 7, 9, 1, 2]),
                      slot=torch.tensor([0, 0, 1, 1, 2, 2]), prompt_id=torch.tensor([0, 0, 1, 1, 2, 2]),
                      pef=torch.zeros(n, dtype=torch.bool), status=status, texts=[""] * n)


def test_rollout_metrics_one_collective_same_values(monkeypatch, recorder):
    """World 2 with the peer contributing nothing: one all_reduce, the values of one process, which
    match the per-metric formulas (mean reward, pass@1, statuses, length, distinct correct / group)."""
    monkeypatch.setattr(D, "backend", lambda: "gloo")
    exp = _experience()
    one = rollout_metrics(exp, Dist())
    assert recorder.calls == []
    two = rollout_metrics(exp, Dist(0, 2))
    assert len(recorder.calls) == 1 and two == one
    assert one["reward"] == pytest.approx(3.5 / 6) and one["pass@1"] == pytest.approx(3 / 6)
    assert one["response_len"] == pytest.approx(12 / 6) and one["groups"] == 3
    assert one["unparsed_frac"] == pytest.approx(1 / 6) and one["timeout_frac"] == pytest.approx(1 / 6)
    assert one["status/correct"] == 3 and one["status/wrong"] == 1
    assert one["distinct_correct"] == pytest.approx((1 + 2 + 0) / 3)  # group 2: 0.5 is not a success


def test_average_grads_one_collective_per_dtype(monkeypatch, recorder):
    monkeypatch.setattr(D, "backend", lambda: "gloo")
    a, b = torch.nn.Parameter(torch.zeros(2, 2)), torch.nn.Parameter(torch.zeros(3))
    a.grad, b.grad = torch.arange(4.0).view(2, 2), torch.tensor([2.0, 4.0, 6.0])
    average_grads([a, b, torch.nn.Parameter(torch.zeros(1))], Dist(0, 2))
    assert len(recorder.calls) == 1 and recorder.calls[0][2] == [0, 1, 2, 3, 2, 4, 6]
    assert torch.equal(a.grad, torch.tensor([[0.0, 0.5], [1.0, 1.5]]))
    assert torch.equal(b.grad, torch.tensor([1.0, 2.0, 3.0]))


def test_grad_sync_switches_each_wrapper():
    """FSDP2: set_requires_gradient_sync(False) inside, True after (also on error); DDP: no_sync; plain: nothing."""
    class FSDPLike:
        def __init__(self):
            self.calls = []

        def set_requires_gradient_sync(self, flag):
            self.calls.append(flag)

    class DDPLike:
        def __init__(self):
            self.inside = False

        @contextlib.contextmanager
        def no_sync(self):
            self.inside = True
            yield
            self.inside = False

    f, d = FSDPLike(), DDPLike()
    with grad_sync(f, True):
        pass
    assert f.calls == []
    with pytest.raises(KeyError), grad_sync(f, False):
        assert f.calls == [False]
        raise KeyError
    assert f.calls == [False, True]
    with grad_sync(d, False):
        assert d.inside
    assert not d.inside
    with grad_sync(torch.nn.Linear(1, 1), False):
        pass
