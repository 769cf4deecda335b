"""How much work the event loop did between a deadline and the cancellation it caused.

"The deadline fired within 50 ms" is a wall-clock claim, and on a loaded machine the
OS alone can make it false: it may preempt the test process just as the deadline
passes and hand it the CPU back 80 ms later. What the library controls is the work
the loop's thread does from the deadline until the cancellation reaches the code
under the deadline (the rest of the step that was running, the scheduler, the
cancelled task's unwinding): its CPU time, which preemption does not inflate.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import final

import trio


@final
class _LastMarkBefore(trio.abc.Instrument):
    """The loop thread's CPU clock at its last scheduler event before ``deadline``.

    Marks are taken at every step boundary and around every I/O wait, so the mark
    comes at most one step before the deadline: the CPU time counted from it is never
    less than the work done after the deadline, only more by part of one step.
    """

    def __init__(self, deadline: float) -> None:
        self._deadline = deadline
        self.cpu = time.thread_time()

    def _mark(self) -> None:
        if trio.current_time() < self._deadline:
            self.cpu = time.thread_time()

    def before_task_step(self, task: trio.lowlevel.Task) -> None:
        self._mark()

    def after_task_step(self, task: trio.lowlevel.Task) -> None:
        self._mark()

    def before_io_wait(self, timeout: float) -> None:
        self._mark()

    def after_io_wait(self, timeout: float) -> None:
        self._mark()


@dataclass
class Lateness:
    """How late a deadline fired: in wall time, and in the loop thread's CPU time."""

    #: Seconds of wall time from the deadline until the block under it had ended.
    wall: float = 0.0
    #: Seconds of CPU time the loop's thread spent over the same stretch (an upper
    #: bound: counted from the last scheduler event before the deadline).
    cpu: float = 0.0


@contextmanager
def lateness_after(deadline: float) -> Iterator[Lateness]:
    """Measure how late, past the absolute trio ``deadline``, the block ended.

    Filled in when the block exits; the block must end after the deadline (a
    cancellation it caused, or a bound of the code under test that expired with it).
    """
    result = Lateness()
    marker = _LastMarkBefore(deadline)
    trio.lowlevel.add_instrument(marker)
    try:
        yield result
    finally:
        # Read both clocks before removing the instrument: removal is work of the test.
        result.cpu = time.thread_time() - marker.cpu
        result.wall = trio.current_time() - deadline
        trio.lowlevel.remove_instrument(marker)
