"""One success threshold: `successes` and `Batch.success` agree, for tensors and numpy arrays."""

import numpy as np
import torch

from collapse_lab.objective import SUCCESS_THRESHOLD, Batch, successes


def test_default_threshold_is_binary_reward_one():
    r = torch.tensor([0.0, 0.999, 1.0, 1.5], dtype=torch.float64)
    assert SUCCESS_THRESHOLD == 1.0
    assert successes(r).tolist() == [False, False, True, True]
    assert successes(r.numpy()).tolist() == [False, False, True, True]  # numpy in, numpy out
    assert isinstance(successes(r.numpy()), np.ndarray)
    assert successes([0.5, 1.0], threshold=0.5).tolist() == [True, True]


def test_batch_default_uses_the_constant():
    r = torch.tensor([0.0, 1.0, 0.7])
    b = Batch(logp=torch.zeros(3), rewards=r, group=torch.zeros(3, dtype=torch.long))
    assert b.success_threshold == SUCCESS_THRESHOLD
    assert torch.equal(b.success, successes(r))
    b7 = Batch(logp=torch.zeros(3), rewards=r, group=torch.zeros(3, dtype=torch.long), success_threshold=0.7)
    assert torch.equal(b7.success, successes(r, 0.7))
