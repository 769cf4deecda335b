"""Choosing the server's context with trio code, from the ClientHello, over real sockets.

The chooser is an async callable given in place of the server's ``ssl_context``.
Each test runs a trio_tls server on 127.0.0.1 and real clients (trio_tls's, the
stdlib's) that verify the certificate against the name they asked for, so a
certificate from the wrong context fails the test.
"""

from __future__ import annotations

import contextlib
import logging
import socket
import ssl
from collections.abc import Awaitable, Callable
from typing import Any

import pytest
import trio
import trio.lowlevel
import trio.testing

from trio_tls import (
    ClientHello,
    ClientHelloError,
    ContextChoiceError,
    ContextChooser,
    SSLStream,
    TLSStatistics,
    open_ssl_over_tcp_listeners,
)
from trio_tls._hello import DEFAULT_MAX_HELLO_BYTES
from trio_tls._wire import RECEIVE_CHUNK
from trio_tls.testing import TLSTestCA, TLSVersionName, pin_version

from .helpers.streams import OneByteAtATime, port_of, serving

pytestmark = pytest.mark.usefixtures("no_fd_leak")

NAMES = ("a.example", "b.example")


def server_context_for(ca: TLSTestCA, name: str) -> ssl.SSLContext:
    """A server context presenting a certificate for ``name`` only."""
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ca.ca.issue_cert(name).configure_cert(context)
    return context


def by_name(contexts: dict[str, ssl.SSLContext]) -> ContextChooser:
    async def choose(hello: ClientHello) -> ssl.SSLContext:
        await trio.lowlevel.checkpoint()  # a real await, as a loader's would be
        if hello.server_name not in contexts:
            raise LookupError(hello.server_name)
        return contexts[hello.server_name]

    return choose


async def echo(stream: SSLStream[trio.SocketStream]) -> None:
    await stream.send_all(await stream.receive_some())


async def connect(
    port: int, name: str | None, context: ssl.SSLContext
) -> SSLStream[trio.SocketStream]:
    tcp = await trio.open_tcp_stream("127.0.0.1", port)
    return SSLStream(tcp, context, server_hostname=name)


async def exchange(port: int, name: str, context: ssl.SSLContext) -> SSLStream[trio.SocketStream]:
    """Handshake as ``name``, echo one message, and return the (closed) client stream."""
    with trio.fail_after(10):
        stream = await connect(port, name, context)
        async with stream:
            await stream.send_all(name.encode())
            assert await stream.receive_some() == name.encode()
    return stream


async def test_each_name_gets_its_certificate(
    tls_ca: TLSTestCA, tls_version: TLSVersionName
) -> None:
    contexts = {name: server_context_for(tls_ca, name) for name in NAMES}
    async with serving(echo, by_name(contexts)) as port:
        for name in NAMES:
            stream = await exchange(port, name, tls_ca.client_context(version=tls_version))
            assert stream.version() == f"TLSv{tls_version}"


async def test_chosen_alpn_list_applies(tls_ca: TLSTestCA, tls_version: TLSVersionName) -> None:
    chosen = server_context_for(tls_ca, "a.example")
    chosen.set_alpn_protocols(["http/1.1"])
    client = tls_ca.client_context(version=tls_version, alpn_protocols=["h2", "http/1.1"])
    async with serving(echo, by_name({"a.example": chosen})) as port:
        stream = await exchange(port, "a.example", client)
    assert stream.selected_alpn_protocol() == "http/1.1"


async def test_chosen_verify_mode_requires_client_certificate(
    tls_ca: TLSTestCA, tls_version: TLSVersionName
) -> None:
    """The placeholder asks for no client certificate; the chosen context's CERT_REQUIRED rules."""
    chosen = server_context_for(tls_ca, "a.example")
    tls_ca.ca.configure_trust(chosen)
    chosen.verify_mode = ssl.CERT_REQUIRED
    peer_certs: list[dict[str, Any] | None] = []

    async def record_peer(stream: SSLStream[trio.SocketStream]) -> None:
        peer_certs.append(stream.getpeercert())
        await echo(stream)

    async with serving(record_peer, by_name({"a.example": chosen})) as port:
        with_cert = tls_ca.client_context(version=tls_version, with_client_cert=True)
        await exchange(port, "a.example", with_cert)
        assert peer_certs and peer_certs[0] is not None
        without = tls_ca.client_context(version=tls_version)
        with pytest.raises(trio.BrokenResourceError), trio.fail_after(10):
            await exchange(port, "a.example", without)


async def test_chosen_version_bounds_apply(tls_ca: TLSTestCA) -> None:
    """A client allowing both versions gets the one the chosen context is pinned to."""
    for version in ("1.2", "1.3"):
        chosen = pin_version(server_context_for(tls_ca, "a.example"), version)
        async with serving(echo, by_name({"a.example": chosen})) as port:
            stream = await exchange(port, "a.example", tls_ca.client_context())
        assert stream.version() == f"TLSv{version}"


async def test_chosen_ciphers_apply(tls_ca: TLSTestCA) -> None:
    chosen = pin_version(server_context_for(tls_ca, "a.example"), "1.2")
    chosen.set_ciphers("ECDHE-ECDSA-CHACHA20-POLY1305")
    async with serving(echo, by_name({"a.example": chosen})) as port:
        stream = await exchange(port, "a.example", tls_ca.client_context())
    cipher = stream.cipher()
    assert cipher is not None and cipher[0] == "ECDHE-ECDSA-CHACHA20-POLY1305"


async def test_chosen_post_handshake_auth_applies(tls_ca: TLSTestCA) -> None:
    chosen = pin_version(server_context_for(tls_ca, "a.example"), "1.3")
    tls_ca.ca.configure_trust(chosen)
    chosen.verify_mode = ssl.CERT_REQUIRED
    chosen.post_handshake_auth = True  # ask only after the handshake
    got: list[bool] = []

    async def ask(stream: SSLStream[trio.SocketStream]) -> None:
        got.append(stream.getpeercert() is None)  # nothing asked during the handshake
        with trio.fail_after(10):
            await stream.verify_client_post_handshake()
        got.append(stream.getpeercert() is not None)
        await stream.send_all(b"ok")

    client = tls_ca.client_context(with_client_cert=True)
    client.post_handshake_auth = True
    async with serving(ask, by_name({"a.example": chosen})) as port:
        with trio.fail_after(10):
            async with await connect(port, "a.example", client) as stream:
                assert await stream.receive_some() == b"ok"
    assert got == [True, True]


async def test_sessions_resume_under_the_chosen_context(
    tls_ca: TLSTestCA, tls_version: TLSVersionName
) -> None:
    """Tickets are the chosen context's: the same name resumes, another name does not."""
    contexts = {name: server_context_for(tls_ca, name) for name in NAMES}
    client_context = tls_ca.client_context(version=tls_version)

    async def talk(
        port: int, name: str, session: ssl.SSLSession | None
    ) -> tuple[bool, ssl.SSLSession]:
        """Connect as ``name``; whether it resumed ``session``, and the session to resume it."""
        with trio.fail_after(10):
            tcp = await trio.open_tcp_stream("127.0.0.1", port)
            stream = SSLStream(tcp, client_context, server_hostname=name, session=session)
            async with stream:
                await stream.send_all(b"x")  # the server sends its tickets with the reply
                next_session = await stream.resumable_session()
                assert await stream.receive_some() == b"x"
                return stream.session_reused, next_session

    async with serving(echo, by_name(contexts)) as port:
        _, session = await talk(port, "a.example", None)
        assert (await talk(port, "a.example", session))[0]
        assert not (await talk(port, "b.example", session))[0]


async def test_statistics_report_time_spent_choosing(tls_ca: TLSTestCA) -> None:
    seen: list[float | None] = []
    chosen = server_context_for(tls_ca, "a.example")

    async def slow_choice(hello: ClientHello) -> ssl.SSLContext:
        await trio.sleep(0.05)
        return chosen

    async def report(stream: SSLStream[trio.SocketStream]) -> None:
        seen.append(stream.statistics().choose_duration)
        await echo(stream)

    async with serving(report, slow_choice) as port:
        await exchange(port, "a.example", tls_ca.client_context())
    assert seen[0] is not None and seen[0] >= 0.05


async def test_a_stream_answers_before_its_hello_arrives(tls_ca: TLSTestCA) -> None:
    """Before the ClientHello, a choosing server stream answers as any server stream
    before its handshake: no version, no cipher, statistics with nothing negotiated."""
    chosen = server_context_for(tls_ca, "a.example")

    async def choose(hello: ClientHello) -> ssl.SSLContext:
        return chosen

    server_transport, client_transport = trio.testing.memory_stream_pair()
    server = SSLStream(server_transport, choose, server_side=True)
    stats = server.statistics()
    assert (stats.version, stats.cipher, stats.choose_duration) == (None, None, None)
    assert server.server_side and server.server_hostname is None
    assert server.ssl_object.version() is None  # a placeholder until the choice
    assert "server" in repr(server)
    client = SSLStream(client_transport, tls_ca.client_context(), server_hostname="a.example")
    with trio.fail_after(10):
        async with trio.open_nursery() as nursery:
            nursery.start_soon(server.do_handshake)
            nursery.start_soon(client.do_handshake)
    assert server.version() == client.version() is not None
    assert server.context is chosen and server.ssl_object.context is chosen
    assert server.statistics().choose_duration is not None


# -- failures: the alert, the error, the log ------------------------------------------------


async def server_and_client(
    tls_ca: TLSTestCA,
    chooser: ContextChooser,
    name: str | None,
    *,
    handshake_timeout: float | None = None,
) -> tuple[BaseException, BaseException]:
    """Handshake a server stream using ``chooser`` with a client; both must fail: their errors."""
    listener = (
        await open_ssl_over_tcp_listeners(
            0, chooser, host="127.0.0.1", handshake_timeout=handshake_timeout
        )
    )[0]
    errors: dict[str, BaseException] = {}

    async def server() -> None:
        async with await listener.accept() as stream:
            try:
                await stream.do_handshake()
            except trio.BrokenResourceError as exc:
                errors["server"] = exc

    async def client() -> None:
        async with await connect(port_of(listener), name, tls_ca.client_context()) as stream:
            try:
                await stream.do_handshake()
            except trio.BrokenResourceError as exc:
                errors["client"] = exc

    with trio.fail_after(10):
        async with listener, trio.open_nursery() as nursery:
            nursery.start_soon(server)
            nursery.start_soon(client)
    return errors["server"], errors["client"]


def client_alert(error: BaseException) -> str:
    assert isinstance(error.__cause__, ssl.SSLError)
    return str(error.__cause__)


async def test_lookup_error_sends_unrecognized_name(tls_ca: TLSTestCA) -> None:
    server, client = await server_and_client(tls_ca, by_name({}), "nobody.example")
    assert "unrecognized name" in client_alert(client)
    choice = server.__cause__
    assert isinstance(choice, ContextChoiceError)
    assert "'nobody.example'" in str(choice) and "LookupError" in str(choice)
    assert "'nobody.example'" in str(server)
    assert isinstance(choice.__cause__, LookupError)
    assert choice.hello.server_name == "nobody.example"


async def test_other_errors_send_internal_error(tls_ca: TLSTestCA) -> None:
    async def broken(hello: ClientHello) -> ssl.SSLContext:
        raise OSError("the secrets store is down")

    server, client = await server_and_client(tls_ca, broken, "a.example")
    assert "internal error" in client_alert(client)
    assert isinstance(server.__cause__, ContextChoiceError)
    assert "the secrets store is down" in str(server)


async def test_a_client_context_is_refused_with_internal_error(tls_ca: TLSTestCA) -> None:
    async def wrong(hello: ClientHello) -> ssl.SSLContext:
        return tls_ca.client_context()

    server, client = await server_and_client(tls_ca, wrong, "a.example")
    assert "internal error" in client_alert(client)
    assert isinstance(server.__cause__, ContextChoiceError)
    assert isinstance(server.__cause__.__cause__, TypeError)


async def test_deadline_while_choosing_sends_internal_error(tls_ca: TLSTestCA) -> None:
    async def never(hello: ClientHello) -> ssl.SSLContext:
        await trio.sleep_forever()
        raise AssertionError("unreachable")

    server, client = await server_and_client(tls_ca, never, "a.example", handshake_timeout=0.5)
    assert "internal error" in client_alert(client)
    choice = server.__cause__
    assert isinstance(choice, ContextChoiceError)
    assert isinstance(choice.__cause__, trio.TooSlowError)
    assert "'a.example'" in str(choice) and "deadline" in str(choice)


async def test_cancelled_choice_leaves_the_stream_broken(tls_ca: TLSTestCA) -> None:
    entered = trio.Event()

    async def never(hello: ClientHello) -> ssl.SSLContext:
        entered.set()
        await trio.sleep_forever()
        raise AssertionError("unreachable")

    listener = (await open_ssl_over_tcp_listeners(0, never, host="127.0.0.1"))[0]
    async with listener:
        with trio.fail_after(10):
            client = await connect(port_of(listener), "a.example", tls_ca.client_context())
            async with client, await listener.accept() as server, trio.open_nursery() as nursery:
                nursery.start_soon(_handshake_until_closed, client)
                with trio.CancelScope() as scope:
                    nursery.start_soon(_cancel_when, entered, scope)
                    await server.do_handshake()
                assert scope.cancelled_caught
                with pytest.raises(trio.BrokenResourceError):
                    await server.send_all(b"x")
                nursery.cancel_scope.cancel()


async def _handshake_until_closed(stream: SSLStream[trio.SocketStream]) -> None:
    with contextlib.suppress(trio.BrokenResourceError):
        await stream.do_handshake()


async def _cancel_when(event: trio.Event, scope: trio.CancelScope) -> None:
    await event.wait()
    scope.cancel()


async def test_serve_logs_the_server_name_and_cause(
    tls_ca: TLSTestCA, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="trio_tls.server")
    async with serving(echo, by_name({})) as port:
        with pytest.raises(trio.BrokenResourceError), trio.fail_after(10):
            await exchange(port, "nobody.example", tls_ca.client_context())
        # and the server goes on serving the next client
        with pytest.raises(trio.BrokenResourceError), trio.fail_after(10):
            await exchange(port, "other.example", tls_ca.client_context())
    messages = [r.getMessage() for r in caplog.records]
    assert any("'nobody.example'" in m and "LookupError" in m for m in messages), messages
    assert any("'other.example'" in m for m in messages), messages


def test_a_chooser_is_for_servers_only(tls_ca: TLSTestCA) -> None:
    a, b = socket.socketpair()
    with a, b:
        transport = trio.SocketStream(trio.socket.from_stdlib_socket(a))
        with pytest.raises(TypeError, match="only a server"):
            SSLStream(transport, by_name({}), server_hostname="a.example")
        with pytest.raises(TypeError, match="async callable"):
            SSLStream(transport, "cert.pem", server_side=True)  # type: ignore[arg-type]


# -- ClientHellos in pieces, and what is not one ----------------------------------------------


async def test_a_hello_read_one_byte_at_a_time(
    tls_ca: TLSTestCA, tls_version: TLSVersionName
) -> None:
    chosen: list[ClientHello] = []
    context = server_context_for(tls_ca, "a.example")

    async def choose(hello: ClientHello) -> ssl.SSLContext:
        chosen.append(hello)
        return context

    listener = (await trio.open_tcp_listeners(0, host="127.0.0.1"))[0]
    async with listener:
        port = listener.socket.getsockname()[1]
        client_context = tls_ca.client_context(version=tls_version, alpn_protocols=["h2"])
        with trio.fail_after(10):
            client = await connect(port, "a.example", client_context)
            server = SSLStream(OneByteAtATime(await listener.accept()), choose, server_side=True)
            async with client, server, trio.open_nursery() as nursery:
                nursery.start_soon(client.do_handshake)
                await server.do_handshake()
    assert chosen[0].server_name == "a.example"
    assert chosen[0].alpn_protocols == ("h2",)
    assert ssl.TLSVersion[f"TLSv{tls_version.replace('.', '_')}"] in chosen[0].tls_versions
    assert server.statistics().transport_receives > 100  # really one byte per read


async def raw_server_error(
    chooser: ContextChooser, send: Callable[[trio.SocketStream], Awaitable[None]], deadline: float
) -> BaseException:
    """What a server stream's handshake raises when a raw client runs ``send``."""
    error, _ = await raw_server_failure(chooser, send, deadline)
    return error


async def raw_server_failure(
    chooser: ContextChooser, send: Callable[[trio.SocketStream], Awaitable[None]], deadline: float
) -> tuple[BaseException, TLSStatistics]:
    """:func:`raw_server_error`, and the server stream's statistics as it failed."""
    listener = (await trio.open_tcp_listeners(0, host="127.0.0.1"))[0]
    error: list[BaseException] = []
    statistics: list[TLSStatistics] = []

    async def server() -> None:
        stream = SSLStream(
            await listener.accept(), chooser, server_side=True, handshake_timeout=deadline
        )
        async with stream:
            with pytest.raises(trio.BrokenResourceError) as caught:
                await stream.do_handshake()
            error.append(caught.value)
            statistics.append(stream.statistics())

    async def client() -> None:
        async with await trio.open_tcp_stream("127.0.0.1", listener.socket.getsockname()[1]) as tcp:
            with contextlib.suppress(trio.BrokenResourceError, trio.ClosedResourceError):
                await send(tcp)
                await tcp.receive_some()  # until the server hangs up

    with trio.fail_after(deadline + 10):
        async with listener, trio.open_nursery() as nursery:
            nursery.start_soon(server)
            nursery.start_soon(client)
    return error[0], statistics[0]


async def never_called(hello: ClientHello) -> ssl.SSLContext:
    raise AssertionError("the chooser must not run without a whole ClientHello")


async def test_plain_http_is_refused(tls_ca: TLSTestCA) -> None:
    async def http(tcp: trio.SocketStream) -> None:
        await tcp.send_all(b"GET / HTTP/1.1\r\nHost: a.example\r\n\r\n")

    error = await raw_server_error(never_called, http, 10)
    assert isinstance(error.__cause__, ClientHelloError)
    assert error.__cause__.reason == "not_tls"
    assert "GET / HTTP" in str(error)


async def test_an_endless_hello_is_refused_with_bounded_memory(tls_ca: TLSTestCA) -> None:
    """Full-size records that never finish the hello: refused at 64 KiB, however long it goes on."""
    hello_header = b"\x01" + (2**24 - 1).to_bytes(3, "big")  # a ClientHello of 16 MiB

    async def endless(tcp: trio.SocketStream) -> None:
        first = hello_header + bytes(2**14 - 4)
        await tcp.send_all(b"\x16\x03\x01" + (2**14).to_bytes(2, "big") + first)
        for _ in range(64):
            await tcp.send_all(b"\x16\x03\x01" + (2**14).to_bytes(2, "big") + bytes(2**14))

    error, statistics = await raw_server_failure(never_called, endless, 10)
    assert isinstance(error.__cause__, ClientHelloError)
    assert error.__cause__.reason == "too_large"
    # The bound is on what was read, not only on what was parsed: one receive past it.
    assert statistics.wire_bytes_received <= DEFAULT_MAX_HELLO_BYTES + RECEIVE_CHUNK


async def test_a_truncated_hello_is_refused(tls_ca: TLSTestCA) -> None:
    async def truncated(tcp: trio.SocketStream) -> None:
        await tcp.send_all(b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03")
        await tcp.send_eof()

    error = await raw_server_error(never_called, truncated, 10)
    assert isinstance(error.__cause__, ClientHelloError)
    assert error.__cause__.reason == "truncated"


async def test_a_hello_at_one_byte_per_second_hits_the_deadline(tls_ca: TLSTestCA) -> None:
    async def slowly(tcp: trio.SocketStream) -> None:
        for byte in b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc":
            await tcp.send_all(bytes([byte]))
            await trio.sleep(1)

    error = await raw_server_error(never_called, slowly, 2.5)
    assert isinstance(error.__cause__, trio.TooSlowError)
