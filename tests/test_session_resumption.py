"""Session resumption: ``resumable_session()`` waits for a ticket the client can
resume with, and ``session=`` resumes it, over memory pairs and real TCP.

How TLS 1.3 tickets travel (at once over a socket with room; otherwise held back
until the server writes or closes) is tested here, in test_stream.py and, for what
users can rely on, in test_ordering.py.
"""

from __future__ import annotations

import ssl
from collections.abc import Awaitable, Callable
from typing import Any

import pytest
import trio
import trio.testing

import trio_tls._driver
from trio_tls import NoSessionTicketError, SSLStream
from trio_tls.testing import (
    SERVER_NAME,
    TLSTestCA,
    TLSVersionName,
    handshake_pair,
    tls_lockstep_stream_pair,
    tls_memory_stream_pair,
)

from .helpers.streams import (
    MEMORY_AND_TCP,
    Transports,
    handshaken_pair,
    loopback_tcp_pair,
    serving,
)


async def first_connection_session(
    transports: Transports, client_ctx: ssl.SSLContext, server_ctx: ssl.SSLContext
) -> ssl.SSLSession:
    async with handshaken_pair(transports, client_ctx, server_ctx) as (client, server):
        async with trio.open_nursery() as nursery:
            nursery.start_soon(server.send_all, b"hello")
            with trio.fail_after(10):
                session: ssl.SSLSession = await client.resumable_session()
        assert not client.session_reused
        # The data read while waiting for the ticket was kept, not lost.
        assert await client.receive_some() == b"hello"
        return session


@pytest.mark.parametrize("transports", MEMORY_AND_TCP)
async def test_second_connection_resumes(
    tls_ca: TLSTestCA, tls_version: TLSVersionName, transports: Transports
) -> None:
    client_ctx = tls_ca.client_context(version=tls_version)
    server_ctx = tls_ca.server_context(version=tls_version)
    session = await first_connection_session(transports, client_ctx, server_ctx)
    async with handshaken_pair(transports, client_ctx, server_ctx, session=session) as (
        client,
        server,
    ):
        assert client.session_reused
        assert server.session_reused
        assert client.statistics().session_reused


async def test_server_that_never_writes_still_delivers_tickets(tls_ca: TLSTestCA) -> None:
    """https_compatible server closes without writing or close_notify: trio loses the
    tickets there; trio_tls sends them as it closes."""
    client_raw, server_raw = trio.testing.memory_stream_pair()
    client = SSLStream(
        client_raw, tls_ca.client_context(version="1.3"), server_hostname=SERVER_NAME
    )
    server = SSLStream(
        server_raw, tls_ca.server_context(version="1.3"), server_side=True, https_compatible=True
    )

    async def serve() -> None:
        assert await server.receive_some() == b"request"
        await server.aclose()

    async with trio.open_nursery() as nursery:
        nursery.start_soon(serve)
        await client.send_all(b"request")
        with trio.fail_after(5):
            session = await client.resumable_session()
    assert session.has_ticket


async def test_close_timeout_bounds_delivering_held_tickets(
    tls_ca: TLSTestCA, autojump_clock: trio.testing.MockClock
) -> None:
    """An https_compatible server over a transport without a buffer, to a client that
    never reads again: delivering the held tickets as it closes waits only for what
    is left of close_timeout, not ALERT_FLUSH_TIMEOUT (virtual time)."""
    client_raw, server_raw = trio.testing.lockstep_stream_pair()
    client = SSLStream(
        client_raw, tls_ca.client_context(version="1.3"), server_hostname=SERVER_NAME
    )
    server = SSLStream(
        server_raw,
        tls_ca.server_context(version="1.3"),
        server_side=True,
        https_compatible=True,
        close_timeout=0.2,
    )
    await handshake_pair(client, server)
    started = trio.current_time()
    await server.aclose()
    took = trio.current_time() - started
    assert took == pytest.approx(0.2, abs=0.01)
    assert took < trio_tls._driver.ALERT_FLUSH_TIMEOUT
    await client.aclose()


async def test_no_ticket_before_close_is_a_clear_error(tls_ca: TLSTestCA) -> None:
    server_ctx = tls_ca.server_context(version="1.3")
    server_ctx.options |= ssl.OP_NO_TICKET
    server_ctx.num_tickets = 0
    client, server = tls_memory_stream_pair(
        client_context=tls_ca.client_context(version="1.3"), server_context=server_ctx
    )
    async with trio.open_nursery() as nursery:
        nursery.start_soon(server.do_handshake)
        await client.do_handshake()
    await server.aclose()
    with pytest.raises(NoSessionTicketError, match="closed"):
        await client.resumable_session()


async def test_resumable_session_misuse(tls_ca: TLSTestCA) -> None:
    client, server = tls_memory_stream_pair(tls_ca)
    with pytest.raises(ValueError, match="client"):
        await server.resumable_session()
    async with trio.open_nursery() as nursery:
        nursery.start_soon(server.do_handshake)
        nursery.start_soon(client.receive_some)
        await trio.testing.wait_all_tasks_blocked()
        with pytest.raises(trio.BusyResourceError, match="resumable_session"):
            await client.resumable_session()
        await server.send_all(b"x")


async def http_like(stream: SSLStream[trio.SocketStream]) -> None:
    """The client speaks first; the server writes only once it has the request."""
    request = await stream.receive_some()
    await stream.send_all(b"re: " + request)
    await stream.aclose()


async def smtp_like(stream: SSLStream[trio.SocketStream]) -> None:
    """The server speaks first."""
    await stream.send_all(b"220 ready\r\n")
    await stream.send_all(b"re: " + await stream.receive_some())
    await stream.aclose()


@pytest.mark.parametrize(
    "handler",
    [pytest.param(http_like, id="client_first"), pytest.param(smtp_like, id="server_first")],
)
async def test_resumption_as_the_readme_shows_it(
    tls_ca: TLSTestCA, handler: Callable[[SSLStream[trio.SocketStream]], Awaitable[None]]
) -> None:
    """TLS 1.3 over TCP: ask for the session as soon as the handshake is done."""
    client_ctx = tls_ca.client_context(version="1.3")

    async def connect(port: int, **kwargs: Any) -> SSLStream[trio.SocketStream]:
        tcp = await trio.open_tcp_stream("127.0.0.1", port)
        return SSLStream(tcp, client_ctx, server_hostname=SERVER_NAME, **kwargs)

    async with serving(handler, tls_ca.server_context(version="1.3")) as port:
        first = await connect(port)
        await first.do_handshake()
        # Right after the handshake, whoever speaks first: over TCP the server's
        # tickets went out with its handshake, so this waits for no server write.
        with trio.fail_after(5):
            session = await first.resumable_session()
        if handler is smtp_like:
            assert await first.receive_some() == b"220 ready\r\n"  # kept, not lost
        await first.send_all(b"GET /")
        assert await first.receive_some() == b"re: GET /"
        await first.aclose()

        second = await connect(port, session=session)
        await second.do_handshake()
        assert second.session_reused
        await second.aclose()


async def test_tls13_tickets_arrive_right_after_the_handshake_over_tcp(
    tls_ca: TLSTestCA,
) -> None:
    """A client that asks before it sends anything gets its session from a server
    that is idle after the handshake: the kernel took the tickets at once, as from
    OpenSSL's own server. (Both ends are trio_tls; the server never writes or reads.)"""
    client_transport, server_transport = await loopback_tcp_pair()
    client = SSLStream(
        client_transport, tls_ca.client_context(version="1.3"), server_hostname=SERVER_NAME
    )
    server = SSLStream(server_transport, tls_ca.server_context(version="1.3"), server_side=True)
    try:
        with trio.fail_after(10):
            await handshake_pair(client, server)
            session = await client.resumable_session()
        assert session.has_ticket
        assert server.statistics().wire_bytes_sent > 0
    finally:
        await trio.aclose_forcefully(client)
        await trio.aclose_forcefully(server)


async def test_tls13_tickets_still_wait_for_a_write_on_a_zero_buffer_transport(
    tls_ca: TLSTestCA, autojump_clock: trio.testing.MockClock
) -> None:
    """A lockstep pair cannot take the tickets without waiting for the client to
    read, so they still go out with the server's first write (see the deadlock test
    in test_stream.py); the client asking first waits until then, data kept."""
    client, server = tls_lockstep_stream_pair(tls_ca, version="1.3")
    await handshake_pair(client, server)
    with trio.move_on_after(1) as waiting:
        await client.resumable_session()
    assert waiting.cancelled_caught
    async with trio.open_nursery() as nursery:
        nursery.start_soon(server.send_all, b"first write")
        with trio.fail_after(5):
            session = await client.resumable_session()
    assert session.has_ticket
    assert await client.receive_some() == b"first write"
