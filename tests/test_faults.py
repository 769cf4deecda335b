"""A misbehaving peer over real loopback TCP: each fault, and what trio_tls does about it.

The peer is :class:`HandDrivenPeer`: a stdlib ``ssl.SSLObject`` whose ciphertext the
test moves by hand, so it can do what no well-behaved stack would: stop in the
middle of a record, reset the connection, hang up without close_notify, stop
reading, never answer close_notify, or keep talking after it. Each test's docstring
states the expected outcome; notes/reliability.md collects them in one table.
"""

from __future__ import annotations

import contextlib
import socket
import ssl
import struct
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Literal, Protocol, TypeVar, cast

import pytest
import trio
import trio.testing
from OpenSSL import SSL

import trio_tls._closing
from trio_tls import SSLStream
from trio_tls.testing import SERVER_NAME, TLSTestCA, TLSVersionName

from .helpers.streams import loopback_tcp_pair, receive_to_eof

pytestmark = pytest.mark.usefixtures("no_fd_leak")

#: Every test ends well within this; only a hang reaches it.
FAULT_TIMEOUT = 10.0
#: Bigger than any loopback socket buffer pair, so a peer that stops reading stalls us.
FLOOD = 64 * 1024 * 1024


class HandDrivenPeer:
    """The other end of the connection: an SSLObject over a trio socket, driven by hand."""

    def __init__(
        self,
        sock: trio.SocketStream,
        obj: ssl.SSLObject,
        incoming: ssl.MemoryBIO,
        outgoing: ssl.MemoryBIO,
    ) -> None:
        self.sock = sock
        self.obj = obj
        self._in = incoming
        self._out = outgoing

    @classmethod
    def wrap(
        cls, sock: trio.SocketStream, context: ssl.SSLContext, *, server_side: bool
    ) -> HandDrivenPeer:
        incoming, outgoing = ssl.MemoryBIO(), ssl.MemoryBIO()
        obj = context.wrap_bio(
            incoming,
            outgoing,
            server_side=server_side,
            server_hostname=None if server_side else SERVER_NAME,
        )
        return cls(sock, obj, incoming, outgoing)

    async def flush(self) -> None:
        if self._out.pending:
            await self.sock.send_all(self._out.read())

    async def _feed(self) -> bool:
        data = await self.sock.receive_some()
        if data:
            self._in.write(data)
        else:
            self._in.write_eof()
        return bool(data)

    async def handshake(self) -> None:
        while True:
            try:
                self.obj.do_handshake()
            except ssl.SSLWantReadError:
                await self.flush()
                if not await self._feed():
                    raise ConnectionError("EOF during the handshake") from None
            else:
                await self.flush()
                return

    async def receive(self) -> bytes:
        """Decrypted data, or b"" at close_notify."""
        while True:
            try:
                data = self.obj.read(65536)
            except ssl.SSLWantReadError:
                if not await self._feed():
                    return b""
            except ssl.SSLZeroReturnError:
                return b""
            else:
                await self.flush()
                return data

    async def how_it_ended(self) -> Literal["close_notify", "eof"]:
        """Read to the end of the TLS stream and say how it ended."""
        for _ in range(10_000):
            try:
                if not self.obj.read(65536):
                    return "close_notify"
            except ssl.SSLWantReadError:
                await self._feed()
            except ssl.SSLZeroReturnError:
                return "close_notify"
            except ssl.SSLEOFError:
                return "eof"
        raise AssertionError("the connection did not end")

    def encrypt(self, data: bytes) -> bytes:
        """Records for ``data``, returned instead of sent."""
        self.obj.write(data)
        return self._out.read()

    def close_notify(self) -> bytes:
        """Our close_notify alert, returned instead of sent."""
        # The second half of unwrap waits for the other side's alert: not needed here.
        with contextlib.suppress(ssl.SSLWantReadError):
            self.obj.unwrap()
        return self._out.read()

    def reset(self) -> None:
        """Close with SO_LINGER 0: the kernel sends RST instead of FIN."""
        self.sock.socket.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        self.sock.socket.close()


class _Peer(Protocol):
    sock: trio.SocketStream

    async def handshake(self) -> None: ...


_PeerT = TypeVar("_PeerT", bound=_Peer)


@asynccontextmanager
async def _handshaken(
    stream: SSLStream[trio.SocketStream], peer: _PeerT
) -> AsyncIterator[tuple[SSLStream[trio.SocketStream], _PeerT]]:
    """Both handshakes done; afterwards both ends are closed, whatever happened."""
    try:
        with trio.fail_after(FAULT_TIMEOUT):
            async with trio.open_nursery() as nursery:
                nursery.start_soon(stream.do_handshake)
                nursery.start_soon(peer.handshake)
        yield stream, peer
    finally:
        with trio.CancelScope(shield=True):
            await trio.aclose_forcefully(stream)
            await trio.aclose_forcefully(peer.sock)


@asynccontextmanager
async def connected(
    ca: TLSTestCA,
    *,
    ours: Literal["client", "server"] = "client",
    version: TLSVersionName | None = None,
    https_compatible: bool = False,
    close_timeout: float | None = None,
) -> AsyncIterator[tuple[SSLStream[trio.SocketStream], HandDrivenPeer]]:
    """Our SSLStream and a hand-driven peer, handshake done, over loopback TCP."""
    our_sock, their_sock = await loopback_tcp_pair()
    client_ctx = ca.client_context(version=version)
    server_ctx = ca.server_context(version=version)
    we_serve = ours == "server"
    stream = SSLStream(
        our_sock,
        server_ctx if we_serve else client_ctx,
        server_side=we_serve,
        server_hostname=None if we_serve else SERVER_NAME,
        https_compatible=https_compatible,
        close_timeout=close_timeout,
    )
    peer = HandDrivenPeer.wrap(
        their_sock, client_ctx if we_serve else server_ctx, server_side=not we_serve
    )
    async with _handshaken(stream, peer) as pair:
        yield pair


async def _end_of_connection(sock: trio.SocketStream) -> Literal["eof", "reset", "data"]:
    """How the raw connection ends after the TLS layer is done: FIN or RST."""
    try:
        data = await sock.receive_some()
    except trio.BrokenResourceError as exc:
        if isinstance(exc.__cause__, ConnectionResetError):
            return "reset"
        raise
    return "data" if data else "eof"


def _assert_transport_closed(stream: SSLStream[trio.SocketStream]) -> None:
    __tracebackhide__ = True
    assert stream.transport_stream.socket.fileno() == -1


async def _assert_broken_from_now_on(stream: SSLStream[trio.SocketStream]) -> None:
    __tracebackhide__ = True
    with pytest.raises(trio.BrokenResourceError):
        await stream.receive_some()
    with pytest.raises(trio.BrokenResourceError):
        await stream.send_all(b"x")


# -- a peer that resets the connection ------------------------------------------------


async def test_peer_resets_mid_record(tls_ca: TLSTestCA) -> None:
    """Expected: receive_some raises BrokenResourceError caused by ConnectionResetError;
    the half record is never decrypted or returned; the stream stays broken."""
    async with connected(tls_ca) as (stream, peer):
        record = peer.encrypt(b"x" * 10_000)
        await peer.sock.send_all(record[: len(record) // 2])
        await trio.sleep(0.05)  # let the half record arrive before the reset
        peer.reset()
        with trio.fail_after(FAULT_TIMEOUT), pytest.raises(trio.BrokenResourceError) as info:
            await stream.receive_some()
        assert isinstance(info.value.__cause__, ConnectionResetError)
        assert stream.statistics().bytes_received == 0
        await _assert_broken_from_now_on(stream)
        await stream.aclose()
        _assert_transport_closed(stream)


async def test_peer_resets_while_we_send(tls_ca: TLSTestCA) -> None:
    """Expected: a send_all in progress raises BrokenResourceError (caused by the OS
    error, EPIPE or ECONNRESET) instead of blocking; the stream stays broken."""
    async with connected(tls_ca) as (stream, peer):
        errors: list[trio.BrokenResourceError] = []

        async def flood() -> None:
            try:
                await stream.send_all(bytes(FLOOD))
            except trio.BrokenResourceError as exc:
                errors.append(exc)

        with trio.fail_after(FAULT_TIMEOUT):
            async with trio.open_nursery() as nursery:
                nursery.start_soon(flood)
                await trio.sleep(0.1)  # the send is now blocked on full buffers
                peer.reset()
        assert len(errors) == 1
        assert isinstance(errors[0].__cause__, OSError)
        await _assert_broken_from_now_on(stream)


# -- hanging up without close_notify ---------------------------------------------------


async def _hello_then_hang_up(peer: HandDrivenPeer, *, cut_record: bool) -> None:
    """The peer sends b"hello", with ``cut_record`` the first bytes of one more record,
    then FIN without close_notify."""
    hello = peer.encrypt(b"hello")  # records must be made in wire order
    tail = peer.encrypt(b"lost")[:10] if cut_record else b""
    await peer.sock.send_all(hello + tail)
    await peer.sock.send_eof()


@pytest.mark.parametrize("cut_record", [False, True], ids=["between_records", "mid_record"])
async def test_peer_closes_without_close_notify_standard(
    tls_ca: TLSTestCA, cut_record: bool
) -> None:
    """https_compatible=False. Expected: data before the EOF is delivered; then
    BrokenResourceError caused by ssl.SSLEOFError (a possible truncation attack),
    and the stream stays broken."""
    async with connected(tls_ca) as (stream, peer):
        await _hello_then_hang_up(peer, cut_record=cut_record)
        with trio.fail_after(FAULT_TIMEOUT):
            assert await stream.receive_some() == b"hello"
            with pytest.raises(trio.BrokenResourceError) as info:
                await stream.receive_some()
        assert isinstance(info.value.__cause__, ssl.SSLEOFError)
        await _assert_broken_from_now_on(stream)


@pytest.mark.parametrize("cut_record", [False, True], ids=["between_records", "mid_record"])
async def test_peer_closes_without_close_notify_https(tls_ca: TLSTestCA, cut_record: bool) -> None:
    """https_compatible=True. Expected: data before the EOF is delivered, then b""
    (and b"" again): HTTP frames its own messages, so a ragged EOF is a clean end.
    A record cut in half is dropped, never returned. aclose() sends no close_notify."""
    async with connected(tls_ca, https_compatible=True) as (stream, peer):
        await _hello_then_hang_up(peer, cut_record=cut_record)
        with trio.fail_after(FAULT_TIMEOUT):
            assert await stream.receive_some() == b"hello"
            assert await stream.receive_some() == b""
            assert await stream.receive_some() == b""
            sent_before = stream.statistics().wire_bytes_sent
            await stream.aclose()
        assert stream.statistics().wire_bytes_sent == sent_before
        _assert_transport_closed(stream)


# -- a peer that stops reading ---------------------------------------------------------


async def test_peer_stops_reading_then_deadline_and_aclose(tls_ca: TLSTestCA) -> None:
    """Expected: send_all blocks (backpressure: only what fits in the socket buffers
    leaves); the caller's deadline cancels it, which leaves the stream broken (an
    unknown part went out); aclose() then returns at once without trying to send
    close_notify, and closes the transport."""
    # TLS 1.2: a TLS 1.3 client that never reads leaves the server's session
    # tickets unread, and closing a socket with unread input makes the kernel send
    # RST instead of FIN, so the peer could not count what it received.
    async with connected(tls_ca, version="1.2") as (stream, peer):
        with trio.move_on_after(0.5) as deadline:
            await stream.send_all(bytes(FLOOD))
        assert deadline.cancelled_caught, "send_all finished although nobody reads"
        assert stream.statistics().wire_bytes_sent < FLOOD
        with trio.fail_after(1.0):
            await stream.aclose()
        _assert_transport_closed(stream)
        # The peer drains what did arrive, then sees the end of the stream.
        received = 0
        with trio.fail_after(FAULT_TIMEOUT):
            while chunk := await peer.sock.receive_some():
                received += len(chunk)
        assert 0 < received < FLOOD


async def _aclose_while_flooding(stream: SSLStream[trio.SocketStream]) -> float:
    """Fill the socket towards a peer that does not read, then aclose() from another
    task; how long aclose() took. The stuck send_all must get ClosedResourceError
    (trio's rule for closing under a user) and the transport must be closed."""
    errors: list[BaseException] = []

    async def flood() -> None:
        try:
            await stream.send_all(bytes(FLOOD))
        except (trio.ClosedResourceError, trio.BrokenResourceError) as exc:
            errors.append(exc)

    async with trio.open_nursery() as nursery:
        nursery.start_soon(flood)
        await trio.sleep(0.2)
        started = trio.current_time()
        with trio.fail_after(FAULT_TIMEOUT):
            await stream.aclose()
        took = trio.current_time() - started
    _assert_transport_closed(stream)
    assert [type(e) for e in errors] == [trio.ClosedResourceError]
    return took


async def test_aclose_while_send_blocked_on_a_peer_that_stopped_reading(
    tls_ca: TLSTestCA, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Expected, with no close_timeout: aclose() called from another task while
    send_all is stuck gives up on close_notify after CLOSE_NOTIFY_SEND_TIMEOUT and
    closes the transport."""
    # The real bound is seconds; the behaviour, not the constant, is under test.
    monkeypatch.setattr(trio_tls._closing, "CLOSE_NOTIFY_SEND_TIMEOUT", 0.3)
    async with connected(tls_ca) as (stream, _peer):
        took = await _aclose_while_flooding(stream)
    assert 0.25 <= took < 2.0


@pytest.mark.parametrize("close_timeout", [0.5, 0.0])
async def test_close_timeout_bounds_the_whole_aclose(
    tls_ca: TLSTestCA, autojump_clock: trio.testing.MockClock, close_timeout: float
) -> None:
    """A peer that stopped reading, so close_notify cannot be sent: close_timeout is
    the user's bound for the whole aclose(), sending included, not only for the
    wait for the reply (virtual time: every wait ends as soon as all are blocked)."""
    async with connected(tls_ca, close_timeout=close_timeout) as (stream, _peer):
        took = await _aclose_while_flooding(stream)
    assert took == pytest.approx(close_timeout, abs=0.01)
    assert took < trio_tls._closing.CLOSE_NOTIFY_SEND_TIMEOUT


# -- a peer that never answers close_notify --------------------------------------------


async def test_peer_never_answers_close_notify_default(
    tls_ca: TLSTestCA, tls_version: TLSVersionName
) -> None:
    """close_timeout=None (the default, like trio). Expected: aclose() sends
    close_notify and returns at once without waiting for the reply; the peer reads a
    clean close_notify, then the connection ends (EOF, or RST under TLS 1.3 because
    the server's unread session tickets were still in our receive buffer)."""
    async with connected(tls_ca, version=tls_version) as (stream, peer):
        with trio.fail_after(0.5):
            await stream.aclose()
        _assert_transport_closed(stream)
        with trio.fail_after(FAULT_TIMEOUT):
            assert await peer.receive() == b""  # SSLZeroReturnError: close_notify
            end = await _end_of_connection(peer.sock)
        assert end == "eof" or (tls_version == "1.3" and end == "reset")


async def test_peer_never_answers_close_notify_with_close_timeout(tls_ca: TLSTestCA) -> None:
    """close_timeout=0.3. Expected: aclose() waits up to 0.3 s for the reply, then
    closes the transport anyway and returns normally."""
    async with connected(tls_ca, close_timeout=0.3) as (stream, _peer):
        started = trio.current_time()
        with trio.fail_after(2.0):
            await stream.aclose()
        assert trio.current_time() - started >= 0.25
        _assert_transport_closed(stream)


async def test_close_timeout_zero_still_sends_close_notify(
    tls_ca: TLSTestCA, tls_version: TLSVersionName
) -> None:
    """close_timeout=0: wait for no reply, but still say goodbye. Expected: the peer
    reads close_notify, not an unexpected EOF."""
    async with connected(tls_ca, version=tls_version, close_timeout=0) as (stream, peer):
        with trio.fail_after(0.5):
            await stream.aclose()
        _assert_transport_closed(stream)
        with trio.fail_after(FAULT_TIMEOUT):
            assert await peer.how_it_ended() == "close_notify"


async def test_peer_answers_close_notify_within_close_timeout(tls_ca: TLSTestCA) -> None:
    """The control case: a peer that answers ends the wait early."""
    async with connected(tls_ca, close_timeout=5.0) as (stream, peer):

        async def answer() -> None:
            assert await peer.receive() == b""
            await peer.sock.send_all(peer.close_notify())

        async with trio.open_nursery() as nursery:
            nursery.start_soon(answer)
            with trio.fail_after(2.0):
                await stream.aclose()
        _assert_transport_closed(stream)


async def test_unwrap_waits_for_a_peer_that_never_answers(tls_ca: TLSTestCA) -> None:
    """Expected: unwrap() needs the peer's close_notify, so it waits as long as the
    caller lets it; under a deadline it is cancelled, and aclose() still closes the
    transport."""
    async with connected(tls_ca) as (stream, _peer):
        with trio.move_on_after(0.3) as deadline:
            await stream.unwrap()
        assert deadline.cancelled_caught
        with trio.fail_after(1.0):
            await stream.aclose()
        _assert_transport_closed(stream)


# -- a peer that keeps talking after close_notify --------------------------------------


class LateTalker:
    """A pyOpenSSL server that can send a valid record *after* its close_notify.

    The stdlib refuses to write after unwrap(); OpenSSL itself will once the
    "shutdown sent" flag is cleared (``set_shutdown(0)``), and the record then carries
    the right next sequence number, so only the close_notify makes it unwelcome.
    """

    def __init__(self, sock: trio.SocketStream, ca: TLSTestCA) -> None:
        context = SSL.Context(SSL.TLS_METHOD)
        with ca.server_cert.private_key_and_cert_chain_pem.tempfile() as path:
            context.use_certificate_chain_file(path)
            context.use_privatekey_file(path)
        self.sock = sock
        self.conn = SSL.Connection(context, None)
        self.conn.set_accept_state()

    def _outgoing(self) -> bytes:
        out = b""
        with contextlib.suppress(SSL.WantReadError):
            while True:
                out += self.conn.bio_read(65536)
        return out

    async def handshake(self) -> None:
        while True:
            try:
                self.conn.do_handshake()
            except SSL.WantReadError:
                await self.sock.send_all(self._outgoing())
                data = await self.sock.receive_some()
                if not data:
                    raise ConnectionError("EOF during the handshake") from None
                self.conn.bio_write(data)
            else:
                await self.sock.send_all(self._outgoing())
                return

    def encrypt(self, data: bytes) -> bytes:
        self.conn.send(data)
        return self._outgoing()

    def close_notify_then(self, late: bytes) -> tuple[bytes, bytes]:
        """(close_notify, a valid record of ``late`` made after it)."""
        self.conn.shutdown()
        alert = self._outgoing()
        self.conn.set_shutdown(0)
        return alert, self.encrypt(late)


@asynccontextmanager
async def connected_to_late_talker(
    ca: TLSTestCA, *, https_compatible: bool = False
) -> AsyncIterator[tuple[SSLStream[trio.SocketStream], LateTalker]]:
    our_sock, their_sock = await loopback_tcp_pair()
    stream = SSLStream(
        our_sock,
        ca.client_context(),
        server_hostname=SERVER_NAME,
        https_compatible=https_compatible,
    )
    peer = LateTalker(their_sock, ca)
    async with _handshaken(stream, peer) as pair:
        yield pair


@pytest.mark.parametrize("https_compatible", [False, True], ids=["standard", "https"])
async def test_peer_sends_data_after_close_notify(
    tls_ca: TLSTestCA, https_compatible: bool
) -> None:
    """Expected: receive_some returns b"" at the close_notify and keeps returning b"";
    the valid record that follows it is never decrypted or returned."""
    async with connected_to_late_talker(tls_ca, https_compatible=https_compatible) as (
        stream,
        peer,
    ):
        last = peer.encrypt(b"last words")
        alert, late = peer.close_notify_then(b"after the end")
        await peer.sock.send_all(last + alert + late)
        with trio.fail_after(FAULT_TIMEOUT):
            assert await receive_to_eof(stream) == b"last words"
            assert await stream.receive_some() == b""
        assert stream.statistics().bytes_received == len(b"last words")


async def test_unwrap_returns_what_follows_close_notify_as_raw_bytes(
    tls_ca: TLSTestCA,
) -> None:
    """Expected: unwrap() stops at the peer's close_notify and hands back the bytes
    behind it untouched, as ``trailing_bytes``: they belong to whatever protocol
    follows TLS on that connection (STARTTLS-style), not to TLS."""
    async with connected_to_late_talker(tls_ca) as (stream, peer):
        wrapped = stream.transport_stream
        alert, late = peer.close_notify_then(b"after the end")
        await peer.sock.send_all(alert + late)
        with trio.fail_after(FAULT_TIMEOUT):
            transport, trailing = await stream.unwrap()
        assert transport is wrapped
        assert cast(object, stream.transport_stream) is None
        assert trailing == late
        await transport.aclose()


# -- the same faults seen from the server side -----------------------------------------


async def test_server_side_client_hangs_up_without_close_notify(
    tls_ca: TLSTestCA, tls_version: TLSVersionName
) -> None:
    """Expected (server end, standard mode): data first, then BrokenResourceError
    caused by ssl.SSLEOFError."""
    async with connected(tls_ca, ours="server", version=tls_version) as (stream, peer):
        await peer.sock.send_all(peer.encrypt(b"request"))
        await peer.sock.send_eof()
        with trio.fail_after(FAULT_TIMEOUT):
            assert await stream.receive_some() == b"request"
            with pytest.raises(trio.BrokenResourceError) as info:
                await stream.receive_some()
        assert isinstance(info.value.__cause__, ssl.SSLEOFError)
