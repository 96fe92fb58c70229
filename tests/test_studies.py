"""The figure scripts: `python -m studies --quick --check` must pass every check (docs/studies.md).

Runs in a subprocess with --out in a temporary folder, so the committed figures/ are untouched;
each figure must leave a PNG, a PDF and a JSON sidecar whose checks all passed; verdicts on the papers'
claims are recorded with a verdict whatever it is.
"""

import json
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
FIGURES = ("logratio_dynamics", "ips_terminal", "sampling_bias", "semantic_coupling", "divergences",
           "overtraining", "fixes_leaderboard", "phase_diagram", "llm_collapse", "paper_claims")


def test_quick_check_passes(tmp_path):
    # a fresh result cache, so every claim is recomputed rather than read back
    env = dict(os.environ, COLLAPSE_LAB_CACHE=str(tmp_path / "cache"))
    proc = subprocess.run([sys.executable, "-m", "studies", "--quick", "--check", "--out", str(tmp_path)],
                          cwd=ROOT, capture_output=True, text=True, timeout=900, env=env)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    for name in FIGURES:
        for ext in ("png", "pdf", "json"):
            assert (tmp_path / f"{name}.{ext}").stat().st_size > 0, f"{name}.{ext} missing"
        side = json.loads((tmp_path / f"{name}.json").read_text())
        assert side["quick"] is True and side["all_checks_passed"] is True, name
        checks = [c for c in side["claims"] if c["kind"] == "check"]
        assert checks and all(c["passed"] for c in checks), name
        for c in side["claims"]:
            assert c["verdict"] in (("pass",) if c["kind"] == "check" else
                                    ("reproduced", "not reproduced", "not assessed")), (name, c)
        assert side["provenance"]["seed"] is not None and side["provenance"]["wall_time_s"] is not None


def test_runner_lists_every_figure():
    from studies.__main__ import discover

    assert set(FIGURES) <= set(discover())


def test_claim_kinds_and_verdicts(tmp_path, monkeypatch):
    """A failed verdict is recorded as 'not reproduced' and does not fail the figure; a failed check does."""
    import matplotlib.pyplot as plt

    from studies._common import finish, greater, power_one_sided

    monkeypatch.setenv("COLLAPSE_LAB_FIGURES", str(tmp_path))
    verdict = greater("v", 0.1, 0.0, 0.5, kind="verdict")
    assert finish("t1", plt.figure(), [greater("c", 1.0, 0.0), verdict], seed=0, config={}, t0=0.0, quick=True)
    side = json.loads((tmp_path / "t1.json").read_text())
    assert side["verdicts"] == {"reproduced": 0, "not reproduced": 1, "not assessed": 0}
    assert side["all_checks_passed"] is True and side["all_claims_passed"] is False
    assert not finish("t2", plt.figure(), [greater("c", -1.0, 0.0)], seed=0, config={}, t0=0.0, quick=True)
    assert greater("v", 1.0, 0.0, kind="verdict", assessed=False).verdict == "not assessed"
    # power of `mean > 2 SE`: exactly 1/2 when the effect is 2 SE; Phi(1) = 0.8413 when it is 3 SE
    assert abs(power_one_sided(0.2, 0.1) - 0.5) < 1e-12
    assert abs(power_one_sided(0.3, 0.1) - 0.841344746) < 1e-8


def test_scorecard_lists_every_claim(tmp_path):
    """The scorecard has one row per verdict and one per figure's checks, with the sidecars' numbers."""
    from studies._scorecard import END, START, write

    claims = [dict(name="theory_match", kind="check", passed=True, value=1e-9, target=0.0, tolerance=1e-6,
                   test="|value - 0| <= 1e-06", verdict="pass"),
              dict(name="paper_a_claim", kind="verdict", passed=False, value=0.031, target=0.0, tolerance=0.05,
                   test="value > 0 + 0.05", verdict="not reproduced", power=0.81),
              dict(name="paper_b_claim", kind="verdict", passed=True, value=0.5, target=0.0, tolerance=0.1,
                   test="value > 0 + 0.1", verdict="reproduced")]
    (tmp_path / "fig.json").write_text(json.dumps({"figure": "fig", "quick": False, "claims": claims}))
    readme = tmp_path / "README.md"
    readme.write_text(f"intro\n{START}\nold table\n{END}\nrest\n")
    table = write(tmp_path, readme)
    assert "1 reproduced, 1 not reproduced, 0 not assessed" in table and "1 of 1 pass" in table
    assert "| `fig` | paper_a_claim | not reproduced | 0.031 | value > 0 + 0.05 | 0.81 |" in table
    assert "| `fig` | paper_b_claim | reproduced | 0.5 |" in table
    text = readme.read_text()
    assert "old table" not in text and text.startswith("intro\n") and text.endswith(f"{END}\nrest\n")
    assert (tmp_path / "SCORECARD.md").read_text().endswith(table)
