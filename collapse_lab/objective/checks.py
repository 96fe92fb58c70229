"""Validation of recipe hyper-parameters: one clear ValueError per bad value, never a NaN loss later.

Every message has the form `<field> = <value!r> is invalid; allowed: <...>`. Types are strict:
a bool must be a real `bool`, an int a real `int` (not `bool`), a float a finite real number
(`int` accepted, `bool` and strings refused). NaN fails every range test, so it is refused
explicitly: `x < 0` is False for NaN and would let it through.
"""

from __future__ import annotations

import math
import numbers

__all__ = ["check_choice", "check_bool", "check_int", "check_float", "invalid"]


def invalid(field: str, value, allowed: str) -> ValueError:
    """The project's standard error: `<field> = <value!r> is invalid; allowed: <allowed>`."""
    return ValueError(f"{field} = {value!r} is invalid; allowed: {allowed}")


def check_choice(field: str, value, allowed) -> None:
    """ValueError naming the field and the allowed values unless `value` is one of `allowed`."""
    if not isinstance(value, str) or value not in allowed:
        raise invalid(field, value, ", ".join(map(str, allowed)))


def check_bool(field: str, value) -> None:
    """Only True or False: `bool("false")` is True, so strings and numbers are refused."""
    if not isinstance(value, bool):
        raise invalid(field, value, "true or false (a bool)")


def _bounds(lo, hi, lo_open: bool, hi_open: bool) -> str:
    parts = []
    if lo is not None:
        parts.append(f"{'>' if lo_open else '>='} {lo}")
    if hi is not None:
        parts.append(f"{'<' if hi_open else '<='} {hi}")
    return " and ".join(parts)


def _in_range(x, lo, hi, lo_open: bool, hi_open: bool) -> bool:
    ok_lo = lo is None or (x > lo if lo_open else x >= lo)
    ok_hi = hi is None or (x < hi if hi_open else x <= hi)
    return ok_lo and ok_hi


def check_int(field: str, value, lo=None, hi=None) -> None:
    """A real int (not bool, not 2.5) in [lo, hi] (None = unbounded)."""
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or not _in_range(
            value, lo, hi, False, False):
        bounds = _bounds(lo, hi, False, False)
        raise invalid(field, value, "an integer" + (f" {bounds}" if bounds else ""))


def check_float(field: str, value, lo=None, hi=None, lo_open: bool = False, hi_open: bool = False,
                none: bool = False) -> None:
    """A finite real number (int accepted, bool refused) within the bounds; None allowed if `none`."""
    if none and value is None:
        return
    ok = (not isinstance(value, bool) and isinstance(value, numbers.Real) and math.isfinite(value)
          and _in_range(value, lo, hi, lo_open, hi_open))
    if not ok:
        bounds = _bounds(lo, hi, lo_open, hi_open)
        what = "a finite number" + (f" {bounds}" if bounds else "") + (" or None" if none else "")
        raise invalid(field, value, what)
