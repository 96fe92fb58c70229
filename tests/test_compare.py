"""collapse_lab.compare: golden numbers on hand-built frontiers, honesty (not reached -> NaN),
invariances (hypothesis), crossover, and the run_grid runner on a small real grid."""

import numba
import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from collapse_lab import compare as cp

LRS = cp.lr_grid(0.01, 1.0, 5)
OFFSETS = (-0.01, 0.0, 0.01)  # replicate offsets of y: SE = 0.01 / sqrt(3)


def hand_built(speed_a=0.015, speed_b=0.01):
    """Recipe A: x(t) = 0.1 + speed_a (i+1) t, y = 0.9 - 0.5 x - 0.01 i + offset (lr index i);
    recipe B: x(t) = 0.1 + speed_b (i+1) t, y = 0.8 - 0.3 x + offset. t = 0..10; kl = 2 x."""
    rows = []
    for rec, speed, y0, slope, pen in (("A", speed_a, 0.9, 0.5, 0.01), ("B", speed_b, 0.8, 0.3, 0.0)):
        for i, lr in enumerate(LRS):
            for r, off in enumerate(OFFSETS):
                for t in range(11):
                    x = 0.1 + speed * (i + 1) * t
                    rows.append((rec, lr, r, t, x, y0 - slope * x - pen * i + off, 2 * x))
    return pd.DataFrame(rows, columns=["recipe", "lr", "replicate", "step", "pass@1", "pass@256", "kl"])


def test_lr_grid_golden():
    np.testing.assert_allclose(LRS, [0.01, 0.01 * 10**0.5, 0.1, 0.1 * 10**0.5, 1.0], rtol=1e-12)
    with pytest.raises(ValueError, match="n = 3 is invalid"):
        cp.lr_grid(0.01, 1.0, 3)


def test_matched_pass1_golden():
    """At Pass@1 = 0.4: A's lrs 1..4 reach it, the smallest (penalty 0.01 i) is best: 0.9 - 0.2 - 0.01
    = 0.69; B: 0.8 - 0.12 = 0.68, all lrs reaching; SE = 0.01/sqrt(3) both."""
    f = cp.frontier_at(hand_built(), 0.4).set_index("recipe")
    np.testing.assert_allclose(f.loc["A", "value"], 0.69, atol=1e-12)
    np.testing.assert_allclose(f.loc["B", "value"], 0.68, atol=1e-12)
    np.testing.assert_allclose(f["se"], 0.01 / np.sqrt(3), atol=1e-12)
    assert f.loc["A", "lr"] == LRS[1] and f.loc["A", "lrs_reached"] == 4
    assert f.loc["B", "lrs_reached"] == 3  # B at lr indices 0, 1 tops out at x = 0.2, 0.3
    r = cp.rank(hand_built(), 0.4)
    assert list(r["recipe"]) == ["A", "B"] and list(r["rank"]) == [1, 2]
    np.testing.assert_allclose(r["z_vs_best"], [0.0, -0.01 / np.sqrt(2 * 0.01**2 / 3)], atol=1e-9)


def test_not_reached_is_nan_never_extrapolated():
    """Target 0.7: B tops out at x = 0.6 -> NaN, 'not reached', rank NaN, listed last; A: lrs 3, 4
    reach it, best 0.9 - 0.35 - 0.03 = 0.52."""
    r = cp.rank(hand_built(), 0.7).set_index("recipe")
    np.testing.assert_allclose(r.loc["A", "value"], 0.52, atol=1e-12)
    assert np.isnan(r.loc["B", "value"]) and np.isnan(r.loc["B", "se"]) and np.isnan(r.loc["B", "rank"])
    assert r.loc["B", "status"] == "not reached" and r.loc["B", "lrs_reached"] == 0
    assert list(cp.rank(hand_built(), 0.7)["recipe"]) == ["A", "B"]
    assert cp.common_target(hand_built()) == pytest.approx(0.6)


def test_partial_replicates_do_not_credit_an_lr():
    """If one replicate of an lr misses the target, that lr is not credited (its mean would be a
    mean over the lucky replicates)."""
    df = hand_built()
    # A at lr index 1 reaches x = 0.4 exactly at t = 10; pull replicate 2 just short of it
    m = (df.recipe == "A") & (df.lr == LRS[1]) & (df.replicate == 2) & (df.step == 10)
    df.loc[m, "pass@1"] = 0.399
    f = cp.frontier_at(df, 0.4).set_index("recipe")
    assert f.loc["A", "lrs_reached"] == 3 and f.loc["A", "lr"] == LRS[2]
    np.testing.assert_allclose(f.loc["A", "value"], 0.9 - 0.2 - 0.02, atol=1e-12)


def test_matched_kl_golden():
    """kl = 2 x: matched at KL = 0.8 is matched at Pass@1 = 0.4."""
    a, b = cp.frontier_at(hand_built(), 0.8, x="kl"), cp.frontier_at(hand_built(), 0.4)
    np.testing.assert_allclose(a["value"], b["value"], atol=1e-12)


def test_curve_value_golden():
    assert cp.curve_value([0.0, 1.0], [1.0, 3.0], 0.25) == pytest.approx(1.5)
    # non-monotone path crosses 0.5 three times: ys 1.5, 2.5, 3.5 -> the largest
    assert cp.curve_value([0, 1, 0, 1], [1, 2, 3, 4], 0.5) == pytest.approx(3.5)
    assert cp.curve_value([0.2, 0.3], [0.9, 0.8], 0.35) != cp.curve_value([0.2, 0.3], [0.9, 0.8], 0.35)  # NaN
    assert np.isnan(cp.curve_value([np.nan, np.nan], [1, 2], 0.1))
    assert cp.curve_value([0.1, 0.3, 0.3], [5, 4, 2], 0.3) == 4  # checkpoint exactly at target


def test_check_results_errors():
    df = hand_built()
    with pytest.raises(ValueError, match="lr grid"):
        cp.frontier_at(df[df.lr > LRS[0]], 0.4)
    with pytest.raises(ValueError, match="missing"):
        cp.frontier_at(df.drop(columns="kl"), 0.4, x="kl")
    with pytest.raises(ValueError, match="duplicated"):
        cp.frontier_at(pd.concat([df, df.iloc[:1]]), 0.4)


@settings(deadline=None, max_examples=30)
@given(a=st.floats(0.1, 10.0), b=st.floats(-1.0, 1.0), target=st.floats(0.15, 0.6))
def test_affine_y_transform_commutes(a, b, target):
    """y -> a y + b (a > 0): values -> a v + b, SE -> a SE, same order."""
    df = hand_built()
    df2 = df.assign(**{"pass@256": a * df["pass@256"] + b})
    f, g = cp.rank(df, target), cp.rank(df2, target)
    if abs(f["value"].iloc[0] - f["value"].iloc[1]) > 1e-9:  # no exact tie
        assert list(f["recipe"]) == list(g["recipe"])
    np.testing.assert_allclose(g["value"], a * f["value"] + b, rtol=1e-9, atol=1e-9)
    np.testing.assert_allclose(g["se"], a * f["se"], rtol=1e-9, atol=1e-12)


@settings(deadline=None, max_examples=30)
@given(c=st.floats(-0.3, 0.3), target=st.floats(0.15, 0.55), seed=st.integers(0, 10**6))
def test_shift_dominance_and_permutation(c, target, seed):
    """Shifting B's y by c shifts its value by exactly c; row order is irrelevant; a recipe whose
    trajectories are dominated pointwise (same x, y lowered by random amounts >= 0) has a frontier
    value <= the original."""
    df = hand_built(speed_a=0.01, speed_b=0.01)  # same x paths for A and B
    base = cp.frontier_at(df, target).set_index("recipe")
    df2 = df.copy()
    df2.loc[df2.recipe == "B", "pass@256"] += c
    shifted = cp.frontier_at(df2.sample(frac=1.0, random_state=seed % 2**32), target).set_index("recipe")
    np.testing.assert_allclose(shifted.loc["B", "value"], base.loc["B", "value"] + c, atol=1e-12)
    np.testing.assert_allclose(shifted.loc["A", "value"], base.loc["A", "value"], atol=1e-12)
    df3 = df.copy()
    df3["pass@256"] -= np.random.default_rng(seed).uniform(0, 0.05, len(df3))
    low = cp.frontier_at(df3, target).set_index("recipe")
    assert np.all(low["value"] <= base["value"] + 1e-12)


@settings(deadline=None, max_examples=20)
@given(drop=st.integers(0, 4), target=st.floats(0.15, 0.6))
def test_more_learning_rates_never_hurt(drop, target):
    """The frontier is a max over lrs: adding a sixth lr can only raise (or keep) a value."""
    df = hand_built()
    extra = df[df.lr == LRS[drop]].assign(lr=LRS[drop] * 1.5, **{"pass@256": lambda d: d["pass@256"] + 0.05})
    f = cp.frontier_at(df, target).set_index("recipe")
    g = cp.frontier_at(pd.concat([df, extra]), target).set_index("recipe")
    for rec in ("A", "B"):
        if np.isfinite(f.loc[rec, "value"]):
            assert g.loc[rec, "value"] >= f.loc[rec, "value"] - 1e-12


def test_crossover_golden():
    base = np.array([0.2, 0.5, 0.9])
    end = np.array([[0.4, 0.5, 0.80], [0.5, 0.52, 0.82], [0.6, 0.54, 0.84]])  # (R=3, nk)
    pk = np.stack([np.broadcast_to(base, (3, 3)), end], 1)  # (R, L=2, nk)
    c = cp.crossover(pk, [1, 16, 256])
    np.testing.assert_allclose(c["mean"], [0.5, 0.52, 0.82])
    np.testing.assert_allclose(c["se"], [0.1 / np.sqrt(3), 0.02 / np.sqrt(3), 0.02 / np.sqrt(3)])
    assert c["crossover_k"] == 256 and c["below_k"] == [256] and c["above_k"] == [1]  # k=16: 1.7 SE
    with pytest.raises(ValueError, match="pass_at_k shape"):
        cp.crossover(pk[:1], [1, 16, 256])


def test_differs_from_golden():
    """Welch statistic by hand: A = grpo + 0.05 at step 2 only (SE of the difference sqrt(2 * var/3),
    var = 1e-4 from offsets -0.01, 0, 0.01: z = 0.05 / sqrt(2e-4/3) = 6.12 > 4); B = grpo + 0.001
    (z = 0.12, noise); C identical to grpo at zero variance (z = 0); D shifted at zero variance (inf)."""
    rows = []
    for rec, shift in (("grpo", 0.0), ("A", 0.05), ("B", 0.001), ("C", 0.0), ("D", 0.02)):
        for r, off in enumerate(OFFSETS):
            off = 0.0 if rec in ("C", "D") else off
            base = 0.0 if rec in ("C", "D") else 0.3
            for t in range(3):
                add = shift if (t == 2 or rec != "A") else 0.0
                rows.append((rec, 0.1, r, t, base + off + add, 0.9, 0.0))
    df = pd.DataFrame(rows, columns=["recipe", "lr", "replicate", "step", "pass@1", "pass@256", "kl"])
    grpo0 = df[df.recipe == "grpo"].assign(recipe="grpo0", **{"pass@1": 0.0})  # a zero-variance baseline
    d = cp.differs_from(pd.concat([df, grpo0]), metrics=("pass@1", "pass@256")).set_index("recipe")
    assert set(d.index) == {"A", "B", "C", "D", "grpo0"}
    np.testing.assert_allclose(d.loc["A", "z"], 0.05 / np.sqrt(2e-4 / 3), rtol=1e-9)
    assert d.loc["A", "step"] == 2 and d.loc["A", "metric"] == "pass@1" and d.loc["A", "differs"]
    np.testing.assert_allclose(d.loc["B", "z"], 0.001 / np.sqrt(2e-4 / 3), rtol=1e-9)
    assert not d.loc["B", "differs"]
    d0 = cp.differs_from(pd.concat([df[df.recipe.isin(["C", "D"])], grpo0.assign(recipe="grpo")]),
                         metrics=("pass@1",)).set_index("recipe")
    assert d0.loc["C", "z"] == 0 and not d0.loc["C", "differs"]
    assert np.isinf(d0.loc["D", "z"]) and d0.loc["D", "differs"]
    with pytest.raises(ValueError, match="replicates = 1 is invalid"):
        cp.differs_from(df[df.replicate == 0])
    with pytest.raises(ValueError, match="baseline = 'grpo' at lr = 0.2 is missing"):
        cp.differs_from(pd.concat([df, df[df.recipe == "A"].assign(lr=0.2)]))


def test_run_grid_on_the_benchmark(monkeypatch):
    """A real 2-recipe x 5-lr grid on a small shared_answers problem: tidy rows, every lr present,
    step 0 is the base for all; ranking works; a diverged run is kept as NaN rows, never dropped."""
    from collapse_lab.sim.problems import shared_answers

    pb = shared_answers(n_prompts=8, n_answers=6)
    lrs = cp.lr_grid(0.03, 1.0)
    threads = numba.get_num_threads()
    df = cp.run_grid(pb, ["grpo", "ips_grpo"], lrs, replicates=2, steps=20, log_every=5, param="linear",
                     ks=(1, 16, 256), threads=1)
    assert len(df) == 2 * 5 * 2 * 5 and df.groupby("recipe")["lr"].nunique().tolist() == [5, 5]
    assert numba.get_num_threads() == threads  # restored
    s0 = df[df.step == 0]
    assert np.allclose(s0["pass@1"], s0["pass@1"].iloc[0])
    r = cp.rank(df, cp.common_target(df))
    assert (r["status"] == "ok").all()
    import collapse_lab.sim as sim

    real = sim.simulate

    def boom(problem, cfg, seed=0):
        if cfg.lr == lrs[-1]:
            raise FloatingPointError("non-finite logits")
        return real(problem, cfg, seed)

    monkeypatch.setattr(sim, "simulate", boom)
    with pytest.warns(UserWarning, match="diverged"):
        df2 = cp.run_grid(pb, ["grpo"], lrs, replicates=2, steps=10, log_every=5, param="linear", ks=(1, 256),
                          threads=1)
    bad = df2[df2.lr == lrs[-1]]
    assert len(bad) == 2 and bad["diverged"].all() and bad["pass@1"].isna().all()
    assert cp.frontier_at(df2, 0.99, y="pass@256")["status"].iloc[0] == "not reached"
