"""SSLListener and the TCP helpers, with trio's signatures plus trio_tls's deadlines.

``serve_ssl_over_tcp`` adds one rule to trio's: one failing client never takes the
server down. trio calls the handler at once and the handshake runs on its first
read, so a client that fails the handshake (an untrusted certificate, plaintext
HTTP, a reset, or silence past ``handshake_timeout``, as from a port scan) raises
``BrokenResourceError`` in a handler that, like every example, has no ``try``, and
the whole server exits. Here each connection's own task finishes the handshake
before calling the handler; the accept loop never handshakes, so a slow client
cannot delay the next accept.
"""

from __future__ import annotations

import logging
import ssl
from collections.abc import Awaitable, Callable
from typing import NoReturn, final

import trio
from trio.abc import Listener

from ._choosing import ContextChooser
from ._contexts import keep_truncation_detectable
from ._failure import explain
from ._standin import StandsInForTrio
from ._stream import SSLStream, T_Stream

#: Where :func:`serve_ssl_over_tcp` reports the clients it drops, one INFO line each.
#: INFO, not WARNING: on a public port failed handshakes are routine (scanners,
#: stale clients), nothing the operator must act on, and logging's last-resort
#: handler would print every WARNING to stderr in a program that set up no logging.
_server_log = logging.getLogger("trio_tls.server")

#: Default handshake deadline for servers. A client that opens TCP and never finishes
#: the handshake would otherwise hold a server task forever (slowloris). 60 s matches
#: asyncio's default and is generous for any real client; see notes/decisions.md.
DEFAULT_SERVER_HANDSHAKE_TIMEOUT = 60.0


@final
class SSLListener(StandsInForTrio, Listener[SSLStream[T_Stream]]):
    """Wraps every connection a transport listener accepts in a server-side SSLStream.

    Args:
      transport_listener: the listener to wrap, usually a :class:`trio.SocketListener`.
      ssl_context: the context for new connections. It can be replaced at any time
          by assigning ``ssl_context`` (certificate rotation): connections
          accepted later use the new one, existing ones keep theirs. It may also be
          an async chooser, ``(ClientHello) -> ssl.SSLContext``, run in each
          connection's handshake (see :class:`SSLStream`).
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
        ssl_context: ssl.SSLContext | ContextChooser,
        *,
        https_compatible: bool = False,
        handshake_timeout: float | None = DEFAULT_SERVER_HANDSHAKE_TIMEOUT,
        close_timeout: float | None = None,
    ) -> None:
        self.transport_listener = transport_listener
        self.ssl_context: ssl.SSLContext | ContextChooser = ssl_context
        # Private, but read by trio's own test suite (test_highlevel_ssl_helpers.py),
        # which trio_tls passes under patch_trio(); keep the name.
        self._https_compatible = https_compatible
        self._handshake_timeout = handshake_timeout
        self._close_timeout = close_timeout

    async def accept(self) -> SSLStream[T_Stream]:
        """Accept a connection; the handshake runs on first use, as with trio.

        So a failed handshake surfaces as ``BrokenResourceError`` from the stream's
        first operation, in the code that accepted it. Only :func:`serve_ssl_over_tcp`
        finishes the handshake before its handler runs and drops failing clients.
        """
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
    ssl_context: ssl.SSLContext | ContextChooser,
    *,
    host: str | bytes | None = None,
    https_compatible: bool = False,
    backlog: int | None = None,
    handshake_timeout: float | None = DEFAULT_SERVER_HANDSHAKE_TIMEOUT,
    close_timeout: float | None = None,
) -> list[SSLListener[trio.SocketStream]]:
    """Open TCP listeners (see :func:`trio.open_tcp_listeners`) wrapped in SSLListeners.

    ``ssl_context`` may be an async chooser, as for :class:`SSLListener`.
    """
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
    ssl_context: ssl.SSLContext | ContextChooser,
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

    One failing client never takes the server down. Each connection's task first
    completes the handshake (bounded by ``handshake_timeout``); ``handler`` is called
    only with a stream whose handshake has finished. A client whose handshake fails
    or runs past the deadline is closed and logged, one INFO line naming its address
    and the reason, on the ``trio_tls.server`` logger. After the handshake, a
    :exc:`trio.BrokenResourceError` escaping ``handler`` (the client reset the
    connection mid-conversation, say) is logged and dropped the same way: by trio's
    convention that error means something outside the program broke, never a bug
    in it. Any other exception propagates, as in trio. As in trio, each stream is
    closed when its handler returns or raises.

    To see every connection in your own code, failed handshakes included, or to set
    a connection up before its handshake, serve an :class:`SSLListener` from
    :func:`open_ssl_over_tcp_listeners` with :func:`trio.serve_listeners`: its
    handshake is lazy, as in trio.

    ``ssl_context`` may be an async chooser, ``(ClientHello) -> ssl.SSLContext``,
    awaited in each connection's handshake (on-demand TLS, with
    :class:`~trio_tls.ContextCache`); a client whose chooser fails is logged and
    dropped like any other failed handshake, the line naming the server name.

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
        _after_handshake(handler),
        listeners,
        handler_nursery=handler_nursery,
        task_status=task_status,
    )


def _after_handshake(
    handler: Callable[[SSLStream[trio.SocketStream]], Awaitable[object]],
) -> Callable[[SSLStream[trio.SocketStream]], Awaitable[None]]:
    """``handler``, run in each connection's own task once its handshake is done."""

    async def serve_one(stream: SSLStream[trio.SocketStream]) -> None:
        # trio.serve_listeners closes the stream when this returns or raises.
        # Asked before the handshake: a client that resets it cannot be named later.
        peer = _peer_address(stream.transport_stream)
        # After a fatal alert, close here rather than leave it to trio's forceful
        # close: aclose() then lingers (bounded, in this connection's task only) so
        # that a client still sending reads the alert instead of a reset.
        try:
            await stream.do_handshake()
        except trio.BrokenResourceError as exc:
            _server_log.info("TLS handshake with %s failed: %s", peer, explain(exc, peer="client"))
            await stream.aclose()
            return
        try:
            await handler(stream)
        except* trio.BrokenResourceError as broken:
            # Not necessarily this stream (the handler may talk to a backend too), so
            # the reason names "the peer", not "the client".
            _server_log.info("connection with %s broke: %s", peer, explain(broken, peer="peer"))
            if stream._linger_on_close:  # this stream sent an alert: it is broken
                await stream.aclose()

    return serve_one


def _peer_address(transport: trio.SocketStream) -> str:
    try:
        host, port = transport.socket.getpeername()[:2]
    except OSError:  # ENOTCONN: the client reset the connection as it was accepted
        return "an unknown address"
    return format_address(host, port)


def format_address(host: str, port: int) -> str:
    """``host:port``, with an IPv6 address in brackets so its colons stay apart."""
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
