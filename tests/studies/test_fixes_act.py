"""Every fix acts at its defaults (issue 11, deliverable 3; docs/studies.md "Does every fix act?").

On the shared collapsing benchmark (studies._common.SHARED, param "linear", SGD, G = 8, lr = SHARED_LR,
300 steps, checkpoints every 25) every registered recipe and every variant (studies._common.VARIANTS)
must move the policy away from plain GRPO by more than replicate noise: the largest |Welch statistic|
of Pass@1, Pass@256 or KL(pi || base) against GRPO over the checkpoints exceeds ACT_Z
(collapse_lab.compare.differs_from). A recipe that legitimately cannot is listed, with its reason, in
studies._common.CANNOT_DIFFER, and must then indeed not differ (the list cannot hide an acting recipe).
Where DPH is inert by construction (a tabular policy: D_pef never leaves the reference) is asserted too.
"""

import numpy as np
import pytest

from collapse_lab.objective import RECIPES
from collapse_lab.sim import SimConfig, simulate
from studies._common import (
    ACT_Z,
    CANNOT_DIFFER,
    INERT_ON_CONTROL,
    SHARED_LR,
    SHARED_TRAIN,
    act_table,
    recipe_specs,
    shared_benchmark,
    single_thread,
)


@pytest.fixture(scope="module")
def acts():
    """compare.differs_from over every recipe and variant at SHARED_LR, ACT_REPS replicates (about 5 s after
    numba's compile)."""
    return act_table()


def test_cannot_differ_list_is_well_formed():
    assert set(CANNOT_DIFFER) <= set(recipe_specs()) - {"grpo"}
    assert all(isinstance(v, str) and len(v) > 20 for v in {**CANNOT_DIFFER, **INERT_ON_CONTROL}.values())


def test_every_recipe_differs_from_grpo_or_is_listed(acts):
    assert set(acts.index) == set(recipe_specs()) - {"grpo"}
    inert = [f"{r} (max |z| {acts.loc[r, 'z']:.2f})" for r in acts.index
             if r not in CANNOT_DIFFER and not acts.loc[r, "differs"]]
    assert not inert, f"recipes that do not act on the shared benchmark at lr {SHARED_LR}: {inert}"
    hidden = [f"{r} (|z| {acts.loc[r, 'z']:.1f})" for r in CANNOT_DIFFER if acts.loc[r, "differs"]]
    assert not hidden, f"listed in CANNOT_DIFFER but differ from GRPO: {hidden}"


def test_memory_sampler_acts(acts):
    """The memory sampler learns at the policy's scale (issue 11: its update was ~64x too slow)."""
    assert "memory" not in CANNOT_DIFFER and acts.loc["memory", "z"] > ACT_Z


def test_dph_inert_on_the_tabular_control():
    """With a tabular policy the three DPH divergences give bit-identical parameters (INERT_ON_CONTROL),
    while on the shared benchmark (param linear: D_pef shares the answer scores) they act (above)."""
    pb = shared_benchmark()
    cfg = dict(SHARED_TRAIN, param="tabular", steps=60, log_every=60, replicates=2)
    with single_thread():
        z = {r: simulate(pb, SimConfig(recipe=r, lr=SHARED_LR, **cfg), seed=0).final_logits for r in INERT_ON_CONTROL}
        g = simulate(pb, SimConfig(recipe="grpo", lr=SHARED_LR, **cfg), seed=0).final_logits
    first = next(iter(z.values()))
    assert all(np.array_equal(v, first) for v in z.values())
    assert not np.array_equal(first, g)  # ... and not GRPO: D_pef prompts are out of the RL term
    assert set(INERT_ON_CONTROL) <= set(RECIPES)
