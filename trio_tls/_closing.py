"""How an SSLStream closes: :meth:`Closing.aclose` and the goodbye it says first.

Kept apart from :mod:`trio_tls._stream` because closing has rules of its own, each
with its reason below: close_notify is always attempted but never waited for without
bound; ``close_timeout`` bounds the whole close; after a fatal alert a socket is
closed the lingering way (:meth:`trio_tls._wire.SocketWire.linger`); and the kernel's
receive buffer is emptied first so that the close sends FIN, not a reset.
"""

from __future__ import annotations

import contextlib
import math

import trio
from trio.abc import Stream

from ._driver import ALERT_FLUSH_TIMEOUT, Driver
from ._state import State

#: Upper bound on sending close_notify in aclose() when no ``close_timeout`` is given
#: (with one, that bounds the whole close). trio waits forever here, so a peer that
#: stopped reading holds its aclose(); after this long we close anyway.
CLOSE_NOTIFY_SEND_TIMEOUT = 5.0


class Closing(Driver):
    """The closing half of :class:`~trio_tls.SSLStream`, which provides the rest."""

    __slots__ = ()
    _close_timeout: float | None
    transport_stream: Stream

    async def _ensure_handshake(self) -> bool:
        raise NotImplementedError  # SSLStream's

    async def aclose(self) -> None:
        """Close the TLS layer, then the transport.

        Unless ``https_compatible``, this first sends close_notify (after finishing the
        handshake if it has not run). It does not wait for the peer's reply unless
        ``close_timeout`` is set, and then all of it, sending included, takes at most
        that long. After a failure that sent the peer a fatal alert, a socket is
        closed the lingering way (shut down, then read for up to ``LINGER_TIMEOUT``, or
        what is left of ``close_timeout`` if that is less), so that a peer still
        sending reads the alert instead of a reset. Whatever happens, cancellation
        and failures included, the transport is closed when this returns or raises.
        """
        # The user's bound is for the whole close, whichever way it goes: every wait
        # below (handshake, close_notify, the reply, held tickets, the lingering
        # close) ends at this deadline at the latest.
        timeout = self._close_timeout
        deadline = math.inf if timeout is None else trio.current_time() + timeout
        state = self._sm.state
        if state is State.CLOSED:
            await trio.lowlevel.checkpoint()
            return
        if state is State.BROKEN or self._engine.ragged_eof_ok:
            await self._close_without_goodbye(deadline)
            return
        try:
            # Cancelled already (trio.aclose_forcefully, or the caller's deadline has
            # passed): no goodbye. close_notify would tell the peer that all data
            # came, which a caller aborting mid-protocol cannot know.
            await trio.lowlevel.checkpoint_if_cancelled()
            if timeout is None:
                await self._say_goodbye(CLOSE_NOTIFY_SEND_TIMEOUT)
            else:
                with trio.move_on_at(deadline):
                    if await self._say_goodbye(math.inf):
                        await self._await_peer_close_notify()
        except BaseException:
            self._close_transport_now()
            await trio.aclose_forcefully(self.transport_stream)
            raise
        self._close_transport_now()
        await self.transport_stream.aclose()

    def _close_transport_now(self) -> None:
        """The stream is closed; empty the kernel's receive buffer so that closing
        the socket sends FIN, not a reset (SocketWire.discard_unread)."""
        self._sm.move(State.CLOSED)
        self._wire.discard_unread()

    async def _close_without_goodbye(self, deadline: float) -> None:
        # https_compatible: no close_notify. Session tickets still held back (a TLS
        # 1.3 server that never wrote) are delivered first, bounded, so that the
        # client can resume; trio drops them, and its clients never can.
        try:
            tickets = self._engine.take_delayed()
            if tickets and self._sm.state is not State.BROKEN:
                with (
                    trio.move_on_at(min(trio.current_time() + ALERT_FLUSH_TIMEOUT, deadline)),
                    contextlib.suppress(trio.BrokenResourceError, trio.ClosedResourceError),
                ):
                    await self._send_wire(tickets)
            if self._linger_on_close:
                # What the linger read and dropped came from the transport all the
                # same: statistics() counts it.
                self._counters.wire_bytes_received += await self._wire.linger(deadline)
        finally:
            self._close_transport_now()
            await self.transport_stream.aclose()

    async def _say_goodbye(self, send_bound: float) -> bool:
        """Finish the handshake and send close_notify; False if the peer is gone.

        close_notify is always attempted: the first transport send is the wire's
        non-blocking one and runs even when no time is left (``close_timeout=0``),
        so whenever the kernel has room, the peer reads a clean end of stream
        rather than a possible truncation. Only waiting for room is bounded, by
        ``send_bound`` and by the caller's scope.
        """
        await self._ensure_handshake()
        if self._sm.state is State.SEND_CLOSED:
            return True
        with trio.move_on_after(send_bound):
            # The peer may have closed already; two well-behaved programs can race
            # here, so a failure to deliver our close_notify is not an error.
            try:
                await self._drive_even_if_cancelled("close_notify", self._engine.send_close_notify)
            except trio.BrokenResourceError:
                return False
        return True

    async def _await_peer_close_notify(self) -> None:
        """Read (and discard) until the peer's close_notify; bounded by the caller."""
        try:
            while not self._engine.peer_closed:
                await self._drive("close", self._engine.read, None)
        except trio.BrokenResourceError:
            return  # the peer hung up without close_notify: nothing more to wait for
