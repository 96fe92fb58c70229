"""The reproduction scorecard: every claim of every figure, one row each, generated from the sidecars.

`python -m studies` rewrites it after the figures (into `figures/SCORECARD.md` and between the
`<!-- scorecard:start -->` / `<!-- scorecard:end -->` markers of the README), so the table never
states a number that a sidecar does not hold. Verdicts on the papers' claims come first (reproduced /
not reproduced / not assessed), then the lab's own checks, counted per figure.
"""

from __future__ import annotations

import json
from pathlib import Path

from collapse_lab.runs import atomic_write

START, END = "<!-- scorecard:start -->", "<!-- scorecard:end -->"


def _num(x) -> str:
    return "" if x is None else f"{x:.4g}"


def _test(c: dict) -> str:
    """The claim's test in words (older sidecars without one: derived from target and tolerance)."""
    if c.get("test"):
        return c["test"].replace("|", "\\|")
    return "condition holds" if c["target"] is None else f"value vs {_num(c['target'])} ± {_num(c['tolerance'])}"


def load_sidecars(fig_dir: Path) -> list[dict]:
    """Every `<figure>.json` sidecar in fig_dir that carries claims, sorted by figure name."""
    out = []
    for path in sorted(Path(fig_dir).glob("*.json")):
        side = json.loads(path.read_text())
        if isinstance(side, dict) and "claims" in side and "figure" in side:
            out.append(side)
    return out


def scorecard(sidecars: list[dict]) -> str:
    """Markdown: totals, one row per verdict, one row per figure's checks."""
    verdicts = [(s, c) for s in sidecars for c in s["claims"] if c.get("kind", "check") == "verdict"]
    checks = [(s, c) for s in sidecars for c in s["claims"] if c.get("kind", "check") == "check"]
    tally = {v: sum(c.get("verdict") == v for _, c in verdicts) for v in ("reproduced", "not reproduced",
                                                                           "not assessed")}
    n_ok = sum(bool(c["passed"]) for _, c in checks)
    quick = any(s.get("quick") for s in sidecars)
    lines = [f"Verdicts on the papers' claims: **{tally['reproduced']} reproduced, {tally['not reproduced']} not "
             f"reproduced, {tally['not assessed']} not assessed**; the lab's own checks: **{n_ok} of {len(checks)} "
             f"pass**" + (" (quick-mode sidecars: sizes too small for verdicts)" if quick else "") + ".", "",
             "| figure | claim | verdict | value | test | power |", "|---|---|---|---|---|---|"]
    for s, c in verdicts:
        power = "" if c.get("power") is None else f"{c['power']:.2f}"
        lines.append(f"| `{s['figure']}` | {c['name']} | {c['verdict']} | {_num(c['value'])} | {_test(c)} "
                     f"| {power} |")
    lines += ["", "| figure | checks passed | failed |", "|---|---|---|"]
    for s in sidecars:
        own = [c for c in s["claims"] if c.get("kind", "check") == "check"]
        failed = ", ".join(c["name"] for c in own if not c["passed"]) or "none"
        lines.append(f"| `{s['figure']}` | {sum(bool(c['passed']) for c in own)} of {len(own)} | {failed} |")
    return "\n".join(lines) + "\n"


def write(fig_dir: Path, readme: Path | None = None) -> str:
    """Write fig_dir/SCORECARD.md and, when `readme` has the markers, the table between them."""
    table = scorecard(load_sidecars(fig_dir))
    atomic_write(Path(fig_dir) / "SCORECARD.md", ("# Reproduction scorecard\n\n" + table).encode())
    if readme is not None and readme.exists():
        text = readme.read_text()
        if START in text and END in text:
            head, rest = text.split(START, 1)
            new = head + START + "\n" + table + END + rest.split(END, 1)[1]
            if new != text:
                atomic_write(readme, new.encode())
    return table
