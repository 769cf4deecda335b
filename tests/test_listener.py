"""The listener and TCP helpers: trio's own scenarios, and clients that fail.

``serve_ssl_over_tcp`` finishes each connection's handshake before calling the
handler, so a client that fails it (silent past the deadline, an untrusted
certificate, plaintext HTTP, a reset) is logged and dropped instead of raising
``BrokenResourceError`` in a handler that, like the README's, has no ``try``.
"""

from __future__ import annotations

import contextlib
import logging
import re
import socket
import ssl
import struct
from collections.abc import AsyncIterator, Awaitable, Callable
from functools import partial
from typing import Literal, NoReturn

import pytest
import trio
import trio.testing
from trio.socket import AF_INET, IPPROTO_TCP, SOCK_STREAM

from trio_tls import (
    NeedHandshakeError,
    SSLListener,
    SSLStream,
    open_ssl_over_tcp_listeners,
    open_ssl_over_tcp_stream,
    serve_ssl_over_tcp,
)
from trio_tls._listener import DEFAULT_SERVER_HANDSHAKE_TIMEOUT
from trio_tls.testing import SERVER_NAME, TLSTestCA, TLSVersionName

from .helpers import streams
from .helpers.fds import open_fds

TCPStream = SSLStream[trio.SocketStream]
Handler = Callable[[TCPStream], Awaitable[object]]

#: Every scenario here ends in well under a second; this only stops a hang.
DEADLINE = 20.0
#: Clients of each failing kind, all at once.
CLIENTS = 100


def local_address(tcp: trio.SocketStream) -> str:
    """The client's own address: what the server's log must name."""
    host, port = tcp.socket.getsockname()[:2]
    return f"{host}:{port}"


@contextlib.asynccontextmanager
async def serving(
    handler: Handler,
    context: ssl.SSLContext,
    *,
    handshake_timeout: float | None = DEFAULT_SERVER_HANDSHAKE_TIMEOUT,
) -> AsyncIterator[int]:
    """serve_ssl_over_tcp on 127.0.0.1; yields the port.

    On exit the accept loop stops and every connection's task is waited for, so
    everything the server logs is in by then, and an exception that escaped a
    handler fails the test here.
    """
    async with (
        trio.open_nursery() as connections,
        streams.serving(
            handler, context, handler_nursery=connections, handshake_timeout=handshake_timeout
        ) as port,
    ):
        yield port


async def read_until_closed(stream: trio.abc.ReceiveStream) -> None:
    """Until the server hangs up: EOF or a reset, either is fine for a dropped client."""
    for _ in range(1_000):
        try:
            if not await stream.receive_some():
                return
        except trio.BrokenResourceError:
            return
    raise AssertionError("the server never closed the connection")


def dropped_by_handshake(records: list[logging.LogRecord]) -> dict[str, str]:
    """Client address -> reason, from the server's log."""
    found: dict[str, str] = {}
    for record in records:
        match = re.fullmatch(r"TLS handshake with (.+?) failed: (.+)", record.getMessage())
        if record.name == "trio_tls.server" and match:
            assert record.levelno == logging.INFO
            assert match[1] not in found, f"{match[1]} logged twice"
            found[match[1]] = match[2]
    return found


# -- trio's tests of the TCP helpers (trio/_tests/test_highlevel_ssl_helpers.py) ------------
#
# The same scenarios against trio_tls's helpers. Adapted: certificates come from our
# testing kit instead of trio's test_ssl module; the client context is pinned to each
# TLS version (trio caps "tls12" at 1.2 and leaves "tls13" open); isinstance checks name trio_tls's
# classes (a drop-in, not a subclass); and, trio_tls's documented extension,
# serve_ssl_over_tcp logs the clients that fail their handshake instead of handing
# them to the handler; the first test also checks the log for the two refusals.

TRIO_TEST_NAME = "trio-test-1.example.org"


async def echo_handler(stream: trio.abc.Stream) -> None:
    async with stream:
        try:
            while True:
                data = await stream.receive_some(10000)
                if not data:
                    break
                await stream.send_all(data)
        except trio.BrokenResourceError:
            pass


AddressInfo = (
    tuple[Literal[socket.AddressFamily.AF_INET], socket.SocketKind, int, str, tuple[str, int]]
    | tuple[
        Literal[socket.AddressFamily.AF_INET6],
        socket.SocketKind,
        int,
        str,
        tuple[str, int, int, int] | tuple[int, bytes],
    ]
)


class FakeHostnameResolver(trio.abc.HostnameResolver):
    """Resolves every name to the given address."""

    def __init__(self, sockaddr: tuple[str, int]) -> None:
        self.sockaddr = sockaddr

    async def getaddrinfo(
        self,
        host: bytes | None,
        port: bytes | str | int | None,
        family: int = 0,
        type: int = 0,
        proto: int = 0,
        flags: int = 0,
    ) -> list[AddressInfo]:
        return [(AF_INET, SOCK_STREAM, IPPROTO_TCP, "", self.sockaddr)]

    async def getnameinfo(
        self, sockaddr: tuple[str, int] | tuple[str, int, int, int], flags: int
    ) -> NoReturn:
        raise NotImplementedError


async def test_open_ssl_over_tcp_stream_and_everything_else(
    tls_version: TLSVersionName, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="trio_tls.server")
    ca = TLSTestCA(hostnames=(TRIO_TEST_NAME,))
    client_ctx = ca.client_context(version=tls_version)
    async with trio.open_nursery() as nursery:
        (listener,) = await nursery.start(
            partial(serve_ssl_over_tcp, echo_handler, 0, ca.server_context(), host="127.0.0.1")
        )
        async with listener:
            sockaddr = listener.transport_listener.socket.getsockname()
            trio.socket.set_custom_hostname_resolver(FakeHostnameResolver(sockaddr))

            # We don't have the right trust set up
            # (checks that ssl_context=None is doing some validation)
            stream = await open_ssl_over_tcp_stream(TRIO_TEST_NAME, 80)
            async with stream:
                with pytest.raises(trio.BrokenResourceError):
                    await stream.do_handshake()

            # We have the trust but not the hostname
            # (checks custom ssl_context + hostname checking)
            stream = await open_ssl_over_tcp_stream("xyzzy.example.org", 80, ssl_context=client_ctx)
            async with stream:
                with pytest.raises(trio.BrokenResourceError):
                    await stream.do_handshake()

            # This one should work!
            stream = await open_ssl_over_tcp_stream(TRIO_TEST_NAME, 80, ssl_context=client_ctx)
            async with stream:
                assert isinstance(stream, SSLStream)
                assert stream.server_hostname == TRIO_TEST_NAME
                await stream.send_all(b"x")
                assert await stream.receive_some(1) == b"x"

            # Check https_compatible settings are being passed through
            # trio checks its private flag; ours lives on the engine, stored once.
            assert not stream._engine.ragged_eof_ok
            stream = await open_ssl_over_tcp_stream(
                TRIO_TEST_NAME,
                80,
                ssl_context=client_ctx,
                https_compatible=True,
                # also, smoke test happy_eyeballs_delay
                happy_eyeballs_delay=1,
            )
            async with stream:
                assert stream._engine.ragged_eof_ok

            # Stop the echo server
            nursery.cancel_scope.cancel()
    # trio_tls: the two failed handshakes were logged, with why each client refused us.
    reasons = set(dropped_by_handshake(caplog.records).values())
    assert {"the client does not trust our CA", "the client rejected our certificate"} <= reasons


async def test_open_ssl_over_tcp_listeners(tls_ca: TLSTestCA) -> None:
    (listener,) = await open_ssl_over_tcp_listeners(0, tls_ca.server_context(), host="127.0.0.1")
    async with listener:
        assert isinstance(listener, SSLListener)
        tl = listener.transport_listener
        assert isinstance(tl, trio.SocketListener)
        assert tl.socket.getsockname()[0] == "127.0.0.1"

        assert not listener._https_compatible

    (listener,) = await open_ssl_over_tcp_listeners(
        0,
        tls_ca.server_context(),
        host="127.0.0.1",
        https_compatible=True,
    )
    async with listener:
        assert listener._https_compatible


# -- one failing client never takes the server down ---------------------------------------


async def echo_once(stream: TCPStream) -> None:
    """A handler as the README writes them: no try, no deadline."""
    stream.version()  # NeedHandshakeError unless the handshake is already done
    await stream.send_all(await stream.receive_some())
    await stream.aclose()


async def good_client(port: int, ca: TLSTestCA, message: bytes) -> None:
    tcp = await trio.open_tcp_stream("127.0.0.1", port)
    context = ca.client_context(with_client_cert=True)
    async with SSLStream(tcp, context, server_hostname=SERVER_NAME) as stream:
        await stream.send_all(message)
        assert await stream.receive_some() == message


def client_hello(ca: TLSTestCA) -> bytes:
    """The first flight of a real client, from the stdlib's sans-I/O SSLObject."""
    incoming, outgoing = ssl.MemoryBIO(), ssl.MemoryBIO()
    client = ca.client_context().wrap_bio(incoming, outgoing, server_hostname=SERVER_NAME)
    with contextlib.suppress(ssl.SSLWantReadError):
        client.do_handshake()
    return outgoing.read()


# Each failing client connects, fails in its own way, and returns its own address,
# which the server's log must name. ``stranger`` is a CA the server does not know.


@pytest.fixture(scope="module")
def stranger() -> TLSTestCA:
    return TLSTestCA()


async def silent_client(port: int, ca: TLSTestCA, stranger: TLSTestCA) -> str:
    async with await trio.open_tcp_stream("127.0.0.1", port) as tcp:
        await read_until_closed(tcp)  # the server's deadline hangs up on us
        return local_address(tcp)


async def plaintext_http_client(port: int, ca: TLSTestCA, stranger: TLSTestCA) -> str:
    async with await trio.open_tcp_stream("127.0.0.1", port) as tcp:
        await tcp.send_all(b"GET / HTTP/1.1\r\nHost: localhost\r\n\r\n")
        await read_until_closed(tcp)
        return local_address(tcp)


async def reset_mid_handshake_client(port: int, ca: TLSTestCA, stranger: TLSTestCA) -> str:
    tcp = await trio.open_tcp_stream("127.0.0.1", port)
    address = local_address(tcp)
    await tcp.send_all(client_hello(ca))
    assert await tcp.receive_some()  # the server's flight: it now waits for ours
    # Linger 0: close() sends RST instead of FIN.
    tcp.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    await tcp.aclose()
    return address


async def untrusted_certificate_client(port: int, ca: TLSTestCA, stranger: TLSTestCA) -> str:
    tcp = await trio.open_tcp_stream("127.0.0.1", port)
    address = local_address(tcp)
    context = ca.client_context(version="1.3")
    stranger.client_cert.configure_cert(context)  # from a CA the server does not trust
    async with SSLStream(tcp, context, server_hostname=SERVER_NAME) as stream:
        # TLS 1.3: our handshake completes before the server has checked our
        # certificate; its refusal arrives on the first read.
        await stream.do_handshake()
        with pytest.raises(trio.BrokenResourceError):
            await stream.receive_some()
    return address


async def distrusting_client(port: int, ca: TLSTestCA, stranger: TLSTestCA) -> str:
    """curl without --cacert: the client refuses the server's certificate."""
    tcp = await trio.open_tcp_stream("127.0.0.1", port)
    address = local_address(tcp)
    context = stranger.client_context(with_client_cert=True)
    async with SSLStream(tcp, context, server_hostname=SERVER_NAME) as stream:
        with pytest.raises(trio.BrokenResourceError):
            await stream.do_handshake()
    return address


FailingClient = Callable[[int, TLSTestCA, TLSTestCA], Awaitable[str]]


#: The silent clients get a short deadline (the default is 60 s); the others fail on
#: their own, under the default.
SHORT_DEADLINE = 0.5


@pytest.mark.parametrize(
    ("failing_client", "handshake_timeout", "reason"),
    [
        pytest.param(
            silent_client,
            SHORT_DEADLINE,
            "the client took too long to complete the handshake",
            id="silent",
        ),
        pytest.param(
            untrusted_certificate_client,
            DEFAULT_SERVER_HANDSHAKE_TIMEOUT,
            "client certificate refused: ",
            id="untrusted_certificate",
        ),
        pytest.param(
            plaintext_http_client,
            DEFAULT_SERVER_HANDSHAKE_TIMEOUT,
            "the client spoke plain HTTP to this TLS port",
            id="plaintext_http",
        ),
        pytest.param(
            reset_mid_handshake_client,
            DEFAULT_SERVER_HANDSHAKE_TIMEOUT,
            "connection reset by the client",
            id="reset_mid_handshake",
        ),
        pytest.param(
            distrusting_client,
            DEFAULT_SERVER_HANDSHAKE_TIMEOUT,
            "the client does not trust our CA",
            id="distrusting",
        ),
    ],
)
async def test_failing_clients_are_logged_and_dropped(
    tls_ca: TLSTestCA,
    stranger: TLSTestCA,
    caplog: pytest.LogCaptureFixture,
    failing_client: FailingClient,
    handshake_timeout: float,
    reason: str,
) -> None:
    """100 at once, good clients among them; the handler has no try."""
    caplog.set_level(logging.INFO, logger="trio_tls.server")
    fds_before = open_fds()
    addresses: list[str] = []

    async def fail(port: int) -> None:
        addresses.append(await failing_client(port, tls_ca, stranger))

    with trio.fail_after(DEADLINE):
        context = tls_ca.server_context(require_client_cert=True)
        async with serving(echo_once, context, handshake_timeout=handshake_timeout) as port:
            async with trio.open_nursery() as clients:
                for n in range(CLIENTS):
                    clients.start_soon(fail, port)
                    if n % 20 == 0:
                        clients.start_soon(good_client, port, tls_ca, b"among them %d" % n)
            await good_client(port, tls_ca, b"after them")

    assert len(addresses) == CLIENTS
    dropped = dropped_by_handshake(caplog.records)
    assert sorted(dropped) == sorted(addresses)
    assert all(text.startswith(reason) for text in dropped.values()), set(dropped.values())
    assert open_fds() == fds_before, "a dropped connection leaked a file descriptor"


async def test_stopping_the_server_closes_connections_still_in_their_handshake(
    tls_ca: TLSTestCA,
) -> None:
    """The handler never had these streams; their task still closes them."""
    fds_before = open_fds()
    with trio.fail_after(DEADLINE):
        async with streams.serving(echo_once, tls_ca.server_context()) as port:
            silent = await trio.open_tcp_stream("127.0.0.1", port)
            await trio.testing.wait_all_tasks_blocked()  # the server waits for a hello
        # Leaving the block stopped the server.
        assert await silent.receive_some() == b""
        await silent.aclose()
    assert open_fds() == fds_before


# -- after the handshake -------------------------------------------------------------------


async def echo_until_eof(stream: TCPStream) -> None:
    """No try either: a client's reset makes receive_some raise in here."""
    while data := await stream.receive_some():
        await stream.send_all(data)
    await stream.aclose()


async def echo_in_a_child_task(stream: TCPStream) -> None:
    """The same error, reaching the helper inside an ExceptionGroup."""
    async with trio.open_nursery() as nursery:
        nursery.start_soon(echo_until_eof, stream)


async def reset_after_a_round_trip(port: int, ca: TLSTestCA) -> str:
    tcp = await trio.open_tcp_stream("127.0.0.1", port)
    address = local_address(tcp)
    stream = SSLStream(tcp, ca.client_context(), server_hostname=SERVER_NAME)
    await stream.send_all(b"hello")
    assert await stream.receive_some() == b"hello"
    # RST on the raw socket, under the TLS layer: no close_notify can go out first.
    tcp.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    await tcp.aclose()
    return address


@pytest.mark.parametrize(
    "handler",
    [
        pytest.param(echo_until_eof, id="in_the_handler"),
        pytest.param(echo_in_a_child_task, id="in_a_child_task"),
    ],
)
async def test_a_connection_broken_after_the_handshake_is_logged_and_dropped(
    tls_ca: TLSTestCA, caplog: pytest.LogCaptureFixture, handler: Handler
) -> None:
    """BrokenResourceError means the peer or the network failed, not the program."""
    caplog.set_level(logging.INFO, logger="trio_tls.server")
    fds_before = open_fds()
    addresses: list[str] = []

    async def reset(port: int) -> None:
        addresses.append(await reset_after_a_round_trip(port, tls_ca))

    with trio.fail_after(DEADLINE):
        async with serving(handler, tls_ca.server_context()) as port:
            async with trio.open_nursery() as clients:
                for _ in range(20):
                    clients.start_soon(reset, port)
            await good_client(port, tls_ca, b"still serving")

    broken: dict[str, str] = {}
    for record in caplog.records:
        if match := re.fullmatch(r"connection with (\S+) broke: (.+)", record.getMessage()):
            assert record.levelno == logging.INFO
            broken[match[1]] = match[2]
    assert sorted(broken) == sorted(addresses)
    assert set(broken.values()) == {"connection reset by the peer"}
    assert open_fds() == fds_before


async def test_any_other_exception_from_the_handler_propagates_as_in_trio(
    tls_ca: TLSTestCA,
) -> None:
    async def buggy(stream: TCPStream) -> None:
        await stream.receive_some()
        raise ValueError("a bug in the handler")

    with (
        trio.fail_after(DEADLINE),
        pytest.RaisesGroup(pytest.RaisesExc(ValueError, match="bug"), flatten_subgroups=True),
    ):
        async with serving(buggy, tls_ca.server_context()) as port:
            tcp = await trio.open_tcp_stream("127.0.0.1", port)
            async with SSLStream(
                tcp, tls_ca.client_context(), server_hostname=SERVER_NAME
            ) as stream:
                await stream.send_all(b"hello")
                await trio.sleep_forever()  # until the handler's bug stops the server


async def test_listener_accept_keeps_the_lazy_handshake(tls_ca: TLSTestCA) -> None:
    """SSLListener stays a drop-in for trio's: only the serve helper handshakes first."""
    (listener,) = await open_ssl_over_tcp_listeners(0, tls_ca.server_context(), host="127.0.0.1")
    async with listener:
        transport = listener.transport_listener
        assert isinstance(transport, trio.SocketListener)
        port = transport.socket.getsockname()[1]
        async with await trio.open_tcp_stream("127.0.0.1", port):  # never says hello
            # An eager handshake would hold accept() for the 60 s default deadline.
            with trio.fail_after(5):
                stream = await listener.accept()
            with pytest.raises(NeedHandshakeError):
                stream.version()
            await trio.aclose_forcefully(stream)


async def test_a_client_gone_before_its_connection_was_accepted(
    tls_ca: TLSTestCA, caplog: pytest.LogCaptureFixture
) -> None:
    """Its address can no longer be asked; the log says so instead."""
    caplog.set_level(logging.INFO, logger="trio_tls.server")
    with trio.fail_after(DEADLINE):
        async with serving(echo_once, tls_ca.server_context()) as port:
            # Blocking calls, with no checkpoint between them: the server cannot
            # accept the connection before the reset (loopback connects at once).
            with socket.create_connection(("127.0.0.1", port)) as sock:
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            await good_client(port, tls_ca, b"next")
    [reason] = dropped_by_handshake(caplog.records).items()
    assert reason == ("an unknown address", "connection reset by the client")
