"""Deadlines for tests: validated lengths, and a deadline on the wall clock."""

from __future__ import annotations

import contextlib
import math
import threading
from collections.abc import Iterator

import trio


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


@contextlib.contextmanager
def wall_clock_deadline(seconds: float) -> Iterator[trio.CancelScope]:
    """A cancel scope that is cancelled after ``seconds`` of real time.

    A trio deadline follows the run's clock, and under a
    :class:`trio.testing.MockClock` with autojump a deadlocked test would reach it
    at once while a test that sleeps for virtual hours legitimately would not fit.
    A hang is a wall-clock matter, so a timer thread cancels the scope through the
    run's token. Check :attr:`trio.CancelScope.cancelled_caught` afterwards.
    """
    scope = trio.CancelScope()
    token = trio.lowlevel.current_trio_token()

    def expire() -> None:
        # The run may be finishing just as the timer fires; then nothing is left
        # to cancel.
        with contextlib.suppress(trio.RunFinishedError):
            token.run_sync_soon(scope.cancel)

    timer = threading.Timer(seconds, expire)
    timer.daemon = True
    timer.start()
    try:
        with scope:
            yield scope
    finally:
        timer.cancel()
