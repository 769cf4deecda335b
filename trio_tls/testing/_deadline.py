"""Deadlines for tests."""

from __future__ import annotations

import math


def positive_seconds(value: object, what: str) -> float:
    """``value`` as seconds, refusing anything but a positive, finite number.

    Raises:
      TypeError: ``value`` is not an int or a float (a bool is refused too).
      ValueError: it is zero, negative, NaN or infinite: no deadline at all, which
          is exactly what a deadline is there to prevent.
    """
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise TypeError(f"{what} must be a number of seconds, not {value!r}")
    if not 0 < value < math.inf:
        raise ValueError(f"{what} must be a positive, finite number of seconds, not {value!r}")
    return float(value)
