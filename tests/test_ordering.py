"""What users can rely on when TLS 1.3 changes the order of events.

Each test is a small, copyable statement of behaviour. Every one runs under TLS 1.2
and 1.3 (unless it is about one of them), over the memory, lockstep (zero-buffer) and
real loopback TCP transports, and under the chaos transport with several seeds, which
splits, coalesces and delays the bytes and reorders task switches.

Rules kept throughout: the two sides always run in separate tasks (as real peers
do); nothing asserts which handshake finishes first (TLS 1.2 full handshakes finish
on the server first, TLS 1.3 on the client first); errors are checked by type and
``__cause__`` type, never by OpenSSL's text.
"""

from __future__ import annotations

import ssl
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Literal, Protocol

import pytest
import trio
from trio.abc import Stream
from trio.testing import MockClock

from trio_tls import SSLStream
from trio_tls._closing import CLOSE_NOTIFY_SEND_TIMEOUT
from trio_tls.testing import (
    StreamPair,
    TLSTestCA,
    TLSVersionName,
    TransportName,
    close_pair_forcefully,
    handshake_pair,
    open_tls_stream_pair,
)

from .helpers.streams import both, receive_exactly

pytestmark = [
    pytest.mark.tls_transports("memory", "lockstep", "tcp"),
    pytest.mark.tls_chaos(count=3, plain=True),
]


class PairOpener(Protocol):
    async def __call__(
        self,
        *,
        server_context: ssl.SSLContext | None = None,
        client_context: ssl.SSLContext | None = None,
        https_compatible: bool = False,
    ) -> StreamPair: ...


@pytest.fixture
async def open_pair(
    tls_ca: TLSTestCA,
    tls_version: TLSVersionName,
    tls_transport: TransportName,
    tls_chaos_seed: int | None,
) -> AsyncIterator[PairOpener]:
    """Opens (client, server) pairs over this run's transport and chaos seed."""
    opened: list[StreamPair] = []

    async def open_one(
        *,
        server_context: ssl.SSLContext | None = None,
        client_context: ssl.SSLContext | None = None,
        https_compatible: bool = False,
    ) -> StreamPair:
        pair = await open_tls_stream_pair(
            tls_transport,
            server_context=server_context or tls_ca.server_context(version=tls_version),
            client_context=client_context or tls_ca.client_context(version=tls_version),
            https_compatible=https_compatible,
            chaos_seed=tls_chaos_seed,
        )
        opened.append(pair)
        return pair

    yield open_one
    for pair in opened:
        await close_pair_forcefully(pair)


def assert_peer_alert(exc: BaseException) -> None:
    """A BrokenResourceError caused by the peer's TLS alert, not by a bare EOF/reset."""
    assert isinstance(exc, trio.BrokenResourceError)
    assert isinstance(exc.__cause__, ssl.SSLError)
    assert not isinstance(exc.__cause__, (ssl.SSLEOFError, ssl.SSLSyscallError))


def resumable(session: ssl.SSLSession | None) -> bool:
    return session is not None and session.has_ticket


# -- client certificates -------------------------------------------------------------------


async def server_rejects_the_certificate(server: SSLStream[Stream]) -> None:
    """A server that requires a client certificate and got none: its handshake fails."""
    with pytest.raises(trio.BrokenResourceError) as info:
        await server.do_handshake()
    assert isinstance(info.value.__cause__, ssl.SSLError)


@pytest.mark.tls_versions("1.2")
async def test_tls12_rejected_client_cert_fails_the_client_handshake(
    open_pair: PairOpener, tls_ca: TLSTestCA
) -> None:
    client, server = await open_pair(
        server_context=tls_ca.server_context(version="1.2", require_client_cert=True)
    )

    async def client_side() -> None:
        with pytest.raises(trio.BrokenResourceError) as info:
            await client.do_handshake()
        assert_peer_alert(info.value)

    await both(lambda: server_rejects_the_certificate(server), client_side)


# The TLS 1.2 test's setup, kept whole: the client's side is what differs.
@pytest.mark.tls_versions("1.3")
async def test_tls13_rejected_client_cert_surfaces_on_the_first_receive(
    open_pair: PairOpener, tls_ca: TLSTestCA
) -> None:
    client, server = await open_pair(
        server_context=tls_ca.server_context(version="1.3", require_client_cert=True)
    )

    async def client_side() -> None:
        # The client's handshake is over before the server has looked at its
        # (empty) certificate, so it succeeds ...
        await client.do_handshake()
        assert client.version() == "TLSv1.3"
        # ... and the server's verdict arrives as an alert on the next read.
        with pytest.raises(trio.BrokenResourceError) as info:
            await client.receive_some()
        assert_peer_alert(info.value)

    await both(lambda: server_rejects_the_certificate(server), client_side)


async def test_client_cert_is_accepted_when_presented(
    open_pair: PairOpener, tls_ca: TLSTestCA, tls_version: TLSVersionName
) -> None:
    client, server = await open_pair(
        server_context=tls_ca.server_context(version=tls_version, require_client_cert=True),
        client_context=tls_ca.client_context(version=tls_version, with_client_cert=True),
    )

    async def server_side() -> None:
        assert await receive_exactly(server, 4) == b"ping"
        peer = server.getpeercert()
        assert peer is not None
        assert peer["subjectAltName"] == (("email", "client@trio-tls.example"),)
        await server.send_all(b"pong")

    async def client_side() -> None:
        await client.send_all(b"ping")
        assert await receive_exactly(client, 4) == b"pong"

    await both(server_side, client_side)


# -- session tickets ------------------------------------------------------------------------


@pytest.mark.tls_versions("1.2")
async def test_tls12_session_is_resumable_right_after_the_handshake(
    open_pair: PairOpener,
) -> None:
    client, server = await open_pair()
    await handshake_pair(client, server)
    # TLS 1.2 sends the ticket inside the handshake, before the server's Finished.
    assert resumable(client.session)


ServerEnding = Literal["writes", "closes", "closes_https"]


@pytest.mark.tls_versions("1.3")
@pytest.mark.parametrize("ending", ["writes", "closes", "closes_https"])
async def test_tls13_session_becomes_resumable_only_after_the_client_reads(
    open_pair: PairOpener, tls_ca: TLSTestCA, ending: ServerEnding
) -> None:
    # One pair of contexts for both connections: tickets are only valid with the
    # server context (its ticket keys) that issued them.
    server_context = tls_ca.server_context(version="1.3")
    client_context = tls_ca.client_context(version="1.3")
    https = ending == "closes_https"
    client, server = await open_pair(
        server_context=server_context, client_context=client_context, https_compatible=https
    )
    await handshake_pair(client, server)
    # The tickets are sent after the handshake, so the client has none yet.
    assert not resumable(client.session)

    async def server_side() -> None:
        if ending == "writes":
            await server.send_all(b"hello")  # the tickets travel with the first write
        else:
            await server.aclose()  # ... or are flushed when the server closes

    async def client_side() -> None:
        expected = b"hello" if ending == "writes" else b""
        assert await client.receive_some() == expected

    await both(server_side, client_side)
    session = client.session
    assert resumable(session)

    again_client, again_server = await open_pair(
        server_context=server_context, client_context=client_context
    )
    again_client.session = session
    await handshake_pair(again_client, again_server)
    assert again_client.session_reused
    assert again_server.session_reused


async def test_client_may_write_first_after_the_handshake(open_pair: PairOpener) -> None:
    # Under TLS 1.3 the server still owes the client its session tickets when the
    # client starts writing; on a zero-buffer transport that must not deadlock.
    client, server = await open_pair()

    async def client_side() -> None:
        await client.do_handshake()
        await client.send_all(b"request")
        assert await receive_exactly(client, 8) == b"response"

    async def server_side() -> None:
        assert await receive_exactly(server, 7) == b"request"
        await server.send_all(b"response")

    await both(client_side, server_side)


# -- who speaks first -----------------------------------------------------------------------


async def test_server_may_speak_first(open_pair: PairOpener) -> None:
    client, server = await open_pair()
    greeting = b"220 trio-tls.example ready\r\n"

    async def server_side() -> None:
        await server.send_all(greeting)  # runs the server's handshake implicitly
        assert await receive_exactly(server, 6) == b"HELO\r\n"

    async def client_side() -> None:
        # The client only reads: its handshake runs inside receive_some.
        assert await receive_exactly(client, len(greeting)) == greeting
        await client.send_all(b"HELO\r\n")

    await both(server_side, client_side)


# -- closing --------------------------------------------------------------------------------


@pytest.mark.parametrize("closer", ["client", "server"])
async def test_peer_that_closes_right_after_the_handshake(
    open_pair: PairOpener, tls_version: TLSVersionName, closer: str
) -> None:
    client, server = await open_pair()
    closing, staying = (client, server) if closer == "client" else (server, client)

    async def closing_side() -> None:
        await closing.do_handshake()
        await closing.aclose()  # sends close_notify

    async def staying_side() -> None:
        # The handshake completes inside receive_some, then the close_notify reads as EOF.
        assert await staying.receive_some() == b""
        assert await staying.receive_some() == b""
        assert staying.version() == f"TLSv{tls_version}"

    await both(closing_side, staying_side)


@pytest.mark.parametrize("closer", ["client", "server"])
@pytest.mark.parametrize("https_compatible", [False, True], ids=["standard", "https"])
async def test_peer_that_hangs_up_without_close_notify_after_the_handshake(
    open_pair: PairOpener, closer: str, https_compatible: bool
) -> None:
    client, server = await open_pair(https_compatible=https_compatible)
    closing, staying = (client, server) if closer == "client" else (server, client)

    async def closing_side() -> None:
        await closing.do_handshake()
        await trio.aclose_forcefully(closing.transport_stream)  # no close_notify

    async def staying_side() -> None:
        if https_compatible:
            assert await staying.receive_some() == b""  # HTTPS-style: EOF is EOF
            return
        # Standard TLS: EOF without close_notify may be a truncation attack.
        with pytest.raises(trio.BrokenResourceError) as info:
            await staying.receive_some()
        assert isinstance(info.value.__cause__, ssl.SSLEOFError)

    await both(closing_side, staying_side)


async def test_close_notify_crossing_with_send_eof(open_pair: PairOpener) -> None:
    # Both sides finish sending at the same moment, each still reading: each gets
    # all of the other's data, then EOF, and neither sees an error.
    client, server = await open_pair()
    client_data, server_data = b"c" * 3000, b"s" * 5000

    def side(me: SSLStream[Stream], mine: bytes, theirs: bytes) -> Callable[[], Awaitable[None]]:
        async def write() -> None:
            await me.send_all(mine)
            await me.send_eof()
            with pytest.raises(trio.ClosedResourceError):
                await me.send_all(b"late")

        async def read() -> None:
            assert await receive_exactly(me, len(theirs)) == theirs
            assert await me.receive_some() == b""

        async def run() -> None:
            await both(write, read)
            await me.aclose()  # close_notify already sent: nothing more to send

        return run

    await both(side(client, client_data, server_data), side(server, server_data, client_data))


@pytest.fixture
def lockstep_autojump_clock(tls_transport: TransportName) -> MockClock | None:
    """A virtual clock for lockstep runs, so a bounded wait costs no real time."""
    return MockClock(autojump_threshold=0) if tls_transport == "lockstep" else None


async def test_close_notify_crossing_with_aclose(
    open_pair: PairOpener,
    tls_transport: TransportName,
    lockstep_autojump_clock: MockClock | None,
) -> None:
    client, server = await open_pair()
    await handshake_pair(client, server)
    started = trio.current_time()
    await both(client.aclose, server.aclose)
    if tls_transport == "lockstep":
        # Neither side reads, so on a zero-buffer transport neither close_notify can
        # be delivered: aclose() gives up after its bound and closes the transport.
        assert trio.current_time() - started >= CLOSE_NOTIFY_SEND_TIMEOUT
    else:
        assert trio.current_time() - started < CLOSE_NOTIFY_SEND_TIMEOUT


async def test_unwrap_crossing(
    open_pair: PairOpener,
    tls_transport: TransportName,
    lockstep_autojump_clock: MockClock | None,
) -> None:
    client, server = await open_pair()
    await handshake_pair(client, server)
    results: list[tuple[Stream, bytes | bytearray]] = []

    async def unwrap(stream: SSLStream[Stream]) -> None:
        results.append(await stream.unwrap())

    with trio.move_on_after(60) as scope:
        await both(lambda: unwrap(client), lambda: unwrap(server))
    if tls_transport == "lockstep":
        # unwrap() has no time bound and sends before it reads: two at once on a
        # zero-buffer transport wait for each other forever. One side must read first
        # (see test_unwrap_with_trailing_plaintext).
        assert scope.cancelled_caught
        return
    assert not scope.cancelled_caught
    assert [trailing for _, trailing in results] == [b"", b""]
    for transport, _ in results:
        await transport.aclose()  # unwrap() handed it to us


async def test_unwrap_with_trailing_plaintext(open_pair: PairOpener) -> None:
    client, server = await open_pair()
    plaintext = b"230 back to plaintext\r\n" * 4

    async def client_side() -> None:
        await client.send_all(b"STOPTLS\r\n")
        transport, trailing = await client.unwrap()
        # Whatever the transport delivered together with the close_notify comes back
        # as ``trailing``; the rest is read from the transport. Only the sum is defined.
        rest = await receive_exactly(transport, len(plaintext) - len(trailing))
        assert bytes(trailing) + rest == plaintext
        await transport.aclose()

    async def server_side() -> None:
        assert await receive_exactly(server, 9) == b"STOPTLS\r\n"
        assert await server.receive_some() == b""  # the client's close_notify
        transport, trailing = await server.unwrap()
        assert trailing == b""
        await transport.send_all(plaintext)  # right behind our close_notify
        await transport.aclose()

    await both(client_side, server_side)
