"""llm_collapse's statistics without training anything: the ranking test's exact permutation p-value,
the run plan (seeds as replication, >= 5 lrs per recipe) and the hard split's construction."""

import math

import numpy as np

from studies import llm_collapse as lc


def test_spearman_exact_permutation_golden():
    rho, p = lc.spearman_test([1, 2, 3, 4], [10, 20, 30, 40])
    assert rho == 1.0 and math.isclose(p, 1 / 24)  # only the identity order reaches rho = 1
    rho, p = lc.spearman_test([1, 2, 3, 4], [40, 30, 20, 10])
    assert rho == -1.0 and p == 1.0
    rho, p = lc.spearman_test([1, 2, 4, 3], [1, 2, 3, 4])  # one adjacent swap: rho = 0.8, 4 orders >= 0.8
    assert math.isclose(rho, 0.8) and math.isclose(p, 4 / 24)
    rho, _ = lc.spearman_test([np.nan, 2, 3, 4], [0, 2, 3, 4])  # not reached ranks last
    assert rho == 1.0
    rho, p = lc.spearman_test([np.nan] * 4, [1, 2, 3, 4])  # nothing reached: no order, never "agrees"
    assert np.isnan(rho) and p == 1.0


def test_plan_has_the_grid_and_seeds():
    for size, s in lc.SIZES.items():
        runs = lc.plan(size)
        assert len(lc.LRS) >= 5 and lc.LR in lc.LRS
        for r in s["recipes"]:
            assert {lr for rec, lr, _ in runs if rec == r} == set(lc.LRS)
            assert sum(rec == r and lr == lc.LR for rec, lr, _ in runs) == s["main_seeds"]
    assert lc.SIZES["full"]["main_seeds"] >= 6 and set(lc.SIZES["full"]["recipes"]) == set(lc.RECIPES)


def test_hard_split_is_never_trained_and_top_third():
    from llm import config as C
    from llm.tasks import make_task

    task = make_task(C.TaskConfig(**lc.TASK))
    test, hard, full = lc.splits(task)
    trained = {p.text for p in task.prompts("train")}
    assert hard and all(p.text not in trained and p.answer[0] >= lc.HARD_RATIO * p.answer[1] for p in hard)
    assert {p.text for p in test} & trained == set()
