"""The server helpers over loopback TCP: ``serve_ssl_over_tcp``'s handshake deadline,
and a new context assigned to a live ``SSLListener``."""

from __future__ import annotations

import contextlib
import logging
import ssl

import pytest
import trio

from trio_tls import SSLStream
from trio_tls.testing import SERVER_NAME, TLSTestCA, TLSVersionName

from .helpers.streams import port_of, serving, serving_listener


async def test_slow_handshake_on_a_listener_is_cut_off_and_others_are_served(
    tls_ca: TLSTestCA, tls_version: TLSVersionName, caplog: pytest.LogCaptureFixture
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

    server_ctx = tls_ca.server_context(version=tls_version)
    async with serving(handler, server_ctx, handshake_timeout=0.3) as port:
        idle = await trio.open_tcp_stream("127.0.0.1", port)  # never says hello
        client = SSLStream(
            await trio.open_tcp_stream("127.0.0.1", port),
            tls_ca.client_context(version=tls_version),
            server_hostname=SERVER_NAME,
        )
        await client.send_all(b"well-behaved")
        assert await client.receive_some() == b"well-behaved"
        with trio.fail_after(5):
            assert await idle.receive_some() == b""  # the deadline hung up on it
        await idle.aclose()
        await client.aclose()
    assert served == [b"well-behaved"]
    [dropped] = [r.getMessage() for r in caplog.records if r.name == "trio_tls.server"]
    assert dropped.endswith("the client took too long to complete the handshake")


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

    server_ctx = tls_ca.server_context(version=tls_version)
    async with serving_listener(echo, server_ctx) as listener:
        port = port_of(listener)
        old = await connect(port, tls_ca)
        listener.ssl_context = new_ca.server_context(version=tls_version)  # rotate
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
