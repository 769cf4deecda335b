"""The trio driver: moves a :class:`~trio_tls._engine.TLSEngine`'s ciphertext over a trio Stream.

Theory of operation
-------------------
:mod:`trio_tls._engine` knows TLS and nothing about I/O; this module knows I/O and
nothing about TLS. Every operation becomes a loop in :meth:`Driver._drive`:

1. run one engine step (synchronous: no other task can touch the SSLObject meanwhile);
2. await *exactly one* thing that makes progress: send the step's ``to_send`` if there
   is any, otherwise, if the step wants input, receive from the transport;
3. stop if the step finished, else loop and look again.

Several tasks may be in ``_drive`` at once (one sending while another receives, both
helping a renegotiation along), so two rules keep them apart:

- **Sends are ordered.** Ciphertext must reach the wire in the order the engine
  produced it, so the transport send happens under a strict FIFO lock and the task
  that got ciphertext queues for that lock before it could be overtaken. Sending wins
  over receiving when a step needs both, because while we are sending someone else may
  receive the data we were waiting for; after one await we re-run the step.
- **Receives are shared.** A task that wants input first notes how many transport
  receives have completed, then takes the receive lock. If someone else received in
  the meantime it goes back to the engine instead of receiving again: a second receive
  could block forever waiting for data that will never come.

Two more rules hold whatever the peer sends:

- **Bounded work between schedule points.** A socket receive does not yield when data
  is already there, so a receive that follows one which did not yield is preceded by
  a schedule point: at most one receive is processed between two of them.
- **Bounded memory.** When the engine holds READ_AHEAD_LIMIT bytes of plaintext for
  the application, the loop does not read the transport until the application has
  taken some (:meth:`Driver._wait_for_room`).

The locks are :class:`~trio_tls._sync.FifoLock`, whose uncontended acquire does not
yield: the transport operation that follows is the checkpoint. Every operation is
still a checkpoint: ``_drive`` starts with ``checkpoint_if_cancelled`` and, if it
never awaited the transport, ends with ``cancel_shielded_checkpoint`` (shielded so
that data already decrypted is returned rather than lost to a cancellation).

Sending and receiving data are ``_drive`` with an early exit: the engine's
``encrypt``/``decrypt`` return bytes when that is all a step would hold, and when one
transport call finishes the job no loop is entered. Anything else (a renegotiation,
an error, a queued task) continues in the loop from the step already taken.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable
from typing import TypeVar, TypeVarTuple, cast

import trio
from trio.abc import Stream

from ._engine import _NEED_INPUT, Step, TLSEngine
from ._state import Op, StateMachine
from ._statistics import Counters
from ._sync import FifoLock
from ._wire import wire_for

T = TypeVar("T")
Ts = TypeVarTuple("Ts")

#: send_all encrypts at most this much at a time, so a huge ``data`` costs one chunk of
#: ciphertext in memory rather than a second copy of everything (16 records of 16 KiB).
SEND_CHUNK = 256 * 1024

#: How long a failing operation may spend delivering the fatal alert OpenSSL queued.
#: An alert is a few bytes and fits any socket buffer at once; the bound only matters
#: for a peer that stopped reading on a zero-buffer transport, which must not hang us.
ALERT_FLUSH_TIMEOUT = 1.0


class Driver:
    """The engine, the transport and the locks between them; :class:`SSLStream`'s base."""

    __slots__ = (
        "_counters",
        "_engine",
        "_linger_on_close",
        "_recv_count",
        "_recv_lock",
        "_room",
        "_send_lock",
        "_sm",
        "_wire",
    )

    def __init__(self, transport: Stream, engine: TLSEngine) -> None:
        self._engine = engine
        self._wire = wire_for(transport)
        self._sm = StateMachine()
        self._send_lock = FifoLock()
        self._recv_lock = FifoLock()
        self._recv_count = 0
        # Tasks waiting for the application to take read-ahead plaintext (created on
        # first use: almost no stream ever needs it).
        self._room: trio.lowlevel.ParkingLot | None = None
        self._counters = Counters()
        # A fatal alert went out: close with a lingering close (SocketWire.linger).
        self._linger_on_close = False

    # -- moving ciphertext ------------------------------------------------------------

    async def _send_wire(self, data: bytes) -> bool:
        """Send under the FIFO lock; True if that yielded to the scheduler."""
        lock = self._send_lock
        if not lock.try_acquire():
            await lock.acquire()
        try:
            # The system call first, awaiting only for what the kernel did not take:
            # most sends on a socket finish here without creating a coroutine.
            sent = self._wire.try_send(data)
            yielded = sent < len(data)
            if yielded:
                await self._wire.send_rest(data, sent)
        except BaseException:
            # An unknown amount reached the wire: the TLS stream cannot continue.
            self._sm.fail()
            raise
        finally:
            lock.release()
        counters = self._counters
        counters.wire_bytes_sent += len(data)
        counters.transport_sends += 1
        return yielded

    def _send_tickets_now(self) -> None:
        """Put the TLS 1.3 tickets held back by the handshake on the wire, if it takes
        them without waiting; otherwise they keep waiting for the next send.

        The engine holds tickets back because writing them can deadlock a zero-buffer
        transport against a client that is writing too. A socket with room in its
        send buffer cannot deadlock: the kernel takes them at once, as OpenSSL's own
        server sends them. The wire's non-blocking send answers honestly whether that
        is so (it takes nothing on a generic stream, such as a lockstep pair), and
        whatever it left over stays in front of the next ciphertext, in order. Sent
        now, a client that speaks first can have its session before it writes.
        """
        engine = self._engine
        if not engine.delayed or not self._send_lock.try_acquire():
            return
        try:
            sent = self._wire.try_send(engine.delayed)
        except trio.BrokenResourceError:
            sent = 0  # nothing was written; the next operation reports the failure
        finally:
            self._send_lock.release()
        if sent:
            engine.delayed = engine.delayed[sent:]
            self._counters.wire_bytes_sent += sent
            self._counters.transport_sends += 1

    async def _receive_after_queueing(self) -> bool:
        """Another task is receiving: queue, and skip our receive if theirs helped."""
        seen = self._recv_count
        await self._recv_lock.acquire()
        if seen != self._recv_count:
            self._recv_lock.release()
            return True  # someone else received while we queued: re-run the step first
        return await self._receive_locked()

    async def _receive_locked(self) -> bool:
        """Feed the engine one transport receive (receive lock held; released here)."""
        try:
            count, yielded = await self._wire.receive(self._engine)
        except trio.Cancelled:
            raise  # nothing was taken from the transport; the stream is intact
        except BaseException:
            self._sm.fail()
            raise
        finally:
            self._recv_lock.release()
        self._recv_count += 1
        counters = self._counters
        counters.wire_bytes_received += count
        counters.transport_receives += 1
        return yielded

    async def _flush_alert(self, data: bytes) -> None:
        """Best effort: deliver the alert for a failure the peer caused or must hear of.

        Every fatal alert goes out here, so this is where aclose() learns to close the
        lingering way: a peer still sending must read the alert, not a reset.
        """
        if not data:
            return
        self._linger_on_close = True
        with trio.move_on_after(ALERT_FLUSH_TIMEOUT):
            with contextlib.suppress(
                trio.BrokenResourceError, trio.ClosedResourceError, trio.BusyResourceError
            ):
                await self._send_wire(data)

    # -- the loop -------------------------------------------------------------------------

    async def _drive(self, what: str, operation: Callable[[*Ts], Step[T]], *args: *Ts) -> T:
        """Run ``operation`` until it finishes; see the theory of operation above."""
        await trio.lowlevel.checkpoint_if_cancelled()
        return await self._drive_even_if_cancelled(what, operation, *args)

    async def _drive_even_if_cancelled(
        self, what: str, operation: Callable[[*Ts], Step[T]], *args: *Ts
    ) -> T:
        """:meth:`_drive` without its opening cancellation check.

        The first step and the non-blocking send of its output run even under an
        expired deadline; only waiting (for the transport, for a lock) is cancelled.
        For close_notify: a close with no time left still says goodbye whenever the
        kernel takes the bytes at once.
        """
        step = operation(*args)
        result, yielded = await self._run_steps(step, False, False, what, operation, *args)
        if not yielded:
            await trio.lowlevel.cancel_shielded_checkpoint()
        return result

    async def _run_steps(
        self,
        step: Step[T],
        yielded: bool,
        spent: bool,
        what: str,
        operation: Callable[[*Ts], Step[T]],
        *args: *Ts,
    ) -> tuple[T, bool]:
        """The loop of :meth:`_drive`, from a step already taken.

        ``yielded``: the caller already yielded to the scheduler. ``spent``: the
        caller's last transport receive returned without yielding. Returns the
        operation's value and whether anything yielded; the caller owns the closing
        checkpoint.
        """
        while True:
            if step.error is not None:
                await self._flush_alert(step.to_send)
                self._sm.fail()
                raise trio.BrokenResourceError(f"TLS {what} failed: {step.error}") from step.error
            if step.to_send:
                yielded |= await self._send_wire(step.to_send)
            elif step.want_read:
                if self._engine.read_ahead_full:
                    await self._wait_for_room()
                    yielded = True
                else:
                    if spent:
                        # The last receive found data waiting and did not yield; a
                        # peer that keeps it that way must not keep us from yielding.
                        await trio.lowlevel.checkpoint()
                        yielded = True
                    if self._recv_lock.try_acquire():
                        spent = not await self._receive_locked()
                    else:
                        spent = not await self._receive_after_queueing()
                    yielded |= not spent
            if step.finished:
                # A finished step carries its operation's value (None for those
                # that return nothing), so this cast only undoes Step's default.
                return cast(T, step.result), yielded
            step = operation(*args)

    async def _wait_for_room(self) -> None:
        """Wait until the application has taken some read-ahead plaintext.

        The engine holds at most READ_AHEAD_LIMIT bytes for the application; past it,
        the transport is not read (backpressure) until a receive_some takes some. If
        the waiting task is the only reader (resumable_session, say), only its
        deadline ends the wait, which is what a full kernel buffer would do too.
        """
        if self._room is None:
            self._room = trio.lowlevel.ParkingLot()
        await self._room.park()

    # -- data, once the handshake is done ----------------------------------------------------

    async def _receive(self, max_bytes: int | None) -> bytes:
        """Decrypt what has arrived, receiving once from the transport if nothing has.

        The engine returns plaintext itself when a read simply succeeds, so the usual
        receive is one engine call, or two around one transport receive. Anything
        else (another task is receiving, ciphertext to send, an error) continues in
        the loop.
        """
        await trio.lowlevel.checkpoint_if_cancelled()
        engine = self._engine
        out = engine.decrypt(max_bytes)
        yielded = spent = False
        if out is _NEED_INPUT and self._recv_lock.try_acquire():
            yielded = await self._receive_locked()
            spent = not yielded
            out = engine.decrypt(max_bytes)
        if isinstance(out, bytes):
            data = out
        else:
            data, yielded = await self._run_steps(
                out, yielded, spent, "read", engine.read, max_bytes
            )
        if not yielded:
            await trio.lowlevel.cancel_shielded_checkpoint()
        self._counters.bytes_received += len(data)
        if self._room is not None:
            self._room.unpark_all()  # the application took plaintext: room to read ahead
        return data

    async def _send(self, data: bytes | bytearray | memoryview) -> None:
        """Encrypt and send ``data``; any failure after the first chunk was encrypted
        leaves the stream broken (some of it may be on the wire)."""
        await trio.lowlevel.checkpoint_if_cancelled()
        try:
            if type(data) is bytes and len(data) <= SEND_CHUNK:
                yielded = await self._send_chunk(data)
            else:
                yielded = await self._send_chunks(data)
        except BaseException:
            # The peer may hold a truncated message: letting a later send_all or a
            # clean close_notify follow it would corrupt the protocol above us.
            self._sm.fail()
            raise
        if not yielded:
            await trio.lowlevel.cancel_shielded_checkpoint()

    async def _send_chunk(self, data: bytes | memoryview) -> bool:
        """Encrypt and send one chunk; True if that yielded to the scheduler.

        The engine returns the ciphertext itself when the write simply succeeds, and
        the kernel usually takes all of it at once, so the usual send awaits nothing.
        """
        engine = self._engine
        out = engine.encrypt(data)
        if isinstance(out, bytes):
            yielded = await self._send_wire(out)
        else:
            _, yielded = await self._run_steps(out, False, False, "write", engine.write, data)
        self._counters.bytes_sent += len(data)
        return yielded

    async def _send_chunks(self, data: bytes | bytearray | memoryview) -> bool:
        """Send ``data`` SEND_CHUNK bytes at a time; True if the last chunk yielded.

        Between two chunks the scheduler runs unless the transport already made it
        run: a send that the kernel takes at once does not yield, and a large
        ``data`` must not hold the event loop for its whole length.
        """
        yielded = True
        with memoryview(data) as view, view.cast("B") as flat:
            for start in range(0, flat.nbytes, SEND_CHUNK):
                if not yielded:
                    await trio.lowlevel.checkpoint()
                self._sm.check(Op.SEND)
                yielded = await self._send_chunk(flat[start : start + SEND_CHUNK])
        return yielded
