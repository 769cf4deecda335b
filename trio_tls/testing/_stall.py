"""Measure how long the event loop was held by a single task step.

trio runs one task at a time, from one schedule point to the next. While a task runs
without reaching one, nothing else runs: no other connection, no timeout. The longest
such *step* is the worst stall a block of code caused, and it is what a protocol
implementation must keep small whatever its peer sends. A trio instrument sees the
start and end of every step, so the measurement needs no helper task and no sampling:
it is exact up to the clock's resolution.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import final

import trio


@final
@dataclass
class StallReport:
    """What :func:`measure_stalls` saw; filled in while its block runs."""

    #: The longest single task step, in seconds.
    longest: float = 0.0
    #: The name of the task that took it (None if no task ran).
    longest_task: str | None = None
    #: How many task steps ran in all.
    steps: int = 0


@final
class _StepTimer(trio.abc.Instrument):
    def __init__(self, report: StallReport) -> None:
        self._report = report
        # The step that adds this instrument is already running: it counts from now.
        self._started = time.perf_counter()

    def before_task_step(self, task: trio.lowlevel.Task) -> None:
        self._started = time.perf_counter()

    def after_task_step(self, task: trio.lowlevel.Task) -> None:
        took = time.perf_counter() - self._started
        report = self._report
        report.steps += 1
        if took > report.longest:
            report.longest = took
            report.longest_task = task.name


@contextmanager
def measure_stalls() -> Iterator[StallReport]:
    """Record the longest stretch any task held the event loop while the block ran.

    Use it inside ``trio.run`` (an async test, say) to assert that your protocol
    never starves the loop, whatever its peer sends::

        with measure_stalls() as stalls:
            with trio.move_on_after(0.5):
                await stream.receive_some()
        assert stalls.longest < 0.05, stalls

    Every task counts, the peer's included when it runs in the same loop; run a
    hostile peer in a thread or another process to measure your side alone.
    """
    report = StallReport()
    timer = _StepTimer(report)
    trio.lowlevel.add_instrument(timer)
    try:
        yield report
    finally:
        trio.lowlevel.remove_instrument(timer)
