"""Measure how long the event loop was held by a single task step.

trio runs one task at a time, from one schedule point to the next. While a task runs
without reaching one, nothing else runs: no other connection, no timeout. The longest
such *step* is the worst stall a block of code caused, and it is what a protocol
implementation must keep small whatever its peer sends. A trio instrument sees the
start and end of every step, so the measurement needs no helper task and no sampling:
it is exact up to the clock's resolution.

Each step is timed twice. Wall time (``time.perf_counter``) is what the other tasks
waited, but on a loaded machine it also counts the time the OS gave the CPU to other
processes: a step of 5 ms can take 80 ms of wall time and say nothing about the code.
CPU time of the thread running the loop (``time.thread_time``) counts only the work
that thread did, so preemption does not inflate it while a loop that keeps the CPU
busy without yielding still shows in full. It misses the other way to hold the loop,
a blocking call that sleeps in the kernel, which only wall time sees.
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
    """What :func:`measure_stalls` saw; filled in while its block runs.

    ``longest`` and ``longest_cpu`` may come from different steps: each is the maximum
    of its own clock.
    """

    #: The longest single task step in wall time, in seconds.
    longest: float = 0.0
    #: The name of the task that took it (None if no task ran).
    longest_task: str | None = None
    #: How many task steps ran in all.
    steps: int = 0
    #: The most CPU time the event loop's thread spent in a single task step, in
    #: seconds. Unlike ``longest``, time the OS gave to other processes does not count.
    longest_cpu: float = 0.0
    #: The name of the task that took that step (None if no task ran).
    longest_cpu_task: str | None = None


@final
class _StepTimer(trio.abc.Instrument):
    def __init__(self, report: StallReport) -> None:
        self._report = report
        # The step that adds this instrument is already running: it counts from now.
        self._started = time.perf_counter()
        self._started_cpu = time.thread_time()

    def before_task_step(self, task: trio.lowlevel.Task) -> None:
        self._started = time.perf_counter()
        self._started_cpu = time.thread_time()

    def after_task_step(self, task: trio.lowlevel.Task) -> None:
        # Instruments run in the event loop's thread, so thread_time() is its CPU time.
        cpu = time.thread_time() - self._started_cpu
        took = time.perf_counter() - self._started
        report = self._report
        report.steps += 1
        if took > report.longest:
            report.longest = took
            report.longest_task = task.name
        if cpu > report.longest_cpu:
            report.longest_cpu = cpu
            report.longest_cpu_task = task.name


@contextmanager
def measure_stalls() -> Iterator[StallReport]:
    """Record the longest stretch any task held the event loop while the block ran.

    Use it inside ``trio.run`` (an async test, say) to assert that your protocol
    never starves the loop, whatever its peer sends::

        with measure_stalls() as stalls:
            with trio.move_on_after(0.5):
                await stream.receive_some()
        assert stalls.longest_cpu < 0.05, stalls

    Each step is measured in wall time (``longest``) and in CPU time of the event
    loop's thread (``longest_cpu``). Assert on ``longest_cpu`` in a test suite: it is
    what your code controls, and it holds on a busy CI machine, where the OS may
    preempt the test process in the middle of any step and inflate its wall time by
    tens of milliseconds. ``longest`` also sees a step that blocks in a system call
    (a blocking socket, ``time.sleep``), which uses no CPU; bound it generously
    (seconds) to catch a real hang without depending on an idle machine.

    Every task counts, the peer's included when it runs in the same loop; run a
    hostile peer in a thread or another process to measure your side alone (its CPU
    time is its own thread's, so it does not count either).
    """
    report = StallReport()
    timer = _StepTimer(report)
    trio.lowlevel.add_instrument(timer)
    try:
        yield report
    finally:
        trio.lowlevel.remove_instrument(timer)
