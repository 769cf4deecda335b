"""Features no peer library offers: half-close, resumption, post-handshake auth,
deadlines, statistics, certificate rotation and SNI, over memory pairs and real TCP."""

from __future__ import annotations

import contextlib
import logging
import re
import ssl
import sys
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from functools import partial
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
    ca: TLSTestCA, version: TLSVersionName, transports: Transports
) -> None:
    """send_eof() ends our direction; the peer still answers. Under TLS 1.2 this is
    trio_tls's lenient mode (RFC 5246 wants an immediate close_notify in reply, but
    OpenSSL peers, trio_tls included, keep sending)."""
    async with connected(
        transports, ca.client_context(version=version), ca.server_context(version=version)
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


async def test_is_a_half_closeable_stream(ca: TLSTestCA) -> None:
    client, _ = tls_memory_stream_pair(ca)
    assert isinstance(client, trio.abc.HalfCloseableStream)


def test_statistics_before_the_handshake(ca: TLSTestCA) -> None:
    client, _ = tls_memory_stream_pair(ca)
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
    ca: TLSTestCA, version: TLSVersionName, transports: Transports
) -> None:
    client_ctx = ca.client_context(version=version)
    server_ctx = ca.server_context(version=version)
    session = await first_connection_session(transports, client_ctx, server_ctx)
    async with connected(transports, client_ctx, server_ctx, session=session) as (client, server):
        assert client.session_reused
        assert server.session_reused
        assert client.statistics().session_reused


async def test_server_that_never_writes_still_delivers_tickets(ca: TLSTestCA) -> None:
    """https_compatible server closes without writing or close_notify: trio loses the
    tickets there; trio_tls sends them as it closes."""
    client_raw, server_raw = trio.testing.memory_stream_pair()
    client = SSLStream(client_raw, ca.client_context(version="1.3"), server_hostname=SERVER_NAME)
    server = SSLStream(
        server_raw, ca.server_context(version="1.3"), server_side=True, https_compatible=True
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


async def http_like(stream: SSLStream[trio.SocketStream]) -> None:
    """The client speaks first; our first write carries the TLS 1.3 tickets."""
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
    ca: TLSTestCA, handler: Callable[[SSLStream[trio.SocketStream]], Awaitable[None]]
) -> None:
    """TLS 1.3 over TCP: ask for the session once the server has had reason to write."""
    client_ctx = ca.client_context(version="1.3")

    async def connect(port: int, **kwargs: Any) -> SSLStream[trio.SocketStream]:
        tcp = await trio.open_tcp_stream("127.0.0.1", port)
        return SSLStream(tcp, client_ctx, server_hostname=SERVER_NAME, **kwargs)

    async with trio.open_nursery() as nursery:
        listeners = await nursery.start(
            partial(
                serve_ssl_over_tcp, handler, 0, ca.server_context(version="1.3"), host="127.0.0.1"
            )
        )
        port = listeners[0].transport_listener.socket.getsockname()[1]
        first = await connect(port)
        await first.do_handshake()
        if handler is http_like:
            # Asking first would wait for a server that waits for us.
            with trio.move_on_after(0.3) as waiting:
                await first.resumable_session()
            assert waiting.cancelled_caught
            await first.send_all(b"GET /")  # the README's order: speak, then ask
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
        nursery.cancel_scope.cancel()


async def test_no_ticket_before_close_is_a_clear_error(ca: TLSTestCA) -> None:
    server_ctx = ca.server_context(version="1.3")
    server_ctx.options |= ssl.OP_NO_TICKET
    server_ctx.num_tickets = 0
    client, server = tls_memory_stream_pair(
        client_context=ca.client_context(version="1.3"), server_context=server_ctx
    )
    async with trio.open_nursery() as nursery:
        nursery.start_soon(server.do_handshake)
        await client.do_handshake()
    await server.aclose()
    with pytest.raises(NoSessionTicketError, match="closed"):
        await client.resumable_session()


async def test_resumable_session_misuse(ca: TLSTestCA) -> None:
    client, server = tls_memory_stream_pair(ca)
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
    ca: TLSTestCA, transports: Transports
) -> None:
    client_ctx, server_ctx = pha_contexts(ca)
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


async def test_post_handshake_auth_refused_by_client_context(ca: TLSTestCA) -> None:
    client_ctx, server_ctx = pha_contexts(ca, client_offers=False)
    client, server = tls_memory_stream_pair(client_context=client_ctx, server_context=server_ctx)
    async with trio.open_nursery() as nursery:
        nursery.start_soon(client.do_handshake)
        await server.do_handshake()
    with pytest.raises(PostHandshakeAuthError, match="post_handshake_auth") as info:
        await server.verify_client_post_handshake()
    assert isinstance(info.value.__cause__, ssl.SSLError)
    await server.send_all(b"still usable")  # refusing is not a failure of the stream
    assert await client.receive_some() == b"still usable"


async def test_post_handshake_auth_with_untrusted_certificate_breaks(ca: TLSTestCA) -> None:
    client_ctx, server_ctx = pha_contexts(ca)
    stranger = TLSTestCA()
    client_ctx = ca.client_context(version="1.3")
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


async def test_post_handshake_auth_needs_tls13_and_a_server(ca: TLSTestCA) -> None:
    client, server = tls_memory_stream_pair(ca, version="1.2")
    async with trio.open_nursery() as nursery:
        nursery.start_soon(client.do_handshake)
        await server.do_handshake()
    with pytest.raises(ValueError, match=r"TLS 1\.3"):
        await server.verify_client_post_handshake()
    with pytest.raises(ValueError, match="server"):
        await client.verify_client_post_handshake()


# -- deadlines on the server helpers ---------------------------------------------------


async def test_slow_handshake_on_a_listener_is_cut_off_and_others_are_served(
    ca: TLSTestCA, version: TLSVersionName, caplog: pytest.LogCaptureFixture
) -> None:
    """The silent client is dropped at the deadline and logged; the handler, which
    has no try, only ever sees the well-behaved one."""
    caplog.set_level(logging.INFO, logger="trio_tls.server")
    served: list[bytes] = []

    async def handler(stream: SSLStream[trio.SocketStream]) -> None:
        data = await stream.receive_some()
        await stream.send_all(data)
        served.append(data)
        await stream.aclose()

    async with trio.open_nursery() as nursery:
        listeners: list[SSLListener[trio.SocketStream]] = await nursery.start(
            lambda task_status: serve_ssl_over_tcp(
                handler,
                0,
                ca.server_context(version=version),
                host="127.0.0.1",
                handshake_timeout=0.3,
                task_status=task_status,
            )
        )
        port = listeners[0].transport_listener.socket.getsockname()[1]  # type: ignore[attr-defined]
        idle = await trio.open_tcp_stream("127.0.0.1", port)  # never says hello
        client = SSLStream(
            await trio.open_tcp_stream("127.0.0.1", port),
            ca.client_context(version=version),
            server_hostname=SERVER_NAME,
        )
        await client.send_all(b"well-behaved")
        assert await client.receive_some() == b"well-behaved"
        with trio.fail_after(5):
            assert await idle.receive_some() == b""  # the deadline hung up on it
        await idle.aclose()
        await client.aclose()
        nursery.cancel_scope.cancel()
    assert served == [b"well-behaved"]
    [dropped] = [r.getMessage() for r in caplog.records if r.name == "trio_tls.server"]
    assert dropped.endswith("the client took too long to complete the handshake")


# -- statistics ----------------------------------------------------------------------


async def test_statistics_count_plaintext_and_wire_bytes(
    ca: TLSTestCA, version: TLSVersionName
) -> None:
    async with connected(
        tcp_transports, ca.client_context(version=version), ca.server_context(version=version)
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
        assert stats.version == f"TLSv{version}"
        assert stats.cipher == client.cipher()[0]  # type: ignore[index]
        assert stats.bytes_sent == len(payload) and stats.bytes_received == 0
        assert stats.wire_bytes_sent > len(payload)  # records add framing and tags
        assert stats.handshake_duration is not None and stats.handshake_duration > 0
        assert stats.transport_sends >= 2 and stats.transport_receives >= 1
        assert server.statistics().bytes_received == len(payload)
        assert server.statistics().wire_bytes_received == stats.wire_bytes_sent


# -- certificate rotation ------------------------------------------------------------


async def test_rotating_the_listener_context_affects_new_connections_only(
    ca: TLSTestCA, version: TLSVersionName
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
            trust.client_context(version=version),
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
                ca.server_context(version=version),
                host="127.0.0.1",
                task_status=task_status,
            )
        )
        port = listeners[0].transport_listener.socket.getsockname()[1]  # type: ignore[attr-defined]
        old = await connect(port, ca)
        listeners[0].ssl_context = new_ca.server_context(version=version)  # rotate
        new = await connect(port, new_ca)
        with pytest.raises(trio.BrokenResourceError) as info:
            await connect(port, ca)  # the old CA no longer matches
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
    tmp_path: Any, version: TLSVersionName, reject_unknown: bool
) -> None:
    openssl = require_tool("openssl")
    cas = {
        name: TLSTestCA(hostnames=(name,))
        for name in ("alpha.example", "beta.example", "fallback.example")
    }
    contexts = {name: ca.server_context(version=version) for name, ca in cas.items()}
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
            name if name in cas else "fallback.example", f"-tls1_{version[-1]}", "-quiet",
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


# Internationalised names: clients send A-labels (RFC 6066), keys may be U-labels.


@pytest.fixture(scope="module")
def idn_ca() -> TLSTestCA:
    """A certificate for internationalised names (trustme stores their A-labels)."""
    return TLSTestCA(hostnames=("bücher.example", "*.bücher.example", "faß.example"))


@pytest.fixture
def unraisable(monkeypatch: pytest.MonkeyPatch) -> list[sys.UnraisableHookArgs]:
    """What CPython reports from places no exception can propagate, an SNI callback
    among them. (pytest's own check would fail the test too, less plainly.)"""
    reported: list[sys.UnraisableHookArgs] = []
    monkeypatch.setattr(sys, "unraisablehook", reported.append)
    return reported


def test_sni_keys_are_stored_as_clients_send_them() -> None:
    from trio_tls._sni import _key

    assert _key("Bücher.Example.") == "xn--bcher-kva.example"
    assert _key("*.bücher.example") == "*.xn--bcher-kva.example"
    # IDNA 2008, as trio_tls's client encodes it; IDNA 2003 would say fass.example.
    assert _key("faß.example") == "xn--fa-hia.example"
    assert _key("A.Example") == "a.example"


@pytest.mark.parametrize(
    "key",
    [
        pytest.param("bü_cher.example", id="underscore"),
        pytest.param("-bücher.example", id="leading_hyphen"),
        pytest.param("a.*.example", id="inner_wildcard"),
    ],
)
def test_an_invalid_sni_key_is_a_clear_error(key: str) -> None:
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    with pytest.raises(ValueError, match=re.escape(repr(key))):
        select_context_by_sni(context, {key: context})


@pytest.mark.parametrize(
    ("key", "client_name"),
    [
        pytest.param("bücher.example", "bücher.example", id="name"),
        pytest.param("*.bücher.example", "laden.bücher.example", id="wildcard"),
        pytest.param("faß.example", "faß.example", id="idna2008_only"),
    ],
)
async def test_sni_selects_the_certificate_of_an_internationalised_name(
    ca: TLSTestCA,
    idn_ca: TLSTestCA,
    version: TLSVersionName,
    unraisable: list[sys.UnraisableHookArgs],
    key: str,
    client_name: str,
) -> None:
    idn_context = idn_ca.server_context(version=version)
    default = select_context_by_sni(ca.server_context(version=version), {key: idn_context})
    client_raw, server_raw = trio.testing.memory_stream_pair()
    # The client checks the certificate against client_name: only idn_ca's passes.
    client = SSLStream(
        client_raw, idn_ca.client_context(version=version), server_hostname=client_name
    )
    server = SSLStream(server_raw, default, server_side=True)
    await handshake(client, server)
    assert server.context is idn_context
    assert unraisable == []


async def suppress_broken(operation: Callable[[], Awaitable[object]]) -> None:
    with contextlib.suppress(trio.BrokenResourceError):
        await operation()


@pytest.mark.parametrize("reject_unknown", [False, True], ids=["fallback", "reject"])
@pytest.mark.parametrize(
    "client_name",
    [
        pytest.param("xn--zz.example", id="bad_punycode"),
        pytest.param("xn--.example", id="empty_punycode"),
        pytest.param("_acme.example", id="underscore"),
    ],
)
async def test_sni_names_that_are_no_valid_idna_are_just_unknown(
    ca: TLSTestCA,
    idn_ca: TLSTestCA,
    unraisable: list[sys.UnraisableHookArgs],
    client_name: str,
    reject_unknown: bool,
) -> None:
    """Whatever ASCII name a client sends, the callback never raises."""
    default = select_context_by_sni(
        ca.server_context(),
        {"bücher.example": idn_ca.server_context()},
        reject_unknown=reject_unknown,
    )
    client_context = ca.client_context()
    client_context.check_hostname = False  # the name is the test; the certificate is not
    client_raw, server_raw = trio.testing.memory_stream_pair()
    client = SSLStream(client_raw, client_context, server_hostname=client_name)
    server = SSLStream(server_raw, default, server_side=True)
    if reject_unknown:
        async with trio.open_nursery() as nursery:
            nursery.start_soon(suppress_broken, server.do_handshake)
            with pytest.raises(trio.BrokenResourceError) as info, trio.fail_after(10):
                await client.do_handshake()
        assert isinstance(info.value.__cause__, ssl.SSLError)
    else:
        await handshake(client, server)
        assert server.context is default
    assert unraisable == []


async def test_sni_lookup_is_case_insensitive_for_a_labels(
    ca: TLSTestCA, idn_ca: TLSTestCA, unraisable: list[sys.UnraisableHookArgs]
) -> None:
    idn_context = idn_ca.server_context()
    default = select_context_by_sni(ca.server_context(), {"bücher.example": idn_context})
    client_raw, server_raw = trio.testing.memory_stream_pair()
    client = SSLStream(client_raw, idn_ca.client_context(), server_hostname="XN--BCHER-KVA.example")
    server = SSLStream(server_raw, default, server_side=True)
    await handshake(client, server)
    assert server.context is idn_context
    assert unraisable == []
