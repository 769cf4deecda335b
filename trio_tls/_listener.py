"""SSLListener and the TCP helpers, with trio's signatures plus trio_tls's deadlines."""

from __future__ import annotations

import ssl
from collections.abc import Awaitable, Callable
from typing import NoReturn, final

import trio
from trio.abc import Listener

from ._contexts import keep_truncation_detectable
from ._stream import SSLStream, T_Stream

#: Default handshake deadline for servers. A client that opens TCP and never finishes
#: the handshake would otherwise hold a server task forever (slowloris). 60 s matches
#: asyncio's default and is generous for any real client; see notes/decisions.md.
DEFAULT_SERVER_HANDSHAKE_TIMEOUT = 60.0


@final
class SSLListener(Listener[SSLStream[T_Stream]]):
    """Wraps every connection a transport listener accepts in a server-side SSLStream.

    Args:
      transport_listener: the listener to wrap, usually a :class:`trio.SocketListener`.
      ssl_context: the context for new connections. It can be replaced at any time
          by assigning :attr:`ssl_context` (certificate rotation): connections
          accepted later use the new one, existing ones keep theirs.
      https_compatible: passed on to :class:`SSLStream`.
      handshake_timeout: passed on to :class:`SSLStream` (default 60 s; None for none).
      close_timeout: passed on to :class:`SSLStream`.

    Attributes:
      transport_listener: the wrapped listener.
      ssl_context: the context the next accepted connection will use.
    """

    def __init__(
        self,
        transport_listener: Listener[T_Stream],
        ssl_context: ssl.SSLContext,
        *,
        https_compatible: bool = False,
        handshake_timeout: float | None = DEFAULT_SERVER_HANDSHAKE_TIMEOUT,
        close_timeout: float | None = None,
    ) -> None:
        self.transport_listener = transport_listener
        self.ssl_context = ssl_context
        self._https_compatible = https_compatible
        self._handshake_timeout = handshake_timeout
        self._close_timeout = close_timeout

    async def accept(self) -> SSLStream[T_Stream]:
        """Accept a connection; the handshake runs on first use, as with trio."""
        transport_stream = await self.transport_listener.accept()
        return SSLStream(
            transport_stream,
            self.ssl_context,
            server_side=True,
            https_compatible=self._https_compatible,
            handshake_timeout=self._handshake_timeout,
            close_timeout=self._close_timeout,
        )

    async def aclose(self) -> None:
        """Close the transport listener."""
        await self.transport_listener.aclose()


def default_client_context() -> ssl.SSLContext:
    """What the client helpers use when given no context: verification on, TLS >= 1.2.

    ``OP_IGNORE_UNEXPECTED_EOF`` is cleared, as trio does: with it, OpenSSL would
    report a truncation attack as a clean EOF and ``https_compatible`` would lose its
    meaning.
    """
    context = ssl.create_default_context()
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    return keep_truncation_detectable(context)


async def open_ssl_over_tcp_stream(
    host: str | bytes,
    port: int,
    *,
    https_compatible: bool = False,
    ssl_context: ssl.SSLContext | None = None,
    happy_eyeballs_delay: float | None = 0.25,
    handshake_timeout: float | None = None,
    close_timeout: float | None = None,
) -> SSLStream[trio.SocketStream]:
    """Open a TCP connection to ``host``/``port`` and wrap it in a client SSLStream.

    The handshake is not performed here; it runs on first use or on
    :meth:`SSLStream.do_handshake`. The server's certificate must be valid for
    ``host``. With no ``ssl_context``, :func:`default_client_context` is used.
    """
    tcp_stream = await trio.open_tcp_stream(host, port, happy_eyeballs_delay=happy_eyeballs_delay)
    return SSLStream(
        tcp_stream,
        ssl_context if ssl_context is not None else default_client_context(),
        server_hostname=host,
        https_compatible=https_compatible,
        handshake_timeout=handshake_timeout,
        close_timeout=close_timeout,
    )


async def open_ssl_over_tcp_listeners(
    port: int,
    ssl_context: ssl.SSLContext,
    *,
    host: str | bytes | None = None,
    https_compatible: bool = False,
    backlog: int | None = None,
    handshake_timeout: float | None = DEFAULT_SERVER_HANDSHAKE_TIMEOUT,
    close_timeout: float | None = None,
) -> list[SSLListener[trio.SocketStream]]:
    """Open TCP listeners (see :func:`trio.open_tcp_listeners`) wrapped in SSLListeners."""
    tcp_listeners = await trio.open_tcp_listeners(port, host=host, backlog=backlog)
    return [
        SSLListener(
            tcp_listener,
            ssl_context,
            https_compatible=https_compatible,
            handshake_timeout=handshake_timeout,
            close_timeout=close_timeout,
        )
        for tcp_listener in tcp_listeners
    ]


async def serve_ssl_over_tcp(
    handler: Callable[[SSLStream[trio.SocketStream]], Awaitable[object]],
    port: int,
    ssl_context: ssl.SSLContext,
    *,
    host: str | bytes | None = None,
    https_compatible: bool = False,
    backlog: int | None = None,
    handler_nursery: trio.Nursery | None = None,
    handshake_timeout: float | None = DEFAULT_SERVER_HANDSHAKE_TIMEOUT,
    close_timeout: float | None = None,
    task_status: trio.TaskStatus[list[SSLListener[trio.SocketStream]]] = trio.TASK_STATUS_IGNORED,
) -> NoReturn:
    """Serve ``handler`` for every TLS connection on ``port``; see :func:`trio.serve_tcp`.

    With ``nursery.start`` you get the listeners back (``listeners[0].socket`` gives
    the bound address through ``transport_listener``).
    """
    listeners = await open_ssl_over_tcp_listeners(
        port,
        ssl_context,
        host=host,
        https_compatible=https_compatible,
        backlog=backlog,
        handshake_timeout=handshake_timeout,
        close_timeout=close_timeout,
    )
    await trio.serve_listeners(
        handler, listeners, handler_nursery=handler_nursery, task_status=task_status
    )
