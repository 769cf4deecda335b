"""measure_stalls(): the testing kit's meter for the longest time one task held the loop."""

from __future__ import annotations

import time

import trio

from trio_tls.testing import measure_stalls


async def test_measure_stalls_names_the_task_that_held_the_loop() -> None:
    async def hog() -> None:
        await trio.lowlevel.checkpoint()
        time.sleep(0.06)  # noqa: ASYNC251 (blocking the whole loop is the point)

    async def polite() -> None:
        for _ in range(10):
            await trio.sleep(0.001)

    with measure_stalls() as stalls:
        async with trio.open_nursery() as nursery:
            nursery.start_soon(hog, name="hog")
            nursery.start_soon(polite, name="polite")
    assert stalls.longest >= 0.06
    assert stalls.longest_task == "hog"
    assert stalls.steps >= 12

    with measure_stalls() as quiet:
        await trio.sleep(0.01)
    assert quiet.longest < 0.05 and quiet.longest_task is not None
