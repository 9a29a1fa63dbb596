"""Predicates for numeric settings, shared by every job's validation (refused before any work starts).

A setting read from a config file or a `--config.KEY=VALUE` flag may be a bool (a subclass of int in
Python), a string, NaN or infinity: none of those is a number a run can use.
"""

from __future__ import annotations

import math


def finite(x) -> bool:
    """A finite int or float, not a bool."""
    return isinstance(x, (int, float)) and not isinstance(x, bool) and math.isfinite(x)


def share(x, top: float = 1.0) -> bool:
    """A finite number in [0, top)."""
    return finite(x) and 0 <= x < top


def count(x, least: int = 0) -> bool:
    """An int (not a bool) of at least `least`."""
    return isinstance(x, int) and not isinstance(x, bool) and x >= least
