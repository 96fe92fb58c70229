"""memory_loss with groups: the sum over groups of each group's token-mean (the simulator's per-prompt
memory step), golden numbers and agreement with a per-group loop."""

import torch

from collapse_lab.objective import memory_loss


def test_grouped_memory_loss_golden():
    lp = torch.tensor([[-1.0, -2.0], [-3.0, 0.0], [-4.0, -6.0]], dtype=torch.float64)
    mask = torch.tensor([[1.0, 1.0], [1.0, 0.0], [1.0, 1.0]], dtype=torch.float64)
    group = torch.tensor([7, 7, 9])
    # group 7: tokens -1, -2, -3 -> mean -2; group 9: -4, -6 -> mean -5; loss = 2 + 5
    assert memory_loss(lp, mask, group).item() == 7.0
    assert memory_loss(lp, mask).item() == 16.0 / 5  # no groups: one token-mean over the batch


def test_grouped_memory_loss_is_the_sum_of_per_group_losses():
    g = torch.Generator().manual_seed(0)
    lp = -torch.rand(12, 5, generator=g, dtype=torch.float64)
    mask = (torch.rand(12, 5, generator=g) > 0.3).to(torch.float64)
    group = torch.arange(12) // 4
    loop = sum(memory_loss(lp[group == k], mask[group == k]) for k in range(3))
    assert torch.allclose(memory_loss(lp, mask, group), loop, rtol=0, atol=1e-12)
    one_d = -torch.rand(6, generator=g, dtype=torch.float64)  # [B] log-probs (the simulator's bandit)
    grp = torch.tensor([0, 0, 0, 1, 1, 1])
    assert torch.allclose(memory_loss(one_d, group=grp), -(one_d[:3].mean() + one_d[3:].mean()), atol=1e-12)
