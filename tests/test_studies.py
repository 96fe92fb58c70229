"""The figure scripts: `python -m studies --quick --check` must pass every claim (STUDIES.md).

Runs in a subprocess with --out in a temporary folder, so the committed figures/ are untouched;
each figure must leave a PNG, a PDF and a JSON sidecar whose claims all passed.
"""

import json
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
FIGURES = ("logratio_dynamics", "ips_terminal", "sampling_bias", "semantic_coupling", "divergences",
           "overtraining", "fixes_leaderboard", "phase_diagram", "llm_collapse")


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
        assert side["quick"] is True and side["all_claims_passed"] is True, name
        assert side["claims"] and all(c["passed"] for c in side["claims"]), name
        assert side["provenance"]["seed"] is not None and side["provenance"]["wall_time_s"] is not None


def test_runner_lists_every_figure():
    from studies.__main__ import discover

    assert set(FIGURES) <= set(discover())
