"""Features no peer library offers: half-close, resumption, post-handshake auth,
deadlines, statistics, certificate rotation and SNI, over memory pairs and real TCP."""

from __future__ import annotations

import contextlib
import ssl
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from typing import Any

import pytest
import trio
import trio.testing

from trio_tls import (
    NoSessionTicketError,
    PostHandshakeAuthError,
    SSLListener,
    SSLStream,
    select_context_by_sni,
    serve_ssl_over_tcp,
)
from trio_tls.testing import SERVER_NAME, TLSTestCA, TLSVersionName, tls_memory_stream_pair

from .helpers.peers import require_tool, run_tool

AnyStream = SSLStream[Any]
Transports = Callable[[], Awaitable[tuple[trio.abc.Stream, trio.abc.Stream]]]


async def handshake(client: AnyStream, server: AnyStream) -> None:
    with trio.fail_after(10):
        async with trio.open_nursery() as nursery:
            nursery.start_soon(client.do_handshake)
            nursery.start_soon(server.do_handshake)


async def tcp_transports() -> tuple[trio.SocketStream, trio.SocketStream]:
    listeners = await trio.open_tcp_listeners(0, host="127.0.0.1")
    async with listeners[0] as listener:
        port = listener.socket.getsockname()[1]
        client_tcp = await trio.open_tcp_stream("127.0.0.1", port)
        return client_tcp, await listener.accept()


async def memory_transports() -> tuple[trio.abc.Stream, trio.abc.Stream]:
    return trio.testing.memory_stream_pair()


@asynccontextmanager
async def connected(
    transports: Callable[[], Awaitable[tuple[trio.abc.Stream, trio.abc.Stream]]],
    client_ctx: ssl.SSLContext,
    server_ctx: ssl.SSLContext,
    **client_kwargs: Any,
) -> AsyncIterator[tuple[AnyStream, AnyStream]]:
    """A handshaken client and server over the given transports; closed afterwards."""
    client_raw, server_raw = await transports()
    client = SSLStream(client_raw, client_ctx, server_hostname=SERVER_NAME, **client_kwargs)
    server = SSLStream(server_raw, server_ctx, server_side=True)
    try:
        await handshake(client, server)
        yield client, server
    finally:
        await trio.aclose_forcefully(client)
        await trio.aclose_forcefully(server)


TRANSPORTS = [
    pytest.param(memory_transports, id="memory"),
    pytest.param(tcp_transports, id="tcp"),
]


async def read_to_eof(stream: AnyStream) -> bytes:
    data = bytearray()
    for _ in range(10_000):
        chunk = await stream.receive_some()
        if not chunk:
            return bytes(data)
        data += chunk
    raise AssertionError("no end of stream")


# -- half-close ---------------------------------------------------------------------


@pytest.mark.parametrize("transports", TRANSPORTS)
async def test_half_close_request_then_reply(
    tls_ca: TLSTestCA, tls_version: TLSVersionName, transports: Transports
) -> None:
    """send_eof() ends our direction; the peer still answers. Under TLS 1.2 this is
    trio_tls's lenient mode (RFC 5246 wants an immediate close_notify in reply, but
    OpenSSL peers, trio_tls included, keep sending)."""
    async with connected(
        transports,
        tls_ca.client_context(version=tls_version),
        tls_ca.server_context(version=tls_version),
    ) as (
        client,
        server,
    ):
        with trio.fail_after(10):
            await client.send_all(b"request")
            await client.send_eof()
            await client.send_eof()  # a second call does nothing
            with pytest.raises(trio.ClosedResourceError, match="send_eof"):
                await client.send_all(b"more")
            assert await read_to_eof(server) == b"request"
            await server.send_all(b"reply after your EOF")
            await server.aclose()
            assert await read_to_eof(client) == b"reply after your EOF"
            assert await client.receive_some() == b""  # both close_notifys: still EOF


async def test_is_a_half_closeable_stream(tls_ca: TLSTestCA) -> None:
    client, _ = tls_memory_stream_pair(tls_ca)
    assert isinstance(client, trio.abc.HalfCloseableStream)


def test_statistics_before_the_handshake(tls_ca: TLSTestCA) -> None:
    client, _ = tls_memory_stream_pair(tls_ca)
    stats = client.statistics()
    assert (stats.version, stats.cipher, stats.alpn_protocol) == (None, None, None)
    assert stats.handshake_duration is None and not stats.session_reused
    assert stats.bytes_sent == stats.wire_bytes_sent == stats.transport_sends == 0
    with pytest.raises(AttributeError):
        stats.bytes_sent = 1  # type: ignore[misc]  # frozen


# -- session resumption --------------------------------------------------------------


async def first_connection_session(
    transports: Transports, client_ctx: ssl.SSLContext, server_ctx: ssl.SSLContext
) -> ssl.SSLSession:
    async with connected(transports, client_ctx, server_ctx) as (client, server):
        async with trio.open_nursery() as nursery:
            nursery.start_soon(server.send_all, b"hello")
            with trio.fail_after(10):
                session: ssl.SSLSession = await client.resumable_session()
        assert not client.session_reused
        # The data read while waiting for the ticket was kept, not lost.
        assert await client.receive_some() == b"hello"
        return session


@pytest.mark.parametrize("transports", TRANSPORTS)
async def test_second_connection_resumes(
    tls_ca: TLSTestCA, tls_version: TLSVersionName, transports: Transports
) -> None:
    client_ctx = tls_ca.client_context(version=tls_version)
    server_ctx = tls_ca.server_context(version=tls_version)
    session = await first_connection_session(transports, client_ctx, server_ctx)
    async with connected(transports, client_ctx, server_ctx, session=session) as (client, server):
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


# -- post-handshake client authentication ---------------------------------------------


def pha_contexts(
    ca: TLSTestCA, *, client_offers: bool = True
) -> tuple[ssl.SSLContext, ssl.SSLContext]:
    server_ctx = ca.server_context(version="1.3")
    ca.ca.configure_trust(server_ctx)
    server_ctx.verify_mode = ssl.CERT_REQUIRED
    server_ctx.post_handshake_auth = True  # ask only after the handshake
    client_ctx = ca.client_context(version="1.3", with_client_cert=True)
    client_ctx.post_handshake_auth = client_offers
    return client_ctx, server_ctx


async def client_reads(client: AnyStream, into: list[bytes]) -> None:
    """The client answers a CertificateRequest while it reads."""
    while chunk := await client.receive_some():
        into.append(chunk)


@pytest.mark.parametrize("transports", TRANSPORTS)
async def test_post_handshake_auth_gets_a_verified_certificate(
    tls_ca: TLSTestCA, transports: Transports
) -> None:
    client_ctx, server_ctx = pha_contexts(tls_ca)
    async with connected(transports, client_ctx, server_ctx) as (client, server):
        received: list[bytes] = []
        async with trio.open_nursery() as nursery:
            nursery.start_soon(client_reads, client, received)
            await server.do_handshake()
            assert server.getpeercert() is None  # not asked for during the handshake
            await client.send_all(b"sent before the request")
            with trio.fail_after(10):
                await server.verify_client_post_handshake()
            peer = server.getpeercert()
            assert peer is not None
            assert ("email", "client@trio-tls.example") in peer["subjectAltName"]
            # Application data that arrived while waiting is still delivered, in order.
            assert await server.receive_some() == b"sent before the request"
            await server.send_all(b"welcome")
            await server.aclose()
        assert b"".join(received) == b"welcome"


async def test_post_handshake_auth_refused_by_client_context(tls_ca: TLSTestCA) -> None:
    client_ctx, server_ctx = pha_contexts(tls_ca, client_offers=False)
    client, server = tls_memory_stream_pair(client_context=client_ctx, server_context=server_ctx)
    async with trio.open_nursery() as nursery:
        nursery.start_soon(client.do_handshake)
        await server.do_handshake()
    with pytest.raises(PostHandshakeAuthError, match="post_handshake_auth") as info:
        await server.verify_client_post_handshake()
    assert isinstance(info.value.__cause__, ssl.SSLError)
    await server.send_all(b"still usable")  # refusing is not a failure of the stream
    assert await client.receive_some() == b"still usable"


async def test_post_handshake_auth_with_untrusted_certificate_breaks(tls_ca: TLSTestCA) -> None:
    client_ctx, server_ctx = pha_contexts(tls_ca)
    stranger = TLSTestCA()
    client_ctx = tls_ca.client_context(version="1.3")
    stranger.client_cert.configure_cert(client_ctx)
    client_ctx.post_handshake_auth = True
    client, server = tls_memory_stream_pair(client_context=client_ctx, server_context=server_ctx)
    client_errors: list[BaseException | None] = []

    async def client_reads_until_told_off() -> None:
        with pytest.raises(trio.BrokenResourceError) as info:
            await client_reads(client, [])
        client_errors.append(info.value.__cause__)

    async with trio.open_nursery() as nursery:
        nursery.start_soon(client_reads_until_told_off)
        await server.do_handshake()
        with pytest.raises(trio.BrokenResourceError) as info, trio.fail_after(10):
            await server.verify_client_post_handshake()
        assert isinstance(info.value.__cause__, ssl.SSLCertVerificationError)
    # The server's alert reached the client, which learns the reason, not a bare EOF.
    assert isinstance(client_errors[0], ssl.SSLError)
    assert not isinstance(client_errors[0], ssl.SSLEOFError)


async def test_post_handshake_auth_needs_tls13_and_a_server(tls_ca: TLSTestCA) -> None:
    client, server = tls_memory_stream_pair(tls_ca, version="1.2")
    async with trio.open_nursery() as nursery:
        nursery.start_soon(client.do_handshake)
        await server.do_handshake()
    with pytest.raises(ValueError, match=r"TLS 1\.3"):
        await server.verify_client_post_handshake()
    with pytest.raises(ValueError, match="server"):
        await client.verify_client_post_handshake()


# -- deadlines on the server helpers ---------------------------------------------------


async def test_slow_handshake_on_a_listener_is_cut_off_and_others_are_served(
    tls_ca: TLSTestCA, tls_version: TLSVersionName
) -> None:
    outcomes: list[BaseException | bytes] = []
    both_done = trio.Event()

    async def handler(stream: SSLStream[trio.SocketStream]) -> None:
        try:
            data = await stream.receive_some()
            await stream.send_all(data)
            outcomes.append(data)
        except trio.BrokenResourceError as exc:
            outcomes.append(exc)
        finally:
            await trio.aclose_forcefully(stream)
            if len(outcomes) == 2:
                both_done.set()

    async with trio.open_nursery() as nursery:
        listeners: list[SSLListener[trio.SocketStream]] = await nursery.start(
            lambda task_status: serve_ssl_over_tcp(
                handler,
                0,
                tls_ca.server_context(version=tls_version),
                host="127.0.0.1",
                handshake_timeout=0.3,
                task_status=task_status,
            )
        )
        port = listeners[0].transport_listener.socket.getsockname()[1]  # type: ignore[attr-defined]
        idle = await trio.open_tcp_stream("127.0.0.1", port)  # never says hello
        client = SSLStream(
            await trio.open_tcp_stream("127.0.0.1", port),
            tls_ca.client_context(version=tls_version),
            server_hostname=SERVER_NAME,
        )
        await client.send_all(b"well-behaved")
        assert await client.receive_some() == b"well-behaved"
        with trio.fail_after(5):
            await both_done.wait()
        await idle.aclose()
        await client.aclose()
        nursery.cancel_scope.cancel()
    slow = [o for o in outcomes if isinstance(o, BaseException)]
    assert len(slow) == 1
    assert isinstance(slow[0].__cause__, trio.TooSlowError)


# -- statistics ----------------------------------------------------------------------


async def test_statistics_count_plaintext_and_wire_bytes(
    tls_ca: TLSTestCA, tls_version: TLSVersionName
) -> None:
    async with connected(
        tcp_transports,
        tls_ca.client_context(version=tls_version),
        tls_ca.server_context(version=tls_version),
    ) as (
        client,
        server,
    ):
        payload = b"z" * 50_000
        async with trio.open_nursery() as nursery:
            nursery.start_soon(client.send_all, payload)
            got = bytearray()
            while len(got) < len(payload):
                got += await server.receive_some()
        stats = client.statistics()
        assert stats.version == f"TLSv{tls_version}"
        assert stats.cipher == client.cipher()[0]  # type: ignore[index]
        assert stats.bytes_sent == len(payload) and stats.bytes_received == 0
        assert stats.wire_bytes_sent > len(payload)  # records add framing and tags
        assert stats.handshake_duration is not None and stats.handshake_duration > 0
        assert stats.transport_sends >= 2 and stats.transport_receives >= 1
        assert server.statistics().bytes_received == len(payload)
        assert server.statistics().wire_bytes_received == stats.wire_bytes_sent


# -- certificate rotation ------------------------------------------------------------


async def test_rotating_the_listener_context_affects_new_connections_only(
    tls_ca: TLSTestCA, tls_version: TLSVersionName
) -> None:
    new_ca = TLSTestCA()

    async def echo(stream: SSLStream[trio.SocketStream]) -> None:
        # The client that still trusts the old CA fails its handshake: expected here.
        with trio.move_on_after(10), contextlib.suppress(trio.BrokenResourceError):
            while data := await stream.receive_some():
                await stream.send_all(data)
        await trio.aclose_forcefully(stream)

    async def connect(port: int, trust: TLSTestCA) -> SSLStream[trio.SocketStream]:
        stream = SSLStream(
            await trio.open_tcp_stream("127.0.0.1", port),
            trust.client_context(version=tls_version),
            server_hostname=SERVER_NAME,
        )
        try:
            await stream.do_handshake()
        except BaseException:
            await trio.aclose_forcefully(stream)
            raise
        return stream

    async with trio.open_nursery() as nursery:
        listeners: list[SSLListener[trio.SocketStream]] = await nursery.start(
            lambda task_status: serve_ssl_over_tcp(
                echo,
                0,
                tls_ca.server_context(version=tls_version),
                host="127.0.0.1",
                task_status=task_status,
            )
        )
        port = listeners[0].transport_listener.socket.getsockname()[1]  # type: ignore[attr-defined]
        old = await connect(port, tls_ca)
        listeners[0].ssl_context = new_ca.server_context(version=tls_version)  # rotate
        new = await connect(port, new_ca)
        with pytest.raises(trio.BrokenResourceError) as info:
            await connect(port, tls_ca)  # the old CA no longer matches
        assert isinstance(info.value.__cause__, ssl.SSLCertVerificationError)
        for stream in (old, new):  # the old connection keeps working with its old cert
            await stream.send_all(b"ping")
            assert await stream.receive_some() == b"ping"
        assert old.getpeercert(binary_form=True) != new.getpeercert(binary_form=True)
        await old.aclose()
        await new.aclose()
        nursery.cancel_scope.cancel()


# -- several names on one listener ----------------------------------------------------


def test_sni_lookup_rules() -> None:
    from trio_tls._sni import _lookup

    a, b = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER), ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    table = {"a.example": a, "*.b.example": b}
    assert _lookup(table, "A.Example.") is a
    assert _lookup(table, "x.b.example") is b
    assert _lookup(table, "y.x.b.example") is None  # a wildcard covers one label
    assert _lookup(table, "b.example") is None


@pytest.mark.parametrize("reject_unknown", [False, True], ids=["fallback", "reject"])
async def test_sni_selects_the_certificate_openssl_s_client(
    tmp_path: Any, tls_version: TLSVersionName, reject_unknown: bool
) -> None:
    openssl = require_tool("openssl")
    cas = {
        name: TLSTestCA(hostnames=(name,))
        for name in ("alpha.example", "beta.example", "fallback.example")
    }
    contexts = {name: ca.server_context(version=tls_version) for name, ca in cas.items()}
    default = select_context_by_sni(
        contexts.pop("fallback.example"), contexts, reject_unknown=reject_unknown
    )

    async def hello(stream: SSLStream[trio.SocketStream]) -> None:
        with trio.move_on_after(10), contextlib.suppress(trio.BrokenResourceError):
            await stream.do_handshake()  # the SNI callback runs during the handshake
            await stream.send_all(f"served by {stream.context is default}\n".encode())
            await stream.aclose()

    async def ask(port: int, name: str) -> tuple[int, str]:
        ca_file = tmp_path / f"{name}.pem"
        cas[name if name in cas else "fallback.example"].ca.cert_pem.write_to_path(str(ca_file))
        command = [
            openssl, "s_client", "-connect", f"127.0.0.1:{port}", "-servername", name,
            "-CAfile", str(ca_file), "-verify_return_error", "-verify_hostname",
            name if name in cas else "fallback.example", f"-tls1_{tls_version[-1]}", "-quiet",
        ]  # fmt: skip
        with trio.fail_after(15):
            done = await run_tool(command)
        return done.returncode, done.stdout.decode(errors="replace")

    async with trio.open_nursery() as nursery:
        listeners: list[SSLListener[trio.SocketStream]] = await nursery.start(
            lambda task_status: serve_ssl_over_tcp(
                hello, 0, default, host="127.0.0.1", task_status=task_status
            )
        )
        port = listeners[0].transport_listener.socket.getsockname()[1]  # type: ignore[attr-defined]
        for name in ("alpha.example", "beta.example"):
            code, out = await ask(port, name)
            assert code == 0 and "served by False" in out, out
        code, out = await ask(port, "unknown.example")
        if reject_unknown:
            assert code != 0
        else:
            assert code == 0 and "served by True" in out, out
        nursery.cancel_scope.cancel()
