"""An in-process TLS server on loopback TCP, for testing clients against a handler."""

from __future__ import annotations

import ssl
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from typing import final

import trio

from .._contexts import TLSVersionName
from .._listener import open_ssl_over_tcp_listeners
from .._stream import SSLStream
from ._certs import TLSTestCA
from ._pairs import SERVER_NAME

#: What :func:`open_tls_test_server` runs for every connection.
Handler = Callable[[SSLStream[trio.SocketStream]], Awaitable[object]]


async def echo_handler(stream: SSLStream[trio.SocketStream]) -> None:
    """Send back everything received until the client closes, then close too."""
    async for data in stream:
        await stream.send_all(data)
    await stream.aclose()


@final
class TLSTestServer:
    """A running :func:`open_tls_test_server`: where it listens and how to reach it.

    Attributes:
      host: the listening address.
      port: the listening port, picked by the kernel.
      server_context: the context the server uses.
      client_context: a context that trusts the server's certificate.
      connection_errors: the :exc:`trio.BrokenResourceError` /
          :exc:`trio.ClosedResourceError` that ended connections (a failed handshake,
          a peer that hung up ...), in the order they happened. Any other exception
          from the handler is a bug in it and propagates out of the ``async with``.
      handled: how many connections the handler has finished with, either way.
    """

    def __init__(
        self,
        host: str,
        port: int,
        server_context: ssl.SSLContext,
        client_context: ssl.SSLContext,
    ) -> None:
        self.host: str = host
        self.port: int = port
        self.server_context: ssl.SSLContext = server_context
        self.client_context: ssl.SSLContext = client_context
        self.connection_errors: list[trio.BrokenResourceError | trio.ClosedResourceError] = []
        self.handled: int = 0
        self._progress = trio.Event()

    def __repr__(self) -> str:
        return f"<TLSTestServer {self.host}:{self.port} handled={self.handled}>"

    @property
    def address(self) -> tuple[str, int]:
        """``(host, port)``, as :func:`trio.open_tcp_stream` and ``socket.connect`` take it."""
        return (self.host, self.port)

    async def connect(
        self,
        *,
        client_context: ssl.SSLContext | None = None,
        server_hostname: str = SERVER_NAME,
        https_compatible: bool = False,
    ) -> SSLStream[trio.SocketStream]:
        """Open a TCP connection and wrap it in a client SSLStream (handshake on first use)."""
        transport = await trio.open_tcp_stream(self.host, self.port)
        return SSLStream(
            transport,
            client_context if client_context is not None else self.client_context,
            server_hostname=server_hostname,
            https_compatible=https_compatible,
        )

    async def wait_handled(self, count: int) -> None:
        """Wait until the handler has finished with ``count`` connections in total."""
        while self.handled < count:
            await self._progress.wait()

    async def run_handler(self, handler: Handler, stream: SSLStream[trio.SocketStream]) -> None:
        """Run *handler* on one accepted *stream*, then close it and count it as handled.

        A :exc:`trio.BrokenResourceError` or :exc:`trio.ClosedResourceError` from the
        handler goes to ``connection_errors``; anything else propagates.
        """
        try:
            await handler(stream)
        except (trio.BrokenResourceError, trio.ClosedResourceError) as exc:
            self.connection_errors.append(exc)
        finally:
            # A handler that returned without closing must not leave the client
            # waiting forever; aclose() is bounded (trio_tls sends close_notify with a
            # timeout), and a failure to say goodbye is the peer's business.
            try:
                await stream.aclose()
            except (trio.BrokenResourceError, trio.ClosedResourceError):
                pass
            finally:
                self.handled += 1
                self._progress.set()
                self._progress = trio.Event()


@asynccontextmanager
async def open_tls_test_server(
    handler: Handler = echo_handler,
    ca: TLSTestCA | None = None,
    *,
    version: TLSVersionName | None = None,
    server_context: ssl.SSLContext | None = None,
    client_context: ssl.SSLContext | None = None,
    host: str = "127.0.0.1",
    https_compatible: bool = False,
) -> AsyncIterator[TLSTestServer]:
    """Serve ``handler`` over TLS on a loopback port for the duration of the block.

    Example::

        async with open_tls_test_server(ca=ca, version="1.3") as server:
            client = await server.connect()
            await client.send_all(b"ping")
            assert await client.receive_some() == b"ping"
            await client.aclose()

    Every connection runs ``handler`` (default :func:`echo_handler`) in its own task
    and is closed when the handler returns. Leaving the block stops the server and
    cancels running handlers. Contexts default to ones from ``ca`` (a new
    :class:`TLSTestCA` if None) pinned to ``version``.
    """
    if server_context is None or client_context is None:
        ca = ca if ca is not None else TLSTestCA()
        server_context = server_context or ca.server_context(version=version)
        client_context = client_context or ca.client_context(version=version)
    server: TLSTestServer | None = None

    async def serve_one(stream: SSLStream[trio.SocketStream]) -> None:
        assert server is not None  # set before the first connection can arrive
        await server.run_handler(handler, stream)

    # Listeners served directly, not serve_ssl_over_tcp: their handshake is lazy, so a
    # failed one reaches run_handler and lands in connection_errors, where a test can
    # see it; serve_ssl_over_tcp would only log it.
    listeners = await open_ssl_over_tcp_listeners(
        0, server_context, host=host, https_compatible=https_compatible
    )
    async with trio.open_nursery() as nursery:
        await nursery.start(trio.serve_listeners, serve_one, listeners)
        transport_listener = listeners[0].transport_listener
        assert isinstance(transport_listener, trio.SocketListener)
        sockname = transport_listener.socket.getsockname()
        server = TLSTestServer(host, sockname[1], server_context, client_context)
        try:
            yield server
        finally:
            nursery.cancel_scope.cancel()
