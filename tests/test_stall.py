"""measure_stalls(): the testing kit's meter for the longest time one task held the loop."""

from __future__ import annotations

import time

import trio

from trio_tls.testing import measure_stalls

#: What a hog holds the loop for: past the 50 ms budget the kit's docs suggest.
HOG = 0.06
#: A generous wall-clock bound on a quiet block, far above what preemption causes.
HANG = 3.0


def _spin(cpu_seconds: float) -> None:
    """Keep the CPU busy for ``cpu_seconds`` of this thread's CPU time (and at most HANG
    seconds of wall time, so a starved machine cannot make it run on)."""
    end_cpu = time.thread_time() + cpu_seconds
    give_up = time.monotonic() + HANG
    while time.thread_time() < end_cpu and time.monotonic() < give_up:
        pass


async def test_measure_stalls_names_the_task_that_held_the_loop() -> None:
    async def sleeper() -> None:
        await trio.lowlevel.checkpoint()
        time.sleep(HOG)  # noqa: ASYNC251 (blocking the whole loop is the point)

    async def spinner() -> None:
        await trio.lowlevel.checkpoint()
        _spin(HOG)

    async def polite() -> None:
        for _ in range(10):
            await trio.sleep(0.001)

    with measure_stalls() as stalls:
        async with trio.open_nursery() as nursery:
            nursery.start_soon(sleeper, name="sleeper")
            nursery.start_soon(spinner, name="spinner")
            nursery.start_soon(polite, name="polite")
    # Wall time sees both hogs; CPU time only the one that worked, however long the
    # OS kept it or the sleeper off the CPU.
    assert stalls.longest >= HOG
    assert stalls.longest_task in {"sleeper", "spinner"}
    assert stalls.longest_cpu >= HOG
    assert stalls.longest_cpu_task == "spinner"
    assert stalls.steps >= 13


async def test_a_blocking_call_holds_the_loop_in_wall_time_only() -> None:
    async def sleeper() -> None:
        time.sleep(HOG)  # noqa: ASYNC251 (blocking the whole loop is the point)

    with measure_stalls() as stalls:
        async with trio.open_nursery() as nursery:
            nursery.start_soon(sleeper, name="sleeper")
    assert stalls.longest >= HOG and stalls.longest_task == "sleeper"
    assert stalls.longest_cpu < HOG / 2, "sleeping uses no CPU"


async def test_a_quiet_block_holds_the_loop_briefly() -> None:
    with measure_stalls() as quiet:
        await trio.sleep(0.01)
    # CPU time for the budget: the wall time of a step includes any preemption.
    assert quiet.longest_cpu < 0.05 and quiet.longest_cpu_task is not None
    assert quiet.longest < HANG and quiet.longest_task is not None
    assert quiet.steps >= 1
