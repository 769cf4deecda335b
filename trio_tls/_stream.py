"""The trio driver: :class:`SSLStream` moves an engine's ciphertext over a trio Stream.

Theory of operation
-------------------
:mod:`trio_tls._engine` knows TLS and nothing about I/O; this module knows I/O and
nothing about TLS. Every public operation becomes a loop in :meth:`SSLStream._drive`:

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

The locks are :class:`_FifoLock`, whose uncontended acquire does not yield: the
transport operation that follows is the checkpoint. Every public method is still a
checkpoint: ``_drive`` starts with ``checkpoint_if_cancelled`` and, if it never
awaited the transport, ends with ``cancel_shielded_checkpoint`` (shielded so that
data already decrypted is returned rather than lost to a cancellation).

After the handshake, ``send_all`` and ``receive_some`` take a fast path that is
``_drive`` unrolled for the common case (the engine's ``encrypt``/``decrypt`` returned
bytes, the lock was free): it keeps the same checkpoints, locks and state checks, and
hands anything unusual (a renegotiation, an error, a queued task) to the general loop
(``_drive_from``) at the point it reached. notes/benchmarks.md measures it against the
engine with no driver at all.

States live in :mod:`trio_tls._state`; this module asks it whether an operation may
start and tells it when something happened. Errors are split by blame: misuse raises
``ValueError``/``TypeError``/``BusyResourceError``/``NeedHandshakeError``; anything
the peer or the transport did raises ``trio.BrokenResourceError`` chained to the cause.
"""

from __future__ import annotations

import contextlib
import operator
import ssl
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Generic, Literal, TypeVar, TypeVarTuple, cast, final, overload

import idna
import trio
from trio.abc import HalfCloseableStream, Stream

from ._engine import _NEED_INPUT, Step, TLSEngine, _is_eof
from ._exceptions import NeedHandshakeError, NoSessionTicketError, PostHandshakeAuthError
from ._state import Op, State, StateMachine
from ._wire import wire_for

T = TypeVar("T")
Ts = TypeVarTuple("Ts")
T_Stream = TypeVar("T_Stream", bound=Stream)

# A module constant, so the hot paths test the state with one global lookup.
_OPEN = State.OPEN

#: send_all encrypts at most this much at a time, so a huge ``data`` costs one chunk of
#: ciphertext in memory rather than a second copy of everything (16 records of 16 KiB).
SEND_CHUNK = 256 * 1024

#: How long a failing operation may spend delivering the fatal alert OpenSSL queued.
#: An alert is a few bytes and fits any socket buffer at once; the bound only matters
#: for a peer that stopped reading on a zero-buffer transport, which must not hang us.
ALERT_FLUSH_TIMEOUT = 1.0

#: Upper bound on sending close_notify in aclose() when ``close_timeout`` is None.
#: trio waits forever here; a peer that stopped reading would then hold aclose()
#: (see TLS-PITFALLS 5). After this long the transport is closed anyway.
CLOSE_NOTIFY_SEND_TIMEOUT = 5.0


def _encode_hostname(hostname: str | bytes | None) -> str | None:
    """IDNA 2008 (UTS 46) like trio, which avoids the stdlib's IDNA 2003 (bpo-17305)."""
    if hostname is None:
        return None
    if isinstance(hostname, bytes):
        return hostname.decode("ascii")
    try:
        hostname.encode("ascii")
    except UnicodeEncodeError:
        return idna.encode(hostname, uts46=True).decode("ascii")
    return hostname


def _root_cause(exc: BaseException) -> BaseException:
    if isinstance(exc, trio.BrokenResourceError) and exc.__cause__ is not None:
        return exc.__cause__
    return exc


class _FifoLock:
    """A strict FIFO lock whose uncontended ``acquire`` returns without yielding.

    ``release`` hands the lock straight to the longest waiter, so a newcomer can never
    overtake a queued task; that is what keeps ciphertext in engine order.
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


@final
@dataclass(frozen=True, slots=True)
class TLSStatistics:
    """A snapshot of one :class:`SSLStream`, from :meth:`SSLStream.statistics`."""

    #: Negotiated protocol, e.g. ``"TLSv1.3"``; None before the handshake.
    version: str | None
    #: Negotiated cipher suite name; None before the handshake.
    cipher: str | None
    #: Negotiated ALPN protocol, or None.
    alpn_protocol: str | None
    #: Whether the handshake resumed an earlier session.
    session_reused: bool
    #: Seconds from the handshake's first step to its completion; None before.
    handshake_duration: float | None
    #: Plaintext bytes accepted by send_all / returned by receive_some.
    bytes_sent: int
    bytes_received: int
    #: Ciphertext bytes written to / read from the transport (handshake included).
    wire_bytes_sent: int
    wire_bytes_received: int
    #: Calls made to the transport's send_all / receive_some.
    transport_sends: int
    transport_receives: int


@final
class SSLStream(HalfCloseableStream, Generic[T_Stream]):
    """TLS over any trio :class:`~trio.abc.Stream`: a drop-in for :class:`trio.SSLStream`.

    Args:
      transport_stream: the stream to encrypt, usually a :class:`trio.SocketStream`.
      ssl_context: the :class:`ssl.SSLContext` to use.
      server_hostname: on a client, the name to send (SNI) and to check the server's
          certificate against when ``ssl_context.check_hostname`` is on.
      server_side: True for the server end.
      https_compatible: True for HTTPS-style TLS: a ragged EOF (transport closed with
          no close_notify) reads as ``b""`` and :meth:`aclose` sends no close_notify.
          False (the default) follows the TLS standard: a ragged EOF raises
          :exc:`trio.BrokenResourceError`, since it may be a truncation attack.
      session: on a client, an :class:`ssl.SSLSession` from an earlier connection to
          resume (trio_tls extension).
      handshake_timeout: seconds the handshake may take, or None for no limit. When it
          runs out the handshake raises :exc:`trio.BrokenResourceError` whose
          ``__cause__`` is :exc:`trio.TooSlowError` (trio_tls extension).
      close_timeout: None (the default) makes :meth:`aclose` send close_notify without
          waiting for the peer's reply, as trio does. A number makes it also wait that
          many seconds for the peer's close_notify before closing the transport
          (trio_tls extension). Sending close_notify itself is bounded separately
          (``CLOSE_NOTIFY_SEND_TIMEOUT``), so even ``close_timeout=0`` says goodbye.

    Attributes:
      transport_stream: the wrapped stream; None once :meth:`unwrap` has handed it
          back, as with trio.
    """

    __slots__ = (
        "_close_timeout",
        "_engine",
        "_handshake_done",
        "_handshake_error",
        "_handshake_seconds",
        "_handshake_timeout",
        "_https_compatible",
        "_receiving",
        "_recv_count",
        "_recv_lock",
        "_room",
        "_send_lock",
        "_sending",
        "_sm",
        "_stats",
        "_wire",
        "transport_stream",
    )

    def __init__(
        self,
        transport_stream: T_Stream,
        ssl_context: ssl.SSLContext,
        *,
        server_hostname: str | bytes | None = None,
        server_side: bool = False,
        https_compatible: bool = False,
        session: ssl.SSLSession | None = None,
        handshake_timeout: float | None = None,
        close_timeout: float | None = None,
    ) -> None:
        if not server_side and server_hostname is None and ssl_context.check_hostname:
            # wrap_bio() accepts this and then verifies no hostname at all (only
            # wrap_socket() refuses it), so the certificate of *any* name would pass.
            raise ValueError(
                "check_hostname requires server_hostname: pass the name the server's "
                "certificate must match, or turn off ssl_context.check_hostname"
            )
        self.transport_stream: T_Stream = transport_stream
        self._wire = wire_for(transport_stream)
        self._engine = TLSEngine(
            ssl_context,
            server_side=server_side,
            server_hostname=_encode_hostname(server_hostname),
            session=session,
        )
        self._https_compatible = https_compatible
        self._engine.ragged_eof_ok = https_compatible
        self._handshake_timeout = handshake_timeout
        self._close_timeout = close_timeout
        self._sm = StateMachine()
        self._handshake_done: trio.Event | None = None
        self._handshake_error: BaseException | None = None
        self._handshake_seconds: float | None = None
        self._send_lock = _FifoLock()
        self._recv_lock = _FifoLock()
        self._recv_count = 0
        # Tasks waiting for the application to take read-ahead plaintext (created on
        # first use: almost no stream ever needs it).
        self._room: trio.lowlevel.ParkingLot | None = None
        self._sending = False
        self._receiving = False
        # [bytes_sent, bytes_received, wire_sent, wire_received, sends, receives]:
        # one list, so the hot paths update counters without attribute lookups.
        self._stats = [0, 0, 0, 0, 0, 0]

    # -- the forwarded ssl.SSLObject interface -----------------------------------------

    @property
    def context(self) -> ssl.SSLContext:
        return self._engine.obj.context

    @context.setter
    def context(self, value: ssl.SSLContext) -> None:
        self._engine.obj.context = value

    @property
    def server_side(self) -> bool:
        return self._engine.obj.server_side

    @property
    def server_hostname(self) -> str | None:
        return self._engine.obj.server_hostname

    @property
    def session(self) -> ssl.SSLSession | None:
        return self._engine.obj.session

    @session.setter
    def session(self, value: ssl.SSLSession | None) -> None:
        # trio forwards this assignment to the SSLObject, which accepts it before the
        # handshake; kept so that trio code resuming sessions this way runs unchanged.
        self._engine.obj.session = value

    @property
    def session_reused(self) -> bool:
        return self._after_handshake("session_reused").session_reused

    @overload
    def getpeercert(self, binary_form: Literal[False] = ...) -> dict[str, Any] | None: ...
    @overload
    def getpeercert(self, binary_form: Literal[True]) -> bytes | None: ...
    @overload
    def getpeercert(self, binary_form: bool) -> dict[str, Any] | bytes | None: ...
    def getpeercert(self, binary_form: bool = False) -> dict[str, Any] | bytes | None:
        return self._after_handshake("getpeercert").getpeercert(binary_form)

    def selected_npn_protocol(self) -> str | None:
        return self._after_handshake("selected_npn_protocol").selected_npn_protocol()

    def selected_alpn_protocol(self) -> str | None:
        return self._after_handshake("selected_alpn_protocol").selected_alpn_protocol()

    def cipher(self) -> tuple[str, str, int] | None:
        return self._after_handshake("cipher").cipher()

    def shared_ciphers(self) -> list[tuple[str, str, int]] | None:
        return self._after_handshake("shared_ciphers").shared_ciphers()

    def compression(self) -> str | None:
        return self._after_handshake("compression").compression()

    def get_channel_binding(self, cb_type: str = "tls-unique") -> bytes | None:
        return self._after_handshake("get_channel_binding").get_channel_binding(cb_type)

    def version(self) -> str | None:
        return self._after_handshake("version").version()

    def pending(self) -> int:
        return self._engine.obj.pending()

    def _after_handshake(self, name: str) -> ssl.SSLObject:
        if self._handshake_seconds is None:
            raise NeedHandshakeError(f"call do_handshake() before calling {name!r}")
        return self._engine.obj

    def statistics(self) -> TLSStatistics:
        """Counters and negotiated parameters; cheap enough to call often."""
        obj = self._engine.obj
        done = self._handshake_seconds is not None
        cipher = obj.cipher() if done else None
        sent, received, wire_sent, wire_received, sends, receives = self._stats
        return TLSStatistics(
            version=obj.version() if done else None,
            cipher=cipher[0] if cipher else None,
            alpn_protocol=obj.selected_alpn_protocol() if done else None,
            session_reused=obj.session_reused if done else False,
            handshake_duration=self._handshake_seconds,
            bytes_sent=sent,
            bytes_received=received,
            wire_bytes_sent=wire_sent,
            wire_bytes_received=wire_received,
            transport_sends=sends,
            transport_receives=receives,
        )

    # -- moving ciphertext ------------------------------------------------------------

    async def _send_wire(self, data: bytes) -> bool:
        """Send under the FIFO lock; True if that yielded to the scheduler."""
        lock = self._send_lock
        if not lock.try_acquire():
            await lock.acquire()
        try:
            if self._engine.delayed:
                data = self._engine.take_delayed() + data
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
        stats = self._stats
        stats[2] += len(data)
        stats[4] += 1
        return yielded

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
        stats = self._stats
        stats[3] += count
        stats[5] += 1
        return yielded

    async def _flush_alert(self, data: bytes) -> None:
        """Best effort: deliver the alert for a failure the peer caused or must hear of."""
        if not data and not self._engine.delayed:
            return
        with trio.move_on_after(ALERT_FLUSH_TIMEOUT):
            with contextlib.suppress(
                trio.BrokenResourceError, trio.ClosedResourceError, trio.BusyResourceError
            ):
                await self._send_wire(data)

    async def _drive(self, what: str, operation: Callable[[*Ts], Step[T]], *args: *Ts) -> T:
        """Run ``operation`` until it finishes; see the theory of operation above."""
        await trio.lowlevel.checkpoint_if_cancelled()
        return await self._drive_from(operation(*args), False, what, operation, *args)

    async def _drive_from(
        self,
        step: Step[T],
        yielded: bool,
        what: str,
        operation: Callable[[*Ts], Step[T]],
        *args: *Ts,
        spent: bool = False,
    ) -> T:
        """:meth:`_drive` from a step already taken (by a fast path, say).

        ``spent``: the caller's last transport receive returned without yielding.
        """
        result, yielded = await self._run_steps(step, yielded, spent, what, operation, *args)
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
        """The loop of :meth:`_drive`, without its closing checkpoint.

        Returns the operation's value and whether the loop yielded to the scheduler.

        Bounded work between schedule points: a socket receive does not yield when
        data is already there, so a peer that keeps the socket readable with records
        that never finish the operation (tickets, data while we wait for a
        certificate, a record trickled in pieces) would keep this loop from ever
        yielding, freezing every task and deadline in the process. So a receive that
        follows one that did not yield is preceded by a schedule point: at most one
        receive (RECEIVE_CHUNK of ciphertext) is processed between two of them.
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

    def _made_room(self) -> None:
        if self._room is not None:
            self._room.unpark_all()

    # -- the handshake ------------------------------------------------------------------

    async def _ensure_handshake(self) -> None:
        state = self._sm.state
        if state is State.IDLE:
            await self._handshake()
        elif state is State.HANDSHAKING:
            await self._wait_for_other_handshake()

    async def _wait_for_other_handshake(self) -> None:
        # trio leaves this waiter hanging when the other task's handshake fails; here
        # the event is set on failure too, and every waiter gets the same cause.
        assert self._handshake_done is not None
        await self._handshake_done.wait()
        if self._handshake_error is not None:
            cause = _root_cause(self._handshake_error)
            raise trio.BrokenResourceError(f"the TLS handshake failed: {cause!r}") from cause

    async def _handshake(self) -> None:
        self._sm.move(State.HANDSHAKING)
        done = self._handshake_done = trio.Event()
        started = time.perf_counter()
        try:
            await self._handshake_within_deadline()
        except BaseException as exc:
            self._handshake_error = exc
            self._sm.fail()
            raise
        else:
            self._handshake_seconds = time.perf_counter() - started
            if self._sm.state is State.HANDSHAKING:
                self._sm.move(State.OPEN)
        finally:
            done.set()

    async def _handshake_within_deadline(self) -> None:
        if self._handshake_timeout is None:
            await self._drive("handshake", self._engine.handshake)
            return
        with trio.move_on_after(self._handshake_timeout) as scope:
            await self._drive("handshake", self._engine.handshake)
        if scope.cancelled_caught:  # _handshake() marks the stream broken
            slow = trio.TooSlowError(
                f"the TLS handshake did not finish within {self._handshake_timeout} s"
            )
            raise trio.BrokenResourceError(str(slow)) from slow

    async def do_handshake(self) -> None:
        """Ensure that the initial handshake has completed.

        It runs implicitly on the first :meth:`send_all` or :meth:`receive_some`;
        calling it explicitly lets you inspect the connection (:meth:`version`,
        :meth:`getpeercert` ...) first. If another task is already handshaking, this
        waits for it; if that handshake fails, every waiting task gets the failure.

        .. warning:: If this method is cancelled, the stream is left broken, and every
           later call raises :exc:`trio.BrokenResourceError`.
        """
        self._sm.check(Op.HANDSHAKE)
        if self._sm.state in (State.IDLE, State.HANDSHAKING):
            await self._ensure_handshake()
        else:
            await trio.lowlevel.checkpoint()

    def _https_eof(self, exc: trio.BrokenResourceError) -> bool:
        """Whether an https_compatible stream should read ``exc`` as a clean EOF."""
        cause = exc.__cause__
        return self._https_compatible and (
            _is_eof(cause)
            # EOF during the handshake sometimes surfaces as SSLSyscallError.
            or (self._handshake_seconds is None and isinstance(cause, ssl.SSLSyscallError))
        )

    # -- data -----------------------------------------------------------------------------

    async def receive_some(self, max_bytes: int | None = None) -> bytes:
        """Receive and decrypt some data; ``b""`` at end of stream.

        See :meth:`trio.abc.ReceiveStream.receive_some`. With ``max_bytes=None``,
        every complete record already received is returned in one call.

        .. warning:: Cancelled during the handshake or a renegotiation, it leaves the
           stream broken. Cancelled at any other point, nothing is lost.
        """
        self._claim_receiving()
        try:
            open_ = self._sm.state is _OPEN
            if not open_:
                self._sm.check(Op.RECEIVE)
            if max_bytes is not None:
                max_bytes = operator.index(max_bytes)
                if max_bytes < 1:
                    raise ValueError("max_bytes must be >= 1")
            if open_:
                data = await self._receive_open(max_bytes)
            elif self._handshake_seconds is None:
                data = await self._receive_first(max_bytes)
            else:
                data = await self._drive("read", self._engine.read, max_bytes)
            self._stats[1] += len(data)
            self._made_room()
            return data
        finally:
            self._receiving = False

    async def _receive_open(self, max_bytes: int | None) -> bytes:
        """receive_some's hot path after the handshake: :meth:`_drive` unrolled for a read.

        The engine returns plaintext itself when a read simply succeeds, so the usual
        receive is one engine call, or two around one transport receive. Anything else
        (another task is receiving, ciphertext to send, an error) continues in the
        general loop. A ragged EOF in https mode is the engine's business by now.
        """
        await trio.lowlevel.checkpoint_if_cancelled()
        engine = self._engine
        out = engine.decrypt(max_bytes)
        yielded = spent = False
        if out is _NEED_INPUT and self._recv_lock.try_acquire():
            yielded = await self._receive_locked()
            spent = not yielded
            out = engine.decrypt(max_bytes)
        if not isinstance(out, bytes):
            return await self._drive_from(out, yielded, "read", engine.read, max_bytes, spent=spent)
        if not yielded:
            await trio.lowlevel.cancel_shielded_checkpoint()
        return out

    async def _receive_first(self, max_bytes: int | None) -> bytes:
        try:
            await self._ensure_handshake()
            data = await self._drive("read", self._engine.read, max_bytes)
        except trio.BrokenResourceError as exc:
            if not self._https_eof(exc):
                raise
            # A ragged EOF during the handshake is how an HTTPS peer hangs up early.
            await trio.lowlevel.checkpoint()
            return b""
        return data

    async def _read_ahead_until(self, ready: Callable[[], bool]) -> bool:
        """Read until ``ready()``, keeping data for receive_some; False at end of stream."""
        return await self._drive("read", self._engine.read_ahead_until, ready)

    def _claim_sending(self) -> None:
        if self._sending:
            raise trio.BusyResourceError("another task is currently sending data on this SSLStream")
        self._sending = True

    def _claim_receiving(self, what: str | None = None) -> None:
        """``what``: the extension method that reads on the caller's behalf."""
        if self._receiving:
            message = "another task is currently receiving data on this SSLStream"
            if what is not None:
                message += f"; {what} reads too, so call it when no receive_some() is running"
            raise trio.BusyResourceError(message)
        self._receiving = True

    async def send_all(self, data: bytes | bytearray | memoryview) -> None:
        """Encrypt ``data`` and send it; see :meth:`trio.abc.SendStream.send_all`.

        .. warning:: If this method is cancelled, the stream is left broken: an unknown
           part of the data went out. Every later call raises
           :exc:`trio.BrokenResourceError`. (A cancellation noticed before anything was
           encrypted leaves the stream as it was.)
        """
        self._claim_sending()
        try:
            if self._sm.state is not _OPEN:
                self._sm.check(Op.SEND)
                await self._ensure_handshake()
            if not data:
                # SSLObject.write(b"") would mean something else entirely (EOF).
                await trio.lowlevel.checkpoint()
                return
            await trio.lowlevel.checkpoint_if_cancelled()
            try:
                if type(data) is bytes and len(data) <= SEND_CHUNK:
                    yielded = await self._send_chunk(data)
                else:
                    yielded = await self._send_chunks(data)
            except BaseException:
                # Some of the data may be on the wire: the peer would see a truncated
                # message followed by whatever we sent next, so nothing may follow.
                self._sm.fail()
                raise
            if not yielded:
                await trio.lowlevel.cancel_shielded_checkpoint()
        finally:
            self._sending = False

    async def _send_chunk(self, data: bytes | memoryview) -> bool:
        """Encrypt and send one chunk; True if that yielded to the scheduler.

        The engine returns the ciphertext itself when the write simply succeeds, and
        the kernel usually takes all of it at once, so the usual send awaits nothing.
        A renegotiation or an error continues in the general loop.
        """
        engine = self._engine
        out = engine.encrypt(data)
        if isinstance(out, bytes):
            yielded = await self._send_wire(out)
        else:
            _, yielded = await self._run_steps(out, False, False, "write", engine.write, data)
        self._stats[0] += len(data)
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

    async def wait_send_all_might_not_block(self) -> None:
        """See :meth:`trio.abc.SendStream.wait_send_all_might_not_block`."""
        self._claim_sending()
        try:
            self._sm.check(Op.WAIT_SEND)
            # A task in receive_some may be sending handshake data on the transport;
            # wait for it through the lock rather than report a conflict that the
            # caller did not create.
            await self._send_lock.acquire()
            try:
                await self.transport_stream.wait_send_all_might_not_block()
            finally:
                self._send_lock.release()
        finally:
            self._sending = False

    # -- sessions and client certificates (trio_tls extensions) ----------------------------

    async def resumable_session(self) -> ssl.SSLSession:
        """Return a session that can resume this connection, waiting for it if needed.

        Pass it as ``SSLStream(..., session=...)`` on the next connection to the same
        server. Under TLS 1.2 the session is ready when the handshake is. Under TLS 1.3
        the server's NewSessionTicket arrives *after* the handshake and only a read
        processes it, so this reads until one has arrived. Application data read
        meanwhile is kept and returned by the next :meth:`receive_some`; nothing is
        lost. Bound the wait the trio way::

            with trio.fail_after(5):
                session = await stream.resumable_session()

        trio_tls servers send their tickets with their first write or when they close
        (never right after the handshake: see notes/decisions.md).

        Raises:
          NoSessionTicketError: the server closed the connection before sending one.
          trio.BusyResourceError: another task is in :meth:`receive_some`.
          ValueError: on a server-side stream.
        """
        if self.server_side:
            raise ValueError("only a client stream has a session to resume")
        self._claim_receiving("resumable_session()")
        try:
            self._sm.check(Op.RECEIVE)
            await self._ensure_handshake()
            if not await self._read_ahead_until(self._engine.has_resumable_session):
                raise NoSessionTicketError(
                    "the server closed the connection before sending a session ticket"
                )
            session = self._engine.obj.session
            assert session is not None
            await trio.lowlevel.checkpoint()
            return session
        finally:
            self._receiving = False

    async def verify_client_post_handshake(self) -> None:
        """Ask the client for its certificate now (TLS 1.3 post-handshake auth).

        Sends a CertificateRequest and returns once the client's certificate has been
        received and verified; :meth:`getpeercert` then returns it. The client answers
        while it reads, so it must be reading; a client that has no certificate may
        never answer, so bound the wait with ``trio.fail_after``. Application data that
        arrives meanwhile is kept for the next :meth:`receive_some`.

        Both contexts need ``post_handshake_auth = True``; the server's also needs a
        ``verify_mode`` of ``CERT_OPTIONAL`` or ``CERT_REQUIRED`` and the CA to trust.

        Raises:
          PostHandshakeAuthError: the client did not offer post-handshake auth, or
              closed the connection instead of answering.
          trio.BrokenResourceError: the certificate failed verification (or, with
              ``CERT_REQUIRED``, the client sent none); ``__cause__`` says why.
          ValueError: on a client stream, or on a connection that is not TLS 1.3.
        """
        if not self.server_side:
            raise ValueError("only a server stream can ask for a client certificate")
        self._claim_receiving("verify_client_post_handshake()")
        try:
            self._sm.check(Op.RECEIVE)
            self._sm.check(Op.SEND)
            await self._ensure_handshake()
            await self._request_and_await_certificate()
        finally:
            self._receiving = False

    async def _request_and_await_certificate(self) -> None:
        version = self._engine.obj.version()
        if version != "TLSv1.3":
            raise ValueError(f"post-handshake authentication needs TLS 1.3, not {version}")
        try:
            self._engine.request_client_certificate()
        except ssl.SSLError as exc:
            raise PostHandshakeAuthError(
                "the client did not offer post-handshake authentication "
                "(set post_handshake_auth = True on its SSLContext)"
            ) from exc
        await self._drive("certificate request", self._engine.handshake)
        obj = self._engine.obj
        if not await self._read_ahead_until(lambda: obj.getpeercert(binary_form=True) is not None):
            raise PostHandshakeAuthError(
                "the client closed the connection instead of sending a certificate"
            )

    # -- closing --------------------------------------------------------------------------

    async def send_eof(self) -> None:
        """Send close_notify and keep receiving (half-close); trio_tls extension.

        After it, :meth:`send_all` raises :exc:`trio.ClosedResourceError` and
        :meth:`receive_some` keeps returning the peer's data until its close_notify.
        A second call does nothing.
        """
        self._claim_sending()
        try:
            self._sm.check(Op.SEND_EOF)
            if self._sm.state is State.SEND_CLOSED:
                await trio.lowlevel.checkpoint()
                return
            await self._ensure_handshake()
            await self._drive("close_notify", self._engine.send_close_notify)
            self._sm.move(State.SEND_CLOSED)
        finally:
            self._sending = False

    async def unwrap(self) -> tuple[T_Stream, bytes]:
        """Shut TLS down cleanly and hand back the transport.

        Returns ``(transport_stream, trailing_bytes)``: ``trailing_bytes`` is what the
        transport delivered after the peer's close_notify; treat it as if it came from
        ``transport_stream.receive_some()``.
        """
        if self._sending or self._receiving:
            raise trio.BusyResourceError("another task is currently using this SSLStream")
        self._sending = self._receiving = True
        try:
            self._sm.check(Op.UNWRAP)
            await self._ensure_handshake()
            try:
                await self._drive("unwrap", self._engine.unwrap)
            except BaseException:
                # Cancelled or failed half-way through the shutdown exchange: nobody
                # can tell how much of it happened, so the stream cannot be used.
                self._sm.fail()
                raise
            self._sm.move(State.CLOSED)
            transport = self.transport_stream
            # As trio does: the caller owns the transport now, and a stale reference
            # here would invite using it through two owners.
            self.transport_stream = cast(T_Stream, None)
            return (transport, self._engine.take_trailing())
        finally:
            self._sending = self._receiving = False

    async def aclose(self) -> None:
        """Close the TLS layer, then the transport.

        Unless ``https_compatible``, this first sends close_notify (after finishing the
        handshake if it has not run). It does not wait for the peer's reply unless
        ``close_timeout`` is set. Whatever happens, cancellation and failures
        included, the transport is closed when this returns or raises.
        """
        state = self._sm.state
        if state is State.CLOSED:
            await trio.lowlevel.checkpoint()
            return
        if state is State.BROKEN or self._https_compatible:
            await self._close_without_goodbye()
            return
        try:
            await self._say_goodbye()
        except BaseException:
            self._sm.move(State.CLOSED)
            await trio.aclose_forcefully(self.transport_stream)
            raise
        self._sm.move(State.CLOSED)
        await self.transport_stream.aclose()

    async def _close_without_goodbye(self) -> None:
        # https_compatible: no close_notify. Session tickets still held back (TLS 1.3
        # server that never wrote) are delivered first, bounded, so the client can
        # resume; trio drops them (TLS-PITFALLS 4).
        try:
            if self._engine.delayed and self._sm.state is not State.BROKEN:
                with (
                    trio.move_on_after(ALERT_FLUSH_TIMEOUT),
                    contextlib.suppress(trio.BrokenResourceError, trio.ClosedResourceError),
                ):
                    await self._send_wire(b"")
        finally:
            self._sm.move(State.CLOSED)
            await self.transport_stream.aclose()

    async def _say_goodbye(self) -> None:
        await self._ensure_handshake()
        if self._sm.state is not State.SEND_CLOSED:
            # Sending is bounded on its own, not by close_timeout: close_timeout is how
            # long to wait for the peer's reply, and even close_timeout=0 must still
            # say goodbye, or the peer sees a truncation instead of an end of stream.
            with trio.move_on_after(CLOSE_NOTIFY_SEND_TIMEOUT):
                # The peer may have closed already; two well-behaved programs can race
                # here, so a failure to deliver our close_notify is not an error. A
                # task still sending or receiving makes a clean goodbye impossible.
                try:
                    await self._drive("close_notify", self._engine.send_close_notify)
                except (trio.BrokenResourceError, trio.BusyResourceError):
                    return
        if self._close_timeout is not None:
            with trio.move_on_after(self._close_timeout):
                await self._await_peer_close_notify()

    async def _await_peer_close_notify(self) -> None:
        """Read (and discard) until the peer's close_notify; bounded by the caller."""
        try:
            while not self._engine.peer_closed:
                await self._drive("close", self._engine.read, None)
        except trio.BrokenResourceError:
            return  # the peer hung up without close_notify: nothing more to wait for
