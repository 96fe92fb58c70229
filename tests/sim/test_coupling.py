"""docs/theory.md item 12: shared parameters couple prompts; tabular ones do not."""

import numpy as np

from collapse_lab import theory
from collapse_lab.sim import SimConfig, coupled, simulate

TRAIN = (0, 1)  # prompts 0 and 1 are trained; 2..7 only move through shared parameters


def _one_step(problem, param, lr=0.5, train=TRAIN):
    cfg = SimConfig(recipe="grpo", steps=1, lr=lr, group_size=8, param=param, train_prompts=train,
                    ks=(1,))
    return simulate(problem, cfg, seed=4).final_logits[0] - problem.logits


def test_linear_logit_change_equals_kernel_prediction():
    """z = z0 + phi . w, one SGD step: dz(x', y') = eta sum_{x,y} phi(x',y').phi(x,y) g(x,y) exactly
    (theory.coupling_prediction). g (the ascent direction on the trained prompts) is measured from
    the tabular run with the same seed: same initial logits, hence the same samples, and there
    dz = eta g."""
    pr = coupled(8, 5, n_correct=2, n_clusters=2, dim=3, coupling=1.0, seed=2)
    g = _one_step(pr, "tabular") / 0.5
    assert np.abs(g[list(TRAIN)]).max() > 1e-3
    pred = theory.coupling_prediction(pr.features, g, 0.5)
    dz = _one_step(pr, "linear")
    np.testing.assert_allclose(dz, pred, rtol=0, atol=1e-12)
    untrained = dz[2:]
    assert np.abs(untrained).max() > 1e-3  # collapse spreads to untrained prompts
    # 'both' adds the tabular (identity) kernel: dz = eta (g + K g)
    np.testing.assert_allclose(_one_step(pr, "both"), 0.5 * g + pred, rtol=0, atol=1e-12)


def test_spread_follows_similarity():
    """Training prompt 0 only: untrained prompts of its cluster move more than the other cluster's."""
    pr = coupled(8, 5, n_correct=2, n_clusters=2, dim=3, coupling=1.0, noise=0.1, seed=2)
    dz = np.abs(_one_step(pr, "linear", train=(0,))).sum(1)
    cluster = np.array(pr.meta["cluster"])
    same = [x for x in range(1, 8) if cluster[x] == cluster[0]]
    other = [x for x in range(1, 8) if cluster[x] != cluster[0]]
    assert dz[same].mean() > dz[other].mean()


def test_tabular_has_no_coupling():
    pr = coupled(8, 5, n_correct=2, n_clusters=2, dim=3, coupling=1.0, seed=2)
    dz = _one_step(pr, "tabular")
    assert np.all(dz[2:] == 0.0)
    assert np.abs(dz[:2]).max() > 1e-3


def test_zero_coupling_is_tabular():
    """coupled(coupling=0) has phi = 0, so param='both' reproduces the tabular run bit for bit."""
    pr = coupled(8, 5, n_correct=2, n_clusters=2, dim=3, coupling=0.0, seed=2)
    assert np.array_equal(_one_step(pr, "both"), _one_step(pr, "tabular"))
