"""An httpx transport whose TLS is trio_tls: one argument to ``httpx.AsyncClient``.

httpx 0.28 has no public way to hand its default transport a network backend, so
:class:`TrioTLSTransport` is that transport rebuilt on public API: an httpcore
connection pool with :class:`~trio_tls.integrations.httpcore.TrioTLSBackend`, the
same request and response conversion, and httpcore's exceptions turned into httpx's
as httpx does it::

    async with httpx.AsyncClient(transport=TrioTLSTransport(http2=True)) as client:
        response = await client.get("https://example.org/")

Its arguments are ``httpx.AsyncHTTPTransport``'s, less ``proxy`` and the
deprecated ``cert``/string ``verify`` (put a client certificate or a CA file in an
:class:`ssl.SSLContext` and pass that as ``verify``). The client's ``timeout``,
``follow_redirects``, auth and so on work as usual: they live above the transport.
"""

from __future__ import annotations

import ssl
from collections.abc import AsyncIterable, AsyncIterator, Iterable, Iterator
from contextlib import contextmanager
from typing import final

from ._extras import requires_extra
from .httpcore import SocketOption, TrioTLSBackend

with requires_extra(__name__, "httpx"):
    import httpcore
    import httpx

__all__ = ["TrioTLSTransport"]

#: httpx.AsyncHTTPTransport's default limits (httpx keeps the constant private).
DEFAULT_LIMITS = httpx.Limits(max_connections=100, max_keepalive_connections=20)

# httpcore's exception classes and httpx's counterparts; a raised exception maps to
# the entry of the first class in its MRO, the most specific one (ReadTimeout before
# TimeoutException), which is the choice httpx makes.
_EXCEPTIONS: dict[type[Exception], type[httpx.HTTPError]] = {
    httpcore.TimeoutException: httpx.TimeoutException,
    httpcore.ConnectTimeout: httpx.ConnectTimeout,
    httpcore.ReadTimeout: httpx.ReadTimeout,
    httpcore.WriteTimeout: httpx.WriteTimeout,
    httpcore.PoolTimeout: httpx.PoolTimeout,
    httpcore.NetworkError: httpx.NetworkError,
    httpcore.ConnectError: httpx.ConnectError,
    httpcore.ReadError: httpx.ReadError,
    httpcore.WriteError: httpx.WriteError,
    httpcore.ProxyError: httpx.ProxyError,
    httpcore.UnsupportedProtocol: httpx.UnsupportedProtocol,
    httpcore.ProtocolError: httpx.ProtocolError,
    httpcore.LocalProtocolError: httpx.LocalProtocolError,
    httpcore.RemoteProtocolError: httpx.RemoteProtocolError,
}


@contextmanager
def _httpx_exceptions() -> Iterator[None]:
    try:
        yield
    except Exception as exc:
        for cls in type(exc).__mro__:
            if cls in _EXCEPTIONS:
                raise _EXCEPTIONS[cls](str(exc)) from exc
        raise


def _require_h2() -> None:
    """Fail when the transport is made, as httpx.AsyncClient(http2=True) does, rather
    than at the first server that picks HTTP/2."""
    try:
        import h2  # noqa: F401
    except ImportError:
        raise ImportError(
            "Using http2=True, but the 'h2' package is not installed: "
            "pip install 'trio_tls[httpx]' 'httpx[http2]'"
        ) from None


@final
class _ResponseStream(httpx.AsyncByteStream):
    """A response body from httpcore, raising httpx's exceptions."""

    def __init__(self, body: AsyncIterable[bytes]) -> None:
        self._body = body

    async def __aiter__(self) -> AsyncIterator[bytes]:
        with _httpx_exceptions():
            async for part in self._body:
                yield part

    async def aclose(self) -> None:
        # httpcore types the body as a bare AsyncIterable; what it returns has aclose(),
        # which hands the connection back to the pool.
        aclose = getattr(self._body, "aclose", None)
        if aclose is not None:
            await aclose()


@final
class TrioTLSTransport(httpx.AsyncBaseTransport):
    """``httpx.AsyncHTTPTransport`` with trio_tls for TLS: pass it as ``transport=``.

    Args:
      verify: an :class:`ssl.SSLContext` (trusted CAs, client certificate, ALPN is
          set by httpcore), True for httpx's default verification (certifi, or
          ``SSL_CERT_FILE``/``SSL_CERT_DIR`` when ``trust_env``), or False for none.
      trust_env: let ``verify=True`` read ``SSL_CERT_FILE``/``SSL_CERT_DIR``.
      http1, http2: the HTTP versions to offer through ALPN; HTTP/2 needs ``h2``
          (``pip install 'httpx[http2]'``).
      limits: connection pool limits (httpx's defaults when None).
      uds: connect to this Unix socket instead of TCP.
      local_address: the local IP address to connect from.
      retries: how many times to retry a failed connection attempt.
      socket_options: ``setsockopt`` arguments for every new connection.
    """

    def __init__(
        self,
        verify: ssl.SSLContext | bool = True,
        *,
        trust_env: bool = True,
        http1: bool = True,
        http2: bool = False,
        limits: httpx.Limits = DEFAULT_LIMITS,
        uds: str | None = None,
        local_address: str | None = None,
        retries: int = 0,
        socket_options: Iterable[SocketOption] | None = None,
    ) -> None:
        if http2:
            _require_h2()
        #: The httpcore pool doing the work, for its ``connections`` and statistics.
        self.pool: httpcore.AsyncConnectionPool = httpcore.AsyncConnectionPool(
            ssl_context=httpx.create_ssl_context(verify=verify, trust_env=trust_env),
            max_connections=limits.max_connections,
            max_keepalive_connections=limits.max_keepalive_connections,
            keepalive_expiry=limits.keepalive_expiry,
            http1=http1,
            http2=http2,
            uds=uds,
            local_address=local_address,
            retries=retries,
            socket_options=socket_options,
            network_backend=TrioTLSBackend(),
        )

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        """Send *request* through the pool; what ``httpx.AsyncClient`` calls.

        httpcore's exceptions come out as httpx's (``httpx.ConnectError``,
        ``httpx.ReadTimeout`` ...), as from httpx's own transport. Raises
        ``TypeError`` when used from the synchronous ``httpx.Client``.
        """
        if not isinstance(request.stream, httpx.AsyncByteStream):
            raise TypeError("TrioTLSTransport needs an httpx.AsyncClient, not httpx.Client")
        core_request = httpcore.Request(
            method=request.method,
            url=httpcore.URL(
                scheme=request.url.raw_scheme,
                host=request.url.raw_host,
                port=request.url.port,
                target=request.url.raw_path,
            ),
            headers=request.headers.raw,
            content=request.stream,
            extensions=request.extensions,
        )
        with _httpx_exceptions():
            response = await self.pool.handle_async_request(core_request)
        if not isinstance(response.stream, AsyncIterable):
            raise TypeError(f"httpcore returned a synchronous body: {response.stream!r}")
        return httpx.Response(
            status_code=response.status,
            headers=response.headers,
            stream=_ResponseStream(response.stream),
            extensions=response.extensions,
        )

    async def aclose(self) -> None:
        """Close every pooled connection; ``AsyncClient.aclose()`` calls this."""
        with _httpx_exceptions():
            await self.pool.aclose()
