"""Entry point of `python -m studies`: runs every figure script (see STUDIES.md).

Until the studies land, this lists what exists and exits 0.
"""

from __future__ import annotations

import argparse
import importlib
import pkgutil
import sys
from pathlib import Path


def discover() -> list[str]:
    """Names of the figure scripts in this package (every module with a `main`)."""
    here = Path(__file__).parent
    return sorted(m.name for m in pkgutil.iter_modules([str(here)]) if not m.name.startswith("_"))


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m studies", description=__doc__)
    ap.add_argument("--quick", action="store_true", help="shrink every sweep (CI)")
    ap.add_argument("--only", action="append", default=[], help="run only this figure (repeatable)")
    ap.add_argument("--check", action="store_true", help="exit non-zero if any claim fails")
    args = ap.parse_args(argv)
    names = [n for n in discover() if not args.only or n in args.only]
    unknown = set(args.only) - set(discover())
    if unknown:
        ap.error(f"unknown figure(s) {sorted(unknown)}; available: {', '.join(discover()) or 'none'}")
    if not names:
        print("no studies exist yet: nothing to regenerate")
        return 0
    failed = []
    for name in names:
        mod = importlib.import_module(f"studies.{name}")
        ok = mod.main(quick=args.quick)
        failed += [] if ok else [name]
    if failed:
        print(f"claims failed: {', '.join(failed)}", file=sys.stderr)
    return 1 if (failed and args.check) else 0


if __name__ == "__main__":
    sys.exit(main())
