"""SSLStream: the public face of the driver, a drop-in for :class:`trio.SSLStream`.

:mod:`trio_tls._driver` explains how ciphertext moves; this module holds what a user
calls: the handshake (run once, shared by every task that needs it), data in both
directions, the extensions (session resumption, post-handshake client
authentication, statistics) and closing. States live in :mod:`trio_tls._state`; this
module asks it whether an operation may start and tells it when something happened.
Errors are split by blame: misuse raises ``ValueError``/``TypeError``/
``BusyResourceError``/``NeedHandshakeError``; anything the peer or the transport did
raises ``trio.BrokenResourceError`` chained to the cause.
"""

from __future__ import annotations

import operator
import ssl
import time
from collections.abc import Callable
from typing import Any, Generic, TypeGuard, TypeVar, cast, final

import trio
from trio.abc import HalfCloseableStream, Stream

from ._attributes import ConnectionAttributes
from ._choosing import ChoosingEngine, ContextChooser, split_chooser
from ._closing import Closing
from ._engine import TLSEngine
from ._exceptions import NoSessionTicketError, PostHandshakeAuthError, read_ahead_full
from ._hostname import encode_hostname
from ._standin import StandsInForTrio
from ._state import Op, State
from ._statistics import TLSStatistics
from ._sync import Once

T_Stream = TypeVar("T_Stream", bound=Stream)


def _handshake_failed(exc: BaseException) -> trio.BrokenResourceError:
    """What a task waiting for another task's handshake gets when that one failed."""
    if isinstance(exc, trio.BrokenResourceError) and exc.__cause__ is not None:
        exc = exc.__cause__
    error = trio.BrokenResourceError(f"the TLS handshake failed: {exc!r}")
    error.__cause__ = exc
    return error


@final
class SSLStream(
    Closing, ConnectionAttributes, StandsInForTrio, HalfCloseableStream, Generic[T_Stream]
):
    """TLS over any trio :class:`~trio.abc.Stream`: a drop-in for :class:`trio.SSLStream`.

    Args:
      transport_stream: the stream to encrypt, usually a :class:`trio.SocketStream`.
      ssl_context: the :class:`ssl.SSLContext`, or on a server a :data:`~trio_tls.ContextChooser`.
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
          waiting for the peer's reply, as trio does (giving up on a peer that does
          not read after ``CLOSE_NOTIFY_SEND_TIMEOUT``). A number bounds the whole
          :meth:`aclose`, sending close_notify included, and spends what is left of
          it waiting for the peer's close_notify (trio_tls extension). close_notify
          is still always attempted: over a socket with room the kernel takes it at
          once, so even ``close_timeout=0`` ends the stream cleanly for the peer.

    Attributes:
      transport_stream: the wrapped stream; None once :meth:`unwrap` has handed it
          back, as with trio.
    """

    __slots__ = (
        "_choice",
        "_close_timeout",
        "_handshake",
        "_handshake_seconds",
        "_handshake_timeout",
        "_receiving",
        "_sending",
        "transport_stream",
    )

    def __init__(
        self,
        transport_stream: T_Stream,
        ssl_context: ssl.SSLContext | ContextChooser,
        *,
        server_hostname: str | bytes | None = None,
        server_side: bool = False,
        https_compatible: bool = False,
        session: ssl.SSLSession | None = None,
        handshake_timeout: float | None = None,
        close_timeout: float | None = None,
    ) -> None:
        self._choice, ssl_context = split_chooser(ssl_context, server_side=server_side)
        if not server_side and server_hostname is None and ssl_context.check_hostname:
            # wrap_bio() accepts this and then verifies no hostname at all (only
            # wrap_socket() refuses it), so the certificate of *any* name would pass.
            raise ValueError(
                "check_hostname requires server_hostname: pass the name the server's "
                "certificate must match, or turn off ssl_context.check_hostname"
            )
        engine = (ChoosingEngine if self._choice else TLSEngine)(
            ssl_context,
            server_side=server_side,
            server_hostname=encode_hostname(server_hostname),
            session=session,
        )
        engine.ragged_eof_ok = https_compatible
        super().__init__(transport_stream, engine)
        self.transport_stream: T_Stream = transport_stream
        self._handshake_timeout = handshake_timeout
        self._close_timeout = close_timeout
        self._handshake = Once(self._run_handshake, _handshake_failed)
        #: Seconds the handshake took, for statistics(); None until it is done.
        self._handshake_seconds: float | None = None
        self._sending = False
        self._receiving = False

    def __repr__(self) -> str:
        side = "server" if self.server_side else "client"
        return f"<trio_tls.SSLStream {side} {self._sm.state.value} over {self.transport_stream!r}>"

    def statistics(self) -> TLSStatistics:
        """Counters and negotiated parameters; cheap enough to call often."""
        done = self._engine.handshook
        # Before the handshake nothing is asked of the SSLObject: a server choosing
        # its context has none yet, and would create a placeholder just to answer.
        obj = self._engine.obj if done else None
        cipher = obj.cipher() if obj else None
        return TLSStatistics(
            version=obj.version() if obj else None,
            cipher=cipher[0] if cipher else None,
            alpn_protocol=obj.selected_alpn_protocol() if obj else None,
            session_reused=obj.session_reused if obj else False,
            handshake_duration=self._handshake_seconds,
            choose_duration=self._choice.seconds if self._choice else None,
            **self._counters.as_dict(),
        )

    # -- the handshake ------------------------------------------------------------------

    async def _ensure_handshake(self) -> bool:
        """Run the handshake, or wait for the task running it; False if it was done."""
        state = self._sm.state
        if state is State.IDLE or state is State.HANDSHAKING:
            await self._handshake.ensure()
            return True
        return False

    async def _run_handshake(self) -> None:
        self._sm.move(State.HANDSHAKING)
        started = time.perf_counter()
        try:
            await self._handshake_within_deadline()
        except BaseException:
            self._sm.fail()
            raise
        self._handshake_seconds = time.perf_counter() - started
        self._send_tickets_now()
        if self._sm.state is State.HANDSHAKING:
            self._sm.move(State.OPEN)

    async def _handshake_within_deadline(self) -> None:
        timeout = self._handshake_timeout
        with trio.move_on_after(float("inf") if timeout is None else timeout) as scope:
            if self._choice:  # a server choosing its context reads the hello first
                await self._choice.run(self)
            await self._drive("handshake", self._engine.handshake)
        if scope.cancelled_caught:  # _run_handshake() marks the stream broken
            if self._choice:  # the deadline expired while the chooser ran?
                await self._choice.too_slow(self, timeout)
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
        if not await self._ensure_handshake():
            await trio.lowlevel.checkpoint()

    # -- data -----------------------------------------------------------------------------

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

    async def receive_some(self, max_bytes: int | None = None) -> bytes:
        """Receive and decrypt some data; ``b""`` at end of stream.

        See :meth:`trio.abc.ReceiveStream.receive_some`. With ``max_bytes=None``,
        every complete record already received is returned in one call.

        .. warning:: Cancelled during the handshake or a renegotiation, it leaves the
           stream broken. Cancelled at any other point, nothing is lost.
        """
        self._claim_receiving()
        try:
            state = self._sm.state
            if state is not State.OPEN:
                self._sm.check(Op.RECEIVE)
            if max_bytes is not None:
                max_bytes = operator.index(max_bytes)
                if max_bytes < 1:
                    raise ValueError("max_bytes must be >= 1")
            if state is State.IDLE or state is State.HANDSHAKING:
                return await self._receive_first(max_bytes)
            return await self._receive(max_bytes)
        finally:
            self._receiving = False

    async def _receive_first(self, max_bytes: int | None) -> bytes:
        """The handshake, then a receive; an https-style EOF in between reads as b""."""
        try:
            await self._ensure_handshake()
            return await self._receive(max_bytes)
        except trio.BrokenResourceError as exc:
            engine = self._engine
            if not (engine.ragged_eof_ok and engine.is_ragged_eof(exc.__cause__)):
                raise
            # A ragged EOF during the handshake is how an HTTPS peer hangs up early.
            await trio.lowlevel.checkpoint()
            return b""

    async def send_all(self, data: bytes | bytearray | memoryview) -> None:
        """Encrypt ``data`` and send it; see :meth:`trio.abc.SendStream.send_all`.

        .. warning:: If this method is cancelled, the stream is left broken: an unknown
           part of the data went out. Every later call raises
           :exc:`trio.BrokenResourceError`. (A cancellation noticed before anything was
           encrypted leaves the stream as it was.)
        """
        self._claim_sending()
        try:
            if self._sm.state is not State.OPEN:
                self._sm.check(Op.SEND)
                await self._ensure_handshake()
            if not data:
                # SSLObject.write(b"") would mean something else entirely (EOF).
                await trio.lowlevel.checkpoint()
                return
            await self._send(data)
        finally:
            self._sending = False

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

        Most servers, trio_tls over a socket included, send their TLS 1.3 tickets right
        after the handshake, so asking at once works whoever speaks first. A server
        on a transport that cannot take them without waiting (a trio_tls server on a
        zero-buffer stream, or trio's) sends them with its first write or when it
        closes: there, in a protocol where the client speaks first, send the request
        before asking. While it waits it keeps at most ``READ_AHEAD_LIMIT`` bytes of
        data for later; at that cap it fails at once rather than wait forever.

        Raises:
          NoSessionTicketError: the server closed the connection before sending one,
              or sent ``READ_AHEAD_LIMIT`` bytes of data first (take them with
              :meth:`receive_some`, then ask again; the stream is intact).
          trio.BusyResourceError: another task is in :meth:`receive_some`.
          ValueError: on a server-side stream.
        """
        if self.server_side:
            raise ValueError("only a client stream has a session to resume")
        self._claim_receiving("resumable_session()")
        try:
            self._sm.check(Op.RECEIVE)
            await self._ensure_handshake()
            if not await self._read_ahead_until(self._engine.has_resumable_session, "session"):
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
          PostHandshakeAuthError: the client did not offer post-handshake auth,
              closed the connection instead of answering, or sent ``READ_AHEAD_LIMIT``
              bytes of data before its answer (the stream is intact: that data is
              returned by :meth:`receive_some`, which also processes the answer).
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

    async def _read_ahead_until(self, ready: Callable[[], bool], what: str) -> bool:
        """Read until ``ready()``, keeping data for receive_some; False at end of stream.

        At the read-ahead cap it raises at once (:func:`read_ahead_full`) instead of
        waiting for room that only the caller's own receive_some() could make.
        """
        found = await self._drive("read", self._engine.read_ahead_until, ready)
        if found is None:
            raise read_ahead_full(what)
        return found

    async def _request_and_await_certificate(self) -> None:
        try:
            self._engine.request_client_certificate()
        except ssl.SSLError as exc:
            raise PostHandshakeAuthError(
                "the client did not offer post-handshake authentication "
                "(set post_handshake_auth = True on its SSLContext)"
            ) from exc
        await self._drive("certificate request", self._engine.handshake)
        # The check runs after every batch of records, so it may meet OpenSSL half-way
        # through the client's answer: has_peer_certificate() reads that as "not yet".
        if not await self._read_ahead_until(self._engine.has_peer_certificate, "certificate"):
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
        ``transport_stream.receive_some()``. The transport is the caller's from now
        on: this stream's ``transport_stream`` becomes None.
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
            # As trio does (the attribute keeps trio's type): a stale reference here
            # would invite using the transport through two owners.
            self.transport_stream = cast(T_Stream, None)
            return (transport, self._engine.take_trailing())
        finally:
            self._sending = self._receiving = False


def is_trio_tls_stream(stream: object) -> TypeGuard[SSLStream[Any]]:
    """True for trio_tls's own :class:`SSLStream` only, never for trio's.

    While :func:`trio_tls.patch_trio` is on, ``isinstance(s, SSLStream)`` is also True
    for streams trio's class built (so that pools holding them keep working), and those
    have none of trio_tls's extensions. trio_tls's own code asks this instead whenever
    it is about to use one. The class is final, so identity is the whole test.
    """
    return type(stream) is SSLStream
