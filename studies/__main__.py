"""`python -m studies`: regenerate every figure of docs/studies.md into figures/.

    python -m studies                 all figures, full sweeps (make figures)
    python -m studies --quick --check shrunken sweeps, exit 1 if any check fails (CI)
    python -m studies --only NAME     one figure (repeatable)
    python -m studies --out DIR       write somewhere other than figures/

A claim is a *check* of the lab (its failure is a bug) or a *verdict* on a paper's claim (reproduced or
not: a result either way); --check fails on checks only. Each sidecar says which is which.
"""

from __future__ import annotations

import argparse
import importlib
import os
import pkgutil
import sys
import time
from pathlib import Path

from studies._scorecard import write as write_scorecard

# the order of docs/studies.md; scripts not listed here run after these, alphabetically
ORDER = ("logratio_dynamics", "ips_terminal", "sampling_bias", "semantic_coupling", "divergences",
         "overtraining", "fixes_leaderboard", "phase_diagram", "paper_claims", "llm_collapse")


def discover() -> list[str]:
    """Names of the figure scripts in this package (modules not starting with '_')."""
    here = Path(__file__).parent
    found = {m.name for m in pkgutil.iter_modules([str(here)]) if not m.name.startswith("_")}
    return [n for n in ORDER if n in found] + sorted(found - set(ORDER))


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m studies", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="shrink every sweep (CI)")
    ap.add_argument("--only", action="append", default=[], metavar="NAME", help="run only this figure")
    ap.add_argument("--check", action="store_true", help="exit 1 if any figure's check fails (verdicts never fail)")
    ap.add_argument("--out", type=Path, help="output folder (default figures/)")
    args = ap.parse_args(argv)
    available = discover()
    unknown = sorted(set(args.only) - set(available))
    if unknown:
        ap.error(f"unknown figure(s) {unknown}; available: {', '.join(available) or 'none'}")
    if args.out is not None:
        os.environ["COLLAPSE_LAB_FIGURES"] = str(args.out.resolve())
    names = [n for n in available if not args.only or n in args.only]
    if not names:
        print("no studies exist yet: nothing to regenerate")
        return 0
    t0, failed = time.perf_counter(), []
    for name in names:
        ok = importlib.import_module(f"studies.{name}").main(quick=args.quick)
        failed += [] if ok else [name]
    root = Path(__file__).resolve().parent.parent
    out = args.out.resolve() if args.out is not None else root / "figures"
    # the scorecard of every sidecar in the folder; a full run into figures/ also refreshes the README's
    write_scorecard(out, root / "README.md" if args.out is None and not args.quick else None)
    print(f"{len(names)} figures in {time.perf_counter() - t0:.1f}s; "
          f"checks passed in {len(names) - len(failed)}, failed in {len(failed)}")
    if failed:
        print(f"checks failed: {', '.join(failed)}", file=sys.stderr)
    return 1 if (failed and args.check) else 0


if __name__ == "__main__":
    sys.exit(main())
