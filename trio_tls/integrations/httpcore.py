"""An httpcore network backend whose TLS is trio_tls.

httpcore's own trio backend builds ``trio.SSLStream`` by name, so replacing trio's
class does not reach it; this backend is the same thing with
:class:`trio_tls.SSLStream` inside::

    pool = httpcore.AsyncConnectionPool(network_backend=TrioTLSBackend(), http2=True)

What it keeps from httpcore's trio backend, so that nothing above it notices:

- TCP through :func:`trio.open_tcp_stream`, TLS with ``https_compatible=True``
  (HTTP has its own framing, and many servers skip close_notify);
- the same errors: ``ConnectError``/``ConnectTimeout`` while connecting or in the
  handshake, ``ReadError``/``ReadTimeout`` and ``WriteError``/``WriteTimeout`` after;
- the same ``get_extra_info`` keys: ``"ssl_object"`` (the :class:`ssl.SSLObject`,
  whose ``selected_alpn_protocol()`` is how httpcore chooses HTTP/2), ``"socket"``,
  ``"client_addr"``, ``"server_addr"`` and ``"is_readable"``.

What it changes: an error's message is the TLS failure's own (``TLS handshake failed:
[SSL: CERTIFICATE_VERIFY_FAILED] ...``), where httpcore's trio backend passes on an
empty ``trio.BrokenResourceError``; the original is still ``__cause__``.
"""

from __future__ import annotations

import ssl
from collections.abc import Awaitable, Callable, Iterable, Iterator
from contextlib import contextmanager
from functools import partial
from typing import Any, TypeAlias, final

import trio

from .._stream import SSLStream, is_trio_tls_stream
from ._extras import requires_extra

with requires_extra(__name__, "httpx"):
    import httpcore

__all__ = ["SocketOption", "TrioTLSBackend", "TrioTLSNetworkStream"]

#: A ``setsockopt`` argument tuple, as httpcore spells it (level, option, value[, length]).
SocketOption: TypeAlias = (
    tuple[int, int, int] | tuple[int, int, bytes | bytearray] | tuple[int, int, None, int]
)


def _seconds(timeout: float | None) -> float:
    """httpcore's "no timeout" is None; trio's is infinity."""
    return float("inf") if timeout is None else timeout


@contextmanager
def _mapped(on_timeout: type[Exception], on_failure: type[Exception]) -> Iterator[None]:
    """Raise httpcore's exceptions for trio's, keeping the message and the cause.

    ``OSError`` only reaches here from connecting (a refused or unreachable address);
    once a stream exists, trio reports transport failures as BrokenResourceError.
    """
    try:
        yield
    except trio.TooSlowError as exc:
        raise on_timeout("timed out") from exc
    except (trio.BrokenResourceError, trio.ClosedResourceError, OSError) as exc:
        raise on_failure(str(exc) or type(exc).__name__) from exc


def _socket_stream(stream: trio.abc.Stream) -> trio.SocketStream:
    """The TCP stream under any number of TLS layers (HTTPS through an HTTPS proxy has two)."""
    while isinstance(stream, SSLStream | trio.SSLStream):
        stream = stream.transport_stream
    if not isinstance(stream, trio.SocketStream):
        raise TypeError(f"expected TLS over a trio.SocketStream, got {stream!r}")
    return stream


@final
class TrioTLSNetworkStream(httpcore.AsyncNetworkStream):
    """One connection as httpcore sees it: TCP, or trio_tls over TCP after ``start_tls``.

    Args:
      stream: a :class:`trio.SocketStream`, or a :class:`trio_tls.SSLStream` over one.
    """

    def __init__(self, stream: trio.abc.Stream) -> None:
        #: The wrapped trio stream.
        self.stream = stream

    async def read(self, max_bytes: int, timeout: float | None = None) -> bytes:
        """Receive up to *max_bytes* (``b""`` at EOF) within *timeout* seconds.

        Raises ``httpcore.ReadTimeout`` at the deadline, ``httpcore.ReadError`` if the
        connection or its TLS failed, with the trio error as ``__cause__``.
        """
        with (
            _mapped(httpcore.ReadTimeout, httpcore.ReadError),
            trio.fail_after(_seconds(timeout)),
        ):
            data = await self.stream.receive_some(max_bytes)
        # trio's Stream may return a bytearray; SSLStream and SocketStream return bytes.
        return data if isinstance(data, bytes) else bytes(data)

    async def write(self, buffer: bytes, timeout: float | None = None) -> None:
        """Send all of *buffer* within *timeout* seconds.

        Raises ``httpcore.WriteTimeout`` at the deadline (the stream is then broken:
        part of *buffer* may have been sent), ``httpcore.WriteError`` on failure.
        """
        if not buffer:
            return
        with (
            _mapped(httpcore.WriteTimeout, httpcore.WriteError),
            trio.fail_after(_seconds(timeout)),
        ):
            await self.stream.send_all(buffer)

    async def aclose(self) -> None:
        """Close the connection; over TLS, send close_notify first (bounded in time)."""
        await self.stream.aclose()

    async def start_tls(
        self,
        ssl_context: ssl.SSLContext,
        server_hostname: str | None = None,
        timeout: float | None = None,
    ) -> TrioTLSNetworkStream:
        """Wrap this connection in a client :class:`trio_tls.SSLStream` and handshake.

        On any failure the TCP connection is closed before the error propagates.
        """
        try:
            tls = SSLStream(
                self.stream,
                ssl_context,
                server_hostname=server_hostname,
                https_compatible=True,
            )
            with (
                _mapped(httpcore.ConnectTimeout, httpcore.ConnectError),
                trio.fail_after(_seconds(timeout)),
            ):
                await tls.do_handshake()
        except BaseException:
            # Forcefully: a cancelled or failed handshake has nothing left to say.
            await trio.aclose_forcefully(self.stream)
            raise
        return TrioTLSNetworkStream(tls)

    def get_extra_info(self, info: str) -> Any:
        """httpcore's keys: ``ssl_object``, ``socket``, ``client_addr``, ``server_addr``,
        ``is_readable``; anything else is None."""
        if info == "ssl_object":
            # Not isinstance(): under patch_trio() a stream trio built passes that, and
            # has no ssl_object.
            return self.stream.ssl_object if is_trio_tls_stream(self.stream) else None
        if info == "socket":
            return _socket_stream(self.stream).socket
        if info == "client_addr":
            return _socket_stream(self.stream).socket.getsockname()
        if info == "server_addr":
            return _socket_stream(self.stream).socket.getpeername()
        if info == "is_readable":
            return _socket_stream(self.stream).socket.is_readable()
        return None


@final
class TrioTLSBackend(httpcore.AsyncNetworkBackend):
    """An httpcore network backend for trio whose TLS connections are trio_tls's.

    Pass it as ``network_backend=`` to :class:`httpcore.AsyncConnectionPool` (or
    ``AsyncHTTPProxy``/``AsyncSOCKSProxy``). For httpx, use
    :class:`trio_tls.integrations.httpx.TrioTLSTransport`, which does this for you.
    """

    async def connect_tcp(
        self,
        host: str,
        port: int,
        timeout: float | None = None,
        local_address: str | None = None,
        socket_options: Iterable[SocketOption] | None = None,
    ) -> TrioTLSNetworkStream:
        """Open a TCP connection (TLS comes later, from httpcore's ``start_tls``).

        Raises ``httpcore.ConnectTimeout`` after *timeout* seconds and
        ``httpcore.ConnectError`` for a refused or unreachable address.
        """
        # trio.open_tcp_stream already sets TCP_NODELAY, as httpcore expects.
        opening = partial(trio.open_tcp_stream, host, port, local_address=local_address)
        return await _connected(opening, timeout, socket_options)

    async def connect_unix_socket(
        self,
        path: str,
        timeout: float | None = None,
        socket_options: Iterable[SocketOption] | None = None,
    ) -> TrioTLSNetworkStream:
        """Connect to the Unix socket at *path*, with the same errors as :meth:`connect_tcp`."""
        return await _connected(partial(trio.open_unix_socket, path), timeout, socket_options)

    async def sleep(self, seconds: float) -> None:
        """:func:`trio.sleep`: how httpcore waits between retries."""
        await trio.sleep(seconds)


async def _connected(
    opening: Callable[[], Awaitable[trio.SocketStream]],
    timeout: float | None,
    options: Iterable[SocketOption] | None,
) -> TrioTLSNetworkStream:
    """Await a connection attempt under httpcore's timeout and errors; set its options."""
    with (
        _mapped(httpcore.ConnectTimeout, httpcore.ConnectError),
        trio.fail_after(_seconds(timeout)),
    ):
        stream = await opening()
        _set_options(stream, options)
    return TrioTLSNetworkStream(stream)


def _set_options(stream: trio.SocketStream, options: Iterable[SocketOption] | None) -> None:
    for option in options or ():
        stream.setsockopt(*option)
