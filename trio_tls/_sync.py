"""The two synchronisation tools the driver needs, and trio does not offer as such."""

from __future__ import annotations

from collections.abc import Awaitable, Callable

import trio


class FifoLock:
    """A strict FIFO lock whose uncontended ``acquire`` returns without yielding.

    ``release`` hands the lock straight to the longest waiter, so a newcomer can never
    overtake a queued task; that is what keeps ciphertext in engine order. Not
    yielding when free is what lets a send or receive be the operation's only
    schedule point (the transport call that follows is the checkpoint).
    """

    __slots__ = ("_held", "_lot")

    def __init__(self) -> None:
        self._held = False
        self._lot: trio.lowlevel.ParkingLot | None = None

    def try_acquire(self) -> bool:
        """Take the lock if it is free, without an await (and without a coroutine)."""
        if self._held:
            return False
        self._held = True
        return True

    async def acquire(self) -> None:
        if not self._held:
            self._held = True
            return
        if self._lot is None:
            self._lot = trio.lowlevel.ParkingLot()
        await self._lot.park()  # on wake-up, release() has made us the owner

    def release(self) -> None:
        if self._lot:
            self._lot.unpark(count=1)
        else:
            self._held = False


class Once:
    """Runs an async function at most once; every caller shares its outcome.

    The first :meth:`ensure` runs it; later calls wait for that run to end. If it
    failed, the first caller gets the error itself and every waiter gets
    ``on_failure(error)`` raised. trio's own ``_Once`` leaves waiters hanging when the run fails; here the
    event is set either way.
    """

    __slots__ = ("_done", "_error", "_function", "_on_failure")

    def __init__(
        self,
        function: Callable[[], Awaitable[None]],
        on_failure: Callable[[BaseException], BaseException],
    ) -> None:
        self._function = function
        self._on_failure = on_failure
        self._done: trio.Event | None = None
        self._error: BaseException | None = None

    async def ensure(self) -> None:
        if self._done is None:
            done = self._done = trio.Event()
            try:
                await self._function()
            except BaseException as exc:
                self._error = exc
                raise
            finally:
                done.set()
            return
        await self._done.wait()
        if self._error is not None:
            raise self._on_failure(self._error)
