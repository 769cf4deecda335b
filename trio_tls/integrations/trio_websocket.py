"""``wss://`` with trio-websocket over trio_tls.

trio-websocket opens its TLS with ``trio.open_ssl_over_tcp_stream`` and
``trio.open_ssl_over_tcp_listeners`` by name. Its wrap functions take any stream,
though, so these are its client and server entry points with trio_tls underneath:

- :func:`connect_websocket`: like ``trio_websocket.connect_websocket`` with
  ``use_ssl=context``; returns its ``WebSocketConnection``.
- :func:`wrap_client_stream`: ``trio_websocket.wrap_client_stream``, typed for a
  :class:`trio_tls.SSLStream` you opened yourself.
- :func:`serve_websocket`: like ``trio_websocket.serve_websocket`` (its
  ``WebSocketServer`` does the work, timeouts included), on trio_tls listeners.

On the server side, ``trio_websocket.wrap_server_stream`` already accepts any
stream: call it from a :func:`trio_tls.serve_ssl_over_tcp` handler when you need
the stream itself (for the peer's address, see notes/integrations.md).

Keyword options (``subprotocols``, ``message_queue_size`` ...) are passed on to
trio-websocket unchanged, so its defaults apply.
"""

from __future__ import annotations

import ssl
from collections.abc import Awaitable, Callable, Iterable, Sequence
from functools import partial
from typing import NoReturn, TypedDict, Unpack, cast

import trio

from .._listener import (
    DEFAULT_SERVER_HANDSHAKE_TIMEOUT,
    SSLListener,
    open_ssl_over_tcp_listeners,
    open_ssl_over_tcp_stream,
)
from .._stream import SSLStream
from ._extras import requires_extra

with requires_extra(__name__, "trio-websocket"):
    import trio_websocket

__all__ = [
    "ClientOptions",
    "ServerOptions",
    "connect_websocket",
    "serve_websocket",
    "wrap_client_stream",
]


class ClientOptions(TypedDict, total=False):
    """trio-websocket's client keyword arguments, passed through as given."""

    subprotocols: Iterable[str] | None
    extra_headers: list[tuple[bytes, bytes]] | None
    message_queue_size: int
    max_message_size: int
    receive_buffer_size: int | None


class ServerOptions(TypedDict, total=False):
    """trio-websocket's ``WebSocketServer`` keyword arguments, passed through as given."""

    message_queue_size: int
    max_message_size: int
    receive_buffer_size: int | None
    connect_timeout: float
    disconnect_timeout: float


# trio-websocket's annotations name trio's classes; at run time it uses only the Stream
# and Listener interfaces, which trio_tls's classes implement. These casts are the one
# place we tell its types so.
_TrioClientStream = trio.SSLStream[trio.SocketStream]
_TrioListeners = Sequence[trio.SSLListener[trio.SocketStream] | trio.SocketListener]


async def wrap_client_stream(
    nursery: trio.Nursery,
    stream: SSLStream[trio.SocketStream],
    host: str,
    resource: str,
    **options: Unpack[ClientOptions],
) -> trio_websocket.WebSocketConnection:
    """Open a WebSocket over ``stream``; see ``trio_websocket.wrap_client_stream``.

    ``host`` is the ``Host:`` header (with ``:port`` unless it is the default),
    ``resource`` the path. The connection's background task runs in ``nursery``.
    """
    return await trio_websocket.wrap_client_stream(
        nursery, cast(_TrioClientStream, stream), host, resource, **options
    )


async def connect_websocket(
    nursery: trio.Nursery,
    host: str,
    port: int,
    resource: str,
    *,
    ssl_context: ssl.SSLContext | None = None,
    **options: Unpack[ClientOptions],
) -> trio_websocket.WebSocketConnection:
    """Connect to ``wss://host:port/resource`` with trio_tls; see
    ``trio_websocket.connect_websocket``. The connection's task runs in ``nursery``.

    With no ``ssl_context``, :func:`trio_tls.default_client_context` is used. The TLS
    handshake runs before the WebSocket one, so a certificate problem raises
    :exc:`trio.BrokenResourceError` (its ``__cause__`` says what). TLS is
    ``https_compatible``, as in trio-websocket: the WebSocket closing handshake, not
    TLS, marks a clean end.

    Unlike trio-websocket's own function, the TCP connection is always closed in the
    end: when the server closes first, or ``nursery`` is cancelled, trio-websocket's
    client leaves it open until garbage collection.
    """
    stream = await open_ssl_over_tcp_stream(
        host, port, ssl_context=ssl_context, https_compatible=True
    )
    try:
        await stream.do_handshake()
    except BaseException:
        await trio.aclose_forcefully(stream)
        raise
    # trio-websocket's rule for the Host header: no port when it is a default one.
    host_header = host if port in (80, 443) else f"{host}:{port}"
    connection: trio_websocket.WebSocketConnection = await nursery.start(
        partial(_run_client, stream, host_header, resource, options)
    )
    return connection


async def _run_client(
    stream: SSLStream[trio.SocketStream],
    host: str,
    resource: str,
    options: ClientOptions,
    *,
    task_status: trio.TaskStatus[trio_websocket.WebSocketConnection],
) -> None:
    """Own ``stream`` for as long as the connection's reader task runs, then close it.

    The reader runs in a nursery of ours, so its end (EOF, error or cancellation)
    is ours to see; trio-websocket's client reader just stops at EOF.
    """
    async with stream:
        try:
            async with trio.open_nursery() as reader_nursery:
                task_status.started(
                    await wrap_client_stream(reader_nursery, stream, host, resource, **options)
                )
        except BaseExceptionGroup as group:
            _raise_sole(group)


def _raise_sole(group: BaseExceptionGroup[BaseException]) -> NoReturn:
    """Raise a group's only exception as itself, as trio-websocket raises its errors.

    Its own ``__context__`` is kept: raising it here would otherwise make the group
    (which contains it) its context.
    """
    if len(group.exceptions) != 1:
        raise group
    sole = group.exceptions[0]
    context = sole.__context__
    try:
        raise sole
    finally:
        sole.__context__ = context
        del sole, context


async def serve_websocket(
    handler: Callable[[trio_websocket.WebSocketRequest], Awaitable[None]],
    host: str | bytes | None,
    port: int,
    ssl_context: ssl.SSLContext,
    *,
    handler_nursery: trio.Nursery | None = None,
    handshake_timeout: float | None = DEFAULT_SERVER_HANDSHAKE_TIMEOUT,
    task_status: trio.TaskStatus[list[SSLListener[trio.SocketStream]]] = trio.TASK_STATUS_IGNORED,
    **options: Unpack[ServerOptions],
) -> NoReturn:
    """Serve ``handler`` for every ``wss://`` connection on ``port``, until cancelled.

    Like ``trio_websocket.serve_websocket``, except that ``nursery.start`` hands back
    trio_tls's listeners rather than trio-websocket's ``WebSocketServer``, whose
    ``port`` and ``listeners`` only understand trio's classes. The bound port is
    ``listeners[0].transport_listener.socket.getsockname()[1]``.

    ``handshake_timeout`` bounds the TLS handshake (trio_tls's server default); the
    WebSocket handshake has trio-websocket's own ``connect_timeout``.
    """
    listeners = await open_ssl_over_tcp_listeners(
        port, ssl_context, host=host, https_compatible=True, handshake_timeout=handshake_timeout
    )
    server = trio_websocket.WebSocketServer(
        handler, cast(_TrioListeners, listeners), handler_nursery=handler_nursery, **options
    )
    async with trio.open_nursery() as nursery:
        await nursery.start(server.run)
        task_status.started(listeners)
        await trio.sleep_forever()
    raise AssertionError("unreachable: sleep_forever() returned")  # for NoReturn
