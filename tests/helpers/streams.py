"""Streams the tests share: reading an exact amount, both sides at once, connected pairs.

Where the kit's pair makers (:func:`trio_tls.testing.open_tls_stream_pair` ...) fit,
tests use those; the pairs here are for tests that pass SSLStream arguments the
makers do not take, or put a hand-driven peer on the raw transport.
"""

from __future__ import annotations

import ssl
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from functools import partial
from typing import Any

import pytest
import trio
import trio.testing

from trio_tls import ContextChooser, SSLListener, SSLStream, serve_ssl_over_tcp
from trio_tls.testing import SERVER_NAME, handshake_pair

#: Makes a connected ``(client end, server end)`` pair of transports.
Transports = Callable[[], Awaitable[tuple[trio.abc.Stream, trio.abc.Stream]]]


async def receive_exactly(stream: trio.abc.ReceiveStream, size: int) -> bytes:
    """Read exactly ``size`` bytes, never more: one receive_some may return any part.

    EOF before the last byte fails the test.
    """
    data = bytearray()
    while len(data) < size:
        chunk = await stream.receive_some(size - len(data))
        assert chunk, f"EOF after {len(data)} of {size} bytes"
        data += chunk
    return bytes(data)


async def receive_to_eof(stream: trio.abc.ReceiveStream) -> bytes:
    """Everything up to a clean end of stream, in at most 10,000 receive_some calls."""
    data = bytearray()
    for _ in range(10_000):
        chunk = await stream.receive_some()
        if not chunk:
            return bytes(data)
        data += chunk
    raise AssertionError(f"no end of stream after {len(data)} bytes")


async def both(*sides: Callable[[], Awaitable[object]]) -> None:
    """Run each side in its own task, as two real peers would, and wait for all."""
    async with trio.open_nursery() as nursery:
        for side in sides:
            nursery.start_soon(side)


class Forwarding(trio.abc.Stream):
    """Passes every call through to ``inner``; a subclass changes the one it tests."""

    def __init__(self, inner: trio.abc.Stream) -> None:
        self.inner = inner

    async def send_all(self, data: bytes | bytearray | memoryview) -> None:
        await self.inner.send_all(data)

    async def wait_send_all_might_not_block(self) -> None:
        await self.inner.wait_send_all_might_not_block()

    async def receive_some(self, max_bytes: int | None = None) -> bytes | bytearray:
        return await self.inner.receive_some(max_bytes)

    async def aclose(self) -> None:
        await self.inner.aclose()


class OneByteAtATime(Forwarding):
    """A transport whose every receive_some returns at most one byte, as TCP may.

    ``asked`` lists the ``max_bytes`` of each call, in order.
    """

    def __init__(self, inner: trio.abc.Stream) -> None:
        super().__init__(inner)
        self.asked: list[int | None] = []

    async def receive_some(self, max_bytes: int | None = None) -> bytes:
        self.asked.append(max_bytes)
        return bytes(await self.inner.receive_some(1))


def port_of(listener: SSLListener[trio.SocketStream]) -> int:
    """The kernel-chosen port a TLS listener is bound to."""
    transport = listener.transport_listener
    assert isinstance(transport, trio.SocketListener)
    port: int = transport.socket.getsockname()[1]
    return port


@asynccontextmanager
async def serving_listener(
    handler: Callable[[SSLStream[trio.SocketStream]], Awaitable[object]],
    ssl_context: ssl.SSLContext | ContextChooser,
    **kwargs: Any,
) -> AsyncIterator[SSLListener[trio.SocketStream]]:
    """:func:`trio_tls.serve_ssl_over_tcp` on 127.0.0.1 and a kernel-chosen port, in a
    nursery of its own, until the block ends; yields its listener.

    ``kwargs`` go to ``serve_ssl_over_tcp`` (``backlog=``, ``handshake_timeout=`` ...).
    """
    async with trio.open_nursery() as nursery:
        listeners: list[SSLListener[trio.SocketStream]] = await nursery.start(
            partial(serve_ssl_over_tcp, handler, 0, ssl_context, host="127.0.0.1", **kwargs)
        )
        yield listeners[0]
        nursery.cancel_scope.cancel()


@asynccontextmanager
async def serving(
    handler: Callable[[SSLStream[trio.SocketStream]], Awaitable[object]],
    ssl_context: ssl.SSLContext | ContextChooser,
    **kwargs: Any,
) -> AsyncIterator[int]:
    """:func:`serving_listener`, yielding the port to connect to."""
    async with serving_listener(handler, ssl_context, **kwargs) as listener:
        yield port_of(listener)


async def memory_pair() -> tuple[trio.abc.Stream, trio.abc.Stream]:
    """:func:`trio.testing.memory_stream_pair`, as :data:`Transports`."""
    return trio.testing.memory_stream_pair()


async def loopback_tcp_pair() -> tuple[trio.SocketStream, trio.SocketStream]:
    """A connected ``(client end, server end)`` pair of TCP streams on 127.0.0.1.

    The listener it took is closed again before this returns.
    """
    listener = (await trio.open_tcp_listeners(0, host="127.0.0.1"))[0]
    try:
        port = listener.socket.getsockname()[1]
        connected = await trio.open_tcp_stream("127.0.0.1", port)
        accepted = await listener.accept()
    finally:
        await listener.aclose()
    return connected, accepted


#: Parametrizes a ``transports`` argument: a buffered memory pair, then real TCP.
MEMORY_AND_TCP = [
    pytest.param(memory_pair, id="memory"),
    pytest.param(loopback_tcp_pair, id="tcp"),
]


@asynccontextmanager
async def handshaken_pair(
    transports: Transports,
    client_context: ssl.SSLContext,
    server_context: ssl.SSLContext,
    **client_kwargs: Any,
) -> AsyncIterator[tuple[SSLStream[Any], SSLStream[Any]]]:
    """A client and a server over ``transports()``, handshake done; closed afterwards.

    ``client_kwargs`` go to the client's SSLStream (``session=`` ...). The client
    connects to :data:`~trio_tls.testing.SERVER_NAME`.
    """
    client_transport, server_transport = await transports()
    client = SSLStream(
        client_transport, client_context, server_hostname=SERVER_NAME, **client_kwargs
    )
    server = SSLStream(server_transport, server_context, server_side=True)
    try:
        with trio.fail_after(10):
            await handshake_pair(client, server)
        yield client, server
    finally:
        await trio.aclose_forcefully(client)
        await trio.aclose_forcefully(server)
