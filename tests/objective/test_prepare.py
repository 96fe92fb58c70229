"""Two phases (issue 10 §1): `Recipe.prepare` once on the whole batch, `Recipe.loss` on any split into
whole groups. The gradient of a batch equals the sum of its micro-batches' gradients (float64,
1e-10) for every recipe, aggregation mode, std group/batch, ISAC normalize on/off and DPH; a
simulated 2-process reduce equals one process."""

import pytest
import torch

from collapse_lab.objective import AGG_MODES, RECIPES, Batch, Prepared, RefSamples, recipe
from collapse_lab.objective.testing import BatchCase, FakeWorld, assert_same, split_grads, whole_grads

f64 = torch.float64


def make_case(seed=0, sizes=(4, 3, 5, 4, 2, 6), T=3, dph=True, max_len=None) -> BatchCase:
    """A fixed batch with groups of unequal sizes, ragged masks, one all-failure and one
    all-success group, D_pef groups with 1-2 reference rows each (dph)."""
    g = torch.Generator().manual_seed(seed)
    n, B = len(sizes), sum(sizes)
    group = torch.repeat_interleave(torch.tensor([3, 11, 7, 0, 5, 2])[:n], torch.tensor(sizes))
    logp = -3 * torch.rand(B, T, generator=g, dtype=f64)
    mask = (torch.rand(B, T, generator=g) < 0.7).to(f64)
    mask[:, 0] = 1.0
    rewards = (torch.rand(B, generator=g) < 0.5).to(f64)
    rewards[group == 3], rewards[group == 11] = 0.0, 1.0
    is_pef = torch.tensor([False, True, False, True, True, False])[:n]
    pef = torch.repeat_interleave(is_pef, torch.tensor(sizes)) if dph else None
    ref_group = torch.tensor([i for k, i in enumerate(group.unique_consecutive().tolist()) if is_pef[k]
                              for _ in range(1 + k % 2)]) if dph else torch.zeros(0, dtype=torch.long)
    R = ref_group.shape[0]
    ref_logp = -3 * torch.rand(R, T, generator=g, dtype=f64)
    return BatchCase(
        logp=logp, old_delta=0.3 * torch.randn(B, T, generator=g, dtype=f64),
        ref_delta=0.5 * torch.randn(B, T, generator=g, dtype=f64), mask=mask, rewards=rewards, group=group,
        outcome=torch.randint(3, (B,), generator=g), prior_success=torch.randint(3, (B,), generator=g).to(f64),
        prior_trials=torch.full((B,), 8.0, dtype=f64), pef=pef, ref_logp=ref_logp,
        ref_ref_logp=ref_logp + 0.5 * torch.randn(R, T, generator=g, dtype=f64), ref_group=ref_group,
        max_len=max_len)


PARTS = [[3, 7], [11], [0, 5, 2]]  # micro-batches of whole groups (ids), unequal sizes
CONFIGS = ([(name, {"k": 2} if name == "passk" else {}) for name in RECIPES]
           + [("grpo", {"std": "batch"}), ("unlikeliness", {"std": "batch"}), ("isac", {"normalize": True}),
              ("ips_grpo+isac+dph_js", {"std": "batch", "normalize": True}), ("dapo+dph_forward", {}),
              ("reverse_kl", {"in_reward": True}), ("reverse_kl", {"kl_kind": "k2"}),
              ("grpo", {"level": "sequence", "dual_clip": 3.0})])


@pytest.mark.parametrize("agg", AGG_MODES)
@pytest.mark.parametrize("name, over", CONFIGS, ids=[f"{n}-{'-'.join(o)}" for n, o in CONFIGS])
def test_micro_batches_and_processes_sum_to_the_whole_batch(name, over, agg):
    rec = recipe(name, agg=agg, **over)
    case = make_case(max_len=5 if agg == "seq-mean-token-sum-norm" else None)
    whole = whole_grads(rec, case)
    assert_same("micro_batch", rec, whole, split_grads(rec, case, PARTS))
    assert_same("processes", rec, whole, split_grads(rec, case, [[3, 7, 11], [0, 5, 2]], processes=True))


@pytest.mark.parametrize("name, over", [("grpo", {"std": "batch"}), ("isac", {"normalize": True}),
                                        ("grpo", {"agg": "seq-mean-token-mean"}), ("dph_js", {})])
def test_without_prepare_a_split_is_not_exact(name, over):
    """The control: per-micro-batch statistics (the old behaviour) differ from the whole batch."""
    rec = recipe(name, **over)
    case = make_case()
    theta, phi = case.leaves()
    total = 0.0
    for part in PARTS:
        rows = torch.isin(case.group, torch.tensor(part))
        loss, _ = rec.loss(case.batch(theta, phi).select(rows))
        loss.backward()
        total += loss.item()
    with pytest.raises(AssertionError, match="violates micro_batch"):
        assert_same("micro_batch", rec, whole_grads(rec, case), (total, theta.grad, phi.grad))


def test_fake_two_process_prepare_equals_one_process():
    rec = recipe("ips_grpo+isac+dph_js", std="batch", normalize=True)
    case = make_case(1)
    theta, phi = case.leaves()
    full = case.batch(theta, phi)
    one = rec.prepare(full)
    halves = [torch.isin(case.group, torch.tensor(p)) for p in ([3, 11, 7], [0, 5, 2])]
    calls = []

    def counting(rank, reduce):
        def r(x, op):
            calls.append((rank, op, tuple(x.shape)))
            return reduce(x, op)
        return r
    world = FakeWorld(2)
    preps = world.run(lambda b, reduce: rec.prepare(b, reduce=reduce),
                      [(full.select(h),) for h in halves])
    for h, prep in zip(halves, preps):
        ref = one.select(h)
        assert prep.policy == ref.policy and prep.ref == ref.ref
        assert float((prep.advantages - ref.advantages).abs().max()) <= 1e-12
        assert torch.equal(prep.keep, ref.keep)
    # the same number of reduce calls in the same order on both ranks, whatever the data
    world2 = FakeWorld(2)
    world2.reducer = lambda rank, base=world2.reducer: counting(rank, base(rank))
    world2.run(lambda b, reduce: rec.prepare(b, reduce=reduce), [(full.select(h),) for h in halves])
    per_rank = [[c[1:] for c in calls if c[0] == r] for r in (0, 1)]
    assert per_rank[0] == per_rank[1] and len(per_rank[0]) == 7  # batch std 3, isac 2, denominators 2
    # the denominators are the whole batch's: kept tokens, rows, reference tokens and rows
    kept = (case.mask * (~case.pef).to(f64)[:, None]).sum()
    assert one.policy.tokens == float(kept) and one.policy.rows == len(case.group)
    assert one.ref.rows == len(case.ref_group) and one.ref.tokens == len(case.ref_group) * 3


def test_prepared_none_is_the_one_batch_behaviour():
    rec = recipe("dph_js", agg="seq-mean-token-mean")
    case = make_case(2)
    theta, phi = case.leaves()
    b = case.batch(theta, phi)
    l1, d1 = rec.loss(b)
    l2, d2 = rec.loss(b, rec.prepare(b))
    assert l1.item() == l2.item() and d1 == pytest.approx(d2, nan_ok=True)


def test_select_and_errors():
    case = make_case(3)
    theta, phi = case.leaves()
    b = case.batch(theta, phi)
    rows = torch.isin(case.group, torch.tensor([11, 0]))
    sub = b.select(rows)
    assert len(sub) == int(rows.sum()) and set(sub.group.tolist()) == {11, 0}
    assert set(sub.ref_samples.group.tolist()) == {11, 0} and sub.ref_samples.logp.shape[0] == 4
    assert torch.equal(b.select(rows.nonzero().flatten()).logp, sub.logp)
    with pytest.raises(ValueError, match="whole groups; group 3 is split"):
        b.select([0, 1])
    with pytest.raises(ValueError, match="more than once"):
        b.select([0, 0, 1, 2, 3])
    with pytest.raises(ValueError, match=r"must lie in \[0, 24\)"):
        b.select([24])
    rec = recipe("grpo")
    prep = rec.prepare(b)
    assert isinstance(prep, Prepared) and len(prep.select(rows)) == len(sub)
    with pytest.raises(ValueError, match="prepared does not match the batch"):
        rec.loss(sub, prep)
    no_group = Batch(logp=theta, rewards=case.rewards, group=case.group,
                     ref_samples=RefSamples(phi, case.ref_ref_logp))
    with pytest.raises(ValueError, match="RefSamples.group is None"):
        no_group.select(rows)


def test_advantages_are_fixed_by_prepare_across_epochs():
    """PPO epochs: the policy moves, the prepared advantages (and unlikeliness ranks) do not."""
    rec = recipe("unlikeliness")
    case = make_case(4, dph=False)
    theta, phi = case.leaves()
    prep = rec.prepare(case.batch(theta, phi, dph=False))
    moved = case.batch(theta.detach().flip(0).requires_grad_(True), phi, dph=False)
    assert torch.equal(rec.prepare(case.batch(theta, phi, dph=False)).advantages, prep.advantages)
    _, d = rec.loss(moved, prep)
    assert d["adv_mean"] == pytest.approx(float(prep.advantages.mean()))


def test_renormalized_minibatch_is_its_own_batch_with_the_rollout_advantages():
    """A PPO minibatch (one optimizer step): advantages from the rollout batch, denominators its own."""
    rec = recipe("dph_js", agg="token-mean")  # group-local advantages: the minibatch alone agrees
    case = make_case(5)
    theta, phi = case.leaves()
    full = case.batch(theta, phi)
    prep = rec.prepare(full)
    rows = torch.isin(case.group, torch.tensor([3, 11, 0]))
    mini = full.select(rows)
    mprep = prep.select(rows).renormalized(mini)
    assert mprep.policy == rec.prepare(mini).policy and mprep.ref == rec.prepare(mini).ref
    assert rec.loss(mini, mprep)[0].item() == pytest.approx(rec.loss(mini)[0].item(), rel=1e-12)
    assert mprep.policy.tokens < prep.policy.tokens


def test_builtin_components_run_on_the_numba_kernels():
    assert all(recipe(n).torch_only == () for n in RECIPES)

    class Custom:
        key, stage, needs = "custom", "weight", frozenset()

        def __call__(self, batch, adv, reduce=None):
            return adv
    from collapse_lab.objective import Recipe
    assert Recipe("mine", weights=(Custom(),)).torch_only == ("custom",)
