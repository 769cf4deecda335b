"""Connected (client, server) SSLStream pairs over in-memory transports."""

from __future__ import annotations

import ssl

import trio.testing
from trio.abc import Stream

from .._stream import SSLStream
from ._certs import TLSTestCA, TLSVersionName

#: The name clients send (SNI) and verify in the pairs made here.
SERVER_NAME = "trio-tls.example"

#: A connected ``(client, server)`` pair; the transports are trio's in-memory streams.
StreamPair = tuple[SSLStream[Stream], SSLStream[Stream]]


def _contexts(
    ca: TLSTestCA | None,
    version: TLSVersionName | None,
    client_context: ssl.SSLContext | None,
    server_context: ssl.SSLContext | None,
) -> tuple[ssl.SSLContext, ssl.SSLContext]:
    if client_context is None or server_context is None:
        ca = ca if ca is not None else TLSTestCA()
        client_context = client_context or ca.client_context(version=version)
        server_context = server_context or ca.server_context(version=version)
    return client_context, server_context


def tls_memory_stream_pair(
    ca: TLSTestCA | None = None,
    *,
    version: TLSVersionName | None = None,
    https_compatible: bool = False,
    client_context: ssl.SSLContext | None = None,
    server_context: ssl.SSLContext | None = None,
) -> StreamPair:
    """``(client, server)`` over :func:`trio.testing.memory_stream_pair` (buffered).

    Nothing is exchanged yet: the handshake runs on first use. With no ``ca`` and no
    contexts a fresh :class:`TLSTestCA` is made (slower; share one across tests).
    """
    client_ctx, server_ctx = _contexts(ca, version, client_context, server_context)
    client_transport, server_transport = trio.testing.memory_stream_pair()
    return _wrap(client_transport, server_transport, client_ctx, server_ctx, https_compatible)


def tls_lockstep_stream_pair(
    ca: TLSTestCA | None = None,
    *,
    version: TLSVersionName | None = None,
    https_compatible: bool = False,
    client_context: ssl.SSLContext | None = None,
    server_context: ssl.SSLContext | None = None,
) -> StreamPair:
    """``(client, server)`` over :func:`trio.testing.lockstep_stream_pair`.

    The transport has no buffer at all: a send completes only when the other side
    receives. Code that only works because some buffer absorbed a write deadlocks
    here, which is the point.
    """
    client_ctx, server_ctx = _contexts(ca, version, client_context, server_context)
    client_transport, server_transport = trio.testing.lockstep_stream_pair()
    return _wrap(client_transport, server_transport, client_ctx, server_ctx, https_compatible)


def _wrap(
    client_transport: Stream,
    server_transport: Stream,
    client_ctx: ssl.SSLContext,
    server_ctx: ssl.SSLContext,
    https_compatible: bool,
) -> StreamPair:
    client = SSLStream[Stream](
        client_transport,
        client_ctx,
        server_hostname=SERVER_NAME,
        https_compatible=https_compatible,
    )
    server = SSLStream[Stream](
        server_transport, server_ctx, server_side=True, https_compatible=https_compatible
    )
    return client, server
